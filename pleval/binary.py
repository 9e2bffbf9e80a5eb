"""Binary (yes/no) outcomes: proficient, course completed, attended at least 90% of days.

A binary outcome has no scale points and no percentile ranks, so its effect is reported as

* the **difference in percentage points** between the proportions with and without the
  program (``100·(p_T − p_C)``; a difference of shares of students — not percentile points,
  which are shifts in rank on a continuous score), and
* the WWC's **Cox index** as the effect size (WWC Procedures and Standards Handbook v5.0,
  effect sizes for dichotomous outcomes; Sánchez-Meca, Marín-Martínez & Chacón-Moscoso 2003):

      d_Cox = ω·[logit(p_T) − logit(p_C)] / 1.65 = ω·ln(OR) / 1.65,   ω = 1 − 3/(4N − 9).

Estimation (stated in every result's ``method``):

* ``"logit"`` (default): logistic regression of the outcome on treatment and the design's
  adjusters (statsmodels ``GLM``, Binomial family, analysis weights as ``var_weights``), with a
  CR2 covariance by school and Satterthwaite df for each reported contrast (HC2 and Bell &
  McCaffrey's df without clusters; n − k before 2026-12-05): the fit's score and information are
  those of a least-squares fit of the Pearson residuals ``r̃ = w(y − μ)/√v`` on ``X̃ = √v·X``
  (``v = wμ(1 − μ)``, the working weights), whose CR2 sandwich and Bell–McCaffrey df (Bell &
  McCaffrey 2002; Pustejovsky & Tipton 2018) are those of :func:`pleval.inference.ols`; ``HC2`` is then ``sandwich``'s
  ``vcovHC(glm, "HC2")`` (hat values of the weighted design). ``logit_vcov="CR1"`` gives
  Stata's CR1 with a t(G − 1) reference, which in simulated trials of 8 and 12 schools with no
  effect rejected in 6.5% and 7.2% (CR2: docs/outcomes.md). The proportions are the
  model's average predictions with everyone treated (p_T) and with no one treated (p_C), over
  the estimand's students (the PL students for a matched design's ATT; every student for a
  trial's ITT) — the WWC's *adjusted proportions*. The difference is ``100·(p_T − p_C)`` and the
  Cox index ``ω·[logit(p_T) − logit(p_C)]/1.65``, both with delta-method SEs ``√(ĝ'V̂ĝ)``:
  ``∇p_a = mean_w[μ_a(1 − μ_a)x_a]`` and, for the Cox index,
  ``ĝ = ω/1.65·[∇p_T/(p_T(1 − p_T)) − ∇p_C/(p_C(1 − p_C))]``. The Cox index uses these marginal
  proportions, not the treatment coefficient: with a strong pretest in the model the
  coefficient is a *conditional* log odds ratio, larger than the marginal one (odds ratios are
  not collapsible), and would not be on the yardstick of a Hedges g divided by the unadjusted
  SD. The coefficient is kept as ``conditional_log_odds_ratio``.
* ``"lpm"``: the linear-probability model, i.e. the design's own weighted least squares on the
  0/1 outcome with CR2 standard errors and Satterthwaite df; its treatment coefficient is the
  difference in proportions. The Cox index follows the WWC's rule for adjusted differences:
  one proportion is observed (the PL students' for an ATT, the comparison students' for an
  ITT), the other is it minus (plus) the adjusted difference; its CI maps the difference's CI.

The Handbook's sampling variance of the Cox index from two proportions (no clustering),

      v(d_Cox) = ω²/1.65² · [1/(n_T p_T) + 1/(n_T(1 − p_T)) + 1/(n_C p_C) + 1/(n_C(1 − p_C))],

is :func:`cox_index_variance` (it is 1/1.65² ≈ 0.367 times the variance of the log odds ratio,
Sánchez-Meca et al. 2003, eq. 18); pleval's CIs use the cluster-robust SE instead.

Percentile points are not defined for a yes/no outcome: students cannot be ranked on two
values, so there is no percentile to shift (:data:`NO_PERCENTILE`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import special

from ._align import by_label
from ._results import Estimate, ResultMixin, t_interval
from .effect_sizes import hedges_omega
from .errors import DataError, DesignError

METHODS = ("logit", "lpm")
YES = frozenset({"1", "1.0", "yes", "y", "true", "t"})
NO = frozenset({"0", "0.0", "no", "n", "false", "f"})
COX_CONSTANT = 1.65
NO_PERCENTILE = ("percentile points are not defined for a yes/no outcome: students cannot be ranked on two values, "
                 "so there is no percentile to shift; read the difference in percentage points")


# ----------------------------------------------------------------------------- coding
def _distinct(values: pd.Series) -> list:
    return list(pd.unique(values.dropna()))


FIRST_ROWS = 1024
"""The rows a column's kind is first asked of (:func:`is_binary`): a score shows values other than
0 and 1 among them, and is told from a yes/no column without a pass over a million rows (0.03 s)."""


def is_binary(values: pd.Series) -> bool:
    """Whether a column holds yes/no codes: booleans, numbers in {0, 1}, or text in
    yes/no, y/n, true/false, t/f, 1/0 (any case); missing values allowed."""
    if (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            and not values.iloc[:FIRST_ROWS].dropna().isin([0, 1]).all()):
        return False  # (a number other than 0 and 1 among the first rows: the whole column's answer)
    v = values.dropna()
    if pd.api.types.is_bool_dtype(v):
        return True
    if pd.api.types.is_numeric_dtype(v):
        return bool(v.isin([0, 1]).all())
    codes = {str(x).strip().lower() for x in pd.unique(v)}
    return codes <= (YES | NO)


def binary_values(values: pd.Series, name: str) -> np.ndarray:
    """The 0/1 values (float, NaN where missing) of a yes/no column.

    Raises :class:`DataError` naming the column when the codes are ambiguous: two numbers
    other than 0 and 1 (which one means yes?), text other than yes/no codes, or a single value.
    """
    v = values
    if pd.api.types.is_bool_dtype(v.dropna()):
        out = v.map({True: 1.0, False: 0.0}).to_numpy(dtype=float)
    elif pd.api.types.is_numeric_dtype(v):
        codes = sorted(_distinct(v))
        if not set(codes) <= {0, 1}:
            shown = ", ".join(f"{c:g}" for c in codes[:5]) + (", ..." if len(codes) > 5 else "")
            raise DataError(f"column {name!r} (binary outcome): codes {shown} are not 0/1, so which one means yes is "
                            "ambiguous; recode it to 1 = yes, 0 = no")
        out = v.to_numpy(dtype=float)
    else:
        text = v.map(lambda x: x if pd.isna(x) else str(x).strip().lower())
        bad = sorted({c for c in _distinct(text) if c not in YES | NO})
        if bad:
            raise DataError(f"column {name!r} (binary outcome): code(s) {', '.join(map(repr, bad[:5]))} are not yes/no "
                            "codes (yes/no, y/n, true/false, 1/0); recode it to 1 = yes, 0 = no")
        out = text.map(lambda x: np.nan if pd.isna(x) else float(x in YES)).to_numpy(dtype=float)
    ok = out[np.isfinite(out)]
    if ok.size and (ok.min() == ok.max()):
        raise DataError(f"column {name!r} (binary outcome): every non-missing value is {int(ok[0])}; "
                        "an effect on it cannot be estimated")
    return out


# ----------------------------------------------------------------------------- Cox index
@by_label("p_t", "p_c", "n_t", "n_c")
def cox_index_variance(p_t, p_c, n_t, n_c, correction: str | None = "wwc"):
    """Sampling variance of the Cox index from two proportions (WWC Procedures and Standards
    Handbook; Sánchez-Meca et al. 2003, eq. 18):
    ``ω²/1.65² · [1/(n_T p_T) + 1/(n_T(1−p_T)) + 1/(n_C p_C) + 1/(n_C(1−p_C))]``.
    ``correction=None`` leaves out ω (its value for :func:`pleval.effect_sizes.cox_index`
    with ``correction=None``)."""
    p_t, p_c, n_t, n_c = (np.asarray(x, dtype=float) for x in (p_t, p_c, n_t, n_c))
    if np.any((p_t <= 0) | (p_t >= 1) | (p_c <= 0) | (p_c >= 1)):
        raise DataError("Cox index variance: proportions must lie strictly between 0 and 1")
    if np.any(n_t < 1) or np.any(n_c < 1):
        raise DataError("Cox index variance: each group needs at least one student")
    w = hedges_omega(n_t + n_c) if correction == "wwc" else 1.0
    v_lor = 1 / (n_t * p_t) + 1 / (n_t * (1 - p_t)) + 1 / (n_c * p_c) + 1 / (n_c * (1 - p_c))
    return w**2 * v_lor / COX_CONSTANT**2


# ----------------------------------------------------------------------------- the effect
@dataclass(frozen=True, repr=False)
class BinaryEffect(ResultMixin):
    """The effect on a yes/no outcome: ``difference`` in percentage points and ``cox`` (the
    Cox index, an effect size), with the adjusted proportions behind them.

    ``pvalue`` is the Cox index's test (logit: its delta-method t; LPM: the difference's t);
    ``p_treated``/``p_comparison`` are the adjusted proportions (0–1) and ``log_odds_ratio``
    their log odds ratio; ``cox_se_handbook`` is the Handbook's unclustered SE from them
    (:func:`cox_index_variance`), for comparison with the cluster-robust ``cox.se``; the
    logit's treatment coefficient (a conditional log odds ratio) and its SE are
    ``conditional_log_odds_ratio(_se)``.
    """

    difference: Estimate
    cox: Estimate
    p_treated: float
    p_comparison: float
    log_odds_ratio: float
    estimation: str
    estimand: str
    omega: float
    cox_se_handbook: float
    conditional_log_odds_ratio: float = math.nan
    conditional_log_odds_ratio_se: float = math.nan
    percentile_note: str = NO_PERCENTILE

    @property
    def pvalue(self) -> float:
        return self.cox.pvalue

    @property
    def estimates(self) -> tuple[Estimate, Estimate]:
        return (self.difference, self.cox)

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("difference", "cox")}
        return d

    def to_frame(self) -> pd.DataFrame:
        f = pd.DataFrame([e.as_dict() for e in self.estimates])
        for k, v in self.as_dict().items():
            f[k] = v
        return f

    def summary(self) -> str:
        d, c = self.difference, self.cox
        lvl = f"{d.level:.0%}"
        return "\n".join([
            f"Binary outcome{(' — ' + d.label) if d.label else ''}: {self.estimand}, {d.method}",
            f"  n treated = {d.n_treated:,}, n comparison = {d.n_control:,}"
            + (f", clusters = {d.n_clusters:,}" if d.n_clusters else ""),
            f"  proportions: {100 * self.p_treated:.1f}% with PL vs {100 * self.p_comparison:.1f}% without (adjusted)",
            f"  difference: {d.estimate:+.1f} percentage points ({lvl} CI {d.ci_low:+.1f} to {d.ci_high:+.1f})",
            f"  Cox index: {c.estimate:+.3f} SD ({lvl} CI {c.ci_low:+.3f} to {c.ci_high:+.3f}); p = {self.pvalue:.3g}; "
            f"odds ratio {math.exp(self.log_odds_ratio):.3f}; ω = {self.omega:.4f}",
            f"  {self.percentile_note}",
        ])


def _cox(p_t, p_c, omega):
    with np.errstate(divide="ignore", invalid="ignore"):
        return omega * (special.logit(p_t) - special.logit(p_c)) / COX_CONSTANT


def _estimand_rows(t: np.ndarray, estimand: str) -> np.ndarray:
    if estimand == "ATT":
        return t == 1
    if estimand == "ITT":
        return np.ones(t.shape, bool)
    raise DataError(f"estimand must be 'ATT' or 'ITT'; got {estimand!r}")


def binary_effect(y, X, names, *, treatment: str, weights=None, clusters=None, method: str = "logit",
                  estimand: str = "ATT", level: float = 0.95, lpm_vcov: str = "CR2", label: str = "",
                  description: str = "", absorb=None, logit_vcov: str = "CR2", cluster_df: str = "G-1",
                  df_working: str = "independent") -> BinaryEffect:
    """The effect of ``treatment`` on a 0/1 outcome ``y`` given the design matrix ``X``
    (intercept, treatment, adjusters; column names ``names``), analysis ``weights`` and
    ``clusters`` (school ids; None for independent students), by ``method`` ``"logit"`` or
    ``"lpm"`` (module docstring). ``estimand``: ``"ATT"`` (average over treated rows) or
    ``"ITT"`` (over every row). ``description`` (e.g. the adjusters) is added to the method text.
    ``absorb``: block codes whose indicators the linear-probability model absorbs (X then has no
    intercept; HC covariance, :func:`pleval.inference.ols`); not with ``"logit"``. ``logit_vcov``:
    ``"CR2"`` (Satterthwaite df; HC2 and Bell & McCaffrey's df without clusters) or ``"CR1"``
    (t(G − 1); HC1, n − k).
    ``lpm_vcov``: any of :func:`pleval.inference.ols`'s (a CR type without clusters is its HC
    type). ``cluster_df`` and ``df_working``: :func:`pleval.inference.ols`'s conventions, for
    both models (the logit's CR1 under ``"G-p"``: factor G/(G − k) on G − k df).
    """
    from .inference import ols
    from .inference.robust import convention_label

    if method not in METHODS:
        raise DataError(f"binary outcome method must be one of {', '.join(METHODS)}; got {method!r}")
    if logit_vcov not in ("CR2", "CR1"):
        raise DataError(f"logit_vcov must be 'CR2' or 'CR1'; got {logit_vcov!r}")
    if method == "lpm" and not lpm_vcov.startswith("CR"):  # an HC or classical covariance clusters nothing
        clusters = None
    if absorb is not None and (method != "lpm" or clusters is not None):
        raise DataError("absorbed block indicators: the linear-probability model without clusters only")
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    names = list(names)
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(f"{label or 'binary outcome'}: values must be 0 or 1 (missing values removed first)")
    j = names.index(treatment)
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=float)
    if (w == 0).any():  # a row of weight 0 carries no information: out of the fit, n, G and ω (R's lm)
        keep = w != 0
        y, X, w = y[keep], X[keep], w[keep]
        clusters = None if clusters is None else np.asarray(clusters)[keep]
        absorb = None if absorb is None else np.asarray(absorb)[keep]
    t = X[:, j]
    pop = _estimand_rows(t, estimand)
    n_t, n_c = int((t == 1).sum()), int((t == 0).sum())
    for arm, n in (("PL", n_t), ("comparison", n_c)):
        share = y[t == (arm == "PL")]
        if n < 2:
            raise DesignError(f"{label or 'binary outcome'}: {n} {arm} row(s) of positive weight; the effect needs at "
                              "least 2 in each group")
        if share.min() == share.max():
            raise DesignError(f"{label or 'binary outcome'}: every {arm} student has the same value ({share[0]:g}); "
                              "the odds ratio (Cox index) is not defined")
    omega = float(hedges_omega(n_t + n_c))
    codes = None if clusters is None else pd.factorize(np.asarray(clusters))[0]
    n_cl = None if codes is None else int(codes.max()) + 1
    wp = w[pop] / w[pop].sum()
    kw = dict(n_treated=n_t, n_control=n_c, n_clusters=n_cl, label=label, level=level)
    if method == "lpm":
        vc = lpm_vcov if clusters is not None or not lpm_vcov.startswith("CR") else "HC" + lpm_vcov[2:]
        fit = ols(y, X, weights=w, clusters=clusters, vcov=vc, names=names,
                  absorb=absorb, cluster_df=cluster_df, df_working=df_working)
        b, se, df, _ = fit.coef(treatment)
        how = (f"linear-probability model (WLS on the 0/1 outcome{description}); "
               f"{fit.vcov_type}{convention_label(fit.vcov_type, cluster_df, 'transformed', weighted=False)}"
               f"{' (Satterthwaite df)' if fit.vcov_type == 'CR2' else ''}")
        crit, p = t_interval(b, se, df, level)
        if estimand == "ATT":  # the PL students' proportion observed; theirs without PL = it − Δ
            p_t = float(wp @ y[pop])
            p_c = p_t - b
            lo_c, hi_c = p_t - (b - crit * se), p_t - (b + crit * se)
            cox_lo, cox_hi = _cox(p_t, lo_c, omega), _cox(p_t, hi_c, omega)
            dcox = omega / COX_CONSTANT / (p_c * (1 - p_c))
        else:  # the comparison proportion observed; with PL = it + Δ
            c_rows = t == 0
            p_c = float(w[c_rows] @ y[c_rows] / w[c_rows].sum())
            p_t = p_c + b
            cox_lo, cox_hi = _cox(p_c + b - crit * se, p_c, omega), _cox(p_c + b + crit * se, p_c, omega)
            dcox = omega / COX_CONSTANT / (p_t * (1 - p_t))
        if not (0 < p_t < 1 and 0 < p_c < 1):
            raise DesignError(f"{label or 'binary outcome'}: the linear-probability model puts an adjusted proportion "
                              f"outside (0, 1) ({p_t:.3f}, {p_c:.3f}); use method='logit'")
        cox = float(_cox(p_t, p_c, omega))
        diff = Estimate.from_t(100 * b, 100 * se, df, method=how, scale="percentage points", **kw)
        cox_est = replace(Estimate.from_t(cox, abs(dcox) * se, df, method=how, scale="effect size", **kw),
                          ci_low=float(cox_lo), ci_high=float(cox_hi), pvalue=float(p))
        lor = float(special.logit(p_t) - special.logit(p_c))
        conditional = (math.nan, math.nan)
    else:
        b_all, V, df = _logit(y, X, w, codes, label, logit_vcov, cluster_df, df_working)
        conditional = (float(b_all[j]), float(math.sqrt(V[j, j])))
        X1, X0 = X.copy(), X.copy()
        X1[:, j], X0[:, j] = 1.0, 0.0
        m1, m0 = special.expit(X1[pop] @ b_all), special.expit(X0[pop] @ b_all)
        p_t, p_c = float(wp @ m1), float(wp @ m0)
        g1, g0 = wp @ ((m1 * (1 - m1))[:, None] * X1[pop]), wp @ ((m0 * (1 - m0))[:, None] * X0[pop])
        se_d = float(math.sqrt((g1 - g0) @ V @ (g1 - g0)))
        gc = omega / COX_CONSTANT * (g1 / (p_t * (1 - p_t)) - g0 / (p_c * (1 - p_c)))
        vc = {("CR2", True): "CR2 by school, Satterthwaite df", ("CR1", True): f"CR1 by school, t({cluster_df.replace('-', ' − ')})",
              ("CR2", False): "HC2, Bell–McCaffrey df", ("CR1", False): "HC1, t(n − k)"}[logit_vcov, codes is not None]
        how = (f"logistic regression (statsmodels GLM, Binomial{description}); {vc}; "
               "adjusted proportions = average predictions")
        diff = Estimate.from_t(100 * (p_t - p_c), 100 * se_d, df(g1 - g0), method=how, scale="percentage points", **kw)
        cox_est = Estimate.from_t(float(_cox(p_t, p_c, omega)), float(math.sqrt(gc @ V @ gc)), df(gc), method=how,
                                  scale="effect size", **kw)
        lor = float(special.logit(p_t) - special.logit(p_c))
    handbook = float(np.sqrt(cox_index_variance(p_t, p_c, n_t, n_c)))
    return BinaryEffect(diff, cox_est, p_t, p_c, lor, method, estimand, omega, handbook, *conditional)


def _logit(y, X, w, codes, label, vcov: str = "CR2", cluster_df: str = "G-1", df_working: str = "independent"):
    """Logistic regression by statsmodels GLM (Binomial, ``var_weights``): the coefficients, their
    covariance and the df of a contrast (a function of its gradient ``g``). ``"CR1"``: the
    sandwich ``c·H⁻¹(Σ_g s_g s_g')H⁻¹`` with ``H = X'diag(v)X``, ``v = wμ(1−μ)``,
    ``s_g = Σ_{i∈g} w_i(y_i − μ_i)x_i`` and ``c = G/(G−1)·(n−1)/(n−k)`` (Stata's and statsmodels'
    factor; every row its own cluster without ``codes``: HC1), on G − 1 df (n − k); with
    ``cluster_df="G-p"`` and clusters, ``c = G/(G−k)`` on G − k df. ``"CR2"``:
    :func:`pleval.inference.ols` of the Pearson residuals ``r̃ = w(y − μ)/√v`` on ``X̃ = √v·X``
    (``X̃'X̃ = H`` and ``X̃'r̃`` is the score, zero at the fit, so its residuals are ``r̃``) with
    CR2 by cluster (HC2 without) and its Satterthwaite df for the contrast."""
    from statsmodels.genmod.families import Binomial
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    from .inference import ols

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            b = np.asarray(GLM(y, X, family=Binomial(), var_weights=w).fit().params)
        except (PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
            raise DesignError(f"{label or 'binary outcome'}: the logistic regression cannot be fitted ({exc}); "
                              "use method='lpm'") from None
    n, k = X.shape
    mu = special.expit(X @ b)
    v = w * mu * (1 - mu)
    if vcov == "CR2":
        root = np.sqrt(v)
        with np.errstate(divide="ignore", invalid="ignore"):  # μ rounded to 0 or 1: the row adds nothing
            r = np.where(root > 0, w * (y - mu) / root, 0.0)
        fit = ols(r, root[:, None] * X, clusters=codes, vcov="CR2" if codes is not None else "HC2",
                  df_working=df_working if codes is not None else "independent")
        return b, fit.vcov, lambda g: fit.contrast(g)[2]
    codes = np.arange(n) if codes is None else codes
    G = int(codes.max()) + 1
    H_inv = np.linalg.inv(X.T @ (v[:, None] * X))
    U = (w * (y - mu))[:, None] * X
    S = np.column_stack([np.bincount(codes, weights=U[:, j], minlength=G) for j in range(k)])  # k columns
    if G < n and cluster_df == "G-p":
        if G <= k:
            raise DesignError(f"{label or 'binary outcome'}: cluster_df='G-p' needs more clusters ({G}) than "
                              f"coefficients ({k})")
        c, df = G / (G - k), float(G - k)
    else:
        c = G / (G - 1) * (n - 1) / (n - k)
        df = float(G - 1 if G < n else n - k)
    return b, c * H_inv @ (S.T @ S) @ H_inv, lambda g: df


__all__ = ["binary_effect", "BinaryEffect", "binary_values", "is_binary", "cox_index_variance", "METHODS",
           "NO_PERCENTILE"]
