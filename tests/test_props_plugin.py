"""The pytest plugin and the CI example of docs/PROPS.md, run as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _docs_example() -> str:
    text = (ROOT / "docs" / "PROPS.md").read_text(encoding="utf-8")
    section = text.split("## The pytest fixture", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run_pytest(folder: Path, *args: str, budget: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    # -p no:linfverify: when the package is installed its entry point already loads the plugin;
    # blocking it and loading the module explicitly works either way.
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:linfverify", "-p", "props.pytest_plugin",
           "-p", "no:cacheprovider", *(["--lipschitz-budget", "1024"] if budget else []), *args]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 1-Lipschitz pure net exported to ONNX, and a copy with a planted ×1.5 input scaling."""
    export = pytest.importorskip("export.onnx_export")
    from props._planted import plant_onnx_input_scaling, planted_scale

    folder = tmp_path_factory.mktemp("props_plugin")
    net = planted_scale(4, 2, 6, 3, 1.0, 5)[1]
    good = folder / "good.onnx"
    export.export_model(net, good)
    bad = folder / "bad.onnx"
    plant_onnx_input_scaling(good, bad, 1.5)
    return good, bad


def _project(tmp_path: Path, model: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(model.read_bytes())
    (tmp_path / "test_lipschitz_claim.py").write_text(_docs_example(), encoding="utf-8")
    return tmp_path


def test_docs_example_passes_on_a_1_lipschitz_model(tmp_path, exported):
    proc = _run_pytest(_project(tmp_path, exported[0]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_docs_example_fails_on_a_planted_violation(tmp_path, exported):
    cex = tmp_path / "cex"
    proc = _run_pytest(_project(tmp_path, exported[1]), "--lipschitz-save-dir", str(cex))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed" in proc.stdout
    assert "LipschitzViolation" in proc.stdout and "is not 1-Lipschitz" in proc.stdout
    saved = list(cex.glob("lipschitz-cex-*.npz"))
    assert len(saved) == 1 and "replay(" in proc.stdout


def test_bad_setting_is_a_usage_error():
    from props.pytest_plugin import _setting

    class Config:
        def getoption(self, name):
            return None

        def getini(self, name):
            return {"lipschitz_budget": "lots", "lipschitz_seed": "7"}[name]

    assert _setting(Config(), "seed") == 7
    with pytest.raises(pytest.UsageError, match="lipschitz_budget must be an integer"):
        _setting(Config(), "budget")


def test_docs_error_rule_snippet_makes_a_custom_layer_rigorous():
    from torch import nn

    from props.lipschitz import LipschitzViolation, check_lipschitz

    text = (ROOT / "docs" / "PROPS.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(from props.floaterr import register_error_rule.*?)```", text, re.S).group(1)

    class MyScale(nn.Module):
        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x):
            return self.s * x

    exec(snippet, {"MyScale": MyScale})  # noqa: S102 - our own documentation
    model = nn.Sequential(nn.Flatten(), MyScale(1.5)).eval()
    with pytest.raises(LipschitzViolation) as info:
        check_lipschitz(model, 1.0, input_shape=(3,), budget=128)
    assert info.value.result.rigorous and "HEURISTIC" not in str(info.value)
    assert check_lipschitz(model, 1.5, input_shape=(3,), budget=128).rigorous
