"""pleval.power.from_data: ANOVA ICC and R² against MixedLM REML, the truth, and CI coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pleval.data import Columns
from pleval.errors import DataError
from pleval.power.from_data import estimate_components
from pleval.simulate import simulate_planned

COLS = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), school="school_id")


def test_balanced_icc_equals_mixedlm_reml_and_r2_near_truth():
    import statsmodels.formula.api as smf

    d = simulate_planned("cluster", 80, 25, 0.2, 0.5, 0.4, seed=3)
    vc = estimate_components(d, COLS, comparison_only=False).row()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = smf.mixedlm("posttest ~ 1", d, groups=d["school_id"]).fit(reml=True)
    tau2, s2 = float(m.cov_re.iloc[0, 0]), float(m.scale)
    assert vc["icc"] == pytest.approx(tau2 / (tau2 + s2), rel=1e-4)  # ANOVA = REML when balanced
    assert vc["icc_ci_low"] < 0.2 < vc["icc_ci_high"]
    assert vc["r2_student"] == pytest.approx(0.4, abs=0.05)
    assert vc["r2_school"] == pytest.approx(0.5, abs=0.25)  # 80 schools: a noisy between-school ratio


def test_icc_interval_coverage_balanced():
    # Searle's F interval is exact for balanced one-way data: coverage 95% up to MC error
    rng = np.random.default_rng(7)
    reps, k, n, icc = 2000, 15, 10, 0.1
    y = rng.standard_normal((reps, k, 1)) * np.sqrt(icc) + rng.standard_normal((reps, k, n)) * np.sqrt(1 - icc)
    means = y.mean(axis=2)
    msb = n * means.var(axis=1, ddof=1)
    msw = ((y - means[..., None]) ** 2).sum(axis=(1, 2)) / (k * (n - 1))
    F = msb / msw
    fl, fu = F / stats.f.ppf(0.975, k - 1, k * (n - 1)), F / stats.f.ppf(0.025, k - 1, k * (n - 1))
    cover = ((fl - 1) / (fl + n - 1) <= icc) & (icc <= (fu - 1) / (fu + n - 1))
    assert abs(cover.mean() - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)
    # and pleval's function gives the same interval on one of these data sets
    r = 0
    df = pd.DataFrame({"posttest": y[r].ravel(), "school_id": np.repeat(np.arange(k), n)})
    vc = estimate_components(df, Columns(outcome="posttest", treatment="t", school="school_id")).row()
    assert vc["icc_ci_low"] == pytest.approx(max(0, (fl[r] - 1) / (fl[r] + n - 1)), abs=1e-12)
    assert vc["icc_ci_high"] == pytest.approx((fu[r] - 1) / (fu[r] + n - 1), abs=1e-12)


def test_sample_file_comparison_rows_and_counts(tmp_path):
    vc = estimate_components("sample_data/pl_cluster_rct.csv")
    t = vc.to_frame()
    assert set(t["subject"]) == {"math", "reading"} and (t["n_schools"] == 20).all()
    assert any("comparison rows only" in n for n in vc.notes)
    assert any("left out" in n for n in vc.notes)  # missing posttests are counted, not silently dropped
    assert "ICC" in vc.summary()
    bad = pd.DataFrame({"posttest": ["a", "b"], "school_id": [1, 2]})
    with pytest.raises(DataError, match="'posttest' must be numeric"):
        estimate_components(bad, Columns(outcome="posttest", treatment="t", school="school_id"))


def test_one_school_or_a_constant_outcome_is_a_named_error():
    """One school, or an outcome with no variation within schools, has no ICC: an error naming
    the column (they were 'too few schools (1) or students' and 'r2_student must lie in [0, 1);
    got nan')."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), school="school_id", grade="grade")
    with pytest.raises(DataError, match="column 'school_id' \\(school\\) holds one school \\('SCH0001'\\)"):
        estimate_components(d.assign(school_id="SCH0001"), cols)
    with pytest.raises(DataError, match="column 'posttest' \\(outcome\\) does not vary within schools and grades"):
        estimate_components(d.assign(posttest=200.0), cols)


def test_a_subject_without_usable_rows_is_named_not_a_numpy_error():
    """A pilot file whose reading has no posttest yet (or whose pretest column is empty) stopped
    with numpy's 'zero-size array to reduction operation maximum'. Such a subject is now left
    out with a note naming the columns, the others planned as alone; with none left, an error
    says which columns are empty."""
    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    alone = estimate_components(d[d.subject == "math"])
    gap = estimate_components(d.assign(posttest=d.posttest.mask(d.subject == "reading")))
    pd.testing.assert_frame_equal(gap.table, alone.table)
    assert ("subject reading: no row has every one of 'posttest', 'school_id', 'pretest', 'grade' (missing: "
            "'posttest' in 2,723 of 2,723 rows): no variance components, left out") in gap.notes
    with pytest.raises(DataError, match="subject math: no row has every one of .*'pretest' in 2,723 of 2,723 rows.*"
                                        "subject reading: .*leave the empty role out"):
        estimate_components(d.assign(pretest=np.nan))
