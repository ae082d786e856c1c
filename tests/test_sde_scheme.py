"""Integrators of the covariance SDE: PSD preservation, exact laws, agreement of routes.

Error model for distribution comparisons: the one-sample KS statistic of N samples
exceeds 1.95/√N with probability 1e-3 (Kolmogorov law), two-sample with sizes N₁, N₂
exceeds 1.95·√(1/N₁ + 1/N₂); we add an explicit allowance for the O(dt) weak error of the
scheme where the two routes discretise differently.
"""

import math

import pytest
import torch
from scipy import stats

from widelimit.sde import (
    ReLUDrift,
    SmoothDrift,
    SmoothShaped,
    correlations,
    integrate_correlation,
    integrate_covariance,
    integrate_one_input,
)

KS_CRIT = 1.95  # P(√N·KS > 1.95) ≈ 1e-3


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "drift", [None, ReLUDrift(0.0, -1.0), SmoothDrift(0.0, -2.0, 1.0), SmoothDrift(1.0, 0.0, 2.0)]
)
@pytest.mark.parametrize("dt", [0.5, 0.05])
def test_scheme_keeps_phi_symmetric_psd_over_10k_paths(drift, dt):
    # a rank-2 PSD start in m = 3 (singular on purpose) and large/small steps
    v = torch.tensor([[1.0, 0.2], [0.5, -0.7], [0.3, 0.9]], dtype=torch.float64)
    phi0 = v @ v.T
    out = integrate_covariance(
        phi0, drift, times=[dt, 1.0], dt=dt, n_paths=10_000, seed=_gen(1), progress=False
    )
    ok = torch.isfinite(out).all(dim=(-1, -2))
    assert ok.float().mean() > 0.95  # only the unstable drift may overflow a few paths
    phi = out[ok]
    assert torch.equal(phi, phi.transpose(-1, -2))
    evals = torch.linalg.eigvalsh(phi)
    scale = phi.diagonal(dim1=-2, dim2=-1).amax(-1)
    assert bool((evals.min(-1).values >= -1e-12 * scale).all())


def test_zero_drift_one_input_log_norm_is_normal():
    t, phi0, n = 1.5, 2.0, 20_000
    x = integrate_one_input(phi0, 0.0, times=t, dt=0.05, n_paths=n, seed=_gen(2), progress=False)
    x = x[0].numpy()
    law = stats.norm(math.log(phi0) - t, math.sqrt(2 * t))
    assert stats.kstest(x, law.cdf).statistic < KS_CRIT / math.sqrt(n)
    assert abs(x.mean() - law.mean()) < 4.5 * law.std() / math.sqrt(n)
    assert abs(x.var() / law.var() - 1) < 4.5 * math.sqrt(2 / n)


def test_zero_drift_matrix_scheme_diagonal_is_normal():
    # m = 1 noise step is the exact GBM, for any dt
    t, n = 1.0, 20_000
    phi0 = torch.tensor([[0.5]], dtype=torch.float64)
    out = integrate_covariance(
        phi0, None, times=t, dt=0.25, n_paths=n, seed=_gen(3), progress=False
    )
    x = out[0, :, 0, 0].log().numpy()
    law = stats.norm(math.log(0.5) - t, math.sqrt(2 * t))
    assert stats.kstest(x, law.cdf).statistic < KS_CRIT / math.sqrt(n)
    # m = 3: each diagonal entry is marginally the same GBM; weak error O(dt) allowed
    phi3 = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.0]], dtype=torch.float64)
    n, dt = 5_000, 1 / 100
    out = integrate_covariance(phi3, None, times=t, dt=dt, n_paths=n, seed=_gen(4), progress=False)
    law = stats.norm(-t, math.sqrt(2 * t))
    for a in range(3):
        x = out[0, :, a, a].log().numpy()
        assert stats.kstest(x, law.cdf).statistic < KS_CRIT / math.sqrt(n) + 2 * dt


def test_correlation_sde_matches_covariance_sde():
    # two routes to ρ_T: the scalar correlation SDE (Itô formula) and the 2×2 matrix scheme
    drift = ReLUDrift(0.0, -1.5)
    n, dt = 8_000, 1 / 100
    r_scalar = integrate_correlation(
        0.3, drift, times=[0.5, 1.0], dt=dt, n_paths=n, seed=_gen(5), progress=False
    )
    phi0 = torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    r_matrix = correlations(
        integrate_covariance(
            phi0, drift, times=[0.5, 1.0], dt=dt, n_paths=n, seed=_gen(6), progress=False
        )
    )
    for i in range(2):
        ks = stats.ks_2samp(r_scalar[i].numpy(), r_matrix[i].numpy()).statistic
        assert ks < KS_CRIT * math.sqrt(2 / n) + 2 * dt
    assert bool((r_scalar.abs() < 1).all())


