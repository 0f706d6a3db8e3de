
import numpy as np
import pytest
from numba_checks import float64_instructions
from numpy.testing import assert_allclose, assert_array_equal

from cnnlib import reference as ref
from cnnlib.gradcheck import check_gradients
from cnnlib.pool import (
    AvgPool2dCache,
    MaxPool2dCache,
    _max_2x2_backward_planes,
    _max_2x2_planes,
    _max_pool2d_2x2_backward_kernel,
    _max_pool2d_2x2_kernel,
    avg_pool2d_backward,
    avg_pool2d_backward_kernel,
    avg_pool2d_forward,
    avg_pool2d_kernel,
    max_pool2d_backward,
    max_pool2d_backward_kernel,
    max_pool2d_forward,
    max_pool2d_kernel,
)

POOLS = {
    "max": (max_pool2d_forward, max_pool2d_backward, ref.max_pool2d, ref.max_pool2d_backward),
    "avg": (avg_pool2d_forward, avg_pool2d_backward, ref.avg_pool2d, ref.avg_pool2d_backward),
}

# ---- hand-worked numbers (the lecture's 4×4 → 2×2 example; notebooks 02 and 05 reuse them) ----

X_LECTURE = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 1], [3, 4, 0, 9]])[None, None]
DOUT_HAND = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]


def test_lecture_example_max_forward():
    out, cache = max_pool2d_forward(X_LECTURE, 2)
    # windows [[1,3],[5,6]], [[2,4],[1,2]], [[7,2],[3,4]], [[8,1],[0,9]]
    assert_array_equal(out, [[[[6, 4], [7, 9]]]])
    assert out.dtype == np.float64  # integer images are converted, not truncated
    # positions h·W + w of the maxima: (1,1), (0,3), (2,0), (3,3)
    assert_array_equal(cache.argmax, [[[[5, 3], [8, 15]]]])


def test_lecture_example_max_backward():
    _, cache = max_pool2d_forward(X_LECTURE, 2)
    dx = max_pool2d_backward(DOUT_HAND, cache)
    # each window's upstream value lands on its maximum; every other position gets 0
    assert_array_equal(dx, [[[[0, 0, 0, 2], [0, 1, 0, 0], [3, 0, 0, 0], [0, 0, 0, 4]]]])


def test_lecture_example_avg_forward_backward():
    out, cache = avg_pool2d_forward(X_LECTURE, 2)
    # (1+3+5+6)/4, (2+4+1+2)/4, (7+2+3+4)/4, (8+1+0+9)/4
    assert_array_equal(out, [[[[3.75, 2.25], [4.0, 4.5]]]])
    dx = avg_pool2d_backward(DOUT_HAND, cache)
    # each window spreads dout/4 over its four positions
    expected = [
        [0.25, 0.25, 0.5, 0.5],
        [0.25, 0.25, 0.5, 0.5],
        [0.75, 0.75, 1.0, 1.0],
        [0.75, 0.75, 1.0, 1.0],
    ]
    assert_array_equal(dx, [[expected]])


def test_overlapping_windows_accumulate_by_hand():
    # 2×2 windows with stride 1 on a 3×3 image: the centre 9 is the maximum of all four windows
    x = np.array([[1.0, 2, 3], [4, 9, 5], [6, 7, 8]])[None, None]
    out, cache = max_pool2d_forward(x, 2, stride=1)
    assert_array_equal(out, [[[[9, 9], [9, 9]]]])
    dx = max_pool2d_backward(DOUT_HAND, cache)
    assert_array_equal(dx, [[[[0, 0, 0], [0, 1 + 2 + 3 + 4, 0], [0, 0, 0]]]])
    out, cache = avg_pool2d_forward(x, 2, stride=1)
    assert_array_equal(out, [[[[4, 4.75], [6.5, 7.25]]]])
    # the centre lies in all four windows: (1 + 2 + 3 + 4) / 4
    assert avg_pool2d_backward(DOUT_HAND, cache)[0, 0, 1, 1] == 2.5


