"""Slow, obviously correct NumPy versions of every layer: the oracle for the tests.

Each function follows the lecture's formula as literally as NumPy allows, computes in float64,
checks nothing and is independent of the Numba kernels it is compared with.  Forward functions
return the output only; backward functions take the forward's inputs again and return the
gradients in the forward's argument order.  Notebooks use them to show a formula next to the
fast kernel that computes it.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[float])


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    """H_out = (H + 2·padding − dilation·(K − 1) − 1) // stride + 1."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _pad(x, padding, value=0.0):
    ph, pw = _pair(padding)
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)),
                  constant_values=value)


# --- convolution ------------------------------------------------------------------------------

def conv2d(x, w, b, stride=1, padding=0, dilation=1):
    """Y[n,f,i,j] = Σ_c Σ_m Σ_q Xpad[n, c, i·sh + m·dh, j·sw + q·dw] · W[f,c,m,q] + b[f]."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    xp = _pad(x, padding)
    w = np.asarray(w, dtype=np.float64)
    N, F, KH, KW = xp.shape[0], w.shape[0], w.shape[2], w.shape[3]
    H_out = (xp.shape[2] - dh * (KH - 1) - 1) // sh + 1
    W_out = (xp.shape[3] - dw * (KW - 1) - 1) // sw + 1
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = xp[n, :, i * sh:i * sh + dh * (KH - 1) + 1:dh,
                                j * sw:j * sw + dw * (KW - 1) + 1:dw]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out


def conv2d_backward(dout, x, w, stride=1, padding=0, dilation=1):
    """Scatter each output's gradient back to the window it was computed from.

    dX[window(n,i,j)] += W[f]·dY[n,f,i,j];  dW[f] += window(n,i,j)·dY[n,f,i,j];  db[f] = Σ dY[:,f].
    """
    (sh, sw), (dh, dw), (ph, pw) = _pair(stride), _pair(dilation), _pair(padding)
    xp = _pad(x, padding)
    w = np.asarray(w, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    KH, KW = w.shape[2], w.shape[3]
    dxp, dw_ = np.zeros_like(xp), np.zeros_like(w)
    N, F, H_out, W_out = dout.shape
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * sh, i * sh + dh * (KH - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (KW - 1) + 1, dw)
                    dxp[n, :, rows, cols] += w[f] * dout[n, f, i, j]
                    dw_[f] += xp[n, :, rows, cols] * dout[n, f, i, j]
    dx = dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]
    return dx, dw_, dout.sum(axis=(0, 2, 3))


# --- pooling ----------------------------------------------------------------------------------

def _pool_windows(x, kernel_size, stride, padding, pad_value):
    """Yield (n, c, i, j, rows, cols, window) over every pooling window of the padded input."""
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    xp = _pad(x, padding, pad_value)
    N, C, Hp, Wp = xp.shape
    H_out, W_out = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    yield n, c, i, j, rows, cols, xp[n, c, rows, cols]


def _pool_shape(x, kernel_size, stride, padding):
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    N, C, H, W = np.shape(x)
    return N, C, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Y[n,c,i,j] = max over the window of Xpad (padding is −∞)."""
    out = np.zeros(_pool_shape(x, kernel_size, stride, padding))
    for n, c, i, j, _, _, window in _pool_windows(x, kernel_size, stride, padding, -np.inf):
        out[n, c, i, j] = window.max()
    return out


def _pool_backward(dout, x, kernel_size, stride, padding, fill, route):
    """dX from ``route(window) -> weights``: each window adds dout[n, c, i, j]·weights to the
    padded dX under it; the padding is cut off at the end."""
    ph, pw = _pair(padding)
    x = np.asarray(x, dtype=np.float64)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw))
    for n, c, i, j, rows, cols, window in _pool_windows(x, kernel_size, stride, padding, fill):
        dxp[n, c, rows, cols] += dout[n, c, i, j] * route(window)
    return dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]


def _first_max(window):
    """1 at the window's first maximum in row-major order, 0 elsewhere."""
    weights = np.zeros(window.shape)
    weights[np.unravel_index(np.argmax(window), window.shape)] = 1.0
    return weights


