"""Deprecated spellings kept working for one release (docs/conventions.md).

Every renamed keyword argument, attribute or function goes through the helpers here, so
a deprecation looks and behaves the same everywhere:

* :func:`renamed_kwargs` — a decorator mapping old keyword names to new ones (optionally
  converting the value, e.g. a variance ``sigma_w2`` to a standard deviation ``w_std``);
* :func:`deprecated_function` — a function kept under its old name (and old semantics);
* :func:`deprecated_attribute` — a read-only alias of a renamed attribute (e.g. a
  dataclass field), optionally converted;
* :func:`warn_deprecated` — the one warning they all emit (a :class:`DeprecationWarning`
  naming the old spelling and its replacement).

The decorated function's signature (:func:`inspect.signature`) shows only the new names;
the old ones are listed in its ``__deprecated_kwargs__`` mapping.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "deprecated_attribute",
    "deprecated_function",
    "renamed_kwargs",
    "sqrt_variance",
    "square_std",
    "warn_deprecated",
]

F = TypeVar("F", bound=Callable[..., Any])

Rename = str | tuple[str, Callable[[Any], Any]]


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Emit the project's :class:`DeprecationWarning`: ``old`` is deprecated, use ``new``."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _split(rename: Rename) -> tuple[str, Callable[[Any], Any] | None]:
    if isinstance(rename, str):
        return rename, None
    new, convert = rename
    return new, convert


def renamed_kwargs(**renames: Rename) -> Callable[[F], F]:
    """Decorator: accept ``old=value`` keyword arguments as ``new=value`` with a warning.

    Each keyword is ``old="new"`` or ``old=("new", convert)`` (``convert`` maps the old
    value to the new convention, e.g. :func:`sqrt_variance`). Passing both the old and
    the new name is a :class:`TypeError`.

    Example::

        @renamed_kwargs(act="activation", sigma_w="w_std", sigma_w2=("w_std", sqrt_variance))
        def chi1(activation, w_std, b_std): ...
    """
    table = {old: _split(r) for old, r in renames.items()}

    def decorate(fn: F) -> F:
        qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old in [k for k in kwargs if k in table]:
                new, convert = table[old]
                if new in kwargs:
                    raise TypeError(
                        f"{qualname}() got both `{old}` (deprecated) and `{new}`; pass only `{new}`"
                    )
                value = kwargs.pop(old)
                warn_deprecated(f"`{old}=` of {qualname}()", f"`{new}=`")
                kwargs[new] = value if convert is None else convert(value)
            return fn(*args, **kwargs)

        merged = dict(getattr(fn, "__deprecated_kwargs__", {}))
        merged.update({old: new for old, (new, _) in table.items()})
        wrapper.__deprecated_kwargs__ = merged  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_function(replacement: str) -> Callable[[F], F]:
    """Decorator: calling the function warns that it is deprecated in favour of ``replacement``.

    The wrapper carries ``__deprecated__ = replacement`` (so tools and tests can tell a
    deprecated alias from a current function).
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warn_deprecated(f"{fn.__name__}()", replacement)
            return fn(*args, **kwargs)

        wrapper.__deprecated__ = replacement  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def deprecated_attribute(new: str, convert: Callable[[Any], Any] | None = None) -> property:
    """A read-only property returning ``self.<new>`` (converted) with a warning.

    Use in a class body: ``sigma_w = deprecated_attribute("w_std")``.
    """

    def getter(self: Any) -> Any:
        old = getattr(getter, "_old_name", "attribute")
        warn_deprecated(f"`{type(self).__name__}.{old}`", f"`.{new}`")
        value = getattr(self, new)
        return value if convert is None else convert(value)

    class _Alias(property):
        def __set_name__(self, owner: type, name: str) -> None:
            getter._old_name = name  # type: ignore[attr-defined]

    return _Alias(getter, doc=f"Deprecated alias of ``{new}``.")


def sqrt_variance(value: Any) -> Any:
    """Variance(s) → standard deviation(s): ``√v`` for a number, a sequence or an array.

    A negative or non-numeric value raises ``ValueError``/``TypeError`` (not a NaN).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value >= 0:
            raise ValueError(f"a variance must be >= 0; got {value!r}")
        return math.sqrt(value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"expected variances (numbers); got {value!r}") from err
    if not (arr >= 0).all():
        raise ValueError(f"variances must be >= 0; got {value!r}")
    return np.sqrt(arr)


def square_std(value: Any) -> Any:
    """Standard deviation(s) → variance(s): ``s²`` (numbers or arrays)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) ** 2
    return np.asarray(value, dtype=np.float64) ** 2
