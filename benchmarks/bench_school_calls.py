"""The school effects of a ``pleval estimate`` run, fitted again in a warm process.

``--capture FILE DIR`` runs ``pleval estimate FILE`` (into a temporary folder) in this process
with every call of :func:`pleval.heterogeneity.school_effects` — the PL schools' in the main
process, the placebo rounds' in the forked worker — pickled into DIR (at 1M rows three calls,
about 560 MB). ``--time DIR`` loads them and times each call (``time.process_time``, one BLAS
thread, glibc's heap as the command sets it: :func:`pleval.cli.keep_freed_memory`), ``--repeat``
times, and prints each call's CPU seconds and their median total: the school effects' CPU as the
run spends it, without the rest of the run's noise. ``--save OUT`` keeps the first repetition's
tables and covariances (pickled) to compare two checkouts' numbers; ``--src DIR`` imports pleval
from DIR instead (an older checkout, to compare before and after).

    python benchmarks/bench_school_calls.py --capture students_2079.parquet /tmp/calls
    python benchmarks/bench_school_calls.py --time /tmp/calls [--repeat 3] [--save OUT] [--src DIR]
"""

from __future__ import annotations

import argparse
import gc
import glob
import itertools
import os
import pickle
import statistics
import sys
import tempfile
import time


def capture(file: str, folder: str) -> None:
    import pleval.heterogeneity as H
    import pleval.heterogeneity.placebo as P
    from pleval.cli import run

    os.makedirs(folder, exist_ok=True)
    fit, count = H.school_effects, itertools.count()

    def kept(*args, **kw):  # the call's arguments pickled, then the call
        with open(os.path.join(folder, f"call_{os.getpid()}_{next(count)}.pkl"), "wb") as f:
            pickle.dump((args, kw), f, protocol=5)
        return fit(*args, **kw)

    H.school_effects = P.school_effects = kept
    with tempfile.TemporaryDirectory() as out:
        sys.argv = ["pleval", "estimate", file, "--out", out, "--force", "-q"]
        run()


def timed(folder: str, repeat: int, save: str | None) -> None:
    from pleval._workers import limited
    from pleval.cli import keep_freed_memory
    from pleval.heterogeneity import school_effects

    keep_freed_memory()
    calls = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(folder, "call_*.pkl")))]
    totals, kept = [], []
    for rep in range(repeat):
        row = []
        for blob in calls:
            args, kw = pickle.loads(blob)
            gc.collect()
            with limited(1):
                t0 = time.process_time()
                res = school_effects(*args, **kw)
                row.append(time.process_time() - t0)
            if rep == 0 and save:
                kept.append((res.table, dict(res.vcov), dict(res.vcov_raw), dict(res.vcov_shrinkage)))
            del args, kw, res
        totals.append(sum(row))
        print(" ".join(f"{c:.3f}" for c in row), f"total {sum(row):.3f} CPU-s", flush=True)
    print(f"median total {statistics.median(totals):.3f}, least {min(totals):.3f} CPU-s")
    if save:
        with open(save, "wb") as f:
            pickle.dump(kept, f)


def replay_arguments(ap: argparse.ArgumentParser, target: str) -> argparse.Namespace:
    """A replay benchmark's arguments (``--capture FILE {target}``, ``--time {target}``,
    ``--repeat``, ``--save``, ``--src``, and those ``ap`` has), parsed, with one BLAS thread and no
    huge pages as the command's process has them, and pleval imported from ``--src`` if given."""
    ap.add_argument("--capture", nargs=2, metavar=("FILE", target))
    ap.add_argument("--time", metavar=target)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--save")
    ap.add_argument("--src", help="import pleval from this checkout")
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    if a.src:  # ahead of the installed (editable) package
        sys.meta_path[:] = [m for m in sys.meta_path if "editable" not in type(m).__name__.lower()]
        sys.path.insert(0, a.src)
    return a


def main():
    a = replay_arguments(argparse.ArgumentParser(), "DIR")
    if a.capture:
        capture(*a.capture)
    if a.time:
        timed(a.time, a.repeat, a.save)


if __name__ == "__main__":
    main()
