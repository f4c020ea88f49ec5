"""Issue 13, must-show 1: what torch's two exporters write, read as a user brings it.

An ℓ∞-dist net written in plain torch (``(x.unsqueeze(1) - w).abs().amax(-1)``) and a small CNN
(Conv–BatchNorm–ReLU–MaxPool–AdaptiveAvgPool–Linear), exported with ``torch.onnx.export`` both
ways: dynamo (torch 2.13's default: external data ``model.onnx.data``, a batch dimension fixed
to the example's) and TorchScript (dynamic batch axis; once more re-saved with every tensor in
external data). Each file goes through the CLI: ``lipschitz``, ``certify``, ``check`` of the
certificates, ``attack`` with the soundness alarm against them, ``check`` of the witnesses.
The ℓ∞ net's Lipschitz bound is exactly 1; the pure torch model's logits equal onnxruntime's.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from common.runtime import ort_logits, ort_session
from verify_cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
N_SAMPLES = 7  # not a multiple of the dynamo export's fixed batch size (2)


class LinfLayer(nn.Module):
    """y[n, m] = max_d |x[n, d] - w[m, d]| + b[m], written as a user would."""

    def __init__(self, d: int, m: int):
        super().__init__()
        self.w = nn.Parameter(torch.rand(m, d))
        self.b = nn.Parameter(0.1 * torch.randn(m))

    def forward(self, x):
        return (x.unsqueeze(1) - self.w).abs().amax(-1) + self.b


class LinfNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(LinfLayer(16, 24), LinfLayer(24, 24), LinfLayer(24, 4))

    def forward(self, x):
        return -self.layers(x.flatten(1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.gap(self.pool(torch.relu(self.bn(self.conv(x))))).flatten(1))


def _net(kind: str) -> nn.Module:
    torch.manual_seed(0)
    net = LinfNet() if kind == "linf" else SmallCNN()
    if kind == "cnn":  # running statistics that are not the identity
        with torch.no_grad():
            net.bn.running_mean.uniform_(-0.2, 0.2)
            net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def export(kind: str, exporter: str, folder) -> tuple:
    """(path, the torch net) of ``kind`` exported by ``exporter`` as a user would call it."""
    net = _net(kind)
    x = torch.rand(2, 1, 4, 4)
    path = folder / f"{kind}_{exporter}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"], output_names=["logits"])
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    if exporter == "torchscript-external":
        m = onnx.load(str(path))
        onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    return path, net


def _data(path, net, folder, seed=0):
    """N_SAMPLES inputs in [0, 1] labelled with the net's prediction, every third one mislabelled."""
    x = np.random.default_rng(seed).random((N_SAMPLES, 1, 4, 4), dtype=np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    y[::3] = (y[::3] + 1) % 4
    np.savez(folder / "d.npz", x=x, y=y)
    return folder / "d.npz", x


def _ok(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


CASES = [(k, e) for k in ("linf", "cnn") for e in ("dynamo", "torchscript", "torchscript-external")]


@pytest.mark.parametrize("kind,exporter", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_exported_model_certify_attack_check(kind, exporter, tmp_path):
    path, net = export(kind, exporter, tmp_path)
    data_file = path.with_name(path.name + ".data")
    if exporter != "torchscript":
        assert data_file.is_file()  # external data, as the exporter wrote it
    if kind == "linf" and exporter != "torchscript":
        assert data_file.stat().st_size > 0
    fixed = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    assert (fixed.dim_value == 2) == (exporter == "dynamo")  # dynamo fixes the batch to the example's
    data, x = _data(path, net, tmp_path)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = ort_logits(ort_session(path), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    lip = _ok(runner.invoke(app, ["lipschitz", str(path), "--json"]))
    if kind == "linf":
        assert lip["global"] == 1.0 and lip["one_lipschitz"]

    certs = tmp_path / "c.jsonl"
    eps = "0.005"
    s = _ok(runner.invoke(app, ["certify", str(path), "--data", str(data), "--eps", eps, "--out", str(certs),
                                "--batch-size", "3", "--json"]))
    assert s["n"] == N_SAMPLES and s["counts"]["misclassified"] >= 3
    if kind == "linf":
        assert s["certified"] > 0  # with L = 1 a margin above 2 eps = 0.01 is a proof; most samples have one
    r = runner.invoke(app, ["check", str(certs), "--model", str(path), "--data", str(data)])
    assert r.exit_code == 0 and "passed" in r.stdout, r.output

    wit = tmp_path / "w.jsonl"
    a = _ok(runner.invoke(app, ["attack", str(path), "--data", str(data), "--eps", "0.5", "--out", str(wit),
                                "--steps", "20", "--batch-size", "3", "--certs", str(certs), "--json"]))
    assert a["n"] == N_SAMPLES and a["falsified"] > 0  # eps 0.5 is far beyond these nets' margins
    r = runner.invoke(app, ["check", str(wit), "--model", str(path), "--data", str(data)])
    assert r.exit_code == 0, r.output