def test_padding_by_hand():
    # 2×2 windows, stride 2, padding 1 on a 2×2 image: each window holds one real pixel
    x = -np.array([[1.0, 2], [3, 4]])[None, None]
    out, _ = max_pool2d_forward(x, 2, padding=1)
    assert_array_equal(out, x)  # the padding is −∞, so even negative pixels win
    out, _ = avg_pool2d_forward(x, 2, padding=1)
    assert_array_equal(out, x / 4)  # zero padding counts in the divisor 2·2


# ---- against the reference over a grid of the classic from-scratch bugs ----------------------

SHAPES = [(2, 3, 7, 6), (1, 1, 5, 5)]  # odd, non-square, not divisible; batch of 1, one channel


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("stride", [None, 1, 2, 3])
@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_matches_reference(pool, kernel_size, stride, padding, shape):
    forward, backward, ref_forward, ref_backward = POOLS[pool]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    out, cache = forward(x, kernel_size, stride, padding)
    assert_allclose(out, ref_forward(x, kernel_size, stride, padding), rtol=1e-13, atol=1e-15)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    expected = ref_backward(dout, x, kernel_size, stride, padding)
    assert_allclose(dx, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding"),
    [((2, 3), (1, 2), (1, 0)), ((3, 1), (2, 1), (1, 0)), (3, 2, 1), (1, 1, 0), (4, (3, 1), 2)],
)
def test_pairs_match_reference(pool, kernel_size, stride, padding):
    forward, backward, ref_forward, ref_backward = POOLS[pool]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 6, 9))
    out, cache = forward(x, kernel_size, stride, padding)
    assert_allclose(out, ref_forward(x, kernel_size, stride, padding), rtol=1e-13)
    dout = rng.standard_normal(out.shape)
    expected = ref_backward(dout, x, kernel_size, stride, padding)
    assert_allclose(backward(dout, cache), expected, rtol=1e-13, atol=1e-15)


def test_output_size_drops_what_does_not_fit():
    x = np.zeros((1, 1, 7, 6))
    assert max_pool2d_forward(x, 2)[0].shape == (1, 1, 3, 3)  # row 6 dropped
    assert max_pool2d_forward(x, 3, stride=2)[0].shape == (1, 1, 3, 2)  # column 5 dropped
    assert avg_pool2d_forward(x, 3, stride=2, padding=1)[0].shape == (1, 1, 4, 3)


# ---- max-pool ties ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel_size", "stride", "padding"), [(2, 2, 0), (3, 3, 1), (2, 2, 1)])
def test_tied_window_sends_its_gradient_to_one_position(kernel_size, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(2, 3, 6, 6)).astype(np.float64)  # ties everywhere
    out, cache = max_pool2d_forward(x, kernel_size, stride, padding)
    dout = rng.uniform(1, 2, size=out.shape)
    dx = max_pool2d_backward(dout, cache)
    # windows do not overlap (stride = kernel_size): each one's positions receive exactly dout
    assert np.count_nonzero(dx) == out.size
    assert_allclose(dx.sum(axis=(2, 3)), dout.sum(axis=(2, 3)), rtol=1e-13)
    # the first maximum in row-major order, like the reference
    expected = ref.max_pool2d_backward(dout, x, kernel_size, stride, padding)
    assert_array_equal(dx, expected)


def test_overlapping_tied_windows_keep_the_total():
    x = np.zeros((1, 2, 7, 7))  # every window is a tie; k=3, s=2 windows overlap
    out, cache = max_pool2d_forward(x, 3, stride=2, padding=1)
    dout = np.arange(1.0, out.size + 1).reshape(out.shape)
    dx = max_pool2d_backward(dout, cache)
    assert_allclose(dx.sum(), dout.sum(), rtol=1e-13)
    assert_array_equal(dx, ref.max_pool2d_backward(dout, x, 3, 2, 1))


def test_all_minus_infinity_window_still_passes_its_gradient():
    # every window (with −∞ padding all around) holds only −∞: the gradient must not be lost in
    # the padding, it goes to the window's first pixel inside x
    x = np.full((1, 1, 3, 3), -np.inf)
    out, cache = max_pool2d_forward(x, 2, stride=1, padding=1)
    assert np.all(out == -np.inf)
    dx = max_pool2d_backward(np.ones(out.shape), cache)
    assert dx.sum() == out.size
    assert dx[0, 0, 0, 0] == 4  # the four windows touching the top-left corner


