"""``report.pdf``: the report's sections (:mod:`pleval.report.sections`) laid out for print
with reportlab (pure Python), from the same blocks as ``report.html``.

Print layout: US Letter, every numbered section starts on a new page and is a bookmark of the
PDF; tables fit the page width (columns take the width their content needs, long cells wrap
between words, the font steps down for very wide tables, the header row repeats on every
page; a table too wide even so is printed in parts of the same rows, each led by its first
column, rather than cut inside words); figures are
the report's PNGs, drawn at their print resolution or finer (a figure is scaled down to the
page width, never up; one taller than a page continues on the next, cut between labels). Text
uses matplotlib's DejaVu fonts, which cover the Greek letters and symbols of the report (τ, Φ,
ω, ≤, −).
"""

from __future__ import annotations

import hashlib
import io
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence
from xml.sax.saxutils import escape

from PIL import Image as PILImage
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.lib.rl_accel import fp_str
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (Flowable, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer,
                                Table as RLTable, TableStyle)
from reportlab.platypus.tables import CellStyle

from .blocks import Figure, Section, Table, numbered_titles, verdict_class
from .sections import build, source_name, subtitle

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

PAGE = LETTER
MARGIN = 0.7 * inch
WIDTH = PAGE[0] - 2 * MARGIN
HEIGHT = PAGE[1] - 2 * MARGIN - 0.3 * inch  # room for the footer
INK, ACCENT, GREY, RULE, HEAD = (colors.HexColor(c) for c in ("#222222", "#332288", "#666666", "#DDDDDD", "#F0F0F5"))
VERDICT = {"ok": colors.HexColor("#1A7F37"), "warn": colors.HexColor("#B35900"), "bad": colors.HexColor("#B3261E")}
TABLE_FONT_SIZES = (8.0, 7.0, 6.0, 5.5)
_PAD = 3.0
_VPAD = 1.5
"""A table cell's top and bottom padding (:data:`_PAD` its left and right)."""
_STRING_CELLS = True
"""Table cells are drawn as strings, a line each, in the font, size, colour and place a Paragraph
would give them (:func:`_lines`); False lays out every cell as a Paragraph (what the tests
compare with)."""


def _fonts() -> str:
    """Register DejaVu Sans (shipped with matplotlib), upright and bold, and return the family
    name. The report has no italic text (every text is escaped; its markup is ``<b>`` and
    ``<font>``), so the oblique faces are not read: reportlab parses each TrueType file in
    Python (about 0.01 CPU-s a face), in every process that writes a PDF."""
    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        from matplotlib import get_data_path

        ttf = Path(get_data_path()) / "fonts" / "ttf"
        for name in ("DejaVuSans", "DejaVuSans-Bold"):
            pdfmetrics.registerFont(TTFont(name, str(ttf / f"{name}.ttf")))
        pdfmetrics.registerFontFamily("DejaVuSans", normal="DejaVuSans", bold="DejaVuSans-Bold")
    return "DejaVuSans"


