"""analyze_rct against independent computations (statsmodels, linearmodels, hand formulas),
the simulator's truth, invariances, errors, and a simulation of the whole analysis."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats, special
from statsmodels.stats.multitest import multipletests

from pleval import analyze_rct, rct_by_subject
from pleval.data import RCT_SAMPLE_COLUMNS, Columns
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.inference import ols
from pleval.simulate import simulate_cluster_rct, simulate_multisite_rct

from ._rct_sim import make_cluster_rct
from .conftest import sim_reps, three_scale_coverage
from .test_heterogeneity_school_effects import dense_hc2_df
from .test_rct_inference import direct_cr2

COLS = Columns(
    outcome="posttest", treatment="treatment", pretest="pretest", covariates=("frl", "ell"),
    school="school_id", block="block", student_id="student_id",
)


@pytest.fixture(scope="module")
def trial():
    return make_cluster_rct(7, n_schools=24, n_blocks=4, effect=3.0, attrition=(0.12, 0.06), takeup=(0.75, 0.1))


def _analytic(df):
    return df[df["posttest"].notna()].copy()


def _codes(s):
    return pd.factorize(s)[0]


def test_itt_cr1_equals_statsmodels_with_block_fixed_effects(trial):
    res = analyze_rct(trial, COLS, vcov="CR1")
    a = _analytic(trial)
    ref = smf.ols("posttest ~ treatment + C(block) + pretest + frl + ell", a).fit(
        cov_type="cluster", cov_kwds={"groups": _codes(a["school_id"]), "use_correction": True}
    )
    assert res.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-10)
    assert res.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-9)
    assert res.itt.raw.df == 23  # G − 1
    assert res.itt.raw.n_clusters == 24
    assert res.itt.raw.n_treated == int(a["treatment"].sum())


def test_default_itt_is_cr2_with_satterthwaite_df(trial):
    res = analyze_rct(trial, COLS)
    a = _analytic(trial)
    X = pd.get_dummies(a["block"], drop_first=True, dtype=float)
    X.insert(0, "treatment", a["treatment"].astype(float))
    X.insert(0, "const", 1.0)
    X[["pretest", "frl", "ell"]] = a[["pretest", "frl", "ell"]].astype(float)
    V, dfs = direct_cr2(X, a["posttest"], a["school_id"].to_numpy())
    assert res.itt.raw.se == pytest.approx(np.sqrt(V[1, 1]), rel=1e-8)
    assert res.itt.raw.df == pytest.approx(dfs[1], rel=1e-7)
    crit = stats.t.ppf(0.975, dfs[1])
    assert res.itt.raw.ci_low == pytest.approx(res.itt.raw.estimate - crit * np.sqrt(V[1, 1]), rel=1e-8)
    assert "CR2" in res.itt.raw.method


def test_random_effect_df_on_request(trial):
    """``df_working="random_effects"``: the ITT's CR2 df under a school random-effect working
    model (the dense n × n computation), the same SE, and the method says so. With blocks
    (schools nested in them, their effects absorbed) the df are those of the full design with
    the block indicators as columns."""
    from .test_inference import _direct_random_effects_df

    cols = COLS.replace(block=None)
    base = analyze_rct(trial, cols)
    res = analyze_rct(trial, cols, df_working="random_effects")
    a = _analytic(trial)
    X = np.column_stack([np.ones(len(a)), a[["treatment", "pretest", "frl", "ell"]].to_numpy(dtype=float)])
    df, rho = _direct_random_effects_df(a["posttest"].to_numpy(dtype=float), X, _codes(a["school_id"]), None, 1)
    assert rho > 0
    assert res.itt.raw.df == pytest.approx(df, rel=1e-8)
    assert res.itt.raw.se == pytest.approx(base.itt.raw.se, rel=1e-12)
    assert abs(res.itt.raw.df / base.itt.raw.df - 1) > 0.01
    assert "with a school random effect" in res.itt.raw.method and "random effect" not in base.itt.raw.method
    blocked = analyze_rct(trial, COLS, df_working="random_effects")
    plain = analyze_rct(trial, COLS)
    Xb = np.column_stack([X, pd.get_dummies(a["block"], drop_first=True, dtype=float).to_numpy()])
    df_b, rho_b = _direct_random_effects_df(a["posttest"].to_numpy(dtype=float), Xb, _codes(a["school_id"]), None, 1)
    assert rho_b > 0 and blocked.itt.raw.df == pytest.approx(df_b, rel=1e-8)
    assert blocked.itt.raw.estimate == pytest.approx(plain.itt.raw.estimate, rel=1e-10)
    assert blocked.itt.raw.se == pytest.approx(plain.itt.raw.se, rel=1e-10)
    assert abs(blocked.itt.raw.df / plain.itt.raw.df - 1) > 0.01 and not any("absorbed" in n for n in blocked.notes)
    with pytest.raises(DataError, match="df_working must be one of"):
        analyze_rct(trial, cols, df_working="nope")


def test_effect_size_is_adjusted_difference_over_unadjusted_pooled_sd(trial):
    res = analyze_rct(trial, COLS, baseline_percentile=30)
    a = _analytic(trial)
    yt, yc = a.loc[a.treatment == 1, "posttest"], a.loc[a.treatment == 0, "posttest"]
    nt, nc = len(yt), len(yc)
    sp = np.sqrt(((nt - 1) * yt.var() + (nc - 1) * yc.var()) / (nt + nc - 2))
    omega = 1 - 3 / (4 * (nt + nc) - 9)
    g = omega * res.itt.raw.estimate / sp
    assert res.itt.sd == pytest.approx(sp, rel=1e-12)
    assert res.itt.effect_size.estimate == pytest.approx(g, rel=1e-12)
    assert res.itt.effect_size.ci_high == pytest.approx(omega * res.itt.raw.ci_high / sp, rel=1e-12)
    z30 = stats.norm.ppf(0.30)
    assert res.itt.percentile_points.estimate == pytest.approx(100 * stats.norm.cdf(z30 + g) - 30, rel=1e-10)
    assert res.itt.percentile_points.pvalue == res.itt.raw.pvalue


def _hajek(df, unit):
    """Hand Neyman/Hájek estimate per (block, arm) cell with pandas."""
    g = df.groupby(["block", "treatment", unit])["posttest"].agg(["sum", "count"]).reset_index()
    out = {}
    for (b, t), cell in g.groupby(["block", "treatment"]):
        ybar = cell["sum"].sum() / cell["count"].sum()
        e = cell["sum"] - ybar * cell["count"]
        m = len(cell)
        v = m / (m - 1) * (e**2).sum() / cell["count"].sum() ** 2 if m > 1 else np.nan
        out[(b, t)] = (ybar, v, m, cell["count"].sum())
    return out


def test_neyman_cluster_blocked_by_hand(trial):
    res = analyze_rct(trial, COLS)
    a = _analytic(trial)
    cells = _hajek(a, "school_id")
    blocks = sorted(a["block"].unique())
    n = len(a)
    w = {b: (cells[(b, 0)][3] + cells[(b, 1)][3]) / n for b in blocks}
    tau = sum(w[b] * (cells[(b, 1)][0] - cells[(b, 0)][0]) for b in blocks)
    comps = [(w[b] ** 2 * cells[(b, t)][1], cells[(b, t)][2]) for b in blocks for t in (0, 1)]
    var = sum(c for c, _ in comps)
    df = var**2 / sum(c**2 / (m - 1) for c, m in comps)
    ney = res.neyman.raw
    assert ney.estimate == pytest.approx(tau, rel=1e-12)
    assert ney.se == pytest.approx(np.sqrt(var), rel=1e-10)
    assert ney.df == pytest.approx(df, rel=1e-10)


def test_neyman_individual_is_welch(trial):
    rng = np.random.default_rng(0)
    d = trial.assign(treatment=rng.integers(0, 2, len(trial)))
    res = analyze_rct(d, COLS.replace(block=None, school=None), design="individual")
    a = _analytic(d)
    ref = stats.ttest_ind(a.loc[a.treatment == 1, "posttest"], a.loc[a.treatment == 0, "posttest"], equal_var=False)
    ney = res.neyman.raw
    yt, yc = a.loc[a.treatment == 1, "posttest"], a.loc[a.treatment == 0, "posttest"]
    assert ney.estimate == pytest.approx(yt.mean() - yc.mean(), rel=1e-12)
    assert ney.se == pytest.approx(np.sqrt(yt.var() / len(yt) + yc.var() / len(yc)), rel=1e-12)
    assert ney.pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    # HC2 is the default covariance for individual randomization and equals statsmodels', on Bell &
    # McCaffrey's df (statsmodels' and estimatr's n − k before 2026-12-05)
    sm_fit = smf.ols("posttest ~ treatment + pretest + frl + ell", a).fit(cov_type="HC2")
    assert res.itt.raw.se == pytest.approx(sm_fit.bse["treatment"], rel=1e-9)
    X = sm_fit.model.exog
    assert res.itt.raw.df == pytest.approx(dense_hc2_df(X, np.ones(len(X)), 1), rel=1e-9)


def test_neyman_matched_pairs_of_schools():
    d = make_cluster_rct(3, n_schools=12, n_blocks=6)  # 6 pairs: one treated, one control school each
    res = analyze_rct(d, COLS)
    cells = _hajek(d, "school_id")
    blocks = sorted(d["block"].unique())
    n = len(d)
    wd = np.array([(cells[(b, 0)][3] + cells[(b, 1)][3]) / n * (cells[(b, 1)][0] - cells[(b, 0)][0]) for b in blocks])
    J = len(blocks)
    tau = wd.sum()
    var = J / (J - 1) * np.sum((wd - tau / J) ** 2)
    assert res.neyman.raw.estimate == pytest.approx(tau, rel=1e-12)
    assert res.neyman.raw.se == pytest.approx(np.sqrt(var), rel=1e-10)
    assert res.neyman.raw.df == J - 1
    assert any("pair" in n for n in res.notes)


def test_school_means_analysis_equals_statsmodels(trial):
    res = analyze_rct(trial, COLS, method="cluster_means")
    a = _analytic(trial)
    s = a.groupby("school_id").agg(y=("posttest", "mean"), t=("treatment", "first"), b=("block", "first"),
                                   pre=("pretest", "mean"), frl=("frl", "mean"), ell=("ell", "mean"))
    ref = smf.ols("y ~ t + C(b) + pre + frl + ell", s).fit(cov_type="HC2")
    e = res.itt.raw
    assert e.estimate == pytest.approx(ref.params["t"], rel=1e-10)
    assert e.se == pytest.approx(ref.bse["t"], rel=1e-9)
    # Bell & McCaffrey's df from the dense n × n matrices (m − k before 2026-12-04)
    X = ref.model.exog
    assert e.df == pytest.approx(dense_hc2_df(X, np.ones(len(X)), list(ref.params.index).index("t")), rel=1e-9)
    assert e.df < len(s) - len(ref.params)
    assert list(res.effects)[:2] == ["ITT (school means)", "ITT (OLS, students)"]


@pytest.mark.parametrize("lone", ["first", "last"])
def test_school_means_leave_out_blocks_without_both_arms(trial, lone):
    """A block holding one arm only (here one school in a block of its own: the reference block,
    or a later one) says nothing of the effect with block effects. The school means left it in,
    fitted it exactly (leverage 1) and stopped the whole analysis with an HC2 error; now they
    leave its schools out, with a note, and equal statsmodels on the other schools."""
    d = trial.copy()
    school = sorted(d.school_id.unique())[0]
    d.loc[d.school_id == school, "block"] = "A0" if lone == "first" else "Z9"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # (the Neyman variance's 0 · inf of the lone block warned)
        res = analyze_rct(d, COLS, method="cluster_means")
    a = _analytic(d)
    s = a.groupby("school_id").agg(y=("posttest", "mean"), t=("treatment", "first"), b=("block", "first"),
                                   pre=("pretest", "mean"), frl=("frl", "mean"), ell=("ell", "mean"))
    s = s.drop(index=school)
    ref = smf.ols("y ~ t + C(b) + pre + frl + ell", s).fit(cov_type="HC2")
    e = res.itt.raw
    assert e.estimate == pytest.approx(ref.params["t"], rel=1e-10)
    assert e.se == pytest.approx(ref.bse["t"], rel=1e-9)
    X = ref.model.exog
    assert e.df == pytest.approx(dense_hc2_df(X, np.ones(len(X)), list(ref.params.index).index("t")), rel=1e-9)
    assert any("school-means analysis: the 1 school(s) of the 1 block(s) without both arms are left out" in n
               for n in res.notes)
    assert np.isfinite(analyze_rct(d, COLS).itt.raw.se)  # the student-level CR2 analysis keeps them


def test_a_covariate_one_school_alone_holds_does_not_stop_the_trial(trial):
    """ELL students in one school only: that school alone identifies the school mean of 'ell'
    (leverage 1, where HC2 is undefined). Before, the secondary school-means check stopped the
    whole trial analysis with a bare HC2 error naming no column; now it adjusts for the school
    mean pretest only, with a note naming the school and covariate, and equals statsmodels so;
    the primary student-level ITT is the one without the problem."""
    d = trial.copy()
    school = sorted(d.school_id.unique())[3]
    d["ell"] = np.where((d.school_id == school) & (np.arange(len(d)) % 5 == 0), 1, 0)
    res = analyze_rct(d, COLS)
    assert np.isfinite(res.itt.raw.se)
    (note,) = [n for n in res.notes if "alone identify" in n]
    assert school in note and "ell" in note
    cm = analyze_rct(d, COLS, method="cluster_means").itt.raw
    s = _analytic(d).groupby("school_id").agg(y=("posttest", "mean"), t=("treatment", "first"), b=("block", "first"),
                                             pre=("pretest", "mean"))
    ref = smf.ols("y ~ t + C(b) + pre", s).fit(cov_type="HC2")
    assert cm.estimate == pytest.approx(ref.params["t"], rel=1e-10) and cm.se == pytest.approx(ref.bse["t"], rel=1e-9)


def test_attrition_students_and_schools_counted_from_randomized_sample(trial):
    d = trial.copy()
    treated_schools = sorted(d.loc[d.treatment == 1, "school_id"].unique())[:2]
    d.loc[d.school_id.isin(treated_schools), "posttest"] = np.nan  # two treated schools lost entirely
    has_y = d.index[d.posttest.notna()]
    d.loc[has_y[:5], "pretest"] = np.nan  # outcome present, pretest missing: not in the analytic sample
    res = analyze_rct(d, COLS)
    analytic = d.posttest.notna() & d.pretest.notna()
    stu, sch = res.attrition
    assert (stu.n_randomized_treated, stu.n_randomized_control) == (int((d.treatment == 1).sum()), int((d.treatment == 0).sum()))
    assert stu.n_analytic_treated == int((analytic & (d.treatment == 1)).sum())
    assert stu.n_analytic_control == int((analytic & (d.treatment == 0)).sum())
    assert (sch.level, sch.n_randomized_treated, sch.n_analytic_treated) == ("schools", 12, 10)
    assert sch.overall == pytest.approx(2 / 24)
    assert sch.differential == pytest.approx(2 / 12)
    assert sch.verdict_cautious == "high" and sch.verdict_optimistic == "high"  # 8% overall, 16.7 points
    assert res.equivalence_required
    dropped = res.dropped.set_index("reason")["n_rows"]
    assert dropped["missing pretest"] == 5
    assert dropped["missing outcome"] == int(d.posttest.isna().sum())
    assert res.options["n_analytic"] == int(analytic.sum())


def test_attrition_matches_the_simulator_truth():
    sim = simulate_cluster_rct(n_schools=20, n_blocks=5, students_per_school=40, grades=[4], subjects=["math"],
                               attrition=0.15, differential_attrition=0.06, seed=11)
    res = analyze_rct(sim.data, RCT_SAMPLE_COLUMNS, compliance=False)
    d = sim.truth.details
    stu = res.attrition[0]
    assert stu.overall == pytest.approx(d["attrition_overall"], abs=1e-12)
    assert stu.attrition_treated == pytest.approx(d["attrition_treatment"], abs=1e-12)
    assert stu.differential == pytest.approx(d["attrition_differential"], abs=1e-12)


def test_baseline_equivalence_hedges_g_and_cox_index(trial):
    res = analyze_rct(trial, COLS)
    a = _analytic(trial)
    t = a.treatment == 1
    nt, nc = int(t.sum()), int((~t).sum())
    omega = 1 - 3 / (4 * (nt + nc) - 9)
    eq = res.equivalence.set_index("variable")
    pt, pc = a.loc[t, "pretest"], a.loc[~t, "pretest"]
    sp = np.sqrt(((nt - 1) * pt.var() + (nc - 1) * pc.var()) / (nt + nc - 2))
    assert eq.loc["pretest", "effect_size"] == pytest.approx(omega * (pt.mean() - pc.mean()) / sp, rel=1e-10)
    p1, p0 = a.loc[t, "frl"].mean(), a.loc[~t, "frl"].mean()
    cox = omega * (special.logit(p1) - special.logit(p0)) / 1.65
    assert eq.loc["frl", "effect_size"] == pytest.approx(cox, rel=1e-10)
    assert eq.loc["frl", "measure"] == "Cox index" and eq.loc["pretest", "measure"] == "Hedges g"
    g = abs(eq.loc["pretest", "effect_size"])
    expected = "satisfied" if g <= 0.05 else ("satisfied with statistical adjustment" if g <= 0.25 else "not satisfied")
    assert eq.loc["pretest", "verdict"] == expected == res.equivalence_verdict


def test_baseline_equivalence_is_on_the_impacts_within_grade_sd():
    """Grades pooled on a vertical scale: the impact's effect size is standardized by the SD
    pooled within grade, and the pretest's baseline g is the difference within grade, averaged,
    over that SD. On the SD across grades (inflated by the grade means) a 0.30-SD imbalance read
    as 0.24 SD, "satisfied with statistical adjustment", and the trial kept With Reservations;
    within grade it is not satisfied. Arms equal within every grade but of different grade mix
    have no baseline difference (the difference of the arms' means over all grades read 0.30)."""
    rng = np.random.default_rng(42)
    n_s, grades, per = 40, np.arange(3, 9), 40
    school = np.repeat(np.arange(n_s), len(grades) * per)
    grade = np.tile(np.repeat(grades, per), n_s)
    z = (school % 4 < 2).astype(int)
    pre = 190 + 7 * (grade - 3) + rng.normal(0, 15, school.size) - 4.5 * z
    d = pd.DataFrame({"student_id": np.arange(school.size), "school_id": school, "block": school // 4, "treatment": z,
                      "grade": grade, "subject": "math", "pretest": pre,
                      "posttest": pre + 5 + rng.normal(0, 8, school.size)})
    res = analyze_rct(d, RCT_SAMPLE_COLUMNS.replace(takeup=None, covariates=()), design="cluster")
    eq = res.equivalence.set_index("variable")
    t = z == 1
    ss = sum((len(x) - 1) * x.var() for _, x in d.groupby(["treatment", "grade"])["pretest"])
    sd_within = np.sqrt(ss / (len(d) - 2 * len(grades)))
    omega = 1 - 3 / (4 * len(d) - 9)
    by_grade = d.groupby(["grade", "treatment"])["pretest"].mean().unstack()
    diff = np.average(by_grade[1] - by_grade[0], weights=d.groupby("grade").size())
    g = omega * diff / sd_within
    assert eq.loc["pretest", "sd"] == pytest.approx(sd_within, rel=1e-12)
    assert eq.loc["pretest", "difference"] == pytest.approx(diff, rel=1e-10)
    assert eq.loc["pretest", "effect_size"] == pytest.approx(g, rel=1e-10)
    assert eq.loc["pretest", "measure"] == "Hedges g (within grade)"
    assert g < -0.25 and eq.loc["pretest", "verdict"] == "not satisfied"
    # a grade mix that differs between the arms, the pretest equal within grade, is no imbalance
    mix = d[~((d["treatment"] == 1) & (d["grade"] <= 4)) & ~((d["treatment"] == 0) & (d["grade"] >= 7))].copy()
    mix["pretest"] = mix["pretest"] + 4.5 * mix["treatment"]  # undo the within-grade imbalance
    mix["pretest"] -= mix.groupby(["grade", "treatment"])["pretest"].transform("mean") \
        - mix.groupby("grade")["pretest"].transform("mean")  # equal arm means within every grade
    res_mix = analyze_rct(mix, RCT_SAMPLE_COLUMNS.replace(takeup=None, covariates=()), design="cluster")
    assert abs(res_mix.equivalence.set_index("variable").loc["pretest", "effect_size"]) < 1e-12
    # the impact's effect size divides by the same SD (of the outcome)
    assert res.itt.sd_kind.endswith("within strata")
    across = omega * (pre[t].mean() - pre[~t].mean()) / np.sqrt(
        ((t.sum() - 1) * pre[t].var(ddof=1) + ((~t).sum() - 1) * pre[~t].var(ddof=1)) / (len(d) - 2))
    assert -0.25 < across  # the across-grades reading the trial got before


def test_cace_equals_linearmodels_and_the_wald_ratio(trial):
    """The CACE is linearmodels' 2SLS; with CR1 its SE is IV2SLS's clustered one (debiased) on
    G − 1 df, and by default it takes the ITT's CR2 and Satterthwaite df: the dense CR2 of the
    treatment coefficient for y − θ̂·take-up, over the complier share."""
    from linearmodels.iv import IV2SLS

    cols = COLS.replace(takeup="takeup")
    res, cr1 = analyze_rct(trial, cols), analyze_rct(trial, cols, vcov="CR1")
    a = _analytic(trial)
    ref = IV2SLS.from_formula("posttest ~ 1 + C(block) + pretest + frl + ell + [takeup ~ treatment]", a).fit(
        cov_type="clustered", clusters=pd.Series(_codes(a["school_id"]), index=a.index), debiased=True
    )
    c = cr1.cace.raw
    assert c.estimate == pytest.approx(ref.params["takeup"], rel=1e-9)
    assert c.se == pytest.approx(ref.std_errors["takeup"], rel=1e-8) and c.df == 23  # G − 1
    # just-identified 2SLS = ratio of the two ITTs with the same covariates (Wald / Bloom)
    X = np.column_stack([np.ones(len(a)), a.treatment, pd.get_dummies(a.block, drop_first=True, dtype=float),
                         a[["pretest", "frl", "ell"]]])
    itt_y = np.linalg.lstsq(X, a.posttest.to_numpy(), rcond=None)[0][1]
    itt_d = np.linalg.lstsq(X, a.takeup.to_numpy(float), rcond=None)[0][1]
    c = res.cace.raw
    assert c.estimate == pytest.approx(itt_y / itt_d, rel=1e-9)
    V, dfs = direct_cr2(X, a.posttest.to_numpy() - c.estimate * a.takeup.to_numpy(float), a["school_id"].to_numpy())
    assert c.se == pytest.approx(np.sqrt(V[1, 1]) / itt_d, rel=1e-8)
    assert c.df == pytest.approx(dfs[1], rel=1e-7) and c.df == pytest.approx(res.itt.raw.df, rel=1e-12)
    assert "CR2 (Satterthwaite df)" in c.method and "CR1" in cr1.cace.raw.method
    assert res.complier_share.estimate == pytest.approx(itt_d, rel=1e-9)
    assert 0 < res.complier_share.estimate <= 1


@pytest.mark.slow
def test_cace_holds_its_size_with_few_schools():
    """No effect, 8 schools (two blocks of four), take-up 80% in PL schools and none in control
    schools: the CACE's CR2 test rejects about 5% (400 trials: 4.3%; CR1 on G − 1 df, the earlier
    default, 10.2%; docs/rct.md)."""
    cols = COLS.replace(takeup="takeup")
    reps = sim_reps(400, minimum=100)
    rejected = 0
    for seed in range(reps):  # a loop over data sets, each a whole analysis
        d = make_cluster_rct(seed, n_schools=8, n_blocks=2, takeup=(0.8, 0.0))
        if not d["takeup"].any():
            d.loc[d["treatment"] == 1, "takeup"] = 1  # (no PL school took it up: every one does)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            rejected += analyze_rct(d, cols).cace.raw.pvalue < 0.05
    assert rejected / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps), rejected / reps


