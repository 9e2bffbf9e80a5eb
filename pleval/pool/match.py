"""``match_pool``: PL students matched against a comparison pool given apart, in or out of core.

The PL file (one arm: every row treated) is in memory; the pool (every row a comparison) stays
where it is (:mod:`.source`). What :func:`pleval.match` does to the whole data is done here to
the two pieces, with the pool's share computed by aggregate queries:

1. *Exclusions*: pool rows with a missing role, outcome or key, and (VCG) comparison rows in PL
   schools, are counted by reason and left out, as in memory.
2. *Propensity model* (``method="propensity"``): the exact full-data logit MLE by Newton passes
   over the pool (:mod:`.logit`); the caliper in SD of the logit PS uses the pool's variance of
   the fitted logit from one more pass.
3. *Matching*: per exact-key partition with the in-memory matchers (:mod:`.partition`).
4. *Result*: a :class:`~.result.PoolMatchResult` whose data are the PL rows and the comparison
   rows used — the matched sample, its estimate and its balance are those of
   ``pleval.match(pd.concat([pl, pool]), ...)`` (``tests/test_pool.py`` checks it to 1e-12),
   without the pool ever being in memory.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import (
    DROP_ROLES, Columns, _coerce_treatment, match_label, pl_by_subject, pl_rows_frame, student_keys, validate,
)
from ..errors import DataError, DesignError
from ..matching import _long, _method_options, _strata
from ..matching._design import is_categorical
from ..matching.analysis_weights import ZERO_WEIGHT, set_analysis_weights
from ..matching.propensity import DEFAULT_CALIPER, CommonSupport, PropensityModel
from ..matching.results import set_size_diagnostics
from . import logit
from .engine import SqlEngine, as_python, kind, level_values
from .partition import Plan
from .result import PoolMatchResult, pool_before

ENGINES = ("duckdb", "spark", "memory")
METHODS = ("propensity", "vcg")
_DROP_ROLES = tuple(r for r in DROP_ROLES if r not in ("treatment", "takeup"))
"""The roles whose missing values drop a pool row, in the order of :func:`pleval.data.validate`
(:data:`pleval.data.DROP_ROLES`; the pool holds no treated row and needs no take-up)."""
_NUMERIC_ROLES = ("outcome", "pretest", "weight")
WARM_SAMPLE = 50_000
"""Pool rows sampled for the starting values of the out-of-core logit (:func:`.logit.warm_start`)."""


def _no_progress(message, done=None, total=None):
    return None


def _pl_frame(pl: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """The PL file with a 0/1 treatment column that is 1 on every row (missing stays missing)."""
    t = columns.treatment
    if t not in pl.columns:
        return pl.assign(**{t: 1})
    s = pl[t]
    if columns.treated_label is not None:
        coded = s.eq(columns.treated_label).astype(float).where(s.notna())
    else:
        coded, _ = _coerce_treatment(s, t, None)
    n0 = int((coded == 0).sum())
    if n0:
        raise DataError(f"column {t!r} (treatment): the PL file has {n0:,} comparison row(s); with a comparison pool "
                        "the PL file holds PL students only and the comparisons come from the pool")
    out = pl.assign(**{t: coded})
    out.attrs = dict(pl.attrs)
    return out


def _pool_role_columns(columns: Columns, extra=()) -> list[str]:
    """The columns of every role but the treatment and take-up, then ``extra``, each once: those
    the PL file and the pool share."""
    need = [c for role, cols in columns.roles().items() if role not in ("treatment", "takeup") for c in cols]
    return list(dict.fromkeys(need + list(extra)))


def _check_same_types(pl: pd.DataFrame, need, pool: dict) -> None:
    """A :class:`DataError` for the first column of ``need`` that the PL file and the pool hold as
    different kinds (:func:`role_kind`): integer PL ids against text pool ids found no PL student
    in the pool, and matched PL students to themselves (before 2026-12-04). ``pool``: its columns'
    (kind, type as said), the columns it lacks left out."""
    for c in need:
        if c in pl.columns and c in pool and role_kind(pl[c]) != pool[c][0]:
            raise DataError(f"column {c!r} is {pl[c].dtype} in the PL file but {pool[c][1]} in the pool; give it "
                            "one type in both")


def _check_pool_columns(eng, pl: pd.DataFrame, columns: Columns, extra) -> None:
    roles = columns.roles()
    need = _pool_role_columns(columns, extra)
    absent = [c for c in need if c not in eng.types]
    if absent:
        raise DataError(f"column(s) {', '.join(map(repr, absent))} not in the pool ({eng.description}); its columns: "
                        f"{', '.join(list(eng.types)[:30])}")
    for role in _NUMERIC_ROLES:
        for c in roles.get(role, ()):
            if kind(eng.types[c]) != "numeric":
                raise DataError(f"column {c!r} ({role}) must be numeric; in the pool it is {eng.types[c]}")
    floats = [(role, c) for role in _NUMERIC_ROLES for c in roles.get(role, ())
              if _floating(eng, c)]
    n_inf = eng.counts([f"abs({eng.quote(c)}) = CAST('Infinity' AS DOUBLE)" for _, c in floats])
    for (role, c), n in zip(floats, n_inf):
        if n:  # as the in-memory engine's validation (before 2026-12-04 these rows were matched)
            raise DataError(f"column {c!r} ({role}): {n:,} pool row(s) are infinite")
    _check_same_types(pl, need, {c: (role_kind_sql(eng.types[c]), eng.types[c]) for c in need})
    t = columns.treatment
    if t in eng.types:
        lab = columns.treated_label
        cond = f"{eng.quote(t)} = {eng.literal(lab)}" if lab is not None else \
            f"CAST({eng.quote(t)} AS {eng.string_type}) NOT IN ('0', '0.0', 'false', 'False')"
        n1 = eng.counts([f"{eng.quote(t)} IS NOT NULL AND {cond}"])[0]
        if n1:
            raise DataError(f"column {t!r} (treatment): {n1:,} pool row(s) are marked treated; the pool holds "
                            "comparison students only (put PL students in the PL file)")


KEY_VALUES_READ = 10_000
"""At most this many distinct values of a text exact-match key are read from the pool to compare
spellings (:func:`_check_key_spellings`)."""


def _check_key_spellings(eng, data: pd.DataFrame, strata: list[str], where: str) -> None:
    """A :class:`DataError` when a text exact-match key (the subject, say) is spelled one way in
    the PL file and another in the pool (``'Math'`` against ``'math'``, ``'math '``): no PL row of
    it could find a comparison, and matching would end in "no comparison in its exact-match cell"
    without saying why. One query per such key (its distinct pool values)."""
    for col in strata:
        if role_kind(data[col]) != "text":
            continue
        pool_values = eng.frame(f"SELECT DISTINCT {eng.quote(col)} AS v FROM {eng.relation} WHERE {where} "
                                f"LIMIT {KEY_VALUES_READ}")["v"].dropna().tolist()
        named = ((v, match_label(pool_values, v)) for v in pd.unique(data[col].dropna()))
        clash = [(v, hit) for v, hit in named if hit is not None and str(hit) != str(v)]
        if clash:
            shown = ", ".join(f"{a!r} (the pool: {b!r})" for a, b in clash[:4])
            raise DataError(f"column {col!r} (exact-match key): the PL file spells {len(clash)} value(s) differently from "
                            f"the pool: {shown}; no PL row of them could find a comparison. Make the spellings agree")


def role_kind(s: pd.Series) -> str:
    return "text" if is_categorical(s) and not pd.api.types.is_bool_dtype(s) else (
        "bool" if pd.api.types.is_bool_dtype(s) else "numeric")


def role_kind_sql(t: str) -> str:
    k = kind(t)
    return "text" if k == "other" else k


PL_IN_POOL = "pool rows of students in the PL file (a PL student is not a comparison)"
"""The exclusion of pool rows that are rows of the PL file — the same student id, subject and
term (grade) as a PL row, the key that may not repeat in one file (:func:`pleval.data.validate`):
a state file or a national pool often holds the PL students too, and such a row would be matched
to its own PL row. It is the first exclusion, counted among all pool rows."""


def pl_keys(pl: pd.DataFrame, columns: Columns) -> pd.DataFrame | None:
    """The distinct (student id, subject, term or grade) keys of the PL file's rows, the roles
    present (None without a student-id column)."""
    keys = student_keys(columns)
    if not columns.student_id or not set(keys) <= set(pl.columns):
        return None
    return pl[keys].dropna().drop_duplicates().reset_index(drop=True)


def in_pl_file(frame: pd.DataFrame, keys: pd.DataFrame | None) -> np.ndarray:
    """Rows of ``frame`` whose key (:func:`pl_keys`) is a PL row's."""
    if keys is None or not set(keys.columns) <= set(frame.columns):
        return np.zeros(len(frame), dtype=bool)
    return pd.MultiIndex.from_frame(frame[list(keys.columns)]).isin(pd.MultiIndex.from_frame(keys))


