"""The whole evaluation in one call: ``pleval.estimate(df, columns, design=...)``.

:func:`estimate` validates the student file, builds the design (a matched comparison with
:func:`pleval.match`, or a randomized trial with :func:`pleval.rct.analyze_rct`), estimates the
overall effect by subject, the school-by-school effects with their random-effects
meta-analysis and empirical-Bayes shrinkage (:func:`pleval.heterogeneity.school_effects`) and
the placebo-school spread, and returns an immutable :class:`Evaluation` holding every table,
the warnings raised on the way, the resolved options, and provenance (package versions, input
SHA-256, seed). Nothing is computed here that the design and heterogeneity modules already
compute; this module wires them together and puts the results on one set of tables.

Scales (docs/architecture.md, *Scales and the SD*). Every effect is reported as raw outcome
points, as an effect size ``g = ω·Δ/SD`` (Δ the regression-adjusted difference, SD the pooled
within-group SD of the unadjusted outcome unless ``sd=`` says otherwise, ω = 1 − 3/(4N − 9))
and as percentile points ``100·Φ(Φ⁻¹(p/100) + g) − p`` from baseline percentile p (50 by default) — a shift in rank, not
a change in the score. School effects are standardized by the same SD as the overall effect of
their subject, so the two are on one yardstick.

School effects in a cluster-randomized trial. Schools, not students, were randomized, so a
single school's effect is not identified by the randomization; pleval compares each PL school
with the comparison schools of its randomization block (all comparison schools if there are
no blocks), like a matched design, and says so. Placebo schools are then each comparison
school against the other comparison schools of its block.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import platform
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

import numpy as np
import pandas as pd

from . import __version__, percentiles
from ._results import Effect, ResultMixin
from ._text import unsigned_zeros
from ._workers import SharedFlag, available_memory, can_fork, default_workers, limited, release_free_memory, side_by_side
from ._workers import start as start_worker
from .checks import NA_LIKE, check, current_report, id_columns
from .data import (
    RCT_SAMPLE_COLUMNS, SAMPLE_COLUMNS, Columns, Validated, _coerce_treatment, as_columns, frame_sha256, itt_columns, one_arm_subject, pick_subject, pl_by_subject, randomized_columns, read_table,
    resolve_columns, subject_counts, validate, with_binary_treatment,
)
from .errors import DataError, DesignError, PlevalWarning
from .findings import domain_clause, fmt_ci, p_clause
from .inference.robust import CR2_FORMS, DF_WORKING, VCOV_TYPES as VCOVS, check_conventions, default_vcov
from .outcomes import binary_frame, outcome_plan, outcome_table
from .readers import file_columns
from .outcomes import check_options as check_outcome_options
from .subgroups import BAND, band_groups, pretest_bands

DESIGNS = ("matched", "rct")
MATCH_METHODS = ("propensity", "mahalanobis", "vcg", "weighting", "optimal", "full", "subclass", "cem", "exact", "ebal")
RCT_METHODS = ("ols", "cluster_means", "mixedlm", "random_blocks")
META_METHODS = ("REML", "ML", "DL", "PM", "EB", "HE", "SJ", "FE")
"""τ² estimators of the school meta-analysis (metafor's names); HS is left out: it needs
independent estimates, and the school effects of one evaluation share comparison students."""
ADJUST = ("bh", "holm", "bonferroni")
ALL = "all"  # the subject label when the data have no subject column

COMMON_DEFAULTS: dict[str, Any] = {
    "sd": "pooled",
    "level": 0.95,
    "baseline_percentile": 50.0,
    "meta_method": "REML",
    "hartung_knapp": True,
    "adjust": "bh",
    "alpha": 0.05,
    "placebo": True,
    "n_placebo": 0,
    "confounds": (),
    "subgroups": (),
    "bands": (),
    "moderators": (),
    "moderator_kh": True,
    "overriding_negative": None,
    "outcomes": (),
    "domains": {},
    "binary_method": "logit",
    "lower_is_better": (),
    "cluster_df": "G-1",
    "cr2": "transformed",
    "school_cr2": "clubsandwich",
    "workers": None,
}
"""Options of every design (see :func:`estimate`); ``n_placebo=0`` means the default number of
placebo schools (every comparison school); ``workers=None`` the default number of processes
(:func:`pleval._workers.default_workers`: 2, or 1 on a machine with one core)."""

RCT_DEFAULTS: dict[str, Any] = {"rct_design": "cluster", "vcov": "", "permutations": 0, "compliance": True,
                                "boundary": "cautious", "joiners": None, "compromised": False, "lin": False,
                                "icc": 0.20, "gt_df": "N-2", "bootstrap": 0, "bootstrap_weights": "rademacher",
                                "interaction_test": "HTZ", "df_working": "independent"}
"""Options of ``design="rct"``; ``vcov=""`` means the design's default (CR2 for cluster designs);
``lin``, ``icc``, ``gt_df``, ``bootstrap``, ``bootstrap_weights``, ``interaction_test`` and ``df_working`` are those of
:func:`pleval.rct.analyze_rct` (``icc="none"`` omits the g_T row)."""

PLACEBO_CAP = 300
"""The default bound on placebo schools of a matched design: with more comparison schools, the
first 300 of the placebo round order play placebo (spread over the pretest range, chosen by the
data alone; :func:`pleval.heterogeneity.placebo.placebo_schools`). Each round re-matches the
whole file, so on a state file with thousands of comparison schools all of them would cost
ten matches and more; docs/scale.md measures what the cap changes. ``placebo_cap=0``: all."""

MATCHED_DEFAULTS: dict[str, Any] = {"sensitivity": True, "placebo_outcome": "", "hl_gammas": (),
                                    "rosenbaum_direction": "", "school_sensitivity": False, "vcov": "",
                                    "placebo_cap": PLACEBO_CAP, "df_working": "random_effects"}
"""Options of ``design="matched"`` besides the common ones and those passed on to :func:`pleval.match`:
``vcov`` (the matched effect's covariance; "" = CR2 by school, CR1 by student without a school column),
``sensitivity`` (the sensitivity analysis, :func:`pleval.sensitivity.sensitivity`),
``placebo_outcome`` (a pre-program score analysed as a negative-control outcome; "" for none),
``hl_gammas`` (Γ values at which to add the Hodges–Lehmann range and interval),
``rosenbaum_direction`` (the Rosenbaum test's direction: "" = the estimate's sign, chosen from the
data, tested two-sided; "greater" or "less" = the sign of the effect on the outcome's scale fixed
in advance, tested one-sided at α), ``school_sensitivity`` (each PL school's robustness values in
the school table: ``school_effects(..., robustness_q=1)``), ``placebo_cap`` (:data:`PLACEBO_CAP`) and ``df_working`` (the
working model of the matched effect's and the subgroups' CR2 df, :func:`pleval.inference.ols`)."""

Progress = Callable[..., None]


def _no_progress(message: str, done: int | None = None, total: int | None = None) -> None:
    return None


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------
_TABLES = (
    "data_summary",
    "overall",
    "balance",
    "equivalence",
    "attrition",
    "schools",
    "heterogeneity",
    "placebo",
    "propensity",
    "sensitivity",
    "dropped",
    "rating",
    "subgroups",
    "subgroup_tests",
    "equity",
    "moderators",
    "outcomes",
    "randomization",
    "bootstrap",
)


@dataclass(frozen=True, repr=False, eq=False)
class Evaluation(ResultMixin):
    """Everything :func:`estimate` found, immutable; every table property returns a copy.

    Tables (DataFrames): :attr:`data_summary`, :attr:`overall`, :attr:`balance`,
    :attr:`equivalence`, :attr:`attrition`, :attr:`schools`, :attr:`heterogeneity`,
    :attr:`placebo`, :attr:`propensity`, :attr:`sensitivity`, :attr:`dropped`, :attr:`rating`. The ``plot_*``
    methods draw with
    :mod:`pleval.plots`; :func:`pleval.report.save` writes the outputs folder and report.

    Attributes
    ----------
    design : str
        The design, ``"matched"`` or ``"rct"``.
    method : str
        The design's method.
    columns : Columns
        The :class:`~pleval.data.Columns` used.
    subjects : tuple
        The subjects analysed (``("all",)`` without a subject column).
    effects : Mapping
        Subject -> the primary :class:`~pleval._results.Effect` (three scales).
    options : Mapping
        Every option, resolved (what ``run.toml`` records).
    provenance : Mapping
        Package versions, input path and SHA-256, seed, time.
    warnings : tuple
        The warnings raised while estimating (also re-issued as ``PlevalWarning``).
    notes : tuple
        Facts worth knowing about this run (e.g. optional columns not found).
    ratings : Mapping
        Subject -> its :class:`~pleval.rating.Rating` (WWC rating and ESSA tier with reasons).
    outcome_ratings : Mapping
        ``(subject, outcome)`` -> the Rating of each further outcome (``outcomes=``).
    checks : CheckReport
        The data checks run before anything was computed (:func:`pleval.check`); their
        warnings head the printed output and the report's "Data checks" section.
    details : Mapping
        The underlying design / school-effects results per subject, for further analysis.
    """

    design: str
    method: str
    columns: Columns
    subjects: tuple[str, ...]
    effects: Mapping[str, Effect]
    options: Mapping[str, Any]
    provenance: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    ratings: Mapping[str, Any] = field(default_factory=dict)
    checks: Any = None
    outcome_ratings: Mapping[Any, Any] = field(default_factory=dict)
    _tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    # ---- tables ------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """A copy of one of the tables (:data:`_TABLES`): a shallow one, which pandas'
        copy-on-write keeps apart from the evaluation's whatever is done to it (a change copies
        what it changes; its arrays are read-only views), made without copying a value (the
        propensity table has a row per matched row: ten million at 10M rows, and the report
        reads it three times)."""
        if name not in _TABLES:
            raise KeyError(f"no table {name!r}; tables are {', '.join(_TABLES)}")
        return self._tables.get(name, pd.DataFrame()).copy(deep=False)

    data_summary = property(lambda self: self.table("data_summary"), doc="Rows read, kept, dropped (and why).")
    overall = property(lambda self: self.table("overall"), doc="Overall effects: subject × analysis × scale.")
    balance = property(lambda self: self.table("balance"), doc="Standardized differences before/after, by subject.")
    equivalence = property(lambda self: self.table("equivalence"), doc="WWC baseline equivalence, by subject.")
    attrition = property(lambda self: self.table("attrition"), doc="WWC attrition (randomized trials).")
    schools = property(lambda self: self.table("schools"), doc="One row per school and subject.")
    heterogeneity = property(lambda self: self.table("heterogeneity"), doc="Meta-analysis and counts by subject.")
    placebo = property(lambda self: self.table("placebo"), doc="Placebo-school estimates, by subject.")
    rating = property(lambda self: self.table("rating"), doc="WWC rating and ESSA tier: every step, by subject.")
    subgroup_tests = property(lambda self: self.table("subgroup_tests"),
                              doc="Equality of effects across each subgroup's levels, and the last − first difference.")
    equity = property(lambda self: self.table("equity"), doc="Change in the achievement and FRL gaps, with CIs.")
    randomization = property(lambda self: self.table("randomization"),
                             doc="Randomization test of the trial's ITT, by subject (``permutations`` > 0).")
    bootstrap = property(lambda self: self.table("bootstrap"),
                         doc="Wild cluster bootstrap test and CI of the trial's ITT, by subject (``bootstrap`` > 0).")
    moderators = property(lambda self: self.table("moderators"),
                          doc="Meta-regression of the school effects on context moderators, by subject.")
    outcomes = property(lambda self: self.table("outcomes"),
                        doc="Every outcome of the run × subject on its own scale, p adjusted within domain (outcomes.csv).")

    def subgroups(self, subject=None) -> pd.DataFrame:
        """Subgroup effects on three scales (one row per subject × subgroup × level; ``subject``
        selects one subject), p-values adjusted across every subgroup row of the run."""
        t = self.table("subgroups")
        return t if subject is None or not len(t) else t[t["subject"] == self._subject(subject)].reset_index(drop=True)
    propensity = property(lambda self: self.table("propensity"), doc="Propensity scores (matched designs).")
    sensitivity = property(lambda self: self.table("sensitivity"),
                           doc="Sensitivity to unobserved confounding, by subject (matched designs; sensitivity.csv).")
    dropped = property(lambda self: self.table("dropped"), doc="Rows and schools left out, by stage and reason.")

    @property
    def school_effects(self):
        """The :class:`~pleval.heterogeneity.SchoolEffects` behind :attr:`schools` (every subject;
        ``None`` when the design has no school effects): for meta-regression, export, ..."""
        for d in self.details.values():
            if "schools" in d:
                return d["schools"]
        return None

    # ---- numbers -----------------------------------------------------------------------
    def _subject(self, subject) -> str:
        if subject is None:
            return self.subjects[0]
        s = str(subject)
        if s not in self.subjects:
            raise KeyError(f"no subject {subject!r}; subjects are {', '.join(self.subjects)}")
        return s

    def effect(self, subject=None) -> Effect:
        """The primary effect for ``subject`` (the first subject by default)."""
        return self.effects[self._subject(subject)]

    def sentence(self, subject=None) -> str:
        """One plain-language sentence on the effect for ``subject`` (with the p adjusted within the
        outcome's domain when other outcomes share it)."""
        s = self._subject(subject)
        e = self.effects[s]
        p0 = e.baseline_percentile
        pp, es = e.percentile_points, e.effect_size
        where = f"In {s}, a" if s != ALL else "A"
        lvl = f"{es.level:.0%}"
        return unsigned_zeros(
            f"{where} student who would have scored at the {percentiles._ordinal(p0, exact=True)} percentile without "
            f"personalized learning would score at about the {percentiles._ordinal(p0 + pp.estimate)} with it "
            f"({pp.estimate:+.1f} percentile points, {lvl} CI {fmt_ci(pp.ci_low, pp.ci_high, 1, True)}; "
            f"effect size {es.estimate:.3f} SD, {lvl} CI {fmt_ci(es.ci_low, es.ci_high, 3)}; "
            f"{p_clause(es.pvalue, self.options['alpha'])}{domain_clause(self, s)})."
        ) + self._detectable(s)

    def mdes(self, subject=None) -> float:
        """Minimum detectable effect (SD, 80% power, the run's α) of the primary analysis for ``subject``."""
        s = self._subject(subject)
        ov = self.overall
        row = ov[(ov["subject"] == s) & ov["primary"] & (ov["scale"] == "effect size")]
        return float(row["mdes"].iloc[0]) if len(row) and "mdes" in row else math.nan

    def _detectable(self, s: str) -> str:
        from .power.posthoc import detectable_sentence

        e = self.effects[s]
        text = detectable_sentence(e.effect_size.pvalue, float(self.options["alpha"]), self.mdes(s), e.baseline_percentile)
        return " " + text if text else ""

    def to_frame(self) -> pd.DataFrame:
        """The overall effects (one row per subject × analysis × scale)."""
        return self.overall

    def summary(self) -> str:
        from .findings import text_summary

        return text_summary(self)

    def _repr_html_(self) -> str:
        from .findings import html_fragment

        return html_fragment(self)

    # ---- plots (drawn by pleval.plots) ----------------------------------------------------
    def plot_forest(self, subject=None, *, shrunk: bool = True):
        """Forest / caterpillar plot of the school effects (:func:`pleval.plots.evaluation_forest`)."""
        from .plots import evaluation_forest

        return evaluation_forest(self, self._subject(subject), shrunk=shrunk)

    def plot_subgroups(self, subject=None):
        """Subgroup forest plot (:func:`pleval.plots.evaluation_subgroups`)."""
        from .plots import evaluation_subgroups

        return evaluation_subgroups(self, self._subject(subject))

    def plot_love(self, subject=None):
        """Love plot of covariate balance (:func:`pleval.plots.evaluation_love`)."""
        from .plots import evaluation_love

        return evaluation_love(self, self._subject(subject))

    def plot_sensitivity(self, subject=None):
        """Sensitivity contour plot, matched designs (:func:`pleval.plots.evaluation_sensitivity`)."""
        from .plots import evaluation_sensitivity

        return evaluation_sensitivity(self, self._subject(subject))

    def plot_overlap(self, subject=None):
        """Propensity-score overlap, matched designs (:func:`pleval.plots.evaluation_overlap`)."""
        from .plots import evaluation_overlap

        return evaluation_overlap(self, self._subject(subject))

    def plot_percentiles(self, subject=None):
        """Effect size -> percentile points, with this estimate marked."""
        from .plots import evaluation_percentiles

        return evaluation_percentiles(self, self._subject(subject))

    def plot_distribution(self, subject=None):
        """Distribution of school effects with the estimated true-effect distribution."""
        from .plots import evaluation_distribution

        return evaluation_distribution(self, self._subject(subject))


# --------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------
def _match_parameters() -> dict[str, inspect.Parameter]:
    from .matching import match

    sig = inspect.signature(match)
    return {k: p for k, p in list(sig.parameters.items())[2:] if k not in ("method", "seed") and p.kind is not p.VAR_KEYWORD}


def with_pretest_bands(df: pd.DataFrame, columns: Columns, cuts) -> pd.DataFrame:
    """``df`` with the :data:`~pleval.subgroups.BAND` column of :func:`~pleval.subgroups.pretest_bands`:
    each row's band of the pretest ranked within grade × subject over ``df``'s rows."""
    if BAND in df.columns:
        raise DataError(f"column {BAND!r} exists in the data; pleval computes it for subgroups=({BAND!r}, ...)")
    if not columns.pretest:
        raise DataError(f"subgroup {BAND!r} needs a pretest column (columns.pretest)")
    return df.assign(**{BAND: pretest_bands(df, columns.main_pretest, band_groups(columns), cuts)})


def resolve_options(design: str, method: str | None, options: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Check ``options`` for ``design`` and fill in the defaults.

    Returns ``(method, options, passthrough)``: the resolved method, every pleval option with
    its value, and the options passed on to :func:`pleval.match`. Raises :class:`DataError`
    naming an unknown or invalid option.
    """
    if design not in DESIGNS:
        raise DataError(f"design must be one of {', '.join(DESIGNS)}; got {design!r}")
    opts = dict(COMMON_DEFAULTS)
    passthrough: dict[str, Any] = {}
    if design == "rct":
        method = method or "ols"
        if method not in RCT_METHODS:
            raise DataError(f"method for design='rct' must be one of {', '.join(RCT_METHODS)}; got {method!r}")
        opts.update(RCT_DEFAULTS)
        known = set(opts)
        match_params: dict = {}
    else:
        method = method or "propensity"
        if method not in MATCH_METHODS:
            raise DataError(f"method for design='matched' must be one of {', '.join(MATCH_METHODS)}; got {method!r}")
        opts.update(MATCHED_DEFAULTS)
        match_params = _match_parameters()
        known = set(opts) | set(match_params)
    for k, v in options.items():
        if k not in known or k.startswith("_"):  # (pleval.match's private arguments are not options)
            import difflib

            public = sorted(n for n in known if not n.startswith("_"))
            near = difflib.get_close_matches(str(k), public, n=2)
            raise DataError(
                f"unknown option {k!r} for design={design!r}" + (f" (did you mean {' or '.join(map(repr, near))}?)"
                                                                 if near else "") + f"; known options: {', '.join(public)}"
            )
        if k in match_params and k not in opts:
            kind = str(match_params[k].annotation)
            if (kind in ("bool", "bool | None") and not isinstance(v, (bool, np.bool_, type(None)))) or \
                    (kind == "float | bool | None" and isinstance(v, str)):
                raise DataError(f"option {k} must be true or false{' or a number' if 'float' in kind else ''}; "
                                f"got {v!r}")
            passthrough[k] = v
        else:
            opts[k] = v
    _check_common(opts)
    if design == "rct":
        if opts["rct_design"] not in ("individual", "blocked", "cluster"):
            raise DataError(f"option rct_design must be 'individual', 'blocked' or 'cluster'; got {opts['rct_design']!r}")
        for k in ("permutations", "bootstrap"):
            if isinstance(opts[k], bool) or not (isinstance(opts[k], (int, np.integer)) and opts[k] >= 0):
                raise DataError(f"option {k} must be a whole number >= 0; got {opts[k]!r}")
        if not isinstance(opts["lin"], (bool, np.bool_)):
            raise DataError(f"option lin must be true or false; got {opts['lin']!r}")
        if opts["bootstrap_weights"] not in ("rademacher", "webb"):
            raise DataError(f"option bootstrap_weights must be 'rademacher' or 'webb'; got {opts['bootstrap_weights']!r}")
        if opts["interaction_test"] not in ("HTZ", "F"):
            raise DataError(f"option interaction_test must be 'HTZ' or 'F'; got {opts['interaction_test']!r}")
        if opts["gt_df"] not in ("N-2", "h"):
            raise DataError(f"option gt_df must be 'N-2' or 'h'; got {opts['gt_df']!r}")
        icc = opts["icc"]
        if icc is None or (isinstance(icc, str) and icc.strip().lower() == "none"):
            opts["icc"] = "none"  # recorded as text: run.toml has no null
        elif isinstance(icc, bool) or not isinstance(icc, (int, float)) or not 0 <= icc < 1:
            raise DataError(f"option icc must be a number in [0, 1) or 'none'; got {icc!r}")
    _check_rating_options(opts, design)
    _check_subgroup_options(opts)
    check_outcome_options(opts)
    if design == "matched":
        _check_matched(opts)
    if isinstance(opts["n_placebo"], bool) or not (isinstance(opts["n_placebo"], (int, np.integer)) and opts["n_placebo"] >= 0):
        raise DataError(f"option n_placebo must be a whole number >= 0; got {opts['n_placebo']!r}")
    if opts["workers"] is None:
        opts["workers"] = default_workers()
    if isinstance(opts["workers"], bool) or not (isinstance(opts["workers"], (int, np.integer)) and opts["workers"] >= 1):
        raise DataError(f"option workers must be a whole number >= 1; got {opts['workers']!r}")
    opts["workers"] = int(opts["workers"])
    return method, opts, passthrough


ESSA_ALPHA = 0.05
"""The level of ESSA's (and the WWC's) "statistically significant" in the rating: fixed, so that
``alpha`` (the school counts' level) cannot move an ESSA tier (``alpha=0.2`` rated a p = 0.18
estimate "Moderate" beside a headline calling it not significant)."""


def _check_rating_options(o: dict, design: str) -> None:
    if isinstance(o["confounds"], str):
        o["confounds"] = (o["confounds"],)
    if not (isinstance(o["confounds"], (list, tuple)) and all(isinstance(c, str) and c.strip() for c in o["confounds"])):
        raise DataError(f"option confounds must be a list of descriptions (text); got {o['confounds']!r}")
    o["confounds"] = tuple(c.strip() for c in o["confounds"])
    flags = ("overriding_negative",) + (("joiners", "compromised") if design == "rct" else ())
    for k in flags:
        if o[k] is not None and not isinstance(o[k], (bool, np.bool_)):
            raise DataError(f"option {k} must be true or false; got {o[k]!r}")
    if design == "rct" and o["boundary"] not in ("cautious", "optimistic"):
        raise DataError(f"option boundary must be 'cautious' or 'optimistic'; got {o['boundary']!r}")


def _check_subgroup_options(o: dict) -> None:
    from .subgroups import pretest_bands

    for k in ("subgroups", "bands"):
        if isinstance(o[k], str):
            o[k] = tuple(x.strip() for x in o[k].split(",") if x.strip())
        if not isinstance(o[k], (list, tuple)):
            raise DataError(f"option {k} must be a list; got {o[k]!r}")
    if not all(isinstance(x, str) and x for x in o["subgroups"]):
        raise DataError(f"option subgroups must be column names (or pretest_band); got {o['subgroups']!r}")
    try:
        o["bands"] = tuple(float(x) for x in o["bands"])
    except (TypeError, ValueError):
        raise DataError(f"option bands must be percents, e.g. 25,50,75; got {o['bands']!r}") from None
    o["subgroups"] = tuple(dict.fromkeys(o["subgroups"]))
    if isinstance(o["moderators"], str):
        o["moderators"] = tuple(x.strip() for x in o["moderators"].split(",") if x.strip())
    if not (isinstance(o["moderators"], (list, tuple)) and all(isinstance(x, str) and x for x in o["moderators"])):
        raise DataError(f"option moderators must be school-level column names; got {o['moderators']!r}")
    o["moderators"] = tuple(dict.fromkeys(o["moderators"]))
    if not isinstance(o["moderator_kh"], (bool, np.bool_)):
        raise DataError(f"option moderator_kh must be true or false; got {o['moderator_kh']!r}")
    pretest_bands(pd.DataFrame({"p": [0.0]}), "p", cuts=o["bands"])  # checks the cut points


def _check_matched(o: dict) -> None:
    for k in ("sensitivity", "school_sensitivity"):
        if not isinstance(o[k], (bool, np.bool_)):
            raise DataError(f"option {k} must be true or false; got {o[k]!r}")
    if not isinstance(o["placebo_outcome"], str):
        raise DataError(f"option placebo_outcome must be a column name (or empty); got {o['placebo_outcome']!r}")
    if isinstance(o["placebo_cap"], bool) or not (isinstance(o["placebo_cap"], (int, np.integer)) and o["placebo_cap"] >= 0):
        raise DataError(f"option placebo_cap must be a whole number >= 0; got {o['placebo_cap']!r}")
    g = o["hl_gammas"]
    g = [g] if isinstance(g, (int, float)) and not isinstance(g, bool) else g
    if not isinstance(g, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in g):
        raise DataError(f"option hl_gammas must be a list of numbers >= 1; got {o['hl_gammas']!r}")
    o["hl_gammas"] = ()
    if g:  # the rule of Rosenbaum bounds (finite, at least 1); its module imported only then
        from .sensitivity.rosenbaum import check_gammas

        o["hl_gammas"] = tuple(float(x) for x in check_gammas(g, "option hl_gammas"))
    if o["rosenbaum_direction"] != "":  # fixed in advance: checked by the bounds' own rule (module imported only then)
        from .sensitivity.rosenbaum import check_direction

        o["rosenbaum_direction"] = check_direction(o["rosenbaum_direction"], "option rosenbaum_direction") or ""


def _check_common(o: dict) -> None:
    sd = o["sd"]
    if isinstance(sd, bool) or not (sd in ("pooled", "comparison") or (isinstance(sd, (int, float)) and math.isfinite(sd) and sd > 0)):
        raise DataError(f"option sd must be 'pooled', 'comparison' or a positive number (a norm SD); got {sd!r}")
    if not (isinstance(o["level"], (int, float)) and 0 < o["level"] < 1):
        raise DataError(f"option level must lie strictly between 0 and 1; got {o['level']!r}")
    if not (isinstance(o["alpha"], (int, float)) and 0 < o["alpha"] < 1):
        raise DataError(f"option alpha must lie strictly between 0 and 1; got {o['alpha']!r}")
    if not (isinstance(o["baseline_percentile"], (int, float)) and 0 < o["baseline_percentile"] < 100):
        raise DataError(f"option baseline_percentile must lie strictly between 0 and 100; got {o['baseline_percentile']!r}")
    if o["meta_method"] not in META_METHODS:
        raise DataError(f"option meta_method must be one of {', '.join(META_METHODS)}; got {o['meta_method']!r}")
    if o["adjust"] not in ADJUST:
        raise DataError(f"option adjust must be one of {', '.join(ADJUST)}; got {o['adjust']!r}")
    for k in ("hartung_knapp", "placebo"):
        if not isinstance(o[k], (bool, np.bool_)):
            raise DataError(f"option {k} must be true or false; got {o[k]!r}")
    check_conventions(o["cluster_df"], o["cr2"])
    if o["school_cr2"] not in CR2_FORMS:
        raise DataError(f"option school_cr2 must be one of {', '.join(CR2_FORMS)}; got {o['school_cr2']!r}")
    if o.get("vcov") and o["vcov"] not in VCOVS:
        raise DataError(f"option vcov must be one of {', '.join(VCOVS)}; got {o['vcov']!r}")
    if "df_working" in o and o["df_working"] not in DF_WORKING:
        raise DataError(f"option df_working must be one of {', '.join(DF_WORKING)}; got {o['df_working']!r}")


def default_columns(df: pd.DataFrame, design: str) -> tuple[Columns, list[str]]:
    """The sample-data roles (:data:`pleval.data.SAMPLE_COLUMNS`, or ``RCT_SAMPLE_COLUMNS`` for
    ``design="rct"``), keeping only optional roles whose column is in ``df``
    (:func:`pleval.data.resolve_columns`)."""
    return resolve_columns(df, RCT_SAMPLE_COLUMNS if design == "rct" else SAMPLE_COLUMNS)


# --------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------
def estimate(
    df: pd.DataFrame | str | Path,
    columns: Columns | Mapping[str, Any] | None = None,
    design: Literal["matched", "rct"] = "matched",
    method: str | None = None,
    subject: str | None = None,
    seed: int = 0,
    *,
    progress: Progress | None = None,
    checked=None,
    matcher: Callable | None = None,
    placebo_rounds=None,
    while_waiting: Callable | None = None,
    **options,
) -> Evaluation:
    """Evaluate a PL program from a student file: design diagnostics, overall effect by
    subject, school effects with their meta-analysis, and provenance.

    Parameters
    ----------
    df : DataFrame or path
        Long student file (one row per student × subject), or a path read with
        :func:`pleval.data.read_table`.
    columns : Columns or mapping of roles, optional
        Column roles. Default: the sample files' roles (:data:`pleval.data.SAMPLE_COLUMNS`;
        :data:`~pleval.data.RCT_SAMPLE_COLUMNS` for ``design="rct"``), keeping optional roles
        only where the column exists.
    design : ``"matched"`` (PL schools against matched comparison students) or ``"rct"``.
    method : matched: ``"propensity"`` (default), ``"mahalanobis"``, ``"vcg"``,
        ``"weighting"``, ``"optimal"``, ``"full"``, ``"subclass"``, ``"cem"``, ``"exact"``,
        ``"ebal"``; rct: ``"ols"`` (default), ``"cluster_means"``, ``"mixedlm"``,
        ``"random_blocks"`` (the blocks' effects averaged, K − 1 df: :func:`pleval.rct.analyze_rct`).
    subject : analyse only this subject (default: every subject, each separately).
    seed : seed of the remaining random steps (placebo sampling, permutations); matching has
        none (ties are kept, :mod:`pleval.matching.nearest`).
    progress : callable ``progress(message, done=None, total=None)`` told of each step.
    checked : CheckReport, optional
        The report of :func:`pleval.check` on this same ``df`` (its resolved columns are
        used); without it the checks run here. Data that differ from those checked (a frame
        fixed in place since: its hash differs from the report's) are checked again here, with
        a :class:`~pleval.errors.PlevalWarning`, and that check is used. Either way an error
        stops the run before anything is computed (:class:`~pleval.errors.DataError`, the
        check's one line) and the warnings are issued as :class:`~pleval.errors.PlevalWarning`.
        A report of ``check(df, ..., keep_validated=True)`` on this very frame object also
        gives its validation of the data (:meth:`~pleval.checks.CheckReport.take_validated`),
        so that the data are validated once.
    matcher : callable, optional
        Used instead of :func:`pleval.match` (same arguments, returns a ``MatchResult``):
        :func:`pleval.pool.estimate_pool` passes the match of a comparison pool given apart.
    placebo_rounds : optional
        Where placebo schools come from and are re-matched (``rounds=`` of
        :func:`pleval.heterogeneity.placebo.placebo_schools`; default: ``df``):
        :func:`pleval.pool.estimate_pool` passes the pool's.
    while_waiting : callable, optional
        ``while_waiting(preview, pending)``, called in this process once for a matched design
        with placebo schools: where a worker process runs the placebo rounds (``workers`` ≥ 2),
        as soon as the effects, balance and sensitivity analysis are estimated, before the PL
        schools' effects; where they run here next (one process, or a file of more than 3M
        rows), after the PL schools' effects. ``preview`` is an :class:`Evaluation` holding what
        is already final (the effects, the balance, equivalence and sensitivity tables, the
        propensity scores when a worker runs the rounds (in one process they are formed after
        them) and the design and sensitivity details, each as in the evaluation returned; every
        other table empty); ``pending()``, which processes forked in the call may call too, is
        True while the worker still runs and this process still estimates the PL schools'
        effects (always False without a worker). :class:`pleval.report.EarlyFigures` draws the
        figures of the preview that way. Not called otherwise (``placebo=False``, a trial).
        Its warnings are raised after the evaluation's, not made part of it.

    Other Parameters
    ----------------
    sd : str or float
        ``"pooled"`` (default, WWC), ``"comparison"`` or a norm SD (a number).
    level : float
        Confidence level (0.95).
    baseline_percentile : float
        Baseline percentile for percentile points (50).
    meta_method : str
        τ² estimator of the school meta-analysis: ``"REML"`` (default), ``"ML"``, ``"DL"``,
        ``"PM"``, ``"EB"``, ``"HE"``, ``"SJ"`` or ``"FE"`` (metafor's names).
    hartung_knapp : bool
        Hartung–Knapp SE and t(k − 1) reference for the pooled school effect (default True: with
        few schools the z interval covers too little; see docs/validation.md).
    adjust : str
        Multiplicity adjustment of school p-values: ``"bh"`` (default), ``"holm"``, ``"bonferroni"``.
    alpha : float
        Significance level for the counts of significant schools (0.05).
    placebo : bool
        Estimate placebo schools (True).
    n_placebo : int
        How many comparison schools play PL (0 = the default: every comparison school, each
        once, up to ``placebo_cap`` in a matched design; a trial caps the stacked rows, see
        :data:`PLACEBO_MAX_ROWS`).
    placebo_cap : int
        Matched designs: the default number of placebo schools is at most this many
        (:data:`PLACEBO_CAP`, 300; 0 = every comparison school).
    workers : int
        Processes (default: 2, or 1 with one core; 1 = everything in this one). Matched
        designs run the placebo rounds in a second, forked process beside the main analysis
        where the system can fork and the memory allows (:func:`_placebo_in_worker`);
        :func:`pleval.report.save` draws the figures in two. The results do not depend on it.
    rct_design : str
        ``"cluster"`` (default), ``"blocked"`` or ``"individual"``.
    vcov : str
        Covariance of the overall effect: ``"CR2"``, ``"CR1"``, ``"CR0"``, ``"HC2"``, ``"HC1"``,
        ``"HC0"``, ``"classical"`` (default ``""``: CR2 by school for cluster trials and matched
        designs, HC2 for individual trials, CR1 by student for matched data without schools).
    cluster_df : str
        ``"G-1"`` (default, Stata: CR1 factor G/(G−1)·(n−1)/(n−k), G − 1 df) or ``"G-p"``
        (metafor's ``robust()``: G/(G−p), G − p df) for CR1/CR0 (:func:`pleval.inference.ols`).
    cr2 : str
        Weighted CR2 form: ``"transformed"`` (default; CR2 of the √W-transformed model) or
        ``"clubsandwich"`` (clubSandwich's) of the overall effect. Matched designs only (their
        weights vary within school).
    school_cr2 : str
        The weighted CR2 form of the school effects' joint covariance and the placebo schools
        (:func:`pleval.heterogeneity.school_effects`): ``"clubsandwich"`` (default; working model
        Φ = I on the distinct students, unbiased whatever the matching weights) or
        ``"transformed"``. Equal when weights are constant within each school's set (RCT sites).
    lin, icc, gt_df, bootstrap, bootstrap_weights, interaction_test :
        rct: Lin (2013) adjustment, the ICC of the Hedges (2007) g_T row (0.20; ``"none"``: no row)
        and the df of its ω (``"N-2"`` or ``"h"``),
        wild cluster bootstrap draws (0: none) and weights, and the subgroup equality test
        (:func:`pleval.rct.analyze_rct`).
    permutations : int
        Randomization-test draws (0 = none).
    compliance : bool
        Estimate the CACE when a take-up column is given.
    outcomes : list of str
        Further outcomes analysed beside ``columns.outcome`` (the primary), each on its own scale:
        scores on three scales, yes/no outcomes in percentage points with the Cox index
        (:mod:`pleval.outcomes`, :mod:`pleval.binary`); table :attr:`Evaluation.outcomes`.
    domains : mapping
        Outcome -> domain for the multiplicity correction within subject × domain (default:
        every outcome in ``"achievement"``).
    binary_method : str
        ``"logit"`` (default) or ``"lpm"`` (linear-probability model) for yes/no outcomes.
    lower_is_better : list of str
        Outcomes whose favourable direction is down (e.g. days absent), for the rating and tier.

    Notes
    -----
    All options have defaults and are recorded in ``Evaluation.options``. Any other keyword of
    :func:`pleval.match` (``caliper``, ``k``, ``replace``, ...) is passed on
    for matched designs. An unknown option raises :class:`~pleval.errors.DataError`.
    """
    progress = progress or _no_progress
    method, opts, match_opts = resolve_options(design, method, options)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise DataError(f"seed must be a whole number; got {seed!r}")
    if columns is not None:
        columns = as_columns(columns)
    if isinstance(df, (str, Path)):
        progress("reading the data")
        df = read_table(df, ids=partial(id_columns, design=design, columns=columns))  # ids read as text in full ('0042')
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a DataFrame or a file path; got {type(df).__name__}")
    hashed_file = bool(df.attrs.get("sha256"))
    checked_frame = df  # the frame a report given as ``checked`` is of
    if not hashed_file and len(df):
        # Hash the frame once (a shallow copy: the caller's frame is untouched); the design
        # modules' own validation reuses it instead of hashing again.
        df = df.copy(deep=False)
        df.attrs["sha256"] = frame_sha256(df)
    as_given = df  # while df is this frame, the checks' validation of checked_frame is that of df
    notes: list[str] = []
    progress("checking the data")
    if checked is not None:  # a report of a frame changed since: checked again (with a warning)
        fresh = current_report(df, checked, design)
        if fresh is not checked:
            checked, checked_frame = fresh, df
    if checked is None:
        checked, checked_frame = check(df, columns, design=design, keep_validated=True), df
    checked.raise_errors()
    checked = checked.used_also([*opts["subgroups"], *opts["moderators"], *opts["outcomes"],
                                 *([opts["placebo_outcome"]] if opts.get("placebo_outcome") else [])])
    columns = checked.columns
    df, work = with_binary_treatment(df, columns)  # the label is applied once, here
    plan = outcome_plan(df, columns.outcome, opts)
    df = binary_frame(df, plan)  # yes/no outcomes coded 1/0
    for p in checked.warnings:  # kept apart from ev.warnings: the report shows them under "Data checks"
        warnings.warn(p.line, PlevalWarning, stacklevel=2)
    if BAND in opts["subgroups"] and matcher is None:  # (a comparison pool's PL rows have theirs: estimate_pool)
        df = with_pretest_bands(df, columns, opts["bands"])
    # a matched design regresses the PL schools' effects: their levels (a trial's: every school's)
    df, mod_terms = _moderator_terms(df, opts["moderators"],
                                     (df[work.treatment] == 1).to_numpy() if design == "matched" else None,
                                     school=columns.school)
    design_opts = {**opts, "_moderator_terms": tuple(mod_terms)}  # the school-effects step carries the terms
    resolved = {
        "design": design,
        "method": method,
        "subject": subject,
        "seed": int(seed),
        **opts,
        **({"match": dict(match_opts)} if match_opts else {}),
    }
    early: list = []  # the warnings of while_waiting
    hook = None if while_waiting is None else partial(_call_while_waiting, while_waiting, method, columns, resolved,
                                                      early)
    progress("validating the data")
    with warnings.catch_warnings(record=True) as caught, limited(opts["workers"]):  # threads within `workers`
        warnings.simplefilter("always")
        need = ("outcome", "treatment", "school")
        # a trial's rows are those of its randomized sample: a row missing a pretest or covariate is
        # attrition, counted by the trial's own analysis per subject (not dropped here as well)
        roles = randomized_columns(work) if design == "rct" else work
        v = checked.take_validated(checked_frame, roles, need)  # the report gives it up either way
        if v is None or df is not as_given:  # else the checks' own validation is that of df
            v = validate(df, roles, require=need)
        subjects, sub_df, left_out = _subjects(v, df, subject)
        if design == "rct":
            parts = _run_rct(sub_df, work, subjects, method, int(seed), design_opts, progress)
        else:
            # the subjects' rows by their value, not their index labels (a frame may repeat labels)
            v_sub = v if left_out is None else dataclasses.replace(
                v, data=v.data[v.data[columns.subject].isin(subjects).to_numpy()])
            while True:  # again without a subject none of whose PL rows found a comparison (rare)
                try:
                    parts = _run_matched(sub_df, v_sub, work, subjects, method, int(seed), design_opts, match_opts,
                                         progress, matcher, placebo_rounds, hook)
                    break
                except _NoComparison as exc:
                    subjects, sub_df, v_sub, left_out = exc.left_out(subjects, sub_df, v_sub, left_out)
    warn_msgs = tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, Warning)))
    for msg in warn_msgs:
        warnings.warn(msg, PlevalWarning, stacklevel=2)
    for w in early:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    keys = [ALL if s is None else str(s) for s in subjects]
    tables = _with_mdes(_assemble(keys, parts, v, left_out), opts)
    if design == "matched":
        lost = _pl_schools_left_out(sub_df, v, columns, keys, subjects, tables["schools"])
        if lost is not None:
            tables["dropped"] = _concat([tables["dropped"], lost])
            notes.append(f"{len(lost):,} PL school × subject(s) left out of the school effects, every row of theirs "
                         f"dropped before them: {', '.join(dict.fromkeys(lost['school']))} (the dropped table says why)")
            tables["dropped"] = tables["dropped"].drop(columns="school")
    tables.update(_subgroup_tables(keys, parts, opts))
    tables["moderators"] = _moderator_table(parts, mod_terms, opts, notes)
    up = columns.outcome not in opts["lower_is_better"]
    ratings = {k: _rate(design, p, s, sub_df, columns, opts, up) for k, p, s in zip(keys, parts, subjects)}
    outcome_ratings: dict = {}
    if opts["outcomes"]:
        progress("further outcomes")
        tables["outcomes"], outcome_ratings, primary, more = outcome_table(design, plan, keys, subjects, parts, sub_df,
                                                                           work, opts, ratings, _rate)
        ratings.update(primary)
        tables["overall"] = _with_outcomes(tables["overall"], tables["outcomes"], columns.outcome)
        notes += more
    tables["rating"] = _concat([_with_subject(r.to_frame(), k) for k, r in ratings.items()]
                               + [_with_subject(r.to_frame(), k[0]) for k, r in outcome_ratings.items()])
    if len(tables["overall"]):
        ov = tables["overall"]
        key = ov["subject"] + ("\x1f" + ov["outcome"] if "outcome" in ov else "")
        at = {k: r for k, r in ratings.items()} if "outcome" not in ov else {
            f"{s}\x1f{o}": ratings[s] if o == columns.outcome else outcome_ratings[(s, o)]
            for s, o in zip(ov["subject"], ov["outcome"])}
        ov["wwc_rating"] = key.map({k: r.wwc_rating for k, r in at.items()})
        ov["essa_tier"] = key.map({k: r.essa_tier for k, r in at.items()})
    prov = provenance(df, v, seed=int(seed), hashed_file=hashed_file)
    # the covariance used: the option's "" is the design's default, which a re-run with another design
    # would change, so the options keep it and the record names what it was (before 2026-12-04 nothing did)
    prov["vcov_used"] = resolved["vcov"] or default_vcov(opts["rct_design"] if design == "rct" else design,
                                                         columns.school)
    prov["rating"] = {k: r.as_dict() for k, r in ratings.items()}
    m = parts[0].get("details", {}).get("design") if design == "matched" else None
    if m is not None:  # every matching option as the match resolved it, given or default
        mo = dict(m.options)
        if m.method == "propensity" and mo.get("conventions") != "matchit" and mo.get("caliper") is None:
            from .matching.propensity import DEFAULT_CALIPER

            mo["caliper"] = DEFAULT_CALIPER  # (the default's value, in SDs of the logit propensity score)
        prov["match_options"] = json.loads(json.dumps(mo, default=str))
    plc = next((p["details"]["placebo"] for p in parts if "placebo" in p.get("details", {})), None)
    if plc is not None:
        prov["placebo"] = plc.extent()
    if opts["outcomes"]:
        keep = ["subject", "outcome", "kind", "domain", "estimation", "scale", "estimate", "effect_size", "es_measure",
                "pvalue", "pvalue_adjusted", "wwc_rating", "essa_tier"]
        prov["outcomes"] = [{k: _jsonable(v) for k, v in r.items()} for r in tables["outcomes"][keep].to_dict("records")]
    return Evaluation(
        design=design,
        method=method,
        columns=columns,
        subjects=tuple(keys),
        effects=MappingProxyType({k: p["effect"] for k, p in zip(keys, parts)}),
        options=MappingProxyType(resolved),
        provenance=MappingProxyType(prov),
        warnings=warn_msgs,
        notes=tuple(dict.fromkeys(notes + [n for p in parts for n in p.get("notes", ())])),
        details=MappingProxyType({k: MappingProxyType(p.get("details", {})) for k, p in zip(keys, parts)}),
        ratings=MappingProxyType(ratings),
        outcome_ratings=MappingProxyType(outcome_ratings),
        checks=checked,
        _tables=MappingProxyType(tables),
    )


def _subjects(v: Validated, df: pd.DataFrame, subject) -> tuple[list, pd.DataFrame, pd.DataFrame | None]:
    """The subjects to analyse, the (original, unvalidated) rows that belong to them and the
    dropped-rows entries of the validated rows left out: those of the other subjects when one
    is chosen (``subject=``), else of each subject whose usable rows hold one arm only (which
    :func:`pleval.check` warns of; none: every subject analysed). Each is left out on purpose,
    but counted, as every row left out is."""
    col = v.columns.subject
    if col is None:
        if subject is not None:
            raise DataError(f"subject={subject!r} was given but no subject column is named (columns.subject)")
        return [None], df, None
    present, n1, n0, n_rows = subject_counts(v)
    if subject is not None:
        i = list(present).index(pick_subject(present, subject, col))
        if not (n1[i] and n0[i]):
            raise DataError(one_arm_subject(col, present[i], n1[i], n0[i], n_rows[i]))
        n = len(v.data) - int(n_rows[i])
        out = None if n == 0 else pd.DataFrame({
            "subject": ["(all)"], "reason": [f"another subject (only {present[i]!s} analysed)"], "column": [col],
            "n_rows": [n], "stage": ["subject selection"]})
        return [present[i]], df[df[col].astype(str) == str(present[i])], out
    one = [i for i in range(len(present)) if not (n1[i] and n0[i])]
    if len(one) == len(present):  # (pleval.check reports it)
        raise DataError(f"column {col!r} (subject): no subject has both treated and comparison rows")
    kept = sorted((s for i, s in enumerate(present) if i not in one), key=str)
    if not one:
        return kept, df, None
    out = pd.DataFrame({"subject": ["(all)"] * len(one),
                        "reason": [f"subject {present[i]!s}: " + ("no outcome" if not (n1[i] or n0[i]) else
                                                                  f"no {'treated' if n1[i] == 0 else 'comparison'} rows "
                                                                  "with an outcome") for i in one],
                        "column": [col] * len(one), "n_rows": [int(n_rows[i]) for i in one],
                        "stage": ["subject selection"] * len(one)})
    return kept, df[(df[col].isin(kept) | df[col].isna()).to_numpy()], out  # (rows missing a subject: counted as ever)


def provenance(df: pd.DataFrame, v: Validated, *, seed: int, hashed_file: bool = True) -> dict[str, Any]:
    """Versions, input identity and time, for ``provenance.json``."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for name in ("numpy", "pandas", "scipy", "statsmodels", "linearmodels", "matplotlib"):
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover
            pkgs[name] = None
    return {
        "pleval_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": pkgs,
        "input": {
            "path": df.attrs.get("source"),
            "sha256": v.input_sha256,
            "sha256_of": "file bytes" if hashed_file else "frame content (pleval.data.frame_sha256)",
            "n_rows": int(v.n_input),
            "n_columns": len(file_columns(df)),  # those of the file not read too
            **({"read_options": dict(df.attrs["read_options"])} if df.attrs.get("read_options") else {}),
        },
        "seed": seed,
    }


# --------------------------------------------------------------------------------------
# Designs
# --------------------------------------------------------------------------------------
def _moderator_terms(df: pd.DataFrame, moderators, rows=None, school: str | None = None
                     ) -> tuple[pd.DataFrame, list[str]]:
    """The meta-regression terms of the context moderators: a numeric column as it is; a
    categorical one as 0/1 indicators ``name[level]`` of every level but the first (sorted)
    among ``rows`` (a mask: the rows of the schools whose effects are regressed, e.g. the PL
    rows; default all), added to ``df``. Errors name a missing column, and the rows and schools
    (column ``school``) of a numeric one's infinite values. (Levels from every row
    gave a comparison-only level an indicator of zeros, or made it the reference, and the
    meta-regression stopped as rank deficient.)"""
    from .heterogeneity.school_effects import infinite_moderator

    terms: list[str] = []
    add = {}
    for name in moderators:
        if name not in df.columns:
            raise DataError(f"moderator column {name!r} is not in the data")
        col = df[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            infinite_moderator(df, name, school, rows)
            terms.append(name)
            continue
        text_col = not (pd.api.types.is_bool_dtype(col) or isinstance(col.dtype, pd.CategoricalDtype))
        num = pd.to_numeric(col, errors="coerce") if text_col else None  # (a declared category stays one)
        if num is not None and num.notna().any():
            own, own_num = (col, num) if rows is None else (col[rows], num[rows])  # (by position: labels may repeat)
            text = own.notna() & own_num.isna()
            if not text.any():  # numbers written as text: a number, not a category per value
                infinite_moderator(df, name, school, rows)
                add[name] = num
                terms.append(name)
                continue
            vals = pd.Series(own[text].astype(str).str.strip().unique())
            if vals.str.lower().isin(NA_LIKE).all():  # an R export's NA among numbers: not a level of its own
                raise DataError(
                    f"moderator column {name!r} mixes numbers with text that looks like missing values in "
                    f"{int(text.sum()):,} row(s) ({', '.join(map(repr, vals[:3]))}): as a category each value would be "
                    f"a level of its own; give --na {','.join(vals[:3])} if they mean missing")
        levels = sorted((col if rows is None else col[rows]).dropna().unique(), key=str)
        if len(levels) < 2:
            raise DataError(f"moderator column {name!r} has a single value")
        for lev in levels[1:]:
            add[f"{name}[{lev}]"] = (col == lev).astype(float).where(col.notna())
            terms.append(f"{name}[{lev}]")
    if add:
        attrs = dict(df.attrs)
        df = df.assign(**add)
        df.attrs = attrs
    return df, terms


def _moderator_table(parts: list[dict], terms: list[str], opts: dict, notes: list) -> pd.DataFrame:
    """Meta-regression of the school effects on the moderator terms, one per subject
    (:meth:`pleval.heterogeneity.SchoolEffects.meta_regression`; Knapp–Hartung by default)."""
    se = next((p["details"].get("schools") for p in parts if p["details"].get("schools") is not None), None)
    if not terms or se is None:
        if terms:
            notes.append("moderators: no school effects, so no meta-regression")
        return pd.DataFrame()
    try:
        with warnings.catch_warnings(record=True) as caught:  # schools left out for a missing moderator
            warnings.simplefilter("always")
            fits = se.meta_regression(terms, method=opts["meta_method"], knapp_hartung=bool(opts["moderator_kh"]))
    except (DataError, DesignError) as exc:
        notes.append(f"moderators: no meta-regression ({exc})")
        return pd.DataFrame()
    notes.extend(f"moderators: {w.message}" for w in caught)
    rows = []
    for key, mr in fits.items():
        c = mr.coefficients.reset_index(names="term")
        c.insert(0, "subject", str(key))
        c = c.assign(k=mr.k, qm=mr.qm, qm_df=mr.qm_df, qm_test=mr.qm_distribution, qm_pvalue=mr.qm_pvalue,
                     tau2=mr.tau2, tau2_without=mr.tau2_null, r2=mr.r2, qe=mr.qe, qe_df=mr.qe_df,
                     qe_pvalue=mr.qe_pvalue, knapp_hartung=mr.knapp_hartung, method=mr.method)
        rows.append(c)
    return _concat(rows)


def _school_kwargs(columns: Columns, opts: dict, sd_value) -> dict:
    return dict(
        treatment=columns.treatment,
        outcome=columns.outcome,
        covariates=tuple(columns.pretest) + tuple(columns.covariates),
        sd=sd_value,
        # The SD is the overall effect's sample SD, passed as a number so that every school is on
        # the same yardstick; Hedges' ω applies as it does to the overall effect (pooled SD).
        hedges_correction=opts["sd"] == "pooled",
        method=opts["meta_method"],
        hartung_knapp=opts["hartung_knapp"],
        adjust=opts["adjust"],
        alpha=opts["alpha"],
        level=opts["level"],
        baseline_percentile=opts["baseline_percentile"],
        moderators=tuple(opts.get("_moderator_terms", ())),
        cr2=opts["school_cr2"],
    )


def _school_effects(frame: pd.DataFrame, *, stratum: str, weight: str | None, cluster: str | None, unit: str | None,
                    kw: dict, school: str | None = None, sd_kind: str | None = None):
    """:func:`pleval.heterogeneity.school_effects`; the SD, passed as a number (the overall
    effect's), is relabelled with what it is (``sd_kind``) rather than "given norm SD"."""
    from .heterogeneity import school_effects

    from .matching.results import SchoolSample

    constant = [c for c in kw.get("covariates", ()) if not (frame.varies(c) if isinstance(frame, SchoolSample)
                                                             else frame[c].nunique(dropna=False) >= 2)]
    if constant:  # e.g. an exact-match key on which one PL school's students all agree
        warnings.warn(f"school effects: covariate(s) {', '.join(constant)} take one value in the matched sample; "
                      "left out of the school-effects model", PlevalWarning, stacklevel=3)
        kw = {**kw, "covariates": tuple(c for c in kw["covariates"] if c not in constant)}
    se = school_effects(frame, stratum=stratum, weight=weight, cluster=cluster, school=school, unit_id=unit, **kw)
    if sd_kind:
        label = f"{sd_kind}; the SD of the overall effect"
        se = dataclasses.replace(se, sd={k: (v[0], label) for k, v in se.sd.items()})
    return se


def _run_rct(df, columns: Columns, subjects, method, seed, opts, progress) -> list[dict]:
    from .rct import analyze_rct

    if columns.school is None:
        raise DataError("design='rct' needs the school column (columns.school)")
    out = []
    for s in subjects:  # a handful of subjects
        label = "" if s is None else f" ({s})"
        progress(f"randomized-trial analysis{label}")
        perms = int(opts["permutations"])

        def tick(done, total, _l=label):
            progress(f"randomization test{_l}", done, total)

        res = analyze_rct(
            df, columns, design=opts["rct_design"], method=method, subject=s, sd=opts["sd"], level=opts["level"],
            baseline_percentile=opts["baseline_percentile"], adjust=opts["adjust"], vcov=opts["vcov"] or None,
            cluster_df=opts["cluster_df"], compliance=bool(opts["compliance"]), permutations=perms, seed=seed,
            progress=tick if perms else None, subgroups=opts["subgroups"], lin=bool(opts["lin"]),
            icc=None if opts["icc"] == "none" else float(opts["icc"]), gt_df=opts["gt_df"],
            bootstrap=int(opts["bootstrap"]), bootstrap_weights=opts["bootstrap_weights"],
            interaction_test=opts["interaction_test"], df_working=opts["df_working"],
        )
        part = {"effect": res.itt, "effects": dict(res.all_effects()), "details": {"design": res},
                "notes": list(res.notes)}
        part["equivalence"] = res.equivalence
        part["balance"] = res.equivalence.rename(columns={"effect_size": "smd_before"})[["variable", "smd_before", "measure", "verdict"]]
        part["attrition"] = res.attrition_frame()
        part["subgroups"], part["subgroup_tests"] = res.subgroups, res.interactions
        part["dropped"] = res.dropped.assign(stage="randomized-trial analysis") if len(res.dropped) else None
        if res.randomization is not None:
            part["randomization"] = res.randomization.to_frame()
        if res.wild_bootstrap is not None:
            part["bootstrap"] = res.wild_bootstrap.to_frame()
        out.append(part)
    progress("school effects")
    if opts["rct_design"] == "cluster":
        _rct_school_effects(df, columns, subjects, opts, out)
    else:
        _site_school_effects(df, columns, subjects, opts, out)
    return out


def _trial_rows(df, columns: Columns, subjects, extra=()) -> pd.DataFrame:
    """The trial's analytic rows for school effects, those of its ITT (every role but take-up
    present: :func:`pleval.data.itt_columns`; the subjects analysed), with ``_t`` the 0/1
    assignment."""
    need = [*dict.fromkeys(c for cols in itt_columns(columns).roles().values() for c in cols), *extra]
    d = df.dropna(subset=need).copy()
    if columns.subject is not None:
        d = d[d[columns.subject].isin(subjects)]
    d["_t"] = _coerce_treatment(d[columns.treatment], columns.treatment, columns.treated_label)[0].astype(int)
    return d


def _site_school_effects(df, columns: Columns, subjects, opts: dict, parts: list[dict]) -> None:
    """A multi-site trial's school effects (students randomized within schools: ``rct_design``
    "blocked" or "individual"): each school's ITT from its own students, assigned against
    control, every school at once (:func:`pleval.heterogeneity.school_effects` with the school as
    the site: the pretests and covariates with school-specific slopes, and the block where it
    varies within a school, as indicators; HC2 SEs). Randomized within the school, one school's
    estimate is unbiased for that school's effect and their spread is the program's, so there are
    no placebo schools (every school is a site). A school with students in one arm only has no
    estimate: left out, counted in a note."""
    from .heterogeneity.school_effects import MULTISITE

    school, subj = columns.school, columns.subject
    block = columns.block if columns.block and columns.block != school else None
    d = _trial_rows(df, columns, subjects, [block] if block else [])
    keys = [k for k in (subj, school) if k]
    arms = d.groupby(keys, sort=False)["_t"].transform("nunique")
    one = d.loc[arms < 2].drop_duplicates(keys)
    notes = parts[0]["notes"]
    if len(one):
        notes.append(f"school effects: {len(one):,} school(s){'' if subj is None else ' × subject'} with students in "
                     f"one arm only ({int((arms < 2).sum()):,} rows) have no within-school estimate and are left out")
    d = d.loc[arms >= 2]
    if d.empty:
        notes.append("no school effects: no school has students in both arms (were schools randomized? then "
                     "rct_design='cluster')")
        return
    sds = {s: p["effect"].sd for s, p in zip(subjects, parts)}
    kw = {**_school_kwargs(columns, opts, sds[None] if subj is None else sds), "treatment": "_t", "by": subj}
    if block is not None and (d.groupby(keys, sort=False)[block].nunique() > 1).any():
        kw["covariates"] = (*kw["covariates"], block)  # blocks within a school: its assignment probability may differ
        d[block] = d[block].astype(str)  # indicators, whatever the labels' type
    try:
        se = _school_effects(d, stratum=school, weight=None, cluster=None, unit=columns.student_id, kw=kw,
                             sd_kind=parts[0]["effect"].sd_kind)
    except (DesignError, DataError) as exc:
        notes.append(f"no school effects: {exc}")
        return
    se = dataclasses.replace(se, options={**se.options, "design": MULTISITE})
    notes.append("school effects in a multi-site trial compare each school's students assigned to PL with its own "
                 "control students: randomized within the school, so no placebo calibration is needed")
    for s, part in zip(subjects, parts):
        part["schools"] = (se, "all" if s is None else s)
        part["calibration_note"] = "no placebo calibration needed: students were randomized within each school"


PLACEBO_COLUMNS = ("school", "effect_size", "es_se", "pvalue", "n_treated", "n_comparison", "comparison_schools")
"""The placebo schools' columns kept in :attr:`Evaluation.placebo` (and ``placebo.csv``)."""


def _rct_school_effects(df, columns: Columns, subjects, opts: dict, parts: list[dict]) -> None:
    """Each PL school against the comparison schools of its block (and subject), all schools and
    subjects in one batch; placebo: each comparison school against the other comparison schools
    of its block. Rows are those of the trial's analytic sample (outcome and model columns present)."""
    school, subj = columns.school, columns.subject
    d = _trial_rows(df, columns, subjects, [columns.block] if columns.block else [])
    d["_row"] = np.arange(len(d))  # a student-subject's cluster in every set it is stacked into
    keys = [k for k in (columns.block, subj) if k]
    sds = {s: p["effect"].sd for s, p in zip(subjects, parts)}
    kw = {**_school_kwargs(columns, opts, sds[None] if subj is None else sds), "treatment": "_t", "by": subj}

    def stack(anchor: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
        """Rows of each anchor school, plus the pool rows of its block tagged with that school."""
        own = anchor.assign(_pl_school=anchor[school], _t=1)
        sets = anchor[[*keys, school]].drop_duplicates().rename(columns={school: "_pl_school"})
        comp = pool.merge(sets, on=keys, how="inner") if keys else pool.merge(sets, how="cross")
        comp = comp[comp[school] != comp["_pl_school"]].assign(_t=0)
        return pd.concat([own, comp], ignore_index=True)

    treated, control = d[d["_t"] == 1], d[d["_t"] == 0]
    kind = parts[0]["effect"].sd_kind
    se = _school_effects(stack(treated, control), stratum="_pl_school", weight=None, cluster="_row", unit=None, kw=kw,
                         school=school, sd_kind=kind)
    placebo, notes = None, parts[0]["notes"]
    notes.append(
        "school effects in a cluster-randomized trial compare each PL school with the comparison schools of its "
        "block: one school's estimate is not protected by randomization and includes that school's own difference"
    )
    why = "" if opts["placebo"] else NO_PLACEBO_RUN
    if opts["placebo"]:
        anchors = _placebo_anchors(control, keys, school, columns.main_pretest or columns.outcome,
                                   int(opts["n_placebo"]), notes)
        stacked = stack(control[control[school].isin(anchors)], control)
        try:
            if not (stacked["_t"] == 0).any():
                raise DesignError(f"no comparison school has another in its {'block' if columns.block else 'trial'} "
                                  "to be compared with (placebo schools need two or more comparison schools in a block)")
            placebo = _school_effects(stacked, stratum="_pl_school", weight=None, cluster="_row", unit=None, kw=kw,
                                      school=school)
        except (DesignError, DataError) as exc:
            notes.append(f"no placebo schools: {exc}")
            why = f"no placebo-calibrated figures: no placebo schools ({exc})"
        del stacked
    for s, part in zip(subjects, parts):
        skey = "all" if s is None else s
        part["schools"] = (se, skey)
        part["calibration_note"] = why
        if placebo is not None:
            t = placebo.table if s is None else placebo.table[placebo.table[subj] == s]
            part["placebo"] = t[list(PLACEBO_COLUMNS)]
            part["calibration"], part["calibration_note"] = _calibrate(se, skey, t, placebo.vcov, opts)
    _attach_calibration(parts, subjects)


CALIBRATED_COLUMNS = ["se_calibrated", "df_calibrated", "ci_low_calibrated", "ci_high_calibrated", "p_calibrated",
                      "p_calibrated_adjusted", "program_shrunk", "program_shrunk_sd", "prob_negative_program"]
_TOTAL_COLUMNS = {"shrunk_total": "shrunk_es", "shrunk_total_sd": "shrunk_es_sd", "shrunk_total_ci_low": "shrunk_es_ci_low",
                  "shrunk_total_ci_high": "shrunk_es_ci_high", "reliability_total": "reliability",
                  "prob_negative_total": "prob_negative"}


def _attach_calibration(parts: list[dict], subjects) -> None:
    """Add each subject's placebo-calibrated columns to the shared school table (one
    :class:`SchoolEffects` for all subjects), so the CSV/XLSX and the report carry them; where
    there are placebo schools, the shrunken columns hold the prior variance at least at their
    spread (:func:`pleval.heterogeneity.calibrate`: order-restricted τ²_total ≥ τ²_placebo, its
    uncertainty integrated out)."""
    cals = {("all" if s is None else s): p.get("calibration") for s, p in zip(subjects, parts)}
    for (key, cal), part in zip(cals.items(), parts):
        if cal is not None and abs(cal.placebo_scale - 1.0) >= 0.05:
            part.setdefault("notes", []).append(
                f"{'' if key == 'all' else f'{key}: '}placebo schools are compared with "
                f"{'fewer' if cal.placebo_scale < 1 else 'more'} comparison schools than PL schools (in effect): their "
                f"spread was scaled by {cal.placebo_scale:.2f} to the PL schools' (placebo_scale; docs/heterogeneity.md)")
    if not parts or parts[0].get("schools") is None or not any(c is not None for c in cals.values()):
        return
    se = parts[0]["schools"][0]
    frames = []
    for key, cal in cals.items():
        if cal is not None:
            f = cal.schools[["school", *CALIBRATED_COLUMNS, *_TOTAL_COLUMNS]]
            frames.append(f.assign(**{se.by[0]: key}) if se.by else f)
    merged = se.table.merge(pd.concat(frames, ignore_index=True), on=[*se.by, "school"], how="left")
    has = merged["shrunk_total"].notna().to_numpy()
    for src, dst in _TOTAL_COLUMNS.items():
        merged.loc[has, dst] = merged.loc[has, src]
    merged.loc[has, "shrunk_pp"] = percentiles.to_percentile_points(merged.loc[has, "shrunk_es"].to_numpy(dtype=float),
                                                                    se.options.get("baseline_percentile", 50.0))
    new = dataclasses.replace(se, table=merged.drop(columns=list(_TOTAL_COLUMNS)))
    for p in parts:
        if p.get("schools") is not None:
            p["schools"] = (new, p["schools"][1])


NO_PLACEBO_RUN = "no placebo-calibrated figures: placebo schools were not run (option placebo is off)"


def _calibrate(se, skey, placebo_table: pd.DataFrame, placebo_vcovs, opts: dict):
    """Placebo calibration of one subject's school effects (:func:`pleval.heterogeneity.calibrate`;
    a single PL school included), and "" — or None and why there is none (fewer than 2 placebo
    estimates)."""
    from .heterogeneity import calibrate
    from .heterogeneity.placebo import _group_vcov, _raw_vcov

    def estimated(f: pd.DataFrame) -> pd.DataFrame:
        se_ = f["es_se"].to_numpy(dtype=float)
        return f[np.isfinite(f["effect_size"].to_numpy(dtype=float)) & np.isfinite(se_) & (se_ > 0)]

    t = estimated(se.table if not se.by else se.table[se.table[se.by[0]] == skey])
    p = estimated(placebo_table)
    try:
        return calibrate(t["school"].to_numpy(), t["effect_size"], _group_vcov(se.vcov, skey, t), t["df"],
                         p["effect_size"], _group_vcov(placebo_vcovs, skey, p), alpha=opts["alpha"],
                         adjust=opts["adjust"], level=opts["level"], hartung_knapp=opts["hartung_knapp"],
                         V_raw=_raw_vcov(se, skey, t), comparison_schools=t.get("comparison_schools"),
                         placebo_comparison_schools=p.get("comparison_schools")), ""
    except DesignError as exc:
        return None, str(exc)


PLACEBO_MAX_ROWS = 2_000_000
"""Cap on the rows stacked for trial placebo schools (each comparison school plus its block's
other comparison rows); beyond it a seeded sample of comparison schools plays placebo."""


def _placebo_anchors(control: pd.DataFrame, keys: list[str], school: str, score: str, n_placebo: int,
                     notes: list[str]) -> np.ndarray:
    """The comparison schools that play placebo: all of them, or ``n_placebo`` of them, or as many
    as keep the stacked frame under :data:`PLACEBO_MAX_ROWS`: the first of the comparison schools
    ranked by mean ``score`` and dealt round-robin (the matched design's round order,
    :func:`pleval.heterogeneity.placebo._round_order`), so
    that they spread over the score range and depend on the data alone — no seed, row order or
    label spelling (a seeded draw moved the reading placebo τ from 0.071 to 0.126 between seeds
    0 and 1 with 8 of 20 schools, and nothing said so)."""
    from .heterogeneity.placebo import _round_order

    n_schools = int(control[school].nunique())
    k = n_placebo if 0 < n_placebo < n_schools else n_schools
    order = _round_order(control, school, score, k)[:k]
    if keys:
        pool = control.groupby(keys, observed=True).size().rename("_pool")
        per_school = control.groupby([school, *keys], observed=True).size().rename("_own").reset_index()
        cost = per_school.merge(pool.reset_index(), on=keys).groupby(school)["_pool"].sum()
    else:
        cost = pd.Series(len(control), index=order)
    within = np.cumsum(cost.reindex(order).to_numpy(dtype=float)) <= PLACEBO_MAX_ROWS
    if not within.all():
        order = order[within] if within.any() else order[:2]
    if len(order) < n_schools:
        notes.append(f"placebo schools: {len(order)} of {n_schools} comparison schools, spread over the range of "
                     f"their mean {score} (the same for any seed)" + (" (to bound memory)" if not within.all() else ""))
    return np.sort(order)


def _run_matched(df, v: Validated, columns: Columns, subjects, method, seed, opts, match_opts, progress,
                 matcher=None, placebo_rounds=None, while_waiting=None) -> list[dict]:
    """One :func:`pleval.match` for every subject (the subject is always an exact-match key),
    then per subject: the matched effect, balance, WWC equivalence, school effects, placebo.
    The placebo rounds run in a forked worker process beside the rest where
    :func:`_placebo_in_worker` allows (the same numbers, warnings and errors as in one process);
    ``while_waiting(keys, parts, pending)`` is called with each subject's :func:`_design_part`
    (``estimate``'s ``while_waiting``: when)."""
    worker = m = None
    if _placebo_in_worker(df, opts, placebo_rounds):
        # The analysis's match first, with the core the worker will hold (the student ids coded beside the
        # propensity fit); the worker, whose rounds take that coding for their rows and nothing else of the
        # match, is forked as soon as it is made and runs beside the match's search and the rest of it (1M rows:
        # about 0.4 s of the main process; docs/scale.md), or after the match where the match does not code the
        # ids there.
        from .matching import reuse_store

        started: list = []

        def fork(reuse: dict | None) -> None:
            started.append(start_worker(_placebo_rounds_job, df, columns, method, seed, opts, match_opts,
                                        placebo_rounds, v, reuse))

        try:
            m = _analysis_match(v, columns, method, seed, match_opts, progress, matcher,
                                ids_coded=fork if matcher is None else None)
            _every_subject_matched(m)
            if not started:
                fork(reuse_store(m) if matcher is None else None)
        except BaseException:
            for w in started:
                if w is not None:
                    w.cancel()
            raise
        worker = started[0]
    try:
        return _matched_parts(df, v, columns, subjects, method, seed, opts, match_opts, progress, matcher,
                              placebo_rounds, worker, while_waiting, m)
    finally:
        if worker is not None:
            worker.cancel()  # a no-op once its result was taken


class _NoComparison(Exception):
    """Subjects none of whose PL rows found a comparison in the analysis's match
    (:func:`_every_subject_matched`): ``unmatched`` maps each subject to its PL rows' reasons."""

    def __init__(self, unmatched: dict):
        super().__init__(unmatched)
        self.unmatched = unmatched

    def left_out(self, subjects: list, df: pd.DataFrame, v: Validated, left_out: pd.DataFrame | None):
        """``(subjects, df, v, left_out)`` without these subjects, each warned of and counted
        as a subject left out (some subject found comparisons: else the match raised)."""
        col = v.columns.subject
        why = {s: "; ".join(f"{r}: {n:,}" for r, n in reasons.items()) for s, reasons in self.unmatched.items()}
        gone = set(self.unmatched)
        for s, w in why.items():
            warnings.warn(f"subject {s}: not estimated, none of its {sum(self.unmatched[s].values()):,} PL rows found a "
                          f"comparison ({w}); the other subjects are analysed as in a file without its rows; fix: "
                          "comparison rows in its grades, or a wider caliper or fewer exact keys", PlevalWarning, stacklevel=2)
        keep = [s for s in subjects if str(s) not in gone]
        n_rows = v.data[col].astype(str).value_counts()
        out = pd.DataFrame({"subject": ["(all)"] * len(gone), "column": [col] * len(gone),
                            "reason": [f"subject {s}: no PL row found a comparison" for s in self.unmatched],
                            "n_rows": [int(n_rows.get(s, 0)) for s in self.unmatched],
                            "stage": ["subject selection"] * len(gone)})
        rows = v.data[col].isin(keep).to_numpy()
        return (keep, df[(df[col].isin(keep) | df[col].isna()).to_numpy()], dataclasses.replace(v, data=v.data[rows]),
                _concat([left_out, out]))


def _every_subject_matched(m) -> None:
    """Raise :class:`_NoComparison` when a subject's PL rows all went unmatched in ``m``."""
    un, col = m.unmatched, m.columns.subject
    if not len(un) or col is None:
        return
    pl = pl_by_subject(m.data, m.data[m.columns.treatment].to_numpy() == 1, col)
    by = un.assign(_s=un[col].astype(str)).groupby("_s")["reason"]
    none = {s: r.value_counts(sort=False).to_dict() for s, r in by if len(r) == pl.get(s, -1)}
    if none:
        raise _NoComparison({s: none[s] for s in sorted(none)})


def _run_held(held: list):
    """``held.pop()()`` (None for an empty list): the call's value, or the :class:`DesignError`
    it raised. The list is its only holder, so what the callable holds is freed when it ends."""
    if not held:
        return None
    try:
        return held.pop()()
    except DesignError as exc:
        return exc


def _next_subject(fits, analyse, then: Callable):
    """The next of the lazy ``fits`` as ``(key, effect, finish)``: ``finish`` its sensitivity
    analysis's Rosenbaum bounds, the rest of the analysis done here (``analyse(...,
    later=True)``), or the :class:`DesignError` the analysis raised (None without ``analyse``);
    the subject's rows and design are freed on return. When none is left, ``(None, None,
    then())``: the work that follows the subjects (the balance table)."""
    fit = next(fits, None)
    if fit is None:
        return None, None, then()
    key, part, des, eff = fit[:4]
    del fit
    return key, eff, None if analyse is None else _run_held([partial(analyse, key, part, des, eff, later=True)])


def _analysis_match(v: Validated, columns: Columns, method, seed, match_opts, progress, matcher=None,
                    ids_coded=None):
    """The analysis's :func:`pleval.match` of the validated rows ``v`` (or ``matcher``'s);
    ``ids_coded``: :func:`pleval.match`'s ``_ids_coded``."""
    from .matching import match

    progress(f"matching: {method}")
    hook = {} if ids_coded is None else {"_ids_coded": ids_coded}
    try:
        return (matcher or match)(v, columns, method=method, seed=seed, **match_opts, **hook)  # already validated
    except TypeError as exc:
        if not match_opts:
            raise
        raise DataError(f"invalid matching option(s) {match_opts}: {exc}") from exc


def _matched_parts(df, v: Validated, columns: Columns, subjects, method, seed, opts, match_opts, progress, matcher,
                   placebo_rounds, worker, while_waiting=None, m=None) -> list[dict]:
    """:func:`_run_matched`'s work; ``worker`` runs the placebo rounds (None: run here, after
    the PL schools' effects, as :func:`pleval.heterogeneity.placebo_schools` does); ``m``: the
    analysis's match, when made before the worker started."""
    from .heterogeneity.calibration import too_few_placebo
    from .matching import EffectTable

    if m is None:
        m = _analysis_match(v, columns, method, seed, match_opts, progress, matcher)
        _every_subject_matched(m)
    progress("matched estimate")
    by = columns.subject
    by_t = () if by is None else (by,)
    # Each subject's rows and design (n × p) are needed only by its effect and sensitivity: fitted
    # lazily, one subject's are held at a time. With a placebo worker, which waits for the
    # effects' SD, every subject is fitted first (the worker's rows are at most a few million).
    fits = m.group_fits(by, sd=opts["sd"], level=opts["level"], baseline_percentile=opts["baseline_percentile"],
                        vcov=opts["vcov"] or None, cluster_df=opts["cluster_df"], cr2=opts["cr2"],
                        df_working=opts["df_working"], part_columns="all" if opts["sensitivity"] and opts["placebo_outcome"] else "none",
                        lazy=worker is None)
    effects: dict = {}

    def effect_table():
        return effects[()] if by is None else EffectTable(by_t, dict(effects))

    if worker is not None:
        effects.update((fit[0], fit[3]) for fit in fits)
        worker.send(_school_kwargs(columns, opts, _effect_sds(effect_table(), subjects, by))["sd"])
    sens = analyse = None
    if opts["sensitivity"]:
        from .sensitivity.matched import Sensitivity, group_sensitivity

        progress("sensitivity to unobserved confounding")
        try:
            analyse = group_sensitivity(m, by=by_t, sd=opts["sd"], level=opts["level"], alpha=opts["alpha"],
                                        placebo_outcome=opts["placebo_outcome"] or None, hl_gammas=opts["hl_gammas"],
                                        rosenbaum_direction=opts["rosenbaum_direction"],
                                        vcov=opts["vcov"] or None, cluster_df=opts["cluster_df"], cr2=opts["cr2"],
                                        df_working=opts["df_working"])
        except DesignError as exc:
            sens_note = f"no sensitivity analysis: {exc}"
    results: dict = {}
    subjects_left = iter(fits)
    del fits
    key, held = None, []  # the previous subject's key and Rosenbaum bounds (its `finish`), if any
    while True:  # a handful of subjects
        # The previous subject's Rosenbaum bounds (which read none of its design) beside the next
        # subject's fit and analysis, or the balance table after the last: in two threads when a
        # core is free, else one after the other
        done, step = side_by_side(partial(_run_held, held), partial(_next_subject, subjects_left, analyse, m.balance))
        if isinstance(done, DesignError):
            analyse, sens_note = None, f"no sensitivity analysis: {done}"
        elif done is not None and analyse is not None:
            results[key] = done
        key, eff, finish = step
        del step
        if key is None:  # no subject left: `finish` is `then`'s, the balance table
            bal = finish
            break
        effects[key] = eff
        if isinstance(finish, DesignError) and analyse is not None:
            analyse, sens_note = None, f"no sensitivity analysis: {finish}"
        held = [finish] if analyse is not None and callable(finish) else []
        del finish
    del subjects_left
    if analyse is not None:
        sens = Sensitivity(by_t, results)
    est = effect_table()
    kw = _school_kwargs(columns, opts, _effect_sds(est, subjects, by))
    table, eq = bal.table, bal.equivalence
    dropped = _match_dropped(m)
    sid = columns.student_id
    keys = ["all" if s is None else str(s) for s in subjects]
    out = [_design_part(s, est, m, table, eq, sens) for s in subjects]
    for key, part, flow in zip(keys, out, _pl_flows(v, m, keys)):
        part["details"]["pl_rows"] = flow
    estimating = None
    if worker is not None:
        # The preview is final here: with the propensity table (a row per matched row, a few million at most with a
        # worker; read while the matched pairs' long form is still held), `while_waiting` starts before this
        # process's school effects, so what it hands to a process of its own can take the core the worker leaves
        # when its rounds end first (1M rows: 0.3-0.6 s before; docs/scale.md)
        _with_propensity(out, subjects, _propensity_frame(m))
        if while_waiting is not None:
            estimating = SharedFlag(True)
            while_waiting(keys, out, lambda: estimating.is_set() and not worker.ready())
    progress("school effects")
    schools = placebo = None
    notes: list[str] = [] if sens is not None or not opts["sensitivity"] else [sens_note]
    try:
        sample = m.school_sample([columns.treatment, columns.outcome, *kw["covariates"], *kw["moderators"], sid,
                                  columns.school, by],  # copies within one PL school's sets merged
                                 categorical={sid, columns.school, by} - {*kw["covariates"], *kw["moderators"]},
                                 lazy=True)  # columns gathered as read: no frame of every pair
        m.let_go_long()  # formed again when next read (the propensity table's weights, after the placebo rounds)
        schools = _school_effects(sample, stratum="_pl_school", weight="_weight", cluster=sid, unit=sid,
                                  school=columns.school, kw={**kw, "by": by, "weight2": "_weight2", "copies": "_copies",
                                                             "robustness_q": 1.0 if opts["school_sensitivity"] else None},
                                  sd_kind=(est if by is None else est[subjects[0]]).sd_kind)
        del sample  # freed before the placebo rounds match
    except DesignError as exc:
        notes.append(f"no school effects: {exc}")
    if estimating is not None:
        estimating.clear()  # what is left here waits for the rounds or is short
    why = "" if opts["placebo"] else NO_PLACEBO_RUN
    if schools is not None and opts["placebo"]:
        progress("placebo schools")
        if while_waiting is not None and worker is None:  # what is final, before the rounds run here
            while_waiting(keys, out, lambda: False)
        placebo, why = _matched_placebo(df, columns, method, seed, opts, match_opts, kw, schools, notes, placebo_rounds,
                                        worker, v, m if matcher is None else None)
    if worker is None:  # in one process after the placebo rounds, whose peak memory it would raise
        if placebo is not None:  # what the rounds freed, handed back (10M rows: 1-2 GB the allocator kept)
            release_free_memory()
        _with_propensity(out, subjects, _propensity_frame(m))
    from .matching.effect import one_school_arms

    for key, part in zip(keys, out):  # a handful of subjects
        if part["effect"].note:  # (few comparison schools)
            notes.append(f"{key}: {part['effect'].note[0].lower()}{part['effect'].note[1:].rstrip('.')}")
        side = one_school_arms(part["effect"].raw.method)
        if side:
            where = ("the PL students are in one school and the comparison students in another" if " and " in side
                     else f"all {side} students are in one school")
            notes.append(f"{key}: {where}, so students are the clusters there in the standard error (one school as a "
                         "cluster would leave their noise out); the effect includes that school's own difference from "
                         "the other side, which the placebo-calibrated figures allow for")
    for s, key, part in zip(subjects, keys, out):  # a handful of subjects
        part["notes"] = notes
        if opts["subgroups"]:
            part["subgroups"], part["subgroup_tests"] = _matched_subgroups(m, s, part["effect"], opts, notes,
                                                                           _pretest_sd(part.get("equivalence")))
        if sens is not None:
            notes.extend(f"{key}: {n}" for n in part["details"]["sensitivity"].notes)
        if schools is not None:
            part["schools"] = (schools, "all" if s is None else s)
            part["calibration_note"] = why
        if placebo is not None:
            part["details"]["placebo"] = placebo
            t = placebo.placebo if s is None else placebo.placebo[placebo.placebo[by] == s]
            part["placebo"] = t[list(PLACEBO_COLUMNS)]
            comp = placebo.comparison
            if s is not None and len(comp):  # empty when no subject has 2 placebo estimates
                comp = comp[comp[by] == s]
            if len(comp):
                part["placebo_stats"] = {"placebo_q_star_p": float(comp.iloc[0]["p_star"])}
            part["calibration"] = placebo.calibration.get("all" if s is None else s)
            if part["calibration"] is None:
                part["calibration_note"] = too_few_placebo(int(np.isfinite(part["placebo"]["effect_size"]
                                                                           .to_numpy(dtype=float)).sum()))
    _attach_calibration(out, subjects)
    if dropped is not None:
        out[0]["dropped"] = dropped.assign(subject="(all)")
    return out


def _design_part(s, est, m, balance: pd.DataFrame, eq: pd.DataFrame, sens) -> dict:
    """Subject ``s``'s part of a matched design (``s`` None: the data have no subjects) as known
    before its school effects and placebo schools: the effect (of the effect table ``est``), the
    design ``m``, balance, equivalence and sensitivity analysis (propensity scores:
    :func:`_with_propensity`)."""
    key = "all" if s is None else str(s)
    eff = est if s is None else est[s]
    part: dict[str, Any] = {"effect": eff, "effects": {"ATT (matched)": eff}, "details": {"design": m}}
    part["balance"] = balance[balance["group"] == key].drop(columns="group")
    part["equivalence"] = _equivalence_frame(eq[eq["group"] == key], m.strata)
    if sens is not None:
        ss = sens[()] if s is None else sens[s]
        part["details"]["sensitivity"] = ss
        part["sensitivity"] = ss.to_frame()
    return part


def _with_propensity(parts: list[dict], subjects, prop: pd.DataFrame | None) -> None:
    """Each subject's propensity scores (of :func:`_propensity_frame`) into its part."""
    if prop is not None:
        for s, part in zip(subjects, parts):
            part["propensity"] = prop if s is None else prop[prop["_subject"] == s].drop(columns="_subject")


def _call_while_waiting(fn: Callable, method: str, columns: Columns, options: Mapping, caught: list, keys: list[str],
                        parts: list[dict], pending: Callable[[], bool]) -> None:
    """``fn(preview, pending)`` (``estimate(..., while_waiting=fn)``): ``preview`` the
    :class:`Evaluation` of a matched design's ``parts`` (:func:`_design_part`, one per subject
    of ``keys``) so far, its tables as :func:`_assemble` makes them; the warnings ``fn``
    raises are added to ``caught``."""
    tables = {name: _concat([_with_subject(p.get(name), k) for k, p in zip(keys, parts)])
              for name in ("balance", "equivalence", "propensity", "sensitivity")}
    preview = Evaluation(
        design="matched", method=method, columns=columns, subjects=tuple(keys),
        effects=MappingProxyType({k: p["effect"] for k, p in zip(keys, parts)}), options=MappingProxyType(dict(options)),
        provenance=MappingProxyType({}),
        details=MappingProxyType({k: MappingProxyType(dict(p["details"])) for k, p in zip(keys, parts)}),
        _tables=MappingProxyType(tables))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fn(preview, pending)
    caught.extend(got)


def _effect_sds(est, subjects, by):
    """The outcome SD of the effect (``by`` None) or of each subject's, as ``_school_kwargs`` takes it."""
    sds = {s: (est if s is None else est[s]).sd for s in subjects}
    return sds[None] if by is None else sds


def _pretest_sd(equivalence: pd.DataFrame | None) -> float:
    """The SD of a subject's baseline-equivalence g of the pretest (:func:`_equivalence_frame`), NaN without one."""
    if equivalence is None or not len(equivalence) or "sd" not in equivalence:
        return math.nan
    return float(equivalence.loc[equivalence["role"] == "pretest", "sd"].iloc[0])


def _matched_subgroups(m, subject, eff, opts: dict, notes: list, pretest_sd: float):
    """Subgroup effects on the matched sample of ``subject``: the matched effect's regression
    with level-specific treatment effects, each matched set in the subgroup of its treated
    student (:mod:`pleval.subgroups`); the df of single contrasts under the overall effect's
    working model (``df_working``, by default a school random effect). ``pretest_sd``: the SD of
    the subject's baseline-equivalence g, which each level's ``pretest_smd`` divides by."""
    from .matching.effect import regression_design
    from .subgroups import matched_level_codes, own_level_rows, single_valued_in_subject, subgroup_effects

    c = m.columns
    sample = m.matched if subject is None else m.matched[m.matched[c.subject] == subject]
    d = regression_design(sample, outcome=c.outcome, treatment=c.treatment, pretests=c.pretest, covariates=c.covariates,
                          strata=m.strata, school=c.school)
    names = ["treatment" if nm == c.treatment else nm for nm in d["names"]]
    rows, tests = [], []

    def scale(e):
        return Effect.from_raw(e, eff.sd, eff.sd_kind, omega=eff.omega, baseline_percentile=eff.baseline_percentile)

    missing = [x for x in opts["subgroups"] if x not in sample.columns]
    if missing:
        raise DataError(f"subgroup column {missing[0]!r} is not in the data (or use {BAND!r})")
    own = own_level_rows(sample, c.treatment)
    analysed, left_out = single_valued_in_subject(sample[own], m.matched[own_level_rows(m.matched, c.treatment)],
                                                  opts["subgroups"], subject)
    notes += left_out
    for name in analysed:
        codes, labels, level_notes = matched_level_codes(sample, c.treatment, name, subject)
        notes += level_notes
        if codes is None:
            continue
        smd = _level_smd(sample[c.main_pretest].to_numpy(dtype=float), d["t"], d["weights"], codes, len(labels),
                         pretest_sd) if c.pretest else np.full(len(labels), math.nan)
        r, t = subgroup_effects(d["y"], d["X"], names, d["t"], codes, labels, name=name, scale=scale,
                                weights=d["weights"], clusters=d["clusters"], units=pd.factorize(sample.index)[0],
                                vcov=opts["vcov"] or default_vcov("matched", c.school), cluster_df=opts["cluster_df"],
                                cr2=opts["cr2"], level=opts["level"], notes=notes, df_working=opts["df_working"])
        rows += [dict(x, pretest_smd=smd[i]) for i, x in zip(_levels_of(r, labels), r)]
        tests += [t] if t is not None else []
    big = [f"{r['subgroup']}={r['level']}" for r in rows if abs(r["pretest_smd"]) > 0.25]
    if big:
        notes.append(f"subgroups ({subject}): the pretest differs by more than 0.25 SD between matched groups in "
                     f"{', '.join(big)}; the model adjusts for it, but read these rows with care")
    return (pd.DataFrame(rows) if rows else None), (pd.DataFrame(tests) if tests else None)


def _levels_of(rows: list[dict], labels: list) -> list[int]:
    return [labels.index(r["level"]) for r in rows]


def _level_smd(x: np.ndarray, t: np.ndarray, w: np.ndarray, codes: np.ndarray, L: int, sd: float) -> np.ndarray:
    """Weighted standardized difference of ``x`` (treated − comparison) within each level: the
    difference in weighted means over ``sd``, the subject's baseline-equivalence SD (pooled
    within group and grade: :func:`pleval.effect_sizes.baseline_difference`), so that a level's
    difference reads on the yardstick of the WWC's 0.25 SD and of the effect sizes. A level's own
    SD was inflated by the spread of grade means, and a pretest band's shrunk by its narrow range."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a level without one arm: NaN (its row is left out)
        mu_t, mu_c = (np.bincount(codes[k], weights=w[k] * x[k], minlength=L) / np.bincount(codes[k], weights=w[k], minlength=L)
                      for k in (t == 1.0, t == 0.0))
        return (mu_t - mu_c) / sd


def _subgroup_tables(keys: list[str], parts: list[dict], opts: dict) -> dict[str, pd.DataFrame]:
    """Subgroup rows and tests of every subject, p adjusted across all rows of the run; the equity table."""
    from .inference import adjust_pvalues
    from .subgroups import equity_table

    sub = _concat([_with_subject(p.get("subgroups"), k) for k, p in zip(keys, parts)])
    tests = _concat([_with_subject(p.get("subgroup_tests"), k) for k, p in zip(keys, parts)])
    if len(sub):
        sub["pvalue_adjusted"] = adjust_pvalues(sub["pvalue"].to_numpy(), opts["adjust"])
        tests["pvalue_adjusted"] = adjust_pvalues(tests["pvalue"].to_numpy(), opts["adjust"])
    return {"subgroups": sub, "subgroup_tests": tests,
            "equity": equity_table(tests) if len(tests) else pd.DataFrame()}


def _equivalence_frame(eq: pd.DataFrame, strata=()) -> pd.DataFrame:
    """The WWC baseline-equivalence rows of :class:`pleval.matching.Balance` on pleval's columns
    (``strata``: the exact-match columns the SD is pooled within)."""
    within = f"; SD within {' × '.join(strata)}" if len(strata) else ""
    return pd.DataFrame(
        {
            "variable": eq["pretest"].to_numpy(),
            "role": "pretest",
            "measure": f"Hedges g (matched sample, effective n{within})",
            "difference": eq["difference"].to_numpy(dtype=float),
            "sd": eq["sd"].to_numpy(dtype=float),
            "effect_size": eq["hedges_g"].to_numpy(dtype=float),
            "adjusted_in_model": True,
            "verdict": eq["wwc_with_pretest_in_model"].to_numpy(),
            "verdict_unadjusted": eq["wwc_baseline_equivalence"].to_numpy(),
        }
    )


def _propensity_frame(m) -> pd.DataFrame | None:
    """Propensity score, treatment and matched weight (summed over sets) of every row of the
    matching data (propensity-based methods only)."""
    pm = m.propensity
    if pm is None:
        return None
    c = m.columns
    out = pd.DataFrame({"score": pm.ps, "treated": m.data[c.treatment].to_numpy(dtype=int), "weight": m.row_weights()})
    if c.subject:  # as stored (Arrow strings stay Arrow: no Python object per row; compared per subject)
        out["_subject"] = m.data[c.subject].array
    return out


def _pl_flows(v: Validated, m, keys: list[str]) -> list[pd.DataFrame | None]:
    """Each subject's PL rows from the file to the matched estimate (``stage``, ``reason``,
    ``n_rows``): the PL rows read, those validation dropped and matching excluded (by reason),
    those that found no comparison, and what is left, the PL rows in the estimate. None for a
    subject when the matcher does not count its exclusions by arm (``excluded_pl`` None)."""
    if m.excluded_pl is None:
        return [None] * len(keys)
    c = m.columns
    pl = v.data[c.treatment].to_numpy() == 1
    kept = pl_by_subject(v.data, pl, c.subject)
    un = m.unmatched
    if c.subject and len(un):
        un = un.assign(subject=un[c.subject].astype(str))
    else:
        un = un.assign(subject="all")
    out = []
    for key in keys:
        stages = [("validation", v.dropped_pl), ("matching: excluded", m.excluded_pl)]
        rows = [(stage, r.reason, r.n_rows) for stage, f in stages for r in f[f["subject"] == key].itertuples()]
        rows += [("matching: no comparison", r, n) for r, n in un.loc[un["subject"] == key, "reason"]
                 .value_counts(sort=False).items()]
        n_read = kept.get(key, 0) + sum(n for stage, _, n in rows if stage == "validation")
        n_in = n_read - sum(n for *_, n in rows)
        out.append(pd.DataFrame([("file", "PL rows read", n_read), *rows, ("estimate", "PL rows in the estimate", n_in)],
                                columns=["stage", "reason", "n_rows"]))
    return out


def _pl_schools_left_out(sub_df: pd.DataFrame, v: Validated, columns: Columns, keys, subjects,
                         schools: pd.DataFrame) -> pd.DataFrame | None:
    """The input's PL schools missing from a subject's school table (every row of theirs dropped:
    missing values, no comparison, no outcome), as rows of the dropped table, each named; None if
    none. Before 2026-12-04 such a school left the table and the meta-analysis's k without a word."""
    c = columns
    if not len(schools) or not c.school:
        return None
    cols = [c.school] + ([c.subject] if any(s is not None for s in subjects) else [])  # not every column's rows
    pl = sub_df[cols][(sub_df[c.treatment] == 1).to_numpy() & sub_df[c.school].notna().to_numpy()]
    valid = v.data[cols][(v.data[c.treatment] == 1).to_numpy()]
    rows = []
    for key, subj in zip(keys, subjects):  # a handful of subjects
        part, kept = (pl, valid) if subj is None else (pl[pl[c.subject] == subj], valid[valid[c.subject] == subj])
        have = schools.loc[schools["subject"] == key, "school"].astype(str)
        if not len(have):  # no school effects for the subject at all: its own note says why
            continue
        n = part.groupby(part[c.school].astype(str), sort=True).size()
        gone = n[~n.index.isin(have)]
        if not len(gone):
            continue
        in_valid = gone.index.isin(kept[c.school].drop_duplicates().astype(str))
        rows += [{"reason": f"PL school {sch}: no row reached the school effects ("
                           + ("rows kept by validation, none matched with an outcome" if iv else
                              "every row dropped by validation") + ")",
                  "column": c.school, "n_rows": int(k), "stage": "school effects", "subject": key, "school": sch}
                 for (sch, k), iv in zip(gone.items(), in_valid)]
    return pd.DataFrame(rows) if rows else None


def _match_dropped(m) -> pd.DataFrame | None:
    """Rows excluded before matching and treated rows left unmatched, with reasons."""
    parts = []
    if len(m.exclusions):
        parts.append(m.exclusions.assign(stage="matching: excluded"))
    un = m.unmatched_counts()
    if len(un):
        exact = ", ".join(m.strata) or m.columns.treatment  # (the keys that found no comparison)
        column = np.where(un["reason"].str.contains("exact-match cell"), exact, m.columns.treatment)
        parts.append(un.assign(column=column, stage="matching: treated rows without a match"))
    return pd.concat(parts, ignore_index=True)[["reason", "column", "n_rows", "stage"]] if parts else None


def _matched_placebo(df, columns: Columns, method, seed, opts, match_opts, kw, observed, notes, rounds=None,
                     worker=None, v: Validated | None = None, m=None):
    """Comparison schools analysed as if PL (:func:`pleval.heterogeneity.placebo.placebo_schools`),
    with the same matching and the same school-effect settings as the PL schools; and "", or
    None and why there are none. ``worker``: the :class:`~pleval._workers.Forked` job of
    :func:`_placebo_rounds_job` that ran the rounds (its warnings and errors are raised here,
    where the rounds would have raised them). ``v``: the analysis's validation of ``df``, which
    the rounds reuse; ``m``: the analysis's :func:`pleval.match` of ``v``, whose student ids'
    factorization they take."""
    from .heterogeneity.placebo import placebo_schools

    try:
        if worker is None:
            res = placebo_schools(df, columns, method, observed=observed,
                                  **_placebo_args(columns, seed, opts, match_opts, kw, rounds, v, m))
        else:
            res = worker.result().compare(observed)
    except (DesignError, DataError) as exc:
        notes.append(f"no placebo schools: {exc}")
        return None, f"no placebo-calibrated figures: no placebo schools ({exc})"
    notes.extend(res.round_notes())
    x = res.extent()
    if x["capped"]:
        notes.append(f"placebo schools: {x['placebo_schools']:,} of the {x['comparison_schools']:,} comparison schools "
                     f"played placebo (placebo_cap = {x['cap']}: the first of the round order, spread over the pretest "
                     "range); placebo_cap = 0 (--placebo-cap 0) runs every one")
    return res, ""


def _placebo_args(columns: Columns, seed, opts, match_opts, kw, rounds, v: Validated | None = None, m=None) -> dict:
    """The placebo rounds' settings: those of the PL schools' effects (``kw``); ``v``: the
    analysis's validation of the data, which the rounds take instead of validating it again;
    ``m``: its match of ``v`` (the student ids' factorization the rounds take)."""
    return dict(validated=v if rounds is None else None, matched=m if rounds is None else None,
                n_placebo=int(opts["n_placebo"]) or None, match_options=match_opts, covariates=kw["covariates"],
                cluster=columns.student_id, cr2=kw["cr2"], by=columns.subject, sd=kw["sd"],
                method_meta=opts["meta_method"], adjust=opts["adjust"], alpha=opts["alpha"], level=opts["level"],
                seed=seed, hartung_knapp=opts["hartung_knapp"], rounds=rounds, cap=int(opts["placebo_cap"]))


def _placebo_rounds_job(receive, df, columns: Columns, method, seed, opts, match_opts, rounds, v=None, reuse=None):
    """The placebo rounds of :func:`_matched_placebo` in a worker process
    (:func:`pleval.heterogeneity.placebo.play_rounds`, without the PL schools); their SD, the
    overall effect's, is ``receive()``d from the main process once the first round is matched.
    ``v``: the analysis's validation of ``df``, and ``reuse`` the ``_reuse`` store of the student
    ids' coding made by its match of ``v`` (:func:`pleval.matching.reuse_store`'s form; both
    inherited by the fork), reused by the rounds."""
    from .heterogeneity.placebo import play_rounds, plan_rounds

    plan = plan_rounds(df, columns, method, **_placebo_args(columns, seed, opts, match_opts,
                                                            _school_kwargs(columns, opts, None), rounds, v),
                       observed_given=True, reuse=reuse if rounds is None else None)
    return play_rounds(plan, sd=receive)


PLACEBO_WORKER_MAX_ROWS = 3_000_000
"""The largest file whose placebo rounds run in a worker process by default. A worker adds to
the memory of a run (the sum over both processes' proportional set sizes, beside one process's
peak): 0.76 GB at 1M rows, 1.03 GB at 3M (docs/scale.md, *Two processes*); a larger file runs
them in the main process after the rest, so 10M rows need no more memory than in one process."""

PLACEBO_WORKER_BYTES_PER_ROW = 800
"""What a placebo worker process is taken to add to the memory of a run, per row of the file
(above the 0.76 GB measured at 1M rows and the 1.03 GB at 3M)."""


def _placebo_in_worker(df: pd.DataFrame, opts: dict, rounds) -> bool:
    """Whether the placebo rounds run in a worker process: with ``workers`` ≥ 2, placebo schools
    to run from the data in memory (not a pool's engine), a system that can fork, at most
    :data:`PLACEBO_WORKER_MAX_ROWS` rows, and :data:`PLACEBO_WORKER_BYTES_PER_ROW` per row within
    half of the memory the system has available now."""
    from .heterogeneity.placebo import _InMemoryRounds

    if opts["workers"] < 2 or not opts["placebo"] or not can_fork():
        return False
    if rounds is not None and not isinstance(rounds, _InMemoryRounds):
        return False
    rows = len(df if rounds is None else rounds.data)  # a pool in memory: the rounds match the whole of it
    return rows <= PLACEBO_WORKER_MAX_ROWS and PLACEBO_WORKER_BYTES_PER_ROW * rows <= available_memory() / 2


def _rate(design: str, part: dict, subject, df: pd.DataFrame, columns: Columns, opts: dict,
          higher_is_better: bool = True):
    """The WWC rating and ESSA tier of one subject (:func:`pleval.rating.rate`) from what the
    design computed: attrition, baseline equivalence, schools per arm, the primary estimate
    (favourable when positive, or negative with ``higher_is_better=False``)."""
    from .rating import StudyFacts, rate

    res, eff = part["details"]["design"], part["effect"]
    eq = part.get("equivalence")
    pre = eq[eq["role"] == "pretest"] if eq is not None and len(eq) else pd.DataFrame(columns=["variable"])
    baseline = tuple((str(r.variable), float(r.effect_size), bool(r.adjusted_in_model)) for r in pre.itertuples())
    alpha = ESSA_ALPHA  # ESSA's "statistically significant" is the WWC's p < 0.05, whatever --alpha the school counts use
    sign = 1 if higher_is_better else -1
    unfavourable = tuple(name for name, e in part["effects"].items()
                         if e is not eff and e.effect_size.pvalue < alpha and sign * e.effect_size.estimate < 0)
    common = dict(baseline=baseline, effect_size=eff.effect_size.estimate, pvalue=eff.effect_size.pvalue,
                  higher_is_better=higher_is_better,
                  unfavorable_elsewhere=unfavourable, alpha=alpha, confounds=tuple(opts["confounds"]),
                  overriding_negative=opts["overriding_negative"])
    outcome = columns.outcome if subject is None else f"{columns.outcome} ({subject})"
    if design == "rct":
        att = {a.level: a for a in res.attrition}
        cluster = res.design == "cluster"
        if cluster:
            n_t, n_c = att["schools"].n_analytic_treated, att["schools"].n_analytic_control
        else:
            d = df if subject is None else df[df[columns.subject] == subject]
            d = d[d[columns.outcome].notna()]
            arm = pd.to_numeric(d[columns.treatment], errors="coerce") == 1
            n_t, n_c = d.loc[arm, columns.school].nunique(), d.loc[~arm, columns.school].nunique()
        facts = StudyFacts(
            outcome, "rct", "schools" if cluster else "students", int(res.options["n_analytic"]), int(n_t), int(n_c),
            schools_shared=not cluster,
            attrition_students=(att["students"].overall, att["students"].differential),
            attrition_schools=(att["schools"].overall, att["schools"].differential) if cluster else None,
            boundary=opts["boundary"], compromised=bool(opts["compromised"]), joiners=opts["joiners"], **common)
    else:
        n, n_t, n_c, shared = res.sample_counts[subject]
        facts = StudyFacts(outcome, "qed", "schools", n, n_t, n_c, schools_shared=shared, **common)
    return rate(facts)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
def _with_subject(frame: pd.DataFrame | None, key: str) -> pd.DataFrame | None:
    if frame is None or len(frame) == 0:
        return None
    f = frame.copy()
    if "subject" in f.columns:  # already labelled (e.g. rows that concern every subject)
        return f[["subject", *[c for c in f.columns if c != "subject"]]]
    f.insert(0, "subject", key)
    return f


def _concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _assemble(keys: list[str], parts: list[dict], v: Validated,
              left_out: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The run's tables from each subject's ``parts``; ``left_out``: the rows of subjects not
    analysed (:func:`_subjects`), listed first among the stages' dropped rows."""
    overall, balance, equiv, attr, schools, het, placebo, prop, sens, ri, boot = ([] for _ in range(11))
    dropped = [left_out]
    seen: set[int] = set()
    for key, p in zip(keys, parts):
        for name, eff in p["effects"].items():
            f = eff.to_frame()
            f.insert(0, "analysis", name)
            f.insert(1, "primary", eff is p["effect"])
            overall.append(_with_subject(f, key))
        balance.append(_with_subject(p.get("balance"), key))
        equiv.append(_with_subject(p.get("equivalence"), key))
        attr.append(_with_subject(p.get("attrition"), key))
        prop.append(_with_subject(p.get("propensity"), key))
        sens.append(_with_subject(p.get("sensitivity"), key))
        placebo.append(_with_subject(p.get("placebo"), key))
        dropped.append(_with_subject(p.get("dropped"), key))
        ri.append(_with_subject(p.get("randomization"), key))
        boot.append(_with_subject(p.get("bootstrap"), key))
        if p.get("schools") is not None:
            se, skey = p["schools"]
            p["details"]["schools"] = se
            tab = se.table if not se.by else se.table[se.table[se.by[0]] == skey].drop(columns=list(se.by))
            schools.append(_with_subject(tab, key))
            if skey in se.meta or (skey in se.counts and se.counts[skey].k == 1):
                het.append(_with_subject(pd.DataFrame([_het_row(se, skey, p)]), key))
            if id(se) not in seen and len(se.dropped):
                dropped.append(se.dropped.assign(stage="school effects", subject="(all)" if se.by else key))
            seen.add(id(se))
    data_summary = v.to_frame()
    return {
        "data_summary": data_summary,
        "overall": _concat(overall),
        "balance": _concat(balance),
        "equivalence": _concat(equiv),
        "attrition": _concat(attr),
        "schools": _concat(schools),
        "heterogeneity": _concat(het),
        "placebo": _concat(placebo),
        "propensity": _concat(prop),
        "sensitivity": _concat(sens),
        "randomization": _concat(ri),
        "bootstrap": _concat(boot),
        "dropped": _dropped_table(v, dropped),
    }


def _with_outcomes(overall: pd.DataFrame, outcomes: pd.DataFrame, primary: str) -> pd.DataFrame:
    """The overall table with an ``outcome`` column, the primary analysis's domain and
    within-domain adjusted p, and the further outcomes' rows (:func:`pleval.outcomes.overall_rows`)."""
    from .outcomes import overall_rows

    ov = overall.assign(outcome=primary)
    first = outcomes[outcomes["outcome"] == primary].set_index("subject")
    ov["domain"] = ov["subject"].map(first["domain"])
    ov["pvalue_domain_adjusted"] = np.where(ov["primary"], ov["subject"].map(first["pvalue_adjusted"]), np.nan)
    return _concat([ov, overall_rows(outcomes[outcomes["outcome"] != primary])])


def _with_mdes(tables: dict, opts: dict) -> dict:
    """The MDES of each analysis run (80% power, the run's α; :mod:`pleval.power.posthoc`)
    beside the overall and school estimates."""
    from .power import posthoc

    schools = posthoc.add_school_mdes(tables["schools"], opts["alpha"], opts["baseline_percentile"])
    return {**tables, "overall": posthoc.add_overall_mdes(tables["overall"], opts["alpha"]), "schools": schools,
            "heterogeneity": posthoc.add_heterogeneity_mdes(tables["heterogeneity"], schools)}


def _het_row(se, skey, part: dict) -> dict:
    """One row of the heterogeneity table: the meta-analysis, the significance counts and the
    PL-versus-placebo spread and the placebo calibration (:func:`pleval.heterogeneity.calibrate`: τ²_placebo
    and τ²_program = max(0, τ²_PL − τ²_placebo) with CIs, calibrated counts)."""
    from .heterogeneity import MetaAnalysis
    from .heterogeneity.calibration import ONE_SCHOOL, ONE_SCHOOL_ESTIMATE
    from .heterogeneity.school_effects import MULTISITE

    m, c = se.meta.get(skey), se.counts[skey]
    pooled = m.as_dict() if m is not None else MetaAnalysis.nan_dict(c.k)
    row = {**pooled, **{f"count_{k}": val for k, val in c.as_dict().items()}}
    one = ONE_SCHOOL_ESTIMATE if se.options.get("design") == MULTISITE else ONE_SCHOOL  # (a trial's site: no placebo)
    row["not_estimable"] = "" if m is not None else one  # a single school: nothing to pool
    row["pp_estimate"] = math.nan if m is None else float(
        percentiles.to_percentile_points(m.estimate, se.options.get("baseline_percentile", 50.0)))
    row["school_sd"] = float(np.std(m.estimates, ddof=1)) if m is not None else math.nan
    row["calibration_note"] = part.get("calibration_note", "")
    pl = part.get("placebo")
    if pl is not None:
        ok = np.isfinite(pl["effect_size"].to_numpy(dtype=float)) & np.isfinite(pl["es_se"].to_numpy(dtype=float))
        g = pl["effect_size"].to_numpy(dtype=float)[ok]
        row["placebo_k"] = int(g.size)
        row["placebo_sd"] = float(np.std(g, ddof=1)) if g.size > 1 else math.nan
        row["placebo_significant_share"] = float(np.mean(pl["pvalue"].to_numpy(dtype=float)[ok] < c.alpha))
    cal = part.get("calibration")
    if cal is not None:
        d = cal.as_dict()
        row.update({k: d[k] for k in ("tau_placebo", "tau2_placebo", "tau2_placebo_ci_low", "tau2_placebo_ci_high",
                                      "placebo_scale", "tau2_program", "tau2_program_ci_low", "tau2_program_ci_high",
                                      "tau_program",
                                      "calibrated_positive", "calibrated_negative", "calibrated_adjustment",
                                      "calibrated_expected_by_chance_raw")})
        # a new school's effect (program + circumstances): its variance is at least the placebo spread
        row.update({"pi_low_pl_only": row["pi_low"], "pi_high_pl_only": row["pi_high"],
                    "prob_negative_new_pl_only": row["prob_negative_new"]})
        row.update({k: d[k] for k in ("tau2_total", "pi_low", "pi_high", "prob_negative_new")})
        row["placebo_tau"] = d["tau_placebo"]
        row["tau2_excess"] = d["tau2_program"]
        row["share_excess"] = math.nan if cal.pl is None else d["tau2_program"] / cal.pl.tau2 if cal.pl.tau2 > 0 else 0.0
    row.update(part.get("placebo_stats", {}))
    return row


def _dropped_table(v: Validated, frames) -> pd.DataFrame:
    """Validation drops, then each stage's own (rows a design module repeats from validation
    are listed once, under validation)."""
    val = v.dropped.assign(stage="validation", subject="(all)") if len(v.dropped) else None
    rest = _concat(frames)
    if val is not None and len(rest):
        seen = set(zip(val["reason"], val["column"], val["n_rows"]))
        rest = rest[[(r, c, n) not in seen for r, c, n in zip(rest["reason"], rest["column"], rest["n_rows"])]]
    return _concat([val, rest])


def to_json_dict(ev: Evaluation) -> dict[str, Any]:
    """A JSON-ready summary of an evaluation (effects by subject, heterogeneity, warnings)."""

    def est(e) -> dict:
        return {k: _jsonable(getattr(e, k)) for k in ("estimate", "se", "ci_low", "ci_high", "pvalue", "df")}

    subjects = {}
    het = ev.heterogeneity
    for s in ev.subjects:
        e = ev.effects[s]
        entry = {
            "raw": est(e.raw),
            "effect_size": est(e.effect_size),
            "percentile_points": est(e.percentile_points),
            "sd": e.sd,
            "sd_kind": e.sd_kind,
            "n_treated": e.raw.n_treated,
            "n_control": e.raw.n_control,
            "n_clusters": e.raw.n_clusters,
            "method": e.raw.method,
            "sentence": ev.sentence(s),
            "mdes_sd": _jsonable(ev.mdes(s)),
            "mdes_percentile_points": _jsonable(percentiles.to_percentile_points(ev.mdes(s), e.baseline_percentile))
            if math.isfinite(ev.mdes(s)) else None,
        }
        if len(het) and (het["subject"] == s).any():
            entry["heterogeneity"] = {k: _jsonable(v) for k, v in het[het["subject"] == s].iloc[0].items() if k != "subject"}
        subjects[s] = entry
    return {
        "design": ev.design,
        "method": ev.method,
        "subjects": subjects,
        "warnings": list(ev.warnings),
        "notes": list(ev.notes),
        "data_checks": [] if ev.checks is None else [{"level": p.level, "message": p.line} for p in ev.checks.problems],
        "options": {k: _jsonable(v) for k, v in ev.options.items()},
        "provenance": json.loads(json.dumps(dict(ev.provenance), default=str)),
    }


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    return v


__all__ = ["estimate", "Evaluation", "resolve_options", "default_columns", "to_json_dict", "DESIGNS", "COMMON_DEFAULTS",
           "RCT_DEFAULTS", "MATCHED_DEFAULTS"]
