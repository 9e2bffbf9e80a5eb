"""`pleval estimate` end to end through typer's runner, on both sample files.

Each sample file is analysed once (module-scoped fixtures) and many things are checked on the
outputs folder: every file exists and parses, the estimate recovers the truth documented in
sample_data/README.md (the *_truth.json records) within its CI, the PNGs are valid images, the
HTML holds the tables and images, a TOML-configured run equals the same run given by flags,
and bad inputs exit 2 with one line naming the problem.
"""

from __future__ import annotations

import io
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pleval.cli import app
from pleval.report import PROVENANCE_MARK

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
MATCHED = SAMPLE / "pl_matched_students.csv"
RCT = SAMPLE / "pl_cluster_rct.csv"
runner = CliRunner()

REQUIRED = ["summary.md", "overall.csv", "school_effects.csv", "school_effects.xlsx", "balance.csv", "run.toml",
            "provenance.json", "report.html", "report.pdf"]


def _run(args: list[str]):
    return runner.invoke(app, ["estimate", *args])


@pytest.fixture(scope="module")
def matched_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("matched") / "results"
    r = _run([str(MATCHED), "--out", str(out), "--seed", "3"])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    return out, r


@pytest.fixture(scope="module")
def rct_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rct") / "results"
    r = _run([str(RCT), "--design", "rct", "--out", str(out), "--level", "0.9", "--format", "json", "--svg"])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    return out, r


def _truth(name: str) -> dict:
    return json.loads((SAMPLE / name).read_text())


# ---------------------------------------------------------------------------------------------
# Outputs exist and parse
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["matched_run", "rct_run"])
def test_every_output_exists_and_parses(which, request):
    out, _ = request.getfixturevalue(which)
    for f in REQUIRED:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    overall = pd.read_csv(out / "overall.csv")
    assert {"subject", "analysis", "primary", "scale", "estimate", "se", "ci_low", "ci_high", "pvalue", "sd",
            "sd_kind"} <= set(overall.columns)
    assert set(overall["subject"]) == {"math", "reading"}
    assert set(overall["scale"]) == {"raw", "effect size", "percentile points"}
    schools = pd.read_csv(out / "school_effects.csv")
    assert {"subject", "school", "effect_size", "es_se", "p_adjusted", "shrunk_es"} <= set(schools.columns)
    xl = pd.read_excel(out / "school_effects.xlsx", sheet_name=None, header=3)
    assert {"Summary", "math", "reading"} <= set(xl)
    n_math = (schools["subject"] == "math").sum()
    assert list(xl["math"]["School"].head(n_math).astype(str)) == list(schools.loc[schools.subject == "math", "school"])
    bal = pd.read_csv(out / "balance.csv")
    assert {"subject", "variable", "smd_before"} <= set(bal.columns) and "pretest" in set(bal["variable"])
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert {"file", "design", "method", "seed", "columns", "options"} <= set(cfg)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["kind"] == PROVENANCE_MARK
    assert re.fullmatch(r"[0-9a-f]{64}", prov["input"]["sha256"])
    assert prov["pleval_version"] and prov["packages"]["numpy"]
    assert sorted(p.name for p in (out / "plots").glob("*.*")) == sorted(
        Path(f).name for f in prov["outputs"] if f.startswith("plots/")
    )
    # SVGs only on request (--svg, recorded in run.toml), one beside each PNG.
    pngs, svgs = (sorted(p.stem for p in (out / "plots").glob(f"*.{ext}")) for ext in ("png", "svg"))
    assert len(pngs) >= 6 and svgs == (pngs if which == "rct_run" else [])
    assert cfg.get("svg", False) is (which == "rct_run")
    md = (out / "summary.md").read_text()
    assert "## Overall effect" in md and "| subject" in md and "percentile" in md


