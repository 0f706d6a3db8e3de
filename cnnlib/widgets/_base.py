"""The one pattern every widget in ``cnnlib.widgets`` follows, so tests can drive it headlessly.

A widget builder (``conv_explorer()``, ``pool_explorer()``, …) returns an :class:`Explorer`::

    def my_explorer() -> Explorer:
        controls = {"k": IntSlider(3, 1, 7, description="kernel"), "mode": Dropdown(...)}
        def compute(k, mode):        # keyword per control; raise ValueError("...") to refuse
            return {"out": ..., "formula": "..."}
        def draw(result):            # build and return a Figure (do not call plt.show())
            fig, ax = plt.subplots(); ...; return fig
        def adapt(controls):         # optional: narrow other sliders' ranges (use set_range)
            set_range(controls["padding"], 0, controls["k"].value - 1)
        return Explorer(controls, compute, draw, adapt=adapt, rows=[["k", "mode"]])

* ``controls``: dict name → ipywidget; every control's ``value`` is observed.
* ``update()``: adapt → compute(**values) → draw, inside ``output`` (an ``ipywidgets.Output``);
  it ends with ``plt.show()`` and closes the figure. Outside a notebook the figure is rendered
  to Agg instead, so drawing errors surface in tests and benchmarks time the real drawing.
* ``result``: what ``compute`` returned last (``None`` after an error); ``figure``: the last figure;
  ``timings``: seconds spent in ``compute`` and in ``draw`` (incl. rendering) by the last update.
* ``message``: "" on success; otherwise the error text, which is printed in ``output`` in place
  of the stale picture (never a traceback). ``error`` keeps the exception for debugging.
* ``ui``: the box to display; a notebook cell can simply end with the builder call.
* ``threads``: Numba threads while updating (default 1). A widget's arrays are small, and waking
  a sleeping thread pool after the user's pause costs more (tens of ms on a busy machine) than
  the parallel loop saves; pass ``threads=None`` for heavy work (e.g. training a small model).

Tests: ``e = my_explorer(); e.controls["k"].value = 5; assert e.message == ""; e.result[...]``.
Exercise helpers call :func:`feedback` so every ``check_…`` answers the same way, and treat
``None`` / ``...`` (the placeholder in the committed notebook) as "not answered yet".
An "implement this function" exercise compares the student's function case by case with
:func:`compare_student_array`; a multiple-choice question uses :func:`check_choice`.
Only API present in both ipywidgets 7 (Colab) and 8 is used. Under pytest, use the Agg backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numba
import numpy as np
from matplotlib.figure import Figure

from cnnlib.viz import in_notebook

Compute = Callable[..., Any]
Draw = Callable[[Any], Figure | None]


class Explorer:
    """Controls + an output area + the last result; see the module docstring for the pattern."""

    def __init__(self, controls: Mapping[str, widgets.Widget], compute: Compute,
                 draw: Draw | None = None, *, adapt: Callable[[dict], None] | None = None,
                 rows: Sequence[Sequence[str]] | None = None, title: str | None = None,
                 threads: int | None = 1):
        self.controls: dict[str, widgets.Widget] = dict(controls)
        self.output = widgets.Output()
        self.result: Any = None
        self.message = ""
        self.error: Exception | None = None
        self.figure: Figure | None = None
        self.timings: dict[str, float] = {}
        self._compute, self._draw, self._adapt = compute, draw, adapt
        self._threads = threads
        self._busy = False
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        if rows is None:
            rows = [list(self.controls)]
        boxes: list[widgets.Widget] = []
        if title:
            boxes.append(widgets.HTML(f"<b>{title}</b>"))
        boxes += [widgets.HBox([self.controls[name] for name in row],
                               layout=widgets.Layout(flex_flow="row wrap")) for row in rows]
        self.ui = widgets.VBox([*boxes, self.output])
        self.update()

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, change: dict) -> None:
        if not self._busy:  # ignore the changes that ``adapt`` itself makes
            self.update()

    def update(self) -> Any:
        """Recompute and redraw from the current control values; returns ``result``."""
        if self._busy:
            return self.result
        self._busy = True
        before = set(plt.get_fignums())
        threads_before = numba.get_num_threads()
        if self._threads is not None:
            numba.set_num_threads(min(self._threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with self.output:
                if in_notebook():
                    self.output.clear_output(wait=True)
                try:
                    start = time.perf_counter()
                    if self._adapt is not None:
                        self._adapt(self.controls)
                    result = self._compute(**self.values())
                    computed = time.perf_counter()
                    fig = self._draw(result) if self._draw is not None else None
                    if fig is not None and not in_notebook():
                        fig.canvas.draw()  # render to Agg so drawing errors surface in tests
                    self.timings = {"compute": computed - start,
                                    "draw": time.perf_counter() - computed}
                except Exception as exc:  # shown as a message, never as a traceback
                    self._fail(exc, before)
                else:
                    self.result, self.figure, self.message, self.error = result, fig, "", None
                    if fig is not None:
                        plt.show()
                        plt.close(fig)
        finally:
            numba.set_num_threads(threads_before)  # the setting is per thread: restore it
            self._busy = False
        return self.result

    def _fail(self, exc: Exception, before: set[int]) -> None:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
        if isinstance(exc, (ValueError, TypeError)):
            self.message = str(exc)
        else:
            self.message = f"{type(exc).__name__}: {exc}"
        self.result, self.figure, self.error = None, None, exc
        print(f"⚠ {self.message}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.ui)


def set_range(slider: widgets.Widget, low: int | float, high: int | float) -> None:
    """Set a slider's ``min``/``max`` in a safe order (its value is clamped into the range)."""
    high = max(low, high)
    if low > slider.max:
        slider.max = high
        slider.min = low
    else:
        slider.min = low
        slider.max = high


