"""The model configuration: one JSON-serialisable dataclass `ModelConfig` and its validation.

Torch-free (the CLI derives its options from these fields without importing torch); nets.models
builds the modules. Geometry fields left None take the architecture's defaults (nets.archs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from nets.archs import ARCHS, BASE_DEFAULTS, arch_default
from common.errors import ModelError

MAX_DEPTH = 1024    # layers (the paper's nets: 5 to 6)
MAX_PARAMS = 2**30  # parameter elements per model: 4 GiB of float32 weights (the paper's nets: ~1e8)
POOLS = ("max", "avg")
_TUPLES = ("input_shape", "widths", "conv_channels", "conv_strides", "conv_padding", "conv_pool")
_INTS = ("num_classes", "depth", "width", "hidden", "conv_kernel")


def _geo(help_: str):
    """A geometry field: None means "the architecture's default" (nets.archs)."""
    return field(default=None, metadata={"help": help_})


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model exactly (weights come from the checkpoint).

    Geometry fields left None take the architecture's defaults (nets.archs) in __post_init__, so a
    config always holds concrete values and `to_dict` records them.
    """

    arch: str = field(metadata={"help": "architecture: " + " | ".join(ARCHS)})
    input_shape: tuple[int, int, int] = field(metadata={"help": "(C, H, W) of one input image"})
    num_classes: int = field(default=10, metadata={"help": "number of classes"})
    depth: int | None = _geo("ℓ∞-dist linear layers when widths is empty (a pure net's include its last)")
    width: int | None = _geo("units of each hidden ℓ∞-dist linear layer (when widths is empty)")
    widths: tuple[int, ...] | None = _geo("units of each hidden ℓ∞-dist linear layer (overrides depth × width)")
    hidden: int | None = _geo("+MLP head: hidden units of Linear–Tanh–Linear")
    conv_channels: tuple[int, ...] | None = _geo("conv archs: out channels per ℓ∞-dist conv layer")
    conv_strides: tuple[int, ...] | None = _geo("conv archs: stride per conv layer")
    conv_kernel: int | None = _geo("conv archs: square kernel size")
    conv_padding: tuple[int, ...] | None = _geo("conv archs: zero padding per conv layer (empty: kernel // 2)")
    conv_pool: tuple[int, ...] | None = _geo("conv archs: pooling window (= stride) after each conv, 0: none")
    pool: str | None = _geo("pooling kind: max | avg (both 1-Lipschitz in ℓ∞)")
    residual: float | None = _geo("c of residual ℓ∞ neurons c·z + (1 − c)·‖z − w‖∞ + b on square hidden layers (0: none)")
    mean_shift: bool | None = _geo("MeanShift after every dist layer except a pure net's last")
    identity_init: bool | None = _geo("paper's identity-map init on dist layers with in ≤ out")
    extra: dict = field(default_factory=dict, metadata={"help": "free-form notes, ignored by build_model"})

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        for k in BASE_DEFAULTS:
            if getattr(self, k) is None:
                setattr(self, k, arch_default(self.arch, k))
        for k in _TUPLES:
            setattr(self, k, tuple(getattr(self, k)))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        for k in _TUPLES:
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
            for k in _TUPLES:
                if kw.get(k) is not None:
                    kw[k] = tuple(_as_int(v, k) for v in kw[k])
            for k in _INTS:
                if kw.get(k) is not None:
                    kw[k] = _as_int(kw[k], k)
        except TypeError as e:
            raise ModelError(f"model config: {e}") from None
        for k in ("mean_shift", "identity_init"):
            if kw.get(k) is not None and not isinstance(kw[k], bool):
                raise ModelError(f"model config: {k} must be true or false")
        if kw.get("residual") is not None and (isinstance(kw["residual"], bool)
                                               or not isinstance(kw["residual"], (int, float))):
            raise ModelError("model config: residual must be a number")
        if "extra" in kw and not isinstance(kw["extra"], dict):
            raise ModelError("model config: extra must be a JSON object")
        cfg = cls(**kw)
        validate_config(cfg)
        return cfg


def _as_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an integer (or list of integers), got {v!r}")
    return v


