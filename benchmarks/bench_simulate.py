"""Time and peak memory of the simulators: `python benchmarks/bench_simulate.py [--quick]`.

Each task runs in a fresh Python process; "peak MB" is that process's maximum resident set
size (including the interpreter and imported libraries, about 150 MB), "seconds" the wall
time of the call alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from pleval import simulate
func, kw = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
sim = getattr(simulate, func)(**kw)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps([sim.truth.details.get("n_students", len(sim.data)), len(sim.data), dt, peak]))
"""


def run(label: str, func: str, **kw) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, func, json.dumps(kw)], capture_output=True, text=True, check=True)
    n_students, rows, dt, peak = json.loads(out.stdout)
    print(f"{label:<34}{n_students:>11,}{rows:>12,}{dt:>10.2f}{peak:>10.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10k and 100k students only")
    quick = ap.parse_args().quick
    print(f"{'task':<34}{'students':>11}{'rows':>12}{'seconds':>10}{'peak MB':>10}")
    sizes = [(10_000, 60), (100_000, 600)] + ([] if quick else [(1_000_000, 6000)])
    for n, schools in sizes:
        run(f"matched, {schools} schools", "simulate_matched", n_schools=schools, n_pl_schools=max(1, schools // 10),
            students_per_grade=n / (schools * 6), seed=1)
    for n, schools in sizes:
        run(f"cluster RCT, {schools} schools", "simulate_cluster_rct", n_schools=schools, n_blocks=schools // 4,
            students_per_school=n / schools, seed=1)
    run("school effects, 5000 schools", "simulate_school_effects", n_schools=5000, seed=1)


if __name__ == "__main__":
    main()
