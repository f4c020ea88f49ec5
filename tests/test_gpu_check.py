"""benchmarks/gpu_check.py, the prepared GPU check: refuses bad output folders; its dry run (CPU,
tiny sizes, the same three steps) completes and writes every result file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_refuses_a_non_empty_folder_and_a_missing_gpu(tmp_path):
    (tmp_path / "x").write_text("keep")
    r = _run("--out", str(tmp_path), "--dry-run")
    assert r.returncode == 2 and "not an empty folder" in r.stderr and len(r.stderr.splitlines()) == 1
    assert (tmp_path / "x").read_text() == "keep"
    import torch

    if not torch.cuda.is_available():
        r = _run("--out", str(tmp_path / "new"))
        assert r.returncode == 2 and "no CUDA device" in r.stderr


@pytest.mark.slow
def test_dry_run_writes_every_result(tmp_path):
    out = tmp_path / "res"
    r = _run("--out", str(out), "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["pytest", "kernels", "epoch"]
    assert {"junit.xml", "kernels.json", "epoch.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "epoch.json").read_text())["seed_report_seconds"] == 19.7
    rows = json.loads((out / "kernels.json").read_text())["rows"]
    assert {r["op"] for r in rows} == {"kernel", "cdist"} and all(r["seconds"] > 0 for r in rows)
