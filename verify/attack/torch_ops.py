"""Torch implementations of the ONNX ops the verifier reads, for differentiable graph evaluation.

Each entry of :data:`OPS` maps (domain, op_type) to ``fn(ctx, attrs, *inputs) -> tensor | tuple``.
Forward values follow ONNX semantics in float32 (the attack judges success on these values, then
replays every witness in onnxruntime). ``ctx.p_grad`` selects the gradient of ℓ∞-dist layers and
of ReduceMax over an Abs (the standard-op form of an ℓ∞-dist layer): ``inf`` = exact subgradient,
finite = smoothed ℓp surrogate (forward stays exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from verify.attack.linf_torch import linf_dist, linf_dist_conv

__all__ = ["OPS", "OpContext", "supported_ops"]


@dataclass
class OpContext:
    """Per-evaluation settings: surrogate exponent and the names of values produced by Abs."""

    p_grad: float = math.inf
    abs_values: set = field(default_factory=set)


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _axes(attrs, inputs, idx=1):
    if len(inputs) > idx and inputs[idx] is not None:
        return _ints(inputs[idx])
    return attrs.get("axes")


def _gemm(ctx, attrs, a, b, c=None):
    if attrs.get("transA", 0):
        a = a.transpose(-1, -2)
    if attrs.get("transB", 0):
        b = b.transpose(-1, -2)
    y = attrs.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + attrs.get("beta", 1.0) * c
    return y


def _pad_2d(x, pads, value):
    nd = len(pads) // 2
    begin, end = pads[:nd], pads[nd:]
    flat = []
    for i in reversed(range(nd)):
        flat += [begin[i], end[i]]
    return F.pad(x, flat, value=value) if any(pads) else x


def _conv(ctx, attrs, x, w, b=None):
    nd = w.dim() - 2
    pads = attrs.get("pads", [0] * 2 * nd)
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError("Conv auto_pad SAME_* is not supported by the attack")
    x = _pad_2d(x, pads, 0.0)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return conv(x, w, b, stride=attrs.get("strides", [1] * nd), dilation=attrs.get("dilations", [1] * nd),
                groups=attrs.get("group", 1))


def _pool(kind):
    def fn(ctx, attrs, x):
        k = attrs["kernel_shape"]
        nd = len(k)
        pads = attrs.get("pads", [0] * 2 * nd)
        strides = attrs.get("strides", [1] * nd)
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            x = _pad_2d(x, pads, -math.inf)
            pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
            return pool(x, k, strides, dilation=attrs.get("dilations", [1] * nd), ceil_mode=ceil)
        sym = pads[:nd] == pads[nd:]
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
        if attrs.get("count_include_pad", 0) or not any(pads):
            return pool(_pad_2d(x, pads, 0.0), k, strides, ceil_mode=ceil, count_include_pad=True)
        if not sym:
            raise NotImplementedError("AveragePool with asymmetric pads is not supported by the attack")
        return pool(x, k, strides, padding=pads[:nd], ceil_mode=ceil, count_include_pad=False)

    return fn


def _reduce_max(ctx, attrs, x, axes_in=None, *, name=""):
    axes = _axes(attrs, (x, axes_in))
    keep = bool(attrs.get("keepdims", 1))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    y = x.amax(dim=tuple(axes), keepdim=keep)
    if not (x.requires_grad and math.isfinite(ctx.p_grad) and name in ctx.abs_values):
        return y
    # straight-through ℓp surrogate over a non-negative input (|x − w| of an ℓ∞-dist layer)
    p = ctx.p_grad
    m = x.detach().amax(dim=tuple(axes), keepdim=True).clamp_min(1e-30)
    smooth = m * ((x / m) ** p).sum(dim=tuple(axes), keepdim=True) ** (1.0 / p)
    if not keep:
        smooth = smooth.squeeze(dim=tuple(sorted(axes)))
    return y + (smooth - smooth.detach())


def _reshape(ctx, attrs, x, shape):
    shape = _ints(shape)
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(ctx, attrs, x):
    axis = attrs.get("axis", 1) % max(1, x.dim()) if attrs.get("axis", 1) < 0 else attrs.get("axis", 1)
    lead = 1
    for s in x.shape[:axis]:
        lead *= s
    return x.reshape(lead, -1)


def _squeeze(ctx, attrs, x, axes=None):
    ax = _axes(attrs, (x, axes))
    return x.squeeze() if ax is None else x.squeeze(dim=tuple(a % x.dim() for a in ax))


def _unsqueeze(ctx, attrs, x, axes=None):
    ax = sorted(a % (x.dim() + len(_axes(attrs, (x, axes)))) for a in _axes(attrs, (x, axes)))
    for a in ax:
        x = x.unsqueeze(a)
    return x


def _clip(ctx, attrs, x, lo=None, hi=None):
    lo = attrs.get("min", lo) if lo is None else lo
    hi = attrs.get("max", hi) if hi is None else hi
    if lo is not None:
        x = torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype))
    if hi is not None:
        x = torch.minimum(x, torch.as_tensor(hi, dtype=x.dtype))
    return x


def _batchnorm(ctx, attrs, x, scale, bias, mean, var, *rest):
    shape = [1, -1] + [1] * (x.dim() - 2)
    eps = attrs.get("epsilon", 1e-5)
    return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(
        shape
    )


def _linf(ctx, attrs, x, w, b=None):
    y = linf_dist(x, w, ctx.p_grad)
    return y if b is None else y + b


def _linf_conv(ctx, attrs, x, w, b=None):
    y = linf_dist_conv(
        x, w, strides=attrs.get("strides", [1, 1]), pads=attrs.get("pads", [0, 0, 0, 0]),
        dilations=attrs.get("dilations", [1, 1]), p_grad=ctx.p_grad,
    )
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _variadic(fn):
    def run(ctx, attrs, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out

    return run


def _softmax(ctx, attrs, x):
    return torch.softmax(x, dim=attrs.get("axis", -1))


def _concat(ctx, attrs, *xs):
    return torch.cat(xs, dim=attrs["axis"])


def _gather(ctx, attrs, x, idx):
    axis = attrs.get("axis", 0)
    out = torch.index_select(x, axis, idx.reshape(-1).long() % x.shape[axis])
    return out.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


_CAST = {1: torch.float32, 6: torch.int32, 7: torch.int64, 11: torch.float64, 9: torch.bool}

OPS = {
    ("linf", "LinfDist"): _linf,
    ("linf", "LinfDistConv"): _linf_conv,
    ("", "Gemm"): _gemm,
    ("", "MatMul"): lambda c, a, x, y: x @ y,
    ("", "Conv"): _conv,
    ("", "Add"): lambda c, a, x, y: x + y,
    ("", "Sub"): lambda c, a, x, y: x - y,
    ("", "Mul"): lambda c, a, x, y: x * y,
    ("", "Div"): lambda c, a, x, y: x / y,
    ("", "Neg"): lambda c, a, x: -x,
    ("", "Relu"): lambda c, a, x: torch.relu(x),
    ("", "Tanh"): lambda c, a, x: torch.tanh(x),
    ("", "Sigmoid"): lambda c, a, x: torch.sigmoid(x),
    ("", "Abs"): lambda c, a, x: x.abs(),
    ("", "Max"): _variadic(torch.maximum),
    ("", "Min"): _variadic(torch.minimum),
    ("", "Sum"): _variadic(torch.add),
    ("", "ReduceMax"): _reduce_max,
    ("", "MaxPool"): _pool("max"),
    ("", "AveragePool"): _pool("avg"),
    ("", "Flatten"): _flatten,
    ("", "Reshape"): _reshape,
    ("", "Squeeze"): _squeeze,
    ("", "Unsqueeze"): _unsqueeze,
    ("", "Transpose"): lambda c, a, x: x.permute(*a.get("perm", list(reversed(range(x.dim()))))),
    ("", "Concat"): _concat,
    ("", "Softmax"): _softmax,
    ("", "BatchNormalization"): _batchnorm,
    ("", "Clip"): _clip,
    ("", "Identity"): lambda c, a, x: x,
    ("", "Shape"): lambda c, a, x: torch.tensor(x.shape[a.get("start", 0):a.get("end", None)], dtype=torch.int64),
    ("", "Gather"): _gather,
    ("", "Cast"): lambda c, a, x: x.to(_CAST.get(a["to"], torch.float32)),
}


def supported_ops() -> list[str]:
    """Sorted "domain::op_type" names the attack can evaluate."""
    return sorted(f"{d}::{o}" if d else o for d, o in OPS)
