"""Notebook 03's widgets, figures and checks (cnnlib.widgets.norm), driven headlessly."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from numpy.testing import assert_allclose

from cnnlib import reference
from cnnlib.layers import BatchNorm2d
from cnnlib.widgets import norm as wn


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def batch():
    return wn.photo_batch(8)


# --------------------------------------------------------------------------- BN step by step


def test_photo_batch_is_a_reproducible_real_batch(batch):
    assert batch.shape == (8, 3, 32, 32) and batch.dtype == np.float64
    assert batch.min() >= 0 and batch.max() <= 1
    assert_allclose(wn.photo_batch(8), batch)
    assert not np.allclose(wn.photo_batch(8, seed=1), batch)
    assert batch.std(axis=(0, 2, 3)).min() > 0.1  # real content, not a flat patch


def test_bn_steps_match_cnnlib_and_the_reference(batch):
    s = wn.bn_steps(batch, gamma=1.5, beta=-0.2, eps=1e-3)
    ref = reference.batch_norm(batch, np.full(3, 1.5), np.full(3, -0.2), eps=1e-3)
    assert_allclose(s["y"], ref, rtol=1e-10, atol=1e-12)
    assert_allclose(s["out"], ref, rtol=1e-10, atol=1e-12)
    assert s["max_diff"] < 1e-12
    assert_allclose(s["mu"], batch.mean(axis=(0, 2, 3)))
    assert_allclose(s["cache"].var, batch.var(axis=(0, 2, 3)))


def test_bn_explorer_output_statistics(batch):
    e = wn.bn_explorer(batch)
    assert e.message == ""
    assert_allclose(e.result["out_mean"], 0, atol=1e-12)
    assert_allclose(e.result["out_std"], 1, atol=1e-3)
    c = e.controls
    c["gamma"].value, c["beta"].value, c["eps"].value, c["channel"].value = 2.0, 0.5, 0.1, "B"
    r = e.result
    assert r["channel"] == 2
    sigma2 = batch[:, 2].var()
    assert_allclose(r["out_mean"], 0.5, atol=1e-12)
    assert_allclose(r["out_std"], 2 * np.sqrt(sigma2 / (sigma2 + 0.1)), rtol=1e-9)
    assert_allclose(r["out_std"], r["expected_std"], rtol=1e-9)
    assert r["out_std"] < 1.5  # eps comparable to sigma² shrinks the spread
    axes = e.figure.axes
    assert len(axes) == 3 and "チャネル B" in axes[0].get_title()
    assert "ε = 1.0e-01" in axes[1].get_title()


# --------------------------------------------------------------------------- train vs eval


def test_running_stats_follow_pytorchs_rule():
    r = wn.running_stats(steps=3, batch_size=4, momentum=0.1)
    assert r["running_mean"].shape == (4, 3)
    assert_allclose(r["running_mean"][0], 0)
    assert_allclose(r["running_var"][0], 1)
    m1 = wn.running_stats(steps=1, batch_size=4, momentum=1.0)  # keeps only the last batch
    bn = BatchNorm2d(3, momentum=1.0, dtype=np.float64)
    crops = wn.photo_batch(256, seed=1)
    idx = np.random.default_rng(0).integers(0, 256, 4)
    bn.forward(crops[idx])
    assert_allclose(m1["running_mean"][-1], crops[idx].mean(axis=(0, 2, 3)), rtol=1e-12)
    assert_allclose(m1["running_var"][-1], bn.running_var, rtol=1e-12)
    assert_allclose(m1["population_mean"], crops.mean(axis=(0, 2, 3)))


def test_running_stats_explorer_converges():
    e = wn.running_stats_explorer()
    assert e.message == ""
    e.controls["batch_size"].value = 64
    e.controls["steps"].value = 200
    assert e.result["gap"] < 0.02  # noise of a 64-crop batch mean, averaged by momentum 0.1
    e.controls["momentum"].value = 0.01
    e.controls["steps"].value = 5
    assert e.result["gap"] > 0.2  # still near the initial 0
    assert len(e.figure.axes) == 2 and len(e.figure.axes[0].get_lines()) == 6


# --------------------------------------------------------------------------- which axes

_SHAPE = (4, 6, 3, 3)
_CASES = [("BatchNorm", 1), ("LayerNorm", 1)] + [("GroupNorm", g) for g in (1, 2, 3, 6)]


@pytest.mark.parametrize(("method", "groups"), _CASES)
def test_stat_mask_found_by_experiment_matches_the_definition(method, groups):
    for n, c in ((0, 0), (3, 5), (1, 2), (2, 3)):
        mask = wn.stat_mask(method, _SHAPE, n, c, groups)
        assert np.array_equal(mask, wn.stat_mask_by_definition(method, _SHAPE, n, c, groups))
        assert mask[n, c, 0, 0]


def test_stat_mask_counts_and_errors():
    assert wn.stat_mask("BatchNorm", _SHAPE, 1, 2).sum() == 4 * 3 * 3
    assert wn.stat_mask("LayerNorm", _SHAPE, 1, 2).sum() == 6 * 3 * 3
    assert wn.stat_mask("GroupNorm", _SHAPE, 1, 2, groups=3).sum() == 2 * 3 * 3
    with pytest.raises(ValueError, match="4 グループに分けられません"):
        wn.stat_mask("GroupNorm", _SHAPE, 0, 0, groups=4)
    with pytest.raises(ValueError, match="unknown method"):
        wn.stat_mask("InstanceNorm", _SHAPE, 0, 0)


def test_norm_axes_explorer():
    e = wn.norm_axes_explorer()
    c = e.controls
    assert e.message == "" and e.result["count"] == 36 and e.result["sets"] == 6
    assert c["groups"].disabled
    c["method"].value = "GroupNorm"
    assert not c["groups"].disabled
    c["groups"].value = 3
    assert (e.result["count"], e.result["sets"], e.result["agrees"]) == (18, 12, True)
    assert "18 個の値" in e.figure.axes[0].get_title()
    c["groups"].value = 4  # does not divide C = 6: a message, no stale picture
    assert "4 グループに分けられません" in e.message
    assert e.result is None and e.figure is None
    c["groups"].value = 6
    assert e.message == "" and e.result["count"] == 9 and e.result["sets"] == 24
    c["method"].value = "LayerNorm"
    assert e.result["count"] == 54 and e.result["sets"] == 4


# --------------------------------------------------------------------------- batch size 2


def test_small_batch_bn_depends_on_partners_gn_does_not():
    r2 = wn.small_batch(batch_size=2, trials=20)
    r32 = wn.small_batch(batch_size=32, trials=20)
    assert r2["gn_spread"] < 1e-12 and r32["gn_spread"] < 1e-12
    assert r2["bn_spread"] > 2 * r32["bn_spread"] > 0
    assert_allclose(r2["gn_means"], r2["gn_example"].mean())  # GN alone = GN in any batch
    assert len(r2["bn_examples"]) == 3


def test_small_batch_explorer():
    e = wn.small_batch_explorer()
    assert e.message == "" and e.result["batch_size"] == 2
    e.controls["batch_size"].value = 16
    assert e.result["batch_size"] == 16 and e.message == ""
    assert len(e.figure.axes) == 6


# --------------------------------------------------------------------------- experiment


def test_small_cnn_with_and_without_bn_share_weights():
    with_bn, without = wn.small_cnn(True), wn.small_cnn(False)
    assert len(with_bn.layers) == len(without.layers) + 2
    assert_allclose(with_bn.layers[0].params["w"], without.layers[0].params["w"])
    assert_allclose(with_bn.layers[4].params["w"], without.layers[3].params["w"])
    assert with_bn.forward(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 5)


def test_bn_experiment_is_reproducible_and_learns():
    h = wn.bn_experiment(lrs=(0.05,), steps=40)
    assert set(h) == {(0.05, False), (0.05, True)}
    losses = h[(0.05, True)]
    assert losses.shape == (40,) and np.all(np.isfinite(losses))
    assert losses[-10:].mean() < losses[:10].mean()
    assert_allclose(wn.bn_experiment(lrs=(0.05,), steps=5)[(0.05, True)], losses[:5],
                    rtol=1e-5)
    fig = wn.plot_bn_experiment(h)
    assert "BN あり" in fig.axes[0].get_legend().get_texts()[1].get_text()


def test_smooth():
    assert_allclose(wn.smooth(np.array([1.0, 3.0, 5.0, 7.0]), window=2), [1, 2, 4, 6])


# --------------------------------------------------------------------------- exercises


def test_check_bn_by_hand():
    x_hat = (wn.EXERCISE_X - 5) / np.sqrt(5)
    assert wn.check_bn_by_hand(None).status == "unanswered"
    assert wn.check_bn_by_hand((5, 5, x_hat))
    assert wn.check_bn_by_hand((5.0, 5.0, list(np.round(x_hat, 3))))
    fb = wn.check_bn_by_hand((5, 20 / 3, x_hat))
    assert not fb and "N − 1" in fb.text
    assert not wn.check_bn_by_hand((4, 5, x_hat))
    assert not wn.check_bn_by_hand((5, 5, x_hat[:3]))
    assert not wn.check_bn_by_hand(5)


def _good_batch_norm(x, gamma, beta, eps):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return gamma[:, None, None] * (x - mu) / np.sqrt(var + eps) + beta[:, None, None]


def _per_sample_norm(x, gamma, beta, eps):
    mu = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    return gamma[:, None, None] * (x - mu) / np.sqrt(var + eps) + beta[:, None, None]


def test_check_batch_norm():
    assert wn.check_batch_norm(None).status == "unanswered"
    assert wn.check_batch_norm(lambda x, g, b, e: None).status == "unanswered"
    assert wn.check_batch_norm(_good_batch_norm)
    fb = wn.check_batch_norm(_per_sample_norm)
    assert not fb and "axis=(0, 2, 3)" in fb.text
    assert not wn.check_batch_norm(lambda x, g, b, e: x[0])
    assert not wn.check_batch_norm(lambda x, g, b, e: x.nope)
    assert not wn.check_batch_norm("my_batch_norm")


def test_check_gn_count():
    assert wn.check_gn_count(...).status == "unanswered"
    assert wn.check_gn_count(2048)
    assert not wn.check_gn_count(8 * 2048)
    assert not wn.check_gn_count(2048 + 1)
    assert not wn.check_gn_count("lots")


def test_check_batch_of_two():
    assert wn.check_batch_of_two(None).status == "unanswered"
    assert wn.check_batch_of_two("c")
    assert not wn.check_batch_of_two("a")
    assert not wn.check_batch_of_two(3)
