"""Training: the loop that turns the layers into a classifier.

``fit`` runs mini-batch SGD — forward, softmax cross-entropy, backward, ``optimizer.step()`` —
over shuffled batches, with a progress bar, and records per-epoch loss and accuracy in a
``History``. ``evaluate`` / ``predict`` run the model in eval mode; ``summary`` prints the
shape trace of a model (the lecture's flow: input → conv → pool → … → FC → softmax).
The models live in ``cnnlib.models``, the reference recipe in ``cnnlib.recipe``;
``python -m cnnlib.train --dataset fashion-mnist --seed 0`` runs that recipe and ends with
``test accuracy: 0.XXXX``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from cnnlib._check import as_int
from cnnlib.layers import (
    Layer,
    Sequential,
    backward_params,
)
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD

Dataset = tuple[np.ndarray, np.ndarray]  # (images (N, C, H, W), labels (N,) int)


@dataclass
class History:
    """Per-epoch numbers recorded by ``fit`` (one entry per finished epoch).

    ``train_loss`` / ``train_acc`` average over the epoch's batches (model in training mode,
    weights still moving); ``test_loss`` / ``test_acc`` are measured after the epoch in eval
    mode (NaN without test data); ``lr`` is the rate at the epoch's last step; ``seconds`` the
    wall time of the epoch, evaluation included. Within epochs, every ``log_every`` batches,
    ``step_t`` records the progress in epochs (1.5 = half-way through the second) and
    ``step_loss`` / ``step_acc`` the mean loss / accuracy over those batches.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    step_t: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    step_acc: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def line(self, epoch: int, total: int | None = None) -> str:
        """One epoch as the text line ``python -m cnnlib.train`` prints (epoch counts from 0)."""
        of = f"/{total}" if total else ""
        return (
            f"epoch {epoch + 1}{of}: train loss {self.train_loss[epoch]:.4f}, "
            f"train acc {self.train_acc[epoch]:.4f}, test loss {self.test_loss[epoch]:.4f}, "
            f"test acc {self.test_acc[epoch]:.4f}, lr {self.lr[epoch]:.4g}, "
            f"{self.seconds[epoch]:.1f} s"
        )


class TrainingDiverged(FloatingPointError):
    """``fit`` stopped because the loss was not a finite number (the weights blew up)."""


def _diverged(loss: float, epoch: int, step: int, lr: float) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged: the loss became {loss} at step {step + 1} of epoch {epoch + 1} "
        f"(learning rate {lr:.3g}). Lower the learning rate (for example to {lr / 10:.3g}) and "
        f"train a freshly built model: this one's parameters are no longer finite numbers."
    )


class Evaluation(NamedTuple):
    """Mean softmax cross-entropy and the fraction of correct predictions."""

    loss: float
    accuracy: float


def _check_data(pair: object, name: str) -> Dataset:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"{name} must be an (images, labels) pair, got {type(pair).__name__}")
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} images must have shape (N, ...) with N ≥ 1, got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name} has {x.shape[0]} images but labels of shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} labels must be integers (class indices), got {y.dtype}")
    return x, y


def _batches(n: int, batch_size: int) -> range:
    return range(0, n, batch_size)


