"""Seed-checkpoint conversion: fake v1/v2 pure/+MLP state_dicts (with the seed code's key names,
DDP prefix, {"state_dict": ...} wrapper) must give our model logits equal to a direct
re-implementation of the seed forward (normalised input, 1/sqrt(fan_in) head scaling)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from nets.seed_compat import SEED_NORMALIZATION, convert_seed_checkpoint, detect_layout, load_seed_state_dict
from common.errors import ModelError

D, W, H, K = 784, 24, 16, 10


def _fake(version: str, kind: str, depth: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def dist(prefix, n_in, n_out, shift_key=None, bias=False):
        w = torch.randn(n_out, n_in, generator=g) * 0.5
        sd[prefix + ".weight"] = w[:, :, None, None] if version == "v1" else w
        if shift_key:
            sd[prefix + shift_key] = torch.randn(n_out, generator=g)
        if bias:
            sd[prefix + ".bias"] = torch.randn(n_out, generator=g)

    shift = ".normalize.running_mean" if version == "v1" else ".mean_shift.running_mean"
    base = "feature.fc" if version == "v1" else "fc_dist"
    n_in = D
    n_hidden = depth - 1 if kind == "pure" else depth
    for i in range(n_hidden):
        dist(f"{base}.{i}", n_in, W, shift)
        n_in = W
    if kind == "pure":
        last = "feature.fc_last" if version == "v1" else f"fc_dist.{n_hidden}"
        dist(last, n_in, K, None, bias=True)
        if version == "v2":
            sd["scalar"] = torch.tensor([1.7])
    else:
        h1, h2 = ("predictor.fc1", "predictor.fc2") if version == "v1" else ("fc_linear.0", "fc_final")
        sd[h1 + ".weight"], sd[h1 + ".bias"] = torch.randn(H, W, generator=g), torch.randn(H, generator=g)
        sd[h2 + ".weight"], sd[h2 + ".bias"] = torch.randn(K, H, generator=g), torch.randn(K, generator=g)
    return sd


def test_v2_affine_mean_shift_bias_folds(tmp_path):
    sd = _fake("v2", "mlp")
    sd["fc_dist.0.mean_shift.bias"] = torch.randn(W)
    path = tmp_path / "a.pth"
    torch.save(sd, path)
    model, _ = convert_seed_checkpoint(path, "mnist")
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        ours = model(x).double()
    torch.testing.assert_close(ours, _seed_forward(sd, "v2", "mlp", x), rtol=1e-5, atol=1e-5)


def _seed_forward(sd, version, kind, x, dataset="mnist"):
    """Direct re-implementation of the seed models' eval forward (float64)."""
    mean, std = SEED_NORMALIZATION[dataset]
    h = ((x.double() - mean[0]) / std).reshape(len(x), -1)
    lay = detect_layout(sd)
    for i, prefix in enumerate(lay.dist):
        w = sd[prefix + ".weight"].double().reshape(sd[prefix + ".weight"].shape[0], -1)
        h = (h[:, None, :] - w[None]).abs().amax(-1)
        if i < len(lay.shifts):
            mean = sd[lay.shifts[i]].double()
            affine = lay.shifts[i][: -len("running_mean")] + "bias"
            h = h - (mean - sd[affine].double() if affine in sd else mean)
        if prefix + ".bias" in sd:
            h = h + sd[prefix + ".bias"].double()
    if kind == "pure":
        return -h * (float(sd["scalar"][0]) if "scalar" in sd else 1.0)
    (w1, b1), (w2, b2) = [(sd[p + ".weight"].double(), sd[p + ".bias"].double()) for p in lay.head]
    z = torch.tanh(h @ w1.T / math.sqrt(w1.shape[1]) + b1)
    return z @ w2.T / math.sqrt(w2.shape[1]) + b2


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("kind", ["pure", "mlp"])
@pytest.mark.parametrize("wrap", ["plain", "ddp"])
def test_conversion_parity(tmp_path, version, kind, wrap):
    sd = _fake(version, kind)
    saved = {"module." + k: v for k, v in sd.items()} if wrap == "ddp" else sd
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": saved, "epoch": 3} if wrap == "ddp" else saved, path)
    model, notes = convert_seed_checkpoint(path, "mnist")
    assert notes["seed_version"] == version and notes["seed_kind"] == kind
    x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x).double()
    ref = _seed_forward(sd, version, kind, x) * notes["logit_scale_vs_seed"]
    scale = float(ref.abs().max())
    assert float((ours - ref).abs().max()) <= 1e-5 * max(1.0, scale)
    assert torch.equal(ours.argmax(1), ref.argmax(1))


def test_pure_logit_scale_is_std_over_scalar():
    sd = _fake("v2", "pure")
    from nets.seed_compat import convert_state_dict

    _, notes = convert_state_dict(sd, "mnist")
    assert notes["logit_scale_vs_seed"] == pytest.approx(0.3081 / 1.7)


def test_head_scaling_is_not_optional():
    """Without the 1/sqrt(fan_in) head scaling the logits would be wrong: guard the fold."""
    from nets.seed_compat import convert_state_dict

    sd = _fake("v1", "mlp")
    model, _ = convert_state_dict(sd, "mnist")
    lin = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    w2 = sd["predictor.fc2.weight"]
    torch.testing.assert_close(lin[1].weight, (w2 / math.sqrt(w2.shape[1])).float())


def test_exported_seed_model_runs_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    from export import export_model

    sd = _fake("v1", "pure", depth=2)
    path = tmp_path / "s.pth"
    torch.save(sd, path)
    model, notes = convert_seed_checkpoint(path, "mnist")
    onnx_path = tmp_path / "s.onnx"
    export_model(model, onnx_path, dataset="mnist", metadata={"seed_conversion": notes})
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    z = s.run(None, {s.get_inputs()[0].name: x})[0]
    ref = (_seed_forward(sd, "v1", "pure", torch.from_numpy(x)) * notes["logit_scale_vs_seed"]).numpy()
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(ModelError, match="weights-only"):
        load_seed_state_dict(path)


@pytest.mark.parametrize("bad", [{"foo.weight": torch.zeros(2, 2)}, {}])
def test_unknown_layout_is_one_line_error(tmp_path, bad):
    path = tmp_path / "x.pth"
    torch.save(bad, path)
    with pytest.raises(ModelError):
        convert_seed_checkpoint(path, "mnist")


def test_wrong_dataset_size_is_refused(tmp_path):
    path = tmp_path / "x.pth"
    torch.save(_fake("v2", "mlp"), path)
    with pytest.raises(ModelError, match="inputs"):
        convert_seed_checkpoint(path, "cifar10")
