"""Speed-ups that must not change a number: each fast path against the slow, literal one."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pleval.data import SAMPLE_COLUMNS as C
from pleval.data import validate
from pleval.inference import ols
from pleval.matching import match
from pleval.matching.effect import effect_design, regression_effect
from pleval.simulate import simulate_matched


@pytest.fixture(scope="module")
def tied():
    """Rounded scores: many exact ties, so every tie kept reuses comparison students heavily."""
    df = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data
    return match(validate(df, C), C, method="propensity")


def _long_groups(m, by):
    """The literal matched sample (every copy a row), split by ``by``: the slow route."""
    return [((k,), part) for k, part in m.matched.groupby(by, sort=True)]


@pytest.mark.parametrize("vcov", ["CR2", "CR0", "CR1", "HC1"])
def test_reused_rows_merged_give_the_same_fit(tied, vcov):
    """The effect regression on the distinct matched rows (weights and squared weights summed,
    copies counted; no copy is formed) gives the coefficient, SE, df, SD, effect size and counts
    of the regression on every copy, to 1e-10 (HC counts copies and is fitted on them), with the
    independence working model's df. The default df (a school random effect) count a reused
    student once: those of the copies merged from the long sample."""
    assert np.unique(tied.rows).size < 0.9 * len(tied.rows)  # reuse is real here
    kw = dict(outcome=C.outcome, treatment=C.treatment, pretests=C.pretest, covariates=C.covariates,
              strata=tied.strata, school=C.school)
    fits = tied.group_fits("subject", vcov=vcov, df_working="independent")
    default = tied.group_fits("subject", vcov=vcov)
    for (key, part, des, eff, _), (key_l, long_part), fit in zip(fits, _long_groups(tied, C.subject), default):
        assert key == key_l and des.rows is not None and len(np.unique(des.rows)) == len(des.rows)
        assert des.n_obs == len(long_part) > len(des.rows)
        long_des = effect_design(long_part, **kw)  # rows unknown: fitted copy by copy
        long = regression_effect(long_part, **kw, vcov=vcov, design=long_des, df_working="independent")
        merged = regression_effect(long_part, **kw, vcov=vcov, design=replace(long_des, rows=long_part.index.to_numpy()))
        assert fit[3].raw.df == pytest.approx(merged.raw.df, rel=1e-10)
        if vcov == "CR2":
            assert fit[3].raw.df < eff.raw.df  # the random effect's df are fewer here
        assert eff.raw.estimate == pytest.approx(long.raw.estimate, rel=1e-10, abs=1e-10)
        assert eff.raw.se == pytest.approx(long.raw.se, rel=1e-10)
        assert eff.raw.df == pytest.approx(long.raw.df, rel=1e-10)
        assert eff.sd == pytest.approx(long.sd, rel=1e-12)
        assert (eff.raw.n_treated, eff.raw.n_control, eff.raw.n_clusters) == \
            (long.raw.n_treated, long.raw.n_control, long.raw.n_clusters)
        assert eff.effect_size.estimate == pytest.approx(long.effect_size.estimate, rel=1e-10, abs=1e-12)
        assert eff.effect_size.se == pytest.approx(long.effect_size.se, rel=1e-10)
        if vcov == "CR1":  # the reported n counts the copies, as the long fit's does
            full = ols(long_des.y, long_des.X, weights=long_des.weights, clusters=long_des.clusters, vcov=vcov)
            assert full.n == des.n_obs


def test_merged_design_refuses_row_counting_ses(tied):
    """HC/classical SEs give each copy its own term: a merged design refuses them (clear error)."""
    from pleval.errors import DesignError

    _, part, des, _ = tied.group_designs()[0]
    with pytest.raises(DesignError, match="copies"):
        regression_effect(part, outcome=C.outcome, treatment=C.treatment, vcov="HC2", design=des)


def test_forest_with_thousands_of_schools_summarizes_the_middle():
    """max_rows: the highest and lowest schools get rows, the rest one summary row; the figure
    height no longer grows with the number of schools and no labels overlap."""
    from pleval import plots

    rng = np.random.default_rng(4)
    k = 3000
    est = rng.normal(0, 0.1, k)
    df = pd.DataFrame({"school": [f"S{i}" for i in range(k)], "estimate": est, "se": np.full(k, 0.05),
                       "pvalue_adj": np.where(np.abs(est) > 0.2, 0.001, 0.5)})
    pooled = {"estimate": 0.0, "ci_low": -0.01, "ci_high": 0.01}
    fig = plots.forest(df, pooled=pooled, max_rows=20)
    ax = fig.axes[0]
    fig.canvas.draw()
    rows = [t for t in ax.texts if t.get_horizontalalignment() == "right"]  # the row labels
    labels = [t.get_text() for t in rows]
    assert len(labels) == 20 + 1 + 1  # 20 schools, the summary row, the pooled row
    order = np.argsort(est, kind="stable")
    assert labels[:10] == [f"S{i}" for i in order[:10]] and labels[11:21] == [f"S{i}" for i in order[-10:]]
    mid = est[order[10:-10]]
    n_pos, n_neg = int((mid > 0.2).sum()), int((mid < -0.2).sum())
    assert labels[10] == f"{k - 20:,} schools between ({n_pos:,} sig. +, {n_neg:,} sig. −)"
    boxes = sorted((t.get_window_extent() for t in rows), key=lambda b: b.y0)
    assert all(b.y0 >= a.y1 - 0.5 for a, b in zip(boxes, boxes[1:]))
    small = plots.forest(df.iloc[:20], pooled=pooled, max_rows=20)  # 20 rows: all drawn
    assert len([t for t in small.axes[0].texts if t.get_horizontalalignment() == "right"]) == 21
    assert fig.get_size_inches()[1] == pytest.approx(small.get_size_inches()[1] + plots.ROW_INCH)


def test_balance_on_merged_rows_is_the_balance_of_every_copy(tied):
    """MatchResult.balance merges a reused student's copies (weights and squared weights
    summed): the table and the WWC equivalence equal those computed on the long matched sample."""
    from pleval.matching.balance import balance

    merged = tied.balance()
    long = balance(tied.data, tied.matched, C.treatment, tied.variables, C.main_pretest, by=C.subject,
                   categorical=tied.categorical, strata=tied.strata)
    num = long.table.select_dtypes("number").columns
    np.testing.assert_allclose(merged.table[num].to_numpy(float), long.table[num].to_numpy(float), rtol=1e-10, atol=1e-12)
    assert merged.table.drop(columns=num).equals(long.table.drop(columns=num))
    num = long.equivalence.select_dtypes("number").columns
    np.testing.assert_allclose(merged.equivalence[num].to_numpy(float), long.equivalence[num].to_numpy(float),
                               rtol=1e-10)
    assert (merged.equivalence["wwc_baseline_equivalence"] == long.equivalence["wwc_baseline_equivalence"]).all()


def _old_placebo_sample(part: pd.DataFrame, col: str, treatment: str) -> pd.DataFrame:
    """The placebo-outcome sample as it was built on the long matched sample (the literal route):
    sets whose PL row lacks the score dropped, other missing rows too, each set's remaining
    comparisons re-weighted to sum to one."""
    has = part[col].notna().to_numpy()
    out = part[has]
    sets = part["_set"].to_numpy()
    t = part[treatment].to_numpy() == 1
    out = part[has & ~np.isin(sets, np.unique(sets[t & ~has]))]
    tt = out[treatment].to_numpy() == 1
    codes = pd.factorize(out["_set"].to_numpy())[0]
    total = np.bincount(codes, weights=np.where(tt, 0.0, out["_weight"].to_numpy()))
    alive = np.bincount(codes, weights=(~tt).astype(float))[codes] > 0
    w = out["_weight"].to_numpy().copy()
    w[~tt] /= total[codes[~tt]]
    return out.assign(_weight=w)[alive]


def test_sensitivity_on_distinct_rows_is_that_of_every_copy():
    """Omitted-variable bounds, Rosenbaum bounds (on the (set, member) pairs) and the placebo
    outcome (re-weighted per set) from the distinct rows equal those computed on the long matched
    sample, with a placebo score missing for some PL and comparison rows."""
    from pleval.sensitivity import sensitivity
    from pleval.sensitivity.ovb import Gram, ovb_from_design
    from pleval.sensitivity.rosenbaum import rosenbaum_bounds

    df = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data
    rng = np.random.default_rng(5)
    df["prior"] = df["pretest"] - 4 + rng.normal(0, 6, len(df))
    df.loc[rng.random(len(df)) < 0.08, "prior"] = np.nan
    m = match(validate(df, C), C, method="propensity")
    assert np.unique(m.rows).size < 0.9 * len(m.rows)
    s = sensitivity(m, by="subject", placebo_outcome="prior", hl_gammas=(1.5,))
    kw = dict(outcome=C.outcome, treatment=C.treatment, pretests=C.pretest, covariates=C.covariates,
              strata=m.strata, school=C.school)
    for key, long_part in _long_groups(m, C.subject):
        r = s[key]
        des = effect_design(long_part, **kw)
        g = Gram(des.y, des.X, des.weights, constant=[des.names.index("const")])
        bench = {b: [n for n, src in zip(des.names, des.source) if src == b] for b in (*C.pretest, *C.covariates)}
        ovb = ovb_from_design(des.y, des.X, des.names, C.treatment, weights=des.weights,
                              benchmarks={b: v for b, v in bench.items() if v}, se=r.effect.raw.se, df=r.effect.raw.df)
        for f in ("estimate", "se_classical", "r2yd_x", "rv_q", "rv_qa"):
            assert getattr(r.ovb, f) == pytest.approx(getattr(ovb, f), rel=1e-10), f
        np.testing.assert_allclose(r.ovb.bounds.select_dtypes("number").to_numpy(float),
                                   ovb.bounds.select_dtypes("number").to_numpy(float), rtol=1e-9, atol=1e-12)
        d = des.names.index(C.treatment)
        resid = g.residuals(des.y, des.X, [j for j in range(len(des.names)) if j != d])
        ros = rosenbaum_bounds(resid, long_part["_set"].to_numpy(), long_part[C.treatment].to_numpy() == 1,
                               alpha=0.05, direction=r.rosenbaum.direction, two_sided=True, hl_gammas=(1.5,))
        assert (r.rosenbaum.test, r.rosenbaum.n_sets, r.rosenbaum.n_units) == (ros.test, ros.n_sets, ros.n_units)
        np.testing.assert_allclose(r.rosenbaum.table.to_numpy(float), ros.table.to_numpy(float), rtol=1e-9)
        assert r.rosenbaum.gamma_alpha == pytest.approx(ros.gamma_alpha, rel=1e-9)
        psample = _old_placebo_sample(long_part, "prior", C.treatment)
        assert len(psample) < len(long_part)
        pdes = effect_design(psample, **{**kw, "outcome": "prior"})  # copies merged (the default df count each once)
        plc = regression_effect(psample, **{**kw, "outcome": "prior"}, vcov="CR2",
                                design=replace(pdes, rows=psample.index.to_numpy()))
        assert r.placebo.raw.estimate == pytest.approx(plc.raw.estimate, rel=1e-10, abs=1e-12)
        assert r.placebo.raw.se == pytest.approx(plc.raw.se, rel=1e-10)
        assert r.placebo.raw.df == pytest.approx(plc.raw.df, rel=1e-10)
        assert r.placebo.raw.n_control == plc.raw.n_control
        assert r.placebo.effect_size.estimate == pytest.approx(plc.effect_size.estimate, rel=1e-10)


def _school_kw(**extra):
    return dict(stratum="_pl_school", weight="_weight", treatment=C.treatment, outcome=C.outcome,
                covariates=tuple(C.pretest) + tuple(C.covariates), cluster=C.student_id, unit_id=C.student_id,
                school=C.school, by=C.subject, sd="pooled", **extra)


def _assert_same_schools(merged, long):
    """Two SchoolEffects agree: every number of the table, the joint covariances (raw and
    regularized), the shrinkage factors and the meta-analyses, to 1e-10."""
    num = long.table.select_dtypes("number").columns
    assert list(merged.table.columns) == list(long.table.columns)
    np.testing.assert_allclose(merged.table[num].to_numpy(float), long.table[num].to_numpy(float), rtol=1e-10, atol=1e-12)
    assert merged.table.drop(columns=num).equals(long.table.drop(columns=num))
    for key in long.vcov_raw:
        for a, b in ((merged.vcov_raw[key], long.vcov_raw[key]), (merged.vcov[key], long.vcov[key])):
            assert list(a.index) == list(b.index)
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-10, atol=1e-14)
        assert merged.vcov_shrinkage[key] == pytest.approx(long.vcov_shrinkage[key], rel=1e-10, abs=1e-14)
        for f in ("estimate", "se", "tau2", "q"):
            assert getattr(merged.meta[key], f) == pytest.approx(getattr(long.meta[key], f), rel=1e-10, abs=1e-14), f


@pytest.mark.parametrize("vcov", ["CR2", "CR1"])
def test_school_effects_on_merged_copies_are_those_of_every_copy(tied, vcov):
    """School effects from one row per (PL school, matched row) pair — copies within one PL
    school's sets merged, copies in different schools' sets kept apart — equal those from every
    copy: estimates, SEs, Satterthwaite df, counts, robustness values, the joint CR2 covariance
    (raw and regularized) and the meta-analysis."""
    from pleval.heterogeneity import school_effects

    long = tied.matched
    merged = tied.school_sample()
    assert len(merged) < len(long) and (merged["_copies"] > 1).any()
    pairs = long.groupby(["_pl_school", long.index]).size()
    assert len(pairs) == len(merged) and int(merged["_copies"].sum()) == len(long)
    kw = _school_kw(vcov=vcov, robustness_q=1.0)
    a = school_effects(merged, **kw, weight2="_weight2", copies="_copies")
    b = school_effects(long, **kw)
    _assert_same_schools(a, b)
    assert a.options["n_rows"] == b.options["n_rows"]


def test_lazy_school_sample_is_the_frame_read_a_column_at_a_time(tied):
    """``school_sample(lazy=True)`` holds the pairs without their columns: its columns, read one
    at a time, its frame (of all pairs and of some), and a subset of it are those of the frame
    ``school_sample()`` forms, and school effects on it (every pair's column gathered when read)
    are exactly those on the frame, including rows left out for a missing outcome."""
    from dataclasses import replace

    from pleval.errors import PlevalWarning
    from pleval.heterogeneity import school_effects
    from pleval.matching.results import SchoolSample

    keys = [C.student_id, C.school, C.subject]
    frame = tied.school_sample(categorical=keys)
    lazy = tied.school_sample(categorical=keys, lazy=True)
    assert isinstance(lazy, SchoolSample) and len(lazy) == len(frame) and list(lazy.columns) == list(frame.columns)
    for c in frame.columns:
        assert lazy[c].dtype == frame[c].dtype, c
        assert lazy[c].astype(object).tolist() == frame[c].astype(object).tolist(), c
    pd.testing.assert_frame_equal(lazy.frame(), frame, check_exact=True)
    pos = np.flatnonzero(np.arange(len(frame)) % 3 == 1)
    pd.testing.assert_frame_equal(lazy.frame(pos), frame.iloc[pos], check_exact=True)
    keep = np.arange(len(frame)) % 4 != 0
    pd.testing.assert_frame_equal(lazy.subset(keep).frame(), frame[keep], check_exact=True)
    kw = dict(**_school_kw(robustness_q=1.0), weight2="_weight2", copies="_copies")
    x, y = school_effects(lazy, **kw), school_effects(frame, **kw)
    pd.testing.assert_frame_equal(x.table, y.table, check_exact=True)
    for key in y.vcov_raw:
        assert x.vcov_raw[key].equals(y.vcov_raw[key]) and x.vcov[key].equals(y.vcov[key])
    gone = lazy.rows[np.flatnonzero(frame[C.treatment].to_numpy() == 0)[::7]]  # comparison rows of data
    holes = replace(tied, data=tied.data.assign(
        **{C.outcome: tied.data[C.outcome].where(~np.isin(np.arange(len(tied.data)), gone))}))
    with pytest.warns(PlevalWarning, match="missing outcome"):
        x = school_effects(holes.school_sample(categorical=keys, lazy=True), **kw)
    with pytest.warns(PlevalWarning, match="missing outcome"):
        y = school_effects(holes.school_sample(categorical=keys), **kw)
    assert x.dropped["n_rows"].sum() > 0 and x.dropped.equals(y.dropped)
    pd.testing.assert_frame_equal(x.table, y.table, check_exact=True)


def test_lazy_school_sample_codes_missing_and_levels_are_its_columns(tied):
    """A lazy school sample's ``isna``, ``codes``, ``level_codes``, ``varies`` and ``integers``, read from
    its data's columns without gathering values, are those of its gathered columns: the same
    missing rows, the same partition of the pairs (values decoded), :func:`pleval.data.level_codes`'
    codes and levels (text: the sorted levels the pairs have, one absent from them left out; a
    Categorical: all its categories), ``nunique(dropna=False) >= 2``; and school effects on a
    subset without one race level are those of its frame."""
    from dataclasses import replace

    from pleval.data import level_codes
    from pleval.errors import DataError

    keys = [C.student_id, C.school, C.subject]
    data = tied.data.assign(grade_cat=tied.data["grade"].astype(str).astype("category").cat.add_categories(["zz"]),
                            one=1.0, late=0.0)
    late = data.index[tied.rows[-1]]
    data.loc[late, "late"] = 1.0  # differs from every other row only in a pair far past the first 1,024
    data.loc[data.index[tied.rows[:50]], C.outcome] = np.nan
    m = replace(tied, data=data)
    cols = [*data.columns]
    lazy = m.school_sample(cols, categorical=keys, lazy=True)
    race = lazy["race"]
    first = sorted(race.unique())[0]
    for sample in (lazy, lazy.subset(race.to_numpy() != first)):
        for c in [*cols, "_pl_school", "_weight"]:
            col = sample[c]
            np.testing.assert_array_equal(sample.isna(c), col.isna().to_numpy(), err_msg=c)
            codes, values = sample.codes(c)
            assert c not in data.columns or codes.dtype == np.int32, c  # a data column's codes gathered narrow
            np.testing.assert_array_equal(pd.factorize(codes)[0], pd.factorize(col, use_na_sentinel=False)[0], err_msg=c)
            assert ((codes < 0) == col.isna().to_numpy()).all(), c
            ok = codes >= 0
            assert list(values[codes[ok]]) == list(col[ok].astype(object)), c
            assert sample.varies(c) == (col.nunique(dropna=False) >= 2), c
            ints = sample.integers(c)  # whole numbers: the gathered values, in a type no wider
            if c in data.columns and isinstance(data[c].dtype, np.dtype) and data[c].dtype.kind in "biu":
                np.testing.assert_array_equal(ints, col.to_numpy(), err_msg=c)
                assert ints.dtype.itemsize <= col.dtype.itemsize, c
            else:
                assert ints is None, c
        assert sample.isna(C.outcome).sum() > 0
        assert not sample.varies("one") and sample.varies("late")
        for c in ("race", "grade_cat", C.school):
            got, want = sample.level_codes(c), level_codes(sample[c], c)
            np.testing.assert_array_equal(got[0], want[0], err_msg=c)
            assert list(got[1]) == list(want[1]), c
        assert sample.level_codes(C.outcome) is None and sample.level_codes("female") is None
    assert "zz" not in list(lazy.level_codes("grade_cat")[1])  # an unused category: no level (an indicator of zeros)
    assert lazy._at.dtype == np.intp and np.array_equal(lazy._at, lazy.rows)  # the gathers' index, kept
    without = lazy.subset(race.to_numpy() != first)
    assert first not in list(without.level_codes("race")[1]) and first in list(lazy.level_codes("race")[1])
    with pytest.raises(DataError, match="single category"):
        lazy.subset(race.to_numpy() == first).level_codes("race")
    _same_effects_as_its_frame(without, robustness_q=1.0)


def test_lazy_school_sample_takes_the_matchs_codes_for_its_columns(tied, monkeypatch):
    """The match's codes over sorted levels (``MatchResult.codes``, as its balance tables and
    effect regressions leave them) serve a lazy school sample's ``codes``, ``level_codes`` and
    ``distinct_in_data`` instead of hashing those text columns of the data again: the same
    partitions, values, levels (and their dtype), the same answer, and school effects equal, bit
    for bit, to those of a sample without them, which hashes each column."""
    from dataclasses import replace

    import pleval.matching.results as results
    from pleval.heterogeneity import school_effects

    keys = [C.student_id, C.school, C.subject]
    text = ["race", C.school, C.subject, C.student_id]
    coded = replace(tied, codes={}, factorized={})
    for c in text:
        coded._column_codes(c)
    plain = replace(tied, codes={}, factorized={})
    hashed = []
    real = results.factorize
    monkeypatch.setattr(results, "factorize", lambda values, sort=False: hashed.append(values.name) or real(values, sort))
    a = coded.school_sample(categorical=keys, lazy=True)
    b = plain.school_sample(categorical=keys, lazy=True)
    assert set(a.coded) == set(text) and not b.coded
    got = [a.codes(c) for c in text], a.level_codes("race"), a.distinct_in_data([C.student_id, C.subject])
    assert hashed == []  # every one from the match's codes
    want = [b.codes(c) for c in text], b.level_codes("race"), b.distinct_in_data([C.student_id, C.subject])
    assert set(hashed) == set(text)
    for c, (ca, va), (cb, vb) in zip(text, got[0], want[0]):
        np.testing.assert_array_equal(pd.factorize(ca)[0], pd.factorize(cb)[0], err_msg=c)
        assert list(va[ca]) == list(vb[cb]), c
    np.testing.assert_array_equal(got[1][0], want[1][0])
    assert got[1][1].equals(want[1][1]) and got[1][1].dtype == want[1][1].dtype
    assert got[2] == want[2]
    hashed.clear()
    kw = dict(**_school_kw(robustness_q=1.0), weight2="_weight2", copies="_copies")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = school_effects(coded.school_sample(categorical=keys, lazy=True), **kw)
        assert hashed == []  # every text column the school effects read came coded
        y = school_effects(plain.school_sample(categorical=keys, lazy=True), **kw)
    assert set(hashed) >= {"race", C.school, C.subject}
    pd.testing.assert_frame_equal(x.table, y.table, check_exact=True)
    for key in y.vcov_raw:
        assert x.vcov_raw[key].equals(y.vcov_raw[key]) and x.vcov[key].equals(y.vcov[key])


def test_lazy_school_sample_merges_copies_only_where_data_can_have_them(tied):
    """School effects skip looking for copies of one student in one stratum when no two rows of
    the data share (student, subject) (``SchoolSample.distinct_in_data``); where two do — a
    comparison student's row repeated, equal in covariates and outcome, in one PL school's set —
    the lazy sample's effects still equal its frame's, whose copies are merged (Φ = I)."""
    from dataclasses import replace

    keys = [C.student_id, C.school, C.subject]
    lazy = tied.school_sample(categorical=keys, lazy=True)
    assert lazy.distinct_in_data([C.student_id, C.subject]) and not lazy.distinct_in_data([C.student_id])
    frame = lazy.frame()
    comp = np.flatnonzero(frame[C.treatment].to_numpy() == 0)
    same = frame.iloc[comp].groupby(["_pl_school", C.subject], observed=True).indices
    a, b = next(comp[v[:2]] for v in same.values() if len(v) > 1)  # two comparison pairs of one stratum
    ra, rb = lazy.rows[a], lazy.rows[b]
    data = tied.data.copy()
    copy = [C.student_id, C.school, C.outcome, *C.pretest, *C.covariates]
    data.iloc[rb, data.columns.get_indexer(copy)] = data.iloc[ra, data.columns.get_indexer(copy)].to_numpy()
    dup = replace(tied, data=data, codes={}, factorized={})  # (codings of the old data let go)
    lazy = dup.school_sample(categorical=keys, lazy=True)
    assert not lazy.distinct_in_data([C.student_id, C.subject])
    _same_effects_as_its_frame(lazy)


def _same_effects_as_its_frame(lazy, **kw):
    """A lazy school sample's school effects are exactly those of its gathered frame."""
    from pleval.heterogeneity import school_effects

    kw = dict(**_school_kw(**kw), weight2="_weight2", copies="_copies")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = school_effects(lazy, **kw), school_effects(lazy.frame(), **kw)
    pd.testing.assert_frame_equal(x.table, y.table, check_exact=True)
    for key in y.vcov_raw:
        assert x.vcov_raw[key].equals(y.vcov_raw[key])


