"""Rigorous float32 evaluation-error bounds for torch models, layer by layer.

`forward_with_error(module, x)` runs `module` on the float32 batch `x` and returns `(y, err)` where
`err[b]` (float64) bounds ‖y_float[b] − y_exact[b]‖∞: the distance between what torch computed and the
exact real-number value of the same function (same float32 weights) at the same float32 input.
Errors propagate through each layer with its ℓ∞ Lipschitz constant, and each layer adds its own
rounding error. With unit roundoff u = 2⁻²⁴, u' = u/(1−u), η = 2⁻¹⁴⁹ (absolute error of one rounding
in the subnormal range) and γ_n = n·u/(1 − n·u):

- ℓ∞-dist layer at p = ∞: max_d RN(|x_d − w_d|) = RN(max_d |x_d − w_d|) (rounding is monotone, abs and
  max are exact), so before the bias the output is within ½ ulp (≤ u'·|y|) of exact; the bias add is
  one more rounding. The map is 1-Lipschitz, so err_out = err_in + u'·(|dist|max + |y|max) + 2η.
- ℓp-dist layer, finite p (max-normalised m·(Σ(|d|/m)^p)^{1/p}): the map is D^{1/p}-Lipschitz in ℓ∞;
  relative rounding error ≤ 2·(D + 16)·u, assuming `pow` is within 2 ulp (glibc / SLEEF u10 are ≤ 1).
- MeanShift (eval): one subtraction per element: err_out = err_in + u'·|y|max + η.
- nn.Linear: err_out = ‖W‖∞·err_in + γ_{n+1}·max_j(|W||x| + |b|)_j + (n+1)·η (any summation order).
- ReLU, Flatten, Identity, Dropout(eval), negation: exact and 1-Lipschitz: err_out = err_in.
- Tanh: 1-Lipschitz, |y| ≤ 1; error ≤ 4 ulp assumed (libm / SLEEF): err_out = err_in + 8u + η.
- Softmax over K classes: ½-Lipschitz in ℓ∞; outputs in [0, 1]; err_out = ½·err_in + (2K + 32)·u,
  assuming exp within 4 ulp (the subtraction of the max adds ≤ u/e absolute per entry).
- ConvexEnsemble a_k·z_k summed in order: Σ|a_k|·err_k + γ_{2m}·Σ|a_k|·|z_k|max.
- LinfDistNet: trunk, then negation (pure) or head.

Unknown modules raise `NoErrorBound`; `register_error_rule(cls, fn)` adds one. Every rule calls the
real submodules, so the composed output is what the model computes; callers still compare it with
`module(x)` bit for bit before trusting the bound. Assumes round-to-nearest and no FTZ/DAZ.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

U = 2.0**-24
U_PRIME = U / (1.0 - U)
ETA = 2.0**-149

Rule = Callable[[nn.Module, Tensor, Tensor], "tuple[Tensor, Tensor]"]
_RULES: dict[type, Rule] = {}


class NoErrorBound(Exception):
    """The module (or one of its parts) has no known float error rule."""


def gamma(n: int) -> float:
    """Higham's γ_n = n·u/(1 − n·u) for binary32, slightly enlarged to cover float64 rounding."""
    nu = n * U
    if nu >= 0.5:
        raise NoErrorBound(f"γ_{n} undefined for n·u ≥ 1/2")
    return nu / (1.0 - nu) * (1.0 + 1e-12)


def register_error_rule(cls: type, rule: Rule) -> None:
    """Use `rule(module, x, err) -> (y, err_out)` for instances of `cls` (exact type or subclass)."""
    _RULES[cls] = rule


def _absmax(t: Tensor) -> Tensor:
    """Per-sample max |t| as float64 [B]."""
    return t.detach().reshape(t.shape[0], -1).abs().amax(dim=1).double() if t[0].numel() else \
        torch.zeros(t.shape[0], dtype=torch.float64)


def _find_rule(module: nn.Module) -> Rule:
    for cls in type(module).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    name = type(module).__name__
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise NoErrorBound(f"no float error rule for {name}")


