"""The tiled kernel engine (``widelimit.layers.tiles``) against plain formulas.

Independent route: the fully connected ReLU/Erf recursion written out here on
whole float64 matrices with the textbook formulas (Cho & Saul 2009 arc-cosine
kernel; Williams 1997 erf kernel), ``c = Σ/√(q q')``, no tiles, no in-place
tricks.  The engine must agree to float64 rounding (1e-12 relative to the
kernel scale) except where the formula is ill-conditioned: ``arccos`` at
``c = 1 − O(ulp)`` turns a rounding of ``c`` into ``√(2·ulp) ≈ 2e-8`` (the
engine sets ``c = 1`` exactly on the diagonal of ``k(x)``, the plain route only
up to rounding), so the NTK diagonal is compared at 1e-7.  Tiles are made tiny
(monkeypatched sizes) so that several panels, partial tiles and the mirroring
are exercised on small inputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from widelimit import layers as L
from widelimit.layers import (
    AvgPool2d,
    Conv2d,
    Dense,
    Erf,
    FanInSum,
    FanOut,
    Flatten,
    GlobalAvgPool,
    Identity,
    LayerNorm,
    ReLU,
    Tanh,
    parallel,
    serial,
    tiles,
)
from widelimit.layers.inputs import input_kernel, is_zero_constant

F64 = torch.float64


@pytest.fixture
def tiny_tiles(monkeypatch):
    """Panels of 5 rows, tiles of 7 columns, spatial tiles of 2×2 example pairs."""
    monkeypatch.setattr(tiles, "PANEL_ROWS", 5)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_CPU", 35)
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * 4**4)


def _x(n: int = 23, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    x[3] = 0.0  # zero variance (no bias below: stays 0 through every layer)
    x[7] = x[2]  # duplicate: c = 1 off the diagonal
    x[11] = -x[5]  # antipodal: c = -1
    x[13] = 1e-3 * x[1]  # tiny norm
    return x


def _plain_fc(x: torch.Tensor, act: str, layers, ntk: bool = True):
    """NNGP/NTK of serial(Dense, act, ..., Dense) with full-matrix textbook formulas."""
    s = x @ x.T / x.shape[1]
    th = torch.zeros_like(s)
    for i, (w, b) in enumerate(layers):
        s = w * w * s + b * b
        th = s + w * w * th
        if i == len(layers) - 1:
            break
        q = s.diagonal().clone()
        prod = torch.sqrt(q[:, None] * q[None, :])
        c = torch.where(prod > 0, s / torch.where(prod > 0, prod, 1.0), 0.0).clamp(-1, 1)
        if act == "relu":  # Cho & Saul 2009, eq. (6)
            t = torch.arccos(c)
            s = prod / (2 * math.pi) * (torch.sqrt(1 - c * c) + (math.pi - t) * c)
            dd = (math.pi - t) / (2 * math.pi)
        else:  # Williams 1997
            a = (1 + 2 * q[:, None]) * (1 + 2 * q[None, :])
            s = 2 / math.pi * torch.arcsin(2 * prod * c / a.sqrt())
            dd = 4 / math.pi / torch.sqrt(a - 4 * (prod * c) ** 2)
        th = th * dd
    return s, th


LAYERS = [(1.5, 0.0), (1.3, 0.0), (0.9, 0.0)]


def _fc(act):
    (w1, b1), (w2, b2), (w3, b3) = LAYERS
    return serial(Dense(64, w1, b1), act, Dense(64, w2, b2), act, Dense(1, w3, b3))


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_tiled_fc_equals_plain_formula(tiny_tiles, act: str) -> None:
    x = _x()
    k = _fc(ReLU() if act == "relu" else Erf()).kernel(x)
    s, th = _plain_fc(x, act, LAYERS)
    scale = float(s.abs().max())
    # c = ±1 ± ulp (arccos-limited, module doc): diagonal, duplicate, antipodal and collinear
    # (x[13] = 1e-3·x[1]) pairs; widelimit makes c exactly ±1 there, the plain formula not
    limited = torch.eye(len(x), dtype=torch.bool)
    limited[2, 7] = limited[7, 2] = limited[5, 11] = limited[11, 5] = True
    limited[1, 13] = limited[13, 1] = True
    torch.testing.assert_close(k.nngp, s, rtol=0, atol=1e-12 * scale)
    atol = 1e-12 * float(th.abs().max())
    torch.testing.assert_close(k.ntk[~limited], th[~limited], rtol=0, atol=atol)
    torch.testing.assert_close(k.ntk[limited], th[limited], rtol=1e-7, atol=1e-14)
    # exactly symmetric, diagonal exactly the tracked variances, zero row stays zero
    assert torch.equal(k.nngp, k.nngp.T) and torch.equal(k.ntk, k.ntk.T)
    assert torch.equal(k.nngp.diagonal(), k.cov1)
    assert torch.all(k.nngp[3] == 0) and torch.all(k.ntk[3] == 0)


def test_relu_ntk_diagonal_has_theta_exactly_zero(tiny_tiles) -> None:
    """With c = 1 exactly, E[φ'φ'] = 1/2 and Θ_ii follows the variances' recursion."""
    x = _x()
    k = _fc(ReLU()).kernel(x)
    q = (x * x).sum(1) / x.shape[1]
    th = torch.zeros_like(q)
    for i, (w, b) in enumerate(LAYERS):
        q = w * w * q + b * b
        th = q + w * w * th
        if i < len(LAYERS) - 1:
            q, th = q / 2, th * torch.where(q > 0, 0.5, 0.25)  # c = 0 for zero variances
    torch.testing.assert_close(k.ntk.diagonal(), th, rtol=1e-14, atol=0)


