"""Monitoring over time: the time role and panel checks, effects by year and exposure (against
statsmodels on the same stacked regression), exposure counting, the trend contrast, school
trajectories, the panel simulator and its truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pleval.data import Columns, validate
from pleval.errors import DataError
from pleval.inference import ols
from pleval.monitor import check_panel, effects_over_time, simulate_panel

COLS = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
               student_id="student_id", grade="grade", subject="subject", time="year")


@pytest.fixture(scope="module")
def sim():
    return simulate_panel(seed=11, n_schools=16, n_pl_schools=6, students_per_grade=6, subjects=("math",),
                          adoption=(2022, 2023))


def test_time_role_in_validation():
    df = pd.DataFrame({"student_id": [1, 1, 2, 2], "subject": "math", "year": [2021, 2022, 2021, np.nan],
                       "treatment": [1, 1, 0, 0], "posttest": [1.0, 2, 3, 4]})
    cols = Columns(outcome="posttest", treatment="treatment", student_id="student_id", subject="subject", time="year")
    v = validate(df, cols)
    assert v.n_rows == 3 and v.dropped.to_dict("records") == [{"reason": "missing time", "column": "year", "n_rows": 1}]
    with pytest.raises(DataError, match=r"4 row\(s\) share a student id within subject and 'year'"):
        validate(df.assign(year=2021), cols)


def test_panel_counts_gaps_movers_and_condition_changes():
    df = pd.DataFrame({
        "student_id": ["a", "a", "a", "b", "b", "c", "c", "d"],
        "year": [2021, 2022, 2023, 2021, 2023, 2021, 2022, 2022],
        "school_id": ["K1", "K1", "K2", "K1", "K1", "K3", "K3", "K3"],
        "treatment": [1, 1, 1, 0, 0, 0, 1, 0],
    })
    cols = Columns(outcome="y", treatment="treatment", school="school_id", student_id="student_id", time="year")
    pc = check_panel(df, cols)
    assert pc.times == (2021, 2022, 2023)
    assert pc.count("student × subject series with a gap") == 1      # b misses 2022
    assert pc.count("student × subject series observed once") == 1   # d
    assert pc.count("students changing school") == 1                 # a
    assert pc.count("students changing condition") == 1              # c
    assert pc.periods.set_index("time")["rows"].to_dict() == {2021: 3, 2022: 3, 2023: 2}
    assert "students changing condition: 1 of 4 [treatment]" in pc.summary()
    with pytest.raises(DataError, match=r"'student_id' × 'year': 2 row\(s\) repeat a student"):
        check_panel(pd.concat([df, df.iloc[:1]]), cols)
    with pytest.raises(DataError, match=r"mixes numbers and text"):
        check_panel(df.assign(year=["2021", "x", 2023, 2021, 2023, 2021, 2022, 2022]), cols)
    with pytest.raises(DataError, match=r"--time COLUMN"):
        check_panel(df, cols.replace(time=None))


def test_simulated_truths_are_what_the_model_put_in(sim):
    d, truth = sim.data, sim.truth
    assert set(d.columns) >= {"student_id", "school_id", "year", "grade", "treatment", "pl_year", "pretest", "posttest"}
    assert truth.by_exposure["effect_sd"].tolist()[:3] == [0.05, 0.10, 0.15]
    assert truth.by_year.set_index("time").loc[2021, "effect_sd"] == 0.0   # before any adoption
    # adopters: half in 2022, half in 2023; comparison schools have no first program year
    sch = truth.schools
    assert sorted(sch.loc[sch["treatment"] == 1, "pl_year"].value_counts().to_dict().items()) == [(2022, 3), (2023, 3)]
    assert sch.loc[sch["treatment"] == 0, "pl_year"].isna().all()
    # every student keeps one pretest and one condition; grades move up one a year
    g = d.groupby("student_id")
    assert (g["pretest"].nunique() == 1).all() and (g["treatment"].nunique() == 1).all()
    step = d.sort_values("year").groupby("student_id")[["year", "grade"]].diff().dropna()
    assert (step["year"] == step["grade"]).all()
    again = simulate_panel(seed=11, n_schools=16, n_pl_schools=6, students_per_grade=6, subjects=("math",),
                           adoption=(2022, 2023))
    pd.testing.assert_frame_equal(again.data, d)


def test_exposure_counts_observed_program_periods():
    """A PL school adopting in 2022: a student present 2021, 2022, absent 2023, present 2024 has
    exposure 0, 1, –, 2; the by-exposure table has those levels."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        pl = i < 20
        for t in (2021, 2022, 2023, 2024):
            if i == 0 and t == 2023:
                continue
            rows.append({"student_id": i, "school_id": f"K{i % 8}" if pl else f"C{i % 8}", "year": t, "grade": 4,
                         "treatment": int(pl), "pl_year": 2022 if pl else np.nan, "pretest": rng.normal(),
                         "subject": "math"})
    df = pd.DataFrame(rows)
    df["pretest"] = df.groupby("student_id")["pretest"].transform("first")
    df["posttest"] = df["pretest"] + rng.normal(size=len(df))
    ot = effects_over_time(df, COLS, method="regression", cohort="pl_year", equity=False)
    ds = ot._frames["math"]
    s0 = ds[ds["student_id"] == 0].set_index("year")["_exposure"].to_dict()
    assert s0 == {2021: 0, 2022: 1, 2024: 2}
    assert ot.by_exposure["exposure"].tolist() == [0, 1, 2, 3]
    assert ot.by_exposure.set_index("exposure").loc[2, "n_treated"] == 20 - 1 + 1  # 19 in 2023 + student 0 in 2024


