// Every golden file opens, parses its header and metadata, and holds tensors.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/golden.hpp"

using namespace gecko;

TEST_CASE("every golden file parses, with its metadata") {
  const auto dir = testing::golden_dir();
  if (!std::filesystem::exists(dir)) testing::open_golden("__absent__");  // reports SKIPPED
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    INFO("file ", entry.path().string());
    io::SafetensorsFile f(entry.path());
    CHECK(f.tensors().size() > 0);
    REQUIRE(f.meta("case"));
    CHECK(*f.meta("case") == entry.path().stem().string());
    REQUIRE(f.meta("tolerance"));
    const auto tol = nlohmann::json::parse(*f.meta("tolerance"));
    CHECK(tol.at("rel_f32").get<double>() == doctest::Approx(1e-4));
    CHECK(tol.at("rel_f64").get<double>() == doctest::Approx(1e-6));
    if (auto cfg = f.meta("config")) CHECK(nlohmann::json::parse(*cfg).is_object());
  }
  CHECK(files == 34);
}
