// Backward kernels. All reductions run in an order fixed by the shapes alone (never by the
// thread count or timing), so gradients are bitwise reproducible run to run.
//
// p = inf: the subgradient at ONE coordinate per pair, the first d with |x_d - w_d| == y
// (y is the forward output, recomputed bit-identically), +-1 there (sign(0) = 0), 0 elsewhere.
// finite p: dy/dx_d = sign(d)·(|d|/y)^(p-1), 0 for pairs with y = 0; dy/dw_d = -dy/dx_d.
#pragma once

#include <algorithm>
#include <vector>

#include "lp_dist_fwd.h"
#include "parallel.h"
#include "simd.h"

namespace lpk {

// Finds the first d in [0, D) with |xr[d] - wr[d]| == target, or -1. Scans 8-vector chunks with
// a vertical max first (all terms are <= target, so a chunk holds the target iff its max equals it).
template <class T>
inline int64_t first_hit(const T* xr, const T* wr, int64_t D, T target) {
  using V = Vec<T>;
  constexpr int W = VT<T>::W;
  constexpr int64_t kChunk = 8 * W;
  for (int64_t c0 = 0; c0 < D; c0 += kChunk) {
    const int64_t c1 = std::min(D, c0 + kChunk);
    if (c1 - c0 == kChunk) {
      V acc = V{};
      for (int64_t d = c0; d < c1; d += W) acc = vmax<T>(acc, vabs<T>(vload(xr + d) - vload(wr + d)));
      if (hmax<T>(acc) != target) continue;
    }
    int64_t d = c0;
    for (; d + W <= c1; d += W) {  // find the vector holding the hit, then the lane
      const V a = vabs<T>(vload(xr + d) - vload(wr + d));
      if (!all_below<T, 1>(&a, target)) break;  // some lane >= target, i.e. == target
    }
    for (; d < c1; ++d)
      if (std::abs(xr[d] - wr[d]) == target) return d;
  }
  return -1;
}

// am[b, n] = first d with |x[b, d] - w[n, d]| == y[b, n], or -1 (NaN inputs). Tiled like the
// forward so a tile of w rows stays in L2 while the x rows sweep over it.
// With blk (from linf_forward) the scan starts at the recorded block: the first maximal coordinate
// lies in it, and no earlier coordinate attains the max; without a hit there it rescans from 0.
template <class T>
void linf_argmax(const T* x, const T* w, const T* y, int64_t* am, int64_t B, int64_t N, int64_t D,
                 const int32_t* blk = nullptr) {
  for_each_tile(B, N, [&](int64_t b0, int64_t b1, int64_t n0, int64_t n1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t k = b * N + n;
        const T* xr = x + b * D;
        const T* wr = w + n * D;
        int64_t hit = -1;
        if (blk) {
          const int64_t s0 = std::min<int64_t>(D, int64_t(blk[k]) * kTileD);
          const int64_t s1 = std::min<int64_t>(D, s0 + kTileD);
          const int64_t h = first_hit(xr + s0, wr + s0, s1 - s0, y[k]);
          if (h >= 0) hit = s0 + h;
        }
        am[k] = hit >= 0 ? hit : first_hit(xr, wr, D, y[k]);
      }
  });
}

template <class T> inline T sign_of(T v) { return T((v > T(0)) - (v < T(0))); }

// gx[b, am] += g·s, gw[n, am] -= g·s with s = sign(x[b, am] - w[n, am]); gx, gw zero-filled
// (either may be null). Each output row is owned by one task; sums run in increasing n (resp. b).
template <class T>
void linf_backward(const T* g, const T* x, const T* w, const int64_t* am, T* gx, T* gw,
                   int64_t B, int64_t N, int64_t D) {
  if (gx)
    parallel_blocks(B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t d = am[b * N + n];
          if (d >= 0) gx[b * D + d] += g[b * N + n] * sign_of(x[b * D + d] - w[n * D + d]);
        }
    });
  if (gw)
    parallel_blocks(N, 64, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t b = 0; b < B; ++b) {
          const int64_t d = am[b * N + n];
          if (d >= 0) gw[n * D + d] -= g[b * N + n] * sign_of(x[b * D + d] - w[n * D + d]);
        }
    });
}

