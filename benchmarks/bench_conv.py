"""Convolution forward + backward in float32: cnnlib against NumPy im2col and PyTorch.

    python benchmarks/bench_conv.py [--repeats 20]

The NumPy baseline is the popular from-scratch technique, written here from the formula: im2col
by slicing over the kernel offsets, one matrix product, col2im by adding the slices back.
PyTorch (``torch.nn.functional.conv2d`` with 2 threads) is compared when it can be imported.
The libraries are timed one after the other (PyTorch last), so that no other thread pool is
busy or spinning while one is timed.
Each time is the median (and the minimum) of several repeats after a warm-up. GFLOP/s counts
2 FLOPs per multiply-add (backward = dx + dw = twice the forward); "% peak" relates cnnlib's
forward + backward rate to this machine's large float32 matrix product (NumPy's BLAS).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from cnnlib.conv import conv2d_backward, conv2d_forward, conv_output_size

SHAPES = [(64, 1, 28, 8, 5), (64, 8, 14, 16, 5), (32, 16, 16, 32, 3)]  # (N, C, H=W, F, K)


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


def timing(fn, repeats, warmup=3):
    """(median, minimum) wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times))


def matmul_peak_gflops(n=2048):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    c = np.empty_like(a)
    return 2 * n**3 / timing(lambda: np.matmul(a, a, out=c), 7, warmup=1)[1] / 1e9


def problem(N, C, H, F, K, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32)
    b = np.zeros(F, np.float32)
    H_out = conv_output_size(H, K, padding=K // 2)
    dout = rng.standard_normal((N, F, H_out, H_out)).astype(np.float32)
    return x, w, b, dout


def time_numpy(shape, repeats):
    x, w, b, dout = problem(*shape)
    pad = shape[-1] // 2
    return timing(lambda: numpy_conv_backward(dout, numpy_conv_forward(x, w, b, pad)[1]), repeats)


def time_cnnlib(shape, repeats):
    x, w, b, dout = problem(*shape)
    pad = shape[-1] // 2
    out_np, cache_np = numpy_conv_forward(x, w, b, pad)
    out, cache = conv2d_forward(x, w, b, padding=pad)
    np.testing.assert_allclose(out, out_np, rtol=1e-4, atol=1e-4)
    grads = zip(conv2d_backward(dout, cache), numpy_conv_backward(dout, cache_np), strict=True)
    for ours, theirs in grads:
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)
    fwd = timing(lambda: conv2d_forward(x, w, b, padding=pad), repeats)
    both = timing(lambda: conv2d_backward(dout, conv2d_forward(x, w, b, padding=pad)[1]), repeats)
    return fwd, both


def time_torch(torch, shape, repeats):
    x, w, b, dout = problem(*shape)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    dt = torch.from_numpy(dout)

    def step():
        xt.grad = wt.grad = bt.grad = None
        torch.nn.functional.conv2d(xt, wt, bt, padding=shape[-1] // 2).backward(dt)

    return timing(step, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    peak = matmul_peak_gflops()
    print(f"float32 matmul 2048×2048 (NumPy BLAS): {peak:.0f} GFLOP/s = 100 % peak")
    if "OPENBLAS_CORETYPE" in os.environ:
        print(f"(OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} chooses NumPy's BLAS kernels)")
    numpy_times = {s: time_numpy(s, args.repeats) for s in SHAPES}
    time.sleep(0.5)  # let BLAS's idle threads stop spinning before the next library runs
    cnnlib_times = {s: time_cnnlib(s, args.repeats) for s in SHAPES}
    time.sleep(0.5)
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: its column is skipped (pip install torch to compare).")
    else:
        torch.set_num_threads(2)
    torch_times = {
        s: time_torch(torch, s, args.repeats) if torch else (np.nan,) * 2 for s in SHAPES
    }

    print("forward + backward, median (min) in ms; the 'vs' columns are median ratios, > 1 means")
    print("cnnlib is faster\n")
    header = (
        f"{'N, C, H, F, K':>16} | {'NumPy im2col':>14} | {'cnnlib':>12} | {'PyTorch':>12} | "
        f"{'vs NumPy':>8} | {'vs torch':>8} | {'fwd GF/s':>8} | {'bwd GF/s':>8} | {'% peak':>6}"
    )
    print(header + "\n" + "-" * len(header))
    for shape in SHAPES:
        N, C, H, F, K = shape
        t_np, t_torch = numpy_times[shape], torch_times[shape]
        t_fwd, t_cl = cnnlib_times[shape]
        flops = 2 * N * F * C * K * K * conv_output_size(H, K, padding=K // 2) ** 2
        print(
            f"{f'{N}, {C}, {H}, {F}, {K}':>16} | "
            f"{t_np[0] * 1e3:5.2f} ({t_np[1] * 1e3:5.2f}) | "
            f"{t_cl[0] * 1e3:4.2f} ({t_cl[1] * 1e3:4.2f}) | "
            f"{t_torch[0] * 1e3:4.2f} ({t_torch[1] * 1e3:4.2f}) | "
            f"{t_np[0] / t_cl[0]:7.1f}× | {t_torch[0] / t_cl[0]:7.2f}× | "
            f"{flops / t_fwd[0] / 1e9:8.1f} | {2 * flops / (t_cl[0] - t_fwd[0]) / 1e9:8.1f} | "
            f"{100 * 3 * flops / t_cl[0] / 1e9 / peak:5.1f}%"
        )


if __name__ == "__main__":
    main()
