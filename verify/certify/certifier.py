"""Certification methods: Lipschitz margin, interval bound propagation (IBP), bisection, linear
bounds (CROWN, α-CROWN), `auto`.

Semantics (docs/SOUNDNESS.md): a sample (x, y) is *certified at ε* when every real x′ with
‖x′ − x‖∞ ≤ ε inside the input domain gets label y from the real function f defined by the model's
float32 weights (z_y > z_j strictly for all j ≠ y). ``radius`` r is a lower bound of the robust
radius: every such x′ with ‖x′ − x‖∞ < r gets y. Every number used in a decision is a directed-
rounded bound (verify/bounds/margins.py); a sample is reported ``certified`` only after a proof at its ε.

Methods (:func:`certify_batch`):

- ``lipschitz``: m0 = sound lower bound of the margin at x (interval of the degenerate box [x, x]),
  L = the model's sound global ℓ∞ Lipschitz bound; certified iff m0 − 2Lε > 0 (rounded down);
  radius = m0/(2L) rounded down. Proves the real-function statement only (guarantee ``real``),
  except on 1-Lipschitz chains, whose ball margin also subtracts onnxruntime's float32 error e′
  (``float32``); under ``--guarantee float32`` it proves nothing on any other model.
- ``ibp``: interval propagation of the ε-box ∩ domain, the last affine layer merged into the margin
  (paper Eqn 21) when there is one; certified iff the margin lower bound > 0. Because the core's
  boxes also contain onnxruntime's float32 values, an IBP certificate also covers onnxruntime's
  evaluation of every float32 x′ in the ball. Radius: the largest ε′ proven by bisection (each probe
  a proof), or the Lipschitz extension ε + m_ε/(2L) of the proof at ε when that is larger.
- ``auto``: IBP at ε decides first; samples it cannot prove get the Lipschitz test; the radius is
  the best proven by either. Bisection only runs in ``auto`` when the model's L > 1 (for
  1-Lipschitz nets the extension is already margin/2-tight). Then the linear rungs (below) for the
  correctly predicted samples still unproved. The record's ``method`` names the method whose proof
  is reported.

Guarantee (``CertifyConfig.guarantee``, verify/guarantee.py): every rung proves what the run
demands. ``float32`` (default): theorems (a) and (b) — linear bounds with ``ort=True``, the merged
last layer minus onnxruntime's Gemm error, the chain's ball margin minus e′; the Lipschitz test of
a model that is not a 1-Lipschitz chain is no float32 proof and is skipped. ``real``: theorem (a)
only, with the tighter variants (``ort=False``, no Gemm error, no e′); IBP boxes are the same for
both (the ops' intervals always contain onnxruntime's values). The ``radius`` is always a
statement about the real function.
- ``crown`` / ``alpha-crown``: linear bound propagation of the ε-box ∩ domain (verify/bounds/,
  docs/SOUNDNESS.md "Linear bounds"), with onnxruntime's float32 error carried under the
  ``float32`` guarantee; ``alpha-crown`` runs CROWN first, then α-CROWN (ALPHA_STEPS projected-gradient steps on the
  Relu slopes, the bound recomputed soundly) for the samples CROWN cannot prove. Radius: ε when
  proved (no bisection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.errors import DataError, LinfVerifyError, ModelError
from common.runtime import ort_logits, ort_session
from verify.bounds import margins, rounding
from verify.bounds.spec import ALPHA_STEPS  # fixed: `check` re-runs the same optimisation
from verify.certify.header import check_eps
from verify.guarantee import DEFAULT, FLOAT32, check_guarantee, with_ort

__all__ = ["METHODS", "CertifyConfig", "BatchResult", "Certifier", "certify_batch", "lipschitz_proves"]

METHODS = ("auto", "lipschitz", "ibp", "crown", "alpha-crown")
#: the linear-bound rungs of the ladder (verify/bounds/), each proving the demanded guarantee
LINEAR = ("crown", "alpha-crown")
ONE = 1.0 + 1e-9  # a Lipschitz bound this close to 1 is 1 up to upward rounding


@dataclass(frozen=True)
class CertifyConfig:
    """Options of a certification run (validated by :meth:`check`)."""

    eps: float
    method: str = "auto"
    domain: tuple[float, float] = (0.0, 1.0)
    bisect_steps: int = 10
    guarantee: str = DEFAULT  # verify/guarantee.py: real | float32

    def check(self) -> "CertifyConfig":
        check_eps(self.eps)
        if self.method not in METHODS:
            raise LinfVerifyError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        check_guarantee(self.guarantee)
        lo, hi = self.domain
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise LinfVerifyError(f"the domain must be two finite numbers LO < HI, got {lo} {hi}")
        if self.bisect_steps < 0:
            raise LinfVerifyError("bisect_steps must be >= 0")
        return self

    @property
    def width(self) -> float:
        """Domain width (a radius this large covers the whole domain)."""
        return float(self.domain[1]) - float(self.domain[0])


@dataclass
class BatchResult:
    """Per-sample results of one batch (arrays of length B)."""

    status: list[str]
    predicted: np.ndarray
    radius: np.ndarray
    margin_lower: np.ndarray
    method: list[str]
    extra: dict = field(default_factory=dict)


class Certifier:
    """Certifies batches against one loaded model (caches L and the last affine layer)."""

    def __init__(self, model, cfg: CertifyConfig):
        self.model = model
        self.cfg = cfg.check()
        self.lip = float(model.lipschitz())
        if math.isnan(self.lip):
            self.lip = math.inf
        self.affine = model.last_affine()
        self.pair = pair_lipschitz_of(model, self.affine)
        from verify.bounds.fastpath import ChainBound

        self.chain = ChainBound.build(model)  # one-forward sound margins for 1-Lipschitz chains
        self.ort = with_ort(self.cfg.guarantee)
        if self.cfg.method == "lipschitz" and not lipschitz_proves(self.cfg.guarantee, self.chain is not None):
            raise LinfVerifyError("--method lipschitz proves only --guarantee real on this model (it is not a "
                                  "1-Lipschitz chain: L bounds the real function, not onnxruntime's rounding)")
        self.sess = ort_session(model.path)  # the judge of `predicted` (pinned, common/runtime.py)
        self._runs = 0

    def lipv(self, y: np.ndarray):
        """Per-sample L with the margin 2L-Lipschitz: min(L, the last-affine pair bound)."""
        return self.lip if self.pair is None else np.minimum(self.lip, self.pair[y])

    # ---- one proof for a batch of boxes ----
    def ibp_margin(self, x: np.ndarray, y: np.ndarray, eps) -> np.ndarray:
        """Sound margin lower bound over the ε-box ∩ domain for each sample (NaN = no bound)."""
        lo, hi = margins.input_box(x, eps, self.cfg.domain)
        try:
            return self._margin_of_box(lo, hi, y)
        except ModelError:
            if len(y) == 1:
                return np.array([np.nan])
            return np.concatenate([self._margin_or_nan(lo[i:i + 1], hi[i:i + 1], y[i:i + 1])
                                   for i in range(len(y))])

    def _margin_or_nan(self, lo, hi, y) -> np.ndarray:
        try:
            return self._margin_of_box(lo, hi, y)
        except ModelError:
            return np.array([np.nan])

    def _margin_of_box(self, lo, hi, y) -> np.ndarray:
        if self.chain is not None:  # same float32 boxes as model.interval, faster ℓ∞-dist bounds
            zlo, zhi = self.chain.interval(lo, hi)
            return margins.box_margin(zlo, zhi, y)
        if self.affine is None:
            zlo, zhi = self.model.interval(lo, hi)
            return margins.box_margin(zlo, zhi, y)
        boxes = self.model.boxes(lo, hi, [self.model.output_name, self.affine.input_name])
        zlo, zhi = boxes[self.model.output_name]
        plain = margins.box_margin(zlo, zhi, y)
        hlo, hhi = boxes[self.affine.input_name]
        merged = margins.merged_margin(self.affine.weight, self.affine.bias, hlo, hhi, y, ort=self.ort)
        # both are sound; keep the better (NaN only if both are NaN)
        return np.fmax(plain, merged)

    # ---- methods ----
    def lipschitz_parts(self, x, y):
        """(m0, radius, margin over the ε-ball) of the Lipschitz method.

        m0: lower bound of the exact margin at x; radius = m0/(2L) rounded down. With a 1-Lipschitz
        chain (verify/bounds/fastpath.py) one forward gives m0, and under ``float32`` the ball margin
        also subtracts onnxruntime's float32 error at every x′ of the ball (theorem (b),
        margins.chain_margins); otherwise m0 comes from the interval of the degenerate box [x, x],
        and the ball margin is a real-only proof: NaN (no proof) under ``float32``."""
        eps = self.cfg.eps
        if self.chain is not None:
            z, e, e_ball = self.chain.forward_with_error(x, eps)
            m0, lm = margins.chain_margins(margins.box_margin(z, z, y), e, e_ball, self.lipv(y), eps, ort=self.ort)
        else:
            m0 = self.ibp_margin(x, y, 0.0)
            lm = margins.lipschitz_margin(m0, self.lipv(y), eps)
            if not lipschitz_proves(self.cfg.guarantee, False):
                lm = np.full(len(y), np.nan)
        return m0, margins.lipschitz_radius(m0, self.lipv(y), self.cfg.width), lm

    def bisect(self, x, y, lo_eps, hi_eps, steps) -> np.ndarray:
        """Largest ε′ proven while bisecting [lo_eps, hi_eps] (lo proven or 0, hi failed).

        Each probe ε′ is a full IBP proof of the closed ε′-ball, so the result is re-provable by
        one direct evaluation at it (what `check` does)."""
        lo_eps, hi_eps = lo_eps.astype(np.float64).copy(), hi_eps.astype(np.float64).copy()
        for _ in range(steps):
            mid = lo_eps + (hi_eps - lo_eps) / 2
            ok = self.ibp_margin(x, y, mid) > 0
            lo_eps = np.where(ok, mid, lo_eps)
            hi_eps = np.where(ok, hi_eps, mid)
        return lo_eps

    def run(self, x: np.ndarray, y: np.ndarray) -> BatchResult:
        """Certify one batch: x float32 [B, ...] inside the domain, y int64 [B]."""
        y = np.asarray(y, dtype=np.int64)
        check_inputs(x, y, self.model, self.cfg.domain)
        if self._runs % 16 == 0:  # proofs assume gradual underflow (no FTZ/DAZ); the check costs
            rounding.require_ieee_subnormals()  # a few torch kernels, so not every batch
        self._runs += 1
        logits = ort_logits(self.sess, np.ascontiguousarray(x))
        self._check_reading(x, logits)
        pred = np.argmax(logits, axis=1) if len(y) else np.zeros(0, np.int64)
        finite = np.isfinite(logits).all(axis=1)
        if self.cfg.method == "lipschitz":
            res = self._run_lipschitz(x, y)
        elif self.cfg.method in LINEAR:
            res = self._ladder(x, y, pred, (np.zeros(len(y), bool), np.zeros(len(y)), np.full(len(y), np.nan),
                                            [self.cfg.method] * len(y)))
        elif self.cfg.method == "auto" and self.chain is not None:
            res = self._run_chain_auto(x, y, pred)
        else:
            res = self._run_ibp(x, y, auto=self.cfg.method == "auto")
        if self.cfg.method == "auto":
            res = self._ladder(x, y, pred, res)
        return self._finish(y, pred, finite, *res)

    def linear_margin(self, x, y, eps, method: str) -> np.ndarray:
        """Sound margin lower bound over the ε-box ∩ domain by CROWN or α-CROWN under the run's
        guarantee (verify/bounds/spec.py; NaN = no bound)."""
        from verify.bounds.spec import margin_lower

        lo, hi = margins.input_box(x, eps, self.cfg.domain)
        steps = ALPHA_STEPS if method == "alpha-crown" else 0
        return margin_lower(self.model, lo, hi, y, ort=self.ort, alpha_steps=steps)

    def _ladder(self, x, y, pred, res):
        """The linear rungs after interval/Lipschitz: CROWN, then α-CROWN, each only for the
        correctly predicted samples not yet proved; the first proof stops a sample's ladder. A
        rung's margin replaces a record's when it proves, or when the record has no bound yet."""
        cert, radius, mlow, method = res
        rungs = {"auto": LINEAR, "crown": ("crown",), "alpha-crown": LINEAR}[self.cfg.method]
        for rung in rungs:
            rest = np.nonzero(~cert & (pred == y))[0]
            if not len(rest):
                break
            m = self.linear_margin(x[rest], y[rest], self.cfg.eps, rung)
            for k, i in enumerate(rest):
                if m[k] > 0 or (np.isnan(mlow[i]) and not np.isnan(m[k])) or method[i] in LINEAR:
                    mlow[i], method[i] = m[k], rung
            cert[rest] = m > 0
        return cert, radius, mlow, method

    def _check_reading(self, x: np.ndarray, logits: np.ndarray) -> None:
        """Defence in depth: by the interval contract onnxruntime's logits at x lie in our box of
        the point x. If one does not, our reading of some op differs from what onnxruntime runs
        (a bug of ours, or a construct we misread): no certificate of this model can be trusted,
        so the run stops with a ModelError. A point box we cannot bound proves nothing here (those
        samples are `unknown` anyway)."""
        if not len(x):
            return
        try:
            zlo, zhi = (self.chain or self.model).interval(x, x)
        except ModelError:
            return
        fin = np.isfinite(logits)
        with np.errstate(invalid="ignore"):
            bad = fin & ((logits < zlo) | (logits > zhi))
        if bad.any():
            i, j = (int(v[0]) for v in np.nonzero(bad))
            raise ModelError(
                f"the verifier's reading of the model disagrees with onnxruntime (row {i} of a batch, "
                f"logit {j}: onnxruntime {float(logits[i, j])!r} outside [{float(zlo[i, j])!r}, "
                f"{float(zhi[i, j])!r}]); refusing to certify this model")

    def _finish(self, y, pred, finite, cert, radius, mlow, method) -> BatchResult:
        """Statuses: ``predicted`` is onnxruntime's argmax (first index on ties) at x for every
        sample; certified needs a proof AND predicted = label (else misclassified, whatever a
        real-function proof says); no finite bound or non-finite logits: unknown. Radii are
        reported a relative 2^-20 below the proven bound (margins.reported_radius)."""
        status = []
        radius = margins.reported_radius(radius, self.cfg.width)
        for i in range(len(y)):
            if pred[i] != y[i]:
                status.append("misclassified")
                radius[i] = 0.0
            elif cert[i]:
                status.append("certified")
                radius[i] = max(radius[i], self.cfg.eps)
            elif math.isnan(mlow[i]) or not finite[i]:
                status.append("unknown")
                radius[i] = 0.0
            else:
                status.append("not_certified")
                radius[i] = min(radius[i], self.cfg.eps)
        return BatchResult(status, pred.copy(), radius, mlow, method)

    def _run_lipschitz(self, x, y):
        _, r, mlow = self.lipschitz_parts(x, y)
        return mlow > 0, r.copy(), mlow, ["lipschitz"] * len(y)

    def _run_chain_auto(self, x, y, pred):
        """`auto` for 1-Lipschitz chains: the one-forward Lipschitz proof first, IBP at ε only for
        correctly predicted samples it cannot prove (no bisection: L ≤ 1 makes the extension tight)."""
        eps, cap = self.cfg.eps, self.cfg.width
        _, radius, mlow = self.lipschitz_parts(x, y)
        cert = mlow > 0
        method = ["lipschitz"] * len(y)
        rest = np.nonzero(~cert & (pred == y))[0]
        if len(rest):
            m_eps = self.ibp_margin(x[rest], y[rest], eps)
            radius[rest] = np.maximum(radius[rest], margins.extended_radius(eps, m_eps, self.lipv(y[rest]), cap))
            for k, i in enumerate(rest):
                if m_eps[k] > 0 or not mlow[i] >= m_eps[k]:
                    mlow[i], method[i] = m_eps[k], "ibp"
            cert[rest] = m_eps > 0
        return cert, radius.copy(), mlow, method

    def _run_ibp(self, x, y, auto: bool):
        eps, cap, n = self.cfg.eps, self.cfg.width, len(y)
        m_eps = self.ibp_margin(x, y, eps)
        cert = m_eps > 0
        radius = np.where(cert, margins.extended_radius(eps, m_eps, self.lipv(y), cap), 0.0)
        mlow, method = m_eps.copy(), ["ibp"] * n
        if auto:
            rest = np.nonzero(~cert)[0]
            if len(rest):
                _, r_l, lm = self.lipschitz_parts(x[rest], y[rest])
                radius[rest] = np.maximum(radius[rest], r_l)
                for k, i in enumerate(rest):
                    if lm[k] > 0 or (math.isnan(mlow[i]) and not math.isnan(lm[k])):
                        mlow[i], method[i] = lm[k], "lipschitz"
                cert[rest] = lm > 0
        steps = self.cfg.bisect_steps if (not auto or not self.lip <= ONE) else 0
        if steps:
            self._refine(x, y, cert, radius, steps)
        return cert, radius, mlow, method

    def _refine(self, x, y, cert, radius, steps) -> None:
        """Bisection on ε, in place: upward from ε for certified samples, downward otherwise."""
        eps, cap = self.cfg.eps, self.cfg.width
        up = np.nonzero(cert & (radius < cap))[0]
        if len(up):
            whole = self.ibp_margin(x[up], y[up], cap) > 0
            radius[up[whole]] = cap
            todo = up[~whole]
            if len(todo):
                got = self.bisect(x[todo], y[todo], np.full(len(todo), eps), np.full(len(todo), cap), steps)
                radius[todo] = np.maximum(radius[todo], got)
        down = np.nonzero(~cert)[0]
        if len(down) and eps > 0:
            got = self.bisect(x[down], y[down], np.zeros(len(down)), np.full(len(down), eps), steps)
            radius[down] = np.maximum(radius[down], got)


def lipschitz_proves(guarantee: str, chain: bool) -> bool:
    """Whether the Lipschitz ball margin is a proof under ``guarantee``: always for ``real`` (L bounds
    the exact function); for ``float32`` only on a 1-Lipschitz chain, whose ball margin subtracts
    onnxruntime's float32 error e′ at every float32 point of the ball (verify/bounds/fastpath.py)."""
    return guarantee != FLOAT32 or chain


