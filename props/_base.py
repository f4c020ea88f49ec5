"""What props/strategies.py and props/_planted.py share: float32 element strategies, the model
builder, and the argument checks every public strategy runs when it is defined.

Imports nothing of props but hypothesis, so the two strategy modules import it and not each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from torch import nn

MAX_SEED = 2**16


def check_int_range(name: str, min_value, max_value, *, at_least: int) -> None:
    """InvalidArgument unless ``at_least ≤ min_value ≤ max_value`` are integers (NAME: what is counted)."""
    for v in (min_value, max_value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidArgument(f"{name} bounds must be integers, got {v!r}")
    if not at_least <= min_value <= max_value:
        raise InvalidArgument(f"need {at_least} <= min {name} <= max {name}, got {min_value} and {max_value}")


def check_number_range(name: str, min_value, max_value, *, strict: bool = False) -> None:
    """InvalidArgument unless ``min_value ≤ max_value`` (``<`` if STRICT) are finite numbers."""
    for v in (min_value, max_value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidArgument(f"{name} must be finite numbers, got {v!r}")
    if min_value > max_value or (strict and min_value == max_value):
        raise InvalidArgument(f"need min {name} {'<' if strict else '<='} max {name}, got {min_value} and {max_value}")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise InvalidArgument(f"{name} must be a finite number > 0, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """InvalidArgument unless VALUE is None (drawn) or one of CHOICES."""
    if value is not None and value not in choices:
        raise InvalidArgument(f"{name} must be None (drawn) or one of {list(choices)}, got {value!r}")


def check_shape(name: str, shape) -> tuple[int, ...]:
    if not (isinstance(shape, (tuple, list)) and shape
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise InvalidArgument(f"{name} must be a non-empty tuple of positive integers, got {shape!r}")
    return tuple(shape)


def drawn(draw, value, strategy):
    """VALUE when given, else a draw from STRATEGY (the "None means drawn" arguments)."""
    return draw(strategy) if value is None else value


def f32(lo: float, hi: float):
    """float32 values in [lo, hi] (bounds rounded inwards to float32)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return st.floats(float(lo32), float(hi32), width=32, allow_nan=False, allow_infinity=False)


def weights(shape, scale: float):
    return hnp.arrays(np.float32, shape, elements=f32(-scale, scale))


def _randomise(model: nn.Module, seed: int, scale: float) -> nn.Module:
    """Give every running mean a random value (so eval-mode shifts are not trivial), p = ∞, eval."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * scale)
    from nets.models import set_p
    set_p(model, math.inf)
    return model.eval()


def build(arch: str, input_shape, depth, width, classes, mean_shift, identity, seed, **kw):
    """A `nets.models` model of ARCH with weights from SEED, random running means, p = ∞, eval."""
    from nets.models import ModelConfig, build_model

    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, input_shape=tuple(input_shape), num_classes=classes, depth=depth,
                      width=width, mean_shift=mean_shift, identity_init=identity, **kw)
    return _randomise(build_model(cfg), seed, 3.0)
