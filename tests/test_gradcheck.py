import numpy as np
import pytest

from cnnlib.gradcheck import check_gradients, numerical_gradient, rel_error


def test_numerical_gradient_of_a_quadratic():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    g = numerical_gradient(lambda: float(np.sum(x**2)), x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)
    np.testing.assert_array_equal(x, [[1.0, -2.0], [3.0, 0.5]])  # restored


def test_numerical_gradient_rejects_bad_arrays():
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(lambda: 0.0, np.arange(3))
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: 0.0, np.zeros((3, 4))[:, ::2])


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0]), np.array([-1.0])) == pytest.approx(1.0)


def test_check_gradients_catches_a_wrong_backward():
    def forward(x, w):
        return x * w, (x, w)

    def right(dout, cache):
        return dout * cache[1], dout * cache[0]

    def wrong(dout, cache):
        return dout * cache[1], dout * cache[1]

    x, w = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    assert max(check_gradients(forward, right, x, w)) < 1e-8
    assert check_gradients(forward, wrong, x, w)[1] > 0.1
