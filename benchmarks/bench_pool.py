"""Out-of-core matching: 100k PL students against a pool of N rows stored as a Parquet dataset.

    python benchmarks/bench_pool.py                       # N = 1M, 10k PL (what `make bench` runs)
    python benchmarks/bench_pool.py --rows 10_000_000 --method vcg
    python benchmarks/bench_pool.py --rows 100_000_000 --method vcg --dir /tmp/pleval_pool

PL students: 100k from N = 10M on (``--pl`` to change). The pool is generated once (not committed) under ``--dir`` (default benchmarks/out/pool_N):
Parquet files of 5M rows each, rows in random order (no partition pruning: every partition
query scans the whole dataset), students in grades 3–8 × math/reading from non-PL schools,
keys as in the sample data (female, frl, ell, sped, race), a continuous pretest (with integer
scores at this scale VCG's ties rule keeps every comparison tied at the 51st distance:
hundreds per PL student). The PL file (100k rows) is drawn from the same model in other
schools with a shifted pretest. The run is ``pleval.pool.match_pool`` with the DuckDB engine,
then the balance table and the effect by subject on the matched sample; it prints wall time,
CPU time (all threads: what the run costs whatever else the machine is doing), peak resident memory of the process (DuckDB runs in it), the machine's load, and the targets
(≤ 15 minutes, ≤ 8 GB at 100M rows).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

RACES = np.array(["white", "hispanic", "black", "asian", "other"])
CHUNK = 5_000_000


def _students(rng, n: int, first_id: int, schools: tuple[int, int], shift: float) -> pd.DataFrame:
    grade = rng.integers(3, 9, n)
    female = rng.integers(0, 2, n)
    frl = (rng.random(n) < 0.45).astype(np.int64)
    ell = (rng.random(n) < 0.1).astype(np.int64)
    sped = (rng.random(n) < 0.12).astype(np.int64)
    race = RACES[rng.choice(5, n, p=[0.5, 0.25, 0.15, 0.05, 0.05])]
    pre = 160 + 8 * grade - 6 * frl - 4 * ell - 8 * sped + shift + rng.normal(0, 14, n)
    post = pre + 6 + rng.normal(0, 8, n)
    return pd.DataFrame({
        "student_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "school_id": rng.integers(*schools, n), "grade": grade,
        "subject": np.where(rng.random(n) < 0.5, "math", "reading"),
        "pretest": pre, "posttest": post, "female": female, "frl": frl, "ell": ell, "sped": sped, "race": race,
    })


def generate(path: Path, rows: int) -> None:
    """The pool, as Parquet files of 5M rows (skipped if already there)."""
    done = path / "_COMPLETE"
    if done.exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, lo in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - lo)
        rng = np.random.default_rng(1000 + i)
        _students(rng, n, 10_000_000 + lo, (1000, 60_000), 0.0).to_parquet(path / f"part{i:04d}.parquet", index=False)
        print(f"  wrote {lo + n:,} rows", file=sys.stderr, flush=True)
    done.write_text(str(rows))
    print(f"generated {rows:,} pool rows in {time.perf_counter() - t0:.0f} s ({path})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=1_000_000)
    ap.add_argument("--pl", type=lambda s: int(s.replace("_", "")), default=None)
    ap.add_argument("--method", default="vcg", choices=("vcg", "propensity"))
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    args.pl = args.pl or (100_000 if args.rows >= 10_000_000 else 10_000)
    path = Path(args.dir or Path(__file__).parent / "out" / f"pool_{args.rows}")
    generate(path, args.rows)

    from pleval.data import SAMPLE_COLUMNS
    from pleval.pool import match_pool

    pl = _students(np.random.default_rng(7), args.pl, 1, (1, 1000), 3.0).assign(treatment=1)
    shown = {"last": None}

    def progress(message, done=None, total=None):
        line = f"{message}" + (f" {done}/{total}" if total else (f" {done}" if done is not None else ""))
        if line != shown["last"]:
            print(f"  [{time.perf_counter() - t0:7.1f} s] {line}", file=sys.stderr, flush=True)
            shown["last"] = line

    t0 = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    m = match_pool(pl, path, SAMPLE_COLUMNS, args.method, progress=progress)
    t_match = time.perf_counter() - t0
    bal = m.balance()
    eff = m.estimate(by="subject")
    t_all = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak_gb = ru.ru_maxrss / 1024**2
    cpu = ru.ru_utime + ru.ru_stime - cpu0
    load = os.getloadavg()
    print(f"pool {args.rows:,} rows, PL {args.pl:,} rows, method {args.method}: match {t_match:.0f} s, "
          f"match + balance + estimate {t_all:.0f} s ({t_all / 60:.1f} min; CPU {cpu:.0f} s), peak RSS {peak_gb:.2f} GB; "
          f"matched sample {len(m.rows):,} rows ({m.n_comparison_used:,} distinct comparisons); "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores")
    print(f"  targets at 100M rows: <= 15 min ({t_all / 60:.1f} min here), <= 8 GB ({peak_gb:.2f} GB here)")
    print(f"  |SMD| after, largest: {bal.table['smd_after'].abs().max():.3f}; effect (math, points): "
          f"{eff[('math',)].raw.estimate:+.2f}")


if __name__ == "__main__":
    main()
