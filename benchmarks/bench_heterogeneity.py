"""Benchmark: per-school effects + meta-analysis + shrinkage for many schools.

    python benchmarks/bench_heterogeneity.py [--quick] [--loop-schools N]

Synthetic multi-site data (5,000 schools × ~200 students = 1,000,000 rows by default; one
pretest covariate, HC2 SEs). Prints wall time and peak traced memory of
``pleval.heterogeneity.school_effects`` (batched sufficient statistics), and, for a subset of
schools, a loop of one statsmodels OLS per school (the approach it replaces), extrapolated.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd


def make(n_schools: int, per_school: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = np.maximum(rng.poisson(per_school, n_schools), 10)
    school = np.repeat(np.arange(n_schools), sizes)
    n = school.size
    t = rng.integers(0, 2, n)
    pre = rng.normal(200, 15, n)
    theta = rng.normal(0.1, 0.1, n_schools)
    y = 200 + 0.7 * (pre - 200) + 15 * theta[school] * t + rng.normal(0, 10.7, n)
    return pd.DataFrame({"school_id": school, "treatment": t, "posttest": y, "pretest": pre})


def run_pleval(df: pd.DataFrame):
    import pleval.heterogeneity as het

    return het.school_effects(df, stratum="school_id", covariates=["pretest"])


def timed(fn, *args, repeat: int = 3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak / 2**20, out


def statsmodels_loop(df: pd.DataFrame):
    import statsmodels.api as sm

    out = []
    for _, sub in df.groupby("school_id", sort=False):  # the slow way being replaced
        X = sm.add_constant(sub[["treatment", "pretest"]].to_numpy(dtype=float))
        r = sm.OLS(sub["posttest"].to_numpy(), X).fit(cov_type="HC2")
        out.append((r.params[1], r.bse[1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="500 schools instead of 5,000")
    ap.add_argument("--loop-schools", type=int, default=200, help="schools in the statsmodels-loop comparison")
    a = ap.parse_args()
    n_schools = 500 if a.quick else 5000
    import pleval.heterogeneity  # noqa: F401  (import cost not timed)

    df = make(n_schools, 200)
    print(f"{len(df):,} rows, {n_schools:,} schools (~200 students each); one covariate; HC2")
    secs, mb, res = timed(run_pleval, df)
    m = res.meta["all"]
    print(f"pleval school_effects (per-school WLS + REML meta-analysis + EB shrinkage): {secs:.3f} s, peak {mb:.0f} MB traced")
    print(f"  pooled ES {m.estimate:.4f} (SE {m.se:.4f}); tau {m.tau:.4f}; I² {m.i2:.1f}%")
    sub = df[df.school_id < a.loop_schools]
    secs_loop, _, _ = timed(statsmodels_loop, sub, repeat=1)
    print(
        f"statsmodels OLS loop, {a.loop_schools} schools: {secs_loop:.2f} s "
        f"-> about {secs_loop * n_schools / a.loop_schools:.0f} s for {n_schools:,} schools"
    )
    for G in (2000,):
        d2 = make(G, 200, seed=1)
        s2, mb2, _ = timed(run_pleval, d2)
        print(f"pleval, {G:,} schools ({len(d2):,} rows): {s2:.3f} s, peak {mb2:.0f} MB traced")


if __name__ == "__main__":
    main()
