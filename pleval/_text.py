"""Numbers in printed text: a value that rounds to zero prints as ``0.00``, never ``-0.00``.

Python's format keeps the sign of a small negative number or of ``-0.0`` after rounding
(``f"{-0.001:+.2f}"`` is ``-0.00``), which reads as a negative effect. The command-line
tables, the report's numbers (:func:`pleval.findings.fmt`) and the forest plot's number column
pass their text through :func:`unsigned_zeros`. Every Markdown table pleval writes goes through
:func:`markdown_table`, which escapes the ``|`` in its cells. Standard library only (a table's
frame comes from the caller), so the command line can use it without importing pandas.
"""

from __future__ import annotations

import re

_SIGNED_ZERO = re.compile(r"(?<![\w.])[-+](0\.0+)(?![0-9])")


def unsigned_zeros(text: str) -> str:
    """``text`` with every signed zero (``-0.00``, ``+0.0``) written without its sign."""
    return _SIGNED_ZERO.sub(r"\1", text)



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


__all__ = ["markdown_table", "percent", "unsigned_zeros"]
