"""Lazy public names (PEP 562): a package lists where each name lives and imports it on first use.

``import widelimit`` then imports nothing heavy, not even torch: the layers (and torch), Dask,
Zarr, SciPy's integrators, matplotlib and the subpackages load when a name that needs them is
first touched, so the command line and ``--plan`` start quickly.  ``from widelimit import *``,
``dir()`` and attribute access behave as if every name had been imported eagerly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str,
    names: Mapping[str, str],
    namespace: dict[str, Any],
    *,
    also: str | None = None,
    extra_all: tuple[str, ...] = (),
    not_in_all: tuple[str, ...] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``names`` map to modules.

    ``names[name]`` is the module holding ``name`` (absolute, e.g. ``"widelimit.scale.compute"``);
    a name that *is* a submodule maps to itself (``"widelimit.scale"``).  The first access
    imports the module and caches the value in ``namespace`` (the package's ``globals()``), so
    later accesses are plain attribute lookups.

    ``also``: a module whose own ``__all__`` names are public here too (``widelimit.layers``:
    its names are listed once, in its submodules); it is imported when one of them, or the
    package's ``__all__`` (``also.__all__`` + ``extra_all`` + ``names`` but ``not_in_all``),
    is first asked for.
    """

    def public_all() -> list[str]:
        first = list(importlib.import_module(also).__all__) if also else []
        return [*first, *extra_all, *sorted(set(names) - set(first) - set(not_in_all))]

    def __getattr__(name: str) -> Any:
        if name == "__all__" and also is not None:
            namespace["__all__"] = value = public_all()
            return value
        module = names.get(name)
        if module is None:
            if also is None or name.startswith("_"):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            mod = importlib.import_module(also)
            if name not in mod.__all__:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            namespace[name] = value = getattr(mod, name)
            return value
        mod = importlib.import_module(module)
        value = mod if module == f"{package}.{name}" else getattr(mod, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        extra = set(importlib.import_module(also).__all__) if also else set()
        return sorted(set(namespace) | set(names) | extra)

    return __getattr__, __dir__
