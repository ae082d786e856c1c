"""Elementwise activations: finite module and Gaussian dual side by side.

Each activation φ defines, once, its *dual* (STYLE.md example 3)::

    dual(q1, q2, s12, ntk=...) -> (E[φ(u) φ(v)], E[φ'(u) φ'(v)] or None)

with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``; ``q1, q2, s12`` are tensors
that broadcast together.  The kernel rule, the signal-propagation maps and
the SDE drifts all use it.  The kernel rule (DESIGN.md §2)::

    Σ' = E[φ(u) φ(v)]        Θ' = Θ · E[φ'(u) φ'(v)]

Closed forms where they exist; :class:`Activation` (and ``Tanh``, ``Softplus``,
``SiLU``, ``ELU``, ``Sigmoid`` built on it) uses numerical quadrature
(:mod:`widelimit._quadrature`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from widelimit._quadrature import gaussian_dual
from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape

Fn = Callable[[Tensor], Tensor]


class ElementwiseModule(nn.Module):
    """Finite module applying an activation layer's ``fn`` elementwise."""

    def __init__(self, layer: Elementwise) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.fn(x)

    def extra_repr(self) -> str:
        return repr(self.layer)


def correlation(q1: Tensor, q2: Tensor, s12: Tensor) -> tuple[Tensor, Tensor]:
    """``(√(q1 q2), c)`` with ``c = s12/√(q1 q2)`` clamped to ``[-1, 1]`` (0 where q1 q2 = 0)."""
    prod = (q1 * q2).clamp_min(0).sqrt()
    tiny = torch.finfo(prod.dtype).tiny
    c = torch.where(prod > tiny, s12 / prod.clamp_min(tiny), torch.zeros_like(s12))
    return prod, c.clamp(-1.0, 1.0)


