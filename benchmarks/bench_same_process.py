"""Conv2d forward + backward as students run it: NumPy, cnnlib (and PyTorch) in turn, one process.

    python benchmarks/bench_same_process.py [--rounds 40] [--configs default,before_issue_11]

A notebook kernel runs NumPy (OpenBLAS's threads), cnnlib (Numba's OpenMP threads) and sometimes
PyTorch (its OpenMP threads) call after call, with no pause in between. This script measures
bench_conv's three shapes that way, in a new process per configuration:

* ``no pause``: each round calls NumPy im2col, cnnlib and PyTorch once each (the order rotates
  from round to round), timing every call, with nothing in between: a thread pool that is still
  spinning after one library's call competes with the next library's threads;
* ``pause``: the same, but each timed call follows a 0.15 s pause and one untimed call, as in
  bench_conv.py (each library finds the machine as if it ran alone).

The ratio NumPy / cnnlib is taken per round; the table shows its median [25th–75th percentile]
over the rounds (target ≥ 3×, issue 11). Configurations: PyTorch not imported, or imported (after
cnnlib, or before it and used at once) and used; the default environment and
``CPU_LIMIT=2`` (a container with a CPU limit, as on Binder or JupyterHub); for comparison,
``before_issue_11`` (OpenMP's spinning wait and OpenBLAS's 0.1 s spin, as cnnlib left them
before issue 11), ``spin_only`` (OpenMP spinning, OpenBLAS sleeping at once), ``passive_only``
(passive OpenMP, OpenBLAS's spin kept), ``workqueue`` (Numba's
own thread pool) and ``numpy_1_thread`` (``OPENBLAS_NUM_THREADS=1``). Every configuration
also times a 1024×1024 float32 and float64 matrix product with NumPy before ``import cnnlib``,
after it (and after one cnnlib call and a 0.2 s pause), and right after a cnnlib call (no pause):
the user's NumPy must stay as fast as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {
    "default": {},
    "cpu_limit": {"CPU_LIMIT": "2"},
    # for comparison: cnnlib before issue 11 (OpenMP's spinning wait, OpenBLAS's own 0.1 s spin)
    "before_issue_11": {"GOMP_SPINCOUNT": "300000", "OPENBLAS_THREAD_TIMEOUT": "28"},
    # for comparison: OpenMP's spinning wait, OpenBLAS's threads sleeping at once
    "spin_only": {"GOMP_SPINCOUNT": "300000"},
    # for comparison: passive OpenMP only, OpenBLAS left as NumPy loaded it
    "passive_only": {"OPENBLAS_THREAD_TIMEOUT": "28"},
    # for comparison: Numba's own thread pool (workers wait on a condition variable)
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    # for comparison: NumPy single-threaded (what threadpoolctl.threadpool_limits(1) would do)
    "numpy_1_thread": {"OPENBLAS_NUM_THREADS": "1"},
}
TORCH = ("none", "after", "before")  # PyTorch: not imported, imported after / before cnnlib
MODES = {"no pause": 0.0, "pause": 0.15}
TARGET = 3.0
SHAPES = [(64, 1, 28, 8, 5), (64, 8, 14, 16, 5), (32, 16, 16, 32, 3)]  # as in bench_conv.py
CLEAR = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CPU_LIMIT", "NUMBA_NUM_THREADS",
         "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
         "NUMBA_THREADING_LAYER")


def matmul_ms(n: int = 1024, repeats: int = 15, between=None) -> dict[str, float]:
    """Median ms of an n×n matrix product, float32 and float64; ``between()`` runs before each."""
    result = {}
    for dtype in (np.float32, np.float64):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
        c = np.empty_like(a)
        np.matmul(a, a, out=c)
        times = []
        for _ in range(repeats):
            if between is not None:
                between()
            start = time.perf_counter()
            np.matmul(a, a, out=c)
            times.append(time.perf_counter() - start)
        result[np.dtype(dtype).name] = float(np.median(times)) * 1e3
    return result


def worker(torch_use: str, rounds: int, pause_rounds: int) -> dict:
    """Runs in a new process: the matrix products, then every shape in both modes."""
    out = {"matmul before import": matmul_ms()}
    torch = None
    if torch_use == "before":  # PyTorch's OpenMP starts before cnnlib sets its policy
        import torch

        torch.set_num_threads(2)
        torch.ones(64, 64) @ torch.ones(64, 64)
    sys.path.insert(0, HERE)
    import bench_conv  # imports cnnlib

    if torch_use == "after":
        import torch

        torch.set_num_threads(2)
    import numba

    from cnnlib.conv import conv2d_backward, conv2d_forward

    x, w, b, dout = bench_conv.problem(*bench_conv.SHAPES[-1])
    one_call = lambda: conv2d_backward(dout, conv2d_forward(x, w, b, padding=1)[1])  # noqa: E731
    one_call()
    time.sleep(0.2)
    out["matmul after import"] = matmul_ms()
    out["matmul right after a cnnlib call"] = matmul_ms(between=one_call)
    out["threads"] = {"numba": numba.get_num_threads(), "layer": numba.threading_layer(),
                      "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "")}
    for mode, pause in MODES.items():
        for shape in bench_conv.SHAPES:
            fns = bench_conv.contenders(shape, torch)
            fns.pop("cnnlib fwd")
            names = list(fns)
            times = {name: [] for name in names}
            for r in range((pause_rounds if pause else rounds) + 3):
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    if pause:
                        time.sleep(pause)
                        fns[name]()
                    start = time.perf_counter()
                    fns[name]()
                    times[name].append(time.perf_counter() - start)
            out[f"{mode} {shape}"] = {name: t[3:] for name, t in times.items()}  # 3 warm rounds
    return out


def run(config: str, torch_use: str, rounds: int, pause_rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAR} | CONFIGS[config]
    cmd = [sys.executable, __file__, "--worker", torch_use, "--rounds", str(rounds),
           "--pause-rounds", str(pause_rounds)]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def quartiles(ratios) -> str:
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return f"{med:5.2f}× [{q1:.2f}–{q3:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds per shape")
    parser.add_argument("--pause-rounds", type=int, default=12, help="rounds with pauses")
    parser.add_argument("--configs", default="default,cpu_limit",
                        help=f"comma-separated, from {list(CONFIGS)}")
    parser.add_argument("--torch", default=",".join(TORCH), help="none,after,before")
    parser.add_argument("--worker", choices=TORCH, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rounds, args.pause_rounds)))
        return 0
    try:
        import torch  # noqa: F401
        torch_uses = args.torch.split(",")
    except ImportError:
        print("PyTorch is not installed: only the 'none' configuration runs.")
        torch_uses = ["none"]
    print(f"load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    missed = 0
    for config in args.configs.split(","):
        for torch_use in torch_uses:
            res = run(config, torch_use, args.rounds, args.pause_rounds)
            th = res["threads"]
            how = "not imported" if torch_use == "none" else f"imported {torch_use} cnnlib, used"
            print(f"== {config} environment ({CONFIGS[config] or 'nothing set'}), PyTorch "
                  f"{how}; Numba "
                  f"{th['numba']} threads ({th['layer']}), OMP_WAIT_POLICY="
                  f"{th['OMP_WAIT_POLICY'] or '(unset)'}")
            mm = ", ".join(
                f"{k}: " + " / ".join(f"{v:.2f}" for v in res[k].values())
                for k in ("matmul before import", "matmul after import",
                          "matmul right after a cnnlib call"))
            print(f"  NumPy 1024² matmul ms (float32 / float64) — {mm}")
            for mode in MODES:
                for shape in SHAPES:
                    t = {k: np.array(v) for k, v in res[f"{mode} {shape}"].items()}
                    if not t["cnnlib"].size:
                        continue  # --rounds 0 or --pause-rounds 0: that mode did not run
                    ratio = t["numpy"] / t["cnnlib"]
                    ok = np.median(ratio) >= TARGET
                    missed += mode == "no pause" and not ok
                    torch_part = (f" | torch {np.median(t['torch']) * 1e3:6.2f} ms, "
                                  f"torch / cnnlib {quartiles(t['torch'] / t['cnnlib'])}"
                                  if "torch" in t else "")
                    print(f"  {mode:>8} {shape!s:>19}: NumPy {np.median(t['numpy']) * 1e3:6.2f}"
                          f" ms, cnnlib {np.median(t['cnnlib']) * 1e3:6.2f} ms, NumPy / cnnlib "
                          f"{quartiles(ratio)} {'PASS' if ok else 'FAIL'}{torch_part}")
            sys.stdout.flush()
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if missed:
        print(f"FAIL: {missed} no-pause cases below {TARGET:g}× NumPy im2col")
        return 1
    print(f"PASS: every no-pause case is at least {TARGET:g}× NumPy im2col")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
