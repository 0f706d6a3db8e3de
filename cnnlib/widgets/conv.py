"""Widgets, figures and exercise checks for notebook 01 (lecture 二, the convolutional layer).

* ``conv_step_explorer(x, w)``: one output pixel of a small worked example at a time.
* ``conv_explorer()``: the convolution explorer on the photograph (kernel size, stride,
  padding, dilation, filter), with the receptive field, the kernel, the output map, the live
  output-size formula and the rows/columns that the stride drops.
* ``show_filter_bank()`` (RGB through a k×k×3 bank), ``show_edges_and_lines()``.
* ``check_…``: the notebook's exercises.
The maths is ``cnnlib.conv``; the filters below are just numbers to try.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from cnnlib import viz
from cnnlib.conv import conv2d_forward, conv_output_size
from cnnlib.widgets._answers import Feedback, check_choice, check_function, check_number, exercise
from cnnlib.widgets._base import (
    Explorer,
    KeptFigure,
    clear_artists,
    dropdown,
    int_slider,
    set_range,
)
from cnnlib.widgets._images import (
    EXPLORER_SIZE,
    FILTER_LABELS,
    FILTERS,
    IMAGE_LABELS,
    IMAGES,
    MIN_KERNEL,
    SIGNED,
    conv_gray,
    edge_and_line_filters,
    explorer_image,
    make_filter,
)

# --------------------------------------------------------------------------- small example


def conv_step_explorer(x: np.ndarray, w: np.ndarray, b: float = 0.0) -> Explorer:
    """Step through the output pixels of a small single-channel example (stride 1, no padding).

    Shows the window on x, the products x·w in it, and the sum written into Y(i, j).
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    k = w.shape[0]
    y = conv_gray(x, w).astype(np.float64) + b
    h_out, w_out = y.shape
    controls = {"i": int_slider(0, 0, h_out - 1, "出力の行 i"),
                "j": int_slider(0, 0, w_out - 1, "出力の列 j")}

    def compute(i: int, j: int) -> dict:
        window = x[i:i + k, j:j + k]
        terms = " + ".join(f"{a:g}·{c:g}" for a, c in zip(window.ravel(), w.ravel(),
                                                          strict=True))
        value = float((window * w).sum() + b)
        bias = f" + {b:g}" if b else ""
        return {"i": i, "j": j, "window": window, "products": window * w, "value": value,
                "text": f"Y({i},{j}) = {terms}{bias} = {value:g}"}

    titles = ["X", "W", "X(i+m, j+n)·W(m, n)", "Y"]
    kept = KeptFigure()  # one figure: the matrices keep their shapes, only numbers change

    def draw(r: dict) -> Figure:
        arrays = [x, w, r["products"], y]
        fig, new = kept.get(None, lambda: viz.show_matrices(arrays, titles, suptitle=" ",
                                                            between=["∗", "→", "Σ"]))
        if not new:
            for ax, a, title in zip(fig.axes, arrays, titles, strict=True):
                clear_artists(ax)
                viz.show_matrix(a, title, ax=ax)
        viz.outline(fig.axes[0], r["i"], r["j"], k, k)
        viz.outline(fig.axes[3], r["i"], r["j"], 1, 1)
        fig.suptitle(r["text"], fontsize=11)
        return fig

    return Explorer(controls, compute, draw)


# --------------------------------------------------------------------------- the explorer


def output_size_formula(size: int, k: int, stride: int, padding: int, dilation: int,
                        axis: str = "H") -> str:
    """``H_out = ⌊(H + 2P − D(K−1) − 1)/S⌋ + 1`` with the numbers filled in, and the result."""
    top = size + 2 * padding - dilation * (k - 1) - 1
    text = (f"{axis}_out = ⌊({axis} + 2P − D(K−1) − 1)/S⌋ + 1 = "
            f"⌊({size} + 2·{padding} − {dilation}·({k}−1) − 1)/{stride}⌋ + 1")
    if top < 0:
        return text + f" = ⌊{top}/{stride}⌋ + 1: 出力がありません（no output）"
    return text + f" = ⌊{top}/{stride}⌋ + 1 = {top // stride + 1}"


