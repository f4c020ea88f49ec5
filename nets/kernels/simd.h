// Portable SIMD helpers for the lp-distance kernels (GCC/Clang vector extensions).
//
// One source compiles to AVX2+FMA (-mavx2 -mfma) or to the baseline ISA (generic build): the
// vector width is fixed at 32 bytes and the compiler lowers it to whatever the target has.
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

constexpr int kVecBytes = 32;

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
  int k;
  template <int M> inline void batch(Vec<T>* u) const {
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

// u^q for u in [0, ~1], real q > 0, float32: exp2(q·log2 u) with Cephes-style polynomials
// (relative error ~1e-6 of the result; exact 0 for u < FLT_MIN or q·log2 u < -126).
struct PowRealF {
  float q;
  inline Vec<float> operator()(Vec<float> u) const {
    typedef Vec<float> V;
    typedef IVec<float> I;
    const I bits = reinterpret_cast<I>(u);
    I e = ((bits >> 23) & 0xff) - 127;
    V m = reinterpret_cast<V>((bits & 0x7fffff) | 0x3f800000);  // [1, 2)
    const I big = m > vbroadcast<float>(1.41421356237f);       // -1 where true
    m = big ? m * 0.5f : m;
    e = e - big;
    const V x = m - 1.0f;
    const V z = x * x;
    V poly = vbroadcast<float>(7.0376836292E-2f);
    poly = poly * x - 1.1514610310E-1f;
    poly = poly * x + 1.1676998740E-1f;
    poly = poly * x - 1.2420140846E-1f;
    poly = poly * x + 1.4249322787E-1f;
    poly = poly * x - 1.6668057665E-1f;
    poly = poly * x + 2.0000714765E-1f;
    poly = poly * x - 2.4999993993E-1f;
    poly = poly * x + 3.3333331174E-1f;
    const V ln_m = x - 0.5f * z + poly * x * z;
    V L = (ln_m * 1.44269504089f + __builtin_convertvector(e, V)) * q;
    const V lo = vbroadcast<float>(-127.0f);
    L = L > lo ? L : lo;
    const V n = (L + 12582912.0f) - 12582912.0f;  // round to nearest integer
    const V f = L - n;                             // [-0.5, 0.5]
    V px = vbroadcast<float>(1.535336188319500E-4f);
    px = px * f + 1.339887440266574E-3f;
    px = px * f + 9.618437357674640E-3f;
    px = px * f + 5.550332471162809E-2f;
    px = px * f + 2.402264791363012E-1f;
    px = px * f + 6.931472028550421E-1f;
    px = px * f + 1.0f;
    const I ni = __builtin_convertvector(n, I);
    const V scale = reinterpret_cast<V>((ni + 127) << 23);
    V r = px * scale;
    const V zero = {};
    r = (L < -126.0f) ? zero : r;
    r = (u < std::numeric_limits<float>::min()) ? zero : r;
    return r;
  }
  template <int M> inline void batch(Vec<float>* u) const {
    for (int m = 0; m < M; ++m) u[m] = (*this)(u[m]);
  }
};

// float64: lane-wise std::pow (accuracy first; float64 is the checking dtype, not the fast one).
struct PowRealD {
  double q;
  inline Vec<double> operator()(Vec<double> u) const {
    Vec<double> r;
    for (int i = 0; i < VT<double>::W; ++i) r[i] = u[i] > 0 ? std::pow(u[i], q) : 0.0;
    return r;
  }
  template <int M> inline void batch(Vec<double>* u) const {
    for (int m = 0; m < M; ++m) u[m] = (*this)(u[m]);
  }
};

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
