"""Placebo schools: how varied would school estimates be with no program at all?

A PL school's matched estimate is the program's effect in that school *plus* the school's own
deviation from its comparisons (its staff, its students' growth, its neighbourhood), and
student-level standard errors cover neither the second part nor its spread across schools
(docs/architecture.md, *A single school's estimate*). Placebo schools measure it directly: comparison schools are analysed
exactly as if they were PL schools.

Procedure (:func:`placebo_schools`):

1. The PL students are removed from the data (they never serve as comparisons here). A school
   with both PL and comparison students (a *mixed* school) never plays placebo — it is not a
   school without the program — but its comparison students stay in the pool, as they are in
   the analysis's.
2. The comparison schools (those wholly comparison) are ranked by their mean pretest (then
   size) and dealt round-robin into rounds, so every round holds out schools from across the
   achievement range; the assignment depends on the data alone — not on a seed, the row
   order or how school ids are spelled — so the placebo figures are the same on every run.
   Each *round* takes the next
   ``per_round`` of them, marks them as pseudo-PL (treatment = 1) — so they are held out of
   the comparison pool while they play the part — and runs the same matching
   (:func:`pleval.match`, same method and options) and the same per-school estimate
   (:func:`~.school_effects.school_effects`, same covariates and SEs).
3. Rounds repeat until ``n_placebo`` placebo schools have an estimate (each school plays the
   part at most once). A covariate without variation in a round's matched rows is left out of
   that round's fits (it carries no information there); a round whose matching or school
   effects fail loses its own schools only (:meth:`PlaceboResult.round_notes`).

Comparison, per ``by`` group (e.g. subject), with the joint covariances of both sets of
estimates (:attr:`SchoolEffects.vcov`; block-diagonal across placebo rounds) — see
:mod:`.calibration` for the formulas:

* the between-school variance of the placebo estimates, τ̂²_placebo (Hedges' unweighted
  estimator with V, its SE and the interval from the exact distribution of the unweighted Q,
  which the noise of an estimated V does not inflate), beside τ̂²_PL — the first is what arises
  without any program;
* program heterogeneity ``τ̂²_program = max(0, τ̂²_PL − τ̂²_placebo)`` with a Q-profile CI
  (τ̂²_placebo as an offset), and its
  share of τ̂²_PL (``tau2_excess``/``share_excess``);
* a test that PL schools vary more than placebo schools: ``Q* = r'(V + τ̂²_placebo I)⁻¹r`` (GLS
  residuals) against χ²(k − 1) (approximate: τ̂²_placebo is treated as known);
* the share of placebo schools "significant" at α (raw): a direct false-positive rate for
  single-school verdicts (nominally α);
* placebo-calibrated PL school tests and intervals, ``SE_cal = √(V_ss + τ̂²_placebo)``, with
  the uncertainty of τ̂²_placebo integrated out by its confidence distribution (a mixture of t
  references; :func:`~.calibration.calibrated_tests`), adjusted across schools
  (``calibrated``), and the posterior probability that the program's effect in each school is
  negative.

By default every comparison school plays placebo once (``n_placebo`` = all of them), in rounds
of ``per_round`` so the comparison pool stays large. ``cap`` bounds that default: with more
comparison schools than ``cap``, the first ``cap`` of the round order play placebo — whole
rounds first, so they are spread over the pretest range as every round is, and chosen by the
data alone as the order is (:func:`pleval.estimate` caps at
:data:`pleval.estimate.PLACEBO_CAP` schools; docs/scale.md measures what the cap changes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, stats

from .._results import Frame, ResultMixin
from .._workers import release_free_memory as _release_free_memory
from .._workers import thread_map
from ..data import Columns, validate, with_binary_treatment
from ..errors import DataError, DesignError, PlevalError, PlevalWarning
from .calibration import Calibration, calibrate
from .school_effects import SchoolEffects, school_effects


@dataclass(frozen=True, repr=False)
class PlaceboResult(ResultMixin):
    """Result of :func:`placebo_schools` (see the module docstring).

    ``observed``: the PL schools' :class:`SchoolEffects`; ``placebo``: the placebo schools'
    table (columns of :data:`~.school_effects.TABLE_COLUMNS` plus ``round``);
    ``comparison``: one row per ``by`` group; ``calibrated``: PL schools with
    placebo-calibrated SEs; ``rounds``: which schools played placebo in each round, which
    comparison schools were used, the covariates left out of the round's fits for want of
    variation in its matched rows (``covariates_left_out``) and why a round has no estimates
    (``failed``; "" when it has); :meth:`round_notes` says both in sentences.
    """

    observed: SchoolEffects
    placebo: pd.DataFrame = Frame()
    comparison: pd.DataFrame = Frame()
    calibrated: pd.DataFrame = Frame()
    rounds: pd.DataFrame = Frame()
    by: tuple[str, ...]
    options: Mapping[str, object] = field(default_factory=dict)
    placebo_vcov: Mapping[object, pd.DataFrame] = Frame(default={})
    calibration: Mapping[object, Calibration] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.comparison.copy()

    def placebo_estimates(self, key=None) -> np.ndarray:
        """Placebo effect sizes of one ``by`` group (all of them without ``by``), e.g. for
        :func:`pleval.plots.forest` (``placebo=...``)."""
        t = self.placebo
        if self.by and key is not None:
            key = key if isinstance(key, tuple) else (key,)
            mask = np.ones(len(t), dtype=bool)
            for col, val in zip(self.by, key):
                mask &= (t[col] == val).to_numpy()
            t = t[mask]
        v = t["effect_size"].to_numpy(dtype=float)
        return v[np.isfinite(v)]

    def compare(self, observed: SchoolEffects) -> "PlaceboResult":
        """The same placebo schools against another analysis of PL schools (the placebo runs
        use only comparison schools, so they serve any analysis with the same settings)."""
        o = self.options
        comparison, calibrated, cal = _compare(observed, self.placebo, self.placebo_vcov, self.by, o["alpha"], o["level"],
                                               o["effect_options"].get("adjust", "bh"), o.get("hartung_knapp", True))
        return replace(self, observed=observed, comparison=comparison, calibrated=calibrated, calibration=cal)

    def extent(self) -> dict:
        """How many comparison schools there were, how many played placebo (and had an
        estimate), in how many rounds, and the cap on the default number (0: none), for the
        provenance and the report."""
        o = self.options
        return {"comparison_schools": int(o.get("n_comparison", len(self.rounds))),
                "placebo_schools": int(len(self.rounds)),
                "estimates": int(np.isfinite(self.placebo["effect_size"].to_numpy(dtype=float)).sum()),
                "rounds": int(self.rounds["round"].nunique()), "per_round": int(o["per_round"]),
                "cap": int(o.get("cap") or 0), "capped": bool(o.get("capped", False))}

    def round_notes(self) -> list[str]:
        """What the rounds left out, as sentences (none when nothing was): covariates without
        variation in a round's matched rows, left out of that round's fits, and rounds without
        estimates (their matching or school effects failed), whose schools are left out of the
        calibration while the other rounds' stand."""
        r = self.rounds
        if "failed" not in r or not ((r["failed"].to_numpy() != "").any()
                                     or any(map(len, r["covariates_left_out"].to_numpy()))):
            return []  # (the usual case: no table of the rounds to group)
        rounds = r.groupby("round", sort=True).agg(n=("placebo_school", "size"), left=("covariates_left_out", "first"),
                                                   failed=("failed", "first"))
        out = []
        for left, g in rounds[rounds["left"].map(len) > 0].groupby("left", sort=False):
            names = ", ".join(map(repr, left))
            one = len(left) == 1
            out.append(f"placebo {_rounds_text(g)}: covariate{'' if one else 's'} {names} "
                       f"{'has' if one else 'have'} no variation in the round's matched rows, so "
                       f"{'it is' if one else 'they are'} left out of the round's school fits (no information there: "
                       "each school's fit would drop a constant column); the analysis keeps "
                       f"{'it' if one else 'them'}")
        for why, g in rounds[rounds["failed"] != ""].groupby("failed", sort=False):
            out.append(f"placebo {_rounds_text(g)}: no estimates ({why}); those schools are left out of the "
                       f"placebo calibration, which rests on the {self.extent()['estimates']:,} placebo estimates "
                       "of the other rounds")
        return out

    def summary(self) -> str:
        x = self.extent()
        lines = [
            f"Placebo schools: {x['placebo_schools']} comparison schools analysed as if PL "
            f"({x['estimates']} estimates) in {x['rounds']} matching run(s), each held out of the comparison pool "
            "while playing the part" + (f" (capped: the first {x['cap']} of {x['comparison_schools']} comparison "
                                         "schools in the round order)" if x["capped"] else ""),
        ]
        for r in self.comparison.itertuples(index=False):
            d = r._asdict()
            key = ", ".join(str(d[b]) for b in self.by) if self.by else "all"
            if d["k_pl"] < 2:
                gkey = tuple(d[b] for b in self.by)
                c = self.calibration["all" if not self.by else (gkey[0] if len(gkey) == 1 else gkey)]
                lines += [f"[{key}]", *c.summary().splitlines()[1:]]
                continue
            lines += [
                f"[{key}]",
                f"  between-school SD (tau, effect size): PL schools {d['tau_pl']:.3f} (k = {d['k_pl']}); "
                f"placebo schools {d['tau_placebo']:.3f} (k = {d['k_placebo']}; {self.options.get('level', 0.95):.0%} "
                f"CI {math.sqrt(d['tau2_placebo_ci_low']):.3f} to {math.sqrt(d['tau2_placebo_ci_high']):.3f})",
                f"  SD of the estimates: PL {d['sd_pl']:.3f}, placebo {d['sd_placebo']:.3f}; mean placebo estimate "
                f"{d['mean_placebo']:.3f}",
                f"  program heterogeneity beyond the placebo level: tau_program = {math.sqrt(d['tau2_excess']):.3f} "
                f"({self.options.get('level', 0.95):.0%} CI {math.sqrt(d['tau2_program_ci_low']):.3f} to "
                f"{math.sqrt(d['tau2_program_ci_high']):.3f}; {100 * d['share_excess']:.0f}% of the PL between-school variance); "
                f"test PL vs placebo spread Q*({d['q_star_df']}) = {d['q_star']:.1f}, p = {d['p_star']:.3g} (approximate)",
                f"  placebo schools 'significant' at alpha = {d['alpha']:g}: {100 * d['placebo_significant_share']:.0f}% "
                f"(nominal {100 * d['alpha']:.0f}%): single-school verdicts from student-level SEs are "
                + ("over-confident" if d["placebo_significant_share"] > 2 * d["alpha"] else "about as reliable as stated"),
                f"  PL schools whose result exceeds the placebo spread: {d['calibrated_positive']} positive, "
                f"{d['calibrated_negative']} negative ({d['calibrated_adjustment']}-adjusted; with no program effect "
                f"about {d['calibrated_expected_by_chance_raw']:.1f} pass unadjusted by chance, and any school after "
                f"adjustment at most {100 * d['alpha']:.0f}% of the time)",
            ]
        return "\n".join(lines)


