"""Specifications for the linear bounds: label margins (certify) and C·y − d (vnnlib).

:func:`spec_lower` is the entry point for both: a sound lower bound of ``C·y − d`` for every input
of each box, per sample and spec row, by CROWN (``alpha_steps = 0``) or α-CROWN. ``ort=True`` (the
default) proves theorems (a) and (b) (onnxruntime's float32 evaluation too), ``ort=False`` only (a).
A box the method cannot bound (an op refuses it, NaN) gives NaN rows: no information.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from verify.bounds.alpha import alpha_lower
from verify.bounds.crown import tensor_boxes
from verify.bounds.linear import Ctx, down, t64
from verify.guarantee import FLOAT32, REAL
from common.errors import ModelError

__all__ = ["spec_lower", "spec_ladder", "margin_lower", "margin_spec", "GUARANTEE", "ALPHA_STEPS"]

ALPHA_STEPS = 20

#: the record's guarantee for each setting of ``ort`` (verify/certify/header.py's names)
GUARANTEE = {True: FLOAT32, False: REAL}


def margin_spec(y: np.ndarray, k: int) -> np.ndarray:
    """C [N, K, K]: row j = e_y − e_j (the margin of label y over j); row y is zero."""
    n = len(y)
    c = np.zeros((n, k, k))
    c[np.arange(n), :, y] = 1.0
    c[:, np.arange(k), np.arange(k)] -= 1.0
    return c


def _lower(graph, lo, hi, c, ort, alpha_steps, deadline):
    ctx = Ctx(ort)
    boxes = tensor_boxes(graph, lo, hi, ctx)
    with torch.enable_grad():
        return alpha_lower(graph, boxes, c, ctx, alpha_steps, deadline=deadline).detach().numpy()


def spec_lower(model, lo, hi, c, d=None, ort: bool = True, alpha_steps: int = 0,
               timeout: float | None = None) -> np.ndarray:
    """Sound lower bound [N, S] (float64) of ``C·y − d`` over each box [lo_n, hi_n] (float32
    [N, ...]); c [N, S, K], d [N, S] or None. Boxes are cut by ``model.per_chunk`` (fixed batch)."""
    lo, hi = model._check_box(lo, hi)
    c = np.asarray(c, np.float64)
    deadline = None if timeout is None else time.monotonic() + timeout

    def bound(li, hi_i, ci):
        try:
            return _lower(model.graph, li, hi_i, ci, ort, alpha_steps, deadline)
        except ModelError:
            return np.full(ci.shape[:2], np.nan)

    def one(li, hi_i, ci):
        """A chunk's bounds; when the chunk fails (one sample overflows, say) each sample is
        bounded alone (repeated to the fixed batch size), so a sample's bound never depends on
        the other samples of its chunk (``check`` cuts its batches differently from ``certify``)."""
        low = bound(li, hi_i, ci)
        if len(li) < 2 or not np.isnan(low).all():
            return low

        def alone(a, j):
            return np.repeat(a[j:j + 1], len(a) if model.batch_size else 1, 0)

        return np.stack([bound(alone(li, j), alone(hi_i, j), alone(ci, j))[0] for j in range(len(li))])

    low = model.per_chunk(one, lo, hi, c)
    if d is not None:
        low = down(t64(low) - t64(np.asarray(d, np.float64))).numpy()
    return low


def margin_lower(model, lo, hi, y, ort: bool = True, alpha_steps: int = 0, timeout=None) -> np.ndarray:
    """Sound lower bound [N] of min_{j≠y} y_label − y_j over each box (NaN: no bound)."""
    y = np.asarray(y, np.int64)
    low = spec_lower(model, lo, hi, margin_spec(y, model.num_classes), None, ort, alpha_steps, timeout)
    low[np.arange(len(y)), y] = np.inf
    return low.min(axis=1)


def spec_ladder(model, lo, hi, c, d=None, ort: bool = True, timeout: float | None = None):
    """The linear rungs for a batch of boxes and spec rows: CROWN, then α-CROWN (within
    ``timeout`` seconds, measured from the call) for the boxes with a row not yet proved (> 0).
    Returns (lower [N, S] float64, method per box: "crown" or "alpha-crown", the rung whose bound is
    returned). Every bound returned is sound whatever the optimiser did."""
    deadline = None if timeout is None else time.monotonic() + timeout
    low = spec_lower(model, lo, hi, c, d, ort)
    method = ["crown"] * len(low)
    rest = np.nonzero(~(low > 0).all(axis=1))[0]
    left = None if deadline is None else deadline - time.monotonic()
    if len(rest) and (left is None or left > 0):
        dd = None if d is None else np.asarray(d)[rest]
        better = spec_lower(model, np.asarray(lo)[rest], np.asarray(hi)[rest], np.asarray(c)[rest], dd, ort,
                            ALPHA_STEPS, left)
        for k, i in enumerate(rest):
            if np.nan_to_num(better[k], nan=-np.inf).min() > np.nan_to_num(low[i], nan=-np.inf).min():
                low[i], method[i] = better[k], "alpha-crown"
    return low, method
