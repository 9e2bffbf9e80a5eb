"""The WWC rating and ESSA tier decision tables, branch by branch (pleval.rating)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pleval.errors import DataError
from pleval.rating import DNM, MODERATE, MWOR, MWR, PROMISING, RATIONALE, STRONG, StudyFacts, rate

LOW = (0.10, 0.02)  # 10% overall, 2 points differential: low under both boundaries (bound 6.3 cautious)
HIGH = (0.30, 0.06)  # 30% overall, 6 points: high under cautious (4.1), low under optimistic (8.2)
OK_G = (("pretest", 0.03, True),)


def facts(**kw) -> StudyFacts:
    base = dict(outcome="math", design="rct", assignment="students", n_students=1000, n_schools_treated=10,
                n_schools_control=10, schools_shared=True, attrition_students=LOW, baseline=OK_G, effect_size=0.12,
                pvalue=0.01)
    base.update(kw)
    return StudyFacts(**base)


def cluster(**kw) -> StudyFacts:
    return facts(**{"assignment": "schools", "schools_shared": False, "attrition_schools": LOW, "joiners": False, **kw})


def steps(r) -> dict[str, str | None]:
    return {s.step: s.cap for s in r.steps}


# ------------------------------------------------------------------------------------- WWC


def test_individual_rct_low_attrition_meets_without_reservations():
    r = rate(facts(baseline=(("pretest", 0.40, True),)))  # equivalence not required: shown only
    assert r.wwc_rating == MWOR
    assert steps(r)["baseline equivalence"] is None
    assert "not required" in r.steps[-1].finding and "g = 0.400" in r.steps[-1].finding
    assert any("student attrition low" in x for x in r.reasons)


@pytest.mark.parametrize(
    "baseline, expected, phrase",
    [
        ((("pretest", 0.03, False),), MWR, "satisfied"),
        ((("pretest", -0.10, True),), MWR, "satisfied with statistical adjustment"),
        ((("pretest", 0.10, False),), DNM, "not satisfied"),
        ((("pretest", 0.30, True),), DNM, "not satisfied"),
        ((("pretest", 0.03, True), ("pretest_2", 0.30, True)), DNM, "pretest_2: g = 0.300, not satisfied"),
        ((), DNM, "no pretest"),
        ((("pretest", math.nan, True),), DNM, "not assessed"),
    ],
)
def test_individual_rct_high_attrition_needs_baseline_equivalence(baseline, expected, phrase):
    r = rate(facts(attrition_students=HIGH, baseline=baseline))
    assert steps(r)["attrition (students)"] == MWR
    assert r.wwc_rating == expected
    assert phrase in r.steps[-1].finding


def test_the_steps_print_numbers_on_their_side_of_the_boundary():
    """Differential 6.32 points at 10% overall is high (cautious bound 6.3), and g = 0.0504 needs
    adjustment; the steps printed "differential 6.3 points; … low up to 6.3" and "g = 0.050, not
    satisfied" before 2026-12-04."""
    import re

    r = rate(facts(attrition_students=(0.10, abs(658 - 342) / 5000), baseline=(("pretest", 0.0504, False),)))
    att = next(s.finding for s in r.steps if s.step.startswith("attrition"))
    shown, bound = map(float, re.search(r"differential ([0-9.]+) points; .* low up to ([0-9.]+) points", att).groups())
    assert "attrition high" in att and shown > bound
    eq = next(s.finding for s in r.steps if s.step == "baseline equivalence")
    assert float(re.search(r"g = ([0-9.]+), not satisfied", eq).group(1)) > 0.05


def test_the_attrition_step_prints_the_overall_rate_between_its_rows():
    """10.004% overall is held to the 11% row's cautious 6.2 points (the smaller of 6.3 and 6.2):
    printed 10.004%, not 10.0% (which read as the 10% row's 6.3, before 2026-12-05); exactly 10%
    prints 10.0% beside the 10% row's 6.3."""
    import re

    for overall, diff, verdict, limit in ((10004 / 100000, 0.063, "high", 6.2), (0.10, 0.063, "low", 6.3)):
        att = next(s.finding for s in rate(facts(attrition_students=(overall, diff))).steps
                   if s.step.startswith("attrition"))
        shown, bound = map(float, re.search(r"overall ([0-9.]+)%.* low up to ([0-9.]+) points", att).groups())
        assert f"attrition {verdict}" in att and bound == limit
        assert (shown > 10) == (overall > 0.10) and abs(shown - 100 * overall) < 5e-4


def test_boundary_choice_decides_attrition():
    assert rate(facts(attrition_students=HIGH, baseline=(("p", 0.3, True),))).wwc_rating == DNM
    r = rate(facts(attrition_students=HIGH, baseline=(("p", 0.3, True),), boundary="optimistic"))
    assert r.wwc_rating == MWOR
    assert "optimistic boundary: low up to 8.2 points" in r.steps[2].finding
    # cautious: no differential is low at 58% overall
    r = rate(facts(attrition_students=(0.58, 0.0)))
    assert "no differential is low" in r.steps[2].finding and r.wwc_rating == MWR


