"""Simulation study of school-by-school inference (docs/validation.md, "School-by-school inference").

Two stages, so the expensive part runs once and the table can be re-scored whenever the meta
layer changes:

    # stage 1 (expensive): data, matching, school effects with their joint covariance, placebo
    # schools, by pleval.estimate; one .npz of ingredients per seed under DIR
    python benchmarks/sim_school_inference.py --stage1 DIR [--seed0 0] [--reps 500] [--big-every 3] [--cell NAME ...]
    # stage 2 (cheap): every figure from the stored ingredients with pleval's meta layer
    # (pleval.heterogeneity.school_inference), one row per replication, then the table
    python benchmarks/sim_school_inference.py --score DIR [--rows rows.csv] [--markdown]
    python benchmarks/sim_school_inference.py --summarize rows.csv [more.csv ...] [--markdown]

Data from the independent generator ``tests/_school_sim.py`` (not pleval.simulate). A *cell* is
a generator setting (method, δ, PL/comparison schools); each seed's data set is analysed with
τ = 0 and τ = 0.15 — the same schools, students and deviations, only the PL schools' program
effects differ — and the placebo schools, which are comparison schools and so identical for
both, are estimated once (``tests/_school_sim.ingredients``). Seeds advance all cells together
(the 32/200 cells on every ``--big-every``-th seed), so stopping at any time leaves balanced
counts; each seed's file is written when the seed is done. Figures (one per replication,
averaged with Monte Carlo SEs): per-school CI coverage of the identifiable target (program + the
school's own deviation), pooled CI and prediction-interval coverage, shrunken-interval coverage,
the calibrated per-school interval's coverage of the program effect, the chance that any PL
school is flagged (calibrated, adjusted; and uncalibrated), the false-discovery proportion
(wrong-sign flags), and the coverage of the τ²_program and τ²_placebo intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._school_sim import ingredients, mc_se, score, store_seeds, stored_seeds, with_prefix  # noqa: E402

BIG = dict(n_pl=32, n_comp=200, per_school=40)
CELLS = {
    "d10-ps": dict(method="propensity", delta=0.10),
    "d10-vcg": dict(method="vcg", delta=0.10),
    "d0-ps": dict(method="propensity", delta=0.0),
    "d0-vcg": dict(method="vcg", delta=0.0),
    "d10-ps-32x200": dict(method="propensity", delta=0.10, **BIG),
    "d10-vcg-32x200": dict(method="vcg", delta=0.10, **BIG),
    "d0-ps-32x200": dict(method="propensity", delta=0.0, **BIG),
    "d0-vcg-32x200": dict(method="vcg", delta=0.0, **BIG),
}
TAUS = {"null": 0.0, "tau15": 0.15}
SCENARIOS = {f"{t}-{c}": dict(tau=tau, **spec) for c, spec in CELLS.items() for t, tau in TAUS.items()}
FIGURES = ["school_ci", "pooled_ci", "pi", "shrunk_ci", "cal_ci_program", "any_flag", "any_flag_uncalibrated", "fdp",
           "tau2_program_ci", "tau2_placebo_ci"]
LABELS = {
    "school_ci": "per-school CI (θ + g)",
    "pooled_ci": "pooled CI",
    "pi": "prediction interval",
    "shrunk_ci": "shrunken intervals",
    "cal_ci_program": "calibrated CI (θ)",
    "any_flag": "any flag (calibrated)",
    "any_flag_uncalibrated": "any flag (uncalibrated)",
    "fdp": "FDR",
    "tau2_program_ci": "τ²_program CI",
    "tau2_placebo_ci": "τ²_placebo CI",
}
COLUMNS = ["scenario", "seed", "k", *FIGURES, "n_flag"]


def describe(name: str) -> str:
    s = SCENARIOS[name]
    method = {"propensity": "propensity", "vcg": "VCG"}[s["method"]]
    size = f"{s.get('n_pl', 15)}/{s.get('n_comp', 60)}"
    return f"τ = {s['tau']:g}, δ = {s['delta']:.2f}, {method}, {size}".replace("δ = 0.00", "δ = 0")


def stage1(out: Path, seed0: int, reps: int, cells: list[str], big_every: int) -> None:
    """Ingredients of every cell, seed by seed, one ``seed{seed}.npz`` per seed (atomic)."""

    def arrays_for(seed: int) -> dict:
        arrays = {}
        for cell in cells:
            spec = dict(CELLS[cell])
            if "n_pl" in spec and seed % big_every:
                continue
            method = spec.pop("method")
            for (tname, _), ing in zip(TAUS.items(), ingredients(seed, method, taus=tuple(TAUS.values()), **spec)):
                for k, v in ing.items():
                    if k.startswith("placebo_"):
                        arrays[f"{cell}__{k}"] = v  # identical for both τ: stored once
                    else:
                        arrays[f"{tname}-{cell}__{k}"] = v
        return arrays

    store_seeds(out, range(seed0, seed0 + reps), arrays_for)


def stage2(paths: list[Path]) -> pd.DataFrame:
    """One row of figures per stored replication (pleval's meta layer on the ingredients)."""
    rows = []
    for seed, arrays in stored_seeds(paths):
        for name in SCENARIOS:
            if f"{name}__y" not in arrays:
                continue
            ing = {**with_prefix(arrays, name), **with_prefix(arrays, name.split("-", 1)[1])}
            rows.append({"scenario": name, "seed": seed, **score(ing)})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario (in :data:`SCENARIOS` order): replications, each figure's mean and Monte Carlo SE."""
    out = []
    for name in [s for s in SCENARIOS if s in set(rows["scenario"])]:
        f = rows[rows["scenario"] == name]
        r = {"scenario": name, "reps": len(f)}
        for c in FIGURES:
            r[c], r[c + "_mcse"] = float(f[c].mean()), mc_se(f[c])
        out.append(r)
    return pd.DataFrame(out)


def cells(r) -> list[str]:
    return [f"{100 * r[c]:.1f} ± {100 * r[c + '_mcse']:.1f}" for c in FIGURES]


def markdown(summary: pd.DataFrame) -> str:
    """The validation table: the header is built from :data:`FIGURES`, the order of every row."""
    head = ["scenario (τ, δ, method, PL/comparison)", "reps", *[LABELS[c] for c in FIGURES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([describe(r["scenario"]), str(r["reps"]), *cells(r)]) + " |" for _, r in summary.iterrows()]
    return "\n".join(lines)


def show(rows: pd.DataFrame, md: bool) -> None:
    s = summarize(rows)
    if md:
        print(markdown(s))
        return
    print(" | ".join(["scenario", "reps", *FIGURES]))
    for _, r in s.iterrows():
        print(" | ".join([r["scenario"], str(r["reps"]), *cells(r)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage1", type=Path, help="write ingredients (one .npz per seed) to this directory")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--big-every", type=int, default=3, help="run the 32/200 cells on every n-th seed")
    ap.add_argument("--cell", nargs="*", default=list(CELLS))
    ap.add_argument("--score", type=Path, help="score every seed*.npz in this directory")
    ap.add_argument("--rows", type=Path, help="write (--score) the per-replication figures to this CSV")
    ap.add_argument("--summarize", nargs="*", type=Path, help="summarize replication CSVs written by --rows")
    ap.add_argument("--markdown", action="store_true", help="print the docs/validation.md table")
    a = ap.parse_args()
    if a.stage1:
        stage1(a.stage1, a.seed0, a.reps, a.cell, a.big_every)
    elif a.score:
        c0 = time.process_time()
        rows = stage2(sorted(a.score.glob("seed*.npz")))
        if a.rows:
            rows.to_csv(a.rows, index=False)
        show(rows, a.markdown)
        print(f"stage 2: {len(rows)} replications, {time.process_time() - c0:.1f} s CPU", file=sys.stderr)
    elif a.summarize:
        show(pd.concat([pd.read_csv(p) for p in a.summarize], ignore_index=True), a.markdown)
    else:
        ap.error("one of --stage1, --score, --summarize")


if __name__ == "__main__":
    main()
