"""Placebo schools (pleval.heterogeneity.placebo): comparison schools analysed as if PL, held
out of the pool while they play the part; with no program effect the PL schools' spread matches
the placebo spread, with real effect heterogeneity it exceeds it."""

from __future__ import annotations

import dataclasses
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pleval
from pleval.data import SAMPLE_COLUMNS
from pleval.errors import DataError, DesignError, PlevalWarning
from pleval.heterogeneity import meta_analysis, school_effects
from pleval.heterogeneity.calibration import placebo_meta
from pleval.heterogeneity.placebo import placebo_schools
from pleval.simulate import simulate_matched

from .conftest import sim_reps
from .test_one_school import _direct, _draws

SMALL = dict(n_schools=80, n_pl_schools=12, students_per_grade=15, grades=(4, 5, 6), subjects=("math",),
             school_value_added_sd=0.15)


@pytest.fixture(scope="module")
def small():
    sim = simulate_matched(effect=0.0, tau=0.0, seed=11, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        res = placebo_schools(sim.data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    return sim.data, res


def test_placebo_schools_are_held_out_and_pl_schools_never_used(small):
    data, r = small
    pl = set(data.loc[data.treatment == 1, "school_id"])
    rounds = r.rounds
    assert len(rounds) == 20 and rounds["round"].nunique() == 3 and rounds.placebo_school.is_unique
    assert not (set(rounds.placebo_school) & pl)
    for rnd, g in rounds.groupby("round"):
        used = set(g.comparison_schools_used.iloc[0])
        assert not (used & set(g.placebo_school)), "a placebo school served as its own comparison"
        assert not (used & pl), "a real PL school served as a comparison"
    est = r.placebo.dropna(subset=["effect_size"])
    assert set(est.school) <= set(rounds.placebo_school)
    assert len(r.placebo_estimates("math")) == len(est)


def test_comparison_numbers_follow_from_the_tables(small):
    """Every figure of the comparison from the two tables and their joint covariances (the
    placebo covariance block-diagonal across rounds), written out with matrices here."""
    _, r = small
    row = r.comparison.iloc[0]
    obs = r.observed.table.dropna(subset=["effect_size"])
    plc = r.placebo.dropna(subset=["effect_size"])
    V = r.observed.vcov["math"].loc[obs.school, obs.school].to_numpy()
    Vp = r.placebo_vcov["math"].loc[plc.school, plc.school].to_numpy()
    rounds = plc["round"].to_numpy()
    assert np.all(Vp[rounds[:, None] != rounds[None, :]] == 0)  # separate matching runs
    m_pl = meta_analysis(obs.effect_size, obs.es_se, vcov=V)
    # placebo deviations on the PL schools' scale: × √(ā_PL/a_j), a = 1 + 1/(effective comparison schools)
    a_pl, a_pb = (1 + 1 / f["comparison_schools"].to_numpy(dtype=float) for f in (obs, plc))
    f = np.sqrt(a_pl.mean() / a_pb)
    yp = plc.effect_size.to_numpy()
    yp, Vp = yp.mean() + (yp - yp.mean()) * f, Vp * np.outer(f, f)
    assert row.placebo_scale == pytest.approx(a_pl.mean() / a_pb.mean()) and not np.allclose(f, 1.0)
    m_pb = placebo_meta(yp, Vp)  # Hedges' unweighted τ² (tests/test_heterogeneity_unweighted.py)
    assert m_pb.tau2 == pytest.approx(meta_analysis(yp, np.sqrt(np.diag(Vp)), "HE", vcov=Vp).tau2)
    assert row.tau2_pl == pytest.approx(m_pl.tau2) and row.tau2_placebo == pytest.approx(m_pb.tau2)
    assert row.tau2_excess == pytest.approx(max(0.0, m_pl.tau2 - m_pb.tau2))
    assert row.placebo_significant_share == pytest.approx(np.mean(plc.pvalue < 0.05))
    y = obs.effect_size.to_numpy()
    Wi = np.linalg.inv(V + m_pb.tau2 * np.eye(len(y)))
    one = np.ones(len(y))
    mu = one @ Wi @ y / (one @ Wi @ one)
    assert row.q_star == pytest.approx((y - mu) @ Wi @ (y - mu))
    v = obs.es_se.to_numpy() ** 2
    cal = r.calibrated
    rel = a_pl / a_pl.mean()  # each school's own share of the placebo spread
    np.testing.assert_allclose(cal.se_calibrated, np.sqrt(v + m_pb.tau2 * rel))
    d, draws = obs["df"].to_numpy(), _draws(yp, Vp)
    for i in range(len(y)):  # the mixture over τ²_placebo's confidence distribution, by scipy
        want = _direct(y[i], v[i], d[i], m_pb.tau2 * rel[i], (draws[0] * rel[i], draws[1]))
        got = cal.iloc[i]
        for col, val in want.items():
            assert got[col] == pytest.approx(val, rel=1e-7), col
    text = r.summary()
    assert "placebo" in text and "held out" in text
    assert r.to_frame().shape[0] == 1


def test_writing_into_the_covariances_read_from_results_leaves_the_comparison_unchanged(small):
    """SchoolEffects.vcov / vcov_raw and PlaceboResult.placebo_vcov read as read-only mappings whose
    frames are shallow copies (pleval._results.FrameMap): a write into a matrix read from them never
    reaches the result, and the comparison formed again equals the one formed with the result;
    before 2026-12-05 they were the result's own dicts of frames, and such a write changed it."""
    _, r = small
    for mats in (r.observed.vcov, r.observed.vcov_raw, r.placebo_vcov):
        assert set(mats) == {"math"}
        V = mats["math"]
        V.loc[:, :] = 4.0 * V.to_numpy()
    again = r.compare(r.observed)
    pd.testing.assert_frame_equal(again.comparison, r.comparison)
    pd.testing.assert_frame_equal(again.calibrated, r.calibrated)
    obs = r.observed.table.dropna(subset=["effect_size"])
    V = r.observed.vcov["math"].loc[obs.school, obs.school].to_numpy()
    np.testing.assert_allclose(np.diag(V), obs.es_se.to_numpy() ** 2, rtol=1e-10)  # the diagonal: es_se²
    for mats in (r.observed.vcov, r.observed.vcov_raw, r.placebo_vcov):
        with pytest.raises(TypeError):
            mats["math"] = V  # nor can a matrix be replaced


def _hedges(yp, v):
    """Hedges' unweighted τ² of independent estimates and its SE, by the textbook formulas:
    ``(Σ(y − ȳ)² − (1 − 1/m)Σv)/(m − 1)`` and ``√(2 tr(MΣ̂MΣ̂))/(m − 1)``, ``Σ̂ = diag(v) + τ̂²I``."""
    m = yp.size
    t2 = max(0.0, (np.sum((yp - yp.mean()) ** 2) - (1 - 1 / m) * v.sum()) / (m - 1))
    S = (np.eye(m) - 1 / m) @ np.diag(v + t2)
    return SimpleNamespace(tau2=t2, tau2_se=np.sqrt(2 * np.trace(S @ S)) / (m - 1))


def test_program_interval_and_calibration_by_hand():
    from scipy import optimize

    from pleval.heterogeneity.calibration import calibrate

    rng = np.random.default_rng(4)
    k, m = 10, 30
    V = np.diag(rng.uniform(0.002, 0.01, k))
    Vp = np.diag(rng.uniform(0.002, 0.01, m))
    y = rng.normal(0, 0.15, k)
    yp = rng.normal(0, 0.1, m)
    c = calibrate([f"s{i}" for i in range(k)], y, V, np.full(k, np.inf), yp, Vp)
    mpl, mpb = meta_analysis(y, np.sqrt(np.diag(V))), _hedges(yp, np.diag(Vp))
    assert c.tau2_program == pytest.approx(max(0.0, mpl.tau2 - mpb.tau2))

    def qstar(t):  # generalized Q with the placebo variance as an offset (independent estimates)
        w = 1 / (np.diag(V) + mpb.tau2 + t)
        return w @ (y - w @ y / w.sum()) ** 2

    ends = []
    for q in stats.chi2.ppf([0.975, 0.025], k - 1):
        ends.append(0.0 if qstar(0.0) <= q else optimize.brentq(lambda t: qstar(t) - q, 0.0, 10.0, xtol=1e-14))
    assert ends[1] > 0 and c.tau2_program_ci == pytest.approx(tuple(ends), abs=1e-9)
    assert c.q_star == pytest.approx(qstar(0.0), rel=1e-12)  # the test of PL vs placebo spread
    # infinite school df: the mixture over τ²_placebo's draws of normals
    draws = _draws(yp, Vp)
    for i in range(k):
        want = _direct(y[i], V[i, i], np.inf, mpb.tau2, draws)
        for col, val in want.items():
            assert c.schools.iloc[i][col] == pytest.approx(val, rel=1e-7), col
    # program shrinkage: noise V + tau2_placebo I, signal tau2_program (independent case: closed form)
    v = np.diag(V) + mpb.tau2
    t2 = c.tau2_program
    w = 1 / (v + t2)
    mu = w @ y / w.sum()
    B = t2 / (t2 + v)
    np.testing.assert_allclose(c.schools.program_shrunk, mu + B * (y - mu), atol=1e-12)
    g3 = v**2 / (t2 + v) ** 3 * (mpl.tau2_se**2 + mpb.tau2_se**2)  # Prasad-Rao's g3, counted twice
    np.testing.assert_allclose(c.schools.program_shrunk_sd, np.sqrt(B * v + (1 - B) ** 2 / w.sum() + 2 * g3), atol=1e-12)


def test_calibration_decomposes_the_pl_covariance_once(monkeypatch):
    """One eigendecomposition of the k × k PL covariance serves every figure of the calibration
    and the comparison's Q*(0) (a correlated V: Q*(0) checked against a direct solve)."""
    from pleval.heterogeneity import calibration, placebo

    rng = np.random.default_rng(8)
    k, m = 12, 25
    A = rng.normal(0, 0.03, (k, k))
    V = A @ A.T / k + np.diag(rng.uniform(0.002, 0.01, k))
    Vp = np.diag(rng.uniform(0.002, 0.01, m))
    y, yp = rng.normal(0, 0.15, k), rng.normal(0, 0.1, m)
    labels = [f"s{i}" for i in range(k)]
    observed = SimpleNamespace(table=pd.DataFrame({"school": labels, "effect_size": y, "es_se": np.sqrt(np.diag(V)),
                                                   "df": np.full(k, 30.0)}),
                               vcov={"all": pd.DataFrame(V, index=labels, columns=labels)}, vcov_raw={}, vcov_eigen={})
    plc = pd.DataFrame({"school": [f"p{i}" for i in range(m)], "effect_size": yp, "es_se": np.sqrt(np.diag(Vp)),
                        "pvalue": rng.uniform(size=m)})
    sizes = []
    eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a, *r, **kw: sizes.append(np.shape(a)[0]) or eigh(a, *r, **kw))
    comparison, _, cal = placebo._compare(observed, plc, {}, (), 0.05, 0.95, "bh")
    assert sizes.count(k) == 1
    t2p = cal["all"].placebo.tau2
    Wi = np.linalg.inv(V + t2p * np.eye(k))
    r = y - (Wi.sum(axis=0) @ y) / Wi.sum()
    assert comparison.q_star.iloc[0] == pytest.approx(r @ Wi @ r, rel=1e-10)
    assert math.isnan(calibration.calibrate(labels[:1], y[:1], V[:1, :1], [30.0], yp, Vp).q_star)  # one PL school
    # the pooling's decomposition of the same matrix (SchoolEffects.vcov_eigen): none here, the same bits
    observed.vcov_eigen = {"all": eigh(V)}
    sizes.clear()
    again, calibrated, _ = placebo._compare(observed, plc, {}, (), 0.05, 0.95, "bh")
    assert sizes.count(k) == 0
    pd.testing.assert_frame_equal(again, comparison, check_exact=True)
    # not the pooled schools in the pooled order (a school without an estimate): decomposed again
    observed.table.loc[3, "effect_size"] = np.nan
    sizes.clear()
    placebo._compare(observed, plc, {}, (), 0.05, 0.95, "bh")
    assert sizes.count(k - 1) == 1


def test_comparison_reuses_the_pooled_decomposition(small, monkeypatch):
    """The school effects keep each group's eigen-decomposition of the covariance they pool with
    (``vcov_eigen``, that of ``vcov``), and the comparison's calibration takes it: the same
    tables, bit for bit, as decomposing the matrix again."""
    from dataclasses import replace

    _, res = small
    obs = res.observed
    for key, V in obs.vcov.items():
        lam, Q = obs.vcov_eigen[key]
        ref = np.linalg.eigh(V.to_numpy())
        assert np.array_equal(lam, ref[0]) and np.array_equal(Q, ref[1])
    sizes, eigh = [], np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda x, *r, **kw: sizes.append(np.shape(x)) or eigh(x, *r, **kw))
    a = res.compare(obs)
    shapes = [V.shape for V in obs.vcov.values()]
    assert not any(sz in shapes for sz in sizes)  # no PL covariance decomposed again
    b = res.compare(replace(obs, vcov_eigen={}))
    assert any(sz in shapes for sz in sizes)
    pd.testing.assert_frame_equal(a.comparison, b.comparison, check_exact=True)
    pd.testing.assert_frame_equal(a.calibrated, b.calibrated, check_exact=True)


