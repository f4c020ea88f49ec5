"""``check``: re-verify a certificate file from the model file and the data, independently.

Independent of the code path that wrote it: the model hash is recomputed from the file bytes, the
input hash and label from the data, the prediction with onnxruntime (not our forward), and every
claim is re-proven from a fresh model load with ONE direct evaluation per bound (no bisection):

- ``certified`` at ε: the record's method proves the closed ε-ball (IBP margin > 0, or
  m0 − 2Lε > 0 for ``lipschitz``), and the claimed radius r ≥ ε is re-proven by one of: IBP of the
  closed r-ball, r ≤ m0/(2L), or r ≤ ε + m_ε/(2L);
- ``not_certified``: predicted = label, r ≤ ε, r re-proven as above (when r > 0), and the record's
  method must NOT prove ε (a tampered ``certified`` → ``not_certified`` is caught);
- ``misclassified``: onnxruntime's prediction ≠ label (radius 0 is checked by the parser);
- ``falsified``: the witness replays in onnxruntime: float32, finite, in the domain,
  ‖x′ − x‖∞ ≤ ε exactly (rational comparison), predicted ≠ label;
- ``margin_lower`` may not exceed the re-computed bound of its method (up to 1e-6 relative);
- indices unique, inside the data, and covering exactly the selection each record names
  (``shard``/``n_total``).

Any mismatch raises ``CertificateError`` naming the count and the first few.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from typing import Any

import numpy as np

from verify import margins
from verify.certificates import read_records
from verify.certify import propagate_boxes, pair_lipschitz_of
from verify.errors import CertificateError, ModelError
from verify.loader import model_identity
from verify.runtime import ort_logits, ort_session

__all__ = ["run_check", "ort_predict"]

_TOL = 1e-6
MAX_LISTED = 5


def ort_predict(model_path, x: np.ndarray, batch: int = 256, sess=None) -> np.ndarray:
    """argmax of onnxruntime's float32 logits (pinned session, verify/runtime.py), first index on ties."""
    sess = sess or ort_session(model_path)
    out = ort_logits(sess, x, batch)
    return np.argmax(out, axis=1) if len(out) else np.zeros(0, np.int64)


class _Prover:
    """Direct, single-evaluation bounds for a batch of samples with per-sample ε."""

    def __init__(self, model, model_path):
        self.model = model
        self.sess = ort_session(model_path)
        self.lip = float(model.lipschitz())
        self.affine = model.last_affine()
        self.pair = pair_lipschitz_of(model, self.affine)
        from verify.fastpath import ChainBound

        self.chain = ChainBound.build(model)

    def lipv(self, y):
        return self.lip if self.pair is None else np.minimum(self.lip, self.pair[y])

    def m0(self, x, y, eps, domain) -> tuple[np.ndarray, np.ndarray]:
        """(m0, Lipschitz ball margin). m0: lower bound of the exact margin at x, the better of the
        degenerate-box interval and, for 1-Lipschitz chains, the float32 forward minus its proven
        error. Ball margin: as the certifier defines it (for chains it also subtracts
        onnxruntime's float32 error e′ on the ball, docs/SOUNDNESS.md)."""
        m = self.ibp(x, y, np.zeros(len(y)), domain)
        ball = margins.lipschitz_margin(m, self.lipv(y), eps)
        if self.chain is not None:
            z, e, e_ball = self.chain.forward_with_error(x, eps)
            m_chain, ball = margins.chain_margins(margins.box_margin(z, z, y), e, e_ball, self.lipv(y), eps)
            m = np.fmax(m, m_chain)
        return m, ball

    def ibp(self, x, y, eps, domain) -> np.ndarray:
        lo, hi = margins.input_box(x, eps, domain)
        try:
            zlo, zhi = self.model.interval(lo, hi)
            m = margins.box_margin(zlo, zhi, y)
            if self.affine is not None:
                boxes = propagate_boxes(self.model, lo, hi)
                hlo, hhi = boxes[self.affine.input_name]
                m = np.fmax(m, margins.merged_margin(self.affine.weight, self.affine.bias, hlo, hhi, y))
            return m
        except ModelError:
            return np.full(len(y), np.nan)


def _coverage(records) -> list[str]:
    """Missing/unexpected indices w.r.t. the selections the records name (shard, n_total)."""
    want: set[int] = set()
    named = [r for r in records if "shard" in r and "n_total" in r]
    for sh, n_total in {(r["shard"], r["n_total"]) for r in named}:
        i, n = (int(v) for v in sh.split("/"))
        want.update(range(i, n_total, n))
    have = {r["index"] for r in named}
    out = []
    missing, extra = sorted(want - have), sorted(have - want)
    if missing:
        out.append(f"{len(missing)} selected index(es) have no record (first: {missing[:5]})")
    if extra:
        out.append(f"records for indices outside their selection: {extra[:5]}")
    return out


def _linf_within(w: np.ndarray, x: np.ndarray, eps: float) -> bool:
    """Exact test ‖w − x‖∞ ≤ eps for float32 arrays (float64 screen, rationals near the edge)."""
    d = np.abs(w.astype(np.float64) - x.astype(np.float64))
    near = np.nonzero(d > eps * (1 - 1e-9) - 1e-300)[0]
    fe = Fraction(eps)
    return all(abs(Fraction(float(w.flat[k])) - Fraction(float(x.flat[k]))) <= fe for k in near)


