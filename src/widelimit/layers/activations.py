"""Elementwise activations: finite function, derivative and Gaussian dual side by side.

Each activation φ defines, once, its *dual* (docs/activations.md)::

    dual(q1, q2, s12, ntk=...) -> (E[φ(u) φ(v)], E[φ'(u) φ'(v)] or None)

with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``; ``q1, q2, s12`` are tensors
that broadcast together; the outputs have the broadcast shape, dtype and
device.  The kernel rule, the signal-propagation maps and the SDE drifts all
use it.  The kernel rule (docs/kernels.md)::

    Σ' = E[φ(u) φ(v)]        Θ' = Θ · E[φ'(u) φ'(v)]

Notation in the formulas below: ``ρ = √(q1 q2)``, ``c = s12/ρ`` (from
:func:`correlation`, clamped to [−1, 1]; ``s = ρ c`` is then used for s12),
``θ = arccos c``.

Closed forms: ``ReLU``, ``LeakyReLU``, ``ABReLU``, ``Abs`` (one piecewise-linear
formula), ``RectifiedMonomial`` (arc-cosine kernels), ``Erf``, ``GELU``,
``Sin``, ``Cos``, ``RBF`` (one sinusoid formula), ``Gaussian``, ``Exp``,
``Sign``, ``Monomial``, ``Hermite`` (one Isserlis/Hermite sum).  Each is
written so that ``c = ±1``, ``q → 0`` and ``q`` up to 1e4 stay finite (no
``1 − c²`` or ``P − s²`` differences of large numbers).

Numerical: :class:`Activation` (and ``Tanh``, ``Softplus``, ``SiLU``, ``ELU``,
``Sigmoid`` built on it) uses Gaussian quadrature (:mod:`widelimit._quadrature`).

Derivatives at kinks: ``derivative`` returns the a.e. derivative, with the
value at the kink chosen to agree with what autograd gives for ``fn`` (so finite
networks' empirical NTKs use the same convention).  For jumps (``Sign``,
``RectifiedMonomial(0)``) the a.e. derivative is 0; see :class:`Sign`.

:data:`ACTIVATIONS` maps lowercase names to constructors and
:func:`activation_from_name` builds one by name (used by the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit._quadrature import autograd_derivative, gauss_legendre, gaussian_dual
from widelimit._validation import broadcast_shapes
from widelimit.kernel import Kernel
from widelimit.layers.activation_checks import check_elementwise, find_jump, moment_problem
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape
from widelimit.layers.dual_gradients import dual_with_grad
from widelimit.layers.inputs import is_zero_constant
from widelimit.layers.spatial import self_pairs
from widelimit.layers.tiles import Tile, correlation_, snap_factor

Fn = Callable[[Tensor], Tensor]
Dual = tuple[Tensor, Tensor | None]
DualFn = Callable[[Tensor, Tensor, Tensor], Tensor]

_MAX_DEGREE = 32  # largest polynomial degree k accepted (coefficients ~ (k!)² stay in float64)


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
    """``(√(q1 q2), c)`` with ``c = s12/√(q1 q2)`` clamped to ``[-1, 1]`` (0 where q1 q2 = 0).

    No rounding to ±1 here (unlike the kernel engine's :func:`~widelimit.layers.tiles.
    snap_factor`): callers such as the SDE drifts pass correlations that are exact."""
    prod = (q1 * q2).clamp_min(0).sqrt()
    tiny = torch.finfo(prod.dtype).tiny
    c = torch.where(prod > tiny, s12 / prod.clamp_min(tiny), torch.zeros_like(s12))
    return prod, c.clamp(-1.0, 1.0)


def _one_minus_c2(c: Tensor) -> Tensor:
    """``1 − c²`` as ``(1 − c)(1 + c)`` (accurate near ``|c| = 1``, never negative)."""
    return ((1 - c) * (1 + c)).clamp_min(0)


# --------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------


def real_parameter(cls: str, name: str, value: object, *, minimum: float | None = None) -> float:
    """``value`` as a finite float (``>= minimum`` if given); ``cls`` names the layer in errors.

    Raises ``TypeError`` for non-numbers and ``ValueError`` for NaN/inf or values below
    ``minimum``, naming the argument ``name``.  Shared by the activation layers.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # numpy scalars, 0-d tensors
        except (TypeError, ValueError) as err:
            raise TypeError(f"{cls}: `{name}` must be a real number; got {value!r}") from err
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{cls}: `{name}` must be finite; got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{cls}: `{name}` must be >= {minimum}; got {value!r}")
    return v


def _degree(cls: str, k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        else:
            raise TypeError(f"{cls}: `k` must be an integer degree >= 0; got {k!r}")
    if not 0 <= k <= _MAX_DEGREE:
        raise ValueError(f"{cls}: `k` must be an integer in [0, {_MAX_DEGREE}]; got {k}")
    return int(k)


class Elementwise(Layer):
    """Base class of activation layers (see module docstring).

    Subclasses implement ``fn`` (finite forward pass), ``derivative`` and ``dual``.
    Closed forms may also implement :meth:`dual_correlation` (the same dual
    from the correlation), which the tiled dense-feature path uses in place.
    """

    pairwise: ClassVar[bool] = True

    def fn(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dual(
        self, q1: Tensor, q2: Tensor, s12: Tensor, *, ntk: bool = True
    ) -> Dual:  # pragma: no cover - abstract
        raise NotImplementedError

    def dual_correlation(self, c: Tensor, q1: Tensor, q2: Tensor, *, ntk: bool = True) -> Dual:
        """The dual from the correlation: ``dual(q1, q2, √(q1 q2)·c)``.

        ``c`` is clamped to ``[−1, 1]`` (0 where a variance is 0) and has the
        broadcast shape of the result; it may be **overwritten**.  ``q1``, ``q2``
        broadcast against it (e.g. ``(b, 1)`` and ``(1, m)`` for a tile, so that
        per-entry work uses only row/column vectors).  Optional: layers that do
        not implement it are evaluated with :meth:`dual`.
        """
        raise NotImplementedError

    @classmethod
    def has_dual_correlation(cls) -> bool:
        """Whether the class implements :meth:`dual_correlation`."""
        return cls.dual_correlation is not Elementwise.dual_correlation

    def self_dual(self, q: Tensor, *, ntk: bool) -> Dual:
        """The dual of every example with itself (``c = 1``; ``c = 0`` where ``q = 0``).

        ``q`` ``(n,)`` variances; returns ``(E[φ(u)²], E[φ'(u)²] or None)``, ``(n,)`` each.
        Requires :meth:`dual_correlation`; layers override it with a cheaper closed form
        (the tiled engine evaluates it for the rows and the columns of every tile).
        """
        return self.dual_correlation((q > 0).to(q.dtype), q, q, ntk=ntk)

    def dense_tile_dual(self, s: Tensor, q1: Tensor, q2: Tensor, *, ntk: bool) -> Dual | None:
        """Optional fast rule for one dense tile: the dual straight from the covariance.

        ``s`` ``(b, m)`` (owned: it may be overwritten), ``q1`` ``(b,)``, ``q2`` ``(m,)``.
        Returns ``(E[φφ], E[φ'φ'] or None)`` like :meth:`dual`, or ``None`` (the default)
        to use :meth:`dual_correlation` on the correlation.  A layer implements it when its
        formula folds the ``1/√q`` normalisation into its own per-row/column factors,
        saving passes over the tile.  Self-pairs need no care: the caller overwrites the
        diagonal of a tile of ``k(x)`` with the values at ``c = 1``.
        """
        return None

    # -------------------------------------------------------- layer protocol
    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return single_shape(self, in_shape)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return ElementwiseModule(self)

    def _check_gaussian(self, k: Kernel) -> None:
        if not k.is_gaussian:
            raise ValueError(
                f"{type(self).__name__} must follow an affine layer (Dense/Conv): its kernel "
                "rule needs Gaussian pre-activations, but its input is a raw input or the "
                "output of another activation"
            )

    def _dual_of(
        self, q1: Tensor, q2: Tensor, s12: Tensor, ntk: bool, pairs=None, owned: bool = False
    ) -> Dual:
        """The dual at every entry of ``s12`` (overwritten if ``owned``).  With
        :meth:`dual_correlation` the correlation is formed from ``1/√q`` of the (small,
        broadcasting) variance tensors, and set to exactly 1 on the self-pairs selected by
        ``pairs`` (a view function; ``θ = 0`` there)."""
        ip = _inplace(s12, q1, q2)
        if not self.has_dual_correlation():
            # |c| within 8 ulps of 1 → ±1 through the dual's clamp (tiles.snap_factor)
            s12 = _op(ip and owned, s12, "mul", snap_factor(s12.dtype))
            return self.dual(q1, q2, s12, ntk=ntk)
        r1 = torch.where(q1 > 0, q1.rsqrt(), 0.0)  # c = 0 where a variance is 0
        r2 = torch.where(q2 > 0, q2.rsqrt(), 0.0) * snap_factor(q2.dtype)
        c = (
            s12.mul_(r1)
            if ip and owned and s12.shape == broadcast_shapes(s12.shape, r1.shape, r2.shape)
            else s12 * r1
        )
        c = _op(ip, _op(ip, c, "mul", r2), "clamp", -1.0, 1.0)
        if pairs is not None and ip:
            diag = pairs(c)  # c = 1 ± ulp there (0 for zero variances): make it exact
            diag.copy_(diag > 0.5)
        return self.dual_correlation(c, q1, q2, ntk=ntk)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        return self._transform(single_kernel(self, k), owned=False)

    def _transform(self, k: Kernel, owned: bool) -> Kernel:
        """The kernel rule; ``owned``: ``k.nngp``/``k.ntk`` may be overwritten."""
        self._check_gaussian(k)
        n_sp, full = len(k.spatial), k.full_spatial

        def pairs(lead: int):
            return lambda t: self_pairs(t, lead, n_sp, full)

        q1, q2 = k.variances()
        sym = None
        if k.is_symmetric:
            sym = pairs(2)
        elif isinstance(k, Tile) and k.has_diagonal:  # its leading square block
            sym = lambda t: self_pairs(t[:, : t.shape[0]], 2, n_sp, full)  # noqa: E731
        nngp, dd = self._dual_of(q1, q2, k.nngp, k.ntk is not None, sym, owned)
        ntk = k.ntk
        if ntk is not None and not is_zero_constant(ntk):  # Θ = 0 stays 0
            inplace = owned and dd is not None and ntk.shape == dd.shape and _inplace(ntk, dd)
            ntk = ntk.mul_(dd) if inplace else ntk * dd
        a1, b1 = k.self_variances(1)
        cov1, _ = self._dual_of(a1, b1, k.cov1, False, pairs(1))
        cov2 = None
        if k.cov2 is not None:
            a2, b2 = k.self_variances(2)
            cov2, _ = self._dual_of(a2, b2, k.cov2, False, pairs(1))
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    def transform_tile(self, t: Tile) -> Tile:
        """Σ' = E[φφ], Θ' = Θ·E[φ'φ'] on an owned tile (:mod:`widelimit.layers.tiles`)."""
        if t.spatial:
            return self._transform(t, owned=True)
        self._check_gaussian(t)
        q1, q2 = t.cov1, t.cov2
        want_ntk = t.ntk is not None
        fast = self.dense_tile_dual(t.nngp, q1, q2, ntk=want_ntk)
        if fast is not None:
            nngp, dd = fast
            cov1, dd1 = self.self_dual(q1, ntk=want_ntk and t.has_diagonal)
            cov2, _ = self.self_dual(q2, ntk=False)
            if t.has_diagonal and dd is not None and dd1 is not None:
                dd.diagonal().copy_(dd1)  # the self-pairs' values at c = 1 exactly
        elif self.has_dual_correlation():
            c = correlation_(t)  # overwrites t.nngp
            nngp, dd = self.dual_correlation(c, q1[:, None], q2[None, :], ntk=want_ntk)
            cov1, _ = self.self_dual(q1, ntk=False)
            cov2, _ = self.self_dual(q2, ntk=False)
        else:
            s12 = t.nngp.mul_(snap_factor(t.nngp.dtype))  # |c| ≈ 1 → ±1 in the dual's clamp
            nngp, dd = self.dual(q1[:, None], q2[None, :], s12, ntk=want_ntk)
            cov1, _ = self.dual(q1, q1, q1, ntk=False)
            cov2, _ = self.dual(q2, q2, q2, ntk=False)
        if t.has_diagonal:
            nngp.diagonal().copy_(cov1)  # the diagonal is exactly the variances
        ntk = t.ntk
        if ntk is not None and not is_zero_constant(ntk):  # Θ = 0 stays 0
            ntk = ntk.mul_(dd) if ntk.shape == dd.shape else ntk * dd
        return t.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)


# --------------------------------------------------------------------------
# Piecewise linear: ReLU, LeakyReLU, ABReLU, Abs (one formula)
# --------------------------------------------------------------------------


# sin x − x cos x = Σ_{n≥1} (−1)^{n+1} 2n x^{2n+1}/(2n+1)!  (Taylor series; used for x < 1)
_SIN_MINUS_X_COS = tuple((-1) ** (n + 1) * 2 * n / math.factorial(2 * n + 1) for n in range(1, 12))


def _inplace(*ts: Tensor) -> bool:
    """Whether formulas may overwrite their temporaries: not while autograd records ``ts``."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in ts))


def _op(inplace: bool, x: Tensor, name: str, *args: object, **kwargs: object) -> Tensor:
    """``x.name_(*args)`` (in place) or ``x.name(*args)`` (when autograd needs ``x``)."""
    return getattr(x, name + "_" if inplace else name)(*args, **kwargs)


def _sin_minus_x_cos_series_(out: Tensor, x: Tensor) -> Tensor:
    """Overwrite ``out`` with ``g(x) = sin x − x cos x`` where ``x < 1`` (Taylor series).

    ``g`` vanishes like ``x³/3`` at 0, where the direct difference cancels; there
    its Taylor series is used instead (often at few entries: evaluated only there).
    """
    if not x.numel() or not bool(x.amin() < 1):
        return out
    flat = out.is_contiguous() and x.is_contiguous() and out.shape == x.shape
    if flat:  # one nonzero() for both the gather and the scatter
        idx = (x < 1).view(-1).nonzero().squeeze(1)
        xs = x.view(-1).index_select(0, idx)
    else:
        small = x < 1
        xs = x[small]
    x2 = xs * xs
    series = torch.full_like(xs, _SIN_MINUS_X_COS[-1])
    for a in reversed(_SIN_MINUS_X_COS[:-1]):
        series = series * x2 + a
    if flat:
        out.view(-1).index_copy_(0, idx, series * x2 * xs)
    else:
        out[small] = series * x2 * xs
    return out


def _piecewise_linear_from_correlation(a: float, b: float, c: Tensor, ntk: bool) -> Dual:
    """``(J, E[φ'φ'])`` with ``E[φφ] = ρ J/(2π)`` for ``φ(x) = a·x (x<0), b·x (x≥0)``.

    Writing ``φ = b·relu(x) − a·relu(−x)`` and using the degree-1 arc-cosine
    kernel ``E[relu(u) relu(v)] = ρ J_1(θ)/(2π)`` (Cho & Saul 2009, eq. (6)) for
    the four sign combinations (``E[relu(u) relu(−v)]`` is it at correlation
    ``−c``, i.e. angle ``π − θ``), with ``g(x) = sin x − x cos x`` so that
    ``J_1(θ) = g(π − θ)``::

        E[φφ]   = ρ/(2π) [ (a² + b²) g(π − θ) − 2ab g(θ) ]
                = ρ [ (a²+b²)/2 · c + (a−b)²/(2π) · (sin θ − θ c) ]
        E[φ'φ'] = (a² + b²)(π − θ)/(2π) + 2ab θ/(2π)

    (derived here; ``a = b = 1`` gives ``s12`` and ``1``, ``a = 0, b = 1`` the
    ReLU forms of docs/activations.md).  The first form is used: ``g ≥ 0`` is
    evaluated without cancellation, so ReLU keeps full relative accuracy as
    ``c → −1`` (where its kernel vanishes like ``(π − θ)³``).

    ``c`` is the clamped correlation; about ten passes over it, in place
    unless autograd records ``c``.
    """
    ip = _inplace(c)
    p, ab = a * a + b * b, a * b
    # sin θ = √((1 − c)(1 + c)), accurate near |c| = 1
    one_plus_c = c + 1.0
    sin_theta = _op(ip, _op(ip, torch.rsub(c, 1.0), "mul", one_plus_c), "sqrt")
    theta = torch.arccos(c) if ab != 0 else None  # ReLU-like slopes (a·b = 0) skip θ-terms
    # π − θ = arccos(−c), accurate near c = −1 (in place: in the 1 + c buffer)
    alpha = torch.neg(c, out=one_plus_c).acos_() if ip else torch.arccos(-c)
    g_theta = None
    if theta is not None:  # g(θ) = sin θ − θ c
        g_theta = _sin_minus_x_cos_series_(torch.addcmul(sin_theta, theta, c, value=-1.0), theta)
    # g(π − θ) = sin θ + (π − θ) c (written over sin θ)
    nngp = _sin_minus_x_cos_series_(_op(ip, sin_theta, "addcmul", alpha, c), alpha)
    if p != 1.0:
        nngp = _op(ip, nngp, "mul", p)
    if g_theta is not None:
        nngp = _op(ip, nngp, "add", g_theta, alpha=-2.0 * ab)
    dd = None
    if ntk:
        dd = _op(ip, alpha, "mul", p / (2 * math.pi))
        if theta is not None:
            dd = _op(ip, dd, "add", theta, alpha=2.0 * ab / (2 * math.pi))
    return nngp, dd


class _PiecewiseLinear(Elementwise):
    """``φ(x) = a·x`` for ``x < 0`` and ``b·x`` for ``x ≥ 0``; subclasses give ``slopes``."""

    @property
    def slopes(self) -> tuple[float, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fn(self, x: Tensor) -> Tensor:
        a, b = self.slopes
        return torch.where(x > 0, b * x, a * x)

    def derivative(self, x: Tensor) -> Tensor:
        # at x = 0: a, as autograd gives for torch.where(x > 0, b x, a x)
        a, b = self.slopes
        return torch.where(x > 0, torch.full_like(x, b), torch.full_like(x, a))

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        a, b = self.slopes
        j, dd = _piecewise_linear_from_correlation(a, b, c, ntk)
        return _op(_inplace(j, prod), j, "mul", prod / (2 * math.pi)), dd

    def self_dual(self, q: Tensor, *, ntk: bool) -> Dual:
        """``E[φ(u)²] = (a² + b²) q/2``; ``E[φ'²] = (a² + b²)/2`` (``θ = 0``), and at ``q = 0``
        (``c = 0``, ``θ = π/2``) ``(a² + b²)/4 + ab/2``, as :meth:`dual_correlation` gives."""
        a, b = self.slopes
        p = a * a + b * b
        nngp = q * (p / 2)
        if not ntk:
            return nngp, None
        return nngp, torch.where(q > 0, q.new_tensor(p / 2), q.new_tensor(p / 4 + a * b / 2))

    def dual_correlation(self, c, q1, q2, *, ntk=True):
        a, b = self.slopes
        j, dd = _piecewise_linear_from_correlation(a, b, c, ntk)
        ip = _inplace(j, q1, q2)
        return _op(ip, _op(ip, j, "mul", q1.sqrt() / (2 * math.pi)), "mul", q2.sqrt()), dd


@dataclass(frozen=True)
class ReLU(_PiecewiseLinear):
    """``φ(x) = max(x, 0)`` — arc-cosine kernel of degree 1 (Cho & Saul 2009, eq. (6)).

    ``E[φφ] = ρ/(2π) (sin θ + (π − θ) cos θ)``, ``E[φ'φ'] = (π − θ)/(2π)``;
    ``φ'(0) = 0``.
    """

    @property
    def slopes(self) -> tuple[float, float]:
        return 0.0, 1.0

    def fn(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def derivative(self, x: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)


@dataclass(frozen=True)
class LeakyReLU(_PiecewiseLinear):
    """``φ(x) = x`` for x ≥ 0, ``slope·x`` otherwise (= ``ABReLU(slope, 1)``).

    Dual: see :func:`_piecewise_linear_from_correlation`.  ``LeakyReLU(1)`` is the identity.
    """

    slope: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "slope", real_parameter("LeakyReLU", "slope", self.slope))

    @property
    def slopes(self) -> tuple[float, float]:
        return self.slope, 1.0


@dataclass(frozen=True)
class ABReLU(_PiecewiseLinear):
    """``φ(x) = a·x`` for x < 0, ``b·x`` for x ≥ 0.

    ``ABReLU(0, 1)`` is ReLU, ``ABReLU(s, 1)`` LeakyReLU, ``ABReLU(−1, 1)`` Abs.
    Dual (derived from Cho & Saul 2009, eq. (6); as in Novak et al. 2020's
    ``ABRelu``)::

        E[φφ]   = ρ [ (a²+b²)/2 · c + (a−b)²/(2π) · (sin θ − θ c) ]
        E[φ'φ'] = (a²+b²)/2 − (a−b)² θ/(2π)
    """

    a: float = 0.0
    b: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", real_parameter("ABReLU", "a", self.a))
        object.__setattr__(self, "b", real_parameter("ABReLU", "b", self.b))

    @property
    def slopes(self) -> tuple[float, float]:
        return self.a, self.b


@dataclass(frozen=True)
class Abs(_PiecewiseLinear):
    """``φ(x) = |x|`` (= ``ABReLU(−1, 1)``): ``E[φφ] = (2ρ/π)(sin θ + (π/2 − θ) c)``.

    ``E[φ'φ'] = 1 − 2θ/π``; ``φ'(0) = 0`` (``sign``, as autograd of ``abs``).
    """

    @property
    def slopes(self) -> tuple[float, float]:
        return -1.0, 1.0

    def fn(self, x: Tensor) -> Tensor:
        return torch.abs(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sign(x)


# --------------------------------------------------------------------------
# Rectified monomials: arc-cosine kernels of degree k
# --------------------------------------------------------------------------


_GL_BLOCK = 1 << 16  # entries per block of the Gauss–Legendre evaluation of J_k


def _arccos_j_integral(k: int, alpha: Tensor) -> Tensor:
    """``J_k`` from its positive integral form, for ``α = π − θ`` (1-D tensor).

    ``J_k = k! (α/2) ∫_{−1}^{1} [2 sin(α(1+t)/2) sin(α(1−t)/2)]^k dt``: the
    integrand is a non-negative trigonometric polynomial of frequency ≤ kα in
    ``t``, integrated to rounding by Gauss–Legendre with ``24 + k`` nodes
    (checked against 400 nodes for k ≤ 16).  No cancellation, so the relative
    accuracy holds as ``c → −1`` where the sum of :func:`_arccos_j` cancels.
    """
    xs, ws = gauss_legendre(24 + k)
    t = torch.tensor(xs, dtype=alpha.dtype, device=alpha.device)
    w = torch.tensor(ws, dtype=alpha.dtype, device=alpha.device)
    out = torch.empty_like(alpha)
    for start in range(0, alpha.numel(), _GL_BLOCK):
        a = alpha[start : start + _GL_BLOCK, None]
        f = (2 * torch.sin(a * (1 + t) / 2) * torch.sin(a * (1 - t) / 2)).clamp_min(0) ** k
        out[start : start + _GL_BLOCK] = (f @ w) * a[:, 0] / 2
    return float(math.factorial(k)) * out


def _arccos_j(k: int, c: Tensor) -> Tensor:
    """Cho & Saul's ``J_k(θ)``, ``θ = arccos c``, for integer ``k ≥ 0``.

    Derived here from the angular form ``J_k = 2^k k! ∫ cos^k ψ cos^k(ψ − θ) dψ``
    over the arc where both cosines are positive (Cho & Saul 2009, eqs. (3)-(4)):
    with ``cos ψ cos(ψ−θ) = (c + cos(2ψ − θ))/2`` and ``α = π − θ``::

        J_k = k! Σ_j C(k, j) c^{k−j} W_j(α),   W_j(α) = ∫_0^α cos^j t dt,
        W_0 = α, W_1 = sin α, W_j = cos^{j−1}α sin α / j + (j−1)/j · W_{j−2}

    (``cos α = −c``, ``sin α = √(1 − c²)``), so ``J_0 = π − θ``,
    ``J_1 = sin θ + (π − θ) c``, ``J_2 = 3 sin θ c + (π − θ)(1 + 2c²)``.  For
    ``c < 0`` the alternating sum cancels catastrophically (J_k ~ α^{2k+1}), and
    the equivalent positive integral :func:`_arccos_j_integral` is used there.
    """
    alpha = torch.arccos(-c)
    if k == 0:
        return alpha
    sin_a = _one_minus_c2(c).sqrt()
    w = [alpha, sin_a]
    for j in range(2, k + 1):
        w.append((-c) ** (j - 1) * sin_a / j + (j - 1) / j * w[j - 2])
    total = torch.zeros_like(c)
    for j in range(k + 1):
        total = total + float(math.comb(k, j)) * c ** (k - j) * w[j]
    total = float(math.factorial(k)) * total
    neg = c < 0
    if bool(neg.any()):
        total = total.clone()
        total[neg] = _arccos_j_integral(k, alpha[neg])
    return total


@dataclass(frozen=True)
class RectifiedMonomial(Elementwise):
    """``φ(x) = max(x, 0)^k`` — arc-cosine kernel of degree ``k`` (Cho & Saul 2009).

    ``E[φφ] = ρ^k J_k(θ)/(2π)`` (Cho & Saul 2009, eqs. (1)-(4); ``J_k`` in
    :func:`_arccos_j`) and, as ``φ' = k·max(x, 0)^{k−1}``,
    ``E[φ'φ'] = k² ρ^{k−1} J_{k−1}(θ)/(2π)``.  ``k = 1`` is ReLU.  ``k = 0`` is
    the Heaviside step, whose derivative is a delta: as for :class:`Sign`, its
    a.e. derivative 0 is used (``E[φ'φ'] = 0``).
    """

    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _degree("RectifiedMonomial", self.k))

    def fn(self, x: Tensor) -> Tensor:
        if self.k == 0:
            return (x > 0).to(x.dtype)
        return torch.relu(x) ** self.k

    def derivative(self, x: Tensor) -> Tensor:
        if self.k == 0:
            return torch.zeros_like(x)
        if self.k == 1:
            return (x > 0).to(x.dtype)
        return self.k * torch.relu(x) ** (self.k - 1)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        k = self.k
        nngp = prod**k * _arccos_j(k, c) / (2 * math.pi)
        if not ntk:
            return nngp, None
        if k == 0:
            return nngp, torch.zeros_like(nngp)
        return nngp, k * k * prod ** (k - 1) * _arccos_j(k - 1, c) / (2 * math.pi)


# --------------------------------------------------------------------------
# Sigmoid-like: Erf, GELU, Sign
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Erf(Elementwise):
    """``φ(x) = amplitude · erf(input_scale · x) + shift`` (Williams 1997; default ``erf x``).

    For ``erf`` itself (``a = b = 1, c = 0``)::

        E[φφ]   = (2/π) arcsin(2 s / √((1 + 2q1)(1 + 2q2)))
        E[φ'φ'] = (4/π) / √((1 + 2q1)(1 + 2q2) − 4 s²)

    with ``(1+2q1)(1+2q2) − 4s² = 1 + 2q1 + 2q2 + 4ρ²(1 − c²) > 0`` evaluated
    in that form (no cancellation at ``c = ±1`` or large ``q``).  The affine form
    ``a·erf(b·x) + c`` (Neural Tangents' ``Erf(a, b, c)``) follows as ``erf(b·u)`` has
    covariance ``b²·(q1, q2, s)`` and mean 0 (erf is odd)::

        E[φφ]   = a² E[erf(bu) erf(bv)] + c²
        E[φ'φ'] = a² b² E[erf'(bu) erf'(bv)]

    E.g. Neural Tangents' ``Sigmoid_like()`` is ``Erf(0.5, 1/2.4020563531719796, 0.5)``.
    """

    amplitude: float = 1.0
    input_scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("amplitude", "input_scale", "shift"):
            object.__setattr__(self, name, real_parameter("Erf", name, getattr(self, name)))

    def fn(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.erf(self.input_scale * x) + self.shift

    def derivative(self, x: Tensor) -> Tensor:
        b = self.input_scale
        return self.amplitude * b * 2 / math.sqrt(math.pi) * torch.exp(-b * b * x * x)

    def dual(self, q1, q2, s12, *, ntk=True):
        _, c = correlation(q1, q2, s12)
        return self.dual_correlation(c, q1, q2, ntk=ntk)

    def dual_correlation(self, c, q1, q2, *, ntk=True):
        b2, a2 = self.input_scale**2, self.amplitude**2
        if b2 != 1.0:  # erf(b x): variances b² q (the correlation is unchanged)
            q1, q2 = q1 * b2, q2 * b2
        # 2s/√((1+2q1)(1+2q2)) = c · 2√(q1/(1+2q1)) · √(q2/(1+2q2)): vector factors
        ip = _inplace(c, q1, q2)
        v1 = (q1 / (1 + 2 * q1)).sqrt()
        v2 = (q2 / (1 + 2 * q2)).sqrt()
        nngp = _op(ip, _op(ip, c * (2 * v1), "mul", v2), "clamp", -1.0, 1.0)
        nngp = _op(ip, _op(ip, nngp, "arcsin"), "mul", 2 * a2 / math.pi)
        if self.shift != 0.0:
            nngp = _op(ip, nngp, "add", self.shift**2)
        if not ntk:
            return nngp, None
        # det = 1 + 2q1 + 2q2 + 4 q1 q2 (1 − c)(1 + c) > 0, free of cancellation, as
        # k·det = k(1 + 2q2) + q1·(2k + 4k q2 (1 − c)(1 + c)) with k = π²/16, so that
        # E[φ'φ'] = (4/π)/√det = 1/√(k·det): two fused multiply-adds, no final scaling
        k = math.pi**2 / 16
        det = _op(ip, torch.rsub(c, 1.0), "mul", _op(ip, c, "add", 1.0))
        scale = a2 * b2  # E[φ'φ'] of a·erf(b·x) is a²b² × that of erf at variances b²q
        if scale == 0.0:
            return nngp, torch.zeros_like(nngp)
        k = k / scale**2
        det = torch.addcmul(c.new_tensor(2 * k), det, 4 * k * q2, out=det if ip else None)
        det = torch.addcmul(k * (1 + 2 * q2), det, q1, out=det if ip else None)
        return nngp, _op(ip, det, "rsqrt")

    def self_dual(self, q: Tensor, *, ntk: bool) -> Dual:
        """``c = 1``: ``u = 2p/(1+2p)``, ``E[φ²] = (2a²/π) arcsin u + shift²`` and
        ``E[φ'²] = (4a²b²/π)/√(1+4p)`` (``(1+2p)² − 4p² = 1 + 4p``), ``p = b²q``."""
        a2, b2 = self.amplitude**2, self.input_scale**2
        p2 = q * (2 * b2)
        nngp = (p2 / (p2 + 1)).clamp_(max=1.0).asin_().mul_(2 * a2 / math.pi)
        if self.shift != 0.0:
            nngp.add_(self.shift**2)
        if not ntk:
            return nngp, None
        return nngp, (p2 * 2 + 1).rsqrt_().mul_(a2 * b2 * 4 / math.pi)

    def dense_tile_dual(self, s: Tensor, q1: Tensor, q2: Tensor, *, ntk: bool) -> Dual | None:
        """Both duals from ``u = 2b²s/√((1+2p1)(1+2p2))`` (``p = b²q``), formed in two passes.

        With ``w = 1/√(1+2p)`` per example, ``u = s · (2b·w1) · (b·w2)``: one vector per
        side and no ``1/√q`` normalisation (a zero variance has a zero row of ``s``, so
        ``u = 0`` there as ``c = 0`` gives).  Then ``E[φφ] = (2a²/π) arcsin u + shift²`` and,
        since ``(1+2p1)(1+2p2) − 4b⁴s² = (1 − u)(1 + u)/(w1² w2²)``,
        ``E[φ'φ'] = (4a²b²/π) · w1 w2 / √((1 − u)(1 + u))``.  ``1 − u`` carries an absolute
        rounding error of a few ulps, as ``1 − c`` does in :meth:`dual_correlation`, so
        its relative error ``~ p·ε`` is the same there; on self-pairs the caller writes
        the exact values at ``c = 1``.  Nine passes over the tile and one arcsine,
        against fourteen for the correlation route.
        """
        b, b2, a2 = abs(self.input_scale), self.input_scale**2, self.amplitude**2
        w1 = (q1 * (2 * b2) + 1).rsqrt()
        w2 = (q2 * (2 * b2) + 1).rsqrt()
        u = s.mul_((w1 * (2 * b))[:, None]).mul_(w2 * b).clamp_(-1.0, 1.0)
        dd = None
        if ntk:
            dd = torch.rsub(u, 1.0)
            dd.addcmul_(dd, u).rsqrt_()  # (1 − u)(1 + u) = (1 − u) + (1 − u)·u
            dd.mul_((w1 * (a2 * b2 * 4 / math.pi))[:, None]).mul_(w2)
        nngp = u.asin_().mul_(2 * a2 / math.pi)
        if self.shift != 0.0:
            nngp.add_(self.shift**2)
        return nngp, dd


@dataclass(frozen=True)
class GELU(Elementwise):
    """Exact GELU ``φ(x) = x Φ(x)`` (Φ the standard normal CDF; not the tanh approximation).

    Derived here with Gaussian integration by parts (Stein's lemma) from
    ``E[Φ(u)Φ(v)] = 1/4 + arcsin(r)/(2π)``, ``r = s/√P``, ``P = (1+q1)(1+q2)``,
    and ``E[ϕ(u)ϕ(v)] = 1/(2π√D)``, ``D = P − s² = 1 + q1 + q2 + ρ²(1 − c²)``;
    it agrees with the form in Novak et al. 2020 (Neural Tangents, ``Gelu``)
    and Tsuchida et al. 2021::

        E[φφ]   = s (1/4 + arcsin(r)/(2π)) + (q1 q2 D + s²) / (2π P √D)
        E[φ'φ'] = 1/4 + arcsin(r)/(2π) + s (2 + q1 + q2)/(2π P √D) + s/(2π D^{3/2})
    """

    def fn(self, x: Tensor) -> Tensor:
        return nn.functional.gelu(x)

    def derivative(self, x: Tensor) -> Tensor:
        cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
        return cdf + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        s = prod * c
        p = (1 + q1) * (1 + q2)
        root_p = p.sqrt()
        d = 1 + q1 + q2 + prod * prod * _one_minus_c2(c)
        # 1/4 + arcsin(r)/(2π) = arccos(−r)/(2π) = arcsin(√((1 + r)/2))/π, with
        # √P (1 + r) = √P + s = D/(√P − s) free of cancellation for either sign of s
        one_plus_r = torch.where(s >= 0, root_p + s, d / (root_p - s)) / root_p
        both_pos = torch.arcsin((one_plus_r / 2).clamp(0, 1).sqrt()) / math.pi
        nngp = s * both_pos + (q1 * q2 * d + s * s) / (2 * math.pi * p * d.sqrt())
        if not ntk:
            return nngp, None
        dd = both_pos + s * (2 + q1 + q2) / (2 * math.pi * p * d.sqrt())
        dd = dd + s / (2 * math.pi * d * d.sqrt())
        return nngp, dd


@dataclass(frozen=True)
class Sign(Elementwise):
    """``φ(x) = sign(x)``: ``E[φφ] = (2/π) arcsin c = 1 − 2θ/π`` (e.g. Cho & Saul 2009, J_0).

    NTK convention: ``φ'`` is ``2δ(x)``, and ``E[2δ(u) 2δ(v)] =
    2/(π√(q1q2 − s²))`` is infinite at ``c = ±1``; no gradient flows through a
    finite sign network either (autograd gives ``sign' = 0``).  This library
    uses the a.e. derivative ``φ' = 0``, so ``E[φ'φ'] = 0``: layers below a Sign
    contribute nothing to the NTK, matching the empirical NTK of finite nets.
    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.sign(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def dual(self, q1, q2, s12, *, ntk=True):
        _, c = correlation(q1, q2, s12)
        nngp = 2 / math.pi * torch.arcsin(c)
        return nngp, (torch.zeros_like(nngp) if ntk else None)


# --------------------------------------------------------------------------
# Sinusoids: Sin, Cos, RBF (one formula)
# --------------------------------------------------------------------------


def _sinusoid_dual(
    amplitude: float, omega: float, kappa: float, q1: Tensor, q2: Tensor, s12: Tensor, ntk: bool
) -> Dual:
    """Dual of ``φ(x) = A sin(ωx + p)`` with ``κ = cos 2p``.

    From ``sin x sin y = (cos(x−y) − cos(x+y))/2`` and ``E cos(X + t) =
    cos t · e^{−Var X/2}`` (Gaussian characteristic function), with
    ``d∓ = q1 + q2 ∓ 2s``::

        E[φφ]   = A²/2     (e^{−ω² d₋/2} − κ e^{−ω² d₊/2})
        E[φ'φ'] = A²ω²/2   (e^{−ω² d₋/2} + κ e^{−ω² d₊/2})      (φ' has κ → −κ)

    (for ``κ = 1``: ``A² e^{−ω²(q1+q2)/2} sinh(ω² s)``, Williams 1997's form).
    Evaluated as ``e^{−ω² min(d∓)/2}`` times a bracket using ``expm1``, with
    ``d∓ = (√q1 − √q2)² + 2ρ(1 ∓ c)``, so there is no overflow or cancellation.
    """
    prod, c = correlation(q1, q2, s12)
    w2 = omega * omega
    gap = (q1.clamp_min(0).sqrt() - q2.clamp_min(0).sqrt()) ** 2
    pos = c >= 0
    # d_min = min(d₋, d₊) and em = e^{−x} − 1 with x = ω²|d₊ − d₋|/2 = 2ω²ρ|c|, each
    # branch written without |c| so that autograd is exact at c = 0 as well
    d_min = torch.where(pos, gap + 2 * prod * (1 - c), gap + 2 * prod * (1 + c))
    big = torch.exp(-w2 * d_min / 2)
    em = torch.where(
        pos,
        torch.expm1(-2 * w2 * prod * c.clamp_min(0)),
        torch.expm1(2 * w2 * prod * c.clamp_max(0)),
    )

    def bracket(k: float) -> Tensor:  # e^{ω² d_min/2} (e^{−ω² d₋/2} − k e^{−ω² d₊/2})
        return torch.where(pos, (1 - k) - k * em, (1 - k) + em)

    nngp = amplitude**2 / 2 * big * bracket(kappa)
    dd = amplitude**2 * w2 / 2 * big * bracket(-kappa) if ntk else None
    return nngp, dd


@dataclass(frozen=True)
class Sin(Elementwise):
    """``φ(x) = amplitude · sin(frequency · x + phase)``.

    ``E[φφ] = A²/2 (e^{−ω²(q1+q2−2s)/2} − cos(2p) e^{−ω²(q1+q2+2s)/2})`` and
    ``E[φ'φ'] = A²ω²/2 (… + cos(2p) …)`` (Williams 1997 for ``p = 0``; see
    :func:`_sinusoid_dual`).  Default: plain ``sin x``, whose dual is
    ``e^{−(q1+q2)/2} sinh(s)`` and derivative dual ``e^{−(q1+q2)/2} cosh(s)``.
    """

    amplitude: float = 1.0
    frequency: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        for name in ("amplitude", "frequency", "phase"):
            value = real_parameter(type(self).__name__, name, getattr(self, name))
            object.__setattr__(self, name, value)

    @property
    def _kappa(self) -> float:
        return math.cos(2 * self.phase)

    def fn(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.sin(self.frequency * x + self.phase)

    def derivative(self, x: Tensor) -> Tensor:
        return self.amplitude * self.frequency * torch.cos(self.frequency * x + self.phase)

    def dual(self, q1, q2, s12, *, ntk=True):
        return _sinusoid_dual(self.amplitude, self.frequency, self._kappa, q1, q2, s12, ntk)


@dataclass(frozen=True)
class Cos(Sin):
    """``φ(x) = amplitude · cos(frequency · x + phase)`` (= Sin with phase + π/2).

    Default ``cos x``: ``E[φφ] = e^{−(q1+q2)/2} cosh(s)``,
    ``E[φ'φ'] = e^{−(q1+q2)/2} sinh(s)`` (see :func:`_sinusoid_dual`, κ = −cos 2p).
    """

    @property
    def _kappa(self) -> float:
        return -math.cos(2 * self.phase)

    def fn(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.cos(self.frequency * x + self.phase)

    def derivative(self, x: Tensor) -> Tensor:
        return -self.amplitude * self.frequency * torch.sin(self.frequency * x + self.phase)


@dataclass(frozen=True)
class RBF(Elementwise):
    """Random-Fourier-feature activation ``φ(x) = √2 sin(√(2γ) x + π/4)``.

    Its dual is the RBF kernel of the pre-activations (Rahimi & Recht 2007;
    the ``Rbf`` of Novak et al. 2020)::

        E[φφ]   = exp(−γ (q1 + q2 − 2 s)) = exp(−γ E[(u − v)²])
        E[φ'φ'] = 2γ exp(−γ (q1 + q2 − 2 s))

    (:func:`_sinusoid_dual` with A = √2, ω = √(2γ), κ = cos(π/2) = 0).  For the
    activation ``exp(−γ x²)`` itself use :class:`Gaussian`.
    """

    gamma: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", real_parameter("RBF", "gamma", self.gamma, minimum=0.0))

    def fn(self, x: Tensor) -> Tensor:
        return math.sqrt(2) * torch.sin(math.sqrt(2 * self.gamma) * x + math.pi / 4)

    def derivative(self, x: Tensor) -> Tensor:
        w = math.sqrt(2 * self.gamma)
        return math.sqrt(2) * w * torch.cos(w * x + math.pi / 4)

    def dual(self, q1, q2, s12, *, ntk=True):
        return _sinusoid_dual(math.sqrt(2), math.sqrt(2 * self.gamma), 0.0, q1, q2, s12, ntk)


# --------------------------------------------------------------------------
# Gaussian bump and exponential
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Gaussian(Elementwise):
    """Gaussian bump ``φ(x) = amplitude · exp(−γ x²)`` (γ ≥ 0; default ``exp(−x²)``).

    With ``C`` the covariance of (u, v), ``E[e^{−γ(u²+v²)}] = det(I + 2γC)^{−1/2}``
    and ``E[u v e^{−γ(u²+v²)}] = s det(I + 2γC)^{−3/2}`` (Gaussian integrals;
    derived here; cf. Williams 1997 §3 for the Gaussian-bump network)::

        D       = (1 + 2γq1)(1 + 2γq2) − 4γ²s² = 1 + 2γ(q1 + q2) + 4γ²ρ²(1 − c²)
        E[φφ]   = A² D^{−1/2}
        E[φ'φ'] = A² 4γ² s D^{−3/2}          (φ' = −2γA x e^{−γx²})

    Neural Tangents' ``Gaussian(a, b)`` (``a·exp(b x²)``) is ``Gaussian(gamma=−b,
    amplitude=a)`` for ``b ≤ 0``; a growing ``exp(+|b| x²)`` has infinite moments once
    ``q ≥ 1/(4|b|)`` and is not offered.
    """

    gamma: float = 1.0
    amplitude: float = 1.0

    def __post_init__(self) -> None:
        g = real_parameter("Gaussian", "gamma", self.gamma, minimum=0.0)
        object.__setattr__(self, "gamma", g)
        a = real_parameter("Gaussian", "amplitude", self.amplitude)
        object.__setattr__(self, "amplitude", a)

    def fn(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.exp(-self.gamma * x * x)

    def derivative(self, x: Tensor) -> Tensor:
        return -2 * self.gamma * self.amplitude * x * torch.exp(-self.gamma * x * x)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        g, a2 = self.gamma, self.amplitude**2
        d = 1 + 2 * g * (q1 + q2) + 4 * g * g * prod * prod * _one_minus_c2(c)
        root = d.rsqrt()
        dd = 4 * g * g * a2 * prod * c * root / d if ntk else None
        return a2 * root, dd


@dataclass(frozen=True)
class Exp(Elementwise):
    """``φ(x) = amplitude · exp(input_scale · x)`` (log-normal moments; default ``exp x``)::

        E[φφ] = A² exp(b² (q1 + q2 + 2s)/2),    E[φ'φ'] = b² E[φφ]

    (Neural Tangents' ``Exp(a, b)``).  Overflows to ``inf`` (never NaN) once the
    exponent exceeds ~709 (float64) or ~88 (float32): the true value is not representable.
    """

    amplitude: float = 1.0
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("amplitude", "input_scale"):
            object.__setattr__(self, name, real_parameter("Exp", name, getattr(self, name)))

    def fn(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.exp(self.input_scale * x)

    def derivative(self, x: Tensor) -> Tensor:
        b = self.input_scale
        return self.amplitude * b * torch.exp(b * x)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        b2, a = self.input_scale**2, self.amplitude
        exponent = b2 * (q1 + q2 + 2 * prod * c) / 2
        if a == 0.0:
            nngp = torch.zeros_like(exponent)
        else:  # A² folded into the exponent: A² e^x is finite wherever it is representable
            nngp = torch.exp(exponent + 2 * math.log(abs(a)))
        return nngp, (nngp * b2 if ntk else None)


# --------------------------------------------------------------------------
# Polynomials: Monomial, Hermite (one Isserlis/Hermite sum)
# --------------------------------------------------------------------------


@cache
def _isserlis_coefficients(k: int) -> tuple[float, ...]:
    """``b_m = k! / (m!² (k−2m)! 4^m)`` for ``m = 0..⌊k/2⌋`` (exact rationals → float)."""
    f = math.factorial
    return tuple(float(Fraction(f(k), f(m) ** 2 * f(k - 2 * m) * 4**m)) for m in range(k // 2 + 1))


def _isserlis_sum(k: int, s: Tensor, p: Tensor) -> Tensor:
    """``S_k(s, p) = Σ_m b_m s^{k−2m} p^m`` (see :func:`_isserlis_coefficients`).

    Derived here from the Hermite scaling theorem ``He_k(γx) = Σ_m γ^{k−2m}
    (γ² − 1)^m k!/(m!(k−2m)! 2^m) He_{k−2m}(x)`` and
    ``E[He_i(z1) He_j(z2)] = δ_ij i! c^i`` (Mehler; O'Donnell 2014 §11.2)::

        E[He_k(u) He_k(v)] / k! = S_k(s, (q1 − 1)(q2 − 1))
        E[u^k v^k]              = k! S_k(s, q1 q2)       (Isserlis' theorem)

    Summed in float64 (then cast back) so that float32 inputs overflow to inf
    rather than produce ``0·inf``.
    """
    s64, p64 = s.double(), p.double()
    total = torch.zeros(broadcast_shapes(s.shape, p.shape), dtype=torch.float64, device=s.device)
    for m, b in enumerate(_isserlis_coefficients(k)):
        total = total + b * s64 ** (k - 2 * m) * p64**m
    return total.to(torch.promote_types(s.dtype, p.dtype))


@dataclass(frozen=True)
class Monomial(Elementwise):
    """``φ(x) = x^k`` (integer ``0 ≤ k ≤ 32``).

    ``E[u^k v^k] = k! Σ_m k!/(m!²(k−2m)! 4^m) s^{k−2m} (q1q2)^m`` (Isserlis'
    theorem via the Hermite expansion, see :func:`_isserlis_sum`; the form of
    Han et al. 2022's ``Monomial``); ``E[φ'φ'] = k² E[u^{k−1} v^{k−1}]``.
    Every term has the sign of ``c^k``: no cancellation.  ``Monomial(1)`` is
    linear (dual ``s12``), ``Monomial(0)`` the constant 1.
    """

    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _degree("Monomial", self.k))

    def fn(self, x: Tensor) -> Tensor:
        return x**self.k

    def derivative(self, x: Tensor) -> Tensor:
        return self.k * x ** (self.k - 1) if self.k > 0 else torch.zeros_like(x)

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        s, p, k = prod * c, prod * prod, self.k
        nngp = float(math.factorial(k)) * _isserlis_sum(k, s, p)
        if not ntk:
            return nngp, None
        if k == 0:
            return nngp, torch.zeros_like(nngp)
        return nngp, k * k * float(math.factorial(k - 1)) * _isserlis_sum(k - 1, s, p)


def _hermite(k: int, x: Tensor) -> Tensor:
    """Probabilists' Hermite polynomial ``He_k(x)`` by ``He_{n+1} = x He_n − n He_{n−1}``."""
    prev, cur = torch.ones_like(x), x
    if k == 0:
        return prev
    for n in range(1, k):
        prev, cur = cur, x * cur - n * prev
    return cur


@dataclass(frozen=True)
class Hermite(Elementwise):
    """Normalised Hermite feature ``φ(x) = He_k(x)/√k!`` (probabilists' He_k, ``0 ≤ k ≤ 32``).

    At unit variances the dual is ``c^k`` (Mehler 1866; O'Donnell 2014, §11.2),
    the building block of dual-kernel expansions (Daniely et al. 2016; Han et
    al. 2022).  Convention for general variances: the *exact* expectation
    (no renormalisation), see :func:`_isserlis_sum`::

        E[φφ]   = Σ_m k!/(m!²(k−2m)! 4^m) s^{k−2m} ((q1 − 1)(q2 − 1))^m
        E[φ'φ'] = k · (the same sum at degree k − 1)       (He_k' = k He_{k−1})

    so at ``q1 = q2 = 1`` it is ``s^k`` and ``k s^{k−1}``.
    """

    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _degree("Hermite", self.k))

    def fn(self, x: Tensor) -> Tensor:
        return _hermite(self.k, x) / math.sqrt(math.factorial(self.k))

    def derivative(self, x: Tensor) -> Tensor:
        if self.k == 0:
            return torch.zeros_like(x)
        return self.k * _hermite(self.k - 1, x) / math.sqrt(math.factorial(self.k))

    def dual(self, q1, q2, s12, *, ntk=True):
        prod, c = correlation(q1, q2, s12)
        s, p, k = prod * c, (q1 - 1) * (q2 - 1), self.k
        nngp = _isserlis_sum(k, s, p)
        if not ntk:
            return nngp, None
        if k == 0:
            return nngp, torch.zeros_like(nngp)
        return nngp, k * _isserlis_sum(k - 1, s, p)


# --------------------------------------------------------------------------
# Numerical: arbitrary callables
# --------------------------------------------------------------------------


class NumericalActivation(Elementwise):
    """Activation whose dual is computed by Gaussian quadrature (:mod:`widelimit._quadrature`)."""

    def dual(self, q1, q2, s12, *, ntk=True):
        if not _inplace(q1, q2, s12):  # autograd records: exact gradients (dual_gradients)
            return dual_with_grad(self.fn, self.derivative, q1, q2, s12, ntk=ntk)
        return gaussian_dual(self.fn, self.derivative, q1, q2, s12, ntk=ntk)


#: Points ``(q1, q2)`` × ``c`` where a user's ``dual_fn`` is checked against quadrature.
_CHECK_VARIANCES = ((1.0, 1.0), (0.5, 0.5), (0.3, 2.0), (2.5, 1.2))
_CHECK_CORRELATIONS = (-1.0, -0.6, 0.0, 0.4, 0.9, 1.0)


@dataclass(frozen=True)
class Activation(NumericalActivation):
    """Any elementwise torch callable, e.g. ``Activation(torch.tanh)``, optionally with
    its own closed-form dual (Neural Tangents' ``Elementwise(fn, nngp_fn, d_nngp_fn)``).

    Without ``dual_fn`` the dual is computed by quadrature (:mod:`widelimit._quadrature`,
    ≤ 1e-10 relative; ``fn`` may be non-smooth only at 0).  With it, the kernel uses
    the user's formula::

        dual_fn(q1, q2, s12)            -> E[φ(u) φ(v)]
        derivative_dual_fn(q1, q2, s12) -> E[φ'(u) φ'(v)]

    with ``(u, v) ~ N(0, [[q1, s12], [s12, q2]])``; ``q1, q2 ≥ 0`` and ``s12`` are
    tensors that broadcast together (any shape, float32/float64) and ``s12`` is
    already clamped to ``|s12| ≤ √(q1 q2)``; the result must broadcast to their
    shape (it is cast to their dtype).  Write them with torch operations.  Without
    ``derivative_dual_fn`` the NTK factor is ``∂ dual_fn / ∂ s12`` by autograd
    (Price's theorem, ``∂E[φ(u)φ(v)]/∂s12 = E[φ'(u)φ'(v)]``), as Neural Tangents does.

    At construction the formulas are compared with quadrature at ``(q1, q2) ∈
    {(1, 1), (.5, .5), (.3, 2), (2.5, 1.2)}`` and ``c ∈ {−1, −.6, 0, .4, .9, 1}``
    (float64): if ``|formula − quadrature| > check_rtol · √(E[φ(u)²] E[φ(v)²])``
    (the Cauchy–Schwarz bound of the value) anywhere, or the formula gives NaN,
    a ``ValueError`` names the worst point and both values.

    Args:
        function: elementwise ``Tensor -> Tensor``.
        derivative_fn: its derivative; ``None`` derives it with autograd.
        name: label used in reprs and reports.
        dual_fn: closed form of ``E[φ(u)φ(v)]`` (see above); ``None``: quadrature.
        derivative_dual_fn: closed form of ``E[φ'(u)φ'(v)]``; needs ``dual_fn``.
        check_rtol: tolerance of the construction-time check (default 1e-6;
            ``None`` skips it, e.g. for a ``function`` with a kink away from 0,
            which the quadrature does not resolve).
    """

    function: Fn
    derivative_fn: Fn | None = None
    name: str = ""
    dual_fn: DualFn | None = None
    derivative_dual_fn: DualFn | None = None
    check_rtol: float | None = 1e-6
    _d: Fn = field(init=False, repr=False, compare=False)
    _ntk_problem: str | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError(f"`function` must be callable; got {type(self.function).__name__}")
        for arg in ("derivative_fn", "dual_fn", "derivative_dual_fn"):
            value = getattr(self, arg)
            if value is not None and not callable(value):
                raise TypeError(f"`{arg}` must be callable or None; got {type(value).__name__}")
        if self.derivative_dual_fn is not None and self.dual_fn is None:
            raise ValueError(
                "`derivative_dual_fn` needs `dual_fn` (the closed form of E[φ(u)φ(v)]); "
                "pass both, or neither to use quadrature"
            )
        if self.check_rtol is not None:
            rtol = real_parameter("Activation", "check_rtol", self.check_rtol)
            if not 0 < rtol < 1:
                raise ValueError(f"Activation: `check_rtol` must be in (0, 1); got {rtol!r}")
            object.__setattr__(self, "check_rtol", rtol)
        d = self.derivative_fn or autograd_derivative(self.function)
        object.__setattr__(self, "_d", d)
        if not self.name:
            object.__setattr__(self, "name", getattr(self.function, "__name__", "activation"))
        self._check_function()
        if self.dual_fn is not None and self.check_rtol is not None:
            self._check_dual()

    def _check_function(self) -> None:
        """Refuse what the quadrature cannot integrate (:mod:`~widelimit.layers.
        activation_checks`): non-elementwise functions always; infinite second moments
        of φ and non-smooth points away from 0 when the quadrature is used (no
        ``dual_fn``, or the check of ``dual_fn`` against it).  An infinite ``E[φ'²]``
        only stops the NTK (recorded, raised by :meth:`dual` with ``ntk=True``)."""
        label = f"Activation {self.name!r}"
        check_elementwise(self.function, "function", label)
        if self.derivative_fn is not None:
            check_elementwise(self.derivative_fn, "derivative_fn", label)
        if self.dual_fn is not None and self.check_rtol is None:
            return  # the user's formulas replace the quadrature everywhere
        skip = (
            "; or, if you know the closed form, pass dual_fn=... (and derivative_dual_fn=...) "
            "with check_rtol=None"
        )
        for what, f, kind in (("φ", self.function, "jumps"), ("φ'", self._d, "has a kink")):
            at = find_jump(f)
            if at is not None:
                raise ValueError(
                    f"{label}: the function {kind} near x = {at:.6g} ({what} is discontinuous "
                    "there); the quadrature resolves a non-smooth point only at x = 0 and would "
                    f"be off by up to several percent. Shift it to 0 (e.g. fold the offset into "
                    f"the previous layer's bias){skip}"
                )
        problem = moment_problem(self.function, "φ")
        if problem is not None:
            raise ValueError(
                f"{label}: {problem}, so its kernel is infinite. Use a function with finite "
                f"Gaussian second moments (no non-integrable singularity, growth slower than "
                f"exp(x²/(4q)))"
            )
        problem = moment_problem(self._d, "φ'")
        if problem is not None:
            object.__setattr__(
                self,
                "_ntk_problem",
                f"{label}: {problem}, so the NTK factor E[φ'(u)φ'(v)] is infinite: this "
                "activation has an NNGP but no NTK (ask for get='nngp' only)",
            )

    def fn(self, x: Tensor) -> Tensor:
        return self.function(x)

    def derivative(self, x: Tensor) -> Tensor:
        return self._d(x)

    def dual(self, q1, q2, s12, *, ntk=True):
        if ntk and self._ntk_problem is not None and self.derivative_dual_fn is None:
            raise ValueError(self._ntk_problem)
        if self.dual_fn is None:
            return super().dual(q1, q2, s12, ntk=ntk)
        prod, c = correlation(q1, q2, s12)
        s = prod * c  # |s| ≤ √(q1 q2): user formulas (arcsin, √(q1q2 − s²)) stay real
        nngp = _user_dual(self.dual_fn, "dual_fn", q1, q2, s)
        if not ntk:
            return nngp, None
        if self.derivative_dual_fn is not None:
            return nngp, _user_dual(self.derivative_dual_fn, "derivative_dual_fn", q1, q2, s)
        return nngp, _price_derivative(self.dual_fn, q1, q2, s)

    def _check_dual(self) -> None:
        """Compare ``dual_fn`` (and the NTK factor) with quadrature; see the class docstring."""
        pts = [(a, b, c) for a, b in _CHECK_VARIANCES for c in _CHECK_CORRELATIONS]
        q1, q2, c = (torch.tensor(col, dtype=torch.float64) for col in zip(*pts, strict=True))
        s12 = c * (q1 * q2).sqrt()
        ntk = self._ntk_problem is None  # else E[φ'φ'] is infinite: nothing to compare
        ref_n, ref_d = gaussian_dual(self.function, self._d, q1, q2, s12, ntk=ntk)
        self_n1, self_d1 = gaussian_dual(self.function, self._d, q1, q1, q1, ntk=ntk)
        self_n2, self_d2 = gaussian_dual(self.function, self._d, q2, q2, q2, ntk=ntk)
        with torch.no_grad():
            got_n, got_d = self.dual(q1, q2, s12, ntk=ntk)
        dd_label = (
            "`derivative_dual_fn`"
            if self.derivative_dual_fn is not None
            else "∂ `dual_fn` / ∂ s12 (autograd; pass `derivative_dual_fn` for a closed form)"
        )
        checks = [("`dual_fn`", "E[φ(u)φ(v)]", got_n, ref_n, (self_n1 * self_n2).sqrt())]
        if ntk:
            checks.append((dd_label, "E[φ'(u)φ'(v)]", got_d, ref_d, (self_d1 * self_d2).sqrt()))
        for label, what, got, ref, scale in checks:
            err = ((got - ref).abs() / scale.clamp_min(1e-300)).nan_to_num(nan=math.inf)
            i = int(err.argmax())
            if float(err[i]) > self.check_rtol:
                a, b, cc = pts[i]
                raise ValueError(
                    f"Activation {self.name!r}: {label} disagrees with quadrature for "
                    f"{what} at q1={a}, q2={b}, c={cc} (s12={float(s12[i])!r}): formula gives "
                    f"{float(got[i])!r}, quadrature {float(ref[i])!r}; error "
                    f"{float(err[i]):.3g} of √(E[φ(u)²]E[φ(v)²]) = {float(scale[i]):.6g} > "
                    f"check_rtol={self.check_rtol}. Check the formula and the argument order "
                    "(q1, q2, s12), or pass check_rtol=None to skip this check"
                )


def _user_dual(f: DualFn, label: str, q1: Tensor, q2: Tensor, s: Tensor) -> Tensor:
    """``f(q1, q2, s)`` broadcast to the shape of ``s`` and cast to its dtype, or a clear error."""
    try:
        out = f(q1, q2, s)
    except Exception as err:
        raise TypeError(
            f"`{label}` failed on tensors (q1, q2, s12) of shapes {tuple(q1.shape)}, "
            f"{tuple(q2.shape)}, {tuple(s.shape)}: {type(err).__name__}: {err}. It must take "
            "three broadcastable tensors and use torch operations"
        ) from err
    if not isinstance(out, Tensor):
        raise TypeError(f"`{label}` must return a torch.Tensor; got {type(out).__name__}")
    try:
        return out.to(s.dtype).expand(s.shape)
    except RuntimeError as err:
        raise ValueError(
            f"`{label}` returned shape {tuple(out.shape)}, which does not broadcast to the "
            f"shape {tuple(s.shape)} of its inputs"
        ) from err


def _price_derivative(f: DualFn, q1: Tensor, q2: Tensor, s: Tensor) -> Tensor:
    """``∂ f(q1, q2, s) / ∂ s`` by autograd (Price 1958: ``= E[φ'(u)φ'(v)]``).

    Differentiable itself when the inputs record a graph (kernels differentiated with
    respect to the data).
    """
    graph = torch.is_grad_enabled() and (q1.requires_grad or q2.requires_grad or s.requires_grad)
    with torch.enable_grad():
        ss = s if s.requires_grad else s.detach().requires_grad_(True)
        out = _user_dual(f, "dual_fn", q1, q2, ss)
        if not out.requires_grad:  # constant in s12
            return torch.zeros_like(out)
        (g,) = torch.autograd.grad(
            out, ss, torch.ones_like(out), create_graph=graph, allow_unused=True
        )
    if g is None:
        return torch.zeros_like(out)
    return g if graph else g.detach()


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


# --------------------------------------------------------------------------
# Registry (CLI, net descriptions)
# --------------------------------------------------------------------------

#: Lowercase name -> constructor (keyword parameters as in the class).
ACTIVATIONS: dict[str, Callable[..., Elementwise]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "abrelu": ABReLU,
    "abs": Abs,
    "erf": Erf,
    "gelu": GELU,
    "sin": Sin,
    "cos": Cos,
    "sign": Sign,
    "rbf": RBF,
    "gaussian": Gaussian,
    "exp": Exp,
    "monomial": Monomial,
    "rectified_monomial": RectifiedMonomial,
    "hermite": Hermite,
    "tanh": Tanh,
    "softplus": Softplus,
    "silu": SiLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def activation_from_name(name: str, **params: object) -> Elementwise:
    """Build a registered activation, e.g. ``activation_from_name("leaky_relu", slope=0.1)``.

    ``name`` is matched case-insensitively, ignoring ``_`` and ``-`` (so
    ``"LeakyReLU"``, ``"leaky-relu"`` and ``"leaky_relu"`` agree).  Raises
    ``ValueError`` for an unknown name (listing the known ones) and
    ``TypeError`` for parameters the activation does not take.
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string; got {type(name).__name__}")
    by_key = {_key(n): n for n in ACTIVATIONS}
    canonical = by_key.get(_key(name))
    if canonical is None:
        from widelimit.spec_text import closest

        best = closest(name, ACTIVATIONS)
        tip = f"did you mean {best!r}? " if best else ""
        raise ValueError(
            f"unknown activation {name!r}; {tip}known activations: {', '.join(sorted(ACTIVATIONS))}"
        )
    ctor = ACTIVATIONS[canonical]
    try:
        return ctor(**params)
    except TypeError as err:
        if "unexpected keyword" in str(err) or "positional argument" in str(err):
            raise TypeError(f"bad parameters for activation {canonical!r}: {err}") from err
        raise


__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "RBF",
    "ABReLU",
    "Abs",
    "Activation",
    "Cos",
    "Elementwise",
    "ElementwiseModule",
    "Erf",
    "Exp",
    "Gaussian",
    "Hermite",
    "LeakyReLU",
    "Monomial",
    "NumericalActivation",
    "ReLU",
    "RectifiedMonomial",
    "SiLU",
    "Sigmoid",
    "Sign",
    "Sin",
    "Softplus",
    "Tanh",
    "activation_from_name",
    "correlation",
]
