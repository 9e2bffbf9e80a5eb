"""What an engine does with the pool: aggregate queries, the partitions, the matched rows.

An engine is an object with the methods of :class:`SqlEngine`. The SQL is written once, in the
subset that DuckDB and Spark SQL share; the engines differ only in how a query is run, how an
identifier is quoted, and how the partitions are matched (:mod:`.duck`: one partition at a
time in this process; :mod:`.spark`: ``cogroup(...).applyInPandas`` on the cluster).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd

from .source import literal

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "DECIMAL", "REAL", "INT", "LONG", "SHORT", "BYTE")


def kind(sql_type: str) -> str:
    """"numeric", "bool" or "other" for a DuckDB or Spark SQL type name."""
    t = sql_type.upper().split("(")[0].strip()
    if t in NUMERIC:
        return "numeric"
    return "bool" if t in ("BOOLEAN", "BOOL") else "other"


class SqlEngine(ABC):
    """The queries every engine answers. ``where`` is a SQL condition on the pool's rows."""

    name = "sql"
    string_type = "VARCHAR"
    not_a_number = "isnan({0})"
    """SQL true for a NaN value of a column (``{0}``: the quoted column)."""
    relation: str
    types: dict
    fingerprint: dict
    """What the pool is, cheaply (:func:`.source.fingerprint`), for provenance."""

    @abstractmethod
    def quote(self, name: str) -> str:
        ...

    def literal(self, v) -> str:
        return literal(v)

    @abstractmethod
    def one(self, query: str) -> tuple:
        ...

    @abstractmethod
    def frame(self, query: str) -> pd.DataFrame:
        ...

    @abstractmethod
    def register(self, name: str, df: pd.DataFrame) -> None:
        ...

    @property
    @abstractmethod
    def description(self) -> str:
        ...

    # ---- aggregates ----------------------------------------------------------------
    def counts(self, conditions: list[str]) -> list[int]:
        """Rows satisfying each condition (one query)."""
        if not conditions:
            return []
        row = self.one(f"SELECT {', '.join(f'sum(CASE WHEN {c} THEN 1 ELSE 0 END)' for c in conditions)} "
                       f"FROM {self.relation}")
        return [int(v or 0) for v in row]

    def n_distinct_at_most(self, cols: list[str], where: str, cap: int) -> list[bool]:
        """Whether each column has at most ``cap`` distinct values (approximately counted, with
        margin), in one query."""
        row = self.one("SELECT " + ", ".join(f"approx_count_distinct({self.quote(c)})" for c in cols)
                       + f" FROM {self.relation} WHERE {where}")
        return [int(n or 0) <= cap // 2 for n in row]

    def value_counts_many(self, cols: list[str], text: list[bool], where: str, by: str | None) -> pd.DataFrame:
        """Counts of each value of each column (by ``by``), in one query: columns ``var``, ``g``,
        ``vs`` (the value of a text column), ``vn`` (of a numeric or boolean one, as a double), ``n``."""
        g = f"CAST({self.quote(by)} AS {self.string_type})" if by else "'all'"
        parts = []
        for c, is_text in zip(cols, text):
            q = self.quote(c)
            vs, vn = (q, "CAST(NULL AS DOUBLE)") if is_text else (f"CAST(NULL AS {self.string_type})", f"CAST({q} AS DOUBLE)")
            group = f"{g}, {q}" if by else q
            parts.append(f"SELECT {self.literal(c)} AS var, {g} AS g, {vs} AS vs, {vn} AS vn, count(*) AS n "
                         f"FROM {self.relation} WHERE {where} GROUP BY {group}")
        return self.frame(" UNION ALL ".join(parts))

    def moments(self, exprs: list[str], where: str, by: str | None = None) -> pd.DataFrame:
        """count, mean and sample variance of each expression (by group and overall)."""
        aggs = ", ".join(f"count({e}) AS n{j}, avg({e}) AS m{j}, var_samp({e}) AS v{j}" for j, e in enumerate(exprs))
        out = [self.frame(f"SELECT 'all' AS g, {aggs} FROM {self.relation} WHERE {where}")]
        if by:
            out.append(self.frame(f"SELECT CAST({self.quote(by)} AS {self.string_type}) AS g, {aggs} FROM {self.relation} "
                                  f"WHERE {where} GROUP BY {self.quote(by)}"))
        return pd.concat(out, ignore_index=True)

    def restricted(self, condition: str, name: str, alias: str = "") -> "SqlEngine":
        """The same engine on the pool rows satisfying ``condition`` (a view ``name``; ``alias``
        names the pool's rows in it): a subject of the evaluation, the pool without the placebo
        round's schools, or without the PL file's rows."""
        import copy

        self.view(name, f"SELECT * FROM {self.relation} {alias} WHERE {condition}")
        out = copy.copy(self)
        out.relation = name
        return out

    @abstractmethod
    def view(self, name: str, query: str) -> None:
        """Create or replace the temporary view ``name`` as ``query``."""

    @abstractmethod
    def sample(self, cols: list[str], where: str, fraction: float) -> pd.DataFrame:
        """A seeded random ``fraction`` of the rows ``where`` (columns ``cols``)."""

    # ---- the partitions ------------------------------------------------------------
    @abstractmethod
    def match(self, plan, pl: pd.DataFrame, where: str, progress) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Match every partition: ``(pairs with the pool row id as "rid", the full pool rows
        used, with "_rid")``."""


def level_values(f: pd.DataFrame, sql_type: str) -> np.ndarray:
    """The values of :meth:`SqlEngine.value_counts_many`'s rows for a column of type ``sql_type``,
    as the column holds them: its text (``vs``), True/False for a BOOLEAN column (the query reads
    it as 1.0/0.0, ``vn``; a missing value stays NaN), or its numbers (``vn``)."""
    k = kind(sql_type)
    if k == "other":
        return f["vs"].to_numpy(dtype=object)
    v = f["vn"].to_numpy(dtype=float)
    return np.array([x if np.isnan(x) else bool(x) for x in v], dtype=object) if k == "bool" else v


def as_python(values) -> list:
    """Plain Python scalars, so that level values compare and format alike from either side: the
    PL file's True/False and a BOOLEAN pool column's (:func:`level_values`) as True/False, the
    in-memory engine's labels (before 2026-12-05 both as 1.0/0.0: frl[0.0], frl = 1.0)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]
