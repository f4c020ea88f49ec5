"""``check``: re-verify a certificate (or witness) file from the model file and the data, independently.

The file must be ONE run (verify/certify/header.py): the header line first (an empty file or one without
it fails), every record agreeing with it, and the records covering exactly the selection the header
declares, re-derived from the data. Independent of the code path that wrote it: the model identity
is recomputed from the file (verify.front.loader.model_identity), the data identity, input hashes and
labels from the data, the prediction with onnxruntime (not our forward), and every claim is
re-proven UNDER THE RUN'S GUARANTEE (header and every record: ``real`` or ``float32``,
verify/guarantee.py; a record claiming a guarantee its header does not state fails) from a fresh
model load with ONE direct evaluation per bound (no bisection):

- ``certified`` at ε: predicted = label and the record's method proves the closed ε-ball (IBP
  margin > 0, or the Lipschitz ball margin > 0), and the claimed radius r ≥ ε is re-proven by one
  of: IBP of the closed r-ball, r ≤ m0/(2L), or r ≤ ε + m_ε/(2L);
- ``not_certified`` / ``unknown``: predicted = label, r ≤ ε re-proven as above (0 for unknown), and
  NO method the run's method may use proves ε (a hidden downgrade of a provable sample fails);
- ``misclassified``: onnxruntime's prediction ≠ label;
- ``falsified`` (attack runs only): the witness replays in onnxruntime: float32, finite, in the
  domain, ‖x′ − x‖∞ ≤ ε exactly (rational comparison), predicted ≠ label;
- ``margin_lower`` may not exceed the re-computed bound of its method (up to 1e-6 relative).

Any mismatch raises ``CertificateError`` naming the count and the first few. The summary states
eps, the coverage ("N of M samples of <data sha256>") and the count of every status.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from verify.bounds import margins
from verify.attack.box import in_domain, within_eps
from verify.certify.certificates import STATUSES, read_sections
from verify.certify.certifier import ALPHA_STEPS, LINEAR, lipschitz_proves, pair_lipschitz_of
from common.errors import CertificateError, ModelError
from verify.certify.header import RECORD_METHODS, data_sha256, header_selection
from verify.front.loader import model_identity
from common.runtime import ort_logits, ort_session
from verify.guarantee import with_ort

__all__ = ["run_check", "ort_predict", "unproven"]

_TOL = 1e-6
MAX_LISTED = 5


def ort_predict(model_path, x: np.ndarray, batch: int = 256, sess=None) -> np.ndarray:
    """argmax of onnxruntime's float32 logits (pinned session, common/runtime.py), first index on ties."""
    sess = sess or ort_session(model_path)
    out = ort_logits(sess, x, batch)
    return np.argmax(out, axis=1) if len(out) else np.zeros(0, np.int64)


