"""widelimit: infinite-width neural networks made computable, checkable and fast.

Public API (see docs/getting-started.md): layers and combinators build a network spec; the spec
gives analytic kernels (``net.kernel``), finite modules (``net.module``) and
Monte Carlo estimates (``monte_carlo_kernel``).
"""

from widelimit._lazy import lazy_exports

#: Where each public name lives; imported on first use (PEP 562, see ``widelimit._lazy``) so
#: ``import widelimit`` loads neither torch nor Dask, Zarr, SciPy's integrators or matplotlib:
#: the command line starts without torch (1.4 s to import on a quiet 2-core machine) and
#: ``widelimit kernel --plan`` can answer from its cache in a fraction of a second.
#: ``linearize`` lives in ``widelimit.linearization``: a submodule named like the function
#: would rebind the package attribute to the module when imported.
_LAZY = {
    **dict.fromkeys(("TaylorExpansion", "linearize", "taylor_expand"), "widelimit.linearization"),
    **{
        m: f"widelimit.{m}"
        for m in ("finite_width", "layers", "meanfield", "propagation", "scale", "sde")
    },
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
__version__ = "0.1.0"

# The layers' names (``widelimit.layers.__all__``, listed in its submodules) resolve through
# the same ``__getattr__``, importing the layers and torch on first use; ``__all__`` itself is
# computed on first access (``from widelimit import *`` imports everything anyway).
__getattr__, __dir__ = lazy_exports(
    __name__, _LAZY, globals(), also="widelimit.layers", extra_all=("__version__",),
    not_in_all=("layers",),
)  # fmt: skip
