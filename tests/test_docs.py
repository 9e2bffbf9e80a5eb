"""The docs stay true: tutorial code runs, and the CLI reference matches the app."""

import os
import re
from pathlib import Path

import matplotlib.pyplot as plt

from pleval.cli.reference import commands, markdown

ROOT = Path(__file__).resolve().parents[1]


def _run_python_blocks(doc: str, tmp_path, monkeypatch) -> int:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.S)
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, doc, "exec"), namespace)  # noqa: S102
    plt.close("all")
    return len(blocks)


def test_tutorial_python_blocks_run(tmp_path, monkeypatch):
    assert _run_python_blocks("docs/tutorial.md", tmp_path, monkeypatch) >= 4
    assert (tmp_path / "results" / "report.html").exists()
    assert (tmp_path / "schools.xlsx").exists()


def test_readme_python_block_runs(tmp_path, monkeypatch):
    assert _run_python_blocks("README.md", tmp_path, monkeypatch) == 1


def test_cli_reference_lists_every_command_and_option():
    md = markdown()
    cmds = commands()
    assert {"convert", "simulate", "match", "rct", "schools", "estimate"} <= set(cmds)
    for name, params in cmds.items():
        assert f"## `pleval {name}`" in md
        for p in params:
            assert f"`{p}`" in md, (name, p)


def test_cli_reference_defaults_read_as_help_shows_them():
    """Defaults as ``--help`` prints them: an enum's value, not its repr (``Method.propensity``),
    0 as 0 (it equals False and was left blank), an on/off flag by its name (before 2026-12-04)."""
    rows = {}
    section = ""
    for line in markdown().splitlines():
        if line.startswith("## `pleval "):
            section = line.split("`")[1]
        elif line.startswith("| `--"):
            rows[(section, line.split("`")[1])] = line.rsplit("|", 2)[-2].strip()
    assert rows[("pleval match", "--method")] == "`propensity`" and rows[("pleval match", "--seed")] == "`0`"
    assert rows[("pleval rct", "--design")] == "`cluster`" and rows[("pleval rct", "--bootstrap")] == "`0`"
    assert rows[("pleval schools", "--hartung-knapp")] == "`--hartung-knapp`"
    assert not any("." in v and v.split(".")[0].strip("`").istitle() for v in rows.values())  # no Enum reprs


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    code = "\n".join(re.findall(r"```(?:bash|text)?\n(.*?)```", readme, flags=re.S))
    for name in re.findall(r"^\s*(?:\$ )?pleval ([a-z-]+)", code, flags=re.M):
        assert name in commands(), name
    assert os.path.exists(ROOT / "Makefile")


def test_built_site_typesets_formulas_offline(tmp_path):
    """Every formula becomes arithmatex markup for the vendored MathJax (no `$$` or TeX left as
    text, no script from the network), and the build hooks are not published."""
    import subprocess
    import sys

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)], cwd=ROOT,
                   check=True)
    assert (site / "assets" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    assert (site / "assets" / "mathjax" / "LICENSE").exists()
    assert not (site / "hooks").exists() and not list(site.rglob("*.py"))
    pages = {p: p.read_text() for p in site.rglob("*.html") if p.name == "index.html"}
    n_math = 0
    for page, html in pages.items():
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
        remote = [u for u in scripts + re.findall(r'<link[^>]*href="([^"]+)"', html)
                  if u.startswith(("http:", "https:", "//"))]
        assert not remote, page
        text = re.sub(r"<script.*?</script>|<(pre|code)[^>]*>.*?</\1>", "", html, flags=re.S)
        math = re.findall(r'<(?:span|div) class="arithmatex">', text)
        n_math += len(math)
        if math:
            assert any(s.endswith("assets/mathjax/tex-svg-full.js") for s in scripts), page
        prose = re.sub(r'<(span|div) class="arithmatex">.*?</\1>', "", text, flags=re.S)
        assert "$$" not in html and not re.search(r"\$|\\(frac|hat|sum|sqrt|bar)\b", prose), page
    assert n_math > 200  # the methods pages' formulas


def test_references_point_into_the_repository():
    """Docs and docstrings cite docs/architecture.md, not notes that are not in the repository."""
    files = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "pleval").rglob("*.py")]
    assert not [str(f.relative_to(ROOT)) for f in files if "design.md" in f.read_text()]
    arch = (ROOT / "docs" / "architecture.md").read_text()
    for anchor in re.findall(r"architecture\.md#([a-z-]+)", "\n".join(f.read_text() for f in files)):
        assert "{#" + anchor + "}" in arch, anchor
