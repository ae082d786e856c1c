"""``from_module``: the spec of a user's ``nn.Sequential`` against the user's own module.

Independent routes:

* structure: the spec's finite module, given the user's weights, computes the
  user's function to float64 rounding (every type, kernel size, stride, padding
  and activation must agree for that), and ``spec.module(width)`` has the same
  layers with the hidden widths changed and the readout kept;
* kernels: Monte Carlo over re-initialised copies of the *user's* module — its
  own ``reset_parameters`` (PyTorch's uniform default init) or a Gaussian
  re-initialisation with the scales given to ``from_module`` — against the spec's
  analytic NNGP and (``parameterization="standard"``, the user's module is trained
  as is) NTK.

Error model (as ``test_core_monte_carlo.py``): each entry must satisfy
``|analytic − MC| ≤ Z·sem + bias`` with ``Z = 4.5`` (≈ 7e-6 two-sided per entry)
and ``bias = BIAS_C·max|K|·(1/width)`` for nets with two or more hidden
nonlinearities (Hanin & Nica 2019).  With PyTorch's uniform first layer the
pre-activations are sums of ``d`` uniform terms, with excess kurtosis
``O(1/d)`` (module docstring of ``widelimit.from_torch``); ``UNIFORM_C·max|K|/d``
is added for that.  Calibration of ``UNIFORM_C``: the exact first-layer
``E[φ(h)φ(h')]`` under uniform vs Gaussian weights (2·10⁶ draws) differs by
≈ 0.25·max|K|/d for tanh at d = 4 and 16 (≤ 0.04/d for ReLU), so 0.5 leaves a 2x margin.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from widelimit import from_module
from widelimit.empirical import empirical_ntk
from widelimit.from_torch import TORCH_DEFAULT_W_STD
from widelimit.layers.activations import ElementwiseModule
from widelimit.layers.conv import ConvModule
from widelimit.layers.dense import DenseModule
from widelimit.layers.normalization import LayerNormModule
from widelimit.layers.pooling import AvgPoolModule, FlattenModule, GlobalAvgPoolModule

torch.set_num_threads(1)

Z = 4.5
BIAS_C = 3.0
UNIFORM_C = 0.5
F64 = torch.float64


def _mlp(width=32, d=5, out=3):
    return nn.Sequential(
        nn.Linear(d, width),
        nn.ReLU(),
        nn.Linear(width, width, bias=False),
        nn.LayerNorm(width, elementwise_affine=False),
        nn.Tanh(),
        nn.Dropout(0.1),
        nn.Identity(),
        nn.Linear(width, width),
        nn.GELU(approximate="tanh"),
        nn.Linear(width, out),
    )


def _cnn2d(width=16, out=4):
    return nn.Sequential(
        nn.Conv2d(2, width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1, padding_mode="circular"),
            nn.GELU(),
        ),
        nn.Conv2d(width, width, (2, 1)),
        nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, out),
    )


def _cnn1d(width=8, out=2):
    return nn.Sequential(
        nn.Conv1d(3, width, 5, padding="same"),
        nn.SiLU(),
        nn.Conv1d(width, width, 2, stride=2),
        nn.Softplus(),
        nn.AvgPool1d(3, stride=1, padding=1),
        nn.ELU(0.5),
        nn.Conv1d(width, width, 4, padding="same"),
        nn.Softplus(beta=2.0),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(width * 6, out),
    )


CASES = {
    "mlp": (_mlp, (5,)),
    "cnn2d": (_cnn2d, (2, 10, 10)),  # 10 -> pool 5 -> stride 2 'same' 3 -> (2,1) valid 2x3
    "cnn1d": (_cnn1d, (3, 12)),
}

# user module type -> the spec module type that must sit at the same position
_TYPES = {
    nn.Linear: DenseModule,
    nn.Conv1d: ConvModule,
    nn.Conv2d: ConvModule,
    nn.AvgPool1d: AvgPoolModule,
    nn.AvgPool2d: AvgPoolModule,
    nn.AdaptiveAvgPool2d: GlobalAvgPoolModule,
    nn.Flatten: FlattenModule,
    nn.LayerNorm: LayerNormModule,
    nn.Dropout: nn.Dropout,
}


def _leaves(m: nn.Module) -> list[nn.Module]:
    if isinstance(m, nn.Sequential):
        return [leaf for c in m.children() for leaf in _leaves(c)]
    return [m]


def _torch_pad(m) -> tuple[int, ...]:
    """Torch's padding as an ``F.pad`` tuple (last axis first, before/after per axis).

    ``padding="same"`` pads ``k − 1`` in total, the extra one after for even ``k``.
    """
    if m.padding == "valid":
        pairs = [(0, 0)] * len(m.kernel_size)
    elif m.padding == "same":
        pairs = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in m.kernel_size]
    else:
        pairs = [(p, p) for p in m.padding]
    return tuple(p for pair in reversed(pairs) for p in pair)


def _check_structure(user_leaves, spec_mod, hidden=None):
    spec_leaves = list(spec_mod.layers)
    assert len(spec_leaves) == len(user_leaves)
    affine = [u for u in user_leaves if isinstance(u, nn.Linear | nn.Conv1d | nn.Conv2d)]
    for u, s in zip(user_leaves, spec_leaves, strict=True):
        want = next((v for k, v in _TYPES.items() if isinstance(u, k)), None)
        if want is not None:
            assert isinstance(s, want), (u, s)
        elif isinstance(u, nn.Identity):
            assert type(s).__name__ == "IdentityModule"
        else:
            assert isinstance(s, ElementwiseModule), (u, s)
        if isinstance(u, nn.Conv1d | nn.Conv2d):
            assert s.kernel_size == tuple(u.kernel_size) and s.stride == tuple(u.stride)
            assert s.pad == _torch_pad(u), (s.pad, _torch_pad(u))
            assert s.mode == ("circular" if u.padding_mode == "circular" else "constant")
        if isinstance(u, nn.AvgPool1d | nn.AvgPool2d):
            nd = len(s.window)
            ks, st = u.kernel_size, u.stride

            def tup(v, nd=nd):
                return tuple(v) if isinstance(v, tuple) else (v,) * nd

            assert s.window == tup(ks) and s.stride == tup(st), (s, u)
        if isinstance(u, nn.Linear | nn.Conv1d | nn.Conv2d):
            last = u is affine[-1]
            out_u = u.out_features if isinstance(u, nn.Linear) else u.out_channels
            out_s = s.out_features if isinstance(s, DenseModule) else s.out_channels
            assert out_s == (out_u if hidden is None or last else hidden)
            assert (s.bias is None) == (u.bias is None)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", list(CASES))
def test_spec_module_has_the_users_structure_and_function(case):
    make, in_shape = CASES[case]
    user = make().to(F64).eval()
    spec = from_module(user, parameterization="standard", input_shape=in_shape)
    mod = spec.module(input_shape=in_shape, seed=0, dtype=F64).eval()
    leaves = _leaves(user)
    _check_structure(leaves, mod)
    with torch.no_grad():  # give the spec module the user's parameters
        for u, s in zip(leaves, mod.layers, strict=True):
            if isinstance(u, nn.Linear | nn.Conv1d | nn.Conv2d):
                s.weight.copy_(u.weight)
                if u.bias is not None:
                    s.bias.copy_(u.bias)
    x = torch.randn(4, *in_shape, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), user(x), rtol=1e-12, atol=1e-12)
    # another hidden width: same layers, readout kept
    _check_structure(leaves, spec.module(7, input_shape=in_shape, dtype=F64), hidden=7)


def test_torch_default_scales_and_overrides():
    user = _mlp(width=32, d=5)
    spec = from_module(user, overrides={"9": {"w_std": 2.0, "b_std": 0.3}})
    dense = [layer for layer in spec.layers if type(layer).__name__ == "Dense"]
    assert [d.w_std for d in dense[:3]] == [pytest.approx(TORCH_DEFAULT_W_STD)] * 3
    # PyTorch: U(±1/√fan_in) has std 1/√(3 fan_in); this is what reset_parameters draws
    assert dense[0].b_std == pytest.approx(1 / math.sqrt(3 * 5))
    assert dense[1].b_std == 0.0  # bias=False
    assert dense[2].b_std == pytest.approx(1 / math.sqrt(3 * 32))
    assert (dense[3].w_std, dense[3].b_std) == (2.0, 0.3)
    w = torch.cat([_mlp(width=32, d=5)[7].weight.detach().flatten() for _ in range(40)])
    assert float(w.std()) * math.sqrt(32) == pytest.approx(TORCH_DEFAULT_W_STD, rel=0.02)
    spec2 = from_module(user, w_std=1.3, b_std=0.0)
    assert all(d.w_std == 1.3 and d.b_std == 0.0 for d in spec2.layers if hasattr(d, "w_std"))


# --------------------------------------------------------------------------- Monte Carlo
def _mc_user(user: nn.Module, reinit, x: torch.Tensor, n_samples: int, ntk_samples: int):
    """Mean and standard error over re-initialised copies of ``user`` (NNGP, NTK)."""
    out = {}
    for key, s_count in (("nngp", n_samples), ("ntk", ntk_samples)):
        vals = []
        for s in range(s_count):
            reinit(user, 1000 * (key == "ntk") + s)
            if key == "nngp":
                with torch.no_grad():
                    f = user(x)
                vals.append(f @ f.T / f.shape[1])  # mean over the i.i.d. output channels
            else:
                vals.append(empirical_ntk(user, x))
        v = torch.stack(vals)
        out[key] = (v.mean(0), v.std(0, unbiased=True) / math.sqrt(s_count))
    return out


def _reset_torch(user: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in user.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            m.reset_parameters()


def _gaussian(w_std: float, b_std: float):
    def reinit(user: nn.Module, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in user.modules():
                if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=F64))
                    m.weight.mul_(w_std / math.sqrt(fan_in))
                    if m.bias is not None:
                        m.bias.copy_(b_std * torch.randn(m.bias.shape, generator=g, dtype=F64))

    return reinit


def _z_check(spec, x, mc, width, extra_bias=0.0):
    k = spec.kernel(x)
    worst = {}
    for key in ("nngp", "ntk"):
        a = getattr(k, key)
        m, sem = mc[key]
        bias = (BIAS_C / width + extra_bias) * float(a.abs().max())
        ratio = float(((a - m).abs() / (Z * sem + bias)).max())
        worst[key] = (ratio, float(((a - m).abs() / sem).max()))  # (err/allowed, max |z|)
        assert ratio <= 1.0, (key, worst[key])
    return worst


def test_kernel_matches_monte_carlo_over_torch_default_init():
    """The user's own reset_parameters (uniform weights and fan-in-dependent biases)."""
    width, d = 256, 16
    user = nn.Sequential(
        nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 4)
    ).to(F64)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, d, generator=g, dtype=F64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]  # a strongly correlated pair
    spec = from_module(user, parameterization="standard")
    mc = _mc_user(user, _reset_torch, x, n_samples=200, ntk_samples=100)
    _z_check(spec, x, mc, width, extra_bias=UNIFORM_C / d)


