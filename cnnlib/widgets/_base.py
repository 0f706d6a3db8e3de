"""The one pattern every widget in ``cnnlib.widgets`` follows, so tests can drive it headlessly.

A widget builder (``conv_explorer()``, ``pool_explorer()``, …) returns an :class:`Explorer`::

    def my_explorer() -> Explorer:
        controls = {"k": IntSlider(3, 1, 7, description="kernel"), "mode": Dropdown(...)}
        def compute(k, mode):        # keyword per control; raise ValueError("...") to refuse
            return {"out": ..., "formula": "..."}
        def draw(result):            # build and return a Figure (do not call plt.show())
            fig, ax = plt.subplots(); ...; return fig
        def adapt(controls):         # optional: narrow other sliders' ranges (use set_range)
            set_range(controls["padding"], 0, controls["k"].value - 1)
        return Explorer(controls, compute, draw, adapt=adapt, rows=[["k", "mode"]])

* ``controls``: dict name → ipywidget; every control's ``value`` is observed.
* ``update()``: adapt → compute(**values) → draw → one PNG, inside ``output`` (an
  ``ipywidgets.Output``). The figure is rendered once by Agg and cropped to its ink plus 0.1 inch
  (what the inline backend's ``bbox_inches="tight"`` gives, without its second layout pass:
  ``figure_png``); the PNG is sent as one ``display_data`` and pyplot's figures are closed.
  Outside a notebook the PNG is made all the same (``png``), so drawing errors surface in tests
  and benchmarks time what a slider move costs.
* A draw function may keep its figure and update its artists (``set_data``, ``set_text``)
  instead of building a new one: creating axes costs more than drawing them. ``KeptFigure``
  holds such figures, one per layout (e.g. a table of numbers or an image), each built once.
* ``result``: what ``compute`` returned last (``None`` after an error); ``figure``: the last figure;
  ``png``: its picture; ``timings``: seconds in ``compute``, ``draw`` (building or updating the
  figure) and ``png`` (rendering and encoding) by the last update.
* ``message``: "" on success; otherwise the error text, which is printed in ``output`` in place
  of the stale picture (never a traceback). ``error`` keeps the exception for debugging.
* Bursts: ipywidgets' front end keeps at most one update per control waiting for the kernel
  and merges the moves made meanwhile into the next one, so a fast drag (or a held arrow key)
  does not queue a render per step; ``int_slider``/``float_slider`` also send only on release.
* ``ui``: the box to display; a notebook cell can simply end with the builder call.
* ``threads``: Numba threads while updating (default 1). A widget's arrays are small, and waking
  a sleeping thread pool after the user's pause costs more (tens of ms on a busy machine) than
  the parallel loop saves; pass ``threads=None`` for heavy work (e.g. training a small model).

Tests: ``e = my_explorer(); e.controls["k"].value = 5; assert e.message == ""; e.result[...]``.
Exercises: the ``check_…`` helpers and the answer readers live in :mod:`cnnlib.widgets._answers`
(re-exported here, so ``from cnnlib.widgets._base import number_answer`` keeps working).
Only API present in both ipywidgets 7 (Colab) and 8 is used. Under pytest, use the Agg backend.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numba
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from cnnlib.viz import in_notebook
from cnnlib.widgets import _answers
from cnnlib.widgets._answers import *  # noqa: F403  (re-exported: the older import path)

Compute = Callable[..., Any]
Draw = Callable[[Any], Figure | None]


class Explorer:
    """Controls + an output area + the last result; see the module docstring for the pattern."""

    def __init__(self, controls: Mapping[str, widgets.Widget], compute: Compute,
                 draw: Draw | None = None, *, adapt: Callable[[dict], None] | None = None,
                 rows: Sequence[Sequence[str]] | None = None, title: str | None = None,
                 threads: int | None = 1):
        self.controls: dict[str, widgets.Widget] = dict(controls)
        self.output = widgets.Output()
        self.result: Any = None
        self.message = ""
        self.error: Exception | None = None
        self.figure: Figure | None = None
        self.png: bytes | None = None
        self.timings: dict[str, float] = {}
        self._compute, self._draw, self._adapt = compute, draw, adapt
        self._threads = threads
        self._busy = False
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        if rows is None:
            rows = [list(self.controls)]
        boxes: list[widgets.Widget] = []
        if title:
            boxes.append(widgets.HTML(f"<b>{title}</b>"))
        boxes += [widgets.HBox([self.controls[name] for name in row],
                               layout=widgets.Layout(flex_flow="row wrap")) for row in rows]
        self.ui = widgets.VBox([*boxes, self.output])
        self.update()

    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, change: dict) -> None:
        if not self._busy:  # ignore the changes that ``adapt`` itself makes
            self.update()

    def update(self) -> Any:
        """Recompute and redraw from the current control values; returns ``result``."""
        if self._busy:
            return self.result
        self._busy = True
        before = set(plt.get_fignums())
        threads_before = numba.get_num_threads()
        if self._threads is not None:
            numba.set_num_threads(min(self._threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with self.output:
                if in_notebook():
                    self.output.clear_output(wait=True)
                try:
                    start = time.perf_counter()
                    if self._adapt is not None:
                        self._adapt(self.controls)
                    result = self._compute(**self.values())
                    computed = time.perf_counter()
                    fig = self._draw(result) if self._draw is not None else None
                    drawn = time.perf_counter()
                    png = figure_png(fig) if fig is not None else None
                    self.timings = {"compute": computed - start, "draw": drawn - computed,
                                    "png": time.perf_counter() - drawn}
                except Exception as exc:  # shown as a message, never as a traceback
                    self._fail(exc, before)
                else:
                    self.result, self.figure, self.message, self.error = result, fig, "", None
                    self.png = png
                    if png is not None and in_notebook():
                        show_png(png, fig)
                    for num in set(plt.get_fignums()) - before:
                        plt.close(num)  # else the inline backend would show it again
        finally:
            numba.set_num_threads(threads_before)  # the setting is per thread: restore it
            self._busy = False
        return self.result

    def _fail(self, exc: Exception, before: set[int]) -> None:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
        if isinstance(exc, (ValueError, TypeError)):
            self.message = str(exc)
        else:
            self.message = f"{type(exc).__name__}: {exc}"
        self.result, self.figure, self.png, self.error = None, None, None, exc
        print(f"⚠ {self.message}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.ui)


PAD_INCHES = 0.1  # the margin around the ink, as the inline backend's bbox_inches="tight"


def figure_png(fig: Figure, compress_level: int = 1) -> bytes:
    """``fig`` as a PNG: one Agg render, cropped to the drawn pixels and the visible axes' boxes
    plus ``PAD_INCHES``.

    This is the picture the inline backend sends (``savefig(bbox_inches="tight")``) for every
    figure drawn inside its bounds, at the figure's dpi, at about half the cost: "tight" lays
    out every text a second time to find the box, then draws again. Opaque figures are encoded
    as RGB; zlib level 1 (pixels of plots compress almost as well at level 1 as at 6, faster).
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    height = rgba.shape[0]
    pixels = rgba.view(np.uint32)[..., 0]  # one number per pixel: one comparison, not four
    ink = pixels != pixels[0, 0]  # the corner shows the figure's background
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    # Like "tight", keep every visible axes' box even where it is blank (a diagram on axes
    # without frame): the picture then keeps its size while the numbers in it change.
    boxes = [ax.get_window_extent() for ax in fig.axes if ax.get_visible()]
    if rows.size or boxes:
        top = min([*rows[:1], *(height - b.y1 for b in boxes)])
        bottom = max([*rows[-1:], *(height - b.y0 - 1 for b in boxes)])
        left = min([*cols[:1], *(b.x0 for b in boxes)])
        right = max([*cols[-1:], *(b.x1 - 1 for b in boxes)])
        pad = PAD_INCHES * fig.dpi
        rgba = rgba[max(int(top - pad), 0):max(int(bottom + pad) + 1, 0),
                    max(int(left - pad), 0):max(int(right + pad) + 1, 0)]
    if rgba[..., 3].min() == 255:
        rgba = rgba[..., :3]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(out, format="png",
                                                     compress_level=compress_level)
    return out.getvalue()


