"""Meta-level simulation of the placebo-informed school inference (docs/heterogeneity.md, docs/validation.md).

    python benchmarks/sim_school_meta.py [--designs 10] [--studies 2000] [--pl 15 --comp 60 --per-school 60]
                                         [--cache designs.npz]

The full study (``sim_school_inference.py``) runs ``pleval.estimate`` once per replication
(seconds each). This one isolates the meta-analysis layer: it takes the joint covariances V (PL
schools) and V_p (placebo schools) that ``pleval.estimate`` produced on ``--designs`` data sets
of the independent generator (``tests/_school_sim.py``: 15 PL, 60 comparison schools, or
``--pl 32 --comp 200 --per-school 40``; ``--cache`` stores them), and for each (τ, δ) draws
``--studies`` studies with those covariances known exactly:
``y = θ + g + e``, ``θ ~ N(0, τ²)``, ``g ~ N(0, δ²)``, ``e ~ N(0, V)``; placebo ``y_p = g_p + e_p``.
Each study goes through :func:`pleval.heterogeneity.calibrate` (what ``pleval.estimate`` uses)
and the PL-only meta-analysis, and the script prints the coverage (%, ± Monte Carlo SE) of

* the prediction interval for a new school's ``θ + g``: pleval's (confidence-distribution
  mixture with the order restriction); the same without the order restriction (σ² = the larger
  draw); the earlier ``max(τ̂²_PL, τ̂²_placebo)`` with a Satterthwaite t; the order-restricted
  estimate with that t; PL-only t(k−2);
* shrunken intervals of ``θ_s + g_s``: pleval's (the quantiles of the posterior mixture over the
  same distribution); ``θ̃ ± z·SD`` with that mixture's mean and SD (Morris 1983, pleval's earlier
  interval); the earlier Prasad–Rao ``2g₃`` and Kackar–Harville ``g₃`` once with
  ``max(τ̂²_PL, τ̂²_placebo)``;
* the τ²_program interval — Q-profile with the placebo offset (pleval) and MOVER from the two
  separate Q-profile intervals (Zou & Donner 2008; pleval's earlier interval);
* the τ²_placebo interval.

``--perturb-df d`` analyses each study with covariances whose variances are multiplied by
independent ``χ²(d)/d`` draws (the noise of a CR2 variance with d Satterthwaite df; pleval's
per-school CR2 df are about 60 in these designs), the data drawn with the unperturbed ones:
how much the estimation noise of V moves pleval's intervals. ``--offdiag-scale c`` analyses
with the off-diagonals times ``c`` (0: a diagonal V against data with the full one).
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

GRID = [(0.0, 0.10), (0.08, 0.10), (0.15, 0.10), (0.08, 0.0), (0.15, 0.0), (0.0, 0.0)]


def harvest(n: int, n_pl: int = 15, n_comp: int = 60, per_school: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    """(V, V_p) of ``pleval.estimate`` on ``n`` generated data sets (δ = 0.10, no program effect)."""
    import pleval
    from pleval.errors import PlevalWarning

    out = []
    for seed in range(n):  # a handful of data sets
        df, _, _ = generate(90_000 + seed, n_pl=n_pl, n_comp=n_comp, per_school=per_school)
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


def previous(y, V, c, hk_se2: float) -> dict:
    """The earlier new-school pieces: ``max(τ̂²_PL, τ̂²_placebo)`` with a Satterthwaite t, the
    order-restricted estimate with that t, Prasad–Rao / Kackar–Harville shrinkage."""
    from pleval.heterogeneity.shrinkage import blup

    k = y.size
    pl, pb = c.pl, c.placebo
    out = {}
    for name, t2, t2var in (("max", max(pl.tau2, pb.tau2), (pl.tau2_se if pl.tau2 >= pb.tau2 else pb.tau2_se) ** 2),
                            ("iso", c.tau2_total, pl.tau2_se**2 if pl.tau2 >= pb.tau2 else 1 / (pl.tau2_se**-2 + pb.tau2_se**-2))):
        mu, _, sh, sd, _ = blup(y, V, t2, t2var)
        W = np.linalg.inv(V + t2 * np.eye(k))
        se2 = float((y - mu) @ W @ (y - mu)) / (k - 1) / float(W.sum())  # Hartung-Knapp
        nu = 2 * (t2 + se2) ** 2 / (t2var + 2 * se2**2 / (k - 1))
        half = stats.t.ppf(0.975, nu) * math.sqrt(t2 + se2)
        out[name] = (mu - half, mu + half, sh, sd, blup(y, V, t2, t2var / 2)[2:4])
    return out


def run(designs, tau: float, delta: float, studies: int, seed: int = 1, perturb_df: float = 0.0,
        offdiag_scale: float = 1.0) -> dict:
    from pleval.heterogeneity import calibrate, meta_analysis
    from pleval.heterogeneity import _predictive as P

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
        misfit = bool(perturb_df) or offdiag_scale != 1.0
        if perturb_df:  # analyse with covariances whose variances carry χ²(d)/d noise (CR2 with d df)
            s, sp = (np.sqrt(rng.chisquare(perturb_df, n) / perturb_df) for n in (k, m))
            V, Vp = V * np.outer(s, s), Vp * np.outer(sp, sp)
        if offdiag_scale != 1.0:  # analyse with the off-diagonal scaled (0: diagonal V)
            V, Vp = (offdiag_scale * M + (1 - offdiag_scale) * np.diag(np.diag(M)) for M in (V, Vp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = calibrate(np.arange(k), y, V, np.full(k, 60.0), yp, Vp)
            if misfit:
                rec.setdefault("tau2_program Q*", []).append(float(c.tau2_program_ci[0] <= tau**2 <= c.tau2_program_ci[1]))
                rec.setdefault("tau2_placebo", []).append(float(c.placebo.tau2_ci[0] <= delta**2 <= c.placebo.tau2_ci[1]))
                rec.setdefault("PI (pleval)", []).append(cover(*c.pi))
                continue
            pl = meta_analysis(y, np.sqrt(np.diag(V)), vcov=V, hartung_knapp=True)
        old = previous(y, V, c, c.se_total**2)
        larger = P.variance_nodes(y, V, yp, Vp, restrict="max")
        pl_only = P.variance_nodes(y, V, yp, Vp, restrict="none")
        lo, hi = mover(c.pl.tau2, c.pl.tau2_ci, c.placebo.tau2, c.placebo.tau2_ci)

        def shr(sh, sd):
            return np.mean(np.abs(sh - truth) <= 1.96 * sd)

        for name, v in (
            ("PI CD order-restricted (pleval)", cover(*c.pi)),
            ("PI CD max", cover(*P.predictive(y, V, *larger)[0])),
            ("PI CD PL only", cover(*P.predictive(y, V, *pl_only)[0])),
            ("PI max + Satterthwaite t (before)", cover(*old["max"][:2])),
            ("PI order-restricted + Satterthwaite t", cover(*old["iso"][:2])),
            ("PI PL-only t(k-2)", cover(pl.pi_low, pl.pi_high)),
            ("shrunken CD mixture quantiles (pleval)", np.mean((c.schools["shrunk_total_ci_low"] <= truth)
                                                               & (truth <= c.schools["shrunk_total_ci_high"]))),
            ("shrunken CD mixture, Morris ± z SD", shr(c.schools["shrunk_total"], c.schools["shrunk_total_sd"])),
            ("shrunken CD PL only", shr(*P.shrinkage(y, V, *pl_only)[:2])),
            ("shrunken CD max", shr(*P.shrinkage(y, V, *larger)[:2])),
            ("shrunken Prasad-Rao 2g3 (before)", shr(*old["max"][2:4])),
            ("shrunken g3 once", shr(*old["max"][4])),
            ("tau2_program Q*", float(c.tau2_program_ci[0] <= tau**2 <= c.tau2_program_ci[1])),
            ("tau2_program MOVER", float(lo <= tau**2 <= hi)),
            ("tau2_placebo", float(c.placebo.tau2_ci[0] <= delta**2 <= c.placebo.tau2_ci[1])),
        ):
            rec.setdefault(name, []).append(v)
    return {k: (100 * np.mean(v), 100 * np.std(v, ddof=1) / math.sqrt(len(v))) for k, v in rec.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", type=int, default=10)
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--pl", type=int, default=15)
    ap.add_argument("--comp", type=int, default=60)
    ap.add_argument("--per-school", type=int, default=60)
    ap.add_argument("--cache", type=Path, help="read (or write) the harvested covariances here (.npz)")
    ap.add_argument("--grid", nargs="*", help="τ,δ pairs, e.g. 0,0.1 0.15,0")
    ap.add_argument("--perturb-df", type=float, default=0.0,
                    help="analyse with V, V_p whose variances are scaled by χ²(d)/d draws (pleval's intervals only)")
    ap.add_argument("--offdiag-scale", type=float, default=1.0,
                    help="analyse with the off-diagonals of V, V_p times this (0: diagonal; pleval's intervals only)")
    a = ap.parse_args()
    if a.cache and a.cache.exists():
        f = np.load(a.cache)
        designs = [(f[f"V{i}"], f[f"Vp{i}"]) for i in range(len(f.files) // 2)]
    else:
        designs = harvest(a.designs, a.pl, a.comp, a.per_school)
        if a.cache:
            np.savez(a.cache, **{f"{p}{i}": M for i, d in enumerate(designs) for p, M in zip(("V", "Vp"), d)})
    grid = [tuple(map(float, g.split(","))) for g in a.grid] if a.grid else GRID
    print(f"{len(designs)} designs: {designs[0][0].shape[0]} PL, {designs[0][1].shape[0]} placebo schools", flush=True)
    for tau, delta in grid:
        r = run(designs, tau, delta, a.studies, perturb_df=a.perturb_df, offdiag_scale=a.offdiag_scale)
        print(f"tau={tau:.2f} delta={delta:.2f} studies={a.studies}"
              + (f" perturb_df={a.perturb_df:g}" if a.perturb_df else "")
              + (f" offdiag_scale={a.offdiag_scale:g}" if a.offdiag_scale != 1 else "") + ": "
              + "; ".join(f"{k} {m:.1f} ± {s:.1f}" for k, (m, s) in r.items()), flush=True)


if __name__ == "__main__":
    main()
