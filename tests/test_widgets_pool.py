"""Notebook 02's widgets and checks (cnnlib.widgets.pool), driven headlessly."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.conv import conv_output_size
from cnnlib.widgets import pool as wp


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_lecture_example():
    assert_allclose(wp.pool2d(wp.LECTURE_X, 2, mode="max"), [[6, 4], [7, 9]])
    assert_allclose(wp.pool2d(wp.LECTURE_X, 2, mode="avg"), [[3.75, 2.25], [4, 4.5]])
    with pytest.raises(ValueError, match='mode must be "max" or "avg"'):
        wp.pool2d(wp.LECTURE_X, 2, mode="min")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_show_pool_example_colours_each_window(mode):
    fig = wp.show_pool_example(wp.LECTURE_X, 2, mode)
    fig.canvas.draw()
    ax_x, ax_y = fig.axes
    assert len(ax_y.patches) == 4 and len(ax_x.patches) == 4
    markers = [c for c in ax_x.collections if isinstance(c, PathCollection)]
    assert len(markers) == (4 if mode == "max" else 0)  # the maxima are marked
    texts = sorted(t.get_text() for t in ax_y.texts)
    assert texts == (["4", "6", "7", "9"] if mode == "max" else ["2.25", "3.75", "4.00", "4.50"])


def _reference_pool(x, window, stride, mode):
    f = reference.max_pool2d if mode == "max" else reference.avg_pool2d
    return f(x[None, None].astype(np.float64), window, stride)[0, 0]


@pytest.mark.parametrize(("source", "window", "stride", "mode"), [
    ("sobel x → ReLU", 2, 2, "max"), ("sobel y → ReLU", 3, 2, "max"),
    ("laplacian → |·|", 4, 3, "avg"), ("photo", 5, 5, "avg"), ("photo", 1, 1, "max"),
])
def test_pool_explorer_matches_the_reference(source, window, stride, mode):
    e = wp.pool_explorer()
    c = e.controls
    c["source"].value, c["window"].value, c["stride"].value, c["mode"].value = (
        source, window, stride, mode)
    assert e.message == ""
    r = e.result
    x = wp.feature_map(source)
    h, w = x.shape
    assert r["in_shape"] == (h, w)
    assert r["out_shape"] == (conv_output_size(h, window, stride),
                              conv_output_size(w, window, stride))
    assert_allclose(r["out"], _reference_pool(x, window, stride, mode), rtol=1e-5, atol=1e-6)
    assert r["dropped"] == ((h - window) % stride, (w - window) % stride)
    assert_allclose(r["ratio"], x.size / r["out"].size)
    assert r["overlap"] == (stride < window)
    assert f"⌊({h} − {window})/{stride}⌋ + 1 = {r['out_shape'][0]}" in r["formula"]


def test_feature_maps():
    for name in wp.FEATURE_MAPS:
        m = wp.feature_map(name)
        assert m.ndim == 2 and m.min() >= 0  # ReLU / |·| / the photo: all non-negative
    assert wp.feature_map("sobel x → ReLU").shape == (126, 107)
    with pytest.raises(ValueError, match="unknown feature map"):
        wp.feature_map("edges")


def test_pooling_cost_counts():
    rows = wp.pooling_cost(h=32, w=32, channels=32, window=2, next_filters=64, k=3)
    assert len(rows[0]) == len(wp.COST_HEADERS)
    assert rows[0][1:] == ["32×32×32", 32 * 32 * 32, 32 * 32 * 64 * 32 * 9, 0]
    assert rows[1][1:] == ["16×16×32", 16 * 16 * 32, 16 * 16 * 64 * 32 * 9, 16 * 16 * 32 * 3]
    rows = wp.pooling_cost(h=30, w=30, channels=1, window=3, stride=2, next_filters=1, k=1)
    assert rows[1][1] == "14×14×1"


def test_shift_change_of_a_point_inside_one_window():
    x = np.zeros((8, 8))
    x[2, 2] = 1.0
    r = wp.shift_change(x, 1, 2)
    assert r["unchanged"] == 1.0 and r["pooled_change"] == 0.0 and r["map_change"] > 0
    r = wp.shift_change(x, 2, 2)  # into the next window
    assert r["pooled_change"] > 0
    assert wp.shift_change(x, 0, 4)["pooled_change"] == 0.0


def test_pooling_reduces_the_change_on_the_feature_map():
    x = wp.feature_map("sobel x → ReLU")
    change = {p: wp.shift_change(x, 1, p)["pooled_change"] for p in (1, 2, 4)}
    assert change[4] < change[2] < change[1]
    assert_allclose(change[1], wp.shift_change(x, 1, 1)["map_change"], rtol=0.05)


def test_shift_explorer():
    e = wp.shift_explorer()
    assert e.message == "" and e.result["pooled"].shape == (16, 16)
    assert e.result["pooled_change"] < e.result["map_change"]
    e.controls["shift"].value = 0
    assert e.result["pooled_change"] == 0.0 and e.result["unchanged"] == 1.0
    e.controls["mode"].value = "avg"
    e.controls["window"].value = 4
    assert e.message == "" and e.result["pooled"].shape == (8, 8)


def test_show_shift_tolerance_draws_one_line_per_window():
    fig = wp.show_shift_tolerance(windows=(1, 2), max_shift=2)
    fig.canvas.draw()
    assert len(fig.axes[0].lines) == 2


@pytest.mark.parametrize(("check", "right", "wrongs"), [
    (wp.check_max_pool, [[4, 5], [8, 6]], [[[4, 5], [8, 5]], [[4, 5, 6]], "4, 5", [[2.25, 2.5],
                                                                                  [4.25, 3]]]),
    (wp.check_avg_pool, [[2.25, 2.5], [4.25, 3.0]], [[[4, 5], [8, 6]], [[2, 2], [4, 3]]]),
    (wp.check_pool_output_size, 13, [14, 12, 13.5]),
    (wp.check_why_shift_tolerant, "c", ["a", "b", ""]),
])
def test_checks_accept_right_and_reject_wrong(check, right, wrongs):
    assert check(None).status == "unanswered"
    assert check(right).status == "correct"
    for wrong in wrongs:
        assert check(wrong).status == "wrong", wrong


def test_check_my_avg_pool():
    def correct(x, p):
        h, w = x.shape[0] // p, x.shape[1] // p
        return x[:h * p, :w * p].reshape(h, p, w, p).mean(axis=(1, 3))

    def keeps_the_edge(x, p):
        h, w = -(-x.shape[0] // p), -(-x.shape[1] // p)
        return np.array([[x[i * p:(i + 1) * p, j * p:(j + 1) * p].mean() for j in range(w)]
                         for i in range(h)])

    assert wp.check_my_avg_pool(lambda x, p: None).status == "unanswered"
    assert wp.check_my_avg_pool(correct).status == "correct"
    assert wp.check_my_avg_pool(keeps_the_edge).status == "wrong"
    assert wp.check_my_avg_pool(lambda x, p: correct(x, p) * p).status == "wrong"
    assert "ZeroDivisionError" in wp.check_my_avg_pool(lambda x, p: 1 / 0).text
