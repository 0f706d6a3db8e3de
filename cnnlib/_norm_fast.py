"""The fast kernels of batch normalization: the sums of ``norm.py``'s readable kernels,
arranged so that they vectorise. ``norm.batch_norm_forward`` / ``batch_norm_backward`` call them
unless ``method="readable"``; the tests check both give the same numbers.
"""

from __future__ import annotations

import numpy as np

from ._jit import chunk_kernel
from ._loops import _chunks, _in_chunks

# The channels are split into one chunk per thread (``_loops._in_chunks``; serial functions
# compile in a fraction of the time a prange loop takes, issue 11); small arrays in one chunk.
_PER_THREAD = 16384  # values: fewer per thread, and waking a thread costs more than it saves


def _channel_chunks(x) -> int:
    return _chunks(x.shape[1], x.size, _PER_THREAD)


def batch_norm_forward_kernel(x, gamma, beta, eps, out, mean, var, rstd):
    """Fill out (N, C, H, W) and the per-channel mean, var, rstd: ``_forward_channels``."""
    T = _channel_chunks(x)
    _in_chunks(_forward_channels, T, x, gamma, beta, eps, out, mean, var, rstd, T)


def batch_norm_backward_kernel(dout, x, mean, rstd, gamma, dx, dgamma, dbeta):
    """Fill dx, dgamma and dbeta: ``_backward_channels``."""
    T = _channel_chunks(x)
    _in_chunks(_backward_channels, T, dout, x, mean, rstd, gamma, dx, dgamma, dbeta, T)


@chunk_kernel
def _forward_channels(x, gamma, beta, eps, out, mean, var, rstd, T, t):
    """``batch_norm_stats_kernel`` and ``batch_norm_apply_kernel`` in one pass per channel,
    arranged so that the loops vectorise; the channels t·C/T up to (t + 1)·C/T.

    A float64 running sum is one long chain of dependent additions, which the compiler may not
    reorder (no fastmath). Here each pixel position p of the H·W plane gets its own float64
    partial sum over the batch, ``sums[p] += x[n, c, p]``: the additions for neighbouring p are
    independent, so they run several at a time (SIMD). Same precision, other summation order;
    the tests check it against the readable kernels.
    """
    N, C, H, W = x.shape
    P = H * W
    count = N * P
    x3, out3 = x.reshape(N, C, P), out.reshape(N, C, P)  # each plane x[n, c] is contiguous
    for c in range(t * C // T, (t + 1) * C // T):  # chunk t owns out[:, c], mean[c], ...
        sums = np.zeros(P)  # float64
        for n in range(N):
            for p in range(P):
                sums[p] += x3[n, c, p]
        total = 0.0  # loops, not sums.sum() and sums[:] = 0: those compile NumPy's code in
        for p in range(P):
            total += sums[p]
            sums[p] = 0.0
        mu = total / count
        for n in range(N):
            for p in range(P):
                d = x3[n, c, p] - mu
                sums[p] += d * d
        squares = 0.0
        for p in range(P):
            squares += sums[p]
        mean[c] = mu
        var[c] = squares / count
        rstd[c] = 1.0 / np.sqrt(squares / count + eps)
        mu_c, r, g, b = mean[c], rstd[c], gamma[c], beta[c]  # in x's dtype, as in the apply kernel
        for n in range(N):
            for p in range(P):
                out3[n, c, p] = g * ((x3[n, c, p] - mu_c) * r) + b


@chunk_kernel
def _backward_channels(dout, x, mean, rstd, gamma, dx, dgamma, dbeta, T, t):
    """``norm.batch_norm_backward_kernel`` with one float64 partial sum per pixel position, so
    the sums vectorise (see ``_forward_channels``); the channels t·C/T up to (t + 1)·C/T."""
    N, C, H, W = x.shape
    P = H * W
    count = N * P
    x3, dout3, dx3 = x.reshape(N, C, P), dout.reshape(N, C, P), dx.reshape(N, C, P)
    for c in range(t * C // T, (t + 1) * C // T):  # chunk t owns dx[:, c], dgamma[c], dbeta[c]
        mu, r = mean[c], rstd[c]
        sums_dout = np.zeros(P)  # float64
        sums_dout_x_hat = np.zeros(P)
        for n in range(N):
            for p in range(P):
                x_hat = (x3[n, c, p] - mu) * r
                sums_dout[p] += dout3[n, c, p]
                sums_dout_x_hat[p] += dout3[n, c, p] * x_hat
        sum_dout, sum_dout_x_hat = 0.0, 0.0
        for p in range(P):
            sum_dout += sums_dout[p]
            sum_dout_x_hat += sums_dout_x_hat[p]
        dbeta[c] = sum_dout
        dgamma[c] = sum_dout_x_hat
        mean_dout = x.dtype.type(sum_dout / count)
        mean_dout_x_hat = x.dtype.type(sum_dout_x_hat / count)
        scale = gamma[c] * r
        for n in range(N):
            for p in range(P):
                x_hat = (x3[n, c, p] - mu) * r
                dx3[n, c, p] = scale * (dout3[n, c, p] - mean_dout - x_hat * mean_dout_x_hat)
