"""Benchmark: entropy balancing at 1M rows and 20 moments (issue 18's target: ≤ 2 s).

    python benchmarks/bench_ebal.py            # 1,000,000 rows
    python benchmarks/bench_ebal.py --rows 100000

The data: 10 normal covariates, treatment by a logit on the first (~30% treated), balance
columns the covariates and their squares (20 moments), ATT. Timed: the solver,
:func:`pleval.matching.ebal.entropy_weights`, median of ``--repeat`` runs. Beside it, the
time of one pass over the same matrix (a 1M × 20 matrix-vector product) in the same run, so
that the figure can be read on a loaded machine as a number of passes; the CPU seconds of the
process (``time.process_time``; single-threaded BLAS, so on a loaded machine the wall time is
the CPU time stretched by waiting for a core); and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pleval.matching.ebal import balance_columns, entropy_weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(a.rows, 10))
    t = (rng.random(a.rows) < 1 / (1 + np.exp(-(0.5 * X[:, 0] - 1)))).astype(int)
    C, _ = balance_columns(X, [f"x{j}" for j in range(10)], 2)
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    times, cpus, passes = [], [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        C @ np.ones(C.shape[1])
        passes.append(time.perf_counter() - t0)
        t0, c0 = time.perf_counter(), time.process_time()
        ew = entropy_weights(C, t)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    s, c, p = float(np.median(times)), float(np.median(cpus)), float(np.median(passes))
    print(f"entropy balancing, {a.rows:,} rows × {C.shape[1]} moments (ATT): {s:.2f} s wall, {c:.2f} CPU s "
          f"(target ≤ 2 s); {ew.iterations} Newton steps, largest remaining imbalance {ew.max_imbalance:.1e} SD")
    print(f"one pass (matrix-vector product) over the same matrix: {p:.3f} s; balancing = {s / p:.0f} passes")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
