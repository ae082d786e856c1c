"""Two-layer mean-field nets trained by online SGD or full-batch GD (particles in torch).

``ŷ(x) = (1/N) Σ_i σ*(x; θ_i)`` (Mei, Montanari, Nguyen 2018, eq. (1)).  One step with
the mean-field learning-rate scaling (MMN 2018, eq. (6); docs/meanfield.md)::

    θ_i ← θ_i + 2 s_k · mean_b [(y_b − ŷ(x_b)) ∇θ σ*(x_b; θ_i)],     s_k = ε ξ(kε)

i.e. plain SGD on ``(y − ŷ)²`` with learning rate ``N s_k`` per particle.  Step ``k``
sits at time ``t = kε`` of the distributional dynamics (:mod:`.pde`): the expected
increment is ``−2 s_k ∇Ψ(θ_i; ρ̂)``.  ``batch_size = 1`` is the online SGD of the
paper; a larger batch only lowers the gradient noise (same limit PDE).
Independent seeds run side by side as a leading batch axis ``S``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import as_float_tensor, check_positive_int
from widelimit.progress import progress_bar
from widelimit.seeding import Seed, as_generator

__all__ = ["TrainResult", "train"]


@dataclass(frozen=True)
class TrainResult:
    """Snapshots of mean-field training.

    Attributes:
        times: ``(T,)`` snapshot times ``t = kε``.
        steps: ``(T,)`` step counts ``k``.
        risk: ``(S, T)`` population risk of each seed's net (exact, from the problem's
            ``V`` and ``U``), or ``None`` when ``compute_risk=False``.
        train_risk: ``(S, T)`` mean ``(y − ŷ)²`` on the GD data set, or ``None`` for SGD.
        particles: ``(T, S, N, D)`` particle clouds.
        n_units: ``N``; eps: ``ε``; seconds: wall-clock time of the training loop
            (risk evaluation excluded).
    """

    times: Tensor
    steps: Tensor
    risk: Tensor | None
    train_risk: Tensor | None
    particles: Tensor
    n_units: int
    eps: float
    seconds: float


def _check_times(times: Any, eps: float) -> np.ndarray:
    ts = np.asarray(times, dtype=np.float64).ravel()
    if ts.size == 0 or ts[0] < 0 or np.any(np.diff(ts) <= 0) or not np.all(np.isfinite(ts)):
        raise ValueError(f"`times` must be finite, >= 0 and strictly increasing; got {times!r}")
    return np.round(ts / eps).astype(np.int64)


def train(
    problem: Any,
    n_units: int,
    *,
    times: Any,
    eps: float,
    xi: float | Any = 1.0,
    batch_size: int = 1,
    n_seeds: int = 1,
    data: tuple[Tensor, Tensor] | None = None,
    seed: Seed = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    compute_risk: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``n_seeds`` independent mean-field nets of ``n_units`` particles.

    ``problem`` is a built-in problem (:mod:`.problems`) or any object with the same
    interface.  Snapshots at ``times`` (rounded to multiples of ``eps``).  With
    ``data = (x (n, d), y (n,))`` the nets do full-batch GD on that data set (one data
    set shared by the seeds, which differ by their initialisation); otherwise online SGD
    on fresh samples, ``batch_size`` per step.  Runs on ``device`` (e.g. ``"cuda"``).
    ``seed``: ``int``, ``torch.Generator`` (one stream for the initialisation and the
    samples) or ``None`` (global RNG).
    """
    n = check_positive_int("n_units", n_units)
    b = check_positive_int("batch_size", batch_size)
    s = check_positive_int("n_seeds", n_seeds)
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"`eps` must be a positive number; got {eps!r}")
    xi_f = xi if callable(xi) else (lambda t, v=float(xi): v)
    steps = _check_times(times, eps)
    gen = as_generator(seed, device)
    theta = problem.init_particles(n, (s,), seed=gen, dtype=dtype, device=device)
    if data is not None:
        x_all = as_float_tensor("data[0]", data[0], min_ndim=2, max_ndim=2).to(theta)
        y_all = as_float_tensor("data[1]", data[1], min_ndim=1, max_ndim=1).to(theta)
        if x_all.shape[0] != y_all.shape[0]:
            raise ValueError(
                f"`data` x has {x_all.shape[0]} rows but y has {y_all.shape[0]}; give one "
                "target per input"
            )
    snaps, train_risk = [], []
    k = 0
    seconds = 0.0
    with progress_bar(progress) as bar:
        task = bar.add_task(f"SGD N={n}", total=int(steps[-1]))
        for target in steps:
            t0 = time.perf_counter()
            while k < target:
                if data is None:
                    x, y = problem.sample(b, (s,), seed=gen, dtype=dtype, device=device)
                else:
                    x, y = x_all, y_all
                resid = y - problem.unit(theta, x).mean(-1)  # (S, B)
                sk = eps * xi_f(k * eps)
                theta = theta + 2 * sk * problem.sgd_direction(theta, x, resid)
                k += 1
                if k % 1000 == 0:
                    bar.update(task, completed=k)
            seconds += time.perf_counter() - t0
            if not bool(torch.isfinite(theta).all()):
                raise ValueError(f"training diverged before step {k}; decrease `eps` ({eps:g})")
            snaps.append(theta.clone())
            if data is not None:
                train_risk.append(((y_all - problem.unit(theta, x_all).mean(-1)) ** 2).mean(-1))
    particles = torch.stack(snaps)
    risk = None
    if compute_risk:
        risk = torch.stack([problem.population_risk(th) for th in snaps], dim=-1)
    return TrainResult(
        times=torch.as_tensor(steps * eps, dtype=dtype),
        steps=torch.as_tensor(steps),
        risk=risk,
        train_risk=torch.stack(train_risk, dim=-1) if data is not None else None,
        particles=particles,
        n_units=n,
        eps=float(eps),
        seconds=seconds,
    )
