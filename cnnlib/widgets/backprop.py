"""Widgets, figures and exercise checks for notebook 05 (lecture 七, backpropagation).

* ``tiny_graph(w, x, b, t)`` / ``plot_tiny_graph`` / ``tiny_graph_explorer()``: the chain rule
  on L = (w·x + b − t)², every node with its value and its gradient.
* ``conv_dw_as_convolution``, ``conv_dx_as_full_convolution``: the two gradients of a
  convolution written as convolutions (built on ``conv2d_forward``), stride and padding
  included; ``plot_filter_flip`` and ``conv_backward_explorer()`` show them.
* ``pool_gradient_explorer()`` / ``plot_pool_gradients``: max and average pooling backward on
  the lecture's 4×4 example, with a tie.
* ``gradient_check_rows()``: a numerical gradient check of every layer.
* ``descend`` / ``learning_rate_explorer()`` / ``plot_learning_rates``: W ← W − η·∂L/∂W on a
  toy quadratic loss.
* ``check_…``: the notebook's exercises.
The chain rule lives in ``_chain_rule``, ``gradient_check_rows`` and the update (``descend`` …)
in ``_backprop_update``; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure

from cnnlib import pool, viz
from cnnlib.conv import conv2d_backward, conv2d_forward, conv_output_size
from cnnlib.widgets._answers import (
    Feedback,
    check_function,
    check_number,
    exercise,
    feedback,
    numbers_answer,
)
from cnnlib.widgets._backprop_update import (  # re-exported: notebook 05 imports them from here
    CURVATURE,
    REGIME_LABELS,
    W_START,
    descend,
    gradient_check_rows,
    learning_rate_explorer,
    plot_learning_rates,
    toy_loss,
)
from cnnlib.widgets._base import Explorer, dropdown, int_slider, set_range
from cnnlib.widgets._chain_rule import (  # re-exported: notebook 05 imports them from here
    TINY,
    plot_tiny_graph,
    tiny_graph,
    tiny_graph_explorer,
    tiny_graph_numerical,
)
from cnnlib.widgets._images import LECTURE_X

# --------------------------------------------------------------------------- 2. convolution


def dilate(dout: np.ndarray, stride: int) -> np.ndarray:
    """Insert ``stride − 1`` zeros between neighbouring entries of the last two axes.

    (…, H_out, W_out) → (…, (H_out − 1)·stride + 1, (W_out − 1)·stride + 1). With stride 1
    the array is returned unchanged (as a copy).
    """
    dout = np.asarray(dout)
    h, w = dout.shape[-2:]
    out = np.zeros((*dout.shape[:-2], (h - 1) * stride + 1, (w - 1) * stride + 1), dout.dtype)
    out[..., ::stride, ::stride] = dout
    return out


def conv_dw_as_convolution(x: np.ndarray, dout: np.ndarray, kernel_size: int, stride: int = 1,
                           padding: int = 0) -> np.ndarray:
    """∂L/∂W as a convolution of the (padded) input with the error δ = dout as the filter.

    dw[f,c,m,q] = Σ_n Σ_i Σ_j xp[n, c, m + stride·i, q + stride·j] · dout[n,f,i,j]: slide δ
    over xp with its taps ``stride`` apart, i.e. ``conv2d_forward`` with dilation = stride.
    The batch axis plays the role of the channels being summed over.
    x: (N, C, H, W), dout: (N, F, H_out, W_out) → dw: (F, C, k, k).
    """
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    x_as_batch = np.ascontiguousarray(xp.transpose(1, 0, 2, 3))  # (C, N, Hp, Wp)
    dout_as_filters = np.ascontiguousarray(dout.transpose(1, 0, 2, 3))  # (F, N, H_out, W_out)
    bias = np.zeros(dout.shape[1], dout.dtype)
    out, _ = conv2d_forward(x_as_batch, dout_as_filters, bias, dilation=stride)  # (C, F, ., .)
    # rows/columns the forward's stride dropped give extra, unused offsets: keep k×k
    return np.ascontiguousarray(out[:, :, :kernel_size, :kernel_size].transpose(1, 0, 2, 3))


def full_padded_error(dout: np.ndarray, kernel_size: int, x_size: tuple[int, int], stride: int,
                      padding: int) -> np.ndarray:
    """δ dilated by the stride and padded by k − 1 on every side ("full" padding).

    Extra zeros at the bottom/right stand for the input rows/columns the forward dropped,
    so that sliding a k×k window over the result gives one value per (padded) input pixel.
    """
    d = dilate(dout, stride)
    k = kernel_size
    extra_h = x_size[0] + 2 * padding - (d.shape[-2] + k - 1)
    extra_w = x_size[1] + 2 * padding - (d.shape[-1] + k - 1)
    pads = [(0, 0)] * (d.ndim - 2) + [(k - 1, k - 1 + extra_h), (k - 1, k - 1 + extra_w)]
    return np.pad(d, pads)


def conv_dx_as_full_convolution(dout: np.ndarray, w: np.ndarray, x_shape: tuple[int, ...],
                                stride: int = 1, padding: int = 0) -> np.ndarray:
    """∂L/∂X as the full convolution of the error δ with the filter rotated by 180°.

    dxp[n,c,a,b] = Σ_f Σ_m Σ_q dfull[n, f, a + m, b + q] · w[f, c, k−1−m, k−1−q], where dfull
    is δ dilated by the stride and padded by k − 1 (``full_padded_error``); the padding rows
    of dxp are then cut off. dout: (N, F, H_out, W_out), w: (F, C, k, k), x_shape (N, C, H, W)
    → dx: (N, C, H, W).
    """
    _, C, H, W = x_shape
    k = w.shape[-1]
    dfull = full_padded_error(dout, k, (H, W), stride, padding)
    w_flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, F, k, k)
    dxp, _ = conv2d_forward(dfull, w_flipped, np.zeros(C, dout.dtype))  # (N, C, Hp, Wp)
    return np.ascontiguousarray(dxp[:, :, padding:padding + H, padding:padding + W])


def plot_filter_flip(w: np.ndarray, dout: np.ndarray | None = None) -> Figure:
    """W, W rotated by 180°, and the scatter picture of one error value.

    One error δ(i, j) = 1 adds W itself to the input window it came from (scatter); reading
    the same sum from an input pixel's side meets W's taps in reverse order: flip(W).
    """
    w = np.asarray(w, np.float64)
    k = w.shape[0]
    if dout is None:
        dout = np.zeros((2, 2))
        dout[1, 0] = 1.0
    _, cache = conv2d_forward(np.zeros((1, 1, dout.shape[0] + k - 1, dout.shape[1] + k - 1)),
                              w[None, None], np.zeros(1))
    dx = conv2d_backward(np.asarray(dout, np.float64)[None, None], cache)[0][0, 0]
    fig = viz.show_matrices([w, w[::-1, ::-1], dout, dx],
                            ["W", "flip(W) = W を 180° 回転", "δ（誤差 1 つ = 1）",
                             "dX: W がウィンドウにばらまかれる"])
    i, j = np.argwhere(dout != 0)[0]
    viz.outline(fig.axes[2], i, j, 1, 1)
    viz.outline(fig.axes[3], i, j, k, k)
    return fig


_CONV_VIEWS = ("dW = X * delta", "dX = full(delta) * flip(W)")
_CONV_SIZE = 5  # the explorer's input is 5×5, one channel


def _conv_example(k: int, stride: int, padding: int) -> tuple[np.ndarray, ...]:
    """The explorer's small integer example: x (1,1,5,5), w (1,1,k,k), dout (1,1,H_out,W_out)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, (1, 1, _CONV_SIZE, _CONV_SIZE)).astype(np.float64)
    w = rng.integers(-2, 3, (1, 1, 3, 3)).astype(np.float64)[:, :, :k, :k]
    size = conv_output_size(_CONV_SIZE, k, stride, padding)
    dout = rng.integers(-2, 3, (1, 1, 3, 3)).astype(np.float64)
    dout = np.resize(dout.ravel(), size * size).reshape(1, 1, size, size)
    return x, np.ascontiguousarray(w), dout


