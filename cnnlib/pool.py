"""Pooling layers: max and average pooling over each channel's H×W plane (lecture §三, §七.2).

With window KH×KW, stride (sh, sw) and padding (ph, pw), output pixel (i, j) looks at
x[n, c, i·sh − ph + m, j·sw − pw + q] for 0 ≤ m < KH, 0 ≤ q < KW. Output size by the floor
formula H_out = (H + 2·ph − KH) // sh + 1; rows/columns that do not fit are dropped.
Padding counts as −∞ for max pooling (a padded position never wins) and as 0 for average
pooling, whose divisor is always KH·KW (PyTorch's default, ``count_include_pad=True``).
The kernels skip the window positions that fall in the padding instead of padding a copy of x.
Max pooling with 2×2 windows, stride 2 and no padding (nearly every CNN in the course) runs
unrolled twins of the general kernels, several times faster and tested to give the same numbers.
Notebook 02 teaches the forward passes, notebook 05 the backward passes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._check import (
    as_float_array,
    as_pair,
    check_cache,
    check_dout,
    check_method,
    check_ndim,
    check_pool_padding,
)
from ._jit import chunk_kernel, kernel, prange, serial_kernel
from ._loops import _chunks, _in_chunks, _in_sample_pieces

__all__ = [
    "AvgPool2dCache",
    "MaxPool2dCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
]


def _pool_args(
    x: object, kernel_size: object, stride: object, padding: object
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """Checked (x, kernel_size, stride, padding, output shape) shared by both poolings."""
    x = as_float_array(x, "x")
    if not x.flags.writeable:  # a read-only array would compile every kernel once more
        x = x.copy()
    check_ndim(x, 4, "x", "(N, C, H, W)")
    KH, KW = as_pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = (KH, KW) if stride is None else as_pair(stride, "stride", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    check_pool_padding((ph, pw), (KH, KW))
    N, C, H, W = x.shape
    if H + 2 * ph < KH or W + 2 * pw < KW:
        raise ValueError(
            f"kernel_size {(KH, KW)} is larger than the input: x is {H}×{W}, "
            f"{H + 2 * ph}×{W + 2 * pw} with padding {(ph, pw)}; use a smaller kernel_size"
        )
    out_shape = (N, C, (H + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1)
    return x, (KH, KW), (sh, sw), (ph, pw), out_shape


# --------------------------------------------------------------------------- max pooling


class MaxPool2dCache(NamedTuple):
    """What ``max_pool2d_backward`` needs: the input's shape and dtype and, per output pixel,
    ``argmax[n, c, i, j] = h·W + w``, the position in x[n, c] of its window's maximum."""

    x_shape: tuple[int, int, int, int]
    dtype: np.dtype
    argmax: np.ndarray
    plain_2x2: bool = False  # 2×2 windows, stride 2, no padding: the unrolled kernels ran


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    *,
    method: str = "fast",
) -> tuple[np.ndarray, MaxPool2dCache]:
    """Max pooling: out[n, c, i, j] = max_{m, q} x[n, c, i·sh − ph + m, j·sw − pw + q].

    x: (N, C, H, W); kernel_size, stride (None = kernel_size), padding: int or (h, w) pair,
    padding ≤ kernel_size // 2 and treated as −∞. Returns out (N, C, H_out, W_out), same float
    dtype as x (integer x becomes float64), and a ``MaxPool2dCache`` holding ``argmax``, the
    first maximum of each window in row-major order (a NaN counts as the maximum).
    ``method="readable"`` always runs ``max_pool2d_kernel``; ``"fast"`` runs an unrolled twin for
    2×2 windows with stride 2 and no padding (same numbers).
    Notebook 02 (lecture §三 プーリング層); the backward pass in notebook 05.
    """
    method = check_method(method)
    x, (KH, KW), (sh, sw), (ph, pw), out_shape = _pool_args(x, kernel_size, stride, padding)
    plain_2x2 = method == "fast" and _is_plain_2x2(KH, KW, sh, sw, ph, pw)
    out = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=np.int64)
    if plain_2x2:
        _max_pool2d_2x2_kernel(x, out, argmax)  # the common case, unrolled: same numbers
    else:
        max_pool2d_kernel(x, KH, KW, sh, sw, ph, pw, out, argmax)
    return out, MaxPool2dCache(x.shape, x.dtype, argmax, plain_2x2)


