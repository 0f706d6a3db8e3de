"""Activation functions f(x), applied elementwise, each a forward/backward pair (notebook 04).

Every ``<name>_forward(x)`` takes an array of any shape and returns ``(out, cache)`` with ``out``
of the same shape and float dtype; ``<name>_backward(dout, cache)`` returns
``dx = dout · f'(x)``. Integer input is converted to float64, float32 stays float32.

Each function has one Numba kernel pair working on a flattened view of the arrays; they are
already the formula's loop, so ``method="fast"`` and ``method="readable"`` run the same kernels.
A large array is cut into one piece per thread, and the pieces run at the same time on
``_loops``' thread pool (the kernels release the GIL): plain loops compile in about a third of
the time a ``prange`` loop takes (issue 11, a cold start compiles every kernel a notebook uses).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._check import (
    as_float_array,
    as_positive_float,
    as_real,
    check_cache,
    check_dout,
    check_method,
)
from ._jit import chunk_kernel
from ._loops import _in_sample_pieces

_PER_THREAD = 32768  # values: a smaller array runs in one piece (waking a thread costs more)


def _run(elementwise_kernel, first: np.ndarray, *rest) -> np.ndarray:
    """Call an elementwise kernel on flat views; the result has the shape and dtype of ``first``.

    ``rest`` holds further arrays (flattened the same way) and typed scalars such as ``alpha``.
    A large array is cut into one piece per thread (``_loops._in_sample_pieces``).
    """
    result = np.empty(first.shape, first.dtype)  # C order, so reshape(-1) is a view
    flat = tuple(a.reshape(-1) if isinstance(a, np.ndarray) else a
                 for a in (first, *rest, result))
    arrays = tuple(k for k, a in enumerate(flat) if isinstance(a, np.ndarray))
    _in_sample_pieces(elementwise_kernel, flat, arrays, _PER_THREAD)
    return result


def _check_backward(dout: object, cache: tuple, cache_type: type, layer: str) -> np.ndarray:
    """Check the cache type and ``dout`` against the array the cache saved (first field)."""
    check_cache(cache, cache_type, layer)
    saved = cache[0]
    return check_dout(dout, saved.shape, saved.dtype, layer)


# ---------------------------------------------------------------------------------------------
# ReLU: f(x) = max(0, x)


class ReLUCache(NamedTuple):
    x: np.ndarray  # the forward input


def relu_forward(x: object, *, method: str = "fast") -> tuple[np.ndarray, ReLUCache]:
    """ReLU: ``out = max(0, x)`` elementwise; NaN stays NaN.

    x: any shape. out: same shape and dtype. The cache holds ``x``.
    """
    check_method(method)
    x = as_float_array(x, "x")
    return _run(relu_forward_kernel, x), ReLUCache(x)


@chunk_kernel
def relu_forward_kernel(x, out):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes out[k] only
        out[k] = zero if x[k] <= zero else x[k]


def relu_backward(dout: object, cache: ReLUCache) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else 0 (the derivative at exactly 0 is 0, as in PyTorch).

    dout: the shape of the forward output. dx: the shape of x.
    """
    dout = _check_backward(dout, cache, ReLUCache, "relu")
    return _run(relu_backward_kernel, dout, cache.x)


@chunk_kernel
def relu_backward_kernel(dout, x, dx):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes dx[k] only
        dx[k] = zero if x[k] <= zero else dout[k]


# ---------------------------------------------------------------------------------------------
# Leaky ReLU: f(x) = x for x > 0, alpha·x otherwise


class LeakyReLUCache(NamedTuple):
    x: np.ndarray  # the forward input
    alpha: np.floating  # slope for x <= 0, in x's dtype


