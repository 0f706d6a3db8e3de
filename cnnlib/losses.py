"""Softmax and the softmax cross-entropy loss for classification (notebooks 04 and 06).

Both subtract each row's maximum before ``exp`` (the log-sum-exp trick), so huge logits give
finite probabilities and a finite loss instead of overflowing.
"""

from __future__ import annotations

import math

import numpy as np

from ._check import as_float_array
from ._jit import kernel, prange, serial_kernel


def softmax(logits: object) -> np.ndarray:
    """``probs[n, c] = exp(logits[n, c]) / Σ_k exp(logits[n, k])``: each row sums to 1.

    logits: (N, C), or (C,) for one sample. probs: the same shape and float dtype.
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim not in (1, 2):
        raise ValueError(f"logits must have shape (N, C) or (C,), but it has shape {logits.shape}")
    if logits.shape[-1] == 0:
        raise ValueError("logits has no classes (C = 0); softmax needs at least one")
    probs = np.empty_like(logits)
    _softmax_kernel(logits.reshape(-1, logits.shape[-1]), probs.reshape(-1, logits.shape[-1]))
    return probs


@kernel
def _softmax_kernel(logits, probs):
    for n in prange(logits.shape[0]):  # row n writes probs[n] only
        _softmax_row(logits[n], probs[n])


@serial_kernel
def _softmax_row(z, p):
    """Write ``p = softmax(z)`` for one row z; return ``(m, log Σ_c exp(z_c − m))``, m = max z."""
    m = z[0]
    for c in range(1, z.size):
        m = max(m, z[c])
    total = z.dtype.type(0)
    for c in range(z.size):
        p[c] = math.exp(z[c] - m)  # ≤ 1: no overflow
        total += p[c]
    for c in range(z.size):
        p[c] /= total
    return m, math.log(total)


def softmax_cross_entropy(logits: object, labels: object) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer class labels, and its gradient.

    ``loss = (1/N) Σ_n [log Σ_c exp(logits[n, c]) − logits[n, labels[n]]]`` (= −log p of the
    right class, averaged), ``dlogits = (softmax(logits) − onehot(labels)) / N``.
    logits: (N, C) float. labels: (N,) integers in [0, C) (class indices, not one-hot).
    loss: a Python float. dlogits: (N, C) in the logits' float dtype.
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim != 2:
        hint = " For one sample use logits[None] and labels [y]." if logits.ndim == 1 else ""
        raise ValueError(
            f"logits must have 2 dimensions (N, C), but it has {logits.ndim} "
            f"(shape {logits.shape}).{hint}"
        )
    n_samples, n_classes = logits.shape
    if n_samples == 0 or n_classes == 0:
        raise ValueError(f"logits has shape {logits.shape}; the loss needs N ≥ 1 and C ≥ 1")
    labels = _check_labels(labels, n_samples, n_classes)
    dlogits = np.empty_like(logits)
    row_loss = np.empty(n_samples, dtype=logits.dtype)
    _softmax_cross_entropy_kernel(logits, labels, dlogits, row_loss)
    loss = float(np.sum(row_loss, dtype=np.float64) / n_samples)
    return loss, dlogits


def _check_labels(labels: object, n_samples: int, n_classes: int) -> np.ndarray:
    """labels as an int64 array of shape (N,) with every value in [0, C)."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape == (n_samples, n_classes):
        raise ValueError(
            f"labels has shape {arr.shape}, like one-hot rows; pass class indices of shape "
            f"({n_samples},) instead: labels.argmax(axis=1)"
        )
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be integer class indices, got dtype {arr.dtype}; convert whole-number "
            f"labels with labels.astype(np.int64)"
        )
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,) = ({n_samples},), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"got {arr.shape[0]} labels for {n_samples} rows of logits; "
            f"there must be one label per sample"
        )
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        raise ValueError(
            f"labels must be integers in [0, {n_classes}); got {arr[bad[0]]} at index {bad[0]}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


@serial_kernel
def _softmax_cross_entropy_kernel(logits, labels, dlogits, row_loss):
    """Row n, with z = logits[n], y = labels[n], m = max z:
    ``row_loss[n] = log Σ_c exp(z_c − m) − (z_y − m)``,
    ``dlogits[n] = (softmax(z) − onehot(y)) / N``.

    Serial on purpose: a batch of logits (64 × 10) is a few microseconds of work, less than
    waking a second thread costs, and this runs once per training step (notebook 07).
    """
    one = logits.dtype.type(1)
    inv_n = logits.dtype.type(1 / logits.shape[0])
    for n in range(logits.shape[0]):
        y = labels[n]
        m, log_total = _softmax_row(logits[n], dlogits[n])
        row_loss[n] = log_total - (logits[n, y] - m)  # not (m + log_total) − z_y: m may be huge
        dlogits[n, y] -= one
        for c in range(logits.shape[1]):
            dlogits[n, c] *= inv_n
