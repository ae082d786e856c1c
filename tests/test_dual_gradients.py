"""Input gradients of kernels through every activation family (issue 24, item 1).

Independent route: central finite differences of the kernel itself in float64.  Error
model of a difference quotient with step ``h``: truncation ``h²/6 · |L'''|`` (~1e-9 for
``h = 1e-4`` on these O(1) smooth losses) plus the quadrature's own error (≤ 1e-10 of the
value, tests/test_quadrature.py) divided by ``h``: ~1e-6 of the loss for ``h = 1e-4``.
The tolerance 2e-5·max(1, |L|) sits an order above that sum; the bug it catches was 20-74 %.

The numerical duals' backward (:mod:`widelimit.layers.dual_gradients`) uses Price's theorem
and Stein's lemma, with δ terms for a jump of φ or φ' at 0; the cases below exercise each
term: smooth (Tanh, Sigmoid, Softplus, SiLU, ELU(1): φ'' jumps only), a kink at 0 (ELU(0.5),
``Activation(abs)``: φ' jumps, so ``E[φ''φ'']`` has ``δ`` terms), a step at 0
(``Activation(sign(z) + z/2)``: φ jumps, so the NNGP's ``∂/∂s`` has them).
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from widelimit import layers as L
from widelimit.kernel import Kernel
from widelimit.layers.dual_gradients import dual_with_grad
from widelimit.layers.tiles import Tile, pairwise_kernel

F64 = torch.float64


def _smooth(z):
    return torch.sin(z) + 0.1 * z * z


def _step(z):
    return torch.sign(z) + 0.5 * z


NUMERICAL = {
    "tanh": L.Tanh(),
    "sigmoid": L.Sigmoid(),
    "softplus": L.Softplus(),
    "silu": L.SiLU(),
    "elu": L.ELU(),
    "elu_kink": L.ELU(alpha=0.5),
    "activation_smooth": L.Activation(_smooth, name="smooth"),
    "activation_abs": L.Activation(torch.abs, name="abs"),
    "activation_step": L.Activation(_step, name="step"),
}


def _loss(net: L.Layer, x: torch.Tensor, x2: torch.Tensor | None, w1, w2) -> torch.Tensor:
    k = net.kernel(x, x2)
    return (k.nngp * w1).sum() + (k.ntk * w2).sum()


def _finite_difference(f, x: torch.Tensor, h: float) -> torch.Tensor:
    g = torch.empty_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            e = torch.zeros_like(x).view(-1)
            e[i] = h
            e = e.view_as(x)
            g.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", sorted(NUMERICAL))
def test_issue24_numerical_activation_input_gradients(name: str) -> None:
    """Before the fix the NNGP had no grad_fn and the NTK gradient was 20-74 % off."""
    act = NUMERICAL[name]
    net = L.serial(L.Dense(8, 1.3, 0.2), act, L.Dense(8, 0.9, 0.1), act, L.Dense(1))
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 2, generator=gen, dtype=F64)
    x2 = torch.randn(2, 2, generator=gen, dtype=F64)
    for other in (None, x2):  # k(x) (diagonal with c = 1 exactly) and k(x, x2)
        n2 = 3 if other is None else 2
        w1, w2 = (torch.randn(3, n2, generator=gen, dtype=F64) for _ in range(2))
        xr = x.clone().requires_grad_(True)
        k = net.kernel(xr, other)
        assert k.nngp.grad_fn is not None and k.ntk.grad_fn is not None
        loss = (k.nngp * w1).sum() + (k.ntk * w2).sum()
        (g,) = torch.autograd.grad(loss, xr)
        fd = _finite_difference(lambda z, o=other, a=w1, b=w2: _loss(net, z, o, a, b), x, 1e-4)
        tol = 2e-5 * max(1.0, float(loss.detach().abs()))
        assert float((g - fd).abs().max()) <= tol, (name, other is None, g, fd)


@pytest.mark.parametrize("name", ["tanh", "elu_kink", "activation_step"])
def test_issue24_dual_gradients_at_hard_points(name: str) -> None:
    """The dual's own gradients (q1, q2, s12) at |c| = 0.99, variances 1e-2 and 50.

    With a kink, ``∂/∂s`` grows like ``1/√Δ`` (``Δ = q1 q2 − s²``): the step ``eps`` moves
    ``Δ`` by ``q2·eps``, which must stay ≪ ``Δ`` (here 5e-4 of it at the smallest ``Δ``,
    a relative truncation error ~3e-7) for the differences to be an independent check."""
    act = NUMERICAL[name]
    q1 = torch.tensor([[1e-2], [1.0], [50.0]], dtype=F64, requires_grad=True)
    q2 = torch.tensor([[0.7, 50.0]], dtype=F64, requires_grad=True)
    c = torch.tensor([[0.99, -0.5], [0.3, -0.99], [0.0, 0.9]], dtype=F64)
    s12 = (c * (q1 * q2).sqrt()).detach().requires_grad_(True)

    def f(q1, q2, s12):
        return dual_with_grad(act.fn, act.derivative, q1, q2, s12, ntk=True)

    # eps relative to the smallest variance; quadrature noise 1e-11/eps ≪ atol
    assert torch.autograd.gradcheck(f, (q1, q2, s12), eps=1e-7, atol=1e-5, rtol=1e-4)


def test_issue24_gradient_at_zero_variance_is_finite() -> None:
    """An all-zero input row without bias: q = 0 there (the ``½ψ''(0)E[ψ]`` branch)."""
    net = L.serial(L.Dense(4, 1.0, 0.0), L.Tanh(), L.Dense(1))
    x = torch.tensor([[0.0, 0.0], [0.5, -1.0], [1.2, 0.3]], dtype=F64, requires_grad=True)
    k = net.kernel(x)
    (g,) = torch.autograd.grad(k.nngp.sum() + k.ntk.sum(), x)
    fd = _finite_difference(lambda z: _loss(net, z, None, 1.0, 1.0), x.detach(), 1e-4)
    assert bool(torch.isfinite(g).all())
    assert float((g - fd).abs().max()) <= 2e-5 * max(
        1.0, float((k.nngp.sum() + k.ntk.sum()).detach())
    )


@pytest.mark.parametrize("has_diagonal", [True, False])
def test_issue24_tile_rule_gradients(has_diagonal: bool) -> None:
    """The tiled engine's rule (``transform_tile``, in place on owned tensors) gives the
    gradients of the whole-kernel rule; the engine driver refuses inputs that need grad."""
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(3, 4, generator=gen, dtype=F64)
    x2 = x1 if has_diagonal else torch.randn(2, 4, generator=gen, dtype=F64)
    w = torch.randn(3, x2.shape[0], generator=gen, dtype=F64)
    act = L.ELU(alpha=0.5)
    grads = []
    for route in ("tile", "kernel"):
        a = x1.clone().requires_grad_(True)
        b = a if has_diagonal else x2
        s = a @ b.T / 4
        q1, q2 = (a * a).mean(1), (b * b).mean(1)
        if route == "tile":
            t = Tile(s, s * 1.5, q1, q2, channels=4, is_gaussian=True, has_diagonal=has_diagonal)
            out = act.transform_tile(t)
        else:
            k = Kernel(s, s * 1.5, q1, None if has_diagonal else q2, is_gaussian=True)
            out = act.transform_kernel(k)
        grads.append(torch.autograd.grad(((out.nngp + out.ntk) * w).sum(), a)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)
    net = L.serial(L.Dense(4), act, L.Dense(1))
    with pytest.raises(ValueError, match="not differentiable"):
        pairwise_kernel(net, x1.clone().requires_grad_(True), None, ntk=True)


# ------------------------------------------------------------------ property test
CLOSED_FORM = [
    L.ReLU(), L.LeakyReLU(0.2), L.ABReLU(-0.5, 1.0), L.Abs(), L.Erf(), L.GELU(), L.Sign(),
    L.Sin(), L.Cos(), L.Gaussian(), L.RBF(), L.Exp(), L.Monomial(2), L.Hermite(3),
    L.RectifiedMonomial(2), L.Polynomial((0.1, 1.0, -0.3)), L.Gabor(),
]  # fmt: skip
ALL_ACTIVATIONS = CLOSED_FORM + list(NUMERICAL.values())
_SETTINGS = settings(
    max_examples=16,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mlp(draw, acts):
    """Dense/activation stacks with LayerNorm, Dropout, Multiply and the fan-in combinators."""
    width = draw(st.integers(2, 8))
    layers = [L.Dense(width, draw(st.floats(0.6, 1.6)), 0.2)]
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["plain", "layernorm", "dropout", "multiply", "fan"]))
        act = draw(st.sampled_from(acts))
        if kind == "layernorm":
            layers += [L.LayerNorm(), act]
        elif kind == "dropout":
            layers += [L.Dropout(0.2), act]
        elif kind == "multiply":
            layers += [L.Multiply(1.3), act]
        elif kind == "fan":
            fan_in = draw(st.sampled_from([L.FanInSum(), L.FanInProd(), L.FanInConcat()]))
            layers += [L.FanOut(2), L.parallel(act, L.Dense(width, 1.0, 0.1)), fan_in]
        else:
            layers += [act]
        width = draw(st.integers(2, 8))
        layers.append(L.Dense(width, 1.0, 0.1))
    layers.append(L.Dense(1))
    return L.serial(*layers)


def _gradcheck(net: L.Layer, x: torch.Tensor, side: dict | None = None) -> None:
    side = side or {}

    def f(z):
        k = net.kernel(z, **side)
        return k.nngp, k.ntk

    # eps 1e-5: quadrature noise 1e-10/eps = 1e-5 of O(1) kernels below atol + rtol·|J|
    assert torch.autograd.gradcheck(
        f, (x.requires_grad_(True),), eps=1e-5, atol=1e-5, rtol=1e-3, fast_mode=True
    )


@_SETTINGS
@given(net=mlp(ALL_ACTIVATIONS), seed=st.integers(0, 2**16))
def test_issue24_gradcheck_property_mlp(net: L.Layer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    _gradcheck(net, torch.randn(3, 2, generator=gen, dtype=F64))


@st.composite
def cnn(draw, acts):
    """Conv1d/ConvTranspose1d/ConvLocal1d, pooling, attention, Aggregate; Flatten/GAP readout."""
    act = draw(st.sampled_from(acts))
    mid = draw(
        st.sampled_from(
            ["none", "avgpool", "sumpool", "attention", "aggregate", "layernorm", "expnorm"]
        )
    )
    firsts = [L.Conv1d(4, 3, padding="same"), L.ConvTranspose1d(4, 2), L.ConvLocal1d(4, 2)]
    # Aggregate's pattern has one node per input position: keep the length there
    first = firsts[0] if mid == "aggregate" else draw(st.sampled_from(firsts))
    body = [first, act]
    if mid == "avgpool":
        body += [L.AvgPool1d(2)]
    elif mid == "sumpool":
        body += [L.SumPool1d(2)]
    elif mid == "attention":
        body += [L.GlobalSelfAttention(4, 2)]
    elif mid == "aggregate":
        body += [L.Aggregate()]
    elif mid == "layernorm":
        body += [L.Conv1d(4, 1), L.LayerNorm()]
    elif mid == "expnorm":
        body += [L.Conv1d(4, 1), L.ExpNormalized()]
    readout = draw(st.sampled_from([L.Flatten(), L.GlobalAvgPool()]))
    return L.serial(*body, readout, L.Dense(1)), mid == "aggregate"


@pytest.mark.slow
@settings(_SETTINGS, max_examples=12)
@given(spec=cnn(ALL_ACTIVATIONS), seed=st.integers(0, 2**16))
def test_issue24_gradcheck_property_cnn(spec, seed: int) -> None:
    net, graph = spec
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 4, generator=gen, dtype=F64)
    side = {"pattern": torch.rand(2, 4, 4, generator=gen, dtype=F64)} if graph else None
    _gradcheck(net, x, side)


def test_gaussian_mean_interpolation_matches_the_rule() -> None:
    """``gaussian_mean`` on > 4096 entries interpolates in log q (the δ terms' conditional
    means); it must agree with the line rule at every entry (1e-11 of the largest value is
    its own acceptance test on 24 entries; here all 5000 are compared, and a closed form)."""
    from widelimit._quadrature import _levels, _mean_direct, autograd_derivative, gaussian_mean

    d2 = autograd_derivative(L.ELU(alpha=0.5).derivative)  # 0.5 e^x on x < 0, 0 above
    gen = torch.Generator().manual_seed(5)
    q = torch.rand(5000, generator=gen, dtype=F64) ** 4 * 30 + 1e-9
    got = gaussian_mean(d2, q)
    ref = _mean_direct(d2, q, _levels(float(q.max()), 0.25))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    # E[0.5 e^{√q z} 1{z<0}] = 0.5 e^{q/2} Φ(−√q); the line rule itself is within 1.1e-9
    # relative of it (measured, worst at q ≈ 30 where the value is 3.5e-2: 3.7e-11 absolute,
    # 7e-11 of the function's size 0.5, the quadrature's stated accuracy)
    exact = 0.5 * torch.exp(q / 2) * torch.special.ndtr(-q.sqrt())
    torch.testing.assert_close(got, exact, rtol=5e-9, atol=1e-13)
