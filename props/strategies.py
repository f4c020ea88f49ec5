"""Hypothesis strategies for ℓ∞-dist layers, nets, convex ensembles, input boxes and pairs.

Hypothesis's own style: plural names, keyword-only arguments that take a value or a strategy, values
valid by construction (no filtering: centres + radii, integer cuts, clipped offsets), shrinking
towards small, simple examples (small sizes, seed 0, zero offsets). Every model comes in eval mode at
p = ∞ (the model that is certified and exported) and in float32.

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
from hypothesis.extra import numpy as hnp
from torch import nn

__all__ = [
    "convex_weights", "linf_dist_layers", "linf_dist_conv_layers", "mean_shifts", "linf_dist_nets",
    "linf_dist_mlp_nets", "conv_linf_dist_mlp_nets", "ensembles", "input_boxes", "input_pairs", "lipschitz_violating_nets",
]

WEIGHT_BITS = 12  # convex weights are multiples of 2^-12: exact in float32, summing exactly to 1


def _s(v):
    """A strategy from a value or a strategy."""
    return v if isinstance(v, st.SearchStrategy) else st.just(v)


def _f32(lo: float, hi: float):
    """float32 values in [lo, hi] (bounds rounded inwards to float32)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return st.floats(float(lo32), float(hi32), width=32, allow_nan=False, allow_infinity=False)


def _weights(shape, scale: float):
    return hnp.arrays(np.float32, shape, elements=_f32(-scale, scale))


@st.composite
def convex_weights(draw, *, n=st.integers(1, 4), bits: int = WEIGHT_BITS) -> list[float]:
    """n nonnegative weights that sum to exactly 1.0 in float32 and float64 (any order).

    Drawn as n − 1 integer cut points of [0, 2^bits], so every weight is a multiple of 2^-bits
    (exact in float32 for bits ≤ 24) and every partial sum is exact. Shrinks towards (0, …, 0, 1).
    """
    n = draw(_s(n))
    if n < 1 or bits > 24:
        raise ValueError("need n >= 1 and bits <= 24")
    total = 1 << bits
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=n - 1, max_size=n - 1)))
    edges = [0] + cuts + [total]
    return [(b - a) / total for a, b in zip(edges, edges[1:])]


def _dist_layer_eval(layer: nn.Module) -> nn.Module:
    layer.p = math.inf
    return layer.eval()


@st.composite
def linf_dist_layers(draw, *, in_features=st.integers(1, 8), out_features=st.integers(1, 8),
                     bias=st.booleans(), weight_scale: float = 2.0):
    """`nets.layers.LinfDistLinear` in eval mode with weights (and bias) in [−scale, scale]."""
    from nets.layers import LinfDistLinear

    n_in, n_out, has_b = draw(_s(in_features)), draw(_s(out_features)), draw(_s(bias))
    layer = LinfDistLinear(n_in, n_out, bias=has_b)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(draw(_weights((n_out, n_in), weight_scale))))
        if has_b:
            layer.bias.copy_(torch.from_numpy(draw(_weights((n_out,), weight_scale))))
    return _dist_layer_eval(layer)


@st.composite
def linf_dist_conv_layers(draw, *, in_channels=st.integers(1, 2), out_channels=st.integers(1, 3),
                          kernel_size=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
                          bias=st.booleans(), weight_scale: float = 2.0):
    """`nets.layers.LinfDistConv2d` in eval mode; apply it to inputs at least kernel_size wide."""
    from nets.layers import LinfDistConv2d

    c_in, c_out, k = draw(_s(in_channels)), draw(_s(out_channels)), draw(_s(kernel_size))
    s, pad, has_b = draw(_s(stride)), draw(_s(padding)), draw(_s(bias))
    layer = LinfDistConv2d(c_in, c_out, k, stride=s, padding=pad, bias=has_b)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(draw(_weights((c_out, c_in, k, k), weight_scale))))
        if has_b:
            layer.bias.copy_(torch.from_numpy(draw(_weights((c_out,), weight_scale))))
    return _dist_layer_eval(layer)


@st.composite
def mean_shifts(draw, *, num_features=st.integers(1, 8), scale: float = 2.0):
    """`nets.layers.MeanShift` in eval mode with a drawn running mean (x ↦ x − running_mean)."""
    from nets.layers import MeanShift

    n = draw(_s(num_features))
    m = MeanShift(n)
    m.running_mean.copy_(torch.from_numpy(draw(_weights((n,), scale))))
    return m.eval()


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


def _build(arch: str, input_shape, depth, width, classes, mean_shift, identity, seed, **kw):
    from nets.models import ModelConfig, build_model

    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, input_shape=tuple(input_shape), num_classes=classes, depth=depth,
                      width=width, mean_shift=mean_shift, identity_init=identity, **kw)
    return _randomise(build_model(cfg), seed, 3.0)


@st.composite
def linf_dist_nets(draw, *, input_shape=st.just((1, 3, 3)), depth=st.integers(1, 3),
                   width=st.integers(1, 8), num_classes=st.integers(2, 4), mean_shift=st.booleans(),
                   identity_init=st.booleans(), seed=st.integers(0, 2**16)):
    """Pure ℓ∞-dist nets (`nets.models`, arch "linf"): 1-Lipschitz in ℓ∞ at p = ∞ in eval mode."""
    return _build("linf", draw(_s(input_shape)), draw(_s(depth)), draw(_s(width)), draw(_s(num_classes)),
                  draw(_s(mean_shift)), draw(_s(identity_init)), draw(_s(seed)))


