"""Wild cluster bootstrap speed (issue 18 target: 9,999 draws, 1,000,000 rows, 30 clusters ≤ 5 s).

Prints the wall time (median of 3 runs) of :func:`pleval.inference.wild.wild_cluster_bootstrap`
with the test and the inverted 95% CI, Rademacher and Webb weights, and of the CR1 fit alone
for scale. Run: ``python benchmarks/bench_wild_bootstrap.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from pleval.inference import ols
from pleval.inference.wild import wild_cluster_bootstrap


def main(n: int = 1_000_000, G: int = 30, B: int = 9999) -> None:
    rng = np.random.default_rng(1)
    cl = rng.integers(0, G, n)
    z = (cl % 2).astype(float)
    pre = rng.normal(size=n)
    X = np.column_stack([np.ones(n), z, pre, rng.normal(size=n), rng.integers(0, 2, n)])
    y = X @ [0.0, 0.1, 0.6, 0.2, -0.1] + rng.normal(size=G)[cl] * 0.3 + rng.normal(size=n)
    print(f"n = {n:,}, G = {G}, k = {X.shape[1]}, B = {B:,}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, fn in (
        ("CR1 fit alone", lambda: ols(y, X, clusters=cl, vcov="CR1")),
        ("wild bootstrap, Rademacher, p + CI", lambda: wild_cluster_bootstrap(y, X, cl, 1, B=B, seed=3)),
        ("wild bootstrap, Webb, p + CI", lambda: wild_cluster_bootstrap(y, X, cl, 1, B=B, weights="webb", seed=3)),
        ("wild bootstrap, Rademacher, p only", lambda: wild_cluster_bootstrap(y, X, cl, 1, B=B, seed=3, ci=False)),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"{label:<40}{np.median(times):7.2f} s")


if __name__ == "__main__":
    main()
