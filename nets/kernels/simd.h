// Portable SIMD helpers for the lp-distance kernels (GCC/Clang vector extensions).
//
// One source compiles to AVX2+FMA (-mavx2 -mfma), AVX-512 (64-byte vectors) or the baseline ISA
// (generic build): the compiler lowers the fixed-width vectors to whatever the target has.
// Nothing here changes the floating-point environment except FlushGuard (finite-p kernels only),
// which saves MXCSR, sets FTZ/DAZ for the current thread and restores it on scope exit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace lpk {

// The pow batches must inline into the micro-kernels: a call boundary sends every live vector
// through memory. GCC's heuristics leave the larger ones out-of-line in the -fPIC extension (called
// through the PLT: PowSplitF's fwd+bwd ran 1.8x slower, measured), so it is forced.
#define LPK_ALWAYS_INLINE inline __attribute__((always_inline))

#if defined(__AVX512F__) && defined(LPK_WIDE)
constexpr int kVecBytes = 64;  // the avx512 build variant
#else
constexpr int kVecBytes = 32;
#endif

template <class T> struct VT;

template <> struct VT<float> {
  typedef float V __attribute__((vector_size(kVecBytes)));
  typedef int32_t I __attribute__((vector_size(kVecBytes)));
  static constexpr int W = kVecBytes / 4;
  static constexpr int32_t kAbs = 0x7fffffff;
  static constexpr int32_t kSign = static_cast<int32_t>(0x80000000u);
};

template <> struct VT<double> {
  typedef double V __attribute__((vector_size(kVecBytes)));
  typedef int64_t I __attribute__((vector_size(kVecBytes)));
  static constexpr int W = kVecBytes / 8;
  static constexpr int64_t kAbs = 0x7fffffffffffffffLL;
  static constexpr int64_t kSign = static_cast<int64_t>(0x8000000000000000ULL);
};

template <class T> using Vec = typename VT<T>::V;
template <class T> using IVec = typename VT<T>::I;

template <class T> inline Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Loads n < W elements, the other lanes are 0.
template <class T> inline Vec<T> vload_part(const T* p, int n) {
  Vec<T> v = {};
  std::memcpy(&v, p, sizeof(T) * n);
  return v;
}

template <class T> inline void vstore(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }
template <class T> inline void vstore_part(T* p, Vec<T> v, int n) { std::memcpy(p, &v, sizeof(T) * n); }

template <class T> inline Vec<T> vbroadcast(T s) {
  Vec<T> v = {};
  return v + s;
}

// maxps semantics: a > b ? a : b (exact).
template <class T> inline Vec<T> vmax(Vec<T> a, Vec<T> b) { return a > b ? a : b; }

// |d|, exact (clears the sign bit).
template <class T> inline Vec<T> vabs(Vec<T> d) {
  return reinterpret_cast<Vec<T>>(reinterpret_cast<IVec<T>>(d) & VT<T>::kAbs);
}

template <class T> inline IVec<T> vsignbits(Vec<T> d) {
  return reinterpret_cast<IVec<T>>(d) & VT<T>::kSign;
}

// v with its sign flipped where signbits is set (exact).
template <class T> inline Vec<T> vxorsign(Vec<T> v, IVec<T> signbits) {
  return reinterpret_cast<Vec<T>>(reinterpret_cast<IVec<T>>(v) ^ signbits);
}

// Terms u^q < 2^-kCutBits (relative to the max term 1) may be dropped: u < thr = 2^(-kCutBits/q).
// Their total effect is below D·2^-64 relative, far under float32/float64 rounding of the sum.
constexpr double kCutBits = 64.0;
inline double cut_threshold(double q) { return q > 0 ? std::exp2(-kCutBits / q) : 0.0; }

