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
Exercises: every ``check_…`` is decorated with :func:`exercise` and reads the student's answer
with ONE of the readers below before judging it, so any answer at all (None, ``...``, a string,
NaN, 10**1000, True, an array, a function that raises or recurses forever) becomes feedback in
Japanese, never a traceback and never a false "correct":

* a number: :func:`number_answer` (``whole=True`` for counts); several: :func:`numbers_answer`;
* a small matrix: :func:`array_answer`; a letter: :func:`check_choice` (:func:`choice_answer`);
* a function: :func:`call_student` / :func:`run_student`, and case by case
  :func:`compare_student_array` inside :func:`check_cases`.

All of them return ``(value, None)`` or ``(None, feedback)``, print through :func:`feedback`,
and treat ``None`` / ``...`` (the placeholder in the committed notebook) as "not answered yet".
``tests/test_widgets_checkers.py`` finds every checker and feeds it a grid of bad answers.
Only API present in both ipywidgets 7 (Colab) and 8 is used. Under pytest, use the Agg backend.
"""

from __future__ import annotations

import functools
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


def dropdown(options: Sequence[str], value: str, description: str,
             labels: Mapping[str, str] | None = None) -> widgets.Dropdown:
    """A ``Dropdown`` with the description fully visible; ``labels`` maps an option (the
    ``value`` the code sees, English) to the text the student reads (Japanese)."""
    choices = [(labels.get(o, o), o) for o in options] if labels else list(options)
    return widgets.Dropdown(options=choices, value=value, description=description,
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


# --------------------------------------------------------------------------- reading answers
#
# Every ``check_…`` reads the student's answer with one of the readers below and judges only
# what they return, so no answer (None, ``...``, a string, NaN, 10**1000, True, an array, a
# function that raises or recurses forever) can reach the judging code in a form it does not
# expect. ``@exercise`` is the last safety net: a checker that still raises answers with a
# message instead of a traceback.

MAX_NUMBER = 10**18  # larger answers are refused: no exercise has one, and they print badly
SAFETY_NET = "確認中に予期しないエラーが起きました（unexpected error in the checker）"
_MAX_MESSAGE = 300  # characters of a student's exception message that are shown


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + " …"


def _error_text(exc: BaseException) -> str:
    """``TypeError: …`` (shortened), with a hint for the usual causes."""
    text = f"{type(exc).__name__}: {_short(str(exc))}" if str(exc) else type(exc).__name__
    if isinstance(exc, RecursionError):
        text += "。関数が自分自身を終わりなく呼んでいます（infinite recursion）"
    elif isinstance(exc, TypeError) and "argument" in str(exc):
        text += "。引数の数と順番を問題文と比べてください（number of arguments）"
    return text


def exercise(check: Callable[[Any], Feedback]) -> Callable[[Any], Feedback]:
    """Decorate every ``check_…``: whatever happens inside, the student gets feedback.

    The readers below already turn every kind of answer into feedback; this catches what they
    do not foresee (``KeyboardInterrupt`` still stops the cell), so a checker never shows a
    traceback. The message starts with ``SAFETY_NET``, which the tests look for.
    """

    @functools.wraps(check)
    def checked(answer: Any) -> Feedback:
        try:
            return check(answer)
        except Exception as exc:  # the safety net: report, never raise into the notebook
            return feedback(False, f"{SAFETY_NET}: {_error_text(exc)}")

    checked.is_exercise = True  # type: ignore[attr-defined]
    return checked


def _read_number(answer: object, whole: bool) -> float | int | str:
    """The answer as a finite number, or the reason it is not one (a ``str``)."""
    kind = "整数（whole number）" if whole else "数（number）"
    if isinstance(answer, (bool, np.bool_)):
        return f"True / False ではなく{kind}で答えてください"
    if isinstance(answer, (str, bytes)):
        return f"引用符（\" \"）を外して、{kind}で答えてください"
    if isinstance(answer, np.ndarray):
        if answer.size != 1:
            return f"配列（array）ではなく、1 つの{kind}で答えてください"
        answer = answer.reshape(()).item()
        if isinstance(answer, bool):
            return f"True / False ではなく{kind}で答えてください"
    if isinstance(answer, (int, np.integer)):
        value = int(answer)
        if abs(value) > MAX_NUMBER:  # float() would round or overflow (10**1000)
            return f"その数は大きすぎます（too large）。{kind}で答えてください"
        return value if whole else float(value)
    if isinstance(answer, (complex, np.complexfloating)):
        return f"複素数（complex）ではなく、実数の{kind}で答えてください"
    try:
        value = float(answer)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return f"{kind}で答えてください"
    except Exception:  # an object whose __float__ fails in its own way
        return f"{kind}で答えてください"
    if not np.isfinite(value) or abs(value) > MAX_NUMBER:
        if np.isfinite(value):
            return f"その数は大きすぎます（too large）。{kind}で答えてください"
        return f"NaN や無限大（inf）ではなく、有限の{kind}で答えてください"
    if whole:
        if not value.is_integer():
            return f"{kind}で答えてください（{value:g} は整数ではありません）"
        return int(value)
    return value


def number_answer(answer: object, whole: bool = False, example: str = "",
                  what: str = "") -> tuple[float | int | None, Feedback | None]:
    """The student's number and ``None``, or ``None`` and the (printed) feedback.

    ``None`` / ``...`` means "not answered yet". Refused, each with its own message: ``True`` /
    ``False`` (``True == 1`` in Python, but it is not a number answer), strings (``"15"``),
    arrays with more than one element, complex numbers, NaN, ±inf and numbers too large for a
    float. With ``whole=True`` the answer must be a whole number (15.0 counts as 15; 15.5 is
    not silently cut to 15) and is returned as an exact ``int``. ``example`` is added to the
    request; ``what`` (e.g. "関数が返した損失") starts it.
    """
    if is_placeholder(answer):
        return None, feedback(None)
    value = _read_number(answer, whole)
    if isinstance(value, str):
        return None, feedback(False, (f"{what}: " if what else "") + value
                              + (f"（例: {example}）" if example else ""))
    return value, None


def numbers_answer(answer: object, names: Sequence[str],
                   whole: bool = False) -> tuple[tuple | None, Feedback | None]:
    """A tuple of ``len(names)`` numbers (each read like :func:`number_answer`) and ``None``,
    or ``None`` and the (printed) feedback; ``names`` label the items in the messages."""
    if is_placeholder(answer):
        return None, feedback(None)
    form = "(" + ", ".join(names) + ")"
    if isinstance(answer, np.ndarray) and answer.ndim == 1 and answer.size < 100:
        answer = list(answer)
    if not isinstance(answer, (tuple, list)):
        return None, feedback(False, f"{len(names)} つの数の組 {form} で答えてください")
    if len(answer) != len(names):
        return None, feedback(False, f"{len(names)} つの数 {form} が必要ですが、"
                                     f"{len(answer)} 個ありました")
    values = []
    for name, item in zip(names, answer, strict=True):
        value = _read_number(item, whole)
        if isinstance(value, str):
            return None, feedback(False, f"{name}: {value}")
        values.append(value)
    return tuple(values), None


MAX_ELEMENTS = 1_000_000  # an answer or a result larger than this is refused before comparing


def _read_array(got: object) -> np.ndarray | str:
    """``got`` as a finite float64 array, or the reason it is not one (a ``str``)."""
    if isinstance(got, (str, bytes)):
        return "文字列（string）ではなく、数の配列で答えてください"
    if isinstance(got, (bool, np.bool_)):
        return "True / False ではなく、数の配列で答えてください"
    if isinstance(got, np.ndarray):
        if got.size > MAX_ELEMENTS:
            return f"配列が大きすぎます（{got.size:,} 個の値, shape {got.shape}）"
        if got.dtype.kind not in "iuf":
            return f"数の配列ではありません（dtype {got.dtype}）"
    try:
        array = np.asarray(got, dtype=np.float64)
    except Exception:  # ragged lists, 10**1000, strings inside, objects
        return "数の配列（array of numbers）に変換できません。例: [[1, 2], [3, 4]]"
    if array.size > MAX_ELEMENTS:
        return f"配列が大きすぎます（{array.size:,} 個の値, shape {array.shape}）"
    if not np.isfinite(array).all():
        return "NaN や無限大（inf）が含まれています（not finite）"
    return array


def array_answer(answer: object, shape: tuple[int, ...],
                 what: str = "答え") -> tuple[np.ndarray | None, Feedback | None]:
    """The student's array (float64, finite, of ``shape``) and ``None``, or ``None`` and the
    (printed) feedback. ``what`` names the answer in the messages."""
    if is_placeholder(answer):
        return None, feedback(None)
    array = _read_array(answer)
    if isinstance(array, str):
        return None, feedback(False, f"{what}: {array}")
    if array.shape != tuple(shape):
        return None, feedback(False, f"{what}の形は {tuple(shape)} のはずですが、"
                                     f"{array.shape} でした（shape）")
    return array, None


RUN_ERROR = "実行中にエラー（error while running your function）"


def call_student(fn: object, *args: Any, when: str = RUN_ERROR) -> tuple[Any, Feedback | None]:
    """Call the student's ``fn(*args)``: its result and ``None``, or ``None`` and the (printed)
    feedback. A placeholder is "not answered yet", a non-function is asked for a function, and
    any ``Exception`` raised inside (``RecursionError`` included) is reported in words; only
    ``KeyboardInterrupt`` (the stop button) passes through; ``when`` starts that report."""
    if is_placeholder(fn):
        return None, feedback(None)
    if not callable(fn):
        return None, feedback(False, "関数そのものを渡してください（pass the function itself, "
                                     "without calling it）")
    try:
        return fn(*args), None
    except Exception as exc:  # the student's code: report, do not crash the notebook
        return None, feedback(False, f"{when}: {_error_text(exc)}")


def run_student(fn: Callable, *args: Any) -> tuple[np.ndarray | None, Feedback | None]:
    """``fn(*args)`` as a finite float64 array and ``None``, or ``None`` and the (printed)
    feedback: see :func:`call_student`; a result of ``None`` means "not answered yet", and a
    result that is not an array of finite numbers is reported."""
    got, verdict = call_student(fn, *args)
    if verdict is not None:
        return None, verdict
    if got is None:
        return None, feedback(None)
    array = _read_array(got)
    if isinstance(array, str):
        return None, feedback(False, f"関数の結果（result）: {array}")
    return array, None


def compare_student_array(fn: Callable, args: Sequence[Any], want: np.ndarray, *,
                          rtol: float, atol: float, shape_message: str,
                          value_message: str) -> Feedback | None:
    """Run the student's ``fn(*args)`` on one test case and compare the result with ``want``.

    Returns ``None`` when the case passes, so the caller goes on to its next case; otherwise
    the (already printed) :class:`Feedback` to return (see :func:`run_student`); a result of
    another shape gives ``shape_message`` (its ``{got}`` and ``{want}`` are filled in with the
    two shapes; double the braces inside an f-string); different values give ``value_message``.
    The result is compared as float64 with ``np.allclose(got, want, rtol=rtol, atol=atol)``.
    """
    got, verdict = run_student(fn, *args)
    if verdict is not None:
        return verdict
    if got.shape != want.shape:
        return feedback(False, shape_message.format(got=got.shape, want=want.shape))
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        return feedback(False, value_message)
    return None


def check_cases(cases: Sequence[Any], run_case: Callable[[Any], Feedback | None],
                success: str | None) -> Feedback | None:
    """Run ``run_case(case)`` for each case of an "implement this" exercise, in order.

    The first feedback that ``run_case`` returns is the verdict; if every case passes (returns
    ``None``), the answer is correct with the text ``success`` — or, with ``success=None``,
    ``None`` is returned so that the caller can add checks of its own.
    """
    for case in cases:
        verdict = run_case(case)
        if verdict is not None:
            return verdict
    return None if success is None else feedback(True, success)


def choice_answer(answer: object, letters: str = "abc") -> tuple[str | None, Feedback | None]:
    """The student's letter (lower case, spaces stripped) and ``None``, or ``None`` and the
    (printed) feedback: only a string holding exactly one of ``letters`` is accepted."""
    if is_placeholder(answer):
        return None, feedback(None)
    choice = answer.strip().lower() if isinstance(answer, str) else None
    if choice is None or len(choice) != 1 or choice not in letters:
        listed = "、".join(f'"{c}"' for c in letters)
        return None, feedback(False, f"{listed} のどれか 1 文字を、引用符つきで答えてください"
                                     "（answer with one letter）。")
    return choice, None


def check_choice(answer: object, right: str, explanation: str,
                 hints: Mapping[str, str]) -> Feedback:
    """Judge a multiple-choice answer: one of "a", "b", "c" (case and spaces ignored).

    ``right``: the correct letter, answered with ``explanation``; ``hints``: the feedback for
    each wrong letter; ``None`` / ``...``: not answered yet; anything else: asked for a letter.
    """
    letters = "".join(sorted({right, *hints}))
    choice, verdict = choice_answer(answer, letters)
    if verdict is not None:
        return verdict
    if choice == right:
        return feedback(True, explanation)
    return feedback(False, hints[choice])


__all__ = [
    "MAX_ELEMENTS",
    "SAFETY_NET",
    "Explorer",
    "Feedback",
    "array_answer",
    "call_student",
    "check_cases",
    "check_choice",
    "choice_answer",
    "compare_student_array",
    "dropdown",
    "exercise",
    "feedback",
    "float_slider",
    "int_slider",
    "is_placeholder",
    "number_answer",
    "numbers_answer",
    "run_student",
    "set_range",
]
