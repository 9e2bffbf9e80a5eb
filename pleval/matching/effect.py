"""The matched (or weighted) effect estimate.

On the matched sample in matched-set long format (a comparison student reused in several
sets appears once per set), fit by weighted least squares

    y_i = α + δ·T_i + β'pretest_i + γ'x_i + ε_i,     weight w_i = ``_weight``,

where ``x`` are the covariates (categorical ones as indicators) and, when they vary, grade
and subject indicators. δ̂ is the regression-adjusted ATT ("doubly robust" matching:
Ho, Imai, King & Stuart 2007; Stuart 2010, §5). Its standard error is cluster-robust by
school (CR2 with Satterthwaite df by default; :func:`pleval.inference.ols`): every copy of a
reused comparison student lies in that student's school cluster, so the SE accounts for the
reuse (the copies' scores are summed before squaring) as well as for students sharing a
school. Without a school column the clusters are the students themselves.

The Satterthwaite df take a working model with a cluster (school) random effect, its variance
ratio to the residual variance estimated by moments of the residuals that allow for the fit's
shrinkage (Imbens & Kolesár 2016; ``df_working="random_effects"`` of
:func:`pleval.inference.ols`); the SE itself is unchanged. Bell & McCaffrey's independence
working model (``df_working="independent"``, clubSandwich's) counts each school's students as
independent and, with a dozen PL schools whose own growth deviations the SE must carry, gives
df near 30 where the estimate's variance rests on about a dozen schools: by simulation (60
schools of which 12 PL, school growth deviations of SD 0.10; 1,500 data sets) the 95% CIs
covered 93.8% (propensity) and 93.5% (VCG) with it and 94.7% and 94.5% with the random effect
(mean df 16); without school deviations 95.7% (95.0%). Source: Imbens, G. W. and Kolesár, M.
(2016), "Robust standard errors in small samples: some practical advice", *Review of Economics
and Statistics* 98(4), 701–712.

The copies of a reused student are fitted as one row with their weights summed
(:func:`merge_copies`; :meth:`pleval.matching.MatchResult.group_fits` builds the design on the
distinct rows directly and never forms the copies): copies share y, x and cluster, so with
``X̃ = W^{1/2}X`` the copies' rows are ``V X̃₁`` for an isometry ``V`` (``V'V = I``) of the
merged row ``X̃₁``. Then X'WX, X'Wy, every cluster's ``X̃_g'A_gẽ_g`` with the CR2
``A_g = (I − V H_gg V')^{−1/2} = (I − VV') + V(I − H_gg)^{−1/2}V'`` and the Satterthwaite
quantities are those of the merged rows: the coefficient, its CR0/CR2 SE and df are
identical; CR1's factor (n − 1)/(n − k) counts the copies (``n_obs``), so it is identical too.
The df with the school random-effect working model (``df_working="random_effects"``) is the
exception: its working covariance counts rows, so the copies counted apart give other df (31.7
against the merged rows' 32.8 for the sample's math); every fit pleval reports takes the merged
rows (:meth:`~pleval.matching.MatchResult.group_fits`, further outcomes, the placebo outcome).
HC and classical SEs give each copy its own leverage or residual term, so they are fitted on
the copies; so is clubSandwich's weighted CR2 (``cr2="clubsandwich"``), whose working model
Φ = I counts rows too. The SD's weighted variances and Kish sizes use each row's summed weights and
summed squared weights (``weights2``): identical. The merged fit centres the regressors at
their weighted means (the treatment coefficient, its SE and df do not move; only the
intercept, which is not reported, does), which keeps the rounding error of the answer far
below 1e-12. On heavily tied data (every tie kept) this turns tens of millions of matched
rows back into the distinct students.

The effect size divides δ̂ (and its SE and CI) by the outcome SD chosen by the rule in docs/architecture.md (*Scales and the SD*) —
by default the pooled within-group SD of the unadjusted outcome in the matched, weighted
sample, pooled within grade × subject when the sample pools them
(:func:`pleval.effect_sizes.outcome_sd`) — times Hedges' ω = 1 − 3/(4N − 9), N the
number of distinct students; percentile points follow from the effect size
(:class:`pleval._results.Effect`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .._results import Effect, Estimate
from ..effect_sizes import TOO_FEW_FOR_SD, hedges_omega, outcome_sd
from ..errors import DataError, DesignError
from ..inference import ols
from ..inference.robust import _gram, cluster_codes, convention_label, grouped_cross_products
from ._design import combine_codes, encode


def _varies(s: pd.Series, known=None) -> bool:
    """More than one distinct non-missing value (``Series.nunique() > 1``); from the codes when
    they are known, from the extremes for numpy numbers (compared as the float64 the design
    holds: integers beyond 2**53 that round to one float do not vary there)."""
    if known is not None:
        k = known[0]
        if not len(k):
            return False
        lo = k.min()
        if lo >= 0:  # none missing: no copy of the others
            return bool(lo < k.max())
        k = k[k >= 0]
        return bool(len(k)) and bool((k != k[0]).any())
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        x = s.to_numpy()
        if not len(x):
            return False
        lo, hi = x.min(), x.max()  # (NaN when some value is: then from the others)
        if s.dtype.kind == "f" and np.isnan(lo):
            x = x[~np.isnan(x)]
            return bool(len(x)) and float(x.min()) < float(x.max())
        return float(lo) < float(hi)
    return s.nunique(dropna=True) > 1


def _varying(df: pd.DataFrame, cols, codes=None) -> list[str]:
    codes = codes or {}
    return [c for c in cols if c is not None and (c in codes or c in df.columns)
            and _varies(df[c] if c not in codes else None, codes.get(c))]


def regression_design(
    sample: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    pretests=(),
    covariates=(),
    strata=(),
    school: str | None = None,
    weight: str = "_weight",
    label: str = "",
    codes=None,
    per_school: bool = False,
) -> dict:
    """The regression of :func:`regression_effect` on ``sample``: ``y``, ``X`` (intercept,
    treatment, adjusters), ``names``, ``weights``, ``clusters`` (schools, else students),
    ``adjust`` (the adjusters used), ``categorical`` (strata among them) and ``source`` (the
    covariate each column of X comes from). ``codes``: ``{column: (codes, levels)}`` of
    categorical columns already coded, aligned with ``sample``'s rows (levels sorted, possibly
    more than occur; :func:`pleval.matching._design.codes_and_levels`); then ``cells`` holds the
    strata cells too. ``per_school``: with a school, form the cross-products as per-school
    blocks (for a merged cluster-robust fit, which reads them: ``gram``)."""
    y = sample[outcome].to_numpy(dtype=float)
    ok = np.isfinite(y)
    if not ok.all():
        raise DataError(
            f"column {outcome!r} (outcome): {int((~ok).sum()):,} matched row(s) have no outcome; "
            "match on rows with an outcome (the default) or drop them first"
        )
    t = sample[treatment].to_numpy().astype(float)
    n_t = int(t.sum())
    if n_t == 0 or n_t == len(t):
        raise DesignError(f"{label or 'the matched sample'}: needs both treated and comparison rows")
    adjust = _varying(sample, list(pretests) + list(covariates) + list(strata), codes)
    cat = tuple(c for c in strata if c in adjust)
    enc = encode(sample, [treatment] + adjust, categorical=cat, intercept=True, codes=codes)
    # Every adjuster column varies: a numeric adjuster varies (_varying, as float64) and so does
    # the indicator of each level present other than the reference. X stays row-major, as the
    # per-cluster cross-products read it.
    w = sample[weight].to_numpy(dtype=float)
    # clusters: schools; without them, students (the original row label, shared by every copy)
    known = (codes or {}).get(school) if school else None
    if school:  # integer ids of the schools (ols numbers them by first appearance either way)
        clusters = known[0] if known is not None and (known[0] >= 0).all() else _cluster_ids(sample[school])
        if len(clusters) and not (clusters != clusters[0]).any():
            one = known[1][clusters[0]] if clusters is known[0] else sample[school].iloc[0]
            raise DesignError(f"column {school!r} (school): every row of {label or 'the matched sample'} is in one school "
                              f"({one!r}); the effect's standard errors are clustered by school and need at least 2 "
                              "schools")
        clusters, one_school = one_school_arms_as_students(clusters, t == 1, lambda: pd.factorize(sample.index)[0])
    else:
        clusters, one_school = sample.index.to_numpy(), ""
    # the fit's own cross-products of the centred, √w-weighted design (regression_effect centres
    # the merged fit the same way): the collinearity sweep reads them, and the fit reuses them
    # when no column is left out. By school, they are the sums of the per-school blocks the
    # cluster-robust SE needs (with the outcome less its weighted mean: ols(blocks=)), formed in
    # the one pass over the rows that the SE takes anyway.
    center = _weighted_center(enc.X, w)
    y0, blocks = 0.0, None
    if school and per_school:
        g, G = cluster_codes(clusters)
        y0 = float(w @ y / w.sum())
        blocks = grouped_cross_products(enc.X, g, G, y - y0, w, center=center)
        XtX, Xty = blocks[0].sum(axis=0), blocks[1].sum(axis=0)
    else:
        XtX, Xty = _gram(enc.X, y, np.sqrt(w), center)
    keep_cols = _independent(XtX)
    X = enc.X if len(keep_cols) == enc.X.shape[1] else np.take(enc.X, keep_cols, axis=1)
    adjust = [a for a in adjust if a in {enc.source[j] for j in keep_cols}]  # strata (cat) still define the SD's cells
    return {"y": y, "t": t, "X": X, "names": [enc.names[j] for j in keep_cols],
            "weights": w, "clusters": clusters,
            "adjust": adjust, "categorical": cat, "source": [enc.source[j] for j in keep_cols],
            "cells": combine_codes(sample, cat, codes) if cat and codes is not None else None,
            "gram": (center, XtX, Xty, y0, blocks) if X is enc.X else None, "one_school": one_school}


def one_school_arms_as_students(clusters: np.ndarray, treated: np.ndarray, units,
                                top: int | None = None) -> tuple[np.ndarray, str]:
    """School clusters with the rows of an arm whose several students all lie in one school
    clustered by student (``units``: integer codes of the students, shared by a reused student's
    copies, or a callable returning them, called only when an arm lies in one school: coding
    the students costs more than the check; new ids from ``top``, by default above every
    cluster) instead, and which arms did
    ("" none, "PL", "comparison", "PL and comparison"). As one cluster, that school's residuals
    are fitted by the treatment coefficient or the intercept (leverage 1 in its direction), so a
    cluster-robust SE leaves that arm's noise out: 85% coverage of 95% intervals with one PL
    school among 25 and no school deviations (docs/matching.md). With its students as clusters
    the SE covers it; the estimate then includes that school's own deviation, which no analysis
    of one school's data can separate (the placebo calibration allows for it for a PL school).
    School ids that are not integer codes (some missing: an error follows) are left as they are."""
    if clusters.dtype.kind not in "iu":
        return clusters, ""
    top = int(clusters.max()) + 1 if top is None else top
    out, arms = None, []
    for rows, name in ((treated, "PL"), (~treated, "comparison")):
        c = clusters[rows]
        if not c.size or (c != c[0]).any():
            continue
        units = units() if callable(units) else units
        u = units[rows]
        if (u != u[0]).any():
            out = clusters.astype(np.int64) if out is None else out  # a copy: the caller's codes may be shared
            out[rows] = top + u
            arms.append(name)
    return (clusters, "") if out is None else (out, " and ".join(arms))


def _weighted_center(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The centre of the effect regression's centred fit: 0 for the intercept (first column),
    the weighted mean of every other column."""
    return np.concatenate([[0.0], (w @ X[:, 1:]) / w.sum()])


