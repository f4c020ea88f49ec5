"""CLI: certify / check / lipschitz through typer's CliRunner (fixed interface of issue 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from certify_helpers import build_model, labelled_mixed_head
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify_cli import app

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model, x, y = labelled_mixed_head(d, 12, 20)
    y[::6] = (y[::6] + 1) % 4
    np.savez(d / "d.npz", x=x, y=y)
    return d, model, d / "d.npz"


def _certify(model, data, out, *extra):
    return runner.invoke(app, ["certify", str(model), "--data", str(data), "--eps", "0.02",
                               "--out", str(out), *extra])


def test_certify_json_then_check_passes(files, tmp_path):
    d, model, data = files
    out = tmp_path / "c.jsonl"
    r = _certify(model, data, out, "--json", "--batch-size", "7")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for k in ("n", "clean_accuracy", "certified_accuracy", "certified", "eps", "method", "model_sha256", "seconds"):
        assert k in s
    assert s["n"] == 20 and 0 < s["certified"] < 20
    assert s["certified_accuracy"] <= s["clean_accuracy"] < 1
    r = runner.invoke(app, ["check", str(out), "--model", str(model), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "passed" in r.stdout


def test_certify_table_output(files, tmp_path):
    d, model, data = files
    r = _certify(model, data, tmp_path / "c.jsonl", "--limit", "5", "--method", "ibp")
    assert r.exit_code == 0 and "certified accuracy" in r.stdout


@pytest.mark.parametrize("field,value", [("status", "certified"), ("radius", 0.9), ("model_sha256", "0" * 64)])
def test_check_fails_on_tampering(files, tmp_path, field, value):
    d, model, data = files
    out = tmp_path / "c.jsonl"
    assert _certify(model, data, out).exit_code == 0
    recs = [json.loads(s) for s in out.read_text().splitlines()]
    k = next(i for i, r in enumerate(recs) if r.get("status") == ("misclassified" if field == "status" else "certified"))
    recs[k][field] = value
    if field == "status":
        recs[k]["radius"] = 0.02
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = runner.invoke(app, ["check", str(out), "--model", str(model), "--data", str(data)])
    assert r.exit_code == 1
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and "Traceback" not in r.output


def _bad_npz(tmp_path, kind):
    p = tmp_path / f"{kind}.npz"
    if kind == "garbage":
        p.write_bytes(b"not a zip file at all")
    elif kind == "shape":
        np.savez(p, x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64))
    elif kind == "nolabels":
        np.savez(p, x=np.zeros((3, 6), np.float32))
    return p


@pytest.mark.parametrize("case", ["missing_model", "not_onnx", "garbage", "shape", "nolabels", "shard",
                                  "neg_eps", "out_dir"])
def test_bad_inputs_one_line_no_file(files, tmp_path, case):
    d, model, data = files
    out = tmp_path / "o.jsonl"
    args = {"model": model, "data": data, "extra": []}
    if case == "missing_model":
        args["model"] = tmp_path / "nope.onnx"
    elif case == "not_onnx":
        args["model"] = tmp_path / "fake.onnx"
        args["model"].write_bytes(b"\x00\x01 this is not a protobuf")
    elif case in ("garbage", "shape", "nolabels"):
        args["data"] = _bad_npz(tmp_path, case)
    elif case == "shard":
        args["extra"] = ["--shard", "3/2"]
    elif case == "out_dir":
        out = tmp_path / "nodir" / "o.jsonl"
    if case == "neg_eps":
        r = runner.invoke(app, ["certify", str(model), "--data", str(data), "--eps", "-1", "--out", str(out)])
    else:
        r = _certify(args["model"], args["data"], out, *args["extra"])
    assert r.exit_code != 0
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output
    assert not list(tmp_path.glob("o.jsonl*"))


def test_resume_via_cli_matches_uninterrupted(files, tmp_path):
    d, model, data = files
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    assert _certify(model, data, ref, "--batch-size", "6").exit_code == 0
    lines = ref.read_text().splitlines(keepends=True)
    (tmp_path / "out.jsonl.partial").write_text("".join(lines[:13]) + lines[13][:30])  # header + 12
    r = _certify(model, data, out, "--batch-size", "6", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["resumed"] == 12
    assert out.read_bytes() == ref.read_bytes()


def test_check_bad_file(files, tmp_path):
    d, model, data = files
    p = tmp_path / "c.jsonl"
    p.write_text("{}\n")
    r = runner.invoke(app, ["check", str(p), "--model", str(model), "--data", str(data)])
    assert r.exit_code == 1 and "run header" in r.stderr


def test_lipschitz_json_and_table(files):
    d, model, data = files
    r = runner.invoke(app, ["lipschitz", str(model), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["global"] > 1 and not rep["one_lipschitz"]
    ops = {n["op_type"]: n for n in rep["nodes"]}
    assert not ops["LinfDist"]["breaks"] and ops["Gemm"]["breaks"]
    assert rep["breaking"] == [n["name"] for n in rep["nodes"] if n["op_type"] == "Gemm"]
    r = runner.invoke(app, ["lipschitz", str(model)])
    assert r.exit_code == 0 and "global" in r.stdout and "breaks" in r.stdout


def test_lipschitz_check_shows_empirical_bound(files):
    d, model, data = files
    r = runner.invoke(app, ["lipschitz", str(model), "--json", "--search", "--budget", "256"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    if "empirical_note" in rep:
        pytest.skip(rep["empirical_note"])
    # the empirical ratio is a lower bound of the true constant, the static one an upper bound
    assert 0 < rep["empirical"]["ratio_lower"] <= rep["global"]


def test_certify_named_dataset_digits_nchw(tmp_path):
    """A pure NCHW net on the offline `digits` data set, --limit and --shard, then check."""
    from certify_helpers import random_linf_net

    rng = np.random.default_rng(4)
    model = build_model([("flatten",)] + random_linf_net(rng, [64, 16, 10]), [1, 8, 8], tmp_path / "d.onnx")
    outs = []
    for shard in ("0/2", "1/2"):
        out = tmp_path / f"c{shard[0]}.jsonl"
        r = runner.invoke(app, ["certify", str(model), "--data", "digits", "--eps", "0.05", "--out", str(out),
                                "--limit", "30", "--shard", shard, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["n"] == 15
        outs.append(out.read_text())
    both = tmp_path / "both.jsonl"
    both.write_text("".join(outs))
    r = runner.invoke(app, ["check", str(both), "--model", str(model), "--data", "digits", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["coverage"].startswith("30 of 360 samples of ") and rep["selection"]["shard"] == "0/2+1/2"
    assert rep["eps"] == 0.05 and sum(rep["counts"].values()) == 30
    (tmp_path / "half.jsonl").write_text(outs[0])  # one shard alone is also a complete claim
    assert runner.invoke(app, ["check", str(tmp_path / "half.jsonl"), "--model", str(model),
                               "--data", "digits"]).exit_code == 0
    lines = outs[0].splitlines(keepends=True)
    (tmp_path / "torn.jsonl").write_text("".join(lines[:-1]) + outs[1])  # a record missing
    r = runner.invoke(app, ["check", str(tmp_path / "torn.jsonl"), "--model", str(model), "--data", "digits"])
    assert r.exit_code == 1 and "no record" in r.stderr