def test_school_sample_keys_as_categoricals_change_nothing(tied):
    """``school_sample``'s Categorical keys (``_pl_school`` always, the text columns named in
    ``categorical=``) hold the values of a direct group-by of the long matched sample by (PL
    school, row), pairs in order of first appearance; school effects on them are exactly those
    on plain text columns (the same codes, the same sums in the same order)."""
    from dataclasses import replace

    from pleval.heterogeneity import school_effects

    keys = [C.student_id, C.school, C.subject]
    a = tied.school_sample(categorical=keys)
    assert all(isinstance(a[c].dtype, pd.CategoricalDtype) for c in [*keys, "_pl_school"])
    # the student ids' factorization left by matching (for the tie cap) is the one a fresh one gives
    assert C.student_id in tied.factorized
    fresh = replace(tied, factorized={}).school_sample(categorical=keys)
    pd.testing.assert_frame_equal(a, fresh, check_exact=True)
    for c in (*keys, "_pl_school"):
        assert a[c].cat.categories.equals(fresh[c].cat.categories)
    long = tied.matched.assign(_row=tied.rows, _w2=tied.matched["_weight"] ** 2)
    direct = long.groupby(["_pl_school", "_row"], sort=False).agg(
        **{c: (c, "first") for c in (*keys, C.outcome)}, _weight=("_weight", "sum"), _weight2=("_w2", "sum"),
        _copies=("_weight", "size")).reset_index()
    for c in (*keys, "_pl_school"):
        assert a[c].astype(object).tolist() == direct[c].astype(object).tolist(), c
    for c in (C.outcome, "_weight", "_weight2", "_copies"):
        np.testing.assert_allclose(a[c].to_numpy(float), direct[c].to_numpy(float), rtol=1e-13, atol=0)
    plain = a.assign(**{c: a[c].astype(object).to_numpy() for c in (*keys, "_pl_school")})
    x, y = (school_effects(f, **_school_kw(), weight2="_weight2", copies="_copies") for f in (a, plain))
    pd.testing.assert_frame_equal(x.table, y.table, check_exact=True)
    for key in y.vcov_raw:
        assert x.vcov_raw[key].equals(y.vcov_raw[key]) and x.vcov[key].equals(y.vcov[key])


