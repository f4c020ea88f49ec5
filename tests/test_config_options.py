"""The `train` command's options are derived from TrainConfig (itself derived from ModelConfig)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from nets.config import ModelConfig
from nets.presets import MODEL_FIELDS, TrainConfig, apply_overrides, get_preset, model_config_for
from verify_cli import app


def test_every_field_is_an_option_and_model_fields_come_from_modelconfig():
    help_ = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for f in dataclasses.fields(TrainConfig):
        if f.name != "notes":
            assert "--" + f.name.replace("_", "-") in help_, f.name
    want = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("input_shape", "num_classes", "extra")]
    assert list(MODEL_FIELDS) == want
    cfg = apply_overrides(get_preset("digits-small"), arch="lenet", conv_kernel=3, conv_padding=(1, 1))
    m = model_config_for(cfg, (1, 8, 8))
    assert m.conv_channels == (6, 16) and m.conv_pool == (2, 2) and m.widths == (120, 1024)


def test_cli_trains_a_lenet_mlp_with_madam_and_lse_then_exports_it(tmp_path):
    runner = CliRunner()
    out = tmp_path / "ck"
    r = runner.invoke(app, ["train", "--preset", "digits-small", "--arch", "lenet-mlp", "--loss", "ibp",
                            "--conv-channels", "2,3", "--conv-kernel", "3", "--conv-padding", "1,1",
                            "--widths", "8", "--hidden", "4", "--optimizer", "madam", "--lr", "0.01",
                            "--relaxation", "lse", "--epochs", "2", "--train-limit", "64", "--test-limit",
                            "16", "--batch-size", "32", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n"] == 16
    onnx_path = tmp_path / "m.onnx"
    r = runner.invoke(app, ["export", str(out), "--out", str(onnx_path)])
    assert r.exit_code == 0, r.output
    import onnx

    from export.metadata import read_metadata

    meta = read_metadata(onnx.load(onnx_path))
    assert meta["architecture"] == "lenet-mlp"
    assert [n.op_type for n in onnx.load(onnx_path).graph.node].count("MaxPool") == 2


@pytest.mark.parametrize("args, msg", [
    (["--conv-channels", "6,x"], "comma-separated integers"),
    (["--arch", "resnet"], "unknown arch"),
    (["--optimizer", "sgd"], "unknown optimizer"),
    (["--relaxation", "softmax"], "unknown relaxation"),
    (["--arch", "lenet"], "shrinks"),  # 8×8 digits through 5×5 convs and two pools
])
def test_bad_options_are_one_line_errors(tmp_path, args, msg):
    r = CliRunner().invoke(app, ["train", "--preset", "digits-small", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()
