"""``from_module``: the infinite-width spec of an ordinary ``torch.nn.Sequential``.

Each standard PyTorch layer maps to the widelimit layer with the same finite
forward pass (widelimit keeps NCL / NCHW, as torch does)::

    nn.Linear            -> Dense            nn.Conv1d / nn.Conv2d  -> Conv1d / Conv2d
    nn.ConvTranspose1d / 2d -> ConvTranspose1d / 2d (padding/output_padding as below)
    nn.AvgPool1d / 2d    -> AvgPool1d / 2d   nn.AdaptiveAvgPool1d/2d(1) -> GlobalAvgPool
    nn.Flatten           -> Flatten          nn.LayerNorm (no affine)   -> LayerNorm
    nn.Dropout           -> Dropout          nn.Identity                -> Identity
    nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Softplus,
    nn.ELU               -> the activation of the same name (closed-form or
                            quadrature dual; GELU(approximate="tanh") and
                            Softplus(beta≠1) through a numerical Activation)

and nested ``nn.Sequential`` containers are flattened.

**Only behaviour it can see.**  ``from_module`` maps a module by its class, so it
refuses (naming the module's path and the reason) every module whose forward pass
may differ from the class it would be mapped to: a subclass of a torch layer or of
``nn.Sequential`` that defines its own ``forward`` (or ``__call__``), e.g. a
residual block written as an ``nn.Sequential`` subclass; a module with forward or
backward hooks (the old hook-based ``torch.nn.utils.spectral_norm`` and
``weight_norm`` are pre-hooks), or global module hooks; a parametrized module
(``torch.nn.utils.parametrizations.spectral_norm``/``weight_norm``/``orthogonal``);
a subclass that overrides ``reset_parameters`` unless ``w_std`` and ``b_std`` are
given (its initialisation is not PyTorch's default); and an uninitialised lazy module
(``nn.LazyLinear``, ``nn.LazyConv2d``: run one forward pass first).

**Initialisation scales.**  Widelimit's convention is ``Var W = σw²/fan_in``,
``Var b = σb²`` (``w_std = σw``, ``b_std = σb``).  Unless the caller gives
``w_std``/``b_std`` (globally or per layer), the scales are read from PyTorch's
default initialisation of ``nn.Linear`` and ``nn.ConvNd`` (``reset_parameters``):

* weight: ``kaiming_uniform_(a=√5)``, i.e. ``U(−1/√fan_in, 1/√fan_in)``,
  variance ``1/(3·fan_in)``: **``w_std = 1/√3``** for every layer;
* bias: ``U(−1/√fan_in, 1/√fan_in)``, variance ``1/(3·fan_in)``: **``b_std =
  1/√(3·fan_in)``**, which depends on the fan-in.  For the first layer the fan-in
  is the input size and stays fixed; for every later layer it is a hidden width,
  so in the strict infinite-width limit PyTorch's default biases **vanish**
  (``b_std ∝ width^{-1/2}``).  ``from_module`` evaluates ``1/√(3·fan_in)`` at the
  fan-in of the module it is given, so the spec describes that module at its own
  widths (its bias terms are ``O(1/width)``, the order of the finite-width
  corrections themselves); ``spec.with_width(...)`` keeps those values.  Pass
  ``b_std=0.0`` for the strict limit.

``nn.ConvTranspose1d/2d`` stores its weight as ``(in, out, *k)`` and PyTorch computes the
fan-in of its default init from the second axis: ``Var W = 1/(3·out·∏k)``.  Widelimit's
(and Neural Tangents') transposed convolutions use ``fan_in = in·∏k``, so the default
is **``w_std = √(in/(3·out))``** (``1/√3`` when ``in = out``) and ``b_std = 1/√(3·out·∏k)``,
again at the module's own widths.  Padding: ``padding=0`` with ``output_padding =
max(stride − k, 0)`` is widelimit's ``"valid"`` and ``padding=(k − stride)/2`` (``k − stride``
even and positive) with ``output_padding=0`` its ``"same"``, per axis; any other
combination raises.

Weights drawn uniformly rather than Gaussian give the same limit for every
layer whose fan-in grows with the width: given the previous layer, a
pre-activation is a sum of ``fan_in`` independent terms, Gaussian in the limit
by the central limit theorem, and only the variance enters the kernel.  The
first layer is the exception when its fan-in (the input dimension ``d``) is
small: its pre-activations are then exact sums of ``d`` uniform terms whose
excess kurtosis ``−1.2·Σx⁴/(Σx²)²`` is ``O(1/d)``; the kernel (computed for
Gaussian weights) is exact for Gaussian first-layer weights and accurate to
``O(1/d)`` for uniform ones.

**Parameterization.**  A torch module trains its raw weights, i.e. the
``"standard"`` parameterization: with ``parameterization="standard"`` the
spec's NTK is the one of the given module at its own widths (it grows with the
width).  The default ``"ntk"`` gives the same NNGP and the width-independent
NTK of the NTK parameterization (Jacot et al. 2018), the usual infinite-width limit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

from widelimit._validation import check_nonnegative
from widelimit.layers import (
    ELU,
    GELU,
    Activation,
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    ConvTranspose1d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
    serial,
)
from widelimit.layers.conv import axis_window
from widelimit.layers.dense import check_parameterization

__all__ = ["TORCH_DEFAULT_W_STD", "from_module"]

TORCH_DEFAULT_W_STD = 1.0 / math.sqrt(3.0)
"""``w_std`` of PyTorch's default ``kaiming_uniform_(a=√5)``: ``U(±1/√fan_in)`` has variance
``1/(3·fan_in)``."""

_PLANNED: dict[str, str] = {}
_UNMAPPABLE = {
    "MultiheadAttention": (
        "its forward takes (query, key, value) in (L, N, E) or (N, L, E) layout and returns a "
        "tuple (output, weights), so it cannot run inside an nn.Sequential; and its attention "
        "(independent query/key projections, 1/sqrt(head_dim) scaling, softmax) has no "
        "closed-form infinite-width kernel. Write the spec with "
        "widelimit.GlobalSelfAttention instead (linear_scaling=True for a softmax kernel)"
    ),
}
_SUPPORTED = (
    "nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.AvgPool1d, "
    "nn.AvgPool2d, nn.AdaptiveAvgPool1d(1), "
    "nn.AdaptiveAvgPool2d(1), nn.Flatten, nn.LayerNorm, nn.Dropout, nn.Identity, nn.ReLU, "
    "nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Softplus, nn.ELU, nested "
    "nn.Sequential"
)


_AFFINE = nn.Linear | nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d | nn.ConvTranspose2d


@dataclass
class _State:
    """What is known about the activations flowing between layers."""

    rank: int | None  # 0: (N, C) features; 1: (N, C, L); 2: (N, C, H, W); None: not yet known
    channels: int | None  # C (features or channels), None if unknown
    spatial: tuple[int, ...] | None  # spatial sizes if the input shape was given
    source: str  # description of the layer that produced them (for messages)
    flattened_from: int | None = None  # channels before a Flatten of unknown spatial size
    singleton: str = ""  # after AdaptiveAvgPool: torch's shape, e.g. (N, C, 1, 1); widelimit (N, C)


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Leaf modules of (nested) ``nn.Sequential`` containers, with their qualified names."""
    if isinstance(module, nn.Sequential):
        _check_visible(prefix or "<module>", module, nn.Sequential)
        out = []
        # not named_children(): it skips a module that appears twice (weight tying)
        for name, child in module._modules.items():
            if child is not None:
                out.extend(_leaves(child, f"{prefix}.{name}" if prefix else name))
        return out
    return [(prefix or "<module>", module)]


