"""Split(input, split?) along ``axis``: the sizes come from the ``split`` input (opset >= 13), the
attribute (before 13), or are equal (the number of outputs, or ``num_outputs`` from opset 18: chunks
of ceil(n / num_outputs), the last one smaller). Exact (a box splits endpoint-wise), 1-Lipschitz;
the split axis must not be the batch axis."""

from __future__ import annotations

import numpy as np
import torch

from verify.ops._shape import ShapeOp
from verify.ops.base import Box


class Split(ShapeOp):
    op_type = "Split"
    known_attrs = frozenset({"axis", "split", "num_outputs"})
    multi_output = True

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1):
            return "split must be a constant"
        return None

    def _axis(self, rank: int) -> int:
        a = int(self.attr("axis", 0))
        if not -rank <= a < rank:
            raise self.fail(f"axis {a} out of range for rank {rank}")
        return a % rank

    def _sizes(self, n: int) -> list[int]:
        k = len(self.outputs)
        if "split" in self.attrs:
            sizes = [int(v) for v in self.attrs["split"]]
        elif len(self.inputs) > 1 and self.inputs[1]:
            sizes = [int(v) for v in np.asarray(self.const(1)).reshape(-1)]
        elif "num_outputs" in self.attrs:
            m = int(self.attrs["num_outputs"])
            if m != k or m < 1:
                raise self.fail(f"num_outputs = {m} but the node has {k} outputs")
            c = -(-n // m)
            sizes = [min(c, max(n - i * c, 0)) for i in range(m)]
        else:
            if n % k:
                raise self.fail(f"cannot split {n} into {k} equal parts")
            sizes = [n // k] * k
        if len(sizes) != k or min(sizes) < 0 or sum(sizes) != n:
            raise self.fail(f"split sizes {sizes} do not fit extent {n} and {k} outputs")
        return sizes

    def forward(self, x, *_):
        x = np.asarray(x)
        ax = self._axis(x.ndim)
        cuts = np.cumsum(self._sizes(x.shape[ax]))[:-1]
        parts = tuple(np.split(x, cuts, axis=ax))
        return parts if len(parts) > 1 else parts[0]

    def torch_forward(self, ctx, x, *_):
        ax = self._axis(x.dim())
        parts = tuple(torch.split(x, self._sizes(x.shape[ax]), dim=ax))
        return parts if len(parts) > 1 else parts[0]

    def interval(self, b, *_):
        lo, hi = self.forward(b.lo), self.forward(b.hi)
        if len(self.outputs) == 1:
            return Box(lo, hi)
        return tuple(Box(a, c) for a, c in zip(lo, hi))

    def batch_axis(self, f):
        from verify.front.batch_axis import shape_rows

        return shape_rows(self, f, {self._axis(f.rank(0))}, lambda k: k)