def test_school_effects_count_copies_where_distinct_rows_are_few():
    """A stratum with fewer distinct rows than parameters but more copies keeps exactly the
    estimate (or the absence of one) that its copies give; weights vary within copies."""
    from pleval.heterogeneity import school_effects

    rng = np.random.default_rng(8)
    n = 400
    df = pd.DataFrame({"s": rng.integers(0, 8, n), "t": rng.integers(0, 2, n), "x": rng.normal(size=n),
                       "z": rng.normal(size=n), "cl": rng.integers(0, 30, n), "sch": rng.integers(0, 12, n)})
    df["y"] = df["x"] + 0.3 * df["t"] + rng.normal(size=n)
    df.loc[df["s"] == 7, "s"] = 6
    df.loc[[0, 1], ["s", "t", "x", "z", "y"]] = [[7, 0, 0.5, 1.0, 2.0], [7, 1, 0.5, 1.0, 2.5]]  # stratum 7: 2 rows
    df = df.assign(id=np.arange(n))
    copies = df.loc[np.r_[rng.integers(0, n, 3 * n), [0, 1] * 4]].reset_index(drop=True)  # copies within strata
    long = pd.concat([df, copies], ignore_index=True)
    long = long.assign(w=rng.uniform(0.2, 2.0, len(long)))
    long["cl"] = long.groupby("id")["cl"].transform("first")
    long["sch"] = long["sch"].where(long["t"] == 0)  # comparison rows' own school; none for treated rows
    merged = (long.assign(w2=long["w"] ** 2, c=1)
              .groupby(["s", "id"], sort=False, as_index=False)
              .agg(t=("t", "first"), x=("x", "first"), z=("z", "first"), y=("y", "first"), cl=("cl", "first"),
                   sch=("sch", "first"), w=("w", "sum"), w2=("w2", "sum"), c=("c", "sum")))
    assert len(merged) < len(long) and merged.loc[merged["s"] == 7].shape[0] == 2
    for kw in (dict(cluster="cl", school=None, vcov="CR2"), dict(cluster="cl", school="sch", vcov="CR2"),
               dict(cluster="cl", school=None, vcov="CR1"), dict(cluster=None, school=None, vcov="classical")):
        base = dict(stratum="s", treatment="t", outcome="y", covariates=("x", "z"), weight="w", unit_id="id", sd="pooled",
                    robustness_q=1.0, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = school_effects(merged[merged["s"] != 7], **base, weight2="w2", copies="c")
            b = school_effects(long[long["s"] != 7], **base)
            _assert_same_schools(a, b)
            # stratum 7 is 2 distinct rows (copied), fitted exactly: with the copies counted it keeps
            # its estimate (10 copies > rank 2) as the copies do, with a classical SE of zero up to
            # rounding; a robust SE would leave its one treated student out: no estimate, a note
            a, b = (school_effects(d, **base, **x).table.set_index("school").loc[7]
                    for d, x in ((merged, dict(weight2="w2", copies="c")), (long, {})))
            assert a["n_comparison"] == b["n_comparison"] == 1
            if kw["vcov"] == "classical":
                assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-10) == 0.5
                assert abs(a["se"]) < 1e-12 and abs(b["se"]) < 1e-12
            else:
                assert np.isnan([a["estimate"], b["estimate"], a["se"], b["se"]]).all() and a["note"] == b["note"]
                assert a["note"].startswith("not estimable: one treated")
    with pytest.raises(Exception, match="copy"):
        school_effects(merged, stratum="s", treatment="t", outcome="y", weight="w", weight2="w2", copies="c", vcov="HC2")


