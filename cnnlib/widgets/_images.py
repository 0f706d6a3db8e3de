"""The images and filters that several notebooks' widgets share (00 to 03 use them).

* ``FILTERS`` / ``make_filter(name, k)``: k×k filters by name (identity, blurs, Sobel, …).
* ``IMAGES`` / ``explorer_image(name)``: the grey photograph and crops of it.
* ``LECTURE_X``: the lecture's 4×4 pooling example.
* ``photo_batch(n, size)``: a colour mini-batch of random crops of the photograph.
* ``conv_gray(img, w, …)``: one grey image convolved with one filter through ``cnnlib.conv``.
Topic modules import these from here, never from each other.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np

from cnnlib.conv import conv2d_forward
from cnnlib.data import sample_image

# --------------------------------------------------------------------------- filters

FILTERS = ("identity", "box blur", "gaussian", "sharpen", "sobel x", "sobel y", "laplacian",
           "random")
MIN_KERNEL = {"sobel x": 2, "sobel y": 2, "laplacian": 3}  # smallest k each filter exists for
SIGNED = {"sobel x", "sobel y", "laplacian", "random"}  # responses with both signs
FILTER_LABELS = {"identity": "恒等（identity）", "box blur": "平均ぼかし（box blur）",
                 "gaussian": "ガウシアン（gaussian）", "sharpen": "鮮鋭化（sharpen）",
                 "sobel x": "Sobel x（縦のエッジ）", "sobel y": "Sobel y（横のエッジ）",
                 "laplacian": "ラプラシアン（laplacian）", "random": "ランダム（random）"}


def _binomial(n: int) -> np.ndarray:
    """Row n−1 of Pascal's triangle: [1], [1, 1], [1, 2, 1], … (a smoothing window)."""
    return np.array([comb(n - 1, r) for r in range(n)], dtype=np.float64)


def make_filter(name: str, k: int, seed: int = 0) -> np.ndarray:
    """A k×k filter by name (see ``FILTERS``), float64.

    Sobel generalises to any k ≥ 2 (binomial smoothing ⊗ smoothed difference); the Laplacian
    is the classic 3×3 one for k = 3 and a zero-sum Laplacian of Gaussian for larger k.
    """
    if name not in FILTERS:
        raise ValueError(f"フィルタ {name!r} はありません（unknown filter）。"
                         f"次から選んでください: {', '.join(FILTERS)}")
    if k < MIN_KERNEL.get(name, 1):
        raise ValueError(f"{name} フィルタにはカーネルの大きさが {MIN_KERNEL[name]} 以上必要です"
                         f"（kernel size）。指定は {k} でした")
    centre = (k - 1) / 2
    r = np.arange(k) - centre
    if name == "identity":
        w = np.zeros((k, k))
        w[k // 2, k // 2] = 1.0
    elif name == "box blur":
        w = np.full((k, k), 1.0 / (k * k))
    elif name == "gaussian":
        g = np.exp(-(r**2) / (2 * max(k / 5, 0.5) ** 2))
        w = np.outer(g, g) / np.outer(g, g).sum()
    elif name == "sharpen":
        w = -np.full((k, k), 1.0 / (k * k))
        w[k // 2, k // 2] += 2.0  # 2·identity − box blur
    elif name in ("sobel x", "sobel y"):
        smooth = _binomial(k)
        diff = np.convolve(_binomial(k - 1), [1.0, -1.0])[::-1] if k > 1 else np.zeros(1)
        w = np.outer(smooth, diff) if name == "sobel x" else np.outer(diff, smooth)
    elif name == "laplacian":
        if k == 3:
            w = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        else:
            s2 = (k / 6) ** 2
            rr = r[:, None] ** 2 + r[None, :] ** 2
            w = (rr - 2 * s2) * np.exp(-rr / (2 * s2))
            w -= w.mean()  # a flat patch gives 0
            w *= -4.0 / w[k // 2, k // 2] if w[k // 2, k // 2] != 0 else 1.0
    else:  # random
        w = np.random.default_rng(seed).normal(0.0, 1.0 / k, (k, k))
    return w


# --------------------------------------------------------------------------- images

# the lecture's 4×4 pooling example (notebook 02 pools it, notebook 05 takes it back)
LECTURE_X = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 8, 1], [3, 4, 0, 9]], dtype=np.float64)


