"""pleval.report: the HTML report is self-contained and complete, the Markdown summary keeps its
numbers, run.toml reads back, and the outputs folder follows its rules (refuse foreign
folders, never overwrite the input, replace only a previous pleval run's files)."""

from __future__ import annotations

import json
from pathlib import Path
import re
from markupsafe import escape as html_escape
import tomllib
import warnings
from xml.sax.saxutils import unescape

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval import findings, plots, report
from pleval.report import blocks, sections
from pleval.errors import PlevalError, PlevalWarning
from pleval.simulate import simulate_cluster_rct

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"


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
    out = report.save(ev, root / "out", input_path=str(src), svg=True)
    return out, src


def test_html_sections_sentence_and_embedded_images(saved, ev):
    out, _ = saved
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(plots.evaluation_figures(ev)) == len(list((out / "plots").glob("*.png")))
    assert all(len(b) > 10_000 for b in imgs)
    assert not re.search(r"<(script|link)\b", html) and "http://" not in html and "https://" not in html
    for s in ev.subjects:
        assert html_escape(ev.sentence(s)) in html
    for needle in ("Balance and WWC verdicts", "attrition (students)", "School table — math", "prediction interval",
                   "Placebo schools", "not percentage points"):
        assert needle in html, needle
    for c in (sections.caveat_percentile(), sections.CAVEAT_RCT, sections.CAVEAT_SCHOOL):
        assert html_escape(c) in html
    # Verdicts carry a colour class; the pretest row of each subject is listed.
    assert html.count("baseline equivalence: pretest") == len(ev.subjects) * 2  # glance cards + verdict table
    assert re.search(r'class="(ok|warn|bad)">(satisfied|low|not)', html)


def _pdf_images(path) -> list[tuple[int, float]]:
    """(pixel width, drawn width in points) of every image drawn in a PDF, from the content
    streams (the transformation matrix in force at each ``Do``)."""
    from pypdf import PdfReader

    out = []
    for page in PdfReader(path).pages:
        xobjects = page["/Resources"].get("/XObject", {})
        ops = page.get_contents().operations
        ctm = None
        for operands, op in ops:
            if op == b"cm":
                ctm = [float(v) for v in operands]
            elif op == b"Do" and operands[0] in xobjects and xobjects[operands[0]].get("/Subtype") == "/Image":
                out.append((int(xobjects[operands[0]]["/Width"]), ctm[0]))
    return out


def test_pdf_has_the_html_sections_and_print_resolution_figures(saved, ev):
    """report.pdf: the same sections as report.html (one bookmark each, each numbered section on
    a new page), the same figures, drawn at 200 dpi or finer; PNG at 200 dpi and SVG on disk."""
    from PIL import Image
    from pypdf import PdfReader

    out, _ = saved
    html = (out / "report.html").read_text()
    reader = PdfReader(out / "report.pdf")
    titles = [o.title for o in reader.outline]
    html_titles = re.findall(r"<section id=\"[^\"]+\"[^>]*>\s*<h2>([^<]+)</h2>", html)
    assert len(titles) == len(html_titles) == len(sections.build(ev, plots.evaluation_figures(ev))) >= 8
    assert titles == [t.replace("&amp;", "&") for t in html_titles]
    starts = [i for i, p in enumerate(reader.pages) for t in titles[1:] if (p.extract_text() or "").find(t) >= 0]
    assert len(set(starts)) == len(titles) - 1  # every numbered section starts on a page of its own
    text = " ".join(p.extract_text() for p in reader.pages)
    for s in ev.subjects:
        assert "statistically significant" in text and f"School table — {s}" in text
    names = sorted(plots.evaluation_figures(ev))
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == sorted(p.stem for p in (out / "plots").glob("*.svg")) == names
    widths = {}
    for name in names:
        img = Image.open(out / "plots" / f"{name}.png")
        assert img.info["dpi"] == pytest.approx((200, 200), abs=0.5)
        widths[name] = img.size[0]
        assert (out / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    drawn = _pdf_images(out / "report.pdf")
    assert sorted(px for px, _ in drawn) == sorted(widths.values())  # every figure, at full resolution
    assert all(px / (pt / 72) >= 200 - 0.5 for px, pt in drawn)  # never stretched below 200 dpi


def test_headline_says_whether_the_effect_is_significant(ev):
    cards = {b.title: b for b in sections.glance(ev, ()).blocks}
    for s in ev.subjects:
        es = ev.effect(s).effect_size
        status = cards[s.capitalize()].status
        if es.ci_low <= 0 <= es.ci_high:
            assert status.startswith("Not statistically significant")
        else:
            assert status.startswith("Statistically significant")
    fake = ev.effect("math").effect_size
    assert findings.significance(type(fake)(**{**fake.__dict__, "ci_low": -0.1, "ci_high": 0.2})).startswith("not ")
    assert findings.significance(type(fake)(**{**fake.__dict__, "ci_low": 0.01, "ci_high": 0.2})).startswith(
        "statistically significant: the 95% confidence interval lies above")


def test_school_table_columns_follow_the_frame(ev):
    f = ev.schools[ev.schools["subject"] == "math"].reset_index(drop=True)
    f = f.drop(columns=[c for c in f.columns if "calibrated" in c])  # first without the placebo calibration
    ctx = sections.TableContext(0.95, 0.05)
    t = sections.school_table(f, ctx)
    assert {"significant (α = 0.05)", "shrunken 95% interval", "adjusted p"} <= set(t.columns)
    assert "note" not in t.columns or (t["note"] != "").any()  # empty columns are left out
    top = f.sort_values("effect_size", ascending=False).iloc[0]
    assert t["shrunken 95% interval"].iloc[0] == f"{top['shrunk_es_ci_low']:+.3f} to {top['shrunk_es_ci_high']:+.3f}"
    sig = t["significant (α = 0.05)"]
    raw = (f.sort_values("effect_size", ascending=False)["pvalue"] < 0.05).to_numpy()
    assert list(sig != "no") == list(raw)  # something passes exactly when the raw test does
    assert not any("calibrated" in c for c in t.columns)  # no calibrated columns in this frame...
    cal = f.assign(p_calibrated=1.0, p_calibrated_adjusted=1.0, ci_low_calibrated=-1.0, ci_high_calibrated=1.0)
    t2 = sections.school_table(cal, ctx)  # ...and they appear when the frame has them
    assert {"calibrated p", "calibrated 95% CI"} <= set(t2.columns)
    assert not t2["significant (α = 0.05)"].str.contains("placebo-calibrated").any()
    note = sections.school_table_note(cal, ctx, "Benjamini–Hochberg")
    assert "calibrated" in note and "shrunken" in note and "Benjamini–Hochberg" in note
    # the groups the PDF splits the table along, named by what they hold
    assert sections.school_column_groups(t, ctx) == (("the school's own estimate", t.columns[1]),
                                                     ("shrunken estimates", "shrunken ES"))
    assert sections.school_column_groups(t2, ctx) == (("the school's own estimate", t2.columns[1]),
                                                      ("placebo-calibrated and shrunken estimates", "calibrated 95% CI"))
    own = list(t2.columns).index("calibrated 95% CI")
    assert {"significant (α = 0.05)", "MDES (SD)", "adjusted p"} <= set(t2.columns[:own])
    assert not any("shrunken" in c or "calibrated" in c for c in t2.columns[:own])


def test_markdown_keeps_signs_and_tables(saved, ev):
    out, _ = saved
    md = (out / "summary.md").read_text()
    e = ev.effect("math")
    assert f"{e.effect_size.estimate:+.3f}" in md  # not re-parsed into an unsigned number
    assert "| subject" in md and "### School table — math" in md
    assert "plots/forest_math.png" in md
    for s in ev.subjects:
        assert ev.sentence(s) in md


def test_markdown_tables_render_cell_for_cell_with_a_pipe_in_a_cell(ev):
    """Every summary.md table, read by a GFM table parser (markdown-it, as GitHub renders it),
    has the header and cells of its block, a ``|`` in a cell included (the balance flag
    "|SMD| > 0.1", a school named "North|South"). Before 2026-12-04 the ``|`` was not escaped: the
    flag cell read empty and the numbers after "North|South" sat one column to the right."""
    import html

    from markdown_it import MarkdownIt

    piped = blocks.Table(pd.DataFrame({"school | name": ["North|South", "East"], "effect size": ["+0.101", "-0.2"],
                                       "flag": ["|SMD| > 0.1, worse after matching", ""]}), title="piped")
    secs = list(sections.build(ev, [])) + [blocks.Section("piped", "Piped", (piped,))]
    rendered = MarkdownIt("commonmark").enable("table").render(report.render_markdown(ev, {}, sections=secs))
    tables = [b for s in secs for b in s.blocks if b.kind == "table" and len(b.frame)]
    got = re.findall(r"<table>(.*?)</table>", rendered, flags=re.S)
    assert len(got) == len(tables)
    for b, t in zip(tables, got):
        rows = [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)]
                for r in re.findall(r"<tr>(.*?)</tr>", t, flags=re.S)]
        assert rows == [b.columns] + b.rows(), b.title


