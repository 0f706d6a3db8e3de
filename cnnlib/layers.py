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

import inspect
import math
from collections.abc import Iterator
from functools import partial

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

__all__ = [
    "ELU",
    "GELU",
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


#: How many uses of one layer are remembered between two backward passes. A layer called in a
#: loop without backward (plots, widgets) forgets its oldest uses instead of growing without end;
#: a backward that would need a forgotten use raises instead of returning a wrong number.
MAX_USES = 64


def backward_params(layer: object, dout: np.ndarray) -> None:
    """``layer.backward(dout, input_grad=False)``: fill the parameter gradients, skip ∂L/∂x
    where the layer can; a hand-written layer whose ``backward(dout)`` has no ``input_grad``
    is called without it."""
    if "input_grad" in inspect.signature(layer.backward).parameters:
        layer.backward(dout, input_grad=False)
    else:
        layer.backward(dout)


class Layer:
    """Base class: ``forward(x) -> out``, ``backward(dout, input_grad=True) -> dx``,
    ``params``/``grads`` dicts.

    ``layer(x)`` is ``layer.forward(x)``. ``backward`` raises ``RuntimeError`` when ``forward``
    has not run. ``backward(dout, input_grad=False)`` fills ``grads`` and returns None: for a
    first layer, whose input is data (``Conv2d`` then skips computing ∂L/∂x). ``train()`` /
    ``eval()`` set ``training`` and return the layer, as in PyTorch.

    Uses: every ``forward`` since the last round began pushes its cache; ``backward`` takes them
    back latest first, overwriting ``grads`` at the first and adding at the next ones. After the
    earliest use, another ``backward`` starts again from the latest (a repeated backward pass
    gives the same gradients). A ``forward`` after a ``backward`` begins a new round.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self._new_round()

    # -- what a subclass writes
    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        raise NotImplementedError

    def _backward(self, dout: np.ndarray, cache: object,
                  input_grad: bool) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        raise NotImplementedError

    # -- uses and gradients
    def _new_round(self) -> None:
        self._uses: list[object] = []  # one forward cache per use, oldest first
        self._pending = 0  # uses still waiting for their backward in this pass
        self._forgotten = 0  # uses dropped beyond MAX_USES
        self._backward_done = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self._backward_done:
            self._new_round()
        out, cache = self._forward(x)
        self._uses.append(cache)
        if len(self._uses) > MAX_USES:
            del self._uses[0]
            self._forgotten += 1
        self._pending = len(self._uses)
        return out

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        name = type(self).__name__
        if not self._uses:
            raise RuntimeError(f"{name}.backward: call forward before backward")
        if self._pending == 0:  # every use is done: a repeated backward pass
            if self._forgotten:
                raise RuntimeError(
                    f"{name}.backward was called more often than this layer can remember: it "
                    f"keeps its last {MAX_USES} uses since the previous backward pass. Run the "
                    f"forward pass again before calling backward.")
            self._pending = len(self._uses)
        accumulate = self._pending < len(self._uses)
        self._pending -= 1
        dx, grads = self._backward(dout, self._uses[self._pending], bool(input_grad))
        for key, g in grads.items():
            if accumulate:
                self.grads[key] += g
            else:
                self.grads[key][...] = g  # in place: optimisers hold these arrays
        self._backward_done = True
        return dx if input_grad else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def train(self, mode: bool = True) -> Layer:
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` array pairs, each array once: what an optimiser updates."""
        for _, p, g in self.named_parameters():
            yield p, g

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, param, grad)``, e.g. ``("w", …, …)``; ``Sequential`` uses ``"0.w"``."""
        grads = self.grads
        for name, p in self.params.items():
            yield name, p, grads[name]

    def num_parameters(self) -> int:
        """How many numbers the layer learns (Σ of the parameter sizes)."""
        return sum(p.size for p, _ in self.parameters())

    def zero_grad(self) -> None:
        """Set every gradient to 0 in place."""
        for _, g in self.parameters():
            g.fill(0)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


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
    """Shared constructor of the pooling layers (no parameters)."""

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        check_pool_padding(self.padding, self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling via ``max_pool2d_forward`` (stride None = kernel_size; padding is −∞)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return pool.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding)

    def _backward(self, dout, cache, input_grad):
        return pool.max_pool2d_backward(dout, cache), {}


class AvgPool2d(_Pool2d):
    """Average pooling via ``avg_pool2d_forward`` (zero padding counted in the mean)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return pool.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding)

    def _backward(self, dout, cache, input_grad):
        return pool.avg_pool2d_backward(dout, cache), {}


# ------------------------------------------------------------------------------ normalisation


