"""Propensity-score weighting for the average effect on the treated (ATT) or in the population (ATE).

Treated units get weight 1 and comparison units the odds of treatment,

    w_i = 1                 if T_i = 1
    w_i = e(x_i)/(1 − e(x_i))  if T_i = 0,

which reweights the comparison group to the treated group's covariate distribution
(Hirano, Imbens & Ridder 2003; Morgan & Todd 2008). Options:

* ``trim = a``: drop units with ``e(x) < a`` or ``e(x) > 1 − a`` before weighting (Crump et
  al. 2009), counted as exclusions; this changes the estimand to the trimmed population.
* ``truncate = q``: cap comparison weights at their ``q``-quantile (e.g. 0.99; Lee, Lessler
  & Stuart 2011).
* ``stabilize = True`` (default): rescale comparison weights to sum to the number of treated
  units (the Hájek / normalized form); the effect estimate is unchanged by this scaling, the
  weights become interpretable as "comparison students per treated student".

For the ATE (``estimand="ATE"``, :func:`ipw_weights`) every unit gets the inverse probability
of its own group, ``1/e(x)`` for treated and ``1/(1 − e(x))`` for comparison units (Rosenbaum
& Rubin 1983; WeightIt's ``method = "glm"``); ``stabilize`` rescales each group's weights to sum
to the sample size, and ``truncate`` caps both groups' weights at their quantile.

**Exact-match cells.** With more than one cell (subject × grade by default, or ``exact=``),
the weights are normalized within each cell (:func:`within_cells`): for the ATT a cell's
comparison weights sum to its number of treated units, for the ATE each group's weights sum to
the cell's size. The propensity model does not hold the cells, so odds weights alone let a
cell's comparison weight differ from its PL count, and the grade indicators of the effect
regression then mix the grades' effects in proportions other than the PL students' (the ATT
of a sample with few grade-3 comparison schools moved by 8.1 points where +10 points for grade
8's half of the PL students moves it by 5). PL units of a cell without comparison units have no
comparison and are left unmatched; for the ATE a cell lacking either group is left out.

:func:`weight_summary` describes any weights as WeightIt's ``summary.weightit`` does, per
group: the range, the coefficient of variation ``sd(w)/mean(w)`` (sd with n − 1), the mean
absolute deviation of ``w/mean(w)`` from 1, the negative entropy ``mean(v log v)`` of
``v = w/mean(w)`` over positive weights, the number of zero weights, and Kish's effective sample
size ``(Σw)²/Σw²``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError, DesignError


@dataclass(frozen=True)
class Weights:
    weight: np.ndarray  # per row (NaN where dropped by trimming)
    keep: np.ndarray  # False for rows dropped by trimming
    n_trimmed_treated: int
    n_trimmed_control: int
    n_truncated: int
    ess_control: float  # Kish effective sample size of the weighted comparison group


def att_weights(ps, treated, *, trim: float | None = None, truncate: float | None = None, stabilize: bool = True) -> Weights:
    """ATT odds weights from propensity scores ``ps`` (see the module docstring)."""
    ps = np.asarray(ps, dtype=float)
    t1 = np.asarray(treated).astype(bool)
    if trim is not None and not 0.0 <= trim < 0.5:
        raise DataError(f"trim must lie in [0, 0.5); got {trim!r}")
    if truncate is not None and not 0.5 < truncate <= 1.0:
        raise DataError(f"truncate must be a quantile in (0.5, 1]; got {truncate!r}")
    keep = np.ones(len(ps), dtype=bool)
    if trim:
        keep = (ps >= trim) & (ps <= 1.0 - trim)
    if not (keep & t1).any() or not (keep & ~t1).any():
        raise DesignError("no treated or no comparison units remain after trimming the propensity score")
    w = np.where(t1, 1.0, ps / (1.0 - ps))
    w[~keep] = np.nan
    c = keep & ~t1
    n_trunc = 0
    if truncate is not None and truncate < 1.0:
        cap = np.quantile(w[c], truncate)
        n_trunc = int((w[c] > cap).sum())
        w[c] = np.minimum(w[c], cap)
    if stabilize:
        w[c] *= (keep & t1).sum() / w[c].sum()
    ess = float(w[c].sum() ** 2 / (w[c] ** 2).sum())
    return Weights(w, keep, int((t1 & ~keep).sum()), int((~t1 & ~keep).sum()), n_trunc, ess)


def ipw_weights(ps, treated, *, estimand: str = "ATT", trim: float | None = None, truncate: float | None = None,
                stabilize: bool = True) -> Weights:
    """Inverse-probability weights for the ``estimand`` (module docstring); ``ess_control`` is
    the comparison group's Kish ESS."""
    if estimand == "ATT":
        return att_weights(ps, treated, trim=trim, truncate=truncate, stabilize=stabilize)
    if estimand != "ATE":
        raise DataError(f"estimand must be 'ATT' or 'ATE'; got {estimand!r}")
    ps = np.asarray(ps, dtype=float)
    t1 = np.asarray(treated).astype(bool)
    if trim is not None and not 0.0 <= trim < 0.5:
        raise DataError(f"trim must lie in [0, 0.5); got {trim!r}")
    if truncate is not None and not 0.5 < truncate <= 1.0:
        raise DataError(f"truncate must be a quantile in (0.5, 1]; got {truncate!r}")
    keep = (ps >= trim) & (ps <= 1.0 - trim) if trim else np.ones(len(ps), bool)
    if not (keep & t1).any() or not (keep & ~t1).any():
        raise DesignError("no treated or no comparison units remain after trimming the propensity score")
    w = np.where(t1, 1.0 / ps, 1.0 / (1.0 - ps))
    w[~keep] = np.nan
    n_trunc = 0
    for g in (keep & t1, keep & ~t1):
        if truncate is not None and truncate < 1.0:
            cap = np.quantile(w[g], truncate)
            n_trunc += int((w[g] > cap).sum())
            w[g] = np.minimum(w[g], cap)
        if stabilize:
            w[g] *= keep.sum() / w[g].sum()
    c = keep & ~t1
    ess = float(w[c].sum() ** 2 / (w[c] ** 2).sum())
    return Weights(w, keep, int((t1 & ~keep).sum()), int((~t1 & ~keep).sum()), n_trunc, ess)


