"""Learn a 3×3 kernel from data (notebook 01 §7; d2l 7.2): the lecture's W ← W − η·∂L/∂W.

The data are an image X and the output Y = X ⋆ K of a hidden edge detector K. Starting from
noise, W follows the loss L = ½·mean((X ⋆ W − Y)²), whose gradient ∂L/∂W is the convolution
of X with the error (``conv2d_backward``, notebook 05).

* ``learn_kernel(target, image)``: every step's W and loss.
* ``kernel_learning_explorer()``: a slider over the steps; W, K, the output and the loss curve.
* ``check_kernel_gradient(answer)``: the hand exercise.
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib.conv import conv2d_backward, conv2d_forward
from cnnlib.data import sample_image
from cnnlib.viz import show_matrix
from cnnlib.widgets._base import (
    Explorer,
    Feedback,
    dropdown,
    exercise,
    feedback,
    float_slider,
    int_slider,
    number_answer,
)
from cnnlib.widgets._images import edge_and_line_filters

IMAGES = ("noise", "photo")
HAND_X = np.arange(9.0).reshape(3, 3)                 # 01 §1's X
HAND_TARGET = np.array([[0.0, 1.0], [2.0, 3.0]])      # 01 §1's W: Y = [[19, 25], [37, 43]]


def targets() -> dict[str, np.ndarray]:
    """The hidden kernels to reproduce: 01 §6's 3×3 edge and line filters, by name."""
    w, names = edge_and_line_filters()
    return {name: w[k, 0] for k, name in enumerate(names)}


def training_image(name: str) -> np.ndarray:
    """"noise": 32×32 standard normal pixels (seed 0); "photo": 01's grey photo, 48 high."""
    if name == "noise":
        return np.random.default_rng(0).standard_normal((32, 32))
    if name == "photo":
        return sample_image(gray=True, size=48).astype(np.float64)
    raise ValueError(f"image は {', '.join(IMAGES)} のどれかです（{name!r}）")


def learn_kernel(target: np.ndarray, image: np.ndarray, steps: int = 40, lr: float = 0.3,
                 seed: int = 0) -> dict:
    """Gradient descent on W (k×k, from N(0, 0.5²) noise) towards ``target`` (k×k).

    Returns ``kernels`` (steps + 1, k, k): W before each step and after the last;
    ``losses`` (steps + 1,): L = ½·mean((X ⋆ W − Y)²) for each of them; ``x``, ``y``.
    """
    target = np.asarray(target, np.float64)
    x = np.asarray(image, np.float64)[None, None]
    y, _ = conv2d_forward(x, target[None, None], np.zeros(1))
    w = np.random.default_rng(seed).normal(0.0, 0.5, (1, 1, *target.shape))
    kernels, losses = [], []
    for _ in range(steps + 1):
        out, cache = conv2d_forward(x, w, np.zeros(1))
        error = out - y                                       # (1, 1, H_out, W_out)
        kernels.append(w[0, 0].copy())
        losses.append(0.5 * float(np.mean(error ** 2)))
        _, dw, _ = conv2d_backward(error / error.size, cache, need_dx=False)
        w = w - lr * dw                                       # W ← W − η·∂L/∂W
    return {"kernels": np.array(kernels), "losses": np.array(losses), "x": x[0, 0],
            "y": y[0, 0], "target": target}


@lru_cache(maxsize=16)
def _run(target_name: str, image: str, lr: float, steps: int) -> dict:
    return learn_kernel(targets()[target_name], training_image(image), steps=steps, lr=lr)


