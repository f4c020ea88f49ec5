"""Pad(data, pads, constant_value?, axes?) in constant mode with non-negative constant pads (attributes
before opset 11): exact; padded entries are constants, so the Lipschitz bound passes through.
CROWN: the coefficients of the copied entries move back onto the input, those of the padded entries
times the pad value go to the bias (verify/bounds/moves.py)."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from verify.bounds.moves import FILL, gathered, index_arrays
from verify.ops._shape import norm_axes
from verify.ops.base import Box, Op, scaled


class Pad(Op):
    op_type = "Pad"
    inf_safe = True
    inf_consts_ok = True
    known_attrs = frozenset({"mode", "pads", "value"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.attr("mode", "constant") != "constant":
            return "only mode = constant is supported"
        if any(self.is_var(i) for i in range(1, len(self.inputs))):
            return "pads/constant_value/axes must be constants"
        pads = self._pads_raw()
        if pads is None or any(p < 0 for p in pads):
            return "pads must be a constant of non-negative ints"
        return None

    def _pads_raw(self):
        if "pads" in self.attrs:
            return [int(v) for v in self.attrs["pads"]]
        c = self.const(1)
        return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]

    def _value(self):
        if "value" in self.attrs:
            return np.float32(self.attrs["value"])
        c = self.const(2) if len(self.inputs) > 2 and self.inputs[2] else None
        return np.float32(0.0) if c is None else np.float32(np.asarray(c).reshape(-1)[0])

    def _widths(self, rank: int) -> list[tuple[int, int]]:
        """(before, after) per axis of an input of rank ``rank``."""
        pads = self._pads_raw()
        axes = None
        if len(self.inputs) > 3 and self.inputs[3]:
            axes = [int(a) for a in np.asarray(self.const(3)).reshape(-1)]
            norm_axes(self, axes, rank, duplicates=False)  # out of range / repeated: onnxruntime refuses
            axes = [a % rank for a in axes]
        axes = axes if axes is not None else list(range(rank))
        k = len(axes)
        width = [(0, 0)] * rank
        for j, a in enumerate(axes):
            width[a] = (pads[j], pads[j + k])
        return width

    def forward(self, x, *_):
        return self._padded(np.asarray(x), self._value())

    def _padded(self, x: np.ndarray, value) -> np.ndarray:
        return np.pad(x, self._widths(x.ndim), mode="constant", constant_values=value)

    def torch_forward(self, ctx, x, *_):
        flat = [p for w in reversed(self._widths(x.dim())) for p in w]  # F.pad: last axis first
        return F.pad(x, flat, value=float(self._value()))

    def interval(self, b, *_):
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None, *_):
        return scaled([lx], 1.0)

    def relax(self, a, ins, out, ctx):
        """Copied entries: coefficients move back; padded entries (marked FILL on the index
        tensor): A·value into the bias (None for a non-finite value)."""
        return gathered(a, ins, [0], self._padded(index_arrays(ins, [0])[0], FILL), float(self._value()))

    def batch_axis(self, f):
        from verify.front.batch_axis import shape_rows

        k = f.rows(0)  # pads are non-negative constants: the batch axis is padded iff it grew
        grew = {k} if k is not None and f.shapes[0][k] != f.out_shape[k] else set()
        return shape_rows(self, f, grew, lambda k: k)
