"""Benchmark: the whole evaluation, ``pleval.estimate`` and ``pleval.report.save``, by size.

    python benchmarks/bench_estimate.py [--quick]

Matched design (propensity matching, school effects, placebo schools) on simulated students
(`pleval.simulate.simulate_matched`, two subjects) at several sizes, and the cluster-RCT sample
file. Prints wall time of each step (one untraced run; these are seconds-long end-to-end steps),
the peak traced memory of ``estimate`` (tracemalloc, a second run: Python and numpy
allocations) and the process's peak resident memory at the end of each size. The outputs folder
is written to a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def traced_peak(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import pleval
    from pleval import report
    from pleval.simulate import simulate_matched

    sizes = [(60, 8, 10), (300, 32, 15)] if args.quick else [(60, 8, 10), (300, 32, 15), (1000, 100, 40), (3000, 300, 50)]
    root = Path(__file__).resolve().parents[1]
    print(f"{'data':<40}{'rows':>11}{'estimate s':>12}{'traced MB':>11}{'save s':>9}{'peak RSS MB':>13}")

    def row(name, n, data, **kw):
        ev, t_est = timed(lambda: pleval.estimate(data, **kw))
        m_est = traced_peak(lambda: pleval.estimate(data, **kw))
        with tempfile.TemporaryDirectory() as tmp:
            _, t_save = timed(lambda: report.save(ev, Path(tmp) / "out"))
        print(f"{name:<40}{n:>11,}{t_est:>12.2f}{m_est:>11.0f}{t_save:>9.2f}{rss_mb():>13.0f}", flush=True)

    for n_schools, n_pl, per_grade in sizes:
        data = simulate_matched(n_schools=n_schools, n_pl_schools=n_pl, students_per_grade=per_grade, seed=1).data
        row(f"matched, {n_schools} schools ({n_pl} PL)", len(data), data, seed=0)
    rct = root / "sample_data" / "pl_cluster_rct.csv"
    if rct.exists():
        row("rct sample file (40 schools)", 10628, rct, design="rct")


if __name__ == "__main__":
    main()
