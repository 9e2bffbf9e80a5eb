"""Numbers in printed text: a value that rounds to zero prints as ``0.00``, never ``-0.00``.

Python's format keeps the sign of a small negative number or of ``-0.0`` after rounding
(``f"{-0.001:+.2f}"`` is ``-0.00``), which reads as a negative effect. The command-line
tables, the report's numbers (:func:`pleval.findings.fmt`) and the forest plot's number column
pass their text through :func:`unsigned_zeros`. Standard library only, so the command line can
use it without importing pandas.
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


__all__ = ["percent", "unsigned_zeros"]
