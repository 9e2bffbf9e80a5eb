"""The DuckDB engine: the pool stays on disk; one exact-key partition at a time is matched here.

For each partition (a combination of the strata present among the PL rows) one query pulls
the few columns matching needs (the keys, the pretest or the propensity covariates, the student
id, the row id) of the partition's eligible comparison rows; the partition is matched in
memory (:func:`.partition.match_partition`) and only the pairs are kept. At the end the full
rows of the comparisons used (at most PL rows × k, usually far fewer) are fetched by row id.
Peak memory is about one partition's light columns plus the matched sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .engine import SqlEngine
from .partition import match_partition
from .source import RID, PoolSource, literal, quote


class DuckEngine(SqlEngine):
    name = "duckdb"
    not_a_number = "(NOT isfinite({0}) AND abs({0}) != 'inf'::DOUBLE)"  # NaN, not ±inf: DuckDB 2.0 prunes Parquet
    # row groups on isnan() by their statistics, which leave NaN out (isnan() found none there); this is not pushed down

    def __init__(self, src: PoolSource):
        self.src = src
        self.relation = src.relation
        self.types = {k: v for k, v in src.types.items() if k != RID}
        self.fingerprint = src.fingerprint

    @property
    def description(self) -> str:
        return self.src.description

    def quote(self, name: str) -> str:
        return quote(name)

    def one(self, query: str) -> tuple:
        return self.src.con.execute(query).fetchall()[0]

    def frame(self, query: str) -> pd.DataFrame:
        return self.src.con.execute(query).df()

    def register(self, name: str, df: pd.DataFrame) -> None:
        self.src.con.register(name, df)

    def view(self, name: str, query: str) -> None:
        self.src.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS {query}")

    def sample(self, cols: list[str], where: str, fraction: float) -> pd.DataFrame:
        cols_sql = ", ".join(map(quote, dict.fromkeys(cols))) or "1 AS one"
        samp = "" if fraction >= 1 else f" USING SAMPLE {100.0 * fraction!r} PERCENT (bernoulli, 1)"
        return self.frame(f"SELECT {cols_sql} FROM (SELECT * FROM {self.relation} WHERE {where}) s{samp}")

    def match(self, plan, pl: pd.DataFrame, where: str, progress) -> tuple[pd.DataFrame, pd.DataFrame]:
        strata = list(plan.strata)
        parts = list(pl.groupby(strata, sort=True)) if strata else [((), pl)]
        cols = ", ".join(map(quote, plan.needed + [RID]))
        out = []
        for i, (key, part) in enumerate(parts):
            progress(f"matching the pool ({self.name}): partition", i, len(parts))
            key = key if isinstance(key, tuple) else (key,)
            cond = " AND ".join([where] + [f"{quote(s)} = {literal(v)}" for s, v in zip(strata, key)])
            pool = self.frame(f"SELECT {cols} FROM {self.relation} WHERE {cond}")
            res = match_partition(plan, part.sort_values("_pl"), pool)
            rid = pool[RID].to_numpy(dtype=np.int64)
            c = res["c"].to_numpy()
            res["rid"] = np.where(c >= 0, rid[np.maximum(c, 0)] if len(rid) else -1, -1)
            out.append(res.drop(columns="c"))
            del pool
        progress(f"matching the pool ({self.name}): partition", len(parts), len(parts))
        pairs = pd.concat(out, ignore_index=True)
        used = np.unique(pairs.loc[pairs["rid"] >= 0, "rid"].to_numpy())
        self.register("pleval_used_rids", pd.DataFrame({RID: used}))
        progress(f"fetching the {len(used):,} matched comparison rows")
        rows = self.frame(f"SELECT * FROM {self.relation} WHERE {RID} IN (SELECT {RID} FROM pleval_used_rids)")
        return pairs, rows