class _Prover:
    """Direct, single-evaluation bounds for a batch of samples with per-sample ε, under the run's
    guarantee (``witness`` for attack runs: no bound is then asked for)."""

    def __init__(self, model, model_path, guarantee: str):
        self.model = model
        self.guarantee = guarantee
        self.ort = guarantee == "witness" or with_ort(guarantee)
        self.sess = ort_session(model_path)
        self.lip = float(model.lipschitz())
        self.affine = model.last_affine()
        self.pair = pair_lipschitz_of(model, self.affine)
        from verify.bounds.fastpath import ChainBound

        self.chain = ChainBound.build(model)

    def lipv(self, y):
        return self.lip if self.pair is None else np.minimum(self.lip, self.pair[y])

    def m0(self, x, y, eps, domain) -> tuple[np.ndarray, np.ndarray]:
        """(m0, Lipschitz ball margin). m0: lower bound of the exact margin at x, the better of the
        degenerate-box interval and, for 1-Lipschitz chains, the float32 forward minus its proven
        error. Ball margin: as the certifier defines it (for chains under ``float32`` it also
        subtracts onnxruntime's float32 error e′ on the ball; other models: no float32 proof, NaN;
        docs/SOUNDNESS.md)."""
        m = self.ibp(x, y, np.zeros(len(y)), domain)
        ball = margins.lipschitz_margin(m, self.lipv(y), eps)
        if not lipschitz_proves(self.guarantee, self.chain is not None):
            ball = np.full(len(y), np.nan)
        if self.chain is not None:
            z, e, e_ball = self.chain.forward_with_error(x, eps)
            m_chain, ball = margins.chain_margins(margins.box_margin(z, z, y), e, e_ball, self.lipv(y), eps,
                                                  ort=self.ort)
            m = np.fmax(m, m_chain)
        return m, ball

    def linear(self, x, y, eps, domain, method) -> np.ndarray:
        """CROWN / α-CROWN margin lower bound (the certifier's own function, verify/bounds/spec.py)."""
        from verify.bounds.spec import margin_lower

        lo, hi = margins.input_box(x, eps, domain)
        return margin_lower(self.model, lo, hi, y, ort=self.ort,
                            alpha_steps=ALPHA_STEPS if method == "alpha-crown" else 0)

    def ibp(self, x, y, eps, domain) -> np.ndarray:
        lo, hi = margins.input_box(x, eps, domain)
        try:
            zlo, zhi = self.model.interval(lo, hi)
            m = margins.box_margin(zlo, zhi, y)
            if self.affine is not None:
                hlo, hhi = self.model.boxes(lo, hi, [self.affine.input_name])[self.affine.input_name]
                m = np.fmax(m, margins.merged_margin(self.affine.weight, self.affine.bias, hlo, hhi, y,
                                                     ort=self.ort))
            return m
        except ModelError:
            return np.full(len(y), np.nan)


def _coverage(sections, n_data: int) -> list[str]:
    """Missing/unexpected indices w.r.t. the selection the header(s) declare, re-derived from the
    data (the first ``limit`` samples, then every N-th from I; the union over the shards present)."""
    header = sections[0][0]
    if header["n_data"] != n_data:
        return [f"the header says {header['n_data']} samples, the data has {n_data}"]
    want: set[int] = set()
    for h, _ in sections:
        want.update(header_selection(h)[0].tolist())
    if not want:
        return ["the run's selection holds no sample"]
    have = {r["index"] for _, recs in sections for r in recs}
    out = []
    missing, extra = sorted(want - have), sorted(have - want)
    if missing:
        out.append(f"{len(missing)} selected index(es) have no record (first: {missing[:5]})")
    if extra:
        out.append(f"records for indices outside the selection: {extra[:5]}")
    return out


