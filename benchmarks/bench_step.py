"""One SGD training step of the class's two CNNs: cnnlib against PyTorch CPU (float32, 2 threads).

    python benchmarks/bench_step.py [--rounds 40] [--block 5]

Model (a), LeNet-like, on 1×28×28: Conv2d(1,8,5,pad 2) ReLU MaxPool2 Conv2d(8,16,5,pad 2) ReLU
MaxPool2 Flatten Linear(784,10). Model (b), a BatchNorm CNN on 3×32×32: Conv2d(3,16,3,pad 1) BN
ReLU MaxPool2 Conv2d(16,32,3,pad 1) BN ReLU MaxPool2 Flatten Linear(2048,10). Batch 64.

A step is forward, softmax cross-entropy, backward (without a gradient of the images, in both
libraries: ``model.backward(dlogits, input_grad=False)``) and a plain SGD update. Both start
from the same weights (one step is compared first, so the two really are the same network) and
are timed side by side: ``rounds`` rounds of ``block`` steps each, alternating which library goes
first, so a busy shared machine slows both alike. The ratio is the median cnnlib step over the
median PyTorch step (≤ 1 means cnnlib is at least as fast). The per-layer table times each
layer's forward and backward on its own (the same arrays a step uses) to show the bottleneck.

Importing cnnlib may change OpenMP's settings (``OMP_WAIT_POLICY=PASSIVE`` in a container with a
CPU limit, see ``cnnlib/_jit.py``), and PyTorch in the same process would share them. The
target ratio is therefore measured a second way, which is the one the verdict uses: each library
in processes of its own with its own default settings (PyTorch's never imports cnnlib), the two
kinds of process alternating, ``--process-rounds`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numba
import numpy as np

ENV_BEFORE_CNNLIB = dict(os.environ)  # for PyTorch's worker: importing cnnlib changes OpenMP's

from cnnlib import layers as L  # noqa: E402  (after ENV_BEFORE_CNNLIB)
from cnnlib.losses import softmax_cross_entropy  # noqa: E402
from cnnlib.optim import SGD  # noqa: E402

THREADS = 2
BATCH = 64
LR = 0.01

# (name, input shape of one sample, layers as (kind, *arguments))
MODELS = [
    ("(a) LeNet-like", (1, 28, 28), [
        ("conv", 1, 8, 5, 2), ("relu",), ("maxpool", 2),
        ("conv", 8, 16, 5, 2), ("relu",), ("maxpool", 2),
        ("flatten",), ("linear", 784, 10),
    ]),
    ("(b) BatchNorm CNN", (3, 32, 32), [
        ("conv", 3, 16, 3, 1), ("bn", 16), ("relu",), ("maxpool", 2),
        ("conv", 16, 32, 3, 1), ("bn", 32), ("relu",), ("maxpool", 2),
        ("flatten",), ("linear", 2048, 10),
    ]),
]


def build_cnnlib(spec: list[tuple], rng: np.random.Generator) -> L.Sequential:
    make = {
        "conv": lambda c, f, k, p: L.Conv2d(c, f, k, padding=p, rng=rng),
        "relu": L.ReLU,
        "maxpool": L.MaxPool2d,
        "bn": L.BatchNorm2d,
        "flatten": L.Flatten,
        "linear": lambda i, o: L.Linear(i, o, rng=rng),
    }
    return L.Sequential(*(make[kind](*args) for kind, *args in spec))


def build_torch(torch, model: L.Sequential):
    """The same network in PyTorch, holding copies of the cnnlib model's weights."""
    nn = torch.nn
    modules = []
    for layer in model.layers:
        if isinstance(layer, L.Conv2d):
            f, c, k, _ = layer.params["w"].shape
            m = nn.Conv2d(c, f, k, padding=layer.padding)
        elif isinstance(layer, L.Linear):
            m = nn.Linear(layer.in_features, layer.out_features)
        elif isinstance(layer, L.BatchNorm2d):
            m = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, L.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, L.MaxPool2d):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, L.Flatten):
            m = nn.Flatten()
        else:
            raise TypeError(f"no PyTorch twin for {layer!r}")
        with torch.no_grad():
            for name, p in zip(("weight", "bias"), layer.params.values(), strict=False):
                getattr(m, name).copy_(torch.from_numpy(p))
        modules.append(m)
    return nn.Sequential(*modules)


def cnnlib_step(model: L.Sequential, optimizer: SGD, x: np.ndarray,
                labels: np.ndarray) -> Callable[[], float]:
    def step() -> float:
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, labels)
        model.backward(dlogits, input_grad=False)  # as PyTorch: no gradient of the images
        optimizer.step()
        return loss

    return step