def _missing(eng, col: str) -> str:
    """SQL for a missing value of ``col``: NULL, and NaN in a floating-point column (Spark, polars
    and arrow write missing floats to Parquet as NaN; before 2026-12-04 such rows were matched)."""
    q = eng.quote(col)
    return f"({q} IS NULL OR {eng.not_a_number.format(q)})" if _floating(eng, col) else f"{q} IS NULL"


def _floating(eng, col: str) -> bool:
    """Whether the pool's ``col`` is a floating-point column (one that can hold NaN and ±inf)."""
    return any(x in str(eng.types.get(col, "")).upper() for x in ("DOUBLE", "FLOAT", "REAL"))


def _exclusions(eng, v, data: pd.DataFrame, columns: Columns, extra, require_outcome: bool, n_pl_rows: int = 0):
    """(log, PL data after the match-level exclusions, the pool's eligibility condition);
    ``n_pl_rows``: pool rows of the PL file's students already excluded (:func:`without_pl_rows`),
    listed first (:data:`PL_IN_POOL`)."""
    q = eng.quote
    conds, labels = [], []
    roles = columns.roles()
    for role in _DROP_ROLES:
        for c in roles.get(role, ()):
            conds.append(_missing(eng, c))
            labels.append((f"missing {role}", c))
    pl_drop = {(r.reason, r.column): int(r.n_rows) for r in v.dropped.itertuples()}
    pl_counts, pl_of = [], {}  # the PL rows each match-level reason leaves out (by subject)
    checks = ([(columns.outcome, "missing outcome", False)] if require_outcome else []) + \
        [(col, f"missing {col}", False) for col in dict.fromkeys(extra)] + \
        ([(columns.weight, ZERO_WEIGHT, True)] if columns.weight else [])  # (column, reason, zero rather than missing)
    for col, reason, zero in checks:
        miss = (data[col] == 0 if zero else data[col].isna()).to_numpy()
        conds.append(f"{q(col)} = 0" if zero else _missing(eng, col))
        labels.append((reason, col))
        pl_counts.append(int(miss.sum()))
        pl_of[(reason, col)] = pl_by_subject(data, miss, columns.subject)
        data = data.loc[~miss]
    seq = [f"({c}) AND NOT ({' OR '.join(conds[:i])})" if i else c for i, c in enumerate(conds)]
    pool_n = eng.counts(seq)
    n_val = len(conds) - len(pl_counts)
    log = {}
    for i, ((reason, col), n) in enumerate(zip(labels, pool_n)):
        if (reason, col) in pl_drop and i < n_val:
            n += pl_drop.pop((reason, col))
        if i >= n_val:
            n += pl_counts[i - n_val]
        if n:
            log[(reason, col)] = log.get((reason, col), 0) + n
    for (reason, col), n in pl_drop.items():  # PL-only validation reasons (e.g. missing treatment)
        log = {(reason, col): n, **log}
    if n_pl_rows:
        log = {(PL_IN_POOL, columns.student_id): n_pl_rows, **log}
    where = "NOT (" + " OR ".join(conds) + ")" if conds else "TRUE"
    return [{"reason": r, "column": c, "n_rows": n, "pl": pl_of.get((r, c), {})} for (r, c), n in log.items()], data, where


