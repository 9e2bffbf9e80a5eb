"""Simulation study of effects over time (docs/validation.md, "Monitoring over time").

Per replication: ``pleval.monitor.simulate_panel`` (30 schools, 10 PL adopting in 2022, years
2021–2024, grades 3–5 at 10 students per school and grade, math; no entrants, gaps or moves, so
every PL student in year t has t − 2021 years of exposure), then
``pleval.monitor.effects_over_time`` with its defaults (ATT weighting at the first pre-program
score, CR2 by first school). Prints the coverage of the 95% CIs of each program year (truth:
15·effect points) and the rejection rate of the trend test at 5%, with Monte Carlo SEs.

    python benchmarks/sim_monitor_coverage.py --effects 0.05,0.10,0.15 --reps 600 --seed0 0
    python benchmarks/sim_monitor_coverage.py --effects 0.10,0.10,0.10 --reps 600 --seed0 100000
    python benchmarks/sim_monitor_coverage.py --effects 0,0,0 --n-schools 12 --n-pl 2 --reps 400
    python benchmarks/sim_monitor_coverage.py ... --reference satterthwaite [--df-working independent]
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np

from pleval.data import Columns
import pleval.monitor.simulate as generator
from pleval.monitor import effects_over_time, simulate_panel

COLS = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
               student_id="student_id", grade="grade", subject="subject", time="year")


def one(seed: int, effects, reference: str = "exact", df_working: str | None = None, n_schools: int = 30,
        n_pl: int = 10) -> tuple[np.ndarray, float, np.ndarray]:
    sim = simulate_panel(seed=seed, effects=effects, entrants=False, absence=0.0, move=0.0, subjects=("math",),
                         students_per_grade=10, n_schools=n_schools, n_pl_schools=n_pl)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ot = effects_over_time(sim.data, COLS, cohort="pl_year", equity=False, reference=reference,
                               df_working=df_working)
    by = ot.by_year.merge(sim.truth.by_year, on=["subject", "time"])
    prog = by[by["program"]]
    cover = ((prog["ci_low"] <= prog["effect_raw"]) & (prog["effect_raw"] <= prog["ci_high"])).to_numpy()
    tr = ot.trend[ot.trend["per"].str.endswith("(program periods)")].iloc[0]
    return cover, float(tr["pvalue"]), prog["estimate"].to_numpy() / 15.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--effects", default="0.05,0.10,0.15")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--reference", default="exact", choices=["exact", "satterthwaite"])
    ap.add_argument("--n-schools", type=int, default=30)
    ap.add_argument("--n-pl", type=int, default=10)
    ap.add_argument("--no-deviations", action="store_true",
                    help="the generator's school value added and yearly shocks set to 0")
    ap.add_argument("--df-working", default=None, choices=["random_effects", "independent"],
                    help="with --reference satterthwaite (default random_effects)")
    a = ap.parse_args()
    effects = [float(v) for v in a.effects.split(",")]
    if a.no_deviations:
        generator._SD["va"] = generator._SD["shock"] = 0.0
    res = [one(s, effects, a.reference, a.df_working, a.n_schools, a.n_pl) for s in range(a.seed0, a.seed0 + a.reps)]
    cover = np.array([r[0] for r in res])
    p = np.array([r[1] for r in res])
    est = np.array([r[2] for r in res])
    n = len(res)
    print(f"effects {effects}, {a.n_pl} PL of {a.n_schools} schools{' (no school deviations)' if a.no_deviations else ''}, "
          f"reference {a.reference}, df {a.df_working}, {n} replications (seeds {a.seed0}..{a.seed0 + n - 1}), load {os.getloadavg()[0]:.1f}")
    for j, (c, e) in enumerate(zip(cover.T, est.T)):
        print(f"  program year {j + 1}: coverage {c.mean():.3f} (MC SE {np.sqrt(c.mean() * (1 - c.mean()) / n):.3f}); "
              f"mean estimate {e.mean():.4f} SD (MC SE {e.std(ddof=1) / np.sqrt(n):.4f})")
    r = (p < 0.05).mean()
    print(f"  trend test rejections at 5%: {r:.3f} (MC SE {np.sqrt(r * (1 - r) / n):.3f})")


if __name__ == "__main__":
    main()
