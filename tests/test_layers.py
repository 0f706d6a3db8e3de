import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import cnnlib.layers as L
from cnnlib import activations, conv, linear, norm, pool
from cnnlib.gradcheck import check_model_gradients, numerical_gradient, rel_error

F64 = np.float64


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- every layer is its functional pair --------------------------------------------------------
# (layer factory, forward taking (x, params), backward, names of the parameter gradients that
# follow dx in the backward's result, input shape)
CASES = {
    "Conv2d": (
        lambda dt: L.Conv2d(4, 3, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), rng=rng(),
                            dtype=dt),
        lambda x, p: conv.conv2d_forward(x, p["w"], p["b"], (2, 1), 1, (1, 2)),
        conv.conv2d_backward, ["w", "b"], (2, 4, 7, 6)),
    "MaxPool2d": (
        lambda dt: L.MaxPool2d(3, stride=2, padding=1),
        lambda x, p: pool.max_pool2d_forward(x, 3, 2, 1), pool.max_pool2d_backward, [],
        (2, 4, 7, 6)),
    "AvgPool2d": (
        lambda dt: L.AvgPool2d((2, 3), stride=(1, 2)),
        lambda x, p: pool.avg_pool2d_forward(x, (2, 3), (1, 2), 0), pool.avg_pool2d_backward, [],
        (2, 4, 7, 6)),
    "BatchNorm2d": (
        lambda dt: L.BatchNorm2d(4, eps=1e-3, dtype=dt),
        lambda x, p: norm.batch_norm_forward(x, p["gamma"], p["beta"], eps=1e-3),
        norm.batch_norm_backward, ["gamma", "beta"], (2, 4, 7, 6)),
    "LayerNorm2d": (
        lambda dt: L.LayerNorm2d(4, dtype=dt),
        lambda x, p: norm.layer_norm_forward(x, p["gamma"], p["beta"]),
        norm.layer_norm_backward, ["gamma", "beta"], (2, 4, 7, 6)),
    "GroupNorm": (
        lambda dt: L.GroupNorm(2, 4, eps=1e-4, dtype=dt),
        lambda x, p: norm.group_norm_forward(x, p["gamma"], p["beta"], 2, eps=1e-4),
        norm.group_norm_backward, ["gamma", "beta"], (2, 4, 7, 6)),
    "ReLU": (lambda dt: L.ReLU(), lambda x, p: activations.relu_forward(x),
             activations.relu_backward, [], (2, 4, 7, 6)),
    "LeakyReLU": (lambda dt: L.LeakyReLU(0.2), lambda x, p: activations.leaky_relu_forward(x, 0.2),
                  activations.leaky_relu_backward, [], (2, 4, 7, 6)),
    "ELU": (lambda dt: L.ELU(0.5), lambda x, p: activations.elu_forward(x, 0.5),
            activations.elu_backward, [], (2, 4, 7, 6)),
    "GELU": (lambda dt: L.GELU(), lambda x, p: activations.gelu_forward(x),
             activations.gelu_backward, [], (2, 4, 7, 6)),
    "Sigmoid": (lambda dt: L.Sigmoid(), lambda x, p: activations.sigmoid_forward(x),
                activations.sigmoid_backward, [], (2, 4, 7, 6)),
    "Tanh": (lambda dt: L.Tanh(), lambda x, p: activations.tanh_forward(x),
             activations.tanh_backward, [], (2, 4, 7, 6)),
    "Linear": (
        lambda dt: L.Linear(6, 5, rng=rng(), dtype=dt),
        lambda x, p: linear.linear_forward(x, p["w"], p["b"]),
        linear.linear_backward, ["w", "b"], (3, 6)),
}


