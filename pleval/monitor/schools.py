"""School trajectories over time, and the schools whose trajectory diverges from the pooled
trend, with the honesty rules of school-level inference (``docs/heterogeneity.md``): raw and
shrunken estimates side by side,
the spread of comparison schools analysed as if PL (placebo schools) as the yardstick, and
multiplicity-adjusted verdicts.

Per subject, a counterfactual model is fitted on the matched **comparison** rows only
(period × grade intercepts, a pretest slope per period and the ``covariates`` passed — none
from :func:`pleval.monitor.monitor`, as docs/monitor.md says; weighted by the matching
weights). Every row's residual ``r_it = y_it − ŷ_it`` is its gain over the prediction; a
school's effect in period ``t`` is the mean residual of its students, with SE ``s_jt/√n_jt``
(the residual SD within the school and period). Comparison schools get the same numbers:
their *placebo* trajectories show how much school trajectories wander without the program.

A school's trajectory slope is the weighted least-squares slope of its period effects on the
time values over the program periods (weights ``1/SE²``): per year when they are numbers, as
the pooled trend, per period for terms; SE ``√(Σw / (Σw·Σwx² − (Σwx)²))``.
Treating a school's periods as independent ignores that its students recur across periods;
that correlation is positive and a slope is a contrast, so the SE is, if anything, too large.
Then: the random-effects meta-analysis of PL slopes (τ² of trajectories, REML) and of
placebo slopes (τ²_placebo); empirical-Bayes shrunken slopes; and for each PL school the test
of ``slope_j = pooled trend`` with ``z = (slope_j − trend)/√(SE_j² + τ²_placebo)``. Its p-value
integrates out the uncertainty of τ²_placebo, estimated from a few placebo slopes, as the
school-effects calibration does (:func:`pleval.heterogeneity.calibration.calibrated_tests`: the
mixture over τ²_placebo's confidence distribution from Hedges' unweighted Q of the placebo
slopes of ``N(0, SE_j² + τ²)``); the p-values are adjusted across schools by Benjamini–Hochberg.
A school *diverges* when the adjusted p-value is below ``alpha``: its trajectory departs from
the pooled trend by more than its sampling error plus the wandering seen among comparison
schools. With τ̂²_placebo plugged in as known and a normal reference (before 2026-12-05), panels
where no school diverges flagged one in 6.45% (30 schools, 20 placebo) and 11.0% (12 schools, 6
placebo) at α = 0.05: where τ̂²_placebo fell short, every school's z was too large at once; now
2.75% and 1.3% (docs/monitor.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import Frame, ResultMixin
from ..errors import DesignError
from ..findings import p_clause
from ..heterogeneity import empirical_bayes, meta_analysis
from ..heterogeneity._predictive import placebo_nodes
from ..heterogeneity.calibration import calibrated_tests
from ..inference import adjust_pvalues, ols


@dataclass(frozen=True, repr=False)
class SchoolTrajectories(ResultMixin):
    """Per-school effects by period (``school_years``) and trajectory slopes (``slopes``) of
    one subject, in outcome points; ``sd`` converts to SD units. ``pooled_trend`` is the
    trend of the pooled effect, the slopes' too, per ``per`` (the time column: per year, or per
    period for terms); ``tau2``/``tau2_placebo`` the variance of true PL and placebo slopes."""

    subject: str
    school_years: pd.DataFrame = Frame()
    slopes: pd.DataFrame = Frame()
    pooled_trend: float
    tau2: float
    tau2_placebo: float
    sd: float
    alpha: float
    per: str = "period"

    @property
    def n_diverging(self) -> int:
        return int(self.slopes["diverges"].sum())

    def to_frame(self) -> pd.DataFrame:
        return self.slopes.copy()

    def summary(self) -> str:
        pl = self.slopes[self.slopes["kind"] == "PL"]
        lines = [f"[{self.subject}] school trajectories: {len(pl)} PL schools; pooled trend "
                 f"{self.pooled_trend / self.sd:+.4f} SD per {self.per}; SD of true PL slopes "
                 f"{np.sqrt(self.tau2) / self.sd:.4f} SD, of placebo slopes {np.sqrt(self.tau2_placebo) / self.sd:.4f} SD",
                 f"  schools diverging from the pooled trend (BH, alpha {self.alpha:g}, beyond the placebo spread): "
                 f"{self.n_diverging}"]
        for r in pl[pl["diverges"]].itertuples(index=False):
            lines.append(f"    {r.school}: slope {r.slope / self.sd:+.3f} SD per {self.per} (shrunk "
                         f"{r.slope_shrunk / self.sd:+.3f}; adjusted {p_clause(r.p_adjusted, self.alpha)})")
        return "\n".join(lines)


def _slopes(sy: pd.DataFrame, x: pd.Series) -> pd.DataFrame:
    w = 1.0 / sy["se"] ** 2
    y = sy["estimate"]
    g = pd.DataFrame({"w": w, "wx": w * x, "wy": w * y, "wxx": w * x * x, "wxy": w * x * y,
                      "school": sy["school"], "kind": sy["kind"]}).groupby(["school", "kind"], sort=True).sum()
    det = g["w"] * g["wxx"] - g["wx"] ** 2
    out = pd.DataFrame({"slope": (g["w"] * g["wxy"] - g["wx"] * g["wy"]) / det, "se": np.sqrt(g["w"] / det)})
    n = sy.groupby(["school", "kind"], sort=True).size().rename("n_periods")
    return out.join(n).reset_index()


def _pvalues(d: np.ndarray, se: np.ndarray, pb: pd.DataFrame, tau2_p: float) -> np.ndarray:
    """Two-sided p-values of the slopes' differences ``d`` from the pooled trend, SEs ``se``,
    against the placebo slopes ``pb``' spread with its uncertainty integrated out (module
    docstring); with fewer than two placebo slopes, the normal reference of ``d/se`` (no spread)."""
    if len(pb) < 2:
        return 2 * stats.norm.sf(np.abs(d / se))
    nodes, weights = placebo_nodes(pb["slope"].to_numpy(), np.diag(pb["se"].to_numpy() ** 2))
    return calibrated_tests(d, se ** 2, np.full(len(d), np.inf), nodes, tau2_p, weights=weights)["p_calibrated"]


def school_trajectories(ds: pd.DataFrame, *, outcome: str, treatment: str, grade: str | None, covariates: pd.DataFrame,
                        pooled_trend: float, program_periods, sd: float, subject: str, alpha: float = 0.05,
                        min_students: int = 5, per: str = "period") -> SchoolTrajectories:
    """School trajectories of one subject from the matched rows ``ds`` of
    :func:`pleval.monitor.effects_over_time` (columns ``_t``, ``_pre``, ``_w``, ``_cluster``);
    see the module docstring. School-periods with fewer than ``min_students`` students are left
    out of the slopes (and marked). ``per`` names the slopes' unit (the time column)."""
    cells = ds["_t"].astype(str) + ("|" + ds[grade].astype(str) if grade else "")
    informed = cells.isin(set(cells[ds[treatment] == 0])).to_numpy()  # PL rows of cells without comparisons: no residual
    if not informed.all():
        ds, cells, covariates = ds[informed], cells[informed], covariates[informed]
    fe = pd.get_dummies(cells, prefix="cell", dtype=float)
    periods = pd.get_dummies(ds["_t"].astype(str), prefix="pre", dtype=float)
    X = pd.concat([fe, periods.mul(ds["_pre"] - ds["_pre"].mean(), axis=0), covariates], axis=1)
    comp = (ds[treatment] == 0).to_numpy()
    Xc = X[comp]
    X = X.loc[:, Xc.std().gt(0) | X.columns.str.startswith("cell_")]
    fit = ols(ds.loc[comp, outcome].to_numpy(float), X[comp].to_numpy(float), weights=ds.loc[comp, "_w"].to_numpy(float),
              vcov="HC0")
    r = ds[outcome].to_numpy(float) - X.to_numpy(float) @ fit.params
    kind = np.where(ds[treatment] == 1, "PL", "placebo")
    frame = pd.DataFrame({"school": ds["_cluster"].to_numpy(), "kind": kind, "time": ds["_t"].to_numpy(), "r": r})
    sy = frame.groupby(["school", "kind", "time"], sort=True)["r"].agg(["mean", "std", "size"]).reset_index()
    sy = sy.rename(columns={"mean": "estimate", "size": "n_students"})
    sy["se"] = sy["std"] / np.sqrt(sy["n_students"])
    sy = sy.drop(columns="std")
    order = {t: i for i, t in enumerate(program_periods)}
    sy["program"] = sy["time"].isin(order)
    sy["used"] = sy["program"] & (sy["n_students"] >= min_students) & (sy["se"] > 0)
    sy["period_index"] = sy["time"].map(order)
    used = sy[sy["used"]]
    # per year from the first program year when the periods are numbers (as the pooled trend), else per period
    sl = _slopes(used, used["time"] - program_periods[0] if pd.api.types.is_numeric_dtype(used["time"])
                 else used["period_index"])
    sl = sl[(sl["n_periods"] >= 2) & np.isfinite(sl["se"]) & (sl["se"] > 0)]
    pl, pb = sl[sl["kind"] == "PL"], sl[sl["kind"] == "placebo"]
    if len(pl) < 2:
        raise DesignError(f"[{subject}] school trajectories need at least two PL schools with two program periods")
    meta = meta_analysis(pl["slope"], pl["se"], method="REML")
    tau2_p = meta_analysis(pb["slope"], pb["se"], method="REML").tau2 if len(pb) >= 2 else 0.0
    shr = empirical_bayes(pl["slope"], pl["se"], meta)
    z = (sl["slope"] - pooled_trend) / np.sqrt(sl["se"] ** 2 + tau2_p)
    sl = sl.assign(z=z, pvalue=_pvalues(sl["slope"].to_numpy() - pooled_trend, sl["se"].to_numpy(), pb, tau2_p))
    sl["slope_shrunk"] = np.nan
    sl.loc[sl["kind"] == "PL", "slope_shrunk"] = shr.shrunk
    sl["p_adjusted"] = np.nan
    sl.loc[sl["kind"] == "PL", "p_adjusted"] = adjust_pvalues(sl.loc[sl["kind"] == "PL", "pvalue"].to_numpy(), "bh")
    sl["diverges"] = (sl["kind"] == "PL") & (sl["p_adjusted"] < alpha)
    sl["direction"] = np.where(sl["diverges"], np.where(sl["slope"] > pooled_trend, "faster", "slower"), "")
    for col in ("slope", "se", "slope_shrunk"):
        sl[f"{col}_es"] = sl[col] / sd
    sy["es"], sy["es_se"] = sy["estimate"] / sd, sy["se"] / sd
    return SchoolTrajectories(subject, sy, sl.reset_index(drop=True), float(pooled_trend), float(meta.tau2),
                              float(tau2_p), float(sd), alpha, per)


__all__ = ["school_trajectories", "SchoolTrajectories"]
