"""The verifier IR: a topologically sorted list of bound ops over named tensors, plus constants.

``Graph.nodes`` is what other packages walk (the torch evaluator of verify/attack, the certifier).
Each node is an :class:`verify.ops.base.Op` with fields:

* ``name``, ``op_type``, ``domain`` ("" default, "linf" ours)
* ``inputs`` / ``outputs``: tensor names ("" = missing optional input)
* ``attrs``: attribute dict (python values, tensors as numpy arrays)
* ``consts``: {input index: np.ndarray} for inputs that are graph constants (weights, shapes, axes)
* ``opset``: the model's opset of the node's domain

Every tensor name not in ``Graph.constants`` is produced by exactly one node or is the graph input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from common.errors import ModelError
from verify.ops.base import Box, Op


@dataclass
class Graph:
    input_name: str
    output_name: str
    nodes: list[Op]
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    # DESIGN.md calls ``m.graph`` "the topologically sorted list of bound op instances":
    # iterating / indexing / len() act on ``nodes``.
    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i):
        return self.nodes[i]

    def producer(self, tensor: str) -> Op | None:
        """The node that outputs ``tensor`` (None for the graph input or a constant)."""
        for op in self.nodes:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: str) -> list[Op]:
        return [op for op in self.nodes if tensor in op.inputs]


@dataclass
class NodeLipschitz:
    """Per node: its own bound (``local``: variable inputs counted as 1-Lipschitz) and the bound of
    its output w.r.t. the graph input (``cumulative``). math.inf = unbounded."""

    name: str
    op_type: str
    local: float
    cumulative: float


def toposort(nodes: list, available: set[str]) -> list:
    """Nodes (anything with ``inputs``/``outputs``/``name``) in dependency order; ModelError on a
    cycle or a tensor nobody produces. Stable: keeps file order when it is already valid."""
    done = set(available)
    done.add("")
    pending = list(nodes)
    out = []
    while pending:
        progressed = False
        rest = []
        for n in pending:
            if all(i in done for i in n.inputs):
                out.append(n)
                done.update(n.outputs)
                progressed = True
            else:
                rest.append(n)
        if not progressed:
            missing = sorted({i for n in rest for i in n.inputs if i not in done and
                              not any(i in m.outputs for m in rest)})
            what = f"undefined tensor(s) {', '.join(missing[:5])}" if missing else "a cycle"
            raise ModelError(f"the graph cannot be ordered: {what}")
        pending = rest
    return out


def _last_uses(g: Graph) -> dict[str, int]:
    last: dict[str, int] = {}
    for k, op in enumerate(g.nodes):
        for i in op.inputs:
            last[i] = k
    return last


#: what numpy raises when an op meets operands its reading did not foresee (shapes hidden from
#: ONNX shape inference, out-of-range indices): a model we cannot read, never a traceback
_NUMPY_ERRORS = (ValueError, IndexError, TypeError, RuntimeError, ZeroDivisionError, OverflowError)


def _run(op: Op, fn, args):
    """``fn(*args)`` for node ``op``; numpy's errors become one-line ModelErrors naming the node."""
    try:
        return fn(*args)
    except ModelError:
        raise
    except _NUMPY_ERRORS as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise op.fail(f"cannot evaluate it on these operands: {first}") from None


def _walk(g: Graph, first, constant, method: str, keep_all: bool) -> dict:
    """Run every node's ``method`` ("forward" or "bound") in order from ``first`` at the graph input,
    constants lifted by ``constant``; keeps every tensor, or frees each after its last use."""
    vals = {g.input_name: first}
    last = _last_uses(g)
    for k, op in enumerate(g.nodes):
        args = [None if i == "" else (constant(g.constants[i]) if i in g.constants else vals[i]) for i in op.inputs]
        out = _run(op, getattr(op, method), args)
        for name, v in zip(op.outputs, out if isinstance(out, tuple) else (out,)):
            vals[name] = v
        if not keep_all:
            for i in op.inputs:
                if last.get(i) == k and i != g.output_name and i in vals:
                    del vals[i]
    return vals if keep_all else {g.output_name: vals[g.output_name]}


def evaluate(g: Graph, x: np.ndarray, keep_all: bool = False) -> dict[str, np.ndarray]:
    """float32 values of the tensors (all of them if ``keep_all``, else only the output)."""
    return _walk(g, np.asarray(x, np.float32), lambda c: c, "forward", keep_all)


def propagate(g: Graph, box: Box, keep_all: bool = True) -> dict[str, Box]:
    """Sound boxes of the tensors for every input in ``box`` (see Op.interval's contract); each node
    through ``Op.bound``, which refuses NaN bounds and ±inf inputs of ops that are not inf_safe."""
    first = Box(np.asarray(box.lo, np.float32), np.asarray(box.hi, np.float32))
    return _walk(g, first, Box.point, "bound", keep_all)


def lipschitz_table(g: Graph) -> list[NodeLipschitz]:
    """Per-node Lipschitz bounds, composed over the graph in topological order (upward rounded).

    The graph input has bound 1, constants None; a node's cumulative bound is its ``lipschitz``
    applied to the cumulative bounds of its inputs, its local bound ``local_lipschitz()``."""
    cum: dict[str, float] = {g.input_name: 1.0}
    rows = []
    for op in g.nodes:
        in_l = [None if (i == "" or i in g.constants) else cum[i] for i in op.inputs]
        c = float(op.lipschitz(*in_l))
        local = float(op.local_lipschitz())
        if math.isnan(c) or c < 0 or math.isnan(local) or local < 0:
            raise ModelError(f"node {op.name!r}: invalid Lipschitz bound")
        for o in op.outputs:
            cum[o] = c
        rows.append(NodeLipschitz(op.name, op.op_type, local, c))
    return rows


def output_lipschitz(g: Graph) -> float:
    """Sound ℓ∞→ℓ∞ Lipschitz bound of the graph output (math.inf when unbounded)."""
    cum: dict[str, float] = {g.input_name: 1.0}
    for op in g.nodes:
        in_l = [None if (i == "" or i in g.constants) else cum[i] for i in op.inputs]
        c = float(op.lipschitz(*in_l))
        for o in op.outputs:
            cum[o] = c
    if g.output_name == g.input_name:
        return 1.0
    return cum.get(g.output_name, 0.0)


__all__ = ["Graph", "NodeLipschitz", "evaluate", "propagate", "lipschitz_table", "output_lipschitz", "toposort"]
