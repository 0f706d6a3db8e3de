"""Plotting primitives every notebook shares: image grids, small matrices with their numbers,
outlines on images, source listings and tables, and the Japanese font. No maths here.

Figures carry Japanese labels (English term in parentheses where the lecture has one). On
import, matplotlib is given a Japanese font after DejaVu Sans (which keeps drawing Latin
letters and maths symbols): the IPAex Gothic that the ``matplotlib-fontja`` package ships, or
one found on the system. Without any, a warning is shown once and the Japanese characters are
left out of the drawn text (the English in parentheses stays), so a figure never shows empty
boxes (tofu).

Every plotting function returns the matplotlib ``Figure`` (grids) or ``Axes`` (single panels) it
drew on, so tests can inspect them under the Agg backend and notebooks can add to them.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import textwrap
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

# --------------------------------------------------------------------------- Japanese font

JAPANESE_FONTS = ("IPAexGothic", "IPAGothic", "IPAPGothic", "Noto Sans CJK JP", "Noto Sans JP",
                  "Source Han Sans JP", "TakaoGothic", "VL Gothic", "Hiragino Sans",
                  "Hiragino Kaku Gothic ProN", "Yu Gothic", "Meiryo", "MS Gothic")
LATIN_FONT = "DejaVu Sans"  # matplotlib's own font: Latin letters, Greek and maths symbols
_JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff5e"
                       r"\uff61-\uff9f]")
_original_layout = Text._get_layout  # where matplotlib measures and splits the text it draws
japanese_font: str | None = None  # the family in use, or None when the fallback is active


def _bundled_font() -> Path | None:
    """The IPAex Gothic file of ``matplotlib-fontja``, found without importing the package
    (its import would make that font the only family, losing DejaVu Sans's symbols)."""
    spec = importlib.util.find_spec("matplotlib_fontja")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "fonts" / "ipaexg.ttf"
        if path.is_file():
            return path
    return None


def _find_font(family: str) -> bool:
    try:
        font_manager.findfont(font_manager.FontProperties(family=family),
                              fallback_to_default=False)
    except ValueError:
        return False
    return True


def without_japanese(text: str) -> str:
    """``text`` with its Japanese characters left out, for a machine with no Japanese font:
    ``"出力（output） 4×4"`` → ``"output 4×4"``. Text without Japanese is returned unchanged."""
    if not _JAPANESE.search(text):
        return text
    text = text.replace("（", " (").replace("）", ") ").replace("：", ": ").replace("、", ", ")
    text = _JAPANESE.sub("", text)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"^\s*\(([^()]*)\)", r"\1", text)  # "(output) 4×4" → "output 4×4"
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines)


def _layout_without_japanese(self: Text, renderer: object) -> object:
    shown = self._text
    readable = without_japanese(shown)
    if readable == shown:
        return _original_layout(self, renderer)
    self._text = readable  # only while measuring and drawing; get_text() keeps the label
    try:
        return _original_layout(self, renderer)
    finally:
        self._text = shown


def setup_japanese_font(candidates: Sequence[str] = JAPANESE_FONTS) -> str | None:
    """Make matplotlib draw Japanese: called on import; returns the font family used.

    The bundled IPAex Gothic (``matplotlib-fontja``) is registered first, then the first of
    ``candidates`` that matplotlib finds is placed after DejaVu Sans in ``font.family``, so
    each character is drawn by the first font that has it. When none is found, a warning is
    shown and text is drawn without its Japanese characters (``without_japanese``) instead of
    as empty boxes.
    """
    global japanese_font
    bundled = _bundled_font()
    if bundled is not None and bundled.name not in {Path(f.fname).name
                                                    for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(str(bundled))
    found = next((name for name in candidates if _find_font(name)), None)
    if found is None:
        Text._get_layout = _layout_without_japanese
        matplotlib.rcParams["font.family"] = [LATIN_FONT]  # draws all that is left
        if japanese_font is not None or not getattr(setup_japanese_font, "warned", False):
            setup_japanese_font.warned = True  # type: ignore[attr-defined]
            warnings.warn("日本語フォントが見つかりません（no Japanese font found）: "
                          "図の日本語は省いて表示します。pip install matplotlib-fontja で"
                          "直ります。", UserWarning, stacklevel=2)
    else:
        Text._get_layout = _original_layout
        # matplotlib falls back glyph by glyph along font.family (not along font.sans-serif)
        matplotlib.rcParams["font.family"] = [LATIN_FONT, found]
    japanese_font = found
    return found


setup_japanese_font()

# --------------------------------------------------------------------------- display


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Colab, nbval), where rich output renders."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is optional for the library itself
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _display(obj: object, plain: str) -> None:
    """Display ``obj`` richly in a notebook, else print ``plain``."""
    if in_notebook():
        from IPython.display import display

        display(obj)
    else:
        print(plain)


