"""Multilevel propensity models (``ps_model="school_means"``, ``"fixed"``) against statsmodels'
formula logit fitted on hand-built designs (school means by pandas ``groupby().transform``,
school indicators by ``C(school)``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import pleval
from pleval.data import Columns
from pleval.errors import DataError, DesignError

COLS = Columns(outcome="y", treatment="t", pretest=("pre",), covariates=("frl", "race"), school="school",
               student_id="id")


def _data(within: bool, seed: int = 3) -> pd.DataFrame:
    """60 schools of 40 students; PL chosen on school poverty (whole schools), or, with
    ``within``, on students' pretests inside 30 schools that each have both groups."""
    rng = np.random.default_rng(seed)
    n_s, m = 60, 40
    school = np.repeat(np.arange(n_s), m)
    pov = rng.uniform(0.1, 0.9, n_s)[school]
    frl = (rng.random(n_s * m) < pov).astype(int)
    pre = rng.normal(0, 1, n_s * m) - pov
    race = rng.choice(["a", "b", "c"], n_s * m, p=[0.5, 0.3, 0.2])
    if within:
        p = 1 / (1 + np.exp(-(0.8 * pre - 0.5 * frl)))
        t = ((rng.random(n_s * m) < p) & (school < 30)).astype(int)
    else:
        t = (rng.random(n_s) < 1 / (1 + np.exp(-(3 * (pov[::m] - 0.5)))))[school].astype(int)
    y = pre + 0.2 * t + rng.normal(0, 1, n_s * m)
    return pd.DataFrame({"id": np.arange(n_s * m), "school": [f"s{s:02d}" for s in school], "t": t, "pre": pre,
                         "frl": frl, "race": race, "y": y})


def test_school_means_model_against_statsmodels():
    df = _data(within=False)
    m = pleval.match(df, COLS, method="weighting", ps_model="school_means")
    d = df.assign(rb=(df.race == "b").astype(float), rc=(df.race == "c").astype(float))
    for v in ("pre", "frl", "rb", "rc"):
        d[v + "_m"] = d.groupby("school")[v].transform("mean")
    ref = smf.logit("t ~ pre + frl + rb + rc + pre_m + frl_m + rb_m + rc_m", d).fit(disp=0)
    got = m.propensity.params
    np.testing.assert_allclose(got[["pre__school_mean", "frl__school_mean", "race[b]__school_mean"]],
                               ref.params[["pre_m", "frl_m", "rb_m"]], rtol=1e-6)
    np.testing.assert_allclose(m.propensity.ps, ref.predict(d), rtol=1e-6)
    assert m.options["ps_model"] == "school_means"
    # the student-level model misses the school-level selection the means pick up
    student = pleval.match(df, COLS, method="weighting")
    assert m.propensity.params.size > student.propensity.params.size


def test_school_fixed_effects_against_statsmodels():
    df = _data(within=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pleval.match(df, COLS, method="weighting", ps_model="fixed")
    kept = df[df["school"] < "s30"]
    ex = m.exclusions.set_index("column")
    assert ex.loc["school", "n_rows"] == len(df) - len(kept)  # schools 30-59: all comparison
    d = kept.assign(rb=(kept.race == "b").astype(float), rc=(kept.race == "c").astype(float))
    ref = smf.logit("t ~ pre + frl + rb + rc + C(school)", d).fit(disp=0, maxiter=100)
    np.testing.assert_allclose(m.propensity.params[["pre", "frl"]], ref.params[["pre", "frl"]], rtol=1e-5)
    np.testing.assert_allclose(m.propensity.ps, ref.predict(d), rtol=1e-5, atol=1e-9)


def test_multilevel_errors():
    whole = _data(within=False)
    with pytest.raises(DesignError, match="school_means"):
        pleval.match(whole, COLS, method="weighting", ps_model="fixed")
    with pytest.raises(DataError, match="ps_model"):
        pleval.match(whole, COLS, method="weighting", ps_model="random")
    with pytest.raises(DataError, match="school column"):
        pleval.match(whole.drop(columns="school"), COLS.replace(school=None), method="weighting", ps_model="school_means")