def _stacked_design(d):
    """The stacked regression's columns, written out: period × grade intercepts, per-period
    pretest slopes and D × period terms ``D<period>``."""
    cells = pd.get_dummies(d["_t"].astype(str) + "|" + d["grade"].astype(str), dtype=float)
    per = pd.get_dummies(d["_t"].astype(str), dtype=float)
    pre = per.mul(d["_pre"] - d["_pre"].mean(), axis=0).add_prefix("pre")
    terms = per.mul(d["treatment"], axis=0).add_prefix("D")
    return pd.concat([cells, pre, terms], axis=1)


def test_stacked_estimates_equal_statsmodels_on_the_same_regression(sim):
    """Per-year effects and CR1 SEs equal statsmodels' clustered OLS of the same stacked model
    (period × grade intercepts, per-period pretest slopes, D × period terms)."""
    ot = effects_over_time(sim.data, COLS, method="regression", vcov="CR1", equity=False)
    d = ot._frames["math"]
    X = _stacked_design(d)
    fit = sm.OLS(d["posttest"], X).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(d["_cluster"])[0]})
    got = ot.by_year.set_index("time")
    for t in got.index:
        assert got.loc[t, "estimate"] == pytest.approx(fit.params[f"D{t}"], rel=1e-8)
        assert got.loc[t, "se"] == pytest.approx(fit.bse[f"D{t}"], rel=1e-8)
    # the trend is the least-squares slope of the program-period effects on the period index
    prog = got[got["program"]]
    slope = np.polyfit(np.arange(len(prog)), prog["estimate"], 1)[0]
    tr = ot.trend[ot.trend["per"].str.endswith("(program periods)")].iloc[0]
    assert tr["estimate"] == pytest.approx(slope, rel=1e-9)


def test_satterthwaite_df_take_the_school_random_effect_working_model(sim):
    """With ``reference="satterthwaite"``: CR2's Satterthwaite df of the per-year effects under a school random-effect working model
    (as the matched effect's): the dense n × n computation on the same weighted stacked
    regression; the independence working model gives the same SEs and larger df here."""
    from .test_inference import _direct_random_effects_df

    ot = effects_over_time(sim.data, COLS, equity=False, reference="satterthwaite")
    ind = effects_over_time(sim.data, COLS, equity=False, reference="satterthwaite", df_working="independent")
    d = ot._frames["math"]
    X = _stacked_design(d)
    cl, w = pd.factorize(d["_cluster"])[0], d["_w"].to_numpy(float)
    got, base = ot.by_year.set_index("time"), ind.by_year.set_index("time")
    np.testing.assert_allclose(got["se"], base["se"], rtol=1e-12)
    for t in got.index:
        df, rho = _direct_random_effects_df(d["posttest"].to_numpy(float), X.to_numpy(), cl, w,
                                            X.columns.get_loc(f"D{t}"))
        assert rho > 0
        assert got.loc[t, "df"] == pytest.approx(df, rel=1e-8)
    assert (got["df"] < 0.97 * base["df"]).all()