def _adapt_conv(c: dict) -> None:
    """Narrow the slider ranges to what makes sense for the current image and filter."""
    img = explorer_image(c["image"].value)
    k, d, p = c["kernel_size"].value, c["dilation"].value, c["padding"].value
    set_range(c["kernel_size"], MIN_KERNEL.get(c["filter"].value, 1),
              min(11, min(img.shape) + 2 * p))
    k = c["kernel_size"].value
    set_range(c["padding"], 0, max(d * (k - 1), 1))  # beyond "full" padding only zeros are added
    p = c["padding"].value
    try:
        sizes = [conv_output_size(n, k, c["stride"].value, p, d) for n in img.shape]
    except ValueError:
        sizes = None
    for name, n in zip(("out_row", "out_col"), sizes or (1, 1), strict=True):
        set_range(c[name], 0, n - 1)
        c[name].disabled = sizes is None


def _compute_conv(image: str, filter: str, kernel_size: int, stride: int, padding: int,
                  dilation: int, out_row: int, out_col: int) -> dict:
    img = explorer_image(image)
    k = kernel_size
    w = make_filter(filter, k)
    formula = "\n".join(output_size_formula(n, k, stride, padding, dilation, axis)
                        for n, axis in zip(img.shape, ("H", "W"), strict=True))
    cover = dilation * (k - 1) + 1
    if cover > min(img.shape) + 2 * padding:
        need = -(-(cover - min(img.shape)) // 2)
        raise ValueError(
            f"出力がありません（no output）: カーネル（{k} タップ、ダイレーション {dilation}）は "
            f"{cover} 画素にわたりますが、パディングした入力は {min(img.shape)} + 2·{padding} = "
            f"{min(img.shape) + 2 * padding} 画素しかありません。パディングを {need} 以上にするか、"
            f"カーネルを小さく、ダイレーションを小さくしてください。\n{formula}")
    out = conv_gray(img, w, stride, padding, dilation)
    h_out, w_out = out.shape
    i, j = min(out_row, h_out - 1), min(out_col, w_out - 1)
    padded = np.pad(img, padding)
    dropped = tuple((n + 2 * padding - cover) % stride for n in img.shape)
    taps = np.arange(k) * dilation
    field = padded[np.ix_(i * stride + taps, j * stride + taps)]
    return {"image": img, "padded": padded, "kernel": w, "out": out, "formula": formula,
            "out_shape": (h_out, w_out), "dropped": dropped, "pixel": (i, j),
            "field_top_left": (i * stride, j * stride), "cover": cover,
            "field": field, "field_value": float((field * w).sum()),
            "stride": stride, "padding": padding, "dilation": dilation, "filter": filter}


def _new_conv_figure() -> Figure:
    fig = Figure(figsize=(9.6, 3.9))
    fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 0.8, 1.2], "left": 0.02, "right": 0.98,
                                    "bottom": 0.08, "top": 0.92, "wspace": 0.12})
    return fig


def _conv_drawer() -> Callable[[dict], Figure]:
    """The explorer's draw: one kept figure, updated in place (``KeptFigure``).

    The kernel panel is a table of numbers up to 5×5 and an image with a colour bar above: one
    figure for each, built once; a move only replaces the panels' contents.
    """
    kept = KeptFigure()
    colorbars: dict[int, Colorbar] = {}

    def draw(r: dict) -> Figure:
        matrix = r["kernel"].shape[0] <= 5
        fig, new = kept.get("matrix" if matrix else "image", _new_conv_figure)
        try:
            if not new:
                for ax in fig.axes[:3]:
                    clear_artists(ax)
            im = _draw_conv(r, fig)
            if not matrix:
                if new:
                    colorbars[id(fig)] = fig.colorbar(im, ax=fig.axes[1], fraction=0.046,
                                                      pad=0.04)
                else:
                    colorbars[id(fig)].update_normal(im)
        except Exception:
            kept.forget()
            colorbars.clear()
            raise
        return fig

    return draw


