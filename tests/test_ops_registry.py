"""Every registered op: forward vs onnxruntime, interval soundness by sampling (ORT float32 AND a
float64 reference), Lipschitz bound >= observed ratios; registry shape and error messages."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper as h

from new_op_cases import NEW_CASES, RENAMED
from onnx_helpers import make_model, ort_run, save
from verify.front.model import load_model
from verify.ops._op_list import OPS, supported_ops

rng0 = np.random.default_rng(1234)


def _w(*shape, scale=1.0):
    return (rng0.normal(size=shape) * scale).astype(np.float32)


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def _linf64(x, w, b):
    return np.abs(x[:, None, :] - w[None].astype(np.float64)).max(-1) + b


W_LD, B_LD = _w(4, 6), _w(4)
W_LC, B_LC = _w(3, 2, 3, 3), _w(3)
W_G, B_G = _w(6, 4), _w(4)
W_M = _w(6, 4)
A_M = _w(5, 3)
W_C, B_C = _w(3, 2, 3, 3), _w(3)
C6 = _w(6)
C6nz = (np.sign(_w(6)) * (np.abs(_w(6)) + 0.5)).astype(np.float32)
BN = [np.abs(_w(3)) + 0.1, _w(3), _w(3), np.abs(_w(3)) + 0.2]


def _lconv_ref(x):
    xt = F.pad(_t(x), (0, 1, 1, 1))
    cols = F.unfold(xt, (3, 3), dilation=(1, 2), stride=(2, 1))  # [N, 18, L]
    n, _, L = cols.shape
    d = (cols.transpose(1, 2)[:, :, None, :] - _t(W_LC).reshape(1, 1, 3, 18)).abs().amax(-1) + _t(B_LC)
    oh = (5 + 2 - 3) // 2 + 1
    return d.reshape(n, oh, L // oh, 3).permute(0, 3, 1, 2).numpy()


def _avg_ref(x, include):
    xt = _t(x)
    if include:
        return F.avg_pool2d(F.pad(xt, (1, 1, 1, 1)), 3, 2).numpy()
    return F.avg_pool2d(xt, 3, 2, padding=1, count_include_pad=False).numpy()


def _bn_ref(x):
    s, b, m, v = (p.astype(np.float64).reshape(1, 3, 1, 1) for p in BN)
    return s * (x - m) / np.sqrt(v + np.float64(np.float32(1e-3))) + b


def _sm(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sig(x):
    return 1 / (1 + np.exp(-x))


N = h.make_node
# name: (input shape, nodes producing "y", inits, float64 reference, exact forward?, linf ops)
CASES = {
    "LinfDist": ([6], [N("LinfDist", ["input", "W", "B"], ["y"], domain="linf")], {"W": W_LD, "B": B_LD},
                 lambda x: _linf64(x, W_LD, B_LD), True, ["LinfDist"]),
    "LinfDistConv": ([2, 5, 5], [N("LinfDistConv", ["input", "W", "B"], ["y"], domain="linf", strides=[2, 1],
                                   pads=[1, 0, 1, 1], dilations=[1, 2])], {"W": W_LC, "B": B_LC}, _lconv_ref, True,
                     ["LinfDistConv"]),
    "Gemm": ([6], [N("Gemm", ["input", "W", "B"], ["y"], alpha=0.5, beta=2.0)], {"W": W_G, "B": B_G},
             lambda x: 0.5 * x @ W_G.astype(np.float64) + 2.0 * B_G, False, []),
    "GemmT": ([6], [N("Gemm", ["input", "W"], ["y"], transB=1)], {"W": W_G.T.copy()},
              lambda x: x @ W_G.astype(np.float64), False, []),
    "MatMul": ([6], [N("MatMul", ["input", "W"], ["y"])], {"W": W_M}, lambda x: x @ W_M.astype(np.float64), False, []),
    "MatMulLeft": ([3, 6], [N("MatMul", ["A", "input"], ["y"])], {"A": A_M},
                   lambda x: np.matmul(A_M.astype(np.float64), x), False, []),
    "Conv": ([2, 6, 6], [N("Conv", ["input", "W", "B"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])],
             {"W": W_C, "B": B_C},
             lambda x: F.conv2d(F.pad(_t(x), (0, 1, 1, 2)), _t(W_C), _t(B_C), stride=(2, 1), dilation=(1, 2)).numpy(),
             False, []),
    "Add": ([6], [N("Add", ["input", "C"], ["y"])], {"C": C6}, lambda x: x + C6, True, []),
    "AddVV": ([6], [N("Relu", ["input"], ["r"]), N("Add", ["input", "r"], ["y"])], {},
              lambda x: x + np.maximum(x, 0), True, []),
    "Sub": ([6], [N("Sub", ["C", "input"], ["y"])], {"C": C6}, lambda x: C6 - x, True, []),
    "Mul": ([6], [N("Mul", ["input", "C"], ["y"])], {"C": C6}, lambda x: x * C6, True, []),
    "MulVV": ([6], [N("Mul", ["input", "input"], ["y"])], {}, lambda x: x * x, True, []),
    "Div": ([6], [N("Div", ["input", "C"], ["y"])], {"C": C6nz}, lambda x: x / C6nz, True, []),
    "DivVar": ([6], [N("Abs", ["input"], ["a"]), N("Add", ["a", "one"], ["d"]), N("Div", ["C", "d"], ["y"])],
               {"C": C6, "one": np.float32(1.0)}, lambda x: C6 / (np.abs(x) + 1), True, []),
    "Neg": ([6], [N("Neg", ["input"], ["y"])], {}, lambda x: -x, True, []),
    "Relu": ([6], [N("Relu", ["input"], ["y"])], {}, lambda x: np.maximum(x, 0), True, []),
    "Tanh": ([6], [N("Tanh", ["input"], ["y"])], {}, np.tanh, False, []),
    "Sigmoid": ([6], [N("Sigmoid", ["input"], ["y"])], {}, _sig, False, []),
    "Abs": ([6], [N("Abs", ["input"], ["y"])], {}, np.abs, True, []),
    "Max": ([6], [N("Neg", ["input"], ["n"]), N("Max", ["input", "C", "n"], ["y"])], {"C": C6},
            lambda x: np.maximum(np.maximum(x, C6), -x), True, []),
    "Min": ([6], [N("Min", ["input", "C"], ["y"])], {"C": C6}, lambda x: np.minimum(x, C6), True, []),
    "ReduceMax": ([3, 4], [N("ReduceMax", ["input", "ax"], ["y"], keepdims=0)], {"ax": np.array([1], np.int64)},
                  lambda x: x.max(1), True, []),
    "MaxPool": ([2, 5, 5], [N("MaxPool", ["input"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0])],
                {}, lambda x: F.max_pool2d(F.pad(_t(x), (1, 0, 1, 0), value=-np.inf), 2, 2).numpy(), True, []),
    "AveragePoolIncl": ([2, 5, 5], [N("AveragePool", ["input"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1], count_include_pad=1)], {},
                        lambda x: _avg_ref(x, True), False, []),
    "AveragePoolExcl": ([2, 5, 5], [N("AveragePool", ["input"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1])], {}, lambda x: _avg_ref(x, False), False, []),
    "Flatten": ([2, 3], [N("Flatten", ["input"], ["y"], axis=1)], {}, lambda x: x.reshape(len(x), -1), True, []),
    "Reshape": ([2, 3], [N("Reshape", ["input", "s"], ["y"])], {"s": np.array([0, 3, 2], np.int64)},
                lambda x: x.reshape(len(x), 3, 2), True, []),
    "Squeeze": ([1, 6], [N("Squeeze", ["input", "ax"], ["y"])], {"ax": np.array([1], np.int64)},
                lambda x: x[:, 0], True, []),
    "Unsqueeze": ([6], [N("Unsqueeze", ["input", "ax"], ["y"])], {"ax": np.array([1], np.int64)},
                  lambda x: x[:, None], True, []),
    "Transpose": ([3, 4], [N("Transpose", ["input"], ["y"], perm=[0, 2, 1])], {}, lambda x: x.transpose(0, 2, 1),
                  True, []),
    "Concat": ([6], [N("Neg", ["input"], ["n"]), N("Concat", ["input", "n"], ["y"], axis=1)], {},
               lambda x: np.concatenate([x, -x], 1), True, []),
    "Sum": ([6], [N("Neg", ["input"], ["n"]), N("Sum", ["input", "C", "n", "input"], ["y"])], {"C": C6},
            lambda x: x + C6 - x + x, False, []),
    "Softmax": ([6], [N("Softmax", ["input"], ["y"], axis=-1)], {}, _sm, False, []),
    "BatchNormalization": ([3, 4, 4], [N("BatchNormalization", ["input", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                           dict(zip("sbmv", BN)), _bn_ref, False, []),
    "Clip": ([6], [N("Clip", ["input", "lo", "hi"], ["y"])], {"lo": np.float32(-0.3), "hi": np.float32(0.5)},
             lambda x: np.clip(x, float(np.float32(-0.3)), 0.5), True, []),
    "Identity": ([6], [N("Identity", ["input"], ["y"])], {}, lambda x: x, True, []),
    "ShapeReshape": ([2, 3], [N("Shape", ["input"], ["sh"]), N("Gather", ["sh", "i0"], ["n0"], axis=0),
                              N("Unsqueeze", ["n0", "ax"], ["n1"]), N("Concat", ["n1", "m1"], ["ns"], axis=0),
                              N("Reshape", ["input", "ns"], ["y"])],
                     {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)},
                     lambda x: x.reshape(len(x), -1), True, []),
    "ShapeArith": ([2, 3], [N("Shape", ["input"], ["sh"]), N("Gather", ["sh", "i1"], ["d1"]),
                            N("Gather", ["sh", "i2"], ["d2"]), N("Mul", ["d1", "d2"], ["p"]),
                            N("Div", ["p", "two"], ["q"]), N("Add", ["q", "q"], ["r"]), N("Sub", ["r", "zero"], ["t"]),
                            N("Unsqueeze", ["t", "ax"], ["t1"]), N("Concat", ["m1", "t1"], ["ns"], axis=0),
                            N("Reshape", ["input", "ns"], ["y"])],
                   {"i1": np.array(1, np.int64), "i2": np.array(2, np.int64), "two": np.array(2, np.int64),
                    "zero": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)},
                   lambda x: x.reshape(len(x), -1), True, []),
    "Gather": ([6], [N("Gather", ["input", "gi"], ["y"], axis=1)], {"gi": np.array([[5, 0], [-1, 2]], np.int64)},
               lambda x: x[:, [[5, 0], [5, 2]]], True, []),
    "Cast": ([6], [N("Cast", ["input"], ["i"], to=7), N("Cast", ["i"], ["y"], to=1)], {},
             lambda x: np.trunc(x), True, []),
    "Slice": ([3, 4], [N("Slice", ["input", "st", "en", "axs", "stp"], ["y"])],
              {"st": np.array([0, 3], np.int64), "en": np.array([2, -10], np.int64),
               "axs": np.array([1, 2], np.int64), "stp": np.array([1, -2], np.int64)},
              lambda x: x[:, 0:2, 3::-2], True, []),
    "Pad": ([2, 3], [N("Pad", ["input", "pd", "pv"], ["y"], mode="constant")],
            {"pd": np.array([0, 1, 0, 0, 0, 2], np.int64), "pv": np.float32(0.5)},
            lambda x: np.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=0.5), True, []),
    "Dropout": ([6], [N("Dropout", ["input", "r"], ["y"])], {"r": np.float32(0.3)}, lambda x: x, True, []),
    "LeakyRelu": ([6], [N("LeakyRelu", ["input"], ["y"], alpha=0.3)], {},
                  lambda x: np.where(x >= 0, x, float(np.float32(0.3)) * x), True, []),
    "Constant": ([6], [N("Constant", [], ["c"], value_floats=C6.tolist()), N("Add", ["input", "c"], ["y"])], {},
                 lambda x: x + C6, True, []),
}


CASES.update(NEW_CASES)


def _model(case, tmp_path):
    shape, nodes, inits, _, _, linf = CASES[case]
    nodes = list(nodes) + [h.make_node("Flatten", [RENAMED.get(case, "y")], ["logits"])]
    opset = 20 if case in NEW_CASES else 18
    p = save(make_model(nodes, inits, shape, "K", linf_ops=linf, opset=opset), tmp_path, f"{case}.onnx")
    return p, shape


def test_registry_covers_required_ops():
    required = """LinfDist LinfDistConv Gemm MatMul Conv Add Sub Mul Div Neg Relu Tanh Sigmoid Abs Max Min
    ReduceMax MaxPool AveragePool Flatten Reshape Squeeze Unsqueeze Transpose Concat Sum Softmax
    BatchNormalization Clip Identity Constant""".split()
    have = {t for _, t in OPS}
    assert set(required) <= have
    for (d, t), cls in OPS.items():
        assert cls.op_type == t and cls.domain == d
        assert cls.__module__ == f"verify.ops.op_{t.lower()}"
    assert "linf::LinfDist" in supported_ops()
    tested = {c[1][0].op_type for c in CASES.values()} | {n.op_type for c in CASES.values() for n in c[1]}
    assert have <= tested


def _sample_box(shape, rng, scale=2.0):
    c = rng.normal(size=(3, *shape)).astype(np.float32) * np.float32(scale)
    r = np.abs(rng.normal(size=(3, *shape))).astype(np.float32) * np.float32(rng.choice([0.0, 0.01, 0.3]))
    r[0] = 0.0  # a degenerate box too
    return (c - r).astype(np.float32), (c + r).astype(np.float32)


def _points(lo, hi, rng, k=24):
    pts = [lo, hi]
    for _ in range(k):
        u = rng.random(lo.shape)
        corner = np.where(rng.random(lo.shape) < 0.5, lo, hi)
        inner = np.clip((lo + u * (hi - lo)).astype(np.float32), lo, hi)
        pts.append(corner if rng.random() < 0.4 else inner)
    return pts


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_ort(case, tmp_path):
    p, shape = _model(case, tmp_path)
    m = load_model(p)
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(5, *shape)) * 2).astype(np.float32)
    y, yo = m.forward(x), ort_run(p, x)
    if CASES[case][4]:
        assert np.array_equal(y, yo)
    else:
        np.testing.assert_allclose(y, yo, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_interval_sound_by_sampling(case, tmp_path):
    p, shape = _model(case, tmp_path)
    m = load_model(p)
    ref = CASES[case][3]
    rng = np.random.default_rng(11)
    for _ in range(3):
        lo, hi = _sample_box(shape, rng)
        blo, bhi = m.interval(lo, hi)
        assert blo.dtype == np.float32 and np.all(blo <= bhi)
        pts = _points(lo, hi, rng)
        yo = ort_run(p, np.concatenate(pts)).reshape(len(pts), *blo.shape)  # one ORT call per box
        assert np.all(blo <= yo) and np.all(yo <= bhi), case
        for x in pts:
            y64 = np.asarray(ref(x.astype(np.float64)), np.float64).reshape(len(x), -1)
            assert np.all(blo <= y64) and np.all(y64 <= bhi), case


@pytest.mark.parametrize("case", sorted(CASES))
def test_lipschitz_bounds_observed_ratios(case, tmp_path):
    p, shape = _model(case, tmp_path)
    m = load_model(p)
    L = m.lipschitz()
    ref = CASES[case][3]
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(60):
        x = rng.normal(size=(1, *shape)) * 2
        d = rng.normal(size=x.shape) * 10.0 ** rng.uniform(-4, 0)
        y1 = np.asarray(ref(x)).reshape(-1)
        y2 = np.asarray(ref(x + d)).reshape(-1)
        worst = max(worst, np.abs(y1 - y2).max() / np.abs(d).max())
    assert worst <= L * (1 + 1e-9) + 1e-12, (case, worst, L)
    if case in ("MulVV", "DivVar", "Cast"):
        assert math.isinf(L)


def test_lipschitz_values_of_simple_ops(tmp_path):
    expect = {"LinfDist": 1.0, "LinfDistConv": 1.0, "Relu": 1.0, "Neg": 1.0, "Tanh": 1.0, "Sigmoid": 0.25,
              "Softmax": 0.5, "MaxPool": 1.0, "ReduceMax": 1.0, "Concat": 1.0, "Max": 1.0, "AddVV": 2.0,
              "Sum": 3.0, "Identity": 1.0, "Clip": 1.0, "Abs": 1.0}
    for case, L in expect.items():
        p, _ = _model(case, tmp_path)
        assert load_model(p).lipschitz() == L, case
    p, _ = _model("GemmT", tmp_path)
    exact = max(sum(Fraction(float(v)) for v in np.abs(W_G[:, j])) for j in range(W_G.shape[1]))
    got = load_model(p).lipschitz()
    assert exact <= Fraction(got) <= exact * (1 + Fraction(1, 10**12))
    p, _ = _model("Conv", tmp_path)
    want = max(sum(Fraction(float(v)) for v in np.abs(W_C[m]).reshape(-1)) for m in range(3))
    got = load_model(p).lipschitz()
    assert want <= Fraction(got) <= want * (1 + Fraction(1, 10**12))


def _package(tmp_path, files: dict[str, str]):
    """A throwaway op package ``pkg_<n>`` in tmp_path holding ``files`` (name -> source)."""
    import importlib
    import sys

    name = f"oppkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for f, src in files.items():
        (root / f).write_text(src)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


OP_SRC = "from verify.ops.base import Op\nclass {cls}(Op):\n    op_type = {op!r}\n"


def test_registry_is_the_op_files():
    """Every op_*.py file registers exactly its class; nothing else registers anything."""
    from pathlib import Path

    from verify.ops._op_list import discover

    files = sorted(p.stem for p in Path(discover.__code__.co_filename).parent.glob("op_*.py"))
    assert sorted(cls.__module__.rsplit(".", 1)[1] for cls in OPS.values()) == files


@pytest.mark.parametrize("files, why", [
    ({"op_foo.py": OP_SRC.format(cls="Foo", op="Foo")}, None),
    ({"op_foo.py": OP_SRC.format(cls="Bar", op="Foo")}, "named after its op_type"),
    ({"op_bar.py": OP_SRC.format(cls="Foo", op="Foo")}, "named after its op_type"),
    ({"op_foo.py": OP_SRC.format(cls="Foo", op="Foo") + OP_SRC.format(cls="Foo2", op="Foo")}, "exactly one"),
    ({"op_foo.py": "x = 1\n"}, "exactly one"),
    ({"_helper.py": "x = 1\n", "op_foo.py": OP_SRC.format(cls="Foo", op="Foo")}, None),
])
def test_registry_refuses_misnamed_files(tmp_path, files, why):
    from verify.ops._op_list import discover

    pkg = _package(tmp_path, files)
    if why is None:
        assert set(discover(pkg)) == {("", "Foo")}
    else:
        with pytest.raises(ImportError, match=why):
            discover(pkg)
