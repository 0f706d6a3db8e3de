"""Notebook 03's comparison of the normalizations (re-exported by :mod:`cnnlib.widgets.norm`):
which values of an N×C×H×W block share one mean and variance under BatchNorm, LayerNorm and
GroupNorm, and why BatchNorm struggles with a batch of two where GroupNorm does not.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib import norm
from cnnlib.widgets._base import Explorer, dropdown, int_slider
from cnnlib.widgets._images import photo_batch

# --------------------------------------------------------------------------- 4. which axes

NORMS = ("BatchNorm", "LayerNorm", "GroupNorm")


def _normalize(method: str, x: np.ndarray, groups: int) -> np.ndarray:
    """cnnlib's forward of ``method`` with γ = 1, β = 0."""
    C = x.shape[1]
    gamma, beta = np.ones(C), np.zeros(C)
    if method == "BatchNorm":
        return norm.batch_norm_forward(x, gamma, beta)[0]
    if method == "LayerNorm":
        return norm.layer_norm_forward(x, gamma, beta)[0]
    if method == "GroupNorm":
        return norm.group_norm_forward(x, gamma, beta, groups)[0]
    raise ValueError(f"正規化 {method!r} はありません（unknown method）。"
                     f"次から選んでください: {', '.join(NORMS)}")


def stat_mask(method: str, shape: tuple[int, int, int, int], n: int, c: int,
              groups: int = 1) -> np.ndarray:
    """Which elements share their mean and variance with element (n, c, 0, 0): bool (N,C,H,W).

    Found by experiment: nudge x[n, c, 0, 0] and see which outputs of cnnlib's layer move.
    (A nudge changes μ and σ² of its set, and with them every normalized value in the set.)
    """
    C = shape[1]
    if method == "GroupNorm" and C % groups != 0:
        raise ValueError(f"C = {C} チャネルは {groups} グループに分けられません"
                         f"（cannot be split）。{C} を割り切るグループ数を選んでください")
    x = np.random.default_rng(0).standard_normal(shape)
    before = _normalize(method, x, groups)
    x[n, c, 0, 0] += 0.5
    after = _normalize(method, x, groups)
    return np.abs(after - before) > 1e-12


def stat_mask_by_definition(method: str, shape: tuple[int, int, int, int], n: int, c: int,
                            groups: int = 1) -> np.ndarray:
    """The same mask from the definitions: BN over (N, H, W), LN over (C, H, W), GN over
    (C/G channels of c's group, H, W)."""
    C = shape[1]
    mask = np.zeros(shape, dtype=bool)
    if method == "BatchNorm":
        mask[:, c] = True
    elif method == "LayerNorm":
        mask[n] = True
    else:
        size = C // groups
        g = c // size
        mask[n, g * size:(g + 1) * size] = True
    return mask


def _set_ids(method: str, shape: tuple[int, int, int, int], groups: int) -> np.ndarray:
    """For colouring: the index of the statistics set each element belongs to."""
    N, C = shape[:2]
    n = np.arange(N)[:, None, None, None]
    c = np.arange(C)[None, :, None, None]
    if method == "BatchNorm":
        ids = c + 0 * n
    elif method == "LayerNorm":
        ids = n + 0 * c
    else:
        ids = n * groups + c // (C // groups)
    return np.broadcast_to(ids, shape)


def plot_norm_axes(mask: np.ndarray, ids: np.ndarray, title: str) -> Figure:
    """The N×C×H×W block as N rows × C columns of H×W tiles; one colour per statistics set,
    the set of the chosen element drawn solid and the others faded."""
    N, C, H, W = mask.shape
    cmap = plt.get_cmap("tab20")
    gap = 1
    canvas = np.ones(((H + gap) * N - gap, (W + gap) * C - gap, 4))
    for n in range(N):
        for c in range(C):
            rgba = np.array(cmap(int(ids[n, c, 0, 0]) % 20))
            tile = np.where(mask[n, c][..., None], rgba, 0.25 * rgba + 0.75)
            tile[..., 3] = 1.0
            r0, c0 = n * (H + gap), c * (W + gap)
            canvas[r0:r0 + H, c0:c0 + W] = tile
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * C, 0.8 + 0.9 * N))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([c * (W + gap) + (W - 1) / 2 for c in range(C)])
    ax.set_xticklabels([f"c={c}" for c in range(C)])
    ax.set_yticks([n * (H + gap) + (H - 1) / 2 for n in range(N)])
    ax.set_yticklabels([f"n={n}" for n in range(N)])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel(f"チャネル C（1 つのタイルが H×W = {H}×{W} の特徴マップ 1 枚）")
    ax.set_ylabel("サンプル N")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def norm_axes_explorer(shape: tuple[int, int, int, int] = (4, 6, 3, 3)) -> Explorer:
    """Method, groups (GN) and the element (n, c) whose statistics set is highlighted.

    ``result``: ``mask`` (from cnnlib, by experiment), ``count`` (elements per mean), ``sets``
    (how many means the layer computes) and ``agrees`` (mask equals the definition).
    """
    N, C = shape[:2]
    controls = {"method": dropdown(NORMS, "BatchNorm", "正規化（normalization）"),
                "groups": int_slider(2, 1, C, "グループ数 G（GroupNorm）"),
                "n": int_slider(0, 0, N - 1, "サンプル n"),
                "c": int_slider(0, 0, C - 1, "チャネル c")}

    def adapt(ctrl: dict) -> None:
        ctrl["groups"].disabled = ctrl["method"].value != "GroupNorm"

    def compute(method: str, groups: int, n: int, c: int) -> dict:
        mask = stat_mask(method, shape, n, c, groups)
        ids = _set_ids(method, shape, groups if method == "GroupNorm" else 1)
        axes = {"BatchNorm": "(N, H, W)", "LayerNorm": "(C, H, W)",
                "GroupNorm": f"(C/G = {C // groups} チャネル, H, W)"}[method]
        return {"method": method, "groups": groups, "mask": mask, "ids": ids,
                "count": int(mask.sum()), "sets": len(np.unique(ids)),
                "agrees": bool(np.array_equal(
                    mask, stat_mask_by_definition(method, shape, n, c, groups))),
                "title": f"{method}: 1 つの平均は {axes} の {int(mask.sum())} 個の値から。"
                         f"平均は全部で {len(np.unique(ids))} 個"}

    def draw(r: dict) -> Figure:
        return plot_norm_axes(r["mask"], r["ids"], r["title"])

    return Explorer(controls, compute, draw, adapt=adapt,
                    rows=[["method", "groups"], ["n", "c"]])


