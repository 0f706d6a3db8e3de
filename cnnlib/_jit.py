"""The one place that sets Numba's flags for every kernel in cnnlib.

``kernel`` is ``njit(parallel=True, cache=True)``: compiled once per dtype, cached on disk
(``python -m cnnlib.warmup`` fills the cache), no blanket ``fastmath`` so results match NumPy.
``prange`` is re-exported so kernels import both names from here.

OpenMP's idle worker threads spin by default.  On a shared machine (a class on one JupyterHub
node, Binder's 1–2 cores) the spinning threads compete with the work itself and a tiny parallel
kernel was measured taking 20 ms instead of 0.01 ms; passive waiting avoids that.  It must be set
before Numba loads its OpenMP layer (at the first parallel call), so it is set on import.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from numba import njit, prange  # after the environment is set

kernel = njit(parallel=True, cache=True)
serial_kernel = njit(cache=True)

__all__ = ["kernel", "prange", "serial_kernel"]
