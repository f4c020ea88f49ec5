"""ℓ∞-dist layers (Zhang et al. 2021): u(x) = ‖x − w‖_p + b, and mean-shift normalisation.

Every dist layer reads its attributes `p` (float, default math.inf) and `relaxation` ("lp", or "lse"
for the log-sum-exp neuron (1/p)·log Σ exp(p·|x_i − w_i|), see nets.ops.lse_dist) in `forward`; the
training loop anneals p through `nets.models.set_p(model, p)` and picks the relaxation with
`nets.models.set_relaxation`. Both relaxations are 1-Lipschitz for every p and equal ℓ∞ at p = ∞. At p = ∞ each output unit is 1-Lipschitz in ℓ∞
w.r.t. the layer input, for any weights; a constant bias keeps that.

`MeanShift` subtracts a mean: the batch mean in training (running mean updated with momentum), the
running mean in eval — a constant shift at eval, so it keeps the net 1-Lipschitz. No scaling, no
affine.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nets.ops import check_p, lp_dist, lp_dist_conv

IDENTITY_VALUE = -10.0  # paper's identity-map init: w[i, i mod in] = −10


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class LinfDistLinear(nn.Module):
    """y[b, n] = ‖x[b] − weight[n]‖_p (+ bias[n]); x [B, in_features] → [B, out_features].

    weight [out, in] ~ N(0, 1); bias (optional) zeros. `p` defaults to math.inf; `backend` is passed
    to `nets.ops.lp_dist` ("auto" uses a fast kernel when one is built).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 p: float = math.inf, backend: str = "auto"):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.randn(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.p = check_p(p)
        self.backend = backend
        self.relaxation = "lp"

    def forward(self, x: Tensor) -> Tensor:
        y = lp_dist(x, self.weight, self.p, backend=self.backend, relaxation=self.relaxation)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, p={self.p}"


class LinfDistConv2d(nn.Module):
    """y[b, m, i, j] = ‖patch_{b,i,j} − weight[m]‖_p (+ bias[m]), zero padding, Conv2d geometry.

    x [B, in_channels, H, W] → [B, out_channels, H', W']; weight [out, in, kH, kW] ~ N(0, 1).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = False, *, p: float = math.inf, backend: str = "auto"):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.weight = nn.Parameter(torch.randn(self.out_channels, self.in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.p = check_p(p)
        self.backend = backend
        self.relaxation = "lp"

    def forward(self, x: Tensor) -> Tensor:
        y = lp_dist_conv(x, self.weight, self.p, stride=self.stride, padding=self.padding,
                         dilation=self.dilation, backend=self.backend, relaxation=self.relaxation)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, p={self.p}")


RESIDUAL_GRID = 2.0**-16  # c is stored on this grid: c and 1 − c are exact in float32, c + (1 − c) = 1


class ResidualLinfLinear(LinfDistLinear):
    """Residual ℓ∞ neuron y[b, n] = c·x[b, n] + (1 − c)·‖x[b] − weight[n]‖_p (+ bias[n]); in = out.

    c ∈ [0, 1) is a fixed constant (not trained), snapped to a multiple of 2^-16 so that c and 1 − c
    are exact float32 numbers summing to exactly 1: the exported graph (Mul c, linf::LinfDist, Mul
    1 − c, Add) then gets the static Lipschitz bound c·1 + (1 − c)·1 = 1 with no rounding slack.
    1-Lipschitz in ℓ∞ for every p (a convex combination of two 1-Lipschitz maps).
    """

    def __init__(self, features: int, c: float, bias: bool = False, *, p: float = math.inf,
                 backend: str = "auto"):
        super().__init__(features, features, bias=bias, p=p, backend=backend)
        c = float(c)
        if not 0.0 <= c < 1.0:
            raise ValueError(f"the residual coefficient c must be in [0, 1), got {c}")
        self.c = round(c / RESIDUAL_GRID) * RESIDUAL_GRID

    def forward(self, x: Tensor) -> Tensor:
        d = lp_dist(x, self.weight, self.p, backend=self.backend, relaxation=self.relaxation)
        y = self.c * x + (1.0 - self.c) * d
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}"


class MeanShift(nn.Module):
    """x − mean over the batch (and spatial dims for [B, C, H, W]), per feature/channel.

    Training: uses the batch mean and updates `running_mean ← (1 − momentum)·running_mean +
    momentum·batch_mean` (no gradient through the update). Eval: subtracts `running_mean`, a constant,
    so the map is x ↦ x − c (1-Lipschitz, translation only). No scaling, no affine parameters.
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.register_buffer("running_mean", torch.zeros(self.num_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"MeanShift({self.num_features}) got input of shape {tuple(x.shape)}")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims)
            with torch.no_grad():
                self.running_mean.mul_(1.0 - self.momentum).add_(mean.detach(), alpha=self.momentum)
        else:
            mean = self.running_mean
        return x - mean.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"


@torch.no_grad()
def identity_init(layer: nn.Module, value: float = IDENTITY_VALUE) -> bool:
    """Paper's identity-map init, in place; returns whether it applied (needs in ≤ out).

    Linear: weight[i, i mod in] = value (−10). Conv: weight[i, i mod in_ch, kH//2, kW//2] = value.
    For inputs with |x_j − w_ij| < 10 + x_{i mod in} elsewhere (e.g. x ∈ [0, 1], N(0, 1) weights),
    unit i outputs x_{i mod in} + 10: the identity up to a constant (which mean shift removes).
    """
    if isinstance(layer, LinfDistLinear):
        n_in, n_out = layer.in_features, layer.out_features
        if n_in > n_out:
            return False
        rows = torch.arange(n_out)
        layer.weight[rows, rows % n_in] = value
        return True
    if isinstance(layer, LinfDistConv2d):
        n_in, n_out = layer.in_channels, layer.out_channels
        if n_in > n_out:
            return False
        kh, kw = layer.kernel_size
        rows = torch.arange(n_out)
        layer.weight[rows, rows % n_in, kh // 2, kw // 2] = value
        return True
    raise TypeError(f"identity_init expects an ℓ∞-dist layer, got {type(layer).__name__}")


DIST_LAYERS = (LinfDistLinear, LinfDistConv2d)  # ResidualLinfLinear is a LinfDistLinear