@pytest.mark.slow
@pytest.mark.parametrize("design, lin", [("blocked", False), ("individual", False), ("blocked", True)])
def test_student_randomized_itt_covers_a_true_effect_on_every_scale(design, lin):
    """A multi-site trial (12 schools of about 60 students randomized within each, effect 0.3 SD,
    no heterogeneity), analysed with the schools as blocks, as one individually randomized trial,
    and with Lin's interacted adjustment: the ITT's 95% CIs (HC2) cover the true effect in raw
    points, as an effect size and in percentile points, each within 3 binomial SEs of 0.95
    (the effect-size truth divides by the pooled SD's population value: ``three_scale_coverage``)."""
    cols = RCT_SAMPLE_COLUMNS.replace(takeup=None, block="school_id" if design == "blocked" else None)
    reps = sim_reps(800, minimum=200)
    effects, truth = [], []
    for r in range(reps):
        sim = simulate_multisite_rct(n_schools=12, students_per_school=60, grades=(5,), subjects=("math",),
                                     effect=0.3, tau=0.0, seed=30_000 + r)
        effects.append(analyze_rct(sim.data, cols, design=design, lin=lin, compliance=False).itt)
        truth.append(sim.truth.att_raw)
    assert "HC2" in effects[0].raw.method and ("Lin" in effects[0].raw.method) == lin
    three_scale_coverage(effects, truth, sim.truth.sd)


