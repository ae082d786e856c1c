"""Layer-to-layer maps of signal propagation: q-map, c-map, covariance map, trajectories.

Network (docs/propagation.md, Poole et al. 2016): ``depth`` dense layers of infinite
width in the ``"ntk"`` (or standard — same NNGP) parameterization, the
activation φ between them::

    h¹ = (σw/√d) W¹ x + σb b¹,     h^{l+1} = (σw/√n) W^{l+1} φ(h^l) + σb b^{l+1}

``q^l(x) = E[h^l_i(x)²]`` is the pre-activation variance of layer ``l`` and
``c^l(x, x') = E[h^l_i(x) h^l_i(x')]/√(q^l(x) q^l(x'))`` the correlation.
With ``Σ⁰ = x·x'/d`` (the input kernel, docs/kernels.md, 'The input kernel')::

    Σ¹ = σw² Σ⁰ + σb²
    Σ^{l+1}(x, x') = σw² E[φ(u) φ(v)] + σb²,  (u, v) ~ N(0, [[q^l(x), Σ^l], [Σ^l, q^l(x')]])

whose diagonal is the q-map ``q^{l+1} = σw² E_z[φ(√q^l z)²] + σb²`` (Poole et
al. 2016, eq. (3)) and whose normalised off-diagonal is the c-map (eq. (5)).
Every Gaussian expectation here is the activation's own
:meth:`~widelimit.layers.activations.Elementwise.dual` (one formula per
activation, docs/activations.md): ``E[φ(√q z)²] = dual(q, q, q)[0]``.

All computations are in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import (
    as_float_tensor,
    check_finite,
    check_nonnegative,
    check_positive_int,
)
from widelimit.deprecation import deprecated_attribute, renamed_kwargs
from widelimit.layers.activations import Elementwise

__all__ = [
    "Trajectory",
    "activation_label",
    "c_map",
    "check_activation",
    "covariance_map",
    "q_map",
    "trajectory",
    "two_input_covariance",
]

DTYPE = torch.float64


@renamed_kwargs(act="activation")
def check_activation(activation: object, name: str = "activation") -> Elementwise:
    """Return ``activation`` if it is an activation layer object (e.g. ``Tanh()``), else raise."""
    if isinstance(activation, type) and issubclass(activation, Elementwise):
        raise TypeError(
            f"`{name}` must be an activation layer instance; got the class {activation.__name__} "
            f"(add parentheses: {activation.__name__}())"
        )
    if not isinstance(activation, Elementwise):
        raise TypeError(
            f"`{name}` must be a widelimit activation layer (an Elementwise such as ReLU(), "
            f"Erf(), Tanh() or Activation(fn)); got {type(activation).__name__}. For a name use "
            "widelimit.layers.activations.activation_from_name"
        )
    return activation


@renamed_kwargs(act="activation")
def activation_label(activation: Elementwise) -> str:
    """Short human label of an activation (its repr without an empty ``()``)."""
    r = repr(activation)
    return r[:-2] if r.endswith("()") else r


def _tensor(name: str, x: object) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    t = t.to(DTYPE)
    check_finite(name, t)
    return t


def _nonneg_tensor(name: str, x: object) -> Tensor:
    t = _tensor(name, x)
    if bool((t < 0).any()):
        raise ValueError(f"`{name}` must be >= 0 (a variance); got min {float(t.min())}")
    return t


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def q_map(activation: Elementwise, q: object, w_std: float, b_std: float) -> Tensor:
    """The length (q-) map ``q ↦ σw² E_z[φ(√q z)²] + σb²`` (Poole et al. 2016, eq. (3)).

    Args:
        activation: activation layer, e.g. ``Tanh()``.
        q: pre-activation variance(s) ``q^l ≥ 0``, any shape (float, array or tensor).
        w_std, b_std: weight and bias standard deviations (σw, σb ≥ 0).
    Returns:
        ``q^{l+1}`` with the shape of ``q`` (float64 tensor).
    """
    activation = check_activation(activation)
    w2 = check_nonnegative("w_std", w_std) ** 2
    b2 = check_nonnegative("b_std", b_std) ** 2
    q = _nonneg_tensor("q", q)
    v, _ = activation.dual(q, q, q, ntk=False)  # E[φ(√q z)²]
    return w2 * v + b2


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def c_map(activation: Elementwise, c: object, q: object, w_std: float, b_std: float) -> Tensor:
    """The correlation (c-) map for two inputs of equal variance ``q`` (Poole et al. 2016, eq. (5)).

    ``c ↦ (σw² E[φ(u)φ(v)] + σb²) / q_map(q)`` with ``(u, v)`` of variances ``q`` and
    covariance ``c q``.  At a fixed point ``q = q*`` the denominator is ``q*``.

    Args:
        activation: activation layer.
        c: correlations in ``[-1, 1]``, any shape.
        q: variance(s) ``> 0`` broadcasting with ``c``.
        w_std, b_std: σw, σb ≥ 0.
    Returns:
        ``c^{l+1}``, the broadcast shape of ``c`` and ``q`` (float64 tensor).
    """
    activation = check_activation(activation)
    w2 = check_nonnegative("w_std", w_std) ** 2
    b2 = check_nonnegative("b_std", b_std) ** 2
    c = _tensor("c", c)
    if bool((c.abs() > 1).any()):
        raise ValueError(
            f"`c` must be a correlation in [-1, 1]; got max |c| {float(c.abs().max())}"
        )
    q = _nonneg_tensor("q", q)
    if bool((q == 0).any()):
        raise ValueError("`q` must be > 0 for the c-map (the correlation is undefined at q = 0)")
    c, q = torch.broadcast_tensors(c, q)
    cross, _ = activation.dual(q, q, c * q, ntk=False)
    diag, _ = activation.dual(q, q, q, ntk=False)
    return (w2 * cross + b2) / (w2 * diag + b2)


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def covariance_map(activation: Elementwise, cov: object, w_std: float, b_std: float) -> Tensor:
    """One layer of the NNGP recursion on a ``(P, P)`` pre-activation covariance.

    ``Σ' = σw² E[φ(u) φ(v)] + σb²`` entrywise, with ``q1, q2`` the diagonal
    entries (docs/kernels.md, dense ∘ activation).
    """
    activation = check_activation(activation)
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    cov = _tensor("cov", cov)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"`cov` must be a square (P, P) matrix; got shape {tuple(cov.shape)}")
    d = torch.diagonal(cov)
    if bool((d < 0).any()):
        raise ValueError("`cov` must have a non-negative diagonal (variances)")
    e, _ = activation.dual(d[:, None], d[None, :], cov, ntk=False)
    return sw**2 * e + sb**2


def two_input_covariance(q0: float = 1.0, c0: float = 0.5) -> Tensor:
    """``Σ⁰ = [[q0, c0 q0], [c0 q0, q0]]``: two inputs of equal length and correlation ``c0``."""
    q0 = check_nonnegative("q0", q0)
    c0 = float(c0)
    if not -1.0 <= c0 <= 1.0:
        raise ValueError(f"`c0` must be a correlation in [-1, 1]; got {c0!r}")
    return torch.tensor([[q0, c0 * q0], [c0 * q0, q0]], dtype=DTYPE)


@dataclass(frozen=True)
class Trajectory:
    """Layer-by-layer infinite-width statistics of ``P`` inputs.

    Attributes:
        activation: label of φ.
        w_std, b_std: σw, σb.
        input_cov: ``(P, P)`` input kernel ``Σ⁰ = x·x'/d``.
        cov: ``(depth, P, P)``; ``cov[l-1]`` is the pre-activation covariance
            ``Σ^l`` of layer ``l = 1..depth`` (= the NNGP of a net of ``l`` dense layers).
        q: ``(depth, P)`` variances ``q^l`` (diagonal of ``cov``).
        c: ``(depth, P, P)`` correlations ``c^l`` (1 on the diagonal).
    """

    activation: str
    w_std: float
    b_std: float
    input_cov: np.ndarray
    cov: np.ndarray
    q: np.ndarray
    c: np.ndarray

    sigma_w = deprecated_attribute("w_std")
    sigma_b = deprecated_attribute("b_std")

    @property
    def depth(self) -> int:
        return int(self.cov.shape[0])

    @property
    def layers(self) -> np.ndarray:
        """``(depth,)`` layer indices ``1..depth``."""
        return np.arange(1, self.depth + 1)


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def trajectory(
    activation: Elementwise,
    w_std: float,
    b_std: float,
    depth: int,
    *,
    input_cov: object | None = None,
    q0: float = 1.0,
    c0: float = 0.5,
) -> Trajectory:
    """Iterate the covariance map through ``depth`` dense layers (module docstring).

    Args:
        activation: activation layer.
        w_std, b_std: σw, σb ≥ 0 (the same for every layer).
        depth: number of dense layers (``q^1 .. q^depth``).
        input_cov: ``(P, P)`` input kernel ``Σ⁰`` (e.g. ``x @ x.T / d``); default
            two inputs with ``Σ⁰ = [[q0, c0 q0], [c0 q0, q0]]``.
        q0, c0: used only when ``input_cov`` is ``None``.
    Returns:
        A :class:`Trajectory`.
    """
    activation = check_activation(activation)
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    depth = check_positive_int("depth", depth)
    if input_cov is None:
        k0 = two_input_covariance(q0, c0)
    else:
        k0 = as_float_tensor("input_cov", input_cov, min_ndim=2, max_ndim=2).to(DTYPE)
        if k0.shape[0] != k0.shape[1] or not torch.allclose(k0, k0.T, rtol=1e-12, atol=0):
            raise ValueError(
                f"`input_cov` must be a symmetric (P, P) matrix; got {tuple(k0.shape)}"
            )
        if bool((torch.diagonal(k0) < 0).any()):
            raise ValueError("`input_cov` must have a non-negative diagonal (variances)")
    covs = []
    k = sw**2 * k0 + sb**2  # Σ¹ = σw² Σ⁰ + σb² (docs/kernels.md, 'Dense layers')
    covs.append(k)
    for _ in range(depth - 1):
        k = covariance_map(activation, k, sw, sb)  # Poole et al. 2016, eqs. (3), (5)
        covs.append(k)
    cov = torch.stack(covs)
    q = torch.diagonal(cov, dim1=1, dim2=2)
    norm = (q[:, :, None] * q[:, None, :]).sqrt()
    c = torch.where(norm > 0, cov / norm.clamp_min(1e-300), torch.zeros_like(cov))
    c = c.clamp(-1.0, 1.0)
    return Trajectory(
        activation=activation_label(activation),
        w_std=sw,
        b_std=sb,
        input_cov=k0.numpy(),
        cov=cov.numpy(),
        q=q.numpy().copy(),
        c=c.numpy(),
    )
