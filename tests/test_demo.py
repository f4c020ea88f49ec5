"""The offline main job end to end: train → export → certify → attack → check, no ../shared."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from nets.checkpoint import load_checkpoint


def test_demo_runs_offline_end_to_end(tmp_path, monkeypatch):
    import common.datasets as vd
    from verify.certify.certificates import read_records
    from verify_cli import app

    monkeypatch.setattr(vd, "default_data_dir", lambda: None)  # as on a fresh machine: no ../shared
    out = tmp_path / "d"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs", "2", "--json"],
                           env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})  # progress bars drawn (on stderr)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)  # under --json stdout is the one JSON object: progress and steps go to stderr
    assert all(bar in r.stderr for bar in ("certifying", "attacking", "checking"))
    assert "demo done in" in r.stderr and s["total_seconds"] >= 0

    load_checkpoint(out / "checkpoint")
    assert (out / "model.onnx").is_file()
    certs = read_records(out / "certificates.jsonl")
    assert len(certs) == s["n"] == 360
    assert sorted(c["index"] for c in certs) == list(range(360))
    # the bracket the product promises: certified ≤ robust ≤ clean, and the alarm ran clean
    assert s["sound_certified_accuracy"] <= s["robust_accuracy"] <= s["sound_clean_accuracy"]
    assert s["check"] == "passed"
    witnesses = read_records(out / "witnesses.jsonl")
    falsified = [w for w in witnesses if w["status"] == "falsified"]
    assert len(falsified) == s["falsified"]
    certified = {c["index"] for c in certs if c["status"] == "certified"}
    assert not certified & {w["index"] for w in falsified}
    assert not list(out.glob("*.partial")), "no partial files left behind"
