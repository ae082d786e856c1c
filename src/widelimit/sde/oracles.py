"""Exact finite-width laws used as test oracles (docs/sde.md, 'Finite networks and exact oracles').

* Linear net (``φ = id``, gain 1): each layer multiplies the squared norm by
  ``χ²_n/n`` independently, so ``ln(Φ_d/Φ_0)`` is a sum of ``d`` i.i.d. ``ln(χ²_n/n)``:
  mean ``d[ψ(n/2) + ln(2/n)]``, variance ``d ψ'(n/2)`` (→ ``N(−T, 2T)`` at ``d = Tn``).
* Unshaped ReLU (gain 2): each layer multiplies it by ``(2/n) χ²_K``, ``K ~ Bin(n, ½)``
  the number of active units.  ``K = 0`` (probability ``2^{−n}``) kills the norm; the
  moments below condition on ``K ≥ 1`` in every layer.
* Unshaped ReLU correlation at infinite width: ``ρ_{l+1} = K₁(ρ_l)``, the normalised
  arc-cosine map (Cho & Saul 2009), which collapses to 1 (``1 − ρ_l ~ 9π²/(2 l²)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats

from widelimit._validation import check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.layers.activations import ReLU

__all__ = [
    "LogNormLaw",
    "linear_log_norm_law",
    "relu_correlation_map",
    "sample_linear_log_norm",
    "sample_unshaped_relu_log_norm",
    "unshaped_relu_log_norm_law",
]


@dataclass(frozen=True)
class LogNormLaw:
    """Mean and variance of ``ln(Φ_d/Φ_0)`` for one input (exact, finite ``n``, ``d``)."""

    width: int
    depth: int
    mean: float
    var: float


def linear_log_norm_law(width: int, depth: int) -> LogNormLaw:
    """Exact ``ln(Φ_d/Φ_0)`` moments of a linear net: ``d[ψ(n/2) + ln(2/n)]``, ``d ψ'(n/2)``."""
    n, d = check_positive_int("width", width), check_positive_int("depth", depth)
    mean = d * (special.digamma(n / 2) + math.log(2 / n))
    var = d * special.polygamma(1, n / 2)
    return LogNormLaw(n, d, float(mean), float(var))


def unshaped_relu_log_norm_law(width: int, depth: int) -> LogNormLaw:
    """Exact ``ln(Φ_d/Φ_0)`` moments for the unshaped ReLU (He gain 2), given ``K ≥ 1``.

    Per layer: ``ln(2/n) + ln 2 + ψ(K/2)`` in mean and ``ψ'(K/2)`` in variance given ``K``;
    mixed over ``K ~ Bin(n, ½)`` conditioned on ``K ≥ 1``.
    """
    n, d = check_positive_int("width", width), check_positive_int("depth", depth)
    k = np.arange(1, n + 1)
    w = stats.binom.pmf(k, n, 0.5)
    w = w / w.sum()
    mu_k = special.digamma(k / 2) + math.log(2)
    layer_mean = float(w @ mu_k) + math.log(2 / n)
    layer_var = float(w @ special.polygamma(1, k / 2)) + float(w @ (mu_k - w @ mu_k) ** 2)
    return LogNormLaw(n, d, d * layer_mean, d * layer_var)


@renamed_kwargs(rng="seed")
def sample_linear_log_norm(
    width: int, depth: int, size: int, *, seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """``size`` draws of ``ln(Φ_d/Φ_0) = Σ_l ln(χ²_n/n)`` (a linear net); shape ``(size,)``.

    ``seed``: ``int``, :class:`numpy.random.Generator` or ``None`` (``rng=`` is deprecated).
    """
    n, d = check_positive_int("width", width), check_positive_int("depth", depth)
    size = check_positive_int("size", size)
    rng = np.random.default_rng(seed)  # int, NumPy Generator or None
    return np.log(rng.chisquare(n, size=(size, d)) / n).sum(axis=1)


@renamed_kwargs(rng="seed")
def sample_unshaped_relu_log_norm(
    width: int, depth: int, size: int, *, seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """``size`` draws of ``Σ_l ln((2/n) χ²_{K_l})``, ``K_l ~ Bin(n, ½)``; shape ``(size,)``.

    ``K = 0`` gives ``-inf`` (the net outputs 0), with probability ``d·2^{−n}``.
    ``seed``: ``int``, :class:`numpy.random.Generator` or ``None`` (``rng=`` is deprecated).
    """
    n, d = check_positive_int("width", width), check_positive_int("depth", depth)
    size = check_positive_int("size", size)
    rng = np.random.default_rng(seed)  # int, NumPy Generator or None
    k = rng.binomial(n, 0.5, size=(size, d))
    chi = 2.0 * rng.standard_gamma(np.maximum(k, 1) / 2.0)  # χ²_K = 2·Gamma(K/2)
    chi = np.where(k > 0, chi, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(2.0 * chi / n).sum(axis=1)


def relu_correlation_map(rho0: float, depth: int) -> torch.Tensor:
    """Infinite-width correlations ``ρ_0, …, ρ_d`` of the unshaped ReLU: ``ρ_{l+1} = K₁(ρ_l)``.

    ``K₁(ρ) = 2 E[relu(g₁) relu(g₂)]`` for unit-variance ``g`` with correlation ``ρ``.
    Returns a float64 tensor of shape ``(depth + 1,)``.
    """
    r0 = float(rho0)
    if not -1 <= r0 <= 1:
        raise ValueError(f"`rho0` must lie in [-1, 1]; got {rho0!r}")
    d = check_positive_int("depth", depth)
    one = torch.ones((), dtype=torch.float64)
    rhos = [torch.tensor(r0, dtype=torch.float64)]
    for _ in range(d):
        k, _ = ReLU().dual(one, one, rhos[-1], ntk=False)
        rhos.append(2 * k)
    return torch.stack(rhos)
