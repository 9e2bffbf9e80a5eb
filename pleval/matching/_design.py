"""Covariate encoding shared by the propensity model, balance tables and the effect regression.

A covariate is *categorical* when its dtype is object / string / category / bool, or when the
caller lists it in ``categorical``. Categorical covariates become 0/1 indicator columns, one per
level except the reference (the most frequent level, so the intercept describes the typical
student); numeric covariates enter as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..inference.robust import radix_argsort, sorted_keys


def is_categorical(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    )


@dataclass(frozen=True)
class Encoded:
    """A numeric design matrix and where each column came from."""

    X: np.ndarray  # (n, p) float64, no intercept
    names: tuple[str, ...]  # design-column names, e.g. "race[black]"
    source: tuple[str, ...]  # the covariate each design column comes from
    level: tuple[object, ...]  # the level for indicator columns, None for numeric ones
    categorical: tuple[str, ...]  # the covariates that were expanded


_DENSE_RANGE = 1 << 16


def present_codes(codes: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, levels)`` renumbered over the levels that occur (``-1`` stays ``-1``): the
    codes of a subset of rows, taken from the codes of the whole column, made those of
    :func:`codes_and_levels` on the subset."""
    ok = codes >= 0
    present = np.bincount(codes if ok.all() else codes[ok], minlength=len(levels)) > 0
    if present.all():
        return codes, levels
    table = np.append(np.cumsum(present) - 1, -1)
    return table[codes], levels[present]


def codes_and_levels(s: pd.Series, known: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (``-1`` for missing) and the sorted levels of a column. Integers within a
    small range (0/1 indicators, grades) are coded through a table of the values present, with
    no hashing: the same codes and levels as :func:`pandas.factorize` with ``sort=True``.
    ``known``: the column's codes over sorted levels, already computed (e.g. gathered from those
    of the whole data); only renumbered (:func:`present_codes`)."""
    if known is not None:
        return present_codes(*known)
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu" and len(s):
        x = s.to_numpy()
        low, high = int(x.min()), int(x.max())
        if high - low < _DENSE_RANGE:
            k = x - low if low else x
            present = np.bincount(k, minlength=high - low + 1) > 0
            levels = (np.flatnonzero(present) + low).astype(s.dtype).astype(object)
            if present.all():  # every value from low to high: the codes are the values less low
                return k.astype(np.int64, copy=False), levels
            return (np.cumsum(present) - 1)[k], levels
    codes, levels = pd.factorize(s, sort=True, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), np.asarray(levels, dtype=object)


def narrow_codes(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Integer codes of ``n_levels`` levels (``-1``: missing) as ``int32`` where they fit: half
    the bytes of pandas' ``intp`` codes, for codes kept beside the data."""
    return codes.astype(np.int32, copy=False) if n_levels < 2**31 - 1 else codes


def factorize(values, sort: bool = False):
    """``pd.factorize(values, sort=sort)`` with its codes narrowed (:func:`narrow_codes`)."""
    codes, uniq = pd.factorize(values, sort=sort)
    return narrow_codes(codes, len(uniq)), uniq


TABLE_PER_KEY = 4
"""Keys' range per key up to which :func:`first_appearance_codes` numbers them by a table."""


