"""Tile-by-tile evaluation of networks on dense features: the fast path of ``Layer.kernel``.

Why it works
------------
On dense features (inputs ``(N, d)``, no spatial axes) the rule of most layers is
*entrywise*: entry ``(i, j)`` of the output NNGP/NTK is a function of entry
``(i, j)`` of the input NNGP/NTK and of the variances ``cov1[i]``, ``cov2[j]``
only (``Dense``, every activation, ``LayerNorm``, ``Dropout``, constant
rescaling, ``Identity``, ``Flatten`` and the combinators).  A network made only
of such layers maps every block of rows × columns independently, so
:func:`entrywise_kernel` computes the input Gram matrix one panel of rows at a
time and pushes column tiles of it through the whole network while they are
in cache, writing the results straight into the two output matrices:

* memory: the two ``(N1, N2)`` outputs plus a few tile-sized temporaries (a
  tile has about ``2**18`` entries on the CPU); no ``N × N`` intermediate;
* ``k(x)`` (``x2 is None``): only tiles on and above the diagonal are computed
  (rows ``[p0, p1)``, columns ``[p0, N)``), each copied to its transposed place
  while in cache, so the result is exactly symmetric at half the work;
* the diagonal of ``k(x)`` is exact: the Gram diagonal is set to the row sums
  (the variances), activations use the correlation ``c = 1`` there (``θ = 0``
  exactly; 0 for zero-variance rows, as :func:`~widelimit.layers.activations.correlation`),
  and the NNGP diagonal is reset to the variances after every activation.

The layer protocol (internal; new layers use it to get the fast path)
--------------------------------------------------------------------
* ``Layer.entrywise`` (class attribute, default ``False``): set it to ``True``
  when the layer's rule is entrywise on dense features as above.
  ``Layer.is_entrywise()`` is true when the layer and all its children are;
  only then does ``Layer.kernel`` use this module (for ``(N, d)`` inputs).
* A tile is a :class:`Tile`, i.e. a :class:`~widelimit.kernel.Kernel` whose
  ``nngp``/``ntk`` are ``(b, m)`` blocks (rows of ``x1`` × columns of ``x2``),
  ``cov1`` the ``(b,)`` row variances and ``cov2`` the ``(m,)`` column
  variances (never ``None``: a tile is not symmetric), ``spatial == ()``.
  ``has_diagonal`` says that entry ``(r, r)`` is the global diagonal entry of
  row ``r``.  ``ntk`` may be a 0-dim zero tensor: the raw input's ``Θ⁰ = 0``,
  kept as a scalar that broadcasts, so that the first ``Dense`` starts with
  ``Θ = Σ`` instead of adding a zeros array.
* ``Layer.transform_tile(t)`` maps a tile.  The default calls the pure
  ``transform_kernel(t)``, which works on tiles unchanged (they are kernels):
  an entrywise layer gets the tiled evaluation without writing anything else.
  A layer may override it to work **in place**: the caller hands over
  ownership of ``t.nngp``/``t.ntk`` (which may be views into the outputs), so
  they may be overwritten; the row/column variance vectors must not be.
  ``FanOut`` clones the tensors for its extra branches.
* Activations with a closed form implement ``dual_correlation(c, q1, q2,
  ntk=...)`` on the clamped correlation ``c`` (which they may overwrite) and
  the variances; :meth:`Elementwise.transform_tile` then normalises each tile
  with length-``N`` vectors (:func:`correlation_`) instead of forming
  ``√(q1 q2)`` per entry.  Without it the layer's ``dual`` is called on the
  tile (still tiled, still bounded in memory).

The driver works on any device (tensors follow ``x1``'s device and dtype;
tiles are larger off the CPU, where launch overhead matters more than cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from widelimit.kernel import Kernel
from widelimit.layers.inputs import self_gram

if TYPE_CHECKING:  # pragma: no cover
    from widelimit.layers.base import Layer

__all__ = ["Tile", "correlation_", "entrywise_kernel", "tile_shape"]

#: Entries of one tile on the CPU (about the L2 cache) and on other devices.
TILE_ENTRIES_CPU = 1 << 18
TILE_ENTRIES_OTHER = 1 << 24
#: Rows of one panel of the Gram matrix (one matrix multiply per panel).
PANEL_ROWS = 256


@dataclass(frozen=True)
class Tile(Kernel):
    """A block of a dense-feature kernel (module docstring): ``nngp``/``ntk`` ``(b, m)``,
    ``cov1`` ``(b,)``, ``cov2`` ``(m,)``; ``has_diagonal``: entry ``(r, r)`` is on the
    diagonal of ``k(x)``."""

    has_diagonal: bool = False


def correlation_(t: Tile) -> Tensor:
    """Overwrite ``t.nngp`` with the correlation ``c = s · r1[:, None] · r2[None, :]``.

    ``r = 1/√q`` (0 where ``q = 0``, so ``c = 0`` there), clamped to ``[−1, 1]``;
    on the diagonal of ``k(x)`` ``c`` is set to exactly 1 (0 for zero variances).
    Two passes over the tile instead of forming ``√(q1 q2)`` per entry.
    """
    r1 = torch.where(t.cov1 > 0, t.cov1.rsqrt(), 0.0)
    r2 = torch.where(t.cov2 > 0, t.cov2.rsqrt(), 0.0)
    c = t.nngp.mul_(r1[:, None]).mul_(r2).clamp_(-1.0, 1.0)
    if t.has_diagonal:
        c.diagonal().copy_(t.cov1 > 0)
    return c


def tile_shape(n_rows: int, n_cols: int, device: torch.device) -> tuple[int, int]:
    """``(panel rows, tile columns)``: a panel's columns are cut in tiles of that width.

    The width is at least the panel height so that, for ``k(x)``, the first tile
    of a panel holds its whole diagonal block.
    """
    entries = TILE_ENTRIES_CPU if device.type == "cpu" else TILE_ENTRIES_OTHER
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


def entrywise_kernel(spec: Layer, x1: Tensor, x2: Tensor | None, *, ntk: bool) -> Kernel:
    """NNGP (and NTK when ``ntk``) of an entrywise ``spec`` on dense inputs, tile by tile.

    Args:
        spec: a network whose ``is_entrywise()`` is true.
        x1: ``(N1, d)``; x2: ``(N2, d)`` or ``None`` for ``x1`` (then only the
            upper triangle is computed and mirrored).
    Returns:
        The same :class:`Kernel` as ``spec.transform_kernel(input_kernel(...))``
        up to rounding, with exactly symmetric ``(N, N)`` matrices when ``x2`` is None.
    """
    sym = x2 is None
    xb = x1 if x2 is None else x2
    n1, n2, d = int(x1.shape[0]), int(xb.shape[0]), int(x1.shape[1])
    q1 = self_gram(x1)
    q2 = q1 if sym else self_gram(xb)
    nngp = x1.new_empty((n1, n2))
    theta = x1.new_empty((n1, n2)) if ntk else None
    zero = x1.new_zeros(()) if ntk else None  # Θ⁰ = 0 as a broadcasting scalar
    cov1 = x1.new_empty((n1,))
    cov2 = None if sym else x1.new_empty((n2,))
    rows, width = tile_shape(n1, n2, x1.device)
    last: Kernel | None = None
    for p0 in range(0, n1, rows):
        p1 = min(p0 + rows, n1)
        c0 = p0 if sym else 0
        panel = nngp[p0:p1, c0:]
        torch.mm(x1[p0:p1], xb[c0:].T, out=panel)
        panel.div_(d)  # Σ⁰ = x·x'/d
        if sym:
            # matmul and row sums round differently: make c = 1 exact on the diagonal
            panel.diagonal().copy_(q1[p0:p1])
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
            )
            out = spec.transform_tile(tile)
            if isinstance(out, tuple):
                raise ValueError(
                    f"the network ends with {len(out)} parallel branches; close them with "
                    "FanInSum()"
                )
            if not _same_buffer(out.nngp, s):
                s.copy_(out.nngp)
            if sym:
                _mirror_tile(nngp, p0, p1, a0, a1)
            if theta is not None:
                th = theta[p0:p1, a0:a1]
                if out.ntk is None:  # pragma: no cover - every layer keeps the NTK
                    raise RuntimeError("a layer dropped the NTK of a tile")
                if not _same_buffer(out.ntk, th):
                    th.copy_(out.ntk)  # broadcasts a 0-dim Θ = 0
                if sym:
                    _mirror_tile(theta, p0, p1, a0, a1)
            if a0 == c0:
                cov1[p0:p1] = out.cov1
            if cov2 is not None and p0 == 0:
                cov2[a0:a1] = out.cov2
            last = out
    assert last is not None  # n1 >= 1 (as_float_tensor refuses empty batches)
    return Kernel(
        nngp=nngp,
        ntk=theta,
        cov1=cov1,
        cov2=cov2,
        spatial=(),
        full_spatial=False,
        channels=last.channels,
        is_gaussian=last.is_gaussian,
    )
