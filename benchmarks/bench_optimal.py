"""Benchmark: optimal pair matching and optimal full matching within exact strata.

    python benchmarks/bench_optimal.py            # issue 18's sizes
    python benchmarks/bench_optimal.py --quick    # a tenth of them

Targets (issue 18): optimal pair matching of 5,000 treated × 50,000 comparison units within
exact strata in ≤ 10 s; full matching of 10,000 × 100,000 in ≤ 60 s. The data: a logit
propensity score (treated shifted by 0.5 SD) on a 1e-10 grid, as ``pleval.match`` uses it, and
exact strata of grade × subject (``--cells``, default 12 = 6 grades × 2 subjects). The timed
calls are the matching cores, :func:`pleval.matching.optimal.match_optimal` and
:func:`pleval.matching.full.match_full` (the propensity model is timed in bench_matching.py).
Each is the median of ``--repeat`` runs; the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pleval.matching.full import match_full
from pleval.matching.optimal import match_optimal


def data(n_t: int, n_c: int, cells: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.round(rng.normal(0.5, 1.0, n_t) - 2.0, 10)
    c = np.round(rng.normal(0.0, 1.0, n_c) - 2.0, 10)
    return t, c, rng.integers(0, cells, n_t), rng.integers(0, cells, n_c)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cells", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    f = 10 if a.quick else 1
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores; {a.cells} exact cells")
    t, c, tc, cc = data(5_000 // f, 50_000 // f, a.cells)
    s = timed(lambda: match_optimal(t, c, t_cell=tc, c_cell=cc), a.repeat)
    print(f"optimal pair 1:1, {len(t):,} × {len(c):,}: {s:.2f} s (target ≤ 10 s)")
    s = timed(lambda: match_optimal(t, c, k=2, t_cell=tc, c_cell=cc), a.repeat)
    print(f"optimal pair 1:2, {len(t):,} × {len(c):,}: {s:.2f} s")
    t, c, tc, cc = data(10_000 // f, 100_000 // f, a.cells, seed=1)
    s = timed(lambda: match_full(t, c, t_cell=tc, c_cell=cc), a.repeat)
    print(f"full matching, {len(t):,} × {len(c):,}: {s:.2f} s (target ≤ 60 s)")
    s = timed(lambda: match_full(t, c), a.repeat)
    print(f"full matching, {len(t):,} × {len(c):,}, one stratum: {s:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
