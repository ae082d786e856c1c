"""Layers grouped by family; each file holds a layer's finite module and its kernel rule.

* ``dense.py``: ``Dense`` and the input kernel;
* ``activations.py``: elementwise activations (closed-form and numerical duals);
* ``conv.py``: ``Conv1d``, ``Conv2d``;
* ``pooling.py``: ``AvgPool1d/2d``, ``GlobalAvgPool``, ``Flatten``;
* ``normalization.py``: ``LayerNorm``, ``Dropout``, ``Scale``;
* ``combinators.py``: ``serial``, ``parallel``, ``FanOut``, ``FanInSum``, ``Identity``.
"""

from widelimit.layers.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    RBF,
    ABReLU,
    Abs,
    Activation,
    Cos,
    Elementwise,
    Erf,
    Exp,
    Gaussian,
    Hermite,
    LeakyReLU,
    Monomial,
    NumericalActivation,
    RectifiedMonomial,
    ReLU,
    Sigmoid,
    Sign,
    SiLU,
    Sin,
    Softplus,
    Tanh,
    activation_from_name,
    correlation,
)
from widelimit.layers.base import Layer
from widelimit.layers.combinators import FanInSum, FanOut, Identity, parallel, serial
from widelimit.layers.conv import Conv1d, Conv2d
from widelimit.layers.dense import Dense
from widelimit.layers.normalization import Dropout, LayerNorm, Scale
from widelimit.layers.pooling import AvgPool1d, AvgPool2d, Flatten, GlobalAvgPool

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "RBF",
    "ABReLU",
    "Abs",
    "Activation",
    "AvgPool1d",
    "AvgPool2d",
    "Conv1d",
    "Conv2d",
    "Cos",
    "Dense",
    "Dropout",
    "Elementwise",
    "Erf",
    "Exp",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gaussian",
    "GlobalAvgPool",
    "Hermite",
    "Identity",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Monomial",
    "NumericalActivation",
    "ReLU",
    "RectifiedMonomial",
    "Scale",
    "SiLU",
    "Sigmoid",
    "Sign",
    "Sin",
    "Softplus",
    "Tanh",
    "activation_from_name",
    "correlation",
    "parallel",
    "serial",
]
