"""Audit an ONNX model: its claims (metadata) against what we measure.

:func:`run_audit` measures, on the first ``limit`` samples of the data: the static Lipschitz bound
per node and overall (a proof of an upper bound), clean accuracy (onnxruntime), certified accuracy
(the sound certifier, certificates written to REPORT_DIR), PGD robust accuracy (the attack, every
witness replayed in onnxruntime, witnesses written to REPORT_DIR), the gap robust − certified, and
both accuracies over a small grid of ε for the plot. At the audited ε every sample is attacked,
including certified ones, and the soundness alarm compares certificates with witnesses (a conflict
raises SoundnessAlarm, exit 3, both files kept). On the other grid points certified samples are not
attacked (a sound proof says no attack can succeed there), which the report states.
Outputs (all written atomically): ``summary.json``, ``report.md``, ``accuracy_vs_eps.png``,
``certificates_eps=E.jsonl``, ``witnesses_eps=E.jsonl``. verify/ never imports nets/ or export/.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from verify.attack.api import alarm_against
from verify.attack.pgd import AttackConfig
from verify.attack.replay import write_jsonl_atomic
from verify.attack.runner import attack_arrays
from common.errors import LinfVerifyError
from verify.certify.header import check_eps, check_limit, data_sha256

__all__ = ["run_audit", "default_eps_grid", "claims_from_metadata", "lipschitz_verdict"]

CLAIM_KEYS = ("producer", "producer_version", "architecture", "dataset", "input_range", "eps_train",
              "claimed_lipschitz", "metrics", "seed_conversion")


def default_eps_grid(eps: float) -> list[float]:
    """A few ε values around the audited one (always including it)."""
    return sorted({round(eps * f, 10) for f in (0.25, 0.5, 0.75, 1.0, 1.25)} | {float(eps)})


def parse_grid(text: str | None) -> list[float] | None:
    """The ``--grid`` option: comma-separated ε values (None: the default grid)."""
    try:
        return None if text is None else [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LinfVerifyError(f"--grid must be comma-separated numbers, got {text!r}") from None


def audit_grid(eps: float, eps_grid: list[float] | None = None, limit: int | None = None) -> list[float]:
    """The audit's sorted ε values (``eps`` included), after checking ``eps``, every grid value and
    ``limit`` (one-line errors): the CLI calls it before any work, run_audit again."""
    eps = check_eps(eps)
    check_limit(limit)
    return sorted({check_eps(e, "every --grid value") for e in eps_grid or default_eps_grid(eps)} | {eps})


def claims_from_metadata(meta: dict[str, str]) -> dict:
    """The claims a producer made in metadata_props (JSON-decoded where possible; never trusted)."""
    out = {}
    for k in CLAIM_KEYS:
        if k in meta:
            try:
                out[k] = json.loads(meta[k])
            except (TypeError, ValueError):
                out[k] = meta[k]
    return out


def lipschitz_verdict(claimed, proven: float) -> str:
    """Compare a claimed ℓ∞ Lipschitz constant with the proven upper bound."""
    if claimed is None:
        return "no claim"
    try:
        c = float(claimed)
    except (TypeError, ValueError):
        return f"unreadable claim {claimed!r}"
    if math.isinf(proven):
        return "not confirmed: no finite bound could be proven"
    if proven <= c:
        return "confirmed: proven bound ≤ claim"
    return f"not confirmed: proven bound {proven:.6g} > claim {c:.6g} (the claim may still hold; see `lipschitz --search`)"


def _write_json_atomic(path: Path, obj) -> None:
    from common.outputs import atomic_file

    with atomic_file(path) as f:
        f.write(json.dumps(obj, indent=2, allow_nan=False, default=str))


def _finite(v: float):
    return v if math.isfinite(v) else None


def _certify(model_path, data, eps, out_dir: Path, limit, data_dir, split, domain, method, progress):
    from verify.certify.certificates import read_records
    from verify.certify.run import run_certify

    path = out_dir / f"certificates_eps={eps:g}.jsonl"
    summary = run_certify(model_path, data, eps=eps, out=path, method=method, domain=domain, limit=limit,
                          data_dir=data_dir, split=split, progress=progress)
    return path, summary, read_records(path)


def run_audit(model_path: str | os.PathLike, data: str | os.PathLike, *, eps: float,
              out_dir: str | os.PathLike, eps_grid: list[float] | None = None, limit: int | None = None,
              cfg: AttackConfig | None = None, data_dir=None, split: str = "test",
              domain: tuple[float, float] = (0.0, 1.0), method: str = "auto", source: dict | None = None,
              progress=None) -> dict:
    """Run the audit and write the report folder; returns the JSON summary (also in summary.json).

    ``progress(done, total)`` (pipeline/progress.py) counts sample-stages: per ε one certify and one
    attack stage over the n samples."""
    from pipeline.audit_report import write_report
    from common.datasets import load_arrays
    from verify.front.model import load_model
    from pipeline.progress import sub_progress

    eps = check_eps(eps)
    grid = audit_grid(eps, eps_grid, limit)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LinfVerifyError(f"--out {out_dir} exists and is not a folder")
    model = load_model(model_path)
    x, y = load_arrays(data, split, data_dir)
    n_data, data_sha = len(x), data_sha256(x, y)
    n = len(x) if limit is None else min(int(limit), len(x))
    if n < 1:
        raise LinfVerifyError("no samples to audit")
    x, y = np.ascontiguousarray(x[:n]), y[:n]
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg or AttackConfig()
    lip_nodes = [{"name": r.name, "op_type": r.op_type, "local": _finite(r.local), "cumulative": _finite(r.cumulative)}
                 for r in model.node_lipschitz()]
    proven_l = float(model.lipschitz())
    claims = claims_from_metadata(model.metadata)
    curve, main = [], None
    total = 2 * n * len(grid)
    for j, e in enumerate(grid):
        cert_path, csum, certs = _certify(model_path, data, e, out_dir, n, data_dir, split, domain, method,
                                          sub_progress(progress, 2 * j * n, n, total))
        certified = np.array([r["status"] == "certified" for r in certs], dtype=bool)
        at_main = e == float(eps)
        res = attack_arrays(model_path, x, y, e, cfg, domain, skip=None if at_main else certified,
                            progress=sub_progress(progress, (2 * j + 1) * n, n, total))
        wit_path = out_dir / f"witnesses_eps={e:g}.jsonl"
        recs = res.records(x)
        write_jsonl_atomic(wit_path, res.header(data_sha, n_data, n), recs)
        pairs = alarm_against(cert_path, recs, wit_path, x, res.model_sha256)
        s = res.summary()
        point = {"eps": e, "certified_accuracy": csum["certified_accuracy"], "robust_accuracy": s["robust_accuracy"],
                 "clean_accuracy": s["clean_accuracy"], "falsified": s["falsified"], "certified": csum["certified"],
                 "certified_attacked": bool(at_main), "alarm_pairs_checked": pairs,
                 "certificates": cert_path.name, "witnesses": wit_path.name,
                 "attack_seconds": s["seconds"], "certify_seconds": csum.get("seconds")}
        curve.append(point)
        if at_main:
            main = point
            main["falsified_samples"] = [
                {"index": r["index"], "label": r["label"], "adv_predicted": r.get("adv_predicted"),
                 "witness_distance": r.get("witness_distance"), "witness_sha256": r.get("witness_sha256")}
                for r in recs if r["status"] == "falsified"]
    summary = {
        "model": str(model_path), "model_sha256": model.sha256, "data": str(data), "n": n, "eps": float(eps),
        "domain": list(domain), "source": source or {"kind": "onnx"}, "claims": claims,
        "lipschitz": {"proven_upper_bound": _finite(proven_l), "per_node": lip_nodes,
                      "verdict": lipschitz_verdict(claims.get("claimed_lipschitz"), proven_l)},
        "clean_accuracy": main["clean_accuracy"], "certified_accuracy": main["certified_accuracy"],
        "robust_accuracy": main["robust_accuracy"],
        "gap_robust_minus_certified": main["robust_accuracy"] - main["certified_accuracy"],
        "falsified": main["falsified"], "falsified_samples": main.pop("falsified_samples"),
        "curve": curve, "attack_config": res.config, "soundness_alarm": "clear",
    }
    _write_json_atomic(out_dir / "summary.json", summary)
    write_report(summary, out_dir)
    return summary
