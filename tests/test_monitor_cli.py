"""`pleval monitor` end to end on the bundled sample panel, and `pleval simulate panel`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pleval.cli import app
from pleval.monitor import simulate_panel

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_monitor_writes_the_outputs_folder(tmp_path):
    out = tmp_path / "mon"
    res = runner.invoke(app, ["monitor", str(ROOT / "sample_data" / "pl_panel_students.csv"), "--time", "year",
                              "--covariates", "frl", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("panel_checks.csv", "effects_by_year.csv", "effects_by_exposure.csv", "trend.csv",
                 "equity_over_time.csv", "school_trajectories.csv", "group_time_effects.csv", "event_study.csv",
                 "summary.md", "provenance.json", "report.html"):
        assert (out / name).is_file(), name
    figs = {p.name for p in (out / "figures").iterdir()}
    assert {"effects_by_year.png", "effects_by_exposure.png", "event_study_math.png",
            "school_trajectories_reading.png", "equity_over_time_math.png"} <= figs
    assert all((out / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figs)
    from PIL import Image

    from pleval.outputs import PRINT_DPI

    with Image.open(out / "figures" / "effects_by_year.png") as im:  # print resolution, as pleval estimate's
        assert im.info["dpi"] == pytest.approx((PRINT_DPI, PRINT_DPI), abs=0.5)
    by_year = pd.read_csv(out / "effects_by_year.csv")
    assert set(by_year["subject"]) == {"math", "reading"} and set(by_year["time"]) == {2021, 2022, 2023, 2024}
    assert by_year.loc[by_year["time"] == 2021, "program"].eq(False).all()
    es = pd.read_csv(out / "event_study.csv")
    assert (es["event_time"] < 0).any() and (es["event_time"] >= 0).any()   # pre-periods: the parallel-trends check
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cohort"] == "pl_year" and prov["columns"]["time"] == ["year"]
    assert prov["staggered_inference"] == "welch"
    assert prov["effects_inference"].endswith("exact t reference")
    assert "students changing school" in res.output and "event study" in res.output
    gt = pd.read_csv(out / "group_time_effects.csv")
    assert gt["df"].notna().all() and (gt["df"] < 1e6).all()  # Welch df, not a normal reference


def test_monitor_staggered_inference_did_gives_the_r_package_figures(tmp_path):
    """``--staggered-inference did``: the group-time table of ``group_time_effects(...,
    inference="did")`` on the same school × period means (HC0 SEs, normal reference), recorded in
    provenance.json; an unknown value is refused."""
    from pleval.data import Columns
    from pleval.monitor import monitor

    path = ROOT / "sample_data" / "pl_panel_students.csv"
    out = tmp_path / "mon"
    res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--covariates", "frl", "--out", str(out),
                              "--no-figures", "--staggered-inference", "did"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "provenance.json").read_text())["staggered_inference"] == "did"
    got = pd.read_csv(out / "group_time_effects.csv")
    assert (got["df"] == float("inf")).all()
    cols = Columns(outcome="posttest", treatment="treatment", pretest="pretest", covariates=("frl",),
                   school="school_id", subject="subject", grade="grade", student_id="student_id", time="year")
    m = monitor(pd.read_csv(path), cols, cohort="pl_year", staggered_inference="did")
    api = pd.concat([g.table.assign(subject=s) for s, g in m.staggered.items()])
    pd.testing.assert_series_equal(got["se"], api["se"].reset_index(drop=True), check_names=False, rtol=1e-9)
    m2 = monitor(pd.read_csv(path), cols, cohort="pl_year")
    assert (pd.concat([g.table for g in m2.staggered.values()])["se"].to_numpy() > api["se"].to_numpy()).all()
    bad = runner.invoke(app, ["monitor", str(path), "--time", "year", "--out", str(tmp_path / "b"),
                              "--staggered-inference", "hc3"])
    assert bad.exit_code != 0 and "staggered_inference must be one of" in bad.output


def test_monitor_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["monitor", str(ROOT / "sample_data" / "pl_panel_students.csv"), "--time", "term",
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "column 'term' (time) is not in the data" in res.output


def test_monitor_checks_every_row_as_check_does(tmp_path):
    """A sentinel 999 in five PL students' last-year posttests: pleval monitor and the monitor API
    warn of them (once, with their rows) as pleval check does, and an infinite covariate is check's
    error. Before 2026-12-05 monitor ran no check: only the first period's rows were looked at (by
    the matching), so these went unreported while they moved that year's effect (-0.02 to +0.21
    SD), and the covariate was "missing or non-numeric"."""
    import warnings

    from pleval.data import SAMPLE_COLUMNS
    from pleval.errors import PlevalWarning
    from pleval.monitor import monitor

    df = pd.read_csv(ROOT / "sample_data" / "pl_panel_students.csv", dtype={"student_id": str, "school_id": str})
    hit = df.index[(df.treatment == 1) & (df.year == df.year.max()) & (df.subject == "math") & df.posttest.notna()][:5]
    df.loc[hit, "posttest"] = 999.0
    path = tmp_path / "sentinel.csv"
    df.to_csv(path, index=False)
    rows = ", ".join(str(i + 2) for i in hit[:3])  # file rows: the header is row 1
    checked = runner.invoke(app, ["check", str(path), "--covariates", "frl"])
    (line,) = [ln for ln in checked.output.splitlines() if ln.startswith("warning: column 'posttest' (outcome)")]
    assert "5 value(s)" in line and f"(file row(s) {rows})" in line
    res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--covariates", "frl", "--out",
                              str(tmp_path / "mon")])
    assert res.exit_code == 0 and res.output.count(line) == 1, res.output
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor(df, SAMPLE_COLUMNS.replace(time="year", covariates=("frl",)), method="regression")
    lines = [str(w.message) for w in caught if issubclass(w.category, PlevalWarning) and "'posttest'" in str(w.message)]
    assert len(lines) == 1 and "5 value(s)" in lines[0] and f"(index {', '.join(map(str, hit[:3]))})" in lines[0]
    bad = df.assign(frl=df.frl.astype(float))
    bad.loc[bad.index[-1], "frl"] = np.inf
    bad.to_csv(path, index=False)
    res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--covariates", "frl", "--out",
                              str(tmp_path / "mon2")])
    assert res.exit_code == 2
    assert f"error: column 'frl' (covariates): 1 row(s) are infinite (file row(s) {len(bad) + 1})" in res.output


def test_simulate_panel_cli_matches_the_api(tmp_path):
    out, tj = tmp_path / "p.csv", tmp_path / "t.json"
    res = runner.invoke(app, ["simulate", "panel", "--seed", "4", "--n-schools", "8", "--n-pl-schools", "3",
                              "--students-per-grade", "3", "--years", "2020-2022", "--adoption", "2021",
                              "--effects", "0.2,0.3", "--out", str(out), "--truth", str(tj)])
    assert res.exit_code == 0, res.output
    api = simulate_panel(seed=4, n_schools=8, n_pl_schools=3, students_per_grade=3, years=[2020, 2021, 2022],
                         adoption=[2021], effects=[0.2, 0.3])
    back = pd.read_csv(out)
    assert len(back) == len(api.data) and back["posttest"].tolist() == api.data["posttest"].tolist()
    assert json.loads(tj.read_text())["effects"] == [0.2, 0.3]
    bad = runner.invoke(app, ["simulate", "matched", "--effects", "0.1", "--out", str(tmp_path / "m.csv")])
    assert bad.exit_code == 2 and "--effects does not apply" in bad.output


def test_monitor_report_html_has_every_section_and_the_results(tmp_path):
    """report.html: self-contained (figures embedded, no external resources), every section heading, and the
    numbers of the results tables as printed."""
    from pleval.data import SAMPLE_COLUMNS, read_table
    from pleval.monitor import monitor
    from pleval.report import save_monitoring

    df = read_table(ROOT / "sample_data" / "pl_panel_students.csv")
    m = monitor(df, SAMPLE_COLUMNS.replace(time="year", covariates=("frl",)), cohort="pl_year",
                method="regression")
    out = save_monitoring(m, tmp_path / "mon")
    html = (out / "report.html").read_text(encoding="utf-8")
    for heading in ("Effects by year", "Effects by years of exposure", "Is the effect growing? The trend test",
                    "Staggered adoption: event study and pre-trends", "Schools whose trajectories diverge",
                    "Equity bands over time", "Provenance and options"):
        assert f". {heading}</h2>" in html, heading
    assert "src=\"http" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == len(list((out / "figures").iterdir()))
    by_year = pd.read_csv(out / "effects_by_year.csv")
    r = by_year.iloc[-1]
    assert f"{r.es:+.3f}" in html and f"{r.es_ci_low:+.3f} to {r.es_ci_high:+.3f}" in html
    trend = pd.read_csv(out / "trend.csv")
    assert f"{trend['es'].iloc[0]:+.3f}" in html
    pre = m.staggered["math"].pretest
    assert f"W = {pre['statistic']:.2f}, F({pre['df']}, {pre['df_denominator']:.1f}) = {pre['f_statistic']:.2f}" in html
    slopes = pd.read_csv(out / "school_trajectories.csv")
    pl = slopes[slopes["kind"] == "PL"].iloc[0]
    assert f"<td>{pl.slope_es:+.3f}</td>" in html and "adjusted for testing every school at once" in html
    eq = pd.read_csv(out / "equity_over_time.csv")
    assert "gap (top − bottom)" in html and f"{eq['es'].iloc[0]:+.3f}" in html
    assert m.provenance["input_sha256"] in html and "regression" in html
    # without figures the report still renders, with no images
    bare = save_monitoring(m, tmp_path / "bare", figures=False)
    assert "data:image" not in (bare / "report.html").read_text(encoding="utf-8")


def _terms(s: pd.Series) -> pd.Series:
    return s.map(lambda v: f"{int(v)}-{int(v) + 1}" if pd.notna(v) else None)


def test_monitor_takes_terms_as_text_and_edge_panels(tmp_path):
    """Periods given as sortable terms ('2021-2022') with the cohort in the same form give the
    numbers of the same panel in years (by period, by exposure, the event study); a numeric
    cohort beside text terms, one period only, and cohorts after the last period are a clear
    error or a run, not a crash (they were a float conversion error and KeyErrors)."""
    src = ROOT / "sample_data" / "pl_panel_students.csv"
    d = pd.read_csv(src)
    args = ["--time", "year", "--covariates", "frl"]
    terms = tmp_path / "terms.csv"
    d.assign(year=_terms(d["year"]), pl_year=_terms(d["pl_year"])).to_csv(terms, index=False)
    for f, out in ((src, "years"), (terms, "terms")):
        r = runner.invoke(app, ["monitor", str(f), *args, "--out", str(tmp_path / out)])
        assert r.exit_code == 0, r.output
    for name, key in (("effects_by_year.csv", ["subject", "time"]), ("effects_by_exposure.csv", ["subject", "exposure"]),
                      ("event_study.csv", ["subject", "event_time"])):
        a, b = (pd.read_csv(tmp_path / out / name) for out in ("years", "terms"))
        if name == "effects_by_year.csv":
            b["time"] = b["time"].str[:4].astype(int)
        cols = [c for c in ("estimate", "se", "es") if c in a.columns]
        pd.testing.assert_frame_equal(a.sort_values(key)[cols].reset_index(drop=True),
                                      b.sort_values(key)[cols].reset_index(drop=True), rtol=1e-9)
    mixed = tmp_path / "mixed.csv"
    d.assign(year=_terms(d["year"])).to_csv(mixed, index=False)
    r = runner.invoke(app, ["monitor", str(mixed), *args, "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "column 'pl_year' (cohort) holds numbers such as 2022, but the time column 'year' " \
                                "holds terms" in r.output
    for label, frame in (("one", d[d["year"] == 2021]), ("future", d.assign(pl_year=d["pl_year"].where(
            d["pl_year"].isna(), 2030)))):
        p = tmp_path / f"{label}.csv"
        frame.to_csv(p, index=False)
        r = runner.invoke(app, ["monitor", str(p), *args, "--out", str(tmp_path / label)])
        assert r.exit_code == 0, (label, r.output)
        by_year = pd.read_csv(tmp_path / label / "effects_by_year.csv")
        assert not by_year["program"].any() and len(pd.read_csv(tmp_path / label / "trend.csv")) == 0


def test_subject_names_with_path_characters_stay_in_the_outputs_folder(tmp_path):
    """Subjects such as '../../escape' and 'ELA/Reading' name the monitoring figures by
    findings.slug (they were written as given: a path outside the folder, or a missing
    directory), and the report still shows every figure."""
    d = pd.read_csv(ROOT / "sample_data" / "pl_panel_students.csv")
    p = tmp_path / "weird.csv"
    d.assign(subject=d["subject"].map({"math": "../../escape", "reading": "ELA/Reading"})).to_csv(p, index=False)
    out = tmp_path / "deep" / "mon"
    r = runner.invoke(app, ["monitor", str(p), "--time", "year", "--covariates", "frl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    figs = sorted(f.name for f in (out / "figures").iterdir())
    assert all(f.startswith(("effects_by_", "equity_over_time_", "event_study_", "school_trajectories_")) for f in figs)
    assert {"event_study_escape-c1a232.png", "event_study_ELA_Reading-cd97d0.png"} <= set(figs)
    assert not list(tmp_path.glob("**/escape*")) and (out / "report.html").read_text().count("<img") == len(figs)


def test_a_cohort_that_contradicts_the_treatment_or_varies_in_a_school_is_an_error(tmp_path):
    """The cohort column is each PL school's first program period. A comparison school (treatment
    0) with one inside the data was taken as a comparison by the effects over time and as an
    adopter by the staggered-adoption study (which moved its ATT silently); a school with two
    first periods gave its students different exposures. Both now stop, naming the schools. A PL
    school adopting after the last period gets one note (the summary printed it twice)."""
    d = pd.read_csv(ROOT / "sample_data" / "pl_panel_students.csv")
    comp = sorted(d.loc[d.pl_year.isna(), "school_id"].unique())[0]
    pl = sorted(d.loc[d.pl_year.notna(), "school_id"].unique())[0]
    other = 2023.0 if d.loc[d.school_id == pl, "pl_year"].iloc[0] == 2022 else 2022.0
    cases = {
        "comparison": (d.assign(pl_year=d.pl_year.where(d.school_id != comp, 2022)),
                       f"column 'pl_year' (cohort): 1 comparison school(s) (column 'treatment' 0) have a first "
                       f"program period within the data ('{comp}' (2022))"),
        "varies": (d.assign(pl_year=d.pl_year.where(~((d.school_id == pl) & (d.year == 2024)), other)),
                   f"column 'pl_year' (cohort) must hold one first program period per school; 1 school(s) have "
                   f"several ('{pl}': "),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        data.to_csv(path, index=False)
        res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--out", str(tmp_path / name)])
        assert res.exit_code == 2 and message in res.output, (name, res.output)
    # a comparison school adopting after the data ends is a comparison in both parts: no error
    later = d.assign(pl_year=d.pl_year.where(d.school_id != comp, 2030))
    path = tmp_path / "later.csv"
    later.to_csv(path, index=False)
    res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--out", str(tmp_path / "later")])
    assert res.exit_code == 0, res.output
    late = d.assign(pl_year=d.pl_year.where(d.school_id != pl, 2030))
    path = tmp_path / "late.csv"
    late.to_csv(path, index=False)
    res = runner.invoke(app, ["monitor", str(path), "--time", "year", "--out", str(tmp_path / "late")])
    assert res.exit_code == 0, res.output
    assert res.output.count(f"1 PL school(s) ('{pl}') have a first program period after the last period (2024)") == 1


@pytest.mark.parametrize("alpha, level", [(0.05, 0.95), (0.1, 0.95), (0.05, 0.9)])
def test_monitoring_report_prints_p_near_its_threshold_on_its_side(alpha, level):
    """p just below and just above its threshold prints with the digits that show its side: in the
    effects and trend tables, beside level CIs, the threshold is 1 − level (0.0496 and 0.0504 beside
    95% CIs, whatever the schools' α); in the schools' table and summary it is the divergence flag's
    α (0.0996 and 0.1004 beside 'diverges (α = 0.1)', not 0.100 for both). Before 2026-12-05 every p
    was formatted beside 0.05."""
    from dataclasses import replace

    from pleval.data import SAMPLE_COLUMNS, read_table
    from pleval.monitor import monitor
    from pleval.report.monitoring import monitoring_sections

    df = read_table(ROOT / "sample_data" / "pl_panel_students.csv")
    m = monitor(df, SAMPLE_COLUMNS.replace(time="year", covariates=("frl",)), cohort="pl_year",
                method="regression", alpha=alpha, level=level)
    near_ci, near_flag = ([t - 0.0004, t + 0.0004] for t in (round(1 - level, 10), alpha))
    ot = m.over_time
    by_year, tr = ot.by_year.copy(), ot.trend.copy()
    by_year.loc[by_year.index[:2], "pvalue"] = near_ci
    tr.loc[tr.index[:2], "pvalue"] = near_ci
    s, st = next(iter(m.schools.items()))
    sl = st.slopes.copy()
    pl = sl.index[sl["kind"] == "PL"][:2]
    sl.loc[pl, ["pvalue", "p_adjusted"]] = [[p, p] for p in near_flag]
    sl.loc[pl, "diverges"] = True
    m = replace(m, over_time=replace(ot, by_year=by_year, trend=tr),
                schools={s: replace(st, slopes=sl)})
    frames = {sec.id: [b.frame for b in sec.blocks if hasattr(b, "frame")] for sec in monitoring_sections(m)}
    subject = by_year.loc[by_year.index[0], "subject"]
    assert (by_year.loc[by_year.index[:2], "subject"] == subject).all()
    shown_ci, shown_flag = ([f"{p:.4f}" for p in near] for near in (near_ci, near_flag))
    assert frames["by-year"][ot.subjects.index(subject)]["p"].tolist()[:2] == shown_ci
    assert frames["trend"][0]["p"].tolist()[:2] == shown_ci
    schools_table = frames["schools"][0]
    assert schools_table.loc[pl, "p"].tolist() == shown_flag and schools_table.loc[pl, "adjusted p"].tolist() == shown_flag
    summary = m.schools[s].summary()
    assert all(f"adjusted p = {t})" in summary for t in shown_flag)
