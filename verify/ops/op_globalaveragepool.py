"""GlobalAveragePool: the mean over every axis from 2 on (kept as extent 1); a linear map with
weights 1/n, 1-Lipschitz (verify/ops/_reduce.py)."""

from __future__ import annotations

from verify.ops._reduce import GLOBAL, LinearReduce
from verify.ops.base import scaled


class GlobalAveragePool(LinearReduce):
    op_type = "GlobalAveragePool"
    reduce_kind = GLOBAL
    mean = True

    def lipschitz(self, lx=None):
        return scaled([lx], 1.0)
