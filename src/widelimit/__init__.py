"""widelimit: infinite-width neural networks made computable, checkable and fast.

Public API (see docs/getting-started.md): layers and combinators build a network spec; the spec
gives analytic kernels (``net.kernel``), finite modules (``net.module``) and
Monte Carlo estimates (``monte_carlo_kernel``).
"""

from widelimit._lazy import lazy_exports
from widelimit.layers import *  # noqa: F403 - re-export every layer
from widelimit.layers import __all__ as _layers_all

# Eager, not lazy: ``linearize`` is also the name of its submodule, and importing the submodule
# (``import widelimit.linearize``) binds the package attribute to the module, so a lazy
# ``__getattr__`` would never run and ``widelimit.linearize(...)`` would call a module.
# (torch.func only: no import cost beyond the layers'.)
from widelimit.linearize import TaylorExpansion, linearize, taylor_expand

#: Where each public name lives; imported on first use (PEP 562, see ``widelimit._lazy``) so
#: ``import widelimit`` does not load Dask, Zarr, SciPy's integrators or matplotlib.
_LAZY = {
    **{m: f"widelimit.{m}" for m in ("finite_width", "meanfield", "propagation", "scale", "sde")},
    **dict.fromkeys(
        ("empirical_ntk", "empirical_ntk_full", "empirical_ntk_to_store", "plan_empirical_ntk"),
        "widelimit.empirical",
    ),
    **dict.fromkeys(
        ("NNGPClassifier", "NNGPRegressor", "NTKClassifier", "NTKRegressor"),
        "widelimit.estimators",
    ),
    "versioned": "widelimit.fingerprint",
    **dict.fromkeys(
        (
            "FourPointFunction",
            "MonteCarloFourPoint",
            "NTKFluctuations",
            "exact_four_point",
            "four_point_function",
            "monte_carlo_four_point",
            "ntk_fluctuations",
        ),
        "widelimit.finite_width",
    ),
    "from_module": "widelimit.from_torch",
    "Kernel": "widelimit.kernel",
    **dict.fromkeys(("MonteCarloKernel", "monte_carlo_kernel"), "widelimit.monte_carlo"),
    **dict.fromkeys(
        (
            "gp_inference",
            "gradient_descent",
            "gradient_descent_mse",
            "gradient_descent_mse_ensemble",
            "max_learning_rate",
        ),
        "widelimit.predict",
    ),
    **dict.fromkeys(("compute_kernel", "load_kernel"), "widelimit.scale"),
    **dict.fromkeys(("load_net", "parse_net"), "widelimit.spec_text"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__version__ = "0.1.0"

__all__ = [
    *_layers_all,
    "__version__",
    "TaylorExpansion",
    "linearize",
    "taylor_expand",
    *sorted(_LAZY),
]
