"""The registry of forward/backward pairs: complete, and every pair's two methods agree.

The grid runs every pair with ``method="readable"`` and ``method="fast"`` on its sample, for
float32 and float64, and checks both methods' gradients numerically in float64, so each readable
kernel is tested against the fast one and against central differences without a test of its own.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import activations, conv, linear, norm, pool
from cnnlib.gradcheck import check_gradients
from cnnlib.registry import METHODS, PAIRS

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def test_every_public_pair_is_registered():
    found = {name.removesuffix("_forward")
             for module in (conv, pool, norm, linear, activations)
             for name in getattr(module, "__all__", dir(module))
             if name.endswith("_forward") and callable(getattr(module, name))
             and hasattr(module, name.removesuffix("_forward") + "_backward")}
    assert found == set(PAIRS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_readable_and_fast_give_the_same_outputs_and_gradients(name, dtype):
    pair = PAIRS[name]
    results = {}
    for method in METHODS:
        arrays, hyper = pair.sample(np.random.default_rng(1), np.dtype(dtype))
        out, cache = pair.forward(*arrays, **hyper, method=method)
        dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
        grads = pair.backward(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
        results[method] = (out, *grads)
    assert len(results["fast"]) == 1 + len(pair.grads)
    for fast, readable in zip(results["fast"], results["readable"], strict=True):
        assert_allclose(fast, readable, **TOL[dtype])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_gradients_match_central_differences(name, method):
    pair = PAIRS[name]
    arrays, hyper = pair.sample(np.random.default_rng(3), np.dtype(np.float64))
    errors = check_gradients(pair.forward, pair.backward, *arrays, method=method, **hyper)
    assert len(errors) == len(pair.grads)
    assert max(errors) < 1e-6, dict(zip(pair.grads, errors, strict=True))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_an_unknown_method_is_refused(name):
    pair = PAIRS[name]
    arrays, hyper = pair.sample(np.random.default_rng(0), np.dtype(np.float64))
    with pytest.raises(ValueError, match="method must be one of"):
        pair.forward(*arrays, **hyper, method="quick")