def _cluster_ids(s: pd.Series) -> np.ndarray:
    """Integer ids of the school column's values (the same grouping as the values, without
    converting strings to Python objects); the values themselves when some are missing, so
    that :func:`pleval.inference.robust.cluster_codes` names the problem."""
    codes = pd.factorize(s)[0]
    return s.to_numpy() if (codes < 0).any() else codes


ONE_SCHOOL_MARK = "students are the clusters"
"""In the SE's label when :func:`one_school_arms_as_students` applies (:func:`one_school_label`)."""


def one_school_label(arms: str) -> str:
    """What the SE's label adds when :func:`one_school_arms_as_students` applies to ``arms``."""
    if not arms:
        return ""
    if " and " in arms:
        return f" (one PL and one comparison school: their {ONE_SCHOOL_MARK})"
    return f" (one {arms} school: its {ONE_SCHOOL_MARK} on its side)"


def one_school_arms(method: str) -> str:
    """The arms of :func:`one_school_label` in an estimate's ``method`` ("" when none)."""
    if ONE_SCHOOL_MARK not in method:
        return ""
    side = method[method.rindex("(one ") + 5:method.rindex(" school:")]
    return side.replace(" and one ", " and ")


COLLINEAR_TOL = 1e-10
"""An adjuster column whose weighted residual variance, given the columns before it, is below
this share of its own variance is collinear with them and left out (the treatment never is)."""


