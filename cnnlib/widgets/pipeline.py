"""Figures and exercise checks for notebook 06 (lecture 八, the typical CNN pipeline).

* ``show_shape_trace(model, input_shape)``: the network as a row of blocks, with the shape and
  parameter count after every layer (input → conv → pool → … → FC → softmax).
* ``LivePlot``: a ``fit`` callback that redraws loss and accuracy curves while training;
  ``plot_history(history)`` draws the same figure once.
* ``show_confusion``, ``show_confused_examples``, ``show_predictions``: what the model gets
  wrong and how sure it is.
* ``show_filters``, ``feature_maps_by_depth``, ``show_feature_maps_by_depth``: what the layers
  learned, from edges in the first layer to larger shapes deeper down.
* ``check_…``: the notebook's exercises.
The maths is in ``cnnlib.train`` and the layers; this module only draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from cnnlib import viz
from cnnlib.layers import (
    BatchNorm2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD
from cnnlib.train import History, shape_trace
from cnnlib.widgets._answers import (
    Feedback,
    array_answer,
    call_student,
    check_choice,
    check_number,
    check_numbers,
    exercise,
    feedback,
    number_answer,
)

BLOCK_COLOURS = {"Conv2d": "#4C72B0", "MaxPool2d": "#DD8452", "AvgPool2d": "#DD8452",
                 "BatchNorm2d": "#8172B3", "Linear": "#55A868", "Flatten": "#937860",
                 "softmax": "#C44E52", "input": "#8C8C8C"}  # activations: default grey


def _short_name(layer: Layer) -> str:
    """A two-line label such as ``"Conv2d\\n3×3, 16"``."""
    name = type(layer).__name__
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel_size
        return f"{name}\n{kh}×{kw}, {layer.out_channels}"
    if isinstance(layer, MaxPool2d):
        kh, kw = layer.kernel_size
        return f"{name}\n{kh}×{kw}"
    if isinstance(layer, Linear):
        return f"{name}\n→ {layer.out_features}"
    return name


def _shape_text(shape: tuple) -> str:
    return "×".join(str(s) for s in shape)


def show_shape_trace(model: Sequential, input_shape: Sequence[int]) -> Figure:
    """The model as a row of blocks: layer type, output shape (C×H×W, per sample) and parameter
    count under each, ending with the softmax that turns the logits into probabilities."""
    rows = shape_trace(model, input_shape)
    names = ["input"] + [_short_name(layer) for layer in model.layers] + ["softmax"]
    kinds = ["input"] + [type(layer).__name__ for layer in model.layers] + ["softmax"]
    shapes = [shape for _, shape, _ in rows] + [rows[-1][1]]
    counts = [count for _, _, count in rows] + [0]
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.25 * n + 0.5, 2.9))
    for k, (name, kind, shape, count) in enumerate(zip(names, kinds, shapes, counts,
                                                       strict=True)):
        colour = BLOCK_COLOURS.get(kind, "#A0A0A0")
        ax.add_patch(FancyBboxPatch((k + 0.08, 0.35), 0.84, 0.9, boxstyle="round,pad=0.02",
                                    facecolor=colour, edgecolor="none", alpha=0.9))
        ax.text(k + 0.5, 0.8, name, ha="center", va="center", fontsize=8, color="white")
        ax.text(k + 0.5, 0.12, _shape_text(shape), ha="center", va="center", fontsize=8)
        ax.text(k + 0.5, -0.18, f"{count:,}" if count else "–", ha="center", va="center",
                fontsize=8, color="0.35")
        if k < n - 1:
            ax.annotate("", xy=(k + 1.08, 0.8), xytext=(k + 0.92, 0.8),
                        arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.text(-0.05, 0.12, "形（shape）", ha="right", va="center", fontsize=8)
    ax.text(-0.05, -0.18, "パラメータ数", ha="right", va="center", fontsize=8, color="0.35")
    total = sum(counts)
    ax.set_title(f"形の追跡（1 サンプルあたり C×H×W。講義では H×W×C と書きます）— "
                 f"パラメータ {total:,} 個", fontsize=10)
    ax.set_xlim(-1.1, n)
    ax.set_ylim(-0.35, 1.35)
    ax.axis("off")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training curves


def _draw_history(axes: Sequence[plt.Axes], history: History, epochs: int | None) -> None:
    done = np.arange(1, history.epochs + 1)
    for ax, train, test, ylabel in (
            (axes[0], history.step_loss, history.test_loss, "交差エントロピー損失（loss）"),
            (axes[1], history.step_acc, history.test_acc, "正解率（accuracy）")):
        ax.clear()
        ax.grid(alpha=0.3)
        ax.set_xlabel("エポック（epoch）")
        ax.set_ylabel(ylabel)
        ax.plot(history.step_t, train, color="C0", alpha=0.5, lw=1,
                label="学習データ（直近のバッチ）")
        ax.plot(done, test, "o-", color="C1", label="テストデータ")
        if epochs:
            ax.set_xlim(0, epochs + 0.05)
    if history.epochs:
        axes[1].annotate(f"{history.test_acc[-1]:.3f}", (done[-1], history.test_acc[-1]),
                         textcoords="offset points", xytext=(-10, -14), fontsize=9, color="C1")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8, loc="lower right")


def plot_history(history: History, title: str | None = None) -> Figure:
    """Loss and accuracy against epochs: train (every logged window) and test (per epoch)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    _draw_history(axes, history, None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class LivePlot:
    """A ``fit`` callback that redraws the loss and accuracy curves as training goes.

    ``fit(..., callback=LivePlot(epochs), callback_every=50)``. In a notebook the figure is
    shown once and updated in place; elsewhere it is only rendered (for tests). ``figure``
    holds it and ``updates`` counts the redraws.
    """

    def __init__(self, epochs: int | None = None, title: str | None = None) -> None:
        self.epochs, self.title = epochs, title
        self.figure, self.axes = plt.subplots(1, 2, figsize=(10, 3.4))
        plt.close(self.figure)  # shown through the display handle, not by the inline backend
        self.updates = 0
        self._handle = None

    def __call__(self, epoch: int, history: History) -> None:
        _draw_history(self.axes, history, self.epochs)
        if self.title:
            self.figure.suptitle(self.title)
        self.figure.tight_layout()
        self.updates += 1
        if viz.in_notebook():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(self.figure, display_id=True)
            else:
                self._handle.update(self.figure)
        else:
            self.figure.canvas.draw()


# --------------------------------------------------------------------------- errors and confidence


def show_confusion(cm: np.ndarray, class_names: Sequence[str]) -> Figure:
    """The confusion matrix as a heat map with the counts written in; rows are the true class,
    columns the predicted one, so the diagonal holds the correct answers."""
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"cm の形は {cm.shape} ですが、クラス名は {k} 個です")
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.6, 0.55 * k + 1.8))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for t in range(k):
        for p in range(k):
            ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=7,
                    color="white" if cm[t, p] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("予測したクラス（predicted）")
    ax.set_ylabel("正しいクラス（true）")
    ax.set_title(f"混同行列（confusion matrix）: 正解率 {np.trace(cm) / cm.sum():.3f}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def show_confused_examples(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                           pairs: Sequence[tuple[int, int, int]], class_names: Sequence[str],
                           n: int = 6) -> Figure:
    """One row per ``(true, predicted, count)`` pair: up to ``n`` test images of class
    ``true`` that the model called ``predicted``. images (N, C, H, W)."""
    if not pairs:
        raise ValueError("取り違えた組がありません（no confused pairs）。"
                         "このデータではモデルが全問正解しています")
    # one Axes per pair, each image an image of its own on it (viz.tile_row: faster to draw)
    fig, axes = plt.subplots(len(pairs), 1, figsize=(1.3 * n + 1.6, 1.45 * len(pairs)),
                             squeeze=False)
    for row, (t, p, count) in enumerate(pairs):
        picks = np.flatnonzero((labels == t) & (predictions == p))[:n]
        ax = axes[row, 0]
        viz.tile_row(ax, [images[k] for k in picks], slots=n)
        ax.text(-0.03, 0.5, f"{class_names[t]}\n→ {class_names[p]}\n({count}×)",
                transform=ax.transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle("よく取り違える組: 正しいクラス → 予測したクラス", fontsize=10)
    fig.tight_layout()
    return fig


def show_predictions(images: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                     class_names: Sequence[str]) -> Figure:
    """Each image beside a bar chart of its softmax probabilities; the true class's bar is
    green when it is also the most probable one, red otherwise. images (K, C, H, W), probs
    (K, n_classes), labels (K,)."""
    k = len(images)
    if probs.shape != (k, len(class_names)) or len(labels) != k:
        raise ValueError(f"probs の形は ({k}, {len(class_names)})、ラベルは {k} 個のはずですが、"
                         f"{probs.shape} と {len(labels)} 個でした")
    fig, axes = plt.subplots(k, 2, figsize=(6.4, 1.25 * k + 0.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.6]})
    for row in range(k):
        ax_img, ax_bar = axes[row]
        viz.show_image(images[row], ax=ax_img)
        colours = ["0.75"] * len(class_names)
        guess = int(np.argmax(probs[row]))
        colours[int(labels[row])] = "C2" if guess == labels[row] else "C3"
        if guess != labels[row]:
            colours[guess] = "C1"
        ax_bar.barh(range(len(class_names)), probs[row], color=colours)
        ax_bar.set_xlim(0, 1)
        ax_bar.set_yticks(range(len(class_names)), class_names, fontsize=7)
        ax_bar.invert_yaxis()
        ax_bar.tick_params(axis="x", labelsize=7)
        ax_bar.set_title(f"p({class_names[guess]}) = {probs[row, guess]:.2f}", fontsize=8)
    axes[-1, 1].set_xlabel("ソフトマックスの確率（softmax）")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- what was learned


