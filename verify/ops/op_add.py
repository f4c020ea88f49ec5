"""Add (numpy broadcasting): one correctly rounded float32 addition per element."""

from __future__ import annotations

from verify.ops._elementwise import ort_fusion_widen, f32, outward
from verify.ops.base import Op, add_up


class Add(Op):
    op_type = "Add"

    def forward(self, a, b):
        return f32(a) + f32(b)

    def interval(self, a, b):
        return ort_fusion_widen(self, outward(f32(a.lo) + f32(b.lo), f32(a.hi) + f32(b.hi)))

    def lipschitz(self, la=None, lb=None):
        return add_up(*(v for v in (la, lb) if v is not None))