def _styles(font: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=font, fontSize=9.5, leading=12.5, textColor=INK, spaceAfter=5)
    return {
        "body": base,
        "title": ParagraphStyle("title", base, fontName=f"{font}-Bold", fontSize=18, leading=22, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", base, fontSize=8.5, textColor=GREY, spaceAfter=12),
        "h1": ParagraphStyle("h1", base, fontName=f"{font}-Bold", fontSize=14, leading=18, textColor=ACCENT,
                             spaceBefore=2, spaceAfter=8),
        "h2": ParagraphStyle("h2", base, fontName=f"{font}-Bold", fontSize=10.5, leading=13, spaceBefore=8,
                             spaceAfter=4, keepWithNext=1),
        "note": ParagraphStyle("note", base, fontSize=8, leading=10.5, textColor=GREY),
        "bullet": ParagraphStyle("bullet", base, leftIndent=12, bulletIndent=2, spaceAfter=3),
        "warn": ParagraphStyle("warn", base, leftIndent=12, bulletIndent=2, spaceAfter=3, textColor=VERDICT["warn"]),
        "big": ParagraphStyle("big", base, fontName=f"{font}-Bold", fontSize=20, leading=24, textColor=ACCENT),
        "caption": ParagraphStyle("caption", base, fontSize=8, leading=10.5, textColor=GREY, spaceAfter=10),
    }


def _p(text: str, style: ParagraphStyle, **kw) -> Paragraph:
    return Paragraph(escape(str(text)), style, **kw)


class _Bookmark(Flowable):
    """A zero-size flowable that makes its position a PDF bookmark (one per section)."""

    def __init__(self, key: str, title: str):
        super().__init__()
        self.key, self.title = key, title

    def wrap(self, *args):
        return 0, 0

    def draw(self):
        self.canv.bookmarkPage(self.key)
        self.canv.addOutlineEntry(self.title, self.key, level=0)


# --------------------------------------------------------------------------------------
# Tables that fit the page
# --------------------------------------------------------------------------------------
class _Measured(dict):
    """``pdfmetrics.stringWidth`` of (text, font, size), each measured once: a table's cells
    are measured for every font size tried, as whole cells and word by word, and again to
    choose how each is drawn; many repeat ("< 0.001")."""

    def __missing__(self, key: tuple[str, str, float]) -> float:
        self[key] = width = pdfmetrics.stringWidth(*key)
        return width


def _needs(rows: list[list[str]], header: list[str], numeric: list[bool], bold: list[bool], font: str,
           size: float, measured: _Measured) -> tuple[list[float], list[float]]:
    """(natural, least) width of each column at ``size``, padding included: what its longest
    cell needs on one line, and the least it takes without cutting a word: its longest word
    (the header, bold, and text cells) or its widest cell (numbers never wrap)."""

    def w(s: str, bold: bool = False) -> float:
        return measured[s, f"{font}-Bold" if bold else font, size]

    def longest_word(s: str, bold: bool = False) -> float:
        return max((w(t, bold) for t in s.split()), default=0.0)

    cols = list(zip(header, *rows)) if rows else [(h,) for h in header]
    natural = [max(w(c[0], True), *(w(v, b) for v, b in zip(c[1:], bold))) + 2 * _PAD for c in cols]
    least = [max(longest_word(c[0], True), *((w(v, b) if num else longest_word(v, b)) for v, b in zip(c[1:], bold)))
             + 2 * _PAD for c, num in zip(cols, numeric)]
    return natural, least


def _widths(rows: list[list[str]], header: list[str], numeric: list[bool], bold: list[bool], font: str,
            size: float, measured: _Measured | None = None) -> list[float] | None:
    """Column widths that fit :data:`WIDTH`: each column gets what its longest cell needs
    when everything fits; otherwise numbers stay on one line, text columns and headers keep at
    least their longest word, and the rest of the page is shared in proportion to what each
    column still wants. ``None`` if that does not fit at this font size. ``measured``: string
    widths already measured (:class:`_Measured`)."""
    natural, least = _needs(rows, header, numeric, bold, font, size, _Measured() if measured is None else measured)
    if sum(natural) <= WIDTH:
        return natural
    if sum(least) > WIDTH:
        return None
    spare, want = WIDTH - sum(least), [n - m for n, m in zip(natural, least)]
    return [m + spare * x / sum(want) for m, x in zip(least, want)]


def _split(least: list[float], starts: list[bool]) -> list[list[int]] | None:
    """The columns of a table too wide for the page (``least``: each column's least width,
    :func:`_needs`) in parts that fit, each the first column (the rows' key) followed by a run
    of the others, in order: as many whole groups of columns (``starts[j]``: column ``j``
    begins a group) as fit beside the key, then a new part; a group too wide for a part of
    its own is split between its columns. None when the key and a single column do not fit
    side by side (a word wider than the page)."""
    room = WIDTH - least[0] - 1e-6  # a hair below the page: sums in another order differ in the last bit
    groups: list[list[int]] = []
    for j in range(1, len(least)):
        if starts[j] or not groups:
            groups.append([])
        groups[-1].append(j)
    units = [u for g in groups for u in ([g] if sum(least[j] for j in g) <= room else [[j] for j in g])]
    if any(sum(least[j] for j in u) > room for u in units):
        return None
    parts: list[list[int]] = [[]]
    used = 0.0
    for u in units:
        w = sum(least[j] for j in u)
        if parts[-1] and used + w > room:
            parts.append([])
            used = 0.0
        parts[-1] += u
        used += w
    return [[0, *p] for p in parts]


def _lines(text: str, font: str, size: float, width: float, shrink: float, measured: _Measured) -> list[str] | None:
    """The lines a Paragraph of ``text`` (words one space apart, one font) breaks into at
    ``width``, when it draws each line as the plain string it is; None when it would not.

    ``Paragraph.breakLines`` (reportlab, its case of one style without hyphenation) adds words
    to a line while the line's width (words and the spaces between them) stays within ``width``
    plus ``shrink`` spaces per word already on it, and starts a new line otherwise. A word wider
    than ``width`` it cuts (``_splitWord``) where the next character would pass the line's end,
    the first piece ending the current line, each piece then on a line of its own, the last
    continued by the next words. Lines wider than ``width`` (in the allowance) it draws with
    their spaces narrowed, and a word whose first character does not fit where it starts
    leaves a space at the end of its line: for those None (the cell stays a Paragraph). The
    sums are the same, in the same order, so the same lines come out."""
    space = measured[" ", font, size]
    lines, line, current, forced = [], [], -space, False
    words = [(w, False) for w in reversed(text.split(" "))]  # (word, a piece of a cut word), last first
    while words:
        word, piece = words.pop()
        word_width = measured[word, font, size]
        new = current + space + word_width
        fits = new <= width + shrink * space * len(line)
        if not fits and not forced and not piece and word_width > width:
            pieces = _cut(word, current + space, width, font, size, measured)
            if not all(pieces):
                return None
            words += [(w, True) for w in reversed(pieces)]
            forced = True
            continue
        if fits or not line or forced:
            line.append(word)
            if forced:
                if width - new <= -1e-8:
                    return None
                lines.append(" ".join(line))
                line, current, forced = [], -space, False
            else:
                current = new
            continue
        if width - current <= -1e-8:
            return None
        lines.append(" ".join(line))
        line, current = [word], word_width
    if line and width - current <= -1e-8:
        return None
    return lines + [" ".join(line)] if line else lines


def _cut(word: str, start: float, width: float, font: str, size: float, measured: _Measured) -> list[str]:
    """``word`` cut as reportlab's ``_splitWord`` cuts a word too wide for its line: a piece
    ends where its next character would pass ``width``, the first piece counted from
    ``start`` (the width of the line before it), the others from 0. A piece is empty where a
    character does not fit even at the start of a piece (reportlab keeps one wider than a
    whole line in place, on a line too wide: a Paragraph either way)."""
    pieces, piece, used = [], "", start
    for c in word:
        c_width = measured[c, font, size]
        new = used + c_width
        if new > width:
            pieces.append(piece)
            piece, new = "", c_width
        piece += c
        used = new
    return pieces + [piece]


class _CellParagraph(Paragraph):
    """A table cell's Paragraph that breaks its lines once per width: reportlab's Table wraps
    every Paragraph cell again to measure rows, to split the table at each page and to draw it
    (about four times each in a long table), always at the column's width, where the lines
    and height come out the same (``Paragraph.wrap`` depends on the width alone)."""

    _wrapped: tuple[float, tuple[float, float]] | None = None

    def wrap(self, availWidth, availHeight):
        if self._wrapped is None or self._wrapped[0] != availWidth:
            self._wrapped = (availWidth, super().wrap(availWidth, availHeight))
        return self._wrapped[1]


def _table(t: Table, font: str, st: dict[str, ParagraphStyle]) -> list:
    """``t`` laid out at the largest of :data:`TABLE_FONT_SIZES` at which it fits the page
    width with no word cut (:func:`_widths`). A table that does not fit even at the smallest
    size is printed in parts of the same rows (:func:`_split`, along ``t.groups``), each led
    by the first column and titled with what it holds, all at the largest size at which every
    part fits; the table's note follows the last part."""
    header, rows, right = t.columns, t.rows(), t.right_aligned()
    measured, bold = _Measured(), [t.is_bold(i) for i in range(len(rows))]
    small = TABLE_FONT_SIZES[-1]
    # What a table needs only grows with the font size: if it does not fit at the smallest, it
    # fits at none, and it is split by the widths at that size.
    least = _needs(rows, header, right, bold, font, small, measured)[1]
    parts = [list(range(len(header)))]
    if sum(least) > WIDTH:
        firsts = {label for _, label in t.groups}
        parts = _split(least, [not t.groups or h in firsts for h in header]) or parts
    columns = [([header[j] for j in p], [[r[j] for j in p] for r in rows], [right[j] for j in p]) for p in parts]
    for size in TABLE_FONT_SIZES:
        widths = [_widths(r, h, n, bold, font, size, measured) for h, r, n in columns]
        if all(w is not None for w in widths):
            break
    else:  # a word wider than the page: the columns share the width equally and words break
        widths = [[WIDTH / len(p)] * len(p) for p in parts]
    if len(parts) == 1:
        return _titled(t.title, _grid(t, columns[0], widths[0], size, font, measured), t.note, st)
    names = [_part_name(t, p) for p in parts]
    out: list = []
    for i, (c, w) in enumerate(zip(columns, widths)):
        title = f"part {i + 1} of {len(parts)}: {names[i]}"
        note = t.note if i + 1 == len(parts) else (
            f"Continued below: part {i + 2} of {len(parts)} ({names[i + 1]}), the same rows in the same order, "
            f"each led by its {header[0]}" + (", then the notes on every column." if t.note else "."))
        out += _titled(f"{t.title} ({title})" if t.title else title[0].upper() + title[1:], _grid(t, c, w, size, font, measured),
                       note, st)
    return out


def _part_name(t: Table, part: list[int]) -> str:
    """What one part of a split table holds: the names of its groups of columns (``t.groups``),
    or the labels of its first and last columns after the key."""
    header = t.columns
    if not t.groups:
        return header[part[1]] if len(part) == 2 else f"columns {header[part[1]]} to {header[part[-1]]}"
    starts = {header.index(label): name for name, label in t.groups if label in header}
    group = [starts[max(k for k in starts if k <= j)] if any(k <= j for k in starts) else "" for j in part[1:]]
    return ", ".join(dict.fromkeys(g for g in group if g)) or header[part[1]]


def _titled(title: str, table: Flowable, note: str, st: dict[str, ParagraphStyle]) -> list:
    """A laid-out table under its ``title`` (if any) and over its ``note`` (if any)."""
    out: list = [_p(title, st["h2"])] if title else []
    out += [table, Spacer(1, 3)]
    if note:
        out.append(_p(note, st["note"]))
    return out + [Spacer(1, 6)]


def _grid(t: Table, columns: tuple[list[str], list[list[str]], list[bool]], widths: list[float], size: float,
          font: str, measured: _Measured) -> RLTable:
    """The reportlab table of some of the columns of ``t`` (``columns``: their header, rows and
    which align right) at ``widths`` and font ``size``."""
    header, rows, right = columns
    cell = [ParagraphStyle(f"c{j}", fontName=font, fontSize=size, leading=size * 1.25, textColor=INK,
                           alignment=TA_RIGHT if r else TA_LEFT) for j, r in enumerate(right)]
    verdict_cols = {j for j, c in enumerate(header) if c in t.verdict_columns}

    fonts = (font, f"{font}-Bold")
    styles: dict = {}

    def style(to_right: bool, bold: bool, colour=INK) -> CellStyle:
        """The cell style of every cell in this alignment, weight and colour (one object, shared:
        reportlab made one per cell, then set each attribute of each cell by the table's style
        commands, 10 a cell)."""
        key = (to_right, bold, colour)
        if key not in styles:
            s = styles[key] = CellStyle(repr(key))
            s.valign, s.leftPadding, s.rightPadding, s.topPadding, s.bottomPadding = "TOP", _PAD, _PAD, _VPAD, _VPAD
            s.fontname, s.fontsize, s.leading, s.color = fonts[bold], size, size * 1.25, colour
            s.alignment = "RIGHT" if to_right else "LEFT"
        return styles[key]

    def para(v: str, j: int, bold: bool = False) -> tuple[Paragraph | str, CellStyle]:
        """The cell of text ``v`` in column ``j`` and its style."""
        cls = verdict_class(v) if j in verdict_cols else None
        if _STRING_CELLS and v == " ".join(v.split()) and (
                lines := _lines(v, fonts[bold], size, widths[j] - _PAD - _PAD, cell[j].spaceShrinkage, measured)):
            # drawn line by line where a Paragraph puts them (a third of the time)
            return "\n".join(lines), style(right[j], bold, VERDICT[cls] if cls else INK)
        text = escape(v)
        if cls:
            text = f'<font color="{VERDICT[cls].hexval()}">{text}</font>'
        return _CellParagraph(f"<b>{text}</b>" if bold else text, cell[j]), style(right[j], bold)

    cells = [[para(h, j, True) for j, h in enumerate(header)]]
    cells += [[para(v, j, b) for j, v in enumerate(r)] for r, b in zip(rows, (t.is_bold(i) for i in range(len(rows))))]
    data = [[c for c, _ in r] for r in cells]
    table = _Grid(data, colWidths=widths, rowHeights=_row_heights(data, widths, size), repeatRows=1, hAlign="LEFT",
                  cellStyles=[[s for _, s in r] for r in cells], measured=measured)
    table.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, 0), HEAD), ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE)]))
    return table


