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
    for f in ("plan.json", "power_curve.png", "mdes_curve.png", "provenance.json"):
        assert (tmp_path / f).stat().st_size > 0


def test_out_folder_records_provenance_and_writes_print_resolution_pngs(tmp_path):
    """--out: provenance.json (version, options, the inputs as used, the --from file's SHA-256),
    the curves as every pleval figure is written (PNG at PRINT_DPI, cropped to the drawing), and
    a folder holding other files refused without --force."""
    from PIL import Image

    import pleval
    from pleval import plots
    from pleval.data import file_sha256
    from pleval.outputs import PRINT_DPI
    from pleval.power.curves import mdes_table

    src = "sample_data/pl_cluster_rct.csv"
    out = tmp_path / "plan"
    r = runner.invoke(app, ["power", "cluster-rct", "--from", src, "--schools", "40", "--only-subject", "reading",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["kind"] == "pleval power outputs" and prov["pleval_version"] == pleval.__version__
    assert prov["input"]["sha256"] == file_sha256(src) and prov["input"]["sha256_of"] == "file bytes"
    assert prov["options"]["design"] == "cluster-rct" and prov["options"]["only_subject"] == "reading"
    plan = json.loads((out / "plan.json").read_text())["plan"]
    assert prov["options"]["inputs"]["schools"] == 40 and prov["options"]["inputs"]["icc"] == pytest.approx(plan["parameters"]["icc"])
    assert prov["columns"]["outcome"] == ["posttest"]
    d = ClusterRCT(**prov["options"]["inputs"])
    png = (out / "mdes_curve.png").read_bytes()
    assert png == plots.to_png(plots.mdes_curve(mdes_table(d, "schools"), planned=40, target=0.2,
                                                baseline_percentile=50.0, unit=d.unit.get("schools", "schools")),
                               dpi=PRINT_DPI)
    with Image.open(out / "power_curve.png") as im:
        assert im.info["dpi"] == pytest.approx((PRINT_DPI, PRINT_DPI), abs=0.5)

    bare = tmp_path / "bare"
    assert runner.invoke(app, EXAMPLE + ["--out", str(bare)]).exit_code == 0
    prov = json.loads((bare / "provenance.json").read_text())
    assert prov["input"] is None and prov["options"]["inputs"]["icc"] == 0.2
    assert runner.invoke(app, EXAMPLE + ["--out", str(bare)]).exit_code == 0  # its own outputs: replaced

    (bare / "notes.txt").write_text("mine")
    r = runner.invoke(app, EXAMPLE + ["--out", str(bare)])
    assert r.exit_code == 2 and "--force" in r.output
    assert runner.invoke(app, EXAMPLE + ["--out", str(bare), "--force"]).exit_code == 0
    assert (bare / "notes.txt").read_text() == "mine"


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


def test_from_file_plans_the_files_own_design():
    """--from fills --schools with every school of the file (40: 20 PL, 20 comparison), not the 20
    comparison schools its ICC comes from (before: a plan at 20 schools, nothing said), and
    counts the school mean pretest behind R² school as a school-level covariate (PowerUp!'s g:
    df 37, not 38), each with a note; a given --schools / --n-covariates is kept."""
    r = runner.invoke(app, ["power", "cluster-rct", "--from", "sample_data/pl_cluster_rct.csv", "--only-subject", "math",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    comp = out["components"][0]
    plan = out["plan"]
    import pandas as pd

    t = pd.read_csv("sample_data/pl_cluster_rct.csv")
    n = int(((t["subject"] == "math") & t["posttest"].notna() & t["school_id"].notna()).sum())
    d = ClusterRCT(schools=40, students=round(n / 40, 1), icc=comp["icc"],  # students per school, both arms
                   r2_school=comp["r2_school"], r2_student=comp["r2_student"], covariates=1)
    assert comp["n_schools"] == 20 and plan["df"] == 37
    assert plan["mdes"] == pytest.approx(d.mdes(0.8), rel=1e-12)
    assert any(n.startswith("--schools 40: every school") for n in out["filled_from_file"])
    given = runner.invoke(app, ["power", "cluster-rct", "--from", "sample_data/pl_cluster_rct.csv", "--only-subject",
                                "math", "--schools", "30", "--n-covariates", "0", "--format", "json"])
    assert json.loads(given.output)["plan"]["df"] == 28
    assert [n.split(":")[0] for n in json.loads(given.output)["filled_from_file"]] == [f"--students {round(n / 40, 1):g}"]


def test_from_file_fills_schools_by_what_the_design_counts():
    """A matched design's --schools counts PL schools (32 of the sample; 268 comparison schools
    beside them), a three-level design's the schools per district (40 over 5 districts: 8);
    filling both with every school of the file planned 300 against 300, or 200 schools."""
    r = runner.invoke(app, ["power", "matched", "--from", "sample_data/pl_matched_students.csv", "--only-subject", "math",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)["plan"]["parameters"]
    assert p["schools"] == 32 and p["comparison_schools"] == 268
    r = runner.invoke(app, ["power", "blocked-cluster-rct", "--from", "sample_data/pl_cluster_rct.csv", "--only-subject",
                            "math", "--districts", "5", "--icc-district", "0.05", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["plan"]["parameters"]["schools"] == 8


def test_from_file_fills_students_by_what_the_design_counts(tmp_path):
    """--students is what the design counts, from the file's rows with an outcome: every student
    of an individual RCT (before 2026-12-04 the comparison schools' mean: 126.8 of the sample
    trial's 4,862 math students, an MDES of 0.348 where 0.056 is right), students per school in
    both arms of a blocked RCT (the comparison half before: 30 of 60), students per PL school of
    a matched design with the comparison schools' own beside it."""
    import pandas as pd

    from pleval.simulate import simulate_planned

    trial = pd.read_csv("sample_data/pl_cluster_rct.csv")
    math = trial[(trial["subject"] == "math") & trial["posttest"].notna() & trial["school_id"].notna()]
    r = runner.invoke(app, ["power", "individual-rct", "--from", "sample_data/pl_cluster_rct.csv", "--only-subject",
                            "math", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["plan"]["parameters"]["students"] == len(math)
    src = tmp_path / "pilot.csv"
    simulate_planned("blocked", 20, 60, 0.2, 0.0, 0.4, 0.0, 0.5, seed=3).to_csv(src, index=False)
    r = runner.invoke(app, ["power", "blocked-rct", "--from", str(src), "--grade", "none", "--subject", "none",
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["plan"]["parameters"]["students"] == 60
    m = pd.read_csv("sample_data/pl_matched_students.csv")
    m = m[(m["subject"] == "math") & m["posttest"].notna()]
    pl = m[m["treatment"] == 1]
    r = runner.invoke(app, ["power", "matched", "--from", "sample_data/pl_matched_students.csv", "--only-subject", "math",
                            "--format", "json"])
    p = json.loads(r.output)["plan"]["parameters"]
    assert p["students"] == round(len(pl) / pl["school_id"].nunique(), 1)
    assert p["comparison_students"] == round((len(m) - len(pl)) / (m["school_id"].nunique() - pl["school_id"].nunique()), 1)


def test_individual_rct_writes_its_curves(tmp_path):
    """--out for an individual RCT: its curves vary r2_student by default (the default --vary icc,
    which it has not, made every such run an error before 2026-12-04)."""
    r = runner.invoke(app, ["power", "individual-rct", "--students", "400", "--r2-student", "0.4", "--out",
                            str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    prov = json.loads((tmp_path / "p" / "provenance.json").read_text())
    assert prov["options"]["vary"] == "r2_student" and (tmp_path / "p" / "power_curve.png").stat().st_size > 1000


def test_random_blocks_refuse_block_specific_effects():
    r = runner.invoke(app, ["power", "blocked-rct", "--schools", "10", "--students", "40", "--icc", "0.2",
                            "--blocks", "random", "--omega", "0.5", "--block-specific-effects"])
    assert r.exit_code == 2 and "fixed-blocks model" in r.output


def test_unequal_allocation_assigns_the_schools_the_simulation_assigns():
    """J·P = 4.5 (18 schools, P = 0.25): the note's arms are the simulation's, 5 of 18 (Python's
    round took 4 before 2026-12-04, and the simulation the note cites assigned 5)."""
    import numpy as np

    from pleval.simulate import simulate_planned

    d = ClusterRCT(schools=18, students=20, icc=0.2, treated=0.25)
    sim = simulate_planned("cluster", 18, 20, 0.2, 0.0, 0.0, 0.0, 0.25, seed=1)
    assert d._arms() == (int(sim.groupby("school_id")["treatment"].first().sum()), 13) == (5, 13)
    assert "5 of 18 schools" in " ".join(d.plan().notes)
    # the note's power at the MDES is at the share assigned, 5/18, not the nominal 0.25
    from pleval.power.tdist import power_from_ncp

    at = ClusterRCT(schools=18, students=20, icc=0.2, treated=5 / 18)
    want = float(power_from_ncp(d.mdes(0.8) / at.sse, d.analysis_df(), 0.05, True))
    assert f"its power at the MDES above is about {want:.2f}," in d.plan().notes[0]
    assert f"{want:.2f}" != f"{float(power_from_ncp(d.mdes(0.8) / d.sse, d.analysis_df(), 0.05, True)):.2f}"


def test_simulate_small(tmp_path):
    r = runner.invoke(app, ["power", "cluster-rct", "--schools", "8", "--students", "10", "--icc", "0.2",
                            "--simulate", "12", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "Simulated power" in r.output and "12 data sets" in r.output


def test_the_size_solved_for_need_not_be_given():
    """"How many schools for an MDES of 0.25?" needs no --schools: the plan is made at the
    schools needed (before, the command stopped asking for --schools). Another missing size is
    still an error."""
    args = [a for a in EXAMPLE if a not in ("--schools", "40")]
    r = runner.invoke(app, args + ["--target-mdes", "0.25"])
    assert r.exit_code == 0, r.output
    n = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4).sample_size(0.25)
    d = ClusterRCT(schools=n, students=60, icc=0.2, r2_school=0.5, r2_student=0.4)
    assert f"schools = {n}," in r.output and f"schools needed for an MDES of 0.250 SD" in r.output
    assert f"MDES at 80% power: {d.mdes():.3f} SD" in r.output and d.mdes() <= 0.25
    assert "(--schools not given: the plan above is at the schools needed for the target MDES)" in r.output
    r = runner.invoke(app, args + ["--target-mdes", "0.25", "--solve-for", "students"])
    assert r.exit_code == 2 and "needs --schools" in r.output


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


def test_simulate_a_blocked_cluster_plan():
    """``--simulate`` of schools randomized within districts (before 2026-12-05: refused)."""
    r = runner.invoke(app, ["power", "blocked-cluster-rct", "--districts", "3", "--schools", "4", "--students", "8",
                            "--icc", "0.15", "--icc-district", "0.1", "--blocks", "fixed", "--simulate", "12",
                            "--seed", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    sim = json.loads(r.output)["simulation"]
    assert sim["reps"] == 12 and 0 <= sim["simulated_power"] <= 1 and "CR2" in sim["analysis"]
