import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cnnlib import _norm_fast
from cnnlib import reference as ref
from cnnlib.gradcheck import check_gradients
from cnnlib.norm import (
    BatchNormCache,
    GroupNormCache,
    batch_norm_apply_kernel,
    batch_norm_backward,
    batch_norm_backward_kernel,
    batch_norm_forward,
    batch_norm_inference,
    batch_norm_stats_kernel,
    group_norm_backward,
    group_norm_backward_kernel,
    group_norm_forward,
    group_norm_kernel,
    layer_norm_backward,
    layer_norm_forward,
)

# ---- hand-worked numbers (notebook 03 reuses them) -------------------------------------------

# two samples, two channels, 1×2 pixels: x[n, c] = one row of two values
X_HAND = np.array([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, 7.0]], [[4.0, 4.0]]]])  # (2, 2, 1, 2)
GAMMA_HAND, BETA_HAND = np.array([1.0, 2.0]), np.array([0.0, 1.0])


def test_batch_norm_by_hand():
    out, cache = batch_norm_forward(X_HAND, GAMMA_HAND, BETA_HAND)
    # channel 0 holds 1, 3, 5, 7: μ = 4, σ² = (9 + 1 + 1 + 9) / 4 = 5
    # channel 1 holds 0, 0, 4, 4: μ = 2, σ² = (4 + 4 + 4 + 4) / 4 = 4
    assert_allclose(cache.mean, [4, 2], rtol=1e-15)
    assert_allclose(cache.var, [5, 4], rtol=1e-15)
    assert_allclose(cache.rstd, [1 / math.sqrt(5 + 1e-5), 1 / math.sqrt(4 + 1e-5)], rtol=1e-15)
    # channel 0: x̂ = (x − 4)/√5 = (−3, −1, 1, 3)/√5;  channel 1: 2·(x − 2)/2 + 1 = −1, −1, 3, 3
    x_hat0 = np.array([-3, -1, 1, 3]) / math.sqrt(5)
    assert_allclose(out[:, 0].ravel(), x_hat0, rtol=1e-5)
    assert_allclose(out[:, 1].ravel(), [-1, -1, 3, 3], rtol=1e-5)


def test_batch_norm_backward_by_hand():
    _, cache = batch_norm_forward(X_HAND, GAMMA_HAND, BETA_HAND)
    dout = np.zeros_like(X_HAND)
    dout[0, 0, 0, 0] = 1.0  # only the first value of channel 0 matters to the loss
    dx, dgamma, dbeta = batch_norm_backward(dout, cache)
    assert_allclose(dbeta, [1, 0])  # Σ dout
    assert_allclose(dgamma, [-3 / math.sqrt(5), 0], rtol=1e-5)  # Σ dout·x̂
    # dx = γ/√5 · (dout − 1/4 − x̂·(−3/√5)/4) = (1 − 0.25 − 0.45, −0.25 − 0.15, …)/√5
    expected = np.array([0.3, -0.4, -0.1, 0.2]) / math.sqrt(5)
    assert_allclose(dx[:, 0].ravel(), expected, rtol=1e-5)
    assert_array_equal(dx[:, 1], 0)
    # a constant dout changes no x̂ once the mean is subtracted: dx = 0, dgamma = Σ x̂ = 0
    dx, dgamma, dbeta = batch_norm_backward(np.ones_like(X_HAND), cache)
    assert_allclose(dx, 0, atol=1e-15)
    assert_allclose(dgamma, 0, atol=1e-15)
    assert_array_equal(dbeta, [4, 4])


def test_layer_and_group_norm_by_hand():
    x = X_HAND[:1]  # the first sample: channel 0 = (1, 3), channel 1 = (0, 0)
    out, cache = layer_norm_forward(x, np.ones(2), np.zeros(2))
    # over all four values 1, 3, 0, 0: μ = 1, σ² = (0 + 4 + 1 + 1) / 4 = 1.5
    assert_allclose(cache.mean, [[1.0]])
    assert_allclose(cache.rstd, [[1 / math.sqrt(1.5 + 1e-5)]], rtol=1e-15)
    assert_allclose(out.ravel(), np.array([0, 2, -1, -1]) / math.sqrt(1.5), rtol=1e-5)
    out, cache = group_norm_forward(x, np.ones(2), np.zeros(2), groups=2)
    # one channel per group: channel 0 (1, 3) → μ = 2, σ² = 1; channel 1 (0, 0) → μ = 0, σ² = 0
    assert_allclose(cache.mean, [[2.0, 0.0]])
    assert_allclose(out.ravel(), [-1, 1, 0, 0], rtol=1e-5)


