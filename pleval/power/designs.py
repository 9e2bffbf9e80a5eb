"""Study designs for power analysis, in the PowerUp! parameterisation (Dong & Maynard 2013).

Every design states the standardized standard error ``SSE`` of its effect-size estimate
(outcome variance 1) and the degrees of freedom ``df`` of its test; :mod:`.tdist` turns them
into power and the MDES. Notation: P the proportion treated, ρ the intraclass correlations
(shares of outcome variance between schools, ρ₂, and between districts, ρ₃), R² the share of
each level's variance explained by covariates (R²₁ students, R²₂ schools, R²ₜ the share of
effect heterogeneity explained), ω the variance of the treatment effect across blocks relative
to the block-level outcome variance, g the number of covariates at the level that sets df.
Sizes: n students per school, J schools (per district in three-level designs), K districts.

========================  ==========================================================================  ====================
design (PowerUpR name)    SSE²                                                                        df
========================  ==========================================================================  ====================
IndividualRCT (ira)       (1−R²₁) / (P(1−P)n)                                                         n − g − 2
BlockedRCT fixed (bira2c1)  (1−ρ₂)(1−R²₁) / (P(1−P)Jn)                                                J(n−1) − g − 1
  … block-specific (bira2f1) same                                                                     J(n−2) − g
BlockedRCT random (bira2)  ρ₂ω(1−R²ₜ)/J + (1−ρ₂)(1−R²₁)/(P(1−P)Jn)                                   J − g − 1
ClusterRCT (cra2)         ρ₂(1−R²₂)/(P(1−P)J) + (1−ρ₂)(1−R²₁)/(P(1−P)Jn)                              J − g − 2
BlockedClusterRCT random (bcra3r2)  ρ₃ω(1−R²ₜ)/K + ρ₂(1−R²₂)/(P(1−P)JK) + (1−ρ₃−ρ₂)(1−R²₁)/(P(1−P)JKn)  K − g − 1
BlockedClusterRCT fixed (bcra3f2)   ρ₂(1−R²₂)/(P(1−P)JK) + (1−ρ₃−ρ₂)(1−R²₁)/(P(1−P)JKn)          K(J−2) − g
MatchedComparison         ρ₂(1−R²₂)(1/J_T + 1/J_C) + (1−ρ₂)(1−R²₁)(1/(J_T n_T) + D_w/(J_C n_C))       Welch(a, J_T; b, J_C) − g
========================  ==========================================================================  ====================

Sources: Dong & Maynard (2013), *PowerUp!: A tool for calculating minimum detectable effect
sizes and minimum required sample sizes for experimental and quasi-experimental design
studies*, JREE 6(1), 24–67, Table 3 and appendix; the same formulas in the R package PowerUpR
(Bulus, Dong, Kelcey & Spybrook). Fixed block effects remove the between-block variance:
PowerUp!'s fixed-block designs take the student-level R² to include what the block indicators
explain, i.e. ``R²(PowerUp!) = ρ + (1 − ρ)·R²₁`` in pleval's terms, which gives the (1 − ρ)
factor above; with ``icc=0`` (``icc_district=0``) pleval's numbers are PowerUp!'s exactly.

The blocked cluster formulas are PowerUp!'s, kept for parity, but pleval analyses such a trial
one way: district fixed effects, one common effect, CR2 by school with Satterthwaite df
(:func:`cr2_cluster_df`: K(J − 1) − 1 with equal arms, not K(J − 2) − g), the effect averaged
over these districts (no ρ₃ω/K term, not K − g − 1 df). The plan's note gives
that analysis's df and power at the MDES (as a cluster RCT's does for unequal arms).

Matched comparisons (quasi-experimental; PL in J_T schools of n_T students, matched
comparison students from J_C schools, n_C per school) follow the two-level cluster design with
unequal arms, and with the design effect of unequal matching weights on the comparison mean,
Kish's ``D_w = m·Σw²/(Σw)² = 1 + CV²(w)`` (Kish 1965, §11.7): a comparison student reused
in several matched sets carries a larger weight, and ``m/D_w`` is the effective number of
comparison students. With equal arms and ``D_w = 1`` it is :class:`ClusterRCT` with P = ½.
Its df are Welch–Satterthwaite's for the difference of the arms' school means (:func:`welch_df`),
with a and b the two terms of SSE² that belong to each arm (``a = ρ₂(1−R²₂)/J_T +
(1−ρ₂)(1−R²₁)/(J_T n_T)``, b the same for the comparison schools with ``D_w/n_C``), as pleval's
matched analysis (CR2 by school, Bell–McCaffrey df) refers to about as many: with 4 PL schools
against 20, not the J_T + J_C − 2 = 22 of a pooled-variance test but about 4.3 (the analysis's 4.5).
The formula assumes a matched analysis as precise as randomization given the covariates; it
says nothing about bias from unobserved confounding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ..errors import DesignError
from ..percentiles import from_percentile_points, to_percentile_points
from .tdist import check_test, is_number, multiplier, power_from_ncp

_MAX_SIZE = 10**7


class UnreachableTarget(DesignError):
    """No size of the one solved for reaches the target MDES: the other sizes set a limit."""


def kish_deff(weights) -> float:
    """Kish's design effect of unequal weights, ``m·Σw²/(Σw)² = 1 + CV²(w)`` (m weights).

    For matching weights (a comparison student used in k matched sets of size r weighs Σ 1/r).
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise DesignError("weights must be finite, non-negative and not all zero")
    w = w[w > 0]
    return float(w.size * np.sum(w**2) / np.sum(w) ** 2)


