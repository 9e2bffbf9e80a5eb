"""Benchmark the RCT analysis.

1. ITT with CR2 (Satterthwaite df) on 1,000,000 students in 5,000 schools (10 blocks; pretest,
   frl, ell; k = 14 regressors): the bare ``pleval.inference.ols`` fit, the whole
   ``analyze_rct`` (validation, ITT, Neyman, school means, attrition, equivalence), and
   statsmodels' clustered CR1 OLS on the same arrays for comparison. Target: ITT ≤ 3 s on 2 cores.
2. 10,000 cluster re-randomizations (within blocks) on 100 schools. Target: < 10 s.
3. A multi-site trial (students randomized within schools, a block per school; pretest,
   noncompliance so the CACE runs): ``analyze_rct(design="blocked")`` with 400 and 2,000
   schools of 500 students (200,000 and 1,000,000 rows), additive and with Lin's adjustment.
   The block effects are absorbed, so time and memory grow with the rows, not rows × blocks.
4. A pair-matched cluster trial (schools randomized within pairs; pretest): 200 and 1,000 pairs
   of schools of 250 students, CR2 with the pairs absorbed.

Prints the median wall time of 3 runs and the peak memory allocated (tracemalloc) per step, and the process's peak RSS.
``--quick`` runs 100,000 students in 500 schools, 2,000 re-randomizations and 100 and 400 sites
of 250 students, 100 pairs.

    python benchmarks/bench_rct.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd


def make_trial(n_students: int, n_schools: int, n_blocks: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = np.sort(rng.integers(0, n_schools, n_students))
    block_of_school = np.arange(n_schools) % n_blocks
    z_school = np.zeros(n_schools, dtype=np.int64)
    for b in range(n_blocks):  # a handful of blocks
        idx = np.flatnonzero(block_of_school == b)
        z_school[rng.choice(idx, idx.size // 2, replace=False)] = 1
    u = rng.normal(0, 0.45, n_schools)
    pre = 200 + 15 * (0.5 * u[school] + rng.normal(size=n_students))
    frl = (rng.random(n_students) < 0.5).astype(np.int64)
    ell = (rng.random(n_students) < 0.15).astype(np.int64)
    post = 205 + 0.6 * (pre - 200) - 2 * frl + 12 * (u[school] + rng.normal(0, 0.9, n_students)) + 1.5 * z_school[school]
    post[rng.random(n_students) < 0.08] = np.nan
    return pd.DataFrame({
        "school_id": school, "block": block_of_school[school], "treatment": z_school[school],
        "pretest": pre, "posttest": post, "frl": frl, "ell": ell,
    })


def timed(label: str, fn, *args, **kwargs):
    """Median wall time of 3 untraced runs (1 for long runs), then one run under tracemalloc for the
    peak memory the step allocates (numpy and pandas report their buffers to tracemalloc)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
        if times[-1] > 5:
            break
    dt = float(np.median(times))
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  {label:<62} {dt:7.2f} s   peak allocated {peak / 2**20:7.0f} MB", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k students / 500 schools; 2,000 re-randomizations")
    args = ap.parse_args()
    n, G, perms = (100_000, 500, 2_000) if args.quick else (1_000_000, 5_000, 10_000)

    import statsmodels.api as sm

    from pleval.data import Columns
    from pleval.inference import ols
    from pleval.inference.randomization import randomization_test
    from pleval.rct import analyze_rct

    print(f"ITT on {n:,} students in {G:,} schools (10 blocks)")
    df = make_trial(n, G, 10)
    a = df[df["posttest"].notna()]
    X = np.column_stack([
        np.ones(len(a)), a["treatment"], pd.get_dummies(a["block"], drop_first=True, dtype=float),
        a[["pretest", "frl", "ell"]],
    ]).astype(float)
    y = a["posttest"].to_numpy()
    cl = a["school_id"].to_numpy()
    fit, t_cr2 = timed(f"pleval.inference.ols CR2 + Satterthwaite df (k = {X.shape[1]})", ols, y, X, clusters=cl, vcov="CR2")
    _, t_cr1 = timed("pleval.inference.ols CR1", ols, y, X, clusters=cl, vcov="CR1")
    _, t_sm = timed("statsmodels OLS, cov_type='cluster' (CR1)",
                    lambda: sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": cl}))
    cols = Columns(outcome="posttest", treatment="treatment", pretest="pretest", covariates=("frl", "ell"),
                   school="school_id", block="block")
    res, t_all = timed("analyze_rct (CR2 ITT + Neyman + school means + WWC checks)", analyze_rct, df, cols)
    print(f"  ITT {res.itt.raw.estimate:.3f} (SE {res.itt.raw.se:.3f}, df {res.itt.raw.df:.1f}); "
          f"CR2 df for treatment from ols: {fit.df[1]:.1f}")

    print(f"\n{perms:,} cluster re-randomizations on 100 schools (10 blocks)")
    small = make_trial(20_000, 100, 10, seed=2).dropna(subset=["posttest"])
    ri, t_ri = timed("randomization_test (clusters within blocks, covariate-adjusted)", randomization_test,
                     small["posttest"], small["treatment"], clusters=small["school_id"], blocks=small["block"],
                     covariates=small[["pretest"]], n_permutations=perms, seed=1)
    print(f"  p = {ri.pvalue:.4f} (MC SE {ri.mc_se:.4f})")

    from pleval.simulate import simulate_multisite_rct

    sites = (100, 400) if args.quick else (400, 2_000)
    per = 250 if args.quick else 500
    for m in sites:
        d = simulate_multisite_rct(n_schools=m, students_per_school=per, subjects=["math"], seed=3).data
        d["takeup"] = d["treatment"] * np.random.default_rng(4).binomial(1, 0.8, len(d))
        site_cols = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
                            block="school_id", takeup="takeup", student_id="student_id")
        print(f"\nmulti-site trial: {m:,} schools, {len(d):,} students (a block per school)")
        r, _ = timed("analyze_rct(design='blocked'): HC2 ITT, complier share, CACE, Neyman", analyze_rct, d, site_cols,
                     design="blocked")
        print(f"  ITT {r.itt.raw.estimate:.3f} (SE {r.itt.raw.se:.3f}); CACE {r.effects['CACE (IV)'].raw.estimate:.3f}")
        r, _ = timed("same, lin=True (Lin's model, block × arm cells absorbed)", analyze_rct, d, site_cols,
                     design="blocked", lin=True)
        print(f"  Lin ITT {r.itt.raw.estimate:.3f} (SE {r.itt.raw.se:.3f})")

    from pleval.simulate import simulate_cluster_rct

    pair_sizes = (100,) if args.quick else (200, 1_000)
    for pairs in pair_sizes:
        d = simulate_cluster_rct(seed=2, n_blocks=pairs, n_schools=2 * pairs, students_per_school=250,
                                 subjects=["math"]).data
        pair_cols = Columns(outcome="posttest", treatment="treatment", pretest="pretest", school="school_id",
                            block="block", student_id="student_id")
        print(f"\npair-matched cluster trial: {pairs:,} pairs of schools, {len(d):,} students")
        r, _ = timed("analyze_rct(design='cluster'): CR2 ITT, school means, Neyman", analyze_rct, d, pair_cols)
        print(f"  ITT {r.itt.raw.estimate:.3f} (SE {r.itt.raw.se:.3f}, df {r.itt.raw.df:.1f})")

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {peak_rss:,.0f} MB")
    print("targets: ITT with CR2 <= 3 s" + ("" if args.quick else f" -> {'met' if t_cr2 <= 3 else 'NOT met'} ({t_cr2:.2f} s)")
          + f"; 10,000 re-randomizations < 10 s" + ("" if args.quick else f" -> {'met' if t_ri < 10 else 'NOT met'} ({t_ri:.2f} s)"))


if __name__ == "__main__":
    main()