class _Grid(RLTable):
    """A table of :func:`_grid`, whose string cells (left or right aligned, at the top) are drawn
    as reportlab draws them (``canvas.drawString`` or ``drawRightString`` for each line: a text
    object ``BT 1 0 0 1 x y Tm <text> T* ET``), faster: the text operators of a line of text, in
    a font, size and leading (the font subset, the escaped string), are taken once per document
    from a text object at the origin, and each line is written with them at its own place (the
    same number is in many cells). Widths come from the layout's ``measured``; coordinates are
    formatted by reportlab's ``fp_str``, each value once. The same content stream, byte for byte
    (report.pdf at 1M rows, with the shared cell styles of :func:`_grid`: 0.31 → 0.24 CPU-s)."""

    def __init__(self, data, *, measured: _Measured | None = None, **kw):
        super().__init__(data, **kw)
        self.measured = _Measured() if measured is None else measured

    def split(self, availWidth, availHeight):
        parts = super().split(availWidth, availHeight)
        for p in parts:  # (made by reportlab, without the widths)
            if isinstance(p, type(self)):
                p.measured = self.measured
        return parts

    def _drawCell(self, cellval, cellstyle, pos, size):
        canv, just = self.canv, cellstyle.alignment
        if (not isinstance(cellval, str) or just not in ("LEFT", "RIGHT") or cellstyle.valign != "TOP"
                or cellstyle.direction or cellstyle.shaping or cellstyle.href or cellstyle.destination
                or not canv.bottomup):
            return super()._drawCell(cellval, cellstyle, pos, size)
        cur = self._curcellstyle  # the fill colour and font, set as Table._drawCell sets them
        if cur is not cellstyle:
            if cur is None or cellstyle.color != cur.color:
                canv.setFillColor(cellstyle.color)
            if (cur is None or cellstyle.leading != cur.leading or cellstyle.fontname != cur.fontname
                    or cellstyle.fontsize != cur.fontsize):
                canv.setFont(cellstyle.fontname, cellstyle.fontsize, cellstyle.leading)
            self._curcellstyle = cellstyle
        known, numbers = _drawn_texts(canv)
        font, size_, leading = canv._fontname, canv._fontsize, canv._leading  # what a text object takes
        right = just == "RIGHT"
        x = pos[0] + size[0] - cellstyle.rightPadding if right else pos[0] + cellstyle.leftPadding
        y = pos[1] + size[1] - cellstyle.topPadding - cellstyle.fontsize
        for line in cellval.split("\n"):
            x0 = x - self.measured[line, font, size_] if right else x
            fx, fy = numbers.get(x0), numbers.get(y)
            if fx is None:
                fx = numbers[x0] = fp_str(x0)
            if fy is None:
                fy = numbers[y] = fp_str(y)
            key = (font, size_, leading, line)
            ops = known.get(key)
            if ops is None:  # its text operators, from a text object at the origin
                text = canv.beginText(0, 0)
                text.textLine(line)
                code, head, tail = text.getCode(), "BT 1 0 0 1 0 0 Tm ", " T* ET"
                # (unless its code is not of that form: then drawn by reportlab every time)
                ops = known[key] = code[len(head):-len(tail)] if code.startswith(head) and code.endswith(tail) else ""
            if ops:
                canv._code.append(f"BT 1 0 0 1 {fx} {fy} Tm {ops} T* ET")
            else:  # what drawString does without options
                text = canv.beginText(x0, y)
                text.textLine(line)
                canv.drawText(text)
            y -= cellstyle.leading