def run_check(certs, model_path, data, *, data_dir=None, split: str = "test",
              batch_size: int = 256, progress=None) -> dict[str, Any]:
    """Re-verify ``certs``; returns a summary dict, raises CertificateError on any mismatch.

    ``progress(done, total)`` (pipeline/progress.py) counts the records re-proven."""
    from common.datasets import load_arrays
    from verify.front.model import load_model

    sections = read_sections(certs)
    header, records = sections[0][0], [r for _, recs in sections for r in recs]
    if not os.path.isfile(model_path):
        raise ModelError(f"model file not found: {model_path}")
    sha = model_identity(model_path)
    model = load_model(model_path)
    if model.sha256 != sha:
        raise ModelError(f"{model_path} changed while it was being loaded")
    name = os.path.basename(str(model_path))
    if header["model_sha256"] != sha:
        raise CertificateError(f"{certs}: model_sha256 of the run does not match {name}")
    x, y = load_arrays(data, split, data_dir)
    data_sha = data_sha256(x, y)
    if header["data_sha256"] != data_sha:
        raise CertificateError(f"{certs}: data_sha256 of the run does not match the data ({data_sha[:16]}…)")
    prover = _Prover(model, model_path, header["guarantee"])  # the header's method/guarantee pair is valid
    bad = _coverage(sections, len(x))
    good = []
    for r in records:
        i = r["index"]
        if i >= len(x):
            bad.append(f"index {i}: outside the data ({len(x)} samples)")
        elif r["input_sha256"] != hashlib.sha256(np.ascontiguousarray(x[i]).tobytes()).hexdigest():
            bad.append(f"index {i}: input_sha256 does not match the data")
        elif r["label"] != int(y[i]):
            bad.append(f"index {i}: label {r['label']} but the data says {int(y[i])}")
        else:
            good.append(r)
    for s in range(0, len(good), batch_size):
        if progress:
            progress(s, len(good))
        bad += [f"index {i}: {why}" for i, why in _check_batch(good[s:s + batch_size], x, header, prover)]
    if progress:
        progress(len(good), len(good))
    if bad:
        listed = "; ".join(bad[:MAX_LISTED])
        raise CertificateError(f"{len(bad)} mismatch(es) in {certs}: {listed}")
    counts = {st: sum(r["status"] == st for r in records) for st in STATUSES}
    return {"ok": True, "n": len(records), "eps": header["eps"], "domain": header["domain"],
            "method": header["method"], "guarantee": header["guarantee"], "selection": {**header["selection"], "shard": "+".join(h["selection"]["shard"] for h, _ in sections)},
            "n_data": len(x), "data_sha256": data_sha,
            "coverage": f"{len(records)} of {len(x)} samples of {data_sha}",
            "counts": counts, "model_sha256": sha, "lipschitz": prover.lip}


def unproven(records, x, header, model, model_path, batch_size: int = 256) -> dict[int, str]:
    """{index: why} of the records whose claim ``check``'s direct re-proof (above) does not confirm;
    ``records`` must already match the data (input hash, label) and the ``header`` of their run.
    certify's resume keeps only records absent from it (verify/certify/run.py)."""
    prover = _Prover(model, model_path, header["guarantee"])
    bad: dict[int, str] = {}
    for s in range(0, len(records), batch_size):
        bad.update(_check_batch(records[s:s + batch_size], x, header, prover))
    return bad


def _check_batch(recs, x, header, prover) -> list[tuple[int, str]]:
    """(index, why) of every record of the batch whose claim does not re-prove."""
    idx = np.array([r["index"] for r in recs], dtype=np.int64)
    xb = np.ascontiguousarray(x[idx])
    yb = np.array([r["label"] for r in recs], dtype=np.int64)
    outside = ~in_domain(xb, tuple(header["domain"]))  # a claim about ball ∩ domain needs x in it
    if outside.any():
        return [(int(i), f"the sample lies outside the run's domain {list(header['domain'])}")
                for i in idx[outside]]
    pred = ort_predict(None, xb, sess=prover.sess)
    if header["method"] == "pgd":
        return _check_attack(recs, yb, pred, header, prover, x)
    return _check_claims(recs, xb, yb, pred, header, prover)


def _check_attack(recs, yb, pred, header, prover, x_all) -> list[tuple[int, str]]:
    """An attack run claims no robustness: misclassified / unknown follow onnxruntime's
    prediction, falsified witnesses are replayed."""
    out = []
    for k, r in enumerate(recs):
        i, st = r["index"], r["status"]
        if r["predicted"] != pred[k]:
            out.append((i, f"predicted {r['predicted']} but onnxruntime says {int(pred[k])}"))
        elif st == "misclassified" and pred[k] == yb[k]:
            out.append((i, "'misclassified' but onnxruntime predicts the label"))
        elif st == "unknown" and pred[k] != yb[k]:
            out.append((i, "'unknown' but onnxruntime misclassifies it"))
        elif st == "falsified":
            out += _check_witness(r, x_all[i], tuple(header["domain"]), prover)
    return out


