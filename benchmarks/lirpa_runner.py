"""auto_LiRPA side of benchmarks/bench_bounds.py, run by the SEPARATE auto_LiRPA venv (never imported
by the project): reads JSON jobs {onnx, lo, hi, label} on stdin, prints one JSON line: per job, for
IBP / CROWN / alpha-CROWN, [margin lower bound (min over j of y_label - y_j), seconds]."""

import json
import sys
import time

import numpy as np
import onnx
import torch
from auto_LiRPA import BoundedModule, BoundedTensor
from auto_LiRPA.perturbations import PerturbationLpNorm
from onnx2torch import convert


def main():
    jobs = json.loads(sys.stdin.read())
    nets, out = {}, []
    for job in jobs:
        if job["onnx"] not in nets:
            proto = onnx.load(job["onnx"])
            dims = [d.dim_value or 1 for d in proto.graph.input[0].type.tensor_type.shape.dim]
            net = convert(proto).eval()
            nets[job["onnx"]] = (BoundedModule(net, torch.zeros(dims), verbose=0), dims)
        bm, dims = nets[job["onnx"]]
        lo = torch.tensor(job["lo"], dtype=torch.float32).reshape(dims)
        hi = torch.tensor(job["hi"], dtype=torch.float32).reshape(dims)
        x = (lo + hi) / 2
        k = 10
        c = torch.zeros(1, k - 1, k)
        others = [j for j in range(k) if j != job["label"]]
        for r, j in enumerate(others):
            c[0, r, job["label"]] = 1.0
            c[0, r, j] = -1.0
        row = {}
        for method in ("IBP", "CROWN", "alpha-CROWN"):
            t = time.perf_counter()
            bx = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi))
            lb, _ = bm.compute_bounds(x=(bx,), C=c, method=method, bound_upper=False)
            row[method] = [float(lb.min()), time.perf_counter() - t]
        out.append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
