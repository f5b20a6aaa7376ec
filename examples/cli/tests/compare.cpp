// Test helper for the `gecko logits` CTest tests (not part of the tool):
//   cli_compare schedule GOLDEN NAME              prints in.NAME.schedule as "n,n,..."
//   cli_compare logits OUT GOLDEN TENSOR f32|f64  compares OUT's `logits` with GOLDEN's TENSOR and
//                                                 OUT's cache.* with GOLDEN's out.cache.* (where
//                                                 present) by the golden README's rule; exit 1 if
//                                                 any is outside the tolerance
#include <cstdio>
#include <string>

#include "support/golden.hpp"

using namespace gecko;

namespace {

int print_schedule(const std::string& golden, const std::string& name) {
  const io::SafetensorsFile f(golden);
  const auto s = f.get<std::int64_t>("in." + name + ".schedule");
  for (std::int64_t i = 0; i < s.size(); ++i) std::printf("%s%lld", i ? "," : "", (long long)s[i]);
  std::printf("\n");
  return 0;
}

int compare(const std::string& out_path, const std::string& golden_path, const std::string& tensor,
            const std::string& dtype) {
  const io::SafetensorsFile out(out_path), golden(golden_path);
  const double tol = dtype == "f64" ? testing::golden_tolerance<double>() : testing::golden_tolerance<float>();
  bool ok = true;
  auto report = [&](const std::string& name, double rel) {
    const bool pass = rel <= tol;
    std::printf("%-45s rel %.3g (tolerance %.0e) %s\n", name.c_str(), rel, tol, pass ? "ok" : "FAILED");
    ok = ok && pass;
  };
  const auto logits = out.get<float>("logits"), expected = golden.get<float>(tensor);
  if (!(logits.shape() == expected.shape())) {
    std::printf("logits has shape %s, %s has %s\n", logits.shape().str().c_str(), tensor.c_str(),
                expected.shape().str().c_str());
    return 1;
  }
  report("logits vs " + tensor, testing::rel_error(logits, expected));
  for (const auto& [name, info] : golden.tensors()) {
    if (!name.starts_with("out.cache.")) continue;
    const std::string mine = name.substr(4);
    if (!out.contains(mine) || !(out.info(mine).shape == info.shape)) {
      std::printf("%-45s missing or of another shape in %s: FAILED\n", mine.c_str(), out_path.c_str());
      ok = false;
    } else if (info.dtype == DType::I64) {
      const auto a = out.get<std::int64_t>(mine), b = golden.get<std::int64_t>(name);
      const bool same = std::equal(a.data(), a.data() + a.size(), b.data());
      std::printf("%-45s %s\n", mine.c_str(), same ? "equal" : "DIFFERENT: FAILED");
      ok = ok && same;
    } else {
      report(mine, testing::rel_error(out.get<float>(mine), golden.get<float>(name)));
    }
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "schedule" && argc == 4) return print_schedule(argv[2], argv[3]);
    if (mode == "logits" && argc == 6) return compare(argv[2], argv[3], argv[4], argv[5]);
    std::fprintf(stderr, "usage: cli_compare schedule GOLDEN NAME | logits OUT GOLDEN TENSOR f32|f64\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cli_compare: %s\n", e.what());
    return 1;
  }
}
