"""Neural covariance SDE (Li, Nica, Roy 2022, arXiv 2206.02768; docs/sde.md).

Deep-and-wide shaped networks (depth ``d``, width ``n``, ``T = d/n`` fixed): the
penultimate ``m × m`` covariance ``Φ`` follows ``dΦ = b(Φ)dt + Σ(Φ)^{1/2}dB``.

* :mod:`~widelimit.sde.shaped` — shaped ReLU and smooth-shaped activations (torch modules).
* :mod:`~widelimit.sde.drift` — the drifts and their PSD-preserving flows.
* :mod:`~widelimit.sde.finite` — finite shaped nets: forward pass and exact Gaussian sampler.
* :mod:`~widelimit.sde.covariance_sde` — PSD scheme for ``m`` inputs, correlation and
  one-input SDEs.
* :mod:`~widelimit.sde.stability` — ``b_*``, the norm-stability verdict and its demonstration.
* :mod:`~widelimit.sde.oracles` — exact finite-width laws (linear net, unshaped ReLU).
* :mod:`~widelimit.sde.compare` — finite nets vs SDE (KS distances, summaries).
* :mod:`~widelimit.sde.plots` — figures.
"""

from widelimit.sde.compare import ComparisonRow, SDEComparison, Summary, compare_relu, correlations
from widelimit.sde.covariance_sde import (
    integrate_correlation,
    integrate_covariance,
    integrate_one_input,
)
from widelimit.sde.drift import ReLUDrift, SmoothDrift, relu_nu
from widelimit.sde.finite import ShapedMLP, finite_forward_gram, sample_gram
from widelimit.sde.oracles import (
    LogNormLaw,
    linear_log_norm_law,
    relu_correlation_map,
    sample_linear_log_norm,
    sample_unshaped_relu_log_norm,
    unshaped_relu_log_norm_law,
)
from widelimit.sde.shaped import (
    SMOOTH_ACTIVATIONS,
    ShapedReLU,
    SmoothShaped,
    derivatives_at_zero,
)
from widelimit.sde.stability import (
    StabilityDemo,
    StabilityRow,
    StabilityVerdict,
    b_star,
    demonstrate_stability,
    norm_stability,
)

__all__ = [
    "SMOOTH_ACTIVATIONS",
    "ComparisonRow",
    "LogNormLaw",
    "ReLUDrift",
    "SDEComparison",
    "ShapedMLP",
    "ShapedReLU",
    "SmoothDrift",
    "SmoothShaped",
    "StabilityDemo",
    "StabilityRow",
    "StabilityVerdict",
    "Summary",
    "b_star",
    "compare_relu",
    "correlations",
    "demonstrate_stability",
    "derivatives_at_zero",
    "finite_forward_gram",
    "integrate_correlation",
    "integrate_covariance",
    "integrate_one_input",
    "linear_log_norm_law",
    "norm_stability",
    "relu_correlation_map",
    "relu_nu",
    "sample_gram",
    "sample_linear_log_norm",
    "sample_unshaped_relu_log_norm",
    "unshaped_relu_log_norm_law",
]