def test_cnn_kernel_matches_monte_carlo_over_gaussian_reinit():
    """Gaussian re-initialisation of the user's CNN with the scales given to from_module."""
    width = 64
    user = nn.Sequential(
        nn.Conv2d(2, width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 8),
    ).to(F64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=F64)
    x[1] = 0.8 * x[0] + 0.2 * x[1]
    spec = from_module(user, w_std=1.4, b_std=0.2, parameterization="standard")
    mc = _mc_user(user, _gaussian(1.4, 0.2), x, n_samples=200, ntk_samples=60)
    _z_check(spec, x, mc, width)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.Sequential(nn.Linear(4, 8), nn.ConvTranspose1d(8, 8, 3)), "ConvTranspose1d.*C, L"),
        (
            nn.Sequential(nn.Conv2d(3, 8, 3), nn.ConvTranspose2d(8, 8, 3, 2, output_padding=1)),
            "ConvTranspose2d.*output_padding 1",
        ),
        (nn.Sequential(nn.Linear(4, 8), nn.MultiheadAttention(8, 2)), "MultiheadAttention"),
        (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)), "'1'.*BatchNorm1d"),
        (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(6, 2)), "inconsistent widths"),
        (nn.Sequential(nn.Conv1d(2, 8, 3), nn.Linear(8, 2)), "nn.Flatten"),
        (nn.Sequential(nn.Conv2d(2, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 2)), "Flatten"),
        (nn.Sequential(nn.Conv1d(2, 8, 3, padding=2)), "neither 'valid'"),
        (nn.Sequential(nn.Conv1d(2, 8, 3, padding=1, stride=2)), "input_shape"),
        (nn.Sequential(nn.Conv1d(2, 8, 3, dilation=2)), "dilation"),
        (nn.Sequential(nn.Conv1d(2, 8, 3, padding=1, padding_mode="reflect")), "padding_mode"),
        (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)), "elementwise_affine"),
        (
            nn.Sequential(nn.Conv1d(2, 8, 4, padding="same", padding_mode="replicate")),
            "padding_mode",
        ),
        (nn.Sequential(nn.Conv2d(2, 8, 3), nn.AdaptiveAvgPool2d(2)), "output_size=1"),
    ],
)
def test_unmappable_modules_raise_clear_errors(module, match):
    with pytest.raises(ValueError, match=match):
        from_module(module)


