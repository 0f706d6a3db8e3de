"""The one place that sets Numba's flags for every kernel in cnnlib.

``kernel`` is ``njit(parallel=True, cache=True)``: compiled once per dtype, cached on disk
(``python -m cnnlib.warmup`` fills the cache), no blanket ``fastmath`` so results match NumPy.
``prange`` is re-exported so kernels import both names from here. The readable kernels (the
lecture's loops the notebooks show) are ``kernel``s with ``prange``. The fast kernels of the
convolution, batch norm, 2×2 max pooling and the activations, and the kernels of average pooling
and group norm, are ``chunk_kernel``s instead: serial loops that release the GIL, run on one
chunk (or one piece of the batch, ``_loops._in_sample_pieces``) per thread by
``_loops._in_chunks`` on cnnlib's own worker threads, which sleep on a lock while idle.
Numba's parallel compiler is what makes a cold start slow (issue 11: the two fast conv kernels took
12.8 s to compile per dtype with ``prange``, 6.6 s as chunk kernels; notebook 01's Run All from an
empty cache 20.6 → 10.5 s), and the chunk kernels run as fast (conv2d forward + backward 1.20 / 3.13
/ 2.54 ms against 1.30 / 3.31 / 2.70 ms on bench_conv's three shapes, no pause, quiet); a hand-over
to a worker costs about 70 µs against OpenMP's 4 µs, so small arrays stay in one chunk. How many
chunks: ``numba.get_num_threads()``, so ``numba.set_num_threads`` governs both kinds.
From an empty cache, ``_prefetch.py`` has a helper process compile each layer's backward kernels
while the forward pass goes on (the second core, otherwise idle while one compiles).

How idle worker threads wait decides cnnlib's speed where students run it: one Jupyter kernel in
which NumPy (OpenBLAS's thread pool), cnnlib (Numba's OpenMP pool) and sometimes PyTorch (its
OpenMP pool) run call after call with no pause (``benchmarks/bench_same_process.py``; 2-vCPU VM):

* OpenBLAS's idle thread busy-waits for 2**28 cycles (about 0.1 s, without yielding) after
  every multi-threaded NumPy product;
* GNU OpenMP's idle workers, by default, also busy-wait (``GOMP_SPINCOUNT`` 300000, several
  milliseconds) after every parallel loop before they sleep.

A thread that spins holds a core, so the next library's threads get one core instead of two,
and spinning threads that wait for each other lose whole time slices: right after NumPy calls
the 3×3 convolution forward + backward of bench_conv took 17–23 ms instead of 1 ms (issue 11).
cnnlib therefore makes every pool it can reach sleep as soon as its work is done:

1. ``OMP_WAIT_POLICY=PASSIVE`` for Numba's OpenMP workers (and PyTorch's, imported after
   cnnlib: they share the one OpenMP runtime, libgomp), unless the user set ``OMP_WAIT_POLICY``
   or ``GOMP_SPINCOUNT``. OpenMP reads it when it loads, at cnnlib's first parallel call.
2. ``OPENBLAS_THREAD_TIMEOUT=4`` for NumPy's OpenBLAS (``_openblas_sleeps_at_once``), unless the
   user set it. NumPy keeps both its threads; only their idle waiting changes.
3. An OpenMP runtime that was loaded *before* cnnlib (PyTorch imported first; it shares the one
   libgomp with Numba) has read its spinning default already. Numba's OpenMP layer still shares
   it: one pool for both libraries. Measured with PyTorch imported first and used in every round
   (no pause, quiet machine, 2026-12-07 16:58): 9.95×, 6.62×, 3.84× NumPy im2col sharing the
   runtime, against 3.97×, 3.36×, 1.76× with Numba's own ``workqueue`` pool beside it (two pools
   of two threads on two cores), which cnnlib used before. The price: NumPy's 1024² float32
   product right after a cnnlib call took 12.05 ms instead of 8.41 ms, as it does after any
   PyTorch call in that process. ``OMP_WAIT_POLICY=PASSIVE`` in the kernel's environment
   (Binder's ``binder/start`` sets it) avoids both. The fast kernels run on cnnlib's own
   workers, not on that pool, and its spinning threads take a core from them: a 3×3
   convolution forward + backward (32×16×16×16, 32 filters) alternating with PyTorch's took
   4.61–4.77 ms with PyTorch imported first, 2.38–2.42 ms with cnnlib imported first and
   2.50–2.61 ms with PyTorch first under ``OMP_WAIT_POLICY=PASSIVE`` (2026-12-08). So in that
   case (``OPENMP_SPINS``: libgomp loaded before cnnlib, neither setting in the environment)
   importing cnnlib warns and names the fix, and the convolution runs its chunks as a prange on
   the shared OpenMP pool (``_loops._in_chunks(..., shared=...)``): 2.11–2.24 ms, and
   ``bench_same_process.py`` with PyTorch imported first 8.98–10.18×, 5.79–5.90×, 3.68–3.89×
   NumPy im2col instead of 5.50–6.85×, 4.82–5.01×, 2.89–3.16×. The prices: once per cache, the
   two prange wrappers compile in about 2.5 and 3 s (float32; ``python -m cnnlib.warmup``
   compiles them too: 27.0 → 38.2 s for everything); and NumPy's 1024² float32 product
   right after a convolution took 10.7–11.1 ms instead of 7.1–7.4 ms, as after any PyTorch call
   in that process (the pool's threads spin after cnnlib's loops too).
4. glibc's malloc keeps the buffers a training step frees, instead of returning them to the
   kernel and faulting them in again in the next step (``_malloc.py``: the BatchNorm CNN's step
   20.97 → 11.67 ms in a process of its own).

Measured after all of the above (no pause, quiet, 2026-12-07 18:00; ``benchmarks/README.md``):
8.28×, 5.67×, 3.33× NumPy im2col, and 3.06× on the 3×3 shape with PyTorch imported first.
Measured before the chunk kernels (conv2d forward + backward, NumPy im2col time / cnnlib time,
median of interleaved rounds, no pause, 2026-12-07 16:05): 8.30×, 6.61×, 3.45× on bench_conv's
three shapes with these settings (3.27× on the 3×3 shape with PyTorch imported after cnnlib and
used), against 0.96× and 0.51× on the two larger ones as cnnlib was before (cnnlib 20–24 ms per
call), and 1.81× on the 3×3 shape with passive OpenMP alone (OpenBLAS still spinning: cnnlib at
its one-thread time). NumPy stays as fast as it was: a 1024² float32 / float64 product took 6.77
/ 14.48 ms before ``import cnnlib`` and 6.55 / 14.13 ms after (6.48 / 14.06 ms right after a
cnnlib call). The alternatives, measured in the same runs: OpenMP spinning with OpenBLAS fixed
was fastest on a quiet machine (3.70×) but slowed NumPy's next product (7.04 → 10.97 ms) and
collapsed again once other jobs ran (1.03×); NumPy single-threaded
(``threadpoolctl.threadpool_limits(1)``) doubles the 1024² product (14.64 / 29.17 ms) and left
the 3×3 shape at 1.90×. Spinning is faster only on a quiet machine for bursts of parallel loops
after pauses (3.1 against 4.7 ms per training step, ``bench_wait_policy.py``), which is not how
a notebook alternates libraries.

Threads only help when there are no more of them than CPUs the process may use.  A JupyterHub
or Binder container often sees all of a large node's cores but may use only a few (its CPU
limit), and Numba would start one thread per visible core.  So, unless ``NUMBA_NUM_THREADS`` is
set, it is set to that limit rounded up (``CPU_LIMIT``, which JupyterHub's KubeSpawner and
Binder set, or the cgroup's CPU quota), provided Numba was not imported before cnnlib.
"""

