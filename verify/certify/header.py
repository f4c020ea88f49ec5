"""One file, one run: the header line of a certificate (or witness) file and the rules it imposes.

The first line of every file ``certify`` or ``attack`` writes is a JSON object with
``"format": FORMAT`` stating the run once (docs/SOUNDNESS.md, "One file, one run"):

- ``model_sha256``: the model's identity (``verify.front.loader.model_identity``);
- ``data_sha256``, ``n_data``: the data's identity, :func:`data_sha256` of ALL samples of the data
  set / split the run read (before any selection), and their number;
- ``eps``, ``domain`` [lo, hi], ``method`` (auto | ibp | lipschitz for ``certify``, pgd for
  ``attack``) and ``guarantee`` (what a ``certified`` record proves, :data:`GUARANTEES`: ``real`` or
  ``float32`` as demanded by ``--guarantee``, verify/guarantee.py; ``witness`` for ``attack``);
- ``selection``: ``limit`` (null = all), ``shard`` "I/N" and ``n_total``; the selected indices are
  DERIVED from it (:func:`select_indices`: the first ``limit`` samples, then every N-th from I), so
  ``check`` knows exactly which records the file must hold.

Every record must agree with the header (:func:`disagreement`): same model, eps, domain, shard,
n_total and guarantee, a method the run's method may report, a status the run may produce.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from common.errors import CertificateError, LinfVerifyError
from verify.guarantee import DESCRIPTIONS

__all__ = ["FORMAT", "GUARANTEES", "RECORD_METHODS", "data_sha256", "parse_shard", "check_eps", "check_limit", "select_indices",
           "make_header", "parse_header", "disagreement", "header_selection"]

FORMAT = "linfverify-run/1"
# what the run's `certified` records prove (docs/SOUNDNESS.md, theorems (a) and (b); verify/guarantee.py)
GUARANTEES = {
    **{g: f"certified: {d}" for g, d in DESCRIPTIONS.items()},
    "witness": "no robustness claim; falsified records carry witnesses onnxruntime replays",
}
# the methods a record may name, and the statuses it may have, per run method
RECORD_METHODS = {"auto": ("ibp", "lipschitz", "crown", "alpha-crown"), "ibp": ("ibp",), "lipschitz": ("lipschitz",),
                  "crown": ("crown",), "alpha-crown": ("crown", "alpha-crown"), "pgd": ("pgd",)}
_STATUSES = {"pgd": ("falsified", "misclassified", "unknown")}
_CERTIFY_STATUSES = ("certified", "not_certified", "misclassified", "unknown")
_KEYS = ("format", "model_sha256", "data_sha256", "n_data", "eps", "domain", "method", "guarantee",
         "selection", "tool_version")


def data_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 hex of the data: every sample's float32 C-order bytes (as the record hashes are),
    in order, followed by the labels as int64 little-endian."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None -> (0, 1). LinfVerifyError otherwise."""
    if text is None:
        return 0, 1
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() and len(p.strip()) < 19 for p in parts):
        raise LinfVerifyError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    i, n = int(parts[0]), int(parts[1])
    if not 0 <= i < n:
        raise LinfVerifyError(f"--shard {text}: need 0 <= I < N")
    return i, n


def check_eps(eps, flag: str = "--eps") -> float:
    """``--eps`` means the same in every command: a finite ℓ∞ radius ≥ 0 (0: the sample itself)."""
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise LinfVerifyError(f"{flag} must be a finite number ≥ 0, got {eps!r}")
    return float(eps)


def check_limit(limit: int | None) -> None:
    """``--limit`` means the same in every command: the first N ≥ 1 samples, None = all (0 is refused:
    a run of nothing proves nothing and an accuracy of 0/0 is not 0 %)."""
    if limit is not None and not limit >= 1:
        raise LinfVerifyError(f"--limit must be ≥ 1 (leave it out for all samples), got {limit}")


