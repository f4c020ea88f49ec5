"""Audit end to end: ONNX and seed-checkpoint inputs, report files, claims vs measured, the alarm."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attack_helpers import relu_mlp_onnx, train_relu_mlp
from test_alarm import _lying_run
from test_seed_compat import _fake
from pipeline.audit import lipschitz_verdict
from verify.certify.certifier import Certifier
from common.datasets import load_arrays
from verify_cli import app


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    xtr, ytr = load_arrays("digits", "train")
    path = tmp_path_factory.mktemp("audit") / "mlp.onnx"
    # a false claim: an undefended MLP is not 1-Lipschitz
    return relu_mlp_onnx(path, train_relu_mlp(xtr, ytr, hidden=(32,), epochs=15), (1, 8, 8),
                         metadata={"claimed_lipschitz": "1.0", "eps_train": "0.1"})


def test_audit_onnx_report(mlp, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["audit", str(mlp), "--data", "digits", "--eps", "0.1", "--out", str(out),
                                 "--limit", "40", "--steps", "20", "--grid", "0.05,0.1", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s == json.loads((out / "summary.json").read_text())
    for f in ("report.md", "accuracy_vs_eps.png", "certificates_eps=0.1.jsonl", "witnesses_eps=0.1.jsonl"):
        assert (out / f).is_file()
    assert (out / "accuracy_vs_eps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert s["claims"]["claimed_lipschitz"] == 1.0
    assert s["lipschitz"]["proven_upper_bound"] > 1.0 and s["lipschitz"]["verdict"].startswith("not confirmed")
    assert [p["eps"] for p in s["curve"]] == [0.05, 0.1]
    assert s["certified_accuracy"] <= s["robust_accuracy"] <= s["clean_accuracy"]
    assert s["falsified"] == len(s["falsified_samples"]) > 0
    assert s["gap_robust_minus_certified"] == pytest.approx(s["robust_accuracy"] - s["certified_accuracy"])
    md = (out / "report.md").read_text()
    assert "Claims (metadata) vs measured" in md and "Gemm" in md


def test_audit_seed_checkpoint_end_to_end(tmp_path):
    sd = _fake("v1", "pure", depth=2)
    ckpt = tmp_path / "seed_v1.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, ckpt)
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 28, 28), dtype=np.float32)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=rng.integers(0, 10, 20))
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["audit", str(ckpt), "--data", str(data), "--seed-dataset", "mnist", "--eps", "0.02",
                                 "--out", str(out), "--steps", "10", "--grid", "0.02", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source"]["kind"] == "seed-checkpoint" and s["source"]["seed_version"] == "v1"
    assert (out / "model.onnx").is_file()
    assert s["lipschitz"]["proven_upper_bound"] == pytest.approx(1.0)  # a pure ℓ∞-dist net


def test_audit_refuses_seed_checkpoint_without_dataset(tmp_path):
    ckpt = tmp_path / "seed.pth"
    torch.save(_fake("v2", "mlp"), ckpt)
    r = CliRunner().invoke(app, ["audit", str(ckpt), "--data", str(tmp_path / "d.npz"), "--eps", "0.1",
                                 "--out", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "seed-dataset" in r.output and "Traceback" not in r.output


def test_audit_alarm_with_planted_lying_certifier(mlp, tmp_path, monkeypatch):
    monkeypatch.setattr(Certifier, "run", _lying_run)
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["audit", str(mlp), "--data", "digits", "--eps", "0.3", "--out", str(out),
                                 "--limit", "20", "--steps", "20", "--grid", "0.3"])
    assert r.exit_code == 3, r.output
    assert "SOUNDNESS ALARM" in r.output
    assert (out / "certificates_eps=0.3.jsonl").is_file() and (out / "witnesses_eps=0.3.jsonl").is_file()
    assert not (out / "summary.json").exists()  # no report claiming "clear"


@pytest.mark.parametrize("claim,proven,start", [
    (None, 1.0, "no claim"), (1.0, 1.0, "confirmed"), (1.0, 2.5, "not confirmed"), ("x", 1.0, "unreadable"),
    (1.0, float("inf"), "not confirmed"),
])
def test_lipschitz_verdict(claim, proven, start):
    assert lipschitz_verdict(claim, proven).startswith(start)


def test_audit_our_checkpoint_folder(tmp_path):
    from nets.checkpoint import save_checkpoint
    from nets.models import ModelConfig, build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(arch="linf", input_shape=(1, 8, 8), depth=2, width=16)).eval()
    ckpt = save_checkpoint(tmp_path / "ckpt", net, {"dataset": "digits", "eps_train": 0.15})
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["audit", str(ckpt), "--data", "digits", "--eps", "0.1", "--out", str(out),
                                 "--limit", "30", "--steps", "10", "--grid", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["source"]["kind"] == "linfverify-checkpoint" and (out / "model.onnx").is_file()
    assert s["claims"]["claimed_lipschitz"] == 1.0 and s["lipschitz"]["verdict"].startswith("confirmed")
    assert s["certified_accuracy"] <= s["robust_accuracy"] <= s["clean_accuracy"]


@pytest.mark.parametrize("args,needle", [(["--eps", "-0.1"], "≥ 0"), (["--eps", "0.1", "--grid", "a,b"], "grid"),
                                         (["--eps", "0.1", "--grid", "0.1,-1"], "≥ 0"),
                                         (["--eps", "0.1", "--limit", "0"], "--limit must be ≥ 1")])
def test_audit_bad_options_one_line_no_output(mlp, tmp_path, args, needle):
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["audit", str(mlp), "--data", "digits", "--out", str(out), *args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output
    assert not out.exists()
