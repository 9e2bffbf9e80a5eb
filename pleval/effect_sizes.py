"""Standardized effect sizes and their variances.

Conventions follow the What Works Clearinghouse Procedures and Standards Handbook
(v4.1/v5.0, "Computation of effect sizes") unless stated otherwise:

* Pooled within-group SD: ``S_p = √{[(n_T−1)s_T² + (n_C−1)s_C²] / (N−2)}``, ``N = n_T + n_C``.
* Small-sample factor (Hedges 1981, WWC): ``ω = 1 − 3/(4N − 9)``; the exact factor
  ``J(m) = Γ(m/2) / [√(m/2) Γ((m−1)/2)]``, ``m = N − 2``, is available as
  ``correction="exact"`` (metafor's ``escalc("SMD")``).
* Hedges g: ``g = ω (ȳ_T − ȳ_C)/S_p``, variance (large-sample, Hedges & Olkin 1985)
  ``v = N/(n_T n_C) + g²/(2N)``.
* Cohen d: ``(ȳ_T − ȳ_C)/S_p`` (no ω). Glass Δ: ``(ȳ_T − ȳ_C)/s_C``.
* Cox index for a binary outcome: ``d_Cox = ω [logit(p_T) − logit(p_C)] / 1.65``
  (Sánchez-Meca, Marín-Martínez & Chacón-Moscoso 2003; WWC).
* Hedges (2007) adjustments when schools (clusters) are the unit of assignment.

All functions broadcast over numpy arrays and pandas Series; several Series are paired by label
and a vector result is labelled like the first argument (:mod:`pleval._align`; docs/api.md,
"Several vectors").
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from ._align import by_label
from .data import HEAD_ROWS, levels_in_head
from .errors import DataError, PlevalWarning


def _arr(x):
    return np.asarray(x, dtype=float)


def _check_sd(sd, name: str) -> np.ndarray:
    """SDs as floats: a negative, missing or infinite SD is a :class:`DataError` (a negative one
    flipped the effect's sign), and so is 0 (an effect size with no variation is infinite)."""
    sd = np.asarray(sd, dtype=float)
    if np.any(~np.isfinite(sd)) or np.any(sd <= 0):
        raise DataError(f"{name} must be a positive number (the outcome must vary); got {sd if sd.ndim == 0 else 'values outside (0, inf)'}")
    return sd


def _check_icc(rho) -> np.ndarray:
    rho = np.asarray(rho, dtype=float)
    if not np.all((rho >= 0) & (rho < 1)):  # (NaN fails both)
        raise DataError("icc must lie in [0, 1)")
    return rho


def _check_n(n_t, n_c):
    n_t, n_c = np.asarray(n_t, dtype=float), np.asarray(n_c, dtype=float)
    if np.any(n_t < 2) or np.any(n_c < 2):
        raise DataError("each group needs at least 2 observations to compute a standard deviation")
    return n_t, n_c


def hedges_omega(n_total):
    """WWC small-sample correction ``ω = 1 − 3/(4N − 9)`` for total sample size N."""
    N = np.asarray(n_total, dtype=float)
    if np.any(N < 4):
        raise DataError("the small-sample correction needs N >= 4")
    return 1.0 - 3.0 / (4.0 * N - 9.0)


def hedges_j(df):
    """Exact small-sample factor ``J(m) = Γ(m/2) / [√(m/2) Γ((m−1)/2)]`` (Hedges 1981)."""
    m = np.asarray(df, dtype=float)
    return np.exp(special.gammaln(m / 2.0) - 0.5 * np.log(m / 2.0) - special.gammaln((m - 1.0) / 2.0))


def _factor(n_t, n_c, correction):
    if correction == "wwc":
        return hedges_omega(n_t + n_c)
    if correction == "exact":
        return hedges_j(n_t + n_c - 2.0)
    if correction is None or correction == "none":
        return 1.0
    raise DataError(f"correction must be 'wwc', 'exact' or None; got {correction!r}")


@by_label("sd_t", "sd_c", "n_t", "n_c")
def pooled_sd(sd_t, sd_c, n_t, n_c):
    """Pooled within-group SD ``√{[(n_T−1)s_T² + (n_C−1)s_C²]/(n_T + n_C − 2)}``."""
    n_t, n_c = _check_n(n_t, n_c)
    sd_t, sd_c = _arr(sd_t), _arr(sd_c)
    if np.any(~np.isfinite(sd_t) | ~np.isfinite(sd_c) | (sd_t < 0) | (sd_c < 0)):
        raise DataError("the group SDs must be non-negative numbers")
    return np.sqrt(((n_t - 1) * sd_t**2 + (n_c - 1) * sd_c**2) / (n_t + n_c - 2))


@by_label("mean_t", "mean_c", "sd_t", "sd_c", "n_t", "n_c")
def cohens_d(mean_t, mean_c, sd_t, sd_c, n_t, n_c):
    """Cohen's d: mean difference over the pooled within-group SD (no small-sample factor)."""
    sd = _check_sd(pooled_sd(sd_t, sd_c, n_t, n_c), "the pooled SD")
    return (np.asarray(mean_t, float) - np.asarray(mean_c, float)) / sd


@by_label("mean_t", "mean_c", "sd_t", "sd_c", "n_t", "n_c")
def hedges_g(mean_t, mean_c, sd_t, sd_c, n_t, n_c, correction: Literal["wwc", "exact"] | None = "wwc"):
    """Hedges g from summary statistics: ``ω (ȳ_T − ȳ_C) / S_p``.

    ``correction="wwc"`` uses ω = 1 − 3/(4N − 9); ``"exact"`` uses J(N − 2); ``None`` gives d.
    """
    n_t, n_c = _check_n(n_t, n_c)
    return _factor(n_t, n_c, correction) * cohens_d(mean_t, mean_c, sd_t, sd_c, n_t, n_c)


@by_label("g", "n_t", "n_c")
def hedges_g_variance(g, n_t, n_c, kind: Literal["large_sample", "unbiased"] = "large_sample"):
    """Sampling variance of g.

    ``"large_sample"`` (Hedges & Olkin 1985; WWC): ``N/(n_T n_C) + g²/(2N)``.
    ``"unbiased"`` (Hedges 1983; metafor's ``vtype="UB"``):
    ``1/n_T + 1/n_C + [1 − (m − 2)/(m J(m)²)] g²``, m = N − 2.
    """
    n_t, n_c = _check_n(n_t, n_c)
    g = np.asarray(g, dtype=float)
    N = n_t + n_c
    if kind == "large_sample":
        return N / (n_t * n_c) + g**2 / (2.0 * N)
    if kind == "unbiased":
        m = N - 2.0
        return 1.0 / n_t + 1.0 / n_c + (1.0 - (m - 2.0) / (m * hedges_j(m) ** 2)) * g**2
    raise DataError(f"kind must be 'large_sample' or 'unbiased'; got {kind!r}")


def hedges_g_from_samples(y_t, y_c, correction: Literal["wwc", "exact"] | None = "wwc") -> tuple[float, float]:
    """Hedges g and its large-sample variance from two samples (NaNs are an error)."""
    y_t, y_c = np.asarray(y_t, dtype=float), np.asarray(y_c, dtype=float)
    for name, y in (("treated sample", y_t), ("comparison sample", y_c)):
        if not np.all(np.isfinite(y)):
            raise DataError(f"{name}: {int((~np.isfinite(y)).sum())} missing or non-finite value(s)")
    g = hedges_g(y_t.mean(), y_c.mean(), y_t.std(ddof=1), y_c.std(ddof=1), y_t.size, y_c.size, correction)
    return float(g), float(hedges_g_variance(g, y_t.size, y_c.size))


@by_label("mean_t", "mean_c", "sd_c")
def glass_delta(mean_t, mean_c, sd_c):
    """Glass Δ: mean difference over the comparison group's SD."""
    return (np.asarray(mean_t, float) - np.asarray(mean_c, float)) / _check_sd(sd_c, "the comparison group's SD")


@by_label("p_t", "p_c", "n_t", "n_c")
def cox_index(p_t, p_c, n_t, n_c, correction: Literal["wwc", "exact"] | None = "wwc"):
    """Cox index for a binary outcome: ``ω [ln(p_T/(1−p_T)) − ln(p_C/(1−p_C))] / 1.65``.

    ``p_t``, ``p_c`` are the proportions with the outcome in each group (strictly inside (0, 1)).
    """
    p_t, p_c = np.asarray(p_t, float), np.asarray(p_c, float)
    if np.any((p_t <= 0) | (p_t >= 1) | (p_c <= 0) | (p_c >= 1)):
        raise DataError("Cox index: proportions must lie strictly between 0 and 1")
    n_t, n_c = _check_n(n_t, n_c)
    return _factor(n_t, n_c, correction) * (special.logit(p_t) - special.logit(p_c)) / 1.65


TOO_FEW_FOR_SD = "each group needs at least 2 non-missing outcomes"
""":func:`outcome_sd`'s reason when no arm (of any stratum) has two outcomes."""


NORM_SD_RATIO = 10.0
"""A given norm SD this many times larger or smaller than the outcome's own SD is warned of: norms
and samples differ by far less (restriction of range rarely halves an SD); a factor of 10 is a
unit slip (a scale-score SD given for a 0–1 outcome, or the reverse)."""


def _check_norm_sd(norm: float, y) -> None:
    """A :class:`PlevalWarning` when ``norm`` is off the outcome's SD by :data:`NORM_SD_RATIO`."""
    y = np.asarray(y, dtype=float)
    own = float(np.nanstd(y)) if np.isfinite(y).sum() > 1 else math.nan
    if own > 0 and not 1 / NORM_SD_RATIO <= norm / own <= NORM_SD_RATIO:
        warnings.warn(f"the given norm SD {norm:g} is {max(norm / own, own / norm):,.0f} times "
                      f"{'larger' if norm > own else 'smaller'} than the outcome's own SD ({own:.4g}): effect sizes "
                      "and percentile points scale with it; is it on the outcome's scale?", PlevalWarning, stacklevel=3)


@by_label("y", "weights", "weights2", as_is=("treated", "strata"))
def outcome_sd(y, treated, kind="pooled", weights=None, strata=None, weights2=None) -> tuple[float, str]:
    """The SD that standardizes an effect, and a label saying which it is.

    ``kind="pooled"`` (default, WWC): pooled within-group SD of the *unadjusted* outcome;
    ``"comparison"``: the comparison group's SD (Glass); a positive number: a given norm SD
    (e.g. national norms, as RAND used). With ``weights`` the group SDs are weighted, with
    the group's effective n (Σw)²/Σw² in place of n, so a matched comparison group is
    described as matched.

    ``strata`` (e.g. grade × subject labels): the SD is pooled *within* strata,
    ``S² = Σ_s Σ_arm (n_{s,arm} − 1) s²_{s,arm} / Σ_s Σ_arm (n_{s,arm} − 1)``, so that
    differences between grade means do not inflate the SD of an analysis that pools grades
    (the WWC computes effect sizes within grade and averages them; RAND used grade norms).
    Strata with fewer than two outcomes in an arm contribute nothing.

    ``weights2``: each row's Σw² when a row stands for several copies whose weights were summed
    into ``weights`` (a reused matched comparison student); the SD is then that of the copies.
    """
    if isinstance(kind, (int, float, np.integer, np.floating)) and not isinstance(kind, (bool, np.bool_)):
        if not (np.isfinite(kind) and kind > 0):
            raise DataError(f"a given norm SD must be positive; got {kind}")
        _check_norm_sd(float(kind), y)
        return float(kind), f"given norm SD ({float(kind):g})"
    if kind not in ("pooled", "comparison"):
        raise DataError(f"sd must be 'pooled', 'comparison' or a positive number; got {kind!r}")
    y = np.asarray(y, dtype=float)
    t = np.asarray(treated).astype(bool)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    w2 = w**2 if weights2 is None else np.asarray(weights2, dtype=float)
    codes = np.zeros(y.size, dtype=np.intp) if strata is None else _codes(strata)
    if codes.size and codes.min() < 0:
        raise DataError("outcome SD: the strata have missing values")
    S = int(codes.max()) + 1 if codes.size else 1
    # one bin per arm x stratum (comparison first), 2S for the rows left out; each bin's sums
    # are taken over its rows in row order, as over the arm's rows alone
    key = np.where(t, codes + S, codes) if kind == "pooled" else np.where(t, 2 * S, codes)
    key[~(np.isfinite(y) & (w > 0))] = 2 * S
    sd = _within_sd(y, w, w2, key, S, 1 if kind == "comparison" else 2)
    label = "comparison-group SD" if kind == "comparison" else "pooled within-group SD"
    if strata is not None:
        label += " within strata"
    return sd, label


def _within_sd(y: np.ndarray, w: np.ndarray, w2: np.ndarray, key: np.ndarray, S: int, arms: int,
               sw: np.ndarray | None = None) -> float:
    """:func:`outcome_sd`'s SD from its float arrays and each row's bin ``key``: stratum s of the
    comparison arm s, of the treated arm S + s (``arms=2``; with ``arms=1`` the comparison arm's
    alone, the treated rows' key 2S), 2S a row left out. ``sw``: the bins' Σw, when the caller has
    summed them (the first 2S bins suffice; a bin no row holds adds nothing). For callers that have
    the bins already (:func:`baseline_difference`'s are its own)."""
    bins = 2 * S + 1 if sw is None else len(sw)
    sw = np.bincount(key, w, bins) if sw is None else sw
    sw2 = np.bincount(key, w2, bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(key, w * y, bins) / sw
        n_eff = sw**2 / sw2
        var = np.bincount(key, w * (y - mean[key]) ** 2, bins) / sw * n_eff / (n_eff - 1.0)
    ss = dof = 0.0
    for arm in range(arms):  # the arms' strata in turn, as before
        n_a, v_a = n_eff[arm * S:(arm + 1) * S], var[arm * S:(arm + 1) * S]
        use = n_a > 1.0 + 1e-9
        ss += float(np.sum((n_a[use] - 1.0) * v_a[use]))
        dof += float(np.sum(n_a[use] - 1.0))
    if dof <= 0:
        raise DataError(f"outcome SD: {TOO_FEW_FOR_SD}")
    sd = float(np.sqrt(max(ss, 0.0) / dof))
    used = np.abs(y[key < 2 * S])
    if not sd > 1e-10 * max(float(used.max(initial=0.0)), 1e-300):  # rounding's SD of a constant outcome: ~1e-15 of it
        raise DataError(f"outcome SD is 0: the outcome holds one value within every group{' and stratum' * (S > 1)} "
                        "(no variation for an effect size)")
    return sd


class BaselineDifference(NamedTuple):
    """:func:`baseline_difference`'s result: ``g``, the ``difference`` it standardizes, the arms'
    (weighted) means over all strata, the ``sd`` and the arms' effective n."""

    g: float
    difference: float
    mean_treated: float
    mean_control: float
    sd: float
    n_treated: float
    n_control: float


@by_label("x", "weights", "weights2", as_is=("treated", "strata"))
def baseline_difference(x, treated, weights=None, strata=None, weights2=None) -> BaselineDifference:
    """The baseline difference on ``x`` (e.g. the pretest) as a Hedges g on the impact's yardstick.

    Without ``strata``: ``g = ω (x̄_T − x̄_C) / S_p`` (:func:`hedges_g`; weighted means and SDs
    with the groups' effective n ``(Σw)²/Σw²`` when ``weights`` are given). With ``strata``
    (grade × subject labels, when the sample pools grades) the difference is taken within each
    stratum and averaged, and standardized by the SD pooled within strata — the SD the impact's
    effect size uses (:func:`outcome_sd`) — as the WWC computes per-grade differences and
    averages them:

        Δ = Σ_s W_s (x̄_{T,s} − x̄_{C,s}) / Σ_s W_s,    g = ω Δ / S_within,    ω = 1 − 3/(4N − 9),

    over the strata holding both groups, ``W_s`` a stratum's total weight (its rows, unweighted)
    and N the groups' effective n. Across grades, the gaps between grade means inflate the SD (a
    0.30-SD imbalance within grade read 0.24) and a difference in the arms' grade mix moves the
    means (equal arms within every grade read 0.30 when one arm had the older grades): neither
    is a baseline difference the 0.05/0.25 SD thresholds of the WWC (Procedures and Standards
    Handbook v5.0, baseline equivalence) are about. One stratum gives :func:`hedges_g` exactly.
    ``weights2``: as :func:`outcome_sd`'s. ``g`` is NaN when the SD cannot be computed
    (:data:`TOO_FEW_FOR_SD`, or no variation).
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(treated).astype(bool)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    w2 = w**2 if weights2 is None else np.asarray(weights2, dtype=float)
    codes = np.zeros(x.size, np.intp) if strata is None else _codes(strata)
    if codes.size and codes.min() < 0:
        raise DataError("baseline difference: the strata have missing values")
    ok = np.isfinite(x) & (w > 0)
    if not ok.all():
        x, t, w, w2, codes = x[ok], t[ok], w[ok], w2[ok], codes[ok]
    S = int(codes.max(initial=0)) + 1
    key = codes + S * t
    sw = np.bincount(key, w, 2 * S)
    arms = [(w[a], x[a], w2[a]) if a.any() else None for a in (t, ~t)]  # (each arm's rows taken once)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = [float(a[0] @ a[1] / a[0].sum()) if a else math.nan for a in arms]
        ref = means[1] if math.isfinite(means[1]) else 0.0  # cell means of x − ref: no cancellation in their gaps
        cell_mean = np.bincount(key, w * (x - ref), 2 * S) / sw
    n = [float(a[0].sum() ** 2 / a[2].sum()) if a else 0.0 for a in arms]
    del arms
    both = (sw[:S] > 0) & (sw[S:] > 0)
    W = (sw[:S] + sw[S:])[both]
    diff = float(W @ (cell_mean[S:][both] - cell_mean[:S][both]) / W.sum()) if both.any() else math.nan
    if strata is not None and not ok.all():
        # outcome_sd on the rows kept numbers their strata by first appearance among them, and
        # sums the SD's terms in that order: when dropped rows change that order, its own bins
        kept = _codes(codes)
        if not np.array_equal(kept, codes):
            S = int(kept.max(initial=0)) + 1
            key, sw = kept + S * t, None
        del kept
    try:
        sd = _within_sd(x, w, w2, key, S, 2, sw)  # (outcome_sd's on the rows kept: the same strata, bins and Σw)
        omega = float(hedges_omega(n[0] + n[1]))
    except DataError:  # too few rows, or no variation
        return BaselineDifference(math.nan, diff, *means, math.nan, *n)
    return BaselineDifference(omega * diff / sd, diff, *means, sd, *n)


def _codes(strata) -> np.ndarray:
    """Integer codes in order of first appearance (``pd.factorize``'s) for one label array, or for
    the combinations of a list of arrays. Non-negative integers below 2¹⁶ (cell codes such as
    :func:`pleval.matching._design.combine_codes`'s) whose every value occurs in the first rows
    (:func:`pleval.data.levels_in_head`) are numbered through a table of those values, without
    hashing every row."""
    if isinstance(strata, (list, tuple)) and strata and np.ndim(strata[0]) == 1:
        return pd.MultiIndex.from_arrays([np.asarray(s) for s in strata]).factorize()[0].astype(np.intp)
    a = np.asarray(strata)
    if a.ndim == 1 and a.size > HEAD_ROWS and (a.dtype.kind == "i" or (a.dtype.kind == "u" and a.dtype.itemsize < 8)):
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi < 1 << 16 and (head := levels_in_head(a, hi + 1)) is not None:
            table = np.zeros(hi + 1, np.intp)
            table[head] = np.arange(len(head))
            return table[a]
    return pd.factorize(a)[0].astype(np.intp)


@by_label("t", "n_total", "n_clusters", "icc")
def hedges2007_adjusted_t(t, n_total, n_clusters, icc=0.20):
    """Hedges (2007) correction of a t statistic that ignored clustering.

    With ``n̄ = N/m`` students per cluster and intraclass correlation ρ (WWC default 0.20
    for achievement outcomes):

        t_A = t √{[(N−2) − 2(n̄−1)ρ] / [(N−2)(1+(n̄−1)ρ)]}
        h   = [(N−2) − 2(n̄−1)ρ]² / [(N−2)(1−ρ)² + n̄(N−2n̄)ρ² + 2(N−2n̄)ρ(1−ρ)]

    Returns ``(t_A, h)``; compare t_A with t(h). Source: Hedges (2007), J. Educ. Behav.
    Stat. 32(2), 151–179; WWC Procedures Handbook, appendix on clustering corrections.
    """
    N, m = (np.asarray(v, dtype=float) for v in (n_total, n_clusters))
    rho = _check_icc(icc)
    nbar = N / m
    a = (N - 2.0) - 2.0 * (nbar - 1.0) * rho
    t_a = np.asarray(t, dtype=float) * np.sqrt(a / ((N - 2.0) * (1.0 + (nbar - 1.0) * rho)))
    h = a**2 / ((N - 2.0) * (1 - rho) ** 2 + nbar * (N - 2.0 * nbar) * rho**2 + 2.0 * (N - 2.0 * nbar) * rho * (1 - rho))
    return t_a, h


@by_label("mean_diff", "sd_total", "n_t", "n_c", "cluster_size", "icc")
def hedges2007_effect_size(mean_diff, sd_total, n_t, n_c, cluster_size, icc=0.20):
    """Hedges (2007) effect size δ_T for a cluster-randomized design and its variance.

    With equal clusters of size n, ``N = N_T + N_C`` students, total SD ``S_T``:

        d_T = (ȳ_T − ȳ_C)/S_T · √{1 − 2(n−1)ρ/(N−2)}
        V(d_T) = (N_T+N_C)/(N_T N_C)·[1+(n−1)ρ]
                 + d_T² · [(N−2)(1−ρ)² + n(N−2n)ρ² + 2(N−2n)ρ(1−ρ)] / {2(N−2)[(N−2) − 2(n−1)ρ]}

    (Hedges 2007, equations for d_T and its variance; for unequal clusters pass the mean
    cluster size, an approximation). Returns ``(d_T, V)``.
    """
    n_t, n_c = _check_n(n_t, n_c)
    n, rho = np.asarray(cluster_size, dtype=float), _check_icc(icc)
    N = n_t + n_c
    if np.any(~(n >= 1)) or np.any(n > N / 2):
        raise DataError(f"cluster_size must lie between 1 and half the students ({float(np.min(N)) / 2:g}): each arm "
                        "needs a whole cluster")
    sd_total = _check_sd(sd_total, "sd_total")
    d = np.asarray(mean_diff, float) / np.asarray(sd_total, float) * np.sqrt(1.0 - 2.0 * (n - 1.0) * rho / (N - 2.0))
    v = N / (n_t * n_c) * (1.0 + (n - 1.0) * rho) + d**2 * (
        (N - 2.0) * (1 - rho) ** 2 + n * (N - 2.0 * n) * rho**2 + 2.0 * (N - 2.0 * n) * rho * (1 - rho)
    ) / (2.0 * (N - 2.0) * ((N - 2.0) - 2.0 * (n - 1.0) * rho))
    return d, v


__all__ = [
    "hedges_omega",
    "hedges_j",
    "pooled_sd",
    "cohens_d",
    "hedges_g",
    "hedges_g_variance",
    "hedges_g_from_samples",
    "glass_delta",
    "cox_index",
    "outcome_sd",
    "baseline_difference",
    "BaselineDifference",
    "hedges2007_adjusted_t",
    "hedges2007_effect_size",
]
