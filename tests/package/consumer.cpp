// A downstream program: writes a tensor with gecko's safetensors writer, reads it back and
// checks every element. Usage: gecko_consumer <scratch-dir>. Exit 0 on success.
#include <gecko/core/tensor.hpp>
#include <gecko/io/safetensors.hpp>

#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <scratch-dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path file = std::filesystem::path(argv[1]) / "consumer.safetensors";
  try {
    gecko::Tensor<float> t(gecko::Shape{2, 3});
    for (std::int64_t i = 0; i < t.size(); ++i) t[i] = 0.5f * float(i);
    gecko::io::SafetensorsWriter w;
    w.add("t", t);
    w.set_metadata("producer", "gecko consumer");
    w.write(file);

    const gecko::io::SafetensorsFile f(file);
    const auto back = f.get<float>("t", gecko::Shape{2, 3});
    for (std::int64_t i = 0; i < t.size(); ++i)
      if (back[i] != t[i]) {
        std::fprintf(stderr, "element %lld: read %g, wrote %g\n", (long long)i, back[i], t[i]);
        return 1;
      }
    if (f.meta("producer") != "gecko consumer") {
      std::fprintf(stderr, "metadata did not round-trip\n");
      return 1;
    }
  } catch (const gecko::Error& e) {
    std::fprintf(stderr, "gecko::Error: %s\n", e.what());
    return 1;
  }
  std::printf("gecko consumer: round trip ok\n");
  return 0;
}