def show_png(png: bytes, fig: Figure | None = None) -> None:
    """Send one PNG to the front end as the inline backend sends a figure."""
    from IPython.display import publish_display_data

    text = "<Figure>"
    if fig is not None:
        w, h = fig.get_size_inches() * fig.dpi
        text = f"<Figure size {w:g}x{h:g} with {len(fig.axes)} Axes>"
    publish_display_data({"image/png": base64.b64encode(png).decode("ascii"),
                          "text/plain": text})


class KeptFigure:
    """The figures an explorer keeps between updates, one per layout, each built once.

    ``get(layout, build)`` returns the figure kept for ``layout`` (any hashable, e.g. "matrix"
    or "image"), else ``build()`` (a new ``Figure``, made with ``Figure()``/``fig.subplots``
    rather than pyplot so nothing else shows or closes it) and keeps that. Moving a slider back
    and forth between two layouts then builds nothing. A draw function only updates artists;
    if it raises, call ``forget()`` so the next update starts from fresh figures.
    """

    def __init__(self) -> None:
        self.figures: dict[object, Figure] = {}

    def get(self, layout: object, build: Callable[[], Figure]) -> tuple[Figure, bool]:
        """The figure for ``layout`` and whether it is new (``True``: nothing drawn in it yet)."""
        if layout in self.figures:
            return self.figures[layout], False
        fig = self.figures[layout] = build()
        plt.close(fig)  # if pyplot made it: kept here, never shown by the inline backend
        FigureCanvasAgg(fig)
        return fig, True

    def forget(self) -> None:
        self.figures.clear()


