"""Empirical (finite-width) NTK of any ``torch.nn.Module``.

``Θ(x, x')[c, d] = Σ_p ∂f_c(x)/∂p · ∂f_d(x')/∂p`` over all trainable parameters
``p`` (buffers are passed through unchanged).  The module must act on each
example independently (no batch statistics).

Outputs ``f(x)`` of shape ``(k,)`` (dense) or ``(k, *S)`` (channels + spatial):

* :func:`empirical_ntk` — traced over output channels (mean over ``c = d``),
  shape ``(N1, N2)`` or ``(N1, N2, *S)`` (same position on both sides),
  comparable with the analytic NTK;
* :func:`empirical_ntk_full` — every channel pair, shape ``(N1, N2, k, k)`` or
  ``(N1, N2, k, k, *S)``.

Strategies, chosen by :func:`plan_empirical_ntk` (``s`` = bytes per scalar,
``P`` = number of trainable parameters, ``K = k·|S|`` output entries per example,
``b`` = examples per block):

* ``"structured"`` (the default) — per parameter tensor, a rule of
  :mod:`widelimit.empirical_rules` for ``nn.Linear``, ``nn.Conv1d/2d``,
  ``nn.ConvTranspose1d/2d``, ``nn.LayerNorm`` and ``nn.Embedding``: the module's
  inputs are captured by forward hooks and its output cotangents by ``K``
  backward passes over a block of examples, and the NTK is a sum of Gram
  matrices, e.g. ``(ΔΔᵀ) ⊙ (AAᵀ + 1)`` for a Linear layer with its bias
  (docs/empirical_ntk.md).  Any other parameter — a module without a rule, a
  module called more or less than once, a shared parameter, an overridden
  ``forward`` — gets per-example Jacobians (the ``"jacobian"`` route restricted
  to those parameters); :attr:`NTKPlan.rules` says which rule each parameter got.
  The output is filled in tiles of ``b × b`` examples; the per-example features
  are kept for all examples when they fit ``memory_budget``, else recomputed
  per column block.
* ``"jacobian"`` — per-example Jacobians of blocks of ``b`` examples, contracted
  block by block and parameter tensor by parameter tensor.
  Peak extra memory ≈ ``8·b·K·P·s`` + the output: two Jacobian blocks, each
  also held once more as the raw autograd result and once as the flattened
  copy used by the contraction (measured by ``benchmarks/inference.py``: peak
  RSS 1111 MB vs ``8·b·K·P·s`` = 1058 MB at b=31, K=1, P=1.07M, float32).
  ``b`` is the largest block with ``8·b·K·P·s ≤ memory_budget``.
* ``"ntvp"`` — NTK-vector products: for each ``x2`` example and output entry a
  gradient row ``g = ∂f_c(x')/∂p`` (one vjp) and then ``Θ[:, x', :, c] = J(x1)·g``
  (one jvp over a block of ``x1``).  Peak extra memory ≈ ``3·P·s`` + forward-mode
  activations of a block of ``x1`` + the output; ``"auto"`` uses it when the
  Jacobian of the parameters without a rule does not fit even for ``b = 1``.
  Slower: ``N2·K`` vjp/jvp pairs.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from widelimit import empirical_rules as rules_
from widelimit._validation import as_float_tensor, check_positive_int, check_same_dtype_device

__all__ = [
    "NTKPlan",
    "ParamRule",
    "empirical_ntk",
    "empirical_ntk_full",
    "empirical_ntk_to_store",
    "plan_empirical_ntk",
]

Strategy = Literal["auto", "structured", "jacobian", "ntvp"]
DEFAULT_BUDGET = 2**30  # 1 GiB
TILE_BUDGET = 2**24  # bytes of temporaries per output tile (structured route)
MAX_TILE = 512  # examples per tile: symmetric kernels compute only the upper tiles


@dataclass(frozen=True)
class ParamRule:
    """Which rule one trainable parameter tensor gets (see :func:`plan_empirical_ntk`).

    Attributes:
        param: the parameter's name in ``module.named_parameters()``.
        module: the owning submodule's name (``""`` for the root).
        rule: ``"linear"``, ``"conv1d"``, ``"conv2d"``, ``"conv_transpose1d"``,
            ``"conv_transpose2d"``, ``"layernorm"``, ``"embedding"`` or ``"jacobian"``
            (per-example Jacobians: the fallback).
        route: how a structured rule contracts: ``"outer"`` (Gram of inputs times Gram of
            cotangents, summed over positions) or ``"grad"`` (explicit per-example gradients);
            ``"jacobian"`` for the fallback.
        reason: why the fallback was chosen (empty for a structured rule).
    """

    param: str
    module: str
    rule: str
    route: str
    reason: str = ""


@dataclass(frozen=True)
class NTKPlan:
    """How :func:`empirical_ntk` will run and what memory it expects.

    Attributes:
        strategy: ``"structured"``, ``"jacobian"`` or ``"ntvp"``.
        batch_size: examples per block (``"structured"``: per output tile and per
            forward/backward pass; ``"jacobian"``: per Jacobian block; ``"ntvp"``: per jvp
            block of ``x1``).
        n_params: ``P``; out_entries: ``K = k·|S|``; bytes_per_scalar: ``s``.
        bytes_estimate: extra memory expected besides the output and the forward/backward
            activations of one block (module docstring).
        output_bytes: size of the returned tensor.
        rules: one :class:`ParamRule` per trainable parameter (``"structured"`` only).
        cache_features: ``"structured"``: the per-example features of all examples are kept
            (they fit ``memory_budget``); otherwise rows go in panels whose features fill
            half of ``memory_budget`` and each column block is recomputed once per panel.
        feature_bytes: ``"structured"``: bytes of per-example features of one example.
        memory_budget: the budget the plan was made for.
    """

    strategy: str
    batch_size: int
    n_params: int
    out_entries: int
    bytes_per_scalar: int
    bytes_estimate: int
    output_bytes: int
    rules: tuple[ParamRule, ...] = field(default=())
    cache_features: bool = True
    feature_bytes: int = 0
    memory_budget: int = DEFAULT_BUDGET


def _params(module: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("`module` has no trainable parameters; its NTK is zero")
    return params, dict(module.named_buffers())


def plan_empirical_ntk(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    trace: bool = True,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> NTKPlan:
    """Choose the strategy, block size and (``"structured"``) the rule of every parameter.

    Args:
        module, x1, x2: as in :func:`empirical_ntk`.
        trace: plan for :func:`empirical_ntk` (``True``) or :func:`empirical_ntk_full`.
        strategy: ``"auto"`` (``"structured"`` unless the Jacobian of the parameters
            without a rule does not fit ``memory_budget`` for one example, then ``"ntvp"``),
            ``"structured"``, ``"jacobian"`` or ``"ntvp"``.
        batch_size: override the block size.
        memory_budget: bytes for Jacobian blocks and cached features (default 1 GiB).
    Returns:
        An :class:`NTKPlan`; ``plan.rules`` lists the rule each parameter gets (the
        structured strategy runs one small probe forward pass to find them).
    """
    if strategy not in ("auto", "structured", "jacobian", "ntvp"):
        raise ValueError(
            f"`strategy` must be 'auto', 'structured', 'jacobian' or 'ntvp'; got {strategy!r}"
        )
    check_positive_int("memory_budget", memory_budget)
    params, buffers = _params(module)
    n_params = sum(p.numel() for p in params.values())
    with torch.no_grad():
        out = functional_call(module, (params, buffers), (x1[:1],))
    if out.ndim < 2:
        raise ValueError(
            f"`module` must map (N, ...) inputs to (N, k, ...) outputs; got {tuple(out.shape)}"
        )
    k, spatial = out.shape[1], tuple(out.shape[2:])
    out_entries = out[0].numel()
    s = out.element_size()
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    out_elems = n1 * n2 * math.prod(spatial) * (1 if trace else k * k)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    if strategy in ("auto", "structured"):
        plan = _plan_structured(
            module, params, buffers, x1, n2, x2 is None, k, math.prod(spatial), trace, s,
            batch_size, memory_budget, strategy == "structured",
        )  # fmt: skip
        if plan is not None:
            return NTKPlan("structured", plan[0], n_params, out_entries, s, plan[1],
                           out_elems * s, plan[2], plan[3], plan[4], memory_budget)  # fmt: skip
        strategy = "ntvp"
    b_fit = memory_budget // max(1, 8 * out_entries * n_params * s)
    if strategy == "auto":
        strategy = "jacobian" if b_fit >= 1 else "ntvp"
    if batch_size is not None:
        b = batch_size
    elif strategy == "jacobian":
        b = max(1, min(b_fit, max(n1, n2)))
    else:
        b = max(1, min(n1, 256))
    if strategy == "jacobian":
        est = 8 * b * out_entries * n_params * s
    else:
        est = 3 * n_params * s
    return NTKPlan(strategy, b, n_params, out_entries, s, est, out_elems * s)


# --------------------------------------------------------------------------- structured plan
@dataclass
class _Site:
    """A module with a structured rule: its kind, trainable parameter names, route."""

    name: str
    module: nn.Module
    kind: str
    train: set[str]
    route: str = "outer"
    feat_entries: int = 0  # per example
    pair_entries: int = 0  # temporaries per output-tile entry


def _ownership(module: nn.Module, params: dict[str, Tensor]):
    """``{param name: (module name, module, attribute)}`` and the reason a module is shared."""
    uses: Counter[int] = Counter()
    mod_uses: Counter[int] = Counter()
    for _, m in module.named_modules(remove_duplicate=False):
        mod_uses[id(m)] += 1
        for p in m._parameters.values():
            if p is not None:
                uses[id(p)] += 1
    owner = {}
    for mname, m in module.named_modules():
        for attr, p in m._parameters.items():
            full = f"{mname}.{attr}" if mname else attr
            if full in params:
                owner[full] = (mname, m, attr, uses[id(p)] > 1, mod_uses[id(m)] > 1)
    return owner


class _Capture:
    """Forward hooks on the sites: record (probe) or capture input + add a zero probe."""

    def __init__(self, sites: dict[str, nn.Module]) -> None:
        self.mode = "off"
        self.inputs: dict[str, Tensor] = {}
        self.probes: dict[str, Tensor] = {}
        self.calls: Counter[str] = Counter()
        self.shapes: dict[str, list] = {}
        self.versions: dict[str, int] = {}
        self.with_probe: set[str] = set()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in sites.items()]

    def _hook(self, name: str):
        def hook(m: nn.Module, inp: tuple, out: object):
            if self.mode == "off":
                return None
            self.calls[name] += 1
            x = inp[0] if len(inp) else None
            if self.mode == "record":
                ok = isinstance(x, Tensor) and isinstance(out, Tensor)
                self.shapes.setdefault(name, []).append(
                    (tuple(x.shape), tuple(out.shape), x._version, x) if ok else None
                )
                return None
            self.inputs[name] = x.detach()
            if name in self.with_probe or not out.requires_grad:
                # output modified in place later on, or nothing before it requires grad
                probe = torch.zeros_like(out, requires_grad=True)
                self.probes[name] = probe
                return out + probe  # ∂f/∂probe = the cotangent of this call's output
            self.probes[name] = out
            self.versions[name] = out._version
            return None

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _site_shape(site: _Site, xs: tuple, ys: tuple, k: int, ns: int, trace: bool) -> None:
    """Choose the route and the per-example feature / per-pair temporary sizes."""
    m, kind = site.module, site.kind
    kk = k if trace else k * k
    extra = 1 if {"weight", "bias"} <= site.train and kind != "layernorm" else 0
    if kind == "layernorm":
        n = math.prod(m.normalized_shape) * len(site.train)
        site.route, site.feat_entries, site.pair_entries = "grad", k * ns * n, ns * kk
        return
    if kind == "embedding":
        t, fi, fo = math.prod(xs[1:]), m.num_embeddings, m.embedding_dim
        g = 1
    elif kind == "linear":
        g, t, fi, fo = 1, math.prod(xs[1:-1]), xs[-1] + extra, ys[-1]
    elif kind.startswith("conv_t"):
        g = m.groups
        t, fi = math.prod(xs[2:]), xs[1] // g
        fo = ys[1] // g * math.prod(m.kernel_size)
    else:
        g = m.groups
        t, fi, fo = math.prod(ys[2:]), xs[1] // g * math.prod(m.kernel_size) + extra, ys[1] // g
    if site.train == {"bias"} and kind != "embedding":
        n_out = ys[-1] if kind == "linear" else ys[1]
        site.route, site.feat_entries, site.pair_entries = "grad", k * ns * n_out, ns * kk
        return
    outer, grad, _ = rules_.term_costs(kind, g, t, fi, fo, k, ns, trace)
    site.route = "grad" if grad < outer else "outer"
    if site.route == "grad":
        site.feat_entries = k * ns * g * fi * fo
        site.pair_entries = ns * kk
    else:
        site.feat_entries = g * t * (1 if kind == "embedding" else fi) + k * ns * g * t * fo
        site.pair_entries = ns * kk * t * t + t * t + ns * kk
    if kind.startswith("conv_t") and "bias" in site.train:
        site.feat_entries += k * ns * ys[1]


def _plan_structured(
    module, params, buffers, x1, n2, sym, k, ns, trace, s, batch_size, budget, force
):
    owner = _ownership(module, params)
    rules: dict[str, ParamRule] = {}
    sites: dict[str, _Site] = {}
    for pname, (mname, m, attr, shared_p, shared_m) in owner.items():
        kind, why = rules_.module_kind(m)
        if kind is not None and shared_p:
            kind, why = None, "the parameter is also registered in another module"
        elif kind is not None and shared_m:
            kind, why = None, "the module is reused (appears twice in the module tree)"
        if kind is None:
            rules[pname] = ParamRule(pname, mname, "jacobian", "jacobian", why)
            continue
        site = sites.setdefault(mname, _Site(mname, m, kind, set()))
        site.train.add(attr)
    cap = _Capture({n: st.module for n, st in sites.items()})
    try:
        seen: dict[str, list] = {n: [] for n in sites}
        for b in (2, 3):  # two batch sizes: the example axis must lead every captured tensor
            cap.shapes, cap.calls = {}, Counter()
            cap.mode = "record"
            idx = torch.arange(b) % x1.shape[0]
            with torch.no_grad():
                functional_call(module, (params, buffers), (x1[idx],))
            cap.mode = "off"
            for n in sites:
                rec = cap.shapes.get(n, [])
                seen[n].append((cap.calls[n], rec, b))
    finally:
        cap.close()
    for n, site in list(sites.items()):
        why = ""
        for calls, rec, b in seen[n]:
            if calls != 1:
                why = f"the module is called {calls} times per forward pass (not once)"
            elif rec[0] is None:
                why = "the module's input or output is not a single tensor"
            else:
                xs, ys, ver, x = rec[0]
                if x._version != ver:
                    why = "the module's input is modified in place after the call"
                elif not xs or xs[0] != b or not ys or ys[0] != b:
                    why = "the example axis is not the first axis of the module's input/output"
            if why:
                break
        if why:
            del sites[n]
            for attr in site.train:
                pname = f"{n}.{attr}" if n else attr
                rules[pname] = ParamRule(pname, n, "jacobian", "jacobian", why)
            continue
        xs, ys = seen[n][0][1][0][:2]
        _site_shape(site, xs, ys, k, ns, trace)
        for attr in site.train:
            pname = f"{n}.{attr}" if n else attr
            rules[pname] = ParamRule(pname, n, site.kind, site.route)
    ordered = tuple(rules[p] for p in params)
    n_fb = sum(params[r.param].numel() for r in ordered if r.rule == "jacobian")
    fb_per_example = 8 * k * ns * n_fb * s
    if n_fb and fb_per_example > budget and not force:
        return None
    feat = sum(st.feat_entries for st in sites.values()) + k * ns * n_fb
    pair = max([st.pair_entries for st in sites.values()] + [k * ns]) + 2 * ns * (
        k if trace else k * k
    )
    n1 = x1.shape[0]
    if batch_size is not None:
        b = batch_size
    else:
        b = max(1, min(MAX_TILE, math.isqrt(TILE_BUDGET // (s * pair))))
        nb = -(-max(n1, n2) // b)  # as many blocks as needed, of even size
        b = -(-max(n1, n2) // nb)
        if n_fb:  # Jacobian blocks of the fallback parameters: 8·b·K·P_fb·s ≤ budget
            b = min(b, max(1, budget // fb_per_example))
    n_all = n1 + (0 if sym else n2)
    cache = n_all * feat * s <= budget
    est = (n_all * feat * s if cache else budget // 2 + b * feat * s) + b * b * pair * s
    return b, est, ordered, cache, feat * s


def _check_inputs(x1: object, x2: object) -> tuple[Tensor, Tensor | None]:
    x1 = as_float_tensor("x1", x1, min_ndim=2)
    if x2 is not None:
        x2 = as_float_tensor("x2", x2, min_ndim=2)
        check_same_dtype_device("x1", x1, "x2", x2)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"`x1` and `x2` must share the per-example shape; got {tuple(x1.shape)} and "
                f"{tuple(x2.shape)}"
            )
    return x1, x2


def _compute(
    module: nn.Module,
    x1: object,
    x2: object,
    trace: bool,
    strategy: Strategy,
    batch_size: int | None,
    memory_budget: int,
) -> Tensor:
    x1, x2 = _check_inputs(x1, x2)
    plan = plan_empirical_ntk(
        module,
        x1,
        x2,
        trace=trace,
        strategy=strategy,
        batch_size=batch_size,
        memory_budget=memory_budget,
    )
    params, buffers = _params(module)
    if plan.strategy == "structured":
        return _by_structure(module, params, buffers, x1, x2, trace, plan)
    if plan.strategy == "jacobian":
        return _by_jacobian(module, params, buffers, x1, x2, trace, plan.batch_size)
    return _by_ntvp(module, params, buffers, x1, x2, trace, plan.batch_size)


def empirical_ntk(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> Tensor:
    """Empirical NTK traced over output channels (mean over channels).

    Args:
        module: maps ``(N, *in_shape)`` to ``(N, k)`` or ``(N, k, *S)``, per example.
        x1: ``(N1, *in_shape)``; x2: ``(N2, *in_shape)`` or ``None`` (= ``x1``).
        strategy: ``"auto"`` (``"structured"``, or ``"ntvp"`` when the Jacobian of the
            parameters without a rule does not fit), ``"structured"``, ``"jacobian"`` or
            ``"ntvp"`` (module docstring; :func:`plan_empirical_ntk` shows the choice).
        batch_size: override the block (tile) size chosen by :func:`plan_empirical_ntk`.
        memory_budget: bytes allowed for Jacobian blocks and kept per-example features
            (default 1 GiB).
    Returns:
        ``(N1, N2)`` — or ``(N1, N2, *S)`` — equal to
        ``(1/k) Σ_c Σ_p ∂f_c(x1)/∂p ∂f_c(x2)/∂p``, comparable with the analytic NTK.
    """
    return _compute(module, x1, x2, True, strategy, batch_size, memory_budget)


def empirical_ntk_full(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    strategy: Strategy = "auto",
    batch_size: int | None = None,
    memory_budget: int = DEFAULT_BUDGET,
) -> Tensor:
    """Empirical NTK between every pair of output channels.

    Same arguments as :func:`empirical_ntk`.  Returns ``(N1, N2, k, k)`` — or
    ``(N1, N2, k, k, *S)`` for spatial outputs (same position on both sides) —
    with entry ``[n, m, c, d] = Σ_p ∂f_c(x1_n)/∂p ∂f_d(x2_m)/∂p``.
    """
    return _compute(module, x1, x2, False, strategy, batch_size, memory_budget)


# --------------------------------------------------------------------------- structured
class _Features:
    """Per-example features (a list of terms) of a block of examples."""

    def __init__(self, module, params, buffers, plan: NTKPlan, k: int, ns: int) -> None:
        self.module, self.params, self.buffers = module, params, buffers
        self.k, self.ns = k, ns
        self.sites: dict[str, tuple[str, nn.Module, set[str], str]] = {}
        mods = dict(module.named_modules())
        for r in plan.rules:
            if r.rule != "jacobian":
                m = mods[r.module]
                entry = self.sites.setdefault(r.module, (r.rule, m, set(), r.route))
                entry[2].add(r.param.rsplit(".", 1)[-1])
        self.fallback = [r.param for r in plan.rules if r.rule == "jacobian"]
        n_fb = sum(params[p].numel() for p in self.fallback)
        per = 8 * k * ns * max(1, n_fb) * plan.bytes_per_scalar
        self.jac_block = max(1, plan.memory_budget // per)
        self.cap = _Capture({n: v[1] for n, v in self.sites.items()})

    def close(self) -> None:
        self.cap.close()

    def __call__(self, x: Tensor, trace: bool) -> list[rules_.Term]:
        terms: list[rules_.Term] = []
        if self.sites:
            terms += self._structured(x)
        if self.fallback:
            terms.append(self._jacobian(x))
        return terms

    def _structured(self, x: Tensor) -> list[rules_.Term]:
        cap, b = self.cap, x.shape[0]
        cap.inputs, cap.probes, cap.versions, cap.calls = {}, {}, {}, Counter()
        cap.mode = "capture"
        try:
            with torch.enable_grad():
                out = functional_call(self.module, (self.params, self.buffers), (x,))
        finally:
            cap.mode = "off"
        changed = {
            n for n in self.sites if n in cap.versions and cap.probes[n]._version != cap.versions[n]
        }
        if changed:  # outputs modified in place (e.g. ReLU(inplace=True)): add zero probes
            cap.with_probe |= changed
            return self._structured(x)
        for n in self.sites:
            if cap.calls[n] != 1:
                raise RuntimeError(
                    f"module {n!r} was called {cap.calls[n]} times, not once as when planned; "
                    "pass strategy='jacobian' for a module whose call pattern depends on its input"
                )
        names = list(self.sites)
        probes = [cap.probes[n] for n in names]
        flat = out.reshape(b, -1)
        n_out = flat.shape[1]
        ds: list[list[Tensor]] = [[] for _ in names]
        for e in range(n_out):
            if flat.requires_grad:
                gs = torch.autograd.grad(
                    flat[:, e].sum(), probes, retain_graph=e < n_out - 1, allow_unused=True
                )
            else:  # no site reaches the output
                gs = (None,) * len(probes)
            for lst, g, p in zip(ds, gs, probes, strict=True):
                lst.append(torch.zeros_like(p) if g is None else g)
        del out, flat, probes
        terms: list[rules_.Term] = []
        with torch.no_grad():
            for n, lst in zip(names, ds, strict=True):
                kind, m, train, route = self.sites[n]
                d = torch.stack(lst, dim=1)  # (b, K, *out)
                lst.clear()
                terms += rules_.features(kind, m, cap.inputs[n], d, self.k, self.ns, train, route)
        cap.inputs, cap.probes = {}, {}
        return terms

    def _jacobian(self, x: Tensor) -> rules_.Term:
        fixed = {n: p for n, p in self.params.items() if n not in self.fallback}
        sub = {n: self.params[n] for n in self.fallback}
        f = _single(self.module, self.buffers, fixed)
        rows = []
        for i in range(0, x.shape[0], self.jac_block):
            jac = _jac_block(f, sub, x[i : i + self.jac_block])
            b = next(iter(jac.values())).shape[0]
            rows.append(
                torch.cat([jac[n].reshape(b, self.k, self.ns, -1) for n in self.fallback], -1)
            )
        return rules_.Grad(torch.cat(rows, 0).movedim(2, 0).contiguous())


def _out_shape(module, params, buffers, x1) -> tuple[int, tuple[int, ...]]:
    with torch.no_grad():
        shape = tuple(functional_call(module, (params, buffers), (x1[:1],)).shape[1:])
    return shape[0], shape[1:]


def _structured_tiles(module, params, buffers, x1, x2, trace, plan: NTKPlan, skip=frozenset()):
    """Yield ``(i, j, r0, r1, c0, c1, tile)`` over the tile grid of side ``plan.batch_size``
    (upper triangle ``i ≤ j`` when ``x2`` is None), tile ``(bi, bj, |S|)`` traced or
    ``(bi, bj, k, k, |S|)``; tiles ``(i, j)`` in ``skip`` are not computed."""
    k, spatial = _out_shape(module, params, buffers, x1)
    ns = math.prod(spatial)
    sym = x2 is None
    xb = x1 if sym else x2
    n1, n2, b = len(x1), len(xb), plan.batch_size
    feats = _Features(module, params, buffers, plan, k, ns)
    try:
        rows = [(i, min(i + b, n1)) for i in range(0, n1, b)]
        cols = rows if sym else [(j, min(j + b, n2)) for j in range(0, n2, b)]
        todo = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
        todo = [(i, j) for i, j in todo if not (sym and j < i) and (i, j) not in skip]
        # Row panels: as many row blocks as fit half the budget (all of them when every
        # feature fits); the column blocks a panel needs are computed once per panel.
        per_block = max(1, plan.feature_bytes * b)
        panel = len(rows) if plan.cache_features else max(1, (plan.memory_budget // 2) // per_block)
        need_r = sorted({i for i, _ in todo})
        for p0 in range(0, len(need_r), panel):
            prow = need_r[p0 : p0 + panel]
            fr = {i: feats(x1[slice(*rows[i])], trace) for i in prow}
            pairs = [(i, j) for i, j in todo if i in fr]
            for j in sorted({j for _, j in pairs}):
                j0, j1 = cols[j]
                fj = fr[j] if sym and j in fr else feats(xb[j0:j1], trace)
                for i in sorted(i for i, jj in pairs if jj == j):
                    i0, i1 = rows[i]
                    tile = None
                    for ti, tj in zip(fr[i], fj, strict=True):
                        g = rules_.gram(ti, tj, trace)
                        tile = g if tile is None else tile.add_(g)
                    if trace:
                        t = tile.div_(k).permute(1, 2, 0)  # (bi, bj, ns)
                    else:
                        t = tile.view(ns, i1 - i0, k, j1 - j0, k).permute(1, 3, 2, 4, 0)
                    yield i, j, i0, i1, j0, j1, t
            del fr
    finally:
        feats.close()


def _by_structure(module, params, buffers, x1, x2, trace, plan: NTKPlan) -> Tensor:
    k, spatial = _out_shape(module, params, buffers, x1)
    ns = math.prod(spatial)
    n1 = len(x1)
    n2 = n1 if x2 is None else len(x2)
    shape = (n1, n2, ns) if trace else (n1, n2, k, k, ns)
    out = torch.empty(shape, dtype=x1.dtype, device=x1.device)
    for i, j, i0, i1, j0, j1, t in _structured_tiles(module, params, buffers, x1, x2, trace, plan):
        out[i0:i1, j0:j1] = t
        if x2 is None and j > i:  # mirror: swap the examples (and the channel pair)
            out[j0:j1, i0:i1] = t.transpose(0, 1) if trace else t.permute(1, 0, 3, 2, 4)
    return out.reshape(n1, n2, *spatial) if trace else out.reshape(n1, n2, k, k, *spatial)


def empirical_ntk_to_store(
    module: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    store: str | os.PathLike,
    tile: int | None = None,
    overwrite: bool = False,
    memory_budget: int = DEFAULT_BUDGET,
):
    """Traced empirical NTK ``(N1, N2)`` written tile by tile into a kernel store.

    The store is the one of :mod:`widelimit.scale` (read it with
    :func:`widelimit.scale.load_kernel`; ``.ntk[r0:r1, c0:c1]``): every finished tile is
    recorded with its checksum, so a killed run resumes where it stopped when called again
    with the same module weights, data and tile.  Only the structured strategy, outputs
    ``(N, k)`` (no spatial axes).  The store's ``spec`` is the module's ``repr`` plus a
    digest of its trainable parameters and buffers, so changed weights refuse to mix.

    Returns:
        The :class:`widelimit.scale.StoredKernel`.
    """
    import hashlib

    import numpy as np

    from widelimit.scale import load_kernel
    from widelimit.scale.lock import StoreLock
    from widelimit.scale.store import KernelStore, StoreMetadata, data_fingerprint

    x1, x2 = _check_inputs(x1, x2)
    plan = plan_empirical_ntk(
        module, x1, x2, strategy="structured", batch_size=tile, memory_budget=memory_budget
    )
    params, buffers = _params(module)
    _, spatial = _out_shape(module, params, buffers, x1)
    if spatial:
        raise ValueError(
            f"`module` outputs have spatial axes {spatial}; the store holds (N1, N2) kernels: "
            "flatten or pool the output, or use empirical_ntk"
        )
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted({**params, **buffers}.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    x1n = x1.detach().cpu().numpy()
    meta = StoreMetadata(
        spec=f"empirical_ntk {module!r} params={h.hexdigest()}",
        x1=data_fingerprint(x1n),
        x2=None if x2 is None else data_fingerprint(x2.detach().cpu().numpy()),
        n1=len(x1),
        n2=len(x1) if x2 is None else len(x2),
        input_shape=tuple(x1.shape[1:]),
        dtype=str(x1n.dtype),
        tile=plan.batch_size,
        get=("ntk",),
    )
    path = Path(store)
    with StoreLock(path):
        if path.exists() and overwrite:
            shutil.rmtree(path)
        if path.exists():
            kstore = KernelStore.open(path, mode="r+")
            kstore.check_matches(meta)
            done = kstore.done_tiles()
        else:
            kstore, done = KernelStore.create(path, meta), set()
        grid = kstore.plan
        for i, j, *_, t in _structured_tiles(
            module, params, buffers, x1, x2, True, plan, skip=frozenset(done)
        ):
            kstore.write_tile(grid.tile_at(i, j), {"ntk": np.asarray(t[..., 0].cpu())})
    return load_kernel(path)


# --------------------------------------------------------------------------- jacobian
def _single(module: nn.Module, buffers: dict[str, Tensor], fixed: dict[str, Tensor] | None = None):
    """One example's output as a function of (some of) the parameters; ``fixed`` the rest."""
    fixed = fixed or {}

    def f(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(module, ({**fixed, **p}, buffers), (x[None],))[0]

    return f


def _jac_block(f, params: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
    """Per-example Jacobians ``{name: (b, k, *S, *p.shape)}``."""
    return vmap(jacrev(f), in_dims=(None, 0))(params, x)


def _contract(ja: dict[str, Tensor], jb: dict[str, Tensor], trace: bool, n_out: int) -> Tensor:
    """Σ over parameters of Jacobian products, accumulated tensor by tensor."""
    total = None
    for name, a in ja.items():
        b = jb[name]
        a = a.flatten(start_dim=1 + n_out)
        b = b.flatten(start_dim=1 + n_out)
        if trace:
            term = torch.einsum("nc...p,mc...p->nm...", a, b) / a.shape[1]
        else:
            term = torch.einsum("nc...p,md...p->nmcd...", a, b)
        total = term if total is None else total + term
    return total


def _by_jacobian(module, params, buffers, x1, x2, trace, b):
    f = _single(module, buffers)
    with torch.no_grad():
        n_out = f(params, x1[0]).ndim
    sym = x2 is None
    xb = x1 if sym else x2
    rows = []
    blocks2 = [(j, min(j + b, len(xb))) for j in range(0, len(xb), b)]
    fixed = _jac_block(f, params, xb) if not sym and len(blocks2) == 1 else None
    for i in range(0, len(x1), b):
        ja = _jac_block(f, params, x1[i : i + b])
        cols = []
        for j0, j1 in blocks2:
            if sym and j0 < i:  # lower triangle: transpose of an earlier block
                cols.append(None)
                continue
            if sym and j0 == i:
                jb = ja
            elif fixed is not None:
                jb = fixed
            else:
                jb = _jac_block(f, params, xb[j0:j1])
            cols.append(_contract(ja, jb, trace, n_out))
        rows.append(cols)
    if sym:
        for r, row in enumerate(rows):
            for c in range(r):
                t = rows[c][r].transpose(0, 1)
                row[c] = t if trace else t.transpose(2, 3)
    return torch.cat([torch.cat(row, dim=1) for row in rows], dim=0)


# --------------------------------------------------------------------------- ntvp
def _by_ntvp(module, params, buffers, x1, x2, trace, b1):
    f = _single(module, buffers)
    xb = x1 if x2 is None else x2

    def f_batch(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(module, (p, buffers), (x,))

    with torch.no_grad():
        out_shape = tuple(f(params, x1[0]).shape)
    k, spatial = out_shape[0], out_shape[1:]
    n_s = math.prod(spatial)
    n1, n2 = len(x1), len(xb)
    dt = dict(dtype=x1.dtype, device=x1.device)
    # internal layout: (N1, N2, k, k, |S|), or traced (N1, N2, |S|)
    out = torch.zeros((n1, n2, n_s) if trace else (n1, n2, k, k, n_s), **dt)
    for j in range(n2):
        _, pull = vjp(lambda p, _x=xb[j]: f(p, _x).reshape(k, n_s), params)
        for c in range(k):
            for s in range(n_s):
                e = torch.zeros((k, n_s), **dt)
                e[c, s] = 1.0
                (g,) = pull(e)  # gradient row ∂f_{c,s}(x2_j)/∂p
                for i in range(0, n1, b1):
                    xi = x1[i : i + b1]
                    _, tang = jvp(lambda p, _x=xi: f_batch(p, _x), (params,), (g,))
                    tang = tang.reshape(len(xi), k, n_s)  # J(x1)·g
                    if trace:
                        out[i : i + b1, j, s] += tang[:, c, s] / k
                    else:
                        out[i : i + b1, j, :, c, s] = tang[:, :, s]
    return out.reshape(n1, n2, *spatial) if trace else out.reshape(n1, n2, k, k, *spatial)