class Elementwise(Layer):
    """Base class of activation layers (see module docstring).

    Subclasses implement ``fn`` (finite forward pass), ``derivative`` and ``dual``.
    """

    def fn(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dual(
        self, q1: Tensor, q2: Tensor, s12: Tensor, *, ntk: bool = True
    ) -> tuple[Tensor, Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------- layer protocol
    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return single_shape(self, in_shape)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return ElementwiseModule(self)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        if not k.is_gaussian:
            raise ValueError(
                f"{type(self).__name__} must follow an affine layer (Dense/Conv): its kernel "
                "rule needs Gaussian pre-activations, but its input is a raw input or the "
                "output of another activation"
            )
        q1, q2 = k.variances()
        nngp, dd = self.dual(q1, q2, k.nngp, ntk=k.ntk is not None)
        ntk = None if k.ntk is None or dd is None else k.ntk * dd
        a1, b1 = k.self_variances(1)
        cov1, _ = self.dual(a1, b1, k.cov1, ntk=False)
        cov2 = None
        if k.cov2 is not None:
            a2, b2 = k.self_variances(2)
            cov2, _ = self.dual(a2, b2, k.cov2, ntk=False)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)


# --------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReLU(Elementwise):
    """``φ(x) = max(x, 0)`` — arc-cosine kernel of degree 1 (Cho & Saul 2009, eq. (6))."""

    def fn(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def derivative(self, x: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        theta = torch.arccos(c)
        # E[φφ] = √(q1q2)/(2π) (sin θ + (π − θ) cos θ)
        nngp = prod / (2 * math.pi) * (torch.sqrt((1 - c * c).clamp_min(0)) + (math.pi - theta) * c)
        dd = (math.pi - theta) / (2 * math.pi) if ntk else None  # E[φ'φ'] = (π − θ)/(2π)
        return nngp, dd


@dataclass(frozen=True)
class Erf(Elementwise):
    """``φ(x) = erf(x)`` (Williams 1997)."""

    def fn(self, x: Tensor) -> Tensor:
        return torch.erf(x)

    def derivative(self, x: Tensor) -> Tensor:
        return 2 / math.sqrt(math.pi) * torch.exp(-x * x)

    def dual(self, q1, q2, s12, *, ntk=True):
        d = (1 + 2 * q1) * (1 + 2 * q2)
        # E[φφ] = (2/π) arcsin(2Σ12 / √((1 + 2q1)(1 + 2q2)))
        nngp = 2 / math.pi * torch.arcsin((2 * s12 / d.sqrt()).clamp(-1, 1))
        # E[φ'φ'] = (4/π) / √((1 + 2q1)(1 + 2q2) − 4Σ12²)
        dd = 4 / math.pi / (d - 4 * s12 * s12).clamp_min(torch.finfo(d.dtype).tiny).sqrt()
        return nngp, (dd if ntk else None)


# --------------------------------------------------------------------------
# Numerical: arbitrary callables
# --------------------------------------------------------------------------


def autograd_derivative(fn: Fn) -> Fn:
    """Elementwise derivative of an elementwise torch function, by autograd."""

    def dfn(x: Tensor) -> Tensor:
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(xx).sum(), xx)
        return g

    return dfn


class NumericalActivation(Elementwise):
    """Activation whose dual is computed by Gaussian quadrature (:mod:`widelimit._quadrature`)."""

    def dual(self, q1, q2, s12, *, ntk=True):
        return gaussian_dual(self.fn, self.derivative, q1, q2, s12, ntk=ntk)


@dataclass(frozen=True)
class Activation(NumericalActivation):
    """Any elementwise torch callable, e.g. ``Activation(torch.tanh)``.

    Args:
        function: elementwise ``Tensor -> Tensor``.
        derivative_fn: its derivative; ``None`` derives it with autograd.
        name: label used in reprs and reports.
    """

    function: Fn
    derivative_fn: Fn | None = None
    name: str = ""
    _d: Fn = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(f"`function` must be callable; got {type(self.function).__name__}")
        if self.derivative_fn is not None and not callable(self.derivative_fn):
            raise TypeError("`derivative_fn` must be callable or None")
        d = self.derivative_fn or autograd_derivative(self.function)
        object.__setattr__(self, "_d", d)
        if not self.name:
            object.__setattr__(self, "name", getattr(self.function, "__name__", "activation"))

    def fn(self, x: Tensor) -> Tensor:
        return self.function(x)

    def derivative(self, x: Tensor) -> Tensor:
        return self._d(x)


@dataclass(frozen=True)
class Tanh(NumericalActivation):
    """``φ(x) = tanh(x)`` (numerical dual)."""

    def fn(self, x):
        return torch.tanh(x)

    def derivative(self, x):
        return 1 - torch.tanh(x) ** 2


@dataclass(frozen=True)
class Sigmoid(NumericalActivation):
    """``φ(x) = 1/(1 + e^{−x})`` (numerical dual)."""

    def fn(self, x):
        return torch.sigmoid(x)

    def derivative(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)


@dataclass(frozen=True)
class Softplus(NumericalActivation):
    """``φ(x) = log(1 + e^x)`` (numerical dual)."""

    def fn(self, x):
        return nn.functional.softplus(x)

    def derivative(self, x):
        return torch.sigmoid(x)


@dataclass(frozen=True)
class SiLU(NumericalActivation):
    """``φ(x) = x·sigmoid(x)`` (swish; numerical dual)."""

    def fn(self, x):
        return nn.functional.silu(x)

    def derivative(self, x):
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s))


@dataclass(frozen=True)
class ELU(NumericalActivation):
    """``φ(x) = x`` for x>0, ``α(e^x − 1)`` otherwise (numerical dual)."""

    alpha: float = 1.0

    def fn(self, x):
        return nn.functional.elu(x, alpha=self.alpha)

    def derivative(self, x):
        return torch.where(x > 0, torch.ones_like(x), self.alpha * torch.exp(x.clamp_max(0)))


__all__ = [
    "ELU",
    "Activation",
    "Elementwise",
    "ElementwiseModule",
    "Erf",
    "NumericalActivation",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "autograd_derivative",
    "correlation",
]
