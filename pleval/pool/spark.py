"""The Spark engine: the same partitioned matching on Apache Spark.

The pool is a Spark table (``spark.table(name)``), a Parquet path (``spark.read.parquet``), a
Spark DataFrame or a pandas DataFrame. The aggregates (exclusion counts, level counts, the
Newton passes of the propensity model, balance before matching) are Spark SQL queries over
the pool; the matching is one Spark job::

    pool.groupBy(strata).cogroup(pl.groupBy(strata)).applyInPandas(match_partition, schema)

each exact-key partition matched on an executor by pleval's in-memory matcher
(:func:`.partition.match_partition`, the function the DuckDB engine runs), returning its pairs
with the full rows of the comparisons used. The driver collects only those: the matched
sample. The session is the active one (``spark-submit`` configures it), or ``spark=``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .engine import SqlEngine
from .partition import PAIRS_SCHEMA, match_partition
from .source import RID

VIEW = "pleval_pool"


def session(spark=None):
    """The Spark session to use: ``spark``, the active one, or a new one from the environment."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - pyspark is in the "spark" extra
        raise DataError("the Spark engine needs pyspark: pip install 'pleval[spark]'") from None
    spark = spark or SparkSession.getActiveSession()
    if spark is None:  # a local session: the workers run this Python (with pleval and its dependencies)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = SparkSession.builder.appName("pleval").getOrCreate()
    return spark


def _fingerprint(sdf, desc: str) -> dict:
    """The files behind the pool as Spark lists them (names only: their sizes and times would
    take a call to the file system per file), or, for a frame with none, its description."""
    from .source import fingerprint

    try:
        files = sorted(sdf.inputFiles())
    except Exception:  # a frame built in memory has no input files
        files = []
    return fingerprint("spark", source=desc, n_files=len(files), files=files)


class SparkEngine(SqlEngine):
    name = "spark"
    string_type = "STRING"

    def __init__(self, pool, *, table: str | None = None, spark=None):
        self.spark = session(spark)
        from pyspark.sql import DataFrame as SparkFrame

        if isinstance(pool, SparkFrame):
            sdf, desc = pool, "a Spark DataFrame"
        elif isinstance(pool, pd.DataFrame):
            sdf, desc = self.spark.createDataFrame(pool), f"a DataFrame of {len(pool):,} rows (on Spark)"
        elif table is not None or (isinstance(pool, str) and not Path(pool).exists() and "/" not in pool):
            name = table or pool
            try:
                sdf = self.spark.table(name)
            except Exception as exc:  # AnalysisException: no such table
                raise DataError(f"Spark table {name!r}: {str(exc).splitlines()[0]}") from None
            desc = f"Spark table {name!r}"
        else:
            sdf, desc = self.spark.read.parquet(str(pool)), f"Parquet {pool} (on Spark)"
        if RID in sdf.columns:
            raise DataError(f"the pool has a column named {RID!r}, which pleval reserves for row ids; rename it")
        sdf.createOrReplaceTempView(VIEW)
        self.sdf = sdf
        self.relation = VIEW
        self.types = {f.name: f.dataType.simpleString() for f in sdf.schema.fields}
        self._desc = desc
        self.fingerprint = _fingerprint(sdf, desc)

    @property
    def description(self) -> str:
        return self._desc

    def quote(self, name: str) -> str:
        return "`" + str(name).replace("`", "``") + "`"

    def one(self, query: str) -> tuple:
        return tuple(self.spark.sql(query).collect()[0])

    def frame(self, query: str) -> pd.DataFrame:
        return self.spark.sql(query).toPandas()

    def register(self, name: str, df: pd.DataFrame) -> None:
        self.spark.createDataFrame(df).createOrReplaceTempView(name)

    def view(self, name: str, query: str) -> None:
        self.spark.sql(query).createOrReplaceTempView(name)

    def sample(self, cols: list[str], where: str, fraction: float) -> pd.DataFrame:
        sdf = self.spark.sql(f"SELECT {', '.join(map(self.quote, dict.fromkeys(cols)))} FROM {self.relation} WHERE {where}")
        return (sdf if fraction >= 1 else sdf.sample(fraction=fraction, seed=1)).toPandas()

    def match(self, plan, pl: pd.DataFrame, where: str, progress) -> tuple[pd.DataFrame, pd.DataFrame]:
        from pyspark.sql import functions as F
        from pyspark.sql.types import DoubleType, IntegralType, LongType, StringType, StructField, StructType

        strata = list(plan.strata)
        pool = self.spark.sql(f"SELECT * FROM {self.relation} WHERE {where}")
        types = {f.name: f.dataType for f in pool.schema.fields}
        pl_sdf = self.spark.createDataFrame(pl)
        for s in strata:  # the keys of both sides in the pool's types, so that they group together
            pl_sdf = pl_sdf.withColumn(s, F.col(s).cast(types[s]))
        spark_type = {"int64": LongType(), "float64": DoubleType(), "object": StringType()}
        fields = [StructField(n, spark_type[t]) for n, t in PAIRS_SCHEMA.items() if n != "c"]
        fields += [StructField(RID, LongType())] + [StructField(f.name, f.dataType, True) for f in pool.schema.fields]
        schema = StructType(fields)
        names = [f.name for f in fields]

        def run(pool_pdf: pd.DataFrame, pl_pdf: pd.DataFrame) -> pd.DataFrame:
            if not len(pl_pdf):
                return pd.DataFrame({n: [] for n in names})
            pl_pdf = pl_pdf.sort_values("_pl")
            res = match_partition(plan, pl_pdf, pool_pdf)
            c = res.pop("c").to_numpy()
            # a row id unique across partitions: the partition's first PL row and the position in it
            res[RID] = np.where(c >= 0, int(pl_pdf["_pl"].iloc[0]) * 2**31 + c, -1)
            rows = pool_pdf.iloc[c[c >= 0]].reset_index(drop=True)
            pairs = pd.concat([res[c >= 0].reset_index(drop=True), rows], axis=1)
            out = pd.concat([pairs, res[c < 0]], ignore_index=True)[names]
            for col in out.columns:  # Arrow-backed strings (pandas 3) go back to Spark as objects
                if pd.api.types.is_string_dtype(out[col].dtype) and out[col].dtype != object:
                    out[col] = out[col].astype(object)
            return out

        progress("matching the pool (spark): applyInPandas over the exact-key partitions")
        if strata:
            out = pool.groupBy(*strata).cogroup(pl_sdf.groupBy(*strata)).applyInPandas(run, schema)
        else:
            out = pool.groupBy(F.lit(0)).cogroup(pl_sdf.groupBy(F.lit(0))).applyInPandas(run, schema)
        res = out.toPandas()
        pairs = res[["pl", RID, "weight", "dist", "n_q", "n_m", "reason"]].rename(columns={RID: "rid"})
        pairs = pairs.astype({"pl": "int64", "rid": "int64", "n_q": "int64", "n_m": "int64"})
        used = res.loc[res[RID] >= 0].drop_duplicates(RID)[[RID] + [f.name for f in pool.schema.fields]]
        for f in pool.schema.fields:  # integer columns came back as float beside the PL-row records
            if isinstance(f.dataType, IntegralType) and used[f.name].notna().all():
                used[f.name] = used[f.name].astype("int64")
        return pairs, used.reset_index(drop=True)
