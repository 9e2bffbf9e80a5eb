"""Errors and warnings raised by pleval.

Every message names the column (or option) at fault, counts the offending rows where
there are rows to count, and says what to do about it.
"""

from __future__ import annotations


class PlevalError(Exception):
    """Base class of every error pleval raises on purpose."""


class DataError(PlevalError, ValueError):
    """Bad or missing columns or values in the input data."""


class DesignError(PlevalError, ValueError):
    """The data cannot support the requested design (no treated units, one school,
    no overlap, perfect separation, an empty exact-match cell, ...)."""


class ConvergenceError(PlevalError, RuntimeError):
    """An iterative fit did not converge."""


class PlevalWarning(UserWarning):
    """A soft problem worth the analyst's attention (poor balance, few clusters, ...)."""


__all__ = ["PlevalError", "DataError", "DesignError", "ConvergenceError", "PlevalWarning"]
