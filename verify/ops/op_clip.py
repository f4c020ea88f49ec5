"""Clip(x, min?, max?) (min/max as constant inputs, or attributes before opset 11): exact.

A missing bound is the type's lowest / largest finite value, as the ONNX spec and onnxruntime have it
(numeric_limits<T>::lowest() / max()): for float32 ±FLT_MAX, so Clip maps ±inf to ±FLT_MAX even with
no bounds, and Clip(x, min=+inf) is FLT_MAX (max(x, inf) = inf, then min(inf, FLT_MAX))."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._elementwise import same_kind
from verify.ops._torch import as_tensor, f32t, numpy_forward
from verify.ops.base import Box, Op, scaled


class Clip(Op):
    op_type = "Clip"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset({"min", "max"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1) or self.is_var(2):
            return "min/max must be constants"
        return None

    def _bounds(self):
        lo = self.attrs.get("min", self.const(1))
        hi = self.attrs.get("max", self.const(2))
        return lo, hi

    def forward(self, x, *_):
        lo, hi = self._bounds()
        (y,) = same_kind([x])  # integer Clip stays integer (exact), float becomes float32
        lim = np.finfo(y.dtype) if np.issubdtype(y.dtype, np.floating) else np.iinfo(y.dtype)
        y = np.maximum(y, np.asarray(lim.min if lo is None else lo).astype(y.dtype))
        return np.minimum(y, np.asarray(lim.max if hi is None else hi).astype(y.dtype))

    def torch_forward(self, ctx, x, *_):
        if not torch.is_floating_point(x):
            return numpy_forward(self, x)
        lim = np.finfo(np.float32)
        lo, hi = (as_tensor(np.asarray(d if v is None else v).astype(np.float32))
                  for v, d in zip(self._bounds(), (lim.min, lim.max)))
        return torch.minimum(torch.maximum(f32t(x), lo), hi)

    def interval(self, b, *_):
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None, *_):
        return scaled([lx], 1.0)

    def batch_axis(self, f):
        from verify.front.batch_axis import elementwise

        return elementwise(self, f)
