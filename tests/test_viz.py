"""The shared plotting primitives (cnnlib.viz)."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from numba import njit
from numpy.testing import assert_array_equal

from cnnlib import viz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _doubler(a):
    """A helper whose source the tests read back."""
    return 2 * a


@njit
def _jitted_doubler(a):
    return 2 * a


# --------------------------------------------------------------------------- show_source


def test_show_source_returns_and_prints_a_function(capsys):
    src = viz.show_source(_doubler)
    assert src.startswith("def _doubler(a):")
    assert "return 2 * a" in src
    assert "def _doubler" in capsys.readouterr().out


def test_show_source_reads_through_a_numba_dispatcher(capsys):
    src = viz.show_source(_jitted_doubler)
    assert "@njit" in src and "def _jitted_doubler(a):" in src
    assert _jitted_doubler(3) == 6  # still callable and compiled


def test_show_source_refuses_a_builtin():
    with pytest.raises(TypeError, match="（cannot show the source）"):
        viz.show_source(len)


def test_show_table_aligns_columns_and_formats_floats(capsys):
    text = viz.show_table([["conv", 0.000123456], ["relu", 2]], ["layer", "error"], title="T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert lines[1].split() == ["layer", "error"]
    assert lines[3].split() == ["conv", "0.0001235"]
    assert capsys.readouterr().out.strip() == text


# --------------------------------------------------------------------------- figures


def _rendered(fig: Figure) -> Figure:
    fig.canvas.draw()  # catches errors that only appear when the artists are drawn
    return fig


def test_show_images_accepts_grey_hwc_and_chw():
    rng = np.random.default_rng(0)
    fig = viz.show_images([rng.random((5, 6)), rng.random((5, 6, 3)), rng.random((3, 5, 6))],
                          titles=["grey", "HWC", "CHW"], ncols=2)
    _rendered(fig)
    assert [len(ax.images) for ax in fig.axes] == [2, 1]  # rows of 2
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["grey", "HWC", "CHW"]
    shown = [im.get_array() for ax in fig.axes for im in ax.images]
    assert shown[0].shape == (5, 6) and shown[1].shape == shown[2].shape == (5, 6, 3)
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()  # the same scale in every row


def test_tile_row_draws_each_tile_as_an_image_of_its_own():
    fig, ax = plt.subplots()
    tiles = [np.arange(6.0).reshape(2, 3), np.ones((4, 4, 3)) * 0.5]
    viz.tile_row(ax, tiles, ["a", "b"], [{"cmap": "magma", "vmin": 0, "vmax": 5}, {}], slots=3)
    _rendered(fig)
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    assert_array_equal(ax.images[0].get_array(), tiles[0])
    assert ax.images[0].get_cmap().name == "magma" and ax.images[0].get_clim() == (0, 5)
    assert ax.images[0].get_extent()[:2] == [0, 1] and ax.images[1].get_extent()[1] == 2.12
    assert ax.get_xlim()[1] > 3  # three slots wide, although two tiles are drawn
    assert len(ax.patches) == 2  # a frame per tile
    plt.close(fig)


def test_show_images_rejects_mismatched_titles_and_bad_shapes():
    with pytest.raises(ValueError, match="画像は 2 枚ですが、タイトルは 1 個"):
        viz.show_images([np.zeros((2, 2))] * 2, titles=["a"])
    with pytest.raises(ValueError, match="画像として表示できません"):
        viz.show_images([np.zeros((2, 2, 2, 2))])


def test_show_feature_maps_centres_colour_scale_on_zero():
    maps = np.stack([np.array([[-1.0, 2.0], [0.0, 0.5]]), np.zeros((2, 2))])
    fig = _rendered(viz.show_feature_maps(maps[None], titles=["a", "b"]))
    image_axes = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in image_axes] == ["a", "b"]
    assert image_axes[0].images[0].get_clim() == (-2.0, 2.0)
    assert image_axes[1].images[0].get_clim() == (-1.0, 1.0)  # all-zero map: no 0/0 range
    with pytest.raises(ValueError, match="one sample at a time"):
        viz.show_feature_maps(np.zeros((2, 1, 3, 3)))


def test_show_matrix_writes_every_number():
    a = np.array([[1, 3], [5, 6.5]])
    ax = viz.show_matrix(a, title="x", fmt="{:.1f}")
    _rendered(ax.figure)
    assert sorted(t.get_text() for t in ax.texts) == ["1.0", "3.0", "5.0", "6.5"]
    assert ax.get_title() == "x"
    with pytest.raises(ValueError, match="2 次元"):
        viz.show_matrix(np.zeros(3))


def test_show_matrix_handles_minus_infinity_and_constant_arrays():
    ax = viz.show_matrix(np.array([[-np.inf, 1.0], [2.0, 3.0]]))
    _rendered(ax.figure)
    assert "-inf" in [t.get_text() for t in ax.texts]
    _rendered(viz.show_matrix(np.ones((2, 2))).figure)


def test_show_matrices_draws_symbols_between():
    fig = viz.show_matrices([np.eye(3), np.ones((2, 2)), np.eye(2)], ["x", "w", "y"],
                            between=["*", "="])
    _rendered(fig)
    symbols = [t.get_text() for t in fig.texts]
    assert symbols == ["*", "="]
    with pytest.raises(ValueError, match="記号が 2 個必要"):
        viz.show_matrices([np.eye(2)] * 3, between=["*"])


def test_outline_frames_the_pixels_it_names():
    ax = viz.show_image(np.zeros((8, 8)))
    rect = viz.outline(ax, 2, 3, 4, 5)
    assert rect.get_xy() == (2.5, 1.5)  # pixel centres are integers, edges at ±0.5
    assert (rect.get_width(), rect.get_height()) == (5, 4)
    viz.mark_pixels(ax, [2, 4], [3, 5])
    _rendered(ax.figure)


def test_show_matrix_symmetric_colours_centre_on_zero():
    ax = viz.show_matrix(np.array([[0.0, 1.0], [1.0, -4.0]]), cmap="RdBu_r", symmetric=True)
    assert ax.images[0].get_clim() == (-4.0, 4.0)
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours["-4"] == "white" and colours["1"] == "black"


# --------------------------------------------------------------------------- Japanese font

LABEL = "畳み込み（convolution）の出力：⌊(32 + 2·1 − 5)/2⌋ + 1 = 15、σ² γ β ε μ √ Σ ∂ ≈ ≤ → ×"


def _draw_japanese_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="学習データ（train）")
    ax.set_title(LABEL)
    ax.set_xlabel("エポック（epoch）")
    ax.set_ylabel("損失（loss）")
    ax.set_xticks([0, 1], ["フラット化", "ウィンドウ"])
    ax.legend()
    fig.suptitle("特徴マップ（feature map）")
    fig.canvas.draw()
    return fig


def test_japanese_labels_render_without_missing_glyphs():
    assert viz.japanese_font in viz.JAPANESE_FONTS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph … missing from font(s)" would raise
        fig = _draw_japanese_figure()
    assert fig.axes[0].get_title() == LABEL


def test_without_japanese_keeps_the_english_and_the_numbers():
    assert viz.without_japanese("出力（output） 4×4") == "output 4×4"
    assert viz.without_japanese("最大プーリング（max pooling）、2×2") == "max pooling , 2×2"
    assert viz.without_japanese("入力") == ""
    assert viz.without_japanese("stride S = 2") == "stride S = 2"


def test_without_a_japanese_font_text_is_drawn_without_tofu():
    try:
        with pytest.warns(UserWarning, match="no Japanese font found"):
            assert viz.setup_japanese_font(candidates=()) is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no glyph is missing: no warning, no tofu
            fig = _draw_japanese_figure()
            assert viz.setup_japanese_font(candidates=()) is None  # warned once only
        assert fig.axes[0].get_title() == LABEL  # the label itself is kept
    finally:
        assert viz.setup_japanese_font() in viz.JAPANESE_FONTS


def test_show_table_aligns_japanese_headers(capsys):
    text = viz.show_table([["プーリングなし", 1024], ["2×2 プーリング", 256]], ["", "値の数"])
    lines = text.splitlines()
    assert lines[0] == "" + " " * 16 + "値の数"  # "プーリングなし" is 14 columns wide, + 2
    columns = [viz._width(line[:line.index(v)]) for line, v in zip(lines[2:], ("1,024", "256"),
                                                                       strict=True)]
    assert columns == [16, 16]  # the numbers start in the same terminal column
