"""Reshape(data, shape) with ONNX semantics (0 copies the input dim unless allowzero, -1 infers).
The shape may be computed (Shape/Gather/Concat of dims): it must then be data independent, which
ShapeOp checks (point box; Lipschitz 0, else unbounded)."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp


class Reshape(ShapeOp):
    op_type = "Reshape"
    known_attrs = frozenset({"allowzero"})

    def forward(self, x, shape=None):
        x = np.asarray(x)
        if shape is None:
            shape = self.const(1)
        target = [int(s) for s in np.asarray(shape).reshape(-1)]
        if not int(self.attr("allowzero", 0)):
            target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
        try:
            return x.reshape(target)
        except ValueError as e:
            raise self.fail(f"cannot reshape {list(x.shape)} to {target}: {e}") from None
