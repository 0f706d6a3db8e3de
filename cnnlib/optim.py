"""Stochastic gradient descent with momentum and weight decay, and two learning-rate schedules.

The lecture's update W ← W − η·∂L/∂W, extended as in PyTorch's ``torch.optim.SGD``:

    g = grad + weight_decay·p        (L2 penalty ½·weight_decay·‖p‖² folded into the gradient)
    v = momentum·v + g               (v = g on the first step)
    p = p − lr·v

Parameters are updated **in place**, so the layers see the new values without being told.
Notebook 06 trains a CNN with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from cnnlib._check import as_int, as_positive_float

__all__ = ["SGD", "CosineAnnealingLR", "StepLR"]


class SGD:
    """SGD over ``(param, grad)`` array pairs, e.g. ``SGD(model, lr=0.1, momentum=0.9)``.

    ``params_or_model``: anything with ``parameters()`` (a layer or ``Sequential``), or an
    iterable of ``(param, grad)`` pairs of float arrays with equal shapes. ``step()`` reads each
    grad array, so the layers must keep writing their gradients into the same arrays (cnnlib
    layers do). ``velocity[k]`` is the momentum buffer of the k-th pair (None before the first
    step, and always None when ``momentum == 0``). ``lr`` may be changed between steps.
    """

    def __init__(self, params_or_model: object, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.lr = as_positive_float(lr, "lr", allow_zero=True)
        self.momentum = as_positive_float(momentum, "momentum", allow_zero=True)
        self.weight_decay = as_positive_float(weight_decay, "weight_decay", allow_zero=True)
        pairs = params_or_model.parameters() if hasattr(params_or_model, "parameters") \
            else params_or_model
        if not isinstance(pairs, Iterable):
            raise TypeError(f"SGD needs a model or (param, grad) pairs, got "
                            f"{type(params_or_model).__name__}")
        self.params: list[tuple[np.ndarray, np.ndarray]] = [_check_pair(k, pair)
                                                            for k, pair in enumerate(pairs)]
        if not self.params:
            raise ValueError("SGD got no parameters to update (does the model have any layer "
                             "with weights?)")
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Set every gradient to 0 in place."""
        for _, grad in self.params:
            grad.fill(0)

    def step(self) -> None:
        """One update of every parameter, in place (formula in the module docstring)."""
        for k, (p, grad) in enumerate(self.params):
            g = grad + self.weight_decay * p if self.weight_decay else grad
            if self.momentum:
                if self.velocity[k] is None:
                    self.velocity[k] = np.array(g, dtype=p.dtype)
                else:
                    self.velocity[k] *= self.momentum
                    self.velocity[k] += g
                g = self.velocity[k]
            p -= self.lr * g

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"{len(self.params)} parameter arrays)")


def _check_pair(k: int, pair: object) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise TypeError(f"parameter {k}: expected a (param, grad) pair of arrays, got {pair!r}")
    p, grad = pair
    if not (isinstance(p, np.ndarray) and isinstance(grad, np.ndarray)):
        raise TypeError(f"parameter {k}: param and grad must be NumPy arrays (updated in place)")
    if p.dtype.kind != "f":
        raise TypeError(f"parameter {k} has dtype {p.dtype}; SGD updates float arrays only")
    if p.shape != grad.shape:
        raise ValueError(f"parameter {k} has shape {p.shape} but its grad has {grad.shape}")
    return p, grad


class StepLR:
    """lr = base_lr · gamma^(epoch // step_size): divide the rate every ``step_size`` epochs.

    Pass it to ``fit(lr_schedule=...)`` (a function of the progress t in epochs, like every
    schedule), or in a loop of your own call ``step()`` once per epoch, after the epoch's
    optimiser steps; it sets ``optimizer.lr`` and returns it. ``base_lr`` is the optimiser's lr
    at construction.
    """

    def __init__(self, optimizer: SGD, step_size: int, gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.step_size = as_int(step_size, "step_size", 1)
        self.gamma = as_positive_float(gamma, "gamma")
        self.base_lr = optimizer.lr
        self.epoch = 0

    def __call__(self, t: float) -> float:
        """The lr at training progress t (in epochs), for ``fit(lr_schedule=...)``."""
        return self.base_lr * self.gamma ** (int(t) // self.step_size)

    def step(self) -> float:
        self.epoch += 1
        self.optimizer.lr = self(self.epoch)
        return self.optimizer.lr


class CosineAnnealingLR:
    """lr = eta_min + (base_lr − eta_min)·(1 + cos(π·epoch / T_max)) / 2, for epoch ≤ T_max.

    Starts at the optimiser's lr and reaches ``eta_min`` after ``T_max`` calls to ``step()``,
    then stays there (PyTorch's formula would climb again). Pass it to ``fit(lr_schedule=...)``
    or call ``step()`` once per epoch.
    """

    def __init__(self, optimizer: SGD, T_max: int, eta_min: float = 0.0) -> None:
        self.optimizer = optimizer
        self.T_max = as_int(T_max, "T_max", 1)
        self.eta_min = as_positive_float(eta_min, "eta_min", allow_zero=True)
        self.base_lr = optimizer.lr
        self.epoch = 0

    def __call__(self, t: float) -> float:
        """The lr at training progress t (in epochs), for ``fit(lr_schedule=...)``."""
        cosine = (1 + math.cos(math.pi * min(int(t), self.T_max) / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine

    def step(self) -> float:
        self.epoch += 1
        self.optimizer.lr = self(self.epoch)
        return self.optimizer.lr