# ---- numerical gradients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding"), [(2, None, 0), (3, 2, 1), (2, 1, 1), ((2, 3), (3, 1), 0)]
)
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_numerical_gradient(pool, kernel_size, stride, padding):
    forward, backward, _, _ = POOLS[pool]
    rng = np.random.default_rng(3)
    # distinct values 0.1 apart: a ±1e-6 perturbation never changes which element is the maximum
    x = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.1 - 3.0
    (err,) = check_gradients(
        forward, backward, x, kernel_size=kernel_size, stride=stride, padding=padding
    )
    assert err <= 1e-6


# ---- the kernels themselves -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_kernels_match_serial_py_func(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
    x[0, 1, 2, 3] = np.nan  # the NaN branch too
    hyper = (3, 2, 2, 1, 1, 0)  # KH, KW, sh, sw, ph, pw: overlapping rows, padded rows
    shape = (2, 3, 4, 7)
    out, out_py = np.empty(shape, dtype), np.empty(shape, dtype)
    argmax, argmax_py = np.empty(shape, np.int64), np.empty(shape, np.int64)
    max_pool2d_kernel(x, *hyper, out, argmax)
    max_pool2d_kernel.py_func(x, *hyper, out_py, argmax_py)
    assert_array_equal(out, out_py)
    assert_array_equal(argmax, argmax_py)

    dout = rng.standard_normal(shape).astype(dtype)
    dx, dx_py = np.zeros(x.shape, dtype), np.zeros(x.shape, dtype)
    max_pool2d_backward_kernel(dout, argmax, dx)
    max_pool2d_backward_kernel.py_func(dout, argmax, dx_py)
    assert_array_equal(dx, dx_py)  # the same additions in the same order

    area = dtype(3 * 2)
    avg_pool2d_kernel(x, *hyper, area, out)
    avg_pool2d_kernel.py_func(x, *hyper, area, out_py)
    assert_allclose(out, out_py, rtol=1e-6, equal_nan=True)
    dx, dx_py = np.zeros(x.shape, dtype), np.zeros(x.shape, dtype)
    avg_pool2d_backward_kernel(dout, *hyper, area, dx)
    avg_pool2d_backward_kernel.py_func(dout, *hyper, area, dx_py)
    assert_allclose(dx, dx_py, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(  # the last shape is large enough for two threads
    "shape", [(3, 2, 8, 6), (2, 3, 7, 9), (1, 1, 2, 2), (2, 1, 5, 3), (4, 4, 33, 64)]
)
def test_unrolled_2x2_kernels_match_the_general_ones(shape, dtype):
    """The fast path (2×2, stride 2, no padding) gives the general kernels' numbers, also for
    odd sizes (the last row/column is dropped), ties, NaN, ±inf and inf − inf windows."""
    rng = np.random.default_rng(9)
    x = rng.integers(-2, 3, size=shape).astype(dtype)  # small integers: many ties
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, np.nan, np.inf, -np.inf])[: flat.size // 2]
    flat[rng.choice(flat.size, size=specials.size, replace=False)] = specials
    x[-1, -1, :2, :2] = [[np.inf, -np.inf], [1, np.inf]]  # inf − inf is NaN, but no NaN here
    N, C, H, W = shape
    out_shape = (N, C, H // 2, W // 2)
    out, out_fast = np.empty(out_shape, dtype), np.empty(out_shape, dtype)
    argmax, argmax_fast = np.empty(out_shape, np.int64), np.empty(out_shape, np.int64)
    max_pool2d_kernel(x, 2, 2, 2, 2, 0, 0, out, argmax)
    _max_pool2d_2x2_kernel(x, out_fast, argmax_fast)
    assert_array_equal(out_fast, out)  # NaN in the same places, too
    assert_array_equal(argmax_fast, argmax)

    dout = rng.standard_normal(out_shape).astype(dtype)
    dx = np.zeros(shape, dtype)
    max_pool2d_backward_kernel(dout, argmax, dx)
    dx_fast = np.full(shape, np.nan, dtype)  # the fast kernel must write every element
    _max_pool2d_2x2_backward_kernel(dout, argmax, dx_fast)
    assert_array_equal(dx_fast, dx)


def test_public_functions_take_the_2x2_path_only_when_it_applies():
    x = np.random.default_rng(10).standard_normal((2, 2, 6, 6))
    assert max_pool2d_forward(x, 2)[1].plain_2x2
    assert max_pool2d_forward(x, (2, 2), stride=2, padding=0)[1].plain_2x2
    for hyper in [(2, 1, 0), (2, 2, 1), (3, 2, 0), ((2, 3), 2, 0)]:
        out, cache = max_pool2d_forward(x, *hyper)
        assert not cache.plain_2x2
        assert_array_equal(out, ref.max_pool2d(x, *hyper))


def test_float32_kernels_compute_in_float32():
    """No float64 arithmetic in the LLVM IR of a fresh serial compile for float32 arrays."""
    x = np.ones((1, 2, 4, 4), np.float32)
    out, argmax = np.empty((1, 2, 2, 2), np.float32), np.empty((1, 2, 2, 2), np.int64)
    hyper = (2, 2, 2, 2, 0, 0)
    cases = [
        (max_pool2d_kernel, (x, *hyper, out, argmax)),
        (max_pool2d_backward_kernel, (out, argmax, x.copy())),
        (_max_2x2_planes, (x, out, argmax, 1, 0)),
        (_max_2x2_backward_planes, (out, argmax, x.copy(), 1, 0)),
        (avg_pool2d_kernel, (x, *hyper, np.float32(4), out)),
        (avg_pool2d_backward_kernel, (out, *hyper, np.float32(4), x.copy())),
    ]
    for kern, args in cases:
        assert float64_instructions(kern.py_func, *args) == [], kern.__name__


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_float32_in_float32_out(pool):
    forward, backward, ref_forward, ref_backward = POOLS[pool]
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 5)).astype(np.float32)
    out, cache = forward(x, 3, 2, 1)
    assert out.dtype == np.float32
    assert_allclose(out, ref_forward(x, 3, 2, 1), rtol=1e-6, atol=1e-6)
    dout = np.ones(out.shape, np.float32)
    dx = backward(dout, cache)
    assert dx.dtype == np.float32
    assert_allclose(dx, ref_backward(dout, x, 3, 2, 1), rtol=1e-6, atol=1e-6)