def _log_text(log: list[dict]) -> str:
    """The exclusions of :func:`_exclusions` for an error: each reason, its column and its rows."""
    parts = [f"{e['reason']} (column {e['column']!r}): {e['n_rows']:,}" for e in log]
    return "rows left out (PL file and pool together): " + ("; ".join(parts) if parts else "none")


_VIEWS = itertools.count()


def without_pl_rows(eng, keys: pd.DataFrame | None, name: str, count: bool = True):
    """``(engine, n)``: the engine on the pool without the rows whose key is one of ``keys``
    (:func:`pl_keys`; a view ``name`` by an anti-join, ``NOT EXISTS``, which DuckDB and Spark run
    as a hash join) and how many rows that leaves out (0 when ``count`` is false or nothing is)."""
    if keys is None or not len(keys):
        return eng, 0
    name = f"{name}_{next(_VIEWS)}"  # a view of its own: a later call (a placebo round's) must not redefine it
    table = f"{name}_keys"
    eng.register(table, keys.set_axis([f"k{i}" for i in range(keys.shape[1])], axis=1))
    same = " AND ".join(f"k.k{i} = p.{eng.quote(x)}" for i, x in enumerate(keys.columns))
    n_all = eng.counts(["TRUE"])[0] if count else 0
    out = eng.restricted(f"NOT EXISTS (SELECT 1 FROM {table} k WHERE {same})", name, alias="p")
    return out, (n_all - out.counts(["TRUE"])[0] if count else 0)