def hidden_widths(cfg: ModelConfig) -> tuple[int, ...]:
    """Units of each hidden ℓ∞-dist linear layer (a pure net's last layer not included)."""
    if cfg.widths:
        return tuple(cfg.widths)
    n = cfg.depth - 1 if not ARCHS[cfg.arch].head else cfg.depth
    return (cfg.width,) * max(n, 0)


def conv_plan(cfg: ModelConfig) -> list[tuple[int, int, int, int]]:
    """(out channels, stride, padding, pool window) of each conv layer ([] for non-conv archs)."""
    if not ARCHS[cfg.arch].conv:
        return []
    n, k = len(cfg.conv_channels), cfg.conv_kernel
    pads = cfg.conv_padding or (k // 2,) * n
    pools = cfg.conv_pool or (0,) * n
    return list(zip(cfg.conv_channels, cfg.conv_strides, pads, pools))


def _conv_shapes(cfg: ModelConfig):
    """Yield (in_ch, out_ch, stride, pad, pool, (C, H, W) after the stage) per conv stage."""
    c, h, w = cfg.input_shape
    k = cfg.conv_kernel
    for out_ch, s, pad, pool in conv_plan(cfg):
        h, w = conv_output_size(h, k, s, pad, 1), conv_output_size(w, k, s, pad, 1)
        if pool:
            h, w = h // pool, w // pool
        if h < 1 or w < 1:
            raise ModelError(f"the conv stack of {cfg.arch} shrinks the {cfg.input_shape} input to "
                             "nothing; use larger images or less pooling/stride")
        yield c, out_ch, s, pad, pool, (out_ch, h, w)
        c = out_ch


def validate_config(cfg: ModelConfig) -> None:
    """Raise ModelError with one line if the config cannot describe a model."""
    arch = ARCHS[cfg.arch]
    if len(cfg.input_shape) != 3 or min(cfg.input_shape) < 1:
        raise ModelError(f"input_shape must be (C, H, W) with positive sizes, got {cfg.input_shape}")
    if cfg.num_classes < 2:
        raise ModelError(f"num_classes must be >= 2, got {cfg.num_classes}")
    min_depth = 0 if arch.conv or cfg.widths else 1
    if cfg.depth < min_depth:
        raise ModelError(f"depth must be >= {min_depth} for {cfg.arch}, got {cfg.depth}")
    if cfg.width < 1 or cfg.hidden < 1 or (cfg.widths and min(cfg.widths) < 1):
        raise ModelError(f"width, widths and hidden must be >= 1, got {cfg.width}, {cfg.widths} and {cfg.hidden}")
    if cfg.pool not in POOLS:
        raise ModelError(f"pool must be one of {', '.join(POOLS)}, got {cfg.pool!r}")
    if not 0.0 <= cfg.residual < 1.0:
        raise ModelError(f"residual must be in [0, 1), got {cfg.residual}")
    if arch.conv:
        n = len(cfg.conv_channels)
        if not n or len(cfg.conv_strides) != n:
            raise ModelError("conv_channels and conv_strides must be non-empty and of equal length")
        for k in ("conv_padding", "conv_pool"):
            if getattr(cfg, k) and len(getattr(cfg, k)) != n:
                raise ModelError(f"{k} must be empty or have one entry per conv layer ({n})")
        if min(cfg.conv_channels) < 1 or min(cfg.conv_strides) < 1 or cfg.conv_kernel < 1:
            raise ModelError("conv channels, strides and kernel must be positive")
        if min(cfg.conv_padding + cfg.conv_pool, default=0) < 0:
            raise ModelError("conv padding and pool windows must be >= 0")
    if cfg.depth > MAX_DEPTH or len(cfg.conv_channels) > MAX_DEPTH or len(cfg.widths) > MAX_DEPTH:
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
    k = cfg.conv_kernel
    for c_in, out_ch, _, _, _, (c, h, w) in _conv_shapes(cfg):
        n += out_ch * c_in * k * k
    n_in = c * h * w
    for width in hidden_widths(cfg):
        n, n_in = n + n_in * width, width
    head = ARCHS[cfg.arch].head
    return n + (n_in * cfg.hidden + cfg.hidden * cfg.num_classes if head else n_in * cfg.num_classes)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of one spatial dim (ONNX/PyTorch Conv semantics)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
