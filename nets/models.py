"""ℓ∞-dist Net models (Zhang et al. 2021; seed report 000) built from a JSON-serialisable `ModelConfig`.

Every architecture (registry: nets.archs.ARCHS) is one class `LinfDistNet` with the same structure:
- `model.trunk`: nn.Sequential of ℓ∞-dist conv layers (each + `MeanShift`, + max/avg pooling where
  `conv_pool` says), `nn.Flatten`, ℓ∞-dist linear layers (+ `MeanShift`); input NCHW in [0, 1].
- `model.head`: None for a pure net (its last ℓ∞-dist layer maps to the classes, with a bias), else
  Linear(width, hidden) – Tanh – Linear(hidden, classes).
- `forward(x) = -trunk(x)` when head is None (pure net: logits = −distance), else `head(trunk(x))`.
- `model.config`: the ModelConfig that rebuilds it (`build_model(model.config)`).

Hidden ℓ∞-dist linear layers: `widths` when given, else `depth` layers of `width` units (a pure net's
`depth` counts its last layer too). With `residual` c > 0, each hidden linear layer with as many
inputs as outputs is the residual ℓ∞ neuron c·z + (1 − c)·‖z − w‖∞ + b (nets.layers).
At p = ∞ and in eval mode the trunk is 1-Lipschitz in ℓ∞ (dist layers, residual neurons, constant
shifts, max/avg pooling).
"""

from __future__ import annotations

import math
from torch import Tensor, nn

from nets.archs import ARCHS
from nets.config import (MAX_DEPTH, MAX_PARAMS, POOLS, ModelConfig, approx_params, conv_plan,  # noqa: F401
                         hidden_widths, validate_config)
from nets.config import _conv_shapes
from nets.layers import (DIST_LAYERS, LinfDistConv2d, LinfDistLinear, MeanShift, ResidualLinfLinear,
                         identity_init)
from nets.ops import RELAXATIONS, check_p

class LinfDistNet(nn.Module):
    """trunk (+ head); logits = −trunk(x) for pure nets, head(trunk(x)) otherwise."""

    def __init__(self, config: ModelConfig, trunk: nn.Sequential, head: nn.Sequential | None):
        super().__init__()
        self.config = config
        self.trunk = trunk
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != tuple(self.config.input_shape):
            raise ValueError(f"expected input [N, {', '.join(map(str, self.config.input_shape))}], "
                             f"got {list(x.shape)}")
        z = self.trunk(x)
        return -z if self.head is None else self.head(z)


def _init(layer: nn.Module, cfg: ModelConfig) -> nn.Module:
    if cfg.identity_init:
        identity_init(layer)
    return layer


def _dist_linear(n_in: int, n_out: int, cfg: ModelConfig, *, bias: bool = False) -> LinfDistLinear:
    if cfg.residual and n_in == n_out and not bias:
        return _init(ResidualLinfLinear(n_in, cfg.residual), cfg)
    return _init(LinfDistLinear(n_in, n_out, bias=bias), cfg)


def _conv_stack(cfg: ModelConfig) -> tuple[list[nn.Module], int]:
    """The conv part (conv + MeanShift + pooling per stage) and the flattened size after it."""
    k = cfg.conv_kernel
    mods: list[nn.Module] = []
    c, h, w = cfg.input_shape
    pool_cls = nn.MaxPool2d if cfg.pool == "max" else nn.AvgPool2d
    for c_in, out_ch, s, pad, pool, (c, h, w) in _conv_shapes(cfg):
        mods.append(_init(LinfDistConv2d(c_in, out_ch, k, stride=s, padding=pad), cfg))
        if cfg.mean_shift:
            mods.append(MeanShift(out_ch))
        if pool:
            mods.append(pool_cls(pool))
    return mods, c * h * w


def build_model(cfg: ModelConfig) -> LinfDistNet:
    """A freshly initialised model for `cfg` (weights N(0, 1), identity init, p = ∞)."""
    validate_config(cfg)
    mods, n_in = _conv_stack(cfg)
    mods.append(nn.Flatten())
    for width in hidden_widths(cfg):
        mods.append(_dist_linear(n_in, width, cfg))
        if cfg.mean_shift:
            mods.append(MeanShift(width))
        n_in = width
    head = None
    if ARCHS[cfg.arch].head:
        head = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, cfg.num_classes))
    else:
        mods.append(_dist_linear(n_in, cfg.num_classes, cfg, bias=True))
    return LinfDistNet(cfg, nn.Sequential(*mods), head)


def dist_layers(model: nn.Module) -> list[nn.Module]:
    """Every ℓ∞-dist layer (linear or conv) in `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, DIST_LAYERS)]


def set_p(model: nn.Module, p: float) -> None:
    """Set the norm order p (≥ 1 or math.inf) of every ℓ∞-dist layer in `model`."""
    p = check_p(p)
    for m in dist_layers(model):
        m.p = p


def get_p(model: nn.Module) -> float:
    """The p of the first ℓ∞-dist layer (math.inf when the model has none)."""
    layers = dist_layers(model)
    return layers[0].p if layers else math.inf


def set_backend(model: nn.Module, backend: str) -> None:
    """Choose the distance-op backend ("auto", "reference", "cpu", "cuda") of every dist layer."""
    from nets.ops import BACKENDS
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    for m in dist_layers(model):
        m.backend = backend


def set_relaxation(model: nn.Module, relaxation: str) -> None:
    """How every ℓ∞-dist layer relaxes ℓ∞ at finite p: "lp" (‖·‖_p) or "lse" (log-sum-exp)."""
    if relaxation not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; choose one of {', '.join(RELAXATIONS)}")
    for m in dist_layers(model):
        m.relaxation = relaxation


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (buffers not counted)."""
    return sum(p.numel() for p in model.parameters())


def is_pure(model: nn.Module) -> bool:
    """True for a pure ℓ∞-dist net (no MLP head)."""
    return getattr(model, "head", None) is None
