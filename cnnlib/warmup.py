"""Compile every kernel once, for float32 and float64: ``python -m cnnlib.warmup``.

Numba compiles a kernel the first time it sees a new combination of argument types, which
takes seconds per kernel. Every kernel is declared with ``cache=True``, so running each
functional forward and backward once on tiny inputs of both dtypes writes the machine code to
disk (next to the sources, or under ``$NUMBA_CACHE_DIR``); later sessions load it in
milliseconds. Run it once after installing, or let Binder's ``postBuild`` run it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba.core.dispatcher import Dispatcher

from cnnlib import _conv_fast, _loops, _norm_fast, activations, conv, linear, losses, norm, pool
from cnnlib.registry import METHODS, PAIRS

MODULES = (conv, _conv_fast, _loops, pool, norm, _norm_fast, activations, linear, losses)


def warm_up(dtype: type | np.dtype) -> list[str]:
    """Run every functional forward and backward of ``cnnlib.registry.PAIRS`` once on its small
    sample, with both methods, in ``dtype``; the convolution once more as it runs when OpenMP
    was started before cnnlib; then the loss and ``batch_norm_inference``.

    Returns the names of the pairs (and extra functions) that ran, in order.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    done: list[str] = []
    for name, pair in PAIRS.items():
        for method in METHODS:  # the cache-blocked kernels, and the lecture's loops
            pair.run(rng, dtype, method)
        done.append(name)
    # The convolution's prange wrappers for a process in which OpenMP was started before cnnlib
    # (PyTorch imported first, ``_jit.OPENMP_SPINS``), so that such a session loads them too.
    spins, _loops.OPENMP_SPINS = _loops.OPENMP_SPINS, True
    try:
        PAIRS["conv2d"].run(rng, dtype, "fast")
    finally:
        _loops.OPENMP_SPINS = spins
    done.append("conv2d on a shared OpenMP pool")
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    gamma, beta = np.ones(4, dtype), np.zeros(4, dtype)
    norm.batch_norm_inference(x, gamma, beta, np.zeros(4, dtype), np.ones(4, dtype))
    losses.softmax(x.reshape(2, -1))
    losses.softmax_cross_entropy(x.reshape(2, -1), np.array([0, 7]))
    done += ["batch_norm_inference", "softmax", "softmax_cross_entropy"]
    return done


def kernels() -> dict[str, Dispatcher]:
    """Every Numba kernel defined in the functional modules, keyed ``"module.name"``."""
    found = {}
    for module in MODULES:
        for attr, obj in vars(module).items():
            if isinstance(obj, Dispatcher):
                found[f"{module.__name__.rsplit('.', 1)[-1]}.{attr}"] = obj
    return found


def main() -> int:
    """Warm every kernel up for float32 and float64, print what ran and how long it took."""
    start = time.perf_counter()
    for dtype in (np.float32, np.float64):
        t0 = time.perf_counter()
        names = warm_up(dtype)
        print(f"{np.dtype(dtype).name}: {', '.join(dict.fromkeys(names))} "
              f"({time.perf_counter() - t0:.1f} s)")
    found = kernels()
    total = sum(len(k.signatures) for k in found.values())
    print(f"{len(found)} kernels, {total} compiled signatures, cached on disk; "
          f"total {time.perf_counter() - start:.1f} s")
    unreached = [name for name, k in found.items() if not k.signatures]
    if unreached:
        print(f"no signature of their own (helpers compiled into the kernels that call them, "
              f"or kernels no public function uses): {', '.join(unreached)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
