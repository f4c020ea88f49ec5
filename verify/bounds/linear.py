"""Error-bounded float64 arithmetic of linear bound propagation (verify/bounds/crown.py).

A back-substitution step claims, for the tensors of one op, ``A·y ≥ Σ_i A_i·x_i + β`` for every value
the op's inputs ``x_i`` may take inside their boxes (``A``: coefficients of the op's output ``y``,
``A_i``: of its inputs, ``β``: a scalar per (sample, spec row)). The coefficients ``A_i`` are whatever
float64 numbers the computation produced; every discrepancy between them and the exact real
coefficients is charged to ``β`` with a proven bound, so the claim holds for the computed numbers.

Bounds used (Higham, Accuracy and Stability, Thm 3.1/3.5; u = 2^-53; any summation order, FMA or not):

* an m-term float64 dot product ``fl(Σ a_k b_k)`` is within ``γ_m Σ |a_k b_k|`` of the exact value,
  plus ``m·2^-1074`` for products that underflow (an ABSOLUTE term: it is added, never scaled by
  γ; each underflowed product is off by ≤ 2^-1075, the later sums scale that by ≤ 1 + γ_m ≤ 2);
* in particular a coefficient that a relaxation computes as a product (or an n-term dot product)
  of float64 numbers may underflow: its absolute error ≤ 2^-1074 (n·2^-1074) is charged times
  Σ mag(x) of the input it multiplies (:func:`rescaled_err`, :func:`affine_bias`), since the
  relative bounds γ and u do not cover it;
* a sum of m non-negative terms computed in float64 is ``≥ (1 − γ_m)`` times the exact sum, so
  :func:`dot_up` (``fl · (1 + 2γ_m)`` + ``m·2^-1074``, one step up) is an upper bound of the exact sum;
* one rounded product/sum of float64 numbers is within u of the exact result (relative).

Every bias contribution returned here is rounded down (one float64 step after each rounded op).
Tensors are torch float64; batch first (``[N, ...]``), coefficients ``[N, S, *shape]`` (S spec rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from verify.bounds.rounding import TINY32, U32, U64, gamma

TINY64 = 2.0**-1074
_TO = {(torch.float64, -1): torch.tensor(-math.inf, dtype=torch.float64),
       (torch.float64, 1): torch.tensor(math.inf, dtype=torch.float64)}  # read-only directions


def _step(t: torch.Tensor, sign: int) -> torch.Tensor:
    to = _TO.get((t.dtype, sign))
    n = torch.nextafter(t.detach(), to if to is not None else torch.tensor(sign * math.inf, dtype=t.dtype))
    return t + (n - t.detach()) if t.requires_grad else n


def down(t: torch.Tensor) -> torch.Tensor:
    """One float64 step towards -inf (a lower bound of t's exact value when t = RN64(t)). The
    value is exactly nextafter(t); with autograd (α-CROWN) the gradient is the identity's."""
    return _step(t, -1)


def up(t: torch.Tensor) -> torch.Tensor:
    """One float64 step towards +inf (see :func:`down`)."""
    return _step(t, 1)


def t64(a) -> torch.Tensor:
    """A float64 torch tensor of ``a`` (numpy float32/float64 values are exact in float64)."""
    if isinstance(a, torch.Tensor):
        return a.to(torch.float64)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))


