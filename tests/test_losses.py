"""Softmax and softmax cross-entropy: hand-worked values, the reference, gradients, bad labels."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference as R
from cnnlib.gradcheck import numerical_gradient, rel_error
from cnnlib.losses import softmax, softmax_cross_entropy

# (N, C): batch of 1, two classes, ten classes, a larger batch
SIZES = [(1, 2), (1, 10), (5, 3), (64, 10)]


def random_problem(n, c, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((n, c)), rng.integers(0, c, size=n)


# --- softmax ----------------------------------------------------------------------------------


def test_softmax_hand_example():
    e = [math.exp(1), math.exp(2), math.exp(3)]
    want = [v / sum(e) for v in e]  # 0.0900, 0.2447, 0.6652
    assert_allclose(softmax([1, 2, 3]), want, rtol=1e-15)
    assert_allclose(softmax([[1, 2, 3], [0, 0, 0]]), [want, [1 / 3] * 3], rtol=1e-15)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_softmax_matches_reference_and_rows_sum_to_one(size):
    logits, _ = random_problem(*size)
    probs = softmax(logits)
    assert_allclose(probs, R.softmax(logits), rtol=1e-13, atol=1e-16)
    assert_allclose(probs.sum(axis=1), 1, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_huge_logits_is_finite_and_shift_invariant(dtype):
    logits = np.array([[1000, 999, -1000], [-1e30, 0, 1e30]], dtype=dtype)
    probs = softmax(logits)
    assert probs.dtype == dtype
    e = math.exp(-1)
    assert_allclose(probs, [[1 / (1 + e), e / (1 + e), 0], [0, 0, 1]], rtol=1e-6)
    small = np.array([[1.0, 2.0, 3.0]], dtype=dtype)
    assert_allclose(softmax(small + 500), softmax(small), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_logits_and_the_callers_array_untouched(dtype):
    logits, labels = random_problem(12, 7, seed=1)
    wide = np.asfortranarray(np.repeat(logits, 2, axis=1).astype(dtype))[:, ::2]  # a view
    before = wide.copy()
    probs = softmax(wide)
    loss, dlogits = softmax_cross_entropy(wide, labels)
    assert probs.dtype == dlogits.dtype == dtype and probs.flags.c_contiguous
    assert_allclose(probs, R.softmax(logits), rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert loss == pytest.approx(R.softmax_cross_entropy(logits, labels)[0], rel=1e-5)
    assert np.array_equal(wide, before)


def test_softmax_nan_stays_in_its_row_and_integers_are_converted():
    probs = softmax(np.array([[np.nan, 1.0], [1.0, 1.0]]))
    assert np.isnan(probs[0]).all()
    assert_allclose(probs[1], [0.5, 0.5])
    assert softmax(np.array([[1, 1]], dtype=np.int32)).dtype == np.float64


def test_softmax_bad_input():
    with pytest.raises(ValueError, match=r"shape \(N, C\) or \(C,\).*\(1, 2, 3\)"):
        softmax(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="no classes"):
        softmax(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="logits is complex"):
        softmax(np.zeros(3, complex))


# --- softmax cross-entropy --------------------------------------------------------------------


@pytest.mark.parametrize("c", [2, 10])
def test_uniform_logits_give_log_c(c):
    loss, dlogits = softmax_cross_entropy(np.zeros((4, c)), [0, 1, 1, 0])
    assert isinstance(loss, float)
    assert loss == pytest.approx(math.log(c), rel=1e-15)
    want = np.full((4, c), 1 / c)
    want[[0, 1, 2, 3], [0, 1, 1, 0]] -= 1
    assert_allclose(dlogits, want / 4, rtol=1e-14)  # (p − onehot) / N


def test_cross_entropy_hand_example():
    loss, dlogits = softmax_cross_entropy([[2.0, 1.0, 0.0]], [0])
    total = math.exp(2) + math.exp(1) + 1
    assert loss == pytest.approx(math.log(total) - 2, rel=1e-15)  # −log p_0 = 0.4076…
    want = [math.exp(2) / total - 1, math.exp(1) / total, 1 / total]
    assert_allclose(dlogits, [want], rtol=1e-14)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_cross_entropy_matches_reference(size):
    logits, labels = random_problem(*size, seed=2)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    ref_loss, ref_dlogits = R.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    assert_allclose(dlogits, ref_dlogits, rtol=1e-13, atol=1e-17)
    assert_allclose(dlogits.sum(axis=1), 0, atol=1e-15)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_cross_entropy_gradient_matches_numerical(size):
    logits, labels = random_problem(*size, seed=3, scale=1.0)  # no vanishing gradients
    _, dlogits = softmax_cross_entropy(logits, labels)
    numerical = numerical_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    assert rel_error(dlogits, numerical) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_huge_logits_is_finite(dtype):
    loss, dlogits = softmax_cross_entropy(np.array([[1000, 0, -1000]], dtype=dtype), [2])
    assert loss == pytest.approx(2000, rel=1e-6)
    assert dlogits.dtype == dtype
    assert_allclose(dlogits, [[1, 0, -1]], atol=1e-7)
    # equal huge logits: log 2, which (m + log 2) − z_y would round away
    loss, _ = softmax_cross_entropy(np.array([[1e30, 1e30]], dtype=dtype), [0])
    assert loss == pytest.approx(math.log(2), rel=1e-6)


def test_cross_entropy_float32_matches_reference():
    logits, labels = random_problem(8, 10, seed=4)
    loss, dlogits = softmax_cross_entropy(logits.astype(np.float32), labels)
    ref_loss, ref_dlogits = R.softmax_cross_entropy(logits.astype(np.float32), labels)
    assert isinstance(loss, float) and dlogits.dtype == np.float32
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(dlogits, ref_dlogits, rtol=1e-5, atol=1e-7)


def test_label_types_accepted():
    logits = np.zeros((3, 4))
    for labels in ([0, 1, 3], np.array([0, 1, 3], np.uint8), np.array([0, 1, 3], np.int32)):
        assert softmax_cross_entropy(logits, labels)[0] == pytest.approx(math.log(4))
    loss, dlogits = softmax_cross_entropy(np.array([[1, 1]], dtype=np.int64), [1])
    assert loss == pytest.approx(math.log(2)) and dlogits.dtype == np.float64


def test_bad_labels():
    logits = np.zeros((5, 10))
    with pytest.raises(ValueError, match=r"must be integers in \[0, 10\); got 10 at index 3"):
        softmax_cross_entropy(logits, [0, 1, 2, 10, 4])
    with pytest.raises(ValueError, match=r"in \[0, 10\); got -1 at index 0"):
        softmax_cross_entropy(logits, [-1, 1, 2, 3, 4])
    with pytest.raises(TypeError, match=r"got dtype float64; .*labels\.astype\(np\.int64\)"):
        softmax_cross_entropy(logits, [0.0, 1.0, 2.0, 3.0, 4.0])
    with pytest.raises(TypeError, match="got dtype bool"):
        softmax_cross_entropy(logits[:, :2], [True, False, True, False, True])
    with pytest.raises(ValueError, match="got 4 labels for 5 rows of logits"):
        softmax_cross_entropy(logits, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"one-hot.*labels\.argmax\(axis=1\)"):
        softmax_cross_entropy(logits, np.eye(10)[:5])
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(5,\)"):
        softmax_cross_entropy(logits, np.zeros((5, 1), int))
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        softmax_cross_entropy(logits, list("abcde"))


def test_bad_logits():
    with pytest.raises(ValueError, match=r"\(N, C\).*use logits\[None\]"):
        softmax_cross_entropy(np.zeros(10), [3])
    with pytest.raises(ValueError, match=r"shape \(0, 10\); the loss needs N ≥ 1"):
        softmax_cross_entropy(np.zeros((0, 10)), np.zeros(0, int))
    with pytest.raises(TypeError, match="logits has dtype <U1, which is not numeric"):
        softmax_cross_entropy(np.array([["a", "b"]]), [0])
