"""Finite-width corrections at leading order in 1/n (docs/finite_width.md)."""

from widelimit.finite_width.exact import exact_four_point
from widelimit.finite_width.ntk import MonteCarloNTK, monte_carlo_ntk, sample_ntk
from widelimit.finite_width.ntk_theory import NTKFluctuations, ntk_fluctuations
from widelimit.finite_width.sampling import (
    MonteCarloFourPoint,
    monte_carlo_four_point,
    sample_outputs,
)
from widelimit.finite_width.spec import DenseChain, dense_chain
from widelimit.finite_width.vertex import FourPointFunction, four_point_function

__all__ = [
    "DenseChain",
    "FourPointFunction",
    "MonteCarloFourPoint",
    "MonteCarloNTK",
    "NTKFluctuations",
    "dense_chain",
    "exact_four_point",
    "four_point_function",
    "monte_carlo_four_point",
    "monte_carlo_ntk",
    "ntk_fluctuations",
    "sample_ntk",
    "sample_outputs",
]
