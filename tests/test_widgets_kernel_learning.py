"""Notebook 01 §7: learning a 3×3 kernel by W ← W − η·∂L/∂W."""

import numpy as np
import pytest

from cnnlib.widgets import kernel_learning as kl


def test_hand_gradient_is_the_notebooks_numbers():
    assert np.array_equal(kl.hand_gradient(), [[-308, -432], [-680, -804]])


def test_gradient_matches_a_numerical_derivative():
    k = kl.targets()["vertical edge"]
    x = kl.training_image("noise")[:8, :9]
    run = kl.learn_kernel(k, x, steps=1, lr=0.3)
    w0, w1 = run["kernels"]
    grad = (w0 - w1) / 0.3                     # the step taken, divided by η

    def loss(w):
        return kl.learn_kernel(k, x, steps=0)["losses"][0] if w is None else \
            0.5 * np.mean((_conv(x, w) - run["y"]) ** 2)

    h = 1e-6
    for m, n in [(0, 0), (1, 2), (2, 1)]:
        e = np.zeros_like(w0)
        e[m, n] = h
        assert np.isclose((loss(w0 + e) - loss(w0 - e)) / (2 * h), grad[m, n], rtol=1e-6)


def _conv(x, w):
    k = w.shape[0]
    return np.array([[np.sum(x[i:i + k, j:j + k] * w) for j in range(x.shape[1] - k + 1)]
                     for i in range(x.shape[0] - k + 1)])


@pytest.mark.parametrize("name", ["vertical edge", "horizontal edge", "diagonal line /"])
def test_noise_image_learns_every_target(name):
    run = kl.learn_kernel(kl.targets()[name], kl.training_image("noise"), steps=40, lr=0.3)
    assert np.abs(run["kernels"][0] - run["target"]).max() > 0.5
    assert np.abs(run["kernels"][-1] - run["target"]).max() < 1e-3
    assert np.all(np.diff(run["losses"]) < 0)


def test_photo_learns_slowly():
    run = kl.learn_kernel(kl.targets()["vertical edge"], kl.training_image("photo"))
    assert np.abs(run["kernels"][-1] - run["target"]).max() > 0.3   # the notebook's claim


def test_explorer_steps_and_divergence():
    e = kl.kernel_learning_explorer()
    assert e.message == "" and e.result["step"] == 0
    e.controls["step"].value = 40
    assert e.result["error"] < 1e-3
    e.controls["lr"].value = 2.5
    assert e.message == "" and e.result["losses"][-1] > e.result["losses"][0]   # it grows
    with pytest.raises(ValueError, match="image"):
        kl.training_image("cat")


def test_check_kernel_gradient(capsys):
    assert kl.check_kernel_gradient(None).status == "unanswered"
    assert kl.check_kernel_gradient(-432)
    assert "符号" in kl.check_kernel_gradient(432).text
    assert "W(0,0)" in kl.check_kernel_gradient(-308).text
    assert not kl.check_kernel_gradient(-400)
    assert not kl.check_kernel_gradient("x")
    capsys.readouterr()