def _check_claims(recs, xb, yb, pred, header, prover) -> list[str]:
    """Re-prove a certify run's records under the run's guarantee. Every method the run's method
    may use is recomputed (deterministically, one direct evaluation each): `certified` must re-prove
    with its own method; `not_certified` / `unknown` must not be provable by ANY of them (else a
    downgrade)."""
    dom, n = tuple(header["domain"]), len(recs)
    cap = dom[1] - dom[0]
    eps = np.full(n, header["eps"])
    rad = np.array([r["radius"] for r in recs])
    m_eps = prover.ibp(xb, yb, eps, dom)
    m0, lip_m = prover.m0(xb, yb, eps, dom)
    bound = {"ibp": m_eps, "lipschitz": lip_m}
    allowed = RECORD_METHODS[header["method"]]
    for meth in set(allowed) & set(LINEAR):  # re-proved for every record (downgrades included)
        bound[meth] = prover.linear(xb, yb, header["eps"], dom, meth)
    m_r = prover.ibp(xb, yb, np.minimum(rad, cap), dom)
    r_ok = ((m_r > 0) | (rad <= margins.lipschitz_radius(m0, prover.lipv(yb), cap))
            | (rad <= margins.extended_radius(eps, m_eps, prover.lipv(yb), cap)) | (rad == 0))
    out = []
    for k, r in enumerate(recs):
        i, st, meth = r["index"], r["status"], r["method"]
        if r["predicted"] != pred[k]:
            out.append((i, f"predicted {r['predicted']} but onnxruntime says {int(pred[k])}"))
            continue
        mine = bound[meth][k]
        proves = [m for m in allowed if bound[m][k] > 0]
        ml = r["margin_lower"]
        if ml is not None and np.isfinite(mine) and ml > mine + _TOL * (1 + abs(mine)):
            out.append((i, f"margin_lower {ml!r} exceeds the re-computed bound {mine!r}"))
        if st == "misclassified":
            if pred[k] == yb[k]:
                out.append((i, "'misclassified' but onnxruntime predicts the label"))
        elif pred[k] != yb[k]:
            out.append((i, f"{st!r} but onnxruntime misclassifies it"))
        elif st == "certified":
            if not mine > 0:
                out.append((i, f"'certified' at eps {header['eps']!r} does not re-prove ({meth}, "
                               f"guarantee {header['guarantee']})"))
            elif rad[k] < eps[k] or not (r_ok[k] or rad[k] == eps[k]):
                out.append((i, f"radius {rad[k]!r} is not provable"))
        elif proves:
            out.append((i, f"{st!r} but {proves[0]} proves eps {header['eps']!r} (a downgrade)"))
        elif st == "unknown" and rad[k] != 0:
            out.append((i, f"'unknown' with radius {rad[k]!r} (must be 0)"))
        elif rad[k] > eps[k] or not r_ok[k]:
            out.append((i, f"radius {rad[k]!r} is not provable"))
    return out


def _check_witness(r, x, dom, prover) -> list[str]:
    i, w = r["index"], r.get("witness")
    if not isinstance(w, list) or len(w) != x.size:
        return [(i, f"'falsified' without a witness of {x.size} values")]
    try:
        wa = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return [(i, "witness is not a list of numbers")]
    w32 = wa.astype(np.float32)
    if not np.isfinite(wa).all() or not np.array_equal(w32.astype(np.float64), wa):
        return [(i, "witness values are not finite float32 numbers")]
    w32 = w32.reshape(x.shape)
    ws = r.get("witness_sha256")
    if ws is not None and ws != hashlib.sha256(np.ascontiguousarray(w32).tobytes()).hexdigest():
        return [(i, "witness_sha256 does not match the witness")]
    if not in_domain(w32[None], dom)[0]:
        return [(i, f"witness lies outside the domain {list(dom)}")]
    if not within_eps(x, w32, r["eps"]):
        return [(i, f"witness is farther than eps {r['eps']!r} from the input")]
    p = ort_predict(None, w32[None], sess=prover.sess)[0]
    if p == r["label"]:
        return [(i, "witness is classified as the label by onnxruntime")]
    return []
