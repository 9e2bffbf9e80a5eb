"""Placebo-calibrated school effects of a cluster-randomized trial, by simulation
(docs/validation.md, *Simulation with a known truth*); the study is
``tests._rct_sim.trial_calibration``, which ``tests/test_estimate.py`` runs at a reduced size.

    python benchmarks/sim_trial_calibration.py [--reps 300] [--seed0 0] [--blocks 10]

Each data set is ``pleval.simulate.simulate_cluster_rct`` with ``--blocks`` districts of four
schools (two randomized to PL, two control), math only, 120 students a school on average,
school value added SD 0.10, and program effects θ_j ~ N(0.10, 0.10²) — or, with ``--null``, no
program effect anywhere. ``pleval.estimate(design="rct")`` runs with its defaults (every
control school a placebo school: compared with the other control school of its block). Printed
over all PL schools of all data sets:

* the share of placebo-calibrated intervals (``ci_low_calibrated`` … ``ci_high_calibrated``)
  that cover the school's program effect θ_j (on each school's effect-size scale), and the
  share of calibrated p-values below 0.05 when there is no program (``--null``);
* the share of uncalibrated p-values below 0.05 (student-level SEs only: they do not allow for
  the school's own difference from its comparisons, so under ``--null`` they flag too often);
* the mean τ̂²_placebo (on the PL schools' scale) beside the mean squared true deviation of the
  PL schools from their comparison schools (the simulation's value added), and the PL
  estimates' mean squared sampling error (estimate − θ_j − deviation) beside their mean
  reported SE².
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._rct_sim import trial_calibration  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--null", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    r = trial_calibration(a.reps, a.seed0, a.blocks, a.null)
    mc = np.sqrt(0.05 * 0.95 / r["schools"])
    print(f"{a.reps} data sets, {r['schools']:,} PL schools ({'no program' if a.null else 'θ_j ~ N(0.10, 0.10²)'}), "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"  calibrated CI covers θ_j: {r['calibrated_cover']:.3f} (MC SE about {mc:.3f} if 0.95; schools of a "
          "data set are not independent)")
    print(f"  p < 0.05: calibrated {r['calibrated_p_below_05']:.3f}, student-level SEs {r['raw_p_below_05']:.3f}")
    print(f"  mean tau2_placebo: {r['mean_tau2_placebo']:.4f}; PL schools' true deviations, mean square: "
          f"{r['deviation2']:.4f}")
    print(f"  PL estimates' sampling error, mean square: {r['sampling_error2']:.4f}; reported SE², mean: "
          f"{r['reported_se2']:.4f}")


if __name__ == "__main__":
    main()
