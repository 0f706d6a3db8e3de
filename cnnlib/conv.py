"""The convolutional layer: Y(i,j) = Σ_m Σ_n Σ_c X(i+m, j+n, c)·W(m,n,c) + b, and its gradients.

Two sets of kernels compute the same numbers:

* ``method="readable"`` — loop nests that read like the lecture's equation
  (``conv2d_forward_kernel``, ``conv2d_dw_kernel``, ``conv2d_dx_kernel``);
* ``method="fast"`` (the default) — im2col in cache-sized pieces: the input values each
  filter tap sees are copied into a row of a matrix, so that the convolution and both gradients
  become matrix products, computed by plain Numba loops that vectorise (no BLAS), with the
  samples split between the threads.

Layout is NCHW; filters are (F, C, KH, KW) as in PyTorch. Notebooks 01 and 05 teach this module.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _conv_fast, _prefetch
from ._check import (
    METHODS,
    as_float_arrays,
    as_int,
    as_pair,
    check_cache,
    check_dout,
    check_method,
    check_ndim,
)
from ._jit import kernel, prange

__all__ = [
    "METHODS",
    "Conv2dCache",
    "conv2d_backward",
    "conv2d_dw_kernel",
    "conv2d_dx_kernel",
    "conv2d_forward",
    "conv2d_forward_kernel",
    "conv_output_size",
]



def _output_size(size: int, k: int, stride: int, padding: int, dilation: int, what: str) -> int:
    """The floor formula, with a sentence a student understands when the kernel does not fit."""
    covers = dilation * (k - 1) + 1
    padded = size + 2 * padding
    if covers > padded:
        raise ValueError(
            f"kernel{what} ({k} with dilation {dilation} covers {covers} pixels) is larger than "
            f"the padded input{what} ({padded} pixels); use a smaller kernel or more padding"
        )
    return (padded - covers) // stride + 1


def conv_output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one axis (PyTorch's floor formula).

    ``out = (size + 2·padding − dilation·(kernel_size − 1) − 1) // stride + 1``; the rows that
    do not fit a whole stride are dropped. Raises ``ValueError`` when the kernel (as dilated)
    is larger than the padded input. Notebook 01 works through examples.
    """
    size = as_int(size, "size", 1)
    kernel_size = as_int(kernel_size, "kernel_size", 1)
    stride = as_int(stride, "stride", 1)
    padding = as_int(padding, "padding", 0)
    dilation = as_int(dilation, "dilation", 1)
    return _output_size(size, kernel_size, stride, padding, dilation, "")


class Conv2dCache(NamedTuple):
    """What ``conv2d_backward`` needs from the forward pass."""

    x: np.ndarray  # (N, C, H, W), the input converted to the common float dtype
    w: np.ndarray  # (F, C, KH, KW)
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out_shape: tuple[int, int, int, int]
    method: str


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    method: str = "fast",
) -> tuple[np.ndarray, Conv2dCache]:
    """2-D convolution (cross-correlation, as in PyTorch) of a batch of images.

    ``out[n,f,i,j] = b[f] + Σ_c Σ_m Σ_q xp[n, c, i·sh + m·dil_h, j·sw + q·dil_w] · w[f,c,m,q]``
    where ``xp`` is ``x`` zero-padded by ``padding`` and (sh, sw), (dil_h, dil_w) are stride and
    dilation. x (N, C, H, W), w (F, C, KH, KW), b (F,) → out (N, F, H_out, W_out) with H_out
    from ``conv_output_size``. stride/padding/dilation: an int or an (h, w) pair.
    Integer images (e.g. uint8) are converted to float; out has the common float dtype.
    ``method="readable"`` runs the loop kernels below instead of im2col (same numbers up to
    rounding). The cache holds x (converted), w, the hyper-parameters and the method. When x and
    w already have the computation's float dtype and are C-contiguous, the cache holds the
    caller's arrays themselves, not copies (as PyTorch saves tensors for backward): changing x
    or w in place between forward and backward changes the gradients that ``conv2d_backward``
    returns. Modify a copy (``x.copy()``) instead. Notebook 01 teaches the forward pass,
    notebook 05 the backward pass.
    """
    x, w, b, cache = _prepare(x, w, b, stride, padding, dilation, method)
    # from an empty cache, a helper process compiles the backward meanwhile (_prefetch.py)
    _prefetch.early("conv2d", conv2d_backward, cache, cache.out_shape, x.dtype,
                    lambda: _backward_kernel(cache.method))
    (sh, sw), (ph, pw), (dil_h, dil_w) = hyper = cache.stride, cache.padding, cache.dilation
    out = np.empty(cache.out_shape, x.dtype)
    if cache.method == "readable":
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        conv2d_forward_kernel(xp, w, b, sh, sw, dil_h, dil_w, out)
    else:
        _conv_fast.forward(x, w, b, *hyper, out)
    return out, cache


