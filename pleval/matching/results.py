"""Results of matching: :class:`MatchResult` (and :class:`EffectTable` for by-group effects).

Every method reduces to the same structure (MatchIt's idea): rows of the analysed data,
each with a matched-set id and an analysis weight. The matched sample is in *matched-set
long format*: the original columns plus

* ``_set`` — matched-set id (one set per matched treated row; ``-1`` for weighting),
* ``_weight`` — 1 for treated rows; each set's comparisons sum to 1 (ATT),
* ``_pl_school`` — the school of the treated row anchoring the set (NaN for weighted
  comparison rows, which belong to no set);
* ``_subclass`` — for subclassification and coarsened exact matching, the subclass (stratum)
  of the row (those methods have no one-treated sets: ``_set`` is ``-1``).

A comparison row reused by several sets appears once per set. The analyses do not form this
frame: they run on the *distinct* matched rows (:meth:`MatchResult.distinct`), each once with
its copies' weights summed, squared weights summed and copies counted, which gives the same
estimates (docs/scale.md); where the set structure itself matters (Rosenbaum bounds) it is read
from ``rows``/``set_id``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from .._results import Effect, Frame, ResultMixin
from .._text import pl_left_out
from ..data import Columns
from ..errors import DataError, DesignError, PlevalWarning
from ..inference.robust import check_conventions, default_vcov
from ._design import codes_and_levels, factorize, first_appearance_pairs, is_categorical
from .balance import Balance, balance
from .effect import effect_design, mergeable, regression_effect
from .propensity import DEFAULT_CALIPER, PropensityModel

AT_TIE_CAP = "treated whose set reached the tie cap"
"""The diagnostic counting the sets of ``max(tie_cap, k)`` comparisons: those the cap may have
cut, whose tied members beyond the strictly closer ones are chosen by the hashed student ids."""


def set_size_diagnostics(n_matched: np.ndarray, k: int, *, ties: bool, replace: bool, tie_cap) -> dict:
    """Nearest-neighbour matching's counts of sets by size (``n_matched``: each PL row's matches):
    fewer than k, more than k (ties kept, with replacement) and at the tie cap (:data:`AT_TIE_CAP`;
    which tied comparisons fill them depends on the student ids' hash). The in-memory and the pool
    engines report the same."""
    out = {"treated with fewer than k matches": int(((n_matched > 0) & (n_matched < k)).sum())}
    if ties and replace:
        out["treated with more than k matches (ties kept)"] = int((n_matched > k).sum())
    if tie_cap:
        out[AT_TIE_CAP] = int((n_matched >= max(tie_cap, k)).sum())
    return out


@dataclass(frozen=True, repr=False)
class EffectTable(ResultMixin):
    """Effects by group (e.g. subject × grade): ``effects`` maps a group key tuple to an Effect;
    ``left_out`` maps the key of each group whose effect could not be estimated (too few rows
    for its standard error, say) to the reason."""

    by: tuple[str, ...]
    effects: dict
    left_out: dict = field(default_factory=dict)

    def __getitem__(self, key) -> Effect:
        return self.effects[key if isinstance(key, tuple) else (key,)]

    def __iter__(self):
        return iter(self.effects.items())

    def __len__(self):
        return len(self.effects)

    def to_frame(self) -> pd.DataFrame:
        """One row per group; a group left out is a row of missing numbers with its reason in a
        ``not_estimated`` column (present only when a group is left out)."""
        parts = []
        for key, eff in self.effects.items():
            f = eff.to_frame()
            for name, val in zip(self.by, key):
                f[name] = val
            parts.append(f)
        out = pd.concat(parts, ignore_index=True)
        if self.left_out:
            out["not_estimated"] = ""
            out = out.astype({c: "Int64" for c in out.columns if out[c].dtype.kind in "iu"})  # counts stay whole
            gone = pd.DataFrame([dict(zip(self.by, key), not_estimated=why) for key, why in self.left_out.items()])
            out = pd.concat([out, gone.astype({b: out[b].dtype for b in self.by})], ignore_index=True)
        return out[list(self.by) + [c for c in out.columns if c not in self.by]]

    def summary(self) -> str:
        def name(key):
            return ", ".join(f"{b} = {v}" for b, v in zip(self.by, key))

        return "\n\n".join([*(f"[{name(key)}]\n{eff.summary()}" for key, eff in self.effects.items()),
                            *(f"[{name(key)}] not estimated: {why}" for key, why in self.left_out.items())])


class _LongColumn:
    """A field of the long format (``rows``, ``set_id``, ``weight``): given, or, when ``None``
    is given, formed with the two others from ``MatchResult.sets`` when first read."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            raise AttributeError(self.name)  # a field without a default
        if self.name not in obj.__dict__:
            obj.__dict__.update(zip(("rows", "set_id", "weight"), obj.sets.long()))
        return obj.__dict__[self.name]

    def __set__(self, obj, value):
        if value is not None:
            obj.__dict__[self.name] = value


def _groups(data: pd.DataFrame, rows: np.ndarray, by: tuple, codes: dict) -> list[tuple[tuple, np.ndarray]]:
    """``(key, positions in rows)`` of each group of ``data.iloc[rows]`` by the columns ``by``, in
    sorted key order, rows with a missing key left out (``groupby(by, sort=True).indices``). One
    coded column (``codes[b]``: codes over its sorted levels, -1 missing): from its codes at
    ``rows``, without gathering or hashing its values."""
    if len(by) == 1 and by[0] in codes:
        k, levels = codes[by[0]]
        k = k[rows]
        return [((levels[g],), np.flatnonzero(k == g)) for g in np.flatnonzero(np.bincount(k[k >= 0], minlength=len(levels)))]
    keys = data.iloc[rows, data.columns.get_indexer(list(by))]
    return [(key if isinstance(key, tuple) else (key,), idx) for key, idx in keys.groupby(list(by), sort=True).indices.items()]


@dataclass(frozen=True, repr=False)
class MatchResult(ResultMixin):
    """A matched (or weighted) design, ready for balance checks and effect estimation.

    ``data`` are the rows eligible for matching (after the exclusions listed in
    ``exclusions``); ``rows``/``set_id``/``weight`` describe the matched sample by position in
    ``data`` and ``set_school`` is the school of each set's treated row; ``unmatched`` lists
    treated rows with no match and why. ``sets`` (VCG: :class:`~pleval.matching.exact.VCGSample`)
    is the matcher's own form of the sets, when it has one: ``rows``/``set_id``/``weight`` may
    then be given as ``None`` and are written from it when first read, and the distinct rows
    come from it directly (``sets.distinct``), without the long format. ``factorized`` holds
    ``pd.factorize`` of text columns of ``data`` already computed (matching leaves the student
    id's, factorized for the tie cap's hashed ranks), which :meth:`school_sample` reuses;
    ``id_ranks`` the hashed rank of each of those distinct ids (with the tie cap), which a later
    match of some of ``data``'s rows takes (:func:`pleval.matching.reuse_store`).
    ``excluded_pl``: the PL rows among the exclusions made by matching itself (not validation's),
    by subject (:func:`pleval.data.pl_rows_frame`; None where the matcher does not count them).
    """

    data: pd.DataFrame = Frame()
    columns: Columns
    method: str
    rows: np.ndarray = _LongColumn()
    set_id: np.ndarray = _LongColumn()
    weight: np.ndarray = _LongColumn()
    set_school: np.ndarray
    unmatched: pd.DataFrame = Frame()
    exclusions: pd.DataFrame = Frame()
    options: dict
    variables: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    strata: tuple[str, ...] = ()
    propensity: PropensityModel | None = None
    diagnostics: dict = field(default_factory=dict)
    subclass: np.ndarray | None = None
    codes: dict = field(default_factory=dict, repr=False, compare=False)
    factorized: dict = field(default_factory=dict, repr=False, compare=False)
    id_ranks: np.ndarray | None = field(default=None, repr=False, compare=False)
    sets: object = field(default=None, repr=False, compare=False)
    excluded_pl: pd.DataFrame | None = Frame(default=None)

    # --- the matched sample -------------------------------------------------------------
    @Frame
    def matched(self) -> pd.DataFrame:
        """The matched sample in matched-set long format (see the module docstring)."""
        out = self.data.iloc[self.rows].copy()
        out["_set"] = self.set_id
        out["_weight"] = self.weight
        out["_pl_school"] = self.pl_school
        if self.subclass is not None:
            out["_subclass"] = self.subclass
        return out

    @cached_property
    def _distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, weight, weight2, copies)``: the distinct matched rows (positions in ``data``,
        ascending) and per distinct row the sum of its copies' weights, of their squares, and
        the number of copies."""
        n = len(self.data)
        if getattr(self.sets, "distinct", None) is not None:  # a matcher's sets that give them directly (VCG)
            return self.sets.distinct(n)
        return distinct_rows(self.rows, self.weight, n)

    def row_weights(self) -> np.ndarray:
        """Each row of ``data``'s matched weight summed over its sets (0 outside the matched
        sample): ``np.bincount(rows, weights=weight, minlength=len(data))``, taken from the
        distinct rows' sums (the same bincount) when they are at hand, so that a long format let
        go is not formed again for it (a matcher's own sums, VCG's, are not taken)."""
        n = len(self.data)
        if "_distinct" in self.__dict__ and getattr(self.sets, "distinct", None) is None:
            rows, w, _, _ = self._distinct
            out = np.zeros(n)
            out[rows] = w
            return out
        return np.bincount(self.rows, weights=self.weight, minlength=n)

    def let_go_long(self) -> None:
        """Drop the long format (``rows``, ``set_id``, ``weight``) where ``sets`` forms it again
        when next read: for a caller done with it for a while (the school sample formed, before
        the school effects and the placebo rounds, at 10M rows 0.58 GB)."""
        if self.sets is not None:
            for name in ("rows", "set_id", "weight"):
                self.__dict__.pop(name, None)

    def distinct(self, columns=None) -> pd.DataFrame:
        """The matched sample with each distinct row once (in the order of ``data``): its
        ``columns`` (default all) plus ``_weight`` (the sum of its copies' weights), ``_weight2``
        (the sum of their squares) and ``_copies`` (how many sets it serves)."""
        rows, w, w2, cp = self._distinct
        cols = list(self.data.columns) if columns is None else list(dict.fromkeys(c for c in columns if c))
        return self.data.iloc[rows, self.data.columns.get_indexer(cols)].assign(_weight=w, _weight2=w2, _copies=cp)

    def school_sample(self, columns=None, *, categorical=(), lazy: bool = False) -> pd.DataFrame | SchoolSample:
        """The matched sample for per-school analyses (:func:`pleval.heterogeneity.school_effects`
        with ``weight="_weight", weight2="_weight2", copies="_copies"``): one row per distinct
        (PL school, matched row) pair — a comparison student's copies in several sets of one PL
        school merged (weights, squared weights and copies summed), its copies in different PL
        schools' sets kept apart (they are rows of different schools' regressions) — with
        ``columns`` (default all) and ``_pl_school``; pairs in order of first appearance in
        the matched sample. Without one-PL-row sets (weighting) it is :attr:`matched` itself.

        ``_pl_school`` is a pandas Categorical (the school labels, integer codes beneath), and so
        are the text columns named in ``categorical`` (keys that are only grouped on, e.g. the
        student and school ids): the same values as the long frame's, without a Python string
        per row; their categories are in order of first appearance in ``data``.

        ``lazy=True``: a :class:`SchoolSample` instead, the pairs without their data columns
        gathered (a column is gathered when read; ``school_effects`` reads them one at a time,
        and forms the rows of a block of schools at a time), for samples many times the data."""
        cols = list(self.data.columns) if columns is None else list(dict.fromkeys(c for c in columns if c))
        if len(self.set_id) and (self.set_id < 0).any():
            m = self.matched
            return m[cols + ["_pl_school", "_weight"]].assign(_weight2=m["_weight"] ** 2, _copies=1)
        n = len(self.data)
        sch, labels = pd.factorize(self.set_school)  # a set without a school: code -1
        school = sch[self.set_id]  # the PL school of each set member (+1 below: -1 becomes 0)
        school += 1
        pair, first = first_appearance_pairs(school, self.rows, n)  # pd.factorize's codes of the (school, row) pairs
        k = len(first)
        cat = {c for c in categorical if c in cols and not pd.api.types.is_numeric_dtype(self.data[c])
               and not isinstance(self.data[c].dtype, pd.CategoricalDtype)}
        small = np.int32 if max(n, len(labels), len(self.rows)) < 2**31 else np.int64  # rows, schools, copies
        out = SchoolSample(self.data, cols, cat, {c: f for c, f in self.factorized.items() if c in cat},
                           self.rows[first].astype(small), (school[first] - 1).astype(small), pd.Index(labels),
                           np.bincount(pair, self.weight, k), np.bincount(pair, self.weight**2, k),
                           np.bincount(pair, minlength=k).astype(small),
                           coded={c: f for c, f in self.codes.items() if c in cols})
        return out if lazy else out.frame()

    @property
    def pl_school(self) -> np.ndarray:
        """``_pl_school`` per matched row: the set's anchor school; for weighting (no sets) the
        row's own school for treated rows and NaN for comparisons."""
        in_set = self.set_id >= 0
        out = np.full(len(self.rows), np.nan, dtype=object)
        out[in_set] = self.set_school[self.set_id[in_set]]
        if not in_set.all() and self.columns.school:
            t = self.data[self.columns.treatment].to_numpy()[self.rows] == 1
            own = ~in_set & t
            out[own] = self.data[self.columns.school].iloc[self.rows[own]].to_numpy(dtype=object)
        return out

    @property
    def n_treated(self) -> int:
        """Treated rows eligible for matching."""
        return int(self.data[self.columns.treatment].sum())

    def pl_left_out(self) -> tuple[int, int, str]:
        """``(n, n_in, why)``: the PL rows matching was given (with those it excluded, when it
        counts them), those in the matched sample, and the reasons of the others with their
        counts ("" if none)."""
        ex = self.excluded_pl
        parts = [] if ex is None or not len(ex) else [ex.groupby("reason", sort=False)["n_rows"].sum()]
        if len(self.unmatched):
            parts.append(self.unmatched["reason"].value_counts(sort=False))
        counts = pd.concat(parts) if parts else pd.Series(dtype=np.int64)
        n_in = self.n_treated - len(self.unmatched)
        return n_in + int(counts.sum()), n_in, "; ".join(f"{r}: {int(k):,}" for r, k in counts.items())

    def _estimand_words(self) -> str:
        """The pooled estimate's label after the outcome: "average effect" (ATE), "effect on the
        treated", or, when PL rows are not in the matched sample, "effect on the matched PL
        students (n_in of n)" (before 2026-12-05 still "effect on the treated")."""
        if self.options.get("estimand") == "ATE":
            return "average effect"
        n, n_in, _ = self.pl_left_out()
        return "effect on the treated" if n_in == n else f"effect on the matched PL students ({n_in:,} of {n:,})"

    @property
    def n_treated_matched(self) -> int:
        t = self.data[self.columns.treatment].to_numpy()[self.rows] == 1
        return int(t.sum())

    @property
    def n_comparison_used(self) -> int:
        """Distinct comparison rows in the matched sample."""
        t = self.data[self.columns.treatment].to_numpy()[self.rows] == 1
        return int(np.unique(self.rows[~t]).size)

    @cached_property
    def sample_counts(self) -> dict:
        """The matched sample's size, as a study rating counts it: ``{subject: (students,
        treated schools, comparison schools, shared)}`` for every subject level present and for
        None (every row). Over the distinct matched rows: distinct student ids (distinct rows
        without a student id column), distinct school ids among the treated and among the
        comparison rows (a missing id not counted), and whether a school id — a missing one
        counting as one — has rows of both arms. Counted on integer codes (each id column coded
        once, the student ids as the tie cap left them in ``factorized``) by presence tables,
        not by hashing each subject's ids again."""
        c = self.columns
        rows = self._distinct[0]
        t = self.data[c.treatment].to_numpy()[rows] == 1
        if c.student_id:
            if c.student_id not in self.factorized:
                self.factorized[c.student_id] = factorize(self.data[c.student_id])
            stu, levels = self.factorized[c.student_id]
            stu, n_stu = stu[rows], len(levels)
        else:
            stu, n_stu = np.arange(rows.size), rows.size
        sch, levels = self._column_codes(c.school) if c.school else (np.full(len(self.data), -1), ())
        sch, n_sch = sch[rows].astype(np.int64), len(levels)
        groups = [(None, np.zeros(rows.size, dtype=np.int64), 1)]
        if c.subject:
            g, subjects = self._column_codes(c.subject)
            groups.append((subjects, g[rows].astype(np.int64), len(subjects)))
        out = {}
        for keys, g, G in groups:  # every row, then by subject: two passes
            ok = g >= 0
            n = _present(g[ok], stu[ok], G, n_stu).sum(axis=1)
            school = np.where(sch >= 0, sch, n_sch)  # a missing id: one more level
            arm_t = _present(g[ok & t], school[ok & t], G, n_sch + 1)
            arm_c = _present(g[ok & ~t], school[ok & ~t], G, n_sch + 1)
            n_t, n_c = arm_t[:, :n_sch].sum(axis=1), arm_c[:, :n_sch].sum(axis=1)
            shared = (arm_t & arm_c).any(axis=1)
            for j, key in enumerate([None] if keys is None else keys):
                out[key] = (int(n[j]), int(n_t[j]), int(n_c[j]), bool(shared[j]))
        return out

    def _column_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``data[column]``'s codes over sorted levels (:func:`~pleval.matching._design.codes_and_levels`,
        kept as int32; levels that do not occur may be among them), computed once: kept in ``codes``, where
        matching leaves those it computed (the balance tables and the effect regressions of
        every group read the same codes)."""
        if column not in self.codes:
            k, levels = codes_and_levels(self.data[column])
            self.codes[column] = (k.astype(np.int32) if len(levels) < 2**31 else k, levels)
        return self.codes[column]

    # --- diagnostics and estimates ------------------------------------------------------
    def balance(self, threshold: float = 0.1, smd: str | None = None) -> Balance:
        """Balance of the pretest(s) and covariates before and after (per subject if set).
        ``smd``: SMD denominator, "pooled", "treated" or "pooled_p" (default under
        ``conventions="matchit"``: "treated" for the ATT, "pooled_p" for the ATE, as MatchIt's
        ``summary`` reports them; else "pooled")."""
        c = self.columns
        if smd is None and self.options.get("conventions") == "matchit":
            smd = "pooled_p" if self.options.get("estimand") == "ATE" else "treated"
        smd = smd or "pooled"
        # each matched row once, its copies' weights and squared weights summed (the same table);
        # its values are read from data at its positions
        rows, w, w2, _ = self._distinct
        coded = [x for x in dict.fromkeys([*self.variables, c.subject]) if x and is_categorical(self.data[x])]
        return balance(
            self.data, pd.DataFrame({"_weight": w, "_weight2": w2}), c.treatment, self.variables, c.main_pretest,
            by=c.subject, categorical=self.categorical, threshold=threshold, smd=smd, weight2="_weight2", rows=rows,
            codes={x: self._column_codes(x) for x in coded}, strata=self.strata,
        )

    def weight_summary(self) -> pd.DataFrame:
        """WeightIt's weight statistics per group (:func:`pleval.matching.weighting.weight_summary`)
        of each row's weight summed over its sets, over the rows in the matched sample."""
        from .weighting import weight_summary

        w = self.row_weights()
        used = np.unique(self.rows)
        return weight_summary(w[used], self.data[self.columns.treatment].to_numpy()[used] == 1)

    def sample_sizes(self) -> pd.DataFrame:
        """MatchIt-style sample sizes per group: all (including discarded), matched (distinct
        rows), matched effective sample size (Kish ``(Σw)²/Σw²`` of each row's weight summed
        over its sets), unmatched, discarded (outside common support: ``discard=`` or weighting's
        ``trim=``)."""
        t_all = self.data[self.columns.treatment].to_numpy() == 1
        w = self.row_weights()
        used = np.zeros(len(self.data), bool)
        if getattr(self.sets, "positive", False):  # every weight positive: every distinct row is used
            used[self._distinct[0]] = True
        else:
            used[self.rows[self.weight > 0]] = True
        from . import TRIMMED

        pm = self.propensity
        disc = (pm.support.n_discarded_control, pm.support.n_discarded_treated) if pm is not None else (0, 0)
        disc = tuple(d + int(self.diagnostics.get(key, 0)) for d, key in zip(disc, TRIMMED))  # weighting's trim
        out = {}
        for name, g, d in (("comparison", ~t_all, disc[0]), ("treated", t_all, disc[1])):
            wg = w[g & used]
            ess = float(wg.sum() ** 2 / (wg**2).sum()) if wg.size else 0.0
            n_all, n_used = int(g.sum()) + d, int((g & used).sum())
            out[name] = [n_all, n_used, ess, n_all - n_used - d, d]
        return pd.DataFrame(out, index=["all", "matched", "matched (ESS)", "unmatched", "discarded"])

    def estimate(
        self,
        by=None,
        *,
        sd="pooled",
        vcov: str | None = None,
        level: float = 0.95,
        baseline_percentile: float = 50.0,
        covariates=None,
        cluster_df: str = "G-1",
        cr2: str = "transformed",
        df_working: str = "random_effects",
    ) -> Effect | EffectTable:
        """Regression-adjusted effect on the matched sample (:mod:`pleval.matching.effect`).

        ``by``: None for one pooled effect, or column name(s) (e.g. ``"subject"`` or
        ``("subject", "grade")``) for one effect per group, returned as an :class:`EffectTable`.
        ``sd``: "pooled" (default), "comparison" or a given norm SD. ``vcov``: default "CR2" by
        school, or "CR1" by student when the data have no school column (one student per
        cluster makes CR2's corrections negligible and its cost high). ``covariates``: the
        adjustment set (default: every pretest and covariate). ``cluster_df``: ``"G-1"`` (Stata,
        default) or ``"G-p"`` (metafor's ``robust()``) for CR1/CR0; ``cr2``: the weighted CR2 form,
        ``"transformed"`` (default) or ``"clubsandwich"`` (:func:`pleval.inference.ols`; matched
        weights vary within school, so the two differ slightly). ``df_working``: the working model
        of CR2's Satterthwaite df, ``"random_effects"`` (default: a school random effect,
        Imbens & Kolesár 2016; :mod:`pleval.matching.effect`) or ``"independent"`` (Bell &
        McCaffrey's, as clubSandwich).
        """
        fits = self.group_fits(by, sd=sd, vcov=vcov, level=level, baseline_percentile=baseline_percentile,
                               covariates=covariates, cluster_df=cluster_df, cr2=cr2, part_columns="read",
                               df_working=df_working, failed="keep" if by is not None else "raise")
        if by is None:
            n, n_in, why = self.pl_left_out()
            ate = self.options.get("estimand") == "ATE"
            eff = fits[0][3]
            return eff if ate or n_in == n else replace(eff, note=" ".join(filter(None, (pl_left_out(n, n_in, why),
                                                                                          eff.note))))
        effects = {key: eff for key, _, _, eff, _ in fits if not isinstance(eff, DesignError)}
        left_out = {key: str(eff) for key, _, _, eff, _ in fits if isinstance(eff, DesignError)}
        if not effects:  # no group estimable: the first group's reason
            raise next(eff for *_, eff, _ in fits)
        for key, why in left_out.items():
            warnings.warn(f"effects by {', '.join(fits[0][4])}: group {', '.join(map(str, key))} not estimated "
                          f"({why})", PlevalWarning, stacklevel=2)
        return EffectTable(fits[0][4], effects, left_out)

    def group_designs(self, by=None, *, covariates=None, part_columns: str = "all", lazy: bool = False) -> list[tuple]:
        """The effect regression's design per group, on the distinct matched rows: one
        ``(key, part, design, label)`` per group (key ``()`` when ``by`` is None), ``part`` the
        group's rows of :meth:`distinct` and ``design`` its
        :class:`~pleval.matching.effect.EffectDesign` (weights summed over copies, with
        ``weights2``, ``copies`` and ``rows``, the positions in ``data``). ``part_columns``:
        "all" (default) every column the regression uses; "read", only those it reads as values
        (text columns without a missing value, whose codes the design takes, are left out but
        for the ``by`` columns: gathering their text is a third of the cost of ``part`` at 1M
        rows); "none", ``part`` is None (the columns read are gathered for the design — not the
        coded ``by`` columns, whose codes it takes — and dropped once it is built). ``lazy``:
        an iterator instead of a list, each group's rows and design formed when it is reached and
        held by nothing but the tuple it hands out (a consumer that drops it before the next
        holds one group's at a time)."""
        c = self.columns
        if covariates is None:
            covariates = c.covariates
        by = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
        missing = [b for b in by if b not in self.data.columns]
        if missing:
            raise DataError(f"cannot estimate by {missing}: not columns of the data")
        if part_columns not in ("all", "read", "none"):
            raise DataError(f"part_columns must be 'all', 'read' or 'none'; got {part_columns!r}")
        designs = self._group_designs(by, covariates, part_columns)
        return designs if lazy else list(designs)

    def _group_designs(self, by: tuple, covariates, part_columns: str):
        c = self.columns
        design_kw = dict(outcome=c.outcome, treatment=c.treatment, pretests=c.pretest, covariates=covariates,
                         strata=self.strata, school=c.school)
        cols = [c.outcome, c.treatment, *c.pretest, *covariates, *self.strata, c.school, *by]
        coded = [x for x in dict.fromkeys(cols) if x and is_categorical(self.data[x])]  # strings: coded once
        codes = {x: self._column_codes(x) for x in coded}
        if part_columns != "all":  # ("none": the design reads a coded group column's codes, not its text)
            cols = [x for x in cols if x not in codes or (x in by and part_columns == "read") or (codes[x][0] < 0).any()]
        cols = list(dict.fromkeys(x for x in cols if x))
        if by and not set(by) <= set(self.strata) and (self.set_id >= 0).any():  # sets may cross the groups
            return self._set_group_designs(by, codes, cols, design_kw, part_columns)
        rows, w, w2, cp = self._distinct

        def part(idx):  # the rows idx of distinct(cols), gathered for one group
            r = rows if idx is None else rows[idx]
            return _take_rows(self.data, r, cols).assign(**{k: v if idx is None else v[idx] for k, v in
                                                   (("_weight", w), ("_weight2", w2), ("_copies", cp))}), r

        if not by:
            groups = [((), None, f"{c.outcome}: {self._estimand_words()}")]
        else:
            groups = []
            for key, idx in _groups(self.data, rows, by, codes):  # a handful of groups
                groups.append((key, idx, f"{c.outcome} ({', '.join(f'{b} = {v}' for b, v in zip(by, key))})"))
            n_out = len(rows) - sum(len(idx) for _, idx, _ in groups)
            if n_out:  # matched rows with a missing key are in no group
                t = self.data[c.treatment].to_numpy()[rows] == 1
                n_t = int(t.sum()) - sum(int(t[idx].sum()) for _, idx, _ in groups)
                warnings.warn(f"{n_out:,} matched row(s) ({n_t:,} PL) have no value of {', '.join(map(repr, by))} and are "
                              "in no group's estimate", PlevalWarning, stacklevel=3)

        def build(group):
            key, idx, label = group
            p, r = part(idx)
            des = effect_design(p, **design_kw, label=label, rows=r, weight2="_weight2", copies="_copies",
                                codes={x: (k[r], lv) for x, (k, lv) in codes.items()})
            return key, None if part_columns == "none" else p, des, label

        return map(build, groups)  # (map keeps no reference to what it hands out)

    def _set_group_designs(self, by: tuple, codes: dict, cols: list, design_kw: dict, part_columns: str):
        """:meth:`_group_designs` for ``by`` columns that are not exact-match keys: each matched
        set in the group of its PL row (as :func:`pleval.subgroups.set_level_codes` does; rows
        outside sets, weighting's, in their own), so a comparison student reused by sets of two
        groups counts in each with the weight of its sets there. By each row's own value, 5,816
        of 9,030 VCG comparison rows were in a group other than their PL student's (urbanicity),
        and 27 suburban PL students faced comparisons weighing 308."""
        c = self.columns
        if len(by) == 1 and by[0] in codes:
            gid, levels = codes[by[0]]
            keys = [(v,) for v in levels]
        else:
            gb = self.data[list(by)].groupby(list(by), sort=True, dropna=True)
            gid = gb.ngroup().fillna(-1).to_numpy(dtype=np.int64)  # (NaN where a key is missing: floats otherwise)
            keys = [k if isinstance(k, tuple) else (k,) for k in gb.size().index]
        rows, sets, w = self.rows, self.set_id, self.weight
        t = self.data[c.treatment].to_numpy()[rows] == 1
        long_gid = set_anchored(sets, t, gid[rows].astype(np.int64))
        n = len(self.data)
        n_out = int((long_gid < 0).sum())
        if n_out:  # matched rows of sets whose PL row has no value (or, outside sets, none of their own)
            warnings.warn(f"{n_out:,} matched row(s) ({int((t & (long_gid < 0)).sum()):,} PL) have no value of "
                          f"{', '.join(map(repr, by))} (their PL student's, in a matched set) and are in no group's "
                          "estimate", PlevalWarning, stacklevel=4)

        def build(g):
            in_g = long_gid == g
            r, wg, w2, cp = distinct_rows(rows[in_g], w[in_g], n)
            p = _take_rows(self.data, r, cols).assign(_weight=wg, _weight2=w2, _copies=cp)
            label = f"{c.outcome} ({', '.join(f'{b} = {v}' for b, v in zip(by, keys[g]))})"
            des = effect_design(p, **design_kw, label=label, rows=r, weight2="_weight2", copies="_copies",
                                codes={x: (k[r], lv) for x, (k, lv) in codes.items()})
            return keys[g], None if part_columns == "none" else p, des, label

        return map(build, np.unique(long_gid[long_gid >= 0]).tolist())

    def group_fits(self, by=None, *, sd="pooled", vcov: str | None = None, level: float = 0.95,
                   baseline_percentile: float = 50.0, covariates=None, cluster_df: str = "G-1",
                   cr2: str = "transformed", part_columns: str = "all", lazy: bool = False,
                   df_working: str = "random_effects", failed: str = "raise") -> list[tuple]:
        """What :meth:`estimate` fits, with what it fits it on: one ``(key, rows, design,
        effect, by)`` per group (key ``()`` when ``by`` is None), ``rows`` and ``design`` those of
        :meth:`group_designs` (for analyses of the same regression, e.g.
        :func:`pleval.sensitivity.sensitivity`, without building it again). HC, classical and
        clubSandwich's weighted CR2 count every copy of a reused row, so for them the copies are
        fitted (with ``part_columns="none"`` their rows are gathered, as "read", and dropped after
        the fit). ``part_columns`` and ``lazy``: as :meth:`group_designs`'s (lazily, each group is
        fitted when reached). ``failed="keep"``: a group whose effect cannot be estimated gives its
        :class:`~pleval.errors.DesignError` in place of the effect (default: raised)."""
        c = self.columns
        if vcov is None:
            vcov = default_vcov("matched", c.school)
        check_conventions(cluster_df, cr2)
        kw = dict(outcome=c.outcome, treatment=c.treatment, pretests=c.pretest,
                  covariates=c.covariates if covariates is None else covariates, strata=self.strata, school=c.school,
                  sd=sd, vcov=vcov, level=level, baseline_percentile=baseline_percentile, method=self._method_label(),
                  cluster_df=cluster_df, cr2=cr2, df_working=df_working)
        by_t = () if by is None else ((by,) if isinstance(by, str) else tuple(by))
        merged = mergeable(vcov, cr2)
        designs = self.group_designs(by, covariates=covariates, lazy=True,
                                     part_columns="read" if part_columns == "none" and not merged else part_columns)

        def fit(design):
            key, part, des, label = design
            try:
                if merged:
                    eff = regression_effect(part, **kw, label=label, design=des)
                else:
                    long_part, long_des = self._copies_of(part, des)
                    eff = regression_effect(long_part, **kw, label=label, design=long_des)
            except DesignError as exc:
                if failed != "keep":
                    raise
                eff = exc
            return key, None if part_columns == "none" else part, des, eff, by_t

        fits = map(fit, designs)  # (map keeps no reference to what it hands out)
        return fits if lazy else list(fits)

    def _group_pairs(self, des) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The matched sets of a group (``des``: its :meth:`group_designs` design) as ``(pos, set,
        pair)``: for every (set, member) pair among the group's distinct design rows whose set's PL
        row is in the group too, the member's design row, the set id and the pair's position in the
        long format — the set structure of its copies (:meth:`_copies_of`) and the Rosenbaum
        bounds, without copying any data. (A group by a column the sets are not matched on holds
        comparison rows reused by sets of other groups: those sets are not the group's.)"""
        from . import NearestSets

        small = np.int32 if len(des.rows) < 2**31 else np.intp  # (a position per set member: large)
        local = np.full(len(self.data), -1, dtype=small)
        local[des.rows] = np.arange(len(des.rows), dtype=small)
        if isinstance(self.sets, NearestSets):  # each set its one PL row and its members together, in set order
            # the sets whose PL row is the group's, read at the sets' PL rows; of their pairs, those whose row is
            # the group's (rows gathered for the group's pairs only, not for every pair: the same pairs, in order)
            pair = np.flatnonzero(np.repeat(local[self.sets.t_pos] >= 0, self.sets.sizes + 1))
            pos = local[self.rows[pair]]
            del local
            if (pos < 0).any():
                keep = pos >= 0
                pair, pos = pair[keep], pos[keep]
            return pos, self.set_id[pair], pair
        pos = local[self.rows]
        del local
        keep = pos >= 0
        sets = self.set_id
        if (sets[keep] >= 0).any():  # the sets anchored by a PL row of the group
            t = np.asarray(des.t) != 0
            anchored = np.zeros(int(sets.max()) + 1, dtype=bool)
            pl = keep & (sets >= 0)
            pl[pl] = t[pos[pl]]
            anchored[sets[pl]] = True
            keep &= (sets < 0) | anchored[np.maximum(sets, 0)]
        pair = np.flatnonzero(keep)
        return pos[pair], sets[pair], pair

    def _copies_of(self, part: pd.DataFrame, des) -> tuple[pd.DataFrame, object]:
        """A group's rows and design with every copy as its own row (for HC/classical SEs): the
        copies of the group's own sets (:meth:`_group_pairs`; before 2026-12-04 also those of
        other groups' sets reusing a row of the group, when the group is not an exact key)."""
        from dataclasses import replace

        i, _, pair = self._group_pairs(des)
        w = self.weight[pair]
        long = replace(des, y=des.y[i], t=des.t[i], X=des.X[i], weights=w, clusters=des.clusters[i], rows=des.rows[i],
                       weights2=None, copies=None, cells=None if des.cells is None else des.cells[i], gram=None)
        return part.iloc[i], long

    def _method_label(self) -> str:
        o = self.options
        ties = ", ties kept" if o.get("ties") else ""
        at_cap = self.diagnostics.get(AT_TIE_CAP, 0)
        if ties and at_cap:  # (the sets' tied members beyond the cap chosen by hashed student id)
            ties += f" up to {max(o['tie_cap'], o['k'])} per set, {at_cap:,} set{'s' * (at_cap != 1)} at the cap"
        if self.method == "propensity" and o.get("conventions") == "matchit":
            cal = "no caliper" if o["caliper"] in (None, False) else f"caliper {o['caliper']} SD"
            return (f"1:{o['k']} nearest-neighbour matching on the propensity score, MatchIt conventions "
                    f"({cal}, {'with' if o['replace'] else 'without'} replacement, order {o['order']}{ties})")
        within = "".join(f", {col} within {w:g} SD" for col, w in (o.get("calipers") or {}).items())
        if self.method == "propensity":
            cal = "no caliper" if o["caliper"] is False else f"caliper {DEFAULT_CALIPER if o['caliper'] is None else o['caliper']} SD"
            on = ("on the Mahalanobis distance of " + ", ".join(o["mahvars"]) + " within the propensity-score caliper"
                  if o.get("mahvars") else "on the logit propensity score")  # (mahvars: which distance)
            return (f"1:{o['k']} nearest-neighbour matching {on} "
                    f"({cal}{within}, {'with' if o['replace'] else 'without'} replacement{ties})")
        if self.method == "mahalanobis":
            cal = "" if o.get("caliper") in (None, False) else f"caliper {o['caliper']}, "
            return (f"1:{o['k']} nearest-neighbour Mahalanobis matching ({cal}{within[2:]}{', ' * bool(within)}"
                    f"{'with' if o['replace'] else 'without'} replacement{ties})")
        if self.method in ("optimal", "full"):
            on = (f"Mahalanobis distance of {', '.join(o['distance'])}" if "distance" in o else
                  f"the {'' if o.get('conventions') == 'matchit' else 'logit '}propensity score ({o.get('link', 'logit')} model)")
            cal = "" if o["caliper"] in (None, False) else f", caliper {o['caliper']}"
            what = f"optimal 1:{o['k']} pair matching" if self.method == "optimal" else "optimal full matching"
            return f"{what} on {on}{cal}"
        if self.method == "subclass":
            return (f"subclassification on the propensity score ({o['subclasses']} subclasses per exact cell, "
                    f"{o['estimand']} weights)")
        if self.method in ("cem", "exact"):
            what = "coarsened exact matching" if self.method == "cem" else "exact matching"
            return f"{what} on {', '.join(o['covariates'])} ({o['estimand']} weights)"
        if self.method == "vcg":
            return f"VCG-style matching (exact keys, pretest within ±{o['band']:g}, the {o['k']} closest, ties sharing places)"
        if self.method == "ebal":
            return (f"entropy balancing ({o['estimand']}) of {', '.join(o['covariates'])}"
                    + (f", moments up to {o['moments']}" if o["moments"] > 1 else ""))
        how = "".join(x for x in (f", trimmed at {o['trim']:g}" if o.get("trim") else "",
                                  f", truncated at the {o['truncate']:g} quantile" if o.get("truncate") else ""))
        if o.get("estimand") == "ATE":
            return f"ATE inverse-probability weighting on the propensity score{how}"
        return f"ATT odds weighting on the propensity score{how}"

    # --- display ------------------------------------------------------------------------
    def unmatched_counts(self) -> pd.DataFrame:
        if not len(self.unmatched):
            return pd.DataFrame({"reason": [], "n_rows": []})
        return self.unmatched.groupby("reason").size().rename("n_rows").reset_index()

    def to_frame(self) -> pd.DataFrame:
        """Counts: eligible, matched, unmatched by reason, excluded by reason."""
        rows = [
            {"item": "treated rows eligible", "n_rows": self.n_treated},
            {"item": "treated rows matched", "n_rows": self.n_treated_matched},
            {"item": "comparison rows used (distinct)", "n_rows": self.n_comparison_used},
            {"item": "rows in matched sample", "n_rows": len(self.rows)},
        ]
        rows += [{"item": f"unmatched treated: {r.reason}", "n_rows": r.n_rows} for r in self.unmatched_counts().itertuples()]
        rows += [{"item": f"excluded: {r.reason} [{r.column}]", "n_rows": r.n_rows} for r in self.exclusions.itertuples()]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        lines = [f"MatchResult: {self._method_label()}"]
        if self.options.get("distance"):
            lines.append(f"  Mahalanobis distance on: {', '.join(map(str, self.options['distance']))}")
        lines += [f"  {r.item}: {r.n_rows:,}" for r in self.to_frame().itertuples()]
        if self.method in ("weighting", "ebal"):
            lines.append("  weights:")
            ws = self.weight_summary()
            lines += ["    " + x for x in ws.to_string(index=False, float_format=lambda v: f"{v:,.3f}").splitlines()]
        else:
            lines.append("  sample sizes:")
            ss = self.sample_sizes()
            lines += ["    " + x for x in ss.to_string(float_format=lambda v: f"{v:,.1f}").splitlines()]
        if self.propensity is not None:
            lines += ["  " + s for s in self.propensity.summary().splitlines()]
        for k, v in self.diagnostics.items():
            lines.append(f"  {k}: {v:,.4g}" if isinstance(v, (int, float)) else f"  {k}: {v}")
        return "\n".join(lines)




class SchoolSample:
    """:meth:`MatchResult.school_sample` without its data columns gathered: the (PL school,
    matched row) pairs as arrays — each pair's row of ``data`` (``rows``), PL school code
    (``school``, into ``labels``), summed weights, squared weights and copies — and the
    ``columns`` of ``data`` it carries. A column is gathered for every pair when read
    (``sample[c]``, the Series :meth:`frame` holds), and :meth:`frame` forms the frame of any
    pairs: what :func:`pleval.heterogeneity.school_effects` needs to read the sample one column
    at a time and form the rows of one block of schools at a time, never the whole frame.

    ``factorized`` holds ``pd.factorize`` of columns of ``data`` already computed (categories in
    order of first appearance), ``coded`` their codes over sorted levels where the match already
    has them (:attr:`MatchResult.codes`, :func:`~pleval.matching._design.codes_and_levels`): a
    column's codes (:meth:`codes`, :meth:`level_codes`, :meth:`distinct_in_data`) are taken from
    either before a column of ``data`` is hashed again (1M rows: 11–31 ms a text column)."""

    def __init__(self, data, columns, categorical, factorized, rows, school, labels, weight, weight2, copies,
                 coded=None):
        self.data, self.cols, self.categorical, self.factorized = data, list(columns), set(categorical), dict(factorized)
        self.coded = dict(coded or {})
        self.rows, self.school, self.labels = rows, school, labels
        self.weight, self.weight2, self.copies = weight, weight2, copies
        self.columns = pd.Index([*self.cols, "_pl_school", "_weight", "_weight2", "_copies"])
        self.dtypes: dict = {}  # the categorical columns' dtypes, formed when first read

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def _at(self) -> np.ndarray:
        """``rows`` as ``np.intp``, formed at the first gather and kept: numpy converts int32
        indices at every gather (2–3× a gather's time at 2M pairs)."""
        return self.rows.astype(np.intp)

    def __getitem__(self, column: str) -> pd.Series:
        return self._column(column, slice(None))

    def _column(self, c: str, pos) -> pd.Series:
        extra = {"_weight": self.weight, "_weight2": self.weight2, "_copies": self.copies}
        if c in extra:
            return pd.Series(extra[c][pos], name=c, copy=False)
        if c == "_pl_school":
            return pd.Series(pd.Categorical.from_codes(self.school[pos], categories=self.labels), name=c, copy=False)
        if c not in self.cols:
            raise KeyError(c)
        rows = self._at[pos] if isinstance(pos, slice) else self.rows[pos]
        if c in self.categorical:
            if c not in self.dtypes:  # once per column: the long frame's categories (a hash of every id)
                self.dtypes[c] = pd.CategoricalDtype(pd.Index(self._factorized(c)[1]))
            codes = self.factorized[c][0][rows]
            return pd.Series(pd.Categorical.from_codes(codes, dtype=self.dtypes[c], validate=False), name=c, copy=False)
        s = self.data[c]
        return pd.Series(s.to_numpy()[rows], name=c, copy=False) if isinstance(s.dtype, np.dtype) else s.iloc[rows]

    def integers(self, c: str) -> np.ndarray | None:
        """The pairs' values of a whole-number column of ``data`` (booleans, integers of a numpy
        dtype; ``self[c].to_numpy()``'s values) in the narrowest type that holds the data's, the
        data's column narrowed first (a byte a pair gathered, not eight); None for any other
        column."""
        s = self.data[c] if c in self.cols else None
        if s is None or not (isinstance(s.dtype, np.dtype) and s.dtype.kind in "biu"):
            return None
        v = s.to_numpy()
        if v.size:
            v = v.astype(np.result_type(np.min_scalar_type(v.min()), np.min_scalar_type(v.max())), copy=False)
        return v[self._at]

    def isna(self, c: str) -> np.ndarray:
        """Whether each pair's value of column ``c`` is missing (``self[c].isna()``), found in
        ``data``'s column and gathered only when some value there is missing."""
        if c not in self.cols:
            return self[c].isna().to_numpy()
        miss = self.data[c].isna().to_numpy()
        return miss[self._at] if miss.any() else np.zeros(len(self.rows), dtype=bool)

    def varies(self, c: str) -> bool:
        """Whether the pairs take two values or more of column ``c``, a missing value counting as
        one (``self[c].nunique(dropna=False) >= 2``): the first pairs' values read first, every
        pair's only when those agree."""
        if self._column(c, slice(0, 1024)).nunique(dropna=False) >= 2:
            return True
        return self[c].nunique(dropna=False) >= 2

    def distinct_in_data(self, columns) -> bool:
        """Whether no two rows of ``data`` agree in all of ``columns`` (data columns, none
        missing; their codes combined, counted by ``np.bincount`` or, past 2²⁶ combinations, by a
        hash): then two pairs of one PL school that agree in them are one pair."""
        key, size = np.zeros(len(self.data), dtype=np.int64), 1
        for c in columns:
            codes, uniq = self._coding(c)
            if len(codes) and codes.min() < 0:
                return False
            key = key * len(uniq) + codes
            size *= max(len(uniq), 1)
        if size <= 1 << 26:
            return len(key) < 2 or int(np.bincount(key, minlength=1).max()) <= 1
        return len(pd.unique(key)) == len(key)

    def _factorized(self, c: str) -> tuple[np.ndarray, np.ndarray]:
        """``pd.factorize`` of ``data``'s column ``c`` (uniques in order of first appearance), kept."""
        if c not in self.factorized:
            self.factorized[c] = factorize(self.data[c])
        return self.factorized[c]

    def _coding(self, c: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, uniques)`` of ``data``'s column ``c`` in some numbering: its ``pd.factorize``
        where kept, else the match's codes over sorted levels (``coded``), else :meth:`_factorized`."""
        return self.coded[c] if c not in self.factorized and c in self.coded else self._factorized(c)

    def codes(self, c: str, values: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(codes, values)`` of column ``c``: each pair's integer code (−1 where missing) with
        ``values[codes]`` its value, without gathering the values (``values=False``: None, the codes
        alone, without forming an array of the column's distinct values). The numbering is ``data``'s
        (its ``pd.factorize``, kept per column; ``_pl_school``: ``school`` and ``labels``), not
        the pairs' order of first appearance, and ``values`` may hold values no pair has (the
        numbering of :meth:`_coding`: first appearance, or sorted levels). A data column's codes
        are gathered as ``int32`` where they fit (half the bytes a pair of ``intp``)."""
        if c == "_pl_school":
            codes, uniq = self.school, self.labels
        elif c not in self.cols:
            codes, uniq = pd.factorize(self[c])
        else:
            codes, uniq = self._coding(c)
            if len(uniq) < 2**31 - 1:
                codes = codes.astype(np.int32, copy=False)
            codes = codes[self._at]
        return codes, np.asarray(uniq) if values else None

    def level_codes(self, c: str) -> tuple[np.ndarray, pd.Index] | None:
        """:func:`pleval.data.level_codes` of ``self[c]`` (the levels of a categorical covariate;
        the same codes and levels), from ``data``'s column coded once (its sorted levels, kept)
        and the pairs' codes gathered, not the values: the levels the pairs have, in the order of
        a Categorical's (or a key column's) categories, or text's sorted values. None for a
        numeric column (it is no categorical covariate), or any other type (read the values)."""
        s = self.data[c]
        if c in self.categorical or isinstance(s.dtype, pd.CategoricalDtype):
            if c in self.categorical:  # a key column's categories: its order of first appearance
                codes, uniq = self._factorized(c)
                uniq = np.asarray(uniq)
            else:
                codes, uniq = s.cat.codes.to_numpy(), s.cat.categories
            codes = codes[self._at]
        elif isinstance(s.dtype, pd.StringDtype):
            key = ("sorted", c)
            if key not in self.factorized:  # the match's codes over sorted levels are the sorted factorization
                self.factorized[key] = ((self.coded[c][0], pd.Index(self.coded[c][1], dtype=s.dtype)) if c in self.coded
                                        else factorize(s, sort=True))
            codes, uniq = self.factorized[key]
            codes = codes.astype(np.min_scalar_type(-len(uniq) - 1))[self._at]  # a narrow gather
        else:
            return None
        small = np.min_scalar_type(-len(uniq) - 1)  # the codes, −1 (missing) and len(uniq) fit
        codes = codes.astype(small, copy=False)
        present = np.bincount(codes + small.type(1), minlength=len(uniq) + 1)[1:] > 0  # the pairs' levels, in order
        if present.all():
            return _checked_levels(codes, pd.Index(uniq), c)
        new = np.append(np.cumsum(present) - 1, -1).astype(small)  # renumbered; [-1]: missing stays −1
        return _checked_levels(new[codes], pd.Index(uniq)[present], c)

    def subset(self, keep: np.ndarray) -> SchoolSample:
        """The pairs where ``keep`` (a boolean mask) is True."""
        out = SchoolSample(self.data, self.cols, self.categorical, self.factorized, self.rows[keep], self.school[keep],
                           self.labels, self.weight[keep], self.weight2[keep], self.copies[keep])
        out.factorized, out.dtypes, out.coded = self.factorized, self.dtypes, self.coded  # shared: codings of the same data
        return out

    def frame(self, pos=None) -> pd.DataFrame:
        """The pairs ``pos`` (default all) as a DataFrame (index: their rows' labels in ``data``)."""
        pos = slice(None) if pos is None else pos
        rows = self.rows[pos]
        plain = self.data.iloc[rows, self.data.columns.get_indexer([c for c in self.cols if c not in self.categorical])]
        parts = {c: plain[c] if c not in self.categorical else
                 _categorical(self.data[c], rows, self.factorized.get(c)) for c in self.cols}
        return pd.DataFrame(parts, index=plain.index, copy=False).assign(
            _pl_school=pd.Categorical.from_codes(self.school[pos], categories=self.labels),
            _weight=self.weight[pos], _weight2=self.weight2[pos], _copies=self.copies[pos])


def _take_rows(data: pd.DataFrame, rows: np.ndarray, cols: list) -> pd.DataFrame:
    """``data.iloc[rows]`` of the columns ``cols`` (distinct names), each column taken by itself
    into a frame that keeps it as its own block: the same frame (values, dtypes, index) without
    pandas' row take of every block (half the time for a subject's 400,000 rows)."""
    def take(s: pd.Series):
        return s.to_numpy().take(rows) if isinstance(s.dtype, np.dtype) else s.array.take(rows)

    return pd.DataFrame({x: take(data[x]) for x in cols}, index=data.index[rows], copy=False)


def set_anchored(sets, treated, values, fill=-1) -> np.ndarray:
    """Each long-format row's value taken from its matched set's PL row (its first, should a set
    hold several); rows outside sets (set −1: weighting) keep their own; ``fill`` for a set
    without a PL row."""
    s, t, v = np.asarray(sets), np.asarray(treated, dtype=bool), np.asarray(values)
    pl = t & (s >= 0)
    anchor = np.full(int(s.max(initial=-1)) + 1, fill, dtype=v.dtype)
    anchor[s[pl][::-1]] = v[pl][::-1]  # (reversed: the first PL row's value is written last)
    return np.where(s >= 0, anchor[np.maximum(s, 0)], v)


def distinct_rows(rows: np.ndarray, weight: np.ndarray, n: int):
    """``MatchResult._distinct`` of the long format's ``rows`` and ``weight`` (``n`` rows of data)."""
    copies = np.bincount(rows, minlength=n)
    distinct = np.flatnonzero(copies)
    w2 = np.bincount(rows, np.square(weight), n)[distinct]
    return distinct, np.bincount(rows, weight, n)[distinct], w2, copies[distinct]


def _present(g: np.ndarray, code: np.ndarray, G: int, K: int) -> np.ndarray:
    """The G × K table of which codes 0..K−1 (those ≥ 0) occur in each group 0..G−1."""
    ok = code >= 0
    return np.bincount(g[ok] * K + code[ok], minlength=G * K).reshape(G, K) > 0


def _checked_levels(codes: np.ndarray, levels: pd.Index, name: str) -> tuple[np.ndarray, pd.Index]:
    """``(codes, levels)``, refused as :func:`pleval.data.level_codes` refuses a single level."""
    if len(levels) < 2:
        raise DataError(f"column {name!r} (covariate) has a single category in the analysed rows; leave it out")
    return codes, levels


def _categorical(s: pd.Series, rows: np.ndarray, factorized=None) -> pd.Categorical:
    """``s`` at positions ``rows`` as a Categorical (missing values stay missing);
    ``factorized``: ``pd.factorize(s)``, when already computed."""
    codes, uniq = pd.factorize(s) if factorized is None else factorized  # Arrow strings: dictionary-encoded as stored
    return pd.Categorical.from_codes(codes[rows], categories=pd.Index(uniq))


__all__ = ["MatchResult", "EffectTable", "SchoolSample"]
