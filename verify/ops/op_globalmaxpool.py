"""GlobalMaxPool: the max over every axis from 2 on (kept as extent 1). Exact, monotone (so the box
maps endpoint-wise), 1-Lipschitz."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.maxpool import global_index, window_max_relax
from verify.ops._reduce import GLOBAL, reduce_batch_axis, reduced_axes
from verify.ops._shape import ShapeOp


class GlobalMaxPool(ShapeOp):
    op_type = "GlobalMaxPool"
    reduce_kind = GLOBAL

    def forward(self, x):
        x = np.asarray(x)
        axes = reduced_axes(self, x.ndim)
        if any(x.shape[a] == 0 for a in axes):
            raise self.fail("reduction over an empty axis")
        return np.max(x, axis=axes, keepdims=True)

    def torch_forward(self, ctx, x):
        axes = reduced_axes(self, x.dim())
        return torch.amax(x, dim=axes, keepdim=True) if axes else x

    def relax(self, a, ins, out, ctx):
        """The MaxPool relaxation with one window per channel (verify/bounds/maxpool.py)."""
        x = ins[0]
        if x.lo.dim() < 3:
            return None
        return window_max_relax(a, x, global_index(tuple(x.lo.shape[1:])))

    def batch_axis(self, f):
        return reduce_batch_axis(self, f)
