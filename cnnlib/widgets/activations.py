"""Widgets, figures and exercise checks for notebook 04 (lecture 五 and 六).

* ``plot_flatten``, ``trace_shapes``: Flatten and y = f(Wx + b) with every shape traced.
* ``activation``, ``activation_explorer()``: f and f′ of each activation side by side
  (α for Leaky ReLU and ELU), f′ from the layer's own backward pass.
* ``gradient_norms``, ``vanishing_gradient_explorer()``: the gradient's size layer by layer in
  a deep stack of Linear + sigmoid / tanh / ReLU / GELU.
* ``dying_relu``, ``dying_relu_explorer()``: units that output 0 for every input and so never
  get a gradient again.
* ``plot_gelu_vs_relu``, ``gelu_minimum``: GELU next to ReLU.
* ``check_…``: the notebook's exercises.
The maths is ``cnnlib.activations`` and ``cnnlib.layers``; this module only drives and draws.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import activations as act
from cnnlib import layers
from cnnlib.widgets._answers import Feedback, check_choice, check_function, check_number, exercise
from cnnlib.widgets._base import Explorer, dropdown, float_slider, int_slider

# --------------------------------------------------------------------------- 1. flatten, linear


def plot_flatten(x: np.ndarray) -> Figure:
    """One sample's (C, H, W) feature maps (top) and the row Flatten makes of them (bottom).

    Cells are tinted by channel, so the C-order (channel 0's rows first, then channel 1, …)
    can be read off the row.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"plot_flatten は 1 サンプル (C, H, W) を表示します（one sample）。"
                         f"形は {x.shape} でした")
    C, H, W = x.shape
    flat = layers.Flatten().forward(x[None])[0]  # (C·H·W,)
    tint = plt.get_cmap("Pastel1")
    fig = plt.figure(figsize=(max(6.0, 0.42 * flat.size + 1), 2.2 + 0.45 * H))
    grid = fig.add_gridspec(2, C, height_ratios=[H, 1.6])

    def cells(ax: plt.Axes, values: np.ndarray, channel: np.ndarray, title: str) -> None:
        ax.imshow(channel, cmap=tint, vmin=0, vmax=8, aspect="equal")
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)

    for c in range(C):
        cells(fig.add_subplot(grid[0, c]), x[c], np.full((H, W), c % 9), f"チャネル {c}（{H}×{W}）")
    channel_of = np.repeat(np.arange(C) % 9, H * W)[None]
    cells(fig.add_subplot(grid[1, :]), flat[None], channel_of,
          f"フラット化（Flatten）: ({C}, {H}, {W}) → {flat.size} 個の値（チャネルごと、行ごと）")
    fig.tight_layout()
    return fig


def trace_shapes(model: layers.Sequential, x: np.ndarray) -> list[tuple[str, str, str, int]]:
    """Run ``x`` through ``model`` layer by layer: rows (index, layer, output shape, parameters).

    The first row is the input itself. Parameters counts the numbers the layer learns.
    """
    rows = [("-", "input", str(tuple(x.shape)), 0)]
    for k, layer in enumerate(model.layers):
        x = layer.forward(x)
        rows.append((str(k), repr(layer), str(tuple(x.shape)), layer.num_parameters()))
    return rows


# --------------------------------------------------------------------------- 2. activations

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh")
WITH_ALPHA = ("leaky_relu", "elu")
FORMULAS = {
    "relu": "f(x) = max(0, x)",
    "leaky_relu": "f(x) = x（x > 0）、αx（それ以外）",
    "elu": "f(x) = x（x > 0）、α(exp(x) − 1)（それ以外）",
    "gelu": "f(x) = x·Φ(x)",
    "sigmoid": "f(x) = 1 / (1 + exp(−x))",
    "tanh": "f(x) = tanh(x)",
}


def activation(name: str, x: np.ndarray, alpha: float | None = None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(f(x), f′(x)) of an activation via ``cnnlib.activations``; f′ is its backward with dout = 1.

    ``alpha`` is used by leaky_relu (default 0.01) and elu (default 1.0) only.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"活性化関数 {name!r} はありません（unknown activation）。"
                         f"次から選んでください: {', '.join(ACTIVATIONS)}")
    forward = getattr(act, f"{name}_forward")
    backward = getattr(act, f"{name}_backward")
    x = np.asarray(x, dtype=np.float64)
    out, cache = forward(x, alpha) if (name in WITH_ALPHA and alpha is not None) else forward(x)
    return out, backward(np.ones_like(out), cache)


