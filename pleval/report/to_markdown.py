"""``summary.md``: the report's sections (:mod:`pleval.report.sections`) as Markdown, figures
linked to their files in ``plots/``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import pandas as pd

from .._text import markdown_table
from .blocks import Section
from .sections import build, subtitle

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation


def _table(df: pd.DataFrame) -> str:
    if not len(df):
        return "_(none)_"
    return _pipe_table(df) or markdown_table(df, disable_numparse=True)


def _pipe_table(df: pd.DataFrame) -> str | None:
    """``markdown_table(df, disable_numparse=True)`` for a frame of plain one-line strings (the
    report's tables), the same text written directly; None for any other frame. tabulate's pipe
    format, for such cells: each cell stripped of surrounding white space and padded on the
    right to its column's width, the widest of its cells and its header plus 2 (tabulate's
    ``MIN_PADDING``), widths as tabulate measures them (``wcwidth.wcswidth`` where it uses it);
    a space each side, ``|`` between; under the header ``:`` and dashes (left aligned, what
    tabulate makes of a column of strings with number parsing off). tabulate types and formats
    every cell first: 0.048 against 0.005 CPU-s for the report's 14 tables at 1M rows."""
    import tabulate

    if tabulate.PRESERVE_WHITESPACE:
        return None
    width = tabulate.wcwidth.wcswidth if tabulate.wcwidth is not None and tabulate.WIDE_CHARS_MODE else len
    header = [h.replace("|", "\\|") if isinstance(h, str) else None for h in df.columns]
    columns = [[v.strip().replace("|", "\\|") if isinstance(v, str) else None for v in df.iloc[:, j].tolist()]
               for j in range(df.shape[1])]
    if None in header or any(None in c for c in columns):
        return None
    text = "\t".join(header + [v for c in columns for v in c])
    if "\n" in text or "\r" in text or "\x1b" in text:  # lines in cells, terminal colours: tabulate's own cases
        return None
    header_widths, widths = [width(h) for h in header], [[width(v) for v in c] for c in columns]
    if min(header_widths) < 0 or any(min(w) < 0 for w in widths):  # (a control character)
        return None
    col = [max(h + 2, max(w)) for h, w in zip(header_widths, widths)]
    cells = [[v + " " * (n - w) for v, w in zip(c, ws)] for c, ws, n in zip(columns, widths, col)]
    lines = ["| " + " | ".join(h + " " * (n - w) for h, w, n in zip(header, header_widths, col)) + " |",
             "|" + "|".join(":" + "-" * (n + 1) for n in col) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in zip(*cells)]
    return "\n".join(lines)


def render_markdown(ev: "Evaluation", plot_files: Mapping[str, str], *,
                    sections: Sequence[Section] | None = None) -> str:
    """The Markdown summary of ``ev``; ``plot_files`` maps figure names to their paths.
    ``sections``: the report's sections if already built (``build(ev, plot_files)``)."""
    if sections is None:
        sections = build(ev, plot_files.keys())
    out = ["# Did personalized learning work?", "", f"*{subtitle(ev)}*", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if b.kind == "paragraph":
                out += [f"*{b.text}*" if b.style == "note" else b.text, ""]
            elif b.kind == "bullets":
                out += ([f"**{b.title}**", ""] if b.title else []) + [f"- {t}" for t in b.items] + [""]
            elif b.kind == "table":
                out += ([f"### {b.title}", ""] if b.title else []) + [_table(b.frame), ""]
                out += [f"*{b.note}*", ""] if b.note else []
            elif b.kind == "figure":
                out += [f"![{b.caption}]({plot_files[b.name]})", ""]
            elif b.kind == "headline":
                out += [f"**{b.title}: {b.big}.**" + (f" {b.status}." if b.status else ""), ""]
                out += [f"- {t}" for t in b.lines]
                out += [f"- {check}: **{verdict}**" for check, verdict in b.verdicts] + [""]
            else:
                raise TypeError(f"summary.md has no layout for a {b.kind!r} block")
    out += ["The full report: `report.html` (for print: `report.pdf`); `run.toml` repeats this run.", ""]
    return "\n".join(out)
