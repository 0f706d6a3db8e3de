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
from collections.abc import Callable

import numpy as np
from numba.core.dispatcher import Dispatcher

from cnnlib import activations, conv, linear, losses, norm, pool

MODULES = (conv, pool, norm, activations, linear, losses)


def warm_up(dtype: type | np.dtype) -> list[str]:
    """Run every functional forward and backward once on tiny ``dtype`` inputs.

    Returns the names of the forward/backward pairs (and extra functions) that ran, in order.
    Functions are looked up on their modules at call time.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)  # (N, C, H, W); odd W on purpose
    w = rng.standard_normal((3, 4, 3, 3)).astype(dtype)  # (F, C, KH, KW)
    b = rng.standard_normal(3).astype(dtype)
    gamma, beta = np.ones(4, dtype), np.zeros(4, dtype)
    done: list[str] = []

    def pair(name: str, *arrays: np.ndarray, **hyper: object) -> None:
        forward: Callable = getattr(_module_of(name), f"{name}_forward")
        backward: Callable = getattr(_module_of(name), f"{name}_backward")
        out, cache = forward(*arrays, **hyper)
        backward(np.ones_like(out), cache)
        done.append(name)

    for method in conv.METHODS:  # im2col + BLAS, and the readable loop kernels
        pair("conv2d", x, w, b, stride=2, padding=1, dilation=1, method=method)
    for name in ("max_pool2d", "avg_pool2d"):  # the common 2×2 case may take a special path
        pair(name, x, 2)
        pair(name, x, 3, stride=2, padding=1)
    pair("batch_norm", x, gamma, beta)
    pair("layer_norm", x, gamma, beta)
    pair("group_norm", x, gamma, beta, 2)
    pair("linear", x.reshape(2, -1), rng.standard_normal((3, 120)).astype(dtype), b)
    for name in ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"):
        pair(name, x)

    done += _loop_kernels(x, w, b, gamma)
    norm.batch_norm_inference(x, gamma, beta, np.zeros(4, dtype), np.ones(4, dtype))
    losses.softmax(x.reshape(2, -1))
    losses.softmax_cross_entropy(x.reshape(2, -1), np.array([0, 7]))
    done += ["batch_norm_inference", "softmax", "softmax_cross_entropy"]
    return done


def _loop_kernels(x: np.ndarray, w: np.ndarray, b: np.ndarray, gamma: np.ndarray) -> list[str]:
    """The readable loop kernels that no public function calls (it calls a faster twin), but
    notebooks and tests run: called directly, with the argument types the twin gets.
    A kernel that is missing (renamed) is skipped here; ``tests/test_warmup.py`` notices."""
    dtype, C = x.dtype, x.shape[1]
    x2, w2 = x.reshape(2, -1), w.reshape(3, -1)[:, : x[0].size]  # (N, D_in), (D_out, D_in)
    stats = [np.empty(C, dtype) for _ in range(3)]  # mean, var, rstd
    calls = {
        (linear, "_linear_forward_kernel"): (x2, np.ascontiguousarray(w2), b,
                                             np.empty((2, 3), dtype)),
        (norm, "_batch_norm_stats_kernel"): (x, 1e-5, *stats),
        (norm, "_batch_norm_backward_kernel"): (
            np.ones_like(x), x, stats[0], stats[2], gamma, np.empty_like(x),
            np.empty(C, dtype), np.empty(C, dtype)),
    }
    done = []
    for (module, name), args in calls.items():
        if hasattr(module, name):
            getattr(module, name)(*args)
            done.append(f"{module.__name__.rsplit('.', 1)[-1]}.{name}")
    return done


def _module_of(name: str) -> object:
    for module in MODULES:
        if hasattr(module, f"{name}_forward"):
            return module
    raise LookupError(f"no module defines {name}_forward")


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