def test_placebo_rounds_on_merged_copies_are_those_of_every_copy(tied, monkeypatch):
    """Placebo schools (each round's school effects on merged (school, row) pairs) equal the
    placebo schools computed on every copy of every round: estimates, joint covariance, τ̂²."""
    from pleval.heterogeneity import placebo as plc

    data = tied.data
    kw = dict(n_placebo=8, cluster=C.student_id, by=C.subject)
    a = plc.placebo_schools(data, C, "propensity", **kw)
    monkeypatch.setattr(plc, "_school_sample", lambda m, cols, merge, keys=(): m.matched.assign(
        _weight2=m.matched["_weight"] ** 2, _copies=1))
    b = plc.placebo_schools(data, C, "propensity", **kw)
    num = b.placebo.select_dtypes("number").columns
    np.testing.assert_allclose(a.placebo[num].to_numpy(float), b.placebo[num].to_numpy(float), rtol=1e-10, atol=1e-12)
    assert a.rounds.equals(b.rounds)
    for key in b.placebo_vcov:
        np.testing.assert_allclose(a.placebo_vcov[key].to_numpy(), b.placebo_vcov[key].to_numpy(), rtol=1e-10, atol=1e-14)
    num = b.comparison.select_dtypes("number").columns
    np.testing.assert_allclose(a.comparison[num].to_numpy(float), b.comparison[num].to_numpy(float), rtol=1e-10,
                               atol=1e-12)
    _assert_same_schools(a.observed, b.observed)


def test_evaluation_of_the_sample_data_is_that_of_every_copy(monkeypatch):
    """`pleval.estimate` on the sample data: the effects equal the regression on every copy of
    the long matched sample, and the school effects, their joint covariance and the placebo
    schools (estimates, τ̂²_placebo, calibration) equal a second run in which every per-school
    analysis gets the long matched sample (each copy a row), to 1e-10."""
    import pleval
    from pleval.matching import MatchResult

    df = pd.read_csv(Path(pleval.__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = pleval.estimate(df, n_placebo=6)
    m = next(d["design"] for d in ev.details.values())
    assert np.unique(m.rows).size < len(m.rows)
    kw = dict(outcome=C.outcome, treatment=C.treatment, pretests=C.pretest, covariates=C.covariates,
              strata=m.strata, school=C.school)
    for (subject,), long_part in _long_groups(m, C.subject):
        long = regression_effect(long_part, **kw, design=replace(effect_design(long_part, **kw),
                                                                rows=long_part.index.to_numpy()))
        eff = ev.effect(subject)
        for a, b in ((eff.raw, long.raw), (eff.effect_size, long.effect_size)):
            assert (a.estimate, a.se, a.df) == pytest.approx((b.estimate, b.se, b.df), rel=1e-10, abs=1e-12)

    def every_copy(self, columns=None, categorical=(), lazy=False):
        return self.matched.assign(_weight2=self.matched["_weight"] ** 2, _copies=1)

    monkeypatch.setattr(MatchResult, "school_sample", every_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pleval.estimate(df, n_placebo=6)
    _assert_same_schools(ev.school_effects, ref.school_effects)
    for name in ("schools", "placebo", "heterogeneity"):
        a, b = ev.table(name), ref.table(name)
        num = b.select_dtypes("number").columns
        assert len(num) and list(a.columns) == list(b.columns)
        np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=1e-10, atol=1e-12)


def test_collinear_adjuster_is_left_out_of_the_effect_regression(tied):
    """An adjuster that is a linear combination of others in the matched sample is left out
    (the fit is that of the model without it; the method names what was adjusted for),
    instead of a singular fit whose answer rounding decides."""
    part = tied.distinct()
    kw = dict(outcome=C.outcome, treatment=C.treatment, pretests=C.pretest, strata=tied.strata, school=C.school)
    with_dup = part.assign(twice=2.0 * part[C.main_pretest] + 1.0)
    a = regression_effect(with_dup, **kw, covariates=(*C.covariates, "twice"))
    b = regression_effect(part, **kw, covariates=C.covariates)
    assert (a.raw.estimate, a.raw.se, a.raw.df) == pytest.approx((b.raw.estimate, b.raw.se, b.raw.df), rel=1e-9)
    assert "twice" not in a.raw.method and a.raw.method == b.raw.method
    # integers that round to one float64 do not vary in the design: left out, as a constant is
    huge = part.assign(big=np.where(np.arange(len(part)) % 2, 2**60 + 1, 2**60).astype(np.int64))
    c = regression_effect(huge, **kw, covariates=(*C.covariates, "big"))
    assert (c.raw.estimate, c.raw.se, c.raw.df) == (b.raw.estimate, b.raw.se, b.raw.df) and c.raw.method == b.raw.method


def test_ols_counts_non_finite_rows():
    """ols refuses missing or infinite values in y or X, counting the rows (its fast check is a
    finite sum of each)."""
    from pleval.errors import DataError

    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(50), rng.normal(size=50)])
    y = rng.normal(size=50)
    for Xb, yb, n_bad in ((X, np.where(np.arange(50) == 3, np.nan, y), 1),
                          (np.where(np.arange(50)[:, None] % 10 == 0, np.array([1.0, np.inf]), X), y, 5)):
        with pytest.raises(DataError, match=f"^{n_bad} row"):
            ols(yb, Xb, vcov="HC1")
    # each column named with its missing and infinite values (before 2026-12-05 one count, no column)
    Xb = X.copy()
    Xb[[4, 9], 1] = [np.inf, -np.inf]
    with pytest.raises(DataError, match=re.escape("3 row(s) have missing or infinite values (y: 1 missing; "
                                                  "'frl': 2 infinite)")):
        ols(np.where(np.arange(50) == 3, np.nan, y), Xb, names=["const", "frl"], vcov="HC1")
    # given X'X (no pass over X when it is finite): a NaN or an infinity in X, even in a row of
    # weight 0, leaves it non-finite, and the rows are counted
    w, g = np.where(np.arange(50) == 7, 0.0, 1.0), np.arange(50) % 5
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[7, 1] = bad
        sw = np.sqrt(w)
        with np.errstate(invalid="ignore"):  # the row of weight 0: inf · 0
            gram = ((Xb * sw[:, None]).T @ (Xb * sw[:, None]), (Xb * sw[:, None]).T @ (y * sw))
        with pytest.raises(DataError, match="^1 row"):
            ols(y, Xb, weights=w, clusters=g, vcov="CR1", gram=gram)
    sw = np.sqrt(w)
    gram = ((X * sw[:, None]).T @ (X * sw[:, None]), (X * sw[:, None]).T @ (y * sw))
    assert np.allclose(ols(y, X, weights=w, clusters=g, vcov="CR1", gram=gram).params,
                       ols(y, X, weights=w, clusters=g, vcov="CR1").params, rtol=1e-13)