def int_slider(value: int, low: int, high: int, description: str, step: int = 1,
               continuous: bool = False) -> widgets.IntSlider:
    """An ``IntSlider`` with the description fully visible (``continuous_update=False``)."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=continuous,
                             style={"description_width": "initial"})


def float_slider(value: float, low: float, high: float, description: str, step: float = 0.01,
                 continuous: bool = False, readout_format: str = ".2f") -> widgets.FloatSlider:
    """A ``FloatSlider`` with the description fully visible (``continuous_update=False``)."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step,
                               description=description, continuous_update=continuous,
                               readout_format=readout_format,
                               style={"description_width": "initial"})


def dropdown(options: Sequence[str], value: str, description: str) -> widgets.Dropdown:
    """A ``Dropdown`` with the description fully visible."""
    return widgets.Dropdown(options=list(options), value=value, description=description,
                            style={"description_width": "initial"})


class Feedback:
    """What a ``check_…`` helper returns: truthy only for a correct answer.

    The text has already been printed, so ending a cell with ``check_x(answer)`` shows it once.
    ``status`` is ``"correct"``, ``"wrong"`` or ``"unanswered"``.
    """

    def __init__(self, status: str, text: str):
        self.status, self.text = status, text

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:
        return f"Feedback({self.status!r}, {self.text!r})"

    def _ipython_display_(self) -> None:
        pass


def is_placeholder(answer: object) -> bool:
    """True for the placeholders the committed notebooks use (``None`` and ``...``)."""
    return answer is None or answer is Ellipsis


def feedback(ok: bool | None, text: str = "") -> Feedback:
    """Print and return the verdict: ``ok=None`` means the placeholder was not replaced yet."""
    if ok is None:
        fb = Feedback("unanswered", "まだ回答がありません（not answered yet）: "
                      "None / ... を自分の答えに置き換えて、もう一度実行してください。")
    elif ok:
        fb = Feedback("correct", "✓ 正解（correct）" + (f": {text}" if text else ""))
    else:
        fb = Feedback("wrong", "✗ まだ違います（not yet）" + (f": {text}" if text else ""))
    print(fb.text)
    return fb