def test_shared_modules_are_refused():
    tied = nn.Linear(8, 8)
    with pytest.raises(ValueError, match="share weights"):
        from_module(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), tied, nn.ReLU(), tied))
    relu = nn.ReLU()  # parameter-free modules may be reused
    spec = from_module(nn.Sequential(nn.Linear(4, 8), relu, nn.Linear(8, 8), relu))
    assert len(spec.layers) == 4


def test_argument_errors():
    user = _mlp()
    with pytest.raises(ValueError, match="overrides"):
        from_module(user, overrides={"1": {"w_std": 1.0}})  # '1' is a ReLU
    with pytest.raises(ValueError, match="no bias"):
        from_module(user, overrides={"2": {"b_std": 0.1}})
    with pytest.raises(ValueError, match="parameterization"):
        from_module(user, parameterization="mup")
    with pytest.raises(ValueError, match="w_std"):
        from_module(user, w_std=-1.0)
    with pytest.raises(TypeError, match="module"):
        from_module("net")
    # with the input shape, strided padded convs are matched or refused per size
    conv = nn.Sequential(nn.Conv1d(2, 8, 3, padding=1, stride=2))
    assert from_module(conv, input_shape=(2, 9)).layers[0].padding == "same"
    with pytest.raises(ValueError, match="input size 8"):
        from_module(conv, input_shape=(2, 8))
    with pytest.raises(ValueError, match="inconsistent widths"):
        from_module(
            nn.Sequential(nn.Conv1d(2, 8, 3), nn.Flatten(), nn.Linear(40, 2)), input_shape=(2, 8)
        )


