"""widelimit: infinite-width neural networks made computable, checkable and fast.

Public API (see README): layers and combinators build a network spec; the spec
gives analytic kernels (``net.kernel``), finite modules (``net.module``) and
Monte Carlo estimates (``monte_carlo_kernel``).
"""

from widelimit.empirical import empirical_ntk
from widelimit.kernel import Kernel
from widelimit.layers import (
    ELU,
    Activation,
    Dense,
    Elementwise,
    Erf,
    FanInSum,
    FanOut,
    Identity,
    Layer,
    ReLU,
    SiLU,
    Sigmoid,
    Softplus,
    Tanh,
    parallel,
    serial,
)
from widelimit.monte_carlo import MonteCarloKernel, monte_carlo_kernel
from widelimit.spec_text import load_net, parse_net

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "Activation",
    "Dense",
    "Elementwise",
    "Erf",
    "FanInSum",
    "FanOut",
    "Identity",
    "Kernel",
    "Layer",
    "MonteCarloKernel",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "__version__",
    "empirical_ntk",
    "load_net",
    "monte_carlo_kernel",
    "parallel",
    "parse_net",
    "serial",
]