def _adapt_conv_backward(c: dict) -> None:
    """Padding up to k − 1 ("full"); row/col range over dW (k×k) or dX (5×5)."""
    k = c["kernel_size"].value
    set_range(c["padding"], 0, k - 1)
    top = k - 1 if c["view"].value == _CONV_VIEWS[0] else _CONV_SIZE - 1
    set_range(c["row"], 0, top)
    set_range(c["col"], 0, top)


def conv_backward_explorer() -> Explorer:
    """Both conv gradients as convolutions on a 5×5 example, equal to ``conv2d_backward``.

    Controls: kernel size, stride, padding, which gradient, and the (row, col) of the
    gradient entry whose window is outlined. ``result`` holds dw, dx from both routes and
    their largest differences.
    """
    controls = {"view": dropdown(_CONV_VIEWS, _CONV_VIEWS[0], "勾配（gradient）"),
                "kernel_size": int_slider(3, 2, 3, "カーネル k"),
                "stride": int_slider(1, 1, 3, "ストライド S"),
                "padding": int_slider(0, 0, 2, "パディング P"),
                "row": int_slider(0, 0, 2, "行"), "col": int_slider(0, 0, 2, "列")}

    def compute(view: str, kernel_size: int, stride: int, padding: int, row: int,
                col: int) -> dict:
        x, w, dout = _conv_example(kernel_size, stride, padding)
        _, cache = conv2d_forward(x, w, np.zeros(1), stride=stride, padding=padding)
        dx, dw, _ = conv2d_backward(dout, cache)
        dw_conv = conv_dw_as_convolution(x, dout, kernel_size, stride, padding)
        dx_full = conv_dx_as_full_convolution(dout, w, x.shape, stride, padding)
        return {"view": view, "k": kernel_size, "stride": stride, "padding": padding,
                "row": row, "col": col, "x": x, "w": w, "dout": dout, "dx": dx, "dw": dw,
                "dw_conv": dw_conv, "dx_full": dx_full,
                "dw_error": float(np.abs(dw - dw_conv).max()),
                "dx_error": float(np.abs(dx - dx_full).max())}

    return Explorer(controls, compute, _draw_conv_backward, adapt=_adapt_conv_backward,
                    rows=[["view"], ["kernel_size", "stride", "padding"], ["row", "col"]])


