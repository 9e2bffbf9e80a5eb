"""The result of matching against a pool: a :class:`~pleval.matching.MatchResult` whose data
are the PL rows and the comparison rows used, with the pool's share of the "before" statistics.

Balance before matching compares the PL rows with the *whole* eligible pool. The pool's side is
computed where the pool lives, per subject: the counts of each value of each variable (exact:
means, variances, and the eCDF statistics on the grid of distinct values are then those of the
expanded rows), or, for a numeric variable with more than a million distinct values, its count,
mean and variance (the eCDF statistics are then left empty: the grid of distinct values is not
brought into memory). Balance *after* matching needs only the matched sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..matching._design import codes_and_levels
from ..matching.balance import (EQUIVALENCE_COLUMNS, SMD_DENOMINATORS, Balance, _by_level, check_threshold,
                               ecdf_stats, pretest_equivalence, weighted_mean_var)
from ..matching.results import MatchResult
from ..errors import DataError
from .engine import as_python, kind, level_values

DISTINCT_CAP = 2_000_000


def pool_before(eng, data: pd.DataFrame, columns, variables, categorical, where: str) -> dict:
    """Per variable: ``("counts", frame g/v/n, categorical)`` or ``("moments", frame g/n0/m0/v0,
    False)`` of the eligible pool rows, by subject (``g``; the whole pool is "all"). Two queries
    in all (the engines pay per query): distinct counts, then every variable's value counts."""
    by = columns.subject
    # by level as the in-memory balance (a True/False flag is its 0/1 number); text in the pool by level too
    cat = {v: _by_level(data[v], v, categorical) or kind(eng.types[v]) == "other" for v in variables}
    numeric = [v for v in variables if not cat[v]]
    small = dict(zip(numeric, eng.n_distinct_at_most(numeric, where, DISTINCT_CAP))) if numeric else {}
    counted = [v for v in variables if cat[v] or small[v]]
    text = {v: kind(eng.types[v]) == "other" for v in variables}
    vc = eng.value_counts_many(counted, [text[v] for v in counted], where, by) if counted else None
    out = {}
    for var in variables:
        if var in counted:
            f = vc[vc["var"] == var]
            f = pd.DataFrame({"g": f["g"].to_numpy() if by else "all",
                              "v": level_values(f, eng.types[var]),
                              "n": f["n"].to_numpy(dtype=np.int64)})
            out[var] = ("counts", f, cat[var])
        else:
            out[var] = ("moments", eng.moments([f"CAST({eng.quote(var)} AS DOUBLE)"], where, by), False)
    return out


def _pool_group(entry, group):
    how, f, cat = entry
    if how == "moments":
        g = f[f["g"].astype(str) == str(group)] if group != "all" else f[f["g"] == "all"]
        return how, g.iloc[0] if len(g) else None, cat
    if group == "all":
        g = f.groupby("v", sort=False, dropna=False)["n"].sum().reset_index()
    else:
        g = f[f["g"].astype(str) == str(group)]
    return how, g, cat


