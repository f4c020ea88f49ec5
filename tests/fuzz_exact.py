"""Reference interpreter of the fuzzer's ONNX graphs (tests/fuzz_graphs.py), written independently
of verify/ops: ONE implementation run in two number domains.

* ``exact`` mode: numpy object arrays of :class:`fractions.Fraction`. Every piecewise-linear or
  affine op (Abs, Add, Sub, Mul, Div, Max, Min, Sum, Relu, LeakyRelu, Clip, Gemm, MatMul, Conv,
  AveragePool, MaxPool, LinfDist, LinfDistConv, casts, every shape op) is evaluated in exact
  rational arithmetic: the value of theorem (a), the real function of the stored weights.
  Transcendental ops (Softmax; BatchNormalization's square root unless every var + epsilon is the
  square of a rational, ...) have irrational values: they are evaluated in float64 and the result is
  flagged inexact, so the fuzzer skips the exact checks for that graph (onnxruntime's values are
  still checked). Sigmoid and Tanh (``NEAR_EXACT``) are evaluated in 600-bit mpmath instead
  (relative error < 2^-590, far below any sound bound's margin) and the result is flagged ``near``:
  the fuzzer checks bounds against it, not Lipschitz ratios (whose slack can be smaller than that
  error); arguments beyond ±700 are flagged inexact. A real function undefined
  at the point (division by 0, a float -> int cast past the integer range, a max over an
  all-padding window) raises :class:`Undefined`: the sample is skipped.
* ``float`` mode: float64 arrays; used while generating a graph to learn each tensor's shape.
"""

from __future__ import annotations

from fractions import Fraction
from functools import reduce

import numpy as np
from onnx import TensorProto, numpy_helper

from fuzz_exact_special import exact_sqrt, near_value

NEAR_EXACT = frozenset({"Sigmoid", "Tanh"})
TRANSCENDENTAL = frozenset({"Softmax", "LayerNormalization", "Gelu", "Erf", "Exp", "Sqrt"})
_INT = {TensorProto.INT64: np.int64, TensorProto.INT32: np.int32}


class Undefined(Exception):
    """The exact real function is undefined (or not a real number) at this point."""


class Domain:
    """Number domain of an evaluation: ``exact`` (Fractions) or float64."""

    def __init__(self, exact: bool):
        self.exact = exact
        self.inexact = False  # set when a transcendental op ran in exact mode
        self.near = False  # set when a NEAR_EXACT op ran in exact mode

    def lift(self, a) -> np.ndarray:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
            return a
        a = a.astype(np.float64)
        if not self.exact:
            return a
        if not np.all(np.isfinite(a)):
            raise Undefined("non-finite constant")
        return _frac(a)

    def approx(self, fn, x: np.ndarray) -> np.ndarray:
        """A transcendental ``fn`` (float64 -> float64): flags the evaluation inexact."""
        if not self.exact:
            return fn(x)
        self.inexact = True
        with np.errstate(all="ignore"):
            y = fn(np.asarray(x, dtype=np.float64))
        return _frac(np.nan_to_num(y))

    def near_exact(self, name: str, fn, x: np.ndarray) -> np.ndarray:
        """Sigmoid or Tanh (``name``; ``fn`` its float64 form): 600-bit mpmath on Fractions."""
        if not self.exact:
            return fn(x)
        if any(abs(v) > 700 for v in np.ravel(x)):
            return self.approx(fn, x)
        self.near = True
        return np.vectorize(lambda v: near_value(name, v), otypes=[object])(x)


_frac = np.vectorize(lambda v: Fraction(float(v)), otypes=[object])


def _attrs(node) -> dict:
    from verify.ops.base import attrs_of

    return attrs_of(node)


def _pad(x: np.ndarray, width, fill) -> np.ndarray:
    out = np.full([s + a + b for s, (a, b) in zip(x.shape, width)], fill, dtype=x.dtype)
    out[tuple(slice(a, a + s) for s, (a, _) in zip(x.shape, width))] = x
    return out


