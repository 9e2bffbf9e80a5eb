"""Meta-level simulation of the placebo-informed school inference (docs/heterogeneity.md, docs/validation.md).

    python benchmarks/sim_school_meta.py [--designs 10] [--studies 1000]

The full study (``sim_school_inference.py``) runs ``pleval.estimate`` once per replication
(seconds each). This one isolates the meta-analysis layer: it takes the joint covariances V (PL
schools) and V_p (placebo schools) that ``pleval.estimate`` produced on ``--designs`` data sets
of the independent generator (``tests/_school_sim.py``: 15 PL, 60 comparison schools), and for
each (τ, δ) draws ``--studies`` studies with those covariances known exactly:
``y = θ + g + e``, ``θ ~ N(0, τ²)``, ``g ~ N(0, δ²)``, ``e ~ N(0, V)``; placebo ``y_p = g_p + e_p``.
Each study goes through :func:`pleval.heterogeneity.calibrate` (what ``pleval.estimate`` uses)
and the PL-only meta-analysis, and the script prints the coverage (%, ± Monte Carlo SE) of

* the prediction interval for a new school's ``θ + g`` — placebo floor (pleval) and PL-only t(k−2);
* shrunken intervals of ``θ_s + g_s`` — Prasad–Rao ``2g₃`` (pleval) and Kackar–Harville ``g₃`` once;
* the τ²_program interval — Q-profile with the placebo offset (pleval) and MOVER from the two
  separate Q-profile intervals (Zou & Donner 2008; pleval's earlier interval);
* the τ²_placebo interval.
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
from tests._school_sim import generate  # noqa: E402

GRID = [(0.0, 0.10), (0.08, 0.10), (0.15, 0.10), (0.0, 0.0), (0.15, 0.0)]


def harvest(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(V, V_p) of ``pleval.estimate`` on ``n`` generated data sets (δ = 0.10, no program effect)."""
    import pleval
    from pleval.errors import PlevalWarning

    out = []
    for seed in range(n):  # a handful of data sets
        df, _, _ = generate(90_000 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            ev = pleval.estimate(df, design="matched", seed=seed, sd=15.0)
        se = ev.school_effects
        plc = next(d["placebo"] for d in ev.details.values() if "placebo" in d)
        key = next(iter(se.vcov))
        out.append((se.vcov[key].to_numpy(), plc.placebo_vcov[key].to_numpy()))
    return out


def mover(d1, ci1, d2, ci2):
    d = d1 - d2
    return (max(0.0, d - math.hypot(d1 - ci1[0], ci2[1] - d2)), max(0.0, d + math.hypot(ci1[1] - d1, d2 - ci2[0])))


def run(designs, tau: float, delta: float, studies: int, seed: int = 1) -> dict:
    from pleval.heterogeneity import calibrate, meta_analysis
    from pleval.heterogeneity.shrinkage import blup

    rng = np.random.default_rng(seed)
    rec: dict[str, list] = {}
    sd_new = math.hypot(tau, delta)

    def cover(lo, hi):  # exact probability that a new school's θ + g lies in [lo, hi]
        return stats.norm.cdf(hi / sd_new) - stats.norm.cdf(lo / sd_new) if sd_new > 0 else float(lo <= 0 <= hi)

    for b in range(studies):
        V, Vp = designs[b % len(designs)]
        k, m = len(V), len(Vp)
        truth = tau * rng.standard_normal(k) + delta * rng.standard_normal(k)
        y = truth + np.linalg.cholesky(V) @ rng.standard_normal(k)
        yp = delta * rng.standard_normal(m) + np.linalg.cholesky(Vp) @ rng.standard_normal(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = calibrate(np.arange(k), y, V, np.full(k, 60.0), yp, Vp)
            pl = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V, hartung_knapp=True)
        t2var = (c.pl.tau2_se if c.pl.tau2 >= c.placebo.tau2 else c.placebo.tau2_se) ** 2
        _, _, sh1, sd1, _ = blup(y, V, c.tau2_total, t2var / 2)  # g3 once
        lo, hi = mover(c.pl.tau2, c.pl.tau2_ci, c.placebo.tau2, c.placebo.tau2_ci)
        for name, v in (
            ("PI placebo floor", cover(*c.pi)),
            ("PI PL-only t(k-2)", cover(pl.pi_low, pl.pi_high)),
            ("shrunken 2g3", np.mean(np.abs(c.schools["shrunk_total"] - truth) <= 1.96 * c.schools["shrunk_total_sd"])),
            ("shrunken g3", np.mean(np.abs(sh1 - truth) <= 1.96 * sd1)),
            ("tau2_program Q*", float(c.tau2_program_ci[0] <= tau**2 <= c.tau2_program_ci[1])),
            ("tau2_program MOVER", float(lo <= tau**2 <= hi)),
            ("tau2_placebo", float(c.placebo.tau2_ci[0] <= delta**2 <= c.placebo.tau2_ci[1])),
        ):
            rec.setdefault(name, []).append(v)
    return {k: (100 * np.mean(v), 100 * np.std(v, ddof=1) / math.sqrt(len(v))) for k, v in rec.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", type=int, default=10)
    ap.add_argument("--studies", type=int, default=1000)
    a = ap.parse_args()
    designs = harvest(a.designs)
    for tau, delta in GRID:
        r = run(designs, tau, delta, a.studies)
        print(f"tau={tau:.2f} delta={delta:.2f} studies={a.studies}: "
              + "; ".join(f"{k} {m:.1f} ± {s:.1f}" for k, (m, s) in r.items()), flush=True)


if __name__ == "__main__":
    main()
