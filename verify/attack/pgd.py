"""APGD-style projected gradient attacks in the ℓ∞ ball ∩ input domain (the attack core).

Guarantees of :func:`apgd`: every returned point lies in [lo, hi] elementwise, where ``lo``/``hi``
are the caller's float32 box (see :func:`verify.attack.box.linf_box`, which makes the box exactly
inside the ε-ball and the domain); projection is a clamp, so no rounding can leave the box. A sample
is marked successful only when the exact (float32) model's best non-label logit is STRICTLY above
the label's logit at the returned point. Nothing here is a proof of anything: witnesses are replayed
in onnxruntime before a sample is called falsified.

Algorithm (Croce & Hein 2020, APGD): momentum 0.75, step 2ε halved at checkpoints when fewer than
ρ of the steps since the last checkpoint improved the loss, or when neither the step nor the best
loss changed; restart from the best point after a halving; per-sample early stop on success.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AttackConfig", "apgd", "checkpoints", "LOSSES"]


@dataclass
class AttackConfig:
    """All knobs of the attack; defaults are meant to be a reference-strength attack.

    steps: iterations per run; restarts: random restarts per run; losses: untargeted losses run in
    order ("ce", "dlr", "margin"); n_target_classes: targeted runs (targeted DLR) on the top-k
    non-label classes; surrogate: "auto" (smoothed gradient for models with ℓ∞-dist layers),
    "on" or "off"; surrogate_p: ℓp exponent of the smoothed gradient (an integer is fastest);
    exact_repeats: with the surrogate, also rerun every run with the exact subgradient (slower,
    rarely stronger); rho: APGD halving threshold;
    batch_size: samples per batch; seed: RNG seed (runs are deterministic given it);
    num_threads: torch threads while attacking (1 is fastest on a small shared CPU; 0 = unchanged).
    """

    steps: int = 100
    restarts: int = 1
    losses: tuple[str, ...] = ("ce", "dlr")
    n_target_classes: int = 3
    surrogate: str = "auto"
    surrogate_p: float = 16.0
    exact_repeats: bool = False  # with the surrogate: also repeat every run with the exact gradient
    rho: float = 0.75
    batch_size: int = 256
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads during the attack (0: leave torch's setting)

    def validate(self) -> None:
        from common.errors import LinfVerifyError

        if self.steps < 1 or self.restarts < 1 or self.batch_size < 1 or self.n_target_classes < 0:
            raise LinfVerifyError("steps, restarts and batch size must be ≥ 1, target classes ≥ 0")
        bad = [loss for loss in self.losses if loss not in LOSSES]
        if bad:
            raise LinfVerifyError(f"unknown attack loss(es) {bad}; choose from {sorted(LOSSES)}")
        if self.surrogate not in ("auto", "on", "off"):
            raise LinfVerifyError("surrogate must be one of auto, on, off")
        if not self.surrogate_p > 1:
            raise LinfVerifyError("surrogate_p must be > 1")


def _other_max(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    masked = z.scatter(1, y[:, None], -math.inf)
    return masked.amax(1)


def _ce(z, y, t):
    return F.cross_entropy(z, y, reduction="none") if t is None else -F.cross_entropy(z, t, reduction="none")


def _margin(z, y, t):
    zy = z.gather(1, y[:, None])[:, 0]
    other = _other_max(z, y) if t is None else z.gather(1, t[:, None])[:, 0]
    return other - zy


def _dlr(z, y, t):
    zs = z.sort(1, descending=True).values
    zy = z.gather(1, y[:, None])[:, 0]
    if t is None:
        denom = zs[:, 0] - zs[:, min(2, z.shape[1] - 1)] + 1e-12
        return (_other_max(z, y) - zy) / denom
    zt = z.gather(1, t[:, None])[:, 0]
    k = z.shape[1]
    denom = zs[:, 0] - 0.5 * (zs[:, min(2, k - 1)] + zs[:, min(3, k - 1)]) + 1e-12
    return (zt - zy) / denom


LOSSES = {"ce": _ce, "dlr": _dlr, "margin": _margin}


def checkpoints(steps: int) -> list[int]:
    """APGD checkpoint iterations: p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)."""
    ps = [0.0, 0.22]
    while ps[-1] < 1:
        ps.append(ps[-1] + max(ps[-1] - ps[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(p * steps, 9)) for p in ps if 0 < round(p * steps, 9) <= steps})


def _success(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _other_max(z, y) > z.gather(1, y[:, None])[:, 0]


def apgd(model, x, y, lo, hi, *, loss, target=None, steps: int = 100, rho: float = 0.75,
         generator: torch.Generator | None = None, random_start: bool = True, success=None,
         deadline: float | None = None):
    """Run APGD on a batch; returns (x_adv [B,...] float32 in [lo, hi], success bool [B]).

    ``x``, ``lo``, ``hi`` float32 tensors of one shape; ``y`` (and ``target``) int64 [B].
    For successful samples x_adv is the first point found that the model misclassifies.
    Other goals (verify/vnnlib/falsify.py): ``loss`` a callable ``(z, y, target) -> [B]`` to
    maximise and ``success`` a callable ``(z, y) -> bool [B]`` (default: misclassified); ``y``
    then only identifies each row (it is subset with the active rows). ``deadline``: a
    time.monotonic() value after which no further step is taken.
    """
    lossf = LOSSES[loss] if isinstance(loss, str) else loss
    succf = _success if success is None else success
    b = x.shape[0]
    view = (b,) + (1,) * (x.dim() - 1)
    eps = ((hi - lo).flatten(1).amax(1) / 2).clamp_min(1e-12)
    eta = (2 * eps).reshape(view)
    if random_start:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
        x0 = torch.minimum(torch.maximum(x + u * eps.reshape(view), lo), hi)
    else:
        x0 = x.clone()
    found = torch.zeros(b, dtype=torch.bool)
    result = x0.clone()
    idx = torch.arange(b)  # active sample -> position in the batch

    def value_and_grad(xa, ya, ta):
        xa = xa.clone().requires_grad_(True)
        z = model(xa)
        val = lossf(z, ya, ta)
        (g,) = torch.autograd.grad(val.sum(), xa)
        return val.detach(), g, z.detach()

    ta = target
    cur, x_prev = x0, x0
    val, g, z = value_and_grad(cur, y, ta)
    best_val, best_x, best_g, best_z = val.clone(), cur.clone(), g.clone(), z.clone()
    cps = set(checkpoints(steps))
    last_cp, n_improved = 0, torch.zeros(b)
    eta_at_cp, best_at_cp = eta.clone(), best_val.clone()
    a_lo, a_hi, ya = lo, hi, y
    k = 0
    while True:
        succ = succf(z, ya)  # z is the exact model's logits at cur
        if succ.any():
            result[idx[succ]] = cur[succ]
            found[idx[succ]] = True
            keep = ~succ
            idx, cur, x_prev, val, g, z, a_lo, a_hi, ya = (
                t[keep] for t in (idx, cur, x_prev, val, g, z, a_lo, a_hi, ya))
            best_val, best_x, best_g, best_z, eta, n_improved = (
                t[keep] for t in (best_val, best_x, best_g, best_z, eta, n_improved))
            eta_at_cp, best_at_cp = eta_at_cp[keep], best_at_cp[keep]
            ta = None if ta is None else ta[keep]
        if k >= steps or idx.numel() == 0 or (deadline is not None and time.monotonic() >= deadline):
            break
        zstep = torch.minimum(torch.maximum(cur + eta * g.sign(), a_lo), a_hi)
        if k == 0:
            nxt = zstep
        else:
            nxt = torch.minimum(torch.maximum(cur + 0.75 * (zstep - cur) + 0.25 * (cur - x_prev), a_lo), a_hi)
        x_prev, cur = cur, nxt
        val_new, g, z = value_and_grad(cur, ya, ta)
        n_improved += (val_new > val).float()
        val = val_new
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_x[better], best_g[better], best_z[better] = cur[better], g[better], z[better]
        k += 1
        if k in cps:
            cond1 = n_improved < rho * (k - last_cp)
            cond2 = (eta.flatten() == eta_at_cp.flatten()) & (best_val <= best_at_cp)
            halve = cond1 | cond2
            hv = halve.reshape(eta.shape)
            eta = torch.where(hv, eta / 2, eta)
            # restart the halved samples from their best point (its logits are kept in sync)
            cur = torch.where(hv, best_x, cur)
            g = torch.where(hv, best_g, g)
            z = torch.where(halve[:, None], best_z, z)
            val = torch.where(halve, best_val, val)
            x_prev = cur.clone()
            eta_at_cp, best_at_cp = eta.clone(), best_val.clone()
            last_cp, n_improved = k, torch.zeros_like(n_improved)
    return result, found
