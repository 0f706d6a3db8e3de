"""The one place that sets Numba's flags for every kernel in cnnlib.

``kernel`` is ``njit(parallel=True, cache=True)``: compiled once per dtype, cached on disk
(``python -m cnnlib.warmup`` fills the cache), no blanket ``fastmath`` so results match NumPy.
``prange`` is re-exported so kernels import both names from here.
"""

from numba import njit, prange

kernel = njit(parallel=True, cache=True)
serial_kernel = njit(cache=True)

__all__ = ["kernel", "prange", "serial_kernel"]
