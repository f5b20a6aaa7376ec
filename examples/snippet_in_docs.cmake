# Checks that the code between the two "// [quickstart]" markers of SOURCE appears verbatim in DOC
# (indentation removed), so the documentation's snippet is code that compiles and runs.
cmake_minimum_required(VERSION 3.25)
file(READ "${SOURCE}" source)
string(REGEX MATCH "// \\[quickstart\\]\n(.*)\n[ ]*// \\[quickstart\\]" _ "${source}")
set(snippet "${CMAKE_MATCH_1}")
if(snippet STREQUAL "")
  message(FATAL_ERROR "${SOURCE}: no code between // [quickstart] markers")
endif()
string(REPLACE "\n    " "\n" snippet "\n${snippet}")  # drop the 4-space indentation of each line
string(SUBSTRING "${snippet}" 1 -1 snippet)
file(READ "${DOC}" doc)
string(FIND "${doc}" "${snippet}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${DOC} does not contain the quickstart code of ${SOURCE} verbatim:\n${snippet}")
endif()