def welch_df(a: float, units_a: float, b: float, units_b: float) -> float:
    """Welch–Satterthwaite df of a difference of two means whose variances are ``a`` and ``b``,
    each the mean of ``units_a`` and ``units_b`` independent units (schools):
    ``(a + b)² / (a²/(J_a − 1) + b²/(J_b − 1))`` (Satterthwaite 1946; Welch 1947): J_a + J_b − 2
    for equal arms, down to J_a − 1 as ``a`` dominates the variance."""
    return (a + b) ** 2 / (a**2 / (units_a - 1) + b**2 / (units_b - 1))


def cr2_cluster_df(blocks: int, treated: int, control: int) -> float:
    """Satterthwaite df of pleval's test of a cluster trial (CR2 by school, Bell & McCaffrey 2002)
    whose ``blocks`` blocks (districts) each assign ``treated`` schools and leave ``control``:
    the OLS of school means on assignment and block effects, under the working model of
    independent schools of equal variance (equal schools make the students' fit the same).

    With ``a = z − p`` (p = J_T/J, J = J_T + J_C) the OLS weights are ``c = a/S``, S = K·J·p(1−p),
    the leverages ``h = 1/J + a²/S`` and ``H_ij = [same block]/J + a_i a_j/S``; CR2's variance is
    ``e'De`` with ``D = diag(c²/(1 − h))`` and ``e = Mε`` (M = I − H), so its df are
    ``tr(DM)²/tr(DMDM)`` = ``(Σc²)² / (Σ_i d_i²(1 − h_i)² + Σ_{i≠j} d_i d_j H_ij²)``, summed here
    over pairs of schools by arm and by same or other block. One block gives Welch's df of J_T
    against J_C school means (:func:`welch_df` with equal variances); equal arms K(J − 1) − 1,
    the residual df. Covariates barely move it (a pretest explaining 50%/40% of the school and
    student variance: 18.9 on average where this gives 19), so none are subtracted."""
    K, J = blocks, treated + control
    p = treated / J
    S = K * J * p * (1 - p)
    a, m = (1 - p, -p), (treated, control)
    h = [1 / J + x**2 / S for x in a]
    d = [x**2 / (S**2 * (1 - hx)) for x, hx in zip(a, h)]
    den = sum(K * m[s] * d[s] ** 2 * (1 - h[s]) ** 2 for s in (0, 1))
    for s in (0, 1):
        for t in (0, 1):
            same, other = K * m[s] * (m[t] - (s == t)), K * (K - 1) * m[s] * m[t]
            den += d[s] * d[t] * (same * (1 / J + a[s] * a[t] / S) ** 2 + other * (a[s] * a[t] / S) ** 2)
    return (1 / S) ** 2 / den  # Σc² = Σa²/S² = 1/S


def _share(name: str, v, *, upper_open: bool = True, lower_open: bool = False) -> None:
    ok = is_number(v) and math.isfinite(v)
    ok = ok and (v > 0 if lower_open else v >= 0) and (v < 1 if upper_open else v <= 1)
    if not ok:
        lo = "(0" if lower_open else "[0"
        raise DesignError(f"{name} must lie in {lo}, 1); got {v!r}")


