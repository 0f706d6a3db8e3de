import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import cnnlib.layers as L
from cnnlib.optim import SGD, CosineAnnealingLR, StepLR


def one_parameter(value, grad):
    return np.array([value]), np.array([grad])


# ---- hand-worked steps (p = 1, grad = 0.5 on both steps, lr = 0.1) --------------------------


def test_plain_sgd_is_the_lecture_update():
    p, g = one_parameter(1.0, 0.5)
    opt = SGD([(p, g)], lr=0.1)
    opt.step()
    assert_allclose(p, [0.95], rtol=1e-15)  # W ← W − η·∂L/∂W = 1 − 0.1·0.5
    opt.step()
    assert_allclose(p, [0.90], rtol=1e-15)
    assert opt.velocity == [None]  # no momentum buffer without momentum


def test_momentum_by_hand():
    p, g = one_parameter(1.0, 0.5)
    opt = SGD([(p, g)], lr=0.1, momentum=0.9)
    opt.step()  # v = g = 0.5 (first step), p = 1 − 0.1·0.5 = 0.95
    assert_allclose(opt.velocity[0], [0.5], rtol=1e-15)
    assert_allclose(p, [0.95], rtol=1e-15)
    opt.step()  # v = 0.9·0.5 + 0.5 = 0.95, p = 0.95 − 0.1·0.95 = 0.855
    assert_allclose(opt.velocity[0], [0.95], rtol=1e-15)
    assert_allclose(p, [0.855], rtol=1e-15)


def test_momentum_and_weight_decay_by_hand():
    p, g = one_parameter(1.0, 0.5)
    opt = SGD([(p, g)], lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.step()  # g' = 0.5 + 0.1·1 = 0.6, v = 0.6, p = 1 − 0.06 = 0.94
    assert_allclose(p, [0.94], rtol=1e-15)
    opt.step()  # g' = 0.5 + 0.1·0.94 = 0.594, v = 0.9·0.6 + 0.594 = 1.134, p = 0.94 − 0.1134
    assert_allclose(opt.velocity[0], [1.134], rtol=1e-14)
    assert_allclose(p, [0.8266], rtol=1e-14)


def test_matches_pytorch_formula_over_many_steps():
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [np.zeros_like(p) for p in params]
    lr, mu, wd = 0.05, 0.8, 1e-2
    expected = [p.copy() for p in params]
    bufs = [None, None]
    opt = SGD(list(zip(params, grads, strict=True)), lr=lr, momentum=mu, weight_decay=wd)
    for _ in range(6):
        for k, g in enumerate(grads):
            g[...] = rng.standard_normal(g.shape)
            # torch.optim.SGD (dampening 0, no Nesterov), written out
            d_p = g + wd * expected[k]
            bufs[k] = d_p.copy() if bufs[k] is None else mu * bufs[k] + d_p
            expected[k] = expected[k] - lr * bufs[k]
        opt.step()
        for p, e in zip(params, expected, strict=True):
            assert_allclose(p, e, rtol=1e-13, atol=1e-15)


# ---- in place, zero_grad, models ---------------------------------------------------------------


def test_updates_the_layers_arrays_in_place():
    layer = L.Linear(3, 2, rng=np.random.default_rng(0))
    w = layer.params["w"]
    before = w.copy()
    x = np.ones((4, 3), np.float32)
    opt = SGD(layer, lr=0.5)
    layer.forward(x)
    layer.backward(np.ones((4, 2), np.float32))
    opt.step()
    assert layer.params["w"] is w and w.dtype == np.float32
    assert_allclose(w, before - 0.5 * 4.0, rtol=1e-6)  # dw = doutᵀ·x = 4 everywhere
    assert_allclose(layer.forward(x)[0], (x @ w.T + layer.params["b"])[0], rtol=1e-6)


def test_zero_grad_clears_every_gradient():
    model = L.Sequential(L.Conv2d(1, 2, 3, rng=np.random.default_rng(0)), L.BatchNorm2d(2),
                         L.Flatten(), L.Linear(2 * 3 * 3, 4, rng=np.random.default_rng(1)))
    opt = SGD(model, lr=0.1, momentum=0.9)
    assert len(opt.params) == 6  # conv w, b; bn gamma, beta; linear w, b
    grads = [g for _, g in model.parameters()]
    out = model.forward(np.random.default_rng(2).standard_normal((2, 1, 5, 5)))
    model.backward(np.random.default_rng(3).standard_normal(out.shape))
    assert all(np.any(g) for g in grads)
    opt.zero_grad()
    for g, (_, held) in zip(grads, opt.params, strict=True):
        assert held is g
        assert_array_equal(g, 0)


def test_a_step_lowers_the_loss():
    from cnnlib.losses import softmax_cross_entropy

    rng = np.random.default_rng(0)
    model = L.Sequential(L.Flatten(), L.Linear(12, 3, rng=rng, dtype=np.float64))
    x, y = rng.standard_normal((8, 3, 2, 2)), rng.integers(0, 3, 8)
    opt = SGD(model, lr=0.1)
    loss0, dlogits = softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    opt.step()
    assert softmax_cross_entropy(model.forward(x), y)[0] < loss0


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -0.1}, "lr must be a finite number >= 0"),
    ({"lr": 0.1, "momentum": -0.5}, "momentum must be a finite number >= 0"),
    ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
    ({"lr": float("inf")}, "lr must be a finite number"),
])
def test_negative_hyperparameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([one_parameter(1.0, 0.5)], **kwargs)


