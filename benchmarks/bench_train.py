"""Time the reference recipe: ``python -m cnnlib.train`` in a cold process, and per layer.

Usage::

    python benchmarks/bench_train.py                      # Fashion-MNIST, cold Numba cache
    python benchmarks/bench_train.py --dataset shapes --small --runs 2
    python benchmarks/bench_train.py --profile            # per-layer time of one batch

The cold run points ``NUMBA_CACHE_DIR`` at a fresh temporary directory, so every kernel is
compiled inside the timed wall clock, then parses the per-epoch lines and the final
``test accuracy`` line. The target (issue 4) is ≥ 0.90 on Fashion-MNIST within 180 s.
The machine may be shared: the load average and the child's CPU time are printed so that a
slow run can be told apart from a busy machine.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

EPOCH_LINE = re.compile(
    r"epoch (\d+)/(\d+): train loss ([\d.]+), train acc ([\d.]+), test loss ([\d.naN]+), "
    r"test acc ([\d.naN]+), lr ([\d.e+-]+), ([\d.]+) s"
)
TARGET_ACCURACY, TARGET_SECONDS = 0.90, 180.0


def cold_run(dataset: str, seed: int, epochs: int | None, small: bool,
             threads: str | None = None) -> dict:
    """One ``python -m cnnlib.train`` in a fresh process with an empty Numba cache.

    ``threads`` = "numba,blas" (e.g. "2,1") sets NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS.
    """
    cmd = [sys.executable, "-m", "cnnlib.train", "--dataset", dataset, "--seed", str(seed),
           "--no-progress"]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if small:
        cmd.append("--small")
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("CNNLIB_SMALL", None)
        if threads:
            env["NUMBA_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"] = threads.split(",")
        load_before = os.getloadavg()[0]
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    epochs_seen = [m.groups() for m in EPOCH_LINE.finditer(proc.stdout)]
    accuracy = re.search(r"^test accuracy: ([\d.]+)$", proc.stdout, re.M)
    if accuracy is None:
        raise SystemExit(f"no 'test accuracy' line in the output:\n{proc.stdout}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"epochs": epochs_seen, "accuracy": float(accuracy.group(1)), "wall": wall,
            "cpu": cpu, "load": (load_before, os.getloadavg()[0])}


def report(run: dict) -> None:
    print(f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test acc':>8}  {'lr':>9}  "
          f"{'seconds':>7}")
    for ep, total, tl, ta, _, te, lr, sec in run["epochs"]:
        print(f"{ep:>3}/{total}  {float(tl):>10.4f}  {float(ta):>9.4f}  {float(te):>8.4f}  "
              f"{float(lr):>9.3g}  {float(sec):>7.1f}")
    seconds = [float(e[-1]) for e in run["epochs"]]
    jit = seconds[0] - float(np.median(seconds[1:])) if len(seconds) > 1 else float("nan")
    print(f"test accuracy {run['accuracy']:.4f}; wall {run['wall']:.1f} s = epochs "
          f"{sum(seconds):.1f} s + start-up and data {run['wall'] - sum(seconds):.1f} s; "
          f"epoch 1 includes the JIT compilation (≈ {jit:.0f} s more than the median epoch)")
    print(f"CPU {run['cpu']:.1f} s; load average {run['load'][0]:.1f} → {run['load'][1]:.1f} "
          f"on {os.cpu_count()} cores")


def profile(dataset: str, batch_size: int, batches: int) -> None:
    """Wall and CPU time of every layer's forward and backward, averaged over ``batches``."""
    from cnnlib.losses import softmax_cross_entropy
    from cnnlib.models import make_cnn
    from cnnlib.recipe import RECIPES, load_dataset

    (x, y), _ = load_dataset(dataset, small=True)
    _, c, s, _ = x.shape
    model = make_cnn(c, int(y.max()) + 1, s, rng=np.random.default_rng(0))
    names = [f"{k}: {type(layer).__name__}" for k, layer in enumerate(model.layers)]
    wall = np.zeros((len(names), 2))
    cpu = np.zeros((len(names), 2))
    batch_size = batch_size or RECIPES[dataset].batch_size
    for b in range(batches + 1):  # batch 0 compiles (or loads the cache) and is not counted
        xb, yb = x[b * batch_size:(b + 1) * batch_size], y[b * batch_size:(b + 1) * batch_size]
        h = xb
        for k, layer in enumerate(model.layers):
            t, c0 = time.perf_counter(), time.process_time()
            h = layer.forward(h)
            if b:
                wall[k, 0] += time.perf_counter() - t
                cpu[k, 0] += time.process_time() - c0
        _, d = softmax_cross_entropy(h, yb)
        for k in reversed(range(len(model.layers))):
            t, c0 = time.perf_counter(), time.process_time()
            d = model.layers[k].backward(d)
            if b:
                wall[k, 1] += time.perf_counter() - t
                cpu[k, 1] += time.process_time() - c0
    wall, cpu = wall / batches * 1e3, cpu / batches * 1e3
    print(f"per batch of {batch_size} ({dataset}), mean over {batches} batches, in ms")
    print(f"{'layer':<16}{'fwd wall':>9}{'bwd wall':>9}{'fwd cpu':>9}{'bwd cpu':>9}")
    for name, (fw, bw), (fc, bc) in zip(names, wall, cpu, strict=True):
        print(f"{name:<16}{fw:>9.2f}{bw:>9.2f}{fc:>9.2f}{bc:>9.2f}")
    print(f"{'total':<16}{wall[:, 0].sum():>9.2f}{wall[:, 1].sum():>9.2f}"
          f"{cpu[:, 0].sum():>9.2f}{cpu[:, 1].sum():>9.2f}")
    steps = 60000 / batch_size
    print(f"→ {wall.sum() * steps / 1e3:.1f} s of layer time per 60000-sample epoch "
          f"(CPU {cpu.sum() * steps / 1e3:.1f} s); load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", default=None,
                        help='"numba,blas" thread counts for the child, e.g. "2,1"')
    parser.add_argument("--profile", action="store_true", help="per-layer timing instead")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    if args.profile:
        profile(args.dataset, args.batch_size, args.batches)
        return
    for r in range(args.runs):
        print(f"run {r + 1}/{args.runs}: python -m cnnlib.train --dataset {args.dataset} "
              f"--seed {args.seed}{' --small' if args.small else ''} (cold Numba cache"
              f"{', threads numba,blas = ' + args.threads if args.threads else ''})")
        run = cold_run(args.dataset, args.seed, args.epochs, args.small, args.threads)
        report(run)
        if args.dataset == "fashion-mnist" and not args.small:
            ok = run["accuracy"] >= TARGET_ACCURACY and run["wall"] <= TARGET_SECONDS
            print(f"target ≥ {TARGET_ACCURACY} within {TARGET_SECONDS:.0f} s: "
                  f"{'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
