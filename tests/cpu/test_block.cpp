// One Gecko block against the golden block_* cases: output and the streaming state after the call.
#include <doctest/doctest.h>

#include "gecko/layers/block.hpp"
#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "support/golden.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

template <class T>
layers::Block<policy::Gecko, T> load_block(const io::SafetensorsFile& f, model::Config config) {
  layers::BlockParams<T> p;
  model::TensorReader<T> reader(f);
  layers::visit_block_parameters<policy::Gecko>(p, config, reader);
  reader.check_nothing_left();
  return layers::Block<policy::Gecko, T>(config, std::move(p));
}

template <class T>
void check_block_case(const std::string& name) {
  const auto f = testing::open_golden(name);
  const auto block = load_block<T>(*f, model::Config::from_json(*f->meta("config")));
  const testing::GoldenLayerCall call(*f);
  auto state = testing::read_layer_state<T>(*f, "in.cache.");
  const Tensor<T> y = block.forward(f->get_as<T>("in.x"), f->get_as<T>("in.freqs_cis"), call.bos_or_none(),
                                    call.ids(), state);
  testing::check_layer_results(*f, name + (sizeof(T) == 4 ? " (float)" : " (double)"), y, state,
                               testing::golden_tolerance<T>());
}

}  // namespace

TEST_CASE_TEMPLATE("block: golden block_fresh", T, float, double) { check_block_case<T>("block_fresh"); }

TEST_CASE_TEMPLATE("block: golden block_continue_segments", T, float, double) {
  check_block_case<T>("block_continue_segments");
}

TEST_CASE_TEMPLATE("block: two_hop_residual adds back the block input instead of the MEGA output", T, float,
                   double) {
  // With fc2 = 0 the FFN branch is zero, so the block returns its residual exactly: the MEGA
  // output (one-hop) or the block input (two-hop).
  const auto f = testing::open_golden("block_fresh");
  auto config = model::Config::from_json(*f->meta("config"));
  layers::BlockParams<T> p;
  model::TensorReader<T> reader(*f);
  layers::visit_block_parameters<policy::Gecko>(p, config, reader);
  p.nffn.fc2 = Tensor<T>(p.nffn.fc2.shape(), T(0));
  const Tensor<T> x = f->get_as<T>("in.x"), rope = f->get_as<T>("in.freqs_cis");
  layers::LayerState<T> s1, s2, s3;
  const layers::Block<policy::Gecko, T> one_hop(config, p);
  const Tensor<T> y1 = one_hop.forward(x, rope, nullptr, {}, s1);
  const Tensor<T> mega_y = one_hop.mega().forward(x, rope, nullptr, {}, s2);
  config.two_hop_residual = true;
  const layers::Block<policy::Gecko, T> two_hop(config, p);
  const Tensor<T> y2 = two_hop.forward(x, rope, nullptr, {}, s3);
  testing::check_equal("one-hop", y1, mega_y);
  testing::check_equal("two-hop", y2, x);
}

TEST_CASE("block: the FFN parameters must match the flags") {
  const auto f = testing::open_golden("block_fresh");
  auto config = model::Config::from_json(*f->meta("config"));
  layers::BlockParams<float> p;
  model::TensorReader<float> reader(*f);
  layers::visit_block_parameters<policy::Gecko>(p, config, reader);
  config.swiglu = false;  // fc3 is then not a parameter
  CHECK_THROWS_WITH_AS((layers::Block<policy::Gecko, float>(config, p)),
                       doctest::Contains("nffn.fc3.weight must be given exactly when swiglu is set"), Error);
  config.swiglu = true;
  p.nffn.fc1 = Tensor<float>({7, config.model_dim});
  CHECK_THROWS_WITH_AS((layers::Block<policy::Gecko, float>(config, p)),
                       doctest::Contains("block: nffn.fc1.weight has shape [7, 64], expected [128, 64]"), Error);
}