def _make_engine(engine: str, pool, table, spark):
    if isinstance(pool, SqlEngine):
        return pool
    if engine == "duckdb":
        from .duck import DuckEngine
        from .source import open_pool

        return DuckEngine(open_pool(pool, table=table))
    from .spark import SparkEngine

    return SparkEngine(pool, table=table, spark=spark)


def _levels(eng, data, covariates, categorical, where):
    """Counts per level (PL and pool together) of each categorical covariate (one query)."""
    cats = [c for c in covariates if c in categorical or is_categorical(data[c]) or kind(eng.types[c]) != "numeric"]
    if not cats:
        return {}
    text = [kind(eng.types[c]) == "other" for c in cats]
    vc = eng.value_counts_many(cats, text, where, None)
    out = {}
    for c in cats:
        f = vc[vc["var"] == c]
        cnt = pd.Series(f["n"].to_numpy(dtype=np.int64), index=as_python(level_values(f, eng.types[c])))
        pl = data[c].value_counts()
        pl.index = as_python(pl.index)
        out[c] = cnt.add(pl, fill_value=0).astype(np.int64)
    return out


def _separation(eng, data, t_counts, levels, covariates, where) -> list[str]:
    """The in-memory separation checks (:func:`pleval.matching.propensity._separation_by_covariate`)
    from level counts and ranges."""
    problems = []
    q = eng.quote
    numeric = [c for c in covariates if c not in levels]
    if numeric:
        row = eng.one("SELECT " + ", ".join(f"min({q(c)}), max({q(c)})" for c in numeric) +
                      f" FROM {eng.relation} WHERE {where}")
        rng = {c: (float(row[2 * j]), float(row[2 * j + 1])) for j, c in enumerate(numeric)}
        lo = {c: min(rng[c][0], float(data[c].min())) for c in numeric}
        hi = {c: max(rng[c][1], float(data[c].max())) for c in numeric}
        row = eng.one("SELECT " + ", ".join(
            f"sum(CASE WHEN {q(c)} <> {lo[c]!r} AND {q(c)} <> {hi[c]!r} THEN 1 ELSE 0 END), "
            f"sum(CASE WHEN {q(c)} = {lo[c]!r} THEN 1 ELSE 0 END), sum(CASE WHEN {q(c)} = {hi[c]!r} THEN 1 ELSE 0 END)"
            for c in numeric) + f" FROM {eng.relation} WHERE {where}")
        for j, c in enumerate(numeric):
            x = data[c].to_numpy(dtype=float)
            other, n_lo, n_hi = (int(v or 0) for v in row[3 * j: 3 * j + 3])
            if other == 0 and np.all((x == lo[c]) | (x == hi[c])):  # binary: its two levels
                for lev, n_c in sorted(((lo[c], n_lo), (hi[c], n_hi))) if lo[c] != hi[c] else [(lo[c], n_lo)]:
                    n_t = int((x == lev).sum())
                    lev_s = int(lev) if float(lev).is_integer() else lev
                    if n_t and n_c == 0:
                        problems.append(f"{c} = {lev_s!r} (all {n_t:,} rows treated)")
                    elif n_c and n_t == 0:
                        problems.append(f"{c} = {lev_s!r} (no treated rows among {n_c:,})")
            elif x.max() <= rng[c][0] or x.min() >= rng[c][1]:
                problems.append(f"{c} (treated range [{x.min():.4g}, {x.max():.4g}] does not overlap comparison "
                                f"range [{rng[c][0]:.4g}, {rng[c][1]:.4g}])")
    for c, cnt in levels.items():
        tc = t_counts[c]
        for lev, n in cnt.sort_index().items():
            n_t = int(tc.get(lev, 0))
            if n and n_t == n:
                problems.append(f"{c} = {lev!r} (all {n:,} rows treated)")
            elif n and n_t == 0:
                problems.append(f"{c} = {lev!r} (no treated rows among {n:,})")
    return problems