def select_indices(n_data: int, limit: int | None, shard: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(indices, n_total): the first ``limit`` samples (all if None), then every N-th from I."""
    if limit is not None and limit < 0:
        raise LinfVerifyError(f"--limit must be >= 0, got {limit}")
    n_total = n_data if limit is None else min(limit, n_data)
    i, n = shard
    return np.arange(i, n_total, n, dtype=np.int64), n_total


def make_header(*, model_sha256: str, data_sha256: str, n_data: int, eps: float, domain, method: str,
                guarantee: str, limit: int | None, shard: str, n_total: int, tool_version: str) -> dict:
    """The header object of a run (validated)."""
    h = {"format": FORMAT, "model_sha256": model_sha256, "data_sha256": data_sha256, "n_data": int(n_data),
         "eps": float(eps), "domain": [float(domain[0]), float(domain[1])], "method": method,
         "guarantee": guarantee,
         "selection": {"limit": None if limit is None else int(limit), "shard": shard, "n_total": int(n_total)},
         "tool_version": tool_version}
    return parse_header(h, where="header to write")


def _hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def parse_header(obj: Any, *, where: str = "header") -> dict:
    """Validate a decoded header; CertificateError (one line) on any defect."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CertificateError(f"{where}: the first line must be the run header (format {FORMAT!r}); "
                               "an empty file or a file without it is not a certificate file")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise CertificateError(f"{where}: header misses field(s) {', '.join(missing)}")
    extra = sorted(set(obj) - set(_KEYS))
    if extra:
        raise CertificateError(f"{where}: header has unknown field(s) {', '.join(extra)}")
    if not (_hex64(obj["model_sha256"]) and _hex64(obj["data_sha256"])):
        raise CertificateError(f"{where}: model_sha256 and data_sha256 must be sha256 hex digests")
    eps, dom = obj["eps"], obj["domain"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise CertificateError(f"{where}: eps must be a finite number >= 0")
    if not (isinstance(dom, list) and len(dom) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                           and math.isfinite(v) for v in dom) and dom[0] < dom[1]):
        raise CertificateError(f"{where}: domain must be [lo, hi] with lo < hi")
    if obj["method"] not in RECORD_METHODS:
        raise CertificateError(f"{where}: unknown method {obj['method']!r}")
    if obj["guarantee"] not in GUARANTEES:
        raise CertificateError(f"{where}: unknown guarantee {obj['guarantee']!r}")
    if (obj["guarantee"] == "witness") != (obj["method"] == "pgd"):
        raise CertificateError(f"{where}: guarantee {obj['guarantee']!r} is not one a {obj['method']!r} run states")
    sel = obj["selection"]
    if not (isinstance(sel, dict) and set(sel) == {"limit", "shard", "n_total"}):
        raise CertificateError(f"{where}: selection must be {{limit, shard, n_total}}")
    if not (_nonneg_int(obj["n_data"]) and _nonneg_int(sel["n_total"])
            and (sel["limit"] is None or _nonneg_int(sel["limit"]))):
        raise CertificateError(f"{where}: n_data, n_total and limit must be non-negative integers")
    try:
        parse_shard(sel["shard"] if isinstance(sel["shard"], str) else "?")
    except LinfVerifyError:
        raise CertificateError(f"{where}: shard must be 'I/N' with 0 <= I < N") from None
    if not isinstance(obj["tool_version"], str):
        raise CertificateError(f"{where}: tool_version must be a string")
    out = dict(obj)
    out["eps"], out["domain"] = float(eps), [float(dom[0]), float(dom[1])]
    return out


def header_selection(header: dict) -> tuple[np.ndarray, int]:
    """The indices the header's selection names, derived from ``n_data`` (CertificateError if the
    stated n_total does not follow from it)."""
    sel = header["selection"]
    idx, n_total = select_indices(header["n_data"], sel["limit"], parse_shard(sel["shard"]))
    if n_total != sel["n_total"]:
        raise CertificateError(f"header: n_total {sel['n_total']} does not follow from limit "
                               f"{sel['limit']} and {header['n_data']} samples")
    return idx, n_total


def disagreement(rec: dict, header: dict) -> str | None:
    """Why a (parsed) record does not belong to the header's run, or None."""
    sel = header["selection"]
    want = {"model_sha256": header["model_sha256"], "eps": header["eps"], "domain": header["domain"],
            "shard": sel["shard"], "n_total": sel["n_total"], "guarantee": header["guarantee"]}
    for k, v in want.items():
        if rec.get(k) != v:
            return f"{k} is {rec.get(k)!r}, the run's header says {v!r}"
    if rec["method"] not in RECORD_METHODS[header["method"]]:
        return f"method {rec['method']!r} is not one a {header['method']!r} run reports"
    if rec["status"] not in _STATUSES.get(header["method"], _CERTIFY_STATUSES):
        return f"status {rec['status']!r} is not one a {header['method']!r} run writes"
    return None
