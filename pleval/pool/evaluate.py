"""The whole evaluation with a comparison pool given apart: ``estimate_pool(pl, pool, ...)``.

The pool is matched by an engine (:func:`.match.match_pool`); then :func:`pleval.estimate`
runs on the PL rows and the comparison rows used, with that match: effects, balance (before
matching against the whole pool, :mod:`.result`), sensitivity, school effects, subgroups,
rating and report are those of the in-memory evaluation of PL + pool. Placebo schools
re-match the pool's comparison schools against the rest of the pool (:mod:`.placebo`; every
engine). One thing differs, and the evaluation's notes say so: the data
summary counts the PL rows and the comparison rows used. With ``subject=`` the pool is
restricted to that subject, as the whole data are in memory.

Provenance (``provenance.json``, and ``run.toml``'s ``[pool]``, which repeats the run) records
the pool's path or table, the engine, the eligible pool rows and the pool's fingerprint.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import pandas as pd

from ..checks import id_columns
from ..data import SAMPLE_COLUMNS, Columns, read_table, resolve_columns, with_binary_treatment
from ..errors import DataError
from .match import ENGINES, _make_engine, in_pl_file, match_pool, pl_keys, pool_record, record_of, without_pl_rows


def pl_columns(pl: pd.DataFrame, columns: Columns | Mapping[str, Any] | None) -> tuple[pd.DataFrame, Columns]:
    """The PL file with a treatment column (1 where it is absent) and its column roles: those
    given, the others taking the sample-data names present."""
    if not isinstance(columns, Columns):
        given = dict(columns or {})
        base = SAMPLE_COLUMNS
        if base.treatment not in pl.columns and "treatment" not in given:
            pl = pl.assign(**{base.treatment: 1})
        columns, _ = resolve_columns(pl, base, given)
    elif columns.treatment not in pl.columns:
        pl = pl.assign(**{columns.treatment: 1})
    return pl, columns


def _memory_pool(pool, table, columns: Columns, subject):
    """The pool read into memory (engine "memory"), restricted to ``subject``, and its fingerprint."""
    from .source import open_pool

    src = open_pool(pool, table=table)
    frame = pool if isinstance(pool, pd.DataFrame) else src.con.execute(f"SELECT * EXCLUDE (_rid) FROM {src.relation}").df()
    if subject is not None and columns.subject:
        frame = frame[frame[columns.subject].astype(str) == str(subject)]
    return frame, src.fingerprint


def _placebo_note(ev) -> str:
    """How many of the pool's comparison schools played placebo, in how many rounds."""
    res = next((d["placebo"] for d in ev.details.values() if "placebo" in d), None)
    if res is None:
        return "placebo schools: none could be run (see the notes)"
    return (f"placebo schools are re-matched against the rest of the pool: {res.rounds['placebo_school'].nunique():,} "
            f"comparison schools in {res.rounds['round'].nunique():,} rounds, each a match against the pool "
            "(--n-placebo bounds them)")


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
        ``k``, ``caliper``, ``band`` go to the matcher; ``placebo``, ``n_placebo`` to the
        placebo schools, each round re-matched against the pool by the same engine).

    Returns the :class:`~pleval.estimate.Evaluation`, its provenance naming the pool (path or
    table, engine, eligible rows, fingerprint).
    """
    from ..estimate import estimate, resolve_options, with_pretest_bands
    from ..subgroups import BAND
    from ..heterogeneity.placebo import _InMemoryRounds
    from .placebo import PoolRounds

    if isinstance(pl, (str, Path)):
        pl = read_table(pl, ids=partial(id_columns, given=columns))  # (the id columns read as text in full: '0042')
    if not isinstance(pl, pd.DataFrame):
        raise DataError(f"expected a DataFrame or a file path for the PL students; got {type(pl).__name__}")
    if engine not in ENGINES:
        raise DataError(f"engine must be one of {ENGINES}; got {engine!r}")
    method, opts, match_opts = resolve_options("matched", method, options)
    pl, columns = pl_columns(pl, columns)
    if subject is not None and columns.subject:
        pl = pl[pl[columns.subject].astype(str) == str(subject)]
        if not len(pl):
            raise DataError(f"column {columns.subject!r} (subject): no PL rows for subject {subject!r}")
    t = columns.treatment
    rounds, notes = None, []
    if BAND in opts["subgroups"]:  # ranked among the PL students: the pool is not brought into memory to rank it
        pl = with_pretest_bands(pl, columns, opts["bands"])
        notes.append(f"subgroup {BAND}: the PL students' pretests ranked within grade × subject (with a comparison "
                     "pool given apart the pool is not ranked; in one file the bands rank every row)")
    if engine == "memory":
        frame, fp = _memory_pool(pool, table, columns, subject)
        m = match_pool(pl, frame, columns, method, engine="memory", **match_opts)
        record = pool_record(pool, table, "memory", f"{len(frame):,} rows read into memory", fp,
                             int(m.sample_sizes().loc["all", "comparison"]))
        if opts["placebo"] and columns.school:  # the placebo rounds' pool: without the PL file's students, as the match's
            rest = frame[~in_pl_file(frame, pl_keys(pl, columns))]
            full, work = with_binary_treatment(pd.concat([pl, rest.assign(**{t: 0})], ignore_index=True), columns)
            rounds = _InMemoryRounds(full, work, method, {**match_opts, "seed": seed})
    else:
        eng = _make_engine(engine, pool, table, spark)
        if subject is not None and columns.subject:
            eng = eng.restricted(f"CAST({eng.quote(columns.subject)} AS {eng.string_type}) = {eng.literal(str(subject))}",
                                 "pleval_pool_subject")
        m = match_pool(pl, eng, columns, method, engine=engine, progress=progress, **match_opts)
        record = record_of(m, pool, table)
        if opts["placebo"] and columns.school:
            # the placebo rounds' pool: without the PL file's rows, as the match's
            eng = without_pl_rows(eng, pl_keys(pl, columns), "pleval_placebo_not_pl", count=False)[0]
            rounds = PoolRounds(eng, pl[columns.school].dropna(), columns.replace(treated_label=None), method,
                                match_opts, progress)
    used = m.data[m.data[t].to_numpy() == 0]
    small = pd.concat([pl, used], ignore_index=True)
    pl_opts = {k: v for k, v in options.items() if k not in match_opts}
    if rounds is None:
        pl_opts["placebo"] = False
    ev = estimate(small, columns, design="matched", method=method, subject=subject, seed=seed, progress=progress,
                  matcher=lambda *a, **k: m, placebo_rounds=rounds, **pl_opts)
    n_used = int((m.data[t].to_numpy() == 0).sum())
    notes.insert(0, f"comparison pool: {record['description']}, {record['eligible_rows']:,} eligible rows ({record['engine']}); "
                    f"matched per exact-key partition, only the {n_used:,} comparison rows used are held in memory "
                    "(the data summary counts those)"
                    + (f"; {_placebo_note(ev)}" if rounds is not None else ""))
    prov = dict(ev.provenance, pool=record)
    return dataclasses.replace(ev, notes=tuple(notes) + tuple(ev.notes), provenance=MappingProxyType(prov))