def test_nan_propagates():
    x = X_LECTURE.astype(np.float64)
    x[0, 0, 1, 0] = np.nan  # in the first window, after its first element
    out, cache = max_pool2d_forward(x, 2)
    assert np.isnan(out[0, 0, 0, 0])
    assert_array_equal(out[0, 0].ravel()[1:], [4, 7, 9])
    assert cache.argmax[0, 0, 0, 0] == 4  # the NaN's position h·W + w = 1·4 + 0
    dx = max_pool2d_backward(np.ones((1, 1, 2, 2)), cache)
    assert dx[0, 0, 1, 0] == 1 and dx.sum() == 4
    out, _ = avg_pool2d_forward(x, 2)
    assert np.isnan(out[0, 0, 0, 0]) and not np.isnan(out[0, 0].ravel()[1:]).any()


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("forward", [max_pool2d_forward, avg_pool2d_forward])
@pytest.mark.parametrize(
    ("x", "hyper", "error", "message"),
    [
        (np.zeros((1, 1, 5, 5)), (3, 1, 2), ValueError,
         "padding 2 is more than half of kernel_size 3; use padding ≤ kernel_size // 2"),
        (np.zeros((1, 1, 5, 5)), (2, 2, (0, 2)), ValueError, "padding 2 is more than half"),
        (np.zeros((1, 1, 2, 5)), (3, 1, 0), ValueError, r"kernel_size \(3, 3\) is larger"),
        (np.zeros((1, 1, 5, 5)), (2, 0, 0), ValueError, "stride must be at least 1"),
        (np.zeros((1, 1, 5, 5)), (0, None, 0), ValueError, "kernel_size must be at least 1"),
        (np.zeros((1, 1, 5, 5)), (2, 1, -1), ValueError, "padding must be at least 0"),
        (np.zeros((1, 1, 5, 5)), (2.0, None, 0), TypeError, "kernel_size must be an integer"),
        (np.zeros((1, 1, 5, 5)), (2, 1.5, 0), TypeError, "stride must be an integer"),
        (np.zeros((1, 1, 5, 5)), ((2, 2, 2), None, 0), ValueError, r"an \(h, w\) pair"),
        (np.zeros((5, 5)), (2, None, 0), ValueError, r"4 dimensions.*x\[None, None\]"),
        (np.zeros((1, 5, 5)), (2, None, 0), ValueError, r"add a batch axis: x\[None\]"),
        (np.zeros((1, 1, 4, 4), complex), (2, None, 0), TypeError, "complex"),
        (np.array([["a"]]), (2, None, 0), TypeError, "not numeric"),
    ],
)
def test_bad_forward_arguments(forward, x, hyper, error, message):
    with pytest.raises(error, match=message):
        forward(x, *hyper)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_bad_backward_arguments(pool):
    forward, backward, _, _ = POOLS[pool]
    out, cache = forward(np.zeros((2, 3, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 3, 4, 4\) but the output"):
        backward(np.zeros((2, 3, 4, 4)), cache)
    with pytest.raises(TypeError, match=f"needs the cache returned by {pool}_pool2d_forward"):
        backward(np.zeros(out.shape), None)
    other = avg_pool2d_forward if pool == "max" else max_pool2d_forward
    with pytest.raises(TypeError, match=f"needs the cache returned by {pool}_pool2d_forward"):
        backward(np.zeros(out.shape), other(np.zeros((2, 3, 4, 4)), 2)[1])
    with pytest.raises(TypeError, match="dout is complex"):
        backward(np.zeros(out.shape, complex), cache)


def test_cache_contents():
    x = np.zeros((2, 3, 5, 4), np.float32)
    _, cache = max_pool2d_forward(x, 2)
    assert isinstance(cache, MaxPool2dCache)
    assert cache.x_shape == (2, 3, 5, 4) and cache.dtype == np.float32
    assert cache.argmax.shape == (2, 3, 2, 2)
    _, cache = avg_pool2d_forward(x, 3, stride=(1, 2), padding=1)
    assert cache == AvgPool2dCache((2, 3, 5, 4), np.float32, (2, 3, 5, 2), (3, 3), (1, 2), (1, 1))


def test_read_only_input_compiles_no_second_kernel():
    """A read-only x (a widget's cached image) is another Numba type: it is copied instead."""
    x = np.random.default_rng(5).standard_normal((1, 2, 4, 4)).astype(np.float32)
    want, _ = max_pool2d_forward(x, 2)
    before = len(_max_2x2_planes.signatures)
    x.setflags(write=False)
    got, _ = max_pool2d_forward(x, 2)
    assert len(_max_2x2_planes.signatures) == before
    assert_array_equal(got, want)


def test_average_pooling_split_over_threads_matches_the_reference():
    # Issue 11 (cold start): the average-pooling kernels are serial, and the functions run one
    # piece of the batch per thread; a batch this size is split in two.
    from cnnlib._loops import _chunks
    from cnnlib.pool import _PER_THREAD

    x = np.random.default_rng(21).standard_normal((8, 4, 32, 32)).astype(np.float32)
    if _chunks(x.shape[0], x.size, _PER_THREAD) < 2:
        pytest.skip("one thread only: nothing is split")
    out, cache = avg_pool2d_forward(x, 3, 2, 1)
    assert_allclose(out, ref.avg_pool2d(x, 3, 2, 1), rtol=1e-5, atol=1e-6)
    dout = np.random.default_rng(22).standard_normal(out.shape).astype(np.float32)
    assert_allclose(avg_pool2d_backward(dout, cache), ref.avg_pool2d_backward(dout, x, 3, 2, 1),
                    rtol=1e-5, atol=1e-6)
