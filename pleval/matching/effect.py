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

The copies of a reused student are fitted as one row with their weights summed
(:func:`distinct_rows`): copies share y, x and cluster, so with ``X̃ = W^{1/2}X`` the copies'
rows are ``V X̃₁`` for an isometry ``V`` (``V'V = I``) of the merged row ``X̃₁``. Then X'WX,
X'Wy, every cluster's ``X̃_g'A_gẽ_g`` with the CR2 ``A_g = (I − V H_gg V')^{−1/2}
= (I − VV') + V(I − H_gg)^{−1/2}V'`` and the Satterthwaite quantities are those of the merged
rows: the coefficient, its CR0/CR2 SE and df are identical (CR1 and HC count rows, so they
are fitted on the copies; so is clubSandwich's weighted CR2, ``cr2="clubsandwich"``, whose
working model Φ = I counts rows too). The merged fit centres the regressors at their weighted means
(the treatment coefficient, its SE and df do not move; only the intercept, which is not
reported, does), which keeps the rounding error of the answer far below 1e-12. On heavily tied data (every tie kept) this turns tens of millions of
matched rows back into the distinct students.

The effect size divides δ̂ (and its SE and CI) by the outcome SD chosen by the rule in docs/architecture.md (*Scales and the SD*) —
by default the pooled within-group SD of the unadjusted outcome in the matched, weighted
sample, pooled within grade × subject when the sample pools them
(:func:`pleval.effect_sizes.outcome_sd`) — times Hedges' ω = 1 − 3/(4N − 9), N the
number of distinct students; percentile points follow from the effect size
(:class:`pleval._results.Effect`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import Effect, Estimate
from ..effect_sizes import hedges_omega, outcome_sd
from ..errors import DataError, DesignError
from ..inference import ols
from ..inference.robust import convention_label
from ._design import encode


def _varying(df: pd.DataFrame, cols) -> list[str]:
    return [c for c in cols if c is not None and c in df.columns and df[c].nunique(dropna=True) > 1]


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
) -> dict:
    """The regression of :func:`regression_effect` on ``sample``: ``y``, ``X`` (intercept,
    treatment, adjusters), ``names``, ``weights``, ``clusters`` (schools, else students),
    ``adjust`` (the adjusters used), ``categorical`` (strata among them) and ``source`` (the
    covariate each column of X comes from)."""
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
    adjust = _varying(sample, list(pretests) + list(covariates) + list(strata))
    cat = tuple(c for c in strata if c in adjust)
    enc = encode(sample, [treatment] + adjust, categorical=cat, intercept=True)
    keep_cols = [0, 1] + [j for j in range(2, enc.X.shape[1]) if np.ptp(enc.X[:, j]) > 0]
    # clusters: schools; without them, students (the original row label, shared by every copy)
    return {"y": y, "t": t, "X": enc.X[:, keep_cols], "names": [enc.names[j] for j in keep_cols],
            "weights": sample[weight].to_numpy(dtype=float),
            "clusters": sample[school].to_numpy() if school else sample.index.to_numpy(),
            "adjust": adjust, "categorical": cat, "source": [enc.source[j] for j in keep_cols]}


@dataclass(frozen=True)
class EffectDesign:
    """:func:`regression_design` as an object: outcome, design matrix, column names, the
    covariate each column comes from, weights, cluster ids, the adjusters and the strata among
    them (for analyses of the same regression, e.g. :mod:`pleval.sensitivity`)."""

    y: np.ndarray
    t: np.ndarray
    X: np.ndarray
    names: tuple[str, ...]
    source: tuple[str, ...]
    weights: np.ndarray
    clusters: np.ndarray
    adjust: tuple[str, ...]
    categorical: tuple[str, ...]
    rows: np.ndarray | None = None  # the analysed row each design row copies (None: unknown)


def effect_design(sample: pd.DataFrame, *, rows: np.ndarray | None = None, **kw) -> EffectDesign:
    """:func:`regression_design` (same arguments) as an :class:`EffectDesign`; ``rows``: the
    analysed row behind each row of ``sample`` (a reused comparison student's copies share
    one), which lets :func:`regression_effect` fit the copies as one row."""
    d = regression_design(sample, **kw)
    return EffectDesign(d["y"], d["t"], d["X"], tuple(d["names"]), tuple(d["source"]), d["weights"], d["clusters"],
                        tuple(d["adjust"]), tuple(d["categorical"]), rows)


def distinct_rows(rows: np.ndarray, *arrays) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Merge the copies of each row: ``(codes, first, [a[first] for a in arrays])`` where
    ``codes`` maps every copy to its distinct row and ``first`` is each distinct row's first
    copy (weights are summed by the caller: ``np.bincount(codes, w)``)."""
    codes, uniq = pd.factorize(rows)
    first = np.empty(len(uniq), dtype=np.intp)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes, first, [a[first] for a in arrays]


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
) -> Effect:
    """Weighted regression-adjusted effect on ``sample`` (see the module docstring);
    ``design``: its :func:`effect_design`, if already built. ``cluster_df`` and ``cr2``: the
    conventions of :func:`pleval.inference.ols` (CR1/CR0 df G − 1 or G − p; the weighted CR2
    form, which matters here because matched weights vary within school)."""
    d = design or effect_design(sample, outcome=outcome, treatment=treatment, pretests=pretests,
                                covariates=covariates, strata=strata, school=school, weight=weight, label=label)
    y, t, w, adjust, cat = d.y, d.t, d.weights, d.adjust, d.categorical
    n_t = int(t.sum())
    tr = t.astype(bool)
    strata_vals = [sample[c].to_numpy() for c in cat] or None
    if d.rows is not None:  # the copies of reused students as one row (module docstring)
        codes, first, (y1, X1, c1, t1) = distinct_rows(d.rows, y, d.X, d.clusters, tr)
        n_c = int((~t1).sum())
        if strata_vals:  # labelled on the distinct rows: the same codes, fewer labels to hash
            firsts = [s[first] for s in strata_vals]
            strata_vals = (pd.MultiIndex.from_arrays(firsts).factorize()[0] if len(firsts) > 1 else firsts[0])[codes]
    else:
        n_c = int(pd.Index(sample.index[~tr]).nunique())
    conv = dict(cluster_df=cluster_df, cr2=cr2)
    # merging copies leaves CR0 and the transformed CR2 unchanged, not clubSandwich's CR2 (its working model counts rows)
    if d.rows is not None and (vcov == "CR0" or (vcov == "CR2" and cr2 == "transformed")):
        w1 = np.bincount(codes, w, len(first))
        # Centred columns (only the intercept moves): the same slopes, SEs and df, better conditioned.
        X1 = X1 - np.concatenate([[0.0], (w1 @ X1[:, 1:]) / w1.sum()])
        fit = ols(y1, X1, weights=w1, clusters=c1, vcov=vcov, names=list(d.names), **conv)
    else:
        fit = ols(y, d.X, weights=w, clusters=d.clusters, vcov=vcov, names=list(d.names), **conv)
    est, se, df, _ = fit.coef(treatment)
    raw = Estimate.from_t(
        est, se, df, level=level, n_treated=n_t, n_control=n_c, n_clusters=fit.n_clusters,
        method=f"{method}; WLS adjusted for {', '.join(adjust) or 'nothing'}; "
        f"{vcov}{convention_label(vcov, cluster_df, cr2, weighted=bool(np.ptp(w) > 0))} SE by "
        f"{'school' if school else 'student'}", label=label,
    )
    # pooled within grade x subject when the sample pools them (WWC per-grade effect sizes)
    sd_val, sd_kind = outcome_sd(y, tr, kind=sd, weights=w, strata=strata_vals)
    omega = float(hedges_omega(n_t + n_c)) if not isinstance(sd, (int, float)) else 1.0
    return Effect.from_raw(raw, sd_val, sd_kind + " (matched sample)", omega=omega, baseline_percentile=baseline_percentile)