_HOOKS = {
    "_forward_pre_hooks": "forward pre-hook",
    "_forward_hooks": "forward hook",
    "_backward_pre_hooks": "backward pre-hook",
    "_backward_hooks": "backward hook",
}
_GLOBAL_HOOKS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
)


def _torch_base(cls: type) -> type:
    """The first class of ``cls``'s MRO defined by torch itself (``torch.nn.modules.*``)."""
    for c in cls.__mro__:
        if c.__module__.startswith("torch.nn.modules."):
            return c
    return nn.Module


def _check_visible(name: str, m: nn.Module, base: type | None = None) -> None:
    """Refuse a module whose forward pass ``from_module`` cannot read off its class.

    ``base`` is the torch class ``m`` is mapped as (default: the first torch class of its
    MRO); ``m`` must run ``base.forward`` unchanged: no subclass ``forward``/``__call__``,
    no hooks, no parametrizations, and it must be initialised (not lazy).
    """
    cls = type(m)
    base = base or _torch_base(cls)
    where = f"'{name}' ({cls.__name__})" if m._modules else _describe(name, m)
    if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params():
        raise ValueError(
            f"{where} is an uninitialised lazy module ({cls.__name__}): its input size is "
            "unknown until it has seen an input; run one forward pass on an example batch "
            "first (it then becomes an ordinary layer), or build it with explicit sizes "
            "(e.g. nn.Linear(in_features, out_features))"
        )
    if parametrize.is_parametrized(m):
        names = ", ".join(sorted(m.parametrizations.keys()))
        raise ValueError(
            f"{where} is parametrized ({names} computed by torch.nn.utils.parametrize, e.g. "
            "spectral_norm or weight_norm): its effective weights are not the Gaussian "
            "weights of the mapped layer, so from_module cannot give its kernel; remove the "
            "parametrization (torch.nn.utils.parametrize.remove_parametrizations) or write "
            "the spec by hand"
        )
    for attr, what in _HOOKS.items():
        hooks = getattr(m, attr, None)
        if hooks:
            kinds = ", ".join(sorted({type(h).__name__ for h in hooks.values()}))
            raise ValueError(
                f"{where} has a {what} ({kinds}; e.g. the old torch.nn.utils.spectral_norm or "
                "weight_norm): hooks can change what the module computes or how it trains, "
                "which from_module cannot see; remove the hooks (handle.remove(), or "
                "torch.nn.utils.remove_spectral_norm / remove_weight_norm) or write the spec "
                "by hand"
            )
    for attr in _GLOBAL_HOOKS:
        if getattr(torch_module, attr, None):
            raise ValueError(
                f"global module hooks are registered (torch.nn.modules.module.{attr}, e.g. by "
                "torch.nn.modules.module.register_module_forward_hook): they run on every "
                f"module, including {where}, and from_module cannot see what they do; remove "
                "them before calling from_module"
            )
    if base is nn.Module:
        return  # not a torch layer: the mapping itself refuses it, naming what is supported
    for method in ("forward", "__call__"):
        if getattr(cls, method) is not getattr(base, method):
            kind = "nn.Sequential" if base is nn.Sequential else f"nn.{base.__name__}"
            raise ValueError(
                f"{where}: its class {cls.__qualname__} subclasses {kind} but defines its own "
                f"{method} (e.g. a skip connection or a changed activation), which from_module "
                f"cannot see; it maps layers by class and would treat it as a plain {kind}. "
                "Write the spec with widelimit layers (a skip connection is "
                "serial(FanOut(2), parallel(block, Identity()), FanInSum()))"
            )


