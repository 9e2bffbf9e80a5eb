"""``pleval power``: the issue's example, --from, --out, --simulate and errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pleval.cli import app
from pleval.power import BlockedClusterRCT, ClusterRCT

runner = CliRunner()
EXAMPLE = ["power", "cluster-rct", "--schools", "40", "--students", "60", "--icc", "0.2", "--r2-school", "0.5",
           "--r2-student", "0.4"]


def test_issue_example_prints_mdes_and_schools_needed():
    r = runner.invoke(app, EXAMPLE + ["--target-mdes", "0.25"])
    assert r.exit_code == 0, r.output
    d = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4)
    p = d.plan(target_mdes=0.25)
    assert f"MDES at 80% power: {p.mdes:.3f} SD = {p.mdes_pp:+.2f} percentile points" in r.output
    assert f"schools needed for an MDES of 0.250 SD" in r.output and f": {p.required}" in r.output


def test_json_out_folder_and_pp_target(tmp_path):
    r = runner.invoke(app, EXAMPLE + ["--target-pp", "8", "--effect", "0.3", "--method", "powerup", "--format", "json",
                                      "--out", str(tmp_path), "--vary", "r2_school", "--curve-values", "0,0.5,0.8"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    plan = out["plan"]
    d = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4, method="powerup")
    assert plan["mdes"] == pytest.approx(d.mdes()) and plan["power"] == pytest.approx(d.power(0.3))
    assert plan["target_pp"] == pytest.approx(8.0)
    for f in ("plan.json", "power_curve.png", "mdes_curve.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_three_level_solve_for_districts():
    r = runner.invoke(app, ["power", "blocked-cluster-rct", "--districts", "10", "--schools", "4", "--students", "50",
                            "--icc", "0.15", "--icc-district", "0.05", "--omega", "0.5", "--solve-for", "districts",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)["plan"]
    d = BlockedClusterRCT(districts=10, schools=4, students=50, icc=0.15, icc_district=0.05, omega=0.5)
    assert plan["required"] == d.sample_size(0.2, "districts") and plan["df"] == 9


def test_from_file_fills_icc_and_states_its_interval():
    r = runner.invoke(app, ["power", "cluster-rct", "--from", "sample_data/pl_cluster_rct.csv", "--schools", "40",
                            "--only-subject", "reading"])
    assert r.exit_code == 0, r.output
    assert "Searle F interval" in r.output and "with the ICC at its 95% CI limits" in r.output
    assert "comparison rows only" in r.output


def test_simulate_small(tmp_path):
    r = runner.invoke(app, ["power", "cluster-rct", "--schools", "8", "--students", "10", "--icc", "0.2",
                            "--simulate", "12", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "Simulated power" in r.output and "12 data sets" in r.output


@pytest.mark.parametrize("args,msg", [
    (["power", "cluster-rct", "--schools", "40"], "needs --students, --icc"),
    (["power", "matched", "--schools", "10", "--students", "50", "--omega", "1"], "--omega does not apply"),
    (EXAMPLE + ["--icc", "1.5"], "icc must lie in"),
    (EXAMPLE + ["--format", "xml"], "--format must be text or json"),
    (EXAMPLE + ["--simulate", "20", "--blocks", "fixed"], "does not apply"),
])
def test_errors_are_one_line(args, msg):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and msg in r.output
