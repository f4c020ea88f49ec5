// u^q for u in [0, ~1] and a non-integer q in about [8.2, 49), float32, without exp2/log2:
//
//   u^q = u^n · u^f,   n = floor(q) (or up to 2 below it),  f = q - n in (0, 3),
//
// u^n by binary powering (PowInt: a few multiplies, relative error <= n·2^-24), u^f by a polynomial
// in s = max(u, a) - 1 fitted once per q (Chebyshev interpolation of u^f on [a, b], a = 2^(-K/q),
// b slightly above 1). About 15 vector operations against ~35 for PowRealF's exp2/log2 pair,
// and no long dependency chain through integer/float conversions.
//
// Error (the polynomial is checked at setup on a float32 emulation of the kernel's Horner
// evaluation; tests/test_kernels_pow.py checks the bounds below on random q and u):
// - u >= a (results >= 2^-K): the polynomial's relative error is kFitTol = 1e-6 on a 1000-point grid,
//   so the result's is ~kFitTol + (n + 2)·2^-24; asserted: <= 2e-6 + n·2^-24. Measured (400 random
//   q in [1.2, 1000], 2^16 u each): max 2.6e-6, against 7.7e-6 for PowRealF on the same inputs.
// - u < a (results < 2^-K): the clamp evaluates u^n·a^f instead of u^n·u^f, an absolute error of at
//   most a^q · max_r (r^n - r^(n+f)) <= 2^-K · f/q (f <= 3: ~1e-7 for K = 20, q >= 9; measured
//   6.5e-8). Below any rounding of a sum whose largest term is ~1, which is how the kernels use it.
// make_pow_split refuses (the caller keeps PowRealF) when floor(q) > 48 (powering error), q < 1, or no
// degree <= kMaxDeg meets the tolerance (small q, below ~8.2: u^f must then be accurate over a wide
// range of u, and float32 Horner cannot get there).
#pragma once

#include <algorithm>
#include <cmath>
#include <mutex>

#include "simd.h"

namespace lpk {

struct PowSplitF {
  static constexpr int kBatch = 4;  // vectors per batch: 8 spill registers on AVX2 (1.1-1.25x slower)
  // No skip test: at ~15 operations per vector, testing every batch for negligible terms costs more
  // than the rare skip saves (fwd+bwd 1.05x faster without it, measured).
  static constexpr bool kSkipSmall = false;
  static constexpr int kMaxDeg = 12;
  PowInt<float> ip;  // u^n
  float thr;         // lanes below thr have u^q < 2^-kCutBits: see all_below
  float a;           // clamp: s = max(u, a) - 1
  int deg;
  float c[kMaxDeg + 1];  // u^f ~ c[0] + c[1] s + ... + c[deg] s^deg

