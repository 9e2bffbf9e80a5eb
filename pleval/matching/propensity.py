"""Propensity scores: a logistic model of treatment on covariates.

``e(x) = P(T = 1 | x) = 1 / (1 + exp(-(b0 + x'b)))`` fitted by maximum likelihood as statsmodels'
grouped binomial ``GLM`` (Newton–Raphson, the iterations of ``Logit(...).fit(method="newton")``)
on the distinct covariate patterns with their row and treated counts, whose likelihood is the rows' (grouped binary data;
whole-point pretests and categorical covariates leave a few thousand patterns in a million rows,
so the fit costs next to nothing). Matching uses the *logit* of the score, ``b0 + x'b``, whose
distribution is closer to normal and on which Rosenbaum & Rubin (1985) and Austin (2011)
define calipers. ``link="probit"`` fits ``e(x) = Φ(b0 + x'b)`` with statsmodels' ``Probit``
instead (MatchIt's ``link = "probit"``); ``logit_ps`` is then ``log(e/(1 − e))`` of its scores.

Separation. When a covariate (or a level of one) predicts treatment perfectly or
quasi-perfectly (e.g. every urban school is a PL school), the maximum-likelihood estimate does
not exist (Albert & Anderson 1984). :func:`fit_propensity` checks each covariate before fitting
and the fitted model after it, and raises :class:`~pleval.errors.DesignError` naming the
covariate(s). With ``penalize=True`` it fits a ridge-penalized logit instead (statsmodels
``GLM.fit_regularized`` with ``L1_wt=0`` on standardized covariates, intercept unpenalized),
which always has a finite solution, and warns that the scores are shrunk.

Common support. The report gives, on the logit scale, the range of each group and how many
treated units lie outside the comparison range (and vice versa); ``discard`` removes them the
way MatchIt's ``discard=`` does ("treated", "control", "both").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..errors import ConvergenceError, DataError, DesignError, PlevalWarning
from ._design import Encoded, combine_codes, encode, is_categorical

DISCARD = ("none", "treated", "control", "both")
_SEPARATION_LOGIT = 15.0  # |linear predictor| beyond which a fitted score is "0 or 1"


@dataclass(frozen=True, repr=False)
class CommonSupport(ResultMixin):
    """Overlap of the logit propensity score between groups."""

    treated_range: tuple[float, float]
    control_range: tuple[float, float]
    n_treated_outside: int  # treated units outside the comparison range
    n_control_outside: int  # comparison units outside the treated range
    discard: str
    n_discarded_treated: int
    n_discarded_control: int

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "group": ["treated", "comparison"],
                "logit_ps_min": [self.treated_range[0], self.control_range[0]],
                "logit_ps_max": [self.treated_range[1], self.control_range[1]],
                "n_outside_other_range": [self.n_treated_outside, self.n_control_outside],
                "n_discarded": [self.n_discarded_treated, self.n_discarded_control],
            }
        )

    def summary(self) -> str:
        t, c = self.treated_range, self.control_range
        return (
            f"common support (logit PS): treated [{t[0]:.3f}, {t[1]:.3f}], comparison [{c[0]:.3f}, {c[1]:.3f}]; "
            f"{self.n_treated_outside:,} treated outside the comparison range, "
            f"{self.n_control_outside:,} comparison outside the treated range; discard={self.discard!r} "
            f"removed {self.n_discarded_treated:,} treated and {self.n_discarded_control:,} comparison units"
        )


@dataclass(frozen=True, repr=False)
class PropensityModel(ResultMixin):
    """A fitted propensity model. ``ps`` and ``logit_ps`` are per row of the fitted data;
    ``keep`` is False for rows removed by ``discard``. (In a :class:`MatchResult` the arrays
    are per row of ``MatchResult.data``, the discarded rows already left out.)"""

    params: pd.Series
    ps: np.ndarray
    logit_ps: np.ndarray
    keep: np.ndarray
    support: CommonSupport
    penalized: bool
    alpha: float
    covariates: tuple[str, ...]
    n: int
    n_treated: int
    design_names: tuple[str, ...] = field(default=())
    link: str = "logit"

    def to_frame(self) -> pd.DataFrame:
        """The fitted logit coefficients."""
        return self.params.rename("coefficient").to_frame()

    def summary(self) -> str:
        how = f"ridge-penalized logit (alpha = {self.alpha:g})" if self.penalized else f"{self.link} (maximum likelihood)"
        lines = [
            f"Propensity model: {how} on {len(self.covariates)} covariate(s), n = {self.n:,} ({self.n_treated:,} treated)",
            self.support.summary(),
        ]
        return "\n".join(lines)

    __repr__ = summary


def _separation_by_covariate(enc_source: pd.DataFrame, t: np.ndarray, covariates, categorical,
                             n: np.ndarray | None = None) -> list[str]:
    """Covariates (and levels) that alone separate the groups.

    For a categorical or binary covariate: a level (with rows) whose units are all treated or
    all comparison. For a numeric covariate: the treated range lies entirely at or beyond one
    end of the comparison range (complete or quasi-complete separation, Albert & Anderson 1984).
    Each row of ``enc_source`` stands for ``n`` rows (default 1) of which ``t`` are treated
    (e.g. covariate patterns with their counts): the same verdicts as on the rows.
    """
    problems = []
    n = np.ones(len(t), np.int64) if n is None else n
    t1, t0 = t > 0, t < n  # holds treated rows, comparison rows
    for c in covariates:
        s = enc_source[c]
        x = None
        if c not in categorical and not is_categorical(s):
            x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            lo, hi = np.nanmin(x), np.nanmax(x)
            binary = bool(np.all((x == lo) | (x == hi)))
        if x is None or binary:
            codes, levels = pd.factorize(s, sort=True)
            n_all = np.bincount(codes, n, len(levels)).astype(np.int64)
            n_t = np.bincount(codes, t, len(levels)).astype(np.int64)
            for j, lev in enumerate(levels):
                if n_all[j] and n_t[j] == n_all[j]:
                    problems.append(f"{c} = {lev!r} (all {n_all[j]:,} rows treated)")
                elif n_all[j] and n_t[j] == 0:
                    problems.append(f"{c} = {lev!r} (no treated rows among {n_all[j]:,})")
        else:
            xt, xc = x[t1], x[t0]
            if xt.max() <= xc.min() or xt.min() >= xc.max():
                problems.append(
                    f"{c} (treated range [{xt.min():.4g}, {xt.max():.4g}] does not overlap comparison "
                    f"range [{xc.min():.4g}, {xc.max():.4g}])"
                )
    return problems


LINKS = ("logit", "probit")


def _fit_mle(y, X, warm_start_rows: int = 200_000):
    """Newton ML fit of the probit (statsmodels' ``Probit``). On large data the Newton
    iterations start from the fit on a fixed subsample (every m-th row), which only saves
    iterations: the converged estimate is the full-data MLE."""
    # statsmodels is imported where a model is fitted, and only the module of the model
    # (statsmodels.api costs another 0.3 CPU-s): matching without one does not pay for it
    from statsmodels.discrete.discrete_model import Probit
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    start = None
    n = len(y)
    if n > 2 * warm_start_rows:
        sub = slice(None, None, n // warm_start_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r0 = Probit(y[sub], X[sub], check_rank=False).fit(method="newton", maxiter=50, disp=0,
                                                                callback=lambda *a: None)
                if np.all(np.isfinite(r0.params)):
                    start = r0.params
            except (np.linalg.LinAlgError, ValueError):
                start = None
    model = Probit(y, X, check_rank=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(start_params=start, method="newton", maxiter=50, disp=0, callback=lambda *a: None)
        except np.linalg.LinAlgError as exc:  # singular Hessian: separation or collinearity
            return None, False, str(exc)
    converged = bool(res.mle_retvals.get("converged", True))
    sep = any(issubclass(w.category, PerfectSeparationWarning) for w in caught)
    conv = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return res.params, converged and not conv and not sep, ""


def covariate_patterns(df: pd.DataFrame, covariates, out: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows' covariate patterns: ``(pattern of each row, first row of each pattern)``,
    patterns numbered in order of first appearance. Rows with equal values of every covariate
    share a pattern, hence an encoded design row (:func:`~._design.encode` is a function of the
    values). Whole-point pretests and categorical covariates leave few patterns: 12,880 at most
    on the scale benchmark's 1M rows (161 pretest values × 16 × 5). ``out``: a dict that
    receives each covariate's ``(codes, levels)`` (:func:`~._design.combine_codes`)."""
    code = combine_codes(df, covariates, out=out)
    pattern = pd.factorize(code)[0]
    top = np.maximum.accumulate(pattern)  # factorize numbers patterns in order of first appearance
    return pattern, np.flatnonzero(np.concatenate([[True], top[1:] > top[:-1]]))


def design_patterns(df: pd.DataFrame, covariates, categorical=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`covariate_patterns` of ``df`` and the categorical covariates' ``(codes, levels)``
    (:func:`~._design.encode`'s ``codes``): what :func:`fit_propensity` takes from the
    covariates, which does not depend on the treatment."""
    covariates = tuple(dict.fromkeys(covariates))
    coded: dict = {}
    pattern, first = covariate_patterns(df, covariates, out=coded)
    return pattern, first, {c: coded[c] for c in covariates if c in categorical or is_categorical(df[c])}


def _fit_logit_patterns(X: np.ndarray, n: np.ndarray, y: np.ndarray, *, maxiter: int = 50):
    """Logit MLE on covariate patterns: design rows ``X`` (one per pattern) with ``n`` rows of
    which ``y`` treated, fitted as the grouped binomial GLM of statsmodels (endog ``[y, n − y]``,
    logit link). Its log-likelihood ``Σ_j y_j η_j − n_j log(1 + e^{η_j})`` (η = Xβ, up to a
    constant) is the rows' summed within patterns, so the MLE, score and Hessian are those of
    ``Logit`` on every row (McCullagh & Nelder 1989, §4.4: grouped binary data). Fitted by
    Newton's method from β = 0 as ``Logit(...).fit(method="newton")`` on the rows (same ridge,
    tolerance and ``maxiter``; the iterates are the same up to the order of the sums). Under
    separation the grouped likelihood's Newton steps reach non-finite values where the rows'
    run on to large coefficients; the fit is then GLM's iteratively reweighted least squares,
    which does run on (with ``PerfectSeparationWarning``), so the caller's error can name the
    covariates with the largest coefficients. Returns ``(β, converged, error)`` as :func:`_fit_mle`."""
    from statsmodels.genmod.families import Binomial
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    model = GLM(np.column_stack([y, n - y]), X, family=Binomial())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(method="newton", start_params=np.zeros(X.shape[1]), maxiter=maxiter, disp=0)
            converged = bool(res.mle_retvals["converged"])
            if not np.all(np.isfinite(res.params)):  # separation: IRLS runs on to finite coefficients
                res = model.fit(maxiter=maxiter)
                converged = bool(res.converged)
        except np.linalg.LinAlgError as exc:  # singular Hessian: separation or collinearity
            return None, False, str(exc)
    if not np.all(np.isfinite(res.params)):
        return None, False, "non-finite coefficients"
    bad = any(issubclass(w.category, (ConvergenceWarning, PerfectSeparationWarning)) for w in caught)
    return np.asarray(res.params), converged and not bad, ""


def _fit_ridge(y, X, alpha):
    """Ridge logit on standardized columns, intercept unpenalized; returns params on the
    original scale."""
    from statsmodels.genmod.families import Binomial
    from statsmodels.genmod.generalized_linear_model import GLM

    mu = X[:, 1:].mean(axis=0)
    sd = X[:, 1:].std(axis=0)
    sd[sd == 0] = 1.0
    Z = np.column_stack([np.ones(len(y)), (X[:, 1:] - mu) / sd])
    pen = np.full(Z.shape[1], alpha)
    pen[0] = 0.0
    res = GLM(y, Z, family=Binomial()).fit_regularized(alpha=pen, L1_wt=0.0)
    b = np.asarray(res.params, dtype=float)
    beta = b[1:] / sd
    return np.concatenate([[b[0] - mu @ beta], beta])


def fit_propensity(
    df: pd.DataFrame,
    treatment: str,
    covariates,
    *,
    categorical=(),
    discard: str = "none",
    penalize: bool = False,
    alpha: float = 1e-3,
    link: str = "logit",
    patterns: tuple | None = None,
) -> PropensityModel:
    """Fit ``logit P(T=1|x) = b0 + x'b`` and report common support.

    Parameters
    ----------
    df : rows to fit (complete on ``treatment`` and ``covariates``; the caller drops and counts
        incomplete rows).
    treatment : 0/1 column.
    covariates : columns; categorical ones (object/string/category/bool dtype, or listed in
        ``categorical``) are expanded to indicators of each non-reference level.
    discard : "none" | "treated" | "control" | "both" — remove units outside the other group's
        logit-PS range (MatchIt's ``discard``).
    penalize : fit a ridge-penalized logit (penalty ``alpha`` on standardized coefficients)
        instead of raising on separation; warns with :class:`PlevalWarning`.
    link : "logit" (default) or "probit" (maximum likelihood only).
    patterns : ``design_patterns(df, covariates, categorical)``, when already computed (e.g. for
        another treatment of the same rows).
    """
    if link not in LINKS:
        raise DataError(f"link must be one of {LINKS}; got {link!r}")
    if penalize and link != "logit":
        raise DataError("penalize=True fits a ridge-penalized logit; it cannot be combined with link='probit'")
    if discard not in DISCARD:
        raise DataError(f"discard must be one of {DISCARD}; got {discard!r}")
    covariates = tuple(dict.fromkeys(covariates))
    if not covariates:
        raise DataError("the propensity model needs at least one covariate")
    t = df[treatment].to_numpy()
    t = t.astype(np.int8) if t.dtype != np.int8 else t
    n_t = int(t.sum())
    if n_t == 0 or n_t == len(t):
        raise DesignError(f"treatment column {treatment!r} must contain both treated and comparison rows")
    absent = [c for c in covariates if c not in df.columns]
    if absent:
        raise DataError(f"covariate column(s) not found in the data: {', '.join(map(repr, absent))}")
    X = None  # the design of every row: only the probit and the ridge fits need it
    if not penalize:
        # checked and fitted on distinct design rows
        pattern, first, known = design_patterns(df, covariates, categorical) if patterns is None else patterns
        if link == "logit":  # the design rows of the patterns only, the categorical columns' codes reused
            enc: Encoded = encode(df, covariates, categorical, intercept=True, codes=known, rows=first)
            Xu = enc.X
        else:
            enc = encode(df, covariates, categorical, intercept=True)
            X = enc.X
            Xu = X[first]
        names = enc.names
        n_u = np.bincount(pattern, minlength=len(first)).astype(float)
        y_u = np.bincount(pattern, weights=t, minlength=len(first))
        problems = _separation_by_covariate(df[list(covariates)].iloc[first], y_u, covariates,  # (their columns only)
                                            set(enc.categorical) | set(categorical), n_u)
        if problems:
            raise DesignError(
                "perfect or quasi-perfect separation in the propensity model: "
                + "; ".join(problems[:10])
                + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
                + ". Match exactly on the covariate, drop it or the rows concerned, or fit a ridge-penalized model "
                "(penalize=True: --penalize in pleval match and pleval sensitivity, --set penalize=true in pleval estimate)."
            )
        scale = np.abs(Xu).max(axis=0)
        Xs = Xu / np.where(scale > 0, scale, 1.0)
        rank = int(np.linalg.matrix_rank((Xs * n_u[:, None]).T @ Xs, hermitian=True))  # the rows' Xs'Xs
        if rank < Xu.shape[1]:
            from ..inference.robust import dependent_column

            G = (Xs * n_u[:, None]).T @ Xs
            j = dependent_column(G)
            culprit = ""
            if j > 0:  # (0: the intercept)
                const = np.ptp(Xu[:, j]) == 0
                culprit = (f"; {names[j]!r} " + ("takes one value in every row" if const else
                                                 "is a combination of the intercept and the columns before it"))
            raise DesignError(
                f"the propensity covariates are collinear (design rank {rank} < {Xu.shape[1]} columns: "
                f"{', '.join(names[1:])}){culprit}; drop a redundant covariate"
            )
        if link == "logit":
            params, ok, err = _fit_logit_patterns(Xu, n_u, y_u)
        else:
            params, ok, err = _fit_mle(t, X)
        lin = None
        if params is not None:
            lin = Xu @ params  # per pattern: equal rows, equal scores
            if link == "probit":  # on the logit scale from here on
                lin = stats.norm.logcdf(lin) - stats.norm.logsf(lin)
        if params is None or not ok or np.abs(lin).max() > _SEPARATION_LOGIT * 2:
            if params is None:
                raise DesignError(f"the propensity model could not be fitted ({err}); check for separation or collinearity")
            # multivariate separation: name the covariates with the largest standardized coefficients
            # (each column's SD over the rows: that of the pattern rows weighted by their counts)
            mean = n_u @ Xu[:, 1:] / n_u.sum()
            sdx = np.sqrt(n_u @ (Xu[:, 1:] - mean) ** 2 / n_u.sum())
            std_coef = np.abs(params[1:] * sdx)
            order = np.argsort(-std_coef)[:3]
            culprits = sorted({enc.source[j + 1] for j in order if np.isfinite(std_coef[j])})
            extreme = int(n_u[np.abs(lin) > _SEPARATION_LOGIT].sum())
            raise DesignError(
                "the propensity model shows separation (no finite maximum-likelihood estimate; "
                f"{extreme:,} row(s) with fitted score within 3e-7 of 0 or 1); covariate(s) most involved: "
                f"{', '.join(culprits)}. Match exactly on them, drop them, or fit a ridge-penalized model "
                "(penalize=True: --penalize in pleval match and pleval sensitivity, --set penalize=true in pleval estimate)."
            )
    else:
        enc = encode(df, covariates, categorical, intercept=True)
        X, names = enc.X, enc.names
        params = _fit_ridge(t.astype(float), X, alpha)
        lin = X @ params  # per row: each row its own pattern
        pattern, n_u, y_u = None, np.ones(len(t)), t.astype(float)
        warnings.warn(
            f"propensity scores from a ridge-penalized logit (alpha = {alpha:g}); coefficients are shrunk "
            "toward zero, so scores are less extreme than a maximum-likelihood fit would give",
            PlevalWarning,
            stacklevel=2,
        )
    if not np.all(np.isfinite(lin)):
        raise ConvergenceError("the propensity model produced non-finite scores")

    # the scores, the groups' ranges and who lies outside the other group's range, per pattern (a
    # pattern holds treated rows when y_u > 0, comparison rows when y_u < n_u), then per row
    ps = 1.0 / (1.0 + np.exp(-lin))  # lin is on the logit scale for either link
    has_t, has_c = y_u > 0, y_u < n_u
    t_rng = (float(lin[has_t].min()), float(lin[has_t].max()))
    c_rng = (float(lin[has_c].min()), float(lin[has_c].max()))
    t_out = has_t & ((lin < c_rng[0]) | (lin > c_rng[1]))  # patterns whose treated rows are outside
    c_out = has_c & ((lin < t_rng[0]) | (lin > t_rng[1]))
    t1 = t == 1
    keep = np.ones(len(t), dtype=bool)
    if discard in ("treated", "both"):
        keep &= ~(t1 & (t_out if pattern is None else t_out[pattern]))
    if discard in ("control", "both"):
        keep &= ~(~t1 & (c_out if pattern is None else c_out[pattern]))
    support = CommonSupport(
        treated_range=t_rng,
        control_range=c_rng,
        n_treated_outside=int(y_u[t_out].sum()),
        n_control_outside=int((n_u - y_u)[c_out].sum()),
        discard=discard,
        n_discarded_treated=int((t1 & ~keep).sum()) if discard != "none" else 0,
        n_discarded_control=int((~t1 & ~keep).sum()) if discard != "none" else 0,
    )
    if pattern is not None:
        lin, ps = lin[pattern], ps[pattern]
    return PropensityModel(
        params=pd.Series(params, index=list(names)),
        ps=ps,
        logit_ps=lin,
        keep=keep,
        support=support,
        penalized=bool(penalize),
        alpha=float(alpha) if penalize else 0.0,
        covariates=covariates,
        n=len(t),
        n_treated=n_t,
        design_names=names,
        link=link,
    )


DEFAULT_CALIPER = 0.2
"""The propensity caliper when none is given, in :func:`pooled_logit_sd` units (SDs of the logit PS)."""


def pooled_logit_sd(logit_ps: np.ndarray, treated: np.ndarray) -> float:
    """``sqrt((s_t² + s_c²)/2)`` of the logit PS — the caliper unit of Austin (2011)."""
    t1 = treated.astype(bool)
    return float(np.sqrt((logit_ps[t1].var(ddof=1) + logit_ps[~t1].var(ddof=1)) / 2.0))
