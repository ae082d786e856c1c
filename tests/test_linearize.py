"""linearize / taylor_expand against independent routes: the module itself at θ₀, an explicit
Jacobian (reverse mode) contraction, central finite differences, and the error order of the
expansion measured as a log-log slope."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from widelimit import Dense, Erf, linearize, serial, taylor_expand

DT = torch.float64


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 2)).to(DT)  # fmt: skip


def _x(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(1), dtype=DT)


def _direction(module: nn.Module, seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g, dtype=DT) for n, p in module.named_parameters()}


def _set_delta(expansion: nn.Module, v: dict[str, torch.Tensor], t: float) -> None:
    with torch.no_grad():
        for name, th0 in expansion.theta0().items():
            expansion.module.get_parameter(name).copy_(th0 + t * v[name])


def _f_at(module: nn.Module, v: dict[str, torch.Tensor], t: float, x: torch.Tensor):
    params = {n: p.detach() + t * v[n] for n, p in module.named_parameters()}
    return functional_call(module, params, (x,))


def test_linearize_equals_module_at_theta0_and_keeps_original():
    m, x = _mlp(), _x()
    before = [p.detach().clone() for p in m.parameters()]
    lin = linearize(m)
    assert torch.equal(lin(x), m(x))
    names = [n for n, _ in lin.named_parameters()]
    assert names == [f"module.{n}" for n, _ in m.named_parameters()]
    _set_delta(lin, _direction(m), 0.1)  # training the expansion leaves the original alone
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


def test_linearize_matches_explicit_jacobian_and_finite_differences():
    m, x = _mlp(), _x()
    v = _direction(m)
    lin = linearize(m)
    t = 1e-3
    _set_delta(lin, v, t)
    got = lin(x) - m(x)  # J δθ
    # route 1: reverse-mode Jacobian, contracted explicitly
    params = {n: p.detach() for n, p in m.named_parameters()}
    jac = jacrev(lambda p: functional_call(m, p, (x,)))(params)
    want = sum((jac[n] * (t * v[n])).flatten(2).sum(-1) for n in params)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    # route 2: central differences, whose error is (t³/6) D³f[v,v,v]: it must fall 4x per
    # halving of t (a second-order difference of the JVP route)
    errs = []
    for h in (4e-3, 2e-3, 1e-3):
        _set_delta(lin, v, h)
        with torch.no_grad():
            jv = lin(x) - m(x)
            fd = (_f_at(m, v, h, x) - _f_at(m, v, -h, x)) / 2
        errs.append(float((jv - fd).abs().max() / fd.abs().max()))
    assert errs[-1] < 1e-4
    for a, b in itertools.pairwise(errs):
        assert 3.5 < a / b < 4.5, errs


def test_taylor_degree1_equals_linearize_and_degree0_is_constant():
    m, x = _mlp(), _x()
    v = _direction(m)
    lin, t1, t0 = linearize(m), taylor_expand(m, 1), taylor_expand(m, 0)
    for e in (lin, t1, t0):
        _set_delta(e, v, 0.05)
    torch.testing.assert_close(t1(x), lin(x), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(t0(x), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_taylor_error_order(degree):
    """|f(θ₀ + tv) − f_k(θ₀ + tv)| = O(t^{k+1}): fitted log-log slope = k + 1."""
    m, x = _mlp(), _x()
    v = _direction(m)
    expansion = taylor_expand(m, degree)
    ts = np.array([0.02, 0.04, 0.08, 0.16])
    errs = []
    for t in ts:
        _set_delta(expansion, v, float(t))
        with torch.no_grad():
            errs.append(float((expansion(x) - _f_at(m, v, float(t), x)).abs().max()))
    slope = np.polyfit(np.log(ts), np.log(errs), 1)[0]
    # the next term dominates at small t: the slope tends to k + 1 (± the (k+2)-term's share)
    assert abs(slope - (degree + 1)) < 0.25, (slope, errs)


def test_linearized_gradient_is_jacobian_transpose_residual():
    """Backward through the JVP gives Jᵀ r (the linear model's gradient) at any θ."""
    m, x = _mlp(), _x()
    lin = linearize(m)
    _set_delta(lin, _direction(m), 0.3)  # far from θ₀: J must stay the one at θ₀
    r = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    (lin(x) * r).sum().backward()
    params = {n: p.detach() for n, p in m.named_parameters()}
    jac = jacrev(lambda p: functional_call(m, p, (x,)))(params)
    for n in params:
        want = torch.einsum("nk,nk...->...", r, jac[n])
        torch.testing.assert_close(lin.module.get_parameter(n).grad, want, rtol=1e-12, atol=1e-13)


def test_linearize_widelimit_module_and_errors():
    net = serial(Dense(32, w_std=1.5, b_std=0.1), Erf(), Dense(1))
    m = net.module(None, input_shape=3, seed=0, dtype=DT)
    lin = linearize(m)
    torch.testing.assert_close(lin(_x()), m(_x()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="degree"):
        taylor_expand(m, -1)
    with pytest.raises(TypeError, match="module"):
        linearize(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trainable"):
        linearize(nn.Tanh())
