"""linf::LinfDistConv(X[N,C,H,W], W[M,C,kH,kW], B?[M]) with ONNX Conv strides/pads/dilations,
padded value 0: each output is a LinfDist of one (zero-padded) patch, so the same exact-rounding
argument applies (padding copies 0 exactly; the unfold is a pure copy)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from verify.ops._linf_kernel import linf_forward
from verify.ops._linf_torch import linf_dist_conv
from verify.ops._torch import f32t
from verify.ops.base import Box, Op, add_up
from verify.ops.op_linfdist import add_bias_outward, dist_box

_DEFAULTS = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1)}


class LinfDistConv(Op):
    op_type = "LinfDistConv"
    domain = "linf"
    inf_safe = True  # |x - w| with finite W: never NaN
    known_attrs = frozenset(_DEFAULTS)

    def params(self):
        p = {k: tuple(int(v) for v in self.attrs.get(k, d)) for k, d in _DEFAULTS.items()}
        return p["strides"], p["pads"], p["dilations"]

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        s, p, d = self.params()
        if len(s) != 2 or len(p) != 4 or len(d) != 2 or min(s + d) < 1 or min(p) < 0:
            return "strides/dilations must be 2 ints >= 1 and pads 4 ints >= 0"
        w = self.const(1)
        if w is None or w.ndim != 4:
            return "W must be a constant of rank 4 [M, C, kH, kW]"
        return None

    def _unfold(self, x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Patches [N*H'*W', C*kH*kW] (zero padded, exact copies) and (N, H', W')."""
        s, p, d = self.params()
        w = self.const(1)
        kh, kw = w.shape[2], w.shape[3]
        n, c, h, wd = x.shape
        if c != w.shape[1]:
            raise self.fail(f"input has {c} channels, W expects {w.shape[1]}")
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        xt = F.pad(xt, (p[1], p[3], p[0], p[2]), value=0.0)
        oh = (xt.shape[2] - (d[0] * (kh - 1) + 1)) // s[0] + 1
        ow = (xt.shape[3] - (d[1] * (kw - 1) + 1)) // s[1] + 1
        if oh < 1 or ow < 1:
            raise self.fail("kernel larger than the padded input")
        cols = F.unfold(xt, (kh, kw), dilation=d, stride=s)  # [N, C*kh*kw, L]
        cols = cols.transpose(1, 2).reshape(n * oh * ow, c * kh * kw)
        return cols.numpy(), (n, oh, ow)

    def _fold(self, y: np.ndarray, dims) -> np.ndarray:
        n, oh, ow = dims
        return np.ascontiguousarray(y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))

    def forward(self, x, w, b=None):
        cols, dims = self._unfold(np.asarray(x, np.float32))
        y = linf_forward(cols, np.asarray(w, np.float32).reshape(w.shape[0], -1))
        if b is not None:
            y = y + np.asarray(b, np.float32)
        return self._fold(y, dims)

    def torch_forward(self, ctx, x, w, b=None):
        s, p, d = self.params()
        y = linf_dist_conv(f32t(x), f32t(w), strides=s, pads=p, dilations=d, p_grad=ctx.p_grad)
        return y if b is None else y + f32t(b).reshape(1, -1, 1, 1)

    def interval(self, xb, wb, bb=None):
        w = np.asarray(wb.lo, np.float32)
        lcols, dims = self._unfold(xb.lo)
        hcols, _ = self._unfold(xb.hi)
        lo, hi = dist_box(lcols, hcols, w.reshape(w.shape[0], -1))
        out = add_bias_outward(lo, hi, bb)
        return Box(self._fold(out.lo, dims), self._fold(out.hi, dims))

    def lipschitz(self, lx=None, lw=None, lb=None):
        # each output is an ℓ∞ distance of one patch: |patch(x) - patch(x')|_inf <= |x - x'|_inf
        return add_up(*(v for v in (lx, lw, lb) if v is not None))

    def batch_axis(self, f):
        from verify.front.batch_axis import keep_rows0

        return keep_rows0(self, f)
