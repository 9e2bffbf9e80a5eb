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


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    code = "\n".join(re.findall(r"```(?:bash|text)?\n(.*?)```", readme, flags=re.S))
    for name in re.findall(r"^\s*(?:\$ )?pleval ([a-z-]+)", code, flags=re.M):
        assert name in commands(), name
    assert os.path.exists(ROOT / "Makefile")