# --------------------------------------------------------------------------- issue 24, item 5
class _Residual(nn.Sequential):
    """A skip connection written as an nn.Sequential subclass: x + block(x)."""

    def forward(self, x):
        return x + super().forward(x)


class _ScaledLinear(nn.Linear):
    def forward(self, x):
        return 2.0 * super().forward(x)


class _ShiftedReLU(nn.ReLU):
    def forward(self, x):
        return torch.relu(x - 0.5)


class _PlainLinear(nn.Linear):
    """A subclass that changes nothing the forward pass or the init depends on."""


class _NormalInitLinear(nn.Linear):
    def reset_parameters(self):
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_features))
        nn.init.zeros_(self.bias)


def test_issue24_from_module_refuses_sequential_subclass_with_forward():
    res = _Residual(nn.Linear(8, 8), nn.ReLU())
    user = nn.Sequential(nn.Linear(4, 8), res, nn.Linear(8, 2))
    # the module really computes something a chain would not: the skip is seen in the output
    x = torch.randn(3, 4)
    assert not torch.allclose(res(x @ torch.ones(4, 8)), nn.Sequential(*res)(x @ torch.ones(4, 8)))
    with pytest.raises(ValueError, match=r"'1'.*_Residual subclasses nn\.Sequential.*forward"):
        from_module(user)
    with pytest.raises(ValueError, match=r"<module>.*_Residual"):
        from_module(res)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (_ScaledLinear(8, 8), r"'1'.*_ScaledLinear subclasses nn\.Linear.*own forward"),
        (_ShiftedReLU(), r"'1'.*_ShiftedReLU subclasses nn\.ReLU.*own forward"),
    ],
)
def test_issue24_from_module_refuses_layer_subclass_with_own_forward(layer, match):
    with pytest.raises(ValueError, match=match):
        from_module(nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 2)))


