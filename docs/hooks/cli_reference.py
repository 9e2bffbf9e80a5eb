"""MkDocs hook: write docs/cli.md from the typer app before the build reads the docs."""

from pathlib import Path


def on_pre_build(config, **kwargs):
    from pleval.cli.reference import markdown

    target = Path(config["docs_dir"]) / "cli.md"
    text = markdown() + "\n"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
