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
