"""Inference with infinite-width kernels: GP posterior and gradient-flow predictions.

Conventions (docs/inference.md, identical to Neural Tangents' ``predict`` module so
numbers can be compared one for one):

* **Time.** ``t`` is the continuous time of gradient flow with learning rate
  ``learning_rate`` on the loss ``½·mean over all training targets (f − y)²``.
  With ``n_targets = N_train × n_outputs`` (``y_train.numel()``) the linearised
  training outputs obey ``df/dt = −lr·Θ (f − y) / n_targets``, i.e.
  ``f_t − y = exp(−Θ·lr·t / n_targets) (f_0 − y)``.  Full-batch gradient
  descent with step size ``η`` on that loss after ``k`` steps therefore
  compares with ``t = k`` and ``learning_rate = η`` (or ``t = k·η`` with the
  default ``learning_rate = 1``).
* **Regularisation.** ``diag_reg`` is relative to the mean of the kernel
  diagonal: ``K + diag_reg·mean(diag K)·I``; ``diag_reg_absolute=True`` adds
  ``diag_reg·I`` instead.  The default is :data:`DIAG_REG` (``1e-4``) everywhere
  (these functions, the estimators, :func:`widelimit.scale.posterior_mean`, the CLI);
  pass ``diag_reg=0.0`` for the unregularised kernel.
* **Shapes.** Kernels are ``(N, N)`` / ``(M, N)`` / ``(M, M)`` tensors (output
  channels traced out: the same kernel acts on every output column).  Targets
  ``y_train`` are ``(N,)`` or ``(N, k)``; predictions have the same trailing
  shape, preceded by the shape of ``t`` when ``t`` is an array.
* **Numerics.** All linear algebra is done in float64 through one symmetric
  eigendecomposition of the (regularised) train-train kernel, never an
  explicit inverse.  The condition number is returned in a
  :class:`Conditioning` record; above :data:`COND_WARNING` an
  :class:`IllConditionedWarning` is issued, and a kernel that is singular to
  float64 precision gets a visible, escalating jitter instead of NaNs.
  Results are cast back to the dtype/device of ``k_train_train``.

Formulas: Lee et al. 2019 ("Wide networks of any depth evolve as linear
models"), eqs. (9)–(16); GP posterior: Rasmussen & Williams 2006, eqs. (2.25)–(2.26).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from widelimit._validation import (
    as_float_tensor,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from widelimit.deprecation import deprecated_attribute, renamed_kwargs

__all__ = [
    "COND_WARNING",
    "DIAG_REG",
    "Conditioning",
    "EnsemblePrediction",
    "EnsemblePredictor",
    "FlowPrediction",
    "GPPosterior",
    "GradientFlow",
    "IllConditionedWarning",
    "gp_inference",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
]

DIAG_REG = 1e-4
"""Default ``diag_reg`` of every inference function: ``1e-4 × mean(diag K)``
(docs/conventions.md)."""

COND_WARNING = 1e10
"""Condition number above which an :class:`IllConditionedWarning` is issued."""
_COND_MAX = 1e12  # above this, escalate jitter (float64 keeps ~4 significant digits)


class IllConditionedWarning(UserWarning):
    """The train-train kernel is ill-conditioned or needed jitter."""


@dataclass(frozen=True)
class Conditioning:
    """Spectrum summary of the regularised train-train kernel actually used.

    Attributes:
        cond: ``λ_max / λ_min`` of ``K + (reg + jitter)·I`` (float64).
        min_eig, max_eig: extreme eigenvalues of ``K`` itself (before reg/jitter).
        reg: absolute regularisation added (``diag_reg`` resolved).
        jitter: extra absolute jitter added because ``K + reg·I`` was singular (0 if none).
    """

    cond: float
    min_eig: float
    max_eig: float
    reg: float
    jitter: float


@dataclass(frozen=True)
class GPPosterior:
    """GP posterior on test points: ``mean (M, *y_shape)``, ``cov (M, M)`` or ``None``."""

    mean: Tensor
    cov: Tensor | None
    conditioning: Conditioning


@dataclass(frozen=True)
class FlowPrediction:
    """Outputs of gradient flow at times ``t`` (``t_shape`` = shape of ``t``).

    ``train``: ``(*t_shape, N, *y_shape)``; ``test``: ``(*t_shape, M, *y_shape)`` or ``None``.
    """

    train: Tensor
    test: Tensor | None
    t: Tensor


@dataclass(frozen=True)
class EnsemblePrediction:
    """Mean and covariance over initialisations, at times ``t``.

    ``mean``: ``(*t_shape, M, *y_shape)``; ``cov``: ``(*t_shape, M, M)`` (the same
    for every output column) or ``None``; ``kernel``: the kernel used, ``"nngp"`` or ``"ntk"``.
    """

    mean: Tensor
    cov: Tensor | None
    t: Tensor
    kernel: str
    conditioning: Conditioning

    get = deprecated_attribute("kernel")


# --------------------------------------------------------------------------- checks
def _check_square(name: str, k: object) -> Tensor:
    k = as_float_tensor(name, k, min_ndim=2, max_ndim=2)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"`{name}` must be a square (N, N) kernel; got shape {tuple(k.shape)}")
    return k


def _check_targets(y: object, n: int) -> Tensor:
    y = as_float_tensor("y_train", y, min_ndim=1, max_ndim=2)
    if y.shape[0] != n:
        raise ValueError(
            f"`y_train` has {y.shape[0]} rows but the train-train kernel is {n}×{n}; "
            "targets and kernel must describe the same training points"
        )
    return y


def _check_cross(name: str, k: object, n_train: int, n_test: int | None = None) -> Tensor:
    k = as_float_tensor(name, k, min_ndim=2, max_ndim=2)
    if k.shape[1] != n_train:
        raise ValueError(
            f"`{name}` must be (M, N) with N = {n_train} training points; got {tuple(k.shape)}"
        )
    if n_test is not None and k.shape[0] != n_test:
        raise ValueError(f"`{name}` has {k.shape[0]} rows; expected {n_test} test points")
    return k


def _resolve_reg(k: Tensor, diag_reg: float, absolute: bool) -> float:
    reg = check_nonnegative("diag_reg", diag_reg)
    if not absolute:
        reg *= float(k.diagonal().mean())  # relative to mean(diag K) (docs/inference.md)
    return reg


# --------------------------------------------------------------------------- eigen
@dataclass(frozen=True)
class _Eigen:
    """``K + (reg + jitter) I = V diag(λ) Vᵀ`` in float64."""

    evals: Tensor  # (N,)
    evecs: Tensor  # (N, N)
    conditioning: Conditioning


def _spectrum(name: str, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(k64, evals, evecs)``: float64 symmetric part of a checked symmetric PSD kernel and its
    ascending eigendecomposition; raises ``ValueError`` naming ``name`` otherwise."""
    n = k.shape[0]
    eps_in = torch.finfo(k.dtype).eps
    k64 = k.detach().to(torch.float64)
    scale = float(k64.abs().max())
    asym = float((k64 - k64.T).abs().max())
    if asym > 100 * eps_in * max(scale, 1e-300):
        raise ValueError(
            f"`{name}` is not symmetric (max |K − Kᵀ| = {asym:.3g}, max |K| = {scale:.3g}); "
            "pass the kernel of the training inputs with themselves"
        )
    k64 = 0.5 * (k64 + k64.T)
    evals, evecs = torch.linalg.eigh(k64)
    lo, hi = float(evals[0]), float(evals[-1])
    tol = max(1e-10, 10 * math.sqrt(n) * eps_in) * max(hi, 0.0)
    if lo < -tol:
        raise ValueError(
            f"`{name}` is not positive semi-definite: smallest eigenvalue {lo:.3g} "
            f"(largest {hi:.3g}); a covariance/NTK matrix must be PSD — check how it was built"
        )
    return k64, evals, evecs