def _describe(name: str, module: nn.Module) -> str:
    return f"'{name}' ({module!r})"


def _check_override(overrides: Mapping[str, Mapping[str, float]] | None, affine: set[str]):
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise TypeError(
            "`overrides` must map module names (as in module.named_modules()) to "
            f"{{'w_std': ..., 'b_std': ...}}; got {type(overrides).__name__}"
        )
    out: dict[str, dict[str, float]] = {}
    for name, vals in overrides.items():
        if name not in affine:
            raise ValueError(
                f"`overrides` names {name!r}, which is not an nn.Linear/nn.Conv layer of the "
                f"module; affine layers are: {', '.join(sorted(affine)) or 'none'}"
            )
        if not isinstance(vals, Mapping) or not set(vals) <= {"w_std", "b_std"}:
            raise ValueError(
                f"`overrides[{name!r}]` must be a mapping with keys 'w_std' and/or 'b_std'; "
                f"got {vals!r}"
            )
        out[name] = {
            k: check_nonnegative(f"overrides[{name!r}][{k!r}]", v) for k, v in vals.items()
        }
    return out


def _scales(
    name: str,
    module: nn.Module,
    fan_in: int,
    w_std: float | None,
    b_std: float | None,
    override: Mapping[str, float],
) -> tuple[float, float]:
    has_bias = getattr(module, "bias", None) is not None
    base = _torch_base(type(module))
    if type(module).reset_parameters is not base.reset_parameters:
        missing = [
            k
            for k, v in (("w_std", w_std), ("b_std", b_std if has_bias else 0.0))
            if v is None and k not in override
        ]
        if missing:
            raise ValueError(
                f"{_describe(name, module)}: its class {type(module).__qualname__} overrides "
                f"reset_parameters, so its initialisation is not PyTorch's default that "
                f"from_module reads the scales from; pass {' and '.join(missing)} (to "
                f"from_module, or per layer in `overrides`) with the scales it draws"
            )
    w = override.get("w_std", TORCH_DEFAULT_W_STD if w_std is None else w_std)
    b_default = 1.0 / math.sqrt(3.0 * fan_in) if b_std is None else b_std
    b = override.get("b_std", b_default)
    if not has_bias:
        if "b_std" in override and override["b_std"] > 0:
            raise ValueError(
                f"`overrides[{name!r}]` sets b_std = {override['b_std']} but the layer has "
                "no bias (bias=False); remove it or give the layer a bias"
            )
        b = 0.0
    return float(w), float(b)


