"""Comparison pools given apart (pleval.pool): the out-of-core DuckDB engine against the
in-memory path (pleval.match on PL + pool), the out-of-core logit against statsmodels."""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import pleval
from pleval.data import SAMPLE_COLUMNS
from pleval.errors import DataError, DesignError
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


@pytest.mark.parametrize("method,where,kw", [("vcg", "parquet", {}), ("propensity", "duckdb", {}),
                                             ("propensity", "parquet", {"tie_cap": 3})])
def test_duckdb_engine_matches_in_memory(split, stored, method, where, kw):
    """The out-of-core match is the in-memory one; with ``tie_cap`` too (ties capped in every
    partition by the ranks of the hashed ids, which order rows as in the whole data)."""
    pl, pool = split
    ref = match_pool(pl, pool, SAMPLE_COLUMNS, method, engine="memory", **kw)
    got = match_pool(pl, stored[where], SAMPLE_COLUMNS, method, engine="duckdb", **kw)
    if kw:
        tr = ref.data["treatment"].to_numpy()[ref.rows] == 1
        assert np.bincount(ref.set_id[~tr]).max() == 3 and got.options["tie_cap"] == 3
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


def test_analysis_weights_out_of_core_are_those_in_memory(split, stored, tmp_path):
    """With analysis weights (some 0, in both files) the out-of-core match gives the in-memory
    one's weights (each set weighing as its PL student), and the rows of weight 0 are left out
    of both and counted alike."""
    pl, pool = split
    rng = np.random.default_rng(4)
    pl = pl.assign(w=np.where(np.arange(len(pl)) % 13 == 0, 0.0, rng.uniform(0.5, 2.0, len(pl))))
    pool = pool.assign(w=np.where(np.arange(len(pool)) % 17 == 0, 0.0, rng.uniform(0.5, 2.0, len(pool))))
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    cols = SAMPLE_COLUMNS.replace(weight="w")
    ref = match_pool(pl, pool, cols, "vcg", engine="memory")
    got = match_pool(pl, tmp_path / "pool.parquet", cols, "vcg", engine="duckdb")
    _same_matched(ref, got)
    _same_numbers(ref.exclusions, got.exclusions)
    ex = got.exclusions.set_index("reason")
    assert (pl["w"] == 0).sum() < ex.loc["analysis weight 0", "n_rows"] <= (pl["w"] == 0).sum() + (pool["w"] == 0).sum()
    s = got.matched
    assert (s["w"] > 0).all()
    t, sets = s["treatment"].to_numpy() == 1, s["_set"].to_numpy()
    pl_w = np.zeros(sets.max() + 1)
    pl_w[sets[t]] = s["w"].to_numpy()[t]
    np.testing.assert_allclose(np.bincount(sets[~t], s["_weight"].to_numpy()[~t], len(pl_w)), pl_w, rtol=1e-12)
    _same_numbers(ref.estimate(by="subject").to_frame(), got.estimate(by="subject").to_frame())


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
    # the subject spelled 'Math' in the PL file and 'math' in the pool: named, before matching
    # (it ended in "no treated row found a match", every row "no comparison in its exact-match cell")
    cap = pl.assign(subject=pl["subject"].str.capitalize())
    for method in ("vcg", "propensity"):
        with pytest.raises(DataError, match=r"column 'subject' \(exact-match key\): the PL file spells 2 value\(s\) "
                                            r"differently from the pool: 'Math' \(the pool: 'math'\), 'Reading'"):
            match_pool(cap, stored["parquet"], SAMPLE_COLUMNS, method)