def _paren(v: float) -> str:
    """A number for a product in a title: negative values in parentheses."""
    return f"({v:g})" if v < 0 else f"{v:g}"


def _draw_conv_backward(r: dict) -> Figure:
    k, s, p, i, j = r["k"], r["stride"], r["padding"], r["row"], r["col"]
    if r["view"] == _CONV_VIEWS[0]:
        xp = np.pad(r["x"][0, 0], p)
        d = r["dout"][0, 0]
        rows, cols = np.meshgrid(i + s * np.arange(d.shape[0]), j + s * np.arange(d.shape[1]),
                                 indexing="ij")
        taps = " + ".join(f"{xp[a, b]:g}·{_paren(v)}" for a, b, v in
                          zip(rows.ravel(), cols.ravel(), d.ravel(), strict=True))
        title = (f"dW({i},{j}) = {taps} = {r['dw_conv'][0, 0, i, j]:g}\n"
                 f"タップの間隔 {s}（= ストライド）。conv2d_backward との差の最大 = "
                 f"{r['dw_error']:.1e}")
        fig = viz.show_matrices([xp, d, r["dw_conv"][0, 0]],
                                ["X（パディング済み）", "δ = dL/dY（これがフィルタ）", "dW"],
                                between=["*", "="], suptitle=title)
        viz.mark_pixels(fig.axes[0], rows.ravel(), cols.ravel(), size=260)
        viz.outline(fig.axes[2], i, j, 1, 1)
    else:
        dfull = full_padded_error(r["dout"], k, r["x"].shape[2:], s, p)[0, 0]
        wf = r["w"][0, 0, ::-1, ::-1]
        title = (f"dX({i},{j}) = Σ ウィンドウ·flip(W) = {r['dx_full'][0, 0, i, j]:g}\n"
                 f"conv2d_backward との差の最大 = {r['dx_error']:.1e}")
        fig = viz.show_matrices([dfull, wf, r["dx_full"][0, 0]],
                                [f"δ: 間に 0 を {s - 1} 個、周りに k−1 = {k - 1}", "flip(W)",
                                 "dX"], between=["*", "="], suptitle=title)
        viz.outline(fig.axes[0], i + p, j + p, k, k)
        viz.outline(fig.axes[2], i, j, 1, 1)
    return fig


