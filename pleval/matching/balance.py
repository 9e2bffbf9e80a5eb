"""Covariate balance before and after matching or weighting.

For each covariate (each level of a categorical one) and each pretest:

* weighted means ``x̄_g = Σ w x / Σ w`` in the treated (g = t) and comparison (g = c) groups;
* weighted variances ``s²_g = Σ w (x − x̄_g)² / (Σ w − Σ w² / Σ w)`` (the unbiased
  "reliability weights" form; unweighted it is the usual n − 1 variance);
* standardized mean difference ``SMD = (x̄_t − x̄_c) / s``, ``s`` taken from the sample
  *before* matching for both columns so that before and after differ only through the means
  (Stuart 2010): by default the pooled SD ``s = sqrt((s²_t + s²_c)/2)`` (Austin 2009); with
  ``smd="treated"`` the treated group's SD, Stuart's (2010) choice for the ATT and MatchIt's
  ``summary`` ATT default, for a binary variable ``sqrt(p_t(1 − p_t))``; with
  ``smd="pooled_p"`` (MatchIt's ATE default) the pooled SD, for a binary variable
  ``sqrt((p_t(1 − p_t) + p_c(1 − p_c))/2)``. cobalt standardizes continuous variables by the
  same SDs (treated for the ATT, pooled for the ATE) but reports a binary variable as the raw
  difference in proportions (its ``binary = "raw"`` default; ``"std"`` gives these);
  |SMD| < 0.1 is the usual rule of thumb;
* variance ratio ``VR = s²_t / s²_c`` (continuous variables; 1 is ideal, outside 0.5–2 is
  poor; Rubin 2001);
* eCDF statistics: with ``F_t``, ``F_c`` the weighted empirical CDFs, the mean and the maximum
  (the Kolmogorov–Smirnov statistic) of ``|F_t(x) − F_c(x)|`` over the distinct values ``x``
  of the sample before matching (the same grid before and after); for a binary variable both
  are ``|p_t − p_c|`` (as MatchIt's ``summary``);
* flags: ``imbalanced`` when |SMD after| > ``threshold`` (0.1), ``worse`` when |SMD| grew
  with matching and now exceeds ``threshold/2`` (so changes in the third decimal are not
  flagged).

Baseline equivalence (WWC Standards Handbook v4.1, §II.D) is judged on the pretest in the
matched sample, per outcome (per subject when the data have one): Hedges' g with the WWC
small-sample factor, ``g = ω (x̄_t − x̄_c) / s_pooled``, ``ω = 1 − 3/(4N − 9)``, group sizes
the Kish effective sizes ``(Σw)²/Σw²``; the verdict bands come from
:func:`pleval.standards.baseline_equivalence`.

Computation (:func:`balance`): every group (overall and per subject) comes from one pass over
the data. A 0/1 column (each level of a categorical variable, a 0/1 covariate) has, in a cell
(treatment × subject) with weights ``s₁`` on its ones and ``s₀`` on its zeros, mean
``s₁/(s₁ + s₀)`` and ``Σw(x − x̄)² = s₁s₀/(s₁ + s₀)``: these weights come from one bincount of
the rows' cells and digits (mixed radix over the 0/1 variables) per side, before and after.
The other columns are gathered into one matrix, rows sorted once by cell, and each cell's
moments taken in two blocked matrix-vector passes (sums relative to the cell's first row, then
centred squares); a subject's or the overall moments pool their cells' exactly (Chan, Golub &
LeVeque 1983). The eCDFs of a non-binary column are cumulated per-cell weighted histograms
over its values (for whole-number values such as pretests without sorting). A matched sample
whose rows are rows of ``before`` is passed as their positions (``rows=``), so that nothing is
copied but the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._results import Frame, ResultMixin
from ..effect_sizes import baseline_difference
from ..data import levels_in_head
from ..errors import DataError
from ..standards import baseline_equivalence, g_text
from ._design import codes_and_levels, combine_codes, is_categorical


def weighted_mean_var(x: np.ndarray, w: np.ndarray, w2: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted mean and unbiased reliability-weighted variance (as ``numpy.cov(aweights=)``);
    ``w2``: each row's sum of squared weights when a row stands for several copies (default ``w²``)."""
    m, v = weighted_moments(np.asarray(x, dtype=float)[:, None], w, w2)
    return float(m[0]), float(v[0])


