"""Numbers in printed text: a value that rounds to zero prints as ``0.00``, never ``-0.00``;
a value beside a verdict keeps the digits that show on which side of the verdict's threshold
it lies (:func:`fixed`).

Python's format keeps the sign of a small negative number or of ``-0.0`` after rounding
(``f"{-0.001:+.2f}"`` is ``-0.00``), which reads as a negative effect. The command-line
tables, the report's numbers (:func:`pleval.findings.fmt`) and the forest plot's number column
pass their text through :func:`unsigned_zeros`. Every Markdown table pleval writes goes through
:func:`markdown_table`, which escapes the ``|`` in its cells. Standard library only (a table's
frame comes from the caller), so the command line can use it without importing pandas.
"""

from __future__ import annotations

import math
import re

_SIGNED_ZERO = re.compile(r"(?<![\w.])[-+](0\.0+)(?![0-9])")


def unsigned_zeros(text: str) -> str:
    """``text`` with every signed zero (``-0.00``, ``+0.0``) written without its sign."""
    return _SIGNED_ZERO.sub(r"\1", text)


def fixed(x: float, nd: int, *edges: float, signed: bool = False) -> str:
    """``x`` with ``nd`` decimals, or with as many more as it takes for the rounded text to lie on
    the same side of every edge as ``x`` itself. Numbers printed beside a verdict pass its
    threshold: ``fixed(0.0496, 3, 0.05)`` is ``0.0496`` (not ``0.050``, which reads as on the
    threshold), ``fixed(0.00026, 1, 0)`` is ``0.0003`` (a positive number never prints as 0). An
    ``x`` on an edge to a relative 1e-9 keeps ``nd`` (more digits would only spell out rounding
    noise). ``signed``: a leading ``+`` on positive numbers."""
    x, sign, digits = float(x), "+" if signed else "", nd
    while True:  # ends: with enough digits the text reads back as x itself
        text = f"{x:{sign}.{digits}f}"
        if all(_side(float(text), e) == _side(x, e) for e in edges):
            return text
        digits += 1


def fmt_p(p, alpha: float = 0.05) -> str:
    """A p-value with three decimals ("< 0.001" below that; "—" if missing), more where three
    would put it on or across ``alpha``: 0.0496 and 0.0504, not 0.050 beside both "significant"
    and "not significant" at α = 0.05. Below an ``alpha`` under 0.001, "< α" (never "0.000")."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    floor = min(alpha, 0.001)
    if v < floor:
        return f"< {floor:g}"
    return fixed(v, 3, alpha)


def pl_left_out(n_all: int, n_in: int, why: str) -> str:
    """Whom a matched estimate is about when ``n_all − n_in`` of the ``n_all`` PL rows are not in
    it, ``why`` their reasons with counts: the sentence of the report and of the matched
    effect's note."""
    return (f"{n_all - n_in:,} of {n_all:,} PL rows ({(n_all - n_in) / n_all:.1%}) are not in the estimate ({why}): "
            "it is the effect on the PL students in it.")


def _side(x: float, edge: float) -> int:
    """-1, 0 or 1: ``x`` below, on (to a relative 1e-9) or above ``edge``."""
    return 0 if abs(x - edge) <= 1e-9 * abs(edge) else int(x > edge) - int(x < edge)


def percent(x: float) -> str:
    """A share as a percent with the digits it needs: 80%, 99.9% (not "100%" for 0.999)."""
    for digits in range(4):
        text = f"{x:.{digits}%}"
        if abs(float(text[:-1]) / 100 - x) < 1e-12:
            return text
    return f"{x:.4%}"


def markdown_table(frame, **options) -> str:
    """``frame`` (a pandas DataFrame) as a Markdown pipe table, each ``|`` in a text cell or header
    written ``\\|`` so that the cell stays one cell (``|SMD| > 0.1``, a school named
    ``North|South``); ``options`` go to ``DataFrame.to_markdown`` (``index=False`` unless given)."""
    def escape(v):
        return v.replace("|", "\\|") if isinstance(v, str) else v

    escaped = frame.rename(columns=escape).map(escape)
    return escaped.to_markdown(**{"index": False, **options})


__all__ = ["fixed", "fmt_p", "markdown_table", "percent", "unsigned_zeros"]