def _grades_3_4(split):
    """PL and pool rows of grades 3 and 4, the pool rows relabelled into a PL school kept: that
    school is both PL and comparison, so it plays no placebo while its pool rows stay in every
    round's pool, in memory and with a pool alike (before, it stopped the placebo rounds)."""
    pl, pool = split
    return pl[pl["grade"].isin([3, 4])], pool[pool["grade"].isin([3, 4])]


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_estimate_with_a_pool_is_the_in_memory_evaluation(split, tmp_path):
    """`pleval estimate pl.csv --pool pool.parquet`: the tables of pleval.estimate on PL + pool,
    placebo schools included (each round re-matched against the rest of the pool): placebo
    estimates, τ̂²_placebo, calibrated p-values to 1e-10; provenance and run.toml name the pool."""
    import json
    import tomllib

    from typer.testing import CliRunner

    import pleval
    from pleval.cli import app
    from pleval.cli._estimate import _load_config
    from pleval.pool.source import open_pool

    pl, pool = _grades_3_4(split)
    ref = pleval.estimate(pd.concat([pl, pool.assign(treatment=0)], ignore_index=True), SAMPLE_COLUMNS, method="vcg",
                          sensitivity=False)
    pl.drop(columns="treatment").to_csv(tmp_path / "pl.csv", index=False)
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["estimate", str(tmp_path / "pl.csv"), "--pool", str(tmp_path / "pool.parquet"),
                                   "--method", "vcg", "--set", "sensitivity=false", "--out", str(out),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    for name in ("overall", "placebo", "heterogeneity", "school_effects"):
        got = pd.read_csv(out / f"{name}.csv")
        want = pd.read_csv(pd.io.common.StringIO(ref.table("schools" if name == "school_effects" else name)
                                                 .to_csv(index=False)))
        assert len(got) and len(got) == len(want), name
        _same_numbers(want[got.columns.tolist()], got, rtol=1e-10)
    mixed = set(pool["school_id"]) & set(pl["school_id"])
    assert len(mixed) == 1 and not mixed & set(ref.placebo["school"])
    # every other comparison school played placebo
    assert ref.placebo["school"].nunique() == pool["school_id"].nunique() - 1
    notes = json.loads(res.stdout)["notes"]
    assert "comparison pool" in notes[0] and "placebo schools are re-matched" in notes[0]
    prov = json.loads((out / "provenance.json").read_text())["pool"]
    assert prov["engine"] == "duckdb" and prov["path"] == str(tmp_path / "pool.parquet")
    assert prov["eligible_rows"] == int(ref.details[ref.subjects[0]]["design"].sample_sizes().loc["all", "comparison"])
    assert prov["fingerprint"] == open_pool(tmp_path / "pool.parquet").fingerprint
    assert prov["fingerprint"]["n_rows"] == len(pool)
    run = tomllib.loads((out / "run.toml").read_text())
    assert run["pool"] == {"path": "../pool.parquet", "engine": "duckdb"}
    assert _load_config(out / "run.toml")["pool"]["path"] == str((tmp_path / "pool.parquet").resolve())


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_estimate_with_a_pool_in_memory_one_subject(split):
    """The memory engine with propensity matching and one subject: pleval.estimate on PL + pool
    restricted to that subject, placebo schools included."""
    import pleval
    from pleval.pool import estimate_pool

    pl, pool = _grades_3_4(split)
    ref = pleval.estimate(pd.concat([pl, pool.assign(treatment=0)], ignore_index=True), SAMPLE_COLUMNS,
                          method="propensity", subject="math", sensitivity=False)
    got = estimate_pool(pl.drop(columns="treatment"), pool, SAMPLE_COLUMNS, "propensity", engine="memory",
                        subject="math", sensitivity=False)
    for name in ("overall", "placebo", "heterogeneity", "schools", "balance"):
        assert len(ref.table(name)), name
        _same_numbers(ref.table(name), got.table(name), rtol=1e-10)
    assert got.provenance["pool"]["engine"] == "memory"
    assert got.provenance["pool"]["fingerprint"]["kind"] == "DataFrame"


def test_match_cli_with_a_pool_is_the_api(split, stored, tmp_path):
    """`pleval match pl.csv --pool ...` writes match_pool's matched sample, balance and effect,
    and a provenance.json naming the pool; options that do not apply to a pool are refused."""
    import json

    from typer.testing import CliRunner

    from pleval.cli import app

    pl = split[0].drop(columns="treatment")
    pl.to_csv(tmp_path / "pl.csv", index=False)
    m = match_pool(pd.read_csv(tmp_path / "pl.csv"), stored["duckdb"], SAMPLE_COLUMNS, "vcg", k=5)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["match", str(tmp_path / "pl.csv"), "--pool", str(stored["duckdb"]), "--method", "vcg",
                              "--k", "5", "--by", "subject", "--out", str(out)])
    assert res.exit_code == 0, res.output
    _same_numbers(m.matched.reset_index(drop=True).astype({"student_id": str, "school_id": str}),
                  pd.read_csv(out / "matched.csv", dtype={"student_id": str, "school_id": str}))
    _same_numbers(m.balance().table, pd.read_csv(out / "balance.csv"))
    _same_numbers(m.estimate(by=["subject"]).to_frame(), pd.read_csv(out / "effect.csv"))
    _same_numbers(m.sample_sizes().rename_axis("sample").reset_index(), pd.read_csv(out / "sample_sizes.csv"))
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["pool"]["eligible_rows"] == m.n_pool and prov["pool"]["table"] is None
    assert prov["pool"]["fingerprint"]["kind"] == "duckdb" and prov["pool"]["fingerprint"]["table"] == "students"
    assert prov["options"]["k"] == 5 and prov["options"]["method"] == "vcg" and len(prov["input"]["sha256"]) == 64
    res = runner.invoke(app, ["match", str(tmp_path / "pl.csv"), "--pool", str(stored["duckdb"]), "--method", "vcg",
                              "--discard", "treated", "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "--discard" in res.output


def test_spark_rounds_students_are_put_in_one_order():
    """Spark returns a placebo round's students in its partitions' order, which can change from
    run to run: sorted by every column whose values order (an array column left out), any order
    of the same rows gives the same PL file."""
    from pleval.pool.placebo import _sortable

    rows = pd.DataFrame({"school_id": ["b", "a", "a", "c"], "student_id": [4, 2, 1, 3], "pretest": [1.5, np.nan, 2.0, 0.5],
                         "frl": np.array([True, None, False, True], dtype=object),
                         "scores": pd.Series([[1], [2], [3], [4]], dtype=object)})
    keys = _sortable(rows)
    assert keys == ["school_id", "student_id", "pretest", "frl"]
    one = rows.sort_values(keys, kind="stable", ignore_index=True)
    for seed in range(3):
        other = rows.sample(frac=1.0, random_state=seed).sort_values(keys, kind="stable", ignore_index=True)
        pd.testing.assert_frame_equal(one, other)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
@pytest.mark.parametrize("engine", ["duckdb", "memory"])
def test_pl_students_in_the_pool_are_excluded_and_counted(split, engine, tmp_path):
    """A state file used as the pool often holds the PL students too. Before, DuckDB's engine
    matched PL students to their own pool rows (9,290 of the sample's matched comparison rows
    were PL students) and the memory engine stopped on duplicated ids. Those pool rows (same id,
    subject and grade) are now excluded first and counted in the exclusions; the match, the
    estimate and the placebo schools are those of the pool without them."""
    from pleval.pool import estimate_pool
    from pleval.pool.match import PL_IN_POOL

    pl, pool = _grades_3_4(split)
    pl = pl.drop(columns="treatment")
    both = pd.concat([pool, pl.iloc[::2]], ignore_index=True).sample(frac=1.0, random_state=2)
    where = {}
    for name, frame in (("clean", pool), ("both", both)):
        where[name] = tmp_path / f"{name}.parquet"
        frame.to_parquet(where[name], index=False)
    ref = match_pool(pl, where["clean"], SAMPLE_COLUMNS, "propensity", engine=engine)
    got = match_pool(pl, where["both"], SAMPLE_COLUMNS, "propensity", engine=engine)
    _same_matched(ref, got)
    assert not got.matched.loc[got.matched["treatment"] == 0, "student_id"].isin(pl["student_id"]).any()
    first = got.exclusions.iloc[0]
    assert (first["reason"], first["column"], first["n_rows"]) == (PL_IN_POOL, "student_id", len(pl.iloc[::2]))
    _same_numbers(ref.exclusions, got.exclusions.iloc[1:].reset_index(drop=True))
    evs = [estimate_pool(pl, where[n], SAMPLE_COLUMNS, "propensity", engine=engine, subject="math",
                         sensitivity=False) for n in ("clean", "both")]
    for name in ("overall", "placebo", "schools"):
        _same_numbers(evs[0].table(name), evs[1].table(name), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
@pytest.mark.parametrize("engine", ["duckdb", "memory"])
def test_pool_counts_the_pl_rows_left_out_as_in_memory(split, engine, tmp_path):
    """Each subject's PL rows from the file to the estimate (read, dropped for a missing
    pretest, left out for a missing outcome, in the estimate) are the same with a pool given
    apart as with pleval.estimate on PL + pool together."""
    import pleval
    from pleval.pool import estimate_pool

    pl, pool = _grades_3_4(split)
    pl = pl.copy()
    pl.loc[pl.index[(pl["subject"] == "math").to_numpy()][::40], "pretest"] = np.nan
    ref = pleval.estimate(pd.concat([pl, pool.assign(treatment=0)], ignore_index=True), SAMPLE_COLUMNS,
                          method="propensity", subject="math", sensitivity=False, placebo=False)
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    got = estimate_pool(pl.drop(columns="treatment"), tmp_path / "pool.parquet", SAMPLE_COLUMNS, "propensity",
                        engine=engine, subject="math", sensitivity=False, placebo=False)
    want = ref.details["math"]["pl_rows"]
    assert want["reason"].tolist() == ["PL rows read", "missing pretest", "missing outcome", "PL rows in the estimate"]
    assert want["n_rows"].iloc[1] == int(((pl["subject"] == "math") & pl["pretest"].isna()).sum())
    pd.testing.assert_frame_equal(got.details["math"]["pl_rows"], want)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
@pytest.mark.parametrize("engine", ["duckdb", "memory"])
def test_pool_pretest_bands_rank_the_pl_students(split, engine, tmp_path):
    """subgroups=("pretest_band",) with a pool given apart stopped with "subgroup column
    'pretest_band' is not in the data" (the bands were computed on the rows in memory, but the
    pool's match was made on the PL file). The bands now rank the PL students' pretests within
    grade × subject (the pool is not ranked), said in a note: the same subgroup rows as the PL
    file with those bands given as a column of its own."""
    from pleval.pool import estimate_pool
    from pleval.subgroups import pretest_bands

    pl, pool = _grades_3_4(split)
    pl = pl.drop(columns="treatment")
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    kw = dict(engine=engine, subject="math", sensitivity=False, placebo=False)
    got = estimate_pool(pl, tmp_path / "pool.parquet", SAMPLE_COLUMNS, "propensity", subgroups=("pretest_band",), **kw)
    own = pl.assign(band=pretest_bands(pl, "pretest", ["grade", "subject"]))
    ref = estimate_pool(own, tmp_path / "pool.parquet", SAMPLE_COLUMNS, "propensity", subgroups=("band",), **kw)
    a, b = got.table("subgroups"), ref.table("subgroups")
    assert a["level"].tolist() == ["1: P0–33", "2: P33–67", "3: P67–100"]
    num = ["n_treated", "n_control", "estimate", "se", "pvalue", "effect_size"]
    np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=1e-12)
    n_math = int(((pl["subject"] == "math") & pl["pretest"].notna() & pl["posttest"].notna()).sum())
    assert a["n_treated"].sum() <= n_math and a["n_treated"].min() > 0.3 * n_math
    assert any("the PL students' pretests ranked within grade × subject" in n for n in got.notes)


def test_a_collinear_covariate_is_named_out_of_core_too(split, tmp_path):
    """The out-of-core propensity fit listed every column and said 'drop a redundant covariate',
    as the in-memory one did until today; both now name the culprit."""
    pl, pool = split
    pl, pool = pl.assign(sped=pl["frl"] + pl["female"]), pool.assign(sped=pool["frl"].fillna(0) + pool["female"])
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    for engine, src in (("memory", pool), ("duckdb", tmp_path / "pool.parquet")):
        with pytest.raises(DesignError, match="'sped' is a combination of the intercept and the columns before it"):
            match_pool(pl, src, SAMPLE_COLUMNS, "propensity", engine=engine)


def test_memory_engine_refuses_ids_typed_apart_as_duckdb_does(split):
    """Integer student ids in the PL file and text ids in the pool: the in-memory engine found
    no PL student among the pool's rows and matched PL students to themselves (before
    2026-12-04); it now stops as the DuckDB engine does."""
    pl, pool = split
    pl = pl.assign(student_id=pl["student_id"].str[3:].astype(int))
    pool = pool.assign(student_id=pool["student_id"].str[3:])
    with pytest.raises(DataError, match="'student_id' is int64 in the PL file but .* in the pool"):
        match_pool(pl, pool, SAMPLE_COLUMNS, "vcg", engine="memory")


@pytest.mark.parametrize("method", ["vcg", "propensity"])
def test_nan_floats_in_a_parquet_pool_are_missing_values(split, tmp_path, method):
    """Missing floats written as NaN (Spark, polars and arrow do) rather than as Parquet nulls are
    missing values too: the same exclusions, matches and estimates as the null-coded pool. Before
    2026-12-04 rows without an outcome were matched (VCG stopped, "matched rows have no outcome")
    and propensity matching raised a DuckDB binder error on the NaN bounds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pl, pool = split
    null, nan = tmp_path / "null.parquet", tmp_path / "nan.parquet"
    pool.to_parquet(null, index=False)
    arrays = [pa.array(pool[c].to_numpy(), from_pandas=False) if pool[c].dtype.kind == "f" else pa.array(pool[c])
              for c in pool.columns]
    pq.write_table(pa.table(arrays, names=list(pool.columns)), nan)
    assert duckdb.sql(f"SELECT count(*) FROM '{nan}' WHERE posttest IS NULL").fetchall()[0][0] == 0
    ref = match_pool(pl, null, SAMPLE_COLUMNS, method, engine="duckdb")
    got = match_pool(pl, nan, SAMPLE_COLUMNS, method, engine="duckdb")
    pd.testing.assert_frame_equal(got.exclusions, ref.exclusions)
    _same_matched(ref, got)


def test_infinite_values_in_a_duckdb_pool_are_not_counted_as_missing(tmp_path):
    """NaN is a missing value and ±inf is not: DuckDB's NaN test (written so that DuckDB does not
    prune it by Parquet statistics) must not exclude infinite values as "missing" (the first
    version, NOT isfinite(), did)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pleval.pool.duck import DuckEngine

    x = np.array([1.0, np.nan, np.inf, -np.inf, 2.0] * 200)
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table([pa.array(x, from_pandas=False)], names=["v"]), path)
    cond = DuckEngine.not_a_number.format('"v"')
    assert duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE {cond}").fetchall()[0][0] == 200