@pytest.mark.parametrize(
    "school_att, student_att, joiners, baseline_g, expected",
    [
        (LOW, LOW, False, 0.40, MWOR),  # low risk at both levels: equivalence not required
        (LOW, LOW, None, 0.03, MWR),  # joiners unknown: conservative
        (LOW, LOW, None, 0.40, DNM),
        (LOW, LOW, True, 0.10, MWR),  # joiners: equivalence with adjustment
        (LOW, HIGH, False, 0.03, MWR),  # high student attrition
        (LOW, HIGH, False, 0.30, DNM),
        (HIGH, LOW, False, 0.03, MWR),  # high school attrition
        (HIGH, LOW, False, 0.30, DNM),
    ],
)
def test_cluster_rct_steps(school_att, student_att, joiners, baseline_g, expected):
    r = rate(facts(assignment="schools", schools_shared=False, attrition_schools=school_att,
                   attrition_students=student_att, joiners=joiners, baseline=(("pretest", baseline_g, True),)))
    assert r.wwc_rating == expected
    st = steps(r)
    if school_att is HIGH:
        assert st["attrition (schools)"] == MWR and "risk of bias (students)" not in st
    else:
        assert st["attrition (schools)"] is None
        assert st["risk of bias (students)"] == (None if expected == MWOR else MWR)
    if joiners is None and school_att is LOW:
        assert "cannot tell whether students joined" in r.steps[3].finding


def test_qed_and_compromised_rct_cannot_exceed_with_reservations():
    q = rate(facts(design="qed", assignment="schools", schools_shared=False, attrition_students=None,
                   baseline=(("pretest", -0.067, True),)))
    assert q.wwc_rating == MWR
    assert q.reasons[0].startswith("QED (matched comparison): cannot exceed With Reservations")
    assert "satisfied with statistical adjustment" in q.reasons[-1] and "g = -0.067" in q.reasons[-1]
    assert rate(facts(design="qed", attrition_students=None, baseline=(("p", 0.06, False),))).wwc_rating == DNM
    c = rate(facts(compromised=True, attrition_students=None))
    assert c.wwc_rating == MWR and "compromised" in c.steps[0].finding and "attrition (students)" not in steps(c)


def test_confounds_do_not_meet_standards():
    r = rate(cluster(n_schools_treated=1))
    assert r.wwc_rating == DNM and "n = 1 unit confound" in r.reasons[0] and "every PL student" in r.reasons[0]
    r = rate(facts(design="qed", attrition_students=None, schools_shared=False, n_schools_control=1))
    assert r.wwc_rating == DNM and "every comparison student" in r.reasons[0]
    # one school holding both arms (individual randomization) is no confound
    assert rate(facts(n_schools_treated=1, n_schools_control=1)).wwc_rating == MWOR
    r = rate(facts(confounds=("PL schools also changed curriculum",)))
    assert r.wwc_rating == DNM and r.reasons == ("declared confounding factor: PL schools also changed curriculum",)


def test_facts_are_checked():
    with pytest.raises(DataError, match="attrition_schools"):
        facts(assignment="schools", schools_shared=False)
    with pytest.raises(DataError, match="attrition_students"):
        facts(attrition_students=None)
    with pytest.raises(DataError, match="design"):
        facts(design="observational")
    with pytest.raises(DataError, match="boundary"):
        facts(boundary="lenient")
    with pytest.raises(DataError, match="assignment"):
        facts(assignment="classrooms")


# ------------------------------------------------------------------------------------ ESSA


def conds(r) -> dict[str, bool | None]:
    return {c.condition.split(" (")[0]: c.met for c in r.conditions}


def test_strong_needs_without_reservations_and_a_large_multisite_sample():
    r = rate(cluster(n_students=350, n_schools_treated=1, n_schools_control=1, confounds=()))
    assert r.wwc_rating == DNM  # one school per arm: confounded, so not even Promising
    assert r.essa_tier == RATIONALE
    r = rate(cluster(n_students=350, n_schools_treated=1, n_schools_control=2))
    assert r.essa_tier == RATIONALE  # still a single-school arm
    r = rate(cluster(n_students=350))
    assert r.wwc_rating == MWOR and r.essa_tier == STRONG
    assert r.essa_reason == "all conditions met (not checked by pleval: no overriding negative evidence)"
    assert all(c.met is not False for c in r.conditions)
    declared = rate(cluster(n_students=350, overriding_negative=False))
    assert declared.essa_reason == "all conditions met" and all(c.met for c in declared.conditions[:5])
    small = rate(cluster(n_students=349))
    assert small.essa_tier == PROMISING and "at least 350 students" in small.essa_reason


