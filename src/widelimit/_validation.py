"""Input checks shared by every module: clear errors naming the argument.

User mistakes raise ``ValueError``/``TypeError`` with what was expected and how
to fix it (docs/conventions.md, 'Errors'); nothing here uses ``assert``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# Scalar checks need no torch (the planner and the command line import them without it).
from widelimit._checks import check_nonnegative, check_positive, check_positive_int, check_std

__all__ = [
    "HALF_DTYPES",
    "all_finite",
    "as_float_tensor",
    "check_dense_input",
    "check_finite",
    "check_kernel_finite",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_same_dtype_device",
    "check_std",
]


def as_float_tensor(
    name: str,
    x: object,
    *,
    min_ndim: int = 1,
    max_ndim: int | None = None,
    allow_empty: bool = False,
) -> Tensor:
    """Convert ``x`` (tensor, ndarray or nested sequence) to a floating tensor.

    Integer and boolean inputs are converted to float64 (as scikit-learn does);
    float32/float64 tensors keep their dtype and device.  Numpy arrays may be
    big-endian or have negative strides (converted, same values); ``np.longdouble``
    is converted to float64 with a ``UserWarning``.  Raises ``TypeError`` for
    non-numeric, complex or half-precision (float16/bfloat16) data and
    ``ValueError`` for wrong rank, empty batches or NaN/inf entries.
    """
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, np.ndarray | Sequence | float | int):
        try:
            t = torch.as_tensor(_torch_compatible(name, np.asarray(x)))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`{name}` must be numeric array-like; got {type(x).__name__}"
                + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
            ) from err
    else:
        raise TypeError(f"`{name}` must be a torch.Tensor or numpy array; got {type(x).__name__}")
    if t.is_complex():
        raise TypeError(f"`{name}` must be real-valued; got dtype {t.dtype}")
    if t.dtype in HALF_DTYPES:
        raise TypeError(
            f"`{name}` has dtype {t.dtype}; half precision is not supported (kernel entries "
            f"would carry relative errors near 1e-3): convert with {name}.float() or "
            f"{name}.double()"
        )
    if not t.is_floating_point():
        t = t.to(torch.float64)  # integers and booleans: float64, as scikit-learn does
    if t.ndim < min_ndim or (max_ndim is not None and t.ndim > max_ndim):
        expected = f"{min_ndim}" if max_ndim == min_ndim else f">= {min_ndim}"
        if max_ndim is not None and max_ndim != min_ndim:
            expected = f"between {min_ndim} and {max_ndim}"
        raise ValueError(f"`{name}` must have {expected} dimensions; got shape {tuple(t.shape)}")
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(t.shape)}); pass at least one example")
    if t.device.type == "meta":
        raise ValueError(
            f"`{name}` is on the meta device, which holds shapes but no values; create it on "
            f"the CPU or a GPU (e.g. torch.randn(..., device='cpu')) to compute with it"
        )
    check_finite(name, t)
    return t


def _torch_compatible(name: str, a: np.ndarray) -> np.ndarray:
    """A numeric ndarray torch can take: native byte order, no negative strides, ≤ float64.

    Big-endian arrays are byte-swapped and arrays with negative strides (``x[::-1]``)
    copied (same values).  ``np.longdouble`` (80/128-bit extended precision) becomes
    float64 with a warning: widelimit computes in float64 at most, so the kernel is
    the same as from ``x.astype(np.float64)``.
    """
    if a.dtype.kind not in "biufc":
        return a  # torch refuses it; the caller's TypeError names the dtype
    if a.dtype.kind in "fc" and a.dtype.itemsize > (8 if a.dtype.kind == "f" else 16):
        warnings.warn(
            f"`{name}` has dtype {a.dtype} (extended precision); widelimit computes in "
            "float64 at most: converted to float64",
            UserWarning,
            stacklevel=4,
        )
        a = a.astype(np.float64 if a.dtype.kind == "f" else np.complex128)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a)
    return a


HALF_DTYPES = (torch.float16, torch.bfloat16)
"""Refused by :func:`as_float_tensor` (documented in docs/errors.md)."""

_SPATIAL_MODULES = (
    "widelimit.layers.attention",
    "widelimit.layers.conv",
    "widelimit.layers.local",
    "widelimit.layers.pooling",
)


def _leaves(net: object) -> list[object]:
    children = net.children() if hasattr(net, "children") else ()
    if not children:
        return [net]
    return [leaf for c in children for leaf in _leaves(c)]


def check_dense_input(net: object, input_shape: Sequence[int]) -> None:
    """Refuse a net of only dense layers on inputs with spatial axes.

    ``Dense`` acts on axis 1 at every position of a ``(N, C, *spatial)`` input
    (like a 1×1 convolution), so a pure MLP applied to images would return a
    ``(N1, N2, *spatial)`` kernel instead of ``(N1, N2)``.  Nets that contain a
    convolution, pooling or ``Flatten`` layer are left alone (per-position dense
    layers after convolutions are intended).
    """
    if len(input_shape) <= 1:
        return
    leaves = _leaves(net)
    if any(type(leaf).__module__ in _SPATIAL_MODULES for leaf in leaves):
        return
    if any(type(leaf).__name__ == "Dense" for leaf in leaves):
        raise ValueError(
            f"the inputs have per-example shape {tuple(input_shape)} but the net has no "
            "Flatten, pooling or convolution layer: Dense would act per position and the "
            "kernel would not be (N1, N2). Start the net with Flatten() (e.g. "
            "'Flatten -> Dense(512) -> ReLU -> Dense(1)'), or reshape the inputs to (N, d)"
        )


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite (``True`` when empty).

    A finite sum decides the common case in one read pass, without a mask of ``t``'s size;
    the per-entry test runs only when the sum is not finite (a NaN/inf, or finite entries
    whose sum overflows).
    """
    if not t.numel():
        return True
    if t.device.type == "cpu" and not t.is_neg():
        # numpy's single-threaded sum: torch's parallel sum of a (2000, 784) float32 batch
        # costs ~8 ms CPU on 2 busy cores (OpenMP threads waiting), numpy's ~0.6 ms.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(t.detach().numpy().sum()):
                return True
    elif bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_kernel_finite(nngp: Tensor, ntk: Tensor | None) -> None:
    """Raise ``ValueError`` if a computed kernel overflowed (inf) or is undefined (NaN)."""
    for name, k in (("NNGP", nngp), ("NTK", ntk)):
        if k is not None and not all_finite(k):
            n_bad = int((~torch.isfinite(k)).sum())
            raise ValueError(
                f"the {name} overflowed or is undefined in {n_bad} of {k.numel()} entries "
                f"(dtype {k.dtype}); the inputs are too large for this net (e.g. Exp or a "
                "high-degree Monomial on inputs of norm ≫ 1): rescale the inputs (--scale "
                "standardize on the command line) or use float64"
            )


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` if ``t`` contains NaN or ±inf, saying where."""
    if not all_finite(t):
        bad = (~torch.isfinite(t)).nonzero()
        n_bad = bad.shape[0]
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"`{name}` contains {n_bad} non-finite value(s) (NaN or inf), first at index {first}; "
            "clean or impute the data before computing kernels"
        )


def check_same_dtype_device(name1: str, t1: Tensor, name2: str, t2: Tensor) -> None:
    """Raise ``TypeError`` if two inputs disagree in dtype or device."""
    if t1.dtype != t2.dtype:
        raise TypeError(
            f"`{name1}` has dtype {t1.dtype} but `{name2}` has dtype {t2.dtype}; "
            "convert both to the same floating dtype (float64 recommended)"
        )
    if t1.device != t2.device:
        raise TypeError(
            f"`{name1}` is on {t1.device} but `{name2}` is on {t2.device}; move both to one device"
        )


def broadcast_shapes(*shapes: tuple[int, ...] | torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` without its first-call cost: torch's version imports
    ``torch.fx``'s symbolic shapes (and sympy), ~1 s once per process. Raises ``ValueError``
    when the shapes do not broadcast."""
    return torch.Size(np.broadcast_shapes(*(tuple(s) for s in shapes)))