def _random_params(layer, seed):
    """Give the norms non-trivial gamma/beta so that the comparison tests them."""
    for p in layer.params.values():
        p[...] = np.random.default_rng(seed).uniform(0.5, 1.5, p.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_equals_functional_pair(name, dtype):
    make, forward, backward, grad_names, shape = CASES[name]
    layer = make(dtype)
    _random_params(layer, 1)
    x = rng(2).standard_normal(shape).astype(dtype)
    out = layer.forward(x)
    expected, cache = forward(x, layer.params)
    assert out.dtype == dtype and out.shape == expected.shape
    assert_allclose(out, expected, rtol=1e-12, atol=0)

    dout = rng(3).standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    grads = backward(dout, cache)
    grads = (grads,) if isinstance(grads, np.ndarray) else grads
    assert dx.dtype == dtype
    assert_allclose(dx, grads[0], rtol=1e-12, atol=0)
    assert sorted(layer.grads) == sorted(layer.params) == sorted(grad_names)
    for key, g in zip(grad_names, grads[1:], strict=True):
        assert layer.grads[key].dtype == dtype
        assert_allclose(layer.grads[key], g, rtol=1e-12, atol=0)
    assert layer(x).shape == out.shape  # __call__ is forward


def test_flatten_reshapes_and_back():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    layer = L.Flatten()
    out = layer.forward(x)
    assert out.shape == (2, 60) and out.dtype == np.float32
    assert_array_equal(out[1], x[1].ravel())  # sample n's C·H·W values, channel by channel
    dout = np.arange(120.0, dtype=np.float32).reshape(2, 60)
    dx = layer.backward(dout)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert_array_equal(dx.reshape(2, 60), dout)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 59\).*\(2, 60\)"):
        layer.backward(dout[:, :59])
    with pytest.raises(ValueError, match="batch axis"):
        layer.forward(np.ones(3))


# ---- parameters: shapes, initialisation, dtype --------------------------------------------------


def test_parameter_shapes_and_zero_grads():
    c = L.Conv2d(3, 8, (5, 3))
    assert c.params["w"].shape == (8, 3, 5, 3) and c.params["b"].shape == (8,)
    lin = L.Linear(20, 7)
    assert lin.params["w"].shape == (7, 20) and lin.params["b"].shape == (7,)
    for layer in (L.BatchNorm2d(6), L.LayerNorm2d(6), L.GroupNorm(3, 6)):
        assert_array_equal(layer.params["gamma"], np.ones(6))
        assert_array_equal(layer.params["beta"], np.zeros(6))
    for layer in (c, lin):
        assert_array_equal(layer.params["b"], 0)
    for layer in (c, lin, L.GroupNorm(3, 6)):
        for key, p in layer.params.items():
            assert layer.grads[key].shape == p.shape
            assert not np.any(layer.grads[key])
    for layer in (L.ReLU(), L.MaxPool2d(2), L.Flatten()):
        assert layer.params == {} and layer.grads == {} and layer.num_parameters() == 0
    assert c.num_parameters() == 8 * 3 * 5 * 3 + 8


@pytest.mark.parametrize("layer, fan_in", [
    (L.Conv2d(64, 128, 3, rng=rng(0), dtype=F64), 64 * 9),
    (L.Linear(1000, 300, rng=rng(1), dtype=F64), 1000),
])
def test_he_normal_statistics(layer, fan_in):
    w = layer.params["w"]
    std = math.sqrt(2 / fan_in)
    n = w.size  # ≈ 7·10⁴ and 3·10⁵: the sample std is within ~0.5 % of the true one
    assert abs(w.std() / std - 1) < 0.02
    assert abs(w.mean()) < 4 * std / math.sqrt(n)
    # a normal distribution: about 68.3 % of the weights within one std
    assert abs(np.mean(np.abs(w) < std) - 0.6827) < 0.01


def test_seed_reproduces_weights():
    a = L.Conv2d(3, 4, 3, rng=rng(7))
    b = L.Conv2d(3, 4, 3, rng=rng(7))
    c = L.Conv2d(3, 4, 3, rng=rng(8))
    assert_array_equal(a.params["w"], b.params["w"])
    assert not np.allclose(a.params["w"], c.params["w"])
    a64 = L.Conv2d(3, 4, 3, rng=rng(7), dtype=F64)
    assert_array_equal(a.params["w"], a64.params["w"].astype(np.float32))
    # one generator shared by two layers gives them different weights
    g = rng(0)
    assert not np.allclose(L.Linear(4, 4, rng=g).params["w"], L.Linear(4, 4, rng=g).params["w"])
    # unseeded layers differ
    assert not np.array_equal(L.Linear(9, 9).params["w"], L.Linear(9, 9).params["w"])


def test_float32_is_the_default_and_is_kept_through_a_model():
    model = small_model(np.float32)
    for p, g in model.parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32
    x = rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    out = model.forward(x)
    assert out.dtype == np.float32
    dx = model.backward(np.ones_like(out))
    assert dx.dtype == np.float32
    for p, g in model.parameters():
        assert p.dtype == np.float32 and g.dtype == np.float32
    bn = model.layers[1]
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float32


