"""Notebook 00's widgets and checks (cnnlib.widgets.intro), driven headlessly."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.layers import Conv2d, Linear
from cnnlib.widgets import intro


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_param_counts_match_the_lecture_and_the_layers():
    mlp = intro.mlp_param_count(32, 32, 3, 1000)
    conv = intro.conv_param_count(3, 3, 1)
    assert mlp == {"inputs": 3072, "weights": 3_072_000, "biases": 1000}
    assert conv == {"per_filter": 27, "weights": 27, "biases": 1}
    assert Linear(3072, 10).params["w"].size == intro.mlp_param_count(32, 32, 3, 10)["weights"]
    layer = Conv2d(3, 16, 5)
    assert layer.params["w"].size == intro.conv_param_count(5, 3, 16)["weights"]
    assert layer.params["b"].size == intro.conv_param_count(5, 3, 16)["biases"]


def test_param_calculator_follows_the_sliders():
    e = intro.param_calculator()
    assert e.message == ""
    assert e.result["mlp"]["weights"] == 3_072_000 and e.result["conv"]["per_filter"] == 27
    assert "重み 3,072,000 個" in e.result["text"]
    e.controls["h"].value = 224
    e.controls["w"].value = 224
    assert e.result["mlp"]["weights"] == 224 * 224 * 3 * 1000
    assert e.result["conv"]["weights"] == 27  # independent of the image size
    e.controls["filters"].value = 64
    assert e.result["conv"]["weights"] == 27 * 64
    assert_allclose(e.result["ratio"], (224 * 224 * 3 * 1000 + 1000) / (27 * 64 + 64))


@pytest.mark.parametrize(("row", "col", "k"), [(40, 40, 5), (0, 0, 3), (95, 81, 9), (10, 70, 7)])
def test_receptive_field_value_is_the_output_pixel(row, col, k):
    e = intro.receptive_field_explorer(row=row, col=col, k=k)
    assert e.message == ""
    r = e.result
    assert r["patch"].shape == (3, k, k)
    assert_allclose(r["value"], r["out"][row, col], rtol=1e-4, atol=1e-6)
    x = intro._rgb_photo(intro.FIELD_SIZE).transpose(2, 0, 1)[None].astype(np.float64)
    expected = reference.conv2d(x, intro.edge_filter_rgb(k), np.zeros(1), padding=k // 2)
    assert_allclose(r["out"], expected[0, 0], rtol=1e-4, atol=1e-6)


def test_receptive_field_explorer_updates():
    e = intro.receptive_field_explorer()
    e.controls["k"].value = 7
    e.controls["row"].value = 12
    assert e.result["k"] == 7 and e.result["row"] == 12 and e.message == ""
    assert_allclose(e.result["value"], e.result["out"][12, e.result["col"]], rtol=1e-4,
                    atol=1e-6)


def test_edge_filter_rgb_answers_one_to_a_unit_step():
    k = 5
    step = np.zeros((3, 9, 9))
    step[:, :, 5:] = 1.0
    out = reference.conv2d(step[None], intro.edge_filter_rgb(k), np.zeros(1))[0, 0]
    assert_allclose(out.max(), 1.0)


def test_shift_image():
    x = np.arange(12.0).reshape(3, 4)
    assert_allclose(intro.shift_image(x, 1, 2), [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 4, 5]])
    assert_allclose(intro.shift_image(x, 0, 0), x)


@pytest.mark.parametrize(("dy", "dx"), [(0, 1), (0, 6), (3, 0), (5, 12), (9, 19)])
def test_conv_moves_with_the_input_and_the_mlp_does_not(dy, dx):
    r = intro.translation_result(dy, dx)
    assert np.array_equal(r["x1"], intro.shift_image(r["x0"], dy, dx))  # nothing falls off
    assert r["conv_error"] < 1e-5
    assert_allclose(r["conv_correlation"], 1.0, atol=1e-6)
    assert_allclose(r["conv_max"][0], r["conv_max"][1], rtol=1e-6)
    assert r["mlp_correlation"] < 0.95 and r["mlp_change"] > 0.2


def test_mlp_response_is_relu_of_a_linear_layer():
    x = intro.place_object(0, 0)
    w, b = intro._mlp_weights()
    assert_allclose(intro.mlp_response(x), reference.relu(reference.linear(
        x.reshape(1, -1).astype(np.float64), w.astype(np.float64), b.astype(np.float64)))[0],
        rtol=1e-4, atol=1e-5)


def test_translation_explorer_follows_the_sliders():
    e = intro.translation_explorer()
    assert e.message == "" and e.result["dx"] == 6
    e.controls["dy"].value = 4
    assert e.result["dy"] == 4 and e.result["conv_error"] < 1e-5
    assert e.controls["dy"].max == 9 and e.controls["dx"].max == 19  # object stays inside


def test_figures_draw():
    intro.show_grid_data().canvas.draw()
    fig = intro.show_shift_curves(max_shift=3)
    fig.canvas.draw()
    conv_line, mlp_line = fig.axes[0].lines[:2]
    assert_allclose(conv_line.get_ydata(), 1.0, atol=1e-6)
    assert mlp_line.get_ydata()[0] == pytest.approx(1.0) and min(mlp_line.get_ydata()) < 0.9


@pytest.mark.parametrize(("check", "right", "wrongs"), [
    (intro.check_mlp_weights, 6_144_000, [6_144_500, 2_048_000, 12_288]),
    (intro.check_conv_params, 1216, [1200, 416, 75]),
    (intro.check_why_equivariant, "b", ["a", "c", "bb"]),
])
def test_checks_accept_right_and_reject_wrong(check, right, wrongs):
    assert check(None).status == "unanswered"
    assert check(right).status == "correct"
    for wrong in wrongs:
        assert check(wrong).status == "wrong", wrong


def test_check_shift():
    assert intro.check_shift(lambda x, dy, dx: None).status == "unanswered"
    assert intro.check_shift(intro.shift_image).status == "correct"
    assert intro.check_shift(None).status == "unanswered"
    rolled = intro.check_shift(lambda x, dy, dx: np.roll(x, (dy, dx), axis=(0, 1)))
    assert rolled.status == "wrong" and "np.roll" in rolled.text
    assert "（wraps around）" in rolled.text
    swapped = intro.check_shift(lambda x, dy, dx: intro.shift_image(x, dx, dy))
    assert swapped.status == "wrong" and "(1, 2)" in swapped.text  # the first case fails
    assert "wraps around" not in swapped.text
    cropped = intro.check_shift(lambda x, dy, dx: intro.shift_image(x, dy, dx)[1:])
    assert cropped.status == "wrong" and "(5, 6)" in cropped.text and "(4, 6)" in cropped.text
    ragged = intro.check_shift(lambda x, dy, dx: [[1.0, 2.0], [3.0]])
    assert ragged.status == "wrong" and "（array of numbers）" in ragged.text


def _fails_on_the_canvas(x, dy, dx):
    """Right on the small random cases, but raises on the 32×40 canvas of the last call."""
    if x.shape == intro.CANVAS:
        raise IndexError("index 40 is out of bounds")
    return intro.shift_image(x, dy, dx)


def test_check_shift_reports_an_exception_of_the_students_code():
    fb = intro.check_shift(lambda x, dy, dx: 1 / 0)  # must not raise
    assert fb.status == "wrong" and "実行中にエラー" in fb.text
    assert "ZeroDivisionError: division by zero" in fb.text
    fb = intro.check_shift(_fails_on_the_canvas)  # the last call, on the canvas
    assert fb.status == "wrong" and "IndexError: index 40 is out of bounds" in fb.text


def test_check_shift_calls_on_copies():
    def shift_in_place(x, dy, dx):  # wrong style, but the checker's data must stay intact
        out = intro.shift_image(x, dy, dx)
        x[...] = -1.0
        return out

    fb = intro.check_shift(shift_in_place)
    assert fb.status == "correct" and "True" in fb.text