def _balance_literally(before, after, variables, by, smd):
    """The balance table row by row, group by group, from boolean selections (the slow route):
    weighted means, Σw(x − x̄)²/(Σw − Σw²/Σw), SMDs, variance ratios, and eCDFs evaluated at
    each distinct value of the group before matching as Σw[x ≤ v]/Σw."""
    rows = []
    for name in ["all", *sorted(pd.unique(before[by]), key=str)]:  # (groups sorted by name)
        b = before if name == "all" else before[before[by] == name]
        a = after if name == "all" else after[after[by] == name]
        tb, ta = b["t"].to_numpy() == 1, a["t"].to_numpy() == 1
        wa, wa2 = a["_weight"].to_numpy(), a["_weight2"].to_numpy()
        cols = []
        for v in variables:
            if not pd.api.types.is_numeric_dtype(b[v]):
                cols += [(f"{v}[{lev}]", (b[v] == lev).to_numpy(float), (a[v] == lev).to_numpy(float), True)
                         for lev in sorted(b[v].unique())]
            else:
                x = b[v].to_numpy(float)
                cols.append((v, x, a[v].to_numpy(float), bool(np.isin(x, (0, 1)).all())))

        def mv(x, w, w2):  # a constant column: its value and no variance (no rounding noise)
            m = x[0] if np.ptp(x) == 0 else (w * x).sum() / w.sum()
            return m, (w * (x - m) ** 2).sum() / (w.sum() - w2.sum() / w.sum())

        def ecdf(x, t, w, grid):
            F = [((x[s][:, None] <= grid) * w[s][:, None]).sum(0) / w[s].sum() for s in (t, ~t)]
            e = np.abs(F[0] - F[1])
            return e.mean(), e.max()

        for v, xb, xa, binary in cols:
            ones = np.ones(len(xb))
            (mt0, vt0), (mc0, vc0) = mv(xb[tb], ones[tb], ones[tb]), mv(xb[~tb], ones[~tb], ones[~tb])
            (mt1, vt1), (mc1, vc1) = mv(xa[ta], wa[ta], wa2[ta]), mv(xa[~ta], wa[~ta], wa2[~ta])
            var0 = {"pooled": (vt0 + vc0) / 2, "treated": mt0 * (1 - mt0) if binary else vt0,
                    "pooled_p": (mt0 * (1 - mt0) + mc0 * (1 - mc0)) / 2 if binary else (vt0 + vc0) / 2}[smd]
            sd0 = np.sqrt(var0)
            grid = np.unique(xb)
            e0 = (abs(mt0 - mc0),) * 2 if binary else ecdf(xb, tb, ones, grid)
            e1 = (abs(mt1 - mc1),) * 2 if binary else ecdf(xa, ta, wa, grid)
            rows.append([name, v, binary, mt0, mc0, (mt0 - mc0) / sd0 if sd0 > 0 else np.nan,
                         np.nan if binary or vc0 == 0 else vt0 / vc0, mt1, mc1,
                         (mt1 - mc1) / sd0 if sd0 > 0 else np.nan, np.nan if binary or vc1 == 0 else vt1 / vc1, *e0, *e1])
    return pd.DataFrame(rows, columns=["group", "variable", "binary", "mean_treated_before", "mean_comparison_before",
                                       "smd_before", "var_ratio_before", "mean_treated_after", "mean_comparison_after",
                                       "smd_after", "var_ratio_after", "ecdf_mean_before", "ecdf_max_before",
                                       "ecdf_mean_after", "ecdf_max_after"])


@pytest.mark.parametrize("smd", ["pooled", "treated", "pooled_p"])
def test_balance_in_one_pass_is_the_literal_balance(smd):
    """balance() (rows sorted by treatment × subject once, moments per cell pooled, eCDFs from
    histograms) against the table computed group by group from boolean selections: weighted
    data with ties (whole-point and rounded scores), a constant column, a 0/1 column that is
    not binary in one subject, a categorical covariate with a level absent from one subject,
    three subjects and merged copies (Σw² ≠ (Σw)²), 0/1 columns (integer, float and constant;
    their moments from weighted counts); the matched rows given as a frame and as positions in
    ``before``."""
    from pleval.matching.balance import balance

    rng = np.random.default_rng(11)
    n = 1500
    subject = rng.choice(["math", "reading", "science"], n)
    race = rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05])
    race[(subject == "science") & (race == "d")] = "a"
    df = pd.DataFrame({
        "t": (rng.random(n) < 0.3).astype(int), "subject": subject,
        "pre": np.round(rng.normal(200, 15, n)), "score": np.round(rng.normal(0, 1, n), 1),
        "const": 3.0, "frl": (rng.random(n) < 0.4).astype(int), "race": race,
        "mix": np.where(subject == "math", rng.integers(0, 3, n), rng.integers(0, 2, n)),
        "ell": (rng.random(n) < 0.1).astype(float), "one": 1,
    })
    rows = np.sort(rng.choice(n, 900, replace=False))
    after = df.iloc[rows].assign(_weight=rng.choice([0.5, 1.0, 2.0, 1 / 3], len(rows)))
    after["_weight2"] = after["_weight"] ** 2 * rng.choice([1.0, 0.5, 0.25], len(rows))  # merged copies
    variables = ["pre", "score", "const", "frl", "race", "mix", "ell", "one"]
    want = _balance_literally(df, after, variables, "subject", smd)
    for got in (balance(df, after, "t", variables, "pre", by="subject", smd=smd, weight2="_weight2"),
                balance(df, after[["_weight", "_weight2"]], "t", variables, "pre", by="subject", smd=smd,
                        weight2="_weight2", rows=rows)):
        tab = got.table
        assert tab[["group", "variable", "binary"]].equals(want[["group", "variable", "binary"]])
        assert {"science"} == set(tab.group[tab.variable == "race[d]"]) ^ {"all", "math", "reading", "science"}
        assert not tab.binary[(tab.variable == "mix") & (tab.group == "math")].item()
        assert tab.binary[(tab.variable == "mix") & (tab.group == "reading")].item()
        num = want.columns[3:]
        np.testing.assert_allclose(tab[num].to_numpy(float), want[num].to_numpy(float), rtol=1e-12, atol=1e-14)
        for c in ("const", "one"):  # constant (the 0/1 one's moments from counts): no SMD, no eCDF gap
            const = tab[tab.variable == c]
            assert const[["smd_before", "smd_after", "var_ratio_before", "var_ratio_after"]].isna().all().all()
            assert (const[["ecdf_max_before", "ecdf_max_after"]] == 0).all().all()
            assert (const[["mean_treated_before", "mean_comparison_after"]] == df[c].iloc[0]).all().all()
        eq = got.equivalence.set_index("group")
        for name in ["all", "math", "reading", "science"]:
            a = after if name == "all" else after[after.subject == name]
            t, w, w2, x = a.t == 1, a._weight, a._weight2, a.pre
            nt, nc = w[t].sum() ** 2 / w2[t].sum(), w[~t].sum() ** 2 / w2[~t].sum()
            mt, mc = np.average(x[t], weights=w[t]), np.average(x[~t], weights=w[~t])
            assert eq.loc[name, "mean_treated"] == pytest.approx(mt, rel=1e-13)
            assert eq.loc[name, "n_eff_comparison"] == pytest.approx(nc, rel=1e-13)
            vt = (w[t] * (x[t] - mt) ** 2).sum() / (w[t].sum() - w2[t].sum() / w[t].sum())
            vc = (w[~t] * (x[~t] - mc) ** 2).sum() / (w[~t].sum() - w2[~t].sum() / w[~t].sum())
            sp = np.sqrt(((nt - 1) * vt + (nc - 1) * vc) / (nt + nc - 2))
            g = (1 - 3 / (4 * (nt + nc) - 9)) * (mt - mc) / sp
            assert eq.loc[name, "hedges_g"] == pytest.approx(g, rel=1e-11)


