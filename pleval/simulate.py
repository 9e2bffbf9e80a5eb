"""Synthetic personalized-learning (PL) evaluation data with a known truth.

Four generators, each returning :class:`Simulated` (``data`` + ``truth``), and
:func:`simulate_planned` (the bare variance-component model of a power analysis):

* :func:`simulate_matched` — students in grades 3–8 of many schools, a few of which adopted
  PL; selection on school poverty and achievement; for matched comparisons.
* :func:`simulate_cluster_rct` — schools randomized to PL within district blocks, with
  optional non-implementation and attrition.
* :func:`simulate_multisite_rct` — students randomized to PL within each school (a multi-site
  trial), each school with its own true effect.
* :func:`simulate_school_effects` — one effect estimate and standard error per PL school and
  subject, with moderators, for meta-analysis.

The student model (per grade × subject, in SD units of the untreated population)
------------------------------------------------------------------------------
For student ``i`` in school ``j``, with demographic indicators ``x_i`` (female, frl, ell, sped,
race dummies; probabilities depend on the school's poverty ``p_j``)::

    pre_ij  = S_j + (x_i'γ − E[x'γ | p_j]) + ε_ij                       (1)
    S_j     = a·z(p_j) + v_j,   z(p) = (p − μ_p)/σ_p                     (2)
    post_ij = ρ·pre_ij + (x_i'δ − E_pop[x'δ]) + g_j + D_j·θ_j + e_ij     (3)
    θ_j     = effect + u_j,   u_j ~ N(0, τ²)                             (4)

``S_j`` is the school's achievement level (``v_j ~ N(0, σ_v²)``), ``g_j ~ N(0,
school_value_added_sd²)`` its own growth deviation unrelated to PL (what a placebo-school
analysis measures), ``D_j`` whether the school implemented PL and ``θ_j`` its true effect.
The posttest depends on the pretest with a single slope ``ρ`` (``pretest_slope``) within and
between schools, so selection on school poverty and achievement acts only through observables:
conditional on the pretest and demographics, untreated posttests have the same expectation in
PL and comparison schools, and matching or regression on them recovers ``θ``. ``g_j`` and
``θ_j`` are drawn independently of selection.

Calibration. ``a``, ``σ_v``, ``Var(ε)`` and ``Var(e)`` are solved in closed form so that in the
population of schools (poverty ~ Beta(2, 2), integrated by Gauss–Jacobi quadrature) the
untreated posttest has variance 1 and intraclass correlation ``icc`` (between-school share of
variance within a grade × subject), the pretest has variance 1, and poverty explains the share
``poverty_r2`` of the between-school variance of the pretest. The implied pretest ICC is
reported in ``truth.icc_pretest``. Scores are put on a RIT-like scale as
``mean[grade, subject] + 15·z`` (illustrative fall/spring means, *not* official norms), so the
effect in raw points is ``15·effect`` in every grade and subject.

Randomness: one ``numpy.random.SeedSequence(seed)`` is split into independent streams for
schools, selection/assignment, students, scores, effects and missingness, so changing, say,
``effect`` leaves every other draw unchanged (common random numbers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import special, stats

from ._results import Frame, ResultMixin

from .percentiles import to_percentile_points

SCALE_SD = 15.0
"""Population SD of every grade × subject score distribution (RIT-like points)."""

SD_KIND = (
    "population SD of the untreated posttest within grade and subject "
    f"({SCALE_SD:g} points; the pooled within-group SD of a sample is close to it)"
)

# Illustrative RIT-like fall (pretest) and spring (posttest) means by subject and grade.
FALL_MEAN = {
    "math": {3: 188.0, 4: 199.0, 5: 208.0, 6: 214.0, 7: 219.0, 8: 223.0},
    "reading": {3: 186.0, 4: 197.0, 5: 205.0, 6: 210.0, 7: 214.0, 8: 217.0},
}
SPRING_MEAN = {
    "math": {3: 200.0, 4: 209.0, 5: 216.0, 6: 221.0, 7: 225.0, 8: 229.0},
    "reading": {3: 197.0, 4: 205.0, 5: 211.0, 6: 215.0, 7: 218.0, 8: 220.0},
}
SUBJECTS = tuple(FALL_MEAN)
GRADES = tuple(FALL_MEAN["math"])
RACES = ("white", "black", "hispanic", "asian", "other")
URBANICITY = ("urban", "suburban", "rural")

# Student demographics. Race shares: softmax of these logits + slope·(p − 0.5) (white = 0),
# about 45/15/27/5/8 % at p = 0.5. ELL by race; sped and female constant.
_RACE_LOGIT = np.array([0.0, -1.1, -0.5, -2.2, -1.8])
_RACE_POVERTY_SLOPE = np.array([0.0, 3.0, 2.5, -1.5, 0.0])
_ELL_BY_RACE = np.array([0.02, 0.03, 0.30, 0.25, 0.05])
_SPED_RATE = 0.13
_FEMALE_RATE = 0.49
# Feature order of x_i in (1) and (3).
FEATURES = ("female", "frl", "ell", "sped", "black", "hispanic", "asian", "other")
# γ: pretest differences within a school (SD units), by subject.
PRETEST_COEF = {
    "math": np.array([-0.03, -0.25, -0.30, -0.65, -0.30, -0.15, 0.20, -0.05]),
    "reading": np.array([0.10, -0.25, -0.45, -0.70, -0.30, -0.20, 0.10, -0.05]),
}
# δ: growth differences given the pretest (SD units), both subjects.
GROWTH_COEF = np.array([0.0, -0.05, 0.03, -0.05, 0.0, 0.0, 0.0, 0.0])

# School poverty (FRL share) in the population of schools: Beta(2, 2).
_POVERTY_A = _POVERTY_B = 2.0
_POVERTY_MEAN = 0.5
_POVERTY_SD = math.sqrt(_POVERTY_A * _POVERTY_B / ((_POVERTY_A + _POVERTY_B) ** 2 * (_POVERTY_A + _POVERTY_B + 1)))
# Correlations across subjects of the same student / school.
_RHO_STUDENT = 0.7
_RHO_SCHOOL = 0.8
_RHO_VALUE_ADDED = 0.6
_SIZE_CV = 0.35  # log-normal spread of school size


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
_ATT_LABEL = {
    "matched": "realized ATT (mean true effect over PL students)",
    "cluster_rct": "realized mean true effect over students of implementing schools",
    "multisite_rct": "realized mean true effect over the students assigned to PL",
    "school_effects": "realized mean of the schools' true effects",
}


@dataclass(frozen=True, repr=False)
class Truth(ResultMixin):
    """What the simulation put in, for checking an analysis against.

    ``effect_sd`` is the population mean of the true school effects θ_j in SD units, where the
    SD is ``sd`` (:data:`SCALE_SD`, described by ``sd_kind``); ``effect_raw = effect_sd·sd``.
    ``att_sd`` is the realized sample average effect on the treated (mean of θ_j over the rows
    of schools that implemented PL), which differs from ``effect_sd`` by chance. ``schools``
    has one row per school (school_id index) with its true effect and latent values;
    ``details`` holds design-specific values (see each generator).
    """

    design: str
    effect_sd: float
    effect_raw: float
    sd: float
    sd_kind: str
    percentile_points: float
    tau_sd: float
    tau_raw: float
    icc: float
    icc_pretest: Mapping[str, float]
    att_sd: float
    att_raw: float
    schools: pd.DataFrame = Frame()
    details: Mapping[str, Any]
    seed: int
    params: Mapping[str, Any]

    @property
    def school_effects(self) -> pd.Series:
        """True effect (SD units) of each school that implemented PL, indexed by school_id."""
        s = self.schools.loc[self.schools["implemented"] == 1, "effect_sd"]
        return s.rename("effect_sd")

    @property
    def school_effects_raw(self) -> pd.Series:
        """True effect (raw points) of each school that implemented PL."""
        return (self.school_effects * self.sd).rename("effect_raw")

    def as_dict(self) -> dict:
        """JSON-ready dict (NaN as null; the per-school table as a list of records)."""
        out = {f: getattr(self, f) for f in (
            "design", "effect_sd", "effect_raw", "percentile_points", "sd", "sd_kind", "tau_sd",
            "tau_raw", "icc", "icc_pretest", "att_sd", "att_raw", "details", "seed", "params")}
        out["schools"] = self.schools.reset_index().to_dict(orient="records")
        return _jsonable(out)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    def to_frame(self) -> pd.DataFrame:
        """The scalar truths as a two-column table (quantity, value); per-school truths are
        in :attr:`schools`."""
        names = ("design", "effect_sd", "effect_raw", "percentile_points", "sd", "sd_kind", "tau_sd",
                 "tau_raw", "icc", "att_sd", "att_raw", "seed")
        return pd.DataFrame({"quantity": names, "value": [getattr(self, n) for n in names]})

    def summary(self) -> str:
        pp = self.percentile_points
        lines = [
            f"Simulated {self.design} data (seed {self.seed})",
            f"  true effect: {self.effect_sd:.4f} SD = {self.effect_raw:.3f} points = {pp:+.2f} percentile points",
            f"  SD: {self.sd:g} ({self.sd_kind})",
            f"  tau (SD of true school effects): {self.tau_sd:.4f} SD = {self.tau_raw:.3f} points",
            f"  {_ATT_LABEL[self.design]}: {self.att_sd:.4f} SD = {self.att_raw:.3f} points",
        ]
        if np.isfinite(self.icc):
            lines.append(
                f"  ICC (posttest): {self.icc:.3f}; ICC (pretest): "
                + ", ".join(f"{k} {v:.3f}" for k, v in self.icc_pretest.items())
            )
        for k, v in self.details.items():
            if isinstance(v, float):
                lines.append(f"  {k}: {v:.4f}")
            elif isinstance(v, (int, str)):
                lines.append(f"  {k}: {v}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


@dataclass(frozen=True, repr=False)
class Simulated:
    """Simulated data (``data``, one row per student × subject or per school × subject)
    and the ``truth`` that generated it."""

    data: pd.DataFrame = Frame()
    truth: Truth

    def __iter__(self):  # allows ``data, truth = simulate_matched(...)``
        return iter((self.data, self.truth))

    def __repr__(self) -> str:
        return f"Simulated(data: {len(self.data):,} rows × {self.data.shape[1]} columns)\n{self.truth.summary()}"


# --------------------------------------------------------------------------------------
# Calibration of the variance components
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Calibration:
    subject: str
    icc_pre: float  # between-school share of pretest variance
    a: float  # poverty gradient of S_j (SD units per SD of poverty)
    sd_v: float  # SD of the school level not explained by poverty
    sd_eps: float  # student pretest residual SD
    sd_e: float  # student posttest residual SD
    d_bar: float  # population mean of x'δ
    slope: float  # ρ in (3)


def _cells() -> np.ndarray:
    """All 80 combinations of (race, female, frl, ell, sped) as columns
    race index, female, frl, ell, sped."""
    grid = np.stack(np.meshgrid(np.arange(5), [0, 1], [0, 1], [0, 1], [0, 1], indexing="ij"), -1)
    return grid.reshape(-1, 5)


def _race_probs(p: np.ndarray) -> np.ndarray:
    """(n, 5) race probabilities for schools with poverty ``p``."""
    return special.softmax(_RACE_LOGIT + np.multiply.outer(p - 0.5, _RACE_POVERTY_SLOPE), axis=-1)


def _features(race, female, frl, ell, sped) -> np.ndarray:
    race = np.asarray(race)
    return np.column_stack([female, frl, ell, sped] + [race == k for k in range(1, 5)]).astype(float)


_CELLS = _cells()
_CELL_X = _features(*_CELLS.T)


def _cell_probs(p: np.ndarray) -> np.ndarray:
    """(len(p), 80) probability of each demographic cell in a school with poverty ``p``."""
    race, female, frl, ell, sped = _CELLS.T
    pr = _race_probs(p)[:, race]
    q = _ELL_BY_RACE[race]
    return (
        pr
        * np.where(female == 1, _FEMALE_RATE, 1 - _FEMALE_RATE)
        * np.where(frl == 1, p[:, None], 1 - p[:, None])
        * np.where(ell == 1, q, 1 - q)
        * np.where(sped == 1, _SPED_RATE, 1 - _SPED_RATE)
    )


def _school_mean(p: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """E[x'coef | school poverty p], exactly (sum over the 80 cells)."""
    return _cell_probs(p) @ (_CELL_X @ coef)


def _calibrate(subject: str, icc: float, slope: float, va_sd: float, poverty_r2: float) -> _Calibration:
    """Solve the variance components of model (1)–(3) for one subject.

    With s² = pretest ICC, a = −√R²·s, σ_v² = (1−R²)s², population moments over p ~ Beta(2,2):
    between-school posttest variance  ρ²s² − 2ρ√R²·s·Cov(z, m_δ) + Var(m_δ) + σ_g² = icc  (quadratic in s);
    within-school pretest variance    E Var(x'γ|p) + σ_ε² = 1 − s²;
    within-school posttest variance   ρ²(1−s²) + E Var(x'δ|p) + 2ρ E Cov(x'γ, x'δ|p) + σ_e² = 1 − icc.
    """
    # Gauss–Jacobi nodes for the Beta(2,2) density ∝ (1−x)(1+x) on x = 2p − 1.
    x, w = special.roots_jacobi(60, _POVERTY_B - 1, _POVERTY_A - 1)
    p, w = (x + 1) / 2, w / w.sum()
    probs = _cell_probs(p)
    c = _CELL_X @ PRETEST_COEF[subject]
    d = _CELL_X @ GROWTH_COEF
    m_c, m_d = probs @ c, probs @ d
    var_c = probs @ c**2 - m_c**2
    var_d = probs @ d**2 - m_d**2
    cov_cd = probs @ (c * d) - m_c * m_d
    z = (p - _POVERTY_MEAN) / _POVERTY_SD
    d_bar = w @ m_d
    var_md = w @ (m_d - d_bar) ** 2
    cov_zmd = w @ (z * (m_d - d_bar))
    r = math.sqrt(poverty_r2)
    qa, qb, qc = slope**2, -2 * slope * r * cov_zmd, var_md + va_sd**2 - icc
    disc = qb**2 - 4 * qa * qc
    if qc >= 0 or disc < 0:
        raise ValueError(
            f"icc={icc} is too small: it must exceed school_value_added_sd² plus the between-school "
            f"variance of demographic growth differences ({va_sd**2 + var_md:.4f})"
        )
    s = (-qb + math.sqrt(disc)) / (2 * qa)
    sd_eps2 = 1 - s**2 - w @ var_c
    sd_e2 = 1 - icc - slope**2 * (1 - s**2) - w @ var_d - 2 * slope * (w @ cov_cd)
    if s >= 1 or sd_eps2 <= 0:
        raise ValueError(
            f"icc={icc} with pretest_slope={slope} implies a pretest ICC of {s**2:.3f}, which leaves no "
            "student-level pretest variance; lower icc or raise pretest_slope"
        )
    if sd_e2 <= 0:
        raise ValueError(
            f"pretest_slope={slope} is too large for icc={icc}: the posttest would need negative "
            "student-level residual variance; use a smaller slope"
        )
    return _Calibration(
        subject=subject,
        icc_pre=s**2,
        a=-r * s,
        sd_v=math.sqrt(1 - poverty_r2) * s,
        sd_eps=math.sqrt(sd_eps2),
        sd_e=math.sqrt(sd_e2),
        d_bar=float(d_bar),
        slope=slope,
    )


# --------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------
def _streams(seed: int | None, k: int) -> tuple[int, list[np.random.Generator]]:
    ss = np.random.SeedSequence(seed)
    seed_used = int(ss.entropy) if seed is None else seed
    return seed_used, [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(k)]


def _correlated_normals(rng: np.random.Generator, n: int, k: int, rho: float) -> np.ndarray:
    """(n, k) standard normals with correlation ``rho`` between columns."""
    common = rng.standard_normal((n, 1))
    return math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.standard_normal((n, k))


def _lognormal_sizes(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return mean * np.exp(_SIZE_CV * rng.standard_normal(n) - _SIZE_CV**2 / 2)


def _draw_students(rng: np.random.Generator, p: np.ndarray) -> dict[str, np.ndarray]:
    """Demographics of students whose schools have poverty ``p`` (one entry per student)."""
    n = len(p)
    cum = np.cumsum(_race_probs(p), axis=1)
    race = (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    frl = (rng.random(n) < p).astype(np.int64)
    ell = (rng.random(n) < _ELL_BY_RACE[race]).astype(np.int64)
    sped = (rng.random(n) < _SPED_RATE).astype(np.int64)
    female = (rng.random(n) < _FEMALE_RATE).astype(np.int64)
    return {"race": race, "female": female, "frl": frl, "ell": ell, "sped": sped}


def _school_levels(rng, p, cals, va_sd) -> tuple[np.ndarray, np.ndarray]:
    """School achievement S_j (2) and value added g_j, each (n_schools, n_subjects)."""
    k = len(cals)
    z = (p - _POVERTY_MEAN) / _POVERTY_SD
    v = _correlated_normals(rng, len(p), k, _RHO_SCHOOL)
    g = va_sd * _correlated_normals(rng, len(p), k, _RHO_VALUE_ADDED)
    S = np.column_stack([c.a * z + c.sd_v * v[:, i] for i, c in enumerate(cals)])
    return S, g


def _scores(rng, students, school, p, S, g, received, cals) -> tuple[np.ndarray, np.ndarray]:
    """Standardized pretest and posttest, (n_students, n_subjects), by (1) and (3); ``received``:
    each row's true effect received (``D_j·θ_j`` of its school, or of the student when students
    are assigned)."""
    n, k = len(school), len(cals)
    X = _features(students["race"], students["female"], students["frl"], students["ell"], students["sped"])
    eps = _correlated_normals(rng, n, k, _RHO_STUDENT)
    e = _correlated_normals(rng, n, k, _RHO_STUDENT / 2)
    growth = X @ GROWTH_COEF
    pre = np.empty((n, k))
    post = np.empty((n, k))
    for i, c in enumerate(cals):  # loop over the (one or two) subjects
        coef = PRETEST_COEF[c.subject]
        pre[:, i] = S[school, i] + (X @ coef - _school_mean(p, coef)[school]) + c.sd_eps * eps[:, i]
        post[:, i] = (
            c.slope * pre[:, i] + (growth - c.d_bar) + g[school, i] + received + c.sd_e * e[:, i]
        )
    return pre, post


def _check_subjects(subjects) -> tuple:
    subjects = tuple(subjects)
    bad = [s for s in subjects if s not in SUBJECTS]
    if not subjects or bad or len(set(subjects)) != len(subjects):
        raise ValueError(f"subjects must be distinct values from {SUBJECTS}; got {list(subjects)}")
    return subjects


def _check_effects(effect, tau, va_sd, slope) -> None:
    for name, val in (("effect", effect), ("tau", tau), ("school_value_added_sd", va_sd), ("pretest_slope", slope)):
        if not np.isfinite(val):
            raise ValueError(f"{name} must be finite; got {val}")
    if tau < 0 or va_sd < 0:
        raise ValueError(f"tau and school_value_added_sd must be >= 0; got {tau} and {va_sd}")
    if not 0 < slope < 1:
        raise ValueError(f"pretest_slope must lie strictly between 0 and 1; got {slope}")


def _validate_common(grades, subjects, effect, tau, icc, va_sd, slope, poverty_r2) -> tuple[tuple, tuple]:
    grades = tuple(int(g) for g in grades)
    if not grades or any(g not in GRADES for g in grades) or len(set(grades)) != len(grades):
        raise ValueError(f"grades must be distinct values from {GRADES}; got {list(grades)}")
    subjects = _check_subjects(subjects)
    _check_effects(effect, tau, va_sd, slope)
    if not 0 < icc < 1:
        raise ValueError(f"icc must lie strictly between 0 and 1; got {icc}")
    if not 0 <= poverty_r2 < 1:
        raise ValueError(f"poverty_r2 must lie in [0, 1); got {poverty_r2}")
    return grades, subjects


class _Str:
    """A string column given as unique values and integer codes (built with Arrow: fast)."""

    def __init__(self, values, codes):
        self.values = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
        self.codes = np.asarray(codes)

    def __getitem__(self, idx) -> "_Str":
        return _Str(self.values, self.codes[idx])

    def series(self) -> pd.Series:
        return pc.take(self.values, pa.array(self.codes)).to_pandas().astype("str")


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """``prefix`` + zero-padded 1..n, e.g. SCH0001."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _raw_scores(z: np.ndarray, grade: np.ndarray, subjects: tuple, means: dict, decimals: int | None) -> np.ndarray:
    table = np.array([[means[s].get(g, np.nan) for g in range(max(GRADES) + 1)] for s in subjects])
    raw = table[np.arange(len(subjects)), grade[:, None]] + SCALE_SD * z
    return raw if decimals is None else np.round(raw, decimals)


def _proficient(post: np.ndarray, grade: np.ndarray, subjects: tuple) -> pd.arrays.IntegerArray:
    """1 when the posttest is at or above its grade's spring mean (the median of untreated
    students' scores), 0 below, missing with the posttest; student-major like ``post.ravel()``."""
    cut = _raw_scores(np.zeros(post.shape), grade, subjects, SPRING_MEAN, None)
    out = pd.array((post >= cut).ravel().astype(np.int64), dtype="Int64")
    out[np.isnan(post.ravel())] = pd.NA
    return out


def _long_frame(ids: dict, subjects: tuple, pre: np.ndarray, post: np.ndarray, tail: dict) -> pd.DataFrame:
    """One row per student × subject, student-major. ``ids``/``tail`` hold per-student numpy
    arrays or :class:`_Str` columns (in order: ids, subject, pretest, posttest, proficient, tail)."""
    n, k = pre.shape
    rep = np.repeat(np.arange(n), k)
    cols = {name: v[rep] for name, v in ids.items()}
    cols["subject"] = _Str(subjects, np.tile(np.arange(k), n))
    cols["pretest"] = pre.ravel()
    cols["posttest"] = post.ravel()
    cols["proficient"] = _proficient(post, ids["grade"], subjects)
    cols.update({name: v[rep] for name, v in tail.items()})
    return pd.DataFrame({name: v.series() if isinstance(v, _Str) else v for name, v in cols.items()})


def _rank_within(groups: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each element's rank (0, 1, ...) by ``key`` among the elements of its group (``groups``
    sorted or not): a random ``key`` ranks a random permutation within each group."""
    order = np.lexsort((key, groups))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.searchsorted(groups[order], groups[order], side="left")
    return rank


def _trial_frame(school_ids, school, block, treatment, takeup, grade, subjects, pre_z, post_z, decimals, students,
                 p) -> pd.DataFrame:
    """A trial's rows in the column contract of ``sample_data/pl_cluster_rct.csv`` (each row's
    ``block``, ``treatment`` and ``takeup`` given)."""
    n = len(school)
    return _long_frame(
        {"student_id": _Str(_ids("STU", n, 6), np.arange(n)), "school_id": _Str(school_ids, school),
         "block": block, "treatment": treatment, "takeup": takeup, "grade": grade.astype(np.int64)},
        subjects,
        _raw_scores(pre_z, grade, subjects, FALL_MEAN, decimals),
        _raw_scores(post_z, grade, subjects, SPRING_MEAN, decimals),
        {"female": students["female"], "frl": students["frl"], "ell": students["ell"], "sped": students["sped"],
         "race": _Str(RACES, students["race"]), "school_poverty": np.round(p, 3)[school]},
    )


def _weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(x * w) / np.sum(w)) if np.sum(w) > 0 else math.nan


def _pooled_grade_sd(grades: tuple, subject: str) -> float:
    """SD of the untreated posttest pooling the grades (equal shares): √(15² + Var(grade means))."""
    means = np.array([SPRING_MEAN[subject][g] for g in grades])
    return float(math.sqrt(SCALE_SD**2 + means.var()))


def _school_table(school_ids, implemented, theta, p, S, g, subjects, n_students, **extra) -> pd.DataFrame:
    tab = pd.DataFrame(
        {
            "implemented": implemented.astype(np.int64),
            "effect_sd": np.where(implemented == 1, theta, 0.0),
            "potential_effect_sd": theta,
            "school_poverty": p,
            "n_students": n_students.astype(np.int64),
            **extra,
            **{f"achievement_{s}": S[:, i] for i, s in enumerate(subjects)},
            **{f"value_added_{s}": g[:, i] for i, s in enumerate(subjects)},
        },
        index=pd.Index(school_ids, name="school_id", dtype="str"),
    )
    tab["effect_raw"] = tab["effect_sd"] * SCALE_SD
    return tab


def _common_details(grades, subjects, cals, va_sd, effect) -> dict:
    out = {"school_value_added_sd": va_sd, "pretest_slope": cals[0].slope}
    for s in subjects:
        sd = _pooled_grade_sd(grades, s)
        out[f"sd_posttest_pooled_over_grades_{s}"] = sd
        out[f"effect_sd_if_standardized_by_pooled_grades_sd_{s}"] = effect * SCALE_SD / sd
    return out


def simulate_matched(
    n_schools: int = 300,
    n_pl_schools: int = 32,
    students_per_grade: float = 40,
    grades: Sequence[int] = GRADES,
    subjects: Sequence[str] = SUBJECTS,
    effect: float = 0.08,
    tau: float = 0.15,
    school_value_added_sd: float = 0.10,
    icc: float = 0.15,
    pretest_slope: float = 0.75,
    missing_posttest: float = 0.0,
    selection_poverty: float = 1.0,
    selection_achievement: float = 1.0,
    poverty_r2: float = 0.5,
    decimals: int | None = 0,
    seed: int | None = None,
) -> Simulated:
    """Students in PL and non-PL schools, for a matched comparison (model (1)–(4) of the module).

    ``n_schools`` schools in all, of which ``n_pl_schools`` adopted PL. School poverty
    ~ Beta(2, 2). PL schools are the top ``n_pl_schools`` of the score
    ``selection_poverty·z(poverty) − selection_achievement·z(achievement) + Gumbel noise``
    (Gumbel top-k: sampling without replacement with probability ∝ exp(score)), so they are
    poorer and lower-achieving than the pool, and a naive comparison is biased downward; the
    selection acts through the school's achievement level, which enters the pretest, so
    comparisons adjusted for pretest and demographics within grade × subject are unbiased.
    Each school has ``Poisson(λ_j)`` students per grade (at least 2), λ_j log-normal with mean
    ``students_per_grade`` and CV 0.35; each student has a row per subject.

    True effects: θ_j = effect + τ·N(0,1) for every school (the effect it would have), applied
    to PL schools. ``truth.effect_sd`` is the population mean, ``truth.att_sd`` the
    student-weighted mean over PL schools. A matched comparison identifies the ATT plus the
    difference in school growth deviations g_j between PL and comparison students,
    ``truth.details['value_added_gap_sd']`` (zero in expectation).

    Missing posttests: each student misses both subjects' posttests with probability
    ``missing_posttest`` (completely at random). Scores are rounded to ``decimals`` (None: not
    rounded).

    Returns :class:`Simulated` whose ``data`` has the columns of ``sample_data/pl_matched_students.csv``:
    student_id, school_id, treatment, grade, subject, pretest, posttest, proficient (1 when the
    posttest is at or above the grade's spring mean, the untreated median; missing with the
    posttest), female, frl, ell, sped, race, school_poverty, urbanicity.
    """
    params = dict(locals())
    grades, subjects = _validate_common(grades, subjects, effect, tau, icc, school_value_added_sd, pretest_slope, poverty_r2)
    if not (isinstance(n_pl_schools, (int, np.integer)) and 1 <= n_pl_schools < n_schools):
        raise ValueError(f"n_pl_schools must be an integer between 1 and n_schools - 1 = {n_schools - 1}; got {n_pl_schools}")
    if not students_per_grade > 0:
        raise ValueError(f"students_per_grade must be positive; got {students_per_grade}")
    if not 0 <= missing_posttest < 1:
        raise ValueError(f"missing_posttest must lie in [0, 1); got {missing_posttest}")
    seed_used, (r_school, r_select, r_student, r_score, r_effect, r_missing) = _streams(seed, 6)
    cals = [_calibrate(s, icc, pretest_slope, school_value_added_sd, poverty_r2) for s in subjects]
    J, G = n_schools, len(grades)

    # Schools.
    p = r_school.beta(_POVERTY_A, _POVERTY_B, J)
    pc = p - 0.5
    urb_probs = special.softmax(np.column_stack([-0.3 + 3 * pc, -3 * pc, np.full(J, -0.4)]), axis=1)
    urb = (r_school.random(J)[:, None] > np.cumsum(urb_probs, axis=1)[:, :-1]).sum(axis=1)
    lam = _lognormal_sizes(r_school, students_per_grade, J)
    n_jg = np.maximum(2, r_school.poisson(lam[:, None], size=(J, G)))
    S, g = _school_levels(r_school, p, cals, school_value_added_sd)
    theta = effect + tau * r_effect.standard_normal(J)

    # Selection into PL (Gumbel top-k).
    ach = S.mean(axis=1)
    score = (
        selection_poverty * (p - _POVERTY_MEAN) / _POVERTY_SD
        - selection_achievement * (ach - ach.mean()) / ach.std()
        + r_select.gumbel(size=J)
    )
    treat = np.zeros(J, dtype=np.int64)
    treat[np.argsort(-score, kind="stable")[:n_pl_schools]] = 1

    # Students and scores.
    school = np.repeat(np.repeat(np.arange(J), G), n_jg.ravel())
    grade = np.repeat(np.tile(np.asarray(grades), J), n_jg.ravel())
    students = _draw_students(r_student, p[school])
    pre_z, post_z = _scores(r_score, students, school, p, S, g, (theta * treat)[school], cals)
    missing = r_missing.random(len(school)) < missing_posttest
    post_z[missing] = np.nan

    school_ids = _ids("SCH", J, 4)
    n = len(school)
    data = _long_frame(
        {"student_id": _Str(_ids("STU", n, 7), np.arange(n)), "school_id": _Str(school_ids, school),
         "treatment": treat[school], "grade": grade.astype(np.int64)},
        subjects,
        _raw_scores(pre_z, grade, subjects, FALL_MEAN, decimals),
        _raw_scores(post_z, grade, subjects, SPRING_MEAN, decimals),
        {"female": students["female"], "frl": students["frl"], "ell": students["ell"], "sped": students["sped"],
         "race": _Str(RACES, students["race"]), "school_poverty": np.round(p, 3)[school],
         "urbanicity": _Str(URBANICITY, urb[school])},
    )

    n_students = n_jg.sum(axis=1)
    w_pl = n_students * treat
    att = _weighted_mean(theta, w_pl)
    gap = float(np.mean([_weighted_mean(g[:, i], w_pl) - _weighted_mean(g[:, i], n_students * (1 - treat))
                         for i in range(len(subjects))]))
    schools = _school_table(school_ids.to_pylist(), treat, theta, p, S, g, subjects, n_students,
                            urbanicity=np.asarray(URBANICITY)[urb])
    details = {
        "n_schools": J,
        "n_pl_schools": int(treat.sum()),
        "n_students": int(len(school)),
        "n_missing_posttest_rows": int(missing.sum() * len(subjects)),
        "value_added_gap_sd": gap,
        "matched_estimand_sd": att + gap,
        "pl_minus_comparison_poverty": float(p[treat == 1].mean() - p[treat == 0].mean()),
        "pl_minus_comparison_achievement_sd": float(
            _weighted_mean(ach, w_pl) - _weighted_mean(ach, n_students * (1 - treat))
        ),
        **_common_details(grades, subjects, cals, school_value_added_sd, effect),
    }
    truth = _make_truth("matched", effect, tau, icc, cals, att, schools, details, seed_used, params)
    return Simulated(data, truth)


def _make_truth(design, effect, tau, icc, cals, att, schools, details, seed, params) -> Truth:
    params = {k: (list(v) if isinstance(v, (range, tuple, list)) else v) for k, v in params.items()}
    params["seed"] = seed
    return Truth(
        design=design,
        effect_sd=float(effect),
        effect_raw=float(effect * SCALE_SD),
        sd=SCALE_SD,
        sd_kind=SD_KIND,
        percentile_points=float(to_percentile_points(effect)),
        tau_sd=float(tau),
        tau_raw=float(tau * SCALE_SD),
        icc=float(icc),
        icc_pretest=MappingProxyType({c.subject: float(c.icc_pre) for c in cals}),
        att_sd=float(att),
        att_raw=float(att * SCALE_SD),
        schools=schools,
        details=MappingProxyType(details),
        seed=int(seed),
        params=MappingProxyType(params),
    )


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def simulate_cluster_rct(
    n_schools: int = 40,
    n_blocks: int = 10,
    students_per_school: float = 120,
    grades: Sequence[int] = GRADES,
    subjects: Sequence[str] = SUBJECTS,
    effect: float = 0.10,
    tau: float = 0.10,
    school_value_added_sd: float = 0.10,
    icc: float = 0.15,
    pretest_slope: float = 0.75,
    share_treated: float = 0.5,
    noncompliance: float = 0.0,
    attrition: float = 0.0,
    differential_attrition: float = 0.0,
    attrition_pretest_slope: float = 0.0,
    schools_lost: int = 0,
    poverty_r2: float = 0.5,
    decimals: int | None = 0,
    seed: int | None = None,
) -> Simulated:
    """A cluster-randomized trial: schools randomized to PL within district blocks.

    Schools are split into ``n_blocks`` districts as evenly as possible; in a district of
    ``n_b`` schools exactly ``floor(n_b·share_treated + 1/2)`` are assigned to PL by a random
    permutation (it must leave at least one school in each arm). School poverty is Beta(2, 2)
    marginally with correlation within districts (Gaussian copula, ρ = 0.5). Students follow
    model (1)–(4) of the module; each school has a log-normal number of students (mean
    ``students_per_school``, CV 0.35) spread evenly at random over the grades.

    Noncompliance (one-sided): exactly ``round(noncompliance·n_assigned)`` randomly chosen
    assigned schools do not implement PL (``takeup = 0``, no effect); control schools never
    implement. Attrition (missing posttest, both subjects of a student): probability
    ``Φ(Φ⁻¹(r)·√(1+β²) − β·z_i)`` with ``r = attrition ± differential_attrition/2`` (treatment
    +, control −), ``β = attrition_pretest_slope`` and ``z_i`` the student's standardized mean
    pretest, so the arm's expected attrition is ``r`` whatever β (lower scorers leave more
    when β > 0). ``schools_lost`` randomly chosen schools lose every posttest. Rows of
    attrited students are kept with a missing posttest.

    ``truth.effect_sd`` is the effect of implementing PL (population mean of θ_j); the
    population ITT is ``effect × share of assigned schools implementing``
    (``truth.details['itt_sd']``); ``truth.att_sd`` and ``details['cace_sample_sd']`` are the
    realized mean of θ_j over students of implementing schools, ``details['itt_sample_sd']``
    the realized mean of ``takeup·θ_j`` over students of assigned schools.

    ``data`` has the columns of ``sample_data/pl_cluster_rct.csv``: student_id, school_id,
    block, treatment, takeup, grade, subject, pretest, posttest, proficient (as in
    :func:`simulate_matched`), female, frl, ell, sped, race, school_poverty.
    """
    params = dict(locals())
    grades, subjects = _validate_common(grades, subjects, effect, tau, icc, school_value_added_sd, pretest_slope, poverty_r2)
    J, B, G = n_schools, n_blocks, len(grades)
    if not (isinstance(B, (int, np.integer)) and 1 <= B <= J // 2):
        raise ValueError(f"n_blocks must be an integer from 1 to n_schools // 2 = {J // 2}; got {B}")
    sizes = J // B + (np.arange(B) < J % B)
    m_b = np.floor(sizes * share_treated + 0.5).astype(np.int64)
    if np.any(m_b < 1) or np.any(m_b > sizes - 1):
        raise ValueError(
            f"share_treated={share_treated} leaves a district with no treated or no control school "
            f"(district sizes {sorted(set(sizes.tolist()))}); change share_treated or n_blocks"
        )
    if not students_per_school >= G:
        raise ValueError(f"students_per_school must be at least the number of grades ({G}); got {students_per_school}")
    for name, val in (("noncompliance", noncompliance), ("attrition", attrition)):
        if not 0 <= val < 1:
            raise ValueError(f"{name} must lie in [0, 1); got {val}")
    rates = np.array([attrition - differential_attrition / 2, attrition + differential_attrition / 2])
    if np.any(rates < 0) or np.any(rates >= 1):
        raise ValueError(
            f"attrition ± differential_attrition/2 must lie in [0, 1); got control {rates[0]:.3f}, treatment {rates[1]:.3f}"
        )
    if not (isinstance(schools_lost, (int, np.integer)) and 0 <= schools_lost < J):
        raise ValueError(f"schools_lost must be an integer from 0 to n_schools - 1; got {schools_lost}")
    seed_used, (r_school, r_assign, r_student, r_score, r_effect, r_missing) = _streams(seed, 6)
    cals = [_calibrate(s, icc, pretest_slope, school_value_added_sd, poverty_r2) for s in subjects]

    # Schools in districts.
    block = np.repeat(np.arange(B), sizes)
    latent = math.sqrt(0.5) * r_school.standard_normal(B)[block] + math.sqrt(0.5) * r_school.standard_normal(J)
    p = stats.beta.ppf(stats.norm.cdf(latent), _POVERTY_A, _POVERTY_B)
    n_j = np.maximum(G, np.round(_lognormal_sizes(r_school, students_per_school, J))).astype(np.int64)
    n_jg = r_school.multinomial(n_j, np.full(G, 1.0 / G))
    S, g = _school_levels(r_school, p, cals, school_value_added_sd)
    theta = effect + tau * r_effect.standard_normal(J)

    # Blocked randomization: rank a random key within each district.
    assigned = (_rank_within(block, r_assign.random(J)) < m_b[block]).astype(np.int64)
    n_nc = int(round(noncompliance * assigned.sum()))
    nc_key = np.where(assigned == 1, r_assign.random(J), np.inf)
    takeup = assigned.copy()
    takeup[np.argsort(nc_key, kind="stable")[:n_nc]] = 0
    lost = np.zeros(J, dtype=bool)
    lost[r_assign.permutation(J)[:schools_lost]] = True

    # Students, scores, attrition.
    school = np.repeat(np.repeat(np.arange(J), G), n_jg.ravel())
    grade = np.repeat(np.tile(np.asarray(grades), J), n_jg.ravel())
    students = _draw_students(r_student, p[school])
    pre_z, post_z = _scores(r_score, students, school, p, S, g, (theta * takeup)[school], cals)
    zbar = pre_z.mean(axis=1)
    zbar = (zbar - zbar.mean()) / zbar.std()
    beta = attrition_pretest_slope
    rate = rates[assigned[school]]
    with np.errstate(divide="ignore"):
        prob = stats.norm.cdf(stats.norm.ppf(rate) * math.sqrt(1 + beta**2) - beta * zbar)
    missing = (r_missing.random(len(school)) < prob) | lost[school]
    post_z[missing] = np.nan

    school_ids, block_ids = _ids("SCH", J, 3), _ids("D", B, 2)
    data = _trial_frame(school_ids, school, _Str(block_ids, block[school]), assigned[school], takeup[school], grade,
                        subjects, pre_z, post_z, decimals, students, p)

    n_students = n_jg.sum(axis=1)
    cace = _weighted_mean(theta, n_students * takeup)
    miss_t, miss_c = missing[assigned[school] == 1].mean(), missing[assigned[school] == 0].mean()
    schools = _school_table(school_ids.to_pylist(), takeup, theta, p, S, g, subjects, n_students,
                            block=np.asarray(block_ids.to_pylist())[block], assigned=assigned,
                            lost=lost.astype(np.int64))
    details = {
        "n_schools": J,
        "n_blocks": B,
        "n_assigned_pl": int(assigned.sum()),
        "n_implemented_pl": int(takeup.sum()),
        "treated_per_block": m_b.tolist(),
        "noncompliance_rate": n_nc / int(assigned.sum()),
        "itt_sd": effect * takeup.sum() / assigned.sum(),
        "itt_sample_sd": _weighted_mean(theta * takeup, n_students * assigned),
        "cace_sample_sd": cace,
        "n_students": int(len(school)),
        "attrition_overall": float(missing.mean()),
        "attrition_treatment": float(miss_t),
        "attrition_control": float(miss_c),
        "attrition_differential": float(miss_t - miss_c),
        "schools_lost": int(schools_lost),
        **_common_details(grades, subjects, cals, school_value_added_sd, effect),
    }
    truth = _make_truth("cluster_rct", effect, tau, icc, cals, cace, schools, details, seed_used, params)
    return Simulated(data, truth)


def simulate_multisite_rct(
    n_schools: int = 20,
    students_per_school: float = 120,
    grades: Sequence[int] = GRADES,
    subjects: Sequence[str] = SUBJECTS,
    effect: float = 0.10,
    tau: float = 0.10,
    school_value_added_sd: float = 0.10,
    icc: float = 0.15,
    pretest_slope: float = 0.75,
    share_treated: float = 0.5,
    poverty_r2: float = 0.5,
    decimals: int | None = 0,
    seed: int | None = None,
) -> Simulated:
    """A multi-site trial: students randomized to PL within each school (the school is the block).

    Schools (poverty Beta(2, 2); a log-normal number of students, mean ``students_per_school``,
    CV 0.35, at least 2 per grade, spread evenly at random over the grades) follow model (1)–(4)
    of the module; in a school of ``n_j`` students exactly ``floor(n_j·share_treated + 1/2)``
    are assigned to PL by a random permutation (at least one in each arm), and an assigned
    student receives the school's effect θ_j in every subject (full take-up, no attrition). Each
    school's estimate from its own students is then unbiased for θ_j (in SD units, 15·θ_j
    points), and ``tau`` is the SD of the θ_j: what :func:`pleval.estimate` with
    ``design="rct", rct_design="blocked"`` estimates school by school.

    ``truth.schools`` has every school's ``effect_sd`` (θ_j, all implemented) and
    ``n_assigned``; ``truth.att_sd`` is the realized mean of θ_j over the assigned students.
    ``data`` has the columns of :func:`simulate_cluster_rct`'s (``block`` is the school's id,
    ``takeup`` equals ``treatment``).
    """
    params = dict(locals())
    grades, subjects = _validate_common(grades, subjects, effect, tau, icc, school_value_added_sd, pretest_slope, poverty_r2)
    J, G = n_schools, len(grades)
    if not (isinstance(J, (int, np.integer)) and J >= 2):
        raise ValueError(f"n_schools must be an integer of at least 2; got {J}")
    if not 0 < share_treated < 1:
        raise ValueError(f"share_treated must lie strictly between 0 and 1; got {share_treated}")
    if not students_per_school >= 2 * G:
        raise ValueError(f"students_per_school must be at least twice the number of grades ({2 * G}); "
                         f"got {students_per_school}")
    seed_used, (r_school, r_assign, r_student, r_score, r_effect) = _streams(seed, 5)
    cals = [_calibrate(s, icc, pretest_slope, school_value_added_sd, poverty_r2) for s in subjects]

    p = r_school.beta(_POVERTY_A, _POVERTY_B, J)
    n_j = np.maximum(2 * G, np.round(_lognormal_sizes(r_school, students_per_school, J))).astype(np.int64)
    n_jg = r_school.multinomial(n_j, np.full(G, 1.0 / G))
    S, g = _school_levels(r_school, p, cals, school_value_added_sd)
    theta = effect + tau * r_effect.standard_normal(J)

    school = np.repeat(np.repeat(np.arange(J), G), n_jg.ravel())
    grade = np.repeat(np.tile(np.asarray(grades), J), n_jg.ravel())
    m_j = np.clip(np.floor(n_j * share_treated + 0.5).astype(np.int64), 1, n_j - 1)
    # Complete randomization within each school: rank a random key among the school's students.
    assigned = (_rank_within(school, r_assign.random(len(school))) < m_j[school]).astype(np.int64)
    students = _draw_students(r_student, p[school])
    pre_z, post_z = _scores(r_score, students, school, p, S, g, theta[school] * assigned, cals)

    school_ids = _ids("SCH", J, 3)
    n = len(school)
    data = _trial_frame(school_ids, school, _Str(school_ids, school), assigned, assigned, grade, subjects, pre_z,
                        post_z, decimals, students, p)
    n_assigned = np.bincount(school, weights=assigned, minlength=J).astype(np.int64)
    schools = _school_table(school_ids.to_pylist(), np.ones(J, dtype=np.int64), theta, p, S, g, subjects, n_j,
                            n_assigned=n_assigned)
    att = _weighted_mean(theta, n_assigned)
    details = {
        "n_schools": J,
        "n_students": int(n),
        "n_assigned_pl": int(assigned.sum()),
        "share_treated": share_treated,
        "school_effects_sd_sample": float(np.std(theta, ddof=1)),
        **_common_details(grades, subjects, cals, school_value_added_sd, effect),
    }
    truth = _make_truth("multisite_rct", effect, tau, icc, cals, att, schools, details, seed_used, params)
    return Simulated(data, truth)


_YEARS = np.array([1, 2, 3, 4])
_YEARS_PROB = np.array([0.20, 0.35, 0.30, 0.15])
YEARS_MEAN = float(_YEARS @ _YEARS_PROB)  # 2.4
YEARS_VAR = float(_YEARS**2 @ _YEARS_PROB - YEARS_MEAN**2)  # 0.94


def simulate_school_effects(
    n_schools: int = 40,
    subjects: Sequence[str] = SUBJECTS,
    effect: float = 0.08,
    tau: float = 0.15,
    years_slope: float = 0.06,
    school_value_added_sd: float = 0.10,
    pretest_slope: float = 0.75,
    comparison_ratio: float = 4.0,
    decimals: int | None = 4,
    seed: int | None = None,
) -> Simulated:
    """One matched effect estimate (SD units) and its SE per PL school and subject.

    For PL school ``j`` (enrollment log-normal around 450; poverty ~ Beta(5, 2.5);
    years implementing 1–4 with probabilities 0.20/0.35/0.30/0.15, mean 2.4)::

        θ_j   = effect + years_slope·(years_j − 2.4) + u_j,   u_j ~ N(0, τ²)
        est_js = θ_j + g_js + se_js·N(0, 1)
        se_js = √(1 − ρ²)·√(1/n_t + 1/n_c)

    θ_j is the school's true effect (the same in every subject), ``g_js ~ N(0,
    school_value_added_sd²)`` (correlated 0.6 across subjects) its own growth deviation that a
    matched comparison cannot separate from the program effect, and ``se_js`` the student-level
    standard error of a pretest-adjusted difference with slope ρ (``pretest_slope``):
    it covers the sampling noise only, as a single school's matched SE does
    (docs/architecture.md, *A single school's estimate*).
    n_t ≈ Binomial(0.55·enrollment, 0.95) tested PL students, n_c ≈ Binomial(comparison_ratio·n_t, 0.9).
    Poverty and enrollment have no effect (a meta-regression should find them null).
    ``estimate`` and ``se`` are rounded to ``decimals`` (None: not rounded), as a report would.

    So a random-effects meta-analysis of one subject should find mean ``effect`` and
    between-school SD ``√(τ² + years_slope²·0.94 + school_value_added_sd²)``
    (``details['tau_estimates_sd']``), and a meta-regression on years implementing slope
    ``years_slope`` with residual SD ``√(τ² + school_value_added_sd²)``
    (``details['tau_estimates_given_years_sd']``).

    ``data`` has the columns of ``sample_data/school_effects.csv``: school_id, subject,
    estimate, se, n_treated, n_comparison, school_poverty, years_implementing, enrollment.
    """
    params = dict(locals())
    subjects = _check_subjects(subjects)
    _check_effects(effect, tau, school_value_added_sd, pretest_slope)
    if not (isinstance(n_schools, (int, np.integer)) and n_schools >= 2):
        raise ValueError(f"n_schools must be an integer >= 2; got {n_schools}")
    if not (np.isfinite(years_slope) and comparison_ratio > 0):
        raise ValueError("years_slope must be finite and comparison_ratio positive")
    seed_used, (r_school, r_effect, r_est) = _streams(seed, 3)
    J, k = n_schools, len(subjects)
    enrollment = np.maximum(100, np.round(450 * np.exp(0.4 * r_school.standard_normal(J) - 0.08))).astype(np.int64)
    poverty = r_school.beta(5.0, 2.5, J)
    years = _YEARS[(r_school.random(J)[:, None] > np.cumsum(_YEARS_PROB)[:-1]).sum(axis=1)]
    n_t = r_school.binomial(np.round(0.55 * enrollment)[:, None].astype(np.int64), 0.95, size=(J, k))
    n_c = r_school.binomial(np.round(comparison_ratio * n_t).astype(np.int64), 0.9)
    theta = effect + years_slope * (years - YEARS_MEAN) + tau * r_effect.standard_normal(J)
    g = school_value_added_sd * _correlated_normals(r_effect, J, k, _RHO_VALUE_ADDED)
    se = math.sqrt(1 - pretest_slope**2) * np.sqrt(1 / n_t + 1 / n_c)
    est = theta[:, None] + g + se * r_est.standard_normal((J, k))
    if decimals is not None:
        est, se = np.round(est, decimals), np.round(se, decimals)

    school_ids = np.asarray(_ids("PL", J, 3).to_pylist(), dtype=object)
    rep = np.repeat(np.arange(J), k)
    data = pd.DataFrame(
        {
            "school_id": school_ids[rep],
            "subject": np.tile(np.asarray(subjects, dtype=object), J),
            "estimate": est.ravel(),
            "se": se.ravel(),
            "n_treated": n_t.ravel().astype(np.int64),
            "n_comparison": n_c.ravel().astype(np.int64),
            "school_poverty": np.round(poverty, 3)[rep],
            "years_implementing": years[rep].astype(np.int64),
            "enrollment": enrollment[rep],
        }
    ).astype({"school_id": "str", "subject": "str"})
    schools = pd.DataFrame(
        {
            "implemented": np.ones(J, dtype=np.int64),
            "effect_sd": theta,
            "effect_raw": theta * SCALE_SD,
            "years_implementing": years,
            "school_poverty": poverty,
            "enrollment": enrollment,
            **{f"value_added_{s}": g[:, i] for i, s in enumerate(subjects)},
        },
        index=pd.Index(school_ids, name="school_id", dtype="str"),
    )
    details = {
        "n_schools": J,
        "years_slope": float(years_slope),
        "years_mean_population": YEARS_MEAN,
        "school_value_added_sd": float(school_value_added_sd),
        "tau_given_years_sd": float(tau),
        "tau_true_effects_sd": math.sqrt(tau**2 + years_slope**2 * YEARS_VAR),
        "tau_estimates_given_years_sd": math.sqrt(tau**2 + school_value_added_sd**2),
        "tau_estimates_sd": math.sqrt(tau**2 + years_slope**2 * YEARS_VAR + school_value_added_sd**2),
        "mean_true_effect_sample_sd": float(theta.mean()),
        "min_true_effect_pp": float(to_percentile_points(theta.min())),
        "max_true_effect_pp": float(to_percentile_points(theta.max())),
        "min_estimate_pp": float(to_percentile_points(est.min())),
        "max_estimate_pp": float(to_percentile_points(est.max())),
    }
    truth = _make_truth("school_effects", effect, tau, math.nan, [], float(theta.mean()), schools, details, seed_used, params)
    return Simulated(data, truth)


__all__ = [
    "Simulated",
    "Truth",
    "simulate_matched",
    "simulate_cluster_rct",
    "simulate_multisite_rct",
    "simulate_school_effects",
    "simulate_planned",
    "SCALE_SD",
    "FALL_MEAN",
    "SPRING_MEAN",
]


def simulate_planned(
    design: str,
    n_schools: int,
    students_per_school: int,
    icc: float,
    r2_school: float = 0.0,
    r2_student: float = 0.0,
    effect: float = 0.0,
    share_treated: float = 0.5,
    seed: int | None = None,
    *,
    districts: int = 1,
    icc_district: float = 0.0,
    omega: float = 0.0,
) -> pd.DataFrame:
    """Data of a planned design with exactly the variance components a power analysis assumes.

    ``design="cluster"`` randomizes ``round(share_treated·J)`` of the J schools;
    ``design="blocked"`` randomizes ``round(share_treated·n)`` students within each school
    (``block`` = school); ``design="blocked_cluster"`` randomizes ``round(share_treated·J)`` of
    the J schools (``n_schools``) within each of K ``districts`` (``block`` = district). With
    ρ = ``icc``, ρ₃ = ``icc_district`` (0 unless blocked_cluster) and one pretest ``x`` (slope 1
    at both levels)::

        x_ij = a_j + w_ij,                   Var(a) = ρR²₂,        Var(w) = (1−ρ−ρ₃)R²₁
        y_ij = d_k + x_ij + u_j + e_ij + δ_kT, Var(u) = ρ(1−R²₂),    Var(e) = (1−ρ−ρ₃)(1−R²₁)

    with ``Var(d_k) = ρ₃`` and the districts' effects ``δ_k ~ N(δ, ω·ρ₃)`` (``omega``; PowerUp!'s
    BCRA3_2r: the effect varies across districts like these about δ; δ_k = δ when ω = 0; in a
    ``blocked`` design the schools' effects ``δ_j ~ N(δ, ω·ρ)``, PowerUp!'s BIRA2_1r), so the
    outcome has variance 1 (given T), the school share ρ and the district share ρ₃, and the pretest
    explains R²₂ of the school and R²₁ of the student variance (the quantities of
    :mod:`pleval.power.designs`). ``blocked`` designs need only ρ and R²₁ (the school effects are
    absorbed by the blocks).
    Returns columns student_id, school_id, block, treatment, pretest, posttest (and district for
    blocked_cluster).
    """
    if design not in ("cluster", "blocked", "blocked_cluster"):
        raise ValueError(f"design must be 'cluster', 'blocked' or 'blocked_cluster'; got {design!r}")
    three = design == "blocked_cluster"
    K = int(districts) if three else 1
    for name, v in (("icc", icc), ("r2_school", r2_school), ("r2_student", r2_student), ("icc_district", icc_district)):
        if not 0 <= v < 1:
            raise ValueError(f"{name} must lie in [0, 1); got {v}")
    if not three and (icc_district or districts != 1):
        raise ValueError("districts and icc_district apply to design='blocked_cluster'")
    if design == "cluster" and omega:
        raise ValueError("omega (the effect's variation across blocks) applies to blocked designs")
    if icc + icc_district >= 1 or omega < 0 or K < 1:
        raise ValueError(f"need icc + icc_district < 1, omega >= 0 and districts >= 1; got {icc + icc_district:g}, "
                         f"{omega:g} and {districts}")
    J, n = int(n_schools), int(students_per_school)
    if J < 2 or n < 2:
        raise ValueError(f"n_schools and students_per_school must be at least 2; got {J} and {n}")
    _, (r_assign, r_school, r_student, r_block) = _streams(seed, 4)  # r_block: the blocks' (schools' or districts') effects
    school = np.repeat(np.arange(K * J), n)
    if design == "blocked":
        k = int(np.floor(share_treated * n + 0.5))
        # within each school, the k students with the smallest uniform draws are treated
        rank = np.argsort(np.argsort(r_assign.random((J, n)), axis=1), axis=1)
        treat = (rank < k).astype(np.int64).ravel()
    elif design == "cluster":
        k = int(np.floor(share_treated * J + 0.5))
        t_school = np.zeros(J, dtype=np.int64)
        t_school[r_assign.permutation(J)[:k]] = 1
        treat = t_school[school]
    else:  # within each district, the k schools with the smallest uniform draws
        k = int(np.floor(share_treated * J + 0.5))
        rank = np.argsort(np.argsort(r_assign.random((K, J)), axis=1), axis=1)
        treat = (rank < k).astype(np.int64).ravel()[school]
    if not 0 < k < (n if design == "blocked" else J):
        raise ValueError(f"share_treated={share_treated} leaves an arm empty")
    rest = 1 - icc - icc_district
    a, u = (r_school.standard_normal((2, K * J)) * np.sqrt([[icc * r2_school], [icc * (1 - r2_school)]]))
    w, e = (r_student.standard_normal((2, K * J * n)) * np.sqrt([[rest * r2_student], [rest * (1 - r2_student)]]))
    pre = a[school] + w
    post = pre + u[school] + e + effect * treat
    if design == "blocked" and omega:  # each school's effect about δ
        post += r_block.standard_normal(J)[school] * math.sqrt(omega * icc) * treat
    out = {"student_id": np.arange(K * J * n), "school_id": school, "block": school, "treatment": treat,
           "pretest": pre, "posttest": post}
    if three:
        district = school // J
        d, v = r_block.standard_normal((2, K)) * np.sqrt([[icc_district], [omega * icc_district]])
        out["posttest"] = post + d[district] + v[district] * treat
        out["block"] = out["district"] = district
    return pd.DataFrame(out)
