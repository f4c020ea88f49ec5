"""Training schedules as small pure functions of progress (iteration counts, 0-based).

The paper's recipe (Zhang et al. 2021, Sec. 5 / App. C) splits training into phases, measured in
iterations here so every schedule is updated every iteration:

    [0, p_warm)                     p = p_start (8)
    [p_warm, p_warm + anneal)       p grows geometrically p_start -> p_end (1000)
    [p_warm + anneal, total)        p = inf
    lr: constant until p_warm, then cosine from lr to 0 at `total`
    eps_train: linear 0 -> eps over [eps_start, eps_start + eps_warm) (0 iterations: constant)
    lambda (v2 mixture): geometric lam_start -> lam_end over [0, total]

Every function is pure (no state), monotone on its phase, and hits its endpoints exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Phases",
    "p_at",
    "lr_at",
    "eps_at",
    "kappa_at",
    "lam_at",
    "geometric",
]


def _check_nonneg(**kw: int) -> None:
    for k, v in kw.items():
        if v < 0:
            raise ValueError(f"{k} must be >= 0, got {v}")


def geometric(start: float, end: float, t: float) -> float:
    """start·(end/start)^t for t in [0, 1], clamped; exact at t = 0 and t = 1."""
    if t <= 0.0:
        return float(start)
    if t >= 1.0:
        return float(end)
    return float(start * math.exp(math.log(end / start) * t))


def _ramp(it: int, start: int, length: int) -> float:
    """Progress in [0, 1] of iteration `it` through [start, start + length]; 1 when length = 0."""
    if length <= 0:
        return 1.0 if it >= start else 0.0
    return min(max((it - start) / length, 0.0), 1.0)


@dataclass(frozen=True)
class Phases:
    """Iteration counts of the schedule phases (derived from epochs × iterations per epoch)."""

    total: int  # total training iterations
    p_warm: int  # iterations at p = p_start before annealing starts
    anneal: int  # iterations of geometric annealing p_start -> p_end
    eps_start: int = 0  # first iteration of the eps_train warm-up
    eps_warm: int = 0  # iterations of the linear eps_train warm-up (0: eps_train from the start)

    def __post_init__(self) -> None:
        _check_nonneg(total=self.total, p_warm=self.p_warm, anneal=self.anneal,
                      eps_start=self.eps_start, eps_warm=self.eps_warm)
        if self.p_warm + self.anneal > self.total:
            raise ValueError(
                f"p_warm + anneal ({self.p_warm} + {self.anneal}) exceeds total ({self.total})"
            )

    @classmethod
    def from_epochs(cls, iters_per_epoch: int, *, epochs: int, p_warm_epochs: float,
                    anneal_epochs: float, eps_start_epochs: float = 0.0,
                    eps_warm_epochs: float = 0.0) -> "Phases":
        """Phases from epoch counts (fractions allowed; rounded to whole iterations)."""
        n = iters_per_epoch
        return cls(total=epochs * n, p_warm=round(p_warm_epochs * n), anneal=round(anneal_epochs * n),
                   eps_start=round(eps_start_epochs * n), eps_warm=round(eps_warm_epochs * n))


def p_at(it: int, ph: Phases, p_start: float = 8.0, p_end: float = 1000.0) -> float:
    """The ℓp exponent at iteration `it`: p_start, then geometric to p_end, then math.inf.

    During annealing, iteration p_warm + k uses t = (k + 1) / anneal, so the last annealing
    iteration trains at exactly p_end and the next one at p = inf.
    """
    if it < ph.p_warm:
        return float(p_start)
    k = it - ph.p_warm
    if k < ph.anneal:
        return geometric(p_start, p_end, (k + 1) / ph.anneal)
    return math.inf


def lr_at(it: int, ph: Phases, lr: float) -> float:
    """Constant `lr` until p_warm, then cosine from lr (at p_warm) to 0 (at total)."""
    if it <= ph.p_warm:
        return float(lr)
    span = ph.total - ph.p_warm
    if it >= ph.total or span <= 0:
        return 0.0
    return float(0.5 * lr * (1.0 + math.cos(math.pi * (it - ph.p_warm) / span)))


def eps_at(it: int, ph: Phases, eps: float) -> float:
    """ε_train: 0 before eps_start, linear to `eps` over eps_warm iterations, then `eps`."""
    return float(eps) * _ramp(it, ph.eps_start, ph.eps_warm)


def kappa_at(it: int, ph: Phases, kappa_start: float, kappa_end: float) -> float:
    """κ (weight of the clean CE in the IBP loss): linear kappa_start -> kappa_end over the
    ε warm-up window (constant kappa_end afterwards)."""
    t = _ramp(it, ph.eps_start, ph.eps_warm)
    return float(kappa_start + (kappa_end - kappa_start) * t)


def lam_at(it: int, ph: Phases, lam_start: float, lam_end: float) -> float:
    """λ of the v2 mixture loss: geometric decay lam_start (it = 0) -> lam_end (it = total)."""
    if lam_start <= 0.0 or lam_end <= 0.0:
        raise ValueError("lambda endpoints must be > 0 for a geometric decay")
    t = it / ph.total if ph.total > 0 else 1.0
    return geometric(lam_start, lam_end, t)
