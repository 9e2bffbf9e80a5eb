"""An independent generator of PL-school studies for the school-inference simulation study
(it does not use pleval.simulate), and the figures one replication yields.

Schools: ``n_pl`` PL and ``n_comp`` comparison schools drawn from ``n_pl + n_comp``; each school
has a poverty rate ``p_j ~ U(0.1, 0.9)`` and a mean achievement ``a_j = −0.6(p_j − 0.5) + N(0, 0.2²)``
(latent SD units). PL schools are chosen on observables only: sampled without replacement with
weights ``exp(1.5(p_j − 0.5) − 1.0 a_j)``. Each school has a growth deviation
``g_j ~ N(0, δ²)`` (PL and comparison schools alike, unrelated to selection) and, if PL, a
program effect ``θ_j ~ N(μ, τ²)``. Students (about ``per_school`` per school, one grade, math):
latent pretest ``z = a_j + N(0, 1)``; outcome ``0.7 z + g_j + θ_j T + N(0, 0.6²)`` (school
achievement acts only through the pretest: no hidden school-level confounder);
both reported as ``200 + 15 ×`` the latent value, so with ``sd=15`` effect sizes are in latent
units. Covariates: frl ~ Bernoulli(p_j), female, ell, sped, race (unrelated to the outcome).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats


def generate(seed: int, n_pl: int = 15, n_comp: int = 60, per_school: int = 60, tau: float = 0.0, delta: float = 0.10,
             mu: float = 0.0):
    rng = np.random.default_rng(seed)
    J = n_pl + n_comp
    pov = rng.uniform(0.1, 0.9, J)
    ach = -0.6 * (pov - 0.5) + rng.normal(0, 0.2, J)
    wts = np.exp(1.5 * (pov - 0.5) - 1.0 * ach)
    pl = np.zeros(J, dtype=bool)
    pl[rng.choice(J, n_pl, replace=False, p=wts / wts.sum())] = True
    g = rng.normal(0, delta, J)
    theta = np.where(pl, mu + tau * rng.standard_normal(J), 0.0)
    sizes = rng.poisson(per_school, J).clip(20)
    school = np.repeat(np.arange(J), sizes)
    n = school.size
    z = ach[school] + rng.standard_normal(n)
    t = pl[school].astype(int)
    y = 0.7 * z + g[school] + theta[school] * t + rng.normal(0, 0.6, n)
    df = pd.DataFrame({
        "student_id": np.arange(n), "school_id": [f"S{j:03d}" for j in school], "treatment": t, "grade": 5,
        "subject": "math", "pretest": 200 + 15 * z, "posttest": 200 + 15 * y,
        "female": rng.integers(0, 2, n), "frl": (rng.uniform(size=n) < pov[school]).astype(int),
        "ell": (rng.uniform(size=n) < 0.1).astype(int), "sped": (rng.uniform(size=n) < 0.12).astype(int),
        "race": rng.choice(["white", "black", "hispanic"], n, p=[0.5, 0.25, 0.25]),
    })
    truth = pd.DataFrame({"school": [f"S{j:03d}" for j in range(J)], "pl": pl, "theta": theta, "g": g})
    return df, truth, dict(mu=mu, tau=tau, delta=delta)


def ingredients(seed: int, method: str = "propensity", taus=(0.0,), **gen) -> list[dict]:
    """Stage 1 (expensive): the data set of ``seed`` through ``pleval.estimate`` (defaults,
    ``sd=15`` so effect sizes are in latent units; the sensitivity analysis, which feeds no school
    figure, is off), and what the meta layer needs, for each program-effect SD in ``taus``: the
    PL schools' effect sizes, joint covariance (as used, and ``V_raw`` before the off-diagonal
    shrinkage), df, p-values and per-school CIs, the placebo
    schools' effect sizes and joint covariance, and the truths.

    The data sets of one seed differ only in the PL schools' program effects θ_j (the generator
    draws them whatever ``tau`` is), so only the first is estimated: the placebo schools are
    comparison schools, whose rows are the same; and in PL school j's matched set only its own
    students' outcomes move, all by θ_j, so the weighted least-squares coefficient of the
    treatment moves by exactly θ_j while the residuals — hence V and the df — do not. The other
    τ's estimates and CIs are the first's shifted by the change in θ_j, with p-values from
    ``school_effects``' t(df) formula. (The tests check both against separate ``pleval.estimate``
    runs.)
    """
    import pleval
    from pleval.errors import PlevalWarning

    df, truth, par = generate(seed, tau=taus[0], **gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, design="matched", method=method, seed=seed, sd=15.0, sensitivity=False)
    se = ev.school_effects
    key = next(iter(se.counts))  # one subject (math)
    V = se.vcov.get(key)
    if V is None:  # one PL school: no joint covariance is stored, its variance is es_se²
        one = se.table[np.isfinite(se.table["effect_size"].to_numpy(dtype=float))]
        V = pd.DataFrame(np.diag(one["es_se"].to_numpy(dtype=float) ** 2), index=one["school"], columns=one["school"])
    V_raw = se.vcov_raw.get(key)
    V_raw = V if V_raw is None else V_raw.loc[V.index, V.index]
    t = se.table.set_index("school").loc[V.index]
    plc = ev.details[key]["placebo"]
    p = plc.placebo[np.isfinite(plc.placebo["effect_size"].to_numpy(dtype=float))]
    lab = p["school"].to_numpy()
    base = {
        "labels": V.index.to_numpy().astype(str), "y": t["effect_size"].to_numpy(dtype=float), "V": V.to_numpy(),
        "V_raw": V_raw.to_numpy(),
        "se": t["es_se"].to_numpy(dtype=float), "df": t["df"].to_numpy(dtype=float),
        "pvalue": t["pvalue"].to_numpy(dtype=float), "ci_low": t["es_ci_low"].to_numpy(dtype=float),
        "ci_high": t["es_ci_high"].to_numpy(dtype=float), "k_all": np.array(len(se.table)),
        "placebo_y": p["effect_size"].to_numpy(dtype=float), "placebo_V": plc.placebo_vcov[key].loc[lab, lab].to_numpy(),
        "comparison_schools": t["comparison_schools"].to_numpy(dtype=float),
        "placebo_comparison_schools": p["comparison_schools"].to_numpy(dtype=float),
    }
    theta0 = truth.set_index("school").loc[V.index, "theta"].to_numpy(dtype=float)
    out = []
    for tau in taus:
        _, truth, par = generate(seed, tau=tau, **gen)
        tr = truth.set_index("school").loc[V.index]
        shift = tr["theta"].to_numpy(dtype=float) - theta0
        y = base["y"] + shift
        out.append({
            **base, "y": y, "ci_low": base["ci_low"] + shift, "ci_high": base["ci_high"] + shift,
            "pvalue": 2 * stats.t.sf(np.abs(y / base["se"]), np.maximum(base["df"], 1)) if tau != taus[0] else base["pvalue"],
            "theta": tr["theta"].to_numpy(dtype=float), "g": tr["g"].to_numpy(dtype=float),
            "mu": np.array(par["mu"]), "tau": np.array(par["tau"]), "delta": np.array(par["delta"]),
        })
    return out


def infer(ing: dict):
    """Stage 2 (cheap): :func:`pleval.heterogeneity.school_inference` on stored ingredients with
    ``pleval.estimate``'s default options."""
    from pleval.estimate import COMMON_DEFAULTS as o
    from pleval.heterogeneity import school_inference

    return school_inference(ing["labels"], ing["y"], ing["V"], ing["df"], ing["pvalue"], ing["placebo_y"],
                            ing["placebo_V"], method=o["meta_method"], hartung_knapp=o["hartung_knapp"],
                            adjust=o["adjust"], alpha=o["alpha"], level=o["level"], V_raw=ing.get("V_raw"),
                            comparison_schools=ing.get("comparison_schools"),
                            placebo_comparison_schools=ing.get("placebo_comparison_schools"))


