"""pytest plugin (entry point `linfverify`): assert "this model is L-Lipschitz in ℓ∞" in any test suite.

Installed with the package, so a user's test only asks for the fixture:

    def test_model_is_1_lipschitz(assert_lipschitz):
        assert_lipschitz("model.onnx", 1.0)

`assert_lipschitz(model, L, *, domain=(0, 1), budget=None, seed=None, input_shape=None, near=None)` runs
`props.lipschitz.check_lipschitz` and returns its result; a proven violation fails the test with the
ratio, L, the pair and a replay line (`LipschitzViolation` is an AssertionError). Counterexamples are
saved under the test's tmp dir unless `--lipschitz-save-dir` is given.
Options (command line or ini): `--lipschitz-budget N` / `lipschitz_budget` (model evaluations per
check, default 4096), `--lipschitz-seed S` / `lipschitz_seed` (default 0), `--lipschitz-save-dir`.
Importing this module is cheap: torch and the search load on first use.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("linfverify", "ℓ∞ Lipschitz checks (props)")
    group.addoption("--lipschitz-budget", type=int, default=None,
                    help="model evaluations per assert_lipschitz check (default 4096)")
    group.addoption("--lipschitz-seed", type=int, default=None, help="seed of the Lipschitz search (default 0)")
    group.addoption("--lipschitz-save-dir", default=None, help="folder for counterexample .npz files")
    parser.addini("lipschitz_budget", "model evaluations per assert_lipschitz check", default="4096")
    parser.addini("lipschitz_seed", "seed of the Lipschitz search", default="0")


def _setting(config, name: str) -> int:
    value = config.getoption(f"--lipschitz-{name}")
    if value is None:
        value = config.getini(f"lipschitz_{name}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"lipschitz_{name} must be an integer, got {value!r}") from None


@pytest.fixture
def assert_lipschitz(request, tmp_path):
    """Callable `assert_lipschitz(model, L, **options)`: fails the test on a proven violation."""
    from props.lipschitz import check_lipschitz

    config = request.config
    save_dir = config.getoption("--lipschitz-save-dir") or tmp_path

    def check(model, L: float, *, domain=(0.0, 1.0), budget: int | None = None, seed: int | None = None,
              input_shape=None, near=None):
        return check_lipschitz(model, L, domain=domain,
                               budget=budget if budget is not None else _setting(config, "budget"),
                               seed=seed if seed is not None else _setting(config, "seed"),
                               input_shape=input_shape, save_dir=save_dir, near=near)

    return check
