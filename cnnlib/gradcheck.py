"""Numerical gradients by central differences, to check any backward pass (notebook 05).

    ∂L/∂x_k ≈ (L(x + h·e_k) − L(x − h·e_k)) / (2h)

Use float64: in float32 the rounding error of L swamps the difference for any useful h.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to the array ``x``.

    ``f`` takes no arguments and reads ``x``; each element of ``x`` is perturbed in place by ±h
    and restored.  Returns an array of ``x``'s shape (float64).
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError("x must be a floating-point NumPy array that f() reads")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous so that it can be perturbed in place; "
                         "pass np.ascontiguousarray(x) and let f() read that array")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writing flat[k] perturbs x
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        plus = float(f())
        flat[k] = old - h
        minus = float(f())
        flat[k] = old
        gflat[k] = (plus - minus) / (2 * h)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖ / (‖a‖ + ‖b‖): 0 for equal arrays, about 1e-8 or less for a correct float64 check."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def check_gradients(forward: Callable, backward: Callable, *arrays: np.ndarray,
                    h: float = 1e-6, seed: int = 0, **hyper) -> list[float]:
    """Relative error of each analytic gradient of a functional layer, in argument order.

    ``forward(*arrays, **hyper) -> (out, cache)`` and ``backward(dout, cache)`` returning one
    gradient per array (a single array when there is one).  The loss is L = Σ out·dout for a
    random ``dout``, so ∂L/∂out = dout.
    """
    arrays = tuple(np.array(a, dtype=np.float64) for a in arrays)
    out, cache = forward(*arrays, **hyper)
    # a stream of its own, so that dout never equals test data drawn with the same seed
    dout = np.random.default_rng((seed, 1)).standard_normal(np.shape(out))
    grads = backward(dout, cache)
    grads = (grads,) if isinstance(grads, np.ndarray) else tuple(grads)

    def loss() -> float:
        return float(np.sum(forward(*arrays, **hyper)[0] * dout))

    pairs = zip(grads, arrays, strict=True)
    return [rel_error(g, numerical_gradient(loss, a, h)) for g, a in pairs]


def check_model_gradients(model, x: np.ndarray, labels: np.ndarray,
                          h: float = 1e-6) -> dict[str, float]:
    """Relative error of every parameter gradient and of ∂L/∂x for a ``Sequential`` model.

    L is the softmax cross-entropy of ``model.forward(x)``.  Keys are ``"<layer index>.<param>"``
    (e.g. ``"0.w"``) and ``"x"``.  Build the model with ``dtype=np.float64``.
    """
    from cnnlib.losses import softmax_cross_entropy

    x = np.array(x, dtype=np.float64)

    def loss() -> float:
        return softmax_cross_entropy(model.forward(x), labels)[0]

    _, dlogits = softmax_cross_entropy(model.forward(x), labels)
    dx = model.backward(dlogits)
    analytic = {f"{k}.{name}": layer.grads[name].copy()
                for k, layer in enumerate(model.layers) for name in layer.params}
    errors = {}
    for k, layer in enumerate(model.layers):
        for name, p in layer.params.items():
            errors[f"{k}.{name}"] = rel_error(analytic[f"{k}.{name}"],
                                              numerical_gradient(loss, p, h))
    errors["x"] = rel_error(dx, numerical_gradient(loss, x, h))
    return errors
