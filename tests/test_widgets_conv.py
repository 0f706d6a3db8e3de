"""Notebook 01's widgets and checks (cnnlib.widgets.conv), driven headlessly."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.conv import conv_output_size
from cnnlib.widgets import conv as wc


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("name", wc.FILTERS)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 11])
def test_every_filter_exists_for_every_allowed_size(name, k):
    if k < wc.MIN_KERNEL.get(name, 1):
        with pytest.raises(ValueError, match="以上必要です（kernel size）"):
            wc.make_filter(name, k)
        return
    w = wc.make_filter(name, k)
    assert w.shape == (k, k) and np.all(np.isfinite(w))
    if name in ("identity", "box blur", "gaussian", "sharpen"):
        assert_allclose(w.sum(), 1.0, atol=1e-12)  # a flat image keeps its brightness
    if name in ("sobel x", "sobel y", "laplacian"):
        assert_allclose(w.sum(), 0.0, atol=1e-12)  # a flat image gives no response


def test_classic_3x3_filters():
    assert_allclose(wc.make_filter("sobel x", 3), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    assert_allclose(wc.make_filter("sobel y", 3), [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    assert_allclose(wc.make_filter("laplacian", 3), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    assert_allclose(wc.make_filter("identity", 3), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert_allclose(wc.make_filter("sobel x", 5)[0], [-1, -2, 0, 2, 1])  # × smoothing 1
    with pytest.raises(ValueError, match="unknown filter"):
        wc.make_filter("emboss", 3)


def test_sobel_x_is_positive_on_a_dark_to_bright_step():
    step = np.zeros((5, 6))
    step[:, 3:] = 1.0
    out = wc.conv_gray(step, wc.make_filter("sobel x", 3))
    assert out.max() > 0 and out.min() == 0


# --------------------------------------------------------------------------- small example


def test_conv_step_explorer_on_the_hand_example():
    e = wc.conv_step_explorer([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
    assert e.message == ""
    assert e.result["text"] == "Y(0,0) = 0·0 + 1·1 + 3·2 + 4·3 = 19"
    assert e.controls["i"].max == 1 and e.controls["j"].max == 1
    e.controls["i"].value = 1
    e.controls["j"].value = 1
    assert e.result["value"] == 43 and e.result["text"].endswith("= 43")
    assert_allclose(e.result["products"], [[0, 5], [14, 24]])


def test_conv_step_explorer_keeps_its_figure_and_redraws_it_exactly():
    x, w = [[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]]
    e = wc.conv_step_explorer(x, w)
    first, fig = e.png, e.figure
    for i, j in [(1, 0), (1, 1), (0, 1), (0, 0)]:
        e.controls["i"].value, e.controls["j"].value = i, j
        assert e.figure is fig and e.message == ""
    assert e.result["text"] == "Y(0,0) = 0·0 + 1·1 + 3·2 + 4·3 = 19"
    assert np.array_equal(_pixels(e.png), _pixels(first))  # back at (0, 0): the first picture
    e.controls["i"].value = 1
    assert not np.array_equal(_pixels(e.png), _pixels(first))
    assert plt.get_fignums() == []


# --------------------------------------------------------------------------- the explorer


def _expected(img, w, stride, padding, dilation):
    out = reference.conv2d(img[None, None].astype(np.float64), w[None, None], np.zeros(1),
                           stride=stride, padding=padding, dilation=dilation)
    return out[0, 0]


def test_explorer_default_matches_the_reference():
    e = wc.conv_explorer()
    img = wc.explorer_image("photo")
    assert e.message == "" and img.shape == (128, 109)
    r = e.result
    assert_allclose(r["out"], _expected(img, wc.make_filter("sobel x", 3), 1, 0, 1),
                    rtol=1e-5, atol=1e-5)
    assert r["out_shape"] == (126, 107)
    assert "= 126" in r["formula"] and "= 107" in r["formula"]


@pytest.mark.parametrize(("k", "s", "p", "d", "flt"), [
    (3, 2, 0, 1, "box blur"), (5, 3, 2, 1, "gaussian"), (3, 1, 1, 2, "laplacian"),
    (4, 2, 1, 1, "random"), (7, 4, 0, 3, "sobel y"), (1, 5, 0, 1, "identity"),
])
def test_explorer_output_size_formula_and_dropped_rows(k, s, p, d, flt):
    e = wc.conv_explorer(filter=flt)
    for name, value in (("kernel_size", k), ("dilation", d), ("padding", p), ("stride", s)):
        e.controls[name].value = value
    assert e.message == "", e.message
    r = e.result
    img = wc.explorer_image("photo")
    h, w = img.shape
    expected_shape = (conv_output_size(h, k, s, p, d), conv_output_size(w, k, s, p, d))
    assert r["out_shape"] == expected_shape == r["out"].shape
    expected = _expected(img, wc.make_filter(flt, k), s, p, d)
    assert_allclose(r["out"], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    for n, axis, size in ((h, "H", expected_shape[0]), (w, "W", expected_shape[1])):
        assert f"{axis}_out = ⌊({axis} + 2P − D(K−1) − 1)/S⌋ + 1" in r["formula"]
        assert f"⌊({n} + 2·{p} − {d}·({k}−1) − 1)/{s}⌋ + 1 = " in r["formula"]
        assert f"= {size}" in r["formula"]
    # the rows/columns that no window reaches, counted from the padded size
    for axis, n in enumerate((h, w)):
        last_row_used = (expected_shape[axis] - 1) * s + d * (k - 1)
        assert r["dropped"][axis] == n + 2 * p - 1 - last_row_used


@pytest.mark.parametrize(("s", "p", "d"), [(1, 0, 1), (2, 1, 1), (3, 2, 2)])
def test_receptive_field_gives_the_chosen_output_pixel(s, p, d):
    e = wc.conv_explorer(filter="random", kernel_size=3, stride=s, padding=p, dilation=d)
    e.controls["out_row"].value = 7
    e.controls["out_col"].value = 11
    r = e.result
    assert r["pixel"] == (7, 11)
    assert r["field_top_left"] == (7 * s, 11 * s)
    assert r["field"].shape == (3, 3)
    assert_allclose(r["field_value"], r["out"][7, 11], rtol=1e-4, atol=1e-5)


def test_impossible_combination_gives_a_message_and_recovers():
    e = wc.conv_explorer(image="tiny 6×6")
    c = e.controls
    c["kernel_size"].value = 6
    c["dilation"].value = 2  # covers 11 pixels of a 6-pixel image
    assert e.result is None and e.figure is None
    assert e.message.startswith("出力がありません（no output）: カーネル（6 タップ、"
                                "ダイレーション 2）は 11 画素")
    assert "パディングを 3 以上" in e.message and e.message.endswith("（no output）")
    assert c["out_row"].disabled and c["out_col"].disabled
    assert plt.get_fignums() == []
    c["padding"].value = 3  # the fix the message suggests
    assert e.message == "" and e.result["out_shape"] == (2, 2)
    assert not c["out_row"].disabled and c["out_row"].max == 1


def test_slider_ranges_adapt():
    e = wc.conv_explorer(filter="identity", kernel_size=1)
    c = e.controls
    assert c["kernel_size"].min == 1 and c["padding"].max == 1
    c["filter"].value = "laplacian"  # needs k >= 3: the kernel slider moves up
    assert c["kernel_size"].min == 3 and c["kernel_size"].value == 3 and e.message == ""
    c["dilation"].value = 3
    assert c["padding"].max == 3 * (3 - 1)  # "full" padding
    h_out, w_out = e.result["out_shape"]
    assert (c["out_row"].max, c["out_col"].max) == (h_out - 1, w_out - 1)
    c["image"].value = "tiny 6×6"
    c["dilation"].value = 1
    c["padding"].value = 0
    assert c["kernel_size"].max == 6  # no kernel larger than the (padded) image
    assert c["out_row"].max == e.result["out_shape"][0] - 1


def test_explorer_updates_one_kept_figure_and_draws_what_a_new_one_draws():
    """A slider move updates the artists of the explorer's figure (no new axes); the picture
    is the one a fresh explorer draws at those values, pixel for pixel, also across K = 5
    (numbers ↔ image with a colour bar), an error and back."""
    e = wc.conv_explorer()
    c = e.controls
    moves = [("stride", 2), ("padding", 2), ("dilation", 3), ("out_row", 5),
             ("filter", "gaussian"), ("kernel_size", 7), ("kernel_size", 9),
             ("image", "crop 24×24"), ("kernel_size", 3), ("stride", 1), ("image", "tiny 6×6"),
             ("kernel_size", 6), ("dilation", 2), ("padding", 3), ("kernel_size", 2),
             ("image", "photo")]
    figures, errors = {True: e.figure}, 0
    for name, value in moves:
        c[name].value = value
        if e.message:
            errors += 1
            continue
        matrix = c["kernel_size"].value <= 5  # numbers up to 5×5, else an image
        assert figures.setdefault(matrix, e.figure) is e.figure, (name, value)  # kept, updated
        values = e.values()
        fresh = wc.conv_explorer(**{k: values[k] for k in ("image", "filter", "kernel_size",
                                                           "stride", "padding", "dilation")})
        fresh.controls["out_row"].value = values["out_row"]
        fresh.controls["out_col"].value = values["out_col"]
        assert fresh.values() == values
        a, b = _pixels(e.png), _pixels(fresh.png)
        assert a.shape == b.shape and np.array_equal(a, b), (name, value)
    assert len(figures) == 2 and errors >= 1
    assert plt.get_fignums() == []


def test_output_size_formula_text():
    text = wc.output_size_formula(8, 3, 2, 0, 1)
    assert text == "H_out = ⌊(H + 2P − D(K−1) − 1)/S⌋ + 1 = ⌊(8 + 2·0 − 1·(3−1) − 1)/2⌋ + 1 = " \
                   "⌊5/2⌋ + 1 = 3"
    assert wc.output_size_formula(4, 5, 1, 0, 1, "W").endswith("出力がありません（no output）")


def test_explorer_images():
    assert wc.explorer_image("crop 24×24").shape == (24, 24)
    assert wc.explorer_image("tiny 6×6").shape == (6, 6)
    with pytest.raises(ValueError, match="unknown image"):
        wc.explorer_image("cat")


# --------------------------------------------------------------------------- colour and edges


def test_color_filter_bank_through_conv2d():
    w, names = wc.color_filter_bank(3)
    assert w.shape == (6, 3, 3, 3) and len(names) == 6
    img = np.random.default_rng(0).random((10, 12, 3))
    maps = reference.conv2d(img.transpose(2, 0, 1)[None], w, np.zeros(6), padding=1)[0]
    fig = wc.show_filter_bank(img, w, names, maps)
    fig.canvas.draw()
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1 + 2 * 6
    grey = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    red_green = names.index("赤 − 緑")
    grey_maps = reference.conv2d(grey.transpose(2, 0, 1)[None], w, np.zeros(6), padding=1)[0]
    assert_allclose(grey_maps[red_green], 0.0, atol=1e-12)  # no colour, no colour difference


def test_edge_and_line_filters_find_their_orientation():
    w, names = wc.edge_and_line_filters()
    assert w.shape == (6, 1, 3, 3)
    for orientation, column in (("vertical line", True), ("horizontal line", False)):
        x = np.zeros((9, 9))
        if column:
            x[:, 4] = 1.0
        else:
            x[4, :] = 1.0
        strength = np.abs(reference.conv2d(x[None, None], w, np.zeros(6))[0]).max(axis=(1, 2))
        assert names[int(np.argmax(strength))] == orientation
    fig = wc.show_edges_and_lines(x, w, names, np.zeros((6, 7, 7)))
    fig.canvas.draw()


# --------------------------------------------------------------------------- exercises


@pytest.mark.parametrize(("check", "right", "wrongs"), [
    (wc.check_output_size, 15, [16, 15.5, 14, "15"]),
    (wc.check_same_padding, 4, [2, 0, 8, -1, 4.5]),
    (wc.check_conv_params, 18496, [18432, 640, 0]),
    (wc.check_dropped_rows, "b", ["a", "c", "B?"]),
])
def test_checks_accept_right_and_reject_wrong(check, right, wrongs, capsys):
    assert check(None).status == "unanswered"
    assert check(...).status == "unanswered"
    assert check(right).status == "correct"
    for wrong in wrongs:
        assert check(wrong).status == "wrong", wrong
    assert "✓" in capsys.readouterr().out
    if isinstance(right, int):
        assert check(float(right)).status == "correct"  # 15.0 is 15


def _loops_conv(x, w, stride=1):
    k = w.shape[0]
    h_out, w_out = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = np.zeros((h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            out[i, j] = np.sum(x[i * stride:i * stride + k, j * stride:j * stride + k] * w)
    return out


def test_check_my_conv2d():
    assert wc.check_my_conv2d(lambda x, w, stride=1: None).status == "unanswered"
    assert wc.check_my_conv2d(_loops_conv).status == "correct"
    no_stride = wc.check_my_conv2d(lambda x, w, stride=1: _loops_conv(x, w, 1))
    assert no_stride.status == "wrong" and "stride 2" in no_stride.text  # the 2nd case fails
    assert "（output shape）" in no_stride.text
    assert "(3, 2)" in no_stride.text and "(5, 4)" in no_stride.text  # wanted, got
    flipped = wc.check_my_conv2d(lambda x, w, stride=1: _loops_conv(x, w[::-1, ::-1], stride))
    assert flipped.status == "wrong" and "（values differ）" in flipped.text
    assert "5×5" in flipped.text  # already the first case
    assert wc.check_my_conv2d(None).status == "unanswered"
    assert "ZeroDivisionError" in wc.check_my_conv2d(lambda x, w, stride=1: 1 / 0).text
