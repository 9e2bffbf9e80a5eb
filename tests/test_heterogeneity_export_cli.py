"""School table export (CSV, Excel, Markdown, HTML) and the ``pleval schools`` command."""

from __future__ import annotations

import json
import re

import numpy as np
import openpyxl
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import pleval
from pleval.cli import app
from pleval.data import file_sha256
from pleval.errors import DataError, PlevalWarning
from pleval.heterogeneity import meta_analysis, school_effects, school_effects_from_estimates
from pleval.heterogeneity import export
from pleval.heterogeneity.export import export_table, footnotes

from .test_heterogeneity_school_effects import make_sites

runner = CliRunner()


@pytest.fixture(scope="module")
def estimates_file(tmp_path_factory):
    rng = np.random.default_rng(42)
    k = 25
    df = pd.DataFrame(
        {
            "school_id": np.tile([f"PL{i:03d}" for i in range(k)], 2),
            "subject": np.repeat(["math", "reading"], k),
            "estimate": rng.normal(0.05, 0.2, 2 * k),
            "se": rng.uniform(0.03, 0.09, 2 * k),
            "n_treated": rng.integers(50, 400, 2 * k),
            "n_comparison": rng.integers(200, 1200, 2 * k),
            "school_poverty": np.tile(rng.uniform(0.2, 0.9, k), 2),
            "years_implementing": np.tile(rng.integers(1, 5, k), 2),
            "enrollment": np.tile(rng.integers(200, 900, k), 2),
        }
    )
    path = tmp_path_factory.mktemp("schools") / "school_effects.csv"
    df.to_csv(path, index=False)
    return path, df


@pytest.fixture(scope="module")
def student_result():
    d, _ = make_sites(n_schools=8, n_per=60, seed=3)
    return school_effects(d, stratum="school_id", covariates=["pretest"], by="subject")


def test_csv_round_trip(student_result, tmp_path):
    p = export_table(student_result, tmp_path / "t.csv")
    back = pd.read_csv(p)
    assert list(back.columns) == list(student_result.table.columns)
    np.testing.assert_allclose(back.effect_size, student_result.table.effect_size)
    assert len(back) == 16


def test_excel_one_sheet_per_subject_formatted(student_result, tmp_path):
    p = export_table(student_result, tmp_path / "t.xlsx")
    wb = openpyxl.load_workbook(p)
    assert wb.sheetnames == ["Summary", "math", "reading"]
    ws = wb["math"]
    header = [c.value for c in ws[4]]
    assert header[0] == "School" and "Percentile points" in header and "p adjusted" in header
    assert ws["A4"].font.bold and ws.freeze_panes == "B5"
    col = header.index("Effect size") + 1
    math = student_result.table[student_result.table.subject == "math"]
    values = [ws.cell(row=5 + i, column=col).value for i in range(len(math))]
    np.testing.assert_allclose(values, math.effect_size)
    assert ws.cell(row=5, column=col).number_format == "0.000"
    for name, src in (("Shrunken interval low (ES)", "shrunk_es_ci_low"), ("Shrunken interval high (ES)", "shrunk_es_ci_high")):
        c = header.index(name) + 1
        np.testing.assert_allclose([ws.cell(row=5 + i, column=c).value for i in range(len(math))], math[src])
    text = " ".join(str(c.value) for row in ws.iter_rows(min_row=5 + len(math)) for c in row if c.value)
    assert "shift in rank" in text and "Benjamini-Hochberg" in text
    summary = wb["Summary"]
    header = [c.value for c in summary[3]]
    assert header[:3] == ["subject", "τ² estimator", "schools (k)"]
    assert not [h for h in header if h.endswith(("_x", "_y"))]  # no leftover merge columns
    rows = [[c.value for c in r] for r in summary.iter_rows(min_row=4, max_row=5)]
    meta = student_result.meta_frame()
    assert [r[0] for r in rows] == list(meta["subject"])
    np.testing.assert_allclose([r[header.index("pooled effect size")] for r in rows], meta["estimate"])
    assert [r[header.index("schools (k)")] for r in rows] == list(meta["k"])
    df = [r[header.index("df of the test")] for r in rows]  # Hartung–Knapp (the default): t(k − 1)
    assert df == [int(k) - 1 for k in meta["k"]] and not any(v in ("nan", "inf") for r in rows for v in map(str, r))