def score(ing: dict) -> dict:
    """Every figure of the validation table from one replication's ingredients (stage 2), the
    intervals at ``pleval.estimate``'s default level (:func:`infer`)."""
    si = infer(ing)
    cal, m = si.calibration, si.meta
    target = ing["theta"] + ing["g"]  # the identifiable quantity: program + own deviation
    theta, es = ing["theta"], ing["y"]
    mu, tau, delta = float(ing["mu"]), float(ing["tau"]), float(ing["delta"])
    sd_new = np.hypot(tau, delta)
    lo, hi = cal.pi
    pi_cov = stats.norm.cdf((hi - mu) / sd_new) - stats.norm.cdf((lo - mu) / sd_new) if sd_new > 0 else float(lo <= mu <= hi)
    c = cal.schools
    sh_lo, sh_hi = c["shrunk_total_ci_low"].to_numpy(), c["shrunk_total_ci_high"].to_numpy()
    flag = c["p_calibrated_adjusted"].to_numpy() < 0.05
    wrong = flag & (np.sign(es) != np.sign(theta)) if tau > 0 or mu != 0 else flag
    return {
        "k": len(es),
        "school_ci": np.mean((ing["ci_low"] <= target) & (target <= ing["ci_high"])),
        "pooled_ci": float(m.ci_low <= mu <= m.ci_high),
        "pi": pi_cov,
        "shrunk_ci": np.mean((sh_lo <= target) & (target <= sh_hi)),
        "cal_ci_program": np.mean((c["ci_low_calibrated"] <= theta) & (theta <= c["ci_high_calibrated"])),
        "any_flag": float(flag.any()),
        "any_flag_uncalibrated": float((np.asarray(si.counts.p_adjusted) < 0.05).any()),
        "fdp": float(wrong.sum() / max(flag.sum(), 1)),
        "tau2_program_ci": float(cal.tau2_program_ci[0] <= tau**2 <= cal.tau2_program_ci[1]),
        "tau2_placebo_ci": float(cal.placebo.tau2_ci[0] <= delta**2 <= cal.placebo.tau2_ci[1]),
        "n_flag": float(flag.sum()),
    }


