"""Run All of each notebook from an empty Numba cache, as on Colab: total and per-cell seconds.

    python benchmarks/bench_cold_start.py [notebooks/07_speed_with_numba.ipynb ...] [--full]

Each notebook runs cell by cell in a new Jupyter kernel (jupyter_client's blocking client, as
nbval uses; nbconvert's asyncio client was seen on this machine to wait out its timeout for
replies that had arrived, see tests/test_binder.py) with ``NUMBA_CACHE_DIR`` pointing at a new,
empty folder, so every kernel a notebook calls is compiled in front of the student; small mode
(``CNNLIB_SMALL=1``, as under the tests) unless ``--full``. Prints the Run All time (the sum of
the cells' times; starting the kernel comes on top) and every cell that took longer than 5 s,
with whether its printed output says that it is compiling ("コンパイル"). Targets (issue 11):
≤ 15 s per notebook, ≤ 20 s for 07, and no cell silent for more than 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from jupyter_client import KernelManager

ROOT = Path(__file__).resolve().parent.parent
TARGET = {"07": 20.0}
DEFAULT_TARGET = 15.0
STALL = 5.0  # seconds: a longer cell must say that it is compiling


class Cell(NamedTuple):
    """One code cell's run: its index among the code cells, seconds, whether its printed text
    says that it compiles, its first line, and the printed text."""

    index: int
    seconds: float
    says_compiling: bool
    first_line: str
    text: str


def run(path: Path, small: bool, cache: str | None = None) -> tuple[float, float, list[Cell]]:
    """(sum of cell seconds, wall seconds, the cells) of Run All in a new kernel, with
    ``NUMBA_CACHE_DIR`` a new empty folder or ``cache``."""
    code_cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    cells = []
    with tempfile.TemporaryDirectory(prefix="cnnlib-cold-") as empty:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache or empty, "PYTHONPATH": str(ROOT),
               "CNNLIB_SMALL": "1" if small else "0"}
        manager = KernelManager(kernel_name="python3")
        start = time.perf_counter()
        manager.start_kernel(env=env, cwd=str(path.parent))
        client = manager.blocking_client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            for k, cell in enumerate(code_cells):
                source = "".join(cell["source"])
                seconds, text, error = _execute(client, source)
                if error:
                    raise SystemExit(f"{path.name}, cell {k}: {error}")
                first = source.strip().splitlines()[0][:60] if source.strip() else ""
                cells.append(Cell(k, seconds, "コンパイル" in text, first, text))
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
        wall = time.perf_counter() - start
    return sum(c.seconds for c in cells), wall, cells


def _execute(client, source: str) -> tuple[float, str, str]:
    """Run one cell: (seconds from sending it to the kernel going idle, its printed text, error)."""
    start = time.perf_counter()
    msg_id = client.execute(source, store_history=True)
    text, error = [], ""
    while True:
        msg = client.get_iopub_msg(timeout=600)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            return time.perf_counter() - start, "".join(text), error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--full", action="store_true", help="full mode instead of small mode")
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("0*.ipynb"))
    missed = 0
    print(f"load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for path in paths:
        run_all, wall, cells = run(path.resolve(), small=not args.full)
        target = TARGET.get(path.name[:2], DEFAULT_TARGET)
        slow = [c for c in cells if c.seconds > STALL]
        silent = [c for c in slow if not c.says_compiling]
        ok = run_all <= target and not silent
        missed += not ok
        print(f"{path.name}: Run All {run_all:.1f} s (target ≤ {target:g} s; "
              f"with the kernel's start "
              f"{wall:.1f} s), slowest cell {max(c.seconds for c in cells):.1f} s — "
              f"{'ok' if ok else 'MISSED'}  (load {os.getloadavg()[0]:.1f})")
        for k, seconds, says, line, _ in slow:
            print(f"    cell {k:2d}: {seconds:5.1f} s {'(says so)' if says else '(silent)'}  "
                  f"{line}")
        sys.stdout.flush()
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