def _propensity_plan(eng, data, columns, covariates, categorical, where, progress, n_pool):
    levels = _levels(eng, data, covariates, set(categorical), where)
    t_counts = {c: pd.Series(data[c].value_counts().to_numpy(), index=as_python(data[c].value_counts().index))
                for c in levels}
    problems = _separation(eng, data, t_counts, levels, covariates, where)
    if problems:
        raise DesignError(
            "perfect or quasi-perfect separation in the propensity model: " + "; ".join(problems[:10])
            + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
            + ". Match exactly on the covariate, drop it or the rows concerned, or fit a ridge-penalized model "
            "(penalize=True, in memory: pleval match --penalize, pleval estimate --set penalize=true)."
        )
    terms = logit.design_terms(levels, covariates)
    names = [t.name for t in terms]
    xs = logit.sql_terms(terms, eng.quote, eng.literal)
    X_t = logit.term_matrix(data, terms)

    def pool_pass(beta):
        inner, aggs = logit.pass_sql(xs, beta)
        row = eng.one(f"SELECT {', '.join(aggs)} FROM (SELECT {inner} FROM {eng.relation} WHERE {where}) s")
        return logit.unpack(row, len(terms))

    fraction = min(1.0, WARM_SAMPLE / max(n_pool, 1))
    sample = eng.sample([t.source for t in terms if t.source != "const"], where, fraction)
    start = logit.warm_start(X_t, logit.term_matrix(sample, terms), len(sample) / max(n_pool, 1))
    fit = logit.fit_logit(X_t, pool_pass, names, progress=progress, start=start)
    logit.check_fit(fit, X_t, names)
    lin = logit.linear_sql(xs, fit.params)
    row = eng.one(f"SELECT var_samp(eta), min(eta), max(eta), count(*) FROM (SELECT {lin} AS eta FROM {eng.relation} "
                  f"WHERE {where}) s")
    return terms, fit, {"var": float(row[0]), "min": float(row[1]), "max": float(row[2]), "n": int(row[3])}, lin