def kernel_learning_explorer(target: str = "vertical edge", image: str = "noise",
                             lr: float = 0.3, steps: int = 40) -> Explorer:
    """A slider over the steps of ``learn_kernel``; the hidden kernel, the image and η too."""
    controls = {"step": int_slider(0, 0, steps, "step"),
                "target": dropdown(list(targets()), target, "K"),
                "image": dropdown(IMAGES, image, "X"),
                "lr": float_slider(lr, 0.05, 2.5, "η", step=0.05)}

    def compute(step: int, target: str, image: str, lr: float) -> dict:
        run = _run(target, image, round(lr, 4), steps)
        if not np.all(np.isfinite(run["losses"])):
            bad = int(np.argmax(~np.isfinite(run["losses"])))
            raise ValueError(f"η = {lr:g} では {bad} ステップ目で損失が発散しました（diverged）。"
                             "η を小さくしてください")
        w = run["kernels"][step]
        out, _ = conv2d_forward(run["x"][None, None], w[None, None], np.zeros(1))
        return {**run, "step": step, "w": w, "out": out[0, 0],
                "error": float(np.abs(w - run["target"]).max())}

    def draw(r: dict) -> Figure:
        fig, axes = plt.subplots(1, 5, figsize=(13, 2.8),
                                 gridspec_kw={"width_ratios": [1, 1, 1.2, 1.2, 1.6]})
        show_matrix(r["w"], f"W (step {r['step']})", fmt="{:.2f}", ax=axes[0], cmap="RdBu_r",
                    symmetric=True)
        show_matrix(r["target"], "K", fmt="{:.0f}", ax=axes[1], cmap="RdBu_r", symmetric=True)
        lim = np.abs(r["y"]).max()
        for ax, img, title in ((axes[2], r["out"], "X * W"), (axes[3], r["y"], "Y = X * K")):
            ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[4].semilogy(r["losses"], color="grey")
        axes[4].semilogy([r["step"]], [r["losses"][r["step"]]], "o", color="red")
        axes[4].set_xlabel("step")
        axes[4].set_title(f"L = {r['losses'][r['step']]:.2e},  max|W - K| = {r['error']:.3f}")
        fig.tight_layout()
        return fig

    return Explorer(controls, compute, draw, rows=[["step", "lr"], ["target", "image"]],
                    threads=None)


def hand_gradient() -> np.ndarray:
    """∂L/∂W of the hand example: W = 0, L = ½·Σ (X ⋆ W − Y)² (a sum, not a mean)."""
    x = HAND_X[None, None]
    y, _ = conv2d_forward(x, HAND_TARGET[None, None], np.zeros(1))
    out, cache = conv2d_forward(x, np.zeros((1, 1, 2, 2)), np.zeros(1))
    return conv2d_backward(out - y, cache)[1][0, 0]


@exercise
def check_kernel_gradient(answer: object) -> Feedback:
    """演習: ∂L/∂W(0, 1) of the hand example (W = 0, L = ½·Σ E²): −432."""
    value, verdict = number_answer(answer, example="-100")
    if verdict is not None:
        return verdict
    want = float(hand_gradient()[0, 1])
    if np.isclose(value, want):
        return feedback(True, "E = X ⋆ W − Y = −Y なので ∂L/∂W(0,1) = Σ X(i, j+1)·E(i, j) = "
                              "−(1·19 + 2·25 + 4·37 + 5·43) = −432")
    if np.isclose(value, -want):
        return feedback(False, "符号が逆です。E = Ŷ − Y（予測 − 目標）で、W = 0 では E = −Y です")
    if np.isclose(value, float(hand_gradient()[0, 0])):
        return feedback(False, "それは ∂L/∂W(0,0) です。W(0,1) は X(i, j+1) と掛かります")
    return feedback(False, "∂L/∂W(0,1) = Σ_i Σ_j X(i, j+1)·E(i, j)。X の右上の 2×2 "
                           "(1, 2, 4, 5) と E = −Y を掛けて足します")


__all__ = [
    "HAND_TARGET",
    "HAND_X",
    "IMAGES",
    "check_kernel_gradient",
    "hand_gradient",
    "kernel_learning_explorer",
    "learn_kernel",
    "targets",
    "training_image",
]
