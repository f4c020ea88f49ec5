"""nets.schedules: endpoints, monotonicity, phase boundaries."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nets import schedules as S


@st.composite
def phases(draw):
    total = draw(st.integers(1, 400))
    p_warm = draw(st.integers(0, total))
    anneal = draw(st.integers(0, total - p_warm))
    eps_start = draw(st.integers(0, total))
    eps_warm = draw(st.integers(0, total))
    return S.Phases(total=total, p_warm=p_warm, anneal=anneal, eps_start=eps_start, eps_warm=eps_warm)


@settings(max_examples=60, deadline=None)
@given(ph=phases())
def test_p_schedule_endpoints_and_monotone(ph):
    ps = [S.p_at(i, ph) for i in range(ph.total)]
    assert all(a <= b for a, b in zip(ps, ps[1:]))
    for i in range(ph.p_warm):
        assert ps[i] == 8.0
    if ph.anneal:
        assert ps[ph.p_warm + ph.anneal - 1] == 1000.0  # last annealing step hits p_end exactly
        assert all(8.0 < p <= 1000.0 for p in ps[ph.p_warm:ph.p_warm + ph.anneal])
    assert all(math.isinf(p) for p in ps[ph.p_warm + ph.anneal:])
    assert math.isinf(S.p_at(ph.total, ph))


def test_p_annealing_is_geometric():
    ph = S.Phases(total=10, p_warm=2, anneal=4)
    ratios = [S.p_at(i + 1, ph) / S.p_at(i, ph) for i in range(2, 5)]
    assert ratios == pytest.approx([(1000 / 8) ** 0.25] * 3, rel=1e-12)
    assert S.p_at(1, ph) == 8.0 and S.p_at(5, ph) == 1000.0 and math.isinf(S.p_at(6, ph))


@settings(max_examples=60, deadline=None)
@given(ph=phases(), lr=st.floats(1e-4, 1.0))
def test_lr_constant_then_cosine_to_zero(ph, lr):
    lrs = [S.lr_at(i, ph, lr) for i in range(ph.total + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert all(v == lr for v in lrs[: ph.p_warm + 1])
    assert lrs[ph.total] == 0.0 or ph.p_warm == ph.total
    assert all(0.0 <= v <= lr for v in lrs)


def test_lr_cosine_midpoint():
    ph = S.Phases(total=20, p_warm=10, anneal=5)
    assert S.lr_at(15, ph, 0.02) == pytest.approx(0.01)
    assert S.lr_at(20, ph, 0.02) == 0.0


@settings(max_examples=60, deadline=None)
@given(ph=phases(), eps=st.floats(0.0, 1.0))
def test_eps_warmup_linear(ph, eps):
    es = [S.eps_at(i, ph, eps) for i in range(ph.total + 1)]
    assert all(a <= b for a, b in zip(es, es[1:]))
    assert S.eps_at(ph.eps_start + ph.eps_warm, ph, eps) == eps
    if ph.eps_warm:
        assert S.eps_at(ph.eps_start, ph, eps) == 0.0
    else:
        assert S.eps_at(ph.eps_start, ph, eps) == eps


def test_kappa_and_lambda():
    ph = S.Phases(total=100, p_warm=10, anneal=50, eps_start=0, eps_warm=10)
    assert S.kappa_at(0, ph, 1.0, 0.5) == 1.0 and S.kappa_at(10, ph, 1.0, 0.5) == 0.5
    assert S.kappa_at(5, ph, 1.0, 0.5) == pytest.approx(0.75)
    lams = [S.lam_at(i, ph, 0.5, 5e-4) for i in range(101)]
    assert lams[0] == 0.5 and lams[-1] == 5e-4
    assert all(a > b for a, b in zip(lams, lams[1:]))
    with pytest.raises(ValueError):
        S.lam_at(0, ph, 0.0, 1.0)


def test_phases_validation_and_from_epochs():
    with pytest.raises(ValueError):
        S.Phases(total=10, p_warm=6, anneal=6)
    ph = S.Phases.from_epochs(100, epochs=45, p_warm_epochs=1, anneal_epochs=31)
    assert (ph.total, ph.p_warm, ph.anneal) == (4500, 100, 3100)


def test_composable_schedules_are_independent():
    """The lr cosine can start elsewhere than the p warm-up ends (issue 14)."""
    from nets.presets import get_preset, apply_overrides

    cfg = apply_overrides(get_preset("digits-small"), epochs=10, p_warm_epochs=2, anneal_epochs=6)
    a = S.from_config(cfg, 10)
    b = S.from_config(apply_overrides(cfg, lr_warm_epochs=0.0), 10)
    assert [a.p(i) for i in range(101)] == [b.p(i) for i in range(101)]
    assert a.lr(20) == cfg.lr and b.lr(20) < cfg.lr and b.lr(0) == cfg.lr and b.lr(100) == 0.0
    ph = S.Phases.from_epochs(10, epochs=10, p_warm_epochs=2, anneal_epochs=6)
    assert all(a.p(i) == S.p_at(i, ph, cfg.p_start, cfg.p_end) and a.lr(i) == S.lr_at(i, ph, cfg.lr)
               for i in range(101))
    j = S.join([S.constant(1.0), S.linear(0.0, 4.0, 4), S.constant(9.0)], [2, 6])
    assert [j(i) for i in range(8)] == [1.0, 1.0, 0.0, 1.0, 2.0, 3.0, 9.0, 9.0]
    with pytest.raises(ValueError, match="one more"):
        S.join([S.constant(1.0)], [3])
