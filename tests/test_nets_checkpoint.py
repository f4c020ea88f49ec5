"""Checkpoints: exact round trip (parameters, buffers, ensembles, meta) and clear errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nets.checkpoint import load_checkpoint, save_checkpoint
from nets.ensemble import ConvexEnsemble
from nets.models import build_model
from common.errors import ModelError

META = {"train": {"epochs": 3, "preset": "tiny"}, "dataset": "digits", "input_range": [0.0, 1.0],
        "eps_train": 0.1, "metrics": {"clean": 0.9}}


def trained(cfg, seed=0):
    torch.manual_seed(seed)
    m = build_model(cfg)
    m(torch.rand(8, *cfg.input_shape))  # sets running means
    return m.eval()


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_exact(tmp_path, tiny_cfg):
    m = trained(tiny_cfg)
    assert any(v.abs().sum() > 0 for k, v in m.state_dict().items() if "running_mean" in k)
    save_checkpoint(tmp_path / "ck", m, META)
    m2, meta = load_checkpoint(tmp_path / "ck")
    assert meta == META and m2.config == tiny_cfg and not m2.training
    assert_same_state(m, m2)
    x = torch.rand(5, *tiny_cfg.input_shape)
    assert torch.equal(m(x), m2(x))
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary left behind


@pytest.mark.parametrize("mode", ["fusion", "voting"])
def test_ensemble_round_trip(tmp_path, mode, tiny_config):
    ens = ConvexEnsemble([trained(tiny_config("linf"), 1), trained(tiny_config("linf-mlp"), 2)],
                         [0.25, 0.75], mode=mode).eval()
    save_checkpoint(tmp_path / "ens", ens, {"dataset": "digits"})
    e2, meta = load_checkpoint(tmp_path / "ens" / "config.json")
    assert isinstance(e2, ConvexEnsemble) and e2.mode == mode and meta == {"dataset": "digits"}
    assert_same_state(ens, e2)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(ens(x), e2(x))


def test_overwrite_replaces_checkpoint_and_refuses_other_dirs(tmp_path, tiny_config):
    a, b = trained(tiny_config("linf"), 1), trained(tiny_config("linf"), 2)
    save_checkpoint(tmp_path / "ck", a, {})
    save_checkpoint(tmp_path / "ck", b, {"v": 2})
    m, meta = load_checkpoint(tmp_path / "ck")
    assert meta == {"v": 2}
    assert_same_state(m, b)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ModelError, match="refusing"):
        save_checkpoint(other, a, {})
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(ModelError, match="reserved"):
        save_checkpoint(tmp_path / "x", a, {"model": 1})
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(tmp_path / "x", a, {"eps_train": float("nan")})
    assert not (tmp_path / "x").exists()


def _corrupt(tmp_path, how, tiny_config):
    d = tmp_path / "ck"
    save_checkpoint(d, trained(tiny_config("linf-mlp")), META)
    cfg = json.loads((d / "config.json").read_text())
    if how == "missing-weights":
        (d / "model.safetensors").unlink()
    elif how == "garbage-weights":
        (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    elif how == "bad-json":
        (d / "config.json").write_text("{not json")
    elif how == "wrong-format":
        cfg["format"] = "something-else"
    elif how == "wrong-version":
        cfg["version"] = 99
    elif how == "wrong-width":
        cfg["model"]["width"] = 17
    elif how == "unknown-arch":
        cfg["model"]["arch"] = "transformer"
    elif how == "extra-tensor":
        from safetensors.torch import load_file, save_file
        t = load_file(str(d / "model.safetensors"))
        t["evil"] = torch.zeros(1)
        save_file(t, str(d / "model.safetensors"))
    elif how == "nan-weight":
        from safetensors.torch import load_file, save_file
        t = load_file(str(d / "model.safetensors"))
        t["head.0.bias"][0] = float("nan")
        save_file(t, str(d / "model.safetensors"))
    elif how == "symlink-outside":
        outside = tmp_path / "outside.safetensors"
        os.replace(d / "model.safetensors", outside)
        os.symlink(outside, d / "model.safetensors")
    if how in ("wrong-format", "wrong-version", "wrong-width", "unknown-arch"):
        (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("how", ["missing-weights", "garbage-weights", "bad-json", "wrong-format",
                                 "wrong-version", "wrong-width", "unknown-arch", "extra-tensor",
                                 "nan-weight", "symlink-outside"])
def test_malformed_checkpoint_is_one_line_model_error(tmp_path, how, tiny_config):
    d = _corrupt(tmp_path, how, tiny_config)
    with pytest.raises(ModelError) as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value) and str(e.value)


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a directory"):
        load_checkpoint(f)


def test_ema_wrapper_saves_averaged_weights_and_buffers(tmp_path, tiny_config):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    m = trained(tiny_config("linf")).train()
    ema = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    ema.update_parameters(m)  # the first update copies
    m(torch.rand(8, 1, 8, 8) + 1.0)  # moves m's running means
    ema.update_parameters(m)
    save_checkpoint(tmp_path / "ema", ema, {})
    loaded, _ = load_checkpoint(tmp_path / "ema")
    assert_same_state(ema.module, loaded)
    key = next(k for k in loaded.state_dict() if "running_mean" in k)
    assert not torch.equal(loaded.state_dict()[key], m.state_dict()[key])  # averaged, not the live model