def clear_artists(ax: Axes) -> None:
    """Remove what an update drew on ``ax`` (images, texts, patches, markers, lines) and keep
    the axes, its title and labels: ``ax.clear()`` or new axes cost more than all the drawing."""
    for artist in [*ax.images, *ax.texts, *ax.patches, *ax.collections, *ax.lines]:
        artist.remove()
    ax.ignore_existing_data_limits = True  # the next image sets the limits afresh


def set_range(slider: widgets.Widget, low: int | float, high: int | float) -> None:
    """Set a slider's ``min``/``max`` in a safe order (its value is clamped into the range)."""
    high = max(low, high)
    if low > slider.max:
        slider.max = high
        slider.min = low
    else:
        slider.min = low
        slider.max = high


def int_slider(value: int, low: int, high: int, description: str, step: int = 1,
               continuous: bool = False) -> widgets.IntSlider:
    """An ``IntSlider`` with the description fully visible (``continuous_update=False``)."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=continuous,
                             style={"description_width": "initial"})


def float_slider(value: float, low: float, high: float, description: str, step: float = 0.01,
                 continuous: bool = False, readout_format: str = ".2f") -> widgets.FloatSlider:
    """A ``FloatSlider`` with the description fully visible (``continuous_update=False``)."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step,
                               description=description, continuous_update=continuous,
                               readout_format=readout_format,
                               style={"description_width": "initial"})


def dropdown(options: Sequence[str], value: str, description: str,
             labels: Mapping[str, str] | None = None) -> widgets.Dropdown:
    """A ``Dropdown`` with the description fully visible; ``labels`` maps an option (the
    ``value`` the code sees, English) to the text the student reads (Japanese)."""
    choices = [(labels.get(o, o), o) for o in options] if labels else list(options)
    return widgets.Dropdown(options=choices, value=value, description=description,
                            style={"description_width": "initial"})


__all__ = [
    "Explorer",
    "KeptFigure",
    "clear_artists",
    "dropdown",
    "figure_png",
    "float_slider",
    "int_slider",
    "set_range",
    *_answers.__all__,
]
