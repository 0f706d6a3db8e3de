"""Widgets, figures and exercise checks for notebook 00 (lecture 一, why CNNs).

* ``show_grid_data()``: an image is a 2-D grid of pixels, audio a 1-D grid of samples.
* ``param_calculator()``: parameters of a fully connected layer vs. a convolutional layer.
* ``receptive_field_explorer()``: local receptive field and weight sharing on the photograph.
* ``translation_explorer()`` / ``show_shift_curves()``: shift the input; the conv feature map
  moves with it, an MLP's hidden response changes arbitrarily.
* ``check_…``: the notebook's exercises.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import viz
from cnnlib.activations import relu_forward
from cnnlib.conv import conv2d_forward
from cnnlib.data import sample_image
from cnnlib.linear import linear_forward
from cnnlib.widgets._answers import (
    Feedback,
    check_cases,
    check_choice,
    check_number,
    exercise,
    feedback,
    run_student,
)
from cnnlib.widgets._base import Explorer, int_slider, set_range
from cnnlib.widgets._images import make_filter

# --------------------------------------------------------------------------- grids


def show_grid_data(size: int = 96) -> Figure:
    """The photo, an 8×8 corner of it as numbers, and 40 samples of a synthetic sound."""
    img = sample_image(size=size)
    grey = sample_image(gray=True, size=size)
    top, left = size // 3, size // 2 - 4
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    viz.show_image(img, f"画像（image）: {img.shape[0]}×{img.shape[1]} の格子 × 3 色", ax=axes[0])
    viz.outline(axes[0], top, left, 8, 8, color="yellow")
    viz.show_matrix(grey[top:top + 8, left:left + 8], "8×8 画素（グレー, 0〜1）", fmt="{:.1f}",
                    ax=axes[1], cmap="gray", color=False, fontsize=8)
    t = np.arange(40)  # 40 samples at 8 kHz = 5 ms of a vowel-like sound
    sound = (np.sin(2 * np.pi * 200 * t / 8000) + 0.5 * np.sin(2 * np.pi * 600 * t / 8000)
             + 0.25 * np.sin(2 * np.pi * 1400 * t / 8000))
    axes[2].stem(t, sound)
    axes[2].set_title("音声（audio）: サンプルの 1 次元の格子（8 kHz）", fontsize=10)
    axes[2].set_xlabel("時刻 t（time step）")
    axes[2].set_ylabel("振幅（amplitude）")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- parameter counts


def mlp_param_count(h: int, w: int, c: int, hidden: int) -> dict[str, int]:
    """Weights and biases of a fully connected layer from a flattened H×W×C image."""
    inputs = h * w * c
    return {"inputs": inputs, "weights": inputs * hidden, "biases": hidden}


def conv_param_count(k: int, c: int, filters: int) -> dict[str, int]:
    """Weights and biases of a convolutional layer with ``filters`` k×k×C filters."""
    return {"per_filter": k * k * c, "weights": k * k * c * filters, "biases": filters}


def param_calculator(h: int = 32, w: int = 32, c: int = 3, hidden: int = 1000, k: int = 3,
                     filters: int = 1) -> Explorer:
    """Parameter counts of an MLP's first layer vs. a conv layer (lecture: 3,072,000 vs. 27).

    ``result`` holds ``mlp`` and ``conv`` (the dicts of the two count functions) and ``ratio``.
    """
    controls = {
        "h": int_slider(h, 4, 256, "画像の高さ H", continuous=True),
        "w": int_slider(w, 4, 256, "画像の幅 W", continuous=True),
        "c": int_slider(c, 1, 3, "チャネル数 C", continuous=True),
        "hidden": int_slider(hidden, 10, 4000, "MLP の隠れユニット数", step=10, continuous=True),
        "k": int_slider(k, 1, 11, "フィルタの大きさ k", continuous=True),
        "filters": int_slider(filters, 1, 512, "フィルタの枚数", continuous=True),
    }

    def compute(h: int, w: int, c: int, hidden: int, k: int, filters: int) -> dict:
        mlp, conv = mlp_param_count(h, w, c, hidden), conv_param_count(k, c, filters)
        total_mlp, total_conv = mlp["weights"] + mlp["biases"], conv["weights"] + conv["biases"]
        return {"mlp": mlp, "conv": conv, "ratio": total_mlp / total_conv,
                "text": (f"MLP: {h}×{w}×{c} = {mlp['inputs']:,} 入力 × {hidden:,} ユニット = "
                         f"重み {mlp['weights']:,} 個（+ バイアス {hidden:,} 個）\n"
                         f"畳み込み（conv）: {k}×{k}×{c} = フィルタ 1 枚あたり重み "
                         f"{conv['per_filter']:,} 個 × {filters} 枚 = 重み {conv['weights']:,} 個"
                         f"（+ バイアス {filters} 個）\n"
                         f"比: パラメータは {total_mlp / total_conv:,.0f} 分の 1。畳み込みの数は "
                         "H と W に依存しません")}

    def draw(r: dict) -> Figure:
        fig, ax = plt.subplots(figsize=(8, 2.2))
        counts = [r["mlp"]["weights"] + r["mlp"]["biases"],
                  r["conv"]["weights"] + r["conv"]["biases"]]
        bars = ax.barh(["畳み込み層（conv）", "全結合層（fully connected）"], counts[::-1],
                       color=["C1", "C0"])
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xlim(1, 10 ** np.ceil(np.log10(max(counts)) + 1))
        ax.bar_label(bars, labels=[f"{n:,}" for n in counts[::-1]], padding=4)
        ax.set_xlabel("パラメータ数（対数目盛, log scale）")
        fig.subplots_adjust(left=0.27, bottom=0.28, top=0.95, right=0.97)
        print(r["text"])
        return fig

    return Explorer(controls, compute, draw,
                    rows=[["h", "w", "c"], ["hidden"], ["k", "filters"]])


# --------------------------------------------------------------------------- receptive field

FIELD_SIZE = 96  # photo height for the receptive-field explorer


@lru_cache(maxsize=2)
def _rgb_photo(size: int) -> np.ndarray:
    img = sample_image(size=size)
    img.setflags(write=False)
    return img


def edge_filter_rgb(k: int) -> np.ndarray:
    """A vertical-edge filter (Sobel x) of size k×k×3, the same on every channel: (1, 3, k, k)."""
    sx = make_filter("sobel x", k) / (3 * np.abs(make_filter("sobel x", k)).sum() / 2)
    return np.stack([sx, sx, sx])[None]


def receptive_field_explorer(row: int = 40, col: int = 40, k: int = 5) -> Explorer:
    """One output pixel of a conv layer and the k×k×3 patch it sees, on the RGB photo.

    The same weights (weight sharing) are drawn at other positions too. ``result`` holds
    ``out`` (H, W) ('same' padding), ``patch`` (3, k, k), ``value`` = Σ patch·w = out[row, col].
    """
    img = _rgb_photo(FIELD_SIZE)
    h, w = img.shape[:2]
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None])  # (1, 3, H, W)
    controls = {"row": int_slider(row, 0, h - 1, "出力の行"),
                "col": int_slider(col, 0, w - 1, "出力の列"),
                "k": int_slider(k, 3, 9, "フィルタの大きさ k", step=2)}

    def compute(row: int, col: int, k: int) -> dict:
        wk = edge_filter_rgb(k).astype(np.float32)
        out, _ = conv2d_forward(x, wk, np.zeros(1, np.float32), padding=k // 2)
        xp = np.pad(x[0], ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        patch = xp[:, row:row + k, col:col + k]
        return {"out": out[0, 0], "patch": patch, "kernel": wk[0], "row": row, "col": col,
                "k": k, "value": float((patch * wk[0]).sum()), "inputs_mlp": h * w * 3}

    def draw(r: dict) -> Figure:
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.6),
                                 gridspec_kw={"width_ratios": [1, 1, 0.8, 1], "wspace": 0.15,
                                              "left": 0.01, "right": 0.99, "top": 0.86,
                                              "bottom": 0.1})
        k, row, col = r["k"], r["row"], r["col"]
        viz.show_image(img, "全結合: 1 ユニットが全体を見る", ax=axes[0])
        viz.outline(axes[0], 0, 0, h, w, color="C0", linewidth=4)
        axes[0].set_xlabel(f"ユニット 1 つあたり重み {h}×{w}×3 = {r['inputs_mlp']:,} 個",
                           fontsize=9)
        viz.show_image(img, f"畳み込み: 1 出力が {k}×{k}×3 を見る", ax=axes[1])
        for dy, dx in ((-30, -25), (20, 25), (30, -30)):  # the same filter elsewhere
            if 0 <= row + dy < h and 0 <= col + dx < w:
                viz.outline(axes[1], row + dy - k // 2, col + dx - k // 2, k, k, color="orange",
                            linewidth=1.2)
        viz.outline(axes[1], row - k // 2, col - k // 2, k, k, color="red")
        axes[1].set_xlabel(f"赤: この出力, 橙: 同じ {k * k * 3} 個の重み（weight sharing）",
                           fontsize=9)
        if k <= 5:
            viz.show_matrix(r["kernel"][0], "共有される重み（R; G, B も同じ）", fmt="{:.2f}",
                            ax=axes[2], cmap="RdBu_r", fontsize=8, symmetric=True)
        else:
            viz.show_image(r["kernel"][0], "共有される重み（R; G, B も同じ）", ax=axes[2],
                           cmap="RdBu_r", colorbar=True)
        out = r["out"]
        vmax = float(np.abs(out).max()) or 1.0
        viz.show_image(out, "出力の特徴マップ（feature map）", ax=axes[3], cmap="RdBu_r",
                       vmin=-vmax, vmax=vmax)
        viz.outline(axes[3], row - 1, col - 1, 3, 3, color="black")
        axes[3].set_xlabel(f"Y({row},{col}) = Σ パッチ·w = {r['value']:.3f}", fontsize=9)
        return fig

    return Explorer(controls, compute, draw, rows=[["row", "col", "k"]])


# --------------------------------------------------------------------------- translation

CANVAS = (32, 40)  # the shifted object lives on a blank canvas, so nothing leaves the image
OBJECT_AT = (6, 4)
HIDDEN = 64


@lru_cache(maxsize=1)
def _object() -> np.ndarray:
    """A 16×16 crop of the photo (the face) to move around the canvas."""
    grey = sample_image(gray=True, size=64)
    crop = grey[10:26, 20:36].copy()
    crop.setflags(write=False)
    return crop


def place_object(dy: int, dx: int) -> np.ndarray:
    """The canvas (32, 40) with the face crop moved ``dy`` down and ``dx`` right of its start."""
    canvas = np.zeros(CANVAS, np.float32)
    obj = _object()
    top, left = OBJECT_AT[0] + dy, OBJECT_AT[1] + dx
    canvas[top:top + obj.shape[0], left:left + obj.shape[1]] = obj
    return canvas


def shift_image(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``x`` moved ``dy`` pixels down and ``dx`` right (both ≥ 0); zeros come in at the edge."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., dy:, dx:] = x[..., :h - dy, :w - dx]
    return out


@lru_cache(maxsize=1)
def _mlp_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    d_in = CANVAS[0] * CANVAS[1]
    w = rng.normal(0.0, np.sqrt(2.0 / d_in), (HIDDEN, d_in))
    w -= w.mean(axis=1, keepdims=True)  # no unit simply measures overall brightness
    w = w.astype(np.float32)
    return w, np.zeros(HIDDEN, np.float32)


def conv_response(x: np.ndarray) -> np.ndarray:
    """The vertical-edge (Sobel x) feature map of a grey (H, W) image, same size."""
    w = make_filter("sobel x", 3).astype(np.float32)[None, None]
    out, _ = conv2d_forward(x[None, None], w, np.zeros(1, np.float32), padding=1)
    return out[0, 0]


def mlp_response(x: np.ndarray) -> np.ndarray:
    """The 64 hidden units ReLU(W·x + b) of a random fully connected layer, as (64,)."""
    w, b = _mlp_weights()
    z, _ = linear_forward(x.reshape(1, -1), w, b)
    return relu_forward(z)[0][0]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def translation_result(dy: int, dx: int) -> dict:
    """Responses of the conv layer and the MLP to the object at shift 0 and at (dy, dx).

    ``conv_error`` = max |conv(shift x) − shift(conv x)| (0: the map moves with the input);
    ``mlp_correlation`` between h(x) and h(shift x) (1 would mean unchanged).
    """
    x0, x1 = place_object(0, 0), place_object(dy, dx)
    c0, c1 = conv_response(x0), conv_response(x1)
    h0, h1 = mlp_response(x0), mlp_response(x1)
    return {"x0": x0, "x1": x1, "conv0": c0, "conv1": c1, "mlp0": h0, "mlp1": h1,
            "dy": dy, "dx": dx, "conv_error": float(np.abs(c1 - shift_image(c0, dy, dx)).max()),
            "conv_max": (float(c0.max()), float(c1.max())),
            "conv_correlation": _correlation(c1, shift_image(c0, dy, dx)),
            "mlp_correlation": _correlation(h0, h1),
            "mlp_change": float(np.linalg.norm(h1 - h0) / np.linalg.norm(h0))}


def translation_explorer(dy: int = 0, dx: int = 6) -> Explorer:
    """Move the object; compare the conv feature map and the MLP's hidden response."""
    max_dy = CANVAS[0] - _object().shape[0] - OBJECT_AT[0] - 1
    max_dx = CANVAS[1] - _object().shape[1] - OBJECT_AT[1] - 1
    controls = {"dy": int_slider(dy, 0, max_dy, "下へずらす"),
                "dx": int_slider(dx, 0, max_dx, "右へずらす")}

    def draw(r: dict) -> Figure:
        fig, axes = plt.subplots(2, 3, figsize=(10, 5.6),
                                 gridspec_kw={"left": 0.02, "right": 0.98, "top": 0.93,
                                              "bottom": 0.03, "hspace": 0.25, "wspace": 0.1})
        vmax = float(max(np.abs(r["conv0"]).max(), np.abs(r["conv1"]).max()))
        hmax = float(max(r["mlp0"].max(), r["mlp1"].max())) or 1.0
        for row, (tag, shift) in enumerate((("0", "入力 x"),
                                            ("1", f"({r['dy']}, {r['dx']}) ずらした入力"))):
            viz.show_image(r["x" + tag], shift, ax=axes[row, 0], vmin=0, vmax=1)
            viz.show_image(r["conv" + tag], "畳み込みの特徴マップ", ax=axes[row, 1], cmap="RdBu_r",
                           vmin=-vmax, vmax=vmax)
            viz.show_image(r["mlp" + tag].reshape(8, 8), "MLP: 隠れユニット 64 個",
                           ax=axes[row, 2], cmap="viridis", vmin=0, vmax=hmax)
        print(f"畳み込み: max |conv(shift x) − shift(conv x)| = {r['conv_error']:.2g} "
              "（特徴マップは物体と一緒に動きます）")
        print(f"MLP: h(x) と h(shift x) の相関 = {r['mlp_correlation']:.2f}、"
              f"相対変化 {r['mlp_change']:.0%}")
        return fig

    def adapt(c: dict) -> None:
        set_range(c["dy"], 0, max_dy)

    return Explorer(controls, lambda dy, dx: translation_result(dy, dx), draw, adapt=adapt,
                    rows=[["dy", "dx"]])