def test_markdown_and_html(student_result, tmp_path):
    md = export_table(student_result, tmp_path / "t.md").read_text()
    assert md.count("## ") == 2 and "| School" in md and "shift in rank" in md
    assert "Pooled effect size" in md
    r = student_result.table.iloc[0]
    assert "Shrunken interval |" in md and f"{r.shrunk_es_ci_low:.3f} to {r.shrunk_es_ci_high:.3f}" in md
    html = export_table(student_result, tmp_path / "t.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<table>") == 2
    assert "shift in rank" in html and "<h2>reading</h2>" in html
    with pytest.raises(DataError, match="format"):
        export_table(student_result, tmp_path / "t.docx")
    assert any("percentile" in n for n in footnotes(student_result))


def test_markdown_school_named_with_a_pipe_keeps_its_columns(tmp_path):
    """A school named "North|South" is one cell of the .md table, read by a GFM table parser
    (markdown-it, as GitHub renders it), and its numbers sit under their headers; before
    2026-12-04 its name was two cells and every number one column to the right."""
    import html

    from markdown_it import MarkdownIt

    df = pd.DataFrame({"school_id": ["North|South", "East", "West"], "estimate": [-0.21, 0.1, 0.05],
                       "se": [0.04, 0.05, 0.06], "n_treated": [343, 60, 70], "n_comparison": [1231, 200, 210]})
    md = export_table(school_effects_from_estimates(df, by=None), tmp_path / "s.md").read_text()
    t = re.search(r"<table>(.*?)</table>", MarkdownIt("commonmark").enable("table").render(md), flags=re.S).group(1)
    rows = [[html.unescape(c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)]
            for r in re.findall(r"<tr>(.*?)</tr>", t, flags=re.S)]
    got = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert sorted(got) == sorted(df.school_id)
    for r in df.itertuples():
        assert int(got[r.school_id]["N PL"]) == r.n_treated and int(got[r.school_id]["N comparison"]) == r.n_comparison
        assert float(got[r.school_id]["SE"]) == pytest.approx(r.se, abs=5e-4)


def test_markdown_and_html_p_values_follow_the_report_and_excel(tmp_path):
    """The .md and .html tables print p as the report and the .xlsx do: three decimals, "< 0.001"
    below, more digits where three would sit on α (before 2026-12-04 they printed four decimals and
    "<0.0001", the .xlsx three)."""
    from scipy import stats

    z = stats.norm.isf(0.0496 / 2)  # a two-sided normal p of 0.0496
    df = pd.DataFrame({"school_id": ["a", "b", "c"], "estimate": [5.0 * 0.05, z * 0.05, 0.3 * 0.05],
                       "se": [0.05] * 3})
    r = school_effects_from_estimates(df, by=None)
    p = r.table.set_index("school")["pvalue"]
    assert p["a"] < 1e-5 and p["b"] == pytest.approx(0.0496, rel=1e-9)
    for ext in ("md", "html"):
        text = export_table(r, tmp_path / f"s.{ext}").read_text()
        assert "&lt; 0.001" in text or "< 0.001" in text
        assert "0.0496" in text and f"{p['c']:.3f}" in text and "0.0001" not in text


def test_excel_shades_significant_schools(tmp_path):
    df = pd.DataFrame({"school_id": list("abcdef"), "estimate": [-0.5, 0.6, 0.01, 0.02, 0.0, 0.03],
                       "se": [0.05] * 6})
    r = school_effects_from_estimates(df, by=None)
    p = export_table(r, tmp_path / "s.xlsx")
    ws = openpyxl.load_workbook(p)["All schools"]
    fills = {ws.cell(row=5 + i, column=1).value: ws.cell(row=5 + i, column=1).fill.fgColor.rgb for i in range(6)}
    assert fills["a"].endswith("FDE0DC") and fills["b"].endswith("DFF0D8") and fills["c"] in ("00000000", None)


