"""The fast method of ``cnnlib.conv``: im2col in cache-sized pieces, with Numba loops.

``conv.conv2d_forward`` / ``conv2d_backward`` call ``forward`` / ``backward`` here unless
``method="readable"``; the tests check both methods give the same numbers. The readable kernels
in ``conv.py`` are the lecture's formula; this module is only about speed.
"""

from __future__ import annotations

import numpy as np

from ._jit import chunk_kernel, inline_kernel, kernel, numba, prange, serial_kernel
from ._loops import _add, _copy, _fill, _gemm, _gemm_dots, _in_chunks, _sum

# How it works.
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
#
# Threads. The two kernels below are ordinary (serial) Numba functions that do one chunk of the
# work, t of T, and release the GIL (``chunk_kernel``); ``_loops._in_chunks`` runs chunk 0 in
# the calling thread and the others on cnnlib's worker threads, which sleep while idle.
# The same loops inside an ``njit(parallel=True)`` prange compiled in 5.5 s (forward) and 7.0 s
# (backward) per dtype on a 2-core machine, most of it Numba's parallel machinery (the prange
# body is compiled and optimised again as a function of its own); as serial functions they
# compile in 3.3 and 3.1 s (issue 11: every notebook with a convolution compiles them cold).



def forward(x, w, b, stride, padding, dilation, out):
    """Fill ``out`` (N, F, H_out, W_out) with the convolution of x (N, C, H, W) by w, plus b."""
    (sh, sw), (ph, pw), (dil_h, dil_w) = stride, padding, dilation
    N, C = x.shape[:2]
    F, _, KH, KW = w.shape
    H_out, W_out = out.shape[2:]
    # blocks of output rows whose im2col matrix fits in a core's cache (~256 kB)
    rows = min(H_out, max(1, 2**18 // max(1, C * KH * KW * W_out * x.itemsize)))
    items = N * -(-H_out // rows)
    chunks = min(items, numba.get_num_threads())  # the items are split into one chunk per thread
    _in_chunks(
        _fast_forward_kernel, chunks, x, w.reshape(F, -1), b, KH, KW, sh, sw, ph, pw, dil_h,
        dil_w, rows, chunks, out.reshape(N, F, H_out * W_out), W_out, shared=_forward_shared,
    )  # fmt: skip


def backward(dout, x, w, stride, padding, dilation, need_dx):
    """``(dx or None, dw, db)`` of the convolution for ``dout`` (N, F, H_out, W_out)."""
    (sh, sw), (ph, pw), (dil_h, dil_w) = stride, padding, dilation
    N, F, H_out, W_out = dout.shape
    chunks = min(N, numba.get_num_threads())  # the samples are split into one chunk per thread
    dx = np.empty_like(x) if need_dx else np.empty((0, *x.shape[1:]), x.dtype)
    dw_parts = np.empty((chunks, F, w[0].size), x.dtype)  # one partial sum per chunk
    db_parts = np.empty((chunks, F), x.dtype)
    w2t = np.ascontiguousarray(w.reshape(F, -1).T)  # (C·KH·KW, F)
    _in_chunks(
        _fast_backward_kernel, chunks, dout.reshape(N, F, H_out * W_out), W_out, x, w2t,
        *w.shape[2:], sh, sw, ph, pw, dil_h, dil_w, need_dx, dx, dw_parts, db_parts,
        shared=_backward_shared,
    )  # fmt: skip
    dw, db = dw_parts.sum(axis=0).reshape(w.shape), db_parts.sum(axis=0)
    return (dx if need_dx else None), dw, db


@chunk_kernel
def _fast_forward_kernel(x, w2, b, KH, KW, sh, sw, ph, pw, dil_h, dil_w, rows, T, out, W_out, t):
    """out[n] = b + w2 @ cols_n with cols_n[k, p] = xp_n[offs[k] + base[p]], in blocks of rows.

    Chunk t of T: the work items (sample n, block of output rows) t·items/T up to
    (t + 1)·items/T; chunk t writes only their output rows.
    """
    N, C, H, W = x.shape
    F, K, P = w2.shape[0], w2.shape[1], out.shape[2]  # out is (N, F, H_out·W_out)
    H_out, Hp, Wp = P // W_out, H + 2 * ph, W + 2 * pw
    offs = _taps(C, KH, KW, Hp, Wp, dil_h, dil_w)
    base_u = _windows(H_out, W_out, Wp, sh, sw).astype(np.uint64)
    blocks = -(-H_out // rows)  # work item = (sample n, block of output rows)
    items = N * blocks
    # scratch buffers of this chunk
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


@chunk_kernel
def _fast_backward_kernel(
    dout, W_out, x, w2t, KH, KW, sh, sw, ph, pw, dil_h, dil_w, need_dx, dx, dw_parts, db_parts, t
):  # fmt: skip
    """Per sample: [dw | db] += dout_n @ [patches_n | 1] and dx_n = col2im(w2ᵀ @ dout_n).

    With stride 1, dw[f, k] += Σ_p dout_rows[f, p]·xp_n[offs[k] + p] reads xp_n in place and
    db[f] += Σ_p dout_rows[f, p]. Chunk t of T = len(dw_parts): samples t·N/T up to
    (t + 1)·N/T; it writes their dx[n], dw_parts[t] and db_parts[t].
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


# The same chunks as a prange, on the OpenMP pool, for a process in which PyTorch (or another
# library) started OpenMP before cnnlib with busy-waiting threads (``_loops._in_chunks``,
# ``_jit.OPENMP_SPINS``). Compiled only there; cached like every kernel.


@kernel
def _forward_shared(T, x, w2, b, KH, KW, sh, sw, ph, pw, dil_h, dil_w, rows, chunks, out, W_out):
    for t in prange(T):  # chunk t writes only its own output rows (chunks == T)
        _fast_forward_kernel(  # t as int64: prange counts unsigned, a second compilation
            x, w2, b, KH, KW, sh, sw, ph, pw, dil_h, dil_w, rows, chunks, out, W_out, np.int64(t)
        )  # fmt: skip


@kernel
def _backward_shared(
    T, dout, W_out, x, w2t, KH, KW, sh, sw, ph, pw, dil_h, dil_w, need_dx, dx, dw_parts, db_parts
):  # fmt: skip
    for t in prange(T):  # chunk t writes only its samples' dx, dw_parts[t] and db_parts[t]
        _fast_backward_kernel(
            dout, W_out, x, w2t, KH, KW, sh, sw, ph, pw, dil_h, dil_w, need_dx, dx, dw_parts,
            db_parts, np.int64(t),
        )  # fmt: skip


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


@inline_kernel
def _move8(src, o, dst, d):
    """dst[d : d + 8] = src[o : o + 8] (o, d unsigned): eight loads, then eight stores, which
    the compiler turns into one vector move."""
    u1, u2, u3, u4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    u5, u6, u7 = np.uint64(5), np.uint64(6), np.uint64(7)
    v0, v1, v2, v3 = src[o], src[o + u1], src[o + u2], src[o + u3]
    v4, v5, v6, v7 = src[o + u4], src[o + u5], src[o + u6], src[o + u7]
    dst[d], dst[d + u1], dst[d + u2], dst[d + u3] = v0, v1, v2, v3
    dst[d + u4], dst[d + u5], dst[d + u6], dst[d + u7] = v4, v5, v6, v7


@serial_kernel
def _gather_runs(xp, base, group_offs, KW, patches):
    """patches[p, g·KW + q] = xp[base[p] + group_offs[g] + q] for q < KW ≤ 8 (dilation 1).

    The KW taps of one filter row read KW neighbouring values, so each group moves eight at
    once (eight loads, then eight stores: one vector move). The values past KW spill into the
    next group's columns, which that group then overwrites; the last group's land in spare
    columns. ``xp`` needs eight readable values past its last window.
    """
    for p in range(base.size):
        src = xp[base[p] :]
        row = patches[p]
        for g in range(group_offs.size):
            _move8(src, group_offs[g], row, np.uint64(g * KW))


@serial_kernel
def _gather_row_runs(xp, offs, row_step, H_out, W_out, cols):
    """cols[k, i·W_out + j] = xp[offs[k] + i·row_step + j] (stride 1 along rows), eight at a time.

    Each output row's window is W_out neighbouring values; the eight-value moves past its end
    spill into the next row's columns, which are written next (the last row's into spare ones).
    """
    for k in range(offs.size):
        src = xp[offs[k] :]
        dst = cols[k]
        for i in range(H_out):
            for j in range(0, W_out, _RUN):
                _move8(src, np.uint64(i * row_step + j), dst, np.uint64(i * W_out + j))
