"""Hypothesis strategies for ℓ∞-dist layers, nets, convex ensembles, input boxes and pairs.

Hypothesis's API style guide: plural names; keyword-only arguments that are values, never "a value
or a strategy" (``members`` is always a strategy); ranges as ``min_*``/``max_*`` pairs (bounds of
inputs as ``min_value``/``max_value``); None for a choice means "drawn"; every argument is checked
when the strategy is defined (``hypothesis.errors.InvalidArgument``), not when it is drawn. To draw a
structure argument, compose: ``shapes.flatmap(lambda s: linf_dist_nets(input_shape=s))``.

Values are valid by construction (no filtering: centres + radii, integer cuts, clipped offsets) and
shrink towards small, simple examples (small sizes, seed 0, zero offsets). Every model comes in eval
mode at p = ∞ (the model that is certified and exported) and in float32.

Layer weights are drawn element by element (they shrink); nets and ensembles draw a seed for their
weights (shrinking to seed 0) plus their structure, because drawing thousands of floats one by one is
slow. `lipschitz_violating_nets` builds models whose Lipschitz constant provably exceeds 1; each
carries `planted_lipschitz` (a proven lower bound on its ℓ∞ Lipschitz constant on [0, 1]^D) and
`planted_kind`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from torch import nn

from props._base import (MAX_SEED, build, check_choice, check_int_range, check_number_range, check_positive,
                         check_shape, drawn, f32, weights)
from props._planted import lipschitz_violating_nets

__all__ = [
    "convex_weights", "linf_dist_layers", "linf_dist_conv_layers", "mean_shifts", "linf_dist_nets",
    "linf_dist_mlp_nets", "conv_linf_dist_mlp_nets", "ensembles", "input_boxes", "input_pairs", "lipschitz_violating_nets",
]

WEIGHT_BITS = 12  # convex weights are multiples of 2^-12: exact in float32, summing exactly to 1
MODES = ("fusion", "voting")


def convex_weights(*, min_size: int = 1, max_size: int = 4, bits: int = WEIGHT_BITS):
    """Lists of min_size..max_size nonnegative weights that sum to exactly 1.0 in float32 and float64
    (any order).

    Drawn as n − 1 integer cut points of [0, 2^bits], so every weight is a multiple of 2^-bits
    (exact in float32 for bits ≤ 24) and every partial sum is exact. Shrinks towards (0, …, 0, 1).
    """
    check_int_range("size", min_size, max_size, at_least=1)
    check_int_range("bits", bits, bits, at_least=0)
    if bits > 24:
        raise InvalidArgument(f"bits must be <= 24 (exact in float32), got {bits}")
    return _convex_weights(min_size, max_size, bits)


@st.composite
def _convex_weights(draw, min_size, max_size, bits) -> list[float]:
    n = draw(st.integers(min_size, max_size))
    total = 1 << bits
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=n - 1, max_size=n - 1)))
    edges = [0] + cuts + [total]
    return [(b - a) / total for a, b in zip(edges, edges[1:])]


def _dist_layer_eval(layer: nn.Module) -> nn.Module:
    layer.p = math.inf
    return layer.eval()


def _check_bias_and_scale(bias, weight_scale) -> None:
    check_choice("bias", bias, (True, False))
    check_positive("weight_scale", weight_scale)


def linf_dist_layers(*, min_features: int = 1, max_features: int = 8, bias: bool | None = None,
                     weight_scale: float = 2.0):
    """`nets.layers.LinfDistLinear` in eval mode (in and out features in min..max_features) with
    weights (and bias; None: drawn) in [−weight_scale, weight_scale]."""
    check_int_range("features", min_features, max_features, at_least=1)
    _check_bias_and_scale(bias, weight_scale)
    return _linf_dist_layers(min_features, max_features, bias, weight_scale)


def _fill(draw, layer, weight_shape, n_out, has_b, scale):
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(draw(weights(weight_shape, scale))))
        if has_b:
            layer.bias.copy_(torch.from_numpy(draw(weights((n_out,), scale))))
    return _dist_layer_eval(layer)


@st.composite
def _linf_dist_layers(draw, lo, hi, bias, scale):
    from nets.layers import LinfDistLinear

    n_in, n_out = draw(st.integers(lo, hi)), draw(st.integers(lo, hi))
    has_b = drawn(draw, bias, st.booleans())
    return _fill(draw, LinfDistLinear(n_in, n_out, bias=has_b), (n_out, n_in), n_out, has_b, scale)


def linf_dist_conv_layers(*, max_in_channels: int = 2, max_out_channels: int = 3, max_kernel_size: int = 3,
                          bias: bool | None = None, weight_scale: float = 2.0):
    """`nets.layers.LinfDistConv2d` in eval mode (stride 1..2, padding 0..1); apply it to inputs at
    least kernel_size wide."""
    for name, v in (("in_channels", max_in_channels), ("out_channels", max_out_channels),
                    ("kernel_size", max_kernel_size)):
        check_int_range(name, 1, v, at_least=1)
    _check_bias_and_scale(bias, weight_scale)
    return _linf_dist_conv_layers(max_in_channels, max_out_channels, max_kernel_size, bias, weight_scale)


@st.composite
def _linf_dist_conv_layers(draw, max_in, max_out, max_k, bias, scale):
    from nets.layers import LinfDistConv2d

    c_in, c_out, k = draw(st.integers(1, max_in)), draw(st.integers(1, max_out)), draw(st.integers(1, max_k))
    s, pad, has_b = draw(st.integers(1, 2)), draw(st.integers(0, 1)), drawn(draw, bias, st.booleans())
    layer = LinfDistConv2d(c_in, c_out, k, stride=s, padding=pad, bias=has_b)
    return _fill(draw, layer, (c_out, c_in, k, k), c_out, has_b, scale)


def mean_shifts(*, min_features: int = 1, max_features: int = 8, scale: float = 2.0):
    """`nets.layers.MeanShift` in eval mode with a drawn running mean (x ↦ x − running_mean)."""
    check_int_range("features", min_features, max_features, at_least=1)
    check_positive("scale", scale)
    return _mean_shifts(min_features, max_features, scale)


@st.composite
def _mean_shifts(draw, lo, hi, scale):
    from nets.layers import MeanShift

    n = draw(st.integers(lo, hi))
    m = MeanShift(n)
    m.running_mean.copy_(torch.from_numpy(draw(weights((n,), scale))))
    return m.eval()


def _check_net(input_shape, min_depth, max_depth, max_width, min_classes, max_classes, *, depth_at_least=1):
    check_shape("input_shape", input_shape)
    check_int_range("depth", min_depth, max_depth, at_least=depth_at_least)
    check_int_range("width", 1, max_width, at_least=1)
    check_int_range("classes", min_classes, max_classes, at_least=2)


def linf_dist_nets(*, input_shape: tuple[int, ...] = (1, 3, 3), min_depth: int = 1, max_depth: int = 3,
                   max_width: int = 8, min_classes: int = 2, max_classes: int = 4,
                   mean_shift: bool | None = None, identity_init: bool | None = None):
    """Pure ℓ∞-dist nets (`nets.models`, arch "linf"): 1-Lipschitz in ℓ∞ at p = ∞ in eval mode."""
    _check_net(input_shape, min_depth, max_depth, max_width, min_classes, max_classes)
    check_choice("mean_shift", mean_shift, (True, False))
    check_choice("identity_init", identity_init, (True, False))
    return _linf_dist_nets(tuple(input_shape), min_depth, max_depth, max_width, min_classes, max_classes,
                           mean_shift, identity_init)


@st.composite
def _linf_dist_nets(draw, shape, min_depth, max_depth, max_width, min_classes, max_classes, mean_shift, identity):
    return build("linf", shape, draw(st.integers(min_depth, max_depth)), draw(st.integers(1, max_width)),
                 draw(st.integers(min_classes, max_classes)), drawn(draw, mean_shift, st.booleans()),
                 drawn(draw, identity, st.booleans()), draw(st.integers(0, MAX_SEED)))


def linf_dist_mlp_nets(*, input_shape: tuple[int, ...] = (1, 3, 3), min_depth: int = 1, max_depth: int = 2,
                       max_width: int = 8, max_hidden: int = 8, min_classes: int = 2, max_classes: int = 4):
    """ℓ∞-dist Net+MLP (arch "linf-mlp"): Lipschitz ≤ ‖W1‖∞·‖W2‖∞ of the head (tanh is 1-Lipschitz)."""
    _check_net(input_shape, min_depth, max_depth, max_width, min_classes, max_classes)
    check_int_range("hidden", 1, max_hidden, at_least=1)
    return _linf_dist_mlp_nets(tuple(input_shape), min_depth, max_depth, max_width, max_hidden, min_classes,
                               max_classes)


@st.composite
def _linf_dist_mlp_nets(draw, shape, min_depth, max_depth, max_width, max_hidden, min_classes, max_classes):
    return build("linf-mlp", shape, draw(st.integers(min_depth, max_depth)), draw(st.integers(1, max_width)),
                 draw(st.integers(min_classes, max_classes)), True, True, draw(st.integers(0, MAX_SEED)),
                 hidden=draw(st.integers(1, max_hidden)))


def conv_linf_dist_mlp_nets(*, input_shape: tuple[int, ...] = (1, 4, 4), max_conv_layers: int = 2,
                            max_channels: int = 3, max_depth: int = 1, max_width: int = 6, max_hidden: int = 6,
                            min_classes: int = 2, max_classes: int = 3):
    """Conv ℓ∞-dist Net+MLP (arch "conv-linf-mlp", kernel 3, padding 1, stride 1..2, 0..max_depth
    dist layers): the conv + dist trunk is 1-Lipschitz, so the net is ‖W1‖∞·‖W2‖∞-Lipschitz (tanh is
    1-Lipschitz)."""
    _check_net(input_shape, 0, max_depth, max_width, min_classes, max_classes, depth_at_least=0)
    check_int_range("conv_layers", 1, max_conv_layers, at_least=1)
    check_int_range("channels", 1, max_channels, at_least=1)
    check_int_range("hidden", 1, max_hidden, at_least=1)
    return _conv_linf_dist_mlp_nets(tuple(input_shape), max_conv_layers, max_channels, max_depth, max_width,
                                    max_hidden, min_classes, max_classes)


@st.composite
def _conv_linf_dist_mlp_nets(draw, shape, max_conv, max_channels, max_depth, max_width, max_hidden,
                             min_classes, max_classes):
    channels = tuple(draw(st.lists(st.integers(1, max_channels), min_size=1, max_size=max_conv)))
    strides = tuple(draw(st.integers(1, 2)) for _ in channels)
    return build("conv-linf-mlp", shape, draw(st.integers(0, max_depth)), draw(st.integers(1, max_width)),
                 draw(st.integers(min_classes, max_classes)), True, True, draw(st.integers(0, MAX_SEED)),
                 hidden=draw(st.integers(1, max_hidden)), conv_channels=channels, conv_strides=strides,
                 conv_kernel=3)


def ensembles(*, min_size: int = 1, max_size: int = 3, mode: str | None = None,
              input_shape: tuple[int, ...] = (1, 3, 3), min_classes: int = 2, max_classes: int = 4,
              members: st.SearchStrategy | None = None):
    """`nets.ensemble.ConvexEnsemble` of min_size..max_size pure ℓ∞-dist nets with `convex_weights`.

    Fusion is 1-Lipschitz (a convex combination of 1-Lipschitz maps); voting averages softmaxes, and
    softmax is ½-Lipschitz in ℓ∞ (its Jacobian diag(s) − s·sᵀ has ℓ∞ norm max_i 2·s_i(1 − s_i) ≤ ½),
    so voting is ½-Lipschitz. ``mode``: "fusion", "voting" or None (drawn). ``members``: a strategy
    of member nets (default `linf_dist_nets` of ``input_shape`` with one drawn class count).
    """
    check_int_range("size", min_size, max_size, at_least=1)
    check_choice("mode", mode, MODES)
    check_shape("input_shape", input_shape)
    check_int_range("classes", min_classes, max_classes, at_least=2)
    if members is not None and not isinstance(members, st.SearchStrategy):
        raise InvalidArgument(f"members must be a strategy of nets, got {members!r}")
    return _ensembles(min_size, max_size, mode, tuple(input_shape), min_classes, max_classes, members)


@st.composite
def _ensembles(draw, min_size, max_size, mode, shape, min_classes, max_classes, members):
    from nets.ensemble import ConvexEnsemble

    k, classes = draw(st.integers(min_size, max_size)), draw(st.integers(min_classes, max_classes))
    member_st = members if members is not None else linf_dist_nets(
        input_shape=shape, min_classes=classes, max_classes=classes)
    nets = [draw(member_st) for _ in range(k)]
    return ConvexEnsemble(nets, draw(convex_weights(min_size=k, max_size=k)),
                          mode=drawn(draw, mode, st.sampled_from(MODES))).eval()


def input_boxes(*, shape: tuple[int, ...], min_value: float = 0.0, max_value: float = 1.0,
                max_radius: float = 0.1):
    """(lo, hi) float32 arrays of `shape` with min_value ≤ lo ≤ hi ≤ max_value: a centre plus a
    radius ≤ max_radius, clipped."""
    shape = check_shape("shape", shape)
    check_number_range("value", min_value, max_value)
    check_number_range("radius", 0.0, max_radius)
    return _input_boxes(shape, min_value, max_value, max_radius)


@st.composite
def _input_boxes(draw, shape, low, high, max_radius):
    centre = draw(hnp.arrays(np.float32, shape, elements=f32(low, high)))
    r = np.float32(draw(f32(0.0, max_radius)))
    lo = np.clip(centre - r, low, high).astype(np.float32)
    hi = np.clip(centre + r, low, high).astype(np.float32)
    return np.minimum(lo, centre), np.maximum(hi, centre)


def input_pairs(*, near, min_distance: float = 1e-3, max_distance: float = 0.1, min_value: float = 0.0,
                max_value: float = 1.0):
    """(x, x′) float32 near the data points `near` [N, *shape]: x = a data point (clipped to the domain)
    plus an offset, x′ = x plus another offset, with min_distance ≤ ‖x − x′‖∞ ≤ max_distance exactly.

    One coordinate of x′ − x has magnitude d ∈ [min_distance, max_distance], pointing away from the
    nearer domain bound, so the distance is never 0 (and ≤ max_distance up to one float32 rounding).
    Needs max_value − min_value ≥ 2·max_distance.
    """
    data = np.asarray(near, dtype=np.float32)
    if data.ndim < 2 or len(data) == 0:
        raise InvalidArgument("near must be a non-empty array [N, *shape]")
    check_number_range("distance", min_distance, max_distance)
    check_number_range("value", min_value, max_value)
    if not (0 < min_distance and max_value - min_value >= 2 * max_distance):
        raise InvalidArgument("need 0 < min_distance <= max_distance and max_value - min_value >= 2 * max_distance")
    return _input_pairs(data, min_distance, max_distance, min_value, max_value)


@st.composite
def _input_pairs(draw, data, min_distance, max_distance, low, high):
    i = draw(st.integers(0, len(data) - 1))
    shape = data.shape[1:]
    off = draw(hnp.arrays(np.float32, shape, elements=f32(-max_distance, max_distance)))
    x = np.clip(data[i] + off, low, high).astype(np.float32)
    off2 = draw(hnp.arrays(np.float32, shape, elements=f32(-max_distance, max_distance)))
    xp = np.clip(x + off2, low, high).astype(np.float32)
    j = draw(st.integers(0, x.size - 1))
    d = draw(f32(min_distance, max_distance))
    flat, flat_p = x.ravel(), xp.ravel()
    flat_p[j] = flat[j] + d if flat[j] + d <= high else flat[j] - d
    # keep the exact sup distance ≤ max_distance although float rounding of x + d may exceed it
    flat_p[:] = np.clip(flat_p, flat - np.float32(max_distance), flat + np.float32(max_distance))
    return x, flat_p.reshape(shape)