@dataclass(frozen=True, repr=False)
class PoolMatchResult(MatchResult):
    """:class:`~pleval.matching.MatchResult` of :func:`pleval.pool.match_pool`: ``data`` holds
    the eligible PL rows and the comparison rows used; ``n_pool`` counts the eligible pool
    rows, ``before`` holds the pool's aggregates for balance before matching and ``pool`` what
    provenance records of the pool (:func:`.match.pool_record`)."""

    n_pool: int = 0
    before: dict = field(default_factory=dict)
    pool: dict = field(default_factory=dict)

    def sample_sizes(self) -> pd.DataFrame:
        out = super().sample_sizes()
        used = int(out.loc["matched", "comparison"])
        out.loc["all", "comparison"] = self.n_pool
        out.loc["unmatched", "comparison"] = self.n_pool - used
        return out

    def balance(self, threshold: float = 0.1, smd: str | None = None) -> Balance:
        """Balance before (PL rows against the whole eligible pool, from its aggregates) and
        after matching, and the WWC baseline equivalence of the pretest."""
        c = self.columns
        smd = smd or "pooled"
        if smd not in SMD_DENOMINATORS:
            raise DataError(f"smd must be one of {SMD_DENOMINATORS}; got {smd!r}")
        threshold = check_threshold(threshold)
        pl = self.data[self.data[c.treatment].to_numpy() == 1]
        after = self.matched
        groups = [("all", pl, after)]
        if c.subject:
            groups += [(str(g), pl[pl[c.subject] == g], after[after[c.subject] == g]) for g in pd.unique(pl[c.subject])]
        tabs, eqs = [], []
        for name, b, a in groups:
            if not len(a) or a[c.treatment].nunique() < 2:
                continue
            tab = self._table(name, b, a, smd, threshold)
            tab.insert(0, "group", name)
            tabs.append(tab)
            if c.main_pretest is not None:
                eqs.append({"group": name, **pretest_equivalence(a, c.treatment, c.main_pretest, weight="_weight",
                                                                 strata=self.strata)})
        return Balance(pd.concat(tabs, ignore_index=True), pd.DataFrame(eqs, columns=["group", *EQUIVALENCE_COLUMNS]),
                       threshold)

    def _table(self, group, b: pd.DataFrame, a: pd.DataFrame, smd: str, threshold: float) -> pd.DataFrame:
        c = self.columns
        ta = a[c.treatment].to_numpy().astype(bool)
        wa = a["_weight"].to_numpy(dtype=float)
        rows = []
        for var in self.variables:
            how, pg, cat = _pool_group(self.before[var], group)
            if cat:
                codes, levels = codes_and_levels(b[var])
                pool_n = pd.Series(pg["n"].to_numpy(dtype=float), index=as_python(pg["v"]))
                lev_all = sorted(set(as_python(levels)) | set(pool_n.index))
                n_c = float(pool_n.sum())
                for lev in lev_all[1:] if len(lev_all) == 2 else lev_all:  # two levels: the second (as in memory)
                    xt = (b[var] == lev).to_numpy(dtype=float)
                    xa = (a[var] == lev).to_numpy(dtype=float)
                    p_c = float(pool_n.get(lev, 0.0)) / n_c
                    var_c = n_c * p_c * (1.0 - p_c) / (n_c - 1.0) if n_c > 1 else np.nan
                    rows.append(self._row(f"{var}[{lev}]", True, xt, (p_c, var_c), xa, ta, wa, smd, e0=None))
                continue
            xt = pd.to_numeric(b[var]).to_numpy(dtype=float)
            xa = pd.to_numeric(a[var]).to_numpy(dtype=float)
            if how == "counts":
                v = pg["v"].to_numpy(dtype=float)
                n = pg["n"].to_numpy(dtype=float)
                binary = bool(np.isin(np.concatenate([xt, v]), (0.0, 1.0)).all())
                mc = float(np.dot(n, v) / n.sum())
                vc = float(np.dot(n, (v - mc) ** 2) / (n.sum() - 1.0)) if n.sum() > 1 else np.nan
                x0 = np.concatenate([xt, v])
                t0 = np.concatenate([np.ones(len(xt), bool), np.zeros(len(v), bool)])
                w0 = np.concatenate([np.ones(len(xt)), n])
                grid = np.unique(x0)
                rows.append(self._row(var, binary, xt, (mc, vc), xa, ta, wa, smd,
                                      e0=ecdf_stats(x0, t0, w0, binary, grid), grid=grid))
            else:
                mom = (float(pg["m0"]), float(pg["v0"])) if pg is not None else (np.nan, np.nan)
                rows.append(self._row(var, False, xt, mom, xa, ta, wa, smd, e0=(np.nan, np.nan), grid=None))
        out = pd.DataFrame(rows)
        bb, aa = out["smd_before"].abs(), out["smd_after"].abs()
        out["imbalanced"] = aa > threshold
        out["worse"] = (aa > bb) & (aa > threshold / 2)
        return out

    @staticmethod
    def _row(name, binary, xt, pool_mv, xa, ta, wa, smd, *, e0, grid=None) -> dict:
        mt0, vt0 = weighted_mean_var(xt, np.ones(len(xt)))
        mc0, vc0 = pool_mv
        sd0 = (np.sqrt(mt0 * (1.0 - mt0)) if binary else np.sqrt(vt0)) if smd == "treated" else np.sqrt((vt0 + vc0) / 2.0)
        mt1, vt1 = weighted_mean_var(xa[ta], wa[ta])
        mc1, vc1 = weighted_mean_var(xa[~ta], wa[~ta])
        if binary:  # for a binary variable both eCDF statistics are |p_t − p_c|
            d0 = abs(mt0 - mc0)
            e0 = (d0, d0)
            e1 = ecdf_stats(xa, ta, wa, True, np.zeros(0))
        else:
            e1 = ecdf_stats(xa, ta, wa, False, grid) if grid is not None else (np.nan, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "variable": name, "binary": binary,
                "mean_treated_before": mt0, "mean_comparison_before": mc0,
                "smd_before": (mt0 - mc0) / sd0 if sd0 > 0 else np.nan,
                "var_ratio_before": np.nan if binary else vt0 / vc0,
                "mean_treated_after": mt1, "mean_comparison_after": mc1,
                "smd_after": (mt1 - mc1) / sd0 if sd0 > 0 else np.nan,
                "var_ratio_after": np.nan if binary else vt1 / vc1,
                "ecdf_mean_before": e0[0], "ecdf_max_before": e0[1],
                "ecdf_mean_after": e1[0], "ecdf_max_after": e1[1],
            }
