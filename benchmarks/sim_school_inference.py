"""Simulation study of school-by-school inference (docs/validation.md, "School-by-school inference").

    python benchmarks/sim_school_inference.py [--reps 200] [--scenario NAME ...] [--out table.csv]

Data from the independent generator ``tests/_school_sim.py`` (not pleval.simulate); each
replication runs ``pleval.estimate`` with its defaults (placebo schools: every comparison
school) and records per-school CI coverage of the identifiable target (program + the school's
own deviation), pooled CI and prediction-interval coverage, shrunken-interval coverage, the
calibrated per-school interval's coverage of the program effect, the chance that any PL school
is flagged (calibrated, adjusted), the false-discovery proportion (wrong-sign flags), and the
coverage of the τ²_program and τ²_placebo intervals. Prints one row per scenario with Monte
Carlo SEs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
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


def run(name: str, reps: int, seed0: int = 0) -> dict:
    kw = dict(SCENARIOS[name])
    rows = [replicate(seed0 + r, **kw) for r in range(reps)]
    f = pd.DataFrame(rows)
    out = {"scenario": name, "reps": reps}
    for c in FIGURES:
        if c in f:
            out[c] = float(f[c].mean())
            out[c + "_mcse"] = mc_se(f[c])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--scenario", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    results = []
    for name in a.scenario:
        t0 = time.perf_counter()
        r = run(name, a.reps)
        r["seconds"] = time.perf_counter() - t0
        results.append(r)
        print(" | ".join([name, str(a.reps)] + [f"{100 * r[c]:.1f} ± {100 * r[c + '_mcse']:.1f}" for c in FIGURES if c in r])
              + f" | {r['seconds']:.0f} s", flush=True)
        if a.out:
            pd.DataFrame(results).to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
