"""Activation functions: hand-worked values, the reference, numerical gradients, kernels, errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba_checks import float64_instructions
from numpy.testing import assert_allclose

from cnnlib import activations as A
from cnnlib import reference as R
from cnnlib.gradcheck import check_gradients

NAMES = ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"]
# (name, hyper-parameters): defaults first, then non-default alphas, a negative slope included.
CASES = [(name, {}) for name in NAMES] + [
    ("leaky_relu", {"alpha": 0.3}),
    ("leaky_relu", {"alpha": -1.5}),
    ("elu", {"alpha": 0.5}),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in hyper.items()) for name, hyper in CASES]
SHAPES = [(7,), (3, 5), (2, 3, 4, 5)]
X_HAND = np.array([-2.0, -0.5, 0.0, 1.5])


def pair(name):
    return getattr(A, f"{name}_forward"), getattr(A, f"{name}_backward")


def kernels(name):
    return getattr(A, f"{name}_forward_kernel"), getattr(A, f"{name}_backward_kernel")


def kernel_args(name, dtype, *arrays):
    """Kernel arguments: the flat arrays, then alpha (typed) where the function has one."""
    alpha = (dtype.type(0.5),) if name in ("leaky_relu", "elu") else ()
    return (*arrays, *alpha)


# --- hand-worked examples (the numbers notebook 04 shows) -------------------------------------


def test_relu_hand_example():
    out, cache = A.relu_forward(X_HAND)
    assert_allclose(out, [0, 0, 0, 1.5])
    assert_allclose(A.relu_backward(np.ones(4), cache), [0, 0, 0, 1])  # 0 at the kink, as PyTorch


def test_leaky_relu_hand_example():
    out, cache = A.leaky_relu_forward(X_HAND, alpha=0.1)
    assert_allclose(out, [-0.2, -0.05, 0, 1.5], rtol=1e-15)
    assert_allclose(A.leaky_relu_backward(np.full(4, 2.0), cache), [0.2, 0.2, 0.2, 2])


def test_leaky_relu_with_alpha_minus_one_is_abs():
    out, cache = A.leaky_relu_forward(X_HAND, alpha=-1)
    assert_allclose(out, np.abs(X_HAND))
    assert_allclose(A.leaky_relu_backward(np.ones(4), cache), [-1, -1, -1, 1])


def test_elu_hand_example():
    out, cache = A.elu_forward([-1.0, 0.0, 2.0], alpha=2.0)
    assert_allclose(out, [2 * (math.exp(-1) - 1), 0, 2], rtol=1e-15)
    assert_allclose(A.elu_backward(np.ones(3), cache), [2 * math.exp(-1), 2, 1], rtol=1e-15)


def test_gelu_known_values():
    out, cache = A.gelu_forward([-1.0, 0.0, 1.0])
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))  # Φ(1)
    assert_allclose(phi1, 0.8413447460685429, rtol=1e-15)
    assert_allclose(out, [-(1 - phi1), 0, phi1], rtol=1e-14)
    density1 = math.exp(-0.5) / math.sqrt(2 * math.pi)  # φ(1)
    dx = A.gelu_backward(np.ones(3), cache)
    assert_allclose(dx, [1 - phi1 - density1, 0.5, phi1 + density1], rtol=1e-14)


def test_sigmoid_hand_example():
    out, cache = A.sigmoid_forward([0.0, math.log(3)])
    assert_allclose(out, [0.5, 0.75], rtol=1e-15)
    assert_allclose(A.sigmoid_backward(np.ones(2), cache), [0.25, 0.1875], rtol=1e-15)


def test_tanh_hand_example():
    out, cache = A.tanh_forward([0.0, math.log(2)])
    assert_allclose(out, [0, 0.6], atol=1e-15)  # (2 − 1/2) / (2 + 1/2)
    assert_allclose(A.tanh_backward(np.ones(2), cache), [1, 0.64], rtol=1e-15)


# --- against the reference --------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(("name", "hyper"), CASES, ids=CASE_IDS)
def test_matches_reference_float64(name, hyper, shape):
    rng = np.random.default_rng(len(shape))
    x, dout = 2 * rng.standard_normal(shape), rng.standard_normal(shape)
    forward, backward = pair(name)
    out, cache = forward(x, **hyper)
    assert out.shape == shape and out.dtype == np.float64
    assert_allclose(out, getattr(R, name)(x, **hyper), rtol=1e-13, atol=1e-15)
    dx = backward(dout, cache)
    assert_allclose(dx, getattr(R, f"{name}_backward")(dout, x, **hyper), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=CASE_IDS)
def test_float32_stays_float32_and_matches_reference(name, hyper):
    rng = np.random.default_rng(1)
    x = (2 * rng.standard_normal((2, 3, 4, 5))).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    forward, backward = pair(name)
    out, cache = forward(x, **hyper)
    dx = backward(dout, cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    x64, dout64 = x.astype(np.float64), dout.astype(np.float64)
    assert_allclose(out, getattr(R, name)(x64, **hyper), rtol=1e-5, atol=1e-6)
    assert_allclose(dx, getattr(R, f"{name}_backward")(dout64, x64, **hyper), rtol=1e-5, atol=1e-6)
    # a float64 dout is converted to the forward's dtype
    assert backward(dout64, cache).dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_input(name):
    x = np.random.default_rng(2).standard_normal((6, 4)).T[:, ::2]  # (4, 3), a strided view
    out, cache = pair(name)[0](x)
    assert_allclose(out, getattr(R, name)(x), rtol=1e-13, atol=1e-15)
    dx = pair(name)[1](np.ones((6, 4))[::2].T, cache)
    assert_allclose(dx, getattr(R, f"{name}_backward")(np.ones((4, 3)), x), rtol=1e-13, atol=1e-15)


# --- numerical gradients ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=CASE_IDS)
def test_gradients_match_numerical(name, hyper):
    rng = np.random.default_rng(3)
    # |x| ≥ 0.1 keeps every element away from the kink at 0 (ReLU, Leaky ReLU, ELU with α ≠ 1)
    x = rng.choice([-1.0, 1.0], size=(2, 3, 2, 2)) * rng.uniform(0.1, 3.0, size=(2, 3, 2, 2))
    (err,) = check_gradients(*pair(name), x, **hyper)
    assert err <= 1e-6


# --- the kernels themselves -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_parallel_kernel_matches_serial_py_func(name, dtype):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(4)
    x, dout = (3 * rng.standard_normal((2, 1000))).astype(dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    for kern, inputs in zip(kernels(name), [(x,), (dout, x)], strict=True):
        parallel, serial = np.empty_like(x), np.empty_like(x)
        kern(*kernel_args(name, dtype, *inputs), parallel)
        kern.py_func(*kernel_args(name, dtype, *inputs), serial)
        assert_allclose(parallel, serial, rtol=rtol, atol=1e-7)


def test_float64_detector_catches_an_untyped_literal():
    def untyped(x, out):
        for k in range(x.size):
            out[k] = 0.1 * x[k]  # 0.1 is a float64: the product is computed in double

    x = np.ones(3, np.float32)
    assert float64_instructions(untyped, x, np.empty_like(x))


@pytest.mark.parametrize("name", NAMES)
def test_float32_kernels_compute_in_float32(name):
    """No float64 arithmetic: math.erf/exp/expm1/tanh become erff/expf/expm1f/tanhf."""
    x = np.linspace(-2, 2, 5, dtype=np.float32)
    for kern, inputs in zip(kernels(name), [(x,), (x, x)], strict=True):
        args = (*kernel_args(name, x.dtype, *inputs), np.empty_like(x))
        assert float64_instructions(kern.py_func, *args) == []


# --- special values ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_do_not_overflow(dtype):
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)  # warnings are errors here
    s = A.sigmoid_forward(x)[0]
    assert_allclose(s, [0, math.exp(-100), 0.5, 1, 1], rtol=1e-5, atol=1e-45)  # float32: subnormal
    assert_allclose(A.tanh_forward(x)[0], [-1, -1, 0, 1, 1])
    assert_allclose(A.elu_forward(x, alpha=0.5)[0], [-0.5, -0.5, 0, 100, 1e4])
    assert_allclose(A.gelu_forward(x)[0], [0, 0, 0, 100, 1e4], atol=1e-30)
    for name in NAMES:
        out, cache = pair(name)[0](x)
        assert np.isfinite(out).all() and np.isfinite(pair(name)[1](np.ones_like(x), cache)).all()


@settings(deadline=None, max_examples=50)
@given(arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e300, 1e300)))
def test_sigmoid_is_symmetric_and_bounded(x):
    s, _ = A.sigmoid_forward(x)
    assert ((s >= 0) & (s <= 1)).all()
    assert_allclose(s + A.sigmoid_forward(-x)[0], 1, rtol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates(name):
    out, _ = pair(name)[0](np.array([np.nan, 1.0, -1.0]))
    assert np.isnan(out[0]) and np.isfinite(out[1:]).all()


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_is_converted_to_float64(name):
    out, cache = pair(name)[0](np.array([[-2, 0, 3]]))
    assert out.dtype == np.float64
    assert_allclose(out, getattr(R, name)(np.array([[-2.0, 0.0, 3.0]])), rtol=1e-15)
    assert pair(name)[1]([[1, 1, 1]], cache).dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_single_element_and_empty_inputs(name):
    out, cache = pair(name)[0]([0.5])
    assert_allclose(out, getattr(R, name)(np.array([0.5])), rtol=1e-15)
    assert pair(name)[1]([2.0], cache).shape == (1,)
    out, cache = pair(name)[0](np.zeros((0, 3), np.float32))
    assert out.shape == (0, 3) and out.dtype == np.float32


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_x_is_rejected(name):
    forward = pair(name)[0]
    with pytest.raises(TypeError, match="complex"):
        forward(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="not numeric"):
        forward(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="x is None"):
        forward(None)


@pytest.mark.parametrize("name", NAMES)
def test_bad_dout_is_rejected(name):
    forward, backward = pair(name)
    _, cache = forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2\) but the output .* \(2, 3\)"):
        backward(np.zeros((3, 2)), cache)
    with pytest.raises(TypeError, match="complex"):
        backward(np.zeros((2, 3), complex), cache)


@pytest.mark.parametrize("name", NAMES)
def test_backward_with_a_wrong_cache(name):
    backward = pair(name)[1]
    other = "tanh" if name != "tanh" else "relu"
    foreign = pair(other)[0](np.zeros(3))[1]
    for cache in [foreign, None, (np.zeros(3),)]:
        with pytest.raises(TypeError, match=f"call {name}_forward first"):
            backward(np.zeros(3), cache)


def test_bad_alpha_is_rejected():
    x = np.zeros(3)
    for forward in (A.leaky_relu_forward, A.elu_forward):
        with pytest.raises(TypeError, match="alpha must be a real number"):
            forward(x, alpha="0.1")
        with pytest.raises(TypeError, match="alpha must be a real number"):
            forward(x, alpha=True)
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            forward(x, alpha=math.nan)
    for alpha in (0, -1.0):
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            A.elu_forward(x, alpha=alpha)


@pytest.mark.parametrize("name", NAMES)
def test_a_large_array_runs_in_pieces_with_the_same_numbers(name):
    """Arrays above _PER_THREAD values per thread are cut into pieces run on worker threads."""
    rng = np.random.default_rng(6)
    size = 2 * A._PER_THREAD + 1001  # two pieces when Numba has two threads; odd on purpose
    x, dout = 3 * rng.standard_normal((2, size))
    forward, backward = pair(name)
    hyper = {"alpha": 0.5} if name in ("leaky_relu", "elu") else {}
    out, cache = forward(x, **hyper)
    dx = backward(dout, cache)
    saved = out if name in ("sigmoid", "tanh") else x  # what the backward kernel reads
    for kern, inputs, got in zip(kernels(name), [(x,), (dout, saved)], [out, dx], strict=True):
        whole = np.empty_like(x)
        kern(*kernel_args(name, x.dtype, *inputs), whole)  # one call on the whole array
        assert_allclose(got, whole, rtol=1e-13, atol=1e-15)