def within_cells(weight, treated, cells, estimand: str = "ATT", analysis=None) -> np.ndarray:
    """``weight`` normalized within each exact-match cell (module docstring): ATT, a cell's
    comparison weights scaled to sum to its treated weights; ATE, each group's weights scaled to
    sum to the cell's row count. Rows of a cell lacking a group the estimand needs get weight 0
    (ATT: the comparison rows of a cell without treated rows, the treated rows of a cell without
    comparison rows; ATE: every row of a cell lacking either group).

    ``analysis``: the rows' analysis weights ``a``, multiplied in before the normalization, so
    that (ATT) a cell's comparison weights sum to its treated rows' ``Σa`` and (ATE) each
    group's to the cell's ``Σa`` (a row count when every ``a`` is 1)."""
    w = np.asarray(weight, dtype=float)
    if analysis is not None:
        w = w * np.asarray(analysis, dtype=float)
    t = np.asarray(treated).astype(bool)
    codes = pd.factorize(np.asarray(cells))[0]
    G = int(codes.max(initial=-1)) + 1
    s_t = np.bincount(codes[t], weights=w[t], minlength=G)
    s_c = np.bincount(codes[~t], weights=w[~t], minlength=G)
    both = (s_t > 0) & (s_c > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimand == "ATT":
            scale_t, scale_c = np.where(both, 1.0, 0.0), np.where(both, s_t / s_c, 0.0)
        else:
            n = np.bincount(codes, weights=None if analysis is None else np.asarray(analysis, float), minlength=G)
            scale_t, scale_c = np.where(both, n / s_t, 0.0), np.where(both, n / s_c, 0.0)
    return w * np.where(t, scale_t[codes], scale_c[codes])


def weight_summary(weight, treated) -> pd.DataFrame:
    """WeightIt's weight statistics per group (module docstring), one row per group."""
    w = np.asarray(weight, float)
    t1 = np.asarray(treated).astype(bool)
    rows = []
    for name, g in (("treated", t1), ("comparison", ~t1)):
        x = w[g]
        m = x.mean()
        v = x[x > 0] / x[x > 0].mean()
        rows.append({"group": name, "n": int(g.sum()), "ess": float(x.sum() ** 2 / (x**2).sum()),
                     "min": float(x.min()), "max": float(x.max()),
                     "coef_of_var": float(x.std(ddof=1) / m) if len(x) > 1 else 0.0,
                     "mad": float(np.mean(np.abs(x / m - 1.0))), "entropy": float(np.mean(v * np.log(v))),
                     "n_zero": int((np.abs(x) < 1e-10).sum())})
    return pd.DataFrame(rows)
