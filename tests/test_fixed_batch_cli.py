"""Fixed-batch models in every command of this front-end (issue 13, must-show 2): certify, check
and lipschitz on models whose batch dimension is fixed to 1 or 3, with sample counts that are not
multiples of it, give exactly the records of the same net with a dynamic batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from certify_helpers import build_model, mixed_head_net, ort_logits
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify_cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixed")
    layers = mixed_head_net(np.random.default_rng(12))
    paths = {b: build_model(layers, [6], d / f"b{b}.onnx", batch=b) for b in ("N", 1, 3)}
    x = np.random.default_rng(5).random((11, 6)).astype(np.float32)
    y = np.argmax(ort_logits(paths["N"], x), axis=1)
    y[::4] = (y[::4] + 1) % 4
    np.savez(d / "d.npz", x=x, y=y)
    return paths, d / "d.npz"


def _records(path):
    """(exact fields, radius and margin) per record: the bounds' last bits may depend on how many
    rows one BLAS call holds (both are sound lower bounds), the rest may not."""
    recs = [json.loads(s) for s in path.read_text().splitlines()[1:]]
    exact = [{k: v for k, v in r.items() if k not in ("model_sha256", "radius", "margin_lower")} for r in recs]
    return exact, np.array([[r.get("radius", 0.0), r.get("margin_lower", 0.0)] for r in recs], float)


def _same(a, b):
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("method", ["auto", "ibp"])
def test_certify_and_check_fixed_batch(nets, batch, method, tmp_path):
    paths, data = nets
    outs = {}
    for b in ("N", batch):
        out = tmp_path / f"c{b}.jsonl"
        for extra in (["--limit", "10"], ["--limit", "10", "--batch-size", "4"]):
            out.unlink(missing_ok=True)
            r = runner.invoke(app, ["certify", str(paths[b]), "--data", str(data), "--eps", "0.02",
                                    "--method", method, "--out", str(out), "--json", *extra])
            assert r.exit_code == 0, r.output
            assert json.loads(r.stdout)["n"] == 10
            outs.setdefault(b, _records(out))
            _same(_records(out), outs[b])
        r = runner.invoke(app, ["check", str(out), "--model", str(paths[b]), "--data", str(data), "--json"])
        assert r.exit_code == 0, r.output
    _same(outs[batch], outs["N"])
    assert {r["status"] for r in outs["N"][0]} >= {"certified", "misclassified"}


@pytest.mark.parametrize("batch", [1, 3])
def test_lipschitz_fixed_batch(nets, batch):
    paths, _ = nets
    reps = [json.loads(runner.invoke(app, ["lipschitz", str(paths[b]), "--json"]).stdout) for b in ("N", batch)]
    assert reps[0]["global"] == reps[1]["global"] > 1
    r = runner.invoke(app, ["lipschitz", str(paths[batch]), "--json", "--search", "--budget", "64"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    if "empirical" in rep:
        assert 0 < rep["empirical"]["ratio_lower"] <= rep["global"]
