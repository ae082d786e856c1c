"""Graph convolution: ``Aggregate``, a sum over each node's predecessors in a per-example graph.

Each example is a graph: node features ``x: (C, n_nodes)`` (the nodes are the
positions of a signal, so a batch is ``(N, C, n_nodes)``; images ``(N, C, H, W)``
have ``H·W`` nodes) and a weighted adjacency, the *pattern*
``a: (n_nodes, n_nodes)`` (images: ``(H, W, H, W)``).  ``a[i, j] = w`` is an arc
from node ``i`` to node ``j`` of weight ``w``; the layer replaces every node by
the weighted sum of its predecessors, per channel::

    y[c, j] = Σ_i x[c, i] · a[i, j]          (y = x @ a)

as Neural Tangents' ``stax.Aggregate`` (dense implementation) does, so its
patterns carry over unchanged.  It has no parameters and is linear, so (Du et
al. 2019, "Graph Neural Tangent Kernel"; Novak et al. 2019, §3.2) for examples
``x`` and ``x'`` with patterns ``a`` and ``a'``::

    Σ'(x, x') = aᵀ Σ(x, x') a'          Θ'(x, x') = aᵀ Θ(x, x') a'

on the full covariance between node pairs (the layer mixes nodes, so the network
tracks the full spatial layout).  Self-loops are not added: put them in ``a``
(e.g. ``a + I``) if a node should keep its own features.

The pattern is a side input given with the data (:mod:`widelimit.layers.base`):

* ``net.kernel(x1, pattern=a1)`` or ``net.kernel(x1, x2, pattern=(a1, a2))``;
* ``net.module(width, input_shape=(C, n))(x, pattern=a)``.

Each pattern is either *batched*, ``(N, n, n)`` (one graph per example, the
general case: graphs of different sizes are padded to ``n`` nodes with
isolated nodes), or *shared*, ``(n, n)`` (one graph for every example of that
batch).  All ``Aggregate`` layers of a network read the same pattern; the
pattern's node count must equal the number of positions where the layer sits
(so layers that change it, strided or ``"valid"`` convolutions, pooling, cannot
sit before an ``Aggregate``).  The layer mixes nodes but not examples, so it runs
on the tiled engine, which slices each tile's patterns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape
from widelimit.layers.inputs import is_zero_constant


def _as_pattern(
    value: object, dtype: torch.dtype, device: torch.device, arg: str, *, check: bool = True
) -> Tensor:
    if isinstance(value, tuple | list):
        raise TypeError(f"`{arg}` must be a tensor (an adjacency); got a {type(value).__name__}")
    try:
        a = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"`{arg}` must be a tensor (an adjacency); got {type(value).__name__}"
        ) from err
    if a.is_complex():
        raise TypeError(
            f"`{arg}` must be a real adjacency; got complex dtype {a.dtype} (its imaginary part "
            f"would be dropped). Pass a real tensor, e.g. `{arg}.real` if the imaginary part is 0"
        )
    a = a.to(dtype=dtype, device=device)
    if check and not bool(torch.isfinite(a).all()):
        raise ValueError(f"`{arg}` must be finite; it has inf/NaN entries")
    return a


def _pattern_rank(a: Tensor, spatial: tuple[int, ...], n: int, arg: str) -> Tensor:
    """``a`` as ``(n, *spatial, *spatial)``: a shared pattern is expanded (no copy)."""
    k = len(spatial)
    if a.ndim == 2 * k:
        a = a.expand(n, *a.shape)
    if a.ndim != 2 * k + 1 or tuple(a.shape[1:]) != (*spatial, *spatial) or a.shape[0] != n:
        nodes = "x".join(str(s) for s in spatial)
        raise ValueError(
            f"`{arg}` must be a batched ({n}, {', '.join(map(str, spatial * 2))}) or shared "
            f"({', '.join(map(str, spatial * 2))}) adjacency for {n} examples with {nodes} "
            f"nodes; got shape {tuple(a.shape)}"
        )
    return a


def _check_nodes(layer: Layer, spatial: tuple[int, ...]) -> None:
    if len(spatial) not in (1, 2):
        raise ValueError(
            f"{type(layer).__name__} expects node features (N, C, n_nodes) or images "
            f"(N, C, H, W); got {len(spatial)} spatial axes (dense features have no nodes)"
        )


class AggregateModule(nn.Module):
    """Finite ``Aggregate``: ``(N, C, *S)`` features, pattern ``(N, *S, *S)`` or ``(*S, *S)``."""

    takes_side = True

    def forward(self, x: Tensor, pattern: Tensor | None = None, **other_side: object) -> Tensor:
        """``y = x @ a`` per example and channel (module docstring of :mod:`graph`)."""
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Aggregate expects (N, C, n_nodes) or (N, C, H, W) inputs; got {tuple(x.shape)}"
            )
        if pattern is None:
            raise ValueError(
                "Aggregate needs the graph of the inputs: call the network as "
                "module(x, pattern=a) with a of shape (N, n_nodes, n_nodes) or (n_nodes, n_nodes)"
            )
        spatial = tuple(x.shape[2:])
        p = math.prod(spatial)
        # no data-dependent check here: the module runs under vmap (empirical NTK)
        a = _as_pattern(pattern, x.dtype, x.device, "pattern", check=False)
        a = _pattern_rank(a, spatial, x.shape[0], "pattern").reshape(-1, p, p)
        y = torch.matmul(x.reshape(x.shape[0], x.shape[1], p), a)  # y[c, j] = Σ_i x[c, i] a[i, j]
        return y.reshape(x.shape)


def _to_matrix(t: Tensor, n_lead: int, n_sp: int) -> Tensor:
    """Full layout ``(lead, S1, S1', S2, S2')`` -> ``(lead, P, P')`` (node pairs)."""
    if n_sp == 1:
        return t
    lead = t.shape[:n_lead]
    h, w = t.shape[n_lead], t.shape[n_lead + 2]
    perm = [*range(n_lead), n_lead, n_lead + 2, n_lead + 1, n_lead + 3]
    return t.permute(perm).reshape(*lead, h * w, h * w)


def _from_matrix(t: Tensor, n_lead: int, spatial: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_to_matrix`."""
    if len(spatial) == 1:
        return t
    lead = t.shape[:n_lead]
    h, w = spatial
    perm = [*range(n_lead), n_lead, n_lead + 2, n_lead + 1, n_lead + 3]
    return t.reshape(*lead, h, w, h, w).permute(perm)


@dataclass(frozen=True)
class Aggregate(Layer):
    """Graph convolution ``y = x @ a`` over each example's adjacency ``a`` (module docstring).

    Inputs ``(N, C, n_nodes)`` (or ``(N, C, H, W)``); the pattern comes with the
    data: ``net.kernel(x1, x2, pattern=(a1, a2))``, ``module(x, pattern=a)``,
    batched ``(N, n, n)`` or shared ``(n, n)``.  No parameters; the kernel is
    ``Σ' = aᵀ Σ a'`` (NNGP and NTK alike).
    """

    mixes_positions: ClassVar[bool] = True
    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = ("pattern",)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = single_shape(self, in_shape)
        _check_nodes(self, tuple(s[1:]))
        return s

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        self.out_shape(in_shape)
        return AggregateModule()

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        """The pattern for the batch ``x`` as ``(N, ...)`` (a shared one expanded)."""
        a = _as_pattern(value, x.dtype, x.device, arg)
        if a.ndim % 2 == 0 and a.ndim > 0:  # shared (*S, *S): one graph for the batch
            a = a.expand(x.shape[0], *a.shape)
        if a.ndim < 3 or a.shape[0] != x.shape[0]:
            raise ValueError(
                f"`{arg}` must be a batched (N, n_nodes, n_nodes) adjacency with N = "
                f"{x.shape[0]} examples, or a shared (n_nodes, n_nodes) one; got shape "
                f"{tuple(a.shape)}"
            )
        return a

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        _check_nodes(self, k.spatial)
        if not k.full_spatial:
            raise ValueError(
                "Aggregate needs the full covariance between nodes but got the diagonal "
                "layout; compute kernels through net.kernel(...)"
            )
        pair = k.side_pair("pattern")
        if pair is None:
            raise ValueError(
                "Aggregate needs the graph of every example: pass pattern=a1 to "
                "net.kernel(x1, ...) (pattern=(a1, a2) together with x2)"
            )
        n_sp, p = len(k.spatial), math.prod(k.spatial)
        a1 = _pattern_rank(pair[0], k.spatial, k.n1, "pattern").reshape(-1, p, p)
        a2 = _pattern_rank(pair[1], k.spatial, k.n2, "pattern").reshape(-1, p, p)
        a1t = a1.transpose(1, 2)

        def both(t: Tensor | None) -> Tensor | None:
            # Σ'(x, x') = aᵀ Σ a'  for every pair of examples
            if t is None or is_zero_constant(t):
                return t
            m = _to_matrix(t, 2, n_sp)
            return _from_matrix(a1t[:, None] @ m @ a2[None], 2, k.spatial)

        def own(t: Tensor | None, a: Tensor) -> Tensor | None:
            if t is None:
                return None
            return _from_matrix(a.transpose(1, 2) @ _to_matrix(t, 1, n_sp) @ a, 1, k.spatial)

        return k.replace(
            nngp=both(k.nngp),
            ntk=both(k.ntk),
            cov1=own(k.cov1, a1),
            cov2=None if k.cov2 is None else own(k.cov2, a2),
        )


__all__ = ["Aggregate", "AggregateModule"]
