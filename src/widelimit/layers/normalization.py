"""Normalization and rescaling: ``LayerNorm``, ``Dropout``, ``Multiply``.

``LayerNorm(axis=...)``: finite ``y = (x − mean x) / √(var x + eps)``, the mean
and (biased) variance taken over the channel axis and, with ``axis``, over some
or all spatial axes as well (one mean and one variance per example and per
position of the axes *not* normalised over).  ``axis="channels"`` (default)
normalises over features / over channels at each position, ``axis="all"`` over
channels and every spatial axis (one normaliser per example), and a tuple of
axes of the batched NCHW / NCL layout picks a subset, e.g. ``(1, 2)`` = channels
and ``H``; it must contain the channel axis 1 (module docstring of
:class:`LayerNorm`).

On zero-mean Gaussian inputs (the output of ``Dense``/``Conv``, possibly pooled
or summed) the mean vanishes and the variance concentrates on ``q̄``, the mean
of the per-position variances ``q = Σ(x, x)`` over the normalised spatial axes
``A`` (``q̄ = q`` for ``axis="channels"``), at infinite width, so (Xiao et al.
2020 / Neural Tangents ``LayerNorm``)::

    q̄(x)[i] = (1/|A|) Σ_{p ∈ A-line through i} q(x)[p]
    Σ'(x, x')[i, j] = Σ(x, x')[i, j] / √((q̄(x)[i] + eps)(q̄(x')[j] + eps))
    Θ'(x, x')[i, j] = Θ(x, x')[i, j] / √((q̄(x)[i] + eps)(q̄(x')[j] + eps))

(the gradient through the normaliser projects out one direction of the
``n·|A|`` normalised entries, an ``O(1/n)`` change).  The normaliser needs only
the variances at single positions, present in both the diagonal and the full
spatial layout, so normalising over space mixes no positions in the kernel
(``mixes_positions`` stays ``False``) and no examples (``pairwise``).  Inputs
that are not zero-mean Gaussian (raw data, activations) have a non-vanishing
mean that the kernel does not track, so the rule refuses them.  Normalising over
spatial axes *without* the channel axis (instance normalisation) leaves a
normaliser estimated from finitely many positions, random at infinite width: the
limit is not a Gaussian process with a closed-form kernel, and the layer refuses
it (as Neural Tangents does).

Masked inputs (``mask=`` side input, :mod:`widelimit.layers.masking`): over
spatial axes, the finite mean and variance run over the unmasked positions
only, and so does the average ``q̄(x)[i] = Σ_p m[p] q(x)[p] / Σ_p m[p]`` over the
line through ``i``; a line without an unmasked position outputs 0 (``q̄ = ∞``).
``axis="channels"`` is per position and ignores the mask.

``Dropout(rate)``: the kernel is the identity — it describes the network at
evaluation time, when dropout is off.  The finite module is built in eval
mode (the identity, matching the kernel); call ``.train()`` on the network to
drop units with probability ``rate`` and rescale by ``1/(1 − rate)``.

``Multiply(alpha)``: multiply by a constant (e.g. to scale residual branches):
``Σ' = α² Σ``, ``Θ' = α² Θ``.  ``Scale`` is its deprecated old name (it clashed with the
subpackage :mod:`widelimit.scale`; docs/conventions.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from widelimit._validation import check_nonnegative, check_std
from widelimit.deprecation import warn_deprecated
from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape
from widelimit.layers.masking import MASK, prepare_mask
from widelimit.layers.spatial import expand_first, expand_second, spatial_diagonal

# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------


class LayerNormModule(nn.Module):
    """Normalise ``(N, C, *S)`` over ``dims`` (default ``(1,)``: features/channels at every
    position), no affine part: ``(x − mean) / √(var + eps)`` with the biased variance.

    With ``mask`` ``(N, *S)`` (:mod:`widelimit.layers.masking`) and spatial ``dims``, the mean
    and variance are taken over the unmasked positions only and applied to every position;
    a line of ``dims`` without an unmasked position outputs 0."""

    takes_side = True  # reads the mask (widelimit.layers.masking)

    def __init__(self, eps: float, dims: tuple[int, ...] = (1,)) -> None:
        super().__init__()
        self.eps = eps
        self.dims = tuple(dims)

    def forward(self, x: Tensor, mask: Tensor | None = None, **other_side: object) -> Tensor:
        if mask is None or self.dims == (1,) or x.ndim < 3:
            mean = x.mean(dim=self.dims, keepdim=True)
            var = x.var(dim=self.dims, keepdim=True, unbiased=False)
            return (x - mean) / torch.sqrt(var + self.eps)
        m = mask.to(x.dtype).unsqueeze(1).expand_as(x)
        count = m.sum(dim=self.dims, keepdim=True)
        some = count > 0
        mean = (x * m).sum(dim=self.dims, keepdim=True) / count.clamp_min(1.0)
        var = ((x - mean).square() * m).sum(dim=self.dims, keepdim=True) / count.clamp_min(1.0)
        y = (x - mean) / torch.sqrt(torch.where(some, var + self.eps, 1.0))
        return torch.where(some, y, 0.0)

    def extra_repr(self) -> str:
        return f"eps={self.eps}" + ("" if self.dims == (1,) else f", dims={self.dims}")


#: String spellings of ``LayerNorm(axis=...)``.
LAYERNORM_AXES = ("channels", "all")


def check_layernorm_axis(axis: object) -> str | tuple[int, ...]:
    """``axis`` of :class:`LayerNorm` as ``"channels"``, ``"all"`` or a tuple of ints.

    Raises ``TypeError``/``ValueError`` naming ``axis``; which integer axes exist is
    checked later, against the input (:meth:`LayerNorm.spatial_axes`).
    """
    if isinstance(axis, str):
        if axis == "spatial":
            raise ValueError(
                "`axis='spatial'` (normalising over positions without the channels, i.e. "
                "instance normalisation) has no closed-form infinite-width kernel: the "
                "normaliser is estimated from finitely many positions and stays random as the "
                "width grows; use axis='all' (channels and positions) or 'channels'"
            )
        if axis not in LAYERNORM_AXES:
            raise ValueError(
                f"`axis` must be one of {LAYERNORM_AXES} or a tuple of axes of the batched "
                f"NCHW / NCL layout containing the channel axis 1; got {axis!r}"
            )
        return axis
    items = (axis,) if isinstance(axis, int) else axis
    if not isinstance(items, tuple | list) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in items
    ):
        raise TypeError(
            f"`axis` must be 'channels', 'all', an int or a tuple of ints; got {axis!r}"
        )
    if not items:
        raise ValueError("`axis` must name at least the channel axis 1; got an empty tuple")
    if 0 in items:
        raise ValueError(
            "`axis` must not contain the batch axis 0: normalising over examples (batch "
            f"normalisation) mixes examples, which LayerNorm does not model; got {axis!r}"
        )
    return tuple(items)


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation without affine parameters (module docstring).

    Args:
        eps: added to the variance, in the finite module and in the kernel rule
            alike (keeps all-zero inputs finite).
        axis: what one mean and variance are taken over:

            * ``"channels"`` (default): the features of ``(N, d)`` inputs, the channels
              at every position of ``(N, C, L)`` / ``(N, C, H, W)`` inputs (Neural
              Tangents' default ``axis=-1`` in its NHWC layout);
            * ``"all"``: channels and every spatial axis, one normaliser per example
              (Neural Tangents' ``axis=(1, 2, 3)`` on NHWC images; ``torch.nn.LayerNorm
              ((C, H, W))``); the same as ``"channels"`` on ``(N, d)`` inputs;
            * a tuple of axes of the batched layout ``(N, C, H, W)`` / ``(N, C, L)``
              containing the channel axis ``1``, e.g. ``(1, 2)``: channels and ``H``,
              one normaliser per example and column ``w``.  Negative axes count from the
              end (``-1`` is ``W`` or ``L``).  The batch axis ``0`` is refused (it would
              mix examples), and so is leaving out the channel axis (no closed-form
              limit; Neural Tangents refuses it too).
    """

    pairwise: ClassVar[bool] = True
    side_inputs: ClassVar[tuple[str, ...]] = (MASK,)

    eps: float = 1e-12
    axis: str | int | tuple[int, ...] = "channels"

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_nonnegative("eps", self.eps))
        object.__setattr__(self, "axis", check_layernorm_axis(self.axis))

    def spatial_axes(self, n_spatial: int) -> tuple[int, ...]:
        """Spatial axes (``0..n_spatial−1``, i.e. ``H``, ``W`` or ``L``) normalised over.

        Raises ``ValueError`` when an integer ``axis`` does not fit inputs with
        ``n_spatial`` spatial axes or leaves out the channel axis.
        """
        if self.axis == "channels":
            return ()
        if self.axis == "all":
            return tuple(range(n_spatial))
        ndim = 2 + n_spatial  # batched layout (N, C, *S)
        layout = "(N, d)" if n_spatial == 0 else ("(N, C, L)" if n_spatial == 1 else "(N, C, H, W)")
        dims = set()
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"LayerNorm: `axis` {self.axis!r} names axis {a}, which {layout} inputs "
                    f"do not have (axes 1..{ndim - 1}; 0 is the batch)"
                )
            dims.add(a % ndim)
        if 0 in dims:
            raise ValueError(
                f"LayerNorm: `axis` {self.axis!r} names the batch axis of {layout} inputs; "
                "normalising over examples is not supported"
            )
        if 1 not in dims:
            raise ValueError(
                f"LayerNorm: `axis` {self.axis!r} must contain the channel axis 1 of {layout} "
                "inputs: without it the normaliser stays random at infinite width (no "
                "closed-form kernel)"
            )
        return tuple(sorted(d - 2 for d in dims if d >= 2))

    def prepare_side(self, name: str, value: object, x: Tensor, arg: str) -> Tensor:
        return prepare_mask(value, x, arg)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        s = single_shape(self, in_shape)
        self.spatial_axes(len(s) - 1)
        return s

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        s = single_shape(self, in_shape)
        axes = self.spatial_axes(len(s) - 1)
        return LayerNormModule(self.eps, (1, *(2 + a for a in axes)))

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        if not k.is_gaussian:
            raise ValueError(
                "LayerNorm must follow an affine layer (Dense/Conv, possibly pooled or summed "
                "in a residual block): its kernel rule assumes zero-mean Gaussian inputs, whose "
                "channel mean vanishes at infinite width; raw inputs or activations have a "
                "channel mean that the kernel does not track"
            )
        eps = self.eps
        axes = self.spatial_axes(len(k.spatial))

        def norm(t: Tensor | None, qa: Tensor, qb: Tensor) -> Tensor | None:
            # Σ / √((q̄ + eps)(q̄' + eps)), same for Θ
            return None if t is None else t / torch.sqrt((qa + eps) * (qb + eps))

        if axes:
            q1, q2, (a1, b1), pair2 = _averaged_variances(k, axes)
        else:  # per position: the variances themselves
            q1, q2 = k.variances()
            a1, b1 = k.self_variances(1)
            pair2 = k.self_variances(2) if k.cov2 is not None else None
        cov2 = None
        if k.cov2 is not None:
            cov2 = norm(k.cov2, *pair2)
        return k.replace(
            nngp=norm(k.nngp, q1, q2),
            ntk=norm(k.ntk, q1, q2),
            cov1=norm(k.cov1, a1, b1),
            cov2=cov2,
        )