def replicate(seed: int, method: str = "propensity", **gen) -> dict:
    """One study: stage 1 (:func:`ingredients`) then every figure of the table (:func:`score`)."""
    return score(ingredients(seed, method, taus=(gen.pop("tau", 0.0),), **gen)[0])


def store_seeds(out: Path, seeds: Iterable[int], arrays_for: Callable[[int], dict]) -> None:
    """Stage 1 of the two-stage studies: ``arrays_for(seed)`` saved as ``out/seed{seed:06d}.npz``
    for every seed not stored yet (atomic: a temporary file renamed), its cost printed."""
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = out / f"seed{seed:06d}.npz"
        if path.exists():
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        arrays = arrays_for(seed)
        tmp = out / f".seed{seed:06d}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        print(f"seed {seed}: {len(arrays)} arrays, {time.process_time() - c0:.1f} s CPU, "
              f"{time.perf_counter() - t0:.1f} s wall", flush=True)


def stored_seeds(paths: Iterable[Path]) -> Iterator[tuple[int, dict]]:
    """Stage 2's reading side of :func:`store_seeds`: ``(seed, {name: array})`` per stored file."""
    for path in paths:
        with np.load(path) as z:
            yield int(path.stem.removeprefix("seed")), {k: z[k] for k in z.files}


def with_prefix(arrays: dict, prefix: str) -> dict:
    """The arrays stored as ``{prefix}__{name}``, keyed by ``name``."""
    return {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{prefix}__")}


def mc_se(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


ONE_SCHOOL_GEN = dict(n_pl=1, n_comp=24, per_school=60)
"""The one-PL-school study (benchmarks/sim_one_school.py, tests/test_one_school.py)."""


def score_one(ing: dict, level: float = 0.95) -> dict:
    """The figures of one replication with a single PL school (stage 2): the calibrated
    interval's coverage of the program effect θ, the calibrated flag (p < 1 − level), and for
    reference the student-level interval's coverage of θ + g and its flag."""
    si = infer(ing)
    c = si.calibration.schools.iloc[0]
    theta, g, y = float(ing["theta"][0]), float(ing["g"][0]), float(ing["y"][0])
    alpha = 1 - level
    return {
        "cal_ci_program": float(c["ci_low_calibrated"] <= theta <= c["ci_high_calibrated"]),
        "flag": float(c["p_calibrated_adjusted"] < alpha),
        "school_ci": float(ing["ci_low"][0] <= theta + g <= ing["ci_high"][0]),
        "flag_uncalibrated": float(ing["pvalue"][0] < alpha),
        "y": y, "se_calibrated": float(c["se_calibrated"]), "df_calibrated": float(c["df_calibrated"]),
    }
