"""Benchmark: the two CR2 forms of the school effects' joint covariance on a matched sample at scale.

    python benchmarks/bench_school_cr2.py [--schools 624]

``simulate_matched`` students (~480 rows per school, a tenth of the schools PL; the scale
benchmarks' file), matched by ``pleval.match`` with its defaults (propensity, every tie kept),
the distinct (PL school, matched row) sample of ``MatchResult.school_sample`` — what
``pleval.estimate`` passes — and ``school_effects`` by subject with the pretest and the
covariates, clustered by comparison school (CR2, Satterthwaite df): CPU and wall seconds of
each form (best of ``--repeat``; numpy single-threaded: OPENBLAS_NUM_THREADS=1), their ratio,
and how far the per-school variances and df of the two forms differ.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schools", type=int, default=624)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    import pleval
    from pleval.data import SAMPLE_COLUMNS, resolve_columns
    from pleval.heterogeneity import school_effects
    from pleval.simulate import simulate_matched

    df = simulate_matched(n_schools=a.schools, n_pl_schools=a.schools // 10, students_per_grade=40, seed=1).data
    cols = resolve_columns(df, SAMPLE_COLUMNS)[0]
    m = pleval.match(df, cols)
    covs = [*cols.pretest, *cols.covariates]
    sample = m.school_sample([cols.treatment, cols.outcome, *covs, cols.student_id, cols.school, cols.subject])
    kw = dict(stratum="_pl_school", weight="_weight", weight2="_weight2", copies="_copies", treatment=cols.treatment,
              outcome=cols.outcome, covariates=covs, cluster=cols.student_id, school=cols.school,
              unit_id=cols.student_id, by=cols.subject, sd=1.0)
    out = {}
    for form in ("transformed", "clubsandwich"):
        best = (np.inf, np.inf)
        for _ in range(a.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            res = school_effects(sample, cr2=form, **kw)
            best = min(best[0], time.perf_counter() - t0), min(best[1], time.process_time() - c0)
        out[form] = (best, res.table)
    (wt, ct), t_old = out["transformed"]
    (wn, cn), t_new = out["clubsandwich"]
    print(f"{len(df):,} student rows, {len(sample):,} distinct (PL school, row) pairs, {df[cols.school].nunique()} schools; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"school_effects, cr2='transformed': {wt:.2f} s wall, {ct:.2f} s CPU")
    print(f"school_effects, cr2='clubsandwich' (default): {wn:.2f} s wall, {cn:.2f} s CPU ({cn / ct:.2f}x CPU)")
    ok = np.isfinite(t_old["se"]) & np.isfinite(t_new["se"])
    r = (t_new["se"][ok] / t_old["se"][ok]) ** 2
    d = t_new["df"][ok] / t_old["df"][ok]
    print(f"variance ratio clubsandwich/transformed: median {r.median():.4f} (range {r.min():.4f}–{r.max():.4f}); "
          f"df ratio median {d.median():.3f} (range {d.min():.3f}–{d.max():.3f})")


if __name__ == "__main__":
    main()
