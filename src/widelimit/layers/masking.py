"""Masked inputs: variable-length signals and images as a ``mask`` side input.

A batch of signals of different lengths (or images of different sizes) is
padded to one shape ``(N, C, *S)`` and comes with ``mask: (N, *S)``, ``True``
(or 1) at the positions that exist and ``False`` (0) at the padding; it is a
side input like :class:`~widelimit.layers.graph.Aggregate`'s pattern::

    net.kernel(x1, mask=m1)                   net.kernel(x1, x2, mask=(m1, m2))
    net.module(width, input_shape=...)(x, mask=m)

Semantics (Neural Tangents' ``mask_constant`` in effect, with the mask given
explicitly): a masked position is absent.  Every layer that reads several
positions ignores the masked ones:

* ``Conv1d/2d`` and ``AvgPool1d/2d`` read masked inputs as zeros (as padding);
  the mask of their output is the mask at each window's centre position
  (strided and ``"valid"`` layers shrink it as they shrink the signal);
* ``GlobalAvgPool`` averages over the unmasked positions only, so its output is
  exactly that of the truncated signal (an example with no unmasked position
  gets 0);
* ``Flatten`` zeroes the masked positions (the next ``Dense`` keeps its fan-in
  ``C·|S|``);
* ``GlobalSelfAttention`` reads masked inputs (and positional embeddings) as zeros and
  excludes masked positions as keys: ``−∞`` logits, so the softmax runs over the
  unmasked keys (Neural Tangents' rule); the mask passes through unchanged;
* ``LayerNorm`` over spatial axes takes its mean and variance over the unmasked
  positions only (a line without one outputs 0);
* pointwise layers (activations, ``LayerNorm`` over channels, ``Dropout``,
  ``Multiply``) need no mask: what they compute at a masked position is never
  read by a later layer.

So the outputs of a network that ends with spatial axes are meaningful at the
unmasked positions only (the kernel and the finite network agree everywhere).
In the kernel, reading masked inputs as zeros is ``Σ[i, j] ← m[i] Σ[i, j] m'[j]``
(a linear map applied to the input, so the NTK is masked alike).  After a
``GlobalAvgPool`` or ``Flatten`` the mask is spent and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from widelimit.kernel import Kernel
from widelimit.layers.inputs import is_zero_constant
from widelimit.layers.spatial import expand_first, expand_second

__all__ = [
    "MASK",
    "centre_mask",
    "drop_mask",
    "mask_kernel",
    "masked_global_mean",
    "prepare_mask",
    "with_mask",
]

#: Keyword of the mask side input.
MASK = "mask"


def prepare_mask(value: object, x: Tensor, arg: str) -> Tensor:
    """Check a user's mask for inputs ``x: (N, C, *S)``; return it ``(N, *S)`` in ``x``'s dtype.

    Accepts booleans or 0/1 numbers; raises ``ValueError``/``TypeError`` naming ``arg``.
    """
    if isinstance(value, tuple | list):
        raise TypeError(f"`{arg}` must be a tensor of shape (N, *spatial); got a tuple/list")
    try:
        m = torch.as_tensor(value, device=x.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"`{arg}` must be a tensor; got {type(value).__name__}") from err
    if m.is_complex():
        raise TypeError(
            f"`{arg}` must be boolean or real 0/1; got complex dtype {m.dtype} (its imaginary "
            f"part would be dropped). Pass a boolean mask, e.g. `{arg}.real != 0`"
        )
    if x.ndim < 3:
        raise ValueError(
            f"`{arg}` masks positions, but the inputs are dense features {tuple(x.shape)}; "
            "masks need signals (N, C, L) or images (N, C, H, W)"
        )
    want = (x.shape[0], *x.shape[2:])
    if tuple(m.shape) != want:
        raise ValueError(
            f"`{arg}` must have shape (N, *spatial) = {want} (True at the positions that "
            f"exist); got {tuple(m.shape)}"
        )
    if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"`{arg}` must be boolean or 0/1 (1 = the position exists)")
    return m.to(x.dtype)


def _pair_mask(m1: Tensor, m2: Tensor, n_spatial: int, full: bool) -> Tensor:
    """``m1[i] m2[j]`` broadcastable to an ``(N1, N2, ...)`` kernel tensor."""
    if full:
        return expand_first(m1).unsqueeze(1) * expand_second(m2).unsqueeze(0)
    return m1.unsqueeze(1) * m2.unsqueeze(0)


def _self_mask(m: Tensor, full: bool) -> Tensor:
    return expand_first(m) * expand_second(m) if full else m


def mask_kernel(k: Kernel) -> Kernel:
    """``k`` with the masked positions read as zeros (``Σ[i, j] ← m[i] Σ[i, j] m'[j]``).

    The identity when ``k`` carries no mask or has no spatial axes.
    """
    pair = k.side_pair(MASK)
    if pair is None or not k.spatial:
        return k
    m1, m2 = pair
    n_sp, full = len(k.spatial), k.full_spatial
    both = _pair_mask(m1, m2, n_sp, full)

    def own(t: Tensor | None, m: Tensor) -> Tensor | None:
        return None if t is None else t * _self_mask(m, full)

    return k.replace(
        nngp=k.nngp * both,
        ntk=k.ntk if k.ntk is None or is_zero_constant(k.ntk) else k.ntk * both,
        cov1=own(k.cov1, m1),
        cov2=None if k.cov2 is None else own(k.cov2, m2),
    )


def centre_mask(
    m: Tensor,
    befores: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    outs: Sequence[int],
) -> Tensor:
    """Mask ``(N, *S_out)`` of a sliding-window layer's output: the input mask ``(N, *S)`` at
    each window's centre (Neural Tangents' rule), ``m[s·i − before + (k − 1)//2]`` per axis."""
    for axis, (before, k, s, out) in enumerate(zip(befores, kernel, strides, outs, strict=True)):
        start = (k - 1) // 2 - before  # in [0, size) for every padding (conv.axis_window)
        pos = torch.arange(out, device=m.device) * s + start
        m = m.index_select(1 + axis, pos)
    return m


def with_mask(k: Kernel, m1: Tensor | None, m2: Tensor | None) -> Kernel:
    """``k`` with its mask side input replaced (``None``: removed)."""
    side1 = {n: t for n, t in k.side1.items() if n != MASK}
    side2 = None if k.side2 is None else {n: t for n, t in k.side2.items() if n != MASK}
    if m1 is not None:
        side1[MASK] = m1
        if side2 is not None and m2 is not None:
            side2[MASK] = m2
    return k.replace(side1=side1, side2=side2)


def drop_mask(side: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``side`` without the mask (after a layer that removes the spatial axes)."""
    return {n: t for n, t in side.items() if n != MASK}


def masked_global_mean(k: Kernel) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """``GlobalAvgPool`` over the unmasked positions of a full-layout kernel ``k``.

    ``Σ'(x, x') = Σ_{i,j} m[i] m'[j] Σ[i, j] / (|m| |m'|)`` (0 for an example whose
    mask is empty); returns ``nngp, ntk, cov1, cov2``.
    """
    pair = k.side_pair(MASK)
    assert pair is not None and k.full_spatial  # the caller checks
    m1, m2 = pair
    n_sp = len(k.spatial)
    sp = tuple(range(1, m1.ndim))
    r1 = _safe_inverse(m1.sum(dim=sp))
    r2 = _safe_inverse(m2.sum(dim=sp))
    both = _pair_mask(m1, m2, n_sp, True)

    def mean2(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        total = (t * both).sum(dim=tuple(range(2, t.ndim)))
        return total * r1[:, None] * r2[None, :]

    def mean1(t: Tensor | None, m: Tensor, r: Tensor) -> Tensor | None:
        if t is None:
            return None
        return (t * _self_mask(m, True)).sum(dim=tuple(range(1, t.ndim))) * r * r

    ntk = k.ntk
    if ntk is not None and is_zero_constant(ntk):
        ntk = ntk.new_zeros(()).expand(k.n1, k.n2)
    else:
        ntk = mean2(ntk)
    return mean2(k.nngp), ntk, mean1(k.cov1, m1, r1), mean1(k.cov2, m2, r2)


def _safe_inverse(count: Tensor) -> Tensor:
    """``1 / count`` with 0 for an empty mask (the mean over no position is 0)."""
    return torch.where(count > 0, 1.0 / count.clamp_min(1.0), 0.0)
