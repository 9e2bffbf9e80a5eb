"""The matched effect's CR2 SE by subject against the spread of the estimates (docs/matching.md,
*The df*): ``simulate_matched`` with 12 PL schools among 60, school growth deviations, a constant
effect of 0.10 SD, math and reading; propensity matching; one effect per subject.

    python benchmarks/sim_subject_se.py --seed0 6500 --reps 1500

Prints, per subject, the 95% CI coverage of the true effect, SE / SD of the estimates (mean SE
over the SD, with a bootstrap SE over data sets) and the mean error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from pleval.data import SAMPLE_COLUMNS
    from pleval.matching import match
    from pleval.simulate import simulate_matched

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed0", type=int, default=6500)
    ap.add_argument("--reps", type=int, default=1500)
    a = ap.parse_args()
    rows = []
    for r in range(a.seed0, a.seed0 + a.reps):  # a loop over data sets, each a whole analysis
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = simulate_matched(n_schools=60, n_pl_schools=12, students_per_grade=12, effect=0.10, tau=0.0, seed=r)
            f = match(sim.data, SAMPLE_COLUMNS, seed=r, method="propensity").estimate(by="subject").to_frame()
        f = f[f["scale"] == "raw"]
        rows.append(f.assign(truth=sim.truth.att_raw)[["subject", "estimate", "se", "ci_low", "ci_high", "truth"]])
    d = pd.concat(rows, ignore_index=True)
    rng = np.random.default_rng(0)

    def se_over_sd(g: pd.DataFrame) -> float:
        return g.se.mean() / g.estimate.std(ddof=1)

    for subject, g in d.groupby("subject"):
        cover = ((g.ci_low <= g.truth) & (g.truth <= g.ci_high)).mean()
        ratio = se_over_sd(g)
        boot = [se_over_sd(g.iloc[rng.integers(0, len(g), len(g))]) for _ in range(400)]
        print(f"{subject}: {len(g)} data sets, coverage {cover:.4f}, SE/SD {ratio:.3f} (bootstrap SE {np.std(boot):.3f}), "
              f"mean error {(g.estimate - g.truth).mean():+.3f}")


if __name__ == "__main__":
    main()
