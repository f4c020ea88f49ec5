// u^q for u in [0, ~1] and a non-integer q in [8.65, 49) (and most of (8, 8.65)), float32,
// without exp2/log2:
//
//   u^q = u^n · u^f,   n in SplitExponents (7, 8, ..., 12, 14, ..., 48),  f = q - n in (0, 4),
//
// u^n by binary powering (relative error <= n·2^-24), u^f by a polynomial in s = max(u, a) - 1
// fitted once per q (Chebyshev interpolation of u^f on [a, b], a = 2^(-K/q), b slightly above 1).
// n is the exponent of the set whose powering + Horner costs the fewest multiplies (13.7 = 12 + 1.7).
// About 15 vector operations against ~35 for PowRealF's exp2/log2 pair.
//
// Speed: the kernels' main 2 x kPN tile runs PowSplitAt<n>, whose powering is unrolled at compile
// time and interleaved in program order with the first Horner steps; Zen 3 then overlaps the two
// dependency chains (forward q = 13.7 and backward q = 12.7 each 1.2-1.4x faster than with the
// runtime loops: standalone harness, interleaved A/B, medians; fixing the degree as well gained no
// more, fixing only the degree nothing).
// Edge tiles and pow_eval's generic check run PowSplitF::batch (runtime loops): the same
// operations in the same order, hence the same bits. A fixed exponent set keeps the instantiations
// to one pair of micro-kernels per member of the set.
//
// Error (the polynomial is checked at setup on a float32 emulation of the kernel's Horner
// evaluation; tests/test_kernels_pow.py checks the bounds below on random q and u):
// - u >= a (results >= 2^-K): the polynomial's relative error is kFitTol = 1e-6 on a 1000-point grid,
//   so the result's is ~kFitTol + (n + 2)·2^-24; asserted: <= 2e-6 + n·2^-24. Measured (400 random
//   q in [8.7, 49), 2^16 u each): max 2.6e-6, against 7.7e-6 for PowRealF on the same inputs.
// - u < a (results < 2^-K): the clamp evaluates u^n·a^f instead of u^n·u^f, an absolute error of at
//   most a^q · max_r (r^n - r^(n+f)) <= 2^-K · f/q < 2^-K · 4/11 (f < 4, n >= 7; ~3.5e-7 for
//   K = 20; measured 7.4e-8). Below any rounding of a sum whose largest term is ~1, which is how
//   the kernels use it.
// make_pow_split refuses (the caller keeps PowRealF) when no exponent of the set fits: q < 8, q >= 49
// (u^n by powering would lose too much), and 54 of 3999 q on a 0.001 grid of (8, 12), all in
// [8.19, 8.65), where u^7·u^f's fit is at float32's limit (degree 14 does not help: measured).
#pragma once

#include <algorithm>
#include <cmath>
#include <mutex>
#include <type_traits>

#include "simd.h"

namespace lpk {

// The exponents n of u^n that PowSplitF may split at: each has its own compiled PowSplitAt<n>
// micro-kernels. Dense below 12 (there u^f needs f in about [0.5, 2.5] to fit), gaps of 2 to 4
// above (f < 4). Chosen with a float64 model of the fit on a 0.1 grid of q in [8.05, 49): every q
// the former rule n = floor(q) - {0, 1, 2} could split is still split, at the same or one more
// multiply.
template <int... Ns> struct IntList {
  static constexpr int values[] = {Ns...};
};
using SplitExponents = IntList<7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24, 28, 32, 36, 40, 44, 48>;

struct PowSplitF {
  static constexpr int kBatch = 4;  // vectors per batch: 8 spill registers on AVX2 (1.1-1.25x slower)
  // No skip test: at ~15 operations per vector, testing every batch for negligible terms costs more
  // than the rare skip saves (fwd+bwd 1.05x faster without it, measured).
  static constexpr bool kSkipSmall = false;
  static constexpr int kMaxDeg = 12;
  PowInt<float> ip;  // u^n
  float a;           // clamp: s = max(u, a) - 1
  int deg;
  float c[kMaxDeg + 1];  // u^f ~ c[0] + c[1] s + ... + c[deg] s^deg

