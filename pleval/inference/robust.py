"""Least squares with heteroskedasticity- and cluster-robust covariance.

Model ``y = Xβ + ε`` fitted by (weighted) least squares, ``β̂ = M X'Wy`` with
``M = (X'WX)⁻¹``. With weights the model is transformed, ``X̃ = W^{1/2}X``,
``ẽ = W^{1/2}e``, and everything below applies to the transformed model.

Cluster-robust covariance (Liang & Zeger 1986), clusters g = 1..G::

    V = M [Σ_g X̃_g' A_g ẽ_g ẽ_g' A_g X̃_g] M

* CR0: ``A_g = I``.
* CR1: CR0 × G/(G−1) · (n−1)/(n−k) with G − 1 df (Stata's ``vce(cluster)``; ``cluster_df="G-1"``,
  the default), or CR0 × G/(G−k) with G − k df (``cluster_df="G-p"``: metafor's
  ``robust(..., adjust=TRUE)``, Hedges, Tipton & Johnson 2010). CR0 takes the df of the same
  convention.
* CR2: ``A_g = (I − H_gg)^{−1/2}``, ``H_gg = X̃_g M X̃_g'`` (Bell & McCaffrey 2002; the
  Moore–Penrose inverse root where ``I − H_gg`` is singular, as clubSandwich),
  with Satterthwaite degrees of freedom for each coefficient/contrast
  (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, working model Φ = I).

HC (each observation its own cluster): HC0/HC1 (× n/(n−k)) with n − k df; HC2 with
``(1 − h_ii)^{−1}`` (MacKinnon & White 1985) with Bell & McCaffrey's (2002) Satterthwaite df of
each contrast (:func:`hc2_df`; Imbens & Kolesár 2016).

**No n×n or n_g×n_g matrix is formed.** With ``S_g = X̃_g'X̃_g`` and ``u_g = X̃_g'ẽ_g``
(k×k and k, accumulated for all clusters in one pass) and ``M = LL'``, the non-zero
eigenvalues of ``H_gg`` are those of ``C_g = L'S_gL = W_g diag(λ) W_g'`` and, writing
``f(λ) = (1−λ)^{−1/2} − 1`` and ``F_g = W_g diag(f(λ)/λ) W_g'``,

    X̃_g' A_g ẽ_g = u_g + S_g L F_g L' u_g.

For the Satterthwaite df of contrast c, ``p_g = A_g X̃_g M c = X̃_g a_g`` with
``a_g = Mc + L F_g L' S_g M c``; then with ``z_g = S_g a_g``, ``s_g = a_g' S_g a_g``
and ``Z = [z_g]``, ``ν = (Σ s_g − tr(MZ'Z))² / (Σ s_g² − 2 Σ s_g z_g'Mz_g + ‖MZ'Z‖²_F)``,
since ``q_g'q_h = δ_gh s_g − z_g'Mz_h`` for ``q_g = (I−H)_{·g} p_g``. All of this is
batched over clusters (numpy stacked ``eigh``); memory is O(G·k²).

Weighted CR2 comes in two forms (``cr2=``); without weights, or with one weight for all rows,
they coincide (weights constant within each cluster but different between clusters are not
enough: ``(I − H)(I − H)'`` then differs from ``I − H̃``). Both make ``V`` unbiased under their working model; they differ
in where ``A_g`` is symmetrized:

* ``"transformed"`` (default): CR2 of the √W-transformed model above, ``A_g`` symmetric in the
  transformed metric; working model ``Var(e) ∝ W⁻¹`` (precision weights).
* ``"clubsandwich"``: clubSandwich's CR2 for a weighted ``lm`` (its default target, working
  model ``Φ = I``; Pustejovsky & Tipton 2018, eq. 5): ``A_g = B_g^{+1/2}`` inverted,
  ``B_g = [(I − H)(I − H)']_gg`` with the weighted hat ``H = X M X'W``, and
  ``V = M [Σ_g X_g'W_g A_g e_g e_g' A_g W_g X_g] M`` on the raw residuals. With
  ``U_g = [X_g, W_gX_g]`` and ``N = [[−M X'W²X M, M], [M, 0]]``, ``B_g = I − U_g N U_g'``,
  so ``B_g^{-1/2} = I + U_g Γ_g U_g'`` from two batched 2k×2k eigen-decompositions.

Both reduce to one representation used for the Satterthwaite df and the HTZ test
(:mod:`pleval.inference.wald`): a basis ``U_g`` (``X̃_g``, or ``[X_g, W_gX_g]``) with Gram
``T_g = U_g'U_g``, ``A_g = I + U_g Γ_g U_g'`` on it, and ``q_g'q_h = δ_gh h_g'T_gh_g − z_g'N z_h``
with ``z_g = T_g h_g`` (``N = M`` for the transformed form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import linalg

from .._results import ResultMixin, t_interval
from ..errors import DataError, DesignError

VcovType = Literal["CR2", "CR1", "CR0", "HC2", "HC1", "HC0", "classical"]
Cr2Form = Literal["transformed", "clubsandwich"]
CR2_FORMS = ("transformed", "clubsandwich")
_CLUSTER_TYPES = ("CR0", "CR1", "CR2")
_HC_TYPES = ("HC0", "HC1", "HC2")


CLUSTER_DF = ("G-1", "G-p")
VCOV_TYPES = ("CR2", "CR1", "CR0", "HC2", "HC1", "HC0", "classical")
DF_WORKING = ("independent", "random_effects")


def default_vcov(design: str, school) -> str:
    """The covariance an analysis takes when none is given: CR2 by school for a matched
    comparison with a school column and a cluster-randomized trial, CR1 by student for a matched
    comparison without one, HC2 for a trial that randomized students (individual, blocked)."""
    if design == "matched":
        return "CR2" if school else "CR1"
    return "CR2" if design == "cluster" else "HC2"


def check_conventions(cluster_df: str, cr2: str) -> None:
    """A :class:`DataError` naming the option unless ``cluster_df`` and ``cr2`` are conventions
    of :func:`ols` (``"G-1"``/``"G-p"``; ``"transformed"``/``"clubsandwich"``)."""
    if cluster_df not in CLUSTER_DF:
        raise DataError(f"cluster_df must be 'G-1' or 'G-p' (Stata's or metafor's robust() convention); got {cluster_df!r}")
    if cr2 not in CR2_FORMS:
        raise DataError(f"cr2 must be one of {CR2_FORMS}; got {cr2!r}")


def convention_label(vcov: str, cluster_df: str, cr2: str, weighted: bool) -> str:
    """How the conventions change ``vcov``, for labels: ``", df G-p"`` for CR1/CR0 under
    ``cluster_df="G-p"``, ``", clubSandwich form"`` for a weighted CR2 under ``cr2="clubsandwich"``."""
    if vcov in ("CR1", "CR0") and cluster_df == "G-p":
        return ", df G-p"
    if vcov == "CR2" and weighted and cr2 == "clubsandwich":
        return ", clubSandwich form"
    return ""


def _as_2d(X) -> tuple[np.ndarray, list[str]]:
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=float)
    else:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        names = [f"x{j}" for j in range(X.shape[1])]
    return X, names


def cluster_codes(clusters) -> tuple[np.ndarray, int]:
    """Integer codes 0..G−1 for any cluster labels, and G."""
    codes, uniques = pd.factorize(pd.Series(clusters).to_numpy(), sort=False)
    if np.any(codes < 0):
        raise DataError(f"cluster ids: {int((codes < 0).sum())} row(s) have a missing cluster id")
    return codes.astype(np.intp), len(uniques)


_TILE_COST = {32: 1.0, 16: 1.5, 8: 2.2, 4: 4.0, 2: 10.0, 1: 25.0}
"""Relative cost per row of a batched ``matmul`` over tiles of b rows (measured, one BLAS thread)."""
_CHUNK_ROWS = 1 << 12
"""Rows gathered or read at a time by :func:`grouped_cross_products`, :func:`_gram` and
:func:`_residuals`: bounded memory, and buffers that stay in a core's cache (4,096 rows of 17
columns are 0.56 MB; 65,536-row blocks, 8.9 MB, made these passes 1.4-1.7x slower)."""


def _packed_sort(key: np.ndarray, top: int) -> tuple[np.ndarray, int] | None:
    """``key · 2^b + position`` of non-negative integers (at most ``top``), sorted (``b`` bits of a
    position), and ``b``; None when a key and its position do not fit in 63 bits. The packed
    values are distinct and ordered by (key, position): their high bits are the keys sorted, their
    low bits the stable order (one sort of int64 however wide the keys: see :data:`_RADIX_TOP`)."""
    bits = max(len(key) - 1, 1).bit_length()
    if top.bit_length() + bits > 63:
        return None
    packed = key.astype(np.int64)
    packed <<= bits
    packed |= np.arange(len(key), dtype=np.int64)
    packed.sort()
    return packed, bits


_RADIX_TOP = 1 << 32
"""Keys below this (at most two 16-bit digits) are sorted by radix passes (:func:`radix_argsort`),
wider ones by :func:`_packed_sort` where it fits. numpy's stable sort of uint16 is a counting pass;
its sort of int64 compares. Measured on 2026-12-05 (numpy 2.4, whose int64 sort on this machine is
not vectorized: 2M keys in 120 ms): one pass 10–18 ms for 2M keys, two passes 3 ms for 2^18 keys
(the packed sort 12 ms) and 48–66 ms for 2M (118 ms). Where numpy's int64 sort is vectorized
(AVX-512; the seventeenth round's machine: 14 ms for 2M keys) two passes over millions of keys
cost more than the packed sort; one pass costs less on either."""


def _wide_packed(key: np.ndarray) -> tuple[tuple[np.ndarray, int] | None, int]:
    """``(packed, top)``: :func:`_packed_sort` of ``key`` where its keys reach :data:`_RADIX_TOP`
    (else None: the radix passes sort them), and the largest key."""
    top = int(key.max(initial=0))
    return (None if top < _RADIX_TOP else _packed_sort(key, top)), top


def radix_argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` of non-negative integers: least-significant-digit radix
    passes over 16-bit digits for keys below :data:`_RADIX_TOP` (numpy sorts uint16 stably by a
    radix sort, wider integers by timsort, 3× slower on a million keys: each pass is stable, so
    after the pass of the most significant digit the order is by the whole key, equal keys in
    position order); for wider keys the low bits of :func:`_packed_sort` where it fits, else the
    radix passes."""
    packed, top = _wide_packed(key)
    if packed is not None:
        order, bits = packed
        order &= (1 << bits) - 1
        return order
    return _radix_passes(key, top)


def _radix_passes(key: np.ndarray, top: int) -> np.ndarray:
    """The stable order of ``key`` (non-negative, at most ``top``) by 16-bit radix passes."""
    order = None
    shift = 0
    while order is None or top >> shift:
        digit = ((key if order is None else key[order]) >> shift).astype(np.uint16)  # the low 16 bits
        step = np.argsort(digit, kind="stable")
        order = step if order is None else order[step]
        shift += 16
    return order


def sorted_keys(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(key[order], order)`` with ``order = radix_argsort(key)``, the sorted keys taken from
    :func:`_packed_sort`'s high bits (int64) where that is the sort, rather than gathered."""
    packed, top = _wide_packed(key)
    if packed is None:
        order = _radix_passes(key, top)
        return key[order], order
    packed, bits = packed
    order = packed & ((1 << bits) - 1)
    packed >>= bits
    return packed, order


_RUN_ROWS = 8
"""Rows per run of one cluster, on average, from which :func:`cluster_order` sorts the runs rather
than the rows (judged first by the first 4,096 rows)."""


def cluster_order(codes: np.ndarray, G: int) -> tuple[np.ndarray | None, np.ndarray]:
    """``(order, counts)``: the rows sorted by cluster, stably (None when they already are),
    and each cluster's row count. Rows that come in long runs of one cluster (the pairs of a
    school sample, about 21 a run) are ordered by their runs (:func:`_run_order`: 2.1M rows 14
    against 24 ms), others by :func:`radix_argsort`; the same order either way."""
    counts = np.bincount(codes, minlength=G)
    if codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return None, counts
    head = codes[: 1 << 12]
    if np.count_nonzero(head[1:] != head[:-1]) * _RUN_ROWS < head.size:
        starts = np.flatnonzero(codes[1:] != codes[:-1])
        if starts.size * _RUN_ROWS < codes.size:
            return _run_order(codes, starts + 1), counts
    return radix_argsort(codes), counts


def _run_order(codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``radix_argsort(codes)`` from the runs of equal codes (``starts``: where each run but the
    first begins): the runs sorted stably by their code, each run's rows kept in order (a stable
    sort moves a run's rows together, in order), so only one code a run is sorted. The order is
    one running sum, formed in place: a step of 1 within a run and, at a run's first place, the
    jump from the previous run's last row to its first (one n-long array, not three)."""
    n = codes.size
    starts = np.concatenate([[0], starts])
    length = np.diff(np.append(starts, n))
    o = radix_argsort(codes[starts])
    start, length = starts[o], length[o]
    out = np.ones(n, dtype=np.intp)
    out[0] = start[0]
    out[np.cumsum(length[:-1])] = start[1:] - (start[:-1] + length[:-1] - 1)  # each run's first place
    np.cumsum(out, out=out)
    return out


def group_spans(codes: np.ndarray, G: int, rows: int) -> tuple[np.ndarray | None, list[tuple[int, int, int, int]]]:
    """``(order, spans)``: the rows in group order (:func:`cluster_order`; None when they already
    are) and the blocks of whole groups of about ``rows`` rows each, ``(g0, g1, r0, r1)``: the
    groups g0..g1−1 of a block (at least one), whose rows are ``order[r0:r1]``. A block ends with
    the group in which its ``rows``-th row falls, so every block but one of groups without any
    rows has rows. The spans hold no rows' positions: blocks handed to threads all at once
    (:func:`pleval._workers.thread_map`) take theirs when they run (:func:`span_rows`)."""
    order, per_group = cluster_order(codes, G)
    ends = np.cumsum(per_group)  # rows up to and including each group
    last = np.searchsorted(ends, np.arange(rows, ends[-1], rows))  # a block's last group
    bounds = np.unique(np.concatenate([[0], last + 1, [G]]))
    return order, [(int(g0), int(g1), int(ends[g0 - 1]) if g0 else 0, int(ends[g1 - 1]))
                   for g0, g1 in zip(bounds[:-1], bounds[1:])]  # blocks, not groups


def span_rows(order: np.ndarray | None, r0: int, r1: int) -> np.ndarray:
    """The positions of a span's rows (:func:`group_spans`)."""
    return np.arange(r0, r1) if order is None else order[r0:r1]


def group_blocks(codes: np.ndarray, G: int, rows: int):
    """Blocks of whole groups of about ``rows`` rows each, for work done a block at a time:
    yields ``(g0, g1, idx)``, the groups g0..g1−1 of a block (at least one) and the positions of
    their rows in group order (stable; :func:`cluster_order`), the blocks of :func:`group_spans`."""
    order, spans = group_spans(codes, G, rows)
    for g0, g1, r0, r1 in spans:
        yield g0, g1, span_rows(order, r0, r1)


def tile_rows(counts: np.ndarray) -> int:
    """The tile size b of :func:`grouped_cross_products` for clusters of ``counts`` rows: the
    least estimated cost, rows after padding each cluster to a multiple of b times the cost per
    row of tiles of b rows."""
    return min(_TILE_COST, key=lambda b: _TILE_COST[b] * float(np.sum(-(-counts // b) * b)))


def grouped_cross_products(X: np.ndarray, codes: np.ndarray, G: int, e: np.ndarray | None = None,
                           w: np.ndarray | None = None, *, pairs: bool = True, center: np.ndarray | None = None):
    """Per-cluster ``S_g = X_g'W_gX_g`` (G×k×k; None unless ``pairs``) and, if ``e`` is given,
    ``u_g = X_g'W_ge_g`` (G×k); with ``center``, those of ``X − center`` (subtracted from the
    rows as they are gathered).

    The rows are taken in cluster order (:func:`cluster_order`) and cut into *tiles* of b rows,
    each within one cluster (a cluster's last tile padded with rows of weight 0); every tile's
    ``[W X, W e]' X`` is one small product of a batched ``matmul``, and the tiles of a cluster
    are summed (``np.add.reduceat``); S is symmetrized. b (1–32, :func:`tile_rows`) trades the
    padding against the speed of larger products. Rows are gathered in chunks of 4,096 into
    reused buffers: no n×k copy, O(G·k²) memory, no loop over clusters or rows (only over
    chunks). ``pairs=False`` (CR0/CR1 need the scores only) skips S. ``w`` may be a tuple of
    weightings: then S is a tuple, ``X_g'W_jX_g`` for each, from one pass over the rows (one
    product of ``[W_1X, W_1e, W_2X, …]' X`` per tile; ``u`` takes the first).
    """
    n, k = X.shape
    X = np.ascontiguousarray(X)  # rows are gathered: row-major reads whole rows
    order, counts = cluster_order(codes, G)
    sorted_codes = codes if order is None else codes[order]
    b = tile_rows(counts)
    tiles = -(-counts // b)
    n_tiles = int(tiles.sum())
    first_tile = np.cumsum(tiles) - tiles
    first_row = np.cumsum(counts) - counts
    pos = first_tile[sorted_codes]  # padded slot of each sorted row (formed in place: less memory)
    pos *= b
    pos -= first_row[sorted_codes]
    pos += np.arange(n)
    del sorted_codes
    src = np.zeros(n_tiles * b, dtype=np.intp)
    src[pos] = np.arange(n) if order is None else order
    weights = w if isinstance(w, tuple) else (w,)
    wp = np.zeros((n_tiles * b, len(weights)))
    for j, wj in enumerate(weights):  # a weighting or two, not rows
        wp[pos, j] = 1.0 if wj is None else (wj if order is None else wj[order])
    del pos, order
    tile_cluster = np.repeat(np.arange(G), tiles)
    nw = len(weights) if pairs else 0
    ecol = k if nw else 0  # [W_1X, W_1e, W_2X, …]: W_1e right after W_1X, where a single weighting has it
    col = [0] + [k + (e is not None) + j * k for j in range(nw - 1)]  # each weighting's first column
    left = nw * k + (e is not None)
    out = np.zeros((G, left, k))
    step = max(1, _CHUNK_ROWS // b)
    bufX = np.empty((min(n_tiles, step) * b, k))
    bufL = np.empty((min(n_tiles, step) * b, left))
    for lo in range(0, n_tiles, step):  # chunks of rows, not clusters
        hi = min(lo + step, n_tiles)
        m = (hi - lo) * b
        r, wc = src[lo * b : hi * b], wp[lo * b : hi * b]
        Xc = np.take(X, r, axis=0, out=bufX[:m], mode="clip")  # (valid rows; "raise" would gather into a copy of out)
        if center is not None:
            np.subtract(Xc, center, out=Xc)
        Lc = bufL[:m]
        for j in range(nw):  # the weightings (einsum: np.multiply's products but a zero's sign, 9% faster for rows of 11)
            np.einsum("ij,i->ij", Xc, wc[:, j], out=Lc[:, col[j] : col[j] + k])
        if e is not None:
            np.multiply(e[r], wc[:, 0], out=Lc[:, ecol])
        P = np.matmul(Lc.reshape(hi - lo, b, left).transpose(0, 2, 1), Xc.reshape(hi - lo, b, k))
        tc = tile_cluster[lo:hi]
        starts = np.flatnonzero(np.concatenate([[True], tc[1:] != tc[:-1]]))
        sums = P if starts.size == P.shape[0] else np.add.reduceat(P, starts, axis=0)
        cl = tc[starts]  # increasing; only the first can have tiles in the chunk before
        if lo > 0 and tile_cluster[lo - 1] == cl[0]:
            out[cl[0]] += sums[0]
            cl, sums = cl[1:], sums[1:]
        if cl.size and cl[-1] - cl[0] + 1 == cl.size:
            out[cl[0] : cl[-1] + 1] = sums
        else:
            out[cl] = sums
    S = []
    for j in range(nw):
        S.append(np.add(out[:, col[j] : col[j] + k, :], out[:, col[j] : col[j] + k, :].transpose(0, 2, 1)))
        S[-1] *= 0.5
    S = tuple(S) if isinstance(w, tuple) else S[0] if S else None
    U = None if e is None else out[:, ecol, :].copy()
    return S, U


def _gram(X: np.ndarray, y: np.ndarray, sw: np.ndarray | None,
          center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``X̃'X̃`` and ``X̃'ỹ`` of the transformed model (``X̃ = W^{1/2}X``, X less ``center``), in
    blocks of rows: no n×k copy."""
    k = X.shape[1]
    XtX, Xty = np.zeros((k, k)), np.zeros(k)
    for lo in range(0, len(y), _CHUNK_ROWS):
        rows = slice(lo, lo + _CHUNK_ROWS)
        Xb = X[rows] if center is None else X[rows] - center
        if sw is not None:
            Xb = np.multiply(Xb, sw[rows, None], out=None if center is None else Xb)  # in place when a copy
        yb = y[rows] if sw is None else y[rows] * sw[rows]
        XtX += Xb.T @ Xb
        Xty += Xb.T @ yb
    return XtX, Xty


def _residuals(y: np.ndarray, X: np.ndarray, beta: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    """``y − (X − center)β``, the centred rows formed a block at a time."""
    if center is None:
        return y - X @ beta
    e = np.empty(len(y))
    for lo in range(0, len(y), _CHUNK_ROWS):
        rows = slice(lo, lo + _CHUNK_ROWS)
        np.subtract(y[rows], (X[rows] - center) @ beta, out=e[rows])
    return e


def _cr2_factors(S: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``L F_g L'`` for every cluster (G×k×k), ``F_g = W diag(f(λ)/λ) W'``, ``C_g = L'S_gL``.

    A cluster whose leverage reaches 1 in some direction (a regressor identified by that
    cluster alone, e.g. a school fixed effect with SEs clustered by school) gets the
    Moore–Penrose inverse square root of ``I − H_gg`` there, as clubSandwich does
    (Pustejovsky & Tipton 2018): eigenvalue 0 of ``I − H_gg`` maps to 0, i.e.
    ``f(1) = −1``, so that direction of the cluster's residual (which is exactly 0) adds nothing.
    """
    C = np.einsum("ji,gjk,kl->gil", L, S, L, optimize=True)
    lam, W = np.linalg.eigh(C)
    lam = np.clip(lam, 0.0, 1.0)
    one = lam >= 1.0 - 1e-10
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(one, -1.0, (1.0 - np.where(one, 0.0, lam)) ** -0.5 - 1.0)
        ratio = np.where(lam > 1e-12, f / np.where(lam > 1e-12, lam, 1.0), 0.5)
    F = np.einsum("gij,gj,gkj->gik", W, ratio, W, optimize=True)
    return np.einsum("ij,gjk,lk->gil", L, F, L, optimize=True)


@dataclass(frozen=True, repr=False)
class OLSFit(ResultMixin):
    """Result of :func:`ols`. Immutable; every accessor derives from params/vcov/df."""

    params: np.ndarray
    vcov: np.ndarray
    names: tuple[str, ...]
    n: int
    k: int
    n_clusters: int | None
    vcov_type: str
    resid: np.ndarray = field(repr=False)
    _contrast_df: Callable[[np.ndarray], float] = field(repr=False, compare=False)
    cr2_blocks: CR2Blocks | None = field(default=None, repr=False, compare=False)
    k_absorbed: int = 0  # group effects absorbed (ols(absorb=)): in the fit, not in params
    # HTZ η of q constraints (q × k): the CR2 blocks' under CR2, each row its own cluster's under HC2
    htz_eta: Callable[[np.ndarray], float] | None = field(default=None, repr=False, compare=False)
    # the Wald F's denominator df: G − 1, or G − k − A for CR0/CR1 under cluster_df="G-p"; n − k − A without clusters
    df_resid: float = math.nan

    def __post_init__(self):
        # a fit built directly rather than by ols(): its residual df and HTZ from its own fields
        if math.isnan(self.df_resid):
            G = self.n_clusters
            object.__setattr__(self, "df_resid", float(G - 1 if G else self.n - self.k - self.k_absorbed))
        if self.htz_eta is None and self.cr2_blocks is not None:
            object.__setattr__(self, "htz_eta", self.cr2_blocks.eta)

    @cached_property
    def df(self) -> np.ndarray:
        """Reference df per coefficient (Satterthwaite under CR2; computed on first use)."""
        return np.array([self.coef_df(j) for j in range(self.k)])

    def coef_df(self, j: int) -> float:
        """Reference df of coefficient ``j`` alone (cheaper than all of :attr:`df` under CR2)."""
        cache = self.__dict__.setdefault("_df_cache", {})
        if j not in cache:
            cache[j] = float(self._contrast_df(np.eye(self.k)[j]))
        return cache[j]

    @cached_property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @cached_property
    def tvalues(self) -> np.ndarray:
        return self.params / self.se

    @cached_property
    def pvalues(self) -> np.ndarray:
        return t_interval(self.params, self.se, self.df)[1]

    def conf_int(self, level: float = 0.95) -> np.ndarray:
        crit = t_interval(0.0, 1.0, self.df, level)[0]
        return np.column_stack([self.params - crit * self.se, self.params + crit * self.se])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no coefficient named {name!r}; have {list(self.names)}") from None

    def coef(self, name: str) -> tuple[float, float, float, float]:
        """``(estimate, se, df, pvalue)`` of one coefficient."""
        j = self.index(name)
        b, se, df = float(self.params[j]), float(self.se[j]), self.coef_df(j)
        return b, se, df, float(t_interval(b, se, df)[1])

    def contrast(self, c) -> tuple[float, float, float, float]:
        """``(c'β̂, se, df, pvalue)`` for a contrast vector ``c`` (Satterthwaite df under CR2)."""
        c = np.asarray(c, dtype=float)
        est = float(c @ self.params)
        se = float(np.sqrt(c @ self.vcov @ c))
        df = float(self._contrast_df(c))
        return est, se, df, float(t_interval(est, se, df)[1])

    def exact_t(self, c):
        """The exact null distribution of contrast c's t statistic under the fit's working model
        (:class:`pleval.inference.exact_t.ExactT`; ``.sf(|t|)`` its p-value, ``.critical(level)``
        its interval's multiplier): the CR2 form's independence model, or the school random effect
        of a transformed-form fit with ``df_working="random_effects"``. CR2 fits without absorbed
        effects."""
        from .exact_t import ExactT

        if self.vcov_type != "CR2" or self.cr2_blocks is None or isinstance(self.cr2_blocks, CR2BlocksAbsorbed):
            raise DesignError("the exact t reference needs a CR2 fit without absorbed effects")
        return ExactT.from_gram(*self.cr2_blocks.gram(np.asarray(c, dtype=float)))

    def wald_test(self, R, value=None, test: str | None = None):
        """Test ``Rβ = value`` (q constraints): HTZ under CR2 and HC2, else an F test; see
        :func:`pleval.inference.wald.wald_test`."""
        from .wald import wald_test

        return wald_test(self, R, value=value, test=test)

    def to_frame(self) -> pd.DataFrame:
        ci = self.conf_int()
        return pd.DataFrame(
            {
                "estimate": self.params,
                "se": self.se,
                "t": self.tvalues,
                "df": self.df,
                "pvalue": self.pvalues,
                "ci_low": ci[:, 0],
                "ci_high": ci[:, 1],
            },
            index=pd.Index(self.names, name="term"),
        )

    def summary(self) -> str:
        head = f"OLS, n = {self.n:,}, k = {self.k}" + (f" (+ {self.k_absorbed:,} absorbed)" if self.k_absorbed else "")
        head += f", covariance {self.vcov_type}"
        if self.n_clusters:
            head += f", {self.n_clusters:,} clusters"
        return head + "\n" + self.to_frame().to_string(float_format=lambda v: f"{v:.5g}")


COLLINEAR_TOL = 1e-11
"""A regressor whose sum of squares not explained by the regressors before it (its pivot in the
Cholesky factor of X'X) is below this share of its own is taken as a linear combination of them:
exact collinearity leaves about 1e-16 after rounding (a factor that does not fail outright then
gives standard errors of noise), an informative column far more (a pretest beside the intercept
about 1e-2, a year such as 1970 ± 10 about 1e-5)."""


class CollinearError(DesignError):
    """X'X is singular: regressor ``column`` (an index into X's columns) is constant or a linear
    combination of the regressors before it."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


def dependent_column(XtX: np.ndarray) -> int:
    """The first regressor whose Cholesky pivot of ``XtX`` is below :data:`COLLINEAR_TOL` of its
    own sum of squares (the factor built column by column: k regressors, a handful), or −1."""
    k = XtX.shape[0]
    L = np.zeros((k, k))
    for j in range(k):
        lj = linalg.solve_triangular(L[:j, :j], XtX[:j, j], lower=True) if j else np.empty(0)
        d = XtX[j, j] - lj @ lj
        if not d > COLLINEAR_TOL * XtX[j, j]:
            return j
        L[j, :j], L[j, j] = lj, math.sqrt(d)
    return -1


def _nonfinite_message(y: np.ndarray, X: np.ndarray, names, bad: np.ndarray) -> str:
    """The error for the rows ``bad`` of ``y`` or ``X`` that hold missing or infinite values:
    how many of each in y and in each named column of X (before 2026-12-05 one count of rows,
    no column named)."""
    found = []
    for name, v in (("y", y[bad]), *zip(map(repr, names), X[bad].T)):
        counts = ((int(np.isnan(v).sum()), "missing"), (int(np.isinf(v).sum()), "infinite"))
        kinds = [f"{n:,} {k}" for n, k in counts if n]
        found += [f"{name}: {', '.join(kinds)}"] * bool(kinds)
    return (f"{int(bad.sum()):,} row(s) have missing or infinite values ({'; '.join(found)}); leave those rows out "
            "(or correct the values)")


def ols(
    y,
    X,
    *,
    weights=None,
    clusters=None,
    vcov: VcovType = "CR2",
    names: Sequence[str] | None = None,
    cluster_df: Literal["G-1", "G-p"] = "G-1",
    cr2: Cr2Form = "transformed",
    n_obs: int | None = None,
    center=None,
    gram=None,
    blocks=None,
    absorb=None,
    df_working: str = "independent",
) -> OLSFit:
    """Weighted least squares with a robust covariance chosen by ``vcov``.

    Parameters
    ----------
    y : array (n,)
    X : array or DataFrame (n, k); include the intercept column yourself.
    weights : analysis weights (n,), non-negative; rows with weight 0 contribute nothing and, as
        in R's ``lm``, count for nothing: n counts the rows of positive weight, G the clusters
        with one, and the small-sample factors and df follow.
    clusters : cluster labels (n,) for CR0/CR1/CR2 (required for them).
    vcov : "CR2" (default; Satterthwaite df), "CR1" (Stata; df G−1), "CR0" (df G−1),
        "HC2" (Bell & McCaffrey's df for each contrast, :func:`hc2_df`; n−k before 2026-12-05),
        "HC1", "HC0" (df n−k), "classical" (σ²M; df n−k).
    cluster_df : "G-1" (default, Stata) or "G-p" (metafor's ``robust()``): the CR1 small-sample
        factor and the df of CR1/CR0 — G/(G−1)·(n−1)/(n−k) with G − 1 df, or G/(G−k) with
        G − k df.
    cr2 : weighted CR2 form (module docstring): "transformed" (default; CR2 of the
        √W-transformed model) or "clubsandwich" (clubSandwich's weighted-``lm`` CR2, working
        model Φ = I). Identical without weights or with one weight for all rows.
    n_obs : the observations the rows stand for, when a row merges copies of one observation
        (weights summed, copies in one cluster; :mod:`pleval.matching.effect`): the CR1 factor
        and the reported n count the copies. Cluster-robust types only.
    center : a row vector (k,): fit ``X − center`` without forming it (the centred rows are
        made a block at a time), e.g. regressors centred at their weighted means for a better
        conditioned X'WX (:mod:`pleval.matching.effect`); the coefficients of the centred
        columns, their covariance and df are those of the uncentred fit, the intercept moves.
    gram : ``(X̃'X̃, X̃'ỹ)`` of this fit (the rows of X less ``center``, times √w; :func:`_gram`
        of the same arguments), when the caller has formed them already: used as given.
    blocks : ``(S, T)``, per cluster (numbered as :func:`cluster_codes` numbers ``clusters``)
        ``S_g = X̃_g'X̃_g`` and ``T_g = X̃_g'ỹ_g`` of this fit (:func:`grouped_cross_products` with
        y as ``e``), when the caller has formed them: CR0, CR1 and the transformed CR2 then take
        the scores ``u_g = X̃_g'ẽ_g = T_g − S_gβ̂`` from them, without another pass over the rows
        (pass y less its weighted mean, so that T_g and S_gβ̂ are not much larger than their
        difference). Ignored by the other types.
    absorb : integer group codes (n,), 0..A−1: the fit has one indicator per group, absorbed by
        the within transformation instead of formed (Frisch–Waugh–Lovell: y and the columns of
        X less their (weighted) group means give the same coefficients and residuals; X then
        holds the other regressors, without an intercept). The covariance is that of the fit
        with the indicators: HC2's leverage adds each row's indicator leverage ``w_i/Σ_{b(i)}w``
        (the absorbed block of the hat matrix is orthogonal to the rest), HC1, classical and
        the df count the A absorbed parameters. A group of one row (a singleton) is fitted
        exactly by its indicator (residual 0, leverage 1) and adds nothing: it is left out of
        the HC2 leverage check and of HC1's n, as if dropped with its indicator (reghdfe drops
        singletons; Correia 2015), which leaves the df n − k − A unchanged. Cluster-robust types
        need every cluster within one group, and no weights: CR0/CR1 count the A effects in k,
        and CR2 adds each cluster's part of the indicators' hat matrix, ``1_g1_g'/n_b``, to its
        adjustment and, between clusters of one group, to the Satterthwaite and HTZ df
        (:func:`_cr2_absorbed`). The absorbed effects are not reported.
    df_working : the working model of CR2's Satterthwaite df for single contrasts (transformed
        form): "independent" (default; Bell & McCaffrey 2002, Φ = I) or "random_effects" (a
        cluster random effect, its variance ratio estimated from the residuals; Imbens & Kolesár
        2016; :class:`CR2BlocksRandomEffects`, with ``absorb`` :class:`CR2BlocksAbsorbedRandomEffects`).
        The SEs are the same; only the df differ. Ignored by the other types and forms.

    Returns
    -------
    OLSFit
    """
    check_conventions(cluster_df, cr2)
    if df_working not in DF_WORKING:
        raise DataError(f"df_working must be one of {DF_WORKING}; got {df_working!r}")
    X, default_names = _as_2d(X)
    y = np.asarray(y, dtype=float).ravel()
    n, k = X.shape
    names = tuple(names) if names is not None else tuple(default_names)
    if y.shape[0] != n or len(names) != k:
        raise DataError(f"y has {y.shape[0]} rows and X has {n}; names has {len(names)} for {k} columns")
    if gram is not None and (np.shape(gram[0]) != (k, k) or np.shape(gram[1]) != (k,)):
        raise DataError(f"gram must be X'X ({k} x {k}) and X'y ({k}) of the transformed model")
    # a finite sum has no NaN or infinity among its terms; nor has X when its Gram is finite (a
    # non-finite value of X makes its row's products, weighted or not, NaN or infinite)
    finite_x = (gram is not None and bool(np.isfinite(gram[0]).all())) or np.isfinite(X.sum())
    bad = None if finite_x and np.isfinite(y.sum()) else ~np.isfinite(y) | ~np.isfinite(X).all(axis=1)
    if bad is not None and bad.any():
        raise DataError(_nonfinite_message(y, X, names, bad))
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape[0] != n or np.any(~np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite, non-negative and one per row")
        sw = np.sqrt(w)
        n_zero = n - int(np.count_nonzero(w))
        n -= n_zero  # the rows with information (R's lm)
    else:
        sw, n_zero = None, 0
    k_abs, h_abs, n_single = 0, None, 0
    if absorb is not None:
        if center is not None or gram is not None or (
                vcov in _CLUSTER_TYPES and (weights is not None or n_obs is not None or blocks is not None)):
            raise DataError("absorb works without center or gram, and with a cluster-robust vcov only unweighted, "
                            "without n_obs or blocks")
        y, X, k_abs, h_abs = within_transform(y, X, absorb, None if weights is None else w)
        single = h_abs >= 1.0 - 1e-12  # the one row (with weight) of its group: fitted exactly
        n_single = int(single.sum())
    if center is not None:
        center = np.asarray(center, dtype=float).ravel()
        if center.shape != (k,) or not np.isfinite(center).all():
            raise DataError(f"center must be {k} finite numbers, one per column of X")
        if vcov not in _CLUSTER_TYPES or (vcov == "CR2" and cr2 == "clubsandwich" and weights is not None):
            X, center, gram, blocks = X - center, None, None, None  # the per-row paths read X whole
    XtX, Xty = _gram(X, y, sw, center) if gram is None else gram
    try:
        Lc = linalg.cholesky(XtX, lower=True)
        tiny = np.flatnonzero(~(np.diag(Lc) ** 2 > COLLINEAR_TOL * np.diag(XtX)))
        j = int(tiny[0]) if tiny.size else -1
    except linalg.LinAlgError:
        j = dependent_column(XtX)
        j = j if j >= 0 else k - 1  # (LAPACK's pivot ≤ 0 where this one rounded just above the tolerance)
    if j >= 0:
        raise CollinearError(
            f"the regressors are collinear (X'X is singular): {names[j]!r} is constant or a linear combination "
            "of the regressors before it within the analysed rows", j)
    M = linalg.cho_solve((Lc, True), np.eye(k))
    beta = M @ Xty
    resid = _residuals(y, X, beta, center)

    if n_obs is not None and vcov not in _CLUSTER_TYPES:
        raise DataError(f"n_obs (merged copies) needs a cluster-robust vcov; got {vcov!r}")
    if vcov in _CLUSTER_TYPES:
        if clusters is None:
            raise DataError(f"vcov={vcov!r} needs cluster ids (clusters=...)")
        n = n if n_obs is None else int(n_obs)
        club = vcov == "CR2" and cr2 == "clubsandwich" and weights is not None
        given, blocks = (None if club else blocks), None
        if given is not None:  # the caller's per-cluster blocks: the scores from them
            S, T = given
            G = len(S)
            if np.shape(S) != (G, k, k) or np.shape(T) != (G, k):
                raise DataError(f"blocks must be per-cluster X'X (G x {k} x {k}) and X'y (G x {k})")
        else:
            codes, G = cluster_codes(clusters)
        # the clusters with information: one whose rows all have weight 0 has blocks 0 (G numbers the arrays)
        G_info = cluster_codes(np.asarray(clusters)[w > 0])[1] if n_zero else G
        if G_info < 2:
            raise DesignError(f"cluster-robust SEs need at least 2 clusters{' with positive weight' * bool(n_zero)}; "
                              f"the data have {G_info}")
        if vcov == "CR2":
            _check_cr2_memory(G, 2 * k if club else k + (absorb is not None))  # clubSandwich's form: 2k dimensions
        # per-cluster blocks of the transformed model: X̃'X̃ = X'WX, X̃'ẽ = X'W e
        if absorb is not None:
            _nested_in_groups(codes, G, absorb)
        if absorb is not None and vcov == "CR2":
            U, blocks = _cr2_absorbed(X, resid, codes, G, M, absorb, h_abs)
            if df_working == "random_effects":
                blocks = CR2BlocksAbsorbedRandomEffects(
                    blocks.T, blocks.Gamma, blocks.N, blocks.M, blocks.offset, group_of=blocks.group_of,
                    inv_n=blocks.inv_n, rho=random_effects_ratio_absorbed(resid, codes, blocks, k_abs))
        elif club:
            U, blocks = _cr2_clubsandwich(X, w, resid, codes, G, M)
        elif given is not None:
            U = T - np.einsum("gij,j->gi", S, beta)
        else:  # CR0/CR1 need the scores u_g only; CR2 the blocks S_g too
            S, U = grouped_cross_products(X, codes, G, resid, w if weights is not None else None, pairs=vcov == "CR2",
                                          center=center)
        if vcov == "CR2" and blocks is None:
            L = linalg.cholesky(M, lower=True)
            LFL = _cr2_factors(S, L)
            U = U + np.einsum("gij,gjk,gk->gi", S, LFL, U, optimize=True)
            if df_working == "random_effects":
                if given is not None:
                    codes, _ = cluster_codes(clusters)
                v = np.ones(len(resid)) if sw is None else sw
                u = (S[:, :, 0] if (center is None or center[0] == 0.0) and np.all(X[:, 0] == 1.0)
                     else _cluster_sums((X if center is None else X - center) * (v**2)[:, None], codes, G))
                blocks = CR2BlocksRandomEffects(S, LFL, M, M, u=u,
                                                rho=random_effects_ratio(resid * v, v**2, codes, G, u, M))
            else:
                blocks = CR2Blocks(S, LFL, M, M)
        meat = U.T @ U
        V = M @ meat @ M
        kf = k + k_abs  # the coefficients of the fit with the absorbed indicators
        if cluster_df == "G-p" and G_info <= kf and vcov != "CR2":
            raise DesignError(f"cluster_df='G-p' needs more clusters ({G_info}) than coefficients ({kf})")
        if vcov == "CR1":
            V *= G_info / (G_info - 1) * (n - 1) / (n - kf) if cluster_df == "G-1" else G_info / (G_info - kf)
        df_resid = G_info - 1.0 if cluster_df == "G-1" or vcov == "CR2" else float(G_info - kf)
        contrast_df = _constant_df(df_resid) if blocks is None else blocks.df
        return OLSFit(beta, V, names, n, k, G_info, vcov, resid, contrast_df, blocks, k_abs, df_resid=df_resid)

    Xt, et = (X, resid) if sw is None else (X * sw[:, None], resid * sw)  # the transformed model
    if vcov in _HC_TYPES:
        e2 = et**2
        if vcov == "HC2":
            h = np.einsum("ij,jk,ik->i", Xt, M, Xt, optimize=True)
            if h_abs is not None:  # a singleton's row of X̃ is 0: it adds nothing to the meat
                h = h + np.where(single, 0.0, h_abs)
            if np.any(h >= 1.0 - 1e-10):
                raise DesignError("HC2: an observation has leverage 1; drop the regressor it alone identifies")
            e2 = e2 / (1.0 - h)
        meat = (Xt * e2[:, None]).T @ Xt
        V = M @ meat @ M
        if vcov == "HC1":
            V *= (n - n_single) / (n - k - k_abs)
    elif vcov == "classical":
        V = M * (et @ et) / (n - k - k_abs)
    else:
        raise DataError(f"vcov must be one of {_CLUSTER_TYPES + _HC_TYPES + ('classical',)}; got {vcov!r}")
    if vcov == "HC2":  # Bell & McCaffrey's df (n − k − A before 2026-12-05)
        wts = None if weights is None else w
        codes_abs = None if absorb is None else np.asarray(absorb)
        absorbed = None if codes_abs is None else (codes_abs, np.bincount(codes_abs, weights=wts).astype(float))
        contrast_df, eta = _hc2_contrast_df(X, wts, h, M, absorbed)
    else:
        contrast_df, eta = _constant_df(float(n - k - k_abs)), None
    return OLSFit(beta, V, names, n, k, None, vcov, resid, contrast_df, None, k_abs, eta)  # (df_resid: n − k − A)


def within_transform(y: np.ndarray, X: np.ndarray, absorb, w: np.ndarray | None):
    """y and X less their (weighted) group means, the number of groups with weight, and each
    row's leverage in the group indicators, ``w_i / Σ_{b(i)} w`` (see :func:`ols`, ``absorb``)."""
    codes = np.asarray(absorb)
    if codes.shape != y.shape or not np.issubdtype(codes.dtype, np.integer) or (codes.size and codes.min() < 0):
        raise DataError("absorb must be non-negative integer group codes, one per row")
    A = int(codes.max()) + 1 if codes.size else 0
    wt = np.ones(len(y)) if w is None else w
    tot = np.bincount(codes, weights=wt, minlength=A)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(tot > 0, 1.0 / tot, 0.0)

    def less_mean(v):
        return v - (np.bincount(codes, weights=wt * v, minlength=A) * inv)[codes]

    Xw = np.empty_like(X, dtype=float)
    for j in range(X.shape[1]):
        Xw[:, j] = less_mean(X[:, j])
    return less_mean(y), Xw, int(np.count_nonzero(tot > 0)), wt * inv[codes]


CR2_ARRAYS = 8
"""Per-cluster k × k arrays CR2 holds at its peak (blocks, their products, eigenvectors; about 7
measured), for :func:`_check_cr2_memory`."""


def _check_cr2_memory(G: int, k: int) -> None:
    """Stop with an error that says why, instead of exhausting the memory, when CR2's G
    per-cluster k × k arrays would take more than half the memory free."""
    from .._workers import available_memory

    need = CR2_ARRAYS * 8.0 * G * k * k
    if need < 2.0**28:  # below 256 MB: not worth reading the system's figure
        return
    free = available_memory()
    if need > free / 2:
        raise DesignError(
            f"CR2 with {k:,} regressors and {G:,} clusters needs about {need / 2**30:.1f} GB for its per-cluster "
            f"k × k blocks, more than half the memory free ({free / 2**30:.1f} GB): use fewer regressors (block "
            "indicators count; an HC covariance absorbs them) or vcov='CR1', which needs no such blocks"
        )


def _constant_df(value: float) -> Callable[[np.ndarray], float]:
    return lambda c: value


def hc2_df(X: np.ndarray, l: np.ndarray, h: np.ndarray, Sinv: np.ndarray, *, w: np.ndarray | None = None,
           groups: np.ndarray | None = None, G: int = 1, absorbed: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Bell & McCaffrey's (2002) Satterthwaite df of the HC2 variance of an estimate ``Σ_i l_i ỹ_i``
    (``ỹ = √w·y``), for each of G separate fits (``groups``: each row's fit, 0..G−1; ``Sinv``: each
    fit's (X'WX)⁻¹, G × p × p), working model ``Var(ỹ) = σ²I``; Imbens & Kolesár (2016) recommend
    it for HC2, whose n − k df reject too often with a small or unbalanced arm. With
    ``a_i = l_i²/(1 − h_ii)`` the variance is ``Σ a_i ẽ_i²``, ``ẽ = (I − H)ε``, so
    ``df = (Σ a_i(1 − h_ii))² / tr(A(I − H)A(I − H))`` and
    ``tr(A(I − H)A(I − H)) = Σ a_i²(1 − 2h_ii) + Σ_ij a_ia_j H_ij²``, the last
    ``tr((S⁻¹T)²)``, ``T = Σ a_i w_i x_i x_i'``: O(n p²), no n × n matrix. Rows of leverage 1 (left
    out of the HC2 sum) have ``a_i = 0``.

    ``absorbed``: one fit (G = 1) whose X holds the regressors less their (weighted) means within
    absorbed groups, as ``(codes, totals)``, each row's group and each group's ``Σw``; ``h`` then
    includes the indicators' leverage and H their block ``√(w_iw_j)/Σ_b w``, which adds
    ``Σ_b (Σ_{i∈b} a_iw_i)²/(Σ_b w)² + 2 Σ_b v_b'S⁻¹v_b/Σ_b w``, ``v_b = Σ_{i∈b} a_iw_ix_i``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(h < 1 - 1e-12, l * l / (1.0 - h), 0.0)
    codes = np.zeros(len(h), dtype=np.intp) if groups is None else groups
    mean = np.bincount(codes, weights=a * (1.0 - h), minlength=G)
    var = _hc2_trace(X, a, h, Sinv, w, codes, G, absorbed)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, mean * mean / var, np.nan)


def _hc2_trace(X: np.ndarray, a: np.ndarray, h: np.ndarray, Sinv: np.ndarray, w: np.ndarray | None,
               codes: np.ndarray, G: int, absorbed: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``tr(A(I − H)A(I − H))`` of each fit, ``A = diag(a)`` (any real ``a``), without an n × n
    matrix: ``Σ a_i²(1 − 2h_ii) + tr((S⁻¹T)²)`` with ``T = Σ a_i w_i x_i x_i'``, and the absorbed
    indicators' terms (:func:`hc2_df`)."""
    aw = a if w is None else a * w
    P = Sinv @ grouped_cross_products(X, codes, G, w=aw)[0]
    var = np.bincount(codes, weights=a * a * (1.0 - 2.0 * h), minlength=G) + np.einsum("gij,gji->g", P, P)
    if absorbed is not None:
        b, tot = absorbed
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(tot > 0, 1.0 / tot, 0.0)
        s = np.bincount(b, weights=aw, minlength=len(tot))
        v = np.column_stack([np.bincount(b, weights=aw * X[:, j], minlength=len(tot)) for j in range(X.shape[1])])
        var = var + (s * s) @ (inv * inv) + 2.0 * np.einsum("bi,ij,bj,b->", v, Sinv[0], v, inv, optimize=True)
    return var


def hc2_eta(X: np.ndarray, l: np.ndarray, h: np.ndarray, Sinv: np.ndarray, *, w: np.ndarray | None = None,
            absorbed: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """The HTZ degrees of freedom η (Pustejovsky & Tipton 2018, eq. 13; :meth:`CR2Blocks.eta`) of q
    estimates ``Σ_i l_is ỹ_i`` (``l``: n × q) under HC2, i.e. CR2 with each row its own cluster,
    working model ``Var(ỹ) = σ²I`` (arguments as :func:`hc2_df`, one fit). Row i's part of the
    covariance of estimates s and t is ``b_is b_it ẽ_i²``, ``b_is = l_is/√(1 − h_ii)``, so
    ``P^{st}_ij = b_is b_jt (I − H)_ij``; with the b standardized by ``Ω^{-1/2}``,
    ``Ω = Σ_i b_i b_i'(1 − h_ii)`` (= E of their covariance), both of η's pair sums are
    ``tr(A_st(I − H)A_st(I − H))``, ``A_st = diag(b_s ∘ b_t)``, and
    ``η = q(q + 1) / (2 Σ_st tr(A_st(I − H)A_st(I − H)))``. For q = 1 it is :func:`hc2_df`."""
    l = np.atleast_2d(np.asarray(l, dtype=float).T).T
    q = l.shape[1]
    keep = h < 1 - 1e-12  # rows of leverage 1 are left out of the HC2 sum
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(keep[:, None], l / np.sqrt(np.where(keep, 1.0 - h, 1.0))[:, None], 0.0)
    Omega = (b * (1.0 - h)[:, None]).T @ b
    lam, vec = np.linalg.eigh(Omega)
    if not np.all(lam > 1e-12 * max(float(np.abs(lam).max()), 1e-300)):
        return math.nan
    b = b @ ((vec / np.sqrt(lam)) @ vec.T)
    codes = np.zeros(len(h), dtype=np.intp)
    total = sum((1.0 if s_ == t_ else 2.0) * float(_hc2_trace(X, b[:, s_] * b[:, t_], h, Sinv, w, codes, 1, absorbed)[0])
                for s_ in range(q) for t_ in range(s_, q))
    return float(q * (q + 1) / (2.0 * total)) if total > 0 else math.nan


def _hc2_contrast_df(X: np.ndarray, w: np.ndarray | None, h: np.ndarray, M: np.ndarray,
                     absorbed: tuple[np.ndarray, np.ndarray] | None, weights_of=None):
    """A contrast's Bell & McCaffrey df (:func:`hc2_df`) and q constraints' HTZ η (:func:`hc2_eta`)
    in an HC2 fit of X (weights w, leverages h, ``M = (X'WX)⁻¹``): ``c'β̂ = Σ_i l_i ỹ_i`` with
    ``l_i = √w_i x_i'Mc``, or ``weights_of(C)`` (C: a contrast, or q × k) where the estimates are
    other linear maps of ỹ (Lin's within-cell fit)."""
    sw = None if w is None else np.sqrt(w)

    if weights_of is None:
        def weights_of(C: np.ndarray) -> np.ndarray:
            l = X @ (M @ C.T)
            return l if sw is None else l * (sw[:, None] if l.ndim == 2 else sw)

    def df(c: np.ndarray) -> float:
        return float(hc2_df(X, weights_of(c), h, M[None], w=w, absorbed=absorbed)[0])

    def eta(C: np.ndarray) -> float:
        return hc2_eta(X, weights_of(np.atleast_2d(C)), h, M[None], w=w, absorbed=absorbed)

    return df, eta


@dataclass(frozen=True)
class CR2Blocks:
    """Per-cluster blocks of a CR2 fit from which the Satterthwaite df and the HTZ test follow.

    For a contrast c (a row of C), the cluster-g weight vector is ``p_g = U_g h_g`` with
    ``h_g = b + Γ_g T_g b``, ``b = lift(M c)``; writing ``q_g = (I − H)'_{·g} p_g`` (its
    contribution to ``c'V c = Σ_g (q_g'y)²``), ``q_g'q_h = δ_gh h_g'T_g h_g − z_g'N z_h``,
    ``z_g = T_g h_g``. ``offset`` places ``M c`` in ``b`` (0, or k for ``[X, WX]``).
    """

    T: np.ndarray
    Gamma: np.ndarray
    N: np.ndarray
    M: np.ndarray
    offset: int = 0

    def _h(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``h`` (G×q×m), ``z`` (G×q×m) and ``D[g, s, t] = h_gs'T_g h_gt`` (G×q×q)."""
        C = np.atleast_2d(np.asarray(C, dtype=float))
        q, m, k = C.shape[0], self.T.shape[1], self.M.shape[0]
        b = np.zeros((q, m))
        b[:, self.offset : self.offset + k] = C @ self.M
        h = b[None, :, :] + np.einsum("gij,gjl,ql->gqi", self.Gamma, self.T, b, optimize=True)
        z = np.einsum("gij,gqj->gqi", self.T, h)
        return h, z, np.einsum("gsi,gti->gst", h, z)

    def blocks(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``z`` (G×q×m), ``D[g, s, t] = h_gs'T_g h_gt`` (G×q×q) and ``E[g, s, t] = z_gs'N z_gt``."""
        _, z, D = self._h(C)
        E = np.einsum("gsi,ij,gtj->gst", z, self.N, z, optimize=True)
        return z, D, E

    def eta(self, C: np.ndarray) -> float:
        """HTZ degrees of freedom η of constraints C (q×k) (Pustejovsky & Tipton 2018, eq. 13):
        ``η = q(q+1) / Σ_{s,t} [Σ_gh P^{st}_gh P^{ts}_gh + P^{ss}_gh P^{tt}_gh]`` with the q_g
        standardized by ``Ω^{-1/2}``, ``Ω = E(C V C')`` under the working model. For q = 1 this
        is the Satterthwaite df of the contrast."""
        z, D, E = self.blocks(C)
        q = z.shape[1]
        Omega = (D - E).sum(axis=0)
        lam, vec = np.linalg.eigh((Omega + Omega.T) / 2.0)
        if not np.all(lam > 1e-12 * max(float(np.abs(lam).max()), 1e-300)):
            return math.nan
        R = (vec / np.sqrt(lam)) @ vec.T
        z = np.einsum("su,gui->gsi", R, z)
        D = np.einsum("su,gur,tr->gst", R, D, R, optimize=True)
        E = np.einsum("su,gur,tr->gst", R, E, R, optimize=True)
        cross = self._cross(z)

        def pair_sum(a, b, c, d):  # Σ_gh P^{ab}_gh P^{cd}_gh
            return (np.sum(D[:, a, b] * D[:, c, d]) - np.sum(D[:, a, b] * E[:, c, d]) - np.sum(D[:, c, d] * E[:, a, b])
                    + cross(a, b, c, d))

        total = sum(pair_sum(s_, t_, t_, s_) + pair_sum(s_, s_, t_, t_) for s_ in range(q) for t_ in range(q))
        return float(q * (q + 1) / total) if total > 0 else math.nan

    def _cross(self, z: np.ndarray) -> Callable[[int, int, int, int], float]:
        """``(a, b, c, d) ↦ Σ_gh (z_ga'N z_hb)(z_gc'N z_hd)``, the pairs of clusters' part of
        ``Σ_gh P^{ab}_gh P^{cd}_gh``."""
        K = np.einsum("gsi,gtj->stij", z, z)  # K[a, c] = Z_a'Z_c
        NK = np.einsum("ij,abjl->abil", self.N, K)
        return lambda a, b, c, d: float(np.trace(NK[b, d] @ NK[c, a]))

    def df(self, c: np.ndarray) -> float:
        return self.eta(np.asarray(c, dtype=float)[None, :])

    def gram(self, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(a'a, [a'q_g], [q_g'q_h])`` of contrast c under the form's independence working
        model, ``c'β̂ = a'y``: in the transformed form ``a = X̃Mc`` and ``(I − H)a = 0``; in
        clubSandwich's ``a = WXMc`` and ``(I − H)a = U_g N[c; 0]`` on cluster g's rows, so
        ``a'q_g = z_g'N[c; 0]`` and ``a'a = c'MX'W²XMc``."""
        c = np.asarray(c, dtype=float)
        _, z, D = self._h(c[None, :])
        z, D = z[:, 0, :], D[:, 0, 0]
        P = np.diag(D) - z @ self.N @ z.T
        k = self.M.shape[0]
        if self.offset:
            return float(-c @ self.N[:k, :k] @ c), z @ (self.N[:, :k] @ c), P
        return float(c @ self.M @ c), np.zeros(len(D)), P


class _RandomEffectDf:
    """The df of a contrast under a working model with cluster random effects (the subclasses'
    ``_re_df``; ``rho`` the variance ratio), those of the independence model when ``ρ = 0``; an
    infinite ρ is capped, the random-effect part then dominating (ν is scale-free)."""

    def df(self, c: np.ndarray) -> float:
        c = np.asarray(c, dtype=float)
        if self.rho <= 0.0:
            return super().df(c)
        h, z, D = self._h(c[None, :])
        return self._re_df(h[:, 0, :], z[:, 0, :], D[:, 0, 0], min(self.rho, 1e8))


@dataclass(frozen=True)
class CR2BlocksRandomEffects(_RandomEffectDf, CR2Blocks):
    """:class:`CR2Blocks` of the transformed form whose contrasts' Satterthwaite df take a
    working model with cluster random effects (Imbens & Kolesár 2016): ``Var(ỹ) ∝ I + ρ vv'``
    within each cluster, ``v = √w`` (the transformed model's intercept), ρ estimated from the
    residuals (:func:`random_effects_ratio`). The variance itself is CR2's as before.

    With ``s_c(q_g) = v_c'q_g = δ_cg a_g − u_c'M z_g`` (``u_c = X̃_c'v_c``, ``a_g = u_g'h_g``) the
    working-model products are ``P_gh = q_g'q_h + ρ Σ_c s_c(q_g) s_c(q_h)``, i.e.
    ``P = diag(D_g + ρa_g²) + L C L'`` with rows ``l_g = [z_g, a_g M u_g]`` and
    ``C = [[−M + ρMUM, −ρI], [−ρI, 0]]``, ``U = Σ_c u_c u_c'``; then
    ``ν = (tr P)² / ‖P‖²_F`` from k × k quantities. HTZ tests of several constraints keep the
    independence working model."""

    u: np.ndarray | None = None  # (G, k): X̃_g'v_g
    rho: float = 0.0

    def _re_df(self, h, z, D, rho) -> float:
        k = self.M.shape[0]
        a = np.einsum("gi,gi->g", self.u, h)
        Mu = self.u @ self.M
        delta = D + rho * a**2
        L = np.hstack([z, a[:, None] * Mu])
        C = np.block([[-self.M + rho * Mu.T @ Mu, -rho * np.eye(k)], [-rho * np.eye(k), np.zeros((k, k))]])
        gram = L.T @ L
        CG = C @ gram
        tr = delta.sum() + np.trace(CG)
        fro = (delta**2).sum() + 2.0 * delta @ np.einsum("gi,ij,gj->g", L, C, L, optimize=True) + np.trace(CG @ CG)
        return float(tr**2 / fro) if fro > 0 else math.nan

    def gram(self, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`CR2Blocks.gram` under the random-effect working model ``Φ = I + ρΣ_c v_cv_c'``:
        with ``S[c, g] = s_c(q_g)`` and ``v_c'a = u_c'Mc``, ``a'Φa = c'Mc + ρΣ_c(u_c'Mc)²``,
        ``q_g'Φa = ρΣ_c(u_c'Mc)S[c, g]`` (``q_g'a = 0``) and ``Q'ΦQ = Q'Q + ρS'S``."""
        if self.rho <= 0.0:
            return super().gram(c)
        c = np.asarray(c, dtype=float)
        rho = min(self.rho, 1e8)  # ∞: the random-effect part dominates (the distribution is scale-free)
        h, z, D = self._h(c[None, :])
        h, z, D = h[:, 0, :], z[:, 0, :], D[:, 0, 0]
        Mu = self.u @ self.M
        S = np.diag(np.einsum("gi,gi->g", self.u, h)) - Mu @ z.T
        uMc = Mu @ c
        P = np.diag(D) - z @ self.M @ z.T + rho * S.T @ S
        return float(c @ self.M @ c + rho * uMc @ uMc), rho * (S.T @ uMc), P


def _cluster_sums(A: np.ndarray, codes: np.ndarray, G: int) -> np.ndarray:
    """Σ of the rows of ``A`` within each cluster (G × columns)."""
    return np.stack([np.bincount(codes, weights=col, minlength=G) for col in A.T], axis=1)


def random_effects_ratio(resid_t: np.ndarray, w: np.ndarray, codes: np.ndarray, G: int, u: np.ndarray,
                         M: np.ndarray) -> float:
    """ρ of the working model ``Var(ỹ) = σ²(I + ρ Σ_g v_gv_g')`` (``v = √w`` within cluster g) by
    two moments of the transformed residuals ``ẽ = (I − H)ỹ``, each set to its expectation under
    that model: ``O₁ = ẽ'ẽ`` with ``E = σ²[(n − k) + ρ(Σw − Σ_g u_g'Mu_g)]`` and
    ``O₂ = Σ_g (v_g'ẽ_g)²`` with ``E = σ²[Σ_g (w_g − u_g'Mu_g) + ρ Σ_g (w_g² − 2w_g u_g'Mu_g +
    u_g'MUMu_g)]`` (``w_g = Σ_{i∈g} w_i``, ``u_g = X̃_g'v_g``, ``U = Σ_g u_gu_g'``), so that the
    fit's shrinkage of the residuals is accounted for. 0 when negative, ∞ when no
    within-cluster variance is left. n counts the rows of positive weight (a row of weight 0 has
    ẽ_i = 0 and adds nothing)."""
    n, k = int(np.count_nonzero(w)), M.shape[0]
    wg = np.bincount(codes, weights=w, minlength=G)
    sg = np.bincount(codes, weights=np.sqrt(w) * resid_t, minlength=G)
    Mu = u @ M
    uMu = np.einsum("gi,gi->g", Mu, u)
    uMUMu = np.einsum("gi,ij,gj->g", Mu, u.T @ u, Mu)
    A1, B1 = n - k, wg.sum() - uMu.sum()
    A2, B2 = (wg - uMu).sum(), (wg**2 - 2.0 * wg * uMu + uMUMu).sum()
    return _moment_ratio(resid_t @ resid_t, sg @ sg, A1, A2, B1, B2)


def _moment_ratio(O1: float, O2: float, A1: float, A2: float, B1: float, B2: float) -> float:
    """ρ solving ``O₁/O₂ = (A₁ + ρB₁)/(A₂ + ρB₂)`` (σ² cancels): 0 when negative, ∞ when no
    within-cluster variance is left."""
    num, den = O2 * A1 - O1 * A2, O1 * B2 - O2 * B1
    if num <= 0:
        return 0.0
    return float(num / den) if den > 0 else math.inf


def _group_sums(A: np.ndarray, groups: np.ndarray, B: int) -> np.ndarray:
    """Σ of the rows of ``A`` (clusters × ...) within each of ``B`` groups."""
    out = np.zeros((B,) + A.shape[1:])
    np.add.at(out, groups, A)
    return out


def _absorbed_terms(n_g: np.ndarray, u: np.ndarray, group_of: np.ndarray, inv_n: np.ndarray):
    """Per-cluster ``m_g = n_g/n_b``, per-group ``μ_b = Σ_{c∈b} m_c²`` and ``ω_b = Σ_{c∈b} m_cu_c``
    of clusters nested in absorbed groups (:class:`CR2BlocksAbsorbedRandomEffects`)."""
    m = n_g * inv_n[group_of]
    return m, _group_sums(m**2, group_of, inv_n.size), _group_sums(m[:, None] * u, group_of, inv_n.size)


def random_effects_ratio_absorbed(resid_t: np.ndarray, codes: np.ndarray, blocks: "CR2BlocksAbsorbed",
                                  k_abs: int) -> float:
    """:func:`random_effects_ratio` of an unweighted fit with group indicators absorbed and the
    clusters nested in the groups (``Var(y) = σ²(I + ρΣ_c 1_c1_c')``, H the hat matrix with the
    indicators): with ``1_c'(I − H)1_g = δ_cg n_g − [b(c) = b(g)] n_c m_g − u_c'Mu_g`` (``u_c =
    X̃_c'1_c``, ``m_g = n_g/n_b``), ``E ẽ'ẽ = σ²[(n − k − B) + ρΣ_g(n_g(1 − m_g) − u_g'Mu_g)]`` and
    ``E Σ_g(1_g'ẽ)² = σ²[Σ_g(n_g(1 − m_g) − u_g'Mu_g) + ρΣ_g(n_g²(1 − 2m_g + μ_b) +
    2n_g(ω_b − u_g)'Mu_g + u_g'MUMu_g)]``."""
    n_g, u, M, b = blocks.T[:, 0, 0], blocks.T[:, 1:, 0], blocks.M, blocks.group_of
    m, mu, omega = _absorbed_terms(n_g, u, b, blocks.inv_n)
    Mu = u @ M
    uMu = np.einsum("gi,gi->g", Mu, u)
    A2 = (n_g * (1.0 - m) - uMu).sum()
    B2 = (n_g**2 * (1.0 - 2.0 * m + mu[b]) + 2.0 * n_g * np.einsum("gi,gi->g", omega[b] - u, Mu)
          + np.einsum("gi,ij,gj->g", Mu, u.T @ u, Mu)).sum()
    sg = np.bincount(codes, weights=resid_t, minlength=len(n_g))
    return _moment_ratio(resid_t @ resid_t, sg @ sg, resid_t.size - M.shape[0] - k_abs, A2, A2, B2)


@dataclass(frozen=True)
class CR2BlocksAbsorbed(CR2Blocks):
    """:class:`CR2Blocks` of a fit with group indicators absorbed and clusters nested in the
    groups (:func:`_cr2_absorbed`): basis ``U_g = [1_g, X̃_g]``, and between clusters g and h
    ``N_gh = diag([b(g) = b(h)]/n_b, M)`` — the indicators' part of the hat matrix joins two
    clusters only within a group. ``N`` holds ``diag(0, M)``; ``group_of`` each cluster's group,
    ``inv_n`` each group's 1/n_b. The within-group terms are sums over each group's clusters."""

    group_of: np.ndarray | None = None
    inv_n: np.ndarray | None = None

    def blocks(self, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, D, E = super().blocks(C)
        z0 = z[:, :, 0]
        return z, D, E + self.inv_n[self.group_of][:, None, None] * z0[:, :, None] * z0[:, None, :]

    def _cross(self, z: np.ndarray) -> Callable[[int, int, int, int], float]:
        base = super()._cross(z)
        B, q = self.inv_n.size, z.shape[1]
        z0, zW = z[:, :, 0], z[:, :, 1:]
        P = _group_sums(z0[:, :, None] * z0[:, None, :], self.group_of, B)  # P[b, s, t] = Σ_{g∈b} z_gs0 z_gt0
        Q = _group_sums(z0[:, :, None, None] * zW[:, None, :, :], self.group_of, B)  # Q[b, s, t] = Σ_{g∈b} z_gs0 z_gtW
        MQ = np.einsum("ij,bstj->bsti", self.M, Q)
        inv = self.inv_n

        def cross(a, b, c, d):
            return (base(a, b, c, d) + float(np.sum(inv**2 * P[:, a, c] * P[:, b, d]))
                    + float(np.sum(inv * np.einsum("bi,bi->b", Q[:, a, c], MQ[:, b, d])))
                    + float(np.sum(inv * np.einsum("bi,bi->b", Q[:, c, a], MQ[:, d, b]))))

        return cross


@dataclass(frozen=True)
class CR2BlocksAbsorbedRandomEffects(_RandomEffectDf, CR2BlocksAbsorbed):
    """:class:`CR2BlocksAbsorbed` whose contrasts' Satterthwaite df take the cluster random-effect
    working model ``Var(y) ∝ I + ρΣ_c 1_c1_c'`` (unweighted; ρ from
    :func:`random_effects_ratio_absorbed`), as :class:`CR2BlocksRandomEffects` does without
    absorbed effects; HTZ tests of several constraints keep the independence model.

    On the basis ``[1_g, X̃_g]`` (``z_g = [a_g, z̃_g]``) cluster c's sum of ``q_g`` is
    ``s_c(q_g) = δ_cg a_g − [b(c) = b(g)] m_c a_g − u_c'r_g`` (``r_g = Mz̃_g``), so
    ``P = Q'Q + ρS'S`` is a diagonal, a rank-2 part within each group and a rank-3k part:
    ``P = diag(D_g + ρa_g²) + Σ_b A_bK_bA_b' + LCL'`` with rows ``A_g = [a_g, a_gm_g]``,
    ``K_b = [[ρμ_b − 1/n_b, −ρ], [−ρ, 0]]``, ``L_g = [z̃_g, r_g, e_g]``, ``e_g = a_g(ω_b − u_g)``,
    ``C = [[−M, 0, 0], [0, ρU, ρI], [0, ρI, 0]]``; ``ν = (tr P)²/‖P‖²_F`` (:func:`_trace_frobenius`)
    from per-cluster and per-group quantities, never a G × G matrix."""

    rho: float = 0.0

    def _re_df(self, h, z, D, rho) -> float:
        a, zw, b, k = z[:, 0], z[:, 1:], self.group_of, self.M.shape[0]
        u = self.T[:, 1:, 0]
        m, mu, omega = _absorbed_terms(self.T[:, 0, 0], u, b, self.inv_n)
        K = np.zeros((self.inv_n.size, 2, 2))
        K[:, 0, 0] = rho * mu - self.inv_n
        K[:, 0, 1] = K[:, 1, 0] = -rho
        eye, zero = np.eye(k), np.zeros((k, k))
        C = np.block([[-self.M, zero, zero], [zero, rho * (u.T @ u), rho * eye], [zero, rho * eye, zero]])
        L = np.hstack([zw, zw @ self.M, a[:, None] * (omega[b] - u)])
        tr, fro = _trace_frobenius(D + rho * a**2, np.column_stack([a, a * m]), K, b, L, C)
        return float(tr**2 / fro) if fro > 0 else math.nan


def _trace_frobenius(d, A, K, groups, L, C) -> tuple[float, float]:
    """``tr P`` and ``‖P‖²_F`` of the symmetric ``P = diag(d) + Σ_b A_bK_bA_b' + LCL'`` (``A_b`` the
    rows ``A_g`` of the clusters in group b, ``K`` symmetric): sums of per-cluster and per-group
    products, ``‖A_bK_bA_b'‖² = tr(K_bG_bK_bG_b)`` with ``G_b = A_b'A_b``, and so on."""
    B = K.shape[0]
    AK = np.einsum("gi,gij->gj", A, K[groups])
    LC = L @ C
    qa, ql = np.einsum("gj,gj->g", AK, A), np.einsum("gj,gj->g", LC, L)  # the two low-rank parts' diagonals
    GA = _group_sums(A[:, :, None] * A[:, None, :], groups, B)  # G_b
    GL = L.T @ L
    X = _group_sums(A[:, :, None] * L[:, None, :], groups, B)  # Σ_{g∈b} A_g'L_g
    KG = np.einsum("bij,bjl->bil", K, GA)
    CG = C @ GL
    tr = d.sum() + qa.sum() + ql.sum()
    fro = ((d**2).sum() + 2.0 * d @ (qa + ql) + np.einsum("bij,bji->", KG, KG) + np.trace(CG @ CG)
           + 2.0 * np.einsum("bij,bjl,lm,bim->", K, X, C, X))
    return float(tr), float(fro)


def clusters_nested(codes: np.ndarray, G: int, groups) -> bool:
    """Whether every cluster (codes 0..G−1) lies within one of ``groups`` (integer codes)."""
    g = np.asarray(groups)
    first = np.full(G, -1, dtype=np.int64)
    first[codes[::-1]] = g[::-1]
    return bool(np.all(first[codes] == g))


def _nested_in_groups(codes: np.ndarray, G: int, absorb) -> None:
    """Cluster-robust SEs with absorbed groups: every cluster must lie within one group."""
    if not clusters_nested(codes, G, absorb):
        raise DataError("absorb with a cluster-robust vcov needs each cluster within one absorbed group; some "
                        "cluster spans several (form the indicators as columns instead)")


def _cr2_absorbed(X, resid, codes, G, M, absorb, h_abs):
    """CR2 with group indicators absorbed and clusters nested in the groups (unweighted). In the
    fit with indicators D, ``H_gg = 1_g1_g'/n_b + X̃_gMX̃_g'`` (D'X̃ = 0), so on the basis
    ``U_g = [1_g, X̃_g]`` ``H_gg = U_g N_g U_g'`` with ``N_g = diag(1/n_b, M)``, and the
    adjustment and its df follow from :func:`_inverse_root_factors` and
    :class:`CR2BlocksAbsorbed`. The scores of X̃'s coefficients are the last k of
    ``U_g'A_ge_g``."""
    n, k = X.shape
    Ua = np.empty((n, k + 1))
    Ua[:, 0] = 1.0
    Ua[:, 1:] = X
    T, R = grouped_cross_products(Ua, codes, G, resid)
    group_of = np.full(G, -1, dtype=np.int64)
    group_of[codes] = np.asarray(absorb)
    inv_n = np.zeros(int(group_of.max()) + 1)
    inv_n[np.asarray(absorb)] = h_abs  # unweighted: 1/n_b
    N = np.zeros((G, k + 1, k + 1))
    N[:, 0, 0] = inv_n[group_of]
    N[:, 1:, 1:] = M
    Gam = _inverse_root_factors(T, N)
    meat_vec = (R + np.einsum("gij,gjk,gk->gi", T, Gam, R, optimize=True))[:, 1:]
    Nw = np.zeros((k + 1, k + 1))
    Nw[1:, 1:] = M
    return meat_vec, CR2BlocksAbsorbed(T, Gam, Nw, M, offset=1, group_of=group_of, inv_n=inv_n)


def _inverse_root_factors(T: np.ndarray, N: np.ndarray) -> np.ndarray:
    """Γ_g with ``(B_g^+)^{1/2} = I + U_g Γ_g U_g'`` for ``B_g = I − U_g N U_g'``, from ``T_g = U_g'U_g``
    (``N``: one m×m matrix, or one per g).

    With ``T_g = V diag(τ) V'`` (directions with τ ≈ 0 dropped: U_g need not have full column
    rank), ``Q = U_g V τ^{-1/2}`` is an orthonormal basis of span(U_g), on which ``B_g`` is
    ``I − τ^{1/2}V'NVτ^{1/2} = Y diag(λ) Y'``; so ``Γ_g = Vτ^{-1/2} Y diag(f(λ)) Y' τ^{-1/2}V'``
    with ``f(λ) = λ^{-1/2} − 1``, and ``f = −1`` where λ = 0 (Moore–Penrose, as clubSandwich).
    Columns are scaled to unit total norm first (per g when N is per g) so the rank cut is
    scale-free.
    """
    G, m, _ = T.shape
    per_g = N.ndim == 3  # one N per g (pleval.heterogeneity._joint): each g scaled on its own
    d = np.sqrt(np.einsum("gii->gi", T) if per_g else np.einsum("gii->i", T))
    sc = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    outer = (lambda a: a[..., :, None] * a[..., None, :])
    Ts = T * outer(sc)
    Ns = N * outer(d)
    tau, V = np.linalg.eigh(Ts)
    keep = tau > 1e-11 * np.maximum(tau.max(axis=1, keepdims=True), 1e-300)
    root = np.where(keep, np.sqrt(np.where(keep, tau, 0.0)), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    Vs = V * root[:, None, :]
    B = np.eye(m)[None] - Vs.transpose(0, 2, 1) @ Ns @ Vs
    lam, Y = np.linalg.eigh(B)
    f = np.where(lam > 1e-10, np.clip(lam, 1e-10, None) ** -0.5 - 1.0, -1.0)
    Vi = V * inv_root[:, None, :]
    P = np.einsum("gij,gjk->gik", Vi, Y)
    Gam = np.einsum("gij,gj,gkj->gik", P, f, P, optimize=True)
    return Gam * outer(sc)


def _cr2_clubsandwich(X, w, resid, codes, G, M):
    """clubSandwich's weighted CR2 (working model Φ = I): meat vectors and the CR2 blocks."""
    k = X.shape[1]
    Ua = np.hstack([X, X * w[:, None]])
    T, R = grouped_cross_products(Ua, codes, G, resid)  # T_g = U_g'U_g, R_g = [X_g'e_g; X_g'W_g e_g]
    S2 = T[:, k:, k:].sum(axis=0)
    MS2M = M @ S2 @ M
    N = np.block([[-MS2M, M], [M, np.zeros((k, k))]])
    Gam = _inverse_root_factors(T, N)
    meat_vec = (R + np.einsum("gij,gjk,gk->gi", T, Gam, R, optimize=True))[:, k:]
    return meat_vec, CR2Blocks(T, Gam, N, M, offset=k)


__all__ = ["ols", "OLSFit", "CR2Blocks", "cluster_codes", "grouped_cross_products", "CR2_FORMS", "within_transform",
           "clusters_nested", "CollinearError", "dependent_column", "COLLINEAR_TOL"]