def match_pool(
    pl: pd.DataFrame,
    pool,
    columns: Columns,
    method: str = "propensity",
    *,
    engine: str = "duckdb",
    table: str | None = None,
    spark=None,
    covariates=None,
    categorical=(),
    exact=None,
    k: int | None = None,
    caliper: float | bool | None = None,
    replace: bool | None = None,
    ties: bool | None = None,
    tie_cap: int | None = None,
    order: str | None = None,
    band: float = 1.0,
    school_keys=(),
    school_bins=None,
    require_outcome: bool = True,
    before: bool = True,
    progress=None,
):
    """Match the PL students of ``pl`` against the comparison pool ``pool``.

    ``pool``: a Parquet dataset folder or file, a DuckDB database file (``table`` names the
    table), a DataFrame, or (``engine="spark"``) a Spark table name or Spark DataFrame.
    ``engine``: "duckdb" (out of core, the default), "spark" (:mod:`.spark`) or "memory" (read
    the pool into memory and run :func:`pleval.match` on PL + pool: the reference).
    ``method`` and the matching options are those of :func:`pleval.match` ("vcg" and
    "propensity"; nearest-neighbour matching with pleval conventions, ``discard="none"``).
    ``progress(message, done, total)`` is told of each pass and partition. ``before=False``
    leaves out the pool's aggregates for balance before matching (the placebo rounds of
    :mod:`.placebo` need only the matched sample).

    Returns a :class:`~pleval.pool.result.PoolMatchResult` (``engine="memory"``: the
    :class:`~pleval.matching.MatchResult` of :func:`pleval.match`).
    """
    progress = progress or _no_progress
    if method not in METHODS:
        raise DataError(f"a comparison pool is matched with method 'vcg' or 'propensity'; got {method!r}")
    if engine not in ENGINES:
        raise DataError(f"engine must be one of {ENGINES}; got {engine!r}")
    _method_options(method, dict(k=k, caliper=caliper, replace=replace, ties=ties, tie_cap=tie_cap, order=order,
                                 band=band, school_keys=school_keys, school_bins=school_bins))
    if order == "random":
        raise DataError("order='random' draws one permutation of all PL rows; with a comparison pool use 'largest', "
                        "'smallest' or 'data'")
    if not isinstance(pl, pd.DataFrame):
        raise DataError(f"the PL students must be a DataFrame; got {type(pl).__name__}")
    pl = _pl_frame(pl, columns)
    columns = columns.replace(treated_label=None)
    if engine == "memory" and isinstance(pool, SqlEngine):
        raise DataError("engine='memory' takes the pool itself (a DataFrame, a Parquet or DuckDB path)")
    opts = dict(covariates=covariates, categorical=categorical, exact=exact, k=k, caliper=caliper, replace=replace,
                ties=ties, tie_cap=tie_cap, order=order, band=band, school_keys=school_keys, school_bins=school_bins,
                require_outcome=require_outcome)
    if engine == "memory":
        from ..matching import match
        from .source import open_pool

        src = open_pool(pool, table=table) if not isinstance(pool, pd.DataFrame) else None
        frame = pool if src is None else src.con.execute(f"SELECT * EXCLUDE (_rid) FROM {src.relation}").df()
        need = _pool_role_columns(columns)  # (as the DuckDB engine checks them)
        _check_same_types(pl, need, {c: (role_kind(frame[c]), frame[c].dtype) for c in need if c in frame.columns})
        mine = in_pl_file(frame, pl_keys(pl, columns))
        both = pd.concat([pl, frame.loc[~mine].assign(**{columns.treatment: 0})], ignore_index=True)
        kw = {k_: v_ for k_, v_ in opts.items() if k_ not in ("band", "school_keys", "school_bins") or method == "vcg"}
        m = match(both, columns, method=method, **kw)
        if not mine.any():
            return m
        row = pd.DataFrame([{"reason": PL_IN_POOL, "column": columns.student_id, "n_rows": int(mine.sum())}])
        return dataclasses.replace(m, exclusions=pd.concat([row, m.exclusions], ignore_index=True))

    progress("opening the comparison pool")
    eng = _make_engine(engine, pool, table, spark)
    v = validate(pl, columns, require=("outcome", "treatment"), both_arms=False)
    c = columns
    data = v.data
    strata = _strata(c, exact, data)
    default_vars = list(c.pretest) + list(c.covariates)
    covariates = default_vars if covariates is None else ([covariates] if isinstance(covariates, str) else list(covariates))
    if method == "propensity" and not covariates:
        raise DataError("matching needs covariates: name pretest(s)/covariates in Columns or pass covariates=")
    skeys = [school_keys] if isinstance(school_keys, str) else list(school_keys)
    extra = list(covariates) + list(strata) + skeys
    absent = [x for x in dict.fromkeys(extra) if x not in data.columns]
    if absent:
        raise DataError(f"column(s) not in the data: {', '.join(map(repr, absent))}")
    _check_pool_columns(eng, pl, c, extra)
    eng, n_pl_rows = without_pl_rows(eng, pl_keys(pl, c), "pleval_pool_not_pl")
    log, data, where = _exclusions(eng, v, data, c, extra, require_outcome, n_pl_rows)
    if not len(data):
        raise DesignError(f"after exclusions no PL rows are left; {_log_text(log)}")
    _check_key_spellings(eng, data, strata, where)
    options: dict = {"method": method, "conventions": "pleval"}
    diagnostics: dict = {}
    pm_parts = None
    if method == "vcg":
        k = 51 if k is None else k
        if not c.school:
            raise DataError("VCG matching draws comparisons from non-PL schools: name the school column (school=...)")
        if not c.main_pretest:
            raise DataError("VCG matching needs a pretest column (pretest=...)")
        # every school of the PL file, those whose PL rows were all left out too (they are PL schools all the
        # same; before 2026-12-04 their pool rows became comparisons, as in memory)
        schools = pd.unique(pd.concat([data[c.school], pl[c.school]], ignore_index=True).dropna())
        eng.register("pleval_pl_schools", pd.DataFrame({"school": schools}))
        in_pl = f"{eng.quote(c.school)} IN (SELECT school FROM pleval_pl_schools)"
        n_in, n_pool = eng.counts([f"({where}) AND {in_pl}", f"({where}) AND NOT {in_pl}"])  # one scan
        if n_in:
            log.append({"reason": "comparison rows in PL schools (comparisons come from non-PL schools only)",
                        "column": c.school, "n_rows": n_in})
        where = f"({where}) AND NOT {in_pl}"
        keys = tuple(dict.fromkeys(strata + [x for x in covariates if x not in c.pretest] + skeys))
        for col in (school_bins or {}):
            if col not in keys:
                raise DataError(f"school_bins names {col!r}, which is not among the school keys")
        plan = Plan("vcg", c, tuple(strata), k, cell_keys=keys, band=float(band), school_bins=dict(school_bins or {}))
        options.update(k=k, band=band, keys=keys, school_keys=tuple(skeys), exact=tuple(strata))
    else:
        k = 1 if k is None else k
        replace = True if replace is None else bool(replace)
        ties = replace if ties is None else bool(ties)
        from ..matching import resolve_tie_cap

        tie_cap = resolve_tie_cap(tie_cap, replace=replace, ties=ties, student_id=c.student_id)
        progress("propensity model (out of core)")
        n_pool = eng.counts([where])[0]
        terms, fit, eta, lin_sql = _propensity_plan(eng, data, c, covariates, categorical, where, progress, n_pool)
        lin_t = logit.term_matrix(data, terms) @ fit.params
        unit = float(np.sqrt((lin_t.var(ddof=1) + eta["var"]) / 2.0))
        width = DEFAULT_CALIPER if caliper is None else caliper
        cal_abs = np.inf if width is False else width * unit
        order = order or "largest"
        diagnostics["caliper (logit PS units)"] = float(cal_abs)
        plan = Plan("propensity", c, tuple(strata), k, terms=terms, params=fit.params, caliper=cal_abs,
                    replace=replace, ties=ties, order=order, tie_cap=tie_cap)
        options.update(covariates=tuple(covariates), discard="none", penalize=False, k=k, caliper=caliper,
                       replace=replace, ties=ties, tie_cap=tie_cap, order=order, exact=tuple(strata))
        n_out_c = eng.counts([f"({where}) AND (({lin_sql}) < {float(lin_t.min())!r} OR ({lin_sql}) > "
                              f"{float(lin_t.max())!r})"])[0]
        pm_parts = (terms, fit, eta, lin_t, n_out_c)
    if n_pool == 0:
        raise DesignError(f"after exclusions no comparison rows of the pool are left; {_log_text(log)}")
    pl_light = data[[x for x in plan.needed if x in data.columns]].assign(_pl=np.arange(len(data), dtype=np.int64))
    pairs, used = eng.match(plan, pl_light, where, progress)
    progress("assembling the matched sample")
    before = pool_before(eng, data, c, tuple(dict.fromkeys(default_vars + [x for x in covariates if x not in default_vars])),
                         tuple(categorical), where) if before else {}
    return _assemble(plan, data, c, pairs, used, log, options, diagnostics, pm_parts, covariates, default_vars,
                     categorical, strata, n_pool, before, eng, pool_record(pool, table, eng.name, eng.description, eng.fingerprint, n_pool))


