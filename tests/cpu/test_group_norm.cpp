// Group RMS norm and group layer norm: golden cases, group independence, error messages.
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "gecko/cpu/group_norm.hpp"
#include "support/golden.hpp"
#include "support/random.hpp"
#include "support/report.hpp"

using namespace gecko;

namespace {

using testing::random_normal;
using testing::report_and_check;

struct NormCase {
  std::unique_ptr<io::SafetensorsFile> file;
  int groups;
  double eps;
};

NormCase open_norm_case(const std::string& name) {
  auto file = testing::open_golden(name);
  const auto args = nlohmann::json::parse(*file->meta("args"));
  return {std::move(file), args.at("num_groups").get<int>(), args.at("eps").get<double>()};
}

template <class T>
void check_rms_golden(const std::string& case_name) {
  const auto c = open_norm_case(case_name);
  const auto x = c.file->get_as<T>("in.x");
  const bool affine = c.file->contains("weight");
  const Tensor<T> weight = affine ? c.file->get_as<T>("weight") : Tensor<T>();
  const auto y = cpu::group_rms_norm(x, c.groups, c.eps, affine ? &weight : nullptr);
  report_and_check(case_name + " out.y", y, c.file->get_as<T>("out.y"));
}

template <class T>
void check_layer_golden(const std::string& case_name) {
  const auto c = open_norm_case(case_name);
  const auto x = c.file->get_as<T>("in.x");
  const bool affine = c.file->contains("weight");
  REQUIRE(affine == c.file->contains("bias"));
  const Tensor<T> weight = affine ? c.file->get_as<T>("weight") : Tensor<T>();
  const Tensor<T> bias = affine ? c.file->get_as<T>("bias") : Tensor<T>();
  const auto y = cpu::group_layer_norm(x, c.groups, c.eps, affine ? &weight : nullptr,
                                       affine ? &bias : nullptr);
  report_and_check(case_name + " out.y", y, c.file->get_as<T>("out.y"));
}

}  // namespace

TEST_CASE_TEMPLATE("group_rms_norm golden rms_norm_g1", T, float, double) { check_rms_golden<T>("rms_norm_g1"); }
TEST_CASE_TEMPLATE("group_rms_norm golden rms_norm_g4", T, float, double) { check_rms_golden<T>("rms_norm_g4"); }
TEST_CASE_TEMPLATE("group_rms_norm golden rms_norm_heads_noaffine", T, float, double) {
  check_rms_golden<T>("rms_norm_heads_noaffine");
}
TEST_CASE_TEMPLATE("group_layer_norm golden layer_norm_g1", T, float, double) { check_layer_golden<T>("layer_norm_g1"); }
TEST_CASE_TEMPLATE("group_layer_norm golden layer_norm_g4", T, float, double) { check_layer_golden<T>("layer_norm_g4"); }
TEST_CASE_TEMPLATE("group_layer_norm golden layer_norm_g2_noaffine", T, float, double) {
  check_layer_golden<T>("layer_norm_g2_noaffine");
}

TEST_CASE("group_rms_norm: H groups over (B, L, H·dk) equal one group per head of (B, L, H, dk)") {
  const auto z = random_normal<double>(Shape{2, 5, 3, 8}, 11, 2.0, 0.5);
  const auto per_head = cpu::group_rms_norm(z, 1, 1e-5, nullptr);
  const auto grouped = cpu::group_rms_norm(z.reshaped(Shape{2, 5, 24}), 3, 1e-5, nullptr);
  CHECK(testing::rel_error(grouped.reshaped(Shape{2, 5, 3, 8}), per_head) == 0.0);
  // and each head row has mean square 1 (eps aside)
  for (std::int64_t r = 0; r < 2 * 5 * 3; ++r) {
    double ms = 0;
    for (int i = 0; i < 8; ++i) ms += per_head[r * 8 + i] * per_head[r * 8 + i];
    CHECK(ms / 8 == doctest::Approx(1.0).epsilon(1e-4));
  }
}

TEST_CASE("group_layer_norm: each group has zero mean and unit variance; weight is an offset from 1") {
  const std::int64_t F = 12;
  const auto x = random_normal<double>(Shape{4, F}, 7, 3.0, 5.0);
  const auto y = cpu::group_layer_norm(x, 3, 0.0, nullptr, nullptr);
  for (std::int64_t r = 0; r < 4; ++r)
    for (int g = 0; g < 3; ++g) {
      double mean = 0, var = 0;
      for (int i = 0; i < 4; ++i) mean += y(r, g * 4 + i) / 4;
      for (int i = 0; i < 4; ++i) var += (y(r, g * 4 + i) - mean) * (y(r, g * 4 + i) - mean) / 4;
      CHECK(std::abs(mean) < 1e-12);
      CHECK(var == doctest::Approx(1.0).epsilon(1e-12));
    }
  const auto weight = random_normal<double>(Shape{F}, 8, 0.1), bias = random_normal<double>(Shape{F}, 9);
  const auto ya = cpu::group_layer_norm(x, 3, 0.0, &weight, &bias);
  for (std::int64_t r = 0; r < 4; ++r)
    for (std::int64_t i = 0; i < F; ++i)
      CHECK(ya(r, i) == doctest::Approx(y(r, i) * (1 + weight[i]) + bias[i]).epsilon(1e-14));
  const Tensor<double> zero(Shape{F}, 0.0);
  CHECK(testing::rel_error(cpu::group_layer_norm(x, 3, 0.0, &zero, nullptr), y) == 0.0);
}

TEST_CASE("group norms: errors name the broken rule") {
  const Tensor<float> x(Shape{2, 3, 10}, 1.0f);
  CHECK_THROWS_WITH_AS(cpu::group_rms_norm(x, 4, 1e-5, nullptr),
                       "group_rms_norm: the feature size F = 10 must be a multiple of groups = 4", Error);
  const Tensor<float> w(Shape{8}, 0.0f);
  CHECK_THROWS_WITH_AS(cpu::group_layer_norm(x, 2, 1e-5, &w, nullptr),
                       "group_layer_norm: weight has shape [8], expected [10]", Error);
  CHECK_THROWS_WITH_AS(cpu::group_layer_norm(x, 0, 1e-5, nullptr, nullptr),
                       "group_layer_norm: groups must be positive, got 0", Error);
}
