import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_instructions
from numpy.testing import assert_allclose, assert_array_equal

from cnnlib import reference as ref
from cnnlib._conv_fast import (
    _backward_plan,
    _fast_backward_kernel,
    _fast_forward_kernel,
    _forward_plan,
    _gather,
    _gather_row_runs,
    _gather_runs,
)
from cnnlib._loops import _gemm, _gemm_dots, _sum
from cnnlib.conv import (
    Conv2dCache,
    conv2d_backward,
    conv2d_dw_kernel,
    conv2d_dx_kernel,
    conv2d_forward,
    conv2d_forward_kernel,
    conv_output_size,
)
from cnnlib.gradcheck import check_gradients

METHODS = ["fast", "readable"]

# d2l's example: the 3×3 image 0..8 and the 2×2 filter 0..3
X_HAND = np.arange(9.0).reshape(1, 1, 3, 3)
W_HAND = np.arange(4.0).reshape(1, 1, 2, 2)


def random_problem(N, C, H, W, F, KH, KW, stride, padding, dilation, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    out = ref.conv2d(x, w, b, stride, padding, dilation)
    dout = rng.standard_normal(out.shape).astype(dtype)
    return x, w, b, dout


# ---- hand-worked numbers (they also appear in notebooks 02 and 05) ---------------------------


@pytest.mark.parametrize("method", METHODS)
def test_hand_worked_forward(method):
    out, _ = conv2d_forward(X_HAND, W_HAND, np.zeros(1), method=method)
    assert_array_equal(out, [[[[19, 25], [37, 43]]]])
    out, _ = conv2d_forward(X_HAND, W_HAND, np.array([1.0]), method=method)
    assert_array_equal(out, [[[[20, 26], [38, 44]]]])


@pytest.mark.parametrize("method", METHODS)
def test_hand_worked_backward(method):
    _, cache = conv2d_forward(X_HAND, W_HAND, np.array([1.0]), method=method)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx, dw, db = conv2d_backward(dout, cache)
    # dw[m,q] = Σ_ij dout[i,j]·x[i+m, j+q], e.g. dw[0,0] = 1·0 + 2·1 + 3·3 + 4·4 = 27
    assert_array_equal(dw, [[[[27, 37], [57, 67]]]])
    assert_array_equal(db, [10])
    # dx[y,x] = Σ_ij dout[i,j]·w[y−i, x−j], e.g. dx[1,1] = 1·3 + 2·2 + 3·1 + 4·0 = 10
    assert_array_equal(dx, [[[[0, 1, 2], [2, 10, 10], [6, 17, 12]]]])


@pytest.mark.parametrize("method", METHODS)
def test_dx_is_full_convolution_with_the_flipped_filter(method):
    x, w, b, dout = random_problem(2, 3, 6, 5, 4, 3, 2, 1, 0, 1)
    dx, dw, _ = conv2d_backward(dout, conv2d_forward(x, w, b, method=method)[1])
    # full convolution: pad dout by KH−1, KW−1; filter channels ↔ filters, rotated by 180°
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    full, _ = conv2d_forward(dout, w_flipped, np.zeros(3), padding=(2, 1), method=method)
    assert_allclose(dx, full, rtol=1e-12, atol=1e-12)
    # dw is the convolution of x with dout as the filter (samples play the role of channels)
    x_as_batch = x.transpose(1, 0, 2, 3)  # (C, N, H, W)
    dout_as_filter = dout.transpose(1, 0, 2, 3)  # (F, N, H_out, W_out)
    dw_conv, _ = conv2d_forward(x_as_batch, dout_as_filter, np.zeros(4), method=method)
    assert_allclose(dw, dw_conv.transpose(1, 0, 2, 3), rtol=1e-12, atol=1e-12)


# ---- against the reference over the classic from-scratch bugs ---------------------------------

CASES = {
    # name: (N, C, H, W, F, KH, KW, stride, padding, dilation)
    "plain": (2, 3, 6, 6, 4, 3, 3, 1, 0, 1),
    "stride2": (2, 2, 7, 7, 3, 3, 3, 2, 0, 1),
    "stride3-not-divisible": (2, 2, 9, 8, 3, 2, 2, 3, 0, 1),
    "pad1": (2, 2, 5, 5, 3, 3, 3, 1, 1, 1),
    "pad2-stride2-not-divisible": (1, 3, 6, 7, 2, 3, 3, 2, 2, 1),
    "pad-wider-than-half-kernel": (1, 1, 4, 4, 2, 2, 2, 1, 2, 1),
    "dilation2": (2, 2, 8, 7, 3, 3, 2, 1, 1, 2),
    "dilation2-stride2": (1, 2, 9, 9, 2, 3, 3, 2, 0, 2),
    "non-square": (2, 2, 5, 9, 3, 2, 4, 1, 0, 1),
    "batch1-one-channel": (1, 1, 6, 6, 1, 3, 3, 1, 1, 1),
    "1x1-kernel": (2, 4, 5, 5, 3, 1, 1, 1, 0, 1),
    "kernel-fills-input": (2, 2, 4, 3, 2, 4, 3, 1, 0, 1),
    "kernel-wider-than-8": (1, 2, 5, 12, 2, 2, 9, 1, (0, 4), 1),
    "several-row-blocks": (2, 16, 20, 20, 3, 5, 5, 1, 2, 1),  # im2col in blocks of 4 rows
    "row-blocks-stride2": (1, 16, 20, 20, 2, 5, 5, 2, 2, 1),
    "pairs": (2, 2, 8, 9, 3, 3, 2, (2, 1), (1, 0), (1, 2)),
    "pairs-stride3": (1, 2, 10, 7, 2, 2, 3, (3, 2), (0, 2), (2, 1)),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_reference(case, method):
    stride, padding, dilation = case[7:]
    x, w, b, dout = random_problem(*case)
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, method=method)
    assert_allclose(out, ref.conv2d(x, w, b, stride, padding, dilation), rtol=1e-12, atol=1e-12)
    dx, dw, db = conv2d_backward(dout, cache)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dout, x, w, stride, padding, dilation)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_need_dx_false_skips_dx_only(method):
    x, w, b, dout = random_problem(*CASES["pairs"])
    stride, padding, dilation = CASES["pairs"][7:]
    _, cache = conv2d_forward(x, w, b, stride, padding, dilation, method=method)
    dx, dw, db = conv2d_backward(dout, cache, need_dx=False)
    _, dw_ref, db_ref = ref.conv2d_backward(dout, x, w, stride, padding, dilation)
    assert dx is None
    assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["pad2-stride2-not-divisible", "dilation2", "pairs"])
