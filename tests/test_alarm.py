"""Soundness alarm: a planted lying certifier must trip the alarm end to end (exit 3, both files kept);
an honest certifier on an ℓ∞-dist net must never conflict with the attack."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attack_helpers import linf_net_onnx, relu_mlp_onnx, train_relu_mlp
from verify.attack.alarm import check_consistency, find_conflicts
from verify.certify.certifier import BatchResult, Certifier
from common.datasets import load_arrays
from common.errors import SoundnessAlarm
from verify_cli import app


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    xtr, ytr = load_arrays("digits", "train")
    path = tmp_path_factory.mktemp("alarm") / "mlp.onnx"
    return relu_mlp_onnx(path, train_relu_mlp(xtr, ytr, hidden=(32,), epochs=15), (1, 8, 8))


def _lying_run(self, x, y):
    """A deliberately wrong certifier: everything certified with a huge radius."""
    n = len(y)
    return BatchResult(status=["certified"] * n, predicted=np.asarray(y, np.int64).copy(),
                       radius=np.full(n, 1e9), margin_lower=np.full(n, 1e9), method=["ibp"] * n)  # a liar


def test_planted_wrong_certifier_fires_alarm_through_cli(mlp, tmp_path, monkeypatch):
    certs, wits = tmp_path / "certs.jsonl", tmp_path / "witnesses.jsonl"
    monkeypatch.setattr(Certifier, "run", _lying_run)
    runner = CliRunner()
    r = runner.invoke(app, ["certify", str(mlp), "--data", "digits", "--eps", "0.3", "--out", str(certs),
                            "--limit", "30", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["certified"] == 30  # the liar claims everything
    r = runner.invoke(app, ["attack", str(mlp), "--data", "digits", "--eps", "0.3", "--out", str(wits),
                            "--limit", "30", "--steps", "30", "--certs", str(certs)])
    assert r.exit_code == 3, r.output
    assert "SOUNDNESS ALARM" in r.output and str(certs) in r.output and str(wits) in r.output
    assert "Traceback" not in r.output
    # both artifacts are kept, complete, and the conflicting records are in them
    assert len(certs.read_text().splitlines()) == 31  # the header and 30 records
    recs = [json.loads(line) for line in wits.read_text().splitlines()[1:]]
    assert len(recs) == 30 and any(rec["status"] == "falsified" for rec in recs)


def test_honest_certifier_never_conflicts_on_linf_net(tmp_path):
    rng = np.random.default_rng(1)
    w = [rng.normal(size=(24, 64)).astype(np.float32) * 0.3 + 0.5, rng.normal(size=(10, 24)).astype(np.float32)]
    model = linf_net_onnx(tmp_path / "linf.onnx", w, np.zeros(10, np.float32), (1, 8, 8))
    # labels = the model's own predictions so every sample is in play
    from verify.attack.replay import OrtReplayer

    x, _ = load_arrays("digits", "test")
    x = x[:60]
    y = OrtReplayer(model).logits(x).argmax(1)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    runner = CliRunner()
    for eps in ("0.02", "0.06"):
        certs, wits = tmp_path / f"c{eps}.jsonl", tmp_path / f"w{eps}.jsonl"
        r = runner.invoke(app, ["certify", str(model), "--data", str(data), "--eps", eps, "--out", str(certs), "--json"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["attack", str(model), "--data", str(data), "--eps", eps, "--out", str(wits),
                                "--steps", "30", "--certs", str(certs), "--json"])
        assert r.exit_code == 0, r.output
        s = json.loads(r.stdout)
        assert "alarm_pairs_checked" in s
        n_cert = sum(json.loads(line).get("status") == "certified" for line in certs.read_text().splitlines())
        r = runner.invoke(app, ["attack", str(model), "--data", str(data), "--eps", eps, "--out", str(wits),
                                "--steps", "30", "--certs", str(certs), "--skip-certified", "--json"])
        assert r.exit_code == 0, r.output
        s2 = json.loads(r.stdout)
        assert s2["skipped_certified"] == n_cert
        assert s2["robust_accuracy"] >= n_cert / s2["n"]  # skipped certified samples stay robust


def _rec(status, eps=0.1, radius=0.0, dist=None, sha="a" * 64):
    r = {"index": 0, "input_sha256": sha, "model_sha256": "b" * 64, "status": status, "eps": eps,
         "radius": radius, "label": 1}
    if dist is not None:
        r.update(witness=[0.0], witness_distance=dist, adv_predicted=2)
    return r


@pytest.mark.parametrize("cert,dist,conflict", [
    (_rec("certified", eps=0.1), 0.1, True),          # closed ball certified, witness on its edge
    (_rec("certified", eps=0.1), 0.1000001, False),   # witness outside the certified ball
    (_rec("not_certified", radius=0.05), 0.05, False),  # radius is an open-ball claim
    (_rec("not_certified", radius=0.05), 0.0499, True),
    (_rec("unknown", radius=0.0), 0.0, False),
])
def test_conflict_rule(cert, dist, conflict):
    wit = _rec("falsified", dist=dist)
    assert bool(find_conflicts([cert], [wit])) == conflict
    if conflict:
        with pytest.raises(SoundnessAlarm, match="certs.jsonl.*wits.jsonl"):
            check_consistency([cert], "certs.jsonl", [wit], "wits.jsonl")


def test_other_inputs_or_models_do_not_match():
    cert = _rec("certified", eps=0.3)
    assert not find_conflicts([cert], [_rec("falsified", dist=0.01, sha="c" * 64)])
    other_model = dict(_rec("falsified", dist=0.01), model_sha256="d" * 64)
    assert not find_conflicts([cert], [other_model])


@pytest.mark.slow
def test_trained_linf_net_never_certified_and_falsified(tmp_path):
    """Must-show 3 on a trained ℓ∞-dist net (digits-small, ~2 min): certify and attack every test
    sample at two ε; the alarm must stay clear and certified ≤ robust ≤ clean."""
    runner = CliRunner()
    ckpt, model = tmp_path / "ckpt", tmp_path / "m.onnx"
    r = runner.invoke(app, ["train", "--preset", "digits-small", "--epochs", "20", "--out", str(ckpt)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["export", str(ckpt), "--out", str(model)]).exit_code == 0
    for eps in ("0.05", "0.1"):
        certs, wits = tmp_path / f"c{eps}.jsonl", tmp_path / f"w{eps}.jsonl"
        r = runner.invoke(app, ["certify", str(model), "--data", "digits", "--eps", eps, "--out", str(certs), "--json"])
        assert r.exit_code == 0, r.output
        cert_acc = json.loads(r.stdout)["certified_accuracy"]
        r = runner.invoke(app, ["attack", str(model), "--data", "digits", "--eps", eps, "--out", str(wits),
                                "--certs", str(certs), "--json"])
        assert r.exit_code == 0, r.output  # exit 3 would be the soundness alarm
        s = json.loads(r.stdout)
        assert cert_acc <= s["robust_accuracy"] <= s["clean_accuracy"]