def max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    """Each window's gradient goes to its first maximum in row-major order."""
    return _pool_backward(dout, x, kernel_size, stride, padding, -np.inf, _first_max)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Y[n,c,i,j] = mean of the window of Xpad (zero padding counted, divisor KH·KW)."""
    out = np.zeros(_pool_shape(x, kernel_size, stride, padding))
    for n, c, i, j, _, _, window in _pool_windows(x, kernel_size, stride, padding, 0.0):
        out[n, c, i, j] = window.mean()
    return out


def avg_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    """Each window spreads its gradient evenly: dX[window] += dY / (KH·KW)."""
    return _pool_backward(dout, x, kernel_size, stride, padding, 0.0,
                          lambda window: np.full(window.shape, 1.0 / window.size))


# --- normalization ----------------------------------------------------------------------------

def _normalize(x, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # biased: divides by the number of elements
    return (x - mu) / np.sqrt(var + eps)


def _normalize_backward(dxhat, x, axes, eps):
    """dx for x̂ = (x − μ)/σ over `axes`: (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / σ."""
    xhat = _normalize(x, axes, eps)
    sigma = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return (dxhat - dxhat.mean(axis=axes, keepdims=True)
            - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)) / sigma


def _per_channel(v):
    return np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1)


def batch_norm(x, gamma, beta, eps=1e-5):
    """y = γ·x̂ + β with x̂ = (x − μ_c)/√(σ²_c + ε), μ, σ² over (N, H, W)."""
    x = np.asarray(x, dtype=np.float64)
    return _per_channel(gamma) * _normalize(x, (0, 2, 3), eps) + _per_channel(beta)


def batch_norm_backward(dout, x, gamma, eps=1e-5):
    x, dout = np.asarray(x, dtype=np.float64), np.asarray(dout, dtype=np.float64)
    xhat = _normalize(x, (0, 2, 3), eps)
    dx = _normalize_backward(dout * _per_channel(gamma), x, (0, 2, 3), eps)
    return dx, (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def group_norm(x, gamma, beta, groups, eps=1e-5):
    """Per sample and group of C/groups channels: x̂ over (channels of the group, H, W)."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    xg = x.reshape(N, groups, C // groups, H, W)
    xhat = _normalize(xg, (2, 3, 4), eps).reshape(N, C, H, W)
    return _per_channel(gamma) * xhat + _per_channel(beta)


def group_norm_backward(dout, x, gamma, groups, eps=1e-5):
    x, dout = np.asarray(x, dtype=np.float64), np.asarray(dout, dtype=np.float64)
    N, C, H, W = x.shape
    xg = x.reshape(N, groups, C // groups, H, W)
    xhat = _normalize(xg, (2, 3, 4), eps).reshape(N, C, H, W)
    dxhat = (dout * _per_channel(gamma)).reshape(xg.shape)
    dx = _normalize_backward(dxhat, xg, (2, 3, 4), eps).reshape(N, C, H, W)
    return dx, (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def layer_norm(x, gamma, beta, eps=1e-5):
    """Per sample over (C, H, W): group normalization with one group."""
    return group_norm(x, gamma, beta, 1, eps)


def layer_norm_backward(dout, x, gamma, eps=1e-5):
    return group_norm_backward(dout, x, gamma, 1, eps)


# --- fully connected --------------------------------------------------------------------------

def linear(x, w, b):
    """y[n, o] = Σ_i W[o, i] · x[n, i] + b[o]."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    out = np.zeros((x.shape[0], w.shape[0]))
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            out[n, o] = np.sum(w[o] * x[n]) + b[o]
    return out


def linear_backward(dout, x, w):
    """dx = dY·W, dW = dYᵀ·x, db = Σ_n dY."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    dout = np.asarray(dout, dtype=np.float64)
    return dout @ w, dout.T @ x, dout.sum(axis=0)


# --- activations: f(x) and dx = dout · f'(x) --------------------------------------------------

def relu(x):
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def relu_backward(dout, x):
    return dout * (np.asarray(x) > 0)


def leaky_relu(x, alpha=0.01):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, alpha * x)


def leaky_relu_backward(dout, x, alpha=0.01):
    return dout * np.where(np.asarray(x) > 0, 1.0, alpha)


def elu(x, alpha=1.0):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def elu_backward(dout, x, alpha=1.0):
    x = np.asarray(x, dtype=np.float64)
    return dout * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))


def gelu(x):
    """GELU(x) = x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2 (exact form)."""
    x = np.asarray(x, dtype=np.float64)
    return x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_backward(dout, x):
    """GELU'(x) = Φ(x) + x·φ(x), φ the standard normal density."""
    x = np.asarray(x, dtype=np.float64)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dout * (0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * phi)


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # σ(x) written without overflow for large |x|


def sigmoid_backward(dout, x):
    s = sigmoid(x)
    return dout * s * (1.0 - s)


def tanh(x):
    return np.tanh(np.asarray(x, dtype=np.float64))


def tanh_backward(dout, x):
    return dout * (1.0 - tanh(x) ** 2)


# --- softmax and loss -------------------------------------------------------------------------

def softmax(logits):
    """p[n, k] = exp(z[n, k] − max_k z[n]) / Σ_k exp(z[n, k] − max_k z[n])."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """L = −(1/N) Σ_n log p[n, y_n];  dL/dz = (p − onehot(y)) / N."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N, labels = z.shape[0], np.asarray(labels)
    loss = -np.mean(log_p[np.arange(N), labels])
    p = np.exp(log_p)
    dlogits = p.copy()
    dlogits[np.arange(N), labels] -= 1.0
    return float(loss), dlogits / N