def run_check(certs, model_path, data, *, data_dir=None, split: str = "test",
              batch_size: int = 256) -> dict[str, Any]:
    """Re-verify ``certs``; returns a summary dict, raises CertificateError on any mismatch."""
    from verify.datasets import load_arrays
    from verify.model import load_model

    records = read_records(certs)
    if not os.path.isfile(model_path):
        raise ModelError(f"model file not found: {model_path}")
    sha = model_identity(model_path)
    model = load_model(model_path)
    if model.sha256 != sha:
        raise ModelError(f"{model_path} changed while it was being loaded")
    x, y = load_arrays(data, split, data_dir)
    bad: list[str] = []
    good = []
    for r in records:
        i = r["index"]
        if r["model_sha256"] != sha:
            bad.append(f"index {i}: model_sha256 does not match {os.path.basename(str(model_path))}")
        elif i >= len(x):
            bad.append(f"index {i}: outside the data ({len(x)} samples)")
        elif r["input_sha256"] != hashlib.sha256(np.ascontiguousarray(x[i]).tobytes()).hexdigest():
            bad.append(f"index {i}: input_sha256 does not match the data")
        elif r["label"] != int(y[i]):
            bad.append(f"index {i}: label {r['label']} but the data says {int(y[i])}")
        else:
            good.append(r)
    bad += _coverage(records)
    prover = _Prover(model, model_path)
    for s in range(0, len(good), batch_size):
        bad += _check_batch(good[s:s + batch_size], x, model_path, prover)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    if bad:
        listed = "; ".join(bad[:MAX_LISTED])
        raise CertificateError(f"{len(bad)} mismatch(es) in {certs}: {listed}")
    return {"ok": True, "n": len(records), "counts": counts, "model_sha256": sha,
            "lipschitz": prover.lip}


def _check_batch(recs, x, model_path, prover) -> list[str]:
    idx = np.array([r["index"] for r in recs], dtype=np.int64)
    xb = np.ascontiguousarray(x[idx])
    yb = np.array([r["label"] for r in recs], dtype=np.int64)
    eps = np.array([r["eps"] for r in recs])
    rad = np.array([r["radius"] for r in recs])
    dom = [tuple(r.get("domain", (0.0, 1.0))) for r in recs]
    pred = ort_predict(model_path, xb, sess=prover.sess)
    out = []
    for d in sorted(set(dom)):
        sel = np.array([k for k in range(len(recs)) if dom[k] == d])
        out += _check_claims([recs[k] for k in sel], xb[sel], yb[sel], eps[sel], rad[sel], pred[sel], d, prover, x)
    return out


def _check_claims(recs, xb, yb, eps, rad, pred, dom, prover, x_all) -> list[str]:
    cap = dom[1] - dom[0]
    m_eps = prover.ibp(xb, yb, eps, dom)
    m0, lip_m = prover.m0(xb, yb, eps, dom)
    m_r = prover.ibp(xb, yb, np.minimum(rad, cap), dom)
    r_ok = ((m_r > 0) | (rad <= margins.lipschitz_radius(m0, prover.lipv(yb), cap))
            | (rad <= margins.extended_radius(eps, m_eps, prover.lipv(yb), cap)) | (rad == 0))
    out = []
    for k, r in enumerate(recs):
        i, st, meth = r["index"], r["status"], r["method"]
        if r["predicted"] != pred[k]:
            out.append(f"index {i}: predicted {r['predicted']} but onnxruntime says {int(pred[k])}")
            continue
        mine = m_eps[k] if meth == "ibp" else lip_m[k] if meth == "lipschitz" else np.nan
        ml = r["margin_lower"]
        if ml is not None and np.isfinite(mine) and ml > mine + _TOL * (1 + abs(mine)):
            out.append(f"index {i}: margin_lower {ml!r} exceeds the re-computed bound {mine!r}")
        if st == "certified":
            if pred[k] != yb[k] or not mine > 0:
                out.append(f"index {i}: 'certified' at eps {r['eps']!r} does not re-prove ({meth})")
            elif rad[k] < eps[k] or not (r_ok[k] or rad[k] == eps[k]):
                out.append(f"index {i}: radius {rad[k]!r} is not provable")
        elif st == "not_certified":
            if pred[k] != yb[k]:
                out.append(f"index {i}: 'not_certified' but onnxruntime misclassifies it")
            elif mine > 0:
                out.append(f"index {i}: 'not_certified' but {meth} proves eps {r['eps']!r}")
            elif rad[k] > eps[k] or not r_ok[k]:
                out.append(f"index {i}: radius {rad[k]!r} is not provable")
        elif st == "misclassified" and pred[k] == yb[k]:
            out.append(f"index {i}: 'misclassified' but onnxruntime predicts the label")
        elif st == "falsified":
            out += _check_witness(r, x_all[i], dom, prover)
    return out


def _check_witness(r, x, dom, prover) -> list[str]:
    i, w = r["index"], r.get("witness")
    if not isinstance(w, list) or len(w) != x.size:
        return [f"index {i}: 'falsified' without a witness of {x.size} values"]
    try:
        wa = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        return [f"index {i}: witness is not a list of numbers"]
    w32 = wa.astype(np.float32)
    if not np.isfinite(wa).all() or not np.array_equal(w32.astype(np.float64), wa):
        return [f"index {i}: witness values are not finite float32 numbers"]
    w32 = w32.reshape(x.shape)
    ws = r.get("witness_sha256")
    if ws is not None and ws != hashlib.sha256(np.ascontiguousarray(w32).tobytes()).hexdigest():
        return [f"index {i}: witness_sha256 does not match the witness"]
    if (w32 < dom[0]).any() or (w32 > dom[1]).any():
        return [f"index {i}: witness lies outside the domain {list(dom)}"]
    if not _linf_within(w32, x, r["eps"]):
        return [f"index {i}: witness is farther than eps {r['eps']!r} from the input"]
    p = ort_predict(None, w32[None], sess=prover.sess)[0]
    if p == r["label"]:
        return [f"index {i}: witness is classified as the label by onnxruntime"]
    return []
