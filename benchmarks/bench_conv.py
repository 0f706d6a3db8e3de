"""Convolution forward + backward in float32: cnnlib against NumPy im2col and PyTorch.

    python benchmarks/bench_conv.py [--rounds 12] [--repeats 7]

Target (issue 5): cnnlib ≥ 3× faster than NumPy im2col on every shape; the script prints PASS
or FAIL per shape and exits with code 1 when a shape misses it.

The NumPy baseline is the popular from-scratch technique, written here from the formula: im2col
by slicing over the kernel offsets, one matrix product, col2im by adding the slices back.
PyTorch (``torch.nn.functional.conv2d`` with 2 threads) is compared when it can be imported.
The libraries are interleaved: each round times a block of calls of each library in turn
(alternating which goes first), with a pause between blocks so that one library's idle thread
pool cannot slow the next one down. Every block starts with one untimed call on the same arrays,
so no library gets warmer caches than another. A load that drifts over the run (the machine
may be shared) then slows all alike; the ratio is taken per round, and its median and range over
the rounds are printed. GFLOP/s counts 2 FLOPs per multiply-add (backward = dx + dw = twice the
forward); "% peak" relates cnnlib's forward + backward rate to this machine's large float32
matrix product (NumPy's BLAS).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from cnnlib.conv import conv2d_backward, conv2d_forward, conv_output_size

SHAPES = [(64, 1, 28, 8, 5), (64, 8, 14, 16, 5), (32, 16, 16, 32, 3)]  # (N, C, H=W, F, K)
TARGET = 3.0  # cnnlib must be at least this many times faster than NumPy im2col
PAUSE = 0.15  # seconds between blocks: OpenBLAS's idle threads spin for up to ~0.1 s


def numpy_conv_forward(x, w, b, pad):
    """Stride-1 convolution by im2col: one (N·P, C·K·K) × (C·K·K, F) matrix product."""
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    H_out, W_out = H + 2 * pad - K + 1, W + 2 * pad - K + 1
    cols = np.empty((N, C, K, K, H_out, W_out), x.dtype)
    for m in range(K):
        for q in range(K):
            cols[:, :, m, q] = xp[:, :, m : m + H_out, q : q + W_out]
    cols = cols.transpose(0, 4, 5, 1, 2, 3).reshape(N * H_out * W_out, C * K * K)
    out = cols @ w.reshape(F, -1).T + b  # (N·P, F)
    out = out.reshape(N, H_out, W_out, F).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), (x.shape, w, pad, cols)


def numpy_conv_backward(dout, cache):
    """col2im by adding each kernel offset's slice back into the padded dx."""
    (N, C, H, W), w, pad, cols = cache
    F, _, K, _ = w.shape
    H_out, W_out = dout.shape[2:]
    dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, F)  # (N·P, F)
    dw = (dout2.T @ cols).reshape(w.shape)
    db = dout2.sum(axis=0)
    dcols = (dout2 @ w.reshape(F, -1)).reshape(N, H_out, W_out, C, K, K)
    dcols = dcols.transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dout.dtype)
    for m in range(K):
        for q in range(K):
            dxp[:, :, m : m + H_out, q : q + W_out] += dcols[:, :, m, q]
    return dxp[:, :, pad : pad + H, pad : pad + W], dw, db


def block(fn, repeats):
    """Median wall time (s) of ``repeats`` calls of fn(), after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_peak_gflops(n=2048):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    return 2 * n**3 / min(block(lambda: np.matmul(a, a, out=c), 1) for _ in range(7)) / 1e9


def problem(N, C, H, F, K, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32)
    b = np.zeros(F, np.float32)
    H_out = conv_output_size(H, K, padding=K // 2)
    dout = rng.standard_normal((N, F, H_out, H_out)).astype(np.float32)
    return x, w, b, dout


def contenders(shape, torch):
    """{name: fn() running one forward + backward}, plus cnnlib's forward alone."""
    x, w, b, dout = problem(*shape)
    pad = shape[-1] // 2
    out_np, cache_np = numpy_conv_forward(x, w, b, pad)
    out, cache = conv2d_forward(x, w, b, padding=pad)
    np.testing.assert_allclose(out, out_np, rtol=1e-4, atol=1e-4)
    grads = zip(conv2d_backward(dout, cache), numpy_conv_backward(dout, cache_np), strict=True)
    for ours, theirs in grads:
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    fns = {
        "numpy": lambda: numpy_conv_backward(dout, numpy_conv_forward(x, w, b, pad)[1]),
        "cnnlib": lambda: conv2d_backward(dout, conv2d_forward(x, w, b, padding=pad)[1]),
        "cnnlib fwd": lambda: conv2d_forward(x, w, b, padding=pad),
    }
    if torch is not None:
        xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        dt = torch.from_numpy(dout)

        def torch_step():
            xt.grad = wt.grad = bt.grad = None
            torch.nn.functional.conv2d(xt, wt, bt, padding=pad).backward(dt)

        fns["torch"] = torch_step
    return fns