def test_inference_uses_the_given_statistics():
    mean, var = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    out = batch_norm_inference(X_HAND, GAMMA_HAND, BETA_HAND, mean, var, eps=1e-5)
    expected = GAMMA_HAND[:, None, None] * (X_HAND - mean[:, None, None]) / np.sqrt(
        var[:, None, None] + 1e-5
    ) + BETA_HAND[:, None, None]
    assert_allclose(out, expected, rtol=1e-14)
    # with the batch's own statistics, inference reproduces the training-mode output
    train_out, cache = batch_norm_forward(X_HAND, GAMMA_HAND, BETA_HAND)
    same = batch_norm_inference(X_HAND, GAMMA_HAND, BETA_HAND, cache.mean, cache.var)
    assert_allclose(same, train_out, rtol=1e-14)


# ---- against the reference ----------------------------------------------------------------------

SHAPES = [(2, 3, 4, 5), (1, 6, 3, 3), (5, 6, 1, 2), (3, 1, 2, 2)]


def random_problem(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
    gamma = rng.uniform(0.5, 2, C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dout


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_matches_reference(shape):
    x, gamma, beta, dout = random_problem(shape, seed=0)
    out, cache = batch_norm_forward(x, gamma, beta)
    assert_allclose(out, ref.batch_norm(x, gamma, beta), rtol=1e-12, atol=1e-12)
    assert_allclose(cache.mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    assert_allclose(cache.var, x.var(axis=(0, 2, 3)), rtol=1e-12)
    for got, expected in zip(batch_norm_backward(dout, cache),
                             ref.batch_norm_backward(dout, x, gamma), strict=True):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_matches_reference(shape):
    x, gamma, beta, dout = random_problem(shape, seed=1)
    out, cache = layer_norm_forward(x, gamma, beta)
    assert_allclose(out, ref.layer_norm(x, gamma, beta), rtol=1e-12, atol=1e-12)
    for got, expected in zip(layer_norm_backward(dout, cache),
                             ref.layer_norm_backward(dout, x, gamma), strict=True):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "groups"),
    [((2, 6, 3, 4), 1), ((2, 6, 3, 4), 2), ((2, 6, 3, 4), 3), ((2, 6, 3, 4), 6),
     ((1, 4, 5, 1), 2), ((3, 1, 2, 3), 1)],
)
def test_group_norm_matches_reference(shape, groups):
    x, gamma, beta, dout = random_problem(shape, seed=2)
    out, cache = group_norm_forward(x, gamma, beta, groups)
    assert cache.mean.shape == cache.rstd.shape == (shape[0], groups)
    assert_allclose(out, ref.group_norm(x, gamma, beta, groups), rtol=1e-12, atol=1e-12)
    for got, expected in zip(group_norm_backward(dout, cache),
                             ref.group_norm_backward(dout, x, gamma, groups), strict=True):
        assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_eps_is_used():
    x, gamma, beta, _ = random_problem((2, 2, 2, 2), seed=3)
    for eps in (1e-5, 0.5, 10.0):
        assert_allclose(batch_norm_forward(x, gamma, beta, eps)[0],
                        ref.batch_norm(x, gamma, beta, eps), rtol=1e-12)
        assert_allclose(group_norm_forward(x, gamma, beta, 2, eps)[0],
                        ref.group_norm(x, gamma, beta, 2, eps), rtol=1e-12)


# ---- numerical gradients -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forward", "backward", "hyper"),
    [
        (batch_norm_forward, batch_norm_backward, {}),
        (layer_norm_forward, layer_norm_backward, {}),
        (group_norm_forward, group_norm_backward, {"groups": 2}),
        (group_norm_forward, group_norm_backward, {"groups": 4}),
        (batch_norm_forward, batch_norm_backward, {"eps": 0.1}),
    ],
)
def test_numerical_gradient(forward, backward, hyper):
    x, gamma, beta, _ = random_problem((2, 4, 3, 2), seed=4)
    errors = check_gradients(forward, backward, x, gamma, beta, **hyper)
    assert max(errors) <= 1e-6, errors


