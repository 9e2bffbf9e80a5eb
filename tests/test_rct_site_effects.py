"""School effects of a multi-site trial (students randomized within schools) in `pleval.estimate`
and `pleval estimate --design rct --rct-design blocked|individual`: each school's ITT from its own
students, checked against one statsmodels fit per school, blocks within a school as indicators,
one-arm schools counted and left out, and by simulation (coverage of the true school effects,
the share of null schools flagged)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from typer.testing import CliRunner

import pleval
from pleval.cli import app
from pleval.data import Columns
from pleval.errors import PlevalWarning
from pleval.heterogeneity import school_effects

from .test_heterogeneity_school_effects import dense_hc2_df, make_sites

COLS = Columns(outcome="posttest", treatment="treatment", school="school_id", subject="subject", pretest=("pretest",),
               covariates=(), student_id="student_id", block="school_id")


def _estimate(d, cols=COLS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(d, columns=cols, design="rct", rct_design=kw.pop("rct_design", "blocked"), workers=1,
                               **kw)


def _hc2(sub: pd.DataFrame, extra=()) -> tuple[float, float, float]:
    """One school's ITT by statsmodels: OLS of the outcome on assignment, the pretest and the
    indicators of ``extra`` columns, HC2 SE, Bell & McCaffrey's df (dense)."""
    X = pd.get_dummies(sub[["treatment", "pretest", *extra]], columns=list(extra), drop_first=True, dtype=float)
    X = sm.add_constant(X.loc[:, X.std() > 0], has_constant="add")
    r = sm.OLS(sub["posttest"].to_numpy(), X.to_numpy(dtype=float)).fit(cov_type="HC2")
    j = list(X.columns).index("treatment")
    return float(r.params[j]), float(r.bse[j]), dense_hc2_df(X.to_numpy(dtype=float), np.ones(len(X)), j)


def test_each_school_is_its_own_students_assigned_against_control():
    d, _ = make_sites(n_schools=8, n_per=60, seed=11, tau=0.1)
    ev = _estimate(d)
    t = ev.school_effects.table.set_index(["subject", "school"])
    assert len(t) == 16 and ev.school_effects.options["vcov"] == "HC2"
    for (subj, sch), sub in d.groupby(["subject", "school_id"]):  # the slow way, in the test only
        est, se, df = _hc2(sub)
        row = t.loc[(subj, sch)]
        assert row["estimate"] == pytest.approx(est, rel=1e-9) and row["se"] == pytest.approx(se, rel=1e-8)
        assert row["df"] == pytest.approx(df, rel=1e-9)
        assert row["pvalue"] == pytest.approx(2 * stats.t.sf(abs(est / se), df), rel=1e-7)
    # the yardstick of every school is the subject's overall effect's SD, as in the other designs
    direct = school_effects(d, stratum="school_id", covariates=["pretest"], by="subject",
                            sd={s: ev.effect(s).sd for s in ev.subjects}, hedges_correction=True)
    np.testing.assert_allclose(t["effect_size"].to_numpy(),
                               direct.table.set_index(["subject", "school"]).loc[t.index, "effect_size"].to_numpy(),
                               rtol=1e-10)
    assert any(n.startswith("school effects in a multi-site trial") for n in ev.notes)
    assert len(ev.placebo) == 0


def test_blocks_within_a_school_are_indicators_and_one_arm_schools_are_counted():
    d, _ = make_sites(n_schools=6, n_per=80, seed=12, subjects=("math",))
    rng = np.random.default_rng(5)
    d["grade"] = rng.choice([4, 5], len(d))
    d["block"] = d["school_id"] + "-g" + d["grade"].astype(str)
    # grade 5 is assigned with probability 0.8, grade 4 with 0.3: the block must be in the model
    d["treatment"] = (rng.random(len(d)) < np.where(d["grade"] == 5, 0.8, 0.3)).astype(int)
    d.loc[d["grade"] == 5, "posttest"] += 6.0
    d.loc[d["school_id"] == "S005", "treatment"] = 0  # a school with no student assigned to PL
    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", subject="subject",
                   pretest=("pretest",), covariates=(), student_id="student_id", block="block")
    ev = _estimate(d, cols)
    t = ev.school_effects.table.set_index("school")
    assert "S005" not in t.index and len(t) == 5
    assert any("1 school(s) × subject with students in one arm only (80 rows)" in n for n in ev.notes)
    for sch, sub in d[d["school_id"] != "S005"].groupby("school_id"):
        est, se, _ = _hc2(sub, extra=("block",))
        assert t.loc[sch, "estimate"] == pytest.approx(est, rel=1e-9) and t.loc[sch, "se"] == pytest.approx(se, rel=1e-8)