def test_rating_in_the_summary_and_the_docs_worked_example(matched_run, rct_run):
    _, r = matched_run
    # Output to a pipe has no bold: the primary rows carry a marker the title explains.
    assert "* = primary estimate" in r.output and "ATT (matched) *" in r.output
    assert "WWC rating and ESSA tier" in r.output and "Meets With Reservations" in r.output
    # docs/standards.md: the matched sample's figures are this run's (they were a retired match's)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "standards.md").read_text()
    out, _ = matched_run
    ov = pd.read_csv(out / "overall.csv")
    ov = ov[ov["primary"] & (ov["scale"] == "effect size")].set_index("subject")
    rating = pd.read_csv(out / "rating.csv")
    for subject in ("math", "reading"):
        row = ov.loc[subject]
        assert f"(+{row['estimate']:.3f} SD, p = {row['pvalue']:.3f})" in docs
        tier = rating[(rating["subject"] == subject) & (rating["step"] == "tier")]["result"].iloc[0]
        assert f"**{tier}**" in docs
    n = rating[(rating["subject"] == "math") & rating["step"].str.startswith("at least 350")]["finding"].iloc[0]
    assert f"n_students={n.split()[0].replace(',', '')}," in docs
    out, r = rct_run
    rating = pd.read_csv(out / "rating.csv")
    math = rating[rating["subject"] == "math"].set_index("step")
    # docs/standards.md: the cluster RCT sample, math
    assert math.loc["rating", "result"] == "Meets WWC Standards With Reservations"
    assert math.loc["tier", "result"] == "Moderate"
    assert "overall 8.5%, differential 3.4 points" in math.loc["risk of bias (students)", "finding"]
    assert "g = -0.077, satisfied with statistical adjustment" in math.loc["baseline equivalence", "finding"]
    assert "4,862 students in 40 school(s)" in math.loc["at least 350 students across at least 2 schools", "finding"]
    assert "rating.csv" in json.loads((out / "provenance.json").read_text())["outputs"]


def test_input_hash_is_the_file_hash(matched_run):
    import hashlib

    out, _ = matched_run
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["input"]["sha256"] == hashlib.sha256(MATCHED.read_bytes()).hexdigest()
    # the options as run, defaults resolved (before 2026-12-04: vcov "", no matching options unless given), and
    # the data checks' findings beside the run's warnings (before: only in the report)
    assert prov["options"]["vcov"] == "" and prov["vcov_used"] == "CR2"  # ("": the design's default, kept for re-runs)
    mo = prov["match_options"]
    assert (mo["method"], mo["caliper"], mo["k"], mo["replace"], mo["ties"], mo["tie_cap"]) == ("propensity", 0.2, 1, True,
                                                                                              True, 25)
    assert any(c["level"] == "note" and "columns not used" in c["message"] for c in prov["data_checks"])


