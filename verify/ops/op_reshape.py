"""Reshape(data, shape) with ONNX semantics (0 copies the input dim unless allowzero, -1 infers)."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import ShapeOp


class Reshape(ShapeOp):
    op_type = "Reshape"
    known_attrs = frozenset({"allowzero"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if self.is_var(1):
            return "the target shape must be a constant"
        return None

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
