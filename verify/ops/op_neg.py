"""Neg: exact."""

from __future__ import annotations

from verify.ops._elementwise import f32
from verify.ops.base import Box, Op, scaled


class Neg(Op):
    op_type = "Neg"
    inf_safe = True

    def forward(self, x):
        return -f32(x)

    def interval(self, b):
        return Box(-f32(b.hi), -f32(b.lo))

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)