def test_numerical_gradients(case, method):
    stride, padding, dilation = CASES[case][7:]
    x, w, b, _ = random_problem(*CASES[case])
    errors = check_gradients(
        conv2d_forward, conv2d_backward, x, w, b,
        stride=stride, padding=padding, dilation=dilation, method=method,
    )  # fmt: skip
    assert max(errors) <= 1e-6, errors


def test_fast_and_readable_agree_in_float32():
    x, w, b, dout = random_problem(4, 8, 14, 14, 16, 5, 5, 1, 2, 1, dtype=np.float32)
    out_fast, cache_fast = conv2d_forward(x, w, b, padding=2)
    out_slow, cache_slow = conv2d_forward(x, w, b, padding=2, method="readable")
    assert_allclose(out_fast, out_slow, rtol=1e-4, atol=1e-4)
    for fast, slow in zip(
        conv2d_backward(dout, cache_fast), conv2d_backward(dout, cache_slow), strict=True
    ):
        assert_allclose(fast, slow, rtol=1e-4, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(
    N=st.integers(1, 2), C=st.integers(1, 3), F=st.integers(1, 3),
    KH=st.integers(1, 4), KW=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    method=st.sampled_from(METHODS),
)  # fmt: skip
def test_property_matches_reference(N, C, F, KH, KW, stride, padding, dilation, extra, method):
    # the smallest input the (dilated) kernel fits into, plus a few pixels
    H = max(1, dilation[0] * (KH - 1) + 1 - 2 * padding[0] + extra[0])
    W = max(1, dilation[1] * (KW - 1) + 1 - 2 * padding[1] + extra[1])
    x, w, b, dout = random_problem(N, C, H, W, F, KH, KW, stride, padding, dilation, seed=H * W)
    out, cache = conv2d_forward(x, w, b, stride, padding, dilation, method=method)
    assert_allclose(out, ref.conv2d(x, w, b, stride, padding, dilation), rtol=1e-10, atol=1e-10)
    grads = conv2d_backward(dout, cache)
    for got, want in zip(
        grads, ref.conv2d_backward(dout, x, w, stride, padding, dilation), strict=True
    ):
        assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# ---- the parallel kernels against their serial Python interpretation ---------------------------


def test_readable_kernels_match_their_serial_python():
    x, w, b, dout = random_problem(2, 2, 6, 5, 3, 3, 2, (2, 1), (1, 1), (1, 2))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    args = (2, 1, 1, 2)  # sh, sw, dil_h, dil_w
    out, out_py = np.empty(dout.shape), np.empty(dout.shape)
    conv2d_forward_kernel(xp, w, b, *args, out)
    conv2d_forward_kernel.py_func(xp, w, b, *args, out_py)
    assert_allclose(out, out_py, rtol=1e-12, atol=1e-12)
    dw, db, dw_py, db_py = np.empty_like(w), np.empty(3), np.empty_like(w), np.empty(3)
    conv2d_dw_kernel(dout, xp, *args, dw, db)
    conv2d_dw_kernel.py_func(dout, xp, *args, dw_py, db_py)
    assert_allclose(dw, dw_py, rtol=1e-12, atol=1e-12)
    assert_allclose(db, db_py, rtol=1e-12, atol=1e-12)
    dxp, dxp_py = np.zeros_like(xp), np.zeros_like(xp)
    conv2d_dx_kernel(dout, w, *args, dxp)
    conv2d_dx_kernel.py_func(dout, w, *args, dxp_py)
    assert_allclose(dxp, dxp_py, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, (2, 1), (1, 2)], ids=["1", "rows-2", "columns-2"])