def _independent(XtX: np.ndarray) -> list[int]:
    """The columns of X (intercept first, treatment second) that are not linear combinations of
    the columns before them in the weighted sample, from ``XtX``, the weighted cross-products of
    the columns centred at their weighted means (the intercept's row and column aside):
    sequential sweep, k×k algebra only. The treatment is never dropped (both arms are present)."""
    G = XtX[1:, 1:]
    kept: list[int] = []
    for j in range(G.shape[0]):  # columns, not rows
        r = G[j, j] - (G[j, kept] @ np.linalg.solve(G[np.ix_(kept, kept)], G[kept, j]) if kept else 0.0)
        if j == 0 or r > COLLINEAR_TOL * G[j, j]:
            kept.append(j)
    return [0] + [j + 1 for j in kept]


@dataclass(frozen=True)
class EffectDesign:
    """:func:`regression_design` as an object: outcome, design matrix, column names, the
    covariate each column comes from, weights, cluster ids, the adjusters and the strata among
    them (for analyses of the same regression, e.g. :mod:`pleval.sensitivity`).

    ``rows``: the analysed row behind each design row (None: unknown). When ``copies`` is
    given, each design row is one distinct row standing for ``copies`` copies (a comparison
    student reused by several matched sets) with their weights summed in ``weights`` and their
    squared weights summed in ``weights2`` (:func:`merge_copies`). ``cells``: each row's
    strata cell (``combine_codes`` of ``categorical``), when already computed. ``gram``:
    ``(center, X̃'X̃, X̃'ỹ, y0, blocks)`` — the weighted means the merged fit centres X at, the
    cross-products of the centred, √w-weighted rows (:func:`pleval.inference.ols`'s ``gram``) with
    ỹ the √w-weighted outcome less ``y0`` (its weighted mean when clustered by school, else 0),
    and by school their per-cluster terms ``(S, T)`` (``ols``'s ``blocks``; None without a
    school), when formed with the design; None once X, y or the weights change."""

    y: np.ndarray
    t: np.ndarray
    X: np.ndarray
    names: tuple[str, ...]
    source: tuple[str, ...]
    weights: np.ndarray
    clusters: np.ndarray
    adjust: tuple[str, ...]
    categorical: tuple[str, ...]
    rows: np.ndarray | None = None
    weights2: np.ndarray | None = None
    copies: np.ndarray | None = None
    cells: np.ndarray | None = None
    gram: tuple | None = None
    one_school: str = ""  # the arms in one school, clustered by student (one_school_arms_as_students)

    @property
    def n_obs(self) -> int:
        """The rows the design stands for (every copy counted)."""
        return len(self.y) if self.copies is None else int(self.copies.sum())

    @property
    def merged(self) -> bool:
        """True when some design row stands for several copies."""
        return self.copies is not None and bool((self.copies > 1).any())


