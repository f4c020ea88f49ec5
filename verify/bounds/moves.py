"""Back-substitution through ops that only move values (Flatten, Reshape, Transpose, Squeeze,
Unsqueeze, Identity, Dropout, Slice, Gather, Expand, Concat, Pad in constant mode): the coefficients
of the output are summed back onto the input positions they were copied from. The map is found by
running the op's own ``forward`` on tensors of element indices, so it is the op's reading, not a
second one."""

from __future__ import annotations

import math

import numpy as np
import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, add_down, dot_lo, scatter_sum, zero_bias

FILL = -1  # the index of an output element that is a constant (Pad's value), not a copy


def index_arrays(ins: list[TBox | None], data: list[int]) -> list[np.ndarray]:
    """int64 tensors of the shapes of inputs ``data`` numbering their elements consecutively (input
    after input, each batch-first): every element of every data input has its own number ≥ 0."""
    out, base = [], 0
    for i in data:
        shape = tuple(ins[i].lo.shape)
        size = int(np.prod(shape, dtype=np.int64))
        out.append(base + np.arange(size, dtype=np.int64).reshape(shape))
        base += size
    return out


def gathered(a: torch.Tensor, ins: list[TBox | None], data: list[int], src, fill: float | None = None) -> Relaxed | None:
    """``A·y = Σ_i A_i·x_i (+ A·fill at the FILL positions)`` for an output ``src`` (the op run on
    :func:`index_arrays`) whose every element copies one element of a data input of the SAME sample
    (checked, as is that the map is the same for every sample; None otherwise, and the engine
    concretises). Copies are exact in float32 and real arithmetic; an input position read several
    times gets a float64 sum of coefficients whose rounding is charged (linear.scatter_sum), and the
    fill term is a rounded dot product bounded below (linear.dot_lo)."""
    n, s = a.shape[:2]
    src = np.asarray(src)
    if src.dtype != np.int64 or src.shape[:1] != (n,) or tuple(src.shape[1:]) != tuple(a.shape[2:]):
        return None
    src = src.reshape(n, -1)
    af = a.reshape(n, s, -1)
    rows = np.arange(n)[:, None]
    bias = zero_bias(a)
    covered = src == FILL
    if covered.any():
        if fill is None or not math.isfinite(fill) or not (covered == covered[:1]).all():
            return None
        cols = torch.from_numpy(np.flatnonzero(covered[0]))
        bias = dot_lo(af[:, :, cols], torch.full((len(cols),), float(fill), dtype=torch.float64))
    parts, base = {}, 0
    for i in data:
        shape = tuple(ins[i].lo.shape)
        d = int(np.prod(shape[1:], dtype=np.int64))
        size = int(np.prod(shape, dtype=np.int64))
        loc = src - base
        base += size
        mine = (loc >= 0) & (loc < size)
        if not mine.any():
            continue
        if shape[0] != n or not (mine == mine[:1]).all():
            return None
        cols = np.flatnonzero(mine[0])
        loc = loc[:, cols]
        if np.any(loc // d != rows):
            return None
        covered |= mine
        if af.shape[2] == d == len(cols) and len(data) == 1 and np.array_equal(loc % d, np.broadcast_to(np.arange(d), loc.shape)):
            # output position j copies input position j (Flatten, most Reshapes): A_in is A, exactly
            parts[i] = a.reshape(n, s, *shape[1:])
            continue
        a_in, charge = scatter_sum(n, s, d, torch.from_numpy(loc % d), [af[:, :, torch.from_numpy(cols)]],
                                   ins[i].mag.reshape(n, -1))
        parts[i] = a_in.reshape(n, s, *shape[1:])
        bias = add_down(bias, charge)
    if not covered.all():
        return None
    return Relaxed(parts, bias)


def moved_values(op, a: torch.Tensor, ins: list[TBox | None], ctx: Ctx) -> Relaxed | None:
    """One data input (0); the other inputs are constant arguments of the op (shapes, indices,
    axes), passed to ``op.forward`` as they are (a variable one: None, concretised)."""
    rest = []
    for i in range(1, len(op.inputs)):
        if op.inputs[i] and op.const(i) is None:
            return None
        rest.append(op.const(i) if op.inputs[i] else None)
    return gathered(a, ins, [0], op.forward(*index_arrays(ins, [0]), *rest))
