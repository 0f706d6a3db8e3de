"""Widgets, figures and exercise checks for notebook 03 (lecture 四, normalization layers).

* ``photo_batch``: a real mini-batch, random 32×32 crops of the photograph (N, 3, 32, 32).
* ``bn_explorer(x)``: batch normalization step by step, sliders for γ, β and ε, histograms
  before and after.
* ``running_stats(...)`` / ``running_stats_explorer()``: training vs. evaluation mode, the
  running mean and variance approaching the data's statistics.
* ``stat_mask`` / ``norm_axes_explorer()``: which elements of an N×C×H×W block share one mean
  and variance under BatchNorm, LayerNorm and GroupNorm, found by experiment with cnnlib.
* ``small_batch_explorer()``: BN with batch size 2 vs. GN — the same image, different partners.
* ``bn_experiment`` / ``plot_bn_experiment``: loss curves with and without BN.
* ``check_…``: the notebook's exercises.
The maths is ``cnnlib.norm`` and ``cnnlib.layers``; this module only drives and draws.
``photo_batch`` lives in ``_images`` and the sections on ``stat_mask`` and ``small_batch`` in
``_norm_axes``; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import layers, norm
from cnnlib.data import make_shapes
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD
from cnnlib.widgets._answers import (
    Feedback,
    array_answer,
    check_choice,
    check_function,
    check_number,
    exercise,
    feedback,
    is_placeholder,
    numbers_answer,
)
from cnnlib.widgets._base import Explorer, dropdown, float_slider, int_slider
from cnnlib.widgets._images import photo_batch
from cnnlib.widgets._norm_axes import (  # re-exported: notebook 03 imports them from here
    NORMS,
    norm_axes_explorer,
    plot_norm_axes,
    plot_small_batch,
    small_batch,
    small_batch_explorer,
    stat_mask,
    stat_mask_by_definition,
)

CHANNELS = ("R", "G", "B")


def _channel_names(C: int) -> tuple[str, ...]:
    """R, G, B for a colour batch, else 0, 1, …"""
    return CHANNELS if C == 3 else tuple(str(c) for c in range(C))

# --------------------------------------------------------------------------- 2. BN step by step


def bn_steps(x: np.ndarray, gamma: float, beta: float, eps: float) -> dict:
    """Batch normalization of ``x`` (N, C, H, W) one formula at a time, with NumPy.

    μ, σ² per channel over (N, H, W); x̂ = (x − μ)/√(σ² + ε); y = γ·x̂ + β with the same γ, β
    for every channel. Also returns ``out`` from ``cnnlib.norm.batch_norm_forward`` and the
    largest difference between the two.
    """
    mu = x.mean(axis=(0, 2, 3))  # (C,)
    var = x.var(axis=(0, 2, 3))  # (C,), biased: divided by N·H·W
    x_hat = (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + eps)
    y = gamma * x_hat + beta
    C = x.shape[1]
    out, cache = norm.batch_norm_forward(x, np.full(C, gamma), np.full(C, beta), eps)
    return {"mu": mu, "var": var, "x_hat": x_hat, "y": y, "out": out, "cache": cache,
            "max_diff": float(np.abs(out - y).max())}


def plot_bn_histograms(x: np.ndarray, steps: dict, channel: int, gamma: float, beta: float,
                       eps: float) -> Figure:
    """Histograms of one channel: x with μ ± σ, x̂, and y = γ·x̂ + β."""
    c = channel
    mu, sd = steps["mu"][c], np.sqrt(steps["var"][c])
    panels = [(x[:, c], f"x（チャネル {_channel_names(x.shape[1])[c]}）: μ = {mu:.3f}, "
                        f"σ² = {steps['var'][c]:.4f}", "tab:gray"),
              (steps["x_hat"][:, c], f"x_hat = (x − μ)/√(σ² + ε), ε = {eps:.1e}", "tab:blue"),
              (steps["y"][:, c], f"y = {gamma:.2f}·x_hat + {beta:.2f}", "tab:green")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (values, title, colour) in zip(axes, panels, strict=True):
        v = values.ravel()
        ax.hist(v, bins=40, color=colour, alpha=0.8)
        ax.axvline(v.mean(), color="k", lw=1.5)
        ax.axvline(v.mean() - v.std(), color="k", lw=1, ls="--")
        ax.axvline(v.mean() + v.std(), color="k", lw=1, ls="--")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"平均（mean） {v.mean():.3f}, 標準偏差（std） {v.std():.3f}")
    axes[0].axvspan(mu - sd, mu + sd, color="tab:orange", alpha=0.15)
    fig.tight_layout()
    return fig


def bn_explorer(x: np.ndarray) -> Explorer:
    """Sliders for γ, β (all channels) and ε (log scale) and a channel; histograms per step.

    ``result``: μ, σ² per channel, and the mean / std of the chosen channel's output, which
    should be β and γ·σ/√(σ² + ε).
    """
    x = np.asarray(x, dtype=np.float64)
    names = _channel_names(x.shape[1])
    controls = {"gamma": float_slider(1.0, -2.0, 3.0, "γ（gamma）", step=0.05),
                "beta": float_slider(0.0, -2.0, 2.0, "β（beta）", step=0.05),
                "eps": widgets.FloatLogSlider(value=1e-5, base=10, min=-8, max=1, step=0.25,
                                              description="ε（eps）", readout_format=".1e",
                                              continuous_update=False,
                                              style={"description_width": "initial"}),
                "channel": dropdown(names, names[0], "チャネル")}

    def compute(gamma: float, beta: float, eps: float, channel: str) -> dict:
        c = names.index(channel)
        steps = bn_steps(x, gamma, beta, eps)
        yc = steps["out"][:, c]
        sigma2 = steps["var"][c]
        return {**steps, "channel": c, "gamma": gamma, "beta": beta, "eps": eps,
                "out_mean": float(yc.mean()), "out_std": float(yc.std()),
                "expected_std": float(abs(gamma) * np.sqrt(sigma2 / (sigma2 + eps)))}

    def draw(r: dict) -> Figure:
        return plot_bn_histograms(x, r, r["channel"], r["gamma"], r["beta"], r["eps"])

    return Explorer(controls, compute, draw, rows=[["gamma", "beta"], ["eps", "channel"]])


# --------------------------------------------------------------------------- 3. train vs eval


def running_stats(steps: int = 60, batch_size: int = 8, momentum: float = 0.1,
                  seed: int = 0) -> dict:
    """Feed ``steps`` mini-batches of photo crops through ``BatchNorm2d(3)`` in training mode.

    Returns the running mean and var at the start (PyTorch's 0 and 1) and after each step,
    both (steps + 1, 3); the mean and var of all 256 crops together (the "population"); and
    the layer itself, ready to be switched to ``eval()``.
    """
    bn = layers.BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    pool_of_crops = photo_batch(256, seed=seed + 1)
    rng = np.random.default_rng(seed)
    means, variances = [bn.running_mean.copy()], [bn.running_var.copy()]  # step 0: 0 and 1
    for _ in range(steps):
        bn.forward(pool_of_crops[rng.integers(0, len(pool_of_crops), batch_size)])
        means.append(bn.running_mean.copy())
        variances.append(bn.running_var.copy())
    return {"running_mean": np.array(means), "running_var": np.array(variances),
            "population_mean": pool_of_crops.mean(axis=(0, 2, 3)),
            "population_var": pool_of_crops.var(axis=(0, 2, 3)), "layer": bn,
            "momentum": momentum, "batch_size": batch_size}


def plot_running_stats(r: dict) -> Figure:
    """Running mean and variance per channel against the step; dashed: all crops together."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.4))
    colours = ("tab:red", "tab:green", "tab:blue")
    for c, colour in enumerate(colours):
        a.plot(r["running_mean"][:, c], color=colour, label=f"running_mean[{CHANNELS[c]}]")
        a.axhline(r["population_mean"][c], color=colour, ls="--", lw=1)
        b.plot(r["running_var"][:, c], color=colour, label=f"running_var[{CHANNELS[c]}]")
        b.axhline(r["population_var"][c], color=colour, ls="--", lw=1)
    a.set_title(f"モーメンタム {r['momentum']:g}, バッチサイズ {r['batch_size']}"
                "（破線: 切り抜き全体）", fontsize=10)
    b.set_title("running_var は 1、running_mean は 0 から始まります（PyTorch の既定値）",
                fontsize=10)
    b.set_yscale("log")
    for ax in (a, b):
        ax.set_xlabel("学習ステップ（step）")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def running_stats_explorer() -> Explorer:
    """Momentum and batch-size sliders for ``running_stats``; ``result['gap']`` is the final
    largest distance of the running mean from the population mean."""
    controls = {"momentum": float_slider(0.1, 0.01, 1.0, "モーメンタム", step=0.01),
                "batch_size": int_slider(8, 2, 64, "バッチサイズ"),
                "steps": int_slider(60, 5, 200, "ステップ数")}

    def compute(momentum: float, batch_size: int, steps: int) -> dict:
        r = running_stats(steps, batch_size, momentum)
        r["gap"] = float(np.abs(r["running_mean"][-1] - r["population_mean"]).max())
        return r

    return Explorer(controls, compute, plot_running_stats,
                    rows=[["momentum", "batch_size", "steps"]])


# --------------------------------------------------------------------------- 6. experiment


def small_cnn(batch_norm: bool, seed: int = 0) -> layers.Sequential:
    """Conv(3→8) [BN] ReLU MaxPool, Conv(8→16) [BN] ReLU MaxPool, Flatten, Linear(256→5).

    For 16×16 inputs. The same seed gives the same convolution and linear weights with and
    without BN.
    """
    rng = np.random.default_rng(seed)
    stack: list[layers.Layer] = []
    c_in = 3
    for c_out in (8, 16):
        stack.append(layers.Conv2d(c_in, c_out, 3, padding=1, rng=rng))
        if batch_norm:
            stack.append(layers.BatchNorm2d(c_out))
        stack += [layers.ReLU(), layers.MaxPool2d(2)]
        c_in = c_out
    stack += [layers.Flatten(), layers.Linear(16 * 4 * 4, 5, rng=rng)]
    return layers.Sequential(*stack)


def bn_experiment(lrs: tuple[float, ...] = (0.01, 0.2), steps: int = 200, batch_size: int = 32,
                  seed: int = 0) -> dict:
    """Train ``small_cnn`` with and without BN on 512 synthetic 16×16 shapes (5 classes).

    SGD with momentum 0.9, the same weights, batches and learning rate for both models.
    Returns ``{(lr, with_bn): losses (steps,)}``; ln 5 ≈ 1.61 is the loss of a random guess.
    """
    images, labels = make_shapes(512, size=16, seed=seed)
    histories = {}
    for lr in lrs:
        for with_bn in (False, True):
            model = small_cnn(with_bn, seed)
            opt = SGD(model, lr=lr, momentum=0.9)
            rng = np.random.default_rng(seed + 1)
            losses = np.empty(steps)
            for t in range(steps):
                idx = rng.integers(0, len(images), batch_size)
                loss, dlogits = softmax_cross_entropy(model.forward(images[idx]), labels[idx])
                model.backward(dlogits)
                opt.step()
                losses[t] = loss
            histories[(lr, with_bn)] = losses
    return histories


def smooth(values: np.ndarray, window: int = 10) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start), same length as values."""
    cumsum = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    k = np.arange(1, len(values) + 1)
    lo = np.maximum(k - window, 0)
    return (cumsum[k] - cumsum[lo]) / (k - lo)


def plot_bn_experiment(histories: dict) -> Figure:
    """One panel per learning rate: smoothed loss with and without BN."""
    lrs = sorted({lr for lr, _ in histories})
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.5 * len(lrs), 3.4), squeeze=False)
    for ax, lr in zip(axes[0], lrs, strict=True):
        for with_bn, colour in ((False, "tab:gray"), (True, "tab:blue")):
            losses = histories[(lr, with_bn)]
            ax.plot(losses, color=colour, alpha=0.25, lw=0.8)
            ax.plot(smooth(losses), color=colour, lw=2,
                    label=("BN あり" if with_bn else "BN なし") +
                    f"（最後の 20 ステップ: {losses[-20:].mean():.2f}）")
        ax.axhline(np.log(5), color="k", ls=":", lw=1, label="ln 5（当て推量, random guess）")
        ax.set_title(f"SGD 学習率 lr = {lr:g}, モーメンタム 0.9", fontsize=10)
        ax.set_xlabel("ステップ（step）")
        ax.set_ylabel("学習データの損失（training loss）")
        ax.set_ylim(0, 2.6)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- exercises

EXERCISE_X = np.array([2.0, 4.0, 6.0, 8.0])  # one channel's values in a mini-batch


@exercise
def check_bn_by_hand(answer: object) -> Feedback:
    """Exercise 1: (μ, σ², x̂) of ``EXERCISE_X`` with ε = 0 (σ² biased, divide by 4)."""
    if is_placeholder(answer):
        return feedback(None)
    mu, var = EXERCISE_X.mean(), EXERCISE_X.var()
    x_hat = (EXERCISE_X - mu) / np.sqrt(var)
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        return feedback(False, "(mu, var, x_hat) の 3 つを組（tuple）にして答えてください。")
    numbers, verdict = numbers_answer(answer[:2], ("mu", "var"))
    if verdict is not None:
        return verdict
    got_mu, got_var = numbers
    got_hat, verdict = array_answer(answer[2], x_hat.shape, "x_hat")
    if verdict is not None:
        return verdict
    if not np.isclose(got_mu, mu):
        return feedback(False, f"mu が違います（{got_mu:g}）。4 つの値の平均です。")
    if np.isclose(got_var, EXERCISE_X.var(ddof=1)):
        return feedback(False, "それは N − 1 で割った分散です。BN は N で割ります（biased）。")
    if not np.isclose(got_var, var):
        return feedback(False, f"var が違います（{got_var:g}）。(x − mu)² の平均です。")
    if not np.allclose(got_hat, x_hat, atol=1e-3):
        return feedback(False, "x_hat が違います。(x − mu) / sqrt(var) を 4 つとも計算しましょう。")
    return feedback(True, f"mu = {mu:g}, var = {var:g}, x_hat ≈ {np.round(x_hat, 3)}")


@exercise
def check_batch_norm(fn: Callable) -> Feedback:
    """Exercise 2: ``fn(x, gamma, beta, eps)`` = training-mode batch norm, vs. cnnlib's."""
    rng = np.random.default_rng(3)
    cases = []
    for shape in [(4, 3, 5, 5), (2, 2, 3, 4), (1, 4, 6, 6)]:
        x = rng.normal(2.0, 3.0, shape)
        cases.append((x, rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), 1e-5))
    return check_function(
        fn, lambda *args: norm.batch_norm_forward(*args)[0], cases, rtol=1e-6, atol=1e-8,
        shape_message="出力の形は x と同じ {want} のはずですが {got} でした。",
        value_message="形 {0.shape} で値が一致しません。平均と分散を取る軸は"
                      "チャネルごとに (N, H, W)、つまり axis=(0, 2, 3) です。",
        success="チャネルごとに (N, H, W) で平均と分散を取り、γ, β で戻します。")