def test_from_module_maps_subclass_without_changes():
    user = nn.Sequential(_PlainLinear(4, 8), nn.ReLU(), _PlainLinear(8, 2))
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert from_module(user) == from_module(plain)


def test_issue24_from_module_refuses_overridden_reset_parameters_without_scales():
    user = nn.Sequential(_NormalInitLinear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"'0'.*reset_parameters.*w_std and b_std"):
        from_module(user)
    with pytest.raises(ValueError, match=r"'0'.*reset_parameters.*pass b_std"):
        from_module(user, overrides={"0": {"w_std": 1.0}})
    spec = from_module(user, overrides={"0": {"w_std": 1.0, "b_std": 0.0}})
    assert (spec.layers[0].w_std, spec.layers[0].b_std) == (1.0, 0.0)
    assert from_module(user, w_std=1.0, b_std=0.0).layers[0].w_std == 1.0


def _spectral_new(m):
    return torch.nn.utils.parametrizations.spectral_norm(m)


def _weight_norm_new(m):
    return torch.nn.utils.parametrizations.weight_norm(m)


def _spectral_old(m):
    return torch.nn.utils.spectral_norm(m)


def _forward_hook(m):
    m.register_forward_hook(lambda mod, inp, out: 2 * out)
    return m


def _pre_hook(m):
    m.register_forward_pre_hook(lambda mod, inp: (inp[0] + 1,))
    return m


def _backward_hook(m):
    m.register_full_backward_hook(lambda mod, gin, gout: None)
    return m


@pytest.mark.parametrize(
    ("wrap", "match"),
    [
        (_spectral_new, r"'2'.*parametrized \(weight"),
        (_weight_norm_new, r"'2'.*parametrized \(weight"),
        (_spectral_old, r"'2'.*forward pre-hook \(SpectralNorm"),
        (_forward_hook, r"'2'.*forward hook"),
        (_pre_hook, r"'2'.*forward pre-hook"),
        (_backward_hook, r"'2'.*backward hook"),
    ],
)
def test_issue24_from_module_refuses_spectral_norm_and_hooks(wrap, match):
    user = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), wrap(nn.Linear(8, 8)), nn.ReLU())
    with pytest.raises(ValueError, match=match):
        from_module(user)


def test_issue24_from_module_refuses_global_hooks():
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        with pytest.raises(ValueError, match="global module hooks"):
            from_module(nn.Sequential(nn.Linear(4, 8), nn.ReLU()))
    finally:
        handle.remove()
    assert len(from_module(nn.Sequential(nn.Linear(4, 8), nn.ReLU())).layers) == 2


def test_issue24_from_module_refuses_lazy_linear():
    user = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"'0'.*uninitialised lazy module.*forward pass"):
        from_module(user)
    user(torch.randn(3, 5))  # initialised: it is an nn.Linear(5, 8) now
    assert from_module(user) == from_module(
        nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    )


def test_from_module_meta_device_gives_the_cpu_spec():
    """The spec reads only sizes, so a module on the meta device maps like one on the CPU."""
    meta = nn.Sequential(nn.Linear(4, 8, device="meta"), nn.ReLU(), nn.Linear(8, 2, device="meta"))
    cpu = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert from_module(meta) == from_module(cpu)
