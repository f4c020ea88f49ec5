"""Soundness of the ops the torch exporters emit (docs/OPS.md): onnxruntime's float32 kernels
measured against our error models (Exp, Erf, Gelu, Sqrt, Pow, LayerNormalization), exact rational
checks of the linear ones (reductions, MatMul of two variables), Lipschitz bounds on random pairs,
extreme values, and the per-sample analysis of the shape ops (Expand, Split, ConstantOfShape,
Reshape moving the batch axis)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from onnx import helper as h
from onnx import numpy_helper as nh

from onnx_helpers import make_model, ort_run, save
from common.errors import ModelError
from verify.front.model import load_model
from verify.ops.op_gelu import GELU_MIN, GELU_SLOPE, gelu64

N = h.make_node
I64 = lambda *v: np.array(v, np.int64)  # noqa: E731


def _one(tmp_path, nodes, inits, shape, k="K", name="m.onnx"):
    return save(make_model(nodes, inits, shape, k, opset=20), tmp_path, name)


def _wide_points(rng, n, k, lo_exp=-45, hi_exp=2.5):
    mags = 10.0 ** rng.uniform(lo_exp, hi_exp, size=(n, k))
    x = (np.sign(rng.normal(size=mags.shape)) * mags).astype(np.float32)
    x[:20] = 0.0
    x[20:40] = np.float32(1e-45)
    x[40:60] = -np.float32(1e-45)
    return x


@pytest.mark.parametrize("op,attrs,pre", [
    ("Exp", {}, None), ("Erf", {}, None), ("Gelu", {}, None), ("Gelu", {"approximate": "tanh"}, None),
    ("Sqrt", {}, "Abs"),
])
def test_error_model_covers_onnxruntime_kernels(op, attrs, pre, tmp_path):
    """Point boxes over |x| from 1e-45 to 316 (and ±1e30 for Gelu/Erf) hold onnxruntime's value."""
    rng = np.random.default_rng(0)
    k = 16
    nodes = ([N(pre, ["input"], ["a"])] if pre else []) + [N(op, ["a" if pre else "input"], ["y"], **attrs),
                                                          N("Identity", ["y"], ["logits"])]
    p = _one(tmp_path, nodes, {}, [k], k)
    m = load_model(p)
    x = _wide_points(rng, 3000, k, hi_exp=2.5 if op in ("Exp", "Sqrt") else 30)
    if op == "Exp":
        x[100:200] = rng.uniform(-104, 89, size=(100, k)).astype(np.float32)
    else:  # densely where the function bends
        x[100:1600] = rng.uniform(-12, 12, size=(1500, k)).astype(np.float32)
    y = ort_run(p, x)
    lo, hi = m.interval(x, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    ref = m.forward(x)  # our forward lies in the box too
    fin = np.isfinite(ref)
    assert np.all(lo[fin] <= ref[fin]) and np.all(ref[fin] <= hi[fin])


@pytest.mark.parametrize("e", [2.0, 0.5, 1.0])
def test_pow_boxes_hold_onnxruntime_and_exact_values(e, tmp_path):
    rng = np.random.default_rng(1)
    p = _one(tmp_path, [N("Abs", ["input"], ["a"]), N("Pow", ["a" if e == 0.5 else "input", "e"], ["logits"])],
             {"e": np.float32(e)}, [8], 8)
    m = load_model(p)
    x = _wide_points(rng, 2000, 8, hi_exp=18)
    lo, hi = m.interval(x, x)
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    c = rng.normal(size=(50, 8)).astype(np.float32)
    r = np.abs(rng.normal(size=(50, 8))).astype(np.float32)
    blo, bhi = m.interval(c - r, c + r)
    for _ in range(5):
        t = rng.random(c.shape)
        pt = (c - r + t * 2 * r).astype(np.float32)
        base = np.abs(pt.astype(np.float64)) if e == 0.5 else pt.astype(np.float64)
        exact = base * base if e == 2.0 else base if e == 1.0 else np.sqrt(base)
        assert np.all(blo <= exact) and np.all(exact <= bhi)
        yo = ort_run(p, pt)
        assert np.all(blo <= yo) and np.all(yo <= bhi)


def test_pow_refuses_other_exponents(tmp_path):
    p = _one(tmp_path, [N("Pow", ["input", "e"], ["logits"])], {"e": np.float32(3.0)}, [4], 4)
    with pytest.raises(ModelError, match="exponent"):
        load_model(p)


def test_sqrt_of_a_box_reaching_below_zero_is_unknown(tmp_path):
    m = load_model(_one(tmp_path, [N("Sqrt", ["input"], ["logits"])], {}, [3], 3))
    with pytest.raises(ModelError, match="negative"):
        m.interval(np.full((1, 3), -1e-3, np.float32), np.full((1, 3), 1.0, np.float32))


def test_gelu_shape_constants_and_slope():
    """x* lies in BRACKET, GELU_MIN is below the minimum, and sup |f'| < GELU_SLOPE: a grid of
    step 1e-5 on [-12, 12] (outside, |f'| < 1 + 1e-20) bounds |f'| within 1e-5 (|f''| <= 0.8)."""
    for mode in ("none", "tanh"):
        xs = np.linspace(-12, 12, 2_400_001)
        f = gelu64(xs, mode)
        i = int(np.argmin(f))
        assert -0.76 < xs[i] < -0.745 and f[i] > GELU_MIN + 1e-4
        slope = np.abs(np.diff(f) / np.diff(xs))
        assert slope.max() + 1e-4 < GELU_SLOPE


def _ln_model(tmp_path, n, eps, scale, bias, name="ln.onnx"):
    nodes = [N("LayerNormalization", ["input", "s", "b"], ["logits"], axis=-1, epsilon=eps)]
    return _one(tmp_path, nodes, {"s": scale, "b": bias}, [n], n, name)


@pytest.mark.parametrize("n,offset,spread,eps", [
    (16, 0.0, 1.0, 1e-5), (16, 1e4, 0.01, 1e-5), (64, 100.0, 1e-3, 1e-5), (768, 0.0, 3.0, 1e-12),
    (8, 0.0, 1e-3, 1.0), (4, -3e3, 30.0, 1e-5),
])
def test_layernorm_boxes_hold_onnxruntime_and_float64(n, offset, spread, eps, tmp_path):
    """Hard slices (a large mean against a small deviation, tiny epsilon, long slices): the point
    box and a small box hold onnxruntime's float32 result and the float64 value."""
    rng = np.random.default_rng(n)
    s = (rng.normal(size=n) * 2).astype(np.float32)
    b = (rng.normal(size=n) * 10).astype(np.float32)
    p = _ln_model(tmp_path, n, eps, s, b)
    m = load_model(p)
    x = (offset + rng.normal(size=(40, n)) * spread).astype(np.float32)
    e32 = float(np.float32(eps))

    def ref(v):
        v = v.astype(np.float64)
        d = v - v.mean(-1, keepdims=True)
        return d / np.sqrt((d * d).mean(-1, keepdims=True) + e32) * s + b

    lo, hi = m.interval(x, x)
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    assert np.all(lo <= ref(x)) and np.all(ref(x) <= hi)
    r = np.float32(spread * 1e-3)
    blo, bhi = m.interval((x - r).astype(np.float32), (x + r).astype(np.float32))
    for _ in range(6):
        pt = (x + rng.uniform(-1, 1, size=x.shape).astype(np.float32) * r).astype(np.float32)
        pt = np.clip(pt, x - r, x + r)
        yo = ort_run(p, pt)
        assert np.all(blo <= yo) and np.all(yo <= bhi)
        assert np.all(blo <= ref(pt)) and np.all(ref(pt) <= bhi)


def test_layernorm_constant_slice_with_zero_epsilon_is_unknown(tmp_path):
    p = _ln_model(tmp_path, 4, 0.0, np.ones(4, np.float32), np.zeros(4, np.float32))
    m = load_model(p)
    with pytest.raises(ModelError, match="variance"):
        m.interval(np.ones((1, 4), np.float32), np.ones((1, 4), np.float32))


def test_layernorm_lipschitz_bounds_random_pairs(tmp_path):
    """The bound (2 + sqrt(n-1)/2) / sqrt(eps) * max|scale| against ratios of nearby pairs, near
    constant slices where the slope is largest."""
    n, eps = 8, 1e-2
    rng = np.random.default_rng(3)
    s = rng.normal(size=n).astype(np.float32)
    m = load_model(_ln_model(tmp_path, n, eps, s, np.zeros(n, np.float32)))
    L = m.lipschitz()
    assert math.isfinite(L)
    e = float(np.float32(eps))

    def f(v):
        d = v - v.mean(-1, keepdims=True)
        return d / np.sqrt((d * d).mean(-1, keepdims=True) + e) * s

    worst = 0.0
    for scale in (1e-3, 1e-2, 0.1, 1.0):
        x = rng.normal(size=(500, n)) * scale
        d = rng.normal(size=x.shape) * 1e-4
        worst = max(worst, float((np.abs(f(x + d) - f(x)).max(-1) / np.abs(d).max(-1)).max()))
    assert worst <= L
    assert L <= (2 + math.sqrt(n - 1) / 2) / math.sqrt(e) * float(np.abs(s).max()) * (1 + 1e-12)


def _fr(a):
    return np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(a)


@pytest.mark.parametrize("case", ["ReduceMean", "ReduceSum", "GlobalAveragePool", "MatMulVV"])
def test_linear_and_bilinear_boxes_hold_exact_rational_values(case, tmp_path):
    rng = np.random.default_rng(5)
    nodes = {
        "ReduceMean": [N("ReduceMean", ["input", "ax"], ["logits"], keepdims=0)],
        "ReduceSum": [N("ReduceSum", ["input", "ax"], ["logits"], keepdims=0)],
        "GlobalAveragePool": [N("GlobalAveragePool", ["input"], ["g"]), N("Flatten", ["g"], ["logits"])],
        "MatMulVV": [N("Transpose", ["input"], ["t"], perm=[0, 2, 1]), N("MatMul", ["input", "t"], ["mm"]),
                     N("Flatten", ["mm"], ["logits"])],
    }[case]
    shape = [2, 3, 3] if case == "GlobalAveragePool" else [3, 4]
    p = _one(tmp_path, nodes, {"ax": I64(-1)}, shape)
    m = load_model(p)
    fx = {
        "ReduceMean": lambda v: v.sum(-1) / 4, "ReduceSum": lambda v: v.sum(-1),
        "GlobalAveragePool": lambda v: v.sum(axis=(2, 3)) / 9,
        "MatMulVV": lambda v: np.matmul(v, np.transpose(v, (0, 2, 1))).reshape(len(v), -1),
    }[case]
    for scale, rad in ((1.0, 0.1), (1e4, 1.0), (1e-30, 1e-31), (1e18, 1e15)):
        c = (rng.normal(size=(2, *shape)) * scale).astype(np.float32)
        r = np.float32(rad)
        lo, hi = (c - r).astype(np.float32), (c + r).astype(np.float32)
        blo, bhi = m.interval(lo, hi)
        for _ in range(4):
            t = _fr(rng.integers(0, 1001, lo.shape) / 1000.0)
            pt = _fr(lo) + (_fr(hi) - _fr(lo)) * t
            y = fx(pt)
            assert np.all(_fr(blo) <= y) and np.all(y <= _fr(bhi)), (case, scale)
            corner = np.where(rng.random(lo.shape) < 0.5, lo, hi).astype(np.float32)
            yo = ort_run(p, corner)
            assert np.all(blo <= yo) and np.all(yo <= bhi)


def test_matmul_of_two_variables_has_no_finite_lipschitz_bound(tmp_path):
    p = _one(tmp_path, [N("Transpose", ["input"], ["t"], perm=[0, 2, 1]), N("MatMul", ["input", "t"], ["mm"]),
                        N("Flatten", ["mm"], ["logits"])], {}, [2, 3])
    assert math.isinf(load_model(p).lipschitz())


def test_reducesum_of_shape_integers_is_exact(tmp_path):
    """ReduceSum on shape arithmetic (int64) is exact integer arithmetic: [2, 2] sums to 4, and the
    Reshape it feeds flattens [N, 2, 2] to [N, 4] as in onnxruntime."""
    nodes = [N("Shape", ["input"], ["sh"], start=1), N("ReduceSum", ["sh", "z"], ["n"], keepdims=1),
             N("Concat", ["m1", "n"], ["t"], axis=0), N("Reshape", ["input", "t"], ["logits"])]
    p = _one(tmp_path, nodes, {"z": I64(0), "m1": I64(-1)}, [2, 2])
    m = load_model(p)
    x = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    assert np.array_equal(m.forward(x), x.reshape(3, 4))
    assert np.array_equal(ort_run(p, x), x.reshape(3, 4))
    lo, hi = m.interval(x, x + 1)
    assert np.array_equal(lo, x.reshape(3, 4)) and np.array_equal(hi, x.reshape(3, 4) + 1)


def test_reductions_over_the_batch_axis_are_refused(tmp_path):
    for op in ("ReduceMean", "ReduceSum"):
        p = _one(tmp_path, [N(op, ["input", "ax"], ["r"], keepdims=1), N("Sub", ["input", "r"], ["logits"])],
                 {"ax": I64(0)}, [3], name=f"{op}.onnx")
        with pytest.raises(ModelError, match="batch"):
            load_model(p)


def test_shape_ops_keep_samples_apart(tmp_path):
    """Dynamic-batch graphs: a constant expanded to N rows (a class token), a Split on a data axis,
    ConstantOfShape from Shape(x), and a Reshape that keeps the batch on axis 1 are per-sample (a
    batch's boxes equal each sample's own); a Split on the batch axis or a Reshape merging the
    batch into another axis are refused."""
    tok = np.arange(3, dtype=np.float32).reshape(1, 1, 3)
    nodes = [
        N("Shape", ["input"], ["sh"], end=1), N("Concat", ["sh", "one", "one"], ["tsh"], axis=0),
        N("Expand", ["tok", "tsh"], ["tk"]), N("Concat", ["tk", "input"], ["cat"], axis=1),  # [N, 3, 3]
        N("Split", ["cat", "sp"], ["a", "b"], axis=1), N("Sub", ["b", "a"], ["d"]),  # [N, 1, 3]
        N("Shape", ["d"], ["dsh"]), N("ConstantOfShape", ["dsh"], ["z"], value=nh.from_array(np.array([0.5], np.float32))),
        N("Add", ["d", "z"], ["e"]), N("Transpose", ["e"], ["tr"], perm=[1, 0, 2]),  # [2, N, 3]
        N("Reshape", ["tr", "rs"], ["r2"]), N("Transpose", ["r2"], ["t2"], perm=[1, 0, 2, 3]),
        N("Flatten", ["t2"], ["logits"]),
    ]
    inits = {"tok": tok, "one": I64(1), "sp": I64(2, 1), "rs": I64(2, -1, 3, 1)}
    p = _one(tmp_path, nodes, inits, [2, 3])
    m = load_model(p)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 3)).astype(np.float32)
    lo, hi = m.interval(x - 0.1, x + 0.1)
    for i in range(3):
        l1, h1 = m.interval(x[i:i + 1] - 0.1, x[i:i + 1] + 0.1)
        assert np.array_equal(l1, lo[i:i + 1]) and np.array_equal(h1, hi[i:i + 1])
    y = ort_run(p, x)
    assert np.all(lo <= y) and np.all(y <= hi)
    bad = {
        "split_batch": [N("Split", ["input"], ["a", "b"], axis=0, num_outputs=2), N("Flatten", ["a"], ["logits"])],
        "merge": [N("Transpose", ["input"], ["t"], perm=[1, 0, 2]), N("Reshape", ["t", "m"], ["r"]),
                  N("Flatten", ["r"], ["logits"])],
        "expand_batch": [N("Expand", ["input", "big"], ["e"]), N("Flatten", ["e"], ["logits"])],
    }
    extra = {"m": I64(2, -1), "big": I64(4, 1, 1)}
    for name, nodes in bad.items():
        p = _one(tmp_path, nodes, extra, [2, 3], name=f"{name}.onnx")
        with pytest.raises(ModelError):
            load_model(p)