@dataclass
class TBox:
    """A box of one tensor in float64: ``lo``, ``hi`` [N, *shape] (or unbatched for constants)."""

    lo: torch.Tensor
    hi: torch.Tensor
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def mag(self) -> torch.Tensor:
        """max(|lo|, |hi|): an upper bound of |t| for every t in the box (computed once)."""
        if "mag" not in self._cache:
            self._cache["mag"] = torch.maximum(self.lo.abs(), self.hi.abs())
        return self._cache["mag"]

    def centre_radius(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(c, r, |c|)`` with ``[lo, hi] ⊆ [c − r, c + r]`` exactly (computed once), None when a
        bound is not finite. ``c = RN64((lo + hi)/2)`` (any rounding), ``r = max(up(hi − c),
        up(c − lo))``: each difference is one rounded op, one step up bounds it."""
        if "cr" not in self._cache:
            lo, hi = self.lo.detach(), self.hi.detach()
            if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
                self._cache["cr"] = None
            else:
                c = 0.5 * (lo + hi)
                r = torch.maximum(up(hi - c), up(c - lo)).clamp(min=0.0)
                self._cache["cr"] = (c, r, c.abs())
        return self._cache["cr"]


@dataclass
class Relaxed:
    """One op's back-substitution step: ``A·y ≥ Σ_i parts[i]·x_i + bias`` (bias [N, S], sound)."""

    parts: dict[int, torch.Tensor]
    bias: torch.Tensor


@dataclass
class Ctx:
    """Options of one bound computation. ``ort``: also bound onnxruntime's float32 evaluation
    (theorem (b)): every op's output carries its float32 error as one more bounded input.
    ``slopes``: per Relu node name, lower slopes in [0, 1] ([N, *shape]) chosen by α-CROWN (None:
    the adaptive CROWN choice)."""

    ort: bool = True
    slopes: dict[str, torch.Tensor] = field(default_factory=dict)


def _flat(a: torch.Tensor, lead: int) -> torch.Tensor:
    return a.reshape(*a.shape[:lead], -1)


def _like(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``v`` ([N, *s], [1, *s] or [*s]) broadcast to [N, *s] of coefficients ``a`` [N, S, *s]."""
    return v.expand(a.shape[0], *a.shape[2:])


def _terms(a: torch.Tensor) -> int:
    """The number of terms of each row sum of coefficients ``a`` [N, S, *s] (at least 1)."""
    return max(1, math.prod(a.shape[2:]))


def _rowdot(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """fl64 of Σ a·v over the trailing dims [N, S] (v broadcastable to [N, *s]), one batched
    matrix product (any summation order: every bound here holds for all orders)."""
    return torch.bmm(_flat(a, 2), _flat(_like(v, a), 1).unsqueeze(-1)).squeeze(-1)


def dot_up(abs_a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Upper bound [N, S] of the exact Σ over the trailing dims of ``abs_a`` [N, S, *s] · ``v``
    (broadcastable to [N, *s]); both non-negative."""
    abs_a = abs_a.detach()
    return _sum_up(_rowdot(abs_a, v.detach()), _terms(abs_a))


def _sum_up(s: torch.Tensor, m: int) -> torch.Tensor:
    """Upper bound of the exact m-term sum of non-negative products whose float64 sum is ``s``
    (any order): ``s ≥ (1 − γ_m)(exact − m·2^-1075)``, so ``s·(1 + 2γ_m) + m·2^-1074`` (each
    operation rounded up) is above it."""
    return up(up(s * (1.0 + 2.0 * gamma(m, U64))) + m * TINY64)


def dot_lo(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Lower bound [N, S] of the exact Σ a·v over the trailing dims (v broadcastable to [N, *s]):
    ``fl(Σ a v) − γ_m Σ|a v| − m·2^-1074`` (the last term: products that underflow)."""
    m = _terms(a)
    vv = _like(v, a)
    s = _rowdot(a, vv)
    # γ_m Σ|a v| for the roundings of normal results, plus 2^-1074 for each product that underflows
    # (an absolute error, not scaled by γ_m: 2^-1074·0.51 rounds to 2^-1074, a 96 % error)
    err = up(up(gamma(m, U64) * dot_up(a.abs(), vv.abs())) + m * TINY64)
    return down(s - err)


def concretize(a: torch.Tensor, box: TBox) -> torch.Tensor:
    """Lower bound [N, S] of min over the box of Σ a·t (t in [lo, hi]).

    Centre-radius form (one pass over |A| for both error terms): with ``c``, ``r`` from
    :meth:`TBox.centre_radius` ([lo, hi] ⊆ [c − r, c + r] exactly), every t of the box has
    ``Σ a t ≥ Σ a c − Σ |a| r`` (exactly, since |t − c| ≤ r). ``fl(Σ a c)`` is within
    ``γ_m Σ|a||c| + m·2^-1074`` of ``Σ a c`` (Higham, products that underflow) and
    :func:`dot_up` bounds ``Σ|a| r`` and ``Σ|a||c|`` from above; each subtraction is rounded down.
    Non-finite boxes take the sign-split form over the finite bounds plus the infinite ones where
    the coefficient is non-zero (±inf; both: NaN; a NaN bound: NaN). A ZERO coefficient contributes exactly 0 whatever
    the box (the term is absent: relaxations that fall back to constants give their input
    coefficient 0), so an infinite input box does not turn the whole bound into NaN."""
    cr = box.centre_radius()
    if cr is None:
        pos, neg = a.clamp(min=0), a.clamp(max=0)
        lo, hi = box.lo, box.hi
        fin = down(dot_lo(pos, torch.where(torch.isinf(lo), 0.0, lo)) + dot_lo(neg, torch.where(torch.isinf(hi), 0.0, hi)))  # NaN stays
        p, q = (pos > 0), (neg < 0)

        def hits(mask, v, inf):  # [N, S]: some non-zero coefficient meets an infinite bound
            return _flat(mask & (v == inf).unsqueeze(1).expand_as(mask), 2).any(-1)

        minus = hits(p, _like(lo, a), -math.inf) | hits(q, _like(hi, a), math.inf)
        plus = hits(p, _like(lo, a), math.inf) | hits(q, _like(hi, a), -math.inf)
        inf = torch.where(minus & plus, math.nan, torch.where(minus, -math.inf, torch.where(plus, math.inf, 0.0)))
        return fin + inf.to(fin.dtype)
    c, r, c_abs = cr
    m = _terms(a)
    af = _flat(a, 2)
    s = _rowdot(a, c)
    cols = torch.stack([_flat(_like(c_abs, a), 1), _flat(_like(r, a), 1)], -1)  # [N, m, 2]
    both = _sum_up(torch.bmm(af.abs(), cols), m)  # [N, S, 2]: Σ|a||c|, Σ|a| r (upper bounds)
    err = up(up(gamma(m, U64) * both[..., 0].detach()) + m * TINY64)
    return down(down(s - both[..., 1]) - err)  # the radius term keeps its gradient (α-CROWN)


def add_down(*terms: torch.Tensor) -> torch.Tensor:
    """Lower bound of the exact sum of lower bounds (one step down after each addition)."""
    s = terms[0]
    for t in terms[1:]:
        s = down(s + t)
    return s


def underflow_err(a: torch.Tensor, mag: torch.Tensor, ops: float = 1.0) -> torch.Tensor:
    """Charge [N, S] (≥ 0, the shape of ``a``'s first two dims) for coefficients of a tensor with
    magnitudes ``mag`` ([N, *in]), each the result of at most ``ops`` rounded float64 products or
    quotients that may UNDERFLOW: such a rounding errs by up to 2^-1075 absolute whatever the size
    of the result (0.49·2^-1074 rounds to 0), which no relative charge covers; sums of subnormals are
    exact. Bound: ops·2^-1074·Σ mag per sample."""
    ones = torch.ones((a.shape[0], 1, *mag.shape[1:]), dtype=torch.float64)
    return up(ops * TINY64 * dot_up(ones, mag)).expand(*a.shape[:2])


def rescaled_err(a_new: torch.Tensor, mag: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Charge for coefficients ``a_new`` = RN64 of exact ones (one rounded op each, relative error
    ≤ u while normal, plus 2^-1075 absolute when it underflows): Σ |exact − a_new|·|t| ≤
    u·Σ|a_new|·mag·(1 + 2u) + :func:`underflow_err`; ``k`` scales mag (e.g. 2 for |t − l|)."""
    rel = up(U64 * (1.0 + 4 * U64) * k * dot_up(a_new.abs(), mag))
    return up(rel + underflow_err(a_new, torch.broadcast_to(k * mag, (a_new.shape[0], *a_new.shape[2:]))))


def scatter_sum(n: int, s: int, d: int, index: torch.Tensor, terms: list[torch.Tensor],
                mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients [N, S, d] summed from ``terms`` ([N, S, m] each, already the claimed float64
    values) at positions ``index`` ([N, m] or [N, S, m]), and the charge (≤ 0, [N, S]) for the
    summation: a float64 sum of k terms is within γ_k Σ|terms| of the exact sum (Higham), so
    −γ_k·Σ_positions (Σ|terms|)·mag is charged, k the largest number of terms at one position."""
    idx = index if index.dim() == 3 else index[:, None, :].expand(n, s, index.shape[-1])
    out = torch.zeros((n, s, d), dtype=torch.float64)
    absum = torch.zeros((n, s, d), dtype=torch.float64)
    for t in terms:
        out = out.scatter_add(2, idx, t)
        absum = absum.scatter_add(2, idx, t.detach().abs())
    flat = idx[:, 0, :] + torch.arange(n)[:, None] * d  # positions per sample, made distinct
    k = len(terms) * int(torch.bincount(flat.reshape(-1)).max()) if idx.numel() else 1
    if k <= 1:
        return out, zero_bias(out)
    return out, -up(gamma(k, U64) * (1.0 + 4 * U64) * dot_up(absum, mag))


def affine_bias(a: torch.Tensor, n_back: int, n_fwd: int, abs_img: torch.Tensor, bias: torch.Tensor | None,
                ctx: Ctx, extra_ops: int = 0, scaling: float = 1.0, *, in_mag: torch.Tensor) -> torch.Tensor:
    """The bias [N, S] of a step through ``y = L x + b`` (L constant) whose input coefficients the
    op computed as ``A_in = fl64(Lᵀ A)`` (each an ``n_back``-term dot product):

    ``A·y ≥ A_in·x + A·b − γ_{n_back}·Σ_out |A|·(|L| |x|) − n_back·2^-1074·Σ_in mag(x) − [ort] Σ_out |A|·e``

    ``− n_back·2^-1074·Σ_in mag(x)`` (linear.underflow_err; ``in_mag`` = mag(x) [N, *in])

    since ``|Lᵀ A − A_in| ≤ γ_{n_back} |L|ᵀ|A| + n_back·2^-1075`` elementwise (a product that
    underflows errs absolutely). ``abs_img`` = fl64(|L| mag(x)) [N, *out]
    (``n_fwd``-term sums of non-negative terms, ≥ (1 − γ_{n_fwd}) times the exact value: inflated
    here). With ``ctx.ort``, e bounds onnxruntime's float32 error of the node (verify/ops/_affine.py,
    step 4): γ32_{n_fwd+1+k}(|L||x| + |b|) + max(1, |s|)·(n_fwd + 2 + k)·2^-149, k = ``extra_ops``,
    s = ``scaling``, a factor onnxruntime applies after summing (Gemm's alpha): the absolute errors
    of products that underflow before it are multiplied by |s| (as in verify/ops/_affine.py).
    """
    n_fwd = max(n_fwd, 1)
    img = up(abs_img.detach() * (1.0 + 2.0 * gamma(n_fwd, U64)) + n_fwd * TINY64)
    a_abs = a.detach().abs()
    g64 = gamma(max(n_back, 1), U64)
    if ctx.ort:  # one pass over |A|: γ64·img + e32 (both non-negative, summed rounding up)
        babs = torch.zeros((), dtype=torch.float64) if bias is None else bias.abs()
        m = n_fwd + 1 + extra_ops
        tiny = math.nextafter(max(1.0, abs(scaling)) * (m + 1) * TINY32 * (1.0 + 4 * U64), math.inf)
        e32 = up(gamma(m, U32) * (1.0 + 2.0**-20) * up(img + babs) + tiny)
        out = -dot_up(a_abs, up(up(g64 * img) + e32))
    else:
        out = -up(g64 * dot_up(a_abs, img))
    out = add_down(out, -underflow_err(a, in_mag, n_back))
    if bias is not None:
        out = add_down(out, dot_lo(a, bias))
    return out


def coef_product(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``A_in = fl64(A mᵀ)`` for coefficients ``a`` [N, S, D] and a constant ``m`` [K, D] (an affine
    op's ``Lᵀ``, read by rows of m) — the input coefficients whose rounding :func:`affine_bias`
    charges as D-term dot products: ``|exact − A_in| ≤ γ_D Σ_j |A_j||m_ij| + D·2^-1074``, a bound
    that holds for every summation order and for every way of computing the SAME exact sum with
    fewer (≤ D) rounded products and additions. Two such ways, used when they are cheaper:

    * every row of A has at most one non-zero entry (the ±e_i rows of a tightening,
      verify/bounds/crown.py, and their zero padding): a gather, row (n, s) is ``v·m[:, j]`` for
      its one non-zero ``v = A[n, s, j]`` (``v = 0`` for a zero row: ``0·m[:, 0]``). Each entry is
      ONE rounded product, within ``u|v m_ij| + 2^-1075`` of the exact ``v m_ij``, inside the bound
      above (γ_D ≥ u, D ≥ 1); for v = ±1 it is exact, bit for bit the matrix product's value;
    * columns j of A that are zero in every row (e.g. behind Relus that are stably inactive) add
      exact zeros ``0·m_ij`` to the exact sum (m finite: the stored weights), so the product over
      the other D' < D columns has the same exact value and its error is within γ_D' ≤ γ_D of it.

    Not under autograd (α-CROWN keeps the product: a coefficient that is 0 may still have a
    non-zero gradient)."""
    n, s, d = a.shape
    if a.requires_grad or n * s * m.shape[0] < 4096:
        return a @ m.T
    nz = a != 0
    if int(nz.sum(-1).max()) <= 1:
        j = a.abs().argmax(-1).reshape(-1)  # [N*S]: the column of each row's non-zero (0 for a zero row)
        v = a.reshape(-1, d).gather(1, j[:, None])  # [N*S, 1]
        return (v * m.index_select(1, j).T).reshape(n, s, m.shape[0])
    cols = torch.nonzero(nz.any(1).any(0)).squeeze(1)
    if 4 * cols.numel() > 3 * d:
        return a @ m.T
    return a.index_select(2, cols) @ m.index_select(1, cols).T


def zero_bias(a: torch.Tensor) -> torch.Tensor:
    """The bias of an exact step (no rounding, no float32 error): zeros [N, S]."""
    return torch.zeros(a.shape[:2], dtype=torch.float64)


def ort_rounding(a: torch.Tensor, out_mag: torch.Tensor, ctx: Ctx, ulps: float = 1.0) -> torch.Tensor:
    """[ort] charge for an op whose float32 result is its exact value rounded ``ulps`` times
    (each ≤ u32 relative plus, for a product that underflows, 2^-150 absolute):
    −Σ|A|·(((1 + u32)^ulps − 1)·mag + ulps·2^-149). The absolute term is not scaled by u32: a
    subnormal product's error is a fixed fraction of 2^-149, whatever its size."""
    if not ctx.ort:
        return zero_bias(a)
    rel = (1.0 + U32) ** ulps - 1.0 + 2.0**-60
    return -dot_up(a.abs(), up(up(rel * out_mag) + ulps * TINY32))
