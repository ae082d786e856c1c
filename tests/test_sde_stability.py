"""Norm stability: the b_* verdict confirmed by finite shaped nets and by the SDE.

Error model: fractions of nets past the threshold are binomial, so finite vs SDE agree
within 5 binomial standard errors plus a finite-width allowance 0.2/√n.  For x + x²/2 the
per-layer noise variance of the finite net exceeds the SDE's by a factor
1 + 21Φ/(2a²n) (exact: Var(x² + x³/s + x⁴/4s²)), an O(1/n) effect with a large constant;
measured gaps of P(Φ_1 > 10): 0.012 at n = 64, 0.010 at n = 256 (3 000 nets, s.e. 0.006);
median ln Φ_1 gap 0.13 at n = 64, 0.034 at n = 256.  The threshold Φ_T > 10 sits inside
the SDE regime Φ ≪ s² = a²n.
"""

import math

import pytest
import torch

from widelimit.sde import demonstrate_stability, norm_stability


def test_verdicts():
    tanh = norm_stability("tanh", 1.0)
    quad = norm_stability("quadratic", 1.0)
    assert tanh.stable and tanh.b_star == pytest.approx(-2.0)
    assert not quad.stable and quad.b_star == pytest.approx(0.75)
    assert not norm_stability("sinh", 3.0).stable and norm_stability("sin", 3.0).stable


def test_tanh_stable_and_quadratic_unstable_by_simulation():
    n = 64
    demo = demonstrate_stability(
        ("tanh", "quadratic"),
        a=1.0,
        width=n,
        times=(1.0,),
        n_nets=2000,
        n_paths=20_000,
        threshold=10.0,
        seed=torch.Generator().manual_seed(0),
        progress=False,
    )
    rows = {r.verdict.name: r for r in demo.rows}
    tanh, quad = rows["tanh"], rows["quadratic"]
    # stable: no finite net and (almost) no SDE path gets past Φ = 10 by T = 1
    assert tanh.frac_large_finite == 0.0 and tanh.frac_large_sde < 1e-3
    # unstable: a clear fraction does, in both, and they agree
    assert quad.frac_large_finite > 0.05 and quad.frac_large_sde > 0.05
    assert abs(quad.frac_large_finite - quad.frac_large_sde) < 5 * quad.se_frac + 0.2 / math.sqrt(n)
    assert bool(torch.isinf(demo.log_sde["quadratic"]).any())  # finite-time blow-up
    assert not bool(torch.isinf(demo.log_sde["tanh"]).any())
    # typical log-norms agree too (median, stable case): SE of a median ≈ 1.25σ/√N
    se_med = 1.25 * float(demo.log_finite["tanh"][0].std()) / math.sqrt(2000)
    assert abs(tanh.median_log_finite - tanh.median_log_sde) < 5 * se_med + 0.2 / math.sqrt(n)


def test_errors():
    with pytest.raises(ValueError, match="`threshold`"):
        demonstrate_stability(("tanh",), threshold=0.5)
    with pytest.raises(ValueError, match="`times`"):
        demonstrate_stability(("tanh",), times=(-1.0,))
    with pytest.raises(ValueError, match="`a`"):
        norm_stability("tanh", 0.0)
