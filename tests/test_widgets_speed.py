"""Notebook 07's timers, figures and checks (cnnlib.widgets.speed), driven headlessly."""

import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numba import prange
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.widgets import speed


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---- problems and timers ----------------------------------------------------------------------


def test_conv_problem_shapes_dtype_and_seed():
    x, w, b = speed.conv_problem(2, 3, 6, 4, 5, dtype=np.float32, seed=1)
    assert (x.shape, w.shape, b.shape) == ((2, 3, 6, 6), (4, 3, 5, 5), (4,))
    assert x.dtype == w.dtype == b.dtype == np.float32
    again = speed.conv_problem(2, 3, 6, 4, 5, dtype=np.float32, seed=1)
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), again, strict=True))
    assert_allclose(w.std(), np.sqrt(2 / 75), rtol=0.2)  # He scale, fan_in = C·K·K
    assert speed.conv_problem(1, 1, 3, 1, 1, dtype=np.float64)[0].dtype == np.float64


def test_conv_macs_counts_the_lecture_formula():
    # LeNet's second convolution, worked out in notebook 07
    assert speed.conv_macs((64, 8, 14, 14), (16, 8, 5, 5), padding=2) == 40_140_800
    # no padding: 10×10 outputs; stride 2 on 7×7 with 3×3: 3×3 outputs
    assert speed.conv_macs((1, 1, 14, 14), (1, 1, 5, 5)) == 10 * 10 * 25
    assert speed.conv_macs((2, 3, 7, 7), (4, 3, 3, 3), stride=2) == 2 * 4 * 3 * 3 * 27
    with pytest.raises(ValueError, match="x のチャネル数は 3 ですが、w は 2 を前提"):
        speed.conv_macs((1, 3, 5, 5), (1, 2, 3, 3))


def test_time_call_is_the_median_of_the_repeats():
    calls = []
    assert speed.time_call(lambda v: calls.append(v), 7, repeat=3) >= 0
    assert calls == [7, 7, 7]
    with pytest.raises(ValueError, match="repeat は 1 以上です"):
        speed.time_call(print, repeat=0)


def test_time_interleaved_calls_each_method_in_turn_with_no_pause():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = speed.time_interleaved(fns, rounds=3, warmup=0)
    assert list(seconds) == ["a", "b", "c"] and all(t >= 0 for t in seconds.values())
    # one untimed round, then rounds whose order rotates: every method once per round
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    calls.clear()
    start = time.perf_counter()
    speed.time_interleaved(fns, rounds=3, warmup=0.05)   # untimed rounds for 0.05 s first
    assert time.perf_counter() - start >= 0.05
    assert len(calls) > 3 * 4 and len(calls) % 3 == 0 and calls[-9:] == list("abcbcacab")
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        speed.time_interleaved(fns, rounds=0)


def test_time_interleaved_tells_a_slow_method_from_a_fast_one():
    seconds = speed.time_interleaved({"slow": lambda: time.sleep(0.02), "fast": lambda: None},
                                     rounds=3)
    assert seconds["slow"] >= 0.02 > seconds["fast"]


def test_compare_times_says_what_this_run_measured():
    faster = speed.compare_times("cnnlib", 0.001, "NumPy im2col", 0.004)
    assert "cnnlib が NumPy im2col より 4.0 倍速い" in faster and "1.00 ms 対 4.00 ms" in faster
    slower = speed.compare_times("Numba serial", 0.02, "NumPy im2col", 0.01)
    assert "Numba serial は NumPy im2col より遅く、NumPy im2col が 2.0 倍速い" in slower
    same = speed.compare_times("float32", 0.0100, "float64", 0.0105)
    assert "ほぼ同じ速さ" in same and "5%" in same
    with pytest.raises(ValueError, match="positive"):
        speed.compare_times("a", 0.0, "b", 1.0)