def test_sites_for_individually_randomized_trials_count_shared_schools_once():
    one = rate(facts(n_schools_treated=1, n_schools_control=1))
    assert one.wwc_rating == MWOR and one.essa_tier == PROMISING
    assert "in 1 school(s)" in [c.detail for c in one.conditions if c.condition.startswith("at least")][0]
    assert rate(facts(n_schools_treated=2, n_schools_control=2)).essa_tier == STRONG


def test_moderate_and_promising():
    mwr = dict(attrition_students=HIGH, baseline=(("pretest", 0.10, True),))
    assert rate(facts(**mwr)).essa_tier == MODERATE
    assert rate(facts(n_students=200, **mwr)).essa_tier == PROMISING
    # does not meet standards, but the model controls for the pretest: correlational with controls
    r = rate(facts(design="qed", attrition_students=None, schools_shared=False, baseline=(("pretest", 0.30, True),)))
    assert r.wwc_rating == DNM and r.essa_tier == PROMISING
    assert "adjusts for the pretest" in [c.detail for c in r.conditions][4]
    r = rate(facts(design="qed", attrition_students=None, schools_shared=False, baseline=()))
    assert r.essa_tier == RATIONALE and conds(r)["statistical controls for selection bias"] is False


@pytest.mark.parametrize(
    "kw, unmet",
    [
        (dict(pvalue=0.06), "statistically significant favourable effect"),
        (dict(effect_size=-0.12), "statistically significant favourable effect"),
        (dict(pvalue=math.nan), "statistically significant favourable effect"),
        (dict(unfavorable_elsewhere=("Neyman difference in means",)), "no overriding negative evidence"),
        (dict(overriding_negative=True), "no overriding negative evidence"),
    ],
)
def test_without_a_significant_favourable_effect_the_tier_is_a_rationale(kw, unmet):
    r = rate(cluster(**kw))
    assert r.wwc_rating == MWOR and r.essa_tier == RATIONALE
    assert unmet in r.essa_reason
    assert conds(r)["logic model and ongoing evaluation"] is None  # never checkable from data
    # and the reason says so: Tier 4 is not a verdict on the evidence (before 2026-12-05 it did not)
    assert "not checked by pleval: " in r.essa_reason and "logic model and ongoing evaluation" in r.essa_reason


def test_direction_and_declared_evidence():
    assert rate(cluster(effect_size=-0.2, higher_is_better=False)).essa_tier == STRONG
    assert conds(rate(cluster()))["no overriding negative evidence"] is None  # other studies: not known
    assert conds(rate(cluster(overriding_negative=False)))["no overriding negative evidence"] is True


def test_rating_result_views():
    r = rate(cluster(joiners=None))
    f = r.to_frame()
    assert list(f.columns) == ["outcome", "part", "step", "finding", "result"]
    assert f[f["step"] == "rating"]["result"].item() == MWR
    assert f[f["step"] == "tier"]["result"].item() == MODERATE
    d = r.as_dict()
    assert d["wwc_rating"] == MWR and d["essa_tier"] == MODERATE and "joined" in d["wwc_reasons"]
    s = r.summary()
    assert s.startswith(f"WWC rating (math): {MWR}") and f"ESSA tier (math): {MODERATE}" in s
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.wwc_rating = MWOR


@pytest.mark.parametrize("effect_size, pvalue, higher_is_better", [
    (-0.21, 6e-6, True), (-0.21, 0.2, True), (-0.21, 6e-6, False), (0.21, 6e-6, False), (0.21, 6e-6, True)])
def test_a_significantly_unfavourable_primary_estimate_is_overriding_negative_evidence(effect_size, pvalue,
                                                                                       higher_is_better):
    """The primary estimate itself significantly unfavourable (p < alpha, its sign against the
    better direction) fails "no overriding negative evidence", named in the finding; before
    2026-12-04 that step read "none among this run's analyses of the outcome"."""
    f = cluster(effect_size=effect_size, pvalue=pvalue, higher_is_better=higher_is_better)
    harmful = pvalue < f.alpha and (effect_size < 0) == higher_is_better
    c = next(c for c in rate(f).conditions if c.condition == "no overriding negative evidence")
    assert (c.met is False) == harmful and ("none among" in c.detail) == (not harmful)
    if harmful:
        assert c.detail == f"significant unfavourable effect in this run: the primary estimate (unfavourable, p = {pvalue:.3g})"
    both = next(c for c in rate(dataclasses.replace(f, unfavorable_elsewhere=("CACE",))).conditions
                if c.condition == "no overriding negative evidence")
    assert both.met is False and both.detail.endswith(("the primary estimate (unfavourable, p = 6e-06), CACE" if harmful
                                                       else ": CACE"))
