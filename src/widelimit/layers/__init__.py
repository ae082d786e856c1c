"""Layers grouped by family; each file holds a layer's finite module and its kernel rule."""

from widelimit.layers.activations import (
    ELU,
    Activation,
    Elementwise,
    Erf,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from widelimit.layers.base import Layer
from widelimit.layers.combinators import FanInSum, FanOut, Identity, parallel, serial
from widelimit.layers.dense import Dense

__all__ = [
    "ELU",
    "Activation",
    "Dense",
    "Elementwise",
    "Erf",
    "FanInSum",
    "FanOut",
    "Identity",
    "Layer",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "parallel",
    "serial",
]
