"""HC2 tests of a trial's effect with a small treated arm: how often they reject a true null on
Bell & McCaffrey's df (pleval's since 2026-12-05) and on n − k df (before, and R's estimatr).

    OPENBLAS_NUM_THREADS=1 python benchmarks/sim_hc2_df.py --reps 10000

Five designs, no effect, a pretest (slope 0.5), the treated outcomes' SD twice the others':
40 students with 6 treated; 200 with 8; 4 blocks of 30 with 3 treated in each (block indicators
as columns); 4 blocks of 50 with 2 treated in each (blocks absorbed, as ``analyze_rct`` fits a
blocked trial), and the same with Lin's adjustment (``pleval.lin.lin_within``). Prints each
design's rejection rate at 5% under both references (docs/inference.md; about 40 s of one core
at 10,000 trials).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from pleval.inference import ols
from pleval.lin import lin_within


def _trial(rng, n: int, treated: int, blocks: int):
    """Block codes, assignment (``treated`` per block), pretest and a null outcome."""
    block = np.repeat(np.arange(blocks), n // blocks)
    z = np.zeros(n)
    for b in range(blocks):
        z[rng.choice(np.flatnonzero(block == b), treated, replace=False)] = 1.0
    x = rng.normal(size=n)
    y = 0.5 * x + 0.3 * block + rng.normal(size=n) * np.where(z == 1, 2.0, 1.0)
    return block, z, x, y


def _fit(design: str, block, z, x, y):
    """The effect's fit and its name, and the residual df n − k of the fit with indicators."""
    n, blocks = len(y), int(block.max()) + 1
    if design == "lin":
        return lin_within(y, z, x[:, None], block), "treatment", n - 2 * blocks - 2
    if design == "absorbed":
        return ols(y, np.column_stack([z, x]), vcov="HC2", absorb=block), "x0", n - blocks - 2
    X = np.column_stack([np.ones(n), z, x, np.eye(blocks)[block][:, 1:]])
    return ols(y, X, vcov="HC2"), "x1", n - X.shape[1]


DESIGNS = {"6 of 40 treated": (40, 6, 1, "columns"), "8 of 200 treated": (200, 8, 1, "columns"),
           "3 of 30 in 4 blocks": (120, 3, 4, "columns"), "2 of 50 in 4 blocks, absorbed": (200, 2, 4, "absorbed"),
           "the same, Lin's adjustment": (200, 2, 4, "lin")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for label, (n, treated, blocks, design) in DESIGNS.items():
        rng = np.random.default_rng(args.seed)
        rejected = np.zeros(2)
        for _ in range(args.reps):
            fit, name, resid_df = _fit(design, *_trial(rng, n, treated, blocks))
            est, se, df, p = fit.coef(name)
            rejected += [p < 0.05, 2 * stats.t.sf(abs(est / se), resid_df) < 0.05]
        print(f"{label:<32} Bell & McCaffrey df {rejected[0] / args.reps:.2%}   n − k df {rejected[1] / args.reps:.2%}"
              f"   (MC SE {np.sqrt(0.05 * 0.95 / args.reps):.2%})")


if __name__ == "__main__":
    main()
