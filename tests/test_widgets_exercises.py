"""Notebook 05's backward exercises and the implement-it-yourself checkers; 01's exercise 5."""

import numpy as np
import pytest

from cnnlib.widgets import exercises as ex
from cnnlib.widgets.conv import DROPPED_ROWS, check_dropped_rows, window_rows

# ----------------------------------------------------------------- correct answers, by loops


def conv_forward(x, w, b, stride, padding):
    n_, _, h, wd = x.shape
    f_, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    out = np.zeros((n_, f_, ho, wo))
    for n in range(n_):
        for f in range(f_):
            for i in range(ho):
                for j in range(wo):
                    out[n, f, i, j] = np.sum(xp[n, :, i * stride:i * stride + k,
                                                j * stride:j * stride + k] * w[f]) + b[f]
    return out


def conv_backward(dout, x, w, b, stride, padding):
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(dout.shape[0]):
        for f in range(dout.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    win = (n, slice(None), slice(i * stride, i * stride + k),
                           slice(j * stride, j * stride + k))
                    dw[f] += dout[n, f, i, j] * xp[win]
                    dxp[win] += dout[n, f, i, j] * w[f]
    dx = dxp[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def pool_forward(x, pool, stride):
    n_, c_, h, w = x.shape
    ho, wo = (h - pool) // stride + 1, (w - pool) // stride + 1
    out = np.zeros((n_, c_, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + pool,
                                j * stride:j * stride + pool].max(axis=(2, 3))
    return out


def pool_backward(dout, x, pool, stride):
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    win = x[n, c, i * stride:i * stride + pool, j * stride:j * stride + pool]
                    m, q = np.unravel_index(np.argmax(win), win.shape)  # first maximum
                    dx[n, c, i * stride + m, j * stride + q] += dout[n, c, i, j]
    return dx


def conv_dx(delta, w):
    _, c_, k, _ = w.shape
    padded = np.pad(delta, ((0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    flipped = w[:, :, ::-1, ::-1]
    h, wd = delta.shape[1] + k - 1, delta.shape[2] + k - 1
    dx = np.zeros((c_, h, wd))
    for c in range(c_):
        for r in range(h):
            for s in range(wd):
                dx[c, r, s] = np.sum(padded[:, r:r + k, s:s + k] * flipped[:, c])
    return dx


@pytest.mark.parametrize("check, fn", [
    (ex.check_conv_forward, conv_forward), (ex.check_conv_backward, conv_backward),
    (ex.check_max_pool_forward, pool_forward), (ex.check_max_pool_backward, pool_backward),
    (ex.check_conv_dx, conv_dx),
])
def test_right_answers_pass_and_placeholders_are_unanswered(check, fn, capsys):
    assert check(fn), capsys.readouterr().out
    assert check(None).status == "unanswered"
    assert check(...).status == "unanswered"
    assert check(lambda *a: None).status == "unanswered"


# ----------------------------------------------------------------- wrong answers: where and why


def _no_bias(x, w, b, stride, padding):
    return conv_forward(x, w, np.zeros_like(b), stride, padding)


def _flipped(x, w, b, stride, padding):
    return conv_forward(x, w[:, :, ::-1, ::-1], b, stride, padding)


def _ignores_stride(x, w, b, stride, padding):
    return conv_forward(x, w, b, 1, padding)


def _off_by_one(x, w, b, stride, padding):
    out = conv_forward(x, w, b, stride, padding)
    if padding:
        out[:, :, 0, 0] += 1.0
    return out


def _db_one_sample(dout, x, w, b, stride, padding):
    dx, dw, _ = conv_backward(dout, x, w, b, stride, padding)
    return dx, dw, dout[0].sum(axis=(1, 2))


def _dw_mean(dout, x, w, b, stride, padding):
    dx, dw, db = conv_backward(dout, x, w, b, stride, padding)
    return dx, dw / dout.shape[0], db


def _dx_wrong(dout, x, w, b, stride, padding):
    dx, dw, db = conv_backward(dout, x, w, b, stride, padding)
    dx = dx.copy()
    dx[-1, -1, -1, -1] += 0.5
    return dx, dw, db


def _pool_average(x, pool, stride):
    out = np.zeros_like(pool_forward(x, pool, stride))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + pool,
                                j * stride:j * stride + pool].mean(axis=(2, 3))
    return out


def _pool_all_ties(dout, x, pool, stride):
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * stride:i * stride + pool, j * stride:j * stride + pool]
            mask = win == win.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * stride:i * stride + pool, j * stride:j * stride + pool] += \
                mask * dout[:, :, i:i + 1, j:j + 1]
    return dx


def _pool_assign(dout, x, pool, stride):   # "=" instead of "+=": wrong when windows overlap
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    win = x[n, c, i * stride:i * stride + pool, j * stride:j * stride + pool]
                    m, q = np.unravel_index(np.argmax(win), win.shape)
                    dx[n, c, i * stride + m, j * stride + q] = dout[n, c, i, j]
    return dx


def _dx_no_flip(delta, w):
    return conv_dx(delta, w[:, :, ::-1, ::-1])


def _dx_first_filter(delta, w):
    return conv_dx(delta[:1], w[:1])


@pytest.mark.parametrize("check, fn, words", [
    (ex.check_conv_forward, _no_bias, ["ケース 1", "out[", "バイアス"]),
    (ex.check_conv_forward, _flipped, ["反転"]),
    (ex.check_conv_forward, _ignores_stride, ["ケース 3", "形", "H_out"]),
    (ex.check_conv_forward, _off_by_one, ["ケース 2", "out[0, ", ", 0, 0]", "行 -1〜1"]),
    (ex.check_conv_backward, _db_one_sample, ["db", "サンプル n"]),
    (ex.check_conv_backward, _dw_mean, ["dw[", "バッチの和", "数値微分"]),
    (ex.check_conv_backward, _dx_wrong, ["dx[0, 0, 3, 3]", "数値微分", "ウィンドウ"]),
    (ex.check_max_pool_forward, _pool_average, ["平均", "の最大値"]),
    (ex.check_max_pool_backward, _pool_all_ties, ["ケース 1", "同点", "dx[0, 0, 1, 0]"]),
    (ex.check_max_pool_backward, _pool_assign, ["ケース 4", "+=", "数値微分"]),
    (ex.check_conv_dx, _dx_no_flip, ["反転"]),
    (ex.check_conv_dx, _dx_first_filter, ["フィルタ 0", "F=2"]),
])
def test_wrong_answers_say_where_and_which_term(check, fn, words, capsys):
    fb = check(fn)
    assert fb.status == "wrong"
    for word in words:
        assert word in fb.text, (word, fb.text)
    capsys.readouterr()


@pytest.mark.parametrize("answer", [
    "abc", 3, lambda *a: 1 / 0, lambda *a: "text", lambda *a: (1, 2), lambda *a: [[1, 2]],
    lambda *a: (np.zeros(2), None, None), lambda *a: np.full(1000, np.nan), lambda: 0,
    lambda *a: {"dx": 1}, lambda *a: np.array(["a", "b"]),
])
@pytest.mark.parametrize("check", [ex.check_conv_forward, ex.check_conv_backward,
                                   ex.check_max_pool_forward, ex.check_max_pool_backward,
                                   ex.check_conv_dx, ex.check_max_pool_backward_by_hand,
                                   ex.check_avg_pool_backward_by_hand])
def test_any_answer_gives_feedback_never_a_traceback(check, answer, capsys):
    fb = check(answer)
    assert fb.status in ("wrong", "unanswered")
    assert fb.text and fb.text in capsys.readouterr().out


def test_ctrl_c_is_not_swallowed():
    def interrupted(*args):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        ex.check_conv_forward(interrupted)


# ----------------------------------------------------------------- pooling by hand


def test_max_pool_by_hand(capsys):
    right = [[0, 1, -2, 0], [0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0, 3, 0]]
    assert np.array_equal(ex.max_pool_exercise_answer(), right)
    assert ex.check_max_pool_backward_by_hand(right)
    both = [row[:] for row in right]
    both[1][3] = -2
    assert "(1, 3) は 0" in ex.check_max_pool_backward_by_hand(both).text
    last = [row[:] for row in both]
    last[0][2] = 0
    assert "最初の最大値" in ex.check_max_pool_backward_by_hand(last).text
    off = [row[:] for row in right]
    off[3][2] = 0
    off[3][3] = 3
    assert "dX[3, 2]" in ex.check_max_pool_backward_by_hand(off).text
    capsys.readouterr()


def test_avg_pool_by_hand(capsys):
    right = ex.avg_pool_exercise_answer()
    assert np.allclose(right, [[1, 3, 2], [0, 5, 5], [-1, 2, 3]])
    assert ex.check_avg_pool_backward_by_hand(right.tolist())
    fb = ex.check_avg_pool_backward_by_hand((right * 4).tolist())
    assert "4 で割り" in fb.text
    wrong = right.copy()
    wrong[1, 1] = 20 / 4 / 4
    assert "4 個のウィンドウ" in ex.check_avg_pool_backward_by_hand(wrong).text
    capsys.readouterr()


# ----------------------------------------------------------------- 01, exercise 5


def test_window_rows_geometry():
    assert window_rows(10, 3, 4) == ([(0, 2), (4, 6)], [3, 7, 8, 9])   # S > K skips rows
    assert window_rows(10, 3, 2) == ([(0, 2), (2, 4), (4, 6), (6, 8)], [9])
    assert window_rows(9, 3, 3) == ([(0, 2), (3, 5), (6, 8)], [])


def test_dropped_rows_explanation_matches_the_geometry(capsys):
    _, unused = window_rows(DROPPED_ROWS["H"], DROPPED_ROWS["K"], DROPPED_ROWS["S"])
    assert unused == [DROPPED_ROWS["H"] - 1]          # exactly one right answer: only the last
    fb = check_dropped_rows("b")
    assert fb and "0〜2、2〜4、4〜6、6〜8" in fb.text and "9 行目" in fb.text
    assert "S = 4 なら 3、7、8、9 行目" in check_dropped_rows("c").text
    capsys.readouterr()