def test_one_input_sde_matches_matrix_scheme_with_smooth_drift():
    act = SmoothShaped("sinh", 1.0, 64)  # b_* = 1: unstable, some paths explode
    n, t = 10_000, 0.75
    x1 = integrate_one_input(
        1.0, act.drift().b_star, times=t, dt=1 / 256, n_paths=n, seed=_gen(7), progress=False
    )[0]
    x2 = integrate_covariance(
        torch.ones(1, 1, dtype=torch.float64),
        act.drift(),
        times=t,
        dt=1 / 256,
        n_paths=n,
        seed=_gen(8),
        progress=False,
    )[0, :, 0, 0].log()
    # exploded paths are +inf in both; KS on the extended line
    ks = stats.ks_2samp(x1.numpy(), x2.numpy()).statistic
    assert ks < KS_CRIT * math.sqrt(2 / n) + 2 / 256
    assert 0 < float(torch.isinf(x1).double().mean()) < 0.2


def test_time_rounding_and_errors():
    phi0 = torch.eye(2, dtype=torch.float64)
    out = integrate_covariance(phi0, None, times=[0.0, 0.3], dt=0.1, n_paths=3, progress=False)
    assert out.shape == (2, 3, 2, 2) and torch.equal(out[0], phi0.expand(3, 2, 2))
    with pytest.raises(ValueError, match="`dt`"):
        integrate_covariance(phi0, None, times=1.0, dt=0.0, n_paths=3)
    with pytest.raises(ValueError, match="`times`"):
        integrate_covariance(phi0, None, times=[-1.0], dt=0.1, n_paths=3)
    with pytest.raises(ValueError, match="positive semi-definite"):
        integrate_covariance(
            torch.tensor([[1.0, 2.0], [2.0, 1.0]]), None, times=1.0, dt=0.1, n_paths=3
        )
    with pytest.raises(ValueError, match="symmetric"):
        integrate_covariance(
            torch.tensor([[1.0, 0.2], [0.0, 1.0]]), None, times=1.0, dt=0.1, n_paths=3
        )
    with pytest.raises(ValueError, match="`phi0`"):
        integrate_covariance(torch.tensor([[float("nan")]]), None, times=1.0, dt=0.1, n_paths=3)
    with pytest.raises(TypeError, match="`drift`"):
        integrate_covariance(phi0, lambda p: p, times=1.0, dt=0.1, n_paths=3)
    with pytest.raises(ValueError, match="`rho0`"):
        integrate_correlation(1.0, ReLUDrift(0, -1), times=1.0, dt=0.1, n_paths=3)
    with pytest.raises(TypeError, match="`drift`"):
        integrate_correlation(0.1, SmoothDrift(0, 1, 1), times=1.0, dt=0.1, n_paths=3)
    with pytest.raises(ValueError, match="`phi0`"):
        integrate_one_input(0.0, 1.0, times=1.0, dt=0.1, n_paths=3)
    with pytest.raises(ValueError, match="`n_paths`"):
        integrate_one_input(1.0, 1.0, times=1.0, dt=0.1, n_paths=0)


def test_one_noise_step_has_mean_zero_and_covariance_sigma_h():
    phi = torch.tensor([[1.3, 0.4, -0.2], [0.4, 0.8, 0.1], [-0.2, 0.1, 0.6]], dtype=torch.float64)
    h, b = 1e-3, 200_000
    out = integrate_covariance(phi, None, times=h, dt=h, n_paths=b, seed=_gen(9), progress=False)
    inc = (out[0] - phi).reshape(b, 9) / math.sqrt(h)
    sigma = torch.einsum("ac,bd->abcd", phi, phi) + torch.einsum("ad,bc->abcd", phi, phi)
    se = 5 * float(sigma.abs().max()) ** 0.5 / math.sqrt(b)
    assert float(inc.mean(0).abs().max()) < 5 * se  # mean O(h²)/√h ≈ 0
    cov = torch.cov(inc.T).reshape(3, 3, 3, 3)
    assert float((cov - sigma).abs().max()) < 8 * float(sigma.abs().max()) * 5 / math.sqrt(b) + 0.05