  // Runtime-loop form (edge tiles, pow_eval's generic check); PowSplitAt<n>::batch computes the
  // same operations in the same order with n known at compile time.
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

// The setup itself (no cache). n is the member of SplitExponents below q whose powering + Horner
// needs the fewest vector multiplies (ties: the larger n), e.g. q = 13.7 as u^12 · u^1.7. The degree
// is padded to >= 3 with zero leading coefficients (exact in Horner), as PowSplitAt interleaves two
// Horner steps with its powering.
inline bool build(double q, PowSplitF* pw) {
  if (!(q > 1.0) || !(q < kMaxN + 1) || q == std::floor(q)) return false;
  pw->a = static_cast<float>(std::exp2(-kK / q));
  const double a = pw->a, b = 1.0 + 1.0 / 1024;  // u = |d|/y may exceed 1 by a few ulp
  int best = 0, best_cost = 1 << 30;
  for (int n : SplitExponents::values) {
    if (!(n < q)) break;
    if (q - n >= 4.0) continue;  // f < 4: the bound above; larger f needs high degrees anyway
    float c[PowSplitF::kMaxDeg + 1];
    const int deg = fit_degree(q - n, a, b, c);
    if (deg == 0 || powering_cost(n) + deg > best_cost) continue;
    best = n;
    best_cost = powering_cost(n) + deg;
    pw->deg = deg;
    std::copy(c, c + deg + 1, pw->c);
  }
  if (best == 0) return false;
  for (; pw->deg < 3; ++pw->deg) pw->c[pw->deg + 1] = 0.0f;
  pw->ip = PowInt<float>{best, 0.0f};
  return true;
}

}  // namespace pow_split_detail

// PowSplitF with its exponent N known at compile time (the kernels' main tile). Powering in
// PowInt's order (r = u^(lowest set bit), then r·u^(2^i) for each further set bit, squaring u in
// between), its steps interleaved with the first two Horner steps; then the rest of Horner.
template <int N> struct PowSplitAt {
  static constexpr int kBatch = PowSplitF::kBatch;
  static constexpr bool kSkipSmall = false;
  static constexpr int kTop = 31 - __builtin_clz(static_cast<unsigned>(N));  // highest set bit
  static constexpr int kLow = __builtin_ctz(static_cast<unsigned>(N));        // lowest set bit
  const PowSplitF* f;

  template <int I, int M> LPK_ALWAYS_INLINE static void power_step(Vec<float>* u, Vec<float>* r) {
    if constexpr (I == kLow)
      for (int m = 0; m < M; ++m) r[m] = u[m];
    else if constexpr (I > kLow && ((N >> I) & 1))
      for (int m = 0; m < M; ++m) r[m] = r[m] * u[m];
    if constexpr (I < kTop)
      for (int m = 0; m < M; ++m) u[m] = u[m] * u[m];
  }
  template <int I, int M> LPK_ALWAYS_INLINE void steps(Vec<float>* u, Vec<float>* r, Vec<float>* h,
                                                       const Vec<float>* s, int& k) const {
    power_step<I, M>(u, r);
    if constexpr (I < 2) {  // deg >= 3: two Horner steps after the first one always exist
      const Vec<float> ck = vbroadcast<float>(f->c[k--]);
      for (int m = 0; m < M; ++m) h[m] = h[m] * s[m] + ck;
    }
    if constexpr (I < kTop) steps<I + 1, M>(u, r, h, s, k);
  }

  template <int M> LPK_ALWAYS_INLINE void batch(Vec<float>* u) const {
    typedef Vec<float> V;
    V s[M], h[M], r[M];
    const V av = vbroadcast<float>(f->a), one = vbroadcast<float>(1.0f);
    for (int m = 0; m < M; ++m) s[m] = vmax<float>(u[m], av) - one;
    const V top = vbroadcast<float>(f->c[f->deg]), next = vbroadcast<float>(f->c[f->deg - 1]);
    for (int m = 0; m < M; ++m) h[m] = s[m] * top + next;
    int k = f->deg - 2;
    steps<0, M>(u, r, h, s, k);
    for (; k >= 0; --k) {
      const V ck = vbroadcast<float>(f->c[k]);
      for (int m = 0; m < M; ++m) h[m] = h[m] * s[m] + ck;
    }
    for (int m = 0; m < M; ++m) u[m] = r[m] * h[m];
  }
};

// PowSplitAt's runtime-loop base (the primary template, in simd.h, returns any other pow itself).
template <int N> const PowSplitF& generic_pow(const PowSplitAt<N>& pw) { return *pw.f; }

template <class Pow> struct is_split_pow : std::false_type {};
template <> struct is_split_pow<PowSplitF> : std::true_type {};
template <int N> struct is_split_pow<PowSplitAt<N>> : std::true_type {};

// Calls fn(PowSplitAt<n>{&ps}) for ps's exponent n (a member of SplitExponents, by build()).
template <class F, int... Ns> void with_split_exponent(const PowSplitF& ps, const F& fn, IntList<Ns...>) {
  const bool done = ((ps.ip.k == Ns && (fn(PowSplitAt<Ns>{&ps}), true)) || ...);
  if (!done) fn(ps);  // not reached: build() picks from SplitExponents
}
template <class F> void with_split_exponent(const PowSplitF& ps, const F& fn) {
  with_split_exponent(ps, fn, SplitExponents{});
}

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
