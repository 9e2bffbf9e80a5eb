"""pleval.sensitivity.sensitivity on matched comparisons: consistency with the matched estimate,
the Rosenbaum input, the placebo outcome and bad input."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import SAMPLE_COLUMNS, file_sha256
from pleval.errors import DataError, DesignError
from pleval.inference import ols
from pleval.outputs import PRINT_DPI
from pleval.matching.effect import effect_design
from pleval.sensitivity import sensitivity
from pleval.simulate import simulate_matched


@pytest.fixture(scope="module")
def data():
    df = simulate_matched(seed=11, n_schools=60, n_pl_schools=8, students_per_grade=8, grades=(4, 5)).data
    rng = np.random.default_rng(0)
    # a score from the year before the pretest: related to the pretest, untouched by the program
    df["prior2"] = df["pretest"] - 5 + rng.normal(0, 6, len(df))
    # a "placebo" that the program did touch (the posttest plus noise): its effect is not zero
    df["touched"] = df["posttest"] + rng.normal(0, 3, len(df))
    return df


@pytest.fixture(scope="module")
def matched(data):
    return pleval.match(data, SAMPLE_COLUMNS, method="propensity", seed=1)


def test_the_sentence_says_what_q_asks(matched):
    """RV_q is the strength that moves the estimate by q of itself, RV_{q,α} the one that brings
    (1 − q)·estimate into the confidence interval. Before, the sentence said "to zero" and "no
    longer statistically significant" whatever q was (at q = 0.5 and RV_{q,α} = 0: "already not
    statistically significant" of a significant estimate)."""
    one = sensitivity(matched, by="subject", q=1.0)["math"]
    half = sensitivity(matched, by="subject", q=0.5)["math"]
    assert f"{100 * one.ovb.rv_q:.1f}%" in one.sentence() and "to zero;" in one.sentence()
    assert "statistically significant" in one.sentence()
    h = half.sentence()
    assert f"{100 * half.ovb.rv_q:.1f}%" in h and "by 50% of its size;" in h
    assert "statistically significant" not in h and "consistent with an effect of 50% of its size" in h
    assert "To bring it to zero: " in h  # the benchmark multiple is the one to zero


def test_the_sentence_never_rounds_a_positive_strength_to_zero():
    """A barely significant estimate has a tiny RV_{q,α}, and a fragile one a small multiple of
    the pretest; each prints with the digits that keep it above zero (before 2026-12-04: "0.0% of
    each would make it no longer significant" of a significant estimate, "a confounder 0.0 times
    as strongly related"). Both numbers recomputed here from Cinelli & Hazlett's formulas."""
    import re
    from types import SimpleNamespace as NS

    from scipy import optimize, stats

    from pleval.sensitivity.evalue import evalue_smd
    from pleval.sensitivity.matched import SubjectSensitivity
    from pleval.sensitivity.ovb import omitted_variable_bounds

    se_c, dof, se, df = 0.1719, 13660, 0.5592, 30  # p = 0.049 on the CR2 t
    est = stats.t.isf(0.049 / 2, df) * se
    f = est / se_c / np.sqrt(dof) - (se / se_c) * stats.t.isf(0.025, df) / np.sqrt(dof - 1)
    rv_qa = 0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2)
    o = omitted_variable_bounds(est, se_c, dof, se=se, df=df, benchmarks={"pretest": (0.0008, 0.47)})
    s = SubjectSensitivity("", NS(raw=NS(estimate=est)), o, evalue_smd(0.08, 0.001, 0.16), None, benchmark="pretest")
    shown = float(re.search(r"; ([0-9.]+)% of each would make it no longer", s.sentence()).group(1))
    assert 0 < shown and abs(shown - 100 * rv_qa) <= 0.005 < 100 * rv_qa

    r2d, r2y, est2, se2, dof2 = 0.3, 0.6, 0.05, 0.1, 1000

    def bias(k):  # benchmark bound (Cinelli & Hazlett 2020, §6.1) and the bias it implies
        r2dz = k * r2d / (1 - r2d)
        eta = k * r2d**2 / ((1 - k * r2d) * (1 - r2d))
        r2yz = ((np.sqrt(k) + np.sqrt(eta)) / np.sqrt(1 - eta)) ** 2 * r2y / (1 - r2y)
        return se2 * np.sqrt(dof2) * np.sqrt(r2yz * r2dz / (1 - r2dz)) - est2

    k = optimize.brentq(bias, 1e-9, 1.0)
    o2 = omitted_variable_bounds(est2, se2, dof2, benchmarks={"pretest": (r2d, r2y)})
    s2 = SubjectSensitivity("", NS(raw=NS(estimate=est2, pvalue=2 * stats.t.sf(est2 / se2, dof2))), o2, evalue_smd(0.1, 0.0, 0.2), None, benchmark="pretest")
    shown = float(re.search(r"a confounder ([0-9.]+) times", s2.sentence()).group(1))
    assert 0 < shown and abs(shown - k) <= 0.005 < k


