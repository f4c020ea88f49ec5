"""Conv (2-D, group = 1, explicit pads): a sound linear map with constant kernel and bias."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.ops._affine import affine_interval
from verify.ops._torch import f32t
from verify.ops.base import Op, inf_norm_up, mul_up
from verify.bounds.linear import Relaxed, affine_bias, t64


class Conv(Op):
    op_type = "Conv"
    foldable = False
    known_attrs = frozenset({"strides", "pads", "dilations", "group", "kernel_shape", "auto_pad"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if int(self.attr("group", 1)) != 1:
            return "group != 1 is not supported"
        if self.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
            return "auto_pad is not supported (use explicit pads)"
        if not self.is_var(0) or self.is_var(1) or (len(self.inputs) > 2 and self.is_var(2)):
            return "only a variable X with constant W and B is supported"
        w = self.const(1)
        if w is None or w.ndim != 4:
            return "only 2-D convolution (W of rank 4) is supported"
        ks = self.attr("kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:]):
            return "kernel_shape disagrees with W"
        p = list(self.attr("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            return "pads must have 4 entries"
        return None

    def _conv_t(self, xt: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        p = list(self.attr("pads", [0, 0, 0, 0]))
        s = list(self.attr("strides", [1, 1]))
        d = list(self.attr("dilations", [1, 1]))
        if p[0] != p[2] or p[1] != p[3]:
            xt = F.pad(xt, (p[1], p[3], p[0], p[2]))
            pad = 0
        else:
            pad = (p[0], p[1])
        return F.conv2d(xt, wt, None, stride=s, padding=pad, dilation=d)

    def _conv(self, x: np.ndarray, w: np.ndarray, dtype) -> np.ndarray:
        with torch.no_grad():
            return self._conv_t(torch.from_numpy(np.require(x, dtype, ["C", "W"])),
                                torch.from_numpy(np.require(w, dtype, ["C", "W"]))).numpy()

    def forward(self, x, w, b=None):
        y = self._conv(x, w, np.float32)
        if b is not None:
            y = y + np.asarray(b, np.float32).reshape(1, -1, 1, 1)
        return y.astype(np.float32)

    def torch_forward(self, ctx, x, w, b=None):
        y = self._conv_t(f32t(x), f32t(w))
        return y if b is None else y + f32t(b).reshape(1, -1, 1, 1)

    def interval(self, xb, wb, bb=None):
        w = np.asarray(wb.lo, np.float64)
        aw = np.abs(w)
        bias = None if bb is None else np.asarray(bb.lo, np.float64).reshape(1, -1, 1, 1)
        n = int(np.prod(w.shape[1:]))
        return affine_interval(
            xb, lambda v: self._conv(v, w, np.float64), lambda v: self._conv(v, aw, np.float64), n, bias
        )

    def lipschitz(self, lx=None, lw=None, lb=None):
        if lx is None:
            return 0.0
        w = self.const(1)
        return mul_up(inf_norm_up(w.reshape(w.shape[0], -1), 1), lx)

    def relax(self, a, ins, out, ctx):
        """CROWN step: A_in = convᵀ(A) (torch's conv2d_input in float64; each coefficient a sum of
        at most C_out·kh·kw terms); verify/bounds/linear.affine_bias charges the rounding."""
        w = self.const(1)
        p = list(self.attr("pads", [0, 0, 0, 0]))
        x = ins[0].lo
        n, s = a.shape[:2]
        padded = (n * s, x.shape[1], x.shape[2] + p[0] + p[2], x.shape[3] + p[1] + p[3])
        g = torch.nn.grad.conv2d_input(padded, t64(w), a.reshape(n * s, *a.shape[2:]),
                                       stride=list(self.attr("strides", [1, 1])), padding=0,
                                       dilation=list(self.attr("dilations", [1, 1])))
        a_in = g[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]].reshape(n, s, *x.shape[1:])
        img = t64(self._conv(ins[0].mag.numpy(), np.abs(np.asarray(w, np.float64)), np.float64))
        bias = None if len(self.inputs) < 3 or not self.inputs[2] else t64(self.const(2)).reshape(-1, 1, 1)
        k = int(np.prod(w.shape[1:]))
        return Relaxed({0: a_in}, affine_bias(a, w.shape[0] * w.shape[2] * w.shape[3], k, img, bias, ctx,
                                                     in_mag=ins[0].mag))

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
