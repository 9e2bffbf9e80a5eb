"""Start-up time of the ``pleval`` command line.

Runs ``pleval --help``, ``pleval --version``, ``pleval convert 0.08`` and ``import pleval`` in
fresh processes and prints, per command, the median wall time and the median CPU time (user +
system) of ``--runs`` runs, and the machine's load average. Target: < 0.5 s wall on 2 cores.
On a loaded machine the wall time grows with the load while the CPU time stays close to what an
idle machine's wall time would be; both are printed.

``--src DIR`` puts DIR first on ``PYTHONPATH`` (e.g. an older checkout, to compare before and
after); the commands then run as ``python -c "from pleval.cli import app; app()" ARGS``, which is
what the ``pleval`` console script runs.

    python benchmarks/bench_cli_start.py [--runs 9] [--src DIR]
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


def _time(argv: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Run outside the checkout: `python -c` puts the working folder first on sys.path.
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--src", help="checkout whose pleval/ to time instead of the installed one")
    args = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([args.src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
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
