"""Exercises: how every ``check_…`` in ``cnnlib.widgets`` reads and judges a student's answer.

Every ``check_…`` is decorated with :func:`exercise` and reads the student's answer with ONE of
the readers below before judging it, so any answer at all (None, ``...``, a string, NaN,
10**1000, True, an array, a function that raises or recurses forever) becomes feedback in
Japanese, never a traceback and never a false "correct":

* a number: :func:`number_answer` (``whole=True`` for counts); several: :func:`numbers_answer`;
* a small matrix: :func:`array_answer`; a letter: :func:`check_choice` (:func:`choice_answer`);
* a function: :func:`call_student` / :func:`run_student`, and case by case
  :func:`compare_student_array` inside :func:`check_cases`.

All of them return ``(value, None)`` or ``(None, feedback)``, print through :func:`feedback`,
and treat ``None`` / ``...`` (the placeholder in the committed notebook) as "not answered yet".
Most exercises are one of four kinds, each judged by one table-driven helper:

* "compute a number": :func:`check_number` (several numbers: :func:`check_numbers`), with the
  right value, the text for it, a table of typical wrong values with their hints, and a hint
  for everything else;
* "implement this function": :func:`check_function`, with a reference function and a list of
  input cases (the messages name a case by its arguments, ``{0}``, ``{1.shape}``, …);
* "compute this small matrix by hand": :func:`check_array`;
* "explain, a / b / c": :func:`check_choice`.

``tests/test_widgets_checkers.py`` finds every checker and feeds it a grid of bad answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


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
                          value_message: str, case: Sequence[Any] = ()) -> Feedback | None:
    """Run the student's ``fn(*args)`` on one test case and compare the result with ``want``.

    Returns ``None`` when the case passes, so the caller goes on to its next case; otherwise
    the (already printed) :class:`Feedback` to return (see :func:`run_student`); a result of
    another shape gives ``shape_message`` (its ``{got}`` and ``{want}`` are filled in with the
    two shapes; double the braces inside an f-string); different values give ``value_message``.
    In both messages ``{0}``, ``{1}``, … are the items of ``case`` (e.g. ``{0.shape}``).
    The result is compared as float64 with ``np.allclose(got, want, rtol=rtol, atol=atol)``.
    """
    got, verdict = run_student(fn, *args)
    if verdict is not None:
        return verdict
    if got.shape != want.shape:
        return feedback(False, shape_message.format(*case, got=got.shape, want=want.shape))
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        return feedback(False, value_message.format(*case, got=got.shape, want=want.shape))
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


# --------------------------------------------------------------------------- judging, by table


def check_function(fn: object, reference: Callable[..., Any], cases: Sequence[Sequence[Any]], *,
                   rtol: float, atol: float, shape_message: str, value_message: str,
                   success: str) -> Feedback:
    """Judge an "implement this" exercise: for every ``args`` of ``cases`` (in order), the
    student's ``fn(*args)`` must match ``reference(*args)`` (see :func:`compare_student_array`).

    The student's function gets copies of the arrays, so writing into them changes nothing.
    In both messages ``{got}`` and ``{want}`` are the two shapes and ``{0}``, ``{1}``, … the
    case's arguments (``"x の形 {0.shape}、p = {1}"``). All cases pass: correct, ``success``.
    """

    def run_case(args: Sequence[Any]) -> Feedback | None:
        want = np.asarray(reference(*args))
        copies = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
        return compare_student_array(fn, copies, want, rtol=rtol, atol=atol,
                                     shape_message=shape_message, value_message=value_message,
                                     case=args)

    return check_cases(cases, run_case, success)  # type: ignore[return-value]


Hints = Mapping[Any, str]


def _judge(value: Any, right: Any, correct: str, wrong: Hints,
           otherwise: str | Callable[[Any], str], rtol: float | None) -> Feedback:
    def same(a: Any, b: Any) -> bool:
        return bool(a == b) if rtol is None else bool(np.allclose(a, b, rtol=rtol))

    if same(value, right):
        return feedback(True, correct)
    for typical, hint in wrong.items():
        if same(value, typical):
            return feedback(False, hint)
    return feedback(False, otherwise(value) if callable(otherwise) else otherwise)


def check_number(answer: object, right: float, correct: str, wrong: Hints,
                 otherwise: str | Callable[[Any], str], *, whole: bool = True,
                 rtol: float | None = None, example: str = "") -> Feedback:
    """Judge a "compute this number" exercise, read with :func:`number_answer`.

    ``right`` is answered with ``correct``; each typical mistake ``wrong`` lists (value → hint,
    tried in order) with its hint; any other number with ``otherwise`` (a text, or a function
    of the number giving one). Numbers are compared exactly, or with ``np.isclose(…, rtol)``.
    """
    value, verdict = number_answer(answer, whole=whole, example=example)
    if verdict is not None:
        return verdict
    return _judge(value, right, correct, wrong, otherwise, rtol)


def check_array(answer: object, want: np.ndarray, what: str) -> Feedback:
    """Judge a "compute this small array by hand" exercise, read with :func:`array_answer`:
    correct when every value is close to ``want``; otherwise the first wrong position is named.
    ``what`` names the operation (the answer is called "{what}の結果")."""
    got, verdict = array_answer(answer, want.shape, f"{what}の結果")
    if verdict is not None:
        return verdict
    wrong = np.argwhere(~np.isclose(got, want))
    if len(wrong):
        i, j = wrong[0]
        return feedback(False, f"{len(wrong)} 個の値が違います（values differ）。たとえば行 {i}、"
                               f"列 {j} です（0 から数えます）")
    return feedback(True, f"{what}の結果 = {want.tolist()}")


def check_numbers(answer: object, names: Sequence[str], right: tuple, correct: str,
                  wrong: Hints, otherwise: str, *, whole: bool = True) -> Feedback:
    """:func:`check_number` for an answer of several numbers (a tuple, read with
    :func:`numbers_answer`; ``names`` label them); ``wrong`` maps tuples to hints."""
    values, verdict = numbers_answer(answer, names, whole=whole)
    if verdict is not None:
        return verdict
    return _judge(values, tuple(right), correct, wrong, otherwise, None)


__all__ = [
    "MAX_ELEMENTS",
    "MAX_NUMBER",
    "RUN_ERROR",
    "SAFETY_NET",
    "Feedback",
    "array_answer",
    "call_student",
    "check_array",
    "check_cases",
    "check_choice",
    "check_function",
    "check_number",
    "check_numbers",
    "choice_answer",
    "compare_student_array",
    "exercise",
    "feedback",
    "is_placeholder",
    "number_answer",
    "numbers_answer",
    "run_student",
]