def test_cli_schools(estimates_file, tmp_path):
    path, df = estimates_file
    out_x, out_md = tmp_path / "table.xlsx", tmp_path / "table.md"
    r = runner.invoke(app, ["schools", str(path), "--out", str(out_x), "--out", str(out_md), "--hartung-knapp"])
    assert r.exit_code == 0, r.output
    m = meta_analysis(df.estimate[:25], df.se[:25], "REML", hartung_knapp=True)
    assert f"{m.estimate:.4f}" in r.output and "Hartung-Knapp" in r.output
    assert "Meta-regression" in r.output and "years_implementing" in r.output
    assert out_x.exists() and out_md.exists() and "| PL000" in r.output
    assert openpyxl.load_workbook(out_x).sheetnames == ["Summary", "math", "reading"]
    # one provenance record beside the tables of one name: version, options, the input's SHA-256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md", "table.provenance.json", "table.xlsx"]
    rec = json.loads((tmp_path / "table.provenance.json").read_text())
    assert rec["kind"] == "pleval schools outputs" and rec["pleval_version"] == pleval.__version__
    assert rec["input"]["sha256"] == file_sha256(path) and rec["input"]["n_rows"] == len(df)
    assert rec["options"]["hartung_knapp"] is True and rec["options"]["method"] == "REML"
    assert f"wrote {tmp_path / 'table.provenance.json'}" in r.output.replace("\n", "")


def test_cli_schools_options_and_errors(estimates_file, tmp_path):
    path, df = estimates_file
    renamed = tmp_path / "renamed.csv"
    math = df[df.subject == "math"]
    math.rename(columns={"estimate": "g", "se": "g_se", "school_id": "name"}).to_csv(renamed, index=False)
    r = runner.invoke(app, ["schools", str(renamed), "--estimate", "g", "--se", "g_se", "--school", "name",
                            "--subject", "none", "--moderators", "", "--method", "dl", "-q"])
    assert r.exit_code == 0, r.output
    m = meta_analysis(math.estimate, math.se, "DL")
    assert f"{m.estimate:.4f}" in r.output and "k = 25" in r.output and "Meta-regression" not in r.output
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "-q"])
    assert r.exit_code == 2 and "more than once" in r.output
    first = df.dropna(subset=["estimate", "se"]).iloc[0]
    twice = int((df.school_id == first.school_id).sum())
    assert f"{df.dropna(subset=['estimate', 'se']).school_id.nunique():,} school(s) appear more than once (file row(s)" \
        in r.output and f"school(s) {first.school_id!r}" in r.output and "give one estimate per school" in r.output
    assert twice == 2
    r = runner.invoke(app, ["schools", str(path), "--estimate", "nope"])
    assert r.exit_code == 2 and "'nope'" in r.output
    r = runner.invoke(app, ["schools", str(path), "--out", str(path)])
    assert r.exit_code == 2 and "never overwrites" in r.output
    r = runner.invoke(app, ["schools", str(path), "--method", "XYZ"])
    assert r.exit_code == 2 and "method" in r.output


def test_cli_schools_new_tau2_estimators(tmp_path):
    """--method takes metafor's estimator names (ML, EB, HE, SJ, HS) and matches the API."""
    rng = np.random.default_rng(5)
    se = rng.uniform(0.05, 0.2, 15)
    df = pd.DataFrame({"school_id": range(15), "estimate": rng.normal(0.1, 0.1, 15) + se * rng.standard_normal(15), "se": se})
    path = tmp_path / "est.csv"
    df.to_csv(path, index=False)
    for method in ("ML", "sj", "HS"):
        r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--moderators", "", "--method", method, "-q"])
        assert r.exit_code == 0, r.output
        m = meta_analysis(df.estimate, df.se, method=method.upper())
        assert f"{m.estimate:.4f}" in r.output and f"{m.tau2:.4f}" in r.output