def torch_step(torch, model, x: np.ndarray, labels: np.ndarray) -> Callable[[], float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)

    def step() -> float:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def check_same_network(torch, model, twin, run_ours, run_theirs) -> float:
    """Run one step of each and compare the losses and the updated weights; returns the loss."""
    loss_ours, loss_theirs = run_ours(), run_theirs()
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=1e-4)
    theirs = [p.detach().numpy() for p in twin.parameters()]
    ours = [p for p, _ in model.parameters()]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    return loss_ours


def interleaved(runs: dict[str, Callable[[], object]], rounds: int,
                block: int) -> dict[str, np.ndarray]:
    """Step times, (rounds, block − 1) per run: each round runs ``block`` steps of every run,
    alternating which goes first; the first step of a block (the switch from the other library,
    its thread pool still busy) is not kept."""
    times = {name: np.zeros((rounds, block - 1)) for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            run = runs[name]
            run()
            for k in range(block - 1):
                start = time.perf_counter()
                run()
                times[name][r, k] = time.perf_counter() - start
    return times


# --------------------------------------------------------------------------- per-layer times


def cnnlib_layer_step(model: L.Sequential, x: np.ndarray, labels: np.ndarray,
                      optimizer: SGD) -> np.ndarray:
    """Seconds, (layers + 2, 2): forward and backward of each layer, then the loss and the
    update (column 0), measured in one training step run layer by layer."""
    k_layers = len(model.layers)
    t = np.zeros((k_layers + 2, 2))
    h = x
    for k, layer in enumerate(model.layers):
        start = time.perf_counter()
        h = layer.forward(h)
        t[k, 0] = time.perf_counter() - start
    start = time.perf_counter()
    _, dout = softmax_cross_entropy(h, labels)
    t[k_layers, 0] = time.perf_counter() - start
    for k in reversed(range(k_layers)):
        layer, start = model.layers[k], time.perf_counter()
        if k == 0:  # as in a real step: no input gradient
            L.backward_params(layer, dout)
        else:
            dout = layer.backward(dout)
        t[k, 1] = time.perf_counter() - start
    start = time.perf_counter()
    optimizer.step()
    t[k_layers + 1, 0] = time.perf_counter() - start
    return t


def torch_layer_step(torch, twin, x: np.ndarray, labels: np.ndarray, optimizer) -> np.ndarray:
    """The same table for PyTorch: each module runs on a detached copy of its input and its
    backward is ``torch.autograd.grad``. The first layer gets no input gradient, as in a real
    step (PyTorch skips it there too)."""
    mods = list(twin)
    yt = torch.from_numpy(labels)
    t = np.zeros((len(mods) + 2, 2))
    h = torch.from_numpy(x)
    saved = []
    for k, mod in enumerate(mods):
        h_in = h.detach().requires_grad_(k > 0)
        start = time.perf_counter()
        h = mod(h_in)
        t[k, 0] = time.perf_counter() - start
        saved.append((h_in, h))
    start = time.perf_counter()
    logits = h.detach().requires_grad_()
    (dout,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, yt), [logits])
    t[len(mods), 0] = time.perf_counter() - start
    for k in reversed(range(len(mods))):
        h_in, h = saved[k]
        wrt = ([h_in] if k > 0 else []) + list(mods[k].parameters())
        start = time.perf_counter()
        grads = torch.autograd.grad(h, wrt, dout) if wrt else ()
        t[k, 1] = time.perf_counter() - start
        if k > 0:
            dout = grads[0]
        for param, grad in zip(mods[k].parameters(), grads[k > 0:], strict=True):
            param.grad = grad
    start = time.perf_counter()
    optimizer.step()
    t[len(mods) + 1, 0] = time.perf_counter() - start
    return t


def short_name(layer: L.Layer) -> str:
    """``Conv2d(3, 16, 3, pad 1)``, ``BatchNorm2d(16)``, ``MaxPool2d(2)``, ``Linear(2048, 10)``."""
    if isinstance(layer, L.Conv2d):
        return (f"Conv2d({layer.in_channels}, {layer.out_channels}, {layer.kernel_size[0]}, "
                f"pad {layer.padding[0]})")
    if isinstance(layer, L.BatchNorm2d):
        return f"BatchNorm2d({layer.num_features})"
    if isinstance(layer, L.MaxPool2d):
        return f"MaxPool2d({layer.kernel_size[0]})"
    if isinstance(layer, L.Linear):
        return f"Linear({layer.in_features}, {layer.out_features})"
    return type(layer).__name__


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.3f}" if np.isfinite(seconds) else "      -"


