"""One CLI grammar: shared option names, typed numbers, command order, output that is never cut
off, and --treated-label in every command that reads a treatment column."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pleval.cli import app
from pleval.simulate import simulate_cluster_rct, simulate_matched

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = GROUP.commands


def _options(name: str) -> dict[str, object]:
    """Flag -> click parameter of one command."""
    return {o: p for p in COMMANDS[name].params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}


# Which commands have each shared concept; every one must use the shared name for it.
SHARED = {
    "--out": ["estimate", "match", "rct", "schools", "power", "convert", "simulate"],  # writes outputs
    "--force": ["estimate", "match", "rct"],  # writes into a folder
    "--config": ["estimate"],
    "--format": ["estimate", "power"],
    "--seed": ["estimate", "match", "rct", "power", "simulate"],  # has a random step
    "--school": ["estimate", "match", "rct", "schools", "power"],  # reads a school column
    "--subject": ["estimate", "match", "rct", "schools", "power"],  # reads a subject column
    "--only-subject": ["estimate", "rct", "power"],  # analyses one subject of several
    "--treated-label": ["estimate", "match", "rct", "power"],
    # reads a file: every command that does takes the reading options
    **{flag: ["estimate", "match", "rct", "check", "sensitivity", "schools", "monitor", "power", "convert"]
       for flag in ("--sep", "--decimal", "--encoding", "--sheet", "--header-row", "--na")},
}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_every_command_accepts_the_shared_option_names(flag):
    for name in SHARED[flag]:
        assert flag in _options(name), (name, flag)


def test_no_command_uses_another_name_for_a_shared_concept():
    for name in COMMANDS:
        opts = _options(name)
        legacy = [o for o in opts if re.search(r"^--.+-(col|column|dir)$", o)]
        assert not legacy, (name, legacy)
        if "--treatment" in opts:  # a treatment column can hold labels in every command
            assert "--treated-label" in opts, name


NUMERIC = {"--seed": "int", "--level": "float", "--alpha": "float", "--baseline-percentile": "float",
           "--n-placebo": "int", "--permutations": "int", "--k": "int", "--caliper": "float", "--band": "float",
           "--trim": "float", "--n-schools": "int", "--effect": "float"}
METAVAR = {"int": r"(<int>|INTEGER)", "float": r"(<float>|FLOAT)"}


def test_numeric_options_are_typed_as_numbers_in_help():
    seen = 0
    for name in COMMANDS:
        text = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}, terminal_width=200).output
        for flag in set(_options(name)) & set(NUMERIC):
            seen += 1
            assert re.search(rf"{flag} {METAVAR[NUMERIC[flag]]}", text), (name, flag)
    assert seen >= 15


def test_commands_listed_in_the_order_a_user_needs_them():
    names = [n for n in GROUP.list_commands(None) if n != "check"]
    assert names == ["estimate", "match", "sensitivity", "rct", "schools", "monitor", "power", "convert", "simulate"]
    if "check" in COMMANDS:
        assert GROUP.list_commands(None)[0] == "check"


def test_help_is_whole_at_80_columns():
    for args in ([], *[[name] for name in COMMANDS]):
        r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert r.exit_code == 0, r.output
        assert "…" not in r.output
        assert max(map(len, r.output.splitlines())) <= 80, args
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    for name, cmd in COMMANDS.items():  # each command's one-line summary is shown whole
        assert cmd.short_help and cmd.short_help in " ".join(top.split()), name


def test_usage_errors_are_one_line_naming_the_new_option():
    r = runner.invoke(app, ["match", "x.csv", "--out-dir", "o"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "--out-dir" in lines[0] and "--out" in lines[0]


# ---------------------------------------------------------------------------------------------
# --treated-label: the same results as 0/1 coding, in every command and design
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    m = simulate_matched(n_schools=24, n_pl_schools=6, students_per_grade=8, grades=[4, 5], seed=11).data
    r = simulate_cluster_rct(n_schools=12, n_blocks=3, students_per_school=30, grades=[4, 5], seed=12).data
    out = {}
    for name, df in (("matched", m), ("rct", r)):
        df.to_csv(d / f"{name}.csv", index=False)
        df.assign(treatment=df["treatment"].map({1: "PL", 0: "comparison"})).to_csv(d / f"{name}_labels.csv", index=False)
        out[name] = (d / f"{name}.csv", d / f"{name}_labels.csv")
    return out


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("design", ["matched", "rct"])
def test_estimate_treated_label_equals_0_1_coding(design, files, tmp_path):
    """Both designs, with placebo schools (matched) and school effects (cluster RCT)."""
    coded, labelled = files[design]
    base = ["estimate", "--design", design, "--quiet"] + (["--n-placebo", "4"] if design == "matched" else ["--no-placebo"])
    _ok([*base, str(coded), "--out", str(tmp_path / "a")])
    _ok([*base, str(labelled), "--treated-label", "PL", "--out", str(tmp_path / "b")])
    for table in ("overall.csv", "school_effects.csv") + (("placebo.csv",) if design == "matched" else ()):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / table), pd.read_csv(tmp_path / "b" / table))
    assert "no placebo schools" not in (tmp_path / "b" / "summary.md").read_text()


@pytest.mark.parametrize("command, design, table", [("match", "matched", "effect.csv"), ("rct", "rct", "itt.csv")])
def test_match_and_rct_treated_label_equals_0_1_coding(command, design, table, files, tmp_path):
    coded, labelled = files[design]
    _ok([command, str(coded), "--out", str(tmp_path / "a")])
    _ok([command, str(labelled), "--treated-label", "PL", "--out", str(tmp_path / "b")])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / table), pd.read_csv(tmp_path / "b" / table))
    # Without the label: one line naming the flag, not Python syntax.
    r = runner.invoke(app, [command, str(labelled), "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--treated-label" in r.output and "treated_label=" not in r.output


def test_power_from_a_file_with_treated_label(files):
    coded, labelled = files["rct"]
    base = ["power", "cluster-rct", "--schools", "12", "--format", "json", "--from"]
    a = json.loads(_ok([*base, str(coded)]).output)
    b = json.loads(_ok([*base, str(labelled), "--treated-label", "PL"]).output)
    assert a["components"] == b["components"] and a["plan"] == b["plan"]


# ---------------------------------------------------------------------------------------------
# Output to a file or a pipe is never cut off
# ---------------------------------------------------------------------------------------------
def test_tables_written_to_a_pipe_are_not_truncated(files, tmp_path):
    coded, _ = files["rct"]
    long = tmp_path / "long.csv"
    df = pd.read_csv(coded)
    df.assign(subject=df["subject"].map(lambda s: f"{s}_state_assessment_spring")).to_csv(long, index=False)
    r = runner.invoke(app, ["rct", str(long), "--out", str(tmp_path / "o")], env={"COLUMNS": "40"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.output
    assert "math_state_assessment_spring" in r.output
    n_t = df.loc[df.treatment == 1].groupby("subject").size().iloc[0]
    n_c = df.loc[df.treatment == 0].groupby("subject").size().iloc[0]
    assert f"{n_t}/{n_c}" in r.output  # randomized T/C counts whole, not "2591/2…"


def test_force_protects_a_folder_of_other_files(files, tmp_path):
    coded, _ = files["matched"]
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = runner.invoke(app, ["match", str(coded), "--out", str(out)])
    assert r.exit_code == 2 and "notes.txt" in r.output and "--force" in r.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    _ok(["match", str(coded), "--out", str(out), "--force"])
    _ok(["match", str(coded), "--out", str(tmp_path / "again")])
    _ok(["match", str(coded), "--out", str(tmp_path / "again")])  # a previous output is replaced
    assert (out / "notes.txt").read_text() == "mine" and (out / "effect.csv").exists()


def test_os_errors_are_one_line_with_exit_code_2(capsys, monkeypatch):
    import errno

    from pleval.cli._common import handle_errors

    monkeypatch.delenv("PLEVAL_DEBUG", raising=False)

    @handle_errors
    def write():
        raise OSError(errno.ENOSPC, "No space left on device", "results/report.pdf")

    with pytest.raises(typer.Exit) as exc:
        write()
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "report.pdf" in err and "Traceback" not in err


def test_schools_monitor_power_and_convert_read_a_sheet_and_refuse_reading_options_without_a_file(tmp_path):
    """`pleval schools`, `monitor`, `power --from` and `convert --file` had none of the reading
    options, so a school table on the second sheet of a workbook could not be read (and a
    semicolon file with decimal commas only by detection). Given without a file to read, they
    are an error rather than ignored."""
    effects = pd.read_csv("sample_data/school_effects.csv")
    book = tmp_path / "effects.xlsx"
    with pd.ExcelWriter(book) as w:
        pd.DataFrame({"about": ["pleval test"]}).to_excel(w, sheet_name="notes", index=False)
        effects.to_excel(w, sheet_name="effects", index=False)
    first = runner.invoke(app, ["schools", str(book), "-q"])
    assert first.exit_code == 2 and "not in the data" in first.output
    r = runner.invoke(app, ["schools", str(book), "--sheet", "effects", "-q"])
    ref = runner.invoke(app, ["schools", "sample_data/school_effects.csv", "-q"])
    assert r.exit_code == 0 and r.output == ref.output
    r = runner.invoke(app, ["convert", "--file", str(book), "--sheet", "1", "--column", "estimate",
                            "--out", str(tmp_path / "c.csv")])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(effects)
    for args, needs in ((["convert", "0.1", "--sheet", "x"], "--file"), (["power", "cluster-rct", "--na", "."], "--from FILE")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and f"--{args[2][2:]} reads a file: give {needs}" in r.output, r.output
