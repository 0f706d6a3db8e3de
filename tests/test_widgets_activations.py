"""Notebook 04's widgets, figures and checks (cnnlib.widgets.activations), driven headlessly."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import layers, reference
from cnnlib.widgets import activations as wa


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- flatten, linear


def test_plot_flatten_writes_the_values_in_c_order():
    fig = wa.plot_flatten(np.arange(18.0).reshape(2, 3, 3))
    fig.canvas.draw()
    row = [t.get_text() for t in fig.axes[-1].texts]
    assert row == [str(v) for v in range(18)]
    assert fig.axes[1].get_title() == "チャネル 1（3×3）"
    with pytest.raises(ValueError, match="one sample"):
        wa.plot_flatten(np.zeros((1, 2, 3, 3)))


def test_trace_shapes_of_the_notebook_cnn():
    rng = np.random.default_rng(0)
    model = layers.Sequential(
        layers.Conv2d(3, 8, 3, padding=1, rng=rng), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(), layers.Linear(8 * 4 * 4, 10, rng=rng))
    rows = wa.trace_shapes(model, np.zeros((2, 3, 8, 8), np.float32))
    assert [r[2] for r in rows] == ["(2, 3, 8, 8)", "(2, 8, 8, 8)", "(2, 8, 8, 8)",
                                    "(2, 8, 4, 4)", "(2, 128)", "(2, 10)"]
    assert [r[3] for r in rows] == [0, 8 * 27 + 8, 0, 0, 0, 128 * 10 + 10]
    assert rows[1][1].startswith("Conv2d(3, 8")


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", wa.ACTIVATIONS)
def test_activation_matches_the_reference(name):
    x = np.linspace(-4, 4, 41) + 0.013  # avoid the kink at exactly 0
    hyper = {"alpha": 0.2} if name in wa.WITH_ALPHA else {}
    f, df = wa.activation(name, x, **hyper)
    assert_allclose(f, getattr(reference, name)(x, **hyper), rtol=1e-12, atol=1e-12)
    assert_allclose(df, getattr(reference, f"{name}_backward")(np.ones_like(x), x, **hyper),
                    rtol=1e-12, atol=1e-12)


def test_activation_defaults_and_errors():
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    f, df = wa.activation("leaky_relu", x)  # default alpha 0.01
    assert_allclose(f, [-0.02, -0.005, 0, 1.5])
    assert_allclose(df, [0.01, 0.01, 0.01, 1])
    assert_allclose(wa.activation("relu", x)[1], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="活性化関数 'swish' はありません"):
        wa.activation("swish", x)


@pytest.mark.parametrize("name", wa.ACTIVATIONS)
def test_activation_explorer(name):
    e = wa.activation_explorer()
    e.controls["name"].value = name
    e.controls["alpha"].value = 0.3
    assert e.message == ""
    r = e.result
    assert r["numeric_error"] < 1e-6  # the backward is the derivative of the forward
    assert e.controls["alpha"].disabled == (name not in wa.WITH_ALPHA)
    expected_slope = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0}
    if name in expected_slope:
        assert_allclose(r["max_slope"], expected_slope[name], rtol=1e-6)
    if name == "leaky_relu":
        assert_allclose(r["min_value"], -1.5)  # alpha·x at x = −5
    assert len(e.figure.axes) == 2 and name in e.figure.axes[0].get_title()


# --------------------------------------------------------------------------- vanishing gradients


def _numpy_gradient_norms(model, x, grad):
    """Backward through Linear/activation pairs written out with NumPy only."""
    hs, zs = [], []
    h = x
    for lin, f in zip(model.layers[::2], model.layers[1::2], strict=True):
        hs.append(h)
        z = h @ lin.params["w"].T + lin.params["b"]
        zs.append(z)
        h = {"Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "ReLU": lambda v: np.maximum(v, 0),
             "Tanh": np.tanh}[type(f).__name__](z)
    norms = []
    for lin, f, z in reversed(list(zip(model.layers[::2], model.layers[1::2], zs,
                                       strict=True))):
        name = type(f).__name__
        if name == "Sigmoid":
            s = 1 / (1 + np.exp(-z))
            grad = grad * s * (1 - s)
        elif name == "ReLU":
            grad = grad * (z > 0)
        else:
            grad = grad * (1 - np.tanh(z) ** 2)
        grad = grad @ lin.params["w"]
        norms.append(np.linalg.norm(grad))
    return np.array(norms[::-1])


@pytest.mark.parametrize("name", ["sigmoid", "relu", "tanh"])
def test_gradient_norms_match_a_numpy_backward(name):
    depth, width, batch = 4, 8, 5
    got = wa.gradient_norms(name, depth, width=width, batch=batch, seed=3)
    model = wa.deep_stack(name, depth, width, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((batch, width))
    grad = rng.standard_normal((batch, width))
    grad /= np.linalg.norm(grad, axis=1, keepdims=True) * np.sqrt(batch)
    assert_allclose(got, _numpy_gradient_norms(model, x, grad), rtol=1e-10)


def test_sigmoid_gradients_vanish_and_relu_gradients_do_not():
    sig = wa.gradient_norms("sigmoid", 20)
    relu = wa.gradient_norms("relu", 20)
    assert sig[0] < 1e-6 * relu[0]
    assert np.all(np.diff(np.log(sig)) > 0)  # smaller at every step towards the input
    assert 0.1 < relu[0] / relu[-1] < 10
    xavier = wa.gradient_norms("relu", 20, init="Xavier")
    assert xavier[0] / xavier[-1] < 0.05  # He's √2 is what keeps ReLU's gradient alive
    with pytest.raises(ValueError, match="init は He, Xavier のどれか"):
        wa.deep_stack("relu", 2, init="zeros")
    with pytest.raises(ValueError, match="unknown activation"):
        wa.deep_stack("softplus", 2)


def test_vanishing_gradient_explorer():
    e = wa.vanishing_gradient_explorer()
    assert e.message == "" and set(e.result["norms"]) == set(wa.STACK_ACTIVATIONS)
    e.controls["depth"].value = 5
    assert all(len(v) == 5 for v in e.result["norms"].values())
    assert len(e.figure.axes[0].get_lines()) == 4


# --------------------------------------------------------------------------- dying ReLU


def test_dying_relu_dead_units_get_exactly_zero_gradient():
    r = wa.dying_relu(-3.0)
    assert r["dead_fraction"] > 0.3
    assert np.all(r["grad_norm"][r["dead"]] == 0) and np.all(r["grad_norm"][~r["dead"]] > 0)
    assert r["zero_grad_fraction"] == r["dead_fraction"]
    assert np.all(r["out"][:, r["dead"]] == 0)
    fractions = [wa.dying_relu(s)["dead_fraction"] for s in (0.0, -2.0, -4.0)]
    assert fractions[0] == 0 and fractions[0] < fractions[1] < fractions[2]


@pytest.mark.parametrize("name", ["leaky_relu", "elu", "gelu"])
def test_relu_variants_keep_a_gradient(name):
    r = wa.dying_relu(-3.0, name)
    assert r["dead_fraction"] > 0.3  # z ≤ 0 everywhere for as many units as with ReLU …
    assert r["zero_grad_fraction"] == 0  # … but every unit still learns


def test_dying_relu_explorer():
    e = wa.dying_relu_explorer()
    assert e.message == "" and e.result["dead_fraction"] == 0
    e.controls["bias_shift"].value = -4.0
    assert e.result["dead_fraction"] > 0.5
    assert "dead units" in e.figure.axes[0].get_title()
    e.controls["name"].value = "leaky_relu"
    assert e.result["zero_grad_fraction"] == 0
    with pytest.raises(ValueError, match="unknown activation"):
        wa.dying_relu(0.0, "sigmoid")


# --------------------------------------------------------------------------- GELU


def test_gelu_minimum_and_figure():
    x, y = wa.gelu_minimum()
    assert_allclose(x, -0.75179, atol=2e-5)
    assert_allclose(y, -0.169971, atol=2e-6)
    fig = wa.plot_gelu_vs_relu()
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["relu", "gelu"]


# --------------------------------------------------------------------------- exercises


def test_check_linear_params():
    assert wa.check_linear_params(None).status == "unanswered"
    assert wa.check_linear_params(10250)
    fb = wa.check_linear_params(10240)
    assert not fb and "バイアス" in fb.text
    assert not wa.check_linear_params(1024)
    assert not wa.check_linear_params("many")


def test_check_sigmoid_bound():
    assert wa.check_sigmoid_bound(...).status == "unanswered"
    assert wa.check_sigmoid_bound(0.25**10)
    assert wa.check_sigmoid_bound((1 / 4) ** 10)
    assert not wa.check_sigmoid_bound(0.25)
    assert not wa.check_sigmoid_bound(0.5**10)


def _good_leaky_backward(dout, x, alpha):
    return np.where(x > 0, dout, alpha * dout)


def test_check_leaky_relu_backward():
    assert wa.check_leaky_relu_backward(None).status == "unanswered"
    assert wa.check_leaky_relu_backward(lambda d, x, a: None).status == "unanswered"
    assert wa.check_leaky_relu_backward(_good_leaky_backward)
    assert not wa.check_leaky_relu_backward(lambda d, x, a: np.where(x >= 0, d, a * d))  # x = 0
    assert not wa.check_leaky_relu_backward(lambda d, x, a: np.where(x > 0, d, 0 * d))
    assert not wa.check_leaky_relu_backward(lambda d, x, a: d[0])
    assert not wa.check_leaky_relu_backward(lambda d, x, a: x.undefined)


def test_check_dead_relu():
    assert wa.check_dead_relu(None).status == "unanswered"
    assert wa.check_dead_relu("b") and wa.check_dead_relu(" B ")
    assert not wa.check_dead_relu("a")
    assert not wa.check_dead_relu("d")
