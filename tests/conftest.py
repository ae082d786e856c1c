"""Shared test configuration: float64 helpers, one thread, fixed seeds."""

import pytest
import torch

# One intra-op thread: the suite is many small ops, and pytest runs one test at a time;
# extra threads only spin under contention (measured: eigh 300x300 4.5 s vs 0.07 s).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """``--plan``'s probe cache in a directory of the test run, never the user's."""
    monkeypatch.setenv("WIDELIMIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_configure(config: pytest.Config) -> None:
    """In CI (``CI=true``) also run the slow statistical tests (~27 min on 2 cores)."""
    import os

    if os.environ.get("CI") == "true" and config.option.markexpr == "not slow":
        config.option.markexpr = ""
