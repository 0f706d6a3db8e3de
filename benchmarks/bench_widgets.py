"""Slider-response time of the notebook widgets (headless, matplotlib's Agg backend).

    python benchmarks/bench_widgets.py [--repeats 15]

For each explorer, one control is moved back and forth between two values; a move is timed
from setting ``control.value`` until ``result`` is updated and the PNG the browser gets is made
(``Explorer.update`` makes it in and outside a notebook; only sending it differs), split into
compute (adapt + the cnnlib call), draw (building or updating the figure) and PNG (one Agg
render, cropped, encoded: ``figure_png``); "CPU" is the process time of the move, which a busy
machine inflates less. The last column times, on the same figure, the PNG the inline backend
would make (``savefig`` with ``bbox_inches="tight"``, what ``plt.show()`` cost before).
Times are medians over ``repeats`` moves after a warm-up. The machine's load average is
printed, since other processes on a shared machine slow every number.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np

from cnnlib.widgets import conv, intro, pool

# (explorer name, builder, control, two values to alternate between)
MOVES = [
    ("conv_explorer (photo 128×109)", conv.conv_explorer, "stride", (1, 2)),
    ("conv_explorer (photo 128×109)", conv.conv_explorer, "kernel_size", (3, 7)),
    ("conv_explorer (photo 128×109)", conv.conv_explorer, "dilation", (1, 3)),
    ("conv_explorer (photo 128×109)", conv.conv_explorer, "filter", ("sobel x", "gaussian")),
    ("conv_step_explorer (3×3)",
     lambda: conv.conv_step_explorer(np.arange(9.0).reshape(3, 3), np.arange(4.0).reshape(2, 2)),
     "j", (0, 1)),
    ("pool_explorer (map 126×107)", pool.pool_explorer, "window", (2, 3)),
    ("pool_explorer (map 126×107)", pool.pool_explorer, "mode", ("max", "avg")),
    ("shift_explorer (32×32)", pool.shift_explorer, "shift", (1, 2)),
    ("param_calculator", intro.param_calculator, "h", (32, 224)),
    ("receptive_field_explorer (96×82×3)", intro.receptive_field_explorer, "row", (40, 60)),
    ("receptive_field_explorer (96×82×3)", intro.receptive_field_explorer, "k", (3, 7)),
    ("translation_explorer (32×40)", intro.translation_explorer, "dx", (3, 6)),
]


def time_moves(builder, control: str, values: tuple, repeats: int) -> dict[str, float]:
    """Median milliseconds per move: total (wall and CPU), compute, draw, PNG, inline's PNG."""
    with contextlib.redirect_stdout(io.StringIO()):  # explorers print their formulas
        explorer = builder()
        widget = explorer.controls[control]
        for v in values * 2:  # warm-up: compile and cache
            widget.value = v
        totals, cpus, computes, draws, pngs, tights = [], [], [], [], [], []
        for k in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            widget.value = values[k % 2]
            totals.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            if explorer.message:
                raise RuntimeError(f"{control}={values[k % 2]!r}: {explorer.message}")
            computes.append(explorer.timings["compute"])
            draws.append(explorer.timings["draw"])
            pngs.append(explorer.timings["png"])
            start = time.perf_counter()
            explorer.figure.savefig(io.BytesIO(), format="png", bbox_inches="tight")
            tights.append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(ts)) for name, ts in
            (("total", totals), ("cpu", cpus), ("compute", computes), ("draw", draws),
             ("png", pngs), ("tight", tights))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"slider response, median of {args.repeats} moves (ms); load average {load}; "
          f"{os.cpu_count()} CPUs")
    header = (f"{'explorer':36} {'control':12} {'total':>7} {'CPU':>6} {'compute':>8} "
              f"{'draw':>6} {'PNG':>6} {'inline':>7}")
    print(header)
    print("-" * len(header))
    for name, builder, control, values in MOVES:
        t = time_moves(builder, control, values, args.repeats)
        print(f"{name:36} {control:12} {t['total']:7.1f} {t['cpu']:6.1f} {t['compute']:8.1f} "
              f"{t['draw']:6.1f} {t['png']:6.1f} {t['tight']:7.1f}")


if __name__ == "__main__":
    main()
