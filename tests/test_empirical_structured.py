"""Structured empirical NTK (widelimit.empirical_rules) against the per-example Jacobian route.

Both routes compute the same finite sum Σ_p ∂f(x)/∂p ∂f(x')/∂p in float64; the structured one
regroups it into Grams (docs/empirical_ntk.md), so they agree to rounding: 1e-12 relative to
the kernel's scale.  Every case runs with x2 = None and x2 ≠ x1, traced and full.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from widelimit.empirical import (
    _by_structure,
    _params,
    empirical_ntk,
    empirical_ntk_full,
    plan_empirical_ntk,
)

F64 = torch.float64


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.block(h)
        return self.head(torch.relu(h))


class Tokens(nn.Module):
    """Embedding + Linear over tokens + LayerNorm, mean-pooled to 2 outputs."""

    def __init__(self, vocab: int, padding_idx: int | None) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 6, padding_idx=padding_idx)
        self.lin = nn.Linear(6, 5)
        self.ln = nn.LayerNorm(5)
        self.out = nn.Linear(5, 2, bias=False)

    def forward(self, x):
        t = self.emb((x.abs() * 3).long() % self.emb.num_embeddings)  # (N, T, 6)
        return self.out(self.ln(torch.relu(self.lin(t)))).mean(1)


class Custom(nn.Module):
    """A module without a rule: its parameter falls back to Jacobians."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, n, dtype=F64))

    def forward(self, x):
        return torch.tanh(x * self.scale)


class MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) ** 2


class KeepsForward(nn.Linear):
    """A subclass that keeps the base forward: still the Linear rule."""


