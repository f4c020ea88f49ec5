"""ℓ∞-dist Net models (Zhang et al. 2021) built from a JSON-serialisable `ModelConfig`.

Three architectures, all one class `LinfDistNet` with the same structure:
- `model.trunk`: nn.Sequential of ℓ∞-dist layers, `MeanShift`s and `nn.Flatten` (input NCHW in [0, 1]).
- `model.head`: None for the pure net, else Linear(width, hidden) – Tanh – Linear(hidden, classes).
- `forward(x) = -trunk(x)` when head is None (pure net: logits = −distance), else `head(trunk(x))`.
- `model.config`: the ModelConfig that rebuilds it (`build_model(model.config)`).

"linf"           pure ℓ∞-dist Net: Flatten, then `depth` dist layers; hidden layers have `width`
                 units, each followed by MeanShift (if `mean_shift`); the last layer maps to
                 `num_classes`, has a bias and no normalisation.
"linf-mlp"       ℓ∞-dist Net+MLP: Flatten, `depth` dist layers of `width` units each followed by
                 MeanShift, then the MLP head.
"conv-linf-mlp"  conv ℓ∞-dist Net+MLP (paper's conv model, seed `ConvFeature`): for each entry of
                 `conv_channels` an ℓ∞-dist conv (kernel `conv_kernel`, padding kernel//2, stride from
                 `conv_strides`) + MeanShift; Flatten; `depth` dist linear layers of `width` units +
                 MeanShift; MLP head. Paper CIFAR-10 setting: conv_channels (96, 96, 192, 192, 192),
                 conv_strides (1, 1, 2, 1, 1), depth 1, width 1024, hidden 512.
At p = ∞ and in eval mode the trunk is 1-Lipschitz in ℓ∞ (dist layers and constant shifts).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from torch import Tensor, nn

from nets.layers import DIST_LAYERS, LinfDistConv2d, LinfDistLinear, MeanShift, identity_init
from nets.ops import check_p, conv_output_size
from common.errors import ModelError

ARCHS = ("linf", "linf-mlp", "conv-linf-mlp")
MAX_DEPTH = 1024    # layers (the paper's nets: 5 to 6)
MAX_PARAMS = 2**30  # parameter elements per model: 4 GiB of float32 weights (the paper's nets: ~1e8)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model exactly (weights come from the checkpoint)."""

    arch: str                                   # "linf" | "linf-mlp" | "conv-linf-mlp"
    input_shape: tuple[int, int, int]           # (C, H, W) of one input image
    num_classes: int = 10
    depth: int = 5          # ℓ∞-dist linear layers (pure net: the last one outputs num_classes)
    width: int = 512        # units of each hidden ℓ∞-dist linear layer
    hidden: int = 512       # +MLP head: hidden units of Linear–Tanh–Linear
    conv_channels: tuple[int, ...] = (96, 96, 192, 192, 192)  # conv model: out channels per conv layer
    conv_strides: tuple[int, ...] = (1, 1, 2, 1, 1)           # conv model: stride per conv layer
    conv_kernel: int = 3    # conv model: square kernel, padding kernel // 2
    mean_shift: bool = True      # MeanShift after every dist layer except the pure net's last
    identity_init: bool = True   # paper's identity-map init on dist layers with in ≤ out
    extra: dict = field(default_factory=dict)  # free-form notes, ignored by build_model

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        for k in ("input_shape", "conv_channels", "conv_strides"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of `to_dict`; raises ModelError on unknown keys or wrong types."""
        if not isinstance(d, dict):
            raise ModelError(f"model config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"model config has unknown keys: {', '.join(unknown)}")
        if "arch" not in d or "input_shape" not in d:
            raise ModelError("model config needs at least 'arch' and 'input_shape'")
        kw = dict(d)
        try:
            for k in ("input_shape", "conv_channels", "conv_strides"):
                if k in kw:
                    kw[k] = tuple(_as_int(v, k) for v in kw[k])
            for k in ("num_classes", "depth", "width", "hidden", "conv_kernel"):
                if k in kw:
                    kw[k] = _as_int(kw[k], k)
        except TypeError as e:
            raise ModelError(f"model config: {e}") from None
        for k in ("mean_shift", "identity_init"):
            if k in kw and not isinstance(kw[k], bool):
                raise ModelError(f"model config: {k} must be true or false")
        if "extra" in kw and not isinstance(kw["extra"], dict):
            raise ModelError("model config: extra must be a JSON object")
        cfg = cls(**kw)
        validate_config(cfg)
        return cfg


def _as_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an integer (or list of integers), got {v!r}")
    return v


def validate_config(cfg: ModelConfig) -> None:
    """Raise ModelError with one line if the config cannot describe a model."""
    if cfg.arch not in ARCHS:
        raise ModelError(f"unknown arch {cfg.arch!r}; choose one of {', '.join(ARCHS)}")
    if len(cfg.input_shape) != 3 or min(cfg.input_shape) < 1:
        raise ModelError(f"input_shape must be (C, H, W) with positive sizes, got {cfg.input_shape}")
    if cfg.num_classes < 2:
        raise ModelError(f"num_classes must be >= 2, got {cfg.num_classes}")
    min_depth = 0 if cfg.arch == "conv-linf-mlp" else 1
    if cfg.depth < min_depth:
        raise ModelError(f"depth must be >= {min_depth} for {cfg.arch}, got {cfg.depth}")
    if cfg.width < 1 or cfg.hidden < 1:
        raise ModelError(f"width and hidden must be >= 1, got {cfg.width} and {cfg.hidden}")
    if cfg.arch == "conv-linf-mlp":
        if not cfg.conv_channels or len(cfg.conv_channels) != len(cfg.conv_strides):
            raise ModelError("conv_channels and conv_strides must be non-empty and of equal length")
        if min(cfg.conv_channels) < 1 or min(cfg.conv_strides) < 1 or cfg.conv_kernel < 1:
            raise ModelError("conv channels, strides and kernel must be positive")
    if cfg.depth > MAX_DEPTH or len(cfg.conv_channels) > MAX_DEPTH:
        raise ModelError(f"depth and the number of conv layers must be <= {MAX_DEPTH}, got {cfg.depth}")
    n = approx_params(cfg)
    if n > MAX_PARAMS:
        raise ModelError(f"the model would have about {n:.3g} parameters (more than {MAX_PARAMS:.3g}, "
                         f"{4 * MAX_PARAMS / 2**30:.0f} GiB of float32 weights); reduce width, depth or hidden")


def approx_params(cfg: ModelConfig) -> int:
    """Parameter elements of the model `cfg` describes (weights; biases and buffers left out),
    computed without building it, so an absurd size is refused before any memory is allocated."""
    c, h, w = cfg.input_shape
    n = 0
    if cfg.arch == "conv-linf-mlp":
        k = cfg.conv_kernel
        for out_ch, s in zip(cfg.conv_channels, cfg.conv_strides):
            n += out_ch * c * k * k
            c, h, w = out_ch, max(1, -(-h // s)), max(1, -(-w // s))
    n_in = c * h * w
    pure = cfg.arch == "linf"
    layers = max(cfg.depth - 1, 0) if pure else cfg.depth
    n += n_in * cfg.width + max(layers - 1, 0) * cfg.width * cfg.width if layers else 0
    last = cfg.width if layers else n_in
    n += last * cfg.num_classes if pure else last * cfg.hidden + cfg.hidden * cfg.num_classes
    return n


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


def _dist_linear(n_in: int, n_out: int, cfg: ModelConfig, *, bias: bool = False) -> LinfDistLinear:
    layer = LinfDistLinear(n_in, n_out, bias=bias)
    if cfg.identity_init:
        identity_init(layer)
    return layer


def _conv_stack(cfg: ModelConfig) -> tuple[list[nn.Module], int]:
    """The conv part of conv-linf-mlp and the flattened size after it."""
    c, h, w = cfg.input_shape
    k = cfg.conv_kernel
    mods: list[nn.Module] = []
    for out_ch, s in zip(cfg.conv_channels, cfg.conv_strides):
        layer = LinfDistConv2d(c, out_ch, k, stride=s, padding=k // 2)
        if cfg.identity_init:
            identity_init(layer)
        mods.append(layer)
        if cfg.mean_shift:
            mods.append(MeanShift(out_ch))
        h = conv_output_size(h, k, s, k // 2, 1)
        w = conv_output_size(w, k, s, k // 2, 1)
        if h < 1 or w < 1:
            raise ModelError(f"conv stack shrinks the {cfg.input_shape} input to nothing")
        c = out_ch
    return mods, c * h * w


def build_model(cfg: ModelConfig) -> LinfDistNet:
    """A freshly initialised model for `cfg` (weights N(0, 1), identity init, p = ∞)."""
    validate_config(cfg)
    mods: list[nn.Module] = []
    n_in = cfg.input_shape[0] * cfg.input_shape[1] * cfg.input_shape[2]
    if cfg.arch == "conv-linf-mlp":
        mods, n_in = _conv_stack(cfg)
    mods.append(nn.Flatten())
    pure = cfg.arch == "linf"
    n_hidden = cfg.depth - 1 if pure else cfg.depth
    for _ in range(n_hidden):
        mods.append(_dist_linear(n_in, cfg.width, cfg))
        if cfg.mean_shift:
            mods.append(MeanShift(cfg.width))
        n_in = cfg.width
    head = None
    if pure:
        mods.append(_dist_linear(n_in, cfg.num_classes, cfg, bias=True))
    else:
        head = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, cfg.num_classes))
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


def count_params(model: nn.Module) -> int:
    """Number of parameter elements (buffers not counted)."""
    return sum(p.numel() for p in model.parameters())


def is_pure(model: nn.Module) -> bool:
    """True for a pure ℓ∞-dist net (no MLP head)."""
    return getattr(model, "head", None) is None
