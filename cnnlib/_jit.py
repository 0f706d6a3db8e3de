"""The one place that sets Numba's flags for every kernel in cnnlib.

``kernel`` is ``njit(parallel=True, cache=True)``: compiled once per dtype, cached on disk
(``python -m cnnlib.warmup`` fills the cache), no blanket ``fastmath`` so results match NumPy.
``prange`` is re-exported so kernels import both names from here.

OpenMP's idle worker threads spin by default.  On a shared machine (a class on one JupyterHub
node, Binder's 1–2 cores) the spinning threads compete with the work itself: next to one busy
process, a training step took 7 ms with GNU OpenMP's default spin, 25 ms with a short spin
(``GOMP_SPINCOUNT=30000``) and 5.3 ms with ``OMP_WAIT_POLICY=PASSIVE``, which is therefore set
on import (a value set by the user is kept).  The price, on an otherwise idle 2-vCPU cloud
machine: a sleeping worker is often woken on the core of the thread that woke it, so after a
pause parallel kernels may run at one core's speed until the scheduler moves them apart
(``benchmarks/README.md``).

Threads only help when there are no more of them than CPUs the process may use.  A JupyterHub
or Binder container often sees all of a large node's cores but may use only a few (its CPU
limit), and Numba would start one thread per visible core.  So, unless ``NUMBA_NUM_THREADS`` is
set, it is set to that limit rounded up (``CPU_LIMIT``, which JupyterHub's KubeSpawner and
Binder set, or the cgroup's CPU quota), provided Numba was not imported before cnnlib.
"""

import math
import os
import sys


def _cpu_limit() -> float | None:
    """How many CPUs this container may use, if it is limited: CPU_LIMIT or the cgroup quota."""
    limits = [_read_number(lambda: os.environ["CPU_LIMIT"])]
    # cgroup v2: "quota period" (or "max period" when unlimited) in one file
    limits.append(_read_number(lambda: _ratio(*_read("/sys/fs/cgroup/cpu.max").split()[:2])))
    # cgroup v1: quota (-1 when unlimited) and period in two files
    limits.append(_read_number(lambda: _ratio(_read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                                              _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))))
    limits = [limit for limit in limits if limit is not None and limit > 0]
    return min(limits) if limits else None


def _read(path: str) -> str:
    with open(path) as file:
        return file.read().strip()


def _ratio(quota: str, period: str) -> float | None:
    return None if quota in ("max", "-1") else int(quota) / int(period)


def _read_number(get) -> float | None:
    """get(), or None when the file or variable is missing or not a number."""
    try:
        value = get()
        return None if value is None else float(value)
    except (KeyError, OSError, ValueError, TypeError):
        return None


def _threads_for_this_machine() -> int:
    """CPUs this process may run on, capped by the container's CPU limit rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    limit = _cpu_limit()
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


if "NUMBA_NUM_THREADS" not in os.environ and "numba" not in sys.modules:
    os.environ["NUMBA_NUM_THREADS"] = str(_threads_for_this_machine())
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numba import njit, prange  # noqa: E402  (after the environment is set)

kernel = njit(parallel=True, cache=True)
serial_kernel = njit(cache=True)
# Sums that may be added up in any order (``reassoc``), so that they run in vector pieces, with
# fused multiply-adds (``contract``); the result differs from a left-to-right sum only in
# rounding.  Only for kernels whose docstring says they sum in pieces.
sum_kernel = njit(cache=True, fastmath={"reassoc", "contract"})

__all__ = ["kernel", "prange", "serial_kernel", "sum_kernel"]
