"""Trial options of analyze_rct / `pleval rct` from issue 18: the HTZ interaction test, and the
others as they land (each against an independent computation or published R output)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pleval import analyze_rct
from pleval.cli import app
from pleval.inference import ols

from ._rct_sim import make_cluster_rct
from .test_rct import COLS, _analytic

runner = CliRunner()


@pytest.fixture(scope="module")
def trial():
    return make_cluster_rct(7, n_schools=24, n_blocks=4, effect=3.0, attrition=(0.12, 0.06), takeup=(0.75, 0.1))


def test_three_level_interaction_is_htz_by_default_and_f_on_request(trial):
    htz = analyze_rct(trial, COLS, subgroups=["pretest_tercile"]).interactions.iloc[0]
    f = analyze_rct(trial, COLS, subgroups=["pretest_tercile"], interaction_test="F").interactions.iloc[0]
    assert htz["test"].startswith("HTZ") and f["test"].startswith("Wald F")
    assert f["df2"] == 23 and htz["df1"] == f["df1"] == 2
    # the same model fitted by hand: HTZ is (η − q + 1)/η times the F statistic, on η − q + 1 df
    a = _analytic(trial)
    cuts = np.quantile(a["pretest"], [1 / 3, 2 / 3])
    lev = np.searchsorted(cuts, a["pretest"].to_numpy(), side="right")
    z = a["treatment"].to_numpy(float)
    X = pd.concat([pd.get_dummies(a["block"], drop_first=True, dtype=float), a[["pretest", "frl", "ell"]]], axis=1)
    X.insert(0, "const", 1.0)
    for j in (1, 2):
        X[f"lev{j}"] = (lev == j).astype(float)
    for j in range(3):
        X[f"t{j}"] = z * (lev == j)
    fit = ols(a["posttest"], X, clusters=a["school_id"])
    R = np.zeros((2, X.shape[1]))
    R[:, -3] = -1.0
    R[0, -2] = R[1, -1] = 1.0
    ref = fit.wald_test(R)
    assert htz["statistic"] == pytest.approx(ref.F, rel=1e-8) and htz["df2"] == pytest.approx(ref.df2, rel=1e-8)
    assert htz["pvalue"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert f["statistic"] == pytest.approx(ref.Q / 2, rel=1e-8)
    # CR1 has no working model: the F reference is used whatever is asked
    assert analyze_rct(trial, COLS, vcov="CR1", subgroups=["pretest_tercile"]).interactions.iloc[0]["df2"] == 23


def test_cli_interaction_test_option(tmp_path):
    path = tmp_path / "trial.csv"
    make_cluster_rct(3, n_schools=16, n_blocks=2, effect=2.0).to_csv(path, index=False)
    args = ["rct", str(path), "--outcome", "posttest", "--treatment", "treatment", "--pretest", "pretest",
            "--covariates", "frl,ell", "--school", "school_id", "--block", "block", "--subgroups", "pretest_tercile"]
    for opt, head in (("HTZ", "HTZ"), ("F", "Wald F")):
        out = tmp_path / opt
        r = runner.invoke(app, args + ["--interaction-test", opt, "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert pd.read_csv(out / "interactions.csv")["test"].iloc[0].startswith(head)
