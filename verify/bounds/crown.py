"""Linear bound propagation (CROWN / DeepPoly back-substitution) over the verifier's Graph.

``spec_lower(graph, lo, hi, C, ctx)``: for a batch of N input boxes and spec rows C [N, S, K] on the
graph output, a sound lower bound [N, S] (float64) of ``C·y`` over each box.

Method. Boxes of every tensor are computed forward (the ops' sound ``interval``); before an op that
relaxes its input (Relu, LeakyRelu, LinfDist: ``Op.wants_input_bounds``) the box of that input is
tightened by one back-substitution from the input itself (spec rows ±e_i for the coordinates that
are not already stable, at most ``max_refine`` of them and MAX_COEF coefficients; IBP otherwise), intersected with its
interval box. Under ``ctx.ort``, a tensor one op away from the graph input (value moves aside,
:func:`_one_op_from_input`) keeps its interval box: there the interval is already the op's exact
range with onnxruntime's float32 error added, which a back-substitution under ``ctx.ort`` would
only re-derive (without ``ctx.ort`` it can drop that float32 allowance, so it is still done);
skipping a tightening is always sound: the box stays the interval box. The final bound back-substitutes C from the output to the graph input: each op's
``relax(A, ins, out, ctx)`` (in its own op file) turns the coefficients A of its output into
coefficients of its inputs plus a sound bias (verify/bounds/linear.py: the claim holds for the
computed float64 coefficients; every rounding is charged to the bias). An op without ``relax`` (or
whose ``relax`` returns None) is concretised over its output box. What remains at the graph input
is concretised over the input box.

Guarantees (``ctx.ort``): False — theorem (a), the exact real function of the stored weights;
True — theorems (a) and (b): every op's output additionally carries onnxruntime's float32 error as
one more bounded input (a box of radius e around the exact op value, propagated linearly), so the
bound also holds for the float32 outputs of the pinned onnxruntime session at every float32 input of
the box. The interval boxes the relaxations use contain both the exact and onnxruntime's values
(verify/front/model.py), and a tightened box is computed under the same ``ctx``.
"""

from __future__ import annotations

import numpy as np
import torch

from verify.bounds.linear import Ctx, TBox, add_down, concretize, rescaled_err, t64
from common.errors import ModelError
from verify.front.graph import _run
from verify.ops._shape import MoveOp
from verify.ops.base import Box
from verify.bounds.rounding import down as down32
from verify.bounds.rounding import up as up32

__all__ = ["spec_lower", "tensor_boxes", "back_substitute", "MAX_REFINE"]

MAX_REFINE = 2048  # most coordinates of one tensor tightened by back-substitution (rows 2x this)
MAX_COEF = 30_000_000  # most float64 coefficients per sample of one tightening (rows x widest tensor)


class Boxes:
    """Interval boxes of the tensors (numpy float32, as ``Op.bound`` takes them) and their float64
    torch copies for the relaxations."""

    def __init__(self, graph, lo, hi):
        self.graph = graph
        self.np: dict[str, Box] = {graph.input_name: Box(np.asarray(lo, np.float32), np.asarray(hi, np.float32))}
        self._t: dict[str, TBox] = {}

    def arg(self, name: str) -> Box | None:
        if name == "":
            return None
        if name in self.graph.constants:
            return Box.point(self.graph.constants[name])
        return self.np[name]

    def t(self, name: str) -> TBox | None:
        if name == "":
            return None
        if name not in self._t:
            b = self.arg(name)
            if not np.issubdtype(np.asarray(b.lo).dtype, np.floating):
                return TBox(t64(b.lo.astype(np.float64)), t64(b.hi.astype(np.float64)))
            self._t[name] = TBox(t64(b.lo), t64(b.hi))
        return self._t[name]

    def set(self, name: str, box: Box) -> None:
        self.np[name] = box
        self._t.pop(name, None)


def _cut(coef: dict[str, torch.Tensor], bias: torch.Tensor, boxes: Boxes) -> torch.Tensor:
    """The bound of stopping here: every pending coefficient concretised over its tensor's box."""
    for name, a in coef.items():
        bias = add_down(bias, concretize(a, boxes.t(name)))
    return bias


def back_substitute(graph, boxes: Boxes, target: str, c: torch.Tensor, ctx: Ctx, cuts: bool = False) -> torch.Tensor:
    """Sound lower bound [N, S] of ``c·target`` (c [N, S, *shape of target]) over the boxes.

    ``cuts``: the result is the best, per spec row, of the bounds of stopping the back-substitution
    after each op (:func:`_cut`: at every step ``c·target ≥ Σ coef·t + bias`` holds for every value
    t of the pending tensors in their boxes, so concretising them there is a lower bound, and the
    maximum of lower bounds is one). Stopping at the output is the interval bound of ``c·y``;
    stopping before the last affine layer is the interval bound of the merged last layer. This keeps
    CROWN at least as tight as those where a relaxation is looser than the boxes (e.g. ℓ∞-dist layers
    of IBP-trained nets). Used for the final spec bound (:func:`spec_lower`, α-CROWN's final
    evaluation; α-CROWN optimises without them, for the slopes' gradient), not for the tightening
    of intermediate boxes (already intersected with their interval boxes). A NaN cut is ignored; a
    NaN final bound still raises."""
    idx = max(k for k, op in enumerate(graph.nodes) if target in op.outputs) if target != graph.input_name else -1
    coef: dict[str, torch.Tensor] = {target: c}
    bias = torch.zeros(c.shape[:2], dtype=torch.float64)
    best = _cut(coef, bias, boxes) if cuts else None
    for op in reversed(graph.nodes[: idx + 1]):
        out = op.outputs[0]
        if out not in coef:
            continue
        a = coef.pop(out)
        relax = getattr(op, "relax", None)
        step = None
        if relax is not None and bool(a.any()):  # NaN counts as non-zero, as in a != 0
            ins = [boxes.t(i) for i in op.inputs]
            step = _run(op, relax, (a, ins, boxes.t(out), ctx))
        if step is None:
            bias = add_down(bias, concretize(a, boxes.t(out)))
            continue
        bias = add_down(bias, step.bias)
        for i, a_in in step.parts.items():
            name = op.inputs[i]
            if name in graph.constants:
                bias = add_down(bias, concretize(a_in, boxes.t(name)))
            elif name in coef:
                s = coef[name] + a_in
                bias = add_down(bias, -rescaled_err(s, boxes.t(name).mag))
                coef[name] = s
            else:
                coef[name] = a_in
        if cuts and coef:
            best = torch.fmax(best, _cut(coef, bias, boxes))
    bias = _cut(coef, bias, boxes)
    if torch.isnan(bias).any():
        raise ModelError("a linear bound evaluated to NaN; cannot certify")
    return bias if best is None else torch.fmax(best, bias)