# ---- the kernels themselves -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernels_match_serial_py_func(dtype):
    x, gamma, beta, dout = random_problem((3, 4, 2, 5), seed=5, dtype=dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    results = []
    for run in (lambda k: k, lambda k: k.py_func):
        mean, var, rstd = (np.empty(4, dtype) for _ in range(3))
        run(batch_norm_stats_kernel)(x, 1e-5, mean, var, rstd)
        out = np.empty_like(x)
        run(batch_norm_apply_kernel)(x, mean, rstd, gamma, beta, out)
        dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
        run(batch_norm_backward_kernel)(dout, x, mean, rstd, gamma, dx, dgamma, dbeta)
        results.append((mean, var, rstd, out, dx, dgamma, dbeta))
    for parallel, serial in zip(*results, strict=True):
        assert parallel.dtype == dtype
        assert_allclose(parallel, serial, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(  # the last shape is large enough for two threads
    "shape", [(3, 4, 2, 5), (1, 2, 1, 3), (5, 3, 1, 1), (4, 2, 9, 7), (8, 5, 32, 32)]
)
def test_fast_batch_norm_kernels_match_the_readable_ones(shape, dtype):
    """The public functions run the fast kernels (per-position partial sums); the readable
    kernels are what the notebook shows. Same numbers up to the summation order."""
    x, gamma, beta, dout = random_problem(shape, seed=11, dtype=dtype)
    x += dtype(3)  # a mean away from 0, so a wrong centring would show
    C = shape[1]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    mean, var, rstd = (np.empty(C, dtype) for _ in range(3))
    batch_norm_stats_kernel(x, 1e-5, mean, var, rstd)
    out = np.empty_like(x)
    batch_norm_apply_kernel(x, mean, rstd, gamma, beta, out)
    dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
    batch_norm_backward_kernel(dout, x, mean, rstd, gamma, dx, dgamma, dbeta)

    fast_stats = [np.full(C, np.nan, dtype) for _ in range(3)]
    fast_out = np.full_like(x, np.nan)
    _norm_fast.batch_norm_forward_kernel(x, gamma, beta, 1e-5, fast_out, *fast_stats)
    for got, want in zip(fast_stats, (mean, var, rstd), strict=True):
        assert_allclose(got, want, rtol=rtol)
    assert_allclose(fast_out, out, rtol=rtol, atol=rtol)
    fast_grads = np.full_like(x, np.nan), np.full_like(gamma, np.nan), np.full_like(beta, np.nan)
    _norm_fast.batch_norm_backward_kernel(dout, x, mean, rstd, gamma, *fast_grads)
    for got, want in zip(fast_grads, (dx, dgamma, dbeta), strict=True):
        assert got.dtype == dtype
        assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_kernels_match_serial_py_func(dtype):
    x, gamma, beta, dout = random_problem((3, 6, 2, 5), seed=6, dtype=dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    results = []
    for run in (lambda k: k, lambda k: k.py_func):
        out, mean, rstd = np.empty_like(x), np.empty((3, 2), dtype), np.empty((3, 2), dtype)
        run(group_norm_kernel)(x, gamma, beta, 1e-5, out, mean, rstd)
        dx, dgamma_parts, dbeta_parts = np.empty_like(x), np.empty((3, 6)), np.empty((3, 6))
        run(group_norm_backward_kernel)(dout, x, gamma, mean, rstd, dx, dgamma_parts,
                                         dbeta_parts)
        results.append((out, mean, rstd, dx, dgamma_parts, dbeta_parts))
    for parallel, serial in zip(*results, strict=True):
        assert_allclose(parallel, serial, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("layer", ["batch", "layer", "group"])
def test_float32_in_float32_out(layer):
    x, gamma, beta, dout = random_problem((4, 4, 3, 3), seed=7, dtype=np.float32)
    if layer == "batch":
        out, cache = batch_norm_forward(x, gamma, beta)
        grads = batch_norm_backward(dout, cache)
        expected = ref.batch_norm(x, gamma, beta), ref.batch_norm_backward(dout, x, gamma)
        assert cache.mean.dtype == cache.var.dtype == np.float32
    elif layer == "layer":
        out, cache = layer_norm_forward(x, gamma, beta)
        grads = layer_norm_backward(dout, cache)
        expected = ref.layer_norm(x, gamma, beta), ref.layer_norm_backward(dout, x, gamma)
    else:
        out, cache = group_norm_forward(x, gamma, beta, 2)
        grads = group_norm_backward(dout, cache)
        expected = ref.group_norm(x, gamma, beta, 2), ref.group_norm_backward(dout, x, gamma, 2)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert_allclose(out, expected[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected[1], strict=True):
        assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_float32_statistics_are_accumulated_accurately():
    # 16 384 values per channel near 1000: a float32 running sum gets the mean wrong by 8e-7
    # (relative), and the one-pass Σx²/M − μ² in float32 gives σ² = 5.3 instead of 0.99
    rng = np.random.default_rng(8)
    x = (1000 + rng.standard_normal((64, 2, 16, 16))).astype(np.float32)
    _, cache = batch_norm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32))
    exact = x.astype(np.float64)
    assert_allclose(cache.mean, exact.mean(axis=(0, 2, 3)), rtol=1e-7)
    assert_allclose(cache.var, exact.var(axis=(0, 2, 3)), rtol=1e-6)
    _, cache = layer_norm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32))
    assert_allclose(cache.mean[:, 0], exact.mean(axis=(1, 2, 3)), rtol=1e-7)


def test_mixed_and_integer_dtypes():
    x = np.arange(16, dtype=np.int64).reshape(2, 2, 2, 2)
    out, _ = batch_norm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32))
    assert out.dtype == np.float32  # the float arrays decide; the integers are converted
    out, _ = group_norm_forward(x.astype(np.float32), np.ones(2), np.zeros(2), 2)
    assert out.dtype == np.float64  # float64 gamma makes the common dtype float64
    out, _ = layer_norm_forward(x, [1, 1], [0, 0])
    assert out.dtype == np.float64