def show_filters(w: np.ndarray, title: str = "1 層目のフィルタ") -> Figure:
    """Filters w (F, C, KH, KW) as small images, each on its own scale centred on 0 (so the
    pattern of a weak filter is visible too): as RGB 0.5 + w / (2·max|w|) when C = 3 (grey
    means 0), otherwise the first channel with a blue-white-red scale."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"w の形は (F, C, KH, KW) です。{w.shape} でした")
    f, c = w.shape[:2]
    per_row = min(f, 8)
    rows = -(-f // per_row)
    # one Axes per row of 8 filters, each filter an image of its own (viz.tile_row)
    fig, axes = plt.subplots(rows, 1, figsize=(1.2 * per_row, 1.2 * rows + 0.3), squeeze=False)
    for row, ax in enumerate(axes[:, 0]):
        ks = range(row * per_row, min(f, (row + 1) * per_row))
        tiles, styles = [], []
        for k in ks:
            v = float(np.abs(w[k]).max()) or 1.0
            if c == 3:
                tiles.append(0.5 + np.moveaxis(w[k], 0, -1) / (2 * v))  # (KH, KW, 3)
                styles.append({})
            else:
                tiles.append(w[k, 0])
                styles.append({"cmap": "RdBu_r", "vmin": -v, "vmax": v})
        viz.tile_row(ax, tiles, [f"{k}" for k in ks], styles, slots=per_row)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def feature_maps_by_depth(model: Sequential, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Run one image (C, H, W) through ``model`` in eval mode and keep the output of every
    ReLU and pooling layer: a list of ``(label, maps (C_k, H_k, W_k))``, shallow to deep."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"image の形は (C, H, W) です。{image.shape} でした")
    was_training = model.training
    model.eval()
    maps = []
    try:
        h = image[None]
        for k, layer in enumerate(model.layers):
            h = layer.forward(h)
            if isinstance(layer, (ReLU, MaxPool2d)) and h.ndim == 4:
                maps.append((f"{k}: {type(layer).__name__}", h[0]))
    finally:
        model.train(was_training)
    return maps


def show_feature_maps_by_depth(model: Sequential, image: np.ndarray, n_maps: int = 6) -> Figure:
    """The image, then for each depth the ``n_maps`` most active feature maps (largest mean
    activation) after each ReLU: small details in the first block, coarser parts later."""
    depths = [(label, m) for label, m in feature_maps_by_depth(model, image) if "ReLU" in label]
    rows = len(depths) + 1
    # one Axes per row, each map an image of its own (viz.tile_row), on its own colour scale
    fig, axes = plt.subplots(rows, 1, figsize=(1.5 * n_maps, 1.6 * rows), squeeze=False)
    viz.tile_row(axes[0, 0], [image], ["入力"], fontsize=10, slots=n_maps)
    for row, (_, maps) in enumerate(depths, start=1):
        strongest = np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:n_maps]
        viz.tile_row(axes[row, 0], [maps[ch] for ch in strongest],
                     [f"チャネル {ch}" for ch in strongest], [{"cmap": "magma"}] * len(strongest),
                     fontsize=10, slots=n_maps)
        axes[row, 0].text(-0.04, 0.5, f"ブロック {row}\n{_shape_text(maps.shape)}",
                          transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle("各 ReLU のあとの特徴マップ（明るいほど強い応答）", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- exercises


@exercise
def check_block_shape(answer: object) -> Feedback:
    """演習 1: 32×32×3 → Conv2d(3, 8, 5) (stride 1, no padding) → MaxPool2d(2): shape (C, H, W)?"""
    one_step = ("1 段ずつ確かめましょう: パディングなしなら H − K + 1、"
                "それをプーリングで半分にします")
    return check_numbers(
        answer, ("C", "H", "W"), (8, 14, 14),
        "畳み込み（conv）: 32 − 5 + 1 = 28、プーリング（pool）: 28 / 2 = 14。"
        "フィルタが 8 枚なのでチャネルは 8",
        {(14, 14, 8): "数は合っています。(C, H, W) の順（order）に並べてください",
         (8, 28, 28): one_step, (8, 16, 16): one_step},
        "チャネル数はフィルタの枚数で決まります。H は (H + 2P − K) / S + 1、そのあとプーリング")


@exercise
def check_mlp_params(answer: object) -> Feedback:
    """演習 2: the lecture's MLP: a flattened 32×32×3 image into 1000 neurons, weights + biases."""
    weights = 32 * 32 * 3 * 1000
    return check_number(
        answer, weights + 1000, f"3072·1000 + 1000 = {weights + 1000:,}。講義の「300万」"
                                "（正確には 3,072,000）に、ニューロン 1 つにつき 1 つのバイアスを"
                                "足した数です",
        {weights: "重みの数は合っています（講義の 300万）。バイアス（biases）を足しましょう"},
        "まずフラット化（flatten）します: 32·32·3 = 3072 個の入力が、"
        "1000 個のニューロンすべてにつながります")