def test_table_right_aligned_columns_and_rows():
    """A column aligns right when every cell is a number, a range ("-0.1 to +0.3") or a dash,
    judged cell by cell ("to" a word of its own, the cell's edge a word's edge): matched on the
    column's cells one space apart, the same answer; `rows()` are the cells as text, row by row."""
    cells = ["+0.1 to −0.2", "to", "5to", "to5", "(3/4)", "< 0.001", "—", "", "x", "1e-3", "12%", "toto", "to to"]
    for a in cells:
        for b in cells:
            frame = pd.DataFrame({"c": [a, b], "n": [1.5, -2.0]})
            one = all(re.fullmatch(r"[\d.,+\-−<>%()/—\s]*", re.sub(r"\bto\b", "", v)) for v in (a, b))
            assert blocks.Table(frame).right_aligned() == [one, True], (a, b)
            assert blocks.Table(frame).rows() == [[a, "1.5"], [b, "-2.0"]]
    assert blocks.Table(pd.DataFrame({"c": []})).right_aligned() == [True]
    assert blocks.Table(pd.DataFrame(index=range(2))).rows() == [[], []]


def test_markdown_pipe_tables_are_tabulates():
    """summary.md's tables of plain strings, written directly (`to_markdown._pipe_table`), are
    the text `markdown_table` (tabulate) makes: cells stripped, wide characters, a ``|``
    escaped, empty and "True" cells, duplicate headers; other frames (numbers, cells of several
    lines, terminal colours, control characters) are left to tabulate."""
    from pleval._text import markdown_table
    from pleval.report import to_markdown

    frames = [
        pd.DataFrame({"a|b": [" x ", "τ ≤ −0.1", "", "True", "漢字", "a|b"], "n": ["1", "2.5", " ", "x\u2009", "—", "<0.001"]}),
        pd.DataFrame({"a": ["x"]}),
        pd.DataFrame([["1", "False"], ["", "-0.00"]], columns=["same", "same"]),
    ]
    for f in frames:
        assert to_markdown._pipe_table(f) == markdown_table(f, disable_numparse=True)
    for f in (pd.DataFrame({"a": [1.5]}), pd.DataFrame({"a": ["two\nlines"]}), pd.DataFrame({"a": ["\x1b[31mred\x1b[0m"]}),
              pd.DataFrame({"a": ["\x01"]}), pd.DataFrame({1: ["x"]})):
        assert to_markdown._pipe_table(f) is None and to_markdown._table(f) == markdown_table(f, disable_numparse=True)


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
    report.save(ev, out)
    (out / "mine.txt").write_text("keep me")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        math_only = pleval.estimate(sim.data, design="rct", subject="math", placebo=False)
    report.save(math_only, out)  # a previous pleval output: allowed without force
    names = {p.name for p in (out / "plots").glob("*.png")}
    assert names and all(n.endswith("_math.png") for n in names)  # stale reading plots removed
    assert not (out / "placebo.csv").exists()  # stale table removed
    assert (out / "mine.txt").read_text() == "keep me"  # not ours: left alone
    assert set(pd.read_csv(out / "overall.csv")["subject"]) == {"math"}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.txt").write_text("x")
    with pytest.raises(PlevalError, match="not a previous pleval output"):
        report.save(ev, foreign)
    assert [p.name for p in foreign.iterdir()] == ["a.txt"]
    with pytest.raises(PlevalError, match="not a folder"):
        report.save(ev, foreign / "a.txt")


