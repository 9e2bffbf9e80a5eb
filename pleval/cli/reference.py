"""Markdown reference of the command line, generated from the typer app itself.

Used by the docs build (``docs/hooks/cli_reference.py``) and by the test that the
reference matches the app's actual commands and options.
"""

from __future__ import annotations

import typer


CONVENTIONS = [
    "## One grammar in every command",
    "",
    "Commands are listed in the order a user needs them: the whole evaluation (`estimate`), then "
    "its building blocks. Wherever a command has the concept, the option has the same name and meaning:",
    "",
    "| option | meaning |",
    "|---|---|",
    "| `--out`, `-o` | where outputs go (a folder for `estimate`, `match`, `rct`, `sensitivity`, `monitor`, `power`, "
    "with `provenance.json`: version, options, the input's SHA-256; a file otherwise, for `schools` with "
    "`NAME.provenance.json` beside it) |",
    "| `--force` | write into a non-empty folder that is not a previous output of the command |",
    "| `--config` | a TOML file of options (`estimate`; `OUT/run.toml` repeats a run) |",
    "| `--format` | terminal output: `text` or `json` (`estimate`, `power`, `check`) |",
    "| `--seed` | the seed of every random step (a whole number) |",
    "| `--outcome`, `--treatment`, `--pretest`, `--covariates`, `--school`, `--subject`, `--grade`, "
    "`--student-id`, `--block`, `--takeup`, `--weight` | the column holding that role (`none` for none) |",
    "| `--treated-label` | the treated (PL) value of a two-label treatment column, e.g. `PL` |",
    "| `--only-subject` | analyse one subject, a value of the `--subject` column (letter case and surrounding spaces aside: `Math` names `math` when no value is spelled `Math`) |",
    "",
    "Numbers are typed (`<int>`, `<float>` in `--help`); a bad value, an unknown option or bad input "
    "prints one line `error: ...` and exits with code 2. Tables written to a file or a pipe are never "
    "cut off (rich only fits them to the width of an interactive terminal).",
    "",
]


def _command_tree():
    from . import app

    return typer.main.get_command(app)


def commands() -> dict[str, list[str]]:
    """Command name -> its option flags and argument names, as the app defines them (in the
    order of ``pleval --help``)."""
    group = _command_tree()
    out = {}
    for name, cmd in group.commands.items():
        params = []
        for p in cmd.params:
            params.extend(p.opts if _is_option(p) else [p.name.upper()])
        out[name] = params
    return out


def markdown() -> str:
    """The CLI reference as Markdown: one section per command with its usage and options."""
    group = _command_tree()
    lines = [
        "# CLI reference",
        "",
        "Generated from the `pleval` command line itself at docs build time; "
        "`pleval COMMAND --help` prints the same text.",
        "",
        *CONVENTIONS,
    ]
    for name, cmd in group.commands.items():
        lines += [f"## `pleval {name}`", ""]
        lines += [(cmd.help or "").strip().replace("\b\n", ""), ""]
        args = [p.name.upper() + ("..." if p.nargs == -1 else "") for p in cmd.params if not _is_option(p)]
        lines += ["```text", " ".join([f"pleval {name} [OPTIONS]", *args]), "```", ""]
        rows = []
        for p in cmd.params:
            if _is_option(p):
                flags = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
                rows.append(f"| {flags} | {_cell(p.help)} | {_default(p)} |")
            else:
                rows.append(f"| `{p.name.upper()}` (argument) | {_cell(getattr(p, 'help', ''))} | |")
        if rows:
            lines += ["| option | meaning | default |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _default(p) -> str:
    """An option's default as ``--help`` shows it: an enum's value (not its repr), 0 as 0 (it equals
    False, which hid it before 2026-12-04), an on/off flag's name, nothing when there is none."""
    d = p.default
    if d is None or isinstance(d, (tuple, list)) and not d:  # (None: a config file or the design decides)
        return ""
    if p.is_flag:
        return f"`{p.opts[0]}`" if d else f"`{p.secondary_opts[0]}`" if p.secondary_opts else ""
    return f"`{getattr(d, 'value', d)}`"


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _cell(text) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")