def test_nan_propagates():
    x, gamma, beta, _ = random_problem((2, 4, 3, 3), seed=9)
    x[1, 0, 2, 2] = np.nan
    out, _ = batch_norm_forward(x, gamma, beta)
    assert np.isnan(out[:, 0]).all() and not np.isnan(out[:, 1:]).any()  # its channel only
    out, _ = group_norm_forward(x, gamma, beta, 2)
    assert np.isnan(out[1, :2]).all() and not np.isnan(out[1, 2:]).any()  # its group only
    assert not np.isnan(out[0]).any()
    out, _ = layer_norm_forward(x, gamma, beta)
    assert np.isnan(out[1]).all() and not np.isnan(out[0]).any()  # its sample only


# ---- bad input ----------------------------------------------------------------------------------

X4 = np.zeros((2, 3, 2, 2))
ONES3, ZEROS3 = np.ones(3), np.zeros(3)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((X4, np.ones(4), ZEROS3), ValueError,
         r"gamma has shape \(4,\) but x has 3 channels; gamma needs shape \(3,\)"),
        ((X4, ONES3, np.zeros((3, 1))), ValueError, r"beta has shape \(3, 1\) but x has 3"),
        ((X4[0], ONES3, ZEROS3), ValueError, r"4 dimensions.*add a batch axis"),
        ((X4, ONES3, ZEROS3, 0.0), ValueError, "eps must be a finite number > 0, got 0.0"),
        ((X4, ONES3, ZEROS3, -1e-5), ValueError, "eps must be a finite number > 0"),
        ((X4, ONES3, ZEROS3, "1e-5"), TypeError, "eps must be a real number"),
        ((X4, None, ZEROS3), TypeError, "gamma is None"),
        ((X4.astype(complex), ONES3, ZEROS3), TypeError, "x is complex"),
        ((np.zeros((0, 3, 2, 2)), ONES3, ZEROS3), ValueError, "x is empty"),
    ],
)
@pytest.mark.parametrize("forward", [batch_norm_forward, layer_norm_forward])
def test_bad_forward_arguments(forward, args, error, message):
    with pytest.raises(error, match=message):
        forward(*args)


