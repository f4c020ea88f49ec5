"""End to end: the classifier families users train (tests/torch_classifiers.py), exported by either
torch exporter, load; their boxes hold onnxruntime's outputs; ``certify`` (tiny eps, a few samples)
and ``lipschitz`` run through the CLI; ``check`` accepts the certificates. One dynamo case per
family in the default run is too slow (the dynamo exporter takes seconds): the others are slow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from torch_classifiers import export, in_shape
from verify.front.model import load_model
from common.runtime import ort_logits, ort_session
from verify_cli import app

runner = CliRunner()
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore")]

CASES = [  # (family, dynamo, dynamic batch)
    ("cnn", False, True),
    ("resnet", True, True),
    ("vit_cls", True, False),
    pytest.param("mlp", True, True, marks=pytest.mark.slow),
    pytest.param("cnn", True, True, marks=pytest.mark.slow),
    pytest.param("resnet", False, True, marks=pytest.mark.slow),
    pytest.param("vit_mean", True, False, marks=pytest.mark.slow),
    pytest.param("vit_cls", False, False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("family,dynamo,dynamic", CASES)
def test_exported_classifier_certifies(family, dynamo, dynamic, tmp_path):
    p = tmp_path / f"{family}.onnx"
    export(family, p, dynamo, dynamic)
    m = load_model(p)
    rng = np.random.default_rng(0)
    x = rng.random((4, *in_shape(family))).astype(np.float32)
    sess = ort_session(p)
    y = np.concatenate([ort_logits(sess, x[i:i + 1]) for i in range(len(x))])
    assert np.allclose(m.forward(x), y, rtol=1e-4, atol=1e-4)
    eps = np.float32(1e-4)
    lo, hi = m.interval(np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1))
    assert np.all(lo <= y) and np.all(y <= hi)
    labels = np.argmax(y, axis=1)
    labels[-1] = (labels[-1] + 1) % y.shape[1]  # one wrong label: never certified
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    out = tmp_path / "c.jsonl"
    r = runner.invoke(app, ["certify", str(p), "--data", str(tmp_path / "d.npz"), "--eps", "1e-6",
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["n"] == 4 and s["certified"] <= 3
    if not family.startswith("vit"):  # piecewise-linear nets: a radius of 1e-6 is certified (the
        assert s["certified"] == 3  # ViT's LayerNorm boxes widen ~10x per block: docs/OPS.md)
    r = runner.invoke(app, ["check", str(out), "--model", str(p), "--data", str(tmp_path / "d.npz")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lipschitz", str(p)])
    assert r.exit_code == 0, r.output
    L = m.lipschitz()
    assert math.isinf(L) if family.startswith("vit") else math.isfinite(L)
