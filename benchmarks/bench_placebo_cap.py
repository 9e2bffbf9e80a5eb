"""Benchmark: placebo schools capped (``placebo_cap``, default 300) against every comparison school.

    python benchmarks/bench_placebo_cap.py --schools 1250            # ~600k rows, 1,125 comparison schools
    python benchmarks/bench_placebo_cap.py --schools 2079 --caps 300  # 1M rows, the default only

Simulated students as in ``bench_scale.py`` target 3 (``simulate_matched``: ~481 rows per
school, a tenth of the schools PL, school value-added SD 0.10, so placebo schools vary). Each
cap runs ``pleval.estimate`` (the analysis of ``pleval estimate``, without the outputs) in a
fresh process and reports its CPU and wall seconds and peak memory (with the load average),
then, per subject, what the placebo figures are: the placebo schools used, τ̂²_placebo and
its CI, τ̂²_program and its CI, the calibrated counts; and, against the run with every
comparison school (``--caps`` containing 0), how far each figure moved: τ̂²_placebo relative
to its SE, whether the capped CI covers the all-schools estimate, the largest change of a PL
school's calibrated p-value (raw and adjusted) and whether any calibrated verdict changed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

COMPARISON = ["k_placebo", "tau2_placebo", "tau2_placebo_se", "tau2_placebo_ci_low", "tau2_placebo_ci_high", "tau2_program",
              "tau2_program_ci_low", "tau2_program_ci_high", "calibrated_positive", "calibrated_negative"]
SCHOOL = ["school", "p_calibrated", "p_calibrated_adjusted", "se_calibrated"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _child(path: str, cap: int, q) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import pleval.matching  # noqa: F401  (imports before the clock)
    from pleval.checks import check
    from pleval.data import read_table
    from pleval.estimate import estimate

    df = read_table(path)
    chk = check(df, design="matched")
    c0, w0 = _cpu(), time.perf_counter()
    ev = estimate(df, chk.columns, design="matched", seed=0, checked=chk, placebo_cap=cap)
    cpu, wall = _cpu() - c0, time.perf_counter() - w0
    comp, schools = [], []
    for subj, d in ev.details.items():
        pl = d.get("placebo")
        if pl is None:
            continue
        c = pl.comparison
        c = c[c[pl.by[0]] == subj] if pl.by else c
        comp.append(c[COMPARISON].assign(subject=subj))
        t = pl.calibrated
        t = t[t[pl.by[0]] == subj] if pl.by else t
        schools.append(t[SCHOOL].assign(subject=subj))
        extent = pl.extent()
    q.put({"rows": len(df), "cpu": cpu, "wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "extent": extent, "comparison": pd.concat(comp), "schools": pd.concat(schools)})


def run(path: Path, cap: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(path), cap, q))
    p.start()
    out = q.get(timeout=7200)
    p.join()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schools", type=int, default=1250, help="simulated schools (~481 rows each; a tenth PL)")
    ap.add_argument("--caps", default="300,0", help="comma-separated caps; 0 = every comparison school")
    ap.add_argument("--folder", default="", help="where the Parquet file is made (default: a temporary folder)")
    a = ap.parse_args(argv)
    from pleval.simulate import simulate_matched

    caps = [int(c) for c in a.caps.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.folder or tmp)
        path = folder / f"students_{a.schools}.parquet"
        if not path.exists():
            simulate_matched(n_schools=a.schools, n_pl_schools=a.schools // 10, students_per_grade=40,
                             seed=1).data.to_parquet(path, index=False)
        res = {}
        for cap in caps:
            load = os.getloadavg()
            r = res[cap] = run(path, cap)
            x = r["extent"]
            print(f"placebo_cap={cap}: {r['rows']:,} rows; {x['placebo_schools']:,} of {x['comparison_schools']:,} comparison "
                  f"schools in {x['rounds']} round(s) of {x['per_round']}; analysis {r['cpu']:.1f} s CPU, {r['wall']:.1f} s "
                  f"wall, peak {r['peak_mb']:.0f} MB (load average before {load[0]:.1f})", flush=True)
            with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 5):
                print(r["comparison"].set_index("subject").to_string(), flush=True)
    if 0 in res:
        base = res[0]
        for cap, r in res.items():
            if cap == 0:
                continue
            print(f"\nplacebo_cap={cap} against every comparison school ({r['cpu'] / base['cpu']:.2f}x the CPU):")
            for subj, c in r["comparison"].set_index("subject").iterrows():
                b = base["comparison"].set_index("subject").loc[subj]
                d = (c["tau2_placebo"] - b["tau2_placebo"])
                cover = c["tau2_placebo_ci_low"] <= b["tau2_placebo"] <= c["tau2_placebo_ci_high"]
                s = r["schools"][r["schools"].subject == subj].set_index("school")
                sb = base["schools"][base["schools"].subject == subj].set_index("school").loc[s.index]
                dp = np.abs(s["p_calibrated"] - sb["p_calibrated"])
                dpa = np.abs(s["p_calibrated_adjusted"] - sb["p_calibrated_adjusted"])
                alpha = 0.05
                flips = int(((s["p_calibrated_adjusted"] < alpha) != (sb["p_calibrated_adjusted"] < alpha)).sum())
                print(f"  {subj}: tau2_placebo {c['tau2_placebo']:.5f} vs {b['tau2_placebo']:.5f} (difference "
                      f"{d / b['tau2_placebo_se']:+.2f} SE of the all-schools estimate; capped CI "
                      f"{c['tau2_placebo_ci_low']:.5f} to {c['tau2_placebo_ci_high']:.5f} {'covers' if cover else 'misses'} it; "
                      f"CI width {(c['tau2_placebo_ci_high'] - c['tau2_placebo_ci_low']) / (b['tau2_placebo_ci_high'] - b['tau2_placebo_ci_low']):.2f}x); "
                      f"tau2_program {c['tau2_program']:.5f} vs {b['tau2_program']:.5f}; calibrated p: largest change "
                      f"{dp.max():.4f} (median {dp.median():.4f}), adjusted {dpa.max():.4f}; verdicts changed: {flips} of {len(s)}; "
                      f"calibrated +/- {int(c['calibrated_positive'])}/{int(c['calibrated_negative'])} vs "
                      f"{int(b['calibrated_positive'])}/{int(b['calibrated_negative'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