def activation_explorer() -> Explorer:
    """Choose an activation (and α); f on the left, f′ on the right, f′ checked numerically."""
    controls = {"name": dropdown(ACTIVATIONS, "relu", "活性化関数（activation）"),
                "alpha": float_slider(0.1, 0.0, 2.0, "α（leaky_relu, elu）", step=0.05)}

    def adapt(c: dict) -> None:
        c["alpha"].disabled = c["name"].value not in WITH_ALPHA

    def compute(name: str, alpha: float) -> dict:
        x = np.linspace(-5, 5, 1001)
        f, df = activation(name, x, alpha)
        h = 1e-5
        numeric = (activation(name, x + h, alpha)[0] - activation(name, x - h, alpha)[0]) / (2 * h)
        smooth = np.abs(x) > 1e-3  # ReLU-like kinks at 0 have no derivative
        return {"name": name, "alpha": alpha if name in WITH_ALPHA else None, "x": x, "f": f,
                "df": df, "max_slope": float(df.max()), "min_value": float(f.min()),
                "numeric_error": float(np.abs(numeric - df)[smooth].max())}

    def draw(r: dict) -> Figure:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        label = r["name"] + (f"（α = {r['alpha']:g}）" if r["alpha"] is not None else "")
        a.plot(r["x"], r["f"], color="tab:blue", lw=2)
        a.set_title(f"{label}:  {FORMULAS[r['name']]}", fontsize=10)
        b.plot(r["x"], r["df"], color="tab:red", lw=2)
        b.set_title(f"{r['name']}_backward による f'(x)（最大の傾き {r['max_slope']:.3g}）",
                    fontsize=10)
        for ax, name in ((a, "f(x)"), (b, "f'(x)")):
            ax.axhline(0, color="0.6", lw=0.8)
            ax.axvline(0, color="0.6", lw=0.8)
            ax.set_xlabel("x")
            ax.set_ylabel(name)
            ax.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig

    return Explorer(controls, compute, draw, adapt=adapt)


# --------------------------------------------------------------------------- 3. vanishing gradients

STACK_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu")
INITS = ("He", "Xavier")
_LAYER_CLASS = {"sigmoid": layers.Sigmoid, "tanh": layers.Tanh, "relu": layers.ReLU,
                "gelu": layers.GELU}


def deep_stack(activation_name: str, depth: int, width: int = 64, init: str = "He",
               seed: int = 0) -> layers.Sequential:
    """``depth`` × (Linear(width, width) → activation), float64.

    ``init``: "He" keeps cnnlib's std √(2/width); "Xavier" (Glorot) uses √(1/width).
    """
    if activation_name not in _LAYER_CLASS:
        raise ValueError(f"活性化関数 {activation_name!r} はありません（unknown activation）。"
                         "次から選んでください: "
                         f"{', '.join(STACK_ACTIVATIONS)}")
    if init not in INITS:
        raise ValueError(f"init は {', '.join(INITS)} のどれかです。指定は {init!r} でした")
    rng = np.random.default_rng(seed)
    stack = []
    for _ in range(depth):
        lin = layers.Linear(width, width, rng=rng, dtype=np.float64)
        if init == "Xavier":
            lin.params["w"] *= np.sqrt(0.5)  # √(1/fan_in) instead of √(2/fan_in)
        stack += [lin, _LAYER_CLASS[activation_name]()]
    return layers.Sequential(*stack)


