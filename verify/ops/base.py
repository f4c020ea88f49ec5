"""Base class of bound ops, the interval ``Box`` and the node description they are built from.

Every op class (``verify/ops/op_<name>.py``) subclasses :class:`Op` and implements:

* ``forward(*xs)``: float32 evaluation as onnxruntime computes it (bit-identical for correctly
  rounded elementwise ops, shape ops and the ℓ∞-dist ops; within float error for dot products and
  transcendental functions). ``xs[i]`` is None for a missing optional input.
* ``interval(*boxes)``: a sound :class:`Box`: it contains the exact real result for every real input
  inside the input boxes AND the float32 result onnxruntime computes for every float32 input in them.
  Constant inputs arrive as degenerate boxes ``Box(c, c)`` (``c`` keeps its dtype, e.g. int64 shapes);
  ``self.consts[i]`` holds the constant value of input ``i`` when it is a graph constant.
* ``lipschitz(*in_l)``: ``in_l[i]`` is the ℓ∞→ℓ∞ Lipschitz bound of input ``i`` w.r.t. the graph input
  (None for a constant input); returns an upper bound for the output (``math.inf`` = unbounded),
  rounded upward.
* ``unsupported()``: None, or a short reason when an attribute value is outside what we can bound.
* ``batch_axis(flow)``: where the batch axis of the output is (verify/batch_axis.py); default refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from onnx import helper

from verify.errors import ModelError


@dataclass
class Box:
    """An elementwise interval ``[lo, hi]`` of float arrays (float32 for data tensors)."""

    lo: np.ndarray
    hi: np.ndarray

    @staticmethod
    def point(x: np.ndarray) -> "Box":
        """The degenerate box ``[x, x]``."""
        x = np.asarray(x)
        return Box(x, x)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.lo.shape)

    def contains(self, x: np.ndarray) -> bool:
        """True iff every element of ``x`` lies in the box (compared exactly, in float64)."""
        x = np.asarray(x, dtype=np.float64)
        return bool(np.all(self.lo.astype(np.float64) <= x) and np.all(x <= self.hi.astype(np.float64)))


@dataclass
class NodeSpec:
    """One ONNX node, as the IR sees it.

    Fields: ``name`` (unique, synthesised when the file has none), ``op_type``, ``domain`` ("" for
    the default domain, "linf" for ours), ``inputs`` / ``outputs`` (tensor names, "" = missing
    optional input), ``attrs`` (attribute name -> python value: int, float, str, list, np.ndarray for
    tensors), ``opset`` (the model's version of the node's domain).
    """

    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    opset: int = 0


def attrs_of(node) -> dict[str, Any]:
    """Attribute dict of an onnx NodeProto: strings decoded, tensors as numpy arrays."""
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise ModelError(f"node {node.name!r}: attribute references are only allowed inside functions")
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        elif hasattr(v, "dims") and hasattr(v, "data_type"):
            v = numpy_helper.to_array(v)
        out[a.name] = v
    return out


class Op:
    """A bound ONNX node. Subclasses set ``op_type`` (and ``domain`` when not default)."""

    op_type: str = ""
    domain: str = ""
    #: True when ``forward`` on constants is bit-identical to onnxruntime (safe to fold at load time)
    foldable: bool = True
    #: attributes this op understands; any other attribute makes the node unsupported
    known_attrs: frozenset[str] = frozenset()

    def __init__(self, spec: NodeSpec, consts: dict[int, np.ndarray]):
        self.spec = spec
        self.name = spec.name
        self.inputs = list(spec.inputs)
        self.outputs = list(spec.outputs)
        self.attrs = dict(spec.attrs)
        self.opset = spec.opset
        self.consts = dict(consts)

    # ---- helpers for subclasses ----
    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def const(self, i: int) -> np.ndarray | None:
        """The constant value of input ``i``, or None if it is variable or missing."""
        return self.consts.get(i)

    def is_var(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != "" and i not in self.consts

    def fail(self, msg: str) -> ModelError:
        return ModelError(f"node {self.name!r} ({self.describe()}): {msg}")

    def describe(self) -> str:
        return f"{self.domain + '::' if self.domain else ''}{self.op_type}"

    # ---- interface ----
    def unsupported(self) -> str | None:
        extra = sorted(set(self.attrs) - set(self.known_attrs))
        if extra:
            return f"unsupported attribute(s) {', '.join(extra)}"
        return None

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def interval(self, *boxes: Box) -> Box:
        raise NotImplementedError

    def lipschitz(self, *in_l: float | None) -> float:
        raise NotImplementedError

    def batch_axis(self, flow) -> object:
        """Per-sample analysis (verify/batch_axis.py): the output's abstract value (FREE, Rows,
        Dims) from the inputs' in ``flow``, or a string naming how the op would couple the samples
        of a batch (the model is then refused). Default: refuse."""
        return f"{self.describe()} is not known to keep the samples of a batch apart"

    def local_lipschitz(self) -> float:
        """The op's own bound: ``lipschitz`` with 1 for every variable input, None for constants."""
        return self.lipschitz(*[1.0 if self.is_var(i) else None for i in range(len(self.inputs))])


def var_l(in_l) -> list[float]:
    """The non-None entries of ``in_l`` (the Lipschitz bounds of the variable inputs)."""
    return [float(v) for v in in_l if v is not None]


def mul_up(a: float, b: float) -> float:
    """Upper bound of a*b for a, b >= 0 (0 * inf = 0: a constant factor kills the dependence).
    Exact products (checked with rationals) are returned unchanged, others stepped up once."""
    if a == 0.0 or b == 0.0:
        return 0.0
    p = a * b
    if math.isinf(p) or Fraction(p) == Fraction(a) * Fraction(b):
        return p
    return math.nextafter(p, math.inf)


def add_up(*vals: float) -> float:
    """Upper bound of the sum of non-negative values (exact sums are returned unchanged)."""
    s = 0.0
    for v in vals:
        if v == 0.0:
            continue
        t = s + v
        if not math.isinf(t) and Fraction(t) != Fraction(s) + Fraction(v):
            t = math.nextafter(t, math.inf)
        s = t
    return s


def scaled(in_l, factor: float) -> float:
    """``factor`` times the Lipschitz bound of the single variable input (0 if all constant)."""
    v = var_l(in_l)
    if not v:
        return 0.0
    return mul_up(factor, max(v))


def inf_norm_up(mat: np.ndarray, sum_axis: int) -> float:
    """Upper bound of max over the other axes of sum_{sum_axis} |mat| (the ℓ∞ operator norm of the
    map whose outputs are indexed by the other axes). Sums of n non-negative float64 terms are within
    a factor (1 + γ_n) of the exact value; we inflate by 2γ_n + 2^-50 and step up."""
    a = np.abs(np.asarray(mat, dtype=np.float64))
    if a.size == 0:
        return 0.0
    n = a.shape[sum_axis]
    s = float(a.sum(axis=sum_axis).max())
    if not math.isfinite(s):
        return math.inf
    slack = 2.0 * n * 2.0**-53 / (1.0 - n * 2.0**-53) + 2.0**-50
    return math.nextafter(s * (1.0 + slack), math.inf)