def test_cli_schools_influence_permutations_blup_prediction(estimates_file):
    """--influence, --permutations, --blup and --prediction print what the API computes."""
    from pleval.heterogeneity import (leave_one_out, leave_one_out_metareg, meta_regression, permutation_test,
                                      permutation_test_moderators)

    path, df = estimates_file
    mods = ["school_poverty", "years_implementing", "enrollment"]
    r = runner.invoke(app, ["schools", str(path), "--influence", "--permutations", "99", "--seed", "3", "--blup",
                            "--prediction", "t_k1", "-q"])
    assert r.exit_code == 0, r.output
    math = df[df.subject == "math"]
    m = meta_analysis(math.estimate, math.se, prediction="t_k1", hartung_knapp=True)  # pleval schools' default
    assert f"{m.pi_low:.4f} to {m.pi_high:.4f} (t(k-1))" in r.output
    inf = leave_one_out(m)
    assert f"the school that drives tau is {math.school_id.iloc[inf.drives_tau]}" in r.output
    mi = leave_one_out_metareg(meta_regression(math.estimate, math.se, math[mods], knapp_hartung=True))  # the default
    assert "Leave-one-out and influence, meta-regression (REML" in r.output and f"without it {mi.tau2_del[mi.drives_tau]:.4f}" in r.output
    p = permutation_test(m, n_perm=99, seed=3)
    assert f"permutation p = {p.pvalue:.4g}" in r.output
    mr = meta_regression(math.estimate, math.se, math[mods], knapp_hartung=True)
    pm = permutation_test_moderators(mr, n_perm=99, seed=3)
    assert f"QM = {pm.qm:.4f}, permutation p = {pm.qm_pvalue:.4g}" in r.output
    assert "BLUPs of the true school effects" in r.output and f"{mr.blup().blup.iloc[0]:.4f}" in r.output
    bad = runner.invoke(app, ["schools", str(path), "--prediction", "z"])
    assert bad.exit_code == 2 and "prediction" in bad.output


def test_cli_schools_with_a_school_left_out_of_the_meta_regression(estimates_file, tmp_path):
    """A school without a moderator value is left out of the meta-regression; --influence,
    --blup and --cluster then follow that fit's schools (they stopped with "labels has 30 entries
    for 29 schools" before)."""
    _, df = estimates_file
    d = df[df.subject == "math"].assign(district=lambda x: np.arange(len(x)) % 6)
    d.loc[d.index[4], "school_poverty"] = np.nan
    gone = d.school_id.iloc[4]
    path = tmp_path / "one_missing.csv"
    d.to_csv(path, index=False)
    with pytest.warns(PlevalWarning, match=f"1 school\\(s\\) with a moderator missing \\(school_poverty\\): '{gone}'"):
        r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--moderators", "school_poverty",
                                "--influence", "--blup", "--cluster", "district", "-q"])
    assert r.exit_code == 0, r.output
    blups = r.output.split("BLUPs of the true school effects (meta-regression)")[1].split("\n\n")[0]
    assert gone not in blups and d.school_id.iloc[5] in blups
    k = len(d) - 1
    assert f"Cluster-robust meta-regression (REML), k = {k}, 6 clusters (CR2, Satterthwaite df)" in r.output
    assert f"Leave-one-out and influence, meta-regression (REML + Knapp-Hartung), k = {k}" in r.output


def test_excel_every_cell_has_its_columns_format_and_its_rows_shading(tmp_path):
    """Each table cell's format is made once per column format and shading and given to every
    such cell: read back, every cell has its column's number format, the fill of its row (red,
    green or none), and the default font; the header row keeps its own style."""
    rng = np.random.default_rng(5)
    k = 40
    est = rng.normal(0, 0.4, k)
    est[:3] = [-0.9, 0.9, np.nan]  # significantly negative, significantly positive, no estimate
    df = pd.DataFrame({"school_id": [f"S{i:02d}" for i in range(k)], "estimate": est,
                       "se": rng.uniform(0.05, 0.3, k), "n_treated": rng.integers(20, 90, k),
                       "n_comparison": rng.integers(90, 400, k)})
    r = school_effects_from_estimates(df, by=None)
    ws = openpyxl.load_workbook(export_table(r, tmp_path / "s.xlsx"))["All schools"]
    formats = {h: f for _, h, f in export._NUMERIC}
    header = [c.value for c in ws[4]]
    assert all(c.font.bold and c.fill.fgColor.rgb.endswith("DDE4EE") for c in ws[4])
    t = r.table.set_index("school")
    alpha = float(r.options.get("alpha", 0.05))
    shades = set()
    for row in ws.iter_rows(min_row=5, max_row=4 + len(t)):
        school = row[0].value
        p, g = t.loc[school, "p_adjusted"], t.loc[school, "effect_size"]
        want = ("FDE0DC" if g < 0 else "DFF0D8") if p < alpha else None
        shades.add(want)
        for h, c in zip(header, row):
            assert c.number_format == formats.get(h, "@"), (school, h)
            assert (c.fill.fgColor.rgb[-6:] if c.fill.fill_type else None) == want, (school, h)
            assert not c.font.bold
    assert shades == {"FDE0DC", "DFF0D8", None} and len(t) >= k - 1


