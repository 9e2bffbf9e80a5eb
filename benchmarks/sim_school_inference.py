"""Simulation study of school-by-school inference (docs/validation.md, "School-by-school inference").

    python benchmarks/sim_school_inference.py [--reps 200] [--seed0 0] [--scenario NAME ...] [--rows rows.csv]
    python benchmarks/sim_school_inference.py --summarize rows.csv [more.csv ...]

Data from the independent generator ``tests/_school_sim.py`` (not pleval.simulate); each
replication runs ``pleval.estimate`` with its defaults (placebo schools: every comparison
school) and records per-school CI coverage of the identifiable target (program + the school's
own deviation), pooled CI and prediction-interval coverage, shrunken-interval coverage, the
calibrated per-school interval's coverage of the program effect, the chance that any PL school
is flagged (calibrated, adjusted), the false-discovery proportion (wrong-sign flags), and the
coverage of the τ²_program and τ²_placebo intervals. Prints one row per scenario with Monte
Carlo SEs. Scenarios advance together (seed by seed); ``--rows`` appends every replication's
figures to a CSV as it finishes, so long runs can be split over processes with different
``--seed0``, stopped at any time and summarized together.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._school_sim import mc_se, replicate  # noqa: E402

SCENARIOS = {
    "null-d10-ps": dict(method="propensity", tau=0.0, delta=0.10),
    "null-d10-vcg": dict(method="vcg", tau=0.0, delta=0.10),
    "tau15-d10-ps": dict(method="propensity", tau=0.15, delta=0.10),
    "null-d0-ps": dict(method="propensity", tau=0.0, delta=0.0),
    "tau15-d0-ps": dict(method="propensity", tau=0.15, delta=0.0),
    "tau15-d10-vcg": dict(method="vcg", tau=0.15, delta=0.10),
    "null-d10-ps-32x200": dict(method="propensity", tau=0.0, delta=0.10, n_pl=32, n_comp=200, per_school=40),
}
FIGURES = ["school_ci", "pooled_ci", "pi", "shrunk_ci", "cal_ci_program", "any_flag", "any_flag_uncalibrated", "fdp",
           "tau2_program_ci", "tau2_placebo_ci"]
COLUMNS = ["scenario", "seed", "k", *FIGURES, "n_flag"]


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario: replications, and each figure's mean and Monte Carlo SE."""
    out = []
    for name, f in rows.groupby("scenario", sort=False):
        r = {"scenario": name, "reps": len(f)}
        for c in FIGURES:
            if c in f:
                r[c], r[c + "_mcse"] = float(f[c].mean()), mc_se(f[c])
        out.append(r)
    return pd.DataFrame(out)


def line(r) -> str:
    return " | ".join([r["scenario"], str(r["reps"])] + [f"{100 * r[c]:.1f} ± {100 * r[c + '_mcse']:.1f}" for c in FIGURES
                                                         if c in r])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--scenario", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--rows", type=Path, help="append each replication's figures to this CSV")
    ap.add_argument("--summarize", nargs="*", type=Path, help="summarize replication CSVs written by --rows")
    a = ap.parse_args()
    if a.summarize:
        for _, r in summarize(pd.concat([pd.read_csv(p) for p in a.summarize], ignore_index=True)).iterrows():
            print(line(r))
        return
    t0 = time.perf_counter()
    rows = []
    for seed in range(a.seed0, a.seed0 + a.reps):  # scenarios interleaved: every one advances together
        for name in a.scenario:
            rows.append({"scenario": name, "seed": seed, **replicate(seed, **SCENARIOS[name])})
            if a.rows:
                pd.DataFrame(rows[-1:]).reindex(columns=COLUMNS).to_csv(a.rows, mode="a", header=not a.rows.exists(),
                                                                        index=False)
    for _, r in summarize(pd.DataFrame(rows)).iterrows():
        print(line(r), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")

if __name__ == "__main__":
    main()
