"""Distributional-dynamics solvers (Mei, Montanari, Nguyen 2018, eq. (7); docs/meanfield.md).

The PDE ``∂t ρ_t = 2ξ(t) ∇θ·(ρ_t ∇θ Ψ(θ; ρ_t))``, ``Ψ(θ; ρ) = V(θ) + ∫ U(θ, θ') ρ(dθ')``,
is the Wasserstein gradient flow of ``R(ρ) = R# + 2∫V dρ + ∫∫U dρ dρ``.  We integrate
it in Lagrangian form: ``ρ = Σ_j w_j δ_{θ_j}`` with fixed weights ``w_j`` (mass is
conserved by construction) and characteristics

    dθ_j/dt = −2ξ(t) ∇Ψ(θ_j; ρ) = −ξ(t) (∂R/∂θ_j) / w_j,

the second form because ``∂R/∂θ_j = 2 w_j ∇Ψ(θ_j; ρ)`` for symmetric ``U``, so one
autograd call of the risk gives every velocity.  Expectations are deterministic (``V``,
``U`` evaluated exactly; no sampling) and the ODE is integrated by classical RK4.
Along the flow ``dR/dt = −4ξ ∫|∇Ψ|² dρ ≤ 0`` (the dissipation, reported).

- :func:`solve_radial`: the isotropic-Gaussians problem reduced exactly to ``r = ‖w‖``
  (rotation invariance), ``ρ`` discretised by ``M`` midpoint quantiles of ``ρ₀`` — the
  1-D Wasserstein flow moves quantiles, which never cross — and the angle-averaged,
  finite-rank interaction ``Ū(r, r') = ⟨F(r), F(r')⟩``, so a step costs ``O(M K)``.
- :func:`solve_particles`: any user ``V, U`` on low-dimensional ``θ``, weighted particles
  (e.g. quadrature nodes of ``ρ₀``), pairwise ``U`` (``O(M²)`` a step).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.meanfield.problems import IsotropicGaussians
from widelimit.progress import progress_bar

__all__ = ["PDESolution", "solve_particles", "solve_radial", "wasserstein1_1d"]

Xi = float | Callable[[float], float]
Flow = Callable[[Tensor, float], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class PDESolution:
    """Snapshots of a particle solution of the distributional dynamics.

    Attributes:
        times: ``(T,)`` snapshot times (``t = kε`` in SGD steps of size ``ε``).
        risk: ``(T,)`` population risk ``R(ρ_t)``.
        dissipation: ``(T,)`` ``4ξ(t) ∫|∇Ψ|² dρ_t`` (equals ``−dR/dt``).
        particles: ``(T, M, D)`` particle positions (``D = 1``: radii for :func:`solve_radial`).
        weights: ``(M,)`` particle masses (sum 1).
        solve_seconds: wall-clock time of the solve.
        n_evaluations: velocity-field evaluations used by the integrator.
    """

    times: Tensor
    risk: Tensor
    dissipation: Tensor
    particles: Tensor
    weights: Tensor
    solve_seconds: float
    n_evaluations: int = 0

    def risk_at(self, t: float) -> float:
        """Risk at time ``t`` (linear interpolation between snapshots)."""
        return float(np.interp(t, self.times.cpu().numpy(), self.risk.cpu().numpy()))


def _xi(xi: Xi) -> Callable[[float], float]:
    if callable(xi):
        return xi
    v = float(xi)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"`xi` must be a positive number or a callable t -> ξ(t); got {xi!r}")
    return lambda t: v


def _snapshot_grid(times: object, t_max: float | None) -> np.ndarray:
    if times is None:
        if t_max is None or not t_max > 0:
            raise ValueError("give `times` (increasing snapshot times) or a positive `t_max`")
        times = np.linspace(0.0, float(t_max), 51)
    ts = np.asarray(times, dtype=np.float64).ravel()
    if ts.size == 0 or ts[0] < 0 or np.any(np.diff(ts) <= 0) or not np.all(np.isfinite(ts)):
        raise ValueError(f"`times` must be finite, >= 0 and strictly increasing; got {times!r}")
    return ts if ts[0] == 0 else np.concatenate([[0.0], ts])


def _autograd_flow(energy: Callable[[Tensor], Tensor], weights: Tensor) -> Flow:
    """Velocities ``−ξ ∂R/∂θ_j / w_j`` from one autograd call of the energy."""
    w = weights.unsqueeze(-1)

    def flow(theta: Tensor, xi_t: float) -> tuple[Tensor, Tensor]:
        th = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            r = energy(th)
            (g,) = torch.autograd.grad(r, th)
        return -xi_t * g / w, r.detach()

    return flow


def integrate_flow(
    flow: Flow,
    theta0: Tensor,
    weights: Tensor,
    *,
    times: object = None,
    t_max: float | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    method: str | None = None,
    step: float = 0.01,
    jacobian: Callable[[Tensor, float], Tensor] | None = None,
    xi: Xi = 1.0,
    progress: bool = True,
) -> PDESolution:
    """Integrate ``dθ_j/dt = v_j``, with ``flow(θ (M, D), ξ(t)) -> (v (M, D), R(ρ))``.

    ``scipy.integrate.solve_ivp`` with local error control ``rtol``/``atol``; default the
    explicit Dormand–Prince ``"DOP853"`` (the flow is not stiff on the built-in problems:
    ``|Ψ''| ≲ 5``).  An implicit ``method`` ("BDF", "Radau", "LSODA") uses ``jacobian(θ, ξ)
    -> (M·D, M·D)`` when given.  ``method="RK4"``: classical fixed-step RK4 with step
    ``step`` — use it when the velocity field is discontinuous (e.g. ReLU units whose
    input weights pass through 0), where adaptive error control stalls.  The state lives
    in torch (any device); scipy sees a flat float64 view.
    """
    ts = _snapshot_grid(times, t_max)
    xi_f = _xi(xi)
    shape, dtype, device = theta0.shape, theta0.dtype, theta0.device
    n_calls = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        n_calls[0] += 1
        th = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
        v, _ = flow(th, xi_f(t))
        return v.reshape(-1).to(torch.float64).cpu().numpy()

    jac = None
    if jacobian is not None:

        def jac(t: float, y: np.ndarray) -> np.ndarray:
            th = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
            return jacobian(th, xi_f(t)).to(torch.float64).cpu().numpy()

    if method is None:
        method = "DOP853"
    extra = {"jac": jac} if jac is not None and method in ("BDF", "Radau", "LSODA") else {}
    t0 = time.perf_counter()
    snaps = [theta0.clone()]
    with progress_bar(progress) as bar:
        task = bar.add_task("PDE solve", total=len(ts) - 1)
        y = theta0.reshape(-1).to(torch.float64).cpu().numpy()
        for a, b in itertools.pairwise(ts):
            if method == "RK4":
                y = _rk4(rhs, a, b, y, step)
            else:
                out = solve_ivp(rhs, (a, b), y, method=method, rtol=rtol, atol=atol, **extra)
                if not out.success:
                    raise RuntimeError(f"PDE integration failed on [{a:g}, {b:g}]: {out.message}")
                y = out.y[:, -1]
            snaps.append(torch.as_tensor(y, dtype=dtype, device=device).reshape(shape))
            bar.advance(task)
    seconds = time.perf_counter() - t0
    risks, diss = [], []
    for th, t in zip(snaps, ts, strict=True):
        v, r = flow(th, xi_f(t))
        risks.append(r)
        # 4ξ∫|∇Ψ|²dρ with ∇Ψ = −v/(2ξ): = (1/ξ) Σ_j w_j |v_j|²
        diss.append((weights * (v * v).sum(-1)).sum() / xi_f(t))
    return PDESolution(
        times=torch.as_tensor(ts, dtype=dtype),
        risk=torch.stack(risks),
        dissipation=torch.stack(diss),
        particles=torch.stack(snaps),
        weights=weights,
        solve_seconds=seconds,
        n_evaluations=n_calls[0],
    )


def _rk4(rhs: Callable, a: float, b: float, y: np.ndarray, step: float) -> np.ndarray:
    n = max(1, math.ceil((b - a) / step))
    h = (b - a) / n
    t = a
    for _ in range(n):
        k1 = rhs(t, y)
        k2 = rhs(t + h / 2, y + h / 2 * k1)
        k3 = rhs(t + h / 2, y + h / 2 * k2)
        k4 = rhs(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
    return y


def solve_radial(
    problem: IsotropicGaussians,
    *,
    times: object = None,
    t_max: float | None = None,
    n_particles: int = 2000,
    rtol: float = 1e-6,
    method: str | None = None,
    xi: Xi = 1.0,
    grid_step: float = 2e-3,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> PDESolution:
    """Radial PDE of the isotropic-Gaussians problem; ``particles[:, :, 0]``: quantiles of ``‖w‖``.

    ``∂t ρ = 2ξ ∂r(ρ ∂rΨ)`` for the law of ``r = ‖w‖`` (the velocity ``−2ξ∇wΨ`` is radial
    because ``Ψ`` depends on ``w`` through ``‖w‖`` only), ``Ψ(r) = V(r) + ∫Ū(r, r')ρ(dr')``.
    Initial condition: ``M = n_particles`` midpoint quantiles of ``‖w‖`` under ``ρ₀``.
    ``V``, ``F`` (``Ū = ⟨F, F⟩``) and their exact derivatives are tabulated once on a grid
    of step ``grid_step`` and interpolated (cubic Hermite, relative error ~1e-10).
    """
    if not isinstance(problem, IsotropicGaussians):
        raise TypeError(f"`problem` must be an IsotropicGaussians; got {type(problem).__name__}")
    m = check_positive_int("n_particles", n_particles)
    r0 = problem.initial_radial_quantiles(m, dtype=dtype).to(device)
    weights = torch.full((m,), 1.0 / m, dtype=dtype, device=device)
    table = _RadialTable(
        problem, r_max=max(8.0, 2 * float(r0.max())), step=grid_step, dtype=dtype, device=device
    )

    def flow(theta: Tensor, xi_t: float) -> tuple[Tensor, Tensor]:
        r = theta[:, 0]
        val, der = table(r)  # columns: V, F_1 … F_2K
        fbar = weights @ val[:, 1:]
        risk = problem.r_sharp + 2 * (weights @ val[:, 0]) + fbar @ fbar
        dpsi = der[:, 0] + der[:, 1:] @ fbar  # ∂rΨ(r) = V'(r) + ⟨F'(r), ∫F dρ⟩
        return (-2 * xi_t * dpsi).unsqueeze(-1), risk

    def jacobian(theta: Tensor, xi_t: float) -> Tensor:
        # ∂v_j/∂r_k = −2ξ [δ_jk (V''(r_j) + ⟨F''(r_j), F̄⟩) + w_k ⟨F'(r_j), F'(r_k)⟩]
        r = theta[:, 0]
        val, der, der2 = table(r, second=True)
        fbar = weights @ val[:, 1:]
        jac = der[:, 1:] @ (der[:, 1:] * weights.unsqueeze(-1)).T
        jac = jac + torch.diag(der2[:, 0] + der2[:, 1:] @ fbar)
        return -2 * xi_t * jac

    return integrate_flow(
        flow,
        r0.unsqueeze(-1),
        weights,
        times=times,
        t_max=t_max,
        rtol=rtol,
        method=method,
        xi=xi,
        jacobian=jacobian,
        progress=progress,
    )


class _RadialTable:
    """Cubic Hermite interpolation of ``[V, F](r)`` on a uniform grid (``O(h⁴)`` values,
    ``O(h³)`` derivatives); rebuilt on a wider grid if a particle leaves it."""

    def __init__(
        self, problem: IsotropicGaussians, *, r_max: float, step: float, dtype, device
    ) -> None:
        self.problem, self.step, self.dtype, self.device = problem, step, dtype, device
        self._build(r_max)

    def _build(self, r_max: float) -> None:
        n = math.ceil(r_max / self.step) + 1
        self.r_max = (n - 1) * self.step
        r = torch.arange(n, dtype=self.dtype, device=self.device) * self.step
        F, dF = self.problem.radial_features(r, derivative=True)
        self.val = torch.cat([self.problem.V_radial(r).unsqueeze(-1), F], dim=-1)
        self.der = torch.cat([self.problem.V_radial_derivative(r).unsqueeze(-1), dF], dim=-1)

    def __call__(self, r: Tensor, *, second: bool = False) -> tuple[Tensor, ...]:
        if float(r.max()) >= self.r_max:
            self._build(1.5 * float(r.max()))
        h = self.step
        x = r.clamp_min(0) / h
        i = x.floor().long().clamp(0, self.val.shape[0] - 2)
        u = (x - i).unsqueeze(-1)
        f0, f1, d0, d1 = self.val[i], self.val[i + 1], h * self.der[i], h * self.der[i + 1]
        u2, u3 = u * u, u * u * u
        val = (
            (2 * u3 - 3 * u2 + 1) * f0
            + (u3 - 2 * u2 + u) * d0
            + (3 * u2 - 2 * u3) * f1
            + (u3 - u2) * d1
        )
        der = (6 * u2 - 6 * u) * (f0 - f1) + (3 * u2 - 4 * u + 1) * d0 + (3 * u2 - 2 * u) * d1
        if not second:
            return val, der / h
        der2 = (12 * u - 6) * (f0 - f1) + (6 * u - 4) * d0 + (6 * u - 2) * d1
        return val, der / h, der2 / (h * h)


def solve_particles(
    V: Callable[[Tensor], Tensor],
    U: Callable[[Tensor, Tensor], Tensor],
    theta0: object,
    *,
    weights: object = None,
    r_sharp: float = 0.0,
    times: object = None,
    t_max: float | None = None,
    rtol: float = 1e-6,
    method: str | None = None,
    step: float = 0.01,
    xi: Xi = 1.0,
    progress: bool = True,
) -> PDESolution:
    """General low-dimensional PDE solver for user-given ``V`` and ``U``.

    ``V: (M, D) -> (M,)``, ``U: (M, D), (M', D) -> (M, M')`` (torch, differentiable).

    ``theta0 (M, D)`` (with optional ``weights (M,)``, default uniform) discretises ``ρ₀``:
    random samples give an ``O(M^{-1/2})`` error, quadrature nodes of ``ρ₀`` much less.
    ``U`` must be symmetric (checked on the initial particles); ``r_sharp = E[y²]`` only
    shifts the reported risk.  ``method``/``step``: see :func:`integrate_flow` (use
    ``method="RK4"`` for ReLU units, whose velocity field jumps at ``w = 0``).
    """
    th = as_float_tensor("theta0", theta0, min_ndim=2, max_ndim=2)
    m = th.shape[0]
    if weights is None:
        w = torch.full((m,), 1.0 / m, dtype=th.dtype, device=th.device)
    else:
        w = as_float_tensor("weights", weights, min_ndim=1, max_ndim=1).to(th)
        if w.shape[0] != m or bool((w <= 0).any()):
            raise ValueError(f"`weights` must be {m} positive numbers (one per particle)")
        w = w / w.sum()
    u0 = U(th, th)
    if tuple(u0.shape) != (m, m):
        raise ValueError(f"`U(theta, theta)` must return shape ({m}, {m}); got {tuple(u0.shape)}")
    if not torch.allclose(u0, u0.T, rtol=1e-8, atol=1e-10 * float(u0.abs().max())):
        raise ValueError("`U` must be symmetric, U(θ, θ') = U(θ', θ); it is not on `theta0`")
    v0 = V(th)
    if tuple(v0.shape) != (m,):
        raise ValueError(f"`V(theta)` must return shape ({m},); got {tuple(v0.shape)}")

    def energy(x: Tensor) -> Tensor:
        return r_sharp + 2 * (w * V(x)).sum() + w @ U(x, x) @ w

    return integrate_flow(
        _autograd_flow(energy, w),
        th,
        w,
        times=times,
        t_max=t_max,
        rtol=rtol,
        method=method,
        step=step,
        xi=xi,
        progress=progress,
    )


def wasserstein1_1d(
    a: Tensor, b: Tensor, *, wa: Tensor | None = None, wb: Tensor | None = None
) -> Tensor:
    """``W1`` between weighted 1-D point clouds, ``∫|F_a(x) − F_b(x)| dx``.

    ``a (*batch, n)``, ``b (m,)`` (shared); weights default to uniform.  Returns ``(*batch,)``.
    """
    wa = torch.full_like(a, 1.0 / a.shape[-1]) if wa is None else wa.expand_as(a)
    wb = torch.full_like(b, 1.0 / b.shape[-1]) if wb is None else wb
    batch = a.shape[:-1]
    bb = b.expand(*batch, b.shape[-1])
    x = torch.cat([a, bb], dim=-1)
    mass = torch.cat([wa, -wb.expand_as(bb)], dim=-1)
    order = torch.argsort(x, dim=-1)
    xs = torch.gather(x, -1, order)
    diff_cdf = torch.cumsum(torch.gather(mass, -1, order), dim=-1)[..., :-1]
    return (diff_cdf.abs() * (xs[..., 1:] - xs[..., :-1])).sum(-1)
