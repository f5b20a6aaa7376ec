# Configures, builds and runs one consumer project against gecko, as a downstream user would.
#   cmake -DMODE=find_package|add_subdirectory -DGECKO_SOURCE_DIR=<src> -DGECKO_BINARY_DIR=<build>
#         -DWORK_DIR=<scratch> -DGENERATOR=<gen> [-DMAKE_PROGRAM=<prog>] -DCXX_COMPILER=<c++>
#         -P run_consumer.cmake
# find_package: installs <build> into <scratch>/prefix first and points CMAKE_PREFIX_PATH there.
# add_subdirectory: the consumer adds <src> itself, with the CUDA path off.
cmake_minimum_required(VERSION 3.25)

foreach(var MODE GECKO_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${step} failed (${rc}):\n  ${ARGN}\n${out}")
  endif()
  message(STATUS "${step}: ok")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(configure_args -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
if(MAKE_PROGRAM)
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()

if(MODE STREQUAL "find_package")
  if(NOT DEFINED GECKO_BINARY_DIR)
    message(FATAL_ERROR "run_consumer.cmake: find_package mode needs -DGECKO_BINARY_DIR=...")
  endif()
  set(prefix "${WORK_DIR}/prefix")
  run("install" ${CMAKE_COMMAND} --install "${GECKO_BINARY_DIR}" --prefix "${prefix}")
  set(project_dir "${CMAKE_CURRENT_LIST_DIR}/consumer")
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
elseif(MODE STREQUAL "add_subdirectory")
  set(project_dir "${CMAKE_CURRENT_LIST_DIR}/subdirectory")
  list(APPEND configure_args -DGECKO_SOURCE_DIR=${GECKO_SOURCE_DIR} -DGECKO_ENABLE_CUDA=OFF)
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

set(build "${WORK_DIR}/build")
run("configure" ${CMAKE_COMMAND} -S "${project_dir}" -B "${build}" ${configure_args})
if(MODE STREQUAL "find_package")
  # The package must come from the fresh install, not from some other gecko on the machine.
  file(STRINGS "${build}/CMakeCache.txt" gecko_dir REGEX "^gecko_DIR:")
  string(FIND "${gecko_dir}" "${prefix}/" at)
  if(NOT at GREATER -1)
    message(FATAL_ERROR "gecko was found outside the install prefix ${prefix}: ${gecko_dir}")
  endif()
endif()
run("build" ${CMAKE_COMMAND} --build "${build}")
run("run" "${build}/gecko_consumer" "${WORK_DIR}")
