"""Gaussian expectations the 1/n recursions need, for any activation φ.

With ``u ~ N(0, K)`` (``K`` the infinite-width metric of a layer, ``N`` inputs):

* the four-point expectations ``E4[α,β,γ,δ] = E[φ(u_α) φ(u_β) φ(u_γ) φ(u_δ)]``
  (:func:`four_point_expectations`), a fully symmetric ``(N, N, N, N)`` tensor;
* the linearisation of the two-point map ``F(G)_αβ = E_G[φ(u_α) φ(u_β)]`` around ``K``
  (:func:`linearisation`): for ``α ≠ β`` ``F_αβ`` depends on ``G`` only through
  ``(G_αα, G_ββ, G_αβ)``, so ``δF_αβ = A_αβ δG_αα + A_βα δG_ββ + C_αβ δG_αβ``, and
  ``δF_αα = D_α δG_αα``.

Where each number comes from:

* ``C_αβ = ∂F/∂G_αβ = E[φ'(u_α) φ'(u_β)]`` (Price's theorem) is the NTK factor of the
  activation's own ``dual`` (closed forms where widelimit has them, quadrature otherwise).
* ``A_αβ = ∂F/∂G_αα = ½ E[φ''(u_α) φ(u_β)]``; Gaussian integration by parts along the
  Cholesky coordinate of ``u_α`` turns it into first derivatives only::

      A_αβ = (E[u_α φ'(u_α) φ(u_β)] − K_αβ C_αβ) / (2 K_αα),
      D_α  = d E[φ(u)²]/dq = E[u φ(u) φ'(u)] / q      (q = K_αα)

  For the piecewise-linear family (``ReLU``, ``LeakyReLU``, ``ABReLU``, ``Abs``: any layer with
  ``slopes``) ``u φ'(u) = φ(u)``, so ``A_αβ = (F_αβ − K_αβ C_αβ)/(2 K_αα)`` and
  ``D_α = (a² + b²)/2`` come from the closed-form dual.  Otherwise ``E[u φ'(u) φ(v)]`` is a
  two-dimensional product-rule sum (:data:`PAIR_ORDER` nodes per axis).
* ``E4``: the tensor is fully symmetric, so only the ``C(N+3, 4)`` sorted quadruples
  ``α ≤ β ≤ γ ≤ δ`` are evaluated (3,876 for ``N = 16``); each involves ``k`` distinct
  inputs (``k = 1..4``: for ``N = 16`` there are 16, 360, 1,680 and 1,820 of them) and is a
  ``k``-dimensional Gaussian integral:

  - piecewise-linear φ, ``k ≤ 2``: exact reduction by homogeneity (the integrand
    ``Π φ(u_a)^{p_a}`` has degree 4, so ``E = E[r⁴]·(mean over the circle)``), Gauss–Legendre
    on the arcs between the kinks: machine precision;
  - otherwise, for ``N ≤`` :data:`PRODUCT_MAX_INPUTS`: a product rule in the eigenbasis of the
    ``k × k`` sub-covariance (:data:`SMOOTH_ORDERS` / :data:`KINKED_ORDERS` nodes per axis):
    trapezoidal for smooth φ (tanh, erf, SiLU have poles near the real axis, where the
    trapezoidal rule keeps converging geometrically and Gauss–Hermite stalls), for
    ``k = 3, 4`` with nodes per eigen-axis scaled by that axis' loadings (:func:`axis_orders`;
    tanh ≤ 1e-6 for ``E4``, ≤ 2e-6 for ``P``, ``Q`` at ``q = 1, 4, 9``; 2e-5 where the
    point cap is hit, with a warning; docs/finite_width.md),
    Gauss–Hermite for the kinked piecewise-linear family (algebraic convergence, ≈ 1e-3
    relative for ``k = 3, 4``);
  - ``k ≥ 3`` with more inputs: one scrambled Sobol rule of :data:`QMC_POINTS` points in
    ``N`` dimensions shared by the whole tensor (``O(N⁴)`` work per point; ≈ 1e-3 relative
    for tanh and ReLU at ``N = 7``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]

#: Gauss–Hermite nodes per axis for the k-dimensional four-point integrals, k = 1..4 (smooth φ).
SMOOTH_ORDERS = (64, 48, 32, 24)
#: The same for activations with kinks (piecewise-linear family with k ≥ 3, others with k ≥ 1).
KINKED_ORDERS = (200, 96, 48, 24)
#: Gauss–Hermite nodes per axis for the two-input expectations ``E[u φ'(u) φ(v)]``.
PAIR_ORDER = 96
#: Gauss–Legendre nodes per arc for the planar (k ≤ 2) piecewise-linear integrals.
ARC_ORDER = 24

#: Inputs up to which ``method="auto"`` integrates every quadruple by its own product rule.
PRODUCT_MAX_INPUTS = 6
#: Points of the shared randomised Sobol rule (``method="qmc"``).
QMC_POINTS = 2**18

#: Elements per chunk in the tensor-product sums (bounds the peak memory to ~100 MB in float64).
_CHUNK = 2**22
_TAIL = 7.5


@cache
def _line_rule(m: int, kinked: bool) -> tuple[np.ndarray, np.ndarray]:
    """``m`` nodes and weights of a rule for ``E[f(ξ)]``, ``ξ ~ N(0, 1)``.

    Smooth f: the trapezoidal rule on ``[−7.5, 7.5]`` (tail mass 6e-14), which converges like
    ``exp(−2π d/h)`` for f analytic in a strip ``|Im ξ| < d`` (tanh, erf, SiLU have poles
    near the real axis, where Gauss–Hermite slows to ``exp(−c√m)``).  Kinked f: probabilists'
    Gauss–Hermite (algebraic convergence either way; exact for the polynomial pieces)."""
    if kinked:
        x, w = np.polynomial.hermite_e.hermegauss(m)
        return x, w / math.sqrt(2 * math.pi)
    x = np.linspace(-_TAIL, _TAIL, m)
    w = (x[1] - x[0]) * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return x, w / w.sum()


@cache
def _tensor_rule(ms: tuple[int, ...], kinked: bool) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``(Π ms, k)`` and weights ``(Π ms,)`` of the product rule for ``N(0, I_k)`` with
    ``ms[j]`` nodes on axis ``j``."""
    rules = [_line_rule(m, kinked) for m in ms]
    grids = np.meshgrid(*[x for x, _ in rules], indexing="ij")
    nodes = np.stack([g.reshape(-1) for g in grids], -1)
    weights = np.ones(nodes.shape[0])
    for g in np.meshgrid(*[w for _, w in rules], indexing="ij"):
        weights = weights * g.reshape(-1)
    return nodes, weights


