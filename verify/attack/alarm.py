"""The soundness alarm: a sample both certified and falsified means the verifier or the model is wrong.

:func:`check_consistency` compares certificate records with witness records of the SAME model
(model_sha256) on the SAME inputs (input_sha256). A conflict is a certificate claiming robustness
at a distance the witness already breaks: ``status == "certified"`` with witness distance ≤ the
certificate's ε, or witness distance < the certificate's radius (the radius is a lower bound of
the robust radius, so the open ball of that radius must be safe). Witnesses are re-checked first
(float32 values, sha256, exact distance to the data sample when the sample is given), so a forged
or stale witness file cannot raise a false alarm. On a conflict it raises
:class:`common.errors.SoundnessAlarm` (exit code 3) naming both files and records; it never
modifies or deletes either file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verify.attack.box import linf_distance
from verify.attack.replay import witness_array
from common.errors import SoundnessAlarm

__all__ = ["Conflict", "find_conflicts", "check_consistency"]


@dataclass(frozen=True)
class Conflict:
    """One sample claimed robust by a certificate and broken by a witness."""

    cert_line: int
    cert: dict
    witness_line: int
    witness: dict
    distance: float

    def describe(self, cert_path, witness_path) -> str:
        c, w = self.cert, self.witness
        return (
            f"sample index {c.get('index')} (input sha256 {str(c.get('input_sha256'))[:12]}…) is "
            f"{c.get('status')} in {cert_path} line {self.cert_line} (eps {c.get('eps')}, radius "
            f"{c.get('radius')}, method {c.get('method')}) but falsified in {witness_path} line "
            f"{self.witness_line} (witness at ℓ∞ distance {self.distance!r}, onnxruntime predicts "
            f"{w.get('adv_predicted')} ≠ label {w.get('label')})"
        )


def _claims_robust_at(cert: dict, d: float) -> bool:
    radius = cert.get("radius")
    if isinstance(radius, (int, float)) and not isinstance(radius, bool) and d < radius:
        return True
    eps = cert.get("eps")
    return cert.get("status") == "certified" and isinstance(eps, (int, float)) and d <= eps


def find_conflicts(certs: list[dict], witnesses: list[dict],
                   inputs_by_sha: dict[str, np.ndarray] | None = None) -> list[Conflict]:
    """All (certificate, witness) pairs in conflict; see the module docstring for the rule.

    ``inputs_by_sha`` maps input_sha256 -> the float32 sample; when given, the witness distance is
    recomputed from it (the witness record's own ``witness_distance`` is not trusted).
    """
    by_key: dict[tuple, list[tuple[int, dict]]] = {}
    for line, c in enumerate(certs, 1):
        by_key.setdefault((c.get("input_sha256"), c.get("model_sha256")), []).append((line, c))
    out = []
    for wline, w in enumerate(witnesses, 1):
        if w.get("status") != "falsified" or "witness" not in w:
            continue
        matches = by_key.get((w.get("input_sha256"), w.get("model_sha256")), [])
        if not matches:
            continue
        x = None if inputs_by_sha is None else inputs_by_sha.get(w.get("input_sha256"))
        if x is not None:
            xa = witness_array(w, x.shape)
            d = linf_distance(x, xa)
        else:
            d = float(w.get("witness_distance", np.inf))
        for cline, c in matches:
            if _claims_robust_at(c, d):
                out.append(Conflict(cline, c, wline, w, d))
    return out


def check_consistency(certs: list[dict], cert_path: str | Path, witnesses: list[dict],
                      witness_path: str | Path, inputs_by_sha: dict[str, np.ndarray] | None = None) -> int:
    """Raise SoundnessAlarm on any conflict (naming both artifacts); else return the number of
    (certificate, falsified witness) pairs that were compared."""
    conflicts = find_conflicts(certs, witnesses, inputs_by_sha)
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise SoundnessAlarm(
            "SOUNDNESS ALARM: " + conflicts[0].describe(cert_path, witness_path) + more
            + f"; the verifier or the model file is wrong. Both files are kept: {cert_path}, {witness_path}"
        )
    keys = {(c.get("input_sha256"), c.get("model_sha256")) for c in certs}
    return sum(1 for w in witnesses if w.get("status") == "falsified"
               and (w.get("input_sha256"), w.get("model_sha256")) in keys)
