"""School-by-school program effects, for every school at once.

For each stratum s — a PL school with its own matched comparisons (matched-set long format:
``_pl_school`` names the PL school that anchors each row, ``_weight`` the analysis weight),
or a site of a multi-site RCT (randomized within schools/sites) — pleval fits

    y_i = α_s + θ_s T_i + x_i'γ_s + e_i,        i ∈ s,

by weighted least squares with school-specific parameters (covariate slopes are the
school's own), all strata together from grouped sufficient statistics
(``pleval.heterogeneity._batched``), not one model per school, in blocks of whole strata of
about 2¹⁸ rows (the design of one block at a time; only the strata's fits and the joint
covariance's cell scores are kept across blocks).

**Joint covariance.** The school estimates of one ``by`` group are one stacked estimation, and
their k×k sampling covariance (:attr:`SchoolEffects.vcov`; :mod:`._joint`) is cluster-robust
with clusters that span the sets: with ``school=`` (each row's own school; what
:func:`pleval.estimate` passes) every *comparison school* is one cluster across all the PL
sets it appears in — covering reused comparison students and the comparison schools' own
deviations — and every treated student is its own cluster (``cluster=``, the student id);
CR2 with Satterthwaite df by default, in clubSandwich's form with working model Φ = I
(``cr2="clubsandwich"``: equal error variances of the distinct students, whatever their
matching weights; Bell & McCaffrey 2002, Pustejovsky & Tipton 2018; :mod:`._joint_phi`) —
the √W-transformed form (``cr2="transformed"``) treats matching weights as precision weights
and its variances were 2–4% too small under VCG matching (docs/validation.md). With only ``cluster=`` (a student id) the clusters are
students, so reuse is covered but comparison-school deviations are not; without either, HC2
per school (independent schools). A set whose comparisons all come from one school has its
comparison students as clusters instead (one school as a cluster: its residuals sum to zero in
the set, so the SE would miss the comparison side's noise). In any arm of one cluster (one PL
or one comparison student) a robust SE cannot estimate that cluster's deviation: no estimate,
a note. Per-school SEs are the diagonal; the off-diagonal is shrunk
toward 0 by the estimated share of its sum of squares that is noise (Schäfer & Strimmer 2005;
:func:`._joint.regularize`), since a noisy cluster-robust off-diagonal inflates the quadratic
forms of the meta-analysis. The meta-analysis,
prediction interval, Hartung–Knapp and shrinkage then use the full matrix (GLS with
``V + τ²I``; :mod:`.meta`).

Each estimate is reported on three scales (docs/architecture.md, *Scales and the SD*): raw outcome units; effect size
``g_s = ω_s θ̂_s / SD`` with Hedges' ``ω_s = 1 − 3/(4N_s − 9)``, ``N_s = n_T + n_C``, and the
SD of :func:`pleval.effect_sizes.outcome_sd` (pooled within-group SD of the *unadjusted*
outcome by default; one SD per ``by`` group, so every school is on the same yardstick); and
percentile points ``100·Φ(Φ⁻¹(p/100) + g) − p``. p-values use t(df) and are adjusted across
the schools of each ``by`` group (BH by default). The effect sizes are then pooled
(:func:`~pleval.heterogeneity.meta.meta_analysis`) and shrunk toward the pooled mean
(:func:`~pleval.heterogeneity.shrinkage.empirical_bayes`).

**Merged copies.** A comparison student reused by several sets of one PL school may come as
one row with its copies' weights and squared weights summed and the copies counted
(``weight2=``, ``copies=``; :meth:`pleval.matching.MatchResult.school_sample`, what
:func:`pleval.estimate` passes): the estimates are those of the copies, and so are the SEs, df
and joint covariance under ``cr2="transformed"`` (docs/scale.md, *Why merging copies changes no
number*). Under ``cr2="clubsandwich"`` the merged row is one observation of Φ = I — the copies
share one outcome and one error — and copies passed unmerged (rows of one ``unit_id``, else
``cluster``, id in one set, equal in covariates and outcome) are merged first.

A single PL school's matched estimate is the program effect *plus* that school's own
deviation from its comparisons; student-level SEs do not cover the second part. Read the
shrunken column beside the raw one, and compare the spread with placebo schools
(:func:`~pleval.heterogeneity.placebo.placebo_schools`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._results import Frame, ResultMixin
from ..data import as_written, level_codes
from ..effect_sizes import hedges_omega, outcome_sd
from ..errors import DataError, DesignError, PlevalWarning
from .._workers import thread_map
from ..inference.robust import CR2_FORMS, cluster_order, group_spans, radix_argsort, span_rows
from ..matching.results import SchoolSample
from ..percentiles import IMPLAUSIBLE_ES, _ordinal, to_percentile_points
from ._batched import VCOV_TYPES, GroupedFit, grouped_wls
from ._joint import JOINT_VCOV_TYPES, joint_cells, joint_from_cells, regularize, uses_phi_identity
from .meta import MetaAnalysis, Method
from .metareg import MetaRegression, meta_regression
from .multiplicity import SignificanceCounts, significance_counts
from .school_inference import pool_schools
from .shrinkage import Shrinkage

PERCENTILE_NOTE = (
    "Percentile points are a shift in rank, not in the score: a school's effect of +{ex:.1f} "
    "percentile points means a student who would have scored at the {p} percentile of the "
    "comparison distribution without the program is expected to score at about the {q} with it "
    "(100·Φ(Φ⁻¹(p/100) + g) − p, from effect size g; at p = 50 this is the WWC improvement index)."
)

ROBUSTNESS_COLUMNS = ("partial_r2", "rv_q", "rv_qa")
"""Added after :data:`TABLE_COLUMNS` by ``school_effects(..., robustness_q=q)``."""

TABLE_COLUMNS = [
    "school",
    "n_treated",
    "n_comparison",
    "comparison_schools",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "pvalue",
    "p_adjusted",
    "effect_size",
    "es_se",
    "es_ci_low",
    "es_ci_high",
    "percentile_points",
    "pp_ci_low",
    "pp_ci_high",
    "shrunk_es",
    "shrunk_es_sd",
    "shrunk_es_ci_low",
    "shrunk_es_ci_high",
    "shrunk_pp",
    "reliability",
    "prob_negative",
    "note",
]


def percentile_note(baseline_percentile: float = 50.0, example_g: float = 0.1) -> str:
    """The footnote every school table carries."""
    ex = float(to_percentile_points(example_g, baseline_percentile))
    # (ordinals: "the 22nd", not "the 22th" as before 2026-12-04)
    return PERCENTILE_NOTE.format(ex=ex, p=_ordinal(baseline_percentile, exact=True), q=_ordinal(baseline_percentile + ex))


@dataclass(frozen=True, repr=False)
class SchoolEffects(ResultMixin):
    """School-by-school effects with their meta-analysis, shrinkage and significance counts.

    ``table`` has one row per school (and ``by`` group) with the columns of
    :data:`TABLE_COLUMNS` (plus the ``by`` columns first and any ``moderators``); ``meta``,
    ``shrinkage`` and ``counts`` are keyed by the ``by`` value (``"all"`` without ``by``).
    Effect-size columns are the scale of the meta-analysis and shrinkage. ``vcov`` holds, per
    ``by`` group, the joint k×k sampling covariance of the schools' effect sizes (schools with
    an estimate; labelled by school), whose diagonal is ``es_se²``: the cluster-robust matrix with
    its off-diagonal shrunk by ``vcov_shrinkage[key]`` (λ; :func:`._joint.regularize`), which the
    meta-analysis, shrinkage and placebo calibration use; ``vcov_raw`` holds the unshrunk one;
    ``vcov_eigen`` the pooling's :func:`numpy.linalg.eigh` of ``vcov[key]``, ``(λ, Q)``, which the
    placebo calibration of the same schools reuses (:func:`~.calibration.calibrate`'s ``eigen``).
    """

    table: pd.DataFrame = Frame()
    meta: Mapping[object, MetaAnalysis]
    shrinkage: Mapping[object, Shrinkage]
    counts: Mapping[object, SignificanceCounts]
    by: tuple[str, ...]
    sd: Mapping[object, tuple[float, str]]
    dropped: pd.DataFrame = Frame()
    options: Mapping[str, object] = field(default_factory=dict)
    vcov: Mapping[object, pd.DataFrame] = Frame(default={})
    vcov_raw: Mapping[object, pd.DataFrame] = Frame(default={})
    vcov_shrinkage: Mapping[object, float] = field(default_factory=dict)
    vcov_eigen: Mapping[object, tuple] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def footnote(self) -> str:
        return percentile_note(float(self.options.get("baseline_percentile", 50.0)))

    def meta_frame(self) -> pd.DataFrame:
        """One row per ``by`` group: the pooled effect and heterogeneity statistics."""
        rows = []
        for key, m in self.meta.items():
            d = m.as_dict()
            d["pp_estimate"] = float(to_percentile_points(m.estimate, self.options.get("baseline_percentile", 50.0)))
            rows.append({**self._key_dict(key), **d})
        return pd.DataFrame(rows)

    def counts_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**self._key_dict(k), **c.as_dict()} for k, c in self.counts.items()])

    def _key_dict(self, key) -> dict:
        if not self.by:
            return {}
        key = key if isinstance(key, tuple) else (key,)
        return dict(zip(self.by, key))

    def meta_regression(
        self, moderators: Sequence[str], *, method: Method = "REML", knapp_hartung: bool = True,
        level: float | None = None,
    ) -> dict[object, MetaRegression]:
        """Meta-regression of the effect sizes on school-level columns of :attr:`table`,
        one per ``by`` group (schools without an estimate are left out), on the shrunk joint
        covariance with the removed covariance added back to ``Var(β̂)`` (``vcov_unshrunk``).
        Knapp–Hartung t tests by default, as ``pleval estimate`` (with one moderator, no effect
        and τ = 0.1 the z test rejected in 9.3% of 2,000 simulated sets of 10 schools, 6.8% of
        20; Knapp–Hartung 5.6% and 5.4%: docs/heterogeneity.md). Schools without a value of a
        moderator are left out of that group's fit with a warning that counts and names them
        (as metafor omits them); text among a moderator's values stays an error. ``level``: of
        the intervals (default: the school effects' own, ``options["level"]``; it was always
        0.95 before 2026-12-04, under a column headed with the run's level). A diagonal covariance
        (independent school estimates) is passed as the SEs, so ``method="HS"`` works; HS with
        covariance between the schools' estimates is an error, as in :func:`meta_regression`."""
        level = float(self.options.get("level", 0.95)) if level is None else level
        missing = [m for m in moderators if m not in self.table.columns]
        if missing:
            raise DataError(
                f"moderator column(s) {missing} are not in the school table; pass them as "
                "moderators=... when computing school effects"
            )
        out = {}
        for key, sub in self._groups():
            sub = sub[np.isfinite(sub["effect_size"].to_numpy(dtype=float))]
            miss = sub[list(moderators)].isna().any(axis=1).to_numpy()
            if miss.any():
                shown = ", ".join(map(repr, sub["school"].to_numpy()[miss][:3])) + (", ..." if miss.sum() > 3 else "")
                warnings.warn(f"{key}: {int(miss.sum())} school(s) with a moderator missing ({', '.join(moderators)}): "
                              f"{shown} left out of the meta-regression (k = {int((~miss).sum())})",
                              PlevalWarning, stacklevel=2)
                sub = sub[~miss]
            ids = sub["school"].to_numpy()
            V, V0 = self.vcov.get(key), self.vcov_raw.get(key)
            V = None if V is None else V.loc[ids, ids].to_numpy()
            V0 = None if V is None or V0 is None else V0.loc[ids, ids].to_numpy()
            if not any(M is not None and np.count_nonzero(M) > len(ids) for M in (V, V0)):
                V = V0 = None  # diagonal (SE² > 0): independent estimates, for which HS is defined too
            out[key] = meta_regression(
                sub["effect_size"], sub["es_se"], sub[list(moderators)], method=method, knapp_hartung=knapp_hartung,
                level=level, vcov=V, vcov_unshrunk=V0, labels=ids,
            )
        return out

    def influence(self, regressions: Mapping | None = None) -> pd.DataFrame:
        """Leave-one-out fits and influence diagnostics of each ``by`` group's pooled effect
        (:func:`pleval.heterogeneity.leave_one_out`; metafor's ``leave1out``/``influence``), one
        row per school with ``analysis = "meta-analysis"``; with ``regressions``
        (:meth:`meta_regression`'s result) also each meta-regression's
        (:func:`pleval.heterogeneity.leave_one_out_metareg`), ``analysis = "meta-regression"``.
        A group too small for them (fewer than 3 schools) is left out, with a warning; when every
        group is, the :class:`DesignError` says why."""
        from .influence import leave_one_out
        from .metareg_influence import leave_one_out_metareg

        parts, small = [], []
        for key, m in self.meta.items():
            head = {**self._key_dict(key)}
            try:
                f = leave_one_out(m).to_frame().rename(columns={"label": "school"})
            except DesignError as exc:
                small.append(f"{self._label(key)}: {exc}")
                continue
            parts.append(f.assign(**head, analysis="meta-analysis"))
            if regressions and key in regressions:
                f = leave_one_out_metareg(regressions[key]).to_frame().rename(columns={"label": "school"})
                parts.append(f.assign(**head, analysis="meta-regression"))
        if not parts:
            raise DesignError("no leave-one-out diagnostics: " + "; ".join(small))
        if small:
            warnings.warn("leave-one-out diagnostics left out for " + "; ".join(small), PlevalWarning, stacklevel=2)
        out = pd.concat(parts, ignore_index=True)
        first = [*self.by, "analysis", "school"]
        return out[first + [c for c in out.columns if c not in first]]

    def cluster_robust(self, cluster: str, *, vcov: str = "CR2", df: str = "G-p",
                       regressions: Mapping | None = None) -> dict:
        """Cluster-robust inference (:func:`pleval.heterogeneity.cluster_robust`; metafor's
        ``robust()``) for the pooled effect of each ``by`` group, the clusters (schools sharing a
        district, a comparison school, ...) read from column ``cluster`` of :attr:`table`;
        ``vcov``: ``"CR2"`` (default; Satterthwaite df and the HTZ test of the moderators,
        metafor's ``robust(..., clubSandwich=TRUE)``) or ``"CR1"`` with ``df`` ``"G-p"`` (metafor's
        ``robust()``) or ``"G-1"`` (Stata). With ``regressions``
        (:meth:`meta_regression`'s result) also each group's meta-regression, under key
        ``(key, "meta-regression")``. Returns ``{key: RobustMeta}``."""
        from .robust import cluster_robust

        if cluster not in self.table.columns:
            raise DataError(f"cluster column {cluster!r} is not in the school table; pass it as cluster=... when "
                            "computing school effects")
        out = {}
        for key, sub in self._groups():
            of = dict(zip(sub["school"].to_numpy(), sub[cluster].to_numpy()))
            out[key] = cluster_robust(self.meta[key], [of[s] for s in self.meta[key].labels], vcov=vcov, df=df)
            if regressions and key in regressions:
                reg = regressions[key]
                out[(key, "meta-regression")] = cluster_robust(reg, [of[s] for s in reg.labels], vcov=vcov, df=df)
        return out

    def _groups(self):
        if not self.by:
            yield "all", self.table
            return
        for key, sub in self.table.groupby(list(self.by), sort=False):
            yield _key(key), sub

    def forest_frame(self, key=None) -> pd.DataFrame:
        """One ``by`` group's schools on the effect-size scale, in the columns
        :func:`pleval.plots.forest` reads (``school, estimate, se, ci_low, ci_high, shrunk,
        shrunk_ci_low, shrunk_ci_high, pvalue, pvalue_adj``)."""
        groups = dict(self._groups())
        if key is None:
            if len(groups) != 1:
                raise DataError(f"name the group: one of {list(groups)}")
            key = next(iter(groups))
        if key not in groups:
            raise DataError(f"no group {key!r}; groups are {list(groups)}")
        t = groups[key]
        return pd.DataFrame(
            {
                "school": t["school"].to_numpy(),
                "estimate": t["effect_size"].to_numpy(dtype=float),
                "se": t["es_se"].to_numpy(dtype=float),
                "ci_low": t["es_ci_low"].to_numpy(dtype=float),
                "ci_high": t["es_ci_high"].to_numpy(dtype=float),
                "shrunk": t["shrunk_es"].to_numpy(dtype=float),
                "shrunk_ci_low": t["shrunk_es_ci_low"].to_numpy(dtype=float),
                "shrunk_ci_high": t["shrunk_es_ci_high"].to_numpy(dtype=float),
                "pvalue": t["pvalue"].to_numpy(dtype=float),
                "pvalue_adj": t["p_adjusted"].to_numpy(dtype=float),
            }
        ).dropna(subset=["estimate"])

    def export(self, path, **kw):
        """Write the table (CSV, Excel, Markdown or HTML, by extension); see :mod:`.export`."""
        from .export import export_table

        return export_table(self, path, **kw)

    def summary(self) -> str:
        ok = self.table[np.isfinite(self.table["effect_size"])]
        n_schools = ok["school"].nunique()
        head = f"School effects: {n_schools} school{'s' if n_schools != 1 else ''} with an estimate"
        if self.by and len(ok) != n_schools:  # one row per school and group (e.g. subject): count both
            head += f" ({len(ok)} school × {' × '.join(map(str, self.by))} estimates)"
        lines = [head]
        sd_parts = [f"{self._label(k)}: {v[0]:.4g} ({v[1]})" for k, v in self.sd.items() if np.isfinite(v[0])]
        if sd_parts:
            lines.append("  SD used for effect sizes — " + "; ".join(sd_parts))
        if len(self.dropped):
            lines.append(
                "  rows/schools left out: "
                + "; ".join(f"{r.n_rows} ({r.reason}{', ' + r.column if r.column else ''})" for r in self.dropped.itertuples())
            )
        for key, m in self.meta.items():
            lines.append("")
            lines.append(f"[{self._label(key)}] effect sizes")
            lines.append(m.summary())
            lines.append(self.counts[key].summary())
            sh = self.shrinkage[key]
            lines.append(
                f"Shrinkage: SD of raw school effects {np.std(sh.estimates, ddof=1):.4f} -> "
                f"{np.std(sh.shrunk, ddof=1):.4f} after empirical-Bayes shrinkage (ranks remain uncertain)."
            )
        from .export import _pooled_line

        for key in (k for k in self.counts if k not in self.meta):  # fewer than 2 schools: say what is missing and why
            lines.append("")
            lines.append(f"[{self._label(key)}] " + _pooled_line(self, key))
        lines.append("")
        lines.append(self.footnote)
        return "\n".join(lines)

    def _label(self, key) -> str:
        return str(key) if not isinstance(key, tuple) else ", ".join(map(str, key))


def _finish(
    table: pd.DataFrame,
    *,
    by: tuple[str, ...],
    method: Method,
    hartung_knapp: bool,
    adjust: str,
    alpha: float,
    level: float,
    baseline_percentile: float,
    vcov_es: np.ndarray | None = None,
    prediction: str = "t",
    vcov_es_var: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict, dict, dict, dict, dict, dict, dict]:
    """Add adjusted p-values, shrinkage and percentile points; pool each ``by`` group (GLS with
    the joint covariance ``vcov_es``, rows aligned with ``table``, when given, its off-diagonal
    regularized within the group by :func:`._joint.regularize` with the entries' variances
    ``vcov_es_var``). The groups are pooled in :func:`pleval._workers.thread_map`'s threads (each
    its own k × k algebra), their results taken in the groups' order."""
    added = {col: np.full(len(table), np.nan) for col in (
        "p_adjusted", "shrunk_es", "shrunk_es_sd", "shrunk_es_ci_low", "shrunk_es_ci_high", "shrunk_pp",
        "reliability", "prob_negative")}  # filled group by group, joined to the table once at the end
    metas, shrinks, counts, vcovs, raws, lams, eigens = {}, {}, {}, {}, {}, {}, {}
    groups = [("all", np.arange(len(table)))] if not by else [
        (_key(k), idx) for k, idx in table.groupby(list(by), sort=False).indices.items()
    ]
    jobs = []  # the groups to pool: (key, es, ses, labels, rows)
    for key, idx in groups:
        sub = table.iloc[idx]
        es = sub["effect_size"].to_numpy(dtype=float)
        ses = sub["es_se"].to_numpy(dtype=float)
        ok = np.isfinite(es) & np.isfinite(ses) & (ses > 0)
        c = significance_counts(es, np.where(ok, sub["pvalue"].to_numpy(dtype=float), np.nan), alpha=alpha, method=adjust)
        counts[key] = c
        added["p_adjusted"][idx] = c.p_adjusted
        if ok.sum() < 2:
            warnings.warn(f"{key}: fewer than 2 schools with an estimate; no meta-analysis", PlevalWarning, stacklevel=3)
            continue
        jobs.append((key, es[ok], ses[ok], sub["school"].to_numpy()[ok], idx[ok]))

    def pool(job):  # one group's regularized covariance and pooling (reads the shared arrays, writes none)
        key, es, ses, labels, rows = job
        V = V_raw = np.diag(ses**2) if vcov_es is None else vcov_es[np.ix_(rows, rows)]
        lam = eig = None
        if vcov_es is not None:
            V, lam = regularize(V, vcov_es_var[np.ix_(rows, rows)])
            eig = np.linalg.eigh(V)  # kept for the placebo calibration of these schools
        try:
            m, sh = pool_schools(es, ses, None if vcov_es is None else V, method=method, hartung_knapp=hartung_knapp,
                                 level=level, prediction=prediction, labels=labels,
                                 V_raw=None if vcov_es is None else V_raw, eigen=eig)
        except DesignError as exc:  # e.g. a singular joint covariance: the pooling fails, not the schools' estimates
            m, sh = exc, None
        return V, V_raw, lam, eig, m, sh

    # the groups (subjects) pooled in threads where a core is free (each a k × k eigen-decomposition)
    for (key, es, ses, labels, rows), (V, V_raw, lam, eig, m, sh) in zip(jobs, thread_map(pool, jobs)):
        if sh is None:
            warnings.warn(f"{key}: no meta-analysis or shrinkage ({m}); the school estimates stand", PlevalWarning,
                          stacklevel=3)
            continue
        if vcov_es is not None:
            raws[key] = pd.DataFrame(V_raw, index=labels, columns=labels, copy=False)
            lams[key] = lam
            eigens[key] = eig
        vcovs[key] = pd.DataFrame(V, index=labels, columns=labels, copy=False)  # fresh arrays: not copied
        metas[key], shrinks[key] = m, sh
        for col, v in (("shrunk_es", sh.shrunk), ("shrunk_es_sd", sh.shrunk_sd), ("shrunk_es_ci_low", sh.ci_low),
                       ("shrunk_es_ci_high", sh.ci_high), ("reliability", sh.reliability),
                       ("prob_negative", sh.prob_negative),
                       ("shrunk_pp", to_percentile_points(sh.shrunk, baseline_percentile))):
            added[col][rows] = v
    table = pd.concat([table.drop(columns=[c for c in added if c in table.columns]),
                       pd.DataFrame(added, index=table.index)], axis=1)
    return table, metas, shrinks, counts, vcovs, raws, lams, eigens


def _school_robustness(fit, e2, est, se, dfree, q: float, alpha: float) -> dict:
    """Per-school ``partial_r2``, ``rv_q``, ``rv_qa`` from the classical fit of each school
    (σ̂²_s = Σ w e²/(n_s − p_s), ``e2`` = Σ w e² per school, SE_classical = √(σ̂²_s [S_s⁻¹]_TT))
    with the design effect κ = SE/SE_classical and the school's df entering ``rv_qa``
    (pleval.sensitivity.ovb)."""
    from ..sensitivity.ovb import partial_r2, robustness_value

    dof = fit.n - fit.rank
    good = fit.ok & (dof > 1) & np.isfinite(se) & np.isfinite(dfree)
    dof = np.where(good, dof, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        se_c = np.sqrt(fit.bread[:, 1, 1] * e2 / dof)
        t_c = est / se_c
        f_crit = se / se_c * stats.t.ppf(1 - alpha / 2, np.where(good, dfree, 1.0)) / np.sqrt(dof - 1)
        return {"partial_r2": partial_r2(t_c, dof), "rv_q": robustness_value(t_c, dof, q),
                "rv_qa": robustness_value(t_c, dof, q, f_crit=f_crit)}


def _design_columns(df: pd.DataFrame | SchoolSample, covariates: Sequence[str], cnt: np.ndarray | None, n: int,
                    leave_out_constant: bool = False) -> tuple[list, list]:
    """The covariates of ``X = [1, t, covariates]`` (:func:`_design_rows`), one entry per
    covariate: ``(values, centres, numeric)``; and the covariates left out. A covariate without
    variation in the rows (one value, one category) is refused (:class:`DataError` naming it) or,
    with ``leave_out_constant``, left out: after centring it would be a column of zeros in every
    school, which each school's fit drops (pseudo-inverse) as it drops a column constant within
    the school, so leaving it out changes no estimate."""
    out, left_out = [], []
    for c in covariates:  # a handful of covariates, one design column in memory at a time
        try:
            out.append(_design_column(df, c, cnt, n))
        except DataError:  # (the only refusal of a column's coding: no variation, or a single category)
            if not leave_out_constant:
                raise
            left_out.append(c)
    return out, left_out


def _design_column(df: pd.DataFrame | SchoolSample, c: str, cnt: np.ndarray | None, n: int) -> tuple:
    """Covariate ``c``'s entry of :func:`_design_columns`: numeric (and 0/1 boolean) covariates as
    they are (checked for variation without a costly ``nunique``), categorical ones as their level
    codes, expanded as :func:`pleval.data.design_matrix` does (an indicator per level but the
    first, from :func:`pleval.data.level_codes`); each design column is centred at its mean over
    the copies of all rows (only the intercepts move), computed here once for every block of
    rows. A column without variation raises :class:`DataError`."""
    coded = df.level_codes(c) if isinstance(df, SchoolSample) else None  # its codes, not its values
    s = v = None
    if coded is None:  # whole numbers (booleans as 0/1): a lazy sample's gathered in a narrow type
        v = df.integers(c) if isinstance(df, SchoolSample) else None
        if v is None:
            s = df[c]
            v = s.to_numpy() if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biu" else None
    if v is not None:
        lo, hi = v.min(), v.max()
        if not hi > lo:
            raise DataError(f"column {c!r} (covariate) has no variation in the analysed rows; leave it out")
        col = v.astype(np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi)), copy=False)  # narrowest type: exact as floats
        lo, hi = int(lo), int(hi)
        if lo >= 0 and hi < 1 << 16 and hi * n < 2**53:
            # Σ copies·value, a whole number below 2⁵³, summed exactly in 64-bit integers (as the
            # floating-point sum of the copies of each value, every partial sum exact): the mean
            # to the last bit
            total = int(col.sum(dtype=np.int64) if cnt is None else np.einsum("i,i->", col, cnt, dtype=np.int64))
            return col, np.array([total / n]), True
        s = df[c] if s is None else s
    if s is not None and pd.api.types.is_numeric_dtype(s):  # booleans too, as 0/1
        col = s.to_numpy(dtype=float)
        if not np.ptp(col) > 0:
            raise DataError(f"column {c!r} (covariate) has no variation in the analysed rows; leave it out")
        centre = np.array([col.mean() if cnt is None else cnt @ col / n])
        if s.dtype.kind in "biu":  # integers kept in the narrowest type that holds them
            v = s.to_numpy()
            col = v.astype(np.result_type(np.min_scalar_type(v.min()), np.min_scalar_type(v.max())))
        elif isinstance(df, SchoolSample) and s.dtype == np.float64 and df.data[c].dtype == np.float64:
            col = _Gathered(df.data[c].to_numpy(), df._at)  # read by block from the data: no float per pair held
        return col, centre, True
    codes, levels = coded if coded is not None else level_codes(s, c)
    # an indicator's mean: its level's rows (copies) over all, exact whole-number sums
    centres = np.bincount(codes, weights=cnt, minlength=len(levels))[1:] / (len(df) if cnt is None else n)
    return codes.astype(np.min_scalar_type(-len(levels))), centres, False


class _Gathered:
    """A school sample's float column as its data's column and the pairs' rows: ``g[rows]`` is
    ``values[at[rows]]``, the pairs' values of ``rows``, gathered when a block of rows is formed
    (a column of every pair is not held through the fits)."""

    def __init__(self, values: np.ndarray, at: np.ndarray):
        self.values, self.at = values, at

    def __getitem__(self, rows) -> np.ndarray:
        return self.values[self.at[rows]]


_DESIGN_ROWS = 1 << 12
"""Rows of ``X`` written at a time by :func:`_design_rows`: a chunk's columns are written while
its rows are in a core's cache (2^18 rows, p = 11: 7 ms a block by chunks of 4,096 rows, 9-14 ms
a column of every row at a time)."""


def _design_rows(columns: list, t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``X = [1, t, covariates]`` of ``rows`` (n_rows × p, row-major: the joint covariance
    gathers rows), the covariates of :func:`_design_columns` centred at their centres; by chunks
    of :data:`_DESIGN_ROWS` rows, from each column's values of all ``rows`` gathered at once (one
    gather a column, not one a chunk)."""
    X = np.empty((len(rows), 2 + sum(len(c) for _, c, _ in columns)))
    tb, vals = t[rows], [values[rows] for values, _, _ in columns]  # narrow types: a few bytes a row
    for lo in range(0, len(rows), _DESIGN_ROWS):  # chunks of rows, not rows
        r, Xc = slice(lo, lo + _DESIGN_ROWS), X[lo : lo + _DESIGN_ROWS]
        Xc[:, 0] = 1.0
        Xc[:, 1] = tb[r]
        j = 2
        for vb, (_, centres, numeric) in zip(vals, columns):  # a handful of covariates
            v = vb[r]
            if numeric:
                np.subtract(v, centres[0], out=Xc[:, j])
            else:
                for k in range(centres.size):  # levels, not rows
                    np.subtract(v == k + 1, centres[k], out=Xc[:, j + k])
            j += centres.size
    return X


_BLOCK_ROWS = 1 << 18
"""Rows (of whole strata) per block of :func:`_fit_blocks`."""


def _arm_cells(codes: np.ndarray, t: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cell, rows)``: each row's (stratum, arm) cell ``2·stratum + t`` and each cell's row count
    (:func:`_one_cluster`'s, formed once for its calls on one sample)."""
    g = codes.astype(np.intp) * 2
    g += t
    return g, np.bincount(g, minlength=2 * G)


def _one_cluster(codes: np.ndarray, t: np.ndarray, clusters: np.ndarray | None, G: int,
                 arms: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per stratum and arm (G × 2: the arm ``t`` = 0, 1), whether its rows lie in one cluster
    (``clusters`` None: are one row). That cluster's residual is fitted exactly by the arm's
    intercept (leverage 1), so a cluster-robust (or HC) SE leaves its deviation out and is too
    small: one PL student's own noise, or one comparison school's, would be missing from the
    school's SE. An arm without rows is False (its note says so). Both arms in one pass over the
    (stratum, arm) cells (``arms``: :func:`_arm_cells` of ``codes`` and ``t`` when formed
    already), without a row mask per arm."""
    g, n = _arm_cells(codes, t, G) if arms is None else arms
    if clusters is None:
        return (n == 1).reshape(G, 2)
    rep = np.empty(2 * G, dtype=clusters.dtype)
    rep[g] = clusters  # one of each cell's clusters (whichever write lands): one cluster iff every row's is it
    several = np.zeros(2 * G, dtype=bool)
    several[g[clusters != np.take(rep, g)]] = True  # (every write the same value)
    return ((n > 0) & ~several).reshape(G, 2)


_SCHOOL_CELLS = 1 << 20
"""(stratum, school) cells per block of :func:`_comparison_schools`' dense tables (8 MB of float64)."""


def _comparison_schools(codes: np.ndarray, rows: np.ndarray, schools: np.ndarray, w: np.ndarray | None,
                        G: int) -> np.ndarray:
    """Per stratum, the effective number of schools its ``rows`` (the comparison arm) come from:
    Kish's ``(Σ_c W_c)² / Σ_c W_c²``, ``W_c`` the summed weight (or row count) of school ``c``
    (Kish 1965, §11.7). The comparison mean weights school ``c``'s own deviation by
    ``W_c / Σ W``, so a school's deviation from its comparisons has variance
    ``σ²_b (1 + 1/n_eff)`` when schools deviate independently with variance ``σ²_b``
    (:func:`.calibration.calibrate` uses it). NaN for a stratum without such rows.

    Where the (stratum, school) table is dense enough, it is formed a block of strata at a time
    (:data:`_SCHOOL_CELLS` cells; the rows in stratum order, :func:`cluster_order`, unless the
    whole table is one block), each block's ``W`` one ``np.bincount`` and each of its rows summed
    on its own (the same sums for any blocks): at 10M students (25M rows of 4,158 strata, 20,790
    schools) 0.47 against 1.5–3.4 s, and 8 MB at a time rather than 0.69 GB at once (with the
    whole table's int64 keys, 1.4 GB); sparse tables from the sorted cells."""
    rows = rows & (schools >= 0)  # (a missing school id is no school)
    n_rows = int(np.count_nonzero(rows))
    n_s = int(schools.max(where=rows, initial=0)) + 1  # (1 without such rows)
    w = None if w is None else np.asarray(w, dtype=float)
    if G * n_s <= max(4 * n_rows, 1 << 20):  # a dense (stratum, school) table is small: by blocks of strata
        total, squares = np.empty(G), np.empty(G)
        step = max(1, _SCHOOL_CELLS // (n_s + 1))
        order = None  # one block: the rows as they are
        if step < G:
            order, per_group = cluster_order(codes, G)
            ends = np.concatenate([[0], np.cumsum(per_group)])
        for g0 in range(0, G, step):  # blocks of strata, not strata
            g1 = min(G, g0 + step)
            r0, r1 = (0, len(codes)) if step >= G else (int(ends[g0]), int(ends[g1]))
            idx = slice(r0, r1) if order is None else order[r0:r1]
            key = codes[idx].astype(np.intp)
            key -= g0
            key *= n_s + 1
            key += np.where(rows[idx], schools[idx], n_s)  # the other rows: a last column, left out
            W = np.bincount(key, weights=None if w is None else w[idx], minlength=(g1 - g0) * (n_s + 1))
            W = W.reshape(g1 - g0, n_s + 1)[:, :n_s]
            # each row summed on its own, whichever block it lies in (einsum's sums would depend on its
            # place in the block once a row is longer than einsum's 8,192-element buffer)
            total[g0:g1], squares[g0:g1] = W.sum(axis=1), np.square(W).sum(axis=1)
    else:  # sorted (stratum, school) cells, each cell's weight summed
        key = codes[rows].astype(np.int64) * n_s + schools[rows]
        wt = np.ones(n_rows) if w is None else w[rows]
        order = radix_argsort(key)
        ks = key[order]
        start = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
        W = np.add.reduceat(wt[order], start) if start.size else np.zeros(0)
        cell_g = ks[start] // n_s
        total = np.bincount(cell_g, weights=W, minlength=G)
        squares = np.bincount(cell_g, weights=W * W, minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(squares > 0, total * total / np.where(squares > 0, squares, 1.0), np.nan)
        # to 9 significant digits: the same count whichever way the weights were summed (a merged
        # copy's weight is its copies' sum; the frame and the lazy school sample agree)
        digits = 8 - np.floor(np.log10(np.where(n_eff > 0, n_eff, 1.0)))
        return np.round(n_eff * 10.0**digits) / 10.0**digits


def _fit_blocks(y, t, w, cnt, codes, G: int, design: list, vcov: str, clusters, units, cr2: str, sse: bool = True):
    """The per-stratum fits (:func:`._batched.grouped_wls`) and, for the CR types, the cells
    of the joint covariance (:func:`._joint.joint_cells`) by blocks of whole strata of about
    :data:`_BLOCK_ROWS` rows (a loop over blocks, not strata): a stratum's regression and
    its (stratum, cluster) cells are its own, so only ``X`` of a block, never of the whole
    sample, is formed, and only the strata's fits and the cells' scores are kept; the caller
    forms the joint covariance from the blocks' cells (:func:`._joint.joint_from_cells`) once
    the design and the row-length codes are freed. The clusters are numbered once for all
    blocks (by the caller; ``clusters``: codes 0..n_clusters−1), and whether the Φ = I form
    applies is decided once, from all the weights. The blocks, independent, are spread over
    :func:`pleval._workers.thread_map`'s threads (a core no worker holds) and their results
    taken in the blocks' order, so they are those of one thread, bit for bit. Returns
    ``(fit, e2, cells)``: the fits (no residuals), Σ w e² per stratum (None unless ``sse``: only
    the robustness values read it), and each block's :class:`._joint.JointCells` (None for the
    other vcov types). For the CR types the fits' own covariance (classical) is not formed: the
    cells give it."""
    joint = vcov in JOINT_VCOV_TYPES
    w1 = np.ones(len(y)) if w is None else w
    phi_identity = joint and uses_phi_identity(w1, codes, G, vcov, cr2)
    order, spans = group_spans(codes, G, _BLOCK_ROWS)

    def fit(span):  # one block of strata: its fits, Σ w e² and cells (reads the arrays, writes none)
        g0, g1, r0, r1 = span
        rows = span_rows(order, r0, r1)
        X = _design_rows(design, t, rows)
        gb, wb, cb = codes[rows] - g0, w1[rows], None if cnt is None else cnt[rows]
        f = grouped_wls(y[rows], X, gb, g1 - g0, weights=None if w is None else wb,
                        vcov=("classical" if sse else None) if joint else vcov, target=1, counts=cb, squares=phi_identity)
        e2 = None  # Σ w e², when asked
        if sse:
            e2 = np.bincount(gb, weights=wb * f.resid**2, minlength=g1 - g0) if f.sse is None else f.sse
        c = None
        if joint:
            c = joint_cells(X, f.resid, wb, gb, g1 - g0, f.bread, clusters[rows], f.ok, f.rank, vcov=vcov,
                            target=1, counts=cb, cr2=cr2, units=None if units is None else units[rows],
                            phi_identity=phi_identity, squares=f.sq)
            c = replace(c, group=c.group + g0)
        return replace(f, resid=None, sq=None, sse=None), e2, c

    fits, e2, cells = zip(*thread_map(fit, spans))
    fit = GroupedFit(**{k: np.concatenate([getattr(f, k) for f in fits]) for k in
                        ("params", "vcov", "df", "n", "n_clusters", "ok", "rank", "bread")}, resid=None)
    return fit, np.concatenate(e2) if sse else None, list(cells) if joint else None


def _key(k):
    """A by-group key: the value itself for one by column, a tuple for several."""
    if isinstance(k, tuple):
        return k[0] if len(k) == 1 else k
    return k


def _pp(es: np.ndarray, baseline: float) -> np.ndarray:
    out = np.full(es.shape, np.nan)
    ok = np.isfinite(es)
    if ok.any():
        out[ok] = to_percentile_points(es[ok], baseline)
    return out


MULTISITE = "multi-site trial"
"""``SchoolEffects.options["design"]`` of a multi-site trial's school effects (students randomized
within each school; set by :func:`pleval.estimate`): each school's estimate is then the program's
effect in that school, not that effect plus the school's own circumstances."""


def school_effects(
    data: pd.DataFrame,
    *,
    stratum: str | None = None,
    treatment: str = "treatment",
    outcome: str = "posttest",
    covariates: Sequence[str] = (),
    weight: str | None = None,
    cluster: str | None = None,
    school: str | None = None,
    unit_id: str | None = None,
    by: str | Sequence[str] | None = None,
    moderators: Sequence[str] = (),
    sd: Literal["pooled", "comparison"] | float | Mapping = "pooled",
    vcov: str | None = None,
    cr2: Literal["clubsandwich", "transformed"] = "clubsandwich",
    method: Method = "REML",
    hartung_knapp: bool = True,
    adjust: Literal["bh", "holm", "bonferroni"] = "bh",
    alpha: float = 0.05,
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    hedges_correction: bool | None = None,
    robustness_q: float | None = None,
    weight2: str | None = None,
    copies: str | None = None,
    leave_out_constant: bool = False,
) -> SchoolEffects:
    """One effect per PL school (or RCT site), computed for all schools at once.

    Parameters
    ----------
    data : DataFrame or SchoolSample
        Student rows. For matched designs, the matched-set long format of ``pleval.match``
        (``_pl_school``, ``_weight``), or its school sample (``MatchResult.school_sample``, also
        lazily: its columns are then read one at a time); for multi-site RCTs, the student file.
    stratum : str, optional
        Column naming the school each row's comparison belongs to. Default ``"_pl_school"``
        when present (then ``weight`` defaults to ``"_weight"``).
    treatment, outcome : str
        0/1 (or True/False) treatment indicator and the outcome.
    covariates : sequence of str
        Baseline covariates (numeric, or categorical expanded to indicators), with
        school-specific slopes. A category absent from a school is dropped for that school.
    weight : str, optional
        Analysis weights (WLS).
    cluster : str, optional
        Cluster id for cluster-robust SEs (the student id in matched designs with reuse, or a
        classroom id). A cluster spanning several schools' sets makes their estimates
        correlated (joint covariance). With ``school``, it clusters the treated rows only.
    school : str, optional
        Each row's own school. Comparison rows are then clustered by their school (one cluster
        across every set the school appears in) and treated rows by ``cluster`` (each row
        without it): the joint covariance of :mod:`._joint`. The table's ``comparison_schools``
        is then the effective number of schools each school's comparison weight comes from
        (:func:`_comparison_schools`; NaN without ``school``). A set whose comparison rows are all
        of one school clusters them by ``cluster`` instead (with a note): as one cluster, the
        set's intercept would absorb their residuals and the SE leave their noise out.
    unit_id : str, optional
        Student id; when given, ``n_treated``/``n_comparison`` count distinct students
        (otherwise rows).
    by : str or sequence, optional
        Separate analyses (SD, adjustment, meta-analysis) per value, e.g. ``"subject"``.
    moderators : sequence of str
        School-level columns carried into the table (value among the school's treated rows),
        for :meth:`SchoolEffects.meta_regression`.
    sd : "pooled", "comparison", a positive number, or a mapping {by value: number}
        Standardizing SD (:func:`pleval.effect_sizes.outcome_sd`).
    vcov : {"CR2", "CR1", "CR0", "HC2", "HC1", "HC0", "classical"}, optional
        Default ``"CR2"`` (Satterthwaite df) with ``school``, ``"CR1"`` with ``cluster`` only,
        ``"HC2"`` otherwise. The CR types give the joint covariance; the others a diagonal one.
    cr2 : {"clubsandwich", "transformed"}
        The CR2 form where weights vary within a school's set (:mod:`._joint`; the forms are
        equal otherwise): ``"clubsandwich"`` (default; working model Φ = I — equal error
        variances of the distinct students, whatever their matching weights; :mod:`._joint_phi`)
        or ``"transformed"`` (CR2 of the √W-transformed model, working model Var(e) ∝ 1/w).
        Under ``"clubsandwich"`` a row is one observation: copies of one student in one set —
        rows of one ``unit_id`` (else ``cluster``) id equal in covariates and outcome — are
        merged into one first (weights summed), so merged and unmerged samples agree.
    method, hartung_knapp : meta-analysis options (:func:`meta_analysis`).
    adjust, alpha : multiplicity adjustment and significance level for the counts.
    level : confidence level; baseline_percentile : p of the percentile-point conversion.
    hedges_correction : apply Hedges' ω per school (WWC); default: yes for the pooled SD, no
        for the comparison group's (Glass) or a given norm SD (as ``MatchResult.estimate``).
    robustness_q : float, optional
        Add each school's sensitivity to an unobserved confounder (Cinelli & Hazlett 2020, as
        :mod:`pleval.sensitivity.ovb` does for the overall estimate): ``partial_r2`` of the
        treatment with the outcome in the school's regression, ``rv_q`` (the share of both
        residual variances a confounder must explain to reduce the estimate by
        100·``robustness_q`` %) and ``rv_qa`` (… to make it not significant at ``alpha``; the
        school's SE and df enter as the design effect κ = SE/SE_classical, as in ``ovb``).
    weight2, copies : columns of a sample whose rows merge copies of one row within one
        stratum (:meth:`pleval.matching.MatchResult.school_sample`: a comparison student in
        several sets of one PL school), holding each row's summed squared weights and number of
        copies (``weight`` holds the summed weights). Every count (residual df, CR1 factors,
        row counts) then counts the copies and the estimates (and under ``cr2="transformed"``
        the SEs, df and joint covariance) are those of the copies (docs/scale.md); HC types, which give each copy its own term, are
        refused.
    leave_out_constant : bool
        A covariate without variation in the analysed rows (one value, or one category) is
        refused with a :class:`DataError` naming it (default), or left out of the fits: it is a
        column of zeros once centred, which each school's fit drops as it drops a column constant
        within the school, so no estimate changes. Those left out are named in
        ``options["covariates_left_out"]`` (the placebo rounds pass True: a round's matched rows
        may lack, say, an ELL student that the analysis's have).
    """
    if not isinstance(data, (pd.DataFrame, SchoolSample)):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    if stratum is None:
        if "_pl_school" not in data.columns:
            raise DataError("name the school column: stratum='school_id' (or pass pleval.match(...).matched)")
        stratum = "_pl_school"
        if weight is None and "_weight" in data.columns:
            weight = "_weight"
    by_cols = (by,) if isinstance(by, str) else tuple(by or ())
    if not by_cols and "subject" in data.columns and data["subject"].nunique() > 1:
        warnings.warn(
            "the data have several subjects but by=None pools them in each school's regression; "
            "pass by='subject' for one effect per school and subject",
            PlevalWarning,
            stacklevel=2,
        )
    if hedges_correction is None:
        hedges_correction = isinstance(sd, str) and sd == "pooled"
    covariates = tuple(covariates)
    moderators = tuple(moderators)
    for role, col in [("stratum", stratum), ("treatment", treatment), ("outcome", outcome), *[("covariate", c) for c in covariates], ("weight", weight), ("cluster", cluster), ("school", school),
                      ("unit_id", unit_id), *[("by", c) for c in by_cols], *[("moderator", c) for c in moderators]]:
        if col is not None and col not in data.columns:
            raise DataError(f"column {col!r} ({role}) is not in the data; available: {', '.join(map(str, data.columns[:25]))}")
    if vcov is None:
        vcov = "CR2" if school else ("CR1" if cluster else "HC2")
    if vcov not in (*JOINT_VCOV_TYPES, *VCOV_TYPES):
        raise DataError(f"vcov must be one of {(*JOINT_VCOV_TYPES, *VCOV_TYPES)}; got {vcov!r}")
    if cr2 not in CR2_FORMS:
        raise DataError(f"cr2 must be one of {CR2_FORMS}; got {cr2!r}")
    joint = vcov in JOINT_VCOV_TYPES
    if copies is not None and vcov.startswith("HC"):
        raise DataError(f"vcov={vcov!r} gives each copy of a merged row its own term: pass the copies, not copies=")
    for role, col in (("weight2", weight2), ("copies", copies)):
        if col is not None and (col not in data.columns or weight is None):
            raise DataError(f"column {col!r} ({role}) is not in the data, or no weight= is given with it")
    if joint and cluster is None and school is None:
        raise DataError(f"vcov={vcov!r} needs cluster='<column>' or school='<column>'")

    n_in = len(data)
    dropped = []
    keep = np.ones(n_in, dtype=bool)

    def drop(mask, reason, column):
        nonlocal keep
        m = mask & keep
        if m.any():
            dropped.append({"reason": reason, "column": column, "n_rows": int(m.sum() if cnt is None else cnt[m].sum())})
            keep &= ~m

    cnt = None if copies is None else data[copies].to_numpy()
    if cnt is not None and cnt.dtype.kind not in "iu":  # whole numbers, in the type they come in
        cnt = cnt.astype(np.int64)
    t_int = data.integers(treatment) if isinstance(data, SchoolSample) else None  # a byte a pair, none missing
    if t_int is not None:
        bad_t = (t_int != 0) & (t_int != 1)
        t_num = t_int  # compared with 0 and 1 as the floats would be
    else:
        t_raw = data[treatment]
        t_num = pd.to_numeric(t_raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan) if not pd.api.types.is_bool_dtype(t_raw) \
            else t_raw.to_numpy(dtype=float)
        bad_t = np.isfinite(t_num) & ~np.isin(t_num, (0.0, 1.0))
        bad_t |= t_raw.notna().to_numpy() & ~np.isfinite(t_num)
        del t_raw
    if bad_t.any():
        raise DataError(f"column {treatment!r} (treatment) must be 0/1: {int(bad_t.sum()):,} row(s) hold other values")
    if t_int is None:
        drop(~np.isfinite(t_num), "missing treatment", treatment)
    del t_int
    for c in moderators:  # a school's value is the mean over its treated rows (below): the others are never read
        infinite_moderator(data, c, stratum, rows=t_num == 1)
    if isinstance(data, SchoolSample) and outcome in data.cols and data.data[outcome].dtype == np.float64:
        y = data.data[outcome].to_numpy()[data._at]  # numbers already (NaN where missing): the pairs' values
    else:
        y_raw = data[outcome]
        y_s = pd.to_numeric(y_raw, errors="coerce")
        nonnum = y_s.isna().to_numpy() & y_raw.notna().to_numpy()
        if nonnum.any():
            raise DataError(f"column {outcome!r} (outcome) must be numeric: {int(nonnum.sum()):,} row(s) are not")
        y = y_s.to_numpy(dtype=float, na_value=np.nan)
        del y_raw, y_s, nonnum  # columns of every row, not needed again
    del bad_t
    drop(~np.isfinite(y), "missing outcome", outcome)
    drop(_isna(data, stratum), "no school (stratum) id", stratum)
    for c in by_cols:
        drop(_isna(data, c), "missing by value", c)
    for c in covariates:
        drop(_isna(data, c), "missing covariate", c)
    w = None
    if weight is not None:
        w_s = pd.to_numeric(data[weight], errors="coerce")  # float64 as it is (NaN for missing): no copy
        w_s = w_s.to_numpy() if w_s.dtype == np.float64 else w_s.to_numpy(dtype=float, na_value=np.nan)
        negative = w_s < 0
        if negative.any() and np.isfinite(w_s[negative]).any():  # (−inf: missing, dropped below)
            raise DataError(f"column {weight!r} (weight): {int(negative.sum()):,} row(s) are negative")
        drop(~np.isfinite(w_s), "missing weight", weight)
        drop(w_s == 0, "zero weight", weight)
        w = w_s
    if cluster is not None:
        drop(_isna(data, cluster), "missing cluster id", cluster)
    if school is not None:
        drop(_isna(data, school) & (t_num == 0), "comparison row without a school", school)
    if not keep.any():
        raise DataError("no usable rows remain after dropping rows with missing values")
    for arm, name in ((0.0, "comparison"), (1.0, "treated")):
        if not np.any(t_num[keep] == arm):
            raise DesignError(
                f"no {name} rows with a school (stratum {stratum!r}) remain, so no per-school effect can be "
                "estimated (a weighting design has no per-school comparison group; use a matched design)"
            )
    if dropped:
        warnings.warn(
            "school_effects: left out "
            + "; ".join(f"{d['n_rows']:,} row(s) with {d['reason']} ({d['column']})" for d in dropped),
            PlevalWarning,
            stacklevel=2,
        )

    cols = [c for c in dict.fromkeys([stratum, *by_cols, *covariates, *moderators, *(x for x in (cluster, school, unit_id) if x)])]
    keep = slice(None) if keep.all() else keep  # every row kept: views, no copies (the stacked sample is large)
    if isinstance(data, SchoolSample):  # its columns are gathered as they are read, one at a time
        df = data if isinstance(keep, slice) else data.subset(keep)
    else:
        df = data[cols] if isinstance(keep, slice) else data.loc[keep, cols]
    y = y[keep]
    t = t_num[keep].astype(np.int8)  # 0/1: a byte a row through the fits
    del t_num
    w = None if w is None else w[keep]
    w2 = None if weight2 is None else data[weight2].to_numpy(dtype=float)[keep]
    cnt = None if cnt is None else cnt[keep]
    n = y.size if cnt is None else int(cnt.sum())

    # Strata: (by..., school) combinations, fitted in blocks of whole strata (_fit_blocks).
    key_cols = [*by_cols, stratum]
    codes, uniq = _factorize_many(df, key_cols)
    G = len(uniq)
    design, left_out = _design_columns(df, covariates, cnt, n, leave_out_constant)
    cl = units = None
    one_school = np.zeros(G, dtype=bool)  # strata whose comparison rows are of one school (school=)
    n_schools = np.full(G, np.nan)  # effective number of comparison schools (school=)

    known = {}  # distinct(c) of the columns asked (the cluster's, then the unit's: one column twice)

    def distinct(c):  # a stratum's pairs are distinct rows, of distinct values of c (a student id)
        if c not in known:
            known[c] = isinstance(df, SchoolSample) and stratum == "_pl_school" and df.distinct_in_data([c, *by_cols])
        return known[c]

    robust_se = vcov != "classical"  # (one cluster in an arm: see below)
    arms = _arm_cells(codes, t, G) if robust_se or (joint and school) else None  # for _one_cluster's calls
    if joint:
        cl = _codes(df, cluster, values=False)[0] if cluster else np.arange(len(y))
        # the student of each row, whose copies in one set are one observation (Φ = I)
        if unit_id or cluster:
            units = cl if unit_id in (None, cluster) else _codes(df, unit_id, values=False)[0]
            if distinct(unit_id or cluster):
                units = None  # no copies to merge
        if school:  # comparison rows: their school; treated rows: their own cluster
            sc = _codes(df, school, values=False)[0]
            # a comparison side of one school: its students are the clusters (_one_cluster)
            one_school = _one_cluster(codes, t, sc, G, arms)[:, 0]
            n_schools = _comparison_schools(codes, t == 0, sc, w, G)
            own = (t == 1) | one_school[codes] if one_school.any() else t == 1
            cl = np.where(own, sc.max() + 1 + cl, sc)
            del sc, own
        cl = _narrow(pd.factorize(cl)[0])  # numbered by first appearance, once for every block (as joint_covariance)
    # The by groups of the strata, numbered in sorted order as the strata are.
    heads = pd.DataFrame({c: [u[i] for u in uniq] for i, c in enumerate(by_cols)})
    g_by, by_uniq = _factorize_many(heads, list(by_cols)) if by_cols else (np.zeros(G, dtype=np.intp), [("all",)])
    fit, e2, cells = _fit_blocks(y, t, w, cnt, codes, G, design, vcov, cl, units, cr2, sse=robustness_q is not None)
    # one cluster in an arm: a robust SE leaves its deviation out (the classical SE's pooled σ² does not)
    one_c, one_t = _one_cluster(codes, t, cl, G, arms).T if robust_se else np.zeros((2, G), dtype=bool)
    del arms
    if (fit.ok & (one_t | one_c)).any():
        ok = fit.ok & ~(one_t | one_c)
        fit = replace(fit, ok=ok, params=np.where(ok[:, None], fit.params, np.nan))
    n_cl = None if cl is None else int(cl.max()) + 1
    del design, cl, units  # freed before the cells' cross-products
    # Standardizing SD per by group (unadjusted outcome; docs/architecture.md, Scales and the SD).
    sd_val = np.empty(len(by_uniq))
    sd_info = {}
    by_codes = g_by.astype(np.min_scalar_type(len(by_uniq)))[codes]  # formed after the fits: not held through them
    for j, bkey in enumerate(by_uniq):  # loop over a handful of subjects
        m = by_codes == j
        key = bkey[0] if len(bkey) == 1 else bkey
        kind = sd[key] if isinstance(sd, Mapping) else sd
        s_val, s_lab = outcome_sd(y[m], t[m], kind=kind, weights=None if w is None else w[m],
                                  weights2=None if w2 is None else w2[m])
        sd_val[j] = s_val
        sd_info[key] = (s_val, s_lab)
    del y, w, w2, by_codes, m  # the outcome and weights of every pair: not held through the cross-products
    if joint:
        # each by group is pooled on its own (_finish): the joint covariance within by groups only
        jc = joint_from_cells(cells, G, n_cl, fit.ok, g_by if by_cols else None)
        del cells
        V_raw, V_var = jc.vcov, jc.vcov_var
        ok_g = fit.ok & np.isfinite(np.diag(V_raw))
        fit = replace(fit, ok=ok_g, df=jc.df, n_clusters=jc.n_clusters,
                      params=np.where(ok_g[:, None], fit.params, np.nan))
    else:
        V_raw = V_var = None

    # Counts per stratum and arm: of distinct students, which are the rows when no student has two
    # rows in one stratum (no id missing: distinct_in_data), else by sorting the (stratum, arm, id) triples.
    if unit_id and distinct(unit_id):
        n_t = np.bincount(codes[t == 1], minlength=G)
        n_c = np.bincount(codes[t == 0], minlength=G)
    elif unit_id:
        stu = _codes(df, unit_id, values=False)[0] + 1  # 0: no id; distinct (stratum, arm, student) triples as integers
        n_stu = int(stu.max()) + 1
        triple = (codes.astype(np.int64) * n_stu + stu) * 2 + (t == 1)
        triple = triple[radix_argsort(triple)]  # sorted (a radix sort: 3× faster than a hash table here) ...
        triple = triple[np.concatenate([[True], triple[1:] != triple[:-1]])]  # ... each distinct one once
        g_of, arm = triple // 2 // n_stu, triple % 2
        n_t = np.bincount(g_of[arm == 1], minlength=G)
        n_c = np.bincount(g_of[arm == 0], minlength=G)
    else:
        n_t = np.bincount(codes, weights=t, minlength=G).astype(int)
        n_c = (np.bincount(codes, weights=cnt, minlength=G) - n_t).astype(int)

    est = fit.params[:, 1]
    se = np.where(fit.ok, np.sqrt(np.diag(V_raw)) if joint else np.sqrt(fit.vcov[:, 1, 1]), np.nan)
    dfree = fit.df
    with np.errstate(invalid="ignore"):
        crit = np.where(np.isfinite(dfree) & (dfree > 0), stats.t.ppf(0.5 + level / 2, np.maximum(dfree, 1)), np.nan)
        pval = 2 * stats.t.sf(np.abs(est / se), np.maximum(dfree, 1))
    pval = np.where(fit.ok, pval, np.nan)
    robust = {} if robustness_q is None else _school_robustness(fit, e2, est, se, dfree, robustness_q, alpha)

    N = (n_t + n_c).astype(float)
    omega = np.where(N >= 4, hedges_omega(np.maximum(N, 4)), np.nan) if hedges_correction else np.ones(G)
    scale = omega / sd_val[g_by]
    es, es_se = est * scale, se * scale

    notes = np.full(G, "", dtype=object)
    notes[(n_t == 0)] = "no treated students"
    notes[(n_c == 0) & (n_t > 0)] = "no comparison students"
    other = ~fit.ok & (n_t > 0) & (n_c > 0)
    notes[other] = "not estimable (too few rows or clusters, or treatment collinear with covariates)"
    unit = 'student' if unit_id or cluster else 'row'
    notes[other & one_t] = (f"not estimable: one treated {unit} (cluster), "
                            "whose own deviation the school's data cannot estimate (a robust SE would leave it out)")
    notes[other & one_c & ~one_t] = (f"not estimable: one comparison {unit} (cluster), "
                                     "whose own deviation the school's data cannot estimate (a robust SE would leave it out)")
    notes[fit.ok & one_school] = "one comparison school: SE clustered by its students (its own deviation not in the SE)"
    n_bad = int((~fit.ok).sum())
    if n_bad == G:
        raise DesignError(
            "no school effect is estimable: every stratum lacks treated or comparison rows "
            "(a weighting design has no per-school comparison group; use a matched design or stratum='...')"
        )
    if n_bad:
        warnings.warn(f"school_effects: {n_bad} of {G} school(s) have no estimate (see the 'note' column)", PlevalWarning, stacklevel=2)
        dropped.append({"reason": "school without an estimate", "column": stratum, "n_rows": n_bad})

    ci_low, ci_high = est - crit * se, est + crit * se
    es_ci_low, es_ci_high = ci_low * scale, ci_high * scale
    columns = {
        "school": [u[-1] for u in uniq], "n_treated": n_t.astype(int), "n_comparison": n_c.astype(int),
        "comparison_schools": n_schools, "estimate": est, "se": se, "ci_low": ci_low, "ci_high": ci_high,
        "df": dfree, "pvalue": pval, "effect_size": es, "es_se": es_se, "es_ci_low": es_ci_low,
        "es_ci_high": es_ci_high, "percentile_points": _pp(es, baseline_percentile),
        "pp_ci_low": _pp(es_ci_low, baseline_percentile), "pp_ci_high": _pp(es_ci_high, baseline_percentile),
        **robust, "note": notes,
    }
    for mcol in moderators:
        vals = pd.to_numeric(df[mcol], errors="coerce").to_numpy(dtype=float)
        tr = (t == 1) & ~np.isnan(vals)  # (infinite values stopped the run above)
        num = np.bincount(codes[tr], weights=vals[tr], minlength=G)
        den = np.bincount(codes[tr], minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[mcol] = num / den
            spread = np.bincount(codes[tr], weights=(vals[tr] - columns[mcol][codes[tr]]) ** 2, minlength=G)
        spread_out = spread > 1e-12 * max(1.0, float(np.nanmax(np.abs(vals[tr]), initial=0.0))) ** 2
        varies = len({uniq[g][-1] for g in np.flatnonzero(spread_out)})  # schools, not school × subject strata
        if varies:  # a school-level moderator is one value per school; a student-level one is averaged
            warnings.warn(f"moderator {mcol!r} varies within {varies:,} school(s): each school's value is the mean over "
                          "its PL students (a school-level moderator is one value per school)", PlevalWarning,
                          stacklevel=2)
    table = pd.DataFrame({**{c: heads[c] for c in by_cols}, **columns})  # one frame: no column inserted one at a time

    return _result(
        table, by_cols, moderators, dropped, sd_info,
        method=method, hartung_knapp=hartung_knapp, adjust=adjust, alpha=alpha, level=level,
        baseline_percentile=baseline_percentile, vcov_es=_rescaled(V_raw, V_var, scale),
        vcov_es_var=V_var,
        options=dict(
            stratum=stratum, treatment=treatment, outcome=outcome, covariates=covariates, weight=weight,
            cluster=cluster, school=school, vcov=vcov, cr2=cr2, method=method, hartung_knapp=hartung_knapp, adjust=adjust, alpha=alpha,
            level=level, baseline_percentile=baseline_percentile, hedges_correction=hedges_correction, n_rows=n,
            n_input=n_in, covariates_left_out=tuple(left_out),
        ),
    )


def _where(data: pd.DataFrame, mask, school: str | None) -> str:
    """The first rows of ``mask`` — file rows (or index labels) — and their schools (column ``school``)."""
    from ..checks import _rows

    mask = np.asarray(mask, dtype=bool)
    rows = _rows(data, mask)
    if not school:
        return rows
    pos = np.flatnonzero(mask)[:3]
    return f"{rows}; school(s) {', '.join(repr(as_written(x)) for x in dict.fromkeys(data[school].iloc[pos]))}"


def infinite_moderator(data: pd.DataFrame, name: str, school: str | None = None, rows=None) -> None:
    """Raise :class:`DataError` when the moderator column ``name`` holds infinite values in the
    rows its schools' values are the means of (``rows``, a mask by position; default all), naming
    them and their schools (column ``school``): an infinite one leaves the mean undefined, while a
    row never averaged (a comparison school's) does not matter. Before 2026-12-05 such rows were
    left out of the mean without a word (a school whose rows were all infinite: "a moderator
    missing")."""
    x = pd.to_numeric(data[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    inf = np.isinf(x) if rows is None else np.isinf(x) & np.asarray(rows, dtype=bool)
    if inf.any():
        raise DataError(f"column {name!r} (moderator): {int(inf.sum()):,} row(s) are infinite "
                        f"({_where(data, inf, school)}); correct or remove them")


def _rescaled(V_raw, V_var, scale):
    """``V_raw`` on the effect-size scale, ``V_st·(c_s c_t)``, and ``V_var`` by its square, in
    place (the G × G matrices are large at state scale; the products are those of
    ``V_raw * np.outer(scale, scale)`` and ``V_var * np.outer(scale, scale) ** 2``)."""
    if V_raw is None:
        return None
    c = np.outer(scale, scale)
    V_raw *= c
    c *= c
    V_var *= c
    return V_raw


def _result(table, by_cols, moderators, dropped, sd_info, *, options, **finish_kw) -> "SchoolEffects":
    """Meta-analysis, shrinkage and counts of a per-school table, as a :class:`SchoolEffects`."""
    table, metas, shrinks, counts, vcovs, raws, lams, eigens = _finish(table, by=by_cols, **finish_kw)
    return SchoolEffects(
        table=table[[*by_cols, *TABLE_COLUMNS, *[c for c in ROBUSTNESS_COLUMNS if c in table.columns], *moderators]],
        meta=metas,
        shrinkage=shrinks,
        counts=counts,
        by=by_cols,
        sd=sd_info,
        dropped=pd.DataFrame(dropped, columns=["reason", "column", "n_rows"]),
        options=options,
        vcov=vcovs,
        vcov_raw=raws,
        vcov_shrinkage=lams,
        vcov_eigen=eigens,
    )


def _isna(data: pd.DataFrame | SchoolSample, c: str) -> np.ndarray:
    """Whether each row's value of column ``c`` is missing (a :class:`SchoolSample`'s from its
    data's column, without gathering it: :meth:`SchoolSample.isna`)."""
    return data.isna(c) if isinstance(data, SchoolSample) else data[c].isna().to_numpy()


def _codes(data: pd.DataFrame | SchoolSample, c: str, values: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(codes, values)`` of column ``c``: integer codes (missing = −1) with ``values[codes]``
    each row's value (``values=False``: None, the codes alone: an id column's distinct values are
    not formed into an array, 23 ms for 499k text ids). A frame's column ``pd.factorize``d as it is
    stored (Arrow strings dictionary-encoded by Arrow, not first copied into Python objects; codes
    in first-appearance order); a :class:`SchoolSample`'s coded in its data, the codes gathered
    (:meth:`SchoolSample.codes`: another numbering, and values no row has). Only the partition
    of the rows the codes make is used (every grouping renumbers its combinations in sorted order)."""
    if isinstance(data, SchoolSample):
        return data.codes(c, values=values)
    codes, uniq = pd.factorize(data[c])
    return codes, np.asarray(uniq) if values else None


def _narrow(codes: np.ndarray) -> np.ndarray:
    """Codes 0..k−1 as ``int32`` when they fit (half the memory of ``intp`` per stacked row), else
    ``intp``."""
    return codes.astype(np.int32 if len(codes) == 0 or codes.max() < 2**31 - 1 else np.intp)


def _sort_key(value) -> tuple:
    """A value's place in a sorted table: numbers by value, then text (and anything else) by its
    string, then missing values."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return (2, 0, "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return (0, value.item() if isinstance(value, np.generic) else value, "")  # ints exact beyond 2^53
    return (1, 0, str(value))


def _factorize_many(df: pd.DataFrame | SchoolSample, cols: Sequence[str]) -> tuple[np.ndarray, list[tuple]]:
    """Integer codes for the combinations of ``cols`` and their values, numbered in sorted order
    of the values (:func:`_sort_key`, column by column), so the school table's rows come in the
    same order whatever the order of the data's rows (mixed-radix codes of the columns'
    :func:`_codes`; the few combinations sorted, not the rows). The combinations present are
    counted over their range where it is small (``np.bincount``: no hash of the rows' codes), else
    found by ``pd.factorize``; either way the same numbering, the sort's ties (values of equal
    :func:`_sort_key`) in the order the rows first show them."""
    codes = np.zeros(len(df), dtype=np.int64)
    levels = []
    for c in cols:
        cc, u = _codes(df, c)
        codes = codes * len(u) + cc
        levels.append(u)
    bound = float(np.prod([float(len(u)) for u in levels]))
    if bound <= max(4 * len(codes), 1 << 20) and (not len(codes) or codes.min() >= 0):
        comb = np.flatnonzero(np.bincount(codes, minlength=int(bound)))  # in the codes' order
        uniq, order = _sorted_combinations(comb, levels)
        if order is not None:  # no ties: the order of first appearance is not needed
            at = np.empty(int(bound), dtype=np.intp)
            at[comb[order]] = np.arange(len(order))
            return _narrow(at[codes]), [uniq[i] for i in order]
    inv, comb = pd.factorize(codes)
    uniq, order = _sorted_combinations(comb, levels, ties=True)
    rank = np.empty(len(uniq), dtype=np.intp)
    rank[order] = np.arange(len(uniq))
    return _narrow(rank[inv]), [uniq[i] for i in order]


def _sorted_combinations(comb: np.ndarray, levels: list, ties: bool = False) -> tuple[list[tuple], list[int] | None]:
    """``(uniq, order)``: the values of the mixed-radix combination codes ``comb`` (of the columns'
    ``levels``) and their sorted order by :func:`_sort_key` (a stable sort: ties in ``comb``'s
    order); ``order`` None where two combinations tie, unless ``ties``."""
    parts = []
    for u in reversed(levels):  # decode the mixed-radix combination codes
        parts.append(u[comb % len(u)])
        comb = comb // len(u)
    uniq = list(zip(*reversed(parts)))
    keys = [tuple(_sort_key(v) for v in combo) for combo in uniq]
    if not ties and len(set(keys)) < len(keys):
        return uniq, None
    return uniq, sorted(range(len(uniq)), key=keys.__getitem__)



IMPLAUSIBLE_SE = 0.005
"""Per-school SEs below this many SDs are flagged: one school's effect size has an SE of about
``√((1 − R²)(1/n_T + 1/n_C))``, so 0.005 SD needs some 8,000 students per arm even with R² = 0.9;
such values are more likely variances (SE²) or SEs of another quantity."""


COUNT_COLUMNS = ("n_treated", "n_comparison", "n_students")
"""Columns of a school table that, when present, are counts of students (checked as such)."""


def _id_text(ids: pd.Series) -> pd.Series:
    """School ids as written: a whole float as its integer (1.0 as '1'), anything else as text."""
    return ids.map(lambda v: str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v))


def school_effects_from_estimates(
    data: pd.DataFrame,
    *,
    school: str = "school_id",
    estimate: str = "estimate",
    se: str = "se",
    by: str | Sequence[str] | None = "subject",
    n_treated: str | None = "n_treated",
    n_comparison: str | None = "n_comparison",
    moderators: Sequence[str] = (),
    method: Method = "REML",
    hartung_knapp: bool = True,
    adjust: Literal["bh", "holm", "bonferroni"] = "bh",
    alpha: float = 0.05,
    level: float = 0.95,
    baseline_percentile: float = 50.0,
    prediction: Literal["t", "t_k1", "normal"] = "t",
    cluster: str | None = None,
    df: str | None = "df",
) -> SchoolEffects:
    """School effects from a table of per-school effect sizes and SEs (e.g. an earlier analysis
    or ``sample_data/school_effects.csv``). Estimates are on the effect-size scale; raw-unit
    columns are left empty. Each school's p-value and CI use t(df) with ``df`` a column of
    reference degrees of freedom (pleval's own ``school_effects.csv`` has one, so its tests are
    reproduced), else — column absent, ``None``, or a row's value missing (warned) — the normal
    reference. Optional columns named ``None`` (or absent, for the defaults ``by``/``n_*``/``df``)
    are skipped. ``prediction``: the reference of
    the prediction interval (:func:`meta_analysis`: t(k − 2), t(k − 1) or normal). ``cluster``: a
    column of cluster labels (e.g. district) kept in the table for :meth:`SchoolEffects.cluster_robust`."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    by_cols = (by,) if isinstance(by, str) else tuple(by or ())
    if by == "subject" and "subject" not in data.columns:
        near = [str(c) for c in data.columns if str(c).strip().casefold() == "subject"]
        if near:  # 'Subject': one analysis of every subject's schools together would be no one's
            raise DataError(f"no column 'subject', but {near[0]!r}: name it as the subject column (--subject {near[0]}; "
                            f"by={near[0]!r}), or --subject none for one analysis of every row")
        by_cols = ()
    if df == "df" and "df" not in data.columns:
        df = None
    for role, col in [("school", school), ("estimate", estimate), ("se", se), *[("by", c) for c in by_cols],
                      *([("df", df)] if df else []),
                      *[("moderator", c) for c in moderators], *([("cluster", cluster)] if cluster else [])]:
        if col not in data.columns:
            raise DataError(f"column {col!r} ({role}) is not in the data; available: {', '.join(map(str, data.columns[:25]))}")
    from ..checks import _mixed_codes

    for role, col in [("school", school), *[("by", c) for c in by_cols]]:  # 'PL001' beside 'pl001', 'math' beside 'Math'
        for problem in _mixed_codes(data, col, role):
            warnings.warn(problem.line, PlevalWarning, stacklevel=2)
    d = data.copy()
    dropped = []

    def where(mask) -> str:  # the first rows of a mask: file rows (or index labels) and schools
        return _where(data, mask, school)

    for role, col in [("estimate", estimate), ("se", se), *([("df", df)] if df else []),
                      *[("moderator", m) for m in moderators]]:
        vals = pd.to_numeric(d[col], errors="coerce")
        nonnum = vals.isna() & d[col].notna()
        if nonnum.any():
            examples = ", ".join(map(repr, d[col][nonnum].astype(str).unique()[:3]))
            raise DataError(f"column {col!r} ({role}) must be numeric: {int(nonnum.sum()):,} row(s) hold text such as "
                            f"{examples} ({where(nonnum)}); correct or remove them")
        d[col] = vals
    for role, col in [("estimate", estimate), ("se", se), *[("moderator", m) for m in moderators]]:
        inf = np.isinf(d[col].to_numpy(dtype=float, na_value=np.nan))
        if inf.any():
            raise DataError(f"column {col!r} ({role}): {int(inf.sum()):,} row(s) are infinite ({where(inf)}); correct "
                            "or remove them")
    for col in [c for c in COUNT_COLUMNS if c in d.columns]:  # passed through to the table: counts of students
        n = pd.to_numeric(d[col], errors="coerce")
        text = (n.isna() & d[col].notna()).to_numpy()
        if text.any():
            examples = ", ".join(map(repr, d[col][text].astype(str).unique()[:3]))
            raise DataError(f"column {col!r}: {int(text.sum()):,} row(s) are not counts (text such as {examples}; "
                            f"{where(text)}); correct them")
        bad = (n < 0).fillna(False).to_numpy() | (n.notna() & (~np.isfinite(n) | (n != n.round()))).to_numpy()
        if bad.any():
            raise DataError(f"column {col!r}: {int(bad.sum()):,} row(s) are not counts (negative, fractional or "
                            f"infinite: {', '.join(f'{v:g}' for v in n[bad].iloc[:3])}; {where(bad)}); correct them")
    bad_se = (d[se] <= 0).fillna(False).to_numpy()
    if bad_se.any():
        raise DataError(f"column {se!r} (se): {int(bad_se.sum()):,} row(s) are zero or negative ({where(bad_se)}); a "
                        "standard error must be positive")
    miss = (d[estimate].isna() | d[se].isna()).to_numpy()
    big = (d[estimate].abs() > IMPLAUSIBLE_ES).to_numpy() & ~miss  # over data's rows, as where() reads them
    if miss.any():
        dropped.append({"reason": "missing estimate or SE", "column": f"{estimate}/{se}", "n_rows": int(miss.sum())})
        warnings.warn(f"{int(miss.sum())} school row(s) with a missing estimate or SE were left out ({where(miss)})",
                      PlevalWarning, stacklevel=2)
    for role, col in [("school", school), *[("by", c) for c in by_cols]]:  # an estimate that cannot be placed
        unplaced = d[col].isna().to_numpy() & ~miss
        if unplaced.any():
            dropped.append({"reason": f"missing {role}", "column": col, "n_rows": int(unplaced.sum())})
            warnings.warn(f"column {col!r} ({role}): {int(unplaced.sum()):,} school row(s) have no value and were left "
                          f"out ({where(unplaced)}); fill it in", PlevalWarning, stacklevel=2)
            miss = miss | unplaced
    if big.any():
        shown = ", ".join(f"{v:g}" for v in d[estimate].to_numpy(dtype=float)[big][:3])
        warnings.warn(f"column {estimate!r} (estimate): {int(big.sum()):,} of {int((~miss).sum()):,} row(s) exceed "
                      f"{IMPLAUSIBLE_ES:g} in absolute value ({shown}; {where(big)}): the estimates are read as effect "
                      "sizes in SD units, where a school's effect rarely exceeds 0.5; if they are score points or "
                      "percentile points, divide by the outcome's SD or convert them (pleval convert) first",
                      PlevalWarning, stacklevel=2)
    tiny = (d[se] < IMPLAUSIBLE_SE).to_numpy() & ~miss
    if tiny.any():
        shown = ", ".join(f"{v:g}" for v in d[se].to_numpy(dtype=float)[tiny][:3])
        warnings.warn(f"column {se!r} (se): {int(tiny.sum()):,} of {int((~miss).sum()):,} row(s) are below "
                      f"{IMPLAUSIBLE_SE:g} ({shown}; {where(tiny)}): one school's effect-size SE is rarely below "
                      "0.01 (0.005 needs some 8,000 students per arm); if these are variances, take their square "
                      "root first", PlevalWarning, stacklevel=2)
    dfs = np.full(len(d), np.inf)  # over data's rows, as where() reads them; the normal reference without df
    if df:
        dfs = d[df].to_numpy(dtype=float, na_value=np.nan)
        bad_df = (dfs <= 0) & ~miss
        if bad_df.any():
            raise DataError(f"column {df!r} (df): {int(bad_df.sum()):,} row(s) are zero or negative "
                            f"({where(bad_df)}); degrees of freedom must be positive")
        no_df = np.isnan(dfs) & ~miss
        if no_df.any():
            warnings.warn(f"column {df!r} (df): {int(no_df.sum()):,} school row(s) have no value ({where(no_df)}); "
                          "their p-values and CIs use the normal reference", PlevalWarning, stacklevel=2)
        dfs = np.where(np.isnan(dfs), np.inf, dfs)
    dup = np.zeros(len(d), dtype=bool)  # over data's rows, as where() reads them; among the rows kept
    # ids compared as written: 1, 1.0 and '1' are one school (two rows both shown as 1 before 2026-12-04)
    kept = d.loc[~miss]
    dup[~miss] = kept.assign(**{school: _id_text(kept[school])}).duplicated([*by_cols, school], keep=False).to_numpy()
    if dup.any():
        n = int(d.loc[dup, [*by_cols, school]].assign(**{school: _id_text(d.loc[dup, school])}).drop_duplicates().shape[0])
        raise DataError(f"column {school!r} (school): {n:,} school(s) appear more than once" +
                        (f" within {', '.join(by_cols)}" if by_cols else "") + f" ({where(dup)}); give one estimate "
                        "per school" + (f" and {', '.join(by_cols)}" if by_cols else ""))
    d, dfs = d.loc[~miss], dfs[~miss]
    es = d[estimate].to_numpy(dtype=float)
    ses = d[se].to_numpy(dtype=float)
    crit = stats.t.ppf(0.5 + level / 2, dfs)
    table = d[list(by_cols)].reset_index(drop=True)
    table["school"] = d[school].to_numpy()
    for name, col in (("n_treated", n_treated), ("n_comparison", n_comparison)):
        table[name] = d[col].to_numpy() if col is not None and col in d.columns else pd.NA
    table["comparison_schools"] = (pd.to_numeric(d["comparison_schools"], errors="coerce").to_numpy(dtype=float)
                                   if "comparison_schools" in d.columns else np.nan)  # as pleval's own CSV has it
    for c in ("estimate", "se", "ci_low", "ci_high"):
        table[c] = np.nan
    table["df"] = dfs
    table["pvalue"] = 2 * stats.t.sf(np.abs(es / ses), dfs)
    table["effect_size"] = es
    table["es_se"] = ses
    table["es_ci_low"] = es - crit * ses
    table["es_ci_high"] = es + crit * ses
    table["percentile_points"] = _pp(es, baseline_percentile)
    table["pp_ci_low"] = _pp(table["es_ci_low"].to_numpy(), baseline_percentile)
    table["pp_ci_high"] = _pp(table["es_ci_high"].to_numpy(), baseline_percentile)
    table["note"] = ""
    for m in moderators:
        table[m] = pd.to_numeric(d[m], errors="coerce").to_numpy()
    if cluster:
        if d[cluster].isna().any():
            raise DataError(f"column {cluster!r} (cluster): {int(d[cluster].isna().sum()):,} school row(s) have no cluster label")
        table[cluster] = d[cluster].to_numpy()
    return _result(
        table, by_cols, list(dict.fromkeys([*moderators, *([cluster] if cluster else [])])), dropped, {},
        method=method, hartung_knapp=hartung_knapp, adjust=adjust, alpha=alpha, level=level,
        baseline_percentile=baseline_percentile, prediction=prediction,
        options=dict(source="per-school estimates (effect-size scale)", method=method, hartung_knapp=hartung_knapp,
                     adjust=adjust, alpha=alpha, level=level, baseline_percentile=baseline_percentile,
                     prediction=prediction, cluster=cluster, df=df),
    )


__all__ = ["school_effects", "school_effects_from_estimates", "SchoolEffects", "TABLE_COLUMNS", "percentile_note"]