def gradient_norms(activation_name: str, depth: int, width: int = 64, init: str = "He",
                   seed: int = 0, batch: int = 32) -> np.ndarray:
    """‖∂L/∂h_l‖ at the input of each of the ``depth`` Linear layers (index 0 = first layer).

    A random batch goes forward; the backward starts from a random ∂L/∂out of norm-1 rows, so
    the numbers show only how much the stack itself shrinks or grows the gradient.
    """
    model = deep_stack(activation_name, depth, width, init, seed)
    rng = np.random.default_rng(seed + 1)
    out = model.forward(rng.standard_normal((batch, width)))
    grad = rng.standard_normal(out.shape)
    grad /= np.linalg.norm(grad, axis=1, keepdims=True) * np.sqrt(batch)
    norms = np.empty(depth)
    for k in reversed(range(len(model.layers))):
        grad = model.layers[k].backward(grad)
        if k % 2 == 0:  # just went back through a Linear layer: grad = ∂L/∂(its input)
            norms[k // 2] = np.linalg.norm(grad)
    return norms


def plot_gradient_norms(norms: dict[str, np.ndarray], title: str = "") -> Figure:
    """Gradient norm per layer (log scale), one line per activation."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for name, values in norms.items():
        ax.semilogy(np.arange(1, len(values) + 1), values, "o-", ms=3, label=name)
    ax.set_xlabel("層 l（1 = 入力のすぐ隣）")
    ax.set_ylabel("||dL/dh_l||")
    ax.set_title(title or "入力へ戻る途中の勾配の大きさ", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def vanishing_gradient_explorer() -> Explorer:
    """Depth and initialisation sliders; gradient norms for sigmoid, tanh, ReLU and GELU."""
    controls = {"depth": int_slider(20, 2, 50, "深さ（層の数）"),
                "init": dropdown(INITS, "He", "初期化（init）")}

    def compute(depth: int, init: str) -> dict:
        norms = {name: gradient_norms(name, depth, init=init) for name in STACK_ACTIVATIONS}
        ratio = {name: float(v[0] / v[-1]) for name, v in norms.items()}
        return {"depth": depth, "init": init, "norms": norms, "first_over_last": ratio}

    def draw(r: dict) -> Figure:
        return plot_gradient_norms(r["norms"], f"Linear(64, 64) + 活性化関数 を {r['depth']} 層、"
                                               f"{r['init']} の初期化")

    return Explorer(controls, compute, draw)


# --------------------------------------------------------------------------- 4. dying ReLU

DYING_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu")


def dying_relu(bias_shift: float, name: str = "relu", units: int = 32, batch: int = 128,
               seed: int = 0) -> dict:
    """A Linear(16, ``units``) layer + activation whose biases are shifted by ``bias_shift``.

    The weights are scaled so that W·x has standard deviation about 1 for x ~ N(0, 1): a
    shift of −2 puts most of a unit's inputs below 0, a large negative update's effect.

    A unit is *dead* when its pre-activation z = Wx + b is ≤ 0 for every sample of the batch.
    Returns the pre-activations z (batch, units), the per-unit weight-gradient norms for a
    random upstream gradient, the fraction of dead units and of units whose gradient is 0.
    """
    if name not in DYING_ACTIVATIONS:
        raise ValueError(f"活性化関数 {name!r} はありません（unknown activation）。"
                         "次から選んでください: "
                         f"{', '.join(DYING_ACTIVATIONS)}")
    rng = np.random.default_rng(seed)
    lin = layers.Linear(16, units, rng=rng, dtype=np.float64)
    lin.params["w"] *= np.sqrt(0.5)  # std √(1/16): W·x has std ≈ 1
    lin.params["b"][...] = rng.normal(0.0, 0.5, units) + bias_shift
    f = {"relu": layers.ReLU(), "leaky_relu": layers.LeakyReLU(0.01), "elu": layers.ELU(),
         "gelu": layers.GELU()}[name]
    x = rng.standard_normal((batch, 16))
    z = lin.forward(x)
    out = f.forward(z)
    lin.backward(f.backward(rng.standard_normal(out.shape)))
    grad_norm = np.linalg.norm(lin.grads["w"], axis=1)  # (units,)
    dead = np.all(z <= 0, axis=0)
    return {"z": z, "out": out, "grad_norm": grad_norm, "dead": dead,
            "dead_fraction": float(dead.mean()),
            "zero_grad_fraction": float(np.mean(grad_norm == 0))}


def dying_relu_explorer() -> Explorer:
    """Shift the biases and pick the activation; watch units die and their gradients vanish."""
    controls = {"bias_shift": float_slider(0.0, -5.0, 2.0, "バイアスのずれ", step=0.25),
                "name": dropdown(DYING_ACTIVATIONS, "relu", "活性化関数（activation）")}

    def compute(bias_shift: float, name: str) -> dict:
        return {"bias_shift": bias_shift, "name": name, **dying_relu(bias_shift, name)}

    def draw(r: dict) -> Figure:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
        a.imshow(r["out"][:48].T, aspect="auto", cmap="viridis", interpolation="nearest")
        a.set_xlabel("サンプル")
        a.set_ylabel("ユニット")
        a.set_title(f"{r['name']} の出力（48 サンプル）。死んだユニット（dead units）: "
                    f"{r['dead_fraction']:.0%}", fontsize=10)
        units = np.arange(len(r["grad_norm"]))
        b.bar(units, r["grad_norm"], color=np.where(r["dead"], "tab:red", "tab:blue"))
        b.plot(units[r["dead"]], np.zeros(int(r["dead"].sum())), "x", color="tab:red", ms=8)
        b.set_xlabel("ユニット（赤い x: すべてのサンプルで z ≤ 0）")
        b.set_ylabel("||dL/dW_row||")
        b.set_title(f"ユニットごとの重みの勾配。ちょうど 0 が {r['zero_grad_fraction']:.0%}",
                    fontsize=10)
        fig.tight_layout()
        return fig

    return Explorer(controls, compute, draw)


# --------------------------------------------------------------------------- 5. GELU vs ReLU


def gelu_minimum() -> tuple[float, float]:
    """(x, GELU(x)) at GELU's minimum, found on a fine grid with ``gelu_forward``."""
    x = np.linspace(-2.0, 0.0, 200_001)
    y, _ = act.gelu_forward(x)
    k = int(np.argmin(y))
    return float(x[k]), float(y[k])


def plot_gelu_vs_relu() -> Figure:
    """GELU and ReLU, and their derivatives, on the same axes; GELU's minimum marked."""
    x = np.linspace(-4, 4, 801)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, colour in (("relu", "tab:gray"), ("gelu", "tab:purple")):
        f, df = activation(name, x)
        a.plot(x, f, color=colour, lw=2, label=name)
        b.plot(x, df, color=colour, lw=2, label=name)
    xm, ym = gelu_minimum()
    a.plot(xm, ym, "o", color="tab:purple")
    a.annotate(f"最小値 {ym:.3f}（x = {xm:.3f}）", (xm, ym), xytext=(-3.8, 1.0),
               arrowprops={"arrowstyle": "->"}, fontsize=9)
    a.set_title("f(x)", fontsize=10)
    b.set_title("f'(x): GELU は滑らかで、x < 0 でも少し勾配を通します",
                fontsize=10)
    for ax in (a, b):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.8)
        ax.set_xlabel("x")
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- exercises