def effect_design(sample: pd.DataFrame, *, rows: np.ndarray | None = None, weight2: str | None = None,
                  copies: str | None = None, **kw) -> EffectDesign:
    """:func:`regression_design` (same arguments) as an :class:`EffectDesign`; ``rows``: the
    analysed row behind each row of ``sample`` (a reused comparison student's copies share
    one), which lets :func:`regression_effect` fit the copies as one row; ``weight2`` and
    ``copies``: columns of a sample of distinct rows holding each row's summed squared weights
    and number of copies."""
    d = regression_design(sample, **kw, per_school=copies is not None)  # (distinct rows: a merged fit reads them)
    return EffectDesign(d["y"], d["t"], d["X"], tuple(d["names"]), tuple(d["source"]), d["weights"], d["clusters"],
                        tuple(d["adjust"]), tuple(d["categorical"]), rows,
                        None if weight2 is None else sample[weight2].to_numpy(dtype=float),
                        None if copies is None else sample[copies].to_numpy(dtype=np.int64), d["cells"], d["gram"],
                        d["one_school"])


def distinct_rows(rows: np.ndarray, *arrays) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Merge the copies of each row: ``(codes, first, [a[first] for a in arrays])`` where
    ``codes`` maps every copy to its distinct row and ``first`` is each distinct row's first
    copy (weights are summed by the caller: ``np.bincount(codes, w)``)."""
    codes, uniq = pd.factorize(rows)
    first = np.empty(len(uniq), dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes, first, [a[first] for a in arrays]


def merge_copies(d: EffectDesign) -> tuple[EffectDesign, np.ndarray, np.ndarray]:
    """The design with the copies of each row (same ``rows`` entry) merged into one row:
    weights, squared weights and copy counts summed (module docstring). Returns the merged
    design, ``codes`` (copy → merged row) and ``first`` (each merged row's first copy)."""
    codes, first, (y1, t1, X1, c1, r1) = distinct_rows(d.rows, d.y, d.t, d.X, d.clusters, d.rows)
    m = len(first)
    w2 = d.weights**2 if d.weights2 is None else d.weights2
    cp = np.ones(len(codes), np.int64) if d.copies is None else d.copies
    out = EffectDesign(y1, t1, X1, d.names, d.source, np.bincount(codes, d.weights, m), c1, d.adjust, d.categorical,
                       r1, np.bincount(codes, w2, m), np.bincount(codes, cp, m).astype(np.int64),
                       one_school=d.one_school)
    return out, codes, first


def mergeable(vcov: str, cr2: str = "transformed") -> bool:
    """Whether the fit is unchanged when copies of a row are merged (module docstring): CR0,
    CR1 (its n counting copies) and the transformed CR2."""
    return vcov in ("CR0", "CR1") or (vcov == "CR2" and cr2 == "transformed")


def _random_effects_df(fit) -> bool:
    """Whether the fit's df took the cluster random-effect working model with ρ > 0."""
    from ..inference.robust import CR2BlocksRandomEffects

    return isinstance(fit.cr2_blocks, CR2BlocksRandomEffects) and fit.cr2_blocks.rho > 0


def regression_effect(
    sample: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    pretests=(),
    covariates=(),
    strata=(),
    school: str | None = None,
    weight: str = "_weight",
    sd="pooled",
    vcov: str = "CR2",
    cluster_df: str = "G-1",
    cr2: str = "transformed",
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    method: str = "matched comparison",
    label: str = "",
    design: EffectDesign | None = None,
    df_working: str = "random_effects",
) -> Effect:
    """Weighted regression-adjusted effect on ``sample`` (see the module docstring);
    ``design``: its :func:`effect_design`, if already built. ``cluster_df`` and ``cr2``: the
    conventions of :func:`pleval.inference.ols` (CR1/CR0 df G − 1 or G − p; the weighted CR2
    form, which matters here because matched weights vary within school); ``df_working``: the
    working model of CR2's Satterthwaite df (module docstring)."""
    d = design or effect_design(sample, outcome=outcome, treatment=treatment, pretests=pretests,
                                covariates=covariates, strata=strata, school=school, weight=weight, label=label)
    n_t = int(d.t.sum())
    strata_vals = (d.cells if d.cells is not None else combine_codes(sample, d.categorical)) if d.categorical else None  # grade x subject cells
    cluster = mergeable(vcov, cr2)
    if cluster and d.rows is not None and d.copies is None:  # copies of reused students: merge them (module docstring)
        d, codes, first = merge_copies(d)
        strata_vals = None if strata_vals is None else strata_vals[first]
    conv = dict(cluster_df=cluster_df, cr2=cr2, df_working=df_working)
    tr = d.t.astype(bool)
    n_c = int((~tr).sum()) if d.copies is not None else int(pd.Index(sample.index[~tr]).nunique())
    if cluster:
        # Centred columns (only the intercept moves): the same slopes, SEs and df, better conditioned.
        center, gram, y0, blocks = None, None, 0.0, None
        if d.copies is not None:
            center = _weighted_center(d.X, d.weights) if d.gram is None else d.gram[0]
            if d.gram is not None:  # (the outcome less y0: only the intercept moves)
                _, XtX, Xty, y0, blocks = d.gram
                gram = (XtX, Xty)
        fit = ols(d.y - y0 if y0 else d.y, d.X, weights=d.weights, clusters=d.clusters, vcov=vcov, names=list(d.names),
                  n_obs=d.n_obs, center=center, gram=gram, blocks=blocks, **conv)
    elif d.merged:
        raise DesignError(f"vcov={vcov!r} (cr2={cr2!r}) counts every copy of a reused comparison student: fit it on "
                          "the copies (MatchResult.estimate does)")
    else:
        fit = ols(d.y, d.X, weights=d.weights, clusters=d.clusters, vcov=vcov, names=list(d.names), **conv)
    est, se, df, _ = fit.coef(treatment)
    resid_df = d.n_obs - len(d.names)
    exact = not se > 1e-10 * max(1.0, float(np.std(d.y))) or np.isnan(df)  # an exact fit: SE 0, no df
    if not (np.isfinite(est) and np.isfinite(se)) or resid_df < 2 or exact:  # (one residual df: a near-exact fit, SE ≈ 0)
        n_cl = fit.n_clusters or len(d.y)
        raise DesignError(f"{label or 'the matched sample'} ({n_t:,} treated, {n_c:,} comparison rows matched, "
                          f"{n_cl:,} {'clusters' if d.one_school else 'schools' if school else 'students'}): the effect's "
                          f"{vcov} standard error could not be estimated ({len(d.names)} coefficients, {resid_df} "
                          f"residual df{'; the outcome is fitted exactly' if exact and resid_df >= 2 else ''}); the matched sample is too small (match more rows, e.g. with a wider caliper, "
                          "or adjust for fewer covariates)")
    raw = Estimate.from_t(
        est, se, df, level=level, n_treated=n_t, n_control=n_c, n_clusters=fit.n_clusters,
        method=f"{method}; WLS adjusted for {', '.join(d.adjust) or 'nothing'}; "
        f"{vcov}{convention_label(vcov, cluster_df, cr2, weighted=bool(np.ptp(d.weights) > 0))} SE"
        + (f" by {'school' if school else 'student'}{one_school_label(d.one_school)}" if vcov.startswith("CR") else "")
        + (", df with a cluster random effect" if _random_effects_df(fit) else ""), label=label,
    )
    # pooled within grade x subject when the sample pools them (WWC per-grade effect sizes)
    try:
        sd_val, sd_kind = outcome_sd(d.y, tr, kind=sd, weights=d.weights, strata=strata_vals, weights2=d.weights2)
    except DataError as exc:
        if TOO_FEW_FOR_SD not in str(exc):
            raise
        within = f" within {' × '.join(d.categorical)}" if strata_vals is not None else ""
        raise DesignError(f"{label or 'the matched sample'} ({n_t:,} treated, {n_c:,} comparison rows matched): {exc}"
                          f"{within}; the matched sample is too small for an effect size (match more rows, e.g. with "
                          "a wider caliper, or give a norm SD: --sd NUMBER, sd=NUMBER)") from exc
    omega = float(hedges_omega(n_t + n_c)) if isinstance(sd, str) and sd == "pooled" else 1.0  # (ω: the pooled SD's)
    eff = Effect.from_raw(raw, sd_val, sd_kind + " (matched sample)", omega=omega, baseline_percentile=baseline_percentile)
    if school and vcov.startswith("CR") and not d.one_school:
        J, J_eff, share = comparison_schools(d.weights, d.clusters, tr)
        if 0 < J_eff < FEW_COMPARISON_SCHOOLS:
            eff = replace(eff, note=few_comparison_schools_note(J, J_eff, share))
    return eff


FEW_COMPARISON_SCHOOLS = 10
"""Below this effective number of comparison schools the matched effect carries a note: in
docs/matching.md's simulation (10 PL schools) 95% intervals covered 92.9% with 5 comparison
schools and 95.2% with 10."""


def comparison_schools(weights: np.ndarray, schools: np.ndarray, treated: np.ndarray) -> tuple[int, float, float]:
    """How many schools the comparison side's weight rests on: ``(J, J_eff, share)`` with
    ``W_s = Σ_{i ∈ s, T_i = 0} w_i`` each comparison school's matched weight (a reused student's
    copies summed), ``J`` the schools with ``W_s > 0``, Kish's effective number
    ``J_eff = (Σ_s W_s)² / Σ_s W_s²`` (Kish 1965, here of schools) and the largest school's share
    ``max_s W_s / Σ_s W_s``. ``schools``: integer ids."""
    c, w = schools[~treated], weights[~treated]
    # the design's school codes as they are; other ids coded first
    if not (c.size and c.dtype.kind in "iu" and c.min() >= 0 and int(c.max()) < 4 * c.size + 1024):
        c = cluster_codes(c)[0]
    W = np.bincount(c, weights=w)
    W = W[W > 0]
    if not W.size:  # (no comparison weight: nothing rests anywhere)
        return 0, 0.0, 0.0
    total = W.sum()
    return int(W.size), float(total**2 / (W**2).sum()), float(W.max() / total)


def few_comparison_schools_note(J: int, J_eff: float, share: float) -> str:
    """The matched effect's note (a sentence) when :func:`comparison_schools` finds few."""
    return (f"The comparison students' weight rests on few schools ({J} comparison school{'s' * (J != 1)}, "
            f"{J_eff:.1f} effectively; the largest holds {share:.0%} of it): with about 5 such schools a nominal "
            "95% interval covered about 93% in simulation (docs/matching.md, few comparison schools).")
