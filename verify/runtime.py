"""The one onnxruntime configuration theorem (b) is about, and the one place sessions are made.

Theorem (b) (docs/SOUNDNESS.md) is a statement about onnxruntime's CPU execution provider running
the file's graph *node by node as written*: graph optimisations disabled
(``GraphOptimizationLevel.ORT_DISABLE_ALL``), so no Conv+Mul / Conv+BN / MatMul+Add fusion re-rounds
weights, no constant folding evaluates subgraphs in another order, and no node is replaced by a
contrib kernel. Every command that asks onnxruntime for a prediction or a replay (certify's
``predicted``, check, attack replay, the intermediate-value probes of the fast paths, props)
creates its session here, so the verdicts and their replay always agree.

A model given as bytes or a ModelProto is used as is; a path is read by onnxruntime itself (external
data beside it). Errors are one-line :class:`verify.errors.ModelError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from verify.errors import ModelError

__all__ = ["session_options", "ort_session", "ort_logits", "fixed_batch"]


def session_options(threads: int | None = None):
    """The pinned SessionOptions: CPU, graph optimisations off, quiet logging."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    return so


def ort_session(model, threads: int | None = None):
    """An onnxruntime CPU session with :func:`session_options` for a path, bytes or ModelProto."""
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        src, what = model.SerializeToString(), "the model"
    elif isinstance(model, (bytes, bytearray)):
        src, what = bytes(model), "the model"
    else:
        src, what = str(Path(model)), os.fspath(model)
    try:
        return ort.InferenceSession(src, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(f"onnxruntime cannot load {what}: {first}") from None


def fixed_batch(sess) -> int | None:
    """The session input's fixed batch size, or None when the batch dimension is dynamic."""
    shape = sess.get_inputs()[0].shape
    n0 = shape[0] if shape else None
    return n0 if isinstance(n0, int) and n0 > 0 else None


def ort_logits(sess, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """float32 outputs of the session's first output for rows ``x``, in chunks; a fixed batch size
    is honoured by padding the last chunk with copies of its last row (rows never interact in the
    graphs the verifier accepts, so padding does not change a row's value)."""
    inp = sess.get_inputs()[0]
    fixed = fixed_batch(sess)
    step = fixed or batch
    outs = []
    for s in range(0, len(x), step):
        xb = np.ascontiguousarray(x[s:s + step], dtype=np.float32)
        k = len(xb)
        if fixed and k < fixed:
            xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - k, 0)])
        outs.append(np.asarray(sess.run(None, {inp.name: xb})[0], dtype=np.float32)[:k])
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