def _is_plain_2x2(KH: int, KW: int, sh: int, sw: int, ph: int, pw: int) -> bool:
    """2×2 windows, stride 2, no padding: the pooling of nearly every CNN in the course."""
    return (KH, KW, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0)


@kernel
def max_pool2d_kernel(x, KH, KW, sh, sw, ph, pw, out, argmax):
    N, C, H, W = x.shape
    H_out, W_out = out.shape[2], out.shape[3]
    for nc in prange(N * C):  # each iteration owns the plane (n, c) of out and argmax
        n, c = nc // C, nc % C
        for i in range(H_out):
            for j in range(W_out):
                h0, w0 = i * sh - ph, j * sw - pw  # window corner; may lie in the padding
                # only the window rows m and columns q inside x are visited: padding never wins
                m_lo, m_hi = max(0, -h0), min(KH, H - h0)
                q_lo, q_hi = max(0, -w0), min(KW, W - w0)
                best = x[n, c, h0 + m_lo, w0 + q_lo]
                best_at = (h0 + m_lo) * W + (w0 + q_lo)
                saw_nan = False
                for m in range(m_lo, m_hi):
                    for q in range(q_lo, q_hi):
                        v = x[n, c, h0 + m, w0 + q]  # Y(i, j) = max_{m, q} X(i + m, j + q)
                        if v > best:  # ">" not ">=": on a tie the first maximum (row-major) stays
                            best = v
                            best_at = (h0 + m) * W + (w0 + q)
                        saw_nan |= np.isnan(v)
                if saw_nan:  # NaN fails every ">", so look for it apart: the first NaN wins
                    best_at = _first_nan_at(x[n, c], h0 + m_lo, h0 + m_hi, w0 + q_lo, w0 + q_hi)
                    best = x.dtype.type(np.nan)
                out[n, c, i, j] = best
                argmax[n, c, i, j] = best_at


# The 2×2 twins run planes (n, c) in one chunk per thread on the thread pool of _loops.py:
# serial functions compile several times faster than a prange loop (issue 11, cold start).
_PER_THREAD = 16384  # values of x: fewer per thread, and waking a thread costs more than it saves


def _plane_chunks(x: np.ndarray) -> int:
    return _chunks(x.shape[0] * x.shape[1], x.size, _PER_THREAD)


def _max_pool2d_2x2_kernel(x, out, argmax):
    """``max_pool2d_kernel`` for 2×2 windows with stride 2 and no padding: ``_max_2x2_planes``."""
    T = _plane_chunks(x)
    _in_chunks(_max_2x2_planes, T, x, out, argmax, T)


