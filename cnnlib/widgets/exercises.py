"""Checked backward-pass exercises for notebook 05 (lecture 七), at CS231n assignment-2 depth.

Hand and small exercises (∂L/∂X and pooling backward):

* ``check_conv_dx(fn)``: ``fn(delta (F, H_out, W_out), w (F, C, k, k)) -> dX (C, H, W)``,
  stride 1, no padding: δ padded by k − 1 ("full") and convolved with the flipped filters,
  summed over the filters f.
* ``check_max_pool_backward_by_hand(answer)`` / ``check_avg_pool_backward_by_hand(answer)``.

Implement-it-yourself (a grid of shapes, strides and paddings against cnnlib and the numerical
gradient; the feedback names the case, the array, the index and the term that differs):

* ``check_conv_forward(fn)``: ``fn(x, w, b, stride, padding) -> out`` (NCHW, batched).
* ``check_conv_backward(fn)``: ``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)``.
* ``check_max_pool_forward(fn)``: ``fn(x, pool, stride) -> out``.
* ``check_max_pool_backward(fn)``: ``fn(dout, x, pool, stride) -> dx``.

Every checker turns any answer (a wrong shape, a tuple of the wrong length, an exception, an
infinite loop stopped with Ctrl-C excepted) into printed Japanese feedback and never raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np

from cnnlib.conv import conv2d_backward, conv2d_forward, conv_output_size
from cnnlib.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from cnnlib.widgets._base import Feedback, exercise, feedback
from cnnlib.widgets._exercise_tools import (
    _array,
    _call,
    _first_difference,
    _numbers,
    _numerical,
    _reads_any_answer,
    _Unanswered,
    _Wrong,
)

# --------------------------------------------------------------------------- ∂L/∂X, by a loop


def _conv_dx_cases() -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(21)
    for f, c, h, w, k in ((1, 1, 3, 3, 2), (1, 1, 5, 4, 3), (2, 3, 5, 5, 3), (3, 2, 4, 6, 2)):
        x = rng.standard_normal((1, c, h, w))
        weights = rng.standard_normal((f, c, k, k))
        out, cache = conv2d_forward(x, weights, np.zeros(f))
        delta = rng.standard_normal(out.shape)
        dx = conv2d_backward(delta, cache)[0]
        case = f"F={f}, C={c}, 入力 {h}×{w}, k={k}"
        yield case, delta[0], weights, dx[0]


def _dx_variants(delta: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Classic wrong answers: the filter not flipped; only filter 0; a "valid" correlation."""
    _, c_count, k, _ = w.shape
    h, wd = delta.shape[1] + k - 1, delta.shape[2] + k - 1
    padded = np.pad(delta, ((0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    no_flip = np.zeros((c_count, h, wd))
    first_only = np.zeros((c_count, h, wd))
    for c in range(c_count):
        for r in range(h):
            for s in range(wd):
                patch = padded[:, r:r + k, s:s + k]
                no_flip[c, r, s] = np.sum(patch * w[:, c])
                first_only[c, r, s] = np.sum(patch[0] * w[0, c, ::-1, ::-1])
    return {"no_flip": no_flip, "first_only": first_only}


@exercise
@_reads_any_answer
def check_conv_dx(fn: Callable) -> Feedback:
    """演習: ``fn(delta (F, H_out, W_out), w (F, C, k, k)) -> dX (C, H, W)``; stride 1, P = 0."""
    for case, delta, w, want in _conv_dx_cases():
        got = _array(_call(fn, delta, w), "dX", want.shape, case)
        index = _first_difference(got, want)
        if index is None:
            continue
        variants = _dx_variants(delta, w)
        text = f"{case}: {_numbers(index, got, want, 'dX')}。"
        if np.allclose(got, variants["no_flip"]):
            text += ("フィルタを反転していません。full パディングした δ に掛けるのは "
                     "W[f, c, k−1−m, k−1−n]（180° 回転）です")
        elif w.shape[0] > 1 and np.allclose(got, variants["first_only"]):
            text += ("フィルタ 0 の分しか入っていません。dX(c, r, s) は すべてのフィルタ f に"
                     "ついての和です")
        else:
            text += ("dX(c, r, s) = Σ_f Σ_m Σ_n δ(f, r−m, s−n)·W(f, c, m, n)"
                     "（δ の範囲外は 0）です")
        return feedback(False, text)
    return feedback(True, "dX は δ を k−1 の full パディングして、180° 回転したフィルタで"
                          "畳み込み、フィルタ f について足したものです。cnnlib の "
                          "conv2d_backward と一致しました")


# --------------------------------------------------------------------------- pooling, by hand

MAXPOOL_EX_X = np.array([[2, 7, 5, 1], [4, 0, 3, 5], [6, 1, 2, 2], [0, 4, 9, 8]],
                        dtype=np.float64)  # the top-right window has a tie: 5 at (0, 2), (1, 3)
MAXPOOL_EX_DOUT = np.array([[1, -2], [0.5, 3]], dtype=np.float64)
AVGPOOL_EX_DOUT = np.array([[4, 8], [-4, 12]], dtype=np.float64)  # 2×2 windows, stride 1, 3×3 X


def _grid_answer(answer: object, shape: tuple[int, int]) -> np.ndarray:
    try:
        arr = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Wrong(f"{shape[0]}×{shape[1]} の数のリスト（行のリスト）で答えてください") from None
    if arr.shape != shape:
        raise _Wrong(f"形が {arr.shape} です。入力と同じ {shape[0]}×{shape[1]} で答えてください"
                     "（勾配 ∂L/∂X は X と同じ形です）")
    return arr


def max_pool_exercise_answer() -> np.ndarray:
    """∂L/∂X of the max-pool exercise (2×2, stride 2), from cnnlib."""
    _, cache = max_pool2d_forward(MAXPOOL_EX_X[None, None], 2)
    return max_pool2d_backward(MAXPOOL_EX_DOUT[None, None], cache)[0, 0]


def avg_pool_exercise_answer() -> np.ndarray:
    """∂L/∂X of the average-pool exercise (2×2 windows, stride 1 on a 3×3 X), from cnnlib."""
    _, cache = avg_pool2d_forward(np.zeros((1, 1, 3, 3)), 2, stride=1)
    return avg_pool2d_backward(AVGPOOL_EX_DOUT[None, None], cache)[0, 0]


@exercise
@_reads_any_answer
def check_max_pool_backward_by_hand(answer: object) -> Feedback:
    """演習: ∂L/∂X (4×4) of 2×2 max pooling (stride 2) of MAXPOOL_EX_X, δ = MAXPOOL_EX_DOUT."""
    got, want = _grid_answer(answer, (4, 4)), max_pool_exercise_answer()
    index = _first_difference(got, want)
    if index is None:
        return feedback(True, "δ は各ウィンドウの最大値の位置にだけ戻り、右上のウィンドウの同点"
                              "（5 と 5）では行優先で最初の (0, 2) だけが受け取ります")
    both = want.copy()
    both[1, 3] = MAXPOOL_EX_DOUT[0, 1]
    last = both.copy()
    last[0, 2] = 0.0
    if np.allclose(got, both):
        return feedback(False, "右上のウィンドウには 5 が 2 つあります。cnnlib（と PyTorch）は"
                               "行優先で最初の最大値だけに δ を渡すので、(1, 3) は 0 です"
                               "（ウィンドウに戻る勾配の合計が δ のままになります）")
    if np.allclose(got, last):
        return feedback(False, "同点のときは、行優先（左上から右へ、次の行へ）で最初の最大値 "
                               "(0, 2) に δ を渡します")
    r, s = index
    window = (r // 2, s // 2)
    return feedback(False, f"dX[{r}, {s}] = {got[index]:g}、正しくは {want[index]:g}。この画素は"
                           f"ウィンドウ {window}（δ = {MAXPOOL_EX_DOUT[window]:g}）に属します。"
                           "最大値の位置なら δ、それ以外は 0 です")


@exercise
@_reads_any_answer
def check_avg_pool_backward_by_hand(answer: object) -> Feedback:
    """演習: ∂L/∂X (3×3) of 2×2 average pooling with stride 1 (overlapping) for AVGPOOL_EX_DOUT."""
    got, want = _grid_answer(answer, (3, 3)), avg_pool_exercise_answer()
    index = _first_difference(got, want)
    if index is None:
        return feedback(True, "ウィンドウが重なるので、中央の画素は 4 つのウィンドウから δ/4 を"
                              "受け取り、合計 (4 + 8 − 4 + 12)/4 = 5 になります")
    r, s = index
    windows = [(i, j) for i in range(2) for j in range(2) if i <= r <= i + 1 and j <= s <= j + 1]
    terms = " + ".join(f"{AVGPOOL_EX_DOUT[w]:g}/4" for w in windows)
    text = (f"dX[{r}, {s}] = {got[index]:g}、正しくは {want[index]:g}。この画素は "
            f"{len(windows)} 個のウィンドウ {windows} に入っているので、{terms} です")
    if np.isclose(np.sum(got), np.sum(want) * 4):
        text += "（δ を 4 で割り忘れていませんか？ 平均は 1/p² を掛けます）"
    return feedback(False, text)


# --------------------------------------------------------------------------- implement it yourself

# (N, C, H, W), (F, k), stride, padding: the classic from-scratch bugs — stride 2 and 3, padding
# 0-2, sizes that do not divide, non-square inputs and kernels, batch of 1, one channel.
CONV_GRID = [
    ((1, 1, 4, 4), (1, 2), 1, 0),
    ((2, 3, 5, 5), (4, 3), 1, 1),
    ((2, 2, 7, 6), (3, 3), 2, 0),
    ((1, 3, 8, 7), (2, 3), 3, 1),
    ((2, 1, 6, 9), (2, 2), 2, 2),
    ((3, 2, 5, 4), (2, 1), 1, 0),
]
POOL_GRID = [
    ((1, 1, 4, 4), 2, 2),
    ((2, 3, 6, 6), 3, 3),
    ((2, 2, 7, 5), 2, 2),   # odd sizes: the last row/column is dropped
    ((1, 2, 7, 7), 3, 2),   # overlapping windows
    ((2, 1, 5, 8), 2, 1),   # stride 1: every inner pixel is in 4 windows
]


def _conv_case(index: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, int, int]:
    (n, c, h, w), (f, k), stride, padding = CONV_GRID[index]
    rng = np.random.default_rng(100 + index)
    x = rng.standard_normal((n, c, h, w))
    weights = rng.standard_normal((f, c, k, k))
    b = rng.standard_normal(f)
    name = (f"ケース {index + 1}: x {x.shape}, w {weights.shape}, stride={stride}, "
            f"padding={padding}")
    return name, x, weights, b, stride, padding


def _window_text(i: int, j: int, k: int, stride: int, padding: int) -> str:
    top, left = i * stride - padding, j * stride - padding
    return (f"入力の行 {top}〜{top + k - 1}・列 {left}〜{left + k - 1}"
            "（負の添字と範囲外はパディングの 0）")


@exercise
@_reads_any_answer
def check_conv_forward(fn: Callable) -> Feedback:
    """``fn(x (N,C,H,W), w (F,C,k,k), b (F,), stride, padding) -> out (N,F,H_out,W_out)``."""
    for index in range(len(CONV_GRID)):
        case, x, w, b, stride, padding = _conv_case(index)
        want, _ = conv2d_forward(x, w, b, stride=stride, padding=padding)
        h_out = conv_output_size(x.shape[2], w.shape[2], stride, padding)
        value = _call(fn, x, w, b, stride, padding)
        if value is None:
            raise _Unanswered
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, tuple) else None
        if arr is None:
            raise _Wrong(f"{case}: out を 1 つの配列で返してください（tuple が返されました）")
        if arr.shape != want.shape:
            raise _Wrong(f"{case}: out の形が {arr.shape} ですが、{want.shape} のはずです。"
                         f"H_out = (H + 2P − k)//S + 1 = ({x.shape[2]} + 2·{padding} − "
                         f"{w.shape[2]})//{stride} + 1 = {h_out}（幅も同じ）")
        got = _array(arr, "out", want.shape, case)
        where = _first_difference(got, want)
        if where is None:
            continue
        n, f, i, j = where
        k = w.shape[2]
        text = f"{case}: {_numbers(where, got, want, 'out')}。"
        diff = got - want
        if np.allclose(diff, -b[None, :, None, None]):
            text += "バイアス b[f] が足されていません"
        elif np.allclose(diff, b[None, :, None, None]):
            text += "バイアスが 2 回足されています"
        elif np.allclose(got, conv2d_forward(x, w[:, :, ::-1, ::-1].copy(), b, stride=stride,
                                             padding=padding)[0]):
            text += ("フィルタを反転しています。CNN の「畳み込み」は反転しない相互相関"
                     "（cross-correlation）です")
        else:
            text += (f"out[{n}, {f}, {i}, {j}] = b[{f}] + Σ_c Σ_m Σ_n x[{n}, c, {i}·S+m−P, "
                     f"{j}·S+n−P]·w[{f}, c, m, n] は {_window_text(i, j, k, stride, padding)} "
                     "を使います")
        return feedback(False, text)
    return feedback(True, f"{len(CONV_GRID)} ケース（ストライド 1〜3、パディング 0〜2、割り切れない"
                          "大きさ、バッチ 1、1 チャネル）すべてで cnnlib の conv2d_forward と一致"
                          "しました")


def _conv_loss_of(key: str, arrays: dict[str, np.ndarray], dout: np.ndarray, stride: int,
                  padding: int, value: np.ndarray) -> float:
    """L = Σ conv(x, w, b)·dout with ``arrays[key]`` replaced by ``value`` (numerical check)."""
    args = {**arrays, key: value}
    out, _ = conv2d_forward(args["x"], args["w"], args["b"], stride=stride, padding=padding)
    return float(np.sum(out * dout))


@exercise
@_reads_any_answer
def check_conv_backward(fn: Callable) -> Feedback:
    """``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)``, compared array by array."""
    for index in range(len(CONV_GRID)):
        case, x, w, b, stride, padding = _conv_case(index)
        out, cache = conv2d_forward(x, w, b, stride=stride, padding=padding)
        dout = np.random.default_rng(200 + index).standard_normal(out.shape)
        wants = dict(zip(("dx", "dw", "db"), conv2d_backward(dout, cache), strict=True))
        value = _call(fn, dout, x, w, b, stride, padding)
        if value is None:
            raise _Unanswered
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise _Wrong(f"{case}: (dx, dw, db) の 3 つを tuple で返してください")
        if any(v is None for v in value):
            raise _Unanswered
        gots = {name: _array(v, name, wants[name].shape, case)
                for name, v in zip(wants, value, strict=True)}
        for name in ("db", "dw", "dx"):
            got, want = gots[name], wants[name]
            where = _first_difference(got, want)
            if where is None:
                continue
            arrays = {"x": x, "w": w, "b": b}
            loss = functools.partial(_conv_loss_of, name[1:], arrays, dout, stride, padding)
            numeric = _numerical(loss, arrays[name[1:]], where)
            text = (f"{case}: {_numbers(where, got, want, name)}"
                    f"（数値微分でも {numeric:.6g}）。")
            text += _conv_backward_hint(name, where, got, want, dout, w, stride, padding)
            return feedback(False, text)
    return feedback(True, f"{len(CONV_GRID)} ケースすべてで dx・dw・db が cnnlib の "
                          "conv2d_backward と数値微分に一致しました")


def _conv_backward_hint(name: str, where: tuple[int, ...], got: np.ndarray, want: np.ndarray,
                        dout: np.ndarray, w: np.ndarray, stride: int, padding: int) -> str:
    if name == "db":
        if np.allclose(got, dout[0].sum(axis=(1, 2))):
            return "db はバッチのすべてのサンプル n についても足します: db[f] = Σ_n Σ_i Σ_j dout"
        return "db[f] = Σ_n Σ_i Σ_j dout[n, f, i, j] です"
    n_samples = dout.shape[0]
    if n_samples > 1 and np.allclose(got * n_samples, want):
        return "バッチの和になっていません（1 サンプル分か、平均になっています）"
    if name == "dw":
        f, c, m, q = where
        return (f"dw[{f}, {c}, {m}, {q}] = Σ_n Σ_i Σ_j dout[n, {f}, i, j]·x[n, {c}, i·S+{m}−P, "
                f"j·S+{q}−P]。ストライド S = {stride} では x のタップは S 画素おき、"
                f"パディング P = {padding} の 0 の位置は 0 を掛けます")
    n, c, r, s = where
    return (f"dx[{n}, {c}, {r}, {s}] は、この画素を含むすべてのウィンドウ (i, j) と フィルタ f "
            f"についての dout[{n}, f, i, j]·w[f, {c}, {r}+P−i·S, {s}+P−j·S] の和です"
            f"（S = {stride}, P = {padding}）。ストライドで使われなかった画素の勾配は 0 です")


def _pool_case(index: int) -> tuple[str, np.ndarray, int, int]:
    shape, pool, stride = POOL_GRID[index]
    rng = np.random.default_rng(300 + index)
    x = rng.standard_normal(shape)
    if index == 0:  # a tie in the first window: the first maximum (row-major) takes it
        x[0, 0, :2, :2] = [[1.0, 3.0], [3.0, 0.5]]
    return f"ケース {index + 1}: x {x.shape}, pool={pool}, stride={stride}", x, pool, stride


@exercise
@_reads_any_answer
def check_max_pool_forward(fn: Callable) -> Feedback:
    """``fn(x (N,C,H,W), pool, stride) -> out (N,C,H_out,W_out)``; no padding."""
    for index in range(len(POOL_GRID)):
        case, x, pool, stride = _pool_case(index)
        want, _ = max_pool2d_forward(x, pool, stride=stride)
        value = _call(fn, x, pool, stride)
        if value is None:
            raise _Unanswered
        h_out = conv_output_size(x.shape[2], pool, stride)
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != want.shape:
            raise _Wrong(f"{case}: out の形が {arr.shape} ですが、{want.shape} のはずです。"
                         f"H_out = (H − pool)//S + 1 = ({x.shape[2]} − {pool})//{stride} + 1 = "
                         f"{h_out}")
        got = _array(arr, "out", want.shape, case)
        where = _first_difference(got, want)
        if where is None:
            continue
        n, c, i, j = where
        top, left = i * stride, j * stride
        text = (f"{case}: {_numbers(where, got, want, 'out')}。out[{n}, {c}, {i}, {j}] は "
                f"x[{n}, {c}, {top}:{top + pool}, {left}:{left + pool}] の最大値です")
        if np.allclose(got, avg_pool2d_forward(x, pool, stride=stride)[0]):
            text += "（平均になっています）"
        return feedback(False, text)
    return feedback(True, f"{len(POOL_GRID)} ケース（重なるウィンドウ、割り切れない大きさを含む）"
                          "すべてで cnnlib の max_pool2d_forward と一致しました")


def _pool_loss(dout: np.ndarray, pool: int, stride: int, x: np.ndarray) -> float:
    """L = Σ maxpool(x)·dout (numerical check)."""
    return float(np.sum(max_pool2d_forward(x, pool, stride=stride)[0] * dout))


@exercise
@_reads_any_answer
def check_max_pool_backward(fn: Callable) -> Feedback:
    """``fn(dout (N,C,H_out,W_out), x (N,C,H,W), pool, stride) -> dx (N,C,H,W)``."""
    for index in range(len(POOL_GRID)):
        case, x, pool, stride = _pool_case(index)
        out, cache = max_pool2d_forward(x, pool, stride=stride)
        dout = np.random.default_rng(400 + index).standard_normal(out.shape)
        want = max_pool2d_backward(dout, cache)
        value = _call(fn, dout, x, pool, stride)
        if value is None:
            raise _Unanswered
        got = _array(value, "dx", x.shape, case)
        where = _first_difference(got, want)
        if where is None:
            continue
        n, c, r, s = where
        windows = [(i, j) for i in range(out.shape[2]) for j in range(out.shape[3])
                   if i * stride <= r < i * stride + pool and j * stride <= s < j * stride + pool]
        wins = [(i, j) for i, j in windows
                if np.unravel_index(np.argmax(x[n, c, i * stride:i * stride + pool,
                                                j * stride:j * stride + pool]), (pool, pool))
                == (r - i * stride, s - j * stride)]

        numeric = _numerical(functools.partial(_pool_loss, dout, pool, stride), x, where)
        text = (f"{case}: {_numbers(where, got, want, 'dx')}（数値微分でも {numeric:.6g}）。"
                f"x[{n}, {c}, {r}, {s}] は {len(windows)} 個のウィンドウ {windows} に入り、")
        if wins:
            text += (f"そのうち {wins} で最大値です。dx はそれらの dout の和です"
                     "（ウィンドウが重なるときは += で足します）")
        else:
            text += "どのウィンドウでも最大値ではないので、dx は 0 です"
        if index == 0 and (r, s) in ((0, 1), (1, 0)):
            text += "。同点のときは行優先（左上から右へ）で最初の最大値だけが受け取ります"
        return feedback(False, text)
    return feedback(True, f"{len(POOL_GRID)} ケース（同点、重なるウィンドウ、割り切れない大きさ）"
                          "すべてで cnnlib の max_pool2d_backward と一致しました")


__all__ = [
    "AVGPOOL_EX_DOUT",
    "CONV_GRID",
    "MAXPOOL_EX_DOUT",
    "MAXPOOL_EX_X",
    "POOL_GRID",
    "avg_pool_exercise_answer",
    "check_avg_pool_backward_by_hand",
    "check_conv_backward",
    "check_conv_dx",
    "check_conv_forward",
    "check_max_pool_backward",
    "check_max_pool_backward_by_hand",
    "check_max_pool_forward",
    "max_pool_exercise_answer",
]
