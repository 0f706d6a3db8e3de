"""Every exercise checker in cnnlib.widgets turns any answer into feedback (issue 10, item 4).

The checkers are found by introspection, so a new ``check_…`` is covered without editing this
file. Each one is given a grid of bad answers; it must return a printed ``Feedback``, never
raise, never say "correct", and never need its ``@exercise`` safety net (the readers in
``cnnlib.widgets._base`` must already have turned the answer into words).
"""

import importlib
import inspect
import pkgutil
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest

import cnnlib.widgets
from cnnlib.widgets._base import SAFETY_NET, Feedback


def _checkers():
    found = []
    for info in pkgutil.iter_modules(cnnlib.widgets.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cnnlib.widgets.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("check_") and inspect.isfunction(obj) \
                    and obj.__module__ == module.__name__:
                found.append(pytest.param(obj, id=f"{info.name}.{name}"))
    return found


CHECKERS = _checkers()


def _expects_function(check) -> bool:
    """A checker of an "implement this" exercise takes the student's function as ``fn``."""
    return list(inspect.signature(check).parameters) == ["fn"]


def test_every_checker_is_found_and_guarded():
    assert len(CHECKERS) >= 34  # the count when the grid was written
    for param in CHECKERS:
        check = param.values[0]
        assert getattr(check, "is_exercise", False), f"{check.__qualname__} lacks @exercise"


# --------------------------------------------------------------------------- the bad answers


class _BadFloat:
    def __float__(self):
        raise RuntimeError("no float for you")

    def __str__(self):
        raise RuntimeError("no str either")


def _forever(*args):
    return _forever(*args)


def _raises(*args):
    raise ValueError("my bug")


def _divides_by_zero(*args):
    return 1 / 0


def _poisons_its_arguments(*args):
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a[...] = np.nan
    return args[0] if args else None


BAD_ANSWERS = {
    "None": None,
    "Ellipsis": ...,
    "empty string": "",
    "word": "xyz",
    "numeric string": "12",
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": -float("inf"),
    "10**1000": 10**1000,
    "-10**1000": -(10**1000),
    "-1": -1,
    "True": True,
    "False": False,
    "numpy bool": np.True_,
    "complex": 1 + 2j,
    "numpy nan": np.float64("nan"),
    "list": [1, 2, 3],
    "ragged list": [[1, 2], [3]],
    "wrong-shape array": np.arange(6.0).reshape(2, 3),
    "3-d array": np.ones((2, 2, 2)),
    "empty array": np.array([]),
    "huge array": np.zeros(2_000_000),
    "nan array": np.full((2, 2), np.nan),
    "string array": np.array(["a", "b"]),
    "tuple of junk": (None, "x", [1]),
    "wrong letter": "d",
    "two letters": "ab",
    "dict": {"a": 1},
    "object": object(),
    "bad __float__": _BadFloat(),
    "a function": lambda *args: 0,
}

BAD_FUNCTIONS = {
    "None": None,
    "Ellipsis": ...,
    "not callable": 42,
    "a string": "my_function",
    "raises": _raises,
    "divides by zero": _divides_by_zero,
    "recurses forever": _forever,
    "no arguments": lambda: 0,
    "too many arguments": lambda a, b, c, d, e, f, g: 0,
    "returns a string": lambda *args: "abc",
    "returns NaN": lambda *args: float("nan"),
    "returns inf": lambda *args: float("inf"),
    "returns 10**1000": lambda *args: 10**1000,
    "returns True": lambda *args: True,
    "returns a huge array": lambda *args: np.zeros(2_000_000),
    "returns a wrong-shape array": lambda *args: np.ones((2, 3, 4)),
    "returns a ragged list": lambda *args: [[1.0, 2.0], [3.0]],
    "returns strings": lambda *args: np.array([["a", "b"]]),
    "returns a dict": lambda *args: {"loss": 1.0},
    "returns a generator": lambda *args: (a for a in args),
    "returns its first argument": lambda *args: args[0],
    "returns junk __float__": lambda *args: _BadFloat(),
    "poisons its arguments with NaN": _poisons_its_arguments,
    "calls forward on the wrong shape": lambda m, o, x, y: m.forward(x[0]),
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("check", CHECKERS)
def test_checker_turns_every_bad_answer_into_feedback(check, capsys):
    grid = BAD_FUNCTIONS if _expects_function(check) else BAD_ANSWERS
    assert len(grid) >= 22
    limit = sys.getrecursionlimit()
    for kind, answer in grid.items():
        fb = check(answer)  # must not raise
        out = capsys.readouterr().out
        assert isinstance(fb, Feedback), (kind, fb)
        assert fb.status in ("wrong", "unanswered"), (kind, fb)
        assert not fb, kind
        assert fb.text and fb.text in out, (kind, "the feedback is printed")
        assert SAFETY_NET not in fb.text, (kind, fb.text)
        assert "Traceback" not in out, kind
        assert sys.getrecursionlimit() == limit


@pytest.mark.parametrize("check", CHECKERS)
def test_placeholders_mean_not_answered_yet(check):
    for placeholder in (None, ...):
        assert check(placeholder).status == "unanswered"


def test_keyboard_interrupt_still_stops_the_cell():
    from cnnlib.widgets import conv

    def stop(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conv.check_my_conv2d(stop)


def test_a_bool_is_not_a_number():
    from cnnlib.widgets import speed

    fb = speed.check_float32_rounding(True)  # True == 1.0, but it is not the answer
    assert fb.status == "wrong" and "True / False" in fb.text
    assert speed.check_float32_rounding(1.0)


def test_safety_net_reports_an_unforeseen_error(capsys):
    from cnnlib.widgets._base import exercise

    @exercise
    def check_broken(answer):
        raise IndexError("a bug in the checker")

    fb = check_broken(3)
    assert fb.status == "wrong" and SAFETY_NET in fb.text and "IndexError" in fb.text
    assert fb.text in capsys.readouterr().out