def test_exact_reference_is_the_t_distribution_under_the_working_model(sim, monkeypatch):
    """The default reference: clubSandwich's weighted CR2 of the same stacked regression, and each
    interval's multiplier and p-value those of the exact distribution of its t statistic under
    the independence working model, computed here from the n × n matrices
    (``tests/test_exact_t.py``); ``df`` is the t df with that multiplier. Above
    ``EXACT_BELOW_DF`` Satterthwaite df, Satterthwaite's t of the same form."""
    from scipy import optimize, stats

    from .test_exact_t import _dense_club, _sf_explicit

    ot = effects_over_time(sim.data, COLS, equity=False)
    assert "exact t reference" in ot.inference
    d = ot._frames["math"]
    X = _stacked_design(d).to_numpy()
    y, w, cl = d["posttest"].to_numpy(float), d["_w"].to_numpy(float), pd.factorize(d["_cluster"])[0]
    fit = ols(y, X, weights=w, clusters=cl, cr2="clubsandwich")
    got = ot.by_year.set_index("time")
    names = list(_stacked_design(d).columns)
    for t in got.index[:2]:
        c = np.eye(X.shape[1])[names.index(f"D{t}")]
        a, Q = _dense_club(X, w, cl, c)
        P, b = Q.T @ Q, Q.T @ a
        est, se = c @ fit.params, np.sqrt(c @ fit.vcov @ c)
        assert got.loc[t, "se"] == pytest.approx(se, rel=1e-9)
        crit = optimize.brentq(lambda x: _sf_explicit(a @ a, b, P, x) - 0.05, 0.5, 50, xtol=1e-12)
        assert got.loc[t, "ci_high"] == pytest.approx(est + crit * se, rel=1e-7)
        assert got.loc[t, "pvalue"] == pytest.approx(_sf_explicit(a @ a, b, P, abs(est / se)), abs=1e-8)
        assert stats.t.ppf(0.975, got.loc[t, "df"]) == pytest.approx(crit, rel=1e-7)
    import pleval.monitor.over_time as over_time

    monkeypatch.setattr(over_time, "EXACT_BELOW_DF", 0.0)
    satt = effects_over_time(sim.data, COLS, equity=False).by_year.set_index("time")
    for t in got.index:
        c = np.eye(X.shape[1])[names.index(f"D{t}")]
        assert satt.loc[t, "df"] == pytest.approx(fit.contrast(c)[2], rel=1e-9)
        assert satt.loc[t, "pvalue"] == pytest.approx(fit.contrast(c)[3], rel=1e-9)


def test_reference_options():
    sim = simulate_panel(seed=1, n_schools=8, n_pl_schools=3, students_per_grade=5, subjects=("math",))
    with pytest.raises(DataError, match="reference must be one of"):
        effects_over_time(sim.data, COLS, reference="bootstrap")
    with pytest.raises(DataError, match="reference='exact' needs vcov='CR2'"):
        effects_over_time(sim.data, COLS, reference="exact", vcov="CR1")
    with pytest.raises(DataError, match="df_working applies to reference='satterthwaite'"):
        effects_over_time(sim.data, COLS, df_working="random_effects")
    cr1 = effects_over_time(sim.data, COLS, vcov="CR1", equity=False)  # CR1: G − 1 df, no exact reference
    assert (cr1.by_year["df"] == cr1.by_year["df"].iloc[0]).all()


def test_matching_weights_carry_to_every_row_and_condition_changers_are_left_out(sim):
    d = sim.data.copy()
    mover = d.loc[d["treatment"] == 0, "student_id"].iloc[0]
    d.loc[(d["student_id"] == mover) & (d["year"] == d.loc[d["student_id"] == mover, "year"].max()), "treatment"] = 1
    ot = effects_over_time(d, COLS, cohort="pl_year", equity=False)
    assert any("1 student(s) change condition" in n for n in ot.notes)
    ds = ot._frames["math"]
    assert mover not in set(ds["student_id"])
    assert (ds.groupby("student_id")["_w"].nunique() == 1).all()
    assert (ds.loc[ds["treatment"] == 1, "_w"] == 1).all()
    assert "(before adoption)" in ot.summary()


def test_equity_gap_is_top_minus_bottom(sim):
    ot = effects_over_time(sim.data, COLS, method="regression", cohort="pl_year")
    e = ot.equity.set_index(["time", "band"])
    for t in ot.by_year["time"]:
        gap = e.loc[(t, "gap (top − bottom)"), "estimate"]
        assert gap == pytest.approx(e.loc[(t, "top third"), "estimate"] - e.loc[(t, "bottom third"), "estimate"])
    fig = ot.plot()
    assert len(fig.axes) == 1


def test_equity_bands_do_not_depend_on_student_ids():
    """The bands are the thirds of the baseline pretest over student series, tied pretests in one
    band. Before, rows were ranked with ties broken by row order (sorted by student id), so
    renaming the ids moved the sample's math 2021 gap from 3.00 to 3.73, and a student's early
    and later years could fall in different bands."""
    d = pd.read_csv("sample_data/pl_panel_students.csv")
    cols = COLS.replace(grade="grade")
    ids = d.student_id.unique()
    new = dict(zip(ids, [f"ID{i:06d}" for i in np.random.default_rng(0).permutation(len(ids))]))
    a = effects_over_time(d, cols)
    b = effects_over_time(d.assign(student_id=d.student_id.map(new)), cols)
    pd.testing.assert_frame_equal(a.equity, b.equity, check_exact=False, rtol=1e-9, atol=1e-12)
    assert a.equity["estimate"].notna().all()