@cache
def _legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(m)


#: Trapezoidal nodes per unit of ``√(max variance)`` for the 1- and 2-input rules (below).
NODES_PER_SCALE = 48


def strip_order(order: int, cov: Tensor, k: int) -> int:
    """Nodes per axis of the trapezoidal rule for ``k`` distinct inputs: ``order``, raised for
    ``k ≤ 2`` to ``NODES_PER_SCALE·√(max_α cov_αα)``.  For ``φ(√q ξ)`` with poles at distance
    ``d`` from the real axis (tanh: ``π/2``) the error is ``≈ exp(−2π d/(h√q))`` for node
    spacing ``h``, so a fixed ``h`` loses digits as the variance grows (64 nodes give 1e-10
    at ``q = 2`` but 3e-6 at ``q ≈ 9`` for tanh⁴; derivatives are worse); keeping ``h√q``
    fixed keeps ≈ 1e-12.  ``k ≥ 3`` keeps ``order`` here (used only with explicit ``orders``;
    the default rule for ``k ≥ 3`` scales each axis: :func:`axis_orders`)."""
    if k > 2:
        return order
    scale = math.sqrt(float(torch.diagonal(cov).max()))
    return max(order, math.ceil(NODES_PER_SCALE * scale))


#: Trapezoidal nodes per unit of axis scale for the 3- and 4-input rules (:func:`axis_orders`).
AXIS_NODES_PER_SCALE = 36
#: Fewest nodes per axis of those rules (and at least :data:`SMOOTH_ORDERS` ``[k − 1]``).
MIN_AXIS_NODES = 28
#: Most points of one 3- or 4-input product rule; beyond it the rule is coarsened with a warning.
MAX_RULE_POINTS = 2**24


