"""widelimit: infinite-width neural networks made computable, checkable and fast.

Public API (see docs/getting-started.md): layers and combinators build a network spec; the spec
gives analytic kernels (``net.kernel``), finite modules (``net.module``) and
Monte Carlo estimates (``monte_carlo_kernel``).
"""

from widelimit import finite_width, meanfield, propagation, scale, sde
from widelimit.empirical import (
    empirical_ntk,
    empirical_ntk_full,
    empirical_ntk_to_store,
    plan_empirical_ntk,
)
from widelimit.estimators import NNGPClassifier, NNGPRegressor, NTKClassifier, NTKRegressor
from widelimit.fingerprint import versioned
from widelimit.finite_width import (
    FourPointFunction,
    MonteCarloFourPoint,
    NTKFluctuations,
    exact_four_point,
    four_point_function,
    monte_carlo_four_point,
    ntk_fluctuations,
)
from widelimit.from_torch import from_module
from widelimit.kernel import Kernel
from widelimit.layers import *  # noqa: F403 - re-export every layer
from widelimit.layers import __all__ as _layers_all
from widelimit.linearize import TaylorExpansion, linearize, taylor_expand
from widelimit.monte_carlo import MonteCarloKernel, monte_carlo_kernel
from widelimit.predict import (
    gp_inference,
    gradient_descent,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    max_learning_rate,
)
from widelimit.scale import compute_kernel, load_kernel
from widelimit.spec_text import load_net, parse_net

__version__ = "0.1.0"

__all__ = [
    *_layers_all,
    "FourPointFunction",
    "Kernel",
    "MonteCarloFourPoint",
    "MonteCarloKernel",
    "NNGPClassifier",
    "NNGPRegressor",
    "NTKClassifier",
    "NTKFluctuations",
    "NTKRegressor",
    "TaylorExpansion",
    "__version__",
    "compute_kernel",
    "empirical_ntk",
    "empirical_ntk_full",
    "empirical_ntk_to_store",
    "exact_four_point",
    "finite_width",
    "four_point_function",
    "from_module",
    "gp_inference",
    "gradient_descent",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "linearize",
    "load_kernel",
    "load_net",
    "max_learning_rate",
    "meanfield",
    "monte_carlo_four_point",
    "monte_carlo_kernel",
    "ntk_fluctuations",
    "parse_net",
    "plan_empirical_ntk",
    "propagation",
    "scale",
    "sde",
    "taylor_expand",
    "versioned",
]
