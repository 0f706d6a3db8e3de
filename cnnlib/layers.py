"""Layers: PyTorch-like classes that own parameters, gradients and the forward cache.

Each layer calls one forward/backward pair of the math layer (``conv2d_forward`` …) and keeps
what the pair needs between the two calls:

* ``params`` — the learnable arrays (``"w"``, ``"b"`` or ``"gamma"``, ``"beta"``); ``{}`` if none;
* ``grads``  — ∂L/∂param with the same keys and shapes, written in place so that the arrays an
  optimiser holds stay the same objects;
* ``training`` — set by ``train()`` / ``eval()``; only ``BatchNorm2d`` behaves differently.

A subclass writes two methods: ``_forward(x) -> (out, cache)`` and
``_backward(dout, cache, input_grad) -> (dx, {name: gradient})``; the base class keeps the
caches, so that one layer object can be used several times (a shared activation, tied weights).
Each ``forward`` records one use; ``backward`` goes back through the uses, latest first, and the
parameter gradients are the **sum** over the uses, as in PyTorch (the first backward after a
forward overwrites ``grads``, the following ones of the same forward round add to them).

``Sequential(*layers)`` runs the forward in order and the backward in reverse; each of its
forward passes starts a new round for all its layers.
Weights use He (Kaiming) normal initialisation, std = √(2 / fan_in), drawn from ``rng``
(a ``numpy.random.Generator``), so one seed reproduces a model. Notebook 06 builds a CNN
from these classes and trains it with ``cnnlib.optim.SGD``.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlib import activations, conv, linear, norm, pool
from cnnlib._check import (
    as_float_array,
    as_int,
    as_pair,
    as_positive_float,
    as_real,
    check_dout,
    check_pool_padding,
)
from cnnlib._layer_base import MAX_USES, Layer, Sequential, backward_params

__all__ = [
    "ELU",
    "GELU",
    "MAX_USES",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Flatten",
    "GroupNorm",
    "Layer",
    "LayerNorm2d",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "backward_params",
    "he_normal",
]


def _param_dtype(dtype: object) -> np.dtype:
    """float32 or float64, the dtypes the kernels are compiled for."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dt}")
    return dt