def compare_student_array(fn: Callable, args: Sequence[Any], want: np.ndarray, *,
                          rtol: float, atol: float, shape_message: str,
                          value_message: str) -> Feedback | None:
    """Run the student's ``fn(*args)`` on one test case and compare the result with ``want``.

    Returns ``None`` when the case passes, so the caller goes on to its next case; otherwise
    the (already printed) :class:`Feedback` to return: an exception raised by ``fn`` is reported
    instead of crashing the notebook; a placeholder ``fn``, or ``fn`` returning ``None``, means
    "not answered yet"; a result of another shape gives ``shape_message`` (its ``{got}`` and
    ``{want}`` are filled in with the two shapes; double the braces inside an f-string);
    different values give ``value_message``.
    The result is compared as float64 with ``np.allclose(got, want, rtol=rtol, atol=atol)``.
    """
    if is_placeholder(fn):
        return feedback(None)
    got, verdict = run_student(fn, *args)
    if verdict is not None:
        return verdict
    if got.shape != want.shape:
        return feedback(False, shape_message.format(got=got.shape, want=want.shape))
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        return feedback(False, value_message)
    return None


def run_student(fn: Callable, *args: Any) -> tuple[np.ndarray | None, Feedback | None]:
    """``fn(*args)`` as a float64 array and ``None``, or ``None`` and the (printed) feedback.

    An exception raised by the student's code is reported instead of crashing the notebook;
    a result of ``None`` means "not answered yet".
    """
    try:
        got = fn(*args)
    except Exception as exc:  # the student's code: report, do not crash the notebook
        return None, feedback(False, f"実行中にエラー: {type(exc).__name__}: {exc}")
    if got is None:
        return None, feedback(None)
    try:
        return np.asarray(got, dtype=np.float64), None
    except (TypeError, ValueError) as exc:
        return None, feedback(False, "結果を数の配列に変換できません（not an array of numbers）: "
                                     f"{exc}")


def number_answer(answer: object, whole: bool = False,
                  example: str = "") -> tuple[float | int | None, Feedback | None]:
    """The student's number and ``None``, or ``None`` and the (printed) feedback.

    ``None`` / ``...`` means "not answered yet"; anything ``float()`` cannot read is asked for
    a number. With ``whole=True`` the answer must be a whole number (15.0 counts as 15; 15.5 is
    not silently cut to 15) and is returned as an ``int``. ``example`` is added to the request.
    """
    if is_placeholder(answer):
        return None, feedback(None)
    kind = "整数（whole number）" if whole else "数（number）"
    request = f"{kind}で答えてください" + (f"（例: {example}）" if example else "")
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None, feedback(False, request)
    if not whole:
        return value, None
    if not value.is_integer():
        return None, feedback(False, request)
    return int(value), None


def check_choice(answer: object, right: str, explanation: str,
                 hints: Mapping[str, str]) -> Feedback:
    """Judge a multiple-choice answer: one of "a", "b", "c" (case and spaces ignored).

    ``right``: the correct letter, answered with ``explanation``; ``hints``: the feedback for
    each wrong letter; ``None`` / ``...``: not answered yet; anything else: asked for a letter.
    """
    if is_placeholder(answer):
        return feedback(None)
    choice = str(answer).strip().lower()
    if choice == right:
        return feedback(True, explanation)
    if choice in hints:
        return feedback(False, hints[choice])
    return feedback(False, '"a"、"b"、"c" のどれかで答えてください（answer with one letter）。')


__all__ = [
    "Explorer",
    "Feedback",
    "check_choice",
    "compare_student_array",
    "dropdown",
    "feedback",
    "float_slider",
    "int_slider",
    "is_placeholder",
    "number_answer",
    "run_student",
    "set_range",
]
