"""nets.train / data / presets / evaluate / demo and the `train` and `demo` CLI commands."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from nets import data as D
from nets.checkpoint import load_checkpoint
from nets.ensemble import ConvexEnsemble
from nets.evaluate import evaluate
from nets.models import ModelConfig, build_model, set_p
from nets.presets import PRESETS, ConfigError, apply_overrides, get_preset
from nets.train import DistInfo, make_ema, run_training

TINY = dict(train_limit=96, test_limit=64, epochs=2, width=16, depth=3, batch_size=32, threads=1,
            p_warm_epochs=0.5, anneal_epochs=1.0)


def _tiny(preset="digits-small", **kw):
    return apply_overrides(get_preset(preset), **{**TINY, **kw})


# ---------------------------------------------------------------- data


def test_augment_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) / 32
    g = D.seeded_generator(0)
    out = D.augment(x, D.Augment(pad=1), g)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= x.max()
    for b in range(2):  # each output is a shifted window of the zero-padded input
        padded = torch.nn.functional.pad(x[b, 0], (1, 1, 1, 1))
        assert any(torch.equal(out[b, 0], padded[i:i + 4, j:j + 4]) for i in range(3) for j in range(3))
    same = D.augment(x, D.Augment(pad=1), D.seeded_generator(0))
    assert torch.equal(out, same)
    flipped = D.augment(x, D.Augment(pad=0, hflip=True), D.seeded_generator(3))
    for b in range(2):
        assert torch.equal(flipped[b], x[b]) or torch.equal(flipped[b], x[b].flip(-1))


def test_shards_disjoint_and_cover():
    n, world = 103, 4
    shards = [D.shard_indices(n, epoch=2, seed=7, rank=r, world=world) for r in range(world)]
    allidx = torch.cat(shards)
    assert len(set(allidx.tolist())) == len(allidx) == (n // world) * world
    assert all(len(s) == n // world for s in shards)
    assert not torch.equal(D.shard_indices(n, 3, 7), D.shard_indices(n, 2, 7))


def test_iterate_batches_deterministic_and_drop_last():
    x = torch.rand(50, 1, 8, 8)
    y = torch.arange(50)
    a = list(D.iterate_batches(x, y, 16, epoch=0, seed=1, aug=D.Augment(pad=1)))
    b = list(D.iterate_batches(x, y, 16, epoch=0, seed=1, aug=D.Augment(pad=1)))
    assert len(a) == 3 == D.num_batches(50, 16)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))


def test_load_splits_holdout():
    s = D.load_splits("digits", holdout=100)
    assert len(s.train_x) == 1337 and len(s.holdout_x) == 100 and len(s.test_x) == 360
    assert s.input_shape == (1, 8, 8)


# ---------------------------------------------------------------- presets


def test_every_preset_is_valid_and_overrides_scale_phases():
    for name in PRESETS:
        cfg = get_preset(name)
        apply_overrides(cfg)  # validates
    cfg = apply_overrides(get_preset("mnist-linf"), epochs=40)
    assert (cfg.p_warm_epochs, cfg.anneal_epochs) == (5.0, 30.0)
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="exceed"):
        apply_overrides(get_preset("digits-small"), anneal_epochs=1000)
    with pytest.raises(ConfigError, match="MLP head"):
        apply_overrides(get_preset("digits-small"), loss="ibp")


def test_dist_env_parsed_as_ints(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    d = DistInfo.from_env()
    assert (d.rank, d.world, d.local_rank, d.enabled, d.is_main) == (2, 4, 0, True, False)
    monkeypatch.setenv("RANK", "9")
    with pytest.raises(ConfigError):
        DistInfo.from_env()


# ---------------------------------------------------------------- EMA and evaluation


def test_ema_averages_buffers_and_parameters():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=3, width=8))
    ema = make_ema(model, 0.9)
    ms = [m for m in model.modules() if hasattr(m, "running_mean")]
    assert ms
    rm0 = ms[0].running_mean.clone()
    w0 = model.trunk[1].weight.detach().clone()
    model.train()
    model(torch.rand(16, 1, 4, 4))  # updates running means
    with torch.no_grad():
        model.trunk[1].weight.add_(1.0)
    ema.update_parameters(model)  # first update copies
    ema.update_parameters(model)  # no change: stays equal
    ema_ms = [m for m in ema.module.modules() if hasattr(m, "running_mean")]
    torch.testing.assert_close(ema_ms[0].running_mean, ms[0].running_mean)
    new_rm = ms[0].running_mean.clone()
    model(torch.rand(16, 1, 4, 4) + 1.0)
    with torch.no_grad():
        model.trunk[1].weight.add_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema_ms[0].running_mean, 0.9 * new_rm + 0.1 * ms[0].running_mean)
    torch.testing.assert_close(ema.module.trunk[1].weight, w0 + 1.0 + 0.1)
    assert not torch.equal(rm0, ema_ms[0].running_mean)


def test_evaluate_pure_margin_rule():
    torch.manual_seed(1)
    model = build_model(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=8))
    model.eval()
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 10, (40,))
    set_p(model, math.inf)
    with torch.no_grad():
        z = model(x)
    top2 = z.topk(2, dim=1).values
    pred = z.argmax(1)
    for eps in (0.0, 0.01, 0.05):
        expect = ((pred == y) & (top2[:, 0] - top2[:, 1] > 2 * eps)).float().mean().item()
        got = evaluate(model, x, y, eps, batch_size=16)
        assert got["certified_accuracy"] == pytest.approx(expect)
        assert got["clean_accuracy"] == pytest.approx((pred == y).float().mean().item())
    ens = ConvexEnsemble([model, model], mode="voting")
    assert evaluate(ens, x, y, 0.01)["certified_accuracy"] is None


# ---------------------------------------------------------------- training


def test_seed_reproducible_and_ema_saved(tmp_path):
    r1 = run_training(_tiny(seed=3), tmp_path / "a")
    r2 = run_training(_tiny(seed=3), tmp_path / "b")
    r3 = run_training(_tiny(seed=4), None)
    s1, s2, s3 = (r.model.state_dict() for r in (r1, r2, r3))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    loaded, meta = load_checkpoint(tmp_path / "a")
    assert all(torch.equal(loaded.state_dict()[k], s1[k].cpu()) for k in s1)
    assert meta["dataset"] == "digits" and meta["eps_train"] == r1.config.eps_train
    assert 0.0 <= meta["metrics"]["test"]["clean_accuracy"] <= 1.0
    assert len(r1.history) == 2 and math.isinf(r1.history[-1].p)


@pytest.mark.parametrize("loss", ["ibp", "mixture"])
def test_mlp_losses_train_and_bound(tmp_path, loss):
    cfg = _tiny(arch="linf-mlp", loss=loss, hidden=12, eps_warm_epochs=1.0, kappa=0.5)
    res = run_training(cfg, None)
    assert all(math.isfinite(r.loss) for r in res.history)
    t = res.metrics["test"]
    assert 0.0 <= t["certified_accuracy"] <= t["clean_accuracy"] <= 1.0


def test_conv_model_trains_with_ibp():
    cfg = _tiny(arch="conv-linf-mlp", loss="ibp", conv_channels=(4, 4), conv_strides=(1, 2), depth=1,
                width=16, hidden=8, epochs=1, p_warm_epochs=0.25, anneal_epochs=0.5)
    res = run_training(cfg, None)
    assert math.isfinite(res.history[0].loss)
    assert res.metrics["test"]["certified_accuracy"] is not None


def test_members_make_a_fusion_ensemble(tmp_path):
    res = run_training(_tiny(members=2, epochs=1, p_warm_epochs=0.25, anneal_epochs=0.5), tmp_path / "ens")
    assert isinstance(res.model, ConvexEnsemble) and len(res.model.members) == 2
    m0, m1 = res.model.members
    assert not torch.equal(m0.trunk[1].weight, m1.trunk[1].weight)  # different seeds
    loaded, _ = load_checkpoint(tmp_path / "ens")
    assert isinstance(loaded, ConvexEnsemble)


def test_training_learns_on_digits():
    """A short real run must beat chance clearly (10 classes), clean and certified at small ε."""
    cfg = apply_overrides(get_preset("digits-small"), epochs=10, p_warm_epochs=1, anneal_epochs=6,
                          threads=1, eps_test=0.02)
    res = run_training(cfg, None)
    t = res.metrics["test"]
    assert t["clean_accuracy"] > 0.5
    assert t["certified_accuracy"] > 0.3


# ---------------------------------------------------------------- CLI


def _cli():
    import verify_cli

    return CliRunner(), verify_cli.app


def test_cli_train_writes_loadable_checkpoint(tmp_path):
    runner, app = _cli()
    out = tmp_path / "ck"
    r = runner.invoke(app, ["train", "--preset", "digits-small", "--epochs", "1", "--width", "16",
                            "--depth", "3", "--train-limit", "64", "--test-limit", "32",
                            "--batch-size", "32", "--out", str(out), "--seed", "1", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n"] == 32 and 0.0 <= summary["clean_accuracy"] <= 1.0
    model, meta = load_checkpoint(out)
    assert meta["train"]["seed"] == 1 and model.config.width == 16


def test_cli_train_errors_are_one_line(tmp_path):
    runner, app = _cli()
    r = runner.invoke(app, ["train", "--preset", "bogus"])
    assert r.exit_code == 2 and "unknown preset" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--preset", "mnist-small", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "mnist train files not found" in r.output


@pytest.mark.parametrize("arch,loss", [("linf", "hinge"), ("linf-mlp", "ibp")])
def test_joint_ensemble_training(tmp_path, arch, loss):
    cfg = _tiny(members=2, joint=True, arch=arch, loss=loss, hidden=8, epochs=1, p_warm_epochs=0.25,
                anneal_epochs=0.5)
    res = run_training(cfg, tmp_path / "j")
    assert isinstance(res.model, ConvexEnsemble) and len(res.model.members) == 2
    m0, m1 = res.model.members
    assert not torch.equal(m0.trunk[1].weight, m1.trunk[1].weight)
    assert len(res.history) == 1  # one joint run, not one per member
    loaded, _ = load_checkpoint(tmp_path / "j")
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(loaded(x), res.model.cpu()(x))


def test_nonfinite_loss_raises_user_error(monkeypatch):
    import nets.train as T
    from nets.presets import TrainingDiverged

    orig = T._loss
    monkeypatch.setattr(T, "_loss", lambda *a: orig(*a) * float("nan"))
    with pytest.raises(TrainingDiverged, match="non-finite loss"):
        run_training(_tiny(epochs=1, p_warm_epochs=0.25, anneal_epochs=0.5), None)


@pytest.mark.data
def test_mnist_small_path_on_real_data(tmp_path):
    from common.datasets import default_data_dir

    root = default_data_dir()
    if root is None or not (root / "mnist").is_dir():
        pytest.skip("../shared/data/mnist is absent (real MNIST not available here)")
    cfg = apply_overrides(get_preset("mnist-small"), data_dir=str(root), train_limit=1024,
                          test_limit=256, epochs=2, width=32, depth=3, batch_size=256, threads=1)
    res = run_training(cfg, tmp_path / "m")
    assert res.metrics["test"]["n"] == 256
    model, meta = load_checkpoint(tmp_path / "m")
    assert meta["dataset"] == "mnist" and model.config.input_shape == (1, 28, 28)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks(tmp_path):
    """DDP on CPU (gloo): two ranks, disjoint shards, one report, one loadable checkpoint."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29637", str(repo / "verify_cli.py"), "train", "--preset", "digits-small",
           "--epochs", "1", "--width", "16", "--depth", "3", "--train-limit", "256",
           "--test-limit", "64", "--device", "cpu", "--out", str(out), "--json"]
    env = dict(os.environ, PYTHONPATH=str(repo))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    reports = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # rank 0 only
    assert json.loads(reports[0])["n"] == 64
    load_checkpoint(out)
