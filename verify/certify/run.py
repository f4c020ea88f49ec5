"""The certification batch driver behind ``verify_cli.py certify``.

:func:`run_certify` loads the model and data, selects the samples (``--limit`` then ``--shard``),
resumes an interrupted run from ``OUT.partial``, certifies batch by batch (verify/certify/certifier.py) and
writes one record per sample (verify/certify/certificates.py), renaming ``OUT.partial`` to ``OUT`` at the end.

Guarantees:
- every input problem (model, data, shapes, labels, domain, options, output folder) is detected
  before any file is created, and raises a ``common.errors`` exception with one line;
- ``OUT`` appears only complete (atomic rename); after an interruption a rerun with the same
  arguments keeps every record of the batches that were complete and whose claims ``check``'s direct
  re-proof confirms (verify/certify/check.py ``unproven``), recomputes the rest with the same
  batch boundaries, and produces a file identical to an uninterrupted run;
- shards: ``--shard I/N`` takes the selected positions p ≡ I (mod N) (strided, so every shard
  gets a similar mix); the records of the N shard files hold every selected index exactly once;
- the file is one run (verify/certify/header.py): its header line states model, data identity, eps,
  domain, method, guarantee (``--guarantee``: real | float32, verify/guarantee.py) and selection, and
  every record agrees with it (each record states the guarantee too).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from verify.certify.certificates import CertWriter, input_sha256, resume_records, tool_version
from verify.certify.certifier import Certifier, CertifyConfig, check_inputs
from verify.guarantee import DEFAULT
from verify.certify.header import check_limit, data_sha256, make_header, parse_shard, select_indices
from common.errors import LinfVerifyError, ModelError
from verify.front.loader import model_identity

__all__ = ["parse_shard", "select_indices", "run_certify", "summarize"]


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise LinfVerifyError(f"--out {out} is a directory")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise LinfVerifyError(f"output folder {folder} does not exist")


def _record(i, x_hash, label, res, k, cfg, base) -> dict[str, Any]:
    m = float(res.margin_lower[k])
    return {
        "index": int(i), "input_sha256": x_hash, "label": int(label),
        "predicted": int(res.predicted[k]), "eps": float(cfg.eps), "status": res.status[k],
        "radius": float(res.radius[k]), "margin_lower": m if math.isfinite(m) else None,
        "method": res.method[k], "guarantee": cfg.guarantee, **base,
    }


def run_certify(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    eps: float,
    out: str | os.PathLike,
    method: str = "auto",
    domain: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    limit: int | None = None,
    shard: str | None = None,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    bisect_steps: int = 10,
    guarantee: str = DEFAULT,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Certify the selected samples and write ``out``; returns the summary (see :func:`summarize`)."""
    from common.datasets import load_arrays
    from verify.front.model import load_model

    t0 = time.perf_counter()
    cfg = CertifyConfig(float(eps), method, (float(domain[0]), float(domain[1])), bisect_steps, guarantee).check()
    sh = parse_shard(shard)
    check_limit(limit)
    if batch_size < 1:
        raise LinfVerifyError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    _check_out(out)
    model = load_model(model_path)
    certifier = Certifier(model, cfg)  # opens the onnxruntime session that judges `predicted`
    model_sha = model.sha256
    if model_identity(model_path) != model_sha:
        raise ModelError(f"{model_path} changed while it was being loaded")
    x, y = load_arrays(data, split, data_dir)
    idx, n_total = select_indices(len(x), limit, sh)
    if len(idx) == 0:
        raise LinfVerifyError("the selection (--limit, --shard) holds no sample")
    check_inputs(x[idx], y[idx], model, cfg.domain, indices=idx)
    inputs = {int(i): (input_sha256(x[i]), int(y[i])) for i in idx}
    base = {"model_sha256": model_sha, "tool_version": tool_version(), "domain": list(cfg.domain),
            "shard": f"{sh[0]}/{sh[1]}", "n_total": int(n_total)}
    header = make_header(model_sha256=model_sha, data_sha256=data_sha256(x, y), n_data=len(x), eps=cfg.eps,
                         domain=cfg.domain, method=cfg.method,
                         guarantee=cfg.guarantee, limit=limit,
                         shard=base["shard"], n_total=n_total, tool_version=base["tool_version"])
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    partial = out.with_name(out.name + ".partial")
    kept = {r["index"]: r for r in resume_records(partial, header, inputs)}
    if kept:  # re-prove every kept claim as `check` does; a record that does not is recomputed
        from verify.certify.check import unproven

        bad = unproven(list(kept.values()), x, header, model, model_path, batch_size)
        kept = {i: r for i, r in kept.items() if i not in bad}
    done = [all(int(i) in kept for i in b) for b in batches]
    keep = [kept[int(i)] for b, ok in zip(batches, done) if ok for i in b]
    writer = CertWriter(out, header, keep)
    records = list(keep)
    try:
        if progress:
            progress(len(keep), len(idx))
        for b, ok in zip(batches, done):
            if ok:
                continue
            res = certifier.run(np.ascontiguousarray(x[b]), y[b])
            recs = [_record(i, inputs[int(i)][0], y[i], res, k, cfg, base) for k, i in enumerate(b)]
            writer.write_batch(recs)
            records.extend(recs)
            if progress:
                progress(len(records), len(idx))
        path = writer.finish()
    finally:
        writer.close()
    summary = summarize(records, eps=cfg.eps, method=cfg.method, model_sha256=model_sha)
    summary.update(seconds=time.perf_counter() - t0, out=str(path), resumed=len(keep),
                   lipschitz=certifier.lip, domain=list(cfg.domain), shard=base["shard"],
                   data_sha256=header["data_sha256"], guarantee=header["guarantee"])
    return summary


def summarize(records, *, eps: float, method: str, model_sha256: str) -> dict[str, Any]:
    """Counts and accuracies of a list of records (n, clean_accuracy, certified_accuracy, ...)."""
    n = len(records)
    counts = {s: 0 for s in ("certified", "not_certified", "misclassified", "falsified", "unknown")}
    for r in records:
        counts[r["status"]] += 1
    clean = sum(1 for r in records if r["predicted"] == r["label"])
    radii = [r["radius"] for r in records if r["status"] == "certified"]
    return {
        "n": n, "eps": eps, "method": method, "model_sha256": model_sha256,
        "clean_accuracy": clean / n if n else 0.0,
        "certified_accuracy": counts["certified"] / n if n else 0.0,
        "certified": counts["certified"], "counts": counts,
        "mean_certified_radius": float(np.mean(radii)) if radii else 0.0,
    }