def _draw_conv(r: dict, fig: Figure | None = None) -> AxesImage | None:
    """Draw the explorer's three panels into ``fig`` (a new one if ``None``); returns the
    kernel's image when it is drawn as an image (k > 5), which the colour bar shows."""
    fig = fig or _new_conv_figure()
    ax_in, ax_w, ax_out = fig.axes[:3]
    p, s, d = r["padding"], r["stride"], r["dilation"]
    h, w = r["image"].shape
    viz.show_image(r["padded"], f"パディングした入力 {h + 2 * p}×{w + 2 * p}（P = {p}）", ax=ax_in,
                   vmin=0.0, vmax=1.0)
    if p:
        viz.outline(ax_in, p, p, h, w, color="yellow", linewidth=1.0)
    top, left = r["field_top_left"]
    k = r["kernel"].shape[0]
    viz.outline(ax_in, top, left, r["cover"], r["cover"], color="red", linewidth=1.5)
    if d > 1:  # the taps a dilated kernel touches, with holes between them
        taps = np.arange(k) * d
        rows, cols = np.meshgrid(top + taps, left + taps, indexing="ij")
        viz.mark_pixels(ax_in, rows.ravel(), cols.ravel(), size=8 if h > 30 else 40)
    for axis, n in enumerate(r["dropped"]):
        if n:  # the last n rows / columns never fit a whole window
            hp, wp = r["padded"].shape
            if axis == 0:
                viz.outline(ax_in, hp - n, 0, n, wp, color="magenta", fill=True, alpha=0.45)
            else:
                viz.outline(ax_in, 0, wp - n, hp, n, color="magenta", fill=True, alpha=0.45)
    dropped = f"ストライドで捨てられる: {r['dropped'][0]} 行, {r['dropped'][1]} 列"
    ax_in.set_xlabel(dropped + ("（マゼンタ）" if any(r["dropped"]) else ""), fontsize=9)
    name = FILTER_LABELS[r["filter"]]
    kernel_image = None
    if k <= 5:  # numbers stay readable (and cheap to draw) up to 5×5
        viz.show_matrix(r["kernel"], f"カーネル {k}×{k}: {name}", fmt="{:.2g}", ax=ax_w,
                        cmap="RdBu_r", fontsize=9, symmetric=True)
    else:  # the colour bar (made by the caller) shows this image's scale
        viz.show_image(r["kernel"], f"カーネル {k}×{k}: {name}", ax=ax_w, cmap="RdBu_r")
        kernel_image = ax_w.images[-1]
    out = r["out"]
    vmax = float(np.abs(out).max()) or 1.0
    cmap, lims = ("RdBu_r", (-vmax, vmax)) if r["filter"] in SIGNED else ("gray", (None, None))
    ho, wo = out.shape
    viz.show_image(out, f"出力 {ho}×{wo}（S = {s}, D = {d}）", ax=ax_out, cmap=cmap,
                   vmin=lims[0], vmax=lims[1])
    i, j = r["pixel"]
    viz.outline(ax_out, i, j, 1, 1, color="red")
    ax_out.set_xlabel(f"Y({i},{j}) = {r['field_value']:.3f}（入力の赤い枠）", fontsize=9)
    print(r["formula"])  # as text above the figure: rendering it as glyphs doubles the time
    return kernel_image  # fixed margins: tight_layout would double the drawing time too