def test_torch_forward_matches_forward_and_has_gradients(tmp_path):
    """Each new op's differentiable ``torch_forward`` (for the attack) computes what ``forward``
    does, on the registry cases, and gives finite input gradients."""
    import torch

    from new_op_cases import NEW_CASES, RENAMED

    class Ctx:
        p_grad = None

    rng = np.random.default_rng(4)
    for case, (shape, nodes, inits, _, _, linf) in NEW_CASES.items():
        nodes = list(nodes) + [N("Flatten", [RENAMED.get(case, "y")], ["logits"])]
        m = load_model(_one(tmp_path, nodes, inits, shape, name=f"{case}.onnx"))
        x = (rng.normal(size=(3, *shape)) * 2).astype(np.float32)
        if case in ("Sqrt", "PowHalf"):
            x = np.abs(x) + np.float32(0.1)
        g = m.graph
        xt = torch.from_numpy(x).requires_grad_(True)
        vals = {g.input_name: xt}
        for k, v in g.constants.items():
            vals[k] = torch.from_numpy(np.asarray(v))
        for op in g.nodes:
            args = [None if i == "" else vals[i] for i in op.inputs]
            if hasattr(op, "torch_forward"):
                out = op.torch_forward(Ctx(), *args)
            else:  # an existing op (its torch code is the attack's): numpy forward, no gradient
                np_args = [None if a is None else a.detach().numpy() for a in args]
                out = torch.from_numpy(np.asarray(op.forward(*np_args)))
            for name, v in zip(op.outputs, out if isinstance(out, tuple) else (out,)):
                vals[name] = v
        y = vals[g.output_name]
        np.testing.assert_allclose(y.detach().numpy(), m.forward(x), rtol=2e-5, atol=2e-5, err_msg=case)
        if y.requires_grad:
            y.sum().backward()
            assert xt.grad is not None and torch.isfinite(xt.grad).all(), case


