"""Allocator hints of the kernel engine (``widelimit._memory``): harmless and reversible.

Their speed effect is measured in ``benchmarks/kernels.py``, not here; these tests check
that the hints never change results, shapes or devices, that the heap setting is scoped
and re-entrant, and that the opt-out works.
"""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from widelimit import _memory
from widelimit.layers import Conv1d, Dense, Erf, Flatten, ReLU, serial


def test_empty_output_is_a_plain_tensor_and_advised_when_large() -> None:
    small = _memory.empty_output(torch.zeros(1, dtype=torch.float64), (3, 4))
    assert small.shape == (3, 4) and small.dtype == torch.float64
    big = _memory.empty_output(torch.zeros(1), (2048, 2048))  # 16 MB
    big.fill_(1.5)
    assert float(big.sum()) == 1.5 * 2048 * 2048
    if sys.platform.startswith("linux") and _memory.thp_mode() in ("always", "madvise"):
        assert _memory.advise_huge_pages(torch.empty(2048, 2048))
    assert not _memory.advise_huge_pages(torch.empty(10))  # too small: not advised
    assert not _memory.advise_huge_pages(torch.empty(4096, 4096)[:, :10])  # not contiguous


def test_engine_heap_is_reentrant_and_restores_the_idle_threshold(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(_memory, "_mallopt", lambda: lambda p, v: calls.append((p, v)) or 1)
    with _memory.engine_heap():
        with _memory.engine_heap():  # nested (tie_duplicates computes self-kernels inside)
            pass
        assert calls == [(_memory._M_TRIM_THRESHOLD, _memory.TRIM_BUSY)]
    assert calls[-1] == (_memory._M_TRIM_THRESHOLD, _memory.TRIM_IDLE)
    with pytest.raises(RuntimeError), _memory.engine_heap():  # restored on errors too
        raise RuntimeError("boom")
    assert calls[-1] == (_memory._M_TRIM_THRESHOLD, _memory.TRIM_IDLE) and _memory._depth == 0


def test_engine_heap_from_threads_keeps_a_consistent_depth(monkeypatch) -> None:
    monkeypatch.setattr(_memory, "_mallopt", lambda: lambda p, v: 1)

    def work() -> None:
        for _ in range(200):
            with _memory.engine_heap():
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _memory._depth == 0


def test_opt_out_leaves_malloc_alone_and_results_equal(monkeypatch) -> None:
    x = torch.randn(40, 2, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = serial(Conv1d(3, 3, padding="same"), ReLU(), Flatten(), Dense(4), Erf(), Dense(1))
    tuned = net.kernel(x)
    monkeypatch.setenv("WIDELIMIT_MALLOC_TUNING", "0")
    _memory._mallopt.cache_clear()
    try:
        assert _memory._mallopt() is None
        plain = net.kernel(x)
    finally:
        monkeypatch.delenv("WIDELIMIT_MALLOC_TUNING")
        _memory._mallopt.cache_clear()
    assert torch.equal(tuned.nngp, plain.nngp) and torch.equal(tuned.ntk, plain.ntk)
