#pragma once
// The work each op must do, counted once here so that the composite benchmarks (block, model)
// add up the same numbers as the op benchmarks. Rules (bench/README.md): bytes = inputs read
// once + outputs written once; FLOPs = every real multiplication and addition of the defining
// formula (a multiply-add counts 2, so a GEMM is 2·m·n·k), exp, division and square root one
// each (silu = negate, exp, add, divide: 4), comparisons and max none; the softmax of attention and of the working memory is not
// counted (the convention for attention).

#include <algorithm>
#include <cstdint>

#include "support/common.hpp"

namespace gecko::bench::work {

using T = float;

// ---- timestep decay norm (§5): x (B, L, D), G groups, from the priors ----
inline Work timestep_norm(const Sizes& s) {
  const double elements = double(s.tokens() * s.D), stats = double(s.tokens() * s.G);
  // reads x, weight, bias, the priors; writes y and the state (count, M, V)
  return {bytes_of<T>(2 * s.tokens() * s.D + 2 * s.D + 2 * s.G + 2 * s.B * s.G) +
              bytes_of<std::int64_t>(1 + s.B),
          // per element: moments 1 + 3, normalisation 4; per (token, group): 17
          8 * elements + 17 * stats};
}

// ---- CEMA (§6): x (B, L, D), order N, zero initial state ----
inline Work cema(const Sizes& s) {
  // reads x and p, q, γ (the zero state is not read); writes c and h
  return {bytes_of<T>(2 * s.tokens() * s.D + 5 * s.D * s.N + 2 * s.B * s.D * s.N),
          // per (b, t, d, n): h ← q·h + p·x 8, y += Re(γ·h) 4; per (b, t, d): the residual 1
          12.0 * double(s.tokens() * s.D * s.N) + double(s.tokens() * s.D)};
}

// ---- group norms (§7): rows × F, affine unless stated ----
inline double rms_norm_flops(double rows, double F, bool affine) {
  // per element: x² accumulated 2, ·ρ 1 (, ·g 1); per (row, group): mean, + eps, 1/sqrt 3
  return rows * F * (affine ? 4 : 3) + 3 * rows;
}
inline double layer_norm_flops(double rows, double F) {
  // per element: mean 1, centre 1, square accumulated 2, ·ρ 1, ·g 1, + b 1; per row 4
  return rows * F * 7 + 4 * rows;
}
inline Work rms_norm(const Sizes& s) {
  return {bytes_of<T>(2 * s.tokens() * s.D + s.D), rms_norm_flops(double(s.tokens()), double(s.D), true)};
}
inline Work layer_norm(const Sizes& s) {
  return {bytes_of<T>(2 * s.tokens() * s.D + 2 * s.D), layer_norm_flops(double(s.tokens()), double(s.D))};
}

// ---- RoPE (§9) of one (B, L, H, dk) tensor, all heads ----
inline Work rope(const Sizes& s) {
  const std::int64_t elements = s.tokens() * s.S;
  // reads x and the table (L, dk/2, 2), writes x; 6 FLOPs per rotated pair
  return {bytes_of<T>(2 * elements + s.L * s.dk()), 3.0 * double(elements)};
}

// ---- linear (§1): (rows, in) → (rows, out) ----
inline Work linear(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias) {
  return {bytes_of<T>(rows * in + out * in + (bias ? out : 0) + rows * out),
          2.0 * double(rows) * double(in) * double(out) + (bias ? double(rows * out) : 0.0)};
}

// ---- SCA (§10): training/prefill call from a fresh stream ----
// Visible (query, key) pairs of one head: a query at t sees t − max(0, (c−1)C) + 1 keys.
inline double sca_pairs(const Sizes& s) {
  double pairs = 0;
  for (std::int64_t t = 0; t < s.L; ++t)
    pairs += double(t - std::max<std::int64_t>(0, (t / s.C - 1) * s.C) + 1);
  return pairs;
}
inline Work sca(const Sizes& s) {
  // reads q, k, v, writes y; 2·(dk + dv) per visible pair
  return {bytes_of<T>(s.tokens() * (2 * s.S + 2 * s.E)),
          2.0 * double(s.B * s.H) * sca_pairs(s) * double(s.dk() + s.dv())};
}

// ---- AWM (§11): training/prefill call from a fresh stream ----
inline Work awm(const Sizes& s) {
  const double C = double(s.C), dk = double(s.dk()), dv = double(s.dv());
  const double absorbed = double(s.L / s.C - 1);  // chunks absorbed (and chunks that read)
  // reads aq, ak, v; writes the output and the state (key window, memory, log normaliser).
  // Per (b, h) and absorbed chunk: read 2·C·dk·dv, Ψ·M 2·C·dk·dv, R = V − Ψ·M C·dv,
  // Ω·R 2·dk·C·dv, M += ρ(U − M) 3·dk·dv.
  return {bytes_of<T>(s.tokens() * (2 * s.S + 2 * s.E) +
                      s.B * s.H * (s.C * s.dk() + s.dk() * s.dv() + s.dk())),
          double(s.B * s.H) * absorbed * (6 * C * dk * dv + C * dv + 3 * dk * dv)};
}

// ---- normalised SwiGLU feed-forward (§4.3 steps 15-17) ----
inline double ffn_flops(const Sizes& s) {
  const double rows = double(s.tokens()), D = double(s.D), F = double(s.F);
  // three GEMMs; the layer norm; silu 4 and the gate 1 per hidden element; the residual add
  return 6 * rows * D * F + layer_norm_flops(rows, D) + 5 * rows * F + rows * D;
}
inline Work ffn(const Sizes& s) {
  // reads x, the residual and the parameters (norm weight, bias, fc1, fc3, fc2), writes the output
  return {bytes_of<T>(3 * s.tokens() * s.D + 3 * s.D * s.F + 2 * s.D), ffn_flops(s)};
}

// ---- the Gecko block (§4.3), a training/prefill call from a fresh state ----
inline std::int64_t block_parameters(const Sizes& s) {
  return 2 * s.D + 2 * s.G + 1            // TSN weight, bias, priors
         + 2 * s.D * s.N + s.D + 2 * s.D * s.N  // CEMA alpha, delta, theta, gamma
         + s.D                             // RMS norm weight
         + s.S * s.D + s.S                 // wz
         + 2 * (s.E * s.D + s.E)           // wv, wr
         + s.D * s.D + s.D + s.D * s.E     // wh1, wh2
         + 2 * 4 * s.S                     // mega.gamma, mega.beta
         + 2 * s.D + 3 * s.D * s.F;        // FFN norm, fc1, fc3, fc2
}
inline std::int64_t block_state(const Sizes& s) {
  return s.B * s.C * (s.S + s.E)                    // SCA window keys and values
         + s.B * s.H * (s.C * s.dk() + s.dk() * s.dv() + s.dk())  // AWM keys, memory, log_norm
         + s.B * (1 + 2 * s.G) + 2 * s.B * s.D * s.N;  // TSN state, CEMA state
}
inline Work block(const Sizes& s) {
  const double rows = double(s.tokens()), D = double(s.D), S = double(s.S), E = double(s.E);
  double f = timestep_norm(s).flops + cema(s).flops + rms_norm_flops(rows, D, true);
  f += linear(s.tokens(), s.D, s.S, true).flops;            // z
  f += rms_norm_flops(rows, S, false) + 4 * 2 * rows * S;    // per-head norm, the 4 affine rows
  f += 2 * linear(s.tokens(), s.D, s.E, true).flops + 2 * 4 * rows * E;  // v, r and their silu
  f += 2 * rope(s).flops + sca(s).flops + awm(s).flops;     // RoPE on q and k
  f += 2 * rows * E;                                         // o = s ⊙ r + a
  f += linear(s.tokens(), s.D, s.D, true).flops + linear(s.tokens(), s.E, s.D, false).flops;
  f += 2 * rows * D;                                         // y = x + (h1 + h2)
  f += ffn_flops(s);
  // reads x and the parameters; writes the output and the layer state
  return {bytes_of<T>(2 * s.tokens() * s.D + block_parameters(s) + block_state(s)), f};
}

}  // namespace gecko::bench::work
