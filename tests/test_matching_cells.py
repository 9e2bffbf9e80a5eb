"""Weighting, entropy balancing and subclassification hold the exact-match cells (subject ×
grade by default) as the matching methods do: the weights are normalized within each cell, a
cell without comparison rows leaves its PL rows unmatched (with the reason), and a cell without
PL rows is left out."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import SAMPLE_COLUMNS, read_table
from pleval.errors import DataError, PlevalWarning

SAMPLE = "sample_data/pl_matched_students.csv"


@pytest.fixture(scope="module")
def sample():
    return read_table(SAMPLE)


def _raw(m) -> float:
    f = m.estimate().to_frame()
    return float(f.loc[f["scale"] == "raw", "estimate"].iloc[0])


@pytest.fixture(scope="module")
def two_grades(sample):
    """Math, grades 3 and 8, scores centred within grade, and only one grade-3 comparison school
    in ten: odds weights alone gave grade 3 a comparison weight of 85 for 474 PL rows."""
    d = sample[(sample["subject"] == "math") & sample["grade"].isin([3, 8])].copy()
    for v in ("pretest", "posttest"):
        d[v] = d[v] - d.groupby("grade")[v].transform("mean")
    cs = sorted(d.loc[d["treatment"] == 0, "school_id"].unique())
    return d[~((d["treatment"] == 0) & (d["grade"] == 3) & ~d["school_id"].isin(cs[::10]))]


@pytest.mark.filterwarnings("ignore::pleval.errors.PlevalWarning")
@pytest.mark.parametrize("method", ["weighting", "ebal", "subclass", "propensity"])
def test_the_att_weighs_the_grades_as_the_pl_students(two_grades, method):
    """+10 points for grade 8's PL students alone moves the ATT by 10 × grade 8's share of the PL
    rows (4.95). Weighting moved it by 8.06 before its weights were normalized within grade."""
    d = two_grades
    bumped = d.copy()
    bumped.loc[(bumped["treatment"] == 1) & (bumped["grade"] == 8), "posttest"] += 10
    m0, m1 = (pleval.match(x, SAMPLE_COLUMNS, method=method) for x in (d, bumped))
    M = m1.matched
    pl = M[M["treatment"] == 1].groupby(level=0).agg(grade=("grade", "first"), w=("_weight", "first"))
    share = pl.loc[pl["grade"] == 8, "w"].sum() / pl["w"].sum()
    assert _raw(m1) - _raw(m0) == pytest.approx(10 * share, abs=0.03)
    if method == "weighting":
        sums = M.groupby(["grade", "treatment"])["_weight"].sum().unstack()
        np.testing.assert_allclose(sums[0], sums[1], rtol=1e-12)


def test_weighting_weights_are_odds_weights_normalized_within_cells(sample):
    """Each comparison row's weight is its propensity odds, scaled so that its cell's comparison
    weights sum to the cell's PL rows (ATT); for the ATE each group's inverse-probability weights
    sum to the cell's rows."""
    for estimand in ("ATT", "ATE"):
        m = pleval.match(sample, SAMPLE_COLUMNS, method="weighting", estimand=estimand)
        d = m.data.iloc[m.rows]
        t = d["treatment"].to_numpy() == 1
        ps = m.propensity.ps[m.rows]
        raw = np.where(t, 1.0, ps / (1 - ps)) if estimand == "ATT" else np.where(t, 1 / ps, 1 / (1 - ps))
        cell = d["subject"].astype(str) + "/" + d["grade"].astype(str)
        frame = pd.DataFrame({"cell": cell.to_numpy(), "t": t, "raw": raw, "w": m.weight})
        for (_, grp), part in frame.groupby(["cell", "t"]):
            target = ((frame["cell"] == part["cell"].iloc[0]) & frame["t"]).sum() if estimand == "ATT" \
                else (frame["cell"] == part["cell"].iloc[0]).sum()
            if estimand == "ATT" and grp:
                np.testing.assert_array_equal(part["w"], 1.0)
            else:
                np.testing.assert_allclose(part["w"], part["raw"] * target / part["raw"].sum(), rtol=1e-12)