class Twice(nn.Module):
    """One Linear applied twice (reused module) and one weight tied to another module."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4)
        self.c.weight = self.b.weight  # tied parameter
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.tanh(self.a(torch.tanh(self.a(x))))
        return self.head(self.b(h) + self.c(h))


def _conv_net(conv: nn.Module, c_in: int, flat: int | None) -> nn.Module:
    layers = [conv, nn.Tanh()]
    if flat is not None:
        layers += [nn.Flatten(), nn.Linear(flat, 3)]
    return nn.Sequential(*layers)


def _case(name: str):
    torch.manual_seed(hash(name) % 1000)
    if name == "mlp":
        return nn.Sequential(nn.Linear(5, 9), nn.ReLU(inplace=True), nn.Linear(9, 1)), (5,)
    if name == "mlp_nobias_multi":
        m = nn.Sequential(nn.Linear(5, 7, bias=False), nn.Tanh(), nn.Linear(7, 4))
        return m, (5,)
    if name == "linear_tokens":
        m = nn.Sequential(
            nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2), nn.Flatten(), nn.Linear(6, 2)
        )
        return m, (3, 4)
    if name == "conv_valid_stride_dilation":
        c = nn.Conv2d(2, 4, 3, stride=2, dilation=2)
        return _conv_net(c, 2, 4 * 2 * 2), (2, 8, 8)
    if name == "conv_same_even":
        c = nn.Conv2d(2, 4, (4, 2), padding="same")
        return _conv_net(c, 2, 4 * 5 * 5), (2, 5, 5)
    if name == "conv_groups_reflect":
        c = nn.Conv2d(4, 6, 3, padding=1, groups=2, padding_mode="reflect")
        return _conv_net(c, 4, 6 * 4 * 4), (4, 4, 4)
    if name == "conv_spatial_out":  # outputs (k, H, W): NTK per position
        m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 1))
        return m, (2, 4, 4)
    if name == "conv1d":
        m = nn.Sequential(
            nn.Conv1d(3, 4, 3, stride=2, padding=2, padding_mode="circular"),
            nn.ReLU(),
            nn.Conv1d(4, 4, 2, dilation=2, groups=4, bias=False),
            nn.Flatten(),
            nn.Linear(4 * 4, 2),
        )
        return m, (3, 9)
    if name == "conv_transpose2d":
        m = nn.Sequential(
            nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
            nn.Tanh(),
            nn.ConvTranspose2d(4, 2, (2, 3), dilation=(2, 1)),
            nn.Flatten(),
            nn.Linear(2 * 8 * 8, 2),
        )
        return m, (2, 3, 3)
    if name == "conv_transpose1d":
        m = nn.Sequential(
            nn.ConvTranspose1d(3, 2, 4, stride=3, padding=2, output_padding=2, dilation=2),
            nn.Tanh(),
            nn.ConvTranspose1d(2, 2, 1, bias=False),
        )
        return m, (3, 4)
    if name == "layernorm_cnn":
        m = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.LayerNorm((3, 4, 4)),
            nn.ReLU(),
            nn.Flatten(),
            nn.LayerNorm(48, bias=False),
            nn.Linear(48, 2),
        )
        return m, (2, 4, 4)
    if name == "residual":
        return Residual(), (5,)
    if name == "tokens_small_vocab":
        return Tokens(4, padding_idx=1), (7,)
    if name == "tokens_large_vocab":
        return Tokens(50, padding_idx=None), (3,)
    if name == "mixed":
        m = nn.Sequential(nn.Linear(5, 6), Custom(6), nn.Linear(6, 2))
        m.insert(2, MyLinear(6, 6))
        m.insert(3, KeepsForward(6, 6))
        return m, (5,)
    if name == "shared":
        return Twice(), (4,)
    if name == "frozen_weights":  # bias-only rules: Linear on tokens, conv, conv transpose
        m = nn.Sequential(
            nn.Conv1d(2, 3, 3), nn.Tanh(), nn.ConvTranspose1d(3, 2, 2, stride=2), nn.Tanh(),
            nn.Linear(8, 4), nn.Tanh(), nn.Flatten(), nn.Linear(8, 2),
        )  # fmt: skip
        for i in (0, 2, 4):
            m[i].weight.requires_grad_(False)
        return m, (2, 6)
    raise KeyError(name)


CASES = [
    "mlp",
    "mlp_nobias_multi",
    "linear_tokens",
    "conv_valid_stride_dilation",
    "conv_same_even",
    "conv_groups_reflect",
    "conv_spatial_out",
    "conv1d",
    "conv_transpose2d",
    "conv_transpose1d",
    "layernorm_cnn",
    "residual",
    "tokens_small_vocab",
    "tokens_large_vocab",
    "mixed",
    "shared",
    "frozen_weights",
]


def _check(module, x1, x2, **kw):
    for fn in (empirical_ntk, empirical_ntk_full):
        ref = fn(module, x1, x2, strategy="jacobian", batch_size=100)
        out = fn(module, x1, x2, strategy="structured", **kw)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        scale = float(ref.abs().max())
        assert scale > 1e-3  # not vacuous
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_structured_equals_jacobian_float64(name):
    module, shape = _case(name)
    module = module.to(F64)
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(5, *shape, generator=g, dtype=F64)
    x2 = torch.randn(3, *shape, generator=g, dtype=F64)
    _check(module, x1, None)
    _check(module, x1, x2)


def test_plan_names_each_parameters_rule():
    module, _ = _case("mixed")
    plan = plan_empirical_ntk(module.to(F64), torch.randn(4, 5, dtype=F64))
    rules = {r.param: r for r in plan.rules}
    assert plan.strategy == "structured"
    assert [rules[p].rule for p in ("0.weight", "3.weight", "4.bias")] == ["linear"] * 3
    assert rules["1.scale"].rule == "jacobian" and "Custom" in rules["1.scale"].reason
    assert rules["2.weight"].rule == "jacobian" and "forward" in rules["2.weight"].reason
    shared, _ = _case("shared")
    rules = {r.param: r for r in plan_empirical_ntk(shared, torch.randn(4, 4)).rules}
    assert "called 2 times" in rules["a.weight"].reason
    assert "another module" in rules["b.weight"].reason
    assert rules["b.bias"].rule == "linear" and rules["c.bias"].rule == "linear"
    assert rules["head.weight"].rule == "linear"
    assert set(rules) == {n for n, _ in shared.named_parameters()}


class SeqFirst(nn.Module):
    """A Linear that sees (T, N, d): the example axis is not first, so it must fall back."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x.transpose(0, 1)).sum(0)


