"""Normalization and rescaling: ``LayerNorm``, ``Dropout``, ``Multiply``.

``LayerNorm`` (over features, or over channels at each position): finite
``y = (x − mean_c x) / √(var_c x + eps)``.  On zero-mean Gaussian inputs (the
output of ``Dense``/``Conv``, possibly pooled or summed) the channel mean
vanishes and the channel variance concentrates on ``q = Σ(x, x)`` at
infinite width, so (Xiao et al. 2020 / Neural Tangents ``LayerNorm``)::

    Σ'(x, x')[i, j] = Σ(x, x')[i, j] / √((q(x)[i] + eps)(q(x')[j] + eps))
    Θ'(x, x')[i, j] = Θ(x, x')[i, j] / √((q(x)[i] + eps)(q(x')[j] + eps))

(the gradient through the normaliser projects out one direction of ``n``,
an ``O(1/n)`` change of the trace).  Inputs that are not zero-mean Gaussian
(raw data, activations) have a non-vanishing channel mean that the kernel does
not track, so the rule refuses them.

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

from widelimit._validation import check_nonnegative
from widelimit.deprecation import warn_deprecated
from widelimit.kernel import Kernel
from widelimit.layers.base import KernelLike, Layer, ShapeLike, single_kernel, single_shape

# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------


class LayerNormModule(nn.Module):
    """Normalise axis 1 (features/channels) of ``(N, C, *S)`` at every position (no affine)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over features/channels, without affine parameters.

    Args:
        eps: added to the variance, in the finite module and in the kernel rule
            alike (keeps all-zero inputs finite).
    """

    pairwise: ClassVar[bool] = True

    eps: float = 1e-12

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", check_nonnegative("eps", self.eps))

    def out_shape(self, in_shape: ShapeLike) -> ShapeLike:
        return single_shape(self, in_shape)

    def make_module(self, in_shape, *, generator=None, dtype=torch.float32, device=None):
        single_shape(self, in_shape)
        return LayerNormModule(self.eps)

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

        def norm(t: Tensor | None, qa: Tensor, qb: Tensor) -> Tensor | None:
            # Σ / √((q + eps)(q' + eps)), same for Θ
            return None if t is None else t / torch.sqrt((qa + eps) * (qb + eps))

        q1, q2 = k.variances()
        a1, b1 = k.self_variances(1)
        cov2 = None
        if k.cov2 is not None:
            a2, b2 = k.self_variances(2)
            cov2 = norm(k.cov2, a2, b2)
        return k.replace(
            nngp=norm(k.nngp, q1, q2),
            ntk=norm(k.ntk, q1, q2),
            cov1=norm(k.cov1, a1, b1),
            cov2=cov2,
        )


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
