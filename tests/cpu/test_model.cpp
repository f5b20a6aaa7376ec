// The whole model against the golden model files: loaded as checkpoints, logits of one call and
// of every streaming schedule, and the final streaming state.
#include <doctest/doctest.h>

#include <vector>

#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "support/golden.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

template <class T>
void check_model_file(const std::string& name) {
  const auto f = testing::open_golden(name);
  const auto model = model::load_model<policy::Gecko, T>(f->path());
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");
  const bool multi = f->get<bool>("in.multi_segments")[0];
  const double tol = testing::golden_tolerance<T>();
  const std::string type = sizeof(T) == 4 ? "float" : "double";

  // One call.
  model::ModelState<T> state;
  const Tensor<T> logits = model.forward(tokens, state, multi);
  testing::check_close("out.logits", logits, f->get<float>("out.logits"), tol);
  double state_rel = 0;
  if (f->contains("out.cache.layers.0.sca.kv_count"))
    state_rel = testing::check_state_against(*f, "out.", state, "out.cache.", tol);
  MESSAGE(name, " (", type, ") one call: logits rel ", testing::rel_error(logits, f->get<float>("out.logits")),
          ", state rel ", state_rel);

  // Every streaming schedule: the pieces' logits concatenated, and the same final state.
  for (int k = 0; f->contains("in.stream" + std::to_string(k) + ".schedule"); ++k) {
    const std::string prefix = "stream" + std::to_string(k);
    const auto schedule = f->get<std::int64_t>("in." + prefix + ".schedule");
    model::ModelState<T> s;
    const std::vector<std::int64_t> pieces(schedule.data(), schedule.data() + schedule.size());
    const Tensor<T> streamed = testing::stream_in_pieces(model, tokens, pieces, s, multi);
    const auto golden = f->get<float>("out." + prefix + ".logits");
    testing::check_close("out." + prefix + ".logits", streamed, golden, tol);
    double srel = 0;
    if (f->contains("out.cache.layers.0.sca.kv_count"))
      srel = testing::check_state_against(*f, "out.", s, "out.cache.", tol);
    MESSAGE(name, " (", type, ") ", prefix, " (", schedule.size(), " pieces): logits rel ",
            testing::rel_error(streamed, golden), ", final state rel ", srel);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("model: golden model_single_doc, one call and every streaming schedule", T, float, double) {
  check_model_file<T>("model_single_doc");
}

TEST_CASE_TEMPLATE("model: golden model_variants (every non-default flag, multi_segments)", T, float, double) {
  const auto f = testing::open_golden("model_variants");
  const auto config = model::read_config(*f);
  CHECK(config.layernorm_num_groups == 2);
  CHECK(config.rope_heads() == 1);
  CHECK(config.two_hop_residual);
  CHECK(config.rescale_nffn);
  CHECK(config.scale_emb);
  CHECK(config.share_emb);
  CHECK_FALSE(config.swiglu);
  CHECK(config.rope_base == 10000.0);
  check_model_file<T>("model_variants");
}

TEST_CASE("model: the bos id comes from the checkpoint's args, else 1") {
  const auto f = testing::open_golden("model_variants");
  CHECK(model::read_bos_id(*f) == 1);
  auto m = model::load_model<policy::Gecko, float>(f->path());
  CHECK(m.bos_id() == 1);
  m.set_bos_id(5);
  CHECK(m.bos_id() == 5);
}

TEST_CASE("model: pieces that break the streaming rules are rejected, naming the rule") {
  const auto f = testing::open_golden("model_single_doc");
  const auto model = model::load_model<policy::Gecko, float>(f->path());
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");  // (2, 64), C = 16
  {
    model::ModelState<float> s;
    CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 0, 20), s),
                         doctest::Contains("must start and end on chunk boundaries (start % C == 0 and end % C == 0)"),
                         Error);
  }
  {
    model::ModelState<float> s;
    model.forward(testing::time_slice(tokens, 0, 1), s);
    CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 1, 5), s),
                         doctest::Contains("a piece of 1 < L < C tokens must start on a chunk boundary"), Error);
    CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 1, 17), s),
                         doctest::Contains("got start = 1, L = 16, end = 17, C = 16"), Error);
    CHECK(s.position() == 1);  // a rejected piece leaves the state as it was
    CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 1, 2), s, /*multi_segments=*/true),
                         doctest::Contains("multi_segments must be the same on every call"), Error);
    CHECK_THROWS_WITH_AS(model.forward(Tensor<std::int64_t>({1, 1}, 3), s),
                         doctest::Contains("the state was started with batch size 2"), Error);
    CHECK_THROWS_WITH_AS(model.forward(Tensor<std::int64_t>({2, 1}, 97), s),
                         doctest::Contains("token 97 at (0, 0) is outside the vocabulary [0, 97)"), Error);
  }
}
