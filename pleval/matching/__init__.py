"""Quasi-experimental matched comparisons: one entry point, one module per method.

``pleval.match(df, columns, method=...)`` validates the data, applies the method and returns
a :class:`MatchResult` whose ``.matched`` sample (matched-set long format with ``_set``,
``_weight``, ``_pl_school``), ``.balance()`` and ``.estimate()`` work the same way for every
method:

* ``"propensity"`` — 1:k nearest neighbours on the logit propensity score
  (:mod:`.propensity`, :mod:`.nearest`), caliper in SD of the logit PS;
* ``"mahalanobis"`` — 1:k nearest neighbours on Mahalanobis distance (:mod:`.nearest`);
* ``"vcg"`` — exact keys + pretest band, up to k (51) comparisons from non-PL schools
  (:mod:`.exact`);
* ``"weighting"`` — ATT odds weights from the propensity score (:mod:`.weighting`);
* ``"optimal"`` — optimal 1:k pair matching, minimum total distance (:mod:`.optimal`);
* ``"full"`` — optimal full matching, every unit in a set (:mod:`.full`);
* ``"subclass"`` — subclassification on the propensity score (:mod:`.subclass`);
* ``"cem"`` — coarsened exact matching (:mod:`.cem`); ``"exact"`` — the same without coarsening;
* ``"ebal"`` — entropy-balancing weights (:mod:`.ebal`).

Exact-match cells always include the subject (a math row is never compared with a reading
row) and, by default, the grade.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import _workers
from ..data import Columns, Validated, as_columns, factorized_ahead, pl_by_subject, pl_rows_frame, validate
from ..errors import DataError, DesignError
from ._design import (codes_and_levels, combine_codes, encode, factorize, first_appearance_codes, is_categorical,
                      narrow_codes, present_codes)
from .balance import Balance, balance
from .cem import cem_cells
from .constrained import match_constrained
from .exact import VCGSample, match_vcg, vcg_sets
from .full import match_full, set_pairs
from .multilevel import multilevel_covariates, no_contrast
from .nearest import NearestMatch, distinct_hashed_ranks, mahalanobis_coordinates, match_nearest
from .optimal import match_optimal
from .propensity import DEFAULT_CALIPER, PropensityModel, design_patterns, fit_propensity, pooled_logit_sd
from .results import EffectTable, MatchResult, set_size_diagnostics
from .subclass import subclass_weights, subclassify
from .ebal import balance_columns, entropy_weights
from .weighting import att_weights, ipw_weights, weight_summary, within_cells
from .analysis_weights import ZERO_WEIGHT, set_analysis_weights

METHODS = ("propensity", "mahalanobis", "vcg", "weighting", "optimal", "full", "subclass", "cem", "exact", "ebal")
OPTIMAL = ("optimal", "full")
CONVENTIONS = ("pleval", "matchit")


def _exclude(data: pd.DataFrame, mask: np.ndarray, reason: str, column: str, log: list, c: Columns) -> pd.DataFrame:
    n = int(mask.sum())
    if n:
        log.append(_entry(data, mask, reason, column, c))
        return data.loc[~mask]
    return data


def _entry(data: pd.DataFrame, mask: np.ndarray, reason: str, column: str, c: Columns) -> dict:
    """The exclusions log's entry for ``data``'s rows in ``mask``, its PL rows by subject with it."""
    pl = mask & (data[c.treatment].to_numpy() == 1)
    return {"reason": reason, "column": column, "n_rows": int(mask.sum()), "pl": pl_by_subject(data, pl, c.subject)}


def _check_groups(t: np.ndarray, log: list[dict]) -> None:
    """Raise :class:`DesignError` when the treatment ``t`` of the rows left has no PL or no
    comparison row, naming the empty group(s) and, for each exclusion in ``log`` (entries of
    :func:`_entry`), its column and how many of that group's rows it removed."""
    n_t = int(t.sum())
    if 0 < n_t < len(t):
        return
    empty = [g for g, none in (("PL", n_t == 0), ("comparison", n_t == len(t))) if none]
    parts = []
    for e in log:
        n_pl = sum(e["pl"].values())
        removed = {"PL": n_pl, "comparison": e["n_rows"] - n_pl}
        counts = " and ".join(f"{removed[g]:,} {g}" for g in empty if removed[g])
        if counts:
            parts.append(f"{counts} row(s) {e['reason']} (column {e['column']!r})")
    raise DesignError(f"after exclusions no {' and no '.join(empty)} rows are left: {'; '.join(parts)}; fill in "
                      "the missing values, or leave a covariate out of the match")


def _keep_rows(data, t, pm: PropensityModel, mask):
    """Drop rows (discarded or trimmed: already logged) from the data and the fitted scores."""
    sub = replace(pm, ps=pm.ps[mask], logit_ps=pm.logit_ps[mask], keep=np.ones(int(mask.sum()), bool))
    return data.loc[mask], t[mask], sub


_LAST_USE = "last use"
"""The key that marks a ``_reuse`` store for its last call (:func:`last_use`)."""


def last_use(store: dict) -> dict:
    """Mark a ``_reuse`` store for its last call (the placebo rounds' last match): that call takes
    what the store keeps, letting each entry go as it is taken, and keeps nothing new, so that
    what it takes is freed with the call's own arrays (as soon as the call no longer needs it)
    rather than held by the store through the call."""
    store[_LAST_USE] = True
    return store


def _reused(store: dict | None, name, index: pd.Index, make, subset=None):
    """``make()``, or what ``store`` keeps under ``name`` from a call on the same rows (``index``):
    arrays per row that do not depend on the treatment (``match``'s ``_reuse``); None: nothing kept.
    ``subset(value, positions)``: the value of some rows from that of more rows (None when it
    cannot be taken), for an entry kept from a call on rows that include ``index``'s
    (:func:`reuse_store`). A store marked by :func:`last_use` gives its entry up and keeps none."""
    if store is None:
        return make()
    last = store.get(_LAST_USE, False)
    hit = store.pop(name, None) if last else store.get(name)
    if hit is not None and hit[0].equals(index):
        return hit[1]
    value = None
    if hit is not None and subset is not None:
        pos = _positions(hit[0], index)
        value = None if pos is None else subset(hit[1], pos)
    del hit
    value = make() if value is None else value
    if not last:
        store[name] = (index, value)
    return value


def _positions(parent: pd.Index, index: pd.Index) -> np.ndarray | None:
    """Where the labels ``index`` are in ``parent`` (a unique index), or None when some are not
    there. Both increasing (rows filtered from one frame): a binary search, no hash table; a
    ``RangeIndex`` (a file's rows): the positions by arithmetic."""
    if len(index) > len(parent) or not parent.is_unique:
        return None
    if len(index) == len(parent) and parent.equals(index):  # (two RangeIndexes: no pass over the labels)
        return np.arange(len(index))
    if isinstance(parent, pd.RangeIndex) and index.dtype.kind == "i" and len(index) \
            and int(parent.max()) - int(parent.min()) < 2**63:  # a file's rows: by arithmetic (in int64, not wrapping)
        x = index.to_numpy().astype(np.int64, copy=False)
        if x.min() < parent.min() or x.max() > parent.max():
            return None
        if parent.step == 1:
            return x - parent.start
        pos, off = np.divmod(x - parent.start, parent.step)
        return pos if not off.any() else None
    if parent.dtype.kind in "iu" and index.dtype.kind in "iu" and parent.is_monotonic_increasing \
            and index.is_monotonic_increasing:
        p, x = parent.to_numpy(), index.to_numpy()
        pos = np.searchsorted(p, x)
        if not len(x):
            return pos
        return pos if pos[-1] < len(p) and bool((p[pos] == x).all()) else None
    pos = parent.get_indexer(index)
    return None if (pos < 0).any() else pos


