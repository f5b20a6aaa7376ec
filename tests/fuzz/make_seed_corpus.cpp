// Writes the fuzzer's seed corpus: small valid safetensors files covering every dtype, scalars,
// empty tensors and metadata. Usage: make_seed_corpus <dir>  (creates <dir>/seeds, empties <dir>/new)
#include <cstdio>
#include <filesystem>

#include "gecko/io/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  using namespace gecko;
  const fs::path dir = argv[1];
  fs::remove_all(dir);
  fs::create_directories(dir / "seeds");
  fs::create_directories(dir / "new");

  {
    io::SafetensorsWriter w;
    Tensor<float> x(Shape{2, 3});
    for (int i = 0; i < 6; ++i) x[i] = 0.5f * float(i) - 1.0f;
    w.add("x", x);
    w.set_metadata("case", "seed");
    w.write(dir / "seeds" / "f32_meta.safetensors");
  }
  {
    io::SafetensorsWriter w;
    w.add("f64", Tensor<double>(Shape{2}, 1.25));
    w.add("f16", Tensor<float16>(Shape{3}, float16(-2.0f)));
    w.add("bf16", Tensor<bfloat16>(Shape{1, 2}, bfloat16(3.5f)));
    w.add("i64", Tensor<std::int64_t>(Shape{2}, -7));
    w.add("i32", Tensor<std::int32_t>(Shape{1}, 9));
    w.add("u8", Tensor<std::uint8_t>(Shape{3}, 200));
    w.add("bool", Tensor<bool>(Shape{2}, true));
    w.write(dir / "seeds" / "all_dtypes.safetensors");
  }
  {
    io::SafetensorsWriter w;
    w.add("count", Tensor<std::int64_t>(Shape{}, 42));
    w.add("none", Tensor<float>(Shape{0, 4}));
    w.set_metadata("config", R"({"model_dim": 64})");
    w.write(dir / "seeds" / "scalar_empty.safetensors");
  }
  return 0;
}
