"""Linearised and Taylor-expanded networks (Lee et al. 2019; Neural Tangents' ``linearize``).

For a module ``f(x; θ)`` and an expansion point ``θ₀`` (the module's parameters
when the function is called):

* :func:`linearize` — ``f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀)``, the first-order
  Taylor polynomial in the parameters.  Trained by gradient descent on MSE it
  follows exactly the NTK dynamics with the *empirical* NTK at ``θ₀``
  (Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
  under gradient descent", eq. (6)).
* :func:`taylor_expand` — ``Σ_{k ≤ degree} (1/k!) D^k_θ f(x; θ₀)[δθ, …, δθ]`` with
  ``δθ = θ − θ₀`` (``degree = 1`` is the linearisation).

Both return an :class:`torch.nn.Module` whose *trainable parameters are θ*
(same names as in the original module, initialised to ``θ₀``), so any optimiser
or training loop written for the network trains its expansion unchanged.  The
Jacobian is never formed: every directional derivative is a forward-mode
product (:func:`torch.func.jvp`), nested ``k`` times for the ``k``-th term; a
backward pass through it gives ``J(x; θ₀)ᵀ r`` (reverse over forward mode).
"""

from __future__ import annotations

import copy
import math

from torch import Tensor, nn
from torch.func import functional_call, jvp

__all__ = ["TaylorExpansion", "linearize", "taylor_expand"]


class TaylorExpansion(nn.Module):
    """``f(x; θ₀ + δθ)`` expanded to ``degree`` in ``δθ = θ − θ₀`` (module docstring).

    Attributes:
        module: a copy of the original module; its trainable parameters are ``θ``
            (initialised to ``θ₀``), its buffers and frozen parameters are used as they are.
        degree: order of the expansion (``0`` = the constant ``f(x; θ₀)``).
    Forward: ``x`` as for the original module; returns a tensor of the original
    output's shape, dtype and device.
    """

    def __init__(self, module: nn.Module, degree: int) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
            raise ValueError(f"`degree` must be an integer >= 0; got {degree!r}")
        self.module = copy.deepcopy(module)
        self.degree = degree
        self._names = [n for n, p in self.module.named_parameters() if p.requires_grad]
        if not self._names:
            raise ValueError("`module` has no trainable parameters to expand in")
        for i, name in enumerate(self._names):
            # θ₀ as buffers: they follow .to(...) but are not trained
            self.register_buffer(f"theta0_{i}", self.module.get_parameter(name).detach().clone())

    def theta0(self) -> dict[str, Tensor]:
        """The expansion point ``{parameter name: tensor}`` (names as in the original module)."""
        return {n: getattr(self, f"theta0_{i}") for i, n in enumerate(self._names)}

    def delta(self) -> dict[str, Tensor]:
        """``θ − θ₀`` per trainable parameter (differentiable in ``θ``)."""
        th0 = self.theta0()
        return {n: self.module.get_parameter(n) - th0[n] for n in self._names}

    def _f(self, x: Tensor):
        def f(params: dict[str, Tensor]) -> Tensor:
            out = functional_call(self.module, params, (x,))
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"the module must return one tensor to be expanded; got {type(out).__name__}"
                )
            return out

        return f

    def forward(self, x: Tensor) -> Tensor:
        th0, dth = self.theta0(), self.delta()
        f = self._f(x)
        # d_k(p) = D^k f(p)[δθ, …, δθ]: each order is the JVP of the previous one
        derivs = [f]
        for _ in range(self.degree):
            prev = derivs[-1]
            derivs.append(lambda p, g=prev: jvp(g, (p,), (dth,))[1])
        out = derivs[0](th0)
        for k in range(1, self.degree + 1):
            out = out + derivs[k](th0) / math.factorial(k)
        return out

    def extra_repr(self) -> str:
        return f"degree={self.degree}"


class Linearized(TaylorExpansion):
    """``f(x; θ₀) + J(x; θ₀)(θ − θ₀)``: one JVP gives value and tangent together."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, tangent = jvp(self._f(x), (self.theta0(),), (self.delta(),))
        return out + tangent


def linearize(module: nn.Module) -> TaylorExpansion:
    """The linearisation of ``module`` in its parameters around their current values ``θ₀``.

    ``f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀)`` (Lee et al. 2019, eq. (6)).

    Args:
        module: any module mapping ``x`` to one tensor; its trainable parameters
            (``requires_grad=True``) are the ones expanded in.
    Returns:
        A module with the same call signature whose trainable parameters are ``θ``
        (initialised to ``θ₀``, same names prefixed by ``module.``); at ``θ = θ₀`` it
        returns exactly ``module(x)``.  The original module is not modified.
    """
    return Linearized(module)


def taylor_expand(module: nn.Module, degree: int) -> TaylorExpansion:
    """Taylor expansion of ``module`` to order ``degree`` in its parameters around ``θ₀``.

    ``f_k(x; θ) = Σ_{j=0}^{degree} (1/j!) D^j_θ f(x; θ₀)[δθ^{⊗j}]``, ``δθ = θ − θ₀``; the
    error is ``O(|δθ|^{degree+1})`` for smooth ``f``.  ``degree = 1`` equals
    :func:`linearize`.  Cost: ``2^degree`` forward passes' worth of forward-mode work.

    Args:
        module: as for :func:`linearize`.
        degree: integer ``>= 0``.
    Returns:
        A :class:`TaylorExpansion` module whose trainable parameters are ``θ``.
    """
    return TaylorExpansion(module, degree)