def _renumbered(codes: np.ndarray, n_codes: int, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(new, old)``: the codes (0 … ``n_codes`` − 1) of the rows ``pos`` renumbered 0, 1, … in
    order of first appearance among those rows (``pd.factorize``'s numbering of their values),
    and the old code of each new one; None when some row's code is missing (−1)."""
    sub = codes[pos]
    if len(sub) and sub.min() < 0:
        return None
    present = np.zeros(n_codes, bool)
    present[sub] = True
    new = narrow_codes(np.cumsum(present) - 1, n_codes)[sub]  # numbered in the larger rows' order of first appearance
    old = np.flatnonzero(present)
    top = np.maximum.accumulate(new)
    if len(new) and (new[0] != 0 or (new[1:] > top[:-1] + 1).any()):  # a code first seen in rows not taken
        codes_here, first = first_appearance_codes(new, len(old))  # (by a table over the codes: no sort)
        new, old = narrow_codes(codes_here, len(old)), old[new[first]]
    return new, old


def _ids_of(value, pos: np.ndarray):
    """``match``'s ``("ids", column)`` entry — the student ids' ``pd.factorize`` and the hashed
    rank of each distinct id (:func:`~.nearest.distinct_hashed_ranks`) — of the rows ``pos``
    from that of more rows: the codes gathered and renumbered in order of first appearance (as
    ``pd.factorize`` numbers them), the distinct ids and their ranks taken (the ranks keep the
    hash order, all the matcher reads of them). None with a missing id."""
    (codes, uniq), ranks = value
    got = _renumbered(codes, len(uniq), pos)
    if got is None:
        return None
    new, old = got
    return (new, uniq[old]), ranks[old]


def _patterns_of(value, pos: np.ndarray):
    """``match``'s ``("patterns", …)`` entry (:func:`~.propensity.design_patterns` of rows whose
    covariates are their own columns) of the rows ``pos`` from that of more rows: the patterns
    renumbered in order of first appearance with each one's first row, and the categorical
    covariates' codes over the levels that occur (:func:`~._design.present_codes`) — those
    ``design_patterns`` gives on the rows ``pos`` alone."""
    pattern, _, known = value
    got = _renumbered(pattern, int(pattern.max(initial=-1)) + 1, pos)
    if got is None:
        return None
    new = got[0]
    top = np.maximum.accumulate(new)
    first = np.flatnonzero(np.concatenate([[True], top[1:] > top[:-1]]))  # (as covariate_patterns finds them)
    return new, first, {c: present_codes(k[pos], levels) for c, (k, levels) in known.items()}


def _cells_of(value: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``match``'s ``("cells", …)`` entry of the rows ``pos`` from that of more rows: their cell
    codes, equal where their exact-match cells are (all the matcher reads of them; the codes
    themselves are those of the more rows' levels)."""
    return value[pos]


def _codes_of(value, pos: np.ndarray):
    """A ``("codes", column)`` entry (a column's codes over its sorted levels,
    :func:`~._design.codes_and_levels`) of the rows ``pos`` from that of more rows: those of
    ``codes_and_levels`` on the rows ``pos`` alone, narrowed (:func:`~._design.narrow_codes`)."""
    codes, levels = present_codes(value[0][pos], value[1])
    return narrow_codes(codes, len(levels)), levels


def _student_ids(data: pd.DataFrame, sid: str):
    """``match``'s ``("ids", sid)`` entry: the student ids' factorization (int32 codes) and the
    hashed rank of each distinct id (:func:`~.nearest.distinct_hashed_ranks`), the tie cap's keys."""
    f = factorize(data[sid])
    return f, distinct_hashed_ranks(f[1])


def _ids_ahead(wait: Callable, index: pd.Index):
    """The student ids' coding of the rows ``index`` (``_student_ids``' factorization) from
    ``pd.factorize`` of those or more rows, started ahead (:func:`pleval.data.factorize_ahead`,
    ``wait`` from :func:`~pleval.data.factorized_ahead`): the codes renumbered in order of first
    appearance among the rows (:func:`_renumbered`) and narrowed, the distinct ids taken. None when
    it failed, or some row's id is missing or not among those coded."""
    got = wait()
    if got is None:
        return None
    coded, (codes, uniq) = got
    if coded.equals(index):
        return narrow_codes(codes, len(uniq)), uniq
    pos = _positions(coded, index)
    sub = None if pos is None else _renumbered(codes, len(uniq), pos)
    return None if sub is None else (sub[0], uniq[sub[1]])


def reuse_store(m: MatchResult) -> dict:
    """A ``_reuse`` store for later :func:`match` calls on some of ``m.data``'s rows (the placebo
    rounds' of an analysis's own match): the student ids' factorization and hashed ranks ``m``'s
    match computed, which such a call takes for its rows instead of hashing the ids again, and
    the columns' codes ``m`` keeps (``("codes", column)``, :attr:`MatchResult.codes`)."""
    sid = m.columns.student_id
    store = {("codes", x): (m.data.index, kx) for x, kx in m.codes.items()}
    if m.id_ranks is not None and sid in m.factorized:
        store[("ids", sid)] = (m.data.index, (m.factorized[sid], m.id_ranks))
    return store


def _strata(columns: Columns, exact, data) -> list[str]:
    if exact is None:
        exact = [c for c in (columns.subject, columns.grade) if c]
    else:
        exact = [exact] if isinstance(exact, str) else list(exact)
        if columns.subject and columns.subject not in exact:
            exact.insert(0, columns.subject)
    missing = [c for c in exact if c not in data.columns]
    if missing:
        raise DataError(f"exact-match column(s) not in the data: {', '.join(map(repr, missing))}")
    return exact


_BLOCK_PAIRS = 1 << 16
"""Pairs :func:`_long` places at a time (its temporaries stay in cache, none of them per pair)."""


def _long(t_pos, c_pos, set_of_pair, pair_weight, n_sets, *, c_map=None, s_map=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched-set long format: each set's treated row, then its comparisons. The pairs come
    ordered by set (``set_of_pair`` non-decreasing), so no sort is needed: set ``s`` starts at
    ``Σ_{s' < s} (size_{s'} + 1)`` and pair ``p`` sits at ``p + s_p + 1``. ``c_map``/``s_map``:
    when given, pair ``p``'s comparison row and set are ``c_map[c_pos[p]]`` and
    ``s_map[set_of_pair[p]]`` (e.g. the matcher's row indices and treated rows), looked up a block of
    pairs at a time rather than as per-pair arrays (``s_map`` increasing on the ``set_of_pair`` present).
    ``pair_weight`` None: each pair's weight is ``1/size`` of its set (:class:`NearestSets`)."""
    if s_map is None:
        size = np.bincount(set_of_pair, minlength=n_sets)
    else:  # sets numbered in order of their treated rows: the treated rows' pair counts, in order
        per_row = np.bincount(set_of_pair, minlength=len(s_map))
        size = per_row[per_row > 0]
    start = np.cumsum(size + 1) - (size + 1)  # position of each set's treated row
    n = len(t_pos) + len(c_pos)
    rows = np.empty(n, dtype=np.int64)
    sets = np.empty(n, dtype=np.int64)
    w = np.empty(n)
    rows[start], sets[start], w[start] = t_pos, np.arange(n_sets), 1.0
    for lo in range(0, len(c_pos), _BLOCK_PAIRS):
        hi = min(lo + _BLOCK_PAIRS, len(c_pos))
        s = set_of_pair[lo:hi] if s_map is None else s_map[set_of_pair[lo:hi]]
        at = np.arange(lo + 1, hi + 1) + s  # pair p sits after the s + 1 treated rows before it
        rows[at] = c_pos[lo:hi] if c_map is None else c_map[c_pos[lo:hi]]
        sets[at], w[at] = s, (1.0 / size[s] if pair_weight is None else pair_weight[lo:hi])
    return rows, sets, w


class NearestSets:
    """A nearest-neighbour match's sets as the matcher leaves them — the matched treated rows'
    positions in the data (``t_pos``, one set each, in order), each pair's comparison (an index
    into the comparisons' positions ``c_pos``; pairs grouped by set) and each set's size — from
    which :class:`MatchResult` forms the long format (:meth:`long`: weights ``1/size``, as the
    matcher gives them) when it is read, and again after :meth:`MatchResult.let_go_long`. At 10M
    rows 0.19 GB where the long format is 0.58 GB."""

    positive = True
    """Every weight of the long format is positive (1 for a treated row, ``1/size`` for a comparison)."""

    def __init__(self, t_pos, c_pos, c_row, sizes):
        self.t_pos, self.c_pos, self.c_row, self.sizes = t_pos, c_pos, c_row, sizes

    def long(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`_long`'s arrays, a set's members together: each set's number and weights by
        ``np.repeat``, the comparisons' rows copied a block of pairs at a time into the places
        after the treated rows (a mask over the places, no array per pair)."""
        size = self.sizes
        n_sets, n_pairs = len(size), len(self.c_row)
        start = np.cumsum(size + 1) - (size + 1)  # position of each set's treated row
        n = n_sets + n_pairs
        rows = np.empty(n, np.int64)
        rows[start] = self.t_pos
        comparison = np.ones(n, bool)
        comparison[start] = False
        first_pair = np.cumsum(size) - size  # each set's first pair
        for lo in range(0, n_pairs, _BLOCK_PAIRS):
            hi = min(lo + _BLOCK_PAIRS, n_pairs)
            s0, s1 = np.searchsorted(first_pair, [lo, hi - 1], side="right") - 1  # the sets of its first and last pair
            a, b = lo + s0 + 1, hi + s1 + 1  # pair p sits after the s_p + 1 treated rows before it
            block = rows[a:b]
            block[comparison[a:b]] = self.c_pos[self.c_row[lo:hi]]
        sets = np.repeat(np.arange(n_sets, dtype=np.int64), size + 1)
        w = np.repeat(1.0 / size, size + 1)
        w[start] = 1.0
        return rows, sets, w


TIE_CAP = 25
"""The default most comparisons a nearest-neighbour set keeps when ties are kept (``tie_cap``).
On whole-point scores almost every tie is a comparison with the treated student's own covariate
pattern, so uncapped sets grow with the pool (a median of 49 at 1M rows, and the distinct
(PL school, matched row) pairs of the school effects with its square). With 25 the
comparison part of an estimate's variance is within about 1/25 of that of every tie
(Abadie & Imbens 2006); sets of the sample data (at most 22) are not capped."""


def check_tie_cap(tie_cap) -> None:
    """Raise unless ``tie_cap`` is None or a whole number >= 0."""
    if tie_cap is not None and (isinstance(tie_cap, bool) or not isinstance(tie_cap, (int, np.integer)) or tie_cap < 0):
        raise DataError(f"tie_cap must be a whole number >= 0 (0 = every tie); got {tie_cap!r}")


def resolve_tie_cap(tie_cap, *, replace: bool, ties: bool, student_id) -> int:
    """The cap a nearest-neighbour match applies: ``tie_cap`` (default :data:`TIE_CAP`) when
    ties are kept with replacement and there is a student id to rotate by, else 0 (none)."""
    check_tie_cap(tie_cap)
    return (TIE_CAP if tie_cap is None else int(tie_cap)) if replace and ties and student_id else 0


def _id_ranks(data: pd.DataFrame, c, conventions: str) -> np.ndarray | None:
    """Tie-breaking keys of the rows: the rank of the student id (so neither row order nor the
    spelling of subject, grade or school labels matters), or data order (None: no student id,
    or ``conventions="matchit"``). Each id is hashed once and only the distinct ids sorted."""
    if conventions == "matchit" or not c.student_id:
        return None
    codes, uniq = pd.factorize(data[c.student_id])
    return pd.factorize(uniq, sort=True)[0][codes]  # the sorted rank of each distinct id


def _priority(data: pd.DataFrame, c, pos, conventions: str) -> np.ndarray | None:
    """:func:`_id_ranks` of the rows at ``pos``, renumbered 0, 1, ... among them."""
    r = _id_ranks(data, c, conventions)
    return None if r is None else np.unique(r[pos], return_inverse=True)[1]


def _optimal(method, t_coord, c_coord, k, caliper, t_cell, c_cell, diagnostics, t_key=None, c_key=None) -> NearestMatch:
    """Optimal pair or full matching as pairs in matched-set long format.

    Optimal solutions need not be unique (on a score, two crossing pairs can often be swapped at
    the same total), and the solver's choice among them follows the order of its rows. The rows
    are therefore put in one order first — by exact-match cell, coordinates, then ``t_key`` /
    ``c_key`` (the student ids' ranks, :func:`_priority`; default position) — so that the matched
    sets depend on neither the row order nor the spelling of labels, as nearest-neighbour
    matching's do; the pairs come back numbered as the rows passed in."""
    pt, pc = _solver_order(t_coord, t_cell, t_key), _solver_order(c_coord, c_cell, c_key)
    t_in, c_in = t_coord[pt], c_coord[pc]
    t_cell, c_cell = (None, None) if t_cell is None else (t_cell[pt], c_cell[pc])
    if method == "optimal":
        nm = match_optimal(t_in, c_in, k=k, caliper=caliper, t_cell=t_cell, c_cell=c_cell)
    else:
        fm = match_full(t_in, c_in, caliper=caliper, t_cell=t_cell, c_cell=c_cell)
        t_row, c_row, w = set_pairs(fm)
        diagnostics["full-matching subclasses"] = fm.n_sets
        diagnostics["total within-set distance"] = fm.total
        dist = np.abs(t_in[t_row] - c_in[c_row]) if t_in.ndim == 1 else np.sqrt(((t_in[t_row] - c_in[c_row]) ** 2).sum(1))
        nm = NearestMatch(t_row, c_row, dist, w, np.bincount(t_row, minlength=len(t_in)), fm.t_reason)
    o = np.lexsort((nm.c_row, nm.dist, pt[nm.t_row]))  # grouped by the caller's treated rows, nearest first
    n_matched, reason = np.empty_like(nm.n_matched), np.empty_like(nm.reason)
    n_matched[pt], reason[pt] = nm.n_matched, nm.reason
    return NearestMatch(pt[nm.t_row[o]], pc[nm.c_row[o]], nm.dist[o], nm.weight[o], n_matched, reason)


def _solver_order(coord: np.ndarray, cell, key) -> np.ndarray:
    """Rows by exact-match cell, coordinates (each column) and ``key`` (default position)."""
    z = coord[:, None] if coord.ndim == 1 else coord
    keys = [np.arange(len(z)) if key is None else key, *z.T[::-1]]
    return np.lexsort(keys if cell is None else [*keys, cell])


def _constrained(data, t, tpos, cpos, coord, cal_abs, on_score, mahvars, calipers, categorical, k, replace, cells,
                 order, pm, c, conventions, seed, options) -> NearestMatch:
    """Nearest neighbours on the PS or Mahalanobis distance within the PS caliper and the
    per-variable calipers (:mod:`.constrained`)."""
    box = []
    if on_score and np.isfinite(cal_abs):
        box.append(coord / cal_abs)
    for col, width in calipers.items():
        x = pd.to_numeric(data[col], errors="coerce").to_numpy(float)
        if not (np.isfinite(width) and width > 0):
            raise DataError(f"calipers[{col!r}] must be a positive number of SDs; got {width!r}")
        box.append(x / (width * float(np.std(x, ddof=1))))
    box = np.column_stack(box) if box else np.zeros((len(data), 0))
    z = coord
    if mahvars:
        # quantized as the main path's coordinates are: distances equal but for floating-point noise
        # (which depends on row order through the covariance's factor) are then exact ties, broken by id
        enc = encode(data, mahvars, categorical)
        z = np.round(mahalanobis_coordinates(enc.X, t, enc.names), 10)
        options["mahvars"] = tuple(mahvars)
    options["calipers"] = dict(calipers)
    t_prio = _priority(data, c, tpos, conventions)
    t_prio = np.arange(len(tpos)) if t_prio is None else t_prio
    if order in ("largest", "smallest"):
        if pm is None:
            raise DataError(f"order={order!r} needs a propensity score; use order='random' or 'data'")
        key = pm.ps[tpos]
        seq = np.lexsort((t_prio, -key if order == "largest" else key))
    elif order == "random":
        seq = np.random.default_rng(seed).permutation(len(tpos))
    else:
        seq = np.argsort(t_prio, kind="stable")
    return match_constrained(z[tpos], z[cpos], box[tpos], box[cpos], k=k, replace=replace, t_cell=cells[tpos],
                             c_cell=cells[cpos], seq=seq, c_priority=_priority(data, c, cpos, conventions),
                             caliper=np.inf if on_score else cal_abs)


# options of one method: their defaults (an option equal to its default was not given) and methods
_NEAREST = ("propensity", "mahalanobis")
_METHOD_ONLY = {"k": (None, ("propensity", "mahalanobis", "optimal", "vcg")),
                "caliper": (None, ("propensity", "mahalanobis", "optimal", "full")),
                "replace": (None, _NEAREST), "ties": (None, _NEAREST), "tie_cap": (None, _NEAREST),
                "order": (None, _NEAREST), "distance": (None, ("mahalanobis", "optimal", "full")),
                "truncate": (None, ("weighting",)), "trim": (None, ("weighting",)), "subclasses": (6, ("subclass",)),
                "min_n": (1, ("subclass",)), "moments": (1, ("ebal",)), "cutpoints": (None, ("cem",)),
                "grouping": (None, ("cem",)), "band": (1.0, ("vcg",)), "school_keys": ((), ("vcg",)),
                "school_bins": (None, ("vcg",)), "estimand": ("ATT", ("subclass", "cem", "weighting", "ebal"))}


TRIMMED = ("comparison rows trimmed (propensity score)", "PL rows trimmed (propensity score)")
"""``MatchResult.diagnostics`` keys of the rows weighting's ``trim`` left out, which
:meth:`MatchResult.sample_sizes` counts as discarded."""


def _weighted_rows(w_all: np.ndarray, t: np.ndarray, strata, diagnostics: dict):
    """What a weighting method (propensity weights, entropy balancing) keeps of its weights
    ``w_all`` per row: ``(rows, weights, unmatched PL rows, their reason)`` — the rows of positive
    weight, and the PL rows of cells without comparison rows — and into ``diagnostics`` the
    comparison group's Kish ESS and the comparison rows of cells without PL rows."""
    keep = w_all > 0
    un_pos = np.flatnonzero(~keep & (t == 1))
    un_reason = np.full(len(un_pos), f"no comparison row in its exact-match cell ({', '.join(strata)})", dtype=object)
    wc = w_all[keep & (t == 0)]
    diagnostics["effective comparison sample size (Kish)"] = float(wc.sum() ** 2 / (wc**2).sum())
    if (~keep & (t == 0)).any():
        diagnostics["comparison rows in cells without treated rows (left out)"] = int((~keep & (t == 0)).sum())
    rows = np.flatnonzero(keep)
    return rows, w_all[rows], un_pos, un_reason


def _method_options(method: str, given: dict) -> None:
    """A :class:`DataError` when an option of other methods was given (it would be ignored:
    ``truncate=0.99`` with ``method="propensity"`` matched untruncated, and ``caliper=0.05``
    with ``method="vcg"`` matched as without it, both recorded in the outputs as if applied).
    ``given``: the options to check, by name (those left out are not checked)."""
    for name, (default, methods) in _METHOD_ONLY.items():
        if name not in given:
            continue
        value = given[name]
        unset = value is None if default is None else (not value if default == () else value == default)
        if name == "estimand" and isinstance(value, str):
            unset = value.upper() == default
        if name == "caliper" and value is False:  # no caliper: what the other methods do anyway
            unset = True
        if not unset and method not in methods:
            which = ", ".join(methods[:-1]) + " or " + methods[-1] if len(methods) > 1 else methods[0]
            hint = " (with propensity, mahvars= matches on Mahalanobis distance within the caliper)" * (
                name == "distance" and method == "propensity")
            raise DataError(f"option {name} applies to method {which}; the method is {method} (choose that "
                            f"method, or leave {name} out){hint}")


def match(
    df,
    columns: Columns,
    method: str = "propensity",
    *,
    covariates=None,
    categorical=(),
    exact=None,
    k: int | None = None,
    caliper: float | bool | None = None,
    replace: bool | None = None,
    ties: bool | None = None,
    tie_cap: int | None = None,
    order: str | None = None,
    discard: str = "none",
    penalize: bool = False,
    alpha: float = 1e-3,
    link: str = "logit",
    ps_model: str = "student",
    subclasses: int = 6,
    min_n: int = 1,
    estimand: str = "ATT",
    cutpoints=None,
    grouping=None,
    mahvars=None,
    calipers=None,
    moments: int = 1,
    distance=None,
    band: float = 1.0,
    school_keys=(),
    school_bins=None,
    trim: float | None = None,
    truncate: float | None = None,
    stabilize: bool = True,
    require_outcome: bool = True,
    conventions: str = "pleval",
    seed: int = 0,
    _reuse: dict | None = None,
    _ids_coded: Callable[[dict], Any] | None = None,
) -> MatchResult:
    """Build a matched comparison of PL (treated) and non-PL students.

    Parameters
    ----------
    df : DataFrame, or a :class:`pleval.data.Validated` (then not validated again).
    columns : :class:`pleval.data.Columns` (outcome, treatment, pretest(s), covariates, school,
        grade, subject, ...).
    method : "propensity" | "mahalanobis" | "vcg" | "weighting" | "optimal" | "full".
        "optimal" and "full" match on the propensity score (the score itself under
        ``conventions="matchit"``, its logit otherwise), or on the Mahalanobis distance of
        ``distance`` when given; no caliper unless one is given (in SD of the score's logit,
        or in Mahalanobis units). ``k`` applies to "optimal".
    covariates : propensity-model covariates (default: the pretests and covariates).
    categorical : numeric columns to treat as categorical.
    exact : exact-match columns (default: subject and grade; subject is always added).
    k : comparisons per treated row (default 1 for nearest-neighbour, 51 for "vcg").
    caliper : propensity: in SD of the logit PS (default None = 0.2; False for no caliper);
        mahalanobis: in Mahalanobis-distance units (default None = no caliper).
    replace : nearest-neighbour with (default) or without replacement.
    ties : with replacement, keep every comparison tied at the k-th distance, sharing the
        weight (default True; False takes k by (distance, student id)).
    tie_cap : with ties kept, at most ``max(tie_cap, k)`` comparisons per set (default
        :data:`TIE_CAP`; 0 = every tie): the tied ones beyond it are left out by a fixed
        rotation over a hash of the student ids that spreads each group of equal treated rows
        evenly over their tied comparisons (:mod:`.nearest`). Needs a student id (without one,
        every tie is kept).
    order : greedy order without replacement ("largest" PS first, the default for
        propensity; "smallest"; "data" = by student id, or row order without one, the default
        for Mahalanobis; "random" = seeded).
    discard : drop units outside common support ("none", "treated", "control", "both").
    penalize, alpha : ridge-penalized propensity model instead of an error on separation.
    link : propensity model link, "logit" (default) or "probit".
    ps_model : "student" (default), "school_means" (covariates and their school means, for PL
        chosen school by school) or "fixed" (school fixed effects; needs PL to vary within
        schools; schools without both groups are excluded) (:mod:`.multilevel`).
    mahvars : with ``method="propensity"``, match on the Mahalanobis distance of these
        columns among the comparisons within the propensity caliper (MatchIt's ``mahvars``).
    calipers : per-variable calipers in SD units of each variable over all analysed rows,
        e.g. ``{"re74": 0.2}`` (propensity or Mahalanobis matching; :mod:`.constrained`).
    subclasses, min_n : number of propensity-score subclasses ("subclass"; default 6) and the
        fewest treated and comparison rows each must hold (default 1; filled from neighbouring
        subclasses as MatchIt does; 0 drops subclasses lacking a group).
    estimand : "ATT" (default) or "ATE" ("subclass" and "cem": the subclass weights;
        "weighting": odds or inverse-probability weights; "ebal": whose moments are balanced).
    moments : "ebal": balance the means (1), and also the variances (2) or third moments (3)
        of the non-binary covariates.
    cutpoints, grouping : CEM coarsening of the covariates (:mod:`pleval.matching.cem`), e.g.
        ``cutpoints={"pretest": 10}`` and ``grouping={"race": [["white", "asian"]]}``; numeric
        covariates default to Sturges' number of equal-width bins.
    distance : Mahalanobis variables (default: the pretests and numeric covariates).
    band : VCG pretest band (±points; 0 = equal pretest).
    school_keys : VCG school-level exact keys (e.g. "urbanicity", "school_poverty");
        ``school_bins={"school_poverty": [0, .25, .5, .75, 1]}`` bins a numeric one first.
    trim, truncate, stabilize : weighting options (:func:`pleval.matching.weighting.att_weights`).

    Analysis weights (``columns.weight``) enter the matching weights so that each matched set,
    exact-match cell or subclass weighs as much as its PL rows' analysis weights
    (:mod:`.analysis_weights`); rows of weight 0 are left out and counted. The effect
    regression is WLS with those weights, and the effect-size SD, balance after matching and
    school effects are weighted the same way; the propensity model itself is unweighted.
    require_outcome : match only rows with an observed outcome (default; the rest are counted
        as excluded).
    conventions : "pleval" (default) or "matchit": MatchIt's defaults for nearest-neighbour
        matching (match on the PS itself, no caliper, no replacement, "largest" order, ties in
        data order) and MatchIt's ATT standardized differences in the balance table. Explicit
        ``caliper``/``replace``/``order``/``ties`` still apply.
    seed : used only by ``order="random"``; nothing else in matching is random.
    _reuse : a dict the caller keeps across calls on the same rows and columns that differ in
        the treatment only (the placebo rounds): what depends on the rows alone (the covariate
        patterns, the exact-match cells, the student ids' factorization and hashed ranks) is
        computed once, and taken again where a call's rows (their index) are the same.
    _ids_coded : called once with a ``_reuse`` store as soon as the student ids are coded beside
        the fit, before the search (not called where the ids are not coded there): the ids'
        coding (the form of :func:`reuse_store`, of the rows before the fit) and, of the rows
        the fit leaves, the exact-match cells, the columns' codes kept for :class:`MatchResult`
        (``("codes", column)``) and, where the covariates are the rows' own columns and the fit
        leaves every row, the covariate patterns. The placebo rounds take nothing else of the
        analysis's match: :func:`pleval.estimate` forks their worker there, so that it runs
        beside the search rather than after it; their first round takes these for its rows.
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}; got {method!r}")
    if conventions not in CONVENTIONS:
        raise DataError(f"conventions must be one of {CONVENTIONS}; got {conventions!r}")
    _method_options(method, dict(k=k, caliper=caliper, replace=replace, ties=ties, tie_cap=tie_cap, order=order,
                                 distance=distance, truncate=truncate, trim=trim, subclasses=subclasses, min_n=min_n,
                                 moments=moments, cutpoints=cutpoints, grouping=grouping, band=band,
                                 school_keys=school_keys, school_bins=school_bins, estimand=estimand))
    if (mahvars or calipers) and (ties is not None or tie_cap is not None):
        raise DataError("options ties and tie_cap apply to nearest-neighbour matching without mahvars= or calipers= "
                        "(which take k comparisons by distance, then student id); leave them out")
    if caliper is not None and caliper is not False and not (
            isinstance(caliper, (int, float, np.number)) and not isinstance(caliper, bool) and 0 < caliper < np.inf):
        raise DataError(f"caliper must be a positive number (SDs of the logit propensity score, or Mahalanobis "
                        f"units), or False for none; got {caliper!r}")  # (as given, before scaling by the SD)
    matchit = conventions == "matchit"
    replace = (not matchit) if replace is None else bool(replace)
    ties = (replace and not matchit) if ties is None else bool(ties)
    check_tie_cap(tie_cap)
    if not isinstance(df, Validated):
        from ..checks import warn_values  # outliers and mixed codes: computed, but worth a warning

        columns = as_columns(columns)
        v = validate(df, columns)
        warn_values(df, columns)
    else:
        v = df
    columns = v.columns
    c = columns
    ahead = factorized_ahead(v, c.student_id) if c.student_id else None  # (given up by v either way)
    log = v.dropped.to_dict("records")
    n_validated = len(log)  # validate leaves both groups; the entries after these are match's own
    data = v.data
    pl_schools = None  # VCG: the schools with a PL row before any row left (validation's or match's own)
    if method == "vcg" and c.school:
        pl_schools = pd.unique(np.concatenate([data[c.school].to_numpy()[data[c.treatment].to_numpy() == 1],
                                               np.array(v.pl_schools_dropped, dtype=object)]))
    if require_outcome:
        data = _exclude(data, data[c.outcome].isna().to_numpy(), "missing outcome", c.outcome, log, c)
    strata = _strata(c, exact, data)
    default_vars = list(c.pretest) + list(c.covariates)
    covariates = default_vars if covariates is None else ([covariates] if isinstance(covariates, str) else list(covariates))
    on_score = method in ("propensity", "weighting", "subclass") or (method in OPTIMAL and distance is None)
    if method in ("propensity", "weighting", "mahalanobis", "subclass", "cem", "exact", "ebal", *OPTIMAL) and not (covariates or distance):
        raise DataError("matching needs covariates: name pretest(s)/covariates in Columns or pass covariates=")
    mahvars = [mahvars] if isinstance(mahvars, str) else (list(mahvars) if mahvars is not None else None)
    calipers = dict(calipers or {})
    if (mahvars or calipers) and method not in ("propensity", "mahalanobis"):
        raise DataError("mahvars= and calipers= apply to nearest-neighbour matching (method 'propensity' or 'mahalanobis')")
    if mahvars and method != "propensity":
        raise DataError("mahvars= matches within a propensity caliper: use method='propensity' (or distance= with 'mahalanobis')")
    extra = list(covariates) + list(strata) + ([school_keys] if isinstance(school_keys, str) else list(school_keys))
    extra += list(mahvars or []) + list(calipers)
    if distance is not None:
        extra += [distance] if isinstance(distance, str) else list(distance)
    absent = [x for x in dict.fromkeys(extra) if x not in data.columns]
    if absent:
        raise DataError(f"column(s) not in the data: {', '.join(map(repr, absent))}")
    for col in dict.fromkeys(extra):  # columns outside the validated roles
        data = _exclude(data, data[col].isna().to_numpy(), f"missing {col}", col, log, c)
    if c.weight:  # a row of weight 0 counts for nothing: out of the matching, counted
        data = _exclude(data, data[c.weight].to_numpy(dtype=float) == 0, ZERO_WEIGHT, c.weight, log, c)
    t = data[c.treatment].to_numpy()
    _check_groups(t, log[n_validated:])

    pm: PropensityModel | None = None
    subclass = None
    lazy = None  # the matcher's own form of the sets, when the long format is formed on demand
    codes: dict = {}  # columns of the final data already coded (codes_and_levels), for MatchResult
    factorized: dict = {}  # and factorized (pd.factorize)
    id_ranks = None  # the hashed rank of each distinct student id (factorized's), with the tie cap
    options: dict = {"method": method, "conventions": conventions}
    diagnostics: dict = {}

    def school_at(pos):  # school ids at row positions (NaN without a school column)
        return data[c.school].iloc[pos].to_numpy(dtype=object) if c.school else np.full(len(pos), np.nan, dtype=object)

    def cell_codes(out=None):  # each row's exact-match cell (all 0 without strata), of the rows kept so far
        return combine_codes(data, strata, out=out) if strata else np.zeros(len(data), np.int64)

    def analysis():  # each row's analysis weight, of the rows kept so far
        return data[c.weight].to_numpy(dtype=float)

    coded: dict = {}  # columns' codes formed on the way (the fit's covariates', the exact-match cells'), of data's rows
    ids_ahead = cells_ahead = None  # the student ids' coding, computed beside the propensity fit, and the cells
    shared: dict = {}  # with _ids_coded: what else it is handed (the fit's patterns, the cells, the columns' codes)
    if on_score:
        def fit():  # the propensity model (and the rows it leaves)
            nonlocal data, t, pm
            if ps_model == "fixed" and c.school:
                data = _exclude(data, no_contrast(data, c.school, c.treatment),
                                "school is all PL or all comparison (no within-school contrast for ps_model='fixed')",
                                c.school, log, c)
                t = data[c.treatment].to_numpy()
                if t.sum() == 0 or t.sum() == len(t):
                    raise DesignError("ps_model='fixed': no school has both PL and comparison rows; use ps_model='school_means'")
            ps_data, ps_covs, ps_cat = multilevel_covariates(data, covariates, c.school, c.treatment, ps_model, categorical)
            pats = None
            if not penalize and all(x in ps_data for x in ps_covs):  # (as the fit would form them: their codes kept)
                pats = _reused(_reuse, ("patterns", tuple(ps_covs), ps_cat), ps_data.index,
                               lambda: design_patterns(ps_data, ps_covs, ps_cat),
                               _patterns_of if ps_data is data else None)  # (school means: not the rows' own)
            pm = fit_propensity(ps_data, c.treatment, ps_covs, categorical=ps_cat, discard=discard,
                                penalize=penalize, alpha=alpha, link=link, patterns=pats)
            if pats is not None and pm.keep.all():  # ps_data's rows are data's (none left by the fit)
                coded.update(pats[2])
                if _ids_coded is not None and ps_data is data:  # (handed on with the ids)
                    shared[("patterns", tuple(ps_covs), ps_cat)] = (data.index, pats)
            del pats  # (the fit's only)
            if not pm.keep.all():
                log.append(_entry(data, ~pm.keep, f"outside common support (discard={discard!r})", "propensity score", c))
                data, t, pm = _keep_rows(data, t, pm, pm.keep)
            options.update(covariates=tuple(covariates), discard=discard, penalize=penalize, link=link,
                           ps_model=ps_model)

        if (method == "propensity" and not (mahvars or calipers) and _workers.compute_threads() > 1
                and resolve_tie_cap(tie_cap, replace=replace, ties=ties, student_id=c.student_id)):
            # the tie cap's ids do not depend on the fit: coded (or taken from the store of a call on more rows:
            # a placebo round's) in a second thread meanwhile (a core is free), and the exact-match cells of the
            # rows the fit leaves formed (or taken) in the fit's thread (the shorter)
            before = data

            def fit_and_cells():
                fit()
                return _reused(_reuse, ("cells", tuple(strata)), data.index, lambda: cell_codes(coded), _cells_of)

            def coded_ids():
                f = _ids_ahead(ahead, before.index) if ahead is not None else None
                make = ((lambda: (f, distinct_hashed_ranks(f[1]))) if f is not None  # (_student_ids(before, ...))
                        else (lambda: _student_ids(before, c.student_id)))
                return _reused(_reuse, ("ids", c.student_id), before.index, make, _ids_of)

            cells_ahead, ids = _workers.side_by_side(fit_and_cells, coded_ids)
            ids_ahead = {("ids", c.student_id): (before.index, ids)}
            if _ids_coded is not None:
                shared[("cells", tuple(strata))] = (data.index, cells_ahead)
                shared.update({("codes", x): (data.index, kx) for x, kx in coded.items()})
                _ids_coded({**ids_ahead, **shared})
            del before, ids
        else:
            fit()
        shared.clear()
    if ahead is not None:  # (taken or not: no thread of it left running into a fork)
        ahead()

    if method in ("propensity", "mahalanobis", *OPTIMAL):
        k = 1 if k is None else k
        cells = cells_ahead if cells_ahead is not None else _reused(_reuse, ("cells", tuple(strata)), data.index,
                                                                    lambda: cell_codes(coded), _cells_of)
        del cells_ahead
        codes.update({x: (kx.astype(np.int32), lv) for x, (kx, lv) in coded.items()  # (no row left after them)
                      if x in data and is_categorical(data[x])})  # strings: costly to redo for the groups
        tpos = np.flatnonzero(t == 1)
        cpos = np.flatnonzero(t == 0)
        if on_score:
            coord = pm.ps if matchit else pm.logit_ps
            unit = pooled_logit_sd(pm.logit_ps, t)
            width = (False if matchit or method in OPTIMAL else DEFAULT_CALIPER) if caliper is None else caliper
            cal_abs = np.inf if width is False else width * unit
            if matchit and width is not False:  # MatchIt: caliper in SD of the distance it matches on
                cal_abs = width * float(np.std(pm.ps, ddof=1))
            order = order or "largest"
            diagnostics["caliper (PS units)" if matchit else "caliper (logit PS units)"] = float(cal_abs)
        else:
            if distance is None:
                # pretests and numeric covariates; a True/False flag is a 0/1 number there (as a Parquet
                # or Stata file stores one), not a category left out
                dvars = list(c.pretest) + [x for x in c.covariates if not is_categorical(data[x])
                                           or pd.api.types.is_bool_dtype(data[x])]
            else:
                dvars = [distance] if isinstance(distance, str) else list(distance)
            enc = encode(data, dvars, categorical)
            coord = mahalanobis_coordinates(enc.X, t, enc.names)
            cal_abs = np.inf if caliper is None or caliper is False else caliper
            order = order or "data"
            options["distance"] = tuple(dvars)
        # quantized so that distances equal but for floating-point noise (which depends on row
        # order through the fitted model) are exact ties
        coord = np.round(coord, 10)
        nearest = method not in OPTIMAL and not (mahvars or calipers)  # match_nearest's sets: weights 1/size
        if method in OPTIMAL:
            nm = _optimal(method, coord[tpos], coord[cpos], k, cal_abs, cells[tpos], cells[cpos], diagnostics,
                          _priority(data, c, tpos, conventions), _priority(data, c, cpos, conventions))
            replace, ties, order = method == "full", False, None
        elif mahvars or calipers:
            nm = _constrained(data, t, tpos, cpos, coord, cal_abs, on_score, mahvars, calipers, categorical, k,
                              replace, cells, order, pm, c, conventions, seed, options)
            ties = False
        else:
            prio = None if replace and ties else _id_ranks(data, c, conventions)  # every tie kept: none needed
            cap = resolve_tie_cap(tie_cap, replace=replace, ties=ties, student_id=c.student_id)
            key = None
            if cap:  # the ids' factorization is kept for school_sample, their ranks for a match of some of the rows
                f, id_ranks = _reused(_reuse if ids_ahead is None else ids_ahead, ("ids", c.student_id), data.index,
                                      lambda: _student_ids(data, c.student_id), _ids_of)
                factorized[c.student_id] = f
                del ids_ahead

                def key(pos):  # the rows' hashed ranks (-1: no id)
                    k = f[0][pos]
                    return np.where(k >= 0, id_ranks[k], -1)
            t_coord, c_coord = coord[tpos], coord[cpos]
            del coord  # every row's: not held through the search
            nm = match_nearest(t_coord, c_coord, k=k, caliper=cal_abs, replace=replace, ties=ties,
                               t_cell=cells[tpos], c_cell=cells[cpos], order=order,
                               order_key=pm.ps[tpos] if pm is not None else None, seed=seed,
                               c_priority=None if prio is None else prio[cpos],
                               t_priority=None if prio is None else prio[tpos],
                               sided=matchit and method == "propensity", tie_cap=cap,
                               c_key=None if key is None else key(cpos), t_key=None if key is None else key(tpos),
                               weights=bool(c.weight))  # else NearestSets forms them from the set sizes
            del t_coord, c_coord
            options["tie_cap"] = cap
        m_i = nm.n_matched
        matched_t = m_i > 0
        n_sets = int(matched_t.sum())
        rows = sets = w = None
        if nearest and not c.weight:  # the long format formed when read (each row's own weight would be needed now)
            lazy = NearestSets(tpos[matched_t], cpos, nm.c_row, m_i[matched_t])
        else:
            set_index = np.cumsum(matched_t) - 1  # treated row -> set id
            rows, sets, w = _long(tpos[matched_t], nm.c_row, nm.t_row, nm.weight, n_sets, c_map=cpos, s_map=set_index)
        set_school = school_at(tpos[matched_t])
        un_pos, un_reason = tpos[~matched_t], nm.reason[~matched_t]
        options.update(k=k, caliper=caliper, replace=replace, ties=ties, order=order, exact=tuple(strata))
        if order == "random":
            options["seed"] = seed
        if n_sets:
            diagnostics["mean matched distance"] = float(np.mean(nm.dist))
        diagnostics.update(set_size_diagnostics(m_i, k, ties=ties, replace=replace, tie_cap=options.get("tie_cap")))

    elif method == "vcg":
        k = 51 if k is None else k
        if not c.school:
            raise DataError("VCG matching draws comparisons from non-PL schools: name the school column (school=...)")
        if not c.main_pretest:
            raise DataError("VCG matching needs a pretest column (pretest=...)")
        sc, sl = codes_and_levels(data[c.school])  # kept for the balance and the effect regression
        t_all = data[c.treatment].to_numpy()
        # a PL school stays one when its PL rows all lack the outcome (before 2026-12-04 its comparison
        # rows then became comparisons)
        if (sc >= 0).all():
            in_pl = (t_all == 0) & pd.Index(sl).isin(pl_schools)[sc]
        else:  # a missing school id: as isin
            in_pl = (t_all == 0) & data[c.school].isin(pl_schools).to_numpy()
        data = _exclude(data, in_pl, "comparison rows in PL schools (comparisons come from non-PL schools only)", c.school, log, c)
        codes[c.school] = ((sc[~in_pl] if in_pl.any() else sc).astype(np.int32), sl)
        t = data[c.treatment].to_numpy()
        skeys = [school_keys] if isinstance(school_keys, str) else list(school_keys)
        keyframe = data[list(dict.fromkeys(strata + [x for x in covariates if x not in c.pretest] + skeys))]
        keyframe = keyframe.copy() if school_bins else keyframe  # (binned below)
        for col, edges in (school_bins or {}).items():
            if col not in keyframe:
                raise DataError(f"school_bins names {col!r}, which is not among the school keys")
            keyframe[col] = pd.cut(keyframe[col], edges, include_lowest=True)
            bad = keyframe[col].isna().to_numpy()
            if bad.any():
                raise DataError(f"column {col!r}: {int(bad.sum()):,} row(s) fall outside school_bins {list(edges)}")
        key_codes: dict = {}
        cells = combine_codes(keyframe, list(keyframe.columns), out=key_codes)
        codes.update({col: (kc.astype(np.int32), lv) for col, (kc, lv) in key_codes.items()
                      if col not in (school_bins or {}) and is_categorical(keyframe[col])})  # strings: costly to redo
        tpos, cpos = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
        score = data[c.main_pretest].to_numpy(dtype=float)
        vm = vcg_sets(cells[tpos], score[tpos], cells[cpos], score[cpos], band=band, k=k)
        matched_t = vm.n_matched > 0
        n_sets = int(matched_t.sum())
        lazy = VCGSample(vm, tpos, cpos)  # the long format written from the ranges when first read
        rows = sets = w = None
        if c.weight:  # each row's own weight multiplies its matching weight: needed now
            (rows, sets, w), lazy = lazy.long(), None
        anchors = tpos[matched_t]
        sk = codes[c.school][0]
        set_school = sl[sk[anchors]] if (sk >= 0).all() else school_at(anchors)  # the levels, no text per set
        un_pos, un_reason = tpos[~matched_t], vm.reason[~matched_t]
        options.update(k=k, band=band, keys=tuple(keyframe.columns), school_keys=tuple(skeys), exact=tuple(strata))
        if n_sets:
            diagnostics["mean comparisons per matched PL row"] = float(vm.n_matched[matched_t].mean())
            diagnostics["PL rows with fewer than k qualified comparisons"] = int(((vm.n_qualified > 0) & (vm.n_qualified < k)).sum())
            diagnostics["PL rows with ties at the k-th distance sharing places"] = int((vm.n_matched > k).sum())

    elif method in ("subclass", "cem", "exact"):
        cells = cell_codes()
        if method == "subclass":
            sub = subclassify(pm.ps, t, n_subclasses=subclasses, estimand=estimand, cells=cells, min_n=min_n)
            options.update(subclasses=subclasses, min_n=min_n)
            lacking = "its propensity-score subclass has no comparison row"
        else:
            cc = cem_cells(data, covariates, cutpoints=cutpoints, grouping=grouping, categorical=categorical,
                           default="sturges" if method == "cem" else 0)
            sub = pd.factorize(cells * (int(cc.max(initial=0)) + 1) + cc)[0]
            options.update(cutpoints=dict(cutpoints or {}), grouping=dict(grouping or {}), covariates=tuple(covariates))
            lacking = "no comparison row in its coarsened cell" if method == "cem" else "no comparison row with the same covariates"
        w_all = subclass_weights(sub, t, estimand)
        if c.weight:  # the same weights with the analysis weights in them (subclass_weights is within_cells of 1s)
            w_all = within_cells(w_all > 0, t, sub, estimand, analysis=analysis())
        keep = w_all > 0
        rows = np.flatnonzero(keep)
        sets = np.full(len(rows), -1, dtype=np.int64)
        w = w_all[rows]
        n_sets = int(np.unique(sub[keep]).size)
        subclass = pd.factorize(sub[rows], sort=True)[0]
        set_school = np.zeros(0, dtype=object)
        un_pos = np.flatnonzero(~keep & (t == 1))
        un_reason = np.where(np.isin(cells[un_pos], cells[t == 0]), lacking,
                             f"no comparison row in its exact-match cell ({', '.join(strata)})").astype(object)
        options.update(estimand=estimand, exact=tuple(strata))
        diagnostics["subclasses with treated and comparison rows"] = n_sets
        if method == "subclass":
            per_cell = pd.Series(sub[keep]).groupby(cells[keep]).nunique()
            if (per_cell < subclasses).any():
                diagnostics[f"exact-match cells too small for {subclasses} subclasses (given fewer)"] = int(
                    (per_cell < subclasses).sum())

    elif method == "ebal":
        enc = encode(data, covariates, categorical)
        C, names = balance_columns(enc.X, enc.names, moments)
        cells = cell_codes()
        w_all = np.zeros(len(data))
        worst = 0.0
        for g in np.unique(cells):  # balanced within each exact-match cell (a handful) that holds both groups
            in_g = cells == g
            if t[in_g].all() or not t[in_g].any():  # (as weighting: its rows left out, its PL rows unmatched)
                continue
            ew = entropy_weights(C[in_g], t[in_g], estimand=estimand, names=names,
                                 base=analysis()[in_g] if c.weight else None)
            w_all[in_g] = ew.weight
            worst = max(worst, ew.max_imbalance)
        if not (w_all > 0).any():
            raise DesignError(f"entropy balancing: no exact-match cell ({', '.join(strata)}) holds both treated and "
                              "comparison rows")
        set_school = np.zeros(0, dtype=object)
        options.update(estimand=estimand, moments=moments, covariates=tuple(covariates), exact=tuple(strata),
                       balanced=tuple(names))
        diagnostics["largest remaining imbalance (SD)"] = worst
        rows, w, un_pos, un_reason = _weighted_rows(w_all, t, strata, diagnostics)
        sets = np.full(len(rows), -1, dtype=np.int64)

    else:  # weighting
        wt = ipw_weights(pm.ps, t, estimand=estimand, trim=trim, truncate=truncate, stabilize=stabilize)
        if not wt.keep.all():
            log.append(_entry(data, ~wt.keep, f"propensity score outside [{trim}, {1 - trim}] (trim)", "propensity score", c))
            diagnostics[TRIMMED[0]], diagnostics[TRIMMED[1]] = wt.n_trimmed_control, wt.n_trimmed_treated
            w_all = wt.weight[wt.keep]
            data, t, pm = _keep_rows(data, t, pm, wt.keep)
        else:
            w_all = wt.weight
        cells = cell_codes()
        if len(cells) and (cells != cells[0]).any():  # several exact-match cells: the weights hold them
            if not stabilize:
                raise DataError(f"stabilize=False leaves the weights unnormalized, which cannot hold the exact-match "
                                f"cells ({', '.join(strata)}): with several cells the weights are normalized within "
                                "each (leave stabilize out, or analyse one cell)")
            w_all = within_cells(w_all, t, cells, estimand, analysis=analysis() if c.weight else None)
        elif c.weight:
            w_all = within_cells(w_all, t, cells, estimand, analysis=analysis()) if stabilize else w_all * analysis()
        if not (w_all > 0).any():
            raise DesignError(f"no exact-match cell ({', '.join(strata)}) holds both treated and comparison rows")
        set_school = np.zeros(0, dtype=object)
        options.update(trim=trim, truncate=truncate, stabilize=stabilize, estimand=estimand, exact=tuple(strata))
        rows, w, un_pos, un_reason = _weighted_rows(w_all, t, strata, diagnostics)
        sets = np.full(len(rows), -1, dtype=np.int64)
        diagnostics["comparison weights truncated"] = wt.n_truncated

    if c.weight:
        if method not in ("weighting", "ebal", "subclass", "cem", "exact"):  # (those hold them already)
            w = set_analysis_weights(w, sets, t[rows] == 1, analysis()[rows])
        options["weight"] = c.weight
    if method not in ("weighting", "ebal") and n_sets == 0:
        why = pd.Series(un_reason.astype(str)).value_counts()
        raise DesignError(
            f"no treated row found a match ({len(un_pos):,} unmatched: "
            + "; ".join(f"{n:,} {reason}" for reason, n in why.items())
            + "); widen the caliper or band, relax the exact keys, or check that the groups overlap"
        )
    unmatched = pd.DataFrame({"row": data.index[un_pos], "reason": un_reason.astype(str)})
    for col in (c.student_id, c.school, c.subject, c.grade):
        if col:
            unmatched[col] = data[col].iloc[un_pos].to_numpy()
    return MatchResult(
        data=data,
        columns=c,
        method=method,
        rows=rows,
        set_id=sets,
        weight=w,
        set_school=set_school,
        unmatched=unmatched,
        exclusions=pd.DataFrame(log, columns=["reason", "column", "n_rows"]),
        excluded_pl=pl_rows_frame(log),
        options=options,
        variables=tuple(dict.fromkeys(default_vars + [x for x in covariates if x not in default_vars])),
        categorical=tuple(categorical),
        strata=tuple(strata),
        propensity=pm,
        diagnostics=diagnostics,
        subclass=subclass,
        codes=codes,
        factorized=factorized,
        id_ranks=id_ranks,
        sets=lazy,
    )


__all__ = [
    "match",
    "MatchResult",
    "EffectTable",
    "Balance",
    "balance",
    "PropensityModel",
    "fit_propensity",
    "match_nearest",
    "match_vcg",
    "match_optimal",
    "match_full",
    "subclassify",
    "cem_cells",
    "att_weights",
    "ipw_weights",
    "entropy_weights",
    "weight_summary",
    "mahalanobis_coordinates",
    "reuse_store",
    "METHODS",
]
