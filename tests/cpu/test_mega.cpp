// The MEGA sub-layer against the golden mega_* cases: output, every intermediate of mega_fresh,
// and the streaming state after the call.
#include <doctest/doctest.h>

#include <cstdio>

#include "gecko/layers/mega.hpp"
#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

template <class T>
layers::Mega<policy::Gecko, T> load_mega(const io::SafetensorsFile& f) {
  const auto config = model::Config::from_json(*f.meta("config"));
  layers::MegaParams<T> p;
  model::TensorReader<T> reader(f);
  layers::visit_mega_parameters<policy::Gecko>(p, config, reader);
  reader.check_nothing_left();
  return layers::Mega<policy::Gecko, T>(config, std::move(p));
}

template <class T>
void check_mega_case(const std::string& name) {
  const auto f = testing::open_golden(name);
  const auto mega = load_mega<T>(*f);
  const testing::GoldenLayerCall call(*f);
  auto state = testing::read_layer_state<T>(*f, "in.cache.");
  CHECK(state.kv_count == f->get<std::int64_t>("in.rope_start")[0]);
  layers::MegaTrace<T> trace;
  const Tensor<T> y = mega.forward(f->get_as<T>("in.x"), f->get_as<T>("in.freqs_cis"),
                                   call.bos_or_none(), call.ids(), state, &trace);
  testing::check_layer_results(*f, name + (sizeof(T) == 4 ? " (float)" : " (double)"), y, state,
                               testing::golden_tolerance<T>());
}

}  // namespace

TEST_CASE_TEMPLATE("mega: golden mega_fresh, with every intermediate activation", T, float, double) {
  const auto f = testing::open_golden("mega_fresh");
  const auto mega = load_mega<T>(*f);
  layers::LayerState<T> state;
  layers::MegaTrace<T> trace;
  mega.forward(f->get_as<T>("in.x"), f->get_as<T>("in.freqs_cis"), nullptr, {}, state, &trace);
  const double tol = testing::golden_tolerance<T>();
  const Tensor<T> c_bdl = testing::swap_dims12(trace.cema);  // aux.cema.out is stored channel-major (B, D, L)
  const std::pair<const char*, const Tensor<T>*> parts[] = {
      {"aux.timenorm.out", &trace.timenorm}, {"aux.cema.out", &c_bdl},
      {"aux.rmsnorm.out", &trace.rmsnorm},   {"aux.wz.out", &trace.wz},
      {"aux.znorm.out", &trace.znorm},       {"aux.wv.out", &trace.wv},
      {"aux.wr.out", &trace.wr},             {"aux.sliding_chunk_attention.out", &trace.attention},
      {"aux.adaptive_working_memory.out", &trace.working_memory},
      {"aux.wh1.out", &trace.wh1},           {"aux.wh2.out", &trace.wh2}};
  for (const auto& [name, t] : parts) testing::check_close(name, *t, f->get<float>(name), tol);
  check_mega_case<T>("mega_fresh");
}

TEST_CASE_TEMPLATE("mega: golden mega_continue_segments (prefill after a cached chunk, documents)", T,
                   float, double) {
  check_mega_case<T>("mega_continue_segments");
}

TEST_CASE_TEMPLATE("mega: golden mega_tail_segments (a tail of C/2 tokens, documents)", T, float, double) {
  check_mega_case<T>("mega_tail_segments");
}

TEST_CASE("mega: a parameter of the wrong shape or a missing one is named") {
  const auto f = testing::open_golden("mega_fresh");
  const auto config = model::Config::from_json(*f->meta("config"));
  layers::MegaParams<float> p;
  model::TensorReader<float> reader(*f);
  layers::visit_mega_parameters<policy::Gecko>(p, config, reader);
  auto bad = p;
  bad.wz_bias = Tensor<float>({config.z_dim + 1});
  CHECK_THROWS_WITH_AS((layers::Mega<policy::Gecko, float>(config, bad)),
                       doctest::Contains("mega: wz.bias has shape [33], expected [32]"), Error);
  bad = p;
  bad.beta = Tensor<float>();
  CHECK_THROWS_WITH_AS((layers::Mega<policy::Gecko, float>(config, bad)),
                       doctest::Contains("mega: parameter beta is missing"), Error);
  // The Megalodon layer has 2 z rows and a learned ω: the Gecko parameters do not fit it.
  auto two_hop = config;
  two_hop.two_hop_residual = true;
  CHECK_THROWS_WITH_AS((layers::Mega<policy::Megalodon, float>(two_hop, p)),
                       doctest::Contains("cema.omega must be given"), Error);
}
