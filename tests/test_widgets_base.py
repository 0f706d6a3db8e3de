"""The widget pattern (``Explorer``) and the answer readers that every checker shares
(cnnlib.widgets._base)."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cnnlib import viz
from cnnlib.widgets._base import (
    Explorer,
    KeptFigure,
    array_answer,
    call_student,
    check_cases,
    check_choice,
    compare_student_array,
    feedback,
    figure_png,
    int_slider,
    is_placeholder,
    number_answer,
    numbers_answer,
    set_range,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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


def _png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_figure_png_is_the_inline_backends_tight_picture():
    """One Agg render cropped to the ink + 0.1 inch: the size of savefig(bbox_inches="tight")
    within a few pixels, the same pixels where the two overlap, and an RGB PNG."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    viz.show_image(np.linspace(0, 1, 120).reshape(10, 12), "画像のタイトル", ax=axes[0])
    viz.show_matrix(np.arange(9.0).reshape(3, 3), "行列", ax=axes[1])
    ours = _png_pixels(figure_png(fig))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    tight = _png_pixels(buffer.getvalue())
    assert ours.shape[2] == 3 and abs(ours.shape[0] - tight.shape[0]) <= 4
    assert abs(ours.shape[1] - tight.shape[1]) <= 4
    assert ours.shape[0] < 300 and ours.shape[1] < 600  # cropped: the figure is 600×300
    assert (ours[:4] == 255).all() and (ours[:, :4] == 255).all()  # a white margin stays