EXPLORER_SIZE = 128  # photo height in the explorer: a slider move stays well under 100 ms
IMAGES = ("photo", "crop 24×24", "tiny 6×6")
IMAGE_LABELS = {"photo": "写真（photo）", "crop 24×24": "切り抜き 24×24（crop）",
                "tiny 6×6": "tiny 6×6（小さな切り抜き）"}


@lru_cache(maxsize=8)
def _photo(gray: bool, size: int) -> np.ndarray:
    img = sample_image(gray=gray, size=size)
    img.setflags(write=False)
    return img


def explorer_image(name: str = "photo", size: int = EXPLORER_SIZE) -> np.ndarray:
    """The grey image the explorer convolves: the photo (H = ``size``) or a crop of it."""
    photo = _photo(True, size)
    if name == "photo":
        return photo
    if name == "crop 24×24":
        top, left = photo.shape[0] // 4, photo.shape[1] // 2 - 12
        return photo[top:top + 24, left:left + 24]
    if name == "tiny 6×6":
        top, left = photo.shape[0] // 3, photo.shape[1] // 2 - 3
        return photo[top:top + 6, left:left + 6]
    raise ValueError(f"画像 {name!r} はありません（unknown image）。"
                     f"次から選んでください: {', '.join(IMAGES)}")


def photo_batch(n: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` random ``size``×``size`` crops of the photograph: (n, 3, size, size) float64 in [0, 1].

    The photo is scaled to a height of 160 pixels first, so a crop shows a recognisable part
    (face, cap, flag, background). The same seed gives the same crops.
    """
    photo = _photo(False, 160).astype(np.float64).transpose(2, 0, 1)  # (3, H, W)
    rng = np.random.default_rng(seed)
    top = rng.integers(0, photo.shape[1] - size + 1, n)
    left = rng.integers(0, photo.shape[2] - size + 1, n)
    return np.stack([photo[:, t:t + size, s:s + size] for t, s in zip(top, left, strict=True)])


def conv_gray(img: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0,
              dilation: int = 1) -> np.ndarray:
    """Convolve one grey (H, W) image with one (k, k) filter via ``cnnlib.conv``; (H_out, W_out)."""
    x = np.asarray(img, np.float32)[None, None]
    out, _ = conv2d_forward(x, np.asarray(w, np.float32)[None, None], np.zeros(1, np.float32),
                            stride=stride, padding=padding, dilation=dilation)
    return out[0, 0]


__all__ = [
    "EXPLORER_SIZE",
    "FILTERS",
    "FILTER_LABELS",
    "IMAGES",
    "IMAGE_LABELS",
    "LECTURE_X",
    "MIN_KERNEL",
    "SIGNED",
    "conv_gray",
    "edge_and_line_filters",
    "explorer_image",
    "make_filter",
    "photo_batch",
]


def edge_and_line_filters() -> tuple[np.ndarray, list[str]]:
    """Six 3×3 filters that respond to edges and thin lines, as ``w`` (6, 1, 3, 3) and names
    (English keys; ``show_edges_and_lines`` draws them as the Japanese ``LINE_LABELS``)."""
    h_line = np.array([[-1.0, -1, -1], [2, 2, 2], [-1, -1, -1]])
    diag = np.array([[2.0, -1, -1], [-1, 2, -1], [-1, -1, 2]])
    filters = [(make_filter("sobel x", 3), "vertical edge"),
               (make_filter("sobel y", 3), "horizontal edge"),
               (h_line.T, "vertical line"), (h_line, "horizontal line"),
               (diag, "diagonal line \\"), (diag[:, ::-1], "diagonal line /")]
    return np.array([f for f, _ in filters])[:, None], [name for _, name in filters]