# --------------------------------------------------------------------------- 3. pooling

# LECTURE_X (the lecture's 4×4 example, from _images) and the same with a tie in its first window
TIE_X = np.array([[1, 6, 2, 4], [5, 6, 1, 2], [7, 2, 8, 1], [3, 4, 0, 9]], dtype=np.float64)
POOL_DOUT = np.array([[1, 2], [3, 4]], dtype=np.float64)  # δ = dL/dY, one value per window
POOL_EXAMPLES = {"lecture": LECTURE_X, "tie": TIE_X}


def pool_gradient(x: np.ndarray, dout: np.ndarray, kind: str, k: int = 2) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """(Y, dX) of k×k pooling (stride k) of one (H, W) map via ``cnnlib.pool``; kind max/avg."""
    if kind not in ("max", "avg"):
        raise ValueError(f"kind は 'max' か 'avg' です（kind must be 'max' or 'avg'）。"
                         f"指定は {kind!r} でした")
    fwd, bwd = ((pool.max_pool2d_forward, pool.max_pool2d_backward) if kind == "max"
                else (pool.avg_pool2d_forward, pool.avg_pool2d_backward))
    y, cache = fwd(np.asarray(x, np.float64)[None, None], k)
    dx = bwd(np.asarray(dout, np.float64)[None, None], cache)
    return y[0, 0], dx[0, 0]


def plot_pool_gradients(x: np.ndarray, dout: np.ndarray, kind: str, k: int = 2) -> Figure:
    """X with its windows, Y, δ = dL/dY and dX for k×k pooling (stride k)."""
    y, dx = pool_gradient(x, dout, kind, k)
    rule = "各ウィンドウの δ は（最初の）最大値の位置へ" if kind == "max" \
        else f"各ウィンドウの δ は δ/{k * k} ずつ {k * k} 個の入力へ"
    fig = viz.show_matrices([x, y, dout, dx], ["X", f"Y = {kind}pool(X)", "δ = dL/dY",
                                               "dX = dL/dX"], fmt="{:g}",
                            between=["->", "   ", "->"], suptitle=rule)
    colours = ("tab:red", "tab:green", "tab:orange", "tab:purple")
    for a in range(y.shape[0]):
        for b in range(y.shape[1]):
            colour = colours[(a * y.shape[1] + b) % len(colours)]
            viz.outline(fig.axes[0], a * k, b * k, k, k, color=colour, linewidth=3)
            viz.outline(fig.axes[3], a * k, b * k, k, k, color=colour, linewidth=3)
            viz.outline(fig.axes[2], a, b, 1, 1, color=colour, linewidth=3)
    return fig


def pool_gradient_explorer() -> Explorer:
    """Max or average pooling backward on the lecture's 4×4 example or the tie case."""
    controls = {"kind": dropdown(("max", "avg"), "max", "プーリング",
                                 {"max": "最大（max）", "avg": "平均（avg）"}),
                "example": dropdown(tuple(POOL_EXAMPLES), "lecture", "入力 X",
                                    {"lecture": "4×4 の例", "tie": "同点のある例（tie）"})}

    def compute(kind: str, example: str) -> dict:
        x = POOL_EXAMPLES[example]
        y, dx = pool_gradient(x, POOL_DOUT, kind)
        return {"kind": kind, "x": x, "y": y, "dx": dx}

    def draw(r: dict) -> Figure:
        return plot_pool_gradients(r["x"], POOL_DOUT, r["kind"])

    return Explorer(controls, compute, draw)


# --------------------------------------------------------------------------- exercises

