"""``conventions="matchit"`` against MatchIt's published lalonde example.

Data: ``tests/reference/lalonde.csv`` is MatchIt's ``lalonde`` (Dehejia & Wahba 1999 subsample
of LaLonde 1986: 185 NSW treated, 429 PSID comparisons), converted from
``data/lalonde.tab`` of https://github.com/kosukeimai/MatchIt (commit 32899f0f), with the row
names as ``id``.

Published numbers: the "MatchIt: Getting Started" vignette (MatchIt 4.7.2,
https://kosukeimai.github.io/MatchIt/articles/MatchIt.html), ``summary(m.out0)`` and
``summary(m.out1, un = FALSE)`` for
``matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, data = lalonde,
method = "nearest", distance = "glm")``: balance before and after 1:1 nearest-neighbour
matching on the propensity score without replacement (means, standardized mean differences
with the treated-group SD, variance ratios, eCDF mean and max) and the sample sizes. MatchIt
prints four decimals, so the tolerance is half a unit in the fourth decimal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval.data import Columns
from pleval.errors import DataError

LALONDE = Path(__file__).parent / "reference" / "lalonde.csv"
COLS = Columns(outcome="re78", treatment="treat", student_id="id",
               covariates=("age", "educ", "race", "married", "nodegree", "re74", "re75"))

# variable: means treated, means control, std. mean diff., var. ratio, eCDF mean, eCDF max
MATCHED = {
    "age": (25.8162, 25.3027, 0.0718, 0.4568, 0.0847, 0.2541),
    "educ": (10.3459, 10.6054, -0.1290, 0.5721, 0.0239, 0.0757),
    "race[black]": (0.8432, 0.4703, 1.0259, np.nan, 0.3730, 0.3730),
    "race[hispan]": (0.0595, 0.2162, -0.6629, np.nan, 0.1568, 0.1568),
    "race[white]": (0.0973, 0.3135, -0.7296, np.nan, 0.2162, 0.2162),
    "married": (0.1892, 0.2108, -0.0552, np.nan, 0.0216, 0.0216),
    "nodegree": (0.7081, 0.6378, 0.1546, np.nan, 0.0703, 0.0703),
    "re74": (2095.5737, 2342.1076, -0.0505, 1.3289, 0.0469, 0.2757),
    "re75": (1532.0553, 1614.7451, -0.0257, 1.4956, 0.0452, 0.2054),
}
ALL = {
    "age": (25.8162, 28.0303, -0.3094, 0.4400, 0.0813, 0.1577),
    "educ": (10.3459, 10.2354, 0.0550, 0.4959, 0.0347, 0.1114),
    "race[black]": (0.8432, 0.2028, 1.7615, np.nan, 0.6404, 0.6404),
    "race[hispan]": (0.0595, 0.1422, -0.3498, np.nan, 0.0827, 0.0827),
    "race[white]": (0.0973, 0.6550, -1.8819, np.nan, 0.5577, 0.5577),
    "married": (0.1892, 0.5128, -0.8263, np.nan, 0.3236, 0.3236),
    "nodegree": (0.7081, 0.5967, 0.2450, np.nan, 0.1114, 0.1114),
    "re74": (2095.5737, 5619.2365, -0.7211, 0.5181, 0.2248, 0.4470),
    "re75": (1532.0553, 2466.4844, -0.2903, 0.9563, 0.1342, 0.2876),
}
STATS = ("mean_treated", "mean_comparison", "smd", "var_ratio", "ecdf_mean", "ecdf_max")


@pytest.fixture(scope="module")
def lalonde():
    return pd.read_csv(LALONDE)


@pytest.fixture(scope="module")
def m(lalonde):
    return pleval.match(lalonde, COLS, method="propensity", conventions="matchit")


def _table(m, when):
    t = m.balance().table.set_index("variable")
    return {v: tuple(t.loc[v, f"{s}_{when}"] for s in STATS) for v in t.index}


@pytest.mark.parametrize("when, published", [("before", ALL), ("after", MATCHED)])
def test_balance_table_reproduces_matchit(m, when, published):
    got = _table(m, when)
    assert set(got) == set(published)
    for var, want in published.items():
        np.testing.assert_allclose(got[var], want, atol=5e-5 + 1e-9, rtol=0, err_msg=f"{var} ({when})")


def test_sample_sizes_and_distance_reproduce_matchit(m):
    ss = m.sample_sizes()
    assert ss["comparison"].tolist() == [429, 185, 185, 244, 0]
    assert ss["treated"].tolist() == [185, 185, 185, 0, 0]
    # the "distance" row: mean propensity score of the treated and of the matched controls
    x = m.matched
    ps = pd.Series(m.propensity.ps, index=m.data.index).loc[x.index]
    t = x["treat"].to_numpy() == 1
    assert (round(ps[t].mean(), 4), round(ps[~t].mean(), 4)) == (0.5774, 0.3629)
    assert x.loc[~t].index.is_unique  # without replacement


def test_matchit_conventions_are_stable_and_overridable(lalonde, m):
    shuffled = lalonde.sample(frac=1.0, random_state=2)
    again = pleval.match(lalonde, COLS, method="propensity", conventions="matchit", seed=9)
    assert again.matched.index.tolist() == m.matched.index.tolist()
    # MatchIt breaks ties in data order, so reordering the rows may change which of the tied
    # comparisons (same score, same covariates) is used, but not the balance
    sh = pleval.match(shuffled, COLS, method="propensity", conventions="matchit")
    np.testing.assert_allclose(sh.balance().table["smd_after"], m.balance().table["smd_after"], atol=1e-10)
    rep = pleval.match(lalonde, COLS, method="propensity", conventions="matchit", replace=True)
    assert rep.options["replace"] and not rep.options["ties"]
    assert "MatchIt conventions" in rep.summary()
    with pytest.raises(DataError, match="conventions"):
        pleval.match(lalonde, COLS, conventions="R")


def _matchit_nearest_rounds(ps, treated, ratio):
    """MatchIt's nearest-neighbour matching without replacement, no caliper, ``m.order =
    "largest"``, transcribed from ``src/nn_matchC_vec.cpp`` and ``find_control_vec`` in
    ``src/internal.cpp`` (github.com/kosukeimai/MatchIt): rounds r = 1 … ratio over the treated
    in decreasing score (ties in data order); in each, a treated unit's scan alternates left and
    right from its place among the stably sorted scores (from round 2 on, outside the span of its
    earlier matches and no nearer than the farthest of them), keeps the first eligible control
    on each side and takes the nearer (the first found when equal). A unit with no control in a
    round is out of the later ones. Returns {treated row: [control rows in the order matched]}."""
    n = len(ps)
    sorted_rows = np.argsort(ps, kind="stable")
    place = np.argsort(sorted_rows)
    eligible = np.ones(n, bool)
    T = np.flatnonzero(treated)
    sets = {t: [] for t in T}
    for _ in range(ratio):
        for t in T[np.argsort(-ps[T], kind="stable")]:
            if not (eligible & ~treated).any():
                break
            if not eligible[t]:
                continue
            ii = place[t]
            starts = [place[c] for c in sets[t]] + [ii]
            lo, hi = min(starts), max(starts)
            min_dist = max(abs(ps[t] - ps[sorted_rows[lo]]), abs(ps[t] - ps[sorted_rows[hi]]))
            stop = {True: False, False: False}
            found = {True: None, False: None}
            cand, left = [], False
            while not (stop[True] and stop[False]):
                left = True if stop[False] else False if stop[True] else not left
                if found[left] is not None or (lo <= 0 if left else hi >= n - 1):
                    stop[left] = True
                    continue
                if left:
                    lo -= 1
                else:
                    hi += 1
                z = sorted_rows[lo if left else hi]
                if not eligible[z] or treated[z]:
                    continue
                d = abs(ps[t] - ps[z])
                if d < min_dist:
                    continue
                if cand and any(dc < d for _, dc in cand):
                    stop[left] = True
                    continue
                cand.append((z, d))
                found[left] = z
            if not cand:
                eligible[t] = False
                continue
            best = cand[0]
            for z, d in cand[1:]:
                if d < best[1]:
                    best = (z, d)
            sets[t].append(best[0])
            eligible[best[0]] = False
            if len(sets[t]) == ratio:
                eligible[t] = False
    return sets


@pytest.mark.parametrize("ratio, n_controls", [(1, None), (2, None), (3, None), (2, 300)])
def test_matchit_ratio_matches_in_rounds(lalonde, ratio, n_controls):
    """MatchIt with ``ratio ≥ 2`` and no replacement matches in rounds: every treated unit gets its
    first control before any gets a second (man/method_nearest.Rd, ``ratio``). Before 2026-12-05
    pleval gave each PL row its k at once: on lalonde with k = 2, fewer PL rows had both, others
    none. Checked set by set against a transcription of MatchIt's C++ on pleval's own scores
    (the propensity fit is checked against MatchIt's printed output above); 300 of the 429
    controls make them scarce (3 × 185 > 429 too). With ratio 1 the sets also check the tie rule:
    among controls of equal score below the treated unit's, MatchIt's leftward scan meets the
    last in data order first (before 2026-12-05 pleval took the first: 12 of the 185 sets held
    another of two identical controls)."""
    d = lalonde if n_controls is None else pd.concat(
        [lalonde[lalonde.treat == 1], lalonde[lalonde.treat == 0].iloc[:n_controls]]).sort_index()
    d = d.reset_index(drop=True)
    m = pleval.match(d, COLS, method="propensity", conventions="matchit", k=ratio)
    ps = np.asarray(m.propensity.ps)
    pos = {ix: i for i, ix in enumerate(m.data.index)}
    want = _matchit_nearest_rounds(ps, m.data["treat"].to_numpy() == 1, ratio)
    x = m.matched
    got = {t: [] for t in want}
    for _, g in x.groupby("_set"):
        got[pos[g.index[g["treat"] == 1][0]]] = sorted(pos[i] for i in g.index[g["treat"] == 0])
    assert {t: sorted(c) for t, c in want.items()} == got
    sizes = np.bincount([len(c) for c in want.values()], minlength=ratio + 1)
    if n_controls is not None or ratio == 3:  # scarce: every PL row matched, some with fewer than k
        assert sizes[0] == 0 and 0 < sizes[ratio] < len(want)
