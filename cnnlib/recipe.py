"""The course's reference recipe and its command line: ``python -m cnnlib.train``.

``RECIPES`` holds the hyper-parameters per dataset; ``run_recipe`` trains ``make_cnn`` with them
(SGD with momentum and weight decay, ``warmup_cosine``); ``main`` is the command line, which ends
with ``test accuracy: 0.XXXX``. ``is_small()`` tells notebooks and scripts to use their quick
mode (``CNNLIB_SMALL=1``, as in CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cnnlib import data
from cnnlib.layers import Sequential
from cnnlib.models import make_cnn
from cnnlib.optim import SGD
from cnnlib.train import Dataset, History, TrainingDiverged, fit, warmup_cosine

__all__ = ["RECIPES", "Recipe", "is_small", "load_dataset", "main", "run_recipe"]


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
    if small:
        return load("train", limit=recipe.small_train), load("test", limit=recipe.small_test)
    return load("train"), load("test")


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
