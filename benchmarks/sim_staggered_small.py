"""Staggered adoption with few schools per cohort, by simulation (docs/monitor.md, *Small
samples*): the pre-trend test's rejection rate and the coverage of the cells', event-time and
overall intervals with pleval's small-sample inference (``inference="welch"``, the default) and
the R package's analytic figures (``inference="did"``).

    python benchmarks/sim_staggered_small.py [--reps 600]
    python benchmarks/sim_staggered_small.py --clustered [--reps 500]

``--clustered``: schools in 10, 20 and 40 clusters (districts) with a cluster effect of SD 0.5
in every period, ``cluster=`` given: the pre-test (Hotelling's T² on the CR2 covariance's
Wishart df; how often that df is too small for a test) against the χ², and the cells' and
event-time coverage (CR2 with Satterthwaite df; the R package's CR1 with t(G − 1)).

Each panel: unit and period effects (standard normal), unit-level noise with an SD drawn
uniformly from 0.5–1.5 for each unit, no program effect. Designs: never-adopting units plus
cohorts adopting in the periods named, as in the table of docs/monitor.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pleval.monitor import group_time_effects  # noqa: E402

DESIGNS = [  # (label, never-adopting units, {first period: units}, periods, comparisons)
    ("20 + 6/8/6 at periods 3/4/5; 6; not-yet", 20, {3: 6, 4: 8, 5: 6}, 6, "notyet"),
    ("the same, never-adopting comparisons", 20, {3: 6, 4: 8, 5: 6}, 6, "never"),
    ("10 + 4/4/4/4 at 3/4/5/6; 7; not-yet", 10, {3: 4, 4: 4, 5: 4, 6: 4}, 7, "notyet"),
    ("15 + 5 at 3; 4; never", 15, {3: 5}, 4, "never"),
    ("30 + 10/10 at 4/6; 8; not-yet", 30, {4: 10, 6: 10}, 8, "notyet"),
    ("100 + 30/30/30 at 3/4/5; 6; not-yet", 100, {3: 30, 4: 30, 5: 30}, 6, "notyet"),
]


def panel(rng, g: np.ndarray, T: int) -> pd.DataFrame:
    n = g.size
    y = (rng.normal(size=n)[:, None] + rng.normal(size=T)[None, :]
         + rng.normal(size=(n, T)) * rng.uniform(0.5, 1.5, size=(n, 1)))
    return pd.DataFrame({"unit": np.repeat(np.arange(n), T), "time": np.tile(np.arange(1.0, T + 1), n),
                         "y": y.ravel(), "g": np.repeat(g, T)})


def clustered(reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for G, sizes in ((10, (20, 6, 8, 6)), (20, (40, 12, 16, 12)), (40, (60, 20, 20, 20))):
        g = np.concatenate([np.zeros(sizes[0])] + [np.full(k, float(p)) for p, k in zip((3, 4, 5), sizes[1:])])
        n, T = g.size, 6
        rejects, cover, nan = {"welch": [], "did": []}, {"welch": [], "did": []}, []
        event = []
        for _ in range(reps):  # a loop over simulated panels, each a whole analysis
            cl = rng.permutation(np.arange(n) % G)
            y = (rng.normal(size=n)[:, None] + rng.normal(size=T)[None, :] + 0.5 * rng.normal(size=(G, T))[cl]
                 + rng.normal(size=(n, T)))
            d = pd.DataFrame({"unit": np.repeat(np.arange(n), T), "time": np.tile(np.arange(1.0, T + 1), n),
                              "y": y.ravel(), "g": np.repeat(g, T), "c": np.repeat(cl, T)})
            for inference, acc in rejects.items():
                r = group_time_effects(d, outcome="y", unit="unit", time="time", cohort="g", control="notyet",
                                       cluster="c", inference=inference)
                acc.append(r.pretest["pvalue"] < 0.05)
                cover[inference].append(((r.table["ci_low"] <= 0) & (r.table["ci_high"] >= 0)).to_numpy())
                if inference == "welch":
                    nan.append(np.isnan(r.pretest["pvalue"]))
                    e = r.event_study().table
                    event.append(((e["ci_low"] <= 0) & (e["ci_high"] >= 0)).to_numpy())
        cov = {k: np.concatenate(v).mean() for k, v in cover.items()}
        print(f"{n} schools in {G} clusters: pre-test rejects {np.mean(rejects['welch']):.3f} (no test: "
              f"{np.mean(nan):.3f}; chi2 {np.mean(rejects['did']):.3f}); cells cover {cov['welch']:.3f} (CR1 "
              f"{cov['did']:.3f}); event times {np.concatenate(event).mean():.3f}  [{reps} panels]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--clustered", action="store_true")
    a = ap.parse_args()
    if a.clustered:
        return clustered(a.reps, a.seed)
    rng = np.random.default_rng(a.seed)
    for label, never, cohorts, T, control in DESIGNS:
        t0 = time.perf_counter()
        g = np.concatenate([np.zeros(never)] + [np.full(k, float(p)) for p, k in cohorts.items()])
        out = {"welch": {"pre": [], "cells": [], "event": [], "overall": []}, "did": {"pre": [], "cells": []}}
        for _ in range(a.reps):  # a loop over simulated panels, each a whole analysis
            d = panel(rng, g, T)
            for inference, acc in out.items():
                r = group_time_effects(d, outcome="y", unit="unit", time="time", cohort="g", control=control,
                                       inference=inference)
                acc["pre"].append(r.pretest["pvalue"] < 0.05)
                acc["cells"].append(((r.table["ci_low"] <= 0) & (r.table["ci_high"] >= 0)).to_numpy())
                if inference == "welch":
                    es = r.event_study()
                    acc["event"].append(((es.table["ci_low"] <= 0) & (es.table["ci_high"] >= 0)).to_numpy())
                    acc["overall"].append(es.overall.ci_low <= 0 <= es.overall.ci_high)
        w, d_ = out["welch"], out["did"]
        print(f"{label}: pre-test rejects {np.mean(w['pre']):.3f} (did {np.mean(d_['pre']):.3f}); cells cover "
              f"{np.concatenate(w['cells']).mean():.3f} (did {np.concatenate(d_['cells']).mean():.3f}); event-time "
              f"{np.concatenate(w['event']).mean():.3f}; overall {np.mean(w['overall']):.3f}  "
              f"[{a.reps} panels, {time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