def _eigen(name: str, k: Tensor, reg: float) -> _Eigen:
    """Symmetric eigendecomposition with PSD check, conditioning and jitter (float64)."""
    if float(k.detach().abs().max()) == 0.0 and reg == 0.0:
        raise ValueError(f"`{name}` is identically zero; pass a nonzero kernel or diag_reg > 0")
    k64, evals, evecs = _spectrum(name, k)
    lo, hi = float(evals[0]), float(evals[-1])
    lam = evals + reg
    jitter = 0.0
    top = float(lam[-1])
    if float(lam[0]) * _COND_MAX < top:
        # Singular to float64 precision: escalate jitter by decades, visibly.
        base = float(k64.diagonal().mean()) or top
        jitter = base * 1e-12
        while float(lam[0]) + jitter <= (top + jitter) / _COND_MAX:
            jitter *= 10
        warnings.warn(
            f"`{name}` + diag_reg·I is singular to float64 precision (eigenvalues in "
            f"[{float(lam[0]):.3g}, {top:.3g}]); added jitter {jitter:.3g}·I "
            f"(= {jitter / base:.1g} × mean diagonal). Pass diag_reg > 0 to regularise explicitly.",
            IllConditionedWarning,
            stacklevel=3,
        )
        lam = lam + jitter
    cond = float(lam[-1] / lam[0])
    if cond > COND_WARNING and jitter == 0.0:
        warnings.warn(
            f"`{name}` (+ diag_reg·I) is ill-conditioned (condition number {cond:.3g}); "
            f"predictions may lose up to {math.log10(cond):.0f} digits. Consider diag_reg > 0.",
            IllConditionedWarning,
            stacklevel=3,
        )
    return _Eigen(lam, evecs, Conditioning(cond, lo, hi, reg, jitter))


def _times(t: object, learning_rate: float) -> tuple[tuple[int, ...], Tensor]:
    """``t`` (None/inf, scalar or array) -> (shape of t, flat float64 absolute times)."""
    if t is None:
        t = math.inf
    tt = torch.as_tensor(t, dtype=torch.float64)
    if tt.is_complex() or torch.isnan(tt).any() or (tt < 0).any():
        raise ValueError(f"`t` must be >= 0 (or None/inf for t = ∞); got {t!r}")
    return tuple(tt.shape), (tt * learning_rate).reshape(-1)


def _inv_expm1(lam: Tensor, t: Tensor, n_targets: int, factor: float = 1.0) -> Tensor:
    """``(1 − exp(−factor·λt/n)) / λ`` as ``(T, N)``; ``factor·t/n`` at λ = 0, ``1/λ`` at t=∞."""
    lam = lam.clamp_min(0.0)[None, :]
    tn = t[:, None] / n_targets
    x = factor * lam * tn
    small = lam * torch.where(torch.isinf(tn), torch.ones_like(tn), tn) < 1e-300
    safe = torch.where(small, torch.ones_like(lam), lam)
    out = torch.where(torch.isinf(x), 1.0 / safe, -torch.expm1(-x) / safe)
    return torch.where(small, factor * tn.expand_as(out), out)


# --------------------------------------------------------------------------- GP
def gp_inference(
    k_train_train: Tensor,
    y_train: Tensor,
    k_test_train: Tensor,
    k_test_test: Tensor | None = None,
    *,
    diag_reg: float = DIAG_REG,
    diag_reg_absolute: bool = False,
) -> GPPosterior:
    """Exact GP posterior (NNGP or NTK used as a GP kernel).

    ``mean = K*x (Kxx + σ²I)⁻¹ y`` and ``cov = K** − K*x (Kxx + σ²I)⁻¹ Kx*``
    (Rasmussen & Williams 2006, eqs. 2.25–2.26), with ``σ² = diag_reg·mean(diag Kxx)``
    (or ``diag_reg`` when ``diag_reg_absolute``).

    Args:
        k_train_train: ``(N, N)``; y_train: ``(N,)`` or ``(N, k)``;
        k_test_train: ``(M, N)``; k_test_test: ``(M, M)`` or ``None`` (no covariance).
    Returns:
        :class:`GPPosterior` with ``mean (M, *y_shape)``, ``cov (M, M)`` or ``None``.
    """
    kxx = _check_square("k_train_train", k_train_train)
    n = kxx.shape[0]
    y = _check_targets(y_train, n)
    ktx = _check_cross("k_test_train", k_test_train, n)
    if k_test_test is not None:
        ktt = _check_square("k_test_test", k_test_test)
        if ktt.shape[0] != ktx.shape[0]:
            raise ValueError(
                f"`k_test_test` is {tuple(ktt.shape)} but `k_test_train` has {ktx.shape[0]} rows"
            )
    eig = _eigen("k_train_train", kxx, _resolve_reg(kxx, diag_reg, diag_reg_absolute))
    v, lam = eig.evecs, eig.evals
    p = ktx.to(torch.float64) @ v  # (M, N) = K*x V
    y64 = y.to(torch.float64)
    mean = p @ ((v.T @ y64) / (lam[:, None] if y64.ndim == 2 else lam))
    cov = None
    if k_test_test is not None:
        cov = ktt.to(torch.float64) - (p / lam) @ p.T
        cov = 0.5 * (cov + cov.T)
    like = {"device": kxx.device, "dtype": kxx.dtype}
    return GPPosterior(mean.to(**like), None if cov is None else cov.to(**like), eig.conditioning)


