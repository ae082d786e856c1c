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
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose public ``names`` map to modules.

    ``names[name]`` is the module holding ``name`` (absolute, e.g. ``"widelimit.scale.compute"``);
    a name that *is* a submodule maps to itself (``"widelimit.scale"``).  The first access
    imports the module and caches the value in ``namespace`` (the package's ``globals()``), so
    later accesses are plain attribute lookups.
    """

    def __getattr__(name: str) -> Any:
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        mod = importlib.import_module(module)
        value = mod if module == f"{package}.{name}" else getattr(mod, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