def test_individually_randomized_trial_and_the_command_line(tmp_path):
    d, _ = make_sites(n_schools=5, n_per=50, seed=13, subjects=("math",))
    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", subject="subject",
                   pretest=("pretest",), covariates=(), student_id="student_id")
    ev = _estimate(d, cols, rct_design="individual")
    assert len(ev.school_effects.table) == 5
    path = tmp_path / "trial.csv"
    d.to_csv(path, index=False)
    r = CliRunner().invoke(app, ["estimate", str(path), "--design", "rct", "--rct-design", "blocked", "--block",
                                 "school_id", "--covariates", "none", "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(tmp_path / "o" / "school_effects.csv").set_index("school")
    for sch, sub in d.groupby("school_id"):
        assert csv.loc[sch, "estimate"] == pytest.approx(_hc2(sub)[0], rel=1e-9)
    assert (tmp_path / "o" / "plots" / "forest_math.png").exists()
    # the report says what a school's estimate is in a trial randomized within schools
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "Students were randomized within each school, so each school's estimate is unbiased" in summary
    assert "One estimate per school (its students assigned to PL against its own control students)" in summary
    assert "own circumstances" not in summary and "school circumstances not allowed for" not in summary
    book = pd.read_excel(tmp_path / "o" / "school_effects.xlsx", sheet_name="Summary", header=None, engine="openpyxl")
    cells = [str(v) for v in book.to_numpy().ravel()]
    assert any("Students were randomized within each school (a multi-site trial)" in c for c in cells)
    assert not any("plus the school's own circumstances" in c for c in cells)


def test_school_intervals_cover_the_true_effects_and_null_schools_are_flagged_at_alpha():
    """Known truth: 300 sites × 2 subjects. Each school's 95% CI covers its true effect (15·θ_s
    points) in 95% of schools (binomial SE 0.9 points), and with no effect anywhere 5% of the 600
    schools are significant at α = 0.05 (SE 0.9 points)."""
    d, theta = make_sites(n_schools=300, n_per=40, seed=14, tau=0.15, mu=0.2)
    t = _estimate(d, placebo=False).school_effects.table
    truth = 15 * theta[t["school"].str[1:].astype(int).to_numpy()]
    covered = ((t["ci_low"] <= truth) & (truth <= t["ci_high"])).mean()
    assert 0.925 <= covered <= 0.975, covered
    d0, _ = make_sites(n_schools=300, n_per=40, seed=15, tau=0.0, mu=0.0)
    flagged = (_estimate(d0, placebo=False).school_effects.table["pvalue"] < 0.05).mean()
    assert 0.025 <= flagged <= 0.075, flagged


def test_no_school_with_both_arms_is_a_note_not_a_failure():
    """A trial whose schools were randomized, analysed as blocked: no school has both arms, so
    there are no school effects, and the notes say why (the trial's ITT still runs)."""
    from pleval.data import RCT_SAMPLE_COLUMNS
    from pleval.simulate import simulate_cluster_rct

    d = simulate_cluster_rct(n_schools=8, n_blocks=2, students_per_school=20, grades=[4], seed=21).data
    ev = _estimate(d, RCT_SAMPLE_COLUMNS)  # blocks of schools, each school in one arm
    assert ev.school_effects is None and np.isfinite(ev.effect().raw.estimate)
    assert any(n.startswith("no school effects: no school has students in both arms") for n in ev.notes)
