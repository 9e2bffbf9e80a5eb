"""Simulated power of pleval's own analysis against the formula (slow; sized by PLEVAL_SIM_SCALE)."""

from __future__ import annotations

import math

import pytest

from pleval.power import BlockedRCT, ClusterRCT
from pleval.power.simulation import simulate_power
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


def test_one_sided_simulated_power_tests_in_the_effects_direction():
    """A one-sided test is in the effect's direction, as the formula's |δ|. Before, the simulated
    power of a negative effect tested "greater" and gave 0.000 beside a formula's 0.786."""
    design = ClusterRCT(schools=20, students=20, icc=0.2, r2_school=0.5, r2_student=0.4, covariates=1, two_sided=False)
    neg, pos = (simulate_power(design, effect=e, reps=40, seed=3) for e in (-0.4, 0.4))
    assert neg.formula_power == pytest.approx(pos.formula_power, abs=1e-12)
    assert neg.simulated_power > 0.5 and pos.simulated_power > 0.5
