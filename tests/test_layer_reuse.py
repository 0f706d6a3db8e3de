"""A layer object used more than once: gradients summed over its uses, parameters listed once.

The PyTorch comparisons build the same computation with shared modules and compare float64
gradients to 1e-10; they skip when PyTorch is not installed.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import cnnlib.layers as L
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD

F64 = np.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def rng(seed=0):
    return np.random.default_rng(seed)


def shared_relu_model():
    act = L.ReLU()
    c1 = L.Conv2d(2, 3, 3, padding=1, rng=rng(1), dtype=F64)
    c2 = L.Conv2d(3, 4, 3, padding=1, rng=rng(2), dtype=F64)
    return L.Sequential(c1, act, c2, act), (c1, c2)


def tied_linear_model():
    lin = L.Linear(5, 5, rng=rng(3), dtype=F64)
    lin.params["b"][...] = rng(4).standard_normal(5)
    return L.Sequential(lin, L.Tanh(), lin), lin


def test_a_shared_activation_gives_the_gradients_of_two_separate_ones():
    model, (c1, c2) = shared_relu_model()
    twin = L.Sequential(c1, L.ReLU(), c2, L.ReLU())  # same convs, one ReLU object per use
    x = rng(5).standard_normal((2, 2, 6, 6))
    dout = rng(6).standard_normal((2, 4, 6, 6))
    out = model.forward(x)
    dx = model.backward(dout)
    grads = {k: g.copy() for k, g in model.grads.items()}
    assert_array_equal(twin.forward(x), out)
    assert_allclose(twin.backward(dout), dx, **TOL)
    for k, g in twin.grads.items():
        assert_allclose(grads[k], g, **TOL)


def test_tied_weights_sum_the_gradients_of_both_uses():
    model, lin = tied_linear_model()
    x = rng(7).standard_normal((3, 5))
    dout = rng(8).standard_normal((3, 5))
    w, b = lin.params["w"], lin.params["b"]
    h = x @ w.T + b
    a = np.tanh(h)
    # by hand: y = a @ w.T + b, a = tanh(x @ w.T + b)
    da = dout @ w
    dh = da * (1 - a**2)
    expected_dw = dout.T @ a + dh.T @ x
    expected_db = dout.sum(0) + dh.sum(0)
    model.forward(x)
    dx = model.backward(dout)
    assert_allclose(lin.grads["w"], expected_dw, **TOL)
    assert_allclose(lin.grads["b"], expected_db, **TOL)
    assert_allclose(dx, dh @ w, **TOL)


def test_parameters_lists_a_shared_array_once_and_sgd_updates_it_once():
    model, lin = tied_linear_model()
    assert list(model.params) == ["0.w", "0.b"]
    assert len(list(model.parameters())) == 2
    assert model.num_parameters() == 30
    x, y = rng(9).standard_normal((4, 5)), np.array([0, 1, 2, 3])
    _, dlogits = softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    before, grad = lin.params["w"].copy(), lin.grads["w"].copy()
    SGD(model, lr=0.1).step()
    assert_allclose(lin.params["w"], before - 0.1 * grad, **TOL)


def test_a_layer_called_twice_before_backward_sums_both_uses():
    lin = L.Linear(4, 4, rng=rng(10), dtype=F64)
    x1, x2 = rng(11).standard_normal((2, 4)), rng(12).standard_normal((3, 4))
    d1, d2 = rng(13).standard_normal((2, 4)), rng(14).standard_normal((3, 4))
    lin.forward(x1)
    lin.forward(x2)
    assert_allclose(lin.backward(d2), d2 @ lin.params["w"], **TOL)  # the latest use first
    assert_allclose(lin.backward(d1), d1 @ lin.params["w"], **TOL)
    assert_allclose(lin.grads["w"], d1.T @ x1 + d2.T @ x2, **TOL)
    assert_allclose(lin.grads["b"], d1.sum(0) + d2.sum(0), **TOL)


def test_a_repeated_backward_pass_gives_the_same_gradients_again():
    model, _ = shared_relu_model()
    x = rng(15).standard_normal((2, 2, 5, 5))
    dout = rng(16).standard_normal((2, 4, 5, 5))
    model.forward(x)
    dx1 = model.backward(dout)
    first = {k: g.copy() for k, g in model.grads.items()}
    dx2 = model.backward(dout)
    assert_array_equal(dx1, dx2)
    for k, g in model.grads.items():
        assert_array_equal(first[k], g)


def test_a_new_forward_pass_starts_again_from_one_use():
    lin = L.Linear(3, 2, rng=rng(17), dtype=F64)
    x = rng(18).standard_normal((2, 3))
    d = np.ones((2, 2))
    for _ in range(3):  # forward, backward, forward, backward … never accumulates across steps
        lin.forward(x)
        lin.backward(d)
    assert_allclose(lin.grads["w"], d.T @ x, **TOL)


def test_a_model_used_twice_inside_another_sums_both_passes():
    block = L.Sequential(L.Linear(4, 4, rng=rng(19), dtype=F64), L.Tanh())
    model = L.Sequential(block, block)
    x = rng(20).standard_normal((2, 4))
    dout = rng(21).standard_normal((2, 4))
    model.forward(x)
    model.backward(dout)
    w, b = block[0].params["w"], block[0].params["b"]
    a1 = np.tanh(x @ w.T + b)
    a2 = np.tanh(a1 @ w.T + b)
    dh2 = dout * (1 - a2**2)
    dh1 = (dh2 @ w) * (1 - a1**2)
    assert_allclose(block[0].grads["w"], dh2.T @ a1 + dh1.T @ x, **TOL)


def test_more_uses_than_a_layer_remembers_raise_instead_of_a_wrong_gradient():
    relu = L.ReLU()
    x = np.ones((1, 3))
    for _ in range(L.MAX_USES + 1):  # e.g. a plotting loop that never calls backward
        relu.forward(x)
    for _ in range(L.MAX_USES):
        relu.backward(x)
    with pytest.raises(RuntimeError, match="remember"):
        relu.backward(x)


def test_backward_before_forward_still_says_so():
    with pytest.raises(RuntimeError, match="call forward before backward"):
        L.ReLU().backward(np.ones(3))


def test_backward_params_skips_the_input_gradient_of_a_shared_first_layer():
    model, lin = tied_linear_model()
    x = rng(22).standard_normal((2, 5))
    dout = rng(23).standard_normal((2, 5))
    model.forward(x)
    dx = model.backward(dout)
    full = lin.grads["w"].copy()
    model.forward(x)
    assert model.backward(dout, input_grad=False) is None
    assert_allclose(lin.grads["w"], full, **TOL)
    assert dx is not None


# ---- against PyTorch -------------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_shared_activation_matches_pytorch(torch):
    model, (c1, c2) = shared_relu_model()
    t_act = torch.nn.ReLU()
    t_c1, t_c2 = (torch.nn.Conv2d(i, o, 3, padding=1).double() for i, o in ((2, 3), (3, 4)))
    with torch.no_grad():
        for t, c in ((t_c1, c1), (t_c2, c2)):
            t.weight.copy_(torch.tensor(c.params["w"]))
            t.bias.copy_(torch.tensor(c.params["b"]))
    t_model = torch.nn.Sequential(t_c1, t_act, t_c2, t_act)
    x = rng(24).standard_normal((2, 2, 6, 6))
    dout = rng(25).standard_normal((2, 4, 6, 6))
    tx = torch.tensor(x, requires_grad=True)
    t_model(tx).backward(torch.tensor(dout))
    model.forward(x)
    assert_allclose(model.backward(dout), tx.grad.numpy(), **TOL)
    for c, t in ((c1, t_c1), (c2, t_c2)):
        assert_allclose(c.grads["w"], t.weight.grad.numpy(), **TOL)
        assert_allclose(c.grads["b"], t.bias.grad.numpy(), **TOL)


def test_weight_tying_matches_pytorch(torch):
    model, lin = tied_linear_model()
    t_lin = torch.nn.Linear(5, 5).double()
    with torch.no_grad():
        t_lin.weight.copy_(torch.tensor(lin.params["w"]))
        t_lin.bias.copy_(torch.tensor(lin.params["b"]))
    t_model = torch.nn.Sequential(t_lin, torch.nn.Tanh(), t_lin)
    assert len(list(t_model.parameters())) == len(list(model.parameters())) == 2
    x = rng(26).standard_normal((3, 5))
    dout = rng(27).standard_normal((3, 5))
    tx = torch.tensor(x, requires_grad=True)
    t_model(tx).backward(torch.tensor(dout))
    model.forward(x)
    assert_allclose(model.backward(dout), tx.grad.numpy(), **TOL)
    assert_allclose(lin.grads["w"], t_lin.weight.grad.numpy(), **TOL)
    assert_allclose(lin.grads["b"], t_lin.bias.grad.numpy(), **TOL)
