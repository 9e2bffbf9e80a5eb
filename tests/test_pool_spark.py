"""The Spark engine of pleval.pool in Spark local mode: the matched sample and the estimates of
the in-memory engine, to 1e-12. One local session for the module (Java 17 on the machine)."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from pleval.data import SAMPLE_COLUMNS
from pleval.pool import match_pool

from .test_pool import SAMPLE, _same_matched, _same_numbers

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this interpreter (pleval, pandas)
    # a short-lived JVM: its JIT's first tier only (the optimizing tier's compilations cost more
    # than they save in a few seconds of queries; docs/scale.md)
    s = (SparkSession.builder.master("local[1]").appName("pleval-test")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
         .config("spark.driver.memory", "1g").config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small():
    df = pd.read_csv(SAMPLE)
    df = df[df["grade"].isin([3, 4])]
    pl = df[df["treatment"] == 1].reset_index(drop=True)
    pool = df[df["treatment"] == 0].drop(columns="treatment").reset_index(drop=True)
    return pl, pool


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("method", ["vcg", "propensity"])
def test_spark_engine_matches_in_memory(spark, small, method, tmp_path):
    pl, pool = small
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    spark.read.parquet(str(tmp_path / "pool.parquet")).createOrReplaceTempView("state_pool")
    ref = match_pool(pl, pool, SAMPLE_COLUMNS, method, engine="memory")
    got = match_pool(pl, "state_pool", SAMPLE_COLUMNS, method, engine="spark", spark=spark)  # a table name
    assert len(got.matched) == len(ref.matched) > 0
    _same_matched(ref, got)
    _same_numbers(ref.estimate(by="subject").to_frame(), got.estimate(by="subject").to_frame())
    _same_numbers(ref.balance().table, got.balance().table)
    _same_numbers(ref.sample_sizes(), got.sample_sizes())


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_spark_engine_runs_the_placebo_schools(spark, small):
    """``estimate_pool(engine="spark")`` re-matches placebo rounds against the pool on Spark, as
    the DuckDB engine does: the overall, placebo, heterogeneity and school tables of
    :func:`pleval.estimate` on PL + pool in memory to 1e-10 (64 placebo schools in 2 rounds)."""
    import pleval
    from pleval.pool import estimate_pool

    pl, pool = small
    ref = pleval.estimate(pd.concat([pl, pool.assign(treatment=0)], ignore_index=True), SAMPLE_COLUMNS, method="vcg",
                          sensitivity=False, n_placebo=64)
    spark.createDataFrame(pool.sample(frac=1.0, random_state=2)).createOrReplaceTempView("state_pool_rounds")
    got = estimate_pool(pl.drop(columns="treatment"), "state_pool_rounds", SAMPLE_COLUMNS, "vcg", engine="spark",
                        spark=spark, sensitivity=False, n_placebo=64)
    for name in ("overall", "placebo", "heterogeneity", "schools"):
        assert len(ref.table(name)), name
        _same_numbers(ref.table(name), got.table(name), rtol=1e-10)
    assert got.placebo["school"].nunique() == 64
    assert "placebo schools are re-matched against the rest of the pool: 64 comparison schools in 2 rounds" in got.notes[0]


def test_spark_engine_refuses_infinite_pool_values(spark, small):
    """An infinite pretest in a Spark pool stops the run as the in-memory engine does (before
    2026-12-04 it was matched)."""
    import numpy as np

    from pleval.errors import DataError

    pl, pool = small
    pool = pool.copy()
    pool.loc[pool.index[[2, 9]], "pretest"] = [np.inf, -np.inf]
    spark.createDataFrame(pool).createOrReplaceTempView("pool_inf")
    with pytest.raises(DataError, match="column 'pretest' \\(pretest\\): 2 pool row\\(s\\) are infinite"):
        match_pool(pl, "pool_inf", SAMPLE_COLUMNS, "vcg", engine="spark", spark=spark)
