"""Generators of the reductions, normalisations, transcendental and structural ops the torch
exporters emit (ReduceMax/Mean/Sum, Global*Pool, LayerNormalization, Gelu, Sqrt, Pow, Split, Expand,
ConstantOfShape, Where/Equal, Mod) for the soundness fuzzer; collected in tests/fuzz_graphs.py's
``GENERATORS``."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from onnx import helper as h
from onnx import numpy_helper as nh

from fuzz_builder import float_arrays, operand, to_rank4
from fuzz_exact import run_node


def gen_reducemax(b):
    x = b.pick()
    r = len(b.shape(x))
    axes = b.draw(st.lists(st.integers(1, r - 1), min_size=1, max_size=r - 1, unique=True))
    keep = 1 if len(axes) == r - 1 else b.int_of(0, 1)
    b.push(b.emit("ReduceMax", [x, b.ints(axes)], keepdims=keep))


def gen_reduce(op):
    def g(b):
        x = b.pick()
        r = len(b.shape(x))
        if b.draw(st.integers(0, 5)) == 0:  # empty axes with noop_with_empty_axes: the identity
            b.push(b.emit(op, [x, b.ints(np.zeros(0, np.int64))], noop_with_empty_axes=1))
            return
        axes = b.draw(st.lists(st.integers(1, r - 1), min_size=1, max_size=r - 1, unique=True))
        keep = 1 if len(axes) == r - 1 else b.int_of(0, 1)
        b.push(b.emit(op, [x, b.ints([a - r if b.draw(st.booleans()) else a for a in axes])], keepdims=keep))
    return g


def gen_global(op):
    return lambda b: b.push(b.emit(op, [to_rank4(b, b.pick())]))


def gen_gelu(b):
    b.push(b.emit("Gelu", [b.pick()], approximate=b.draw(st.sampled_from(["none", "tanh"]))))


def gen_sqrt(b):
    x = b.pick()
    b.push(b.emit("Sqrt", [b.emit("Abs", [x]) if b.draw(st.booleans()) else x]))


def gen_pow(b):
    x = b.pick()
    e = b.draw(st.sampled_from([2.0, 2.0, 0.5, 1.0, 3.0]))
    base = b.emit("Abs", [x]) if e == 0.5 and b.draw(st.booleans()) else x
    b.push(b.emit("Pow", [base, b.init(np.float32(e))]))


def gen_layernormalization(b):
    x = b.pick()
    ax = b.axis(x)
    shape = b.shape(x)[ax:]
    ins = [x, b.floats(shape)] + ([b.floats(shape)] if b.draw(st.booleans()) else [])
    eps = b.draw(st.sampled_from([1e-5, 1e-3, 1.0]))
    b.push(b.emit("LayerNormalization", ins, axis=ax, epsilon=eps))


def gen_split(b):
    x = b.pick()
    ax = b.axis(x)
    n = b.shape(x)[ax]
    if n < 2:
        x = b.emit("Concat", [x, x], axis=ax)
        n *= 2
    k = b.int_of(1, n - 1)
    outs = [b.fresh(), b.fresh()]
    if b.draw(st.booleans()):
        node = h.make_node("Split", [x, b.ints([k, n - k])], outs, axis=ax)
    else:
        node = h.make_node("Split", [x], outs, axis=ax, num_outputs=2)
    run_node(node, b.vals, b.dom)
    b.nodes.append(node)
    b.used.append("Split")
    for o in outs:
        b.push(o)


def gen_expand(b):
    x = b.pick()
    s = list(b.shape(x))
    ones = [i for i, v in enumerate(s) if i and v == 1]
    target = [1] * len(s)
    if ones:
        target[b.draw(st.sampled_from(ones))] = b.int_of(2, 3)
    b.push(b.emit("Expand", [x, b.ints(target)]))


def gen_constantofshape(b):
    x = b.pick()
    v = b.draw(float_arrays((1,), b.avoid))
    c = b.emit("ConstantOfShape", [b.emit("Shape", [x])], value=nh.from_array(v))
    b.push(b.emit(b.draw(st.sampled_from(["Add", "Mul"])), [x, c]))


def gen_where(b, equal=False):
    x = b.pick()
    y = operand(b, x)
    if not equal and b.draw(st.booleans()):
        shape = b.draw(st.sampled_from([(), b.shape(x)[-1:], (1, *b.shape(x)[1:])]))
        cond = b.init(np.asarray(b.draw(st.lists(st.booleans(), min_size=int(np.prod(shape)),
                                                 max_size=int(np.prod(shape)))), bool).reshape(shape))
    else:
        cond = b.emit("Equal", [x, operand(b, x)])
    b.push(b.emit("Where", [cond, x, y] if b.draw(st.booleans()) else [cond, y, x]))


def gen_mod(b):
    b.push(b.emit("Mod", [b.pick(), b.floats(())], fmod=1))
