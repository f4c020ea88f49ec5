"""Per-sample semantics: a static analysis proving that row i of the output depends only on row i of
the input (docs/SOUNDNESS.md, "Per-sample semantics").

Certificates are about one sample, but the verifier bounds a whole batch at once (and pads a short
chunk of a fixed-batch model with copies of its last row). That is sound only if the graph never
mixes rows: a ``Softmax(axis=0)`` head, a reduction over the batch axis, a Gather/Slice/Concat on
it, a per-row constant broadcast against it... would make one sample's box (and its onnxruntime
output) depend on the other samples. :func:`check_per_sample` refuses such graphs at load time.

Abstract value of each tensor (one per tensor, in topological order):

* :data:`FREE`: its value does not depend on the input (constants, and shape arithmetic that does
  not involve the batch size N);
* ``Rows(k)``: axis k has extent N and every element with index i on axis k depends only on row i
  of the graph input; the extents of the other axes do not depend on N;
* ``Dims(mask)``: an integer tensor computed from shapes (``Shape`` of a ``Rows`` tensor...):
  ``mask`` (same shape as the value) marks the elements equal to N; the others do not depend on N.

The graph input is ``Rows(0)``; the output must be ``Rows(0)``. Each op class decides its output
with ``Op.batch_axis(flow)`` (default: refuse), returning an abstract value or a string naming what
couples the rows. An op whose inputs are all FREE gives FREE without asking it. Shapes and values
come from one float32 evaluation on zeros (the dry run's batch size). A model with a fixed batch
size of 1 always runs one sample alone, so it is per-sample whatever its graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ModelError
from verify.front.graph import Graph, evaluate


class _Free:
    def __repr__(self) -> str:
        return "FREE"


FREE = _Free()  # the abstract value of tensors that do not depend on the input


@dataclass(frozen=True)
class Rows:
    """The batch axis is ``axis`` (see the module docstring)."""

    axis: int


@dataclass(frozen=True, eq=False)
class Dims:
    """An integer tensor of shape arithmetic; ``mask`` marks the elements equal to the batch size."""

    mask: np.ndarray


@dataclass
class Flow:
    """What ``Op.batch_axis`` sees: per input its abstract value (None = missing optional input), its
    shape and value in the dry run; the output's shape; the model's fixed batch size (None if dynamic)."""

    states: list
    shapes: list
    values: list
    out_shape: tuple
    fixed_batch: int | None

    def rows(self, i: int) -> int | None:
        """The batch axis of input ``i``, or None when it is not a ``Rows`` tensor."""
        s = self.states[i] if i < len(self.states) else None
        return s.axis if isinstance(s, Rows) else None

    def free(self, *idx: int) -> bool:
        """True when every listed input (all inputs after the first when none listed) is FREE or missing."""
        idx = idx or tuple(range(1, len(self.states)))
        return all(i >= len(self.states) or self.states[i] in (None, FREE) for i in idx)

    def rank(self, i: int) -> int:
        return len(self.shapes[i])


def coupled(op, what: str) -> str:
    """The reason string of a refusal: ``"<op type> <what>"``."""
    return f"{op.describe()} {what}"


def keep_rows0(op, f: Flow):
    """Ops that compute each sample separately along axis 0 (Conv, pooling, BN, LinfDist...): input
    0 must carry the batch on axis 0, every other input must be FREE."""
    if f.rows(0) != 0 or not f.free():
        return coupled(op, "needs the batch on axis 0 of X and constant parameters")
    return Rows(0)


def same_as_input(op, f: Flow):
    """Ops whose output is input 0 unchanged up to dtype (Identity, Dropout, Cast)."""
    if not f.free():
        return coupled(op, "with a variable extra input")
    return f.states[0]


def elementwise(op, f: Flow):
    """Numpy broadcasting: every variable input's batch axis must land on one output axis, and every
    FREE input must have extent 1 there (a per-row constant would tie a sample to its position)."""
    out_rank = len(f.out_shape)
    axes = set()
    for i, s in enumerate(f.states):
        if isinstance(s, Dims):
            return coupled(op, "computes with the batch size")
        if isinstance(s, Rows):
            axes.add(s.axis + out_rank - f.rank(i))
    if len(axes) != 1:
        return coupled(op, "combines tensors whose batch axes differ")
    (a,) = axes
    for i, s in enumerate(f.states):
        j = a - (out_rank - f.rank(i)) if s == FREE else -1
        if j >= 0 and f.shapes[i][j] != 1:
            return coupled(op, f"broadcasts a constant of extent {f.shapes[i][j]} along the batch axis")
    return Rows(a)


def reduce_rows(op, f: Flow, axes, keepdims: bool):
    """Reductions over ``axes`` (normalised, input 0's rank): the batch axis must not be reduced."""
    k = f.rows(0)
    if k is None or not f.free():
        return coupled(op, "on a tensor without a batch axis")
    if k in axes:
        return coupled(op, f"axes={sorted(axes)} reduces over the batch axis")
    return Rows(k if keepdims else k - sum(1 for a in axes if a < k))


def shape_rows(op, f: Flow, touched, out_axis):
    """Shape ops on a ``Rows`` input 0 (index arguments FREE): refuse when the op ``touched`` the
    batch axis (a set of input axes), else the batch moves to ``out_axis(k)``."""
    k = f.rows(0)
    if k is None or not f.free():
        return coupled(op, "moves data across the batch with a variable index")
    if k in touched:
        return coupled(op, f"acts on the batch axis (axis {k})")
    return Rows(out_axis(k))


def dims_through(op, f: Flow, data=(0,)):
    """A shape op applied to ``Dims`` (shape arithmetic): the op's own forward, run on the masks of
    the ``data`` inputs (FREE data: all False) with the other inputs' values, gives the new mask."""
    args = []
    for i, (s, v) in enumerate(zip(f.states, f.values)):
        if i in data and isinstance(s, Dims):
            args.append(s.mask)
        elif i in data and s == FREE:
            args.append(np.zeros(np.shape(v), bool))
        elif s in (None, FREE):
            args.append(v)
        else:
            return coupled(op, "mixes shape arithmetic with data")
    return Dims(np.asarray(op.forward(*args)).astype(bool))


def _refuse(op, why: str) -> ModelError:
    return ModelError(f"node {op.name!r} ({why}) mixes rows of the batch: only per-sample graphs are certified")


def check_per_sample(g: Graph, input_dims: list[int], fixed_batch: int | None) -> None:
    """ModelError naming the first node through which one sample's output could depend on another
    row of the batch (or on the batch size); None when the graph is per-sample."""
    if fixed_batch == 1:
        return
    n = fixed_batch or 1
    vals = evaluate(g, np.zeros([n] + list(input_dims), np.float32), keep_all=True)
    vals.update(g.constants)
    state: dict[str, object] = {g.input_name: Rows(0)}
    for op in g.nodes:
        states = [None if t == "" else state.get(t, FREE) for t in op.inputs]
        if all(s in (None, FREE) for s in states):
            out = FREE
        else:
            f = Flow(states, [None if t == "" else tuple(np.shape(vals[t])) for t in op.inputs],
                     [None if t == "" else vals[t] for t in op.inputs],
                     tuple(np.shape(vals[op.outputs[0]])), fixed_batch)
            out = op.batch_axis(f)
            if isinstance(out, str):
                raise _refuse(op, out)
            if isinstance(out, Dims) and not out.mask.any():
                out = FREE
            if isinstance(out, Rows) and not 0 <= out.axis < len(f.out_shape):
                raise _refuse(op, coupled(op, "loses the batch axis"))
        for t in op.outputs:
            state[t] = out
    if state.get(g.output_name) != Rows(0):
        raise ModelError("the output's rows are not the input's samples: only per-sample graphs are certified")


__all__ = ["FREE", "Rows", "Dims", "Flow", "check_per_sample", "coupled", "elementwise", "keep_rows0",
           "same_as_input", "reduce_rows", "shape_rows", "dims_through"]
