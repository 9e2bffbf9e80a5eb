"""Matching one exact-key partition with pleval's in-memory matchers, whichever engine runs it.

A *partition* is one combination of the exact-match strata (subject × grade × the ``exact``
columns): every comparison a PL row can be matched to shares its strata, so partitions are
matched independently and the union of their matches is the match of the whole data. Within a
partition the matchers are the in-memory ones, unchanged: :func:`pleval.matching.match_vcg` on
the VCG cells (the strata plus the other exact keys) and :func:`pleval.matching.match_nearest`
on the rounded logit propensity score with the caliper of the whole data. Tie-breaking
priorities are ranks of the student id, and the keys of the tie cap ranks of its hash, so ranks
within a partition order rows as ranks in the whole data do; greedy matching without replacement ("largest", "smallest" or "data" order) visits
each partition's PL rows in the order it visits them in the whole data, and partitions share
no comparison rows. Hence the matched sample is the in-memory one.

:func:`match_partition` returns one frame per partition (the same schema for every engine):
a row per matched pair (``pl`` the PL row, ``c`` the comparison's position in the partition,
``weight``, ``dist``) and a row per PL row with ``c = -1`` carrying its counts and the reason it
has no match, if none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data import Columns
from ..errors import DataError
from ..matching._design import combine_codes
from ..matching.exact import match_vcg
from ..matching.nearest import hashed_ranks, match_nearest
from .logit import Term, term_matrix

PAIRS_SCHEMA = {"pl": "int64", "c": "int64", "weight": "float64", "dist": "float64", "n_q": "int64", "n_m": "int64",
                "reason": "object"}


@dataclass(frozen=True)
class Plan:
    """What every partition needs to know (small: shipped to Spark executors as it is)."""

    method: str
    columns: Columns
    strata: tuple[str, ...]
    k: int
    # VCG
    cell_keys: tuple[str, ...] = ()
    band: float = 1.0
    school_bins: dict = field(default_factory=dict)
    # propensity
    terms: tuple[Term, ...] = ()
    params: np.ndarray | None = None
    caliper: float = np.inf
    replace: bool = True
    ties: bool = True
    order: str = "largest"
    tie_cap: int = 0

    @property
    def needed(self) -> list[str]:
        """The pool columns a partition needs."""
        c = self.columns
        cols = list(self.strata) + list(self.cell_keys)
        if self.method == "vcg":
            cols.append(c.main_pretest)
        else:
            cols += [t.source for t in self.terms if t.source != "const"]
        if c.student_id:
            cols.append(c.student_id)
        return list(dict.fromkeys(cols))


def _binned(frame: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    for col, edges in plan.school_bins.items():
        frame[col] = pd.cut(frame[col], edges, include_lowest=True)
        bad = frame[col].isna().to_numpy()
        if bad.any():
            raise DataError(f"column {col!r}: {int(bad.sum()):,} row(s) fall outside school_bins {list(edges)}")
    return frame


def match_partition(plan: Plan, pl: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Match the PL rows ``pl`` (column ``_pl``: their position among all PL rows, ascending)
    to the comparison rows ``pool`` of one partition (module docstring)."""
    c = plan.columns
    n_t = len(pl)
    pl_pos = pl["_pl"].to_numpy(dtype=np.int64)
    if plan.method == "vcg":
        keys = list(plan.cell_keys)
        kf = _binned(pd.concat([pl[keys], pool[keys]], ignore_index=True), plan)
        cells = combine_codes(kf, keys)
        xt = pl[c.main_pretest].to_numpy(dtype=float)
        xc = pool[c.main_pretest].to_numpy(dtype=float)
        vm = match_vcg(cells[:n_t], xt, cells[n_t:], xc, band=plan.band, k=plan.k)
        t_row, c_row, w, n_q, n_m, reason = vm.t_row, vm.c_row, vm.weight, vm.n_qualified, vm.n_matched, vm.reason
        dist = np.abs(xc[c_row] - xt[t_row])
    else:
        lin_t = term_matrix(pl, plan.terms) @ plan.params
        lin_c = term_matrix(pool, plan.terms) @ plan.params
        choose_none = plan.replace and plan.ties  # every tie kept: no priority needed

        def prio(frame):
            if choose_none or not c.student_id:
                return None
            return pd.factorize(frame[c.student_id], sort=True)[0]

        cap = plan.tie_cap if choose_none and c.student_id else 0  # hashed-id ranks order as those of all rows
        nm = match_nearest(np.round(lin_t, 10), np.round(lin_c, 10), k=plan.k, caliper=plan.caliper,
                           replace=plan.replace, ties=plan.ties, order=plan.order,
                           order_key=1.0 / (1.0 + np.exp(-lin_t)), c_priority=prio(pool), t_priority=prio(pl),
                           tie_cap=cap, c_key=hashed_ranks(pool[c.student_id]) if cap else None,
                           t_key=hashed_ranks(pl[c.student_id]) if cap else None)
        t_row, c_row, w, dist, n_m, reason = nm.t_row, nm.c_row, nm.weight, nm.dist, nm.n_matched, nm.reason
        n_q = np.zeros(n_t, np.int64)
    pairs = pd.DataFrame({"pl": pl_pos[t_row], "c": np.asarray(c_row, np.int64), "weight": w, "dist": dist,
                          "n_q": 0, "n_m": 0, "reason": ""})
    rows = pd.DataFrame({"pl": pl_pos, "c": -1, "weight": np.nan, "dist": np.nan, "n_q": np.asarray(n_q, np.int64),
                         "n_m": np.asarray(n_m, np.int64), "reason": reason.astype(str)})
    return pd.concat([pairs, rows], ignore_index=True).astype(PAIRS_SCHEMA)