def show_shift_curves(max_shift: int = 12) -> Figure:
    """For shifts 0…max_shift to the right: how well each layer's response to the shifted
    input matches its old response (conv: moved along, always 1; MLP: falls)."""
    shifts = np.arange(max_shift + 1)
    results = [translation_result(0, int(s)) for s in shifts]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(shifts, [r["conv_correlation"] for r in results], "o-",
            label="畳み込み: conv(shift x) と shift(conv x) の相関")
    ax.plot(shifts, [r["mlp_correlation"] for r in results], "s-",
            label="MLP: ずらす前の応答との相関")
    ax.set_xlabel("右へずらした量（画素）")
    ax.set_xticks(shifts)
    ax.set_ylabel("相関（correlation）")
    ax.set_ylim(-0.2, 1.1)
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.legend(loc="lower left", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- exercises


@exercise
def check_mlp_weights(answer: object) -> Feedback:
    """演習 1: weights (no biases) of a fully connected layer, 64×64×3 input, 500 units."""
    expected = 64 * 64 * 3 * 500
    return check_number(
        answer, expected, f"64·64·3 = 12,288 個の入力（inputs）× 500 = {expected:,}",
        {expected + 500: "それは 500 個のバイアスも含んだ数です。問われているのは"
                         "重み（weights）だけです",
         64 * 64 * 500: "各画素は 3 つの色の値を持つので、C = 3 も掛けます（colour channels）"},
        "入力の数 H·W·C を数え、それに隠れ層のユニット数（hidden units）を掛けます")


@exercise
def check_conv_params(answer: object) -> Feedback:
    """演習 2: weights + biases of 16 filters of size 5×5 on an RGB image."""
    return check_number(
        answer, 16 * (5 * 5 * 3 + 1),
        "16·(5·5·3 + 1) = 1,216。画像の大きさには関係ありません（whatever the image size）",
        {16 * 5 * 5 * 3: "重みの数は合っています。フィルタ 1 枚ごとにバイアスを 1 つ足します"
                         "（one bias per filter）",
         16 * (5 * 5 + 1): "フィルタは C = 3 のチャネルすべてにかかるので、重みは 5×5×3 個です"
                           "（all channels）"},
        "フィルタ 1 枚あたり重み k·k·C 個とバイアス 1 個、それにフィルタの枚数を掛けます")


@exercise
def check_shift(fn: Callable) -> Feedback:
    """演習 3: ``fn(x, dy, dx)`` moves a 2-D image down/right, filling with zeros."""
    rng = np.random.default_rng(3)

    def shifted(x: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray | None, Feedback | None]:
        got, verdict = run_student(fn, x.copy(), dy, dx)
        if verdict is None and got.shape != x.shape:
            verdict = feedback(False, f"結果は入力と同じ形 {x.shape} のはずですが、"
                                      f"{got.shape} でした")
        return got, verdict

    def run_case(case: tuple) -> Feedback | None:
        shape, dy, dx = case
        x = rng.normal(size=shape)
        got, verdict = shifted(x, dy, dx)
        if verdict is None and not np.allclose(got, shift_image(x, dy, dx)):
            hint = ("。np.roll は、はみ出た分が反対側に回り込みます（wraps around）。"
                    "空いた端は 0 で埋めます") if np.allclose(
                got, np.roll(x, (dy, dx), axis=(0, 1))) else ""
            verdict = feedback(False, f"{shape} の画像を ({dy}, {dx}) ずらした結果が違います{hint}")
        return verdict

    verdict = check_cases([((5, 6), 1, 2), ((4, 4), 0, 3), ((6, 5), 2, 0), ((3, 3), 0, 0)],
                          run_case, None)
    if verdict is not None:
        return verdict
    x = place_object(0, 0)
    got, verdict = shifted(x, 2, 3)
    if verdict is not None:
        return verdict
    equal = np.allclose(conv_response(got), shift_image(conv_response(x), 2, 3), atol=1e-6)
    return feedback(True, "あなたの関数で確かめると、conv(shift(x)) == shift(conv(x)) は "
                          f"{equal} です")


@exercise
def check_why_equivariant(answer: object) -> Feedback:
    """演習 4 (explain): why does the conv map move with the input? Answer "a", "b" or "c"."""
    return check_choice(
        answer, right="b",
        explanation="同じフィルタをすべての位置で使う（weight sharing）ので、フィルタが見つけた"
                    "ものは、どこにあっても同じように出力に現れます",
        hints={"a": "重みが少ないだけでは説明できません。小さな MLP でも、入力の位置ごとに別々の"
                    "重みを持ちます",
               "c": "上の MLP も ReLU を使っていますが、その応答は入力と一緒に動きません"})


__all__ = [
    "check_conv_params",
    "check_mlp_weights",
    "check_shift",
    "check_why_equivariant",
    "conv_param_count",
    "conv_response",
    "edge_filter_rgb",
    "mlp_param_count",
    "mlp_response",
    "param_calculator",
    "place_object",
    "receptive_field_explorer",
    "shift_image",
    "show_grid_data",
    "show_shift_curves",
    "translation_explorer",
    "translation_result",
]