@pytest.mark.parametrize("column", ["posttest", "pretest"])
def test_infinite_values_in_a_duckdb_pool_are_an_error_as_in_memory(split, tmp_path, column):
    """An infinite outcome or pretest in the pool stops the run with the column and the count, as
    the in-memory engine's validation does; before 2026-12-04 the DuckDB engine matched such rows
    (an infinite pretest became a comparison student; an infinite outcome an infinite estimate)."""
    pl, pool = split
    pool = pool.copy()
    pool.loc[pool.index[[3, 50, 90]], column] = [np.inf, -np.inf, np.inf]
    path = tmp_path / "pool.parquet"
    pool.to_parquet(path, index=False)
    for engine, src in (("memory", pool), ("duckdb", path)):
        with pytest.raises(DataError, match=f"column '{column}' .*3 .*row\\(s\\) are infinite"):
            match_pool(pl, src, SAMPLE_COLUMNS, "vcg", engine=engine)


def test_pool_balance_rows_are_the_in_memory_ones_for_flags_and_two_level_text(tmp_path):
    """A True/False flag is one row (its 0/1 number) and a two-level text covariate one row (its
    second level) in a pool's balance table, as in the in-memory match's; before 2026-12-04 the
    pool engines gave a row per level (frl[False], frl[True]) and the in-memory one did not."""
    df = pd.read_csv(SAMPLE)
    df = df.assign(frl=df["frl"] == 1, female=np.where(df["female"] == 1, "F", "M"))
    pl = df[df["treatment"] == 1].reset_index(drop=True)
    pool = df[df["treatment"] == 0].drop(columns="treatment").reset_index(drop=True)
    path = tmp_path / "pool.parquet"
    pool.to_parquet(path, index=False)
    ref = pleval.match(df, SAMPLE_COLUMNS, method="vcg").balance().table
    got = match_pool(pl, path, SAMPLE_COLUMNS, "vcg", engine="duckdb").balance().table
    assert "frl" in set(ref["variable"]) and "female[M]" in set(ref["variable"]) and "female[F]" not in set(ref["variable"])
    assert list(got["variable"]) == list(ref["variable"])
    np.testing.assert_allclose(got["smd_before"], ref["smd_before"], rtol=1e-10)
    np.testing.assert_allclose(got["smd_after"], ref["smd_after"], rtol=1e-10, atol=1e-12)