def pair_lipschitz_of(model, affine) -> np.ndarray | None:
    """[K] half-Lipschitz bounds of the margins through the last affine layer (see
    margins.pair_lipschitz), from the core's cumulative bound of the layer's input; None if none."""
    if affine is None:
        return None
    cum = {model.input_name: 1.0}
    for op, row in zip(model.graph.nodes, model.node_lipschitz()):
        for o in op.outputs:
            cum[o] = float(row.cumulative)
    l_h = cum.get(affine.input_name)
    if l_h is None or math.isnan(l_h):
        return None
    return margins.pair_lipschitz(affine.weight, l_h)


def check_inputs(x: np.ndarray, y: np.ndarray, model, domain, indices=None) -> None:
    """DataError unless x is float32 [N, *input_shape], finite, inside the domain, y in 0..K-1.
    ``indices``: the data-set index of each row (for the message)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise DataError(f"inputs must be float32, got {getattr(x, 'dtype', type(x).__name__)}")
    shape = tuple(model.input_shape)
    if x.shape[1:] != shape:
        raise DataError(f"inputs have shape {list(x.shape[1:])} per sample, the model expects {list(shape)}")
    if y.shape != (x.shape[0],):
        raise DataError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= model.num_classes):
        raise DataError(f"labels must lie in 0..{model.num_classes - 1}")
    if len(y) == 0:
        return
    from verify.attack.box import in_domain

    bad = ~in_domain(x, domain)
    if bad.any():
        i = int(np.argmax(bad))
        i = int(indices[i]) if indices is not None else i
        raise DataError(f"sample {i} is not finite or lies outside the input domain "
                        f"[{domain[0]}, {domain[1]}] (set --domain LO HI)")


def certify_batch(model, x: np.ndarray, y: np.ndarray, cfg: CertifyConfig) -> BatchResult:
    """Certify one batch with a fresh :class:`Certifier` (convenience for tests and scripts)."""
    return Certifier(model, cfg).run(x, y)
