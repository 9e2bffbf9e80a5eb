"""Synthetic cluster-randomized trials with a known effect, for the RCT tests.

One row per student (a single subject). Schools are randomized within blocks (half of each
block's schools treated); outcomes follow a two-level model with intraclass correlation
``icc`` (of the residual outcome variance given the pretest) and a constant effect ``effect``
(outcome units) for schools that take the program up. :func:`trial_calibration` runs the
placebo-calibration study of ``benchmarks/sim_trial_calibration.py`` (and its reduced test).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def make_cluster_rct(
    seed: int = 0,
    *,
    n_schools: int = 24,
    n_blocks: int = 4,
    size_range: tuple[int, int] = (15, 45),
    icc: float = 0.2,
    effect: float = 0.0,
    sd: float = 15.0,
    pretest_r: float = 0.6,
    attrition: tuple[float, float] = (0.0, 0.0),
    takeup: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """``attrition=(rate_treated, rate_control)`` removes outcomes at random (NaN);
    ``takeup=(p_treated, p_control)`` makes school take-up differ from assignment and the
    effect apply to taking-up schools only."""
    rng = np.random.default_rng(seed)
    block_of_school = np.arange(n_schools) % n_blocks
    z_school = np.zeros(n_schools, dtype=int)
    for b in range(n_blocks):  # a handful of blocks
        idx = np.flatnonzero(block_of_school == b)
        z_school[rng.choice(idx, idx.size // 2, replace=False)] = 1
    if takeup is None:
        d_school = z_school.copy()
    else:
        d_school = (rng.random(n_schools) < np.where(z_school == 1, takeup[0], takeup[1])).astype(int)
    sizes = rng.integers(size_range[0], size_range[1] + 1, n_schools)
    school = np.repeat(np.arange(n_schools), sizes)
    n = school.size
    u = rng.normal(0.0, np.sqrt(icc), n_schools)
    pre = 200.0 + sd * (0.5 * u[school] + rng.normal(size=n))
    frl = (rng.random(n) < 0.5).astype(int)
    ell = (rng.random(n) < 0.15).astype(int)
    noise = sd * np.sqrt(1 - pretest_r**2) * (u[school] + rng.normal(0.0, np.sqrt(1 - icc), n))
    post = 205.0 + pretest_r * (pre - 200.0) - 2.0 * frl + noise + effect * d_school[school]
    z = z_school[school]
    lost = rng.random(n) < np.where(z == 1, attrition[0], attrition[1])
    post[lost] = np.nan
    return pd.DataFrame(
        {
            "student_id": [f"st{i}" for i in range(n)],
            "school_id": [f"sch{s:03d}" for s in school],
            "block": [f"d{b}" for b in block_of_school[school]],
            "treatment": z,
            "takeup": d_school[school],
            "pretest": pre,
            "posttest": post,
            "frl": frl,
            "ell": ell,
        }
    )


def trial_calibration(reps: int, seed0: int = 0, blocks: int = 10, null: bool = False) -> dict:
    """``pleval.estimate(design="rct")`` on ``reps`` trials of ``pleval.simulate.simulate_cluster_rct``:
    ``blocks`` districts of two PL and two control schools, math, school value added SD 0.10,
    program effects θ_j ~ N(0.10, 0.10²) (none with ``null``). Over all PL schools: the share of
    placebo-calibrated CIs covering θ_j (each school's effect-size scale), of calibrated and of
    student-level p-values below 0.05, and the mean τ̂²_placebo. Against the simulation's truth
    (each PL school's deviation u = its value added less the mean of its block's control schools',
    on the school's effect-size scale): the mean squared sampling error (effect size − θ_j − u),
    the mean reported SE² and the mean u²."""
    import pleval
    from pleval.simulate import simulate_cluster_rct

    cover = sig_cal = sig_raw = n = 0
    tau2_placebo, error2, se2, dev2 = [], [], [], []
    for seed in range(seed0, seed0 + reps):  # a loop over data sets, each a whole analysis
        sim = simulate_cluster_rct(n_schools=4 * blocks, n_blocks=blocks, subjects=("math",), seed=seed,
                                   effect=0.0 if null else 0.10, tau=0.0 if null else 0.10,
                                   school_value_added_sd=0.10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = pleval.estimate(sim.data, design="rct")
        t = ev.schools.set_index("school")
        truth = sim.truth.schools
        per_raw = (t["effect_size"] / t["estimate"]).to_numpy()
        theta = truth.loc[t.index, "effect_raw"].to_numpy() * per_raw
        control = truth[truth["assigned"] == 0].groupby("block")["value_added_math"].mean()
        u = (truth.loc[t.index, "value_added_math"] - control.loc[truth.loc[t.index, "block"]].to_numpy()).to_numpy()
        u = u * sim.truth.sd * per_raw  # value added is in population SDs of the posttest
        error2.append((t["effect_size"].to_numpy() - theta - u) ** 2)
        se2.append(t["es_se"].to_numpy() ** 2)
        dev2.append(u**2)
        cover += int(((t["ci_low_calibrated"] <= theta) & (theta <= t["ci_high_calibrated"])).sum())
        sig_cal += int((t["p_calibrated"] < 0.05).sum())
        sig_raw += int((t["pvalue"] < 0.05).sum())
        n += len(t)
        tau2_placebo.append(float(ev.heterogeneity.iloc[0]["tau2_placebo"]))
    return {"schools": n, "calibrated_cover": cover / n, "calibrated_p_below_05": sig_cal / n,
            "raw_p_below_05": sig_raw / n, "mean_tau2_placebo": float(np.mean(tau2_placebo)),
            "sampling_error2": float(np.mean(np.concatenate(error2))),
            "reported_se2": float(np.mean(np.concatenate(se2))), "deviation2": float(np.mean(np.concatenate(dev2)))}