def test_fast_kernels_match_their_serial_python(stride):
    x, w, b, dout = random_problem(3, 2, 6, 5, 3, 3, 2, stride, (1, 2), (1, 2))
    hyper = (tuple(np.broadcast_to(stride, 2)), (1, 2), (1, 2))  # stride, padding, dilation
    out, out_py = np.empty(dout.shape), np.empty(dout.shape)
    # blocks of 2 output rows in 2 chunks; each call fills its chunk
    _, args = _forward_plan(x, w, b, *hyper, out, rows=2, chunks=2)
    _, args_py = _forward_plan(x, w, b, *hyper, out_py, rows=2, chunks=2)
    for t in range(2):
        _fast_forward_kernel(*args, t)
        _fast_forward_kernel.py_func(*args_py, t)
    assert_allclose(out, out_py, rtol=1e-12, atol=1e-12)
    _, args = _backward_plan(dout, x, w, *hyper, True, chunks=2)
    _, args_py = _backward_plan(dout, x, w, *hyper, True, chunks=2)
    for t in range(2):
        _fast_backward_kernel(*args, t)
        _fast_backward_kernel.py_func(*args_py, t)
    for got, want in zip(args[-3:], args_py[-3:], strict=True):  # dx, dw_parts, db_parts
        assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_scratch_kept_between_calls_leaves_nothing_behind():
    """The fast kernels keep their scratch per thread and shape (``_conv_fast._scratch``).
    Convolutions whose padded samples have the same length but another padding, stride or data
    run in turn, and each gives the readable kernel's numbers every time."""
    problems = [random_problem(3, 2, 8, 8, 3, 3, 3, 1, 1, 1, seed=1),  # 10×10 padded
                random_problem(3, 2, 6, 6, 3, 3, 3, 1, 2, 1, seed=2),  # 10×10 padded too
                random_problem(3, 2, 10, 10, 3, 3, 3, 2, 0, 1, seed=3),  # stride 2: patches
                random_problem(3, 2, 8, 8, 3, 3, 3, 1, 1, 1, seed=4)]  # the first shapes again
    hyper = [(1, 1, 1), (1, 2, 1), (2, 0, 1), (1, 1, 1)]
    for _ in range(2):
        for (x, w, b, dout), (stride, padding, dilation) in zip(problems, hyper, strict=True):
            got = [conv2d_forward(x, w, b, stride, padding, dilation, method=m) for m in METHODS]
            assert_allclose(got[0][0], got[1][0], rtol=1e-12, atol=1e-12)
            grads = [conv2d_backward(dout, cache) for _, cache in got]
            for a, c in zip(*grads, strict=True):
                assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_threads_get_scratch_of_their_own():
    """Two threads convolving at once (one of them runs its chunks itself, _loops._in_chunks)
    do not share scratch: both get the numbers of a convolution alone."""
    x, w, b, dout = random_problem(8, 3, 12, 12, 4, 3, 3, 1, 1, 1, seed=5)
    want, cache = conv2d_forward(x, w, b, 1, 1, 1)
    want_grads = conv2d_backward(dout, cache)
    failures = []

    def work():
        for _ in range(30):
            out, cache = conv2d_forward(x, w, b, 1, 1, 1)
            grads = conv2d_backward(dout, cache)
            if not (np.array_equal(out, want)
                    and all(np.array_equal(g, h) for g, h in zip(grads, want_grads, strict=True))):
                failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_kept_scratch_stays_under_its_limit(monkeypatch):
    """A slider that changes the shape at every move keeps at most _KEEP_BYTES of scratch."""
    from cnnlib import _conv_fast

    monkeypatch.setattr(_conv_fast, "_KEEP_BYTES", 200_000)
    for size in range(6, 30, 2):
        x, w, b, _ = random_problem(2, 3, size, size, 4, 3, 3, 1, 1, 1, seed=size)
        out, cache = conv2d_forward(x, w, b, 1, 1, 1)
        conv2d_backward(out, cache)
        kept = _conv_fast._buffers.kept
        assert 0 < sum(map(_conv_fast._nbytes, kept.values())) <= 200_000
    big = random_problem(2, 3, 120, 120, 4, 3, 3, 1, 1, 1)  # more than the limit: not kept
    out, cache = conv2d_forward(*big[:3], 1, 1, 1)
    assert sum(map(_conv_fast._nbytes, _conv_fast._buffers.kept.values())) <= 200_000


