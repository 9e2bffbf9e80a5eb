"""Benchmark: effects over time (``pleval.monitor.effects_over_time``) by panel size and reference.

    python benchmarks/bench_monitor.py [--panels 12:2,30:10,300:100,1500:3] [--repeat 1]

``simulate_panel`` data (one subject, the generator's defaults otherwise) with S schools of which
P are PL, for each ``S:P`` of ``--panels``; ``effects_over_time`` with its defaults (the equity
bands included) under the exact t reference (the default) and Satterthwaite's: CPU seconds of
each (best of ``--repeat``; numpy single-threaded: OPENBLAS_NUM_THREADS=1), the rows of the
panel, and how many per-year rows the exact reference computes (their Satterthwaite df at most
``EXACT_BELOW_DF``; the trend and exposure rows likewise). docs/monitor.md records these figures.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--panels", default="12:2,30:10,300:100,1500:3")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    from pleval.monitor import effects_over_time, simulate_panel
    from pleval.monitor.over_time import EXACT_BELOW_DF
    from sim_monitor_coverage import COLS as cols  # the panel's columns, as the coverage study names them

    with warnings.catch_warnings():  # first-call costs (imports, caches) out of the timings
        warnings.simplefilter("ignore")
        effects_over_time(simulate_panel(seed=0, n_schools=8, n_pl_schools=2, subjects=("math",)).data, cols)
    print(f"{'schools':>8} {'PL':>5} {'rows':>9} {'reference':>13} {'CPU-s':>7} {'exact per-year rows':>20}")
    for spec in a.panels.split(","):
        n_schools, n_pl = (int(v) for v in spec.split(":"))
        data = simulate_panel(seed=1, n_schools=n_schools, n_pl_schools=n_pl, subjects=("math",)).data
        needs = ""
        for reference in ("satterthwaite", "exact"):
            best = float("inf")
            for _ in range(a.repeat):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = time.process_time()
                    ot = effects_over_time(data, cols, reference=reference)
                    best = min(best, time.process_time() - t)
            if reference == "satterthwaite":  # the rows the exact reference recomputes
                needs = f"{int((ot.by_year['df'] <= EXACT_BELOW_DF).sum())} of {len(ot.by_year)}"
            print(f"{n_schools:>8} {n_pl:>5} {len(data):>9,} {reference:>13} {best:>7.2f} "
                  f"{needs if reference == 'exact' else '':>20}")


if __name__ == "__main__":
    main()