@exercise
def check_linear_params(answer: object) -> Feedback:
    """Exercise 1: parameters of Linear after Flatten of (16, 8, 8) to 10 outputs (10·1024 + 10)."""
    want = 16 * 8 * 8 * 10 + 10
    return check_number(
        answer, want, f"W は (10, 1024) で 10,240 個、b が 10 個、合計 {want:,}。",
        {16 * 8 * 8 * 10: "重みは合っています。バイアスを忘れていませんか？",
         16 * 8 * 8: "それは Flatten 後のベクトルの長さ D_in です。W の形は (D_out, D_in)。"},
        "Flatten 後の長さ D_in = C·H·W を求め、W (D_out, D_in) と b (D_out) を数えましょう。")


@exercise
def check_sigmoid_bound(answer: object) -> Feedback:
    """Exercise 2: the largest factor 10 sigmoid layers can multiply a gradient by: (1/4)^10."""
    want = 0.25**10
    return check_number(
        answer, want, f"σ'(x) ≤ σ'(0) = 1/4 なので (1/4)^10 ≈ {want:.2e}。"
                      "重みが大きくない限り、勾配は層ごとに 4 分の 1 以下になります。",
        {0.25: "1 層分の上限は 1/4 で正しいです。10 層ではそれが何回掛かりますか？"},
        "σ'(x) = σ(x)(1 − σ(x)) の最大値（x = 0 のとき）を求め、10 層分掛けましょう。",
        whole=False, rtol=1e-6, example="0.5 ** 3")


def _leaky_relu_dx(dout: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    return act.leaky_relu_backward(dout, act.leaky_relu_forward(x, alpha)[1])


@exercise
def check_leaky_relu_backward(fn: Callable) -> Feedback:
    """Exercise 3: ``fn(dout, x, alpha)`` returns dx of Leaky ReLU; compared with cnnlib's."""
    rng = np.random.default_rng(4)
    cases = []
    for alpha in (0.01, 0.2, 1.5):
        x = rng.standard_normal((3, 7))
        x[0, :3] = (-1.0, 0.0, 1.0)
        cases.append((rng.standard_normal(x.shape), x, alpha))
    return check_function(
        fn, _leaky_relu_dx, cases, rtol=1e-12, atol=1e-12,
        shape_message="dx は x と同じ形 {want} のはずですが、{got} でした。",
        value_message="alpha = {2} で値が違います。x > 0 では dout、"
                      "それ以外（x = 0 を含む）では alpha·dout です。",
        success="x ≤ 0 でも勾配 alpha·dout が流れるので、ユニットは死にません。")


@exercise
def check_dead_relu(answer: object) -> Feedback:
    """Exercise 4 (explain, multiple choice): why a dead ReLU unit never recovers ("b")."""
    return check_choice(
        answer, right="b",
        explanation="z ≤ 0 なら ReLU の微分は 0。W と b の勾配がちょうど 0 なので、"
                    "SGD は二度とそのユニットの重みを動かしません。",
        hints=dict.fromkeys("ac", "重みを変えるのは勾配だけです。"
                                  "死んだユニットの勾配はいくつでしょう？"
                                  "（dying_relu_explorer の右の棒グラフ）"))


__all__ = [
    "ACTIVATIONS",
    "DYING_ACTIVATIONS",
    "STACK_ACTIVATIONS",
    "activation",
    "activation_explorer",
    "check_dead_relu",
    "check_leaky_relu_backward",
    "check_linear_params",
    "check_sigmoid_bound",
    "deep_stack",
    "dying_relu",
    "dying_relu_explorer",
    "gelu_minimum",
    "gradient_norms",
    "plot_flatten",
    "plot_gelu_vs_relu",
    "plot_gradient_norms",
    "trace_shapes",
    "vanishing_gradient_explorer",
]