def test_figure_png_keeps_a_blank_axes_box_as_tight_does():
    """A diagram on frameless axes: the picture spans the axes' box, not just its ink, so it
    keeps its size when the numbers in it change (as with bbox_inches="tight")."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.text(0.5, 0.5, "= 3", ha="center")
    ours = _png_pixels(figure_png(fig))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    tight = _png_pixels(buffer.getvalue())
    box = ax.get_window_extent()
    assert ours.shape[1] >= box.width and abs(ours.shape[1] - tight.shape[1]) <= 4
    assert abs(ours.shape[0] - tight.shape[0]) <= 4


def test_explorer_sends_one_png_per_update_in_a_notebook(monkeypatch):
    from cnnlib.widgets import _base

    sent = []
    monkeypatch.setattr(_base, "in_notebook", lambda: True)
    monkeypatch.setattr(_base, "show_png", lambda png, fig=None: sent.append(png))
    e, _ = _toy_explorer()
    e.controls["p"].value = 2
    assert len(sent) == 2 and sent[-1] == e.png and sent[0] != sent[1]
    assert _png_pixels(e.png).shape[2] == 3
    assert plt.get_fignums() == []  # nothing left for the inline backend to show again


def test_kept_figure_builds_each_layout_once():
    from matplotlib.figure import Figure

    kept, built = KeptFigure(), []

    def build():
        built.append(Figure())
        return built[-1]

    a, new_a = kept.get("matrix", build)
    b, new_b = kept.get("matrix", build)
    c, new_c = kept.get("image", build)
    d, new_d = kept.get("matrix", build)  # back to the first layout: nothing is built
    assert a is b is d and new_a and not new_b and not new_d
    assert c is not a and new_c and len(built) == 2
    kept.forget()
    assert kept.get("image", build)[1] and len(built) == 3


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
    assert fb.status == "wrong" and "（array of numbers）" in fb.text
    fb = _compare(lambda a: "1.5")  # a string is not an array of numbers, even if it parses
    assert fb.status == "wrong" and "（string）" in fb.text
    fb = _compare(lambda a: a * np.nan)
    assert fb.status == "wrong" and "NaN" in fb.text


def test_number_answer(capsys):
    assert number_answer(None)[1].status == "unanswered"
    assert number_answer(0.25) == (0.25, None)
    assert number_answer(np.float32(0.5)) == (0.5, None)
    assert number_answer(np.array(3)) == (3.0, None)
    assert number_answer(15.0, whole=True) == (15, None)
    assert number_answer(10**17 + 1, whole=True) == (10**17 + 1, None)  # exact, not rounded
    for bad in ("many", [1, 2], 15.5):  # 15.5 is not silently cut to 15
        value, verdict = number_answer(bad, whole=True)
        assert value is None and verdict.status == "wrong" and "whole number" in verdict.text
    refused = [(True, "True / False"), (np.True_, "True / False"), ("0.25", "引用符"),
               (float("nan"), "NaN"), (-float("inf"), "inf"), (10**1000, "too large"),
               (1e300, "too large"), (1j, "complex"), (np.ones(3), "array")]
    for bad, reason in refused:
        value, verdict = number_answer(bad)
        assert value is None and verdict.status == "wrong" and reason in verdict.text, bad
    assert "例: 0.5 ** 3" in number_answer("x", example="0.5 ** 3")[1].text
    assert number_answer("x", what="損失")[1].text.startswith("✗ まだ違います（not yet）: 損失: ")
    assert "✗" in capsys.readouterr().out


def test_numbers_answer():
    assert numbers_answer((8, 14.0, 14), "CHW", whole=True) == ((8, 14, 14), None)
    assert numbers_answer(np.array([1.5, 2.0]), "ab") == ((1.5, 2.0), None)
    assert numbers_answer(None, "CHW")[1].status == "unanswered"
    assert "3 つの数" in numbers_answer((8, 14), "CHW")[1].text
    assert "3 つの数の組" in numbers_answer("8, 14, 14", "CHW")[1].text
    text = numbers_answer((8, True, 14), "CHW", whole=True)[1].text
    assert text.endswith("H: True / False ではなく整数（whole number）で答えてください")


def test_array_answer():
    got, verdict = array_answer([[1, 2], [3, 4]], (2, 2))
    assert verdict is None and got.dtype == np.float64 and got.tolist() == [[1, 2], [3, 4]]
    assert array_answer(..., (2, 2))[1].status == "unanswered"
    for bad, reason in [("[[1, 2], [3, 4]]", "（string）"), (10**1000, "（array of numbers）"),
                        ([[1, 2], [3]], "（array of numbers）"), ([[1, 2]], "(2, 2)"),
                        (np.zeros(2 * 10**6), "大きすぎます"), ([[np.nan, 1], [1, 1]], "NaN"),
                        (np.array([["a", "b"], ["c", "d"]]), "dtype")]:
        got, verdict = array_answer(bad, (2, 2), "最大プーリング")
        assert got is None and verdict.status == "wrong", bad
        assert reason in verdict.text and "最大プーリング" in verdict.text, (bad, verdict.text)


def _forever(n):
    return _forever(n + 1)


def test_call_student_reports_every_exception_but_keyboard_interrupt():
    assert call_student(lambda a: a + 1, 1) == (2, None)
    assert call_student(None, 1)[1].status == "unanswered"
    assert "pass the function itself" in call_student(3, 1)[1].text
    fb = call_student(_forever, 0)[1]
    assert "RecursionError" in fb.text and "（infinite recursion）" in fb.text
    fb = call_student(lambda: 0, 1)[1]
    assert "TypeError" in fb.text and "（number of arguments）" in fb.text
    fb = call_student(lambda a: 1 / 0, 1, when="普通の Python では")[1]
    assert fb.text.startswith("✗ まだ違います（not yet）: 普通の Python では: ZeroDivisionError")

    def long_message(a):
        raise ValueError("x" * 10_000)

    assert len(call_student(long_message, 1)[1].text) < 400

    def stop(a):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_student(stop, 1)


def test_check_cases_stops_at_the_first_failing_case(capsys):
    seen = []

    def run_case(case):
        seen.append(case)
        return feedback(False, f"case {case}") if case == 2 else None

    assert check_cases([1, 2, 3], run_case, "all pass").text.endswith("case 2")
    assert seen == [1, 2]
    assert check_cases([1, 3], run_case, "all pass").text.endswith("all pass")
    capsys.readouterr()
    assert check_cases([1, 3], run_case, None) is None
    assert capsys.readouterr().out == ""  # nothing printed: the caller goes on


def test_check_choice(capsys):
    hints = {"a": "hint for a", "c": "hint for c"}
    assert check_choice(None, "b", "why b", hints).status == "unanswered"
    assert check_choice(..., "b", "why b", hints).status == "unanswered"
    fb = check_choice(" B ", "b", "why b", hints)
    assert fb and fb.text.endswith("why b")
    assert check_choice("c", "b", "why b", hints).text.endswith("hint for c")
    for other in ("d", "", "ab", 2, True, ["b"], np.array(["b", "c"]), b"b"):
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


def test_topic_modules_never_import_each_other():
    import ast
    import pathlib

    import cnnlib.widgets

    folder = pathlib.Path(cnnlib.widgets.__file__).parent
    topics = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                assert not (parts[:2] == ["cnnlib", "widgets"] and parts[2:3] and
                            parts[2] in topics), f"{path.name} imports {node.module}"
