"""`pleval match` through typer's runner: it writes the matched sample, balance, equivalence
and effect tables, and they agree with the Python API."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from pleval.cli import app
from pleval.data import SAMPLE_COLUMNS
from pleval.matching import match
from pleval.simulate import simulate_matched

runner = CliRunner()


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("match") / "students.csv"
    simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=10, seed=5).data.to_csv(path, index=False)
    return path


def test_match_cli_writes_outputs_equal_to_api(csv, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["match", str(csv), "--method", "vcg", "--by", "subject", "-o", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("matched", "balance", "equivalence", "effect", "unmatched", "counts"):
        assert (out / f"{name}.csv").exists()
    assert "baseline equivalence" in r.output and "SD used for the effect size" in r.output
    api = match(pd.read_csv(csv), SAMPLE_COLUMNS, method="vcg").estimate(by="subject").to_frame()
    eff = pd.read_csv(out / "effect.csv")
    pd.testing.assert_series_equal(eff["estimate"], api["estimate"], check_names=False)
    matched = pd.read_csv(out / "matched.csv")
    assert {"_set", "_weight", "_pl_school"} <= set(matched.columns)


def test_match_cli_options_and_errors(csv, tmp_path):
    r = runner.invoke(app, ["match", str(csv), "--no-replace", "--k", "2", "--caliper", "0.1", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "without replacement" in r.output
    r = runner.invoke(app, ["match", str(csv), "--covariates", "female,income", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "income" in r.output
    r = runner.invoke(app, ["match", str(csv), "--sd", "wide", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "--sd" in r.output
    # the caliper as given (it was reported after scaling by the logit PS's SD)
    r = runner.invoke(app, ["match", str(csv), "--caliper", "-0.1", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "caliper must be a positive number" in r.output and "got -0.1" in r.output


@pytest.mark.parametrize("args, flag, methods", [
    (["--truncate", "0.99"], "truncate", "weighting"),
    (["--trim", "0.05"], "trim", "weighting"),
    (["--subclasses", "5"], "subclasses", "subclass"),
    (["--moments", "2"], "moments", "ebal"),
    (["--band", "0"], "band", "vcg"),
    (["--school-keys", "urbanicity"], "school_keys", "vcg"),
    (["--estimand", "ATE"], "estimand", "subclass, cem, weighting or ebal"),
])
def test_match_cli_options_of_another_method_are_an_error(csv, tmp_path, args, flag, methods):
    """An option of another matching method was ignored (``--truncate 0.99`` without ``--method
    weighting`` matched by propensity, untruncated): now an error naming the option and method,
    from ``pleval.match`` itself (so ``pleval estimate --set`` and the API say it too)."""
    r = runner.invoke(app, ["match", str(csv), *args, "-o", str(tmp_path)])
    assert r.exit_code == 2 and f"option {flag} applies to method {methods}; the method is propensity" in r.output
    method = methods.split(",")[0].split(" or ")[0]
    r = runner.invoke(app, ["match", str(csv), "--method", method, *args, "-o", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output


def test_match_cli_matchit_conventions_on_lalonde(tmp_path):
    """--conventions matchit reproduces MatchIt's lalonde sample sizes (tests/reference/lalonde.csv;
    see test_matching_matchit.py for the published numbers)."""
    from pathlib import Path

    data = Path(__file__).parent / "reference" / "lalonde.csv"
    r = runner.invoke(app, ["match", str(data), "--conventions", "matchit", "--outcome", "re78", "--treatment", "treat",
                            "--pretest", "none", "--covariates", "age,educ,race,married,nodegree,re74,re75",
                            "--school", "none", "--grade", "none", "--subject", "none", "--student-id", "id",
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    sizes = pd.read_csv(tmp_path / "out" / "sample_sizes.csv").set_index("sample")
    assert sizes.loc[["all", "matched", "unmatched"], "comparison"].tolist() == [429, 185, 244]
    assert "MatchIt conventions" in r.output


def test_match_cli_full_and_optimal_on_lalonde(tmp_path):
    """--method full --link probit and --method optimal --exact race: the API's matched samples
    (MatchIt's lalonde examples; test_matching_optimal.py has the published numbers)."""
    from pathlib import Path

    import pleval
    from pleval.data import Columns

    data = Path(__file__).parent / "reference" / "lalonde.csv"
    base = ["match", str(data), "--conventions", "matchit", "--outcome", "re78", "--treatment", "treat",
            "--pretest", "none", "--covariates", "age,educ,race,married,nodegree,re74,re75",
            "--school", "none", "--grade", "none", "--subject", "none", "--student-id", "id"]
    cols = Columns(outcome="re78", treatment="treat", student_id="id",
                   covariates=("age", "educ", "race", "married", "nodegree", "re74", "re75"))
    df = pd.read_csv(data)
    for extra, kw in ((["--method", "full", "--link", "probit"], dict(method="full", link="probit")),
                      (["--method", "optimal", "--exact", "race", "--k", "1"], dict(method="optimal", exact="race"))):
        out = tmp_path / kw["method"]
        r = runner.invoke(app, base + extra + ["-o", str(out)])
        assert r.exit_code == 0, r.output
        api = pleval.match(df, cols, conventions="matchit", **kw)
        got = pd.read_csv(out / "matched.csv")
        assert got["id"].tolist() == api.matched["id"].tolist()
        assert got["_weight"].to_numpy() == pytest.approx(api.matched["_weight"].to_numpy())
    assert "optimal 1:1 pair matching" in r.output


def test_match_cli_subclass_and_cem_on_lalonde(tmp_path):
    """--method subclass / cem with their options give the API's weights (MatchIt's examples;
    test_matching_subclass.py has the published numbers)."""
    from pathlib import Path

    import pleval
    from pleval.data import Columns

    data = Path(__file__).parent / "reference" / "lalonde.csv"
    base = ["match", str(data), "--conventions", "matchit", "--outcome", "re78", "--treatment", "treat",
            "--pretest", "none", "--school", "none", "--grade", "none", "--subject", "none", "--student-id", "id"]
    df = pd.read_csv(data)
    runs = (
        (["--method", "subclass", "--subclasses", "10", "--estimand", "ATE", "--min-n", "2",
          "--covariates", "age,educ,race,married,nodegree,re74,re75"],
         ("age", "educ", "race", "married", "nodegree", "re74", "re75"),
         dict(method="subclass", subclasses=10, estimand="ATE", min_n=2)),
        (["--method", "cem", "--covariates", "age,race,married,educ", "--cutpoints", "educ=5",
          "--grouping", "race=white+hispan"],
         ("age", "race", "married", "educ"),
         dict(method="cem", cutpoints={"educ": 5}, grouping={"race": [["white", "hispan"]]})),
    )
    for extra, cov, kw in runs:
        out = tmp_path / kw["method"]
        r = runner.invoke(app, base + extra + ["-o", str(out)])
        assert r.exit_code == 0, r.output
        api = pleval.match(df, Columns(outcome="re78", treatment="treat", student_id="id", covariates=cov),
                           conventions="matchit", **kw)
        got = pd.read_csv(out / "matched.csv")
        assert got["id"].tolist() == api.matched["id"].tolist()
        assert got["_weight"].to_numpy() == pytest.approx(api.matched["_weight"].to_numpy())
        assert "_subclass" in got.columns
    sizes = pd.read_csv(tmp_path / "cem" / "sample_sizes.csv").set_index("sample")
    assert sizes.loc["matched", "treated"] == 149  # MatchIt's cem example 1
    r = runner.invoke(app, base + ["--method", "cem", "--covariates", "age", "--cutpoints", "age", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--cutpoints" in r.output


def test_match_cli_mahvars_and_calipers(tmp_path):
    """--calipers and --exact on lalonde: MatchIt's ?method_nearest example 3 sample sizes
    (test_matching_constrained.py has the published numbers)."""
    from pathlib import Path

    data = Path(__file__).parent / "reference" / "lalonde.csv"
    base = ["match", str(data), "--conventions", "matchit", "--outcome", "re78", "--treatment", "treat",
            "--pretest", "none", "--school", "none", "--grade", "none", "--subject", "none", "--student-id", "id"]
    r = runner.invoke(app, base + ["--method", "mahalanobis", "--covariates", "age,educ,re74,re75,married,race",
                                   "--distance", "age,educ,re74,re75", "--exact", "married,race",
                                   "--calipers", "re74=0.2,re75=0.15", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    sizes = pd.read_csv(tmp_path / "a" / "sample_sizes.csv").set_index("sample")
    assert sizes.loc["matched"].tolist() == [83, 83]
    r = runner.invoke(app, base + ["--covariates", "age,educ,race,married,nodegree,re74,re75", "--mahvars",
                                   "age,educ,re74,re75", "--replace", "--k", "3", "--caliper", "0.02",
                                   "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    sizes = pd.read_csv(tmp_path / "b" / "sample_sizes.csv").set_index("sample")
    assert sizes.loc["matched", "treated"] == 162
    r = runner.invoke(app, base + ["--calipers", "re74", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--calipers" in r.output


def test_match_cli_weighting_ate_and_ebal(tmp_path):
    """--method ebal and --method weighting --estimand ATE write the API's weights and the
    weight summary (WeightIt's lalonde figures are in test_matching_weighting_parity.py)."""
    from pathlib import Path

    data = Path(__file__).parent / "reference" / "lalonde.csv"
    base = ["match", str(data), "--conventions", "matchit", "--outcome", "re78", "--treatment", "treat",
            "--pretest", "none", "--school", "none", "--grade", "none", "--subject", "none", "--student-id", "id",
            "--covariates", "age,educ,race,married,nodegree,re74,re75"]
    r = runner.invoke(app, base + ["--method", "ebal", "-o", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    ws = pd.read_csv(tmp_path / "e" / "weights.csv").set_index("group")
    assert round(ws.loc["comparison", "ess"], 2) == 98.46  # WeightIt's getting-started vignette
    r = runner.invoke(app, base + ["--method", "weighting", "--estimand", "ATE", "--moments", "1", "-o", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert "ATE inverse-probability weighting" in r.output
    m = pd.read_csv(tmp_path / "w" / "matched.csv")
    assert (m.loc[m["treat"] == 1, "_weight"] != 1).any()  # treated rows are weighted for the ATE


def test_match_cli_ps_model(csv, tmp_path):
    """--ps-model school_means gives the API's weights; fixed effects on whole-school PL is refused."""
    # 40 schools, 8 PL: the school means separate the groups, hence the ridge penalty
    r = runner.invoke(app, ["match", str(csv), "--method", "weighting", "--ps-model", "school_means", "--penalize",
                            "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    with pytest.warns(UserWarning, match="ridge"):
        api = match(pd.read_csv(csv), SAMPLE_COLUMNS, method="weighting", ps_model="school_means", penalize=True)
    got = pd.read_csv(tmp_path / "a" / "matched.csv")
    assert got["_weight"].to_numpy() == pytest.approx(api.matched["_weight"].to_numpy())
    r = runner.invoke(app, ["match", str(csv), "--method", "weighting", "--ps-model", "fixed", "-o", str(tmp_path / "b")])
    assert r.exit_code != 0 and "school_means" in r.output


def test_match_api_and_estimate_refuse_an_option_of_another_method(csv):
    from pleval import estimate
    from pleval.errors import DataError

    df = pd.read_csv(csv)
    with pytest.raises(DataError, match="option band applies to method vcg; the method is propensity"):
        match(df, SAMPLE_COLUMNS, band=0)
    with pytest.raises(DataError, match="option truncate applies to method weighting; the method is mahalanobis"):
        estimate(df, method="mahalanobis", truncate=0.99, workers=1)
    assert match(df, SAMPLE_COLUMNS, band=1.0, estimand="att").n_treated_matched > 0  # the defaults, as written


@pytest.mark.parametrize("method, option, methods", [
    ("vcg", {"caliper": 0.05}, "propensity, mahalanobis, optimal or full"),
    ("weighting", {"caliper": 0.1}, "propensity, mahalanobis, optimal or full"),
    ("cem", {"k": 3}, "propensity, mahalanobis, optimal or vcg"),
    ("full", {"k": 2}, "propensity, mahalanobis, optimal or vcg"),
    ("optimal", {"replace": True}, "propensity or mahalanobis"),
    ("vcg", {"order": "smallest"}, "propensity or mahalanobis"),
    ("subclass", {"ties": False}, "propensity or mahalanobis"),
    ("ebal", {"tie_cap": 5}, "propensity or mahalanobis"),
    ("propensity", {"distance": ["pretest"]}, "mahalanobis, optimal or full"),
])
def test_matching_options_a_method_ignores_are_an_error(csv, method, option, methods):
    """A caliper with VCG matching, k with CEM or full matching, replace with optimal matching,
    distance with propensity matching: each was accepted, recorded in the outputs' options as if
    applied, and ignored. Now an error naming the option and the methods it applies to (the
    pool engines check the same)."""
    from pleval.errors import DataError

    df = pd.read_csv(csv)
    name = next(iter(option))
    with pytest.raises(DataError, match=f"option {name} applies to method {methods}; the method is {method}"):
        match(df, SAMPLE_COLUMNS, method=method, **option)
    if method == "vcg":  # (distance is no pool option)
        from pleval.pool import match_pool

        with pytest.raises(DataError, match=f"option {name} applies to method {methods}; the method is vcg"):
            match_pool(df[df.treatment == 1], df[df.treatment == 0], SAMPLE_COLUMNS, method=method, engine="memory",
                       **option)
        with pytest.raises(DataError, match="option order applies to method propensity or mahalanobis; the method is vcg"):
            match_pool(df[df.treatment == 1], df[df.treatment == 0], SAMPLE_COLUMNS, method="vcg", engine="memory",
                       order="random")  # (not the pool's order='random' error)
    # no caliper, ties or k where the method uses them; False for no caliper is what vcg does anyway
    assert match(df, SAMPLE_COLUMNS, method="vcg", caliper=False, k=20).n_treated_matched > 0
    with pytest.raises(DataError, match="ties and tie_cap apply to nearest-neighbour matching without mahvars"):
        match(df, SAMPLE_COLUMNS, mahvars=["pretest"], ties=False)


def test_weighting_writes_a_readable_sample_sizes_table(tmp_path):
    """`pleval match --method weighting` (and ebal) wrote sample_sizes.csv as an empty 1-byte
    file that pandas cannot read. It now holds the sample sizes with the weights' effective
    sample size, as MatchResult.sample_sizes() gives them (MatchIt's 'Matched (ESS)')."""
    import warnings

    import pleval
    from pleval.data import SAMPLE_COLUMNS
    from pleval.errors import PlevalWarning

    r = runner.invoke(app, ["match", "sample_data/pl_matched_students.csv", "--method", "weighting",
                            "-o", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    got = pd.read_csv(tmp_path / "w" / "sample_sizes.csv").set_index("sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        want = pleval.match(pd.read_csv("sample_data/pl_matched_students.csv"), SAMPLE_COLUMNS,
                            method="weighting").sample_sizes()
    assert got.loc["matched (ESS)", "comparison"] == pytest.approx(want.loc["matched (ESS)", "comparison"], rel=1e-12)


def test_the_method_label_names_the_options_that_shaped_the_match():
    """A Mahalanobis caliper, mahvars, per-variable calipers and weighting's trim/truncate changed
    the match but not its label (summary and the effect's method text): a Mahalanobis caliper of
    0.5 left 2 PL rows unmatched under "1:1 nearest-neighbour Mahalanobis matching (with
    replacement, ties kept)"."""
    import warnings

    import pandas as pd

    import pleval
    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[(d["grade"] == 3) & (d["subject"] == "math")]
    cases = [(dict(method="mahalanobis", caliper=0.5), "caliper 0.5"),
             (dict(method="propensity", mahvars=["pretest"]), "Mahalanobis distance of pretest"),
             (dict(method="propensity", calipers={"pretest": 0.1}), "pretest within 0.1 SD"),
             (dict(method="weighting", trim=0.05), "trimmed at 0.05"),
             (dict(method="weighting", truncate=0.9), "truncated at the 0.9 quantile")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw, said in cases:
            m = pleval.match(d, SAMPLE_COLUMNS, **kw)
            assert said in m._method_label() and said in m.estimate().raw.method, (kw, m._method_label())


def test_option_values_that_were_silently_taken_are_errors():
    """k=True matched as 1:1 and printed "1:True"; min_n=-1 was taken; a CEM grouping naming a
    level not in the data (a misspelling) left its group unmerged without a word."""
    import pandas as pd
    import pytest

    import pleval
    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[(d["grade"] == 3) & (d["subject"] == "math")]
    for method in ("propensity", "vcg"):
        with pytest.raises(pleval.DataError, match=r"k( \(comparisons per PL student\))? must be a positive integer; got True"):
            pleval.match(d, SAMPLE_COLUMNS, method=method, k=True)
    with pytest.raises(pleval.DataError, match="min_n must be a whole number of at least 0; got -1"):
        pleval.match(d, SAMPLE_COLUMNS, method="subclass", min_n=-1)
    with pytest.raises(pleval.DataError, match=r"grouping of 'race' names level\(s\) not in the data: 'martian'"):
        pleval.match(d, SAMPLE_COLUMNS, method="cem", grouping={"race": [["white", "martian"]]})


def test_a_collinear_propensity_covariate_is_named():
    """A covariate constant in every row: the error listed all nine columns and said "drop a
    redundant covariate" without saying which."""
    import pandas as pd
    import pytest

    import pleval
    from pleval.data import SAMPLE_COLUMNS

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    d = d[(d["grade"] == 3) & (d["subject"] == "math")].assign(sped=0)
    with pytest.raises(pleval.DesignError, match="'sped' takes one value in every row; drop a redundant covariate"):
        pleval.match(d, SAMPLE_COLUMNS)
    d = d.assign(sped=d["frl"] + d["female"])
    with pytest.raises(pleval.DesignError, match="'sped' is a combination of the intercept and the columns before it"):
        pleval.match(d, SAMPLE_COLUMNS)


def test_match_by_prints_each_groups_sd(csv, tmp_path):
    """With --by, each group's SD is printed (before 2026-12-04 the first group's stood for all)."""
    r = runner.invoke(app, ["match", str(csv), "--by", "subject", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "o" / "effect.csv").drop_duplicates("subject")
    line = next(x for x in r.output.splitlines() if x.startswith("SD used"))
    assert all(f"{s}: {sd:.4g}" in line for s, sd in zip(eff["subject"], eff["sd"])) and len(eff) == 2


def test_match_by_writes_a_group_left_out_with_its_reason(tmp_path):
    """A group too small for its effect is a row of effect.csv with its reason and a 'not estimated'
    row of the console table (before 2026-12-04 it was missing from the file, and the console
    table then stopped on its missing numbers)."""
    d = pd.read_csv("sample_data/pl_matched_students.csv")
    pl, comp = d[d.treatment == 1].school_id.unique()[:1], d[d.treatment == 0].school_id.unique()[:2]
    small = tmp_path / "small.csv"
    d[d.school_id.isin([*pl, *comp])].to_csv(small, index=False)
    r = runner.invoke(app, ["match", str(small), "--method", "vcg", "--by", "subject", "--sd", "10",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "o" / "effect.csv", keep_default_na=False)
    gone = eff[eff["not_estimated"] != ""]
    assert gone["subject"].tolist() == ["math"] and "could not be estimated" in gone["not_estimated"].iloc[0]
    assert (gone["estimate"] == "").all() and (eff.loc[eff["not_estimated"] == "", "n_treated"] == "6").all()
    assert re.search(r"math\s+│ not estimated", r.output)


def test_match_by_a_column_other_than_subject_or_grade_labels_its_rows(csv, tmp_path):
    """The console's effect table kept only columns named subject or grade: with --by urbanicity its
    groups' rows had no label (as with --subject test --by test). Each row now names its group."""
    r = runner.invoke(app, ["match", str(csv), "--by", "urbanicity", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    api = match(pd.read_csv(csv), SAMPLE_COLUMNS).estimate(by="urbanicity")
    printed = dict(re.findall(r"│ (\w+)\s+│ raw\s+│\s+(-?[\d.]+) │", r.output))
    d = pd.read_csv(csv)
    assert sorted(printed) == sorted(d.loc[d.treatment == 1, "urbanicity"].unique())
    assert all(printed[g] == f"{e.raw.estimate:.3f}" for (g,), e in api.effects.items())


def test_caliper_and_no_caliper_together_are_an_error(csv, tmp_path):
    """--caliper 0.05 --no-caliper matched without a caliper and recorded none, the 0.05 dropped
    without a word; the two together are now an error naming both."""
    r = runner.invoke(app, ["match", str(csv), "--caliper", "0.05", "--no-caliper", "-o", str(tmp_path / "a")])
    assert r.exit_code != 0 and "--caliper 0.05 and --no-caliper contradict each other" in r.output
    assert not (tmp_path / "a" / "provenance.json").exists()
    r = runner.invoke(app, ["match", str(csv), "--no-caliper", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "provenance.json").read_text())["options"]["caliper"] is False


def test_effect_csv_names_the_matched_pl_students_when_some_are_left_out(csv, tmp_path):
    """effect.csv and the console say the estimate is about the PL students matched, with how many
    were left out and why (before 2026-12-05 effect.csv's label read "effect on the treated")."""
    r = runner.invoke(app, ["match", str(csv), "--no-replace", "--caliper", "0.01", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "effect.csv")
    un = pd.read_csv(tmp_path / "unmatched.csv")
    n = int((pd.read_csv(csv)["treatment"] == 1).sum())
    n_in = n - len(un)
    assert len(un) and (eff["n_treated"] == n_in).all()
    assert (eff["label"] == f"posttest: effect on the matched PL students ({n_in:,} of {n:,})").all()
    assert eff["note"].str.startswith(f"{len(un):,} of {n:,} PL rows").all()
    assert eff["note"].str.endswith("it is the effect on the PL students in it.").all()
    assert f"{len(un):,} of {n:,} PL rows" in " ".join(r.output.split())


def test_match_notes_few_comparison_schools_in_effect_csv_and_on_the_console(tmp_path):
    """Comparison students from three schools: effect.csv's note and the console (each group's with
    --by) say how many schools the comparison weight rests on."""
    d = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=10, seed=5).data
    comp = d.loc[d["treatment"] == 0, "school_id"].unique()[:3]
    path = tmp_path / "few.csv"
    d[(d["treatment"] == 1) | d["school_id"].isin(comp)].to_csv(path, index=False)
    r = runner.invoke(app, ["match", str(path), "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    eff = pd.read_csv(tmp_path / "o" / "effect.csv")
    assert eff["note"].str.contains("rests on few schools \\(3 comparison schools").all()
    assert "rests on few schools" in " ".join(r.output.split())
    r = runner.invoke(app, ["match", str(path), "--by", "subject", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert all(f"{s}: The comparison students' weight rests on few schools" in out for s in d["subject"].unique())
