"""Figures for an evaluation: school forest plot, love plot, propensity overlap, percentile
chart and the distribution of school effects; for planning, the power curve and the MDES
against sample size (tables from :mod:`pleval.power.curves`).

Every drawing function takes plain DataFrames / arrays with documented columns (no pleval
results classes); the ``evaluation_*`` functions at the end adapt an
:class:`~pleval.estimate.Evaluation`'s tables to them (what ``Evaluation.plot_*`` and the report
use). Every function returns a :class:`matplotlib.figure.Figure` and never calls ``show()``. Figures are
built without ``pyplot``, so they are never kept open by a global registry (no memory growth
in long reports) and display exactly once in Jupyter, where the returned figure renders as a
PNG (``_repr_png_``). Save one with ``fig.savefig("forest.png", dpi=150)`` or get PNG bytes
from :func:`to_png`.

Figures are sized by their content: the forest plot and the love plot grow with the number of
rows (about a quarter of an inch per school), so labels never overlap, whatever the number of
schools. Effect sizes are in SD units; where a percentile-point axis is drawn it uses
``Δ(g; p) = 100·Φ(Φ⁻¹(p/100) + g) − p`` (:func:`pleval.percentiles.to_percentile_points`) from
the baseline percentile ``p`` (50 by default) — a shift in rank, not a change in the score.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager as _font_manager
from matplotlib import rc_context, rcParams
from matplotlib.backends import backend_agg as _agg
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import TICKLEFT, TICKRIGHT, Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.text import Annotation, Text
from matplotlib.ticker import MaxNLocator, NullLocator
from matplotlib.transforms import Bbox, ScaledTranslation
from scipy import special, stats

from . import findings, percentiles
from ._text import unsigned_zeros
from .errors import DataError, PlevalError
from .standards import g_text

if TYPE_CHECKING:  # pragma: no cover
    from .estimate import Evaluation

# Colour-blind-safe palette (Paul Tol "bright"/"muted").
POSITIVE = "#0077BB"
NEGATIVE = "#CC3311"
NEUTRAL = "#777777"
SHRUNK = "#222222"
POOLED = "#332288"
BAND = "#88CCEE"
PLACEBO = "#AA8800"
BEFORE = "#999999"
AFTER = "#0077BB"

ROW_INCH = 0.27  # vertical space per school / covariate row
FOREST_MAX_ROWS = 60
"""School rows in an evaluation's forest plot: beyond it, the highest and lowest 30 are drawn
and the schools between them summarized in one row (:func:`forest`, ``max_rows``)."""
_BASE_FONT = 9
MEASURE_ONCE = tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) == (3, 10)
"""Whether :func:`_drawn` lays a figure out in one pass (:func:`_lay_out_once`), spares
repeated measuring (:func:`_measured_once`) and shapes each text once (:func:`_shaped_once`). They
reach into matplotlib's private attributes (``Axis._update_ticks``, ``Axis._get_ticklabel_bboxes``,
``Text._get_layout``, ``Artist._cm_set``, ``Axes._autotitlepos``, a figure's ``_suptitle``, a
legend's ``_outside_loc``, ``RendererAgg._prepare_font`` and its ``_renderer``, the font manager's
``_find_fonts_by_props``), so they run only on the matplotlib series the lock pins and the tests
check them against (3.10); with any other matplotlib the figures are laid out, measured and drawn
by matplotlib itself, as before."""
UNHINTED_DPI = 150
"""From this resolution up, :func:`to_png` and :func:`to_png_svg` draw text without hinting
(``text.hinting: "no_hinting"``). Hinting fits each glyph's outline to the pixel grid, which
sharpens small text on a screen; at print resolution (the report's 200 dpi) a stroke is several
pixels wide, the unhinted glyph keeps the font's own shapes and advance widths, and FreeType
loads it without running its auto-hinter: the twelve figures of a 1M-row ``pleval estimate``
took 13–17% less CPU, their PNGs about 10% larger (docs/scale.md, twentieth round). Below it
(the notebook's 100 dpi) matplotlib's setting is kept."""


class PlevalFigure(Figure):
    """A matplotlib Figure that renders itself as PNG in Jupyter (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        return to_png(self, dpi=100)


def to_png(fig: Figure, dpi: int = 150) -> bytes:
    """PNG bytes of a figure (white background, tight bounding box; text unhinted from
    :data:`UNHINTED_DPI` up): the PNG of :func:`to_png_svg`, drawn once."""
    with _drawn(fig, dpi) as (canvas, content, box):
        return _png_of(canvas, content, box, dpi)


_SVG_FIXED = {"svg.hashsalt": "pleval"}
"""matplotlib names an SVG's clip paths and glyphs by hashes salted with a random UUID unless
``svg.hashsalt`` is set; with it (and no date in the metadata) the same figure gives the same bytes."""


def _save_svg(fig: Figure, buf, bbox_inches) -> None:
    with rc_context(_SVG_FIXED):
        fig.savefig(buf, format="svg", bbox_inches=bbox_inches, facecolor="white", metadata={"Date": None})


def to_svg(fig: Figure) -> bytes:
    """SVG bytes of a figure (white background, tight bounding box): scales to any size. The
    same figure gives the same bytes (no date; fixed ids)."""
    buf = io.BytesIO()
    _save_svg(fig, buf, "tight")
    return buf.getvalue()


def to_png_svg(fig: Figure, dpi: int = 150) -> tuple[bytes, bytes]:
    """PNG (at ``dpi``) and SVG bytes of a figure, white background, tight bounding box, from
    one layout and one raster drawing.

    ``savefig`` with a tight bounding box lays the figure out and measures it in a draw of its
    own before the real one, so saving two formats that way costs four draws. Here the figure
    is laid out and drawn once with Agg at ``dpi`` (:func:`_drawn`), its tight box
    is measured on that drawing, padded by ``savefig.pad_inches`` and snapped outward to whole
    pixels, and the PNG is that box cut from the drawn pixels (white where the padding reaches
    past the figure's edge). The layout is then held while the SVG is drawn by ``savefig``
    with the same box. (``savefig`` anchors figure legends and titles to the box rather than to
    the figure, so in the SVG they sit up to the padding, 0.1 inch, nearer the edge.) The
    figure is left as it was (its layout engine, dpi, face colour and canvas restored)."""
    with _drawn(fig, dpi) as (canvas, content, box):
        png = _png_of(canvas, content, box, dpi)
        with rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # keep the positions just computed
        buf = io.BytesIO()
        _save_svg(fig, buf, box)
    return png, buf.getvalue()


@contextmanager
def _drawn(fig: Figure, dpi: float):
    """``fig`` drawn once with Agg at ``dpi`` on a white face (laid out first by
    :func:`_lay_out_once`, or in the draw by its own layout engine where that function does not
    apply; measured as :func:`_measured_once` says; text unhinted from :data:`UNHINTED_DPI` up,
    also in what the caller draws before the block ends).
    Yields the canvas, the tight box of what is drawn, and that box padded by
    ``savefig.pad_inches`` and snapped outward to whole pixels (inches). Restores the figure's
    layout engine, dpi, face colour and canvas afterwards."""
    engine, old_dpi, canvas, face = fig.get_layout_engine(), fig.dpi, fig.canvas, fig.get_facecolor()
    agg = FigureCanvasAgg(fig)
    try:
        with (_measured_once(fig) if MEASURE_ONCE else _spines_out_of_layout(fig),
              rc_context({"text.hinting": "no_hinting"} if dpi >= UNHINTED_DPI else {})):
            fig.set_dpi(dpi)
            fig.set_facecolor("white")
            renderer = agg.get_renderer()
            with _shaped_once(renderer) if MEASURE_ONCE else nullcontext():
                if MEASURE_ONCE and _lay_out_once(fig, renderer):
                    with rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
                        fig.set_layout_engine(None)  # laid out: the draw keeps the positions
                agg.draw()
                content = fig.get_tightbbox(agg.get_renderer())
                box = content.padded(rcParams["savefig.pad_inches"])
                yield agg, content, Bbox([np.floor(box.p0 * dpi) / dpi, np.ceil(box.p1 * dpi) / dpi])
    finally:
        fig.set_layout_engine(engine)
        fig.set_dpi(old_dpi)
        fig.set_facecolor(face)
        fig.set_canvas(canvas)
        if not MEASURE_ONCE:  # (_measured_once lets its texts go)
            for text in fig.findobj(Text):  # they keep the last renderer, its pixels with it, while the figure lives
                text._renderer = None


@contextmanager
def _measured_once(fig: Figure):
    """Settings of ``fig``, while it is laid out, drawn and measured, that change nothing drawn
    but spare matplotlib measuring the same things again and again; each restored afterwards.

    * Spines whose extent lies within their tick labels are out of the layout and the tight box
      (:func:`_spines_out_of_layout`).
    * An axis without minor ticks does not look for minor ticks that fall on major ones
      (``remove_overlapping_locs``), which asks its major locator for the ticks again.
    * An axes whose titles are all empty does not place them: matplotlib places a title above
      every tick label on top of the axes and of its secondary axes (measuring them all) at
      each layout pass, draw and tight box, though an empty title draws nothing and is left out
      of every extent.
    * Each axis updates its ticks (locations, labels and their places) and measures their labels
      once for each place and view of its axes (:func:`_once_per_view`): matplotlib does it at
      every measure of the axis, its label, its spines and the title above it, three or four
      times per pass for the same ticks.
    * Each text lays out its lines once for as long as its string, font and alignment stay
      the same (:func:`_laid_out_once`): matplotlib does it at each measure and draw of the
      text (a legend's texts several times per draw); and a text being drawn is not set to the
      string it has (:func:`_set_unless_same`).

    Afterwards the figure's texts and its ticks' labels let go of the renderer (they keep the
    last one, its pixels with it, while the figure lives). At 1M rows these spare about 0.3
    CPU-s of the twelve figures' 1.9 (docs/scale.md, session 49); the PNGs are the same bytes."""
    every = [a for ax in fig.axes for a in (ax, *ax.child_axes)]
    axes = [axis for ax in every for axis in (ax.xaxis, ax.yaxis)]
    no_minor = [axis for axis in axes if axis.remove_overlapping_locs and isinstance(axis.get_minor_locator(), NullLocator)]
    untitled = {ax: ax._autotitlepos for ax in every if getattr(ax, "_autotitlepos", False) is not False
                and not any(t.get_text() for t in (ax.title, ax._left_title, ax._right_title))}
    every_text = list(dict.fromkeys(fig.findobj(Text)))
    texts = [t for t in every_text if not t.get_wrap()]
    try:
        for axis in no_minor:
            axis.remove_overlapping_locs = False
        for ax in untitled:
            ax._autotitlepos = False
        for axis in axes:
            axis._update_ticks = _once_per_view(axis, axis._update_ticks)
            axis._get_ticklabel_bboxes = _once_per_view(axis, axis._get_ticklabel_bboxes)
        for text in texts:
            text._get_layout = _laid_out_once(text, text._get_layout)
            text._cm_set = _set_unless_same(text, text._cm_set)
        with _spines_out_of_layout(fig):
            yield
    finally:
        for axis in no_minor:
            axis.remove_overlapping_locs = True
        for ax, auto in untitled.items():
            ax._autotitlepos = auto
        for axis in axes:
            del axis._update_ticks, axis._get_ticklabel_bboxes  # the class's methods again
        for text in texts:
            del text._get_layout, text._cm_set
        labels = [label for axis in axes for name in ("majorTicks", "minorTicks") for tick in vars(axis).get(name, ())
                  for label in (tick.label1, tick.label2)]  # with those of ticks made while drawn
        for text in every_text + labels:
            text._renderer = None


@contextmanager
def _spines_out_of_layout(fig: Figure):
    """The spines :func:`_spines_within_labels` finds out of the layout and the tight box while
    ``fig`` is drawn (public API only; with any matplotlib)."""
    spines = _spines_within_labels(fig)
    try:
        for spine in spines:
            spine.set_in_layout(False)
        yield
    finally:
        for spine in spines:
            spine.set_in_layout(True)


def _once_per_view(axis, method):
    """``axis``'s ``method`` run again only when its arguments, its axes' place on the canvas or
    its view limits have changed since the last run (what the ticks and their labels' extents
    depend on while the figure is drawn: the locator's number of ticks follows the axis' length
    in pixels)."""
    last: list = [None, None]

    def once(*args):
        key = (axis.axes.bbox.bounds, tuple(axis.get_view_interval()), *args)
        if last[0] is None or key != last[0]:
            last[:] = [key, method(*args)]
        return last[1]
    return once


def _laid_out_once(text: Text, layout):
    """``text``'s ``layout`` (its extent and its lines' places about its anchor) computed again
    only when what it depends on has changed: the string, font, dpi, renderer, line spacing,
    rotation and alignments (not the text's place)."""
    last: list = [None, None]

    def once(renderer):
        key = (renderer, text.get_figure(root=True).dpi, text.get_text(), hash(text.get_fontproperties()),
               text.get_usetex(), text.get_parse_math(), text._linespacing, text.get_rotation(),
               text._get_multialignment(), text.get_horizontalalignment(), text.get_verticalalignment(),
               text.get_rotation_mode())
        if last[0] is None or key != last[0]:
            last[:] = [key, layout(renderer)]
        return last[1]
    return once


def _set_unless_same(text: Text, cm_set):
    """``text``'s ``cm_set`` (``Artist._cm_set``) that leaves the text as it is when asked only to
    set its string to the string it has: matplotlib 3.10's ``Text.draw`` sets the text's string to
    its string while drawing it (to the wrapped one, for a wrapped text), and back, each through
    ``Artist.set`` (its properties looked up, its change callbacks, marked stale)."""

    def cm(**kwargs):
        return nullcontext() if kwargs.keys() == {"text"} and kwargs["text"] == text.get_text() else cm_set(**kwargs)
    return cm


_SHAPED: dict = {}
"""Texts shaped by FreeType (:func:`_shaped_once`): (string, font files, size, dpi, hinting,
hinting and kerning factors, antialiasing) -> (width, height, descent, glyph bitmap, bitmap offset
x, y), in pixels; their bitmaps at most :data:`_SHAPED_BYTES` in all, the oldest let go first. A
forked process starts with its parent's."""
_SHAPED_BYTES = 16 << 20
_shaped_bytes = [0]  # the bitmaps' bytes held in _SHAPED


@contextmanager
def _shaped_once(renderer):
    """While the block runs, ``renderer`` (Agg) measures and draws each plain text from one
    shaping by FreeType, kept in :data:`_SHAPED` for every renderer of this process.

    matplotlib 3.10's Agg lays out a string's glyphs (``FT2Font.set_text``, about a third of a
    text's cost) once to measure it and again to draw it, and measures it again for each figure
    (its metrics are cached per renderer, a new one for each figure). Here a string is shaped once
    per font file(s), size, resolution, hinting and antialiasing: its extent (what
    ``get_text_width_height_descent`` gives) and its glyph bitmap with the bitmap's offset (what
    ``draw_text`` pastes, at the same rounded place, by the same ``draw_text_image``) kept
    together, so the same pixels are drawn (the same PNG bytes). Math and TeX text are left to
    matplotlib. The twelve figures of a 1M-row run, drawn in one process, took about 0.2 CPU-s
    (12%) less (docs/scale.md, session 50)."""
    measure, draw = renderer.get_text_width_height_descent, renderer.draw_text
    found: dict = {}  # a font's files, looked up once per block (the font settings held meanwhile)

    def shaped(s, prop, antialiased):
        size, flags = prop.get_size_in_points(), _agg.get_hinting_flag()
        face = (tuple(prop.get_family()), prop.get_slant(), prop.get_variant(), prop.get_weight(), prop.get_stretch(),
                size, prop.get_file(), prop.get_math_fontfamily())  # (what FontProperties hashes)
        files = found.get(face)
        if files is None:
            files = found[face] = tuple(_font_manager.fontManager._find_fonts_by_props(prop))
        key = (s, files, size, renderer.dpi, flags, rcParams["text.hinting_factor"], rcParams["text.kerning_factor"],
               bool(antialiased))
        hit = _SHAPED.get(key)
        if hit is None:
            font = renderer._prepare_font(prop)
            font.set_text(s, 0, flags=flags)
            font.draw_glyphs_to_bitmap(antialiased=antialiased)
            (w, h), (xo, yo) = font.get_width_height(), font.get_bitmap_offset()
            hit = (w / 64, h / 64, font.get_descent() / 64, np.array(font.get_image()), xo / 64, yo / 64)
            _shaped_bytes[0] += hit[3].nbytes
            while _SHAPED and _shaped_bytes[0] > _SHAPED_BYTES:  # the oldest let go
                _shaped_bytes[0] -= _SHAPED.pop(next(iter(_SHAPED)))[3].nbytes
            _SHAPED[key] = hit
        return hit

    def extent(s, prop, ismath):
        if ismath:
            return measure(s, prop, ismath)
        return shaped(s, prop, rcParams["text.antialiased"])[:3]

    def paste(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath:
            return draw(gc, x, y, s, prop, angle, ismath, mtext)
        _, _, descent, image, xo, yo = shaped(s, prop, gc.get_antialiased())
        a = math.radians(angle)
        renderer._renderer.draw_text_image(image, round(x + xo + descent * math.sin(a)),
                                           round(y + yo + descent * math.cos(a)) + 1, angle, gc)

    renderer.get_text_width_height_descent, renderer.draw_text = extent, paste
    try:
        yield
    finally:  # the class's methods again (these refer to the renderer: it is freed without a collection)
        del renderer.get_text_width_height_descent, renderer.draw_text


def _spines_within_labels(fig: Figure) -> list:
    """The spines of ``fig`` in its layout whose extent lies within the tick labels beside them:
    a spine's extent is its edge of the axes and, outward, its axis' tick marks, and a side whose
    marks are drawn with their labels has the labels beyond the marks. Leaving those spines out
    of the layout and the tight box changes neither (the same positions and PNG), and saves
    measuring them: each spine's extent updates every tick of its axis again (matplotlib's
    ``Spine.get_window_extent``), at each layout pass and for the tight box."""
    out = []
    for ax in fig.axes:
        params = {"x": ax.xaxis.get_tick_params(), "y": ax.yaxis.get_tick_params()}
        for side, spine in ax.spines.items():
            p = params["x" if side in ("top", "bottom") else "y"] if side in ("left", "right", "top", "bottom") else None
            if p is not None and spine.get_in_layout() and (not p.get(side, True) or p.get("label" + side, False)):
                out.append(spine)
    return out


def _lay_out_once(fig: Figure, renderer) -> bool:
    """Lay out ``fig`` as its constrained layout does, measuring the axes' decorations once;
    True when done, False (nothing changed) for a figure it does not cover.

    matplotlib's constrained layout measures each axes' decorations (tick labels, axis labels,
    titles: ``get_tightbbox(for_layout_only=True)``) at its present place, gives each axes
    margins that hold them, solves for positions, and then does all of it a second time, since
    decorations can change with the axes' size (another tick, a label's overhang). The
    measuring is most of a figure's layout, and the second pass rarely moves anything: here
    the layout is that first pass, for the figures pleval draws: axes each in one cell of one
    grid (``subplots``), no colorbars or subfigures, with a suptitle and figure legends placed
    outside the axes (``loc="outside ..."``) — the same pads, spaces and positions as matplotlib's
    first pass (the grid solved in closed form: equal margins added, the rest shared by the width
    and height ratios). The result is matplotlib's first pass exactly; where its second pass
    would move an axes, the axes stays there. For pleval's figures that is a pixel or two at
    most (a sensitivity contour's inline labels; tested on every kind; docs/scale.md, session
    49); a figure of the caller's own can differ more (e.g. 8.6 px at 100 dpi for a 2 × 1 grid
    with a figure legend outside on the right), always within the pads kept between decorations
    and at the figure's edges; what is drawn past the figure's edge is still caught by the tight
    box (:func:`_png_of`)."""
    engine = fig.get_layout_engine()
    if type(engine) is not ConstrainedLayoutEngine or getattr(engine, "_compress", True) or fig.subfigs:
        return False
    axes = [ax for ax in fig.axes if ax.get_in_layout()]
    specs = [ax.get_subplotspec() for ax in axes]
    if not axes or any(ss is None or len(ss.rowspan) != 1 or len(ss.colspan) != 1 for ss in specs):
        return False
    gs = specs[0].get_gridspec()
    if not isinstance(gs, GridSpec) or any(ss.get_gridspec() is not gs for ss in specs):
        return False
    if any(getattr(ax, "_colorbars", None) for ax in axes) or fig._supxlabel is not None or fig._supylabel is not None:
        return False
    params = engine.get()
    width, height = fig.get_size_inches()
    w_pad, h_pad = params["w_pad"] / width, params["h_pad"] / height
    wspace = (gs.wspace if gs.wspace is not None else params["wspace"]) / 2
    hspace = (gs.hspace if gs.hspace is not None else params["hspace"]) / 2
    nrows, ncols = gs.get_geometry()
    to_fig = fig.transFigure.inverted().transform_bbox
    # Each column's left and right margins, each row's top and bottom (rows top down): the
    # decorations' extent beyond the axes, and apart from them (matplotlib's "cb" margins) the
    # pad at the grid's edges and, between cells, half the space or the pad if that is larger.
    deco = {side: np.zeros(n) for side, n in (("left", ncols), ("right", ncols), ("top", nrows), ("bottom", nrows))}
    pads = {side: np.zeros_like(extent) for side, extent in deco.items()}
    between_w, between_h = max(wspace / ncols, w_pad), max(hspace / nrows, h_pad)
    for ax, ss in zip(axes, specs):
        r, c = ss.rowspan.start, ss.colspan.start
        pos = ax.get_position(original=True)
        tight = ax.get_tightbbox(renderer, for_layout_only=True)
        box = pos if tight is None else to_fig(tight)
        for side, i, extent, pad in (("left", c, pos.x0 - box.x0, between_w if c > 0 else w_pad),
                                     ("right", c, box.x1 - pos.x1, between_w if c < ncols - 1 else w_pad),
                                     ("top", r, box.y1 - pos.y1, between_h if r > 0 else h_pad),
                                     ("bottom", r, pos.y0 - box.y0, between_h if r < nrows - 1 else h_pad)):
            deco[side][i] = max(deco[side][i], extent)
            pads[side][i] = max(pads[side][i], pad)
    # The figure's own margins: its suptitle (placed a pad below the top) and outside legends.
    x0, y0, rw, rh = params["rect"]
    outer = {"left": 0.0, "right": 0.0, "top": 0.0, "bottom": 0.0}
    title = fig._suptitle
    if title is not None and title.get_in_layout() and getattr(title, "_autopos", False):
        title.set_position((title.get_position()[0], 1 - h_pad))
        outer["top"] = to_fig(title.get_tightbbox(renderer)).height + 2 * h_pad
    for legend in fig.legends:
        loc = getattr(legend, "_outside_loc", None)
        if loc and getattr(legend, "_bbox_to_anchor", None) is None:
            box = to_fig(legend.get_tightbbox(renderer))
            side = {"lower": "bottom", "upper": "top"}.get(loc, loc)
            outer[side] = max(outer[side], box.height + 2 * h_pad if side in ("top", "bottom") else box.width + 2 * w_pad)
    margins_x = deco["left"] + pads["left"], deco["right"] + pads["right"]
    margins_y = deco["top"] + pads["top"], deco["bottom"] + pads["bottom"]
    inner_w = rw - outer["left"] - outer["right"] - sum(margins_x[0]) - sum(margins_x[1])
    inner_h = rh - outer["top"] - outer["bottom"] - sum(margins_y[0]) - sum(margins_y[1])
    if inner_w <= 0 or inner_h <= 0:
        return False  # collapsed: matplotlib's layout warns and leaves the axes
    ratios_w, ratios_h = np.asarray(gs.get_width_ratios(), float), np.asarray(gs.get_height_ratios(), float)
    widths, heights = inner_w * ratios_w / ratios_w.sum(), inner_h * ratios_h / ratios_h.sum()
    lefts = x0 + outer["left"] + np.concatenate([[0], np.cumsum(margins_x[0] + widths + margins_x[1])[:-1]]) + margins_x[0]
    tops = y0 + rh - outer["top"] - np.concatenate([[0], np.cumsum(margins_y[0] + heights + margins_y[1])[:-1]]) - margins_y[0]
    for ax, ss in zip(axes, specs):
        r, c = ss.rowspan.start, ss.colspan.start
        ax._set_position(Bbox.from_extents(lefts[c], tops[r] - heights[r], lefts[c] + widths[c], tops[r]))
    return True


def _png_of(canvas: FigureCanvasAgg, content: Bbox, box: Bbox, dpi: float) -> bytes:
    """The PNG of ``box`` (inches, on the pixel grid) of the figure ``canvas`` has drawn: the
    drawn pixels inside the figure, white outside it. When what is drawn (``content``) reaches
    past the figure's edge (so the drawing clipped it), the box is drawn again by ``savefig``.
    The pixels are copied once, straight into the PNG's rows (RGB when every drawn pixel is
    opaque, as on a white face), one channel at a time: numpy copies a plane of every third
    (fourth) byte four times faster than pixels of three bytes."""
    px = np.rint(np.array(box.extents) * dpi).astype(int)
    rgba = np.asarray(canvas.buffer_rgba())
    h, w = rgba.shape[:2]
    if not (content.x0 >= 0 and content.y0 >= 0 and content.x1 * dpi <= w and content.y1 * dpi <= h):
        buf = io.BytesIO()
        canvas.figure.savefig(buf, format="png", dpi=dpi, bbox_inches=box, facecolor="white")
        return buf.getvalue()
    c0, c1 = max(px[0], 0), min(px[2], w)  # columns of the box inside the figure
    r0, r1 = max(h - px[3], 0), min(h - px[1], h)  # rows (top down)
    src = rgba[r0:r1, c0:c1]
    channels = 3 if not src.size or src[..., 3].min() == 255 else 4
    rows, pixels = _png_rows(px[3] - px[1], px[2] - px[0], channels)
    top, left = r0 - (h - px[3]), c0 - px[0]  # where the drawn pixels start in the box
    bottom, right = top + (r1 - r0), left + (c1 - c0)
    for part in (pixels[:top], pixels[bottom:], pixels[top:bottom, :left], pixels[top:bottom, right:]):
        part[...] = 255  # the padding beyond the figure's edge: white
    drawn = pixels[top:bottom, left:right]
    for c in range(channels):
        drawn[..., c] = src[..., c]
    return _png_bytes(rows, channels, dpi)


def _png_rows(height: int, width: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a PNG image before deflating (a filter-type byte, 0, then the pixels) and a
    (height, width, channels) view of their pixels to fill."""
    rows = np.empty((height, width * channels + 1), dtype=np.uint8)
    rows[:, 0] = 0
    return rows, rows[:, 1:].reshape(height, width, channels)


def _png_bytes(rows: np.ndarray, channels: int, dpi: float | None = None, level: int = 3) -> bytes:
    """PNG bytes of unfiltered ``rows`` (:func:`_png_rows`) of 8-bit RGB or RGBA pixels."""
    h, w = rows.shape[0], (rows.shape[1] - 1) // channels

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2 if channels == 3 else 6, 0, 0, 0))]
    if dpi:
        ppm = round(dpi / 0.0254)  # pixels per metre
        parts.append(chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)))
    parts += [chunk(b"tEXt", b"Software\0" + f"pleval, Matplotlib version {matplotlib.__version__}".encode()),
              chunk(b"IDAT", zlib.compress(rows, level)), chunk(b"IEND", b"")]
    return b"".join(parts)


def encode_png(pixels: np.ndarray, dpi: float | None = None, level: int = 3) -> bytes:
    """PNG bytes of an 8-bit RGB or RGBA image (rows top down), with its resolution (``pHYs``).

    Written directly (PNG specification, ISO/IEC 15948): every row unfiltered (filter type 0),
    the whole image deflated once at zlib ``level``. Figures are large flat areas with thin
    lines and text, where deflate alone does better than Pillow's per-row adaptive filters
    (about as small as Pillow's default output, in a quarter of the time); and an RGB PNG
    written so goes into a PDF as it is (:mod:`pleval.report.to_pdf`)."""
    h, w, c = pixels.shape
    rows, view = _png_rows(h, w, c)
    view[...] = pixels
    return _png_bytes(rows, c, dpi, level)


def _figure(width: float, height: float) -> PlevalFigure:
    return PlevalFigure(figsize=(width, height), layout="constrained", facecolor="white")


def _get(obj: Any, name: str, default=None):
    """``obj[name]`` for mappings / Series, ``obj.name`` for objects; ``default`` if absent."""
    if obj is None:
        return default
    if isinstance(obj, (Mapping, pd.Series)):
        value = obj.get(name, default)
    else:
        value = getattr(obj, name, default)
    if value is None:
        return default
    return value


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{what}: expected a DataFrame; got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(
            f"{what}: column(s) {', '.join(map(repr, missing))} not found; columns are {', '.join(map(str, df.columns))}"
        )
    if len(df) == 0:
        raise DataError(f"{what}: the table has no rows")


def _safe_pp(baseline: float):
    """(forward, inverse) maps effect size <-> percentile points, safe on any finite axis value.

    The formula of :func:`pleval.percentiles.to_percentile_points` (and its inverse) with
    ``scipy.special.ndtr``/``ndtri`` directly: matplotlib calls these many times per drawing,
    and the ``scipy.stats.norm`` front end costs more than the arithmetic."""
    z0 = special.ndtri(baseline / 100.0)

    def forward(g):
        g = np.clip(np.nan_to_num(np.asarray(g, dtype=float), nan=0.0, posinf=8.0, neginf=-8.0), -8.0, 8.0)
        return 100.0 * special.ndtr(z0 + g) - baseline

    def inverse(d):
        d = np.clip(np.nan_to_num(np.asarray(d, dtype=float), nan=0.0), -baseline + 1e-9, 100.0 - baseline - 1e-9)
        return special.ndtri((baseline + d) / 100.0) - z0

    return forward, inverse


def _percentile_axis(ax, baseline: float, where: str = "top"):
    fwd, inv = _safe_pp(baseline)
    sec = ax.secondary_xaxis(where, functions=(fwd, inv))
    sec.set_xlabel(
        f"percentile points (from the {percentiles._ordinal(baseline, exact=True)} percentile; shift in rank, not in score)",
        fontsize=_BASE_FONT,
    )
    sec.tick_params(labelsize=_BASE_FONT - 1)
    return sec


def _es_label(sd: float | None, sd_kind: str | None = None) -> str:
    label = "effect size (SD units)"
    if sd is not None and np.isfinite(sd):
        label += f"; 1 SD = {sd:.3g} points" + (f" ({sd_kind})" if sd_kind else "")
    return label


def _no_ylabel(ax) -> None:
    """Fix the place of an axes' (empty) y label: matplotlib otherwise places it beside the
    tick labels of the axes and its twins, measuring every one of them at each draw (a love
    plot's covariate labels several times per figure), and an empty label's point beside them
    would count in the layout."""
    ax.yaxis.set_label_coords(0.0, 0.5)


_TITLE_ON_TOP = {"y": 1.0}
"""``set_title`` keyword for axes with nothing above them (no top axis or tick labels): the title
sits on the axes' top edge, where matplotlib would place it, without matplotlib measuring every
tick label of the axes (and its twins) at each layout pass and draw to find that out."""


def _pad(lo: float, hi: float, frac: float = 0.06) -> tuple[float, float]:
    span = hi - lo if hi > lo else max(abs(hi), 0.1)
    return lo - frac * span, hi + frac * span


# --------------------------------------------------------------------------------------
# Forest / caterpillar plot of school effects
# --------------------------------------------------------------------------------------
def forest(
    schools: pd.DataFrame,
    *,
    pooled: Mapping | Any | None = None,
    placebo: Sequence[float] | np.ndarray | None = None,
    baseline_percentile: float = 50.0,
    sd: float | None = None,
    sd_kind: str | None = None,
    level: float = 0.95,
    alpha: float = 0.05,
    sort: bool = True,
    title: str | None = None,
    unit: str = "school",
    max_rows: int | None = None,
) -> Figure:
    """Caterpillar plot of school effects, raw and shrunken, with the pooled effect.

    Parameters
    ----------
    schools : DataFrame
        One row per school, effect-size (SD) units. Columns: ``school`` (label), ``estimate``,
        ``se``; optional ``ci_low``/``ci_high`` (default ``estimate ± z·se``); optional
        ``shrunk``, ``shrunk_ci_low``, ``shrunk_ci_high`` (empirical-Bayes estimates, drawn
        beside the raw ones); optional ``pvalue_calibrated_adj`` (placebo-calibrated and
        multiplicity-adjusted, preferred), ``pvalue_adj`` (multiplicity-adjusted) or ``pvalue``
        for the colouring: blue = significantly positive, red = significantly negative, grey =
        neither, at ``alpha``; the legend names which.
    pooled : mapping or object, optional
        ``estimate``, ``ci_low``, ``ci_high`` of the pooled effect (drawn as a diamond) and
        optionally ``pi_low``/``pi_high`` (the prediction interval for a new school, drawn as
        a shaded band behind the schools), ``method`` and ``tau``. A
        :class:`pleval.heterogeneity.MetaAnalysis` works as it is.
    placebo : array, optional
        Estimates for comparison schools analysed as if they were PL schools (same units).
        Drawn as their own row of points with their central ``level`` range, and that range
        as dashed lines across the plot: the spread expected from school-to-school variation
        without any program.
    baseline_percentile : float
        Baseline of the percentile-point axis on top.
    sd, sd_kind : optional
        The standardizing SD (raw points per SD unit) and its description, for the axis label.

    unit : str
        What a row is, for the legend and subtitle (``"subgroup"`` for subgroup forest plots).
    max_rows : int, optional
        With more schools than this (and ``sort``), only the ``max_rows // 2`` highest and the
        ``max_rows - max_rows // 2`` lowest estimates get a row each; the schools between them
        are one summary row (the range of their estimates, a tick at their median, how many
        are significantly positive or negative), so the figure stays legible and its size
        bounded with thousands of schools (every school is in the school table).

    The figure height grows with the number of rows (``ROW_INCH`` per row), so every
    label stays readable with 60 or more schools. The row labels are texts of the axes
    (``ax.texts``, right-aligned), drawn as y tick labels would be; the axes has no y ticks.
    """
    _require(schools, ["school", "estimate", "se"], "forest plot")
    d = schools.copy()
    z = stats.norm.ppf(0.5 + level / 2.0)
    if "ci_low" not in d or "ci_high" not in d:
        d["ci_low"] = d["estimate"] - z * d["se"]
        d["ci_high"] = d["estimate"] + z * d["se"]
    if sort:
        d = d.sort_values("estimate", kind="stable")
    d = d.reset_index(drop=True)
    k_all = len(d)
    pcol = next((c for c in ("pvalue_calibrated_adj", "pvalue_adj", "pvalue") if c in d.columns), None)
    middle = None
    if max_rows is not None and sort and k_all > max_rows >= 2:
        n_low = max_rows - max_rows // 2
        middle = d.iloc[n_low : k_all - max_rows // 2]
        d = pd.concat([d.iloc[:n_low], d.iloc[k_all - max_rows // 2 :]], ignore_index=True)
    k = len(d)
    has_shrunk = "shrunk" in d.columns and d["shrunk"].notna().any()
    placebo = None if placebo is None else np.asarray(placebo, dtype=float)
    placebo = placebo[np.isfinite(placebo)] if placebo is not None else None
    if placebo is not None and placebo.size == 0:
        placebo = None

    # Rows: schools at y = 0..k-1 (largest on top); below them a gap, placebo row, pooled row.
    first = 2.6 if placebo is not None else 1.5
    y = np.arange(k, dtype=float) + first
    if middle is not None:  # one row between the lowest and the highest for the schools between
        y_middle = first + n_low
        y[n_low:] += 1.0
    y_placebo = 1.25 if placebo is not None else None
    y_pooled = 0.0
    y_sep = first - 0.6
    n_rows = k + 2 + (1 if placebo is not None else 0) + (1 if middle is not None else 0)
    fig = _figure(10.0, 2.5 + ROW_INCH * n_rows)
    ax = fig.add_subplot()
    fs = _BASE_FONT if k <= 40 else _BASE_FONT - 1

    # Prediction-interval band and pooled line behind everything.
    mu = _get(pooled, "estimate")
    pi_lo, pi_hi = _get(pooled, "pi_low"), _get(pooled, "pi_high")
    handles = []
    if pi_lo is not None and np.isfinite(pi_lo) and np.isfinite(pi_hi):
        ax.axvspan(pi_lo, pi_hi, ymin=0, ymax=1, color=BAND, alpha=0.25, lw=0, zorder=0)
        handles.append(Patch(color=BAND, alpha=0.4, label=f"{level:.0%} prediction interval for a new school"))
    ax.axvline(0.0, color="#444444", lw=0.9, zorder=1)
    if mu is not None:
        ax.axvline(mu, color=POOLED, lw=0.9, ls=":", zorder=1)

    # Significance colours.
    colours = np.full(k, NEUTRAL, dtype=object)
    if pcol is not None:
        sig = d[pcol].to_numpy(dtype=float) < alpha
        colours[sig & (d["estimate"].to_numpy() > 0)] = POSITIVE
        colours[sig & (d["estimate"].to_numpy() < 0)] = NEGATIVE
    off = 0.17 if has_shrunk else 0.0
    yr = y + off
    ax.hlines(yr, d["ci_low"], d["ci_high"], colors=list(colours), lw=1.3, zorder=2)
    ax.scatter(d["estimate"], yr, marker="s", s=18, facecolors="white", edgecolors=list(colours), lw=1.2, zorder=3)
    if has_shrunk:
        ys = y - off
        if "shrunk_ci_low" in d and "shrunk_ci_high" in d:
            ax.hlines(ys, d["shrunk_ci_low"], d["shrunk_ci_high"], colors=SHRUNK, lw=0.8, zorder=2)
        ax.scatter(d["shrunk"], ys, marker="o", s=12, color=SHRUNK, zorder=3)

    # The schools between the highest and the lowest: their range, a tick at their median.
    if middle is not None:
        mid_est = middle["estimate"].to_numpy(dtype=float)
        mid_est = mid_est[np.isfinite(mid_est)]
        ax.hlines(y_middle, mid_est.min(), mid_est.max(), colors=NEUTRAL, lw=5, alpha=0.35, zorder=2)
        ax.plot([np.median(mid_est)] * 2, [y_middle - 0.3, y_middle + 0.3], color=NEUTRAL, lw=1.5, zorder=3)

    # Placebo row and its central range across the plot.
    xs_extra = []
    if placebo is not None:
        q = np.quantile(placebo, [(1 - level) / 2, (1 + level) / 2])
        jitter = np.random.default_rng(0).uniform(-0.28, 0.28, placebo.size)
        ax.scatter(placebo, y_placebo + jitter, s=8, color=PLACEBO, alpha=0.6, lw=0, zorder=3)
        ax.hlines(y_placebo, q[0], q[1], colors=PLACEBO, lw=2.2, zorder=2)
        for v in q:
            ax.axvline(v, color=PLACEBO, lw=0.8, ls="--", zorder=1)
        handles.append(
            Line2D([], [], color=PLACEBO, ls="--", lw=0.9, label=f"central {level:.0%} of placebo-school estimates")
        )
        xs_extra += [placebo.min(), placebo.max()]

    # Pooled diamond.
    if mu is not None:
        lo, hi = _get(pooled, "ci_low", mu), _get(pooled, "ci_high", mu)
        diamond = Polygon([[lo, y_pooled], [mu, y_pooled + 0.4], [hi, y_pooled], [mu, y_pooled - 0.4]], closed=True,
                          color=POOLED, zorder=4)
        ax.add_patch(diamond)
        xs_extra += [lo, hi]
        if pi_lo is not None and np.isfinite(pi_lo):
            xs_extra += [pi_lo, pi_hi]

    # Axis limits, labels, legend.
    xs = np.concatenate([d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float), np.asarray(xs_extra, float), [0.0]])
    if has_shrunk and "shrunk_ci_low" in d:
        xs = np.concatenate([xs, d["shrunk_ci_low"].to_numpy(float), d["shrunk_ci_high"].to_numpy(float)])
    xs = xs[np.isfinite(xs)]
    ax.set_xlim(*_pad(xs.min(), xs.max()))
    ax.set_ylim(-0.8, y[-1] + 0.8 if k else 1.0)
    ticks = list(y)
    labels = [str(s) for s in d["school"]]
    numbers = _forest_numbers(d, placebo, pooled, level, mu)
    if middle is not None:
        ticks.insert(n_low, y_middle)
        labels.insert(n_low, _middle_label(middle, pcol, alpha, unit))
        numbers.insert(n_low, unsigned_zeros(f"{np.median(mid_est):+.2f} (range {mid_est.min():+.2f}, "
                                             f"{mid_est.max():+.2f})"))
    if placebo is not None:
        ticks.append(y_placebo)
        labels.append(f"placebo schools (n = {placebo.size})")
    if mu is not None:
        method = _get(pooled, "method", "")
        ticks.append(y_pooled)
        labels.append(f"pooled{f' ({method})' if method else ''}")
    tick_labels = _row_labels(ax, ticks, labels, fs)
    _no_ylabel(ax)
    for lab in tick_labels[k + (middle is not None):]:
        lab.set_fontweight("bold")
    if middle is not None:
        tick_labels[n_low].set_fontstyle("italic")
    ax.axhline(y_sep, color="#BBBBBB", lw=0.6)
    ax.set_xlabel(_es_label(sd, sd_kind), fontsize=_BASE_FONT)
    ax.tick_params(axis="x", labelsize=_BASE_FONT - 1)
    ax.grid(axis="x", color="#EEEEEE", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("right",):
        ax.spines[side].set_visible(False)
    _percentile_axis(ax, baseline_percentile)

    sig_word = {"pvalue_calibrated_adj": "placebo-calibrated adjusted p", "pvalue_adj": "adjusted p"}.get(pcol, "p")
    handles = [
        Line2D([], [], marker="s", mfc="white", mec=NEUTRAL, color=NEUTRAL, label=f"{unit} estimate, {level:.0%} CI"),
    ] + ([Line2D([], [], marker="o", color=SHRUNK, ms=4, label="shrunken (empirical Bayes)")] if has_shrunk else []) + (
        [
            Patch(color=POSITIVE, label=f"significantly positive ({sig_word} < {alpha:g})"),
            Patch(color=NEGATIVE, label=f"significantly negative ({sig_word} < {alpha:g})"),
        ]
        if pcol
        else []
    ) + ([
        Line2D([], [], color=POOLED, ls=":", lw=0.9, marker="D", ms=5,
               label=f"pooled effect (dotted line) and its {level:.0%} CI (diamond)"),
    ] if mu is not None else []) + handles
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=_BASE_FONT - 1, frameon=False)
    _number_column(ax, ticks, numbers, f"effect size [{level:.0%} CI]", fs)

    tau = _get(pooled, "tau")
    sub = f"{k_all:,} {unit}s" + (f" (the {k - n_low} highest and {n_low} lowest shown)" if middle is not None else "")
    sub += f"; τ (SD of true school effects) = {tau:.3f}" if tau is not None else ""
    # The title is the figure's, not the axes': an axes title is placed above every tick label
    # of the axes and its twins, all measured again at each draw.
    fig.suptitle((title or "Effect of personalized learning by school") + f"\n{sub}", fontsize=_BASE_FONT + 2,
                 x=0.01, ha="left")
    return fig


def _forest_numbers(d: pd.DataFrame, placebo, pooled, level: float, mu) -> list[str]:
    """The right-hand column of the forest plot, row by row as the y ticks: estimate [CI]."""
    def cell(e, lo, hi):
        return unsigned_zeros(f"{e:+.2f} [{lo:+.2f}, {hi:+.2f}]") if np.isfinite([e, lo, hi]).all() else ""

    out = [cell(e, lo, hi) for e, lo, hi in zip(d["estimate"], d["ci_low"], d["ci_high"])]
    if placebo is not None:
        q = np.quantile(placebo, [(1 - level) / 2, (1 + level) / 2])
        out.append(unsigned_zeros(f"      [{q[0]:+.2f}, {q[1]:+.2f}]"))
    if mu is not None:
        out.append(cell(mu, _get(pooled, "ci_low", np.nan), _get(pooled, "ci_high", np.nan)))
    return out


def _middle_label(middle: pd.DataFrame, pcol: str | None, alpha: float, unit: str) -> str:
    """Label of the summary row: how many schools it stands for and how many are significant."""
    text = f"{len(middle):,} {unit}s between"
    if pcol is not None:
        sig = middle[pcol].to_numpy(dtype=float) < alpha
        est = middle["estimate"].to_numpy(dtype=float)
        text += f" ({int((sig & (est > 0)).sum()):,} sig. +, {int((sig & (est < 0)).sum()):,} sig. −)"
    return text


_TICK_MARKERS = {"out": TICKLEFT, "in": TICKRIGHT, "inout": "_"}


def _row_labels(ax, rows, labels: list[str], fontsize: float) -> list[Text]:
    """The rows' labels left of the plot, each with its tick mark, drawn as y tick labels at
    ``rows`` would be (the same pixels, under the session's ``ytick.*`` settings) but as texts
    and one line of markers, without matplotlib's ticks: a tick is five artists, each updated
    and measured again at each pass of the constrained layout, at the draw and for the tight
    box (the forest plot's 60-odd rows). Returns the texts, bottom row first. The axes is left
    without y ticks (``ax.get_yticklabels()`` is empty); the texts are in ``ax.texts``,
    right-aligned."""
    ax.set_yticks([])
    size, direction = rcParams["ytick.major.size"], rcParams["ytick.direction"]
    color = rcParams["ytick.color"]
    label_color = color if rcParams["ytick.labelcolor"] == "inherit" else rcParams["ytick.labelcolor"]
    if rcParams["ytick.left"]:
        ax.plot(np.zeros(len(rows)), rows, transform=ax.get_yaxis_transform("tick1"), ls="none",
                marker=_TICK_MARKERS[direction], ms=size, mew=rcParams["ytick.major.width"], color=color,
                mec=color, clip_on=False)
    pad = rcParams["ytick.major.pad"] + {"out": size, "in": 0.0, "inout": size / 2}[direction]
    place, va, ha = ax.get_yaxis_text1_transform(pad)
    return [ax.text(0, y, text, transform=place, va=va, ha=ha, fontsize=fontsize, color=label_color, clip_on=False)
            for y, text in zip(rows, labels)]


_NUMBER_PAD = 4.0
"""Points between the plot's right edge and the number column of a forest plot."""


def _number_column(ax, ticks, labels: list[str], header: str, fontsize: float) -> None:
    """Numbers as a column right of the plot (as metafor's ``forest()``): ``labels`` at
    ``ticks``, with ``header`` (bold) above the first row. Each is a text placed as the tick
    labels of a right-hand twin y axis without tick marks would be (x at the axes' right edge
    plus :data:`_NUMBER_PAD` points, y in data units; left-aligned, vertically centred on the
    baseline): the same pixels, without a twin axes and its ticks to create, lay out and
    draw (each tick five artists)."""
    lo, hi = ax.get_ylim()
    top = hi + 0.6
    ax.set_ylim(lo, top + 0.5)
    place = ax.get_yaxis_transform(which="tick2") + ScaledTranslation(
        _NUMBER_PAD / 72, 0, ax.get_figure(root=False).dpi_scale_trans)
    for y, text, bold in zip([*ticks, top], [*labels, header], [False] * len(labels) + [True]):
        ax.text(1, y, text, transform=place, ha="left", va="center_baseline", fontsize=fontsize - 0.5,
                family="DejaVu Sans Mono", fontweight="bold" if bold else None, clip_on=False)


# --------------------------------------------------------------------------------------
# Love plot
# --------------------------------------------------------------------------------------
def love_plot(
    balance: pd.DataFrame,
    *,
    absolute: bool = True,
    thresholds: tuple[float, float] = (0.05, 0.25),
    reference: float | None = 0.1,
    labels: tuple[str, str] = ("before matching", "after matching"),
    title: str | None = None,
) -> Figure:
    """Standardized mean differences of each covariate before and after matching.

    Parameters
    ----------
    balance : DataFrame
        Columns ``variable``, ``smd_before`` and optionally ``smd_after`` (standardized
        differences, treated − comparison, in SD units).
    absolute : bool
        Plot |SMD| (default) or the signed SMD.
    thresholds : (float, float)
        WWC baseline-equivalence bands (Standards Handbook v4.1, II.D): |SMD| ≤ 0.05 is
        equivalent; 0.05–0.25 needs statistical adjustment; above 0.25 is not equivalent.
    reference : float, optional
        A dotted line at the common balance rule of thumb |SMD| < 0.1 (Austin 2009; Stuart
        2010), drawn beside the WWC bands; ``None`` leaves it out.
    labels : (str, str)
        Legend labels of the two columns (e.g. ``("randomized groups", "")`` for a trial's
        baseline table).
    """
    _require(balance, ["variable", "smd_before"], "love plot")
    d = balance.copy()
    has_after = "smd_after" in d.columns and d["smd_after"].notna().any()
    f = np.abs if absolute else (lambda v: v)
    d["_b"] = f(d["smd_before"].astype(float))
    d["_a"] = f(d["smd_after"].astype(float)) if has_after else np.nan
    d = d.sort_values("_b", key=lambda s: np.abs(s), kind="stable").reset_index(drop=True)
    k = len(d)
    fig = _figure(7.0, 1.9 + ROW_INCH * k)
    ax = fig.add_subplot()
    y = np.arange(k)
    lo_t, hi_t = thresholds
    vals = np.concatenate([d["_b"].to_numpy(float), d["_a"].to_numpy(float), [hi_t * 1.2, 0.0]])
    vals = vals[np.isfinite(vals)]
    xmax = max(vals.max(), hi_t * 1.2) * 1.08
    xmin = 0.0 if absolute else min(vals.min() * 1.08, -hi_t * 1.2)
    # Zones: equivalent / needs adjustment / not equivalent.
    signs = (1,) if absolute else (1, -1)
    for s in signs:
        ax.axvspan(0, s * lo_t, color="#44AA99", alpha=0.12, lw=0)
        ax.axvspan(s * lo_t, s * hi_t, color="#DDCC77", alpha=0.15, lw=0)
        ax.axvspan(s * hi_t, s * 10, color="#CC6677", alpha=0.10, lw=0)
        for t, ls in ((lo_t, "--"), (hi_t, "-")):
            ax.axvline(s * t, color="#555555", lw=0.9, ls=ls)
        if reference is not None:
            ax.axvline(s * reference, color="#332288", lw=1.0, ls=":")
    if not absolute:
        ax.axvline(0, color="#444444", lw=0.8)
    if has_after:
        ax.hlines(y, d["_b"], d["_a"], colors="#BBBBBB", lw=0.9)
    ax.scatter(d["_b"], y, marker="o", s=28, facecolors="white", edgecolors=BEFORE, lw=1.3, zorder=3, label=labels[0])
    if has_after:
        ax.scatter(d["_a"], y, marker="o", s=28, color=AFTER, zorder=4, label=labels[1])
    ax.set_yticks(y, [str(v) for v in d["variable"]], fontsize=_BASE_FONT if k <= 40 else _BASE_FONT - 1)
    _no_ylabel(ax)
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_xlim(xmin, xmax)
    ax.set_xlabel(("|standardized mean difference|" if absolute else "standardized mean difference") + " (SD units)",
                  fontsize=_BASE_FONT)
    ax.tick_params(axis="x", labelsize=_BASE_FONT - 1)
    zone = [
        Patch(color="#44AA99", alpha=0.35, label=f"≤ {lo_t:g}: equivalent (WWC)"),
        Patch(color="#DDCC77", alpha=0.45, label=f"{lo_t:g}–{hi_t:g}: needs statistical adjustment"),
        Patch(color="#CC6677", alpha=0.3, label=f"> {hi_t:g}: not equivalent"),
    ] + ([Line2D([], [], color="#332288", lw=1.0, ls=":",
                 label=f"{reference:g}: common balance rule of thumb (Austin 2009)")] if reference is not None else [])
    h, _ = ax.get_legend_handles_labels()
    fig.legend(handles=h + zone, loc="outside lower center", ncol=2, fontsize=_BASE_FONT - 1, frameon=False)
    n_bad = int((np.abs(d["_a" if has_after else "_b"]) > hi_t).sum())
    which = labels[1] if has_after else "at baseline"
    ax.set_title(
        (title or "Covariate balance") + f"\n{k} covariates; {n_bad} with |SMD| > {hi_t:g} {which}",
        fontsize=_BASE_FONT + 2,
        loc="left",
        **_TITLE_ON_TOP,
    )
    return fig


# --------------------------------------------------------------------------------------
# Propensity-score overlap
# --------------------------------------------------------------------------------------
def propensity_overlap(
    score,
    treated,
    *,
    weights=None,
    logit: bool = False,
    bins: int = 40,
    title: str | None = None,
) -> Figure:
    """Mirrored histograms of the propensity score, treated above and comparison below.

    Parameters
    ----------
    score : array-like
        Propensity scores (probabilities in (0, 1)).
    treated : array-like of 0/1
        Treatment indicator, same length.
    weights : array-like, optional
        Matching / analysis weights (e.g. ``_weight`` of a matched sample; 0 for unmatched
        units). When given, a second panel shows the weighted (matched) distributions.
    logit : bool
        Draw the logit of the score (spreads out scores near 0 or 1).

    Each group's histogram is a density (areas sum to one), so a small treated group and a
    large comparison pool are comparable; the group sizes are in the legend. Both panels share
    one y scale. The shaded range is the treated units' score range (the region of common
    support that matters for the effect on the treated), explained in the legend.
    """
    s = np.asarray(score, dtype=float)
    t = np.asarray(treated)
    if s.shape != t.shape:
        raise DataError(f"propensity overlap: score ({s.size}) and treated ({t.size}) differ in length")
    ok = np.isfinite(s)
    if t.dtype.kind not in "biu":  # an integer or boolean indicator is always finite
        t = t.astype(float)
        ok &= np.isfinite(t)
    if logit:
        with np.errstate(divide="ignore"):
            s = np.log(s / (1 - s))
        ok &= np.isfinite(s)
    t = t.astype(bool)
    groups = (ok & t, ok & ~t)
    if not groups[0].any() or not groups[1].any():
        raise DataError("propensity overlap: need finite scores for both treated and comparison units")
    w = None if weights is None else np.asarray(weights, dtype=float)
    panels = [("before matching", None)] + ([("after matching (weighted)", w > 0)] if w is not None else [])
    fig = _figure(7.5 if len(panels) == 1 else 11.0, 4.2)
    axes = fig.subplots(1, len(panels), sharey=False, squeeze=False)[0]
    edges = np.linspace(np.min(s, where=ok, initial=np.inf), np.max(s, where=ok, initial=-np.inf), bins + 1)
    lo, hi = np.min(s, where=groups[0], initial=np.inf), np.max(s, where=groups[0], initial=-np.inf)
    # Equal-width bins between the finite scores' extremes: numpy counts them in one pass
    # (np.bincount of each score's bin), where bin edges given as an array sort the scores;
    # each score falls in the same bin [e_i, e_i+1) either way (numpy corrects the computed bin
    # against the edges, np.linspace's), the last bin closed. Degenerate edges (one score
    # value) keep the array's path.
    spread = (bins, (edges[0], edges[-1])) if edges[-1] > edges[0] else (edges, None)
    for ax, (name, positive) in zip(axes, panels):
        for grp, sign, colour, lab in zip(groups, (1, -1), (POSITIVE, NEUTRAL), ("treated (PL)", "comparison")):
            m = grp if positive is None else grp & positive
            n = int(np.count_nonzero(m))
            h = np.histogram(s[m], bins=spread[0], range=spread[1], weights=None if positive is None else w[m],
                             density=True)[0] if n else np.zeros(bins)
            ax.stairs(sign * h, edges, baseline=0, fill=True, color=colour, alpha=0.75, lw=0,
                      label=f"{lab}: n = {n:,}")  # one filled outline, not a patch per bin
        ax.axvspan(lo, hi, color="#DDCC77", alpha=0.15, lw=0, zorder=0)
        ax.axhline(0, color="#444444", lw=0.8)
        ax.set_title(name, fontsize=_BASE_FONT + 1, loc="left", **_TITLE_ON_TOP)
        ax.set_xlabel(("logit of " if logit else "") + "propensity score", fontsize=_BASE_FONT)
        ax.set_ylabel("density (treated up, comparison down)", fontsize=_BASE_FONT)
        ax.tick_params(labelsize=_BASE_FONT - 1)
        ax.yaxis.set_major_formatter(lambda v, _: f"{abs(v):g}")
    top = max(np.abs(ax.get_ylim()).max() for ax in axes)  # one y scale for every panel
    for ax in axes:
        ax.set_ylim(-top, top)
    band = Patch(color="#DDCC77", alpha=0.35, label="shaded: range of PL scores (where comparisons are needed)")
    for ax in axes:
        h, _ = ax.get_legend_handles_labels()
        ax.legend(handles=[*h, band], fontsize=_BASE_FONT - 1, frameon=False, loc="upper right")
    fig.suptitle(title or "Propensity-score overlap", fontsize=_BASE_FONT + 2, x=0.01, ha="left")
    return fig


# --------------------------------------------------------------------------------------
# Percentile-conversion chart
# --------------------------------------------------------------------------------------
def percentile_chart(
    effect_size: float | None = None,
    ci: tuple[float, float] | None = None,
    *,
    baseline_percentile: float = 50.0,
    baselines: Sequence[float] = (10, 25, 50, 75, 90),
    xlim: tuple[float, float] | None = None,
    label: str | None = None,
    title: str | None = None,
    level: float = 0.95,
) -> Figure:
    """How an effect size converts to percentile points, with the estimate marked.

    Curves ``Δ(g; p) = 100·Φ(Φ⁻¹(p/100) + g) − p`` for each baseline percentile in
    ``baselines``; the curve for ``baseline_percentile`` is emphasized and the estimate
    ``effect_size`` (with its confidence interval ``ci``, of level ``level``) is marked on it and spelled out
    ("from the 50th to the 53rd percentile"). At p = 50 the curve is the WWC improvement
    index. The same g moves a student at the 10th or 90th percentile fewer points than one
    at the median, because fewer students are packed into the tails.
    """
    p0 = float(baseline_percentile)
    pts = sorted(set(float(b) for b in baselines) | {p0})
    if xlim is None:
        ext = [abs(v) for v in ([effect_size] if effect_size is not None else []) + list(ci or []) if np.isfinite(v)]
        m = max([0.5] + [1.25 * v for v in ext])
        xlim = (-m, m)
    g = np.linspace(xlim[0], xlim[1], 401)
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    styles = iter(["--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 3)), (0, (8, 3))] * 4)
    for p in pts:
        main = np.isclose(p, p0)
        ax.plot(g, percentiles.to_percentile_points(g, p), color=POOLED if main else "#888888", lw=2.2 if main else 1.1,
                ls="-" if main else next(styles), zorder=3 if main else 2,
                label=f"from the {percentiles._ordinal(p, exact=True)} percentile" + (" (baseline)" if main else ""))
    ax.axhline(0, color="#444444", lw=0.8)
    ax.axvline(0, color="#444444", lw=0.8)
    if effect_size is not None and np.isfinite(effect_size):
        pp = percentiles.to_percentile_points(effect_size, p0)
        if ci is not None:
            lo, hi = ci
            plo, phi = percentiles.percentile_interval(lo, hi, p0)
            ax.plot([lo, hi], [plo, phi], color=NEGATIVE, lw=4, alpha=0.45, solid_capstyle="butt", zorder=4,
                    label=f"{level:.0%} confidence interval")
            ax.axvspan(lo, hi, color=NEGATIVE, alpha=0.06, lw=0)
        ax.plot([effect_size, effect_size, xlim[0]], [ax.get_ylim()[0], pp, pp], color=NEGATIVE, lw=0.9, ls=":", zorder=4)
        ax.scatter([effect_size], [pp], s=60, color=NEGATIVE, zorder=5, label=label or "estimate")
        text = (
            f"g = {effect_size:+.3f} SD → {pp:+.1f} percentile points:\n"
            f"a student at the {percentiles._ordinal(p0, exact=True)} percentile would score at about the "
            f"{percentiles._ordinal(p0 + pp)}"
        )
        ax.annotate(text, xy=(effect_size, pp), xytext=(0.02, 0.97), textcoords="axes fraction", va="top", ha="left",
                    fontsize=_BASE_FONT, bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="#CCCCCC"))
    ax.set_xlim(*xlim)
    ax.set_xlabel("effect size (SD units)", fontsize=_BASE_FONT)
    ax.set_ylabel("percentile points (shift in rank)", fontsize=_BASE_FONT)
    ax.tick_params(labelsize=_BASE_FONT - 1)
    ax.grid(color="#EEEEEE", lw=0.6)
    ax.legend(fontsize=_BASE_FONT - 1, frameon=False, loc="lower right")
    ax.set_title(
        (title or "From effect size to percentile points")
        + "\nPercentile points are shifts in rank, not percentage points of the score",
        fontsize=_BASE_FONT + 2,
        loc="left",
        **_TITLE_ON_TOP,
    )
    return fig


# --------------------------------------------------------------------------------------
# Distribution of school effects
# --------------------------------------------------------------------------------------
def effect_distribution(
    estimates,
    *,
    shrunk=None,
    mu: float | None = None,
    tau: float | None = None,
    placebo=None,
    baseline_percentile: float = 50.0,
    bins: int | None = None,
    title: str | None = None,
) -> Figure:
    """Histogram of school effects with the estimated distribution of true effects.

    Parameters
    ----------
    estimates : array-like
        Raw school estimates (effect-size units).
    shrunk : array-like, optional
        Empirical-Bayes estimates, drawn as an outlined histogram (narrower than the raw
        ones: the raw spread includes sampling noise).
    mu, tau : float, optional
        Pooled mean and between-school SD of the random-effects model; the curve
        ``N(μ, τ²)`` is the estimated distribution of *true* school effects.
    placebo : array-like, optional
        Placebo-school estimates (comparison schools analysed as if PL): the spread expected
        without any program effect, drawn as a grey outline.
    """
    y = np.asarray(estimates, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        raise DataError("effect distribution: no finite school estimates")
    series = [y]
    sh = None if shrunk is None else np.asarray(shrunk, dtype=float)
    pl = None if placebo is None else np.asarray(placebo, dtype=float)
    for a in (sh, pl):
        if a is not None:
            series.append(a[np.isfinite(a)])
    allv = np.concatenate(series + [[0.0]])
    lo, hi = _pad(allv.min(), allv.max(), 0.08)
    if mu is not None and tau is not None and tau > 0:
        lo, hi = min(lo, mu - 3 * tau), max(hi, mu + 3 * tau)
    nb = bins or int(np.clip(np.sqrt(y.size) * 2, 10, 40))
    edges = np.linspace(lo, hi, nb + 1)
    fig = _figure(7.5, 5.2)
    ax = fig.add_subplot()
    ax.hist(y, bins=edges, density=True, histtype="stepfilled", color=POSITIVE, alpha=0.45,
            label=f"school estimates (n = {y.size})")  # one filled outline, not a patch per bin
    if sh is not None and np.isfinite(sh).any():
        ax.hist(sh[np.isfinite(sh)], bins=edges, density=True, histtype="step", color=SHRUNK, lw=1.4,
                label="shrunken (empirical Bayes)")
    if pl is not None and np.isfinite(pl).any():
        ax.hist(pl[np.isfinite(pl)], bins=edges, density=True, histtype="step", color=PLACEBO, lw=1.4, ls="--",
                label=f"placebo schools (n = {int(np.isfinite(pl).sum())})")
    if mu is not None and tau is not None and np.isfinite(tau):
        grid = np.linspace(lo, hi, 400)
        if tau > 0:
            ax.plot(grid, stats.norm.pdf(grid, mu, tau), color=POOLED, lw=2,
                    label=f"estimated true effects N(μ = {mu:.3f}, τ = {tau:.3f})")
        ax.axvline(mu, color=POOLED, lw=1, ls=":", label="pooled mean μ")
    ax.axvline(0, color="#444444", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("effect size (SD units)", fontsize=_BASE_FONT)
    ax.set_ylabel("density", fontsize=_BASE_FONT)
    ax.tick_params(labelsize=_BASE_FONT - 1)
    h, _ = ax.get_legend_handles_labels()  # below the plot: the curve never runs through it
    fig.legend(handles=h, loc="outside lower center", ncol=2, fontsize=_BASE_FONT - 1, frameon=False)
    _percentile_axis(ax, baseline_percentile)
    ax.set_title(title or "Distribution of school effects", fontsize=_BASE_FONT + 2, loc="left")
    return fig




# --------------------------------------------------------------------------------------
# Figures of an Evaluation: its tables, adapted to the functions above (duck-typed; this
# module does not import pleval.estimate). Evaluation.plot_* and pleval.report call these.
# --------------------------------------------------------------------------------------
def figure_name(kind: str, subject: str) -> str:
    """The name (file stem) of an evaluation figure: ``kind`` (forest, distribution, love,
    overlap, percentiles, sensitivity), then the subject unless the data have none."""
    return kind if subject == "all" else f"{kind}_{findings.slug(subject)}"


def _school_plot_frame(ev: "Evaluation", subject: str, level: float) -> pd.DataFrame:
    """The school effects of ``subject`` for the plots; coloured by the placebo-calibrated
    adjusted p where the evaluation has placebo schools (the summary's verdicts: the student-level
    adjusted p marked 8 math schools of the sample where the summary counts 1)."""
    s = findings.subject_rows(ev.schools, subject)
    s = s[np.isfinite(s["effect_size"].to_numpy(dtype=float))]
    out = pd.DataFrame(
        {
            "school": s["school"].astype(str).to_numpy(),
            "estimate": s["effect_size"].to_numpy(dtype=float),
            "se": s["es_se"].to_numpy(dtype=float),
            "ci_low": s["es_ci_low"].to_numpy(dtype=float),
            "ci_high": s["es_ci_high"].to_numpy(dtype=float),
            "shrunk": s["shrunk_es"].to_numpy(dtype=float),
            "shrunk_ci_low": s["shrunk_es_ci_low"].to_numpy(dtype=float),
            "shrunk_ci_high": s["shrunk_es_ci_high"].to_numpy(dtype=float),
            "pvalue_adj": s["p_adjusted"].to_numpy(dtype=float),
        }
    )
    cal = s["p_calibrated_adjusted"].to_numpy(dtype=float) if "p_calibrated_adjusted" in s else None
    if cal is not None and np.isfinite(cal).any():  # the verdicts the summary gives: beyond the placebo spread
        out["pvalue_calibrated_adj"] = cal
    return out


def _placebo_values(ev: "Evaluation", subject: str) -> np.ndarray | None:
    pl = findings.subject_rows(ev.placebo, subject)
    if not len(pl):
        return None
    g = pl["effect_size"].to_numpy(dtype=float)
    g = g[np.isfinite(g)]
    return g if g.size else None


def evaluation_forest(ev: "Evaluation", subject: str, *, shrunk: bool = True) -> Figure:
    """:func:`forest` of an evaluation's school effects for ``subject``, with the pooled
    random-effects estimate, its prediction interval and the placebo schools."""
    lvl = float(ev.options.get("level", 0.95))
    d = _school_plot_frame(ev, subject, lvl)
    if not len(d):
        raise PlevalError(f"no school effects for subject {subject!r}")
    if not shrunk:
        d = d.drop(columns=["shrunk", "shrunk_ci_low", "shrunk_ci_high"])
    h = findings.het_row(ev, subject)
    if h is not None and not np.isfinite(float(h["estimate"])):  # one PL school: nothing pooled
        h = None
    pooled = None
    if h is not None:
        pooled = {k: h[k] for k in ("estimate", "ci_low", "ci_high", "pi_low", "pi_high", "tau")}
        pooled["method"] = f"random effects, {h['method']}"
    e = ev.effects[subject]
    return forest(
        d, pooled=pooled, placebo=_placebo_values(ev, subject), baseline_percentile=e.baseline_percentile,
        sd=e.sd, sd_kind=e.sd_kind, level=lvl, alpha=float(ev.options.get("alpha", 0.05)),
        title=findings.title(subject, "Effect of personalized learning by school"), max_rows=FOREST_MAX_ROWS,
    )


def evaluation_distribution(ev: "Evaluation", subject: str) -> Figure:
    """:func:`effect_distribution` of an evaluation's school effects for ``subject``."""
    d = _school_plot_frame(ev, subject, float(ev.options.get("level", 0.95)))
    h = findings.het_row(ev, subject)
    if h is not None and not np.isfinite(float(h["estimate"])):  # one PL school: nothing pooled
        h = None
    return effect_distribution(
        d["estimate"], shrunk=d["shrunk"], mu=None if h is None else float(h["estimate"]),
        tau=None if h is None else float(h["tau"]), placebo=_placebo_values(ev, subject),
        baseline_percentile=ev.effects[subject].baseline_percentile,
        title=findings.title(subject, "Distribution of school effects"),
    )


def evaluation_love(ev: "Evaluation", subject: str) -> Figure:
    """:func:`love_plot` of an evaluation's balance table for ``subject``."""
    b = findings.subject_rows(ev.balance, subject)
    if not len(b):
        raise PlevalError(f"no balance table for subject {subject!r}")
    title = findings.title(subject, "Covariate balance" if ev.design == "matched" else
                           "Baseline differences (analytic sample)")
    labels = ("before matching", "after matching") if ev.design == "matched" else ("randomized groups", "")
    eq = findings.subject_rows(ev.equivalence, subject)
    eq = eq[eq["role"] == "pretest"] if len(eq) else eq
    if ev.design == "matched" and len(eq):  # the SMDs standardize by the SD before matching, over all grades;
        # the WWC verdict reads the pretest on the effect sizes' yardstick (docs/matching.md)
        title += "\nWWC equivalence: " + "; ".join(
            f"{r.variable} g = {g_text(float(r.effect_size), signed=True)}, "
            + str(r.verdict).replace("with statistical adjustment", "if adjusted") for r in eq.itertuples())
    return love_plot(b, title=title, labels=labels)


def evaluation_overlap(ev: "Evaluation", subject: str) -> Figure:
    """:func:`propensity_overlap` of an evaluation's propensity scores (propensity-based matching)."""
    p = ev.propensity
    rows = (p["subject"] == subject).to_numpy(dtype=bool) if len(p) and "subject" in p.columns else None
    if rows is None or not rows.any():
        raise PlevalError("no propensity scores: overlap is drawn for propensity-based matched designs")
    first, n = int(rows.argmax()), int(np.count_nonzero(rows))
    if rows[first:first + n].all():  # the subject's rows together (as matched): a view of them
        rows = slice(first, first + n)
    # the subject's rows of the columns drawn only (a row per student)
    score, treated, w = (p[c].to_numpy()[rows] if c in p.columns else None for c in ("score", "treated", "weight"))
    return propensity_overlap(score, treated, weights=w, title=findings.title(subject, "Propensity-score overlap"))


def evaluation_percentiles(ev: "Evaluation", subject: str) -> Figure:
    """:func:`percentile_chart` with an evaluation's effect size for ``subject`` marked."""
    es = ev.effects[subject].effect_size
    return percentile_chart(
        es.estimate, (es.ci_low, es.ci_high), baseline_percentile=ev.effects[subject].baseline_percentile,
        title=findings.title(subject, "From effect size to percentile points"), level=float(ev.options.get("level", 0.95)),
    )


def evaluation_subgroups(ev: "Evaluation", subject: str) -> Figure:
    """Subgroup forest plot: :func:`forest` of the subgroup effects of ``subject`` (effect
    sizes, CIs, coloured by the multiplicity-adjusted p), in the order of the subgroup table,
    with the overall effect as the diamond."""
    s = ev.subgroups(subject)
    if not len(s):
        raise PlevalError(f"no subgroup effects for subject {subject!r}")
    level = float(ev.options.get("level", 0.95))
    d = pd.DataFrame({
        "school": (s["subgroup"].astype(str) + " = " + s["level"].astype(str)).to_numpy(),
        "estimate": s["effect_size"].to_numpy(dtype=float),
        "se": ((s["es_ci_high"] - s["es_ci_low"]) / (2 * stats.norm.ppf(0.5 + level / 2))).to_numpy(dtype=float),
        "ci_low": s["es_ci_low"].to_numpy(dtype=float),
        "ci_high": s["es_ci_high"].to_numpy(dtype=float),
        "pvalue_adj": s["pvalue_adjusted"].to_numpy(dtype=float),
    }).iloc[::-1]
    e = ev.effects[subject]
    es = e.effect_size
    return forest(
        d, pooled={"estimate": es.estimate, "ci_low": es.ci_low, "ci_high": es.ci_high, "method": "all students"},
        baseline_percentile=e.baseline_percentile, sd=e.sd, sd_kind=e.sd_kind, level=level,
        alpha=float(ev.options.get("alpha", 0.05)), sort=False, unit="subgroup level",
        title=findings.title(subject, "Effect of personalized learning by subgroup"),
    )


def evaluation_sensitivity(ev: "Evaluation", subject: str) -> Figure:
    """:func:`ovb_contour` of an evaluation's omitted-variable bounds for ``subject`` (matched designs)."""
    ss = ev.details.get(subject, {}).get("sensitivity")
    if ss is None:
        raise PlevalError(f"no sensitivity analysis for subject {subject!r} (matched designs, option sensitivity)")
    return ovb_contour(ss.ovb, main=ss.benchmark,
                       title=findings.title(subject, "How strong would a hidden confounder have to be?"))


def evaluation_figures(ev: "Evaluation") -> dict[str, Any]:
    """Every figure that applies to an evaluation, keyed by :func:`figure_name` (the file stem,
    e.g. ``forest_math``)."""
    return {k: make() for k, make in evaluation_figure_makers(ev).items()}


def evaluation_figure_makers(ev: "Evaluation") -> dict[str, Any]:
    """The figures of :func:`evaluation_figures`, not yet built: the name of each and a function
    of no arguments that builds it (so that processes can each build their own)."""
    from functools import partial

    def subjects(frame: pd.DataFrame) -> set:
        return set(frame["subject"].unique()) if len(frame) and "subject" in frame.columns else set()

    out = {}
    # Each table once (a property is a copy; the propensity scores are a row per student), and
    # only the subjects it has rows for.
    balance, propensity, subgroups = (subjects(t) for t in (ev.balance, ev.propensity, ev.subgroups()))
    schools = ev.schools
    for s in ev.subjects:
        out[figure_name("percentiles", s)] = partial(evaluation_percentiles, ev, s)
        if s in balance:
            out[figure_name("love", s)] = partial(evaluation_love, ev, s)
        if s in propensity:
            out[figure_name("overlap", s)] = partial(evaluation_overlap, ev, s)
        sch = findings.subject_rows(schools, s)
        if len(sch) and np.isfinite(sch["effect_size"].to_numpy(dtype=float)).any():
            out[figure_name("forest", s)] = partial(evaluation_forest, ev, s)
            out[figure_name("distribution", s)] = partial(evaluation_distribution, ev, s)
        if s in subgroups:
            out[figure_name("subgroups", s)] = partial(evaluation_subgroups, ev, s)
        if ev.details.get(s, {}).get("sensitivity") is not None:
            out[figure_name("sensitivity", s)] = partial(evaluation_sensitivity, ev, s)
    return out


# --------------------------------------------------------------------------------------
# Planning: power and MDES against sample size
# --------------------------------------------------------------------------------------
def _planned_label(planned: float, unit: str | None) -> str:
    return f"planned: {planned:g}" + (f" {unit}" if unit else "")


def power_curve(table: pd.DataFrame, *, planned: float | None = None, target_power: float = 0.80,
                unit: str | None = None, title: str | None = None) -> Figure:
    """Power against sample size, one curve per value of a design input.

    ``table`` has columns size, power, vary, value and effect (one effect), as
    :func:`pleval.power.curves.power_table` returns. ``planned`` marks the planned size (a
    dotted line, named in the legend); a dashed line marks ``target_power``.
    """
    _require(table, ["size", "power", "vary", "value", "effect"], "power_curve")
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    colors = iter([POSITIVE, NEGATIVE, PLACEBO, POOLED, NEUTRAL, BAND] * 3)
    vary = str(table["vary"].iloc[0])
    for value, part in table.groupby("value", sort=True):
        ax.plot(part["size"], part["power"], lw=2, color=next(colors), label=f"{vary} = {value:g}")
    ax.axhline(target_power, color="#444444", lw=0.8, ls="--")
    if planned is not None:
        ax.axvline(planned, color="#444444", lw=0.8, ls=":", label=_planned_label(planned, unit))
    g = float(table["effect"].iloc[0])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(unit or str(table.get("solve_for", pd.Series(["sample size"])).iloc[0]), fontsize=_BASE_FONT)
    ax.set_ylabel("power", fontsize=_BASE_FONT)
    ax.tick_params(labelsize=_BASE_FONT - 1)
    ax.grid(color="#EEEEEE", lw=0.6)
    ax.legend(fontsize=_BASE_FONT - 1, frameon=False, loc="lower right")
    ax.set_title((title or "Power to detect the effect") + f"\neffect {g:.3f} SD = "
                 f"{percentiles.to_percentile_points(g):+.1f} percentile points from the median; dashed: "
                 f"{target_power:.0%} power", fontsize=_BASE_FONT + 2, loc="left")
    return fig


def mdes_curve(table: pd.DataFrame, *, planned: float | None = None, target: float | None = None,
               baseline_percentile: float = 50.0, unit: str | None = None, title: str | None = None) -> Figure:
    """Minimum detectable effect against sample size, SD on the left axis and percentile
    points on the right. ``table`` has columns size and mdes
    (:func:`pleval.power.curves.mdes_table`); ``target`` draws a target MDES (SD), ``planned``
    the planned size (a dotted line), each named in the legend."""
    _require(table, ["size", "mdes"], "mdes_curve")
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    ax.plot(table["size"], table["mdes"], lw=2, color=POSITIVE)
    if target is not None:
        ax.axhline(target, color=NEGATIVE, lw=0.9, ls="--", label=f"target {target:.3f} SD")
    if planned is not None:
        ax.axvline(planned, color="#444444", lw=0.8, ls=":", label=_planned_label(planned, unit))
    if target is not None or planned is not None:
        ax.legend(fontsize=_BASE_FONT - 1, frameon=False, loc="upper right")
    ax.set_ylim(0, float(np.nanmax(table["mdes"])) * 1.05)
    fwd, inv = _safe_pp(baseline_percentile)
    sec = ax.secondary_yaxis("right", functions=(fwd, inv))
    sec.set_ylabel(f"percentile points (from the {percentiles._ordinal(baseline_percentile, exact=True)})", fontsize=_BASE_FONT)
    sec.tick_params(labelsize=_BASE_FONT - 1)
    ax.set_xlabel(unit or str(table.get("solve_for", pd.Series(["sample size"])).iloc[0]), fontsize=_BASE_FONT)
    ax.set_ylabel("MDES (SD units)", fontsize=_BASE_FONT)
    ax.tick_params(labelsize=_BASE_FONT - 1)
    ax.grid(color="#EEEEEE", lw=0.6)
    power = float(table["power"].iloc[0]) if "power" in table else 0.8
    ax.set_title((title or "Minimum detectable effect size") + f" at {power:.0%} power",
                 fontsize=_BASE_FONT + 2, loc="left")
    return fig


# --------------------------------------------------------------------------------------
# Sensitivity contour plot (omitted-variable bounds)
# --------------------------------------------------------------------------------------
_OVB_PAD = 0.03
"""The contour plot's axes start this fraction of their range below 0 (room for the origin's markers)."""
_LABEL_OFFSET = 6.0  # points between a point and its label


class _PointLabels(Artist):
    """Labels of points in one axes, placed when the axes are drawn (after the figure's layout,
    so at their final size): each beside its point on the side away from the nearer edges (right
    of a point in the left half, left of one in the right half; above in the lower half, below
    in the upper), so it stays inside the axes and off the tick labels, and a line further from
    its point while it would overlap a label placed before it or one of ``avoid`` (e.g. a
    contour's labels). Drawn first (zorder -1), it draws nothing itself."""

    def __init__(self, ax, avoid=()):
        super().__init__()
        self.set_zorder(-1)
        self.set_in_layout(False)
        self.avoid = list(avoid)
        self.notes: list[Annotation] = []
        ax.add_artist(self)

    def add(self, text: str, x: float, y: float, color: str) -> None:
        note = self.axes.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points",
                                  fontsize=_BASE_FONT - 1, color=color)
        note.set_in_layout(False)  # placed inside the axes at draw time
        self.notes.append(note)

    def draw(self, renderer) -> None:
        frame = self.axes.bbox
        taken = [t.get_window_extent(renderer) for t in self.avoid if t.get_visible()]
        for note in self.notes:
            px, py = self.axes.transData.transform(note.xy)
            right, up = px < (frame.x0 + frame.x1) / 2, py < (frame.y0 + frame.y1) / 2
            note.set_horizontalalignment("left" if right else "right")
            note.set_verticalalignment("bottom" if up else "top")
            dx = _LABEL_OFFSET if right else -_LABEL_OFFSET
            dy = _LABEL_OFFSET if up else -_LABEL_OFFSET
            for _ in range(len(taken) + 1):  # at most a line per label already there
                note.xyann = (dx, dy)
                box = note.get_window_extent(renderer)
                if not any(box.overlaps(t) for t in taken):
                    break
                line = 1.25 * box.height / renderer.points_to_pixels(1.0)
                dy += line if up else -line
            taken.append(box)
        self.stale = False


def ovb_contour(
    ovb,
    *,
    which: str = "both",
    main: str | None = None,
    title: str | None = None,
) -> Figure:
    """Contours of the adjusted estimate and/or t-value over the confounder's partial R² with
    PL enrolment (x, R²_{D~Z|X}) and with the outcome (y, R²_{Y~Z|D,X}), as sensemakr draws
    them (Cinelli & Hazlett 2020, §5): the unadjusted estimate at the origin (black triangle),
    the contour where the estimate (or the t-value) reaches 0 (or the critical value) dashed
    red, and benchmark bounds as red diamonds ("2x pretest": a confounder twice as strong as
    the pretest).

    ``ovb`` has attributes or keys ``estimate, se, se_classical, dof, df, alpha, rv_q`` and
    ``bounds`` (a DataFrame with ``bound, benchmark, kd, r2dz_x, r2yz_dx``), e.g. a
    :class:`pleval.sensitivity.OmittedVariableBounds`; a bound with ``r2dz_x`` 1 (no such
    confounder) is named under the plot, not drawn. ``which``: ``"estimate"``, ``"t"`` or
    ``"both"`` (two panels). ``main``: the benchmark drawn at every multiple (others at 1×;
    default: the first benchmark).
    """
    from scipy import stats as _stats

    from .sensitivity.ovb import adjusted_estimate, adjusted_se

    if which not in ("estimate", "t", "both"):
        raise DataError(f"which must be 'estimate', 't' or 'both'; got {which!r}")
    est, se_c, dof = float(_get(ovb, "estimate")), float(_get(ovb, "se_classical")), float(_get(ovb, "dof"))
    kappa = float(_get(ovb, "se", se_c)) / se_c
    df = float(_get(ovb, "df", dof - 1))
    alpha = float(_get(ovb, "alpha", 0.05))
    rv = float(_get(ovb, "rv_q", 0.1))
    bounds = _get(ovb, "bounds", pd.DataFrame(columns=["bound", "benchmark", "kd", "r2dz_x", "r2yz_dx"]))
    if len(bounds):
        main = main or str(bounds["benchmark"].iloc[0])
        shown = bounds[(bounds["benchmark"] == main) | (bounds["kd"] == 1)]
    else:
        shown = bounds
    off = shown[~(shown["r2dz_x"] < 1)]  # a confounder explaining all of PL enrolment: no point to draw
    shown = shown[shown["r2dz_x"] < 1]
    xmax = float(np.clip(max(2.5 * rv, 1.25 * (shown["r2dz_x"].max() if len(shown) else 0)), 0.02, 0.99))
    ymax = float(np.clip(max(2.5 * rv, 1.1 * (shown["r2yz_dx"].max() if len(shown) else 0)), 0.02, 0.99))
    gx, gy = np.meshgrid(np.linspace(0, xmax, 161), np.linspace(0, ymax, 161))
    adj = adjusted_estimate(est, se_c, dof, gx, gy)
    tval = adj / (kappa * adjusted_se(se_c, dof, gx, gy))
    crit = float(_stats.t.ppf(1 - alpha / 2, df))
    panels = [p for p in ("estimate", "t") if which in (p, "both")]
    fig = _figure(5.6 * len(panels), 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    base = fig.canvas
    FigureCanvasAgg(fig)  # clabel measures its labels with the canvas' renderer: one, not a new one per label
    rows = list(zip(shown["bound"], shown["r2dz_x"], shown["r2yz_dx"]))  # (itertuples makes a class per call)
    for ax, kind in zip(axes, panels):
        z, thr = (adj, 0.0) if kind == "estimate" else (tval, float(np.sign(est)) * crit)
        finite = z[np.isfinite(z)]
        lo_z, hi_z = np.quantile(finite, [0.01, 0.99])
        levels = [v for v in MaxNLocator(8).tick_values(lo_z, hi_z) if lo_z < v < hi_z and v != thr]
        cs = ax.contour(gx, gy, z, levels=levels, colors="#555555", linewidths=0.8, linestyles="solid")
        ax.clabel(cs, fontsize=_BASE_FONT - 2, fmt=lambda v: f"{v:.3g}")
        if np.nanmin(z) < thr < np.nanmax(z):
            ax.contour(gx, gy, z, levels=[thr], colors=NEGATIVE, linewidths=1.6, linestyles="--")
        # The axes start a little below 0 so markers at the origin sit inside them, clear of the tick labels.
        ax.set_xlim(-_OVB_PAD * xmax, xmax)
        ax.set_ylim(-_OVB_PAD * ymax, ymax)
        labels = _PointLabels(ax, avoid=cs.labelTexts)
        # The triangle is drawn over the benchmark diamonds and smaller, so one at the origin shows around it.
        ax.plot([0], [0], marker="^", color="black", mec="white", mew=0.8, ms=7, clip_on=False, zorder=6)
        lab0 = f"unadjusted ({est:.3g})" if kind == "estimate" else f"unadjusted t = {est / (kappa * se_c):.2f}"
        labels.add(lab0, 0, 0, "black")
        placed: list[tuple[float, float]] = []
        for bound, r2dz_x, r2yz_dx in rows:
            x, y = min(r2dz_x, xmax), min(r2yz_dx, ymax)
            val = float(adjusted_estimate(est, se_c, dof, r2dz_x, r2yz_dx))
            if kind == "t":  # none where R²_Y is capped at 1: no residual left, no such confounder (as the table)
                val = val / float(kappa * adjusted_se(se_c, dof, r2dz_x, r2yz_dx)) if r2yz_dx < 1 else None
            ax.plot([x], [y], marker="D", color=NEGATIVE, mec="#661100", mew=0.5, ms=7, clip_on=False, zorder=5)
            if all(abs(x - px) / xmax + abs(y - py) / ymax > 0.06 for px, py in placed):  # one label per cluster
                label = "no such confounder" if val is None else f"{val:.3g}"
                labels.add(f"{bound} ({label})", x, y, NEGATIVE)
                placed.append((x, y))
        ax.set_xlabel("partial R² of confounder with PL enrolment, R²(D~Z|X)", fontsize=_BASE_FONT)
        ax.set_ylabel("partial R² of confounder with outcome, R²(Y~Z|D,X)", fontsize=_BASE_FONT)
        ax.tick_params(labelsize=_BASE_FONT - 1)
        sub = "adjusted estimate (dashed: 0)" if kind == "estimate" else f"adjusted t (dashed: ±{crit:.2f})"
        ax.set_title(sub, fontsize=_BASE_FONT + 1, loc="left", **_TITLE_ON_TOP)
    fig.set_canvas(base)
    fig.suptitle(title or "How strong would a hidden confounder have to be?", fontsize=_BASE_FONT + 2, x=0.01, ha="left")
    if len(off):
        fig.supxlabel(f"Not drawn: {', '.join(map(str, off['bound']))} (no such confounder: it would explain all of PL "
                      "enrolment).", fontsize=_BASE_FONT - 1, x=0.01, ha="left")
    return fig


__all__ = [
    "forest",
    "love_plot",
    "propensity_overlap",
    "percentile_chart",
    "effect_distribution",
    "to_png",
    "to_svg",
    "to_png_svg",
    "encode_png",
    "PlevalFigure",
    "evaluation_figures",
    "evaluation_forest",
    "evaluation_subgroups",
    "evaluation_distribution",
    "evaluation_love",
    "evaluation_overlap",
    "evaluation_percentiles",
    "figure_name",
    "power_curve",
    "mdes_curve",
    "ovb_contour",
    "evaluation_sensitivity",
]
