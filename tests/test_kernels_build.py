"""The C++ kernels' build cache: one build per machine, whatever the checkout path, venv or ninja.

The cache key (`_build.build_target`) hashes what determines the binary: sources, flags (which encode
the CPU features of the variant), torch and Python versions, machine type. A finished build is
imported directly, without ninja or a compiler; the first build says so on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.utils.cpp_extension as cpp_ext

from nets.kernels import _build

REPO = Path(__file__).resolve().parents[1]


def _copy_sources(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in _build.SOURCES + _build.HEADERS:
        shutil.copyfile(Path(_build.__file__).with_name(name), dst / name)
    return dst


def test_two_checkouts_share_one_build_target(tmp_path, monkeypatch):
    a = _copy_sources(tmp_path / "checkout-a" / "kernels")
    b = _copy_sources(tmp_path / "elsewhere" / "b" / "kernels")
    for var in ("avx2", "generic"):
        assert _build.build_target(var, a) == _build.build_target(var, b) == _build.build_target(var)
    monkeypatch.setenv("PATH", str(tmp_path))  # another (or no) ninja on PATH: same key
    assert _build.build_target("avx2", a) == _build.build_target("avx2")
    assert _build.build_target("avx2") != _build.build_target("generic")
    (b / _build.HEADERS[0]).write_text((b / _build.HEADERS[0]).read_text() + "\n// changed\n")
    assert _build.build_target("avx2", a) != _build.build_target("avx2", b)  # sources do count


def test_first_build_says_so_and_a_finished_build_is_imported(tmp_path, monkeypatch, capsys):
    """Compiles (fake `load`) once with the one-line message; then imports without compiling."""
    monkeypatch.setenv("LINFVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path / "co" / "kernels")
    built = SimpleNamespace(name="fake module")
    seen = {}

    def fake_load(**kw):
        seen.update(kw)
        return built

    monkeypatch.setattr(cpp_ext, "load", fake_load)
    assert _build._build("generic", src) is built
    err = capsys.readouterr().err
    assert err.strip() == _build.COMPILING_MESSAGE
    name, folder = _build.build_target("generic", src)
    assert seen["name"] == name and seen["build_directory"] == str(folder)
    assert all(str(folder) in p for p in seen["sources"] + seen["extra_include_paths"])  # no checkout path

    monkeypatch.setattr(cpp_ext, "load", lambda **kw: pytest.fail("rebuilt a finished build"))
    monkeypatch.setattr(_build, "_import_built", lambda n, d: (n, d))
    monkeypatch.setenv("CXX", "no-such-compiler-linfverify")  # not needed to reuse a build
    assert _build._build("generic", _copy_sources(tmp_path / "co2" / "kernels")) == (name, folder)
    assert capsys.readouterr().err == ""


def test_second_checkout_reuses_the_compiled_kernels(ext, tmp_path):
    """A copy of the package elsewhere, with no compiler or ninja on PATH, imports this build."""
    shutil.copytree(REPO / "nets", tmp_path / "nets", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("from nets.kernels import _build; m = _build.load_cpu_extension(); "
            "assert m is not None, _build.build_status(); print(m.__file__)")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PATH=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _build.COMPILING_MESSAGE not in r.stderr
    assert Path(r.stdout.strip()) == Path(ext.__file__)


def test_stale_torch_build_baton_is_removed_under_our_lock(tmp_path, monkeypatch):
    """torch's ``lock`` baton left in the build folder by a killed build would make ``load`` wait
    forever; our flock proves no other build runs, so the build removes it first."""
    monkeypatch.setenv("LINFVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path / "co" / "kernels")
    _, folder = _build.build_target("generic", src)
    folder.mkdir(parents=True)
    (folder / "lock").write_text("")  # what a killed torch build leaves behind

    def fake_load(**kw):
        assert not (folder / "lock").exists(), "torch's stale baton still there: load would block"
        return SimpleNamespace(name="fake module")

    monkeypatch.setattr(cpp_ext, "load", fake_load)
    assert _build._build("generic", src).name == "fake module"
