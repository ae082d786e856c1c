"""Signal propagation (docs/propagation.md; Poole et al. 2016; Schoenholz et al. 2017).

* :mod:`~widelimit.propagation.maps` — q-map, c-map, covariance map, layer trajectories.
* :mod:`~widelimit.propagation.fixed_points` — ``q*``, ``c*``, stability, ``χ₁``, ``ξ_q``, ``ξ_c``.
* :mod:`~widelimit.propagation.phase` — critical line ``χ₁ = 1`` (root finding) and phase diagram.
* :mod:`~widelimit.propagation.finite` — finite-width nets against the Gaussian limit.
* :mod:`~widelimit.propagation.plots` — figures.

Every Gaussian expectation is the activation layer's own ``dual`` (one formula
per activation).
"""

from widelimit.propagation.finite import (
    FiniteWidthStudy,
    default_inputs,
    finite_width_study,
    fit_loglog,
    preactivations,
    propagation_net,
    w1_to_normal,
)
from widelimit.propagation.fixed_points import (
    FixedPoint,
    c_star,
    chi1,
    fixed_point,
    q_star,
    q_star_many,
)
from widelimit.propagation.maps import Trajectory, c_map, covariance_map, q_map, trajectory
from widelimit.propagation.phase import (
    CriticalLine,
    PhaseDiagram,
    chi1_grid,
    critical_line,
    critical_sigma_w2,
    critical_w_std,
    phase_diagram,
)

__all__ = [
    "CriticalLine",
    "FiniteWidthStudy",
    "FixedPoint",
    "PhaseDiagram",
    "Trajectory",
    "c_map",
    "c_star",
    "chi1",
    "chi1_grid",
    "covariance_map",
    "critical_line",
    "critical_sigma_w2",
    "critical_w_std",
    "default_inputs",
    "finite_width_study",
    "fit_loglog",
    "fixed_point",
    "phase_diagram",
    "preactivations",
    "propagation_net",
    "q_map",
    "q_star",
    "q_star_many",
    "trajectory",
    "w1_to_normal",
]
