"""Multi-arm trials: the joint model against statsmodels, Holm against statsmodels' multipletests,
Dunnett against scipy.stats.dunnett on Dunnett's (1955) example, and `pleval rct --control`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from pleval.cli import app
from pleval.data import Columns
from pleval.errors import DataError, DesignError
from pleval.multiarm import analyze_multiarm

from ._rct_sim import make_cluster_rct
from .test_rct import COLS

# Dunnett (1955), blood counts (millions of cells per mm³) of a control group and two drug groups,
# the example of scipy.stats.dunnett's documentation.
CONTROL = [7.40, 8.50, 7.20, 8.24, 9.84, 8.32]
DRUG_A = [9.76, 8.80, 7.68, 9.36]
DRUG_B = [12.80, 9.68, 12.16, 9.20, 10.55]


def test_dunnett_equals_scipy_on_dunnetts_example():
    df = pd.DataFrame({"y": CONTROL + DRUG_A + DRUG_B, "arm": ["c"] * 6 + ["a"] * 4 + ["b"] * 5})
    res = analyze_multiarm(df, Columns(outcome="y", treatment="arm"), "c", design="individual", vcov="classical",
                           adjust="dunnett")
    ref = stats.dunnett(DRUG_A, DRUG_B, control=CONTROL, random_state=0)
    f = res.to_frame().set_index("arm")
    np.testing.assert_allclose(f.loc[["a", "b"], "estimate"], [np.mean(DRUG_A) - np.mean(CONTROL),
                                                               np.mean(DRUG_B) - np.mean(CONTROL)], rtol=1e-12)
    np.testing.assert_allclose(f.loc[["a", "b"], "estimate"] / f.loc[["a", "b"], "se"], ref.statistic, rtol=1e-10)
    # both integrate the multivariate t numerically: agreement to their Monte Carlo error
    np.testing.assert_allclose(f.loc[["a", "b"], "pvalue_adjusted"], ref.pvalue, atol=1e-3)
    ci = ref.confidence_interval()
    np.testing.assert_allclose(f.loc[["a", "b"], "simultaneous_ci_low"], ci.low, atol=0.01)
    np.testing.assert_allclose(f.loc[["a", "b"], "simultaneous_ci_high"], ci.high, atol=0.01)
    assert (f["df"] == 12).all()
    # seeded: reproducible
    again = analyze_multiarm(df, Columns(outcome="y", treatment="arm"), "c", design="individual", vcov="classical",
                             adjust="dunnett")
    assert again.pvalue_adjusted == res.pvalue_adjusted


@pytest.fixture(scope="module")
def three_arm():
    d = make_cluster_rct(5, n_schools=30, n_blocks=3, effect=3.0)
    treated = np.sort(d.loc[d.treatment == 1, "school_id"].unique())
    arm_b = set(treated[::2])
    d["arm"] = np.where(d.treatment == 0, "control", np.where(d.school_id.isin(arm_b), "B", "A"))
    return d


def test_cluster_three_arms_joint_model_and_holm(three_arm):
    cols = COLS.replace(treatment="arm")
    res = analyze_multiarm(three_arm, cols, "control")
    a = three_arm[three_arm.posttest.notna()]
    ref = smf.ols("posttest ~ C(arm, Treatment('control')) + C(block) + pretest + frl + ell", a).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(a.school_id)[0]})
    f = res.to_frame().set_index("arm")
    for arm in ("A", "B"):
        name = f"C(arm, Treatment('control'))[T.{arm}]"
        assert f.loc[arm, "estimate"] == pytest.approx(ref.params[name], rel=1e-10)
    assert res.options["vcov"].startswith("CR2") and (f["df"] < 29).all()
    np.testing.assert_allclose(f["pvalue_adjusted"], multipletests(f["pvalue"], method="holm")[1], rtol=1e-12)
    cr1 = analyze_multiarm(three_arm, cols, "control", vcov="CR1").to_frame().set_index("arm")
    assert cr1.loc["A", "se"] == pytest.approx(ref.bse["C(arm, Treatment('control'))[T.A]"], rel=1e-8)
    # each arm's effect size: its pooled SD with the control group, times ω
    pair = a[a.arm.isin(["A", "control"])]
    g = pair.groupby("arm").posttest
    sp = np.sqrt(((g.count() - 1) * g.var()).sum() / (len(pair) - 2))
    omega = 1 - 3 / (4 * len(pair) - 9)
    assert f.loc["A", "effect_size"] == pytest.approx(omega * f.loc["A", "estimate"] / sp, rel=1e-10)
    # Dunnett on the same fit: less conservative than Bonferroni, never below the raw p-value
    dn = analyze_multiarm(three_arm, cols, "control", adjust="dunnett").to_frame().set_index("arm")
    bf = analyze_multiarm(three_arm, cols, "control", adjust="bonferroni").to_frame().set_index("arm")
    assert (dn["pvalue_adjusted"] >= dn["pvalue"] - 1e-3).all() and (dn["pvalue_adjusted"] <= bf["pvalue_adjusted"] + 1e-3).all()
    assert "B" in res.summary()


def test_errors(three_arm):
    cols = COLS.replace(treatment="arm")
    with pytest.raises(DataError, match="control label 'none'"):
        analyze_multiarm(three_arm, cols, "none")
    with pytest.raises(DataError, match="at least 2"):
        analyze_multiarm(three_arm[three_arm.arm != "B"], cols, "control")
    mixed = three_arm.copy()
    mixed.loc[mixed.index[:3], "arm"] = "B" if mixed["arm"].iloc[0] != "B" else "A"
    with pytest.raises(DesignError, match="varies within"):
        analyze_multiarm(mixed, cols, "control")
    with pytest.raises(DataError, match="adjust"):
        analyze_multiarm(three_arm, cols, "control", adjust="sidak")


def test_cli_control_option(three_arm, tmp_path):
    path = tmp_path / "arms.csv"
    three_arm.to_csv(path, index=False)
    args = ["rct", str(path), "--outcome", "posttest", "--treatment", "arm", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block", "--control", "control",
            "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "o" / "arms.csv").set_index("arm")
    api = analyze_multiarm(three_arm, COLS.replace(treatment="arm"), "control").to_frame().set_index("arm")
    np.testing.assert_allclose(got.loc[["A", "B"], "pvalue_adjusted"], api.loc[["A", "B"], "pvalue_adjusted"], rtol=1e-9)
