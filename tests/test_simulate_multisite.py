"""`pleval.simulate_multisite_rct` and `pleval simulate multisite-rct`: students randomized within
schools, each school's true effect θ_j in the truth, and `pleval.estimate` recovering them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pleval
from pleval.cli import app
from pleval.data import RCT_SAMPLE_COLUMNS, frame_sha256
from pleval.errors import PlevalWarning
from pleval.simulate import SCALE_SD, simulate_multisite_rct


def test_students_are_randomized_within_each_school_in_exact_numbers():
    s = simulate_multisite_rct(n_schools=12, students_per_school=50, share_treated=0.4, seed=3)
    d = s.data[s.data["subject"] == "math"]
    per = d.groupby("school_id").agg(n=("treatment", "size"), t=("treatment", "sum"))
    assert (per["t"] == np.clip(np.floor(per["n"] * 0.4 + 0.5), 1, per["n"] - 1)).all()
    assert (d["block"] == d["school_id"]).all() and (d["takeup"] == d["treatment"]).all()
    assert (s.truth.schools["n_assigned"] == per["t"].reindex(s.truth.schools.index)).all()
    # the same student has the same assignment in both subjects
    both = s.data.pivot_table(index="student_id", columns="subject", values="treatment")
    assert (both["math"] == both["reading"]).all()


def test_same_seed_same_data_other_seed_different():
    a, b, c = (simulate_multisite_rct(n_schools=6, students_per_school=30, seed=k) for k in (5, 5, 6))
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth.as_dict() == b.truth.as_dict() and not a.data.equals(c.data)


def test_effect_enters_the_assigned_students_posttests_as_the_truth_says():
    """Common random numbers: changing `effect` changes only the assigned students' posttests,
    by 15·Δeffect; each school's assigned students carry its θ_j; the realized mean is theirs."""
    kw = dict(n_schools=10, students_per_school=40, decimals=None, seed=7)
    a, b = simulate_multisite_rct(effect=0.1, **kw), simulate_multisite_rct(effect=0.0, **kw)
    diff = a.data["posttest"] - b.data["posttest"]
    t = a.data["treatment"] == 1
    np.testing.assert_allclose(diff[t], 0.1 * SCALE_SD, atol=1e-9)
    np.testing.assert_allclose(diff[~t], 0.0, atol=1e-12)
    c = simulate_multisite_rct(effect=0.1, tau=0.0, **kw)
    shift = (a.data["posttest"] - c.data["posttest"])[t].groupby(a.data.loc[t, "school_id"]).mean()
    theta = a.truth.school_effects
    np.testing.assert_allclose(shift[theta.index], (theta - 0.1) * SCALE_SD, atol=1e-9)
    n = a.data.loc[t & (a.data["subject"] == "math")].groupby("school_id").size()
    assert a.truth.att_sd == pytest.approx(np.average(theta[n.index], weights=n), abs=1e-12)


@pytest.mark.parametrize("kw, word", [(dict(n_schools=1), "n_schools"), (dict(share_treated=1.0), "share_treated"),
                                      (dict(students_per_school=5), "students_per_school")])
def test_bad_parameters_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        simulate_multisite_rct(**{**dict(seed=1), **kw})


def test_estimate_recovers_each_school_and_the_mean():
    """pleval.estimate(design='rct', rct_design='blocked') on the simulation: the schools' 95%
    intervals cover their true effects (15·θ_j points) at about the nominal rate, and the ITT is
    within 3 SE of the realized mean effect (over 40 subject × seed runs of 60 schools its z had
    mean −0.12 and SD 0.97, 95% of |z| < 1.96: docs/estimate.md)."""
    s = simulate_multisite_rct(n_schools=150, students_per_school=150, tau=0.15, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(s.data, columns=RCT_SAMPLE_COLUMNS, design="rct", rct_design="blocked", workers=1)
    t = ev.school_effects.table
    truth = SCALE_SD * s.truth.school_effects.reindex(t["school"]).to_numpy()
    covered = ((t["ci_low"] <= truth) & (truth <= t["ci_high"])).mean()
    assert 0.91 <= covered <= 0.99, covered  # 300 school × subject intervals: binomial SE 1.3 points
    for subj in ev.subjects:
        raw = ev.effect(subj).raw
        assert abs(raw.estimate - SCALE_SD * s.truth.att_sd) <= 3 * raw.se


def test_command_line_writes_the_data_and_the_truth(tmp_path):
    out, truth = tmp_path / "trial.csv", tmp_path / "truth.json"
    r = CliRunner().invoke(app, ["simulate", "multisite-rct", "--n-schools", "8", "--students-per-school", "30",
                                 "--seed", "4", "--out", str(out), "--truth", str(truth)])
    assert r.exit_code == 0, r.output
    assert "Simulated multisite_rct data (seed 4)" in r.output
    back = pd.read_csv(out)
    api = simulate_multisite_rct(n_schools=8, students_per_school=30, seed=4)
    assert frame_sha256(back[["pretest", "posttest", "treatment"]]) == frame_sha256(
        api.data[["pretest", "posttest", "treatment"]].astype({"pretest": float, "posttest": float}))
    rec = json.loads(truth.read_text())
    assert rec["design"] == "multisite_rct" and len(rec["schools"]) == 8
    bad = CliRunner().invoke(app, ["simulate", "multisite-rct", "--n-blocks", "3", "--out", str(out)])
    assert bad.exit_code == 2 and "--n-blocks does not apply" in bad.output
