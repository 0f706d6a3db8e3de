"""How cnnlib's arrays get their memory: the buffers a training step frees stay in the process
(``keep_freed_memory``), and cnnlib's own large arrays are allocated without NumPy's huge-page
advice (``no_huge_page_advice``, at the end of this module).

A training step allocates the same large arrays again and again: each layer's output, the
im2col-like workspace of a convolution, every gradient (batch 64 of 3×32×32 images: 1–8 MB each).
glibc's ``malloc`` serves a block above its *mmap threshold* (128 KB at first, raised by itself
up to 32 MB as blocks are freed) with a fresh ``mmap`` and returns it with ``munmap`` when it is
freed, and it gives the top of its heap back to the kernel once more than its *trim threshold* is
free.  Either way the next step's array lands on pages the kernel has to map and zero again: one
page fault per 4 KB.  Measured in a process of its own on the 2-core VM (``bench_step.py
--worker 300``, median step, 2026-12-07): the BatchNorm CNN's step took 20.97 ms with glibc's
defaults and 11.67 ms with both thresholds at 32 MB (the LeNet-like CNN 7.84 → 5.87 ms); the
mmap threshold alone (22.8 ms) or the trim threshold alone (23.0 ms) did not help, because the
other one still returns the pages.

So, on glibc, cnnlib sets the mmap threshold to 32 MB (the largest glibc accepts on 64-bit)
and the trim threshold to 128 MB, unless the user chose any malloc setting (``MALLOC_*_``
variables or a ``glibc.malloc`` tunable).  Arrays over 32 MB (a whole dataset) are still mapped
and returned at once; what a process keeps is at most 128 MB of free heap above its peak of
smaller arrays.  Why 128 and not 32 MB: once anything long-lived sits above a step's buffers
in the heap (in notebook 06, whatever an earlier training left behind), every step's
buffers are freed at the heap's top, and with a 32 MB trim threshold glibc returned them after
every step of the Fashion-MNIST CNN (batch 128: 4100 faults per step; 06's small training
took 4.6 s instead of 2.9 s); with batch 256 a 64 MB threshold was still too small
(``tests/test_malloc.py`` repeats that case).
"""

import ctypes
import functools
import os
import sys

MMAP_THRESHOLD = 32 * 2**20  # bytes: glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = 128 * 2**20  # bytes of free heap a process may keep at its top
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (<malloc.h>)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (``MMAP_THRESHOLD``, ``TRIM_THRESHOLD``); True
    when both were set.

    Nothing is changed on other C libraries (macOS, Windows, musl), nor when the user set a
    malloc option of their own.
    """
    if not sys.platform.startswith("linux") or _user_chose():
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing  # noqa: B018
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the trim threshold first: setting the mmap one also stops glibc's own adjustment of both
    return (bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)))


def _user_chose() -> bool:
    return (any(name in os.environ for name in USER_SETTINGS)
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""))


# --------------------------------------------------------------------------- huge pages

try:  # NumPy's switch for MADV_HUGEPAGE on its large arrays (NumPy 2: numpy._core)
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # pragma: no cover - NumPy 1.x
    try:
        from numpy.core.multiarray import _set_madvise_hugepage
    except ImportError:
        _set_madvise_hugepage = None


ADVISE = _set_madvise_hugepage is not None and "NUMPY_MADVISE_HUGEPAGE" not in os.environ


class no_huge_page_advice:  # lower case: used like a function, ``with no_huge_page_advice():``
    """``with no_huge_page_advice():`` NumPy's arrays allocated in the block get no huge-page
    advice.

    On Linux NumPy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on
    every array of 4 MB or more, so the first touch of such an array faults in 2 MB at a time.
    That can be slow: where the kernel's ``transparent_hugepage/defrag`` setting is ``madvise``
    (Debian's and Ubuntu's default) it may compact memory on the spot (numpy/numpy#31590), and
    on the 2-core VM the course is measured on (a Firecracker guest, which reported no
    compaction stalls) right after Numba had compiled in the same process each 2 MB page took
    about 23 ms to fault in (29 pages in 0.66 s), as if the host had to back it afresh.
    Measured there (2026-12-08): ``make_shapes(2000)`` took 0.47-0.95 s after a cold compile,
    0.08 s without the compile and 0.09 s after it with the advice off; its 24 MB arrays took
    98-290 ms (``np.where``), 241-291 ms (the noise) and 197-336 ms (the sum) instead of 11,
    57 and 12 ms. Notebook 06 from an empty cache: 15.6 / 15.8 s, and 15.3 / 15.0 s with this.
    A training step runs as fast without huge pages (shapes CNN: 9.42-9.66 ms with, 9.53-9.55
    ms without), because cnnlib's malloc settings keep its buffers mapped from one step to the
    next. So cnnlib's layers and data generators allocate without the advice; NumPy keeps it
    for the user's own arrays (an array over 32 MB, mapped afresh each time, is allocated about
    twice as fast in huge pages when the kernel has them: ``big + 1`` on 128 MB took 22.7 ms
    with and 42.7-46.1 ms without). A user who set ``NUMPY_MADVISE_HUGEPAGE`` has chosen, and
    cnnlib leaves the setting alone.
    """

    __slots__ = ("before",)

    def __enter__(self) -> None:
        self.before = _set_madvise_hugepage(False) if ADVISE else None

    def __exit__(self, *exc: object) -> None:
        if self.before is not None:
            _set_madvise_hugepage(self.before)


def without_huge_page_advice(function):
    """``function`` run inside ``no_huge_page_advice()`` (for cnnlib's data generators)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with no_huge_page_advice():
            return function(*args, **kwargs)

    return wrapper
