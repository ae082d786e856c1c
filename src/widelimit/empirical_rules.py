"""Structured rules for the empirical NTK: per-example features of standard layers and their Grams.

For a parameter tensor ``W`` of a module called once per example, with input ``a`` and output
cotangent ``δ^e = ∂f_e/∂(module output)`` (one backward pass per output entry ``e``), the
per-example gradient is a sum over positions ``t`` (tokens, pixels) of outer products,

    ``∂f_e(x)/∂W = Σ_t δ^e_t ⊗ a_t``   (Linear; Conv on patches ``a_t``; groups block-diagonal),

so the NTK contribution of ``W`` between examples ``x, x'`` is

    ``Σ_{t,s} (δ^e_t · δ'^{e'}_s)(a_t · a'_s)``  — for one position: ``(ΔΔ'ᵀ) ⊙ (AA'ᵀ)``.

A trainable bias adds ``Σ_t δ_t``; it is folded in by appending 1 to every ``a_t``.  Each
module's parameters become one *term* of three kinds, and a term's Gram between two blocks
of examples is computed by :func:`gram`:

* :class:`Grad` — explicit per-example gradients ``g (ns, b, k, P)``; Gram = ``g gᵀ``.
* :class:`Outer` — ``a (b, G, T, fi)`` and ``d (ns, b, k, G, T, fo)``: Σ over groups of
  ``Σ_{t,s} (d_t·d'_s)(a_t·a'_s)`` (``T = 1``: the Hadamard product of two Grams).
* :class:`Match` — an embedding: ``a`` is one-hot, ``a_t·a'_s = [i_t = i'_s]``.

Output layout of a Gram (``ns`` = output positions, ``k`` = output channels): traced
``(ns, b1, b2)`` summed over channels, full ``(ns, b1·k, b2·k)`` rows ordered ``(n, c)``.
See docs/empirical_ntk.md for the derivations (conv transpose, LayerNorm, embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "KINDS",
    "Grad",
    "Match",
    "Outer",
    "features",
    "gram",
    "module_kind",
    "term_costs",
]

#: Module classes with a structured rule (subclasses qualify when they keep the base forward).
KINDS: dict[str, type[nn.Module]] = {
    "linear": nn.Linear,
    "conv1d": nn.Conv1d,
    "conv2d": nn.Conv2d,
    "conv_transpose1d": nn.ConvTranspose1d,
    "conv_transpose2d": nn.ConvTranspose2d,
    "layernorm": nn.LayerNorm,
    "embedding": nn.Embedding,
}
_OWN = {"weight", "bias"}


@dataclass
class Grad:
    """Explicit per-example gradients ``g``: ``(ns, b, k, P)``."""

    g: Tensor


@dataclass
class Outer:
    """``Σ_t d_t ⊗ a_t`` per group: ``a (b, G, T, fi)``, ``d (ns, b, k, G, T, fo)``.

    ``ones``: a bias too, as if every ``a_t`` had a trailing 1 (``a_t·a'_s + 1``).
    """

    a: Tensor
    d: Tensor
    ones: bool = False


@dataclass
class Match:
    """Embedding lookups: indices ``idx (b, T)``, cotangents ``d (ns, b, k, T, fo)``."""

    idx: Tensor
    d: Tensor


Term = Grad | Outer | Match


# ------------------------------------------------------------------ classification
def module_kind(m: nn.Module) -> tuple[str | None, str]:
    """``(kind, "")`` when ``m`` has a rule, else ``(None, reason)``."""
    kind = next((kd for kd, c in KINDS.items() if isinstance(m, c)), None)
    if kind is None:
        return None, f"no structured rule for {type(m).__name__}"
    cls = KINDS[kind]
    if type(m).forward is not cls.forward:
        return None, f"{type(m).__name__} overrides forward()"
    if kind.startswith("conv") and not kind.startswith("conv_t"):
        if type(m)._conv_forward is not cls._conv_forward:
            return None, f"{type(m).__name__} overrides _conv_forward()"
    if m._forward_pre_hooks or m._forward_hooks or getattr(m, "parametrizations", None):
        return None, "module has forward hooks or parametrizations (e.g. weight_norm)"
    if kind == "embedding" and (m.max_norm is not None or m.scale_grad_by_freq):
        return None, "Embedding with max_norm or scale_grad_by_freq"
    if kind.startswith("conv_t") and m.padding_mode != "zeros":  # pragma: no cover - torch refuses
        return None, "ConvTranspose with padding_mode other than 'zeros'"
    extra = {n for n, p in m._parameters.items() if p is not None} - _OWN
    if extra:
        return None, f"extra parameters {sorted(extra)} on a {type(m).__name__}"
    return kind, ""


# ------------------------------------------------------------------ features
def _conv_patches(m: nn.Module, x: Tensor, nd: int) -> Tensor:
    """Patches ``(b, Cin·Πk, T)`` of a Conv1d/2d input, after the module's own padding."""
    ks, st, dil = m.kernel_size, m.stride, m.dilation
    mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
    # the module's own padding ('same' is asymmetric for even kernels: left = total // 2)
    x = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
    if nd == 1:
        x, ks, st, dil = x[:, :, None], (1, ks[0]), (1, st[0]), (1, dil[0])
    return F.unfold(x, ks, dilation=dil, padding=0, stride=st)


def _delta(d: Tensor, k: int, ns: int) -> Tensor:
    """Cotangents ``(b, K, *out)`` → ``(ns, b, k, *out)``."""
    b = d.shape[0]
    return d.reshape(b, k, ns, *d.shape[2:]).movedim(2, 0)


def features(
    kind: str, m: nn.Module, x: Tensor, d: Tensor, k: int, ns: int, train: set[str], route: str
) -> list[Term]:
    """Terms of module ``m`` from its input ``x`` and cotangents ``d (b, K, *out)``.

    ``train`` names the module's trainable parameters (``weight``/``bias``); ``route`` is
    ``"outer"`` (keep the Gram factors) or ``"grad"`` (form per-example gradients).
    """
    b = x.shape[0]
    dd = _delta(d, k, ns)  # (ns, b, k, *out)
    w, bias = "weight" in train, "bias" in train
    if kind == "layernorm":
        nd = len(m.normalized_shape)
        xh = F.layer_norm(x, m.normalized_shape, None, None, m.eps)
        red = tuple(range(3, dd.ndim - nd))  # leading (token) dims of the module input

        def tot(t: Tensor) -> Tensor:  # sum(()) would sum every axis
            return (t.sum(red) if red else t).reshape(ns, b, k, -1)

        parts = []
        if w:
            parts.append(tot(dd * xh[None, :, None]))
        if bias:
            parts.append(tot(dd))
        return [Grad(torch.cat(parts, dim=-1))]
    if kind == "embedding":
        idx = x.reshape(b, -1)
        dt = dd.reshape(ns, b, k, idx.shape[1], -1)
        if m.padding_idx is not None:  # the padding row receives no gradient
            dt = dt * (idx != m.padding_idx).to(dt.dtype)[None, :, None, :, None]
        if route == "grad":
            oh = F.one_hot(idx, m.num_embeddings).to(dt.dtype)  # (b, T, V)
            g = torch.einsum("btv,sbktf->sbkvf", oh, dt)
            return [Grad(g.reshape(ns, b, k, -1))]
        return [Match(idx, dt)]
    if kind == "linear":
        a = x.reshape(b, 1, -1, x.shape[-1])  # (b, 1, T, fi)
        dt = dd.reshape(ns, b, k, 1, a.shape[2], dd.shape[-1])
    elif kind.startswith("conv") and route == "grad":
        return _conv_grad(kind, m, x, dd, w, bias)
    elif kind in ("conv1d", "conv2d"):
        nd = 1 if kind == "conv1d" else 2
        g_ = m.groups
        p = _conv_patches(m, x, nd)  # (b, Cin·Πk, T)
        t = p.shape[-1]
        a = p.reshape(b, g_, -1, t).transpose(2, 3)  # (b, G, T, fi)
        dt = dd.reshape(ns, b, k, g_, -1, t).transpose(4, 5)  # (ns, b, k, G, T, fo)
    else:  # conv transpose: ∂W[ci, co, κ] = Σ_p x[ci, p] δ[co, p·s − pad + κ·dil]
        nd = 1 if kind == "conv_transpose1d" else 2
        g_ = m.groups
        t = math.prod(x.shape[2:])
        a = x.reshape(b, g_, -1, t).transpose(2, 3)  # (b, G, T, Cin/G)
        flat = dd.reshape(ns * b * k, *dd.shape[3:])  # (·, Cout, *Lout)
        ks, st, dil, pad = m.kernel_size, m.stride, m.dilation, m.padding
        if nd == 1:
            flat, ks, st, dil, pad = (
                flat[:, :, None],
                (1, ks[0]),
                (1, st[0]),
                (1, dil[0]),
                (0, pad[0]),
            )
        u = F.unfold(flat, ks, dilation=dil, padding=pad, stride=st)  # (·, Cout·Πk, T')
        rows = x.shape[2:] if nd == 2 else (1, x.shape[2])
        t_rows = (flat.shape[2] + 2 * pad[0] - dil[0] * (ks[0] - 1) - 1) // st[0] + 1
        t_cols = u.shape[-1] // t_rows
        u = u.reshape(*u.shape[:2], t_rows, t_cols)[:, :, : rows[0], : rows[1]]
        dt = u.reshape(ns, b, k, g_, -1, t).transpose(4, 5)  # (ns, b, k, G, T, Cout/G·Πk)
        terms: list[Term] = []
        if w:
            terms.append(_outer_or_grad(Outer(a, dt), route))
        if bias:
            red = tuple(range(4, dd.ndim))
            terms.append(Grad(dd.sum(red)))
        return terms
    if bias and not w:  # bias alone: Σ_t δ_t per output channel
        return [Grad(dt.sum(4).reshape(ns, b, k, -1))]
    return [_outer_or_grad(Outer(a, dt, ones=bias), route)]


def _conv_grad(kind: str, m: nn.Module, x: Tensor, dd: Tensor, w: bool, bias: bool) -> list[Term]:
    """Per-example gradients of a conv / conv transpose by one grouped weight-gradient call.

    With the ``b`` examples stacked along channels and ``groups = b·G``, torch's own
    convolution weight gradient returns every example's gradient at once
    (``(b·Cout, Cin/G, *k)``, or ``(b·Cin, Cout/G, *k)`` transposed).
    """
    ns, b, k = dd.shape[:3]
    transposed = kind.startswith("conv_t")
    pad, op = m.padding, [0] * len(m.kernel_size)
    if not transposed and (m.padding_mode != "zeros" or isinstance(pad, str)):
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        x, pad = F.pad(x, m._reversed_padding_repeated_twice, mode=mode), [0] * len(op)
    if transposed:  # the output padding this call used (from the output's size)
        for i, (li, lo) in enumerate(zip(x.shape[2:], dd.shape[4:], strict=True)):
            kk, st, dl = m.kernel_size[i], m.stride[i], m.dilation[i]
            op[i] = lo - ((li - 1) * st - 2 * pad[i] + dl * (kk - 1) + 1)
    terms: list[Term] = []
    if w:
        groups = b * m.groups
        xin = x.reshape(1, -1, *x.shape[2:])
        shape = (b * m.weight.shape[0], *m.weight.shape[1:])
        wt = x.new_empty(shape)  # only its shape is read
        rows = []
        for s_ in range(ns):
            for c in range(k):
                go = dd[s_, :, c].reshape(1, -1, *dd.shape[4:])
                gw = torch.ops.aten.convolution_backward(
                    go, xin, wt, None, list(m.stride), list(pad), list(m.dilation),
                    transposed, op, groups, [False, True, False],
                )[1]  # fmt: skip
                rows.append(gw.reshape(b, -1))
        terms.append(Grad(torch.stack(rows, 1).reshape(b, ns, k, -1).transpose(0, 1)))
    if bias:
        red = tuple(range(4, dd.ndim))
        terms.append(Grad(dd.sum(red)))
    return terms


def _outer_or_grad(o: Outer, route: str) -> Term:
    """Keep the factors (``"outer"``) or form ``Σ_t d_t ⊗ a_t`` (and ``Σ_t d_t``) per example."""
    if route != "grad":
        return o
    d = o.d.transpose(-1, -2)  # (ns, b, k, G, fo, T)
    g = torch.matmul(d, o.a[None, :, None])  # (ns, b, k, G, fo, fi)
    if o.ones:
        g = torch.cat([g, d.sum(-1, keepdim=True)], dim=-1)
    return Grad(g.reshape(*g.shape[:3], -1))


def term_costs(kind: str, g: int, t: int, fi: int, fo: int, k: int, ns: int, trace: bool):
    """Per-pair multiply-adds of the ``outer`` and ``grad`` routes, and per-example forming
    cost of ``grad`` (``g`` groups, ``t`` positions, ``fi``/``fo`` fan in/out per group)."""
    kk = k if trace else k * k
    if kind == "embedding":  # fi = vocabulary size
        return t * t * (1 + ns * kk * fo), ns * kk * fi * fo, k * ns * t * fo
    outer = g * t * t * (fi + ns * kk * fo + ns * kk)
    grad = ns * kk * g * fi * fo
    return outer, grad, k * ns * g * t * fi * fo


# ------------------------------------------------------------------ Grams
def _mm(u: Tensor, v: Tensor) -> Tensor:
    return torch.bmm(u, v.transpose(1, 2)) if u.shape[0] > 1 else (u[0] @ v[0].T)[None]


def _rows(d: Tensor, trace: bool) -> Tensor:
    """``(ns, b, k, ..., f)`` → traced ``(ns, b, k·f)`` or full ``(ns, b·k, f)``."""
    ns, b, k = d.shape[:3]
    return d.reshape(ns, b, -1) if trace else d.reshape(ns, b * k, -1)


def _token_gram(aa: Tensor, di: Tensor, dj: Tensor, trace: bool) -> Tensor:
    """Σ_{t,s} aa[n,t,m,s]·(d_t·d'_s); ``aa (b1, T, b2, T)``, ``d (ns, b, k, T, f)``."""
    ns, b1, k, t, _ = di.shape
    b2 = dj.shape[1]
    if trace:  # sum over channels inside the product: rows (n, t), inner (c, f)
        u = di.permute(0, 1, 3, 2, 4).reshape(ns, b1 * t, -1)
        v = dj.permute(0, 1, 3, 2, 4).reshape(ns, b2 * t, -1)
        return (_mm(u, v).view(ns, b1, t, b2, t) * aa).sum((2, 4))
    u = di.reshape(ns, b1 * k * t, -1)
    v = dj.reshape(ns, b2 * k * t, -1)
    dd = _mm(u, v).view(ns, b1, k, t, b2, k, t) * aa[:, None, :, :, None]
    return dd.sum((3, 6)).reshape(ns, b1 * k, b2 * k)


def gram(ti: Term, tj: Term, trace: bool) -> Tensor:
    """Gram of one term between two blocks (layout in the module docstring)."""
    if isinstance(ti, Grad):
        return _mm(_rows(ti.g, trace), _rows(tj.g, trace))
    if isinstance(ti, Match):
        aa = (ti.idx[:, :, None, None] == tj.idx[None, None]).to(ti.d.dtype)
        return _token_gram(aa, ti.d, tj.d, trace)
    a1, a2, d1, d2 = ti.a, tj.a, ti.d, tj.d
    b1, g_, t, fi = a1.shape
    b2 = a2.shape[0]
    k = d1.shape[2]
    total = None
    for g in range(g_):
        if t == 1:
            aa = a1[:, g, 0] @ a2[:, g, 0].T  # (b1, b2)
            if ti.ones:
                aa += 1
            dd = _mm(_rows(d1[:, :, :, g, 0], trace), _rows(d2[:, :, :, g, 0], trace))
            if trace:
                term = dd.mul_(aa)
            else:
                ns = dd.shape[0]
                term = dd.view(ns, b1, k, b2, k).mul_(aa[:, None, :, None]).view_as(dd)
        else:
            aa = (a1[:, g].reshape(b1 * t, fi) @ a2[:, g].reshape(b2 * t, fi).T).view(b1, t, b2, t)
            if ti.ones:
                aa += 1
            term = _token_gram(aa, d1[:, :, :, g], d2[:, :, :, g], trace)
        total = term if total is None else total.add_(term)
    return total