def test_cross_kernel_blocks_and_k_of_x_x(tiny_tiles) -> None:
    x = _x(seed=1)
    net = _fc(Erf())
    k, kxx, kx = net.kernel(x), net.kernel(x, x), net.kernel(x[:9], x[4:])
    for a, b in ((k.nngp, kxx.nngp), (k.ntk, kxx.ntk)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(kx.nngp, k.nngp[:9, 4:], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kx.ntk, k.ntk[:9, 4:], rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(kx.cov2, k.cov1[4:], rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "net",
    [
        serial(Dense(8, 1.4, 0.2), Tanh(), Dense(8, 1.1, 0.1), LayerNorm(), ReLU(), Dense(1)),
        serial(
            Dense(8, 1.2, 0.1),
            FanOut(2),
            parallel(Identity(), serial(ReLU(), Dense(8, 1.3))),
            FanInSum(),
            Erf(),
            Dense(1, 1.0, 0.0, "standard"),
        ),
    ],
    ids=["numerical+layernorm", "residual+standard"],
)
def test_generic_layers_on_tiles_equal_untiled_route(tiny_tiles, net) -> None:
    """Layers without in-place tile rules (transform_kernel on tiles) and combinators."""
    x = _x(seed=2)
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=False, ntk=True))
    for a, b in ((k.nngp, ref.nngp), (k.ntk, ref.ntk)):
        torch.testing.assert_close(a, 0.5 * (b + b.T), rtol=1e-7, atol=1e-12)
    assert torch.equal(k.nngp, k.nngp.T)


