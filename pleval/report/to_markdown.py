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
    return markdown_table(df, disable_numparse=True) if len(df) else "_(none)_"


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
