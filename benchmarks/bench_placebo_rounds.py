"""The placebo worker's job of a ``pleval estimate`` run, played again in one process.

``--capture FILE OUT`` runs ``pleval estimate FILE`` (into a temporary folder) in this process
with the forked worker's job (``pleval.estimate._placebo_rounds_job``: its rounds' matches, school
samples and school effects) pickling its arguments — the data, the analysis's validation and the
``_reuse`` store it inherits at the fork — and the SD it receives into OUT (1M rows: about
300 MB). ``--time OUT`` loads them and runs the job ``--repeat`` times after one untimed run (its
lazy imports, which the real worker inherits), each from a fresh unpickling, as the worker does
(one thread: ``pleval._workers`` as in a child; one BLAS thread; glibc's heap as the command sets
it), and prints each run's CPU seconds (``time.process_time``) and their median. ``--no-effects``
takes each round's school effects from ``--check``'s tables instead of fitting them: the rest of
the job (order, matches, school samples), whose CPU the full job's noise hides. ``--save REF``
keeps the last run's result (pickled); ``--check REF`` compares the result with it (placebo
tables, rounds and covariances equal); ``--src DIR`` imports pleval from DIR instead (another
checkout, to compare before and after).

    python benchmarks/bench_placebo_rounds.py --capture students_2079.parquet /tmp/job.pkl
    python benchmarks/bench_placebo_rounds.py --time /tmp/job.pkl [--repeat 3] [--save REF | --check REF]
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import sys
import tempfile
import time


def capture(file: str, out: str) -> None:
    import importlib

    from pleval.cli import run

    E = importlib.import_module("pleval.estimate")  # (pleval.estimate is also the name of a function)
    job = E._placebo_rounds_job

    def kept(receive, *args, **kw):  # in the worker: its arguments and the SD pickled once the SD is received
        def sd():
            value = receive()
            with open(out, "wb") as f:
                pickle.dump((args, kw, value), f, protocol=5)
            return value

        return job(sd, *args, **kw)

    E._placebo_rounds_job = kept
    with tempfile.TemporaryDirectory() as folder:
        sys.argv = ["pleval", "estimate", file, "--out", folder, "--force", "-q"]
        run()


def timed(path: str, repeat: int, save: str | None, check: str | None, no_effects: bool) -> None:
    import importlib

    import pleval._workers as W
    import pleval.heterogeneity.placebo as P
    from pleval.cli import keep_freed_memory

    E = importlib.import_module("pleval.estimate")
    keep_freed_memory()
    W._in_child = True  # one thread, as in the worker
    ref = None
    if check:
        with open(check, "rb") as f:
            ref = pickle.load(f)
    if no_effects:  # each round's table as the reference has it (rounds numbered 0, 1, ...)
        if ref is None:
            raise SystemExit("--no-effects takes the school effects from --check's result")
        rnd = iter(range(10**9))

        class Tables:
            def __init__(self):
                t = ref.placebo
                self.table = t[t["round"] == next(rnd)].drop(columns="round").reset_index(drop=True)
                self.vcov, self.options = {}, {"covariates_left_out": ()}

        P._round_effects = lambda m, kw: Tables()
    with open(path, "rb") as f:
        blob = f.read()
    times = []
    for rep in range(repeat + 1):
        if no_effects:
            rnd = iter(range(10**9))
        args, kw, sd = pickle.loads(blob)
        gc.collect()
        t0 = time.process_time()
        res = E._placebo_rounds_job(lambda: sd, *args, **kw)
        if rep:  # (the first: the lazy imports)
            times.append(time.process_time() - t0)
            print(f"{times[-1]:.3f} CPU-s", flush=True)
        del args, kw
    print(f"median {statistics.median(times):.3f}, least {min(times):.3f} CPU-s")
    if save:
        with open(save, "wb") as f:
            pickle.dump(res, f)
    if ref is not None:
        assert res.rounds.equals(ref.rounds), "the rounds differ"
        if not no_effects:
            assert res.placebo.equals(ref.placebo), "the placebo tables differ"
            assert list(res.placebo_vcov) == list(ref.placebo_vcov)
            assert all(res.placebo_vcov[k].equals(ref.placebo_vcov[k]) for k in ref.placebo_vcov), "covariances differ"
        print("the same result as", check)


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_school_calls import replay_arguments

    ap = argparse.ArgumentParser()
    ap.add_argument("--check")
    ap.add_argument("--no-effects", action="store_true")
    a = replay_arguments(ap, "OUT")
    if a.capture:
        capture(*a.capture)
    if a.time:
        timed(a.time, a.repeat, a.save, a.check, a.no_effects)


if __name__ == "__main__":
    main()