def _windows(x, k, s, p, d, fill):
    """Yield (i, j, patch [N, C, kh, kw], valid mask) of a 2-D sliding window (explicit pads)."""
    width = [(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])]
    xp = _pad(x, width, fill)
    mask = _pad(np.ones(x.shape[2:], bool), width[2:], False)
    oh = (xp.shape[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (xp.shape[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    for i in range(oh):
        for j in range(ow):
            r = slice(i * s[0], i * s[0] + d[0] * (k[0] - 1) + 1, d[0])
            c = slice(j * s[1], j * s[1] + d[1] * (k[1] - 1) + 1, d[1])
            yield i, j, oh, ow, xp[:, :, r, c], mask[r, c]


def _pool_params(a, k):
    return (k, list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0])), list(a.get("dilations", [1, 1])))


def _sliding(x, k, a, per_window, m_out):
    """Generic 2-D sliding op: out[:, :, i, j] = per_window(patch, mask) ([N, m_out])."""
    res = None
    for i, j, oh, ow, patch, mask in _windows(x, *_pool_params(a, k), fill=x.flat[0] * 0):
        if res is None:
            res = np.empty((x.shape[0], m_out, oh, ow), dtype=x.dtype)
        res[:, :, i, j] = per_window(patch, mask)
    return res


def _conv(x, w, b, a):
    def per(patch, _):
        return np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))

    y = _sliding(x, list(w.shape[2:]), a, per, w.shape[0])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _linf(x2, w2):
    """max_d |x2[n, d] - w2[m, d]| as [N, M]."""
    return np.abs(x2[:, None, :] - w2[None, :, :]).max(axis=-1)


def _linfconv(x, w, b, a):
    def per(patch, _):
        return _linf(patch.reshape(patch.shape[0], -1), w.reshape(w.shape[0], -1))

    y = _sliding(x, list(w.shape[2:]), a, per, w.shape[0])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def _avgpool(x, a, dom):
    k = list(a["kernel_shape"])
    incl = int(a.get("count_include_pad", 0))

    def per(patch, mask):
        n = int(np.prod(k)) if incl else int(mask.sum())
        return patch.sum(axis=(2, 3)) * dom.lift(np.float64(1.0)) / n

    return _sliding(x, k, a, per, x.shape[1])


def _maxpool(x, a, dom):
    def per(patch, mask):
        if not mask.any():
            if dom.exact:
                raise Undefined("max over an all-padding window")
            return np.full(patch.shape[:2], -np.inf)
        return patch[:, :, mask].max(axis=-1)

    return _sliding(x, list(a["kernel_shape"]), a, per, x.shape[1])


def _cast(x, to, dom):
    if to not in _INT:  # to float: an integer keeps its exact value (the float32 rounding is
        if not np.issubdtype(np.asarray(x).dtype, np.integer):  # within the verifier's box)
            return x
        return np.vectorize(Fraction, otypes=[object])(x) if dom.exact else x.astype(np.float64)
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        return x.astype(_INT[to])
    info = np.iinfo(_INT[to])
    flat = [int(v) if dom.exact else int(np.trunc(v)) if np.isfinite(v) else 0 for v in np.asarray(x).reshape(-1)]
    if any(v < info.min or v > info.max for v in flat):
        if dom.exact:
            raise Undefined("float -> int cast past the integer range")
        flat = [min(max(v, info.min), info.max) for v in flat]
    return np.asarray(flat, dtype=_INT[to]).reshape(np.shape(x))


def _softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _bn(x, scale, b, mean, var, eps):
    shape = [1, -1] + [1] * (x.ndim - 2)
    f = lambda t: np.asarray(t, np.float64).reshape(shape)  # noqa: E731
    return f(scale) * (x - f(mean)) / np.sqrt(f(var) + eps) + f(b)


def _batchnorm(x, ins, eps, dom):
    """Exact where every var + eps is the square of a rational (then sqrt is exact), else the
    float64 evaluation flagged inexact."""
    if dom.exact:
        roots = [exact_sqrt(v + Fraction(eps)) for v in np.ravel(ins[4])]
        if all(r is not None and r > 0 for r in roots):
            shape = [1, -1] + [1] * (x.ndim - 2)
            f = lambda t: np.asarray(t, dtype=object).reshape(shape)  # noqa: E731
            return f(ins[1]) * (x - f(ins[3])) / f(np.asarray(roots, dtype=object)) + f(ins[2])
    return dom.approx(lambda v: _bn(v, *ins[1:5], eps), x)


def _binary(op, a, b, dom):
    if op == "Div":
        if dom.exact and not np.issubdtype(np.asarray(b).dtype, np.integer) and np.any(b == 0):
            raise Undefined("division by 0")
        if np.issubdtype(np.asarray(a).dtype, np.integer) and np.issubdtype(np.asarray(b).dtype, np.integer):
            return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(np.int64)
        with np.errstate(all="ignore"):
            return a / b
    with np.errstate(all="ignore"):
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](a, b)


def _reduce_axes(a, ins, x):
    axes = a.get("axes", None if len(ins) < 2 or ins[1] is None else [int(v) for v in ins[1]])
    if not axes and a.get("noop_with_empty_axes", 0):
        return ()
    return tuple(range(x.ndim)) if not axes else tuple(sorted({int(v) % x.ndim for v in axes}))


