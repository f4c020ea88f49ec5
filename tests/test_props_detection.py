"""Issue 7 must-show 2: detection rate of the search within the default budget, and no false alarms.

Planted-violation models come from `props.strategies.lipschitz_violating_nets` (each with a proven
Lipschitz lower bound > 1.1); true models are pure ℓ∞-dist nets (claim 1), fusion ensembles (claim 1)
and voting ensembles (claim ½). Default run: 50 + 50 models; `-m slow`: 200 + 200 (prints the rates:
`python3 -m pytest tests/test_props_detection.py -m slow -q -s`).
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from props import strategies as pst
from props.lipschitz import DEFAULT_BUDGET, search_lipschitz


def _settings(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def _detection(n: int) -> dict[str, list[bool]]:
    found: dict[str, list[bool]] = collections.defaultdict(list)

    @_settings(n)
    @given(pst.lipschitz_violating_nets())
    def run(model):
        r = search_lipschitz(model, budget=DEFAULT_BUDGET, seed=0)
        assert r.rigorous
        assert r.ratio_lower <= model.planted_lipschitz * (1 + 1e-4) + 1e-6  # never above the truth
        found[model.planted_kind].append(r.ratio_lower > 1.0)

    run()
    return found


def _true_models():
    shapes = st.tuples(st.just(1), st.integers(1, 3), st.integers(1, 3))
    return st.one_of(
        shapes.flatmap(lambda s: pst.linf_dist_nets(input_shape=s)).map(lambda m: (m, 1.0)),
        pst.ensembles(mode="fusion").map(lambda m: (m, 1.0)),
        pst.ensembles(mode="voting", max_size=2, max_classes=3).map(lambda m: (m, 0.5)),
    )


def _false_alarms(n: int) -> tuple[int, int, float]:
    seen = [0, 0, 0.0]

    @_settings(n)
    @given(_true_models())
    def run(model_and_claim):
        model, claim = model_and_claim
        r = search_lipschitz(model, budget=DEFAULT_BUDGET, seed=0)
        assert r.rigorous
        seen[0] += 1
        seen[1] += int(r.ratio_lower > claim)
        seen[2] = max(seen[2], r.ratio / claim)

    run()
    return seen[0], seen[1], seen[2]


def _report(found, n_true, alarms, worst):
    total = sum(len(v) for v in found.values())
    hits = sum(sum(v) for v in found.values())
    per_kind = ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(found.items()))
    print(f"\nprops detection: {hits}/{total} planted violations found ({per_kind}); "
          f"false alarms {alarms}/{n_true} (largest float ratio / claim {worst:.6f}); budget {DEFAULT_BUDGET}")
    return hits, total


def _check(n: int):
    found = _detection(n)
    n_true, alarms, worst = _false_alarms(n)
    hits, total = _report(found, n_true, alarms, worst)
    assert total >= n * 0.9  # hypothesis ran (almost) every example
    assert hits >= 0.95 * total
    assert alarms == 0 and n_true >= n * 0.9


def test_detection_rate_and_no_false_alarms_50():
    _check(50)


@pytest.mark.slow
def test_detection_rate_and_no_false_alarms_200():
    _check(200)
