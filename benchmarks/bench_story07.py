"""Does notebook 07 tell its story on this machine? Run All several times and read what it printed.

    python benchmarks/bench_story07.py [--runs 4] [--full]

Each run executes notebook 07 in a new Jupyter kernel (``bench_cold_start.run``), as a student's
Run All does; odd runs start from an empty Numba cache (as on Colab), even runs reuse the cache the
run before them filled. From the printed text it takes

* the order of section 6 (the first layer, ``遅い → 速い: …``, ``≈`` where two methods are within
  10 %), which should read pure Python < NumPy im2col < Numba serial < Numba parallel ≤ cnnlib
  (issue 11, target 4; ≤: a tie, ≈, counts);
* the order of section 6.1 (the second layer), where the notebook says the order may change;
* section 9's float32 vs float64 sentence (float32 should be faster);

and prints each run's lines and how many runs told the story. Small mode (``CNNLIB_SMALL=1``)
unless ``--full``; 07 uses the same problem sizes in both.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cold_start import ROOT, run

NOTEBOOK = ROOT / "notebooks" / "07_speed_with_numba.ipynb"
STORY = ["pure Python", "NumPy im2col", "Numba serial", "Numba parallel", "cnnlib"]
TIES_ALLOWED = {("Numba parallel", "cnnlib")}  # the "Numba parallel ≤ cnnlib"


def groups(order: str) -> list[list[str]]:
    """``"a < b ≈ c"`` → ``[["a"], ["b", "c"]]``: methods from slowest to fastest, ties together."""
    return [part.split(" ≈ ") for part in order.split(" < ")]


def tells_story(order: str) -> bool:
    """Whether the section-6 order is the story's, a tie allowed only where the story has ≤."""
    rank = {name: k for k, group in enumerate(groups(order)) for name in group}
    if set(rank) != set(STORY):
        return False
    for slower, faster in itertools.pairwise(STORY):
        if rank[slower] > rank[faster]:
            return False
        if rank[slower] == rank[faster] and (slower, faster) not in TIES_ALLOWED:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="full mode instead of small mode")
    args = parser.parse_args()
    print(f"load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    told = faster32 = 0
    cache = None
    for r in range(args.runs):
        cold = r % 2 == 0
        if cold:
            cache = tempfile.mkdtemp(prefix="cnnlib-story-")
        run_all, _, cells = run(NOTEBOOK, small=not args.full, cache=cache)
        text = "".join(cell.text for cell in cells)
        orders = re.findall(r"遅い → 速い: (.+)", text)
        floats = re.findall(r"この実行では float32 .+", text)
        story = bool(orders) and tells_story(orders[0])
        told += story
        faster32 += bool(floats) and "float32 が float64 より" in floats[0]
        print(f"run {r + 1} ({'empty cache' if cold else 'warm cache'}, Run All {run_all:.1f} s, "
              f"load {os.getloadavg()[0]:.1f}): {'story holds' if story else 'STORY BROKEN'}")
        shown = [f"6:   {orders[0]}"] if orders else []
        shown += [f"6.1: {order}" for order in orders[1:2]]
        shown += [f"9:   {line}" for line in floats]
        shown += re.findall(r"この実行では (?:cnnlib|Numba|NumPy im2col|long rows).+", text)
        shown += re.findall(r"cnnlib、1 秒休んだ後.+", text)
        for line in shown:
            print(f"    {line}")
        sys.stdout.flush()
    print(f"section 6 told the story in {told} of {args.runs} runs; float32 faster in "
          f"{faster32} of {args.runs}")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0 if told == args.runs and faster32 == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
