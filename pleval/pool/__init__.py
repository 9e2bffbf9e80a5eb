"""Comparison pools given apart from the PL file, matched in or out of core, or on Spark.

``pleval.pool.match_pool(pl, pool, columns, method="vcg" | "propensity", engine=...)`` matches
the PL students of ``pl`` against a pool of comparison students that need not fit in memory:

* ``engine="duckdb"`` (default): the pool is a Parquet dataset, a DuckDB database file or a
  DataFrame, queried by embedded DuckDB (:mod:`.duck`); memory holds one exact-key partition's
  matching columns at a time and the matched sample;
* ``engine="spark"``: the same partitioned matching on Apache Spark (:mod:`.spark`);
* ``engine="memory"``: the pool read into memory and :func:`pleval.match` run on PL + pool.

All three give the same matched sample and estimates (:mod:`.match`, :mod:`.partition`);
:func:`estimate_pool` runs the whole evaluation on it, placebo schools re-matched against the
pool (:mod:`.placebo`), its provenance recording the pool's fingerprint (:mod:`.source`).
"""

from .evaluate import estimate_pool
from .match import ENGINES, match_pool
from .result import PoolMatchResult
from .source import PoolSource, open_pool

__all__ = ["match_pool", "estimate_pool", "open_pool", "PoolSource", "PoolMatchResult", "ENGINES"]
