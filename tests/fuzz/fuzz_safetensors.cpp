// libFuzzer target: any byte string given to the safetensors reader either opens, and then every
// tensor reads back within bounds, or fails with a gecko::Error. Any other exception, a crash or
// a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "gecko/io/safetensors.hpp"

namespace {

template <class T>
void read_all(const gecko::io::SafetensorsFile& f, const std::string& name) {
  const gecko::io::TensorInfo& info = f.info(name);
  const gecko::Tensor<T> t = f.get<T>(name, info.shape);
  if (t.size() * std::int64_t(sizeof(T)) != std::int64_t(f.bytes(name).size())) __builtin_trap();
  if constexpr (!std::is_integral_v<T>) (void)f.get_as<double>(name);  // the converting path
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using gecko::DType;
  try {
    const auto f = gecko::io::SafetensorsFile::from_memory(
        {reinterpret_cast<const std::byte*>(data), size}, "fuzz-input");
    for (const auto& [name, info] : f.tensors()) {
      try {
        switch (info.dtype) {
          case DType::F64: read_all<double>(f, name); break;
          case DType::F32: read_all<float>(f, name); break;
          case DType::F16: read_all<gecko::float16>(f, name); break;
          case DType::BF16: read_all<gecko::bfloat16>(f, name); break;
          case DType::I64: read_all<std::int64_t>(f, name); break;
          case DType::I32: read_all<std::int32_t>(f, name); break;
          case DType::U8: read_all<std::uint8_t>(f, name); break;
          case DType::BOOL: read_all<bool>(f, name); break;  // refuses bytes other than 0/1
        }
      } catch (const gecko::Error&) {
      }
    }
    for (const auto& [key, value] : f.metadata())
      if (f.meta(key) != value) __builtin_trap();
  } catch (const gecko::Error&) {
  }
  return 0;
}
