"""The one log-log slope fit (widelimit.fitting) against scipy.stats.linregress."""

import math

import numpy as np
import pytest
from scipy import stats

from widelimit.fitting import LogLogFit, fit_loglog, loglog_slope


@pytest.mark.parametrize("n_points", [3, 5, 9])
def test_fit_matches_scipy_linregress_on_noisy_power_law(n_points):
    rng = np.random.default_rng(n_points)
    x = 2.0 ** np.arange(6, 6 + n_points)
    y = 3.0 * x**-0.5 * np.exp(0.2 * rng.standard_normal(n_points))
    ref = stats.linregress(np.log(x), np.log(y))
    fit = fit_loglog(x, y)
    assert isinstance(fit, LogLogFit)
    assert fit.n_points == n_points
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12, abs=1e-14)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12, abs=1e-14)
    assert fit.stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert loglog_slope(x, y) == fit.slope


def test_stderr_from_point_errors_is_propagated():
    """σ(log y_i) = 0.1 at each point: se = 0.1/√Σ(log x − mean)² (hand formula)."""
    x = np.array([10.0, 100.0, 1000.0])
    y = 3 * x**-0.5
    fit = fit_loglog(x, y, 0.1 * y)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3), abs=1e-12)
    xc = np.log(x) - np.log(x).mean()
    assert fit.stderr == pytest.approx(0.1 / math.sqrt((xc**2).sum()), rel=1e-12)
    # an exact power law has no residual scatter
    assert fit_loglog(x, y).stderr == pytest.approx(0.0, abs=1e-12)


def test_two_points_have_no_residual_stderr():
    fit = fit_loglog([10, 40], [1.0, 0.5])
    assert fit.slope == pytest.approx(-0.5, rel=1e-12)
    assert math.isnan(fit.stderr)


def test_loglog_slope_is_nan_for_vanishing_values():
    assert math.isnan(loglog_slope([1, 2, 4], [1.0, 0.0, 0.5]))


def test_tuple_unpacking_is_deprecated_but_works():
    with pytest.warns(DeprecationWarning, match="attributes"):
        slope, intercept, se = fit_loglog([1, 10], [1.0, 0.1])
    assert (slope, intercept) == (pytest.approx(-1.0), pytest.approx(0.0, abs=1e-12))
    assert math.isnan(se)


def test_old_name_in_propagation_is_the_same_function():
    from widelimit.propagation import fit_loglog as old
    from widelimit.propagation.finite import fit_loglog as old_module

    assert old is fit_loglog and old_module is fit_loglog


@pytest.mark.parametrize(
    ("x", "y", "y_se", "match"),
    [
        ([1, 2], [1.0, -1.0], None, "`y`"),
        ([0, 2], [1.0, 1.0], None, "`x`"),
        ([1, 2, 3], [1.0, 1.0], None, "same length"),
        ([1], [1.0], None, "two points"),
        ([2, 2], [1.0, 2.0], None, "distinct"),
        ([1, 2], [1.0, 2.0], [0.1], "`y_se`"),
        ([1, 2], [1.0, 2.0], [0.1, -0.1], "`y_se`"),
        ([1, 2], [1.0, float("nan")], None, "`y`"),
    ],
)
def test_errors_name_the_argument(x, y, y_se, match):
    with pytest.raises(ValueError, match=match):
        fit_loglog(x, y, y_se)