def _expect_rank(name: str, module: nn.Module, state: _State, want: int) -> None:
    if state.singleton and want != 0:
        raise ValueError(
            f"{_describe(name, module)} follows a global average pool, which leaves no "
            "spatial axes to act on"
        )
    if state.rank is None or state.rank == want:
        return
    kind = {0: "(N, features)", 1: "(N, C, L)", 2: "(N, C, H, W)"}
    hint = ""
    if want == 0:
        hint = (
            "; torch's nn.Linear acts on the last axis while widelimit's Dense acts on "
            "channels: insert nn.Flatten() (or nn.AdaptiveAvgPool2d(1), nn.Flatten()) before it"
        )
    raise ValueError(
        f"{_describe(name, module)} expects {kind[want]} inputs but {state.source} gives "
        f"{kind[state.rank]}{hint}"
    )


def _expect_channels(name: str, module: nn.Module, state: _State, n_in: int, what: str) -> None:
    if state.singleton and state.rank == 0:
        raise ValueError(
            f"{_describe(name, module)}: {state.source} leaves {state.singleton}; add nn.Flatten() "
            "before this layer"
        )
    if state.channels is not None and state.channels != n_in:
        raise ValueError(
            f"inconsistent widths: {_describe(name, module)} expects {n_in} {what} but "
            f"{state.source} gives {state.channels}"
        )
    if state.channels is None and state.flattened_from is not None:
        if n_in % state.flattened_from:
            raise ValueError(
                f"inconsistent widths: {_describe(name, module)} expects {n_in} input features, "
                f"not a multiple of the {state.flattened_from} channels flattened before it"
            )