def _averaged_variances(k: Kernel, axes: tuple[int, ...]):
    """Variances averaged over the spatial ``axes`` (``q̄``, module docstring), broadcastable
    to ``nngp`` (``q1``, ``q2``), to ``cov1`` (pair ``(a1, b1)``) and to ``cov2`` (pair, or
    ``None`` for a symmetric kernel): the shapes of ``Kernel.variances``/``self_variances``.

    With a mask (``k.side_pair("mask")``) the average runs over the unmasked positions only;
    a line without one gets ``q̄ = ∞`` (the finite module outputs 0 there)."""
    n = len(k.spatial)
    dims = tuple(1 + a for a in axes)
    masks = k.side_pair(MASK)

    def per_position(cov: Tensor) -> Tensor:  # (N, *spatial): the variance at each position
        return spatial_diagonal(cov, n) if k.full_spatial else cov

    def averaged(cov: Tensor, m: Tensor | None) -> Tensor:  # size 1 along the axes
        if m is None:
            return per_position(cov).mean(dim=dims, keepdim=True)
        count = m.sum(dim=dims, keepdim=True)
        total = (per_position(cov) * m).sum(dim=dims, keepdim=True)
        return torch.where(count > 0, total / count.clamp_min(1.0), math.inf)

    def pair(v: Tensor) -> tuple[Tensor, Tensor]:  # at the first / second position of a pair
        return (expand_first(v), expand_second(v)) if k.full_spatial else (v, v)

    m1, m2 = (None, None) if masks is None else masks
    v1 = averaged(k.cov1, m1)
    v2 = v1 if k.cov2 is None else averaged(k.cov2, m2)
    a1, b1 = pair(v1)
    pair2 = None if k.cov2 is None else pair(v2)
    return a1.unsqueeze(1), pair(v2)[1].unsqueeze(0), (a1, b1), pair2


