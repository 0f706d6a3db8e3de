"""Notebook 05's last two steps (re-exported by :mod:`cnnlib.widgets.backprop`): the numerical
gradient check of every layer, and the update W ← W − η·∂L/∂W on a toy quadratic loss.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import losses
from cnnlib.gradcheck import check_gradients
from cnnlib.optim import SGD
from cnnlib.registry import PAIRS
from cnnlib.widgets._base import Explorer, int_slider

# --------------------------------------------------------------------------- 4. gradient check


def _softmax_ce_forward(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    loss, dlogits = losses.softmax_cross_entropy(logits, labels)
    return np.array(loss), dlogits


def _softmax_ce_backward(dout: np.ndarray, dlogits: np.ndarray) -> np.ndarray:
    return float(dout) * dlogits


def _cases(rng: np.random.Generator) -> list[tuple[str, Callable, Callable, tuple, dict, tuple]]:
    """(name, forward, backward, arrays, hyper-parameters, array names) for every layer: the
    pairs of ``cnnlib.registry`` in float64, then the loss."""
    cases = []
    for pair in PAIRS.values():
        arrays, hyper = pair.sample(rng, np.dtype(np.float64))
        cases.append((pair.label, pair.forward, pair.backward, arrays, hyper, pair.grads))
    cases.append(("softmax_cross_entropy", _softmax_ce_forward, _softmax_ce_backward,
                  (rng.standard_normal((3, 4)),), {"labels": np.array([0, 2, 1])}, ("logits",)))
    return cases


def gradient_check_rows(seed: int = 0) -> list[tuple[str, str, str, float]]:
    """A numerical gradient check of every layer: rows (layer, array, shape, relative error).

    Each row compares the layer's backward with central differences of L = Σ out·dout for a
    random dout (``cnnlib.gradcheck.check_gradients``, float64, h = 1e-6).
    """
    rows = []
    # the data come from another stream than check_gradients' dout: with the same seed the
    # first dout would equal the first array drawn, a degenerate case for batch norm
    for name, fwd, bwd, arrays, hyper, names in _cases(np.random.default_rng(seed + 1000)):
        errors = check_gradients(fwd, bwd, *arrays, seed=seed, **hyper)
        rows += [(name, n, str(a.shape), e) for n, a, e in zip(names, arrays, errors,
                                                                strict=True)]
    return rows


# --------------------------------------------------------------------------- 5. the update

CURVATURE = np.array([1.0, 10.0])  # L(w) = ½·(1·w₀² + 10·w₁²): a long, narrow valley
W_START = np.array([-4.0, 1.5])
REGIME_LABELS = {"divergent": "発散（divergent）", "too small": "小さすぎ（too small）",
                 "good": "ちょうどよい（good）"}


def toy_loss(w: np.ndarray) -> float:
    """L(w) = ½ Σ_k λ_k·w_k² with λ = ``CURVATURE``; its gradient is λ·w."""
    return float(0.5 * np.sum(CURVATURE * np.asarray(w) ** 2))


def descend(lr: float, steps: int = 30, start: np.ndarray = W_START) -> dict:
    """Run W ← W − η·∂L/∂W on the toy loss with ``cnnlib.optim.SGD``.

    Returns the path (steps + 1, 2), the losses, ρ = max_k |1 − η·λ_k| (each step multiplies
    w_k by 1 − η·λ_k) and the regime: "divergent" (the loss grew), "too small" (after
    ``steps`` steps the loss is still above 1% of the start) or "good".
    """
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"学習率（learning rate）は正の数です。指定は {lr} でした")
    w = np.array(start, dtype=np.float64)
    grad = np.zeros_like(w)
    opt = SGD([(w, grad)], lr=lr)
    path, loss_values = [w.copy()], [toy_loss(w)]
    for _ in range(steps):
        grad[...] = CURVATURE * w  # ∂L/∂W
        opt.step()  # W ← W − η·∂L/∂W, in place
        path.append(w.copy())
        loss_values.append(toy_loss(w))
    loss_values = np.array(loss_values)
    if not np.isfinite(loss_values[-1]) or loss_values[-1] > loss_values[0]:
        regime = "divergent"
    elif loss_values[-1] > 1e-2 * loss_values[0]:
        regime = "too small"
    else:
        regime = "good"
    return {"lr": lr, "path": np.array(path), "losses": loss_values, "regime": regime,
            "rho": float(np.max(np.abs(1 - lr * CURVATURE)))}


def _plot_descent(r: dict, ax_path: plt.Axes, ax_loss: plt.Axes | None) -> None:
    g0, g1 = np.meshgrid(np.linspace(-5, 5, 121), np.linspace(-3, 3, 81))
    levels = np.geomspace(0.05, 60, 12)
    ax_path.contour(g0, g1, 0.5 * (CURVATURE[0] * g0**2 + CURVATURE[1] * g1**2), levels=levels,
                    colors="0.75", linewidths=0.8)
    path = np.clip(r["path"], -1e3, 1e3)
    ax_path.plot(path[:, 0], path[:, 1], "o-", color="tab:red", ms=3, lw=1)
    ax_path.plot(0, 0, "*", color="k", ms=10)
    ax_path.set_xlim(-5, 5)
    ax_path.set_ylim(-3, 3)
    ax_path.set_xlabel("w0（曲率 1）")
    ax_path.set_ylabel("w1（曲率 10）")
    ax_path.set_title(f"lr = {r['lr']:.3g}: {REGIME_LABELS[r['regime']]}（ρ = {r['rho']:.2f}）",
                      fontsize=10)
    if ax_loss is not None:
        finite = np.where(np.isfinite(r["losses"]), r["losses"], np.nan)
        ax_loss.semilogy(np.clip(finite, 1e-12, 1e12), "o-", ms=3, color="tab:red")
        ax_loss.set_xlabel("ステップ（step）")
        ax_loss.set_ylabel("損失 L(W)")
        ax_loss.grid(True, alpha=0.3)


def plot_learning_rates(lrs: tuple[float, ...] = (0.01, 0.1, 0.21), steps: int = 30) -> Figure:
    """One descent path per learning rate, side by side, and their loss curves."""
    runs = [descend(lr, steps) for lr in lrs]
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.0 * (len(runs) + 1), 3.4))
    for r, ax in zip(runs, axes, strict=False):
        _plot_descent(r, ax, None)
    for r in runs:
        axes[-1].semilogy(np.clip(r["losses"], 1e-12, 1e12), "o-", ms=2,
                          label=f"lr={r['lr']:g}: {REGIME_LABELS[r['regime']]}")
    axes[-1].set_xlabel("ステップ（step）")
    axes[-1].set_ylabel("損失 L(W)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_rate_explorer() -> Explorer:
    """A learning-rate slider (log scale) and a steps slider over the toy loss."""
    controls = {"lr": widgets.FloatLogSlider(value=0.1, base=10, min=-3, max=0, step=0.05,
                                             description="学習率（learning rate）",
                                             readout_format=".3f",
                                             continuous_update=False,
                                             style={"description_width": "initial"}),
                "steps": int_slider(30, 1, 100, "ステップ数")}

    def draw(r: dict) -> Figure:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        _plot_descent(r, a, b)
        fig.tight_layout()
        return fig

    return Explorer(controls, descend, draw)


__all__ = [
    "CURVATURE",
    "REGIME_LABELS",
    "W_START",
    "descend",
    "gradient_check_rows",
    "learning_rate_explorer",
    "plot_learning_rates",
    "toy_loss",
]
