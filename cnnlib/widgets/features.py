"""What a trained CNN learned (notebook 06 §7): filters before/after, and a feature explorer.

* ``show_filters_before_after(w_before, w_after)``: rows before / after / change, column f =
  filter f; before and after share one colour scale per filter, so the change is visible.
* ``load_feature_cnn()``: a small CNN trained on the real Fashion-MNIST, shipped with the
  package (``fashion_cnn.npz``, ≈ 40 KB). ``python -m cnnlib.widgets.features`` re-trains it
  deterministically (seed 0) and rewrites the file.
* ``receptive_field(layers, depth, i, j, size)``: the input rows/columns one unit sees.
* ``feature_explorer(images)``: choose an image, a depth, a channel and a unit; see every
  channel's map, the unit's receptive field and the input patches that excite it most.
The maths is in the layers; this module only draws.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnlib import viz
from cnnlib.data import load_fashion_mnist
from cnnlib.layers import BatchNorm2d, Conv2d, MaxPool2d, Sequential
from cnnlib.models import make_cnn
from cnnlib.optim import SGD
from cnnlib.recipe import RECIPES
from cnnlib.train import evaluate, fit, warmup_cosine
from cnnlib.widgets._base import Explorer, dropdown, int_slider, set_range


def _as_picture(w: np.ndarray, scale: float) -> tuple[np.ndarray, dict]:
    """One filter (C, k, k) as an image: C = 1 → values on a blue-white-red scale;
    C = 3 → RGB with 0 as grey."""
    if w.shape[0] == 1:
        return w[0], {"cmap": "bwr", "vmin": -scale, "vmax": scale}
    rgb = 0.5 + 0.5 * np.moveaxis(w[:3], 0, -1) / scale
    return np.clip(rgb, 0.0, 1.0), {}


def show_filters_before_after(w_before: np.ndarray, w_after: np.ndarray,
                              names: Sequence[str] = ("before", "after", "after - before"),
                              max_filters: int = 16) -> Figure:
    """Filters (F, C, k, k) before training (top row), after (middle row) and the change
    ``w_after − w_before`` (bottom row; leave it out by giving two ``names``).

    Each column (one filter) shares one scale, its largest |weight| over the first two rows; the
    change has its own scale per filter. C must be 1 (drawn blue < 0 < red) or 3 (drawn as RGB,
    grey = 0).
    """
    w_before, w_after = np.asarray(w_before), np.asarray(w_after)
    if w_before.shape != w_after.shape or w_before.ndim != 4:
        raise ValueError("w_before and w_after must both have the shape (F, C, k, k), got "
                         f"{w_before.shape} and {w_after.shape}")
    if w_before.shape[1] not in (1, 3):
        raise ValueError(f"filters need 1 or 3 input channels to be drawn, got {w_before.shape[1]}")
    if len(names) not in (2, 3):
        raise ValueError(f"give 2 or 3 row names, got {len(names)}")
    rows = [w_before, w_after, w_after - w_before][: len(names)]
    count = min(len(w_before), max_filters)
    # one Axes per row, each filter an image of its own on it (viz.tile_row: much faster to draw
    # than 48 Axes)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.8 * count + 1.6, 1.1 * len(rows)),
                             squeeze=False)
    scales = [max(np.abs(w_before[f]).max(), np.abs(w_after[f]).max(), 1e-12)
              for f in range(count)]
    for row, (w, ax) in enumerate(zip(rows, axes[:, 0], strict=True)):
        own = [scales[f] if row < 2 else max(np.abs(w[f]).max(), 1e-12) for f in range(count)]
        pictures = [_as_picture(w[f], own[f]) for f in range(count)]
        viz.tile_row(ax, [p for p, _ in pictures], styles=[s for _, s in pictures])
        ax.set_ylabel(names[row], rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- a shipped, trained CNN

WEIGHTS = Path(__file__).with_name("fashion_cnn.npz")
CHANNELS = (8, 16)
TRAIN_SAMPLES, EPOCHS, SEED = 20000, 3, 0


def _small_cnn(rng: np.random.Generator | None = None) -> Sequential:
    return make_cnn(1, 10, 28, channels=CHANNELS, rng=rng)


def train_feature_cnn(seed: int = SEED) -> tuple[Sequential, float]:
    """Train the shipped CNN: make_cnn(1, 10, 28, channels=(8, 16)) on the first 20000
    Fashion-MNIST training images, 3 epochs of SGD with the reference recipe's lr, momentum
    and weight decay. Returns the model and its accuracy on the 10000 test images."""
    recipe = RECIPES["fashion-mnist"]
    x, y = load_fashion_mnist("train", limit=TRAIN_SAMPLES)
    test = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    model = _small_cnn(rng)
    optimizer = SGD(model, lr=recipe.lr, momentum=recipe.momentum,
                    weight_decay=recipe.weight_decay)
    fit(model, optimizer, (x, y), None, EPOCHS,
        recipe.batch_size, lr_schedule=warmup_cosine(recipe.lr, EPOCHS), rng=rng,
        progress=False, verbose=False)
    model.eval()
    return model, float(evaluate(model, test).accuracy)


def save_feature_cnn(model: Sequential, accuracy: float, path: Path = WEIGHTS) -> None:
    """Write every parameter and BatchNorm running statistic (float32) to ``path``."""
    arrays: dict[str, np.ndarray] = {"test_accuracy": np.array(accuracy)}
    for k, layer in enumerate(model.layers):
        for name, value in layer.params.items():
            arrays[f"{k}.{name}"] = value.astype(np.float32)
        if isinstance(layer, BatchNorm2d):
            arrays[f"{k}.running_mean"] = layer.running_mean.astype(np.float32)
            arrays[f"{k}.running_var"] = layer.running_var.astype(np.float32)
    np.savez_compressed(path, **arrays)


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as data:
        return {key: data[key] for key in data.files}


def load_feature_cnn() -> tuple[Sequential, float]:
    """The shipped CNN (eval mode) and the test accuracy it reached when it was trained."""
    arrays = _weights()
    model = _small_cnn(np.random.default_rng(0))
    for k, layer in enumerate(model.layers):
        for name in layer.params:
            layer.params[name][...] = arrays[f"{k}.{name}"]
        if isinstance(layer, BatchNorm2d):
            layer.running_mean[...] = arrays[f"{k}.running_mean"]
            layer.running_var[...] = arrays[f"{k}.running_var"]
    model.eval()
    return model, float(arrays["test_accuracy"])


# --------------------------------------------------------------------------- receptive fields

DEPTHS = {"block 1: conv → BN → ReLU": 3, "block 1: max pool": 4,
          "block 2: conv → BN → ReLU": 7, "block 2: max pool": 8}  # layers run before the map


def receptive_field(layers: Sequence, depth: int, i: int, j: int,
                    size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows ``top..bottom`` and columns ``left..right`` (inclusive, clipped to the image of
    ``size``) of the input that unit (i, j) after the first ``depth`` layers depends on.

    Walking back through a layer with kernel k, stride s and padding p, output rows a..b come
    from input rows a·s − p .. b·s − p + k − 1; other layers (BN, ReLU) keep the rows.
    """
    top, bottom, left, right = i, i, j, j
    for layer in reversed(list(layers)[:depth]):
        if isinstance(layer, Conv2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        elif isinstance(layer, MaxPool2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        else:
            continue
        top, bottom = top * sh - ph, bottom * sh - ph + kh - 1
        left, right = left * sw - pw, right * sw - pw + kw - 1
    return (max(top, 0), min(bottom, size[0] - 1), max(left, 0), min(right, size[1] - 1))


def feature_maps(model: Sequential, x: np.ndarray, depth: int) -> np.ndarray:
    """The maps (N, C, H, W) after the first ``depth`` layers of ``model`` for images x."""
    h = np.asarray(x, np.float32)
    for layer in model.layers[:depth]:
        h = layer.forward(h)
    return h


def top_patches(model: Sequential, images: np.ndarray, depth: int, channel: int,
                k: int = 8) -> list[tuple[int, float, tuple[int, int, int, int]]]:
    """The k images whose strongest unit of ``channel`` (at ``depth``) responds most:
    ``(image index, activation, receptive field (top, bottom, left, right))``."""
    maps = feature_maps(model, images, depth)[:, channel]          # (N, H, W)
    flat = maps.reshape(len(maps), -1)
    best = flat.argmax(axis=1)
    order = np.argsort(-flat[np.arange(len(flat)), best], kind="stable")[:k]
    result = []
    for n in order:
        i, j = np.unravel_index(best[n], maps.shape[1:])
        rf = receptive_field(model.layers, depth, int(i), int(j), images.shape[-2:])
        result.append((int(n), float(flat[n, best[n]]), rf))
    return result


def feature_explorer(images: np.ndarray, model: Sequential | None = None,
                     n_top: int = 8) -> Explorer:
    """Image, depth, channel and unit controls over ``model`` (default: the shipped CNN).

    images: (N, 1, H, W) in [0, 1]; the top patches are searched among all of them.
    """
    if model is None:
        model, _ = load_feature_cnn()
    images = np.asarray(images, np.float32)
    depths = list(DEPTHS)
    maps_cache: dict[int, np.ndarray] = {}

    def maps_at(depth: int) -> np.ndarray:
        if depth not in maps_cache:
            maps_cache[depth] = feature_maps(model, images, depth)
        return maps_cache[depth]

    controls = {"image": int_slider(0, 0, len(images) - 1, "画像（image）"),
                "depth": dropdown(depths, depths[0], "深さ（depth）"),
                "channel": int_slider(0, 0, CHANNELS[0] - 1, "チャネル（channel）"),
                "row": int_slider(14, 0, 27, "行（row）"),
                "col": int_slider(14, 0, 27, "列（col）")}

    def adapt(c: dict) -> None:
        _, channels, h, w = maps_at(DEPTHS[c["depth"].value]).shape
        set_range(c["channel"], 0, channels - 1)
        set_range(c["row"], 0, h - 1)
        set_range(c["col"], 0, w - 1)

    def compute(image: int, depth: str, channel: int, row: int, col: int) -> dict:
        d = DEPTHS[depth]
        maps = maps_at(d)[image]
        rf = receptive_field(model.layers, d, row, col, images.shape[-2:])
        return {"image": images[image, 0], "maps": maps, "channel": channel, "unit": (row, col),
                "value": float(maps[channel, row, col]), "rf": rf, "depth": depth,
                "top": top_patches(model, images, d, channel, n_top)}

    def draw(r: dict) -> Figure:
        n_maps = len(r["maps"])
        cols = max(n_maps // 2, n_top)
        fig = plt.figure(figsize=(1.1 * cols + 2.6, 4.6))
        grid = fig.add_gridspec(3, cols + 2)
        ax = fig.add_subplot(grid[:2, :2])
        ax.imshow(r["image"], cmap="gray", vmin=0, vmax=1)
        top, bottom, left, right = r["rf"]
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                               fill=False, color="red", lw=2))
        ax.set_title(f"receptive field {bottom - top + 1}×{right - left + 1}", fontsize=9)
        ax.axis("off")
        for c in range(n_maps):
            a = fig.add_subplot(grid[c // (n_maps // 2), 2 + c % (n_maps // 2)])
            a.imshow(r["maps"][c], cmap="viridis")
            a.set_xticks([])
            a.set_yticks([])
            if c == r["channel"]:
                for spine in a.spines.values():
                    spine.set_color("red")
                    spine.set_linewidth(3)
                a.plot([r["unit"][1]], [r["unit"][0]], "r+", ms=8)
            a.set_title(str(c), fontsize=8)
        for k, (n, value, (t, b, lft, rgt)) in enumerate(r["top"]):
            a = fig.add_subplot(grid[2, 2 + k])
            a.imshow(images[n, 0, t:b + 1, lft:rgt + 1], cmap="gray", vmin=0, vmax=1)
            a.set_title(f"#{n}: {value:.1f}", fontsize=7)
            a.axis("off")
        fig.text(0.02, 0.12, f"top {len(r['top'])}\npatches of\nchannel {r['channel']}",
                 fontsize=9)
        fig.suptitle(f"{r['depth']}: channel {r['channel']}, unit {r['unit']} = "
                     f"{r['value']:.2f}", fontsize=10)
        return fig

    return Explorer(controls, compute, draw, adapt=adapt,
                    rows=[["image", "depth"], ["channel", "row", "col"]])


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cnnlib.widgets.features``: re-train the shipped CNN and rewrite its file."""
    parser = argparse.ArgumentParser(description=train_feature_cnn.__doc__)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    model, accuracy = train_feature_cnn(args.seed)
    save_feature_cnn(model, accuracy, args.out)
    print(f"test accuracy: {accuracy:.4f}; wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()


__all__ = [
    "DEPTHS",
    "WEIGHTS",
    "feature_explorer",
    "feature_maps",
    "load_feature_cnn",
    "receptive_field",
    "save_feature_cnn",
    "show_filters_before_after",
    "top_patches",
    "train_feature_cnn",
]