@pytest.mark.parametrize("L", [7, 512, 1300])  # shorter than, one, and several sum pieces
def test_gemm_dots_is_a_product_with_shifted_runs(L):
    """out += a[:, :L] @ Bᵀ with B[k] = b[b_offs[k] : b_offs[k] + L], added to what out holds."""
    rng = np.random.default_rng(L)
    a = rng.standard_normal((8, L + 5))
    b = rng.standard_normal(L + 40)
    b_offs = rng.integers(0, 40, 12)
    out = rng.standard_normal((8, 12))
    want = out + a[:, :L] @ np.stack([b[o : o + L] for o in b_offs]).T
    _gemm_dots(a, L, b, b_offs, out)
    assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def _store_sum(src, out):  # _sum returns a scalar, which the wrapper turns into a Python float
    out[0] = _sum(src)


def test_float32_kernels_compute_in_float32():
    """No float64 arithmetic in the LLVM IR of a fresh serial compile for float32 arrays."""
    x, w, b, dout = (a.astype(np.float32) for a in random_problem(2, 2, 5, 5, 3, 3, 3, 1, 1, 1))
    xp, dxp = np.ones((2, 2, 7, 7), np.float32), np.zeros((2, 2, 7, 7), np.float32)
    plan = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation
    taps, flat = np.arange(4, dtype=np.uint64), np.ones(64, np.float32)
    cases = [
        (conv2d_forward_kernel, (xp, w, b, 1, 1, 1, 1, np.empty_like(dout))),
        (conv2d_dw_kernel, (dout, xp, 1, 1, 1, 1, np.empty_like(w), np.empty_like(b))),
        (conv2d_dx_kernel, (dout, w, 1, 1, 1, 1, dxp)),
        (_fast_forward_kernel, (*_forward_plan(x, w, b, *plan, np.empty_like(dout))[1], 0)),
        (_fast_backward_kernel, (*_backward_plan(dout, x, w, *plan, True)[1], 0)),
        (_gemm, (np.ones((5, 6), np.float32), np.ones((6, 16), np.float32),
                 np.zeros((5, 16), np.float32))),
        (_gemm_dots, (np.ones((4, 20), np.float32), 10, flat, np.arange(4),
                      np.zeros((4, 4), np.float32))),
        (_store_sum, (flat, np.empty(1, np.float32))),
        (_gather, (flat, np.arange(3), taps, np.empty((3, 4), np.float32))),
        (_gather_runs, (flat, np.arange(3), taps, 3, np.empty((3, 32), np.float32))),
        (_gather_row_runs, (flat, np.arange(3), 5, 2, 4, np.empty((3, 16), np.float32))),
    ]  # fmt: skip
    for kern, args in cases:
        assert float64_instructions(getattr(kern, "py_func", kern), *args) == [], kern.__name__


