"""What a trained CNN's first layer learned (notebook 06 §7): the same filters before and after.

* ``show_filters_before_after(w_before, w_after)``: rows before / after / change, column f =
  filter f; before and after share one colour scale per filter, so the change is visible.
The maths is in the layers; this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


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
    fig, axes = plt.subplots(len(rows), count, figsize=(0.8 * count + 1.6, 1.1 * len(rows)),
                             squeeze=False)
    for f in range(count):
        scale = max(np.abs(w_before[f]).max(), np.abs(w_after[f]).max(), 1e-12)
        for row, w in enumerate(rows):
            own = scale if row < 2 else max(np.abs(w[f]).max(), 1e-12)
            picture, style = _as_picture(w[f], own)
            ax = axes[row, f]
            ax.imshow(picture, **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_ylabel(names[row], rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


__all__ = ["show_filters_before_after"]