def test_example_axis_not_first_falls_back():
    module = SeqFirst().to(F64)
    x = torch.randn(4, 5, 3, dtype=F64)
    (r, _) = plan_empirical_ntk(module, x).rules
    assert r.rule == "jacobian" and "example axis" in r.reason
    _check(module, x, x[:2] + 0.5)


@pytest.mark.parametrize(
    "name",
    [
        "conv_valid_stride_dilation",
        "linear_tokens",
        "conv1d",
        "conv_transpose2d",
        "conv_groups_reflect",
    ],
)
def test_both_routes_agree(name):
    """Every site forced onto the 'outer' and then the 'grad' route gives the same kernel."""
    module, shape = _case(name)
    module = module.to(F64)
    x1 = torch.randn(4, *shape, dtype=F64)
    x2 = torch.randn(3, *shape, dtype=F64)
    params, buffers = _params(module)
    for trace in (True, False):
        plan = plan_empirical_ntk(module, x1, x2, trace=trace)
        outs = []
        for route in ("outer", "grad"):
            rules = tuple(
                dataclasses.replace(r, route=route) if r.rule != "jacobian" else r
                for r in plan.rules
            )
            p = dataclasses.replace(plan, rules=rules)
            outs.append(_by_structure(module, params, buffers, x1, x2, trace, p))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("two_inputs", [False, True])
def test_tiles_and_recomputed_features(two_inputs):
    """Uneven tiles (b = 3 on 8 and 5 examples), with cached and with recomputed features."""
    module, shape = _case("residual")
    module = module.to(F64)
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(8, *shape, generator=g, dtype=F64)
    x2 = torch.randn(5, *shape, generator=g, dtype=F64) if two_inputs else None
    tiny = plan_empirical_ntk(module, x1, x2, batch_size=3, memory_budget=2000)
    assert not tiny.cache_features
    _check(module, x1, x2, batch_size=3)
    _check(module, x1, x2, batch_size=3, memory_budget=2000)


def test_float32_matches_float64():
    module, shape = _case("conv_groups_reflect")
    x = torch.randn(6, *shape, dtype=F64)
    ref = empirical_ntk_full(module.to(F64), x)
    out = empirical_ntk_full(module.float(), x.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_auto_uses_structured_and_explicit_strategy_errors():
    module, _ = _case("mlp")
    x = torch.randn(3, 5)
    assert plan_empirical_ntk(module, x).strategy == "structured"
    with pytest.raises(ValueError, match="strategy"):
        empirical_ntk(module, x, strategy="gram")


def test_store_tiles_resume_and_refuse_other_weights(tmp_path):
    from widelimit.empirical import empirical_ntk_to_store
    from widelimit.scale import StoreMismatchError

    module, shape = _case("residual")
    module = module.to(F64)
    x = torch.randn(8, *shape, dtype=F64)
    want = empirical_ntk(module, x, strategy="jacobian")
    path = tmp_path / "k.zarr"
    got = empirical_ntk_to_store(module, x, store=path, tile=3)
    torch.testing.assert_close(torch.as_tensor(got.ntk[:, :]), want, rtol=1e-12, atol=1e-12)
    for rec in sorted((path / "tiles").iterdir())[:2]:  # a killed run: two tiles missing
        rec.unlink()
    again = empirical_ntk_to_store(module, x, store=path, tile=3)
    torch.testing.assert_close(torch.as_tensor(again.ntk[:, :]), want, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        module.head.bias += 1.0
    with pytest.raises(StoreMismatchError, match="network spec"):
        empirical_ntk_to_store(module, x, store=path, tile=3)


def test_row_panels_when_features_do_not_all_fit():
    """14 examples, tiles of 3, a budget for 13 examples' features: panels of two row blocks."""
    module, shape = _case("layernorm_cnn")
    module = module.to(F64)
    x = torch.randn(14, *shape, dtype=F64)
    f = plan_empirical_ntk(module, x, batch_size=3).feature_bytes
    plan = plan_empirical_ntk(module, x, batch_size=3, memory_budget=13 * f)
    assert not plan.cache_features and (plan.memory_budget // 2) // (3 * f) == 2
    _check(module, x, None, batch_size=3, memory_budget=13 * f)
