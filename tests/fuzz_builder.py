"""The fuzzer's building blocks (tests/fuzz_graphs.py): constant values and input boxes with
extremes, the known-open switch, and the graph Builder (shapes learnt from the reference
interpreter of tests/fuzz_exact.py in float64 mode)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper as h

from fuzz_exact import Domain, run_node

OPSET = 20
#: Classes of hostile constants a generator can be told to avoid (``avoid=``); the fuzz tests
#: generate them all (their fixes: verify/ops, issue 12 root causes 1, 6, 7).
KNOWN_OPEN = frozenset({"cast_out_of_range", "bad_constants", "float32_folding"})
NONE: frozenset = frozenset()

F32_MAX = float(np.finfo(np.float32).max)
EXTREMES = (
    0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1e-7, 1e-45, -1e-45, 1.1754942e-38, 1.17549435e-38,
    3e38, -3e38, F32_MAX, -F32_MAX, 1e20, -1e20, 16777216.0, 16777218.0, 65504.0,
    2147483520.0, 2147483648.0, -2147483648.0, -2147483904.0, 9.223372e18, -9.2233730e18,
)
NONFINITE = (float("nan"), float("inf"), float("-inf"))
RADII = (0.0, 1e-45, 1e-30, 1e-6, 1e-3, 0.25, 1.0, 100.0, 1e6, 1e30)
I64_MAX, I64_MIN = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)


def float_values(avoid=NONE):
    """float32 scalars: mostly ordinary, often extreme; NaN/±inf unless ``bad_constants`` is avoided."""
    parts = [st.floats(-4, 4, width=32), st.sampled_from(EXTREMES)]
    if "bad_constants" not in avoid:
        parts.append(st.sampled_from(NONFINITE))
    return st.one_of(*parts)


def float_arrays(shape, avoid=NONE):
    return hnp.arrays(np.float32, tuple(shape), elements=float_values(avoid))


@st.composite
def boxes(draw, shape):
    """A random finite float32 input box [lo, hi] of ``shape`` (centres may be extreme)."""
    c = draw(float_arrays(shape, avoid=frozenset({"bad_constants"})))  # an input box has no NaN
    r = draw(hnp.arrays(np.float64, tuple(shape), elements=st.sampled_from(RADII)))
    with np.errstate(over="ignore"):
        lo = np.clip((c - r).astype(np.float32), -F32_MAX, F32_MAX).astype(np.float32)
        hi = np.clip((c + r).astype(np.float32), -F32_MAX, F32_MAX).astype(np.float32)
    return np.minimum(lo, hi), np.maximum(lo, hi)


@dataclass
class Fuzzed:
    """A generated model, the op types it uses and an input box [lo, hi] (batch dim 1)."""

    model: object
    ops: list
    lo: np.ndarray
    hi: np.ndarray

    def __repr__(self):
        from onnx import printer

        return f"Fuzzed(box lo={self.lo.tolist()} hi={self.hi.tolist()}\n{printer.to_text(self.model.graph)})"


class Builder:
    """The graph under construction: nodes, initializers, live float tensors and their probe values."""

    def __init__(self, draw, in_shape, avoid):
        self.draw, self.avoid = draw, avoid
        self.nodes, self.inits, self.linf, self.used = [], {}, set(), []
        self.dom = Domain(False)
        self.vals = {"input": np.zeros((1, *in_shape))}
        self.live = ["input"]
        self.k = 0

    def fresh(self, prefix="t") -> str:
        self.k += 1
        return f"{prefix}{self.k}"

    def init(self, arr) -> str:
        name = self.fresh("c")
        self.inits[name] = np.asarray(arr)
        self.vals[name] = self.dom.lift(self.inits[name])
        return name

    def floats(self, shape) -> str:
        return self.init(self.draw(float_arrays(shape, self.avoid)))

    def ints(self, values) -> str:
        return self.init(np.asarray(values, np.int64))

    def emit(self, op, inputs, domain="", **attrs) -> str:
        out = self.fresh()
        node = h.make_node(op, list(inputs), [out], domain=domain, **attrs)
        run_node(node, self.vals, self.dom)
        self.nodes.append(node)
        self.used.append(op)
        if domain == "linf":
            self.linf.add(op)
        return out

    def push(self, t) -> str:
        v = self.vals[t]
        if np.issubdtype(v.dtype, np.floating) and v.size and v.ndim >= 2:
            self.live.append(t)
        return t

    def shape(self, t):
        return self.vals[t].shape

    def pick(self) -> str:
        """A live float tensor, most often the newest."""
        if self.draw(st.booleans()):
            return self.live[-1]
        return self.draw(st.sampled_from(self.live))

    def same_shape(self, t) -> str:
        return self.draw(st.sampled_from([u for u in self.live if self.shape(u) == self.shape(t)]))

    def int_of(self, lo, hi) -> int:
        return self.draw(st.integers(lo, hi))

    def axis(self, t, negative=True) -> int:
        """A non-batch axis of ``t`` (maybe written negatively)."""
        r = len(self.shape(t))
        a = self.int_of(1, r - 1)
        return a - r if negative and self.draw(st.booleans()) else a


# ---- operand helpers shared by the generators (tests/fuzz_graphs.py, fuzz_graphs_reduce.py) ----

def to_rank2(b: Builder, x: str) -> str:
    return x if len(b.shape(x)) == 2 else b.emit("Flatten", [x], axis=1)


def to_rank4(b: Builder, x: str) -> str:
    s = b.shape(x)
    if len(s) == 4:
        return x
    n = int(np.prod(s[1:]))
    dims = b.draw(st.sampled_from([[n, 1, 1], [1, 1, n], [1, n, 1]] + ([[1, 2, n // 2]] if n % 2 == 0 else [])))
    return b.emit("Reshape", [x, b.ints([0] + dims)])


def operand(b: Builder, x: str) -> str:
    """A second operand for x: a broadcastable constant, a live tensor of x's shape, or (unless
    ``float32_folding`` is avoided) a constant subgraph the loader folds."""
    s = b.shape(x)
    kinds = ["scalar", "last", "full", "tensor"] + ([] if "float32_folding" in b.avoid else ["folded"])
    kind = b.draw(st.sampled_from(kinds))
    if kind == "tensor":
        return b.same_shape(x)
    shape = {"scalar": (), "last": s[-1:], "full": (1, *s[1:]), "folded": s[-1:]}[kind]
    c = b.floats(shape)
    if kind == "folded":
        return b.emit(b.draw(st.sampled_from(["Add", "Sub", "Mul", "Div"])), [c, b.floats(shape)])
    return c
