"""Shaped activations as finite torch modules (Li, Nica, Roy 2022, §2; docs/sde.md).

* :class:`ShapedReLU` — ``φ_s(x) = s₊ max(x, 0) + s₋ min(x, 0)`` with ``s± = 1 + c±/√n``
  (built by :meth:`ShapedReLU.shaped`), or any fixed slopes (e.g. the unshaped ReLU
  ``s₊ = 1, s₋ = 0``); gain ``c = 2/(s₊² + s₋²)``.
* :class:`SmoothShaped` — ``φ_s(x) = s φ(x/s)``, ``s = a√n``, for a smooth ``φ`` with
  ``φ(0) = 0``, ``φ'(0) = 1``; ``φ''(0)``, ``φ'''(0)`` by autograd; gain
  ``c = 1/E[φ_s(g)²]``, ``g ~ N(0, 1)`` (Gauss–Hermite quadrature), which makes the
  one-input drift ``b_* Φ(Φ − 1)`` vanish at ``Φ = 1``.

Each module carries its finite forward pass *and* its limiting drift (:meth:`drift`),
side by side.  ``gain`` is the ``c`` of ``h^{l+1} = √(c/n) W φ_s(h^l)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from widelimit._validation import check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.layers.activations import Elementwise, activation_from_name
from widelimit.sde.drift import ReLUDrift, SmoothDrift

__all__ = [
    "SMOOTH_ACTIVATIONS",
    "ShapedReLU",
    "SmoothShaped",
    "derivatives_at_zero",
    "smooth_activation",
]

Fn = Callable[[Tensor], Tensor]


def _quadratic(x: Tensor) -> Tensor:
    return x + 0.5 * x * x


# Test-bed functions of the SDE that have no activation layer (so no registry entry) yet;
# every other name resolves through widelimit.layers.activations.activation_from_name.
_NOT_IN_REGISTRY: dict[str, Fn] = {"sinh": torch.sinh, "quadratic": _quadratic}


@renamed_kwargs(phi="activation")
def smooth_activation(activation: str | Fn | Elementwise) -> Fn:
    """The elementwise function ``φ`` of an activation name, layer or callable.

    Names resolve through the one activation registry
    (:func:`widelimit.layers.activations.activation_from_name`, e.g. ``"tanh"``, ``"sin"``;
    case-insensitive), plus ``"sinh"`` and ``"quadratic"`` (``x + x²/2``), which have no
    activation layer.  An activation layer gives its ``fn``; a callable passes through.
    """
    if isinstance(activation, Elementwise):
        return activation.fn
    if callable(activation):
        return activation
    if isinstance(activation, str):
        return _resolve_name(activation)
    raise TypeError(
        "`activation` must be a callable, an activation layer or a name; "
        f"got {type(activation).__name__}"
    )


@functools.cache
def _resolve_name(name: str) -> Fn:
    """One function per name, so that resolving a name twice gives the same object."""
    try:
        return activation_from_name(name).fn
    except ValueError as err:
        if name in _NOT_IN_REGISTRY:
            return _NOT_IN_REGISTRY[name]
        raise ValueError(
            "`activation` must be a callable, an activation layer or an activation name "
            f"(a registry name, or one of {sorted(_NOT_IN_REGISTRY)}): {err}"
        ) from err


SMOOTH_ACTIVATIONS: dict[str, Fn] = {
    name: smooth_activation(name) for name in ("tanh", "sin", "sinh", "quadratic")
}
"""Names of smooth activations with ``φ(0) = 0``, ``φ'(0) = 1`` that shape well, and
their functions: ``tanh`` (``b_* = −2/a²``, stable), ``sin`` (``−1/a²``, stable),
``sinh`` (``+1/a²``, unstable), ``quadratic`` ``x + x²/2`` (``¾/a²``, unstable).
A list of suitable names, not a registry: :func:`smooth_activation` resolves names."""


@renamed_kwargs(phi="activation")
def derivatives_at_zero(activation: str | Fn | Elementwise) -> tuple[float, float, float, float]:
    """``(φ(0), φ'(0), φ''(0), φ'''(0))`` of ``activation`` by nested autograd (float64)."""
    fn = smooth_activation(activation)
    x = torch.zeros((), dtype=torch.float64, requires_grad=True)
    out = [fn(x)]
    if not isinstance(out[0], Tensor) or out[0].shape != ():
        raise TypeError("`activation` must map a scalar tensor to a scalar tensor (elementwise)")
    for _ in range(3):
        prev = out[-1]
        if not prev.requires_grad:  # constant: all further derivatives vanish
            out.append(torch.zeros((), dtype=torch.float64))
            continue
        (g,) = torch.autograd.grad(prev, x, create_graph=True, allow_unused=True)
        out.append(torch.zeros((), dtype=torch.float64) if g is None else g)
    return tuple(float(v.detach()) for v in out)  # type: ignore[return-value]


class ShapedReLU(nn.Module):
    """Piecewise-linear ``φ(x) = s₊ max(x,0) + s₋ min(x,0)`` with gain ``c = 2/(s₊² + s₋²)``.

    Use :meth:`shaped` for the shaped ReLU of width ``n`` (``s± = 1 + c±/√n``) and
    :meth:`unshaped` for the plain ReLU (no SDE limit: its correlations collapse at
    ``d = O(1)``).  Input/output: any shape, elementwise.
    """

    def __init__(
        self,
        s_plus: float,
        s_minus: float,
        *,
        c_plus: float | None = None,
        c_minus: float | None = None,
    ) -> None:
        super().__init__()
        s_plus, s_minus = float(s_plus), float(s_minus)
        if not (math.isfinite(s_plus) and math.isfinite(s_minus)) or s_plus**2 + s_minus**2 == 0:
            raise ValueError(
                f"slopes `s_plus`, `s_minus` must be finite and not both 0; got {s_plus}, {s_minus}"
            )
        self.s_plus, self.s_minus = s_plus, s_minus
        self.c_plus, self.c_minus = c_plus, c_minus
        self.gain = 2.0 / (s_plus**2 + s_minus**2)

    @classmethod
    def shaped(cls, c_plus: float, c_minus: float, width: int) -> ShapedReLU:
        """Shaped ReLU of width ``n``: ``s± = 1 + c±/√n`` (Li, Nica, Roy 2022, eq. (2.2))."""
        n = check_positive_int("width", width)
        for name, v in (("c_plus", c_plus), ("c_minus", c_minus)):
            if not math.isfinite(float(v)):
                raise ValueError(f"`{name}` must be a finite number; got {v!r}")
        r = math.sqrt(n)
        return cls(1 + c_plus / r, 1 + c_minus / r, c_plus=float(c_plus), c_minus=float(c_minus))

    @classmethod
    def unshaped(cls) -> ShapedReLU:
        """The plain ReLU ``max(x, 0)`` (gain 2, the He initialisation)."""
        return cls(1.0, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.s_plus * torch.clamp_min(x, 0) + self.s_minus * torch.clamp_max(x, 0)

    def drift(self) -> ReLUDrift:
        """The SDE drift of this shaping; ``ValueError`` for fixed (unshaped) slopes."""
        if self.c_plus is None or self.c_minus is None:
            raise ValueError(
                "this ReLU has fixed slopes, not s± = 1 + c±/√n: it has no covariance-SDE "
                "limit (build it with ShapedReLU.shaped(c_plus, c_minus, width))"
            )
        return ReLUDrift(self.c_plus, self.c_minus)

    def extra_repr(self) -> str:
        return f"s_plus={self.s_plus:.6g}, s_minus={self.s_minus:.6g}, gain={self.gain:.6g}"


class SmoothShaped(nn.Module):
    """``φ_s(x) = s φ(x/s)`` with ``s = a√n`` and gain ``c = 1/E[φ_s(g)²]``, ``g ~ N(0,1)``.

    ``activation``: an activation name (see :func:`smooth_activation`), an activation layer
    or an elementwise torch callable, with ``φ(0) = 0`` and ``φ'(0) = 1`` (checked by
    autograd).  ``a > 0``, ``width = n``.  The resolved callable is the attribute ``phi``;
    the keyword ``phi=`` is deprecated.
    """

    @renamed_kwargs(phi="activation")
    def __init__(
        self, activation: str | Fn | Elementwise, a: float, width: int, *, quad_nodes: int = 120
    ) -> None:
        super().__init__()
        self.phi = smooth_activation(activation)
        if isinstance(activation, str | Elementwise):
            self.name = activation if isinstance(activation, str) else repr(activation)
        else:
            self.name = getattr(activation, "__name__", "phi")
        n = check_positive_int("width", width)
        a = float(a)
        if not math.isfinite(a) or a <= 0:
            raise ValueError(f"`a` must be a finite number > 0; got {a!r}")
        d0, d1, d2, d3 = derivatives_at_zero(self.phi)
        if abs(d0) > 1e-10 or abs(d1 - 1) > 1e-10:
            raise ValueError(
                f"`activation` must satisfy φ(0) = 0 and φ'(0) = 1 for shaping; "
                f"got φ(0) = {d0:.3g}, φ'(0) = {d1:.3g} (rescale/shift it: x ↦ (φ(x) − φ(0))/φ'(0))"
            )
        self.a, self.width, self.scale = a, n, a * math.sqrt(n)
        self.phi2, self.phi3 = d2, d3
        # c = 1/E[φ_s(g)²] by probabilists' Gauss-Hermite quadrature
        x, w = np.polynomial.hermite_e.hermegauss(quad_nodes)
        xt = torch.as_tensor(x, dtype=torch.float64)
        second = float((torch.as_tensor(w) * self.forward(xt) ** 2).sum()) / math.sqrt(2 * math.pi)
        if not math.isfinite(second) or second <= 0:
            raise ValueError(
                f"E[φ_s(g)²] is not finite and positive ({second}); check `activation`"
            )
        self.gain = 1.0 / second

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.phi(x / self.scale)

    def drift(self) -> SmoothDrift:
        """The SDE drift (Li, Nica, Roy 2022, Thm 3.4) from ``φ''(0)``, ``φ'''(0)``, ``a``."""
        return SmoothDrift(self.phi2, self.phi3, self.a)

    def extra_repr(self) -> str:
        return f"phi={self.name}, a={self.a:.6g}, width={self.width}, gain={self.gain:.6g}"