def test_equity_bands_rank_within_grade():
    """The bands rank the baseline pretest within grade × subject, as pretest_band does. On a
    vertically scaled pretest (40 points a grade here) with a larger effect in the lowest baseline
    grade (+12 points) and none varying with achievement within grade, each band holds every
    baseline grade in proportion and the gap is near 0. Before, ranked within subject, the bottom
    third was nearly all grade 3 and the gap about −10 points (the grades' difference)."""
    d = simulate_panel(seed=0, n_schools=16, n_pl_schools=6, students_per_grade=8, subjects=("math",), tau=0.0,
                       effects=(0.1,), decimals=None).data
    grade0 = d.sort_values("year").groupby("student_id")["grade"].first()
    g0 = d["student_id"].map(grade0)
    d["pretest"] += 30 * (g0 - 3)
    d["posttest"] += 12.0 * ((g0 == 3) & (d["treatment"] == 1) & (d["year"] >= 2022))
    ot = effects_over_time(d, COLS, method="regression", cohort="pl_year")
    series = ot._frames["math"].drop_duplicates("student_id")
    per_band = pd.crosstab(series["student_id"].map(grade0), series["_band"])
    assert per_band.shape == (3, 3) and (per_band.max(axis=1) - per_band.min(axis=1)).max() <= 1
    gap = ot.equity[(ot.equity["band"] == "gap (top − bottom)") & (ot.equity["time"] >= 2022)]
    assert abs(gap["estimate"].mean()) < 4.0
    assert (gap["estimate"].abs() < 3 * gap["se"]).all()


def test_estimates_shift_exactly_with_the_true_effects():
    """Matching uses only baselines and the model is linear: with the same seed, changing the true
    per-exposure effects shifts each per-year estimate by exactly 15 × the change and leaves the
    SEs unchanged (so coverage does not depend on the effect values)."""
    kw = dict(seed=5, n_schools=12, n_pl_schools=4, students_per_grade=5, subjects=("math",), entrants=False,
              absence=0.0, move=0.0, decimals=None)
    a = effects_over_time(simulate_panel(effects=(0.05, 0.10, 0.15), **kw).data, COLS, cohort="pl_year", equity=False)
    b = effects_over_time(simulate_panel(effects=(0.10, 0.10, 0.10), **kw).data, COLS, cohort="pl_year", equity=False)
    shift = b.by_year["estimate"].to_numpy() - a.by_year["estimate"].to_numpy()
    np.testing.assert_allclose(shift, 15 * np.array([0.0, 0.05, 0.0, -0.05]), atol=1e-9)
    np.testing.assert_allclose(b.by_year["se"], a.by_year["se"], rtol=1e-9)