// True when every lane of u[0..M) is < thr (then the whole batch's powers may be skipped).
template <class T, int M> inline bool all_below(const Vec<T>* u, T thr) {
  IVec<T> m = u[0] >= thr;
  for (int k = 1; k < M; ++k) m |= u[k] >= thr;
  uint64_t parts[kVecBytes / 8];
  std::memcpy(parts, &m, sizeof(m));
  uint64_t acc = 0;
  for (int k = 0; k < kVecBytes / 8; ++k) acc |= parts[k];
  return acc == 0;
}

// Smallest norm for which the finite-p normalisation 1/m is used (below it: value m, gradient 0).
template <class T> inline T tiny_norm() { return std::numeric_limits<T>::min(); }

template <class T> inline T hmax(Vec<T> v) {
  T r = v[0];
  for (int i = 1; i < VT<T>::W; ++i) r = v[i] > r ? v[i] : r;
  return r;
}

template <class T> inline T hsum(Vec<T> v) {
  T r = 0;
  for (int i = 0; i < VT<T>::W; ++i) r += v[i];
  return r;
}

// u^k for an integer k >= 0 by binary exponentiation (k = 0 gives 1 where u != 0, else 0:
// the p = 1 gradient sign(d)·|d|^0 with the convention sign(0) = 0). batch<M> raises M vectors
// in place at once, so the exponent's bit loop is paid once per M vectors.
template <class T> struct PowInt {
  static constexpr int kBatch = 8;         // vectors per batch (see pow_apply)
  static constexpr bool kSkipSmall = true;  // kernels skip batches below thr (see all_below)
  int k;
  T thr;  // lanes below thr have u^k < 2^-kCutBits: see all_below
  template <int M> LPK_ALWAYS_INLINE void batch(Vec<T>* u) const {
    using V = Vec<T>;
    if (k == 0) {
      const V one = vbroadcast<T>(1), zero = {};
      for (int m = 0; m < M; ++m) u[m] = u[m] != zero ? one : zero;
      return;
    }
    V r[M];
    bool have = false;
    int e = k;
    while (true) {
      if (e & 1) {
        if (have)
          for (int m = 0; m < M; ++m) r[m] = r[m] * u[m];
        else
          for (int m = 0; m < M; ++m) r[m] = u[m];
        have = true;
      }
      e >>= 1;
      if (!e) break;
      for (int m = 0; m < M; ++m) u[m] = u[m] * u[m];
    }
    for (int m = 0; m < M; ++m) u[m] = r[m];
  }
};

