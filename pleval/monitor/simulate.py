"""Simulated student × subject × year panels with known per-year, per-exposure and per-school
truths, for monitoring over time (:func:`simulate_panel`).

The model, in SD units of the untreated outcome (variance ≈ 1 within year and grade), for
student ``i`` in school ``j`` in year ``t``::

    pre_i  = S_j + ε_i,                   S_j ~ N(0, 0.3²), ε_i ~ N(0, 0.9²)
    y_it   = 0.7·pre_i + c_j + b_i + w_jt + e_it + θ_it
    θ_it   = effects[k_it − 1] + u_j + s_j·(k_it − 1)   if k_it ≥ 1, else 0

with school value added ``c_j ~ N(0, 0.15²)``, a persistent student term ``b_i ~ N(0, 0.35²)``,
school × year shocks ``w_jt ~ N(0, 0.08²)``, noise ``e_it ~ N(0, 0.64²)``, and ``k_it`` the
student's years of exposure: the number of years up to ``t`` in which the student is observed
in a PL school that has adopted (``t ≥`` the school's first program year). ``u_j ~ N(0, τ²)`` is
the school's own effect and ``s_j ~ N(0, slope_sd²)`` its own growth of the effect per year of
exposure. PL schools are drawn with probability ∝ exp(−1.5·S_j) (lower-achieving schools adopt),
so PL and comparison students differ at baseline only through the observed pretest.

Students in grades ``grades`` at the first year move up a grade each year (leaving after grade
8); with ``entrants`` a new grade-3 cohort enters each year (their pretest is their score on
entry, before their own exposure). ``absence`` is the chance a student is missing from a year
(a gap), ``move`` the chance a student moves to another school of the same condition and
adoption year. Scores are reported as ``195 + 10·(grade − 3) + 15·pre`` (fall pretest, grade at
entry) and ``200 + 10·(grade − 3) + 15·y`` (spring outcome), so raw effects are ``15·θ`` points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .._results import Frame, ResultMixin
from ..errors import DataError

SCALE = 15.0
_SD = dict(school=0.3, eps=0.9, va=0.15, student=0.35, shock=0.08, noise=0.64)
_SLOPE = 0.7


@dataclass(frozen=True, repr=False)
class PanelTruth(ResultMixin):
    """Truths of a simulated panel (effects in SD units; raw = ``15·sd``).

    ``by_year``: per time and subject, the mean of ``effects[k−1]`` over the rows of PL-school
    students (the effect a per-year analysis estimates; school deviations have mean 0).
    ``by_exposure``: ``effects[k−1]`` for each years-of-exposure ``k``. ``schools``: per school,
    its condition, first program year and true ``u_j``, ``s_j``. ``school_years``: per PL
    school, year and subject, the mean true θ over its students.
    """

    effects: tuple
    tau: float
    slope_sd: float
    by_year: pd.DataFrame = Frame()
    by_exposure: pd.DataFrame = Frame()
    schools: pd.DataFrame = Frame()
    school_years: pd.DataFrame = Frame()
    seed: int
    params: Mapping[str, Any]

    def to_frame(self) -> pd.DataFrame:
        return self.by_year.copy()

    def summary(self) -> str:
        eff = " → ".join(f"{e:.3f}" for e in self.effects)
        lines = [f"Simulated panel (seed {self.seed}): true effect by years of exposure {eff} SD "
                 f"(×{SCALE:g} points); school SD τ = {self.tau:g}, school growth SD = {self.slope_sd:g}"]
        for r in self.by_year.itertuples(index=False):
            lines.append(f"  {r.subject} {r.time}: true effect {r.effect_sd:.4f} SD over {r.n_pl_rows:,} PL rows")
        return "\n".join(lines)

    def to_json(self, indent: int = 2) -> str:
        def records(df):
            return json.loads(df.to_json(orient="records"))
        return json.dumps({"effects": list(self.effects), "tau": self.tau, "slope_sd": self.slope_sd,
                           "scale": SCALE, "seed": self.seed, "params": dict(self.params),
                           "by_year": records(self.by_year), "by_exposure": records(self.by_exposure),
                           "schools": records(self.schools), "school_years": records(self.school_years)},
                          indent=indent, default=str)


@dataclass(frozen=True, repr=False)
class PanelSimulated:
    """A simulated panel (``data``) and its ``truth``."""

    data: pd.DataFrame = Frame()
    truth: PanelTruth

    def __iter__(self):
        return iter((self.data, self.truth))

    def __repr__(self) -> str:
        return f"PanelSimulated(data: {len(self.data):,} rows)\n{self.truth.summary()}"


def simulate_panel(
    *,
    n_schools: int = 30,
    n_pl_schools: int = 10,
    years: Sequence[int] = (2021, 2022, 2023, 2024),
    adoption: Sequence[int] = (2022,),
    effects: Sequence[float] = (0.05, 0.10, 0.15),
    tau: float = 0.03,
    slope_sd: float = 0.0,
    students_per_grade: int = 20,
    grades: Sequence[int] = (3, 4, 5),
    subjects: Sequence[str] = ("math", "reading"),
    entrants: bool = True,
    absence: float = 0.03,
    move: float = 0.02,
    decimals: int | None = 0,
    seed: int | None = None,
) -> PanelSimulated:
    """Simulate a student × subject × year panel with known truths (see the module docstring).

    PL schools take their first program year from ``adoption`` in turn (several values give a
    staggered adoption). Columns: ``student_id``, ``school_id``, ``subject``, ``year``,
    ``grade``, ``treatment`` (1 = PL school), ``pl_year`` (the school's first program year;
    empty for comparison schools), ``pretest`` (the student's first score, fall of the entry
    year), ``posttest`` (spring score of the year), ``frl``.
    """
    years = tuple(int(y) for y in years)
    effects = tuple(float(e) for e in effects)
    adoption = tuple(int(a) for a in adoption)
    if len(years) < 2 or list(years) != sorted(set(years)):
        raise DataError(f"years must be at least two increasing values; got {years}")
    if not set(adoption) <= set(years):
        raise DataError(f"adoption years {adoption} must be among the years {years}")
    if not (0 < n_pl_schools < n_schools):
        raise DataError(f"n_pl_schools must be between 1 and n_schools − 1; got {n_pl_schools} of {n_schools}")
    if not effects:
        raise DataError("effects needs at least one value (the effect after one year of exposure)")
    for name, v in (("absence", absence), ("move", move)):
        if not 0 <= v < 1:
            raise DataError(f"{name} must be a probability in [0, 1); got {v}")
    seed = int(np.random.SeedSequence(seed).entropy) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    T, J, nsub = len(years), n_schools, len(subjects)

    S = rng.normal(0, _SD["school"], J)
    key = -1.5 * S + rng.gumbel(size=J)
    pl = np.zeros(J, bool)
    pl[np.argsort(-key)[:n_pl_schools]] = True
    g = np.full(J, np.inf)
    g[np.flatnonzero(pl)] = np.resize(np.asarray(adoption, float), n_pl_schools)
    va = rng.normal(0, _SD["va"], (J, nsub))
    u = rng.normal(0, tau, (J, nsub)) * pl[:, None]
    s = rng.normal(0, slope_sd, (J, nsub)) * pl[:, None]
    shock = rng.normal(0, _SD["shock"], (J, T, nsub))

    # students: (entry year index, entry grade, school)
    ent_year, ent_grade = [], []
    for ti in range(T):
        gr = grades if ti == 0 else ((3,) if entrants else ())
        for gg in gr:
            ent_year.append(np.full(J * students_per_grade, ti))
            ent_grade.append(np.full(J * students_per_grade, gg))
    ent_year, ent_grade = np.concatenate(ent_year), np.concatenate(ent_grade)
    n = len(ent_year)
    school0 = np.tile(np.repeat(np.arange(J), students_per_grade), n // (J * students_per_grade))
    # schools of each student in each year: moves within condition and adoption year
    school = np.repeat(school0[:, None], T, axis=1)
    peers = pd.Series(np.arange(J)).groupby([pl, g]).transform(lambda x: x.sample(frac=1, random_state=0).to_numpy())
    moves = rng.random((n, T)) < move
    moves[:, 0] = False
    for ti in range(1, T):
        school[:, ti] = np.where(moves[:, ti], peers.to_numpy()[school[:, ti - 1]], school[:, ti - 1])
    grade = ent_grade[:, None] + np.arange(T)[None, :] - ent_year[:, None]
    observed = (np.arange(T)[None, :] >= ent_year[:, None]) & (grade <= 8)
    observed &= ~((rng.random((n, T)) < absence) & (np.arange(T)[None, :] > ent_year[:, None]))
    adopted = years_arr = np.asarray(years, float)
    adopted = observed & (years_arr[None, :] >= g[school])
    k = np.cumsum(adopted, axis=1) * adopted  # years of exposure (0 before adoption)

    pre = S[school0][:, None] + rng.normal(0, _SD["eps"], (n, nsub))
    b = rng.normal(0, _SD["student"], (n, nsub))
    e = rng.normal(0, _SD["noise"], (n, T, nsub))
    eff = np.asarray(effects)
    k_idx = np.clip(k - 1, 0, len(eff) - 1)
    theta_pop = np.where(k >= 1, eff[k_idx], 0.0)[:, :, None]
    theta = theta_pop + np.where(k >= 1, 1.0, 0.0)[:, :, None] * (u[school] + s[school] * np.maximum(k - 1, 0)[:, :, None])
    jt = school * T + np.arange(T)[None, :]
    y = (_SLOPE * pre[:, None, :] + va[school] + b[:, None, :] + shock.reshape(J * T, nsub)[jt] + e + theta)

    ii, tt = np.nonzero(observed)
    frl = (rng.random(n) < 1 / (1 + np.exp(3 * S[school0]))).astype(int)
    rows = []
    for si, subj in enumerate(subjects):
        rows.append(pd.DataFrame({
            "student_id": [f"S{v:06d}" for v in ii], "school_id": [f"K{v:03d}" for v in school[ii, tt]],
            "subject": subj, "year": np.asarray(years)[tt], "grade": grade[ii, tt],
            "treatment": pl[school[ii, tt]].astype(int),
            "pl_year": pd.array(np.where(np.isfinite(g[school[ii, tt]]), g[school[ii, tt]], np.nan), dtype="Int64"),
            "pretest": 195 + 10 * (ent_grade[ii] - 3) + SCALE * pre[ii, si],
            "posttest": 200 + 10 * (grade[ii, tt] - 3) + SCALE * y[ii, tt, si],
            "frl": frl[ii], "_exposure": k[ii, tt], "_theta_pop": theta_pop[ii, tt, 0], "_theta": theta[ii, tt, si],
        }))
    data = pd.concat(rows, ignore_index=True)
    if decimals is not None:
        data[["pretest", "posttest"]] = data[["pretest", "posttest"]].round(decimals)
    plrows = data[data["treatment"] == 1]
    by_year = (plrows.groupby(["subject", "year"], sort=True)
               .agg(effect_sd=("_theta_pop", "mean"), n_pl_rows=("_theta_pop", "size"))
               .reset_index().rename(columns={"year": "time"}))
    by_year["effect_raw"] = by_year["effect_sd"] * SCALE
    kmax = int(data["_exposure"].max())
    by_exposure = pd.DataFrame({"exposure": np.arange(1, kmax + 1),
                                "effect_sd": eff[np.clip(np.arange(kmax), 0, len(eff) - 1)]})
    by_exposure["effect_raw"] = by_exposure["effect_sd"] * SCALE
    schools = pd.DataFrame({"school_id": [f"K{v:03d}" for v in range(J)], "treatment": pl.astype(int),
                            "pl_year": pd.array(np.where(np.isfinite(g), g, np.nan), dtype="Int64"),
                            "achievement_sd": S})
    for si, subj in enumerate(subjects):
        schools[f"effect_dev_sd_{subj}"] = u[:, si]
        schools[f"growth_dev_sd_{subj}"] = s[:, si]
    school_years = (plrows.groupby(["school_id", "subject", "year"], sort=True)
                    .agg(effect_sd=("_theta", "mean"), n_students=("_theta", "size")).reset_index())
    data = data.drop(columns=["_exposure", "_theta_pop", "_theta"])
    params = dict(n_schools=n_schools, n_pl_schools=n_pl_schools, years=list(years), adoption=list(adoption),
                  effects=list(effects), tau=tau, slope_sd=slope_sd, students_per_grade=students_per_grade,
                  grades=list(grades), subjects=list(subjects), entrants=entrants, absence=absence, move=move,
                  decimals=decimals)
    truth = PanelTruth(effects, float(tau), float(slope_sd), by_year, by_exposure, schools, school_years, seed, params)
    return PanelSimulated(data, truth)


__all__ = ["simulate_panel", "PanelSimulated", "PanelTruth"]
