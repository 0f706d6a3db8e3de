"""Timers, figures and exercise checks for notebook 07 (speed with Numba).

* ``conv_problem``, ``conv_macs``: a convolution's inputs and its multiply-add count.
* ``time_call``, ``first_and_second_call``: wall-clock timing (median of repeats; JIT vs cached).
* ``time_interleaved``, ``compare_times``, ``speed_order``: methods timed in turn, call after call,
  as a student's calls run in one kernel; a Japanese sentence that says what this run measured,
  and the methods from slowest to fastest (≈ where two are within the run-to-run spread).
* ``compiling``: says so, with the time it took, when a cell compiles kernels on first use.
* ``Timing``, ``speed_table``, ``plot_speed``: the comparison table and its log-scale bar chart.
* ``cache_demo``: a ``cache=True`` function compiled in one process and loaded in the next.
* ``relative_error``, ``race_errors``, ``plot_race_errors``: the racy-kernel experiment.
* ``check_…``: the notebook's exercises.
Everything here measures or draws; the kernels being measured are in the notebook or in cnnlib.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib.recipe import is_small
from cnnlib.widgets._answers import (
    Feedback,
    call_student,
    check_choice,
    check_number,
    exercise,
    feedback,
    is_placeholder,
)
from cnnlib.widgets._timing import (  # re-exported: notebook 07 imports them from here
    Timing,
    compare_times,
    compiling,
    conv_macs,
    conv_problem,
    first_and_second_call,
    plot_speed,
    speed_order,
    speed_table,
    time_call,
    time_interleaved,
)

__all__ = [
    "Timing",
    "cache_demo",
    "check_conv_macs",
    "check_db_kernel",
    "check_float32_rounding",
    "check_safe_prange",
    "compare_times",
    "compiling",
    "conv_macs",
    "conv_problem",
    "first_and_second_call",
    "is_small",
    "plot_race_errors",
    "plot_speed",
    "race_errors",
    "relative_error",
    "speed_order",
    "speed_table",
    "time_call",
    "time_interleaved",
]

# ---------------------------------------------------------------------------- the on-disk cache

_CACHE_SCRIPT = '''
import time
import numpy as np
from numba import njit


@njit(cache=True)
def first(v):  # the first Numba call of a process also sets up Numba itself: not timed below
    return v[0]


@njit(cache=True)
def conv(xp, w, out):
    N, C, Hp, Wp = xp.shape
    F, _, K, _ = w.shape
    for n in range(N):
        for f in range(F):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    y = out.dtype.type(0)
                    for c in range(C):
                        for m in range(K):
                            for q in range(K):
                                y += xp[n, c, i + m, j + q] * w[f, c, m, q]
                    out[n, f, i, j] = y


first(np.ones(1))
xp, w, out = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), np.empty((1, 1, 3, 3))
start = time.perf_counter()
conv(xp, w, out)
print(time.perf_counter() - start)
'''


def cache_demo() -> dict[str, object]:
    """Run a convolution loop declared ``@njit(cache=True)`` in two new Python processes in a row.

    Both use one fresh, empty ``NUMBA_CACHE_DIR``: the first process compiles and writes the
    machine code there, the second finds it and only loads it. Returns the time of the loop's
    first call in each process (``"first_process"``, ``"second_process"``, seconds; Numba's own
    set-up is done before) and the names of the files the cache holds (``"files"``).
    """
    with tempfile.TemporaryDirectory(prefix="cnnlib-cache-demo-") as tmp:
        script = Path(tmp) / "cached_sum.py"
        script.write_text(_CACHE_SCRIPT)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(Path(tmp) / "cache")}
        times = []
        for _ in range(2):
            result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                                    text=True, check=True)
            times.append(float(result.stdout.strip().splitlines()[-1]))
        files = sorted(p.name for p in (Path(tmp) / "cache").rglob("*") if p.is_file())
    return {"first_process": times[0], "second_process": times[1], "files": files}


# ------------------------------------------------------------------------------------- races


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got − expected| / max |expected|: 1e-7 is float32 rounding, 1e-1 is a wrong answer."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def race_errors(dw_kernel: Callable, x: np.ndarray, dout: np.ndarray, dw_expected: np.ndarray,
                runs: int = 5) -> list[float]:
    """Run ``dw_kernel(x, dout, dw)`` ``runs`` times on a zeroed ``dw``; the relative error of
    each run against ``dw_expected``."""
    errors = []
    for _ in range(runs):
        dw = np.zeros(dw_expected.shape, x.dtype)
        dw_kernel(x, dout, dw)
        errors.append(relative_error(dw, dw_expected))
    return errors


def plot_race_errors(errors: dict[str, Sequence[float]], rounding: float = 1e-4) -> Figure:
    """The relative error of every run of each kernel, on a log axis, with a dashed line at the
    ``rounding`` level of a long float32 sum (~√M·6e-8 for M terms): points far above it are
    wrong answers, not rounding."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for k, (name, errs) in enumerate(errors.items()):
        errs = np.maximum(np.asarray(errs, float), 1e-12)  # log axis: show an exact 0 at 1e-12
        ax.plot(np.arange(1, errs.size + 1), errs, "o-", label=name, color=f"C{k}")
    ax.axhline(rounding, color="gray", ls="--", lw=1)
    ax.text(1, rounding * 1.5, "float32 の丸め誤差", color="gray", fontsize=9)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(1, max(len(e) for e in errors.values()) + 1))
    ax.set_xlabel("実行（run）")
    ax.set_ylabel("dw の相対誤差")
    ax.set_title("同じ入力、同じコード: 競合（race）は毎回違う誤りを生みます")
    ax.legend(loc="center right")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- exercises