def test_speed_order_goes_from_slowest_to_fastest_and_marks_ties():
    seconds = {"NumPy im2col": 1.2e-3, "pure Python": 3.0, "cnnlib": 0.58e-3,
               "Numba serial": 0.86e-3, "Numba parallel": 0.55e-3}
    assert speed.speed_order(seconds) == (
        "pure Python < NumPy im2col < Numba serial < cnnlib ≈ Numba parallel")
    assert speed.speed_order({"a": 2.0, "b": 1.0}) == "a < b"
    assert speed.speed_order({"a": 2.0, "b": 1.0}, same=2.5) == "a ≈ b"
    assert speed.speed_order({"only": 1.0}) == "only"
    with pytest.raises(ValueError, match="positive"):
        speed.speed_order({"a": 0.0, "b": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        speed.speed_order({})


def test_compiling_says_so_before_and_reports_a_slow_block(capsys):
    with speed.compiling("畳み込み", about=5):
        pass
    out = capsys.readouterr().out
    assert "カーネルを一度だけコンパイルしています（約 5 秒" in out and "→" not in out
    with speed.compiling("畳み込み", about=5):
        time.sleep(1.05)
    assert "→ 1.1 秒（コンパイル込み" in capsys.readouterr().out


def test_first_call_of_a_fresh_njit_function_includes_the_compilation():
    from numba import njit

    @njit
    def total(v):
        s = v.dtype.type(0)
        for k in range(v.size):
            s += v[k]
        return s

    first, second = speed.first_and_second_call(total, np.ones(10))
    assert first > 10 * second  # compiling takes far longer than summing 10 numbers


# ---- table and figures ------------------------------------------------------------------------


ROWS = [
    speed.Timing("pure Python", 20.0, 40_000_000, "extrapolated"),
    speed.Timing("Numba", 0.05, 40_000_000),
    speed.Timing("cnnlib", 0.002, 40_000_000),
]


def test_speed_table_reports_gmacs_and_speedups(capsys):
    text = speed.speed_table(ROWS)
    lines = text.splitlines()
    assert lines[0].split() == ["方法", "時間", "GMAC/s", "pure", "Python", "と比べて", "メモ"]
    assert "20.00 s" in lines[2] and "1.0×" in lines[2] and "extrapolated" in lines[2]
    assert "50.00 ms" in lines[3] and "400.0×" in lines[3]
    assert "2.00 ms" in lines[4] and "10,000.0×" in lines[4] and "20" in lines[4]  # 20 GMAC/s
    assert text in capsys.readouterr().out  # printed outside a notebook
    assert "Numba と比べて" in speed.speed_table(ROWS, baseline="Numba")
    with pytest.raises(ValueError, match="'NumPy' という行はありません"):
        speed.speed_table(ROWS, baseline="NumPy")
    with pytest.raises(ValueError, match="1 つ以上必要です"):
        speed.speed_table([])


def test_plot_speed_uses_a_log_axis_with_one_labelled_bar_per_method():
    fig = speed.plot_speed(ROWS)
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["pure Python", "Numba", "cnnlib"]
    widths = sorted(p.get_width() for p in ax.patches)
    assert_allclose(widths, [0.002, 0.05, 20.0])
    assert {t.get_text() for t in ax.texts} == {"20.00 s", "50.00 ms", "2.00 ms"}
    lo, hi = ax.get_xlim()
    assert lo < 0.002 and hi > 20.0


def test_plot_race_errors_marks_the_rounding_level():
    fig = speed.plot_race_errors({"racy": [0.3, 1e-5, 0.1], "fixed": [1e-5, 1e-5, 0.0]})
    fig.canvas.draw()
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()[:2]] == ["racy", "fixed"]
    assert_allclose(ax.get_lines()[1].get_ydata(), [1e-5, 1e-5, 1e-12])  # an exact 0 stays visible
    assert list(ax.get_xticks()) == [1, 2, 3]
    assert any(t.get_text() == "float32 の丸め誤差" for t in ax.texts)


# ---- the on-disk cache -------------------------------------------------------------------------


def test_cache_demo_loads_the_second_time_what_the_first_compiled():
    demo = speed.cache_demo()
    assert demo["second_process"] < demo["first_process"]
    assert any(f.startswith("cached_sum.conv") and f.endswith(".nbi") for f in demo["files"])
    assert any(f.endswith(".nbc") for f in demo["files"])


# ---- races ------------------------------------------------------------------------------------


def test_relative_error():
    assert speed.relative_error([1.0, 2.0], [1.0, 2.0]) == 0
    assert_allclose(speed.relative_error([1.0, 2.5], [1.0, 2.0]), 0.25)
    assert_allclose(speed.relative_error(np.float32([1, 2]), np.float64([1, 2])), 0)


def _dw_by_filter(x, dout, dw):
    """A race-free dw (prange over f), run here as plain Python through race_errors."""
    N, C = x.shape[:2]
    F, _, K, _ = dw.shape
    for f in prange(F):
        for c in range(C):
            for m in range(K):
                for q in range(K):
                    g = 0.0
                    for n in range(N):
                        for i in range(dout.shape[2]):
                            for j in range(dout.shape[3]):
                                g += dout[n, f, i, j] * x[n, c, i + m, j + q]
                    dw[f, c, m, q] = g


def test_race_errors_runs_the_kernel_on_a_zeroed_dw_each_time():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((3, 2, 2, 2))
    dout = rng.standard_normal((2, 3, 3, 3))
    dw_expected = reference.conv2d_backward(dout, x, w)[1]
    errors = speed.race_errors(_dw_by_filter, x, dout, dw_expected, runs=2)
    assert len(errors) == 2 and max(errors) < 1e-12

    def accumulating(x, dout, dw):  # adds to dw: wrong unless dw starts at 0 every run
        _dw_by_filter(x, dout, dw)
        dw += 1.0

    errors = speed.race_errors(accumulating, x, dout, dw_expected, runs=3)
    assert errors[0] == errors[1] == errors[2] > 0.01


# ---- exercises --------------------------------------------------------------------------------


def test_check_conv_macs(capsys):
    assert speed.check_conv_macs(None).status == "unanswered"
    assert speed.check_conv_macs(64 * 16 * 14 * 14 * 8 * 25)
    assert "64" in speed.check_conv_macs(16 * 14 * 14 * 8 * 25).text  # one sample only
    assert "8 input channels" in speed.check_conv_macs(64 * 16 * 14 * 14 * 25).text
    assert "10×10" not in speed.check_conv_macs(64 * 16 * 14 * 14 * 8 * 25).text
    assert "14×14" in speed.check_conv_macs(64 * 16 * 10 * 10 * 8 * 25).text
    assert not speed.check_conv_macs(12345)
    assert not speed.check_conv_macs(64 * 16 * 14 * 14 * 8 * 25 + 0.5)  # not cut to a whole number
    assert not speed.check_conv_macs("many")
    assert "✓" in capsys.readouterr().out


def test_check_safe_prange():
    assert speed.check_safe_prange(...).status == "unanswered"
    assert speed.check_safe_prange(" B ")
    assert "lost" in speed.check_safe_prange("a").text
    assert not speed.check_safe_prange("c")
    assert "one letter" in speed.check_safe_prange("d").text


def _db_prange(dout, db):
    for f in prange(dout.shape[1]):
        g = 0.0
        for n in range(dout.shape[0]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    g += dout[n, f, i, j]
        db[f] = g


def _db_serial(dout, db):
    for f in range(dout.shape[1]):
        db[f] = dout[:, f].sum()


def _db_placeholder(dout, db):
    ...


def _db_wrong(dout, db):
    for f in range(dout.shape[1]):
        db[f] = dout[0, f].sum()  # forgets the other samples


def _db_unset(dout, db):
    db[0] = dout[:, 0].sum()


def _db_raises(dout, db):
    raise ValueError("not yet")


def test_check_db_kernel():
    assert speed.check_db_kernel(_db_placeholder).status == "unanswered"
    fb = speed.check_db_kernel(_db_prange)
    assert fb and "race-free" in fb.text
    fb = speed.check_db_kernel(_db_serial)
    assert fb and "without prange" in fb.text
    assert "differs" in speed.check_db_kernel(_db_wrong).text
    assert "never written" in speed.check_db_kernel(_db_unset).text
    assert "plain Python failed" in speed.check_db_kernel(_db_raises).text
    assert "pass the function itself" in speed.check_db_kernel(42).text


def test_check_db_kernel_reports_a_numba_error_instead_of_raising():
    def uses_a_dict(dout, db):
        cache = {"total": {}}  # a dict of dicts: Numba cannot type it
        for f in range(dout.shape[1]):
            cache["total"][f] = dout[:, f].sum()
            db[f] = cache["total"][f]

    fb = speed.check_db_kernel(uses_a_dict)
    assert fb.status == "wrong" and "Numba could not compile" in fb.text


def test_check_float32_rounding():
    assert speed.check_float32_rounding(None).status == "unanswered"
    assert speed.check_float32_rounding(1)
    assert speed.check_float32_rounding(1.0)
    assert "7" in speed.check_float32_rounding(1.00000001).text
    assert not speed.check_float32_rounding(0.5)
    assert "number" in speed.check_float32_rounding("one").text
