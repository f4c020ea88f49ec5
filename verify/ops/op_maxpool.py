"""MaxPool (2-D, ceil_mode 0, explicit pads, one output): exact max over windows (padding = -inf),
monotone and 1-Lipschitz."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.bounds.maxpool import window_index, window_max_relax
from verify.ops._shape import ShapeOp
from verify.ops._torch import f32t


def pool_params(op, nd=2):
    k = [int(v) for v in op.attr("kernel_shape", [])]
    s = [int(v) for v in op.attr("strides", [1] * nd)]
    p = [int(v) for v in op.attr("pads", [0] * (2 * nd))]
    d = [int(v) for v in op.attr("dilations", [1] * nd)]
    return k, s, p, d


def pool_unsupported(op, nd=2):
    if op.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return "auto_pad is not supported (use explicit pads)"
    if int(op.attr("ceil_mode", 0)):
        return "ceil_mode = 1 is not supported"
    k, s, p, d = pool_params(op, nd)
    if len(k) != nd or len(s) != nd or len(p) != 2 * nd or len(d) != nd:
        return "only 2-D pooling (4-D input) is supported"
    if min(k + s + d) < 1 or min(p) < 0:
        return "kernel_shape/strides/dilations must be >= 1 and pads >= 0"
    if any(p[i] >= k[i % nd] for i in range(2 * nd)):  # an all-padding window: NaN / -inf
        return "pads must be smaller than the kernel (onnxruntime refuses to run otherwise)"
    if len(op.outputs) > 1:
        return "the Indices output is not supported"
    return None


class MaxPool(ShapeOp):
    op_type = "MaxPool"
    known_attrs = frozenset({"kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad", "storage_order"})

    def unsupported(self):
        return super().unsupported() or pool_unsupported(self)

    def forward(self, x):
        with torch.no_grad():
            return self.torch_forward(None, torch.from_numpy(np.require(x, np.float32, ["C", "W"]))).numpy()

    def torch_forward(self, ctx, x):
        k, s, p, d = pool_params(self)
        xt = F.pad(f32t(x), (p[1], p[3], p[0], p[2]), value=float("-inf"))
        return F.max_pool2d(xt, k, s, 0, d)

    def relax(self, a, ins, out, ctx):
        """Lower: the window's input with the largest lower bound; upper: the chord of
        max(x_i*, L) (exact when one input dominates); verify/bounds/maxpool.py."""
        x = ins[0]
        if x.lo.dim() != 4:
            return None
        return window_max_relax(a, x, window_index(tuple(x.lo.shape[1:]), *pool_params(self)))

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