def test_every_new_op_has_a_torch_forward():
    from verify.ops._op_list import OPS

    new = """ConstantOfShape Equal Erf Exp Expand Gelu GlobalAveragePool GlobalMaxPool LayerNormalization Mod Pow
    ReduceMean ReduceSum Split Sqrt Where""".split()
    for t in new:
        assert callable(getattr(OPS[("", t)], "torch_forward", None)), t


NEW_OPS = """ConstantOfShape Equal Erf Exp Expand Gelu GlobalAveragePool GlobalMaxPool LayerNormalization Mod Pow
ReduceMean ReduceSum Split Sqrt Where""".split()


@pytest.mark.parametrize("op", NEW_OPS)
def test_fuzzer_exercises_the_new_op(op, tmp_path_factory):
    """The fuzzer's graphs starting with the op are not all refused: some load and get a box (a
    generator that only produced refused graphs would check nothing), and none is unsound."""
    import collections

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fuzz_graphs import graphs
    from test_fuzz_soundness import check_model

    stats = collections.Counter()
    bad = []

    @settings(max_examples=8, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fz=graphs(first=op, max_ops=2, avoid=frozenset({"bad_constants"})), rng_seed=st.integers(0, 2**31))
    def run(fz, rng_seed):
        bad.extend(check_model(fz, tmp_path_factory.mktemp("cov"), rng_seed, stats))

    run()
    assert not bad, "\n".join(bad[:5])
    assert stats["loaded"] - stats["box unknown"] >= 1, stats


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_boxes_around_the_minimum(mode, tmp_path):
    """Boxes meeting the bracket of the minimum (where the bound uses the mean value theorem) hold
    onnxruntime's values and the float64 function at sampled points; a point box stays tight."""
    rng = np.random.default_rng(8)
    k = 64
    p = _one(tmp_path, [N("Gelu", ["input"], ["logits"], approximate=mode)], {}, [k], k)
    m = load_model(p)
    for r in (0.0, 1e-6, 1e-3, 0.02, 0.3):
        c = rng.uniform(-0.8, -0.7, size=(4, k)).astype(np.float32)
        lo, hi = (c - np.float32(r)).astype(np.float32), (c + np.float32(r)).astype(np.float32)
        blo, bhi = m.interval(lo, hi)
        for _ in range(10):
            pt = np.clip((lo + rng.random(lo.shape) * (hi - lo)).astype(np.float32), lo, hi)
            y, y64 = ort_run(p, pt), gelu64(pt.astype(np.float64), mode)
            assert np.all(blo <= y) and np.all(y <= bhi) and np.all(blo <= y64) and np.all(y64 <= bhi)
        if r == 0.0:
            assert np.all(bhi.astype(np.float64) - blo <= 3e-5)  # the error model alone; was 1e-3
