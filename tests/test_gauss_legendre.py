"""The one Gauss–Legendre rule (widelimit._quadrature.gauss_legendre)."""

from fractions import Fraction
from math import factorial

import numpy as np
import pytest
from scipy.special import roots_legendre

from widelimit._quadrature import gauss_legendre


@pytest.mark.parametrize("n", [1, 2, 5, 12, 40])
def test_exact_to_degree_2n_minus_1_and_not_beyond(n):
    x, w = gauss_legendre(n)
    for k in range(2 * n + 1):
        exact = float(Fraction(2, k + 1)) if k % 2 == 0 else 0.0  # ∫_{-1}^{1} x^k dx
        got = float(np.sum(w * x**k))
        if k <= 2 * n - 1:
            assert got == pytest.approx(exact, rel=1e-13, abs=1e-14), k
        elif n <= 12:  # degree 2n: the classical error 2^{2n+1} (n!)^4 / ((2n+1) ((2n)!)^2)
            err = Fraction(
                2 ** (2 * n + 1) * factorial(n) ** 4, (2 * n + 1) * factorial(2 * n) ** 2
            )
            assert exact - got == pytest.approx(float(err), rel=1e-6), k


def test_matches_scipy_nodes_and_is_cached_and_read_only():
    x, w = gauss_legendre(24)
    xs, ws = roots_legendre(24)
    np.testing.assert_allclose(x, xs, rtol=0, atol=1e-14)
    np.testing.assert_allclose(w, ws, rtol=1e-12)
    assert gauss_legendre(24)[0] is x
    with pytest.raises(ValueError, match="read-only"):
        x[0] = 0.0


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n(n):
    with pytest.raises(ValueError, match="`n`"):
        gauss_legendre(n)