// Accumulates e = sign(x_i - w_j)·c[i, j]·pw(|x_i - w_j|·iy[i, j]) into gx[i] (+) and gw[j] (-)
// over d in [0, D), for an MB x NB block of pairs. gx or gw may be null.
template <class T, int MB, int NB, class Pow>
void lpgrad_micro(const T* x, const T* w, int64_t D, const T* c, const T* iy, int64_t ldc,
                  T* gx, T* gw, const Pow& pw) {
  using V = Vec<T>;
  constexpr int W = VT<T>::W;
  V cv[MB][NB], iv[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      cv[i][j] = vbroadcast<T>(c[i * ldc + j]);
      iv[i][j] = vbroadcast<T>(iy[i * ldc + j]);
    }
  for (int64_t d = 0; d < D; d += W) {
    const int r = static_cast<int>(std::min<int64_t>(W, D - d));
    const bool full = r == W;
    V xv[MB], wv[NB], ax[MB], aw[NB];
    for (int i = 0; i < MB; ++i) {
      xv[i] = full ? vload(x + i * D + d) : vload_part(x + i * D + d, r);
      ax[i] = V{};
    }
    for (int j = 0; j < NB; ++j) {
      wv[j] = full ? vload(w + j * D + d) : vload_part(w + j * D + d, r);
      aw[j] = V{};
    }
    V u[MB * NB];
    IVec<T> sg[MB * NB];
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NB; ++j) {
        const V diff = xv[i] - wv[j];
        sg[i * NB + j] = vsignbits<T>(diff);
        u[i * NB + j] = vabs<T>(diff) * iv[i][j];
      }
    if constexpr (Pow::kSkipSmall)
      if (all_below<T, MB * NB>(u, pw.thr)) continue;  // all |e| < 2^-64·|g|
    pow_apply<MB * NB>(pw, u);
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NB; ++j) {
        const V e = vxorsign<T>(u[i * NB + j] * cv[i][j], sg[i * NB + j]);
        ax[i] += e;
        aw[j] += e;
      }
    if (gx)
      for (int i = 0; i < MB; ++i) {
        T* p = gx + i * D + d;
        if (full) vstore(p, vload(p) + ax[i]);
        else vstore_part(p, vload_part(p, r) + ax[i], r);
      }
    if (gw)
      for (int j = 0; j < NB; ++j) {
        T* p = gw + j * D + d;
        if (full) vstore(p, vload(p) - aw[j]);
        else vstore_part(p, vload_part(p, r) - aw[j], r);
      }
  }
}

// Number of w-row chunks of the finite-p backward: a function of N only (determinism).
inline int64_t lp_backward_chunks(int64_t N) { return std::max<int64_t>(1, std::min<int64_t>(16, N / 32)); }

// Finite-p gradients. gx [B, D] and gw [N, D] zero-filled (either may be null); gx_parts is a
// zero-filled [chunks, B, D] scratch buffer when gx is requested and chunks > 1. Work is split into fixed
// chunks of w rows; chunk c owns gw rows and writes its partial gx to gx_parts[c]; the partials
// are then summed in chunk order.
template <class T, class Pow>
void lp_backward(const T* g, const T* x, const T* w, const T* y, T* gx, T* gw, T* gx_parts,
                 int64_t B, int64_t N, int64_t D, const Pow& pw) {
  std::vector<T> c(B * N), iy(B * N);
  for (int64_t k = 0; k < B * N; ++k) {
    const bool ok = y[k] >= tiny_norm<T>();
    iy[k] = ok ? T(1) / y[k] : T(0);
    c[k] = ok ? g[k] : T(0);
  }
  const int64_t chunks = lp_backward_chunks(N);
  const int64_t per = (N + chunks - 1) / chunks;
  parallel_tasks(chunks, [&](int64_t ch) {
    FlushGuard guard;
    {
      const int64_t n0 = ch * per, n1 = std::min(N, n0 + per);
      T* gxp = gx ? (chunks == 1 ? gx : gx_parts + ch * B * D) : nullptr;
      for (int64_t b = 0; b < B; b += 2) {
        const int mb = static_cast<int>(std::min<int64_t>(2, B - b));
        for (int64_t n = n0; n < n1; n += kPN) {
          const int nb = static_cast<int>(std::min<int64_t>(kPN, n1 - n));
          const int64_t o = b * N + n;
          T* gxo = gxp ? gxp + b * D : nullptr;
          T* gwo = gw ? gw + n * D : nullptr;
          dispatch_pair(mb, nb, [&](auto MBc, auto NBc) {
            constexpr int MB = decltype(MBc)::value, NB = decltype(NBc)::value;
            if constexpr (MB == 2 && NB == kPN)
              lpgrad_micro<T, MB, NB>(x + b * D, w + n * D, D, c.data() + o, iy.data() + o, N, gxo,
                                      gwo, pw);
            else  // edge tiles: the runtime-loop pow, as in the forward
              lpgrad_micro<T, MB, NB>(x + b * D, w + n * D, D, c.data() + o, iy.data() + o, N, gxo,
                                      gwo, generic_pow(pw));
          });
        }
      }
    }
  });
  if (gx && chunks > 1)
    parallel_blocks(B, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const T* src = gx_parts + ch * B * D;
        for (int64_t k = b0 * D; k < b1 * D; ++k) gx[k] += src[k];
      }
    });
}

}  // namespace lpk
