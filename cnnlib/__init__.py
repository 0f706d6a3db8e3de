"""cnnlib: the layers of a convolutional neural network as readable, fast Numba kernels.

``import cnnlib as cl`` gives the functional API (``cl.conv2d_forward`` …), the layers
(``cl.Conv2d`` …), the optimiser and the modules ``cl.data``, ``cl.train``, ``cl.viz``,
``cl.reference`` and ``cl.gradcheck``.  Widgets live in ``cnnlib.widgets`` (imported on demand).
``data``, ``train`` and ``viz`` are imported on first use, so that ``import cnnlib`` stays quick
and ``python -m cnnlib.train`` does not find its own module already imported.
"""

import importlib

from cnnlib import gradcheck, reference
from cnnlib.activations import (
    elu_backward,
    elu_forward,
    gelu_backward,
    gelu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from cnnlib.conv import conv2d_backward, conv2d_forward, conv_output_size
from cnnlib.layers import (
    ELU,
    GELU,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    GroupNorm,
    LayerNorm2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from cnnlib.linear import linear_backward, linear_forward
from cnnlib.losses import softmax, softmax_cross_entropy
from cnnlib.norm import (
    batch_norm_backward,
    batch_norm_eval_backward,
    batch_norm_eval_forward,
    batch_norm_forward,
    batch_norm_inference,
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from cnnlib.optim import SGD, CosineAnnealingLR, StepLR
from cnnlib.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__version__ = "0.1.0"

_LAZY_MODULES = ("data", "models", "recipe", "registry", "train", "viz")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"cnnlib.{name}")
    raise AttributeError(f"module 'cnnlib' has no attribute {name!r}")

__all__ = [
    "ELU",
    "GELU",
    "SGD",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "CosineAnnealingLR",
    "Flatten",
    "GroupNorm",
    "LayerNorm2d",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "StepLR",
    "Tanh",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_eval_backward",
    "batch_norm_eval_forward",
    "batch_norm_forward",
    "batch_norm_inference",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "data",
    "elu_backward",
    "elu_forward",
    "gelu_backward",
    "gelu_forward",
    "gradcheck",
    "group_norm_backward",
    "group_norm_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "models",
    "recipe",
    "reference",
    "registry",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax",
    "softmax_cross_entropy",
    "tanh_backward",
    "tanh_forward",
    "train",
    "viz",
]