@pytest.mark.parametrize("which", ["matched_run", "rct_run"])
def test_pngs_are_valid_images_of_nontrivial_size(which, request):
    out, _ = request.getfixturevalue(which)
    pngs = sorted((out / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"forest_math", "forest_reading", "love_math", "percentiles_math", "distribution_reading"} <= names
    if which == "matched_run":
        assert {"overlap_math", "overlap_reading"} <= names
    for p in pngs:
        data = p.read_bytes()
        assert len(data) > 20_000, p.name
        img = Image.open(io.BytesIO(data))
        img.verify()
        w, h = Image.open(io.BytesIO(data)).size
        assert w >= 500 and h >= 300, (p.name, w, h)


@pytest.mark.parametrize("which", ["matched_run", "rct_run"])
def test_html_is_self_contained_with_tables_and_images(which, request):
    out, _ = request.getfixturevalue(which)
    html = (out / "report.html").read_text()
    n_png = len(list((out / "plots").glob("*.png")))
    assert html.count('src="data:image/png;base64,') == n_png
    assert not re.search(r"""(src|href)=["']https?://""", html)  # no external resources
    for section in ("At a glance", "Data and design", "Balance and WWC verdicts", "Overall effect", "Schools",
                    "Heterogeneity", "Caveats", "Provenance"):
        assert section in html, section
    assert html.count("<table") >= 6
    assert "would score at about the" in html and "50th percentile" in html
    assert "not percentage points" in html
    schools = pd.read_csv(out / "school_effects.csv")
    for s in schools["school"].head(5):
        assert f">{s}<" in html  # the school table is in the report


def test_matched_caveat_and_rct_caveat(matched_run, rct_run):
    m = (matched_run[0] / "report.html").read_text()
    r = (rct_run[0] / "report.html").read_text()
    assert "cannot rule out unobserved differences" in m
    assert "cannot rule out unobserved differences" not in r and "Randomization protects" in r
    assert "attrition (students)" in r and "attrition (schools)" in r


# ---------------------------------------------------------------------------------------------
# The numbers
# ---------------------------------------------------------------------------------------------
def test_matched_estimate_recovers_the_documented_truth(matched_run):
    out, _ = matched_run
    truth = _truth("pl_matched_students_truth.json")
    target_raw = truth["details"]["matched_estimand_sd"] * truth["sd"]  # 1.20 points (README)
    ov = pd.read_csv(out / "overall.csv")
    raw = ov[(ov["scale"] == "raw") & ov["primary"]].set_index("subject")
    for s in ("math", "reading"):
        assert raw.loc[s, "ci_low"] < target_raw < raw.loc[s, "ci_high"], (s, raw.loc[s].to_dict())
        # The effect size divides by the SD the matching module reports (pooled within grade ×
        # subject): close to the truth's within-grade SD of 15 points (README), and its CI covers
        # the true effect in those units.
        es = ov[(ov["scale"] == "effect size") & ov["primary"] & (ov["subject"] == s)].iloc[0]
        assert "within" in es["sd_kind"] and es["sd"] == pytest.approx(truth["sd"], rel=0.1)
        n = es["n_treated"] + es["n_control"]
        g_true = target_raw * (1 - 3 / (4 * n - 9)) / es["sd"]
        assert es["ci_low"] < g_true < es["ci_high"]


def test_rct_estimate_recovers_the_documented_truth(rct_run):
    out, r = rct_run
    truth = _truth("pl_cluster_rct_truth.json")
    itt_raw = truth["details"]["itt_sample_sd"] * truth["sd"]  # realized ITT, 1.69 points
    cace_raw = truth["details"]["cace_sample_sd"] * truth["sd"]
    ov = pd.read_csv(out / "overall.csv")
    for s in ("math", "reading"):
        itt = ov[(ov.subject == s) & (ov.analysis == "ITT") & (ov.scale == "raw")].iloc[0]
        assert itt["primary"] and itt["ci_low"] < itt_raw < itt["ci_high"]
        assert itt["level"] == pytest.approx(0.9)  # --level reached the estimate
        cace = ov[(ov.subject == s) & (ov.analysis == "CACE (IV)") & (ov.scale == "raw")].iloc[0]
        assert cace["ci_low"] < cace_raw < cace["ci_high"]
    # JSON on stdout says the same as overall.csv.
    payload = json.loads(r.stdout)
    es = ov[(ov.subject == "math") & ov.primary & (ov.scale == "effect size")].iloc[0]
    assert payload["subjects"]["math"]["effect_size"]["estimate"] == pytest.approx(es["estimate"])
    assert payload["outputs"]["report"].endswith("report.html")
    att = pd.read_csv(out / "attrition.csv")
    stud = att[(att.subject == "math") & (att.level == "students")].iloc[0]
    assert stud["overall"] == pytest.approx(truth["details"]["attrition_overall"], abs=1e-9)
    assert stud["differential"] == pytest.approx(truth["details"]["attrition_differential"], abs=1e-9)


def test_percentile_points_match_the_effect_size(rct_run):
    from pleval.percentiles import to_percentile_points

    ov = pd.read_csv(rct_run[0] / "overall.csv")
    for (s, a), g in ov.groupby(["subject", "analysis"]):
        g = g.set_index("scale")
        assert g.loc["percentile points", "estimate"] == pytest.approx(
            to_percentile_points(g.loc["effect size", "estimate"]), abs=1e-9)
        # effect size = ω·raw/SD with Hedges' ω = 1 − 3/(4N − 9), just below 1 at these N
        n = g.loc["raw", "n_treated"] + g.loc["raw", "n_control"]
        omega = 1 - 3 / (4 * n - 9)
        for col in ("estimate", "ci_low", "ci_high", "se"):
            assert g.loc["effect size", col] == pytest.approx(omega * g.loc["raw", col] / g.loc["raw", "sd"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Configuration round trip and folder rules
# ---------------------------------------------------------------------------------------------
def test_toml_configured_run_equals_the_flag_run(rct_run, tmp_path):
    out, _ = rct_run
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert cfg["options"]["level"] == 0.9 and cfg["design"] == "rct" and cfg["svg"] is True
    # Relative paths in run.toml are read relative to its folder: copy it elsewhere with the
    # paths made absolute, and override the output folder by a flag.
    again = tmp_path / "again"
    r = _run(["--config", str(out / "run.toml"), "--out", str(again), "--quiet"])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    assert r.stdout.strip() == str(again / "report.html")
    for f in ("overall.csv", "school_effects.csv", "balance.csv", "placebo.csv", "heterogeneity.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / f), pd.read_csv(again / f), check_exact=False, rtol=1e-12)
    assert (again / "run.toml").read_text().replace("out = \".\"", "") == (out / "run.toml").read_text().replace(
        "out = \".\"", "")
    assert sorted(p.name for p in (again / "plots").iterdir()) == sorted(p.name for p in (out / "plots").iterdir())
    # A flag overrides the file.
    other = tmp_path / "other"
    r = _run(["--config", str(out / "run.toml"), "--out", str(other), "--level", "0.95", "--only-subject", "math",
              "--no-placebo", "--no-svg", "--quiet"])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    ov = pd.read_csv(other / "overall.csv")
    assert set(ov.subject) == {"math"} and (ov["level"] == 0.95).all()
    assert not (other / "placebo.csv").exists()
    # --no-svg overrides the file's svg = true; a config's svg must be a boolean.
    assert not list((other / "plots").glob("*.svg")) and list((other / "plots").glob("*.png"))
    assert "svg" not in tomllib.loads((other / "run.toml").read_text())
    bad = tmp_path / "bad.toml"
    bad.write_text((out / "run.toml").read_text().replace("svg = true", 'svg = "yes"'))
    r = _run(["--config", str(bad), "--out", str(tmp_path / "bad_out")])
    assert r.exit_code == 2 and _one_line_error(r, "svg must be true or false")


def test_rerun_into_previous_output_and_refusals(rct_run, tmp_path):
    out, _ = rct_run
    prov = json.loads((out / "provenance.json").read_text())
    # A non-empty folder that is not a pleval output is refused without --force.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = _run([str(RCT), "--design", "rct", "--out", str(foreign), "--no-placebo"])
    assert r.exit_code == 2
    assert _one_line_error(r, "not a previous pleval output")
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    # Never write over the input, even with --force.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    src = data_dir / "overall.csv"
    src.write_bytes(RCT.read_bytes())
    r = _run([str(src), "--design", "rct", "--out", str(data_dir), "--force"])
    assert r.exit_code == 2 and _one_line_error(r, "overwrite the input")
    assert src.read_bytes() == RCT.read_bytes()
    assert prov["outputs"]


# ---------------------------------------------------------------------------------------------
# Bad inputs: exit 2, one line naming the problem
# ---------------------------------------------------------------------------------------------
def _one_line_error(r, *needles: str) -> bool:
    lines = [ln for ln in (r.stderr or r.output).splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error:") and all(n in lines[0] for n in needles)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    d = pd.read_csv(RCT).head(400)
    p = tmp_path_factory.mktemp("bad") / "small.csv"
    d.to_csv(p, index=False)
    return p, d


@pytest.mark.parametrize(
    "case, needles",
    [
        ("missing column", ("'pretest_fall'", "pretest", "not in the data")),
        ("wrong type", ("'race'", "outcome", "numeric")),
        ("unknown option", ("--colour",)),
        ("unknown --set", ("'colour'", "unknown option")),
        ("empty file", ("empty",)),
        ("header only", ("no data rows",)),
        ("bad treatment", ("'treatment'", "0/1")),
        ("bad design", ("--design",)),
        ("missing file", ("no such file",)),
        ("bad config key", ("unknown key", "'colour'")),
        ("bad number", ("--seed", "valid integer")),
        ("subject none", ("--only-subject math needs the subject column", "--subject none")),
    ],
)
def test_bad_inputs_exit_2_with_one_line(case, needles, small_csv, tmp_path):
    path, d = small_csv
    out = str(tmp_path / "o")
    args = {
        "missing column": [str(path), "--pretest", "pretest_fall"],
        "wrong type": [str(path), "--outcome", "race"],
        "unknown option": [str(path), "--colour", "red"],
        "unknown --set": [str(path), "--set", "colour=red"],
        "empty file": [str(_write(tmp_path / "e.csv", ""))],
        "header only": [str(_write(tmp_path / "h.csv", ",".join(d.columns) + "\n"))],
        "bad treatment": [str(_write_frame(tmp_path / "t.csv", d.assign(treatment=d["treatment"] * 2)))],
        "bad design": [str(path), "--design", "quasi"],
        "missing file": [str(tmp_path / "nope.csv")],
        "bad config key": ["--config", str(_write(tmp_path / "c.toml", f'file = "{path}"\ncolour = "red"\n'))],
        "bad number": [str(path), "--seed", "abc"],
        "subject none": [str(path), "--subject", "none", "--only-subject", "math"],
    }[case]
    r = _run([*args, "--out", out])
    assert r.exit_code == 2, (case, r.output)
    assert _one_line_error(r, *needles), (case, r.stderr or r.output)
    assert not Path(out).exists()  # nothing written on error


def test_debug_shows_the_traceback(small_csv, tmp_path):
    path, _ = small_csv
    r = _run([str(path), "--outcome", "race", "--out", str(tmp_path / "o"), "--debug"])
    assert r.exit_code != 0 and r.exit_code != 2
    assert r.exception is not None and "numeric" in str(r.exception)


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def _write_frame(p: Path, df: pd.DataFrame) -> Path:
    df.to_csv(p, index=False)
    return p


def test_cli_python_and_report_give_the_same_headline(matched_run):
    """Stable answers: the CLI run (seed 3) and the README's Python call (default seed) give the
    same primary effects, and the report quotes them."""
    import pleval

    out, _ = matched_run
    ev = pleval.estimate(MATCHED, placebo=False)
    ov = pd.read_csv(out / "overall.csv")
    es = ov[(ov["scale"] == "effect size") & ov["primary"]].set_index("subject")
    summary = (out / "summary.md").read_text()
    for s in ("math", "reading"):
        e = ev.effect(s).effect_size
        assert es.loc[s, "estimate"] == pytest.approx(e.estimate, rel=1e-9)
        assert es.loc[s, "pvalue"] == pytest.approx(e.pvalue, rel=1e-9)
        assert f"{e.estimate:.3f}" in summary


@pytest.mark.parametrize("module, name, step, advice", [
    ("pleval.heterogeneity.placebo", "play_rounds", "placebo schools", "--placebo-cap N, e.g. --placebo-cap 100"),
    ("pleval.estimate", "_school_effects", "school effects", "--set tie_cap=10"),
])
def test_out_of_memory_is_a_plain_error_naming_the_step_and_what_to_do(tmp_path, monkeypatch, module, name, step, advice):
    """A MemoryError in a stage (the placebo rounds, the school effects) is the machine's limit,
    not a bug: one line with the step, the rows and schools and the options that need less
    memory there; exit 2."""
    import importlib

    from pleval.simulate import simulate_matched

    data = simulate_matched(n_schools=24, n_pl_schools=6, students_per_grade=6, seed=1).data
    path = _write_frame(tmp_path / "small.csv", data)

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(importlib.import_module(module), name, no_memory)
    out = tmp_path / "o"
    r = _run([str(path), "--out", str(out)])
    assert r.exit_code == 2, r.stderr or r.output
    err = " ".join(r.stderr.split())
    assert err.startswith(f"error: out of memory in the step '{step}'")
    assert f"({len(data):,} rows, {data['school_id'].nunique():,} schools)" in err
    assert advice in err and "--pool" in err and "more memory" in err
    assert "internal error" not in err and "bug" not in err
    assert not out.exists()


def test_risk_table_lists_the_highest_risks_where_a_subject_has_many_schools():
    """The terminal's risk-of-harm table lists every school of a subject with at most RISK_ROWS
    PL schools (in the table's order) and, beyond that, the RISK_TOP of highest P(<0), highest
    first, saying so in its caption."""
    from types import SimpleNamespace

    import numpy as np

    from pleval.cli._estimate import RISK_ROWS, RISK_TOP, _risk_table

    rng = np.random.default_rng(3)
    n = {"math": RISK_ROWS + 5, "reading": RISK_ROWS}
    schools = pd.concat([pd.DataFrame({"subject": k, "school": [f"S{i:03d}" for i in range(m)],
                                       "effect_size": rng.normal(0, 0.2, m), "prob_negative": rng.uniform(0, 1, m)})
                         for k, m in n.items()], ignore_index=True)
    schools["shrunk_es"] = schools["effect_size"] * 0.8
    schools["shrunk_es_ci_low"], schools["shrunk_es_ci_high"] = schools["shrunk_es"] - 0.1, schools["shrunk_es"] + 0.1
    t = _risk_table(SimpleNamespace(schools=schools, options={}, columns=SimpleNamespace(outcome="posttest")))
    subj, school, risk = (list(t.columns[j].cells) for j in (0, 1, 5))
    math = schools[schools["subject"] == "math"].sort_values("prob_negative", ascending=False).head(RISK_TOP)
    assert subj == ["math"] * RISK_TOP + ["reading"] * RISK_ROWS
    assert school[:RISK_TOP] == math["school"].tolist()
    assert risk[:RISK_TOP] == [f"{p:.2f}" for p in math["prob_negative"]]
    assert school[RISK_TOP:] == schools.loc[schools["subject"] == "reading", "school"].tolist()
    assert f"math: {RISK_TOP} of {RISK_ROWS + 5}" in t.caption and "reading" not in t.caption
    few = _risk_table(SimpleNamespace(schools=schools[schools["subject"] == "reading"], options={},
                                      columns=SimpleNamespace(outcome="posttest")))
    assert few.row_count == RISK_ROWS and not few.caption


def test_two_pl_schools_run_to_the_end(tmp_path):
    """Two PL schools and three comparison schools: no prediction interval (t(k − 2) has no df),
    shown as — in the terminal's school table. Before, printing it raised "effect size g must be
    finite" after every output had been computed."""
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv")
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())[:2]
    comp = sorted(d.loc[d.treatment == 0, "school_id"].unique())[:3]
    src = tmp_path / "tiny.csv"
    d[d.school_id.isin([*pl, *comp])].to_csv(src, index=False)
    r = runner.invoke(app, ["estimate", str(src), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("│ math    │ 2 │"))
    assert [c.strip() for c in row.split("│")][7] == "—"  # the PI column
    assert (tmp_path / "out" / "report.html").exists()


def test_school_tables_mark_the_schools_the_summary_counts(matched_run):
    """The summary counts schools beyond the placebo spread after adjustment; the Excel sheets
    shaded (and their header counted) the student-level adjusted verdicts only (8 math rows
    shaded where the summary counts 1). The header now gives the calibrated counts and the
    shading follows them; the forest plot's colours too (tests/test_plots.py)."""
    out, _ = matched_run
    s = pd.read_csv(out / "school_effects.csv")
    book = pd.read_excel(out / "school_effects.xlsx", sheet_name=None, header=None)
    for subject, g in s.groupby("subject"):
        p, es = g["p_calibrated_adjusted"].to_numpy(float), g["effect_size"].to_numpy(float)
        want = f"Beyond the placebo spread (student-level SEs understate a school's uncertainty): " \
               f"{int(((p < 0.05) & (es > 0)).sum())} positive / {int(((p < 0.05) & (es < 0)).sum())} negative adjusted"
        assert want in str(book[subject].iloc[1, 0])
        assert f"{int(((p < 0.05) & (es > 0)).sum())} positive and {int(((p < 0.05) & (es < 0)).sum())} negative" in \
            (out / "summary.md").read_text()
        # and the sheet's note names that test (it said "significant after adjustment" beside a p-adjusted column
        # with 8 math schools below 0.05 and 1 shaded)
        notes = book[subject][0].astype(str)
        assert notes.str.startswith("Shaded rows are significant beyond the placebo spread after adjustment").any()
    from pleval.heterogeneity.export import _verdict_p

    assert _verdict_p(s)[1] == "beyond the placebo spread after adjustment"


def test_an_estimate_without_a_standard_error_prints_no_nan(tmp_path):
    """A Neyman estimate without a design-based SE (a block with one treated school) printed
    '+0.007 (+nan, +nan)' and p 'nan'; the table now says 'no SE' (a note says why)."""
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_cluster_rct.csv")
    d[d.school_id != "SCH001"].to_csv(tmp_path / "trial.csv", index=False)
    res = runner.invoke(app, ["estimate", str(tmp_path / "trial.csv"), "--design", "rct", "--set", "placebo=false",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    (row,) = [ln for ln in res.output.splitlines() if "math" in ln and "Neyman" in ln]
    assert "(no SE)" in row and "nan" not in row
    assert "no design-based SE" in res.output
    # pleval rct's table too (it printed SE nan, CI nan to nan, p nan, df nan)
    res = runner.invoke(app, ["rct", str(tmp_path / "trial.csv"), "--only-subject", "math", "--takeup", "none",
                              "--out", str(tmp_path / "rct")])
    assert res.exit_code == 0, res.output
    (row,) = [ln for ln in res.output.splitlines() if "Neyman" in ln and "│" in ln]
    assert "no SE" in row and "nan" not in row
    # its equivalence table shows the within-grade difference and SD the g divides (the means alone
    # did not match the g)
    eq = pd.read_csv(tmp_path / "rct" / "equivalence.csv").set_index("variable")
    (row,) = [ln for ln in res.output.splitlines() if "│ pretest" in ln]
    cells = [c.strip() for c in row.split("│")]
    assert cells[6:9] == [f"{eq.loc['pretest', 'difference']:+.3f}", f"{eq.loc['pretest', 'sd']:.3f}",
                          f"{eq.loc['pretest', 'effect_size']:.3f}"]


def test_multiarm_title_and_monitor_summary_print_plain_labels(tmp_path):
    """A numeric control label printed as np.int64(0) in the multi-arm title; the monitor's panel
    summary printed an empty [] after its row count."""
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "sample_data" / "pl_cluster_rct.csv")
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())
    d["arm"] = np.where(d.treatment == 0, 0, np.where(d.school_id.isin(pl[::2]), 2, 1))
    d.to_csv(tmp_path / "arms.csv", index=False)
    res = runner.invoke(app, ["rct", str(tmp_path / "arms.csv"), "--treatment", "arm", "--control", "0", "--takeup",
                              "none", "--only-subject", "math", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "Arms against control 0 — posttest" in res.output and "np.int64" not in res.output
    panel = Path(__file__).resolve().parents[1] / "sample_data" / "pl_panel_students.csv"
    text = runner.invoke(app, ["monitor", str(panel), "--time", "year", "--out", str(tmp_path / "m"), "--no-figures"])
    assert text.exit_code == 0, text.output
    assert "rows: 4,534 of 4,534\n" in text.output and "[]" not in text.output


def test_run_toml_repeats_how_the_file_was_read(tmp_path):
    """A run on a workbook's second sheet (--sheet data) wrote a run.toml without the sheet, so
    `pleval estimate --config run.toml` read the first sheet and stopped ("column 'grade' ... not
    in the data"); nor could a config give reading options. run.toml now has a [read] table,
    and a config's [read] is read (flags override it)."""
    d = pd.read_csv(MATCHED)
    d = d[d["school_id"].isin(sorted(d["school_id"].unique())[::6])]  # (a smaller workbook: 1 school in 6)
    book = tmp_path / "book.xlsx"
    with pd.ExcelWriter(book) as w:
        pd.DataFrame({"note": ["exported 2026-11-30"]}).to_excel(w, sheet_name="notes", index=False)
        d.to_excel(w, sheet_name="data", index=False)
    first = tmp_path / "first"
    r = _run([str(book), "--sheet", "data", "--out", str(first), "--set", "placebo=false", "--workers", "1"])
    assert r.exit_code == 0, r.output
    cfg = tomllib.loads((first / "run.toml").read_text())
    assert cfg["read"] == {"sheet": "data"}
    again = _run(["--config", str(first / "run.toml"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    cols = ["subject", "scale", "estimate", "se"]
    pd.testing.assert_frame_equal(pd.read_csv(first / "overall.csv")[cols], pd.read_csv(tmp_path / "again" / "overall.csv")[cols])
    bad = tmp_path / "bad.toml"
    bad.write_text('[read]\nseparator = ";"\n')
    r = _run(["--config", str(bad), str(book), "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "unknown reading option(s) 'separator' in [read]; known: sep, decimal" in r.output


def test_school_findings_say_which_counts_are_student_level(matched_run):
    """The summary's school-effects paragraph gave the student-level counts (5 and 3 for the
    sample's math) as "significantly positive/negative" above the placebo-calibrated verdicts the
    headline counts (1 and 0); it now says they rest on student-level SEs alone."""
    out, _ = matched_run
    md = (out / "summary.md").read_text()
    assert re.search(r"Against student-level standard errors alone \(which leave out a school's own circumstances; the "
                     r"verdicts beyond the placebo spread follow\), \d+ school\(s\) are significantly positive", md)


def test_pleval_rct_adjusts_subgroups_across_subjects_as_estimate_does(tmp_path):
    """`pleval rct --subgroups` adjusted each subject's rows alone (math frl = 0: 0.052), while
    `pleval estimate --design rct` and the docs adjust every subgroup row of the run together
    (0.079); both now give Benjamini–Hochberg over all rows, and the same numbers."""
    from statsmodels.stats.multitest import multipletests

    res = runner.invoke(app, ["rct", "sample_data/pl_cluster_rct.csv", "--subgroups", "frl,ell", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    for name in ("subgroups", "interactions"):
        t = pd.read_csv(tmp_path / "r" / f"{name}.csv")
        assert t["subject"].nunique() == 2
        np.testing.assert_allclose(t["pvalue_adjusted"], multipletests(t["pvalue"], method="fdr_bh")[1], rtol=1e-12)


def test_a_school_id_with_leading_zeros_far_down_the_file_is_a_school_of_its_own(tmp_path):
    """The PL school '0042', first seen hundreds of rows down the CSV (below the rows the reader
    looked at), was read as 42 and estimated as one school with the PL school '42' above it,
    without a word. The school column is read as text in full: two schools, with the warning that
    one id is spelled two ways."""
    codes = {"SCH0001": "42", "SCH0009": "0042", "SCH0002": "7", "SCH0003": "13", "SCH0004": "99", "SCH0005": "5"}
    d = pd.read_csv(MATCHED, dtype={"school_id": str})
    d = d[d["school_id"].isin(codes)].assign(school_id=lambda x: x["school_id"].map(codes))
    d = pd.concat([d[d["school_id"] != "0042"], d[d["school_id"] == "0042"]])
    src = tmp_path / "late.csv"
    d.to_csv(src, index=False)
    assert (d["school_id"] == "0042").to_numpy().argmax() > 500  # (its first row)
    r = _run([str(src), "--out", str(tmp_path / "out"), "--no-placebo", "--workers", "1", "--only-subject", "math"])
    assert r.exit_code == 0, r.output
    schools = pd.read_csv(tmp_path / "out" / "school_effects.csv", dtype={"school": str})["school"]
    assert sorted(schools) == sorted(d.loc[d["treatment"] == 1, "school_id"].unique()) == ["0042", "42"]
    assert "spells one value several ways ('42', '0042')" in r.output
