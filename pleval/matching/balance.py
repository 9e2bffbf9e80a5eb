"""Covariate balance before and after matching or weighting.

For each covariate (each level of a categorical one) and each pretest:

* weighted means ``x̄_g = Σ w x / Σ w`` in the treated (g = t) and comparison (g = c) groups;
* weighted variances ``s²_g = Σ w (x − x̄_g)² / (Σ w − Σ w² / Σ w)`` (the unbiased
  "reliability weights" form; unweighted it is the usual n − 1 variance);
* standardized mean difference ``SMD = (x̄_t − x̄_c) / s``, ``s`` taken from the sample
  *before* matching for both columns so that before and after differ only through the means
  (Stuart 2010; Austin 2009): by default ``s = sqrt((s²_t + s²_c)/2)``; with
  ``smd="treated"`` (cobalt's and MatchIt's ATT default) the treated group's SD, for a binary
  variable ``sqrt(p_t(1 − p_t))``; with ``smd="pooled_p"`` (MatchIt's and cobalt's ATE
  default) the pooled SD, for a binary variable ``sqrt((p_t(1 − p_t) + p_c(1 − p_c))/2)``;
  |SMD| < 0.1 is the usual rule of thumb;
* variance ratio ``VR = s²_t / s²_c`` (continuous variables; 1 is ideal, outside 0.5–2 is
  poor; Rubin 2001);
* eCDF statistics: with ``F_t``, ``F_c`` the weighted empirical CDFs, the mean and the maximum
  (the Kolmogorov–Smirnov statistic) of ``|F_t(x) − F_c(x)|`` over the distinct values ``x``
  of the sample before matching (the same grid before and after); for a binary variable both
  are ``|p_t − p_c|`` (as MatchIt's ``summary``);
* flags: ``imbalanced`` when |SMD after| > ``threshold`` (0.1), ``worse`` when |SMD| grew
  with matching and now exceeds ``threshold/2`` (so changes in the third decimal are not
  flagged).

Baseline equivalence (WWC Standards Handbook v4.1, §II.D) is judged on the pretest in the
matched sample, per outcome (per subject when the data have one): Hedges' g with the WWC
small-sample factor, ``g = ω (x̄_t − x̄_c) / s_pooled``, ``ω = 1 − 3/(4N − 9)``, group sizes
the Kish effective sizes ``(Σw)²/Σw²``; the verdict bands come from
:func:`pleval.standards.baseline_equivalence`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import ResultMixin
from ..effect_sizes import hedges_g
from ..errors import DataError
from ..standards import baseline_equivalence
from ._design import codes_and_levels, is_categorical


def weighted_mean_var(x: np.ndarray, w: np.ndarray, w2: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted mean and unbiased reliability-weighted variance (as ``numpy.cov(aweights=)``);
    ``w2``: each row's sum of squared weights when a row stands for several copies (default ``w²``)."""
    m, v = weighted_moments(np.asarray(x, dtype=float)[:, None], w, w2)
    return float(m[0]), float(v[0])


