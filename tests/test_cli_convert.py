"""`pleval convert` through typer's runner, and the top-level cli.py runner."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pleval.cli import app
from pleval.percentiles import to_percentile_points

runner = CliRunner()


def test_convert_values():
    r = runner.invoke(app, ["convert", "0.08", "0.25", "-0.1"])
    assert r.exit_code == 0, r.output
    assert "+3.19 percentile points" in r.output
    assert "+9.87" in r.output and "-3.98" in r.output
    assert "53rd" in r.output and "not percentage points" in r.output


def test_convert_baseline_inverse_and_ci():
    r = runner.invoke(app, ["convert", "0.25", "--baseline-percentile", "25"])
    assert f"{to_percentile_points(0.25, 25):+.2f}" in r.output
    r = runner.invoke(app, ["convert", "--from-percentile-points", "3"])
    assert "g = 0.0753" in r.output
    r = runner.invoke(app, ["convert", "--ci", "0.01", "0.15"])
    assert "+0.40 to +5.96" in r.output


def test_convert_file(tmp_path):
    src = tmp_path / "effects.csv"
    pd.DataFrame({"school": ["a", "b"], "g": [0.1, -0.2]}).to_csv(src, index=False)
    r = runner.invoke(app, ["convert", "--file", str(src), "--column", "g"])
    assert r.exit_code == 0, r.output
    out = pd.read_csv(tmp_path / "effects_percentile_points.csv")
    assert out["g_percentile_points"].tolist() == pytest.approx([3.9828, -7.9260], abs=1e-3)
    r = runner.invoke(app, ["convert", "--file", str(src), "--column", "nope"])
    assert r.exit_code == 2 and "'nope'" in r.output


@pytest.mark.parametrize(
    "args, message",
    [(["convert", "0.1", "-p", "100"], "baseline_percentile"), (["convert"], "give effect sizes"),
     (["convert", "--from-percentile-points", "60"], "between 0 and 100"),
     (["convert", "0.1", "--ci", "0.2", "0.0"], "low end (0.2) exceeds its high end (0)"),
     (["convert", "0.1", "--from-percentile-points", "60"], "between 0 and 100")],
)
def test_convert_errors_exit_2_one_line(args, message):
    """An error is the only line printed: no conversion printed before it."""
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output and "percentile points (from" not in r.output


def test_top_level_cli_py_runs_same_app():
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "cli.py"), "convert", "0.08"], capture_output=True, text=True)
    assert r.returncode == 0 and "+3.19" in r.stdout
    r = subprocess.run([sys.executable, str(root / "cli.py"), "--version"], capture_output=True, text=True)
    assert r.stdout.startswith("pleval ")


def test_file_with_text_and_missing_effect_sizes_lists_both(tmp_path):
    """Text among the effect sizes and missing ones are both named, with their file rows (before,
    a missing value hid the text, and text alone raised pandas' own error)."""
    src = tmp_path / "g.csv"
    src.write_text("school,g\nA,0.1\nB,abc\nC,\nD,0.2\n")
    r = runner.invoke(app, ["convert", "--file", str(src), "--column", "g"])
    assert r.exit_code == 2
    assert ("column 'g': 1 row(s) hold text such as 'abc' (file row(s) 3); 1 row(s) are missing (file row(s) 4); "
            "correct, fill or drop them first") in r.output
    src.write_text("school,g\nA,0.1\nB,abc\n")
    r = runner.invoke(app, ["convert", "--file", str(src), "--column", "g"])
    assert r.exit_code == 2 and "hold text such as 'abc' (file row(s) 3)" in r.output and "Traceback" not in r.output


def test_options_that_would_be_ignored_or_contradict_are_errors(tmp_path):
    """With --file, effect sizes, --ci and --from-percentile-points were dropped without a word;
    --ci was attached to two effect sizes, or to one it does not contain, silently."""
    from typer.testing import CliRunner

    from pleval.cli import app

    f = tmp_path / "es.csv"
    f.write_text("school,es\nA,0.1\n")
    run = CliRunner().invoke
    res = run(app, ["convert", "0.1", "--file", str(f), "--column", "es", "--ci", "0", "0.5"])
    assert res.exit_code != 0 and "effect sizes and --ci cannot be given with it" in res.output
    assert "does not contain the effect size 0.5" in run(app, ["convert", "0.5", "--ci", "0.1", "0.3"]).output
    assert "--ci is one interval; 2 effect sizes" in run(app, ["convert", "0.1", "0.2", "--ci", "0.1", "0.3"]).output
    assert "--column and --out go with --file" in run(app, ["convert", "0.1", "--column", "es"]).output
    ok = run(app, ["convert", "0.2", "--ci", "0.1", "0.3"])
    assert ok.exit_code == 0 and "+3.98 to +11.79" in ok.output


def test_an_implausible_effect_size_is_warned_of(tmp_path):
    """`pleval convert 40` printed '+50.00 percentile points' without a word: 40 SD is surely
    percentile or score points. Beyond ±2 SD a warning says so, as pleval schools warns; the
    conversion is still printed. Plausible values get no warning."""
    import warnings

    from typer.testing import CliRunner

    from pleval.cli import app
    from pleval.errors import PlevalWarning

    with pytest.warns(PlevalWarning, match=r"1 effect size\(s\) beyond ±2 SD \(40\): effect sizes are in SD units"):
        r = CliRunner().invoke(app, ["convert", "40"])
    assert r.exit_code == 0 and "+50.00 percentile points" in r.output
    with warnings.catch_warnings():
        warnings.simplefilter("error", PlevalWarning)
        assert CliRunner().invoke(app, ["convert", "0.08", "--ci", "0.01", "0.15"]).exit_code == 0
    pd.DataFrame({"g": [0.1, 12.5, -3.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(PlevalWarning, match=r"2 value\(s\) of column 'g' beyond ±2 SD \(12.5, -3\)"):
        r = CliRunner().invoke(app, ["convert", "--file", str(tmp_path / "t.csv"), "--column", "g"])
    assert r.exit_code == 0


def test_a_value_that_rounds_to_zero_prints_without_a_sign():
    """`pleval convert -- -0.0001` printed "-0.00 percentile points" beside "No shift", and
    --from-percentile-points -0.00001 "g = -0.0000"; the baseline is printed as given (50.5, not
    the 50th)."""
    out = runner.invoke(app, ["convert", "--", "-0.0001"]).output
    assert "-0.00 " not in out and "0.00 percentile points" in out and "No shift" in out
    out = runner.invoke(app, ["convert", "--from-percentile-points", "-0.00001"]).output
    assert "g = 0.0000" in out and "-0.0000" not in out
    out = runner.invoke(app, ["convert", "0.1", "-p", "50.5"]).output
    assert "from the 50.5th percentile" in out and "about the 54th" in out


def test_convert_file_names_infinite_rows_and_refuses_other_formats(tmp_path):
    """An infinite effect size is named with its column and rows (it was "g must be finite; 1
    value(s) are NaN or infinite"); --out must end in .csv or .xlsx (a .parquet name got CSV text,
    which pleval's own reader then refused)."""
    src = tmp_path / "es.csv"
    pd.DataFrame({"school": ["a", "b", "c"], "g": ["0.1", "inf", "0.2"]}).to_csv(src, index=False)
    r = runner.invoke(app, ["convert", "--file", str(src), "--column", "g"])
    assert r.exit_code == 2 and "column 'g': 1 row(s) are infinite (file row(s) 3)" in r.output
    ok = tmp_path / "ok.csv"
    pd.DataFrame({"g": [0.1, 0.2]}).to_csv(ok, index=False)
    r = runner.invoke(app, ["convert", "--file", str(ok), "--column", "g", "--out", str(tmp_path / "x.parquet")])
    assert r.exit_code == 2 and ".csv or .xlsx" in r.output and not (tmp_path / "x.parquet").exists()