@pytest.mark.parametrize("pl_sd", [0.0, 0.3])
def test_new_school_variance_is_order_restricted_above_the_placebo_spread(pl_sd):
    """τ̂²_total: τ̂²_PL when it is at least τ̂²_placebo, else their precision-weighted mean
    (isotonic); the prediction interval and shrunken effects integrate the variance's
    confidence distribution (independent case: closed forms; tests/test_heterogeneity_predictive.py)."""
    from pleval.heterogeneity import _predictive
    from pleval.heterogeneity.calibration import calibrate

    rng = np.random.default_rng(7)
    k, m = 12, 40
    V = np.diag(rng.uniform(0.002, 0.01, k))
    Vp = np.diag(rng.uniform(0.002, 0.01, m))
    y = 0.1 + rng.normal(0, pl_sd, k) + rng.normal(0, np.sqrt(np.diag(V)))
    yp = rng.normal(0, 0.1, m) + rng.normal(0, np.sqrt(np.diag(Vp)))
    c = calibrate([f"s{i}" for i in range(k)], y, V, np.full(k, 30.0), yp, Vp)
    mpl, mpb = meta_analysis(y, np.sqrt(np.diag(V))), _hedges(yp, np.diag(Vp))
    assert (mpl.tau2 > mpb.tau2) == (pl_sd > 0)  # both branches of the order restriction are exercised
    w, wp = 1 / mpl.tau2_se**2, 1 / mpb.tau2_se**2
    t2 = mpl.tau2 if pl_sd > 0 else (w * mpl.tau2 + wp * mpb.tau2) / (w + wp)
    assert c.tau2_total == pytest.approx(t2)
    assert (mpb.tau2 > c.tau2_total > mpl.tau2) if pl_sd == 0 else c.tau2_total == pytest.approx(mpl.tau2)
    v = np.diag(V)
    wt = 1 / (v + t2)
    mu = wt @ y / wt.sum()
    assert c.mu_total == pytest.approx(mu)
    assert c.se_total**2 == pytest.approx((wt @ (y - mu) ** 2) / (k - 1) / wt.sum())  # Hartung-Knapp
    np.testing.assert_allclose(c.schools.reliability_total, t2 / (t2 + v), atol=1e-12)
    nodes = _predictive.variance_nodes(y, V, yp, Vp)
    assert c.pi == pytest.approx(_predictive.predictive(y, V, *nodes)[0])
    np.testing.assert_allclose(c.schools.shrunk_total_sd, _predictive.shrinkage(y, V, *nodes)[1])
    assert c.pi[0] < c.mu_total < c.pi[1] and 0 < c.prob_negative_new < 1
    # without Hartung-Knapp: the model-based SE of the GLS mean; the prediction is unchanged
    c0 = calibrate([f"s{i}" for i in range(k)], y, V, np.full(k, 30.0), yp, Vp, hartung_knapp=False)
    assert c0.se_total**2 == pytest.approx(1 / wt.sum()) and c0.pi == pytest.approx(c.pi)


