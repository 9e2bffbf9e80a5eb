"""Benchmark: sensitivity to unobserved confounding (``pleval.sensitivity``).

    python benchmarks/bench_sensitivity.py [--quick]

1. One subject's matched sample of 1M rows (500k pairs; and 1:5 sets), 5,000 schools: the main
   estimate (its design matrix and the matched regression with CR2 by school, as
   ``MatchResult.group_fits`` / ``pleval estimate`` compute it) and, beyond it, every
   sensitivity quantity :func:`pleval.sensitivity.sensitivity` computes for a subject from that
   design — the cross-products, the omitted-variable bounds for every covariate benchmark, the
   E-values, the covariate-adjusted responses and the Rosenbaum bounds with Γ at α (no
   Hodges–Lehmann intervals, which are computed only at Γ values the user lists).
2. The Rosenbaum Γ search alone at 100k matched sets: pairs, 1:5 sets and VCG-like sets of 2–52.
3. One Hodges–Lehmann range and interval at Γ = 1.5 for 100k pairs.
Median of 3 runs, wall seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd


def best_of(fn, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matched_sample(n_sets: int, k: int, n_schools: int, rng) -> pd.DataFrame:
    """Matched-set long format: each set's PL row then k comparisons (weights 1/k)."""
    n = n_sets * (k + 1)
    t = np.tile(np.r_[1, np.zeros(k)], n_sets)
    school = rng.integers(0, n_schools, n)
    pre = rng.normal(200, 15, n)
    race = rng.choice(np.array(["white", "black", "hispanic", "asian"]), n)
    frl = rng.binomial(1, 0.5, n)
    y = 5 + 0.95 * pre + 1.0 * t - 2 * frl + rng.normal(0, 6, n) + rng.normal(0, 3, n_schools)[school]
    return pd.DataFrame({
        "posttest": y, "treatment": t.astype(int), "pretest": pre, "female": rng.binomial(1, 0.5, n), "frl": frl,
        "ell": rng.binomial(1, 0.1, n), "sped": rng.binomial(1, 0.12, n), "race": race,
        "grade": rng.integers(3, 9, n), "school_id": school, "_set": np.repeat(np.arange(n_sets), k + 1),
        "_weight": np.where(t == 1, 1.0, 1.0 / k),
    })


COVS = ("female", "frl", "ell", "sped", "race")


def main_estimate(m: pd.DataFrame):
    """The design and the matched regression (CR2 by school), as pleval estimate fits them."""
    from pleval.matching.effect import effect_design, regression_effect

    kw = dict(outcome="posttest", treatment="treatment", pretests=("pretest",), covariates=COVS, strata=("grade",),
              school="school_id")
    des = effect_design(m, **kw)
    return des, regression_effect(m, **kw, design=des)


def sensitivity_steps(m: pd.DataFrame, des, eff):
    """What pleval.sensitivity.sensitivity does for one subject beyond the main estimate
    (without Hodges–Lehmann intervals)."""
    from pleval.sensitivity import evalue_smd, ovb_from_design, rosenbaum_bounds
    from pleval.sensitivity.ovb import Gram

    g = Gram(des.y, des.X, des.weights, constant=[0])
    bench = {b: [n for n, s in zip(des.names, des.source) if s == b] for b in ("pretest",) + COVS}
    ovb_from_design(des.y, des.X, des.names, "treatment", weights=des.weights, benchmarks=bench, se=eff.raw.se,
                    df=eff.raw.df, gram=g)
    evalue_smd(eff.effect_size.estimate, eff.effect_size.ci_low, eff.effect_size.ci_high)
    d = des.names.index("treatment")
    resid = g.residuals(des.y, des.X, [j for j in range(len(des.names)) if j != d])
    rosenbaum_bounds(resid, m["_set"].to_numpy(), m["treatment"].to_numpy().astype(bool))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    args = ap.parse_args()
    from pleval.sensitivity import rosenbaum_bounds

    rng = np.random.default_rng(1)
    rows = 100_000 if args.quick else 1_000_000
    print(f"{'one subject, matched rows':<44}{'main estimate s':>16}{'sensitivity s':>15}")
    for k in (1, 5):
        m = matched_sample(rows // (k + 1), k, 5000, rng)
        des, eff = main_estimate(m)
        t_main = best_of(lambda: main_estimate(m))
        t_sens = best_of(lambda: sensitivity_steps(m, des, eff))
        print(f"{f'{len(m):,} rows, 1:{k} sets':<44}{t_main:>16.2f}{t_sens:>15.2f}")

    print(f"\n{'Rosenbaum Γ search, 100k matched sets':<44}{'rows':>16}{'seconds':>15}")
    n_sets = 100_000
    for name, sizes in (("pairs (signed rank)", np.full(n_sets, 2)), ("1:5 sets (aligned ranks)", np.full(n_sets, 6)),
                        ("VCG-like sets of 2-52 (aligned ranks)", rng.integers(2, 53, n_sets))):
        ids = np.repeat(np.arange(n_sets), sizes)
        first = np.r_[0, np.cumsum(sizes)[:-1]]
        tr = np.zeros(len(ids), bool)
        tr[first] = True
        y = rng.normal(size=len(ids)) + 0.1 * tr
        secs = best_of(lambda: rosenbaum_bounds(y, ids, tr, gammas=[1.0]))
        print(f"{name:<44}{len(ids):>16,}{secs:>15.2f}")
    ids = np.repeat(np.arange(n_sets), 2)
    tr = np.tile([True, False], n_sets)
    y = rng.normal(size=2 * n_sets) + 0.1 * tr
    secs = best_of(lambda: rosenbaum_bounds(y, ids, tr, gammas=[1.0], hl_gammas=[1.5]), reps=1)
    print(f"{'+ Hodges-Lehmann range and interval at Γ=1.5, pairs':<44}{2 * n_sets:>16,}{secs:>15.2f}")


if __name__ == "__main__":
    main()
