"""Training: the loop that turns the layers into a classifier, and the course's reference recipe.

``fit`` runs mini-batch SGD — forward, softmax cross-entropy, backward, ``optimizer.step()`` —
over shuffled batches, with a progress bar, and records per-epoch loss and accuracy in a
``History``. ``evaluate`` / ``predict`` run the model in eval mode; ``summary`` prints the
shape trace of a model (the lecture's flow: input → conv → pool → … → FC → softmax).

``python -m cnnlib.train --dataset fashion-mnist --seed 0`` trains the reference CNN of
notebook 06 (``make_cnn`` with ``RECIPES[dataset]``) and ends with ``test accuracy: 0.XXXX``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from cnnlib import data
from cnnlib._check import as_int
from cnnlib.layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
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


def predict(model: Layer, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's logits for ``x`` (N, …) → (N, K), computed in eval mode in batches.

    The model's training/eval mode is restored afterwards. Apply ``cnnlib.losses.softmax``
    for probabilities.
    """
    batch_size = as_int(batch_size, "batch_size", 1)
    was_training = model.training
    model.eval()
    try:
        outs = [model.forward(x[s : s + batch_size]) for s in _batches(len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs)


def evaluate(model: Layer, test_data: Dataset, batch_size: int = 1000) -> Evaluation:
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
    lr_schedule: Callable[[float], float] | object | None = None,
    rng: np.random.Generator | int | None = None,
    callback: Callable[[int, History], object] | None = None,
    callback_every: int | None = None,
    log_every: int = 20,
    progress: bool = True,
    verbose: bool = True,
    history: History | None = None,
) -> History:
    """Train ``model`` with ``optimizer`` on ``train_data = (x (N, C, H, W), y (N,))``. Each epoch
    shuffles the samples with ``rng`` (a Generator or a seed), then for every batch: ``logits =
    model.forward(xb)``, ``loss, dlogits = softmax_cross_entropy(logits, yb)``,
    ``model.backward(dlogits, input_grad=False)`` (no gradient of the images),
    ``optimizer.step()``; a loss that is not finite stops it with ``TrainingDiverged`` (which
    step, which loss, lower the learning rate). ``lr_schedule`` is either a function of the
    training progress t (in epochs, a float from 0 to ``epochs``) that returns the lr set before
    every step, or an object with ``step()`` (``cnnlib.optim.StepLR``), called after every
    epoch. After each epoch the model is evaluated on ``test_data``, a line is printed
    (``verbose``) and ``callback(epoch, history)`` is called — also every ``callback_every``
    batches if given (live plots; ``history.epochs`` counts the finished epochs). ``progress``
    shows a progress bar (a widget in a notebook). Pass a previous ``history`` to continue it.
    Returns the ``History``. Notebook 06 trains with it.
    """
    x, y = _check_data(train_data, "train_data")
    if test_data is not None:
        test_data = _check_data(test_data, "test_data")
    epochs = as_int(epochs, "epochs", 0)
    batch_size = as_int(batch_size, "batch_size", 1)
    log_every = as_int(log_every, "log_every", 1)
    if callback_every is not None:
        callback_every = as_int(callback_every, "callback_every", 1)
    rng = np.random.default_rng(rng)
    history = History() if history is None else history
    first_epoch = history.epochs
    per_step = callable(lr_schedule) and not hasattr(lr_schedule, "step")
    steps = math.ceil(len(x) / batch_size)
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        order = rng.permutation(len(x))
        loss_sum, correct = 0.0, 0
        window_loss, window_correct, window_n = 0.0, 0, 0
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=False, unit="batch")
        for k, s in enumerate(_batches(len(x), batch_size)):
            if per_step:
                optimizer.lr = float(lr_schedule(epoch + k / steps))
            idx = order[s : s + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model.forward(xb)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            if not math.isfinite(loss):
                bar.close()
                raise _diverged(float(loss), epoch, k, optimizer.lr)
            backward_params(model, dlogits)  # the images need no gradient
            optimizer.step()
            hits = int(np.sum(logits.argmax(axis=1) == yb))
            loss_sum += float(loss) * len(idx)
            correct += hits
            window_loss += float(loss) * len(idx)
            window_correct += hits
            window_n += len(idx)
            bar.update()
            if (k + 1) % log_every == 0 or k + 1 == steps:
                history.step_t.append(first_epoch + epoch + (k + 1) / steps)
                history.step_loss.append(window_loss / window_n)
                history.step_acc.append(window_correct / window_n)
                bar.set_postfix(loss=f"{history.step_loss[-1]:.3f}")
                window_loss, window_correct, window_n = 0.0, 0, 0
            if callback is not None and callback_every and (k + 1) % callback_every == 0:
                callback(epoch, history)
        bar.close()
        lr_used = optimizer.lr
        if lr_schedule is not None and not per_step:
            lr_schedule.step()
        test = Evaluation(math.nan, math.nan)
        if test_data is not None:
            test = evaluate(model, test_data)
        history.train_loss.append(loss_sum / len(x))
        history.train_acc.append(correct / len(x))
        history.test_loss.append(test.loss)
        history.test_acc.append(test.accuracy)
        history.lr.append(lr_used)
        history.seconds.append(time.perf_counter() - start)
        if verbose:
            print(history.line(history.epochs - 1, first_epoch + epochs), flush=True)
        if callback is not None:
            callback(epoch, history)
    return history


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


# --------------------------------------------------------------------------- reference recipe


def zero_head(model: Sequential) -> Sequential:
    """Set the weights of the model's last layer (the classifier) to zero, in place.

    Every class then starts equally likely: the initial loss is exactly ln(n_classes), and the
    first steps cannot throw the logits far off (the last Linear layer sums thousands of
    inputs, so a He-initialised one starts with large, random logits).
    """
    model.layers[-1].params["w"][...] = 0
    return model


def make_cnn(
    in_channels: int = 1,
    n_classes: int = 10,
    image_size: int = 28,
    channels: tuple[int, int] = (16, 32),
    rng: np.random.Generator | None = None,
) -> Sequential:
    """The course's CNN: two blocks of Conv 3×3 (padding 1) → BatchNorm → ReLU → MaxPool 2,
    then Flatten → Linear to ``n_classes`` logits (softmax is in the loss); ``zero_head``.

    (N, in_channels, S, S) → (N, c1, S/2, S/2) → (N, c2, S/4, S/4) → (N, n_classes).
    """
    c1, c2 = channels
    side = image_size // 4
    return zero_head(Sequential(
        Conv2d(in_channels, c1, 3, padding=1, rng=rng), BatchNorm2d(c1), ReLU(), MaxPool2d(2),
        Conv2d(c1, c2, 3, padding=1, rng=rng), BatchNorm2d(c2), ReLU(), MaxPool2d(2),
        Flatten(), Linear(c2 * side * side, n_classes, rng=rng),
    ))


def make_mlp(
    in_features: int, hidden: int = 128, n_classes: int = 10, rng: np.random.Generator | None = None
) -> Sequential:
    """A multilayer perceptron for comparison: Flatten → Linear → ReLU → Linear; ``zero_head``."""
    return zero_head(Sequential(
        Flatten(), Linear(in_features, hidden, rng=rng), ReLU(), Linear(hidden, n_classes, rng=rng)
    ))


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of the reference run on one dataset (SGD + ``warmup_cosine``)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    small_train: int = 6000  # samples used with --small / CNNLIB_SMALL=1
    small_test: int = 2000


# Fashion-MNIST: 5 epochs reach ≈ 0.91 test accuracy; benchmarks/bench_train.py times it.
# The peak lr stays ≤ 0.05 because the last Linear layer sums 1568 inputs, which multiplies the
# effect of each step on the logits.
RECIPES = {
    "fashion-mnist": Recipe(epochs=5, batch_size=128, lr=0.05),
    "mnist": Recipe(epochs=5, batch_size=128, lr=0.05),
    "shapes": Recipe(epochs=5, batch_size=64, lr=0.02, small_train=2000, small_test=500),
}


def load_dataset(name: str, small: bool = False, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``(train, test)`` for ``"fashion-mnist"``, ``"mnist"`` or ``"shapes"``; ``small``
    keeps the first ``Recipe.small_train`` / ``small_test`` samples (fast CI runs)."""
    if name not in RECIPES:
        raise ValueError(f"dataset must be one of {sorted(RECIPES)}, got {name!r}")
    recipe = RECIPES[name]
    if name == "shapes":
        n_train, n_test = (recipe.small_train, recipe.small_test) if small else (10000, 2000)
        return data.make_shapes(n_train, seed=seed), data.make_shapes(n_test, seed=seed + 1)
    load = data.load_fashion_mnist if name == "fashion-mnist" else data.load_mnist
    train, test = load("train"), load("test")
    if small:
        train = (train[0][: recipe.small_train], train[1][: recipe.small_train])
        test = (test[0][: recipe.small_test], test[1][: recipe.small_test])
    return train, test


def is_small() -> bool:
    """True when ``CNNLIB_SMALL=1`` asks notebooks and scripts for their quick mode (CI)."""
    return os.environ.get("CNNLIB_SMALL", "") not in ("", "0")


def run_recipe(
    dataset: str = "fashion-mnist",
    seed: int = 0,
    small: bool = False,
    callback: Callable[[int, History], object] | None = None,
    progress: bool = True,
    **overrides: float,
) -> tuple[Sequential, History, tuple[Dataset, Dataset]]:
    """Train ``make_cnn`` on ``dataset`` with ``RECIPES[dataset]`` (fields such as
    ``epochs=1`` override it); returns the trained model, its history and the
    ``(train, test)`` data it used."""
    train, test = load_dataset(dataset, small=small, seed=seed)
    recipe = dataclasses.replace(RECIPES[dataset], **overrides)
    epochs = recipe.epochs
    rng = np.random.default_rng(seed)
    _, c, s, _ = train[0].shape
    model = make_cnn(c, int(train[1].max()) + 1, s, rng=rng)
    optimizer = SGD(model, lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay)
    history = fit(model, optimizer, train, test, epochs, recipe.batch_size,
                  lr_schedule=warmup_cosine(recipe.lr, epochs), rng=rng,
                  callback=callback, progress=progress)
    return model, history, (train, test)


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> float:
    """The command line; returns the final test accuracy. Bad flags exit with argparse's usage
    message (code 2); a diverging run prints the reason and exits with code 1."""
    parser = argparse.ArgumentParser(
        prog="python -m cnnlib.train", description="Train the reference CNN of notebook 06."
    )
    parser.add_argument("--dataset", choices=sorted(RECIPES), default="fashion-mnist")
    parser.add_argument("--seed", type=_count(0), default=0)
    parser.add_argument("--epochs", type=_count(1), default=None, help="default: the recipe's")
    parser.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate")
    parser.add_argument("--batch-size", type=_count(1), default=None)
    parser.add_argument("--small", action="store_true", help="a subset, for a quick check")
    parser.add_argument("--no-progress", action="store_true", help="only the per-epoch lines")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    small = args.small or is_small()
    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr),
                                   ("batch_size", args.batch_size)) if v is not None}
    try:
        _, history, _ = run_recipe(args.dataset, args.seed, small=small,
                                   progress=not args.no_progress, **overrides)
    except TrainingDiverged as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"total time: {time.perf_counter() - start:.1f} s")
    print(f"test accuracy: {history.test_acc[-1]:.4f}")
    return history.test_acc[-1]


if __name__ == "__main__":
    main()