@exercise
def check_cnn_params(answer: object) -> Feedback:
    """演習 3: parameters of ``make_cnn(3, 5, 32)`` (the shapes network), counted by hand."""
    conv1, bn1 = 16 * (3 * 3 * 3 + 1), 2 * 16
    conv2, bn2 = 32 * (3 * 3 * 16 + 1), 2 * 32
    fc = 32 * 8 * 8 * 5 + 5
    total = conv1 + bn1 + conv2 + bn2 + fc
    return check_number(
        answer, total, f"{conv1} + {bn1} + {conv2} + {bn2} + {fc} = {total:,}。"
                       "大半は全結合層（Linear）が持っています",
        {total - bn1 - bn2: "BatchNorm2d もチャネルごとに gamma と beta を学習します"},
        "層ごとに: 畳み込み F·(k·k·C + 1)、BatchNorm 2·C、全結合 D_out·(D_in + 1)。"
        "summary(model, (3, 32, 32)) で 1 層ずつ確かめられます")


def _reference_step(model: Sequential, optimizer: SGD, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    optimizer.step()
    return float(loss)


def _tiny_model() -> tuple[Sequential, SGD]:
    r = np.random.default_rng(0)
    model = Sequential(Conv2d(1, 2, 3, rng=r), BatchNorm2d(2), ReLU(), MaxPool2d(2),
                       Flatten(), Linear(8, 3, rng=r))
    return model, SGD(model, lr=0.1, momentum=0.9)


def _parameter_verdict(mine: Sequential, ref: Sequential, before: dict, step: int
                       ) -> Feedback | None:
    """Compare the student's model with the reference after one step; None if they agree."""
    for name, p in ref.params.items():
        got, verdict = array_answer(mine.params.get(name), p.shape, f"パラメータ {name}")
        if verdict is not None:  # the student replaced it by something else
            return verdict
        if np.allclose(got, p, rtol=1e-5, atol=1e-7):
            continue
        if np.array_equal(got, before[name]):
            return feedback(False, f"パラメータ {name} が変わっていません（did not change）: "
                                   "model.backward(dlogits) のあとに optimizer.step() を"
                                   "呼びましょう")
        return feedback(False, f"ステップ {step} のあと、パラメータ {name} が正しい値と違います"
                               "（differs）: softmax_cross_entropy が返す dlogits を、"
                               "1 ステップに 1 回だけ使いましょう")
    return None


@exercise
def check_train_step(fn: Callable) -> Feedback:
    """演習 4: ``fn(model, optimizer, x, y) -> loss``: one SGD step on one batch."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    mine, my_opt = _tiny_model()
    ref, ref_opt = _tiny_model()
    for step in (1, 2):  # two steps, so that momentum and the BatchNorm caches take part
        before = {name: np.array(p, copy=True) for name, p in mine.params.items()}
        got, verdict = call_student(fn, mine, my_opt, x.copy(), y.copy())
        if verdict is not None:
            return verdict
        if got is None:
            return feedback(None)
        expected = _reference_step(ref, ref_opt, x, y)
        loss, verdict = number_answer(got, what="関数が返す損失（loss）は 1 つの数です")
        if verdict is not None:
            return verdict
        if not np.isclose(loss, expected, rtol=1e-5):
            return feedback(False, f"ステップ {step}: 損失（loss）は {expected:.5f} のはずですが、"
                                   f"{loss:.5f} でした。順伝播（forward）の損失を返しましょう")
        verdict = _parameter_verdict(mine, ref, before, step)
        if verdict is not None:
            return verdict
    return feedback(True, "順伝播 → 損失 → 逆伝播 → 更新（forward → loss → backward → step）。"
                          "cnnlib.train.fit と同じです")


@exercise
def check_deep_maps(answer: object) -> Feedback:
    """演習 5 (explain): why do deeper feature maps respond to larger parts? "a", "b" or "c"."""
    return check_choice(
        answer, right="b",
        explanation="3×3 の畳み込み、2×2 のプーリング、もう一度 3×3 の畳み込みのあとでは、"
                    "1 つの値が入力の 8×8 の範囲（受容野, receptive field）を見ていて、"
                    "1 段目のエッジのマップを組み合わせています",
        hints=dict.fromkeys("ac", "2 段目の 1 画素が依存する入力の範囲を、1 段目の 1 画素の"
                                  "範囲と比べてみましょう"))


__all__ = [
    "LivePlot",
    "check_block_shape",
    "check_cnn_params",
    "check_deep_maps",
    "check_mlp_params",
    "check_train_step",
    "feature_maps_by_depth",
    "plot_history",
    "show_confused_examples",
    "show_confusion",
    "show_feature_maps_by_depth",
    "show_filters",
    "show_predictions",
    "show_shape_trace",
]
