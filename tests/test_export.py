"""export/: ONNX files of every model kind run in plain onnxruntime and match the torch model."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from export import build_onnx, export_model, read_metadata
from export.check import check_exported, compare_logits, ort_session, torch_logits
from nets.ensemble import ConvexEnsemble
from nets.layers import MeanShift
from nets.models import ModelConfig, build_model, set_p
from common import linf_spec
from common.errors import ModelError

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _randomise_means(model: nn.Module, gen: torch.Generator) -> None:
    for mod in model.modules():
        if isinstance(mod, MeanShift):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 3)


@st.composite
def configs(draw, archs=("linf", "linf-mlp", "conv-linf-mlp")):
    arch = draw(st.sampled_from(archs))
    c = draw(st.integers(1, 3))
    hw = draw(st.integers(4, 9))
    n_conv = draw(st.integers(1, 2))
    return ModelConfig(
        arch=arch, input_shape=(c, hw, hw), num_classes=draw(st.integers(2, 10)),
        depth=draw(st.integers(1 if arch != "conv-linf-mlp" else 0, 4)),
        width=draw(st.integers(1, 24)), hidden=draw(st.integers(1, 16)),
        conv_channels=tuple(draw(st.integers(1, 6)) for _ in range(n_conv)),
        conv_strides=tuple(draw(st.integers(1, 2)) for _ in range(n_conv)),
        conv_kernel=draw(st.sampled_from([1, 3])), mean_shift=draw(st.booleans()),
        identity_init=draw(st.booleans()),
    )


def _model(cfg: ModelConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = build_model(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        _randomise_means(m, gen)
        for mod in m.modules():  # non-zero dist-layer biases exercise the fold B = b − μ
            if getattr(mod, "bias", None) is not None and hasattr(mod, "p"):
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen))
    return m.eval()


def _parity(model: nn.Module, proto: onnx.ModelProto, shape, seed: int, n: int = 7):
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True, check_type=True)
    x = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    got = ort_session(proto).run(None, {"input": x})[0]
    want = torch_logits(model, x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert compare_logits(got, want) is None, compare_logits(got, want)
    return got, want


@SETTINGS
@given(cfg=configs(), seed=st.integers(0, 2**20))
def test_single_net_parity(cfg, seed):
    model = _model(cfg, seed)
    proto = build_onnx(model)
    got, want = _parity(model, proto, cfg.input_shape, seed)
    linf_nodes = [nd.op_type for nd in proto.graph.node if nd.domain == linf_spec.DOMAIN]
    n_conv = len(cfg.conv_channels) if cfg.arch == "conv-linf-mlp" else 0
    assert linf_nodes.count("LinfDistConv") == n_conv
    assert linf_nodes.count("LinfDist") == cfg.depth
    assert not any(nd.op_type == "Sub" for nd in proto.graph.node)  # every mean shift folded
    if cfg.arch == "linf":
        assert proto.graph.node[-1].op_type == "Neg"
        # pure nets: every step is exact or one rounding, in the same order as torch: bit-exact
        assert np.array_equal(got, want)
    for fn in proto.functions:
        linf_spec.check_function(fn, linf_spec.DEFAULT_OPSET)


@SETTINGS
@given(
    cfgs=st.lists(configs(), min_size=1, max_size=3),
    raw=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
    mode=st.sampled_from(["fusion", "voting"]),
    seed=st.integers(0, 2**20),
)
def test_ensemble_parity(cfgs, raw, mode, seed):
    base = cfgs[0]
    members = [
        _model(ModelConfig(**{**c.to_dict(), "input_shape": base.input_shape,
                              "num_classes": base.num_classes}), seed + i)
        for i, c in enumerate(cfgs)
    ]
    raw = [r + 1e-3 for r in raw[: len(members)]]
    weights = [r / math.fsum(raw) for r in raw]
    ens = ConvexEnsemble(members, weights, mode=mode).eval()
    proto = build_onnx(ens)
    _parity(ens, proto, base.input_shape, seed)
    mul_inits = {i.name: i for i in proto.graph.initializer if i.name.startswith("ensemble.weight")}
    assert len(mul_inits) == len(members)
    assert sum(nd.op_type == "Softmax" for nd in proto.graph.node) == (len(members) if mode == "voting" else 0)


def test_metadata_round_trip(tmp_path):
    model = _model(ModelConfig(arch="linf-mlp", input_shape=(1, 8, 8), depth=2, width=16, hidden=8), 3)
    path = tmp_path / "m.onnx"
    export_model(model, path, dataset="digits", eps_train=0.3, metadata={"note": "hello"})
    loaded = onnx.load(str(path), load_external_data=False)
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    meta = read_metadata(loaded)
    assert meta["producer"] == "linfverify" and meta["dataset"] == "digits"
    assert meta["architecture"] == "linf-mlp"
    assert meta["input_range"] == [0.0, 1.0] and meta["eps_train"] == 0.3
    assert meta["note"] == "hello" and meta["producer_version"]
    assert ModelConfig.from_dict(meta["model_config"]) == model.config
    w1, w2 = model.head[0].weight.detach().double(), model.head[2].weight.detach().double()
    expect = float(w1.abs().sum(1).max() * w2.abs().sum(1).max())
    assert meta["claimed_lipschitz"] == pytest.approx(expect, rel=1e-12)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
    assert [i.name for i in loaded.graph.input] == ["input"]
    assert [o.name for o in loaded.graph.output] == ["logits"]
    dims = loaded.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 8, 8]


def test_pure_net_claims_one_and_voting_claims_half():
    cfg = ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=8)
    pure = _model(cfg, 0)
    assert read_metadata(_with_meta(pure))["claimed_lipschitz"] == 1.0
    vote = ConvexEnsemble([pure, _model(cfg, 1)], [0.5, 0.5], mode="voting").eval()
    assert read_metadata(_with_meta(vote))["claimed_lipschitz"] == 0.5


def _with_meta(model):
    from export.metadata import build_metadata

    return build_onnx(model, metadata=build_metadata(model, dataset="x", eps_train=None))


def test_finite_p_and_unknown_modules_are_refused(tmp_path):
    model = _model(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=8), 0)
    set_p(model, 8.0)
    with pytest.raises(ModelError, match="p = ∞"):
        export_model(model, tmp_path / "a.onnx")
    model = _model(ModelConfig(arch="linf-mlp", input_shape=(1, 4, 4), depth=1, width=8, hidden=4), 0)
    model.head[1] = nn.GELU()
    with pytest.raises(ModelError, match="GELU"):
        export_model(model, tmp_path / "b.onnx")
    assert list(tmp_path.iterdir()) == []  # no partial or temp file left behind


def test_failed_check_writes_nothing_and_keeps_old_file(tmp_path):
    cfg = ModelConfig(arch="linf-mlp", input_shape=(1, 6, 6), depth=2, width=8, hidden=4)
    a, b = _model(cfg, 0), _model(cfg, 1)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ModelError, match="disagrees"):
        check_exported(build_onnx(a), b)  # the self-check can fail: a's file is not b's model
    with pytest.raises(ModelError):
        export_model(a, tmp_path / "missing" / "m.onnx")
    assert path.read_bytes() == b"old"
    export_model(a, path)
    assert path.read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_export_from_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from nets.checkpoint import save_checkpoint
    from verify_cli import app

    cfg = ModelConfig(arch="conv-linf-mlp", input_shape=(1, 8, 8), depth=1, width=8, hidden=4,
                      conv_channels=(3, 4), conv_strides=(1, 2))
    model = _model(cfg, 5)
    save_checkpoint(tmp_path / "ckpt", model, {"dataset": "digits", "eps_train": 0.1, "input_range": [0, 1]})
    out = tmp_path / "m.onnx"
    # typer collapses a one-command app into that command
    cmd = ["export"] if len(app.registered_commands) > 1 or app.registered_callback else []
    res = CliRunner().invoke(app, [*cmd, str(tmp_path / "ckpt"), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["linf_nodes"] == 3 and summary["dataset"] == "digits"
    proto = onnx.load(str(out))
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    assert compare_logits(ort_session(proto).run(None, {"input": x})[0], torch_logits(model, x)) is None
    bad = CliRunner().invoke(app, [*cmd, str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")])
    assert bad.exit_code != 0 and "error:" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("kind", ["linf", "linf-mlp", "conv-linf-mlp", "fusion", "voting"])
def test_verifier_reads_exported_files(tmp_path, kind):
    """Files stay compatible with the verifier: it loads them and computes what onnxruntime does."""
    from verify.front.model import load_model

    def net(arch, seed):
        return _model(ModelConfig(arch=arch, input_shape=(1, 6, 6), depth=2, width=8, hidden=4,
                                  conv_channels=(3,), conv_strides=(2,)), seed)

    if kind in ("fusion", "voting"):
        model = ConvexEnsemble([net("linf", 0), net("conv-linf-mlp", 1)], [0.25, 0.75], mode=kind).eval()
    else:
        model = net(kind, 2)
    path = tmp_path / "m.onnx"
    proto = export_model(model, path, dataset="digits", eps_train=0.1)
    vm = load_model(path)
    x = np.random.default_rng(0).random((5, 1, 6, 6), dtype=np.float32)
    y_ort = ort_session(proto).run(None, {"input": x})[0]
    np.testing.assert_allclose(vm.forward(x), y_ort, rtol=0, atol=1e-6)
    lo, hi = vm.interval(np.clip(x - 0.02, 0, 1), np.clip(x + 0.02, 0, 1))
    assert np.all(lo <= y_ort) and np.all(y_ort <= hi)
    if kind == "linf":
        assert vm.lipschitz() == pytest.approx(1.0)


@pytest.mark.parametrize("opset", [linf_spec.MIN_OPSET, 21, linf_spec.MAX_OPSET])
def test_every_supported_opset_exports_and_checks(opset):
    cfg = ModelConfig(arch="conv-linf-mlp", input_shape=(2, 7, 7), depth=1, width=6, hidden=4,
                      conv_channels=(3,), conv_strides=(2,))
    model = _model(cfg, opset)
    proto = build_onnx(model, opset=opset)
    check_exported(proto, model)  # full checker, strict shape inference, ORT parity vs torch
    assert {o.domain: o.version for o in proto.opset_import} == {"": opset, "linf": 1}
    for fn in proto.functions:
        linf_spec.check_function(fn, opset)
    with pytest.raises(ModelError, match="opsets"):
        build_onnx(model, opset=linf_spec.MAX_OPSET + 1)


def test_hand_built_net_standalone_shift_and_biased_fold():
    """Modules nets' builders never combine: a standalone MeanShift (a Sub node), a biased ℓ∞-dist
    layer followed by a mean shift (B = b − μ rounded once: within tolerance, not bit-exact), a
    non-square dilated strided conv, ReLU."""
    from nets.layers import LinfDistConv2d, LinfDistLinear
    from nets.models import LinfDistNet

    torch.manual_seed(0)
    cfg = ModelConfig(arch="linf-mlp", input_shape=(2, 6, 6), depth=1, width=5, hidden=4)
    conv = LinfDistConv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=True)
    trunk = nn.Sequential(MeanShift(2), conv, MeanShift(3), nn.Flatten(),  # 3 × 4 × 2 after the conv
                          LinfDistLinear(24, 5, bias=True), MeanShift(5))
    head = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 10))
    model = LinfDistNet(cfg, trunk, head)
    with torch.no_grad():
        _randomise_means(model, torch.Generator().manual_seed(1))
        for mod in trunk:
            if getattr(mod, "bias", None) is not None:
                mod.bias.normal_()
    model.eval()
    proto = build_onnx(model)
    ops = [nd.op_type for nd in proto.graph.node]
    assert ops == ["Sub", "LinfDistConv", "Flatten", "LinfDist", "Gemm", "Relu", "Gemm"]
    attrs = {a.name: list(a.ints) for a in proto.graph.node[1].attribute}
    assert attrs == {"strides": [2, 1], "pads": [1, 0, 1, 0], "dilations": [1, 2]}
    _parity(model, proto, cfg.input_shape, 0)


@SETTINGS
@given(cfg=configs(), seed=st.integers(0, 2**20))
def test_fast_path_is_bit_identical_to_function_bodies(cfg, seed):
    pytest.importorskip("onnxruntime_extensions", reason="optional fast path: pip install onnxruntime-extensions")
    from export.fast_ort import fast_session

    model = _model(cfg, seed)
    proto = build_onnx(model)
    x = np.random.default_rng(seed).random((3, *cfg.input_shape), dtype=np.float32)
    want = ort_session(proto).run(None, {"input": x})[0]
    assert np.array_equal(fast_session(proto).run(None, {"input": x})[0], want)


def test_fast_path_asymmetric_pads_missing_bias_and_tampered_body():
    pytest.importorskip("onnxruntime_extensions", reason="optional fast path: pip install onnxruntime-extensions")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    from export.fast_ort import fast_session

    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 2, 2, 3)).astype(np.float32)
    node = h.make_node("LinfDistConv", ["input", "W"], ["logits"], domain="linf",
                       strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2])
    g = h.make_graph([node], "g", [h.make_tensor_value_info("input", T.FLOAT, ["N", 2, 7, 8])],
                     [h.make_tensor_value_info("logits", T.FLOAT, [None] * 4)], [nh.from_array(w, "W")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("linf", 1)],
                     functions=linf_spec.make_linf_functions(18, ["LinfDistConv"]))
    m.ir_version = 9
    x = rng.random((2, 2, 7, 8), dtype=np.float32)
    ref = linf_spec.linf_dist_conv_reference(x, w, None, (2, 1), (1, 0, 2, 1), (1, 2))
    assert np.array_equal(ort_session(m).run(None, {"input": x})[0], ref)
    assert np.array_equal(fast_session(m).run(None, {"input": x})[0], ref)
    bad = onnx.ModelProto()
    bad.CopyFrom(m)
    bad.functions[0].node[0].op_type = "Identity"
    with pytest.raises(ModelError, match="canonical"):
        fast_session(bad)