def _reduce(x, a, ins, dom, mean):
    axes = _reduce_axes(a, ins, x)
    if not axes:
        return x
    n = int(np.prod([x.shape[i] for i in axes]))
    s = x.sum(axis=axes, keepdims=bool(a.get("keepdims", 1)))
    return s * dom.lift(np.float64(1.0)) / n if mean else s


def _erf64(v):
    import torch

    return torch.erf(torch.from_numpy(np.asarray(v, np.float64))).numpy()


def _gelu(v, mode):
    if mode == "tanh":
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    return 0.5 * v * (1 + _erf64(v / np.sqrt(2)))


def _layernorm(v, s, b, axis, eps):
    axes = tuple(range(axis % v.ndim, v.ndim))
    d = v - v.mean(axis=axes, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + eps) * np.asarray(s, np.float64)
    return y if b is None else y + np.asarray(b, np.float64)


def _pow(x, y, dom):
    e = float(np.asarray(y).reshape(-1)[0])
    if e == 2.0:
        return x * x
    return x if e == 1.0 else dom.approx(np.sqrt, x)


def _fmod(x, c, dom):
    if not dom.exact:
        with np.errstate(all="ignore"):
            return np.fmod(x, c)
    if np.any(c == 0):
        raise Undefined("modulo by 0")
    return np.vectorize(lambda u, v: u - v * int(u / v), otypes=[object])(x, c)


def _split(x, a, ins, n_out):
    ax = int(a.get("axis", 0)) % x.ndim
    n = x.shape[ax]
    if len(ins) > 1 and ins[1] is not None:
        sizes = [int(v) for v in ins[1]]
    else:
        c = -(-n // n_out)
        sizes = [min(c, max(n - i * c, 0)) for i in range(n_out)]
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=ax))


def _slice(x, starts, ends, axes, steps):
    sl = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    big = np.iinfo(np.int64).max // 2
    for s, e, ax, st in zip(starts, ends, axes, steps):
        e = None if (st > 0 and e >= big) or (st < 0 and e <= -big) else int(e)
        sl[int(ax) % x.ndim] = slice(int(s), e, int(st))
    return x[tuple(sl)]


def _flatten(x, axis):
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _pad_op(x, ins, dom):
    pads = [int(v) for v in ins[1]]
    value = ins[2].reshape(-1)[0] if len(ins) > 2 and ins[2] is not None else dom.lift(np.float64(0.0))
    axes = [int(v) % x.ndim for v in ins[3]] if len(ins) > 3 and ins[3] is not None else list(range(x.ndim))
    width = [(0, 0)] * x.ndim
    for j, ax in enumerate(axes):
        width[ax] = (pads[j], pads[j + len(axes)])
    return _pad(x, width, value)


