"""Figures for monitoring over time: the event-study plot (pre-period estimates as a check of
parallel trends, then effects by years since adoption) and effects by year with CIs.

Each function takes a plain DataFrame with documented columns and returns a matplotlib
``Figure`` (built without ``pyplot``, as :mod:`pleval.plots` does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plots import AFTER, BEFORE, NEUTRAL, _figure, _require


def event_study_plot(table: pd.DataFrame, *, level: float = 0.95, title: str | None = None,
                     ylabel: str = "effect (outcome units)"):
    """Estimates by event time (``event_time``, ``estimate``, ``ci_low``, ``ci_high``): grey
    before adoption (placebo periods; should straddle zero under parallel trends), blue from
    the adoption period on."""
    _require(table, ["event_time", "estimate", "ci_low", "ci_high"], "event-study table")
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    e = table["event_time"].to_numpy(float)
    for mask, colour, label in ((e < 0, BEFORE, "before adoption (pre-trend check)"), (e >= 0, AFTER, "after adoption")):
        if mask.any():
            d = table[mask]
            ax.errorbar(d["event_time"], d["estimate"], yerr=[d["estimate"] - d["ci_low"], d["ci_high"] - d["estimate"]],
                        fmt="o", color=colour, capsize=3, label=label)
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.axvline(-0.5, color=NEUTRAL, lw=0.8, ls=":")
    ax.set_xticks(np.unique(e))
    ax.set_xlabel("periods since adoption")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Event study with {level:.0%} pointwise CIs")
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def effects_over_time_plot(table: pd.DataFrame, *, key: str = "time", level: float = 0.95,
                           xlabel: str = "year", title: str | None = None):
    """Effects (``es``, ``es_ci_low``, ``es_ci_high`` in SD units) against ``key``, one line per
    ``subject``; periods before adoption (``program`` false) in grey."""
    _require(table, ["subject", key, "es", "es_ci_low", "es_ci_high"], "effects-over-time table")
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    subjects = list(dict.fromkeys(table["subject"]))
    width = 0.08 * (len(subjects) - 1)
    keys = list(dict.fromkeys(table[key]))
    pos = {k: i for i, k in enumerate(keys)}
    for j, s in enumerate(subjects):
        d = table[table["subject"] == s]
        x = np.array([pos[k] for k in d[key]], float) - width / 2 + 0.08 * j
        colour = AFTER if len(subjects) == 1 else None
        ax.errorbar(x, d["es"], yerr=[d["es"] - d["es_ci_low"], d["es_ci_high"] - d["es"]], fmt="o-",
                           capsize=3, label=str(s), color=colour)
        if "program" in d:
            pre = ~d["program"].to_numpy(bool)
            if pre.any():
                ax.plot(x[pre], d["es"].to_numpy()[pre], "o", color=BEFORE, zorder=3)
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.set_xticks(range(len(keys)), [str(k) for k in keys])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("effect size (SD)")
    ax.set_title(title or f"Effects over time with {level:.0%} CIs (grey: before adoption)")
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def trajectories_plot(st, *, title: str | None = None):
    """Each PL school's effects by period (thin lines; diverging schools highlighted) against
    the pooled trend, in SD units, from a :class:`~pleval.monitor.SchoolTrajectories`."""
    sy = st.school_years[(st.school_years["kind"] == "PL") & st.school_years["used"]]
    div = set(st.slopes.loc[st.slopes["diverges"], "school"])
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    keys = sorted(sy["time"].unique())
    pos = {k: i for i, k in enumerate(keys)}
    for school, d in sy.groupby("school"):
        x = d["time"].map(pos)
        hi = school in div
        ax.plot(x, d["es"], "-o" if hi else "-", color=AFTER if hi else NEUTRAL, lw=1.6 if hi else 0.6,
                ms=3, alpha=1.0 if hi else 0.5, label=str(school) if hi else None)
    mean = sy.groupby("time")["es"].mean()
    base = float(mean.iloc[0]) if len(mean) else 0.0
    xs = np.arange(len(keys))
    steps = np.asarray(keys, float) - keys[0] if pd.api.types.is_numeric_dtype(sy["time"]) else xs  # per year
    ax.plot(xs, base + st.pooled_trend / st.sd * steps, "--", color="black", lw=1.4, label="pooled trend")
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    ax.set_xticks(range(len(keys)), [str(k) for k in keys])
    ax.set_ylabel("school effect (SD)")
    ax.set_title(title or f"{st.subject}: school trajectories ({st.n_diverging} diverging, highlighted)")
    ax.legend(loc="best", fontsize=7, frameon=False)
    return fig