def _rounds_text(rounds: pd.DataFrame) -> str:
    """``round 3 (4 schools)`` or ``rounds 3, 7 (8 schools)``: rounds by number with their schools (``n``)."""
    nums = ", ".join(str(i) for i in rounds.index)
    return f"round{'s' if len(rounds) > 1 else ''} {nums} ({int(rounds['n'].sum())} school(s))"


def _school_arms(data: pd.DataFrame, school: str, treatment: str):
    """PL school ids (every school with a PL student) and comparison school ids (schools wholly
    comparison: only they play placebo; a mixed school's comparison students stay in the rounds'
    pool) and the school codes they are counted on: ``(pl, comp, codes, ids, is_pl)`` — each row's
    code of ``ids`` (the sorted school ids; −1: no school id, left out), and whether each school
    is PL. One coding of the school column, counted by ``np.bincount``. A row without a treatment
    (which validation drops, and counts) is left out as a row without a school id is."""
    t = pd.to_numeric(data[treatment], errors="coerce")
    if not t.isin([0, 1]).where(t.notna(), True).all():
        raise DataError(f"column {treatment!r} (treatment) must be 0/1 for placebo schools")
    known = t.notna().to_numpy()
    if known.all():
        codes, ids = pd.factorize(data[school], sort=True)
    else:
        codes = np.full(len(data), -1, dtype=np.intp)
        codes[known], ids = pd.factorize(data[school][known], sort=True)
        t = t.fillna(0.0)
    ok = codes >= 0
    k = codes if ok.all() else codes[ok]
    treated = np.bincount(k, weights=t.to_numpy(dtype=float) if ok.all() else t.to_numpy(dtype=float)[ok],
                          minlength=len(ids))
    ids = ids.to_numpy()
    is_pl = treated > 0
    return ids[is_pl], ids[~is_pl], codes, ids, is_pl