@st.composite
def linf_dist_mlp_nets(draw, *, input_shape=st.just((1, 3, 3)), depth=st.integers(1, 2),
                       width=st.integers(1, 8), hidden=st.integers(1, 8), num_classes=st.integers(2, 4),
                       seed=st.integers(0, 2**16)):
    """ℓ∞-dist Net+MLP (arch "linf-mlp"): Lipschitz ≤ ‖W1‖∞·‖W2‖∞ of the head (tanh is 1-Lipschitz)."""
    return _build("linf-mlp", draw(_s(input_shape)), draw(_s(depth)), draw(_s(width)), draw(_s(num_classes)),
                  True, True, draw(_s(seed)), hidden=draw(_s(hidden)))


@st.composite
def conv_linf_dist_mlp_nets(draw, *, input_shape=st.just((1, 4, 4)),
                            conv_channels=st.lists(st.integers(1, 3), min_size=1, max_size=2),
                            stride=st.integers(1, 2), depth=st.integers(0, 1), width=st.integers(1, 6),
                            hidden=st.integers(1, 6), num_classes=st.integers(2, 3), seed=st.integers(0, 2**16)):
    """Conv ℓ∞-dist Net+MLP (arch "conv-linf-mlp", kernel 3, padding 1): the conv + dist trunk is
    1-Lipschitz, so the net is ‖W1‖∞·‖W2‖∞-Lipschitz (tanh is 1-Lipschitz)."""
    channels = tuple(draw(_s(conv_channels)))
    strides = tuple(draw(_s(stride)) for _ in channels)
    return _build("conv-linf-mlp", draw(_s(input_shape)), draw(_s(depth)), draw(_s(width)),
                  draw(_s(num_classes)), True, True, draw(_s(seed)), hidden=draw(_s(hidden)),
                  conv_channels=channels, conv_strides=strides, conv_kernel=3)


@st.composite
def ensembles(draw, *, n=st.integers(1, 3), mode=st.sampled_from(["fusion", "voting"]),
              input_shape=st.just((1, 3, 3)), num_classes=st.integers(2, 4), members=None):
    """`nets.ensemble.ConvexEnsemble` of pure ℓ∞-dist nets with `convex_weights`.

    Fusion is 1-Lipschitz (a convex combination of 1-Lipschitz maps); voting averages softmaxes, and
    softmax is ½-Lipschitz in ℓ∞ (its Jacobian diag(s) − s·sᵀ has ℓ∞ norm max_i 2·s_i(1 − s_i) ≤ ½),
    so voting is ½-Lipschitz. `members`: a strategy of member nets (default `linf_dist_nets`).
    """
    from nets.ensemble import ConvexEnsemble

    k, shape, classes = draw(_s(n)), draw(_s(input_shape)), draw(_s(num_classes))
    member_st = members if members is not None else linf_dist_nets(input_shape=shape, num_classes=classes)
    nets = [draw(member_st) for _ in range(k)]
    return ConvexEnsemble(nets, draw(convex_weights(n=k)), mode=draw(_s(mode))).eval()


@st.composite
def input_boxes(draw, *, shape, low: float = 0.0, high: float = 1.0, max_radius: float = 0.1):
    """(lo, hi) float32 arrays of `shape` with low ≤ lo ≤ hi ≤ high: a centre plus a radius, clipped."""
    shape = tuple(draw(_s(shape)))
    centre = draw(hnp.arrays(np.float32, shape, elements=_f32(low, high)))
    r = np.float32(draw(_f32(0.0, max_radius)))
    lo = np.clip(centre - r, low, high).astype(np.float32)
    hi = np.clip(centre + r, low, high).astype(np.float32)
    return np.minimum(lo, centre), np.maximum(hi, centre)


@st.composite
def input_pairs(draw, *, near, max_distance: float = 0.1, min_distance: float = 1e-3,
                low: float = 0.0, high: float = 1.0):
    """(x, x′) float32 near the data points `near` [N, *shape]: x = a data point (clipped to the domain)
    plus an offset, x′ = x plus another offset, with min_distance ≤ ‖x − x′‖∞ ≤ max_distance exactly.

    One coordinate of x′ − x has magnitude d ∈ [min_distance, max_distance], pointing away from the
    nearer domain bound, so the distance is never 0 (and ≤ max_distance up to one float32 rounding).
    Needs high − low ≥ 2·max_distance.
    """
    data = np.asarray(near, dtype=np.float32)
    if data.ndim < 2 or len(data) == 0:
        raise ValueError("near must be a non-empty array [N, *shape]")
    if not (0 < min_distance <= max_distance and high - low >= 2 * max_distance):
        raise ValueError("need 0 < min_distance <= max_distance and high - low >= 2 * max_distance")
    i = draw(st.integers(0, len(data) - 1))
    shape = data.shape[1:]
    off = draw(hnp.arrays(np.float32, shape, elements=_f32(-max_distance, max_distance)))
    x = np.clip(data[i] + off, low, high).astype(np.float32)
    off2 = draw(hnp.arrays(np.float32, shape, elements=_f32(-max_distance, max_distance)))
    xp = np.clip(x + off2, low, high).astype(np.float32)
    j = draw(st.integers(0, x.size - 1))
    d = draw(_f32(min_distance, max_distance))
    flat, flat_p = x.ravel(), xp.ravel()
    flat_p[j] = flat[j] + d if flat[j] + d <= high else flat[j] - d
    # keep the exact sup distance ≤ max_distance although float rounding of x + d may exceed it
    flat_p[:] = np.clip(flat_p, flat - np.float32(max_distance), flat + np.float32(max_distance))
    return x, flat_p.reshape(shape)


from props._planted import lipschitz_violating_nets  # noqa: E402  (re-exported strategy)
