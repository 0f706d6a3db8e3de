"""Widgets, figures and exercise checks for notebook 02 (lecture 三, the pooling layer).

* ``LECTURE_X`` and ``show_pool_example()``: the lecture's 4×4 → 2×2 example, window by window.
* ``pool_explorer()``: window size, stride and max/avg on a feature map from notebook 01.
* ``pooling_cost()``: sizes and operation counts before/after pooling.
* ``shift_explorer()`` / ``show_shift_tolerance()``: pooled outputs change less under small
  shifts of the input.
* ``check_…``: the notebook's exercises.
The maths is ``cnnlib.pool``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import viz
from cnnlib.conv import conv_output_size
from cnnlib.pool import avg_pool2d_forward, max_pool2d_forward
from cnnlib.widgets._answers import (
    Feedback,
    check_array,
    check_choice,
    check_function,
    check_number,
    exercise,
)
from cnnlib.widgets._base import Explorer, dropdown, int_slider
from cnnlib.widgets._images import EXPLORER_SIZE, LECTURE_X, conv_gray, explorer_image, make_filter

MODE_LABELS = {"max": "最大（max）", "avg": "平均（avg）"}
WINDOW_COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9")


def _mode_buttons(mode: str) -> widgets.ToggleButtons:
    """Max / average toggle: Japanese labels over the values "max" and "avg"."""
    return widgets.ToggleButtons(options=[(label, m) for m, label in MODE_LABELS.items()],
                                 value=mode, description="プーリング")


def pool2d(x: np.ndarray, window: int, stride: int | None = None, mode: str = "max",
           padding: int = 0) -> np.ndarray:
    """Pool one 2-D map with ``cnnlib.pool`` (mode "max" or "avg"); (H, W) → (H_out, W_out)."""
    if mode not in ("max", "avg"):
        raise ValueError(f'mode は "max" か "avg" です（mode must be "max" or "avg"）。'
                         f"指定は {mode!r} でした")
    forward = max_pool2d_forward if mode == "max" else avg_pool2d_forward
    out, _ = forward(np.asarray(x)[None, None], window, stride, padding)
    return out[0, 0]


def show_pool_example(x: np.ndarray = LECTURE_X, window: int = 2, mode: str = "max") -> Figure:
    """Input with each non-overlapping window in its own colour, and the pooled output.

    For max pooling the winning value of each window is marked with a square.
    """
    x = np.asarray(x, np.float64)
    y = pool2d(x, window, mode=mode)
    fig, (ax_x, ax_y) = plt.subplots(1, 2, figsize=(6.5, 3.3),
                                     gridspec_kw={"width_ratios": [x.shape[1], y.shape[1]]})
    viz.show_matrix(x, f"入力 {x.shape[0]}×{x.shape[1]}", ax=ax_x, color=False)
    fmt = "{:g}" if mode == "max" else "{:.2f}"
    viz.show_matrix(y, f"{MODE_LABELS[mode]} {window}×{window} → {y.shape[0]}×{y.shape[1]}",
                    fmt=fmt, ax=ax_y, color=False)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            colour = WINDOW_COLOURS[(i * y.shape[1] + j) % len(WINDOW_COLOURS)]
            viz.outline(ax_x, i * window, j * window, window, window, color=colour, fill=True,
                        alpha=0.25)
            viz.outline(ax_y, i, j, 1, 1, color=colour, fill=True, alpha=0.25)
            if mode == "max":
                block = x[i * window:(i + 1) * window, j * window:(j + 1) * window]
                m, q = np.unravel_index(np.argmax(block), block.shape)
                viz.mark_pixels(ax_x, [i * window + m], [j * window + q], color=colour,
                                size=300)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the explorer

FEATURE_MAPS = ("sobel x → ReLU", "sobel y → ReLU", "laplacian → |·|", "photo")
FEATURE_MAP_LABELS = {"photo": "写真（photo）"}


@lru_cache(maxsize=8)
def feature_map(name: str = "sobel x → ReLU", size: int = EXPLORER_SIZE) -> np.ndarray:
    """A feature map of the photo as made in notebook 01 (valid 3×3 convolution), (H, W)."""
    img = explorer_image("photo", size)
    if name == "photo":
        out = np.array(img)
    elif name == "laplacian → |·|":
        out = np.abs(conv_gray(img, make_filter("laplacian", 3)))
    elif name in ("sobel x → ReLU", "sobel y → ReLU"):
        out = np.maximum(conv_gray(img, make_filter(name.split(" →")[0], 3)), 0.0)
    else:
        raise ValueError(f"特徴マップ {name!r} はありません（unknown feature map）。"
                         f"次から選んでください: {', '.join(FEATURE_MAPS)}")
    out.setflags(write=False)
    return out


def _compute_pool(source: str, window: int, stride: int, mode: str) -> dict:
    x = feature_map(source)
    y = pool2d(x, window, stride, mode)
    h, w = x.shape
    dropped = tuple((n - window) % stride for n in x.shape)
    formula = "\n".join(
        f"{a}_out = ⌊({a} − p)/s⌋ + 1 = ⌊({n} − {window})/{stride}⌋ + 1 = "
        f"{conv_output_size(n, window, stride)}" for a, n in (("H", h), ("W", w)))
    return {"x": x, "out": y, "in_shape": (h, w), "out_shape": y.shape, "formula": formula,
            "ratio": x.size / y.size, "dropped": dropped, "window": window, "stride": stride,
            "mode": mode, "overlap": stride < window, "source": source}


def _draw_pool(r: dict) -> Figure:
    fig, (ax_x, ax_y) = plt.subplots(1, 2, figsize=(9, 4.2),
                                     gridspec_kw={"left": 0.02, "right": 0.98, "top": 0.9,
                                                  "bottom": 0.08, "wspace": 0.08})
    (h, w), (ho, wo) = r["in_shape"], r["out_shape"]
    p, s = r["window"], r["stride"]
    vmax = float(r["x"].max()) or 1.0
    source = FEATURE_MAP_LABELS.get(r["source"], r["source"])
    viz.show_image(r["x"], f"{source}: {h}×{w}", ax=ax_x, cmap="magma", vmin=0, vmax=vmax)
    for j in range(min(wo, 3)):  # the first windows of row 0, to show stride and overlap
        viz.outline(ax_x, 0, j * s, p, p, color=WINDOW_COLOURS[j], linewidth=1.5)
    for axis, n in enumerate(r["dropped"]):
        if n:
            box = (h - n, 0, n, w) if axis == 0 else (0, w - n, h, n)
            viz.outline(ax_x, *box, color="cyan", fill=True, alpha=0.4)
    ax_x.set_xlabel(f"捨てられる: {r['dropped'][0]} 行, {r['dropped'][1]} 列"
                    + ("（シアン）" if any(r["dropped"]) else ""), fontsize=9)
    viz.show_image(r["out"], f"{MODE_LABELS[r['mode']]} {p}×{p}, ストライド {s}: {ho}×{wo}",
                   ax=ax_y, cmap="magma", vmin=0, vmax=vmax)
    ax_y.set_xlabel(f"値の数は {r['ratio']:.1f} 分の 1"
                    + ("。ウィンドウが重なります（stride < window）" if r["overlap"] else ""),
                    fontsize=9)
    print(r["formula"])
    return fig


def pool_explorer(source: str = "sobel x → ReLU", window: int = 2, stride: int = 2,
                  mode: str = "max") -> Explorer:
    """Max/average pooling of a feature map from notebook 01 (notebook 02).

    ``result`` holds ``out``, ``in_shape``, ``out_shape``, ``ratio`` (values before / after),
    ``formula`` (with numbers) and ``dropped`` (rows, columns that do not fit a window).
    """
    controls = {
        "source": dropdown(FEATURE_MAPS, source, "特徴マップ", FEATURE_MAP_LABELS),
        "window": int_slider(window, 1, 8, "ウィンドウ p"),
        "stride": int_slider(stride, 1, 8, "ストライド s"),
        "mode": _mode_buttons(mode),
    }
    return Explorer(controls, _compute_pool, _draw_pool,
                    rows=[["source", "mode"], ["window", "stride"]])


# --------------------------------------------------------------------------- computation


COST_HEADERS = ("", "特徴マップ", "値の数", "次の畳み込みの積和（multiply-adds）",
                "プーリングの演算数")


def pooling_cost(h: int = 32, w: int = 32, channels: int = 32, window: int = 2,
                 stride: int | None = None, next_filters: int = 64, k: int = 3) -> list[list]:
    """Rows of a table (columns ``COST_HEADERS``): the map's values and the multiply-adds of
    the next 'same' k×k conv layer (channels → next_filters), without and with a window×window
    pooling in between, which itself costs window² − 1 comparisons (or additions) per output."""
    stride = window if stride is None else stride
    ho, wo = conv_output_size(h, window, stride), conv_output_size(w, window, stride)
    rows = []
    for label, (a, b) in (("プーリングなし", (h, w)), (f"{window}×{window} プーリング", (ho, wo))):
        macs = a * b * next_filters * channels * k * k
        rows.append([label, f"{a}×{b}×{channels}", a * b * channels, macs])
    compares = ho * wo * channels * (window * window - 1)
    rows[1].append(compares)
    rows[0].append(0)
    return rows


# --------------------------------------------------------------------------- shift tolerance


def shift_change(x: np.ndarray, shift: int, window: int, mode: str = "max") -> dict:
    """How much a map and its pooled version change when the input moves ``shift`` px right.

    ``map_change`` / ``pooled_change`` = ‖f(shift x) − f(x)‖ / ‖f(x)‖ (window 1 = no pooling),
    ``unchanged`` = the fraction of pooled values that stay exactly the same.
    """
    x = np.asarray(x, np.float64)
    xs = np.zeros_like(x)
    xs[:, shift:] = x[:, :x.shape[1] - shift]
    cut = x.shape[1] - x.shape[1] % window  # equal sizes for both
    a, b = pool2d(x[:, :cut], window, mode=mode), pool2d(xs[:, :cut], window, mode=mode)
    norm = np.linalg.norm
    return {"x": x, "shifted": xs, "pooled": a, "pooled_shifted": b,
            "map_change": float(norm(xs - x) / norm(x)),
            "pooled_change": float(norm(b - a) / norm(a)),
            "unchanged": float(np.mean(a == b))}


def shift_explorer(shift: int = 1, window: int = 2, mode: str = "max") -> Explorer:
    """Shift a feature map by a few pixels; compare the maps before and after pooling."""
    controls = {
        "shift": int_slider(shift, 0, 6, "右へずらす（画素）"),
        "window": int_slider(window, 1, 6, "ウィンドウ p"),
        "mode": _mode_buttons(mode),
    }

    def compute(shift: int, window: int, mode: str) -> dict:
        x = feature_map("sobel x → ReLU")[40:72, 30:62]  # a 32×32 piece of the face
        return {**shift_change(x, shift, window, mode), "shift": shift, "window": window,
                "mode": mode}

    def draw(r: dict) -> Figure:
        fig, axes = plt.subplots(2, 2, figsize=(6.4, 6.4),
                                 gridspec_kw={"left": 0.02, "right": 0.98, "top": 0.94,
                                              "bottom": 0.02, "hspace": 0.15, "wspace": 0.05})
        vmax = float(r["x"].max()) or 1.0
        p = r["window"]
        pooled = f"{MODE_LABELS[r['mode']]} {p}×{p}"
        panels = [(r["x"], "特徴マップ"), (r["shifted"], f"{r['shift']} 画素ずらした"),
                  (r["pooled"], pooled), (r["pooled_shifted"], f"ずらしてから{pooled}")]
        for ax, (m, title) in zip(axes.ravel(), panels, strict=True):
            viz.show_image(m, title, ax=ax, cmap="magma", vmin=0, vmax=vmax)
        print(f"特徴マップの相対変化:     {r['map_change']:.0%}")
        print(f"プーリング後の相対変化: {r['pooled_change']:.0%} "
              f"（プーリング後の値の {r['unchanged']:.0%} はまったく変わりません）")
        return fig

    return Explorer(controls, compute, draw, rows=[["shift", "window", "mode"]])


def show_shift_tolerance(windows: tuple[int, ...] = (1, 2, 4), max_shift: int = 4,
                         mode: str = "max") -> Figure:
    """Relative change of the pooled map against the shift, one line per window size."""
    x = feature_map("sobel x → ReLU")
    shifts = np.arange(max_shift + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for p in windows:
        change = [shift_change(x, int(s), p, mode)["pooled_change"] for s in shifts]
        ax.plot(shifts, change, "o-",
                label="プーリングなし" if p == 1 else f"{MODE_LABELS[mode]} {p}×{p}")
    ax.set_xlabel("入力をずらした量（画素）")
    ax.set_xticks(shifts)
    ax.set_ylabel("相対変化（relative change）")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- exercises

EXERCISE_X = np.array([[2, 0, 1, 5], [4, 3, 2, 2], [1, 8, 0, 6], [7, 1, 3, 3]], dtype=np.float64)


@exercise
def check_max_pool(answer: object) -> Feedback:
    """演習 1: 2×2 max pooling (stride 2) of ``EXERCISE_X`` by hand."""
    return check_array(answer, pool2d(EXERCISE_X, 2, mode="max"), "最大プーリング（max pooling）")


@exercise
def check_avg_pool(answer: object) -> Feedback:
    """演習 2: 2×2 average pooling (stride 2) of ``EXERCISE_X`` by hand."""
    return check_array(answer, pool2d(EXERCISE_X, 2, mode="avg"),
                       "平均プーリング（average pooling）")


@exercise
def check_pool_output_size(answer: object) -> Feedback:
    """演習 3: 28×28 map, window 3, stride 2 → output height."""
    expected = conv_output_size(28, 3, 2)
    return check_number(answer, expected, f"⌊(28 − 3)/2⌋ + 1 = {expected}。最後の行は捨てられます"
                                          "（the last row is dropped）",
                        {14: "28/2 はウィンドウが 2×2 のときの答えです。ここでは p = 3 です"},
                        "式 ⌊(H − p)/s⌋ + 1 に当てはめましょう")


@exercise
def check_my_avg_pool(fn: Callable) -> Feedback:
    """演習 4: ``fn(x, p)`` averages non-overlapping p×p windows of a 2-D map."""
    rng = np.random.default_rng(2)
    cases = [(rng.normal(size=shape), p) for shape, p in [((4, 4), 2), ((6, 9), 3), ((5, 7), 2),
                                                         ((3, 3), 1)]]
    case = "x の形 {0.shape}、p = {1} のとき"
    return check_function(
        fn, lambda x, p: pool2d(x, p, mode="avg"), cases, rtol=1e-5, atol=1e-8,
        shape_message=case + "、出力の形は {want} のはずですが {got} でした。ウィンドウを"
                             "満たさない行・列は捨てます（dropped）",
        value_message=case + "、形は合っていますが値が違います（values differ）",
        success="p で割り切れない大きさ（odd sizes）も含めて、"
                "cnnlib.pool.avg_pool2d_forward と一致します")


@exercise
def check_why_shift_tolerant(answer: object) -> Feedback:
    """演習 5 (explain): why does max pooling tolerate small shifts? "a", "b" or "c"."""
    return check_choice(
        answer, right="c",
        explanation="最大値がウィンドウの中で動くだけなら、そのウィンドウの出力は変わりません",
        hints={"a": "プーリングには重みがまったくありません（no weights）",
               "b": "プーリングは情報を捨てる操作で、情報を加えることはありません"})


__all__ = [
    "COST_HEADERS",
    "EXERCISE_X",
    "FEATURE_MAPS",
    "LECTURE_X",
    "check_avg_pool",
    "check_max_pool",
    "check_my_avg_pool",
    "check_pool_output_size",
    "check_why_shift_tolerant",
    "feature_map",
    "pool2d",
    "pool_explorer",
    "pooling_cost",
    "shift_change",
    "shift_explorer",
    "show_pool_example",
    "show_shift_tolerance",
]
