"""Placebo schools with a comparison pool given apart: each round re-matched against the pool.

:func:`pleval.heterogeneity.placebo.placebo_schools` analyses comparison schools as if they were
PL schools, in rounds: the round's schools play PL and are matched, with the analysis's own
matching, against the other comparison schools. With a pool, the comparison schools are the
pool's, and :class:`PoolRounds` gives ``placebo_schools`` what it needs from where the pool lives:

* the comparison schools and their mean pretest and row count (one ``GROUP BY`` query), from
  which the rounds are dealt exactly as in memory (:func:`~pleval.heterogeneity.placebo.deal`);
* each round's matched sample: the round's students (one query; at most the round's schools'
  rows; in the pool's row order with DuckDB, sorted by their values with Spark, whose row order
  is its partitions') are the PL file of :func:`.match.match_pool`, and the pool without the round's schools
  (a view) is the comparison pool — the same partitioned matcher, the same exact propensity
  fit, on the same eligible rows as in memory. Only the matched sample returns.

Hence the placebo table, τ̂²_placebo and the calibrated p-values are those of
:func:`pleval.estimate` on PL + pool in memory (``tests/test_pool.py``). Each round costs what
one ``match_pool`` costs (a scan of the pool per exact-key partition, plus the Newton passes
for propensity matching), and by default every comparison school plays placebo once, in rounds
of as many schools as there are PL schools: ``n_placebo`` bounds the rounds on a large pool.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Columns
from ..heterogeneity.placebo import deal
from .engine import SqlEngine
from .source import RID

CHUNK_TABLE = "pleval_placebo_schools"
REST_VIEW = "pleval_placebo_rest"


class PoolRounds:
    """The placebo rounds' schools and matches from ``eng`` (the pool, restricted to the
    evaluation's subject if there is one); ``pl_schools`` are the PL file's schools;
    ``match_options`` those of the analysis's :func:`.match.match_pool`."""

    def __init__(self, eng: SqlEngine, pl_schools, columns: Columns, method: str, match_options: dict, progress=None):
        self.eng, self.columns, self.method = eng, columns, method
        self.pl_schools = np.asarray(pd.unique(np.asarray(pl_schools, dtype=object)))
        self.match_options = {k: v for k, v in match_options.items() if k != "seed"}  # no random step with a pool
        self.progress = progress
        self.round = 0

    def schools(self) -> tuple[np.ndarray, np.ndarray]:
        """PL and comparison school ids: as in memory, a pool school that is also a PL file's
        school (a mixed school) does not play placebo, but its pool students stay in the pool."""
        c, q = self.columns, self.eng.quote
        score = c.main_pretest or c.outcome
        stats = self.eng.frame(f"SELECT {q(c.school)} AS school, avg(CAST({q(score)} AS DOUBLE)) AS mean, "
                               f"count(*) AS n FROM {self.eng.relation} WHERE {q(c.school)} IS NOT NULL "
                               f"GROUP BY {q(c.school)}")
        stats = stats.set_index("school").sort_index()
        stats.index = pd.Index([v.item() if isinstance(v, np.generic) else v for v in stats.index], dtype=object)
        self.stats = stats[~stats.index.isin(pd.Index(self.pl_schools, dtype=object))]
        return self.pl_schools, self.stats.index.to_numpy()

    def order(self, pl: np.ndarray, per_round: int) -> np.ndarray:
        self.total = -(-len(self.stats) // per_round)
        return deal(self.stats.astype({"mean": float, "n": np.int64}), per_round)

    def match(self, chunk: np.ndarray):
        """The round's schools' students against the pool without them (:func:`.match.match_pool`;
        its :class:`~pleval.pool.result.PoolMatchResult`)."""
        from .match import match_pool

        eng, c = self.eng, self.columns
        q = eng.quote
        self.round += 1
        if self.progress is not None:
            self.progress("placebo schools (re-matched against the pool): round", self.round, self.total)
        eng.register(CHUNK_TABLE, pd.DataFrame({"school": list(chunk)}))
        in_chunk = f"{q(c.school)} IN (SELECT school FROM {CHUNK_TABLE})"
        order = f" ORDER BY {RID}" if eng.name == "duckdb" else ""  # the pool's row order
        pseudo = eng.frame(f"SELECT * FROM {eng.relation} WHERE {in_chunk}{order}")
        if not order:  # Spark returns the rows in its partitions' order: sorted by their values, the same on every run
            pseudo = pseudo.sort_values(_sortable(pseudo), kind="stable", ignore_index=True)
        pseudo = pseudo.drop(columns=[RID], errors="ignore").assign(**{c.treatment: 1})
        rest = eng.restricted(f"NOT ({in_chunk})", REST_VIEW)
        return match_pool(pseudo, rest, c, self.method, engine=eng.name, before=False, **self.match_options)


def _sortable(df: pd.DataFrame) -> list:
    """The columns of ``df`` whose values order (numbers, text, booleans, dates; not, e.g., the
    lists of an array column), in the frame's order."""
    ordered = ("string", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "datetime", "date", "empty")
    return [c for c in df.columns if df[c].dtype != object or pd.api.types.infer_dtype(df[c], skipna=True) in ordered]