def _padding_mode(name: str, module: nn.Module, pad: tuple[int, ...], kernel, stride, state):
    """Map torch's symmetric padding ``pad`` (per axis) onto widelimit's padding names."""
    kind = "valid"
    mode = getattr(module, "padding_mode", "zeros")
    if mode not in ("zeros", "circular"):
        raise ValueError(
            f"{_describe(name, module)}: padding_mode={mode!r} has no widelimit equivalent; "
            "use 'zeros' or 'circular'"
        )
    if all(p == 0 for p in pad):
        return kind
    kind = "circular" if mode == "circular" else "same"
    for axis, (p, k, s) in enumerate(zip(pad, kernel, stride, strict=True)):
        if s == 1:
            if 2 * p != k - 1:
                raise ValueError(
                    f"{_describe(name, module)}: padding {p} with kernel {k} is neither 'valid' "
                    f"(padding 0) nor 'same' (padding (k−1)/2 = {(k - 1) / 2:g}); widelimit "
                    "supports those two"
                )
            continue
        if state.spatial is None:
            raise ValueError(
                f"{_describe(name, module)}: a strided layer with padding {p} matches "
                "widelimit's 'same' geometry only for some input sizes; pass "
                "`input_shape=` to from_module so it can be checked"
            )
        size = state.spatial[axis]
        win = axis_window(type(module).__name__, str(axis), size, k, s, kind)
        torch_out = (size + 2 * p - k) // s + 1
        if win.before != p or win.out != torch_out:
            raise ValueError(
                f"{_describe(name, module)}: with input size {size}, padding {p}, kernel {k} and "
                f"stride {s}, torch reads from position −{p} and gives {torch_out} outputs, "
                f"while widelimit's padding='{kind}' pads {win.before} before and gives "
                f"{win.out} (widelimit's convolutions have no explicit-padding option yet); "
                "use padding 0, stride 1, or an input size for which they agree"
            )
    return kind


def _spatial_out(state: _State, pad, kernel, stride) -> tuple[int, ...] | None:
    if state.spatial is None:
        return None
    return tuple(
        (n + 2 * p - k) // s + 1
        for n, p, k, s in zip(state.spatial, pad, kernel, stride, strict=True)
    )