// u^q for u in [0, ~1], real q > 0, float32: exp2(q·log2 u). log2 u = k + log2 z with
// z in [sqrt(1/2), sqrt(2)) taken from the bits, log2(1 + x) = x·Q(x) (degree 7), 2^f for
// f in [-1/2, 1/2] by a degree-5 polynomial; both least-squares Chebyshev fits in float32.
// Measured error: <= 9.1e-6 relative for every result above 2^-24 (7.7e-6 above 2^-20), <= 3.1e-7
// absolute overall (400 random q in [1.2, 1000], 2^16 u each spread so that u^q covers [2^-26, 1];
// the error grows with |q·log2 u|, which uniform u rarely makes large). Exact: 1^q = 1. Returns 0
// for u < FLT_MIN or q·log2 u < -124. Used for non-integer q where PowSplitF (pow_split.h) is not.
struct PowRealF {
  static constexpr int kBatch = 8;
  static constexpr bool kSkipSmall = true;
  float q;
  float thr;
  // Stage-wise over M vectors: consecutive instructions belong to independent dependency chains,
  // which keeps the out-of-order core busy (the polynomials are long serial chains).
  template <int M> LPK_ALWAYS_INLINE void batch(Vec<float>* u) const {
    typedef Vec<float> V;
    typedef IVec<float> I;
    V x[M], acc[M], L[M];
    I kk[M], dead[M];
    for (int m = 0; m < M; ++m) {
      const I bits = reinterpret_cast<I>(u[m]);
      kk[m] = (bits - 0x3f3504f3) >> 23;  // arithmetic shift: floor
      x[m] = reinterpret_cast<V>(bits - (kk[m] << 23)) - 1.0f;  // z - 1, z in [sqrt(1/2), sqrt(2))
      acc[m] = vbroadcast<float>(-0.14436884224414825f);
    }
    static constexpr float kLog[7] = {0.2313152700662613f, -0.24826544523239136f, 0.2873954772949219f,
                                      -0.36030882596969604f, 0.48091503977775574f,
                                      -0.7213515043258667f, 1.4426950216293335f};
    for (int c = 0; c < 7; ++c)
      for (int m = 0; m < M; ++m) acc[m] = acc[m] * x[m] + kLog[c];
    const V lo = vbroadcast<float>(-125.0f);
    for (int m = 0; m < M; ++m) {
      V l = (x[m] * acc[m] + __builtin_convertvector(kk[m], V)) * q;
      dead[m] = (l < -124.0f) | (u[m] < std::numeric_limits<float>::min());
      l = l > lo ? l : lo;
      const V n = (l + 12582912.0f) - 12582912.0f;  // round to nearest integer (|l| < 2^22)
      kk[m] = __builtin_convertvector(n, I);
      L[m] = l - n;                                  // fraction in [-0.5, 0.5]
      acc[m] = vbroadcast<float>(0.0013395278947427869f);
    }
    static constexpr float kExp[5] = {0.009670763276517391f, 0.05550340563058853f,
                                      0.24022211134433746f, 0.6931471824645996f, 1.0f};
    for (int c = 0; c < 5; ++c)
      for (int m = 0; m < M; ++m) acc[m] = acc[m] * L[m] + kExp[c];
    for (int m = 0; m < M; ++m) {
      const I r = reinterpret_cast<I>(acc[m]) + (kk[m] << 23);  // P·2^n, n >= -125: normal
      u[m] = reinterpret_cast<V>(r & ~dead[m]);
    }
  }
  inline Vec<float> operator()(Vec<float> u) const {
    batch<1>(&u);
    return u;
  }
};

// float64: lane-wise std::pow (accuracy first; float64 is the checking dtype, not the fast one).
struct PowRealD {
  static constexpr int kBatch = 8;
  static constexpr bool kSkipSmall = true;
  double q;
  double thr;
  inline Vec<double> operator()(Vec<double> u) const {
    Vec<double> r;
    for (int i = 0; i < VT<double>::W; ++i) r[i] = u[i] > 0 ? std::pow(u[i], q) : 0.0;
    return r;
  }
  template <int M> LPK_ALWAYS_INLINE void batch(Vec<double>* u) const {
    for (int m = 0; m < M; ++m) u[m] = (*this)(u[m]);
  }
};

// Applies pw to u[0..N) in batches of Pow::kBatch vectors (the best batch depends on the pow's
// register needs: 8 hides PowRealF's long chains, PowSplitF spills at 8 on AVX2).
template <int N, class Pow, class V> LPK_ALWAYS_INLINE void pow_apply(const Pow& pw, V* u) {
  constexpr int kB = Pow::kBatch < N ? Pow::kBatch : N;
  pw.template batch<kB>(u);
  if constexpr (N > kB) pow_apply<N - kB>(pw, u + kB);
}

// The pow a kernel's edge tiles use: the pow itself; pow_split.h overloads it for PowSplitAt<N>
// (compile-time exponent, instantiated for the main tile only) to return its runtime-loop base.
template <class Pow> const Pow& generic_pow(const Pow& pw) { return pw; }

template <class T> struct PowReal;
template <> struct PowReal<float> { typedef PowRealF type; };
template <> struct PowReal<double> { typedef PowRealD type; };

// Sets FTZ/DAZ on this thread for the lifetime of the object, then restores MXCSR.
// Used only by the finite-p kernels (training); the p = inf kernels never change MXCSR.
struct FlushGuard {
#if defined(__SSE__)
  unsigned int saved;
  FlushGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }
  ~FlushGuard() { _mm_setcsr(saved); }
#endif
};

}  // namespace lpk