def _drawn_texts(canv) -> tuple[dict, dict]:
    """The text operators of the lines :class:`_Grid` drew on ``canv`` and the coordinates it
    formatted, kept on the canvas: the font subsets are one document's."""
    try:
        return canv._pleval_texts
    except AttributeError:
        canv._pleval_texts = ({}, {})
        return canv._pleval_texts


def _row_heights(data: list[list], widths: list[float], size: float) -> list[float]:
    """The height of each row of a table laid out by :func:`_grid`, as reportlab measures it
    when it is not given (``Table._calc_height``: the tallest cell, a string cell its lines ×
    the leading, a Paragraph its height wrapped in the column less the padding; plus the top
    and bottom padding, summed in that order), measured once here: unaided, reportlab measures
    the cells of a long table page by page as it splits it, each page's rows in a new table
    made of the rest (``report.pdf`` of 4,140 schools 2.8 → 2.0 CPU-s). The same PDF, byte for
    byte."""
    lead, pad = size * 1.25, _VPAD + _VPAD
    return [max((lead * len(v.split("\n")) if isinstance(v, str) else v.wrapOn(None, w - _PAD - _PAD, 72000 - pad)[1])
                + pad for v, w in zip(row, widths)) for row in data]


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------
def _figure(png: bytes, caption: str, dpi: float, st: dict[str, ParagraphStyle]) -> list:
    """The PNG at ``dpi`` (its print size), scaled down to the page width, never up. A figure
    still taller than a page (the forest plot of many schools) is not shrunk further but
    continues on the next page, cut between rows of labels. An RGB PNG goes into the PDF as it
    is (:class:`_PassedPNG`), without being decoded or compressed again; when it is cut, each
    band draws that one image clipped to the band's rows."""
    passed = _PassedPNG.of(png)
    px_w, px_h = passed.size if passed is not None else _decoded(png).size
    scale = min(1.0, WIDTH / (px_w / dpi * inch))
    pt_per_px = scale * inch / dpi
    limit = HEIGHT - 40
    if px_h * pt_per_px <= limit:
        img = _Picture(passed or _decoded(png), px_w * pt_per_px, px_h * pt_per_px)
        return [KeepTogether([img, Spacer(1, 3), _p(caption, st["caption"])])]
    im = _decoded(png)
    out: list = [_Picture(passed, px_w * pt_per_px, (bottom - top) * pt_per_px, rows=(top, bottom, px_h))
                 if passed is not None else
                 _Picture(im.crop((0, top, px_w, bottom)), px_w * pt_per_px, (bottom - top) * pt_per_px)
                 for top, bottom in _cuts(im, int(limit / pt_per_px))]
    return out + [Spacer(1, 3), _p(caption, st["caption"])]