def predict(model: Layer, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The model's logits for ``x`` (N, …) → (N, K), computed in eval mode in batches.

    The model's training/eval mode is restored afterwards. Apply ``cnnlib.losses.softmax``
    for probabilities. Batches of 128 run as fast per sample as larger ones and keep each
    layer's output small (8 MB for 16 channels of 32×32), so malloc reuses the same memory
    from batch to batch; batches of 1000 made 65 MB arrays that every batch took fresh from
    the kernel, and touching fresh pages cost 0.2–1.9 s per ``evaluate`` on 2000 images in
    a VM instead of 0.13 s (``benchmarks/README.md``, issue 11).
    """
    batch_size = as_int(batch_size, "batch_size", 1)
    was_training = model.training
    model.eval()
    try:
        outs = [model.forward(x[s : s + batch_size]) for s in _batches(len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def evaluate(model: Layer, test_data: Dataset, batch_size: int = 128) -> Evaluation:
    """Loss and accuracy of ``model`` on ``(images, labels)``, in eval mode (BatchNorm uses
    its running statistics). Returns ``Evaluation(loss, accuracy)``."""
    x, y = _check_data(test_data, "test_data")
    logits = predict(model, x, batch_size)
    loss, _ = softmax_cross_entropy(logits, y)
    return Evaluation(float(loss), float(np.mean(logits.argmax(axis=1) == y)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """``cm[t, p]`` = how many samples of true class t were predicted as class p; (K, K) int64.

    The diagonal holds the correct predictions; row t sums to the number of samples of class t.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    n_classes = as_int(n_classes, "n_classes", 1)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    for name, a in (("labels", labels), ("predictions", predictions)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} must lie in 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def most_confused(cm: np.ndarray, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal entries of a confusion matrix as ``(true, predicted,
    count)``, largest first (ties in row-major order)."""
    off = np.array(cm, dtype=np.int64)
    np.fill_diagonal(off, -1)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    true, pred = np.unravel_index(order, off.shape)
    rows = [(int(t), int(p), int(off[t, p])) for t, p in zip(true, pred, strict=True)]
    return [row for row in rows if row[2] > 0]


def fit(
    model: Layer,
    optimizer: SGD,
    train_data: Dataset,
    test_data: Dataset | None = None,
    epochs: int = 1,
    batch_size: int = 64,
    *,
    lr_schedule: Callable[[float], float] | None = None,
    rng: np.random.Generator | int | None = None,
    callback: Callable[[int, History], object] | None = None,
    callback_every: int | None = None,
    log_every: int = 20,
    progress: bool = True,
    verbose: bool = True,
    history: History | None = None,
) -> History:
    """Train ``model`` with ``optimizer`` on ``train_data = (x (N, C, H, W), y (N,))``.

    Each epoch shuffles the samples with ``rng`` (a Generator or a seed); every batch is the
    four steps of the lecture: forward, loss, backward (``input_grad=False``: the images need no
    gradient), ``optimizer.step()``. A loss that is not finite stops training with
    ``TrainingDiverged`` (which step, which loss, lower the learning rate). ``lr_schedule`` is a
    function of the training progress t (in epochs, from 0 to ``epochs``) that returns the lr
    to use: ``warmup_cosine(peak_lr, epochs)``, ``StepLR(...)``, ``CosineAnnealingLR(...)`` or
    your own; it is set before every step. After each epoch the model is evaluated on
    ``test_data``, a line is printed (``verbose``) and ``callback(epoch, history)`` is called —
    also every ``callback_every`` batches if given (live plots). ``progress`` shows a progress
    bar. Pass a previous ``history`` to continue it. Returns the ``History``. Notebook 06.
    """
    x, y = _check_data(train_data, "train_data")
    test_data = None if test_data is None else _check_data(test_data, "test_data")
    epochs = as_int(epochs, "epochs", 0)
    batch_size = as_int(batch_size, "batch_size", 1)
    callback_every = None if callback_every is None else as_int(callback_every, "callback_every", 1)
    rng = np.random.default_rng(rng)
    log = _EpochLog(History() if history is None else history, len(x), batch_size, epochs,
                    as_int(log_every, "log_every", 1), progress)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        log.start(epoch)
        for k, s in enumerate(_batches(len(x), batch_size)):
            if lr_schedule is not None:
                optimizer.lr = float(lr_schedule(epoch + k / log.steps))
            xb, yb = x[order[s : s + batch_size]], y[order[s : s + batch_size]]
            logits = model.forward(xb)  # 1. forward
            loss, dlogits = softmax_cross_entropy(logits, yb)  # 2. loss
            if not math.isfinite(loss):
                log.close()
                raise _diverged(float(loss), epoch, k, optimizer.lr)
            backward_params(model, dlogits)  # 3. backward: every layer's grads
            optimizer.step()  # 4. W ← W − η·∂L/∂W
            log.batch(k, float(loss), logits, yb)
            if callback is not None and callback_every and (k + 1) % callback_every == 0:
                callback(epoch, log.history)
        test = Evaluation(math.nan, math.nan) if test_data is None else evaluate(model, test_data)
        log.end(test, optimizer.lr, verbose)
        if callback is not None:
            callback(epoch, log.history)
    return log.history


class _EpochLog:
    """The bookkeeping of ``fit``: running sums, ``History`` entries, the progress bar."""

    def __init__(self, history: History, n: int, batch_size: int, epochs: int, every: int,
                 progress: bool) -> None:
        self.history, self.n, self.epochs, self.every = history, n, epochs, every
        self.steps = math.ceil(n / batch_size)
        self.first_epoch = history.epochs
        self.progress = progress
        self.bar = None

    def start(self, epoch: int) -> None:
        self.epoch, self.started = epoch, time.perf_counter()
        self.loss_sum, self.correct = 0.0, 0
        self.window = [0.0, 0, 0]  # loss sum, hits, samples since the last history entry
        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}",
                        disable=not self.progress, leave=False, unit="batch")

    def batch(self, k: int, loss: float, logits: np.ndarray, labels: np.ndarray) -> None:
        hits, m = int(np.sum(logits.argmax(axis=1) == labels)), len(labels)
        self.loss_sum += loss * m
        self.correct += hits
        self.window = [self.window[0] + loss * m, self.window[1] + hits, self.window[2] + m]
        self.bar.update()
        if (k + 1) % self.every == 0 or k + 1 == self.steps:
            h = self.history
            h.step_t.append(self.first_epoch + self.epoch + (k + 1) / self.steps)
            h.step_loss.append(self.window[0] / self.window[2])
            h.step_acc.append(self.window[1] / self.window[2])
            self.bar.set_postfix(loss=f"{h.step_loss[-1]:.3f}")
            self.window = [0.0, 0, 0]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def end(self, test: Evaluation, lr: float, verbose: bool) -> None:
        self.close()
        h = self.history
        h.train_loss.append(self.loss_sum / self.n)
        h.train_acc.append(self.correct / self.n)
        h.test_loss.append(test.loss)
        h.test_acc.append(test.accuracy)
        h.lr.append(lr)
        h.seconds.append(time.perf_counter() - self.started)
        if verbose:
            print(h.line(h.epochs - 1, self.first_epoch + self.epochs), flush=True)


def warmup_cosine(peak_lr: float, epochs: float, warmup: float = 0.1) -> Callable[[float], float]:
    """An lr schedule for ``fit``: linear warm-up from ≈ 0 (never exactly 0) to ``peak_lr``
    over the first ``warmup`` fraction of training, then a cosine decay to 0 at t = ``epochs``.
    t is the training progress in epochs."""
    t_warm = warmup * epochs

    def lr(t: float) -> float:
        if t < t_warm:
            return peak_lr * (t + 1e-3) / t_warm
        progress = (t - t_warm) / max(epochs - t_warm, 1e-12)
        return peak_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return lr


# --------------------------------------------------------------------------- shape trace


def shape_trace(model: Sequential, input_shape: Sequence[int]) -> list[tuple[str, tuple, int]]:
    """Rows ``(layer, output shape, parameter count)`` for one sample of ``input_shape``
    (C, H, W), the first row being the input. Runs one forward pass in eval mode."""
    shape = tuple(as_int(s, "input_shape", 1) for s in input_shape)
    rows: list[tuple[str, tuple, int]] = [("input", shape, 0)]
    h = np.zeros((1, *shape), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        for k, layer in enumerate(model.layers):
            h = layer.forward(h)
            rows.append((f"{k}: {layer!r}", h.shape[1:], layer.num_parameters()))
    finally:
        model.train(was_training)
    return rows


def summary(model: Sequential, input_shape: Sequence[int]) -> int:
    """Print each layer's output shape (per sample) and parameter count; return the total."""
    rows = shape_trace(model, input_shape)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'layer':<{width}}  {'output shape':<16}{'params':>10}")
    for name, shape, count in rows:
        print(f"{name:<{width}}  {shape!s:<16}{count:>10,}")
    total = sum(count for _, _, count in rows)
    print(f"{'total parameters':<{width}}  {'':<16}{total:>10,}")
    return total


if __name__ == "__main__":  # python -m cnnlib.train: the reference recipe's command line
    from cnnlib.recipe import main

    main()