def _prepare(x, w, b, stride, padding, dilation, method) -> tuple:
    """Check and convert the forward's arguments: ``(x, w, b, cache)``. The cache needs nothing
    the forward computes, so ``cnnlib._prefetch`` can compile the backward before the forward
    has run."""
    method = check_method(method)
    x, w, b = as_float_arrays(x=x, w=w, b=b)
    # A read-only array (a widget's image, np.broadcast_to) is another type to Numba: one more
    # compilation of each kernel, seconds from a cold cache. A copy costs microseconds.
    x, w, b = (a if a.flags.writeable else a.copy() for a in (x, w, b))
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_ndim(w, 4, "w", "(F, C, KH, KW)")
    N, C, H, W = x.shape
    F, C_w, KH, KW = w.shape
    if C != C_w:
        raise ValueError(f"x has {C} channels but w expects {C_w}")
    if b.shape != (F,):
        raise ValueError(f"b must have shape ({F},), one bias per filter, but it has {b.shape}")
    sh, sw = as_pair(stride, "stride", 1)
    ph, pw = as_pair(padding, "padding", 0)
    dil_h, dil_w = as_pair(dilation, "dilation", 1)
    H_out = _output_size(H, KH, sh, ph, dil_h, " height")
    W_out = _output_size(W, KW, sw, pw, dil_w, " width")
    return x, w, b, Conv2dCache(x, w, (sh, sw), (ph, pw), (dil_h, dil_w),
                                (N, F, H_out, W_out), method)


def _backward_kernel(method: str) -> object:
    """The Numba kernel whose compilation dominates ``conv2d_backward`` with ``method``."""
    if check_method(method) == "readable":
        return conv2d_dw_kernel
    return _conv_fast._fast_backward_kernel


