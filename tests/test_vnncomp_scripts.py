"""The VNN-COMP tool scripts (vnncomp/*.sh, version v1 arguments) on a tiny instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_vnnlib_verdicts import net, vnnlib_text, write
from common.runtime import ort_session
from verify.vnnlib.run import replay_text
from verify.vnnlib.spec import read_property

SCRIPTS = Path(__file__).resolve().parent.parent / "vnncomp"


def sh(name, *args):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": "/tmp"}
    return subprocess.run(["bash", str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd="/")


def test_prepare_then_run_instance_sat(tmp_path):
    m = net(tmp_path, batch=1)
    p = write(tmp_path, vnnlib_text([-1.0, -1.0], [1.0, 1.0], "(or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0)))"))
    assert sh("prepare_instance.sh", "v1", "test", m, p).returncode == 0
    res = tmp_path / "out" / "result.txt"
    res.parent.mkdir()
    r = sh("run_instance.sh", "v1", "test", m, p, res, 30)
    assert r.returncode == 0, r.stderr
    text = res.read_text()
    assert text.startswith("sat\n")
    assert replay_text(ort_session(m), read_property(p), text, (2,)) is not None


def test_run_instance_unsat(tmp_path):
    m = net(tmp_path, bias0=50.0)
    p = write(tmp_path, vnnlib_text([0.4, 0.4], [0.5, 0.5], "(>= Y_1 Y_0)"))
    r = sh("run_instance.sh", "v1", "test", m, p, tmp_path / "r.txt", 10)
    assert r.returncode == 0 and (tmp_path / "r.txt").read_text() == "unsat\n"


@pytest.mark.parametrize("script, args, code", [
    ("run_instance.sh", ["v2", "c", "m", "p", "r", "1"], 1),
    ("run_instance.sh", ["v1", "c", "m", "p"], 1),
    ("prepare_instance.sh", ["v1", "c", "MODEL", "BAD"], 2),
    ("run_instance.sh", ["v1", "c", "MODEL", "BAD", "RES", "5"], 2),
])
def test_bad_arguments_and_files(tmp_path, script, args, code):
    m = net(tmp_path)
    bad = write(tmp_path, "(declare-const X_0 Real) (assert (<= X_0", "bad.vnnlib")
    subst = {"MODEL": m, "BAD": bad, "RES": tmp_path / "r.txt"}
    r = sh(script, *[subst.get(a, a) for a in args])
    assert r.returncode == code
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.txt").exists()