def test_never_overwrites_the_input(ev, sim, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    src = out / "balance.csv"  # the input happens to have an output's name
    sim.data.to_csv(src, index=False)
    before = src.read_bytes()
    with pytest.raises(PlevalError, match="overwrite the input"):
        report.save(ev, out, force=True, input_path=str(src))
    assert src.read_bytes() == before
    with pytest.raises(PlevalError, match="not a folder"):
        report.save(ev, src, force=True, input_path=str(src))


def test_table_alignment_and_verdict_classes():
    t = blocks.Table(pd.DataFrame({"school": ["a<b"], "effect size": ["+0.123"], "95% CI": ["-0.1 to +0.3"],
                                   "p": ["< 0.001"], "note": ["few students"]}))
    assert t.right_aligned() == [False, True, True, True, False]
    assert blocks.verdict_class("satisfied") == "ok" and blocks.verdict_class("not satisfied") == "bad"
    assert blocks.verdict_class("satisfied with statistical adjustment") == "warn"
    assert blocks.verdict_class("high") == "bad"


def test_text_and_fragment(ev):
    text = ev.summary()
    assert "ITT" in text and "Percentile points are shifts in rank" in text
    frag = ev._repr_html_()
    assert frag.startswith("<div class='pleval-result'>") and "Evaluation" in frag


def _imports(path, package: list[str]) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


def test_data_flow_runs_one_way():
    """The report reads an Evaluation: no module outside pleval.report and the CLI imports it."""
    from pathlib import Path

    root = Path(pleval.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in ("report", "cli"):
            continue
        package = ["pleval", *rel.parts[:-1]]
        if any(n == "pleval.report" or n.startswith("pleval.report.") for n in _imports(path, package)):
            offenders.append(str(rel))
    assert offenders == []
    assert "pleval.findings" in _imports(root / "estimate.py", ["pleval"])  # the resolver does see relative imports


def test_rating_on_the_first_screen_in_csvs_and_provenance(saved, ev):
    out, _ = saved
    html = (out / "report.html").read_text()
    glance = html[html.index('id="glance"'):html.index('id="data"')]
    standards = html[html.index('id="standards"'):html.index('id="overall"')]
    for s, r in ev.ratings.items():
        assert f"WWC rating: <span class=\"{blocks.verdict_class(r.wwc_rating)}\">{r.wwc_rating}</span>" in glance
        assert f"ESSA tier: <span class=\"{blocks.verdict_class(r.essa_tier)}\">{r.essa_tier}</span>" in glance
        assert str(html_escape("; ".join(r.reasons))) in glance
        for step in r.steps:
            assert str(html_escape(step.finding)) in standards
    assert blocks.verdict_class("Meets WWC Standards Without Reservations") == "ok"
    assert blocks.verdict_class("Meets WWC Standards With Reservations") == "warn"
    assert blocks.verdict_class("Does Not Meet WWC Standards") == "bad"
    rating = pd.read_csv(out / "rating.csv")
    assert set(rating["subject"]) == set(ev.subjects)
    assert rating[rating["step"] == "rating"].set_index("subject")["result"].to_dict() == {
        s: r.wwc_rating for s, r in ev.ratings.items()}
    overall = pd.read_csv(out / "overall.csv")
    assert overall.groupby("subject")["essa_tier"].first().to_dict() == {s: r.essa_tier for s, r in ev.ratings.items()}
    prov = json.loads((out / "provenance.json").read_text())
    assert {s: v["wwc_rating"] for s, v in prov["rating"].items()} == {s: r.wwc_rating for s, r in ev.ratings.items()}
    md = (out / "summary.md").read_text()
    assert "Evidence standards: WWC rating and ESSA tier" in md
    assert all(r.wwc_rating in md and r.reasons[0] in md for r in ev.ratings.values())


def test_pdf_continues_a_figure_taller_than_a_page_between_labels():
    """A forest plot of 70 schools keeps its print size in the PDF: it is cut into page-high
    bands where the labels column is blank, not shrunk to one page."""
    import io

    import numpy as np
    from PIL import Image

    from pleval.report import to_pdf

    rng = np.random.default_rng(3)
    k = 70
    names = [f"School {i:02d}" + ("" if i % 7 else " — a long campus name") for i in range(k)]
    df = pd.DataFrame({"school": names, "estimate": rng.normal(0.1, 0.15, k), "se": rng.uniform(0.05, 0.12, k)})
    png = plots.to_png(plots.forest(df), dpi=200)
    im = Image.open(io.BytesIO(png))
    st = to_pdf._styles(to_pdf._fonts())
    bands = [f for f in to_pdf._figure(png, "caption", 200, st) if isinstance(f, to_pdf._Picture)]
    assert len(bands) >= 2
    passed = to_pdf._PassedPNG.of(png)
    assert all(b.image.data == passed.data for b in bands)  # the PNG as it is, each band its rows of it
    assert [b.rows[2] for b in bands] == [im.size[1]] * len(bands)
    cuts = [b.rows[:2] for b in bands]  # the bands are the figure
    assert cuts == to_pdf._cuts(im, int((to_pdf.HEIGHT - 40) / (to_pdf.WIDTH / im.size[0])))
    assert cuts[0][0] == 0 and cuts[-1][1] == im.size[1] and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
    ink = np.asarray(im.convert("L")) < 246
    lines = ink.mean(axis=0) >= 0.3  # vertical lines and bands run through every row
    assert all(not ink[c, ~lines].any() for _, c in cuts[:-1])  # nothing else is cut: no label, number, marker
    labels = ink[:, : im.size[0] // 10]  # the long labels' start: text rows
    assert all(not labels[c].any() for _, c in cuts[:-1])
    assert all(b.drawHeight <= to_pdf.HEIGHT - 40 for b in bands)
    assert all(b.drawWidth == pytest.approx(to_pdf.WIDTH) for b in bands)  # the page width: >= 200 dpi


def test_pdf_cuts_a_tall_translucent_figure_into_decoded_bands():
    """A figure taller than a page that cannot go into the PDF as it is (alpha that is not
    opaque) is decoded and cut into bands of its pixels, which together are the figure."""
    import io

    import numpy as np
    from PIL import Image

    from pleval.report import to_pdf

    rgba = np.full((6000, 400, 4), 255, np.uint8)
    rgba[::50, :, :3] = 0
    rgba[:, :10, 3] = 128
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    bands = [f for f in to_pdf._figure(buf.getvalue(), "caption", 200, to_pdf._styles(to_pdf._fonts()))
             if isinstance(f, to_pdf._Picture)]
    assert len(bands) >= 2 and all(b.rows is None and b.image.mode == "RGBA" for b in bands)
    assert (np.concatenate([np.asarray(b.image) for b in bands]) == rgba).all()


def test_pdf_bands_of_a_tall_figure_show_their_rows_of_the_one_image(ev):
    """A figure cut across pages is one image in report.pdf (its PNG's data as it is, not a
    compressed copy per band): each band draws it at the figure's scale, clipped to a box that
    shows exactly that band's pixel rows, the bands in order and together the whole figure."""
    import io

    import numpy as np
    from PIL import Image
    from pypdf import PdfReader

    from pleval.report import to_pdf

    rng = np.random.default_rng(4)
    k = 90
    df = pd.DataFrame({"school": [f"S{i:02d}" for i in range(k)], "estimate": rng.normal(0.1, 0.15, k),
                       "se": rng.uniform(0.05, 0.12, k)})
    png = plots.to_png(plots.forest(df), dpi=200)
    height = Image.open(io.BytesIO(png)).size[1]
    section = [blocks.Section("f", "Figure", (blocks.Figure("forest", "a tall forest plot"),))]
    pdf = to_pdf.render_pdf(ev, {"forest": png}, dpi=200, sections=section)
    assert pdf.count(to_pdf._PassedPNG.of(png).data) == 1

    def times(m, n):  # PDF matrices [a b c d e f]: m then n
        return [m[0] * n[0] + m[1] * n[2], m[0] * n[1] + m[1] * n[3], m[2] * n[0] + m[3] * n[2],
                m[2] * n[1] + m[3] * n[3], m[4] * n[0] + m[5] * n[2] + n[4], m[4] * n[1] + m[5] * n[3] + n[5]]

    shown = []  # per band: (pixel row at the clip's top, at its bottom), from where the image lands
    for page in PdfReader(io.BytesIO(pdf)).pages:
        ctm, stack, clip = [1, 0, 0, 1, 0, 0], [], None
        for operands, op in page.get_contents().operations:
            if op == b"q":
                stack.append((ctm, clip))
            elif op == b"Q":
                ctm, clip = stack.pop()
            elif op == b"cm":
                ctm = times([float(v) for v in operands], ctm)
            elif op == b"re":
                x, y, w, h = (float(v) for v in operands)
                assert ctm[1] == ctm[2] == 0
                clip = (ctm[4] + ctm[0] * x, ctm[5] + ctm[3] * y, ctm[0] * w, ctm[3] * h)
            elif op == b"Do":
                y0, d = ctm[5], ctm[3]  # the image's bottom edge and height on the page
                row = lambda yy: (y0 + d - yy) / d * height  # noqa: E731  pixel row (from the top) at yy
                assert clip is not None and clip[0] == pytest.approx(ctm[4]) and clip[2] == pytest.approx(ctm[0])
                shown.append((row(clip[1] + clip[3]), row(clip[1])))
    assert len(shown) >= 2
    px = 0.01  # a hundredth of a pixel: the PDF writes numbers to a few decimals
    assert shown[0][0] == pytest.approx(0, abs=px) and shown[-1][1] == pytest.approx(height, abs=px)
    assert all(a[1] == pytest.approx(b[0], abs=px) for a, b in zip(shown, shown[1:]))  # nothing lost or shown twice
    assert all(r == pytest.approx(round(r), abs=px) for band in shown for r in band)  # cut between pixel rows


def test_pdf_table_cells_break_their_lines_once_and_lay_out_the_same(ev, monkeypatch):
    """A long table's wrapping cells (reportlab wraps each again to measure rows, to split the
    table at every page and to draw it) break their lines once each, and report.pdf is the
    same bytes as when every wrap breaks them again."""
    from reportlab.platypus import Paragraph as RLParagraph

    from pleval.report import to_pdf

    n = 300
    frame = pd.DataFrame({f"column {j}": [f"row {i} cell {j} with words to wrap" for i in range(n)] for j in range(12)})
    section = [blocks.Section("t", "Table", (blocks.Table(frame, title="Long"),))]
    broken = []
    breaks = RLParagraph.breakLines

    def counted(self, width):
        if isinstance(self, to_pdf._CellParagraph):
            broken.append(self)
        return breaks(self, width)

    monkeypatch.setattr(RLParagraph, "breakLines", counted)
    monkeypatch.setattr(to_pdf, "_STRING_CELLS", False)  # every cell a Paragraph
    once = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
    cells = len(broken)
    assert cells >= 12 * n and len(set(map(id, broken))) == cells  # every cell a Paragraph, broken once
    broken.clear()
    monkeypatch.setattr(to_pdf._CellParagraph, "wrap", RLParagraph.wrap)
    again = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
    assert len(broken) > 2 * cells  # what reportlab does unaided
    assert once == again


def test_pdf_laid_out_before_its_figures_is_the_same_pdf(saved, ev):
    """`to_pdf.layout` lays the report out without any figure, each figure block holding its
    figure's place in the sections' order; `render_pdf` with that story is the PDF it makes from
    the sections, and the one `report.save` wrote (its figure process lays the tables out
    before it draws)."""
    from pleval.report import to_pdf
    from pleval.report.early import PRINT_DPI

    out, _ = saved
    names = list(plots.evaluation_figure_makers(ev))
    images = {k: (out / "plots" / f"{k}.png").read_bytes() for k in names}
    secs = sections.build(ev, names)
    story = to_pdf.layout(ev, secs)
    held = [f.name for f in story if isinstance(f, blocks.Figure)]
    assert held == [b.name for s in secs for b in s.blocks if b.kind == "figure"] and sorted(held) == sorted(names)
    pdf = to_pdf.render_pdf(ev, images, dpi=PRINT_DPI, story=story)
    assert pdf == to_pdf.render_pdf(ev, images, dpi=PRINT_DPI, sections=secs) == (out / "report.pdf").read_bytes()


def test_pdf_tables_row_heights_are_reportlabs(ev, monkeypatch):
    """The row heights given to reportlab (:func:`to_pdf._row_heights`) are those it measures
    unaided: a table of several pages with string cells of one and several lines and Paragraph
    cells (runs of spaces, bold rows) gives the same report.pdf, byte for byte, with and
    without them, drawn as strings or every cell as a Paragraph."""
    from pleval.report import to_pdf

    n = 150
    frame = pd.DataFrame({"school": [f"S{i:03d}" + ("  two  spaces" if i % 7 == 0 else "") for i in range(n)],
                          "estimate": [f"+0.{i:03d} to +0.{i + 1:03d}" for i in range(n)],
                          **{f"column {j}": [" ".join(["word"] * (1 + (i * j) % 9)) for i in range(n)] for j in range(6)}})
    section = [blocks.Section("t", "Table", (blocks.Table(frame, title="Long", bold=[i % 10 == 0 for i in range(n)]),))]
    measured = to_pdf._Grid

    def unaided(*args, rowHeights=None, **kw):
        assert rowHeights is not None and len(rowHeights) == len(args[0])
        return measured(*args, **kw)

    for strings in (True, False):
        monkeypatch.setattr(to_pdf, "_STRING_CELLS", strings)
        given = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
        with monkeypatch.context() as m:
            m.setattr(to_pdf, "_Grid", unaided)
            assert to_pdf.render_pdf(ev, {}, dpi=200, sections=section) == given
        assert len(_pdf_texts(given)) > 3 * n


def _cell_text(cell) -> str:
    """The text of a cell of a table laid out by ``to_pdf._table`` (a string of lines or a
    Paragraph), its words one space apart."""
    text = cell if isinstance(cell, str) else unescape(re.sub(r"<[^>]*>", "", cell.text))
    return " ".join(text.split())


def test_pdf_table_font_size_is_the_largest_that_fits_and_too_wide_tables_are_split():
    """A table takes the largest of the font sizes at which it fits (as trying each in turn). One
    that does not fit at the smallest size with every word whole is printed in parts: every
    column once, after the first (the key), which leads every part, all parts at the largest
    size at which each fits, the table's note under the last."""
    from pleval.report import to_pdf

    font, st = to_pdf._fonts(), to_pdf._styles(to_pdf._fonts())
    widths = to_pdf._widths
    for ncol, words in ((3, 2), (11, 2), (14, 3), (40, 1)):
        frame = pd.DataFrame({f"column {j} " + "header " * words: [f"+0.{i}{j} to +0.{j}{i} " + "word " * words
                                                                     for i in range(5)] for j in range(ncol)})
        table = blocks.Table(frame, title="T", note="the note")
        laid = to_pdf._table(table, font, st)
        grids = [f for f in laid if isinstance(f, to_pdf.RLTable)]
        notes = [f.text for f in laid if isinstance(f, to_pdf.Paragraph) and f.style.name == "note"]
        heads = [[_cell_text(c) for c in g._cellvalues[0]] for g in grids]
        fits = [z for z in to_pdf.TABLE_FONT_SIZES
                if widths(table.rows(), table.columns, table.right_aligned(), [False] * 5, font, z) is not None]
        if fits:
            assert len(grids) == 1 and grids[0]._cellStyles[1][0].fontsize == fits[0] and notes == ["the note"]
            continue
        assert len(grids) > 1 and notes[-1] == "the note" and all("part" in n for n in notes[:-1])
        columns = [" ".join(c.split()) for c in table.columns]
        assert all(h[0] == columns[0] for h in heads)  # the key leads every part...
        assert [c for h in heads for c in h[1:]] == columns[1:]  # ...and every other column is in one part
        size = grids[0]._cellStyles[1][0].fontsize
        assert all(g._cellStyles[1][0].fontsize == size for g in grids)
        parts = [[columns.index(c) for c in h] for h in heads]
        right = table.right_aligned()
        sub = [([table.columns[j] for j in p], [[r[j] for j in p] for r in table.rows()], [right[j] for j in p])
               for p in parts]
        assert all(widths(r, h, n, [False] * 5, font, size) is not None for h, r, n in sub)  # each part fits...
        assert all(any(widths(r, h, n, [False] * 5, font, z) is None for h, r, n in sub)
                   for z in to_pdf.TABLE_FONT_SIZES if z > size)  # ...and not all at a larger size


def test_html_reads_each_tables_columns_once(ev, monkeypatch):
    """report.html takes a table's column names once per table, not once per cell (each time a
    list made from the frame's columns: most of report.html's time with 414 school rows)."""
    from pleval.report import to_html

    frame = pd.DataFrame({f"c{j}": [f"{i}.{j}" for i in range(50)] for j in range(6)})
    section = [blocks.Section("t", "Table", (blocks.Table(frame, title="T"),))]
    monkeypatch.setattr(to_html, "build", lambda *a, **k: section)
    calls = []
    columns = blocks.Table.columns
    monkeypatch.setattr(blocks.Table, "columns", property(lambda t: calls.append(1) or columns.fget(t)))
    html = to_html.render_html(ev, {})
    assert len(calls) == 1 and html.count("<td") == 50 * 6 and html.count("<th") == 6


def test_every_format_refuses_a_block_it_cannot_lay_out(ev, monkeypatch):
    """A new kind of block must be given a layout in every format, not dropped silently."""
    from dataclasses import dataclass, field

    from pleval.report import to_html, to_markdown, to_pdf

    @dataclass(frozen=True)
    class Odd:
        kind: str = field(default="odd")

    odd = [blocks.Section("odd", "Odd", (Odd(),))]
    for module, render in ((to_html, lambda: to_html.render_html(ev, {})),
                           (to_markdown, lambda: to_markdown.render_markdown(ev, {})),
                           (to_pdf, lambda: to_pdf.render_pdf(ev, {}, dpi=200))):
        monkeypatch.setattr(module, "build", lambda *a, **k: odd)
        with pytest.raises(TypeError, match="no layout for a 'odd' block"):
            render()


def test_pdf_streams_are_binary_and_reportlab_setting_restored(saved):
    """report.pdf's streams are Flate only (no ASCII85 layer; reportlab's encoder for it is pure
    Python), its figures decode to the PNGs on disk, and reportlab's global setting is left as
    it was."""
    import io

    import numpy as np
    from PIL import Image
    from pypdf import PdfReader
    from reportlab import rl_config

    out, _ = saved
    raw = (out / "report.pdf").read_bytes()
    assert b"/ASCII85Decode" not in raw and b"/FlateDecode" in raw and b"/SMask" not in raw
    assert rl_config.useA85 == 1
    pngs = [np.asarray(Image.open(p).convert("RGB")) for p in (out / "plots").glob("*.png")]
    seen = 0
    for page in PdfReader(out / "report.pdf").pages:
        for img in page.images:
            im = np.asarray(Image.open(io.BytesIO(img.data)).convert("RGB"))
            same_size = [ref for ref in pngs if ref.shape == im.shape]
            if same_size:  # (figures taller than a page are cut into bands)
                assert any((im == ref).all() for ref in same_size)
                seen += 1
    assert seen >= 1


def test_pdf_takes_the_rgb_pngs_as_they_are(saved):
    """The report's figures are RGB PNGs; each that fits a page goes into report.pdf as it is:
    its compressed rows are the image stream (Flate with PNG predictors), which a PDF reader
    (pypdf) decodes to the PNG's pixels. A PNG with alpha, a palette or transparency is
    decoded instead."""
    import io

    import numpy as np
    from PIL import Image
    from pypdf import PdfReader

    from pleval.report import to_pdf

    out, _ = saved
    raw = (out / "report.pdf").read_bytes()
    pngs = {p.name: p.read_bytes() for p in (out / "plots").glob("*.png")}
    passed = {k: to_pdf._PassedPNG.of(v) for k, v in pngs.items()}
    assert passed and all(p is not None for p in passed.values())
    inside = [k for k, p in passed.items() if p.data in raw]
    assert inside and b"/Predictor 15" in raw
    decoded = [np.asarray(Image.open(io.BytesIO(img.data)).convert("RGB"))
               for page in PdfReader(out / "report.pdf").pages for img in page.images]
    for k in inside:
        ref = np.asarray(Image.open(io.BytesIO(pngs[k])).convert("RGB"))
        assert any(d.shape == ref.shape and (d == ref).all() for d in decoded)
    for mode in ("RGBA", "P", "L"):
        buf = io.BytesIO()
        Image.new(mode, (4, 3)).save(buf, format="PNG")
        assert to_pdf._PassedPNG.of(buf.getvalue()) is None
    buf = io.BytesIO()
    Image.new("RGB", (4, 3)).save(buf, format="PNG", transparency=(0, 0, 0))
    assert to_pdf._PassedPNG.of(buf.getvalue()) is None


def test_pdf_figures_decode_by_the_letter_of_the_pdf_filters(saved):
    """Each figure image of report.pdf decodes to its PNG's pixels when its filters are read as
    PDF 32000-1 §7.3.8.2 says: a ``/Filter`` array takes a ``/DecodeParms`` array of the same
    length, a single filter name a dictionary. (A filter array with a lone dictionary leaves
    the PNG predictor unapplied in strict readers such as poppler: every figure sheared.)"""
    import io
    import zlib

    import numpy as np
    from PIL import Image
    from pypdf import PdfReader
    from pypdf.generic import ArrayObject

    def predictor_rows(data: bytes, width: int) -> np.ndarray:  # PNG filters None/Sub/Up (what pleval writes: None)
        stride = 3 * width + 1
        rows = np.frombuffer(data, np.uint8).reshape(-1, stride)
        assert (rows[:, 0] == 0).all()
        return rows[:, 1:].reshape(len(rows), width, 3)

    out, _ = saved
    pngs = [np.asarray(Image.open(p).convert("RGB")) for p in (out / "plots").glob("*.png")]
    checked = 0
    for page in PdfReader(out / "report.pdf").pages:
        for xobj in page["/Resources"].get("/XObject", {}).values():
            xobj = xobj.get_object()
            if xobj.get("/Subtype") != "/Image" or "/DecodeParms" not in xobj:
                continue
            filters, parms = xobj["/Filter"], xobj["/DecodeParms"]
            if isinstance(filters, ArrayObject):
                assert isinstance(parms, ArrayObject) and len(parms) == len(filters)
                filters, parms = filters[0], parms[0]
            assert filters == "/FlateDecode" and parms["/Predictor"] == 15 and parms["/Columns"] == xobj["/Width"]
            pixels = predictor_rows(zlib.decompress(xobj._data), int(xobj["/Width"]))
            assert any(ref.shape == pixels.shape and (ref == pixels).all() for ref in pngs)
            checked += 1
    assert checked >= 1


def test_pdf_draws_opaque_figures_without_a_soft_mask():
    """A figure whose alpha channel is opaque everywhere (the report's, on white) goes to the
    PDF as RGB, the same pixels, without a soft mask; a translucent one keeps its alpha."""
    import io

    import numpy as np
    from PIL import Image

    from pleval.report import to_pdf

    png = plots.to_png(plots.percentile_chart(0.2, (0.05, 0.35)), dpi=60)
    im = to_pdf._decoded(png)
    assert im.mode == "RGB" and (np.asarray(im) == np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))).all()
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert to_pdf._decoded(buf.getvalue()).mode == "RGBA"


def test_save_builds_the_sections_once_for_every_format(ev, tmp_path, monkeypatch):
    """report.save builds the report's sections once and renders summary.md, report.html and
    report.pdf from them: the same Markdown as rendering on its own."""
    from pleval.report import outputs, to_html, to_markdown, to_pdf

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return sections.build(*args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("a renderer rebuilt the sections")

    monkeypatch.setattr(outputs, "build", counted)
    for mod in (to_html, to_markdown, to_pdf):
        monkeypatch.setattr(mod, "build", refused)
    out = report.save(ev, tmp_path / "out")
    assert len(calls) == 1
    monkeypatch.undo()
    names = sorted(plots.evaluation_figures(ev))
    assert (out / "summary.md").read_text() == report.render_markdown(ev, {k: f"plots/{k}.png" for k in names})
    assert (out / "report.html").stat().st_size > 0 and (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_bootstrap_and_randomization_reach_the_report_with_the_csv_numbers(sim, tmp_path):
    """`pleval estimate --design rct` with a wild cluster bootstrap (Webb weights, sampled) and a
    randomization test (16 schools in 4 blocks: all 1,296 assignments, exact): report.html, summary.md and report.pdf show, for each row of
    bootstrap.csv and randomization.csv, the method, draws, weights, seed, p, its Monte Carlo SE
    and the bootstrap CI, with the CSV's numbers."""
    from pypdf import PdfReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(sim.data, design="rct", subject="math", seed=3, bootstrap=499, bootstrap_weights="webb",
                             permutations=300)
    out = report.save(ev, tmp_path / "out")
    boot = pd.read_csv(out / "bootstrap.csv").iloc[0]
    ri = pd.read_csv(out / "randomization.csv").iloc[0]
    assert not boot["enumerated"] and boot["pvalue_mc_se"] > 0 and ri["exact"] and ri["mc_se"] == 0
    html = (out / "report.html").read_text()
    start = html.index("<h3>Resampling checks of the overall effect</h3>")
    assert html.index('<section id="overall"') < start < html.index("</section>", html.index('<section id="overall"'))
    rows = re.findall(r"<tr>(.*?)</tr>", html[start:html.index("</table>", start)], flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows[1:]]
    assert len(cells) == 2
    b, r = ({h: v for h, v in zip(re.findall(r"<th[^>]*>(.*?)</th>", rows[0]), c)} for c in cells)
    assert b["subject"] == r["subject"] == "math"
    assert b["method"].startswith("wild cluster bootstrap") and f"{int(boot['n_clusters'])} schools" in b["method"]
    assert (b["weights"], b["draws"], b["seed"]) == ("webb", f"{int(boot['draws']):,}", str(int(boot["seed"])))
    assert b["p"] == f"{boot['pvalue']:.4f}" and b["Monte Carlo SE of p"] == f"{boot['pvalue_mc_se']:.4f}"
    assert b[f"{boot['level']:.0%} CI"] == f"{boot['ci_low']:.4f} to {boot['ci_high']:.4f}"
    assert b["estimate"] == f"{boot['estimate']:.4f}"
    assert r["method"].startswith(f"randomization test, {ri['alternative']}")
    assert r["draws"] == f"all {int(ri['n_assignments']):,} assignments (exact)"
    assert (r["seed"], r["estimate"]) == ("—", f"{ri['statistic']:.4f}")  # no draws: the seed plays no part
    assert r["p"] == f"{ri['pvalue']:.4f}" and r["Monte Carlo SE of p"] == "0 (exact)"
    # the same numbers in the Markdown summary and the PDF
    md = (out / "summary.md").read_text()
    pdf = " ".join(p.extract_text() for p in PdfReader(out / "report.pdf").pages)
    for text in (md, pdf):
        assert "Resampling checks of the overall effect" in text
        for v in (boot["pvalue"], boot["pvalue_mc_se"], boot["ci_low"], ri["pvalue"], ri["statistic"]):
            assert f"{v:.4f}" in text


def test_resampling_table_sampled_randomization_and_absent():
    """A sampled randomization test shows its draws out of the possible assignments, its seed and
    Monte Carlo SE; an enumerated bootstrap says so (no seed, no Monte Carlo error); rows follow
    the order of the subjects; no bootstrap and no randomization test: no table."""
    from types import SimpleNamespace

    ri = pd.DataFrame([{"subject": "reading", "statistic": -0.25, "pvalue": 0.412, "mc_se": 0.0049, "alternative": "greater",
                        "exact": False, "n_assignments": 2.7e9, "n_draws": 10_000, "unit": "cluster",
                        "covariate_adjusted": False, "seed": 11}])
    boot = pd.DataFrame([{"subject": "math", "param": "treatment", "estimate": 1.5, "null": 0.0, "t_cr1": 2.0,
                          "pvalue": 0.0625, "pvalue_mc_se": 0.0, "ci_low": -0.1, "ci_high": 3.2, "level": 0.9,
                          "n_clusters": 8, "draws": 256, "enumerated": True, "weights": "rademacher", "seed": 11}])
    ev = SimpleNamespace(bootstrap=boot, randomization=ri, subjects=["reading", "math"], options={"level": 0.9})
    f, b = sections.resampling_table(ev).frame.iloc[0], sections.resampling_table(ev).frame.iloc[1]
    assert (f["method"], f["draws"], f["seed"]) == ("randomization test, greater", "10,000 of 2.7e+09 assignments", "11")
    assert (f["estimate"], f["p"], f["Monte Carlo SE of p"], f["90% CI"]) == ("-0.2500", "0.4120", "0.0049", "—")
    assert (b["subject"], b["draws"], b["seed"], b["Monte Carlo SE of p"]) == ("math", "all 256 weight patterns (exact)",
                                                                            "—", "0 (exact)")
    assert (b["p"], b["90% CI"]) == ("0.0625", "-0.1000 to 3.2000")
    assert sections.resampling_table(SimpleNamespace(bootstrap=pd.DataFrame(), randomization=pd.DataFrame(),
                                                     subjects=["math"], options={})) is None


def _pdf_texts(pdf: bytes) -> list[tuple]:
    """(page, y, x, text, bold, font size) of every text drawn in a PDF, in drawing-independent order."""
    import io

    from pypdf import PdfReader

    out = []
    for i, page in enumerate(PdfReader(io.BytesIO(pdf)).pages):
        def visit(text, cm, tm, font, size):
            if text.strip():
                out.append((i, tm[4] * cm[0] + tm[5] * cm[2] + cm[4], tm[4] * cm[1] + tm[5] * cm[3] + cm[5], text.strip(),
                            "Bold" in str(font.get("/BaseFont", "")), size))
        page.extract_text(visitor_text=visit)
    return sorted((p, round(y, 1), round(x, 1), t, b, s) for p, x, y, t, b, s in out)


def _pdf_coloured_texts(pdf: bytes) -> list[tuple]:
    """(page, encoded text, fill colour) of every text shown in a PDF, sorted."""
    import io

    from pypdf import PdfReader
    from pypdf.generic import ContentStream

    out = []
    for i, page in enumerate(PdfReader(io.BytesIO(pdf)).pages):
        colour, stack = None, []
        for operands, op in ContentStream(page.get_contents(), page.pdf).operations:
            if op == b"rg":
                colour = tuple(round(float(v), 4) for v in operands)
            elif op == b"q":
                stack.append(colour)
            elif op == b"Q":
                colour = stack.pop()
            elif op in (b"Tj", b"'", b'"', b"TJ"):
                out.append((i, repr(operands[-1]), colour))
    return sorted(out)


def test_pdf_table_cells_drawn_as_strings_sit_where_paragraphs_put_them(ev, monkeypatch):
    """Table cells of the PDF are drawn as strings, a line each (reportlab's Paragraph layout of
    every cell was most of report.pdf's time): every text lands where a Paragraph per cell puts
    it, with the same fonts and colours (the verdicts' too), and wrapping cells break into the
    same lines, words wider than their column cut where the Paragraph cuts them. Text with runs
    of spaces stays a Paragraph."""
    from reportlab.platypus import Paragraph as RLParagraph

    from pleval.report import to_pdf

    frame = pd.DataFrame({
        "school": ["Lincoln Elementary", ("A school with a long name " * 8).strip(), "two  spaces",
                   "Supercalifragilisticexpialidocious" * 8],
        "estimate": ["+0.12", "−0.05 to +0.30", "—", "+1"],
        "verdict": ["Meets WWC Standards Without Reservations", "not equivalent", "", "above zero: raw, adjusted"],
    })
    table = blocks.Table(frame, title="T", bold=(True, False, False, False), verdict_columns=("verdict",))
    drawn = to_pdf._table(table, to_pdf._fonts(), to_pdf._styles(to_pdf._fonts()))[1]
    kinds = [[isinstance(c, RLParagraph) for c in row] for row in drawn._cellvalues]
    assert kinds == [[False] * 3] * 3 + [[True, False, False], [False] * 3]
    assert "\n" in drawn._cellvalues[2][0] and "\n" in drawn._cellvalues[4][0]  # several lines; a word cut
    colours = {v: drawn._cellStyles[i + 1][2].color for i, v in enumerate(frame["verdict"])}
    assert colours["not equivalent"] == to_pdf.VERDICT["bad"] and colours[""] == to_pdf.INK
    section = [blocks.Section("t", "Table", (table,))]
    strings = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
    monkeypatch.setattr(to_pdf, "_STRING_CELLS", False)
    paragraphs = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
    assert strings != paragraphs
    a, b = _pdf_texts(strings), _pdf_texts(paragraphs)
    assert [t[3:] for t in a] == [t[3:] for t in b] and len(a) > 20  # the same texts (lines), fonts and sizes
    assert any(t[4] and t[3] == "+0.12" for t in a)  # a bold row's number
    assert all(p == q and abs(y - v) <= 0.1 and abs(x - u) <= 0.1 for (p, y, x, *_), (q, v, u, *_) in zip(a, b))
    assert _pdf_coloured_texts(strings) == _pdf_coloured_texts(paragraphs)


def _grid_section(n: int = 120) -> list:
    """A table of several pages: numbers that repeat and do not, left and right columns, cells of
    several lines, bold rows, coloured verdicts, Paragraph cells (runs of spaces)."""
    frame = pd.DataFrame({
        "school": [f"School {i % 37}" + ("  two  spaces" if i % 11 == 0 else "") for i in range(n)],
        "estimate": [f"{(i % 13 - 6) / 100:+.2f}" for i in range(n)],
        "CI": [f"{i / 1000:+.3f} to {(i + 50) / 1000:+.3f}" for i in range(n)],
        "note": [" ".join(["words that wrap"] * (1 + i % 4)) for i in range(n)],
        "verdict": [("not equivalent", "Meets WWC Standards Without Reservations", "")[i % 3] for i in range(n)],
    })
    table = blocks.Table(frame, title="Grid", bold=tuple(i % 9 == 0 for i in range(n)), verdict_columns=("verdict",))
    return [blocks.Section("t", "Table", (table,))]


def test_pdf_grid_draws_its_string_cells_as_reportlab_does(ev, monkeypatch):
    """`to_pdf._Grid` writes each string cell's text operators once per text and places them
    itself: report.pdf is the same bytes as when reportlab's `Table._drawCell` draws every cell."""
    from pleval.report import to_pdf

    section = _grid_section()
    fast = to_pdf.render_pdf(ev, {}, dpi=200, sections=section)
    monkeypatch.setattr(to_pdf._Grid, "_drawCell", to_pdf.RLTable._drawCell)
    assert to_pdf.render_pdf(ev, {}, dpi=200, sections=section) == fast
    assert len(_pdf_texts(fast)) > 500


def test_pdf_grid_cell_styles_are_those_of_the_style_commands():
    """The cell styles `to_pdf._grid` gives reportlab (one shared object per alignment, weight and
    colour) have, cell for cell, the attributes reportlab's own style commands set on a style per
    cell: top, the paddings, the font, size, leading and ink, right-aligned number columns, bold
    header and bold rows, verdict colours on cells drawn as strings."""
    from reportlab.platypus import TableStyle

    from pleval.report import to_pdf

    font = to_pdf._fonts()
    table = _grid_section()[0].blocks[0]
    for drawn in (f for f in to_pdf._table(table, font, to_pdf._styles(font)) if isinstance(f, to_pdf._Grid)):
        data, size = drawn._cellvalues, drawn._cellStyles[0][0].fontsize
        right = [s.alignment == "RIGHT" for s in drawn._cellStyles[0]]
        assert right == [False, True, True, False, False]
        bold = [i for i, r in enumerate(drawn._cellStyles) if r[0].fontname.endswith("Bold")]
        coloured = [("TEXTCOLOR", (j, i), (j, i), s.color) for i, r in enumerate(drawn._cellStyles)
                    for j, s in enumerate(r) if s.color != to_pdf.INK]
        assert bold[:2] == [0, 1] and coloured and all(isinstance(data[i][j], str) for _, (j, i), _, _ in coloured)
        commands = to_pdf.RLTable(data, colWidths=drawn._colWidths)
        commands.setStyle(TableStyle([
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), to_pdf._PAD), ("RIGHTPADDING", (0, 0), (-1, -1), to_pdf._PAD),
            ("TOPPADDING", (0, 0), (-1, -1), to_pdf._VPAD), ("BOTTOMPADDING", (0, 0), (-1, -1), to_pdf._VPAD),
            ("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), size),
            ("LEADING", (0, 0), (-1, -1), size * 1.25), ("TEXTCOLOR", (0, 0), (-1, -1), to_pdf.INK),
            *[("ALIGN", (j, 0), (j, -1), "RIGHT") for j, r in enumerate(right) if r],
            *[("FONTNAME", (0, i), (-1, i), f"{font}-Bold") for i in bold],
            *coloured,
        ]))
        keys = ("valign", "leftPadding", "rightPadding", "topPadding", "bottomPadding", "fontname", "fontsize",
                "leading", "color", "alignment", "href", "destination", "direction", "shaping")
        assert [[tuple(getattr(c, k) for k in keys) for c in r] for r in drawn._cellStyles] == \
            [[tuple(getattr(c, k) for k in keys) for c in r] for r in commands._cellStyles]


def test_pdf_cell_lines_are_the_lines_of_reportlabs_paragraph():
    """:func:`to_pdf._lines` breaks text as reportlab's Paragraph does (random words and
    widths, plain and bold, near the edge of the space-shrinking allowance, words cut across
    lines), and gives None exactly where the Paragraph draws a line otherwise than as its
    string: its spaces narrowed, or a space counted at its end (a cut word's first character
    that did not fit after it)."""
    import numpy as np
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import Paragraph as RLParagraph

    from pleval.report import to_pdf

    font = to_pdf._fonts()
    rng = np.random.default_rng(7)
    vocab = ["a", "to", "CI", "+0.380", "−0.05", "school", "placebo-calibrated", "raw,", "adjusted", "α", "(n = 12)",
             "Supercalifragilistic", "SCH1180"]
    measured, seen = to_pdf._Measured(), {"wrapped": 0, "cut": 0, "narrowed": 0, "space at the end": 0}
    for _ in range(3000):
        text = " ".join(rng.choice(vocab, rng.integers(1, 9)))
        name = font if rng.random() < 0.5 else f"{font}-Bold"
        size = float(rng.choice(to_pdf.TABLE_FONT_SIZES))
        width = float(rng.uniform(4, 90))
        style = to_pdf.ParagraphStyle("c", fontName=name, fontSize=size, leading=size * 1.25)
        para = RLParagraph(text, style)
        para.wrap(width, 1000)
        want = para.blPara.lines
        got = to_pdf._lines(text, name, size, width, style.spaceShrinkage, measured)
        narrowed = any(extra <= -1e-8 for extra, _ in want)
        spaced = any(abs(width - extra - stringWidth(" ".join(words), name, size)) > 1e-9 for extra, words in want)
        if got is None:
            assert narrowed or spaced, (text, width)
            seen["narrowed" if narrowed else "space at the end"] += 1
        else:
            assert not narrowed and not spaced and got == [" ".join(words) for _, words in want], (text, width)
            seen["cut" if para._splitLongWordCount else "wrapped"] += len(got) > 1
    assert min(seen.values()) > 0, seen  # each case met


@pytest.fixture(scope="module")
def sample_ev():
    """The matched sample evaluation (sample_data/pl_matched_students.csv: 32 PL schools per
    subject, placebo schools, 17-column school tables)."""
    from pathlib import Path

    from pleval.data import read_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(read_table(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"))


def _laid_lines(cell, width: float) -> list[str]:
    """The lines a laid-out table cell is drawn in at ``width`` (a string's lines, or the lines
    reportlab breaks a Paragraph into)."""
    from pleval.report import to_pdf

    if isinstance(cell, str):
        return cell.split("\n")
    cell.wrap(width - 2 * to_pdf._PAD, 1e6)
    bl = cell.blPara
    if bl.kind == 0:
        return [" ".join(words) for _, words in bl.lines]
    return ["".join(f.text for f in line.words) for line in bl.lines]


@pytest.mark.parametrize("which", ["sample_ev", "ev"])
def test_pdf_tables_cut_no_word(which, request):
    """Every table of report.pdf (the matched sample evaluation's; the cluster RCT's) keeps each
    word, school id, number and header whole: every cell's lines are its words, none cut;
    every column is printed (a school table, too wide for the page, in parts, each led by the
    school). In the sample's PDF text (pypdf) every school id is a whole word, and every bold
    word at table size is a word of a table's header or bold row (no fragment such as
    "adjuste" or "SCH008")."""
    from pleval.report import to_pdf

    sample_ev = request.getfixturevalue(which)
    font, st = to_pdf._fonts(), to_pdf._styles(to_pdf._fonts())
    built = sections.build(sample_ev)
    tables = [b for s in built for b in s.blocks if b.kind == "table"]
    split = 0
    for t in tables:
        grids = [f for f in to_pdf._table(t, font, st) if isinstance(f, to_pdf.RLTable)]
        heads = [[_cell_text(c) for c in g._cellvalues[0]] for g in grids]
        columns = [" ".join(c.split()) for c in t.columns]
        assert all(h[0] == columns[0] for h in heads) and [c for h in heads for c in h[1:]] == columns[1:], t.title
        split += len(grids) > 1
        for g in grids:
            for row in g._cellvalues:
                for cell, width in zip(row, g._colWidths):
                    lines = _laid_lines(cell, width)
                    assert [w for line in lines for w in line.split()] == _cell_text(cell).split(), (t.title, lines)
    school_tables = [t for t in tables if t.title.startswith("School table")]
    assert len(school_tables) == 2 and split >= 1
    if which != "sample_ev":
        return
    assert len(school_tables) == 2 and split >= 2 and all(len(t.columns) >= 17 for t in school_tables)

    texts = _pdf_texts(to_pdf.render_pdf(sample_ev, {}, dpi=200, sections=built))
    words = {w for *_, text, _, _ in texts for w in text.split()}
    ids = set(sample_ev.schools["school"].astype(str))
    assert len(ids) >= 32 and ids <= words
    allowed = {w for t in tables for c in t.columns for w in c.split()}
    allowed |= {w for t in tables for i, r in enumerate(t.rows()) if t.is_bold(i) for v in r for w in v.split()}
    bold = {w for *_, text, is_bold, size in texts if is_bold and size <= to_pdf.TABLE_FONT_SIZES[0]
            for w in text.split()}
    assert {w for t in school_tables for c in t.columns for w in c.split()} <= bold
    assert bold <= allowed, bold - allowed


def test_pdf_split_packs_whole_groups_beside_the_key():
    """to_pdf._split: each part is the key (column 0) and a run of the other columns, every one
    once and in order; whole groups are packed while they fit beside the key, a group too wide
    for a part of its own is split between its columns, each part fits the page; None when the
    key and a single column cannot share the page."""
    from pleval.report import to_pdf

    W = to_pdf.WIDTH
    key = 0.1 * W
    least = [key, 0.3 * W, 0.3 * W, 0.2 * W, 0.2 * W, 0.1 * W]
    starts = [False, True, False, True, False, False]  # groups: 1-2 (0.6 W), 3-5 (0.5 W)
    assert to_pdf._split(least, starts) == [[0, 1, 2], [0, 3, 4, 5]]  # 0.6 + 0.2 would fit, but not the whole group
    assert to_pdf._split(least, [True] * 6) == [[0, 1, 2, 3], [0, 4, 5]]  # any column may start a part
    wide = [key, 0.5 * W, 0.5 * W, 0.3 * W, 0.1 * W]
    assert to_pdf._split(wide, [False, True, False, False, True]) == [[0, 1], [0, 2, 3], [0, 4]]  # group 1-3 split
    for least, starts in ((least, starts), (wide, [True] * 5), ([key] + [0.05 * W] * 40, [True] * 41)):
        parts = to_pdf._split(least, starts)
        assert all(p[0] == 0 for p in parts) and [j for p in parts for j in p[1:]] == list(range(1, len(least)))
        assert all(sum(least[j] for j in p) <= W for p in parts)
    assert to_pdf._split([key, 0.95 * W], [False, True]) is None


def test_glance_says_whom_a_matched_estimate_is_about_when_pl_rows_found_no_match():
    """PL rows of a grade with no comparison students are not in the estimate; the first screen
    says how many, of how many, and why (before, only the rows-left-out table did)."""
    d = pleval.simulate_matched(n_schools=30, n_pl_schools=6, students_per_grade=6, seed=5).data
    cards = {b.title: b for b in sections.glance(pleval.estimate(d, placebo=False, caliper=False), ()).blocks}
    assert not [ln for c in cards.values() for ln in c.lines if "not in the estimate" in ln]
    g = sorted(d.grade.unique())[-1]
    d = d[~((d.grade == g) & (d.treatment == 0))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(d, placebo=False, caliper=False)
    cards = {b.title: b for b in sections.glance(ev, ()).blocks}
    for s in ev.subjects:
        pl = (d.treatment == 1) & (d.subject == s)
        n_un, n_t = int((pl & (d.grade == g)).sum()), int(pl.sum())
        (line,) = [ln for ln in cards[s.capitalize()].lines if "not in the estimate" in ln]
        assert line == (f"{n_un:,} of {n_t:,} PL rows ({n_un / n_t:.1%}) are not in the estimate (no comparison in "
                        f"its exact-match cell: {n_un:,}): it is the effect on the PL students in it.")


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_glance_counts_every_pl_row_left_out_of_a_matched_estimate():
    """PL rows dropped for a missing pretest, or left out of matching for a missing outcome, are
    not in the estimate either. Before, the first screen counted only PL rows without a
    comparison, so 300 of math's 3,051 PL rows missing their pretest went unmentioned there. Each
    subject's PL rows are now followed from the file to the estimate, whose own count of PL rows
    they match."""
    d = pd.read_csv(SAMPLE)
    rng = np.random.default_rng(1)
    math_pl = np.flatnonzero(((d.treatment == 1) & (d.subject == "math")).to_numpy())
    d.loc[d.index[rng.choice(math_pl, 300, replace=False)], "pretest"] = np.nan
    d.loc[d.index[rng.choice(np.flatnonzero(d.treatment.to_numpy() == 0), 200, replace=False)], "pretest"] = np.nan
    ev = pleval.estimate(d, placebo=False, sensitivity=False)
    cards = {b.title: b for b in sections.glance(ev, ()).blocks}
    for s in ev.subjects:
        pl = (d.treatment == 1) & (d.subject == s)
        miss_pre = int((pl & d.pretest.isna()).sum())
        miss_out = int((pl & d.pretest.notna() & d.posttest.isna()).sum())
        n_in = int(pl.sum()) - miss_pre - miss_out
        assert miss_out > 0 and (miss_pre == 300) == (s == "math") and (miss_pre == 0) == (s == "reading")
        flow = ev.details[s]["pl_rows"]
        assert flow["n_rows"].tolist() == [int(pl.sum()), *([miss_pre] if miss_pre else []), miss_out, n_in]
        assert flow["n_rows"].iloc[-1] == ev.effects[s].raw.n_treated
        why = (f"missing pretest: {miss_pre:,}; " if miss_pre else "") + f"missing outcome: {miss_out:,}"
        (line,) = [ln for ln in cards[s.capitalize()].lines if "not in the estimate" in ln]
        assert line == (f"{int(pl.sum()) - n_in:,} of {int(pl.sum()):,} PL rows ({(int(pl.sum()) - n_in) / pl.sum():.1%}) "
                        f"are not in the estimate ({why}): it is the effect on the PL students in it.")


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_glance_gives_one_significance_verdict_when_level_is_not_one_minus_alpha():
    """With --level 0.9 and α = 0.05 the math card read 'Statistically significant: the 90%
    confidence interval lies above zero' over a sentence saying 'Not significant at α = 0.05'
    (p = 0.088). The card's verdict is now the sentence's, by p against α, whenever the interval's
    level is not 1 − α; at 1 − α it still reads the interval."""
    from pleval.findings import significance

    kw = dict(placebo=False, sensitivity=False)
    for opts in ({"level": 0.9}, {"alpha": 0.1}, {}):
        ev = pleval.estimate(SAMPLE, **kw, **opts)
        alpha = float(ev.options["alpha"])
        for card in sections.glance(ev, ()).blocks:
            e = ev.effects[card.title.lower()].effect_size
            significant = e.pvalue < alpha
            if opts:
                assert card.status.startswith("Statistically significant at α" if significant
                                              else "Not statistically significant at α"), (opts, card.status)
            else:
                assert card.status == significance(e)[0].upper() + significance(e)[1:]
            assert ("Not significant at α" in card.lines[0]) == (not significant)


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_an_alpha_of_two_and_a_half_percent_is_written_so():
    """--alpha 0.025 was written '2%' ('nominal 2%', 'at most 2% of the time'): shares are now
    written with the digits they need."""
    from pleval._text import percent
    from pleval.findings import het_parts, het_row

    assert [percent(x) for x in (0.05, 0.025, 0.999, 0.8)] == ["5%", "2.5%", "99.9%", "80%"]
    ev = pleval.estimate(SAMPLE, sensitivity=False, alpha=0.025, subject="math")
    text = " ".join(het_parts(ev, "math", het_row(ev, "math")))
    assert "nominal 2.5%" in text and "at most 2.5% of the time" in text and "2%" not in text.replace("2.5%", "")


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_the_prediction_interval_sentence_says_how_its_spread_was_formed():
    """When the PL schools' τ² is below the placebo schools', the interval's between-school SD is
    the two pooled by their precision (between them); the sentence said it was the PL schools'
    spread 'held at least at the placebo schools''. It now says which it is."""
    from pleval.findings import het_parts, het_row

    ev = pleval.estimate(Path(__file__).resolve().parents[1] / "sample_data" / "pl_cluster_rct.csv", design="rct")
    seen = set()
    for s in ev.subjects:
        h = het_row(ev, s)
        text = het_parts(ev, s, h)[0]
        below = float(h["tau2"]) < float(h["tau2_placebo"])
        seen.add(below)
        assert ("so the two pooled by their precision" in text) == below
        assert ("at least the placebo schools'" in text) == (not below)
        if below:  # pooled: between the two
            assert float(h["tau2"]) <= float(h["tau2_total"]) <= float(h["tau2_placebo"])
    assert seen == {True, False}  # the sample trial has one subject of each kind


def test_heterogeneity_note_gives_the_formula_of_the_interval_it_prints(ev, sim):
    """The heterogeneity table's note describes the prediction interval printed: with placebo
    schools the τ²_total interval (not μ̂ ± t(k−2)·√(τ̂² + SE²), computed here with scipy: the
    PL-only interval of heterogeneity.csv), without them that formula. Before 2026-12-04 the note
    gave the formula for both."""
    from scipy import stats

    def pl_only(h):
        half = stats.t.ppf(0.5 + h.level / 2, h.k - 2) * np.sqrt(h.tau2 + h.se ** 2)
        return h.estimate - half, h.estimate + half

    def table(e):
        return next(b for b in sections.heterogeneity(e, []).blocks if b.kind == "table")

    formula = "μ̂ ± t(k−2)·√(τ̂² + SE²)"
    for h in ev.heterogeneity.itertuples():  # with placebo schools: printed ≠ the formula, which is the PL-only one
        assert np.allclose(pl_only(h), (h.pi_low_pl_only, h.pi_high_pl_only))
        printed = table(ev).frame.set_index("").loc["prediction interval, effect size", str(h.subject)]
        assert printed == findings.fmt_ci(h.pi_low, h.pi_high, 3, True) != findings.fmt_ci(*pl_only(h), 3, True)
    note = table(ev).note
    assert "prediction interval from the between-school variance τ²_total" in note
    assert f"prediction interval {formula}" not in note and "pi_low_pl_only" in note
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        plain = pleval.estimate(sim.data, design="rct", placebo=False)
    for h in plain.heterogeneity.itertuples():  # without: printed = the formula
        printed = table(plain).frame.set_index("").loc["prediction interval, effect size", str(h.subject)]
        assert printed == findings.fmt_ci(*pl_only(h), 3, True)
    assert f"prediction interval {formula}" in table(plain).note and "τ²_total" not in table(plain).note


def test_caveats_use_the_runs_alpha_and_baseline_percentile():
    """The caveats said "about 1 in 20 at p < 0.05" and "the 50th ... the 53rd" whatever --alpha and
    --baseline-percentile the rest of the report used."""
    from types import SimpleNamespace

    ev = SimpleNamespace(options={"alpha": 0.1, "baseline_percentile": 25.0}, design="matched", schools=[1],
                         effects={"math": SimpleNamespace(sd_kind="SD")})
    text = " ".join(sections.caveat_list(ev))
    assert "about 1 in 10 at p < 0.1 " in text and "at the 25th percentile" in text and "about the 28th" in text
    assert "1 in 20" not in text and "50th" not in text


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_card_verdict_is_the_domain_adjusted_one_the_essa_tier_uses():
    """With a second outcome in the achievement domain, the card read 'Statistically significant: the
    95% confidence interval lies above zero' (p = 0.047) while the ESSA step under it, on the p
    adjusted within the domain (0.095), said the effect was not significant. The card's verdict is
    now the adjusted one, with the p before adjustment beside it, and the sentence gives both; here
    the adjusted p is recomputed with statsmodels' Benjamini–Hochberg over the subject's outcomes."""
    from statsmodels.stats.multitest import multipletests

    multisite = pleval.simulate_multisite_rct(n_schools=12, students_per_school=100, seed=15).data
    crct = Path(__file__).resolve().parents[1] / "sample_data" / "pl_cluster_rct.csv"
    seen = set()
    for data, design in ((multisite, "blocked"), (crct, "cluster")):
        ev = pleval.estimate(data, design="rct", rct_design=design, outcomes=["posttest", "proficient"], placebo=False)
        cards = {b.title: b for b in sections.glance(ev, ()).blocks}
        for s in ev.subjects:
            o = ev.outcomes[ev.outcomes["subject"] == s]
            p = float(o.loc[o["outcome"] == "posttest", "pvalue"].iloc[0])
            adjusted = multipletests(o["pvalue"].to_numpy(), method="fdr_bh")[1][o["outcome"].tolist().index("posttest")]
            card = cards[s.capitalize()]
            essa = next(c for c in ev.ratings[s].conditions if c.condition.startswith("statistically significant"))
            seen.add((p < 0.05, adjusted < 0.05))
            assert card.status.startswith("Statistically significant") == (adjusted < 0.05) == essa.met
            assert card.status_class == ("ok" if adjusted < 0.05 else "warn")
            assert "the 2 outcomes of the achievement domain (Benjamini–Hochberg)" in card.status
            assert f"adjusted p = {adjusted:.3f}" in card.status and f"p = {p:.3f}" in card.status
            assert ("significant before adjustment" in card.status) == (p < 0.05 <= adjusted)
            assert card.lines[0] == ev.sentence(s)
            assert (f"p = {p:.3f}; adjusted for the 2 outcomes of the achievement domain (Benjamini–Hochberg), "
                    f"p = {adjusted:.3f})") in card.lines[0]
    assert {(True, False), (True, True)} <= seen  # significant only before adjustment, and after it too


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_share_of_spread_beyond_placebo_is_judged_on_its_ci():
    """The sample trial (true program τ 0.10, half of the PL schools' variance) read 'little or none
    of the spread among PL schools goes beyond what arises without the program' in both subjects,
    chosen from the point estimate of that share (24%, 0%) while the τ_program CIs reach 0.20 and
    0.15. The words now follow the CI: the share τ²/(τ² + τ²_placebo) at its ends, recomputed here
    from heterogeneity.csv's columns."""
    from pleval.findings import het_parts, het_row

    def share(t, t2p):
        return t / (t + t2p)

    ev = pleval.estimate(Path(__file__).resolve().parents[1] / "sample_data" / "pl_cluster_rct.csv", design="rct")
    for s in ev.subjects:
        h = het_row(ev, s)
        (text,) = [p for p in het_parts(ev, s, h) if p.startswith("Placebo schools (")]
        top = share(h["tau2_program_ci_high"], h["tau2_placebo"])
        assert h["tau2_program_ci_low"] == 0 and top > 0.25 and "little or none" not in text.lower()
        assert (f"The data cannot tell how much of the spread among PL schools goes beyond what arises without the "
                f"program: from none to about {100 * top:.0f}% of their between-school variance over the 95% CI of "
                f"τ_program below (estimate {100 * h['share_excess']:.0f}%).") in text
    row = pd.Series({"tau2_placebo": 0.01, "tau2_program": 0.0004, "tau2_program_ci_low": 0.0,
                     "tau2_program_ci_high": 0.002})  # upper end 1/6 of the variance
    assert findings.program_share_words(row, "95%").startswith("Little or none") and "at most about 17%" in \
        findings.program_share_words(row, "95%")
    row = pd.Series({"tau2_placebo": 0.01, "tau2_program": 0.03, "tau2_program_ci_low": 0.01,
                     "tau2_program_ci_high": 0.09})  # 75% (50% to 90%)
    assert findings.program_share_words(row, "95%").startswith(
        "The PL schools vary more than schools do without the program: about 75% of their between-school variance "
        "goes beyond what arises without it (50% to 90% over the 95% CI")
    row = pd.Series({"tau2_placebo": 0.01, "tau2_program": 0.03, "tau2_program_ci_low": 1e-5,
                     "tau2_program_ci_high": 0.09})  # a lower end above 0 never reads "0%" (final review, 2026-12-05)
    assert "(0.1% to 90% over the 95% CI" in findings.program_share_words(row, "95%")


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_card_says_schools_differ_only_when_the_test_shows_it():
    """Every card read 'Schools differ: τ = … SD', also in a multi-site trial with no program variation
    (true τ = 0; Q p = 0.19 and 0.08, τ CIs from 0). It now says so only when the Q test of no
    heterogeneity rejects at α, and otherwise that the data cannot tell; τ's CI and the Q p are
    beside it, as heterogeneity.csv has them."""
    seen = set()
    for tau, seed in ((0.0, 21), (0.1, 15)):
        data = pleval.simulate_multisite_rct(n_schools=12, students_per_school=100, tau=tau, seed=seed).data
        ev = pleval.estimate(data, design="rct", rct_design="blocked")
        cards = {b.title: b for b in sections.glance(ev, ()).blocks}
        for s in ev.subjects:
            h = ev.heterogeneity[ev.heterogeneity["subject"] == s].iloc[0]
            (line,) = [ln for ln in cards[s.capitalize()].lines if "τ = " in ln]
            differ = h["q_pvalue"] < 0.05
            seen.add(differ)
            lead = "Schools differ" if differ else "The data cannot tell whether schools differ"
            ci = f"{np.sqrt(h['tau2_ci_low']):.3f} to {np.sqrt(h['tau2_ci_high']):.3f}"
            p = "p < 0.001" if h["q_pvalue"] < 0.001 else f"p = {h['q_pvalue']:.3f}"
            assert line.startswith(f"{lead}: τ = {h['tau']:.3f} SD (95% CI {ci}; Q test {p}); "), line
    assert seen == {True, False}


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_a_ci_bound_beside_a_verdict_never_prints_as_zero():
    """Multi-site trial, math: effect-size CI 0.000854 to 0.146, percentile points 0.034 to 5.82,
    printed '95% CI 0.0 to +5.8' in the sentence and the overall table under 'the 95% confidence
    interval lies above zero'. Every printed bound (sentence, overall table, school table) now
    reads back on the same side of zero as overall.csv's / school_effects.csv's value, within its
    rounding."""
    def same(text, value):
        shown = float(text.replace("+", ""))
        digits = len(text.split(".")[1]) if "." in text else 0
        return np.sign(shown) == np.sign(value) and abs(shown - value) <= 0.5 * 10 ** -digits + 1e-12

    data = pleval.simulate_multisite_rct(n_schools=12, students_per_school=100, seed=15).data
    ev = pleval.estimate(data, design="rct", rct_design="blocked", placebo=False)
    ov = ev.overall[ev.overall["primary"]].set_index(["subject", "scale"])
    assert 0 < ov.loc[("math", "percentile points"), "ci_low"] < 0.05  # the case: rounds to 0.0 at one decimal
    number = r"([+-]?\d+\.\d+)"
    for s in ev.subjects:
        m = re.search(rf"percentile points, 95% CI {number} to {number}; effect size \S+ SD, 95% CI {number} to {number};",
                      ev.sentence(s))
        for text, (scale, end) in zip(m.groups(), [("percentile points", "ci_low"), ("percentile points", "ci_high"),
                                                    ("effect size", "ci_low"), ("effect size", "ci_high")]):
            assert same(text, ov.loc[(s, scale), end]), (s, text)
    for r in findings.overall_rows(ev):
        o = ev.overall[(ev.overall["subject"] == r["subject"]) & (ev.overall["analysis"] == r["analysis"])]
        for key, scale in (("raw_ci", "raw"), ("es_ci", "effect size"), ("pp_ci", "percentile points")):
            lo, hi = r[key].split(" to ")
            row = o[o["scale"] == scale].iloc[0]
            assert same(lo, row["ci_low"]) and same(hi, row["ci_high"]), (r["subject"], key, r[key])
    f = ev.schools
    table = sections.school_table(f)
    for school, ci in zip(table["school"], table["95% CI"]):
        lo, hi = ci.split(" to ")
        rows = f[f["school"] == school]
        assert any(same(lo, a) and same(hi, b) for a, b in zip(rows["es_ci_low"], rows["es_ci_high"])), (school, ci)