def first_appearance_codes(key: np.ndarray, bound: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(key)`` of non-negative integers (codes in order of first appearance) as
    ``(codes, first position of each code)``, by a sort instead of a hash table
    (:func:`~pleval.inference.robust.sorted_keys`): the runs of equal keys in sorted order are the
    groups, a run's first element its first appearance (the sort is stable). Given ``bound`` (the
    keys are below it) of at most :data:`TABLE_PER_KEY` per key, by a table over the keys' range
    holding each key's first position instead (``np.minimum.at``: no sort; a block of 2¹⁸ keys
    2.9 against 4.1–4.4 ms for ``pd.factorize``)."""
    n = len(key)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if bound is not None and bound <= TABLE_PER_KEY * n:
        table = np.full(bound, n, np.int64)
        np.minimum.at(table, key, np.arange(n))
        at = table[key]
        is_first = at == np.arange(n)
        return (np.cumsum(is_first) - 1)[at], np.flatnonzero(is_first)
    ks, order = sorted_keys(key)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(ks[1:], ks[:-1], out=new[1:])
    del ks
    first = order[new]  # each group's first position
    is_first = np.zeros(n, bool)
    is_first[first] = True
    small = np.int32 if n < 2**31 else np.int64  # (a cumulative count of booleans: int32 is 2-6x faster)
    code_at = np.cumsum(is_first, dtype=small)  # groups numbered by first position (from 1)
    group = np.cumsum(new, dtype=small)  # each sorted position's group (from 1)
    codes = np.empty(n, np.int64)
    codes[order] = code_at[first][group - 1] - 1
    return codes, np.flatnonzero(is_first)


_PAIRS_PER_GROUP = 64
"""Below this many pairs a group on average, :func:`first_appearance_pairs` sorts the pairs' keys
(:func:`first_appearance_codes`) rather than visit each group (about 10 µs a group)."""


def first_appearance_pairs(group: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`first_appearance_codes` of the pairs ``(group, row)`` (keys ``group · n + row``;
    ``group`` ≥ 0, ``rows`` 0 … n − 1) without sorting them: with the pairs of each group
    together (a stable sort of the groups, when they are not already), each group's first
    position of each row is the least its rows write to a table over the rows (1M rows, 2.2M
    pairs of 208 groups: 23 against 140 ms). Many small groups sort the keys."""
    P = len(rows)
    if P == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new_run = np.flatnonzero(group[1:] != group[:-1]) + 1
    n_groups = int(np.count_nonzero(np.bincount(group)))
    if n_groups * _PAIRS_PER_GROUP > P:
        return first_appearance_codes(group.astype(np.int64) * n + rows)
    order = None
    if len(new_run) + 1 > n_groups:  # some group in several runs: the pairs grouped, stably
        order = radix_argsort(group)
        group, rows = group[order], rows[order]
        new_run = np.flatnonzero(group[1:] != group[:-1]) + 1
    small = np.int32 if max(P, n) < 2**31 else np.int64
    pos = np.arange(P, dtype=small)
    table = np.empty(n, small)
    first = np.empty(P, small)  # the position of each pair's first occurrence (grouped order)
    bounds = [0, *new_run.tolist(), P]
    for a, b in zip(bounds[:-1], bounds[1:]):
        r = rows[a:b]
        table[r] = P
        np.minimum.at(table, r, pos[a:b])
        first[a:b] = table[r]
    if order is not None:  # in the pairs' own order: grouping kept each group's pairs in order
        order = order.astype(small, copy=False)
        at = np.empty(P, small)
        at[order] = order[first]
        first = at
    is_first = first == pos
    codes = (np.cumsum(is_first, dtype=small) - 1)[first]
    return codes, np.flatnonzero(is_first)


_FILL_ROWS = 8192


