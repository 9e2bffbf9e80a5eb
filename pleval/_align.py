"""Several vectors combined row by row: the one rule every public function that takes them follows
(docs/api.md, "Several vectors").

* pandas Series and DataFrames are paired by their labels (the index), as pandas pairs them: each is
  put in the order of the first of them. They must hold the same labels, each once (a label in one
  and not the other is a :class:`DataError` naming both arguments and the label).
* A Series (or DataFrame) with an array, a list or a number is paired by position.
* A vector result is labelled like the first argument when that is a Series; a fit keeps the labels
  of its rows (:func:`index_of`), by which ``cluster_robust`` pairs a pandas ``cluster``.
* pandas numbers with missing values (nullable ``Float64``/``Int64``, or ``object`` holding ``pd.NA``
  or ``None``) become floats with NaN, so each function's own check of missing values applies.

pandas is not imported here: a caller that has none (``pleval convert 0.08``) has no pandas objects.
"""

from __future__ import annotations

import functools
import inspect
import sys

from .errors import DataError


def _pandas():
    """The pandas module when it is loaded (else no argument can be a pandas object), or None."""
    return sys.modules.get("pandas")


def is_labelled(x) -> bool:
    """True for a pandas Series or DataFrame (an object whose rows carry labels)."""
    pd = _pandas()
    return pd is not None and isinstance(x, (pd.Series, pd.DataFrame))


def _example(labels) -> str:
    return repr(labels[0]) if len(labels) else ""


def paired(names, *xs) -> list:
    """``xs`` (arguments called ``names``) ready to combine row by row (module docstring): every
    Series or DataFrame among them reindexed to the labels of the first. Others are returned as
    given."""
    xs = list(xs)
    at = [i for i, x in enumerate(xs) if is_labelled(x)]
    if len(at) < 2:
        return xs
    first, a = xs[at[0]].index, names[at[0]]
    for i in at[1:]:
        index, b = xs[i].index, names[i]
        if index.equals(first):
            continue
        for name, idx in ((a, first), (b, index)):
            if idx.has_duplicates:
                raise DataError(f"{a} and {b} are paired by label, but {name} holds the label "
                                f"{_example(idx[idx.duplicated()])} more than once: give each row its own label, or "
                                "pass arrays (paired by position)")
        only_a, only_b = first.difference(index, sort=False), index.difference(first, sort=False)
        if len(only_a) or len(only_b):
            miss = (f"{_example(only_a)} is in {a} but not in {b}" if len(only_a)
                    else f"{_example(only_b)} is in {b} but not in {a}")
            kind = "Series" if xs[at[0]].ndim == xs[i].ndim == 1 else "pandas objects"
            raise DataError(f"{a} and {b} are {kind} with different labels ({len(only_a) + len(only_b)} not in both; "
                            f"e.g. {miss}): give them the same labels (they are paired by label), or pass arrays "
                            "(paired by position)")
        xs[i] = xs[i].reindex(first)
    return xs


def index_of(*xs):
    """The labels of the rows that :func:`paired` combines ``xs`` into: the index of the first
    Series or DataFrame among them (the others put in its order, or paired with it by position),
    or None when none is one."""
    return next((x.index for x in xs if is_labelled(x)), None)


def floats(x, name: str):
    """``x`` as a float array, a missing value (NaN, None, ``pd.NA``) as NaN; a :class:`DataError`
    naming the argument when it holds something that is not a number."""
    import numpy as np

    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        pass
    pd = _pandas()
    if pd is None:  # pragma: no cover - pandas missing values need pandas
        import pandas as pd
    a = np.array(x, dtype=object)
    a[pd.isna(a)] = np.nan
    try:
        return a.astype(float)
    except (TypeError, ValueError):
        bad = next(v for v in a.ravel() if not _is_number(v))
        raise DataError(f"{name} must hold numbers; it holds {bad!r}") from None


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def label(values, like):
    """``values`` as a Series with the labels of ``like`` when ``like`` is a Series and ``values`` a
    vector of its length; a tuple of results element by element; anything else as it is."""
    if isinstance(values, tuple) and not hasattr(values, "_fields"):
        return tuple(label(v, like) for v in values)
    pd = _pandas()
    if pd is None or not isinstance(like, pd.Series):
        return values
    import numpy as np

    if isinstance(values, np.ndarray) and values.ndim == 1 and len(values) == len(like):
        return pd.Series(values, index=like.index)
    return values


def by_label(*names: str, as_is: tuple[str, ...] = (), labelled: bool = True):
    """Decorator: the arguments ``names`` (numbers) and ``as_is`` (labels or codes) of the function
    paired by :func:`paired`; pandas ones handed on as arrays (``names`` as floats by
    :func:`floats`), and a vector result labelled like the first of ``names`` (:func:`label`;
    ``labelled=False``: a result that is not one value per row, left as it is). Calls without
    pandas objects go straight through."""
    order = names + as_is

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if not any(is_labelled(a) for a in (*args, *kwargs.values())):
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            given = [n for n in order if n in bound.arguments]
            like = bound.arguments.get(names[0]) if labelled else None
            for n, x in zip(given, paired(given, *(bound.arguments[n] for n in given))):
                if is_labelled(x):
                    bound.arguments[n] = floats(x, n) if n in names else x.to_numpy()
            return label(fn(*bound.args, **bound.kwargs), like)

        return call

    return wrap


__all__ = ["paired", "index_of", "floats", "label", "by_label", "is_labelled"]