@pytest.mark.slow
def test_cace_covers_a_true_effect_on_every_scale():
    """A cluster trial (24 schools in 6 blocks, a quarter of the PL schools not implementing,
    effect 0.3 SD where implemented): the CACE's 95% CIs (the ITT's CR2 and Satterthwaite df)
    cover the mean effect over implementing schools' students on the three scales, each within
    3 binomial SEs of 0.95."""
    reps = sim_reps(400, minimum=100)
    effects, truth = [], []
    for r in range(reps):
        sim = simulate_cluster_rct(n_schools=24, n_blocks=6, students_per_school=60, grades=(5,), subjects=("math",),
                                   effect=0.3, tau=0.0, noncompliance=0.25, seed=40_000 + r)
        effects.append(analyze_rct(sim.data, RCT_SAMPLE_COLUMNS).cace)
        truth.append(sim.truth.details["cace_sample_sd"] * sim.truth.sd)
    three_scale_coverage(effects, truth, sim.truth.sd)


@pytest.mark.slow
@pytest.mark.parametrize("method, full", [("cluster_means", 400), ("mixedlm", 160)])
def test_school_means_and_mixedlm_cover_a_true_effect_and_hold_their_size(method, full):
    """The cluster trial's other primary analyses, ``method="cluster_means"`` (OLS of school means,
    HC2, Bell–McCaffrey df) and ``method="mixedlm"`` (REML random intercepts, t on G − blocks − 1
    df). With a true effect (24 schools in 6 blocks of about 60 students, 0.3 SD, no
    heterogeneity) their 95% CIs cover it on the three scales, each within 3 binomial SEs of 0.95;
    with none (12 schools of 15–45 students in 2 blocks, ICC 0.2, a pretest and two covariates:
    ``make_cluster_rct``) they reject at 5% within 3 binomial SEs of 0.05."""
    reps = sim_reps(full)
    effects, truth, rejected = [], [], 0
    for r in range(reps):  # a loop over data sets, each a whole analysis
        sim = simulate_cluster_rct(n_schools=24, n_blocks=6, students_per_school=60, grades=(5,), subjects=("math",),
                                   effect=0.3, tau=0.0, seed=70_000 + r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            effects.append(analyze_rct(sim.data, RCT_SAMPLE_COLUMNS.replace(takeup=None), method=method,
                                       compliance=False).itt)
            null = analyze_rct(make_cluster_rct(80_000 + r, n_schools=12, n_blocks=2), COLS, method=method,
                               compliance=False)
        truth.append(sim.truth.att_raw)
        rejected += null.itt.raw.pvalue < 0.05
    assert ("school means" if method == "cluster_means" else "MixedLM") in effects[0].raw.method
    assert null.itt is null.effects["ITT (school means)" if method == "cluster_means" else "ITT (MixedLM)"]
    three_scale_coverage(effects, truth, sim.truth.sd)
    assert abs(rejected / reps - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / reps), rejected / reps


def test_no_cace_when_take_up_does_not_vary(trial):
    """Take-up 0 (or 1) for every student: assignment cannot move it, so there is no CACE (a
    note; it was linearmodels' 'do not have full column rank' stopping the analysis); the ITT
    is unchanged. A take-up column that is not 0/1 is an error naming its role."""
    full = analyze_rct(trial, COLS.replace(takeup="takeup"))
    for v in (0, 1):
        res = analyze_rct(trial.assign(takeup=v), COLS.replace(takeup="takeup"))
        assert res.cace is None and res.itt.raw.estimate == full.itt.raw.estimate
        assert any(f"no CACE: take-up ('takeup') is {v} for every analysed student" in n for n in res.notes)
    with pytest.raises(DataError, match="column 'takeup' \\(takeup\\) must be 0/1 or True/False; found"):
        analyze_rct(trial.assign(takeup=2), COLS.replace(takeup="takeup"))


def test_missing_take_up_leaves_the_itt_and_attrition_alone(trial):
    """Take-up serves the CACE only. Before, a row missing it (or its grade) left the randomized
    sample, uncounted: 12% of treated students without take-up turned a high-attrition trial
    into a low-attrition one (the WWC rating up a level), and take-up recorded only in PL schools
    stopped the run with 'no comparison units' blamed on the treatment column. Now the ITT and
    attrition are those of the complete file, and the CACE is that of the rows whose take-up is
    known: the CACE of those rows analysed alone."""
    cols = COLS.replace(takeup="takeup")
    full = analyze_rct(trial, cols)
    d = trial.copy()
    gone = d.index[(d.treatment == 1).to_numpy()][::8].union(d.index[(d.treatment == 0).to_numpy()][::11])
    d.loc[gone, "takeup"] = np.nan
    res = analyze_rct(d, cols)
    assert res.itt.raw.estimate == full.itt.raw.estimate and res.itt.raw.se == full.itt.raw.se
    for a, b in zip(res.attrition, full.attrition):
        assert a == b
    alone = analyze_rct(d.drop(gone), cols)
    assert res.cace.raw.estimate == pytest.approx(alone.cace.raw.estimate, rel=1e-12)
    assert res.cace.raw.se == pytest.approx(alone.cace.raw.se, rel=1e-10)
    assert res.cace.raw.n_treated == alone.itt.raw.n_treated and res.complier_share.n_control == alone.itt.raw.n_control
    assert any(n.startswith(f"take-up ('takeup') is missing for {int(d.loc[gone, 'posttest'].notna().sum()):,} "
                            "analysed row(s)") for n in res.notes)
    control_blank = analyze_rct(trial.assign(takeup=trial.takeup.where(trial.treatment == 1)), cols)
    assert control_blank.cace is None and control_blank.itt.raw.estimate == full.itt.raw.estimate
    assert any(n.startswith("no CACE: take-up ('takeup') is missing") for n in control_blank.notes)


def test_a_randomized_student_missing_a_grade_is_attrition_not_unrandomized(trial):
    """A row missing its grade (or student id) was randomized all the same: counted in the
    randomized sample and as attrition, as a row missing its pretest is (before, it left the
    randomized sample without a count, lowering attrition)."""
    cols = COLS.replace(grade="grade")
    d = trial.assign(grade=4)
    rows = d.index[(d.treatment == 1).to_numpy()][::7]
    by_pretest = analyze_rct(d.assign(pretest=d.pretest.mask(d.index.isin(rows))), cols)
    for col in ("grade", "student_id"):
        res = analyze_rct(d.assign(**{col: d[col].mask(d.index.isin(rows))}), cols)
        for a, b in zip(res.attrition, by_pretest.attrition):
            assert a == b, col
        assert res.itt.raw.estimate == by_pretest.itt.raw.estimate
        assert res.dropped.set_index("reason").loc[f"missing {col}", "stage"] == "analytic sample (counted as attrition)"


def test_categorical_columns_with_unused_categories_give_the_same_analysis(trial):
    """School, block and a covariate stored as pandas Categoricals whose categories include
    levels absent from the rows (as a Parquet file written from a categorical frame keeps them),
    one of them sorting first: the same ITT, SE and equivalence table as the plain columns (an
    unused category was an indicator of zeros: 'the regressors are collinear')."""
    d = trial.assign(lang=trial["ell"].map({0: "english", 1: "other"}))
    cols = COLS.replace(covariates=("frl", "lang"))
    plain = analyze_rct(d, cols)
    cat = d.assign(**{c: pd.Categorical(d[c], categories=["AAA", *sorted(d[c].unique()), "ZZZ"])
                      for c in ("school_id", "block", "lang")})
    res = analyze_rct(cat, cols)
    assert res.itt.raw.estimate == pytest.approx(plain.itt.raw.estimate, rel=1e-12)
    assert res.itt.raw.se == pytest.approx(plain.itt.raw.se, rel=1e-10)
    pd.testing.assert_frame_equal(res.equivalence.reset_index(drop=True), plain.equivalence.reset_index(drop=True))


def test_mixedlm_equals_statsmodels(trial):
    res = analyze_rct(trial, COLS, method="mixedlm")
    a = _analytic(trial)
    ref = smf.mixedlm("posttest ~ treatment + C(block) + pretest + frl + ell", a, groups=a["school_id"]).fit(reml=True)
    e = res.itt.raw
    assert e.estimate == pytest.approx(ref.fe_params["treatment"], rel=1e-5)
    assert e.se == pytest.approx(ref.bse_fe["treatment"], rel=1e-4)
    assert e.df == 24 - 4 - 1
    assert "MixedLM" in e.method


def test_mixedlm_falls_back_to_powell_and_says_so(trial, monkeypatch):
    from statsmodels.regression.mixed_linear_model import MixedLM

    original = MixedLM.fit

    def failing_default(self, *args, **kwargs):
        if kwargs.get("method") is None:
            raise np.linalg.LinAlgError("Singular matrix (forced by the test)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", failing_default)
    res = analyze_rct(trial, COLS, method="mixedlm")
    assert any("refitted with powell" in n for n in res.notes)
    monkeypatch.undo()
    a = _analytic(trial)
    ref = smf.mixedlm("posttest ~ treatment + C(block) + pretest + frl + ell", a, groups=a["school_id"]).fit(reml=True)
    assert res.itt.raw.estimate == pytest.approx(ref.fe_params["treatment"], rel=1e-3)


def test_mixedlm_at_the_boundary_is_a_fit_with_a_note():
    """No school variance (ICC 0): the REML school variance lands on the boundary, which
    statsmodels flags with a ConvergenceWarning. That is a fit (lme4's "boundary (singular)
    fit"), not a failure: before, pleval stopped with "MixedLM did not converge". The fixed
    effects are then OLS's; the note says so."""
    for seed in (1, 2):  # seed 1: the joint Hessian is not positive definite there (statsmodels' SE 1.489)
        d = make_cluster_rct(seed, n_schools=8, n_blocks=2, icc=0.0, effect=3.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = analyze_rct(d, COLS, method="mixedlm")
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("school variance is estimated at the boundary" in n for n in res.notes)
        ref = smf.ols("posttest ~ treatment + C(block) + pretest + frl + ell", _analytic(d)).fit()
        assert res.itt.raw.estimate == pytest.approx(ref.params["treatment"], rel=1e-6)
        assert res.itt.raw.se == pytest.approx(ref.bse["treatment"], rel=1e-4)  # (X'V⁻¹X)⁻¹ at τ² ≈ 0


def test_subgroups_match_statsmodels_interacted_model(trial):
    res = analyze_rct(trial, COLS, vcov="CR1", subgroups=["frl", "pretest_tercile"])
    a = _analytic(trial)
    groups = _codes(a["school_id"])
    ref = smf.ols("posttest ~ C(frl) + treatment:C(frl) + C(block) + pretest + ell", a).fit(
        cov_type="cluster", cov_kwds={"groups": groups, "use_correction": True}
    )
    sub = res.subgroups.set_index(["subgroup", "level"])
    for lev in (0, 1):
        name = f"treatment:C(frl)[{lev}]"
        assert sub.loc[("frl", lev), "estimate"] == pytest.approx(ref.params[name], rel=1e-9)
        assert sub.loc[("frl", lev), "se"] == pytest.approx(ref.bse[name], rel=1e-8)
    # two-level interaction: t test of the difference with G − 1 df (CR1)
    diff = ref.t_test("treatment:C(frl)[1] - treatment:C(frl)[0] = 0")
    p_ref = 2 * stats.t.sf(abs(float(np.squeeze(diff.tvalue))), 23)
    inter = res.interactions.set_index("subgroup")
    assert inter.loc["frl", "pvalue"] == pytest.approx(p_ref, rel=1e-7)
    # pretest thirds: levels from the analytic sample's tertiles
    cuts = np.quantile(a["pretest"], [1 / 3, 2 / 3])
    low = a["pretest"] < cuts[0]
    assert sub.loc[("pretest_tercile", "low third"), "n_treated"] == int((low & (a.treatment == 1)).sum())
    assert inter.loc["pretest_tercile", "df1"] == 2
    # multiplicity: BH across all subgroup rows and across the interaction tests
    np.testing.assert_allclose(res.subgroups["pvalue_adjusted"],
                               multipletests(res.subgroups["pvalue"], method="fdr_bh")[1], rtol=1e-12)
    np.testing.assert_allclose(res.interactions["pvalue_adjusted"],
                               multipletests(res.interactions["pvalue"], method="fdr_bh")[1], rtol=1e-12)


def test_invariances(trial):
    base = analyze_rct(trial, COLS)
    flipped = analyze_rct(trial.assign(treatment=1 - trial.treatment), COLS)
    assert flipped.itt.raw.estimate == pytest.approx(-base.itt.raw.estimate, rel=1e-10)
    assert flipped.neyman.raw.estimate == pytest.approx(-base.neyman.raw.estimate, rel=1e-10)
    assert flipped.itt.raw.se == pytest.approx(base.itt.raw.se, rel=1e-8)
    scaled = analyze_rct(trial.assign(posttest=10 * trial.posttest + 5), COLS)
    assert scaled.itt.raw.estimate == pytest.approx(10 * base.itt.raw.estimate, rel=1e-10)
    assert scaled.itt.effect_size.estimate == pytest.approx(base.itt.effect_size.estimate, rel=1e-10)
    assert scaled.itt.effect_size.ci_low == pytest.approx(base.itt.effect_size.ci_low, rel=1e-10)
    shuffled = analyze_rct(trial.sample(frac=1.0, random_state=3), COLS)
    pd.testing.assert_frame_equal(shuffled.to_frame(), base.to_frame(), rtol=1e-9)


def test_randomization_test_inside_analyze_rct():
    d = make_cluster_rct(2, n_schools=8, n_blocks=1, effect=8.0)
    res = analyze_rct(d, COLS.replace(block=None, covariates=()), permutations=500)
    ri = res.randomization
    assert ri.exact and ri.n_assignments == 70 and ri.unit == "cluster" and ri.covariate_adjusted
    assert ri.pvalue == pytest.approx(np.mean(np.abs(ri.null_distribution) >= abs(ri.statistic) - 1e-9))
    big = make_cluster_rct(2, n_schools=30, n_blocks=3, effect=8.0)
    calls = []
    r1 = analyze_rct(big, COLS, permutations=400, seed=5, progress=lambda d_, t_: calls.append(d_)).randomization
    r2 = analyze_rct(big, COLS, permutations=400, seed=5).randomization
    assert not r1.exact and r1.pvalue == r2.pvalue and calls[-1] == 400


def test_long_format_by_subject():
    sim = simulate_cluster_rct(n_schools=12, n_blocks=3, students_per_school=30, grades=[4, 5], seed=3)
    with pytest.raises(DataError, match="subjects"):
        analyze_rct(sim.data, RCT_SAMPLE_COLUMNS)
    out = rct_by_subject(sim.data, RCT_SAMPLE_COLUMNS)
    assert set(out) == set(sim.data["subject"].unique())
    for s, r in out.items():
        sub = sim.data[(sim.data.subject == s)]
        assert r.options["n_randomized"] == len(sub)
        assert r.options["subject"] == s
    assert "Randomized trial" in out["math"].summary()
    assert set(out["math"].to_frame()["scale"]) == {"raw", "effect size", "percentile points"}


def test_check_notes_students_randomized_within_schools(trial):
    """``check(design="rct")`` cannot know whether a trial is cluster, blocked or individual: when
    the treatment varies within schools it notes it (which schools, and the designs that fit),
    where it said "no problems found" and the cluster analysis then stopped; a trial randomized
    by whole schools gets no such note."""
    from pleval import check

    d = trial.copy()
    school = d.school_id.iloc[0]
    first = d.index[d.school_id == school]
    d.loc[first[:len(first) // 2], "treatment"] = 1 - d.loc[first[0], "treatment"]
    given = {"outcome": "posttest", "treatment": "treatment", "school": "school_id", "pretest": "pretest"}
    notes = [p for p in check(d, given=given, design="rct").notes if p.kind == "randomized within schools"]
    assert len(notes) == 1 and notes[0].n_rows == 1 and repr(school) in notes[0].message
    assert "--design blocked" in notes[0].fix
    assert not [p for p in check(trial, given=given, design="rct").notes if p.kind == "randomized within schools"]
    with pytest.raises(DesignError, match="blocked design, each school a block, or the individual design"):
        analyze_rct(d, COLS)


def test_bad_input_errors(trial):
    d = trial.copy()
    first = d.index[d.school_id == d.school_id.iloc[0]]
    d.loc[first[0], "treatment"] = 1 - d.loc[first[0], "treatment"]
    with pytest.raises(DesignError, match="'treatment'.*varies within 1 school"):
        analyze_rct(d, COLS)
    with pytest.raises(DataError, match="design must be"):
        analyze_rct(trial, COLS, design="stepped")
    with pytest.raises(DataError, match="weight"):
        analyze_rct(trial.assign(w=1.0), COLS.replace(weight="w"))
    with pytest.raises(DataError, match="clusters by school"):
        analyze_rct(trial, COLS.replace(school=None, block=None), design="individual", vcov="CR2")
    with pytest.raises(DataError, match="'missing_col'"):
        analyze_rct(trial, COLS.replace(covariates=("missing_col",)))
    d2 = trial.assign(block=np.where(np.arange(len(trial)) % 2 == 0, "x", "y"))
    with pytest.raises(DesignError, match="nested in blocks"):
        analyze_rct(d2, COLS)


@pytest.mark.slow
def test_simulation_false_positive_rate_coverage_and_naive_over_rejection():
    """24 schools (12 treated in 4 blocks), ICC 0.2, no effect. Over R replications the CR2 ITT
    rejects at 5% within 0.05 ± 3.3·√(0.05·0.95/R) (99.9% binomial range); the naive (classical,
    unclustered) SE rejects far more often; coverage of the 95% CIs of the ITT (raw and effect
    size) and of the Neyman estimate lies in [0.90, 0.99]."""
    reps = sim_reps(800, minimum=200)
    rej_cr2 = rej_naive = cover_es = cover_ney = 0
    for r in range(reps):
        d = make_cluster_rct(50_000 + r, n_schools=24, n_blocks=4, icc=0.2, size_range=(10, 40))
        res = analyze_rct(d, COLS, compliance=False)
        rej_cr2 += res.itt.raw.pvalue <= 0.05
        cover_es += res.itt.effect_size.ci_low <= 0 <= res.itt.effect_size.ci_high
        cover_ney += res.neyman.raw.ci_low <= 0 <= res.neyman.raw.ci_high
        a = _analytic(d)
        X = np.column_stack([np.ones(len(a)), a[["treatment", "pretest", "frl", "ell"]],
                             pd.get_dummies(a.block, drop_first=True, dtype=float)])
        naive = ols(a.posttest, X, vcov="classical")
        rej_naive += naive.pvalues[1] <= 0.05
    se = np.sqrt(0.05 * 0.95 / reps)
    assert abs(rej_cr2 / reps - 0.05) < 3.3 * se, rej_cr2 / reps
    assert rej_naive / reps > 0.05 + 6 * se, rej_naive / reps
    assert 0.90 <= cover_es / reps <= 0.99
    assert 0.90 <= cover_ney / reps <= 0.99


def test_blocks_with_different_assignment_shares_are_weighted_by_n_p_1_minus_p():
    """With block effects the OLS ITT weights block b by n_b·p_b(1 − p_b) (closed form, no
    covariates); the Neyman estimate by n_b. When the shares differ the notes say so, with the
    share of weight that moves; with equal shares they do not."""
    from pleval.rct import block_weight_shift

    rng = np.random.default_rng(21)
    rows = []
    for b in range(10):
        n_b, p_b = 80 + 10 * b, (0.2 if b % 2 else 0.5)
        z = rng.permutation(np.arange(n_b) < round(n_b * p_b)).astype(int)
        y = rng.normal(size=n_b) + b + z * (0.1 if b % 2 else 0.6)  # effects differ with the share
        rows.append(pd.DataFrame({"block": f"B{b}", "treatment": z, "posttest": y}))
    d = pd.concat(rows, ignore_index=True)
    cols = Columns(outcome="posttest", treatment="treatment", block="block")
    res = analyze_rct(d, cols, design="blocked")
    g = d.groupby("block")
    n_b, n_t = g.size().to_numpy(), g["treatment"].sum().to_numpy()
    p = n_t / n_b
    diff = (g.apply(lambda s: s.posttest[s.treatment == 1].mean() - s.posttest[s.treatment == 0].mean())).to_numpy()
    w_ols = n_b * p * (1 - p)
    assert res.itt.raw.estimate == pytest.approx(np.sum(w_ols * diff) / w_ols.sum(), rel=1e-10)
    assert res.effects["Neyman difference in means"].raw.estimate == pytest.approx(np.sum(n_b * diff) / n_b.sum(),
                                                                                   rel=1e-10)
    shift = 0.5 * np.abs(w_ols / w_ols.sum() - n_b / n_b.sum()).sum()
    assert block_weight_shift(n_t, n_b)[0] == pytest.approx(shift, rel=1e-12) and shift > 0.05
    note = next(n for n in res.notes if "differs between the blocks" in n)
    assert "20% to 50%" in note and f"{shift:.0%} of the weight" in note
    # equal shares (odd blocks round to the nearer half): no note
    d["treatment"] = d.groupby("block").cumcount() % 2
    assert not any("differs between the blocks" in n for n in analyze_rct(d, cols, design="blocked").notes)


def test_a_covariance_that_ignores_randomized_schools_is_warned(trial):
    """Schools randomized (treatment constant in each) but analysed with students independent —
    design 'individual' or 'blocked', or vcov HC2 in a cluster design — gives standard errors far
    too small (here about half the CR2 SE): a warning and a note say so. Students randomized
    within schools (treatment varying in each school) get none."""
    cr2 = analyze_rct(trial, COLS).itt.raw.se
    with pytest.warns(PlevalWarning, match="constant within each of the 24 schools of 'school_id'.*design "
                                           "'individual' with vcov='HC2'.*use design='cluster'"):
        ind = analyze_rct(trial, COLS.replace(block=None), design="individual")
    assert ind.itt.raw.se < 0.7 * cr2 and any("look randomized" in n for n in ind.notes)
    with pytest.warns(PlevalWarning, match="vcov='HC2' treats students as independent, but the schools were "
                                           "randomized \\(design 'cluster'\\)"):
        analyze_rct(trial, COLS, vcov="HC2")
    rng = np.random.default_rng(3)
    within = trial.assign(treatment=rng.integers(0, 2, len(trial)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlevalWarning)
        res = analyze_rct(within, COLS.replace(block="school_id"), design="blocked")
    assert not any("independent" in n for n in res.notes)


def test_summary_states_the_level_of_its_intervals(trial):
    """The trial summary's interval column is headed by the analysis's level (it said 95% at any)."""
    res = analyze_rct(trial, COLS, level=0.9)
    head = next(ln for ln in res.summary().splitlines() if ln.strip().startswith("analysis"))
    assert "90% CI" in head and "95%" not in head
    lo, hi = res.itt.raw.ci_low, res.itt.raw.ci_high
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.95, res.itt.raw.df) * res.itt.raw.se)


def test_a_block_column_with_no_block_holding_both_arms_is_a_clear_error(trial):
    """The school id given as the block (each block one school, one arm) ended in numpy's
    "negative dimensions are not allowed"; the error now names the block column."""
    bad = trial.assign(block=trial["school_id"])
    with pytest.raises(DesignError, match=r"column 'block' \(block\): none of its \d+ blocks holds both"):
        analyze_rct(bad, COLS)


def test_a_level_given_as_a_percent_is_an_error_not_nan_intervals(trial):
    """level=95 gave NaN intervals silently (level=1.0 infinite ones); every interval now
    refuses a level outside (0, 1)."""
    for bad in (95, 1.0, 0.0):
        with pytest.raises(DataError, match=r"level must lie strictly between 0 and 1 \(0.95 for a 95% interval\)"):
            analyze_rct(trial, COLS, level=bad).to_frame()


def test_an_undefined_htz_test_is_said_so_not_a_negative_statistic():
    """Subgroups by the randomization block (10 levels of 4 schools): η = 2.4 for 9 constraints
    gave 'HTZ = −5.649 on (9, −5.6) df'. The statistic and p are now empty, with a note."""
    from pleval.data import read_table

    df = read_table("sample_data/pl_cluster_rct.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        res = analyze_rct(df, RCT_SAMPLE_COLUMNS, subject="math", subgroups=("block",))
    row = res.subgroup_tests.iloc[0] if hasattr(res, "subgroup_tests") else res.interactions.iloc[0]
    assert row["df2"] <= 0 and np.isnan(row["statistic"]) and np.isnan(row["pvalue"])
    assert row["test"].startswith("HTZ undefined")
    assert any("HTZ test of equal effects across 10 levels is undefined" in n for n in res.notes)


def test_treatment_coded_1_2_gets_no_guess_and_swapped_arms_are_warned_of(trial):
    """A 1/2 treatment column: the fix suggested '--treated-label 1', and following it when 1
    was control gave a negative ITT and a complier share of −0.91 without a word. The fix now
    names both codes, and a clearly negative complier share is warned of."""
    import pleval

    coded = trial.assign(treatment=trial["treatment"].map({1: 2, 0: 1}))
    report = pleval.check(coded, COLS)
    fix = next(p.fix for p in report.errors if p.kind == "treatment")
    assert fix == "--treated-label 1 or --treated-label 2, whichever code means PL"
    swapped = trial.assign(treatment=1 - trial["treatment"])
    with pytest.warns(PlevalWarning, match="complier share .* is negative: take-up is higher in the control arm"):
        res = analyze_rct(swapped, COLS.replace(takeup="takeup"))
    assert any("is negative" in n for n in res.notes)


def test_a_low_attrition_cluster_trial_does_not_say_equivalence_is_not_required():
    """`pleval rct` told users of a low-attrition cluster trial that baseline equivalence was not
    required, while pleval's own rating (the WWC's cluster step: joiners, which pleval cannot
    see) required it. The note now says when it is not required and how to declare it."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    res = analyze_rct(d, RCT_SAMPLE_COLUMNS, subject="math")
    assert not res.equivalence_required
    assert res.equivalence_note.startswith("WWC: attrition is low; in a cluster trial baseline equivalence is then not "
                                           "required only if no students joined the schools after random assignment")
    assert "--set joiners=false" in res.equivalence_note and "--set joiners=false" in res.summary()
    blocked = analyze_rct(d, RCT_SAMPLE_COLUMNS, subject="math", design="blocked")
    assert blocked.equivalence_note.startswith("WWC: attrition is low, so baseline equivalence is not required")


def test_take_up_recorded_in_the_pl_arm_only_keeps_both_arms_per_subject():
    """Take-up is often recorded in PL schools only. Every row was randomized all the same, so
    rct_by_subject (and `pleval rct`) analyse each subject as analyze_rct does. Before, its
    subject check dropped the rows without take-up and stopped: "no comparison units"."""
    from pleval.rct import rct_by_subject

    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    d.loc[d[RCT_SAMPLE_COLUMNS.treatment] == 0, RCT_SAMPLE_COLUMNS.takeup] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by = rct_by_subject(d, RCT_SAMPLE_COLUMNS)
        one = analyze_rct(d, RCT_SAMPLE_COLUMNS, subject="math")
    assert set(by) == set(d[RCT_SAMPLE_COLUMNS.subject])
    assert by["math"].itt.raw.estimate == pytest.approx(one.itt.raw.estimate, rel=1e-12)


def test_a_cluster_trial_left_with_one_school_in_an_arm_is_an_error():
    """Attrition that leaves one treated school in the analytic sample: its effect is that school's
    own and CR2 has nothing to measure school variation with. Before 2026-12-04 the ITT was
    reported all the same (a true null rejected in 41% of simulated trials); now it stops, naming
    the school column and the counts, as the randomized sample's check does."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    d = d[d["subject"] == "math"]
    treated = sorted(d.loc[d["treatment"] == 1, "school_id"].unique())
    lost = d.assign(posttest=d["posttest"].where(~d["school_id"].isin(treated[1:])))
    with pytest.raises(DesignError, match=r"at least 2 treated and 2 control schools \(column 'school_id'\); "
                                          r"the analytic \(after attrition\) sample has 1 treated and 20 control"):
        analyze_rct(lost, RCT_SAMPLE_COLUMNS, design="cluster")
    kept = d.assign(posttest=d["posttest"].where(~d["school_id"].isin(treated[2:])))  # two treated schools: analysed
    assert analyze_rct(kept, RCT_SAMPLE_COLUMNS, design="cluster").itt.raw.n_clusters == 22


def test_the_cace_counts_the_schools_with_take_up_known_and_needs_two_per_arm():
    """The CACE of the rows whose take-up is known reports those rows' schools (it reported every
    analysed school before 2026-12-04), and with take-up known in one treated school there is no
    CACE, with the reason in the notes (it was fitted on that one school)."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    d = d[d["subject"] == "math"]
    treated = sorted(d.loc[d["treatment"] == 1, "school_id"].unique())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        part = analyze_rct(d.assign(takeup=d["takeup"].where(~d["school_id"].isin(treated[:5]))), RCT_SAMPLE_COLUMNS,
                           design="cluster")
        one = analyze_rct(d.assign(takeup=d["takeup"].where(~d["school_id"].isin(treated[1:]))), RCT_SAMPLE_COLUMNS,
                          design="cluster")
    assert part.itt.raw.n_clusters == 40
    assert part.cace.raw.n_clusters == part.complier_share.n_clusters == 35
    assert one.cace is None and one.complier_share is None
    assert any(n.startswith("no CACE") and "the take-up-known sample has 1 treated and 20 control" in n
               for n in one.notes)


def test_neyman_and_school_means_count_the_blocks_they_use():
    """A block left with one arm is out of the Neyman estimate and the school means: their rows
    report the students and schools of the blocks with both arms (before 2026-12-04 they counted
    the block's 251 treated students and two schools they had left out)."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    d = d[~d.school_id.isin(["SCH002", "SCH004"])]  # block D01 loses its two control schools
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        r = analyze_rct(d, RCT_SAMPLE_COLUMNS, design="cluster", subject="math")
    a = d[(d.subject == "math") & d.posttest.notna() & d.pretest.notna()]
    both = a.groupby("block").treatment.transform("nunique") == 2
    f = r.to_frame().set_index(["analysis", "scale"])
    for analysis in ("Neyman difference in means", "School means"):
        row = f.loc[(analysis, "raw")]
        assert (row.n_treated, row.n_control) == (int((both & (a.treatment == 1)).sum()), int((both & (a.treatment == 0)).sum()))
        assert row.n_clusters == a[both].school_id.nunique() < a.school_id.nunique()
    assert f.loc[("ITT", "raw")].n_clusters == a.school_id.nunique()


def _random_blocks_by_hand(d: pd.DataFrame, block: str, covariates: str):
    """Each block's effect from statsmodels' OLS with block intercepts, block × assignment terms
    and common covariate slopes; their mean, SD/√K and the t(K − 1) p-value."""
    fit = smf.ols(f"y ~ C({block}) + C({block}):t {covariates} - 1", data=d).fit()
    delta = np.array([v for k, v in fit.params.items() if k.endswith(":t")])
    K = delta.size
    est, se = delta.mean(), delta.std(ddof=1) / np.sqrt(K)
    return est, se, K - 1, 2 * stats.t.sf(abs(est / se), K - 1)


def test_random_blocks_is_the_average_of_the_blocks_effects():
    """``method="random_blocks"``: the blocks' effects averaged, SE from their spread, K − 1 df
    (Raudenbush & Bloom's random-effect estimand; PowerUp!'s BCRA3_2r df) — against statsmodels'
    interacted OLS, for schools randomized within districts (unequal cells, a pretest and a
    covariate) and for students randomized within schools (a multi-site trial). A district with one
    arm only is left out with a note; without a block column it is an error. New 2026-12-05."""
    rng = np.random.default_rng(20261205)
    K, J, n = 6, 4, 15
    school = np.repeat(np.arange(K * J), n)
    district = school // J
    t = np.tile(np.repeat([1, 1, 0, 0], n), K)
    x = rng.normal(size=school.size)
    z = rng.integers(0, 2, school.size)
    y = (rng.normal(0, 0.4, K)[district] + rng.normal(0, 0.3, K * J)[school] + (0.2 + rng.normal(0, 0.2, K))[district] * t
         + 0.6 * x - 0.2 * z + rng.normal(size=school.size))
    d = pd.DataFrame({"y": y, "t": t, "x": x, "z": z, "school": school, "district": district})
    d = d.sample(frac=0.8, random_state=3)  # unequal cells
    one_arm = pd.DataFrame({"y": [0.3, 0.1], "t": [0, 0], "x": [0.0, 1.0], "z": [0, 1], "school": [99, 99],
                            "district": [99, 99]})
    cols = Columns(outcome="y", treatment="t", pretest=("x",), covariates=("z",), school="school", block="district")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        r = analyze_rct(pd.concat([d, one_arm]), cols, design="cluster", method="random_blocks", compliance=False)
    est, se, df, p = _random_blocks_by_hand(d, "district", "+ x + z")
    e = r.itt.raw
    assert (e.estimate, e.se, e.df, e.pvalue) == pytest.approx((est, se, df, p), rel=1e-10)
    assert e.ci_low == pytest.approx(est - stats.t.ppf(0.975, df) * se, rel=1e-10)
    assert "ITT (OLS, students)" in r.effects and any("1 block(s) with one arm only" in s for s in r.notes)

    m = simulate_multisite_rct(seed=4, n_schools=8, subjects=("math",), grades=(4,))
    mcols = Columns(outcome="posttest", treatment="treatment", school="school_id", block="school_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        rm = analyze_rct(m.data, mcols, design="blocked", method="random_blocks", compliance=False)
    dm = m.data.rename(columns={"posttest": "y", "treatment": "t"})
    assert (rm.itt.raw.estimate, rm.itt.raw.se, rm.itt.raw.df) == pytest.approx(
        _random_blocks_by_hand(dm, "school_id", "")[:3], rel=1e-10)

    with pytest.raises(DataError, match="random_blocks' needs blocks"):
        analyze_rct(d, Columns(outcome="y", treatment="t", school="school"), design="cluster", method="random_blocks",
                    compliance=False)


@pytest.mark.slow
def test_random_blocks_holds_its_size_when_effects_vary_across_districts():
    """No effect on average across districts whose effects vary (ω = 0.5: N(0, ωρ₃)), 4 districts
    of 6 schools: ``random_blocks`` rejects about 5% and its 95% CIs cover the average effect
    about 95% of the time (3 Monte Carlo SEs); the default analysis, which takes the districts as
    fixed, rejects more (7.4% of 1,000 data sets), as docs/rct.md says."""
    from pleval.simulate import simulate_planned

    cols = Columns(outcome="posttest", treatment="treatment", school="school_id", block="district")
    reps = sim_reps(600, minimum=150)
    reject = cover = 0
    for s in range(reps):
        d = simulate_planned("blocked_cluster", 6, 20, 0.15, 0, 0, 0.0, 0.5, seed=50_000 + s, districts=4,
                             icc_district=0.1, omega=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = analyze_rct(d, cols, design="cluster", method="random_blocks", compliance=False, icc=None).itt.raw
        reject += e.pvalue < 0.05
        cover += e.ci_low <= 0 <= e.ci_high
    mc = 3 * np.sqrt(0.05 * 0.95 / reps)
    assert abs(reject / reps - 0.05) < mc and abs(cover / reps - 0.95) < mc, (reject / reps, cover / reps)


def test_a_covariate_constant_within_blocks_or_cells_is_left_out_with_a_note():
    """A covariate with one value in every block (a district-level one, districts the blocks) is
    absorbed by the block effects; in pairs of schools a school-level one is absorbed by the
    random-blocks fit's cells. Fitted beside them, its slope was the rounding left by the groups'
    means and it moved the ITT's CR2 SE (0.645 against 0.627 on the sample trial) and the
    random-blocks estimate, before 2026-12-05. Now each analysis equals the one without it."""
    rng = np.random.default_rng(7)
    K = 8
    school = np.repeat(np.arange(2 * K), 25)
    pair = school // 2
    t = (school % 2).astype(int)
    y = rng.normal(0, 0.3, 2 * K)[school] + 0.2 * t + rng.normal(size=school.size)
    d = pd.DataFrame({"y": y, "t": t, "school": school, "pair": pair, "x": rng.normal(size=school.size),
                      "school_level": (rng.normal(size=2 * K) / 3 * 3.0000001)[school],
                      "pair_level": (rng.normal(size=K) / 7 * 7.0000003)[pair]})
    base = Columns(outcome="y", treatment="t", pretest=("x",), school="school", block="pair")
    for method, extra, where in (("ols", "pair_level", "each block"), ("random_blocks", "school_level", "each block × arm cell")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            with_it = analyze_rct(d, Columns(**{**base.__dict__, "covariates": (extra,)}), design="cluster",
                                  method=method, compliance=False)
            without = analyze_rct(d, base, design="cluster", method=method, compliance=False)
        a, b = with_it.itt.raw, without.itt.raw
        assert (a.estimate, a.se, a.df) == pytest.approx((b.estimate, b.se, b.df), rel=1e-12), method
        assert any(n.startswith(f"{extra!r}: one value within {where}") for n in with_it.notes), with_it.notes
