"""Staggered adoption: group-time average effects (Callaway & Sant'Anna 2021).

Units (schools, or any panel unit) adopt the program in different periods and stay adopted.
The *cohort* ``g`` of a unit is its first program period (never-adopting units have none).
For each cohort ``g`` and period ``t`` the group-time average effect is the 2×2
difference in differences of cohort ``g`` against a comparison group ``C``, from a base
period ``b``:

.. math::

    ATT(g,t) = \\bar{\\Delta Y}_{g} - \\bar{\\Delta Y}_{C},\\qquad \\Delta Y_i = Y_{it} - Y_{ib},

with ``b = g - 1`` (the last period before adoption) for ``t ≥ g`` and ``b = t - 1`` for
``t < g`` (pre-period placebo effects; the "varying" base period of the R ``did`` package).
The comparison group is the never-adopting units (``control="never"``) or those not yet
adopting by ``max(t, b)`` (``control="notyet"``). This is the unconditional (no covariates)
estimator, identical to ``did::att_gt(..., xformla = ~1)`` for every ``est_method``.

Inference uses each unit's influence function (Callaway & Sant'Anna 2021, Theorem 2):
in the subsample of cohort ``g`` and ``C`` (``n_gt`` units, weights ``w`` normalized to mean
1 there) ``ψ_i = w_i D_i (ΔY_i − \\bar{ΔY}_g)/\\bar{wD} − w_i C_i (ΔY_i − \\bar{ΔY}_C)/\\bar{wC}``,
rescaled to the whole sample as ``IF_i = (n/n_gt) ψ_i``. The SE of any linear combination
with influence function ``IF`` is ``√(Σ_i IF_i²)/n``; clustered (by school, for instance),
``√(G/(G−1) Σ_c (Σ_{i∈c} IF_i)²)/n`` with a t(G−1) reference. Aggregations (simple,
event-time, cohort, calendar) follow ``did::aggte``, including the influence function of the
estimated cohort shares ``P(G = g)``. The Wald pre-test of parallel trends is
``W = b' V̂⁻¹ b ~ χ²(k)`` over the ``k`` pre-period cells (a Moore–Penrose inverse and
``k`` = rank of ``V̂`` when placebo cells are collinear).

**Small samples** (``inference="welch"``, the default without ``cluster``). The influence
function above is HC0: each group's variance is divided by its size ``n``, not ``n − 1``, and the
reference is normal, so with cohorts of a few schools the intervals are too short and the
pre-test rejects too often (a quarter of panels at 5% with 40 schools in cohorts of 6–8,
docs/monitor.md). Each
unit's ψ in a cell is divided by ``√(1 − h_i)``, ``h_i = w_i / Σ_{its group} w`` its leverage in
the cell's two-group regression, which makes every cell's SE its HC2 SE — Welch's unequal-variance
SE — and every combination's variance unbiased with equal weights. Each estimate (cell or
aggregation, influence function ``f``) is referred to t(ν) with the Welch–Satterthwaite df over
the units' cohorts ``G`` (the never-adopting units one group): ``ν = (Σ_G V_G)² / Σ_G V_G²/(n_G −
1)``, ``V_G = Σ_{i∈G} f_i²/n²`` (for one cell against never-adopting units, Welch's df exactly).
The pre-test refers ``F = ν̄ W / (k(ν̄ + k − 1))`` to F(k, ν̄), ``ν̄`` the pre cells' mean df: Hotelling's
T² approximation as if the covariance had ``ν̄ + k − 1`` df (the pre cells of different cohorts
estimate their variances from different units, so the joint covariance has more df than one
cell's; the exact Hotelling with ``ν̄`` rejected 0–2.6% where 5% was due). An approximation,
checked by simulation (docs/monitor.md). ``inference="did"`` gives the R package's
analytic figures (HC0, normal, χ²), which the parity tests use. With ``cluster``, ``"welch"``
gives CR2: each unit's ψ divided by ``√(1 − s)``, ``s`` its cluster's share of its group's weight
in the cell (the two-group regression's ``(I − H_cc)^{−1/2}``, a rank-one update within each
group; a group wholly in one cluster is left unscaled), no G/(G − 1) factor. Each cell and
aggregation is referred to t(ν), ν the Bell–McCaffrey (Satterthwaite) df of its CR2 variance
under the working model of independent outcomes with variance ∝ ``1/w`` (for a cell, the df of
its two-group regression's CR2 test; :class:`_CR2Satterthwaite`; an aggregation's df leaves out
the cohort shares' influence function, a design term). The pre-test refers Hotelling's T² to
the CR2 covariance's Wishart df η, matched by total variance (Pustejovsky & Tipton 2018; the
HTZ test of R's clubSandwich): ``(η − k + 1) W / (ηk) ~ F(k, η − k + 1)``, no p-value when
``η ≤ k − 1`` and a note below 4 denominator df (few clusters, many pre cells: a weak test).
``"did"`` gives CR1, t(G − 1) and the χ².

A cohort of **one unit** has no variation of its own to estimate: its influence function is
``ΔY_i`` less its own mean, zero, so the formulas above would give its cells the comparison
units' variance only. Its deviations are stood in for by the comparison units' (Conley & Taber
2011; homoskedastic across units): for cells ``a, b`` of that cohort, ``S_ab`` is the weighted
covariance of ``ΔY_a`` and ``ΔY_b`` over the units in both cells' comparison groups (divisor
``Σw − Σw²/Σw``, unbiased for equal weights; fewer than two such units: NaN on the diagonal, 0
off it), added to the influence-function variance of every cell, of the pre-test's cells and
of every aggregation through its weights on the cells (``c'Sc``). The unit's deviation is
taken as independent of other units', its cluster-mates' included; clustered, its term joins a
combination's df by Satterthwaite's rule, and the pre-test's η is the CR2 part's.

Source: Callaway, B. and Sant'Anna, P. H. C. (2021), "Difference-in-Differences with multiple
time periods", *Journal of Econometrics* 225(2), 200–230; the R package ``did`` (aggte).
Bell, R. M. and McCaffrey, D. F. (2002), "Bias reduction in standard errors for linear regression
with multi-stage samples", *Survey Methodology* 28(2), 169–181. Pustejovsky, J. E. and Tipton, E.
(2018), "Small-sample methods for cluster-robust variance estimation and hypothesis testing in
fixed effects models", *Journal of Business & Economic Statistics* 36(4), 672–683.
Conley, T. G. and Taber, C. R. (2011), "Inference with 'Difference in Differences' with a small
number of policy changes", *Review of Economics and Statistics* 93(1), 113–125.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .._results import Estimate, Frame, ResultMixin, t_interval
from ..errors import DataError, DesignError

CONTROLS = ("never", "notyet")
INFERENCE = ("welch", "did")
AGGREGATIONS = ("simple", "dynamic", "group", "calendar")


@dataclass(frozen=True)
class _Panel:
    """A balanced unit × period panel in arrays (rows: units; columns: periods)."""

    units: np.ndarray
    times: np.ndarray
    y: np.ndarray
    cohort: np.ndarray  # first program period of each unit; inf = never within the data
    weight: np.ndarray  # normalized to mean 1
    cluster: np.ndarray  # integer codes (one per unit when not clustered)
    n_clusters: int | None
    notes: tuple[str, ...]


def _panel(data, outcome, unit, time, cohort, cluster, weight) -> _Panel:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame; got {type(data).__name__}")
    for role, c in (("outcome", outcome), ("unit", unit), ("time", time), ("cohort", cohort),
                    ("cluster", cluster), ("weight", weight)):
        if c is not None and c not in data.columns:
            raise DataError(f"column {c!r} ({role}) is not in the data; available columns: "
                            f"{', '.join(map(str, data.columns[:30]))}")
    if len(data) == 0:
        raise DataError("the data have no rows")
    df = data
    for role, c in (("outcome", outcome), ("time", time), ("weight", weight)):
        if c is None:
            continue
        conv = pd.to_numeric(df[c], errors="coerce")
        bad = conv.isna() & df[c].notna()
        if bad.any():
            raise DataError(f"column {c!r} ({role}) must be numeric: {int(bad.sum()):,} row(s) hold values such as "
                            f"{', '.join(map(repr, df.loc[bad, c].astype(str).unique()[:3]))}")
        miss = conv.isna()
        if miss.any():
            raise DataError(f"column {c!r} ({role}): {int(miss.sum()):,} row(s) are missing; the group-time estimator "
                            "needs every unit in every period (fill or remove those units first)")
        df = df.assign(**{c: conv.astype(float)})
    for role, c in (("unit", unit), ("cluster", cluster)):
        if c is not None and df[c].isna().any():
            raise DataError(f"column {c!r} ({role}): {int(df[c].isna().sum()):,} row(s) are missing")
    g_raw = df[cohort]
    g_num = pd.to_numeric(g_raw, errors="coerce").astype(float)
    bad = g_num.isna() & g_raw.notna() & (g_raw.astype(str).str.strip() != "")  # a blank text cell is empty
    if bad.any():
        raise DataError(f"column {cohort!r} (cohort: first program period) must be numeric, with 0 or empty for "
                        f"never; {int(bad.sum()):,} row(s) hold values such as "
                        f"{', '.join(map(repr, g_raw[bad].astype(str).unique()[:3]))}")
    g_num = g_num.fillna(0.0).replace(0.0, np.inf)
    dup = df.duplicated([unit, time], keep=False)
    if dup.any():
        raise DataError(f"columns {unit!r} × {time!r}: {int(dup.sum()):,} row(s) repeat a unit in a period; "
                        "each unit should have one row per period")
    for role, c, vals in (("cohort", cohort, g_num), ("cluster", cluster, df[cluster] if cluster else None),
                          ("weight", weight, df[weight] if weight else None)):
        if vals is None:
            continue
        varies = vals.groupby(df[unit].to_numpy()).nunique(dropna=False) > 1
        if varies.any():
            raise DataError(f"column {c!r} ({role}) must be constant within each unit; it varies within "
                            f"{int(varies.sum()):,} unit(s) (e.g. {varies[varies].index[0]!r})")
    times = np.sort(df[time].unique())
    units, u_codes = np.unique(df[unit].to_numpy(), return_inverse=True)
    t_codes = np.searchsorted(times, df[time].to_numpy())
    n_per_unit = np.bincount(u_codes, minlength=len(units))
    if (n_per_unit != len(times)).any():
        k = int((n_per_unit != len(times)).sum())
        raise DataError(f"columns {unit!r} × {time!r}: the panel is unbalanced — {k:,} of {len(units):,} unit(s) are "
                        f"not observed in all {len(times)} periods; the group-time estimator needs a balanced panel")
    y = np.empty((len(units), len(times)))
    y[u_codes, t_codes] = df[outcome].to_numpy(dtype=float)
    first = np.zeros(len(units), dtype=np.int64)
    first[u_codes] = np.arange(len(df))
    g = g_num.to_numpy()[first]
    w = np.ones(len(units)) if weight is None else df[weight].to_numpy(dtype=float)[first]
    if (w <= 0).any():
        raise DataError(f"column {weight!r} (weight): {int((w <= 0).sum()):,} unit(s) have a weight that is not positive")
    notes = []
    finite = np.isfinite(g)
    off_grid = finite & ~np.isin(g, times) & (g <= times[-1])
    if off_grid.any():
        raise DataError(f"column {cohort!r} (cohort): {int(off_grid.sum()):,} unit(s) have a first program period "
                        f"that is not one of the periods in {time!r} ({', '.join(map(str, times[:8]))})")
    late = finite & (g > times[-1])
    if late.any():
        notes.append(f"{int(late.sum()):,} unit(s) adopt after the last period ({times[-1]:g}): never adopting within "
                     "the data, so they count as never-adopting comparisons")
        g = np.where(late, np.inf, g)
    early = g <= times[0]
    if early.any():
        notes.append(f"{int(early.sum()):,} unit(s) adopt in the first period ({times[0]:g}) or before: no "
                     "pre-program period, so they are left out (as did::att_gt does)")
    keep = ~early
    if cluster is not None:
        _, cl = np.unique(df[cluster].to_numpy()[first][keep], return_inverse=True)
        n_clusters = int(cl.max()) + 1
    else:
        cl, n_clusters = np.arange(int(keep.sum())), None
    w = w[keep]
    return _Panel(units[keep], times, y[keep], g[keep], w / w.mean(), cl, n_clusters, tuple(notes))


def _se(inf: np.ndarray, cluster: np.ndarray, n_clusters: int | None, cr1: bool = True) -> np.ndarray:
    """SE from influence functions (columns of ``inf``), unit-level or summed within clusters
    (times √(G/(G−1)) with ``cr1``; not for the CR2-adjusted influence functions)."""
    n = inf.shape[0]
    if n_clusters is None:
        return np.sqrt((inf**2).sum(axis=0)) / n
    sums = np.zeros((n_clusters, inf.shape[1]))
    np.add.at(sums, cluster, inf)
    return np.sqrt((n_clusters / (n_clusters - 1) if cr1 else 1.0) * (sums**2).sum(axis=0)) / n


def _vcov(inf: np.ndarray, cluster: np.ndarray, n_clusters: int | None, cr1: bool = True) -> np.ndarray:
    n = inf.shape[0]
    if n_clusters is None:
        return inf.T @ inf / n**2
    sums = np.zeros((n_clusters, inf.shape[1]))
    np.add.at(sums, cluster, inf)
    return (n_clusters / (n_clusters - 1) if cr1 else 1.0) * sums.T @ sums / n**2


def _frame(est, se, df, level, extra: dict) -> pd.DataFrame:
    est, se = np.asarray(est, float), np.asarray(se, float)
    crit, p = t_interval(est, se, df, level)
    out = pd.DataFrame(extra)
    out["estimate"], out["se"] = est, se
    out["ci_low"], out["ci_high"], out["pvalue"] = est - crit * se, est + crit * se, p
    return out


@dataclass(frozen=True, repr=False)
class Aggregation(ResultMixin):
    """An aggregation of group-time effects: the overall effect and its parts
    (event times, cohorts or periods; empty for ``simple``)."""

    kind: str
    overall: Estimate
    table: pd.DataFrame = Frame()

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        what = {"simple": "post-adoption cells weighted by cohort size", "dynamic": "event time (years since adoption)",
                "group": "adoption cohort", "calendar": "calendar period"}[self.kind]
        lines = [f"Aggregation: {self.kind} ({what})", "  overall " + self.overall.summary()]
        if len(self.table):
            key = self.table.columns[0]
            lines.append(f"  {key:>10}{'estimate':>10}{'SE':>9}{'CI low':>9}{'CI high':>9}")
            for r in self.table.itertuples(index=False):
                lines.append(f"  {getattr(r, key):>10g}{r.estimate:>10.4f}{r.se:>9.4f}{r.ci_low:>9.4f}{r.ci_high:>9.4f}")
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class GroupTimeEffects(ResultMixin):
    """Group-time average effects ``ATT(g, t)`` with their influence functions.

    ``table`` has one row per (cohort, period) cell: ``group``, ``time``, ``event_time``
    (``t − g``), ``base_time``, ``estimate``, ``se``, CI, ``pvalue``, ``n_treated``,
    ``n_control`` and ``post`` (``t ≥ g``). ``pretest`` is the Wald test of all
    pre-period cells being zero (statistic, df, p-value).
    """

    table: pd.DataFrame = Frame()
    control: str
    level: float
    df: float
    n_units: int
    n_clusters: int | None
    pretest: dict
    notes: tuple[str, ...]
    _inf: np.ndarray = field(repr=False)
    _cohort: np.ndarray = field(repr=False)
    _weight: np.ndarray = field(repr=False)
    _cluster: np.ndarray = field(repr=False)
    _standin: np.ndarray = field(repr=False, default=None)  # cells × cells: one-unit cohorts' stood-in variance
    _welch: bool = field(repr=False, default=False)  # Welch–Satterthwaite df (inference="welch", no cluster)
    _standin_df: np.ndarray = field(repr=False, default=None)  # each cell's comparison units less one
    _cr2: bool = field(repr=False, default=False)  # clustered, CR2-adjusted influence functions (no G/(G−1))
    _satterthwaite: "_CR2Satterthwaite | None" = field(repr=False, default=None)  # CR2's df of combinations

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        ctrl = {"never": "never-adopting units", "notyet": "not-yet-adopting units"}[self.control]
        inf = (f"CR2 by {self.n_clusters:,} clusters, Satterthwaite (Bell-McCaffrey) t" if self._cr2
               else f"CR1 by {self.n_clusters:,} clusters, t({self.df:g})" if self.n_clusters
               else "unit-level influence functions (HC2), Welch-Satterthwaite t" if self._welch
               else "unit-level influence functions, normal reference")
        lines = [f"Group-time effects ATT(g,t) (Callaway & Sant'Anna 2021): {self.n_units:,} units; comparisons: "
                 f"{ctrl}; SEs {inf}",
                 f"  {'group':>8}{'time':>8}{'ATT':>10}{'SE':>9}{'CI low':>9}{'CI high':>9}"]
        for r in self.table.itertuples(index=False):
            lines.append(f"  {r.group:>8g}{r.time:>8g}{r.estimate:>10.4f}{r.se:>9.4f}{r.ci_low:>9.4f}{r.ci_high:>9.4f}"
                         + ("" if r.post else "  (pre)"))
        if self.pretest["df"]:
            lines.append(f"  pre-trend {pretest_text(self.pretest, 3, lambda v: f'{v:.5f}')}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    # -- aggregation (did::aggte) -------------------------------------------------------
    def _pg(self) -> np.ndarray:
        """P(G = g) of each cell's cohort, over all units (weighted)."""
        groups = self.table["group"].to_numpy()
        return np.array([np.mean(self._weight * (self._cohort == g)) for g in groups])

    def _wif(self, keep: np.ndarray, pg: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Influence function of the weights ``pg_k / Σ pg`` over the kept cells (did::aggte's wif)."""
        ind = self._weight[:, None] * (self._cohort[:, None] == groups[None, keep]) - pg[None, keep]
        s = pg[keep].sum()
        return ind / s - ind.sum(axis=1, keepdims=True) * (pg[keep] / s**2)[None, :]

    def _combine(self, att, inf, keep, weights, wif=None):
        """The combination's estimate, influence function and coefficients on the cells."""
        est = float(att[keep] @ weights)
        f = inf[:, keep] @ weights
        if wif is not None:
            f = f + wif @ att[keep]
        c = np.zeros(att.size)
        c[keep] = weights
        return est, f, c

    def _ses(self, f: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SEs and df of combinations with influence functions ``f`` and cell coefficients ``c``
        (columns): the influence-function variance plus the one-unit cohorts' stood-in ``c'Sc``;
        df :func:`_welch_df` (or the result's own)."""
        var = _se(f, self._cluster, self.n_clusters, cr1=not self._cr2) ** 2
        extra = None
        if self._standin is not None:
            extra = np.einsum("ik,ij,jk->k", c, self._standin, c)
            var = var + extra
        if not (self._welch or self._cr2):
            return np.sqrt(var), np.full(var.shape, self.df)
        extra_df = None
        if extra is not None:  # the stood-in term's df: the fewest comparison units (less one) it draws on
            used = np.abs(c) > 0
            extra_df = np.where(used, self._standin_df[:, None], np.inf).min(axis=0)
        if self._cr2:
            return np.sqrt(var), _combined_df(var - (0.0 if extra is None else extra), self._satterthwaite.df(c),
                                              extra, extra_df)
        return np.sqrt(var), _welch_df(f, self._cohort, extra, extra_df)

    def aggregate(self, kind: str = "simple") -> Aggregation:
        """Aggregate the cells as ``did::aggte(type = kind)``: ``simple`` (post cells weighted by
        cohort size), ``dynamic`` (by event time e = t − g, overall = mean over e ≥ 0), ``group``
        (by cohort, overall weighted by cohort size) or ``calendar`` (by period)."""
        if kind not in AGGREGATIONS:
            raise DesignError(f"aggregation must be one of {AGGREGATIONS}; got {kind!r}")
        t = self.table
        att, inf = t["estimate"].to_numpy(), self._inf
        group, time, e = t["group"].to_numpy(), t["time"].to_numpy(), t["event_time"].to_numpy()
        post = t["post"].to_numpy()
        pg = self._pg()
        parts_est, parts_inf, parts_c, keys = [], [], [], []
        if kind == "simple":
            keep = post
            est, f, c = self._combine(att, inf, keep, pg[keep] / pg[keep].sum(), self._wif(keep, pg, group))
        elif kind in ("dynamic", "calendar"):
            col = e if kind == "dynamic" else time
            values = np.unique(col if kind == "dynamic" else time[post])
            for v in values:
                keep = (col == v) & (post if kind == "calendar" else True)
                pe, pf, pc = self._combine(att, inf, keep, pg[keep] / pg[keep].sum(), self._wif(keep, pg, group))
                parts_est.append(pe), parts_inf.append(pf), parts_c.append(pc), keys.append(v)
            sel = np.asarray(keys) >= 0 if kind == "dynamic" else np.ones(len(keys), bool)
            est = float(np.mean(np.asarray(parts_est)[sel]))
            f = np.column_stack(parts_inf)[:, sel].mean(axis=1)
            c = np.column_stack(parts_c)[:, sel].mean(axis=1)
        else:  # group
            cohorts = np.unique(group[post])
            for g in cohorts:
                keep = (group == g) & post
                pe, pf, pc = self._combine(att, inf, keep, np.full(keep.sum(), 1.0 / keep.sum()))
                parts_est.append(pe), parts_inf.append(pf), parts_c.append(pc), keys.append(g)
            pgg = np.array([np.mean(self._weight * (self._cohort == g)) for g in cohorts])
            ind = self._weight[:, None] * (self._cohort[:, None] == cohorts[None, :]) - pgg[None, :]
            s = pgg.sum()
            wif = ind / s - ind.sum(axis=1, keepdims=True) * (pgg / s**2)[None, :]
            est = float(np.asarray(parts_est) @ (pgg / s))
            f = np.column_stack(parts_inf) @ (pgg / s) + wif @ np.asarray(parts_est)
            c = np.column_stack(parts_c) @ (pgg / s)
        se, df = (float(v[0]) for v in self._ses(f[:, None], c[:, None]))
        in_cells = np.isin(self._cohort, self.table.loc[self.table["post"], "group"].to_numpy(dtype=float))
        overall = Estimate.from_t(est, se, df, level=self.level, n_treated=int(in_cells.sum()),  # units aggregated
                                  n_control=int((~np.isfinite(self._cohort)).sum()), n_clusters=self.n_clusters,
                                  method=f"Callaway-Sant'Anna {kind} aggregation", label=f"ATT ({kind})")
        key = {"dynamic": "event_time", "group": "group", "calendar": "time"}.get(kind)
        if key is None:
            table = pd.DataFrame(columns=["estimate", "se", "ci_low", "ci_high", "pvalue"])
        else:
            ses, dfs = self._ses(np.column_stack(parts_inf), np.column_stack(parts_c))
            table = _frame(parts_est, ses, dfs, self.level, {key: np.asarray(keys)})
            table["df"] = dfs
        return Aggregation(kind, overall, table)

    def event_study(self) -> Aggregation:
        """Effects by years since adoption, with the pre-period (placebo) estimates."""
        return self.aggregate("dynamic")

    def plot_event_study(self, *, title: str | None = None):
        """Event-study figure: pre-period estimates (a check of parallel trends) and effects by
        years since adoption, with pointwise CIs."""
        from .plots import event_study_plot

        return event_study_plot(self.event_study().table, level=self.level, title=title)


def group_time_effects(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: str,
    time: str,
    cohort: str,
    control: str = "never",
    cluster: str | None = None,
    weight: str | None = None,
    level: float = 0.95,
    inference: str = "welch",
) -> GroupTimeEffects:
    """Group-time average effects ATT(g,t) of a staggered adoption (Callaway & Sant'Anna 2021).

    ``data`` is a balanced long panel (one row per unit and period); ``cohort`` holds each
    unit's first program period (0 or empty for never). ``control`` is ``"never"`` or
    ``"notyet"``; ``cluster`` names a column constant within unit (e.g. a district when units
    are schools) whose influence-function sums give the SEs; ``weight`` a unit weight.
    ``inference``: ``"welch"`` (HC2 influence functions, Welch–Satterthwaite t, Hotelling's F
    pre-test; clustered: CR2 with Bell–McCaffrey df and the HTZ pre-test) or ``"did"`` (the R
    package's HC0, normal and χ²; clustered: CR1). See the module docstring for the formulas.
    """
    if control not in CONTROLS:
        raise DesignError(f"control must be one of {CONTROLS}; got {control!r}")
    if inference not in INFERENCE:
        raise DesignError(f"inference must be one of {INFERENCE}; got {inference!r}")
    p = _panel(data, outcome, unit, time, cohort, cluster, weight)
    n, times, g = len(p.units), p.times, p.cohort
    cohorts = np.unique(g[np.isfinite(g)])
    if len(cohorts) == 0:
        raise DesignError(f"column {cohort!r} (cohort): no unit adopts the program within the periods of {time!r}")
    never = ~np.isfinite(g)
    welch = inference == "welch" and p.n_clusters is None
    cr2 = inference == "welch" and p.n_clusters is not None
    n_blocks = len(p.units) if p.n_clusters is None else p.n_clusters  # (p.cluster: the unit itself unclustered)
    if control == "never" and not never.any():
        raise DesignError(f"column {cohort!r} (cohort): no never-adopting units; use control='notyet'")
    rows, infs, comps, dys, periods, scales, shares, skipped = [], [], [], [], [], [], [], []
    for gv in cohorts:
        gi = int(np.searchsorted(times, gv))
        treat = g == gv
        for ti in range(1, len(times)):
            bi = gi - 1 if ti >= gi else ti - 1
            ctrl = never if control == "never" else never | ((g > times[max(ti, bi)]) & ~treat)
            if not ctrl.any():
                skipped.append((gv, times[ti], ti >= gi))
                continue
            sub = treat | ctrl
            n_sub = int(sub.sum())
            w = p.weight * sub
            w = w / w[sub].mean()
            dy = p.y[:, ti] - p.y[:, bi]
            wt, wc = w * treat, w * ctrl
            m_t, m_c = wt @ dy / wt.sum(), wc @ dy / wc.sum()
            psi = wt * (dy - m_t) / (wt.sum() / n_sub) - wc * (dy - m_c) / (wc.sum() / n_sub)
            if welch or cr2:  # HC2 / CR2: ψ_i / √(1 − s), s the share of its group's weight in its unit / cluster
                share = np.where(treat, np.bincount(p.cluster, weights=wt, minlength=n_blocks)[p.cluster] / wt.sum(),
                                 np.where(ctrl, np.bincount(p.cluster, weights=wc, minlength=n_blocks)[p.cluster]
                                          / wc.sum(), 0.0))
                whole = share >= 1.0 - 1e-12  # the group in one unit (its ψ is 0) or in one cluster (left unscaled)
                factor = np.where(whole, 1.0 if cr2 else 0.0, 1.0 / np.sqrt(np.maximum(1.0 - share, 1e-300)))
                psi = psi * factor
                if cr2:  # ψ_i = a_i e_i, e_i = ΔY_i less its group's weighted mean: the Satterthwaite df's parts
                    scales.append((wt / (wt.sum() / n_sub) - wc / (wc.sum() / n_sub)) * factor * n / n_sub)
                    shares.append((wt / wt.sum(), wc / wc.sum()))
            infs.append(psi * n / n_sub)
            periods.append((ti, bi))
            comps.append(ctrl)
            dys.append(dy)
            rows.append((gv, times[ti], times[ti] - gv, times[bi], m_t - m_c, int(treat.sum()), int(ctrl.sum()),
                         ti >= gi))
    if not rows:
        raise DesignError("no group-time cell has comparison units; with control='notyet' every unit adopts too early")
    notes = p.notes + _small_cohorts(g) + _cells_without_comparisons(skipped, rows)
    inf = np.column_stack(infs)
    df = np.inf if p.n_clusters is None else float(p.n_clusters - 1)
    if p.n_clusters is not None and p.n_clusters < 2:
        raise DesignError(f"column {cluster!r} (cluster): one cluster; clustered SEs need at least two")
    cells_group = np.array([r[0] for r in rows])
    standin = _one_unit_standin(g, cells_group, np.column_stack(comps), np.column_stack(dys), p.weight)
    se = _se(inf, p.cluster, p.n_clusters, cr1=not cr2)
    if standin is not None:
        se = np.sqrt(se**2 + np.diag(standin))
    standin_df = np.array([r[6] for r in rows], dtype=float) - 1.0
    satterthwaite = None
    if cr2:
        treated_shares, control_shares = zip(*shares)
        satterthwaite = _CR2Satterthwaite.build(np.column_stack(scales), np.column_stack(treated_shares + control_shares),
                                                np.array(periods), len(times), p.cluster, p.n_clusters, p.weight)
        df = _combined_df(se**2 - (0.0 if standin is None else np.diag(standin)), satterthwaite.df(np.eye(len(rows))),
                          None if standin is None else np.diag(standin), standin_df)
    elif welch:
        df = _welch_df(inf, g, None if standin is None else np.diag(standin), standin_df)
    cells = pd.DataFrame(rows, columns=["group", "time", "event_time", "base_time", "estimate", "n_treated",
                                        "n_control", "post"])
    table = _frame(cells["estimate"], se, df, level, cells.drop(columns="estimate").iloc[:, :4].to_dict("list"))
    table[["n_treated", "n_control", "post"]] = cells[["n_treated", "n_control", "post"]]
    table["df"] = df
    pre = np.flatnonzero(~cells["post"].to_numpy() & (se > 0))
    if len(pre):
        b = cells["estimate"].to_numpy()[pre]
        v = _vcov(inf[:, pre], p.cluster, p.n_clusters, cr1=not cr2)
        if standin is not None:
            v = v + standin[np.ix_(pre, pre)]
        rank = int(np.linalg.matrix_rank(v))  # collinear placebo cells (a Moore-Penrose inverse, df = rank)
        stat = float(b @ np.linalg.pinv(v) @ b)
        pretest = {"statistic": stat, "df": rank, "pvalue": float(stats.chi2.sf(stat, rank))}
        if welch:  # Hotelling-type: ν̄ W / (k(ν̄ + k − 1)) ~ F(k, ν̄), ν̄ the pre cells' mean df
            nu = float(np.mean(np.asarray(df)[pre]))
            f_stat = nu * stat / (rank * (nu + rank - 1.0))
            pretest.update(df_denominator=nu, f_statistic=f_stat, pvalue=float(stats.f.sf(f_stat, rank, nu)))
        elif cr2:  # Hotelling's T² with the CR2 covariance's Wishart df η: (η − k + 1) W / (ηk) ~ F(k, η − k + 1)
            eta = satterthwaite.hotelling_df(pre)
            d2 = eta - rank + 1.0
            f_stat = d2 * stat / (eta * rank)
            pretest.update(df_denominator=d2, f_statistic=f_stat if d2 > 0 else np.nan,
                           pvalue=float(stats.f.sf(f_stat, rank, d2)) if d2 > 0 else np.nan)
            if d2 < FEW_PRETEST_DF:
                notes += (f"the joint pre-trend test of {rank} pre-period cells has "
                          + (f"only F({rank}, {d2:.1f}): little power" if d2 > 0 else "no df left (no p-value)")
                          + f" with {p.n_clusters} clusters; judge pre-trends by the event study's pre-period "
                          "estimates, each with its own df",)
    else:
        pretest = {"statistic": np.nan, "df": 0, "pvalue": np.nan}
    inf.setflags(write=False)
    return GroupTimeEffects(table, control, level, np.inf if welch or cr2 else df, n, p.n_clusters, pretest, notes,
                            inf, g, p.weight, p.cluster, standin, welch, standin_df, cr2, satterthwaite)


def _cells_without_comparisons(skipped: list, rows: list) -> tuple[str, ...]:
    """The note for group-time cells left out for want of comparison units (every unit adopted by
    then: control='notyet' without never-adopters), naming the cohorts left with no post-adoption
    cell, which no aggregate then holds."""
    if not skipped:
        return ()
    fmt = lambda v: f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    with_post = {r[0] for r in rows if r[7]}
    lost = sorted({gv for gv, _, post in skipped if post} - with_post)
    return (f"{len(skipped):,} group-time cell(s) have no comparison unit (every unit adopts by then) and are left "
            f"out: periods {', '.join(sorted({fmt(t) for _, t, _ in skipped}))}"
            + (f"; cohort(s) {', '.join(map(fmt, lost))} have no post-adoption cell and are in no aggregate" if lost
               else ""),)


def pretest_text(pre: dict, digits: int = 2, p_text=None) -> str:
    """The pre-trend test as text: ``Wald test chi2(k) = W, p = …`` or, with the small-sample
    reference, ``Wald test W = …, F(k, ν̄) = …, p = …`` (``p_text`` formats the p-value; default
    ``.{digits + 1}g``); without a reference (no denominator df left), the statistic and why."""
    p = (p_text or (lambda v: f"{v:.{digits + 1}g}"))(pre["pvalue"])
    p = p if p.startswith("<") else f"= {p}"  # p < 0.001, not p = < 0.001
    if "f_statistic" in pre:
        if not pre["df_denominator"] > 0:
            return (f"Wald test W = {pre['statistic']:.{digits}f} on {pre['df']} pre-period cells: no F reference "
                    "(too few clusters for the cells' covariance), no p-value")
        return (f"Wald test W = {pre['statistic']:.{digits}f}, F({pre['df']}, {pre['df_denominator']:.1f}) = "
                f"{pre['f_statistic']:.{digits}f}, p {p}")
    return f"Wald test chi2({pre['df']}) = {pre['statistic']:.{digits}f}, p {p}"


def _welch_df(f: np.ndarray, cohort: np.ndarray, extra=None, extra_df=None) -> np.ndarray:
    """Welch–Satterthwaite df of estimates with influence functions ``f`` (columns) over the
    units' cohorts (``cohort``; inf = never adopting, one group): ``(Σ_G V_G)² / Σ_G V_G²/(n_G −
    1)``, ``V_G = Σ_{i∈G} f_i²`` and ``n_G`` the units of G with ``f_i ≠ 0``; ``extra`` (a
    variance term with ``extra_df`` df, the one-unit cohorts' stood-in) joins the sums."""
    _, grp = np.unique(cohort, return_inverse=True)
    k = f.shape[1]
    V = np.zeros((grp.max() + 1, k))
    N = np.zeros((grp.max() + 1, k))
    np.add.at(V, grp, f**2)
    np.add.at(N, grp, (f != 0).astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        den = np.where(N > 1, V**2 / (N - 1), 0.0).sum(axis=0)
        tot = V.sum(axis=0)
        if extra is not None:
            scale = f.shape[0] ** 2  # f² sums are variances × n²
            tot = tot + extra * scale
            den = den + np.where(np.isfinite(extra_df) & (extra_df > 0), (extra * scale) ** 2 / extra_df, 0.0)
        return np.where(den > 0, tot**2 / den, np.inf)


@dataclass(frozen=True)
class _CR2Satterthwaite:
    """Bell–McCaffrey (Satterthwaite) df of the CR2 variance of combinations of the cells
    (module docstring), working model: independent outcomes ``Y_it`` with variance ∝ ``1/w_i``.

    A combination ``c`` of the cells has cluster sums ``S_g = Σ_k c_k Σ_{i∈g} a_ik e_ik``, linear
    in the outcomes: ``S_g = ℓ_g'Y``. With ``M_gh = ℓ_g' W⁻¹ ℓ_h`` the variance estimate ``Σ_g S_g²``
    has mean ``tr M`` and variance ``2‖M‖²_F`` under the working model (normal outcomes), so
    ``ν = (tr M)² / ‖M‖²_F`` — for a single cell the df of the CR2 coefficient test of its
    two-group regression (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, Φ = I of the
    √W-transformed model). In period ``t``, ``ℓ_g`` restricted to that period is
    ``r_j 1(j∈g) − Σ_k γ_k (π_jk^T σ_gk^T + π_jk^C σ_gk^C)``: ``γ_k = c_k (1(t = t_k) − 1(t = b_k))``,
    ``r = Σ_k γ_k a_k``, ``π_k`` each group's weight shares and ``σ_gk`` its units' ``a`` summed
    in cluster g. So ``M = diag(d) − AΣ' − ΣA' + ΣQΣ'`` with ``d_g = Σ_t Σ_{j∈g} r_j²/w_j``,
    ``A = Σ_t X_t Γ_t`` (``X_t = Z'diag(r/w)π``, Z the cluster indicators, ``Γ_t = diag(γ, γ)``),
    ``Q = Σ_t Γ_t π'W⁻¹π Γ_t``: a diagonal plus a low-rank part, whose trace and Frobenius norm
    need no cluster × cluster matrix.
    """

    a: np.ndarray  # (n, K): ψ_ik = a_ik e_ik
    pi: np.ndarray  # (n, 2K): each cell's treated, then comparison, weight shares
    sigma: np.ndarray  # (G, 2K): the a of each cell's treated (comparison) units summed by cluster
    cross: np.ndarray  # (2K, 2K): π' W⁻¹ π
    steps: np.ndarray  # (K, T): +1 in each cell's period, −1 in its base period
    winv: np.ndarray
    to_cluster: sparse.csr_matrix  # (G, n) indicator

    @classmethod
    def build(cls, a, pi, periods, n_periods, cluster, n_clusters, weight):
        n, K = a.shape
        to_cluster = sparse.csr_matrix((np.ones(n), (cluster, np.arange(n))), shape=(n_clusters, n))
        sigma = np.hstack([to_cluster @ (a * (pi[:, :K] > 0)), to_cluster @ (a * (pi[:, K:] > 0))])
        steps = np.zeros((K, n_periods))
        steps[np.arange(K), periods[:, 0]] += 1.0
        steps[np.arange(K), periods[:, 1]] -= 1.0
        winv = 1.0 / weight
        return cls(a, pi, sigma, pi.T @ (pi * winv[:, None]), steps, winv, to_cluster)

    def _parts(self, C: np.ndarray):
        """For combinations ``C`` (K × m) on their active cells: the columns used (2 per cell) and,
        per period, ``γ`` (2a × m), ``r`` (n × m) and ``X`` (G × 2a × m)."""
        act = np.flatnonzero(np.abs(C).sum(axis=1) > 0)
        K = self.a.shape[1]
        cols = np.concatenate([act, K + act])
        pi = self.pi[:, cols]
        out = []
        for t in np.flatnonzero(np.abs(self.steps[act]).sum(axis=0)):  # a loop over periods (few)
            gam = C[act] * self.steps[act, t][:, None]
            r = self.a[:, act] @ gam
            X = self.to_cluster @ ((r * self.winv[:, None])[:, None, :] * pi[:, :, None]).reshape(len(r), -1)
            out.append((np.vstack([gam, gam]), r, X.reshape(-1, cols.size, C.shape[1])))
        return cols, out

    def df(self, C: np.ndarray) -> np.ndarray:
        """The df ``(tr M)²/‖M‖²_F`` of each combination (columns of ``C``, coefficients on the
        cells); a loop over the combinations, each on its own cells."""
        out = np.full(C.shape[1], np.inf)
        for s in range(C.shape[1]):  # a loop over combinations (cells and aggregations: few)
            cols, parts = self._parts(C[:, [s]])
            if not parts:
                continue
            S, P = self.sigma[:, cols], self.cross[np.ix_(cols, cols)]
            d = sum(self.to_cluster @ (r[:, 0] ** 2 * self.winv) for _, r, _ in parts)
            A = sum(X[:, :, 0] * g[:, 0] for g, _, X in parts)
            Q = sum(np.outer(g[:, 0], g[:, 0]) * P for g, _, _ in parts)
            F = np.hstack([S, A])
            k = cols.size
            Cm = np.block([[Q, -np.eye(k)], [-np.eye(k), np.zeros((k, k))]])
            H = F.T @ F
            FC = F @ Cm
            tr = d.sum() + np.trace(Cm @ H)
            fro = (d**2).sum() + 2.0 * d @ (FC * F).sum(axis=1) + np.trace(Cm @ H @ Cm @ H)
            if fro > 0:
                out[s] = tr**2 / fro
        return out

    def hotelling_df(self, cells: np.ndarray) -> float:
        """The Wishart df η of the CR2 covariance of ``cells`` (indices), by the total-variance
        match of Pustejovsky & Tipton (2018, the "HTZ" test): standardized so that its
        working-model mean Ω is the identity (``B'ΩB = I`` on Ω's range, q columns),
        ``η = q(q + 1) / Σ_{a,b} Var(V̂_ab) = q(q + 1) / Σ_{g,h} ((tr 𝕄_gh)² + tr 𝕄_gh²)``, where
        ``𝕄_gh = B'[Cov(S_g of s, S_h of u)]_{s,u}B`` (normal working model; Isserlis). For cells s, u
        sharing ``o_su = Σ_t (1(t = t_s) − 1(t = b_s))(1(t = t_u) − 1(t = b_u))`` periods,
        ``Cov(S_g^s, S_h^u) = o_su (δ_gh D^{su}_g − Y^{su}_g·σ^u_h − σ^s_g·Y^{us}_h + σ^s_g P^{su} σ^u_h)``
        with ``D^{su}_g = Σ_{j∈g} a_js a_ju/w_j``, ``Y^{su}_g = Σ_{j∈g} a_js π_j^u/w_j`` (π, σ, P: the
        cell's two groups). Formed a block of clusters g at a time against all h."""
        n, K = self.a.shape
        G, q = self.sigma.shape[0], cells.size
        cols = np.stack([cells, K + cells], axis=1)  # (q, 2): each cell's treated and comparison columns
        S = self.sigma[:, cols]  # (G, q, 2)
        P = self.cross[cols[:, :, None, None], cols[None, None, :, :]]  # (q, 2, q, 2)
        o = self.steps[cells] @ self.steps[cells].T
        aw = self.a[:, cells] * self.winv[:, None]
        D = (self.to_cluster @ (aw[:, :, None] * self.a[:, None, cells]).reshape(n, -1)).reshape(G, q, q)
        Y = (self.to_cluster @ (aw[:, :, None, None] * self.pi[:, cols][:, None]).reshape(n, -1)).reshape(G, q, q, 2)
        SP = np.einsum("gsk,skul->gsul", S, P)
        omega = o * (D.sum(axis=0) - np.einsum("gsuk,guk->su", Y, S) - np.einsum("gsk,gusk->su", S, Y)
                     + np.einsum("gsul,gul->su", SP, S))
        lam, vec = np.linalg.eigh(omega)
        keep = lam > lam.max() * 1e-10
        B = vec[:, keep] / np.sqrt(lam[keep])
        r = B.shape[1]
        var = 0.0
        rows = max(1, int(4e6 // (G * q * q)))  # clusters per block: bounded memory
        for g0 in range(0, G, rows):  # a loop over blocks of clusters
            g1 = min(G, g0 + rows)
            M = (np.einsum("gsul,hul->ghsu", SP[g0:g1], S) - np.einsum("gsuk,huk->ghsu", Y[g0:g1], S)
                 - np.einsum("gsk,husk->ghsu", S[g0:g1], Y))
            M[np.arange(g1 - g0), np.arange(g0, g1)] += D[g0:g1]
            Ms = np.matmul(B.T, np.matmul(M * o, B))
            var += (np.einsum("ghaa->gh", Ms) ** 2).sum() + np.einsum("ghab,ghba->", Ms, Ms)
        return r * (r + 1) / var


def _combined_df(var, df, extra=None, extra_df=None) -> np.ndarray:
    """Satterthwaite's df of ``var`` (``df`` df) plus an independent ``extra`` (``extra_df``)."""
    if extra is None:
        return df
    with np.errstate(divide="ignore", invalid="ignore"):
        den = (np.where(np.isfinite(df) & (df > 0), var**2 / df, 0.0)
               + np.where(np.isfinite(extra_df) & (extra_df > 0), extra**2 / extra_df, 0.0))
        return np.where(den > 0, (var + extra) ** 2 / den, np.inf)


def _one_unit_standin(g: np.ndarray, cell_group: np.ndarray, comps: np.ndarray, dys: np.ndarray,
                      w: np.ndarray) -> np.ndarray | None:
    """The stood-in covariance ``S`` (cells × cells) of the one-unit cohorts' deviations (module
    docstring): for cells ``a, b`` of one such cohort, the weighted covariance of ``ΔY_a``
    (``dys[:, a]``) and ``ΔY_b`` over the units in both comparison groups (``comps``), divisor
    ``Σw − Σw²/Σw``. None when no cohort has one unit."""
    cohorts, sizes = np.unique(g[np.isfinite(g)], return_counts=True)
    ones = cohorts[sizes == 1]
    if not ones.size:
        return None
    k = cell_group.size
    S = np.zeros((k, k))
    for gv in ones:  # a loop over one-unit cohorts (few), each vectorized over its cells' pairs
        cells = np.flatnonzero(cell_group == gv)
        c = comps[:, cells]
        both = c.T[:, None, :] & c.T[None, :, :]  # (a, b, unit): the unit is in both cells' comparison groups
        wb = np.where(both, w[None, None, :], 0.0)
        sw, sw2 = wb.sum(axis=2), (wb**2).sum(axis=2)
        d = dys[:, cells]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_a = np.einsum("abi,ia->ab", wb, d) / sw
            mean_b = np.einsum("abi,ib->ab", wb, d) / sw
            cross = np.einsum("abi,ia,ib->ab", wb, d, d) / sw - mean_a * mean_b
            cov = cross * sw / (sw - sw2 / sw)
        enough = np.einsum("abi->ab", both.astype(np.int64)) >= 2
        cov = np.where(enough, cov, np.where(np.eye(cells.size, dtype=bool), np.nan, 0.0))
        S[np.ix_(cells, cells)] = _nearest_psd(cov)
    return S


def _nearest_psd(cov: np.ndarray) -> np.ndarray:
    """``cov`` made positive semidefinite with each cell's variance kept: each entry is a
    covariance over the units in both cells' comparison groups, which differ from pair to pair,
    so the matrix need not be semidefinite, and a combination's ``c'Sc`` could be negative (its
    SE then not a number). The correlations' negative eigenvalues are set to zero (Higham 1988's
    nearest semidefinite matrix) and the result rescaled to unit diagonal, then to the cells'
    variances. A block with a variance that cannot be estimated (NaN), or none (0), is kept."""
    if cov.shape[0] < 2 or not np.isfinite(cov).all():
        return cov
    sd = np.sqrt(np.diag(cov))
    if not (sd > 0).all():
        return cov
    R = cov / np.outer(sd, sd)
    vals, vecs = np.linalg.eigh((R + R.T) / 2)
    if vals.min() >= -1e-12 * vals.max():
        return cov
    R = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
    r = np.sqrt(np.diag(R))
    return R / np.outer(r, r) * np.outer(sd, sd)


FEW_PRETEST_DF = 4.0
"""Below this denominator df the clustered pre-trend test gets a note: its F critical value is
large (F(k, 4) needs about 6–7 at 5%, F(k, 2) about 19), so it detects only large departures."""

SMALL_COHORT = 5
"""Cohorts of fewer units get a note, as ``did::att_gt`` warns of "small groups" (fewer than
5 units plus the covariates)."""


def _small_cohorts(g: np.ndarray) -> tuple[str, ...]:
    """The note on cohorts (``g``: each unit's first program period, inf for never) of fewer
    than :data:`SMALL_COHORT` units: their cells' SEs rest on few units, and a cohort of one
    unit has no variation of its own (its influence function is ΔY_i − mean ΔY of the cohort:
    zero), which the comparison units' stands in for (:func:`_one_unit_standin`)."""
    cohorts, sizes = np.unique(g[np.isfinite(g)], return_counts=True)
    small = cohorts[sizes < SMALL_COHORT]
    if not small.size:
        return ()
    one = cohorts[sizes == 1]
    return (f"cohort(s) {', '.join(f'{c:g}' for c in small)} have fewer than {SMALL_COHORT} units: their SEs rest on "
            "few units" + (f"; cohort(s) {', '.join(f'{c:g}' for c in one)} have one unit, whose own variation cannot "
                           "be estimated: its SEs take the comparison units' variation in its place (Conley & Taber "
                           "2011), which assumes the unit varies as they do" if one.size else ""),)


__all__ = ["group_time_effects", "GroupTimeEffects", "Aggregation", "CONTROLS", "AGGREGATIONS", "INFERENCE"]
