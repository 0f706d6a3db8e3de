"""How OpenMP's idle threads should wait: the evidence behind cnnlib's choice (cnnlib/_jit.py).

    python benchmarks/bench_wait_policy.py [--rounds 2]

Times cnnlib's work under three OpenMP waiting policies, each in a new process (the policy is
read when OpenMP starts), on a quiet machine and next to one busy process (a Python loop that
keeps one core busy, like another user's kernel on a shared JupyterHub node):

* ``PASSIVE`` (``OMP_WAIT_POLICY=PASSIVE``): idle workers sleep at once;
* ``spin`` (``GOMP_SPINCOUNT=300000``, GNU OpenMP's default): idle workers busy-wait first;
* ``short spin`` (``GOMP_SPINCOUNT=30000``).

Each worker runs the training step of bench_step's two models and one convolution forward +
backward of bench_conv's 3×3 shape, in bursts after a 0.2 s pause (as when a student runs a
cell, or a script pauses between epochs); the table shows the median time per step or call.
cnnlib's default is PASSIVE in a container with a CPU limit and OpenMP's default elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

POLICIES = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "short spin": {"GOMP_SPINCOUNT": "30000"},
}
PAUSE = 0.2  # seconds between bursts
BURSTS = 6
BUSY = "while True: pass"


def worker() -> dict[str, float]:
    """Median ms per step (each model) and per conv forward + backward, in bursts after pauses."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_conv
    import bench_step
    import numba

    from cnnlib.conv import conv2d_backward, conv2d_forward

    numba.set_num_threads(2)
    result = {}
    for title, shape, spec in bench_step.MODELS:
        rng = np.random.default_rng(0)
        model = bench_step.build_cnnlib(spec, rng)
        x = rng.standard_normal((bench_step.BATCH, *shape)).astype(np.float32)
        labels = rng.integers(0, 10, bench_step.BATCH)
        step = bench_step.cnnlib_step(model, bench_step.SGD(model, lr=0.01), x, labels)
        result[title] = bursts(step, 20)
    x, w, b, dout = bench_conv.problem(*bench_conv.SHAPES[-1])
    result["conv 3×3 fwd+bwd"] = bursts(
        lambda: conv2d_backward(dout, conv2d_forward(x, w, b, padding=1)[1]), 8
    )
    return result


def bursts(fn, calls: int) -> float:
    """Median ms of ``calls`` calls after each of BURSTS pauses (after 5 untimed calls)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(BURSTS):
        time.sleep(PAUSE)
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def run(policy: dict[str, str]) -> dict[str, float]:
    drop = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CPU_LIMIT")
    env = {k: v for k, v in os.environ.items() if k not in drop} | policy
    out = subprocess.run([sys.executable, __file__, "--worker"], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes per cell (median)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker()))
        return 0
    table = {}
    for load in ("quiet", "one busy process"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load != "quiet" else None
        try:
            time.sleep(0.5)
            for r in range(args.rounds):
                for name in list(POLICIES) if r % 2 == 0 else list(POLICIES)[::-1]:
                    table.setdefault((load, name), []).append(run(POLICIES[name]))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    cases = list(next(iter(table.values()))[0])
    print(f"median ms per step or call, {BURSTS} bursts after {PAUSE} s pauses, "
          f"median of {args.rounds} processes\n")
    header = f"{'machine':<17} | {'policy':<10} | " + " | ".join(f"{c:>18}" for c in cases)
    print(header + "\n" + "-" * len(header))
    for (load, name), runs in table.items():
        cells = " | ".join(f"{np.median([r[c] for r in runs]):18.2f}" for c in cases)
        print(f"{load:<17} | {name:<10} | {cells}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