# ---- dtypes, conversions, NaN ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_float32_stays_float32(method):
    x, w, b, dout = random_problem(2, 3, 7, 6, 4, 3, 3, 2, 1, 1, dtype=np.float32)
    out, cache = conv2d_forward(x, w, b, stride=2, padding=1, method=method)
    assert out.dtype == np.float32
    dx, dw, db = conv2d_backward(dout, cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    assert_allclose(out, ref.conv2d(x, w, b, 2, 1), rtol=1e-4, atol=1e-4)
    for got, want in zip((dx, dw, db), ref.conv2d_backward(dout, x, w, 2, 1), strict=True):
        assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_uint8_images_are_converted_not_truncated(method):
    x = np.array([[[[0, 100, 200], [250, 255, 1], [7, 128, 64]]]], dtype=np.uint8)
    w = np.ones((1, 1, 2, 2), np.float32)
    out, _ = conv2d_forward(x, w, np.zeros(1, np.float32), method=method)
    assert out.dtype == np.float32
    assert_array_equal(out, [[[[605, 556], [640, 448]]]])  # 0+100+250+255 = 605 > 255
    out64, _ = conv2d_forward(x, np.ones((1, 1, 2, 2), int), [0], method=method)
    assert out64.dtype == np.float64
    assert_array_equal(out64, out)


@pytest.mark.parametrize("method", METHODS)
def test_nan_propagates(method):
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 0, 0] = np.nan
    out, cache = conv2d_forward(x, np.ones((2, 1, 2, 2)), np.zeros(2), method=method)
    assert np.isnan(out[:, :, 0, 0]).all()
    assert np.isfinite(out[:, :, 1:, :]).all() and np.isfinite(out[:, :, :, 1:]).all()
    dx, dw, db = conv2d_backward(np.ones(out.shape), cache)
    assert np.isnan(dw).any() and np.isfinite(dx).all() and np.isfinite(db).all()


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_input_and_unchanged_arguments(method):
    x, w, b, _ = random_problem(2, 3, 12, 6, 2, 3, 3, 1, 0, 1)
    x_view = x[:, :, ::2, :]  # (2, 3, 6, 6), not contiguous
    x_copy, w_copy = x.copy(), w.copy()
    out, _ = conv2d_forward(x_view, w, b, method=method)
    assert_allclose(out, ref.conv2d(x_view, w, b), rtol=1e-12, atol=1e-12)
    assert_array_equal(x, x_copy)
    assert_array_equal(w, w_copy)


# ---- output size and bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [((3, 2), 2), ((28, 5, 1, 2), 28), ((32, 3, 2, 1), 16), ((7, 3, 3), 2), ((8, 2, 3), 3),
     ((9, 3, 1, 0, 2), 5), ((5, 5), 1), ((1, 3, 1, 1), 1)],
)  # fmt: skip
def test_conv_output_size(args, expected):
    assert conv_output_size(*args) == expected == ref.conv_output_size(*args)


