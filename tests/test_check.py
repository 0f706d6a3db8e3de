"""The shared argument checks: every public function relies on these messages."""

import numpy as np
import pytest

from cnnlib import _check


def test_float_dtype_rules():
    f32, f64 = np.zeros(1, np.float32), np.zeros(1)
    assert _check.float_dtype(f32) == np.float32
    assert _check.float_dtype(f32, f64) == np.float64
    assert _check.float_dtype(np.zeros(1, np.uint8)) == np.float64
    assert _check.float_dtype(np.zeros(1, np.uint8), f32) == np.float32
    assert _check.float_dtype(np.zeros(1, np.float16)) == np.float32


def test_as_float_array_converts_integers_without_truncating():
    img = np.array([[0, 128, 255]], dtype=np.uint8)
    out = _check.as_float_array(img, "x")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0.0, 128.0, 255.0]])
    assert _check.as_float_array([[1.5, 2]], "x").flags.c_contiguous


@pytest.mark.parametrize("bad, match", [
    (np.array([1 + 2j]), "complex"),
    (np.array(["a"]), "not numeric"),
    (None, "None"),
])
def test_as_float_array_rejects(bad, match):
    with pytest.raises(TypeError, match=match):
        _check.as_float_array(bad, "x")


def test_check_ndim_hints_at_the_batch_axis():
    with pytest.raises(ValueError, match=r"x\[None\]"):
        _check.check_ndim(np.zeros((3, 4, 4)), 4, "x", "(N, C, H, W)")
    with pytest.raises(ValueError, match=r"x\[None, None\]"):
        _check.check_ndim(np.zeros((4, 4)), 4, "x", "(N, C, H, W)")


def test_as_pair_and_as_int():
    assert _check.as_pair(2, "stride", 1) == (2, 2)
    assert _check.as_pair((1, 3), "stride", 1) == (1, 3)
    assert _check.as_pair(np.int64(2), "stride", 1) == (2, 2)
    with pytest.raises(TypeError, match="integer"):
        _check.as_pair(1.5, "stride", 1)
    with pytest.raises(TypeError, match="integer"):
        _check.as_int(True, "stride")
    with pytest.raises(ValueError, match="at least 1"):
        _check.as_pair((1, 0), "stride", 1)
    with pytest.raises(ValueError, match="pair"):
        _check.as_pair((1, 2, 3), "stride", 1)


def test_as_positive_float():
    assert _check.as_positive_float(0.1, "lr") == 0.1
    assert _check.as_positive_float(0, "momentum", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="> 0"):
        _check.as_positive_float(-1, "lr")
    with pytest.raises(TypeError, match="real number"):
        _check.as_positive_float("0.1", "lr")


def test_check_cache_and_dout():
    with pytest.raises(TypeError, match="call conv2d_forward first"):
        _check.check_cache(None, tuple, "conv2d")
    with pytest.raises(ValueError, match="same shape as the forward output"):
        _check.check_dout(np.zeros((2, 3)), (2, 4), np.dtype(np.float32), "linear")
    out = _check.check_dout(np.zeros((2, 4)), (2, 4), np.dtype(np.float32), "linear")
    assert out.dtype == np.float32