class _Norm(Layer):
    """Shared constructor: ``params["gamma"]`` ones (C,), ``params["beta"]`` zeros (C,)."""

    def __init__(self, num_channels: int, eps: float, dtype: type | np.dtype) -> None:
        super().__init__()
        self.eps = as_positive_float(eps, "eps")
        dtype = _param_dtype(dtype)
        self.params = {"gamma": np.ones(num_channels, dtype), "beta": np.zeros(num_channels, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}


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

    def __init__(self, num_channels: int, eps: float = 1e-5,
                 dtype: type | np.dtype = np.float32) -> None:
        self.num_channels = as_int(num_channels, "num_channels", 1)
        super().__init__(self.num_channels, eps, dtype)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return norm.layer_norm_forward(x, self.params["gamma"], self.params["beta"],
                                                   eps=self.eps)

    def _backward(self, dout, cache, input_grad):
        dx, dgamma, dbeta = norm.layer_norm_backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class GroupNorm(_Norm):
    """Group normalisation per sample over each group of C / num_groups channels and (H, W)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 dtype: type | np.dtype = np.float32) -> None:
        self.num_groups = as_int(num_groups, "num_groups", 1)
        self.num_channels = as_int(num_channels, "num_channels", 1)
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups={self.num_groups} must divide "
                             f"num_channels={self.num_channels}")
        super().__init__(self.num_channels, eps, dtype)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return norm.group_norm_forward(x, self.params["gamma"], self.params["beta"],
                                                   self.num_groups, eps=self.eps)

    def _backward(self, dout, cache, input_grad):
        dx, dgamma, dbeta = norm.group_norm_backward(dout, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


# -------------------------------------------------------------------------------- activations


class ReLU(Layer):
    """f(x) = max(0, x)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.relu_forward(x)

    def _backward(self, dout, cache, input_grad):
        return activations.relu_backward(dout, cache), {}


class LeakyReLU(Layer):
    """f(x) = x for x > 0, alpha·x otherwise (PyTorch's ``negative_slope``)."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = as_real(alpha, "alpha")

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.leaky_relu_forward(x, self.alpha)

    def _backward(self, dout, cache, input_grad):
        return activations.leaky_relu_backward(dout, cache), {}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class ELU(Layer):
    """f(x) = x for x > 0, alpha·(eˣ − 1) otherwise."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = as_real(alpha, "alpha")

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.elu_forward(x, self.alpha)

    def _backward(self, dout, cache, input_grad):
        return activations.elu_backward(dout, cache), {}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class GELU(Layer):
    """f(x) = x·Φ(x), Φ the standard normal CDF (exact, with erf)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.gelu_forward(x)

    def _backward(self, dout, cache, input_grad):
        return activations.gelu_backward(dout, cache), {}


class Sigmoid(Layer):
    """f(x) = 1 / (1 + e⁻ˣ)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.sigmoid_forward(x)

    def _backward(self, dout, cache, input_grad):
        return activations.sigmoid_backward(dout, cache), {}


class Tanh(Layer):
    """f(x) = tanh(x)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        return activations.tanh_forward(x)

    def _backward(self, dout, cache, input_grad):
        return activations.tanh_backward(dout, cache), {}


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


# ------------------------------------------------------------------------------------ model


class Sequential(Layer):
    """A chain of layers: forward in order, backward in reverse.

    ``params`` / ``grads`` are read-only views keyed ``"<index>.<name>"`` (``"0.w"``) over the
    layers' own dicts (the arrays are shared, not copied). A ``ValueError`` / ``TypeError``
    raised inside a layer is re-raised with the layer's index and repr in front of the message.
    ``backward(dout, input_grad=False)`` fills every layer's ``grads`` but returns None instead
    of ∂L/∂x: a training step needs no gradient of the images, and a first ``Conv2d`` then
    skips computing it (as PyTorch does for inputs that do not require grad).

    A layer object may appear several times (``act = ReLU(); Sequential(c1, act, c2, act)``, or
    a ``Linear`` used twice for tied weights): its gradients are summed over its uses, and
    ``parameters()`` yields each array once, under the name of its first position.
    """

    _running = 0  # how many Sequential.forward calls are on the stack (nested models)

    def __init__(self, *layers: Layer) -> None:
        for k, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise TypeError(f"layer {k} is the class {layer.__name__}, not a layer; "
                                f"write {layer.__name__}(…) with parentheses")
            if not isinstance(layer, Layer):
                hint = (" Unpack a list with Sequential(*layers)."
                        if isinstance(layer, (list, tuple)) else "")
                raise TypeError(f"layer {k} is a {type(layer).__name__}, not a cnnlib layer."
                                f"{hint}")
        self.layers: list[Layer] = list(layers)
        self.training = True

    @property
    def params(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {name: p for name, p, _ in self.named_parameters()}

    @property
    def grads(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {name: g for name, _, g in self.named_parameters()}

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        seen: set[tuple[int, int]] = set()
        for k, layer in enumerate(self.layers):
            for name, p, g in layer.named_parameters():
                if (id(p), id(g)) not in seen:  # a layer used twice holds its arrays once
                    seen.add((id(p), id(g)))
                    yield f"{k}.{name}", p, g

    def _new_round(self) -> None:
        for layer in self.layers:
            layer._new_round()

    def forward(self, x: np.ndarray) -> np.ndarray:
        if Sequential._running == 0:  # the outermost model: every layer starts a new round
            self._new_round()
        Sequential._running += 1
        try:
            for k, layer in enumerate(self.layers):
                x = self._run(k, layer.forward, x)
        finally:
            Sequential._running -= 1
        return x

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        for k in reversed(range(1, len(self.layers))):
            dout = self._run(k, self.layers[k].backward, dout)
        if not self.layers:
            return dout if input_grad else None
        if input_grad:
            return self._run(0, self.layers[0].backward, dout)
        self._run(0, partial(backward_params, self.layers[0]), dout)
        return None

    def _run(self, k: int, method, array: np.ndarray, **options: bool) -> np.ndarray:
        try:
            return method(array, **options)
        except (ValueError, TypeError, RuntimeError) as exc:
            if type(exc) not in (ValueError, TypeError, RuntimeError):
                raise
            layer = self.layers[k]
            label = "Sequential" if isinstance(layer, Sequential) else repr(layer)
            raise type(exc)(f"layer {k} ({label}): {exc}") from exc

    def train(self, mode: bool = True) -> Sequential:
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, k: int) -> Layer:
        return self.layers[k]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"({k}): " + repr(layer).replace("\n", "\n  ") for k, layer in
                 enumerate(self.layers)]
        return "Sequential(" + "".join(f"\n  {line}" for line in lines) + "\n)"
