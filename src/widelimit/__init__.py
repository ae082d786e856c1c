"""widelimit: infinite-width neural networks made computable, checkable and fast.

Public API (see docs/getting-started.md): layers and combinators build a network spec; the spec
gives analytic kernels (``net.kernel``), finite modules (``net.module``) and
Monte Carlo estimates (``monte_carlo_kernel``).
"""

from widelimit._lazy import lazy_exports

#: The layers' public names (``widelimit.layers.__all__``, in its order; a test keeps the two
#: equal).  Listed here so that ``import widelimit`` needs no torch: the command line starts
#: without it, and ``widelimit kernel --plan`` can answer from its cache in a fraction of a
#: second (importing torch alone takes 1.4 s on a quiet 2-core machine).
_LAYER_NAMES = (
    "Layer",
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "RBF",
    "ABReLU",
    "Abs",
    "Activation",
    "Cos",
    "Elementwise",
    "ElementwiseModule",
    "Erf",
    "Exp",
    "Gaussian",
    "Hermite",
    "LeakyReLU",
    "Monomial",
    "NumericalActivation",
    "ReLU",
    "RectifiedMonomial",
    "SiLU",
    "Sigmoid",
    "Sign",
    "Sin",
    "Softplus",
    "Tanh",
    "activation_from_name",
    "correlation",
    "GlobalSelfAttention",
    "GlobalSelfAttentionModule",
    "FanInConcat",
    "FanInProd",
    "FanInSum",
    "FanOut",
    "Identity",
    "Parallel",
    "Serial",
    "parallel",
    "repeat",
    "serial",
    "Conv1d",
    "Conv2d",
    "ConvModule",
    "ExpNormalized",
    "Gabor",
    "Polynomial",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTransposeModule",
    "Dense",
    "DenseModule",
    "Aggregate",
    "AggregateModule",
    "ConvLocal1d",
    "ConvLocal2d",
    "ConvLocalModule",
    "Dropout",
    "LayerNorm",
    "LayerNormModule",
    "Multiply",
    "MultiplyModule",
    "Scale",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPoolModule",
    "Flatten",
    "FlattenModule",
    "GlobalAvgPool",
    "GlobalAvgPoolModule",
    "GlobalSumPool",
    "GlobalSumPoolModule",
    "SumPool1d",
    "SumPool2d",
    "SumPoolModule",
)

#: Where each public name lives; imported on first use (PEP 562, see ``widelimit._lazy``) so
#: ``import widelimit`` loads neither torch nor Dask, Zarr, SciPy's integrators or matplotlib.
#: ``linearize`` lives in ``widelimit.linearization``: a submodule named like the function
#: would rebind the package attribute to the module when imported.
_LAZY = {
    **dict.fromkeys(_LAYER_NAMES, "widelimit.layers"),
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
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__version__ = "0.1.0"

__all__ = [
    *_LAYER_NAMES,
    "__version__",
    *sorted(set(_LAZY) - set(_LAYER_NAMES) - {"layers"}),  # (layers: not in ``import *``)
]
