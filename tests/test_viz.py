"""The shared plotting primitives (cnnlib.viz) and the widget pattern (cnnlib.widgets._base)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from numba import njit

from cnnlib import viz
from cnnlib.widgets._base import (
    Explorer,
    check_choice,
    compare_student_array,
    feedback,
    int_slider,
    is_placeholder,
    number_answer,
    set_range,
)


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
    with pytest.raises(TypeError, match="cannot show the source"):
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
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["grey", "HWC", "CHW"]
    assert len(fig.axes) == 4 and not fig.axes[3].get_visible()  # 2×2 grid, one unused
    assert visible[1].images[0].get_array().shape == (5, 6, 3)
    assert visible[2].images[0].get_array().shape == (5, 6, 3)


def test_show_images_rejects_mismatched_titles_and_bad_shapes():
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        viz.show_images([np.zeros((2, 2))] * 2, titles=["a"])
    with pytest.raises(ValueError, match="cannot show an array of shape"):
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
    with pytest.raises(ValueError, match="2-D"):
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
    with pytest.raises(ValueError, match="need 2 symbols"):
        viz.show_matrices([np.eye(2)] * 3, between=["*"])


def test_outline_frames_the_pixels_it_names():
    ax = viz.show_image(np.zeros((8, 8)))
    rect = viz.outline(ax, 2, 3, 4, 5)
    assert rect.get_xy() == (2.5, 1.5)  # pixel centres are integers, edges at ±0.5
    assert (rect.get_width(), rect.get_height()) == (5, 4)
    viz.mark_pixels(ax, [2, 4], [3, 5])
    _rendered(ax.figure)


# --------------------------------------------------------------------------- Explorer


def _toy_explorer():
    controls = {"k": int_slider(3, 1, 7, "k"), "p": int_slider(0, 0, 5, "p")}
    calls = []

    def compute(k, p):
        calls.append((k, p))
        if k == 6:
            raise ValueError("k = 6 is not allowed")
        if k == 7:
            raise RuntimeError("boom")
        return {"size": k + 2 * p}

    def draw(result):
        fig, ax = plt.subplots()
        viz.show_matrix(np.ones((result["size"], 1)), ax=ax)
        return fig

    def adapt(c):
        set_range(c["p"], 0, c["k"].value - 1)

    return Explorer(controls, compute, draw, adapt=adapt, rows=[["k"], ["p"]]), calls


def test_explorer_computes_on_construction_and_on_every_change():
    e, calls = _toy_explorer()
    assert e.result == {"size": 3} and e.message == "" and e.figure is not None
    e.controls["p"].value = 2
    assert e.result == {"size": 7}
    assert calls == [(3, 0), (3, 2)]
    assert plt.get_fignums() == []  # every drawn figure is closed after showing


def test_explorer_adapt_narrows_ranges_without_extra_updates():
    e, calls = _toy_explorer()
    e.controls["p"].value = 2
    e.controls["k"].value = 2  # p's max becomes 1, which clamps p from 2 to 1
    assert e.controls["p"].max == 1 and e.controls["p"].value == 1
    assert e.result == {"size": 4}
    assert calls[-1] == (2, 1) and len(calls) == 3


def test_explorer_shows_a_message_instead_of_a_traceback(capsys):
    e, _ = _toy_explorer()
    e.controls["k"].value = 6
    assert e.message == "k = 6 is not allowed"
    assert e.result is None and e.figure is None and isinstance(e.error, ValueError)
    assert "k = 6 is not allowed" in capsys.readouterr().out
    e.controls["k"].value = 7
    assert e.message == "RuntimeError: boom"
    e.controls["k"].value = 4
    assert e.message == "" and e.result == {"size": 4 + 2 * e.controls["p"].value}
    assert plt.get_fignums() == []


def test_explorer_closes_a_half_drawn_figure_on_error():
    def draw(result):
        plt.subplots()
        raise ValueError("cannot draw")

    e = Explorer({"a": int_slider(1, 0, 2, "a")}, lambda a: a, draw)
    assert e.message == "cannot draw" and plt.get_fignums() == []


def test_explorer_ui_holds_controls_and_output():
    e, _ = _toy_explorer()
    rows = e.ui.children
    assert rows[-1] is e.output
    assert [row.children[0] for row in rows[:-1]] == [e.controls["k"], e.controls["p"]]


def test_set_range_moves_the_window_in_either_direction():
    s = int_slider(2, 0, 3, "s")
    set_range(s, 5, 9)  # new min above the old max
    assert (s.min, s.max, s.value) == (5, 9, 5)
    set_range(s, 0, 1)
    assert (s.min, s.max, s.value) == (0, 1, 1)
    set_range(s, 4, 2)  # an empty range collapses to one value
    assert (s.min, s.max, s.value) == (4, 4, 4)


def test_feedback_statuses(capsys):
    assert is_placeholder(None) and is_placeholder(...) and not is_placeholder(0)
    fb = feedback(None)
    assert fb.status == "unanswered" and not fb
    assert "not answered yet" in capsys.readouterr().out
    assert feedback(True, "42") and "✓" in capsys.readouterr().out
    fb = feedback(False, "expected a number")
    assert not fb and fb.status == "wrong" and "expected a number" in capsys.readouterr().out


def _compare(fn):
    """One case of an "implement this" exercise: ``fn(a)`` should return ``a`` unchanged."""
    want = np.arange(6.0).reshape(2, 3)
    return compare_student_array(fn, (want.copy(),), want, rtol=1e-6, atol=1e-9,
                                 shape_message="want {want}, got {got}",
                                 value_message="values differ")


def test_compare_student_array_passes_only_a_matching_result(capsys):
    assert _compare(lambda a: a) is None
    assert _compare(lambda a: a.tolist()) is None  # any array-like, compared as float64
    assert _compare(lambda a: a.astype(np.float32)) is None
    assert _compare(lambda a: a * (1 + 1e-7)) is None  # within rtol
    assert capsys.readouterr().out == ""  # a passing case prints nothing
    assert _compare(lambda a: a + 1e-3).text.endswith("values differ")
    fb = _compare(lambda a: a.T)
    assert fb.status == "wrong" and fb.text.endswith("want (2, 3), got (3, 2)")


def test_compare_student_array_reports_unanswered_and_errors_without_raising():
    assert _compare(None).status == "unanswered"
    assert _compare(lambda a: None).status == "unanswered"
    fb = _compare(lambda a: a.nope)
    assert fb.status == "wrong" and "AttributeError" in fb.text
    fb = _compare(lambda a: [[1, "x"]])
    assert fb.status == "wrong" and "not an array of numbers" in fb.text


def test_number_answer(capsys):
    assert number_answer(None)[1].status == "unanswered"
    assert number_answer("0.25") == (0.25, None)
    assert number_answer(15.0, whole=True) == (15, None)
    for bad in ("many", [1, 2], 15.5):  # 15.5 is not silently cut to 15
        value, verdict = number_answer(bad, whole=True)
        assert value is None and verdict.status == "wrong" and "whole number" in verdict.text
    assert "例: 0.5 ** 3" in number_answer("x", example="0.5 ** 3")[1].text
    assert "✗" in capsys.readouterr().out


def test_check_choice(capsys):
    hints = {"a": "hint for a", "c": "hint for c"}
    assert check_choice(None, "b", "why b", hints).status == "unanswered"
    assert check_choice(..., "b", "why b", hints).status == "unanswered"
    fb = check_choice(" B ", "b", "why b", hints)
    assert fb and fb.text.endswith("why b")
    assert check_choice("c", "b", "why b", hints).text.endswith("hint for c")
    for other in ("d", "", "ab", 2):
        fb = check_choice(other, "b", "why b", hints)
        assert fb.status == "wrong" and "one letter" in fb.text


def test_explorer_computes_single_threaded_and_restores_the_setting():
    import numba

    before = numba.get_num_threads()
    e = Explorer({"a": int_slider(1, 0, 2, "a")}, lambda a: numba.get_num_threads())
    assert e.result == 1 and numba.get_num_threads() == before
    e = Explorer({"a": int_slider(1, 0, 2, "a")}, lambda a: numba.get_num_threads(), threads=None)
    assert e.result == before
    e.controls["a"].value = 2
    assert e.timings["compute"] >= 0 and e.timings["draw"] >= 0


def test_show_matrix_symmetric_colours_centre_on_zero():
    ax = viz.show_matrix(np.array([[0.0, 1.0], [1.0, -4.0]]), cmap="RdBu_r", symmetric=True)
    assert ax.images[0].get_clim() == (-4.0, 4.0)
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours["-4"] == "white" and colours["1"] == "black"
