"""Finite-width networks against the Gaussian limit of signal propagation.

Nets of width ``n`` are sampled from the same spec as the kernel
(:func:`propagation_net`: ``depth`` dense layers of width ``n`` with φ between
them, built with ``net.module(...)``), on ``P`` fixed inputs.  For every layer
``l`` (pre-activations ``h^l``, ``n`` units) and seed:

* ``q̂^l(x) = (1/n) Σ_i h_i^l(x)²`` against ``q^l(x)``; its across-seed spread
  (relative standard deviation) — the ``n`` units are i.i.d. given the
  previous layer, so it is ``O(n^{-1/2})``;
* ``ĉ^l(x, x')`` (the empirical correlation) against ``c^l``: across-seed RMS error;
* the histogram of ``h_i^l(x)/√q^l(x)`` over the ``n`` units against ``N(0, 1)``:
  Kolmogorov–Smirnov statistic (:func:`scipy.stats.kstest`) and Wasserstein-1
  distance (exact integral ``∫|F_n − Φ|``, see :func:`w1_to_normal`).  Both
  combine the sampling error of ``n`` draws and the random conditional
  variance ``q̂``; each is ``O(n^{-1/2})`` (Lee et al. 2018; docs/propagation.md).
* outputs (layer ``depth``) jointly over the ``P`` inputs: whitening by the
  NNGP ``K = net.kernel(x).nngp`` (``z = L⁻¹ h``, ``L Lᵀ = K``), the KS distance of
  the pooled ``z`` to ``N(0, 1)``, of ``|z|²`` to ``χ²_P``, and the relative
  Frobenius error of the empirical output covariance ``(1/n) Σ_i h_i h_iᵀ``.

Each statistic is averaged over seeds (with its standard error) and a
log-log slope is fitted against ``n`` (:func:`widelimit.fitting.fit_loglog`, re-exported here
under its old name); theory: ``−1/2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import special, stats
from torch import Tensor

from widelimit._validation import as_float_tensor, check_nonnegative, check_positive_int
from widelimit.deprecation import deprecated_attribute, renamed_kwargs
from widelimit.fitting import fit_loglog, loglog_slope
from widelimit.layers.activations import Elementwise
from widelimit.layers.base import Layer
from widelimit.layers.combinators import serial
from widelimit.layers.dense import Dense, DenseModule
from widelimit.progress import progress_bar
from widelimit.propagation.maps import DTYPE, activation_label, check_activation, trajectory

__all__ = [
    "FiniteWidthStudy",
    "default_inputs",
    "finite_width_study",
    "fit_loglog",
    "preactivations",
    "propagation_net",
    "w1_to_normal",
]

STATISTICS = (
    "q_spread",
    "corr_spread",
    "ks",
    "w1",
    "output_ks",
    "output_chi2_ks",
    "output_cov_err",
)


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def propagation_net(
    activation: Elementwise, w_std: float, b_std: float, depth: int, width: int = 1
) -> Layer:
    """``Dense(width) → φ → … → Dense(width)`` with ``depth`` dense layers (σw, σb each).

    The output layer has ``width`` units too, so that its joint Gaussianity can
    be checked across units.
    """
    activation = check_activation(activation)
    depth = check_positive_int("depth", depth)
    layers: list[Layer] = []
    for i in range(depth):
        if i:
            layers.append(activation)
        layers.append(Dense(width, w_std=w_std, b_std=b_std))
    return serial(*layers)


def default_inputs(n_inputs: int = 3, dim: int = 8, q0: float = 1.0, c0: float = 0.5) -> Tensor:
    """``(P, d)`` inputs with ``Σ⁰ = x·x'/d`` exactly ``q0`` on the diagonal and ``c0 q0`` off it.

    Built as ``x = L (√d U)`` with ``L Lᵀ = Σ⁰`` and ``U`` fixed orthonormal rows.
    """
    p = check_positive_int("n_inputs", n_inputs)
    d = check_positive_int("dim", dim)
    if p > d:
        raise ValueError(f"`n_inputs` ({p}) must be <= `dim` ({d}) for exact input correlations")
    q0 = check_nonnegative("q0", q0)
    c0 = float(c0)
    if not -1.0 / max(p - 1, 1) < c0 <= 1.0 or (p > 1 and c0 == 1.0):
        raise ValueError(f"`c0` must be in (-1/(P-1), 1) for a valid input covariance; got {c0!r}")
    cov = torch.full((p, p), c0 * q0, dtype=DTYPE)
    cov.fill_diagonal_(q0)
    chol = torch.linalg.cholesky(cov)
    gen = torch.Generator().manual_seed(12345)
    u, _ = torch.linalg.qr(torch.randn(d, p, generator=gen, dtype=DTYPE))
    return chol @ (d**0.5 * u.T)


def preactivations(module: torch.nn.Module, x: Tensor) -> list[Tensor]:
    """Outputs of every :class:`DenseModule` of ``module`` on ``x``, in forward order.

    Returns ``depth`` tensors ``(P, n_l)`` (pre-activations ``h^l`` of the ``P`` inputs).
    """
    out: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: out.append(o.detach()))
        for m in module.modules()
        if isinstance(m, DenseModule)
    ]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def w1_to_normal(z: np.ndarray) -> float:
    """Exact Wasserstein-1 distance ``∫|F_n(t) − Φ(t)| dt`` between the empirical law of ``z``
    (1-D) and ``N(0, 1)``.

    Between order statistics ``F_n = k/n`` is constant; with ``G(t) = ∫_{−∞}^t Φ =
    tΦ(t) + ϕ(t)`` each piece is integrated in closed form, split where
    ``Φ(t) = k/n``.
    """
    s = np.sort(np.asarray(z, dtype=np.float64).ravel())
    n = s.size
    if n == 0:
        raise ValueError("`z` must contain at least one sample")

    def big_g(t: np.ndarray) -> np.ndarray:
        return t * special.ndtr(t) + np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)

    total = big_g(s[0]) + (big_g(-s[-1]))  # tails: ∫_{-∞}^{s1} Φ and ∫_{sn}^{∞} (1 − Φ)
    a, b = s[:-1], s[1:]
    k = np.arange(1, n) / n
    m = np.clip(special.ndtri(k), a, b)  # Φ(t) < k/n for t < m
    below = k * (m - a) - (big_g(m) - big_g(a))
    above = (big_g(b) - big_g(m)) - k * (b - m)
    return float(total + below.sum() + above.sum())


@dataclass(frozen=True)
class FiniteWidthStudy:
    """Finite-width statistics against the infinite-width propagation (module docstring).

    Shapes: ``W`` widths, ``L = depth`` layers, ``P`` inputs.

    Attributes:
        activation, w_std, b_std, depth: the network.
        widths: ``(W,)``.
        n_seeds: networks per width.
        inputs: ``(P, d)``.
        q_theory: ``(L, P)`` ``q^l``;  c_theory: ``(L, P, P)`` ``c^l``.
        q_bias: ``(W, L)`` seed-mean of ``q̂/q − 1`` (averaged over inputs; ``O(1/n)``).
        stats: name -> ``(W, L)`` seed-means of the per-layer statistics
            ``q_spread`` (std over seeds of ``q̂/q``), ``corr_spread`` (RMS over seeds
            of ``ĉ − c``), ``ks``, ``w1``; and ``(W,)`` for ``output_ks``,
            ``output_chi2_ks``, ``output_cov_err``.
        stats_se: same keys and shapes, standard errors of those means.
        slopes, slopes_se: name -> fitted log-log slope (of the layer-averaged
            statistic) and its standard error.
        layer_slopes: name -> ``(L,)`` slope per layer (per-layer statistics only).
        samples: ``W`` arrays ``(L, n)``: ``h^l(x_1)/√q^l(x_1)`` of the first seed (histograms).
    """

    activation: str
    w_std: float
    b_std: float
    depth: int
    widths: np.ndarray
    n_seeds: int
    inputs: np.ndarray
    q_theory: np.ndarray
    c_theory: np.ndarray
    q_bias: np.ndarray
    stats: dict[str, np.ndarray]
    stats_se: dict[str, np.ndarray]
    slopes: dict[str, float]
    slopes_se: dict[str, float]
    layer_slopes: dict[str, np.ndarray]
    samples: tuple[np.ndarray, ...] = field(repr=False)

    sigma_w = deprecated_attribute("w_std")
    sigma_b = deprecated_attribute("b_std")


def _per_seed(h: list[Tensor], q: np.ndarray, chol: Tensor) -> dict:
    """Statistics of one network: ``h`` = ``L`` tensors ``(P, n)``."""
    qhat, chat, ks, w1 = [], [], [], []
    for layer, hl in enumerate(h):
        hl = hl.to(DTYPE)
        n = hl.shape[1]
        gram = (hl @ hl.T / n).numpy()
        d = np.diag(gram)
        qhat.append(d)
        chat.append(gram / np.sqrt(np.outer(d, d)))
        z = (hl / torch.as_tensor(np.sqrt(q[layer]))[:, None]).numpy()
        ks.append(np.mean([stats.kstest(zp, "norm", method="asymp").statistic for zp in z]))
        w1.append(np.mean([w1_to_normal(zp) for zp in z]))
    out_h = h[-1].to(DTYPE)
    p, n = out_h.shape
    zw = torch.linalg.solve_triangular(chol, out_h, upper=False).numpy()  # z = L⁻¹ h
    kk = (chol @ chol.T).numpy()
    emp = (out_h @ out_h.T / n).numpy()
    return {
        "qhat": np.array(qhat),  # (L, P)
        "chat": np.array(chat),  # (L, P, P)
        "ks": np.array(ks),
        "w1": np.array(w1),
        "output_ks": stats.kstest(zw.ravel(), "norm", method="asymp").statistic,
        "output_chi2_ks": stats.kstest(
            (zw * zw).sum(0), stats.chi2(p).cdf, method="asymp"
        ).statistic,
        "output_cov_err": np.linalg.norm(emp - kk) / np.linalg.norm(kk),
    }


@renamed_kwargs(act="activation", sigma_w="w_std", sigma_b="b_std")
def finite_width_study(
    activation: Elementwise,
    w_std: float,
    b_std: float,
    depth: int,
    widths: Sequence[int] = (64, 256, 1024, 4096),
    *,
    n_seeds: int = 16,
    x: object | None = None,
    seed: int = 0,
    progress: bool = True,
) -> FiniteWidthStudy:
    """Sample ``n_seeds`` nets per width and compare them with the infinite-width limit.

    Args:
        activation: activation layer.
        w_std, b_std: σw, σb of every dense layer.
        depth: number of dense layers (the last is the output, ``width`` units).
        widths: at least 2 increasing widths.
        n_seeds: independent initialisations per width (>= 2).
        x: ``(P, d)`` inputs, ``P ≥ 2``; default :func:`default_inputs` (``P = 3, d = 8``).
        seed: base seed; net ``s`` of every width uses ``seed + s``.
        progress: show a progress bar.
    Returns:
        A :class:`FiniteWidthStudy`.
    Cost: ``n_seeds · Σ_n (depth − 1) n²`` Gaussian draws (float64).
    """
    activation = check_activation(activation)
    sw = check_nonnegative("w_std", w_std)
    sb = check_nonnegative("b_std", b_std)
    depth = check_positive_int("depth", depth)
    ws = [check_positive_int("widths", w) for w in widths]
    if len(ws) < 2 or sorted(set(ws)) != ws:
        raise ValueError(f"`widths` must be >= 2 strictly increasing widths; got {list(widths)}")
    n_seeds = check_positive_int("n_seeds", n_seeds)
    if n_seeds < 2:
        raise ValueError("`n_seeds` must be >= 2 (spreads are across seeds)")
    xt = default_inputs() if x is None else as_float_tensor("x", x, min_ndim=2, max_ndim=2)
    xt = xt.to(DTYPE)
    if xt.shape[0] < 2:
        raise ValueError(
            f"`x` must hold at least 2 inputs (correlations, joint Gaussianity); got {xt.shape[0]}"
        )
    traj = trajectory(activation, sw, sb, depth, input_cov=xt @ xt.T / xt.shape[1])
    q = traj.q
    if (q <= 0).any():
        raise ValueError("some q^l are 0 (e.g. zero inputs with σb = 0): nothing to compare")
    # outputs are compared with the core's NNGP of the same spec (NNGP correspondence)
    nngp = propagation_net(activation, sw, sb, depth).kernel(xt, get="nngp").nngp
    chol = torch.linalg.cholesky(nngp)
    rows: list[list[dict]] = []
    samples = []
    with progress_bar(progress) as bar:
        task = bar.add_task("finite-width nets", total=len(ws) * n_seeds)
        for n in ws:
            per = []
            for s in range(n_seeds):
                net = propagation_net(activation, sw, sb, depth, width=n).module(
                    None, input_shape=xt.shape[1], seed=seed + s, dtype=DTYPE
                )
                h = preactivations(net, xt)
                per.append(_per_seed(h, q, chol))
                if s == 0:
                    samples.append(
                        np.stack([(hl[0] / np.sqrt(q[i, 0])).numpy() for i, hl in enumerate(h)])
                    )
                bar.advance(task)
            rows.append(per)
    return _summarise(activation, sw, sb, depth, ws, n_seeds, xt, traj, rows, tuple(samples))


def _summarise(activation, sw, sb, depth, ws, n_seeds, xt, traj, rows, samples) -> FiniteWidthStudy:
    q, c = traj.q, traj.c
    p = q.shape[1]
    off = ~np.eye(p, dtype=bool)
    st: dict[str, list] = {k: [] for k in STATISTICS}
    se: dict[str, list] = {k: [] for k in STATISTICS}
    bias = []
    for per in rows:
        qrel = np.stack([r["qhat"] for r in per]) / q  # (S, L, P)
        bias.append((qrel - 1).mean(axis=(0, 2)))
        spread = qrel.std(axis=0, ddof=1)  # (L, P)
        st["q_spread"].append(spread.mean(-1))
        # relative SE of a sample std from S seeds: 1/√(2(S−1)) (Gaussian approximation)
        se["q_spread"].append(spread.mean(-1) / np.sqrt(2 * (n_seeds - 1)))
        cerr = np.stack([r["chat"] for r in per])[:, :, off] - c[:, off]  # (S, L, pairs)
        rms = np.sqrt((cerr**2).mean(axis=0))
        st["corr_spread"].append(rms.mean(-1))
        se["corr_spread"].append(rms.mean(-1) / np.sqrt(2 * n_seeds))
        for key in ("ks", "w1"):
            v = np.stack([r[key] for r in per])  # (S, L)
            st[key].append(v.mean(0))
            se[key].append(v.std(0, ddof=1) / np.sqrt(n_seeds))
        for key in ("output_ks", "output_chi2_ks", "output_cov_err"):
            v = np.array([r[key] for r in per])
            st[key].append(v.mean())
            se[key].append(v.std(ddof=1) / np.sqrt(n_seeds))
    stats_ = {k: np.array(v) for k, v in st.items()}
    ses = {k: np.array(v) for k, v in se.items()}
    slopes, slopes_se, layer_slopes = {}, {}, {}
    for k in STATISTICS:
        y, e = stats_[k], ses[k]
        if y.ndim == 2:
            layer_slopes[k] = np.array([loglog_slope(ws, y[:, i]) for i in range(y.shape[1])])
            # layer average; its SE conservatively as the mean of the layers' SEs
            y, e = y.mean(1), e.mean(1)
        if np.all(y > 0):
            fit = fit_loglog(ws, y, e)
            slopes[k], slopes_se[k] = fit.slope, fit.stderr
    return FiniteWidthStudy(
        activation=activation_label(activation),
        w_std=sw,
        b_std=sb,
        depth=depth,
        widths=np.array(ws),
        n_seeds=n_seeds,
        inputs=xt.numpy(),
        q_theory=q,
        c_theory=c,
        q_bias=np.array(bias),
        stats=stats_,
        stats_se=ses,
        slopes=slopes,
        slopes_se=slopes_se,
        layer_slopes=layer_slopes,
        samples=samples,
    )
