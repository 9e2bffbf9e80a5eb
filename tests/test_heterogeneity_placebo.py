"""Placebo schools (pleval.heterogeneity.placebo): comparison schools analysed as if PL, held
out of the pool while they play the part; with no program effect the PL schools' spread matches
the placebo spread, with real effect heterogeneity it exceeds it."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import SAMPLE_COLUMNS
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.heterogeneity import meta_analysis, school_effects
from pleval.heterogeneity.placebo import placebo_schools
from pleval.simulate import simulate_matched

from .conftest import sim_reps

SMALL = dict(n_schools=80, n_pl_schools=12, students_per_grade=15, grades=(4, 5, 6), subjects=("math",),
             school_value_added_sd=0.15)


@pytest.fixture(scope="module")
def small():
    sim = simulate_matched(effect=0.0, tau=0.0, seed=11, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        res = placebo_schools(sim.data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    return sim.data, res


def test_placebo_schools_are_held_out_and_pl_schools_never_used(small):
    data, r = small
    pl = set(data.loc[data.treatment == 1, "school_id"])
    rounds = r.rounds
    assert len(rounds) == 20 and rounds["round"].nunique() == 3 and rounds.placebo_school.is_unique
    assert not (set(rounds.placebo_school) & pl)
    for rnd, g in rounds.groupby("round"):
        used = set(g.comparison_schools_used.iloc[0])
        assert not (used & set(g.placebo_school)), "a placebo school served as its own comparison"
        assert not (used & pl), "a real PL school served as a comparison"
    est = r.placebo.dropna(subset=["effect_size"])
    assert set(est.school) <= set(rounds.placebo_school)
    assert len(r.placebo_estimates("math")) == len(est)


def test_comparison_numbers_follow_from_the_tables(small):
    _, r = small
    row = r.comparison.iloc[0]
    obs = r.observed.table.dropna(subset=["effect_size"])
    plc = r.placebo.dropna(subset=["effect_size"])
    m_pl = meta_analysis(obs.effect_size, obs.es_se)
    m_pb = meta_analysis(plc.effect_size, plc.es_se)
    assert row.tau2_pl == pytest.approx(m_pl.tau2) and row.tau2_placebo == pytest.approx(m_pb.tau2)
    assert row.tau2_excess == pytest.approx(max(0.0, m_pl.tau2 - m_pb.tau2))
    assert row.placebo_significant_share == pytest.approx(np.mean(plc.pvalue < 0.05))
    v = obs.es_se.to_numpy() ** 2
    w = 1 / (v + m_pb.tau2)
    y = obs.effect_size.to_numpy()
    mu = w @ y / w.sum()
    assert row.q_star == pytest.approx(w @ (y - mu) ** 2)
    np.testing.assert_allclose(r.calibrated.se_calibrated, np.sqrt(v + m_pb.tau2))
    text = r.summary()
    assert "placebo" in text and "held out" in text
    assert r.to_frame().shape[0] == 1


def test_reproducible_and_forest_plot(small):
    data, r = small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        again = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    pd.testing.assert_frame_equal(r.comparison, again.comparison)
    from pleval.plots import forest

    fig = forest(r.observed.forest_frame("math"), pooled=r.observed.meta["math"], placebo=r.placebo_estimates("math"))
    assert fig.axes


def test_placebo_errors():
    sim = simulate_matched(effect=0.0, tau=0.0, seed=12, **SMALL)
    d = sim.data
    with pytest.raises(DataError, match="school"):
        placebo_schools(d, SAMPLE_COLUMNS.replace(school=None))
    mixed = d.copy()
    first = mixed.school_id.iloc[0]
    mixed.loc[mixed.index[0], "treatment"] = 1 - mixed.loc[mixed.index[0], "treatment"]
    with pytest.raises(DesignError, match="wholly"):
        placebo_schools(mixed, SAMPLE_COLUMNS)
    few = d[d.treatment.eq(1) | d.school_id.isin(d.loc[d.treatment == 0, "school_id"].unique()[:3])]
    with pytest.raises(DesignError, match="at least 4"):
        placebo_schools(few, SAMPLE_COLUMNS)
    assert first  # the mixed school exists


@pytest.mark.slow
def test_no_program_effect_pl_spread_matches_placebo_spread():
    """No program effect (θ = 0 everywhere), school growth deviations SD 0.15: the PL schools'
    between-school SD matches the placebo schools' on average, and the Q* test of "more varied
    than placebo" is not systematically significant. With real effect heterogeneity (τ = 0.3,
    the same schools and students by common random numbers) the PL spread exceeds the placebo
    spread."""
    reps = sim_reps(60, minimum=12)
    d_null, d_alt, p_null, p_alt = [], [], [], []
    for rep in range(reps):
        null = simulate_matched(effect=0.0, tau=0.0, seed=100 + rep, **{**SMALL, "n_pl_schools": 16})
        alt = simulate_matched(effect=0.0, tau=0.3, seed=100 + rep, **{**SMALL, "n_pl_schools": 16})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            r0 = placebo_schools(null.data, SAMPLE_COLUMNS, n_placebo=32, per_round=16, seed=rep)
            obs_alt = school_effects(pleval.match(alt.data, SAMPLE_COLUMNS, seed=rep).matched,
                                     covariates=["pretest"], cluster="student_id", by="subject")
            r1 = r0.compare(obs_alt)
        c0, c1 = r0.comparison.iloc[0], r1.comparison.iloc[0]
        d_null.append(c0.tau_pl - c0.tau_placebo)
        d_alt.append(c1.tau_pl - c1.tau_placebo)
        p_null.append(c0.p_star)
        p_alt.append(c1.p_star)
    d_null, d_alt = np.array(d_null), np.array(d_alt)
    se = d_null.std(ddof=1) / math.sqrt(reps)
    assert abs(d_null.mean()) < 3.5 * se + 0.01, (d_null.mean(), se)
    assert np.mean(np.array(p_null) < 0.05) < 0.05 + 3.5 * math.sqrt(0.05 * 0.95 / reps) + 0.05
    assert d_alt.mean() > 0.1 and np.mean(d_alt > 0) > 0.8
    assert np.mean(np.array(p_alt) < 0.05) > 0.5
