"""cnnlib.train: the training loop, evaluation, the shape trace and the reference recipe."""

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from cnnlib import data, recipe, train
from cnnlib.data import make_shapes
from cnnlib.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from cnnlib.losses import softmax_cross_entropy
from cnnlib.models import make_cnn, make_mlp
from cnnlib.optim import SGD, StepLR
from cnnlib.train import (
    History,
    confusion_matrix,
    evaluate,
    fit,
    most_confused,
    predict,
    shape_trace,
    summary,
    warmup_cosine,
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = [f"{split}-{kind}-ubyte.gz" for split in ("train", "t10k")
                 for kind in ("images-idx3", "labels-idx1")]


@pytest.fixture(scope="module")
def shapes():
    """A small train/test split of the shapes dataset at 16×16 (fast to train on)."""
    train_data = make_shapes(1200, size=16, seed=0)
    test_data = make_shapes(400, size=16, seed=1)
    return train_data, test_data


def logistic(n_features: int = 3 * 16 * 16, seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(Flatten(), Linear(n_features, 5, rng=rng))


# --------------------------------------------------------------------------- fit


def test_fit_learns_the_shapes_well_above_chance(shapes):
    train_data, test_data = shapes
    rng = np.random.default_rng(0)
    model = make_cnn(3, 5, 16, channels=(8, 16), rng=rng)
    optimizer = SGD(model, lr=0.05, momentum=0.9)
    history = fit(model, optimizer, train_data, test_data, epochs=4, batch_size=32,
                  lr_schedule=warmup_cosine(0.05, 4), rng=rng, progress=False, verbose=False)
    assert history.epochs == 4
    assert history.test_acc[-1] > 0.6, history  # chance is 0.2
    assert history.train_loss[-1] < history.train_loss[0]


def test_fit_also_trains_a_model_of_ones_own(shapes):
    """A model class of one's own: forward, backward(dout), parameters(), train(), eval()."""

    class Mine:
        def __init__(self):
            self.net = logistic()
            self.training = True

        def forward(self, x):
            return self.net.forward(x)

        def backward(self, dout):  # no input_grad keyword
            return self.net.backward(dout)

        def parameters(self):
            return self.net.parameters()

        def train(self, mode=True):
            self.training = mode
            self.net.train(mode)
            return self

        def eval(self):
            return self.train(False)

    model = Mine()
    history = fit(model, SGD(model, lr=0.1), *shapes, epochs=2, batch_size=64, rng=0,
                  progress=False, verbose=False)
    assert history.train_loss[-1] < history.train_loss[0]


def test_with_lr_zero_the_epoch_averages_equal_evaluate(shapes):
    # nothing changes and the model has no batch statistics, so the running means over
    # uneven batches (1200 = 7·160 + 80) must equal the loss and accuracy of the whole set
    train_data, _ = shapes
    model = logistic()
    history = fit(model, SGD(model, lr=0.0), train_data, train_data, epochs=1, batch_size=160,
                  progress=False, verbose=False)
    full = evaluate(model, train_data)
    assert_allclose(history.train_loss[0], full.loss, rtol=1e-5)
    assert_allclose(history.test_loss[0], full.loss, rtol=1e-6)
    assert history.train_acc[0] == full.accuracy == history.test_acc[0]


def test_fit_is_reproducible_with_a_seed(shapes):
    train_data, test_data = shapes
    runs = []
    for _ in range(2):
        model = logistic(seed=3)
        runs.append(fit(model, SGD(model, lr=0.1, momentum=0.9), train_data, test_data,
                        epochs=2, batch_size=50, rng=7, progress=False, verbose=False))
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[0].test_acc == runs[1].test_acc


def test_shuffling_visits_every_sample_once_per_epoch():
    seen = []

    class Recorder(Sequential):
        def forward(self, x):
            seen.extend(x[:, 0, 0, 0].astype(int).tolist())
            return super().forward(x)

    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    y = np.zeros(10, np.int64)
    model = Recorder(Flatten(), Linear(4, 2, rng=np.random.default_rng(0)))
    fit(model, SGD(model, lr=0.0), (x, y), None, epochs=2, batch_size=3, rng=0,
        progress=False, verbose=False)
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:], "each epoch should draw a new order"


def test_per_step_schedule_and_epoch_scheduler(shapes):
    train_data, _ = shapes
    model = logistic()
    calls = []

    def schedule(t):
        calls.append(t)
        return 0.01 * (1 + t)

    opt = SGD(model, lr=1.0)
    history = fit(model, opt, train_data, None, epochs=2, batch_size=400, lr_schedule=schedule,
                  progress=False, verbose=False)
    assert_allclose(calls, [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3])
    assert_allclose(history.lr, [0.01 * (1 + 2 / 3), 0.01 * (1 + 5 / 3)])
    assert all(math.isnan(v) for v in history.test_acc)

    opt = SGD(model, lr=1.0)
    history = fit(model, opt, train_data, None, epochs=3, batch_size=400,
                  lr_schedule=StepLR(opt, step_size=1, gamma=0.5), progress=False, verbose=False)
    assert history.lr == [1.0, 0.5, 0.25]  # a schedule object is a function of t like any other
    assert opt.lr == 0.25


def test_callback_sees_the_growing_history(shapes):
    train_data, test_data = shapes
    model = logistic()
    seen = []
    fit(model, SGD(model, lr=0.05), train_data, test_data, epochs=3, batch_size=200,
        callback=lambda epoch, h: seen.append((epoch, h.epochs)), progress=False, verbose=False)
    assert seen == [(0, 1), (1, 2), (2, 3)]


def test_history_can_be_continued_and_printed(shapes, capsys):
    train_data, test_data = shapes
    model = logistic()
    opt = SGD(model, lr=0.05)
    history = fit(model, opt, train_data, test_data, epochs=1, batch_size=200, progress=False)
    fit(model, opt, train_data, test_data, epochs=1, batch_size=200, progress=False,
        history=history)
    lines = capsys.readouterr().out.strip().splitlines()
    assert history.epochs == 2
    assert lines[0].startswith("epoch 1/1: train loss ")
    assert lines[1].startswith("epoch 2/2: ")
    assert re.search(r"test acc 0\.\d{4}, lr 0\.05, \d+\.\d s$", lines[1])


def test_fit_rejects_bad_data(shapes):
    (x, y), _ = shapes
    model = logistic()
    opt = SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="1200 images but labels of shape"):
        fit(model, opt, (x, y[:-1]), progress=False)
    with pytest.raises(TypeError, match="labels must be integers"):
        fit(model, opt, (x, y.astype(np.float32)), progress=False)
    with pytest.raises(TypeError, match=r"\(images, labels\) pair"):
        fit(model, opt, x, progress=False)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        fit(model, opt, (x, y), batch_size=0, progress=False)