  template <int M> LPK_ALWAYS_INLINE void batch(Vec<float>* u) const {
    typedef Vec<float> V;
    V s[M], acc[M];
    const V av = vbroadcast<float>(a), one = vbroadcast<float>(1.0f);
    // vmax(u, a) returns a for NaN u; the NaN still reaches the result through u^n.
    for (int m = 0; m < M; ++m) s[m] = vmax<float>(u[m], av) - one;
    const V top = vbroadcast<float>(c[deg]), next = vbroadcast<float>(c[deg - 1]);
    for (int m = 0; m < M; ++m) acc[m] = s[m] * top + next;
    for (int k = deg - 2; k >= 0; --k) {
      const V ck = vbroadcast<float>(c[k]);
      for (int m = 0; m < M; ++m) acc[m] = acc[m] * s[m] + ck;
    }
    ip.template batch<M>(u);
    for (int m = 0; m < M; ++m) u[m] = u[m] * acc[m];
  }
};

namespace pow_split_detail {

constexpr double kK = 20.0;       // clamp point a = 2^(-kK/q): results below 2^-kK are absolute-accurate
constexpr double kFitTol = 1e-6;  // relative error of the u^f polynomial on [a, b] (float32 evaluation)
constexpr int kMaxN = 48;         // u^n by powering: relative error <= n·2^-24 (see the header comment)
constexpr int kGrid = 1000;       // check points on [a, b]

// Chebyshev interpolant of u^f on [a, b] (degree deg), returned as coefficients in s = u - 1.
inline void fit(double f, double a, double b, int deg, long double* out) {
  constexpr long double kPi = 3.141592653589793238462643383279502884L;
  constexpr int L = PowSplitF::kMaxDeg + 1;
  const int N = deg + 1;
  long double ch[L] = {};  // Chebyshev coefficients (DCT of the values at the Chebyshev nodes)
  for (int k = 0; k < N; ++k) {
    long double acc = 0;
    for (int j = 0; j < N; ++j) {
      const long double th = kPi * (j + 0.5L) / N;
      const long double u = (a + b) / 2.0L + (b - a) / 2.0L * std::cos(th);
      acc += std::pow(u, static_cast<long double>(f)) * std::cos(k * th);
    }
    ch[k] = acc * 2.0L / N;
  }
  ch[0] /= 2;
  // Power basis in t (T_k by the three-term recurrence), then t = al·s + be substituted by Horner.
  long double t0[L] = {1}, t1[L] = {0, 1}, pt[L] = {};
  pt[0] = ch[0];
  for (int i = 0; i <= deg && deg >= 1; ++i) pt[i] += ch[1] * t1[i];
  for (int k = 2; k <= deg; ++k) {
    long double t2[L] = {};
    for (int i = 0; i <= deg; ++i) t2[i] = (i > 0 ? 2 * t1[i - 1] : 0) - t0[i];
    for (int i = 0; i <= deg; ++i) {
      pt[i] += ch[k] * t2[i];
      t0[i] = t1[i];
      t1[i] = t2[i];
    }
  }
  const long double al = 2.0L / (b - a), be = (2.0L - a - b) / (b - a);
  long double cur[L] = {pt[deg]};
  for (int k = deg - 1, len = 1; k >= 0; --k, ++len) {
    long double nx[L] = {};
    for (int i = 0; i < len; ++i) {
      nx[i + 1] += cur[i] * al;
      nx[i] += cur[i] * be;
    }
    nx[0] += pt[k];
    std::copy(nx, nx + len + 1, cur);
  }
  std::copy(cur, cur + deg + 1, out);
}

// Multiplies binary powering spends on u^n (PowInt: squarings plus one per further set bit).
inline int powering_cost(int n) {
  int sq = 0, bits = 0;
  for (int e = n; e; e >>= 1) {
    sq += (e >> 1) != 0;
    bits += e & 1;
  }
  return sq + bits - 1;
}

// Smallest degree whose polynomial for u^f on [a, b] meets kFitTol (float32 evaluation on a grid),
// coefficients in c; 0 when none up to kMaxDeg does.
inline int fit_degree(double f, double a, double b, float* c) {
  float gu[kGrid + 1];
  double gt[kGrid + 1];
  for (int g = 0; g <= kGrid; ++g) {
    gu[g] = static_cast<float>(a + (b - a) * g / kGrid);
    gt[g] = std::pow(static_cast<double>(gu[g]), f);
  }
  for (int deg = 2; deg <= PowSplitF::kMaxDeg; ++deg) {
    long double co[PowSplitF::kMaxDeg + 1];
    fit(f, a, b, deg, co);
    for (int i = 0; i <= deg; ++i) c[i] = static_cast<float>(co[i]);
    double err = 0;
    for (int g = 0; g <= kGrid && err <= kFitTol; ++g) {  // the kernel's float32 Horner, FMA per step
      const float s = gu[g] - 1.0f;
      float acc = std::fma(s, c[deg], c[deg - 1]);
      for (int k = deg - 2; k >= 0; --k) acc = std::fma(acc, s, c[k]);
      err = std::max(err, std::abs(acc - gt[g]) / gt[g]);
    }
    if (err <= kFitTol) return deg;
  }
  return 0;
}

// The setup itself (no cache). The split point n is floor(q) or up to 2 below it, whichever needs
// the fewest vector multiplies in all (powering + Horner): e.g. q = 13.7 as u^12 · u^1.7.
inline bool build(double q, PowSplitF* pw) {
  const double n0 = std::floor(q);
  if (!(q > 1.0) || !(q > n0) || n0 > kMaxN) return false;
  pw->thr = static_cast<float>(cut_threshold(q));
  pw->a = static_cast<float>(std::exp2(-kK / q));
  const double a = pw->a, b = 1.0 + 1.0 / 1024;  // u = |d|/y may exceed 1 by a few ulp
  int best = 0, best_cost = 1 << 30;
  for (int n = static_cast<int>(n0); n >= 1 && n >= n0 - 2; --n) {
    float c[PowSplitF::kMaxDeg + 1];
    const int deg = fit_degree(q - n, a, b, c);
    if (deg == 0 || powering_cost(n) + deg >= best_cost) continue;
    best = n;
    best_cost = powering_cost(n) + deg;
    pw->deg = deg;
    std::copy(c, c + deg + 1, pw->c);
  }
  if (best == 0) return false;
  pw->ip = PowInt<float>{best, 0.0f};
  return true;
}

}  // namespace pow_split_detail

// Sets *pw up for u^q; false when the split form cannot meet its error bound (use PowRealF).
// The last few setups are cached: a training step calls every layer with the same p (and p - 1).
inline bool make_pow_split(double q, PowSplitF* pw) {
  struct Entry {
    double q;
    bool ok;
    PowSplitF pw;
  };
  constexpr int kSlots = 4;
  static std::mutex mu;
  static Entry cache[kSlots];
  static int used = 0, next = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < used; ++i)
      if (cache[i].q == q) {
        *pw = cache[i].pw;
        return cache[i].ok;
      }
  }
  const bool ok = pow_split_detail::build(q, pw);
  std::lock_guard<std::mutex> lock(mu);
  cache[next] = Entry{q, ok, *pw};
  next = (next + 1) % kSlots;
  used = std::min(used + 1, kSlots);
  return ok;
}

}  // namespace lpk
