"""Global self-attention ``GlobalSelfAttention``: finite module and kernel rule side by side.

Finite layer (Hron et al. 2020, "Infinite attention: NNGP and NTK for deep
attention networks", §2; the layer of Neural Tangents' ``stax.GlobalSelfAttention``)
on signals ``(N, C, L)`` or images ``(N, C, H, W)``, positions flattened to
``s = 1..|S|`` (row-major), ``x_s ∈ R^C`` the input at position ``s``::

    keys     k_{h,s} = x̂_s W^K_h              W^K_h ∈ R^{C_k × d_k},  entries N(0, 1)
    queries  q_{h,s} = x̂_s W^Q_h              (W^Q = W^K, tied, when linear_scaling)
    logits   G_h[s, s'] = σq σk · q_{h,s}·k_{h,s'} / (C_k · d_k^a)   a = 1 (linear) or ½
    weights  A_h = φ(G_h)                      φ: softmax over s' (default), identity, relu, abs
    values   v_{h,s} = (σv/√C_v) x̃_s W^V_h     W^V_h ∈ R^{C_v × d_v}
    output   f_s = (σo/√(H d_v)) [A_1 v_1, …, A_H v_H]_s W^O + σb b     W^O, b ~ N(0, 1)

(NTK parameterization, every matrix trained; ``H = n_heads``).  ``x̂`` is the
input of keys/queries and ``x̃`` that of values: both are ``x`` unless a
positional embedding ``e ∈ R^{C_e × |S|}`` is used, ``e = σe·z Lᵀ`` with ``z``
a trained ``N(0, 1)`` parameter and ``L Lᵀ = R`` the embedding covariance
across positions (identity by default: i.i.d. per position):

* ``pos_emb="sum"``: ``x̂ = x + e`` (``C_e = C``);
* ``pos_emb="concat"``: ``x̂ = [x; e]`` along channels (``C_k = C + C_e``);
* ``pos_emb_values=True`` also feeds ``x̂`` to the values (``x̃ = x̂``).

Covariances of the inputs to keys/values (``Σ``, ``Θ`` the input NNGP/NTK with
all position pairs; ``ω = 1, ω_e = σe²`` for ``"sum"``, ``ω = C/(C+C_e)``,
``ω_e = σe² C_e/(C+C_e)`` for ``"concat"``, ``ω_e = 0`` without embedding)::

    Σ̂ = ω Σ + ω_e R        Θ̂ = ω Θ + ω_e R        (Σ̃, Θ̃: the same if pos_emb_values, else Σ, Θ)

Kernel rule, ``linear_scaling=True`` (Hron et al. 2020, §3; limit
``C_k, d_k → ∞``, any ``n_heads``, ``d_v``·``n_heads → ∞`` for the channels of
the output).  With tied keys and queries the logits converge to the constant
``G[s, s'] = σq σk Σ̂(x, x)[s, s']``: the attention weights of example ``x``
are deterministic, ``A(x) = φ(σq σk Σ̂(x, x))``, computed from its own position
covariance.  The output is then a linear map per example, so::

    Σ'(x, x') = σv²σo² A(x) Σ̃(x, x') A(x')ᵀ + σb²
    Θ'(x, x') = σv²σo² A(x) [Θ̃(x, x') + 2 Σ̃(x, x')] A(x')ᵀ + 1[σb > 0] σb²

(the ``2 Σ̃`` are the gradients of ``W^V`` and ``W^O``; those of ``W^K`` vanish
like ``1/d_k``).  Finite networks approach it with an ``O(1/d_k)`` bias.

Kernel rule, ``linear_scaling=False`` (the standard ``1/√d_k`` scaling; Hron et al.
2020, Thm. 3 and App. C).  Limit: first ``C_k, d_k → ∞``: the logits become a
centred Gaussian field, independent of the values and across heads, with
``E[G(x)[s, s'] G(x')[t, t']] = σq²σk² Σ̂(x, x')[s, t] Σ̂(x, x')[s', t']``;
then ``n_heads → ∞`` (so that the output is Gaussian, not a mixture: the
kernel below is the exact second moment at any ``n_heads``, but the next
layers see a Gaussian only when ``n_heads`` is large).  With the bivariate
Gaussian expectations ``E_φφ = E[φ(G(x)[s,s']) φ(G(x')[t,t'])]`` and
``E_φ'φ'`` (the activation duals of :mod:`widelimit.layers.activations`)::

    Σ'[s, t] = σv²σo² Σ_{s',t'} E_φφ Σ̃[s', t'] + σb²
    Θ'[s, t] = σv²σo² Σ_{s',t'} { E_φφ (Θ̃ + 2Σ̃)[s', t']
               + E_φ'φ' σq²σk² (Θ̂[s,t] Σ̂[s',t'] + Σ̂[s,t] Θ̂[s',t'] + 2 Σ̂[s,t] Σ̂[s',t']) Σ̃[s', t'] }
               + 1[σb > 0] σb²

(the last bracket is the NTK of the logits: input gradients through queries
and keys, then ``W^Q`` and ``W^K``).  Closed forms exist for the elementwise
``attention_mechanism`` values ``"identity"``, ``"relu"``, ``"abs"``; the softmax
of a Gaussian field has none, so ``"softmax"`` with ``linear_scaling=False``
has a finite module (Monte Carlo works) but no kernel (a ``ValueError`` says
so).  Neural Tangents 0.6.5 computes only ``"identity"`` in this case; the
``"relu"``/``"abs"`` rules are new here.  Cost: ``O(N1 N2 |S|⁴)``
(``O(N1 N2 |S|³)`` with linear scaling).

Both rules map the block of one pair of examples from the same block and the
two examples' own covariances, so the layer is *pairwise* (tiled engine) and
it mixes positions (the network tracks the full spatial layout).  Only the
``"ntk"`` parameterization exists for this layer (as in Neural Tangents).
The attention weights are computed in one place per face
(:meth:`GlobalSelfAttention.attention_weights` and
:meth:`GlobalSelfAttentionModule.attention_weights`).

Masked inputs (``mask=`` side input, :mod:`widelimit.layers.masking`): the inputs
and the positional embeddings at masked positions are read as zeros
(``Σ[i, j] ← m[i] Σ[i, j] m'[j]``, ``R ← m R m'``) and masked positions are
excluded as keys, as in Neural Tangents: ``−∞`` logits for the softmax (a softmax
over the unmasked keys of each example's own ``Σ̂(x, x)``), ``0`` logits for the
elementwise mechanisms (``φ(0) = 0``; with ``1/√d_k`` scaling the logits of a
masked key have variance 0 already).  A masked query position attends to the
unmasked keys with a zero query (uniformly, for the softmax); its output is
computed alike by kernel and module, is meaningless, and keeps its mask (Neural
Tangents zeroes it in the kernel instead).  An example with no unmasked position
gets weights 0: its output is the bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit._validation import check_nonnegative, check_positive_int, check_std
from widelimit.kernel import Kernel
from widelimit.layers.activations import Abs, Elementwise, ReLU
from widelimit.layers.base import (
    KernelLike,
    ShapeLike,
    WidthLayer,
    randn,
    single_kernel,
    single_shape,
)
from widelimit.layers.inputs import is_zero_constant
from widelimit.layers.masking import MASK, mask_kernel, prepare_mask
from widelimit.seeding import Seed, as_generator

MECHANISMS = ("softmax", "identity", "relu", "abs")
POS_EMBS = ("none", "sum", "concat")


# --------------------------------------------------------------------------
# Elementwise attention functions and their duals (one definition each)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity(Elementwise):
    """``φ(x) = x``: dual ``(s12, 1)`` (used as an attention mechanism only)."""

    def fn(self, x: Tensor) -> Tensor:
        return x

    def derivative(self, x: Tensor) -> Tensor:
        return torch.ones_like(x)

    def dual(self, q1, q2, s12, *, ntk=True):
        return s12, (torch.ones_like(s12) if ntk else None)


_ELEMENTWISE: dict[str, Elementwise] = {"identity": _Identity(), "relu": ReLU(), "abs": Abs()}


def attention_fn(mechanism: str, logits: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """``φ(logits)``: softmax over the last axis (keys), or the elementwise function.

    ``key_mask`` (broadcastable to ``logits``, 1 where the key position exists) excludes
    masked keys (Neural Tangents' rule): their logits are ``−∞`` for the softmax (which then
    runs over the unmasked keys only) and ``0`` for the elementwise mechanisms, whose
    ``φ(0) = 0``; a row with no unmasked key gets weights 0.
    """
    if mechanism == "softmax":
        if key_mask is None:
            return torch.softmax(logits, dim=-1)
        valid = key_mask > 0
        some = valid.any(dim=-1, keepdim=True)  # rows with no key keep finite logits ...
        logits = logits.masked_fill(~valid & some, -math.inf)
        return torch.softmax(logits, dim=-1) * key_mask  # ... and get weights 0
    weights = _ELEMENTWISE[mechanism].fn(logits)
    return weights if key_mask is None else weights * key_mask


# --------------------------------------------------------------------------
# Layout helpers: separable full layout <-> flattened positions
# --------------------------------------------------------------------------


def _flatten_pairs(t: Tensor, n_lead: int, n_spatial: int) -> Tensor:
    """``(*lead, S1, S1', S2, S2')`` -> ``(*lead, S1·S2, S1'·S2')`` (row-major positions)."""
    lead = list(range(n_lead))
    firsts = [n_lead + 2 * a for a in range(n_spatial)]
    seconds = [n_lead + 2 * a + 1 for a in range(n_spatial)]
    t = t.permute(*lead, *firsts, *seconds)
    size = math.prod(t.shape[n_lead : n_lead + n_spatial])
    return t.reshape(*t.shape[:n_lead], size, size)


def _unflatten_pairs(t: Tensor, n_lead: int, spatial: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_flatten_pairs`."""
    n = len(spatial)
    t = t.reshape(*t.shape[:n_lead], *spatial, *spatial)
    perm = list(range(n_lead))
    for a in range(n):
        perm += [n_lead + a, n_lead + n + a]
    return t.permute(perm).contiguous()


