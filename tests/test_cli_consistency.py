"""The CLI behaves the same everywhere (issue 14; docs/CLI.md, "Options that mean the same everywhere"):
one test per row of the consistency table, the shared option definitions, progress on stderr only,
human tables, the console script."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tomllib
from pathlib import Path

import click
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from certify_helpers import labelled_mixed_head
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from pipeline.cli_options import SHARED_HELP
from verify_cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
QUICK = {"certify": [], "attack": ["--steps", "5", "--targets", "0"],
         "audit": ["--steps", "5", "--grid", "0.05"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("consistency")
    model, x, y = labelled_mixed_head(d, 5, 8)
    np.savez(d / "d.npz", x=x, y=y)
    return model, d / "d.npz"


def _run(cmd: str, model, data, out: Path, *args, env=None):
    return runner.invoke(app, [cmd, str(model), "--data", str(data), "--out", str(out), *QUICK[cmd], *args],
                         env=env)


def _commands() -> dict[str, click.Command]:
    return typer.main.get_command(app).commands


# ---- row: --eps 0 means the sample itself, in every command


@pytest.mark.parametrize("cmd", ["certify", "attack", "audit"])
def test_eps_zero_is_accepted_everywhere(files, tmp_path, cmd):
    model, data = files
    r = _run(cmd, model, data, tmp_path / "o", "--eps", "0", "--json", "--limit", "4")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["eps"] == 0.0 and s["n"] == 4
    if cmd != "attack":
        assert s["certified_accuracy"] == s["clean_accuracy"]  # at ε = 0 a correct sample is certified
    if cmd != "certify":
        assert s["falsified"] == 0  # nothing to search in a ball of radius 0


@pytest.mark.parametrize("cmd", ["certify", "attack", "audit"])
@pytest.mark.parametrize("eps", ["-0.1", "nan", "inf"])
def test_bad_eps_is_refused_everywhere(files, tmp_path, cmd, eps):
    model, data = files
    out = tmp_path / "new" / "o" if cmd == "audit" else tmp_path / "o"
    r = _run(cmd, model, data, out, "--eps", eps)
    assert r.exit_code == 2 and "--eps must be a finite number ≥ 0" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


# ---- row: --limit N means the first N ≥ 1 samples; 0 is refused; default all


@pytest.mark.parametrize("cmd", ["certify", "attack", "audit"])
def test_limit_zero_is_refused_everywhere(files, tmp_path, cmd):
    model, data = files
    r = _run(cmd, model, data, tmp_path / "o", "--eps", "0.01", "--limit", "0")
    assert r.exit_code == 2 and "--limit must be ≥ 1" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_limit_defaults_to_all_everywhere():
    limits = {name: p for name, c in _commands().items() for p in c.params if p.name == "limit"}
    assert set(limits) == {"certify", "attack", "audit"}
    assert all(p.default is None for p in limits.values())


# ---- row: one option name, one meaning (--check is export's checker; lipschitz searches with --search)


def test_check_means_one_thing():
    has = {name: {o for p in c.params for o in p.opts} for name, c in _commands().items()}
    assert [n for n, opts in has.items() if "--check" in opts] == ["export"]
    assert "--search" in has["lipschitz"]


# ---- row: every file a command writes is 0666 & ~umask (0644 under umask 022)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_output_files_honour_the_umask(files, tmp_path, umask):
    model, data = files
    old = os.umask(umask)
    try:
        assert _run("certify", model, data, tmp_path / "c.jsonl", "--eps", "0.01").exit_code == 0
        assert _run("attack", model, data, tmp_path / "w.jsonl", "--eps", "0.01").exit_code == 0
        r = _run("audit", model, data, tmp_path / "rep", "--eps", "0.05", "--limit", "3")
        assert r.exit_code == 0, r.output
    finally:
        os.umask(old)
    written = [tmp_path / "c.jsonl", tmp_path / "w.jsonl", *(tmp_path / "rep").iterdir()]
    assert len(written) >= 6
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o666 & ~umask}


# ---- row: tables for people (labels, percentages, plurals) and paths never cut at 80 columns


def test_attack_table_has_labels_and_percentages(files, tmp_path):
    model, data = files
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "and-another-long-one"
    deep.mkdir(parents=True)
    out = deep / "witnesses.jsonl"
    r = _run("attack", model, data, out, "--eps", "0.3", env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "clean_accuracy" not in r.stdout and "clean accuracy" in r.stdout and " %" in r.stdout
    assert not re.search(r"\b1 falsified samples\b", r.stdout) and "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines() if "│" in line) <= 80
    assert f"written: {out}" in r.stdout.splitlines()  # on a line of its own, whole (the terminal wraps it)


def test_certify_table_keeps_the_whole_path_at_80_columns(files, tmp_path):
    model, data = files
    deep = tmp_path / ("x" * 90)
    deep.mkdir()
    r = _run("certify", model, data, deep / "c.jsonl", "--eps", "0.01", env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout and f"written: {deep / 'c.jsonl'}" in r.stdout.splitlines()


def test_plural():
    from pipeline.tables import plural

    assert plural(1, "falsified sample") == "1 falsified sample"
    assert plural(2, "falsified sample") == plural(2, "falsified sample") == "2 falsified samples"


# ---- row: audit leaves nothing behind after an error; its plot is labelled


def test_audit_error_leaves_no_folder(files, tmp_path):
    _, data = files
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    out = tmp_path / "new" / "rep"
    r = runner.invoke(app, ["audit", str(bad), "--data", str(data), "--eps", "0.1", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]  # neither new/ nor new/rep/


def test_audit_plot_has_a_legend_for_every_line_and_names_the_data():
    from pipeline.audit_report import curve_figure

    s = {"model": "/m/model.onnx", "data": "digits", "n": 7, "eps": 0.1, "clean_accuracy": 0.9,
         "curve": [{"eps": e, "robust_accuracy": 0.5, "certified_accuracy": 0.4} for e in (0.05, 0.1)]}
    fig = curve_figure(s)
    ax = fig.axes[0]
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    assert len(labels) == len(ax.lines) == 4 and any("audited ε = 0.1" in t for t in labels)
    assert "digits" in ax.get_title() and "n = 7" in ax.get_title()


# ---- progress: on stderr only; stdout stays one JSON object


@pytest.mark.parametrize("cmd,label", [("certify", "certifying"), ("attack", "attacking"), ("audit", "auditing")])
def test_json_stdout_stays_pure_while_progress_goes_to_stderr(files, tmp_path, cmd, label):
    model, data = files
    r = _run(cmd, model, data, tmp_path / "o", "--eps", "0.05", "--json",
             env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)  # the whole of stdout is one JSON object
    assert label in r.stderr


def test_check_shows_progress_on_stderr(files, tmp_path):
    model, data = files
    certs = tmp_path / "c.jsonl"
    assert _run("certify", model, data, certs, "--eps", "0.01").exit_code == 0
    r = runner.invoke(app, ["check", str(certs), "--model", str(model), "--data", str(data), "--json"],
                      env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] and "checking" in r.stderr


def test_sub_progress_maps_a_stage_into_the_whole():
    from pipeline.progress import sub_progress

    seen = []
    stage = sub_progress(lambda d, t: seen.append((d, t)), 30, 10, 60)
    stage(0, 4), stage(2, 4), stage(4, 4), stage(0, 0)
    assert seen == [(30, 60), (35, 60), (40, 60), (40, 60)]
    assert sub_progress(None, 0, 1, 1) is None


# ---- shared options: one help text per option, MODEL in the usage line


def test_every_command_uses_the_shared_options():
    cmds = _commands()
    for name, c in cmds.items():
        opts = {o: p for p in c.params for o in p.opts}
        assert "--json" in opts, name
        for flag, text in SHARED_HELP.items():
            if flag in opts:
                assert opts[flag].help.startswith(text), (name, flag, opts[flag].help)
        if "--out" in opts:
            assert "-o" in opts["--out"].opts and " to write" in opts["--out"].help, name
    count = lambda flag: sum(flag in {o for p in c.params for o in p.opts} for c in cmds.values())  # noqa: E731
    assert count("--limit") == 3 and count("--data-dir") >= 4 and count("--eps") == 3


@pytest.mark.parametrize("cmd", ["certify", "attack", "audit", "lipschitz"])
def test_usage_line_names_model_plainly(cmd):
    r = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0
    assert "[OPTIONS] MODEL" in r.output and "{" not in r.output.splitlines()[1]


# ---- console script


def test_console_script_is_declared_and_runs(monkeypatch, capsys):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"linfverify": "verify_cli:main"}
    import verify_cli

    monkeypatch.setattr(sys, "argv", ["linfverify", "--help"])
    with pytest.raises(SystemExit) as e:
        verify_cli.main()
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Usage: linfverify [OPTIONS] COMMAND" in out and "certify" in out
