"""Start-up cost: how long a student waits before the first layer runs.

    python benchmarks/bench_startup.py [--keep-cache DIR]

1. Cold: ``python -m cnnlib.warmup`` with an empty ``NUMBA_CACHE_DIR`` compiles every kernel for
   float32 and float64 (what ``postBuild`` or a first ``pip install`` pays once).
2. Warm: the same command again loads everything from that cache.
3. A new process (like a notebook kernel that was just started) imports cnnlib and runs every
   layer forward and backward once, in float32 and float64, with the same cache. Target: the
   whole process, interpreter start-up included, takes at most 3 s. It also counts kernels that
   had to be compiled instead of loaded (each one is a JIT stall of seconds).

Each step is a separate process, so nothing compiled in one is reused by the next except through
the on-disk cache. The cache directory is a fresh temporary one (deleted at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 3.0


def run_every_layer() -> dict[str, object]:
    """In this (new) process: import cnnlib, run every layer forward and backward once.

    Returns the seconds taken by the import and by the layers, and the kernels that were
    compiled here rather than loaded from the cache.
    """
    start = time.perf_counter()
    import numpy as np

    from cnnlib import layers as L
    from cnnlib import warmup
    from cnnlib.losses import softmax_cross_entropy
    from cnnlib.optim import SGD

    imported = time.perf_counter()
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        model = L.Sequential(
            L.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=dtype), L.BatchNorm2d(4, dtype=dtype),
            L.ReLU(), L.MaxPool2d(2),
            L.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1, rng=rng, dtype=dtype),
            L.LayerNorm2d(4, dtype=dtype), L.LeakyReLU(), L.AvgPool2d(3, stride=1, padding=1),
            L.GroupNorm(2, 4, dtype=dtype), L.ELU(), L.GELU(), L.Sigmoid(), L.Tanh(),
            L.MaxPool2d(3, stride=1, padding=1), L.Flatten(),
            L.Linear(16, 10, rng=rng, dtype=dtype),
        )
        x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
        _, dlogits = softmax_cross_entropy(model.forward(x), np.array([1, 7]))
        model.backward(dlogits)
        SGD(model, lr=0.1).step()
        model.eval()
        model.forward(x)  # BatchNorm2d in eval mode (running statistics)
    done = time.perf_counter()
    compiled = sorted(name for name, kernel in warmup.kernels().items()
                      if kernel.stats.cache_misses)
    return {"import": imported - start, "layers": done - imported, "compiled_here": compiled}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time of a subprocess and its standard output; raises if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_every_layer()))
        return 0

    with tempfile.TemporaryDirectory(prefix="cnnlib-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        warmup = [sys.executable, "-m", "cnnlib.warmup"]
        cold, printed = timed(warmup, env)
        summary = next((ln for ln in printed.splitlines() if "compiled signatures" in ln), "")
        warm, _ = timed(warmup, env)
        child = [sys.executable, str(Path(__file__).resolve()), "--child"]
        total, printed = timed(child, env)
        inner = json.loads(printed.strip().splitlines()[-1])

    ok = total <= TARGET_SECONDS and not inner["compiled_here"]
    print(f"Start-up, each step a new process, NUMBA_CACHE_DIR fresh ({os.cpu_count()} CPUs)\n")
    header = f"{'step':<54} | {'seconds':>7} | target"
    print(header + "\n" + "-" * len(header))
    rows = [
        ("cold: python -m cnnlib.warmup (compiles everything)", cold, ""),
        ("warm: python -m cnnlib.warmup again (cache)", warm, ""),
        ("new process: Python start-up and exit", total - inner["import"] - inner["layers"],
         ""),
        ("new process: import numpy, numba, cnnlib", inner["import"], ""),
        ("new process: every layer fwd + bwd, float32 + float64", inner["layers"], ""),
        ("new process: total wall time", total,
         f"≤ {TARGET_SECONDS:.0f} s " + ("ok" if total <= TARGET_SECONDS else "MISSED")),
    ]
    for name, seconds, target in rows:
        print(f"{name:<54} | {seconds:7.2f} | {target}")
    if summary:
        print(f"\nwarm-up: {summary}")
    compiled = inner["compiled_here"]
    print("kernels compiled in the new process (JIT stalls): "
          + (", ".join(compiled) if compiled else "none, all loaded from the cache"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
