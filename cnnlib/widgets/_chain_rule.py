"""Notebook 05's first step (re-exported by :mod:`cnnlib.widgets.backprop`): the chain rule on
the tiny graph L = (w·x + b − t)², every node with its value and its gradient.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib.gradcheck import numerical_gradient
from cnnlib.widgets._base import Explorer, float_slider

# --------------------------------------------------------------------------- 1. chain rule

TINY = {"w": 3.0, "x": 2.0, "b": -1.0, "t": 4.0}  # the notebook's worked example


def tiny_graph(w: float, x: float, b: float, t: float) -> dict:
    """Forward and backward through u = w·x, z = u + b, e = z − t, L = e².

    Returns ``{"values": {...}, "grads": {...}}``: each node's value and ∂L/∂node, the
    backward pass written as local derivative × upstream gradient (the chain rule).
    """
    u = w * x
    z = u + b
    e = z - t
    loss = e * e
    dL_de = 2 * e  # d(e²)/de
    dL_dz = dL_de * 1.0  # de/dz = 1
    dL_du = dL_dz * 1.0  # dz/du = 1
    dL_db = dL_dz * 1.0  # dz/db = 1
    dL_dw = dL_du * x  # du/dw = x
    dL_dx = dL_du * w  # du/dx = w
    return {"values": {"w": w, "x": x, "b": b, "t": t, "u": u, "z": z, "e": e, "L": loss},
            "grads": {"w": dL_dw, "x": dL_dx, "b": dL_db, "u": dL_du, "z": dL_dz, "e": dL_de,
                      "L": 1.0}}


def tiny_graph_numerical(w: float, x: float, b: float, t: float, h: float = 1e-6) -> dict:
    """∂L/∂w, ∂L/∂x, ∂L/∂b of the tiny graph by central differences (``numerical_gradient``)."""
    inputs = np.array([w, x, b], dtype=np.float64)

    def loss() -> float:
        return tiny_graph(*inputs, t)["values"]["L"]

    g = numerical_gradient(loss, inputs, h)
    return {"w": float(g[0]), "x": float(g[1]), "b": float(g[2])}


_NODES = {"w": (0.0, 2.0), "x": (0.0, 1.0), "b": (0.0, 0.0), "u": (1.6, 1.5), "z": (3.2, 1.0),
          "t": (3.2, -0.2), "e": (4.8, 1.0), "L": (6.4, 1.0)}
_EDGES = [("w", "u", "·"), ("x", "u", "·"), ("u", "z", "+"), ("b", "z", "+"), ("z", "e", "−"),
          ("t", "e", "−"), ("e", "L", "²")]
_LABELS = {"u": "u = w·x", "z": "z = u + b", "e": "e = z − t", "L": "L = e²"}


def plot_tiny_graph(graph: dict) -> Figure:
    """The computational graph with each node's value (black) and ∂L/∂node (red)."""
    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    for a, b, _ in _EDGES:
        (x0, y0), (x1, y1) = _NODES[a], _NODES[b]
        ax.annotate("", xy=(x1 - 0.45, y1), xytext=(x0 + 0.45, y0),
                    arrowprops={"arrowstyle": "->", "color": "0.5"})
    for name, (px, py) in _NODES.items():
        ax.text(px, py + 0.12, _LABELS.get(name, name), ha="center", va="bottom", fontsize=10,
                bbox={"boxstyle": "round", "fc": "#eef3fb", "ec": "0.4"})
        ax.text(px, py - 0.02, f"= {graph['values'][name]:g}", ha="center", va="top",
                fontsize=9)
        if name in graph["grads"]:
            ax.text(px, py - 0.27, f"dL/d{name} = {graph['grads'][name]:g}", ha="center",
                    va="top", fontsize=9, color="tab:red")
    ax.set_xlim(-0.9, 7.3)
    ax.set_ylim(-0.8, 2.6)
    ax.axis("off")
    ax.set_title("順伝播（forward）: 値（黒）を左から右へ。逆伝播（backward）: dL/d(ノード)（赤）を"
                 "右から左へ", fontsize=10)
    fig.tight_layout()
    return fig


def tiny_graph_explorer() -> Explorer:
    """Sliders for w, x, b, t; the graph with values and gradients, checked numerically."""
    controls = {k: float_slider(v, -5.0, 5.0, k, step=0.5) for k, v in TINY.items()}

    def compute(w: float, x: float, b: float, t: float) -> dict:
        graph = tiny_graph(w, x, b, t)
        numeric = tiny_graph_numerical(w, x, b, t)
        graph["numerical"] = numeric
        graph["max_error"] = max(abs(graph["grads"][k] - numeric[k]) for k in numeric)
        return graph

    def draw(r: dict) -> Figure:
        fig = plot_tiny_graph(r)
        n = r["numerical"]
        fig.axes[0].text(3.2, -0.75, f"数値微分（numerical）: dL/dw ≈ {n['w']:.4f}, "
                         f"dL/dx ≈ {n['x']:.4f}, dL/db ≈ {n['b']:.4f}", ha="center",
                         fontsize=9, color="tab:blue")
        return fig

    return Explorer(controls, compute, draw, rows=[["w", "x"], ["b", "t"]])


__all__ = [
    "TINY",
    "plot_tiny_graph",
    "tiny_graph",
    "tiny_graph_explorer",
    "tiny_graph_numerical",
]
