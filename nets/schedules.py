"""Training schedules as small composable pure functions of the step (iteration, 0-based), optax style.

A `Schedule` is a function step -> value. Primitives (`constant`, `linear`, `geometric_ramp`,
`cosine_decay`) and `join` (optax.join_schedules: switch at boundaries, each piece sees the step
counted from its boundary) build every schedule; `from_config` assembles the training loop's set
from a TrainConfig, each one independent: the lr cosine starts at `lr_warm_epochs` (default: where
the p warm-up ends, the paper's recipe), not at a shared phase record.

The paper's recipe (Zhang et al. 2021, Sec. 5 / App. C), in iterations:
    p:       p_start for p_warm, geometric p_start -> p_end over anneal (the last annealing step is
             exactly p_end), then inf
    lr:      constant until lr_warm, then cosine from lr to 0 at total
    eps:     linear 0 -> eps over [eps_start, eps_start + eps_warm) (0 iterations: constant)
    kappa:   linear kappa_start -> kappa over the eps warm-up
    lambda:  geometric lam_start -> lam_end over [0, total] (v2 mixture)
`Phases` and the `*_at(it, phases, ...)` helpers are the same schedules addressed by one record
(kept for callers and tests); they are built from the primitives, not a second implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Schedule", "constant", "linear", "geometric_ramp", "cosine_decay", "join", "p_schedule",
           "Schedules", "from_config", "Phases", "p_at", "lr_at", "eps_at", "kappa_at", "lam_at",
           "geometric"]

Schedule = Callable[[int], float]


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


def constant(value: float) -> Schedule:
    return lambda step: float(value)


def linear(start: float, end: float, steps: int) -> Schedule:
    """start -> end linearly over `steps` (end from step `steps` on; end at once when steps = 0)."""
    return lambda step: float(start + (end - start) * _ramp(step, 0, steps))


def geometric_ramp(start: float, end: float, steps: int, *, offset: int = 0) -> Schedule:
    """start·(end/start)^((step + offset)/steps), clamped to [start, end]."""
    return lambda step: geometric(start, end, (step + offset) / steps if steps > 0 else 1.0)


def cosine_decay(init: float, steps: int) -> Schedule:
    """init·(1 + cos(π·step/steps))/2, 0 from step `steps` on."""
    return lambda step: 0.0 if step >= steps or steps <= 0 else float(0.5 * init * (1.0 + math.cos(math.pi * step / steps)))


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """schedules[i] on [boundaries[i-1], boundaries[i]), fed the step minus its start (optax)."""
    if len(schedules) != len(boundaries) + 1:
        raise ValueError("join needs one more schedule than boundaries")

    def f(step: int) -> float:
        start = 0
        for sched, b in zip(schedules, boundaries):
            if step < b:
                return sched(step - start)
            start = b
        return schedules[-1](step - start)

    return f


def p_schedule(p_start: float, p_end: float, warm: int, anneal: int) -> Schedule:
    """p_start for `warm` steps, geometric to p_end over `anneal` steps (step k uses t = (k + 1)/anneal,
    so the last annealing step trains at exactly p_end), then math.inf."""
    return join([constant(p_start), geometric_ramp(p_start, p_end, anneal, offset=1), constant(math.inf)],
                [warm, warm + anneal])


def lr_schedule(lr: float, warm: int, total: int) -> Schedule:
    """Constant lr through step `warm` (inclusive), then cosine from lr (at `warm`) to 0 at `total`."""
    decay = cosine_decay(lr, total - warm)
    return join([constant(lr), lambda s: decay(s + 1)], [warm + 1])


@dataclass(frozen=True)
class Schedules:
    """The training loop's schedules, each a function of the step."""

    p: Schedule
    lr: Schedule
    eps: Schedule
    kappa: Schedule
    lam: Schedule


def from_config(cfg, iters_per_epoch: int) -> Schedules:
    """Schedules of a nets.presets.TrainConfig at `iters_per_epoch` iterations per epoch."""
    n = iters_per_epoch
    total = cfg.epochs * n
    warm, anneal = round(cfg.p_warm_epochs * n), round(cfg.anneal_epochs * n)
    lr_warm = warm if cfg.lr_warm_epochs is None else round(cfg.lr_warm_epochs * n)
    eps_warm = round(cfg.eps_warm_epochs * n)
    k0 = cfg.kappa if cfg.kappa_start is None else cfg.kappa_start
    lam = (geometric_ramp(cfg.lam_start, cfg.lam_end, total) if cfg.lam_start > 0 and cfg.lam_end > 0
           else constant(cfg.lam_end))
    return Schedules(p=p_schedule(cfg.p_start, cfg.p_end, warm, anneal), lr=lr_schedule(cfg.lr, lr_warm, total),
                     eps=linear(0.0, cfg.eps_train, eps_warm), kappa=linear(k0, cfg.kappa, eps_warm), lam=lam)


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
    """The ℓp exponent at iteration `it` (see `p_schedule`)."""
    return p_schedule(p_start, p_end, ph.p_warm, ph.anneal)(it)


def lr_at(it: int, ph: Phases, lr: float) -> float:
    """Constant `lr` until p_warm, then cosine from lr (at p_warm) to 0 (at total)."""
    return lr_schedule(lr, ph.p_warm, ph.total)(it)


def eps_at(it: int, ph: Phases, eps: float) -> float:
    """ε_train: 0 before eps_start, linear to `eps` over eps_warm iterations, then `eps`."""
    return join([constant(0.0), linear(0.0, eps, ph.eps_warm)], [ph.eps_start])(it)


def kappa_at(it: int, ph: Phases, kappa_start: float, kappa_end: float) -> float:
    """κ (weight of the clean CE in the IBP loss): linear kappa_start -> kappa_end over the
    ε warm-up window (constant kappa_end afterwards)."""
    return join([constant(kappa_start), linear(kappa_start, kappa_end, ph.eps_warm)], [ph.eps_start])(it)


def lam_at(it: int, ph: Phases, lam_start: float, lam_end: float) -> float:
    """λ of the v2 mixture loss: geometric decay lam_start (it = 0) -> lam_end (it = total)."""
    if lam_start <= 0.0 or lam_end <= 0.0:
        raise ValueError("lambda endpoints must be > 0 for a geometric decay")
    return geometric_ramp(lam_start, lam_end, ph.total)(it)