def weighted_moments(X: np.ndarray, w: np.ndarray, w2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`weighted_mean_var` of every column of ``X`` at once (one matrix product each)."""
    sw = w.sum()
    if sw <= 0:
        return np.full(X.shape[1], np.nan), np.full(X.shape[1], np.nan)
    m = (w @ X) / sw
    denom = sw - (w2.sum() if w2 is not None else np.dot(w, w)) / sw
    v = (w @ (X - m) ** 2) / denom if denom > 0 else np.full(X.shape[1], np.nan)
    return m, v


def _indicator_columns(df: pd.DataFrame, variables, categorical=()):
    """(names, values as an n×p matrix, is_binary per column); categorical variables give one
    0/1 column per level."""
    names, cols, binary = [], [], []
    for c in variables:
        s = df[c]
        if c in categorical or is_categorical(s):
            codes, levels = codes_and_levels(s)
            for j, lev in enumerate(levels):
                names.append(f"{c}[{lev}]")
                cols.append(codes == j)
                binary.append(True)
        else:
            x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            names.append(c)
            cols.append(x)
            binary.append(bool(np.isin(x[np.isfinite(x)], (0.0, 1.0)).all()))
    X = np.empty((len(df), len(cols)))
    for j, col in enumerate(cols):
        X[:, j] = col
    return names, X, np.array(binary, dtype=bool)


def _ecdf(x: np.ndarray, w: np.ndarray, grid: np.ndarray) -> np.ndarray:
    o = np.argsort(x, kind="stable")
    cw = np.cumsum(w[o]) / w.sum()
    i = np.searchsorted(x[o], grid, side="right")
    return np.where(i > 0, cw[np.maximum(i - 1, 0)], 0.0)


def ecdf_stats(x: np.ndarray, t: np.ndarray, w: np.ndarray, binary: bool, grid: np.ndarray) -> tuple[float, float]:
    """Mean and maximum of ``|F_t − F_c|`` (weighted eCDFs) over ``grid`` (the distinct values
    of the sample before matching, before and after alike, as MatchIt's ``summary``)."""
    wt, wc = w[t].sum(), w[~t].sum()
    if not (wt > 0 and wc > 0):
        return np.nan, np.nan
    if binary:
        d = abs(np.dot(w[t], x[t]) / wt - np.dot(w[~t], x[~t]) / wc)
        return d, d
    e = np.abs(_ecdf(x[t], w[t], grid) - _ecdf(x[~t], w[~t], grid))
    return float(e.mean()), float(e.max())


SMD_DENOMINATORS = ("pooled", "treated", "pooled_p")


def balance_table(before: pd.DataFrame, after: pd.DataFrame, treatment: str, variables, *, weight: str = "_weight",
                  categorical=(), smd: str = "pooled", threshold: float = 0.1, weight2: str | None = None) -> pd.DataFrame:
    """SMDs, variance ratios and eCDF statistics before (unweighted ``before`` rows) and after
    (``after`` rows weighted by ``weight``), with the flags; one row per variable or
    categorical level. ``weight2``: a column with each ``after`` row's sum of squared weights,
    when a row stands for several weighted copies (a comparison student reused by several
    matched sets, merged: the same means, variances and eCDFs)."""
    tb = before[treatment].to_numpy().astype(bool)
    ta = after[treatment].to_numpy().astype(bool)
    wa = after[weight].to_numpy(dtype=float)
    wa2 = None if weight2 is None else after[weight2].to_numpy(dtype=float)
    names, Xb, binary = _indicator_columns(before, variables, categorical)
    names_a, Xa_own, _ = _indicator_columns(after, variables, categorical)
    pos = {n: j for j, n in enumerate(names_a)}
    Xa = np.column_stack([Xa_own[:, pos[n]] if n in pos else np.zeros(len(after)) for n in names]) if names \
        else np.empty((len(after), 0))
    ones = np.ones(len(before))
    mt0, vt0 = weighted_moments(Xb[tb], ones[tb])
    mc0, vc0 = weighted_moments(Xb[~tb], ones[~tb])
    if smd == "treated":
        var0 = np.where(binary, mt0 * (1.0 - mt0), vt0)
    elif smd == "pooled_p":  # MatchIt / cobalt for the ATE: p(1 − p) for binaries
        var0 = np.where(binary, (mt0 * (1.0 - mt0) + mc0 * (1.0 - mc0)) / 2.0, (vt0 + vc0) / 2.0)
    else:
        var0 = (vt0 + vc0) / 2.0
    sd0 = np.sqrt(var0)
    mt1, vt1 = weighted_moments(Xa[ta], wa[ta], None if wa2 is None else wa2[ta])
    mc1, vc1 = weighted_moments(Xa[~ta], wa[~ta], None if wa2 is None else wa2[~ta])
    grids = [None if binary[j] else np.unique(Xb[:, j]) for j in range(len(names))]
    e0 = np.array([ecdf_stats(Xb[:, j], tb, ones, binary[j], grids[j]) for j in range(len(names))]).reshape(-1, 2)
    e1 = np.array([ecdf_stats(Xa[:, j], ta, wa, binary[j], grids[j]) for j in range(len(names))]).reshape(-1, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame({
            "variable": names,
            "binary": binary,
            "mean_treated_before": mt0,
            "mean_comparison_before": mc0,
            "smd_before": np.where(sd0 > 0, (mt0 - mc0) / sd0, np.nan),
            "var_ratio_before": np.where(binary, np.nan, vt0 / vc0),
            "mean_treated_after": mt1,
            "mean_comparison_after": mc1,
            "smd_after": np.where(sd0 > 0, (mt1 - mc1) / sd0, np.nan),
            "var_ratio_after": np.where(binary, np.nan, vt1 / vc1),
            "ecdf_mean_before": e0[:, 0],
            "ecdf_max_before": e0[:, 1],
            "ecdf_mean_after": e1[:, 0],
            "ecdf_max_after": e1[:, 1],
        })
    b, a = out["smd_before"].abs(), out["smd_after"].abs()
    out["imbalanced"] = a > threshold
    out["worse"] = (a > b) & (a > threshold / 2)
    return out


def pretest_equivalence(after: pd.DataFrame, treatment: str, pretest: str, *, weight: str = "_weight",
                        weight2: str | None = None) -> dict:
    """Hedges g of the pretest in the matched sample and the WWC verdicts (``weight2`` as in
    :func:`balance_table`)."""
    t = after[treatment].to_numpy().astype(bool)
    w = after[weight].to_numpy(dtype=float)
    w2 = w**2 if weight2 is None else after[weight2].to_numpy(dtype=float)
    x = after[pretest].to_numpy(dtype=float)
    mt, vt = weighted_mean_var(x[t], w[t], w2[t])
    mc, vc = weighted_mean_var(x[~t], w[~t], w2[~t])
    nt = w[t].sum() ** 2 / w2[t].sum()
    nc = w[~t].sum() ** 2 / w2[~t].sum()
    g = float(hedges_g(mt, mc, np.sqrt(vt), np.sqrt(vc), nt, nc))
    return {
        "pretest": pretest,
        "mean_treated": mt,
        "mean_comparison": mc,
        "hedges_g": g,
        "n_eff_treated": nt,
        "n_eff_comparison": nc,
        "wwc_baseline_equivalence": baseline_equivalence(g),
        "wwc_with_pretest_in_model": baseline_equivalence(g, adjusted=True),
    }


@dataclass(frozen=True, repr=False)
class Balance(ResultMixin):
    """Balance table (``table``; per subject when ``by`` is set) and the WWC baseline
    equivalence of the pretest per outcome (``equivalence``)."""

    table: pd.DataFrame
    equivalence: pd.DataFrame
    threshold: float = 0.1

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def summary(self) -> str:
        t = self.table
        lines = ["Balance (SMD = standardized mean difference; VR = variance ratio; eCDF max = KS statistic)"]
        shown = t.copy()
        shown["flag"] = np.where(t["imbalanced"], "|SMD|>" + f"{self.threshold:g}", "") + np.where(
            t["worse"], np.where(t["imbalanced"], ", worse", "worse"), "")
        cols = [c for c in ("group", "variable", "smd_before", "smd_after", "var_ratio_before", "var_ratio_after",
                            "ecdf_mean_after", "ecdf_max_after", "flag") if c in shown]
        lines.append(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
        name = (t["group"].astype(str) + ": " if "group" in t else "") + t["variable"].astype(str)
        bad = t["imbalanced"].to_numpy(dtype=bool)
        lines.append(
            f"{int(bad.sum())} of {len(t)} rows have |SMD| > {self.threshold} after matching"
            + (": " + ", ".join(name[bad].head(8)) if bad.any() else "")
        )
        worse = t["worse"].to_numpy(dtype=bool)
        if worse.any():
            lines.append(
                f"{int(worse.sum())} got worse with matching (|SMD| grew, now above {self.threshold / 2:g}): "
                + ", ".join(f"{n} {b:+.3f} -> {a:+.3f}" for n, b, a in
                            zip(name[worse].head(8), t["smd_before"][worse], t["smd_after"][worse]))
            )
        if len(self.equivalence):
            lines.append("WWC baseline equivalence on the pretest (matched sample):")
        for r in self.equivalence.itertuples():
            grp = f"{r.group}: " if hasattr(r, "group") else ""
            lines.append(
                f"  {grp}{r.pretest} g = {r.hedges_g:+.3f} -> {r.wwc_baseline_equivalence}"
                f" (with the pretest in the impact model: {r.wwc_with_pretest_in_model})"
            )
        return "\n".join(lines)


def balance(before: pd.DataFrame, after: pd.DataFrame, treatment: str, variables, pretest: str | None, *,
            by: str | None = None, weight: str = "_weight", categorical=(), threshold: float = 0.1,
            smd: str = "pooled", weight2: str | None = None) -> Balance:
    """Balance of ``variables`` before/after and WWC equivalence of ``pretest``, overall and,
    with ``by`` (e.g. the subject column), within each group. ``smd``: "pooled" (default),
    "treated" (cobalt's ATT standardization) or "pooled_p" (cobalt's ATE one) SMD denominator;
    ``weight2``: see :func:`balance_table`."""
    if smd not in SMD_DENOMINATORS:
        raise DataError(f"smd must be one of {SMD_DENOMINATORS}; got {smd!r}")
    groups = [("all", before, after)]
    if by is not None:
        groups += [(str(g), before[before[by] == g], after[after[by] == g]) for g in pd.unique(before[by])]
    tabs, eqs = [], []
    for name, b, a in groups:
        if not len(a) or a[treatment].nunique() < 2:
            continue
        tab = balance_table(b, a, treatment, variables, weight=weight, categorical=categorical, smd=smd,
                            threshold=threshold, weight2=weight2)
        tab.insert(0, "group", name)
        tabs.append(tab)
        if pretest is not None:
            eqs.append({"group": name, **pretest_equivalence(a, treatment, pretest, weight=weight, weight2=weight2)})
    eq_cols = ["group", "pretest", "mean_treated", "mean_comparison", "hedges_g", "n_eff_treated", "n_eff_comparison",
               "wwc_baseline_equivalence", "wwc_with_pretest_in_model"]  # empty without a pretest
    return Balance(pd.concat(tabs, ignore_index=True), pd.DataFrame(eqs, columns=eq_cols), threshold)
