"""The one onnxruntime configuration theorem (b) is about, and the one place sessions are made.

Theorem (b) (docs/SOUNDNESS.md) is a statement about onnxruntime's CPU execution provider running
the file's graph *node by node as written*: graph optimisations disabled
(``GraphOptimizationLevel.ORT_DISABLE_ALL``), so no Conv+Mul / Conv+BN / MatMul+Add fusion re-rounds
weights, no constant folding evaluates subgraphs in another order, and no node is replaced by a
contrib kernel. Every command that asks onnxruntime for a prediction or a replay (certify's
``predicted``, check, attack replay, the intermediate-value probes of the fast paths, props, export's
parity check) creates its session here, so the verdicts and their replay always agree
(export/fast_ort.py, which no verdict uses, adds its custom-op library to these same options).

:func:`kernel_registry` lists the domains and names onnxruntime resolves as its own operators
(a model-local function there is not what runs: verify/front/loader.py refuses it).

A model given as bytes or a ModelProto is used as is; a path is read by onnxruntime itself (external
data beside it). Errors are one-line :class:`common.errors.ModelError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.errors import ModelError

__all__ = ["fixed_batch", "is_kernel_domain", "kernel_registry", "ort_logits", "ort_session", "session_options"]

#: domains onnxruntime resolves ops in itself (some only in other builds or execution providers),
#: in addition to those the installed build lists; any domain starting with a prefix counts too
ORT_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training", "ai.onnx.training",
    "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc", "com.microsoft.experimental",
    "com.microsoft.dml", "com.microsoft.extensions", "ai.onnx.contrib", "org.pytorch.aten",
})
ORT_DOMAIN_PREFIXES = ("ai.onnx", "com.microsoft", "com.ms.")


def session_options(threads: int | None = None):
    """The pinned SessionOptions: CPU, graph optimisations off, quiet logging."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4  # fatal only: failures reach the user as one-line ModelErrors
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


def kernel_registry() -> tuple[frozenset[str], frozenset[str]]:
    """``(domains, names)``: the domains in which onnxruntime resolves a node against its own
    operators before any model-local function (:data:`ORT_DOMAINS` and every domain of a schema or
    CPU kernel the installed onnxruntime registers, or ONNX defines), and the names of all those
    operators. onnxruntime's listing functions are not public API: ONNX's list and the constants
    remain when they are missing."""
    import onnx.defs

    pairs = [(s.domain, s.name) for s in onnx.defs.get_all_schemas()]
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as C

        pairs += [(s.domain, s.name) for s in C.get_all_operator_schema()]
        pairs += [(k.domain, k.op_name) for k in C.get_all_opkernel_def()]
    except (ImportError, AttributeError, RuntimeError):
        pass
    return ORT_DOMAINS | {d for d, _ in pairs}, frozenset(n for _, n in pairs)


def is_kernel_domain(domain: str, domains: frozenset[str]) -> bool:
    """True when onnxruntime may run its own operator for a node of ``domain`` (one of
    ``domains`` from :func:`kernel_registry`, or a vendor prefix of :data:`ORT_DOMAIN_PREFIXES`)."""
    d = "" if domain == "ai.onnx" else domain
    return d in domains or d.startswith(ORT_DOMAIN_PREFIXES)


def fixed_batch(sess) -> int | None:
    """The session input's fixed batch size, or None when the batch dimension is dynamic (symbolic);
    ModelError for a declared batch size <= 0 (no batch fits; verify/front/loader.py refuses it too)."""
    shape = sess.get_inputs()[0].shape
    n0 = shape[0] if shape else None
    if isinstance(n0, int) and n0 <= 0:
        raise ModelError(f"the model input's batch dimension is declared {n0}: it must be positive or dynamic")
    return n0 if isinstance(n0, int) else None


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
        try:
            out = sess.run(None, {inp.name: xb})[0]
        except Exception as e:  # onnxruntime raises its own exception types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ModelError(f"onnxruntime cannot run the model: {first}") from None
        outs.append(np.asarray(out, dtype=np.float32)[:k])
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
