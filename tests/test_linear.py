"""The fully connected layer: a hand-worked example, the reference, gradients, the loop kernel."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import linear
from cnnlib import reference as R
from cnnlib.gradcheck import check_gradients
from cnnlib.linear import (
    _ONE_THREAD_MNK,
    LinearCache,
    _matmul,
    linear_backward,
    linear_forward,
    linear_forward_kernel,
)

X_HAND = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # N = 2 samples, D_in = 3
W_HAND = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])  # D_out = 2
B_HAND = np.array([0.5, -1.0])
# (N, D_in, D_out): batch of 1, one feature, one output, a wide layer
SIZES = [(1, 1, 1), (1, 5, 3), (4, 7, 2), (3, 64, 10)]


def random_layer(n, d_in, d_out, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in)).astype(dtype)
    w = rng.standard_normal((d_out, d_in)).astype(dtype)
    b = rng.standard_normal(d_out).astype(dtype)
    return x, w, b


def test_hand_example():
    out, cache = linear_forward(X_HAND, W_HAND, B_HAND)
    # row 0: 1 − 3 + 0.5 = −1.5 and (1 + 2 + 3)/2 − 1 = 2;  row 1: 4 − 6 + 0.5, 15/2 − 1
    assert_allclose(out, [[-1.5, 2.0], [-1.5, 6.5]], rtol=1e-15)
    dx, dw, db = linear_backward(np.ones((2, 2)), cache)
    assert_allclose(dx, [[1.5, 0.5, -0.5], [1.5, 0.5, -0.5]], rtol=1e-15)  # Σ_o w[o]
    assert_allclose(dw, [[5, 7, 9], [5, 7, 9]], rtol=1e-15)  # Σ_n x[n]
    assert_allclose(db, [2, 2], rtol=1e-15)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_matches_reference(size):
    x, w, b = random_layer(*size)
    out, cache = linear_forward(x, w, b)
    assert out.shape == (size[0], size[2])
    assert_allclose(out, R.linear(x, w, b), rtol=1e-12, atol=1e-13)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    for got, want in zip(linear_backward(dout, cache), R.linear_backward(dout, x, w), strict=True):
        assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_gradients_match_numerical(size):
    errors = check_gradients(linear_forward, linear_backward, *random_layer(*size, seed=2))
    assert max(errors) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_loop_kernel_equals_fast_path(size, dtype):
    x, w, b = random_layer(*size, dtype=dtype, seed=3)
    loops = np.empty((size[0], size[2]), dtype=dtype)
    linear_forward_kernel(x, w, b, loops)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(loops, linear_forward(x, w, b)[0], rtol=rtol, atol=rtol)


def test_loop_kernel_parallel_matches_serial_py_func():
    x, w, b = random_layer(9, 13, 5, seed=4)
    parallel, serial = np.empty((9, 5)), np.empty((9, 5))
    linear_forward_kernel(x, w, b, parallel)
    linear_forward_kernel.py_func(x, w, b, serial)
    assert_allclose(parallel, serial, rtol=1e-13)


@pytest.mark.parametrize(("m", "k", "n"), [(3, 4, 5), (64, 2048, 10), (10, 64, 2048),
                                           (1000, 600, 1), (1, 600, 1000), (257, 70, 30)])
def test_blocked_matmul_equals_one_product(m, k, n):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    assert_allclose(_matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    assert_allclose(_matmul(a.astype(np.float32), b.astype(np.float32)), a @ b, rtol=1e-4,
                    atol=1e-3)


def test_each_blas_call_is_small_enough_for_one_thread(monkeypatch):
    """The class's largest layer, Linear(2048, 10) on a batch of 64: every product the forward
    and backward hand to BLAS stays below the size at which OpenBLAS wakes its threads."""
    sizes = []
    real_matmul = np.matmul

    def recording(a, b, **kwargs):
        sizes.append(a.shape[0] * a.shape[1] * b.shape[1])
        return real_matmul(a, b, **kwargs)

    monkeypatch.setattr(linear.np, "matmul", recording)
    x, w, b = random_layer(64, 2048, 10, dtype=np.float32, seed=6)
    out, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(np.ones_like(out), cache)
    assert len(sizes) > 3 and max(sizes) < _ONE_THREAD_MNK
    assert sum(sizes) == 3 * 64 * 2048 * 10  # the blocks cover each product exactly once
    monkeypatch.undo()
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    assert_allclose(out, R.linear(x64, w64, b64), rtol=1e-4, atol=1e-4)
    for got, want in zip((dx, dw, db), R.linear_backward(np.ones((64, 10)), x64, w64),
                         strict=True):
        assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_dtypes():
    x, w, b = random_layer(2, 3, 4, dtype=np.float32)
    out, cache = linear_forward(x, w, b)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in linear_backward(np.ones((2, 4)), cache))
    assert linear_forward(x, w.astype(np.float64), b)[0].dtype == np.float64  # common dtype
    assert linear_forward(np.ones((2, 3), np.uint8), w, b)[0].dtype == np.float32
    out, _ = linear_forward([[1, 2, 3]], [[1, 1, 1]], [1])  # integers alone: float64
    assert out.dtype == np.float64 and out[0, 0] == 7


def test_feature_mismatch():
    with pytest.raises(ValueError, match="x has 784 features but w expects 800"):
        linear_forward(np.zeros((2, 784)), np.zeros((10, 800)), np.zeros(10))
    with pytest.raises(ValueError, match=r"w looks transposed.*pass w\.T"):
        linear_forward(np.zeros((2, 784)), np.zeros((784, 10)), np.zeros(10))


def test_wrong_x_dimensions_say_how_to_fix():
    w, b = np.zeros((10, 784)), np.zeros(10)
    with pytest.raises(ValueError, match=r"x\.reshape\(N, -1\).* gives 784 features"):
        linear_forward(np.zeros((2, 1, 28, 28)), w, b)
    with pytest.raises(ValueError, match=r"add a batch axis: x\[None\]"):
        linear_forward(np.zeros(784), w, b)


def test_bad_w_and_b():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"w must have 2 dimensions \(D_out, D_in\)"):
        linear_forward(x, np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError, match=r"b has shape \(3,\) but w has 4 output features"):
        linear_forward(x, np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        linear_forward(x, np.zeros((4, 3)), np.zeros((1, 4)))
    with pytest.raises(TypeError, match="w is complex"):
        linear_forward(x, np.zeros((4, 3), complex), np.zeros(4))
    with pytest.raises(TypeError, match="b has dtype <U1, which is not numeric"):
        linear_forward(x, np.zeros((4, 3)), np.array(list("abcd")))
    with pytest.raises(TypeError, match="x is None"):
        linear_forward(None, np.zeros((4, 3)), np.zeros(4))


def test_bad_dout_and_cache():
    _, cache = linear_forward(X_HAND, W_HAND, B_HAND)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3\) but .* had shape \(2, 2\)"):
        linear_backward(np.zeros((2, 3)), cache)
    for bad in [None, (X_HAND, W_HAND), LinearCache]:
        with pytest.raises(TypeError, match="call linear_forward first"):
            linear_backward(np.zeros((2, 2)), bad)