def _round_order(data: pd.DataFrame, school: str, score: str, per_round: int, coded=None) -> np.ndarray:
    """Comparison schools in the order the rounds take them: ranked by mean ``score`` (then
    number of rows) and dealt round-robin, so consecutive blocks of ``per_round`` spread over
    the score range. A function of the data only (no seed, row order or label spelling).
    ``coded``: ``(codes, ids, is_pl)`` of :func:`_school_arms` when ``data`` holds the PL schools
    too: their rows are left out by code, and the comparison schools grouped by their codes (the
    same groups, rows and order as by the ids, so the same means)."""
    x = pd.to_numeric(data[score], errors="coerce")  # numbers as the checks read them (a file's may be text)
    if coded is None:
        g = x.groupby(data[school], sort=True, observed=True)
        return deal(pd.DataFrame({"mean": g.mean(), "n": g.size()}), per_round)
    codes, ids, is_pl = coded
    keep = np.flatnonzero((codes >= 0) & ~is_pl[codes])
    g = x.iloc[keep].groupby(codes[keep], sort=True)
    stats = pd.DataFrame({"mean": g.mean(), "n": g.size()})
    return deal(stats.set_axis(pd.Index(ids[stats.index.to_numpy()], name=school)), per_round)


def deal(stats: pd.DataFrame, per_round: int) -> np.ndarray:
    """:func:`_round_order` from the schools' ``mean`` score and row count ``n`` (index: the
    school ids, sorted)."""
    ranked = stats.sort_values(["mean", "n"], kind="mergesort").index.to_numpy()
    n_rounds = -(-len(ranked) // per_round)
    pos = np.arange(len(ranked))
    return ranked[np.lexsort((pos, pos % n_rounds))]


class _InMemoryRounds:
    """Where the placebo rounds get their schools and matches: the student file in memory.
    :class:`pleval.pool.placebo.PoolRounds` is the same for a comparison pool given apart.
    ``keep``: further columns the rounds read beside the roles and the matching options' (the
    school effects'); ``reuse``: the ``_reuse`` store made by the analysis's own
    :func:`pleval.match` of ``validated`` — the student ids' factorization and hashed ranks and the
    columns' codes (:func:`pleval.matching.reuse_store`), or what its ``_ids_coded`` hands on (a
    worker forked before the match ended: with the fit's covariate patterns and the cells) — which
    the rounds take for their rows. ``labels``: the columns whose values name groups in the
    rounds' results (clusters, schools, by groups; default the student id, school and subject),
    held as validated (:func:`_rounds_rows`)."""

    def __init__(self, data: pd.DataFrame, columns: Columns, method: str, match_options: dict, validated=None,
                 keep=(), reuse: dict | None = None, labels=None):
        self.data, self.columns, self.method, self.match_options = data, columns, method, match_options
        self.validated, self.keep, self.reuse = validated, tuple(keep), reuse
        named = (columns.student_id, columns.school, columns.subject) if labels is None else labels
        self.labels = frozenset(x for x in named if x)
        self._coded = None  # schools()' coding of the school column (:func:`_school_arms`)
        self._last = False  # last_round() was called

    def schools(self) -> tuple[np.ndarray, np.ndarray]:
        """PL and comparison school ids (:func:`_school_arms`)."""
        pl, comp, *coded = _school_arms(self.data, self.columns.school, self.columns.treatment)
        self._coded = tuple(coded)
        return pl, comp

    def order(self, pl: np.ndarray, per_round: int) -> np.ndarray:
        """The comparison schools in round order; validates the data once for the rounds (not at
        all when ``validated``, the analysis's own :func:`pleval.data.validate` of ``data``, is
        given): its checks are row by row (and per student), so the comparison schools'
        validated rows are the same in every round, and each round only relabels the treatment.
        The rounds keep those rows with only the columns they read (:func:`_round_columns`)."""
        from ..matching import _positions, match  # designs layer: imported lazily, estimators above it
        from ..matching._design import narrow_codes

        c, school = self.columns, self.columns.school
        score = c.main_pretest or c.outcome
        coded = self._coded  # for these PL schools only
        if coded is not None and not np.array_equal(coded[1][coded[2]], pl):
            coded = None
        v = self.validated
        if v is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PlevalWarning)
                v = validate(self.data, c)
        cols = _round_columns(v.data.columns, c, self.match_options, self.keep)
        at = None if coded is None else _positions(self.data.index, v.data.index)  # the validated rows in data
        codes = None if at is None else coded[0][at]
        comparison = v.data[c.treatment].to_numpy() == 0  # the rounds' rows: every comparison student
        schools_coded = not (codes is None or (len(codes) and codes.min() < 0))  # (schools() coded every validated row)
        v = replace(v, data=_rounds_rows(v.data, comparison, cols, c.treatment, self.labels))
        if schools_coded:  # the school codes of schools() taken for the validated rows: no text hashed again
            codes, levels = codes[comparison], pd.Index(coded[1])
        else:
            codes, levels = pd.factorize(v.data[school])
        codes = narrow_codes(codes, len(levels))  # (held by the rounds)
        self._fake = lambda chunk: replace(v, data=v.data.assign(**{c.treatment: levels.isin(chunk)[codes].astype(int)}))
        self._match = match
        self._rows = v.data.index
        # the rounds' rows are the same: what depends on them alone is computed once (or taken from the analysis's match)
        store = {} if self.validated is None else dict(self.reuse or {})
        self.reuse = None
        text = [x for x in self.keep if x != c.student_id]
        self._text = _text_codes(v.data, text, {**_stored_codes(store, v.data, text),
                                                **({school: (codes, levels.to_numpy())} if schools_coded else {})})
        self._reuse: dict | None = store
        if coded is None:
            non_pl = self.data[[school, score]].loc[~self.data[school].isin(pl).to_numpy()]  # (the two columns read)
            return _round_order(non_pl, school, score, per_round)
        return _round_order(self.data, school, score, per_round, coded)

    def match(self, chunk: np.ndarray):
        """The match of one round (a :class:`~pleval.matching.MatchResult`): the schools
        ``chunk`` as pseudo-PL against the other comparison schools, with the analysis's matching."""
        from ..matching import _positions

        store = self._reuse
        if store is not None and self._last:  # the last round takes what the rounds shared; none is kept after it
            self._reuse = None
        m = self._match(self._fake(chunk), self.columns, self.method, **self.match_options, _reuse=store)
        same = m.data.index.equals(self._rows)  # (the rows the match kept: all, or those with an outcome ...)
        at = None if same else _positions(self._rows, m.data.index)
        if same or at is not None:
            for x, (k, levels) in self._text.items():  # the round's sample codes them as the analysis's does
                m.codes.setdefault(x, (k if same else k[at], levels))
        return m

    def last_round(self) -> None:
        """The next round is the last: it takes what the rounds shared and lets each part go as it
        is taken (:func:`pleval.matching.last_use`), so that the parts are freed during its match
        as the match's own arrays are; later rounds (if some school had no estimate) share none."""
        from ..matching import last_use

        self._last = True
        if self._reuse is not None:
            last_use(self._reuse)


