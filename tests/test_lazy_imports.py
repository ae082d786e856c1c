"""``import widelimit`` and the command line load only what they need, torch included (issue
#22: ``--plan`` in under a second); the public names are still all there (PEP 562
``__getattr__``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import widelimit
import widelimit.scale

#: Modules that cost tenths of a second each to import and that no plain kernel or plan needs.
HEAVY = ("dask", "zarr", "matplotlib", "scipy.integrate", "scipy.stats", "sklearn", "hypothesis",
         "widelimit.atlas")  # fmt: skip

_PROBE = """
import json, sys
HEAVY = {heavy!r}
seen = {{}}
def loaded(stage, heavy=HEAVY):
    seen[stage] = sorted(m for m in heavy if m in sys.modules)
import widelimit
loaded("import widelimit", HEAVY + ("torch",))
import widelimit.cli
loaded("import widelimit.cli", HEAVY + ("torch",))
import numpy as np
from widelimit.scale import plan_kernel
plan_kernel(widelimit.Dense(8), np.zeros((50, 3), np.float32), tile=16, probe=False)
loaded("plan_kernel")
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def loaded_modules() -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", ["import widelimit", "import widelimit.cli", "plan_kernel"])
def test_heavy_modules_not_imported(loaded_modules, stage):
    assert loaded_modules[stage] == [], f"{stage} imported {loaded_modules[stage]}"


@pytest.mark.parametrize("package", [widelimit, widelimit.scale], ids=lambda p: p.__name__)
def test_every_public_name_resolves_to_its_module(package):
    import importlib

    for name in package.__all__:
        value = getattr(package, name)
        where = package._LAZY.get(name)
        if where is None:  # eager: the layers and __version__
            continue
        mod = importlib.import_module(where)
        expected = mod if where == f"{package.__name__}.{name}" else getattr(mod, name)
        assert value is expected, name
    assert set(package.__all__) <= set(dir(package))


def test_every_layer_name_is_public_and_resolves_to_the_layer():
    """The layers' names are listed once (``widelimit.layers.__all__``); the package resolves
    them lazily, and its ``__all__`` (computed on first access) holds them in that order,
    without the ``layers`` submodule itself."""
    import widelimit.layers

    n = len(widelimit.layers.__all__)
    assert widelimit.__all__[:n] == list(widelimit.layers.__all__)
    assert "layers" not in widelimit.__all__ and "__version__" in widelimit.__all__
    for name in widelimit.layers.__all__:
        assert getattr(widelimit, name) is getattr(widelimit.layers, name), name
    assert {"Dense", "ReLU", "compute_kernel", "linearize"} <= set(dir(widelimit))


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        widelimit.no_such_name  # noqa: B018
    assert not hasattr(widelimit.scale, "no_such_name")


def test_star_import_gives_every_public_name():
    namespace: dict = {}
    exec("from widelimit import *", namespace)
    assert set(widelimit.__all__) <= set(namespace)


def test_public_functions_stay_functions_after_every_submodule_is_imported():
    """A public name equal to its submodule's name (``widelimit.linearize``) is rebound to the
    module when the submodule is imported first; lazily exported, it then stayed a module
    and ``linearize(net)`` raised "'module' object is not callable" (the atlas ntk page)."""
    code = (
        "import importlib, pkgutil, types, widelimit\n"
        "for m in pkgutil.walk_packages(widelimit.__path__, 'widelimit.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "subpackages = {'finite_width', 'meanfield', 'propagation', 'scale', 'sde'}\n"
        "bad = [n for n in widelimit.__all__\n"
        "       if isinstance(getattr(widelimit, n), types.ModuleType) and n not in subpackages]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
