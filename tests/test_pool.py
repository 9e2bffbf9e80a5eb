"""Comparison pools given apart (pleval.pool): the out-of-core DuckDB engine against the
in-memory path (pleval.match on PL + pool), the out-of-core logit against statsmodels."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pleval.data import SAMPLE_COLUMNS
from pleval.errors import DataError
from pleval.pool import match_pool
from pleval.pool.logit import design_terms, fit_logit, pass_sql, sql_terms, term_matrix, unpack
from pleval.pool.source import literal, quote

SAMPLE = "sample_data/pl_matched_students.csv"
KEY = ["_set", "student_id", "subject"]


@pytest.fixture(scope="module")
def split():
    """The sample's PL rows, and its comparison rows as a pool with a few problems: missing
    values (counted and left out) and comparison rows relabelled into a PL school."""
    df = pd.read_csv(SAMPLE)
    pl = df[df["treatment"] == 1].reset_index(drop=True)
    pool = df[df["treatment"] == 0].drop(columns="treatment").reset_index(drop=True)
    pool.loc[pool.index[7::211], "frl"] = np.nan
    pool.loc[pool.index[3::301], "school_id"] = pl["school_id"].iloc[0]
    pool = pool.sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order is irrelevant
    return pl, pool


@pytest.fixture(scope="module")
def stored(split, tmp_path_factory):
    """The pool as a Parquet dataset (Hive folders by subject, several files) and as a DuckDB file."""
    pool = split[1]
    root = tmp_path_factory.mktemp("pool")
    for subj, part in pool.groupby("subject"):
        d = root / "parquet" / f"subject={subj}"
        d.mkdir(parents=True)
        part = part.drop(columns="subject").reset_index(drop=True)
        for i, lo in enumerate(range(0, len(part), 9000)):
            part.iloc[lo: lo + 9000].to_parquet(d / f"part{i}.parquet", index=False)
    db = root / "pool.duckdb"
    con = duckdb.connect(str(db))
    con.register("frame", pool)
    con.execute("CREATE TABLE students AS SELECT * FROM frame")
    con.close()
    return {"parquet": root / "parquet", "duckdb": db}


def _same_matched(ref, got):
    a = ref.matched.sort_values(KEY).reset_index(drop=True)
    b = got.matched.sort_values(KEY).reset_index(drop=True)
    assert len(a) == len(b)
    for col in ("student_id", "subject", "school_id", "treatment", "_set", "_pl_school"):
        assert (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all(), col
    for col in ("_weight", "pretest", "posttest", "female", "frl"):
        np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=0, atol=1e-12, err_msg=col)


def _same_numbers(a: pd.DataFrame, b: pd.DataFrame, rtol=1e-12):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    num = a.select_dtypes("number").columns
    np.testing.assert_allclose(b[num].to_numpy(float), a[num].to_numpy(float), rtol=rtol, atol=1e-12)
    other = [c for c in a.columns if c not in num]
    assert (a[other].astype(str).to_numpy() == b[other].astype(str).to_numpy()).all()


@pytest.mark.parametrize("method,where", [("vcg", "parquet"), ("propensity", "duckdb")])
def test_duckdb_engine_matches_in_memory(split, stored, method, where):
    pl, pool = split
    ref = match_pool(pl, pool, SAMPLE_COLUMNS, method, engine="memory")
    got = match_pool(pl, stored[where], SAMPLE_COLUMNS, method, engine="duckdb")
    _same_matched(ref, got)
    _same_numbers(ref.estimate(by="subject").to_frame(), got.estimate(by="subject").to_frame())
    _same_numbers(ref.balance().table, got.balance().table)
    _same_numbers(ref.balance().equivalence, got.balance().equivalence)
    _same_numbers(ref.exclusions, got.exclusions)
    _same_numbers(ref.sample_sizes(), got.sample_sizes())
    assert set(ref.unmatched["student_id"]) == set(got.unmatched["student_id"])
    assert ref.unmatched_counts().equals(got.unmatched_counts())
    # only the matched comparison rows were brought into memory
    assert (got.data["treatment"] == 0).sum() == got.n_comparison_used < len(pool) / 2
    if method == "propensity":
        np.testing.assert_allclose(got.propensity.params.to_numpy(), ref.propensity.params.to_numpy(), rtol=1e-9)


def test_out_of_core_logit_is_the_mle():
    """Newton passes on sufficient statistics (DuckDB SQL) reproduce statsmodels' Logit."""
    rng = np.random.default_rng(3)
    n = 4000
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])})
    eta = -1.0 + 0.8 * df["x"] + np.where(df["g"] == "b", 0.5, 0.0) - np.where(df["g"] == "c", 0.7, 0.0)
    y = rng.random(n) < 1 / (1 + np.exp(-eta))
    levels = {"g": df["g"].value_counts()}
    terms = design_terms(levels, ["x", "g"])
    assert [t.name for t in terms] == ["const", "x", "g[b]", "g[c]"]  # reference: the most frequent level
    con = duckdb.connect()
    con.register("pool", df[~y])
    xs = sql_terms(terms, quote, literal)

    def pool_pass(beta):
        inner, aggs = pass_sql(xs, beta)
        return unpack(con.execute(f"SELECT {', '.join(aggs)} FROM (SELECT {inner} FROM pool) s").fetchall()[0], len(terms))

    fit = fit_logit(term_matrix(df[y], terms), pool_pass, [t.name for t in terms])
    X = term_matrix(df, terms)
    ref = sm.Logit(y.astype(float), X).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose(fit.params, ref.params, rtol=1e-9, atol=1e-10)