import math
import os
import sys
import time

from cnnlib import _malloc


def _cpu_limit() -> float | None:
    """How many CPUs this container may use, if it is limited: CPU_LIMIT or a cgroup quota."""
    limits = [_number(os.environ.get, "CPU_LIMIT"), *_cgroup_quotas()]
    limits = [limit for limit in limits if limit is not None and limit > 0]
    return min(limits) if limits else None


def _cgroup_quotas() -> list[float | None]:
    """CPU quotas (CPUs) of this process's cgroup and its parents, cgroup v2 and v1."""
    try:
        lines = _read("/proc/self/cgroup").splitlines()
    except OSError:
        return []
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "quota period", or "max period" when unlimited
            roots = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            files = ("cpu.max",)
        elif "cpu" in controllers.split(","):  # v1: quota (-1 when unlimited) and period
            roots = ["/sys/fs/cgroup/cpu", f"/sys/fs/cgroup/{controllers}"]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        parts = [part for part in path.split("/") if part]
        for root in roots:
            for depth in range(len(parts), -1, -1):
                folder = "/".join([root, *parts[:depth]])
                quotas.append(_number(_quota, folder, files))
    return quotas


def _quota(folder: str, files: tuple[str, ...]) -> float | None:
    """quota / period from the first two fields of the files, or None when unlimited."""
    quota, period = " ".join(_read(f"{folder}/{name}") for name in files).split()[:2]
    return None if quota in ("max", "-1") else int(quota) / int(period)


