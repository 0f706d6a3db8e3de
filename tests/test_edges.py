"""Hyper-parameters and inputs at the edges: a clear error or the right answer, never a crash
from inside the kernels."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import cnnlib as cl
from cnnlib import layers as L


@pytest.mark.parametrize("huge", [2**31, 2**63, 2**64, 10**20])
@pytest.mark.parametrize("call", [
    lambda v: cl.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), np.zeros(1),
                                stride=v),
    lambda v: cl.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), np.zeros(1),
                                dilation=(1, v)),
    lambda v: cl.max_pool2d_forward(np.ones((1, 1, 4, 4)), 2, v),
    lambda v: cl.avg_pool2d_forward(np.ones((1, 1, 4, 4)), 2, v),
    lambda v: L.Conv2d(1, 1, 3, stride=v),
], ids=["conv stride", "conv dilation", "max_pool stride", "avg_pool stride", "Conv2d"])
def test_integers_too_large_for_the_kernels_raise_value_error(call, huge):
    with pytest.raises(ValueError, match="too large"):
        call(huge)


@pytest.mark.parametrize("method", ["readable", "fast"])
def test_conv_with_no_input_channels_returns_the_bias(method):
    x, w, b = np.ones((2, 0, 5, 5)), np.ones((3, 0, 3, 3)), np.array([1.0, 2.0, 3.0])
    out, cache = cl.conv2d_forward(x, w, b, method=method)
    assert_array_equal(out, np.broadcast_to(b[None, :, None, None], (2, 3, 3, 3)))
    dx, dw, db = cl.conv2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dw.shape == w.shape
    assert_array_equal(db, [18.0, 18.0, 18.0])


@pytest.mark.parametrize("method", ["readable", "fast"])
def test_conv_on_an_empty_batch(method):
    out, cache = cl.conv2d_forward(np.ones((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.zeros(3),
                                   method=method)
    assert out.shape == (0, 3, 3, 3)
    _, dw, db = cl.conv2d_backward(out, cache)
    assert_array_equal(dw, 0)
    assert_array_equal(db, 0)


def test_flatten_backward_refuses_strings():
    flat = L.Flatten()
    out = flat.forward(np.ones((2, 3, 2, 2)))
    with pytest.raises(TypeError, match="not numeric"):
        flat.backward(np.full(out.shape, "a"))
    with pytest.raises(ValueError, match="same shape"):
        flat.backward(np.ones((2, 11)))
    assert_allclose(flat.backward(np.ones(out.shape)), np.ones((2, 3, 2, 2)))


def test_conv_keeps_the_callers_x_as_documented():
    """The docstring says the cache holds the caller's x: changing x in place changes dW."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 4, 4))
    w, b = rng.standard_normal((1, 1, 2, 2)), np.zeros(1)
    out, cache = cl.conv2d_forward(x, w, b)
    _, dw_before, _ = cl.conv2d_backward(np.ones_like(out), cache)
    x *= 2
    _, dw_after, _ = cl.conv2d_backward(np.ones_like(out), cache)
    assert_allclose(dw_after, 2 * dw_before)
    assert "changes the gradients" in cl.conv2d_forward.__doc__
