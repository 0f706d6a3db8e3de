"""Normalization layers: batch, layer and group normalization (lecture §四 正規化層).

Each normalizes x over a set of values with their mean μ and biased variance σ² (divide by the
count M), then scales and shifts per channel c:

    x̂ = (x − μ) / sqrt(σ² + eps),    out = gamma[c] · x̂ + beta[c]

BatchNorm: one μ, σ² per channel over (N, H, W). GroupNorm: one per sample and group of C/G
channels over (C/G, H, W). LayerNorm: GroupNorm with one group (per sample over C, H, W).

Precision: the statistics are computed in two passes (first μ, then Σ(x − μ)², which does not
cancel like Σx² − Mμ² can), and every sum over many values — μ, σ², dgamma, dbeta and the two
sums in dx — is accumulated in float64, also for float32 input (a float32 running sum of
M = 10⁵ values can be off by up to M·2⁻²⁴ ≈ 0.6 %). The per-element work (x̂, out, dx) runs in
x's dtype, and every output, gradient and cached statistic has x's dtype.
Batch norm's public functions run the kernels of ``_norm_fast.py`` unless ``method="readable"``:
the same sums arranged so that they vectorise (one partial sum per pixel position), tested equal
to the readable kernels here. The other functions have one kernel, which serves both methods.
Notebook 03 teaches this module.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _norm_fast
from ._check import (
    as_float_array,
    as_int,
    as_positive_float,
    check_cache,
    check_dout,
    check_method,
    check_ndim,
    float_dtype,
)
from ._jit import chunk_kernel, kernel, prange
from ._loops import _in_sample_pieces

_PER_THREAD = 16384  # values of x: fewer per thread, and waking a thread costs more than it saves

__all__ = [
    "BatchNormCache",
    "BatchNormEvalCache",
    "GroupNormCache",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_norm_eval_forward",
    "batch_norm_forward",
    "batch_norm_inference",
    "group_norm_backward",
    "group_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
]


def _norm_args(
    x: object, gamma: object, beta: object, eps: object, **stats: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, list[np.ndarray]]:
    """Checked (x, gamma, beta, eps, [stats…]) in one float dtype; every 1-D array is (C,)."""
    dtype = float_dtype(x, gamma, beta, *stats.values())
    x = as_float_array(x, "x", dtype)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    if x.size == 0:
        raise ValueError(f"x is empty (shape {x.shape}); there is nothing to normalize")
    C = x.shape[1]
    per_channel = {"gamma": gamma, "beta": beta, **stats}
    arrays = []
    for name, value in per_channel.items():
        arr = as_float_array(value, name, dtype)
        if arr.shape != (C,):
            raise ValueError(
                f"{name} has shape {arr.shape} but x has {C} channels; {name} needs shape ({C},)"
            )
        arrays.append(arr)
    gamma, beta, *stat_arrays = arrays
    return x, gamma, beta, as_positive_float(eps, "eps"), stat_arrays


# ------------------------------------------------------------------------- batch norm


class BatchNormCache(NamedTuple):
    """What ``batch_norm_backward`` needs, plus the batch statistics for running averages.

    x (N, C, H, W) and gamma (C,) as used in the forward; per channel, all (C,) in x's dtype:
    ``mean`` μ, ``var`` the biased variance σ² (divided by M = N·H·W; the unbiased estimate
    is var·M/(M − 1)), and ``rstd`` = 1 / sqrt(σ² + eps).
    """

    x: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    rstd: np.ndarray
    method: str = "fast"


def batch_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5, *,
    method: str = "fast",
) -> tuple[np.ndarray, BatchNormCache]:
    """Batch normalization, training mode: statistics of this batch, per channel over N, H, W.

    μ[c] = mean of x[:, c], σ²[c] = mean of (x[:, c] − μ[c])² (biased),
    out[n, c, h, w] = gamma[c] · (x[n, c, h, w] − μ[c]) / sqrt(σ²[c] + eps) + beta[c].
    x: (N, C, H, W) with N·H·W > 1; gamma, beta: (C,); eps > 0. Returns out (N, C, H, W) in
    the common float dtype and a ``BatchNormCache`` (x, gamma, mean, var, rstd).
    Evaluation mode (running statistics) is ``batch_norm_inference`` / ``batch_norm_eval_*``.
    ``method="readable"`` runs ``batch_norm_stats_kernel`` then ``batch_norm_apply_kernel``.
    Notebook 03 (lecture §四 バッチ正規化).
    """
    method = check_method(method)
    x, gamma, beta, eps, _ = _norm_args(x, gamma, beta, eps)
    N, C, H, W = x.shape
    if N * H * W < 2:
        raise ValueError(
            f"batch_norm needs more than 1 value per channel in training mode, but x has "
            f"shape {x.shape} (N·H·W = {N * H * W}); PyTorch has the same rule"
        )
    mean, var, rstd = (np.empty(C, dtype=x.dtype) for _ in range(3))
    out = np.empty_like(x)
    if method == "readable":
        batch_norm_stats_kernel(x, eps, mean, var, rstd)
        _in_sample_pieces(batch_norm_apply_kernel, (x, mean, rstd, gamma, beta, out), (0, 5),
                          _PER_THREAD)
    else:
        _norm_fast.batch_norm_forward_kernel(x, gamma, beta, eps, out, mean, var, rstd)
    return out, BatchNormCache(x, gamma, mean, var, rstd, method)


@kernel
def batch_norm_stats_kernel(x, eps, mean, var, rstd):
    N, C, H, W = x.shape
    count = N * H * W
    for c in prange(C):  # each iteration owns mean[c], var[c] and rstd[c]
        total = 0.0  # float64 on purpose, also for float32 x (see the module docstring)
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    total += x[n, c, h, w]
        mu = total / count  # μ = Σ x / M
        squares = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    d = x[n, c, h, w] - mu
                    squares += d * d
        mean[c] = mu
        var[c] = squares / count  # σ² = Σ (x − μ)² / M
        rstd[c] = 1.0 / np.sqrt(squares / count + eps)


@chunk_kernel
def batch_norm_apply_kernel(x, mean, rstd, gamma, beta, out):
    N, C, H, W = x.shape
    # serial (it compiles in a fraction of a prange loop's time); every sample is independent
    # here, so the callers run a piece of the batch on each thread
    for c in range(C):  # each iteration owns the channel out[:, c]
        mu, r, g, b = mean[c], rstd[c], gamma[c], beta[c]
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r  # x̂ = (x − μ) / sqrt(σ² + eps)
                    out[n, c, h, w] = g * x_hat + b  # y = γ x̂ + β


def batch_norm_inference(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = 1e-5,
) -> np.ndarray:
    """Batch normalization, evaluation mode: the same formula with fixed statistics.

    out[n, c, h, w] = gamma[c] · (x[n, c, h, w] − running_mean[c]) / sqrt(running_var[c] + eps)
    + beta[c]. x: (N, C, H, W); gamma, beta, running_mean, running_var (≥ 0): (C,).
    Returns out (N, C, H, W) in the common float dtype; no cache (nothing is learned here).
    """
    x, gamma, beta, eps, (running_mean, running_var) = _norm_args(
        x, gamma, beta, eps, running_mean=running_mean, running_var=running_var
    )
    if np.any(running_var < 0):
        raise ValueError("running_var has negative entries; a variance must be >= 0")
    rstd = 1 / np.sqrt(running_var + eps)  # (C,), in x's dtype
    out = np.empty_like(x)
    _in_sample_pieces(batch_norm_apply_kernel, (x, running_mean, rstd, gamma, beta, out), (0, 5),
                      _PER_THREAD)
    return out


class BatchNormEvalCache(NamedTuple):
    """What ``batch_norm_eval_backward`` needs: x, gamma and the fixed statistics, (C,) each."""

    x: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray  # the running mean
    rstd: np.ndarray  # 1 / sqrt(running_var + eps)


def batch_norm_eval_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
    running_var: np.ndarray, eps: float = 1e-5, *, method: str = "fast",
) -> tuple[np.ndarray, BatchNormEvalCache]:
    """``batch_norm_inference`` as a forward/backward pair (``BatchNorm2d`` in ``eval()`` mode):
    the same out, and a ``BatchNormEvalCache`` for ``batch_norm_eval_backward``. One kernel
    serves both methods."""
    check_method(method)
    out = batch_norm_inference(x, gamma, beta, running_mean, running_var, eps)
    dtype = out.dtype
    x = as_float_array(x, "x", dtype)
    mean = as_float_array(running_mean, "running_mean", dtype)
    rstd = 1 / np.sqrt(as_float_array(running_var, "running_var", dtype) + dtype.type(eps))
    return out, BatchNormEvalCache(x, as_float_array(gamma, "gamma", dtype), mean, rstd)


def batch_norm_eval_backward(
    dout: np.ndarray, cache: BatchNormEvalCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the evaluation-mode affine map ``out = gamma·(x − mean)·rstd + beta``
    (the statistics are constants here): dx = dout·gamma[c]·rstd[c], dgamma[c] = Σ dout·x̂,
    dbeta[c] = Σ dout over (N, H, W), with x̂ = (x − mean[c])·rstd[c]."""
    check_cache(cache, BatchNormEvalCache, "batch_norm_eval")
    x = cache.x
    dout = check_dout(dout, x.shape, x.dtype, "batch_norm_eval")
    per_channel = (slice(None), None, None)
    dx = dout * (cache.gamma * cache.rstd)[per_channel]
    x_hat = (x - cache.mean[per_channel]) * cache.rstd[per_channel]
    return dx, (dout * x_hat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def batch_norm_backward(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of batch normalization (training mode), per channel c over M = N·H·W values.

    dbeta[c] = Σ dout,  dgamma[c] = Σ dout · x̂,
    dx = gamma[c] · rstd[c] · (dout − dbeta[c] / M − x̂ · dgamma[c] / M)
    (μ and σ² depend on x too, which gives the two mean terms).
    dout: (N, C, H, W); cache from ``batch_norm_forward``. Returns dx (N, C, H, W),
    dgamma (C,), dbeta (C,) in x's dtype.
    """
    check_cache(cache, BatchNormCache, "batch_norm")
    dout = check_dout(dout, cache.x.shape, cache.x.dtype, "batch_norm")
    dx = np.empty_like(cache.x)
    dgamma, dbeta = np.empty_like(cache.gamma), np.empty_like(cache.gamma)
    backward = (batch_norm_backward_kernel if cache.method == "readable"
                else _norm_fast.batch_norm_backward_kernel)
    backward(dout, cache.x, cache.mean, cache.rstd, cache.gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


@kernel
def batch_norm_backward_kernel(dout, x, mean, rstd, gamma, dx, dgamma, dbeta):
    N, C, H, W = x.shape
    count = N * H * W
    for c in prange(C):  # each iteration owns dx[:, c], dgamma[c] and dbeta[c]
        mu, r = mean[c], rstd[c]
        sum_dout = 0.0  # float64 on purpose, also for float32 x
        sum_dout_x_hat = 0.0
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r
                    sum_dout += dout[n, c, h, w]
                    sum_dout_x_hat += dout[n, c, h, w] * x_hat
        dbeta[c] = sum_dout
        dgamma[c] = sum_dout_x_hat
        mean_dout = x.dtype.type(sum_dout / count)
        mean_dout_x_hat = x.dtype.type(sum_dout_x_hat / count)
        scale = gamma[c] * r
        for n in range(N):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r
                    dx[n, c, h, w] = scale * (
                        dout[n, c, h, w] - mean_dout - x_hat * mean_dout_x_hat
                    )


# ------------------------------------------------------------------ group and layer norm


class GroupNormCache(NamedTuple):
    """What ``group_norm_backward`` / ``layer_norm_backward`` need.

    x (N, C, H, W) and gamma (C,) as used in the forward; per sample and group, both (N, G) in
    x's dtype: ``mean`` μ and ``rstd`` = 1 / sqrt(σ² + eps). G = 1 for layer norm.
    """

    x: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    rstd: np.ndarray


def group_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, groups: int, eps: float = 1e-5, *,
    method: str = "fast",
) -> tuple[np.ndarray, GroupNormCache]:
    """Group normalization: each sample's channels in ``groups`` consecutive groups of C/G.

    For sample n and group g (channels c with c // (C/G) = g): μ[n, g], σ²[n, g] over those
    channels and all H, W (biased); out[n, c, h, w] = gamma[c] · (x − μ[n, g]) ·
    rstd[n, g] + beta[c] with rstd = 1 / sqrt(σ² + eps). Independent of the batch size.
    x: (N, C, H, W); gamma, beta: (C,); groups divides C; eps > 0. Returns out (N, C, H, W)
    and a ``GroupNormCache`` (x, gamma, mean (N, G), rstd (N, G)).
    Notebook 03 (lecture §四 その他の正規化).
    """
    check_method(method)  # one kernel for both
    x, gamma, beta, eps, _ = _norm_args(x, gamma, beta, eps)
    C = x.shape[1]
    groups = as_int(groups, "groups", minimum=1)
    if C % groups != 0:
        raise ValueError(
            f"C={C} channels cannot be split into {groups} groups; choose groups that divide {C}"
        )
    out = np.empty_like(x)
    mean = np.empty((x.shape[0], groups), dtype=x.dtype)
    rstd = np.empty_like(mean)
    args = (x, gamma, beta, eps, out, mean, rstd)
    _in_sample_pieces(group_norm_kernel, args, (0, 4, 5, 6), _PER_THREAD)
    return out, GroupNormCache(x, gamma, mean, rstd)


@chunk_kernel
def group_norm_kernel(x, gamma, beta, eps, out, mean, rstd):
    N, C, H, W = x.shape
    G = mean.shape[1]
    C_g = C // G  # channels per group
    count = C_g * H * W
    # each iteration owns group g of sample n: out[n, g·C_g:(g+1)·C_g], mean[n, g], rstd[n, g]
    # (serial: it compiles in a fraction of a prange loop's time; group_norm_forward runs a
    # piece of the batch on each thread)
    for ng in range(N * G):
        n, g = ng // G, ng % G
        total = 0.0  # float64 on purpose, also for float32 x (see the module docstring)
        for c in range(g * C_g, (g + 1) * C_g):
            for h in range(H):
                for w in range(W):
                    total += x[n, c, h, w]
        mu64 = total / count
        squares = 0.0
        for c in range(g * C_g, (g + 1) * C_g):
            for h in range(H):
                for w in range(W):
                    d = x[n, c, h, w] - mu64
                    squares += d * d
        mean[n, g] = mu64
        rstd[n, g] = 1.0 / np.sqrt(squares / count + eps)
        mu, r = mean[n, g], rstd[n, g]  # rounded to x's dtype for the per-element work
        for c in range(g * C_g, (g + 1) * C_g):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r
                    out[n, c, h, w] = gamma[c] * x_hat + beta[c]


def group_norm_backward(
    dout: np.ndarray, cache: GroupNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of group normalization; per sample n and group g over M = (C/G)·H·W values.

    dbeta[c] = Σ_{n,h,w} dout,  dgamma[c] = Σ_{n,h,w} dout · x̂;  with dx̂ = gamma[c] · dout,
    dx = rstd[n, g] · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)), both means over the group.
    dout: (N, C, H, W); cache from ``group_norm_forward`` or ``layer_norm_forward``.
    Returns dx (N, C, H, W), dgamma (C,), dbeta (C,) in x's dtype.
    """
    check_cache(cache, GroupNormCache, "group_norm")
    return _group_norm_backward(dout, cache, "group_norm")


def _group_norm_backward(
    dout: object, cache: GroupNormCache, layer: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dout = check_dout(dout, cache.x.shape, cache.x.dtype, layer)
    N, C = cache.x.shape[:2]
    dx = np.empty_like(cache.x)
    # per-sample parts, summed over n below, so that pieces of the batch on threads are race-free
    dgamma_parts = np.empty((N, C))  # float64, like every long sum here
    dbeta_parts = np.empty((N, C))
    args = (dout, cache.x, cache.gamma, cache.mean, cache.rstd, dx, dgamma_parts, dbeta_parts)
    _in_sample_pieces(group_norm_backward_kernel, args, (0, 1, 3, 4, 5, 6, 7), _PER_THREAD)
    dgamma = dgamma_parts.sum(axis=0).astype(cache.x.dtype)
    dbeta = dbeta_parts.sum(axis=0).astype(cache.x.dtype)
    return dx, dgamma, dbeta


@chunk_kernel
def group_norm_backward_kernel(dout, x, gamma, mean, rstd, dx, dgamma_parts, dbeta_parts):
    N, C, H, W = x.shape
    G = mean.shape[1]
    C_g = C // G
    count = C_g * H * W
    # each iteration owns group g of sample n: dx[n, g·C_g:(g+1)·C_g] and the same columns of
    # row n in dgamma_parts and dbeta_parts (serial, run a piece of the batch per thread)
    for ng in range(N * G):
        n, g = ng // G, ng % G
        mu, r = mean[n, g], rstd[n, g]
        sum_dx_hat = 0.0  # float64 on purpose, also for float32 x
        sum_dx_hat_x_hat = 0.0
        for c in range(g * C_g, (g + 1) * C_g):
            sum_dout = 0.0
            sum_dout_x_hat = 0.0
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r
                    sum_dout += dout[n, c, h, w]
                    sum_dout_x_hat += dout[n, c, h, w] * x_hat
            dbeta_parts[n, c] = sum_dout
            dgamma_parts[n, c] = sum_dout_x_hat
            sum_dx_hat += gamma[c] * sum_dout  # dx̂ = γ · dout
            sum_dx_hat_x_hat += gamma[c] * sum_dout_x_hat
        mean_dx_hat = x.dtype.type(sum_dx_hat / count)
        mean_dx_hat_x_hat = x.dtype.type(sum_dx_hat_x_hat / count)
        for c in range(g * C_g, (g + 1) * C_g):
            for h in range(H):
                for w in range(W):
                    x_hat = (x[n, c, h, w] - mu) * r
                    dx_hat = gamma[c] * dout[n, c, h, w]
                    dx[n, c, h, w] = r * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)


def layer_norm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5, *,
    method: str = "fast",
) -> tuple[np.ndarray, GroupNormCache]:
    """Layer normalization: each sample normalized over all its C, H, W values.

    μ[n], σ²[n] over x[n] (biased); out[n, c, h, w] = gamma[c] · (x − μ[n]) / sqrt(σ²[n] + eps)
    + beta[c]. This is group normalization with one group and runs the same kernel.
    x: (N, C, H, W); gamma, beta: (C,) (one scale and shift per channel); eps > 0.
    Returns out (N, C, H, W) and a ``GroupNormCache`` with mean, rstd of shape (N, 1).
    Notebook 03 (lecture §四 その他の正規化).
    """
    return group_norm_forward(x, gamma, beta, 1, eps, method=method)


def layer_norm_backward(
    dout: np.ndarray, cache: GroupNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of layer normalization: ``group_norm_backward`` with one group.

    dout: (N, C, H, W); cache from ``layer_norm_forward``. Returns dx (N, C, H, W),
    dgamma (C,), dbeta (C,) in x's dtype.
    """
    check_cache(cache, GroupNormCache, "layer_norm")
    return _group_norm_backward(dout, cache, "layer_norm")
