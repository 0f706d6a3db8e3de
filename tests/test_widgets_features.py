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
    axes = np.array(fig.axes).reshape(3, 5)
    shown = axes[2, 2].images[0].get_array()
    if channels == 1:   # the change of filter 2 is a constant: drawn at the top of its scale
        assert np.allclose(shown, 1.0)
    else:               # RGB: 0.5 + 0.5·change/scale = 1 everywhere
        assert np.allclose(shown, 1.0)
    assert np.allclose(axes[2, 0].images[0].get_array(), 0.0 if channels == 1 else 0.5)
    plt.close(fig)


def test_two_rows_and_errors():
    w = np.zeros((4, 1, 3, 3))
    fig = show_filters_before_after(w, w, names=("a", "b"))
    assert len(fig.axes) == 8
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        show_filters_before_after(w, w[:2])
    with pytest.raises(ValueError, match="1 or 3"):
        show_filters_before_after(np.zeros((2, 2, 3, 3)), np.zeros((2, 2, 3, 3)))