# --------------------------------------------------------------------------- flow
class GradientFlow:
    """Linearised gradient-flow predictor returned by :func:`gradient_descent_mse`.

    Call it as ``flow(t, f0_train=0.0, f0_test=None, k_test_train=None)``.
    The eigendecomposition is computed once, at construction.
    """

    def __init__(
        self, k_train_train: Tensor, y_train: Tensor, learning_rate: float, reg: float
    ) -> None:
        self._k = k_train_train
        self._y = y_train
        self._lr = learning_rate
        self._eig = _eigen("k_train_train", k_train_train, reg)
        self._vty = self._eig.evecs.T @ y_train.to(torch.float64).reshape(len(y_train), -1)

    @property
    def conditioning(self) -> Conditioning:
        return self._eig.conditioning

    @property
    def n_targets(self) -> int:
        """``N_train × n_outputs``: the normalisation of time (docs/inference.md)."""
        return self._y.numel()

    def __call__(
        self,
        t: float | Tensor | None = None,
        f0_train: float | Tensor = 0.0,
        f0_test: Tensor | None = None,
        k_test_train: Tensor | None = None,
    ) -> FlowPrediction:
        """Train/test outputs at time(s) ``t`` (``None`` or ``inf`` = end of training).

        ``f_train(t) = y + exp(−Θ t/n)(f0_train − y)`` and
        ``f_test(t) = f0_test + Θ*x Θ⁻¹ (I − exp(−Θ t/n)) (y − f0_train)``
        (Lee et al. 2019, eqs. 10–11), with ``Θ`` the regularised train-train kernel.

        Args:
            t: scalar, array of any shape, or ``None``/``inf``.
            f0_train: ``(N, *y_shape)`` outputs at initialisation, or a scalar.
            f0_test: ``(M, *y_shape)`` test outputs at initialisation, or ``None``
                (no test prediction); requires ``k_test_train (M, N)``.
        """
        y = self._y
        n = y.shape[0]
        t_shape, ts = _times(t, self._lr)
        f0 = torch.as_tensor(f0_train, dtype=torch.float64, device=y.device)
        check = as_float_tensor("f0_train", f0, min_ndim=0)
        if check.ndim and tuple(check.shape) != tuple(y.shape):
            raise ValueError(
                f"`f0_train` must be a scalar or {tuple(y.shape)}; got {tuple(check.shape)}"
            )
        f0 = torch.broadcast_to(f0, y.shape).reshape(n, -1)
        y64 = y.to(torch.float64).reshape(n, -1)
        v, lam = self._eig.evecs, self._eig.evals
        r = v.T @ (f0 - y64)  # eigen-coordinates of f0 − y
        decay = torch.exp(-lam.clamp_min(0.0)[None, :] * ts[:, None] / self.n_targets)  # (T, N)
        train = y64 + torch.einsum("ji,ti,ik->tjk", v, decay, r)
        test = None
        if f0_test is not None or k_test_train is not None:
            if k_test_train is None or f0_test is None:
                raise ValueError("test predictions need both `f0_test` and `k_test_train`")
            ktx = _check_cross("k_test_train", k_test_train, n)
            m = ktx.shape[0]
            f0t = as_float_tensor("f0_test", f0_test, min_ndim=0).to(torch.float64)
            f0t = torch.broadcast_to(f0t, (m, *y.shape[1:])).reshape(m, -1)
            g = _inv_expm1(lam, ts, self.n_targets)  # (T, N)
            p = ktx.to(torch.float64) @ v
            test = f0t - torch.einsum("mi,ti,ik->tmk", p, g, r)
            test = test.reshape(*t_shape, m, *y.shape[1:]).to(self._k.dtype)
        train = train.reshape(*t_shape, n, *y.shape[1:]).to(self._k.dtype)
        return FlowPrediction(train, test, ts.reshape(t_shape))


def gradient_descent_mse(
    k_train_train: Tensor,
    y_train: Tensor,
    *,
    learning_rate: float = 1.0,
    diag_reg: float = DIAG_REG,
    diag_reg_absolute: bool = False,
) -> GradientFlow:
    """Closed-form gradient flow on MSE for a network linearised around its init.

    Time convention: ``f_t − y = exp(−Θ·lr·t / n_targets)(f_0 − y)``,
    ``n_targets = y_train.numel()`` (module docstring; equals Neural Tangents).

    Args:
        k_train_train: ``(N, N)`` NTK (or NNGP, for last-layer-only training).
        y_train: ``(N,)`` or ``(N, k)`` targets.
        learning_rate: ``t`` is measured in steps of this size.
        diag_reg: regularisation, relative to ``mean(diag K)`` unless ``diag_reg_absolute``.
    Returns:
        a :class:`GradientFlow`, callable on times.
    """
    k = _check_square("k_train_train", k_train_train)
    y = _check_targets(y_train, k.shape[0])
    lr = check_positive("learning_rate", learning_rate)
    return GradientFlow(k, y, lr, _resolve_reg(k, diag_reg, diag_reg_absolute))


# --------------------------------------------------------------------------- ensemble
KernelFn = Callable[..., object]


