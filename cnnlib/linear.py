"""The fully connected layer ``y = Wx + b`` as a forward/backward pair (notebook 04).

The wrapper does the matrix products with ``np.matmul`` (BLAS), the fast path, cut into blocks
that BLAS runs on one thread (``_matmul``). ``linear_forward_kernel`` is the same sum written
as loops, ``y_o = Σ_i W[o,i]·x_i + b_o``, for reading next to the lecture's ``y = f(Wx + b)``,
and ``linear_backward_kernel`` its gradients; ``method="readable"`` runs them, and the tests
check both methods agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._check import (
    as_float_arrays,
    check_cache,
    check_dout,
    check_method,
    check_ndim,
)
from ._jit import kernel, prange


class LinearCache(NamedTuple):
    x: np.ndarray  # (N, D_in), the forward input
    w: np.ndarray  # (D_out, D_in)
    method: str = "fast"


def linear_forward(x: object, w: object, b: object, *,
                   method: str = "fast") -> tuple[np.ndarray, LinearCache]:
    """Fully connected layer: ``out = x @ w.T + b``, ``out[n, o] = Σ_i w[o, i]·x[n, i] + b[o]``.

    x: (N, D_in), one sample per row (flatten feature maps first: ``x.reshape(N, -1)``).
    w: (D_out, D_in), PyTorch's layout. b: (D_out,). out: (N, D_out), in the common float
    dtype of x, w, b. The cache holds ``x`` and ``w``. ``method="readable"`` runs
    ``linear_forward_kernel`` (and the backward ``linear_backward_kernel``) instead of BLAS.
    """
    method = check_method(method)
    x, w, b = as_float_arrays(x=x, w=w, b=b)
    dtype = x.dtype
    check_ndim(w, 2, "w", "(D_out, D_in)")
    _check_x(x, w)
    if b.shape != (w.shape[0],):
        raise ValueError(
            f"b has shape {b.shape} but w has {w.shape[0]} output features, "
            f"so b must have shape ({w.shape[0]},)"
        )
    if method == "readable":
        out = np.empty((x.shape[0], w.shape[0]), dtype)
        linear_forward_kernel(x, w, b, out)
    else:
        out = _matmul(x, w.T) + b  # (N, D_out)
    return out, LinearCache(x, w, method)


def _check_x(x: np.ndarray, w: np.ndarray) -> None:
    """x must be (N, D_in) with D_in = w.shape[1]; say how to get there when it is not."""
    d_out, d_in = w.shape
    if x.ndim != 2:
        if x.ndim == 1:
            hint = "For a single sample add a batch axis: x[None]."
        else:
            features = int(np.prod(x.shape[1:]))
            hint = (
                f"Flatten each sample first: x.reshape(N, -1) (the Flatten layer) gives "
                f"{features} features per sample."
            )
        raise ValueError(
            f"x must have 2 dimensions (N, D_in), but it has {x.ndim} (shape {x.shape}). {hint}"
        )
    if x.shape[1] != d_in:
        hint = ""
        if x.shape[1] == d_out:
            hint = (
                f" w looks transposed: cnnlib stores linear weights as (D_out, D_in), "
                f"so pass w.T (shape {(d_in, d_out)})."
            )
        raise ValueError(f"x has {x.shape[1]} features but w expects {d_in}.{hint}")


# NumPy's BLAS (OpenBLAS) runs a product with M·N·K below this on the calling thread only
_ONE_THREAD_MNK = 2**19


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, as a few products small enough for BLAS to use one thread each.

    BLAS keeps its own pool of threads, separate from Numba's. When a product is large enough to
    wake it, the two pools compete for the cores: on a busy 2-core machine the backward pass of
    ``Linear(2048, 10)`` took 30 ms instead of 0.1 ms (notebook 07). The layer's products are
    small, so one thread loses little. The longer side of the result is cut into blocks.
    """
    m, k = a.shape
    n = b.shape[1]
    if m * n * k < _ONE_THREAD_MNK:
        return np.matmul(a, b)
    out = np.empty((m, n), np.result_type(a, b))
    if m >= n:
        rows = max(1, (_ONE_THREAD_MNK - 1) // (n * k))
        for r in range(0, m, rows):
            np.matmul(a[r : r + rows], b, out=out[r : r + rows])
    else:
        cols = max(1, (_ONE_THREAD_MNK - 1) // (m * k))
        for c in range(0, n, cols):
            np.matmul(a, b[:, c : c + cols], out=out[:, c : c + cols])
    return out


@kernel
def linear_forward_kernel(x, w, b, out):
    """``out[n, o] = Σ_i w[o, i]·x[n, i] + b[o]``; x (N, D_in), w (D_out, D_in), out (N, D_out)."""
    n_samples, d_in = x.shape
    d_out = w.shape[0]
    for n in prange(n_samples):  # sample n writes its own row out[n]
        for o in range(d_out):
            y = b[o]
            for i in range(d_in):
                y += w[o, i] * x[n, i]
            out[n, o] = y


def linear_backward(dout: object, cache: LinearCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``out = x @ w.T + b``: ``dx = dout @ w``, ``dw = dout.T @ x``,
    ``db = Σ_n dout[n]``.

    dout: (N, D_out). dx: (N, D_in), dw: (D_out, D_in), db: (D_out,), in the forward's dtype.
    """
    check_cache(cache, LinearCache, "linear")
    x, w, method = cache
    dout = check_dout(dout, (x.shape[0], w.shape[0]), x.dtype, "linear")
    if method == "readable":
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], x.dtype)
        linear_backward_kernel(dout, x, w, dx, dw, db)
        return dx, dw, db
    dx = _matmul(dout, w)  # (N, D_in)
    dw = _matmul(dout.T, x)  # (D_out, D_in)
    db = dout.sum(axis=0)  # (D_out,)
    return dx, dw, db


@kernel
def linear_backward_kernel(dout, x, w, dx, dw, db):
    """``dx[n, i] = Σ_o dout[n, o]·w[o, i]``, ``dw[o, i] = Σ_n dout[n, o]·x[n, i]``,
    ``db[o] = Σ_n dout[n, o]``."""
    n_samples, d_in = x.shape
    d_out = w.shape[0]
    zero = x.dtype.type(0)
    for n in prange(n_samples):  # sample n writes its own row dx[n]
        for i in range(d_in):
            g = zero
            for o in range(d_out):
                g += dout[n, o] * w[o, i]
            dx[n, i] = g
    for o in prange(d_out):  # output feature o writes its own row dw[o] and db[o]
        for i in range(d_in):
            g = zero
            for n in range(n_samples):
                g += dout[n, o] * x[n, i]
            dw[o, i] = g
        g = zero
        for n in range(n_samples):
            g += dout[n, o]
        db[o] = g
