"""Margin lower bounds on the Conv -> BatchNormalization -> Relu -> AveragePool -> Flatten -> Gemm
test net of tests/test_relax_linear_ops.py (random weights, 100 random boxes per ε): interval
bounds, CROWN with BN and AveragePool concretised (no relaxation: the tree before issue 15's linear
relaxations) and CROWN with them (guarantee a+b). Run: ``PYTHONPATH=. python3 benchmarks/bench_relax_linear.py``.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import test_relax_linear_ops as T  # noqa: E402

from verify.bounds import margins  # noqa: E402
from verify.bounds.spec import margin_lower  # noqa: E402
from verify.ops.op_averagepool import AveragePool  # noqa: E402
from verify.ops.op_batchnormalization import BatchNormalization  # noqa: E402


def main() -> None:
    rng, _, m = T.cnn(pathlib.Path(tempfile.mkdtemp()))
    for eps in (0.01, 0.05):
        lo, hi = T._boxes(rng, eps, 100)
        y = np.argmax(m.forward((lo + hi) / 2), 1)
        ibp = margins.box_margin(*m.interval(lo, hi), y)
        new = margin_lower(m, lo, hi, y)
        saved = (AveragePool.relax, BatchNormalization.relax)
        AveragePool.relax = BatchNormalization.relax = lambda self, *a: None
        old = margin_lower(m, lo, hi, y)
        AveragePool.relax, BatchNormalization.relax = saved
        print(f"eps={eps}: mean margin lower bound: interval {ibp.mean():.4f}, CROWN without BN/AvgPool "
              f"relaxations {old.mean():.4f}, with {new.mean():.4f}; margin > 0: {np.sum(ibp > 0)} / "
              f"{np.sum(old > 0)} / {np.sum(new > 0)} of 100")


if __name__ == "__main__":
    main()
