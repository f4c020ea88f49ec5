"""Hypothesis strategies of random small ONNX graphs over the WHOLE op registry
(verify/ops/_op_list.py), for the differential soundness fuzzer (tests/test_fuzz_soundness.py).

A graph is a random sequence of op applications to the tensors built so far (a DAG: binary and
variadic ops also take earlier tensors), with random attributes and constants drawn from ordinary
values and extremes (±3e38, float32 max, subnormals, ±0, ties x.5, values around 2^24, 2^31 and
2^63, NaN and ±inf). The batch dimension is fixed to 1 and no op acts on axis 0, so every graph
has per-sample semantics. ``GENERATORS`` has one entry per registry op (a test checks this).
Each tensor's shape is learnt by running the reference interpreter (tests/fuzz_exact.py) in
float64 mode as the graph grows.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from fuzz_builder import (I64_MAX, I64_MIN, KNOWN_OPEN, OPSET, Builder, Fuzzed, boxes, float_arrays,  # noqa: F401
                          operand, to_rank2, to_rank4)
from fuzz_graphs_reduce import (gen_constantofshape, gen_expand, gen_gelu, gen_global, gen_layernormalization,
                                gen_mod, gen_pow, gen_reduce, gen_reducemax, gen_split, gen_sqrt, gen_where)
from common import linf_spec


def gen_unary(op):
    return lambda b: b.push(b.emit(op, [b.pick()]))


def gen_binary(op):
    def g(b):
        x = b.pick()
        y = operand(b, x)
        ins = [y, x] if b.draw(st.booleans()) and b.shape(y) == b.shape(x) else [x, y]
        b.push(b.emit(op, ins))
    return g


def gen_variadic(op):
    def g(b):
        x = b.pick()
        ins = [x] + [operand(b, x) for _ in range(b.int_of(0, 2))]
        b.push(b.emit(op, b.draw(st.permutations(ins))))
    return g


def gen_dropout(b):
    x = b.pick()
    extra = b.draw(st.sampled_from([[], ["ratio"], ["ratio", "off"], ["ratio", "on"]]))
    ins = [x] + [b.init(np.float32(0.5)) if e == "ratio" else b.init(np.asarray(e == "on")) for e in extra]
    b.push(b.emit("Dropout", ins))


def gen_leakyrelu(b):
    alpha = b.draw(st.sampled_from([0.0, 0.01, 0.2, 1.0, 2.0, 1e-45, 1e30, 3e38, -0.5]))
    b.push(b.emit("LeakyRelu", [b.pick()], alpha=alpha))


def scalar_or_empty(b) -> str:
    return b.floats(()) if b.draw(st.booleans()) else ""


def gen_clip(b):
    ins = [b.pick(), scalar_or_empty(b), scalar_or_empty(b)]
    while ins[-1] == "":
        ins.pop()
    b.push(b.emit("Clip", ins))


def gen_softmax(b):
    x = b.pick()
    b.push(b.emit("Softmax", [x], axis=b.axis(x)))


def gen_cast(b):
    x = b.pick()
    to = b.draw(st.sampled_from([T.FLOAT, T.INT64, T.INT32]))
    if to == T.FLOAT:
        b.push(b.emit("Cast", [x], to=to))
        return
    if "cast_out_of_range" in b.avoid:
        x = b.emit("Clip", [x, b.init(np.float32(-1e9)), b.init(np.float32(1e9))])
    b.push(b.emit("Cast", [b.emit("Cast", [x], to=to)], to=T.FLOAT))


def gen_constant(b):
    x = b.pick()
    s = b.shape(x)
    form = b.draw(st.sampled_from(["value", "value", "value_float", "value_floats"]))
    shape = {"value": b.draw(st.sampled_from([(), s[-1:], (1, *s[1:])])), "value_float": (), "value_floats": s[-1:]}[form]
    v = b.draw(float_arrays(shape, b.avoid))
    attr = nh.from_array(v) if form == "value" else float(v) if form == "value_float" else v.tolist()
    c = b.emit("Constant", [], **{form: attr})
    b.push(b.emit(b.draw(st.sampled_from(["Add", "Sub", "Mul", "Div"])), [x, c]))


def gen_gemm(b):
    x = to_rank2(b, b.pick())
    k, m = b.shape(x)[1], b.int_of(1, 4)
    trans = b.draw(st.booleans())
    scal = st.sampled_from([1.0, 1.0, 0.5, -2.0, 0.0, 1e-45, 1e-30, 3e38])
    attrs = dict(transB=int(trans), alpha=b.draw(scal), beta=b.draw(scal))
    ins = [x, b.floats((m, k) if trans else (k, m))]
    if b.draw(st.booleans()):
        ins.append(b.floats(b.draw(st.sampled_from([(m,), (1, m), ()]))))
    b.push(b.emit("Gemm", ins, **attrs))


def gen_matmul(b):
    x = b.pick()
    s = b.shape(x)
    forms = ["right"] + (["vector", "left", "variable"] if len(s) >= 3 else [])
    form = b.draw(st.sampled_from(forms))
    if form == "right":
        ins = [x, b.floats((s[-1], b.int_of(1, 4)))]
    elif form == "vector":
        ins = [x, b.floats((s[-1],))]
    elif form == "left":
        ins = [b.floats((b.int_of(1, 3), s[-2])), x]
    else:  # two variables (attention's Q Kᵀ)
        perm = list(range(len(s) - 2)) + [len(s) - 1, len(s) - 2]
        ins = [x, b.emit("Transpose", [b.same_shape(x)], perm=perm)]
    b.push(b.emit("MatMul", ins))


def window(b, x, pads_below_kernel, dilate=True):
    """Random 2-D window attributes fitting the rank-4 tensor x: (kernel, attrs)."""
    _, _, hh, ww = b.shape(x)
    d = [b.int_of(1, 2) if dilate else 1 for _ in range(2)]
    k = [b.int_of(1, 3), b.int_of(1, 3)]
    p = [b.int_of(0, 2) for _ in range(4)]
    for i, n in enumerate((hh, ww)):  # pools: the window fits without its pads (pads < kernel)
        while d[i] * (k[i] - 1) + 1 > n + (0 if pads_below_kernel else p[i] + p[i + 2]):
            k[i], d[i] = (k[i] - 1, d[i]) if k[i] > 1 else (k[i], 1)
    if pads_below_kernel:
        p = [min(v, k[i % 2] - 1) for i, v in enumerate(p)]
    attrs = dict(pads=p, strides=[b.int_of(1, 2), b.int_of(1, 2)])
    if dilate:
        attrs["dilations"] = d
    return k, attrs


def gen_kernel(op, domain=""):
    """Conv or LinfDistConv: a constant kernel W [M, C, kh, kw] and optional bias B [M]."""
    def g(b):
        x = to_rank4(b, b.pick())
        k, attrs = window(b, x, False)
        ins = [x, b.floats((b.int_of(1, 3), b.shape(x)[1], *k))]
        if b.draw(st.booleans()):
            ins.append(b.floats((b.shape(ins[1])[0],)))
        b.push(b.emit(op, ins, domain=domain, **attrs))
    return g


def gen_averagepool(b):
    x = to_rank4(b, b.pick())
    k, attrs = window(b, x, True, dilate=False)
    b.push(b.emit("AveragePool", [x], kernel_shape=k, count_include_pad=b.int_of(0, 1), **attrs))


def gen_maxpool(b):
    x = to_rank4(b, b.pick())
    k, attrs = window(b, x, True)
    b.push(b.emit("MaxPool", [x], kernel_shape=k, **attrs))


def gen_batchnormalization(b):
    x = b.pick()
    c = b.shape(x)[1]
    var = np.abs(b.draw(float_arrays((c,), b.avoid)))
    if "bad_constants" in b.avoid:
        var = np.where(var > 0, var, np.float32(1.0))
    else:
        var = var * b.draw(st.sampled_from([1.0, -1.0]))
    eps = b.draw(st.sampled_from([1e-5, 1.0, 1e-45] + ([] if "bad_constants" in b.avoid else [0.0])))
    if b.draw(st.booleans()):  # var + eps a rational square: the exact checks (2, 3, 5) run
        eps = b.draw(st.sampled_from([1.0, 0.25]))
        roots = b.draw(st.lists(st.sampled_from([1.0, 1.25, 1.5, 2.0, 3.0, 0.5, 0.75]), min_size=c, max_size=c))
        var = np.asarray([max(q * q, eps) - eps for q in roots], np.float32)
    ins = [x, b.floats((c,)), b.floats((c,)), b.floats((c,)), b.init(var.astype(np.float32))]
    b.push(b.emit("BatchNormalization", ins, epsilon=eps))


def gen_linfdist(b):
    x = to_rank2(b, b.pick())
    m = b.int_of(1, 4)
    ins = [x, b.floats((m, b.shape(x)[1]))]
    if b.draw(st.booleans()):
        ins.append(b.floats((m,)))
    b.push(b.emit("LinfDist", ins, domain="linf"))


def gen_flatten(b):
    x = b.pick()
    b.push(b.emit("Flatten", [x], axis=b.draw(st.sampled_from([1, 1 - len(b.shape(x))]))))


def gen_reshape(b):
    x = b.pick()
    n = int(np.prod(b.shape(x)[1:]))
    divs = [d for d in range(1, n + 1) if n % d == 0]
    d = b.draw(st.sampled_from(divs))
    target = b.draw(st.sampled_from([[0, -1], [0, d, n // d], [0, -1, d], [0, 1, n]]))
    b.push(b.emit("Reshape", [x, b.ints(target)]))


def gen_shape(b):
    x = b.pick()
    if b.draw(st.booleans()):
        shape = b.emit("Shape", [x])
    else:
        shape = b.emit("Concat", [b.ints([0]), b.emit("Shape", [x], start=1)], axis=0)
    b.push(b.emit("Reshape", [b.same_shape(x), shape]))


def gen_transpose(b):
    x = b.pick()
    rest = b.draw(st.permutations(list(range(1, len(b.shape(x))))))
    b.push(b.emit("Transpose", [x], perm=[0, *rest]))


def gen_unsqueeze(b):
    x = b.pick()
    r = len(b.shape(x)) + 1
    a = b.int_of(1, r - 1)
    return b.push(b.emit("Unsqueeze", [x, b.ints([a - r if b.draw(st.booleans()) else a])]))


def gen_squeeze(b):
    x = b.pick()
    ones = [i for i, n in enumerate(b.shape(x)) if i and n == 1]
    if not ones:
        x = gen_unsqueeze(b)
        ones = [i for i, n in enumerate(b.shape(x)) if i and n == 1]
    b.push(b.emit("Squeeze", [x, b.ints([b.draw(st.sampled_from(ones))])]))


def gen_slice(b):
    x = b.pick()
    s = b.shape(x)
    ax = b.axis(x)
    n = s[ax]
    step = b.draw(st.sampled_from([1, 1, 2, -1, -2]))
    ends = st.one_of(st.integers(-n - 2, n + 2), st.sampled_from([I64_MAX, I64_MIN]))
    start, end = b.int_of(-n - 2, n + 2), b.draw(ends)
    if not len(range(n)[slice(start, None if abs(end) > 2**62 else end, step)]):
        start, end, step = 0, I64_MAX, 1
    ins = [x, b.ints([start]), b.ints([end]), b.ints([ax])]
    if step != 1 or b.draw(st.booleans()):
        ins.append(b.ints([step]))
    b.push(b.emit("Slice", ins))


def gen_gather(b):
    x = b.pick()
    s = b.shape(x)
    ax = b.axis(x)
    n = s[ax]
    idx = st.integers(-n, n - 1)
    if len(s) >= 3 and b.draw(st.booleans()):
        ind = np.int64(b.draw(idx))
    else:
        ind = np.asarray(b.draw(st.lists(idx, min_size=1, max_size=3)), np.int64)
    b.push(b.emit("Gather", [x, b.init(ind)], axis=ax))


def gen_concat(b):
    x = b.pick()
    ax = b.axis(x, negative=False)
    other_shape = list(b.shape(x))
    other_shape[ax] = b.int_of(1, 2)
    y = b.draw(st.sampled_from([b.same_shape(x), b.floats(other_shape)]))
    b.push(b.emit("Concat", b.draw(st.permutations([x, y])), axis=ax - (len(other_shape) if b.draw(st.booleans()) else 0)))


def gen_pad(b):
    x = b.pick()
    r = len(b.shape(x))
    pads = [0] + [b.int_of(0, 2) for _ in range(r - 1)] + [0] + [b.int_of(0, 2) for _ in range(r - 1)]
    mode = b.draw(st.sampled_from(["constant"] * 6 + ["edge", "reflect"]))
    ins = [x, b.ints(pads)]
    if b.draw(st.booleans()):
        ins.append(b.floats(()))
    b.push(b.emit("Pad", ins, mode=mode))


GENERATORS = {
    **{op: gen_unary(op) for op in ("Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Identity", "Exp", "Erf")},
    **{op: gen_reduce(op) for op in ("ReduceMean", "ReduceSum")},
    **{op: gen_global(op) for op in ("GlobalAveragePool", "GlobalMaxPool")},
    "Gelu": gen_gelu, "Sqrt": gen_sqrt, "Pow": gen_pow, "LayerNormalization": gen_layernormalization,
    "Split": gen_split, "Expand": gen_expand, "ConstantOfShape": gen_constantofshape,
    "Where": gen_where, "Equal": lambda b: gen_where(b, equal=True), "Mod": gen_mod,
    **{op: gen_binary(op) for op in ("Add", "Sub", "Mul", "Div")},
    **{op: gen_variadic(op) for op in ("Max", "Min", "Sum")},
    "AveragePool": gen_averagepool, "BatchNormalization": gen_batchnormalization, "Cast": gen_cast,
    "Clip": gen_clip, "Concat": gen_concat, "Constant": gen_constant, "Conv": gen_kernel("Conv"),
    "Dropout": gen_dropout, "Flatten": gen_flatten, "Gather": gen_gather, "Gemm": gen_gemm,
    "LeakyRelu": gen_leakyrelu, "LinfDist": gen_linfdist, "LinfDistConv": gen_kernel("LinfDistConv", "linf"),
    "MatMul": gen_matmul, "MaxPool": gen_maxpool, "Pad": gen_pad, "ReduceMax": gen_reducemax,
    "Reshape": gen_reshape, "Shape": gen_shape, "Slice": gen_slice, "Softmax": gen_softmax,
    "Squeeze": gen_squeeze, "Transpose": gen_transpose, "Unsqueeze": gen_unsqueeze,
}

in_shapes = st.one_of(
    st.tuples(st.integers(1, 6)),
    st.tuples(st.integers(1, 3), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
)


def _model(b: Builder, out: str):
    k = b.shape(out)[1]
    g = h.make_graph(
        b.nodes, "fuzz",
        [h.make_tensor_value_info("input", T.FLOAT, [1, *b.shape("input")[1:]])],
        [h.make_tensor_value_info(out, T.FLOAT, [1, k])],
        [nh.from_array(v, n) for n, v in b.inits.items()],
    )
    imports = [h.make_opsetid("", OPSET)] + ([h.make_opsetid("linf", 1)] if b.linf else [])
    funcs = linf_spec.make_linf_functions(OPSET, sorted(b.linf)) if b.linf else []
    m = h.make_model(g, opset_imports=imports, functions=funcs)
    m.ir_version = 9
    return m


@st.composite
def graphs(draw, avoid=frozenset(), first=None, max_ops=5):
    """A :class:`Fuzzed` graph of 1..max_ops random op applications (``first``: the first op)."""
    shape = draw(in_shapes)
    b = Builder(draw, shape, avoid)
    ops = [first] if first else []
    ops += draw(st.lists(st.sampled_from(sorted(GENERATORS)), min_size=0 if first else 1, max_size=max_ops - len(ops)))
    for op in ops:
        GENERATORS[op](b)
    out = b.draw(st.sampled_from(b.live)) if len(b.live) > 1 and b.draw(st.booleans()) else b.live[-1]
    out = b.emit("Flatten", [out], axis=1) if len(b.shape(out)) != 2 else b.emit("Identity", [out])
    lo, hi = draw(boxes((1, *shape)))
    return Fuzzed(_model(b, out), b.used, lo, hi)
