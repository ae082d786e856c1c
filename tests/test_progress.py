"""The one progress-bar factory: bars on stderr, nothing on stdout, on by default everywhere."""

import importlib
import inspect
import pkgutil

import torch

import widelimit
from widelimit import Dense, monte_carlo_kernel, serial
from widelimit.progress import progress_bar


def test_bar_writes_to_stderr_only(capsys):
    with progress_bar(True, transient=False) as bar:
        task = bar.add_task("counting sheep", total=3)
        for _ in range(3):
            bar.advance(task)
    out, err = capsys.readouterr()
    assert out == ""
    assert "counting sheep" in err and "3/3" in err


def test_disabled_bar_prints_nothing(capsys):
    with progress_bar(False, transient=False) as bar:
        bar.advance(bar.add_task("silent", total=1))
    assert capsys.readouterr() == ("", "")


def test_monte_carlo_kernel_shows_a_bar_by_default(capsys):
    x = torch.randn(3, 2, dtype=torch.float64)
    monte_carlo_kernel(serial(Dense(4)), x, width=None, n_samples=2, get="nngp")
    out, _ = capsys.readouterr()
    assert out == ""  # the bar (transient) never touches stdout


def _public_functions_with_progress():
    for info in pkgutil.walk_packages(widelimit.__path__, "widelimit."):
        if "._" in info.name:  # private modules, the CLI
            continue
        mod = importlib.import_module(info.name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj) and "progress" in inspect.signature(obj).parameters:
                yield f"{info.name}.{name}", obj


def test_long_work_shows_progress_by_default():
    found = dict(_public_functions_with_progress())
    assert "widelimit.monte_carlo.monte_carlo_kernel" in found
    assert len(found) >= 8, sorted(found)
    off = [
        n
        for n, f in found.items()
        if inspect.signature(f).parameters["progress"].default is not True
    ]
    assert off == []