def _generator(rng: object) -> np.random.Generator:
    """``rng`` itself, or a fresh unseeded generator for None. A bare seed is refused: two layers
    given the same seed would start with identical weights."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator or None, got {rng!r}; create one with "
            f"rng = np.random.default_rng(seed) and pass the same rng to every layer"
        )
    return rng


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
              dtype: np.dtype) -> np.ndarray:
    """He (Kaiming) normal initialisation: N(0, 2 / fan_in), drawn in float64 then cast, so the
    float32 and float64 versions of a seeded layer hold the same numbers up to rounding."""
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


# ----------------------------------------------------------------------- convolution, pooling


class Conv2d(Layer):
    """2-D convolution: ``params["w"]`` (C_out, C_in, KH, KW), ``params["b"]`` (C_out,).

    x (N, C_in, H, W) → out (N, C_out, H_out, W_out) via ``conv2d_forward``; ``backward``
    stores dw, db in ``grads`` and returns dx (``backward(dout, input_grad=False)`` skips dx
    and returns None: for a first layer, whose input is data). He init with fan_in =
    C_in·KH·KW, zero bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, rng: np.random.Generator | None = None,
                 dtype: type | np.dtype = np.float32) -> None:
        super().__init__()
        self.in_channels = as_int(in_channels, "in_channels", 1)
        self.out_channels = as_int(out_channels, "out_channels", 1)
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        self.dilation = as_pair(dilation, "dilation", 1)
        dtype, rng = _param_dtype(dtype), _generator(rng)
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params = {"w": he_normal(rng, shape, self.in_channels * kh * kw, dtype),
                       "b": np.zeros(self.out_channels, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return conv.conv2d_forward(x, self.params["w"], self.params["b"],
                                   self.stride, self.padding, self.dilation)

    _backward_sent_early = True  # conv2d_forward sends its backward to cnnlib._prefetch itself

    def _backward(self, dout, cache, input_grad):
        dx, dw, db = conv.conv2d_backward(dout, cache, need_dx=input_grad)
        return dx, {"w": dw, "b": db}

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s


class _Pool2d(Layer):
    """The pooling layers: ``pool.<pair>_forward`` / ``<pair>_backward``, no parameters."""

    pair = ""

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        check_pool_padding(self.padding, self.kernel_size)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        forward = getattr(pool, f"{self.pair}_forward")
        return forward(x, self.kernel_size, self.stride, self.padding)

    def _backward(self, dout, cache, input_grad):
        return getattr(pool, f"{self.pair}_backward")(dout, cache), {}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling via ``max_pool2d_forward`` (stride None = kernel_size; padding is −∞)."""

    pair = "max_pool2d"


class AvgPool2d(_Pool2d):
    """Average pooling via ``avg_pool2d_forward`` (zero padding counted in the mean)."""

    pair = "avg_pool2d"


# ------------------------------------------------------------------------------ normalisation


class _Norm(Layer):
    """The normalisation layers: ``params["gamma"]`` ones (C,), ``params["beta"]`` zeros (C,);
    ``norm.<pair>_forward`` / ``<pair>_backward`` with the keyword arguments of ``_hyper()``."""

    pair = ""

    def __init__(self, num_channels: int, eps: float, dtype: type | np.dtype) -> None:
        super().__init__()
        self.eps = as_positive_float(eps, "eps")
        dtype = _param_dtype(dtype)
        self.params = {"gamma": np.ones(num_channels, dtype), "beta": np.zeros(num_channels, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _hyper(self) -> dict:
        return {}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        forward = getattr(norm, f"{self.pair}_forward")
        return forward(x, self.params["gamma"], self.params["beta"], eps=self.eps, **self._hyper())

    def _backward(self, dout, cache, input_grad):
        dx, dgamma, dbeta = getattr(norm, f"{self.pair}_backward")(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}


class BatchNorm2d(_Norm):
    """Batch normalisation over (N, H, W) per channel, with PyTorch's running statistics.

    Training: ``batch_norm_forward`` (batch mean, biased variance), then
    ``running_mean = (1 − momentum)·running_mean + momentum·mean`` and the same for
    ``running_var`` with the unbiased variance var·n/(n − 1), n = N·H·W.
    Eval: ``out = gamma·(x − running_mean)/√(running_var + eps) + beta``, a per-channel affine
    map, with its backward (``batch_norm_eval_forward`` / ``batch_norm_eval_backward``). Running
    stats are never updated in eval.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 dtype: type | np.dtype = np.float32) -> None:
        self.num_features = as_int(num_features, "num_features", 1)
        super().__init__(self.num_features, eps, dtype)
        self.momentum = as_positive_float(momentum, "momentum", allow_zero=True)
        if self.momentum > 1:
            raise ValueError(f"momentum must be between 0 and 1, got {self.momentum}")
        dtype = self.params["gamma"].dtype
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not self.training:
            return norm.batch_norm_eval_forward(x, gamma, beta, self.running_mean,
                                                self.running_var, eps=self.eps)
        out, cache = norm.batch_norm_forward(x, gamma, beta, eps=self.eps)
        n = out.size // out.shape[1]  # values per channel: N·H·W (≥ 2, batch_norm_forward checks)
        m = self.momentum
        self.running_mean[...] = (1 - m) * self.running_mean + m * cache.mean
        self.running_var[...] = (1 - m) * self.running_var + m * cache.var * (n / (n - 1))
        return out, cache

    def _backward(self, dout, cache, input_grad):
        backward = (norm.batch_norm_eval_backward if isinstance(cache, norm.BatchNormEvalCache)
                    else norm.batch_norm_backward)
        dx, dgamma, dbeta = backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm2d(_Norm):
    """Layer normalisation per sample over (C, H, W), per-channel gamma, beta (C,)."""

    pair = "layer_norm"

    def __init__(self, num_channels: int, eps: float = 1e-5,
                 dtype: type | np.dtype = np.float32) -> None:
        self.num_channels = as_int(num_channels, "num_channels", 1)
        super().__init__(self.num_channels, eps, dtype)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class GroupNorm(_Norm):
    """Group normalisation per sample over each group of C / num_groups channels and (H, W)."""

    pair = "group_norm"

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 dtype: type | np.dtype = np.float32) -> None:
        self.num_groups = as_int(num_groups, "num_groups", 1)
        self.num_channels = as_int(num_channels, "num_channels", 1)
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups={self.num_groups} must divide "
                             f"num_channels={self.num_channels}")
        super().__init__(self.num_channels, eps, dtype)

    def _hyper(self) -> dict:
        return {"groups": self.num_groups}

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