def measure(fns, rounds, repeats):
    """{name: array of per-round medians}; the block order rotates from round to round."""
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(block(fns[name], repeats))
            time.sleep(PAUSE)
    return {name: np.array(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per block")
    args = parser.parse_args()

    peak = matmul_peak_gflops()
    print(f"float32 matmul 2048×2048 (NumPy BLAS): {peak:.0f} GFLOP/s = 100 % peak")
    if "OPENBLAS_CORETYPE" in os.environ:
        print(f"(OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} chooses NumPy's BLAS kernels)")
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: its column is skipped (pip install torch to compare).")
    else:
        torch.set_num_threads(2)
    time.sleep(PAUSE)
    results = {s: measure(contenders(s, torch), args.rounds, args.repeats) for s in SHAPES}

    print(
        f"\nforward + backward: median over {args.rounds} rounds of each round's median of "
        f"{args.repeats} calls, in ms."
    )
    print("'vs NumPy' = NumPy time / cnnlib time in the same round: median [lowest – highest];")
    print("'vs torch' likewise; > 1 means cnnlib is faster.\n")
    header = (
        f"{'N, C, H, F, K':>17} | {'NumPy':>6} | {'cnnlib':>6} | {'torch':>6} | "
        f"{'vs NumPy':>18} | {'vs torch':>18} | {'fwd GF/s':>8} | {'bwd GF/s':>8} | "
        f"{'% peak':>6} | target ≥ {TARGET:g}×"
    )
    print(header + "\n" + "-" * len(header))
    missed = 0
    for shape in SHAPES:
        N, C, H, F, K = shape
        t = results[shape]
        vs_numpy = t["numpy"] / t["cnnlib"]
        vs_torch = t["torch"] / t["cnnlib"] if "torch" in t else np.full(args.rounds, np.nan)
        med = {name: float(np.median(v)) for name, v in t.items()}
        flops = 2 * N * F * C * K * K * conv_output_size(H, K, padding=K // 2) ** 2
        bwd = med["cnnlib"] - med["cnnlib fwd"]
        ok = np.median(vs_numpy) >= TARGET
        missed += not ok
        print(
            f"{f'{N}, {C}, {H}, {F}, {K}':>17} | {med['numpy'] * 1e3:6.2f} | "
            f"{med['cnnlib'] * 1e3:6.2f} | {med.get('torch', np.nan) * 1e3:6.2f} | "
            f"{spread(vs_numpy):>18} | {spread(vs_torch):>18} | "
            f"{flops / med['cnnlib fwd'] / 1e9:8.1f} | {2 * flops / bwd / 1e9:8.1f} | "
            f"{100 * 3 * flops / med['cnnlib'] / 1e9 / peak:5.1f}% | "
            f"{'PASS' if ok else 'FAIL'}"
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nload average (1, 5, 15 min) at the end: {load}")
    if missed:
        print(f"FAIL: {missed} of {len(SHAPES)} shapes are below {TARGET:g}× NumPy im2col")
        return 1
    print(f"PASS: every shape is at least {TARGET:g}× faster than NumPy im2col")
    return 0


def spread(ratios):
    """'4.1× [3.8–4.4]': median and range of the per-round ratios."""
    if np.isnan(ratios).all():
        return "—"
    return f"{np.median(ratios):.2f}× [{ratios.min():.2f}–{ratios.max():.2f}]"


if __name__ == "__main__":
    sys.exit(main())
