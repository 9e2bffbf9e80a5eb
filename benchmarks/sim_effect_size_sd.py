"""Effect-size CIs with a true effect: what taking the standardizing SD as known costs (docs/validation.md).

    python benchmarks/sim_effect_size_sd.py matched [--reps 1000] [--effect 0.5] [--seed0 200000]
    python benchmarks/sim_effect_size_sd.py trials [--reps 2000] [--effect 0.3] [--seed0 300000]

``matched``: ``simulate_matched`` data (60 schools, 12 PL, 12 students a grade, constant effect), the
headline of ``match(method=...).estimate()`` for weighting, ebal, full, subclass and propensity on
each data set. ``trials``: ``simulate_multisite_rct`` (12 schools of about 60, one grade and subject)
analysed as blocked, individual and blocked with Lin's adjustment (HC2), and the CACE of a
``simulate_cluster_rct`` trial (24 schools in 6 blocks, a quarter of the PL schools not implementing;
CR2). Per analysis it prints the 95% CI coverage (Monte Carlo SE √(.95·.05/R)) of: the raw truth;
the effect-size truth ``att_sd`` (the simulator's SD of 15 points); the truth over σ̄, the mean of
the reported SDs (the standardizer's population value); and the same with the SD's uncertainty
added to the SE, by Hedges & Olkin's g²/(2N) and by the SDs' own Monte Carlo relative variance.
The defaults take about 270 (matched) and 180 (trials) CPU-s.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pleval.data import RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS  # noqa: E402
from pleval.matching import match  # noqa: E402
from pleval.rct import analyze_rct  # noqa: E402
from pleval.simulate import simulate_cluster_rct, simulate_matched, simulate_multisite_rct  # noqa: E402

METHODS = ("propensity", "weighting", "ebal", "full", "subclass")


def _matched(r: int, effect: float, seed0: int):
    """(label, Effect, raw truth, truth in the simulator's SD units) of each method on data set r."""
    sim = simulate_matched(n_schools=60, n_pl_schools=12, students_per_grade=12, effect=effect, tau=0.0,
                           seed=seed0 + r)
    for m in METHODS:
        yield m, match(sim.data, SAMPLE_COLUMNS, method=m, seed=r).estimate(), sim.truth.att_raw, sim.truth.att_sd


def _trials(r: int, effect: float, seed0: int):
    """The same for the student-randomized ITTs and a cluster trial's CACE."""
    sim = simulate_multisite_rct(n_schools=12, students_per_school=60, grades=(5,), subjects=("math",),
                                 effect=effect, tau=0.0, seed=seed0 + r)
    blocked = RCT_SAMPLE_COLUMNS.replace(takeup=None, block="school_id")
    for label, cols, design, lin in (("blocked", blocked, "blocked", False),
                                     ("individual", blocked.replace(block=None), "individual", False),
                                     ("blocked, Lin", blocked, "blocked", True)):
        e = analyze_rct(sim.data, cols, design=design, lin=lin, compliance=False).itt
        yield label, e, sim.truth.att_raw, sim.truth.att_sd
    sim = simulate_cluster_rct(n_schools=24, n_blocks=6, students_per_school=60, grades=(5,), subjects=("math",),
                               effect=effect, tau=0.0, noncompliance=0.25, seed=seed0 + r)
    cace = sim.truth.details["cace_sample_sd"]
    yield "cluster CACE", analyze_rct(sim.data, RCT_SAMPLE_COLUMNS).cace, cace * sim.truth.sd, cace


def _report(label: str, rows: list) -> None:
    """Coverage of one analysis's CIs over its rows (estimate, SE, df, CI, SD, ω, N, truths)."""
    est, se, df, lo, hi, sd, om, n, t_raw, t_sd, es_lo, es_hi = np.array(rows).T
    R = len(est)
    g, se_g = om * est / sd, om * se / sd
    crit = stats.t.ppf(0.975, df)
    sd_bar = sd.mean()
    t_bar = t_raw / sd_bar
    rel_var = (sd.std(ddof=1) / sd_bar) ** 2

    def cover(truth, s=se_g):
        return np.mean(np.abs(g - truth) <= crit * s)

    print(f"{label:13s} R={R} (MC SE {np.sqrt(0.95 * 0.05 / R):.3f})  raw {np.mean((lo <= t_raw) & (t_raw <= hi)):.3f}"
          f" | effect size vs att_sd {np.mean((es_lo <= t_sd) & (t_sd <= es_hi)):.3f}, vs truth/σ̄ {cover(t_bar):.3f}"
          f", + g²/(2N) {cover(t_bar, np.sqrt(se_g**2 + g**2 / (2 * n))):.3f}"
          f", + g²·Var(SD)/SD² {cover(t_bar, np.sqrt(se_g**2 + g**2 * rel_var)):.3f}"
          f" | σ̄ {sd_bar:.2f}, SD of SDs {100 * np.sqrt(rel_var):.1f}%, mean g {g.mean():.3f},"
          f" mean SE(g) {se_g.mean():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("study", choices=("matched", "trials"))
    ap.add_argument("--reps", type=int)
    ap.add_argument("--effect", type=float)
    ap.add_argument("--seed0", type=int)
    a = ap.parse_args()
    defaults = {"matched": (1000, 0.5, 200_000), "trials": (2000, 0.3, 300_000)}[a.study]
    reps, effect, seed0 = (v if v is not None else d for v, d in zip((a.reps, a.effect, a.seed0), defaults))
    draw = _matched if a.study == "matched" else _trials
    warnings.simplefilter("ignore")
    rows: dict[str, list] = {}
    t0 = time.process_time()
    for r in range(reps):
        for label, e, t_raw, t_sd in draw(r, effect, seed0):
            rows.setdefault(label, []).append(
                [e.raw.estimate, e.raw.se, e.raw.df, e.raw.ci_low, e.raw.ci_high, e.sd, e.omega,
                 e.raw.n_treated + e.raw.n_control, t_raw, t_sd, e.effect_size.ci_low, e.effect_size.ci_high])
    print(f"{a.study}, effect {effect} SD, {reps} data sets from seed {seed0} ({time.process_time() - t0:.0f} CPU-s)")
    for label, r in rows.items():
        _report(label, r)


if __name__ == "__main__":
    main()