def test_a_pool_left_empty_by_exclusions_says_which(split, tmp_path):
    """A covariate missing in every pool row leaves no comparison: the error names the exclusion,
    its column and its rows (before 2026-12-04: "no treated or no comparison rows")."""
    pl, pool = split
    path = tmp_path / "pool.parquet"
    pool.assign(sped=np.nan).to_parquet(path, index=False)
    with pytest.raises(DesignError, match=r"no comparison rows of the pool are left; rows left out .*missing "
                                          r"covariates \(column 'sped'\): \d\d,\d{3}"):  # those not left out before
        match_pool(pl, path, SAMPLE_COLUMNS, "vcg", engine="duckdb")
    half = np.arange(len(pl)) % 2 == 0  # half the PL rows lack the outcome, the other half a covariate of the match
    pool.assign(gpa=1.0).to_parquet(path, index=False)
    gone = pl.assign(posttest=pl["posttest"].where(~half), gpa=np.where(half, 1.0, np.nan))
    with pytest.raises(DesignError, match=r"no PL rows are left; .*missing outcome \(column 'posttest'\): .*"
                                          r"missing gpa \(column 'gpa'\)"):
        match_pool(gone, path, SAMPLE_COLUMNS, "propensity", engine="duckdb", covariates=["pretest", "gpa"])