def position_covariance(
    spatial: tuple[int, ...],
    *,
    p_norm: float = 2.0,
    decay: Callable[[Tensor], Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Covariance ``R`` of positional embeddings across the ``|S|`` flattened positions.

    ``R[p, q] = decay(Σ_axes |p_a − q_a|^p_norm)`` (Neural Tangents' ``pos_emb_decay_fn``
    of the unnormalised L-p distance to the power p); ``decay=None`` gives the
    identity (one independent embedding per position).  Returns ``(|S|, |S|)``.
    """
    grids = torch.meshgrid(
        *[torch.arange(s, dtype=dtype, device=device) for s in spatial], indexing="ij"
    )
    pos = torch.stack([g.reshape(-1) for g in grids], dim=-1)  # (|S|, n_axes)
    d = (pos[:, None, :] - pos[None, :, :]).abs().pow(p_norm).sum(-1)
    if decay is None:
        return (d == 0).to(dtype)
    r = decay(d)
    if not isinstance(r, Tensor) or r.shape != d.shape:
        raise ValueError(
            "`pos_emb_decay` must map a tensor of distances to a tensor of the same shape "
            f"(use torch functions, e.g. lambda d: torch.exp(-d / 4)); got {type(r).__name__}"
            + (f" of shape {tuple(r.shape)}" if isinstance(r, Tensor) else "")
        )
    bad = ~torch.isfinite(r)
    if bool(bad.any()):
        dist = float(d[bad][0])
        raise ValueError(
            f"`pos_emb_decay` returned {float(r[bad][0])} at distance {dist:g} ({int(bad.sum())} "
            "of the entries are NaN/inf); it must be finite at every distance from 0 to "
            f"{float(d.max()):g}, e.g. lambda d: torch.exp(-d / 4)"
        )
    return r.to(dtype)


def _psd_factor(r: Tensor) -> Tensor:
    """``L`` with ``L Lᵀ = r`` for a symmetric PSD ``r`` (eigendecomposition: singular is fine)."""
    evals, evecs = torch.linalg.eigh(r)
    return evecs * evals.clamp_min(0).sqrt()


# --------------------------------------------------------------------------
# Finite module
# --------------------------------------------------------------------------


class GlobalSelfAttentionModule(nn.Module):
    """Finite multi-head self-attention on ``(N, C, *spatial)`` (module docstring).

    Parameters: ``key_weight`` ``(H, C_k, d_k)``, ``query_weight`` (same; absent when tied),
    ``value_weight`` ``(H, C_v, d_v)``, ``out_weight`` ``(C_out, H·d_v)``, ``bias``
    ``(C_out,)`` (absent when ``b_std == 0``), ``pos_emb`` ``(C_e, |S|)`` (absent without
    embedding), all ``N(0, 1)``, drawn on the CPU from ``seed`` (``int``,
    ``torch.Generator`` or ``None``: the global RNG).
    ``forward``: ``(N, C, *S) -> (N, C_out, *S)``; with ``mask`` ``(N, *S)`` (the side input
    of :mod:`widelimit.layers.masking`) the masked inputs and embeddings are read as zeros and
    the masked positions are excluded as keys (their outputs are computed, as the kernel's,
    and stay masked).
    """

    takes_side = True  # reads the mask (widelimit.layers.masking)

    def __init__(
        self,
        layer: GlobalSelfAttention,
        in_shape: tuple[int, ...],
        *,
        seed: Seed = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        generator = as_generator(seed)
        c, spatial = in_shape[0], tuple(in_shape[1:])
        dims = layer.dims(c)
        self.layer, self.in_channels, self.spatial = layer, c, spatial
        self.out_channels = dims["out"]
        self.key_in, self.value_in = dims["key_in"], dims["value_in"]
        h, dk, dv = layer.n_heads, dims["key"], dims["value"]
        kw = {"generator": generator, "dtype": dtype, "device": device}
        self.key_weight = nn.Parameter(randn((h, self.key_in, dk), **kw))
        self.query_weight = (
            None if layer.linear_scaling else nn.Parameter(randn((h, self.key_in, dk), **kw))
        )
        self.value_weight = nn.Parameter(randn((h, self.value_in, dv), **kw))
        self.out_weight = nn.Parameter(randn((self.out_channels, h * dv), **kw))
        self.bias = nn.Parameter(randn((self.out_channels,), **kw)) if layer.b_std > 0 else None
        self.pos_emb = None
        self.register_buffer("pos_emb_factor", None)
        if layer.pos_emb != "none":
            self.pos_emb = nn.Parameter(randn((dims["pos_emb"], math.prod(spatial)), **kw))
            r = layer.pos_emb_matrix(spatial, dtype=torch.float64, device="cpu")
            if r is not None:
                self.pos_emb_factor = _psd_factor(r).to(dtype=dtype, device=device)
        self.logit_scale = (layer.w_std_query * layer.w_std_key) / (
            self.key_in * (dk if layer.linear_scaling else math.sqrt(dk))
        )
        self.value_scale = layer.w_std_value / math.sqrt(self.value_in)
        self.out_scale = layer.w_std_out / math.sqrt(h * dv)

    def attention_weights(self, logits: Tensor, mask: Tensor | None = None) -> Tensor:
        """``φ(logits)`` over the key axis; ``logits``: ``(N, H, |S|, |S|)``; ``mask``
        ``(N, |S|)`` excludes the masked keys (:func:`attention_fn`)."""
        key_mask = None if mask is None else mask[:, None, None, :]
        return attention_fn(self.layer.attention_mechanism, logits, key_mask)

    def embedding(self) -> Tensor | None:
        """The positional embedding ``e = σe·z Lᵀ``: ``(C_e, |S|)``, or ``None``."""
        if self.pos_emb is None:
            return None
        e = self.pos_emb if self.pos_emb_factor is None else self.pos_emb @ self.pos_emb_factor.T
        return self.layer.pos_emb_std * e

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        if x.ndim != 2 + len(self.spatial) or tuple(x.shape[1:]) != (
            self.in_channels,
            *self.spatial,
        ):
            raise ValueError(
                f"GlobalSelfAttention module expects inputs of shape (N, {self.in_channels}, "
                f"{', '.join(map(str, self.spatial))}); got {tuple(x.shape)}"
            )
        n = x.shape[0]
        xs = x.flatten(2)  # (N, C, |S|)
        m = None
        if mask is not None:  # masked positions read as zeros, inputs and embeddings alike
            m = mask.to(xs.dtype).reshape(n, -1)
            xs = xs * m[:, None, :]
        xk = xv = xs
        e = self.embedding()
        if e is not None:
            if m is not None:
                e = e * m[:, None, :]  # (N, C_e, |S|)
            if self.layer.pos_emb == "sum":
                xk = xs + e
            else:
                xk = torch.cat([xs, e.expand(n, -1, -1)], dim=1)
            if self.layer.pos_emb_values:
                xv = xk
        keys = torch.einsum("ncs,hcd->nhsd", xk, self.key_weight)
        queries = (
            keys
            if self.query_weight is None
            else torch.einsum("ncs,hcd->nhsd", xk, self.query_weight)
        )
        logits = (queries @ keys.transpose(-1, -2)) * self.logit_scale  # (N, H, |S|, |S|)
        weights = self.attention_weights(logits, m)
        values = torch.einsum("ncs,hcd->nhsd", xv, self.value_weight) * self.value_scale
        heads = (weights @ values).permute(0, 1, 3, 2).reshape(n, -1, xs.shape[-1])
        out = torch.einsum("oc,ncs->nos", self.out_weight, heads) * self.out_scale
        if self.bias is not None:
            out = out + self.layer.b_std * self.bias[:, None]
        return out.reshape(n, self.out_channels, *self.spatial)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, spatial={self.spatial}, "
            f"n_heads={self.layer.n_heads}, key_in={self.key_in}, value_in={self.value_in}"
        )


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GlobalSelfAttention(WidthLayer):
    """Multi-head global self-attention on ``(N, C, L)`` or ``(N, C, H, W)`` (module docstring).

    Args:
        out_channels: output channels (``None``: the input's ``C``; hidden ones follow
            ``net.module(width)``).
        n_heads: number of heads ``H``.
        key_channels: per-head key/query size ``d_k`` (``None``: the input's ``C``, so it
            grows with the width).
        value_channels: per-head value size ``d_v`` (``None``: the input's ``C``).
        linear_scaling: logits scaled by ``1/d_k`` with tied keys and queries (default;
            deterministic limiting attention weights) or by ``1/√d_k`` with independent
            ones (``False``; Gaussian limiting logits, see the module docstring).
        attention_mechanism: ``"softmax"`` (default), ``"identity"``, ``"relu"`` or ``"abs"``.
        w_std_query, w_std_key, w_std_value, w_std_out: σq, σk, σv, σo ≥ 0 (only the
            products σqσk and σvσo enter the kernel); b_std: σb ≥ 0 (0: no bias).
        pos_emb: ``"none"`` (default), ``"sum"`` or ``"concat"`` positional embeddings.
        pos_emb_std: σe, scale of the embeddings.
        pos_emb_channels: ``C_e`` for ``"concat"`` (``None``: the input's ``C``, a fixed 1:1
            ratio; an int is taken at the spec's channel count, as Neural Tangents does).
        pos_emb_values: also add/concatenate the embeddings to the values' input.
        pos_emb_p_norm, pos_emb_decay: covariance of the embeddings across positions,
            ``R[p, q] = pos_emb_decay(Σ_a |p_a − q_a|^p)`` (torch function; Neural Tangents'
            ``pos_emb_decay_fn``); ``None``: identity (independent per position).
        pos_emb_covariance: a user-given ``(|S|, |S|)`` symmetric PSD ``R`` over the
            flattened (row-major) positions instead of ``pos_emb_decay``.
    """

    out_channels: int | None = None
    n_heads: int = 1
    key_channels: int | None = None
    value_channels: int | None = None
    linear_scaling: bool = True
    attention_mechanism: str = "softmax"
    w_std_query: float = 1.0
    w_std_key: float = 1.0
    w_std_value: float = 1.0
    w_std_out: float = 1.0
    b_std: float = 0.0
    pos_emb: str = "none"
    pos_emb_std: float = 1.0
    pos_emb_channels: int | None = None
    pos_emb_values: bool = False
    pos_emb_p_norm: float = 2.0
    pos_emb_decay: Callable[[Tensor], Tensor] | None = field(default=None, compare=False)
    pos_emb_covariance: Tensor | None = field(default=None, compare=False, repr=False)

    width_field: ClassVar[str] = "out_channels"
    mixes_positions: ClassVar[bool] = True
    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)

    def __post_init__(self) -> None:
        for name in ("out_channels", "key_channels", "value_channels", "pos_emb_channels"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        object.__setattr__(self, "n_heads", check_positive_int("n_heads", self.n_heads))
        for name in ("linear_scaling", "pos_emb_values"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be True or False; got {getattr(self, name)!r}")
        if self.attention_mechanism not in MECHANISMS:
            raise ValueError(
                f"`attention_mechanism` must be one of {MECHANISMS}; "
                f"got {self.attention_mechanism!r}"
            )
        for name in ("w_std_query", "w_std_key", "w_std_value", "w_std_out", "b_std"):
            object.__setattr__(self, name, check_std(name, getattr(self, name)))
        object.__setattr__(self, "pos_emb_std", check_std("pos_emb_std", self.pos_emb_std))
        object.__setattr__(
            self, "pos_emb_p_norm", check_nonnegative("pos_emb_p_norm", self.pos_emb_p_norm)
        )
        if self.pos_emb not in POS_EMBS:
            raise ValueError(f"`pos_emb` must be one of {POS_EMBS}; got {self.pos_emb!r}")
        if self.pos_emb == "sum" and self.pos_emb_channels is not None:
            raise ValueError(
                "`pos_emb_channels` is only for pos_emb='concat': summed embeddings have the "
                "input's channels; leave it None"
            )
        if self.pos_emb_decay is not None and not callable(self.pos_emb_decay):
            raise TypeError(f"`pos_emb_decay` must be callable; got {self.pos_emb_decay!r}")
        if self.pos_emb_covariance is not None:
            if not isinstance(self.pos_emb_covariance, Tensor):
                raise TypeError(
                    "`pos_emb_covariance` must be a (|S|, |S|) torch.Tensor; "
                    f"got {type(self.pos_emb_covariance).__name__}"
                )
            if self.pos_emb_decay is not None:
                raise ValueError("give `pos_emb_covariance` or `pos_emb_decay`, not both")
        if self.pos_emb == "none" and (
            self.pos_emb_decay is not None
            or self.pos_emb_covariance is not None
            or self.pos_emb_channels is not None
            or self.pos_emb_values
        ):
            raise ValueError(
                "positional-embedding options are set but `pos_emb` is 'none'; "
                "use pos_emb='sum' or 'concat'"
            )

    # ----------------------------------------------------------- geometry
    def dims(self, in_channels: int) -> dict[str, int]:
        """Sizes for ``in_channels`` input channels: ``out``, ``key`` (d_k), ``value`` (d_v),
        ``pos_emb`` (C_e, 0 without), ``key_in`` (C_k), ``value_in`` (C_v)."""
        c = in_channels
        c_e = 0 if self.pos_emb == "none" else (self.pos_emb_channels or c)
        key_in = c + c_e if self.pos_emb == "concat" else c
        return {
            "out": self.out_channels or c,
            "key": self.key_channels or c,
            "value": self.value_channels or c,
            "pos_emb": c_e,
            "key_in": key_in,
            "value_in": key_in if self.pos_emb_values else c,
        }

    def _check_input(self, in_shape: ShapeLike) -> tuple[int, ...]:
        s = single_shape(self, in_shape)
        if len(s) not in (2, 3):
            raise ValueError(
                "GlobalSelfAttention needs positions: per-example inputs (C, L) (batches "
                f"(N, C, L)) or (C, H, W); got per-example shape {tuple(s)}"
                + ("; reshape dense features to (N, C, L)" if len(s) == 1 else "")
            )
        return s

    def pos_emb_matrix(
        self, spatial: tuple[int, ...], *, dtype: torch.dtype, device: torch.device | str | None
    ) -> Tensor | None:
        """``R`` ``(|S|, |S|)`` of the embeddings; ``None`` for the identity or no embedding."""
        if self.pos_emb == "none":
            return None
        size = math.prod(spatial)
        if self.pos_emb_covariance is not None:
            r = self.pos_emb_covariance.to(dtype=dtype, device=device)
            if r.shape != (size, size):
                raise ValueError(
                    f"`pos_emb_covariance` must be ({size}, {size}) for spatial shape "
                    f"{spatial} (row-major positions); got {tuple(r.shape)}"
                )
            scale = float(r.abs().max()) if r.numel() else 0.0
            if not torch.isfinite(r).all() or float((r - r.T).abs().max()) > 1e-10 * scale:
                raise ValueError("`pos_emb_covariance` must be finite and symmetric")
            if float(torch.linalg.eigvalsh(r.double()).min()) < -1e-10 * max(scale, 1e-300):
                raise ValueError("`pos_emb_covariance` must be positive semi-definite")
            return r
        if self.pos_emb_decay is None:
            return None
        r = position_covariance(
            spatial, p_norm=self.pos_emb_p_norm, decay=self.pos_emb_decay, dtype=dtype,
            device=device,
        )  # fmt: skip
        if float(torch.linalg.eigvalsh(r.double()).min()) < -1e-10 * float(r.abs().max()):
            raise ValueError(
                "`pos_emb_decay` gives a covariance across positions that is not positive "
                "semi-definite (not a valid embedding covariance); use e.g. an exponential "
                "or Gaussian decay"
            )
        return r

    # ------------------------------------------------------- layer protocol
    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = self._check_input(in_shape)
        return (self.dims(s[0])["out"], *s[1:])

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = self._check_input(in_shape)
        return GlobalSelfAttentionModule(self, tuple(s), seed=generator, dtype=dtype, device=device)

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def attention_weights(self, cov: Tensor, mask: Tensor | None = None) -> Tensor:
        """Limiting weights ``A = φ(σq σk Σ̂)`` from ``(N, |S|, |S|)`` self-covariances
        (linear scaling), each example's own; ``mask`` ``(N, |S|)`` excludes its masked
        keys (softmax over the unmasked ones, :func:`attention_fn`)."""
        logits = (self.w_std_query * self.w_std_key) * cov
        key_mask = None if mask is None else mask[:, None, :]
        return attention_fn(self.attention_mechanism, logits, key_mask)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        if not k.spatial:
            raise ValueError(
                "GlobalSelfAttention expects a kernel with spatial axes (inputs (N, C, L) or "
                "(N, C, H, W)); got dense features, which have no positions to attend over"
            )
        if not k.full_spatial:
            raise ValueError(
                "GlobalSelfAttention needs the full spatial covariance but got the diagonal "
                "layout; compute kernels through net.kernel(...), which switches to it"
            )
        if not self.linear_scaling and self.attention_mechanism == "softmax":
            raise ValueError(
                "`attention_mechanism='softmax'` with `linear_scaling=False` has no closed-form "
                "infinite-width kernel (the softmax of a Gaussian field of logits); use "
                "linear_scaling=True, or attention_mechanism 'identity', 'relu' or 'abs' "
                "(the finite module works for Monte Carlo)"
            )
        n_sp, spatial = len(k.spatial), k.spatial
        pair = k.side_pair(MASK)
        m1 = m2 = None
        if pair is not None:  # masked inputs read as zeros (the mask passes through)
            k = mask_kernel(k)
            m1, m2 = (m.reshape(m.shape[0], -1) for m in pair)  # (N, |S|) row-major
        dims = self.dims(k.channels)
        c_e = dims["pos_emb"]
        w_in, w_e = 1.0, 0.0
        if self.pos_emb == "sum":
            w_e = self.pos_emb_std**2
        elif self.pos_emb == "concat":
            w_in, w_e = k.channels / dims["key_in"], self.pos_emb_std**2 * c_e / dims["key_in"]
        r = r1 = r2 = None
        if self.pos_emb != "none":
            r = self.pos_emb_matrix(spatial, dtype=k.dtype, device=k.device)
            if r is None:
                r = torch.eye(math.prod(spatial), dtype=k.dtype, device=k.device)
            r1 = r2 = r
            if m1 is not None:  # embeddings at masked positions read as zeros too
                r1 = m1[:, :, None] * r * m1[:, None, :]  # (N1, |S|, |S|)
                r2 = m2[:, :, None] * r * m2[:, None, :]
                r = m1[:, None, :, None] * r * m2[None, :, None, :]  # (N1, N2, |S|, |S|)

        def flat(t: Tensor, n_lead: int) -> Tensor:
            return _flatten_pairs(t, n_lead, n_sp)

        def hat(t: Tensor | None, rr: Tensor | None) -> Tensor | None:  # Σ̂ = ω Σ + ω_e R
            return t if t is None or rr is None else w_in * t + w_e * rr  # (inputs of keys)

        def tilde(t: Tensor | None, rr: Tensor | None) -> Tensor | None:  # Σ̃: of values
            return hat(t, rr) if self.pos_emb_values else t

        c1 = flat(k.cov1, 1)
        c2 = c1 if k.cov2 is None else flat(k.cov2, 1)
        s12 = flat(k.nngp, 2)
        t12 = None
        if k.ntk is not None:
            t12 = torch.zeros_like(s12) if is_zero_constant(k.ntk) else flat(k.ntk, 2)
        ov2, b2 = (self.w_std_value * self.w_std_out) ** 2, self.b_std**2
        b_ntk = 1.0 if self.b_std > 0 else 0.0
        if self.linear_scaling:
            a1 = self.attention_weights(hat(c1, r1), m1)  # (N1, |S|, |S|)
            a2 = a1 if k.cov2 is None else self.attention_weights(hat(c2, r2), m2)

            def sandwich(x1: Tensor, t: Tensor, x2: Tensor) -> Tensor:  # A(x) T A(x')ᵀ
                return torch.einsum("asp,abpq,btq->abst", x1, t, x2)

            nngp = ov2 * sandwich(a1, tilde(s12, r), a2) + b2
            ntk = None
            if t12 is not None:
                ntk = ov2 * sandwich(a1, tilde(t12, r) + 2 * tilde(s12, r), a2) + b_ntk * b2
            cov1 = ov2 * torch.einsum("asp,apq,atq->ast", a1, tilde(c1, r1), a1) + b2
            cov2 = None
            if k.cov2 is not None:
                cov2 = ov2 * torch.einsum("asp,apq,atq->ast", a2, tilde(c2, r2), a2) + b2
        else:
            # masked keys: their logits have variance 0 (inputs read as zeros), so φ(0) = 0
            # for every elementwise mechanism, and the values there are zero too
            d1 = torch.diagonal(hat(c1, r1), dim1=-2, dim2=-1)  # (N1, |S|) logit-input vars
            d2 = torch.diagonal(hat(c2, r2), dim1=-2, dim2=-1)
            nngp, ntk = self._gaussian_logit_rule(
                hat(s12, r), hat(t12, r), tilde(s12, r), tilde(t12, r), d1[:, None], d2[None]
            )
            nngp = ov2 * nngp + b2
            ntk = None if ntk is None else ov2 * ntk + b_ntk * b2
            g = self._gaussian_logit_rule(hat(c1, r1), None, tilde(c1, r1), None, d1, d1)[0]
            cov1 = ov2 * g + b2
            cov2 = None
            if k.cov2 is not None:
                g = self._gaussian_logit_rule(hat(c2, r2), None, tilde(c2, r2), None, d2, d2)[0]
                cov2 = ov2 * g + b2
        return k.replace(
            nngp=_unflatten_pairs(nngp, 2, spatial),
            ntk=None if ntk is None else _unflatten_pairs(ntk, 2, spatial),
            cov1=_unflatten_pairs(cov1, 1, spatial),
            cov2=None if cov2 is None else _unflatten_pairs(cov2, 1, spatial),
            channels=dims["out"],
            is_gaussian=True,
        )

    def _gaussian_logit_rule(
        self,
        sk: Tensor,
        tk: Tensor | None,
        sv: Tensor,
        tv: Tensor | None,
        d1: Tensor,
        d2: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """The ``1/√d_k`` rule (module docstring) before the ``σv²σo²`` and bias terms.

        ``sk``/``tk``: ``(*B, |S|, |S|)`` NNGP/NTK of the keys' input between the two
        examples, ``sv``/``tv`` the same for the values' input; ``d1 (*B, |S|)``, ``d2``: the
        keys' input variances of each example (broadcast against ``B``).  Loops over the
        output pair ``(s, t)``; each step is ``O(|B| |S|²)``.
        """
        phi = _ELEMENTWISE[self.attention_mechanism]
        g2 = (self.w_std_query * self.w_std_key) ** 2
        n_s = sk.shape[-1]
        nngp = torch.empty_like(sk)
        ntk = None if tk is None else torch.empty_like(sk)
        tv2 = None if tv is None else tv + 2 * sv
        for s in range(n_s):
            # Var G(x)[s, s'] = σq²σk² Σ̂(x,x)[s,s] Σ̂(x,x)[s',s']: (*B, |S|, 1)
            q1 = (g2 * d1[..., s, None] * d1)[..., :, None]
            for t in range(n_s):
                q2 = (g2 * d2[..., t, None] * d2)[..., None, :]  # (*B, 1, |S|)
                skst = sk[..., s, t, None, None]
                # Cov(G(x)[s,s'], G(x')[t,t']) = σq²σk² Σ̂[s,t] Σ̂[s',t']
                e_ff, e_dd = phi.dual(q1, q2, g2 * skst * sk, ntk=tk is not None)
                nngp[..., s, t] = (e_ff * sv).sum((-2, -1))
                if ntk is not None:
                    # NTK of the logits: Θ̂[s,t]Σ̂[s',t'] + Σ̂[s,t]Θ̂[s',t'] + 2Σ̂[s,t]Σ̂[s',t']
                    tg = tk[..., s, t, None, None] * sk + skst * (tk + 2 * sk)
                    ntk[..., s, t] = (e_ff * tv2).sum((-2, -1)) + g2 * (e_dd * tg * sv).sum(
                        (-2, -1)
                    )
        return nngp, ntk


__all__ = ["GlobalSelfAttention", "GlobalSelfAttentionModule"]