class Source(str):
    """The source text returned by :func:`show_source`.

    It is a plain ``str``; in a notebook it has already been displayed, so ending a cell with
    ``show_source(fn)`` does not print it a second time as a quoted string.
    """

    def _ipython_display_(self) -> None:
        pass


def show_source(fn: Callable) -> Source:
    """Display the source code of ``fn`` and return it.

    ``fn`` may be a Python function, a method or a Numba dispatcher (its ``.py_func`` is read,
    so the ``@kernel`` loop nest is shown as written). In a notebook the code is shown with
    syntax highlighting; elsewhere it is printed as plain text.
    """
    target = getattr(fn, "py_func", fn)
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (TypeError, OSError) as exc:
        raise TypeError(f"{fn!r} のソースは表示できません（cannot show the source）: "
                        f"{exc}") from None
    if in_notebook():
        from IPython.display import Code

        _display(Code(source, language="python"), source)
    else:
        print(source)
    return Source(source)


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: Japanese (wide) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def show_table(rows: Sequence[Sequence[object]], headers: Sequence[str],
               title: str | None = None) -> str:
    """Display a small table (an HTML table in a notebook, aligned text elsewhere).

    Floats are shown with 4 significant digits (``.4g``), integers with thousands separators;
    returns the text form.
    """

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [max(_width(h), *(_width(r[k]) for r in text_rows)) if text_rows else _width(h)
              for k, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *text_rows]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in lines]
    text = "\n".join(([title] if title else []) + lines)
    if in_notebook():
        from IPython.display import HTML

        head = "".join(f"<th>{h}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in text_rows)
        caption = f"<caption>{title}</caption>" if title else ""
        _display(HTML(f"<table>{caption}<tr>{head}</tr>{body}</table>"), text)
    else:
        print(text)
    return text


def _as_displayable(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (3, H, W) → something ``imshow`` accepts; RGB clipped to [0, 1]."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        return np.clip(a.astype(np.float64), 0.0, 1.0)
    if a.ndim != 2:
        raise ValueError(f"形 {a.shape} の配列は画像として表示できません（not an image）")
    return a


def image_grid(n: int, ncols: int | None = None, size: float = 2.6,
               suptitle: str | None = None) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` square-ish panels in rows of ``ncols``; unused panels are hidden."""
    ncols = max(1, min(n, ncols or n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig, flat[:n]


def show_image(img: np.ndarray, title: str | None = None, ax: Axes | None = None,
               cmap: str = "gray", vmin: float | None = None, vmax: float | None = None,
               colorbar: bool = False) -> Axes:
    """One image ((H, W) grey, (H, W, 3) or (3, H, W) RGB in [0, 1]) on ``ax`` (or a new one)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 3.5))
    a = _as_displayable(img)
    im = ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    if colorbar and a.ndim == 2:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def tile_row(ax: Axes, tiles: Sequence[np.ndarray], titles: Sequence[str] | None = None,
             styles: Sequence[dict] | None = None, fontsize: float = 7,
             slots: int | None = None) -> Axes:
    """Images side by side on one Axes, each as an image of its own (``ax.images[k]``) with a
    thin frame and an optional title above it; ``styles[k]`` holds ``imshow`` options (cmap,
    vmin, vmax). Every tile is one unit wide, whatever its size in pixels; ``slots`` (at least
    ``len(tiles)``) sets the row's width in tiles, so that rows of one figure match.

    A figure with dozens of small images draws several times faster this way than with one
    Axes per image (notebook 06: the first layer's 16 filters, before and after training).
    """
    gap = 0.12
    pictures = [_as_displayable(tile) for tile in tiles]
    for k, a in enumerate(pictures):
        height = a.shape[0] / a.shape[1]
        left = k * (1 + gap)
        style = {"cmap": "gray"} | (dict(styles[k]) if styles else {})
        if a.ndim == 3:
            style.pop("cmap", None)
        ax.imshow(a, extent=(left, left + 1, height, 0), interpolation="nearest", **style)
        ax.add_patch(Rectangle((left, 0), 1, height, fill=False, linewidth=0.8,
                               edgecolor="0.15"))
        if titles:
            ax.text(left + 0.5, -0.06, titles[k], ha="center", va="bottom", fontsize=fontsize)
    ax.set_xlim(-0.02, max(len(tiles), slots or 0) * (1 + gap) - gap + 0.02)
    tallest = max((a.shape[0] / a.shape[1] for a in pictures), default=1.0)
    ax.set_ylim(tallest + 0.02, -0.02)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def show_images(images: Sequence[np.ndarray] | np.ndarray, titles: Sequence[str] | None = None,
                ncols: int | None = None, cmap: str = "gray", size: float = 2.6,
                suptitle: str | None = None, shared_range: bool = False) -> Figure:
    """A grid of images (each (H, W), (H, W, 3) or (3, H, W)); returns the figure.

    ``shared_range=True`` uses one colour scale for all grey images, so brightness compares.
    """
    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"画像は {len(images)} 枚ですが、タイトルは {len(titles)} 個です")
    vmin = vmax = None
    if shared_range:
        vmin = float(min(np.min(a) for a in images))
        vmax = float(max(np.max(a) for a in images))
    ncols = max(1, min(len(images), ncols or len(images)))
    nrows = max(1, -(-len(images) // ncols))
    # one Axes per row, each image an image of its own on it (tile_row: faster to draw)
    fig, axes = plt.subplots(nrows, 1, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    style = {"cmap": cmap, "vmin": vmin, "vmax": vmax}
    for row, ax in enumerate(axes[:, 0]):
        part = slice(row * ncols, (row + 1) * ncols)
        tile_row(ax, images[part], titles[part] if titles else None,
                 [style] * len(images[part]), fontsize=10, slots=ncols)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_feature_maps(maps: np.ndarray | Sequence[np.ndarray],
                      titles: Sequence[str] | None = None, ncols: int | None = None,
                      cmap: str = "RdBu_r", size: float = 2.6, suptitle: str | None = None,
                      symmetric: bool = True, colorbar: bool = True) -> Figure:
    """Feature maps ((C, H, W), (1, C, H, W) or a list of (H, W)) as a grid of heat maps.

    With ``symmetric=True`` each map's colour scale is centred on 0 (blue < 0 < red), which is
    how the sign of a filter response reads best.
    """
    if isinstance(maps, np.ndarray) and maps.ndim == 4:
        if maps.shape[0] != 1:
            raise ValueError(f"1 度に 1 サンプルずつ表示します（one sample at a time）: "
                             f"maps の形は {maps.shape} です")
        maps = maps[0]
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        maps = maps[None]
    maps = [np.asarray(m) for m in maps]
    if titles is None:
        titles = [f"マップ（map） {k}" for k in range(len(maps))]
    if len(titles) != len(maps):
        raise ValueError(f"マップは {len(maps)} 枚ですが、タイトルは {len(titles)} 個です")
    fig, axes = image_grid(len(maps), ncols, size, suptitle)
    for ax, m, title in zip(axes, maps, titles, strict=True):
        if m.ndim != 2:
            raise ValueError(f"特徴マップは 1 枚ずつ 2 次元 (H, W) です。形は {m.shape} でした")
        vmin = vmax = None
        if symmetric:
            vmax = float(np.max(np.abs(m))) or 1.0
            vmin = -vmax
        show_image(m, title, ax=ax, cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar)
    fig.tight_layout()
    return fig


def show_matrix(a: np.ndarray, title: str | None = None, fmt: str = "{:g}",
                ax: Axes | None = None, cmap: str = "Blues", color: bool = True,
                fontsize: float | None = None, symmetric: bool = False) -> Axes:
    """A small 2-D array as a grid of cells with each number written in it.

    ``fmt`` formats one value (``"{:g}"``, ``"{:.2f}"``). Rows run down and columns across,
    like the printed array; ``outline(ax, ...)`` marks a window on it. ``symmetric=True``
    centres the colours on 0 (for filters with both signs, with ``cmap="RdBu_r"``).
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"show_matrix には 2 次元の配列が必要です。形は {a.shape} でした")
    h, w = a.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * w + 0.6, 0.55 * h + 0.6))
    values = a.astype(np.float64)
    finite = values[np.isfinite(values)]
    strong = np.zeros(values.shape, bool)  # cells dark enough for white text
    if color and finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if symmetric:
            hi = max(abs(lo), abs(hi)) or 1.0
            lo = -hi
            strong = np.abs(values) > hi / 2
        else:
            hi = hi if hi > lo else lo + 1.0
            strong = values > (lo + hi) / 2
        ax.imshow(np.where(np.isfinite(values), values, lo), cmap=cmap, vmin=lo, vmax=hi)
    else:
        ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    size = fontsize or (10 if max(h, w) <= 8 else 7)
    for i in range(h):
        for j in range(w):
            ax.text(j, i, fmt.format(a[i, j]), ha="center", va="center", fontsize=size,
                    color="white" if strong[i, j] else "black")
    ax.hlines(np.arange(h + 1) - 0.5, -0.5, w - 0.5, color="0.6", linewidth=0.8)
    ax.vlines(np.arange(w + 1) - 0.5, -0.5, h - 0.5, color="0.6", linewidth=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def show_matrices(arrays: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                  fmt: str = "{:g}", between: Sequence[str] | None = None,
                  suptitle: str | None = None) -> Figure:
    """Several small matrices side by side, e.g. input, kernel and output of a worked example.

    ``between`` holds the symbols drawn between neighbours (``["*", "="]``).
    """
    arrays = [np.asarray(a) for a in arrays]
    if between is not None and len(between) != len(arrays) - 1:
        raise ValueError(f"行列 {len(arrays)} 個の間には記号が {len(arrays) - 1} 個必要です")
    widths = [max(a.shape[1], 1) for a in arrays]
    height = max(a.shape[0] for a in arrays)
    fig_w = 0.55 * sum(widths) + (1.3 if between else 0.8) * len(arrays)
    fig_h = 0.55 * height + (1.0 if suptitle else 0.8)
    gap = (0.9 if between else 0.5) * len(arrays) / sum(widths)  # in units of average width
    fig, axes = plt.subplots(1, len(arrays), figsize=(fig_w, fig_h), squeeze=False,
                             gridspec_kw={"width_ratios": widths, "wspace": gap, "left": 0.02,
                                          "right": 0.98, "bottom": 0.15 / fig_h,
                                          "top": 1 - (0.7 if suptitle else 0.4) / fig_h})
    axes = axes[0]  # fixed margins: tight_layout would cost more than all the drawing
    for k, (ax, a) in enumerate(zip(axes, arrays, strict=True)):
        show_matrix(a, titles[k] if titles else None, fmt=fmt, ax=ax)
    if suptitle:
        fig.suptitle(suptitle)
    if between:  # centred in the gap between neighbouring panels
        for left, right, symbol in zip(axes[:-1], axes[1:], between, strict=True):
            a, b = left.get_position(), right.get_position()
            fig.text((a.x1 + b.x0) / 2, (a.y0 + a.y1) / 2, symbol, ha="center", va="center",
                     fontsize=16)
    return fig


def outline(ax: Axes, top: float, left: float, height: float, width: float,
            color: str = "red", linewidth: float = 2.0, label: str | None = None,
            fill: bool = False, alpha: float = 1.0) -> Rectangle:
    """Outline the pixels ``[top, top+height) × [left, left+width)`` on an image or matrix axes.

    Coordinates are pixel indices (row, column) as in the array, so ``outline(ax, i, j, k, k)``
    frames the k×k window whose top-left pixel is ``a[i, j]``.
    """
    rect = Rectangle((left - 0.5, top - 0.5), width, height, fill=fill, edgecolor=color,
                     facecolor=color if fill else "none", linewidth=linewidth, alpha=alpha,
                     label=label)
    ax.add_patch(rect)
    return rect


def mark_pixels(ax: Axes, rows: Sequence[int], cols: Sequence[int], color: str = "red",
                size: float = 20.0, label: str | None = None) -> None:
    """Small square markers at pixel centres ``(rows[k], cols[k])`` (e.g. dilated taps)."""
    ax.scatter(np.asarray(cols), np.asarray(rows), s=size, marker="s", facecolors="none",
               edgecolors=color, linewidths=1.2, label=label)


__all__ = [
    "JAPANESE_FONTS",
    "Source",
    "image_grid",
    "in_notebook",
    "mark_pixels",
    "outline",
    "setup_japanese_font",
    "show_feature_maps",
    "show_image",
    "show_images",
    "show_matrices",
    "show_matrix",
    "show_source",
    "show_table",
    "tile_row",
    "without_japanese",
]