def forward_with_error(module: nn.Module, x: Tensor, err: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(y, err): y = module(x) (float32), err[b] ≥ ‖y[b] − exact[b]‖∞ (float64 tensor [B]).

    `err` is the input's error bound (default zeros: x is exact). Raises NoErrorBound when a part of
    the model has no rule (or is in training mode where that matters).
    """
    if err is None:
        err = torch.zeros(x.shape[0], dtype=torch.float64)
    if x.dtype != torch.float32:
        raise NoErrorBound(f"float error rules assume float32 evaluation, got {x.dtype}")
    with torch.no_grad():
        return _find_rule(module)(module, x, err)


# ---------------------------------------------------------------- rules


def _sequential(m: nn.Sequential, x: Tensor, err: Tensor):
    for child in m:
        x, err = _find_rule(child)(child, x, err)
    return x, err


def _exact_1lip(m: nn.Module, x: Tensor, err: Tensor):
    return m(x), err


def _dropout(m: nn.Module, x: Tensor, err: Tensor):
    if m.training and m.p > 0:
        raise NoErrorBound("Dropout in training mode is random")
    return m(x), err


def _tanh(m: nn.Module, x: Tensor, err: Tensor):
    return m(x), err + 8 * U + ETA


def _softmax(m: nn.Softmax, x: Tensor, err: Tensor):
    y = m(x)
    k = x.shape[m.dim if m.dim is not None else -1]
    return y, 0.5 * err + (2 * k + 32) * U


def _linear(m: nn.Linear, x: Tensor, err: Tensor):
    y = m(x)
    w = m.weight.detach().double()
    n = w.shape[1]
    mag = x.detach().double().abs() @ w.abs().T
    if m.bias is not None:
        mag = mag + m.bias.detach().double().abs()
    wnorm = float(w.abs().sum(dim=1).max()) * (1 + 1e-12)
    rnd = gamma(n + 1) * mag.amax(dim=1) * (1 + 1e-12) + (n + 1) * ETA
    return y, wnorm * err + rnd


def _avg_pool(m: nn.Module, x: Tensor, err: Tensor):
    """Mean of k = kH·kW inputs (a sum, then one division): 1-Lipschitz, γ_{k+1} relative rounding."""
    y = m(x)
    ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    k = int(ks[0]) * int(ks[1])
    return y, err + gamma(k + 1) * _absmax(x) * (1 + 1e-12) + (k + 1) * ETA


def _residual(m: nn.Module, x: Tensor, err: Tensor):
    """c·x + (1 − c)·‖x − w‖∞ (+ b): at p = ∞ five roundings (distance, two products, two sums)
    on magnitudes ≤ |x| + |d| + |b|; the input error grows by |c| + |1 − c| (1 for c ∈ [0, 1])."""
    if not math.isinf(float(m.p)):
        raise NoErrorBound("the residual ℓ∞ neuron has a float error rule only at p = ∞")
    y = m(x)
    d = (x.detach().unsqueeze(1) - m.weight.detach().unsqueeze(0)).abs().amax(-1)
    bmax = float(m.bias.detach().abs().max()) if m.bias is not None else 0.0
    c = float(m.c)
    mag = abs(c) * _absmax(x) + abs(1 - c) * _absmax(d) + bmax
    return y, (abs(c) + abs(1 - c)) * (1 + 1e-12) * err + gamma(5) * mag * (1 + 1e-12) + 5 * ETA


def _dist_layer(m: nn.Module, x: Tensor, err: Tensor):
    if getattr(m, "relaxation", "lp") != "lp" and not math.isinf(float(m.p)):
        raise NoErrorBound(f"no float error rule for the {m.relaxation} relaxation at finite p")
    y = m(x)
    ymax = _absmax(y)
    bmax = float(m.bias.detach().abs().max()) if getattr(m, "bias", None) is not None else 0.0
    dist_max = ymax * (1 + U_PRIME) + bmax  # |RN(dist)| ≤ |y| + |b| up to the bias rounding
    p = float(m.p)
    if math.isinf(p):
        rnd = U_PRIME * dist_max + ETA
        lip = 1.0
    else:
        if hasattr(m, "in_features"):
            d = m.in_features
        else:
            d = m.weight[0].numel()
        rnd = 2.0 * (d + 16) * U * dist_max + (d + 4) * ETA
        lip = d ** (1.0 / p) * (1 + 1e-12)
    if getattr(m, "bias", None) is not None:
        rnd = rnd + U_PRIME * ymax + ETA
    return y, lip * err + rnd


def _mean_shift(m: nn.Module, x: Tensor, err: Tensor):
    if m.training:
        raise NoErrorBound("MeanShift in training mode depends on the batch; call model.eval()")
    y = m(x)
    return y, err + U_PRIME * _absmax(y) + ETA


def _linf_net(m: nn.Module, x: Tensor, err: Tensor):
    z, err = _find_rule(m.trunk)(m.trunk, x, err)
    if m.head is None:
        return -z, err
    return _find_rule(m.head)(m.head, z, err)


def _ensemble(m: nn.Module, x: Tensor, err: Tensor):
    out = None
    e_sum = torch.zeros_like(err)
    mag = torch.zeros_like(err)
    for a, member in zip(m.weights, m.members):
        z, e = _find_rule(member)(member, x, err)
        if m.mode == "voting":
            z, e = torch.softmax(z, dim=-1), 0.5 * e + (2 * z.shape[-1] + 32) * U
        a32 = a.to(z.dtype)
        out = a32 * z if out is None else out + a32 * z
        e_sum = e_sum + abs(float(a)) * e
        mag = mag + abs(float(a)) * _absmax(z)
    m_count = len(m.members)
    return out, e_sum + gamma(2 * m_count) * mag * (1 + 1e-12) + 2 * m_count * ETA


for _cls in (nn.ReLU, nn.Flatten, nn.Identity, nn.MaxPool2d):  # max pooling: exact, 1-Lipschitz
    register_error_rule(_cls, _exact_1lip)
register_error_rule(nn.Sequential, _sequential)
register_error_rule(nn.Dropout, _dropout)
register_error_rule(nn.Tanh, _tanh)
register_error_rule(nn.Softmax, _softmax)
register_error_rule(nn.Linear, _linear)
register_error_rule(nn.AvgPool2d, _avg_pool)

# nets/ classes, matched by name so this module imports without nets/ (and nets/ may change).
_BY_NAME: dict[str, Rule] = {
    "LinfDistLinear": _dist_layer,
    "LinfDistConv2d": _dist_layer,
    "ResidualLinfLinear": _residual,
    "MeanShift": _mean_shift,
    "LinfDistNet": _linf_net,
    "ConvexEnsemble": _ensemble,
}