EXERCISE_GRAPH = {"w": 2.0, "x": -1.0, "b": 0.5, "t": 1.0}


@exercise
def check_chain_rule(answer: object) -> Feedback:
    """Exercise 1: (dL/dw, dL/dx, dL/db) for ``EXERCISE_GRAPH`` in L = (w·x + b − t)²."""
    names = ("dL/dw", "dL/dx", "dL/db")
    got, verdict = numbers_answer(answer, names)
    if verdict is not None:
        return verdict
    want = tiny_graph(**EXERCISE_GRAPH)["grads"]
    expected = (want["w"], want["x"], want["b"])
    if np.allclose(got, expected, atol=1e-9):
        return feedback(True, f"e = {tiny_graph(**EXERCISE_GRAPH)['values']['e']:g}, "
                              "dL/de = 2e から順に掛けていきます。")
    wrong = [n for n, g, e in zip(names, got, expected, strict=True) if not np.isclose(g, e)]
    return feedback(False, f"{', '.join(wrong)} が違います。まず e = w·x + b − t を計算し、"
                           "dL/de = 2e に局所微分を掛けましょう。")


def _conv_dw(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """dW of a single-channel, stride-1 convolution of x whose output's error is delta."""
    k = x.shape[0] - delta.shape[0] + 1
    _, cache = conv2d_forward(x[None, None], np.zeros((1, 1, k, k)), np.zeros(1))
    return conv2d_backward(delta[None, None], cache)[1][0, 0]


@exercise
def check_conv_dw(fn: Callable) -> Feedback:
    """Exercise 2: ``fn(x, delta)`` for (H, W) x and (H_out, W_out) delta gives dW (k×k).

    Stride 1, no padding, one channel: k = H − H_out + 1. Compared with ``conv2d_backward``.
    """
    rng = np.random.default_rng(11)
    cases = [(rng.standard_normal((h, w)), rng.standard_normal((h - k + 1, w - k + 1)))
             for h, w, k in ((4, 4, 2), (5, 6, 3), (6, 5, 2))]
    return check_function(
        fn, _conv_dw, cases, rtol=1e-8, atol=1e-10,
        shape_message="x が {0.shape[0]}×{0.shape[1]}、delta が {1.shape[0]}×{1.shape[1]} "
                      "のとき dW は {want[0]}×{want[1]} のはずですが、形が {got} でした。",
        value_message="値が conv2d_backward と一致しません。"
                      "dW(m, n) = Σ_i Σ_j X(i+m, j+n)·delta(i, j) です。",
        success="dW は入力 X と誤差 delta の畳み込みです。")


@exercise
def check_max_learning_rate(answer: object) -> Feedback:
    """Exercise 3: the largest stable learning rate for L = ½·λ·w² with λ = 10 (= 2/λ)."""
    return check_number(
        answer, 0.2, "w ← (1 − ηλ)·w なので |1 − ηλ| < 1、つまり η < 2/λ = 0.2。",
        {0.1: "0.1 = 1/λ は 1 歩で谷底に着く学習率です。"
              "振動しながらでも縮めばよいので、もっと大きくできます。"},
        "1 歩で w は (1 − ηλ) 倍になります。|1 − ηλ| < 1 となる η の上限は？",
        whole=False, rtol=1e-6)


__all__ = [
    "CURVATURE",
    "EXERCISE_GRAPH",
    "LECTURE_X",
    "POOL_DOUT",
    "REGIME_LABELS",
    "TIE_X",
    "TINY",
    "W_START",
    "check_chain_rule",
    "check_conv_dw",
    "check_max_learning_rate",
    "conv_backward_explorer",
    "conv_dw_as_convolution",
    "conv_dx_as_full_convolution",
    "descend",
    "dilate",
    "full_padded_error",
    "gradient_check_rows",
    "learning_rate_explorer",
    "plot_filter_flip",
    "plot_learning_rates",
    "plot_pool_gradients",
    "plot_tiny_graph",
    "pool_gradient",
    "pool_gradient_explorer",
    "tiny_graph",
    "tiny_graph_explorer",
    "tiny_graph_numerical",
    "toy_loss",
]