def test_two_program_periods_have_a_trend_and_the_trajectories_use_it(sim):
    """With two program periods the trend is their difference. Before, a trend needed three, and
    `monitor` compared the school slopes with a pooled trend of 0 without a note."""
    import warnings

    from pleval.errors import PlevalWarning
    from pleval.monitor import monitor

    d = sim.data[sim.data["year"].isin([2023, 2024])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ot = effects_over_time(d, COLS, method="regression", equity=False)
        mon = monitor(d, COLS, method="regression")
    by = ot.by_year.set_index("time")
    program = by.index[by["program"]].tolist()
    assert len(program) == 2
    tr = ot.trend[ot.trend["per"].str.endswith("(program periods)")].iloc[0]
    assert tr["n_points"] == 2
    assert tr["estimate"] == pytest.approx(by.loc[program[1], "estimate"] - by.loc[program[0], "estimate"], rel=1e-9)
    assert mon.schools["math"].pooled_trend == pytest.approx(tr["estimate"], rel=1e-9) and tr["estimate"] != 0
    one = sim.data[sim.data["year"] == 2024]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        mon1 = monitor(one, COLS, method="regression")
    assert "math" not in mon1.schools and any("no school trajectories: they need two program periods" in n
                                              for n in mon1.notes)


def test_terms_named_before_their_year_are_an_error_not_a_scrambled_timeline():
    """'Fall 2021', 'Spring 2022', 'Fall 2022' sort as text out of time order; they were
    analysed in that order (the trend's sign flipped). Year-first terms and school years sort."""
    from pleval.monitor.panel import _time_order

    with pytest.raises(DataError, match=r"column 'term' \(time\) names terms before their year"):
        _time_order(pd.Series(["Fall 2021", "Spring 2022", "Fall 2022"]), "term")
    assert list(_time_order(pd.Series(["2022-23", "2021-22"]), "term")) == ["2022-23", "2021-22"]
    assert list(_time_order(pd.Series(["2021-2 spring", "2021-1 fall"]), "term")) == ["2021-2 spring", "2021-1 fall"]
    assert list(_time_order(pd.Series(["Fall 2021", "Fall 2022"]), "term")) == ["Fall 2021", "Fall 2022"]  # one term name


def test_exposure_notes_a_gap_in_the_periods_and_schools_adopting_before_the_file(sim):
    """Years of exposure count observed periods: with 2022 absent from the file, 2022 adopters
    are at 1 year in 2023 (really 2), without a word before. Notes now say so; a file without
    gaps whose adopters all start inside it gets neither note."""
    d = sim.data[sim.data["year"] != 2022]
    ot = effects_over_time(d, COLS, method="regression", cohort="pl_year", equity=False)
    assert any("periods of 'year' are not evenly spaced (2021, 2023, 2024)" in n for n in ot.notes)
    assert any("adopted before their first period in the file" in n for n in ot.notes)
    full = effects_over_time(sim.data, COLS, method="regression", cohort="pl_year", equity=False)
    assert not any("evenly spaced" in n or "before their first period" in n for n in full.notes)


def test_pl_rows_without_comparisons_in_their_cell_are_noted_and_not_counted(sim):
    """With no comparison student in one grade, that grade's PL students informed no estimate
    yet were counted in n_treated, and the school trajectories stopped on a collinear design
    ("'x0' is constant"). They are now noted, left out of n_treated and of the trajectories."""
    import warnings

    from pleval.errors import PlevalWarning
    from pleval.monitor import monitor

    g = sim.data["grade"].min()
    d = sim.data[~((sim.data["treatment"] == 0) & (sim.data["grade"] == g))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        full = effects_over_time(sim.data, COLS, method="regression", equity=False)
        ot = effects_over_time(d, COLS, method="regression", equity=False)
        mon = monitor(d, COLS, method="regression")
    n_alone = int(((d["treatment"] == 1) & (d["grade"] == g)).sum())
    assert any(f"{n_alone:,} PL row(s) in" in n and "inform no estimate" in n for n in ot.notes)
    assert ot.by_year["n_treated"].sum() == full.by_year["n_treated"].sum() - n_alone
    assert "math" in mon.schools


def test_a_labelled_treatment_gives_the_coded_analysis():
    """--treated-label PL on a PL/Comparison column: the matching at baseline validated the
    0/1-coded rows again with the label and stopped ('treated label 'PL' does not occur; values
    are ['0', '1']'). The analysis now equals that of the 0/1 column."""
    d = pd.read_csv("sample_data/pl_panel_students.csv")
    coded = effects_over_time(d, COLS, equity=False)
    labelled = effects_over_time(d.assign(treatment=d.treatment.map({1: "PL", 0: "Comparison"})),
                                 COLS.replace(treated_label="PL"), equity=False)
    pd.testing.assert_frame_equal(coded.by_year, labelled.by_year)


def test_cohort_zero_means_never_as_an_empty_cell():
    """0 in the cohort column of a comparison school means never, as group_time_effects and R's
    did read it: the same effects as empty cells (before 2026-12-04 it was "a first program period
    within the data" of 2021–2024)."""
    d = pd.read_csv("sample_data/pl_panel_students.csv")
    empty = effects_over_time(d, COLS, cohort="pl_year", equity=False)
    zero = effects_over_time(d.assign(pl_year=d.pl_year.fillna(0)), COLS, cohort="pl_year", equity=False)
    pd.testing.assert_frame_equal(empty.by_year, zero.by_year)


def test_a_school_that_stops_the_program_is_named_as_such():
    """A PL school whose last period is coded 0 (it stopped the program) was called 'a comparison
    school with a first program period within the data'. The error now says the school changes
    treatment between periods, when, and what to do."""
    d = pd.read_csv("sample_data/pl_panel_students.csv")
    d.loc[(d.school_id == "K002") & (d.year == 2024), "treatment"] = 0
    with pytest.raises(DataError, match=r"column 'treatment' \(treatment\): 1 school\(s\) change it between periods "
                                        r"\('K002': 1 in 2021, 2022, 2023, 0 in 2024\); .* leave out its periods"):
        effects_over_time(d, COLS, cohort="pl_year")


def test_the_trend_is_per_year_when_the_years_are_unevenly_spaced():
    """With years 2021, 2022, 2024, 2028 the trend is the slope per year: statsmodels' clustered
    OLS of the same stacked model, its contrast on the years (CR1 both). Before, it was the slope
    per period index and printed as 'trend per year'. The
    school slopes are per year too (weighted least squares on the years), as the pooled trend
    they are compared with."""
    import warnings

    from pleval.errors import PlevalWarning
    from pleval.monitor import monitor

    uneven = simulate_panel(years=(2021, 2022, 2024, 2028), adoption=(2022,), effects=(0.1, 0.2, 0.3),
                            subjects=("math",), seed=2, n_schools=16, n_pl_schools=6, students_per_grade=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ot = effects_over_time(uneven.data, COLS, method="regression", vcov="CR1", equity=False)
        mon = monitor(uneven.data, COLS, method="regression")
    d = ot._frames["math"]
    fit = sm.OLS(d["posttest"], _stacked_design(d)).fit(cov_type="cluster",
                                                         cov_kwds={"groups": pd.factorize(d["_cluster"])[0]})
    years = np.array([2021.0, 2022.0, 2024.0, 2028.0])  # the program periods (no cohort column: all of them)
    c = pd.Series(0.0, index=fit.params.index)
    c[[f"D{t:.0f}" for t in years]] = (years - years.mean()) / ((years - years.mean()) ** 2).sum()
    want = fit.t_test(c.to_numpy()[None, :])
    tr = ot.trend[ot.trend["per"] == "year (program periods)"].iloc[0]
    assert tr["estimate"] == pytest.approx(float(want.effect[0]), rel=1e-8)
    assert tr["se"] == pytest.approx(float(want.sd[0, 0]), rel=1e-8)
    st = mon.schools["math"]
    assert st.pooled_trend == pytest.approx(
        effects_over_time(uneven.data, COLS, method="regression", equity=False).trend.iloc[0]["estimate"], rel=1e-9)
    sy = st.school_years[st.school_years["used"]]
    for r in st.slopes.head(3).itertuples():
        one = sy[(sy["school"] == r.school) & (sy["kind"] == r.kind)]
        assert r.slope == pytest.approx(np.polyfit(one["time"].astype(float), one["estimate"], 1, w=1 / one["se"])[0],
                                        rel=1e-8)
    assert "SD per year" in st.summary()


def test_dates_as_the_time_column_are_periods():
    """A datetime time column is read as periods in date order (ISO text), the trend per period:
    before 2026-12-04 its nanoseconds were taken as years, a slope of 1e-15 points "per year"."""
    from pathlib import Path

    from pleval.data import Columns

    df = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_panel_students.csv")
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), covariates=("frl",),
                   school="school_id", student_id="student_id", grade="grade", subject="subject", time="year")
    dated = effects_over_time(df.assign(year=pd.to_datetime(df["year"].astype(str) + "-05-01")), cols).trend
    terms = effects_over_time(df.assign(year=(df["year"] - 1).astype(str) + "-" + df["year"].astype(str)), cols).trend
    np.testing.assert_allclose(dated["estimate"], terms["estimate"], rtol=1e-10)
    assert (dated["estimate"].abs() > 1e-3).all()


def test_time_zone_dates_with_a_cohort_and_missing_dates():
    """Dates with a time zone: the periods and the cohort's first program period are the same
    local dates, so exposure counts from the adoption period (the cohort's text kept its zone and
    matched no period: exposure 0/1/2, a trend on two periods); a missing date in check_panel is
    an error naming the column (a TypeError)."""
    from pleval.data import Columns

    rng = np.random.default_rng(5)
    rows = []
    for s in range(300):
        sch = s % 12
        t = int(sch < 6)
        pre = rng.normal(0, 1)
        for yr in (2021, 2022, 2023):
            rows.append(dict(sid=s, school=f"K{sch}", treat=t, year=yr, pre=pre,
                             y=pre + 0.2 * t * (yr - 2020) + rng.normal(0, 1), cohort=2021 if t else np.nan))
    df = pd.DataFrame(rows)
    cols = Columns(outcome="y", treatment="treat", pretest=("pre",), school="school", student_id="sid", time="year")
    years = effects_over_time(df, cols, method="regression", cohort="cohort", equity=False).trend
    dated = df.assign(year=pd.to_datetime(df["year"].astype(str) + "-09-01").dt.tz_localize("America/New_York"),
                      cohort=pd.to_datetime(df["cohort"].map(lambda v: f"{int(v)}-09-01" if v == v else None))
                      .dt.tz_localize("America/New_York"))
    zoned = effects_over_time(dated, cols, method="regression", cohort="cohort", equity=False).trend
    np.testing.assert_allclose(zoned["estimate"], years["estimate"], rtol=1e-10)
    gap = dated.copy()
    gap.loc[0, "year"] = pd.NaT
    with pytest.raises(DataError, match="'year' \\(time\\): 1 row\\(s\\) have no date"):
        check_panel(gap, cols)


def test_a_cohort_of_dates_beside_years_is_an_error():
    """Time as years, cohort as dates: an error naming both (the dates became nanoseconds, and
    comparison schools' missing cohorts -9223372036854775808)."""
    from pleval.data import Columns

    rng = np.random.default_rng(1)
    df = pd.DataFrame([dict(sid=s, school=f"K{s % 8}", treat=int(s % 8 < 4), year=yr, pre=rng.normal(), y=rng.normal(),
                            cohort=pd.Timestamp("2021-09-01") if s % 8 < 4 else pd.NaT)
                       for s in range(160) for yr in (2021, 2022, 2023)])
    cols = Columns(outcome="y", treatment="treat", pretest=("pre",), school="school", student_id="sid", time="year")
    with pytest.raises(DataError, match="'cohort' \\(cohort\\) holds dates, but the time column 'year' holds numbers"):
        effects_over_time(df, cols, method="regression", cohort="cohort", equity=False)


def test_school_trajectories_against_statsmodels():
    """Every number of ``school_trajectories`` on constructed matched rows (7 PL and 10
    comparison schools, 2021–2024 with 2022–2024 the program years, two grades, weighted
    comparison rows, a covariate, one school-year of 4 students): the counterfactual model is
    statsmodels WLS of the outcome on period × grade intercepts, a pretest slope per year and
    the covariate, fitted to the comparison rows; each school-year's effect is its rows' mean
    residual with SE s/√n; each slope and SE is statsmodels WLS of those effects on the years
    (weights 1/SE², scale fixed at 1); τ² the maximum of the REML likelihood (scipy); the
    shrunken slopes μ̂ + τ²/(τ² + SE²)(slope − μ̂); z with τ̂²_placebo, the p-values the normal
    mixture over τ²_placebo's confidence distribution (formed here from the placebo slopes and
    integrated by scipy), BH-adjusted by statsmodels."""
    from scipy import integrate, linalg, optimize, stats
    from statsmodels.stats.multitest import multipletests

    from pleval.monitor.schools import school_trajectories

    rng = np.random.default_rng(2026_12_05)
    rows = []
    for school in range(17):
        pl = school < 7
        slope = rng.normal(0.0, 0.15) + (0.4 if school == 0 else 0.0)
        for year in (2021, 2022, 2023, 2024):
            for grade in (3, 4):
                n = 2 if (school == 8 and year == 2023) else int(rng.integers(6, 14))
                pre = rng.normal(0, 1, n)
                gain = (0.1 + slope) * (year - 2021) if pl else slope * (year - 2021)
                y = 0.5 * grade + (0.7 + 0.05 * (year - 2021)) * pre + gain + rng.normal(0, 0.5, n)
                rows.append(pd.DataFrame({"y": y, "t": int(pl), "grade": grade, "_t": year, "_pre": pre,
                                          "_w": 1.0 if pl else rng.uniform(0.5, 2.0, n), "_cluster": f"s{school:02d}",
                                          "frl": rng.integers(0, 2, n).astype(float)}))
    ds = pd.concat(rows, ignore_index=True)
    st = school_trajectories(ds, outcome="y", treatment="t", grade="grade", covariates=ds[["frl"]], pooled_trend=0.1,
                             program_periods=[2022, 2023, 2024], sd=2.0, subject="math", per="year")

    comp = ds[ds["t"] == 0]
    fit = sm.WLS.from_formula("y ~ 0 + C(_t):C(grade) + C(_t):_pre + frl", comp, weights=comp["_w"]).fit()
    r = ds["y"] - fit.predict(ds)
    sy = st.school_years.set_index(["school", "time"])
    for (school, year), part in r.groupby([ds["_cluster"], ds["_t"]]):
        got = sy.loc[(school, year)]
        assert got["estimate"] == pytest.approx(part.mean(), abs=1e-10)
        assert got["se"] == pytest.approx(part.std(ddof=1) / np.sqrt(len(part)), rel=1e-9)
        assert bool(got["used"]) == (year >= 2022 and len(part) >= 5)
    assert not sy.loc[("s08", 2023), "used"]

    sl = st.slopes.set_index("school")
    assert len(sl) == 17 and (sl["kind"] == "PL").sum() == 7
    for school, g in sy[sy["used"]].reset_index().groupby("school"):
        w = sm.WLS(g["estimate"], sm.add_constant(g["time"] - 2022.0), weights=1 / g["se"] ** 2)
        w = w.fit(cov_type="fixed scale")
        assert sl.loc[school, "slope"] == pytest.approx(w.params.iloc[1], rel=1e-9)
        assert sl.loc[school, "se"] == pytest.approx(w.bse.iloc[1], rel=1e-9)
    assert sl.loc["s08", "n_periods"] == 2

    def reml_tau2(b, v):
        def nll(t2):
            w = 1 / (v + t2)
            mu = w @ b / w.sum()
            return 0.5 * (np.log(v + t2).sum() + np.log(w.sum()) + w @ (b - mu) ** 2)
        return optimize.minimize_scalar(nll, bounds=(0, 1), method="bounded", options={"xatol": 1e-12}).x

    pl, pb = sl[sl["kind"] == "PL"], sl[sl["kind"] == "placebo"]
    tau2, tau2_p = (reml_tau2(f["slope"].to_numpy(), f["se"].to_numpy() ** 2) for f in (pl, pb))
    assert st.tau2 == pytest.approx(tau2, abs=1e-7) and st.tau2_placebo == pytest.approx(tau2_p, abs=1e-7)
    w = 1 / (pl["se"] ** 2 + st.tau2)
    mu = (w * pl["slope"]).sum() / w.sum()
    shrunk = mu + st.tau2 / (st.tau2 + pl["se"] ** 2) * (pl["slope"] - mu)
    assert pl["slope_shrunk"].to_numpy() == pytest.approx(shrunk.to_numpy(), rel=1e-9)
    z = (sl["slope"] - 0.1) / np.sqrt(sl["se"] ** 2 + st.tau2_placebo)
    assert sl["z"].to_numpy() == pytest.approx(z.to_numpy(), rel=1e-9)
    # p: 2Φ(−|d|/√(SE² + τ²)) integrated over τ²_placebo's confidence distribution (docs/monitor.md):
    # H(τ²) = P_τ²(Q₁ > q), Q₁ = Σ(y − ȳ)² of the m placebo slopes ~ Σ(β_i + τ²)χ²₁, β the eigenvalues
    # of V on 1⊥, by Pearson's three-moment approximation, an atom H(0) at 0. By parts,
    # p = f(0) + ∫₀^∞ f'(τ²)(1 − H(τ²)) dτ², by scipy's quad to 1e-11
    yp, vp = pb["slope"].to_numpy(), pb["se"].to_numpy() ** 2
    basis = linalg.null_space(np.ones((1, yp.size)))
    beta, q = np.linalg.eigvalsh(basis.T @ np.diag(vp) @ basis), ((yp - yp.mean()) ** 2).sum()

    def q_cdf(t2):
        c = beta + t2
        k1, k2, k3 = c.sum(), (c**2).sum(), (c**3).sum()
        h = k2**3 / k3**2
        return stats.chi2.cdf(h + (q - k1) * np.sqrt(h / k2), h)

    def mixture_p(d, se2):
        slope = lambda t2: stats.norm.pdf(d / np.sqrt(se2 + t2)) * d * (se2 + t2) ** -1.5  # f'(τ²)
        rest = integrate.quad(lambda t2: slope(t2) * q_cdf(t2), 0, np.inf, epsabs=0, epsrel=1e-11, limit=500)[0]
        return 2 * stats.norm.sf(d / np.sqrt(se2)) + rest

    p = [mixture_p(abs(d), s**2) for d, s in zip(sl["slope"] - 0.1, sl["se"])]
    # pleval's 65-node rule is within 0.4% of the integral here (2% down to p = 1e-5, docs); nodes
    # 2% off put p 5.6% off, an offset of 0.001 6%
    assert sl["pvalue"].to_numpy() == pytest.approx(p, rel=5e-3)
    assert pl["p_adjusted"].to_numpy() == pytest.approx(multipletests(pl["pvalue"], method="fdr_bh")[1], rel=1e-9)
    assert list(sl.index[sl["diverges"]]) == list(pl.index[pl["p_adjusted"] < 0.05])
    assert sl.loc["s00", "diverges"] and sl.loc["s00", "direction"] == "faster"
    assert sl["slope_es"].to_numpy() == pytest.approx(sl["slope"].to_numpy() / 2.0)


def test_a_report_of_a_frame_changed_since_is_checked_again(sim):
    """effects_over_time(checked=report) of a frame fixed in place after its check (sentinel
    999s set missing): checked again, with a warning, and the effects are the fixed frame's
    (before 2026-12-05 the report's validation of the data as checked, 999s included, was used)."""
    import warnings

    from pleval.checks import check
    from pleval.errors import PlevalWarning

    df = sim.data.copy()
    rows = df.index[(df["treatment"] == 1) & df["posttest"].notna()][:8]
    df.loc[rows, "posttest"] = 999.0
    report = check(df, COLS, keep_validated=True)
    df.loc[rows, "posttest"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ot = effects_over_time(df, COLS, cohort="pl_year", equity=False, checked=report)
        ref = effects_over_time(df.copy(), COLS, cohort="pl_year", equity=False)
    assert any(issubclass(w.category, PlevalWarning) and "checked again" in str(w.message) for w in caught)
    pd.testing.assert_frame_equal(ot.by_year, ref.by_year)