def test_vcg_sets_are_the_literal_k_closest():
    """vcg_sets (d_k by bisection of two sorted runs, each set as three runs of equal weight,
    lookups on needles sorted by cell and score) against a literal per-row computation: every
    qualifier's distance, the k-th smallest by a full sort, weights 1/k and (k − c)/(t·k);
    whole-point scores (ties at d_k), fractional ones with noise, bands 0 to wide, k 1 to 60,
    cells without comparisons. Then the long format written from the ranges (what ``match``
    keeps) is that of the pairs (``_long``)."""
    from pleval.matching import _long
    from pleval.matching.exact import TIE_TOL, vcg_sets

    rng = np.random.default_rng(7)
    for trial in range(60):
        n_t, n_c = int(rng.integers(1, 80)), int(rng.integers(0, 900))
        tc, cc = rng.integers(0, 4, n_t), rng.integers(0, 3, n_c)
        scale = [1.0, 0.1, 0.37][trial % 3]
        ts, cs = rng.integers(0, 15, n_t) * scale + 0.1, rng.integers(0, 15, n_c) * scale + 0.1
        if trial % 4 == 3:
            cs = cs + rng.normal(0, 1e-12, n_c)
        band, k = float(rng.choice([0.0, 1.0, 3.0, 100.0])) * scale, int(rng.integers(1, 61))
        vs = vcg_sets(tc, ts, cc, cs, band=band, k=k)
        m = vs.pairs()
        relabelled = vcg_sets((tc * 7 + 3).astype(str), ts, (cc * 7 + 3).astype(str), cs, band=band, k=k).pairs()
        assert all(np.array_equal(getattr(m, f), getattr(relabelled, f)) for f in ("t_row", "c_row", "weight"))  # codes or labels
        for i in range(n_t):
            q = np.flatnonzero((cc == tc[i]) & (np.abs(cs - ts[i]) <= band + TIE_TOL))
            d = np.abs(cs[q] - ts[i])
            got, w = m.c_row[m.t_row == i], m.weight[m.t_row == i]
            assert m.n_qualified[i] == len(q)
            if len(q) <= k:
                assert sorted(got) == sorted(q) and (w == 1.0 / max(len(q), 1)).all()
                continue
            d_k = np.sort(d)[k - 1]
            in_set = np.abs(d - d_k) <= 2 * TIE_TOL + 1e-13 * d_k
            keep = (d < d_k - TIE_TOL) | in_set
            assert sorted(got) == sorted(q[keep])
            closer = d < d_k - TIE_TOL
            c, t = closer.sum(), (keep & ~closer).sum()
            want = dict(zip(q, np.where(closer, 1.0 / k, (k - c) / (t * k))))
            np.testing.assert_allclose(w, [want[j] for j in got], rtol=1e-15, atol=0)
        t_pos = np.sort(rng.choice(10 * (n_t + n_c) + 1, n_t, replace=False))
        c_pos = np.sort(rng.choice(10 * (n_t + n_c) + 1, n_c, replace=False))
        matched = m.n_matched > 0
        want_long = _long(t_pos[matched], c_pos[m.c_row], (np.cumsum(matched) - 1)[m.t_row], m.weight,
                          int(matched.sum()))
        for a, b in zip(vs.long(t_pos, c_pos), want_long):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        # the distinct rows from the ranges (treated and comparison rows apart, as in data): bit for
        # bit the bincounts of the long format
        n = 10 * (n_t + n_c) + 1
        pos = rng.permutation(n)[: n_t + n_c]
        t_pos, c_pos = np.sort(pos[:n_t]), np.sort(pos[n_t:])
        rows, _, w = vs.long(t_pos, c_pos)
        cp = np.bincount(rows, minlength=n)
        used = np.flatnonzero(cp)
        want = (used, np.bincount(rows, w, n)[used], np.bincount(rows, np.square(w), n)[used], cp[used])
        for a, b in zip(vs.distinct(t_pos, c_pos, n), want):
            assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("values", [[3, 5, 3, 9, 5], [1, 0, 1, 1], [-7, 2**40, 0, -7], [4], [2**62, -2**62],
                                    [2, 0, 1, 2], [5, 3, 4, 4]])
def test_integer_codes_without_hashing_are_factorize(values):
    """codes_and_levels codes small-range integers through a table of the values present: the
    codes and levels (Python ints, sorted) of pandas.factorize(sort=True); wide ranges fall back."""
    from pleval.matching._design import codes_and_levels

    for dtype in ("int64", "int32", "uint8"):
        if not all(np.iinfo(dtype).min <= x <= np.iinfo(dtype).max for x in values):
            continue
        s = pd.Series(np.array(values, dtype=dtype))
        codes, levels = codes_and_levels(s)
        want_codes, want_levels = pd.factorize(s, sort=True)
        assert codes.dtype == np.int64 and np.array_equal(codes, want_codes)
        assert levels.dtype == object and list(levels) == list(want_levels)
        assert [type(x) for x in levels] == [type(x) for x in np.asarray(want_levels, dtype=object)]


@pytest.mark.parametrize("vcov,cr2", [("CR2", "transformed"), ("CR1", "transformed"), ("CR0", "transformed"),
                                      ("CR2", "clubsandwich"), ("HC1", "transformed")])
def test_ols_center_is_the_fit_of_the_centred_columns(vcov, cr2):
    """ols(center=) (the centred rows formed a block at a time, in the Gram, the residuals and
    the per-cluster cross-products) against the fit of the explicitly centred matrix: the
    same coefficients, covariance, df and residuals; more rows than one block."""
    from pleval.inference.robust import _CHUNK_ROWS

    rng = np.random.default_rng(3)
    n = _CHUNK_ROWS + 5000
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(200, 15, n), rng.integers(0, 2, n)])
    y = X @ [5.0, 2.0, 0.8, -1.0] + rng.normal(0, 8, n)
    w, g = rng.choice([0.25, 0.5, 1.0, 1 / 3], n), rng.integers(0, 300, n)
    center = np.concatenate([[0.0], (w @ X[:, 1:]) / w.sum()])
    kw = dict(weights=w, clusters=None if vcov == "HC1" else g, vcov=vcov, cr2=cr2)
    a, b = ols(y, X, center=center, **kw), ols(y, X - center, **kw)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-13)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(a.resid, b.resid, rtol=1e-12, atol=1e-12)
    assert a.coef_df(1) == pytest.approx(b.coef_df(1), rel=1e-12)
    with pytest.raises(Exception, match="center"):
        ols(y, X, center=center[:2], **kw)


@pytest.mark.parametrize("vcov,cr2", [("CR2", "transformed"), ("CR1", "transformed"), ("CR0", "transformed"),
                                      ("CR2", "clubsandwich")])
def test_ols_scores_from_the_callers_blocks_are_those_of_the_residuals(vcov, cr2):
    """ols(blocks=): the scores u_g = T_g − S_gβ from per-school X̃'X̃ and X̃'ỹ (the outcome less
    its weighted mean, the gram their sums) against the fit that forms them from the residuals:
    the same coefficients but the intercept, covariance, df and residuals (clubSandwich's CR2
    ignores them); blocks of the wrong shape are refused."""
    from pleval.errors import DataError
    from pleval.inference.robust import _CHUNK_ROWS, cluster_codes, grouped_cross_products

    rng = np.random.default_rng(5)
    n = 2 * _CHUNK_ROWS + 77
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(200, 15, n), rng.integers(0, 2, n)])
    g = rng.integers(0, 150, n)
    y = X @ [5.0, 2.0, 0.8, -1.0] + rng.normal(0, 8, n) + rng.normal(0, 3, 150)[g]
    w = rng.choice([0.25, 0.5, 1.0, 1 / 3], n)
    center = np.concatenate([[0.0], (w @ X[:, 1:]) / w.sum()])
    y0 = float(w @ y / w.sum())
    codes, G = cluster_codes(g)
    S, T = grouped_cross_products(X, codes, G, y - y0, w, center=center)
    kw = dict(weights=w, clusters=g, vcov=vcov, cr2=cr2, center=center)
    a = ols(y - y0, X, gram=(S.sum(axis=0), T.sum(axis=0)), blocks=(S, T), **kw)
    b = ols(y, X, **kw)
    np.testing.assert_allclose(a.params[1:], b.params[1:], rtol=1e-12)
    assert a.params[0] + y0 == pytest.approx(b.params[0], rel=1e-12)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-11, atol=1e-15 * np.abs(b.vcov).max())
    np.testing.assert_allclose(a.resid, b.resid, rtol=1e-10, atol=1e-11)
    assert a.coef_df(1) == pytest.approx(b.coef_df(1), rel=1e-11) and a.n_clusters == b.n_clusters == G
    if cr2 == "transformed":
        with pytest.raises(DataError, match="blocks"):
            ols(y - y0, X, blocks=(S[:, :2, :2], T), **kw)


@pytest.mark.parametrize("by", [None, C.subject])
def test_designs_without_the_text_columns_are_the_same(tied, by):
    """group_designs(part_columns="read") leaves the coded text columns out of ``part`` (the
    design takes their codes): the same designs and effects, bit for bit; ``by`` stays."""
    text = [x for x in (C.school, C.subject, *C.covariates) if x and not pd.api.types.is_numeric_dtype(tied.data[x])]
    assert C.school in text and C.subject in text  # the case this covers
    for (ka, pa, da, _), (kb, pb, db, _) in zip(tied.group_designs(by), tied.group_designs(by, part_columns="read")):
        assert ka == kb and set(pa.columns) - set(pb.columns) == set(text) - {by}
        for f in ("y", "t", "X", "weights", "weights2", "copies", "clusters", "rows", "cells"):
            assert np.array_equal(getattr(da, f), getattr(db, f)), f
        assert (da.names, da.adjust, da.categorical) == (db.names, db.adjust, db.categorical)
    a = tied.group_fits(by)
    b = tied.group_fits(by, part_columns="read")
    for x, y in zip(a, b):
        assert x[3].to_frame().equals(y[3].to_frame())
    est = tied.estimate(by)  # (its designs leave the text out; its frame adds the note on PL rows left out)
    assert (est if by is None else est[a[0][0]]).to_frame().drop(columns="note", errors="ignore").equals(a[0][3].to_frame())
    with pytest.raises(Exception, match="part_columns"):
        tied.group_designs(by, part_columns="some")


def test_group_pairs_of_nearest_sets_are_those_of_the_long_format(tied):
    """A nearest-neighbour match's sets (one PL row each, members together) give a group's
    (set, member) pairs from the sets whose PL row is the group's: the same positions, sets and
    pairs, dtypes included, as the pass over every pair of the long format — for each subject's
    design and for designs holding only some of its rows (sets whose PL row is left out, members
    left out of sets kept)."""
    from types import SimpleNamespace

    from pleval.matching import NearestSets

    m = tied
    assert isinstance(m.sets, NearestSets)
    long = replace(m, sets=None, rows=m.rows, set_id=m.set_id, weight=m.weight)  # the pass over every pair
    rng = np.random.default_rng(5)
    for _, _, des, _ in m.group_designs(C.subject):
        for keep in (np.ones(len(des.rows), bool), rng.random(len(des.rows)) < 0.7, des.t == 0):
            d = SimpleNamespace(rows=des.rows[keep], t=des.t[keep])
            for got, want in zip(m._group_pairs(d), long._group_pairs(d)):
                np.testing.assert_array_equal(got, want, strict=True)


