"""Helpers for shape ops: they move values without arithmetic, so boxes map exactly and the
Lipschitz bound passes through unchanged (ℓ∞ of a permuted/copied tensor)."""

from __future__ import annotations

import math

import numpy as np

from verify.ops.base import Box, Op, scaled


class ShapeOp(Op):
    """An op applying the same value-preserving map to lo and hi (forward = the map)."""

    inf_safe = True
    inf_consts_ok = True

    def interval(self, b: Box, *rest: Box) -> Box:
        for r in rest:
            if r is not None and not np.array_equal(r.lo, r.hi):
                raise self.fail("a shape/index argument depends on the input values")
        consts = [None if r is None else r.lo for r in rest]
        return Box(self.forward(b.lo, *consts), self.forward(b.hi, *consts))

    def lipschitz(self, lx=None, *rest):
        if any(rest):  # a shape/index argument that varies with the input: discontinuous
            return math.inf
        return scaled([lx], 1.0)


class MoveOp(ShapeOp):
    """A ShapeOp that only moves values (Flatten, Reshape, Squeeze, Unsqueeze, Transpose, and with
    their own torch forward Slice, Gather, Expand): its torch forward reuses the numpy map on an index
    array (verify/ops/_torch.py ``reshaped``) and its CROWN step moves coefficients back exactly
    (verify/bounds/moves.py)."""

    def torch_forward(self, ctx, x, *rest):
        from verify.ops._torch import reshaped

        return reshaped(self, x, *rest)

    def relax(self, a, ins, out, ctx):
        """Values are only moved: coefficients move back exactly (verify/bounds/moves.py)."""
        from verify.bounds.moves import moved_values

        return moved_values(self, a, ins, ctx)


def axes_from(op: Op, input_index: int, attr_name: str = "axes"):
    """Axes from the attribute (old opsets) or the constant input (new opsets); None if absent."""
    if attr_name in op.attrs:
        return [int(a) for a in op.attrs[attr_name]]
    if len(op.inputs) > input_index and op.inputs[input_index]:
        c = op.const(input_index)
        if c is None:
            raise op.fail("axes must be a constant")
        return [int(a) for a in np.asarray(c).reshape(-1)]
    return None


def norm_axes(op: Op, axes, rank: int, duplicates: bool = True) -> list[int]:
    """``axes`` in [-rank, rank-1] made non-negative, sorted, each once (a ModelError for an axis out
    of range, or for a repeated one when ``duplicates`` is False): onnxruntime's reading."""
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise op.fail(f"axis {a} out of range for rank {rank}")
        out.append(a % rank)
    if not duplicates and len(set(out)) != len(out):
        raise op.fail(f"axes {list(axes)} name an axis twice")
    return sorted(set(out))
