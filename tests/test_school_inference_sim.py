"""Simulation study of school-by-school inference with an independent data generator
(tests/_school_sim.py, not pleval.simulate): no program effect, school growth deviations
SD 0.10 in PL and comparison schools alike, PL schools selected on observables. The full-size
study (benchmarks/sim_school_inference.py) is reported in docs/validation.md; here a reduced
run checks that the placebo-calibrated counts hold their error rate while uncalibrated ones do
not, and that the intervals cover their identifiable targets. The study's two stages (stored
ingredients, then :func:`pleval.heterogeneity.school_inference`) are checked against
``pleval.estimate`` on whole replications."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from ._school_sim import generate, infer, ingredients, replicate
from .conftest import sim_reps


def test_generator_selects_on_observables_with_school_deviations():
    df, truth, par = generate(3, n_pl=15, n_comp=60, delta=0.10)
    assert truth.pl.sum() == 15 and len(truth) == 75
    assert df.groupby("school_id").treatment.nunique().max() == 1  # schools wholly PL or comparison
    pov = df.groupby("school_id").frl.mean()
    pl_schools = truth.loc[truth.pl, "school"]
    assert pov[pov.index.isin(pl_schools)].mean() > pov[~pov.index.isin(pl_schools)].mean()
    assert np.all(truth.loc[~truth.pl, "theta"] == 0) and truth.g.std() > 0.05


@pytest.mark.parametrize("method", ["propensity", "vcg"])
def test_two_stages_equal_pleval_estimate(method):
    """Stage 1 (one estimate of the τ = 0 data set; the τ = 0.15 one derived from it, see
    ``ingredients``) then stage 2 (school_inference on the stored ingredients) give every school
    figure of a full default ``pleval.estimate`` on each data set."""
    import pleval
    from pleval.errors import PlevalWarning

    gen = dict(n_pl=8, n_comp=32, per_school=40, delta=0.10)
    ings = ingredients(11, method, taus=(0.0, 0.15), **gen)
    for tau, ing in zip((0.0, 0.15), ings):
        df, _, _ = generate(11, tau=tau, **gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            ev = pleval.estimate(df, design="matched", method=method, seed=11, sd=15.0)
        key = next(iter(ev.school_effects.vcov))
        plc = ev.details[key]["placebo"]
        np.testing.assert_allclose(ing["placebo_y"], plc.placebo["effect_size"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ing["placebo_V"], plc.placebo_vcov[key], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ing["V"], ev.school_effects.vcov[key].loc[ing["labels"], ing["labels"]], rtol=0, atol=1e-12)
        si = infer(ing)
        c, h = si.calibration, ev.heterogeneity.iloc[0]
        s = ev.schools.set_index("school").loc[ing["labels"]]
        cs = c.schools.set_index("school")
        got = [si.meta.ci_low, si.meta.ci_high, *c.pi, *c.tau2_program_ci, *c.placebo.tau2_ci, c.tau2_program]
        want = h[["ci_low", "ci_high", "pi_low", "pi_high", "tau2_program_ci_low", "tau2_program_ci_high",
                  "tau2_placebo_ci_low", "tau2_placebo_ci_high", "tau2_program"]].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
        for mine, theirs in ((si.counts.p_adjusted, "p_adjusted"), (cs["p_calibrated_adjusted"], "p_calibrated_adjusted"),
                             (cs["ci_low_calibrated"], "ci_low_calibrated"), (cs["ci_high_calibrated"], "ci_high_calibrated"),
                             (cs["shrunk_total"], "shrunk_es"), (cs["shrunk_total_sd"], "shrunk_es_sd"),
                             (cs["shrunk_total_ci_low"], "shrunk_es_ci_low"), (cs["shrunk_total_ci_high"], "shrunk_es_ci_high"),
                             (ing["ci_low"], "es_ci_low"), (ing["ci_high"], "es_ci_high"), (ing["y"], "effect_size"),
                             (ing["pvalue"], "pvalue"), (ing["df"], "df")):
            np.testing.assert_allclose(np.asarray(mine, dtype=float), s[theirs].to_numpy(dtype=float), rtol=0, atol=1e-10,
                                       err_msg=theirs)


@pytest.mark.slow
def test_calibrated_counts_hold_their_error_rate_and_intervals_cover():
    reps = sim_reps(80, minimum=16)
    rows = pd.DataFrame([replicate(500 + r, n_pl=10, n_comp=40, per_school=40, tau=0.0, delta=0.10)
                         for r in range(reps)])
    se_flag = math.sqrt(0.07 * 0.93 / reps)
    assert rows.any_flag.mean() <= 0.07 + 3 * se_flag, rows.any_flag.mean()
    # without the placebo calibration the same data flag schools far more often
    assert rows.any_flag_uncalibrated.mean() > rows.any_flag.mean() + 0.08, rows[["any_flag", "any_flag_uncalibrated"]].mean()
    # coverage within the target [93%, 97%] up to 3 Monte Carlo SEs (per-replication shares of 10 schools)
    for col in ("school_ci", "cal_ci_program", "shrunk_ci"):
        v = rows[col]
        mcse = v.std(ddof=1) / math.sqrt(reps)
        assert 0.93 - 3 * mcse <= v.mean() <= 0.97 + 3 * mcse, (col, v.mean(), mcse)