def _decoded(png: bytes) -> PILImage.Image:
    """The PNG decoded, as RGB when its alpha channel is opaque everywhere (the report's
    figures, drawn on white): drawn the same, without the soft mask reportlab would otherwise
    make of the alpha channel."""
    im = PILImage.open(io.BytesIO(png))
    im.load()
    if im.mode == "RGBA" and im.getchannel("A").getextrema() == (255, 255):
        im = im.convert("RGB")
    return im


class _PassedPNG:
    """An 8-bit RGB, non-interlaced PNG without transparency, as a PDF image: PDF's Flate filter
    with PNG predictors (``/DecodeParms << /Predictor 15 … >>``, PDF 1.7 §7.4.4.4) decodes the
    PNG's compressed rows as they are, so its IDAT data is the image stream: nothing is decoded
    or compressed again (reportlab would inflate the PNG, hash the pixels and deflate them)."""

    def __init__(self, width: int, height: int, data: bytes):
        self.size, self.data = (width, height), data
        self.name = "png" + hashlib.sha1(data).hexdigest()

    @classmethod
    def of(cls, png: bytes) -> "_PassedPNG | None":
        if png[:8] != b"\x89PNG\r\n\x1a\n":
            return None
        pos, header, idat, tag = 8, None, [], b""
        while pos + 8 <= len(png):
            n, tag = struct.unpack(">I4s", png[pos : pos + 8])
            data = png[pos + 8 : pos + 8 + n]
            pos += 12 + n
            if tag == b"IHDR":
                header = struct.unpack(">IIBBBBB", data)
            elif tag == b"IDAT":
                idat.append(data)
            elif tag in (b"tRNS", b"IEND"):
                break
        if tag == b"tRNS" or header is None or header[2:] != (8, 2, 0, 0, 0):  # depth 8, RGB, no interlace
            return None
        return cls(header[0], header[1], b"".join(idat))


