"""Simulated power of pleval's own analysis against the formula (slow; sized by PLEVAL_SIM_SCALE)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from pleval.data import Columns
from pleval.errors import DesignError
from pleval.matching import match
from pleval.power import BlockedClusterRCT, BlockedRCT, ClusterRCT, IndividualRCT, MatchedComparison
from pleval.power.simulation import simulate_power
from pleval.rct import analyze_rct
from pleval.simulate import simulate_planned
from tests.conftest import sim_reps


def test_planned_data_have_the_design_variance_components():
    d = simulate_planned("cluster", 400, 50, 0.2, 0.5, 0.4, seed=2)
    school = d.groupby("school_id")
    between = school["posttest"].mean().var() - school["posttest"].var().mean() / 50
    within = school["posttest"].var().mean()
    assert between / (between + within) == pytest.approx(0.2, abs=0.03)
    assert within == pytest.approx(0.8, rel=0.03)
    resid = d["posttest"] - d["pretest"]  # slope 1: the residual variance is the unexplained part
    r_school = resid.groupby(d["school_id"])
    assert r_school.var().mean() == pytest.approx(0.8 * 0.6, rel=0.03)
    b = simulate_planned("blocked", 5, 10, 0.2, seed=1)
    assert (b.groupby("school_id")["treatment"].sum() == 5).all()


@pytest.mark.slow
@pytest.mark.parametrize("design", [
    ClusterRCT(schools=20, students=20, icc=0.2, r2_school=0.5, r2_student=0.4, covariates=1),
    BlockedRCT(schools=10, students=20, icc=0.2, r2_student=0.4, covariates=1),
], ids=["cluster", "blocked"])
def test_simulated_power_agrees_with_formula(design):
    reps = sim_reps(640, minimum=120)
    sim = simulate_power(design, reps=reps, seed=11)  # effect = the MDES: formula power 0.80
    assert sim.formula_power == pytest.approx(0.80, abs=1e-9)
    se = math.sqrt(0.8 * 0.2 / reps)  # Monte Carlo SE under the formula
    assert abs(sim.simulated_power - sim.formula_power) < 3 * se, sim.summary()


@pytest.mark.slow
def test_matched_design_power_is_that_of_pleval_matched_analysis():
    """4 PL schools against 20 comparison schools of 30 students, ICC 0.2: pleval's matched
    analysis (exact match on a constant grade, so equal weights as the formula has; CR2 by school,
    Bell–McCaffrey df) has the design's 80% power at its MDES. Before 2026-12-05 the design's df
    were J_T + J_C − 2 = 22 where the analysis has about 4.5: 0.637 at that MDES (800 data sets)."""
    jt, jc, n, icc = 4, 20, 30, 0.2
    design = MatchedComparison(schools=jt, students=n, comparison_schools=jc, icc=icc)
    effect = design.mdes(0.80)
    reps = sim_reps(1200, minimum=150)
    cols = Columns(outcome="y", treatment="t", school="school", covariates=("grade",), student_id="sid")
    school = np.repeat(np.arange(jt + jc), n)
    t = (school < jt).astype(int)
    rng = np.random.default_rng(2026_12_05)
    reject = 0
    for _ in range(reps):  # the design's model: school effects N(0, ρ), students N(0, 1 − ρ)
        y = rng.normal(0, math.sqrt(icc), jt + jc)[school] + rng.normal(0, math.sqrt(1 - icc), school.size) + effect * t
        d = pd.DataFrame({"y": y, "t": t, "school": school, "grade": 5, "sid": np.arange(school.size)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reject += match(d, cols, method="exact").estimate().raw.pvalue < design.alpha
    power, se = reject / reps, math.sqrt(0.8 * 0.2 / reps)
    assert abs(power - 0.80) < 3 * se, f"power {power:.3f} of {reps} data sets, design df {design.df:.2f}"


def _rejections(draw, effect, cols, design, reps, rng):
    """Share of ``reps`` data sets in which ``analyze_rct`` rejects no effect at 5%, at the true
    ``effect`` and at 0 (the same draws: ``draw(rng)`` gives the outcome without the effect,
    the treatment and the other columns)."""
    rej = np.zeros(2)
    for _ in range(reps):
        base, t, other = draw(rng)
        for k, e in enumerate((effect, 0.0)):
            d = pd.DataFrame({"y": base + e * t, "t": t, **other})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rej[k] += analyze_rct(d, cols, design=design, compliance=False, icc=None).itt.raw.pvalue < 0.05
    return rej / reps


def _check_power_and_size(power, size, reps, what):
    """Power at the MDES within 3 Monte Carlo SEs of 0.80, the rejection at 0 within 3 of 0.05."""
    assert abs(power - 0.80) < 3 * math.sqrt(0.8 * 0.2 / reps), f"{what}: power {power:.3f} of {reps} data sets"
    assert abs(size - 0.05) < 3 * math.sqrt(0.05 * 0.95 / reps), f"{what}: rejection at 0 {size:.3f} of {reps}"


@pytest.mark.slow
def test_individual_design_power_is_that_of_pleval_individual_analysis():
    """60 students, half assigned by complete randomization, a pretest explaining R² = 0.4
    (g = 1): pleval's individual-trial analysis (OLS with the pretest, HC2 with Bell–McCaffrey
    df) has the design's 80% power at its MDES and rejects about 5% with no effect."""
    n, r2 = 60, 0.4
    design = IndividualRCT(students=n, r2_student=r2, covariates=1)
    assert design.power(design.mdes(0.80)) == pytest.approx(0.80, abs=1e-9)
    cols = Columns(outcome="y", treatment="t", pretest=("x",))

    def draw(rng):
        t = np.zeros(n, dtype=int)
        t[rng.permutation(n)[: n // 2]] = 1
        x = rng.normal(0, math.sqrt(r2), n)
        return x + rng.normal(0, math.sqrt(1 - r2), n), t, {"x": x}

    reps = sim_reps(640, minimum=160)
    power, size = _rejections(draw, design.mdes(0.80), cols, "individual", reps, np.random.default_rng(2026_12_05))
    _check_power_and_size(power, size, reps, "individual RCT")


@pytest.mark.slow
def test_blocked_cluster_design_power_is_that_of_pleval_cluster_analysis():
    """4 districts of 6 schools of 20 students, 3 schools assigned in each district, ICC 0.15
    (schools) and 0.10 (districts), fixed districts (PowerUp! BCRA3_2f, df K(J − 2) = 16):
    pleval's cluster-trial analysis with the districts as blocks (block fixed effects, CR2 by
    school, Satterthwaite df 19) has the design's 80% power at its MDES and rejects about 5%
    with no effect."""
    K, J, n, icc, icc3 = 4, 6, 20, 0.15, 0.10
    design = BlockedClusterRCT(districts=K, schools=J, students=n, icc=icc, icc_district=icc3, blocks="fixed")
    assert design.power(design.mdes(0.80)) == pytest.approx(0.80, abs=1e-9)
    cols = Columns(outcome="y", treatment="t", school="school", block="district")
    school = np.repeat(np.arange(K * J), n)
    district = school // J

    def draw(rng):
        assigned = np.concatenate([rng.permutation(np.repeat([0, 1], J // 2)) for _ in range(K)])
        y = (rng.normal(0, math.sqrt(icc3), K)[district] + rng.normal(0, math.sqrt(icc), K * J)[school]
             + rng.normal(0, math.sqrt(1 - icc - icc3), school.size))
        return y, assigned[school], {"school": school, "district": district}

    reps = sim_reps(480, minimum=120)
    power, size = _rejections(draw, design.mdes(0.80), cols, "cluster", reps, np.random.default_rng(2026_12_05))
    _check_power_and_size(power, size, reps, "blocked cluster RCT")


def test_one_sided_simulated_power_tests_in_the_effects_direction():
    """A one-sided test is in the effect's direction, as the formula's |δ|. Before, the simulated
    power of a negative effect tested "greater" and gave 0.000 beside a formula's 0.786."""
    design = ClusterRCT(schools=20, students=20, icc=0.2, r2_school=0.5, r2_student=0.4, covariates=1, two_sided=False)
    neg, pos = (simulate_power(design, effect=e, reps=40, seed=3) for e in (-0.4, 0.4))
    assert neg.formula_power == pytest.approx(pos.formula_power, abs=1e-12)
    assert neg.simulated_power > 0.5 and pos.simulated_power > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("K, J, blocks, omega, treated", [
    (4, 6, "fixed", 0.0, 0.5), (4, 6, "fixed", 0.0, 1 / 3), (4, 6, "random", 0.0, 0.5), (8, 4, "random", 0.5, 0.5),
], ids=["fixed", "fixed-2-of-6", "random-omega0", "random-omega0.5"])
def test_blocked_cluster_note_gives_df_and_power_of_pleval_analysis(K, J, blocks, omega, treated):
    """Schools randomized within districts, 20 students a school, ICC 0.15 (schools) and 0.10
    (districts), analysed as pleval does (``analyze_rct(design="cluster")``, the district as
    block). The plan's note gives that analysis's df and its power at the MDES: the df are
    those of every simulated analysis (no covariates and equal schools: the Satterthwaite df
    depend on the design alone, the same in every data set, so the note's 1-decimal figure is
    within 0.05 of them), and its power lies within 3 Monte Carlo SEs of the rejection rate.
    With ``omega`` the effect differs by district, N(0, ω ρ₃) about the MDES, centred so that
    its average over these districts, the effect pleval's analysis estimates, is the MDES.
    Before 2026-12-05 there was no note: the plan said 80% where pleval's analysis refers to
    19 df, not 16 (fixed) or 3 (random; power 0.98 at the MDES), and with ω = 0.5 over 8
    districts of 4 schools it has 0.94 for the average effect over the districts."""
    import re

    n, icc, icc3 = 20, 0.15, 0.10
    design = BlockedClusterRCT(districts=K, schools=J, students=n, icc=icc, icc_district=icc3, blocks=blocks,
                               omega=omega, treated=treated)
    (note,) = design.plan().notes
    note_df = float(re.search(r"about ([\d.]+) df", note).group(1))
    note_power = float(re.search(r"about ([\d.]+), not 0\.80", note).group(1))
    effect, jt = design.mdes(0.80), round(J * treated)
    cols = Columns(outcome="y", treatment="t", school="school", block="district")
    school = np.repeat(np.arange(K * J), n)
    district = school // J
    rng = np.random.default_rng(2026_12_05)
    reps = sim_reps(480, minimum=120)
    reject, dfs = 0, []
    for _ in range(reps):
        assigned = np.concatenate([rng.permutation(np.r_[np.ones(jt), np.zeros(J - jt)]) for _ in range(K)])
        v = rng.normal(0, math.sqrt(omega * icc3), K)
        by_district = effect + v - v.mean()  # averages the MDES over these districts
        y = (rng.normal(0, math.sqrt(icc3), K)[district] + rng.normal(0, math.sqrt(icc), K * J)[school]
             + rng.normal(0, math.sqrt(1 - icc - icc3), school.size) + by_district[district] * assigned[school])
        d = pd.DataFrame({"y": y, "t": assigned[school].astype(int), "school": school, "district": district})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = analyze_rct(d, cols, design="cluster", compliance=False, icc=None).itt.raw
        reject += est.pvalue < 0.05
        dfs.append(est.df)
    assert abs(np.mean(dfs) - note_df) <= 0.05 and np.ptp(dfs) < 1e-6, (note, np.mean(dfs), np.ptp(dfs))
    assert design.analysis_df() == pytest.approx(np.mean(dfs), abs=1e-6)
    se = math.sqrt(note_power * (1 - note_power) / reps)
    assert abs(reject / reps - note_power) < 3 * se, f"{reject / reps:.3f} of {reps} data sets; {note}"


def test_planned_blocked_cluster_data_have_the_design_variance_components():
    """K districts of J schools, J_T of them assigned in each district; the district share ρ₃, the
    school share ρ and the districts' effects' variance ω·ρ₃ are those asked for (moments of a
    large draw against the design's values, computed from the model's definition)."""
    K, J, n, icc, icc3, omega = 300, 4, 30, 0.15, 0.10, 0.5
    d = simulate_planned("blocked_cluster", J, n, icc, 0.0, 0.0, 0.0, 0.5, seed=4, districts=K,
                         icc_district=icc3, omega=omega)
    per_school = d.groupby("school_id").agg(t=("treatment", "first"), y=("posttest", "mean"), v=("posttest", "var"),
                                            k=("district", "first"))
    assert (per_school.groupby("k")["t"].sum() == J // 2).all()
    assert per_school["v"].mean() == pytest.approx(1 - icc - icc3, rel=0.03)
    control = per_school[per_school["t"] == 0]
    district_means = control.groupby("k")["y"].mean()  # d_k + the mean of 2 schools' u and of 60 students' e
    assert district_means.var() == pytest.approx(icc3 + icc / 2 + (1 - icc - icc3) / (2 * n), rel=0.15)
    diff = per_school.groupby(["k", "t"])["y"].mean().unstack()  # δ_k + school and student noise
    assert (diff[1] - diff[0]).var() == pytest.approx(omega * icc3 + 2 * (icc / 2 + (1 - icc - icc3) / (2 * n)), rel=0.15)
    with pytest.raises(ValueError, match="apply to design='blocked_cluster'"):
        simulate_planned("cluster", 4, 10, 0.2, districts=3)


def test_simulated_power_of_a_blocked_cluster_design_refuses_a_moderated_effect():
    with pytest.raises(DesignError, match="r2_effect = 0"):
        simulate_power(BlockedClusterRCT(districts=4, schools=6, students=20, icc=0.15, icc_district=0.1,
                                         omega=0.5, r2_effect=0.3), reps=10)


@pytest.mark.slow
@pytest.mark.parametrize("blocks, omega", [("fixed", 0.0), ("random", 0.0), ("random", 0.5)])
def test_simulated_power_of_a_blocked_cluster_design_is_that_of_pleval_analysis(blocks, omega):
    """``simulate_power`` of schools randomized within districts (before 2026-12-05 it refused the
    design). Fixed districts are analysed as pleval does by default (district fixed effects, CR2 by
    school): the power of the plan's note (0.81 at the MDES, not the formula's 0.80) within 3 Monte
    Carlo SEs. Random districts, each district's effect drawn about the MDES with variance ω·ρ₃, are
    analysed with ``method="random_blocks"``, the analysis of the formula's model (K − 1 df): the
    formula's 0.80 within 3 Monte Carlo SEs, whatever ω."""
    import re

    design = BlockedClusterRCT(districts=4, schools=6, students=20, icc=0.15, icc_district=0.10, blocks=blocks,
                               omega=omega)
    reps = sim_reps(400, minimum=100)
    sim = simulate_power(design, reps=reps, seed=5)
    assert sim.formula_power == pytest.approx(0.80, abs=1e-9)
    assert ("blocks' effects" in sim.analysis) == (blocks == "random")
    want = 0.80 if blocks == "random" else float(re.search(r"about ([\d.]+), not 0\.80", design.plan().notes[0]).group(1))
    assert abs(sim.simulated_power - want) < 3 * math.sqrt(want * (1 - want) / reps) + 0.005, sim.summary()


@pytest.mark.slow
@pytest.mark.parametrize("omega", [0.0, 0.5])
def test_simulated_power_of_random_blocks_is_the_formulas(omega):
    """A multi-site trial whose schools' effects vary (PowerUp!'s BIRA2_1r: variance ω·ρ across
    schools), simulated with each school's effect drawn about the MDES and analysed with
    ``method="random_blocks"`` (K − 1 df, the formula's): the formula's 0.80 within 3 Monte Carlo
    SEs (before 2026-12-05 random blocks were refused)."""
    design = BlockedRCT(schools=12, students=20, icc=0.2, r2_student=0.4, blocks="random", omega=omega)
    reps = sim_reps(400, minimum=100)
    sim = simulate_power(design, reps=reps, seed=6)
    assert "blocks' effects" in sim.analysis
    assert abs(sim.simulated_power - 0.80) < 3 * math.sqrt(0.8 * 0.2 / reps), sim.summary()
    with pytest.raises(DesignError, match="simulated power is available"):
        simulate_power(design.replace(r2_effect=0.3), reps=10)
