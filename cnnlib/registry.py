"""Every forward/backward pair of the functional API, in one table.

``PAIRS`` maps a name such as ``"conv2d"`` to a ``Pair``: where its two functions live, a small
sample of arguments, and the names of the arrays its backward returns gradients for. Warm-up
(``python -m cnnlib.warmup``), the gradient-check table of notebook 05
(``cnnlib.widgets.backprop``) and the test grids all read this table, so a new layer is one
entry here. Every pair takes ``method="fast"`` or ``method="readable"`` (``METHODS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from cnnlib import activations, conv, linear, norm, pool
from cnnlib._check import METHODS

__all__ = ["METHODS", "PAIRS", "Pair"]

Sample = tuple[tuple[np.ndarray, ...], dict]


@dataclass(frozen=True)
class Pair:
    """One layer of the functional API: ``<name>_forward`` / ``<name>_backward`` in ``module``.

    ``sample(rng, dtype)`` returns ``(arrays, hyper)``: the array arguments of the forward and its
    keyword hyper-parameters, small enough for a numerical gradient check; ``grads`` names the
    arrays, in the order the backward returns their gradients; ``label`` is how tables show it.
    """

    name: str
    module: ModuleType
    sample: Callable[[np.random.Generator, np.dtype], Sample]
    grads: tuple[str, ...]
    label: str = ""

    @property
    def forward(self) -> Callable:
        return getattr(self.module, f"{self.name}_forward")  # looked up at call time

    @property
    def backward(self) -> Callable:
        return getattr(self.module, f"{self.name}_backward")

    def run(self, rng: np.random.Generator, dtype: np.dtype, method: str = "fast") -> tuple:
        """Forward and backward once on the sample (dout = ones); returns the gradients as a
        tuple in the order of ``grads``."""
        arrays, hyper = self.sample(rng, np.dtype(dtype))
        out, cache = self.forward(*arrays, **hyper, method=method)
        grads = self.backward(np.ones_like(out), cache)
        return grads if isinstance(grads, tuple) else (grads,)


def _images(rng: np.random.Generator, dtype: np.dtype, shape=(2, 4, 6, 5)) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)  # (N, C, H, W); odd W on purpose


def _norm_sample(rng: np.random.Generator, dtype: np.dtype) -> Sample:
    x = _images(rng, dtype)
    return (x, rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)), {}


def _eval_sample(rng: np.random.Generator, dtype: np.dtype) -> Sample:
    (x, gamma, beta), _ = _norm_sample(rng, dtype)
    stats = (rng.standard_normal(4).astype(dtype), rng.uniform(0.5, 2.0, 4).astype(dtype))
    return (x, gamma, beta), {"running_mean": stats[0], "running_var": stats[1]}


def _activation(name: str, **hyper: float) -> Pair:
    return Pair(name, activations,
                lambda rng, dtype: ((rng.standard_normal((3, 6)).astype(dtype),), dict(hyper)),
                ("x",))


PAIRS: dict[str, Pair] = {
    pair.name: pair for pair in [
        Pair("conv2d", conv,
             lambda rng, dt: ((_images(rng, dt), rng.standard_normal((3, 4, 3, 3)).astype(dt),
                               rng.standard_normal(3).astype(dt)), {"stride": 2, "padding": 1}),
             ("x", "w", "b"), "conv2d (S=2, P=1)"),
        Pair("max_pool2d", pool, lambda rng, dt: ((_images(rng, dt),), {"kernel_size": 2}),
             ("x",), "max_pool2d (2×2)"),
        Pair("avg_pool2d", pool,
             lambda rng, dt: ((_images(rng, dt),), {"kernel_size": 3, "stride": 2, "padding": 1}),
             ("x",), "avg_pool2d (3×3, S=2, P=1)"),
        Pair("batch_norm", norm, _norm_sample, ("x", "gamma", "beta")),
        Pair("batch_norm_eval", norm, _eval_sample, ("x", "gamma", "beta"),
             "batch_norm (eval)"),
        Pair("layer_norm", norm, _norm_sample, ("x", "gamma", "beta")),
        Pair("group_norm", norm,
             lambda rng, dt: (_norm_sample(rng, dt)[0], {"groups": 2}),
             ("x", "gamma", "beta"), "group_norm (G=2)"),
        Pair("linear", linear,
             lambda rng, dt: ((rng.standard_normal((3, 5)).astype(dt),
                               rng.standard_normal((4, 5)).astype(dt),
                               rng.standard_normal(4).astype(dt)), {}),
             ("x", "w", "b")),
        _activation("relu"),
        _activation("leaky_relu", alpha=0.1),
        _activation("elu"),
        _activation("gelu"),
        _activation("sigmoid"),
        _activation("tanh"),
    ]
}

for _pair in PAIRS.values():
    object.__setattr__(_pair, "label", _pair.label or _pair.name)
