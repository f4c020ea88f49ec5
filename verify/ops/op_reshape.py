"""Reshape(data, shape) with ONNX semantics (0 copies the input dim unless allowzero, -1 infers).
The shape may be computed (Shape/Gather/Concat of dims): it must then be data independent, which
ShapeOp checks (point box; Lipschitz 0, else unbounded)."""

from __future__ import annotations

import numpy as np

from verify.ops._shape import MoveOp


class Reshape(MoveOp):
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

    def batch_axis(self, f):
        """The batch axis k of the input lands on output axis p when the target's entry p is the
        batch size (a Dims entry, a 0 copying axis k, the only -1, or a fixed batch size) and the
        products of the extents before and after it equal those around axis k (then the flat offsets
        keep row i at index i on axis p); no other entry may hold the batch size."""
        from verify.front.batch_axis import FREE, Dims, Rows, coupled, dims_through

        if isinstance(f.states[0], Dims):
            return dims_through(self, f)
        t = [int(v) for v in np.asarray(f.values[1]).reshape(-1)]
        k = f.rows(0)
        if k is None or isinstance(f.states[1], Rows) or not t:
            return coupled(self, "does not keep the batch axis")
        is_n = np.zeros(len(t), bool) if f.states[1] == FREE else f.states[1].mask.reshape(-1)
        zero_copy = not int(self.attr("allowzero", 0))
        ins, outs = list(f.shapes[0]), list(f.out_shape)
        prod = lambda v: int(np.prod(v, dtype=np.int64))  # noqa: E731

        def holds_n(p):
            return bool(is_n[p] or (t[p] == 0 and zero_copy and p == k) or (t[p] == -1 and t.count(-1) == 1)
                        or (f.fixed_batch is not None and t[p] == f.fixed_batch))

        for p in range(len(t)):
            others = [q for q in range(len(t)) if q != p and (is_n[q] or (t[q] == 0 and zero_copy and q == k))]
            if holds_n(p) and not others and prod(ins[:k]) == prod(outs[:p]) and prod(ins[k + 1:]) == prod(outs[p + 1:]):
                return Rows(p)
        return coupled(self, f"to {t} does not keep one row per sample")
