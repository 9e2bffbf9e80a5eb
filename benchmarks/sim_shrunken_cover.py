"""Coverage of the shrunken school intervals of ``school_effects`` (docs/heterogeneity.md,
"Empirical-Bayes shrinkage").

    python benchmarks/sim_shrunken_cover.py [--studies 800] [--seed 3] [--methods REML DL PM]
                                            [--taus 0.05 0.10 0.15] [--k 15]

``--k`` independent schools with SEs evenly spaced from 0.06 to 0.16, true effects
``θ_i ~ N(0.1, τ²)``, estimates ``y_i ~ N(θ_i, SE_i²)``. Each study goes through
:func:`pleval.heterogeneity.school_inference.pool_schools` (what ``school_effects`` and
``pleval schools`` run), and the script prints, per method and τ, the share of schools whose
true effect lies in ``θ̃ ± z·SD`` (%, ± the Monte Carlo SE over studies) for

* ``PR``: pleval's SD, ``√(g₁ + g₂ + 2g₃)`` (Prasad & Rao 1990);
* ``known``: ``√(g₁ + g₂)``, τ̂² treated as known (metafor's ``blup()``);
* ``near``/``far``: pleval's intervals for the third of the schools nearest to and farthest
  from μ̂ in each study.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pleval.heterogeneity.school_inference import pool_schools  # noqa: E402


def run(method: str, tau: float, k: int, studies: int, seed: int) -> dict[str, tuple[float, float]]:
    """Coverage (%, Monte Carlo SE) of the shrunken 95% intervals over ``studies`` studies."""
    rng = np.random.default_rng(seed)
    se = np.linspace(0.06, 0.16, k)
    v = se**2
    z = stats.norm.ppf(0.975)
    rec: dict[str, list] = {"PR": [], "known": [], "near": [], "far": []}
    for _ in range(studies):
        theta = 0.1 + tau * rng.standard_normal(k)
        y = theta + se * rng.standard_normal(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, sh = pool_schools(y, se, method=method)
        w = 1.0 / (v + m.tau2)
        known = np.sqrt(sh.reliability * v + (1.0 - sh.reliability) ** 2 / w.sum())
        err = np.abs(sh.shrunk - theta)
        ok = err <= z * sh.shrunk_sd
        d = np.abs(y - sh.mu)
        rec["PR"].append(ok.mean())
        rec["known"].append(np.mean(err <= z * known))
        rec["near"].append(ok[d <= np.quantile(d, 1 / 3)].mean())
        rec["far"].append(ok[d >= np.quantile(d, 2 / 3)].mean())
    return {key: (100 * np.mean(x), 100 * np.std(x, ddof=1) / math.sqrt(studies)) for key, x in rec.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=800)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--methods", nargs="*", default=["REML", "DL", "PM"])
    ap.add_argument("--taus", nargs="*", type=float, default=[0.05, 0.10, 0.15])
    a = ap.parse_args()
    for method in a.methods:
        for tau in a.taus:
            r = run(method, tau, a.k, a.studies, a.seed)
            print(f"{method} k={a.k} tau={tau:.2f} studies={a.studies}: "
                  + "; ".join(f"{key} {m:.1f} ± {s:.1f}" for key, (m, s) in r.items()), flush=True)


if __name__ == "__main__":
    main()
