"""Empirical NTK: strategies agree, a hand-computed NTK, expectation = analytic NTK."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from widelimit import Dense, ReLU, serial
from widelimit.empirical import empirical_ntk, empirical_ntk_full, plan_empirical_ntk

torch.set_num_threads(1)
F64 = torch.float64


class _WithBuffer(nn.Module):
    """Tanh MLP with a non-trainable buffer (input shift) and a frozen parameter."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.l1 = nn.Linear(4, 6).to(F64)
        self.l2 = nn.Linear(6, 3).to(F64)
        self.register_buffer("shift", torch.randn(4, generator=g, dtype=F64))
        self.frozen = nn.Parameter(torch.ones(3, dtype=F64), requires_grad=False)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x - self.shift))) * self.frozen


def _modules():
    torch.manual_seed(0)
    dense = serial(Dense(7, w_std=1.3, b_std=0.2), ReLU(), Dense(3, b_std=0.1))
    conv = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 3, 1)).to(F64)
    return [
        (dense.module(7, input_shape=(4,), seed=1, dtype=F64), (4,)),
        (_WithBuffer(), (4,)),
        (conv, (2, 5)),
    ]


@pytest.mark.parametrize("idx", [0, 1, 2])
@pytest.mark.parametrize("two_inputs", [False, True])
def test_strategies_agree_float64(idx, two_inputs):
    module, in_shape = _modules()[idx]
    g = torch.Generator().manual_seed(idx)
    x1 = torch.randn(5, *in_shape, generator=g, dtype=F64)
    x2 = torch.randn(3, *in_shape, generator=g, dtype=F64) if two_inputs else None
    for fn in (empirical_ntk, empirical_ntk_full):
        ref = fn(module, x1, x2, strategy="jacobian", batch_size=100)
        for kw in (
            {"strategy": "structured"},
            {"strategy": "structured", "batch_size": 2},
            {"strategy": "jacobian", "batch_size": 2},
            {"strategy": "ntvp", "batch_size": 2},
        ):
            out = fn(module, x1, x2, **kw)
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    full = empirical_ntk_full(module, x1, x2)
    traced = empirical_ntk(module, x1, x2)
    k = full.shape[2]
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    assert traced.shape == (x1.shape[0], n2, *full.shape[4:])
    # traced = mean of the channel diagonal
    diag = torch.stack([full[:, :, c, c] for c in range(k)]).mean(0)
    torch.testing.assert_close(traced, diag)
    if x2 is None:  # symmetric with the channel pair swapped
        torch.testing.assert_close(full, full.transpose(0, 1).transpose(2, 3))


def test_hand_computed_ntk_of_tiny_relu_net():
    """One hidden ReLU layer of width 3, NTK parameterization, written out by hand."""
    d, n = 2, 3
    w1s, b1s, w2s, b2s = 1.3, 0.4, 0.9, 0.2
    net = serial(Dense(n, w_std=w1s, b_std=b1s), ReLU(), Dense(1, w_std=w2s, b_std=b2s))
    module = net.module(n, input_shape=(d,), seed=3, dtype=F64)
    w = module.layers[0].weight.detach().numpy()
    b = module.layers[0].bias.detach().numpy()
    v = module.layers[2].weight.detach().numpy()[0]
    x = np.array([[0.3, -1.2], [1.5, 0.7], [-0.4, 0.2]])
    theta = np.zeros((3, 3))
    for a in range(3):
        for c in range(3):
            ha = w1s / math.sqrt(d) * w @ x[a] + b1s * b
            hc = w1s / math.sqrt(d) * w @ x[c] + b1s * b
            ra, rc = np.maximum(ha, 0), np.maximum(hc, 0)
            # ∂f/∂v_j = (σ2/√n) relu(h_j); ∂f/∂b2 = σ2b
            t = w2s**2 / n * ra @ rc + b2s**2
            # ∂f/∂W_jk = (σ2/√n) v_j 1[h_j>0] (σ1/√d) x_k ; ∂f/∂b1_j = (σ2/√n) v_j 1[h_j>0] σ1b
            gate = (ha > 0) * (hc > 0) * v**2 * w2s**2 / n
            t += gate.sum() * (w1s**2 / d * x[a] @ x[c] + b1s**2)
            theta[a, c] = t
    for strategy in ("jacobian", "ntvp"):
        out = empirical_ntk(module, torch.tensor(x), strategy=strategy)
        np.testing.assert_allclose(out.numpy(), theta, rtol=1e-13, atol=1e-14)


def test_expectation_is_analytic_ntk():
    """Mean over independent nets → analytic NTK.

    For one hidden layer the empirical NTK is an unbiased estimate at any width
    (the hidden pre-activations are exactly Gaussian), so the only error is
    sampling: allow 4.5 standard errors of the mean per entry.
    """
    net = serial(Dense(64, w_std=1.5, b_std=0.3), ReLU(), Dense(2, w_std=1.1, b_std=0.1))
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    samples = torch.stack(
        [empirical_ntk(net.module(64, input_shape=(3,), seed=s, dtype=F64), x) for s in range(60)]
    )
    analytic = net.kernel(x, get=("ntk",)).ntk
    sem = samples.std(0) / math.sqrt(len(samples))
    assert torch.all((samples.mean(0) - analytic).abs() <= 4.5 * sem + 1e-12)
    # not vacuous: the sampling error is small against the kernel itself
    assert float(sem.norm() / analytic.norm()) < 0.05


def test_plan_follows_memory_formula():
    module, _ = _modules()[0]
    x = torch.randn(10, 4, dtype=F64)
    p = sum(q.numel() for q in module.parameters())
    plan = plan_empirical_ntk(module, x, strategy="jacobian", memory_budget=8 * 3 * p * 8 * 4)
    assert plan.strategy == "jacobian" and plan.batch_size == 4
    assert plan.bytes_estimate == 8 * 4 * 3 * p * 8
    tiny = plan_empirical_ntk(module, x, strategy="ntvp", memory_budget=100)
    assert tiny.strategy == "ntvp" and tiny.bytes_estimate == 3 * p * 8
    torch.testing.assert_close(
        empirical_ntk(module, x, memory_budget=100), empirical_ntk(module, x), rtol=0, atol=1e-10
    )


def test_auto_falls_back_to_ntvp_when_jacobian_of_unruled_params_does_not_fit():
    """The buffer model's `frozen`-scaled output has only Linear parameters: structured; a
    module without rules (a bare Parameter use) whose Jacobian exceeds the budget: ntvp."""

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.linspace(0.5, 1.5, 4, dtype=F64))

        def forward(self, x):
            return torch.tanh(x * self.w)[:, :2]

    x = torch.randn(6, 4, dtype=F64)
    assert plan_empirical_ntk(_WithBuffer(), x, memory_budget=100).strategy == "structured"
    plan = plan_empirical_ntk(Scale(), x, memory_budget=100)
    assert plan.strategy == "ntvp"
    torch.testing.assert_close(
        empirical_ntk(Scale(), x, memory_budget=100),
        empirical_ntk(Scale(), x, strategy="jacobian"),
        rtol=0,
        atol=1e-12,
    )


def test_bad_inputs():
    module, _ = _modules()[0]
    with pytest.raises(ValueError, match="x2"):
        empirical_ntk(module, torch.randn(3, 4, dtype=F64), torch.randn(3, 5, dtype=F64))
    with pytest.raises(ValueError, match="strategy"):
        empirical_ntk(module, torch.randn(3, 4, dtype=F64), strategy="fast")
    frozen = nn.Linear(4, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\(N, k"):
        empirical_ntk(nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)), torch.randn(3, 4))
