"""Bytes the C allocator has handed out and not yet freed: how CPU tensors are seen.

torch's CPU tensors are allocated with the C library's ``malloc``/``posix_memalign``, so they are
invisible to ``tracemalloc`` (Python's allocator only). RSS sees them only when the allocator takes
fresh pages from the OS: in a long-lived process, memory freed by earlier work is reused and RSS
growth reads ~0 for every later cell. glibc's own statistics (``mallinfo2``: bytes in use in every
arena plus bytes in mmapped blocks) count each live allocation whatever pages it sits in, so
"in use above the level at the start" is the CPU analogue of CUDA's ``max_memory_allocated``
minus the start level. Read with ctypes because no Python package exposes it.

``in_use()`` returns ``None`` where the C library has no ``mallinfo2`` (musl, macOS, glibc < 2.33);
callers fall back to RSS and say so.
"""

from __future__ import annotations

import ctypes
import functools


class _Mallinfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (malloc.h), every field a size_t, in this order.
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []
    return fn


@functools.cache
def available() -> bool:
    """glibc's statistics exist **and** see this process's allocations: a preloaded allocator
    (jemalloc, tcmalloc) leaves ``mallinfo2`` in place but reading ~0, so check that a 32 MiB
    block shows up before trusting it."""
    if _mallinfo2() is None:
        return False
    before = in_use()
    block = bytearray(32 * 2**20)  # CPython takes blocks this large straight from malloc
    seen = in_use() - before
    del block
    return seen >= 16 * 2**20


def in_use() -> int | None:
    """Bytes allocated by malloc and not freed (arenas' in-use chunks + mmapped blocks), or None."""
    fn = _mallinfo2()
    if fn is None:
        return None
    m = fn()
    return int(m.uordblks + m.hblkhd)
