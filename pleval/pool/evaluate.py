"""The whole evaluation with a comparison pool given apart: ``estimate_pool(pl, pool, ...)``.

The pool is matched by an engine (:func:`.match.match_pool`); then :func:`pleval.estimate`
runs on the PL rows and the comparison rows used, with that match: effects, balance (before
matching against the whole pool, :mod:`.result`), sensitivity, school effects, subgroups,
rating and report are those of the in-memory evaluation of PL + pool. Two things differ, and the
evaluation's notes say so: the data summary counts the PL rows and the comparison rows used,
and placebo schools (which re-match every comparison school against the rest of the pool) are
not run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import pandas as pd

from ..data import SAMPLE_COLUMNS, Columns, read_table, resolve_columns
from ..errors import DataError
from .match import match_pool


def estimate_pool(
    pl,
    pool,
    columns: Columns | Mapping[str, Any] | None = None,
    method: str | None = None,
    *,
    engine: str = "duckdb",
    table: str | None = None,
    spark=None,
    subject: str | None = None,
    seed: int = 0,
    progress=None,
    **options,
):
    """Evaluate a PL program whose comparison students come from ``pool``.

    Parameters
    ----------
    pl : DataFrame or path
        The PL students (every row treated; the treatment column may be left out).
    pool : a Parquet folder or file, a DuckDB database file, a DataFrame, or (``engine="spark"``)
        a Spark table name or DataFrame (:func:`pleval.pool.match_pool`).
    columns : Columns or mapping of roles given; others take the sample-data names present.
    method : "propensity" (default) or "vcg".
    engine, table, spark : where and how the pool is matched (:func:`pleval.pool.match_pool`).
    subject, seed, progress, options : as :func:`pleval.estimate` (matching options such as
        ``k``, ``caliper``, ``band`` go to the matcher).

    Returns the :class:`~pleval.estimate.Evaluation`, its provenance naming the pool and engine.
    """
    from ..estimate import estimate, resolve_options

    if isinstance(pl, (str, Path)):
        pl = read_table(pl)
    if not isinstance(pl, pd.DataFrame):
        raise DataError(f"expected a DataFrame or a file path for the PL students; got {type(pl).__name__}")
    method, opts, match_opts = resolve_options("matched", method, options)
    if not isinstance(columns, Columns):
        given = dict(columns or {})
        base = SAMPLE_COLUMNS
        if base.treatment not in pl.columns and "treatment" not in given:
            pl = pl.assign(**{base.treatment: 1})
        columns, _ = resolve_columns(pl, base, given)
    elif columns.treatment not in pl.columns:
        pl = pl.assign(**{columns.treatment: 1})
    if subject is not None and columns.subject:
        pl = pl[pl[columns.subject].astype(str) == str(subject)]
        if not len(pl):
            raise DataError(f"column {columns.subject!r} (subject): no PL rows for subject {subject!r}")
    m = match_pool(pl, pool, columns, method, engine=engine, table=table, spark=spark, progress=progress, **match_opts)
    t = columns.treatment
    used = m.data[m.data[t].to_numpy() == 0]
    small = pd.concat([pl, used], ignore_index=True)
    pl_opts = {k: v for k, v in options.items() if k not in match_opts and k != "placebo"}
    ev = estimate(small, columns, design="matched", method=method, subject=subject, seed=seed, progress=progress,
                  matcher=lambda *a, **k: m, placebo=False, **pl_opts)
    note = (f"comparison pool: {m.diagnostics['comparison pool']}; matched per exact-key partition, only the "
            f"{m.n_comparison_used:,} comparison rows used are held in memory (the data summary counts those); "
            "placebo schools, which re-match comparison schools against the whole pool, are not run with a pool")
    prov = dict(ev.provenance, pool={"source": str(pool) if not isinstance(pool, pd.DataFrame) else "DataFrame",
                                     "engine": engine, "eligible_rows": m.n_pool})
    return dataclasses.replace(ev, notes=(note,) + tuple(ev.notes), provenance=MappingProxyType(prov))