def test_grads_are_overwritten_in_place_not_accumulated():
    layer = L.Linear(4, 3, rng=rng(), dtype=F64)
    x = rng(1).standard_normal((5, 4))
    dout = rng(2).standard_normal((5, 3))
    g_w = layer.grads["w"]
    layer.forward(x)
    layer.backward(dout)
    first = g_w.copy()
    layer.backward(dout)
    assert layer.grads["w"] is g_w  # the same array: an optimiser holding it sees new values
    assert_allclose(g_w, first, rtol=1e-15)  # not doubled
    assert_allclose(g_w, dout.T @ x, rtol=1e-12)
    layer.zero_grad()
    assert not np.any(g_w)


# ---- BatchNorm2d running statistics -------------------------------------------------------------


def test_batchnorm_running_stats_follow_pytorch_formula():
    bn = L.BatchNorm2d(3, momentum=0.2, dtype=F64)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(4):
        x = rng(step).normal(loc=step - 1.0, scale=1.0 + step, size=(5, 3, 4, 2))
        bn.forward(x)
        mean = x.mean(axis=(0, 2, 3))
        unbiased_var = x.var(axis=(0, 2, 3), ddof=1)  # n/(n − 1)·biased, n = 5·4·2
        running_mean = 0.8 * running_mean + 0.2 * mean
        running_var = 0.8 * running_var + 0.2 * unbiased_var
        assert_allclose(bn.running_mean, running_mean, rtol=1e-12)
        assert_allclose(bn.running_var, running_var, rtol=1e-12)


def test_batchnorm_hand_worked_running_stats():
    # one channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3
    bn = L.BatchNorm2d(1, dtype=F64)
    bn.forward(np.array([1.0, 2.0, 3.0, 6.0]).reshape(2, 1, 2, 1))
    assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 3.0], rtol=1e-14)
    assert_allclose(bn.running_var, [0.9 * 1 + 0.1 * 14 / 3], rtol=1e-14)


def test_batchnorm_eval_uses_running_stats_and_freezes_them():
    bn = L.BatchNorm2d(3, eps=1e-3, dtype=F64)
    for step in range(3):
        bn.forward(rng(step).normal(2.0, 3.0, size=(4, 3, 5, 5)))
    bn.params["gamma"][...] = [0.5, 1.5, -2.0]
    bn.params["beta"][...] = [0.1, -0.2, 0.3]
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    x = rng(9).standard_normal((2, 3, 4, 4))
    assert bn.eval() is bn and not bn.training
    out = bn.forward(x)
    c = (slice(None), None, None)
    expected = bn.params["gamma"][c] * (x - mean[c]) / np.sqrt(var[c] + 1e-3) + bn.params["beta"][c]
    assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    assert_array_equal(bn.running_mean, mean)
    assert_array_equal(bn.running_var, var)
    # a single image is fine in eval mode; training mode needs more than one value per channel
    assert bn.forward(x[:1, :, :1, :1]).shape == (1, 3, 1, 1)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.train().forward(x[:1, :, :1, :1])


def test_batchnorm_eval_backward_is_the_gradient_of_the_eval_forward():
    bn = L.BatchNorm2d(3, dtype=F64)
    bn.forward(rng(0).normal(1.0, 2.0, size=(4, 3, 5, 5)))
    bn.params["gamma"][...] = [0.5, 1.5, -2.0]
    bn.eval()
    x = rng(1).standard_normal((2, 3, 4, 3))
    dout = rng(2).standard_normal((2, 3, 4, 3))
    bn.forward(x)
    dx = bn.backward(dout)

    def loss():
        return float(np.sum(bn.forward(x) * dout))

    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-8
    analytic = {k: g.copy() for k, g in bn.grads.items()}
    for key, p in bn.params.items():
        assert rel_error(analytic[key], numerical_gradient(loss, p)) < 1e-8
    with pytest.raises(ValueError, match="dout has shape"):
        bn.backward(dout[:, :2])


# ---- gradients of whole models ------------------------------------------------------------------


