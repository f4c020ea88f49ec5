"""ReduceMean(data, axes?) (axes attribute before opset 18, input from 18; keepdims,
noop_with_empty_axes): a linear map with weights 1/n, 1-Lipschitz (verify/ops/_reduce.py)."""

from __future__ import annotations

from verify.ops._reduce import LinearReduce
from verify.ops.base import scaled


class ReduceMean(LinearReduce):
    op_type = "ReduceMean"
    known_attrs = frozenset({"axes", "keepdims", "noop_with_empty_axes"})
    mean = True

    def lipschitz(self, lx=None, *_):
        return scaled([lx], 1.0)  # non-negative weights summing to 1
