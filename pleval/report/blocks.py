"""The content of a report, independent of its format.

A report is a list of :class:`Section`; a section is a title and a sequence of blocks:
:class:`Paragraph`, :class:`Bullets`, :class:`Table`, :class:`Figure` and :class:`Headline`
(the "at a glance" cards). Every format (:mod:`pleval.report.to_html`,
:mod:`pleval.report.to_pdf`, :mod:`pleval.report.to_markdown`) renders exactly these blocks, so
``report.html``, ``report.pdf`` and ``summary.md`` carry the same content. Every text is plain
text (each renderer escapes it); tables hold formatted strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

import pandas as pd


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; ``style`` ``"note"`` renders it small and grey (a footnote to what precedes)."""

    text: str
    style: str = ""
    kind: str = field(default="paragraph", init=False)


@dataclass(frozen=True)
class Bullets:
    """A bulleted list, optionally under a small heading; ``style`` ``"warn"`` colours the items."""

    items: tuple[str, ...]
    title: str = ""
    style: str = ""
    kind: str = field(default="bullets", init=False)


@dataclass(frozen=True)
class Table:
    """A table of formatted strings.

    ``frame`` holds the cells (its column names are the header); ``bold`` marks rows to print in
    bold (e.g. primary estimates, explained in ``note``); cells of ``verdict_columns`` are coloured
    by :func:`verdict_class`; ``note`` is printed under the table and should explain every
    column that is not self-explanatory. ``groups``: (name, label of its first column) of each
    group of columns after the first, in order: where a table too wide for the printed page is
    split into parts (the first column, the rows' key, repeated in each) and what each part
    holds; without groups a split may fall between any two columns.
    """

    frame: pd.DataFrame
    title: str = ""
    note: str = ""
    bold: tuple[bool, ...] = ()
    verdict_columns: tuple[str, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    kind: str = field(default="table", init=False)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def rows(self) -> list[list[str]]:
        cols = [list(map(str, self.frame.iloc[:, j].tolist())) for j in range(self.frame.shape[1])]
        return [list(r) for r in zip(*cols)] if cols else [[] for _ in range(len(self.frame))]

    def is_bold(self, i: int) -> bool:
        return bool(self.bold[i]) if i < len(self.bold) else False

    def right_aligned(self) -> list[bool]:
        """Per column: are all its cells numbers, number ranges ("-0.1 to +0.3") or dashes?
        Such columns align right."""
        f = self.frame
        # one match a column: its cells one space apart ("to" at a cell's edge is a word there too)
        return [_NUMERIC_COLUMN.fullmatch(" ".join(map(str, f.iloc[:, i].tolist()))) is not None
                for i in range(f.shape[1])]


@dataclass(frozen=True)
class Figure:
    """A figure of :func:`pleval.plots.evaluation_figures`, by name, with its caption."""

    name: str
    caption: str
    kind: str = field(default="figure", init=False)


@dataclass(frozen=True)
class Headline:
    """One "at a glance" card: a title, the headline number, its ``status`` (e.g. whether it is
    statistically significant; ``status_class`` colours it), sentences and coloured verdicts
    (pairs of text and verdict)."""

    title: str
    big: str
    lines: tuple[str, ...]
    verdicts: tuple[tuple[str, str], ...] = ()
    status: str = ""
    status_class: str = ""
    kind: str = field(default="headline", init=False)


_NUMERIC_COLUMN = re.compile(r"(?:[\d.,+\-−<>%()/—\s]|\bto\b)*")
"""Cells of numbers, number ranges ("-0.1 to +0.3") or dashes, one space apart."""

Block = Union[Paragraph, Bullets, Table, Figure, Headline]


@dataclass(frozen=True)
class Section:
    """A titled part of the report. Numbered sections are numbered in order by the renderers."""

    id: str
    title: str
    blocks: tuple[Block, ...]
    numbered: bool = True


def verdict_class(verdict: str) -> str:
    """``ok`` / ``warn`` / ``bad`` for a WWC verdict (the colour it is printed in)."""
    v = str(verdict).lower()
    if v.startswith(("meets wwc standards without", "strong", "moderate")):
        return "ok"
    if v.startswith(("meets wwc standards with ", "promising")):
        return "warn"
    if v.startswith(("not", "high", "does not meet")):
        return "bad"
    if "adjustment" in v or "requires" in v:
        return "warn"
    if v.startswith("satisfied") or v.startswith("low"):
        return "ok"
    return ""


def numbered_titles(sections) -> list[str]:
    """Section titles as printed: numbered sections get ``1.``, ``2.``, ... in order."""
    out, n = [], 0
    for s in sections:
        if s.numbered:
            n += 1
            out.append(f"{n}. {s.title}")
        else:
            out.append(s.title)
    return out


__all__ = ["Paragraph", "Bullets", "Table", "Figure", "Headline", "Block", "Section", "verdict_class",
           "numbered_titles"]
