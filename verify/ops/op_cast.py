"""Cast(to) between float32, int64, int32 and bool inputs.

* float -> int truncates towards 0: monotone, so the box maps endpoint-wise, but ONLY while the
  whole box lies inside the target range: past it (and for ±inf, NaN) onnxruntime returns INT_MIN
  (measured on onnxruntime 1.32: Cast(3e9 -> int32) = -2^31, Cast(1e19 -> int64) = -2^63), which is
  not monotone, and ONNX leaves the value undefined. Such a box is refused (ModelError: the sample is
  ``unknown``); ``forward`` returns INT_MIN there like onnxruntime.
* int -> int: exact inside the target range; a narrowing cast that may wrap (int64 -> int32 past
  2^31) is refused the same way.
* int/bool -> float32 rounds to nearest: the exact integer and its float32 rounding both lie in
  [float32 at or below lo, float32 at or above hi] (decided with exact integer comparisons; a
  float64 detour would itself round integers past 2^53).
* float32 -> float32 and bool -> int are exact.
Lipschitz: unbounded for float -> int (discontinuous) unless the input is data independent.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from onnx import TensorProto

from verify.ops._torch import f32t, numpy_forward
from verify.ops.base import Box, Op

_TO = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64, TensorProto.INT32: np.int32}
_TWO63 = 2.0**63


def _int_range(dt) -> tuple[int, int]:
    i = np.iinfo(dt)
    return int(i.min), int(i.max)


def _float_in_range(x: np.ndarray, dt) -> np.ndarray:
    """Where trunc(x) is representable in the integer type ``dt`` (False for NaN and ±inf)."""
    lo, hi = _int_range(dt)
    x64 = np.asarray(x, np.float64)  # float32 -> float64 is exact, and so are -2^k and 2^k
    with np.errstate(invalid="ignore"):
        return (x64 >= float(lo)) & (x64 < float(hi) + 1.0)


def int_to_f32(v: np.ndarray, toward: float) -> np.ndarray:
    """float32 values ``<= v`` (toward = -inf) or ``>= v`` (toward = +inf) elementwise for an integer
    array ``v``, each equal to the float32 rounding of ``v`` or one step outward from it."""
    v = np.asarray(v).astype(np.int64)
    f = v.astype(np.float32)  # faithfully rounded (x86-64/aarch64 convert to nearest)
    above = f.astype(np.float64) >= _TWO63  # f > every int64
    below = f.astype(np.float64) < -_TWO63  # f < every int64
    with np.errstate(invalid="ignore"):
        fi = np.where(above | below, 0, f).astype(np.int64)  # exact: a float32 of an int is integral
    bad = (above | (~below & (fi > v))) if toward < 0 else (below | (~above & (fi < v)))
    return np.where(bad, np.nextafter(f, np.float32(toward)), f).astype(np.float32)


class Cast(Op):
    op_type = "Cast"
    inf_safe = True  # float -> float passes ±inf through; float -> int refuses it below
    known_attrs = frozenset({"to", "saturate"})

    def unsupported(self):
        r = super().unsupported()
        if r:
            return r
        if int(self.attr("to", 0)) not in _TO:
            return "only casts to float32, int64 or int32 are supported"
        return None

    def _dtype(self):
        return _TO[int(self.attr("to"))]

    def forward(self, x):
        x = np.asarray(x)
        dt = self._dtype()
        if np.issubdtype(x.dtype, np.floating) and dt != np.float32:
            ok = _float_in_range(x, dt)
            with np.errstate(invalid="ignore"):
                return np.where(ok, np.trunc(np.where(ok, x, 0)).astype(dt), dt(_int_range(dt)[0])).astype(dt)
        return x.astype(dt)

    def torch_forward(self, ctx, x):
        if torch.is_floating_point(x) and self._dtype() == np.float32:
            return f32t(x)
        return numpy_forward(self, x)  # to an integer type: no gradient

    def interval(self, b):
        dt = self._dtype()
        floating = np.issubdtype(b.lo.dtype, np.floating)
        if dt == np.float32:
            if floating:
                return Box(np.asarray(b.lo, np.float32), np.asarray(b.hi, np.float32))
            return Box(int_to_f32(b.lo, -math.inf), int_to_f32(b.hi, math.inf))
        if floating:
            if not (_float_in_range(b.lo, dt).all() and _float_in_range(b.hi, dt).all()):
                raise self.fail(f"values outside the {np.dtype(dt).name} range (or ±inf) may reach the cast, "
                                "where onnxruntime returns INT_MIN; cannot certify")
        else:
            lo, hi = _int_range(dt)
            if np.asarray(b.lo).size and (int(np.min(b.lo)) < lo or int(np.max(b.hi)) > hi):
                raise self.fail(f"integers outside the {np.dtype(dt).name} range would wrap; cannot certify")
        return Box(self.forward(b.lo), self.forward(b.hi))

    def lipschitz(self, lx=None):
        if not lx:
            return 0.0
        return lx if self._dtype() == np.float32 else math.inf

    def batch_axis(self, f):
        from verify.front.batch_axis import same_as_input

        return same_as_input(self, f)
