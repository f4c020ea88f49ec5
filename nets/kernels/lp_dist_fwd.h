// Forward kernels: y[b, n] = ||x_b - w_n||_p for p = inf and finite p.
//
// Blocking: tasks are (32 x-rows) x (192 w-rows) tiles (disjoint outputs, run in parallel);
// inside a task D is cut in blocks of 256 and a register micro-kernel computes MB x NB outputs
// (4 x 3 for p = inf, 2 x kPN for finite p) with W-lane vectors. The p = inf forward without a
// block record (inference, certification, the m pass of finite p) uses (32 x 96) tiles and D
// blocks of 1024: a quarter of the horizontal reductions per output, the w tile (96 x 4 KB) still
// in L2 (measured on Zen 3, 1 thread, 512 x 784 x 1024: 12.2 -> 22 G el/s). Tails of D are zero-padded
// vector loads (a padded lane contributes |0 - 0| = 0, neutral for max and for the p-sum).
// No B x N x D intermediate exists: memory is O(B·N) besides the inputs.
//
// p = inf: each |x_d - w_d| is one correctly rounded subtraction; abs and max are exact, so the
// float result is the correctly rounded exact value (same bits as the pure-torch reference).
#pragma once

#include <algorithm>
#include <type_traits>

#include "parallel.h"
#include "simd.h"