@pytest.mark.parametrize("padding,head", [("same", "gap"), ("valid", "gap"), ("same", "flat")])
def test_spatial_tiles_equal_untiled_route(monkeypatch, padding: str, head: str) -> None:
    per_pair = 25**2 if head == "gap" else 25
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 4 * per_pair)  # 2×2 example pairs
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 2, 5, 5, generator=g, dtype=F64)
    x[4] = x[1]
    readout = GlobalAvgPool() if head == "gap" else Flatten()
    net = serial(Conv2d(4, 3, padding=padding, w_std=1.4, b_std=0.1), ReLU(), readout, Dense(1))
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=head == "gap", ntk=True))
    torch.testing.assert_close(k.nngp, ref.nngp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k.ntk, ref.ntk, rtol=1e-12, atol=1e-14)
    assert torch.equal(k.nngp, k.nngp.T) and torch.equal(k.ntk, k.ntk.T)
    kx = net.kernel(x[:3], x[2:])  # (x[2], x[2]) is arccos-limited in a cross kernel
    torch.testing.assert_close(kx.ntk, k.ntk[:3, 2:], rtol=1e-7, atol=1e-14)


@pytest.mark.parametrize("pool", [False, True], ids=["diagonal", "full"])
def test_spatial_output_is_mirrored_with_position_pairs_swapped(monkeypatch, pool) -> None:
    """Nets ending in a spatial layer: K(x', x)[h', h] = K(x, x')[h, h'] in the full layout."""
    monkeypatch.setattr(tiles, "TILE_ENTRIES_SPATIAL", 8)  # 1×1 to 2×2 example pairs
    x = torch.randn(5, 2, 4, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    layers = [Conv2d(3, 3, padding="same", w_std=1.3, b_std=0.2), ReLU(), Conv2d(3, (2, 3))]
    net = serial(*layers, AvgPool2d(2, stride=1)) if pool else serial(*layers)
    k = net.kernel(x)
    ref = net.transform_kernel(input_kernel(x, None, full_spatial=pool, ntk=True))
    assert k.nngp.shape == ref.nngp.shape == (5, 5, *((2, 2, 1, 1) if pool else (3, 2)))
    for a, b in ((k.nngp, ref.nngp), (k.ntk, ref.ntk), (k.cov1, ref.cov1)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "act",
    [ReLU(), L.LeakyReLU(0.1), L.ABReLU(-0.4, 1.3), L.Abs(), Erf(), Erf(0.5, 0.4, 0.5)],
    ids=["relu", "leaky", "abrelu", "abs", "erf", "erf-affine"],
)
def test_self_dual_equals_dual_at_correlation_one(act) -> None:
    """The closed-form self-duals the tiled engine uses for every tile's rows and columns
    equal the full formulas of ``dual_correlation`` at ``c = 1`` exactly, and its c = 0
    convention at ``q = 0``.  (``dual`` at ``s = q`` forms ``c = 1 − ε``, which arc-cosine
    terms turn into 1e-8 errors: it is the reference for ReLU and Erf only, whose ``E[φ²]``
    has no such term.)"""
    q = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-6, 6, 25, dtype=F64)])
    nngp, dd = act.self_dual(q, ntk=True)
    ref_nngp, ref_dd = act.dual_correlation(torch.ones_like(q), q, q)
    torch.testing.assert_close(nngp, ref_nngp, rtol=1e-13, atol=0)
    torch.testing.assert_close(dd[1:], ref_dd[1:], rtol=1e-13, atol=0)
    if isinstance(act, ReLU | Erf):
        torch.testing.assert_close(
            nngp, act.dual(q, q, q.clone(), ntk=False)[0], rtol=1e-13, atol=0
        )
    nngp0, dd0 = act.dual_correlation(torch.zeros(1, dtype=F64), q[:1], q[:1])  # c = 0, q = 0
    torch.testing.assert_close(nngp[:1], nngp0, rtol=1e-15, atol=1e-16)
    torch.testing.assert_close(dd[:1], dd0, rtol=1e-15, atol=1e-16)
    assert nngp.dtype == dd.dtype == F64


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("erf", [Erf(), Erf(0.5, 1 / 2.4020563531719796, 0.5), Erf(2.0, 3.0)])
def test_erf_dense_tile_rule_equals_williams_formula(erf: Erf, dtype: torch.dtype) -> None:
    """``Erf.dense_tile_dual`` (u = c·2v1v2 in two passes) against Williams' formula per entry
    in float64, on a tile with its diagonal, a zero variance, a duplicate, an antipodal pair
    and variances from 1e-6 to 1e4; the self-pairs are the exact values at c = 1."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(9, 5, generator=g, dtype=F64) * torch.logspace(-3, 2, 9, dtype=F64)[:, None]
    x[4], x[6], x[8] = 0.0, x[1], -x[2]
    s64 = x @ x[:7].T / 5  # rows 0-8 × columns 0-6: a tile holding the diagonal block
    s64 = s64.T.contiguous()  # (7, 9): rows are the first 7 examples
    q64 = (x * x).sum(1) / 5
    t = tiles.Tile(
        nngp=s64.to(dtype, copy=True), ntk=s64.to(dtype) * 0.5, cov1=q64[:7].to(dtype),
        cov2=q64.to(dtype), channels=5, has_diagonal=True, is_gaussian=True,
    )  # fmt: skip
    out = erf.transform_tile(t)
    a2, b2, c2 = erf.amplitude**2, erf.input_scale**2, erf.shift**2
    p1, p2, ss = b2 * q64[:7, None], b2 * q64[None, :], b2 * s64
    pq = (1 + 2 * p1) * (1 + 2 * p2)
    nngp = 2 * a2 / math.pi * torch.arcsin((2 * ss / pq.sqrt()).clamp(-1, 1)) + c2
    det = 1 + 2 * p1 + 2 * p2 + 4 * p1 * p2 * (1 - (ss / (p1 * p2).sqrt()) ** 2).nan_to_num(1.0)
    dd = a2 * b2 * 4 / math.pi / det.sqrt()
    self_pairs = torch.zeros(7, 9, dtype=torch.bool)
    self_pairs[range(7), range(7)] = True
    self_pairs[1, 6] = True
    dd = torch.where(self_pairs, a2 * b2 * 4 / math.pi / (1 + 4 * p1).sqrt(), dd)
    eps = torch.finfo(dtype).eps
    # |u| ≤ 1 carries ~4ε absolute; arcsin′ and (1 − u²)^(-3/2) ≤ (1+2p)^(3/2) amplify it
    tol_nngp = 50 * eps * a2 + 4 * eps * c2
    torch.testing.assert_close(out.nngp.double(), nngp, rtol=0, atol=tol_nngp)
    rel = (out.ntk.double() - 0.5 * s64 * dd).abs() / (0.5 * s64 * dd).abs().clamp_min(1e-300)
    cond = (1 + 2 * b2 * q64.max()) ** 1.5
    assert float(rel.max()) <= 50 * eps * float(cond)
    assert torch.equal(out.nngp.diagonal(), out.cov1)
    assert torch.all(out.nngp[4] == c2)  # zero variance: u = 0


def test_float32_within_1e5_of_float64_and_dtype_device_kept() -> None:
    x = torch.randn(300, 50, generator=torch.Generator().manual_seed(5), dtype=F64)
    for act in (ReLU(), Erf()):
        net = serial(*[Dense(512, 1.5, 0.05), act] * 3, Dense(1))
        k64, k32 = net.kernel(x), net.kernel(x.float())
        assert k32.nngp.dtype == k32.ntk.dtype == k32.cov1.dtype == torch.float32
        assert k32.nngp.device == x.device
        for a, b in ((k64.nngp, k32.nngp), (k64.ntk, k32.ntk)):
            assert float((a - b.double()).abs().max()) <= 1e-5 * float(a.abs().max())
        assert torch.equal(k32.nngp.diagonal(), k32.cov1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_engine_on_cuda_matches_cpu() -> None:  # pragma: no cover - CPU-only CI
    x = _x()
    net = _fc(ReLU())
    kc, kg = net.kernel(x), net.kernel(x.cuda())
    assert kg.nngp.device.type == "cuda"
    torch.testing.assert_close(kg.ntk.cpu(), kc.ntk, rtol=1e-12, atol=1e-14)


def test_input_ntk_is_a_zero_without_memory() -> None:
    x = torch.randn(5, 3, 4, 4, dtype=F64)
    k0 = input_kernel(x, None, full_spatial=True, ntk=True)
    assert k0.ntk.shape == k0.nngp.shape and is_zero_constant(k0.ntk)
    assert not torch.any(k0.ntk)
    assert not is_zero_constant(torch.zeros(3)) and not is_zero_constant(torch.ones(()))


def test_differentiable_inputs_take_the_untiled_route() -> None:
    """Autograd needs the out-of-place route; its values equal the tiled ones."""
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(6), dtype=F64)
    net = _fc(ReLU())
    k = net.kernel(x.clone().requires_grad_(True))
    assert k.nngp.requires_grad and k.ntk.requires_grad
    kt = net.kernel(x)
    torch.testing.assert_close(k.nngp.detach(), kt.nngp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k.ntk.detach(), kt.ntk, rtol=1e-7, atol=1e-12)


# ------------------------------------------------------------- duplicated examples
@pytest.mark.parametrize(
    "net, shape, scale",
    [
        # stacked arcsine / arc-cosine duals: c = 1 − ε would give ε^{1/4} ≈ 1e-4 errors
        (L.serial(L.Dense(4), L.Sign(), L.Dense(4), L.ReLU(), L.Dense(1, 1.0, 0.1)), (3,), 1e-3),
        # saturating Erf on inputs of norm 1e6: 1/√det cancels to 1e-5 relative
        (L.serial(L.Conv1d(2, 3, padding="same"), L.Erf(), L.GlobalAvgPool(), L.Dense(1)),
         (3, 6), 1e6),
        (L.serial(L.Dense(4), L.Erf(), L.Dense(1, 1.0, 0.1)), (4,), 3e2),
    ],
)  # fmt: skip
def test_a_test_point_equal_to_a_training_point_reproduces_its_self_kernel(
    net, shape, scale
) -> None:
    """k(x_test, x_train)[i, j] equals k(x_train)[j, j] exactly when x_test[i] == x_train[j],
    and k(x_train) has equal rows for equal examples (independent route: the diagonal)."""
    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(5, *shape, generator=g, dtype=torch.float64) * scale
    x_train[3] = x_train[1]  # a duplicate inside the training set
    x_test = torch.randn(4, *shape, generator=g, dtype=torch.float64) * scale
    x_test[2] = x_train[1]
    x_test[0] = x_train[4]
    whole = net.kernel(x_train)
    cross = net.kernel(x_test, x_train)
    for name in ("nngp", "ntk"):
        k, kc = getattr(whole, name), getattr(cross, name)
        d = k.diagonal()
        assert torch.equal(k[1, 3], d[1]) and torch.equal(k[3, 1], d[1])
        assert torch.equal(d[1], d[3])
        rel = lambda a, b: float((a - b).abs() / b.abs())  # noqa: E731
        # the self-kernels come from two evaluations of the same exact (c = 1) rule
        assert rel(kc[2, 1], d[1]) <= 1e-14 and rel(kc[2, 3], d[1]) <= 1e-14
        assert rel(kc[0, 4], d[4]) <= 1e-14
        assert float(torch.linalg.eigvalsh(k)[0]) >= -1e-12 * float(d.sum())


def test_duplicate_groups_finds_equal_rows_only() -> None:
    from widelimit.layers.tiles import duplicate_groups

    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    assert duplicate_groups(x[:2], None) is None
    id1, id2 = duplicate_groups(x, None)
    assert id1[0] == id1[2] != id1[1]
    assert duplicate_groups(x[:2], torch.tensor([[1.0, 2.0 + 2.0**-20]])) is None
    id1, id2 = duplicate_groups(x[:2], torch.tensor([[5.0, 5.0], [3.0, 4.0]]))
    assert id2[1] == id1[1] and id2[0] not in set(id1.tolist())