def test_reproducible_and_forest_plot(small):
    data, r = small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        again = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    pd.testing.assert_frame_equal(r.comparison, again.comparison)
    from pleval.plots import forest

    fig = forest(r.observed.forest_frame("math"), pooled=r.observed.meta["math"], placebo=r.placebo_estimates("math"))
    assert fig.axes


def test_placebo_errors():
    sim = simulate_matched(effect=0.0, tau=0.0, seed=12, **SMALL)
    d = sim.data
    with pytest.raises(DataError, match="school"):
        placebo_schools(d, SAMPLE_COLUMNS.replace(school=None))
    few = d[d.treatment.eq(1) | d.school_id.isin(d.loc[d.treatment == 0, "school_id"].unique()[:3])]
    with pytest.raises(DesignError, match="at least 4"):
        placebo_schools(few, SAMPLE_COLUMNS)


def test_a_mixed_school_stays_in_the_pool_and_does_not_play_placebo():
    """A school with PL and comparison students (here a PL school that also holds 20 comparison
    students) never plays placebo, but its comparison students stay in every round's pool; each
    round is the analysis of the comparison students alone with that round's schools marked PL
    (recomputed here with pleval.match and school_effects). Before, one mixed school stopped the
    placebo rounds ("placebo schools need schools that are wholly PL or wholly comparison")."""
    d = simulate_matched(effect=0.0, tau=0.0, seed=12, **SMALL).data
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())[0]
    donor = sorted(d.loc[d.treatment == 0, "school_id"].unique())[0]
    moved = d.loc[d.school_id == donor, "student_id"].unique()[:20]
    mixed = d.assign(school_id=d.school_id.where(~d.student_id.isin(moved), pl))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        r = placebo_schools(mixed, SAMPLE_COLUMNS, n_placebo=16, per_round=8, seed=3)
    rounds = r.rounds
    assert pl not in set(rounds.placebo_school) and len(rounds) == 16
    assert all(pl in used for used in rounds.comparison_schools_used)  # its comparison students match
    chunk = rounds.loc[rounds["round"] == 0, "placebo_school"].to_numpy()
    alone = mixed[mixed.treatment == 0].assign(treatment=lambda x: x.school_id.isin(chunk).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        direct = school_effects(pleval.match(alone, SAMPLE_COLUMNS, seed=3).matched, covariates=["pretest"],
                                cluster="student_id", school="school_id", by="subject").table.set_index("school")
    got = r.placebo[r.placebo["round"] == 0].set_index("school")
    assert set(got.index) == set(chunk)
    np.testing.assert_allclose(got[["estimate", "se"]].to_numpy(float),
                               direct.loc[got.index, ["estimate", "se"]].to_numpy(float), rtol=1e-9)
    # as pleval.estimate runs them: the analysis's validation and match given to the rounds
    from pleval.data import validate

    v = validate(mixed, SAMPLE_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = pleval.match(v, SAMPLE_COLUMNS, "propensity", seed=3)
        again = placebo_schools(mixed, SAMPLE_COLUMNS, n_placebo=16, per_round=8, seed=3, validated=v, matched=m,
                                observed=r.observed)
    pd.testing.assert_frame_equal(again.placebo, r.placebo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(mixed, workers=1, sensitivity=False)
    plc = ev.table("placebo")
    assert plc["school"].nunique() == mixed.loc[mixed.treatment == 0, "school_id"].nunique() - 1
    assert pl not in set(plc["school"]) and ev.table("schools")["se_calibrated"].notna().any()


@pytest.mark.slow
def test_no_program_effect_pl_spread_matches_placebo_spread():
    """No program effect (θ = 0 everywhere), school growth deviations SD 0.15: the PL schools'
    between-school SD matches the placebo schools' on average, and the Q* test of "more varied
    than placebo" is not systematically significant. With real effect heterogeneity (τ = 0.3,
    the same schools and students by common random numbers) the PL spread exceeds the placebo
    spread."""
    reps = sim_reps(60, minimum=12)
    d_null, d_alt, p_null, p_alt = [], [], [], []
    for rep in range(reps):
        null = simulate_matched(effect=0.0, tau=0.0, seed=100 + rep, **{**SMALL, "n_pl_schools": 16})
        alt = simulate_matched(effect=0.0, tau=0.3, seed=100 + rep, **{**SMALL, "n_pl_schools": 16})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            r0 = placebo_schools(null.data, SAMPLE_COLUMNS, n_placebo=32, per_round=16, seed=rep)
            obs_alt = school_effects(pleval.match(alt.data, SAMPLE_COLUMNS, seed=rep).matched,
                                     covariates=["pretest"], cluster="student_id", by="subject")
            r1 = r0.compare(obs_alt)
        c0, c1 = r0.comparison.iloc[0], r1.comparison.iloc[0]
        d_null.append(c0.tau_pl - c0.tau_placebo)
        d_alt.append(c1.tau_pl - c1.tau_placebo)
        p_null.append(c0.p_star)
        p_alt.append(c1.p_star)
    d_null, d_alt = np.array(d_null), np.array(d_alt)
    se = d_null.std(ddof=1) / math.sqrt(reps)
    assert abs(d_null.mean()) < 3.5 * se + 0.01, (d_null.mean(), se)
    assert np.mean(np.array(p_null) < 0.05) < 0.05 + 3.5 * math.sqrt(0.05 * 0.95 / reps) + 0.05
    assert d_alt.mean() > 0.1 and np.mean(d_alt > 0) > 0.8
    assert np.mean(np.array(p_alt) < 0.05) > 0.5


def test_placebo_rounds_do_not_depend_on_seed_row_order_or_school_labels(small):
    """The rounds are dealt from the data (mean pretest rank), so a different seed, shuffled
    rows and re-coded school ids give the same placebo spread and calibration to 1e-12."""
    data, r = small
    shuffled = data.sample(frac=1.0, random_state=7).reset_index(drop=True)
    recode = {s: f"S{abs(hash(str(s))) % 10**6:06d}-{s}" for s in data.school_id.unique()}
    relabelled = shuffled.assign(school_id=shuffled.school_id.map(recode))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        runs = [placebo_schools(d, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=s)
                for d, s in ((data, 0), (shuffled, 5), (relabelled, 9))]
        runs += [placebo_schools(d, SAMPLE_COLUMNS, per_round=8, cap=20, seed=s) for d, s in ((shuffled, 1), (relabelled, 2))]
    cols = ["tau2_placebo", "tau2_placebo_ci_low", "tau2_placebo_ci_high", "tau2_program"]
    for other in runs:
        np.testing.assert_allclose(other.comparison[cols].to_numpy(float), r.comparison[cols].to_numpy(float),
                                   rtol=1e-12, atol=1e-12)


def test_cap_takes_the_first_schools_of_the_round_order(small):
    """``cap`` bounds the default number of placebo schools: the run is that of ``n_placebo=cap``
    (the first schools of the dealt order); a cap at or above the number of comparison schools
    changes nothing."""
    data, r = small
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        capped = placebo_schools(data, SAMPLE_COLUMNS, per_round=8, cap=20, seed=3)
        n_comp = capped.extent()["comparison_schools"]
        wide = placebo_schools(data, SAMPLE_COLUMNS, per_round=8, cap=n_comp, seed=3)
        every = placebo_schools(data, SAMPLE_COLUMNS, per_round=8, seed=3)
    assert capped.extent() == {"comparison_schools": n_comp, "placebo_schools": 20,
                               "estimates": int(np.isfinite(r.placebo["effect_size"]).sum()), "rounds": 3,
                               "per_round": 8, "cap": 20, "capped": True}
    assert "capped: the first 20 of" in capped.summary()
    pd.testing.assert_frame_equal(capped.placebo, r.placebo)
    pd.testing.assert_frame_equal(capped.comparison, r.comparison)
    assert not wide.extent()["capped"] and wide.extent()["placebo_schools"] == n_comp > 20
    pd.testing.assert_frame_equal(wide.placebo, every.placebo)
    pd.testing.assert_frame_equal(wide.comparison, every.comparison)


def test_rounds_take_the_validation_given_instead_of_validating_again(small, monkeypatch):
    """placebo_schools(..., validated=validate(data, columns)) gives the same placebo tables
    without validating the data again; pleval.estimate hands its own validation to the rounds
    (in one process and in the forked worker), so they never validate."""
    from pleval.data import validate
    from pleval.heterogeneity import placebo

    data, r = small
    v = validate(data, SAMPLE_COLUMNS)

    def no_validation(*a, **k):
        raise AssertionError("the rounds validated the data again")

    monkeypatch.setattr(placebo, "validate", no_validation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        given = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, validated=v)
    pd.testing.assert_frame_equal(given.placebo, r.placebo)
    pd.testing.assert_frame_equal(given.comparison, r.comparison)
    for workers in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            ev = pleval.estimate(data, SAMPLE_COLUMNS, workers=workers, n_placebo=20)
        assert len(ev.placebo) and not any("no placebo" in n for n in ev.notes)


def test_rounds_share_what_depends_on_the_rows_alone(small, monkeypatch):
    """The rounds' matches differ in the treatment only: the covariate patterns, exact-match cells
    and the student ids' hashed ranks are computed once for all rounds (match's ``_reuse``), and
    each round's match is that of a fresh :func:`pleval.match` of its data."""
    import pleval.matching as pm
    from pleval.heterogeneity.placebo import _InMemoryRounds

    data, _ = small
    calls = {"distinct_hashed_ranks": 0, "design_patterns": 0}
    for name in calls:
        real = getattr(pm, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(pm, name, counted)
    rounds = _InMemoryRounds(data, SAMPLE_COLUMNS, "propensity", {"seed": 0})
    pl, _ = rounds.schools()
    order = rounds.order(pl, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        got = [rounds.match(order[i : i + 8]) for i in (0, 8, 16)]
        assert calls == {"distinct_hashed_ranks": 1, "design_patterns": 1}
        fresh = [pm.match(rounds._fake(order[i : i + 8]), SAMPLE_COLUMNS, "propensity", seed=0) for i in (0, 8, 16)]
    for a, b in zip(got, fresh):
        for f in ("rows", "set_id", "weight", "set_school"):
            assert np.array_equal(getattr(a, f), getattr(b, f))
        assert np.array_equal(a.propensity.logit_ps, b.propensity.logit_ps)
        (ca, ua), (cb, ub) = a.factorized["student_id"], b.factorized["student_id"]
        assert np.array_equal(ca, cb) and np.array_equal(np.asarray(ua), np.asarray(ub))
    rounds.last_round()
    store, before = rounds._reuse, dict(calls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        last = rounds.match(order[:8])  # takes what the rounds shared, letting it go
        assert calls == before and rounds._reuse is None and set(store) == {pm._LAST_USE}
        for f in ("rows", "set_id", "weight", "set_school"):
            assert np.array_equal(getattr(last, f), getattr(got[0], f))
        rounds.match(order[:8])
    assert calls["distinct_hashed_ranks"] == before["distinct_hashed_ranks"] + 1  # nothing kept after the last round


def test_used_schools_from_codes_are_those_of_the_values(small):
    """A round's comparison schools in order of first appearance, from the school sample's codes
    (``_used_schools``): those of its values (``pd.unique`` over the gathered frame's column),
    and the frame's own when given a frame."""
    from pleval.heterogeneity.placebo import _InMemoryRounds, _used_schools

    data, _ = small
    rounds = _InMemoryRounds(data, SAMPLE_COLUMNS, "propensity", {"seed": 0})
    pl, _ = rounds.schools()
    order = rounds.order(pl, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = rounds.match(order[8:16])
    s, t = SAMPLE_COLUMNS.school, SAMPLE_COLUMNS.treatment
    ss = m.school_sample([t, s], categorical={s}, lazy=True)
    frame = ss.frame()
    want = pd.unique(frame[s].to_numpy()[frame[t].to_numpy() == 0])
    got = _used_schools(ss, s, t)
    assert len(want) > 10 and list(got) == list(want)
    assert list(_used_schools(frame, s, t)) == list(want)


def test_rounds_hold_narrow_integers_and_match_the_same(small):
    """The rounds hold their rows with the treatment a one-byte placeholder and the integer
    columns in a byte (``_rounds_rows``), those the school effects read too: a round's match is
    the match of the same rows with the columns as validated, and its school effects those of the
    same sample with the columns as validated."""
    import pleval.matching as pm
    from pleval.data import validate
    from pleval.heterogeneity.placebo import _InMemoryRounds

    data, _ = small
    C = SAMPLE_COLUMNS
    sample_cols = [C.treatment, C.outcome, *C.pretest, C.student_id, C.school, C.subject]
    rounds = _InMemoryRounds(data, C, "propensity", {"seed": 0}, keep=sample_cols)
    pl, _ = rounds.schools()
    order = rounds.order(pl, 8)
    held = rounds._fake(order[:0]).data
    narrow = [x for x in held.columns if held[x].dtype == np.uint8]
    assert C.grade in narrow and C.outcome not in narrow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        v = validate(data, C)
        got = rounds.match(order[:8])
        fake = rounds._fake(order[:8]).data
        same = v.data.loc[fake.index, list(fake.columns)].assign(**{C.treatment: fake[C.treatment]})
        assert same[C.grade].dtype == np.int64
        want = pm.match(pm.replace(v, data=same), C, "propensity", seed=0)
    for f in ("rows", "set_id", "weight", "set_school"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    np.testing.assert_array_equal(got.propensity.logit_ps, want.propensity.logit_ps)
    assert list(got.data.columns) == list(want.data.columns)


def test_rounds_narrow_integer_covariates_change_no_placebo_estimate(small, monkeypatch):
    """The integer covariates the rounds' school effects read are held in a byte too
    (``_rounds_rows``); the placebo tables equal those of rounds holding them as validated
    (int64), to the last bit. Columns whose values name groups (``labels``: clusters, schools,
    by groups) are held as validated."""
    import importlib

    pp = importlib.import_module("pleval.heterogeneity.placebo")
    data, r = small
    narrowed = pp._rounds_rows

    def as_validated(rows, keep, cols, treatment, labels):
        out = narrowed(rows, keep, cols, treatment, labels)
        for x in out.columns:
            if x != treatment and out[x].dtype.kind == "u":
                out[x] = rows.loc[keep, x].to_numpy()
        return out

    held = narrowed(data, np.ones(len(data), bool), list(data.columns), "treatment", frozenset({"sped"}))
    assert {"female", "frl", "ell", "grade"} <= {x for x in held.columns if held[x].dtype == np.uint8}
    assert held["sped"].dtype == data["sped"].dtype == np.int64
    monkeypatch.setattr(pp, "_rounds_rows", as_validated)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        wide = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    pd.testing.assert_frame_equal(wide.placebo, r.placebo)
    pd.testing.assert_frame_equal(wide.rounds, r.rounds)
    monkeypatch.setattr(pp, "_rounds_rows", narrowed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        by_grade = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, by="grade")
    assert by_grade.placebo["grade"].dtype == data["grade"].dtype  # a label: as validated


def test_rounds_keep_only_the_columns_they_read(small):
    """The rounds' rows carry the roles' columns, those the matching options name and the school
    effects' (``_round_columns``), not the rest of the file: columns nobody reads change nothing
    in the placebo tables, and a column a matching option names is kept."""
    from pleval.heterogeneity.placebo import _InMemoryRounds, _round_columns

    data, r = small
    wide = data.assign(junk_text=np.where(data.index % 2 == 0, "x", "y"), junk=np.arange(len(data)) / 7.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        got = placebo_schools(wide, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3)
    pd.testing.assert_frame_equal(got.placebo, r.placebo)
    pd.testing.assert_frame_equal(got.comparison, r.comparison)
    rounds = _InMemoryRounds(wide, SAMPLE_COLUMNS, "propensity", {"seed": 0}, keep=["posttest"])
    order = rounds.order(rounds.schools()[0], 8)
    cols = list(rounds._fake(order[:8]).data.columns)
    assert cols == [c for c in data.columns if c in {n for v in SAMPLE_COLUMNS.roles().values() for n in v}]
    names = pd.Index(["a", "b", "c", "d", "e", "f", SAMPLE_COLUMNS.outcome])
    opts = {"exact": ["b"], "calipers": {"c": 0.2}, "distance": "d", "seed": 0, "order": "largest"}
    assert _round_columns(names, SAMPLE_COLUMNS, opts, ["e"]) == ["b", "c", "d", "e", SAMPLE_COLUMNS.outcome]


def test_rounds_take_the_ids_of_the_analysis_match(small, monkeypatch):
    """``placebo_schools(..., matched=m)`` with the analysis's own match of ``validated``: the
    same placebo tables, the student ids hashed by that match only (the rounds take its
    factorization for their rows)."""
    import pleval.matching as pm
    from pleval.data import validate

    data, r = small
    v = validate(data, SAMPLE_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        m = pm.match(v, SAMPLE_COLUMNS, "propensity", seed=3)
        calls = []
        real = pm.distinct_hashed_ranks
        monkeypatch.setattr(pm, "distinct_hashed_ranks", lambda *a: calls.append(1) or real(*a))
        got = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, validated=v, matched=m,
                              observed=r.observed)
    assert not calls
    pd.testing.assert_frame_equal(got.placebo, r.placebo)
    pd.testing.assert_frame_equal(got.comparison, r.comparison)


@pytest.mark.parametrize("ids", ["text", "numbers"])
def test_round_order_and_rows_from_one_coding_of_the_schools(small, ids):
    """``schools()`` codes the school column once; ``order()`` takes those codes for the round
    order (grouped by code: the same means and counts as grouped by the ids) and for the
    rounds' rows — the same order and rows as grouping and matching the ids themselves, also
    with rows in another order and validated rows fewer than the data's."""
    from pleval.data import validate
    from pleval.heterogeneity.placebo import _InMemoryRounds, _round_order

    data, _ = small
    d = data.sample(frac=1.0, random_state=5)
    if ids == "numbers":
        d = d.assign(school_id=d["school_id"].str[3:].astype(int) * 7)
    d = d.assign(pretest=d["pretest"].mask(np.arange(len(d)) % 97 == 0))  # rows validation drops
    v = validate(d, SAMPLE_COLUMNS)
    assert len(v.data) < len(d)
    coded = _InMemoryRounds(d, SAMPLE_COLUMNS, "propensity", {"seed": 0}, validated=v)
    pl, comp = coded.schools()
    plain = _InMemoryRounds(d, SAMPLE_COLUMNS, "propensity", {"seed": 0}, validated=v)
    by_ids = d.groupby("school_id")["treatment"].max()
    np.testing.assert_array_equal(pl, by_ids.index[by_ids == 1].to_numpy())
    np.testing.assert_array_equal(comp, by_ids.index[by_ids == 0].to_numpy())
    got, want = coded.order(pl, 8), plain.order(pl, 8)  # plain: no schools() coding, the ids grouped
    np.testing.assert_array_equal(got, want)
    non_pl = d[~d["school_id"].isin(pl)]
    np.testing.assert_array_equal(got, _round_order(non_pl, "school_id", "pretest", 8))
    for chunk in (got[:8], got[8:16]):
        pd.testing.assert_frame_equal(coded._fake(chunk).data, plain._fake(chunk).data)


def test_free_memory_is_handed_back_before_the_first_round_only(small, monkeypatch):
    """The allocators' free memory is handed back once, before the first round's match (pages
    handed back fault in again when the next round reuses them), and changes no figure."""
    from pleval.heterogeneity import placebo

    data, r = small
    calls = []
    real = placebo._release_free_memory
    monkeypatch.setattr(placebo, "_release_free_memory", lambda: calls.append(1) or real())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        got = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, observed=r.observed)
    assert got.rounds["round"].nunique() == 3 and calls == [1]
    pd.testing.assert_frame_equal(got.placebo, r.placebo)


@pytest.mark.parametrize("lost", [False, True])
def test_rounds_matched_while_the_sd_is_awaited_are_the_same(small, monkeypatch, lost):
    """With the SD given as a callable (a worker), every round is matched before it is called, as
    if each school of the rounds before had an estimate; a round that a school without an
    estimate (``lost``: the first round's first school's estimates made NaN) moves is matched
    again. The same placebo table, covariances and rounds as the rounds one at a time with the
    SD given."""
    from pleval.heterogeneity import placebo
    from pleval.heterogeneity.placebo import play_rounds, plan_rounds

    data, r = small
    real, first_call = placebo.school_effects, [True]

    def effects(m, **kw):  # the first call of each run: its first school without an estimate
        out = real(m, **kw)
        if lost and first_call.pop():
            table = out.table  # a copy (pleval._results.Frame): the result with it is formed anew
            table.loc[table["school"] == table["school"].iloc[0], "effect_size"] = np.nan
            out = dataclasses.replace(out, table=table)
        first_call.append(False)
        return out

    monkeypatch.setattr(placebo, "school_effects", effects)
    kw = dict(n_placebo=20, per_round=8, seed=3, observed_given=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        plan = plan_rounds(data, SAMPLE_COLUMNS, **kw)
        sd = {"math": 1.7}
        plan.eff_kw["sd"] = sd
        serial = play_rounds(plan)
        first_call[:] = [True]
        asked = []
        plan = plan_rounds(data, SAMPLE_COLUMNS, **kw)
        matched = []
        real_match = plan.rounds.match
        monkeypatch.setattr(plan.rounds, "match", lambda chunk: matched.append(len(chunk)) or real_match(chunk))
        ahead = play_rounds(plan, sd=lambda: asked.append(len(matched)) or sd)
    assert asked == [3]  # every round matched before the SD was asked for
    assert matched == ([8, 8, 4, 5] if lost else [8, 8, 4])  # one school lost: the third round (4 -> 5 schools) again
    pd.testing.assert_frame_equal(ahead.placebo, serial.placebo)
    pd.testing.assert_frame_equal(ahead.rounds, serial.rounds)
    assert ahead.placebo_vcov.keys() == serial.placebo_vcov.keys()
    for key in serial.placebo_vcov:
        pd.testing.assert_frame_equal(ahead.placebo_vcov[key], serial.placebo_vcov[key])


def test_a_placebo_round_of_one_school_joins_the_calibration():
    """The first 3,000 rows of the sample file leave a last placebo round of one comparison
    school, pooled alone (no stored covariance): it joins the placebo covariance with its own
    variance on the diagonal (it was KeyError "['SCH0016'] not in index", an internal error of
    pleval estimate), and the calibration uses every placebo school with an estimate."""
    from pleval.heterogeneity.placebo import _group_vcov

    d = pd.read_csv("sample_data/pl_matched_students.csv").head(3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = pleval.estimate(d, workers=1, sensitivity=False)
    plc = ev.details["math"]["placebo"]
    rounds = plc.placebo.groupby("round")["school"].nunique()
    assert rounds.iloc[-1] == 1 and rounds.iloc[:-1].min() > 1
    alone = plc.placebo.loc[plc.placebo["round"] == rounds.index[-1]]
    assert alone["school"].iloc[0] not in plc.placebo_vcov["math"].index
    rows = plc.placebo[(plc.placebo["subject"] == "math") & np.isfinite(plc.placebo["effect_size"])]
    V = _group_vcov(plc.placebo_vcov, "math", rows)
    last = rows["school"].to_numpy() == alone["school"].iloc[0]
    assert V[last, last] == pytest.approx(rows.loc[last, "es_se"].to_numpy() ** 2) and (V[last][:, ~last] == 0).all()
    kept = ~last
    np.testing.assert_array_equal(V[np.ix_(kept, kept)], plc.placebo_vcov["math"].loc[rows["school"][kept],
                                                                                      rows["school"][kept]].to_numpy())
    assert ev.table("placebo")["school"].nunique() == len(plc.placebo["school"].unique())


def test_placebo_rounds_order_schools_by_a_pretest_read_as_text(tmp_path):
    """A frame whose pretest holds numbers as text (as a comma-decimal file's point-decimal
    column arrived before the reader made such columns numbers): the checks read it as numbers.
    The placebo rounds ranked schools by the raw column ('dtype str does not support operation
    mean', an internal error); they now read it as the checks do, and every table is that of
    the same rows written plainly."""
    d = pd.read_csv("sample_data/pl_matched_students.csv").head(3000)
    df = d.assign(pretest=d["pretest"].map(lambda v: "" if pd.isna(v) else f"{v:.1f}").astype(object))
    assert not pd.api.types.is_numeric_dtype(df["pretest"])  # text, read as numbers by the checks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = pleval.estimate(df, workers=1, sensitivity=False)
        b = pleval.estimate(d, workers=1, sensitivity=False)
    for name in ("overall", "schools", "placebo"):
        pd.testing.assert_frame_equal(a.table(name), b.table(name), obj=name)


def test_a_row_without_a_treatment_leaves_the_placebo_schools_standing():
    """One comparison row with a blank treatment is dropped by validation (and counted); the
    placebo step then refused the whole file ('must be 0/1 for placebo schools'), and every
    placebo-calibrated figure vanished. The placebo schools now read the rows the analysis reads:
    the tables equal those of the file without that row."""
    import warnings

    import pleval
    from pleval.errors import PlevalWarning

    d = pd.read_csv("sample_data/pl_matched_students.csv")
    i = d.index[d.treatment == 0][0]
    blank = d.astype({"treatment": float})
    blank.loc[i, "treatment"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        got = pleval.estimate(blank, sensitivity=False, subject="math")
        ref = pleval.estimate(d.drop(index=i), sensitivity=False, subject="math")
    assert len(got.placebo) and got.placebo.equals(ref.placebo)
    pd.testing.assert_frame_equal(got.heterogeneity, ref.heterogeneity)


def test_trial_placebo_schools_depend_on_the_data_alone():
    """A cluster trial's n_placebo placebo schools were a seeded random draw, listed in row order:
    with 8 of 20, the reading placebo τ was 0.071, 0.126 and 0.114 for seeds 0, 1 and 2, and
    nothing said the schools were a draw. They are now the first of the comparison schools ranked
    by mean pretest and dealt round-robin (spread over its range): the same for any seed or row
    order, and a note says which."""
    from pleval.heterogeneity.placebo import deal

    d = pd.read_csv("sample_data/pl_cluster_rct.csv")
    runs = []
    for seed, frame in ((0, d), (1, d), (0, d.sample(frac=1.0, random_state=3))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            ev = pleval.estimate(frame, design="rct", n_placebo=8, seed=seed)
        runs.append(ev)
    h = [ev.heterogeneity.set_index("subject")[["tau_placebo", "tau_program"]].to_numpy(float) for ev in runs]
    np.testing.assert_allclose(h[1], h[0], rtol=1e-12)
    np.testing.assert_allclose(h[2], h[0], rtol=1e-9)
    control = d[(d["treatment"] == 0) & d["posttest"].notna()]  # (the analytic rows, both subjects)
    g = control.groupby("school_id")["pretest"]
    want = sorted(deal(pd.DataFrame({"mean": g.mean(), "n": g.size()}), 8)[:8])
    assert sorted(runs[0].placebo["school"].unique()) == want
    assert any("placebo schools: 8 of 20 comparison schools, spread over the range of their mean pretest" in n
               for n in runs[0].notes)


def _ell_in_few_schools(seed: int = 5, n_ell_comparison: int = 3):
    """A null study of 4 PL and 20 comparison schools (tests/_school_sim.py) whose ELL students
    are in the PL schools and ``n_ell_comparison`` comparison schools only: under VCG matching,
    whose exact keys hold ELL, a placebo round without one of those schools has no ELL student in
    its matched rows, while the analysis's matched rows have some."""
    from ._school_sim import generate

    df, truth, _ = generate(seed, n_pl=4, n_comp=20, per_school=40)
    comp = sorted(truth.loc[~truth.pl, "school"])
    keep = df["school_id"].isin(set(truth.loc[truth.pl, "school"]) | set(comp[:n_ell_comparison]))
    return df.assign(ell=np.where(keep, df["ell"], 0))


def test_a_round_whose_matched_rows_lack_a_covariates_variation_is_fitted_without_it():
    """One placebo round whose matched rows have no ELL student (VCG: ELL is an exact key) made
    ``school_effects`` refuse the constant covariate, and the whole placebo calibration was
    dropped ("no placebo schools: column 'ell' (covariate) has no variation"): the headline counts
    fell back to student-level ones. Now that round is fitted without the column (it carries no
    information there), with a note, and every comparison school plays placebo. Checked against
    each round redone by hand: which rounds' matched rows lack ELL (pleval.match on the
    comparison students with the round's schools marked PL), and their estimates against
    school_effects without ELL."""
    df = _ell_in_few_schools()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(df, method="vcg", seed=0, sensitivity=False, workers=1)
    h = ev.heterogeneity.iloc[0]
    assert h["placebo_k"] == 20 and pd.notna(h["calibrated_positive"]) and pd.notna(h["calibrated_negative"])
    assert ev.table("schools")["p_calibrated_adjusted"].notna().all()
    plc = ev.details["math"]["placebo"]
    covs = list(plc.options["effect_options"]["covariates"])
    assert "ell" in covs
    lacking = []
    for rnd, g in plc.rounds.groupby("round"):
        chunk = g["placebo_school"].to_numpy()
        alone = df[df.treatment == 0].assign(treatment=lambda x: x.school_id.isin(chunk).astype(int))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            m = pleval.match(alone, SAMPLE_COLUMNS, "vcg", **plc.options["match_options"]).matched
        constant = m["ell"].nunique() == 1
        assert g["covariates_left_out"].iloc[0] == (("ell",) if constant else ())
        if not constant:
            continue
        lacking.append(rnd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            direct = school_effects(m, covariates=[c for c in covs if c != "ell"], cluster="student_id",
                                    school="school_id", by="subject").table.set_index("school")
        got = plc.placebo[plc.placebo["round"] == rnd].set_index("school")
        np.testing.assert_allclose(got[["estimate", "se"]].to_numpy(float),
                                   direct.loc[got.index, ["estimate", "se"]].to_numpy(float), rtol=1e-9)
    assert 0 < len(lacking) < plc.rounds["round"].nunique()  # some rounds lack ELL, some have it
    n = int(plc.rounds["round"].isin(lacking).sum())
    assert any(note.startswith(f"placebo round{'s' if len(lacking) > 1 else ''} {', '.join(map(str, lacking))} "
                               f"({n} school(s)): covariate 'ell' has no variation") for note in ev.notes), ev.notes


@pytest.mark.parametrize("step", ["school effects", "match"])
def test_a_round_that_fails_leaves_the_other_rounds_standing(small, monkeypatch, step):
    """A round whose school effects or matching fail (here the second, made to raise) loses its
    own schools only: they stay in ``rounds`` with the reason, the rounds go on until
    ``n_placebo`` schools have an estimate, and the note counts them. Before, the error ended
    every round."""
    from pleval.heterogeneity import placebo

    data, r = small
    calls = []

    def failing(real):
        def second_fails(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise DesignError("no school effect is estimable (made to fail)")
            return real(*a, **kw)
        return second_fails

    if step == "match":
        monkeypatch.setattr(placebo._InMemoryRounds, "match", failing(placebo._InMemoryRounds.match))
    else:
        monkeypatch.setattr(placebo, "school_effects", failing(placebo.school_effects))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        got = placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, observed=r.observed)
    failed = got.rounds[got.rounds["failed"] != ""]
    assert set(failed["round"]) == {1} and len(failed) == 8 and failed["failed"].str.contains("made to fail").all()
    est = got.placebo.dropna(subset=["effect_size"])
    assert len(est) == 20 and not set(est["school"]) & set(failed["placebo_school"])
    assert got.comparison.iloc[0]["k_placebo"] == 20
    assert got.round_notes() == [
        "placebo round 1 (8 school(s)): no estimates (no school effect is estimable (made to fail)); those schools are "
        "left out of the placebo calibration, which rests on the 20 placebo estimates of the other rounds"]
    calls.clear()
    monkeypatch.setattr(placebo, "school_effects", lambda m, **kw: (_ for _ in ()).throw(DesignError("no estimate")))
    with pytest.raises(DesignError, match="every placebo round failed"):
        placebo_schools(data, SAMPLE_COLUMNS, n_placebo=20, per_round=8, seed=3, observed=r.observed)


@pytest.mark.slow
def test_headline_flags_a_school_at_most_alpha_when_rounds_lack_a_covariate():
    """Global null (no program effect; school deviations SD 0.15), 4 PL and 20 comparison
    schools of about 20 students, VCG matching: the placebo rounds' matched rows often lack an
    ELL or SPED student. Before, such a round dropped the placebo calibration in 19 of the first
    20 of these studies, and the headline counts were the student-level ones (any school flagged
    in 12% of the sweep's studies against the documented 5%); now every study is calibrated and
    the headline flags a school in at most about 5% of them."""
    from ._school_sim import generate

    reps = sim_reps(80, minimum=20)
    lost = flagged = 0
    for rep in range(reps):
        df, _, _ = generate(1000 + rep, n_pl=4, n_comp=20, per_school=20, delta=0.15)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = pleval.estimate(df, method="vcg", seed=0, sensitivity=False, workers=1, sd=15.0).heterogeneity.iloc[0]
        cal = pd.notna(h["calibrated_positive"])
        lost += not cal
        counts = ("calibrated_positive", "calibrated_negative") if cal else ("count_positive_adjusted",
                                                                             "count_negative_adjusted")
        flagged += h[counts[0]] + h[counts[1]] > 0
    assert lost == 0
    assert flagged / reps <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / reps), (flagged, reps)


def test_calibrated_interval_stays_bounded_when_the_placebo_spread_is_estimated_at_zero():
    """τ̂²_placebo = 0 from 16 placebo schools and a precise PL school (SE 0.107, 25 df): the
    Satterthwaite df of the calibrated test, 2v²/(2v²/d + SE²(τ̂²)), fell below 1 and the
    interval was ±10⁶ SD wide (the sweep's seed 28: −1,378,541 to +1,378,542). With
    τ²_placebo's uncertainty integrated out by its confidence distribution (as the prediction
    interval and shrinkage do) the interval lies between the school's own (τ² = 0) and the one at
    the upper end of τ²_placebo's own 95% interval, and is the mixture computed by scipy."""
    from pleval.heterogeneity.calibration import calibrate

    rng = np.random.default_rng(28)
    m = 16
    vp = rng.uniform(0.03, 0.1, m)
    yp = 0.8 * rng.normal(0, np.sqrt(vp))  # less spread than sampling error alone: τ̂² = 0
    y, v, d = 0.348, 0.107**2, 25.0
    c = calibrate(["S001"], [y], [[v]], [d], yp, np.diag(vp))
    t2_hi = c.placebo.tau2_ci[1]
    assert c.placebo.tau2 == 0 and t2_hi > 0
    assert 2 * v**2 / (2 * v**2 / d + c.placebo.tau2_se**2) < 1  # where the Satterthwaite df collapsed
    row = c.schools.iloc[0]
    half = (row["ci_high_calibrated"] - row["ci_low_calibrated"]) / 2
    q = stats.t.ppf(0.975, d)
    assert q * math.sqrt(v) < half < q * math.sqrt(v + t2_hi)
    assert row["ci_low_calibrated"] + half == pytest.approx(y, rel=1e-12)
    assert (row["p_calibrated"] < 0.05) == (row["ci_low_calibrated"] > 0)  # the test and the interval agree
    assert row["df_calibrated"] > 1 and row["se_calibrated"] == pytest.approx(math.sqrt(v))
    for col, val in _direct(y, v, d, 0.0, _draws(yp, np.diag(vp))).items():
        assert row[col] == pytest.approx(val, rel=1e-7), col


@pytest.mark.parametrize("delta", [0.0, 0.10])
def test_calibrated_tests_hold_their_size_with_a_small_placebo_set(delta):
    """Meta-level null simulation (no matching): 4 PL and 16 placebo schools whose estimates have
    sampling variances estimated on 25 df and school deviations of SD ``delta`` (0: where
    τ̂²_placebo is often 0 and the Satterthwaite df collapsed); no program effect. Any PL school
    flagged (BH) in at most 5% of studies up to Monte Carlo error (400 studies of this design:
    3.3% at δ = 0 and 4.5% at 0.10 with the mixture, 0.5% and 1.0% with the collapsed
    Satterthwaite df; docs/heterogeneity.md), every interval no wider than its widest
    component's (before, up to ±10⁶ SD)."""
    from pleval.heterogeneity._predictive import placebo_nodes
    from pleval.heterogeneity.calibration import calibrate

    reps = sim_reps(400, minimum=100)
    rng = np.random.default_rng(17 + int(100 * delta))
    k, m, d = 4, 16, 25.0
    flagged = 0
    for _ in range(reps):
        v, vp = rng.uniform(0.005, 0.05, k), rng.uniform(0.005, 0.05, m)
        vh, vph = v * rng.chisquare(d, k) / d, vp * rng.chisquare(d, m) / d
        y, yp = rng.normal(0, np.sqrt(v + delta**2)), rng.normal(0, np.sqrt(vp + delta**2))
        c = calibrate([f"s{i}" for i in range(k)], y, np.diag(vh), np.full(k, d), yp, np.diag(vph))
        s = c.schools
        flagged += bool((s["p_calibrated_adjusted"] < 0.05).any())
        widest = stats.t.ppf(0.975, d) * np.sqrt(vh + placebo_nodes(yp, np.diag(vph))[0][-1])  # the widest component's
        assert np.all(s["ci_high_calibrated"] - s["ci_low_calibrated"] <= 2 * widest * (1 + 1e-12))
    assert flagged / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), (flagged, reps)


def test_calibrated_p_values_hold_their_digits_in_the_tail():
    """A significant school's calibrated p rests on the top of τ²_placebo's confidence
    distribution. The mixture's nodes (a composite Simpson rule, fine in that tail) give p within
    2% of the integral ∫ p(τ²) dH(τ²) by scipy's quad down to p ≈ 10⁻⁵; 64 equal midpoints (before
    2026-12-04, first 400) put p = 2·10⁻⁴ 32% low and 4·10⁻⁵ 62% low."""
    from scipy import integrate

    from pleval.heterogeneity._unweighted import unweighted_q
    from pleval.heterogeneity.calibration import calibrated_tests
    from pleval.heterogeneity._predictive import placebo_nodes

    rng = np.random.default_rng(1)
    m = 12
    vp = rng.uniform(0.005, 0.03, m)
    A = rng.normal(0, 0.003, (m, m))
    Vp = np.diag(vp) + 0.3 * A @ A.T
    yp = rng.multivariate_normal(np.zeros(m), Vp + 0.01 * np.eye(m))
    uq = unweighted_q(yp, Vp)
    v, d = 0.015, 40.0
    ys = np.array([0.5, 0.7, 0.9, 1.1])
    got = calibrated_tests(ys, np.full(4, v), np.full(4, d), placebo_nodes(yp, Vp)[0], 0.0,
                           weights=placebo_nodes(yp, Vp)[1])["p_calibrated"]
    H = lambda t: float(uq.sf(t)[0])  # noqa: E731  (the confidence distribution's CDF)

    def p_at(t2, y):
        sc = math.sqrt(v + t2)
        return 2 * stats.t.sf(abs(y) / sc, d * (v + t2) ** 2 / v**2)

    for y, g in zip(ys, got):
        dH = lambda t: (H(t * (1 + 1e-6) + 1e-12) - H(t)) / (t * 1e-6 + 1e-12)  # noqa: E731
        want = p_at(0.0, y) * H(0.0) + integrate.quad(lambda t: p_at(t, y) * dH(t), 0, np.inf, limit=500,
                                                       epsrel=1e-9)[0]
        assert g == pytest.approx(want, rel=0.02), (y, g, want)


@pytest.mark.parametrize("method", ["propensity", "vcg"])
def test_rounds_code_their_text_columns_once_with_the_same_results(monkeypatch, method):
    """The rounds code the text columns their school effects read (subject, race, the school)
    once for their rows, and each round's school sample takes those codes (``_text_codes``):
    the same tables, round notes and covariances as when every round's sample hashes them (the
    path before), here with a mixed school, comparison rows without an outcome (a round's
    matched data fewer rows than the rounds'), rounds whose matched rows lack a covariate's
    variation (three comparison students of another race) and a round whose match fails; and no
    round hashes those columns again."""
    from pleval.heterogeneity import placebo
    from pleval.matching import results

    d = simulate_matched(effect=0.0, tau=0.0, seed=12, **SMALL).data
    pl = sorted(d.loc[d.treatment == 1, "school_id"].unique())[0]
    donor = sorted(d.loc[d.treatment == 0, "school_id"].unique())[0]
    moved = d.loc[d.school_id == donor, "student_id"].unique()[:20]
    d = d.assign(school_id=d.school_id.where(~d.student_id.isin(moved), pl))  # a mixed school
    comp = np.flatnonzero(d.treatment.to_numpy() == 0)
    race = np.where(d.treatment == 1, d.race, "white")
    race[comp[-3:]] = "black"  # the rounds' race: three students not white
    posttest = d.posttest.to_numpy().copy()
    posttest[comp[::53]] = np.nan  # rows validation keeps and each round's match leaves out
    d = d.assign(race=pd.array(race, dtype=d.race.dtype), posttest=posttest)
    kw = dict(n_placebo=40, per_round=8, seed=3, covariates=["pretest", "race"],
              match_options={"covariates": ["pretest", "female"], **({"k": 5} if method == "vcg" else {})})
    hashed = []
    real_factorize = results.factorize

    def spied(values, *a, **k):
        hashed.append(getattr(values, "name", None))
        return real_factorize(values, *a, **k)

    def played(text_codes):
        calls = []
        real_match = placebo._InMemoryRounds.match

        def third_fails(self, chunk):
            calls.append(1)
            if len(calls) == 3:
                raise DesignError("no round of this kind (made to fail)")
            return real_match(self, chunk)

        with monkeypatch.context() as mp:
            mp.setattr(placebo, "_text_codes", text_codes)
            mp.setattr(placebo._InMemoryRounds, "match", third_fails)
            mp.setattr(results, "factorize", spied)
            hashed.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlevalWarning)
                plan = placebo.plan_rounds(d, SAMPLE_COLUMNS, method, observed_given=True, **kw)
                return placebo.play_rounds(plan), set(hashed)

    new, hashed_new = played(placebo._text_codes)
    old, hashed_old = played(lambda rows, cols, known: {})
    pd.testing.assert_frame_equal(new.placebo, old.placebo, check_exact=True)
    pd.testing.assert_frame_equal(new.rounds, old.rounds)
    assert new.placebo_vcov.keys() == old.placebo_vcov.keys()
    for key in new.placebo_vcov:
        pd.testing.assert_frame_equal(new.placebo_vcov[key], old.placebo_vcov[key], check_exact=True)
    assert new.round_notes() == old.round_notes()
    rounds = new.rounds.groupby("round").first()
    assert rounds["failed"].str.contains("made to fail").sum() == 1
    left_out = rounds.loc[rounds["failed"] == "", "covariates_left_out"]
    assert 0 < (left_out == ("race",)).sum() < len(left_out)  # some rounds lack race's variation, some have it
    text = {"subject", "race", "school_id"}  # (VCG's match codes its keys, the subject among them, itself)
    assert hashed_old & text == (text if method == "propensity" else {"race"}) and not hashed_new & text


def test_rounds_take_what_the_analysis_match_hands_on_beside_its_fit(small, monkeypatch):
    """A placebo worker forked from the analysis's match (``match(..., _ids_coded=)``, with a free
    core) is handed, beside the student ids' coding, the fit's covariate patterns, the exact-match
    cells and the columns' codes of the match's rows: the rounds take them for their rows (no
    covariate pattern formed, race and subject not coded again) and give the same placebo tables
    as rounds that form them."""
    import pleval.matching as pm
    from pleval import _workers
    from pleval.data import validate
    from pleval.heterogeneity import placebo
    from pleval.matching import _design

    data, r = small
    v = validate(data, SAMPLE_COLUMNS)
    shared: dict = {}
    with monkeypatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        mp.setattr(_workers, "compute_threads", lambda n=None: 2)
        pm.match(v, SAMPLE_COLUMNS, "propensity", seed=3, _ids_coded=shared.update)
    assert {k[0] for k in shared} == {"ids", "patterns", "cells", "codes"}
    assert {k[1] for k in shared if k[0] == "codes"} >= {"race", "subject"}
    coded, patterns = [], []
    real_codes, real_patterns = _design.codes_and_levels, pm.design_patterns
    monkeypatch.setattr(_design, "codes_and_levels", lambda s, *a, **k: coded.append(getattr(s, "name", None))
                        or real_codes(s, *a, **k))
    monkeypatch.setattr(pm, "design_patterns", lambda *a, **k: patterns.append(1) or real_patterns(*a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        plan = placebo.plan_rounds(data, SAMPLE_COLUMNS, "propensity", n_placebo=20, per_round=8, seed=3, validated=v,
                                   reuse=shared, observed_given=True)
        got = placebo.play_rounds(plan).compare(r.observed)
    assert not patterns and not {"race", "subject"} & set(coded)
    pd.testing.assert_frame_equal(got.placebo, r.placebo, check_exact=True)
    pd.testing.assert_frame_equal(got.rounds, r.rounds)
    pd.testing.assert_frame_equal(got.comparison, r.comparison)
