"""The course's models, built from ``cnnlib.layers``: the reference CNN of notebook 06 and an
MLP to compare it with.
"""

from __future__ import annotations

import numpy as np

from cnnlib.layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential

__all__ = ["make_cnn", "make_mlp", "zero_head"]


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