# --------------------------------------------------------------------------- evaluation


class Fixed(Sequential):
    """A 'model' whose logits are given: it makes evaluate's arithmetic checkable by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = np.asarray(logits, dtype=np.float64)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.logits[x[:, 0].astype(int)]


def test_evaluate_by_hand():
    logits = [[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]  # predictions 0, 1, 0
    model = Fixed(logits)
    x = np.arange(3, dtype=np.float32)[:, None]
    y = np.array([0, 0, 0])
    loss, accuracy = evaluate(model, (x, y), batch_size=2)
    expected = np.mean([np.log(1 + np.exp(-2)), np.log(1 + np.e), np.log(1 + np.exp(-3))])
    assert_allclose(loss, expected, rtol=1e-12)
    assert accuracy == pytest.approx(2 / 3)
    assert model.modes == [False, False], "evaluate must run in eval mode"
    assert model.training, "and restore the training mode afterwards"


def test_predict_batches_and_restores_eval_mode():
    model = logistic()
    model.eval()
    x = make_shapes(7, size=16, seed=2)[0]
    out = predict(model, x, batch_size=3)
    assert out.shape == (7, 5)
    assert_allclose(out, model.forward(x), rtol=1e-5, atol=1e-6)
    assert not model.training


def test_confusion_matrix_and_most_confused():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    predictions = np.array([0, 1, 1, 2, 2, 2, 0, 0, 0])
    cm = confusion_matrix(labels, predictions, 3)
    assert_array_equal(cm, [[1, 1, 0], [0, 1, 2], [3, 0, 1]])
    assert_array_equal(cm.sum(axis=1), np.bincount(labels))
    assert most_confused(cm, k=2) == [(2, 0, 3), (1, 2, 2)]
    assert most_confused(cm, k=10) == [(2, 0, 3), (1, 2, 2), (0, 1, 1)]
    with pytest.raises(ValueError, match=r"predictions must lie in 0\.\.2"):
        confusion_matrix(labels, predictions + 1, 3)


def test_warmup_cosine():
    lr = warmup_cosine(0.1, epochs=4, warmup=0.25)
    assert lr(0) == pytest.approx(0.1e-3)
    assert lr(0.5) == pytest.approx(0.05, rel=1e-2)
    assert lr(1.0) == pytest.approx(0.1)
    assert lr(2.5) == pytest.approx(0.05)
    assert lr(4.0) == pytest.approx(0.0, abs=1e-12)
    values = [lr(t) for t in np.linspace(1, 4, 20)]
    assert all(a >= b for a, b in itertools.pairwise(values))


# --------------------------------------------------------------------------- shape trace


def test_shape_trace_of_the_lectures_32x32x3_network():
    model = make_cnn(3, 10, 32, rng=np.random.default_rng(0))
    rows = shape_trace(model, (3, 32, 32))
    shapes = [shape for _, shape, _ in rows]
    assert shapes == [(3, 32, 32), (16, 32, 32), (16, 32, 32), (16, 32, 32), (16, 16, 16),
                      (32, 16, 16), (32, 16, 16), (32, 16, 16), (32, 8, 8), (2048,), (10,)]
    counts = [count for _, _, count in rows]
    # conv 3·3·3·16 + 16, BN 2·16, conv 3·3·16·32 + 32, BN 2·32, linear 2048·10 + 10
    assert counts == [0, 448, 32, 0, 0, 4640, 64, 0, 0, 0, 20490]
    assert rows[1][0].startswith("0: Conv2d(3, 16")


def test_summary_prints_every_layer_and_returns_the_total(capsys):
    model = make_cnn(1, 10, 28, rng=np.random.default_rng(0))
    model.train()
    total = summary(model, (1, 28, 28))
    out = capsys.readouterr().out
    assert total == sum(p.size for p in model.params.values())
    assert "(32, 7, 7)" in out and "(1568,)" in out
    assert f"{total:,}" in out.splitlines()[-1]
    assert model.training, "summary must leave the mode as it found it"
    running = model.layers[1].running_mean
    assert_array_equal(running, 0), "summary must not touch BatchNorm's running statistics"


def test_initial_loss_is_ln_10_and_a_small_batch_can_be_overfitted():
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    y = np.arange(16) % 10
    model = make_cnn(1, 10, 28, rng=rng)
    assert_array_equal(model.layers[-1].params["w"], 0)
    loss, _ = softmax_cross_entropy(model.forward(x), y)
    assert loss == pytest.approx(np.log(10), rel=1e-6)
    history = fit(model, SGD(model, lr=0.02, momentum=0.9), (x, y), None, epochs=40,
                  batch_size=16, rng=0, progress=False, verbose=False)
    assert history.train_loss[-1] < 0.05
    assert_array_equal(predict(model, x).argmax(axis=1), y)


def test_mlp_has_many_more_parameters_than_the_cnn():
    rng = np.random.default_rng(0)
    mlp = make_mlp(28 * 28, 128, 10, rng=rng)
    cnn = make_cnn(1, 10, 28, rng=rng)
    assert mlp.num_parameters() == 784 * 128 + 128 + 128 * 10 + 10
    assert cnn.num_parameters() < mlp.num_parameters() / 4


def test_a_custom_network_traces_too():
    model = Sequential(Conv2d(1, 4, 5, stride=2, rng=np.random.default_rng(0)), ReLU(),
                       MaxPool2d(3, stride=2), Flatten())
    assert [s for _, s, _ in shape_trace(model, (1, 28, 28))][-2:] == [(4, 5, 5), (100,)]


# --------------------------------------------------------------------------- recipe and CLI


def test_cli_on_small_shapes_ends_with_the_accuracy_line(capsys):
    accuracy = recipe.main(["--dataset", "shapes", "--small", "--epochs", "1", "--no-progress"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1: ")
    assert re.fullmatch(r"test accuracy: 0\.\d{4}", lines[-1])
    assert float(lines[-1].split()[-1]) == pytest.approx(accuracy, abs=5e-5)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="dataset must be one of"):
        recipe.load_dataset("cifar10")


def test_small_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("CNNLIB_SMALL", "1")
    assert recipe.is_small()
    monkeypatch.setenv("CNNLIB_SMALL", "0")
    assert not recipe.is_small()
    monkeypatch.delenv("CNNLIB_SMALL")
    assert not recipe.is_small()


@pytest.mark.skipif(not all((DEBIAN_DIR / name).exists() for name in FASHION_FILES),
                    reason="Fashion-MNIST is not installed (apt install dataset-fashion-mnist)")
def test_short_real_run_on_fashion_mnist(monkeypatch):
    def no_network(url, timeout=30.0):
        raise AssertionError(f"the test tried to download {url}")

    monkeypatch.setattr(data, "_open_url", no_network)
    (x, y), (xt, yt) = recipe.load_dataset("fashion-mnist", small=True)
    rng = np.random.default_rng(0)
    model = make_cnn(1, 10, 28, rng=rng)
    history = fit(model, SGD(model, lr=0.05, momentum=0.9), (x[:4000], y[:4000]),
                  (xt[:1000], yt[:1000]), epochs=1, batch_size=64,
                  lr_schedule=warmup_cosine(0.05, 1), rng=rng, progress=False, verbose=False)
    assert history.test_acc[0] > 0.70  # chance is 0.1; the full recipe reaches ≥ 0.90


def test_history_line_formats_one_epoch():
    h = History([0.5], [0.8], [0.45], [0.85], [0.01], [12.34])
    assert h.line(0, 3) == ("epoch 1/3: train loss 0.5000, train acc 0.8000, test loss 0.4500, "
                            "test acc 0.8500, lr 0.01, 12.3 s")


# --------------------------------------------------------------------------- divergence, bad flags


def test_fit_stops_at_the_first_non_finite_loss_with_advice(shapes):
    rng = np.random.default_rng(0)
    model = make_cnn(3, 5, 16, rng=rng)
    with pytest.raises(train.TrainingDiverged, match=r"step \d+ of epoch 1.*Lower the learning"):
        fit(model, SGD(model, lr=1e6), shapes[0], None, epochs=1, batch_size=64, rng=rng,
            progress=False, verbose=False)


def test_cli_reports_divergence_without_a_traceback_and_exits_1(capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--dataset", "shapes", "--small", "--epochs", "1", "--lr", "1e6",
                    "--no-progress"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err
    assert "test accuracy" not in err


@pytest.mark.parametrize("flags", [
    ["--epochs", "0"], ["--epochs", "-1"], ["--epochs", "1.5"], ["--batch-size", "0"],
    ["--batch-size", "-5"], ["--lr", "-1"], ["--lr", "0"], ["--lr", "nan"], ["--lr", "inf"],
    ["--seed", "-1"], ["--dataset", "cifar10"],
])
def test_cli_refuses_bad_flags_with_usage_and_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(flags)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m cnnlib.train") and "Traceback" not in err