def print_layer_table(model: L.Sequential, ours: np.ndarray, theirs: np.ndarray | None) -> None:
    med_ours = np.median(ours, axis=0)
    med_theirs = np.median(theirs, axis=0) if theirs is not None else np.full_like(med_ours, np.nan)
    names = [f"{k} {short_name(layer)}" for k, layer in enumerate(model.layers)]
    names += ["loss (softmax cross-entropy)", "SGD update"]
    header = f"{'layer':<30} | {'cnnlib fwd':>10} | {'bwd':>7} | {'torch fwd':>9} | {'bwd':>7}"
    print(header + "\n" + "-" * len(header))
    for name, (f, b), (tf, tb) in zip(names, med_ours, med_theirs, strict=True):
        print(f"{name:<30} | {ms(f):>10} | {ms(b):>7} | {ms(tf):>9} | {ms(tb):>7}")
    total, total_t = med_ours.sum(), med_theirs.sum()
    print(f"{'sum of the parts (ms)':<30} | {ms(total):>10} | {'':>7} | {ms(total_t):>9} |")


# ------------------------------------------------------------------------------------ main


def bench_model(torch, title: str, shape: tuple[int, ...], spec: list[tuple], rounds: int,
                block: int) -> dict[str, object]:
    """Check the twins agree, print the per-layer table, return the interleaved step times:
    ``{"cnnlib": median s, "torch": median s, "round_ratios": quartiles of per-round ratios}``."""
    rng = np.random.default_rng(0)
    model = build_cnnlib(spec, rng)
    x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, BATCH)
    runs = {"cnnlib": cnnlib_step(model, SGD(model, lr=LR), x, labels)}
    twin = None
    if torch is not None:
        twin = build_torch(torch, model)
        runs["torch"] = torch_step(torch, twin, x, labels)
        check_same_network(torch, model, twin, runs["cnnlib"], runs["torch"])
    for run in runs.values():  # warm-up: compile (or load) kernels, grow the allocators
        for _ in range(3):
            run()
    print(f"\n{title}: batch {BATCH}, input {'×'.join(map(str, shape))}, float32, "
          f"{THREADS} threads\n")
    optimizer = SGD(model, lr=LR)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=LR) if torch is not None else None
    ours, theirs = [], []
    for _ in range(max(10, rounds // 2)):  # alternating, like the whole steps below
        ours.append(cnnlib_layer_step(model, x, labels, optimizer))
        if torch is not None:
            theirs.append(torch_layer_step(torch, twin, x, labels, twin_optimizer))
    print_layer_table(model, np.array(ours), np.array(theirs) if theirs else None)
    times = interleaved(runs, rounds, block)
    result = {name: float(np.median(t)) for name, t in times.items()}
    if "torch" in times:  # per-round ratios: a load that drifts over the run cancels out
        per_round = np.median(times["cnnlib"], axis=1) / np.median(times["torch"], axis=1)
        result["round_ratios"] = np.percentile(per_round, [25, 50, 75])
    return result


# ------------------------------------------------------------------ separate processes

# PyTorch's worker imports only numpy and torch, so it runs with PyTorch's own OpenMP defaults.
TORCH_WORKER = """
import json, sys, time
import numpy as np, torch
models, threads, steps, batch, lr = json.loads(sys.argv[1])
torch.set_num_threads(threads)
nn = torch.nn
make = {"conv": lambda c, f, k, p: nn.Conv2d(c, f, k, padding=p), "relu": nn.ReLU,
        "maxpool": nn.MaxPool2d, "bn": nn.BatchNorm2d, "flatten": nn.Flatten,
        "linear": nn.Linear}
result = {}
for title, shape, spec in models:
    model = nn.Sequential(*(make[kind](*args) for kind, *args in spec))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    times = []
    for k in range(steps + 5):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    result[title] = float(np.median(times[5:]))
print(json.dumps(result))
"""


def cnnlib_worker(steps: int) -> dict[str, float]:
    """Median step time of each model, cnnlib alone in this process."""
    numba.set_num_threads(THREADS)
    result = {}
    for title, shape, spec in MODELS:
        rng = np.random.default_rng(0)
        model = build_cnnlib(spec, rng)
        x = rng.standard_normal((BATCH, *shape)).astype(np.float32)
        step = cnnlib_step(model, SGD(model, lr=LR), x, rng.integers(0, 10, BATCH))
        times = []
        for _ in range(steps + 5):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        result[title] = float(np.median(times[5:]))
    return result


def separate_processes(rounds: int, steps: int) -> dict[str, np.ndarray]:
    """Per-round median step times {library: (rounds, models)}, one fresh process per library
    and round, alternating which library goes first."""
    commands = {
        "cnnlib": [sys.executable, __file__, "--worker", str(steps)],
        "torch": [sys.executable, "-c", TORCH_WORKER,
                  json.dumps([MODELS, THREADS, steps, BATCH, LR])],
    }
    times = {name: np.zeros((rounds, len(MODELS))) for name in commands}
    for r in range(rounds):
        for name in ("cnnlib", "torch") if r % 2 == 0 else ("torch", "cnnlib"):
            out = subprocess.run(commands[name], capture_output=True, text=True, check=True,
                                 env=ENV_BEFORE_CNNLIB)
            medians = json.loads(out.stdout.strip().splitlines()[-1])
            times[name][r] = [medians[title] for title, _, _ in MODELS]
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="alternating rounds (default 40)")
    parser.add_argument("--block", type=int, default=5,
                        help="steps per round, the first one not kept (default 5)")
    parser.add_argument("--process-rounds", type=int, default=6,
                        help="rounds of one process per library (default 6)")
    parser.add_argument("--worker", type=int, metavar="STEPS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(cnnlib_worker(args.worker)))
        return 0
    if args.block < 2 or args.rounds < 1:
        parser.error("--block must be at least 2 and --rounds at least 1")
    numba.set_num_threads(THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        torch = None
        print("PyTorch is not installed: its columns are skipped (pip install torch to compare).")
    rows = []
    for title, shape, spec in MODELS:
        result = bench_model(torch, title, shape, spec, args.rounds, args.block)
        rows.append((title, result))
    kept = args.rounds * (args.block - 1)
    print(f"\nOne SGD step (forward, loss, backward, update), in one process: median of {kept} "
          f"steps each, interleaved in blocks of {args.block} (PyTorch with the OpenMP "
          "settings importing cnnlib left)")
    header = (f"{'model':<20} | {'cnnlib ms':>9} | {'torch ms':>9} | {'cnnlib/torch':>12} | "
              f"{'per round (IQR)':>15}")
    print(header + "\n" + "-" * len(header))
    for title, result in rows:
        ours, theirs = result["cnnlib"], result.get("torch", float("nan"))
        spread = "-"
        if "round_ratios" in result:
            q1, q2, q3 = result["round_ratios"]
            spread = f"{q2:.2f} ({q1:.2f}-{q3:.2f})"
        print(f"{title:<20} | {ms(ours):>9} | {ms(theirs):>9} | {ours / theirs:12.2f} | "
              f"{spread:>15}")
    ok = True
    if torch is not None:
        steps = max(50, args.rounds * (args.block - 1) // 2)
        sep = separate_processes(args.process_rounds, steps)
        print(f"\nThe same step, each library in processes of its own with its own settings "
              f"(the target): {args.process_rounds} rounds of one process each, median of "
              f"{steps} steps per process")
        header = (f"{'model':<20} | {'cnnlib ms':>9} | {'torch ms':>9} | {'cnnlib/torch':>12} | "
                  f"{'rounds (min-max)':>16} | target")
        print(header + "\n" + "-" * len(header))
        for k, (title, _, _) in enumerate(MODELS):
            ours, theirs = np.median(sep["cnnlib"][:, k]), np.median(sep["torch"][:, k])
            per_round = sep["cnnlib"][:, k] / sep["torch"][:, k]
            ratio = float(np.median(per_round))
            ok &= ratio <= 1.0
            print(f"{title:<20} | {ms(ours):>9} | {ms(theirs):>9} | {ratio:12.2f} | "
                  f"{per_round.min():7.2f}-{per_round.max():<8.2f} | "
                  f"≤ 1.0 {'ok' if ratio <= 1.0 else 'MISSED'}")
    print(threading_setup(torch))
    return 0 if ok else 1


def threading_setup(torch) -> str:
    """The settings that decide how the two libraries use the cores."""
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}"
                    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                              "OPENBLAS_NUM_THREADS"))
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not started"
    torch_part = f", torch {torch.get_num_threads()} threads" if torch is not None else ""
    return (f"numba {numba.get_num_threads()} threads (layer: {layer}){torch_part}; {env}; "
            f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
