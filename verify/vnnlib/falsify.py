"""Searching a VNN-LIB case for a witness (``sat``), judged by onnxruntime.

The search is the attack core's APGD (verify/attack/pgd.py) with the property's own goal: one batch
row per disjunct, each maximising the *slack* of its conjunction, ``min over its atoms of
(r − c·(y, x))`` (≥ 0, > 0 for strict atoms, means the conjunction holds), over the case's
float32 *inner* box (every float32 point of it satisfies the bounds as written, exactly; see
verify/vnnlib/spec.py). Inputs enter the atoms through the model's outputs extended with the
flattened input, so atoms over X and Y are one linear map.

Nothing the torch model says is trusted: a candidate becomes a :class:`Witness` only when
onnxruntime (the pinned session of common/runtime.py, fixed batch sizes honoured) evaluated at the
float32 point gives outputs that satisfy some disjunct exactly (rational arithmetic on the float32
values) and the point lies in the case's box exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from verify.attack.pgd import apgd
from common.runtime import ort_logits
from verify.vnnlib.cases import Case, to_float

__all__ = ["Witness", "find_witness"]


@dataclass
class Witness:
    """A float32 input ``x`` (flat) and onnxruntime's float32 outputs ``y`` at it, satisfying
    disjunct ``disjunct`` of case ``case``."""

    x: np.ndarray
    y: np.ndarray
    case: int
    disjunct: int


def _goal(case: Case, n_y: int, n_x: int):
    """(A [D, m, n_y + n_x], r [D, m], strict [D, m], padded [D, m]) as float32 torch tensors: the
    disjuncts' atoms, each scaled to largest coefficient 1, padded to m rows (padding rows, and
    atoms whose right-hand side is beyond the float range, never bind)."""
    d = len(case.disjuncts)
    m = max(1, max(len(c) for c in case.disjuncts))
    a = np.zeros((d, m, n_y + n_x), np.float64)
    r = np.full((d, m), np.inf)
    strict = np.zeros((d, m), bool)
    for i, conj in enumerate(case.disjuncts):
        for j, atom in enumerate(conj):
            scale = max(abs(c) for _, c in atom.y + atom.x)  # rows of norm 1: no float overflow
            for k, c in atom.y:
                a[i, j, k] = to_float(c / scale)
            for k, c in atom.x:
                a[i, j, n_y + k] = to_float(c / scale)
            r[i, j], strict[i, j] = to_float(atom.rhs / scale), atom.strict
    t = torch.from_numpy
    with np.errstate(over="ignore"):  # a right-hand side beyond float32 is ±inf: never binds, or never met
        return t(a.astype(np.float32)), t(r.astype(np.float32)), t(strict), t(np.isinf(r))


def _slack(z, rows, a, r):
    """[B, m] slack r − A·z of each row's disjunct (z: outputs ++ flat input)."""
    return r[rows] - torch.einsum("bmv,bv->bm", a[rows], z)


def find_witness(tg, session, case: Case, case_index: int, deadline: float, *, steps: int = 100,
                 restarts: int = 4, seed: int = 0, batch: int = 64) -> tuple[Witness | None, bool]:
    """(witness or None, finished): ``finished`` is False when the deadline (time.monotonic())
    stopped the search before its ``restarts`` runs were done. ``tg``: the torch model
    (verify.attack.torch_graph.TorchGraph); ``session``: the onnxruntime session of the file."""
    lo, hi = case.inner_box()
    if np.any(lo > hi) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None, True  # no float32 point in the box (or none we can represent)
    shape = tuple(tg.input_shape)
    n_x = lo.size
    lo_t, hi_t = (torch.from_numpy(v.reshape(shape)) for v in (lo, hi))
    mid = torch.minimum(torch.maximum(lo_t + (hi_t - lo_t) / 2, lo_t), hi_t)
    uses_x = any(atom.x for conj in case.disjuncts for atom in conj)
    with torch.no_grad():
        n_y = tg(mid[None]).shape[1]
    a, r, strict, pad = _goal(case, n_y, n_x if uses_x else 0)

    def model(xa):
        z = tg(xa)
        return torch.cat([z, xa.flatten(1)], 1) if uses_x else z

    def loss(z, rows, _t):
        return _slack(z, rows, a, r).amin(1)

    def success(z, rows):
        s = _slack(z, rows, a, r)
        return (pad[rows] | torch.where(strict[rows], s > 0, s >= 0)).all(1)

    n_d = len(case.disjuncts)
    for run in range(restarts):
        if time.monotonic() >= deadline:
            return None, False
        gen = torch.Generator().manual_seed(seed + run)
        for s in range(0, n_d, batch):
            rows = torch.arange(s, min(n_d, s + batch))
            b = len(rows)
            xa, found = apgd(model, mid.expand(b, *shape).clone(), rows, lo_t.expand(b, *shape),
                             hi_t.expand(b, *shape), loss=loss, success=success, steps=steps,
                             generator=gen, random_start=run > 0, deadline=deadline)
            for i in torch.nonzero(found).flatten().tolist():
                w = replay(session, case, case_index, xa[i].detach().numpy().astype(np.float32))
                if w is not None:
                    return w, True
    return None, True


def replay(session, case: Case, case_index: int, x: np.ndarray, outer: bool = False) -> Witness | None:
    """The Witness at float32 ``x`` if onnxruntime's outputs there satisfy the case exactly and
    ``x`` lies in the box as written (``outer``: in the outward-rounded float32 box)."""
    x = np.ascontiguousarray(x, np.float32)
    if not case.contains(x.ravel(), outer):
        return None
    y = ort_logits(session, x[None])[0]
    k = case.satisfied_by(y, x.ravel())
    return None if k is None else Witness(x.ravel().copy(), y.ravel().copy(), case_index, k)