def axis_orders(lower: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes per axis of the trapezoidal rule for ``u = L ξ`` with ``k ≥ 3`` distinct inputs.

    Along eigen-axis ``j`` the integrand ``Π φ(u_a)`` is ``φ(L_aj ξ_j + …)``, analytic in the
    strip ``|Im ξ_j| < d / s_j`` with ``s_j = max_a |L_aj|`` (``d``: the distance of the poles
    of φ from the real axis; tanh ``π/2``), so spacing ``h_j`` gives an error
    ``≈ exp(−2π d/(h_j s_j))``: keeping ``h_j s_j`` fixed keeps the accuracy at every variance,
    and the axes with small eigenvalues need few nodes.  ``m_j = max(MIN_AXIS_NODES,
    SMOOTH_ORDERS[k − 1], AXIS_NODES_PER_SCALE·s_j)`` rounded up to a multiple of 4 (so
    quadruples share rules), i.e. ``h_j s_j ≈ 15/36`` on ``[−7.5, 7.5]`` (accuracy:
    docs/finite_width.md).

    Args:
        lower: ``(G, k, k)`` eigen-factors.
    Returns:
        ``(orders (G, k) int64, coarsened (G,) bool)``: where ``Π_j m_j`` would exceed
        :data:`MAX_RULE_POINTS`, every axis is scaled down by the same factor (flagged)."""
    scale = lower.abs().amax(-2).double().cpu()  # (G, k)
    floor = max(MIN_AXIS_NODES, SMOOTH_ORDERS[lower.shape[-1] - 1])
    want = (AXIS_NODES_PER_SCALE * scale).clamp_min(floor)
    excess = want.log().sum(-1) - math.log(MAX_RULE_POINTS)
    coarse = excess > 0
    shrunk = want / (excess.clamp_min(0) / lower.shape[-1]).exp()[:, None]
    down = torch.floor(shrunk.clamp_min(floor) / 4)
    ms = torch.where(coarse[:, None], down, torch.ceil(want / 4)) * 4
    return ms.clamp_min(4).long(), coarse


def _adaptive_groups(lower: Tensor) -> list[tuple[tuple[int, ...], Tensor]]:
    """Split a batch of eigen-factors by :func:`axis_orders`: ``[(orders, rows)]``; warns
    (with the estimated tanh-like accuracy) where the rule had to be coarsened."""
    ms, coarse = axis_orders(lower)
    if bool(coarse.any()):
        scale = lower.abs().amax(-2).double().cpu()
        spacing = (2 * _TAIL / (ms - 1).clamp_min(1)) * scale
        worst = float(spacing[coarse].max())
        warnings.warn(
            f"{int(coarse.sum())} Gaussian integrals over {lower.shape[-1]} inputs hit the "
            f"product-rule cap of {MAX_RULE_POINTS} points (MAX_RULE_POINTS): node spacing × "
            f"scale {worst:.2f} instead of {2 * _TAIL / AXIS_NODES_PER_SCALE:.2f}, estimated "
            f"relative error ≈ {3e3 * math.exp(-(math.pi**2) / worst):.0e} for tanh (measured: "
            "≈ 3e3·exp(−π²/(spacing × scale))); raise gaussian.MAX_RULE_POINTS (cost ∝ it) or "
            "lower the pre-activation variance",
            RuntimeWarning,
            stacklevel=4,
        )
    out = []
    for key in torch.unique(ms, dim=0):
        rows = (ms == key).all(-1).nonzero().squeeze(-1).to(lower.device)
        out.append((tuple(int(v) for v in key), rows))
    return out


def is_piecewise_linear(activation: object) -> bool:
    """Whether the activation is ``a·x`` (x < 0), ``b·x`` (x ≥ 0) with ``slopes = (a, b)``."""
    return isinstance(getattr(activation, "slopes", None), tuple)


def sqrt_factor(cov: Tensor) -> Tensor:
    """``L`` with ``L Lᵀ = cov`` for a batch ``(..., k, k)`` of PSD matrices (eigenbasis, so that
    singular sub-covariances, e.g. duplicated inputs, need no special case)."""
    lam, u = torch.linalg.eigh(cov)
    return u * lam.clamp_min(0).sqrt().unsqueeze(-2)


def sorted_quadruples(n: int) -> Tensor:
    """``(Q, 4)`` all ``α ≤ β ≤ γ ≤ δ`` in ``range(n)``; ``Q = C(n + 3, 4)``."""
    return torch.tensor(list(itertools.combinations_with_replacement(range(n), 4)))


def _patterns(quads: Tensor) -> dict[tuple[int, ...], tuple[Tensor, Tensor]]:
    """Group sorted quadruples by their multiplicity pattern.

    Returns ``{pattern: (rows, distinct)}``: ``rows`` are the positions in ``quads`` and
    ``distinct (G, k)`` their distinct inputs in increasing order, each with multiplicity
    ``pattern[a]`` (e.g. ``(α, α, β, γ)`` has pattern ``(2, 1, 1)``)."""
    groups: dict[tuple[int, ...], tuple[list[int], list[list[int]]]] = {}
    for row, q in enumerate(quads.tolist()):
        distinct = sorted(set(q))
        pattern = tuple(q.count(i) for i in distinct)
        rows, ds = groups.setdefault(pattern, ([], []))
        rows.append(row)
        ds.append(distinct)
    return {p: (torch.tensor(r), torch.tensor(d)) for p, (r, d) in groups.items()}


def four_point_expectations(
    activation: object,
    cov: Tensor,
    *,
    orders: tuple[int, int, int, int] | None = None,
    method: str = "auto",
    qmc_points: int = QMC_POINTS,
    seed: int = 0,
) -> Tensor:
    """``E[φ(u_α) φ(u_β) φ(u_γ) φ(u_δ)]`` for ``u ~ N(0, cov)``, all ``α, β, γ, δ``.

    Args:
        activation: an elementwise widelimit activation (``fn`` is used; piecewise-linear
            ones, recognised by ``slopes``, get the exact planar rule for ≤ 2 distinct inputs).
        cov: ``(N, N)`` positive semidefinite.
        orders: nodes per axis of the product rules for 1, 2, 3, 4 distinct inputs (default
            :data:`SMOOTH_ORDERS`, or :data:`KINKED_ORDERS` for piecewise-linear activations;
            by default smooth φ with 3, 4 distinct inputs scale the nodes per eigen-axis with
            the variance, :func:`axis_orders`, and warn if the point cap is hit; explicit
            ``orders`` fix them).
        method: how quadruples of 3 or 4 distinct inputs are integrated: ``"product"`` (one
            product rule per quadruple), ``"qmc"`` (one shared randomised Sobol rule of
            ``qmc_points`` points in ``N`` dimensions for the whole tensor: ``O(N⁴)`` work per
            point instead of a rule per quadruple) or ``"auto"`` (``"product"`` for
            ``N ≤`` :data:`PRODUCT_MAX_INPUTS`, else ``"qmc"``).  Quadruples of ≤ 2 distinct
            inputs always use the (accurate) one- and two-dimensional rules.
        qmc_points: points of the shared rule (``"qmc"``).
        seed: scrambling seed of the shared rule (the result is deterministic given it).
    Returns:
        ``(N, N, N, N)``, fully symmetric; only the sorted quadruples are integrated.
    """
    return _four_point(activation, cov, orders, method, qmc_points, seed, None)


def _four_point(
    activation: object,
    cov: Tensor,
    orders: tuple[int, int, int, int] | None,
    method: str,
    qmc_points: int,
    seed: int,
    shared: Callable[[], Tensor] | None,
) -> Tensor:
    """:func:`four_point_expectations`; ``shared()`` (if given) returns the shared Sobol
    moments of :func:`_shared_rule_moments` for ``(qmc_points, seed)``."""
    n = cov.shape[0]
    pl, adaptive, orders = _rules(activation, orders, method)
    quads = sorted_quadruples(n)
    groups = {tuple((p, 0) for p in pat): v for pat, v in _patterns(quads).items()}
    memo: list[Tensor] = []

    def lookup(q: Tensor) -> Tensor:
        if not memo:
            fn = activation.fn  # type: ignore[attr-defined]
            memo.append(shared() if shared else _shared_rule_moments(fn, cov, qmc_points, seed))
        return memo[0][_pair_index(q[:, 0], q[:, 1], n), _pair_index(q[:, 2], q[:, 3], n)]

    use_shared = _moments_use_shared_rule(method, n)
    values = _integrate_groups(activation, cov, quads, groups, orders, pl, adaptive, use_shared,
                               lookup)  # fmt: skip
    out = torch.empty((n,) * 4, dtype=cov.dtype, device=cov.device)
    for perm in set(itertools.permutations(range(4))):
        out[tuple(quads[:, p] for p in perm)] = values
    return out


def _integrate_groups(
    activation: object,
    cov: Tensor,
    quads: Tensor,
    groups: dict[tuple[tuple[int, int], ...], tuple[Tensor, Tensor]],
    orders: tuple[int, int, int, int],
    pl: bool,
    adaptive: bool,
    use_shared: bool,
    lookup: Callable[[Tensor], Tensor],
) -> Tensor:
    """``E[Π_a φ(u_a)^{p_a} φ'(u_a)^{p'_a}]`` of every quadruple row of ``quads`` (the one
    dispatch of :func:`four_point_expectations` and :func:`derivative_four_point_expectations`).

    ``groups``: ``{pattern: (rows, distinct)}`` with ``pattern[a] = (p_a, p'_a)`` of the
    ``a``-th distinct input and ``distinct (G, k)`` (:func:`_moment_groups`).  Per group:
    3-4 distinct inputs by the shared Sobol rule (``use_shared``: ``lookup(quads[rows])``);
    piecewise-linear φ with ≤ 2 distinct inputs by the planar rule; smooth φ with 3-4 by the
    per-eigen-axis product rules (``adaptive``); the rest by product rules of ``orders``."""
    fn = activation.fn  # type: ignore[attr-defined]
    dfn = getattr(activation, "derivative", None)
    values = torch.empty(quads.shape[0], dtype=cov.dtype, device=cov.device)
    for pattern, (rows, distinct) in groups.items():
        k = len(pattern)
        if k >= 3 and use_shared:
            values[rows] = lookup(quads[rows])
            continue
        sub = cov[distinct[:, :, None], distinct[:, None, :]]  # (G, k, k)
        lower = sqrt_factor(sub)  # eigenvalues ascending: the last columns carry the mass
        if pl and k <= 2:
            planar = lower[..., -2:] if k == 2 else torch.cat([torch.zeros_like(lower), lower], -1)
            slopes = activation.slopes  # type: ignore[attr-defined]
            values[rows] = _planar_rule(slopes, planar, pattern)
        elif adaptive and k >= 3:
            for ms, sel in _adaptive_groups(lower):
                values[rows[sel]] = _product_rule(fn, dfn, lower[sel], pattern, ms, False)
        else:
            m = orders[k - 1] if pl else strip_order(orders[k - 1], cov, k)
            values[rows] = _product_rule(fn, dfn, lower, pattern, m, pl)
    return values


def _rules(
    activation: object, orders: tuple[int, int, int, int] | None, method: str
) -> tuple[bool, bool, tuple[int, int, int, int]]:
    """``(piecewise linear, adaptive smooth orders, orders)`` of the four-point rules; checks
    ``method``."""
    if method not in ("auto", "product", "qmc"):
        raise ValueError(f"`method` must be 'auto', 'product' or 'qmc'; got {method!r}")
    pl = is_piecewise_linear(activation)
    adaptive = orders is None and not pl
    if orders is None:
        orders = KINKED_ORDERS if pl else SMOOTH_ORDERS
    return pl, adaptive, orders


def _moments_use_shared_rule(method: str, n: int) -> bool:
    """Whether :func:`four_point_expectations` integrates 3-4 distinct inputs by the shared
    Sobol rule (``"auto"``: above :data:`PRODUCT_MAX_INPUTS` inputs)."""
    return method == "qmc" or (method == "auto" and n > PRODUCT_MAX_INPUTS)


def _pair_index(i: Tensor, j: Tensor, n: int) -> Tensor:
    """Position of the pair ``i ≤ j`` in ``torch.triu_indices(n, n)`` order."""
    return i * n - i * (i - 1) // 2 + (j - i)


def _shared_rule_moments(fn: Fn, cov: Tensor, points: int, seed: int) -> Tensor:
    """``E[(φ_α φ_β)(φ_γ φ_δ)]`` over pairs ``α ≤ β``, ``γ ≤ δ`` (``triu_indices`` order), by
    one scrambled Sobol rule: ``u = L Φ⁻¹(s)`` with the columns of ``L`` ordered by decreasing
    eigenvalue (the leading Sobol coordinates are the best distributed)."""
    return _shared_rule(fn, None, cov, points, seed)[0]


def _shared_rule(
    fn: Fn, dfn: Fn | None, cov: Tensor, points: int, seed: int, *, moments: bool = True
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """One pass of the shared Sobol rule of :func:`_shared_rule_moments` for the pair-by-pair
    moment matrices ``(E[φφ·φφ], E[φφ·φ'φ'], E[φ'φ'·φ'φ'])`` (``None`` where not asked:
    the last two need ``dfn``, the first ``moments``).  The points, their order and the chunks
    do not depend on what is asked, so each matrix is the same whichever pass computes it."""
    n = cov.shape[0]
    lam, vec = torch.linalg.eigh(cov)
    lam, vec = lam.flip(0), vec.flip(1)
    lower = vec * lam.clamp_min(0).sqrt()
    iu = torch.triu_indices(n, n, device=cov.device)
    size = (iu.shape[1], iu.shape[1])
    kw = {"dtype": cov.dtype, "device": cov.device}
    ff = torch.zeros(size, **kw) if moments else None
    fd = torch.zeros(size, **kw) if dfn is not None else None
    dd = torch.zeros(size, **kw) if dfn is not None else None
    engine = torch.quasirandom.SobolEngine(n, scramble=True, seed=seed)
    done, step = 0, max(1, _CHUNK // max(iu.shape[1], n))
    while done < points:
        s = min(step, points - done)
        uniform = engine.draw(s, dtype=torch.float64).to(cov.device, cov.dtype)
        u = torch.special.ndtri(uniform.clamp(1e-300, 1 - 2**-53)) @ lower.T
        f = fn(u)
        fp = f[:, iu[0]] * f[:, iu[1]]
        if ff is not None:
            ff += fp.T @ fp
        if dfn is not None:
            d = dfn(u)
            dp = d[:, iu[0]] * d[:, iu[1]]
            fd += fp.T @ dp  # type: ignore[operator]
            dd += dp.T @ dp  # type: ignore[operator]
        done += s
    return tuple(None if t is None else t / points for t in (ff, fd, dd))  # type: ignore[return-value]


def pair_expectation(
    f: Fn, g: Fn, cov: Tensor, *, order: int = PAIR_ORDER, kinked: bool = False
) -> Tensor:
    """``E[f(u_α) g(u_β)]`` for ``u ~ N(0, cov)``, all pairs: ``(N, N)`` by a two-dimensional
    product rule (``order`` nodes per axis; trapezoidal, or Gauss–Hermite when ``kinked``) in the
    eigenbasis of each 2×2 block."""
    n = cov.shape[0]
    ia, ib = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ia, ib = ia.reshape(-1), ib.reshape(-1)
    idx = torch.stack([ia, ib], 1)
    lower = sqrt_factor(cov[idx[:, :, None], idx[:, None, :]])
    nodes_np, weights_np = _tensor_rule((order, order), kinked)
    nodes = torch.as_tensor(nodes_np, dtype=cov.dtype, device=cov.device)
    weights = torch.as_tensor(weights_np, dtype=cov.dtype, device=cov.device)
    out = torch.empty(n * n, dtype=cov.dtype, device=cov.device)
    step = max(1, _CHUNK // (nodes.shape[0] * 2))
    for lo in range(0, n * n, step):
        u = torch.einsum("pj,gaj->gpa", nodes, lower[lo : lo + step])
        out[lo : lo + step] = (f(u[..., 0]) * g(u[..., 1])) @ weights
    return out.reshape(n, n)


def linearisation(activation: object, cov: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``F``, ``A``, ``C`` (``(N, N)``) and ``D`` (``(N,)``) of the module docstring.

    ``F_αβ = E[φ(u_α) φ(u_β)]`` and ``C_αβ = E[φ'(u_α) φ'(u_β)]`` come from the activation's
    ``dual``; ``A_αβ = ∂F_αβ/∂G_αα`` (``α ≠ β``) and ``D_α = ∂F_αα/∂G_αα`` from the
    integration-by-parts formulas.  The diagonal of ``A`` is set to ``D``.
    """
    q = torch.diagonal(cov)
    if bool((q <= 0).any()):
        raise ValueError(
            "finite-width recursion: an input has zero variance at some layer (a zero input "
            "with no bias); the 1/n expansion needs positive variances: drop that input or "
            "add a bias (b_std > 0)"
        )
    f, c = activation.dual(q[:, None], q[None, :], cov, ntk=True)  # type: ignore[attr-defined]
    f, c = f.to(cov.dtype), c.to(cov.dtype)
    if is_piecewise_linear(activation):
        a_s, b_s = activation.slopes  # type: ignore[attr-defined]
        uf = f  # u φ'(u) = φ(u)
        d = torch.full_like(q, (a_s * a_s + b_s * b_s) / 2)
    else:
        fn, dfn = activation.fn, activation.derivative  # type: ignore[attr-defined]
        uf = pair_expectation(lambda u: u * dfn(u), fn, cov)
        d = torch.diagonal(uf) / q
    a = (uf - cov * c) / (2 * q[:, None])
    a = a.clone()
    a.diagonal().copy_(d)
    return f, a, c, d


def dual_hessian(activation: object, cov: Tensor, *, rel_step: float = 1e-4) -> Tensor:
    """Second derivatives of ``F_αβ(q_α, q_β, s_αβ) = E[φ(u_α)φ(u_β)]`` in its three
    arguments, ``(N, N, 3, 3)`` (order ``(G_αα, G_ββ, G_αβ)``), by central differences of the
    activation's ``dual`` with steps ``rel_step·√(q_α q_β)``.  On the diagonal ``α = β`` the
    ``[0, 0]`` entry holds ``d²E[φ(u)²]/dq²`` and the rest is 0.

    Used for the 1/n correction of the two-point function; the step keeps the relative
    error near 1e-7 for correlations away from ±1 (where ``|s| = √(q_α q_β)`` clamps)."""
    return dual_differences(activation, cov, output=0, rel_step=rel_step)[1]


def dual_differences(
    activation: object, cov: Tensor, *, output: int = 0, rel_step: float = 1e-4
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """First and second derivatives of one output of the activation's ``dual`` (``output=0``:
    ``F = E[φφ]``; ``1``: ``C = E[φ'φ']``) in ``(q_α, q_β, s_αβ)`` by central differences
    (steps as in :func:`dual_hessian`).

    Returns ``jac (N, N, 3)``, ``hess (N, N, 3, 3)`` (zero on the diagonal ``α = β``) and, for
    the diagonal, where all three arguments move together, ``d/dq`` and ``d²/dq²`` of
    ``dual(q, q, q)`` ``(N,)``; ``hess[α, α, 0, 0]`` holds the latter."""
    return _dual_differences(activation, cov, (output,), rel_step)[0]


def _dual_differences(
    activation: object, cov: Tensor, outputs: tuple[int, ...], rel_step: float
) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """:func:`dual_differences` for several ``outputs`` of the dual from one set of calls."""
    ntk = 1 in outputs
    q = torch.diagonal(cov)
    q1, q2 = q[:, None].expand_as(cov), q[None, :].expand_as(cov)
    eye = torch.eye(cov.shape[0], dtype=torch.bool, device=cov.device)
    s = cov.masked_fill(eye, 0.0)  # the diagonal is done separately below
    root = (q1 * q2).sqrt()
    # steps small enough that |s ± h| stays inside √((q1 − h)(q2 − h)) near c = ±1
    h = torch.minimum(rel_step * root, (root - s.abs()) / 4).clamp_min(1e-12 * root)
    args = (q1, q2, s)
    # every shifted argument set in one call of the dual (numerical duals cost per call)
    shifts: list[tuple[int, int, int]] = [(0, 0, 0)]
    for i in range(3):
        for sign in (1, -1):
            e = [0, 0, 0]
            e[i] = sign
            shifts.append((e[0], e[1], e[2]))
        for j in range(i + 1, 3):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                e = [0, 0, 0]
                e[i], e[j] = si, sj
                shifts.append((e[0], e[1], e[2]))
    coeff = torch.tensor(shifts, dtype=cov.dtype, device=cov.device)  # (M, 3)
    stacked = [a + coeff[:, c, None, None] * h for c, a in enumerate(args)]
    duals = activation.dual(*stacked, ntk=ntk)  # type: ignore[attr-defined]
    hd = rel_step * q
    dual = activation.dual  # type: ignore[attr-defined]
    diag_duals = [dual(q + c * hd, q + c * hd, q + c * hd, ntk=ntk) for c in (1, 0, -1)]
    results = []
    for output in outputs:
        values = duals[output].to(cov.dtype)
        table = dict(zip(shifts, values, strict=True))

        def f(d: tuple[int, int, int], table: dict = table) -> Tensor:
            return table[d]

        out = torch.zeros((*cov.shape, 3, 3), dtype=cov.dtype, device=cov.device)
        jac = torch.zeros((*cov.shape, 3), dtype=cov.dtype, device=cov.device)
        f0 = f((0, 0, 0))
        for i in range(3):
            e = [0, 0, 0]
            e[i] = 1
            plus, minus = (e[0], e[1], e[2]), (-e[0], -e[1], -e[2])
            out[..., i, i] = (f(plus) - 2 * f0 + f(minus)) / h**2
            jac[..., i] = (f(plus) - f(minus)) / (2 * h)
            for j in range(i + 1, 3):

                def at(si: int, sj: int, i: int = i, j: int = j) -> Tensor:
                    e = [0, 0, 0]
                    e[i], e[j] = si, sj
                    return f((e[0], e[1], e[2]))

                v = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)
                out[..., i, j] = out[..., j, i] = v
        # the diagonal: F_αα(q) = dual(q, q, q), all three arguments move together
        fd = [fd_all[output] for fd_all in diag_duals]
        out[eye] = 0.0
        jac[eye] = 0.0
        diag = ((fd[0] - 2 * fd[1] + fd[2]) / hd**2).to(cov.dtype)
        diag1 = ((fd[0] - fd[2]) / (2 * hd)).to(cov.dtype)
        idx = torch.arange(cov.shape[0], device=cov.device)
        out[idx, idx, 0, 0] = diag
        results.append((jac, out, diag1, diag))
    return results


def _moment_groups(
    quads: Tensor, slots: tuple[int, int, int, int]
) -> dict[tuple[tuple[int, int], ...], tuple[Tensor, Tensor]]:
    """Group quadruples by their pattern of (φ, φ') powers per distinct input.

    ``slots[j]`` says which function sits in position ``j`` (0: φ, 1: φ').  Returns
    ``{pattern: (rows, distinct)}`` with ``pattern[a] = (powers of φ, powers of φ')`` of the
    ``a``-th distinct input (increasing order) and ``distinct (G, k)``."""
    groups: dict[tuple[tuple[int, int], ...], tuple[list[int], list[list[int]]]] = {}
    for row, q in enumerate(quads.tolist()):
        distinct = sorted(set(q))
        pattern = tuple(
            (
                sum(1 for j in range(4) if q[j] == i and slots[j] == 0),
                sum(1 for j in range(4) if q[j] == i and slots[j] == 1),
            )
            for i in distinct
        )
        rows, ds = groups.setdefault(pattern, ([], []))
        rows.append(row)
        ds.append(distinct)
    return {p: (torch.tensor(r), torch.tensor(d)) for p, (r, d) in groups.items()}


@cache
def _derivative_plan(n: int) -> tuple[tuple[Tensor, tuple[int, int, int, int], dict], ...]:
    """The quadruples of :func:`derivative_four_point_expectations` and their groups for
    ``n`` inputs (``P4``: every ``(α ≤ β, γ ≤ δ)``; ``Q4``: sorted quadruples), cached: the
    grouping is a Python loop over ``O(n⁴)`` quadruples and depends on ``n`` only."""
    pairs = torch.triu_indices(n, n).T  # (n_pairs, 2), α ≤ β
    n_pairs = pairs.shape[0]
    left = pairs[:, None, :].expand(n_pairs, n_pairs, 2).reshape(-1, 2)
    right = pairs[None, :, :].expand(n_pairs, n_pairs, 2).reshape(-1, 2)
    mixed = torch.cat([left, right], 1)
    quads = sorted_quadruples(n)
    return (
        (mixed, (0, 0, 1, 1), _moment_groups(mixed, (0, 0, 1, 1))),
        (quads, (1, 1, 1, 1), _moment_groups(quads, (1, 1, 1, 1))),
    )


def _pattern_product(f: Tensor, g: Tensor | None, pattern: tuple[tuple[int, int], ...]) -> Tensor:
    """``Π_a f[..., a]^{p_a} g[..., a]^{p'_a}`` over the distinct inputs ``a`` (``g`` is only
    read where some ``p'_a > 0``)."""
    out = torch.ones_like(f[..., 0])
    for a, (pf, pg) in enumerate(pattern):
        if pf:
            out = out * f[..., a] ** pf
        if pg:
            out = out * g[..., a] ** pg  # type: ignore[index]
    return out


def _planar_rule(
    slopes: tuple[float, float], lower: Tensor, pattern: tuple[tuple[int, int], ...]
) -> Tensor:
    """``E[Π_a φ(u_a)^{p_a} φ'(u_a)^{p'_a}]`` for piecewise-linear φ when the ``u_a`` span at
    most a plane: ``u_a = r·(l_a · ω)``, ``ω = (cos t, sin t)``; φ is homogeneous of degree 1
    and ``φ'`` (``a`` or ``b`` by the sign) of degree 0, so ``E = E[r^p]·mean_t Π(...)`` with
    ``p = Σ p_a`` and ``E[r^p] = 2^{p/2} Γ(1 + p/2)`` for the planar normal (8 for ``p = 4``);
    ``t`` is integrated by Gauss–Legendre on the arcs between the kinks ``l_a·ω = 0`` (the
    integrand is a trigonometric polynomial on each arc).

    ``lower (G, k, 2)`` (the two leading columns of the eigen-factor: at most rank 2)."""
    a, b = slopes
    g = lower.shape[0]
    # kink angles of l·ω = 0: t = atan2(−l1, l2) and t + π, for each a; plus 0 and 2π
    l1, l2 = lower[..., 0], lower[..., 1]
    t0 = torch.atan2(-l1, l2) % math.pi
    zero = torch.zeros(g, 1, dtype=lower.dtype, device=lower.device)
    cuts = torch.cat([zero, t0, t0 + math.pi], 1)
    cuts = torch.cat([cuts.sort(1).values, torch.full_like(cuts[:, :1], 2 * math.pi)], 1)
    x_np, w_np = _legendre(ARC_ORDER)
    x = torch.as_tensor(x_np, dtype=lower.dtype, device=lower.device)
    w = torch.as_tensor(w_np, dtype=lower.dtype, device=lower.device)
    lo, hi = cuts[:, :-1], cuts[:, 1:]  # (G, 2k + 1) arcs
    half = (hi - lo) / 2
    t = (lo + hi)[..., None] / 2 + half[..., None] * x  # (G, arcs, m)
    tw = half[..., None] * w  # weights of dt
    omega = torch.stack([t.cos(), t.sin()], -1)  # (G, arcs, m, 2)
    proj = torch.einsum("gsmj,gaj->gsma", omega, lower)  # (G, arcs, m, k)
    f = torch.where(proj > 0, b * proj, a * proj)
    d = None
    if any(pg for _, pg in pattern):
        d = torch.where(proj > 0, torch.full_like(proj, b), torch.full_like(proj, a))
    p = sum(pf for pf, _ in pattern)
    radial = 2 ** (p / 2) * math.gamma(1 + p / 2)
    return radial * (_pattern_product(f, d, pattern) * tw).sum((1, 2)) / (2 * math.pi)


def _product_rule(
    fn: Fn,
    dfn: Fn | None,
    lower: Tensor,
    pattern: tuple[tuple[int, int], ...],
    m: int | tuple[int, ...],
    kinked: bool,
) -> Tensor:
    """``E[Π_a φ(u_a)^{p_a} φ'(u_a)^{p'_a}]`` for ``u = L ξ``, ``ξ ~ N(0, I_k)``, by the
    product rule of ``m`` nodes per axis (or ``m[j]`` on axis ``j``); ``lower (G, k, k)``;
    ``dfn`` (φ') is evaluated only when some ``p'_a > 0``."""
    k = len(pattern)
    nodes_np, weights_np = _tensor_rule(m if isinstance(m, tuple) else (m,) * k, kinked)
    nodes = torch.as_tensor(nodes_np, dtype=lower.dtype, device=lower.device)
    weights = torch.as_tensor(weights_np, dtype=lower.dtype, device=lower.device)
    out = torch.empty(lower.shape[0], dtype=lower.dtype, device=lower.device)
    step = max(1, _CHUNK // (nodes.shape[0] * k))
    derivative = any(pg for _, pg in pattern)
    for lo in range(0, lower.shape[0], step):
        u = torch.einsum("pj,gaj->gpa", nodes, lower[lo : lo + step])
        g = dfn(u) if derivative else None  # type: ignore[misc]
        out[lo : lo + step] = _pattern_product(fn(u), g, pattern) @ weights
    return out


def _shared_rule_mixed(
    fn: Fn, dfn: Fn, cov: Tensor, points: int, seed: int
) -> tuple[Tensor, Tensor]:
    """``E[(φ_α φ_β)(φ'_γ φ'_δ)]`` and ``E[(φ'_α φ'_β)(φ'_γ φ'_δ)]`` over pairs ``α ≤ β``,
    ``γ ≤ δ`` (``triu_indices`` order) by the shared Sobol rule of
    :func:`_shared_rule_moments`."""
    _, mixed, quad = _shared_rule(fn, dfn, cov, points, seed, moments=False)
    return mixed, quad  # type: ignore[return-value]


def derivative_four_point_expectations(
    activation: object,
    cov: Tensor,
    *,
    orders: tuple[int, int, int, int] | None = None,
    method: str = "auto",
    qmc_points: int = QMC_POINTS,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """The Gaussian four-point expectations with derivatives that the NTK recursions need.

    For ``u ~ N(0, cov)`` returns ``(P, Q)``, both ``(N, N, N, N)``:
    ``P[α,β,γ,δ] = E[φ(u_α) φ(u_β) φ'(u_γ) φ'(u_δ)]`` (symmetric under ``α↔β`` and ``γ↔δ``)
    and ``Q[α,β,γ,δ] = E[φ'(u_α) φ'(u_β) φ'(u_γ) φ'(u_δ)]`` (fully symmetric).  Only the
    distinct index sets are integrated, as in :func:`four_point_expectations`:

    * piecewise-linear φ (``slopes``), at most 2 distinct inputs: the planar homogeneity rule
      (``φ'`` is constant on each arc), machine precision;
    * piecewise-linear φ, 3 or 4 distinct inputs: ``φ'`` is a step, where product rules
      converge slowly, so the shared scrambled Sobol rule of ``qmc_points`` points is used
      (``method="product"`` forces Gauss–Hermite product rules instead);
    * other φ: product rules (``orders``, default :data:`SMOOTH_ORDERS`) for ``N ≤``
      :data:`PRODUCT_MAX_INPUTS`, else the shared Sobol rule for 3–4 distinct inputs.
    """
    return _derivative_four_point(activation, cov, orders, method, qmc_points, seed, None)


def _derivative_four_point(
    activation: object,
    cov: Tensor,
    orders: tuple[int, int, int, int] | None,
    method: str,
    qmc_points: int,
    seed: int,
    shared: Callable[[], tuple[Tensor, Tensor]] | None,
) -> tuple[Tensor, Tensor]:
    """:func:`derivative_four_point_expectations`; ``shared()`` (if given) returns
    :func:`_shared_rule_mixed` for ``(qmc_points, seed)``."""
    n = cov.shape[0]
    pl, adaptive, orders = _rules(activation, orders, method)
    use_shared = method == "qmc" or (method == "auto" and (pl or n > PRODUCT_MAX_INPUTS))
    memo: list[tuple[Tensor, Tensor]] = []

    def table() -> tuple[Tensor, Tensor]:
        if not memo:
            fn, dfn = activation.fn, activation.derivative  # type: ignore[attr-defined]
            memo.append(shared() if shared else _shared_rule_mixed(fn, dfn, cov, qmc_points, seed))
        return memo[0]

    results = []
    for quads, slots, groups in _derivative_plan(n):

        def lookup(q: Tensor, which: int = 0 if slots[0] == 0 else 1) -> Tensor:
            li, ri = _pair_index(q[:, 0], q[:, 1], n), _pair_index(q[:, 2], q[:, 3], n)
            return table()[which][li, ri]

        values = _integrate_groups(activation, cov, quads, groups, orders, pl, adaptive,
                                   use_shared, lookup)  # fmt: skip
        out = torch.empty((n,) * 4, dtype=cov.dtype, device=cov.device)
        perms = (
            set(itertools.permutations(range(4)))
            if slots == (1, 1, 1, 1)
            else {(0, 1, 2, 3), (1, 0, 2, 3), (0, 1, 3, 2), (1, 0, 3, 2)}
        )
        for perm in perms:
            out[tuple(quads[:, p] for p in perm)] = values
        results.append(out)
    return results[0], results[1]


def ntk_four_point_expectations(
    activation: object,
    cov: Tensor,
    *,
    orders: tuple[int, int, int, int] | None = None,
    method: str = "auto",
    qmc_points: int = QMC_POINTS,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(E4, P, Q)``: :func:`four_point_expectations` and
    :func:`derivative_four_point_expectations` (same arguments, same values) with one pass of
    the shared Sobol rule where both need it (the NTK recursion needs all three per layer):
    the points are drawn, transformed and pushed through ``φ`` and ``φ'`` once."""
    fn, dfn = activation.fn, activation.derivative  # type: ignore[attr-defined]
    # the moments table is only drawn if four_point_expectations would use the shared rule
    need = _moments_use_shared_rule(method, cov.shape[0])
    memo: list[tuple[Tensor | None, Tensor | None, Tensor | None]] = []

    def table() -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        if not memo:
            memo.append(_shared_rule(fn, dfn, cov, qmc_points, seed, moments=need))
        return memo[0]

    def moments() -> Tensor:
        return table()[0]  # type: ignore[return-value]

    def mixed() -> tuple[Tensor, Tensor]:
        return table()[1], table()[2]  # type: ignore[return-value]

    e4 = _four_point(activation, cov, orders, method, qmc_points, seed, moments)
    p4, q4 = _derivative_four_point(activation, cov, orders, method, qmc_points, seed, mixed)
    return e4, p4, q4


def ntk_dual_derivatives(
    activation: object, cov: Tensor, *, rel_step: float = 1e-4
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """``(dual_hessian(activation, cov), ntk_factor_derivatives(activation, cov))`` (same
    values) from one set of shifted calls of the activation's ``dual``, which returns ``F``
    and ``C`` together (numerical duals cost per call)."""
    (_, hess_f, _, _), (jac, hess, d1, _) = _dual_differences(activation, cov, (0, 1), rel_step)
    return hess_f, _factor_derivatives(jac, hess, d1)


def ntk_factor_derivatives(
    activation: object, cov: Tensor, *, rel_step: float = 1e-4
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Linearisation and Hessian of ``C(G)_αβ = E[φ'(u_α) φ'(u_β)]`` (the activation's NTK
    factor) around ``cov``, by central differences of its ``dual`` (as :func:`dual_hessian`).

    Returns ``(a, c, d, h)``: ``δC_αβ = a_αβ δG_αα + a_βα δG_ββ + c_αβ δG_αβ`` (``α ≠ β``),
    ``δC_αα = d_α δG_αα`` (the diagonal of ``a`` holds ``d``), and ``h (N, N, 3, 3)`` the
    second derivatives in ``(G_αα, G_ββ, G_αβ)`` (diagonal entries in ``h[α, α, 0, 0]``).
    """
    jac, hess, d1, _ = dual_differences(activation, cov, output=1, rel_step=rel_step)
    return _factor_derivatives(jac, hess, d1)


def _factor_derivatives(
    jac: Tensor, hess: Tensor, d1: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    a = jac[..., 0].clone()
    a.diagonal().copy_(d1)
    c = jac[..., 2]
    return a, c, d1, hess
