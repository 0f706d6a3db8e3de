"""Notebook 05's widgets, figures and checks (cnnlib.widgets.backprop), driven headlessly."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.registry import PAIRS
from cnnlib.widgets import backprop as wb


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- chain rule


def test_tiny_graph_worked_example():
    g = wb.tiny_graph(**wb.TINY)
    assert g["values"] == {"w": 3, "x": 2, "b": -1, "t": 4, "u": 6, "z": 5, "e": 1, "L": 1}
    assert (g["grads"]["w"], g["grads"]["x"], g["grads"]["b"]) == (4, 6, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_graph_gradients_match_central_differences(seed):
    w, x, b, t = np.random.default_rng(seed).uniform(-3, 3, 4)
    g = wb.tiny_graph(w, x, b, t)
    numeric = wb.tiny_graph_numerical(w, x, b, t)
    for name in ("w", "x", "b"):
        assert_allclose(g["grads"][name], numeric[name], rtol=1e-6, atol=1e-6)
    assert_allclose(g["grads"]["w"], 2 * (w * x + b - t) * x)  # the closed form


def test_tiny_graph_explorer_and_figure():
    e = wb.tiny_graph_explorer()
    assert e.message == "" and e.result["max_error"] < 1e-6
    e.controls["t"].value = 5.0  # e = 3·2 − 1 − 5 = 0: every gradient vanishes
    assert e.result["grads"]["w"] == 0 and e.result["values"]["L"] == 0
    texts = " ".join(t.get_text() for t in e.figure.axes[0].texts)
    assert "dL/dw = 0" in texts and "numerical" in texts
    fig = wb.plot_tiny_graph(wb.tiny_graph(**wb.TINY))
    assert "dL/dx = 6" in " ".join(t.get_text() for t in fig.axes[0].texts)


# --------------------------------------------------------------------------- convolution


def test_dilate_inserts_stride_minus_one_zeros():
    d = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert_allclose(wb.dilate(d, 1), d)
    assert_allclose(wb.dilate(d, 3), [[1, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])


def test_conv_gradients_on_the_notebook_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    delta = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    assert_allclose(wb.conv_dw_as_convolution(x, delta, 2)[0, 0], [[27, 37], [57, 67]])
    assert_allclose(wb.conv_dx_as_full_convolution(delta, w, x.shape)[0, 0],
                    [[0, 1, 2], [2, 10, 10], [6, 17, 12]])
    assert_allclose(wb.full_padded_error(delta, 2, (3, 3), 1, 0)[0, 0],
                    np.pad(delta[0, 0], 1))


_SHAPES = [(1, 1, 1, 5, 5, 3), (2, 3, 4, 7, 6, 3), (1, 2, 3, 8, 5, 2), (2, 1, 2, 6, 9, 4)]
_GRID = [(s, p, *shape) for s in (1, 2, 3) for p in (0, 1, 2) for shape in _SHAPES
         if p <= shape[-1] - 1]  # padding beyond k − 1 only adds zeros


@pytest.mark.parametrize(("stride", "padding", "n", "c", "f", "h", "w", "k"), _GRID)
def test_conv_gradients_as_convolutions_match_the_reference(stride, padding, n, c, f, h, w, k):
    rng = np.random.default_rng(stride * 10 + padding)
    x = rng.standard_normal((n, c, h, w))
    kernel = rng.standard_normal((f, c, k, k))
    out = reference.conv2d(x, kernel, np.zeros(f), stride=stride, padding=padding)
    dout = rng.standard_normal(out.shape)
    dx, dw, _ = reference.conv2d_backward(dout, x, kernel, stride=stride, padding=padding)
    assert_allclose(wb.conv_dw_as_convolution(x, dout, k, stride, padding), dw,
                    rtol=1e-10, atol=1e-10)
    assert_allclose(wb.conv_dx_as_full_convolution(dout, kernel, x.shape, stride, padding), dx,
                    rtol=1e-10, atol=1e-10)


def test_plot_filter_flip_shows_w_rotated_and_scattered():
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    fig = wb.plot_filter_flip(w)
    fig.canvas.draw()
    flipped = [t.get_text() for t in fig.axes[1].texts]
    assert flipped == ["4", "3", "2", "1"]
    scattered = [t.get_text() for t in fig.axes[3].texts]  # δ(1, 0) = 1 puts W at rows 1-2
    assert scattered == ["0", "0", "0", "1", "2", "0", "3", "4", "0"]


@pytest.mark.parametrize("view", wb._CONV_VIEWS)
@pytest.mark.parametrize(("k", "stride", "padding"), [(3, 1, 0), (2, 2, 1), (3, 3, 2), (3, 2, 1)])
def test_conv_backward_explorer_routes_agree(view, k, stride, padding):
    e = wb.conv_backward_explorer()
    c = e.controls
    c["view"].value, c["kernel_size"].value = view, k
    c["stride"].value, c["padding"].value = stride, padding
    c["row"].value, c["col"].value = c["row"].max, c["col"].max
    assert e.message == ""
    r = e.result
    assert r["dw_error"] < 1e-12 and r["dx_error"] < 1e-12
    assert r["dw"].shape == (1, 1, k, k) and r["dx"].shape == (1, 1, 5, 5)
    assert c["padding"].max == k - 1
    assert c["row"].max == (k - 1 if view == wb._CONV_VIEWS[0] else 4)
    title = e.figure.texts[0].get_text()
    value = r["dw_conv"][0, 0, -1, -1] if view == wb._CONV_VIEWS[0] else r["dx_full"][0, 0, -1, -1]
    assert f"= {value:g}\n" in title


def test_conv_backward_explorer_shrinks_padding_with_the_kernel():
    e = wb.conv_backward_explorer()
    e.controls["padding"].value = 2
    e.controls["kernel_size"].value = 2
    assert e.controls["padding"].value == 1 and e.message == ""


# --------------------------------------------------------------------------- pooling


def test_pool_gradients_on_the_lecture_example():
    y, dx = wb.pool_gradient(wb.LECTURE_X, wb.POOL_DOUT, "max")
    assert_allclose(y, [[6, 4], [7, 9]])
    expected = np.zeros((4, 4))
    expected[1, 1], expected[0, 3], expected[2, 0], expected[3, 3] = 1, 2, 3, 4
    assert_allclose(dx, expected)
    _, dx_avg = wb.pool_gradient(wb.LECTURE_X, wb.POOL_DOUT, "avg")
    assert_allclose(dx_avg, np.kron(wb.POOL_DOUT, np.ones((2, 2))) / 4)
    for kind in ("max", "avg"):  # both reach the reference
        f = getattr(reference, f"{kind}_pool2d_backward")
        assert_allclose(wb.pool_gradient(wb.LECTURE_X, wb.POOL_DOUT, kind)[1],
                        f(wb.POOL_DOUT[None, None], wb.LECTURE_X[None, None], 2)[0, 0])


def test_pool_gradient_tie_goes_to_the_first_maximum():
    _, dx = wb.pool_gradient(wb.TIE_X, wb.POOL_DOUT, "max")
    assert dx[0, 1] == 1 and dx[1, 1] == 0
    assert_allclose(dx.reshape(2, 2, 2, 2).sum(axis=(1, 3)), wb.POOL_DOUT)
    with pytest.raises(ValueError, match="kind must be"):
        wb.pool_gradient(wb.TIE_X, wb.POOL_DOUT, "min")


def test_pool_gradient_explorer():
    e = wb.pool_gradient_explorer()
    assert e.message == "" and e.result["dx"][1, 1] == 1
    e.controls["kind"].value = "avg"
    assert_allclose(e.result["dx"], np.kron(wb.POOL_DOUT, np.ones((2, 2))) / 4)
    e.controls["example"].value = "tie"
    e.controls["kind"].value = "max"
    assert e.result["dx"][0, 1] == 1
    assert "（最初の）" in e.figure.texts[0].get_text()


# --------------------------------------------------------------------------- gradient check


def test_gradient_check_rows_cover_every_layer_and_pass():
    rows = wb.gradient_check_rows()
    layers = {r[0] for r in rows}
    assert layers == {pair.label for pair in PAIRS.values()} | {"softmax_cross_entropy"}
    assert len(rows) == sum(len(pair.grads) for pair in PAIRS.values()) + 1 == 27
    assert max(r[3] for r in rows) < 1e-7


def test_gradient_check_catches_a_wrong_backward():
    from cnnlib.activations import relu_backward, relu_forward
    from cnnlib.gradcheck import check_gradients

    x = np.random.default_rng(1).standard_normal((3, 5))
    assert check_gradients(relu_forward, lambda d, c: 2 * relu_backward(d, c), x)[0] > 0.1


# --------------------------------------------------------------------------- the update


@pytest.mark.parametrize(("lr", "regime"), [(0.001, "too small"), (0.01, "too small"),
                                            (0.1, "good"), (0.19, "good"),
                                            (0.21, "divergent"), (1.0, "divergent")])
def test_descend_regimes(lr, regime):
    r = wb.descend(lr)
    assert r["regime"] == regime
    assert_allclose(r["rho"], max(abs(1 - lr), abs(1 - 10 * lr)))
    assert r["path"].shape == (31, 2) and r["losses"].shape == (31,)
    # every step multiplies w_k by (1 − η·λ_k)
    assert_allclose(r["path"][-1], wb.W_START * (1 - lr * wb.CURVATURE) ** 30, rtol=1e-9)


def test_descend_first_step_by_hand_and_bad_lr():
    assert_allclose(wb.descend(0.1, steps=1)["path"][1], [-3.6, 0.0])
    assert_allclose(wb.toy_loss(np.array([-4.0, 1.5])), 0.5 * (16 + 10 * 2.25))
    with pytest.raises(ValueError, match="正の数"):
        wb.descend(0.0)


def test_learning_rate_explorer_and_figure():
    e = wb.learning_rate_explorer()
    assert e.message == "" and e.result["regime"] == "good"
    e.controls["lr"].value = 0.5
    assert e.result["regime"] == "divergent"
    e.controls["steps"].value = 5
    assert len(e.result["losses"]) == 6
    fig = wb.plot_learning_rates((0.01, 0.1, 0.21), steps=30)
    assert len(fig.axes) == 4
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()] == [
        "lr=0.01: 小さすぎ（too small）", "lr=0.1: ちょうどよい（good）",
        "lr=0.21: 発散（divergent）"]


# --------------------------------------------------------------------------- exercises


def test_check_chain_rule():
    assert wb.check_chain_rule(None).status == "unanswered"
    assert wb.check_chain_rule((5, -10, -5))
    assert not wb.check_chain_rule((5, -10, 5))
    assert not wb.check_chain_rule((5, -10))
    assert not wb.check_chain_rule("five")


def _good_dw(x, delta):
    k = x.shape[0] - delta.shape[0] + 1
    return np.array([[np.sum(x[m:m + delta.shape[0], n:n + delta.shape[1]] * delta)
                      for n in range(k)] for m in range(k)])


def test_check_conv_dw():
    assert wb.check_conv_dw(None).status == "unanswered"
    assert wb.check_conv_dw(lambda x, delta: None).status == "unanswered"
    assert wb.check_conv_dw(_good_dw)
    assert not wb.check_conv_dw(lambda x, d: _good_dw(x, d)[::-1, ::-1])  # flipped
    assert not wb.check_conv_dw(lambda x, d: np.zeros((1, 1)))  # wrong shape
    assert not wb.check_conv_dw(lambda x, d: 1 / 0)  # an error is reported, not raised
    assert not wb.check_conv_dw(42)


def test_check_max_learning_rate():
    assert wb.check_max_learning_rate(...).status == "unanswered"
    assert wb.check_max_learning_rate(0.2)
    assert wb.check_max_learning_rate(2 / 10)
    fb = wb.check_max_learning_rate(0.1)
    assert not fb and "1/λ" in fb.text
    assert not wb.check_max_learning_rate("fast")