def _rounds_rows(data: pd.DataFrame, keep: np.ndarray, cols: list, treatment: str, labels=frozenset()) -> pd.DataFrame:
    """``data.loc[keep, cols]``, the rounds' rows, as the rounds hold them through every round:
    the treatment column a placeholder of a byte a row (each round assigns its own in its place),
    and the integer columns with no value below 0 but ``labels`` (whose values name groups in the
    results: as validated) in the narrowest unsigned type that holds their values (0/1 indicators
    and grades: a byte a row instead of eight; the match codes them or casts them to float, and
    the school effects take integer covariates in their narrowest type, the same values either
    way: 10M rows, five such columns the school effects read, 0.34 GB → 43 MB held through the
    rounds)."""
    narrow = [x for x in cols if x != treatment and x not in labels and isinstance(data[x].dtype, np.dtype)
              and data[x].dtype.kind in "iu"]
    out = data.loc[keep, [x for x in cols if x != treatment]]
    for x in narrow:
        v = out[x].to_numpy()
        if len(v) and v.min() >= 0:
            out[x] = v.astype(np.min_scalar_type(v.max()))
    if treatment in cols:
        out.insert(cols.index(treatment), treatment, np.zeros(len(out), np.int8))
    return out


def _text_codes(rows: pd.DataFrame, cols, known: dict) -> dict:
    """``{column: (codes, levels)}``: the text columns (``pd.StringDtype``) among ``cols`` of the
    rounds' ``rows`` coded over their sorted levels (:func:`~pleval.matching._design.codes_and_levels`,
    narrowed as the match's own codes are: :func:`~pleval.matching._design.narrow_codes`), or as
    ``known`` gives them. Every round's match takes them for its rows
    (:class:`~pleval.matching.MatchResult`'s ``codes``, which its school sample reads), so the
    school effects of a round do not hash these columns again (1M rows: 12–25 ms a column a round)."""
    from ..matching._design import codes_and_levels, narrow_codes

    out = {}
    for x in dict.fromkeys(cols):
        if x in known:
            out[x] = known[x]
        elif x in rows.columns and isinstance(rows[x].dtype, pd.StringDtype):
            k, levels = codes_and_levels(rows[x])
            out[x] = (narrow_codes(k, len(levels)), levels)
    return out


