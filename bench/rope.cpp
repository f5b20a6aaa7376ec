// Rotary embedding (spec §9) of q (B, L, H, dk) in place: the op against a plain pointer loop and
// against a memory copy of the bytes it must move. The table is built once outside the timing
// (a call builds it once for all layers).

#include "gecko/cpu/rope.hpp"

#include "support/common.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

using T = float;
constexpr double kBase = 500000;

void rope_sequential(Tensor<T>& x, const Tensor<T>& table) {
  const std::int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), half = x.dim(3) / 2;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < L; ++t) {
      const T* r = table.data() + t * half * 2;
      for (std::int64_t h = 0; h < H; ++h) {
        T* v = x.data() + ((b * L + t) * H + h) * half * 2;
        for (std::int64_t j = 0; j < half; ++j) {
          const T re = v[2 * j], im = v[2 * j + 1], c = r[2 * j], sn = r[2 * j + 1];
          v[2 * j] = re * c - im * sn;
          v[2 * j + 1] = re * sn + im * c;
        }
      }
    }
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    const auto table = [s] {
      return cpu::rope_table(cpu::rope_frequencies<T>(int(s.dk()), kBase), 0, s.L);
    };
    // Rotations keep norms, so rotating the same tensor again and again stays in range.
    add("rope", "gecko", s, [s, table](benchmark::State& state) {
      auto x = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 4);
      const auto r = table();
      for (auto _ : state) {
        cpu::apply_rope(x, r, int(s.H));
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
      }
      report(state, work::rope(s));
    });
    add("rope", "sequential", s, [s, table](benchmark::State& state) {
      auto x = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 4);
      const auto r = table();
      Tensor<T> expected = x;
      cpu::apply_rope(expected, r, int(s.H));
      Tensor<T> candidate = x;
      rope_sequential(candidate, r);
      if (!same_result(state, candidate, expected, 1e-6)) return;
      for (auto _ : state) {
        rope_sequential(x, r);
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
      }
      report(state, work::rope(s));
    });
    add_memcpy("rope", s, work::rope(s).bytes);
  }
}

}  // namespace gecko::bench