def test_group_rows_taken_column_by_column_are_the_frames_rows():
    """``_take_rows`` (each column taken by itself) is ``data.iloc[rows]`` of those columns:
    values, dtypes, names and index, for numpy, nullable, categorical and Arrow text columns."""
    from pleval.matching.results import _take_rows

    rng = np.random.default_rng(2)
    n = 500
    df = pd.DataFrame({"i": rng.integers(0, 9, n), "f": rng.normal(size=n), "b": rng.random(n) < 0.5,
                       "s": pd.array(rng.choice(["x", "y", None], n), dtype="string"),
                       "a": pd.array(rng.choice(["p", "q"], n), dtype="str"),
                       "c": pd.Categorical(rng.choice(["u", "v"], n)),
                       "n": pd.array(rng.integers(0, 3, n), dtype="Int64")},
                      index=pd.Index(rng.permutation(10 * n)[:n], name="row"))
    rows = rng.integers(0, n, 800)
    cols = ["f", "s", "i", "c", "n", "a", "b"]
    pd.testing.assert_frame_equal(_take_rows(df, rows, cols), df.iloc[rows, df.columns.get_indexer(cols)])


def test_designs_without_parts_gather_no_group_text(tied, monkeypatch):
    """group_designs(part_columns="none") gathers only the columns the design reads as values:
    not the group column, whose codes it takes (nor the other coded text); the same designs as
    with every column."""
    from pleval.matching import results

    taken = []
    take = results._take_rows
    monkeypatch.setattr(results, "_take_rows", lambda data, rows, cols: taken.append(list(cols)) or take(data, rows, cols))
    none = tied.group_designs(C.subject, part_columns="none")
    assert taken and all(C.subject not in cols and C.school not in cols for cols in taken)
    for (ka, _, da, _), (kb, pb, db, _) in zip(tied.group_designs(C.subject), none):
        assert ka == kb and pb is None
        for f in ("y", "t", "X", "weights", "weights2", "copies", "clusters", "rows", "cells"):
            assert np.array_equal(getattr(da, f), getattr(db, f)), f


def test_one_school_arms_code_the_students_only_when_an_arm_is_in_one_school():
    """``one_school_arms_as_students`` takes the students' codes as a callable, called only when
    an arm's rows lie in one school (coding the students is the costly part), with the clusters
    of the codes given directly."""
    from pleval.matching.effect import one_school_arms_as_students

    calls = []

    def units(u):
        return lambda: calls.append(1) or u

    t = np.array([True, True, False, False, False])
    u = np.array([0, 1, 2, 3, 4])
    several = np.array([0, 1, 2, 3, 2])
    assert one_school_arms_as_students(several, t, units(u))[1] == "" and not calls
    one_pl = np.array([0, 0, 1, 2, 1])
    got, want = one_school_arms_as_students(one_pl, t, units(u)), one_school_arms_as_students(one_pl, t, u)
    assert len(calls) == 1 and got[1] == want[1] == "PL"
    np.testing.assert_array_equal(got[0], want[0])
    both = np.array([0, 0, 1, 1, 1])
    got = one_school_arms_as_students(both, t, units(u))
    assert len(calls) == 2 and got[1] == "PL and comparison"  # (coded once for both arms)
    np.testing.assert_array_equal(got[0], one_school_arms_as_students(both, t, u)[0])


def test_codes_computed_once_give_the_same_tables(tied):
    """The string columns coded once on the whole data (MatchResult._column_codes) and only
    gathered and renumbered for the distinct rows, each subject and the balance groups: the
    same designs (X, names, clusters, strata cells), balance table and effects as coding each
    frame anew; first-appearance renumbering as pandas.factorize, with missing values and
    levels that do not occur."""
    from pleval.matching._design import codes_and_levels, combine_codes, present_codes
    from pleval.matching.balance import _first_appearance, balance

    m = tied
    c = m.columns
    for by in (None, c.subject):
        for key, part, des, _ in m.group_designs(by):
            plain = effect_design(part, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest,
                                  covariates=c.covariates, strata=m.strata, school=c.school, rows=des.rows,
                                  weight2="_weight2", copies="_copies")
            assert des.names == plain.names and np.array_equal(des.X, plain.X)
            assert np.array_equal(pd.factorize(des.clusters)[0], pd.factorize(plain.clusters)[0])
            assert np.array_equal(des.cells, combine_codes(part, des.categorical))
    rows, w, w2, _ = m._distinct
    after = pd.DataFrame({"_weight": w, "_weight2": w2})
    kw = dict(by=c.subject, weight2="_weight2", rows=rows)
    pd.testing.assert_frame_equal(m.balance().table, balance(m.data, after, c.treatment, m.variables, c.main_pretest,
                                                             **kw).table)
    s = pd.Series(["b", None, "c", "a", "b", None, "c"], dtype="string")
    k, lv = codes_and_levels(s)
    lv_more = np.array(["a", "b", "b2", "c", "d"], dtype=object)  # codes over more levels than occur
    k_more = np.array([1, -1, 3, 0, 1, -1, 3])
    assert [np.array_equal(x, y) for x, y in zip(present_codes(k_more, lv_more), (k, lv))] == [True, True]
    want, want_levels = pd.factorize(s, use_na_sentinel=True)
    got, got_levels = _first_appearance(k_more, lv_more)
    assert np.array_equal(got, want) and list(got_levels) == list(want_levels)


def test_vcg_distinct_rows_from_the_ranges_are_those_of_the_long_format():
    """VCG matching keeps its sets as ranges (``MatchResult.sets``): balance and the effect run
    on distinct rows taken from the ranges, and the long format is written only when read. The
    distinct rows are bit for bit the bincounts of the long format, and the balance table,
    effect, SE and df exactly those of the same result given its long format (sets dropped)."""
    from dataclasses import replace

    df = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data
    kw = dict(method="vcg", band=5.0, k=10, covariates=["frl"])  # few keys, small k: heavy reuse, ties at d_k
    m = match(validate(df, C), C, **kw)
    bal, eff = m.balance().table, m.estimate(by=C.subject)
    assert m.sets is not None and "rows" not in vars(m)  # nothing of the long format formed so far
    n = len(m.data)
    cp = np.bincount(m.rows, minlength=n)
    used = np.flatnonzero(cp)
    assert cp.max() > 3 and len(m.rows) > 2 * len(used)  # reuse is real here
    want = (used, np.bincount(m.rows, m.weight, n)[used], np.bincount(m.rows, np.square(m.weight), n)[used], cp[used])
    for a, b in zip(m._distinct, want):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    given = replace(m, rows=m.rows, set_id=m.set_id, weight=m.weight, sets=None)
    pd.testing.assert_frame_equal(given.balance().table, bal, check_exact=True)
    pd.testing.assert_frame_equal(given.estimate(by=C.subject).to_frame(), eff.to_frame(), check_exact=True)
    w = validate(df.assign(wt=np.linspace(0.5, 2.0, len(df))), C.replace(weight="wt"))  # own weights: long at once
    assert match(w, w.columns, **kw).sets is None
    # each set's school, taken from the school codes' levels: the anchoring PL row's own school id
    anchor = m.rows[m.data[C.treatment].to_numpy()[m.rows] == 1]  # in set order
    assert m.set_school.dtype == object and len(m.set_school) == len(anchor)
    assert m.set_school.tolist() == m.data[C.school].iloc[anchor].to_numpy(dtype=object).tolist()


def test_combine_codes_is_the_mixed_radix_of_the_column_codes():
    """combine_codes (the radix product bounded without a pass over the codes, missing keys
    masked only when a column has them) against the literal form: every column's codes, the
    mixed-radix product checked after each column (re-coded past 2**50), −1 where a key is
    missing; with missing values, text, integers and enough columns to pass 2**50."""
    from pleval.matching._design import codes_and_levels, combine_codes

    def literal(df, columns):
        code, miss = np.zeros(len(df), np.int64), np.zeros(len(df), bool)
        for c in columns:
            k, levels = codes_and_levels(df[c])
            miss |= k < 0
            code = code * (len(levels) + 1) + np.maximum(k, 0)
            if len(levels) and code.max(initial=0) > 2**50:
                code = pd.factorize(code, sort=True)[0].astype(np.int64)
        code[miss] = -1
        return code

    rng = np.random.default_rng(5)
    n = 3000
    df = pd.DataFrame({f"i{j}": rng.integers(0, 9000, n) for j in range(5)})
    df["s"] = pd.Series(rng.choice(["a", "b", "c", None], n), dtype="string")
    df["g"] = rng.integers(3, 9, n)
    df["f"] = np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 3, n).astype(float))
    for cols in (["g"], ["s", "g"], ["g", "f"], list(df.columns), ["i0", "i1", "i2", "i3", "i4", "g", "s", "f"]):
        out = {}
        got = combine_codes(df, cols, out=out)
        assert got.dtype == np.int64 and np.array_equal(got, literal(df, cols)), cols
        assert list(out) == cols