def conv_explorer(image: str = "photo", filter: str = "sobel x", kernel_size: int = 3,
                  stride: int = 1, padding: int = 0, dilation: int = 1) -> Explorer:
    """The convolution explorer on the photograph (notebook 01).

    ``result`` holds ``out`` (H_out, W_out), ``out_shape``, ``formula`` (the output-size formula
    with numbers), ``dropped`` (rows, columns the stride drops), ``kernel`` and the receptive
    field of the chosen output pixel. An impossible combination sets ``message``.
    """
    controls = {
        "image": dropdown(IMAGES, image, "画像", IMAGE_LABELS),
        "filter": dropdown(FILTERS, filter, "フィルタ", FILTER_LABELS),
        "kernel_size": int_slider(kernel_size, 1, 11, "カーネルの大きさ K"),
        "stride": int_slider(stride, 1, 5, "ストライド S"),
        "padding": int_slider(padding, 0, 10, "パディング P"),
        "dilation": int_slider(dilation, 1, 4, "ダイレーション D"),
        "out_row": int_slider(EXPLORER_SIZE // 4, 0, EXPLORER_SIZE, "出力の行 i"),
        "out_col": int_slider(EXPLORER_SIZE // 4, 0, EXPLORER_SIZE, "出力の列 j"),
    }
    rows = [["image", "filter"], ["kernel_size", "stride"], ["padding", "dilation"],
            ["out_row", "out_col"]]
    return Explorer(controls, _compute_conv, _conv_drawer(), adapt=_adapt_conv, rows=rows)


# --------------------------------------------------------------------------- colour and edges


def color_filter_bank(k: int = 3) -> tuple[np.ndarray, list[str]]:
    """Six k×k×3 filters for an RGB image, as ``w`` (6, 3, k, k) and their names."""
    sx, sy = make_filter("sobel x", k), make_filter("sobel y", k)
    box = np.full((k, k), 1.0 / (k * k))
    zero = np.zeros((k, k))
    bank = [
        ([sx / 3, sx / 3, sx / 3], "縦のエッジ"),
        ([sy / 3, sy / 3, sy / 3], "横のエッジ"),
        ([box, -box, zero], "赤 − 緑"),
        ([-box / 2, -box / 2, box], "青 − 黄"),
        ([box / 3, box / 3, box / 3], "明るさ"),
        ([sx, zero, zero], "赤チャネルのエッジ"),
    ]
    w = np.array([np.stack(chans) for chans, _ in bank])
    return w, [name for _, name in bank]


def show_filter_bank(img: np.ndarray, w: np.ndarray, names: list[str],
                     maps: np.ndarray) -> Figure:
    """The RGB input, each k×k×3 filter as a colour swatch, and the feature map it makes.

    img (H, W, 3); w (F, 3, k, k); maps (F, H_out, W_out) as computed by ``conv2d_forward``.
    """
    f = w.shape[0]
    fig, axes = plt.subplots(2, f + 1, figsize=(2.1 * (f + 1), 4.6),
                             gridspec_kw={"height_ratios": [1, 2]})
    viz.show_image(img, "入力 (H, W, 3)", ax=axes[1, 0])
    axes[0, 0].set_visible(False)
    for n in range(f):
        swatch = np.moveaxis(w[n], 0, -1)  # (k, k, 3) to draw as colours
        scale = 2 * float(np.abs(swatch).max()) or 1.0
        viz.show_image(0.5 + swatch / scale, names[n], ax=axes[0, n + 1])  # 0 → mid grey
        m = maps[n]
        vmax = float(np.abs(m).max()) or 1.0
        viz.show_image(m, f"マップ {n}", ax=axes[1, n + 1], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    fig.suptitle(f"大きさ {w.shape[2]}×{w.shape[3]}×{w.shape[1]} のフィルタ {f} 枚 → "
                 f"特徴マップ {f} 枚（フィルタの色見本: 灰色 = 0、色 = チャネルごとの重みの符号）",
                 fontsize=10)
    fig.tight_layout(h_pad=1.5)
    return fig


LINE_LABELS = {"vertical edge": "縦のエッジ", "horizontal edge": "横のエッジ",
               "vertical line": "縦の線", "horizontal line": "横の線",
               "diagonal line \\": "斜めの線 \\", "diagonal line /": "斜めの線 /"}


def show_edges_and_lines(img: np.ndarray, w: np.ndarray, names: list[str],
                         maps: np.ndarray) -> Figure:
    """The grey input, each 3×3 filter with its numbers, and |response| (bright = strong).

    img (H, W); w (F, 1, 3, 3); maps (F, H_out, W_out).
    """
    f = w.shape[0]
    fig, axes = plt.subplots(2, f + 1, figsize=(2.1 * (f + 1), 4.6),
                             gridspec_kw={"height_ratios": [1, 2]})
    axes[0, 0].set_visible(False)
    viz.show_image(img, "入力", ax=axes[1, 0])
    for n in range(f):
        viz.show_matrix(w[n, 0], LINE_LABELS.get(names[n], names[n]), ax=axes[0, n + 1],
                        cmap="RdBu_r", fontsize=8, symmetric=True)
        viz.show_image(np.abs(maps[n]), f"|マップ {n}|", ax=axes[1, n + 1], cmap="magma")
    fig.suptitle("1 層目のようなフィルタ: エッジと細い線が光ります", fontsize=10)
    fig.tight_layout(h_pad=1.5)
    return fig


# --------------------------------------------------------------------------- exercises


@exercise
def check_output_size(answer: object) -> Feedback:
    """演習 1: H = 32, K = 5, S = 2, P = 1, D = 1 → H_out."""
    expected = conv_output_size(32, 5, stride=2, padding=1)
    rounds_down = "式は小数点以下を切り捨てます（rounds down）: ⌊29/2⌋ = 14"

    def otherwise(value: float) -> str:
        if not value.is_integer():
            return (f"大きさは整数のはずですが、{value:g} でした。"
                    "切り捨て ⌊⌋ を忘れずに（round down）")
        return "まず H + 2P − D(K−1) − 1 を計算し、それを S で割って切り捨てます（round down）"

    return check_number(answer, expected, f"(32 + 2 − 4 − 1) = 29、⌊29/2⌋ + 1 = {expected}",
                        {29 / 2 + 1: rounds_down, 16: rounds_down}, otherwise, whole=False)


@exercise
def check_same_padding(answer: object) -> Feedback:
    """演習 2: K = 5, D = 2, S = 1: which P keeps H_out = H?"""

    def otherwise(value: int) -> str:
        if value < 0:
            return f"パディングは 0 以上の画素数です（P ≥ 0）。答えは {value} でした"
        out = 32 + 2 * value - 2 * (5 - 1)  # H + 2P − D(K−1) − 1, divided by S = 1, plus 1
        return (f"P = {value} だと、大きさ 32 の入力から大きさ {out} の出力ができます。"
                "H + 2P − D(K−1) − 1 + 1 = H を P について解きましょう")

    return check_number(answer, 4, "P = D(K−1)/2 = 2·4/2 = 4 なら、どの大きさの入力でも出力の"
                                   "大きさが変わりません（keeps every size）", {}, otherwise)


@exercise
def check_conv_params(answer: object) -> Feedback:
    """演習 3: 64 filters of 3×3 on a 32-channel input, with biases: how many parameters?"""
    weights = 64 * 32 * 3 * 3
    return check_number(
        answer, weights + 64, f"64·(3·3·32 + 1) = {weights + 64}",
        {weights: "重みの数は合っています。フィルタ 1 枚ごとにバイアスを 1 つ足します"
                  "（one bias per filter）",
         64 * (3 * 3 + 1): "各フィルタは 32 の入力チャネルすべてにかかるので、重みは k×k×C 個"
                           "です（all input channels）"},
        "フィルタ 1 枚あたり重み k·k·C 個とバイアス 1 個、それにフィルタの枚数を掛けます")


def _conv_one_map(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """One (H, W) map convolved with one (k, k) filter by ``cnnlib.conv``."""
    return conv2d_forward(x[None, None], w[None, None], np.zeros(1), stride=stride)[0][0, 0]


@exercise
def check_my_conv2d(fn: Callable) -> Feedback:
    """演習 4: ``fn(x, w, stride)`` for x (H, W), w (k, k), no padding → (H_out, W_out)."""
    rng = np.random.default_rng(1)
    cases = [(rng.normal(size=shape), rng.normal(size=(k, k)), s)
             for shape, k, s in [((5, 5), 3, 1), ((7, 6), 3, 2), ((8, 9), 2, 3), ((4, 4), 4, 1)]]
    case = "x が {0.shape[0]}×{0.shape[1]}、k = {1.shape[0]}、stride {2} のとき"
    return check_function(
        fn, _conv_one_map, cases, rtol=1e-6, atol=1e-9,
        shape_message=case + "、出力の形は {want} のはずですが {got} でした（output shape）",
        value_message=case + "、形は合っていますが値が違います（values differ）。"
                             "ウィンドウは x[i·s : i·s + k, j·s : j·s + k] になっていますか？",
        success="stride 1〜3 の 4 つのケースすべてで cnnlib.conv.conv2d_forward と一致します")


# 演習 5: the windows overlap, only the last row is left out
DROPPED_ROWS = {"H": 10, "K": 3, "S": 2}


def window_rows(h: int, k: int, s: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The rows (first, last) each whole window covers (padding 0, dilation 1), and the rows
    that no window covers; e.g. H=10, K=3, S=4 → [(0, 2), (4, 6)] and [3, 7, 8, 9]."""
    windows = [(i * s, i * s + k - 1) for i in range(conv_output_size(h, k, s))]
    covered = {r for first, last in windows for r in range(first, last + 1)}
    return windows, [r for r in range(h) if r not in covered]


@exercise
def check_dropped_rows(answer: object) -> Feedback:
    """演習 5 (explain): why does H = 10, K = 3, S = 2 leave the last row out? "a", "b" or "c".

    The explanation is computed from the geometry (``window_rows``), so it cannot drift from it.
    """
    h, k, s = DROPPED_ROWS["H"], DROPPED_ROWS["K"], DROPPED_ROWS["S"]
    windows, unused = window_rows(h, k, s)
    spans = "、".join(f"{a}〜{b}" for a, b in windows)
    nxt = len(windows) * s
    _, gaps = window_rows(h, k, k + 1)
    return check_choice(
        answer, right="b",
        explanation=f"ウィンドウ（window）は {spans} 行目を覆い、隣どうしが重なるので"
                    f"途中に抜けはありません。次のウィンドウは {nxt} 行目から始まり "
                    f"{nxt}〜{nxt + k - 1} 行目が必要ですが、行は 0〜{h - 1} 行目までしか"
                    f"ないので、式の切り捨て（floor）でそのウィンドウごと捨てられ、"
                    f"{'、'.join(map(str, unused))} 行目はどのウィンドウにも入りません",
        hints={"a": f"P = 0 なのでパディングはどこにもありません。{spans} 行目を覆うウィンドウの"
                    "次のウィンドウがどこから始まるかを考えましょう",
               "c": f"S = {s} は K = {k} より小さいので、ウィンドウは重なり、行を飛ばしません。"
                    f"（S > K のとき、例えば S = {k + 1} なら {'、'.join(map(str, gaps))} 行目が"
                    "使われず、途中の行も飛ばされます。）使われないのは最後の行だけです"})


__all__ = [
    "DROPPED_ROWS",
    "FILTERS",
    "IMAGES",
    "check_conv_params",
    "check_dropped_rows",
    "check_my_conv2d",
    "check_output_size",
    "check_same_padding",
    "color_filter_bank",
    "conv_explorer",
    "conv_gray",
    "conv_step_explorer",
    "edge_and_line_filters",
    "explorer_image",
    "make_filter",
    "output_size_formula",
    "show_edges_and_lines",
    "show_filter_bank",
    "window_rows",
]