namespace lpk {

constexpr int64_t kTileB = 32;
constexpr int64_t kTileN = 192;
constexpr int64_t kTileD = 256;  // also the granularity of the argmax block record (backward scan)
constexpr int64_t kLongTileN = 96;
constexpr int64_t kLongTileD = 1024;
// Finite-p micro-tile: 2 x-rows x kPN w-rows, 8 pair vectors per step, handed to the pow in
// batches of Pow::kBatch (8 for exp2/log2: independent chains hide the polynomials' latency; AVX2
// spills a few registers to L1 and is still 1.2-1.4x faster than 2 x 2, measured on Zen 3).
constexpr int kPN = 4;

// Calls f(integral_constant<mb>, integral_constant<nb>) for runtime mb in {1, 2}, nb in [1, kPN].
template <class F>
inline void dispatch_pair(int mb, int nb, const F& f) {
  using std::integral_constant;
  auto with_nb = [&](auto MBc) {
    switch (nb) {
      case 1: f(MBc, integral_constant<int, 1>{}); break;
      case 2: f(MBc, integral_constant<int, 2>{}); break;
      case 3: if constexpr (kPN >= 3) f(MBc, integral_constant<int, 3>{}); break;
      default: if constexpr (kPN >= 4) f(MBc, integral_constant<int, 4>{}); break;
    }
  };
  if (mb == 2) with_nb(integral_constant<int, 2>{});
  else with_nb(integral_constant<int, 1>{});
}

// y[i, j] = max(y[i, j], max_{d in [d0, d1)} |x[i, d] - w[j, d]|)
// blk (optional): blk[i, j] = bidx whenever this D block strictly raises y[i, j], so after all
// blocks it holds the FIRST block that contains a maximal coordinate.
template <class T, int MB, int NB>
void linf_micro(const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t d0, int64_t d1,
                T* y, int64_t ldy, int32_t* blk, int32_t bidx) {
  using V = Vec<T>;
  constexpr int W = VT<T>::W;
  V acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = V{};
  int64_t d = d0;
  for (; d + W <= d1; d += W) {
    V wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = vload(w + j * ldw + d);
    for (int i = 0; i < MB; ++i) {
      const V xv = vload(x + i * ldx + d);
      for (int j = 0; j < NB; ++j) acc[i][j] = vmax<T>(acc[i][j], vabs<T>(xv - wv[j]));
    }
  }
  if (d < d1) {
    const int r = static_cast<int>(d1 - d);
    V wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = vload_part(w + j * ldw + d, r);
    for (int i = 0; i < MB; ++i) {
      const V xv = vload_part(x + i * ldx + d, r);
      for (int j = 0; j < NB; ++j) acc[i][j] = vmax<T>(acc[i][j], vabs<T>(xv - wv[j]));
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      const T v = hmax<T>(acc[i][j]);
      T& out = y[i * ldy + j];
      if (v > out) {
        out = v;
        if (blk) blk[i * ldy + j] = bidx;
      }
    }
}

// s[i, j] += sum_{d in [d0, d1)} pw(|x[i, d] - w[j, d]| * inv[i, j])
template <class T, int MB, int NB, class Pow>
void lpsum_micro(const T* x, int64_t ldx, const T* w, int64_t ldw, int64_t d0, int64_t d1,
                 const T* inv, T* s, int64_t ldy, const Pow& pw) {
  using V = Vec<T>;
  constexpr int W = VT<T>::W;
  V acc[MB][NB];
  V iv[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      acc[i][j] = V{};
      iv[i][j] = vbroadcast<T>(inv[i * ldy + j]);
    }
  for (int64_t d = d0; d < d1; d += W) {
    const int r = static_cast<int>(std::min<int64_t>(W, d1 - d));
    V wv[NB], u[MB * NB];
    for (int j = 0; j < NB; ++j) wv[j] = r == W ? vload(w + j * ldw + d) : vload_part(w + j * ldw + d, r);
    for (int i = 0; i < MB; ++i) {
      const V xv = r == W ? vload(x + i * ldx + d) : vload_part(x + i * ldx + d, r);
      for (int j = 0; j < NB; ++j) u[i * NB + j] = vabs<T>(xv - wv[j]) * iv[i][j];
    }
    if constexpr (Pow::kSkipSmall)
      if (all_below<T, MB * NB>(u, pw.thr)) continue;  // all terms < 2^-64
    pow_apply<MB * NB>(pw, u);
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NB; ++j) acc[i][j] += u[i * NB + j];
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) s[i * ldy + j] += hsum<T>(acc[i][j]);
}

template <class T>
using LinfMicroFn = void (*)(const T*, int64_t, const T*, int64_t, int64_t, int64_t, T*, int64_t,
                             int32_t*, int32_t);

template <class T>
LinfMicroFn<T> linf_micro_for(int mb, int nb) {
  static const LinfMicroFn<T> table[4][3] = {
      {linf_micro<T, 1, 1>, linf_micro<T, 1, 2>, linf_micro<T, 1, 3>},
      {linf_micro<T, 2, 1>, linf_micro<T, 2, 2>, linf_micro<T, 2, 3>},
      {linf_micro<T, 3, 1>, linf_micro<T, 3, 2>, linf_micro<T, 3, 3>},
      {linf_micro<T, 4, 1>, linf_micro<T, 4, 2>, linf_micro<T, 4, 3>}};
  return table[mb - 1][nb - 1];
}

// Runs body(b0, b1, n0, n1) over all (tile_b x tile_n) output tiles, one task per tile.
template <class F>
void for_each_tile(int64_t B, int64_t N, const F& body, int64_t tile_b = kTileB,
                   int64_t tile_n = kTileN) {
  const int64_t tb = (B + tile_b - 1) / tile_b, tn = (N + tile_n - 1) / tile_n;
  parallel_tasks(tb * tn, [&](int64_t t) {
    const int64_t b0 = (t / tn) * tile_b, n0 = (t % tn) * tile_n;
    body(b0, std::min(B, b0 + tile_b), n0, std::min(N, n0 + tile_n));
  });
}

// y must be zero-filled, [B, N] row-major; x [B, D], w [N, D] row-major. blk (optional, zero-filled
// int32 [B, N]) receives the first kTileD-block of D holding each pair's maximal coordinate.
template <class T>
void linf_forward(const T* x, const T* w, T* y, int64_t B, int64_t N, int64_t D,
                  int32_t* blk = nullptr) {
  const int64_t tile_d = blk ? kTileD : kLongTileD;
  for_each_tile(B, N, [&](int64_t b0, int64_t b1, int64_t n0, int64_t n1) {
    for (int64_t d0 = 0; d0 < D; d0 += tile_d) {
      const int64_t d1 = std::min(D, d0 + tile_d);
      for (int64_t b = b0; b < b1; b += 4) {
        const int mb = static_cast<int>(std::min<int64_t>(4, b1 - b));
        for (int64_t n = n0; n < n1; n += 3) {
          const int nb = static_cast<int>(std::min<int64_t>(3, n1 - n));
          linf_micro_for<T>(mb, nb)(x + b * D, D, w + n * D, D, d0, d1, y + b * N + n, N,
                                    blk ? blk + b * N + n : nullptr, static_cast<int32_t>(d0 / kTileD));
        }
      }
    }
  }, kTileB, blk ? kTileN : kLongTileN);
}

// y holds m = ||x - w||_inf on entry and ||x - w||_p on exit (m·(sum (|d|/m)^p)^(1/p)).
// s is a zero-filled [B, N] scratch buffer, inv an uninitialised one.
template <class T, class Pow>
void lp_forward_from_inf(const T* x, const T* w, T* y, T* s, T* inv, int64_t B, int64_t N,
                         int64_t D, double p, const Pow& pw) {
  for (int64_t k = 0; k < B * N; ++k) inv[k] = y[k] >= tiny_norm<T>() ? T(1) / y[k] : T(0);
  for_each_tile(B, N, [&](int64_t b0, int64_t b1, int64_t n0, int64_t n1) {
    FlushGuard guard;
    for (int64_t d0 = 0; d0 < D; d0 += kTileD) {
      const int64_t d1 = std::min(D, d0 + kTileD);
      for (int64_t b = b0; b < b1; b += 2) {
        const int mb = static_cast<int>(std::min<int64_t>(2, b1 - b));
        for (int64_t n = n0; n < n1; n += kPN) {
          const int nb = static_cast<int>(std::min<int64_t>(kPN, n1 - n));
          const int64_t o = b * N + n;
          dispatch_pair(mb, nb, [&](auto MBc, auto NBc) {
            constexpr int MB = decltype(MBc)::value, NB = decltype(NBc)::value;
            if constexpr (MB == 2 && NB == kPN)
              lpsum_micro<T, MB, NB>(x + b * D, D, w + n * D, D, d0, d1, inv + o, s + o, N, pw);
            else  // edge tiles: the runtime-loop pow (one instantiation for all exponents)
              lpsum_micro<T, MB, NB>(x + b * D, D, w + n * D, D, d0, d1, inv + o, s + o, N,
                                     generic_pow(pw));
          });
        }
      }
    }
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t o = b * N + n;
        if (inv[o] != T(0)) y[o] = static_cast<T>(double(y[o]) * std::pow(double(s[o]), 1.0 / p));
      }
  });
}

}  // namespace lpk