def test_bad_parameter_lists_are_rejected():
    with pytest.raises(ValueError, match="no parameters"):
        SGD(L.Sequential(L.ReLU(), L.Flatten()), lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(2,\) but its grad has \(3,\)"):
        SGD([(np.zeros(2), np.zeros(3))], lr=0.1)
    with pytest.raises(TypeError, match=r"\(param, grad\) pair"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="float arrays only"):
        SGD([(np.zeros(2, int), np.zeros(2, int))], lr=0.1)
    with pytest.raises(TypeError, match="needs a model"):
        SGD(3.0, lr=0.1)


# ---- learning-rate schedules -----------------------------------------------------------------


def test_step_lr():
    opt = SGD([one_parameter(1.0, 0.0)], lr=0.1)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.step() for _ in range(5)]  # epochs 1..5
    assert_allclose(lrs, [0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-15)
    assert opt.lr == lrs[-1]


def test_cosine_annealing_lr():
    opt = SGD([one_parameter(1.0, 0.0)], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=4, eta_min=0.01)
    lrs = [sched.step() for _ in range(6)]
    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4, 4, 4)]
    assert_allclose(lrs, expected, rtol=1e-14)
    assert_allclose(lrs[1], 0.055, rtol=1e-14)  # half way: the mean of 0.1 and 0.01
    assert opt.lr == lrs[-1] == pytest.approx(0.01)


# ---- optional: against PyTorch -----------------------------------------------------------------


def test_sgd_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((4, 3))
    p, g = p0.copy(), np.zeros_like(p0)
    opt = SGD([(p, g)], lr=0.05, momentum=0.9, weight_decay=1e-3)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(5):
        g[...] = rng.standard_normal(g.shape)
        tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_schedules_are_functions_of_progress_equal_to_their_steps():
    for make in (lambda o: StepLR(o, step_size=2, gamma=0.5),
                 lambda o: CosineAnnealingLR(o, T_max=4, eta_min=0.01)):
        opt = SGD([(np.zeros(1), np.zeros(1))], lr=0.1)
        sched = make(opt)
        by_step = [sched.step() for _ in range(6)]
        assert [sched(t) for t in range(1, 7)] == by_step
        assert sched(2.7) == sched(2)  # constant within an epoch
