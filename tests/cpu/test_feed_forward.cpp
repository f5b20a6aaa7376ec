// The normalised feed-forward network against the golden nffn cases (SwiGLU; plain SiLU with
// rescale and two norm groups).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "gecko/cpu/feed_forward.hpp"
#include "support/golden.hpp"

using namespace gecko;

namespace {

template <class T>
cpu::FeedForwardParams<T> load_ffn(const io::SafetensorsFile& f) {
  const auto cfg = nlohmann::json::parse(*f.meta("config"));
  cpu::FeedForwardParams<T> p;
  p.norm_weight = f.get_as<T>("norm.weight");
  p.norm_bias = f.get_as<T>("norm.bias");
  p.fc1 = f.get_as<T>("fc1.weight");
  p.fc2 = f.get_as<T>("fc2.weight");
  if (f.contains("fc3.weight")) p.fc3 = f.get_as<T>("fc3.weight");
  if (f.contains("alpha")) p.alpha = f.get_as<T>("alpha");
  p.groups = cfg.at("layernorm_num_groups").get<int>();
  p.eps = cfg.at("norm_eps").get<double>();
  return p;
}

template <class T>
void check_case(const std::string& name) {
  const auto f = testing::open_golden(name);
  const auto p = load_ffn<T>(*f);
  const Tensor<T> y = cpu::feed_forward(f->get_as<T>("in.x"), f->get_as<T>("in.residual"), p);
  testing::check_close("out.y", y, f->get<float>("out.y"), testing::golden_tolerance<T>());
  MESSAGE(name, " (", std::string(sizeof(T) == 4 ? "float" : "double"), "): out.y rel ",
          testing::rel_error(y, f->get<float>("out.y")));
}

}  // namespace

TEST_CASE_TEMPLATE("feed_forward: golden nffn (SwiGLU, one norm group)", T, float, double) {
  check_case<T>("nffn");
}

TEST_CASE_TEMPLATE("feed_forward: golden nffn_variant (plain SiLU, rescale, two norm groups)", T,
                   float, double) {
  const auto f = testing::open_golden("nffn_variant");
  CHECK_FALSE(f->contains("fc3.weight"));
  CHECK(f->contains("alpha"));
  check_case<T>("nffn_variant");
}

TEST_CASE("feed_forward: the residual is added, alpha scales only the FFN branch") {
  // Zero fc2 makes f = 0, so the output is exactly the residual whatever alpha is.
  const std::int64_t B = 1, L = 2, D = 4, F = 3;
  cpu::FeedForwardParams<double> p;
  p.fc1 = Tensor<double>({F, D}, 0.5);
  p.fc2 = Tensor<double>({D, F}, 0.0);
  p.alpha = Tensor<double>({D}, 7.0);
  Tensor<double> x({B, L, D}), r({B, L, D});
  for (std::int64_t i = 0; i < x.size(); ++i) {
    x[i] = double(i) - 2;
    r[i] = 0.25 * double(i);
  }
  const auto y = cpu::feed_forward(x, r, p);
  for (std::int64_t i = 0; i < y.size(); ++i) CHECK(y[i] == r[i]);
}

TEST_CASE("feed_forward: shape errors name the tensor") {
  cpu::FeedForwardParams<float> p;
  p.fc1 = Tensor<float>({3, 4});
  p.fc2 = Tensor<float>({4, 5});
  const Tensor<float> x({1, 2, 4});
  CHECK_THROWS_WITH_AS(cpu::feed_forward(x, x, p), doctest::Contains("feed_forward: fc2 has shape [4, 5], expected [4, 3]"),
                       Error);
  p.fc2 = Tensor<float>({4, 3});
  CHECK_THROWS_WITH_AS(cpu::feed_forward(x, Tensor<float>({1, 3, 4}), p),
                       doctest::Contains("residual has shape [1, 3, 4], expected [1, 2, 4]"), Error);
}