def _read(path: str) -> str:
    with open(path) as file:
        return file.read().strip()


def _number(get, *args) -> float | None:
    """get(*args) as a float, or None when the file or variable is missing or not a number."""
    try:
        value = get(*args)
        return None if value is None else float(value)
    except (OSError, ValueError, TypeError):
        return None


def _threads_for_this_machine(limit: float | None) -> int:
    """CPUs this process may run on, capped by the container's CPU ``limit`` rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def _openblas_sleeps_at_once() -> int:
    """Make the idle threads of NumPy's OpenBLAS sleep as soon as a product ends, instead of
    busy-waiting about 0.1 s (see above). Returns how many OpenBLAS libraries were changed.

    ``OPENBLAS_THREAD_TIMEOUT`` (2**value cycles of waiting; 4 is OpenBLAS's minimum) is
    OpenBLAS's own setting, but it is read when the library loads and when it starts its
    threads. So, unless the user set it, cnnlib sets it, has OpenBLAS read its environment again
    (``openblas_read_env``) and stops its idle threads (``blas_thread_shutdown_``, what OpenBLAS
    itself does before a fork); its next product starts them again with the new setting.
    threadpoolctl finds the OpenBLAS that NumPy loaded; an OpenBLAS built on OpenMP, one
    without these functions, MKL or Accelerate are left alone.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or "GOTO_THREAD_TIMEOUT" in os.environ:
        return 0
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return 0
    changed = 0
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        dynlib = getattr(lib, "dynlib", None)
        read_env = getattr(dynlib, "openblas_read_env", None)
        shutdown = getattr(dynlib, "blas_thread_shutdown_", None)
        if getattr(lib, "threading_layer", None) != "pthreads" or not (read_env and shutdown):
            continue
        read_env()
        shutdown()
        changed += 1
    return changed


def _openmp_already_spins() -> bool:
    """Whether an OpenMP runtime (libgomp) is loaded already, without ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT`` set: it read its default of busy-waiting after every parallel loop."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    try:
        return "libgomp" in _read("/proc/self/maps")
    except OSError:  # not Linux: nothing to say
        return False


OPENMP_SPINS = _openmp_already_spins()  # read before cnnlib sets OMP_WAIT_POLICY
_limit = _cpu_limit()
if "NUMBA_NUM_THREADS" not in os.environ and "numba" not in sys.modules:
    os.environ["NUMBA_NUM_THREADS"] = str(_threads_for_this_machine(_limit))
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # idle workers sleep at once: see above
_openblas_sleeps_at_once()
_malloc.keep_freed_memory()

import warnings  # noqa: E402

import numba  # noqa: E402, F401  (after the environment is set; other modules import it from here)
from numba import njit, prange  # noqa: E402
from numba.core import event as _event  # noqa: E402

from cnnlib import _cache  # noqa: E402

# A read-only install (a JupyterHub image) reads the cache its warm-up built: see _cache.py.
_disk_cache = _cache.install()
if not _disk_cache:
    warnings.warn("cnnlib: no writable directory for Numba's cache (the package, ~/.cache and "
                  "the temporary directory are read-only); kernels are compiled in every "
                  "session. Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                  RuntimeWarning, stacklevel=2)
if OPENMP_SPINS:
    warnings.warn("cnnlib: a library imported before cnnlib (PyTorch, for example) has started "
                  "OpenMP, whose idle threads keep a CPU busy after every parallel loop; "
                  "alternating its calls with cnnlib's can make cnnlib about 2x slower. Import "
                  "cnnlib first, or start Python or Jupyter with OMP_WAIT_POLICY=PASSIVE.",
                  RuntimeWarning, stacklevel=2)



class _CompileNotice(_event.Listener):
    """In a Jupyter kernel, say so when a cell starts compiling cnnlib's kernels (issue 11).

    From an empty cache (Colab, a new Binder machine) the first call of a layer compiles its
    kernels for the dtype it is given, 1–10 s each on a 2-core machine; without a word the cell
    looks stuck. One line per cell that compiles (per IPython execution count; outside IPython,
    per burst with no compilation in the previous ``QUIET`` seconds).
    """

    QUIET = 30.0

    def __init__(self) -> None:
        self.depth = 0
        self.last: tuple[object, float] = (None, -math.inf)

    def on_start(self, event: _event.Event) -> None:
        self.depth += 1
        func = getattr(event.data.get("dispatcher"), "py_func", None)
        if self.depth != 1 or not getattr(func, "__module__", "").startswith("cnnlib."):
            return
        cell, now = _cell(), time.monotonic()
        if cell != self.last[0] or (cell is None and now - self.last[1] > self.QUIET):
            print("cnnlib: カーネルを一度だけコンパイルしています（初めて使う層と dtype ごとに"
                  "約 1〜10 秒。次からはディスクのキャッシュから読み込みます）…", flush=True)
        self.last = (cell, now)

    def on_end(self, event: _event.Event) -> None:
        self.depth -= 1


def _cell() -> object:
    """The running IPython cell's execution count, or None outside IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return None if shell is None else shell.execution_count


if "ipykernel" in sys.modules:  # a notebook: the student sees the cell's output at once
    _event.register("numba:compile", _CompileNotice())

kernel = njit(parallel=True, cache=_disk_cache)
serial_kernel = njit(cache=_disk_cache)
# Small helpers that must disappear into their caller (Numba inlines them before LLVM sees them).
inline_kernel = njit(inline="always", cache=_disk_cache)
# Sums that may be added up in any order (``reassoc``), so that they run in vector pieces, with
# fused multiply-adds (``contract``); the result differs from a left-to-right sum only in
# rounding.  Only for kernels whose docstring says they sum in pieces.
sum_kernel = njit(cache=_disk_cache, fastmath={"reassoc", "contract"})
# The fast kernels' chunks: serial, and without the GIL, so that _loops._in_chunks can run one
# chunk per thread on cnnlib's own workers (compiles in about half the time of a prange nest).
chunk_kernel = njit(nogil=True, cache=_disk_cache)

__all__ = ["OPENMP_SPINS", "chunk_kernel", "inline_kernel", "kernel", "prange", "serial_kernel",
           "sum_kernel"]