def test_conv_output_size_rejects_kernels_that_do_not_fit():
    with pytest.raises(
        ValueError,
        match=r"kernel \(5 with dilation 1 covers 5 pixels\) is larger "
        r"than the padded input \(3 pixels\); use a smaller kernel or more padding",
    ):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match=r"covers 5 pixels.*padded input \(4 pixels\)"):
        conv_output_size(4, 3, dilation=2)
    with pytest.raises(ValueError, match="stride must be at least 1"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be at least 0"):
        conv_output_size(8, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size must be an integer"):
        conv_output_size(8, 2.5)


def good_args():
    return np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(4)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"x": np.zeros((3, 5, 5))}, ValueError, r"x must have 4 dimensions .*x\[None\]"),
        ({"w": np.zeros((3, 3, 3))}, ValueError, r"w must have 4 dimensions \(F, C, KH, KW\)"),
        ({"w": np.zeros((4, 1, 3, 3))}, ValueError, "x has 3 channels but w expects 1"),
        ({"b": np.zeros(3)}, ValueError, r"b must have shape \(4,\), one bias per filter"),
        ({"b": np.zeros((4, 1))}, ValueError, r"b must have shape \(4,\)"),
        ({"stride": 0}, ValueError, "stride must be at least 1"),
        ({"stride": (1, 0)}, ValueError, r"stride\[1\] must be at least 1"),
        ({"stride": (1, 2, 3)}, ValueError, r"stride must be an int or an \(h, w\) pair"),
        ({"dilation": 0}, ValueError, "dilation must be at least 1"),
        ({"padding": -1}, ValueError, "padding must be at least 0"),
        ({"stride": 1.5}, TypeError, "stride must be an integer"),
        ({"padding": 1.0}, TypeError, "padding must be an integer"),
        ({"dilation": True}, TypeError, "dilation must be an integer"),
        ({"x": np.zeros((2, 3, 5, 5), complex)}, TypeError, "x is complex"),
        ({"w": np.full((4, 3, 3, 3), "a")}, TypeError, "w has dtype <U1, which is not numeric"),
        ({"b": None}, TypeError, "b is None"),
        (
            {"w": np.zeros((4, 3, 7, 3))},
            ValueError,
            r"kernel height \(7 with dilation 1 covers 7 pixels\) is larger than the padded input "
            r"height \(5 pixels\)",
        ),
        (
            {"dilation": (1, 3)},
            ValueError,
            r"kernel width \(3 with dilation 3 covers 7 pixels\) .* input width \(5 pixels\)",
        ),
        ({"method": "gpu"}, ValueError, r"method must be one of \('fast', 'readable'\)"),
    ],
)
def test_forward_rejects_bad_input(change, error, message):
    x, w, b = good_args()
    kwargs = {"x": x, "w": w, "b": b, **change}
    with pytest.raises(error, match=message):
        conv2d_forward(**kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_backward_rejects_bad_dout_and_cache(method):
    out, cache = conv2d_forward(*good_args(), method=method)
    with pytest.raises(
        ValueError,
        match=r"dout has shape \(2, 4, 3, 2\) but the output of "
        r"conv2d_forward had shape \(2, 4, 3, 3\)",
    ):
        conv2d_backward(np.zeros((2, 4, 3, 2)), cache)
    with pytest.raises(TypeError, match="dout is complex"):
        conv2d_backward(out.astype(complex), cache)
    with pytest.raises(TypeError, match="call conv2d_forward first"):
        conv2d_backward(out, None)
    with pytest.raises(TypeError, match="needs the cache returned by conv2d_forward, got tuple"):
        conv2d_backward(out, tuple(cache))
    assert isinstance(cache, Conv2dCache)


def test_read_only_input_compiles_no_second_kernel():
    """A read-only x (a widget's cached image) is another Numba type: it is copied instead."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w, b = rng.standard_normal((2, 2, 3, 3)).astype(np.float32), np.zeros(2, np.float32)
    want, _ = conv2d_forward(x, w, b)
    before = len(_fast_forward_kernel.signatures)
    x.setflags(write=False)
    w.setflags(write=False)
    got, cache = conv2d_forward(x, w, b)
    conv2d_backward(np.ones_like(got), cache)
    assert len(_fast_forward_kernel.signatures) == before
    assert all(sig[2].mutable for sig in _fast_backward_kernel.signatures)
    assert_array_equal(got, want)


def test_in_chunks_runs_every_chunk_once_and_the_others_on_worker_threads():
    import threading

    from cnnlib._conv_fast import _in_chunks

    seen = []

    def record(tag, t):
        seen.append((tag, t, threading.get_ident()))

    _in_chunks(record, 3, "a")
    assert sorted(t for _, t, _ in seen) == [0, 1, 2]
    by_chunk = {t: ident for _, t, ident in seen}
    assert by_chunk[0] == threading.get_ident()
    assert by_chunk[1] != threading.get_ident() and by_chunk[2] != threading.get_ident()
    seen.clear()
    _in_chunks(record, 1, "b")
    assert seen == [("b", 0, threading.get_ident())]


def test_in_chunks_hands_a_workers_error_to_the_caller_and_keeps_working():
    from cnnlib._conv_fast import _in_chunks

    def fail_in_chunk_1(t):
        if t == 1:
            raise ValueError("chunk 1")

    with pytest.raises(ValueError, match="chunk 1"):
        _in_chunks(fail_in_chunk_1, 2)
    done = []
    _in_chunks(lambda t: done.append(t), 2)  # the workers are free again
    assert sorted(done) == [0, 1]