LENET_CONV2 = {"x_shape": (64, 8, 14, 14), "w_shape": (16, 8, 5, 5), "padding": 2}


@exercise
def check_conv_macs(answer: object) -> Feedback:
    """演習 1: multiply-adds of LeNet's second convolution, the layer of the notebook's § 6.1
    (batch 64, 8 → 16 channels, 5×5, padding 2 on 14×14)."""
    expected = conv_macs(**LENET_CONV2)
    return check_number(
        answer, expected, f"64·16·14·14·8·5·5 = {expected:,}、約 0.08 GFLOP（積和 1 回で 2 FLOP）",
        {expected // 64: "それは 1 サンプル分です。バッチには 64 サンプルあります",
         expected // 8: "各出力は 8 つの入力チャネルすべての和でもあります（all 8 input channels）",
         conv_macs((64, 8, 14, 14), (16, 8, 5, 5), padding=0):
             "padding 2 なら出力は 14×14 のままです（10×10 ではありません）"},
        "出力の数 N·F·H_out·W_out に、出力 1 つあたりの積の数 C·K·K を掛けます")


@exercise
def check_safe_prange(answer: object) -> Feedback:
    """演習 2 (explain): which loop may be the ``prange`` of the dw kernel? "a", "b" or "c"."""
    return check_choice(
        answer, right="b",
        explanation="反復 f は dw[f] だけに書き込むので、2 つのスレッドが同じ要素を共有しません",
        hints={"a": "どのサンプルもすべての dw[f, c, m, q] に足し込みます。2 つのスレッドが"
                    "同じ要素を「読む → 足す → 書く」と、一方の更新が失われます（lost update）",
               "c": "どの出力行 i も dw のすべての要素に足し込みます"})


@exercise
def check_db_kernel(fn: Callable) -> Feedback:
    """演習 3 (implement): ``fn(dout, db)`` fills ``db[f] = Σ_n Σ_i Σ_j dout[n, f, i, j]``.

    It runs once as plain Python (an untouched ``db`` means "not answered yet"), then compiled
    with ``njit(parallel=True)`` and compared with NumPy on a few shapes.
    """
    from numba import njit
    from numba.core.errors import NumbaPerformanceWarning

    if not is_placeholder(fn) and not callable(fn):
        return feedback(False, "関数そのものを渡してください（pass the function itself）: "
                        "check_db_kernel(my_db_kernel)")
    rng = np.random.default_rng(3)
    db = np.full(3, np.nan)
    _, verdict = call_student(fn, rng.standard_normal((2, 3, 2, 2)), db,
                              when="普通の Python として実行するとエラー（plain Python failed）")
    if verdict is not None:  # the student's code, run as plain Python first
        return verdict
    if np.isnan(db).all():
        return feedback(None)
    compiled = None
    for shape in ((8, 5, 4, 3), (64, 16, 7, 7), (1, 1, 1, 1)):
        dout = rng.standard_normal(shape)
        db = np.full(shape[1], np.nan)
        try:
            with warnings.catch_warnings():  # no prange: said below, not as a warning
                warnings.simplefilter("ignore", NumbaPerformanceWarning)
                compiled = compiled or njit(parallel=True)(fn)
                compiled(dout, db)
        except Exception as exc:  # typing errors are raised on the first call
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return feedback(False, "Numba がコンパイルまたは実行できません"
                                   f"（Numba could not compile or run it）: {first}")
        expected = dout.sum(axis=(0, 2, 3))
        if np.isnan(db).any():
            return feedback(False, f"dout の形 {shape}: 書き込まれない db[f] があります"
                                   "（never written）")
        if not np.allclose(db, expected, rtol=1e-10, atol=1e-10):
            return feedback(False, f"dout の形 {shape}: db が dout.sum(axis=(0, 2, 3)) と最大 "
                            f"{np.abs(db - expected).max():.3g} 違います（differs）")
    if "prange" not in _source(fn):
        return feedback(True, "値は正しいですが、prange がないので 1 スレッドで動きます"
                              "（without prange）")
    return feedback(True, "prange の反復 f は db[f] だけを持つので、競合がありません（race-free）")


def _source(fn: Callable) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return ""


@exercise
def check_float32_rounding(answer: object) -> Feedback:
    """演習 4 (derive): the value of ``np.float32(1) + np.float32(1e-8)``."""

    def otherwise(value: float) -> str:
        if abs(value - (1 + 1e-8)) < 1e-12:
            return "それには有効数字が約 9 桁必要です。float32 は約 7 桁しか持ちません"
        return "1 と、その次に大きい float32 の数との間隔 2⁻²³ を考えましょう"

    return check_number(answer, float(np.float32(1) + np.float32(1e-8)),
                        "1 の隣の float32 の間隔は 2⁻²³ ≈ 1.2e-7 なので、1e-8 は丸めで消えます",
                        {}, otherwise, whole=False)
