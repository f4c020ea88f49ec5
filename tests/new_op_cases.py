"""Registry test cases (tests/test_ops_registry.py, same tuple layout) of the ops the torch
exporters emit for ordinary classifiers (docs/OPS.md): name -> (input shape, nodes producing "y",
inits, float64 reference, exact forward?, linf ops). Models of these cases use opset 20 (Gelu)."""

from __future__ import annotations

import math

import numpy as np
import torch
from onnx import helper as h

N = h.make_node
rng = np.random.default_rng(99)
LN_S = (rng.normal(size=6) + 1).astype(np.float32)
LN_B = rng.normal(size=6).astype(np.float32)
LN_S2 = (rng.normal(size=(2, 3)) + 1).astype(np.float32)
I64 = lambda *v: np.array(v, np.int64)  # noqa: E731


def _erf(x):
    return torch.erf(torch.from_numpy(np.asarray(x, np.float64))).numpy()


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _ln(x, axes, s, b):
    d = x - x.mean(axis=axes, keepdims=True)
    return d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + float(np.float32(1e-5))) * s + b


NEW_CASES = {
    "GlobalAveragePool": ([2, 3, 4], [N("GlobalAveragePool", ["input"], ["y"])], {},
                          lambda x: x.mean(axis=(2, 3), keepdims=True), False, []),
    "GlobalMaxPool": ([2, 3, 4], [N("GlobalMaxPool", ["input"], ["y"])], {},
                      lambda x: x.max(axis=(2, 3), keepdims=True), True, []),
    "ReduceMean": ([3, 4], [N("ReduceMean", ["input", "ax"], ["y"], keepdims=0)], {"ax": I64(-1)},
                   lambda x: x.mean(axis=-1), False, []),
    "ReduceSum": ([3, 4], [N("ReduceSum", ["input", "ax"], ["y"], keepdims=1)], {"ax": I64(1, 2)},
                  lambda x: x.sum(axis=(1, 2), keepdims=True), False, []),
    "LayerNormalization": ([2, 6], [N("LayerNormalization", ["input", "s", "b"], ["y"], axis=-1, epsilon=1e-5)],
                           {"s": LN_S, "b": LN_B}, lambda x: _ln(x, (-1,), LN_S, LN_B), False, []),
    "LayerNorm2": ([2, 3], [N("LayerNormalization", ["input", "s"], ["y"], axis=1, epsilon=1e-5)],
                   {"s": LN_S2}, lambda x: _ln(x, (1, 2), LN_S2, 0.0), False, []),
    "Gelu": ([6], [N("Gelu", ["input"], ["y"])], {}, _gelu, False, []),
    "GeluTanh": ([6], [N("Gelu", ["input"], ["y"], approximate="tanh")], {}, _gelu_tanh, False, []),
    "Erf": ([6], [N("Erf", ["input"], ["y"])], {}, _erf, False, []),
    "Exp": ([6], [N("Exp", ["input"], ["y"])], {}, np.exp, False, []),
    "Sqrt": ([6], [N("Abs", ["input"], ["a"]), N("Sqrt", ["a"], ["y"])], {}, lambda x: np.sqrt(np.abs(x)), True, []),
    "Pow2": ([6], [N("Pow", ["input", "two"], ["y"])], {"two": np.float32(2.0)}, lambda x: x * x, True, []),
    "PowHalf": ([6], [N("Abs", ["input"], ["a"]), N("Pow", ["a", "half"], ["y"])], {"half": np.float32(0.5)},
                lambda x: np.sqrt(np.abs(x)), False, []),
    "Split": ([6], [N("Split", ["input", "sp"], ["y", "z"], axis=1), N("Sub", ["y", "z"], ["w"]),
                    N("Identity", ["w"], ["y2"])], {"sp": I64(3, 3)}, lambda x: x[:, :3] - x[:, 3:], True, []),
    "Split18": ([5], [N("Split", ["input"], ["y", "z"], axis=-1, num_outputs=2)], {},
                lambda x: x[:, :3], True, []),
    "Expand": ([1, 3], [N("Expand", ["input", "sh"], ["y"])], {"sh": I64(2, 1)},
               lambda x: np.broadcast_to(x, (len(x), 2, 3)), True, []),
    "ConstantOfShape": ([3], [N("Shape", ["input"], ["sh"]), N("ConstantOfShape", ["sh"], ["c"]),
                              N("Add", ["input", "c"], ["y"])], {}, lambda x: x, True, []),
    "MatMulVV": ([2, 3], [N("Transpose", ["input"], ["t"], perm=[0, 2, 1]), N("MatMul", ["input", "t"], ["y"])], {},
                 lambda x: np.matmul(x, np.transpose(x, (0, 2, 1))), False, []),
    "Where": ([6], [N("Where", ["cond", "input", "c6"], ["y"])],
              {"cond": np.array([True, False, True, True, False, False]), "c6": np.arange(6, dtype=np.float32)},
              lambda x: np.where([True, False, True, True, False, False], x, np.arange(6)), True, []),
    "WhereEqual": ([6], [N("Equal", ["input", "c6"], ["e"]), N("Where", ["e", "input", "c6"], ["y"])],
                   {"c6": np.arange(6, dtype=np.float32)}, lambda x: np.where(x == np.arange(6), x, np.arange(6)),
                   True, []),
    "Mod": ([6], [N("Mod", ["input", "m"], ["y"], fmod=1)], {"m": np.float32(0.75)},
            lambda x: np.fmod(x, np.float64(0.75)), True, []),
}
#: cases whose output is not "y": the node list renames it
RENAMED = {"Split": "y2"}
