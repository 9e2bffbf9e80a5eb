"""pleval.report: the HTML report is self-contained and complete, the Markdown summary keeps its
numbers, run.toml reads back, and the outputs folder follows its rules (refuse foreign
folders, never overwrite the input, replace only a previous pleval run's files)."""

from __future__ import annotations

import json
import re
from markupsafe import escape as html_escape
import tomllib
import warnings

import pandas as pd
import pytest

import pleval
from pleval import report
from pleval.errors import PlevalError, PlevalWarning
from pleval.simulate import simulate_cluster_rct


@pytest.fixture(scope="module")
def sim():
    return simulate_cluster_rct(n_schools=16, n_blocks=4, students_per_school=40, grades=(4, 5), seed=5,
                                noncompliance=0.1, attrition=0.05)


@pytest.fixture(scope="module")
def ev(sim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(sim.data, design="rct")


@pytest.fixture(scope="module")
def saved(ev, sim, tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    src = root / "trial.csv"
    sim.data.to_csv(src, index=False)
    out = report.write_outputs(ev, root / "out", input_path=str(src))
    return out, src


def test_html_sections_sentence_and_embedded_images(saved, ev):
    out, _ = saved
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(report.figures(ev)) == len(list((out / "plots").glob("*.png")))
    assert all(len(b) > 10_000 for b in imgs)
    assert not re.search(r"<(script|link)\b", html) and "http://" not in html and "https://" not in html
    for s in ev.subjects:
        assert html_escape(ev.sentence(s)) in html
    for needle in ("Balance and WWC verdicts", "attrition (students)", "School table — math", "prediction interval",
                   "Placebo schools", "not percentage points"):
        assert needle in html, needle
    for c in (report.CAVEAT_PERCENTILE, report.CAVEAT_RCT, report.CAVEAT_SCHOOL):
        assert html_escape(c) in html
    # Verdicts carry a colour class; the pretest row of each subject is listed.
    assert html.count("baseline equivalence: pretest") == len(ev.subjects) * 2  # glance cards + verdict table
    assert re.search(r'class="(ok|warn|bad)">(satisfied|low|not)', html)


def test_markdown_keeps_signs_and_tables(saved, ev):
    out, _ = saved
    md = (out / "summary.md").read_text()
    e = ev.effect("math")
    assert f"{e.effect_size.estimate:+.3f}" in md  # not re-parsed into an unsigned number
    assert "| subject" in md and "### School table — math" in md
    assert "plots/forest_math.png" in md
    for s in ev.subjects:
        assert ev.sentence(s) in md


def test_run_toml_reads_back(saved, ev):
    out, src = saved
    cfg = tomllib.loads((out / "run.toml").read_text())
    assert cfg["file"] == "../trial.csv" and (out / cfg["file"]).resolve() == src.resolve()
    assert cfg["design"] == "rct" and cfg["method"] == "ols" and cfg["seed"] == 0
    assert cfg["columns"]["pretest"] == ["pretest"] and cfg["columns"]["block"] == "block"
    assert cfg["options"]["level"] == 0.95 and cfg["options"]["rct_design"] == "cluster"
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["outputs"]) >= {"report.html", "run.toml", "overall.csv", "provenance.json", "plots/forest_math.png"}


def test_run_toml_file_is_relative_to_the_folder(ev, sim, tmp_path):
    src = tmp_path / "data" / "trial.csv"
    src.parent.mkdir()
    sim.data.to_csv(src, index=False)
    cfg = report.run_config(ev, file="../data/trial.csv", out=".")
    assert cfg["file"] == "../data/trial.csv" and cfg["out"] == "."
    assert "subject" not in cfg  # None values are left out of TOML


def test_previous_output_is_replaced_and_foreign_folder_refused(ev, sim, tmp_path):
    out = tmp_path / "res"
    ev.save(out)
    (out / "mine.txt").write_text("keep me")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        math_only = pleval.estimate(sim.data, design="rct", subject="math", placebo=False)
    math_only.save(out)  # a previous pleval output: allowed without force
    names = {p.name for p in (out / "plots").glob("*.png")}
    assert names and all(n.endswith("_math.png") for n in names)  # stale reading plots removed
    assert not (out / "placebo.csv").exists()  # stale table removed
    assert (out / "mine.txt").read_text() == "keep me"  # not ours: left alone
    assert set(pd.read_csv(out / "overall.csv")["subject"]) == {"math"}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    with pytest.raises(PlevalError, match="not a previous pleval output"):
        ev.save(foreign)
    assert [p.name for p in foreign.iterdir()] == ["a.txt"]
    with pytest.raises(PlevalError, match="not a folder"):
        ev.save(foreign / "a.txt")


def test_never_overwrites_the_input(ev, sim, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    src = out / "balance.csv"  # the input happens to have an output's name
    sim.data.to_csv(src, index=False)
    before = src.read_bytes()
    with pytest.raises(PlevalError, match="overwrite the input"):
        report.write_outputs(ev, out, force=True, input_path=str(src))
    assert src.read_bytes() == before
    with pytest.raises(PlevalError, match="not a folder"):
        report.write_outputs(ev, src, force=True, input_path=str(src))


def test_html_table_alignment_and_verdict_classes():
    t = report._html_table(pd.DataFrame({"school": ["a<b"], "effect size": ["+0.123"], "95% CI": ["-0.1 to +0.3"],
                                         "p": ["< 0.001"], "note": ["few students"]}))
    assert '<td class="l">a&lt;b</td>' in t and "<td>+0.123</td>" in t and "<td>-0.1 to +0.3</td>" in t
    assert "<td>&lt; 0.001</td>" in t and '<td class="l">few students</td>' in t
    assert report._cls("satisfied") == "ok" and report._cls("not satisfied") == "bad"
    assert report._cls("satisfied with statistical adjustment") == "warn" and report._cls("high") == "bad"


def test_text_and_fragment(ev):
    text = report.render_text(ev)
    assert "ITT" in text and "Percentile points are shifts in rank" in text
    frag = report.render_fragment(ev)
    assert frag.startswith("<div class='pleval-result'>") and "Evaluation" in frag