class EnsemblePredictor:
    """Mean/covariance of infinitely many infinite-width nets trained by gradient flow.

    Returned by :func:`gradient_descent_mse_ensemble`; call it as
    ``pred(x_test=None, t=None, *, kernel="ntk", compute_cov=True)``.
    """

    def __init__(
        self,
        kernel_fn: KernelFn,
        x_train: Tensor,
        y_train: Tensor,
        lr: float,
        diag_reg: float,
        absolute: bool,
    ) -> None:
        self._kernel_fn = kernel_fn
        self._x = x_train
        self._y = y_train
        self._lr = lr
        self._diag_reg, self._absolute = diag_reg, absolute
        kxx = self._kernel(x_train, None, ("nngp", "ntk"))
        if kxx["nngp"].shape[0] != y_train.shape[0]:
            raise ValueError(
                f"`y_train` has {y_train.shape[0]} rows but `x_train` has {kxx['nngp'].shape[0]}"
            )
        self.k_train_train = kxx
        self._eig: dict[str, _Eigen] = {}

    def _kernel(self, x1: Tensor, x2: Tensor | None, get: tuple[str, ...]) -> dict[str, Tensor]:
        k = self._kernel_fn(x1, x2, get=get)
        out = {}
        for g in get:
            mat = getattr(k, g, None) if not isinstance(k, dict) else k.get(g)
            if mat is None:
                raise ValueError(f"the kernel function returned no {g!r} kernel")
            if mat.ndim != 2:
                raise ValueError(
                    f"the network's {g} kernel has shape {tuple(mat.shape)}; inference needs "
                    "(N1, N2) kernels — end the net with a dense readout (add Flatten or "
                    "GlobalAvgPool before it)"
                )
            out[g] = mat
        return out

    def with_diag_reg(self, diag_reg: float, diag_reg_absolute: bool | None = None):
        """A predictor with the same (already computed) kernels and another ``diag_reg``."""
        new = copy.copy(self)
        new._diag_reg = check_nonnegative("diag_reg", diag_reg)
        if diag_reg_absolute is not None:
            new._absolute = bool(diag_reg_absolute)
        new._eig = {}
        return new

    @renamed_kwargs(get="kernel")
    def eigen(self, kernel: str) -> _Eigen:
        """Eigendecomposition of the regularised ``kernel`` (``"nngp"``/``"ntk"``) train-train
        matrix (cached)."""
        if kernel not in self._eig:
            k = self.k_train_train[kernel]
            self._eig[kernel] = _eigen(
                f"{kernel} train-train kernel", k, _resolve_reg(k, self._diag_reg, self._absolute)
            )
        return self._eig[kernel]

    @renamed_kwargs(get="kernel")
    def __call__(
        self,
        x_test: Tensor | None = None,
        t: float | Tensor | None = None,
        *,
        kernel: Literal["nngp", "ntk"] = "ntk",
        compute_cov: bool = True,
    ) -> EnsemblePrediction:
        """Ensemble mean/cov on ``x_test`` (``None`` = training inputs) at time(s) ``t``.

        ``kernel="ntk"`` (all layers trained, Lee et al. 2019 eqs. 15–16):
        ``μ_t = Θ*x Θ⁻¹ A_t y``,
        ``Σ_t = K** + Θ*x Θ⁻¹ A_t K A_t Θ⁻¹ Θx* − (Θ*x Θ⁻¹ A_t Kx* + transpose)``,
        ``A_t = I − exp(−Θ t / n_targets)``.  ``kernel="nngp"`` (readout only, Θ = K):
        ``Σ_t = K** − K*x K⁻¹ (I − exp(−2 K t/n)) Kx*``; at ``t = ∞`` the NNGP posterior.
        On the training inputs: ``μ = A_t y``, ``Σ = e^{−Θt/n} K e^{−Θt/n}`` (ntk) or
        ``K e^{−2Kt/n}`` (nngp).
        Shapes: ``mean (*t_shape, M, *y_shape)``, ``cov (*t_shape, M, M)``.
        (``get=`` is the deprecated spelling of ``kernel=``.)
        """
        if kernel not in ("nngp", "ntk"):
            raise ValueError(f"`kernel` must be 'nngp' or 'ntk'; got {kernel!r}")
        y = self._y
        n, n_targets = y.shape[0], y.numel()
        t_shape, ts = _times(t, self._lr)
        eig = self.eigen(kernel)
        v, lam = eig.evecs, eig.evals
        y64 = y.to(torch.float64).reshape(n, -1)
        vty = v.T @ y64
        k_nngp = self.k_train_train["nngp"].to(torch.float64)
        dtype, device = k_nngp.dtype, k_nngp.device
        out_dtype = self.k_train_train["nngp"].dtype
        cov = None
        if x_test is None:
            a = -torch.expm1(-lam.clamp_min(0)[None, :] * ts[:, None] / n_targets)  # (T, N)
            mean = torch.einsum("ji,ti,ik->tjk", v, a, vty)
            m = n
            if compute_cov:
                if kernel == "ntk":
                    e = torch.einsum("ji,ti,ki->tjk", v, 1 - a, v)
                    cov = e @ k_nngp @ e.transpose(1, 2)
                else:
                    lp = lam.clamp_min(0)[None, :]
                    w = lp * torch.exp(-2 * lp * ts[:, None] / n_targets)
                    w = torch.where(torch.isnan(w), torch.zeros_like(w), w)
                    cov = torch.einsum("ji,ti,ki->tjk", v, w, v)
        else:
            gets = ("nngp", "ntk") if kernel == "ntk" else ("nngp",)
            ktx = self._kernel(x_test, self._x, gets)
            m = ktx["nngp"].shape[0]
            p = ktx[kernel].to(dtype) @ v  # (M, N)
            g = _inv_expm1(lam, ts, n_targets)  # (T, N)
            mean = torch.einsum("mi,ti,ik->tmk", p, g, vty)
            if compute_cov:
                ktt = self._kernel(x_test, None, ("nngp",))["nngp"].to(dtype)
                if kernel == "nngp":
                    h = _inv_expm1(lam, ts, n_targets, factor=2.0)
                    cov = ktt - torch.einsum("mi,ti,li->tml", p, h, p)
                else:
                    q = v.T @ k_nngp @ v  # Vᵀ K V
                    r = v.T @ ktx["nngp"].to(dtype).T  # Vᵀ Kx*
                    pg = p[None] * g[:, None, :]  # (T, M, N) = Θ*x V diag(g)
                    cross = pg @ r  # Θ*x Θ⁻¹ A_t Kx*
                    cov = ktt + pg @ q @ pg.transpose(1, 2) - cross - cross.transpose(1, 2)
        if cov is not None:
            cov = 0.5 * (cov + cov.transpose(-1, -2))
            cov = cov.reshape(*t_shape, m, m).to(device=device, dtype=out_dtype)
        mean = mean.reshape(*t_shape, m, *y.shape[1:]).to(device=device, dtype=out_dtype)
        return EnsemblePrediction(mean, cov, ts.reshape(t_shape), kernel, eig.conditioning)


def gradient_descent_mse_ensemble(
    net_or_kernel_fn: object,
    x_train: Tensor,
    y_train: Tensor,
    *,
    learning_rate: float = 1.0,
    diag_reg: float = DIAG_REG,
    diag_reg_absolute: bool = False,
) -> EnsemblePredictor:
    """Gaussian over outputs of an infinite ensemble of infinite-width nets trained on MSE.

    Args:
        net_or_kernel_fn: a network spec (:class:`widelimit.layers.base.Layer`, its
            ``kernel`` method is used) or a callable ``kernel_fn(x1, x2, get=(...))``
            returning an object (or dict) with ``nngp``/``ntk`` ``(N1, N2)`` tensors.
        x_train: ``(N, *in_shape)``; y_train: ``(N,)`` or ``(N, k)``.
        learning_rate, diag_reg, diag_reg_absolute: as in :func:`gradient_descent_mse`.
    Returns:
        an :class:`EnsemblePredictor`; the train-train kernels are computed now.
    """
    from widelimit.layers.base import Layer

    if isinstance(net_or_kernel_fn, Layer):
        kernel_fn = net_or_kernel_fn.kernel
    elif callable(net_or_kernel_fn):
        kernel_fn = net_or_kernel_fn
    else:
        raise TypeError(
            "`net_or_kernel_fn` must be a network spec (Layer) or a callable "
            f"kernel_fn(x1, x2, get=...); got {type(net_or_kernel_fn).__name__}"
        )
    x = as_float_tensor("x_train", x_train, min_ndim=2)
    y = as_float_tensor("y_train", y_train, min_ndim=1, max_ndim=2)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`y_train` has {y.shape[0]} rows but `x_train` has {x.shape[0]}")
    lr = check_positive("learning_rate", learning_rate)
    check_nonnegative("diag_reg", diag_reg)
    return EnsemblePredictor(kernel_fn, x, y, lr, diag_reg, diag_reg_absolute)


# --------------------------------------------------------------------------- any loss
LossFn = Callable[[Tensor, Tensor], Tensor]

LOSSES = ("mse", "cross_entropy")
"""Losses :func:`gradient_descent` knows by name (``"mse"`` has a closed form)."""

MAX_EVALUATIONS = 100_000
"""Default budget of loss-gradient evaluations of one :class:`GradientDescent` ODE solve."""

_DENSE_CURVATURE = 64  # up to this many outputs the Hessian is built column by column
_CURVATURE_POINTS = 16  # requested times, and points on the way, where κ is checked


