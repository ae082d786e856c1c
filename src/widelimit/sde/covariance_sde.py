"""Integrators of the neural covariance SDE (Li, Nica, Roy 2022; docs/sde.md, 'Numerical schemes').

``dΦ = b(Φ) dt + Σ(Φ)^{1/2} dB``, ``Σ^{αβ,γδ} = Φ^{αγ}Φ^{βδ} + Φ^{αδ}Φ^{βγ}``, with
``T = d/n`` (one layer of width ``n`` is ``dt = 1/n``).

* :func:`integrate_covariance` — ``m`` inputs, any drift with a PSD-preserving
  ``flow(Φ, h)`` (:class:`~widelimit.sde.ReLUDrift`, :class:`~widelimit.sde.SmoothDrift`,
  or ``None`` for zero drift).  Lie splitting: drift flow, then the noise step
  ``Φ ← Φ^{1/2} E Φ^{1/2}`` with ``E ≈ e^{−(m+1)h/2} exp(dM)``, ``dM = √h (G + Gᵀ)/√2``,
  written as ``(LF)(LF)ᵀ``: a Gram matrix, so Φ stays symmetric PSD for *every* step
  size.  The factor ``e^{−(m+1)h/2}`` cancels ``E[exp(dM)] = (1 + (m+1)h/2) I + O(h²)``,
  so the mean increment is the drift and the increment covariance is ``Σ(Φ)h``
  (weak order 1).  For ``m = 1`` the noise step is the exact geometric Brownian motion.
* :func:`integrate_correlation` — the ReLU correlation SDE
  ``dρ = [ν(ρ) − ½ρ(1 − ρ²)] dt + (1 − ρ²) dW`` (Itô, unit norms), Euler–Maruyama on
  ``u = artanh ρ``: ``du = [ν(ρ)/(1 − ρ²) + ρ/2] dt + dW``, so ``ρ ∈ (−1, 1)`` always.
* :func:`integrate_one_input` — ``dΦ = b_* Φ(Φ − 1) dt + √2 Φ dB`` by splitting into the
  exact logistic flow ``1/Φ ← 1 + (1/Φ − 1)e^{b_* h}`` and the exact GBM step
  ``Φ ← Φ exp(√2 ΔB − h)``; explosion (``1/Φ ≤ 0``) is recorded as ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.deprecation import renamed_kwargs
from widelimit.progress import progress_bar
from widelimit.sde.drift import ReLUDrift, relu_nu_theta
from widelimit.sde.finite import gram_factor
from widelimit.seeding import Seed, as_generator

__all__ = [
    "PSDDrift",
    "integrate_correlation",
    "integrate_covariance",
    "integrate_one_input",
    "time_grid",
]


class PSDDrift(Protocol):
    """A drift ``b(Φ)`` with a PSD-preserving first-order flow ``flow(Φ, h)``."""

    def __call__(self, cov: Tensor) -> Tensor: ...

    def flow(self, cov: Tensor, h: float) -> Tensor: ...


def time_grid(
    times: float | Sequence[float], dt: float
) -> tuple[tuple[float, ...], int, list[int]]:
    """Validate record ``times`` and ``dt``; return ``(times, n_steps, step index per time)``.

    Each time is rounded to the nearest multiple of ``dt`` (error ``≤ dt/2``).
    """
    ts = (times,) if isinstance(times, int | float) else tuple(times)
    if not ts:
        raise ValueError("`times` must contain at least one time T > 0")
    for t in ts:
        if not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ValueError(f"`times` must be finite numbers >= 0; got {t!r}")
    if not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"`dt` must be a finite number > 0; got {dt!r}")
    idx = [round(t / dt) for t in ts]
    return tuple(float(t) for t in ts), max(idx), idx


def _noise_step(phi: Tensor, h: float, generator: torch.Generator | None) -> Tensor:
    """One noise step ``Φ ← (L F)(L F)ᵀ`` with ``L Lᵀ = Φ`` — symmetric PSD for every ``h``.

    ``dM = √h (G + Gᵀ)/√2`` (GOE, ``E[dM_ij dM_kl] = h(δ_ik δ_jl + δ_il δ_jk)``).  For
    ``m = 1``, ``F = exp(dM/2 − h/2)`` (exact GBM).  For ``m ≥ 2``,
    ``F = e^{−(m+1)h/4}(I + dM/2 + dM²/8)``, so ``F² = e^{−(m+1)h/2}(I + dM + dM²/2) + O(h^{3/2})``
    with a zero-mean ``O(h^{3/2})`` term: the increment has mean ``O(h²)`` and covariance
    ``Σ(Φ)h + O(h²)`` (weak order 1).  ``F = (I + dM/4)² + dM²/16`` is positive definite.
    Because the GOE law is orthogonally invariant, ``L dM Lᵀ`` has the law of
    ``Φ^{1/2} dM Φ^{1/2}`` for any factor ``L`` (Cholesky here, eigh where it fails).
    """
    m = phi.shape[-1]
    g = torch.randn(phi.shape, generator=generator, dtype=phi.dtype, device=phi.device)
    dm = math.sqrt(h / 2) * (g + g.transpose(-1, -2))
    if m == 1:
        f = torch.exp(0.5 * dm - 0.5 * h)
    else:
        f = torch.eye(m, dtype=phi.dtype, device=phi.device) + 0.5 * dm + 0.125 * (dm @ dm)
        f = math.exp(-(m + 1) * h / 4) * f
    lf = gram_factor(phi) @ f
    return lf @ lf.transpose(-1, -2)


def _retire_overflow(phi: Tensor, dead: Tensor, eye: Tensor) -> Tensor:
    """Mark paths with non-finite or huge (``> 1e100``) ``Φ`` in ``dead`` (in place) and
    park them at ``I`` so the batch keeps running; they are reported as ``inf``."""
    bad = ~torch.isfinite(phi).all(dim=(-1, -2))
    bad |= (torch.diagonal(phi, dim1=-2, dim2=-1) > 1e100).any(-1)
    if bool(bad.any()):
        dead |= bad
        phi = phi.clone()
        phi[bad] = eye
    return phi


@renamed_kwargs(generator="seed")
def integrate_covariance(
    phi0: Tensor,
    drift: PSDDrift | None,
    *,
    times: float | Sequence[float],
    dt: float,
    n_paths: int,
    seed: Seed = None,
    progress: bool = True,
) -> Tensor:
    """Paths of the covariance SDE for ``m`` inputs.

    Args:
        phi0: ``(m, m)`` symmetric PSD start ``Φ_0`` (float64 recommended).
        drift: object with ``flow(Φ, h)`` (e.g. ``ShapedReLU.shaped(...).drift()``), or
            ``None`` for zero drift.
        times: record times ``T`` (rounded to multiples of ``dt``).
        dt: step size (any ``> 0``; Φ stays PSD).
        n_paths: number of independent paths.
        seed: ``int``, ``torch.Generator`` or ``None`` (global RNG); ``generator=`` is
            deprecated.

    Returns:
        ``(len(times), n_paths, m, m)``; paths that overflow (unstable drifts) hold ``inf``.
    """
    phi0 = as_float_tensor("phi0", phi0, min_ndim=2, max_ndim=2)
    generator = as_generator(seed, phi0.device)
    m = phi0.shape[0]
    if phi0.shape != (m, m) or not torch.allclose(phi0, phi0.T):
        raise ValueError(f"`phi0` must be a symmetric (m, m) matrix; got shape {tuple(phi0.shape)}")
    if float(torch.linalg.eigvalsh(phi0).min()) < -1e-12 * float(phi0.diagonal().abs().max()):
        raise ValueError("`phi0` must be positive semi-definite")
    if drift is not None and not callable(getattr(drift, "flow", None)):
        raise TypeError("`drift` must have a PSD-preserving `flow(cov, h)` method, or be None")
    ts, n_steps, idx = time_grid(times, dt)
    b = check_positive_int("n_paths", n_paths)
    out = torch.empty((len(ts), b, m, m), dtype=phi0.dtype, device=phi0.device)
    phi = phi0.expand(b, m, m).clone()
    dead = torch.zeros(b, dtype=torch.bool, device=phi0.device)
    eye = torch.eye(m, dtype=phi.dtype, device=phi.device)
    with progress_bar(progress) as bar:
        task = bar.add_task("covariance SDE", total=n_steps)
        for step in range(n_steps + 1):
            if step:
                if drift is not None:
                    phi = _retire_overflow(drift.flow(phi, dt), dead, eye)
                phi = _retire_overflow(_noise_step(phi, dt, generator), dead, eye)
                bar.advance(task)
            for i, k in enumerate(idx):
                if k == step:
                    out[i] = phi
                    out[i, dead] = math.inf
    return out


@renamed_kwargs(generator="seed")
def integrate_correlation(
    rho0: float,
    drift: ReLUDrift,
    *,
    times: float | Sequence[float],
    dt: float,
    n_paths: int,
    seed: Seed = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> Tensor:
    """Paths of the ReLU correlation SDE ``dρ = [ν(ρ) − ½ρ(1−ρ²)]dt + (1−ρ²)dW``.

    ``rho0 ∈ (−1, 1)``; returns ``(len(times), n_paths)``.  Derived from the 2×2
    covariance SDE by Itô's formula (the norms drop out by homogeneity).
    """
    if not isinstance(drift, ReLUDrift):
        raise TypeError("`drift` must be a ReLUDrift (e.g. ShapedReLU.shaped(...).drift())")
    generator = as_generator(seed)
    r0 = float(rho0)
    if not -1 < r0 < 1:
        raise ValueError(f"`rho0` must lie strictly between -1 and 1; got {rho0!r}")
    ts, n_steps, idx = time_grid(times, dt)
    b = check_positive_int("n_paths", n_paths)
    out = torch.empty((len(ts), b), dtype=dtype)
    u = torch.full((b,), math.atanh(r0), dtype=dtype)
    sq = math.sqrt(dt)
    with progress_bar(progress) as bar:
        task = bar.add_task("correlation SDE", total=n_steps)
        for step in range(n_steps + 1):
            if step:
                theta = 2 * torch.atan(torch.exp(-u))  # θ = arccos(tanh u)
                sin_t = 1 / torch.cosh(u)  # sin θ = √(1 − ρ²)
                drift_u = relu_nu_theta(theta, drift.strength) / sin_t**2 + 0.5 * torch.tanh(u)
                noise = torch.randn((b,), generator=generator, dtype=dtype)
                u = u + drift_u * dt + sq * noise
                bar.advance(task)
            for i, k in enumerate(idx):
                if k == step:
                    out[i] = torch.tanh(u)
    return out


@renamed_kwargs(generator="seed")
def integrate_one_input(
    phi0: float,
    b_star: float,
    *,
    times: float | Sequence[float],
    dt: float,
    n_paths: int,
    seed: Seed = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> Tensor:
    """Paths of ``dΦ = b_* Φ(Φ − 1) dt + √2 Φ dB`` (one input, smooth shaping).

    ``phi0 > 0``.  Returns ``ln Φ`` at ``times``: ``(len(times), n_paths)``, ``+inf`` after
    an explosion.  With ``b_* = 0`` the scheme is exact: ``ln Φ_T ~ N(ln Φ₀ − T, 2T)``.
    """
    p0 = float(phi0)
    if not math.isfinite(p0) or p0 <= 0:
        raise ValueError(f"`phi0` must be a finite number > 0; got {phi0!r}")
    bs = float(b_star)
    if not math.isfinite(bs):
        raise ValueError(f"`b_star` must be finite; got {b_star!r}")
    generator = as_generator(seed)
    ts, n_steps, idx = time_grid(times, dt)
    b = check_positive_int("n_paths", n_paths)
    out = torch.empty((len(ts), b), dtype=dtype)
    logphi = torch.full((b,), math.log(p0), dtype=dtype)
    grow = math.exp(bs * dt)
    with progress_bar(progress) as bar:
        task = bar.add_task("one-input SDE", total=n_steps)
        for step in range(n_steps + 1):
            if step:
                if bs:
                    # exact logistic flow dΦ/dt = b_*Φ(Φ−1): 1/Φ ← 1 + (1/Φ − 1) e^{b_* h}
                    inv = 1 + torch.expm1(-logphi) * grow
                    alive = (inv > 0) & (logphi < math.inf)  # explosions are final
                    logphi = torch.where(alive, -torch.log(inv.clamp_min(1e-300)), math.inf)
                noise = torch.randn((b,), generator=generator, dtype=dtype)
                logphi = logphi + math.sqrt(2 * dt) * noise - dt  # exact GBM step
                bar.advance(task)
            for i, k in enumerate(idx):
                if k == step:
                    out[i] = logphi
    return out
