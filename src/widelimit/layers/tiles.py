"""Tile-by-tile evaluation of networks that mix no examples: the fast path of ``Layer.kernel``.

Why it works
------------
No current layer mixes examples: the block ``(i, j)`` of the output NNGP/NTK
(one pair of examples; one entry on dense features, an ``(H, H', W, W')`` or
``(H, W)`` block on images) is a function of the same block of the input
kernel and of the self-covariances ``cov1[i]``, ``cov2[j]`` only.  Such layers
declare ``pairwise = True`` (``Dense``, every activation, ``Conv``, pooling,
``Flatten``, ``LayerNorm``, ``Dropout``, rescaling and the combinators).  A
network made only of them maps every block of example pairs independently,
so :func:`pairwise_kernel` computes the input covariance one tile at a time
and pushes it through the whole network while it is in cache, writing the
results straight into the outputs:

* dense inputs ``(N, d)``: the Gram matrix is computed one panel of 256 rows at
  a time, straight into the NNGP output, and cut into column tiles of 4 MiB
  (``TILE_BYTES_CPU``); memory is the two ``(N1, N2)`` outputs plus a few
  tile-sized temporaries (no ``N × N`` intermediate);
* inputs with spatial axes: square tiles of example pairs with about ``2**20``
  kernel entries (``2**18`` in the diagonal layout);
* ``k(x)`` (``x2 is None``): only tiles on and above the diagonal are computed
  and each is copied to its transposed place (position pairs swapped in the
  full spatial layout), so the result is exactly symmetric at half the work;
* the diagonal of ``k(x)`` is exact: the dense Gram diagonal is set to the row
  sums (the variances), activations use the correlation ``c = 1`` exactly on
  self-pairs (``θ = 0``; 0 for zero variances, as
  :func:`~widelimit.layers.activations.correlation`), and the dense NNGP
  diagonal is reset to the variances after every activation.

The layer protocol (internal; new layers use it to get the fast path)
--------------------------------------------------------------------
* ``Layer.pairwise`` (class attribute, default ``False``): set it to ``True``
  when the layer's rule mixes no examples as above.  ``Layer.is_pairwise()``
  is true when the layer and all its children are; only then does
  ``Layer.kernel`` use this module (a layer that mixes examples, e.g. a graph
  aggregation or batch norm, keeps the whole-kernel route).
* A tile is a :class:`Tile`, i.e. a :class:`~widelimit.kernel.Kernel` whose
  ``nngp``/``ntk`` are ``(b, m, ...)`` blocks (rows of ``x1`` × columns of
  ``x2``), ``cov1``/``cov2`` the ``(b, ...)``/``(m, ...)`` self-covariances
  (``cov2`` never ``None``: a tile is not symmetric).  ``has_diagonal`` says
  that the pair ``(r, r)`` of the tile is example ``r`` with itself.  ``ntk``
  may be the raw input's ``Θ⁰ = 0`` as one zero expanded to any shape
  (:func:`~widelimit.layers.inputs.is_zero_constant`), so that the first
  ``Dense``/``Conv`` starts with ``Θ = Σ`` instead of reading a zeros array.
* ``Layer.transform_tile(t)`` maps a tile.  The default calls the pure
  ``transform_kernel(t)``, which works on tiles unchanged (they are kernels):
  a pairwise layer gets the tiled evaluation without writing anything else.
  A layer may override it to work **in place**: the caller hands over
  ownership of ``t.nngp``/``t.ntk`` (which may be views into the outputs), so
  they may be overwritten; ``cov1``/``cov2`` must not be.  ``FanOut`` clones
  the tensors for its extra branches.  ``Dense`` and the activations do so.
* Activations with a closed form implement ``dual_correlation(c, q1, q2,
  ntk=...)`` on the clamped correlation ``c`` (which they may overwrite) and
  variances that broadcast against it; the tile rule then normalises with
  ``1/√q`` vectors (:func:`correlation_`: two passes) instead of forming
  ``√(q1 q2)`` per entry.  Without it the layer's ``dual`` is called on the
  tile (still tiled, still bounded in memory).

Side inputs (``Kernel.side1``/``side2``, e.g. each example's graph) are sliced
with the tile: a tile's ``side1`` holds its rows' entries, ``side2`` its columns'
(never ``None``), so a layer that reads them is pairwise like any other.

Threads: the panels (dense) and square tiles (spatial) are independent jobs; on the CPU
they run on ``torch.get_num_threads()`` workers with one intra-op thread each
(:mod:`widelimit._threads`), longest first, so the kernel is bitwise the one-thread kernel
at any thread count and a busy core slows one worker instead of every operation.

The driver works on any device (tensors follow ``x1``'s device and dtype;
dense tiles are larger off the CPU, where launch overhead matters more than cache).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from widelimit._memory import empty_output, engine_heap
from widelimit._threads import engine_threads, run_jobs
from widelimit._validation import check_kernel_finite
from widelimit.kernel import Kernel
from widelimit.layers.inputs import gram, self_gram

if TYPE_CHECKING:  # pragma: no cover
    from widelimit.layers.base import Layer

__all__ = [
    "SNAP_ULPS",
    "Tile",
    "correlation_",
    "network_output",
    "pairwise_kernel",
    "slice_side",
    "snap_factor",
    "tile_shape",
]

#: Bytes of one dense tile on the CPU: 4 MiB (2**20 float32 or 2**19 float64 entries).  A
#: tile and its few temporaries stay in the L3 cache; smaller tiles (the L2's 2**18 float32
#: entries) spend more in per-tile Python and vector work than they save (5-12% slower
#: for the fully connected benchmark nets on 2 cores, measured interleaved).
TILE_BYTES_CPU = 4 << 20
#: Entries of one tile on the CPU (``None``: from ``TILE_BYTES_CPU``) and on other devices.
TILE_ENTRIES_CPU: int | None = None
TILE_ENTRIES_OTHER = 1 << 24
#: Rows of one panel of the Gram matrix (one matrix multiply per panel).
PANEL_ROWS = 256
#: Kernel entries of one tile of example pairs for inputs with spatial axes, full layout; the
#: diagonal layout's tiles (Flatten readouts) hold a quarter of it: 64×64 example pairs of
#: 8×8 images instead of 128×128 (1 MiB in float32), which stay in the L2 cache and leave only
#: 3/4 of the pairs of a 128-example ``k(x)`` to compute instead of all of them (conv +
#: Flatten float32/float64: 16-26 % less CPU time at N = 128 and 256; the full layout
#: measured no better with smaller tiles).
TILE_ENTRIES_SPATIAL = 1 << 20
DIAGONAL_TILE_SHARE = 4


@dataclass(frozen=True)
class Tile(Kernel):
    """A block of a dense-feature kernel (module docstring): ``nngp``/``ntk`` ``(b, m)``,
    ``cov1`` ``(b,)``, ``cov2`` ``(m,)``; ``has_diagonal``: entry ``(r, r)`` is on the
    diagonal of ``k(x)``."""

    has_diagonal: bool = False


#: Correlations within this many ulps of ±1 are rounded to exactly ±1 (:func:`snap_factor`).
SNAP_ULPS = 8


def snap_factor(dtype: torch.dtype) -> float:
    """``1 + SNAP_ULPS·ε``: correlations are multiplied by it before clamping to ``[−1, 1]``.

    Exactly collinear inputs (``x' = a·x``, 1-D inputs, LayerNorm outputs) have ``|c| = 1``,
    but ``c = s·(1/√q1)·(1/√q2)`` comes out a few ulps below it, and the arcsine/arc-cosine
    duals turn ``1 − |c| = ε`` into ``√(2ε)`` ≈ 2e-8 of the scale (two stacked ones into
    ``ε^{1/4}``), enough for eigenvalues of −3e-10·trace.  The factor rounds ``|c| ≥ 1 −
    8ε`` to ±1 after the clamp.  It moves every other ``c`` by 8ε relative (1.8e-15 in
    float64), less than the rounding error of ``c`` itself (the matrix product, two
    reciprocal square roots and two products already carry several ε), and it costs nothing:
    it is folded into the ``1/√q`` vector.  Used where the kernel engine forms ``c`` from a
    Gram matrix (:func:`correlation_`, ``Elementwise._dual_of``), not where a caller hands
    in an exact correlation (``activations.correlation``: the SDE drifts, the c-map).
    """
    return 1.0 + SNAP_ULPS * torch.finfo(dtype).eps


def correlation_(t: Tile) -> Tensor:
    """Overwrite ``t.nngp`` with the correlation ``c = s · r1[:, None] · r2[None, :]``.

    ``r = 1/√q`` (0 where ``q = 0``, so ``c = 0`` there), clamped to ``[−1, 1]`` after
    rounding ``|c|`` within 8 ulps of 1 to ±1 (:func:`snap_factor`);
    on the diagonal of ``k(x)`` ``c`` is set to exactly 1 (0 for zero variances).
    Two passes over the tile instead of forming ``√(q1 q2)`` per entry.
    """
    r1 = torch.where(t.cov1 > 0, t.cov1.rsqrt(), 0.0)
    r2 = torch.where(t.cov2 > 0, t.cov2.rsqrt(), 0.0) * snap_factor(t.cov2.dtype)
    c = t.nngp.mul_(r1[:, None]).mul_(r2).clamp_(-1.0, 1.0)
    if t.has_diagonal:
        c.diagonal().copy_(t.cov1 > 0)
    return c


def tile_shape(
    n_rows: int, n_cols: int, device: torch.device, itemsize: int = 4
) -> tuple[int, int]:
    """``(panel rows, tile columns)``: a panel's columns are cut in tiles of that width.

    ``itemsize``: bytes per entry (sets the CPU tile size).  The width is at least the
    panel height so that, for ``k(x)``, the first tile of a panel holds its whole
    diagonal block.
    """
    if device.type != "cpu":
        entries = TILE_ENTRIES_OTHER
    else:
        entries = TILE_ENTRIES_CPU or TILE_BYTES_CPU // itemsize
    rows = max(1, min(PANEL_ROWS, n_rows))
    return rows, max(rows, entries // rows, 1)


def _same_buffer(a: Tensor, b: Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _mirror_tile(m: Tensor, p0: int, p1: int, a0: int, a1: int) -> None:
    """Copy the computed block ``m[p0:p1, a0:a1]`` (``a0 >= p0``) of a symmetric matrix to
    its transposed place below the diagonal, while the block is still in cache."""
    if a0 == p0:  # holds the diagonal block: its upper triangle is the reference
        blk = m[p0:p1, p0:p1]
        blk.copy_(blk.triu() + blk.triu(1).T)
        a0 = p1
    if a0 < a1:
        m[a0:a1, p0:p1].copy_(m[p0:p1, a0:a1].T)


def slice_side(side: Mapping[str, Tensor], start: int, stop: int) -> dict[str, Tensor]:
    """Side inputs of the examples ``start:stop`` (each tensor sliced on its leading axis)."""
    return {name: t[start:stop] for name, t in side.items()}


def pairwise_kernel(
    spec: Layer,
    x1: Tensor,
    x2: Tensor | None,
    *,
    ntk: bool,
    full_spatial: bool = False,
    side1: Mapping[str, Tensor] | None = None,
    side2: Mapping[str, Tensor] | None = None,
) -> Kernel:
    """NNGP (and NTK when ``ntk``) of a pairwise ``spec`` (``is_pairwise()``), tile by tile.

    Args:
        spec: a network that mixes no examples (module docstring).
        x1: ``(N1, d)`` or ``(N1, C, *spatial)``; x2: the same trailing shape, or
            ``None`` for ``x1`` (then only the tiles on and above the diagonal are
            computed and mirrored).
        full_spatial: track all position pairs (``spec.needs_full_spatial()``).
        side1, side2: side inputs of ``x1``/``x2`` (:class:`~widelimit.kernel.Kernel`),
            sliced with each tile; ``side2`` is ignored when ``x2`` is None.
    Returns:
        The kernel ``spec.transform_kernel(input_kernel(...))`` up to rounding; exactly
        symmetric when ``x2`` is None.
    Raises:
        ValueError: an entry overflowed or is NaN
            (:func:`~widelimit._validation.check_kernel_finite`), or an input requires
            grad (this engine is not differentiable; the layers' ``transform_tile`` are).
    """
    if torch.is_grad_enabled() and (x1.requires_grad or (x2 is not None and x2.requires_grad)):
        raise ValueError(
            "pairwise_kernel writes its tiles into preallocated outputs and is not "
            "differentiable; call net.kernel(x1, x2), which takes the differentiable "
            "whole-kernel route when an input requires grad, or pass detached inputs"
        )
    side1 = {} if side1 is None else dict(side1)
    side2 = side1 if x2 is None or side2 is None else dict(side2)
    # freed tiles stay in the heap (widelimit._memory); tiles run on workers with one
    # intra-op thread each (widelimit._threads)
    entries = x1.shape[0] * (x1.shape[0] if x2 is None else x2.shape[0])
    with engine_heap(), engine_threads(x1.device, entries) as workers:
        if x1.ndim > 2:
            k = _spatial_kernel(
                spec, x1, x2, ntk=ntk, full=full_spatial, side=(side1, side2), workers=workers
            )
            check_kernel_finite(k.nngp, k.ntk)
        else:  # checks its tiles for inf/NaN while they are in cache
            k = _dense_kernel(spec, x1, x2, ntk=ntk, side=(side1, side2), workers=workers)
        if side1 or side2:  # equal inputs with different side inputs are different examples
            return k
        return tie_duplicates(spec, x1, x2, k)


def _dense_kernel(
    spec: Layer,
    x1: Tensor,
    x2: Tensor | None,
    *,
    ntk: bool,
    side: tuple[dict[str, Tensor], dict[str, Tensor]],
    workers: int,
) -> Kernel:
    """:func:`pairwise_kernel` for ``(N, d)`` inputs: panels of the Gram matrix cut in tiles."""
    side1, side2 = side
    sym = x2 is None
    xb = x1 if x2 is None else x2
    n1, n2, d = int(x1.shape[0]), int(xb.shape[0]), int(x1.shape[1])
    q1 = self_gram(x1)
    q2 = q1 if sym else self_gram(xb)
    nngp = empty_output(x1, (n1, n2))
    theta = empty_output(x1, (n1, n2)) if ntk else None
    zero = x1.new_zeros(()) if ntk else None  # Θ⁰ = 0 as a broadcasting scalar
    cov1 = x1.new_empty((n1,))
    cov2 = None if sym else x1.new_empty((n2,))
    rows, width = tile_shape(n1, n2, x1.device, x1.element_size())

    def panel_job(p0: int) -> tuple[Tensor, Kernel]:
        """Rows ``p0:p0+rows``: their Gram panel, then its tiles through the network.

        Writes only its own rows (and, for ``k(x)``, their mirror below the diagonal, which
        no other panel writes).  Returns the sum of its entries and its last output tile.
        """
        p1 = min(p0 + rows, n1)
        c0 = p0 if sym else 0
        panel = nngp[p0:p1, c0:]
        torch.mm(x1[p0:p1], xb[c0:].T, out=panel)
        panel.div_(d)  # Σ⁰ = x·x'/d
        if sym:
            # matmul and row sums round differently: make c = 1 exact on the diagonal
            panel.diagonal().copy_(q1[p0:p1])
        total = x1.new_zeros(())  # sum of every computed entry: finite iff all of them are
        out: Kernel | None = None
        for a0 in range(c0, n2, width):
            a1 = min(a0 + width, n2)
            s = nngp[p0:p1, a0:a1]
            tile = Tile(
                nngp=s,
                ntk=zero,
                cov1=q1[p0:p1],
                cov2=q2[a0:a1],
                channels=d,
                has_diagonal=sym and a0 == c0,
                side1=slice_side(side1, p0, p1),
                side2=slice_side(side2, a0, a1),
            )
            out = network_output(spec.transform_tile(tile))
            if not _same_buffer(out.nngp, s):
                s.copy_(out.nngp)
            total += s.sum()
            if sym:
                _mirror_tile(nngp, p0, p1, a0, a1)
            if theta is not None:
                th = theta[p0:p1, a0:a1]
                if out.ntk is None:  # pragma: no cover - every layer keeps the NTK
                    raise RuntimeError("a layer dropped the NTK of a tile")
                if not _same_buffer(out.ntk, th):
                    th.copy_(out.ntk)  # broadcasts a 0-dim Θ = 0
                total += th.sum()
                if sym:
                    _mirror_tile(theta, p0, p1, a0, a1)
            if a0 == c0:
                cov1[p0:p1] = out.cov1
            if cov2 is not None and p0 == 0:
                cov2[a0:a1] = out.cov2
        assert out is not None  # every panel has at least one tile
        return total, out

    panels = range(0, n1, rows)  # longest first for k(x): panel p0 has n2 - p0 columns
    results = run_jobs(panel_job, panels, workers)
    total = sum(r[0] for r in results)
    last = results[-1][1]
    if not bool(torch.isfinite(total)):  # an inf/NaN entry, or a sum past the float range
        check_kernel_finite(nngp, theta)
    return Kernel(
        nngp=nngp,
        ntk=theta,
        cov1=cov1,
        cov2=cov2,
        spatial=(),
        full_spatial=False,
        channels=last.channels,
        is_gaussian=last.is_gaussian,
        side1=side1,
        side2=None if sym else side2,
    )


#: Rows of the small symmetric kernels that give the self-kernels of duplicated inputs.
SELF_CHUNK = 64


def _row_hashes(flat: Tensor) -> Tensor:
    """An int64 key per row (``(n, f)`` → ``(n,)``), equal for bitwise-equal rows.

    The bits of two row reductions (the sum and a fixed random weighting): each row is
    reduced by the same code, so equal rows give equal keys; unequal rows rarely collide,
    and collisions are resolved by an exact comparison afterwards.  (Elementwise products and
    row sums, not a matrix-vector product, whose rounding may depend on the row's place.)
    """
    g = torch.Generator().manual_seed(0x5EED)
    w = torch.rand(flat.shape[1], generator=g, dtype=torch.float64).to(flat)
    weighted = torch.cat([(flat[i : i + 4096] * w).sum(1) for i in range(0, len(flat), 4096)])
    sums = torch.stack([flat.sum(1), weighted], 1).double()
    bits = sums.view(torch.int64)
    return bits[:, 0] * 1_000_003 + bits[:, 1]  # wraps around modulo 2**64


def duplicate_groups(x1: Tensor, x2: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """Group ids of exactly equal examples: ``(id1 (N1,), id2 (N2,))``, or ``None`` if none.

    Rows are compared bit for bit.  With ``x2 = None`` the groups are the repeated rows of
    ``x1`` (``id2`` is ``id1``); otherwise the rows of ``x2`` equal to a row of ``x1``.  Rows
    whose hash is unique get distinct ids without being compared, so the common case (no
    equal examples) costs one pass over the inputs and a sort of ``N1 + N2`` integers; the
    few candidates are then compared exactly (``torch.unique`` over their rows).
    """
    flat = x1.reshape(len(x1), -1)
    if x2 is not None:
        flat = torch.cat([flat, x2.reshape(len(x2), -1)])
    h = _row_hashes(flat.contiguous())
    _, inv, counts = torch.unique(h, return_inverse=True, return_counts=True)
    cand = (counts[inv] > 1).nonzero().squeeze(1)
    if not len(cand):
        return None
    ids = torch.arange(len(flat), device=flat.device)  # distinct unless proven equal
    _, inv_c = torch.unique(flat[cand], dim=0, return_inverse=True)
    ids[cand] = len(flat) + inv_c  # exact groups among the candidates
    id1, id2 = ids[: len(x1)], ids[len(x1) :]
    if x2 is None:
        return (id1, id1) if len(torch.unique(id1)) < len(id1) else None
    return (id1, id2) if bool(torch.isin(id2, id1).any()) else None


def tie_duplicates(spec: Layer, x1: Tensor, x2: Tensor | None, k: Kernel) -> Kernel:
    """Give every pair of exactly equal examples the kernel of the example with itself.

    ``k(x, x)`` is computed with the correlation ``c = 1`` exactly (the self-pair rule of
    the module docstring), but a pair of equal examples in different places of a batch
    gets ``c`` from a matrix product and row sums that round differently: ``c = 1 − ε``.
    The arcsine/arc-cosine duals (ReLU family, Sign, Erf, GELU) turn that into ``√(2ε)``
    ≈ 2e-8 of the scale, two stacked ones into ``ε^{1/4}``, and saturating activations on
    inputs of norm 1e6 give relative errors up to 1e-5; a test point equal to a training
    point would then not reproduce the training diagonal.  Here those pairs get exactly
    the self-kernel instead (overwritten in ``k``): from the diagonal of ``k`` when
    ``x2`` is None, else from small symmetric kernels of the shared examples
    (``SELF_CHUNK`` at a time, so ``SELF_CHUNK / N2`` of the work at most).
    """
    groups = duplicate_groups(x1, x2)
    if groups is None:
        return k
    id1, id2 = groups
    shared = torch.isin(id1, id2) if x2 is not None else torch.bincount(id1)[id1] > 1
    rows = shared.nonzero().squeeze(1)  # examples of x1 with an equal example in x2
    cols = torch.isin(id2, id1[rows]).nonzero().squeeze(1)
    pair = id1[rows][:, None] == id2[cols][None, :]
    ii, jj = pair.nonzero().unbind(1)
    ii, jj = rows[ii], cols[jj]
    # one representative row of x1 per group and its self-kernel (NNGP, NTK)
    uniq, first = _first_index(id1[rows])
    reps = rows[first]
    names = ("nngp", "ntk") if k.ntk is not None else ("nngp",)
    if x2 is None:
        selves = [getattr(k, n)[reps, reps] for n in names]
    else:
        parts = [spec.kernel(x1[chunk], get=names) for chunk in reps.split(SELF_CHUNK)]
        selves = [torch.cat([_pair_diagonal(getattr(p, n)) for p in parts]) for n in names]
    which = torch.searchsorted(uniq, id1[ii])  # position of each pair's group in uniq
    for n, self_t in zip(names, selves, strict=True):
        getattr(k, n)[ii, jj] = self_t[which]
    return k


def _pair_diagonal(t: Tensor) -> Tensor:
    """``t[i, i]`` for every example ``i`` of a symmetric kernel: ``(N, N, *S)`` → ``(N, *S)``."""
    i = torch.arange(len(t), device=t.device)
    return t[i, i]


def _first_index(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted distinct values of ``ids`` and the index of each one's first occurrence."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(ids), device=ids.device), "amin")
    return uniq, first


def network_output(k: Kernel | tuple) -> Kernel:
    """The kernel (or tile) a whole network returns; parallel branches left open are an error."""
    if isinstance(k, tuple):
        raise ValueError(
            f"the network ends with {len(k)} parallel branches; close them with FanInSum()"
        )
    return k


def _swap_pairs(t: Tensor, n_spatial: int, full: bool) -> Tensor:
    """``K(x', x)`` from ``K(x, x')``: swap the example axes (and position pairs if ``full``)."""
    perm = [1, 0]
    for a in range(n_spatial):
        d = 2 + (2 * a if full else a)
        perm += [d + 1, d] if full else [d]
    return t.permute(perm)


def _spatial_kernel(
    spec: Layer,
    x1: Tensor,
    x2: Tensor | None,
    *,
    ntk: bool,
    full: bool,
    side: tuple[Mapping[str, Tensor], Mapping[str, Tensor]],
    workers: int,
) -> Kernel:
    """:func:`pairwise_kernel` for ``(N, C, *spatial)`` inputs: square tiles of example pairs."""
    sym = x2 is None
    xb = x1 if x2 is None else x2
    n1, n2 = int(x1.shape[0]), int(xb.shape[0])
    per_pair = math.prod(x1.shape[2:]) ** (2 if full else 1)
    entries = TILE_ENTRIES_SPATIAL if full else TILE_ENTRIES_SPATIAL // DIAGONAL_TILE_SHARE
    block = max(1, math.isqrt(max(1, entries // per_pair)))
    q1 = self_gram(x1, full)
    q2 = q1 if sym else self_gram(xb, full)
    outputs: dict[str, Tensor | None] = {}

    def tile_job(rc: tuple[int, int]) -> Kernel:
        """The tile of rows ``r0:r0+block`` × columns ``c0:c0+block`` (and its mirror)."""
        r0, c0 = rc
        r1, c1 = min(r0 + block, n1), min(c0 + block, n2)
        g = gram(x1[r0:r1], xb[c0:c1], full)
        tile = Tile(
            nngp=g,
            ntk=g.new_zeros(()).expand(g.shape) if ntk else None,  # Θ⁰ = 0, no memory
            cov1=q1[r0:r1],
            cov2=q2[c0:c1],
            spatial=tuple(x1.shape[2:]),
            full_spatial=full,
            channels=int(x1.shape[1]),
            has_diagonal=sym and r0 == c0,
            side1=slice_side(side[0], r0, r1),
            side2=slice_side(side[1], c0, c1),
        )
        out = network_output(spec.transform_tile(tile))
        if not outputs:  # the first tile (run alone) gives the output layout
            nngp = empty_output(out.nngp, (n1, n2, *out.nngp.shape[2:]))
            outputs["nngp"] = nngp
            outputs["ntk"] = empty_output(nngp, nngp.shape) if ntk else None
            outputs["cov1"] = out.cov1.new_empty((n1, *out.cov1.shape[1:]))
            outputs["cov2"] = None if sym else out.cov2.new_empty((n2, *out.cov2.shape[1:]))
        o_sp, o_full = len(out.spatial), out.full_spatial
        for dst, src in ((outputs["nngp"], out.nngp), (outputs["ntk"], out.ntk)):
            if dst is None:
                continue
            dst[r0:r1, c0:c1] = src
            if sym and c0 > r0:
                dst[c0:c1, r0:r1] = _swap_pairs(src, o_sp, o_full)
            elif sym:  # diagonal block: its upper triangle of pairs is the reference
                blk = dst[r0:r1, c0:c1]
                upper = torch.ones(blk.shape[:2], dtype=torch.bool, device=blk.device)
                upper = upper.triu().reshape(*blk.shape[:2], *([1] * (blk.ndim - 2)))
                blk.copy_(torch.where(upper, blk, _swap_pairs(blk, o_sp, o_full)))
        cov1, cov2 = outputs["cov1"], outputs["cov2"]
        if c0 == (r0 if sym else 0):
            cov1[r0:r1] = out.cov1
        if cov2 is not None and r0 == 0:
            cov2[c0:c1] = out.cov2
        return out

    tiles = [(r0, c0) for r0 in range(0, n1, block) for c0 in range(r0 if sym else 0, n2, block)]
    first = tile_job(tiles[0])  # allocates the outputs
    rest = run_jobs(tile_job, tiles[1:], workers)
    last = rest[-1] if rest else first
    nngp, theta, cov1, cov2 = (outputs[k] for k in ("nngp", "ntk", "cov1", "cov2"))
    assert last is not None and nngp is not None and cov1 is not None
    return Kernel(
        nngp=nngp,
        ntk=theta,
        cov1=cov1,
        cov2=cov2,
        spatial=last.spatial,
        full_spatial=last.full_spatial,
        channels=last.channels,
        is_gaussian=last.is_gaussian,
        side1=dict(side[0]),
        side2=None if sym else dict(side[1]),
    )
