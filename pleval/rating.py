"""The study's WWC rating and ESSA evidence tier, each step and reason stated.

A pure decision module: :func:`rate` takes the facts of one outcome's analysis
(:class:`StudyFacts`, which :func:`pleval.estimate` fills in from what it computed) and returns
an immutable :class:`Rating` holding the What Works Clearinghouse (WWC) rating, the ESSA tier
and every step that led to them. Nothing here estimates anything.

WWC rating (group designs; evidence of effects on students)
------------------------------------------------------------
Sources: WWC *Procedures and Standards Handbook, Version 5.0* (2022), chapter on group design
standards (RCTs, QEDs, cluster-level assignment, confounding factors); the same rules in the
*Standards Handbook, Version 4.1* (2020), sections II.B–II.E and the cluster steps of
section III. Each step either leaves the highest reachable rating unchanged or caps it; the
rating is the lowest cap.

1. **Design.** A randomized controlled trial (RCT) whose randomization is not compromised may
   reach *Meets WWC Standards Without Reservations*. A quasi-experimental design (QED) — a
   matched comparison — or a compromised RCT (reviewed as a QED) is capped at *With
   Reservations* and must show baseline equivalence.
2. **Confounding factor.** If one condition's students all sit in a single school that has no
   students of the other condition (the "n = 1 unit" confound), or the user declares another
   confound, the program cannot be separated from that school: *Does Not Meet*.
3. **Attrition** (RCTs; :mod:`pleval.standards`, cautious boundary by default). Individual
   assignment: low student attrition keeps the RCT path open; high attrition caps the rating
   at *With Reservations* and requires baseline equivalence. Cluster assignment: school-level
   attrition is judged first (high: capped, equivalence required); with low school attrition,
   the students' risk of bias is low only if student attrition is low **and** the analytic
   sample has no students who joined the schools after random assignment ("joiners"). pleval
   cannot see when a student arrived: unless ``joiners=False`` is declared, joiners are
   treated as possible, which caps the rating at *With Reservations* and requires baseline
   equivalence (the conservative reading).
4. **Baseline equivalence** (:func:`pleval.standards.baseline_equivalence`) on the analytic
   sample, for every pretest, when step 1 or 3 requires it: |g| ≤ 0.05 satisfied; 0.05–0.25
   satisfied only with statistical adjustment for that pretest in the impact model;
   otherwise, or without a pretest, *Does Not Meet*. When not required it is shown for
   information.

Differences between v4.1 and v5.0 that matter here: none in the attrition boundaries, the
equivalence bands or the caps above. v4.1 (and 4.0) could still rate a cluster study whose
evidence on students failed as providing "evidence of effects on clusters"; pleval rates only
evidence of effects on students and does not assess that path under either version.

ESSA evidence tier
------------------
Sources: Every Student Succeeds Act §8101(21)(A); U.S. Department of Education,
*Non-Regulatory Guidance: Using Evidence to Strengthen Education Investments* (2016,
revised 2023); WWC's mapping of study ratings to tiers. For one outcome:

* conditions (a) a statistically significant (p < α, two-sided) favourable effect and (b) no
  overriding statistically significant unfavourable evidence on the same outcome (pleval sees
  only its own analyses of it; other studies must be checked by the user, or declared with
  ``overriding_negative=True``);
* **Strong** (Tier 1): (a), (b), *Meets Without Reservations*, and a large multi-site sample
  (≥ 350 students across ≥ 2 schools);
* **Moderate** (Tier 2): (a), (b), *Meets With* (or Without) *Reservations* and the sample;
* **Promising** (Tier 3): (a), (b) and a study with statistical controls for selection bias:
  one that meets WWC standards (of any size), or one that does not meet them but adjusts for
  the pretest and has no confound;
* **Demonstrates a Rationale** (Tier 4) otherwise — which also needs a research-based logic
  model and ongoing evaluation, neither of which pleval can check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from . import standards
from ._results import ResultMixin
from .errors import DataError

MWOR = "Meets WWC Standards Without Reservations"
MWR = "Meets WWC Standards With Reservations"
DNM = "Does Not Meet WWC Standards"
RATINGS = (MWOR, MWR, DNM)  # best first
STRONG, MODERATE, PROMISING, RATIONALE = "Strong", "Moderate", "Promising", "Demonstrates a Rationale"
TIERS = (STRONG, MODERATE, PROMISING, RATIONALE)
ESSA_MIN_STUDENTS = 350
ESSA_MIN_SITES = 2
_OK_EQUIVALENCE = (standards.SATISFIED, standards.SATISFIED_ADJUSTED)


@dataclass(frozen=True)
class StudyFacts:
    """What the rating needs to know about one outcome's analysis.

    Attributes
    ----------
    outcome : str
        The outcome (or subject) rated.
    design : ``"rct"`` or ``"qed"`` (a matched comparison).
    assignment : ``"students"`` or ``"schools"`` (the unit of assignment).
    n_students : int
        Students in the analytic sample.
    n_schools_treated, n_schools_control : int
        Schools with treated / comparison students in the analytic sample.
    schools_shared : bool
        Whether treated and comparison students share schools (individual randomization).
    attrition_students, attrition_schools : tuple ``(overall, differential)`` or None
        Attrition proportions (RCTs); ``attrition_schools`` for cluster assignment.
    baseline : tuple of ``(variable, g, adjusted_in_model)``
        Baseline differences of the pretest(s) in the analytic sample.
    effect_size, pvalue : float
        The primary estimate of the outcome (effect size in SD units) and its p-value.
    unfavorable_elsewhere : tuple of str
        Other analyses of this outcome in the run with a significant unfavourable effect.
    higher_is_better : bool
        Whether a positive effect is favourable.
    alpha : float
        Significance level for ESSA's "statistically significant".
    boundary : ``"cautious"`` or ``"optimistic"`` attrition boundary.
    compromised : bool
        Declared: the randomization was compromised (the RCT is reviewed as a QED).
    joiners : bool or None
        Declared: the analytic sample includes students who joined schools after random
        assignment (None: not known; treated as possible).
    confounds : tuple of str
        Declared confounding factors (e.g. "PL schools also got new principals").
    overriding_negative : bool or None
        Declared: other studies show overriding unfavourable evidence on this outcome
        (None: not checked by the user).
    pvalue_label : str
        What ``pvalue`` is, as the ESSA condition prints it (e.g. a p adjusted within the
        outcome's domain, :mod:`pleval.outcomes`).
    """

    outcome: str
    design: str
    assignment: str
    n_students: int
    n_schools_treated: int
    n_schools_control: int
    schools_shared: bool = False
    attrition_students: tuple[float, float] | None = None
    attrition_schools: tuple[float, float] | None = None
    baseline: tuple[tuple[str, float, bool], ...] = ()
    effect_size: float = math.nan
    pvalue: float = math.nan
    unfavorable_elsewhere: tuple[str, ...] = ()
    higher_is_better: bool = True
    alpha: float = 0.05
    boundary: str = "cautious"
    compromised: bool = False
    joiners: bool | None = None
    confounds: tuple[str, ...] = ()
    overriding_negative: bool | None = None
    pvalue_label: str = "p"

    def __post_init__(self):
        if self.design not in ("rct", "qed"):
            raise DataError(f"rating: design must be 'rct' or 'qed'; got {self.design!r}")
        if self.assignment not in ("students", "schools"):
            raise DataError(f"rating: assignment must be 'students' or 'schools'; got {self.assignment!r}")
        if self.boundary not in standards.BOUNDARIES:
            raise DataError(f"rating: boundary must be one of {standards.BOUNDARIES}; got {self.boundary!r}")
        if self.design == "rct" and not self.compromised:
            need = ["attrition_students"] + (["attrition_schools"] if self.assignment == "schools" else [])
            missing = [n for n in need if getattr(self, n) is None]
            if missing:
                raise DataError(f"rating: an RCT needs {' and '.join(missing)} (overall, differential)")


@dataclass(frozen=True)
class Step:
    """One step of the WWC decision: what was checked, what was found, and the cap it sets
    (``None``: no cap)."""

    step: str
    finding: str
    cap: str | None


@dataclass(frozen=True)
class Condition:
    """One ESSA condition: ``met`` is True / False, or None when pleval cannot check it."""

    condition: str
    met: bool | None
    detail: str


@dataclass(frozen=True, repr=False)
class Rating(ResultMixin):
    """The WWC rating and ESSA tier of one outcome, with the steps and conditions behind them."""

    outcome: str
    wwc_rating: str
    essa_tier: str
    steps: tuple[Step, ...]
    conditions: tuple[Condition, ...]
    facts: StudyFacts = field(repr=False)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why this rating: the steps that cap it at *Does Not Meet*; otherwise every step
        but the confound check that found none."""
        if self.wwc_rating == DNM:
            return tuple(s.finding for s in self.steps if s.cap == DNM)
        return tuple(s.finding for s in self.steps if s.step != "confound")

    @property
    def essa_reason(self) -> str:
        """The conditions that decided the tier, in one line."""
        unmet = [c.condition for c in self.conditions if c.met is False]
        # the last condition (logic model) is Tier 4's own: unchecked, it qualifies that tier only
        checked = self.conditions if self.essa_tier == RATIONALE else self.conditions[:-1]
        unknown = [c.condition for c in checked if c.met is None]
        tail = f" (not checked by pleval: {'; '.join(unknown)})" if unknown else ""
        if self.essa_tier == STRONG:
            return "all conditions met" + tail
        return ("not met: " + "; ".join(unmet) if unmet else "conditions met for this tier") + tail

    def as_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "wwc_rating": self.wwc_rating,
            "wwc_reasons": " | ".join(self.reasons),
            "wwc_steps": " | ".join(f"{s.step}: {s.finding}" for s in self.steps),
            "essa_tier": self.essa_tier,
            "essa_conditions": " | ".join(
                f"{c.condition}: {'met' if c.met else 'not met' if c.met is False else 'not checked'} ({c.detail})"
                for c in self.conditions
            ),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per step and condition: outcome, part (WWC/ESSA), step, finding, result."""
        rows = [{"outcome": self.outcome, "part": "WWC", "step": s.step, "finding": s.finding,
                 "result": s.cap or "no cap"} for s in self.steps]
        rows.append({"outcome": self.outcome, "part": "WWC", "step": "rating", "finding": "; ".join(self.reasons),
                     "result": self.wwc_rating})
        rows += [{"outcome": self.outcome, "part": "ESSA", "step": c.condition, "finding": c.detail,
                  "result": "met" if c.met else "not met" if c.met is False else "not checked"} for c in self.conditions]
        rows.append({"outcome": self.outcome, "part": "ESSA", "step": "tier", "finding": self.essa_reason,
                     "result": self.essa_tier})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [f"WWC rating ({self.outcome}): {self.wwc_rating}"]
        lines += [f"  {s.step}: {s.finding}" + (f" -> {_short(s.cap)}" if s.cap else "") for s in self.steps]
        lines.append(f"ESSA tier ({self.outcome}): {self.essa_tier}")
        lines += [f"  [{'x' if c.met else ' ' if c.met is False else '?'}] {c.condition}: {c.detail}" for c in self.conditions]
        return "\n".join(lines)


def _short(rating: str) -> str:
    return {MWOR: "without reservations", MWR: "at most with reservations", DNM: "does not meet"}[rating]


def _attrition_step(level: str, a: tuple[float, float], boundary: str) -> tuple[str, bool]:
    overall, diff = a
    verdict = standards.attrition_verdict(overall, diff, boundary)
    bound = standards.max_differential(overall, boundary)
    limit = "no differential is low at this overall rate" if not math.isfinite(bound) else f"low up to {100 * bound:.1f} points"
    return (f"{level} attrition {verdict} (overall {standards.overall_text(overall)}%, differential "
            f"{standards.differential_text(overall, diff)} points; "
            f"{boundary} boundary: {limit})"), verdict == standards.LOW


def _equivalence(f: StudyFacts) -> tuple[bool, str]:
    """Whether baseline equivalence is satisfied on every pretest, and the finding."""
    if not f.baseline:
        return False, "no pretest: baseline equivalence cannot be shown"
    parts, ok = [], True
    for var, g, adjusted in f.baseline:
        v = standards.baseline_equivalence(g, adjusted=bool(adjusted))
        ok &= v in _OK_EQUIVALENCE
        parts.append(f"{var}: g = {standards.g_text(g)}, {v}" if math.isfinite(g) else f"{var}: {v}")
    return ok, "; ".join(parts)


def wwc_steps(f: StudyFacts) -> tuple[str, tuple[Step, ...]]:
    """The WWC rating of ``f`` and the steps that produced it (see the module docstring)."""
    steps: list[Step] = []
    rct = f.design == "rct" and not f.compromised
    need_equivalence = not rct
    if f.design == "qed":
        steps.append(Step("design", "QED (matched comparison): cannot exceed With Reservations; baseline equivalence required", MWR))
    elif f.compromised:
        steps.append(Step("design", "RCT with compromised randomization, reviewed as a QED: cannot exceed With Reservations; "
                          "baseline equivalence required", MWR))
    else:
        steps.append(Step("design", f"RCT ({f.assignment} randomized): can meet standards without reservations", None))

    one = [arm for arm, n in (("PL", f.n_schools_treated), ("comparison", f.n_schools_control)) if n == 1]
    if one and not f.schools_shared:
        steps.append(Step("confound", f"every {one[0]} student is in one school: the program is confounded with that "
                          "school (n = 1 unit confound)", DNM))
    else:
        steps.append(Step("confound", f"no single-school condition ({f.n_schools_treated} PL and {f.n_schools_control} "
                          "comparison schools)" if not f.schools_shared else
                          "treated and comparison students share schools: no single-school confound", None))
    for c in f.confounds:
        steps.append(Step("confound", f"declared confounding factor: {c}", DNM))

    if rct and f.assignment == "schools":
        text, low = _attrition_step("school", f.attrition_schools, f.boundary)
        steps.append(Step("attrition (schools)", text + ("" if low else ": at most With Reservations; baseline equivalence required"),
                          None if low else MWR))
        need_equivalence |= not low
        if low:
            text, low_s = _attrition_step("student", f.attrition_students, f.boundary)
            if f.joiners is None:
                join, ok_j = "pleval cannot tell whether students joined the schools after random assignment (declare joiners=False if none did)", False
            elif f.joiners:
                join, ok_j = "the analytic sample includes students who joined the schools after random assignment", False
            else:
                join, ok_j = "declared: no student joined the schools after random assignment", True
            risk_low = low_s and ok_j
            steps.append(Step("risk of bias (students)",
                              f"{text}; {join}: " + ("low risk" if risk_low else "at most With Reservations; baseline equivalence required"),
                              None if risk_low else MWR))
            need_equivalence |= not risk_low
    elif rct:
        text, low = _attrition_step("student", f.attrition_students, f.boundary)
        steps.append(Step("attrition (students)", text + ("" if low else ": at most With Reservations; baseline equivalence required"),
                          None if low else MWR))
        need_equivalence |= not low

    ok, text = _equivalence(f)
    if need_equivalence:
        steps.append(Step("baseline equivalence", ("satisfied: " if ok else "not satisfied: ") + text, None if ok else DNM))
    else:
        steps.append(Step("baseline equivalence", "not required (low attrition, low risk of bias); for information: " + text, None))
    caps = [s.cap for s in steps if s.cap]
    rating = max(caps, key=RATINGS.index) if caps else MWOR
    return rating, tuple(steps)


def essa_conditions(f: StudyFacts, rating: str) -> tuple[str, tuple[Condition, ...]]:
    """The ESSA tier of ``f`` given its WWC ``rating``, and the conditions checked."""
    signed = f.effect_size if f.higher_is_better else -f.effect_size
    sig = bool(math.isfinite(f.pvalue) and f.pvalue < f.alpha and signed > 0)
    direction = "favourable" if signed > 0 else "unfavourable" if signed < 0 else "zero"
    c_sig = Condition("statistically significant favourable effect", sig,
                      f"effect size {f.effect_size:+.3f} ({direction}), {f.pvalue_label} = {f.pvalue:.3g} vs alpha {f.alpha:g}")
    # the primary estimate itself significantly unfavourable is such evidence too (before 2026-12-04: "none")
    harmful = math.isfinite(f.pvalue) and f.pvalue < f.alpha and signed < 0
    unfavourable = ((f"the primary estimate ({direction}, {f.pvalue_label} = {f.pvalue:.3g})",) if harmful else ()) \
        + tuple(f.unfavorable_elsewhere)
    if f.overriding_negative:
        c_neg = Condition("no overriding negative evidence", False, "declared: other studies show overriding unfavourable evidence")
    elif unfavourable:
        c_neg = Condition("no overriding negative evidence", False,
                          "significant unfavourable effect in this run: " + ", ".join(unfavourable))
    else:
        c_neg = Condition("no overriding negative evidence", True if f.overriding_negative is False else None,
                          "none among this run's analyses of the outcome"
                          + ("; declared: none in other studies" if f.overriding_negative is False
                             else "; other studies of the program are not known to pleval"))
    n_sites = f.n_schools_treated + f.n_schools_control
    if f.schools_shared:
        n_sites = max(f.n_schools_treated, f.n_schools_control)
    big = f.n_students >= ESSA_MIN_STUDENTS and n_sites >= ESSA_MIN_SITES
    c_n = Condition(f"at least {ESSA_MIN_STUDENTS} students across at least {ESSA_MIN_SITES} schools", big,
                    f"{f.n_students:,} students in {n_sites:,} school(s)")
    meets = rating in (MWOR, MWR)
    confounded = any(s for s in f.confounds) or (
        not f.schools_shared and min(f.n_schools_treated, f.n_schools_control) == 1)
    controls = bool(f.baseline) and all(adj for _, _, adj in f.baseline) and not confounded
    c_rating = Condition("WWC rating", meets, rating)
    c_ctrl = Condition("statistical controls for selection bias (Promising)", meets or controls,
                       "the study meets WWC standards" if meets else
                       ("does not meet WWC standards, but the impact model adjusts for the pretest" if controls else
                        "does not meet WWC standards and " + ("is confounded" if confounded else "has no pretest adjustment")))
    c_rat = Condition("logic model and ongoing evaluation (Demonstrates a Rationale)", None,
                      "a research-based logic model and an ongoing evaluation: not checkable from data")
    conds = (c_sig, c_neg, c_n, c_rating, c_ctrl, c_rat)
    positive = sig and c_neg.met is not False
    if positive and rating == MWOR and big:
        tier = STRONG
    elif positive and meets and big:
        tier = MODERATE
    elif positive and (meets or controls):
        tier = PROMISING
    else:
        tier = RATIONALE
    return tier, conds


def rate(facts: StudyFacts) -> Rating:
    """The WWC rating and ESSA tier of one outcome (decision tables in the module docstring)."""
    rating, steps = wwc_steps(facts)
    tier, conds = essa_conditions(facts, rating)
    return Rating(facts.outcome, rating, tier, steps, conds, facts)


__all__ = ["StudyFacts", "Rating", "Step", "Condition", "rate", "wwc_steps", "essa_conditions", "RATINGS", "TIERS",
           "MWOR", "MWR", "DNM", "STRONG", "MODERATE", "PROMISING", "RATIONALE"]