@exercise
def check_gn_count(answer: object) -> Feedback:
    """Exercise 3: how many values share one mean in GroupNorm with N=8, C=32, H=W=16, G=4."""
    want = (32 // 4) * 16 * 16
    return check_number(answer, want, f"C/G·H·W = 8·16·16 = {want}。N には依存しません。",
                        {8 * want: "GroupNorm はサンプルごとに正規化します。N を掛ける必要は？",
                         8 * 16 * 16: "それは BatchNorm の 1 チャネル分 (N·H·W) です。"},
                        "1 つのグループには C/G 枚の H×W の特徴マップがあります。")


@exercise
def check_batch_of_two(answer: object) -> Feedback:
    """Exercise 4 (explain): BN in training mode on N = 2 samples with H = W = 1.

    Every normalized value is ±1 (up to ε) whatever the inputs are: answer ``"c"``.
    """
    return check_choice(
        answer, right="c",
        explanation="2 つの値 a, b では mu = (a+b)/2、sigma = |a−b|/2 なので "
                    "x_hat = ±1。入力の大きさの情報が消えます。",
        hints=dict.fromkeys("ab", "x_hat = (a − mu)/sigma を a, b で書いてみましょう。"
                                  "mu = (a+b)/2、sigma = |a − b|/2 です。"))


__all__ = [
    "CHANNELS",
    "EXERCISE_X",
    "NORMS",
    "bn_experiment",
    "bn_explorer",
    "bn_steps",
    "check_batch_norm",
    "check_batch_of_two",
    "check_bn_by_hand",
    "check_gn_count",
    "norm_axes_explorer",
    "photo_batch",
    "plot_bn_experiment",
    "plot_bn_histograms",
    "plot_norm_axes",
    "plot_running_stats",
    "plot_small_batch",
    "running_stats",
    "running_stats_explorer",
    "small_batch",
    "small_batch_explorer",
    "small_cnn",
    "smooth",
    "stat_mask",
    "stat_mask_by_definition",
]
