"""The task examples (``examples/*.py`` other than the atlas notebooks) run as plain scripts,
``python examples/x.py OUT_DIR``, as a user would copy them: exit 0, the sentence a user can
check on stdout with its number in a sane range, and the figures saved in OUT_DIR. One atlas
notebook runs as a plain script too and prints text, not ``<IPython.core.display...>``
placeholders (the notebooks themselves are executed by tests/test_atlas_notebooks.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
TASKS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("atlas_"))


def _run(script: str, *args: str, extra_env: dict[str, str] | None = None) -> str:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("WIDELIMIT_ATLAS_FULL", None)
    env.update(extra_env or {})
    src = str(Path(__file__).parents[1] / "src")  # this checkout's widelimit, as pytest sees it
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "IPython.core.display" not in proc.stdout
    return proc.stdout


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in:\n{text}"
    return float(m.group(1))


def test_every_task_script_is_tested():
    assert TASKS == sorted(CHECKS)
    for name in TASKS:  # each states what it shows and how to run it
        src = (EXAMPLES / name).read_text()
        assert src.startswith('"""') and f"python examples/{name}" in src


def _gp(out: str) -> None:
    assert _number(r"test RMSE ([\d.]+) on \[-2, 2\]", out) < 0.2  # noise std 0.1
    assert 80 <= _number(r"±2σ covers (\d+)% of noisy test points", out) <= 100


def _grid(out: str) -> None:
    assert _number(r"held-out test R² ([-\d.]+) for the tuned NNGP", out) > 0.2


def _cnn(out: str) -> None:
    assert _number(r"the CNN's NTK classifies (\d+)% of the test digits", out) >= 90


def _from_module(out: str) -> None:
    # 55 correlated entries of Monte Carlo means: the worst within 5 standard errors
    assert _number(r"agree with the analytic kernel: worst of 55 entries ([\d.]+)", out) < 5
    assert _number(r"empirical NTKs agree with the analytic kernel: worst ([\d.]+)", out) < 5


def _dask(out: str) -> None:
    assert _number(r"equals the exact in-memory solve to ([\d.e+-]+)", out) < 1e-6
    assert _number(r"test RMSE ([\d.]+) in units of the target's std", out) < 0.5
    assert re.search(r"train\.zarr \(10 tiles computed, 0 resumed\)", out)


CHECKS = {
    "kernel_gp_regression.py": (_gp, ["gp_regression.png"]),
    "sklearn_gridsearch.py": (_grid, ["gridsearch.png"]),
    "cnn_digits.py": (_cnn, ["cnn_digits.png"]),
    "from_module_monte_carlo.py": (_from_module, ["from_module.png"]),
    "dask_store.py": (_dask, ["dask_store.png", "train.zarr", "test.zarr"]),
}
SLOW = {"dask_store.py"}  # ~20 s, mostly starting two worker processes that import torch


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CHECKS)],
)
def test_task_script(name, tmp_path):
    check, files = CHECKS[name]
    out = _run(name, str(EXAMPLES / name), str(tmp_path))
    check(out)
    for f in files:
        assert (tmp_path / f).exists(), f"{name} did not write {f}"
        assert f"{tmp_path / files[0]}" in out  # it says where


def test_atlas_notebook_as_plain_script_without_ipython(tmp_path):
    """``python examples/atlas_1_distributions.py`` prints the page as text and saves its
    figures (saying where), even where IPython is not installed (it is no dependency)."""
    script = EXAMPLES / "atlas_1_distributions.py"
    hide = (
        "import runpy, sys; sys.modules['IPython'] = None; "  # import IPython -> ImportError
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    out = _run(script.name, "-c", hide, extra_env={"WIDELIMIT_EXAMPLES_DIR": str(tmp_path)})
    assert "agrees" in out and "DISAGREES" not in out
    saved = re.findall(r"figure saved to (\S+\.png)", out)
    assert saved and all(Path(p).exists() for p in saved)
    assert all(Path(p).parent == tmp_path / "distributions" for p in saved)
    assert "What would have falsified the theory" in out
