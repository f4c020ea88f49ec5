"""Back-substitution through ops that only move values (Flatten, Reshape, Transpose, Squeeze,
Unsqueeze, Identity, Dropout): the coefficients of the output are summed back onto the input
positions they were copied from. The map is found by running the op's own ``forward`` on a tensor
of element indices, so it is the op's reading, not a second one."""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.linear import Ctx, Relaxed, TBox, scatter_sum, zero_bias


def moved_values(op, a: torch.Tensor, ins: list[TBox | None], ctx: Ctx) -> Relaxed | None:
    """``A·y = A_in·x`` exactly when every output element copies one input element of the same
    sample (checked; None otherwise, and the engine concretises). Input positions read several times
    get a float64 sum of coefficients: its rounding is charged (linear.scatter_sum)."""
    x = ins[0]
    shape = tuple(x.lo.shape)
    n, d = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    rest = []
    for i in range(1, len(op.inputs)):
        if op.inputs[i] and op.const(i) is None:
            return None
        rest.append(op.const(i) if op.inputs[i] else None)
    idx = np.arange(n * d, dtype=np.int64).reshape(shape)
    src = np.asarray(op.forward(idx, *rest))
    if src.dtype != np.int64 or src.shape[0] != n or tuple(src.shape[1:]) != tuple(a.shape[2:]):
        return None
    src = src.reshape(n, -1)
    if np.any(src // max(d, 1) != np.arange(n)[:, None]):
        return None
    local = src % max(d, 1)
    s = a.shape[1]
    if local.shape[1] == d and np.array_equal(local, np.broadcast_to(np.arange(d), local.shape)):
        # output position j copies input position j (Flatten, most Reshapes): A_in is A, exactly
        return Relaxed({0: a.reshape(n, s, *shape[1:])}, zero_bias(a))
    local = torch.from_numpy(local)
    a_in, bias = scatter_sum(n, s, d, local, [a.reshape(n, s, -1)], x.mag.reshape(n, -1))
    return Relaxed({0: a_in.reshape(n, s, *shape[1:])}, bias)
