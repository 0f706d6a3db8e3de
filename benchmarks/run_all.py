"""Run every benchmark script in this folder, one after the other, and print their tables.

    python benchmarks/run_all.py [--only step startup]

Each ``bench_*.py`` runs in its own process with its default settings (so one script's compiled
kernels or thread pools cannot help or hurt the next). The header describes the machine; the
footer lists each script's wall time and whether it met its targets (exit code 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    found = []
    for name in ("numpy", "numba", "torch"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def machine() -> str:
    """One paragraph about where the numbers come from."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; {versions()}; "
        f"load average (1, 5, 15 min) {load}"
    )


def scripts(only: list[str] | None) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if p.stem.removeprefix("bench_") in only]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these (e.g. step startup conv)")
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}\n")
    summary = []
    for script in scripts(args.only):
        print(f"{'=' * 100}\n{script.name}\n{'=' * 100}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        summary.append((script.name, time.perf_counter() - start, code))
        print(flush=True)
    header = f"{'script':<24} | {'wall s':>7} | result"
    print(header + "\n" + "-" * len(header))
    for name, seconds, code in summary:
        result = "ok" if code == 0 else f"exit code {code} (a target missed or an error)"
        print(f"{name:<24} | {seconds:7.1f} | {result}")
    return 0 if all(code == 0 for _, _, code in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
