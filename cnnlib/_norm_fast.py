"""The fast kernels of batch normalization: the sums of ``norm.py``'s readable kernels,
arranged so that they vectorise. ``norm.batch_norm_forward`` / ``batch_norm_backward`` call them
unless ``method="readable"``; the tests check both give the same numbers.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange


@kernel
def batch_norm_forward_kernel(x, gamma, beta, eps, out, mean, var, rstd):
    """``batch_norm_stats_kernel`` and ``batch_norm_apply_kernel`` in one pass per channel,
    arranged so that the loops vectorise.

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
    for c in prange(C):  # each iteration owns out[:, c], mean[c], var[c] and rstd[c]
        sums = np.zeros(P)  # float64
        for n in range(N):
            for p in range(P):
                sums[p] += x3[n, c, p]
        mu = sums.sum() / count
        sums[:] = 0.0
        for n in range(N):
            for p in range(P):
                d = x3[n, c, p] - mu
                sums[p] += d * d
        squares = sums.sum()
        mean[c] = mu
        var[c] = squares / count
        rstd[c] = 1.0 / np.sqrt(squares / count + eps)
        mu_c, r, g, b = mean[c], rstd[c], gamma[c], beta[c]  # in x's dtype, as in the apply kernel
        for n in range(N):
            for p in range(P):
                out3[n, c, p] = g * ((x3[n, c, p] - mu_c) * r) + b


@kernel
def batch_norm_backward_kernel(dout, x, mean, rstd, gamma, dx, dgamma, dbeta):
    """``batch_norm_backward_kernel`` with one float64 partial sum per pixel position, so the
    sums vectorise (see ``batch_norm_forward_kernel``). Same formulas."""
    N, C, H, W = x.shape
    P = H * W
    count = N * P
    x3, dout3, dx3 = x.reshape(N, C, P), dout.reshape(N, C, P), dx.reshape(N, C, P)
    for c in prange(C):  # each iteration owns dx[:, c], dgamma[c] and dbeta[c]
        mu, r = mean[c], rstd[c]
        sums_dout = np.zeros(P)  # float64
        sums_dout_x_hat = np.zeros(P)
        for n in range(N):
            for p in range(P):
                x_hat = (x3[n, c, p] - mu) * r
                sums_dout[p] += dout3[n, c, p]
                sums_dout_x_hat[p] += dout3[n, c, p] * x_hat
        sum_dout, sum_dout_x_hat = sums_dout.sum(), sums_dout_x_hat.sum()
        dbeta[c] = sum_dout
        dgamma[c] = sum_dout_x_hat
        mean_dout = x.dtype.type(sum_dout / count)
        mean_dout_x_hat = x.dtype.type(sum_dout_x_hat / count)
        scale = gamma[c] * r
        for n in range(N):
            for p in range(P):
                x_hat = (x3[n, c, p] - mu) * r
                dx3[n, c, p] = scale * (dout3[n, c, p] - mean_dout - x_hat * mean_dout_x_hat)