def weighted_moments(X: np.ndarray, w: np.ndarray, w2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`weighted_mean_var` of every column of ``X`` at once (one matrix product each)."""
    sw = w.sum()
    if sw <= 0:
        return np.full(X.shape[1], np.nan), np.full(X.shape[1], np.nan)
    m = (w @ X) / sw
    denom = sw - (w2.sum() if w2 is not None else np.dot(w, w)) / sw
    v = (w @ (X - m) ** 2) / denom if denom > 0 else np.full(X.shape[1], np.nan)
    return m, v


def _ecdf(x: np.ndarray, w: np.ndarray, grid: np.ndarray) -> np.ndarray:
    o = np.argsort(x, kind="stable")
    cw = np.cumsum(w[o]) / w.sum()
    i = np.searchsorted(x[o], grid, side="right")
    return np.where(i > 0, cw[np.maximum(i - 1, 0)], 0.0)


def ecdf_stats(x: np.ndarray, t: np.ndarray, w: np.ndarray, binary: bool, grid: np.ndarray) -> tuple[float, float]:
    """Mean and maximum of ``|F_t − F_c|`` (weighted eCDFs) over ``grid`` (the distinct values
    of the sample before matching, before and after alike, as MatchIt's ``summary``)."""
    wt, wc = w[t].sum(), w[~t].sum()
    if not (wt > 0 and wc > 0):
        return np.nan, np.nan
    if binary:
        d = abs(np.dot(w[t], x[t]) / wt - np.dot(w[~t], x[~t]) / wc)
        return d, d
    e = np.abs(_ecdf(x[t], w[t], grid) - _ecdf(x[~t], w[~t], grid))
    return float(e.mean()), float(e.max())


SMD_DENOMINATORS = ("pooled", "treated", "pooled_p")


def _table(names, binary, mt0, vt0, mc0, vc0, mt1, vt1, mc1, vc1, e, smd: str, threshold: float) -> pd.DataFrame:
    """The balance table from the groups' moments and eCDF statistics (``e``: mean and max
    before, mean and max after)."""
    if smd == "treated":
        var0 = np.where(binary, mt0 * (1.0 - mt0), vt0)
    elif smd == "pooled_p":  # MatchIt's ATE: p(1 − p) for binaries
        var0 = np.where(binary, (mt0 * (1.0 - mt0) + mc0 * (1.0 - mc0)) / 2.0, (vt0 + vc0) / 2.0)
    else:
        var0 = (vt0 + vc0) / 2.0
    sd0 = np.sqrt(var0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame({
            "variable": names,
            "binary": binary,
            "mean_treated_before": mt0,
            "mean_comparison_before": mc0,
            "smd_before": np.where(sd0 > 0, (mt0 - mc0) / sd0, np.nan),
            "var_ratio_before": np.where(binary, np.nan, vt0 / vc0),
            "mean_treated_after": mt1,
            "mean_comparison_after": mc1,
            "smd_after": np.where(sd0 > 0, (mt1 - mc1) / sd0, np.nan),
            "var_ratio_after": np.where(binary, np.nan, vt1 / vc1),
            "ecdf_mean_before": e[:, 0],
            "ecdf_max_before": e[:, 1],
            "ecdf_mean_after": e[:, 2],
            "ecdf_max_after": e[:, 3],
        })
    b, a = out["smd_before"].abs(), out["smd_after"].abs()
    out["imbalanced"] = a > threshold
    out["worse"] = (a > b) & (a > threshold / 2)
    return out


_BLOCK = 1 << 16  # rows per block of the moment passes (bounds their temporary)


def _first_appearance(codes: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes over sorted levels renumbered by first appearance (``pd.factorize``'s order; ``-1``
    stays), with the levels that occur in that order: read from the first rows when every level
    that occurs is among them (a subject's), else from each level's first row."""
    seq = levels_in_head(codes, len(levels))
    if seq is None:  # some level only later
        ok = codes >= 0
        first = np.full(len(levels), len(codes))
        np.minimum.at(first, codes[ok], np.flatnonzero(ok))  # each level's first row
        present = np.flatnonzero(first < len(codes))
        seq = present[np.argsort(first[present], kind="stable")]
    table = np.full(len(levels) + 1, -1, np.intp)
    table[seq] = np.arange(len(seq))
    return table[codes], levels[seq]


def _group_codes(before: pd.DataFrame, after: pd.DataFrame, by: str | None, rows, known=None):
    """Each row's group: 0 … G−1 the values of ``by`` in order of first appearance in ``before``
    (as ``pd.unique``), G for rows in none (a missing ``by``, or a value absent from ``before``);
    and the G labels. ``known``: ``before[by]``'s codes over sorted levels, if computed."""
    if by is None:
        return np.zeros(len(before), np.intp), np.zeros(len(after), np.intp), []
    gb, labels = pd.factorize(before[by], use_na_sentinel=True) if known is None else _first_appearance(*known)
    G = len(labels)
    gb = np.where(gb < 0, G, gb)
    if rows is not None:
        return gb, gb[rows], [str(g) for g in labels]
    ga, own = pd.factorize(after[by], use_na_sentinel=True)
    ga = np.append(pd.Index(labels).get_indexer(own), -1)[ga]
    return gb, np.where(ga < 0, G, ga), [str(g) for g in labels]


def _numeric(s: pd.Series) -> np.ndarray:
    """A numeric column's values: numpy integers as they are (read as float where gathered), the
    rest as float (NaN where missing or not a number)."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":
        return s.to_numpy()
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _by_level(s: pd.Series, name: str, categorical) -> bool:
    """Whether variable ``name`` (values ``s``) is balanced level by level: a categorical one, but
    not a True/False flag (as Parquet and Stata files store a 0/1 one), which is the 0/1 number
    unless ``categorical`` names it."""
    return name in categorical or (is_categorical(s) and not pd.api.types.is_bool_dtype(s.dtype))


def _columns(before: pd.DataFrame, after: pd.DataFrame | None, variables, categorical, pretest, codes=None):
    """The balance columns: per variable a numeric column or one 0/1 column per level of its
    sorted levels in ``before`` (``after``'s values matched to them by name, ``c[level]``),
    then ``pretest`` unless it is a numeric variable. Returns the variables' specs ``(name,
    column or None, levels, first level column, codes in before)``, the pretest's column, and
    per column its values in ``before`` and in ``after`` (None: ``after``'s rows are rows of
    ``before``): an array, or (codes, level). ``codes``: ``before``'s columns already coded,
    as :func:`balance`'s."""
    specs, src_b, src_a = [], [], []
    known = codes
    for c in variables:
        if _by_level(before[c], c, categorical):
            codes, levels = codes_and_levels(before[c], (known or {}).get(c))
            if after is None:
                codes_a = codes
            elif _by_level(after[c], c, categorical):
                own, own_levels = codes_and_levels(after[c])
                pos = {f"{c}[{lev}]": j for j, lev in enumerate(levels)}
                codes_a = np.array([pos.get(f"{c}[{lev}]", -1) for lev in own_levels] + [-1], dtype=np.int64)[own]
            else:  # no level of it in after
                codes_a = np.full(len(after), -1, np.int64)
            specs.append((c, None, levels, len(src_b), codes))
            src_b += [(codes, j) for j in range(len(levels))]
            src_a += [(codes_a, j) for j in range(len(levels))]
        else:
            specs.append((c, len(src_b), None, None, None))
            src_b.append(_numeric(before[c]))
            src_a.append(src_b[-1] if after is None else np.zeros(len(after))
                         if _by_level(after[c], c, categorical) else _numeric(after[c]))
    jp = next((j for c, j, *_ in specs if c == pretest and j is not None), None)
    if pretest is not None and jp is None:
        jp = len(src_b)
        src_b.append(_numeric(before[pretest]))
        src_a.append(src_b[-1] if after is None else _numeric(after[pretest]))
    return specs, jp, src_b, src_a


def _matrix(sources, order: np.ndarray) -> np.ndarray:
    """The columns, rows in ``order``, as one n × p float matrix (column-major: filled and
    read column by column); a categorical variable's codes are gathered once for its levels."""
    X = np.empty((len(order), len(sources)), order="F")
    gathered = {}
    for j, s in enumerate(sources):
        if isinstance(s, tuple):
            if id(s[0]) not in gathered:
                gathered[id(s[0])] = s[0][order]
            np.equal(gathered[id(s[0])], s[1], out=X[:, j], casting="unsafe")
        elif s.dtype == X.dtype:
            np.take(s, order, out=X[:, j], mode="clip")  # ("raise" would buffer)
        else:  # integers
            X[:, j] = s[order]
    return X


def _cell_sums(X: np.ndarray, w: np.ndarray, w2: np.ndarray, a: int, b: int):
    """``(x̄, Σw(x − x̄)², Σw, Σw²)`` of every column over rows ``a:b``: two passes in blocks of
    rows, each one matrix-vector product per block; the first sums the values less the first
    row's (so a constant column's mean is exact and its squares zero), the second the centred
    squares."""
    p = X.shape[1]
    s0, s2 = w[a:b].sum(), w2[a:b].sum()
    if not s0 > 0:
        return np.full(p, np.nan), np.zeros(p), s0, s2
    x0 = np.where(np.isfinite(X[a]), X[a], 0.0)
    blocks = [(i, X[i:min(i + _BLOCK, b)]) for i in range(a, b, _BLOCK)]
    m = x0 + sum((w[i:i + len(B)] @ (B - x0) for i, B in blocks), np.zeros(p)) / s0
    q = np.zeros(p)
    for i, B in blocks:
        D = B - m
        D *= D
        q += w[i:i + len(D)] @ D
    return m, q, s0, s2


def _zero_one(x: np.ndarray) -> bool:
    """Every value is 0 or 1 (none missing)."""
    return bool(((x == 0) | (x == 1)).all())


_COUNT_BINS = 1 << 16  # the most (cell, values) bins of one bincount in :func:`_count_moments`


def _count_digits(sources, counted) -> list[tuple[np.ndarray, list]]:
    """The counted (0/1) columns as digits of mixed-radix row keys, for :func:`_count_moments`:
    per batch of variables (a categorical variable's levels share its codes, digit code + 1,
    0 for missing; a 0/1 column is its own variable, digit x), the key of every row and the
    batch's layout, per variable its radix and its columns with the digit of their ones."""
    variables: dict = {}
    for j in np.flatnonzero(counted):
        s = sources[j]
        if isinstance(s, tuple):
            v = variables.setdefault(id(s[0]), [s[0], 0, []])
            v[1] = max(v[1], int(s[1]) + 2)
            v[2].append((j, int(s[1]) + 1))
        else:
            variables[j] = [s, 2, [(j, 1)]]
    batches, key, layout, size = [], None, [], 1
    for values, radix, cols in variables.values():
        if layout and size * radix > _COUNT_BINS:
            batches.append((key, layout))
            key, layout, size = None, [], 1
        digit = values + 1 if isinstance(sources[cols[0][0]], tuple) else values == 1
        key = digit.astype(np.intp) if key is None else key * radix + digit
        layout.append((radix, cols))
        size *= radix
    if layout:
        batches.append((key, layout))
    return batches


def _count_moments(batches, p: int, cell: np.ndarray, n_cells: int, w: np.ndarray | None = None,
                   rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per cell and 0/1 column (those of ``batches``, :func:`_count_digits`; the others NaN,
    of ``p``): the weighted mean and ``Σw(x − x̄)²``, as :func:`_cell_sums` gives them, from the
    weights of the column's ones and zeros in the cell, ``s₁`` and ``s₀``: ``x̄ = s₁/(s₁ + s₀)``
    and ``Σw(x − x̄)² = s₁s₀/(s₁ + s₀)``, exact up to the rounding of the sums (a column
    constant in a cell gets its value and 0; a cell without weight NaN and 0). The weights of
    every (cell, digits) combination are one bincount over the rows in their order (``w``,
    default 1: counts before matching), summed over the other variables' digits. ``cell``
    and ``w`` are per row of ``rows`` (the rows of the keys they describe; default all)."""
    ones, zeros = np.full((n_cells, p), np.nan), np.full((n_cells, p), np.nan)
    for key, layout in batches:
        size = int(np.prod([radix for radix, _ in layout]))
        k = cell * size
        k += key if rows is None else key[rows]
        T = np.bincount(k, w, n_cells * size).reshape(n_cells, *[radix for radix, _ in layout])
        for i, (_, cols) in enumerate(layout):
            bins = T.sum(axis=tuple(a for a in range(1, T.ndim) if a != i + 1)) if T.ndim > 2 else T
            for j, one in cols:
                ones[:, j] = bins[:, one]
                zeros[:, j] = np.delete(bins, one, axis=1).sum(axis=1)
    s0 = ones + zeros
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(s0 > 0, ones / s0, np.nan)
        q = np.where(s0 > 0, ones * zeros / s0, 0.0)
    return m, q


def _with_counted(sums, counted: tuple[np.ndarray, np.ndarray], c: int, mat: list[int]):
    """A cell's :func:`_cell_sums` of the gathered columns ``mat`` completed with the moments
    of the counted columns (:func:`_count_moments`)."""
    m_mat, q_mat, s0, s2 = sums
    m, q = counted[0][c].copy(), counted[1][c].copy()
    m[mat], q[mat] = m_mat, q_mat
    return m, q, s0, s2


def _pool(cells):
    """Mean, reliability-weighted variance, Σw and Σw² of the union of cells from their
    :func:`_cell_sums` (Chan, Golub & LeVeque 1983: within-cell squares plus each cell's weight
    times its mean's squared distance to the union's, the union's mean taken relative to the
    first cell's so that a constant column stays exact); NaN as :func:`weighted_moments`."""
    s0, s2 = sum(c[2] for c in cells), sum(c[3] for c in cells)
    on = [c for c in cells if c[2] > 0]
    if not on:
        return np.full(len(cells[0][0]), np.nan), np.full(len(cells[0][0]), np.nan), s0, s2
    if len(on) == 1:
        m, q = on[0][0], on[0][1]
    else:
        x0 = on[0][0]
        m = x0 + sum(c[2] * (c[0] - x0) for c in on) / s0
        q = sum(c[1] + c[2] * (c[0] - m) ** 2 for c in on)
    denom = s0 - s2 / s0
    return m, (q / denom if denom > 0 else np.full(len(m), np.nan)), s0, s2


def _value_codes(x: np.ndarray, y: np.ndarray):
    """Ascending candidate values ``u`` (NaN last), each value of ``x``'s index in ``u``, and
    for each value of ``y`` the index of the first candidate not below it (``len(u)``: above
    them all). The candidates are the whole range from min to max of ``x`` when its values are
    whole numbers in a range no longer than their count (pretests: no sort, and ``y``'s
    indices by subtraction when they are whole numbers too), else its distinct values."""
    if len(x) and np.isfinite(x).all():
        lo, hi = x.min(), x.max()
        if hi - lo <= len(x) + 1024:
            k = x - lo
            ki = k.astype(np.intp)
            if np.array_equal(ki, k):
                u = lo + np.arange(int(hi - lo) + 1)
                if np.isfinite(y).all():
                    ky = np.clip(y - lo, 0, len(u))  # below lo: index 0; above hi: len(u)
                    kyi = ky.astype(np.intp)
                    if np.array_equal(kyi, ky):
                        return u, ki, kyi
                return u, ki, np.searchsorted(u, y, side="left")
    u, k = np.unique(x, return_inverse=True)
    return u, k.reshape(-1), np.searchsorted(u, y, side="left")


def _ecdf_gap(h: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """Mean and max of |F_t − F_c| at the ``grid`` positions, from the weighted histograms
    ``h`` (comparison, treated) over the candidate values (last bin: above them all)."""
    tot = h.sum(axis=1)
    if not (tot > 0).all():
        return np.nan, np.nan
    F = np.cumsum(h[:, :-1], axis=1) / tot[:, None]
    e = np.abs(F[1] - F[0])[grid]
    return float(e.mean()), float(e.max())


def _tables(before, after, treatment, variables, pretest, *, by, weight, weight2, categorical, smd, threshold,
            rows=None, skip_single=True, codes=None, strata=()):
    """(group, table, WWC-equivalence dict or None) for "all" and each group of ``by``.

    One pass serves every group: the 0/1 columns' cell moments come from weighted counts
    (:func:`_count_moments`); for the others the rows are sorted by cell (treatment × group; a
    stable sort of small integers) and the columns gathered into one matrix in that order, so
    that each cell is a block of rows whose moments take two matrix-vector passes
    (:func:`_cell_sums`); a group's, and "all"'s, are pooled from its cells (:func:`_pool`).
    The eCDFs of a non-binary column come from per-cell weighted histograms over its
    candidate values, cumulated and read at the group's grid (the distinct values of its rows
    before matching)."""
    gb, ga, labels = _group_codes(before, after, by, rows, (codes or {}).get(by))
    G = len(labels)
    tb = before[treatment].to_numpy().astype(bool)
    ta = tb[rows] if rows is not None else after[treatment].to_numpy().astype(bool)
    wa = after[weight].to_numpy(dtype=float)
    wa2 = wa**2 if weight2 is None else after[weight2].to_numpy(dtype=float)
    specs, jp, src_b, src_a = _columns(before, None if rows is not None else after, variables, categorical, pretest, codes)
    if pretest is not None:  # the pretest's after rows (in their order), for the equivalence
        x_eq = src_b[jp][rows] if rows is not None else src_a[jp]
        cells_eq = None if not len(strata) else (combine_codes(before, list(strata), codes)[rows] if rows is not None
                                                 else combine_codes(after, list(strata)))
        w_eq, w2_eq = wa, wa2
        if G:  # the rows by group, each group's in their order (a stable sort): its positions are a slice of them
            by_group = np.argsort(ga.astype(np.int16) if G < 2**15 else ga, kind="stable")
            at_eq = np.concatenate([[0], np.cumsum(np.bincount(ga, minlength=G + 1))])
    n_cells = 2 * (G + 1)
    cb, ca = (tb * (G + 1) + gb).astype(np.intp), (ta * (G + 1) + ga).astype(np.intp)

    def in_groups(codes, size, g_rows):  # (G + 1) × size presence: row 0 "all", then each group
        pres = np.bincount(g_rows * size + codes, minlength=(G + 1) * size).reshape(G + 1, size) > 0
        return np.vstack([pres.any(axis=0), pres[:G]])

    nonbin, present = {}, {}  # per column: is it non-binary (0/1 where finite) in each group before
    counted = [isinstance(x, tuple) for x in src_b]  # 0/1 in before and after: moments from weighted counts
    for name, j, levels, _, codes in specs:
        if j is not None:
            x = src_b[j]
            if x.dtype.kind in "iu":  # integers: no pass at all when they lie in [0, 1]
                finite_all = True
                bad = None if not len(x) or (x.min() >= 0 and x.max() <= 1) else (x != 0) & (x != 1)
            else:
                finite = np.isfinite(x)
                finite_all, bad = bool(finite.all()), finite & (x != 0) & (x != 1)
            nonbin[j] = (np.zeros(G + 1, bool) if bad is None else
                         in_groups(np.zeros(int(bad.sum()), np.intp), 1, gb[bad])[:, 0])
            counted[j] = not nonbin[j][0] and finite_all and (src_a[j] is x or _zero_one(src_a[j]))
        else:
            ok = codes >= 0
            present[name] = in_groups(codes[ok], len(levels), gb[ok])
    mat = [j for j in range(len(src_b)) if not counted[j]]  # the columns gathered into matrices
    at = np.full(len(src_b), -1)
    at[mat] = np.arange(len(mat))
    digits = _count_digits(src_b, counted)
    count_b = _count_moments(digits, len(src_b), cb, n_cells)
    count_a = _count_moments(digits if rows is not None else _count_digits(src_a, counted), len(src_b), ca, n_cells,
                             wa, rows)
    ob, oa = np.argsort(cb.astype(np.int16), kind="stable"), np.argsort(ca.astype(np.int16), kind="stable")
    bb = np.concatenate([[0], np.cumsum(np.bincount(cb, minlength=n_cells))])
    ba = np.concatenate([[0], np.cumsum(np.bincount(ca, minlength=n_cells))])
    Xb = _matrix([src_b[j] for j in mat], ob)
    Xa = _matrix([src_a[j] for j in mat], oa if rows is None else rows[oa])
    wa, wa2 = wa[oa], wa2[oa]
    cb, ca = cb[ob], ca[oa]
    del ob, oa, gb  # (each row-long, of every row before matching: freed as soon as read, 10M rows 0.22 GB)
    ones = np.ones(len(before))
    sums_b = [_with_counted(_cell_sums(Xb, ones, ones, bb[c], bb[c + 1]), count_b, c, mat) for c in range(n_cells)]
    del ones
    sums_a = [_with_counted(_cell_sums(Xa, wa, wa2, ba[c], ba[c + 1]), count_a, c, mat) for c in range(n_cells)]

    t_codes, t_levels = codes_and_levels(before[treatment] if rows is not None else after[treatment])  # counted only
    t_codes = t_codes[rows] if rows is not None else t_codes
    ok = t_codes >= 0
    n_t = in_groups(t_codes[ok], max(len(t_levels), 1), ga[ok]).sum(axis=1)
    n_rows = np.bincount(ga, minlength=G + 1)
    n_rows = np.concatenate([[len(after)], n_rows[:G]])
    ecdf = {}  # column → per group ((mean, max) before, (mean, max) after)
    for j, nb in nonbin.items():
        if not nb.any():
            continue
        u, kb, ka = _value_codes(Xb[:, at[j]], Xa[:, at[j]])
        D = len(u)
        grid = in_groups(kb, D, cb % (G + 1))
        hb = np.bincount(cb * (D + 1) + kb, minlength=n_cells * (D + 1)).reshape(2, G + 1, D + 1).astype(float)
        ha = np.bincount(ca * (D + 1) + ka, weights=wa, minlength=n_cells * (D + 1)).reshape(2, G + 1, D + 1)
        ecdf[j] = [(_ecdf_gap(h0, grid[r]), _ecdf_gap(h1, grid[r])) for r, (h0, h1) in
                   enumerate(zip([hb.sum(axis=1), *hb.transpose(1, 0, 2)[:G]], [ha.sum(axis=1), *ha.transpose(1, 0, 2)[:G]]))]
    del Xb, Xa, cb, ca, wa, wa2  # the rows in cell order: not read by the tables and equivalence below
    out = []
    for r, name in enumerate(["all", *labels]):
        if skip_single and (not n_rows[r] or n_t[r] < 2):
            continue
        # the group's cells (comparison, treated), or every group's for "all"
        cells = [range(t * (G + 1), (t + 1) * (G + 1)) if r == 0 else [t * (G + 1) + r - 1] for t in (0, 1)]
        (mc0, vc0, _, _), (mt0, vt0, _, _) = (_pool([sums_b[c] for c in cs]) for cs in cells)
        (mc1, vc1, s0c, s2c), (mt1, vt1, s0t, s2t) = (_pool([sums_a[c] for c in cs]) for cs in cells)
        cols, names, binary = [], [], []
        for v, j, levels, first, _ in specs:
            if j is not None:
                cols.append(j)
                names.append(v)
                binary.append(not nonbin[j][r])
            else:  # a two-level variable is its second level alone (as a 0/1 one; cobalt's "if2")
                on = np.flatnonzero(present[v][r]) if len(levels) != 2 else [1] * bool(present[v][r].any())
                cols += list(first + np.array(on, dtype=np.intp))
                names += [f"{v}[{levels[i]}]" for i in on]
                binary += [True] * len(on)
        cols, binary = np.array(cols, dtype=np.intp), np.array(binary, dtype=bool)
        e = np.empty((len(cols), 4))
        for i, (j, bi) in enumerate(zip(cols, binary)):
            if bi:  # both statistics are |p_t − p_c|
                e[i] = [abs(mt0[j] - mc0[j])] * 2 + [abs(mt1[j] - mc1[j])] * 2
            else:
                e[i] = [*ecdf[j][r][0], *ecdf[j][r][1]]
        tab = _table(names, binary, mt0[cols], vt0[cols], mc0[cols], vc0[cols], mt1[cols], vt1[cols],
                     mc1[cols], vc1[cols], e, smd, threshold)
        eq = None
        if pretest is not None:
            m = slice(None) if r == 0 else by_group[at_eq[r - 1] : at_eq[r]]
            eq = _equivalence(pretest, x_eq[m], ta[m], w_eq[m], w2_eq[m], None if cells_eq is None else cells_eq[m])
        out.append((name, tab, eq))
    return out


def check_threshold(threshold) -> float:
    """``threshold`` as a float, or a :class:`DataError`: the |SMD| above which a row is flagged
    must be a positive number (a string compared with the SMDs raised a numpy TypeError, and a
    negative or NaN one flagged every row or none)."""
    ok = isinstance(threshold, (int, float, np.integer, np.floating)) and not isinstance(threshold, (bool, np.bool_))
    if not ok or not 0 < float(threshold) < np.inf:
        raise DataError(f"threshold (the |SMD| above which balance is flagged) must be a positive number, e.g. 0.1; "
                        f"got {threshold!r}")
    return float(threshold)


def balance_table(before: pd.DataFrame, after: pd.DataFrame, treatment: str, variables, *, weight: str = "_weight",
                  categorical=(), smd: str = "pooled", threshold: float = 0.1, weight2: str | None = None) -> pd.DataFrame:
    """SMDs, variance ratios and eCDF statistics before (unweighted ``before`` rows) and after
    (``after`` rows weighted by ``weight``), with the flags; one row per variable or
    categorical level (a True/False flag is 0/1, a two-level variable its second level). ``weight2``: a column with each ``after`` row's sum of squared weights,
    when a row stands for several weighted copies (a comparison student reused by several
    matched sets, merged: the same means, variances and eCDFs)."""
    return _tables(before, after, treatment, variables, None, by=None, weight=weight, weight2=weight2,
                   categorical=categorical, smd=smd, threshold=check_threshold(threshold), skip_single=False)[0][1]


EQUIVALENCE_COLUMNS = ["pretest", "mean_treated", "mean_comparison", "difference", "sd", "hedges_g",
                       "n_eff_treated", "n_eff_comparison", "wwc_baseline_equivalence", "wwc_with_pretest_in_model"]
""":func:`pretest_equivalence`'s keys (``difference`` and ``sd``: what ``hedges_g`` divides, the
difference within exact-match cells averaged, and by what)."""


def _equivalence(pretest: str, x, t, w, w2, cells) -> dict:
    bd = baseline_difference(x, t, weights=w, strata=cells, weights2=w2)
    return dict(zip(EQUIVALENCE_COLUMNS, (pretest, bd.mean_treated, bd.mean_control, bd.difference, bd.sd, bd.g,
                                          bd.n_treated, bd.n_control, baseline_equivalence(bd.g),
                                          baseline_equivalence(bd.g, adjusted=True))))


def pretest_equivalence(after: pd.DataFrame, treatment: str, pretest: str, *, weight: str = "_weight",
                        weight2: str | None = None, strata=()) -> dict:
    """Hedges g of the pretest in the matched sample and the WWC verdicts (``weight2`` as in
    :func:`balance_table`). ``strata``: the exact-match columns (grade, subject): the difference
    is taken within their cells, averaged, and standardized by the SD pooled within them, the
    impact's yardstick (:func:`pleval.effect_sizes.baseline_difference`)."""
    t = after[treatment].to_numpy().astype(bool)
    w = after[weight].to_numpy(dtype=float)
    w2 = w**2 if weight2 is None else after[weight2].to_numpy(dtype=float)
    cells = combine_codes(after, list(strata)) if len(strata) else None
    return _equivalence(pretest, after[pretest].to_numpy(dtype=float), t, w, w2, cells)


@dataclass(frozen=True, repr=False)
class Balance(ResultMixin):
    """Balance table (``table``; per subject when ``by`` is set) and the WWC baseline
    equivalence of the pretest per outcome (``equivalence``)."""

    table: pd.DataFrame = Frame()
    equivalence: pd.DataFrame = Frame()
    threshold: float = 0.1

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def summary(self) -> str:
        t = self.table
        lines = ["Balance (SMD = standardized mean difference; VR = variance ratio; eCDF max = KS statistic)"]
        shown = t.copy()
        shown["flag"] = np.where(t["imbalanced"], "|SMD|>" + f"{self.threshold:g}", "") + np.where(
            t["worse"], np.where(t["imbalanced"], ", worse", "worse"), "")
        cols = [c for c in ("group", "variable", "smd_before", "smd_after", "var_ratio_before", "var_ratio_after",
                            "ecdf_mean_after", "ecdf_max_after", "flag") if c in shown]
        lines.append(shown[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
        name = (t["group"].astype(str) + ": " if "group" in t else "") + t["variable"].astype(str)
        bad = t["imbalanced"].to_numpy(dtype=bool)
        lines.append(
            f"{int(bad.sum())} of {len(t)} rows have |SMD| > {self.threshold} after matching"
            + (": " + ", ".join(name[bad].head(8)) if bad.any() else "")
        )
        worse = t["worse"].to_numpy(dtype=bool)
        if worse.any():
            lines.append(
                f"{int(worse.sum())} got worse with matching (|SMD| grew, now above {self.threshold / 2:g}): "
                + ", ".join(f"{n} {b:+.3f} -> {a:+.3f}" for n, b, a in
                            zip(name[worse].head(8), t["smd_before"][worse], t["smd_after"][worse]))
            )
        if len(self.equivalence):
            lines.append("WWC baseline equivalence on the pretest (matched sample):")
        for r in self.equivalence.itertuples():
            grp = f"{r.group}: " if hasattr(r, "group") else ""
            lines.append(
                f"  {grp}{r.pretest} g = {g_text(r.hedges_g, signed=True)} -> {r.wwc_baseline_equivalence}"
                f" (with the pretest in the impact model: {r.wwc_with_pretest_in_model})"
            )
        return "\n".join(lines)


def balance(before: pd.DataFrame, after: pd.DataFrame, treatment: str, variables, pretest: str | None, *,
            by: str | None = None, weight: str = "_weight", categorical=(), threshold: float = 0.1,
            smd: str = "pooled", weight2: str | None = None, rows: np.ndarray | None = None, codes=None,
            strata=()) -> Balance:
    """Balance of ``variables`` before/after and WWC equivalence of ``pretest``, overall and,
    with ``by`` (e.g. the subject column), within each group (groups whose ``after`` rows lack
    a treated or a comparison row are left out). ``smd``: "pooled" (default), "treated"
    (MatchIt's ATT standardization) or "pooled_p" (MatchIt's ATE one) SMD denominator;
    ``weight2``: see :func:`balance_table`. ``rows``: when ``after``'s rows are rows of
    ``before`` (a matched sample), their positions in ``before``; ``after`` then needs only
    the weight columns, everything else is read from ``before``. ``codes``: ``{column: (codes,
    levels)}`` of ``before``'s categorical columns already coded (levels sorted; as
    :func:`pleval.matching._design.codes_and_levels`), used with ``rows``. ``strata``: the
    exact-match columns (grade, subject), within which the pretest's equivalence g is taken
    (:func:`pretest_equivalence`)."""
    if smd not in SMD_DENOMINATORS:
        raise DataError(f"smd must be one of {SMD_DENOMINATORS}; got {smd!r}")
    threshold = check_threshold(threshold)
    parts = _tables(before, after, treatment, variables, pretest, by=by, weight=weight, weight2=weight2,
                    categorical=categorical, smd=smd, threshold=threshold,
                    rows=None if rows is None else np.asarray(rows, dtype=np.intp), codes=None if rows is None else codes,
                    strata=strata)
    # "all", then the groups sorted by name (not in the data's order: the table is the same for any row order)
    parts = sorted(parts, key=lambda p: (p[0] != "all", str(p[0])))
    tabs = [tab.assign(group=name)[["group", *tab.columns]] for name, tab, _ in parts]
    eqs = [{"group": name, **eq} for name, _, eq in parts if eq is not None]
    return Balance(pd.concat(tabs, ignore_index=True), pd.DataFrame(eqs, columns=["group", *EQUIVALENCE_COLUMNS]),
                   threshold)  # (empty without a pretest)
