"""The oracle itself: hand-worked examples and numerical gradients of every reference backward."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference as R
from cnnlib.gradcheck import numerical_gradient, rel_error

RNG = np.random.default_rng(0)
X4 = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 1], [3, 4, 0, 9]], float)[None, None]


def test_conv2d_hand_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    assert_allclose(R.conv2d(x, w, [1.0])[0, 0], [[20, 26], [38, 44]])


def test_pool_hand_example():
    assert_allclose(R.max_pool2d(X4, 2)[0, 0], [[6, 4], [7, 9]])
    assert_allclose(R.avg_pool2d(X4, 2)[0, 0], [[3.75, 2.25], [4.0, 4.5]])
    dx = R.max_pool2d_backward(np.ones((1, 1, 2, 2)), X4, 2)[0, 0]
    assert_allclose(dx, [[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


def test_max_pool_tie_goes_to_first_maximum():
    x = np.ones((1, 1, 2, 2))
    assert_allclose(R.max_pool2d_backward(np.full((1, 1, 1, 1), 5.0), x, 2)[0, 0],
                    [[5, 0], [0, 0]])


def test_softmax_cross_entropy_uniform_is_log_c():
    loss, dz = R.softmax_cross_entropy(np.zeros((4, 10)), [0, 1, 2, 3])
    assert loss == pytest.approx(np.log(10))
    assert_allclose(dz.sum(axis=1), 0, atol=1e-15)


def _check(fwd, bwd, inputs, wrt, **kw):
    """Numerical vs reference gradients of L = Σ fwd(*inputs)·d for the inputs listed in wrt."""
    d = RNG.standard_normal(np.shape(fwd(*inputs, **kw)))
    grads = bwd(d, *[inputs[k] for k in wrt[0]], **kw)
    grads = (grads,) if isinstance(grads, np.ndarray) else grads
    for g, k in zip(grads, wrt[1], strict=True):
        num = numerical_gradient(lambda: np.sum(fwd(*inputs, **kw) * d), inputs[k])
        assert rel_error(g, num) < 1e-7


@pytest.mark.parametrize("hyper", [dict(stride=2, padding=1),
                                   dict(stride=(1, 3), padding=(2, 0), dilation=2)])
def test_conv2d_backward(hyper):
    x, w, b = RNG.standard_normal((2, 3, 7, 6)), RNG.standard_normal((4, 3, 3, 2)), RNG.random(4)
    _check(R.conv2d, R.conv2d_backward, [x, w, b], ([0, 1], [0, 1, 2]), **hyper)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("hyper", [dict(kernel_size=3, stride=2, padding=1),
                                   dict(kernel_size=(2, 3), padding=(1, 0))])
def test_pool_backward(name, hyper):
    x = RNG.standard_normal((2, 2, 7, 6))
    _check(getattr(R, name), getattr(R, name + "_backward"), [x], ([0], [0]), **hyper)


@pytest.mark.parametrize("name, extra", [("batch_norm", ()), ("layer_norm", ()),
                                         ("group_norm", (3,))])
def test_norm_backward(name, extra):
    x, g, b = RNG.standard_normal((3, 6, 4, 5)), RNG.random(6) + 0.5, RNG.standard_normal(6)
    fwd = getattr(R, name)
    bwd = getattr(R, name + "_backward")
    _check(lambda x, g, b: fwd(x, g, b, *extra), lambda d, x, g: bwd(d, x, g, *extra),
           [x, g, b], ([0, 1], [0, 1, 2]))


def test_linear_backward():
    x, w, b = RNG.standard_normal((4, 5)), RNG.standard_normal((3, 5)), RNG.standard_normal(3)
    _check(R.linear, R.linear_backward, [x, w, b], ([0, 1], [0, 1, 2]))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"])
def test_activation_backward(name):
    x = RNG.standard_normal((3, 4)) * 3
    x[np.abs(x) < 1e-3] = 0.5  # away from the kink at 0
    _check(getattr(R, name), getattr(R, name + "_backward"), [x], ([0], [0]))


def test_softmax_cross_entropy_gradient():
    z, y = RNG.standard_normal((5, 10)), RNG.integers(0, 10, 5)
    _, dz = R.softmax_cross_entropy(z, y)
    num = numerical_gradient(lambda: R.softmax_cross_entropy(z, y)[0], z)
    assert rel_error(dz, num) < 1e-7
    assert np.isfinite(R.softmax_cross_entropy(np.array([[1e4, -1e4]]), [1])[0])