def encode(df: pd.DataFrame, covariates, categorical=(), *, intercept: bool = False, codes=None,
           rows: np.ndarray | None = None) -> Encoded:
    """Expand ``covariates`` of ``df`` into a float design matrix (a leading column of ones,
    named "const", when ``intercept``). ``codes``: ``{column: (codes, levels)}`` of categorical
    columns already coded (:func:`codes_and_levels`'s ``known``): such a column need not be a
    column of ``df``. ``rows``: positions of the rows whose design rows are wanted (default:
    every row); the levels, reference levels and checks are still those of every row, so
    ``encode(df, ..., rows=r).X`` is ``encode(df, ...).X[r]`` without forming the rest.

    Raises :class:`DataError` for a missing column or a missing value (callers drop and count
    incomplete rows before encoding).
    """
    known = codes or {}
    covariates = list(dict.fromkeys(covariates))
    missing = [c for c in covariates if c not in df.columns and c not in known]
    if missing:
        raise DataError(f"covariate column(s) not found in the data: {', '.join(map(repr, missing))}")
    n = len(df) if rows is None else len(rows)
    parts = []  # (name, source, level, values or (codes, j))
    cats = []
    for c in covariates:
        s = df[c] if c not in known else None
        if c in known or c in categorical or is_categorical(s):
            codes, levels = codes_and_levels(s, known.get(c))
            if (codes < 0).any():
                raise DataError(f"covariate {c!r} has {(codes < 0).sum():,} missing value(s)")
            ref = int(np.argmax(np.bincount(codes, minlength=len(levels))))  # the most frequent of every row
            cats.append(c)
            codes = codes if rows is None else codes[rows]
            parts += [(f"{c}[{lev}]", c, lev, (codes, j)) for j, lev in enumerate(levels) if j != ref]
        else:  # numpy numbers are read as they are (cast to float as X is filled): no converted copy
            numpy_number = isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf"
            x = s.to_numpy() if numpy_number else pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64,
                                                                                            na_value=np.nan)
            if x.dtype.kind not in "iu" and not np.isfinite(x).all():
                raise DataError(nonfinite_message(df, c, x))
            parts.append((c, c, None, x if rows is None else x[rows]))
    if intercept:
        parts.insert(0, ("const", "const", None, None))
    X = np.empty((n, len(parts)))  # filled column by column: one copy of the data
    for lo in range(0, n, _FILL_ROWS):  # in blocks of rows that stay in cache (the columns are strided)
        rows = slice(lo, lo + _FILL_ROWS)
        for j, (_, _, _, val) in enumerate(parts):
            if val is None:
                X[rows, j] = 1.0
            elif isinstance(val, tuple):
                np.equal(val[0][rows], val[1], out=X[rows, j], casting="unsafe")
            else:
                X[rows, j] = val[rows]
    return Encoded(X, tuple(p[0] for p in parts), tuple(p[1] for p in parts), tuple(p[2] for p in parts), tuple(cats))


def nonfinite_message(df: pd.DataFrame, c: str, x: np.ndarray) -> str:
    """The error for covariate ``c`` whose numbers ``x`` (one per row of ``df``) hold infinite or
    missing values: how many of each, and the rows of the infinite ones (before 2026-12-05 both
    were called "missing or non-numeric")."""
    from ..checks import _rows

    inf, miss = np.isinf(x), np.isnan(x)
    parts = [f"{int(inf.sum()):,} row(s) are infinite ({_rows(df, inf)})"] * bool(inf.any())
    parts += [f"{int(miss.sum()):,} row(s) are missing (drop or fill them first)"] * bool(miss.any())
    return f"column {c!r} (covariates): " + "; ".join(parts)


def combine_codes(df: pd.DataFrame, columns, codes=None, out: dict | None = None) -> np.ndarray:
    """One int64 cell code per row for the combination of ``columns`` (mixed-radix of the
    per-column factorize codes; ``-1`` where any key is missing). Equal rows share a code.
    ``codes``: as :func:`encode`'s; ``out``: a dict that receives each column's
    ``(codes, levels)``."""
    n = len(df)
    code = np.zeros(n, dtype=np.int64)
    miss = None
    top = 1  # a bound on the codes so far (code < top): no pass over them while it stays small
    for c in columns:
        known = (codes or {}).get(c)
        k, levels = codes_and_levels(None if known is not None else df[c], known)
        if out is not None:
            out[c] = (k, levels)
        if len(k) and k.min() < 0:
            miss = (k < 0) if miss is None else miss | (k < 0)
            k = np.maximum(k, 0)
        code *= len(levels) + 1
        code += k
        top *= len(levels) + 1
        if len(levels) and top > 2**50 and code.max(initial=0) > 2**50:  # keep the radix product exact
            code = pd.factorize(code, sort=True)[0].astype(np.int64)
            top = int(code.max(initial=0)) + 1
    if miss is not None:
        code[miss] = -1
    return code