def _count(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise DesignError(f"{name} must be a whole number >= 0; got {v!r}")


def _size(name: str, v, minimum: float = 1, whole: bool = False) -> None:
    if not is_number(v) or not math.isfinite(v) or v < minimum:
        raise DesignError(f"{name} must be a number >= {minimum:g}; got {v!r}")
    if whole and v != round(v):  # a count of clusters (an average per cluster may be fractional)
        raise DesignError(f"{name} is a count and must be a whole number; got {v!r}")


@dataclass(frozen=True, kw_only=True)
class Design:
    """Base class: the test settings and the calculations every design shares (each design
    defines ``_check``, ``_variance`` = SSE² and ``df``).

    ``alpha`` (0.05), ``two_sided`` (True), ``method`` of the MDES multiplier (``"exact"``
    non-central t, default, or ``"powerup"``: ``t_{1−α/2} + t_{1−β}``; see :mod:`pleval.power.tdist`),
    ``baseline_percentile`` for percentile points (50).
    """

    alpha: float = 0.05
    two_sided: bool = True
    method: str = "exact"
    baseline_percentile: float = 50.0

    name: ClassVar[str] = ""
    sizes: ClassVar[tuple[str, ...]] = ()
    unit: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # NumPy scalars (np.int64 counted from a frame) kept as Python's
            if isinstance(getattr(self, f.name), np.generic):
                object.__setattr__(self, f.name, getattr(self, f.name).item())
        check_test(self.alpha, None, self.method)
        if not isinstance(self.two_sided, (bool, np.bool_)):
            raise DesignError(f"two_sided must be true or false; got {self.two_sided!r}")
        if not 0 < self.baseline_percentile < 100:
            raise DesignError(f"baseline_percentile must lie strictly between 0 and 100; got {self.baseline_percentile!r}")
        self._check()
        if not self.df > 0:
            raise DesignError(f"{self.name}: the design leaves {self.df:g} degrees of freedom; add units or drop covariates")

    @property
    def sse(self) -> float:
        """Standardized SE of the effect-size estimate (outcome SD 1)."""
        return math.sqrt(self._variance())

    def parameters(self) -> dict:
        """The design's inputs (sizes, ICCs, R², ...) without the test settings."""
        skip = {"alpha", "two_sided", "method", "baseline_percentile"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def replace(self, **changes) -> "Design":
        """A copy with some inputs changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # ---- calculations --------------------------------------------------------------------
    def mdes(self, power: float = 0.80) -> float:
        """Minimum detectable effect size (SD units) at ``power``: ``M(df)·SSE``."""
        return multiplier(self.df, self.alpha, power, self.two_sided, self.method) * self.sse

    def power(self, effect: float) -> float:
        """Power to detect a true effect of ``effect`` SD (exact non-central t, as PowerUp!)."""
        if not (is_number(effect) and math.isfinite(effect)):
            raise DesignError(f"effect must be a finite number of SD units; got {effect!r}")
        return float(power_from_ncp(abs(float(effect)) / self.sse, self.df, self.alpha, self.two_sided))

    def sample_size(self, target_mdes: float, solve_for: str | None = None, power: float = 0.80) -> int:
        """The smallest whole ``solve_for`` (default: the design's first size, e.g. schools)
        whose MDES at ``power`` is at most ``target_mdes``; the other inputs stay as given.

        Raises :class:`~pleval.errors.DesignError` when no size reaches the target (e.g. more
        students per school cannot beat the school-level variance).
        """
        key = self._solve_key(solve_for)
        if not (is_number(target_mdes) and math.isfinite(target_mdes) and target_mdes > 0):
            raise DesignError(f"target MDES must be a positive number of SD units; got {target_mdes!r}")
        target_mdes = float(target_mdes)

        def mdes_at(s: int) -> float:
            try:
                return self.replace(**{key: s}).mdes(power)
            except DesignError:
                return math.inf

        lo = 1
        while not math.isfinite(mdes_at(lo)):
            lo += 1
            if lo > 1000:
                raise DesignError(f"{self.name}: no {key} count gives positive degrees of freedom")
        limit = mdes_at(_MAX_SIZE)
        if limit > target_mdes:
            raise UnreachableTarget(
                f"no number of {self.unit.get(key, key)} reaches an MDES of {target_mdes:.3f} SD: even with "
                f"{_MAX_SIZE:,} the MDES is {limit:.3f} SD, a limit the other inputs set (the schools of a cluster "
                "trial, the comparison schools of a matched design); change those, or aim for a larger MDES"
            )
        if mdes_at(lo) <= target_mdes:
            return lo
        hi = lo * 2
        while mdes_at(hi) > target_mdes:
            lo, hi = hi, hi * 2
        while hi - lo > 1:  # MDES decreases with every size: bisection on whole numbers
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if mdes_at(mid) > target_mdes else (lo, mid)
        return hi

    def _solve_key(self, solve_for: str | None) -> str:
        key = solve_for or self.sizes[0]
        if key not in self.sizes:
            raise DesignError(f"{self.name}: solve_for must be one of {', '.join(self.sizes)}; got {solve_for!r}")
        return key

    def plan(self, power: float = 0.80, effect: float | None = None, target_mdes: float | None = None,
             target_pp: float | None = None, solve_for: str | None = None) -> "Plan":
        """MDES (SD and percentile points), power for ``effect``, and the ``solve_for`` size needed
        for ``target_mdes`` SD (or ``target_pp`` percentile points from the baseline percentile)."""
        from .plan import Plan

        check_test(self.alpha, power, self.method)
        if target_pp is not None:
            if target_mdes is not None:
                raise DesignError("give target_mdes (SD) or target_pp (percentile points), not both")
            target_mdes = float(from_percentile_points(target_pp, self.baseline_percentile))
        m = self.mdes(power)
        req = key = unreachable = None
        if target_mdes is not None:
            key = self._solve_key(solve_for)
            try:
                req = self.sample_size(target_mdes, key, power)
            except UnreachableTarget as exc:  # the MDES and power stand; the plan says why no size is given
                unreachable = str(exc)
        return Plan(
            design=self.name,
            parameters=self.parameters(),
            alpha=self.alpha,
            two_sided=bool(self.two_sided),
            method=self.method,
            baseline_percentile=self.baseline_percentile,
            df=float(self.df),
            sse=self.sse,
            target_power=power,
            multiplier=multiplier(self.df, self.alpha, power, self.two_sided, self.method),
            mdes=m,
            mdes_pp=float(to_percentile_points(m, self.baseline_percentile)),
            effect=effect,
            effect_pp=None if effect is None else float(to_percentile_points(effect, self.baseline_percentile)),
            power=None if effect is None else self.power(effect),
            target_mdes=target_mdes,
            target_pp=None if target_mdes is None else float(to_percentile_points(target_mdes, self.baseline_percentile)),
            solve_for=key,
            required=req,
            solve_unit=None if key is None else self.unit.get(key, key),
            unreachable=unreachable,
            notes=self._notes(power, m),
        )

    def _notes(self, power: float, mdes: float) -> tuple[str, ...]:
        """What the plan should say besides its figures (none by default)."""
        return ()

    def _analysis_note(self, power: float, mdes: float, df: float, sse: float, analysis: str, basis: str, *,
                       lead: str = "", estimand: str = "", tail: str = "", always: bool = False,
                       which: str = "pleval's analysis") -> tuple[str, ...]:
        """The note on pleval's own analysis of the design (``analysis``: what it fits) when it refers
        to ``df`` degrees of freedom (``basis``: where they come from) and has standardized SE ``sse``:
        its power at the MDES, when that differs from the formula's ``power`` by half a point or
        more (so that the two decimals printed differ), or ``always``. ``which`` names the analysis."""
        at = float(power_from_ncp(mdes / sse, df, self.alpha, self.two_sided))
        if not always and abs(at - power) < 0.005:
            return ()
        return (f"{lead}{which} ({analysis}) refers to about {df:.1f} df ({basis}), not the formula's "
                f"{self.df:g}, so its power{estimand} at the MDES above is about {at:.2f}, not {power:.2f}{tail}",)


def _pq(p: float) -> float:
    return p * (1 - p)


@dataclass(frozen=True, kw_only=True)
class IndividualRCT(Design):
    """Students randomized individually (PowerUp! IRA_1r). ``students`` in all."""

    students: float
    treated: float = 0.5
    r2_student: float = 0.0
    covariates: int = 0

    name: ClassVar[str] = "individual RCT"
    sizes: ClassVar[tuple[str, ...]] = ("students",)
    unit: ClassVar[dict[str, str]] = {"students": "students"}

    def _check(self) -> None:
        _size("students", self.students, 2)
        _share("treated", self.treated, lower_open=True)
        _share("r2_student", self.r2_student)
        _count("covariates", self.covariates)

    def _variance(self) -> float:
        return (1 - self.r2_student) / (_pq(self.treated) * self.students)

    @property
    def df(self) -> float:
        return self.students - self.covariates - 2


@dataclass(frozen=True, kw_only=True)
class BlockedRCT(Design):
    """Students randomized within schools (blocks): PowerUp! BIRA2_1c (``blocks="fixed"``,
    one effect), BIRA2_1f (``"fixed"`` with ``constant_effect=False``: block-specific effects,
    averaged) and BIRA2_1r (``"random"``: the effect varies across schools with variance
    ``omega·icc``; ``r2_effect`` of it explained by school covariates). ``covariates`` are
    student-level for fixed blocks, school-level for random blocks."""

    schools: float
    students: float
    icc: float = 0.0
    r2_student: float = 0.0
    blocks: str = "fixed"
    constant_effect: bool = True
    omega: float = 0.0
    r2_effect: float = 0.0
    treated: float = 0.5
    covariates: int = 0

    name: ClassVar[str] = "blocked individual RCT"
    sizes: ClassVar[tuple[str, ...]] = ("schools", "students")
    unit: ClassVar[dict[str, str]] = {"schools": "schools", "students": "students per school"}

    def _check(self) -> None:
        if self.blocks not in ("fixed", "random"):
            raise DesignError(f"blocks must be 'fixed' or 'random'; got {self.blocks!r}")
        _size("schools", self.schools, 1, whole=True)
        _size("students", self.students, 2)
        _share("icc", self.icc)
        _share("r2_student", self.r2_student)
        _share("r2_effect", self.r2_effect)
        _share("treated", self.treated, lower_open=True)
        _size("omega", self.omega, 0)
        _count("covariates", self.covariates)
        if self.blocks == "fixed" and (self.omega or self.r2_effect):
            raise DesignError("omega and r2_effect describe random block effects; use blocks='random'")
        if self.blocks == "random" and not self.constant_effect:  # (before 2026-12-04 ignored without a word)
            raise DesignError("constant_effect=False (block-specific effects) is a fixed-blocks model; random blocks let "
                              "the effect vary through omega")

    def _variance(self) -> float:
        within = (1 - self.icc) * (1 - self.r2_student) / (_pq(self.treated) * self.schools * self.students)
        if self.blocks == "random":
            return self.icc * self.omega * (1 - self.r2_effect) / self.schools + within
        return within

    @property
    def df(self) -> float:
        J, n, g = self.schools, self.students, self.covariates
        if self.blocks == "random":
            return J - g - 1
        return J * (n - 1) - g - 1 if self.constant_effect else J * (n - 2) - g


@dataclass(frozen=True, kw_only=True)
class ClusterRCT(Design):
    """Schools randomized (PowerUp! CRA2_2r): ``schools`` J, ``students`` n per school."""

    schools: float
    students: float
    icc: float
    r2_school: float = 0.0
    r2_student: float = 0.0
    treated: float = 0.5
    covariates: int = 0

    name: ClassVar[str] = "two-level cluster RCT"
    sizes: ClassVar[tuple[str, ...]] = ("schools", "students")
    unit: ClassVar[dict[str, str]] = {"schools": "schools", "students": "students per school"}

    def _check(self) -> None:
        _size("schools", self.schools, 2, whole=True)
        _size("students", self.students, 1)
        _share("icc", self.icc)
        _share("r2_school", self.r2_school)
        _share("r2_student", self.r2_student)
        _share("treated", self.treated, lower_open=True)
        _count("covariates", self.covariates)

    def _variance(self) -> float:
        J, n, pq = self.schools, self.students, _pq(self.treated)
        return self.icc * (1 - self.r2_school) / (pq * J) + (1 - self.icc) * (1 - self.r2_student) / (pq * J * n)

    @property
    def df(self) -> float:
        return self.schools - self.covariates - 2

    def _arms(self) -> tuple[int, int]:
        """``(J_T, J_C)``: the schools of each arm (at least 2 each), J·P rounded halves up as
        :func:`pleval.simulate.simulate_planned` assigns them (Python's ``round`` took 4 of 18
        schools at P = 0.25 where the simulation that checks the note takes 5)."""
        jt = min(max(math.floor(self.schools * self.treated + 0.5), 2), int(self.schools) - 2)
        return jt, int(self.schools) - jt

    def analysis_df(self) -> float:
        """The df of pleval's own analysis of the trial (CR2 with Satterthwaite df), for a
        difference of ``J_T`` against ``J_C`` school means of equal variance: Welch's
        ``(1/J_T + 1/J_C)² / (1/(J_T²(J_T − 1)) + 1/(J_C²(J_C − 1)))`` (Bell & McCaffrey 2002;
        :func:`cr2_cluster_df` with one block), ``J − 2`` when the arms are equal and fewer when
        they are not."""
        jt, jc = self._arms()
        return cr2_cluster_df(1, jt, jc)

    def _notes(self, power: float, mdes: float) -> tuple[str, ...]:
        # only fewer df than the formula's: more come from its covariates (g), which Welch's df leave out
        if abs(self.treated - 0.5) < 1e-9 or self.schools < 4 or self.analysis_df() >= self.df:
            return ()
        jt, jc = self._arms()
        # at the schools actually assigned (J_T/J, not the nominal P: 5 of 18 is 0.28, not 0.25)
        return self._analysis_note(power, mdes, self.analysis_df(), self.replace(treated=jt / int(self.schools)).sse,
                                   "CR2, Satterthwaite df", f"Welch, {jt} against {jc} school means",
                                   lead=f"unequal allocation ({jt} of {int(self.schools)} schools assigned): ",
                                   tail="; --simulate checks it")


@dataclass(frozen=True, kw_only=True)
class BlockedClusterRCT(Design):
    """Schools randomized within districts (PowerUp! BCRA3_2r with ``blocks="random"``,
    BCRA3_2f with ``"fixed"``): ``districts`` K, ``schools`` J per district, ``students`` n per
    school; ``icc_district`` ρ₃, ``icc`` ρ₂ (school share of the total variance); ``omega`` the
    variance of the effect across districts relative to ρ₃ (random), ``r2_effect`` of it
    explained. ``covariates``: district-level (random) or school-level (fixed)."""

    districts: float
    schools: float
    students: float
    icc: float
    icc_district: float = 0.0
    r2_school: float = 0.0
    r2_student: float = 0.0
    blocks: str = "random"
    omega: float = 0.0
    r2_effect: float = 0.0
    treated: float = 0.5
    covariates: int = 0

    name: ClassVar[str] = "three-level blocked cluster RCT"
    sizes: ClassVar[tuple[str, ...]] = ("districts", "schools", "students")
    unit: ClassVar[dict[str, str]] = {"districts": "districts", "schools": "schools per district",
                                      "students": "students per school"}

    def _check(self) -> None:
        if self.blocks not in ("fixed", "random"):
            raise DesignError(f"blocks must be 'fixed' or 'random'; got {self.blocks!r}")
        _size("districts", self.districts, 1, whole=True)
        _size("schools", self.schools, 2)
        _size("students", self.students, 1)
        _share("icc", self.icc)
        _share("icc_district", self.icc_district)
        if self.icc + self.icc_district >= 1:
            raise DesignError(f"icc + icc_district must be below 1; got {self.icc + self.icc_district:g}")
        for k in ("r2_school", "r2_student", "r2_effect"):
            _share(k, getattr(self, k))
        _share("treated", self.treated, lower_open=True)
        _size("omega", self.omega, 0)
        _count("covariates", self.covariates)
        if self.blocks == "fixed" and (self.omega or self.r2_effect):
            raise DesignError("omega and r2_effect describe random district effects; use blocks='random'")

    def _variance(self) -> float:
        K, J, n, pq = self.districts, self.schools, self.students, _pq(self.treated)
        v = self.icc * (1 - self.r2_school) / (pq * J * K)
        v += (1 - self.icc_district - self.icc) * (1 - self.r2_student) / (pq * J * K * n)
        if self.blocks == "random":
            v += self.icc_district * self.omega * (1 - self.r2_effect) / K
        return v

    @property
    def df(self) -> float:
        if self.blocks == "random":
            return self.districts - self.covariates - 1
        return self.districts * (self.schools - 2) - self.covariates

    def _arms(self) -> tuple[int, int] | None:
        """``(J_T, J_C)``: the schools of each arm in every district, J (rounded) times P rounded
        halves up, at least one each (two when there is one district, as :class:`ClusterRCT`);
        None when J has no room for that."""
        J = math.floor(self.schools + 0.5)
        least = 2 if self.districts == 1 else 1
        jt = min(max(math.floor(J * self.treated + 0.5), least), J - least)
        return (jt, J - jt) if jt >= least else None

    def analysis_df(self) -> float:
        """The df of pleval's own analysis of the trial (``analyze_rct(design="cluster")`` with the
        district as block: block fixed effects, one common effect, CR2 by school with Satterthwaite
        df): :func:`cr2_cluster_df` of the K districts' J_T against J_C schools, K(J − 1) − 1 with
        equal arms (19 for 4 districts of 6 schools, where PowerUp!'s fixed-district df, for an
        effect of each district's own, are K(J − 2) − g = 16). The same whether the formula takes
        the districts as fixed or random: pleval's analysis takes them as fixed."""
        arms = self._arms()
        if arms is None:
            raise DesignError(f"{self.schools:g} schools per district leave no school for an arm in one district")
        return cr2_cluster_df(int(self.districts), *arms)

    def _notes(self, power: float, mdes: float) -> tuple[str, ...]:
        if self._arms() is None:
            return ()
        jt, jc = self._arms()
        K, J = int(self.districts), jt + jc
        # pleval's analysis: the districts fixed, at the schools assigned (J_T/J, not the nominal P)
        sse = self.replace(blocks="fixed", omega=0.0, r2_effect=0.0, treated=jt / J).sse
        basis = f"{jt} against {jc} schools in each of {K} district{'s' if K > 1 else ''}, one common effect"
        if self.blocks == "fixed":
            return self._analysis_note(power, mdes, self.analysis_df(), sse,
                                       "district fixed effects, CR2 by school, Satterthwaite df", basis,
                                       tail="; the formula's df are PowerUp!'s, for an effect of each district's own")
        default = "pleval's default analysis"
        random_fit = ("a random-effects analysis of the districts (K − g − 1 df): pleval's --method random_blocks "
                      "(analyze_rct(method='random_blocks'))")
        if self.omega > 0:  # another estimand: said whatever the difference
            return self._analysis_note(
                power, mdes, self.analysis_df(), sse,
                "districts fixed: the effect averaged over these districts, its SE without the effect's variation "
                "across districts (omega); CR2 by school, Satterthwaite df", basis,
                lead="random districts: ", estimand=" for that effect", always=True, which=default,
                tail=f"; the formula's figure, for the effect across districts like these, is that of {random_fit}")
        return self._analysis_note(power, mdes, self.analysis_df(), sse,
                                   "districts fixed, CR2 by school, Satterthwaite df", basis,
                                   lead="random districts: ", tail=f"; the formula's df are those of {random_fit}",
                                   which=default)


@dataclass(frozen=True, kw_only=True)
class MatchedComparison(Design):
    """PL schools against matched comparison students (quasi-experimental).

    ``schools`` J_T PL schools of ``students`` n_T analysed students each; the matched
    comparison students come from ``comparison_schools`` J_C schools (default J_T),
    ``comparison_students`` n_C per school (default n_T), with Kish design effect
    ``deff_weights`` of their matching weights (:func:`kish_deff`; 1 = equal weights).
    ``icc=0`` treats students as independent (df from students)."""

    schools: float
    students: float
    icc: float = 0.0
    r2_school: float = 0.0
    r2_student: float = 0.0
    comparison_schools: float | None = None
    comparison_students: float | None = None
    deff_weights: float = 1.0
    covariates: int = 0

    name: ClassVar[str] = "matched comparison"
    sizes: ClassVar[tuple[str, ...]] = ("schools", "students")
    unit: ClassVar[dict[str, str]] = {"schools": "PL schools", "students": "students per PL school"}

    def _check(self) -> None:
        _size("schools", self.schools, 1, whole=True)
        _size("students", self.students, 1)
        _size("comparison_schools", self.jc, 1, whole=True)
        _size("comparison_students", self.nc, 1)
        _size("deff_weights", self.deff_weights, 1)
        _share("icc", self.icc)
        _share("r2_school", self.r2_school)
        _share("r2_student", self.r2_student)
        _count("covariates", self.covariates)
        if self.icc > 0 and min(self.schools, self.jc) < 2:
            raise DesignError(
                f"a matched design with icc > 0 needs at least 2 PL schools and 2 comparison schools; got "
                f"{self.schools:g} and {self.jc:g}: its test's df come from the spread of each arm's school means "
                "(pleval analyses one PL school by placebo calibration, which this formula does not describe)")

    @classmethod
    def from_match(cls, match, *, icc: float, r2_school: float = 0.0, r2_student: float = 0.0, subject=None,
                   **settings) -> "MatchedComparison":
        """The design of a matched sample (:class:`pleval.matching.MatchResult`) for one subject
        (the first by default): PL schools and students per PL school of the matched treated
        rows, comparison schools and students per comparison school of the comparison rows used,
        and the Kish design effect of the comparison students' total weights (a student reused in
        several matched sets carries the sum of its set weights). ``icc`` and the R² are the
        planner's (e.g. from :func:`pleval.power.from_data.estimate_components`)."""
        c = match.columns
        w = np.bincount(match.rows, weights=match.weight, minlength=len(match.data))
        d = match.data.assign(_w=w)
        d = d[d["_w"] > 0]
        if c.subject:
            subjects = sorted(pd.unique(d[c.subject]), key=str)
            pick = subjects[0] if subject is None else subject
            if str(pick) not in map(str, subjects):
                raise DesignError(f"no matched rows for subject {subject!r}")
            d = d[d[c.subject].astype(str) == str(pick)]
        if not c.school:
            raise DesignError("the matched design's power needs the school column (columns.school)")
        t = d[c.treatment].to_numpy() == 1
        jt, jc = d.loc[t, c.school].nunique(), d.loc[~t, c.school].nunique()
        return cls(schools=jt, students=t.sum() / jt, comparison_schools=jc, comparison_students=(~t).sum() / jc,
                   deff_weights=kish_deff(d.loc[~t, "_w"]), icc=icc, r2_school=r2_school, r2_student=r2_student,
                   **settings)

    @property
    def jc(self) -> float:
        return self.schools if self.comparison_schools is None else self.comparison_schools

    @property
    def nc(self) -> float:
        return self.students if self.comparison_students is None else self.comparison_students

    def _arm_variances(self) -> tuple[float, float]:
        """The variances of the PL and the comparison mean (their sum is SSE²): a school mean's
        variance, ``ρ₂(1−R²₂) + (1−ρ₂)(1−R²₁)/n`` (``D_w/n_C`` for the comparison schools), over
        the arm's schools."""
        school, student = self.icc * (1 - self.r2_school), (1 - self.icc) * (1 - self.r2_student)
        return ((school + student / self.students) / self.schools,
                (school + student * self.deff_weights / self.nc) / self.jc)

    def _variance(self) -> float:
        return sum(self._arm_variances())

    @property
    def df(self) -> float:
        """Welch–Satterthwaite df of the difference of the arms' school means, less g (students'
        J_T n_T + J_C n_C − g − 2 with ``icc=0``). Before 2026-12-05 J_T + J_C − g − 2, which
        pleval's analysis (CR2 by school, Bell–McCaffrey df) does not have when the arms differ."""
        if self.icc > 0:
            a, b = self._arm_variances()
            return welch_df(a, self.schools, b, self.jc) - self.covariates
        return self.schools * self.students + self.jc * self.nc - self.covariates - 2


DESIGNS = {
    "individual": IndividualRCT,
    "blocked": BlockedRCT,
    "cluster": ClusterRCT,
    "blocked-cluster": BlockedClusterRCT,
    "matched": MatchedComparison,
}
"""Design classes by the name used in ``pleval power DESIGN``."""

__all__ = ["Design", "IndividualRCT", "BlockedRCT", "ClusterRCT", "BlockedClusterRCT", "MatchedComparison",
           "kish_deff", "welch_df", "cr2_cluster_df", "DESIGNS"]