def small_model(dtype, seed=0):
    g = rng(seed)
    return L.Sequential(
        L.Conv2d(1, 3, 3, padding=1, rng=g, dtype=dtype),
        L.BatchNorm2d(3, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(3, 4, 3, padding=1, rng=g, dtype=dtype),
        L.GroupNorm(2, 4, dtype=dtype),
        L.Tanh(),
        L.AvgPool2d(2),
        L.Flatten(),
        L.Linear(4 * 2 * 2, 5, rng=g, dtype=dtype),
    )


def smooth_model(dtype, seed=0):
    g = rng(seed)
    return L.Sequential(
        L.Conv2d(1, 3, 3, padding=1, rng=g, dtype=dtype),
        L.LayerNorm2d(3, dtype=dtype),
        L.ELU(),
        L.Conv2d(3, 4, 3, stride=2, padding=1, rng=g, dtype=dtype),
        L.GELU(),
        L.AvgPool2d(2),
        L.Flatten(),
        L.Linear(4 * 2 * 2, 8, rng=g, dtype=dtype),
        L.Sigmoid(),
        L.Linear(8, 8, rng=g, dtype=dtype),
        L.LeakyReLU(0.1),
        L.Linear(8, 5, rng=g, dtype=dtype),
    )


def _far_from_kinks(model, x, margin=1e-3):
    """The premise of a numerical gradient check: no ReLU input near 0, no max-pool window whose
    two largest values are nearly tied (h = 1e-6 moves activations by ~1e-6, far less)."""
    for layer in model.layers:
        if isinstance(layer, (L.ReLU, L.LeakyReLU)) and np.min(np.abs(x)) < margin:
            return False
        if isinstance(layer, L.MaxPool2d):
            N, C, H, W = x.shape  # kernel 2, stride 2, no padding in these models
            windows = x.reshape(N, C, H // 2, 2, W // 2, 2).transpose(0, 1, 2, 4, 3, 5)
            top2 = np.sort(windows.reshape(N, C, H // 2, W // 2, 4), axis=-1)[..., -2:]
            if np.min(top2[..., 1] - top2[..., 0]) < margin:
                return False
        x = layer.forward(x)
    return True


@pytest.mark.parametrize("make", [small_model, smooth_model])
def test_model_gradients_match_numerical(make):
    model = make(F64)
    # non-trivial gamma/beta so that their gradients are exercised
    for name, p, _ in model.named_parameters():
        if name.endswith(("gamma", "beta")):
            p[...] = rng(len(name)).uniform(0.5, 1.5, p.shape)
    # the first input (by seed) that keeps every ReLU input and max-pool tie 1e-3 away
    x = next(x for seed in range(50)
             if _far_from_kinks(model, x := rng(seed).standard_normal((2, 1, 8, 8))))
    labels = np.array([3, 1])
    errors = check_model_gradients(model, x, labels)
    assert set(errors) == {*model.params, "x"}
    if make is small_model:
        # Conv2d's bias followed by BatchNorm2d: the per-channel mean is subtracted again, so
        # ∂L/∂b = 0 exactly and its relative error compares rounding noise with rounding noise
        del errors["0.b"]
        model.backward(np.ones((2, 5)))
        assert np.max(np.abs(model.layers[0].grads["b"])) < 1e-12
    for key, err in errors.items():
        assert err <= 1e-6, (key, err)


def test_sequential_runs_forward_in_order_and_backward_in_reverse():
    calls = []

    class Record(L.Layer):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def forward(self, x):
            calls.append(("forward", self.tag))
            return x * self.tag

        def backward(self, dout):
            calls.append(("backward", self.tag))
            return dout * self.tag

    model = L.Sequential(Record(2), Record(3), Record(5))
    assert_array_equal(model.forward(np.ones(2)), 30)
    assert_array_equal(model.backward(np.ones(2)), 30)
    assert calls == [("forward", 2), ("forward", 3), ("forward", 5),
                     ("backward", 5), ("backward", 3), ("backward", 2)]


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_backward_without_input_grad_fills_the_same_grads(nested):
    model = small_model(np.float64)
    if nested:  # the first layer is itself a Sequential starting with a Conv2d
        model = L.Sequential(L.Sequential(*model.layers[:4]), *model.layers[4:])
    x = rng(5).standard_normal((4, 1, 8, 8))
    dout = rng(6).standard_normal(model.forward(x).shape)
    dx = model.backward(dout)
    full = {name: g.copy() for name, g in model.grads.items()}
    assert dx.shape == x.shape
    assert model.backward(dout, input_grad=False) is None
    for name, g in model.grads.items():
        assert_array_equal(g, full[name], err_msg=name)


def test_backward_without_input_grad_with_another_first_layer():
    model = L.Sequential(L.Flatten(), L.Linear(12, 3, rng=rng(), dtype=F64))
    x = rng(1).standard_normal((2, 3, 2, 2))
    dout = np.ones((2, 3))
    model.forward(x)
    assert model.backward(dout).shape == x.shape
    grads = {name: g.copy() for name, g in model.grads.items()}
    assert model.backward(dout, input_grad=False) is None
    for name, g in model.grads.items():
        assert_array_equal(g, grads[name])


def test_conv2d_backward_without_input_grad_returns_none():
    layer = L.Conv2d(2, 3, 3, padding=1, rng=rng(), dtype=F64)
    x = rng(1).standard_normal((2, 2, 5, 5))
    dout = rng(2).standard_normal(layer.forward(x).shape)
    dx = layer.backward(dout)
    dw = layer.grads["w"].copy()
    assert dx.shape == x.shape and layer.backward(dout, input_grad=False) is None
    assert_array_equal(layer.grads["w"], dw)


def test_sequential_parameters_share_the_layers_arrays():
    model = small_model(np.float32)
    names = [name for name, _, _ in model.named_parameters()]
    assert names == ["0.w", "0.b", "1.gamma", "1.beta", "4.w", "4.b", "5.gamma", "5.beta",
                     "9.w", "9.b"]
    assert model.params["4.w"] is model.layers[4].params["w"]
    assert model.grads["9.b"] is model.layers[9].grads["b"]
    pairs = list(model.parameters())
    assert len(pairs) == 10 and pairs[0][0] is model.layers[0].params["w"]
    assert model.num_parameters() == sum(p.size for p, _ in pairs)
    nested = L.Sequential(L.ReLU(), model)
    assert nested.params["1.9.w"] is model.layers[9].params["w"]
    assert len(model) == 10 and model[0] is model.layers[0] and list(model) == model.layers


def test_train_and_eval_are_recursive():
    inner = L.Sequential(L.BatchNorm2d(2), L.ReLU())
    model = L.Sequential(L.Conv2d(1, 2, 3), inner)
    assert model.eval() is model
    assert not any(layer.training for layer in [model, inner, *model.layers, *inner.layers])
    model.train()
    assert all(layer.training for layer in [model, inner, *model.layers, *inner.layers])


def test_repr_reads_like_pytorch():
    assert repr(L.Conv2d(1, 8, 5, padding=2)) == (
        "Conv2d(1, 8, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))")
    assert repr(L.Conv2d(3, 4, (3, 1), stride=2, dilation=2)) == (
        "Conv2d(3, 4, kernel_size=(3, 1), stride=(2, 2), dilation=(2, 2))")
    assert repr(L.MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(L.Linear(400, 10)) == "Linear(in_features=400, out_features=10)"
    assert repr(L.GroupNorm(2, 8)) == "GroupNorm(2, 8, eps=1e-05)"
    assert repr(L.ReLU()) == "ReLU()"
    assert repr(L.Sequential(L.Flatten(), L.Sequential(L.Tanh()))) == (
        "Sequential(\n  (0): Flatten()\n  (1): Sequential(\n    (0): Tanh()\n  )\n)")


# ---- errors a student will meet -----------------------------------------------------------------


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.Conv2d(0, 8, 3), ValueError, "in_channels must be at least 1"),
    (lambda: L.Conv2d(1, 8, 0), ValueError, "kernel_size must be at least 1"),
    (lambda: L.Conv2d(1, 8, 2.5), TypeError, "kernel_size must be an integer"),
    (lambda: L.Conv2d(1, 8, 3, stride=0), ValueError, "stride must be at least 1"),
    (lambda: L.Conv2d(1, 8, 3, padding=-1), ValueError, "padding must be at least 0"),
    (lambda: L.Conv2d(1, 8, (3, 3, 3)), ValueError, r"an int or an \(h, w\) pair"),
    (lambda: L.Conv2d(1, 8, 3, rng=0), TypeError, "numpy.random.Generator"),
    (lambda: L.Conv2d(1, 8, 3, dtype=np.int32), TypeError, "np.float32 or np.float64"),
    (lambda: L.Linear(10, 0), ValueError, "out_features must be at least 1"),
    (lambda: L.Linear(10.0, 2), TypeError, "in_features must be an integer"),
    (lambda: L.MaxPool2d(2, padding=2), ValueError, "more than half of kernel_size"),
    (lambda: L.AvgPool2d(0), ValueError, "kernel_size must be at least 1"),
    (lambda: L.BatchNorm2d(0), ValueError, "num_features must be at least 1"),
    (lambda: L.BatchNorm2d(4, momentum=1.5), ValueError, "momentum must be between 0 and 1"),
    (lambda: L.BatchNorm2d(4, eps=0), ValueError, "eps must be a finite number > 0"),
    (lambda: L.LayerNorm2d(4, eps=-1e-5), ValueError, "eps must be"),
    (lambda: L.GroupNorm(3, 8), ValueError, "num_groups=3 must divide num_channels=8"),
    (lambda: L.GroupNorm(0, 8), ValueError, "num_groups must be at least 1"),
    (lambda: L.LeakyReLU("0.1"), TypeError, "alpha must be a real number"),
    (lambda: L.ELU(float("nan")), ValueError, "alpha must be a finite number"),
    (lambda: L.Sequential(L.ReLU), TypeError, r"the class ReLU.*ReLU\(…\)"),
    (lambda: L.Sequential([L.ReLU()]), TypeError, r"Sequential\(\*layers\)"),
])
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("name", [*sorted(CASES), "Flatten", "BatchNorm2d eval", "Sequential"])
def test_backward_before_forward_is_a_clear_error(name):
    if name == "Flatten":
        layer = L.Flatten()
    elif name == "BatchNorm2d eval":
        layer = L.BatchNorm2d(2).eval()
    elif name == "Sequential":  # the last layer is the first to complain
        layer = L.Sequential(L.Linear(2, 2), L.Tanh())
    else:
        layer = CASES[name][0](np.float32)
    expected = "Tanh" if name == "Sequential" else type(layer).__name__
    with pytest.raises(RuntimeError, match=rf"{expected}.backward: call forward before backward"):
        layer.backward(np.ones((2, 2)))


def test_functional_errors_surface_with_the_layer_index():
    model = L.Sequential(L.Conv2d(1, 8, 3, padding=1), L.ReLU(), L.Flatten(), L.Linear(100, 10))
    x = np.zeros((2, 3, 10, 10), np.float32)
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\(1, 8.*\)\): x has 3 channels but "
                                         r"w expects 1"):
        model.forward(x)
    with pytest.raises(ValueError, match=r"layer 3 \(Linear.*\): x has 800 features but w "
                                         r"expects 100"):
        model.forward(x[:, :1])
    with pytest.raises(ValueError, match=r"layer 0 \(Linear.*\): x must have 2 dimensions.*"
                                         r"Flatten"):
        L.Sequential(L.Linear(4, 2)).forward(np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\) but x has 3 channels"):
        L.BatchNorm2d(2).forward(np.ones((2, 3, 2, 2)))