# --------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dropout(Layer):
    """Dropout with drop probability ``rate`` in ``[0, 1)``; identity in the kernel.

    The kernel describes evaluation mode (module docstring).  The finite module
    (``torch.nn.Dropout``) is returned in eval mode; ``net.train()`` activates it.
    """

    pairwise: ClassVar[bool] = True

    rate: float = 0.5

    def __post_init__(self) -> None:
        r = check_nonnegative("rate", self.rate)
        if r >= 1:
            raise ValueError(f"`rate` must be in [0, 1); got {self.rate!r}")
        object.__setattr__(self, "rate", r)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return single_shape(self, in_shape)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return nn.Dropout(self.rate).eval()

    def transform_kernel(self, k: KernelLike) -> Kernel:
        return single_kernel(self, k)


# --------------------------------------------------------------------------
# Multiply
# --------------------------------------------------------------------------


class MultiplyModule(nn.Module):
    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return self.alpha * x

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


@dataclass(frozen=True)
class Multiply(Layer):
    """Multiply by a constant ``alpha``: ``Σ' = α² Σ``, ``Θ' = α² Θ``.

    Typical use: scaled residual branches, e.g.
    ``serial(FanOut(2), parallel(Identity(), serial(Conv2d(...), ReLU(), Conv2d(...),
    Multiply(0.5))), FanInSum())``; ``Multiply(0.5)`` in a net description.
    """

    pairwise: ClassVar[bool] = True

    alpha: float = 1.0

    def __post_init__(self) -> None:
        try:
            a = float(self.alpha)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`alpha` must be a real number; got {self.alpha!r}") from err
        if not math.isfinite(a):
            raise ValueError(f"`alpha` must be finite; got {self.alpha!r}")
        check_std("alpha", abs(a))  # the kernel is scaled by α²
        object.__setattr__(self, "alpha", a)

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return single_shape(self, in_shape)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return MultiplyModule(self.alpha)

    def transform_kernel(self, k: KernelLike) -> Kernel:
        k = single_kernel(self, k)
        a2 = self.alpha**2

        def s(t: Tensor | None) -> Tensor | None:
            return None if t is None else a2 * t

        return k.replace(nngp=s(k.nngp), ntk=s(k.ntk), cov1=s(k.cov1), cov2=s(k.cov2))


@dataclass(frozen=True)
class Scale(Multiply):
    """Deprecated name of :class:`Multiply` (kept for one release; warns on construction)."""

    def __post_init__(self) -> None:
        warn_deprecated("the layer `Scale`", "`Multiply` (same arguments)", stacklevel=4)
        super().__post_init__()


ScaleModule = MultiplyModule  # deprecated name of the finite module (not exported)

__all__ = ["Dropout", "LayerNorm", "LayerNormModule", "Multiply", "MultiplyModule", "Scale"]
