"""Softmax and the softmax cross-entropy loss for classification (notebooks 04 and 06).

Both subtract each row's maximum before ``exp`` (the log-sum-exp trick), so huge logits give
finite probabilities and a finite loss instead of overflowing.

Plain NumPy, not Numba kernels: a batch of logits (64 × 10) is a few microseconds of work either
way, and the two kernels (softmax, and the loss with its gradient) took 0.5–0.8 s per dtype to
compile, in every notebook that classifies, whenever Numba's cache was empty (issue 11: Colab).
"""

from __future__ import annotations

import numpy as np

from ._check import as_float_array


def softmax(logits: object) -> np.ndarray:
    """``probs[n, c] = exp(logits[n, c]) / Σ_k exp(logits[n, k])``: each row sums to 1.

    logits: (N, C), or (C,) for one sample. probs: the same shape and float dtype.
    """
    logits = as_float_array(logits, "logits")
    if logits.ndim not in (1, 2):
        raise ValueError(f"logits must have shape (N, C) or (C,), but it has shape {logits.shape}")
    if logits.shape[-1] == 0:
        raise ValueError("logits has no classes (C = 0); softmax needs at least one")
    probs, _, _ = _softmax_rows(logits.reshape(-1, logits.shape[-1]))
    return probs.reshape(logits.shape)


def _softmax_rows(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p = softmax(z)`` for every row of z (N, C); also ``m`` = the row maxima and
    ``log Σ_c exp(z_c − m)``, both (N, 1). A row holding NaN gives NaN in that row only."""
    m = z.max(axis=1, keepdims=True)
    p = np.exp(z - m)  # every exponent ≤ 0: no overflow
    total = p.sum(axis=1, keepdims=True)
    p /= total
    return p, m, np.log(total)


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
    rows = np.arange(n_samples)
    dlogits, m, log_total = _softmax_rows(logits)
    # log Σ_c exp(z_c − m) − (z_y − m), not (m + log Σ) − z_y: m may be huge
    row_loss = log_total[:, 0] - (logits[rows, labels] - m[:, 0])
    loss = float(np.sum(row_loss, dtype=np.float64) / n_samples)
    dlogits[rows, labels] -= 1
    dlogits *= logits.dtype.type(1 / n_samples)
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