def test_a_true_false_covariate_in_a_pool_matches_as_in_memory(tmp_path):
    """A True/False flag among the propensity covariates: the DuckDB engine reads the pool's
    BOOLEAN values as 0/1 and the PL file's as True/False; its levels are now one set, the same
    match and estimates as the in-memory engine (before 2026-12-04 no PL level matched a pool
    level and the run stopped with a false separation error)."""
    df = pd.read_csv(SAMPLE)
    df = df.assign(frl=df["frl"] == 1)
    pl = df[df["treatment"] == 1].reset_index(drop=True)
    pool = df[df["treatment"] == 0].drop(columns="treatment").reset_index(drop=True)
    path = tmp_path / "pool.parquet"
    pool.to_parquet(path, index=False)
    ref = match_pool(pl, pool, SAMPLE_COLUMNS, "propensity", engine="memory")
    got = match_pool(pl, path, SAMPLE_COLUMNS, "propensity", engine="duckdb")
    _same_matched(ref, got)
    _same_numbers(ref.estimate().to_frame(), got.estimate().to_frame())


def test_a_pl_school_whose_pl_rows_are_all_left_out_is_still_a_pl_school(tmp_path):
    """VCG against a pool: a PL school whose PL rows all lack the pretest is a PL school all the
    same, and its students in the pool are left out as comparisons, as in memory (before
    2026-12-04 the DuckDB engine matched 65 of them)."""
    df = pd.read_csv(SAMPLE, dtype={"student_id": str, "school_id": str})
    df = df[df.subject == "math"].reset_index(drop=True)
    pl = df[df.treatment == 1].reset_index(drop=True)
    x = pl.school_id.iloc[0]
    pl.loc[pl.school_id == x, "pretest"] = np.nan
    comp = df[df.treatment == 0].reset_index(drop=True)
    extra = comp[comp.school_id == comp.school_id.iloc[0]].assign(school_id=x)
    extra["student_id"] = "x" + extra["student_id"]
    pool = pd.concat([comp, extra], ignore_index=True).drop(columns="treatment")
    path = tmp_path / "pool.parquet"
    pool.to_parquet(path, index=False)
    left = []
    for engine, src in (("memory", pool), ("duckdb", path)):
        r = match_pool(pl, src, SAMPLE_COLUMNS, "vcg", engine=engine)
        left.append(r.exclusions.set_index("reason")["n_rows"]["comparison rows in PL schools (comparisons come "
                                                                 "from non-PL schools only)"])
        assert not ((r.data["school_id"] == x) & (r.data["treatment"] == 0)).any(), engine
    usable = extra[["posttest", "pretest", "frl"]].notna().all(axis=1).sum()  # (the others left out before)
    assert left[0] == left[1] == usable > 100


