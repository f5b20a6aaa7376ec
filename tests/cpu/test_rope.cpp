// Rotary positional embedding: golden frequencies, table and rotation; Megalodon positions;
// untouched heads; error messages.
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "gecko/cpu/rope.hpp"
#include "support/golden.hpp"
#include "support/random.hpp"
#include "support/report.hpp"

using namespace gecko;
using testing::report_and_check;

TEST_CASE_TEMPLATE("rope golden: frequencies, table from position 53, rotation of xq and xk", T, float, double) {
  const auto f = testing::open_golden("rope");
  const auto args = nlohmann::json::parse(*f->meta("args"));
  const int head_dim = args.at("embed_dim").get<int>();
  const double base = args.at("base").get<double>();
  const std::int64_t start = f->get<std::int64_t>("in.start")[0];
  const std::int64_t length = args.at("length").get<std::int64_t>();
  REQUIRE(start == args.at("start").get<std::int64_t>());

  const auto freqs = cpu::rope_frequencies<T>(head_dim, base);
  report_and_check("freqs", freqs, f->get_as<T>("freqs"));
  const auto table = cpu::rope_table(freqs, start, length);
  report_and_check("out.freqs_cis", table, f->get_as<T>("out.freqs_cis"));

  auto xq = f->get_as<T>("in.xq");
  auto xk = f->get_as<T>("in.xk");
  const int heads = int(xq.dim(2));
  cpu::apply_rope(xq, table, heads);
  cpu::apply_rope(xk, table, heads);
  report_and_check("out.xq", xq, f->get_as<T>("out.xq"));
  report_and_check("out.xk", xk, f->get_as<T>("out.xk"));
}

TEST_CASE("rope_frequencies and angles are fp32 quantities, whatever T") {
  const auto fd = cpu::rope_frequencies<double>(16, 500000.0);
  const auto ff = cpu::rope_frequencies<float>(16, 500000.0);
  for (std::int64_t j = 0; j < 8; ++j) CHECK(fd[j] == double(ff[j]));
  CHECK(fd[0] == 1.0);
  // At a large position the fp32 angle differs visibly from the exact product.
  const std::int64_t t = 100003;
  const auto row = cpu::rope_table(fd, t, 1);
  const float angle = float(t) * float(fd[1]);
  CHECK(row(0, 1, 0) == std::cos(double(angle)));
  CHECK(row(0, 1, 1) == std::sin(double(angle)));
  CHECK(std::abs(double(angle) - double(t) * fd[1]) > 1e-4);
}

TEST_CASE("rope_table from positions: Megalodon positions t mod C repeat the rows of one chunk") {
  const auto freqs = cpu::rope_frequencies<double>(8, 10000.0);
  const std::int64_t C = 4;
  std::vector<std::int64_t> positions;
  for (std::int64_t t = 6; t < 15; ++t) positions.push_back(t % C);
  const auto table = cpu::rope_table(freqs, std::span<const std::int64_t>(positions));
  const auto chunk_rows = cpu::rope_table(freqs, 0, C);
  REQUIRE(table.shape() == Shape{9, 4, 2});
  for (std::int64_t i = 0; i < 9; ++i)
    for (std::int64_t j = 0; j < 4; ++j)
      for (int c = 0; c < 2; ++c) CHECK(table(i, j, c) == chunk_rows((6 + i) % C, j, c));
  const auto contiguous = cpu::rope_table(freqs, 6, 9);
  std::vector<std::int64_t> absolute{6, 7, 8, 9, 10, 11, 12, 13, 14};
  CHECK(testing::rel_error(cpu::rope_table(freqs, std::span<const std::int64_t>(absolute)), contiguous) == 0.0);
}

TEST_CASE("apply_rope rotates pairs of the first num_rope_heads heads and leaves the others") {
  const auto x = testing::random_normal<double>(Shape{2, 5, 3, 8}, 3);
  const auto table = cpu::rope_table(cpu::rope_frequencies<double>(8, 500000.0), 17, 5);
  auto y = x;
  cpu::apply_rope(y, table, 2);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < 5; ++t) {
      for (std::int64_t i = 0; i < 8; ++i) CHECK(y(b, t, 2, i) == x(b, t, 2, i));  // head 2 untouched
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t j = 0; j < 4; ++j) {
          // a rotation keeps each pair's length and turns it by the table's angle
          const double nx = std::hypot(x(b, t, h, 2 * j), x(b, t, h, 2 * j + 1));
          const double ny = std::hypot(y(b, t, h, 2 * j), y(b, t, h, 2 * j + 1));
          CHECK(ny == doctest::Approx(nx).epsilon(1e-14));
          const double cross = x(b, t, h, 2 * j) * y(b, t, h, 2 * j + 1) - x(b, t, h, 2 * j + 1) * y(b, t, h, 2 * j);
          CHECK(cross / (nx * nx) == doctest::Approx(table(t, j, 1)).epsilon(1e-12));
        }
    }
  auto none = x;
  cpu::apply_rope(none, table, 0);
  CHECK(testing::rel_error(none, x) == 0.0);
}

TEST_CASE("rope: errors name the broken rule") {
  CHECK_THROWS_WITH_AS(cpu::rope_frequencies<float>(7, 1e4),
                       "rope_frequencies: head_dim must be positive and even, got 7", Error);
  Tensor<float> x(Shape{1, 3, 2, 8});
  const auto table = cpu::rope_table(cpu::rope_frequencies<float>(8, 1e4), 0, 4);
  CHECK_THROWS_WITH_AS(cpu::apply_rope(x, table, 2), "apply_rope: table has shape [4, 4, 2], expected [3, 4, 2]",
                       Error);
  const auto table3 = cpu::rope_table(cpu::rope_frequencies<float>(8, 1e4), 0, 3);
  CHECK_THROWS_WITH_AS(cpu::apply_rope(x, table3, 3), "apply_rope: num_rope_heads must lie in [0, H = 2], got 3",
                       Error);
}
