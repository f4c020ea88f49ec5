"""Witness replay in onnxruntime and witness records (JSON Lines).

A sample is ``falsified`` only when :meth:`OrtReplayer.confirm` accepts its witness x′: x′ is a
float32 array of the input's shape, ‖x′ − x‖∞ ≤ ε exactly (float64/rational check on the float32
values, no tolerance), x′ inside the input domain, and onnxruntime (CPU) on the ONNX file gives some
class a logit STRICTLY larger than the label's (so the label cannot be the argmax even under ties).
A witness file is one run like a certificate file: a header line (verify/certify/header.py, method ``pgd``,
guarantee ``witness``) first. Records carry the certificate base fields (DESIGN.md) plus ``witness`` (float32 values written with
``repr(float(v))``, which round-trips exactly) and ``witness_sha256`` (sha256 of the float32 C-order
bytes), and are written atomically (temp file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from verify.attack.box import inside_box, linf_distance
from verify.certify.certificates import header_line, json_line, record_to_line
from common.errors import CertificateError

__all__ = ["OrtReplayer", "sha256_f32", "witness_record", "write_jsonl_atomic", "read_jsonl",
           "witness_array"]


def sha256_f32(a: np.ndarray) -> str:
    """sha256 hex digest of the float32 C-order bytes of ``a``."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


class OrtReplayer:
    """Runs the ONNX file in plain onnxruntime on the CPU, the judge of every witness."""

    def __init__(self, path: str | Path):
        from common.runtime import ort_session

        self.session = ort_session(path)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float32 logits as onnxruntime computes them (common.runtime.ort_logits: in chunks of a
        fixed batch size, the last one padded, when the model has one)."""
        from common.runtime import ort_logits

        return ort_logits(self.session, x, batch_size)

    def confirm(self, x: np.ndarray, x_adv: np.ndarray, labels: np.ndarray, eps: float,
                domain: tuple[float, float]) -> np.ndarray:
        """Boolean mask: which witnesses x_adv[i] falsify sample (x[i], labels[i]) at ε."""
        ok = np.array([inside_box(x[i], x_adv[i], eps, domain) for i in range(len(x))], dtype=bool)
        if not ok.any():
            return ok
        z = self.logits(x_adv[ok])
        lab = labels[ok]
        zy = z[np.arange(len(lab)), lab]
        other = z.copy()
        other[np.arange(len(lab)), lab] = -np.inf
        ok[np.flatnonzero(ok)] = other.max(1) > zy
        return ok


def witness_record(*, index: int, x: np.ndarray, label: int, predicted: int, eps: float, status: str,
                   model_sha256: str, tool_version: str, witness: np.ndarray | None = None,
                   adv_predicted: int | None = None, method: str = "pgd",
                   domain: tuple[float, float] = (0.0, 1.0), n_total: int) -> dict:
    """One JSONL record: the certificate base fields, plus the witness for falsified samples.

    ``radius`` is 0 (the attack proves no robustness) and ``margin_lower`` is null; an attack run
    selects the first ``n_total`` samples (shard "0/1", verify/certify/header.py).
    """
    rec = {
        "index": int(index),
        "input_sha256": sha256_f32(x),
        "label": int(label),
        "predicted": int(predicted),
        "eps": float(eps),
        "status": status,
        "radius": 0.0,
        "margin_lower": None,
        "method": method,
        "guarantee": "witness",
        "model_sha256": model_sha256,
        "tool_version": tool_version,
        "domain": [float(domain[0]), float(domain[1])],
        "shard": "0/1",
        "n_total": int(n_total),
    }
    if witness is not None:
        w32 = np.ascontiguousarray(witness, dtype=np.float32)
        rec["witness"] = [float(v) for v in w32.ravel()]
        rec["witness_sha256"] = sha256_f32(w32)
        rec["witness_distance"] = linf_distance(x, w32)
        rec["adv_predicted"] = None if adv_predicted is None else int(adv_predicted)
    return rec


def witness_array(rec: dict, shape: tuple) -> np.ndarray:
    """The float32 witness of a record, checked against its sha256 (CertificateError if tampered)."""
    try:
        w = np.asarray(rec["witness"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise CertificateError(f"record {rec.get('index')} has no readable witness") from None
    w32 = w.astype(np.float32)
    if w32.size != int(np.prod(shape)) or not np.array_equal(w32.astype(np.float64), w):
        raise CertificateError(f"record {rec.get('index')}: witness is not {shape} float32 values")
    w32 = w32.reshape(shape)
    if sha256_f32(w32) != rec.get("witness_sha256"):
        raise CertificateError(f"record {rec.get('index')}: witness_sha256 does not match the witness")
    return w32


def write_jsonl_atomic(path: str | Path, header: dict, records) -> None:
    """Write the run's header line, then the records (validated by verify.certify.certificates) one per
    line to ``path`` via a temp file in the same folder + os.replace: ``path`` never exists
    half-written."""
    from common.outputs import atomic_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(header_line(header))
        for r in records:
            f.write(record_to_line(r))


def read_jsonl(path: str | Path) -> list[dict]:
    """Parse a JSON Lines file; CertificateError with the line number on a malformed line."""
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json_line(line, f"{path}:{n}")
            if not isinstance(rec, dict):
                raise CertificateError(f"{path}:{n}: not a JSON object")
            out.append(rec)
    return out