# --------------------------------------------------------------------------- 5. batch size 2


def small_batch(batch_size: int = 2, trials: int = 40, groups: int = 3, seed: int = 0) -> dict:
    """Normalize the same image (crop 0) together with ``trials`` random sets of partners.

    Returns, per trial, the mean of crop 0's normalized red channel under BatchNorm (which
    depends on the partners) and under GroupNorm (which does not), and crop 0's BN outputs
    for the first three trials.
    """
    crops = photo_batch(65, seed=seed + 2)
    target, others = crops[:1], crops[1:]
    rng = np.random.default_rng(seed)
    C = crops.shape[1]
    gamma, beta = np.ones(C), np.zeros(C)
    bn_means, gn_means, examples = [], [], []
    for _ in range(trials):
        partners = others[rng.choice(len(others), batch_size - 1, replace=False)]
        batch = np.concatenate([target, partners])
        bn_out = norm.batch_norm_forward(batch, gamma, beta)[0][0]
        gn_out = norm.group_norm_forward(batch, gamma, beta, groups)[0][0]
        bn_means.append(bn_out[0].mean())
        gn_means.append(gn_out[0].mean())
        if len(examples) < 3:
            examples.append(bn_out[0])
    gn_alone = norm.group_norm_forward(target, gamma, beta, groups)[0][0]
    return {"batch_size": batch_size, "bn_means": np.array(bn_means),
            "gn_means": np.array(gn_means), "bn_examples": examples, "gn_example": gn_alone[0],
            "target": target[0], "bn_spread": float(np.std(bn_means)),
            "gn_spread": float(np.std(gn_means))}


def plot_small_batch(r: dict) -> Figure:
    """Crop 0, its BN output with three different partners, its GN output, and the spread."""
    fig, axes = plt.subplots(1, 6, figsize=(15, 2.9),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1, 1.6]})
    axes[0].imshow(np.clip(r["target"].transpose(1, 2, 0), 0, 1))
    axes[0].set_title("切り抜き 0", fontsize=9)
    vmax = max(float(np.abs(e).max()) for e in [*r["bn_examples"], r["gn_example"]])
    for k, e in enumerate(r["bn_examples"]):
        axes[1 + k].imshow(e, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        axes[1 + k].set_title(f"BN, 相手 #{k + 1}\n平均 {e.mean():+.2f}", fontsize=9)
    axes[4].imshow(r["gn_example"], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    axes[4].set_title(f"GN, 相手は何でも\n平均 {r['gn_example'].mean():+.2f}", fontsize=9)
    for ax in axes[:5]:
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[5]
    ax.plot(r["bn_means"], "o", ms=3, label=f"BN（標準偏差 {r['bn_spread']:.2f}）")
    ax.plot(r["gn_means"], "s", ms=3, label=f"GN（標準偏差 {r['gn_spread']:.1e}）")
    ax.set_xlabel("試行（毎回ランダムな相手）")
    ax.set_ylabel("切り抜き 0 の出力の平均（R）")
    ax.set_title(f"バッチサイズ {r['batch_size']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def small_batch_explorer() -> Explorer:
    """A batch-size slider: how much crop 0's BN output depends on its partners, vs. GN."""
    controls = {"batch_size": int_slider(2, 2, 64, "バッチサイズ")}
    return Explorer(controls, small_batch, plot_small_batch)


__all__ = [
    "NORMS",
    "norm_axes_explorer",
    "plot_norm_axes",
    "plot_small_batch",
    "small_batch",
    "small_batch_explorer",
    "stat_mask",
    "stat_mask_by_definition",
]
