"""The two guarantees a proof can be demanded to hold for (docs/SOUNDNESS.md, "Guarantees: real or float32").

- ``real``: theorem (a) — the exact real function of the stored float32 weights, for every real
  input of the ball/box. The verifier may use its tighter exact-function bounds (linear bounds
  without onnxruntime's float32 error, the chain's Lipschitz ball margin without e′, the merged
  last layer without onnxruntime's Gemm error).
- ``float32``: theorems (a) AND (b) — also onnxruntime's float32 evaluation (the pinned session of
  common/runtime.py) at every float32 input of the ball/box. The default.

``certify`` and ``vnnlib`` take ``--guarantee`` (``audit`` certifies under ``float32``: its soundness
alarm compares certificates with onnxruntime's witnesses); a certificate file states it in its header
and in every record, and ``check`` re-proves each record under it. One vocabulary, here.
"""

from __future__ import annotations

from common.errors import LinfVerifyError

__all__ = ["REAL", "FLOAT32", "DEFAULT", "DESCRIPTIONS", "check_guarantee", "with_ort"]

REAL = "real"
FLOAT32 = "float32"
DEFAULT = FLOAT32
DESCRIPTIONS = {
    REAL: "theorem (a): the exact real function of the stored weights, every real input of the ball",
    FLOAT32: "theorems (a) and (b): also onnxruntime's float32 evaluation at every float32 input of the ball",
}


def check_guarantee(value) -> str:
    """``value`` if it names a guarantee, else a one-line LinfVerifyError (exit code 2)."""
    if value not in DESCRIPTIONS:
        raise LinfVerifyError(f"--guarantee must be {REAL} or {FLOAT32}, got {value!r}")
    return value


def with_ort(guarantee: str) -> bool:
    """Whether bounds under ``guarantee`` must also cover onnxruntime's float32 evaluation
    (``ort`` of verify/bounds/spec.py and verify/bounds/linear.py ``Ctx``)."""
    return check_guarantee(guarantee) == FLOAT32
