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
* ``torch_forward(ctx, *xs)``: the differentiable torch evaluation the attack runs (verify/attack):
  ``xs`` torch tensors (float32 data, int64 integers, None for a missing optional input; constants
  arrive as tensors too), ``ctx`` a :class:`TorchContext`; returns a tensor (a tuple for several
  outputs) equal to ``forward`` within float32 error (bit-identical where ``forward`` is exact).
  The ℓ∞-dist ops keep the exact value and take their gradient from ``ctx.p_grad``.
* ``unsupported()``: None, or a short reason when an attribute value is outside what we can bound.
* ``batch_axis(flow)``: where the batch axis of the output is (verify/front/batch_axis.py); default refuse.

Non-finite values (docs/SOUNDNESS.md, "Op layer: non-finite values, casts, constants and
folding"). A box never contains NaN; ±inf endpoints mean the tensor may really be ±inf (overflow). Callers bound ops through
:meth:`Op.bound`, which refuses (ModelError, reported as ``unknown``) an input box with a non-finite
endpoint unless the op sets ``inf_safe`` (its interval handles ±inf and onnxruntime never computes NaN
from ±inf inputs: no inf - inf, 0 * inf, inf / inf), and refuses a NaN output box. Constants are
checked once at load by :meth:`Op.nonfinite_constants`: NaN anywhere (constant inputs, float
attributes) is refused, ±inf unless the op sets ``inf_consts_ok``; ops add their own checks (e.g.
BatchNormalization's var + epsilon > 0) in :meth:`Op.constants_problem`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from onnx import helper

from common.errors import ModelError


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


@dataclass(frozen=True)
class TorchContext:
    """Settings of one torch evaluation (``Op.torch_forward``): ``p_grad`` is the gradient of the
    ℓ∞-dist ops, ``inf`` = the exact subgradient, finite = the smoothed ℓp surrogate (the forward
    value never depends on it)."""

    p_grad: float = math.inf


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
    #: False for ops whose result on constants is never worth trying to fold (see ``fold``)
    foldable: bool = True
    #: attributes this op understands; any other attribute makes the node unsupported
    known_attrs: frozenset[str] = frozenset()
    #: ``interval`` is sound for input boxes with ±inf endpoints and onnxruntime never turns ±inf
    #: inputs into NaN (see the module docstring); otherwise such a box is refused by ``bound``
    inf_safe: bool = False
    #: constant inputs / float attributes may hold ±inf (NaN is never accepted)
    inf_consts_ok: bool = False
    #: the op computes several outputs (``forward``/``interval`` return tuples, one per output; the
    #: Lipschitz bound and batch axis hold for each); otherwise extra outputs are refused at load
    multi_output: bool = False

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

    def nonfinite_constants(self) -> str | None:
        """None, or why the node's constants (constant inputs, float attributes) cannot be bounded:
        NaN anywhere, ±inf unless ``inf_consts_ok``. Checked for every node before ``unsupported``."""
        vals = [(f"input {i}", v) for i, v in sorted(self.consts.items())]
        vals += [(f"attribute {k}", v) for k, v in sorted(self.attrs.items())]
        for what, v in vals:
            a = _float_values(v)
            if a is None:
                continue
            if np.isnan(a).any():
                return f"{what} contains NaN"
            if not self.inf_consts_ok and np.isinf(a).any():
                return f"{what} contains an infinite value"
        return None

    def constants_problem(self) -> str | None:
        """None, or why a constant's value is outside what the op accepts (checked after
        ``unsupported``; e.g. BatchNormalization's var + epsilon > 0)."""
        return None

    def bound(self, *boxes: Box | None) -> Box:
        """``interval`` guarded against non-finite values (the entry point of every caller): a
        ModelError (the sample is ``unknown``) when an input box reaches ±inf and the op is not
        ``inf_safe``, or when a bound comes out NaN."""
        for b in boxes:
            if b is None or not np.issubdtype(np.asarray(b.lo).dtype, np.floating):
                continue
            if np.isnan(b.lo).any() or np.isnan(b.hi).any():
                raise self.fail("an input bound is NaN; cannot certify")
            if not self.inf_safe and not (np.isfinite(b.lo).all() and np.isfinite(b.hi).all()):
                raise self.fail("an input may be ±inf (float32 overflow) and onnxruntime may then compute "
                                "NaN (inf - inf, 0 * inf, inf / inf); cannot certify")
        out = self.interval(*boxes)
        for o in out if isinstance(out, tuple) else (out,):
            if np.isnan(o.lo).any() or np.isnan(o.hi).any():
                raise self.fail("bound is NaN; cannot certify")
        return out

    def fold(self, *xs: np.ndarray | None):
        """The outputs on constant inputs ``xs`` when they are provably the exact real values (then
        also onnxruntime's float32 values, and folding changes neither theorem), else None: the node
        stays in the graph and is bounded like any other node, its constants as point boxes.
        Exact when the op's own sound box on the point inputs is a point, or ``exact_forward`` says so.
        A ModelError (e.g. a constant cast past the integer range) refuses the model."""
        if not self.foldable:
            return None
        out = self.bound(*[None if x is None else Box.point(np.asarray(x)) for x in xs])
        outs = out if isinstance(out, tuple) else (out,)
        if all(np.array_equal(o.lo, o.hi) for o in outs):
            vals = tuple(o.lo for o in outs)
            return vals if isinstance(out, tuple) else vals[0]
        return self.exact_forward(*xs)

    def exact_forward(self, *xs: np.ndarray | None) -> np.ndarray | None:
        """``forward(*xs)`` when it is exact for these constants (no rounding happened), else None.
        Correctly rounded float ops (Add, Sub, Mul, Div) override it; others never fold inexactly."""
        return None

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def torch_forward(self, ctx: TorchContext, *xs):
        """Differentiable torch evaluation (module docstring); default: the attack cannot run it."""
        raise ModelError(f"node {self.name!r}: the attack has no torch evaluation of {self.describe()}")

    def interval(self, *boxes: Box) -> Box:
        raise NotImplementedError

    def lipschitz(self, *in_l: float | None) -> float:
        raise NotImplementedError

    def batch_axis(self, flow) -> object:
        """Per-sample analysis (verify/front/batch_axis.py): the output's abstract value (FREE, Rows,
        Dims) from the inputs' in ``flow``, or a string naming how the op would couple the samples
        of a batch (the model is then refused). Default: refuse."""
        return f"{self.describe()} is not known to keep the samples of a batch apart"

    def local_lipschitz(self) -> float:
        """The op's own bound: ``lipschitz`` with 1 for every variable input, None for constants."""
        return self.lipschitz(*[1.0 if self.is_var(i) else None for i in range(len(self.inputs))])


def _float_values(v: Any) -> np.ndarray | None:
    """``v`` as a float64 array when it is a float (array, scalar or list of floats), else None."""
    if isinstance(v, (str, bytes)) or v is None:
        return None
    if isinstance(v, list) and not all(isinstance(e, (int, float, np.number)) for e in v):
        return None
    a = np.asarray(v)
    if not np.issubdtype(a.dtype, np.floating):
        return None
    return a.astype(np.float64)


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