def _stored_codes(store: dict, rows: pd.DataFrame, cols) -> dict:
    """``{column: (codes, levels)}`` of the text columns among ``cols`` of ``rows`` (the rounds'
    rows) whose codes over sorted levels the analysis's match made for rows that include these
    (``store``'s ``("codes", column)`` entries, :func:`pleval.matching.reuse_store`, which are
    taken out of it): those of :func:`_text_codes` for these rows, gathered instead of hashed."""
    from ..matching import _codes_of, _positions

    out, at = {}, {}
    for key in [k for k in store if isinstance(k, tuple) and k[0] == "codes"]:
        index, value = store.pop(key)
        x = key[1]
        if x not in cols or x not in rows.columns or not isinstance(rows[x].dtype, pd.StringDtype):
            continue
        if id(index) not in at:
            at[id(index)] = (index, _positions(index, rows.index))  # (the index held: its id stays its own)
        pos = at[id(index)][1]
        if pos is not None:
            out[x] = _codes_of(value, pos)
    return out


def _round_columns(names: pd.Index, columns: Columns, match_options: Mapping, keep) -> list:
    """The columns of ``names`` the rounds read: those of the roles, those the matching options
    name (a name, a list of names, or a mapping's keys) and ``keep``, in the data's order."""
    named = {n for role in columns.roles().values() for n in role} | set(keep)
    for value in match_options.values():
        if isinstance(value, str):
            named.add(value)
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            named.update(x for x in value if isinstance(x, str))
    return [n for n in names if n in named]


def placebo_schools(
    data: pd.DataFrame,
    columns: Columns,
    method: str = "propensity",
    *,
    n_placebo: int | None = None,
    per_round: int | None = None,
    observed: SchoolEffects | None = None,
    match_options: Mapping | None = None,
    covariates: Sequence[str] | None = None,
    cluster: str | None = "default",
    by: str | Sequence[str] | None = "default",
    sd="pooled",
    vcov: str | None = None,
    cr2: str = "clubsandwich",
    method_meta: str = "REML",
    adjust: str = "bh",
    alpha: float = 0.05,
    level: float = 0.95,
    seed: int = 0,
    hartung_knapp: bool = True,
    rounds=None,
    cap: int | None = None,
    validated=None,
    matched=None,
) -> PlaceboResult:
    """Analyse comparison schools as if they were PL schools (see the module docstring).

    Parameters
    ----------
    data, columns, method, match_options
        The *student* file, its :class:`pleval.data.Columns` (``school`` required) and the
        matching method and options passed to :func:`pleval.match` — the same as for the real
        analysis.
    n_placebo : int, optional
        Placebo schools wanted (default: every comparison school, each once, up to ``cap``).
    per_round : int, optional
        Placebo schools per matching run (default: the number of PL schools, at most a quarter
        of the comparison schools, so the pool stays large).
    observed : SchoolEffects, optional
        The PL schools' effects; computed here with the same settings if not given.
    covariates, cluster, by, sd, vcov, cr2, method_meta
        :func:`~.school_effects.school_effects` options for both analyses (defaults: the
        pretests as covariates; clusters on the student id, which covers reused comparisons;
        by subject; the CR2 form with working model Φ = I).
    adjust
        Multiplicity adjustment of the calibrated p-values ("bh", default, or "holm"/"bonferroni").
    alpha, level, seed
        Significance level, confidence level, and the seed passed to matching (used only by
        random matching orders; the placebo rounds themselves involve no randomness).
    hartung_knapp
        Hartung–Knapp SE of the pooled mean in the placebo-informed prediction interval.
    rounds
        Where the schools and each round's match come from (default: ``data`` in memory); a
        :class:`pleval.pool.placebo.PoolRounds` re-matches against a comparison pool given apart
        (``observed`` is then required).
    cap : int, optional
        Without ``n_placebo``: at most this many placebo schools, the first of the round order
        (default: no cap).
    validated : :class:`pleval.data.Validated`, optional
        ``validate(data, columns)`` when the caller has it (``data`` with a 0/1 treatment): the
        rounds take its rows instead of validating ``data`` again.
    matched : :class:`pleval.matching.MatchResult`, optional
        The analysis's own ``pleval.match(validated, columns, method, **match_options)``: the
        rounds take its student ids' factorization and hashed ranks for their rows instead of
        hashing the ids again (:func:`pleval.matching.reuse_store`).
    """
    plan = plan_rounds(data, columns, method, n_placebo=n_placebo, per_round=per_round, match_options=match_options,
                       covariates=covariates, cluster=cluster, by=by, sd=sd, vcov=vcov, cr2=cr2, method_meta=method_meta,
                       adjust=adjust, alpha=alpha, level=level, seed=seed, hartung_knapp=hartung_knapp, rounds=rounds,
                       cap=cap, observed_given=observed is not None, validated=validated, matched=matched)
    if observed is None:
        observed = plan.observed()
    return play_rounds(plan).compare(observed)