# ---- optional: against PyTorch (skipped when torch is not installed) ---------------------------


class TestAgainstTorch:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    @staticmethod
    def _backward_both(torch, layer, t_layer, x, dout):
        """Run both layers forward and backward on float64 copies; return (ours, theirs)."""
        tx = torch.tensor(x, requires_grad=True)
        t_out = t_layer(tx)
        t_out.backward(torch.tensor(dout))
        out = layer.forward(x)
        dx = layer.backward(dout)
        return (out, dx), (t_out.detach().numpy(), tx.grad.numpy())

    def test_conv2d(self, torch):
        layer = L.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), rng=rng(),
                         dtype=F64)
        layer.params["b"][...] = rng(1).standard_normal(5)
        t_layer = torch.nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                  dtype=torch.float64)
        with torch.no_grad():
            t_layer.weight.copy_(torch.tensor(layer.params["w"]))
            t_layer.bias.copy_(torch.tensor(layer.params["b"]))
        x = rng(2).standard_normal((2, 3, 9, 7))
        dout = rng(3).standard_normal((2, 5, 5, 5))
        (out, dx), (t_out, t_dx) = self._backward_both(torch, layer, t_layer, x, dout)
        assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
        assert_allclose(dx, t_dx, rtol=1e-10, atol=1e-12)
        assert_allclose(layer.grads["w"], t_layer.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        assert_allclose(layer.grads["b"], t_layer.bias.grad.numpy(), rtol=1e-10, atol=1e-12)

    def test_linear(self, torch):
        layer = L.Linear(6, 4, rng=rng(), dtype=F64)
        t_layer = torch.nn.Linear(6, 4, dtype=torch.float64)
        with torch.no_grad():
            t_layer.weight.copy_(torch.tensor(layer.params["w"]))
            t_layer.bias.copy_(torch.tensor(layer.params["b"]))
        x, dout = rng(1).standard_normal((3, 6)), rng(2).standard_normal((3, 4))
        (out, dx), (t_out, t_dx) = self._backward_both(torch, layer, t_layer, x, dout)
        assert_allclose(out, t_out, rtol=1e-12, atol=1e-14)
        assert_allclose(dx, t_dx, rtol=1e-12, atol=1e-14)
        assert_allclose(layer.grads["w"], t_layer.weight.grad.numpy(), rtol=1e-12)
        assert_allclose(layer.grads["b"], t_layer.bias.grad.numpy(), rtol=1e-12)

    def test_batchnorm2d_training_running_stats_and_eval(self, torch):
        bn = L.BatchNorm2d(3, eps=1e-4, momentum=0.3, dtype=F64)
        t_bn = torch.nn.BatchNorm2d(3, eps=1e-4, momentum=0.3, dtype=torch.float64)
        gamma = rng(0).uniform(0.5, 1.5, 3)
        bn.params["gamma"][...] = gamma
        with torch.no_grad():
            t_bn.weight.copy_(torch.tensor(gamma))
        for step in range(3):
            x = rng(step).normal(step, 2.0, size=(4, 3, 5, 3))
            dout = rng(10 + step).standard_normal(x.shape)
            t_bn.zero_grad()
            (out, dx), (t_out, t_dx) = self._backward_both(torch, bn, t_bn, x, dout)
            assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
            assert_allclose(dx, t_dx, rtol=1e-9, atol=1e-12)
            assert_allclose(bn.grads["gamma"], t_bn.weight.grad.numpy(), rtol=1e-10)
            assert_allclose(bn.grads["beta"], t_bn.bias.grad.numpy(), rtol=1e-10)
            assert_allclose(bn.running_mean, t_bn.running_mean.numpy(), rtol=1e-12)
            assert_allclose(bn.running_var, t_bn.running_var.numpy(), rtol=1e-12)
        bn.eval()
        t_bn.eval()
        t_bn.zero_grad()
        x, dout = rng(5).standard_normal((2, 3, 4, 4)), rng(6).standard_normal((2, 3, 4, 4))
        (out, dx), (t_out, t_dx) = self._backward_both(torch, bn, t_bn, x, dout)
        assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
        assert_allclose(dx, t_dx, rtol=1e-10, atol=1e-12)
        assert_allclose(bn.grads["gamma"], t_bn.weight.grad.numpy(), rtol=1e-10)
        assert_allclose(bn.grads["beta"], t_bn.bias.grad.numpy(), rtol=1e-10)

    def test_sgd_training_steps_on_a_small_cnn(self, torch):
        from cnnlib.losses import softmax_cross_entropy
        from cnnlib.optim import SGD

        model = L.Sequential(L.Conv2d(1, 3, 3, padding=1, rng=rng(), dtype=F64),
                             L.BatchNorm2d(3, dtype=F64), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                             L.Linear(3 * 3 * 3, 4, rng=rng(1), dtype=F64))
        nn = torch.nn
        t_model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)).double()
        t_params = [t_model[0].weight, t_model[0].bias, t_model[1].weight, t_model[1].bias,
                    t_model[5].weight, t_model[5].bias]
        with torch.no_grad():
            for (_, p, _), tp in zip(model.named_parameters(), t_params, strict=True):
                tp.copy_(torch.tensor(p))
        opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
        t_opt = torch.optim.SGD(t_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        x, y = rng(2).standard_normal((6, 1, 6, 6)), rng(3).integers(0, 4, 6)
        for _ in range(3):
            loss, dlogits = softmax_cross_entropy(model.forward(x), y)
            model.backward(dlogits)
            opt.step()
            t_opt.zero_grad()
            t_loss = nn.functional.cross_entropy(t_model(torch.tensor(x)), torch.tensor(y))
            t_loss.backward()
            t_opt.step()
            assert loss == pytest.approx(t_loss.item(), rel=1e-10)
        for (name, p, _), tp in zip(model.named_parameters(), t_params, strict=True):
            assert_allclose(p, tp.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
