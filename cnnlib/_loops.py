"""Small Numba loops shared by the fast kernels: copies, fills, matrix products, sums.

They work on 1-D views or (rows, columns) matrices and compile to vector code; no BLAS, so that
only cnnlib's threads run. And ``_in_chunks``, which runs a kernel's chunks on several threads.
"""

from __future__ import annotations

import os
import threading

# numba as _jit loads it, after its settings
from ._jit import OPENMP_SPINS, numba, serial_kernel, sum_kernel

# Threads without Numba's parallel compiler. ``njit(parallel=True)`` costs 0.4 s of compilation
# for the smallest prange loop and several seconds for a big loop nest (issue 11: a cold start on
# Colab compiles every kernel a notebook uses). The fast kernels of _conv_fast.py, _norm_fast.py
# and pool.py (2×2) and the activations are therefore serial functions that do chunk t of T of
# the work and release the GIL (``chunk_kernel``); ``_in_chunks`` runs chunk 0 in the calling
# thread and the others on cnnlib's worker threads, which sleep while idle (they do not spin,
# see _jit.py). As many chunks as Numba would use threads (``numba.get_num_threads()``, so
# ``numba.set_num_threads(1)`` makes them serial too). The price: handing a chunk to a worker
# and back costs about 70 µs (OpenMP's prange about 4 µs), so small arrays stay in one chunk.

def _chunks(items: int, size: int, per_thread: int) -> int:
    """How many chunks: one per thread (at most ``items``), each with ≥ per_thread of ``size``."""
    return max(1, min(items, numba.get_num_threads(), size // per_thread))


class _Worker:
    """A thread that runs one job at a time: ``start`` hands it over, ``wait`` returns when it is
    done. Two locks used as signals (the thread sleeps in ``acquire``, it never spins), which
    costs far less per job than a ``concurrent.futures`` pool (about 90 µs per call measured)."""

    def __init__(self) -> None:
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._job: tuple = ()
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name="cnnlib", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            kern, args = self._job
            try:
                kern(*args)
            except BaseException as error:  # handed to the caller by wait()
                self._error = error
            self._job = ()
            self._done.release()

    def start(self, kern, args: tuple) -> None:
        self._job, self._error = (kern, args), None
        self._go.release()

    def wait(self) -> None:
        self._done.acquire()
        if self._error is not None:
            raise self._error


_workers: list[_Worker] = []
_busy = threading.Lock()  # one caller at a time uses the workers


def _in_chunks(kern, T, *args, shared=None):
    """kern(*args, t) for every chunk t < T: chunk 0 here, the others on the worker threads.

    A second thread that calls while the workers are busy runs its chunks itself, one by one.
    ``shared(T, *args)``, a prange over the same chunks, runs them on the OpenMP pool instead
    when an OpenMP runtime was loaded before cnnlib with its busy-waiting default
    (``_jit.OPENMP_SPINS``, PyTorch imported first): its spinning threads would take a core
    from cnnlib's workers, and sharing their pool avoids that (see _jit.py).
    """
    if shared is not None and T > 0 and OPENMP_SPINS:
        shared(T, *args)
        return
    if T <= 1 or not _busy.acquire(blocking=False):  # T = 0: nothing to do (empty batch)
        for t in range(T):
            kern(*args, t)
        return
    try:
        while len(_workers) < T - 1:
            _workers.append(_Worker())
        for t in range(1, T):
            _workers[t - 1].start(kern, (*args, t))
        errors = []
        try:
            kern(*args, 0)
        finally:
            for t in range(1, T):  # every worker is waited for, even when one failed
                try:
                    _workers[t - 1].wait()
                except BaseException as error:
                    errors.append(error)
        if errors:
            raise errors[0]
    finally:
        _busy.release()


def _in_sample_pieces(kern, args: tuple, batched: tuple[int, ...], per_thread: int) -> None:
    """``kern(*args)`` with the batch split into one piece of samples per thread.

    The arrays at the positions ``batched`` are cut along their first axis (the samples, or the
    values of flat arrays; a cut of a C-contiguous array stays C-contiguous, so the kernel is not
    compiled again), the other arguments are passed whole. Only for kernels in which every
    sample owns its rows of every output. Fewer than ``per_thread`` values per thread stay in
    one piece.
    """
    first = args[batched[0]]
    T = _chunks(first.shape[0], first.size, per_thread)
    if T == 1:
        kern(*args)
    else:
        _in_chunks(_sample_piece, T, kern, args, batched, T)


def _sample_piece(kern, args: tuple, batched: tuple[int, ...], T: int, t: int) -> None:
    """Piece t of T: ``kern`` on the samples t·N/T up to (t + 1)·N/T of the batched arrays."""
    N = args[batched[0]].shape[0]
    lo, hi = t * N // T, (t + 1) * N // T
    kern(*[a[lo:hi] if k in batched else a for k, a in enumerate(args)])


def _forget_workers():
    global _busy
    _workers.clear()  # a forked child has no worker threads: start new ones when needed
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


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
