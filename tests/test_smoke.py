"""End-to-end sanity checks of the pipeline: layers + loss + SGD, as notebook 06 uses them."""

import math

import numpy as np

import cnnlib.layers as L
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD


def mnist_sized_cnn(rng, n_classes=10):
    return L.Sequential(
        L.Conv2d(1, 8, 3, padding=1, rng=rng), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(8, 16, 3, padding=1, rng=rng), L.BatchNorm2d(16), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(16 * 7 * 7, n_classes, rng=rng),
    )


def test_initial_loss_is_about_ln10():
    """With near-uniform predictions the cross-entropy of 10 classes is −log(1/10) = ln 10.

    He initialisation keeps the activations' scale from layer to layer, which also makes the
    logits of size ≈ 1 and the loss ≈ 3 (checked below); scaling the classifier's weights
    down, as is common practice, starts training from near-uniform predictions.
    """
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)  # images in [0, 1]
    labels = rng.integers(0, 10, 64)
    model = mnist_sized_cnn(rng)
    he_loss, _ = softmax_cross_entropy(model.forward(x), labels)
    assert math.log(10) < he_loss < 5
    model.layers[-1].params["w"] *= 0.1
    loss, _ = softmax_cross_entropy(model.forward(x), labels)
    assert abs(loss - math.log(10)) < 0.1, loss


def test_small_cnn_overfits_a_batch_of_32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 10, 32)  # random labels: only memorising can fit them
    model = L.Sequential(
        L.Conv2d(1, 8, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(8, 16, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(16 * 3 * 3, 10, rng=rng),
    )
    opt = SGD(model, lr=0.05, momentum=0.9)
    losses = []
    for _ in range(300):
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        losses.append(loss)
        if np.all(logits.argmax(axis=1) == labels):
            break
        model.backward(dlogits)
        opt.step()
    accuracy = np.mean(model.forward(x).argmax(axis=1) == labels)
    assert accuracy == 1.0, (len(losses), losses[-1])
    assert losses[-1] < 0.5 * losses[0]


def test_reference_model_starts_at_ln10_and_still_learns():
    """``make_cnn`` (notebook 06's model) starts its classifier at zero: loss exactly ln 10.

    A zero head must not block learning: after one step the head is non-zero, and from the
    second step on the first convolution receives gradient too.
    """
    from cnnlib.models import make_cnn

    rng = np.random.default_rng(1)
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, 32)
    model = make_cnn(rng=rng)
    loss0, _ = softmax_cross_entropy(model.forward(x), labels)
    assert abs(loss0 - math.log(10)) < 1e-5
    w_first = model.layers[0].params["w"].copy()
    opt = SGD(model, lr=0.05, momentum=0.9)
    for _ in range(200):
        loss, dlogits = softmax_cross_entropy(model.forward(x), labels)
        if loss < 0.5 * loss0:
            break
        model.backward(dlogits)
        opt.step()
    assert np.abs(model.layers[0].params["w"] - w_first).max() > 1e-4
    assert loss < 0.5 * loss0
