"""The convolutional layer: Y(i,j) = Σ_m Σ_n Σ_c X(i+m, j+n, c)·W(m,n,c) + b, and its gradients.

Two sets of kernels compute the same numbers:

* ``method="readable"`` — loop nests that read like the lecture's equation
  (``_conv2d_forward_kernel``, ``_conv2d_dw_kernel``, ``_conv2d_dx_kernel``);
* ``method="fast"`` (the default) — im2col in cache-sized pieces: the input values each
  filter tap sees are copied into a row of a matrix, so that the convolution and both gradients
  become matrix products, computed by plain Numba loops that vectorise (no BLAS), with the
  samples split between the threads.

Layout is NCHW; filters are (F, C, KH, KW) as in PyTorch. Notebooks 01 and 05 teach this module.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import get_num_threads

from ._check import (
    as_float_array,
    as_int,
    as_pair,
    check_cache,
    check_dout,
    check_ndim,
    float_dtype,
)
from ._jit import kernel, prange, serial_kernel, sum_kernel

__all__ = ["Conv2dCache", "conv2d_backward", "conv2d_forward", "conv_output_size"]

METHODS = ("fast", "readable")


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
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    dtype = float_dtype(x, w, b)
    x = as_float_array(x, "x", dtype)
    w = as_float_array(w, "w", dtype)
    b = as_float_array(b, "b", dtype)
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
    out = np.empty((N, F, H_out, W_out), dtype)
    hyper = (sh, sw), (ph, pw), (dil_h, dil_w)
    if method == "readable":
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        _conv2d_forward_kernel(xp, w, b, sh, sw, dil_h, dil_w, out)
    else:
        # blocks of output rows whose im2col matrix fits in a core's cache (~256 kB)
        rows = min(H_out, max(1, 2**18 // max(1, C * KH * KW * W_out * x.itemsize)))
        items = N * -(-H_out // rows)
        chunks = min(items, get_num_threads())  # the items are split into one chunk per thread
        _fast_forward_kernel(
            x, w.reshape(F, -1), b, KH, KW, sh, sw, ph, pw, dil_h, dil_w, rows, chunks,
            out.reshape(N, F, H_out * W_out), W_out,
        )  # fmt: skip
    return out, Conv2dCache(x, w, *hyper, out.shape, method)


@kernel
def _conv2d_forward_kernel(xp, w, b, sh, sw, dil_h, dil_w, out):
    """out[n,f,i,j] = b[f] + Σ_m Σ_q Σ_c xp[n, c, i·sh + m·dil_h, j·sw + q·dil_w]·w[f,c,m,q]."""
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
    x, w = cache.x, cache.w
    dout = check_dout(dout, cache.out_shape, x.dtype, "conv2d")
    (sh, sw), (ph, pw), (dil_h, dil_w) = cache.stride, cache.padding, cache.dilation
    if cache.method == "readable":
        H, W = x.shape[2:]
        dw, db = np.empty_like(w), np.empty(w.shape[0], x.dtype)
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        _conv2d_dw_kernel(dout, xp, sh, sw, dil_h, dil_w, dw, db)
        if not need_dx:
            return None, dw, db
        dxp = np.zeros_like(xp)
        _conv2d_dx_kernel(dout, w, sh, sw, dil_h, dil_w, dxp)
        dx = np.ascontiguousarray(dxp[:, :, ph : ph + H, pw : pw + W])
        return dx, dw, db
    N, F, H_out, W_out = dout.shape
    chunks = min(N, get_num_threads())  # the samples are split into one chunk per thread
    dx = np.empty_like(x) if need_dx else np.empty((0, *x.shape[1:]), x.dtype)
    dw_parts = np.empty((chunks, F, w[0].size), x.dtype)  # one partial sum per chunk
    db_parts = np.empty((chunks, F), x.dtype)
    w2t = np.ascontiguousarray(w.reshape(F, -1).T)  # (C·KH·KW, F)
    _fast_backward_kernel(
        dout.reshape(N, F, H_out * W_out), W_out, x, w2t, *w.shape[2:], sh, sw, ph, pw,
        dil_h, dil_w, need_dx, dx, dw_parts, db_parts,
    )  # fmt: skip
    dw, db = dw_parts.sum(axis=0).reshape(w.shape), db_parts.sum(axis=0)
    return (dx if need_dx else None), dw, db


@kernel
def _conv2d_dw_kernel(dout, xp, sh, sw, dil_h, dil_w, dw_out, db):
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
def _conv2d_dx_kernel(dout, w, sh, sw, dil_h, dil_w, dxp):
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


# ---- the fast method ---------------------------------------------------------------------
#
# Every tap k = (c, m, q) of the filter and every output position p = (i, j) become one offset
# each into the zero-padded sample flattened to 1-D: the input value that tap k sees at output
# position p is xp[offs[k] + base[p]] (offs from _taps, base from _windows). Gathering those
# values into a matrix (im2col) turns each sample's convolution and gradients into matrix
# products, which _gemm computes with plain loops that vectorise. Samples are split into one
# chunk per thread, so the padded copy and the matrices of a sample stay in that core's cache,
# and only Numba's threads run (a BLAS thread pool would compete with them for the 2 cores).
#
# With stride 1 the backward keeps dout in "wide" rows of Wp values (whole padded rows; the
# Wp − W_out extra columns are zero in dout_rows and so add nothing). Then base[p] = p: the input
# values tap k sees form the contiguous run xp[offs[k] : offs[k] + L], so dw needs no patches
# matrix (each dw[f, k] is a dot product of a dout row with that run, _gemm_dots), and col2im
# for dx becomes one shifted, contiguous add per tap.


@kernel
def _fast_forward_kernel(x, w2, b, KH, KW, sh, sw, ph, pw, dil_h, dil_w, rows, T, out, W_out):
    """out[n] = b + w2 @ cols_n with cols_n[k, p] = xp_n[offs[k] + base[p]], in blocks of rows."""
    N, C, H, W = x.shape
    F, K, P = w2.shape[0], w2.shape[1], out.shape[2]  # out is (N, F, H_out·W_out)
    H_out, Hp, Wp = P // W_out, H + 2 * ph, W + 2 * pw
    offs = _taps(C, KH, KW, Hp, Wp, dil_h, dil_w)
    base_u = _windows(H_out, W_out, Wp, sh, sw).astype(np.uint64)
    blocks = -(-H_out // rows)  # work item = (sample n, block of output rows)
    items = N * blocks
    for t in prange(T):  # chunk t owns the output rows of its items; the scratch is its own
        xp = np.zeros(C * Hp * Wp + (KW - 1) * dil_w + _RUN, x.dtype)
        cols = _padded_zeros(K, rows * W_out + _RUN, x.dtype)  # (K, rows·W_out), spill room
        out_rows = _padded_zeros(F, rows * W_out + _RUN, x.dtype)  # (F, rows·W_out)
        padded = -1  # the sample now in xp
        for item in range(t * items // T, (t + 1) * items // T):
            n, i0 = item // blocks, item % blocks * rows
            i1 = min(H_out, i0 + rows)
            if n != padded:
                _pad_into(x[n], ph, pw, Hp, Wp, xp)
                padded = n
            if sw == 1:
                _gather_row_runs(xp[i0 * sh * Wp :], offs, sh * Wp, i1 - i0, W_out, cols)
            else:
                _gather(xp, offs, base_u[i0 * W_out : i1 * W_out], cols)
            for f in range(F):
                _fill(out_rows[f], b[f])
            _gemm(w2, cols, out_rows)  # (F, K) @ (K, rows·W_out)
            for f in range(F):
                _copy(out_rows[f, : (i1 - i0) * W_out], out[n, f, i0 * W_out : i1 * W_out])


@kernel
def _fast_backward_kernel(
    dout, W_out, x, w2t, KH, KW, sh, sw, ph, pw, dil_h, dil_w, need_dx, dx, dw_parts, db_parts
):  # fmt: skip
    """Per sample: [dw | db] += dout_n @ [patches_n | 1] and dx_n = col2im(w2ᵀ @ dout_n).

    With stride 1, dw[f, k] += Σ_p dout_rows[f, p]·xp_n[offs[k] + p] reads xp_n in place and
    db[f] += Σ_p dout_rows[f, p].
    """
    N, F, P = dout.shape  # dout is (N, F, H_out·W_out), w2t is (C·KH·KW, F)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    H_out, Hp, Wp, K = P // W_out, H + 2 * ph, W + 2 * pw, w2t.shape[0]
    offs = _taps(C, KH, KW, Hp, Wp, dil_h, dil_w)
    base = _windows(H_out, W_out, Wp, sh, sw)
    wide = sh == 1 and sw == 1
    offs_u, base_u = offs.astype(np.uint64), base.astype(np.uint64)
    runs = dil_w == 1 and KW <= _RUN
    row_len = Wp if wide else W_out
    L = H_out * row_len
    F4, K4 = -(-F // 4) * 4, -(-K // 4) * 4  # _gemm_dots works in blocks of 4 × 4
    offs4 = np.zeros(K4, np.int64)  # the taps past K repeat offset 0; their sums are dropped
    for k in range(K):
        offs4[k] = offs[k]
    zero = x.dtype.type(0)
    T = dw_parts.shape[0]
    for t in prange(T):  # chunk t owns dx[n] of its samples, dw_parts[t] and db_parts[t]
        xp = np.zeros(C * Hp * Wp + (KW - 1) * dil_w + _RUN, x.dtype)
        dxp = np.zeros_like(xp)
        # (P, K + _RUN + 1): one receptive field per row, then spill room, then a column of 1s
        # (so that the product with dout also sums dout, which is db); strides > 1 only
        patches = _padded_zeros(0 if wide else P, K + _RUN + 1, x.dtype)
        patches[:, K + _RUN] = 1
        dout_rows = _padded_zeros(F4, L, x.dtype)  # (F4, L), zero in rows ≥ F, dropped columns
        dcols = _padded_zeros(K, L, x.dtype)  # (K, L)
        dw_db = _padded_zeros(F4, K + _RUN + 1, x.dtype)  # dw in columns < K4, db in K + _RUN
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_into(x[n], ph, pw, Hp, Wp, xp)
            if wide or need_dx:
                for f in range(F):
                    for i in range(H_out):
                        row = dout[n, f, i * W_out : (i + 1) * W_out]
                        _copy(row, dout_rows[f, i * row_len : i * row_len + W_out])
            if wide:  # tap k's values are the run xp[offs[k] : offs[k] + L]: read in place
                _gemm_dots(dout_rows, L, xp, offs4, dw_db)
                for f in range(F):
                    dw_db[f, K + _RUN] += _sum(dout_rows[f])
            else:
                if runs:
                    _gather_runs(xp, base, offs_u[::KW], KW, patches)
                else:
                    _gather(xp, base, offs_u, patches)
                _gemm(dout[n], patches, dw_db)  # (F, P) @ (P, K + _RUN + 1)
            if not need_dx:
                continue
            for k in range(K):
                _fill(dcols[k], zero)
            _gemm(w2t, dout_rows, dcols)  # (K, F) @ (F, L)
            _fill(dxp, zero)
            if wide:
                for k in range(K):
                    _add(dcols[k, :L], dxp[offs[k] : offs[k] + L])
            else:
                for k in range(K):
                    _scatter_add(dcols[k, :P], base_u, dxp[offs[k] :])
            for c in range(C):
                for y in range(H):
                    start = (c * Hp + y + ph) * Wp + pw
                    _copy(dxp[start : start + W], dx[n, c, y])
        for f in range(F):
            _copy(dw_db[f, :K], dw_parts[t, f])
            db_parts[t, f] = dw_db[f, K + _RUN]


@serial_kernel
def _taps(C, KH, KW, Hp, Wp, dil_h, dil_w):
    """offs[k]: where tap k = (c, m, q) reads, relative to its window, in the padded sample."""
    offs = np.empty(C * KH * KW, np.int64)
    for c in range(C):
        for m in range(KH):
            for q in range(KW):
                offs[(c * KH + m) * KW + q] = (c * Hp + m * dil_h) * Wp + q * dil_w
    return offs


@serial_kernel
def _windows(H_out, W_out, Wp, sh, sw):
    """base[p]: where the window of output position p = (i, j) starts in the padded plane."""
    base = np.empty(H_out * W_out, np.int64)
    for i in range(H_out):
        for j in range(W_out):
            base[i * W_out + j] = i * sh * Wp + j * sw
    return base


@serial_kernel
def _padded_zeros(rows, cols, dtype):
    """A zeroed (rows, ≥cols) matrix, rows padded to a multiple of 16 values (whole vectors)."""
    return np.zeros((rows, -(-cols // 16) * 16), dtype)


@serial_kernel
def _pad_into(xn, ph, pw, Hp, Wp, xp):
    """Copy the sample xn (C, H, W) into the flattened padded buffer; the border stays 0."""
    C, H, W = xn.shape
    for c in range(C):
        for y in range(H):
            start = (c * Hp + y + ph) * Wp + pw
            _copy(xn[c, y], xp[start : start + W])


# Small loops over 1-D views: indexing a view with the loop variable alone lets the compiler
# emit vector code (an index such as xp[o + s] needs a negative-index check that prevents it).


@serial_kernel
def _copy(src, dst):
    for s in range(src.size):
        dst[s] = src[s]


@serial_kernel
def _add(src, dst):
    for s in range(src.size):
        dst[s] += src[s]


@serial_kernel
def _fill(dst, value):
    for s in range(dst.size):
        dst[s] = value


# The helpers below index with unsigned integers: Numba then skips its negative-index check,
# which would otherwise stop neighbouring loads from becoming one vector load.


@serial_kernel
def _gather(xp, row_offs, col_offs, out):
    """out[r, s] = xp[row_offs[r] + col_offs[s]] (col_offs unsigned): im2col or its transpose."""
    for r in range(row_offs.size):
        src = xp[row_offs[r] :]
        dst = out[r]
        for s in range(col_offs.size):
            dst[s] = src[col_offs[s]]


@serial_kernel
def _scatter_add(src, idx, dst):
    """dst[idx[s]] += src[s] (idx unsigned): col2im for one tap when the stride is not 1."""
    for s in range(src.size):
        dst[idx[s]] += src[s]


_RUN = 8  # _gather_runs moves eight values at a time


@serial_kernel
def _gather_runs(xp, base, group_offs, KW, patches):
    """patches[p, g·KW + q] = xp[base[p] + group_offs[g] + q] for q < KW ≤ 8 (dilation 1).

    The KW taps of one filter row read KW neighbouring values, so each group moves eight at
    once (eight loads, then eight stores: one vector move). The values past KW spill into the
    next group's columns, which that group then overwrites; the last group's land in spare
    columns. ``xp`` needs eight readable values past its last window.
    """
    u1, u2, u3, u4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    u5, u6, u7 = np.uint64(5), np.uint64(6), np.uint64(7)
    for p in range(base.size):
        src = xp[base[p] :]
        row = patches[p]
        for g in range(group_offs.size):
            o, d = group_offs[g], np.uint64(g * KW)
            v0, v1, v2, v3 = src[o], src[o + u1], src[o + u2], src[o + u3]
            v4, v5, v6, v7 = src[o + u4], src[o + u5], src[o + u6], src[o + u7]
            row[d], row[d + u1], row[d + u2], row[d + u3] = v0, v1, v2, v3
            row[d + u4], row[d + u5], row[d + u6], row[d + u7] = v4, v5, v6, v7


@serial_kernel
def _gather_row_runs(xp, offs, row_step, H_out, W_out, cols):
    """cols[k, i·W_out + j] = xp[offs[k] + i·row_step + j] (stride 1 along rows), eight at a time.

    Each output row's window is W_out neighbouring values; the eight-value moves past its end
    spill into the next row's columns, which are written next (the last row's into spare ones).
    """
    u1, u2, u3, u4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    u5, u6, u7 = np.uint64(5), np.uint64(6), np.uint64(7)
    for k in range(offs.size):
        src = xp[offs[k] :]
        dst = cols[k]
        for i in range(H_out):
            for j in range(0, W_out, _RUN):
                o, d = np.uint64(i * row_step + j), np.uint64(i * W_out + j)
                v0, v1, v2, v3 = src[o], src[o + u1], src[o + u2], src[o + u3]
                v4, v5, v6, v7 = src[o + u4], src[o + u5], src[o + u6], src[o + u7]
                dst[d], dst[d + u1], dst[d + u2], dst[d + u3] = v0, v1, v2, v3
                dst[d + u4], dst[d + u5], dst[d + u6], dst[d + u7] = v4, v5, v6, v7


@serial_kernel
def _gemm(a, b, out):
    """out += a @ b for a (M, R), b (R, ≥L), out (M, L), with plain loops.

    Four rows of out take four terms of the sum at a time, so every value loaded from b is used
    four times; the innermost loop runs along contiguous rows and compiles to vector code.
    """
    M, R = a.shape
    L = out.shape[1]
    M4, R4 = M - M % 4, R - R % 4
    for f in range(0, M4, 4):
        o0, o1, o2, o3 = out[f], out[f + 1], out[f + 2], out[f + 3]
        for r in range(0, R4, 4):
            a00, a01, a02, a03 = a[f, r], a[f, r + 1], a[f, r + 2], a[f, r + 3]
            a10, a11, a12, a13 = a[f + 1, r], a[f + 1, r + 1], a[f + 1, r + 2], a[f + 1, r + 3]
            a20, a21, a22, a23 = a[f + 2, r], a[f + 2, r + 1], a[f + 2, r + 2], a[f + 2, r + 3]
            a30, a31, a32, a33 = a[f + 3, r], a[f + 3, r + 1], a[f + 3, r + 2], a[f + 3, r + 3]
            b0, b1, b2, b3 = b[r], b[r + 1], b[r + 2], b[r + 3]
            for p in range(L):
                v0, v1, v2, v3 = b0[p], b1[p], b2[p], b3[p]
                o0[p] += a00 * v0 + a01 * v1 + a02 * v2 + a03 * v3
                o1[p] += a10 * v0 + a11 * v1 + a12 * v2 + a13 * v3
                o2[p] += a20 * v0 + a21 * v1 + a22 * v2 + a23 * v3
                o3[p] += a30 * v0 + a31 * v1 + a32 * v2 + a33 * v3
        for r in range(R4, R):
            a0, a1, a2, a3 = a[f, r], a[f + 1, r], a[f + 2, r], a[f + 3, r]
            b0 = b[r]
            for p in range(L):
                o0[p] += a0 * b0[p]
                o1[p] += a1 * b0[p]
                o2[p] += a2 * b0[p]
                o3[p] += a3 * b0[p]
    for f in range(M4, M):
        o0 = out[f]
        for r in range(0, R4, 4):
            a0, a1, a2, a3 = a[f, r], a[f, r + 1], a[f, r + 2], a[f, r + 3]
            b0, b1, b2, b3 = b[r], b[r + 1], b[r + 2], b[r + 3]
            for p in range(L):
                o0[p] += a0 * b0[p] + a1 * b1[p] + a2 * b2[p] + a3 * b3[p]
        for r in range(R4, R):
            a0 = a[f, r]
            b0 = b[r]
            for p in range(L):
                o0[p] += a0 * b0[p]


_CHUNK = 512  # _gemm_dots sums in pieces of this many terms, which stay in the core's cache


@sum_kernel
def _gemm_dots(a, L, b, b_offs, out):
    """out[f, k] += Σ_p a[f, p]·b[b_offs[k] + p] over p < L: out += a[:, :L] @ Bᵀ.

    The rows of a and the runs of b are contiguous, so each entry is a dot product; blocks of
    4 × 4 entries share their loads (each value loaded is used four times). a's rows and
    b_offs come in multiples of four (pad with zero rows, repeat an offset).
    """
    M, K = a.shape[0], b_offs.size
    zero = a.dtype.type(0)
    for p0 in range(0, L, _CHUNK):
        n = min(L - p0, _CHUNK)
        for f in range(0, M, 4):
            a0, a1 = a[f, p0 : p0 + n], a[f + 1, p0 : p0 + n]
            a2, a3 = a[f + 2, p0 : p0 + n], a[f + 3, p0 : p0 + n]
            for k in range(0, K, 4):
                s0, s1 = b_offs[k] + p0, b_offs[k + 1] + p0
                s2, s3 = b_offs[k + 2] + p0, b_offs[k + 3] + p0
                b0, b1 = b[s0 : s0 + n], b[s1 : s1 + n]
                b2, b3 = b[s2 : s2 + n], b[s3 : s3 + n]
                c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
                c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
                for p in range(n):
                    x0, x1, x2, x3 = a0[p], a1[p], a2[p], a3[p]
                    y0, y1, y2, y3 = b0[p], b1[p], b2[p], b3[p]
                    c00 += x0 * y0
                    c01 += x0 * y1
                    c02 += x0 * y2
                    c03 += x0 * y3
                    c10 += x1 * y0
                    c11 += x1 * y1
                    c12 += x1 * y2
                    c13 += x1 * y3
                    c20 += x2 * y0
                    c21 += x2 * y1
                    c22 += x2 * y2
                    c23 += x2 * y3
                    c30 += x3 * y0
                    c31 += x3 * y1
                    c32 += x3 * y2
                    c33 += x3 * y3
                out[f, k] += c00
                out[f, k + 1] += c01
                out[f, k + 2] += c02
                out[f, k + 3] += c03
                out[f + 1, k] += c10
                out[f + 1, k + 1] += c11
                out[f + 1, k + 2] += c12
                out[f + 1, k + 3] += c13
                out[f + 2, k] += c20
                out[f + 2, k + 1] += c21
                out[f + 2, k + 2] += c22
                out[f + 2, k + 3] += c23
                out[f + 3, k] += c30
                out[f + 3, k + 1] += c31
                out[f + 3, k + 2] += c32
                out[f + 3, k + 3] += c33


@sum_kernel
def _sum(src):
    """Σ src, in vector pieces."""
    s = src.dtype.type(0)
    for i in range(src.size):
        s += src[i]
    return s
