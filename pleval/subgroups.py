"""Subgroup effects, the test of equal effects across levels, and the change in a gap.

One model per subgrouping variable s with levels l = 1..L, fitted by (weighted) least squares::

    y_i = Σ_l τ_l z_i 1[s_i = l] + Σ_{l≥2} δ_l 1[s_i = l] + x_i'β + ε_i

where x holds the design's other regressors (intercept, block effects, pretest, covariates;
columns that are the subgrouping variable itself are dropped, its level indicators take their
place). τ̂_l is the effect within level l. The covariance is the design's: CR2 by school with
Satterthwaite df (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018) for cluster designs and
matched comparisons, HC2 otherwise (:func:`pleval.inference.ols`).

* **Equality across levels** (the interaction test), H0: τ_1 = … = τ_L. With two levels, the t
  test of τ̂_2 − τ̂_1 with its Satterthwaite df. With L > 2, the cluster-robust Wald statistic
  ``W = (Rτ̂)'(R V R')⁻¹(Rτ̂)`` for the L − 1 differences from level 1, referred by default
  (``test="HTZ"``, CR2 fits, and HC2 fits with each row its own cluster) to the approximate
  Hotelling's T² of Pustejovsky & Tipton (2018):
  ``F = (η − q + 1)/(η q)·W`` on ``(q, η − q + 1)``, q = L − 1 (clubSandwich's ``Wald_test``
  default; :mod:`pleval.inference.wald`). ``test="F"`` gives the earlier reference,
  ``W/(L − 1)`` on F(L − 1, G − 1) (Cameron & Miller 2015, §VII; G − k − A for CR0/CR1 under cluster_df="G-p"; n − k − A without clusters, A
  the absorbed effects), which over-rejects with few or unbalanced clusters, or few treated rows
  in a level; CR0/CR1/HC0/HC1/classical fits always use it (before 2026-12-05 HC2 fits too).
* **Change in the gap** between the last and the first level, ``τ̂_L − τ̂_1``, with its
  Satterthwaite-df t interval: e.g. with pretest bands ordered from lowest to highest, a negative
  value means the program raised the lowest band more than the highest — it narrows the gap.
* Levels without both treated and comparison rows cannot be estimated; they are left out and
  the notes say so.

Each level's effect is put on the three scales (raw, effect size, percentile points) by the
caller's ``scale`` — the same SD and ω as the overall effect, so subgroup effects are on one
yardstick with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ._results import Effect, Estimate
from .errors import DataError, DesignError
from .inference import ols
from .inference.robust import CollinearError

MAX_LEVELS = 12


def level_codes(values: pd.Series, name: str) -> tuple[np.ndarray, list]:
    """Integer codes (0..L−1, sorted levels) of a subgrouping column; errors name the column."""
    if values.isna().any():
        raise DataError(f"subgroup column {name!r}: {int(values.isna().sum()):,} analysed row(s) are missing")
    codes, labels = pd.factorize(values, sort=True)
    if len(labels) > MAX_LEVELS:
        raise DataError(f"subgroup column {name!r} has {len(labels)} levels; at most {MAX_LEVELS} are allowed")
    if len(labels) < 2:
        raise DataError(f"subgroup column {name!r} has a single value among the analysed rows")
    return codes, list(labels)


def single_valued_in_subject(frame: pd.DataFrame, whole: pd.DataFrame, names, subject) -> tuple[list, list[str]]:
    """The subgroup columns of ``names`` to analyse in ``frame`` (one subject's analysed rows) and
    a note for each left out: a column with one value there that varies in ``whole`` (a level
    of another subject only) has no subgroup effects in this subject; a column with one value
    everywhere stays for :func:`level_codes`' error."""
    from .data import as_written

    if subject is None:
        return list(names), []
    one = [x for x in names if x in frame.columns and frame[x].notna().all() and frame[x].nunique() == 1
           and whole[x].nunique() > 1]
    notes = [f"subgroups ({subject}): column {x!r} has one value ({as_written(frame[x].iloc[0])!r}) among "
             f"{subject}'s analysed rows, so it has no subgroup effects in {subject}" for x in one]
    return [x for x in names if x not in one], notes


def _level_clusters(clusters: np.ndarray, treated: np.ndarray, c: np.ndarray, L: int, units: np.ndarray, labels: list,
                    name: str, notes: list) -> np.ndarray:
    """``clusters`` with each level's rows passed through
    :func:`pleval.matching.effect.one_school_arms_as_students` (new ids above every cluster so
    far), and a note naming the levels it changed (:func:`subgroup_effects`; a loop over the
    levels, a handful)."""
    from .matching.effect import one_school_arms_as_students

    if clusters.dtype.kind not in "iu":  # not integer codes: left as they are
        return clusters
    out, which = clusters, []
    for j in range(L):
        rows = c == j
        cj, arms = one_school_arms_as_students(out[rows], treated[rows], units[rows], top=int(out.max()) + 1)
        if arms:
            out = out.astype(np.int64) if out is clusters else out  # a copy: the caller's codes may be shared
            out[rows] = cj
            which.append(f"{labels[j]} ({arms})")
    if which:
        notes.append(f"subgroup {name}: level(s) {', '.join(map(str, which))} have all their students of that arm in "
                     "one school; those students are the clusters there (one school as a cluster would leave their "
                     "noise out)")
    return out


def subgroup_effects(
    y: np.ndarray,
    X: np.ndarray,
    names: Sequence[str],
    z: np.ndarray,
    codes: np.ndarray,
    labels: Sequence,
    *,
    name: str,
    scale: Callable[[Estimate], Effect],
    weights: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    vcov: str = "CR2",
    level: float = 0.95,
    notes: list | None = None,
    test: str = "HTZ",
    cluster_df: str = "G-1",
    cr2: str = "transformed",
    absorb: np.ndarray | None = None,
    units: np.ndarray | None = None,
    df_working: str = "independent",
) -> tuple[list[dict], dict | None]:
    """Level rows and the test row for one subgrouping variable (module docstring).

    ``units``: integer codes of each row's student (a reused comparison student's copies share
    one; default: every row its own). A level whose treated (or comparison) rows lie in one
    cluster has those rows clustered by student instead (with a note): as one cluster, that
    school's residuals in the level are fitted by the level's effect or intercept, so the SE
    would leave their noise out (:func:`pleval.matching.effect.one_school_arms_as_students`).

    ``test`` is the reference of the equality test with more than two levels: ``"HTZ"``
    (default; CR2 and HC2 fits) or ``"F"``. ``cluster_df``, ``cr2`` and ``absorb`` (group codes whose
    indicators are absorbed; X then has no intercept) and ``df_working`` (the working model of the
    single contrasts' Satterthwaite df; matched comparisons pass ``"random_effects"``, as their
    overall effect does) are those of :func:`pleval.inference.ols`.

    ``X``/``names`` are the design's regressors *including* the treatment column named
    ``"treatment"`` (dropped here, replaced by the level-specific treatment columns); ``z`` the
    0/1 treatment; ``codes`` integer levels 0..L−1 with ``labels``. Returns ``([], None)`` when
    fewer than two levels can be estimated (with a note).
    """
    if test not in ("HTZ", "F"):
        raise DataError(f"subgroup test must be 'HTZ' or 'F'; got {test!r}")
    notes = notes if notes is not None else []
    L = len(labels)
    zi = z.astype(int)
    cross = np.zeros((L, 2), dtype=int)  # students per level and arm (a reused comparison student once)
    if units is None:
        np.add.at(cross, (codes, zi), 1)
    else:
        key = np.unique((np.asarray(units, np.int64) * L + codes) * 2 + zi)
        np.add.at(cross, ((key // 2) % L, key % 2), 1)
    usable = (cross > 0).all(axis=1)
    if (~usable).any():
        notes.append(f"subgroup {name}: level(s) {[labels[j] for j in np.flatnonzero(~usable)]} lack a treated or "
                     "comparison row; left out")
    if usable.sum() < 2:
        notes.append(f"subgroup {name}: fewer than 2 levels with both treated and comparison rows; no subgroup analysis")
        return [], None
    rows_in = usable[codes]
    lev = np.flatnonzero(usable)
    remap = -np.ones(L, dtype=int)
    remap[lev] = np.arange(lev.size)
    c = remap[codes[rows_in]]
    Lu = lev.size
    base = [j for j, nm in enumerate(names) if nm != "treatment" and nm != name and not nm.startswith(f"{name}[")]
    n = c.size
    D = np.zeros((n, Lu - 1))
    r = np.flatnonzero(c > 0)
    D[r, c[r] - 1] = 1.0
    Z = np.zeros((n, Lu))
    Z[np.arange(n), c] = z[rows_in]
    cl = None if clusters is None else _level_clusters(clusters[rows_in], z[rows_in] == 1, c, Lu,
                                                         np.arange(n) if units is None else units[rows_in],
                                                         [labels[j] for j in lev], name, notes)
    level_main = list(range(Lu - 1))  # the levels' main effects the design does not span already
    while True:  # at most L − 1 refits, each dropping one spanned main effect
        Xs = np.hstack([X[rows_in][:, base], D[:, level_main], Z])
        k0 = len(base) + len(level_main)
        xnames = [names[j] for j in base] + [f"{name}[{labels[lev[i + 1]]}]" for i in level_main] + [
            f"treatment×{name}[{labels[j]}]" for j in lev]
        try:
            fit = ols(y[rows_in], Xs, names=xnames, vcov=vcov, cluster_df=cluster_df, cr2=cr2,
                      weights=None if weights is None else weights[rows_in], clusters=cl,
                      absorb=None if absorb is None else absorb[rows_in], df_working=df_working)
            break
        except CollinearError as exc:
            if not len(base) <= exc.column < k0:  # not a level's main effect: the subgroup is not estimable
                notes.append(f"subgroup {name}: not estimable ({exc})")
                return [], None
            # a function of the design's own columns (a copy of grade, an exact-match stratum): the
            # design already holds that level's mean, and its treatment effect stays estimable
            del level_main[exc.column - len(base)]
        except DesignError as exc:
            notes.append(f"subgroup {name}: not estimable ({exc})")
            return [], None
    rows = []
    for i, j in enumerate(lev):
        b, se, df, p = fit.coef(xnames[k0 + i])
        est = Estimate.from_t(b, se, df, level=level, n_treated=int(cross[j, 1]), n_control=int(cross[j, 0]),
                              n_clusters=None, method="subgroup effect", label=f"{name}={labels[j]}")
        e = scale(est)
        rows.append({
            "subgroup": name, "level": labels[j], "n_treated": int(cross[j, 1]), "n_control": int(cross[j, 0]),
            "estimate": b, "se": se, "df": df, "ci_low": est.ci_low, "ci_high": est.ci_high, "pvalue": p,
            "effect_size": e.effect_size.estimate, "es_ci_low": e.effect_size.ci_low, "es_ci_high": e.effect_size.ci_high,
            "percentile_points": e.percentile_points.estimate, "pp_ci_low": e.percentile_points.ci_low,
            "pp_ci_high": e.percentile_points.ci_high,
        })
    R = np.zeros((Lu - 1, Xs.shape[1]))
    R[:, k0] = -1.0
    R[np.arange(Lu - 1), k0 + 1 + np.arange(Lu - 1)] = 1.0
    if Lu == 2:
        d, se, df, p = fit.contrast(R[0])
        test = {"n_levels": 2, "statistic": d / se, "df1": 1.0, "df2": df, "pvalue": p,
                "test": f"t = {d / se:.3f} on {df:.1f} df" + (" (Satterthwaite)" if fit.vcov_type in ("CR2", "HC2") else "")}
    else:
        wt = fit.wald_test(R, test="HTZ" if test == "HTZ" and fit.htz_eta is not None else "F")
        test = {"n_levels": Lu, "statistic": wt.F, "df1": wt.df1, "df2": wt.df2, "pvalue": wt.pvalue, "test": wt.label}
        if wt.test == "HTZ" and not wt.df2 > 0 and notes is not None:
            units = "schools" if fit.n_clusters else "students"  # (HC2: each student its own cluster)
            notes.append(f"subgroup {name}: the HTZ test of equal effects across {Lu} levels is undefined (η = "
                         f"{wt.eta:.2f} ≤ {Lu - 2}: too few {units} per level); the F reference (interaction test "
                         f"F) gives a p-value, which over-rejects with few {units}")
    g = np.zeros(Xs.shape[1])
    g[k0], g[k0 + Lu - 1] = -1.0, 1.0
    d, se, df, p = fit.contrast(g)
    gap = Estimate.from_t(d, se, df, level=level, n_treated=int(cross[lev[[0, -1]], 1].sum()),
                          n_control=int(cross[lev[[0, -1]], 0].sum()), n_clusters=None, method="difference of subgroup effects",
                          label=f"{name}: {labels[lev[-1]]} − {labels[lev[0]]}")
    ge = scale(gap)
    test.update({
        "subgroup": name, "gap": f"{labels[lev[-1]]} − {labels[lev[0]]}", "gap_estimate": d, "gap_se": se,
        "gap_df": df, "gap_ci_low": gap.ci_low, "gap_ci_high": gap.ci_high, "gap_pvalue": p,
        "gap_effect_size": ge.effect_size.estimate, "gap_es_ci_low": ge.effect_size.ci_low,
        "gap_es_ci_high": ge.effect_size.ci_high,
    })
    return rows, test


BAND = "pretest_band"
"""The subgroup name of baseline achievement bands (:func:`pretest_bands`)."""


def band_groups(columns) -> list[str]:
    """The columns within which ``pretest_band`` ranks the pretest (:func:`pretest_bands`' ``by``):
    grade × subject, those of the two that ``columns`` names. Without a grade column the rank is
    within subject across grades, so on a vertically scaled pretest the bands differ by grade."""
    return [c for c in (columns.grade, columns.subject) if c]


def pretest_bands(df: pd.DataFrame, pretest: str, by: Sequence[str] = (), cuts: Sequence[float] = ()) -> pd.Series:
    """Baseline achievement band of each row: the pretest's percentile rank within ``by``
    (e.g. grade × subject) cut at ``cuts`` percent (default: thirds, 33⅓ and 66⅔).

    Labels sort from lowest to highest: ``"1: P0–33"``, ``"2: P33–67"``, ``"3: P67–100"``.
    The rank is the mid-rank of ties divided by the group size, so tied pretests share a band.
    Rows without a pretest get no band (NaN).
    """
    cuts = [100.0 / 3, 200.0 / 3] if not len(cuts) else [float(c) for c in cuts]
    if not all(0 < c < 100 for c in cuts) or any(b <= a for a, b in zip(cuts, cuts[1:])) or len(cuts) > 8:
        raise DataError(f"bands: cut points must be 1 to 8 increasing percents strictly between 0 and 100; got {cuts}")
    x = pd.to_numeric(df[pretest], errors="coerce")
    keys = [df[b] for b in by if b in df.columns]
    rank = x.groupby(keys, sort=False).rank(pct=True) if keys else x.rank(pct=True)
    code = np.searchsorted(np.asarray(cuts) / 100.0, rank.to_numpy(dtype=float), side="left")
    edges = [0.0, *cuts, 100.0]
    labels = np.array([f"{i + 1}: P{edges[i]:.0f}–{edges[i + 1]:.0f}" for i in range(len(edges) - 1)], dtype=object)
    out = pd.Series(labels[np.minimum(code, len(cuts))], index=df.index, name=BAND, dtype=object)
    return out.where(x.notna())


def set_level_codes(matched: pd.DataFrame, treatment: str, codes: np.ndarray) -> np.ndarray:
    """In a matched sample, every row of a matched set takes the level of the set's treated
    row (the subgroup of the treated students whose effect it estimates); rows outside sets
    (weighting) keep their own level."""
    from .matching.results import set_anchored

    return set_anchored(matched["_set"].to_numpy(), matched[treatment].to_numpy() == 1, codes)


def own_level_rows(matched: pd.DataFrame, treatment: str) -> np.ndarray:
    """Rows of a matched sample whose own subgroup value counts: treated rows and rows outside
    matched sets (weighting). A comparison row in a set takes its treated student's level
    (:func:`set_level_codes`), so it needs no value of its own."""
    return (matched["_set"].to_numpy() < 0) | (matched[treatment].to_numpy() == 1)


def matched_level_codes(matched: pd.DataFrame, treatment: str, name: str,
                        subject=None) -> tuple[np.ndarray, list, list[str]]:
    """``(codes, labels, notes)`` of subgroup column ``name`` in a matched sample: every matched
    set in the level of its treated student (:func:`set_level_codes`), the levels those of the
    rows whose own value counts (:func:`own_level_rows`).

    An attribute only PL students have (a program variant, a usage band), missing or coded
    otherwise for comparison students, is therefore a subgroup: each comparison student is
    compared in the level of the PL student it was matched to (MatchIt's subgroup analysis after
    matching within sets). A missing value where the row's own value counts is an error naming
    how many; the notes count comparison rows without a value and name levels only comparison
    rows in sets hold (they have no rows once the sets take their treated student's level). When
    those rows alone hold a second level, the codes are ``None`` (no subgroup effects, a note); a
    single value everywhere is :func:`level_codes`' error. ``subject`` names the subject in the notes."""
    from .data import as_written

    values = matched[name]
    own = own_level_rows(matched, treatment)
    t = matched[treatment].to_numpy() == 1
    missing = values.isna().to_numpy()
    if (missing & own).any():
        n_t, n_out = int((missing & t).sum()), int((missing & own & ~t).sum())
        where = " and ".join(x for x in (f"{n_t:,} analysed PL row(s)" if n_t else "",
                                         f"{n_out:,} comparison row(s) outside matched sets" if n_out else "") if x)
        raise DataError(f"subgroup column {name!r} is missing for {where}")
    head = f"subgroup {name}" + (f" ({subject})" if subject is not None else "")
    mine = set(pd.unique(values[own]))
    only = [v for v in pd.unique(values[~own & ~missing]) if v not in mine]
    notes = [f"{head}: level(s) {', '.join(repr(as_written(v)) for v in only)} are held by matched comparison "
             "students only; each matched set is in its PL student's level, so they have no rows"] if only else []
    if len(mine) == 1 and only:
        notes[0] += f"; the analysed PL students all have {as_written(next(iter(mine)))!r}: no subgroup effects"
        return None, [], notes
    codes_own, labels = level_codes(values[own], name)
    codes = np.full(len(values), -1, dtype=codes_own.dtype)
    codes[own] = codes_own
    n_missing = int(missing.sum())
    if n_missing:
        notes.insert(0, f"{head}: {n_missing:,} matched comparison row(s) have no value; each takes the level of "
                        "the PL student it is matched to")
    return set_level_codes(matched, treatment, codes), labels, notes


_YES_NO = {("1", "0"), ("1.0", "0.0"), ("true", "false"), ("yes", "no"), ("y", "n")}
"""A two-level ``frl`` column's gap (highest − lowest level, in sorted order) read as eligible −
not eligible: 1/0, True/False, Yes/No, Y/N in any case."""


def equity_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The change in the gap between advantaged and disadvantaged students, from the test rows:
    highest minus lowest pretest band, and students not eligible for free or reduced-price lunch
    minus eligible ones (subgroup ``frl`` coded 1/0, True/False, Yes/No or Y/N). Negative: the
    program narrows the gap."""
    rows = []
    for r in tests.itertuples():
        pair = tuple(x.strip().lower() for x in str(r.gap).split(" − "))
        if r.subgroup == BAND:
            sign, what = 1.0, f"highest − lowest pretest band ({r.gap})"
        elif r.subgroup == "frl" and pair in _YES_NO:
            sign, what = -1.0, "non-FRL − FRL students"
        elif r.subgroup == "frl" and pair[::-1] in _YES_NO:  # 'no − Yes': sorted with capitals first
            sign, what = 1.0, "non-FRL − FRL students"
        else:
            continue
        lo, hi = sorted((sign * r.gap_ci_low, sign * r.gap_ci_high))
        es_lo, es_hi = sorted((sign * r.gap_es_ci_low, sign * r.gap_es_ci_high))
        verdict = "narrows the gap" if hi < 0 else "widens the gap" if lo > 0 else "no clear change in the gap"
        row = {"gap": what, "change": sign * r.gap_estimate, "se": r.gap_se, "df": r.gap_df, "ci_low": lo,
               "ci_high": hi, "pvalue": r.gap_pvalue, "change_es": sign * r.gap_effect_size, "es_ci_low": es_lo,
               "es_ci_high": es_hi, "verdict": verdict}
        if hasattr(r, "subject"):
            row = {"subject": r.subject, **row}
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["subgroup_effects", "level_codes", "single_valued_in_subject", "band_groups", "pretest_bands", "set_level_codes",
           "matched_level_codes", "own_level_rows",
           "equity_table", "BAND", "MAX_LEVELS"]
