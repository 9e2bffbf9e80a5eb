"""Simulation study of one PL school (docs/validation.md, "One PL school").

A district question: one school adopted PL; did the program work there? Its matched estimate is
the program effect θ plus the school's own deviation g, and only placebo schools (comparison
schools analysed as if PL, with the same matching) tell how large such deviations are. The
study measures the placebo-calibrated interval's coverage of θ and how often the school is
flagged when the program does nothing, with and without school deviations (δ ∈ {0, 0.10}).

    # stage 1 (expensive): data, matching, the school's effect, placebo schools, by
    # pleval.estimate; one .npz of ingredients per seed under DIR
    python benchmarks/sim_one_school.py --stage1 DIR [--seed0 0] [--reps 400]
    # stage 2 (cheap): the figures from the stored ingredients with pleval's meta layer
    python benchmarks/sim_one_school.py --score DIR [--rows rows.csv]
    # meta level: the covariances of the first --designs stored seeds taken as known, --studies
    # studies drawn from each per δ (y = θ + g + e, placebo y_p = g_p + e_p), through calibrate
    python benchmarks/sim_one_school.py --meta DIR [--designs 10] [--studies 400]

Data from the independent generator ``tests/_school_sim.py`` (not pleval.simulate) with one PL
school among 25, chosen on observables (poverty, achievement), about 60 students per school, no
program effect (μ = τ = 0). The calibrated interval is ``y ± t·SE_cal`` and the estimate moves
by exactly θ when the school's program effect does (``tests/_school_sim.ingredients``), so its
coverage of θ is the same for every θ and equals one minus the flag rate at θ = 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._school_sim import ONE_SCHOOL_GEN as GEN, ingredients, mc_se, score_one, store_seeds, stored_seeds, with_prefix  # noqa: E402

CELLS = {"d10": dict(delta=0.10), "d0": dict(delta=0.0)}
FIGURES = ["cal_ci_program", "flag", "school_ci", "flag_uncalibrated"]


def stage1(out: Path, seed0: int, reps: int, method: str) -> None:
    """Ingredients of both cells, seed by seed, one ``seed{seed}.npz`` per seed (atomic)."""

    def arrays_for(seed: int) -> dict:
        return {f"{cell}__{k}": v for cell, spec in CELLS.items()
                for k, v in ingredients(seed, method, **GEN, **spec)[0].items()}

    store_seeds(out, range(seed0, seed0 + reps), arrays_for)


def stage2(paths: list[Path]) -> pd.DataFrame:
    """One row of figures per stored replication and cell."""
    rows = []
    for seed, arrays in stored_seeds(paths):
        for cell in CELLS:
            rows.append({"cell": cell, "seed": seed, **score_one(with_prefix(arrays, cell))})
    return pd.DataFrame(rows)


def meta(paths: list[Path], studies: int, seed: int = 1) -> pd.DataFrame:
    """Meta-level check: each stored design's V (the school's variance), df and V_p (placebo
    schools' joint covariance) taken as known; per δ, ``studies`` draws of the school's estimate
    ``y = g + e`` (θ = 0; the interval is shift-invariant) and of the placebo estimates
    ``g_p + e_p``, each through :func:`pleval.heterogeneity.calibrate`."""
    from pleval.heterogeneity import calibrate

    rng = np.random.default_rng(seed)
    rows = []
    for path in paths:
        with np.load(path) as z:
            V, d, Vp = z["d10__V"], z["d10__df"], z["d10__placebo_V"]
        L, Lp = np.linalg.cholesky(V), np.linalg.cholesky(Vp)
        for cell, spec in CELLS.items():
            delta = spec["delta"]
            for _ in range(studies):
                y = delta * rng.standard_normal(1) + L @ rng.standard_normal(1)
                yp = delta * rng.standard_normal(len(Vp)) + Lp @ rng.standard_normal(len(Vp))
                c = calibrate(["s"], y, V, d, yp, Vp).schools.iloc[0]
                rows.append({"cell": cell, "seed": int(path.stem.removeprefix("seed")),
                             "cal_ci_program": float(c["ci_low_calibrated"] <= 0 <= c["ci_high_calibrated"]),
                             "flag": float(c["p_calibrated_adjusted"] < 0.05)})
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for cell in CELLS:
        f = rows[rows["cell"] == cell]
        r = {"cell": cell, "delta": CELLS[cell]["delta"], "reps": len(f)}
        for c in FIGURES:
            r[c], r[c + "_mcse"] = (float(f[c].mean()), mc_se(f[c])) if c in f else (np.nan, np.nan)
        out.append(r)
    return pd.DataFrame(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage1", type=Path, help="write ingredients (one .npz per seed) to this directory")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--method", default="propensity")
    ap.add_argument("--score", type=Path, help="score every seed*.npz in this directory")
    ap.add_argument("--rows", type=Path, help="write (--score) the per-replication figures to this CSV")
    ap.add_argument("--meta", type=Path, help="meta-level check on the covariances stored in this directory")
    ap.add_argument("--designs", type=int, default=10)
    ap.add_argument("--studies", type=int, default=400)
    a = ap.parse_args()
    if a.stage1:
        stage1(a.stage1, a.seed0, a.reps, a.method)
    elif a.score or a.meta:
        c0 = time.process_time()
        rows = (stage2(sorted(a.score.glob("seed*.npz"))) if a.score
                else meta(sorted(a.meta.glob("seed*.npz"))[: a.designs], a.studies))
        if a.rows:
            rows.to_csv(a.rows, index=False)
        for _, r in summarize(rows).iterrows():
            print(f"δ = {r['delta']:.2f}, {r['reps']} reps: " + ", ".join(
                f"{c} {100 * r[c]:.1f} ± {100 * r[c + '_mcse']:.1f}%" for c in FIGURES if np.isfinite(r[c])))
        print(f"{len(rows)} replications, {time.process_time() - c0:.1f} s CPU", file=sys.stderr)
    else:
        ap.error("one of --stage1, --score, --meta")


if __name__ == "__main__":
    main()