def leaky_relu_forward(x: object, alpha: float = 0.01, *,
                       method: str = "fast") -> tuple[np.ndarray, LeakyReLUCache]:
    """Leaky ReLU: ``out = x`` where ``x > 0``, else ``alpha · x``.

    alpha may be any finite real: 0 gives ReLU, 1 the identity, −1 gives |x| (PyTorch's
    ``negative_slope`` is not restricted either). x: any shape. out: same shape and dtype.
    The cache holds ``x`` and ``alpha``.
    """
    check_method(method)
    x = as_float_array(x, "x")
    alpha = x.dtype.type(as_real(alpha, "alpha"))
    return _run(leaky_relu_forward_kernel, x, alpha), LeakyReLUCache(x, alpha)


@chunk_kernel
def leaky_relu_forward_kernel(x, alpha, out):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes out[k] only
        out[k] = x[k] if x[k] > zero else alpha * x[k]


def leaky_relu_backward(dout: object, cache: LeakyReLUCache) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``alpha · dout`` (at exactly 0: alpha, as PyTorch)."""
    dout = _check_backward(dout, cache, LeakyReLUCache, "leaky_relu")
    return _run(leaky_relu_backward_kernel, dout, cache.x, cache.alpha)


@chunk_kernel
def leaky_relu_backward_kernel(dout, x, alpha, dx):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes dx[k] only
        dx[k] = dout[k] if x[k] > zero else alpha * dout[k]


# ---------------------------------------------------------------------------------------------
# ELU: f(x) = x for x > 0, alpha·(exp(x) − 1) otherwise


class ELUCache(NamedTuple):
    x: np.ndarray  # the forward input
    alpha: np.floating  # in x's dtype


def elu_forward(x: object, alpha: float = 1.0, *,
                method: str = "fast") -> tuple[np.ndarray, ELUCache]:
    """ELU: ``out = x`` where ``x > 0``, else ``alpha · (exp(x) − 1)``; alpha > 0.

    x: any shape. out: same shape and dtype. The cache holds ``x`` and ``alpha``.
    """
    check_method(method)
    x = as_float_array(x, "x")
    alpha = x.dtype.type(as_positive_float(alpha, "alpha"))
    return _run(elu_forward_kernel, x, alpha), ELUCache(x, alpha)


@chunk_kernel
def elu_forward_kernel(x, alpha, out):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes out[k] only
        out[k] = x[k] if x[k] > zero else alpha * math.expm1(x[k])  # expm1(x) = exp(x) − 1


def elu_backward(dout: object, cache: ELUCache) -> np.ndarray:
    """``dx = dout`` where ``x > 0``, else ``alpha · exp(x) · dout``."""
    dout = _check_backward(dout, cache, ELUCache, "elu")
    return _run(elu_backward_kernel, dout, cache.x, cache.alpha)


@chunk_kernel
def elu_backward_kernel(dout, x, alpha, dx):
    zero = x.dtype.type(0)
    for k in range(x.size):  # iteration k writes dx[k] only
        dx[k] = dout[k] if x[k] > zero else alpha * math.exp(x[k]) * dout[k]


# ---------------------------------------------------------------------------------------------
# GELU: f(x) = x·Φ(x), Φ the standard normal CDF, Φ(x) = (1 + erf(x/√2)) / 2


class GELUCache(NamedTuple):
    x: np.ndarray  # the forward input


def gelu_forward(x: object, *, method: str = "fast") -> tuple[np.ndarray, GELUCache]:
    """GELU, exact form: ``out = x · Φ(x) = x · (1 + erf(x / √2)) / 2``.

    x: any shape. out: same shape and dtype. The cache holds ``x``.
    """
    check_method(method)
    x = as_float_array(x, "x")
    return _run(gelu_forward_kernel, x), GELUCache(x)


@chunk_kernel
def gelu_forward_kernel(x, out):
    half = x.dtype.type(0.5)
    one = x.dtype.type(1)
    inv_sqrt2 = x.dtype.type(1 / math.sqrt(2))
    for k in range(x.size):  # iteration k writes out[k] only
        out[k] = x[k] * half * (one + math.erf(x[k] * inv_sqrt2))


def gelu_backward(dout: object, cache: GELUCache) -> np.ndarray:
    """``dx = (Φ(x) + x · φ(x)) · dout`` with φ(x) = exp(−x²/2) / √(2π)."""
    dout = _check_backward(dout, cache, GELUCache, "gelu")
    return _run(gelu_backward_kernel, dout, cache.x)


@chunk_kernel
def gelu_backward_kernel(dout, x, dx):
    half = x.dtype.type(0.5)
    one = x.dtype.type(1)
    inv_sqrt2 = x.dtype.type(1 / math.sqrt(2))
    inv_sqrt2pi = x.dtype.type(1 / math.sqrt(2 * math.pi))
    for k in range(x.size):  # iteration k writes dx[k] only
        cdf = half * (one + math.erf(x[k] * inv_sqrt2))
        pdf = inv_sqrt2pi * math.exp(-half * x[k] * x[k])
        dx[k] = (cdf + x[k] * pdf) * dout[k]


# ---------------------------------------------------------------------------------------------
# Sigmoid: f(x) = 1 / (1 + exp(−x))


class SigmoidCache(NamedTuple):
    out: np.ndarray  # the forward output σ(x): the derivative is σ(x)·(1 − σ(x))


def sigmoid_forward(x: object, *, method: str = "fast") -> tuple[np.ndarray, SigmoidCache]:
    """Sigmoid: ``out = 1 / (1 + exp(−x))``, without overflow for large |x|.

    For x < 0 it uses the equal form ``exp(x) / (1 + exp(x))``, so exp never sees a large
    positive argument. x: any shape. out: same shape and dtype. The cache holds ``out``.
    """
    check_method(method)
    x = as_float_array(x, "x")
    out = _run(sigmoid_forward_kernel, x)
    return out, SigmoidCache(out)


@chunk_kernel
def sigmoid_forward_kernel(x, out):
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    for k in range(x.size):  # iteration k writes out[k] only
        if x[k] >= zero:
            out[k] = one / (one + math.exp(-x[k]))
        else:
            e = math.exp(x[k])
            out[k] = e / (one + e)


def sigmoid_backward(dout: object, cache: SigmoidCache) -> np.ndarray:
    """``dx = out · (1 − out) · dout`` with ``out`` = σ(x) from the cache."""
    dout = _check_backward(dout, cache, SigmoidCache, "sigmoid")
    return _run(sigmoid_backward_kernel, dout, cache.out)


@chunk_kernel
def sigmoid_backward_kernel(dout, out, dx):
    one = out.dtype.type(1)
    for k in range(out.size):  # iteration k writes dx[k] only
        dx[k] = out[k] * (one - out[k]) * dout[k]


# ---------------------------------------------------------------------------------------------
# Tanh: f(x) = (exp(x) − exp(−x)) / (exp(x) + exp(−x)), values in (−1, 1)


class TanhCache(NamedTuple):
    out: np.ndarray  # the forward output tanh(x): the derivative is 1 − tanh(x)²


def tanh_forward(x: object, *, method: str = "fast") -> tuple[np.ndarray, TanhCache]:
    """Tanh: ``out = tanh(x)``. x: any shape. out: same shape and dtype. The cache holds ``out``."""
    check_method(method)
    x = as_float_array(x, "x")
    out = _run(tanh_forward_kernel, x)
    return out, TanhCache(out)


@chunk_kernel
def tanh_forward_kernel(x, out):
    for k in range(x.size):  # iteration k writes out[k] only
        out[k] = math.tanh(x[k])


def tanh_backward(dout: object, cache: TanhCache) -> np.ndarray:
    """``dx = (1 − out²) · dout`` with ``out`` = tanh(x) from the cache."""
    dout = _check_backward(dout, cache, TanhCache, "tanh")
    return _run(tanh_backward_kernel, dout, cache.out)


@chunk_kernel
def tanh_backward_kernel(dout, out, dx):
    one = out.dtype.type(1)
    for k in range(out.size):  # iteration k writes dx[k] only
        dx[k] = (one - out[k] * out[k]) * dout[k]