class _PNGImage(pdfdoc.PDFImageXObject):
    """The image XObject of a :class:`_PassedPNG`: its IDAT data under ``/FlateDecode`` with
    the PNG predictor parameters."""

    def __init__(self, png: _PassedPNG):
        super().__init__(png.name)
        self.png = png

    def format(self, document):
        w, h = self.png.size
        stream = pdfdoc.PDFStream(content=self.png.data)
        for key, value in (("Type", pdfdoc.PDFName("XObject")), ("Subtype", pdfdoc.PDFName("Image")), ("Width", w),
                           ("Height", h), ("BitsPerComponent", 8), ("ColorSpace", pdfdoc.PDFName("DeviceRGB")),
                           ("Filter", pdfdoc.PDFName("FlateDecode")),
                           ("DecodeParms", pdfdoc.PDFDictionary({"Predictor": 15, "Colors": 3, "BitsPerComponent": 8,
                                                                 "Columns": w}))):
            stream.dictionary[key] = value
        return stream.format(document)


class _Picture(Flowable):
    """An image drawn ``width`` × ``height`` points, centred: a decoded image
    (``canvas.drawImage``; platypus' ``Image`` takes a file and would decode it again) or a
    :class:`_PassedPNG`, registered once as an image XObject and drawn by name. ``rows = (top,
    bottom, height)``: only pixel rows ``top:bottom`` of the PNG's ``height`` show, the whole
    image drawn at the same scale and clipped to the ``width`` × ``height`` box (one band of a
    figure cut across pages)."""

    def __init__(self, im: "PILImage.Image | _PassedPNG", width: float, height: float,
                 rows: tuple[int, int, int] | None = None):
        super().__init__()
        self.image, self.drawWidth, self.drawHeight, self.rows = im, width, height, rows
        self.hAlign = "CENTER"

    def wrap(self, *args):
        return self.drawWidth, self.drawHeight

    def draw(self):
        c = self.canv
        if not isinstance(self.image, _PassedPNG):
            c.drawImage(ImageReader(self.image), 0, 0, self.drawWidth, self.drawHeight, mask="auto")
            return
        if not c.hasForm(self.image.name):
            c._doc.addForm(self.image.name, _PNGImage(self.image))
        c._currentPageHasImages = 1
        c.saveState()
        if self.rows is None:
            c.scale(self.drawWidth, self.drawHeight)
        else:
            top, bottom, height = self.rows
            box = c.beginPath()
            box.rect(0, 0, self.drawWidth, self.drawHeight)
            c.clipPath(box, stroke=0, fill=0)
            per_row = self.drawHeight / (bottom - top)
            c.translate(0, -(height - bottom) * per_row)  # the rows below the band, under the box
            c.scale(self.drawWidth, height * per_row)
        c.doForm(self.image.name)
        c.restoreState()


