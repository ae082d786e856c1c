"""Large kernel outputs backed by transparent huge pages (Linux CPU tensors; elsewhere a no-op).

A fresh ``N × N`` kernel output is first touched page by page while the engine writes
it: 4 KiB pages cost one page fault each (8,192 faults for a 32 MB float64 kernel at
N = 2000, 32,768 for N = 4000 in float32), and on 2 cores those faults took 10–25% of a
fully connected kernel's time.  ``madvise(MADV_HUGEPAGE)`` on the not yet touched buffer
lets the kernel back it with 2 MiB pages instead (512× fewer faults), when the system's
transparent-huge-page mode is ``madvise`` or ``always`` (it is a hint: with ``never``, or
where the call is unavailable, nothing changes).

PyTorch's own switch, the ``THP_MEM_ALLOC_ENABLE`` environment variable, is read once
when the process starts and applies to every allocation; this module advises only the
buffers the kernel engine returns.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache

from torch import Tensor

__all__ = ["advise_huge_pages", "empty_output", "thp_mode"]

#: Transparent huge page size on x86-64 and arm64 (4 KiB base pages).
HUGE_PAGE = 2 << 20
#: Buffers smaller than this are not advised (a few huge pages at most: nothing to gain).
MIN_BYTES = 4 * HUGE_PAGE
_MADV_HUGEPAGE = 14  # <linux/mman.h>


@cache
def _madvise():
    """libc's ``madvise`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


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
