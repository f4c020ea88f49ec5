"""Every command's output is safe (issue 12, "tried as a new user would"):
`--out` never destroys an input or a device, failures of the operating system give one line and
exit 4, bad options are refused before any work, and two runs never write the same output at once."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from certify_helpers import labelled_mixed_head
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify_cli import app

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    model, x, y = labelled_mixed_head(d, 3, 8)
    np.savez(d / "d.npz", x=x, y=y)
    ext = d / "ext"
    ext.mkdir()
    m = onnx.load(str(model))
    onnx.save_model(m, str(ext / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    return d, model, d / "d.npz", ext / "m.onnx"


def _snapshot(paths):
    return {str(p): (os.lstat(p).st_mode, p.read_bytes() if p.is_file() else None) for p in paths}


def _one_line_error(r, code):
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr


def _certify(model, data, out, *extra):
    return runner.invoke(app, ["certify", str(model), "--data", str(data), "--eps", "0.01", "--out", str(out), *extra])


def _attack(model, data, out, *extra):
    return runner.invoke(app, ["attack", str(model), "--data", str(data), "--eps", "0.01", "--out", str(out),
                               "--steps", "2", "--targets", "0", *extra])


# ---------------------------------------------------------------- --out never destroys an input


@pytest.mark.parametrize("which", ["model", "data", "hardlink", "symlink"])
@pytest.mark.parametrize("command", ["certify", "attack"])
def test_out_that_is_an_input_is_refused(files, tmp_path, which, command):
    d, model, data, _ = files
    work = tmp_path / "w"
    work.mkdir()
    m, x = work / "m.onnx", work / "d.npz"
    m.write_bytes(model.read_bytes())
    x.write_bytes(data.read_bytes())
    out = {"model": m, "data": x, "hardlink": work / "link.jsonl", "symlink": work / "sym.jsonl"}[which]
    if which == "hardlink":
        os.link(x, out)
    if which == "symlink":
        out.symlink_to(m)
    before = _snapshot([m, x])
    r = (_certify if command == "certify" else _attack)(m, x, out)
    _one_line_error(r, 2)
    assert "input" in r.stderr
    assert _snapshot([m, x]) == before
    assert not (out.parent / (out.name + ".partial")).exists()


def test_external_data_file_of_the_model_is_an_input(files, tmp_path):
    _, _, data, ext_model = files
    data_file = ext_model.parent / "m.onnx.data"
    before = _snapshot([ext_model, data_file])
    r = _attack(ext_model, data, data_file)
    _one_line_error(r, 2)
    assert "m.onnx.data" in r.stderr
    assert _snapshot([ext_model, data_file]) == before


@pytest.mark.parametrize("kind", ["device-link", "fifo", "folder"])
def test_out_that_is_not_a_regular_file_is_refused(files, tmp_path, kind):
    _, model, data, _ = files
    out = tmp_path / "out.jsonl"
    if kind == "device-link":
        out.symlink_to("/dev/null")  # a link, so a failing run replaces the link, never the device
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out.mkdir()
    mode = os.lstat(out).st_mode
    for r in (_certify(model, data, out), _attack(model, data, out)):
        _one_line_error(r, 2)
        assert os.lstat(out).st_mode == mode
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_export_refuses_the_checkpoint_files_and_a_huge_config(tmp_path):
    from nets.checkpoint import save_checkpoint
    from nets.models import ModelConfig, build_model as build_net

    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, build_net(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=4)))
    before = _snapshot(list(ckpt.iterdir()))
    for name in ("model.safetensors", "config.json"):
        r = runner.invoke(app, ["export", str(ckpt), "--out", str(ckpt / name), "--no-check"])
        _one_line_error(r, 2)
    assert _snapshot(list(ckpt.iterdir())) == before
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(ckpt / "model.onnx"), "--no-check"])
    assert r.exit_code == 0, r.output  # a new file beside the checkpoint files is fine
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model"]["width"] = 10**12
    (ckpt / "config.json").write_text(json.dumps(cfg))
    r = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "big.onnx"), "--no-check"])
    _one_line_error(r, 2)
    assert "parameters" in r.stderr


def test_audit_refuses_a_report_folder_holding_its_inputs(files, tmp_path):
    _, model, data, _ = files
    m = tmp_path / "m.onnx"
    m.write_bytes(model.read_bytes())
    before = _snapshot([m])
    r = runner.invoke(app, ["audit", str(m), "--data", str(data), "--eps", "0.01", "--out", str(tmp_path),
                            "--limit", "2", "--steps", "2"])
    _one_line_error(r, 2)
    assert "contains the input" in r.stderr and _snapshot([m]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# ---------------------------------------------------------------- operating-system failures


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_os_failure_is_one_line_exit_4_and_keeps_the_old_output(files, tmp_path, monkeypatch, err):
    _, model, data, _ = files
    out = tmp_path / "c.jsonl"
    out.write_text("previous run\n")

    def fail(fd):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", fail)
    for r in (_certify(model, data, out), _attack(model, data, out)):
        _one_line_error(r, 4)
        assert os.strerror(err) in r.stderr
        assert out.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".partial")) == ["c.jsonl"]


def test_missing_output_folder_is_one_line(files, tmp_path):
    _, model, data, _ = files
    for r in (_certify(model, data, tmp_path / "no" / "c.jsonl"), _attack(model, data, tmp_path / "no" / "w.jsonl")):
        _one_line_error(r, 2)
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- bad options, before any work


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: every case below must be refused before."""
    import nets.train

    def trained(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(nets.train, "train_member", trained)


TRAIN = ["train", "--preset", "digits-small", "--epochs", "1", "--width", "8", "--depth", "2",
         "--train-limit", "16", "--test-limit", "16"]


@pytest.mark.parametrize("opts,needle", [
    (["--lr", "nan"], "lr"), (["--lr", "inf"], "lr"), (["--eps-train", "nan"], "eps_train"),
    (["--backend", "foo"], "backend"), (["--width", str(10**12)], "parameters"),
    (["--depth", "100000"], "depth"), (["--weight-decay", "nan"], "weight_decay"),
    (["--ema-decay", "nan"], "ema_decay"), (["--p-warm-epochs", "nan"], "p_warm_epochs"),
    (["--holdout", "-1"], "holdout"), (["--seed", "-1"], "seed"), (["--train-limit", "0"], "train_limit"),
    (["--device", "tpu"], "device"),
])
def test_train_bad_options_refused_before_training(tmp_path, no_training, opts, needle):
    r = runner.invoke(app, TRAIN + ["--out", str(tmp_path / "ck"), *opts])
    _one_line_error(r, 2)
    assert needle in r.stderr
    assert not (tmp_path / "ck").exists()


def test_train_out_file_refused_before_training(tmp_path, no_training):
    f = tmp_path / "f.txt"
    f.write_text("keep")
    r = runner.invoke(app, TRAIN + ["--out", str(f)])
    _one_line_error(r, 2)
    assert f.read_text() == "keep"


def test_demo_out_file_refused_before_training(tmp_path, no_training):
    f = tmp_path / "f.txt"
    f.write_text("keep")
    r = runner.invoke(app, ["demo", "--out", str(f), "--epochs", "1"])
    _one_line_error(r, 2)
    assert f.read_text() == "keep"


def test_out_of_range_counts_are_usage_errors(files, tmp_path):
    """lipschitz --search --budget 0 was a traceback; --bisect-steps 100000 ran for hours."""
    _, model, data, _ = files
    for args in (["lipschitz", str(model), "--search", "--budget", "0"],
                 ["lipschitz", str(model), "--search", "--budget", "-5"],
                 ["lipschitz", str(model), "--search", "--seed", "-1"],
                 ["certify", str(model), "--data", str(data), "--eps", "0.01", "--out", str(tmp_path / "c.jsonl"),
                  "--limit", "0", "--bisect-steps", "100000"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "Traceback" not in r.output and isinstance(r.exception, SystemExit), r.output
    assert not (tmp_path / "c.jsonl").exists()


def test_exit_codes_are_in_the_help():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    for piece in ("Exit codes", "1 a check failed", "4 the operating system", "5 another run"):
        assert piece in text, text


# ---------------------------------------------------------------- one writer per output


def test_second_writer_of_the_same_out_fails_at_once(files, tmp_path):
    _, model, data, _ = files
    out = tmp_path / "c.jsonl"
    lock = tmp_path / ".c.jsonl.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another run writing c.jsonl
        for r in (_certify(model, data, out), _attack(model, data, out)):
            _one_line_error(r, 5)
            assert "another run is writing" in r.stderr
        assert not out.exists() and not (tmp_path / "c.jsonl.partial").exists()
    finally:
        os.close(fd)
    r = _certify(model, data, out)
    assert r.exit_code == 0, r.output
    assert out.exists() and not lock.exists()  # the lock file goes away with its run


def test_every_writing_command_refuses_a_fifo_out(files, tmp_path, no_training):
    from nets.checkpoint import save_checkpoint
    from nets.models import ModelConfig, build_model as build_net

    _, model, data, _ = files
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, build_net(ModelConfig(arch="linf", input_shape=(1, 4, 4), depth=2, width=4)))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (["export", str(ckpt), "--out", str(fifo)], TRAIN + ["--out", str(fifo)],
                 ["demo", "--out", str(fifo), "--epochs", "1"],
                 ["audit", str(model), "--data", str(data), "--eps", "0.01", "--out", str(fifo)]):
        r = runner.invoke(app, args)
        _one_line_error(r, 2)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), args