@pytest.mark.parametrize("dtype", ["object", "string[pyarrow]", "category"])
def test_sample_counts_are_pandas_nunique_and_isin_on_the_distinct_rows(tied, dtype):
    """``MatchResult.sample_counts`` (the rating's sample size) is, per subject and for every
    row, the distinct rows' ``nunique`` of student ids and of the treated and comparison rows'
    school ids, and ``isin`` for a school holding both arms (a missing id matching a missing
    one), with school ids missing in some rows and of each column type."""
    import dataclasses

    rng = np.random.default_rng(5)
    for case in range(6):
        data = tied.data.copy()
        ids = data[C.school].astype(object).to_numpy()
        if case:  # a few schools' ids missing, on both arms or one
            gone = rng.choice(pd.unique(ids), size=case, replace=False)
            arm = data[C.treatment].to_numpy() == (case % 2)
            ids = np.where(np.isin(ids, gone) & (arm | (case > 3)), None, ids)
        if case == 5:  # every school shared: one id everywhere
            ids = np.where(pd.isna(ids), None, "one")
        data[C.school] = pd.Series(ids, index=data.index).astype(dtype)
        m = dataclasses.replace(tied, data=data, codes={}, factorized={})
        d = m.distinct([C.treatment, C.school, C.student_id, C.subject])
        for subject in [None, *pd.unique(d[C.subject])]:
            part = d if subject is None else d[d[C.subject] == subject]
            t = part[C.treatment].to_numpy() == 1
            sch = part[C.school].astype(object)
            want = (part[C.student_id].nunique(), sch[t].nunique(), sch[~t].nunique(), bool(sch[t].isin(sch[~t]).any()))
            assert m.sample_counts[subject] == want, (case, subject)


@pytest.mark.parametrize("top", [0, 1, 300, 2**16 - 1, 2**16, 70_000, 2**32 - 1, 2**32 + 5, 2**50])
def test_radix_sort_and_first_appearance_codes_are_numpys_and_pandas(top):
    """radix_argsort is numpy's stable argsort (one and two 16-bit digits below 2^32, packed with
    the positions in one int64 sort above, and past 63 bits three and four digits; many equal
    keys; int64 and int32 keys), sorted_keys the keys
    in that order, first_appearance_codes is pd.factorize: the same codes and, at each code's
    first position, its key (school_sample's (PL school, row) pairs are numbered by it)."""
    from pleval.inference.robust import radix_argsort, sorted_keys
    from pleval.matching._design import first_appearance_codes

    rng = np.random.default_rng(top % 97)
    for n in (0, 1, 5, 20_000):
        key = rng.integers(0, top + 1, n).astype(np.int64)
        if n > 5:
            key[rng.integers(0, n, n // 2)] = key[rng.integers(0, n, n // 2)]  # repeated keys
        want_order = np.argsort(key, kind="stable")
        assert np.array_equal(radix_argsort(key), want_order)
        if top < 2**31:  # the codes callers sort are int32
            assert np.array_equal(radix_argsort(key.astype(np.int32)), want_order)
        ks, order = sorted_keys(key)
        assert np.array_equal(order, want_order) and np.array_equal(ks, key[want_order])
        want, uniq = pd.factorize(key)
        for bound in (None, top + 1):  # by the sort; by a table over the range where it is small
            codes, first = first_appearance_codes(key, bound)
            assert codes.dtype == np.int64 and np.array_equal(codes, want) and np.array_equal(key[first], uniq)


@pytest.mark.parametrize("case", ["grouped", "interleaved", "small groups", "one group", "empty"])
def test_first_appearance_pairs_are_pandas_factorize_of_the_keys(case, monkeypatch):
    """first_appearance_pairs numbers (group, row) pairs as pd.factorize numbers their keys
    group · n + row (school_sample's (PL school, row) pairs, which came by a sort of those keys):
    the same codes and first positions with each group's pairs together (the school table's
    one pass per group), with groups interleaved (grouped by a stable sort first), with many
    small groups (the keys sorted), and for none."""
    from pleval.matching import _design
    from pleval.matching._design import first_appearance_codes, first_appearance_pairs

    sorted_keys = []
    monkeypatch.setattr(_design, "first_appearance_codes", lambda k: sorted_keys.append(1) or first_appearance_codes(k))
    rng = np.random.default_rng(7)
    n = 5_000
    sizes = {"grouped": [3_000, 1, 40_000, 7_000], "interleaved": [3_000, 1, 40_000, 7_000],
             "small groups": [5] * 400, "one group": [30_000], "empty": []}[case]
    group = np.repeat(np.arange(len(sizes)), sizes)
    rows = rng.integers(0, n, len(group))
    rows[rng.integers(0, len(rows), len(rows) // 3)] = rows[rng.integers(0, len(rows), len(rows) // 3)]  # repeats
    if case == "interleaved":
        group = rng.permutation(group)
    if case == "grouped":
        group = np.array([3, 0, 2, 1])[group]  # together, not in increasing order
    codes, first = first_appearance_pairs(group, rows, n)
    key = group.astype(np.int64) * n + rows
    want, uniq = pd.factorize(key)
    assert np.array_equal(codes, want) and np.array_equal(key[first], uniq)
    assert np.array_equal(first, first_appearance_codes(key)[1])
    assert bool(sorted_keys) == (case == "small groups")


def test_school_effects_leave_the_sample_as_it_was(tied):
    """With every row kept the school-effects step reads the sample's columns without copying
    them (views); nothing it computes is written back: the frame is unchanged, and a second
    call gives the same table."""
    from pleval.heterogeneity import school_effects

    merged = tied.school_sample()
    before = merged.copy(deep=True)
    kw = _school_kw(vcov="CR2")
    a = school_effects(merged, **kw, weight2="_weight2", copies="_copies")
    pd.testing.assert_frame_equal(merged, before)
    b = school_effects(merged, **kw, weight2="_weight2", copies="_copies")
    pd.testing.assert_frame_equal(a.table, b.table)


def test_groups_from_codes_are_the_groupby_groups():
    """A coded key column's groups (``results._groups``: from its codes at the rows, sorted
    levels, missing keys and levels absent from the rows left out) are pandas' ``groupby(sort=True)``
    groups: the same keys, in the same order, of the same types, and the same positions."""
    from pleval.matching._design import codes_and_levels
    from pleval.matching.results import _groups

    rng = np.random.default_rng(4)
    s = pd.Series(rng.choice(["reading", "math", "science", None], 500), dtype="string")
    data = pd.DataFrame({"subject": s, "grade": rng.integers(3, 6, 500)})
    rows = rng.choice(np.flatnonzero(s.ne("science").fillna(True).to_numpy()), 300)  # (a level absent from the rows)
    codes = {"subject": codes_and_levels(data["subject"])}
    assert len(codes["subject"][1]) == 3
    for by, coded in ((("subject",), codes), (("subject",), {}), (("grade",), codes), (("subject", "grade"), codes)):
        got = _groups(data, rows, by, coded)
        want = data.iloc[rows][list(by)].groupby(list(by), sort=True).indices
        assert [k for k, _ in got] == [k if isinstance(k, tuple) else (k,) for k in want]
        assert [type(v) for k, _ in got for v in k] == [type(v) for k in want for v in (k if isinstance(k, tuple) else (k,))]
        for (_, idx), ref in zip(got, want.values()):
            assert np.array_equal(idx, ref)
    assert [k for k, _ in _groups(data, rows, ("subject",), codes)] == [("math",), ("reading",)]


@pytest.mark.parametrize("kw", [dict(method="propensity"), dict(method="propensity", discard="both", caliper=0.05),
                                dict(method="propensity", ps_model="school_means", exact=["race"]),
                                dict(method="mahalanobis"), dict(method="weighting", trim=0.1),
                                dict(method="propensity", penalize=True)])
def test_match_keeps_the_codes_its_fit_and_cells_formed(kw, monkeypatch):
    """A match keeps in ``MatchResult.codes`` the text columns' codes its propensity fit (the
    categorical covariates') and its exact-match cells (the subject's) formed, so the group
    designs do not hash them again (1M rows: race and subject, 12-15 ms each): each kept entry is
    ``codes_and_levels`` of the final data's column (rows the fit or a trim left out too), and the
    balance table and effects by subject are, bit for bit, those of a result without them."""
    import pleval.matching.results as results
    from pleval.matching._design import codes_and_levels

    df = simulate_matched(n_schools=40, n_pl_schools=8, students_per_grade=12, seed=3).data
    cov = ["race", "frl", "female"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = match(validate(df, C), C, covariates=cov, **kw)
    for c, (k, levels) in m.codes.items():
        want = codes_and_levels(m.data[c])
        assert k.dtype == np.int32 and np.array_equal(k, want[0]) and list(levels) == list(want[1]), c
    if kw["method"] == "propensity" and len(kw) == 1:  # the 1M run's match
        assert {"race", C.subject} <= set(m.codes)
        coded = []
        real = results.codes_and_levels
        monkeypatch.setattr(results, "codes_and_levels", lambda s, *a: coded.append(s.name) or real(s, *a))
        m.group_designs(C.subject)
        assert "race" not in coded and C.subject not in coded and C.school in coded
        monkeypatch.undo()
    plain = replace(m, codes={})
    pd.testing.assert_frame_equal(m.balance().table, plain.balance().table, check_exact=True)
    pd.testing.assert_frame_equal(m.estimate(by=C.subject).to_frame(), plain.estimate(by=C.subject).to_frame(),
                                  check_exact=True)
