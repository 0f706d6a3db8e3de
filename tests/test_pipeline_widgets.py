"""cnnlib.widgets.pipeline: notebook 06's figures draw what they claim, and the checks judge."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib.data import make_shapes
from cnnlib.losses import softmax, softmax_cross_entropy
from cnnlib.models import make_cnn
from cnnlib.train import History
from cnnlib.widgets import pipeline as P


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def model():
    return make_cnn(3, 5, 16, channels=(4, 8), rng=np.random.default_rng(0))


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_shape_trace_labels_every_stage(model):
    fig = P.show_shape_trace(model, (3, 16, 16))
    labels = texts(fig)
    for shape in ["3×16×16", "4×16×16", "4×8×8", "8×4×4", "128", "5"]:
        assert shape in labels
    assert "Conv2d\n3×3, 4" in labels and "softmax" in labels and "input" in labels
    assert "112" in labels  # first conv: 4·(3·3·3 + 1)
    assert f"パラメータ {model.num_parameters():,} 個" in fig.axes[0].get_title()


def history_of(epochs: int) -> History:
    h = History()
    for e in range(epochs):
        for k in range(1, 5):
            h.step_t.append(e + k / 4)
            h.step_loss.append(2.0 / (e + k))
            h.step_acc.append(0.2 + 0.1 * e)
        h.train_loss.append(1.0 / (e + 1))
        h.train_acc.append(0.5)
        h.test_loss.append(1.2 / (e + 1))
        h.test_acc.append(0.4 + 0.1 * e)
        h.lr.append(0.1)
        h.seconds.append(1.0)
    return h


def test_plot_history_draws_train_windows_and_test_epochs():
    h = history_of(3)
    fig = P.plot_history(h)
    ax_loss, ax_acc = fig.axes
    train_line, test_line = ax_acc.get_lines()
    assert_allclose(train_line.get_xdata(), h.step_t)
    assert_allclose(test_line.get_xdata(), [1, 2, 3])
    assert_allclose(test_line.get_ydata(), h.test_acc)
    assert_allclose(ax_loss.get_lines()[1].get_ydata(), h.test_loss)
    assert "0.600" in texts(fig)


def test_live_plot_redraws_on_every_call():
    live = P.LivePlot(epochs=3, title="demo")
    for e in range(1, 4):
        live(e - 1, history_of(e))
    assert live.updates == 3
    ax_acc = live.figure.axes[1]
    assert len(ax_acc.get_lines()) == 2, "each call must replace the curves, not add to them"
    assert ax_acc.get_xlim() == pytest.approx((0, 3.05))
    assert not plt.get_fignums(), "the live figure is shown through a display handle only"


def test_confusion_figure_writes_the_counts():
    cm = np.array([[5, 1], [2, 7]])
    fig = P.show_confusion(cm, ["a", "b"])
    assert sorted(texts(fig)) == ["1", "2", "5", "7"]
    assert "正解率 0.800" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="クラス名は 3 個"):
        P.show_confusion(cm, ["a", "b", "c"])


def test_confused_examples_pick_the_right_images():
    images = np.zeros((6, 1, 4, 4))
    images[:, 0, 0, 0] = np.arange(6)  # image k is recognisable by its corner value k
    labels = np.array([0, 1, 1, 0, 1, 1])
    predictions = np.array([0, 0, 0, 0, 1, 0])
    fig = P.show_confused_examples(images, labels, predictions, [(1, 0, 3)], ["zero", "one"], n=4)
    shown = [im.get_array()[0, 0] for ax in fig.axes for im in ax.images]
    assert shown == [1, 2, 5]
    assert any("one\n→ zero\n(3×)" in t for t in texts(fig))
    with pytest.raises(ValueError, match="no confused pairs"):
        P.show_confused_examples(images, labels, predictions, [], ["zero", "one"])


def test_prediction_bars_are_the_probabilities():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    probs = softmax(logits)
    fig = P.show_predictions(np.zeros((2, 1, 4, 4)), probs, np.array([0, 2]), ["a", "b", "c"])
    bar_axes = [ax for ax in fig.axes if ax.patches]
    heights = [[p.get_width() for p in ax.patches] for ax in bar_axes]
    assert_allclose(heights, probs, rtol=1e-12)
    colours = [[p.get_facecolor() for p in ax.patches] for ax in bar_axes]
    assert colours[0][0] == plt.matplotlib.colors.to_rgba("C2")  # right and chosen: green
    assert colours[1][2] == plt.matplotlib.colors.to_rgba("C3")  # true class, missed: red
    assert colours[1][1] == plt.matplotlib.colors.to_rgba("C1")  # wrongly chosen: orange


def test_filters_grey_and_rgb(model):
    fig = P.show_filters(model.layers[0].params["w"])
    assert sum(len(ax.images) for ax in fig.axes) == 4
    rgb = fig.axes[0].images[0].get_array()
    assert rgb.shape == (3, 3, 3) and rgb.min() >= 0 and rgb.max() <= 1
    w = np.zeros((2, 3, 3, 3))
    w[0, 0, 1, 2], w[1, 2, 0, 0] = 2.0, -1.0  # filter 0: one red tap; filter 1: anti-blue
    pixels = [im.get_array() for ax in P.show_filters(w).axes for im in ax.images]
    assert_allclose(pixels[0][1, 2], [1.0, 0.5, 0.5])
    assert_allclose(pixels[1][0, 0], [0.5, 0.5, 0.0])  # each filter on its own scale
    assert_allclose(pixels[0][0, 0], [0.5, 0.5, 0.5])  # zero weights are grey
    grey = P.show_filters(np.ones((2, 1, 3, 3)))
    assert grey.axes[0].images[0].get_array().shape == (3, 3)
    with pytest.raises(ValueError, match=r"\(F, C, KH, KW\)"):
        P.show_filters(np.ones((3, 3)))


def test_feature_maps_by_depth_follow_the_network(model):
    image = make_shapes(1, size=16, seed=0)[0][0]
    model.train()
    maps = P.feature_maps_by_depth(model, image)
    assert [(label.split(": ")[1], m.shape) for label, m in maps] == [
        ("ReLU", (4, 16, 16)), ("MaxPool2d", (4, 8, 8)), ("ReLU", (8, 8, 8)),
        ("MaxPool2d", (8, 4, 4)),
    ]
    assert (maps[0][1] >= 0).all()
    assert model.training, "the mode is restored"
    fig = P.show_feature_maps_by_depth(model, image, n_maps=3)
    assert [len(ax.images) for ax in fig.axes] == [1, 3, 3]  # the input, then 3 maps per block
    strongest = np.argsort(-maps[0][1].mean(axis=(1, 2)), kind="stable")[0]
    assert_allclose(fig.axes[1].images[0].get_array(), maps[0][1][strongest])


# --------------------------------------------------------------------------- exercises


def test_check_block_shape():
    assert P.check_block_shape(None).status == "unanswered"
    assert P.check_block_shape((8, 14, 14))
    assert "（order）" in P.check_block_shape((14, 14, 8)).text
    assert not P.check_block_shape((8, 28, 28))
    assert not P.check_block_shape("eight")


def test_check_mlp_params():
    assert P.check_mlp_params(3_073_000)
    assert "（biases）" in P.check_mlp_params(3_072_000).text
    assert not P.check_mlp_params(3000)


def test_check_cnn_params_matches_the_model():
    total = make_cnn(3, 5, 32).num_parameters()
    assert P.check_cnn_params(total)
    assert "BatchNorm2d" in P.check_cnn_params(total - 96).text
    assert not P.check_cnn_params(total + 1)


def good_step(model, optimizer, x, y):
    loss, dlogits = softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    optimizer.step()
    return loss


def test_check_train_step_accepts_a_correct_step():
    assert P.check_train_step(good_step)


def test_check_train_step_finds_the_usual_mistakes():
    def placeholder(model, optimizer, x, y):
        return None

    def no_update(model, optimizer, x, y):
        loss, dlogits = softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits)
        return loss

    def loss_after_step(model, optimizer, x, y):
        good_step(model, optimizer, x, y)
        return softmax_cross_entropy(model.forward(x), y)[0]

    def twice_the_gradient(model, optimizer, x, y):
        loss, dlogits = softmax_cross_entropy(model.forward(x), y)
        model.backward(2 * dlogits)
        optimizer.step()
        return loss

    assert P.check_train_step(placeholder).status == "unanswered"
    assert "did not change" in P.check_train_step(no_update).text
    assert "ステップ 1: 損失（loss）は" in P.check_train_step(loss_after_step).text
    assert "differs" in P.check_train_step(twice_the_gradient).text


def test_check_deep_maps():
    assert P.check_deep_maps("b") and P.check_deep_maps(" B ")
    assert not P.check_deep_maps("a")
    assert "one letter" in P.check_deep_maps("receptive").text
    assert P.check_deep_maps(...).status == "unanswered"
