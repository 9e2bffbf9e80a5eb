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

import warnings

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


def replicate(seed: int, method: str = "propensity", level: float = 0.95, **gen) -> dict:
    """One study: ``pleval.estimate`` defaults (``sd=15`` so effect sizes are in latent units)
    and every figure of the validation table."""
    import pleval
    from pleval.errors import PlevalWarning

    df, truth, par = generate(seed, **gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, design="matched", method=method, seed=seed, sd=15.0)
    s = ev.schools.merge(truth, on="school")
    s = s[np.isfinite(s["effect_size"])]
    h = ev.heterogeneity.iloc[0]
    target = (s["theta"] + s["g"]).to_numpy()  # the identifiable quantity: program + own deviation
    theta = s["theta"].to_numpy()
    z = stats.norm.ppf(0.5 + level / 2)
    es, lo, hi = s["effect_size"].to_numpy(), s["es_ci_low"].to_numpy(), s["es_ci_high"].to_numpy()
    sh, shsd = s["shrunk_es"].to_numpy(), s["shrunk_es_sd"].to_numpy()
    mu, tau, delta = par["mu"], par["tau"], par["delta"]
    sd_new = np.hypot(tau, delta)
    if sd_new > 0:
        pi_cov = stats.norm.cdf((h["pi_high"] - mu) / sd_new) - stats.norm.cdf((h["pi_low"] - mu) / sd_new)
    else:
        pi_cov = float(h["pi_low"] <= mu <= h["pi_high"])
    flag_raw = s["p_adjusted"].to_numpy() < 0.05
    out = {
        "k": len(s),
        "school_ci": np.mean((lo <= target) & (target <= hi)),
        "pooled_ci": float(h["ci_low"] <= mu <= h["ci_high"]),
        "pi": pi_cov,
        "shrunk_ci": np.mean(np.abs(sh - target) <= z * shsd),
        "any_flag_uncalibrated": float(flag_raw.any()),
    }
    if "p_calibrated_adjusted" in s:
        flag = s["p_calibrated_adjusted"].to_numpy() < 0.05
        wrong = flag & (np.sign(es) != np.sign(theta)) if tau > 0 or mu != 0 else flag
        out.update({
            "cal_ci_program": np.mean((s["ci_low_calibrated"] <= theta) & (theta <= s["ci_high_calibrated"])),
            "any_flag": float(flag.any()),
            "n_flag": float(flag.sum()),
            "fdp": float(wrong.sum() / max(flag.sum(), 1)),
            "tau2_program_ci": float(h["tau2_program_ci_low"] <= tau**2 <= h["tau2_program_ci_high"]),
            "tau2_placebo_ci": float(h["tau2_placebo_ci_low"] <= delta**2 <= h["tau2_placebo_ci_high"]),
        })
    return out


def mc_se(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
