"""Memory behaviour of the kernel engine: huge pages for N×N outputs, a warm heap for tiles.

Both are allocator hints for CPU tensors on Linux; elsewhere (other systems, other C
libraries, CUDA tensors) they change nothing.

**Huge pages for outputs.**  A fresh ``N × N`` kernel output is first touched page by page
while the engine writes it: 4 KiB pages cost one page fault each (8,192 faults for a 32 MB
float64 kernel at N = 2000, 32,768 for N = 4000 in float32), and on 2 cores those faults
took 10–25% of a fully connected kernel's time.  ``madvise(MADV_HUGEPAGE)`` on the not yet
touched buffer lets the kernel back it with 2 MiB pages instead (512× fewer faults), when
the system's transparent-huge-page mode is ``madvise`` or ``always`` (with ``never``
nothing changes).  PyTorch's own switch, the ``THP_MEM_ALLOC_ENABLE`` environment variable,
is read once when the process starts and applies to every allocation; here only the
engine's outputs are advised.

**A warm heap for tiles.**  The engine allocates and frees tile-sized temporaries (up to
8 MB for spatial tiles) many times per kernel.  glibc's ``malloc`` returns the top of its
heap to the system whenever more than its trim threshold (at most 64 MB) is free there, so
the next tile's temporaries are fresh pages again: 53,000 page faults per
``conv+Flatten`` float64 kernel at N = 256, 30% of its CPU time in the system.  While the
engine runs (:func:`engine_heap`) the trim threshold is 1 GiB, so freed tiles are reused;
afterwards it is 256 MB: up to that much freed memory stays with the process between
kernel calls (the next call reuses it instead of faulting it in again: 20,000 faults per
call with 64 MB), more is released at the next ``free``.  The mmap threshold is fixed at
32 MB, glibc's own dynamic maximum (larger buffers, such as big outputs, are mapped and
unmapped as before).  Measured on the benchmark's conv+Flatten float64 kernel: 53,000 →
0 page faults and 30–40% less wall time.  ``WIDELIMIT_MALLOC_TUNING=0`` in the
environment turns this off (e.g. with jemalloc/tcmalloc preloaded it does nothing anyway).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from torch import Tensor

__all__ = ["advise_huge_pages", "empty_output", "engine_heap", "thp_mode"]

#: Transparent huge page size on x86-64 and arm64 (4 KiB base pages).
HUGE_PAGE = 2 << 20
#: Buffers smaller than this are not advised (a few huge pages at most: nothing to gain).
MIN_BYTES = 4 * HUGE_PAGE
_MADV_HUGEPAGE = 14  # <linux/mman.h>


@cache
def _libc() -> ctypes.CDLL | None:
    """The process's C library on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no dynamic loader
        return None


@cache
def _madvise():
    """libc's ``madvise`` on Linux, else ``None``."""
    libc = _libc()
    fn = getattr(libc, "madvise", None) if libc is not None else None
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


#: glibc ``mallopt`` parameters (<malloc.h>) and the values used (module docstring).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's dynamic maximum (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
TRIM_IDLE = 256 << 20
TRIM_BUSY = 1 << 30


@cache
def _mallopt():
    """glibc's ``mallopt`` (not musl's, not a preloaded jemalloc/tcmalloc), else ``None``."""
    if os.environ.get("WIDELIMIT_MALLOC_TUNING", "1") == "0":
        return None
    libc = _libc()
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):
        return None
    fn = getattr(libc, "mallopt", None)
    if fn is None:  # pragma: no cover - glibc always has it
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    if fn(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:  # pragma: no cover - refused
        return None
    return fn


_depth = 0
_depth_lock = threading.Lock()


@contextmanager
def engine_heap() -> Iterator[None]:
    """Keep freed tile temporaries in the heap while the block runs (module docstring).

    Re-entrant and thread-safe: the threshold is restored when the outermost block exits.
    """
    global _depth
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    with _depth_lock:
        _depth += 1
        if _depth == 1:
            mallopt(_M_TRIM_THRESHOLD, TRIM_BUSY)
    try:
        yield
    finally:
        with _depth_lock:
            _depth -= 1
            if _depth == 0:
                mallopt(_M_TRIM_THRESHOLD, TRIM_IDLE)


def advise_huge_pages(t: Tensor) -> bool:
    """Ask for huge pages on the whole 2 MiB-aligned part of ``t``'s memory; ``True`` if asked.

    Only useful before ``t`` is first written.  Never raises: a refused hint changes nothing.
    """
    nbytes = t.numel() * t.element_size()
    if t.device.type != "cpu" or nbytes < MIN_BYTES or not t.is_contiguous():
        return False
    madvise = _madvise()
    if madvise is None:
        return False
    start = t.data_ptr()
    lo = -(-start // HUGE_PAGE) * HUGE_PAGE
    hi = (start + nbytes) // HUGE_PAGE * HUGE_PAGE
    return hi > lo and madvise(lo, hi - lo, _MADV_HUGEPAGE) == 0


def empty_output(like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``like.new_empty(shape)`` (same dtype and device), advised to use huge pages."""
    out = like.new_empty(shape)
    advise_huge_pages(out)
    return out


def thp_mode() -> str | None:
    """The system's transparent-huge-page mode (``always``/``madvise``/``never``) or ``None``."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None
