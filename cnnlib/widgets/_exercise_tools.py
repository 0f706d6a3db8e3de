"""The tools of ``widgets/exercises.py``'s checkers: call the student's function safely, read
its result, find and describe the first difference, and the numerical gradient of one entry."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from cnnlib.widgets._base import Feedback, feedback, is_placeholder


class _Wrong(Exception):
    """Raised inside a checker to stop at the first difference; carries the feedback text."""


def _reads_any_answer(check: Callable[..., Feedback]) -> Callable[..., Feedback]:
    """Turn any answer into feedback: a placeholder or a function still returning ``None`` into
    "not answered yet", a difference the checker found (``_Wrong``) into its text, and an answer
    the checker could not even read into a plain message instead of a traceback."""

    @functools.wraps(check)
    def wrapper(answer: object) -> Feedback:
        try:
            if is_placeholder(answer):
                return feedback(None)
            return check(answer)
        except _Unanswered:
            return feedback(None)
        except _Wrong as wrong:
            return feedback(False, str(wrong))
        except Exception as exc:  # any answer must give feedback, never a traceback
            return feedback(False, f"答えを調べられませんでした: {type(exc).__name__}: {exc}")

    return wrapper


def _call(fn: Callable, *args: np.ndarray | int) -> object:
    """The student's ``fn(*args)`` on copies of the arrays; an exception becomes ``_Wrong``."""
    if not callable(fn):
        raise _Wrong(f"関数を渡してください（{type(fn).__name__} が渡されました）")
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        with np.errstate(all="ignore"):
            return fn(*copies)
    except Exception as exc:  # the student's code: report it
        raise _Wrong(f"実行中にエラー: {type(exc).__name__}: {exc}") from None


class _Unanswered(Exception):
    pass


def _array(value: object, name: str, shape: tuple[int, ...], case: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``, or ``_Wrong`` saying what is off."""
    if value is None:
        raise _Unanswered
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _Wrong(f"{case}: {name} を数の配列に変換できません: {exc}") from None
    if arr.shape != shape:
        raise _Wrong(f"{case}: {name} の形（shape）が {arr.shape} ですが、{shape} のはずです")
    if not np.all(np.isfinite(arr)):
        raise _Wrong(f"{case}: {name} に nan か inf があります")
    return arr


def _first_difference(got: np.ndarray, want: np.ndarray, rtol: float = 1e-6,
                      atol: float = 1e-8) -> tuple[int, ...] | None:
    """Index of the largest difference, or ``None`` when the arrays agree."""
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    diff = np.where(bad, np.abs(got - want), -1.0)
    return tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))


def _idx(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def _numbers(index: tuple[int, ...], got: np.ndarray, want: np.ndarray, name: str) -> str:
    wrong = int(np.sum(~np.isclose(got, want, rtol=1e-6, atol=1e-8)))
    return (f"{name}{_idx(index)} = {got[index]:.6g}、正しくは {want[index]:.6g}"
            f"（{got.size} 個中 {wrong} 個が違います）")


def _numerical(f: Callable[[np.ndarray], float], arr: np.ndarray, index: tuple[int, ...],
               h: float = 1e-6) -> float:
    """Central difference of ``f`` with respect to one element of ``arr``."""
    plus, minus = arr.copy(), arr.copy()
    plus[index] += h
    minus[index] -= h
    return (f(plus) - f(minus)) / (2 * h)