def test_ovb_consistent_with_matched_estimate(matched):
    c = matched.columns
    eff = matched.estimate(by="subject")
    s = sensitivity(matched, by="subject", effects=eff, placebo_outcome="prior2")
    assert set(k[0] for k, _ in s) == {"math", "reading"}
    r = s["math"]
    assert r.ovb.estimate == pytest.approx(eff["math"].raw.estimate, rel=1e-9)
    assert r.ovb.se == eff["math"].raw.se and r.ovb.df == eff["math"].raw.df
    part = matched.matched[matched.matched[c.subject] == "math"]
    des = effect_design(part, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest, covariates=c.covariates,
                        strata=matched.strata, school=c.school)
    fit = ols(des.y, des.X, weights=des.weights, vcov="classical", names=des.names)
    assert r.ovb.se_classical == pytest.approx(fit.coef(c.treatment)[1], rel=1e-8)
    assert list(r.ovb.benchmarks["benchmark"])[0] == "pretest" and r.benchmark == "pretest"
    assert r.evalue.effect_size == eff["math"].effect_size.estimate
    sizes = part.groupby("_set").size()  # 1:1 matching: pairs, unless comparisons tied at the match distance are kept
    assert r.rosenbaum.test.startswith("Wilcoxon" if (sizes == 2).all() else "aligned rank")
    assert r.rosenbaum.n_sets == len(sizes)
    assert "%" in r.sentence()
    f = s.to_frame()
    assert {"subject", "kind", "label", "value"} <= set(f.columns)
    assert {"estimate", "robustness value", "bound", "e-value", "rosenbaum", "placebo outcome"} <= set(f["kind"])
    # the direction is the estimate's, chosen from the data: the test is two-sided, its p bound
    # twice the one-sided one (capped at 1); before 2026-12-05 one-sided at α
    ros = r.rosenbaum
    assert ros.two_sided and ros.direction == ("less" if eff["math"].raw.estimate < 0 else "greater")
    rows = f[(f["subject"] == "math") & (f["kind"] == "rosenbaum")]
    assert rows["label"].str.contains("two-sided").all()
    np.testing.assert_allclose(rows["pvalue"].iloc[1:], np.minimum(2 * ros.table["pvalue_upper"], 1.0), rtol=1e-12)
    assert rows["value"].iloc[0] == ros.gamma_alpha


def _one_sided_reference(m, subject, direction):
    """Rosenbaum bounds in ``direction`` (one-sided, as ``rosenbaum_bounds`` tests a direction
    given in advance) on the matched sets of ``subject``: the outcome residualized on the
    matched regression's columns but PL by numpy's weighted least squares."""
    from pleval.sensitivity import rosenbaum_bounds

    c = m.columns
    part = m.matched[m.matched[c.subject] == subject]
    des = effect_design(part, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest, covariates=c.covariates,
                        strata=m.strata, school=c.school)
    assert len(des.y) == len(part)
    X = des.X[:, [j for j, n in enumerate(des.names) if n != c.treatment]]
    sw = np.sqrt(des.weights)
    resid = des.y - X @ np.linalg.lstsq(X * sw[:, None], des.y * sw, rcond=None)[0]
    return rosenbaum_bounds(resid, part["_set"].to_numpy(), part[c.treatment].to_numpy() == 1, direction=direction,
                            hl_gammas=(1.5,))


@pytest.mark.parametrize("direction", ["greater", "less"])
def test_rosenbaum_direction_fixed_in_advance_is_tested_one_sided(matched, direction):
    """``rosenbaum_direction="greater"`` / ``"less"``: a direction fixed in advance (a one-sided
    hypothesis registered before the data) is tested one-sided at α, as
    ``rosenbaum_bounds(direction=...)``; the default takes the estimate's sign and tests it
    two-sided. Before 2026-12-05 the matched analysis always took the estimate's sign."""
    s = sensitivity(matched, by="subject", rosenbaum_direction=direction, hl_gammas=[1.5])
    default = sensitivity(matched, by="subject", hl_gammas=[1.5])
    for key, r in s:
        ros, ref = r.rosenbaum, _one_sided_reference(matched, key[0], direction)
        assert not ros.two_sided and ros.direction == direction and not ref.two_sided
        assert list(ros.table.columns) == list(ref.table.columns)  # (no two-sided column)
        np.testing.assert_allclose(ros.table.to_numpy(float), ref.table.to_numpy(float), rtol=1e-9)
        assert ros.gamma_alpha == pytest.approx(ref.gamma_alpha, rel=1e-9)
        rows = s.to_frame().query("subject == @key[0] and kind == 'rosenbaum'")
        assert rows["label"].str.contains(f"one-sided '{direction}'").all()
        np.testing.assert_allclose(rows["pvalue"].iloc[1:], ref.table["pvalue_upper"], rtol=1e-12)
        # the default's two-sided bound at Γ = 1 is twice this one-sided bound when the estimate points this way
        two = default[key].rosenbaum
        if two.direction == direction:
            assert two.table["pvalue_upper_two_sided"].iloc[0] == pytest.approx(
                min(2 * ref.table["pvalue_upper"].iloc[0], 1.0), rel=1e-9)


