"""Start-up time of the ``pleval`` command line.

Runs ``pleval --help``, ``pleval --version``, ``pleval convert 0.08`` and ``import pleval`` in
fresh processes and prints, per command, the median wall time and the median CPU time (user +
system) of ``--runs`` runs, and the machine's load average. Target: < 0.5 s wall on 2 cores.
On a loaded machine the wall time grows with the load while the CPU time stays close to what an
idle machine's wall time would be; both are printed.

``--src DIR`` puts DIR first on ``PYTHONPATH`` (e.g. an older checkout, to compare before and
after); the commands then run as ``python -c "from pleval.cli import app; app()" ARGS``, which is
what the ``pleval`` console script runs.

``--estimate FILE`` times instead the serial start of ``pleval estimate FILE`` (into a temporary
folder): per run, the wall time from the process's start to its first fork (the placebo worker,
which runs the placebo rounds beside the rest), the CPU time of the process by then, and the
whole run's wall time. Until that fork the run has one process (its threads: the file's reading
and checks beside the analysis' imports, the propensity fit beside the student ids' coding).
``--python`` times another interpreter (e.g. an older checkout's .venv), alternating run by run
with this one, so both see the same load.

    python benchmarks/bench_cli_start.py [--runs 9] [--src DIR]
    python benchmarks/bench_cli_start.py --estimate students.parquet [--runs 5] [--python OTHER]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "pleval --help": ["--help"],
    "pleval --version": ["--version"],
    "pleval convert 0.08": ["convert", "0.08"],
}
RUN_APP = "import sys; sys.argv[0] = 'pleval'; from pleval.cli import app; app()"
# The console script (pleval.cli.run), reporting on stderr the wall time from T0 (the parent's clock
# before it started the process) to the process's first fork and the process's CPU time by then.
RUN_TO_FORK = """import os, sys, time
t0 = float(os.environ["BENCH_T0"])
def at_fork():
    if not getattr(at_fork, "seen", False):
        at_fork.seen = True
        cpu = os.times()
        sys.stderr.write(f"bench-fork {time.time() - t0:.4f} {cpu.user + cpu.system:.4f}\\n")
os.register_at_fork(before=at_fork)
sys.argv[0] = "pleval"
from pleval.cli import run
run()
"""


def _time(argv: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Run outside the checkout: `python -c` puts the working folder first on sys.path.
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _to_fork(python: str, file: str, out: str, env: dict) -> tuple[float, float, float]:
    """One ``pleval estimate``: seconds to its first fork, CPU seconds by then, seconds in all."""
    argv = [python, "-c", RUN_TO_FORK, "estimate", file, "--out", out, "--force", "-q"]
    t0 = time.time()
    r = subprocess.run(argv, env=dict(env, BENCH_T0=repr(t0)), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    wall = time.time() - t0
    line = next((x for x in r.stderr.splitlines() if x.startswith("bench-fork ")), None)
    if line is None:
        raise SystemExit(f"{python}: no fork (no placebo worker: one core, or --workers 1?)")
    fork, cpu = map(float, line.split()[1:])
    return fork, cpu, wall


def _estimate_start(file: str, runs: int, pythons: list[str], env: dict) -> None:
    print(f"pleval estimate {file}: start to the placebo worker's fork, median of {runs} runs (alternating); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'python':50s} {'fork s':>7s} {'CPU s':>7s} {'total s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list] = {p: [] for p in pythons}
        for _ in range(runs):
            for p in pythons:
                times[p].append(_to_fork(p, file, os.path.join(tmp, "out"), env))
        for p, t in times.items():
            fork, cpu, wall = (statistics.median(x[j] for x in t) for j in range(3))
            print(f"{p[-50:]:50s} {fork:7.3f} {cpu:7.3f} {wall:8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--src", help="checkout whose pleval/ to time instead of the installed one")
    ap.add_argument("--estimate", metavar="FILE", help="time pleval estimate FILE's start to its placebo worker's fork")
    ap.add_argument("--python", help="with --estimate: another interpreter to time, alternating with this one")
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([args.src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if args.estimate:
        _estimate_start(os.path.abspath(args.estimate), args.runs,
                        [sys.executable] + ([args.python] if args.python else []), env)
        return
    cases = {name: [sys.executable, "-c", RUN_APP, *cmd] for name, cmd in COMMANDS.items()}
    cases["python -c 'import pleval'"] = [sys.executable, "-c", "import pleval"]
    cases["python -c pass (interpreter alone)"] = [sys.executable, "-c", "pass"]
    for argv in cases.values():  # warm the file cache
        _time(argv, env)
    where = subprocess.run([sys.executable, "-c", "import pleval; print(pleval.__file__)"], env=env, check=True,
                           capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout.strip()
    print(f"pleval start-up ({where}), median of {args.runs} runs; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'command':38s} {'wall s':>7s} {'CPU s':>7s}")
    for name, argv in cases.items():
        runs = [_time(argv, env) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{name:38s} {wall:7.3f} {cpu:7.3f}")


if __name__ == "__main__":
    main()