@dataclass
class RoundsPlan:
    """What :func:`placebo_schools` checked and resolved before its rounds (:func:`plan_rounds`):
    where the rounds come from, the school-effect settings (``eff_kw``, shared by the PL schools'
    own analysis), the PL and comparison schools, how many play placebo and how many per round."""

    data: pd.DataFrame
    columns: Columns
    method: str
    match_options: dict
    rounds: object
    eff_kw: dict
    sample_cols: list
    merge: bool
    keys: set
    by: tuple
    pl: np.ndarray
    comp: np.ndarray
    per_round: int
    n_placebo: int
    cap: int | None
    capped: bool
    seed: int
    alpha: float
    level: float
    hartung_knapp: bool

    def observed(self) -> SchoolEffects:
        """The PL schools' effects with the rounds' matching and settings (when not given)."""
        from ..matching import match

        m = match(self.data, self.columns, self.method, **self.match_options)
        return school_effects(_school_sample(m, self.sample_cols, self.merge, self.keys), **self.eff_kw)


def plan_rounds(data, columns, method="propensity", *, n_placebo=None, per_round=None, match_options=None,
                covariates=None, cluster="default", by="default", sd="pooled", vcov=None, cr2="clubsandwich",
                method_meta="REML", adjust="bh", alpha=0.05, level=0.95, seed=0, hartung_knapp=True, rounds=None,
                cap=None, observed_given: bool = False, validated=None, matched=None, reuse=None) -> RoundsPlan:
    """:func:`placebo_schools`' checks and defaults (its arguments; ``observed_given``: whether
    the PL schools' effects are given; ``reuse``: in place of ``matched``, its ``_reuse`` store
    of the student ids' coding, :class:`_InMemoryRounds`), raising its ``DataError``/``DesignError``;
    nothing is matched yet."""
    if not isinstance(columns, Columns):
        raise DataError("columns must be a pleval.data.Columns naming the roles (school=... is required)")
    school = columns.school
    if not school:
        raise DataError("placebo schools need the school column: Columns(..., school='school_id')")
    for col in (school, columns.treatment):
        if col not in data.columns:
            raise DataError(f"column {col!r} is not in the data")
    data, columns = with_binary_treatment(data, columns)
    match_options = dict(match_options or {})
    match_options.setdefault("seed", seed)
    covariates = tuple(columns.pretest) if covariates is None else tuple(covariates)
    cluster = columns.student_id if cluster == "default" else cluster
    by = (columns.subject,) if by == "default" and columns.subject else (() if by in ("default", None) else by)
    by = (by,) if isinstance(by, str) else tuple(by)
    eff_kw = dict(
        stratum="_pl_school", weight="_weight", treatment=columns.treatment, outcome=columns.outcome,
        covariates=covariates, cluster=cluster, school=school, by=by, sd=sd, vcov=vcov, cr2=cr2, method=method_meta, adjust=adjust, alpha=alpha, level=level,
    )
    sample_cols = [columns.treatment, columns.outcome, *covariates, cluster, school, *by]
    keys = {cluster, school, *by} - set(covariates)  # only grouped on: categorical in the sample
    merge = vcov is None or vcov in ("CR2", "CR1", "CR0", "classical")
    if merge:  # copies within one school's sets merged (docs/scale.md)
        eff_kw.update(weight2="_weight2", copies="_copies")

    if rounds is None:
        from ..matching import reuse_store

        rounds = _InMemoryRounds(data, columns, method, match_options, validated, keep=sample_cols,
                                 reuse=reuse_store(matched) if matched is not None else reuse, labels=keys)
    elif not observed_given:
        raise DataError("placebo schools from a comparison pool need the PL schools' effects (observed=)")
    pl, comp = rounds.schools()
    if len(comp) < 4:
        raise DesignError(f"placebo schools need at least 4 comparison schools; the data have {len(comp)}")
    n_pl = max(len(pl), 2)
    if per_round is None:
        per_round = max(2, min(n_pl, len(comp) // 4))
    capped = n_placebo is None and bool(cap) and len(comp) > int(cap)
    if n_placebo is None:
        n_placebo = min(int(cap), len(comp)) if capped else len(comp)
    if per_round < 1 or n_placebo < 2:
        raise DataError("per_round must be >= 1 and n_placebo >= 2")
    if per_round > len(comp) - 2:
        raise DataError(f"per_round ({per_round}) leaves too few comparison schools ({len(comp)}) in the pool")
    return RoundsPlan(data, columns, method, match_options, rounds, eff_kw, sample_cols, merge, keys, by, pl, comp,
                      per_round, n_placebo, cap, capped, seed, alpha, level, hartung_knapp)


def play_rounds(plan: RoundsPlan, sd=None) -> PlaceboResult:
    """The placebo rounds of ``plan``: a :class:`PlaceboResult` without the PL schools (its
    ``observed`` None, no comparison yet); :meth:`PlaceboResult.compare` adds them. ``sd``: a
    callable giving the school effects' SD in place of the plan's, called once the first round is
    matched (a worker process running the rounds beside the main analysis receives it from there).
    Before it is called (where a worker would wait for the SD) the later rounds are matched as
    well, as they would be if every school of the rounds before had an estimate (the school
    samples of every round are then held at once; a worker's rows are at most a few million); a
    round matched ahead whose schools a missing estimate changes is matched again."""
    school, treatment = plan.columns.school, plan.columns.treatment
    eff_kw = plan.eff_kw
    order = plan.rounds.order(plan.pl, plan.per_round)
    tables, round_rows, vcovs = [], [], []

    def matched(start: int, done: int):
        """The round from place ``start`` of the order with ``done`` estimates so far: its
        schools and matched sample."""
        chunk = order[start : start + min(plan.per_round, plan.n_placebo - done)]
        if (start, len(chunk)) in ahead:
            return ahead.pop((start, len(chunk)))
        if not start:  # (between rounds the next round's arrays take the place of the last's)
            _release_free_memory()
        if (start + len(chunk) >= len(order) or len(chunk) >= plan.n_placebo - done) and hasattr(plan.rounds, "last_round"):
            plan.rounds.last_round()  # the last round, unless some school has no estimate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            try:
                return chunk, _school_sample(plan.rounds.match(chunk), plan.sample_cols, plan.merge, plan.keys)
            except (DataError, DesignError) as exc:  # (e.g. separation in this round's propensity model)
                return chunk, exc

    ahead: dict = {}  # (start, schools) -> a round matched while the SD was awaited
    done, start, rnd = 0, 0, 0
    while done < plan.n_placebo and start < len(order):
        chunk, m = matched(start, done)
        ahead = {key: r for key, r in ahead.items() if key[0] > start}  # (one taken the place of another: let go)
        if sd is not None:
            at, got = start + len(chunk), done + len(chunk)
            while got < plan.n_placebo and at < len(order):  # the next rounds, as if each school had an estimate
                later = matched(at, got)
                ahead[(at, len(later[0]))] = later
                at, got = at + len(later[0]), got + len(later[0])
                del later
            eff_kw, sd = {**eff_kw, "sd": sd()}, None
        start += len(chunk)
        res = m if isinstance(m, PlevalError) else _round_effects(m, eff_kw)
        used = () if isinstance(m, PlevalError) else tuple(_used_schools(m, school, treatment))
        del m  # the round's matched sample is freed before the next round is matched
        failed = str(res) if isinstance(res, PlevalError) else ""  # this round's schools only: the others stand
        left_out = () if failed else tuple(res.options["covariates_left_out"])
        round_rows += [{"round": rnd, "placebo_school": s, "comparison_schools_used": used,
                        "covariates_left_out": left_out, "failed": failed} for s in chunk]
        if failed:
            rnd += 1
            continue
        t = res.table.copy()
        t.insert(0, "round", rnd)
        tables.append(t)
        vcovs.append(res.vcov)
        del res
        done += t["school"][np.isfinite(t["effect_size"].to_numpy(dtype=float))].nunique()  # schools with an estimate
        rnd += 1
    del ahead
    if not tables:
        raise DesignError(f"every placebo round failed ({rnd} round(s)); the first: {round_rows[0]['failed']}")
    placebo = pd.concat(tables, ignore_index=True)
    if done < plan.n_placebo:
        warnings.warn(f"only {done} placebo schools could be estimated (asked for {plan.n_placebo})", PlevalWarning,
                      stacklevel=2)

    placebo_vcov = {key: _block_diag([v[key] for v in vcovs if key in v]) for key in dict.fromkeys(k for v in vcovs for k in v)}
    return PlaceboResult(
        observed=None,
        placebo=placebo,
        comparison=pd.DataFrame(),
        calibrated=pd.DataFrame(),
        rounds=pd.DataFrame(round_rows),
        by=plan.by,
        placebo_vcov=placebo_vcov,
        options=dict(match_method=plan.method, match_options=plan.match_options, n_placebo=plan.n_placebo,
                     per_round=plan.per_round, n_comparison=len(plan.comp), cap=plan.cap, capped=plan.capped,
                     seed=plan.seed, effect_options={k: v for k, v in eff_kw.items() if k != "by"}, alpha=plan.alpha,
                     level=plan.level, hartung_knapp=plan.hartung_knapp),
    )



def _round_effects(m, eff_kw: dict) -> SchoolEffects | PlevalError:
    """One round's school effects, :func:`~.school_effects.school_effects` of its matched sample
    ``m`` with a covariate that has no variation in the round's rows left out (it carries no
    information there: every school's fit would drop it), or the error that stopped them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlevalWarning)
            return school_effects(m, **eff_kw, leave_out_constant=True)
    except (DataError, DesignError) as exc:
        return exc


def _school_sample(m, columns, merge: bool, keys=()) -> pd.DataFrame:
    """A round's matched sample for :func:`~.school_effects.school_effects`: each distinct
    (PL school, matched row) pair once (:meth:`pleval.matching.MatchResult.school_sample`, the
    text ``keys`` as Categoricals; lazily, its columns gathered as they are read), or every copy
    for HC SEs (which give each copy its own term)."""
    return m.school_sample([c for c in columns if c], categorical=keys, lazy=True) if merge else m.matched


def _used_schools(m, school: str, treatment: str) -> np.ndarray:
    """The schools of a round's comparison rows, in order of first appearance in its matched
    sample ``m``: from a school sample's school codes and narrow treatment (no school id and no
    8-byte treatment gathered per pair: at 10M rows the round's peak held both), as
    ``pd.unique(m[school][m[treatment] == 0])``."""
    codes = t = None
    if hasattr(m, "codes") and hasattr(m, "integers"):  # a SchoolSample
        codes, values = m.codes(school)
        t = m.integers(treatment)
    if t is None or (len(codes) and codes.min() < 0):  # a frame, or a missing school id
        return pd.unique(m[school].to_numpy()[m[treatment].to_numpy() == 0])
    return values[pd.unique(codes[t == 0])]


def _block_diag(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Block-diagonal covariance of estimates from separate runs (labels kept)."""
    labels = [lab for f in frames for lab in f.index]
    return pd.DataFrame(linalg.block_diag(*[f.to_numpy() for f in frames]), index=labels, columns=labels)


def _compare(observed: SchoolEffects, placebo: pd.DataFrame, placebo_vcov: Mapping, by, alpha, level, adjust,
             hartung_knapp: bool = True):
    rows, cal, results = [], [], {}
    obs_groups = {(): observed.table} if not by else {
        (k if isinstance(k, tuple) else (k,)): g for k, g in observed.table.groupby(list(by), sort=False)
    }
    groups, inputs = [], []  # (key, gkey, PL rows, placebo rows) and calibrate's arguments, of each group with estimates
    for key, obs in obs_groups.items():
        plc = placebo
        for col, val in zip(by, key):
            plc = plc[plc[col] == val]
        o = obs[np.isfinite(obs["effect_size"].to_numpy(dtype=float))]
        p = plc[np.isfinite(plc["effect_size"].to_numpy(dtype=float))]
        gkey = "all" if not by else (key[0] if len(key) == 1 else key)
        if len(o) < 1 or len(p) < 2:
            warnings.warn(f"{key}: no placebo-calibrated figures: {len(o)} PL and {len(p)} placebo school estimates "
                          "(at least 1 PL and 2 placebo estimates are needed)", PlevalWarning, stacklevel=3)
            continue
        groups.append((key, gkey, o, p))
        inputs.append(dict(labels=o["school"].to_numpy(), y=o["effect_size"].to_numpy(), V=_group_vcov(observed.vcov, gkey, o),
                           df=o["df"].to_numpy(), placebo_y=p["effect_size"].to_numpy(),
                           placebo_V=_group_vcov(placebo_vcov, gkey, p), V_raw=_raw_vcov(observed, gkey, o),
                           eigen=_pooled_eigen(observed, gkey, o), comparison_schools=o.get("comparison_schools"),
                           placebo_comparison_schools=p.get("comparison_schools")))
    # The groups' calibrations (each a few eigen-decompositions of its schools' covariance) in
    # threads when a core is free: each computed as alone, taken in the groups' order
    calibrations = thread_map(lambda kw: calibrate(**kw, alpha=alpha, adjust=adjust, level=level,
                                                   hartung_knapp=hartung_knapp), inputs)
    del inputs
    for (key, gkey, o, p), c in zip(groups, calibrations):
        results[gkey] = c
        frame = c.schools.copy()
        for i, (b, val) in enumerate(zip(by, key)):
            frame.insert(i, b, val)
        cal.append(frame)
        y = o["effect_size"].to_numpy(dtype=float)
        sig = p["pvalue"].to_numpy(dtype=float) < alpha
        d = c.as_dict()
        if c.pl is None:  # one PL school: no spread among PL schools to compare (Calibration.note)
            spread = {"mean_pl": float(y[0]), "sd_pl": math.nan, "tau_pl": math.nan, "tau2_excess": math.nan,
                      "share_excess": math.nan, "q_star": math.nan, "q_star_df": 0, "p_star": math.nan}
        else:
            q_star = c.q_star  # (from calibrate's decomposition of V)
            spread = {"mean_pl": c.pl.estimate, "sd_pl": float(np.std(y, ddof=1)), "tau_pl": c.pl.tau,
                      "tau2_excess": c.tau2_program,
                      "share_excess": c.tau2_program / c.pl.tau2 if c.pl.tau2 > 0 else 0.0,
                      "q_star": q_star, "q_star_df": c.pl.k - 1, "p_star": float(stats.chi2.sf(q_star, c.pl.k - 1))}
        rows.append(
            {
                **dict(zip(by, key)),
                **d,
                **spread,
                "mean_placebo": c.placebo.estimate,
                "sd_placebo": float(np.std(p["effect_size"], ddof=1)),
                "alpha": alpha,
                "placebo_significant_share": float(sig.mean()),
            }
        )
    comparison = pd.DataFrame(rows)
    calibrated = pd.concat(cal, ignore_index=True) if cal else pd.DataFrame()
    return comparison, calibrated, results


def _raw_vcov(effects, key, rows: pd.DataFrame) -> np.ndarray | None:
    """The unshrunk joint covariance of ``rows``' schools (:attr:`SchoolEffects.vcov_raw`), None
    when none is stored."""
    return _group_vcov(effects.vcov_raw, key, rows) if key in effects.vcov_raw else None


def _pooled_eigen(effects, key, rows: pd.DataFrame) -> tuple | None:
    """The pooling's eigen-decomposition of the group's covariance (:attr:`SchoolEffects.vcov_eigen`)
    when ``rows`` are its schools in its order (the matrix :func:`_group_vcov` takes is then the
    pooled one, entry for entry), else None."""
    eig, V = effects.vcov_eigen.get(key), effects.vcov.get(key)
    if eig is None or V is None or not np.array_equal(V.index.to_numpy(), rows["school"].to_numpy()):
        return None
    return eig


def _group_vcov(vcovs: Mapping, key, rows: pd.DataFrame) -> np.ndarray:
    """The joint covariance of ``rows``' schools (diagonal ``es_se²`` when none is stored). A
    school the stored matrix lacks — the only school of its placebo round (no pooling there, so
    no matrix), independent of the other rounds' — takes its ``es_se²`` on the diagonal."""
    V = vcovs.get(key) if vcovs else None
    if V is None:
        return np.diag(rows["es_se"].to_numpy(dtype=float) ** 2)
    lab = rows["school"].to_numpy()
    have = V.index.get_indexer(lab) >= 0
    if have.all():
        return V.loc[lab, lab].to_numpy()
    out = np.diag(rows["es_se"].to_numpy(dtype=float) ** 2)
    at = np.flatnonzero(have)
    out[np.ix_(at, at)] = V.loc[lab[have], lab[have]].to_numpy()
    return out


__all__ = ["placebo_schools", "PlaceboResult"]
