"""Bias of the placebo schools' variances under the two CR2 forms of the school effects, on the
same fits (docs/inference.md, "Which is the default, and why").

    python benchmarks/sim_placebo_variance.py CELL [--seed0 0] [--reps 150] [--rows out.csv]

CELL is a generator cell of ``benchmarks/sim_school_inference.py`` with δ = 0 (``d0-vcg``,
``d0-vcg-32x200``, ``d0-ps``, ``d0-ps-32x200``): no school deviations and no program, so each
placebo estimate's mean is 0 and its mean square is its true variance. Each seed's data set
(``tests/_school_sim.generate``) goes through ``pleval.estimate`` with its defaults (``sd=15``,
no sensitivity analysis, as stage 1 of the study); every placebo round's ``school_effects`` —
the default form, ``cr2="clubsandwich"`` — is refitted on the same matched sample with
``cr2="transformed"``. Printed: ``Σ y² / Σ v − 1`` over all placebo schools of all seeds for
each form (v the school's variance, es_se²), with a Monte Carlo SE from the seeds' totals
(ratio estimator), the median per-school df of each form, and the ratio of the two forms' mean
variances on the same fits (paired, so far more precise than either bias).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sim_school_inference import CELLS  # noqa: E402
from tests._school_sim import generate  # noqa: E402


def run(cell: str, seeds) -> pd.DataFrame:
    import pleval
    import pleval.heterogeneity.placebo as placebo
    from pleval.errors import PlevalWarning

    spec = dict(CELLS[cell])
    method = spec.pop("method")
    fitted = placebo.school_effects
    rows: list[pd.DataFrame] = []

    def both(sample, **kw):  # every call inside pleval.estimate's placebo rounds
        res = fitted(sample, **kw)
        alt = fitted(sample, **{**kw, "cr2": "transformed"})
        t, a = res.table, alt.table
        ok = np.isfinite(t["effect_size"].to_numpy(dtype=float))
        rows.append(pd.DataFrame({"seed": seed, "y": t["effect_size"][ok], "v_new": t["es_se"][ok] ** 2,
                                  "v_old": a["es_se"][ok] ** 2, "df_new": t["df"][ok], "df_old": a["df"][ok]}))
        return res

    placebo.school_effects = both
    try:
        for seed in seeds:
            df, _, _ = generate(seed, **spec)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlevalWarning)
                pleval.estimate(df, design="matched", method=method, seed=seed, sd=15.0, sensitivity=False)
    finally:
        placebo.school_effects = fitted
    return pd.concat(rows, ignore_index=True)


def bias(rows: pd.DataFrame, v: str) -> tuple[float, float]:
    """``Σ y²/Σ v − 1`` and its Monte Carlo SE over seeds (ratio estimator on the seeds' totals)."""
    tot = rows.assign(y2=rows["y"] ** 2).groupby("seed")[["y2", v]].sum()
    r = tot["y2"].sum() / tot[v].sum()
    se = np.sqrt(np.var(tot["y2"] - r * tot[v], ddof=1) / len(tot)) / tot[v].mean()
    return r - 1.0, se


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cell", choices=[c for c in CELLS if c.startswith("d0-")])
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--reps", type=int, default=150)
    ap.add_argument("--rows", default="")
    a = ap.parse_args()
    t0 = time.process_time()
    rows = run(a.cell, range(a.seed0, a.seed0 + a.reps))
    if a.rows:
        rows.to_csv(a.rows, index=False)
    print(f"{a.cell}: {rows['seed'].nunique()} data sets, {len(rows):,} placebo schools ({time.process_time() - t0:.0f} CPU-s)")
    for v, name in (("v_old", "transformed"), ("v_new", "clubsandwich (default)")):
        b, se = bias(rows, v)
        print(f"  cr2={name}: mean squared placebo estimate / mean variance − 1 = {100 * b:.2f}% ± {100 * se:.2f}; "
              f"median df {rows['df' + v[1:]].median():.1f}")
    tot = rows.groupby("seed")[["v_new", "v_old"]].sum()
    r = tot["v_new"].sum() / tot["v_old"].sum()
    se = np.sqrt(np.var(tot["v_new"] - r * tot["v_old"], ddof=1) / len(tot)) / tot["v_old"].mean()
    print(f"  same fits: mean variance clubsandwich / transformed − 1 = {100 * (r - 1):.2f}% ± {100 * se:.2f}")


if __name__ == "__main__":
    main()