def test_bad_group_norm_arguments():
    x6 = np.zeros((2, 6, 2, 2))
    with pytest.raises(
        ValueError, match="C=6 channels cannot be split into 4 groups; choose groups that divide 6"
    ):
        group_norm_forward(x6, np.ones(6), np.zeros(6), 4)
    with pytest.raises(ValueError, match="groups must be at least 1"):
        group_norm_forward(x6, np.ones(6), np.zeros(6), 0)
    with pytest.raises(TypeError, match="groups must be an integer"):
        group_norm_forward(x6, np.ones(6), np.zeros(6), 2.0)
    with pytest.raises(ValueError, match=r"gamma has shape \(3,\) but x has 6 channels"):
        group_norm_forward(x6, ONES3, np.zeros(6), 3)


def test_batch_norm_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*N·H·W = 1"):
        batch_norm_forward(np.zeros((1, 3, 1, 1)), ONES3, ZEROS3)
    batch_norm_forward(np.zeros((1, 3, 1, 2)), ONES3, ZEROS3)  # two values are enough


def test_bad_inference_arguments():
    with pytest.raises(ValueError, match=r"running_mean has shape \(2,\) but x has 3 channels"):
        batch_norm_inference(X4, ONES3, ZEROS3, np.zeros(2), ONES3)
    with pytest.raises(ValueError, match="running_var has negative entries"):
        batch_norm_inference(X4, ONES3, ZEROS3, ZEROS3, -ONES3)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        batch_norm_inference(X4, ONES3, ZEROS3, ZEROS3, ONES3, eps=0)


@pytest.mark.parametrize(
    ("forward", "backward", "name", "hyper"),
    [
        (batch_norm_forward, batch_norm_backward, "batch_norm", {}),
        (layer_norm_forward, layer_norm_backward, "layer_norm", {}),
        (group_norm_forward, group_norm_backward, "group_norm", {"groups": 3}),
    ],
)
def test_bad_backward_arguments(forward, backward, name, hyper):
    out, cache = forward(X4, ONES3, ZEROS3, **hyper)
    with pytest.raises(ValueError, match=rf"dout has shape \(2, 3, 2\) but the output of {name}"):
        backward(np.zeros((2, 3, 2)), cache)
    with pytest.raises(TypeError, match=f"needs the cache returned by {name}_forward"):
        backward(np.zeros(out.shape), (X4, ONES3))
    foreign = (batch_norm_forward if name != "batch_norm" else layer_norm_forward)(
        X4, ONES3, ZEROS3
    )[1]
    with pytest.raises(TypeError, match=f"needs the cache returned by {name}_forward"):
        backward(np.zeros(out.shape), foreign)


def test_cache_contents():
    x, gamma, beta, _ = random_problem((2, 3, 2, 2), seed=10, dtype=np.float32)
    _, cache = batch_norm_forward(x, gamma, beta)
    assert isinstance(cache, BatchNormCache)
    assert cache.x is not None and cache.mean.shape == cache.var.shape == (3,)
    assert_allclose(cache.rstd, 1 / np.sqrt(cache.var.astype(np.float64) + 1e-5), rtol=1e-6)
    _, cache = layer_norm_forward(x, gamma, beta)
    assert isinstance(cache, GroupNormCache) and cache.mean.shape == (2, 1)


def test_group_norm_and_readable_batch_norm_split_over_threads_match_the_reference():
    # Issue 11 (cold start): the group-norm kernels and batch norm's readable apply kernel are
    # serial, and the functions run one piece of the batch per thread; this batch is split.
    from cnnlib._loops import _chunks
    from cnnlib.norm import _PER_THREAD

    x, gamma, beta, dout = random_problem((8, 6, 32, 32), seed=23, dtype=np.float64)
    if _chunks(x.shape[0], x.size, _PER_THREAD) < 2:
        pytest.skip("one thread only: nothing is split")
    out, cache = group_norm_forward(x, gamma, beta, 3)
    assert_allclose(out, ref.group_norm(x, gamma, beta, 3), rtol=1e-10, atol=1e-10)
    for got, want in zip(group_norm_backward(dout, cache),
                         ref.group_norm_backward(dout, x, gamma, 3), strict=True):
        assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    out, _ = batch_norm_forward(x, gamma, beta, method="readable")
    assert_allclose(out, ref.batch_norm(x, gamma, beta), rtol=1e-10, atol=1e-10)