def _node(n, ins, dom):
    a, t = _attrs(n), n.op_type
    x = ins[0] if ins else None
    zero = dom.lift(np.float64(0.0))
    if t in ("Add", "Sub", "Mul", "Div"):
        return _binary(t, ins[0], ins[1], dom)
    simple = {
        "Abs": lambda: np.abs(x), "Neg": lambda: -x, "Identity": lambda: x, "Dropout": lambda: x,
        "Relu": lambda: np.where(x >= zero, x, zero),
        "LeakyRelu": lambda: np.where(x >= zero, x, dom.lift(np.float32(a.get("alpha", 0.01))) * x),
        "Max": lambda: reduce(np.maximum, ins), "Min": lambda: reduce(np.minimum, ins),
        "Sum": lambda: reduce(np.add, ins),
        "Sigmoid": lambda: dom.near_exact(t, lambda v: 1.0 / (1.0 + np.exp(-v)), x),
        "Tanh": lambda: dom.near_exact(t, np.tanh, x),
        "Softmax": lambda: dom.approx(lambda v: _softmax(v, int(a.get("axis", -1))), x),
        "BatchNormalization": lambda: _batchnorm(x, ins, float(np.float32(a.get("epsilon", 1e-5))), dom),
        "MatMul": lambda: np.matmul(ins[0], ins[1]),
        "Conv": lambda: _conv(x, ins[1], ins[2] if len(ins) > 2 else None, a),
        "AveragePool": lambda: _avgpool(x, a, dom), "MaxPool": lambda: _maxpool(x, a, dom),
        "LinfDist": lambda: _linf(x, ins[1]) + (ins[2] if len(ins) > 2 else zero),
        "LinfDistConv": lambda: _linfconv(x, ins[1], ins[2] if len(ins) > 2 else None, a),
        "Cast": lambda: _cast(x, int(a["to"]), dom),
        "Flatten": lambda: _flatten(x, int(a.get("axis", 1))),
        "Reshape": lambda: x.reshape([x.shape[i] if v == 0 else int(v) for i, v in enumerate(ins[1])]),
        "Shape": lambda: np.asarray(x.shape, np.int64)[int(a.get("start", 0)):a.get("end")],
        "Transpose": lambda: np.transpose(x, a.get("perm")),
        "Squeeze": lambda: np.squeeze(x, axis=tuple(int(v) % x.ndim for v in ins[1])),
        "Unsqueeze": lambda: np.expand_dims(x, tuple(int(v) % (x.ndim + len(ins[1])) for v in ins[1])),
        "Slice": lambda: _slice(x, *(list(v) if v is not None else None for v in (ins + [None, None])[1:5])),
        "Gather": lambda: np.take(x, ins[1], axis=int(a.get("axis", 0))),
        "Concat": lambda: np.concatenate(ins, axis=int(a["axis"])),
        "Pad": lambda: _pad_op(x, ins, dom),
        "ReduceMax": lambda: x.max(axis=_reduce_axes(a, ins, x), keepdims=bool(a.get("keepdims", 1))),
        "ReduceMean": lambda: _reduce(x, a, ins, dom, True), "ReduceSum": lambda: _reduce(x, a, ins, dom, False),
        "GlobalAveragePool": lambda: _reduce(x, {"axes": list(range(2, x.ndim))}, ins, dom, True),
        "GlobalMaxPool": lambda: x.max(axis=tuple(range(2, x.ndim)), keepdims=True),
        "Exp": lambda: dom.approx(np.exp, x), "Erf": lambda: dom.approx(_erf64, x),
        "Sqrt": lambda: dom.approx(np.sqrt, x),
        "Gelu": lambda: dom.approx(lambda v: _gelu(v, a.get("approximate", "none")), x),
        "LayerNormalization": lambda: dom.approx(lambda v: _layernorm(
            v, ins[1], ins[2] if len(ins) > 2 else None, int(a.get("axis", -1)), float(np.float32(a.get("epsilon", 1e-5)))), x),
        "Pow": lambda: _pow(x, ins[1], dom),
        "Equal": lambda: np.asarray(ins[0] == ins[1], dtype=bool),
        "Where": lambda: np.where(np.asarray(ins[0], bool), ins[1], ins[2]),
        "Mod": lambda: _fmod(x, ins[1], dom),
        "Expand": lambda: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(v) for v in ins[1]))).copy(),
        "ConstantOfShape": lambda: dom.lift(np.full([int(v) for v in x], np.asarray(a["value"]).reshape(-1)[0])),
        "Split": lambda: _split(x, a, ins, len(n.output)),
        "Constant": lambda: dom.lift(np.asarray(next(iter(a.values())), np.float32)),
    }
    if t == "Clip":
        y = x
        if len(ins) > 1 and ins[1] is not None:
            y = np.where(y < ins[1], ins[1], y)
        if len(ins) > 2 and ins[2] is not None:
            y = np.where(y > ins[2], ins[2], y)
        return y
    if t == "Gemm":
        A, B = ins[0], ins[1]
        A, B = (A.T if a.get("transA", 0) else A), (B.T if a.get("transB", 0) else B)
        y = dom.lift(np.float32(a.get("alpha", 1.0))) * np.matmul(A, B)
        return y if len(ins) < 3 or ins[2] is None else y + dom.lift(np.float32(a.get("beta", 1.0))) * ins[2]
    return simple[t]()


def run_node(n, vals: dict, dom: Domain) -> None:
    """Evaluate NodeProto ``n`` on ``vals`` (tensor name -> value) in ``dom``; stores its output."""
    out = _node(n, [vals[i] if i else None for i in n.input], dom)
    for name, v in zip(n.output, out if isinstance(out, tuple) else (out,)):
        vals[name] = v


def evaluate(model, x: np.ndarray, exact: bool) -> tuple[np.ndarray, bool, bool]:
    """(output, inexact, near) of the graph at one input ``x`` (float32 array, or Fractions, with
    the batch dim; ``near``: a NEAR_EXACT op ran); raises :class:`Undefined` where the exact
    function is undefined."""
    dom = Domain(exact)
    g = model.graph
    vals = {i.name: dom.lift(numpy_helper.to_array(i)) for i in g.initializer}
    vals[g.input[0].name] = x if x.dtype == object else dom.lift(x)
    for n in g.node:
        run_node(n, vals, dom)
    return vals[g.output[0].name], dom.inexact, dom.near
