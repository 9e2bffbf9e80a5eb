"""After a study: the minimum detectable effect of the analysis that was actually run.

For an estimate with standard error SE tested (two-sided) at level α on t(df) (normal when
df is infinite), the effect it detects with power 1 − β is ``MDES = M(df)·SE`` with the
exact non-central-t multiplier M of :mod:`pleval.power.tdist` (Bloom 1995 for the idea of
reporting it; with an infinite df, M = z₁₋α/₂ + z₁₋β up to the far tail). pleval reports it at
80% power and the run's α, on the raw and effect-size scales, and in percentile points as
``Δ(MDES; p)``. It describes the *design and analysis*, not the estimate: a non-significant
result from an analysis with a large MDES says that moderate effects could have been missed,
not that there was no effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..percentiles import _ordinal, to_percentile_points
from .tdist import mdes_from_se

POWER = 0.80
"""Power at which pleval reports the MDES of an analysis."""


def add_overall_mdes(overall: pd.DataFrame, alpha: float, power: float = POWER) -> pd.DataFrame:
    """The overall table with column ``mdes`` on each scale: ``M(df)·se`` on the raw and
    effect-size rows, the effect-size MDES in percentile points on the percentile rows."""
    if not len(overall):
        return overall
    out = overall.copy()
    m = mdes_from_se(out["se"].to_numpy(dtype=float), out["df"].to_numpy(dtype=float), alpha, power)
    es = out["scale"] == "effect size"
    keys = ["subject", "analysis"]
    es_mdes = pd.Series(m[es.to_numpy()], index=pd.MultiIndex.from_frame(out.loc[es, keys]))
    pp = (out["scale"] == "percentile points").to_numpy()
    idx = pd.MultiIndex.from_frame(out.loc[pp, keys])
    base = out.loc[pp, "baseline_percentile"].to_numpy(dtype=float)
    vals = es_mdes.reindex(idx).to_numpy(dtype=float)
    ok = np.isfinite(vals)
    conv = np.full(vals.shape, np.nan)
    conv[ok] = to_percentile_points(vals[ok], base[ok])
    m[pp] = conv
    out["mdes"] = m
    return out


def add_school_mdes(schools: pd.DataFrame, alpha: float, baseline_percentile: float,
                    power: float = POWER) -> pd.DataFrame:
    """The school table with each school's ``mdes_sd`` (from ``es_se`` and ``df``) and ``mdes_pp``."""
    if not len(schools) or "es_se" not in schools:
        return schools
    out = schools.copy()
    m = mdes_from_se(out["es_se"].to_numpy(dtype=float), out["df"].to_numpy(dtype=float), alpha, power)
    ok = np.isfinite(m)
    pp = np.full(m.shape, np.nan)
    pp[ok] = to_percentile_points(m[ok], baseline_percentile)
    out["mdes_sd"], out["mdes_pp"] = m, pp
    return out


def add_heterogeneity_mdes(het: pd.DataFrame, schools: pd.DataFrame) -> pd.DataFrame:
    """The heterogeneity table with ``school_mdes_median``: the median single-school MDES (SD)."""
    if not len(het) or "mdes_sd" not in schools:
        return het
    med = schools.groupby("subject")["mdes_sd"].median()
    return het.assign(school_mdes_median=het["subject"].map(med).to_numpy(dtype=float))


def detectable_sentence(pvalue: float, alpha: float, mdes_sd: float, baseline_percentile: float,
                        power: float = POWER) -> str:
    """What a non-significant result could and could not have detected ("" when p < α)."""
    if not (np.isfinite(pvalue) and pvalue >= alpha and np.isfinite(mdes_sd)):
        return ""
    pts = float(to_percentile_points(mdes_sd, baseline_percentile))
    return (
        f"Not significant at α = {alpha:g}: this analysis would detect a true effect of {mdes_sd:.3f} SD "
        f"({pts:+.1f} percentile points from the {_ordinal(baseline_percentile, exact=True)}) or larger with {power:.0%} "
        "power; smaller effects could have been missed, so the result does not show that the program had no effect."
    )


__all__ = ["add_overall_mdes", "add_school_mdes", "add_heterogeneity_mdes", "detectable_sentence", "POWER"]