def test_rosenbaum_direction_must_be_greater_less_or_empty(matched, data):
    """Anything but "greater", "less", "" or None is an error naming the option, before any fit."""
    assert sensitivity(matched, by="subject", rosenbaum_direction="")["math"].rosenbaum.two_sided
    for bad in ("up", "Greater", 1, True):
        with pytest.raises(DataError, match="^rosenbaum_direction must be 'greater' or 'less'"):
            sensitivity(matched, by="subject", rosenbaum_direction=bad, fits=iter(()))
        with pytest.raises(DataError, match="^option rosenbaum_direction must be 'greater' or 'less'"):
            pleval.estimate(data, design="matched", rosenbaum_direction=bad)


def test_estimate_and_run_toml_carry_the_rosenbaum_direction(data, matched, tmp_path):
    """pleval.estimate(rosenbaum_direction="greater"): each subject's bounds are the one-sided
    ones of that direction, the report names the test, run.toml records the option (the
    default "" too) and the `pleval estimate --rosenbaum-direction` flag gives the same; a run
    from that run.toml repeats it."""
    import tomllib

    from typer.testing import CliRunner

    from pleval.cli import app
    from pleval.report import save

    ev = pleval.estimate(data, design="matched", seed=1, placebo=False, rosenbaum_direction="greater",
                         hl_gammas=[1.5])
    for subject in ("math", "reading"):
        ros, ref = ev.details[subject]["sensitivity"].rosenbaum, _one_sided_reference(matched, subject, "greater")
        assert not ros.two_sided and ros.direction == "greater"
        np.testing.assert_allclose(ros.table.to_numpy(float), ref.table.to_numpy(float), rtol=1e-9)
        assert ros.gamma_alpha == pytest.approx(ref.gamma_alpha, rel=1e-9)
    out = save(ev, tmp_path / "api")
    assert "Rosenbaum Γ at which the one-sided 'greater' p bound reaches 0.05" in (out / "summary.md").read_text()
    assert tomllib.loads((out / "run.toml").read_text())["options"]["rosenbaum_direction"] == "greater"
    plain = pleval.estimate(data, design="matched", seed=1, placebo=False, sensitivity=False)
    assert plain.options["rosenbaum_direction"] == ""

    src = tmp_path / "students.csv"
    data.to_csv(src, index=False)
    first, again = tmp_path / "cli", tmp_path / "again"
    res = CliRunner().invoke(app, ["estimate", str(src), "--seed", "1", "--no-placebo",
                                   "--rosenbaum-direction", "greater", "--out", str(first), "--quiet"])
    assert res.exit_code == 0, res.output
    assert tomllib.loads((first / "run.toml").read_text())["options"]["rosenbaum_direction"] == "greater"
    f = pd.read_csv(first / "sensitivity.csv")
    _assert_one_sided_rows(f, matched, "greater")
    res = CliRunner().invoke(app, ["estimate", "--config", str(first / "run.toml"), "--out", str(again), "--quiet"])
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(pd.read_csv(again / "sensitivity.csv"), f)
    bad = CliRunner().invoke(app, ["estimate", str(src), "--rosenbaum-direction", "up", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "option rosenbaum_direction must be 'greater' or 'less'" in " ".join(bad.output.split())


def _assert_one_sided_rows(f: pd.DataFrame, matched, direction: str) -> None:
    """sensitivity.csv's Rosenbaum rows of each subject: labelled one-sided in ``direction``, Γ at
    α and the p bounds those of :func:`_one_sided_reference`."""
    for subject in ("math", "reading"):
        ref = _one_sided_reference(matched, subject, direction)
        rows = f[(f["subject"] == subject) & (f["kind"] == "rosenbaum")]
        assert rows["label"].str.contains(f"one-sided '{direction}'").all()
        assert rows["value"].iloc[0] == pytest.approx(ref.gamma_alpha, rel=1e-9)
        np.testing.assert_allclose(rows["pvalue"].iloc[1:], ref.table["pvalue_upper"], rtol=1e-9)


def test_cli_sensitivity_takes_the_rosenbaum_direction(data, tmp_path):
    """`pleval sensitivity --rosenbaum-direction less`: the one-sided bounds of that direction in
    sensitivity.csv and the summary, the option in provenance.json; a bad value is an error."""
    from typer.testing import CliRunner

    from pleval.cli import app

    src = tmp_path / "students.csv"
    data.to_csv(src, index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sensitivity", str(src), "--rosenbaum-direction", "less", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "one-sided 'less', the direction fixed in advance" in " ".join(res.output.split())
    f = pd.read_csv(out / "sensitivity.csv")
    _assert_one_sided_rows(f, pleval.match(data, SAMPLE_COLUMNS, method="propensity"), "less")  # the command's match (seed 0)
    assert json.loads((out / "provenance.json").read_text())["options"]["rosenbaum_direction"] == "less"
    bad = CliRunner().invoke(app, ["sensitivity", str(src), "--rosenbaum-direction", "down", "--out", str(out)])
    assert bad.exit_code == 2 and "rosenbaum_direction must be 'greater' or 'less'" in " ".join(bad.output.split())


def test_placebo_outcome(matched):
    """A pre-program score shows no 'effect' (its CI covers zero); a score the program touched does."""
    s = sensitivity(matched, by="subject", placebo_outcome="prior2")
    for _, r in s:
        p = r.placebo.raw
        assert p.ci_low < 0 < p.ci_high
    touched = sensitivity(matched, by="subject", placebo_outcome="touched")
    eff = matched.estimate(by="subject")
    for key, r in touched:
        assert r.placebo.raw.estimate == pytest.approx(eff[key].raw.estimate, abs=4 * eff[key].raw.se)


def test_placebo_missing_rows_counted(data):
    d = data.copy()
    d.loc[d.index[::7], "prior2"] = np.nan
    m = pleval.match(d, SAMPLE_COLUMNS, method="vcg", seed=1)
    s = sensitivity(m, by="subject", placebo_outcome="prior2")
    r = s["math"]
    assert any("without it left out" in n for n in r.notes)
    assert r.rosenbaum.test.startswith("aligned rank")  # VCG: many comparisons per set


def test_placebo_outcome_takes_the_estimates_standard_errors(data):
    """The placebo outcome is fitted with the SE the run asked for. Before, it kept CR2 (by
    school) whatever ``vcov`` the estimate used: with CR1 or HC1 its CI was on another scale of
    uncertainty than the estimate's. The same matches with the placebo score as the outcome give
    the placebo's numbers exactly (the outcome plays no part in matching)."""
    m = pleval.match(data, SAMPLE_COLUMNS, method="propensity", seed=1, replace=True)
    m2 = pleval.match(data.assign(posttest=data["prior2"]), SAMPLE_COLUMNS, method="propensity", seed=1, replace=True)
    for vcov in ("CR1", "HC1", "classical"):
        s = sensitivity(m, by="subject", placebo_outcome="prior2", vcov=vcov)
        e, main = m2.estimate(by="subject", vcov=vcov), m.estimate(by="subject", vcov=vcov)
        for key, r in s:
            got, want = r.placebo.raw, e[key].raw
            assert got.estimate == pytest.approx(want.estimate, rel=1e-10)
            assert got.se == pytest.approx(want.se, rel=1e-10) and got.df == want.df
            assert f"{vcov} SE" in got.method and ("by school" in got.method) == (vcov == "CR1")  # (HC: not by school)
            assert r.ovb.se == main[key].raw.se  # the estimate analysed is the one fitted with vcov


def test_placebo_rows_left_out_keep_each_sets_analysis_weight(data):
    """With analysis weights a set's comparisons carry the PL student's weight, not 1. When some
    lack the placebo score the others are scaled back to that weight (before: to 1, which
    re-weighted the PL students). Checked against statsmodels WLS on the sets built by hand."""
    import statsmodels.api as sm

    from dataclasses import replace

    d = data.copy()
    rng = np.random.default_rng(5)
    d["w"] = rng.uniform(0.5, 3.0, len(d))
    d.loc[d.index[::7], "prior2"] = np.nan
    cols = replace(SAMPLE_COLUMNS, weight="w")
    m = pleval.match(d, cols, method="vcg", seed=1)
    s = sensitivity(m, by="subject", placebo_outcome="prior2")
    for subject in ("math", "reading"):
        long = m.matched[m.matched["subject"] == subject].copy()
        long["prior2"] = d.loc[long.index, "prior2"].to_numpy()
        t = long["treatment"].to_numpy() == 1
        lost = long.loc[t & long["prior2"].isna().to_numpy(), "_set"]
        long = long[~long["_set"].isin(lost) & long["prior2"].notna()]
        t = long["treatment"].to_numpy() == 1
        comp = long[~t].groupby("_set")["_weight"].transform("sum")
        pl_w = long[t].set_index("_set")["_weight"]
        long.loc[~t, "_weight"] = long.loc[~t, "_weight"] * long.loc[~t, "_set"].map(pl_w) / comp
        long = long[long["_set"].isin(long.loc[~t, "_set"])]
        des = effect_design(long, outcome="prior2", treatment="treatment", pretests=("pretest",),
                            covariates=SAMPLE_COLUMNS.covariates, strata=m.strata, school="school_id")
        fit = sm.WLS(des.y, des.X, weights=des.weights).fit()
        j = list(des.names).index("treatment")
        assert s[subject].placebo.raw.estimate == pytest.approx(fit.params[j], rel=1e-9)


def test_bad_input(matched, data):
    with pytest.raises(DesignError, match="pretest, covariate or matching variable"):
        sensitivity(matched, placebo_outcome="frl")
    with pytest.raises(DataError, match="not in the data"):
        sensitivity(matched, placebo_outcome="nope")
    with pytest.raises(DataError, match="benchmark"):
        sensitivity(matched, benchmarks=["school_poverty"])
    with pytest.raises(DataError, match="^gammas: every Γ must be a finite number"):
        sensitivity(matched, gammas=(np.nan,))  # gave p = 1 at Γ = NaN before 2026-12-04
    with pytest.raises(DataError, match="^hl_gammas: every Γ must be a finite number"):
        sensitivity(matched, hl_gammas=(np.inf,))
    w = pleval.match(data, SAMPLE_COLUMNS, method="weighting", seed=1)
    s = sensitivity(w, by="subject")
    assert s["math"].rosenbaum is None and any("no Rosenbaum" in n for n in s["math"].notes)


def test_contour_plot(matched):
    from pleval.plots import ovb_contour

    r = sensitivity(matched, by="subject")["math"]
    fig = ovb_contour(r.ovb, main=r.benchmark)
    assert len(fig.axes) == 2
    assert len(ovb_contour(r.ovb, which="t").axes) == 1
    with pytest.raises(DataError):
        ovb_contour(r.ovb, which="nope")


def test_cli_sensitivity(data, tmp_path):
    from typer.testing import CliRunner

    from pleval.cli import app

    src = tmp_path / "students.csv"
    data.to_csv(src, index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sensitivity", str(src), "--placebo-outcome", "prior2", "--hl-gamma", "1.5",
                                   "--statistic", "huber", "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = pd.read_csv(out / "sensitivity.csv")
    assert set(f["subject"]) == {"math", "reading"} and "placebo outcome" in set(f["kind"])
    assert f.loc[f["kind"] == "rosenbaum", "label"].str.contains("Huber M-statistic").any()
    assert f.loc[f["kind"] == "rosenbaum", "label"].str.contains("two-sided").all()
    assert "the upper bound on the two-sided p-value reaches α" in " ".join(res.output.split())
    assert (out / "contour_math.png").stat().st_size > 1000
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["kind"] == "pleval sensitivity outputs" and prov["input"]["sha256"] == file_sha256(src)
    assert prov["options"]["hl_gammas"] == [1.5] and prov["options"]["rosenbaum_statistic"] == "huber"
    assert prov["options"]["method"] == "propensity" and prov["columns"]["outcome"] == ["posttest"]
    from PIL import Image

    with Image.open(out / "contour_reading.png") as im:
        assert im.info["dpi"] == pytest.approx((PRINT_DPI, PRINT_DPI), abs=0.5)
    bad = CliRunner().invoke(app, ["sensitivity", str(src), "--kd", "x", "--out", str(out)])
    assert bad.exit_code == 2 and "--kd" in bad.output
    for flag in ("--gammas", "--hl-gamma"):  # NaN read as a number before 2026-12-04
        bad = CliRunner().invoke(app, ["sensitivity", str(src), flag, "1.5,nan", "--out", str(out)])
        assert bad.exit_code == 2 and f"{flag} must be comma-separated finite numbers" in bad.output


def test_estimate_writes_sensitivity(data, tmp_path):
    """pleval.estimate: a sensitivity result per subject, in Evaluation.sensitivity and sensitivity.csv."""
    ev = pleval.estimate(data, design="matched", seed=1, placebo=False, placebo_outcome="prior2", hl_gammas=[1.5],
                         school_sensitivity=True)
    f = ev.sensitivity
    sch = ev.schools  # each PL school's robustness values (school_effects(..., robustness_q=1))
    assert {"partial_r2", "rv_q", "rv_qa"} <= set(sch.columns)
    ok = sch["rv_q"].notna()
    assert ok.any() and (sch.loc[ok, "rv_qa"] <= sch.loc[ok, "rv_q"]).all()
    assert set(f["subject"]) == {"math", "reading"}
    assert {"robustness value", "bound", "e-value", "rosenbaum", "placebo outcome"} <= set(f["kind"])
    assert ev.details["math"]["sensitivity"].ovb.estimate == pytest.approx(ev.effect("math").raw.estimate)
    from pleval.report import save

    out = save(ev, tmp_path / "res")
    assert pd.read_csv(out / "sensitivity.csv").shape == f.shape
    assert "How fragile is this result?" in (out / "summary.md").read_text()
    assert "Rosenbaum Γ at which the two-sided p bound reaches 0.05" in (out / "summary.md").read_text()
    assert (out / "plots" / "sensitivity_math.png").stat().st_size > 1000
    assert len(pleval.estimate(data, design="matched", seed=1, placebo=False, sensitivity=False).sensitivity) == 0
    with pytest.raises(DataError, match="school_sensitivity"):
        pleval.estimate(data, design="matched", school_sensitivity="yes")
    with pytest.raises(DataError, match="hl_gammas"):
        pleval.estimate(data, design="matched", hl_gammas=[0.5])


def test_estimate_holds_one_subject_design_at_a_time(data, monkeypatch):
    """In one process, pleval.estimate fits the subjects lazily: each subject's rows and design
    are dropped after its effect and the sensitivity analysis that reads them, before its
    Rosenbaum bounds and the next subject's design are formed (the memory of large files);
    with a placebo worker every subject is fitted first (the worker waits for their SD). Both
    orders give the same effects and sensitivity tables."""
    import gc
    import weakref

    import pleval.matching.results as results
    import pleval.sensitivity.matched as matched_mod

    made = []
    build, bounds = results.effect_design, matched_mod._bounds

    def alive():
        return [r() for r in made if r() is not None]

    def tracked(*args, **kw):
        tracked.overlap = max(tracked.overlap, len(alive()))
        made.append(None)
        d = build(*args, **kw)
        made[-1] = weakref.ref(d)
        return d

    def tracked_bounds(*args, **kw):
        tracked.during_bounds = max(tracked.during_bounds, len(alive()))
        return bounds(*args, **kw)

    tracked.overlap = tracked.during_bounds = 0
    monkeypatch.setattr(results, "effect_design", tracked)
    monkeypatch.setattr(matched_mod, "_bounds", tracked_bounds)
    gc.collect()
    gc.disable()  # freed when dropped, not by the cyclic collector
    try:
        one = pleval.estimate(data, design="matched", seed=1, placebo=False, workers=1)
    finally:
        gc.enable()
    assert len(made) == 2 and tracked.overlap == 0 and tracked.during_bounds == 0
    m = one.details["math"]["design"]
    lazy = m.group_fits("subject", lazy=True, part_columns="none")
    assert not isinstance(lazy, list)
    fits = list(lazy)
    assert [f[0] for f in fits] == [("math",), ("reading",)] and fits[0][1] is None
    for f, g in zip(fits, m.group_fits("subject")):  # without the rows: the same design and effect
        np.testing.assert_array_equal(f[2].X, g[2].X)
        assert f[3].raw == g[3].raw
    hc = m.group_fits("subject", vcov="HC1", part_columns="none")  # fitted on the copies, then dropped
    assert hc[0][1] is None and hc[0][3].raw == m.group_fits("subject", vcov="HC1")[0][3].raw
    monkeypatch.undo()
    pd.testing.assert_frame_equal(one.sensitivity, sensitivity(one.details["math"]["design"], by="subject").to_frame())
    runs = [(w, pleval.estimate(data, design="matched", seed=1, workers=w)) for w in (1, 2)]  # (a worker with 2)
    runs.append((1, pleval.estimate(data, design="matched", seed=1, placebo=False, workers=1, sensitivity=False)))
    for w, ev in runs:
        for s in ("math", "reading"):
            assert ev.effect(s).raw == one.effect(s).raw and ev.effect(s).sd == one.effect(s).sd
    pd.testing.assert_frame_equal(runs[0][1].sensitivity, one.sensitivity)
    pd.testing.assert_frame_equal(runs[1][1].sensitivity, one.sensitivity)
    pd.testing.assert_frame_equal(runs[0][1].schools, runs[1][1].schools)
    assert len(runs[2][1].sensitivity) == 0


def test_estimate_threads_give_the_figures_of_one_thread(data, monkeypatch):
    """In one process with a free core (as a 10M-row run, which has no placebo worker), a
    subject's Rosenbaum bounds run beside the next subject's fit and analysis (the last
    subject's beside the balance table), the bounds' sums split over two threads once nothing
    else runs, and the subjects' placebo calibrations side by side: the same sensitivity,
    balance and calibration tables as in one thread (workers=1), each subject's design still
    formed once no other subject's is held."""
    import gc
    import threading
    import weakref

    import pleval.heterogeneity.placebo as placebo_mod
    import pleval.matching.results as results
    import pleval.sensitivity.matched as matched_mod
    from pleval import _workers
    from pleval.sensitivity import rosenbaum

    est_mod = importlib.import_module("pleval.estimate")
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    monkeypatch.setattr(est_mod, "_placebo_in_worker", lambda *a: False)  # one process
    monkeypatch.setattr(rosenbaum, "_CHUNK", 64)  # several chunks a set of bounds
    where = {"bounds": [], "sums": [], "calibrate": [], "balance": []}
    calls = {"bounds": (matched_mod, "_bounds"), "sums": (rosenbaum._Sets, "moments"),
             "calibrate": (placebo_mod, "calibrate"), "balance": (results.MatchResult, "balance")}
    made, build = [], results.effect_design
    overlap = []

    def tracked(*args, **kw):  # a subject's design formed while another's is held?
        overlap.append(sum(r() is not None for r in made))
        d = build(*args, **kw)
        made.append(weakref.ref(d))
        return d

    monkeypatch.setattr(results, "effect_design", tracked)
    for name, (owner, attr) in calls.items():
        def recording(*a, _real=getattr(owner, attr), _name=name, **k):
            where[_name].append(threading.get_ident())
            return _real(*a, **k)

        monkeypatch.setattr(owner, attr, recording)
    runs = {}
    gc.collect()
    gc.disable()  # designs freed when dropped, not by the cyclic collector
    try:
        for workers in (1, 2):
            for v in where.values():
                v.clear()
            runs[workers] = pleval.estimate(data, design="matched", seed=1, workers=workers, hl_gammas=[1.5])
            assert len(where["bounds"]) == len(where["calibrate"]) == 2 and len(where["balance"]) == 1 and where["sums"]
            # workers=1: everything here; 2: the bounds (and their sums), balance and calibrations in threads
            assert {t == threading.get_ident() for v in where.values() for t in v} == {workers == 1}
    finally:
        gc.enable()
    assert overlap == [0, 0] * 2  # never two subjects' designs at once
    one, two = runs[1], runs[2]
    assert len(one.sensitivity) and len(one.details["math"]["placebo"].calibrated)
    pd.testing.assert_frame_equal(two.sensitivity, one.sensitivity)
    pd.testing.assert_frame_equal(two.balance, one.balance)
    for s in ("math", "reading"):
        assert two.effect(s).raw == one.effect(s).raw
        a, b = (ev.details[s]["placebo"] for ev in (one, two))
        pd.testing.assert_frame_equal(b.comparison, a.comparison)
        pd.testing.assert_frame_equal(b.calibrated, a.calibrated)


def test_group_designs_lazy_match_distinct_rows(matched):
    """group_designs(lazy=True) gathers each group's rows as the distinct matched rows of that
    group: the same frame (values, index, dtypes) as distinct() split by subject."""
    c = matched.columns
    eager = matched.group_designs("subject")
    lazy = list(matched.group_designs("subject", lazy=True))
    d = matched.distinct([c.outcome, c.treatment, *c.pretest, *c.covariates, *matched.strata, c.school, c.subject])
    for (k1, p1, d1, l1), (k2, p2, d2, l2) in zip(eager, lazy):
        assert k1 == k2 and l1 == l2
        pd.testing.assert_frame_equal(p1, p2)
        pd.testing.assert_frame_equal(p2, d[d[c.subject] == k2[0]])
        np.testing.assert_array_equal(d1.X, d2.X)
        np.testing.assert_array_equal(d1.rows, d2.rows)


def test_a_placebo_outcome_that_cannot_be_estimated_is_a_note_and_the_rest_stays(data):
    """A placebo column missing for every PL row stopped the whole run with "the matched sample:
    needs both treated and comparison rows", naming neither the column nor the placebo. It is now
    a warning and a note naming it; the bounds are still computed."""
    d = data.assign(prior=data["pretest"].where(data["treatment"] == 0))
    m = pleval.match(d, SAMPLE_COLUMNS, method="propensity", seed=1)
    with pytest.warns(pleval.errors.PlevalWarning, match="placebo outcome 'prior' .* not estimated"):
        res = sensitivity(m, by="subject", placebo_outcome="prior")
    for _, r in res:
        assert r.placebo is None and np.isfinite(r.ovb.rv_q)
        assert any(n.startswith("placebo outcome 'prior'") for n in r.notes)


def test_cli_sensitivity_reads_and_matches_as_pleval_match(data, tmp_path):
    """`pleval sensitivity` suggested `--na .` but had no such option, nor match's --caliper,
    --no-replace, --exact or --weight: the same match could not be analysed."""
    from typer.testing import CliRunner

    from pleval.cli import app

    src = tmp_path / "dots.csv"
    d = data[data["subject"] == "math"].astype({"posttest": object})
    d.loc[d.index[::50], "posttest"] = "."
    d.to_csv(src, index=False)
    res = CliRunner().invoke(app, ["sensitivity", str(src), "--na", ".", "--caliper", "0.1", "--no-replace",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["options"]["caliper"] == 0.1 and prov["options"]["replace"] is False


def test_cli_sensitivity_refuses_caliper_and_no_caliper_together(data, tmp_path):
    """--caliper with --no-caliper matched without a caliper, the width dropped without a word."""
    from typer.testing import CliRunner

    from pleval.cli import app

    src = tmp_path / "d.csv"
    data.to_csv(src, index=False)
    res = CliRunner().invoke(app, ["sensitivity", str(src), "--caliper", "0.1", "--no-caliper",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code != 0 and "--caliper 0.1 and --no-caliper contradict each other" in res.output


def test_cli_sensitivity_takes_penalize_as_its_separation_error_says(tmp_path):
    """A small file whose rare race levels separate the groups: the error pointed pleval
    sensitivity's users to --penalize, which it lacked. It now has it, and fits what
    pleval.match(penalize=True) fits."""
    import json

    from typer.testing import CliRunner

    from pleval.cli import app

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    pl = list(d[d.treatment == 1].school_id.unique()[:2])
    cp = list(d[d.treatment == 0].school_id.unique()[:3])
    small = d[d.school_id.isin(pl + cp) & (d.subject == "math")].groupby("school_id").head(25)
    small.to_csv(tmp_path / "small.csv", index=False)
    res = CliRunner().invoke(app, ["sensitivity", str(tmp_path / "small.csv"), "-o", str(tmp_path / "a")])
    assert res.exit_code == 2 and "--penalize in pleval match and pleval sensitivity" in res.output
    res = CliRunner().invoke(app, ["sensitivity", str(tmp_path / "small.csv"), "-o", str(tmp_path / "b"), "--penalize"])
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "b" / "provenance.json").read_text())
    assert prov["options"]["penalize"] is True


def test_cli_sensitivity_takes_the_standard_error_options(data, tmp_path):
    """--vcov (and the CR conventions) as pleval match takes them, so the same analysis can be
    checked for sensitivity: the estimate row's SE is the API's with vcov="CR1" (the command had
    no such option before 2026-12-04, and analysed CR2 only)."""
    from typer.testing import CliRunner

    from pleval.cli import app

    src = tmp_path / "d.csv"
    data.to_csv(src, index=False)
    r = CliRunner().invoke(app, ["sensitivity", str(src), "--vcov", "CR1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    f = pd.read_csv(tmp_path / "o" / "sensitivity.csv")
    m = pleval.match(data, SAMPLE_COLUMNS, method="propensity")
    want = m.estimate(by="subject", vcov="CR1")
    got = f[f["kind"] == "estimate"].drop_duplicates("subject").set_index("subject")["se"]
    for key, se in got.items():
        assert se == pytest.approx(want[key].raw.se, rel=1e-9)


def test_the_sentence_beside_a_p_just_below_alpha():
    """With few residual df RV_{q,α} is 0 while the estimate's own p is just below α (Cinelli &
    Hazlett's adjusted SE carries √(dof/(dof − 1)) even for a confounder explaining nothing). The
    sentence says so instead of "already no longer statistically significant" beside p < α (as
    before 2026-12-05); a p above α keeps that wording."""
    from types import SimpleNamespace as NS

    from scipy import stats

    from pleval.sensitivity.evalue import evalue_smd
    from pleval.sensitivity.matched import SubjectSensitivity
    from pleval.sensitivity.ovb import omitted_variable_bounds

    dof = df = 30
    for factor, below in ((1.01, True), (0.99, False)):
        t = factor * stats.t.isf(0.025, df)
        p = 2 * stats.t.sf(t, df)
        o = omitted_variable_bounds(t, 1.0, dof, se=1.0, df=df)
        assert o.rv_qa == 0 and (p < 0.05) == below
        s = SubjectSensitivity("", NS(raw=NS(estimate=t, pvalue=p)), o, evalue_smd(0.08, 0.001, 0.16), None).sentence()
        assert ("already no longer statistically significant" in s) != below, s
        assert (f"its own p = {p:.3g} is so near α" in s) == below, s


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
def test_report_offers_no_gamma_of_lost_significance_for_an_estimate_not_significant():
    """Sample matched file, math: p = 0.088 and the paragraph says 'already no longer statistically
    significant', while the table beside it gave 'Rosenbaum Γ at which the two-sided p bound reaches
    0.05: 1.11' (the rank test, which ignores school clustering, has p 2e-5 at Γ = 1). When the
    estimate is not significant the row now says so, and gives the rank test's p at Γ = 1 and its Γ
    as a test that ignores clustering; a significant estimate keeps its Γ. Numbers from
    sensitivity.csv's rows (to_frame)."""
    from pathlib import Path

    from pleval.report import sections

    ev = pleval.estimate(Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv", placebo=False)
    table = next(b for b in sections.fragility(ev, ()).blocks if b.kind == "table").frame.set_index("")
    cells = table.loc["Rosenbaum Γ at which the two-sided p bound reaches 0.05"]
    seen = set()
    for s in ev.subjects:
        f = ev.details[s]["sensitivity"].to_frame()
        gamma = float(f.loc[f["label"].str.startswith("gamma at alpha=0.05"), "gamma"].iloc[0])
        p1 = float(f.loc[f["label"] == "gamma=1, two-sided p bound", "pvalue"].iloc[0])
        p = float(f.loc[f["kind"] == "estimate", "pvalue"].iloc[0])
        assert p == pytest.approx(ev.effects[s].effect_size.pvalue, rel=1e-12) and gamma > 1 and p1 < 0.001
        seen.add(p < 0.05)
        if p < 0.05:
            assert cells[s] == f"{gamma:.2f}"
        else:
            assert cells[s] == (f"— (the estimate is not significant even without hidden bias: p = {p:.3f}; the rank "
                                f"test, which ignores school clustering, has p < 0.001 at Γ = 1 and reaches 0.05 at "
                                f"Γ = {gamma:.2f})")
    assert seen == {True, False}  # math p = 0.088, reading 0.037
