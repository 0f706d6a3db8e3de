"""Notebook 06 §1: the softmax explorer and the softmax / cross-entropy exercises."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib.widgets import softmax as ws


def test_hand_example_numbers_match_the_notebook():
    r = ws.softmax_loss(ws.HAND_LOGITS, ws.HAND_LABEL)
    assert_allclose(r["p"], [0.665241, 0.244728, 0.090031], atol=1e-6)
    assert math.isclose(r["loss"], 0.407606, abs_tol=1e-6)
    assert_allclose(r["grad"], r["p"] - np.eye(3)[0], atol=1e-12)   # ∂L/∂z = p − y


def test_gradient_is_p_minus_y_over_t_numerically():
    z, t = np.array([0.3, -1.2, 2.0, 0.5]), 1.7
    r = ws.softmax_loss(z, 2, t)
    h = 1e-6
    num = [(ws.softmax_loss(z + h * e, 2, t)["loss"] - ws.softmax_loss(z - h * e, 2, t)["loss"])
           / (2 * h) for e in np.eye(4)]
    assert_allclose(r["grad"], num, atol=1e-8)


def test_explorer_temperature_limits():
    e = ws.softmax_explorer()
    assert e.message == ""
    e.controls["temperature"].value = 0.1
    assert e.result["p"][0] > 0.99                       # cold: the argmax
    e.controls["temperature"].value = 5.0
    assert e.result["p"].max() - e.result["p"].min() < 0.4  # hot: towards uniform
    e.controls["label"].value = "3"
    assert e.message == "" and e.result["label"] == 3
    e.controls["z0"].value = 6.0
    assert e.figure is not None


def test_check_by_hand(capsys):
    assert ws.check_softmax_by_hand(None).status == "unanswered"
    assert ws.check_softmax_by_hand((math.log(4), [0.125, -0.75, 0.625]))
    wrong = [((-math.log(4), [0.125, -0.75, 0.625]), "符号"),
             ((math.log(4), [-0.125, 0.75, -0.625]), "p − y"),
             ((math.log(4), [0.125, 0.25, 0.625]), "p − y"),
             ((math.log(8 / 5), [0.125, -0.75, 0.625]), "y = 1"),
             ("abc", "形"), ((1.0, [1, 2]), "3 つ")]
    for answer, word in wrong:
        fb = ws.check_softmax_by_hand(answer)
        assert fb.status == "wrong" and word in fb.text, (answer, fb.text)
    capsys.readouterr()


def _good(z, y):
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    return loss, p / n


def _no_max(z, y):
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    return loss, p / n


def _sum_loss(z, y):
    loss, dz = _good(z, y)
    return loss * len(y), dz


def _dz_not_averaged(z, y):
    loss, dz = _good(z, y)
    return loss, dz * len(y)


def _raises(z, y):
    raise RuntimeError("boom")


@pytest.mark.parametrize("fn, word", [
    (_no_max, "最大値"), (_sum_loss, "平均"), (_dz_not_averaged, "N = "),
    (_raises, "boom"), (lambda z, y: 3, "2 つ"), (lambda z, y: None, "まだ回答"),
    (lambda z, y: (np.zeros(2), z), "1 つの数"), (lambda z, y: (0.0, z[:, :1]), "形"),
])
def test_check_implementation_names_the_mistake(fn, word, capsys):
    fb = ws.check_softmax_cross_entropy(fn)
    assert not fb and word in fb.text, fb.text
    capsys.readouterr()


def test_check_implementation_accepts_a_right_one(capsys):
    assert ws.check_softmax_cross_entropy(_good)
    assert ws.check_softmax_cross_entropy(...).status == "unanswered"
    capsys.readouterr()