# -------------------------------------------------------------------------------- activations


class _Activation(Layer):
    """An elementwise f(x): ``activations.<pair>_forward`` / ``<pair>_backward``, no parameters;
    ``alpha`` (if the function has one) is passed on."""

    pair = ""

    def __init__(self, alpha: float | None = None) -> None:
        super().__init__()
        self._hyper = () if alpha is None else (as_real(alpha, "alpha"),)

    @property
    def alpha(self) -> float:
        return self._hyper[0]

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return getattr(activations, f"{self.pair}_forward")(x, *self._hyper)

    def _backward(self, dout, cache, input_grad):
        return getattr(activations, f"{self.pair}_backward")(dout, cache), {}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" if self._hyper else ""


class ReLU(_Activation):
    """f(x) = max(0, x)."""

    pair = "relu"


class LeakyReLU(_Activation):
    """f(x) = x for x > 0, alpha·x otherwise (PyTorch's ``negative_slope``)."""

    pair = "leaky_relu"

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__(alpha)


class ELU(_Activation):
    """f(x) = x for x > 0, alpha·(eˣ − 1) otherwise."""

    pair = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


class GELU(_Activation):
    """f(x) = x·Φ(x), Φ the standard normal CDF (exact, with erf)."""

    pair = "gelu"


class Sigmoid(_Activation):
    """f(x) = 1 / (1 + e⁻ˣ)."""

    pair = "sigmoid"


class Tanh(_Activation):
    """f(x) = tanh(x)."""

    pair = "tanh"


# ------------------------------------------------------------------------ flatten, linear


class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W): each sample's feature maps as one row, in C-order."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        x = as_float_array(x, "x")
        if x.ndim < 2:
            raise ValueError(f"Flatten needs a batch axis and at least one more, but x has "
                             f"shape {x.shape}")
        return x.reshape(x.shape[0], -1), (x.shape, x.dtype)  # (N, C·H·W)

    def _backward(self, dout, cache, input_grad):
        x_shape, dtype = cache
        dout = check_dout(dout, (x_shape[0], math.prod(x_shape[1:])), dtype, "Flatten")
        return dout.reshape(x_shape), {}


class Linear(Layer):
    """Fully connected: ``params["w"]`` (out_features, in_features), ``params["b"]`` (out,).

    x (N, in_features) → out = x @ w.T + b (N, out_features) via ``linear_forward``.
    He init with fan_in = in_features, zero bias.
    """

    def __init__(self, in_features: int, out_features: int,
                 rng: np.random.Generator | None = None,
                 dtype: type | np.dtype = np.float32) -> None:
        super().__init__()
        self.in_features = as_int(in_features, "in_features", 1)
        self.out_features = as_int(out_features, "out_features", 1)
        dtype, rng = _param_dtype(dtype), _generator(rng)
        shape = (self.out_features, self.in_features)
        self.params = {"w": he_normal(rng, shape, self.in_features, dtype),
                       "b": np.zeros(self.out_features, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return linear.linear_forward(x, self.params["w"], self.params["b"])

    def _backward(self, dout, cache, input_grad):
        dx, dw, db = linear.linear_backward(dout, cache)
        return dx, {"w": dw, "b": db}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
