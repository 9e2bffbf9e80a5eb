"""Few clusters: how the default tests of the overall matched effect and of a cluster trial's ITT
hold their size when two or three PL schools (or six to ten schools) carry the inference, and
whether the exact t reference (docs/inference.md, *The exact t reference*) would do better.

    # the overall matched effect, 2 or 3 PL schools among 26-27, no effect (tests/_school_sim.py)
    python benchmarks/sim_few_clusters.py matched --n-pl 2 --delta 0.10 --reps 400
    # a cluster trial, no effect (tests/_rct_sim.py): schools, blocks, ICC
    python benchmarks/sim_few_clusters.py trial --schools 8 --blocks 2 --icc 0.2 --reps 1000 --seed0 70000
    # matched subgroups by FRL, 2 or 3 PL schools among 30 (simulate_matched, effect 0.10 SD)
    python benchmarks/sim_few_clusters.py subgroups --n-pl 2 --reps 400
    # a cluster trial's CACE, no effect, 80% take-up in PL schools and none in control schools
    python benchmarks/sim_few_clusters.py cace --schools 8 --reps 400

``matched`` runs ``pleval.estimate`` (propensity matching, defaults) on each data set and prints
the 95% CI's coverage of 0, SE / SD of the estimates and the median df. ``trial`` fits the ITT
model (treatment, pretest, frl, ell, block indicators; CR2 by school) and prints the rejection
rate at 5% of four references: Satterthwaite's t with the independence (the trial default) and
the school random-effect working model, and the exact reference under each. ``subgroups``
matches (ridge-penalized propensity model: with so few treated schools a covariate level can
lack treated rows) and prints the coverage of the FRL levels' CIs and of their gap (default
random-effect df), as ``tests/test_subgroups.py`` does with 12 PL schools, and how often the HTZ
test of equal effects in the pretest thirds rejects (the effect is constant). ``cace`` runs
``analyze_rct`` (two blocks; pretest, frl, ell) and prints how often the CACE's default test
(the ITT's CR2 and Satterthwaite df) and its CR1 test on G − 1 df (linearmodels' ``IV2SLS``,
the earlier default) reject at 5%, with the ITT's default test beside them, as
``tests/test_rct.py`` does at a reduced size.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matched(n_pl: int, delta: float, reps: int, seed0: int) -> None:
    import pleval
    from pleval.errors import PlevalWarning
    from tests._school_sim import generate

    rows = []
    for seed in range(seed0, seed0 + reps):  # a loop over data sets, each a whole analysis
        df, _, _ = generate(seed, n_pl=n_pl, n_comp=24, delta=delta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            raw = pleval.estimate(df, sd=15.0, method="propensity", placebo=False, sensitivity=False).effect().raw
        rows.append((raw.estimate, raw.se, raw.df, raw.ci_low <= 0.0 <= raw.ci_high))
    est, se, df, cover = map(np.array, zip(*rows))
    m = cover.mean()
    print(f"matched, {n_pl} PL schools, school deviations SD {delta}, {reps} data sets (seeds {seed0}-): "
          f"coverage {m:.3f} (MC SE {np.sqrt(m * (1 - m) / reps):.3f}), SE/SD {se.mean() / est.std(ddof=1):.3f}, "
          f"median df {np.median(df):.2f}")


def trial(schools: int, blocks: int, icc: float, reps: int, seed0: int) -> None:
    from pleval.inference import ols
    from tests._rct_sim import make_cluster_rct

    names = ["Satterthwaite, independence df", "Satterthwaite, random-effect df", "exact, independence model",
             "exact, random-effect model"]
    reject = np.zeros(4)
    for r in range(seed0, seed0 + reps):  # a loop over data sets
        d = make_cluster_rct(r, n_schools=schools, n_blocks=blocks, icc=icc, size_range=(10, 60))
        X = np.column_stack([np.ones(len(d)), d[["treatment", "pretest", "frl", "ell"]],
                             pd.get_dummies(d.block, drop_first=True)]).astype(float)
        cl = pd.factorize(d.school_id)[0]
        c = np.eye(X.shape[1])[1]
        for j, working in enumerate(("independent", "random_effects")):
            fit = ols(d.posttest.to_numpy(float), X, clusters=cl, df_working=working)
            est, se, _, p = fit.contrast(c)
            reject[j] += p <= 0.05
            reject[2 + j] += fit.exact_t(c).sf(abs(est / se)) <= 0.05
    rate = reject / reps
    print(f"cluster trial, {schools} schools in {blocks} block(s), ICC {icc}, {reps} trials (seeds {seed0}-); "
          f"rejections at 5% (MC SE {np.sqrt(0.05 * 0.95 / reps):.3f}):")
    for n, v in zip(names, rate):
        print(f"  {n:34s} {v:.3f}")


def cace(schools: int, reps: int, seed0: int) -> None:
    from pleval import analyze_rct
    from pleval.errors import PlevalWarning
    from tests._rct_sim import make_cluster_rct
    from tests.test_rct import COLS

    cols = COLS.replace(takeup="takeup")
    reject = np.zeros(3)
    for r in range(seed0, seed0 + reps):  # a loop over data sets, each a whole analysis
        d = make_cluster_rct(r, n_schools=schools, n_blocks=2, takeup=(0.8, 0.0))
        if not d["takeup"].any():
            d.loc[d["treatment"] == 1, "takeup"] = 1  # (no PL school took it up: every one does)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            res, cr1 = analyze_rct(d, cols), analyze_rct(d, cols, vcov="CR1")
        reject += [res.cace.raw.pvalue < 0.05, cr1.cace.raw.pvalue < 0.05, res.itt.raw.pvalue < 0.05]
    rate = reject / reps
    print(f"cluster trial's CACE, {schools} schools in 2 blocks, no effect, {reps} trials (seeds {seed0}-); rejections "
          f"at 5% (MC SE {np.sqrt(0.05 * 0.95 / reps):.3f}): CACE, CR2 and Satterthwaite df (default) {rate[0]:.3f}; "
          f"CACE, CR1 on G - 1 df {rate[1]:.3f}; ITT (default) {rate[2]:.3f}")


def subgroups(n_pl: int, reps: int, seed0: int) -> None:
    from tests.test_subgroups import frl_cover, matched_subgroups

    cover, dfs, reject = np.zeros(3), [], 0
    for r in range(seed0, seed0 + reps):  # a loop over data sets, each a whole analysis
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = matched_subgroups(30, n_pl, r, ("frl", "thirds"), penalize=True)
        hit, df = frl_cover(*res["frl"])
        reject += res["thirds"][1]["pvalue"] < 0.05
        cover += hit
        dfs.append(df)
    print(f"matched subgroups by FRL, {n_pl} PL schools among 30, {reps} data sets (seeds {5000 + seed0}-): "
          f"coverage {cover[0] / reps:.3f} and {cover[1] / reps:.3f}, gap {cover[2] / reps:.3f} "
          f"(MC SE {np.sqrt(0.05 * 0.95 / reps):.3f}); median df {np.median(dfs):.2f}; HTZ test of equal effects "
          f"in the pretest thirds rejects {reject / reps:.3f} at 5%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="study", required=True)
    m = sub.add_parser("matched")
    m.add_argument("--n-pl", type=int, default=2)
    m.add_argument("--delta", type=float, default=0.10)
    t = sub.add_parser("trial")
    t.add_argument("--schools", type=int, default=8)
    t.add_argument("--blocks", type=int, default=1)
    t.add_argument("--icc", type=float, default=0.2)
    g = sub.add_parser("subgroups")
    g.add_argument("--n-pl", type=int, default=2)
    c = sub.add_parser("cace")
    c.add_argument("--schools", type=int, default=8)
    for p in (m, t, g, c):
        p.add_argument("--reps", type=int, default=400)
        p.add_argument("--seed0", type=int, default=0)
    a = ap.parse_args()
    if a.study == "matched":
        matched(a.n_pl, a.delta, a.reps, a.seed0)
    elif a.study == "subgroups":
        subgroups(a.n_pl, a.reps, a.seed0)
    elif a.study == "cace":
        cace(a.schools, a.reps, a.seed0)
    else:
        trial(a.schools, a.blocks, a.icc, a.reps, a.seed0)


if __name__ == "__main__":
    main()
