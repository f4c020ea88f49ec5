"""linear.coef_product: its gather (one non-zero per row) and column-compacting (columns of A zero in
every row) shortcuts compute fl64(A mᵀ) within the bound affine_bias charges (exact rationals)."""

from fractions import Fraction

import numpy as np
import torch

from verify.bounds.linear import coef_product
from verify.bounds.rounding import U64, gamma


def _check(a: torch.Tensor, m: torch.Tensor) -> None:
    got = coef_product(a, m).numpy()
    an, mn = a.numpy(), m.numpy()
    g = Fraction(gamma(an.shape[2], U64))
    rng = np.random.default_rng(0)
    for n, s, i in zip(rng.integers(0, an.shape[0], 60), rng.integers(0, an.shape[1], 60), rng.integers(0, mn.shape[0], 60)):
        exact = sum(Fraction(float(x)) * Fraction(float(y)) for x, y in zip(an[n, s], mn[i]))
        absum = sum(abs(Fraction(float(x)) * Fraction(float(y))) for x, y in zip(an[n, s], mn[i]))
        assert abs(Fraction(float(got[n, s, i])) - exact) <= g * absum + an.shape[2] * Fraction(2) ** -1074
    np.testing.assert_allclose(got, (a @ m.T).numpy(), rtol=1e-12, atol=1e-300)


def test_one_nonzero_per_row_is_gathered_correctly():
    torch.manual_seed(0)
    n, s, d, k = 2, 60, 30, 50  # n·s·k ≥ 4096: the shortcuts are taken
    a = torch.zeros(n, s, d, dtype=torch.float64)
    cols = torch.randint(0, d, (n, s))
    a.scatter_(2, cols[..., None], torch.randn(n, s, 1, dtype=torch.float64))
    a[:, -3:] = 0.0  # zero padding rows
    m = torch.randn(k, d, dtype=torch.float64)
    _check(a, m)
    pm = torch.zeros_like(a)
    pm.scatter_(2, cols[..., None], 1.0)
    pm[:, -3:] = 0.0
    assert torch.equal(coef_product(pm, m), pm @ m.T)  # ±1 rows: exact, bit for bit


def test_zero_columns_are_dropped_correctly():
    torch.manual_seed(1)
    n, s, d, k = 2, 60, 64, 50
    a = torch.randn(n, s, d, dtype=torch.float64)
    a[:, :, torch.randperm(d)[:50]] = 0.0  # a column zero in every row of every sample
    a[0, :, 3] = 0.0
    a[1, 5, 3] = 2.5  # ... but not a column zero in one sample only
    _check(a, torch.randn(k, d, dtype=torch.float64))


def test_dense_and_autograd_take_the_product():
    a = torch.randn(2, 60, 64, dtype=torch.float64, requires_grad=True)
    a2 = a.detach().clone()
    a2[:, :, :60] = 0.0
    m = torch.randn(50, 64, dtype=torch.float64)
    assert torch.equal(coef_product(a, m), a @ m.T)
    b = a2.clone().requires_grad_(True)
    coef_product(b, m).sum().backward()
    torch.testing.assert_close(b.grad, m.sum(0).expand(2, 60, 64))  # zero coefficients keep their gradient