def _cuts(im: PILImage.Image, rows: int) -> list[tuple[int, int]]:
    """Pixel bands of at most ``rows`` rows covering ``im``, each cut at a pixel row that is
    blank apart from vertical lines and bands (columns inked in most rows: axes, reference
    lines, shading), so no label, number or marker is split; a plain cut where there is none."""
    import numpy as np

    ink = np.asarray(im.convert("L")) < 246
    blank = ~ink[:, ink.mean(axis=0) < 0.3].any(axis=1)
    out, top = [], 0
    while ink.shape[0] - top > rows:
        window = np.flatnonzero(blank[top + rows // 2: top + rows])
        cut = top + rows // 2 + int(window[-1]) if window.size else top + rows
        out.append((top, cut))
        top = cut
    return out + [(top, ink.shape[0])]


def _headline(b, st: dict[str, ParagraphStyle]) -> Flowable:
    inner: list = [_p(b.title, st["h2"]), _p(b.big, st["big"])]
    if b.status:
        colour = VERDICT.get(b.status_class, INK).hexval()
        inner.append(Paragraph(f'<font color="{colour}"><b>{escape(b.status)}</b></font>', st["body"]))
    inner += [_p(t, st["body"]) for t in b.lines]
    for check, verdict in b.verdicts:
        colour = VERDICT.get(verdict_class(verdict), INK).hexval()
        inner.append(Paragraph(f'{escape(check)}: <font color="{colour}"><b>{escape(verdict)}</b></font>', st["body"]))
    card = RLTable([[inner]], colWidths=[WIDTH])
    card.setStyle(TableStyle([
        ("BOX", (0, 0), (-1, -1), 0.8, colors.HexColor("#D8D8E8")),
        ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#FAFAFF")),
        ("LEFTPADDING", (0, 0), (-1, -1), 10), ("RIGHTPADDING", (0, 0), (-1, -1), 10),
        ("TOPPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
    ]))
    return KeepTogether([card, Spacer(1, 8)])


def _blocks(section: Section, images: Mapping[str, bytes] | None, dpi: float, font: str,
            st: dict[str, ParagraphStyle]) -> list:
    """The flowables of ``section``; without ``images``, each figure block stands for its
    figure (:func:`layout`)."""
    out: list = []
    for b in section.blocks:
        if b.kind == "paragraph":
            out.append(_p(b.text, st["note"] if b.style == "note" else st["body"]))
        elif b.kind == "bullets":
            if b.title:
                out.append(_p(b.title, st["h2"]))
            style = st["warn"] if b.style == "warn" else st["bullet"]
            out += [Paragraph(escape(t), style, bulletText="•") for t in b.items]
        elif b.kind == "table":
            out += _table(b, font, st)
        elif b.kind == "figure":
            out += [b] if images is None else _figure(images[b.name], b.caption, dpi, st)
        elif b.kind == "headline":
            out.append(_headline(b, st))
        else:
            raise TypeError(f"report.pdf has no layout for a {b.kind!r} block")
    return out


def layout(ev: "Evaluation", sections: Sequence[Section]) -> list:
    """The flowables of the PDF report of ``ev`` (its ``sections``), each figure's place held by
    its :class:`~pleval.report.blocks.Figure` block, for :func:`render_pdf` to lay out once the
    figure is drawn: the tables, most of the report's layout (at 1M rows 0.2 of its 0.36 CPU-s,
    with 4,140 schools 0.8 of 2.0), need no figure, so :func:`pleval.report.save`'s figure
    process lays them out before it draws its share of the figures."""
    font = _fonts()
    st = _styles(font)
    story: list = [_p("Did personalized learning work?", st["title"]), _p(subtitle(ev), st["subtitle"])]
    for i, (s, heading) in enumerate(zip(sections, numbered_titles(sections))):
        if s.numbered and i:
            story.append(PageBreak())
        story += [_Bookmark(s.id, heading), _p(heading, st["h1"])]
        story += _blocks(s, None, 0.0, font, st)
    return story


def render_pdf(ev: "Evaluation", images: Mapping[str, bytes], *, dpi: float,
               sections: Sequence[Section] | None = None, story: list | None = None) -> bytes:
    """The PDF report of ``ev``; ``images`` maps figure names to PNG bytes made at ``dpi``.
    ``sections``: the report's sections if already built (``build(ev, images)``); ``story``:
    the report laid out but for its figures (:func:`layout`), used once."""
    font = _fonts()
    st = _styles(font)
    if story is None:
        story = layout(ev, sections if sections is not None else build(ev, images.keys()))
    story = [x for f in story for x in (_figure(images[f.name], f.caption, dpi, st) if isinstance(f, Figure) else [f])]
    footer = f"Did personalized learning work? — {source_name(ev)}"

    def on_page(canvas, doc):
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.setFillColor(GREY)
        canvas.drawString(MARGIN, 0.45 * inch, footer)
        canvas.drawRightString(PAGE[0] - MARGIN, 0.45 * inch, f"page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN + 0.3 * inch, title="Did personalized learning work?",
                            author=f"pleval {ev.provenance.get('pleval_version', '')}", subject=subtitle(ev),
                            invariant=1)
    with _binary_streams():
        doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()


@contextmanager
def _binary_streams():
    """Streams (pages, figures) Flate-compressed without the ASCII85 layer reportlab adds by
    default (``rl_config.useA85``): the same content, a fifth smaller, without reportlab's
    pure-Python ASCII85 encoder (a third of the time of a report with a dozen figures). The
    setting is restored afterwards."""
    old = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = old


__all__ = ["render_pdf", "layout"]