def _conv(name, m, state, w_std, b_std, override, param) -> Layer:
    nd = 1 if isinstance(m, nn.Conv1d) else 2
    _expect_rank(name, m, state, nd)
    if m.groups != 1 or any(d != 1 for d in m.dilation):
        raise ValueError(
            f"{_describe(name, m)}: groups and dilation other than 1 are not widelimit layers"
        )
    _expect_channels(name, m, state, m.in_channels, "input channels")
    kernel, stride = tuple(m.kernel_size), tuple(m.stride)
    if isinstance(m.padding, str):
        pad = (0,) * nd if m.padding == "valid" else tuple((k - 1) // 2 for k in kernel)
        if m.padding == "same" and any(k % 2 == 0 for k in kernel):
            # torch puts the extra zero after, like widelimit's 'same'
            _padding_mode(name, m, (0,) * nd, kernel, stride, state)  # checks padding_mode
            padding = "circular" if m.padding_mode == "circular" else "same"
            spatial = state.spatial
        else:
            padding = _padding_mode(name, m, pad, kernel, stride, state)
            spatial = _spatial_out(state, pad, kernel, stride)
    else:
        pad = tuple(m.padding)
        padding = _padding_mode(name, m, pad, kernel, stride, state)
        spatial = _spatial_out(state, pad, kernel, stride)
    fan_in = m.in_channels * math.prod(kernel)
    w, b = _scales(name, m, fan_in, w_std, b_std, override)
    cls = Conv1d if nd == 1 else Conv2d
    layer = cls(
        m.out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        w_std=w,
        b_std=b,
        parameterization=param,
    )
    state.rank, state.channels, state.spatial = nd, m.out_channels, spatial
    state.flattened_from = None
    return layer


def _transpose_padding(name: str, m: nn.Module) -> str:
    """Widelimit's padding name for torch's ``padding``/``output_padding`` (module docstring)."""
    kinds = {"valid", "same"}
    for p, op, k, s in zip(m.padding, m.output_padding, m.kernel_size, m.stride, strict=True):
        ok = set()
        if p == 0 and op == max(s - k, 0):
            ok |= {"valid", "same"} if k <= s else {"valid"}  # k <= s: the two coincide
        if k > s and (k - s) % 2 == 0 and p == (k - s) // 2 and op == 0:
            ok.add("same")
        kinds &= ok
        if not ok:
            raise ValueError(
                f"{_describe(name, m)}: padding {p} with output_padding {op} (kernel {k}, "
                f"stride {s}) is not a widelimit transposed-convolution geometry; use padding=0 "
                f"and output_padding={max(s - k, 0)} ('valid')"
                + (
                    f", or padding={(k - s) // 2} and output_padding=0 ('same')"
                    if k > s and (k - s) % 2 == 0
                    else ""
                )
            )
    if not kinds:
        raise ValueError(
            f"{_describe(name, m)}: its axes map to different widelimit paddings ('valid' on "
            "one, 'same' on another); use one geometry on every axis"
        )
    return "valid" if "valid" in kinds else "same"


def _conv_transpose(name, m, state, w_std, b_std, override, param) -> Layer:
    nd = 1 if isinstance(m, nn.ConvTranspose1d) else 2
    _expect_rank(name, m, state, nd)
    if m.groups != 1 or any(d != 1 for d in m.dilation):
        raise ValueError(
            f"{_describe(name, m)}: groups and dilation other than 1 are not widelimit layers"
        )
    _expect_channels(name, m, state, m.in_channels, "input channels")
    padding = _transpose_padding(name, m)
    kernel, stride = tuple(m.kernel_size), tuple(m.stride)
    # torch's default init takes the fan-in from weight.shape[1] = out_channels (docstring)
    w, b = _scales(name, m, m.out_channels * math.prod(kernel), w_std, b_std, override)
    if w_std is None and "w_std" not in override:
        w = TORCH_DEFAULT_W_STD * math.sqrt(m.in_channels / m.out_channels)
    cls = ConvTranspose1d if nd == 1 else ConvTranspose2d
    layer = cls(
        m.out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        w_std=w,
        b_std=b,
        parameterization=param,
    )
    if state.spatial is not None:
        state.spatial = tuple(
            (n - 1) * s - 2 * p + k + op
            for n, p, k, s, op in zip(
                state.spatial, m.padding, kernel, stride, m.output_padding, strict=True
            )
        )
    state.rank, state.channels, state.flattened_from = nd, m.out_channels, None
    return layer


def _linear(name, m, state, w_std, b_std, override, param) -> Layer:
    _expect_rank(name, m, state, 0)
    _expect_channels(name, m, state, m.in_features, "input features")
    w, b = _scales(name, m, m.in_features, w_std, b_std, override)
    state.rank, state.channels, state.spatial = 0, m.out_features, ()
    state.flattened_from, state.singleton = None, ""
    return Dense(m.out_features, w_std=w, b_std=b, parameterization=param)


def _avg_pool(name, m, state) -> Layer:
    nd = 1 if isinstance(m, nn.AvgPool1d) else 2
    _expect_rank(name, m, state, nd)

    def tup(v):
        return tuple(v) if isinstance(v, Sequence) else (v,) * nd

    kernel = tup(m.kernel_size)
    stride = tup(m.stride if m.stride is not None else m.kernel_size)
    pad = tup(m.padding)
    if m.ceil_mode or getattr(m, "divisor_override", None) is not None:
        raise ValueError(
            f"{_describe(name, m)}: ceil_mode=True and divisor_override have no widelimit "
            "equivalent; use the defaults"
        )
    if any(pad) and not m.count_include_pad:
        raise ValueError(
            f"{_describe(name, m)}: widelimit's padded AvgPool counts the padded zeros in the "
            "mean (count_include_pad=True)"
        )
    padding = _padding_mode(name, m, pad, kernel, stride, state)
    spatial = _spatial_out(state, pad, kernel, stride)
    state.spatial, state.source = spatial, _describe(name, m)
    cls = AvgPool1d if nd == 1 else AvgPool2d
    return cls(window=kernel, stride=stride, padding=padding)


def _adaptive_pool(name, m, state) -> Layer:
    nd = 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2
    size = m.output_size
    sizes = tuple(size) if isinstance(size, Sequence) else (size,) * nd
    if any(s != 1 for s in sizes):
        raise ValueError(
            f"{_describe(name, m)}: only output_size=1 (global average pooling) maps to a "
            "widelimit layer (GlobalAvgPool)"
        )
    _expect_rank(name, m, state, nd)
    state.rank, state.spatial = 0, ()
    state.singleton = "(N, C" + ", 1" * nd + ")"
    return GlobalAvgPool()


def _flatten(name, m, state) -> Layer:
    if m.start_dim != 1 or m.end_dim != -1:
        raise ValueError(
            f"{_describe(name, m)}: only nn.Flatten() with start_dim=1, end_dim=-1 maps to "
            "widelimit's Flatten"
        )
    if state.rank:
        if state.spatial is not None and state.channels is not None:
            state.channels = state.channels * math.prod(state.spatial)
        else:
            state.flattened_from, state.channels = state.channels, None
    state.rank, state.spatial, state.singleton = 0, (), ""
    return Flatten()


def _layer_norm(name, m, state) -> Layer:
    _expect_rank(name, m, state, 0)
    shape = tuple(m.normalized_shape)
    if len(shape) != 1:
        raise ValueError(
            f"{_describe(name, m)}: widelimit's LayerNorm normalises the feature axis of "
            "(N, features) inputs; normalized_shape must be a single size"
        )
    _expect_channels(name, m, state, shape[0], "features")
    if m.elementwise_affine:
        raise ValueError(
            f"{_describe(name, m)}: its trainable gain and bias (elementwise_affine=True) leave "
            "the NNGP unchanged at initialisation (gain 1, bias 0) but add NTK terms that "
            "widelimit's LayerNorm does not model; build it with elementwise_affine=False"
        )
    return LayerNorm(eps=float(m.eps))


def _activation(m: nn.Module) -> Layer | None:
    if isinstance(m, nn.ReLU):
        return ReLU()
    if isinstance(m, nn.LeakyReLU):
        return LeakyReLU(float(m.negative_slope))
    if isinstance(m, nn.Tanh):
        return Tanh()
    if isinstance(m, nn.Sigmoid):
        return Sigmoid()
    if isinstance(m, nn.SiLU):
        return SiLU()
    if isinstance(m, nn.ELU):
        return ELU(float(m.alpha))
    if isinstance(m, nn.GELU):
        if m.approximate == "none":
            return GELU()
        fn = functools.partial(F.gelu, approximate=m.approximate)
        return Activation(fn, name=f"gelu_{m.approximate}")
    if isinstance(m, nn.Softplus):
        if m.beta == 1 and m.threshold == 20:
            return Softplus()
        fn = functools.partial(F.softplus, beta=m.beta, threshold=m.threshold)
        return Activation(fn, name=f"softplus_beta{m.beta:g}")
    return None


def from_module(
    module: nn.Module,
    *,
    w_std: float | None = None,
    b_std: float | None = None,
    parameterization: str = "ntk",
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    input_shape: int | Sequence[int] | None = None,
) -> Layer:
    """The widelimit spec (infinite-width limit) of an ``nn.Sequential`` of standard layers.

    Args:
        module: an ``nn.Sequential`` (possibly nested) of the layers listed in the module
            docstring, or a single such layer.
        w_std: σw of every ``nn.Linear``/``nn.Conv`` (``Var W = σw²/fan_in``); ``None``:
            PyTorch's default init, ``1/√3`` (module docstring).
        b_std: σb of every bias (``Var b = σb²``; layers built with ``bias=False`` get 0);
            ``None``: PyTorch's default, ``1/√(3·fan_in)`` at the module's own fan-in.
        parameterization: ``"ntk"`` (default) or ``"standard"`` (the NTK of the given
            module trained as is, at its widths).
        overrides: per-layer scales, e.g. ``{"4": {"w_std": 1.4, "b_std": 0.1}}``, keyed by
            the names of ``module.named_modules()``; they win over ``w_std``/``b_std``.
        input_shape: per-example input shape (e.g. ``(3, 32, 32)``); optional.  When given,
            every width is checked exactly (including ``nn.Linear`` after ``nn.Flatten``) and
            strided padded layers can be matched to widelimit's ``"same"`` geometry.
    Returns:
        a :class:`~widelimit.layers.base.Layer` (``serial(...)``) whose ``kernel`` is the
        infinite-width NNGP/NTK and whose ``module(width)`` builds the same architecture.
    Raises:
        ValueError: naming the first module that cannot be mapped (and why), or the first
            pair of layers with inconsistent widths.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be a torch.nn.Module; got {type(module).__name__}")
    param = check_parameterization(parameterization)
    if w_std is not None:
        w_std = check_nonnegative("w_std", w_std)
    if b_std is not None:
        b_std = check_nonnegative("b_std", b_std)
    leaves = _leaves(module)
    if not leaves:
        raise ValueError("`module` is an empty nn.Sequential; there is no network to map")
    for name, m in leaves:
        _check_visible(name, m)
    affine = {n for n, m in leaves if isinstance(m, _AFFINE)}
    first_use: dict[int, str] = {}
    for name, m in leaves:
        if any(True for _ in m.parameters()) and first_use.setdefault(id(m), name) != name:
            raise ValueError(
                f"{_describe(name, m)} is the same module object as '{first_use[id(m)]}': "
                "layers that share weights have a different infinite-width limit from "
                "independent ones, which widelimit does not model; use separate modules"
            )
    over = _check_override(overrides, affine)
    state = _State(rank=None, channels=None, spatial=None, source="the input")
    if input_shape is not None:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not 1 <= len(shape) <= 3 or any(not isinstance(s, int) or s <= 0 for s in shape):
            raise ValueError(
                f"`input_shape` must be d, (C, L) or (C, H, W) positive ints; got {input_shape!r}"
            )
        state = _State(len(shape) - 1, shape[0], shape[1:], "the input")

    layers: list[Layer] = []
    for name, m in leaves:
        layer: Layer | None
        kind = type(m).__name__
        if kind in _UNMAPPABLE:
            raise ValueError(
                f"{_describe(name, m)}: nn.{kind} cannot be mapped: {_UNMAPPABLE[kind]}"
            )
        if kind in _PLANNED:
            raise ValueError(
                f"{_describe(name, m)}: nn.{kind} is not yet a widelimit layer (planned as "
                f"{_PLANNED[kind]}); from_module cannot map it"
            )
        if isinstance(m, nn.Linear):
            layer = _linear(name, m, state, w_std, b_std, over.get(name, {}), param)
        elif isinstance(m, nn.Conv1d | nn.Conv2d):
            layer = _conv(name, m, state, w_std, b_std, over.get(name, {}), param)
        elif isinstance(m, nn.ConvTranspose1d | nn.ConvTranspose2d):
            layer = _conv_transpose(name, m, state, w_std, b_std, over.get(name, {}), param)
        elif isinstance(m, nn.AvgPool1d | nn.AvgPool2d):
            layer = _avg_pool(name, m, state)
        elif isinstance(m, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
            layer = _adaptive_pool(name, m, state)
        elif isinstance(m, nn.Flatten):
            layer = _flatten(name, m, state)
        elif isinstance(m, nn.LayerNorm):
            layer = _layer_norm(name, m, state)
        elif type(m) is nn.Dropout:
            layer = Dropout(float(m.p))
        elif isinstance(m, nn.Identity):
            layer = Identity()
        else:
            layer = _activation(m)
            if layer is None:
                raise ValueError(
                    f"{_describe(name, m)}: nn module {kind} has no widelimit equivalent; "
                    f"supported: {_SUPPORTED}"
                )
        state.source = _describe(name, m)
        layers.append(layer)
    return serial(*layers)
