"""Notebook 06 §7: first-layer filters before and after training."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cnnlib.widgets.features import show_filters_before_after


@pytest.mark.parametrize("channels", [1, 3])
def test_three_rows_and_the_change_row_shows_the_difference(channels):
    rng = np.random.default_rng(0)
    before = rng.normal(size=(5, channels, 3, 3))
    after = before.copy()
    after[2] += 1.0
    fig = show_filters_before_after(before, after)
    assert len(fig.axes) == 3 and all(len(ax.images) == 5 for ax in fig.axes)  # rows, filters
    change = fig.axes[2].images
    if channels == 1:   # the change of filter 2 is a constant: drawn at the top of its scale
        assert np.allclose(change[2].get_array(), 1.0)
        assert np.allclose(change[2].get_clim(), (-1, 1))
    else:               # RGB: 0.5 + 0.5·change/scale = 1 everywhere
        assert np.allclose(change[2].get_array(), 1.0)
    assert np.allclose(change[0].get_array(), 0.0 if channels == 1 else 0.5)
    # before and after share each filter's scale
    assert fig.axes[0].images[1].get_clim() == fig.axes[1].images[1].get_clim() or channels == 3
    plt.close(fig)


def test_two_rows_and_errors():
    w = np.zeros((4, 1, 3, 3))
    fig = show_filters_before_after(w, w, names=("a", "b"))
    assert [len(ax.images) for ax in fig.axes] == [4, 4]
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        show_filters_before_after(w, w[:2])
    with pytest.raises(ValueError, match="1 or 3"):
        show_filters_before_after(np.zeros((2, 2, 3, 3)), np.zeros((2, 2, 3, 3)))


# ----------------------------------------------------------------- receptive fields and explorer

from cnnlib.models import make_cnn  # noqa: E402
from cnnlib.widgets import features as wf  # noqa: E402


def _random_cnn():
    model = make_cnn(1, 10, 28, channels=(4, 6), rng=np.random.default_rng(3))
    model.eval()
    return model


@pytest.mark.parametrize("depth, size", [(3, 3), (4, 4), (7, 8), (8, 10)])
def test_receptive_field_sizes_inside_the_image(depth, size):
    top, bottom, left, right = wf.receptive_field(_random_cnn().layers, depth, 3, 2, (28, 28))
    assert bottom - top + 1 == size and right - left + 1 == size


def test_receptive_field_is_exactly_what_the_unit_depends_on():
    model = _random_cnn()
    rng = np.random.default_rng(0)
    x = rng.random((1, 1, 28, 28)).astype(np.float32)
    for depth, (i, j) in [(7, (3, 5)), (8, (0, 6)), (4, (13, 0))]:
        base = wf.feature_maps(model, x, depth)[0, :, i, j]
        top, bottom, left, right = wf.receptive_field(model.layers, depth, i, j, (28, 28))
        inside = np.zeros((28, 28), bool)
        inside[top:bottom + 1, left:right + 1] = True
        outside = x.copy()
        outside[0, 0][~inside] = rng.random(int((~inside).sum()))
        assert np.allclose(wf.feature_maps(model, outside, depth)[0, :, i, j], base)
        changed = x.copy()
        changed[0, 0][inside] = rng.random(int(inside.sum()))
        assert not np.allclose(wf.feature_maps(model, changed, depth)[0, :, i, j], base)


def test_top_patches_are_sorted_and_cropped():
    model = _random_cnn()
    images = np.random.default_rng(1).random((30, 1, 28, 28)).astype(np.float32)
    top = wf.top_patches(model, images, 7, 2, k=5)
    values = [v for _, v, _ in top]
    assert values == sorted(values, reverse=True)
    maps = wf.feature_maps(model, images, 7)[:, 2]
    assert np.isclose(values[0], maps.max())


def test_explorer_adapts_its_ranges(capsys):
    images = np.random.default_rng(1).random((12, 1, 28, 28)).astype(np.float32)
    e = wf.feature_explorer(images, model=_random_cnn(), n_top=4)
    assert e.message == ""
    e.controls["depth"].value = "block 2: max pool"
    assert e.controls["row"].max == 6 and e.controls["channel"].max == 5
    e.controls["channel"].value = 5
    e.controls["row"].value = 6
    assert e.message == "" and e.result["rf"][1] == 27
    plt.close("all")


def test_shipped_cnn_loads_and_classifies():
    model, accuracy = wf.load_feature_cnn()
    assert accuracy > 0.8
    assert wf.WEIGHTS.stat().st_size < 300_000
    assert model.params["0.w"].shape == (8, 1, 3, 3)
