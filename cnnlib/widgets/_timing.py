"""Timing helpers of notebook 07 (``cnnlib.widgets.speed`` re-exports them): the convolution
problem and its multiply-adds, timing one call or several interleaved, the comparison sentences,
the compile notice, and the speed table and plot."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib.conv import conv_output_size
from cnnlib.viz import show_table


def conv_problem(n: int, c: int, size: int, f: int, k: int, dtype: type = np.float32,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random ``x`` (n, c, size, size), He-scaled ``w`` (f, c, k, k) and ``b`` (f,) in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size)).astype(dtype)
    w = (rng.standard_normal((f, c, k, k)) * np.sqrt(2 / (c * k * k))).astype(dtype)
    b = (rng.standard_normal(f) * 0.1).astype(dtype)
    return x, w, b


def conv_macs(x_shape: Sequence[int], w_shape: Sequence[int], padding: int = 0,
              stride: int = 1) -> int:
    """Multiply-adds of one convolution forward pass: N·F·H_out·W_out·C·KH·KW."""
    n, c, h, w = x_shape
    f, c_w, kh, kw = w_shape
    if c != c_w:
        raise ValueError(f"x のチャネル数は {c} ですが、w は {c_w} を前提にしています")
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    return n * f * h_out * w_out * c * kh * kw


def time_call(fn: Callable, *args: object, repeat: int = 5) -> float:
    """Median wall time in seconds of ``repeat`` calls ``fn(*args)``.

    Call a function that compiles on first use once before (compilation is not part of a
    kernel's speed); the median ignores the odd slow call caused by other programs.
    """
    if repeat < 1:
        raise ValueError(f"repeat は 1 以上です。指定は {repeat} でした")
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def first_and_second_call(fn: Callable, *args: object) -> tuple[float, float]:
    """Seconds taken by the first call (for a fresh ``njit`` function: compile + run) and by the
    second call (run only)."""
    start = time.perf_counter()
    fn(*args)
    first = time.perf_counter() - start
    start = time.perf_counter()
    fn(*args)
    return first, time.perf_counter() - start


def time_interleaved(fns: Mapping[str, Callable[[], object]], rounds: int = 7,
                     warmup: float = 0.3) -> dict[str, float]:
    """Median wall time in seconds of each ``fns[name]()``, the calls interleaved.

    Each round calls every function once, one right after the other with no pause (the order
    rotates from round to round), as a student's calls run in one notebook kernel: each method
    meets the machine in the state the others leave it in (another library's threads still
    busy-waiting, caches shared). Untimed rounds come first: one (compilation, first touches),
    then more for ``warmup`` seconds. A machine that sat idle (a student reading the previous
    cell) runs threaded code at about half speed for its first tens of milliseconds of work
    (2-vCPU VM, 2026-12-08: conv2d forward of 07's first layer, batch 64, after 1 s idle:
    0.9-1.1 ms per call over the first 25 calls, 0.40-0.50 ms after 50-75, cnnlib and a Numba
    prange kernel alike), and the comparison is about the speeds in a busy loop, such as
    training; notebook 07 shows the idle case separately. ``warmup=0`` times from the start.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    names = list(fns)
    if not names:
        raise ValueError("time_interleaved needs at least one function")
    for name in names:  # compiles what is not compiled yet
        fns[name]()
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def compare_times(name: str, seconds: float, other: str, other_seconds: float,
                  same: float = 1.1) -> str:
    """One Japanese sentence: how much faster ``name`` was than ``other`` in this run.

    Within a factor ``same`` of each other the two count as about as fast (the run-to-run
    spread of a busy machine is about that size).
    """
    if seconds <= 0 or other_seconds <= 0:
        raise ValueError("times must be positive")
    ratio = other_seconds / seconds
    figures = f"（{_ms(seconds)} 対 {_ms(other_seconds)}）"
    if ratio >= same:
        return f"この実行では {name} が {other} より {ratio:,.1f} 倍速い{figures}。"
    if ratio <= 1 / same:
        return (f"この実行では {name} は {other} より遅く、{other} が {1 / ratio:,.1f} 倍速い"
                f"{figures}。")
    return f"この実行では {name} と {other} はほぼ同じ速さ（差は {abs(ratio - 1):.0%}）{figures}。"


def speed_order(seconds: Mapping[str, float], same: float = 1.1) -> str:
    """The methods from slowest to fastest, ``" < "`` between neighbours and ``" ≈ "`` where
    the faster one is within a factor ``same`` of the one before it (as ``compare_times``)."""
    if not seconds:
        raise ValueError("speed_order needs at least one time")
    if min(seconds.values()) <= 0:
        raise ValueError("times must be positive")
    names = sorted(seconds, key=seconds.get, reverse=True)
    text = names[0]
    for slower, faster in itertools.pairwise(names):
        text += (" ≈ " if seconds[slower] / seconds[faster] < same else " < ") + faster
    return text


@contextmanager
def compiling(what: str, about: float) -> Iterator[None]:
    """Say before a block that it may compile kernels (about ``about`` s from an empty cache on
    the course's 2-core machine), and afterwards how long it took when that was over 1 s."""
    print(f"{what}: 初めての呼び出しなら、カーネルを一度だけコンパイルしています"
          f"（約 {about:.0f} 秒。キャッシュにあれば一瞬です）…", flush=True)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if elapsed > 1:
        print(f"  → {elapsed:.1f} 秒（コンパイル込み。次からはディスクのキャッシュから"
              "読み込みます）", flush=True)


class Timing(NamedTuple):
    """One row of the comparison: a method, its time on the problem, and how it was measured."""

    name: str
    seconds: float
    macs: int
    note: str = ""


def speed_table(rows: Sequence[Timing], baseline: str | None = None) -> str:
    """Show each method's time, multiply-adds per second and speed-up over ``baseline`` (default:
    the first row). Returns the text form of the table."""
    if not rows:
        raise ValueError("speed_table には Timing の行が 1 つ以上必要です")
    base = next((r for r in rows if r.name == baseline), None) if baseline else rows[0]
    if base is None:
        raise ValueError(f"{baseline!r} という行はありません。行: {[r.name for r in rows]}")
    table = [
        [r.name, _ms(r.seconds), r.macs / r.seconds / 1e9, f"{base.seconds / r.seconds:,.1f}×",
         r.note]
        for r in rows
    ]
    headers = ["方法", "時間", "GMAC/s", f"{base.name} と比べて", "メモ"]
    return show_table(table, headers)


def _ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def plot_speed(rows: Sequence[Timing], title: str = "同じ畳み込みを 5 通りで") -> Figure:
    """Horizontal bars of each method's time on a logarithmic axis (fastest at the bottom)."""
    if not rows:
        raise ValueError("plot_speed には Timing の行が 1 つ以上必要です")
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.2))
    names = [r.name for r in rows]
    seconds = np.array([r.seconds for r in rows])
    colors = plt.cm.viridis(np.linspace(0.15, 0.85, len(rows)))
    ax.barh(names, seconds, color=colors)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("1 回の呼び出しの時間（秒, 対数目盛）")
    ax.set_title(title)
    for k, s in enumerate(seconds):
        ax.text(s * 1.1, k, _ms(s), va="center", fontsize=9)
    ax.set_xlim(seconds.min() / 3, seconds.max() * 8)
    fig.tight_layout()
    return fig
