"""The fast method of ``cnnlib.conv``: im2col in cache-sized pieces, with Numba loops.

``conv.conv2d_forward`` / ``conv2d_backward`` call ``forward`` / ``backward`` here unless
``method="readable"``; the tests check both methods give the same numbers. The readable kernels
in ``conv.py`` are the lecture's formula; this module is only about speed.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numpy as np

from ._jit import chunk_kernel, inline_kernel, kernel, numba, prange, serial_kernel
from ._loops import _add, _copy, _fill, _gemm, _gemm_dots, _in_chunks, _sum

# How it works.
#
# Every tap k = (c, m, q) of the filter and every output position p = (i, j) become one offset
# each into the zero-padded sample flattened to 1-D: the input value that tap k sees at output
# position p is xp[offs[k] + base[p]] (offs and base from _offsets). Gathering those
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
#
# What depends only on the shapes is prepared in Python, once per layer shape: the offsets
# (``_offsets``) and the scratch buffers of each chunk (``_scratch``, kept per thread for the
# last few shapes). Each helper a kernel calls is compiled as a function of its own, and each
# array a kernel allocates compiles NumPy's allocator into it; without them the forward and
# backward kernels compiled in 1.63 and 1.68 s instead of 2.20 and 1.97-2.01 s (float32, empty
# cache, 2-core VM, 2026-12-08), and ran as fast (bench_same_process.py, no pause: 7.84-8.13×,
# 5.66-5.77×, 3.24-3.28× NumPy im2col against 8.20-8.28×, 5.73-5.83×, 3.21-3.26× before). The
# scratch keeps what the kernels need from one call to the next: zeros in the padding of xp and
# in the rows and columns of dout_rows that no call writes, and the column of 1s in patches;
# every other value is written before it is read.


def forward(x, w, b, stride, padding, dilation, out):
    """Fill ``out`` (N, F, H_out, W_out) with the convolution of x (N, C, H, W) by w, plus b."""
    chunks, args = _forward_plan(x, w, b, stride, padding, dilation, out)
    _in_chunks(_fast_forward_kernel, chunks, *args, shared=_forward_shared)


def _forward_plan(x, w, b, stride, padding, dilation, out, rows=None, chunks=None):
    """``(chunks, args)``: ``_fast_forward_kernel(*args, t)`` for t < chunks fills ``out``.

    ``rows`` (output rows per work item) and ``chunks`` are chosen for the machine unless given.
    """
    (sh, sw), (ph, pw), (dil_h, dil_w) = stride, padding, dilation
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out, W_out = out.shape[2:]
    if rows is None:  # blocks of output rows whose im2col matrix fits in a core's cache (~256 kB)
        rows = min(H_out, max(1, 2**18 // max(1, C * KH * KW * W_out * x.itemsize)))
    if chunks is None:  # the work items (sample, block of rows) in one chunk per thread
        chunks = min(N * -(-H_out // rows), numba.get_num_threads())
    shapes = (C, H, W, KH, KW, H_out, W_out, sh, sw, ph, pw, dil_h, dil_w)
    o = _offsets(*shapes)
    K, width = o.offs.size, _whole_vectors(rows * W_out + _RUN)
    xp, cols, out_rows = _scratch(("forward", x.dtype, chunks, rows, F, shapes), (
        ((o.xp_len,), 0), ((K, width), 0), ((F, width), 0)))  # cols with spill room
    return chunks, (x, w.reshape(F, -1), b, o.offs, o.base_u if sw != 1 else _NONE_U, ph, pw,
                    sh, sw, rows, chunks, out.reshape(N, F, H_out * W_out), W_out, xp, cols,
                    out_rows)


def backward(dout, x, w, stride, padding, dilation, need_dx):
    """``(dx or None, dw, db)`` of the convolution for ``dout`` (N, F, H_out, W_out)."""
    chunks, args = _backward_plan(dout, x, w, stride, padding, dilation, need_dx)
    _in_chunks(_fast_backward_kernel, chunks, *args, shared=_backward_shared)
    dx, dw_parts, db_parts = args[-3:]
    dw, db = dw_parts.sum(axis=0).reshape(w.shape), db_parts.sum(axis=0)
    return (dx if need_dx else None), dw, db


def _backward_plan(dout, x, w, stride, padding, dilation, need_dx, chunks=None):
    """``(chunks, args)``: ``_fast_backward_kernel(*args, t)`` for t < chunks fills the last
    three arguments: dx, and the partial sums dw_parts (chunks, F, C·KH·KW) and db_parts.

    ``chunks`` is one per thread unless given.
    """
    (sh, sw), (ph, pw), (dil_h, dil_w) = stride, padding, dilation
    N, F, H_out, W_out = dout.shape
    C, H, W = x.shape[1:]
    KH, KW = w.shape[2:]
    if chunks is None:  # the samples in one chunk per thread
        chunks = min(N, numba.get_num_threads())
    shapes = (C, H, W, KH, KW, H_out, W_out, sh, sw, ph, pw, dil_h, dil_w)
    o = _offsets(*shapes)
    K = o.offs.size
    wide = sh == 1 and sw == 1  # dout in rows of Wp values (see above)
    L = _whole_vectors(H_out * (W + 2 * pw if wide else W_out))
    ones_at = K + _RUN  # patches: K taps, spill room, then the column of 1s
    scratch = _scratch(("backward", x.dtype, chunks, F, need_dx, shapes), (
        ((o.xp_len,), 0),  # xp: the padded sample
        ((o.xp_len if need_dx else 0,), 0),  # dxp: its gradient
        ((0 if wide else H_out * W_out, _whole_vectors(ones_at + 1)), ones_at),  # patches
        ((-(-F // 4) * 4, L), 0),  # dout_rows: F rounded up to 4 for _gemm_dots
        ((K if need_dx else 0, L), 0),  # dcols
        ((-(-F // 4) * 4, _whole_vectors(ones_at + 1)), 0),  # dw_db: dw in columns < K, db
    ))  # fmt: skip
    dx = np.empty_like(x) if need_dx else np.empty((0, *x.shape[1:]), x.dtype)
    dw_parts = np.empty((chunks, F, K), x.dtype)  # one partial sum per chunk
    db_parts = np.empty((chunks, F), x.dtype)
    w2t = np.ascontiguousarray(w.reshape(F, -1).T)  # (C·KH·KW, F)
    return chunks, (dout.reshape(N, F, H_out * W_out), W_out, x, w2t, o.offs, o.offs_u, o.offs4,
                    o.group_offs_u, o.runs_kw, *((_NONE, _NONE_U) if wide else (o.base, o.base_u)),
                    ph, pw, *scratch, need_dx, dx, dw_parts, db_parts)


class _Offsets(NamedTuple):
    """Where the kernels read in the flattened padded sample (see the top of this module)."""

    offs: np.ndarray  # int64 (K,): tap k = (c, m, q) relative to its window
    offs_u: np.ndarray  # the same, uint64
    offs4: np.ndarray  # int64 (K rounded up to 4,): the taps past K repeat offset 0
    group_offs_u: np.ndarray  # uint64: the first tap of each filter row, for _gather_runs
    runs_kw: int  # KW when _gather_runs applies (dilation 1, KW ≤ 8), else 0
    base: np.ndarray  # int64 (H_out·W_out,): where the window of output position p starts
    base_u: np.ndarray  # the same, uint64
    xp_len: int  # the padded sample's length, with room for the last window's runs (whole vectors)


@functools.lru_cache(maxsize=64)
def _offsets(C, H, W, KH, KW, H_out, W_out, sh, sw, ph, pw, dil_h, dil_w) -> _Offsets:
    Hp, Wp = H + 2 * ph, W + 2 * pw
    c, m, q = np.ix_(np.arange(C), np.arange(KH) * dil_h, np.arange(KW) * dil_w)
    offs = ((c * Hp + m) * Wp + q).reshape(-1).astype(np.int64)
    offs4 = np.zeros(-(-offs.size // 4) * 4, np.int64)
    offs4[: offs.size] = offs
    i, j = np.ix_(np.arange(H_out) * sh, np.arange(W_out) * sw)
    base = (i * Wp + j).reshape(-1).astype(np.int64)
    offs_u = offs.astype(np.uint64)
    runs = dil_w == 1 and KW <= _RUN
    return _Offsets(offs, offs_u, offs4, np.ascontiguousarray(offs_u[::KW]) if runs else _NONE_U,
                    KW if runs else 0, base, base.astype(np.uint64),
                    _whole_vectors(C * Hp * Wp + (KW - 1) * dil_w + _RUN))


_NONE = np.empty(0, np.int64)  # no windows: a convolution with stride 1
_NONE_U = np.empty(0, np.uint64)


def _whole_vectors(n: int) -> int:
    """n rounded up to a multiple of 16 values: rows of whole vectors."""
    return -(-n // 16) * 16


_buffers = threading.local()  # per thread: {key: scratch}, the last shapes used
_KEEP_BYTES = 32 * 2**20  # at most this much scratch stays per thread (larger is not kept)


def _scratch(key: tuple, specs: tuple) -> tuple[np.ndarray, ...]:
    """One array of shape (chunks, *shape) per ``(shape, ones_at)`` in ``specs``, zero except
    for a column of 1s at ``ones_at`` (if > 0), each chunk's slice starting on a 64-byte
    boundary (NumPy's own arrays start on 16-byte ones; the kernels ran 15-30 % slower on
    such scratch). Kept for the calling thread and ``key`` (dtype, chunks first), so that the
    next call with the same shapes finds them again, up to ``_KEEP_BYTES`` (oldest out first)."""
    kept = getattr(_buffers, "kept", None)
    if kept is None:
        kept = _buffers.kept = {}
    found = kept.get(key)
    if found is None:
        dtype, chunks = key[1], key[2]
        found = tuple(_aligned_zeros((chunks, *shape), dtype, ones_at) for shape, ones_at in specs)
        if _nbytes(found) <= _KEEP_BYTES:
            while kept and sum(map(_nbytes, kept.values())) + _nbytes(found) > _KEEP_BYTES:
                del kept[next(iter(kept))]  # the oldest
            kept[key] = found
    return found


def _nbytes(arrays: tuple[np.ndarray, ...]) -> int:
    return sum(array.nbytes for array in arrays)


def _aligned_zeros(shape: tuple, dtype: np.dtype, ones_at: int) -> np.ndarray:
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    array = raw[start : start + size].view(dtype).reshape(shape)
    if ones_at > 0:
        array[..., ones_at] = 1
    return array


@chunk_kernel
def _fast_forward_kernel(x, w2, b, offs, base_u, ph, pw, sh, sw, rows, T, out, W_out, xp_all,
                         cols_all, out_rows_all, t):
    """out[n] = b + w2 @ cols_n with cols_n[k, p] = xp_n[offs[k] + base[p]], in blocks of rows.

    Chunk t of T: the work items (sample n, block of output rows) t·items/T up to
    (t + 1)·items/T; chunk t writes only their output rows, and uses the scratch
    xp_all[t], cols_all[t] and out_rows_all[t] (``_forward_plan``).
    """
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    F, P = w2.shape[0], out.shape[2]  # out is (N, F, H_out·W_out)
    H_out, Hp, Wp = P // W_out, H + 2 * ph, W + 2 * pw
    blocks = -(-H_out // rows)  # work item = (sample n, block of output rows)
    items = N * blocks
    xp, cols, out_rows = xp_all[t], cols_all[t], out_rows_all[t]
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
    dout, W_out, x, w2t, offs, offs_u, offs4, group_offs_u, runs_kw, base, base_u, ph, pw,
    xp_all, dxp_all, patches_all, dout_rows_all, dcols_all, dw_db_all, need_dx, dx, dw_parts,
    db_parts, t,
):  # fmt: skip
    """Per sample: [dw | db] += dout_n @ [patches_n | 1] and dx_n = col2im(w2ᵀ @ dout_n).

    With stride 1 (``base`` empty), dw[f, k] += Σ_p dout_rows[f, p]·xp_n[offs[k] + p] reads
    xp_n in place and db[f] += Σ_p dout_rows[f, p]. Chunk t of T = len(dw_parts): samples
    t·N/T up to (t + 1)·N/T; it writes their dx[n], dw_parts[t] and db_parts[t], and uses the
    scratch [t] of each ``…_all`` (``_backward_plan``).
    """
    N, F, P = dout.shape  # dout is (N, F, H_out·W_out), w2t is (C·KH·KW, F)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    H_out, Hp, Wp, K = P // W_out, H + 2 * ph, W + 2 * pw, w2t.shape[0]
    wide = base.size == 0
    row_len = Wp if wide else W_out
    L = H_out * row_len
    ones_at = K + _RUN  # db's column in dw_db, the 1s in patches
    zero = x.dtype.type(0)
    T = dw_parts.shape[0]
    xp, dxp, patches = xp_all[t], dxp_all[t], patches_all[t]
    dout_rows, dcols, dw_db = dout_rows_all[t], dcols_all[t], dw_db_all[t]
    for f in range(dw_db.shape[0]):  # the sums start at 0 in every call
        _fill(dw_db[f], zero)
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
                dw_db[f, ones_at] += _sum(dout_rows[f])
        else:
            if runs_kw > 0:  # dilation 1, KW ≤ 8: the taps of a filter row in one move
                _gather_runs(xp, base, group_offs_u, runs_kw, patches)
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
        db_parts[t, f] = dw_db[f, ones_at]


# The same chunks as a prange, on the OpenMP pool, for a process in which PyTorch (or another
# library) started OpenMP before cnnlib with busy-waiting threads (``_loops._in_chunks``,
# ``_jit.OPENMP_SPINS``). Compiled only there; cached like every kernel.


@kernel
def _forward_shared(T, x, w2, b, offs, base_u, ph, pw, sh, sw, rows, chunks, out, W_out, xp_all,
                    cols_all, out_rows_all):
    for t in prange(T):  # chunk t writes only its own output rows (chunks == T)
        _fast_forward_kernel(  # t as int64: prange counts unsigned, a second compilation
            x, w2, b, offs, base_u, ph, pw, sh, sw, rows, chunks, out, W_out, xp_all, cols_all,
            out_rows_all, np.int64(t),
        )  # fmt: skip


@kernel
def _backward_shared(
    T, dout, W_out, x, w2t, offs, offs_u, offs4, group_offs_u, runs_kw, base, base_u, ph, pw,
    xp_all, dxp_all, patches_all, dout_rows_all, dcols_all, dw_db_all, need_dx, dx, dw_parts,
    db_parts,
):  # fmt: skip
    for t in prange(T):  # chunk t writes only its samples' dx, dw_parts[t] and db_parts[t]
        _fast_backward_kernel(
            dout, W_out, x, w2t, offs, offs_u, offs4, group_offs_u, runs_kw, base, base_u, ph, pw,
            xp_all, dxp_all, patches_all, dout_rows_all, dcols_all, dw_db_all, need_dx, dx,
            dw_parts, db_parts, np.int64(t),
        )  # fmt: skip


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