def _refine(graph, boxes: Boxes, name: str, ctx: Ctx, max_refine: int) -> None:
    """Tighten the box of tensor ``name`` by back-substitution on its unstable coordinates.

    Each sample refines its OWN unstable coordinates (rows ±e_i, padded with zero rows) and the
    limits are per sample, so a sample's bound never depends on the other samples of its batch
    (``check`` re-proves in batches of its own size)."""
    b = boxes.np[name]
    n = b.lo.shape[0]
    lo = b.lo.reshape(n, -1)
    hi = b.hi.reshape(n, -1)
    uns = (lo < 0) & (hi > 0)
    widest = max(int(np.prod(v.lo.shape[1:])) for v in boxes.np.values())
    counts = uns.sum(axis=1)
    uns &= ((counts <= max_refine) & (2 * counts * widest <= MAX_COEF))[:, None]
    k = int(uns.sum(axis=1).max()) if n else 0
    if k == 0:
        return
    d = lo.shape[1]
    rank = np.cumsum(uns, axis=1) - 1  # the row of each unstable coordinate within its sample
    smp, coord = np.nonzero(uns)
    row = rank[smp, coord]
    c = torch.zeros((n, 2 * k, d), dtype=torch.float64)
    ts, tr, tc = (torch.from_numpy(v) for v in (smp, row, coord))
    c[ts, tr, tc] = 1.0
    c[ts, k + tr, tc] = -1.0
    low = back_substitute(graph, boxes, name, c.reshape(n, 2 * k, *b.lo.shape[1:]), ctx).numpy()
    new_lo, new_hi = lo.copy(), hi.copy()
    new_lo[smp, coord] = np.maximum(lo[smp, coord], down32(low[smp, row]))
    new_hi[smp, coord] = np.minimum(hi[smp, coord], up32(-low[smp, k + row]))
    new_hi = np.maximum(new_hi, new_lo)  # an empty intersection cannot happen for sound bounds
    boxes.set(name, Box(new_lo.reshape(b.lo.shape), new_hi.reshape(b.hi.shape)))


def _one_op_from_input(graph, name: str) -> bool:
    """True when tensor ``name`` is computed from the graph input by ONE op with one variable
    input, apart from ops that only move values (MoveOp): its box is then the interval of one op
    over a box of independent coordinates, the op's exact range rounded outward for every op
    with a relaxation (affine maps, monotone or coordinatewise-max ops), so a back-substitution
    could only re-derive it. A heuristic for speed only: it decides where to tighten, never
    whether a box is sound."""
    producer = {o: op for op in graph.nodes for o in op.outputs}
    ops = 0
    while name != graph.input_name:
        op = producer.get(name)
        var = [] if op is None else [i for i in op.inputs if i and i not in graph.constants]
        if len(var) != 1:
            return False
        ops += not isinstance(op, MoveOp)
        if ops > 1:
            return False
        name = var[0]
    return True


def tensor_boxes(graph, lo, hi, ctx: Ctx, refine: bool = True, max_refine: int = MAX_REFINE) -> Boxes:
    """Boxes of every tensor: the ops' intervals, tightened at relaxed inputs (module docstring)."""
    boxes = Boxes(graph, lo, hi)
    for op in graph.nodes:
        if refine and getattr(op, "wants_input_bounds", False):
            x = op.inputs[0]
            if x != graph.input_name and x not in graph.constants and not (ctx.ort and _one_op_from_input(graph, x)):
                _refine(graph, boxes, x, ctx, max_refine)
        out = _run(op, op.bound, [boxes.arg(i) for i in op.inputs])
        for name, o in zip(op.outputs, out if isinstance(out, tuple) else (out,)):
            boxes.set(name, o)
    return boxes


def spec_lower(graph, lo, hi, c, ctx: Ctx | None = None, refine: bool = True, boxes: Boxes | None = None) -> np.ndarray:
    """Sound lower bound [N, S] (float64) of ``c·y`` (c [N, S, K], y the graph output) for every
    input in [lo, hi] (float32 [N, ...]). See the module docstring for which theorem ``ctx`` gives."""
    ctx = ctx or Ctx()
    boxes = boxes or tensor_boxes(graph, lo, hi, ctx, refine)
    return back_substitute(graph, boxes, graph.output_name, t64(c), ctx, cuts=True).detach().numpy()