@kernel
def conv2d_forward_kernel(xp, w, b, sh, sw, dil_h, dil_w, out):
    """out[n,f,i,j] = b[f] + Σ_m Σ_q Σ_c xp[n, c, i·sh + m·dil_h, j·sw + q·dil_w]·w[f,c,m,q].

    The lecture's Y(i,j) = Σ X(i+m, j+n, c)·W(m,n,c) + b with its column offset n written q here
    (n is the sample), plus the batch, F filters, stride (sh, sw) and dilation (dil_h, dil_w).
    """
    N, F, H_out, W_out = out.shape
    C, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    for nf in prange(N * F):  # iteration (n, f) owns the output plane out[n, f]
        n, f = nf // F, nf % F
        for i in range(H_out):
            for j in range(W_out):
                y = b[f]
                for m in range(KH):
                    for q in range(KW):
                        for c in range(C):
                            y += xp[n, c, i * sh + m * dil_h, j * sw + q * dil_w] * w[f, c, m, q]
                out[n, f, i, j] = y


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, *, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of the convolution: ``(dx, dw, db)`` for ``dout = ∂L/∂out``.

    ``db[f] = Σ_n Σ_i Σ_j dout[n,f,i,j]``;
    ``dw[f,c,m,q] = Σ_n Σ_i Σ_j dout[n,f,i,j] · xp[n, c, i·sh + m·dil_h, j·sw + q·dil_w]``
    (a convolution of the input with dout as the filter);
    ``dxp[n, c, i·sh + m·dil_h, j·sw + q·dil_w] += dout[n,f,i,j] · w[f,c,m,q]`` over f, i, j,
    m, q, with the padding cut off again (the "full" convolution of dout with the flipped w).
    dout (N, F, H_out, W_out) → dx (N, C, H, W), dw (F, C, KH, KW), db (F,), in the forward's
    dtype. ``cache`` is the second value returned by ``conv2d_forward``. With
    ``need_dx=False`` (a first layer, whose input needs no gradient) dx is skipped and None.
    Notebook 05.
    """
    check_cache(cache, Conv2dCache, "conv2d")
    _prefetch.wait("conv2d")  # a helper's job compiling these kernels (_prefetch.py)
    x, w = cache.x, cache.w
    dout = check_dout(dout, cache.out_shape, x.dtype, "conv2d")
    (sh, sw), (ph, pw), (dil_h, dil_w) = cache.stride, cache.padding, cache.dilation
    if cache.method == "readable":
        H, W = x.shape[2:]
        dw, db = np.empty_like(w), np.empty(w.shape[0], x.dtype)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        conv2d_dw_kernel(dout, xp, sh, sw, dil_h, dil_w, dw, db)
        if not need_dx:
            return None, dw, db
        dxp = np.zeros_like(xp)
        conv2d_dx_kernel(dout, w, sh, sw, dil_h, dil_w, dxp)
        dx = np.ascontiguousarray(dxp[:, :, ph : ph + H, pw : pw + W])
        return dx, dw, db
    return _conv_fast.backward(dout, x, w, cache.stride, cache.padding, cache.dilation, need_dx)


@kernel
def conv2d_dw_kernel(dout, xp, sh, sw, dil_h, dil_w, dw_out, db):
    """dw[f,c,m,q] = Σ_n Σ_i Σ_j dout[n,f,i,j]·xp[n, c, i·sh + m·dil_h, j·sw + q·dil_w].

    The same loops also give db[f] = Σ_n Σ_i Σ_j dout[n,f,i,j].
    """
    N, F, H_out, W_out = dout.shape
    C, KH, KW = dw_out.shape[1], dw_out.shape[2], dw_out.shape[3]
    zero = dout.dtype.type(0)
    for f in prange(F):  # iteration f owns dw[f] and db[f]
        for c in range(C):
            for m in range(KH):
                for q in range(KW):
                    g = zero
                    for n in range(N):
                        for i in range(H_out):
                            for j in range(W_out):
                                g += (
                                    dout[n, f, i, j]
                                    * xp[n, c, i * sh + m * dil_h, j * sw + q * dil_w]
                                )
                    dw_out[f, c, m, q] = g
        g = zero
        for n in range(N):
            for i in range(H_out):
                for j in range(W_out):
                    g += dout[n, f, i, j]
        db[f] = g


@kernel
def conv2d_dx_kernel(dout, w, sh, sw, dil_h, dil_w, dxp):
    """Scatter: dxp[n, c, i·sh + m·dil_h, j·sw + q·dil_w] += dout[n,f,i,j]·w[f,c,m,q].

    Every output value sends its error back to the input pixels it was computed from, weighted
    by the filter tap that joined them. Collected per input pixel instead, the same sum is the
    "full" convolution of dout (with stride − 1 zeros between its entries) with the filter
    rotated by 180° — the identity notebook 05 checks. ``dxp`` must start at zero.
    """
    N, F, H_out, W_out = dout.shape
    C, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    for n in prange(N):  # iteration n owns dxp[n]; += is safe because no other sample writes it
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    for m in range(KH):
                        for q in range(KW):
                            for c in range(C):
                                dxp[n, c, i * sh + m * dil_h, j * sw + q * dil_w] += (
                                    dout[n, f, i, j] * w[f, c, m, q]
                                )