@chunk_kernel
def _max_2x2_planes(x, out, argmax, T, t):
    """``max_pool2d_kernel`` for 2×2 windows with stride 2 and no padding, written out, on the
    planes (n, c) of chunk t of T.

    The loops over the window (m, q) are unrolled and no window can reach the padding, which
    makes this about ten times faster than the general kernel; the tests check both agree.
    """
    N, C, W = x.shape[0], x.shape[1], x.shape[3]
    H_out, W_out = out.shape[2], out.shape[3]
    for nc in range(t * N * C // T, (t + 1) * N * C // T):  # chunk t owns these planes
        n, c = nc // C, nc % C
        for i in range(H_out):
            for j in range(W_out):
                h, w = 2 * i, 2 * j
                a, b = x[n, c, h, w], x[n, c, h, w + 1]  # the window in row-major order
                d, e = x[n, c, h + 1, w], x[n, c, h + 1, w + 1]
                best, best_at = a, h * W + w
                if b > best:  # ">": on a tie the first maximum stays
                    best, best_at = b, h * W + w + 1
                if d > best:
                    best, best_at = d, (h + 1) * W + w
                if e > best:
                    best, best_at = e, (h + 1) * W + w + 1
                if np.isnan(a + b + d + e):  # NaN if one of them is (or for inf − inf)
                    nan_at = _first_nan_at(x[n, c], h, h + 2, w, w + 2)
                    if nan_at >= 0:  # NaN fails every ">": the first NaN wins
                        best, best_at = x.dtype.type(np.nan), nan_at
                out[n, c, i, j] = best
                argmax[n, c, i, j] = best_at


@serial_kernel
def _first_nan_at(plane, h_lo, h_hi, w_lo, w_hi):
    """Flat index h·W + w of the first NaN (row-major) in plane[h_lo:h_hi, w_lo:w_hi], or −1."""
    for h in range(h_lo, h_hi):
        for w in range(w_lo, w_hi):
            if np.isnan(plane[h, w]):
                return h * plane.shape[1] + w
    return -1


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    """dx[n, c, h, w] = Σ of dout[n, c, i, j] over the windows (i, j) whose maximum is at (h, w).

    dout: (N, C, H_out, W_out); cache from ``max_pool2d_forward``. Returns dx (N, C, H, W):
    each window sends its whole upstream value to one position, so with overlapping windows
    (stride < kernel_size) a position that wins several windows collects all of them.
    """
    check_cache(cache, MaxPool2dCache, "max_pool2d")
    dout = check_dout(dout, cache.argmax.shape, cache.dtype, "max_pool2d")
    if cache.plain_2x2:
        dx = np.empty(cache.x_shape, dtype=cache.dtype)  # every element is written
        _max_pool2d_2x2_backward_kernel(dout, cache.argmax, dx)
    else:
        dx = np.zeros(cache.x_shape, dtype=cache.dtype)
        max_pool2d_backward_kernel(dout, cache.argmax, dx)
    return dx


@kernel
def max_pool2d_backward_kernel(dout, argmax, dx):
    N, C, H_out, W_out = dout.shape
    W = dx.shape[3]
    # each iteration owns the plane dx[n, c]: overlapping windows "+=" into the same element
    # from different (i, j), which is race-free because no other iteration touches that plane
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for i in range(H_out):
            for j in range(W_out):
                at = argmax[n, c, i, j]
                dx[n, c, at // W, at % W] += dout[n, c, i, j]


def _max_pool2d_2x2_backward_kernel(dout, argmax, dx):
    """``max_pool2d_backward_kernel`` for 2×2 windows, stride 2, no padding:
    ``_max_2x2_backward_planes``."""
    T = _plane_chunks(dx)
    _in_chunks(_max_2x2_backward_planes, T, dout, argmax, dx, T)


@chunk_kernel
def _max_2x2_backward_planes(dout, argmax, dx, T, t):
    """``max_pool2d_backward_kernel`` for 2×2 windows, stride 2, no padding, on the planes of
    chunk t of T. The windows do not overlap, so each window writes its four values of dx
    once: dout[n, c, i, j] where ``argmax`` points, 0 at the other three. An odd last row or
    column belongs to no window and gets 0. Written as selects without branches, the loop over
    a pair of rows compiles to vector code (2.7 times faster than zeroing the rows and then
    writing one value per window)."""
    N, C, H_out, W_out = dout.shape
    H, W = dx.shape[2], dx.shape[3]
    zero = dx.dtype.type(0)
    for nc in range(t * N * C // T, (t + 1) * N * C // T):  # chunk t owns these planes dx[n, c]
        n, c = nc // C, nc % C
        for i in range(H_out):
            top, bottom = dx[n, c, 2 * i], dx[n, c, 2 * i + 1]
            at, g = argmax[n, c, i], dout[n, c, i]
            for j in range(W_out):
                d = at[j] - (2 * i * W + 2 * j)  # where in the window: 0, 1, W or W + 1
                gj = g[j]  # loaded once: dx might overlap dout, as far as the compiler knows
                top[2 * j] = gj if d == 0 else zero
                top[2 * j + 1] = gj if d == 1 else zero
                bottom[2 * j] = gj if d == W else zero
                bottom[2 * j + 1] = gj if d == W + 1 else zero
            for w in range(2 * W_out, W):
                top[w] = zero
                bottom[w] = zero
        for h in range(2 * H_out, H):
            for w in range(W):
                dx[n, c, h, w] = zero


# ----------------------------------------------------------------------- average pooling


class AvgPool2dCache(NamedTuple):
    """What ``avg_pool2d_backward`` needs: the input's shape and dtype and the window."""

    x_shape: tuple[int, int, int, int]
    dtype: np.dtype
    out_shape: tuple[int, int, int, int]
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    *,
    method: str = "fast",
) -> tuple[np.ndarray, AvgPool2dCache]:
    """Average pooling: out[n, c, i, j] = Σ_{m, q} x[n, c, i·sh − ph + m, j·sw − pw + q] / (KH·KW).

    x: (N, C, H, W); kernel_size, stride (None = kernel_size), padding: int or (h, w) pair,
    padding ≤ kernel_size // 2 and treated as zeros that still count in the divisor KH·KW.
    Returns out (N, C, H_out, W_out) in x's float dtype (integer x becomes float64) and an
    ``AvgPool2dCache`` (shapes, dtype, window; x itself is not needed). Both methods run
    ``avg_pool2d_kernel``, which is already the lecture's loop.
    Notebook 02 (lecture §三 プーリング層); the backward pass in notebook 05.
    """
    check_method(method)
    x, (KH, KW), (sh, sw), (ph, pw), out_shape = _pool_args(x, kernel_size, stride, padding)
    out = np.empty(out_shape, dtype=x.dtype)
    args = (x, KH, KW, sh, sw, ph, pw, x.dtype.type(KH * KW), out)
    _in_sample_pieces(avg_pool2d_kernel, args, (0, 8), _PER_THREAD)
    cache = AvgPool2dCache(x.shape, x.dtype, out_shape, (KH, KW), (sh, sw), (ph, pw))
    return out, cache


@chunk_kernel
def avg_pool2d_kernel(x, KH, KW, sh, sw, ph, pw, area, out):
    N, C, H, W = x.shape
    H_out, W_out = out.shape[2], out.shape[3]
    # a serial loop (it compiles in a fraction of a prange loop's time); the samples are
    # independent, so avg_pool2d_forward runs a piece of the batch on each thread
    for nc in range(N * C):  # each iteration owns the plane (n, c) of out
        n, c = nc // C, nc % C
        for i in range(H_out):
            for j in range(W_out):
                h0, w0 = i * sh - ph, j * sw - pw  # window corner; may lie in the padding
                total = x.dtype.type(0)  # the padded positions add 0, so they are skipped
                for m in range(max(0, -h0), min(KH, H - h0)):
                    for q in range(max(0, -w0), min(KW, W - w0)):
                        total += x[n, c, h0 + m, w0 + q]  # Y(i, j) = Σ X(i + m, j + q) / area
                out[n, c, i, j] = total / area


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    """dx[n, c, h, w] = Σ of dout[n, c, i, j] / (KH·KW) over the windows (i, j) containing (h, w).

    dout: (N, C, H_out, W_out); cache from ``avg_pool2d_forward``. Returns dx (N, C, H, W):
    each window spreads its upstream value evenly over its KH·KW positions (the part that
    falls on the padding is dropped).
    """
    check_cache(cache, AvgPool2dCache, "avg_pool2d")
    dout = check_dout(dout, cache.out_shape, cache.dtype, "avg_pool2d")
    (KH, KW), (sh, sw), (ph, pw) = cache.kernel_size, cache.stride, cache.padding
    dx = np.zeros(cache.x_shape, dtype=cache.dtype)
    args = (dout, KH, KW, sh, sw, ph, pw, cache.dtype.type(KH * KW), dx)
    _in_sample_pieces(avg_pool2d_backward_kernel, args, (0, 8), _PER_THREAD)
    return dx


@chunk_kernel
def avg_pool2d_backward_kernel(dout, KH, KW, sh, sw, ph, pw, area, dx):
    N, C, H_out, W_out = dout.shape
    H, W = dx.shape[2], dx.shape[3]
    # each iteration owns the plane dx[n, c]: overlapping windows "+=" into the same element
    # from different (i, j), which is race-free because no other iteration touches that plane
    # (avg_pool2d_backward runs a piece of the batch on each thread)
    for nc in range(N * C):
        n, c = nc // C, nc % C
        for i in range(H_out):
            for j in range(W_out):
                h0, w0 = i * sh - ph, j * sw - pw
                share = dout[n, c, i, j] / area
                for m in range(max(0, -h0), min(KH, H - h0)):
                    for q in range(max(0, -w0), min(KW, W - w0)):
                        dx[n, c, h0 + m, w0 + q] += share