def test_a_true_false_covariate_in_a_pool_is_labelled_true_false_as_in_memory(tmp_path):
    """A True/False flag's levels in the DuckDB engine's propensity terms, balance rows (the flag
    balanced by level) and separation error read True/False, as the in-memory engine's; before
    2026-12-05 the pool's BOOLEAN values were read as 1.0/0.0 and printed so (frl[0.0], frl = 1.0)."""
    df = pd.read_csv(SAMPLE)
    df = df.assign(frl=df["frl"] == 1)
    kw = dict(covariates=["pretest", "frl", "female"], categorical=["frl"])

    def both(frame, name):
        pl = frame[frame["treatment"] == 1].reset_index(drop=True)
        pool = frame[frame["treatment"] == 0].drop(columns="treatment").reset_index(drop=True)
        path = tmp_path / f"{name}.parquet"
        pool.to_parquet(path, index=False)
        return pl, pool, path

    pl, pool, path = both(df, "pool")
    ref = match_pool(pl, pool, SAMPLE_COLUMNS, "propensity", engine="memory", **kw)
    got = match_pool(pl, path, SAMPLE_COLUMNS, "propensity", engine="duckdb", **kw)
    terms = list(ref.propensity.params.index)
    assert "frl[False]" in terms or "frl[True]" in terms
    assert list(got.propensity.params.index) == terms
    rows = list(ref.balance().table["variable"])
    assert "frl[True]" in rows and list(got.balance().table["variable"]) == rows
    # every flagged row PL: separation, named by the level as the in-memory engine names it
    pl, pool, path = both(df.assign(frl=df["frl"] & (df["treatment"] == 1)), "separated")
    with pytest.raises(DesignError, match=r"separation") as mem:
        match_pool(pl, pool, SAMPLE_COLUMNS, "propensity", engine="memory", **kw)
    with pytest.raises(DesignError, match=r"separation") as duck:
        match_pool(pl, path, SAMPLE_COLUMNS, "propensity", engine="duckdb", **kw)
    level = re.compile(r"frl = \S+ \([^)]*\)")
    named = level.findall(str(mem.value))
    assert len(named) == 1 and re.fullmatch(r"frl = True \(all [\d,]+ rows treated\)", named[0])
    assert level.findall(str(duck.value)) == named
