"""Benchmark: leave-one-out meta-analyses and influence diagnostics for many schools.

    python benchmarks/bench_influence.py [--schools N]

Synthetic school estimates (5,000 schools by default, SEs 0.05–0.30, τ = 0.15, two outlying
schools). Prints the wall time of ``pleval.heterogeneity.leave_one_out`` for each τ²
estimator (best of 3), and for REML the time of refitting ``meta_analysis`` without each
school for a subset, extrapolated to all schools (the loop it replaces); then leave-one-out for a
meta-regression with one moderator at 500 and 1,000 schools (its cost grows as k²).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schools", type=int, default=5000)
    args = ap.parse_args()
    from pleval.heterogeneity import leave_one_out, meta_analysis

    k = args.schools
    rng = np.random.default_rng(0)
    se = rng.uniform(0.05, 0.30, k)
    y = rng.normal(0.1, 0.15, k) + se * rng.standard_normal(k)
    y[:2] += (1.2, -1.0)
    print(f"leave-one-out and influence diagnostics, {k:,} schools")
    for method in ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"):
        meta = meta_analysis(y, se, method=method)
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            inf = leave_one_out(meta)
            best = min(best, time.perf_counter() - t0)
        print(f"  {method:<5} {best:7.3f} s   (school that drives tau: {inf.drives_tau})")
    meta = meta_analysis(y, se)
    n_loop = 20
    t0 = time.perf_counter()
    for i in range(n_loop):
        keep = np.arange(k) != i
        meta_analysis(y[keep], se[keep])
    per = (time.perf_counter() - t0) / n_loop
    print(f"  loop of meta_analysis refits (REML): {per * k:7.1f} s extrapolated from {n_loop} refits")
    from pleval.heterogeneity import leave_one_out_metareg, meta_regression

    print(f"leave-one-out and influence, meta-regression with 1 moderator, {k:,} schools "
          f"(load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)")
    x = rng.normal(size=k)
    for method in ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "FE"):
        mr = meta_regression(y + 0.05 * x, se, x, method=method)
        best, cpu = np.inf, np.inf
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            inf = leave_one_out_metareg(mr)
            best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        print(f"  {method:<5} {best:7.3f} s wall, {cpu:6.3f} CPU s   (school that drives tau: {inf.drives_tau})")
    mr = meta_regression(y + 0.05 * x, se, x)
    t0 = time.perf_counter()
    for i in range(n_loop):
        keep = np.arange(k) != i
        meta_regression(y[keep] + 0.05 * x[keep], se[keep], x[keep])
    per = (time.perf_counter() - t0) / n_loop
    print(f"  loop of meta_regression refits (REML): {per * k:7.1f} s extrapolated from {n_loop} refits")


if __name__ == "__main__":
    main()