@pytest.mark.parametrize("method", ["weighting", "ebal", "subclass"])
def test_a_cell_without_one_group(sample, method):
    """A grade without comparison students: its PL rows are unmatched with the reason, not
    counted in the estimate (weighting counted them, silently; ebal and subclass stopped with an
    error). A grade without PL students: its comparison rows are left out."""
    no_cmp = sample[~((sample["grade"] == 3) & (sample["treatment"] == 0))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = pleval.match(no_cmp, SAMPLE_COLUMNS, method=method)
    pl = m.data["treatment"] == 1  # (the PL rows analysed: those with an outcome and pretest)
    n_g3 = int((pl & (m.data["grade"] == 3)).sum())
    assert n_g3 > 900
    why = m.unmatched["reason"].value_counts()
    assert why["no comparison row in its exact-match cell (subject, grade)"] == n_g3 == len(m.unmatched)
    assert not (m.data.iloc[m.rows]["grade"] == 3).any()
    assert m.n_treated_matched == int(pl.sum()) - n_g3
    no_pl = sample[~((sample["grade"] == 8) & (sample["treatment"] == 1))]
    m = pleval.match(no_pl, SAMPLE_COLUMNS, method=method)
    assert len(m.unmatched) == 0 and not (m.data.iloc[m.rows]["grade"] == 8).any()


def test_subclass_cells_too_small_for_every_subclass_get_fewer(sample):
    """Exact keys that leave a few PL rows in a cell stopped subclassification ("not enough
    treated rows to put 1 in each of 6 subclasses", at any number of subclasses); such a cell
    now gets as many subclasses as it can fill, each holding both groups."""
    keys = ["subject", "grade", "frl", "urbanicity"]
    m = pleval.match(sample, SAMPLE_COLUMNS, method="subclass", exact=keys)
    d = m.data.iloc[m.rows]
    per = pd.crosstab(m.subclass, d["treatment"].to_numpy())
    assert (per > 0).all().all()
    cells = d.groupby(keys, observed=True).ngroups
    assert cells < per.shape[0] < 6 * cells
    assert m.diagnostics["exact-match cells too small for 6 subclasses (given fewer)"] > 0


def test_weighting_without_stabilizing_cannot_hold_several_cells(sample):
    with pytest.raises(DataError, match=r"stabilize=False leaves the weights unnormalized, which cannot hold the "
                                        r"exact-match cells \(subject, grade\)"):
        pleval.match(sample, SAMPLE_COLUMNS, method="weighting", stabilize=False)
    one = sample[(sample["subject"] == "math") & (sample["grade"] == 5)]
    assert pleval.match(one, SAMPLE_COLUMNS, method="weighting", stabilize=False).n_treated_matched > 0


def test_weighting_trim_counts_the_trimmed_rows_as_discarded(sample):
    """sample_sizes() of weighting with trim= left the trimmed rows out of "all" and showed 0
    discarded (433 of 5,776 PL rows gone without a count there); they are now discarded rows, as
    discard= counts its own."""
    m = pleval.match(sample, SAMPLE_COLUMNS, method="weighting", trim=0.05)
    ss = m.sample_sizes()
    n_pl = int(((sample["treatment"] == 1) & sample["posttest"].notna()).sum())
    assert ss.loc["all", "treated"] == n_pl
    ps = m.propensity.ps  # (of the rows kept; the trimmed ones are gone from m.data)
    assert ss.loc["discarded", "treated"] == n_pl - int((m.data["treatment"] == 1).sum()) > 0
    assert ss.loc["discarded"].sum() == m.exclusions.set_index("reason").loc[
        "propensity score outside [0.05, 0.95] (trim)", "n_rows"]
    assert ss.loc["matched", "treated"] + ss.loc["discarded", "treated"] + ss.loc["unmatched", "treated"] == n_pl
    assert ((ps >= 0.05) & (ps <= 0.95)).all()


def test_effects_by_group_leave_out_a_group_too_small(sample):
    """One PL student in grade 8: m.estimate(by=(subject, grade)) (and `pleval match --by`)
    stopped with that group's error and gave no effect for the other ten groups. The group is now
    left out with a warning and its reason kept in EffectTable.left_out; the others are as
    estimated alone."""
    pl8 = sample.index[(sample["grade"] == 8) & (sample["treatment"] == 1)]
    keep_one = sample.loc[pl8].groupby("subject").head(1).index
    d = sample.drop(pl8.difference(keep_one))
    m = pleval.match(d, SAMPLE_COLUMNS)
    with pytest.warns(PlevalWarning, match=r"effects by subject, grade: group math, 8 not estimated \(.*standard error"):
        tab = m.estimate(by=("subject", "grade"))
    assert set(tab.left_out) == {("math", 8), ("reading", 8)} and len(tab) == 10
    assert "[subject = math, grade = 8] not estimated: " in tab.summary()
    fits = {key: eff for key, _, _, eff, _ in m.group_fits(("subject", "grade"), failed="keep")}
    assert isinstance(fits[("math", 8)], pleval.DesignError)
    for key, eff in tab:
        assert eff.raw.estimate == fits[key].raw.estimate and np.isfinite(eff.raw.se)
    w = pleval.match(d, SAMPLE_COLUMNS, method="weighting")  # (rows outside sets go by their own value)
    with pytest.raises(pleval.DesignError, match="needs both treated and comparison rows"):  # no group estimable
        w.estimate(by=("subject", "grade", "student_id"))


def test_sensitivity_by_group_skips_a_group_left_out(sample):
    """sensitivity(m, by=..., effects=m.estimate(by=...)) stopped with a bare KeyError on a
    group the table left out, and without effects= with that group's DesignError; the group now
    has no sensitivity analysis and the others are those of the full analysis."""
    from pleval.sensitivity import sensitivity

    pl8 = sample.index[(sample["grade"] == 8) & (sample["treatment"] == 1)]
    d = sample.drop(pl8.difference(sample.loc[pl8].groupby("subject").head(1).index))
    m = pleval.match(d, SAMPLE_COLUMNS)
    by = ("subject", "grade")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        tab = m.estimate(by=by)
        given = sensitivity(m, by=by, effects=tab, gammas=(1.0, 2.0))
        fitted = sensitivity(m, by=by, gammas=(1.0, 2.0))
    assert set(given.results) == set(fitted.results) == set(tab.effects)
    key = ("math", 5)
    assert given.results[key].ovb.rv_q == pytest.approx(fitted.results[key].ovb.rv_q, rel=1e-12)


@pytest.mark.parametrize("weight", [None, "w"])
@pytest.mark.parametrize("method", ["weighting", "ebal"])
def test_no_cell_with_both_groups_is_an_error(sample, method, weight):
    """PL rows in grade 3 only, comparison rows in grade 4 only: no cell can be weighted. A
    change to analysis weights had moved weighting's check into the one-cell branch, so this
    returned an empty match (0 rows) and failed later with a vaguer message."""
    d = sample[((sample["treatment"] == 1) & (sample["grade"] == 3)) | ((sample["treatment"] == 0) & (sample["grade"] == 4))]
    cols = SAMPLE_COLUMNS.replace(weight=weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        with pytest.raises(pleval.DesignError, match=r"no exact-match cell \(subject, grade\) holds both treated"):
            pleval.match(d.assign(w=1.0), cols, method=method)