def _mse(f: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((f - y) ** 2).mean()  # the project's MSE convention (module docstring)


def _cross_entropy(f: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(f, y)  # mean over the N examples; y probabilities


def _as_loss(loss: object) -> tuple[LossFn, str | None]:
    """``(loss function, name)``; the name is ``None`` for a user callable."""
    if isinstance(loss, str):
        if loss == "mse":
            return _mse, "mse"
        if loss == "cross_entropy":
            return _cross_entropy, "cross_entropy"
        raise ValueError(
            f"`loss` = {loss!r} is not a known loss; use one of {LOSSES} or a callable "
            "loss(f_train, y_train) -> scalar tensor"
        )
    if not callable(loss):
        raise TypeError(
            "`loss` must be 'mse', 'cross_entropy' or a callable loss(f_train, y_train) -> "
            "scalar tensor, e.g. lambda f, y: torch.nn.functional.cross_entropy(f, y); "
            f"got {type(loss).__name__}"
        )
    return loss, None  # type: ignore[return-value]


def _is_integer(y: object) -> bool:
    if isinstance(y, Tensor):
        return not (y.is_floating_point() or y.is_complex())
    if isinstance(y, np.ndarray | Sequence):
        try:
            return np.asarray(y).dtype.kind in "biu"
        except (TypeError, ValueError):
            return False  # as_float_tensor names the problem
    return False


def _gd_targets(y_train: object, n: int, loss_name: str | None, num_classes: int | None) -> Tensor:
    """Targets of :func:`gradient_descent`: integer labels one-hot encoded only on request."""
    if _is_integer(y_train):
        if num_classes is None:
            raise ValueError(
                "`y_train` has an integer (or boolean) dtype: class labels must be turned into "
                "targets of the outputs' shape explicitly. Pass num_classes=C to one-hot encode "
                "labels of shape (N,) into (N, C) float targets (the outputs then have C "
                "columns), or pass one-hot/probability targets as floats; for integer-valued "
                "regression targets pass y_train.double()"
            )
        c = check_positive_int("num_classes", num_classes)
        labels = y_train if isinstance(y_train, Tensor) else torch.as_tensor(np.asarray(y_train))
        if labels.ndim != 1:
            raise ValueError(
                "with `num_classes`, `y_train` must be (N,) integer class labels; got shape "
                f"{tuple(labels.shape)} (pass one-hot targets as floats instead)"
            )
        labels = labels.long()
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= c:
            raise ValueError(
                f"class labels in `y_train` must be in [0, num_classes) = [0, {c}); got labels "
                f"from {lo} to {hi}"
            )
        y_train = torch.nn.functional.one_hot(labels, c).to(torch.float64)
    elif num_classes is not None:
        raise ValueError(
            "`num_classes` one-hot encodes integer class labels, but `y_train` is floating "
            "point (already targets of the outputs' shape); leave num_classes=None"
        )
    y = _check_targets(y_train, n)
    if loss_name == "cross_entropy":
        if y.ndim != 2 or y.shape[1] < 2:
            raise ValueError(
                "loss='cross_entropy' needs (N, C) targets with C >= 2 classes (one-hot rows or "
                "class probabilities), or (N,) integer labels with num_classes=C; got shape "
                f"{tuple(y.shape)}: one output per example is ambiguous (labels? logits of one "
                "class?)"
            )
        sums = y.to(torch.float64).sum(1)
        if bool((y < 0).any()) or float((sums - 1).abs().max()) > 1e-6:
            raise ValueError(
                "loss='cross_entropy' needs targets that are class probabilities (>= 0, each "
                f"row summing to 1); got entries from {float(y.min()):.3g} and row sums from "
                f"{float(sums.min()):.6g} to {float(sums.max()):.6g}"
            )
    return y


def _heavy_ball_u(lam: Tensor, s: Tensor, n_targets: int, m: float) -> Tensor:
    """``u(s)`` (``(T, N)``) with ``u'' = (1 − λu)/n + m u'``, ``u(0) = u'(0) = 0``, ``m < 0``.

    Per eigenvalue ``λ`` of Θ, ``P = u·r0`` is the heavy-ball integral of the MSE gradient
    (:class:`GradientDescent`).  With ``a = λ/n`` the characteristic roots are
    ``z± = (m ± √(m² − 4a))/2`` (``z₊z₋ = a``, complex when underdamped) and
    ``u = (E(z₊) − E(z₋)) / (n (z₊ − z₋))``, ``E(z) = (e^{zs} − 1)/z`` (``E(0) = s``),
    i.e. ``n·u`` is the divided difference of ``E``; at critical damping it is ``E'(m/2)``.
    """
    a = (lam.clamp_min(0.0) / n_targets).to(torch.complex128)[None, :]  # (1, N)
    sc = s.to(torch.complex128)[:, None]  # (T, 1), finite (t = ∞ is refused by the caller)
    root = torch.sqrt(m * m - 4 * a)  # principal root; z₋ is the larger |z|
    z_lo = (m - root) / 2
    z_hi = a / z_lo  # = (m + root)/2 without cancellation

    def e(z):
        safe = torch.where(z == 0, torch.ones_like(z), z)
        return torch.where(z == 0, sc + 0 * z, torch.expm1(z * sc) / safe)

    diff = z_hi - z_lo
    u = (e(z_hi) - e(z_lo)) / (n_targets * torch.where(diff == 0, torch.ones_like(diff), diff))
    c = torch.full_like(a, m / 2)
    crit = (c * sc).exp() * sc / c - torch.expm1(c * sc) / (c * c)  # E'(m/2)
    near = diff.abs() <= 1e-7 * abs(m)
    u = torch.where(near, crit / n_targets, u)
    return u.real


class GradientDescent:
    """Function-space gradient descent under a fixed NTK, for any differentiable loss.

    Returned by :func:`gradient_descent`; call it as
    ``gd(t, f0_train=0.0, f0_test=None, k_test_train=None)``.

    The state is the integrated loss gradient, so test outputs cost one product:
    without momentum ``G(s) = ∫₀ˢ ∇_f L(f_train) ds`` and
    ``f_train = f0_train − Θ G``, ``f_test = f0_test − Θ*x G``; with momentum
    ``P'' = ∇_f L + m P'`` (``P(0) = P'(0) = 0``, ``m = (μ − 1)/√lr``) and
    ``f = f0 − Θ P`` on both sets (heavy ball started at rest).

    ``loss="mse"`` has a closed form through the eigendecomposition ``Θ = V diag(λ) Vᵀ``
    (cost independent of ``t``): ``G = V diag(u) Vᵀ (f0 − y)`` with
    ``u = (1 − e^{−λs/n})/λ`` (no momentum) or the damped-oscillator solution of
    :func:`_heavy_ball_u`.  Any other loss is integrated by
    :func:`scipy.integrate.solve_ivp` from ``s = 0`` to ``max(s)`` in at most
    ``max_evaluations`` gradient evaluations.
    """

    def __init__(
        self,
        loss: LossFn,
        loss_name: str | None,
        k_train_train: Tensor,
        y_train: Tensor,
        learning_rate: float,
        momentum: float | None,
        method: str,
        rtol: float,
        atol: float,
        max_evaluations: int,
    ) -> None:
        self._loss, self._loss_name = loss, loss_name
        self._k = k_train_train
        self._y = y_train
        self._lr = learning_rate
        self._momentum = momentum
        self._method, self._rtol, self._atol = method, rtol, atol
        self._max_evaluations = max_evaluations
        k64, evals, evecs = _spectrum("k_train_train", k_train_train)
        self._k64 = k64.cpu()
        self._lam, self._v = evals.clamp_min(0.0).cpu(), evecs.cpu()
        self._sqrt_k = (self._v * self._lam.sqrt()) @ self._v.T  # Θ^{1/2}
        if loss_name == "mse":  # ∇²_f L = I/n_targets: the curvature is the same everywhere
            self._check_rate(
                float(self._lam[-1]) / self.n_targets,
                "the loss ½·mean (f − y)² has the same curvature everywhere",
            )

    @property
    def n_targets(self) -> int:
        """``y_train.numel()``."""
        return self._y.numel()

    def _check_rate(self, kappa: float, where: str) -> None:
        """Refuse ``learning_rate ≥ 2(1 + μ)/κ``, ``κ = λ_max(Θ^{½} ∇²_f L Θ^{½})``."""
        limit = 2.0 * (1.0 + (self._momentum or 0.0)) / kappa if kappa > 0 else math.inf
        if self._lr < limit:
            return
        heavy = self._momentum is not None
        raise ValueError(
            f"`learning_rate` = {self._lr:g} is at or above the stability limit {limit:.6g} of "
            f"gradient descent{' with momentum' if heavy else ''} here ({where}): the limit is "
            "2(1 + μ)/κ with κ = λ_max(Θ·∇²_f loss) = "
            f"{kappa:.6g}. Real gradient descent with this step diverges or oscillates while "
            "the gradient flow solved here converges, so t (which counts steps of size "
            f"learning_rate) would describe nothing real. Pass learning_rate < {limit:.6g}"
            + (
                ""
                if heavy
                else "; to study the flow itself, the result depends only on s = "
                "learning_rate·t: take a learning_rate below the limit and t = s/learning_rate"
            )
        )

    def _grad(self, f: Tensor, y: Tensor) -> Tensor:
        """``∇_f loss(f, y)`` in float64, checked."""
        f = f.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self._loss(f, y)
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise ValueError(
                    "`loss(f_train, y_train)` must return a scalar tensor (reduce with a mean "
                    f"or sum); got {type(value).__name__} "
                    f"{tuple(value.shape) if isinstance(value, Tensor) else ''}"
                )
            g = None
            if value.requires_grad:
                (g,) = torch.autograd.grad(value.reshape(()), f, allow_unused=True)
        if g is None:
            raise ValueError(
                "`loss(f_train, y_train)` does not depend on f_train (autograd finds no path "
                "from the outputs to its value): the outputs would never move. Compute the loss "
                "from its first argument with torch operations (no .detach(), .item() or numpy)"
            )
        if not bool(torch.isfinite(g).all()):
            raise ValueError(
                "`loss` has a non-finite gradient at the current outputs (NaN/inf); use a "
                "numerically stable form, e.g. log_softmax instead of log(softmax)"
            )
        return g.detach()

    def _curvature(self, f: Tensor) -> float:
        """``κ = λ_max(Θ^{½} H Θ^{½})``, ``H = ∇²_f loss`` at outputs ``f`` (``(N, width)``).

        The eigenvalues of ``Θ H`` (Θ acting on the examples) are those of this symmetric
        matrix; built column by column from Hessian-vector products (double backward) up to
        :data:`_DENSE_CURVATURE` outputs, by Lanczos (:func:`scipy.sparse.linalg.eigsh`) above.
        """
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

        y = self._y.detach().to(torch.float64).cpu()
        n, width = f.shape
        fr = f.detach().reshape(y.shape).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self._loss(fr, y).reshape(()), fr, create_graph=True)
        if not g.requires_grad:
            return 0.0  # linear in f: no curvature

        def matvec(vec: np.ndarray) -> np.ndarray:
            w = (self._sqrt_k @ torch.from_numpy(np.asarray(vec).reshape(n, width))).reshape(
                y.shape
            )
            (hw,) = torch.autograd.grad(g, fr, grad_outputs=w, retain_graph=True, allow_unused=True)
            hw = torch.zeros_like(fr) if hw is None else hw
            return (self._sqrt_k @ hw.detach().reshape(n, width)).reshape(-1).numpy()

        size = n * width
        if size <= _DENSE_CURVATURE:
            mat = np.stack([matvec(col) for col in np.eye(size)], axis=1)
            return float(np.linalg.eigvalsh(0.5 * (mat + mat.T))[-1])
        op = LinearOperator((size, size), matvec=matvec, dtype=np.float64)
        try:
            top = eigsh(op, k=1, which="LA", tol=1e-8, return_eigenvectors=False)
        except ArpackNoConvergence as err:
            raise RuntimeError(
                "could not find the largest curvature of the loss (Lanczos did not converge), "
                "needed to check learning_rate against the stability limit of gradient descent"
            ) from err
        return float(top[0])

    def _check_curvature(self, f: Tensor, where: str) -> None:
        self._check_rate(self._curvature(f), where)

    def _mse(self, ts: Tensor, f0: Tensor, ktx: Tensor | None, f0t: Tensor | None):
        """Closed form for ``loss="mse"``: ``(train (T, N, w), test (T, M, w) or None)``."""
        y64 = self._y.detach().to(torch.float64).cpu().reshape(f0.shape)
        v, lam, n_t = self._v, self._lam, self.n_targets
        r = v.T @ (f0 - y64)  # eigen-coordinates of f0 − y, (N, w)
        if self._momentum is None:
            decay = torch.exp(-lam[None, :] * ts[:, None] / n_t)  # (T, N)
            u = _inv_expm1(lam, ts, n_t)
        else:
            u = _heavy_ball_u(lam, ts, n_t, (self._momentum - 1.0) / math.sqrt(self._lr))
            decay = 1.0 - lam[None, :] * u
        train = y64[None] + torch.einsum("ji,ti,ik->tjk", v, decay, r)
        test = None
        if ktx is not None:
            test = f0t[None] - torch.einsum("mi,ti,ik->tmk", ktx @ v, u, r)
        return train, test

    def _solve(self, ts: Tensor, f0: Tensor) -> tuple[Tensor, list[tuple[float, Tensor]]]:
        """Integrated gradient at the (absolute) times ``ts``: ``(T, N, width)``, and the
        ``(s, state)`` the solver passed through first after each of up to
        ``2·_CURVATURE_POINTS`` marks, spaced evenly and log-evenly (1e-4·s_max to s_max)."""
        from scipy.integrate import solve_ivp

        y = self._y
        n, width = f0.shape
        size = n * width
        heavy = self._momentum is not None
        mom = (self._momentum - 1.0) / math.sqrt(self._lr) if heavy else 0.0
        y_in = y.detach().to(torch.float64).cpu()  # the loss sees targets in their own shape
        k64 = self._k64
        count = [0]
        budget = self._max_evaluations

        class _Budget(Exception):
            pass

        def grad_at(state_g: np.ndarray) -> np.ndarray:
            count[0] += 1
            if count[0] > budget:
                raise _Budget
            g_int = torch.from_numpy(state_g).reshape(n, width)
            f = (f0 - k64 @ g_int).reshape(y.shape)  # f = f0 − Θ G (or Θ P)
            return self._grad(f, y_in).reshape(-1).numpy()

        reached = [0.0]

        path: list[tuple[float, Tensor]] = []
        s_end = float(ts.max()) if len(ts) else 0.0
        k = np.arange(1, _CURVATURE_POINTS + 1) / _CURVATURE_POINTS
        marks = np.unique(np.concatenate([k * s_end, s_end * 10.0 ** (4 * (k - 1))]))
        nxt = [0]

        def rhs(s: float, state: np.ndarray) -> np.ndarray:
            reached[0] = max(reached[0], s)
            if nxt[0] < len(marks) and s >= marks[nxt[0]]:  # κ is checked here later
                path.append((s, torch.from_numpy(state[:size].copy())))  # G (or P)
                nxt[0] = int(np.searchsorted(marks, s, side="right"))
            if not heavy:
                return grad_at(state)  # dG/ds = ∇_f L(f0 − Θ G)
            p, vel = state[:size], state[size:]
            return np.concatenate([vel, grad_at(p) + mom * vel])  # P'' = ∇L + m P'

        order = torch.argsort(ts)
        t_eval = ts[order].numpy()
        state0 = np.zeros(2 * size if heavy else size)
        if float(t_eval[-1]) > 0:
            try:
                sol = solve_ivp(
                    rhs,
                    (0.0, float(t_eval[-1])),
                    state0,
                    method=self._method,
                    t_eval=t_eval,
                    rtol=self._rtol,
                    atol=self._atol,
                )
            except _Budget:
                raise RuntimeError(
                    f"the ODE solver used max_evaluations = {budget} evaluations of the loss "
                    f"gradient and reached s = {reached[0]:.4g} of {float(t_eval[-1]):.4g} "
                    "(s = learning_rate·t, or √learning_rate·t with momentum); the cost grows "
                    "with s (on stiff problems like s·λ_max(Θ)/n_targets). Use loss='mse' for "
                    "the closed form (any t at the same cost), a stiff method ('LSODA', "
                    "'Radau'), shorter times, or a larger max_evaluations"
                ) from None
            if not sol.success:
                raise RuntimeError(f"the ODE solver failed: {sol.message}")
            states = torch.from_numpy(sol.y[:size].T.copy())  # (T, size), sorted times
        else:
            states = torch.zeros(len(t_eval), size, dtype=torch.float64)
        integral = torch.empty_like(states)
        integral[order] = states
        return integral.reshape(-1, n, width), path

    def __call__(
        self,
        t: float | Tensor,
        f0_train: float | Tensor = 0.0,
        f0_test: Tensor | None = None,
        k_test_train: Tensor | None = None,
    ) -> FlowPrediction:
        """Train/test outputs at time(s) ``t`` (finite, ``>= 0``; any shape).

        Args:
            t: times in steps of size ``learning_rate`` (module docstring).
            f0_train: ``(N, *y_shape)`` outputs at initialisation, or a scalar.
            f0_test: ``(M, *y_shape)`` test outputs at initialisation (or a scalar), or
                ``None``; requires ``k_test_train (M, N)``.
        Returns:
            :class:`FlowPrediction` with ``train (*t_shape, N, *y_shape)``, ``test
            (*t_shape, M, *y_shape)`` or ``None``, and ``t`` the solver time ``s``
            (``lr·t``; ``√lr·t`` with momentum).
        Raises:
            ValueError: ``learning_rate`` at or above the stability limit at the initial
                outputs, at up to 32 points on the way or at (up to 16 of) the requested
                times (losses other than ``"mse"``, whose limit is checked once, at
                construction).
            RuntimeError: the ODE solve needs more than ``max_evaluations`` gradients.
        """
        y = self._y
        n = y.shape[0]
        heavy = self._momentum is not None
        scale = math.sqrt(self._lr) if heavy else self._lr
        t_shape, ts = _times(t, scale)
        if torch.isinf(ts).any():
            raise ValueError(
                "`t` must be finite for gradient_descent: under a general loss the outputs "
                "need not converge (cross-entropy grows the logits forever); pass finite times "
                "(for MSE at t = ∞, gradient_descent_mse)"
            )
        f0 = as_float_tensor("f0_train", f0_train, min_ndim=0).detach().to(torch.float64).cpu()
        if f0.ndim and tuple(f0.shape) != tuple(y.shape):
            raise ValueError(
                f"`f0_train` must be a scalar or {tuple(y.shape)}; got {tuple(f0.shape)}"
            )
        f0 = torch.broadcast_to(f0, y.shape).reshape(n, -1)
        ktx = f0t = None
        if f0_test is not None or k_test_train is not None:
            if k_test_train is None or f0_test is None:
                raise ValueError("test predictions need both `f0_test` and `k_test_train`")
            ktx = _check_cross("k_test_train", k_test_train, n).detach().to(torch.float64).cpu()
            m = ktx.shape[0]
            f0t = as_float_tensor("f0_test", f0_test, min_ndim=0).detach().to(torch.float64)
            f0t = torch.broadcast_to(f0t.cpu(), (m, *y.shape[1:])).reshape(m, -1)
        if self._loss_name == "mse":
            train, test = self._mse(ts, f0, ktx, f0t)
        else:
            self._grad(f0.reshape(y.shape), y.detach().to(torch.float64).cpu())  # checks loss
            self._check_curvature(f0, "at the initial outputs f0_train")
            integral, path = self._solve(ts, f0)
            train = f0[None] - torch.einsum("ij,tjk->tik", self._k64, integral)
            for s_i, state in path:  # points along the way, spread in s
                f = f0 - self._k64 @ state.reshape(f0.shape)
                self._check_curvature(f, f"on the way, near t = {s_i / scale:.4g}")
            pick = torch.argsort(ts)
            if len(pick) > _CURVATURE_POINTS:
                pick = pick[torch.linspace(0, len(pick) - 1, _CURVATURE_POINTS).round().long()]
            for i in pick.tolist():
                self._check_curvature(train[i], f"at the outputs of t = {float(ts[i]) / scale:g}")
            test = None
            if ktx is not None:
                test = f0t[None] - torch.einsum("ij,tjk->tik", ktx, integral)
        like = {"dtype": self._k.dtype, "device": self._k.device}
        train = train.reshape(*t_shape, n, *y.shape[1:]).to(**like)
        if test is not None:
            test = test.reshape(*t_shape, test.shape[1], *y.shape[1:]).to(**like)
        return FlowPrediction(train, test, ts.reshape(t_shape))


def gradient_descent(
    loss: LossFn | str,
    k_train_train: Tensor,
    y_train: Tensor,
    *,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    num_classes: int | None = None,
    method: str = "DOP853",
    rtol: float = 1e-11,
    atol: float = 1e-13,
    max_evaluations: int = MAX_EVALUATIONS,
) -> GradientDescent:
    """Function-space training under a fixed NTK for any differentiable loss.

    Linearised training (Lee et al. 2019, eqs. (3)–(5)) of a network whose
    outputs on the training inputs are ``f``: gradient descent with step
    ``learning_rate`` on ``loss(f(θ), y_train)`` becomes, in function space,

        ``df_train/ds = −Θ ∇_f loss(f_train)``,  ``df_test/ds = −Θ*x ∇_f loss(f_train)``

    with ``s = learning_rate·t`` and ``Θ`` acting as ``Θ ⊗ I`` on the output columns.
    With ``momentum = μ`` (heavy ball, ``v ← μ v − lr ∇L``, ``θ ← θ + v``, which is
    ``torch.optim.SGD(lr=lr, momentum=μ)`` with ``v = −lr·b``), as in Neural Tangents'
    ``predict.gradient_descent``: ``s = √lr·t`` and
    ``d²f/ds² = −Θ ∇_f loss + ((μ − 1)/√lr) df/ds``, starting at rest.  ``t``
    counts training steps in both cases.

    **How ``loss`` is normalised.**  ``loss`` is used as given: ``t`` counts
    steps of full-batch gradient descent with step ``learning_rate`` on exactly
    this scalar, so a mean (rather than a sum) over examples matters.
    ``loss="mse"`` is the project's MSE convention ``0.5 * ((f - y) ** 2).mean()``
    (mean over all ``N × k`` targets), solved in closed form (cost independent of
    ``t``; equals :func:`gradient_descent_mse` with ``diag_reg=0``);
    ``loss="cross_entropy"`` is ``torch.nn.functional.cross_entropy(f, y)`` with
    ``(N, C)`` probability targets, averaged over the ``N`` examples.

    **Targets.**  ``y_train`` has the shape of the outputs.  Integer (or boolean) class
    labels are never read as numbers: give ``num_classes=C`` and labels ``(N,)`` in
    ``[0, C)`` become one-hot ``(N, C)`` float targets (the outputs then have ``C``
    columns), for any loss; without ``num_classes`` integer targets are refused.
    ``loss="cross_entropy"`` also refuses targets that are not ``(N, C ≥ 2)`` rows of
    class probabilities.

    **Stability.**  ``t`` counts steps of size ``learning_rate``, and gradient descent
    (heavy ball) is stable only while ``learning_rate·κ < 2(1 + μ)``, ``κ =
    λ_max(Θ·∇²_f loss)``; above it real descent diverges or oscillates while the flow
    converges, so such a ``learning_rate`` is refused (``ValueError`` giving the limit).
    For ``"mse"`` ``κ = λ_max(Θ)/n_targets`` everywhere (:func:`max_learning_rate`),
    checked here; for other losses ``κ`` depends on the outputs and is checked at each
    call at ``f0_train``, at up to 32 points the ODE solver passes through (16 spread
    evenly in ``s``, 16 log-evenly from ``1e-4·s_max``) and at the outputs of up to 16 of
    the requested times (from
    Hessian-vector products; not between those points).

    Args:
        loss: ``"mse"``, ``"cross_entropy"``, or ``loss(f_train, y_train) -> scalar``,
            differentiable (twice, for the stability check) by torch autograd in
            ``f_train``; it receives float64 tensors of the shape of the targets.
        k_train_train: ``(N, N)`` NTK of the training inputs: symmetric PSD (checked as in
            :func:`gp_inference`).
        y_train: ``(N,)`` or ``(N, k)`` float targets, the shape of the outputs, or ``(N,)``
            integer labels with ``num_classes``.
        learning_rate: step size ``lr > 0`` of the gradient descent being described.
        momentum: ``None`` (plain gradient descent) or ``μ`` in ``[0, 1)``.
        num_classes: one-hot encode integer labels into this many columns (see Targets).
        method, rtol, atol: passed to :func:`scipy.integrate.solve_ivp` (use
            ``method="Radau"`` or ``"LSODA"`` for stiff problems: long times and a
            widely spread NTK spectrum); unused by ``"mse"``.
        max_evaluations: budget of loss-gradient evaluations per ODE solve (the cost grows
            with ``learning_rate·t``); above it a ``RuntimeError`` says how far it got.
    Returns:
        a :class:`GradientDescent`, callable on times like :class:`GradientFlow`.
    """
    loss_fn, loss_name = _as_loss(loss)
    k = _check_square("k_train_train", k_train_train)
    y = _gd_targets(y_train, k.shape[0], loss_name, num_classes)
    lr = check_positive("learning_rate", learning_rate)
    if momentum is not None:
        momentum = check_nonnegative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"`momentum` must be in [0, 1) or None; got {momentum!r}")
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a solve_ivp method name; got {type(method).__name__}")
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    budget = check_positive_int("max_evaluations", max_evaluations)
    return GradientDescent(loss_fn, loss_name, k, y, lr, momentum, method, rtol, atol, budget)


