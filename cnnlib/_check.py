"""Argument checks shared by every public function.

Each helper raises ``TypeError`` / ``ValueError`` with a sentence a student can act on, so that
a Numba typing error never reaches the user.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def float_dtype(*arrays: object) -> np.dtype:
    """The floating dtype a computation on ``arrays`` uses.

    float64 if any array is float64; else float32 if any is float16/float32; integer and
    boolean inputs alone give float64 (so hand-worked integer examples stay exact).
    """
    kinds = [np.asarray(a).dtype for a in arrays if a is not None]
    floats = [d for d in kinds if d.kind == "f"]
    if not floats:
        return np.dtype(np.float64)
    if any(d == np.float64 or d.itemsize > 8 for d in floats):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def as_float_array(x: object, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float array; integers and booleans are converted, not truncated.

    Raises ``TypeError`` for complex, string or object data.
    """
    if x is None:
        raise TypeError(f"{name} is None; pass a NumPy array")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be turned into a NumPy array: {exc}") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({arr.dtype}); cnnlib works with real numbers only")
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}, which is not numeric; pass an array of numbers"
        )
    if dtype is None:
        dtype = float_dtype(arr)
    return np.asarray(arr, dtype=dtype, order="C")  # keeps 0-d scalars 0-d


def as_float_arrays(**arrays: object) -> tuple[np.ndarray, ...]:
    """Each array (named by its keyword, for messages) in the common float dtype of all of them
    (``float_dtype``), in the order given: ``x, w, b = as_float_arrays(x=x, w=w, b=b)``."""
    dtype = float_dtype(*arrays.values())
    return tuple(as_float_array(a, name, dtype) for name, a in arrays.items())


def check_ndim(x: np.ndarray, ndim: int, name: str, layout: str) -> None:
    """Require ``x.ndim == ndim``; ``layout`` names the axes, e.g. ``"(N, C, H, W)"``."""
    if x.ndim != ndim:
        hint = ""
        if ndim == 4 and x.ndim == 3:
            hint = " For a single image add a batch axis: x[None]."
        elif ndim == 4 and x.ndim == 2:
            hint = " For a single grey image use x[None, None]."
        raise ValueError(
            f"{name} must have {ndim} dimensions {layout}, but it has {x.ndim} "
            f"(shape {x.shape}).{hint}"
        )


#: The largest whole number a size or hyper-parameter may be: the kernels index with 64-bit
#: integers and add sizes together, so anything near 2**63 would overflow inside them.
MAX_INT = 2**31 - 1


def as_int(v: object, name: str, minimum: int | None = None) -> int:
    """``v`` as a Python int (bool and floats are rejected), at least ``minimum`` and at most
    ``MAX_INT``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {v}")
    if v > MAX_INT:
        raise ValueError(f"{name} is {v}, which is too large: sizes and hyper-parameters must be "
                         f"at most {MAX_INT}")
    return v


def as_pair(v: object, name: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or an ``(h, w)`` pair, as a pair of ints each at least ``minimum``."""
    if isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {v!r}")
        return as_int(v[0], f"{name}[0]", minimum), as_int(v[1], f"{name}[1]", minimum)
    value = as_int(v, name, minimum)
    return value, value


def as_real(v: object, name: str) -> float:
    """A finite real number of any sign: ``TypeError`` for anything that is not a real number
    (bool included), ``ValueError`` for NaN and ±inf."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    return float(v)


def check_pool_padding(padding: tuple[int, int], kernel_size: tuple[int, int]) -> None:
    """Pooling padding may be at most half the window (PyTorch's rule)."""
    for p, k in zip(padding, kernel_size, strict=True):
        if p > k // 2:
            raise ValueError(f"padding {p} is more than half of kernel_size {k}; use padding ≤ "
                             f"kernel_size // 2 (PyTorch has the same rule)")


def as_positive_float(v: object, name: str, allow_zero: bool = False) -> float:
    """A real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {v}")
    return v


#: The two ways every functional pair can compute: ``"fast"`` (the default) or ``"readable"``,
#: the loop kernels that read like the lecture's formulas. Both give the same numbers up to
#: rounding; a pair with one kernel runs it for both.
METHODS = ("fast", "readable")


def check_method(method: object) -> str:
    """``method`` if it is ``"fast"`` or ``"readable"``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def check_cache(cache: object, expected_type: type, layer: str) -> None:
    """Reject a missing or foreign cache (e.g. ``backward`` called before ``forward``)."""
    if not isinstance(cache, expected_type):
        raise TypeError(
            f"{layer}_backward needs the cache returned by {layer}_forward, got "
            f"{type(cache).__name__}; call {layer}_forward first"
        )


def check_dout(dout: object, shape: tuple[int, ...], dtype: np.dtype, layer: str) -> np.ndarray:
    """``dout`` as an array of the forward output's shape and dtype."""
    arr = as_float_array(dout, "dout", dtype)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"dout has shape {arr.shape} but the output of {layer}_forward had shape "
            f"{tuple(shape)}; dout must have the same shape as the forward output"
        )
    return arr