def test_pool_bad_inputs(split, stored):
    pl, pool = split
    df = pd.read_csv(SAMPLE)
    with pytest.raises(DataError, match="comparison row"):
        match_pool(df, pool, SAMPLE_COLUMNS, "vcg")
    with pytest.raises(DataError, match="'pretest'.*not in the pool"):
        match_pool(pl, pool.drop(columns="pretest"), SAMPLE_COLUMNS, "vcg")
    with pytest.raises(DataError, match="method 'vcg' or 'propensity'"):
        match_pool(pl, pool, SAMPLE_COLUMNS, "mahalanobis")
    with pytest.raises(DataError, match="marked treated"):
        match_pool(pl, pool.assign(treatment=1), SAMPLE_COLUMNS, "vcg")
    with pytest.raises(DataError, match="numeric"):
        match_pool(pl, pool.assign(posttest=pool["posttest"].astype(str)), SAMPLE_COLUMNS, "vcg")
    with pytest.raises(DataError, match="no such file"):
        match_pool(pl, stored["parquet"] / "nowhere", SAMPLE_COLUMNS, "vcg")


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_estimate_with_a_pool_is_the_in_memory_evaluation(split, stored, tmp_path):
    """`pleval estimate pl.csv --pool pool.duckdb`: the tables of pleval.estimate on PL + pool
    (placebo schools off: not run with a pool, and the notes say so)."""
    import json

    from typer.testing import CliRunner

    import pleval
    from pleval.cli import app

    pl, pool = split
    pl = pl[pl["grade"].isin([3, 4])]
    pool = pool[pool["grade"].isin([3, 4])]
    ref = pleval.estimate(pd.concat([pl, pool.assign(treatment=0)], ignore_index=True), SAMPLE_COLUMNS, method="vcg",
                          placebo=False, sensitivity=False)
    pl.drop(columns="treatment").to_csv(tmp_path / "pl.csv", index=False)
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    res = CliRunner().invoke(app, ["estimate", str(tmp_path / "pl.csv"), "--pool", str(tmp_path / "pool.parquet"),
                                   "--method", "vcg", "--set", "sensitivity=false", "--out", str(tmp_path / "out"),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(tmp_path / "out" / "overall.csv")
    _same_numbers(ref.overall.reset_index(drop=True)[got.columns.tolist()], got, rtol=1e-10)
    assert "comparison pool" in json.loads(res.stdout)["notes"][0]