def max_learning_rate(
    ntk_train_train: Tensor,
    y_train_size: int | None = None,
    momentum: float = 0.0,
    eps: float = 1e-12,
) -> float:
    """Largest stable step of (momentum) gradient descent on MSE for a linearised network.

    With the loss ``½·mean over n_targets (f − y)²`` one step maps
    ``f − y ↦ (I − lr·Θ/n_targets)(f − y)``, a contraction iff
    ``lr < 2·n_targets/λ_max(Θ)``; with heavy-ball momentum ``μ`` the bound is
    ``2(1 + μ)·n_targets/λ_max`` (Goh 2017, "Why momentum really works", §Dynamics
    of momentum; as Neural Tangents' ``max_learning_rate``).

    Args:
        ntk_train_train: ``(N, N)`` NTK (analytic or empirical, traced over outputs).
        y_train_size: ``n_targets = y_train.numel()`` (``N × k``); ``None`` means ``N``
            (one output per example).
        momentum: ``μ ≥ 0``.
        eps: added to ``λ_max`` to avoid dividing by zero.
    Returns:
        the maximal learning rate (a float).
    """
    k = _check_square("ntk_train_train", ntk_train_train)
    n_targets = k.shape[0] if y_train_size is None else y_train_size
    if isinstance(n_targets, bool) or not isinstance(n_targets, int) or n_targets <= 0:
        raise ValueError(f"`y_train_size` must be a positive int or None; got {y_train_size!r}")
    mu = check_nonnegative("momentum", momentum)
    k64 = k.detach().to(torch.float64)
    lam_max = float(torch.linalg.eigvalsh(0.5 * (k64 + k64.T))[-1])
    return 2.0 * (1.0 + mu) * n_targets / (max(lam_max, 0.0) + eps)


__all__ += ["LOSSES", "MAX_EVALUATIONS", "GradientDescent", "gradient_descent", "max_learning_rate"]