def _drawn_pixels(width: float) -> int:
    """Excel's pixels for a stored column width (ECMA-376 Part 1, §18.3.1.13; Calibri 11)."""
    return int(((256 * width + 128 // 7) / 256) * 7)


def test_excel_layout_fonts_widths_and_extra_columns(estimates_file, tmp_path):
    """The rest of the workbook's content, read back: the title (bold 13 pt) and pooled line
    above each table, its header row 30 pt high, frozen below and right of the school, filters
    over the table, every column as wide (in drawn pixels) as its header's width of 0.9
    character a letter, at least 9, the school and note columns as their longest entry; extra
    columns (a moderator, a cluster) as numbers and text; the notes below, bold and italic; the summary's
    number formats."""
    path, df = estimates_file
    d = pd.read_csv(path).assign(district=lambda x: np.where(x.school_poverty > 0.5, "east", "west"))
    r = school_effects_from_estimates(d, by="subject", moderators=["school_poverty"], cluster="district")
    wb = openpyxl.load_workbook(export_table(r, tmp_path / "e.xlsx"))
    assert wb.sheetnames == ["Summary", "math", "reading"]
    ws = wb["math"]
    assert ws["A1"].value.endswith("— math") and ws["A1"].font.b and ws["A1"].font.sz == 13
    assert ws["A2"].value.startswith("Pooled effect size") and not ws["A2"].font.b
    assert ws.row_dimensions[4].height == 30 and ws.freeze_panes == "B5"
    header = [c.value for c in ws[4]]
    n = int((df.subject == "math").sum())
    assert ws.auto_filter.ref == f"A4:{openpyxl.utils.get_column_letter(len(header))}{4 + n}"
    widths = {}
    for d in ws.column_dimensions.values():  # a range of equal columns is one entry
        widths.update({j: _drawn_pixels(d.width) for j in range(d.min, d.max + 1)})
    for j, h in enumerate(header, 1):
        want = max(0.9 * len(h), 9)
        if h in ("School", "Note"):
            longest = r.table[r.table.subject == "math"]["school" if h == "School" else "note"].astype(str).str.len().max()
            want = min(max(want, longest + 2), 60)
        assert widths[j] == _drawn_pixels(want), h
    math = df[df.subject == "math"].set_index("school_id")
    j, k = header.index("school_poverty"), header.index("district")
    for row in ws.iter_rows(min_row=5, max_row=4 + n):
        assert row[j].value == pytest.approx(math.loc[row[0].value, "school_poverty"], rel=1e-15)
        assert row[j].number_format == "General" and row[j].data_type == "n" and row[0].data_type == "s"
        assert row[k].value == ("east" if row[j].value > 0.5 else "west") and row[k].number_format == "General"
    assert ws.cell(row=6 + n, column=1).value == "Notes" and ws.cell(row=6 + n, column=1).font.b
    assert ws.cell(row=8 + n, column=1).value.startswith("1. ") and ws.cell(row=8 + n, column=1).font.i
    summary = wb["Summary"]
    assert summary.row_dimensions[3].height == 45 and summary["A1"].font.sz == 13
    formats = {h: f for _, h, f in export._SUMMARY}
    head = [c.value for c in summary[3]]
    for c in summary[4]:
        h = head[c.column - 1]
        assert c.number_format == ("@" if isinstance(c.value, str) else formats.get(h, "@")), h


def test_excel_strings_stay_text_and_a_group_named_summary(tmp_path):
    """School ids that look like formulas, links or numbers are written as the text they are;
    a group called "Summary" gets a sheet of its own beside the summary sheet."""
    ids = ["=1+2", "http://example.org/s", "007", "-5", "plain"]
    df = pd.DataFrame({"school_id": ids * 2, "subject": ["Summary"] * 5 + ["math"] * 5,
                       "estimate": [0.1, -0.2, 0.3, 0.0, 0.05] * 2, "se": [0.1] * 10})
    r = school_effects_from_estimates(df, by="subject")
    wb = openpyxl.load_workbook(export_table(r, tmp_path / "s.xlsx"))
    assert [n.lower() for n in wb.sheetnames] == ["summary", "summary (2)", "math"]
    for name in wb.sheetnames[1:]:
        cells = [row[0] for row in wb[name].iter_rows(min_row=5, max_row=9)]
        assert sorted(c.value for c in cells) == sorted(ids) and {c.data_type for c in cells} == {"s"}
        assert not wb[name]._hyperlinks


def test_cli_schools_reads_a_df_column(estimates_file, tmp_path):
    """A ``df`` column gives t(df) p-values (as pleval's own school table has them); ``--df none``
    the normal ones; the provenance records which."""
    _, df = estimates_file
    d = df[df.subject == "math"].assign(df=np.linspace(4, 40, (df.subject == "math").sum()))
    path = tmp_path / "with_df.csv"
    d.to_csv(path, index=False)
    out = tmp_path / "t.csv"
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--moderators", "", "-q", "--out", str(out)])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(out)
    want = school_effects_from_estimates(d, by=None).table
    np.testing.assert_allclose(got.pvalue, want.pvalue, rtol=1e-10)
    assert json.loads(out.with_name("t.provenance.json").read_text())["options"]["df"] == "df"
    r = runner.invoke(app, ["schools", str(path), "--subject", "none", "--moderators", "", "-q", "--df", "none",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    z = pd.read_csv(out)
    np.testing.assert_allclose(z.pvalue, 2 * stats.norm.sf(np.abs(d.estimate / d.se)), rtol=1e-6)
    assert json.loads(out.with_name("t.provenance.json").read_text())["options"]["df"] is None


def test_workbook_p_values_read_as_the_report_prints_them(tmp_path):
    """p columns show "< 0.001" below 0.001 and three decimals above, as the report and the
    terminal do, and the cells keep the values; "0.0000" showed p = 6.6e-20 as 0.0000 before
    2026-12-04."""
    df = pd.DataFrame({"school_id": ["A", "B", "C", "D"], "estimate": [2.0, 0.1, -0.2, 0.3],
                       "se": [0.1, 0.2, 0.2, 0.2], "n_treated": [50] * 4, "n_comparison": [200] * 4})
    r = school_effects_from_estimates(df, by=None)
    ws = openpyxl.load_workbook(export_table(r, tmp_path / "s.xlsx"))["All schools"]
    header = [c.value for c in ws[4]]
    j = header.index("p")
    cells = {row[0].value: row[j] for row in ws.iter_rows(min_row=5, max_row=8)}
    assert cells["A"].value < 1e-10 and cells["A"].value == pytest.approx(r.table.set_index("school").loc["A", "pvalue"])
    assert all(c.number_format == '[<0.001]"< 0.001";0.000' for c in cells.values())


def test_cli_schools_no_hartung_knapp_reaches_the_meta_regression():
    """--no-hartung-knapp also gives the meta-regression its z tests, as the API's
    knapp_hartung=False; before 2026-12-04 the meta-regression kept Knapp-Hartung whatever it said."""
    from pleval.heterogeneity import school_effects_from_estimates as sefe

    src = "sample_data/school_effects.csv"
    out = CliRunner().invoke(app, ["schools", src, "--moderators", "school_poverty", "--no-hartung-knapp"]).output
    assert "Meta-regression (REML), k = 40" in out and "Knapp-Hartung" not in out.split("Meta-regression")[1]
    res = sefe(pd.read_csv(src), by="subject", hartung_knapp=False, moderators=["school_poverty"])
    want = res.meta_regression(["school_poverty"], knapp_hartung=False)
    assert all(r.summary().splitlines()[2] in out for r in want.values())  # the QM line, chi-square