def pool_record(pool, table, engine: str, description: str, fingerprint: dict, eligible_rows: int) -> dict:
    """What provenance records of a pool: its path (or Spark table name; None for a frame), the
    DuckDB table, the engine, the eligible rows (after the exclusions) and its fingerprint
    (:func:`.source.fingerprint`)."""
    return {"path": str(pool) if isinstance(pool, (str, Path)) else None, "table": table, "engine": engine,
            "description": description, "eligible_rows": int(eligible_rows), "fingerprint": fingerprint}


def record_of(m, pool, table) -> dict:
    """:func:`pool_record` of the match ``m`` of :func:`match_pool` against ``pool`` (any engine)."""
    if isinstance(m, PoolMatchResult):
        return {**m.pool, "path": str(pool) if isinstance(pool, (str, Path)) else None, "table": table}
    from .source import open_pool

    return pool_record(pool, table, "memory", "the pool read into memory", open_pool(pool, table=table).fingerprint,
                       int(m.sample_sizes().loc["all", "comparison"]))


def _assemble(plan, data, c, pairs, used, log, options, diagnostics, pm_parts, covariates, default_vars, categorical,
              strata, n_pool, before, eng, record):
    from .source import RID

    n_pl = len(data)
    info = pairs[pairs["rid"] < 0].sort_values("pl", kind="stable")
    if len(info) != n_pl or (info["pl"].to_numpy() != np.arange(n_pl)).any():
        raise RuntimeError("internal error: a PL row was not matched exactly once")  # pragma: no cover
    pr = pairs[pairs["rid"] >= 0].sort_values("pl", kind="stable")
    n_m = info["n_m"].to_numpy()
    n_q = info["n_q"].to_numpy()
    reason = info["reason"].to_numpy(dtype=object)
    matched_t = n_m > 0
    n_sets = int(matched_t.sum())
    set_index = np.cumsum(matched_t) - 1
    used = used.sort_values(RID, kind="stable")
    rids = used[RID].to_numpy(dtype=np.int64)
    pool_rows = used.drop(columns=RID).set_index(pd.Index(rids, name=None)).assign(**{c.treatment: 0})
    full = pd.concat([data, pool_rows], ignore_index=False)
    c_pos = n_pl + np.searchsorted(rids, pr["rid"].to_numpy(dtype=np.int64))
    rows, sets, w = _long(np.flatnonzero(matched_t), c_pos, set_index[pr["pl"].to_numpy()],
                          pr["weight"].to_numpy(dtype=float), n_sets)
    if c.weight:
        w = set_analysis_weights(w, sets, full[c.treatment].to_numpy()[rows] == 1, full[c.weight].to_numpy(dtype=float)[rows])
        options["weight"] = c.weight
    if n_sets == 0:
        why = pd.Series(reason[~matched_t].astype(str)).value_counts()
        raise DesignError(
            f"no treated row found a match ({int((~matched_t).sum()):,} unmatched: "
            + "; ".join(f"{n:,} {r}" for r, n in why.items())
            + "); widen the caliper or band, relax the exact keys, or check that the groups overlap"
        )
    k = plan.k
    pm = None
    if plan.method == "vcg":
        diagnostics["mean comparisons per matched PL row"] = float(n_m[matched_t].mean())
        diagnostics["PL rows with fewer than k qualified comparisons"] = int(((n_q > 0) & (n_q < k)).sum())
        diagnostics["PL rows with ties at the k-th distance sharing places"] = int((n_m > k).sum())
    else:
        terms, fit, eta, lin_t, n_out_c = pm_parts
        diagnostics["mean matched distance"] = float(pr["dist"].mean())
        diagnostics.update(set_size_diagnostics(n_m, k, ties=plan.ties, replace=plan.replace, tie_cap=plan.tie_cap))
        lin = logit.term_matrix(full, terms) @ fit.params
        t_rng = (float(lin_t.min()), float(lin_t.max()))
        support = CommonSupport(t_rng, (eta["min"], eta["max"]),
                                int(((lin_t < eta["min"]) | (lin_t > eta["max"])).sum()), int(n_out_c), "none", 0, 0)
        pm = PropensityModel(params=pd.Series(fit.params, index=[t.name for t in terms]), ps=1.0 / (1.0 + np.exp(-lin)),
                             logit_ps=lin, keep=np.ones(len(full), bool), support=support, penalized=False, alpha=0.0,
                             covariates=tuple(options["covariates"]), n=n_pl + eta["n"], n_treated=n_pl,
                             design_names=tuple(t.name for t in terms))
    diagnostics["comparison pool"] = f"{eng.description}: {n_pool:,} eligible rows ({eng.name})"
    un_pos = np.flatnonzero(~matched_t)
    unmatched = pd.DataFrame({"row": data.index[un_pos], "reason": reason[un_pos].astype(str)})
    for col in (c.student_id, c.school, c.subject, c.grade):
        if col:
            unmatched[col] = data[col].iloc[un_pos].to_numpy()
    school = data[c.school].iloc[np.flatnonzero(matched_t)].to_numpy(dtype=object) if c.school else \
        np.full(n_sets, np.nan, dtype=object)
    return PoolMatchResult(
        data=full, columns=c, method=plan.method, rows=rows, set_id=sets, weight=w, set_school=school,
        unmatched=unmatched, exclusions=pd.DataFrame(log, columns=["reason", "column", "n_rows"]),
        excluded_pl=pl_rows_frame(log), options=options,
        variables=tuple(dict.fromkeys(default_vars + [x for x in covariates if x not in default_vars])),
        categorical=tuple(categorical), strata=tuple(strata), propensity=pm, diagnostics=diagnostics,
        n_pool=n_pool, before=before, pool=record,
    )
