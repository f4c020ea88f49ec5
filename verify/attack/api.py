"""Library entry point of ``verify_cli.py attack``: data → attack → witness file (→ alarm check).

:func:`run_attack` loads the model (through the verifier's safe loader, so the attack reads exactly
the models ``certify`` reads), loads the data, attacks, writes the witness JSONL atomically and,
when a certificate file is given, runs the soundness alarm against it (raising SoundnessAlarm,
exit 3, and keeping both files). Returns the JSON summary.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from verify.attack.alarm import check_consistency
from verify.attack.pgd import AttackConfig
from verify.attack.replay import write_jsonl_atomic
from verify.attack.runner import attack_arrays
from common.errors import CertificateError, LinfVerifyError
from verify.certify.header import check_limit, data_sha256
from verify.guarantee import FLOAT32

__all__ = ["run_attack", "alarm_against", "read_certs"]


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise LinfVerifyError(f"--out {out} is a directory")
    if not out.parent.is_dir():
        raise LinfVerifyError(f"output folder {out.parent} does not exist")


def alarm_against(cert_path: str | os.PathLike, witness_records: list[dict], witness_path,
                  x: np.ndarray, model_sha256: str, certs: list[dict] | None = None) -> int:
    """Soundness alarm of witness records against a certificate file of the same model.

    Raises CertificateError when the certificates are for another model (so a hash mismatch can
    never silently disable the alarm) and SoundnessAlarm on a conflict; returns pairs compared.
    ``certs``: the file's records when already read (and validated, :func:`read_certs`).
    """
    from verify.certify.certificates import input_sha256, read_records

    certs = read_records(cert_path) if certs is None else certs
    other = {c["model_sha256"] for c in certs} - {model_sha256}
    if other:
        raise CertificateError(f"{cert_path} holds certificates of another model (sha256 {sorted(other)[0][:12]}…)")
    inputs = {input_sha256(xi): xi for xi in x}
    return check_consistency(certs, cert_path, witness_records, witness_path, inputs)


def read_certs(cert_path, *, model_sha256: str, data_sha256: str, domain, eps: float,
               skip_certified: bool) -> list[dict]:
    """The records of ``--certs``, validated BEFORE any attack or write: a complete certify run
    (verify/certify/header.py) of this model, on this data, over this domain (and, to skip samples, at
    eps ≥ the attack's eps). Anything else is a one-line LinfVerifyError (exit 2)."""
    from verify.certify.certificates import read_sections

    try:
        sections = read_sections(cert_path)
    except CertificateError as e:
        raise LinfVerifyError(f"--certs: {e}") from None
    h = sections[0][0]
    why = None
    if h["model_sha256"] != model_sha256:
        why = f"certificates of another model (sha256 {h['model_sha256'][:12]}…)"
    elif h["data_sha256"] != data_sha256:
        why = f"certificates of another data set (sha256 {h['data_sha256'][:12]}…)"
    elif h["method"] == "pgd":
        why = "a witness file, not a certify run"
    elif h["guarantee"] != FLOAT32:  # verify/guarantee.py
        why = (f"certificates with guarantee {h['guarantee']!r} say nothing about onnxruntime's float32 "
               "evaluation, which witnesses are about (certify with --guarantee float32)")
    elif h["domain"] != [float(domain[0]), float(domain[1])]:
        why = f"certificates over the domain {h['domain']}, the attack's is {list(domain)}"
    elif skip_certified and not h["eps"] >= eps:
        why = f"certificates at eps {h['eps']!r} < the attack's eps {eps!r}: --skip-certified would skip nothing"
    if why:
        raise LinfVerifyError(f"--certs {cert_path}: {why}")
    return [r for _, recs in sections for r in recs]


def _proven_mask(certs: list[dict], x: np.ndarray, eps: float) -> np.ndarray:
    """Samples whose certificate (records validated by :func:`read_certs`) proves the closed
    ε-ball (status certified at eps' ≥ ε)."""
    from verify.certify.certificates import input_sha256

    proven = {c["input_sha256"] for c in certs if c["status"] == "certified" and c["eps"] >= eps}
    return np.array([input_sha256(xi) in proven for xi in x], dtype=bool)


def run_attack(model_path: str | os.PathLike, data: str | os.PathLike, *, eps: float,
               out: str | os.PathLike, cfg: AttackConfig | None = None,
               domain: tuple[float, float] = (0.0, 1.0), limit: int | None = None,
               data_dir: str | os.PathLike | None = None, split: str = "test",
               certs: str | os.PathLike | None = None, skip_certified: bool = False,
               progress=None) -> dict:
    """Attack the first ``limit`` samples of ``data`` at ε; write witnesses to ``out``; summary dict.

    ``skip_certified`` (needs ``certs``): do not attack samples the certificate file proves robust at
    a radius ≥ ε (a sound proof says no witness exists); the alarm then only covers the others.
    ``progress``: see :func:`verify.attack.runner.attack_arrays`.
    """
    from common.datasets import load_arrays
    from verify.front.model import load_model

    out = Path(out)
    _check_out(out)
    check_limit(limit)
    if not (domain[0] < domain[1]):
        raise LinfVerifyError(f"the domain must be LO < HI, got {domain[0]} {domain[1]}")
    model = load_model(model_path)  # the verifier's safe loader: refuses what certify would refuse
    x, y = load_arrays(data, split, data_dir)
    n_data, data_sha = len(x), data_sha256(x, y)
    if skip_certified and certs is None:
        raise LinfVerifyError("--skip-certified needs --certs")
    cert_records = None if certs is None else read_certs(
        certs, model_sha256=model.sha256, data_sha256=data_sha, domain=domain, eps=float(eps),
        skip_certified=skip_certified)
    n = len(x) if limit is None else min(limit, len(x))
    x, y = x[:n], y[:n]
    skip = None
    if skip_certified:
        skip = _proven_mask(cert_records, x, eps)
    res = attack_arrays(model_path, x, y, eps, cfg, domain, skip=skip, progress=progress)
    records = res.records(x)
    write_jsonl_atomic(out, res.header(data_sha, n_data, limit), records)
    summary = res.summary() | {"out": str(out)}
    if skip is not None:
        summary["skipped_certified"] = int(skip.sum())
    if certs is not None:
        summary["alarm_pairs_checked"] = alarm_against(certs, records, out, x, res.model_sha256, cert_records)
    return summary
