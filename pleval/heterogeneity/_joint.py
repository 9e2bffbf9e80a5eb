"""Joint sampling covariance of every school's effect, from one stacked estimation.

The per-school regressions of :mod:`._batched` are one stacked weighted least-squares fit with
school-specific parameters (intercept, treatment effect θ_s, covariate slopes): on the stacked
matched sample the design is block-diagonal, ``β̂_s = S_s⁻¹ Σ_{i∈s} w_i x_i y_i``. A comparison
student reused by several PL schools, and a comparison school whose students sit in several
PL schools' sets, make the θ̂_s correlated. pleval clusters the stacked fit: every row has a
cluster id (a comparison school, spanning all the sets it appears in; each treated student
its own cluster), and the cluster-robust covariance of the stacked fit is

    V_st = Σ_c φ_sc φ_tc,     φ_sc = e_1' S_s⁻¹ X̃_sc' A_sc ẽ_sc,

the sum over clusters c of the products of school s's and school t's treatment-coefficient
scores from cluster c's rows in their sets (Liang & Zeger 1986; stacked-regression form of
Cameron, Gelbach & Miller 2011). Because the bread is block-diagonal, the leverage block
``H_cc`` of a cluster is block-diagonal over the sets, so CR2's ``A_c = (I − H_cc)^{−1/2}``
(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018) is applied per (set, cluster) cell, with
the Moore–Penrose root where a cell's leverage reaches 1 (as clubSandwich):

* ``"CR2"`` (default): the above; per-school Satterthwaite df (Pustejovsky & Tipton 2018)
  from the clusters of the school's own set. Where weights vary within a set, the adjustment
  has two forms (``cr2=``, as :func:`pleval.inference.ols`): ``"transformed"``, the formula
  above in the √W-transformed model (working model Var(e) ∝ 1/w), and ``"clubsandwich"``,
  ``A_c = (B_c⁺)^{1/2}`` with ``B_c = [(I − H)(I − H)']_cc``, ``H = X M_s X'W``, on the raw
  residuals (working model Φ = I, clubSandwich's default; :mod:`._joint_phi`), the default of
  :func:`~.school_effects.school_effects` since matching weights are not precision weights.
  The df follow the form (``q_c'q_d = δ_cd s_c − z_c'N_s z_d`` with ``N_s = M_s``, or the
  2p × 2p ``N_s`` of :mod:`._joint_phi`). With weights constant within every set the two are
  equal and the transformed code runs;
* ``"CR1"``: ``A = I`` and ``V_st · √(f_s f_t)``, ``f_s = G_s/(G_s − 1)·(n_s − 1)/(n_s − p_s)``
  with G_s the clusters in set s, so the diagonal is each school's own CR1; df ``G_s − 1``;
* ``"CR0"``: ``A = I``, no factor; df ``G_s − 1``.

Each school's diagonal entry is exactly what a separate regression for that school with the
same clusters gives (:func:`pleval.inference.ols`), and when no cluster spans two sets the
matrix is diagonal. The treated students are each their own cluster: a PL school's own
deviation (its "school shock") cannot be separated from its program effect by its own data,
so the per-school estimate targets the program effect *plus* that deviation
(the identifiable quantity; see ``docs/heterogeneity.md``).

**Regularized off-diagonal.** Each ``V_st`` (s ≠ t) is a sum over the comparison-school
clusters the two sets share, so with a few dozen such clusters the off-diagonal entries are
noisy, and a quadratic form ``r'V⁻¹r`` (the generalized Q of the meta-analysis, the REML
likelihood) inherits the noise: in pleval's simulation study with no school effects at all, Q
of 60 placebo schools averaged 1.18 (k − 1) with the raw matrix against 1.09 (k − 1) with its
diagonal, and the Q-profile interval for τ² missed 0 in 15% of studies. pleval therefore
shrinks the off-diagonal toward 0 by one factor per group of schools (Schäfer & Strimmer 2005,
target "D": diagonal, unequal variances), the diagonal — each school's own SE — untouched:

    V* = diag(V) + (1 − λ)(V − diag(V)),   λ = min(1, Σ_{s≠t} Var̂(V_st) / Σ_{s≠t} V_st²),

with ``Var̂(V_st) = (m_st Σ_c (φ_sc φ_tc)² − V_st²)/(m_st − 1)`` the unbiased variance of a sum of
``m_st`` independent cluster terms (the clusters shared by s and t; ``Σ_c (φ_sc φ_tc)²`` when
``m_st = 1``; :attr:`JointCovariance.vcov_var`).
λ is near 1 when the shared clusters carry little real covariance and near 0 when they carry
much (it is the estimated share of the off-diagonal sum of squares that is noise); V* is
positive definite whenever V is (a convex combination of V and its diagonal). Applied per
``by`` group by :func:`regularize`; with no cluster in two sets V is diagonal and unchanged.

Computation: cell sums by ``np.bincount``; a batched ``eigh`` for cells with more than one
row (in blocks of cells, so memory stays bounded), a closed form (HC2-type ``(1 − h)^{−1/2}``)
for single-row cells; ``V = ΦΦ'`` from the k × clusters matrix Φ (sparse for clusters in a few
sets, dense blocks for clusters in many). The Φ = I form (:mod:`._joint_phi`) goes by blocks of
whole groups of about :data:`_BLOCK_ROWS` rows, since a cell lies in one group: only each
cell's score φ_c is kept across blocks. No loop over students, schools or cells.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from .._workers import compute_threads, thread_map
from ..inference.robust import CR2_FORMS, group_blocks, radix_argsort
from ..matching._design import TABLE_PER_KEY, first_appearance_codes
from ._batched import _pair_sums
from ._joint_phi import df_sums, phi_identity_cells

JOINT_VCOV_TYPES = ("CR2", "CR1", "CR0")


@dataclass(frozen=True)
class JointCovariance:
    vcov: np.ndarray  # G × G covariance of the target coefficient (NaN rows/cols where not ok, and between parts)
    df: np.ndarray  # G reference df per school
    n_clusters: np.ndarray  # G clusters in each school's set
    vcov_var: np.ndarray  # G × G estimated variance of each entry of vcov (module docstring)


@dataclass(frozen=True)
class JointCells:
    """The cells' part of :func:`joint_covariance` for some groups (:func:`joint_cells`): each
    (group, cluster) cell's score of the target coefficient (CR1's factor applied), with its
    group and cluster code (``int32`` where they fit: a cell's 24 bytes become 16, and they are
    held from the fits to the cross-products), and each group's df and number of clusters.
    Cells of disjoint sets of groups combine by concatenation (:func:`joint_from_cells`)."""

    phi: np.ndarray
    group: np.ndarray
    cluster: np.ndarray
    df: np.ndarray
    n_clusters: np.ndarray


def _narrow(codes: np.ndarray, bound: int) -> np.ndarray:
    """Codes below ``bound`` as ``int32`` when ``bound`` fits, else ``intp``."""
    return codes.astype(np.int32 if bound < 2**31 else np.intp, copy=False)


def _first_codes(key: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(key)`` of keys in 0..bound−1 (codes in order of first appearance, and the
    keys so numbered, as ``int64``): by a table over the keys' range where it is small
    (:func:`pleval.matching._design.first_appearance_codes`), else by a hash table, of 32-bit keys
    where they fit (the same codes; a block of 2¹⁸ keys 2.4 against 4.1 ms)."""
    if not len(key) or bound > TABLE_PER_KEY * len(key):
        codes, uniq = pd.factorize(key.astype(np.int32, copy=False) if bound <= 2**31 else key)
        return codes, uniq.astype(np.int64, copy=False)
    codes, first = first_appearance_codes(key, bound)
    return codes, key[first].astype(np.int64, copy=False)


def _batched_sqrt(M: np.ndarray) -> np.ndarray:
    """A factor ``L`` with ``LL' = M`` for every PSD matrix of a stack (eigen-decomposition,
    so rank-deficient ``M`` — pseudo-inverse breads — are fine)."""
    lam, Q = np.linalg.eigh(M)
    return Q * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]


def _f_ratio(lam: np.ndarray) -> np.ndarray:
    """``f(λ)/λ`` with ``f(λ) = (1 − λ)^{−1/2} − 1`` (pseudo-inverse: ``f(1) = −1``); the limit
    1/2 at λ = 0."""
    lam = np.clip(lam, 0.0, 1.0)
    one = lam >= 1.0 - 1e-10
    f = np.where(one, -1.0, (1.0 - np.where(one, 0.0, lam)) ** -0.5 - 1.0)
    return np.where(lam > 1e-12, f / np.where(lam > 1e-12, lam, 1.0), 0.5)


_CHUNK = 1 << 15
"""Cells (or rows) per block of the batched p×p algebra: bounds the memory of the gathered
p×p matrices (a few tens of MB per block) without a loop over schools or cells."""


def _quad(x: np.ndarray, M: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``x_i' M_{g_i} x_i`` for every row i, in blocks of rows."""
    out = np.empty(len(x))
    for s in range(0, len(x), _CHUNK):  # blocks of rows, not schools
        xs = x[s : s + _CHUNK, None, :]
        out[s : s + _CHUNK] = (xs @ M[g[s : s + _CHUNK]] @ xs.transpose(0, 2, 1))[:, 0, 0]
    return out


def _f(lam: np.ndarray) -> np.ndarray:
    """``f(λ) = (1 − λ)^{−1/2} − 1`` on [0, 1], with ``f(1) = −1`` (pseudo-inverse)."""
    lam = np.clip(lam, 0.0, 1.0)
    one = lam >= 1.0 - 1e-10
    return np.where(one, -1.0, (1.0 - np.where(one, 0.0, lam)) ** -0.5 - 1.0)


def _multi_row_cells(X, w, e, cell, multi, size, gm, Sinv, m, U, z, s) -> None:
    """CR2 for the cells with more than one row, in place on their entries of ``U`` (the
    adjusted score ``X̃_c'A_cẽ_c``), ``z`` and ``s`` (the Satterthwaite pieces, see
    :func:`joint_covariance`). A cell of r < p rows is handled in its r-dimensional row space
    (:func:`_small_cells`), a larger one in the p-dimensional one (:func:`_large_cells`); the
    cells are grouped by size (a loop over at most p − 1 sizes) and go in blocks of
    :data:`_CHUNK`."""
    p = X.shape[1]
    code = np.full(len(U), -1, dtype=np.intp)
    code[multi] = np.arange(multi.size)
    code = code[cell]
    rows = np.flatnonzero(code >= 0)
    cls = np.minimum(size, p)  # cells of fewer rows than columns by their size, the others together
    rows = rows[np.argsort(cls[code[rows]].astype(np.int64) * multi.size + code[rows], kind="stable")]
    start = 0
    for r in np.unique(cls):  # cell sizes, not cells
        j = np.flatnonzero(cls == r)  # ascending: the order of their rows in ``rows``
        seg = rows[start : start + int(size[j].sum())]
        start += seg.size
        if r < p:
            _small_cells(X[seg].reshape(j.size, r, p), w[seg].reshape(j.size, r), e[seg].reshape(j.size, r),
                         multi[j], gm[j], Sinv, m, U, z, s)
        else:
            _large_cells(X, w, seg, np.searchsorted(j, code[seg]), multi[j], gm[j], Sinv, m, U, z, s)


def _small_cells(Xr, wr, er, cells, g, Sinv, m, U, z, s) -> None:
    """Cells of r rows (``Xr``: cells × r × p): with ``Z = W^{1/2}X_c`` and the r × r leverage
    ``H = Z M_s Z' = QΛQ'``, ``A = I + Q f(Λ) Q'`` (f of :func:`_f`), so ``U_c = Z'Aẽ``; with
    ``v = Z m_s``, ``z_c = Z'Av`` and ``s_c = ‖Av‖²`` (= ``a_c'z_c`` of the p-dimensional form)."""
    r = Xr.shape[1]
    for lo in range(0, len(cells), _CHUNK):  # blocks of cells
        sl = slice(lo, lo + _CHUNK)
        sw = np.sqrt(wr[sl])
        Zc = Xr[sl] * sw[:, :, None]
        ZcT = Zc.transpose(0, 2, 1)
        lam, Q = np.linalg.eigh(Zc @ Sinv[g[sl]] @ ZcT)
        A = (Q * _f(lam)[:, None, :]) @ Q.transpose(0, 2, 1)
        A[:, np.arange(r), np.arange(r)] += 1.0
        c = cells[sl]
        U[c] = (ZcT @ (A @ (er[sl] * sw)[:, :, None]))[:, :, 0]
        Av = A @ (Zc @ m[g[sl], :, None])
        z[c] = (ZcT @ Av)[:, :, 0]
        s[c] = np.einsum("cij,cij->c", Av, Av)


def _large_cells(X, w, seg, local, cells, g, Sinv, m, U, z, s) -> None:
    """Cells of p rows or more (their rows ``seg``, sorted by cell; ``local``: each row's cell
    0..len(cells)−1): with ``LL' = M_s``, ``C = L'S_cL = WΛW'`` and ``F = W·(f(Λ)/Λ)·W'``,
    ``X̃_c'A_cẽ_c = U_c + S_cLFL'U_c``, ``a_c = m_s + LFL'S_c m_s``, ``z_c = S_c a_c`` and
    ``s_c = a_c'z_c``; each block's ``S_c`` by :func:`._batched._pair_sums`, one batched ``eigh``
    per block."""
    bounds = np.searchsorted(local, np.arange(0, len(cells) + _CHUNK, _CHUNK))
    L = _batched_sqrt(Sinv)
    for b in range(-(-len(cells) // _CHUNK)):  # blocks of cells
        lo, hi = b * _CHUNK, min((b + 1) * _CHUNK, len(cells))
        r = seg[bounds[b] : bounds[b + 1]]
        Sc = _pair_sums(X[r], w[r], local[bounds[b] : bounds[b + 1]] - lo, hi - lo)
        Lb = L[g[lo:hi]]
        LbT = Lb.transpose(0, 2, 1)
        lam, Wv = np.linalg.eigh(LbT @ Sc @ Lb)
        LFL = Lb @ ((Wv * _f_ratio(lam)[:, None, :]) @ Wv.transpose(0, 2, 1)) @ LbT
        c = cells[lo:hi]
        mb = m[g[lo:hi], :, None]
        U[c] += (Sc @ (LFL @ U[c, :, None]))[:, :, 0]
        ab = mb + LFL @ (Sc @ mb)
        zb = Sc @ ab
        z[c] = zb[:, :, 0]
        s[c] = np.einsum("cij,cij->c", ab, zb)


ZERO_SCORE = 1e-12
"""Cell scores within this fraction of the largest are taken as 0 (:func:`_cross_products`)."""


def _cross_products(phi, cell_group, cell_cluster, G: int, n_cl: int):
    """``V = ΦΦ'``, ``S2 = Σ_c (φ_sc φ_tc)²`` and the number of clusters shared by s and t
    (nonzero φ in both) for the k × clusters matrix Φ of the cells' scores. A cluster in a few
    sets (a treated student: one per subject) costs a sparse product the square of its sets; one
    in more than k/8 sets (a comparison school serving many) goes through dense symmetric
    rank-k updates (BLAS ``syrk``: the upper triangle, half a general product's work), in blocks
    of clusters; the shared-cluster counts, whole numbers far below 2²⁴, exactly in single
    precision. The three matrices are independent (:func:`_lane`), and the counts split into
    two halves of each block's clusters (whole numbers: their sum is exact in any order; each half,
    half the columns in single precision, is about a quarter of a double-precision lane's work, so
    two threads get equal shares): the four lanes go to :func:`pleval._workers.thread_map`'s threads, each
    computed as in one thread (with one thread, three lanes: the counts' halves as one)."""
    # a score that is 0 but for rounding (a cell whose terms cancel) counts as 0: it came out exactly 0
    # or 1e-17 of the largest with the rows in another order, which moved the shared-cluster counts m,
    # Var̂(V) and the off-diagonal shrinkage λ (0.8775 vs 0.8798 for a shuffled comparison pool)
    phi = np.where(np.abs(phi) <= ZERO_SCORE * np.abs(phi).max(initial=0.0), 0.0, phi)
    wide = np.bincount(cell_cluster, minlength=n_cl) * 8 > G  # clusters in more than k/8 sets
    Phi = _sparse_rows(phi, cell_group, cell_cluster, ~wide[cell_cluster], G, n_cl)
    many = np.flatnonzero(wide)
    del wide
    blocks, width = [], max(1, _CHUNK // 16)
    if many.size:
        col = np.full(n_cl, -1, dtype=np.int32 if many.size < 2**31 else np.intp)
        col[many] = np.arange(many.size)
        cc = col[cell_cluster]  # each cell's column among the wide clusters (−1: a cluster in few sets)
        del col
        n_blocks = -(-many.size // width)
        key = cc // width + 1  # 0: few sets; 1 + the block of clusters
        o = radix_argsort(key)  # cells by block of clusters (the order within a block is free)
        bounds = np.cumsum(np.bincount(key, minlength=n_blocks + 1))  # block b: o[bounds[b] : bounds[b + 1]]
        del key
        for b in range(n_blocks):  # blocks of clusters: each cell's entry (g, j) of its block at g + G·j
            at = o[bounds[b] : bounds[b + 1]]
            flat = G * (cc[at] - b * width).astype(np.intp)
            flat += cell_group[at]
            blocks.append((flat, phi[at], min(width, many.size - b * width)))
        del o, cc
    # in one thread the counts go as one lane: the halves would only filter each block's cells twice
    lanes = [(0, 0), (1, 0), *([(2, 0), (2, 1)] if compute_threads() > 1 else [(2, -1)])]
    V, S2, m, *m2 = thread_map(lambda lane: _lane(*lane, Phi, blocks, G, width), lanes)
    for half in m2:
        m += half
    return V, S2, m


def _lane(kind: int, half: int, Phi: sparse.csr_matrix, blocks: list, G: int, width: int) -> np.ndarray:
    """One matrix of :func:`_cross_products` (``kind`` 0: ``ΦΦ'``, 1: ``(Φ∘Φ)(Φ∘Φ)'``, 2: the
    pattern's, the counts of shared clusters): the sparse rows' product plus the dense blocks'
    (``blocks``: each block's cells' flat entries in its G × width matrix, their φ and its
    columns), the blocks' ``syrk`` updates (:func:`_syrk`) into the upper triangle, mirrored at
    the end. The counts come in two halves: ``half`` 0, the sparse rows and the first
    ⌈cols/2⌉ columns of each block; 1, the block's other columns only (a G × G single-precision
    matrix); −1, all of them (one lane). Reads ``Phi`` and ``blocks``, writes only its own arrays."""
    M = None
    if half <= 0:
        data = Phi.data
        data = data if kind == 0 else data * data if kind == 1 else (data != 0).astype(np.float64)
        P = sparse.csr_matrix((data, Phi.indices, Phi.indptr), shape=Phi.shape)  # Φ's indices, this lane's values
        M = np.asarray((P @ P.T).todense())
        del P, data
        if not blocks:
            return M
    dtype = np.float32 if kind == 2 else np.float64
    D = np.zeros((G, G), dtype=dtype, order="F")
    buf = np.zeros((G, width if kind < 2 or half < 0 else -(-width // 2)), dtype=dtype, order="F")  # zero but where a
    flat_buf = buf.reshape(-1, order="F")  # block's cells are written (and cleared after); entry (g, j) at g + G·j
    for flat, vals, cols in blocks:  # blocks of clusters
        if kind == 2 and half >= 0:  # the counts: one half of the block's columns
            cut = -(-cols // 2)
            lo, hi = (0, cut) if half == 0 else (cut, cols)
            keep = (flat >= G * lo) & (flat < G * hi)
            flat, vals, cols = flat[keep] - G * lo, vals[keep], hi - lo
            if not cols:
                continue
        flat_buf[flat] = vals if kind == 0 else vals * vals if kind == 1 else vals != 0
        _syrk(buf[:, :cols], D)
        flat_buf[flat] = 0
    D += np.triu(D, 1).T  # the upper triangle (the lower one is 0), mirrored
    if M is None:
        return D
    M += D
    return M


def _blas_syrk(name: str):
    """The BLAS routine ``name`` (``dsyrk``, ``ssyrk``) of scipy's Cython BLAS
    (:mod:`scipy.linalg.cython_blas`, the routines :mod:`scipy.linalg.blas` wraps), as a ctypes
    function: ctypes releases the GIL during the call, scipy.linalg.blas's wrappers do not, so two
    threads' updates run at once. Arguments as Fortran's, all by address."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__[name]
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 10)(get_pointer(capsule, get_name(capsule)))


_SYRK = {}
""":func:`_blas_syrk`'s functions by dtype, made on first use."""


def _syrk(A: np.ndarray, C: np.ndarray) -> None:
    """``C ← AA' + C`` on C's upper triangle (BLAS ``syrk``, uplo U, trans N), in place, for a
    column-major ``A`` (n × k) and ``C`` (n × n) of one dtype (float64 or float32): the numbers of
    ``scipy.linalg.blas.dsyrk(1.0, A, beta=1.0, c=C, overwrite_c=1)``, without the GIL."""
    if A.dtype not in _SYRK:
        _SYRK[A.dtype] = _blas_syrk("dsyrk" if A.dtype == np.float64 else "ssyrk")
    assert A.flags.f_contiguous and C.flags.f_contiguous and C.dtype == A.dtype and C.shape == (len(A), len(A))
    n, k = A.shape
    num = np.ctypeslib.as_ctypes_type(A.dtype)
    ints = [ctypes.c_int(v) for v in (n, k, max(1, n), max(1, n))]
    one = num(1.0)
    ref = ctypes.addressof
    _SYRK[A.dtype](ctypes.c_char_p(b"U"), ctypes.c_char_p(b"N"), ref(ints[0]), ref(ints[1]), ref(one),
                   A.ctypes.data, ref(ints[2]), ref(one), C.ctypes.data, ref(ints[3]))


def _sparse_rows(phi, cell_group, cell_cluster, keep, G: int, n_cl: int) -> sparse.csr_matrix:
    """The G × n_cl CSR matrix of the cells ``keep`` (a mask), each cell's φ at (its group, its
    cluster), built from its arrays directly (its rows' cells in order, by group when not
    already; the clusters sorted within each row, as the canonical form of a COO build): no
    COO triplets, 32-bit indices where they fit."""
    sel = np.flatnonzero(keep)
    g = cell_group[sel]
    if g.size > 1 and np.any(g[1:] < g[:-1]):
        o = np.argsort(g, kind="stable")
        sel, g = sel[o], g[o]
    small = np.int32 if max(n_cl, sel.size) < 2**31 else np.int64
    indptr = np.zeros(G + 1, dtype=small)
    np.cumsum(np.bincount(g, minlength=G), out=indptr[1:])
    Phi = sparse.csr_matrix((phi[sel], cell_cluster[sel].astype(small), indptr), shape=(G, n_cl))
    Phi.sort_indices()
    return Phi


def joint_covariance(
    X: np.ndarray,
    e: np.ndarray,
    w: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    Sinv: np.ndarray,
    clusters: np.ndarray,
    ok: np.ndarray,
    rank: np.ndarray,
    *,
    vcov: str = "CR2",
    target: int = 1,
    counts: np.ndarray | None = None,
    cr2: str = "transformed",
    units: np.ndarray | None = None,
) -> JointCovariance:
    """Joint covariance of the ``target`` coefficient across groups (module docstring).

    ``X`` (n×p), residuals ``e``, weights ``w``, group codes 0..G−1, the groups' (pseudo-)inverse
    breads ``Sinv`` (G×p×p), cluster codes (any integers; a cluster may span groups), the groups
    whose target is estimable (``ok``) and their ranks; ``counts``: the copies each row stands
    for when rows merge copies of one row in one group and cluster (weights summed): CR1's
    n_s counts them; everything else is a function of the cells' sums and identical.
    ``cr2``: the CR2 form, ``"transformed"`` or ``"clubsandwich"`` (working model Φ = I;
    :mod:`._joint_phi`; used only where weights vary within a group, the forms being equal
    otherwise); ``units``: each row's unit (student) code, so that under ``"clubsandwich"`` the
    copies of one unit in one cell — rows equal in ``X`` and ``e`` — are merged into one
    observation first (weights summed).
    """
    ccodes, cl_uniq = pd.factorize(clusters)
    cells = joint_cells(X, e, w, groups, n_groups, Sinv, ccodes, ok, rank, vcov=vcov, target=target, counts=counts,
                        cr2=cr2, units=units)
    return joint_from_cells(cells, n_groups, len(cl_uniq), ok)


def joint_cells(
    X: np.ndarray,
    e: np.ndarray,
    w: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    Sinv: np.ndarray,
    clusters: np.ndarray,
    ok: np.ndarray,
    rank: np.ndarray,
    *,
    vcov: str = "CR2",
    target: int = 1,
    counts: np.ndarray | None = None,
    cr2: str = "transformed",
    units: np.ndarray | None = None,
    phi_identity: bool | None = None,
    squares: np.ndarray | None = None,
) -> JointCells:
    """The cells of :func:`joint_covariance` (same arguments; ``clusters`` as codes 0..n_cl−1,
    which the cells keep): their scores, groups and clusters, and each group's df and number
    of clusters. ``phi_identity``: whether the Φ = I form applies (:func:`uses_phi_identity`;
    None: decided from these groups, as :func:`joint_covariance` does for all of them), so
    that blocks of groups can follow one decision. ``squares``: the groups' ``Σ w² x x'`` when
    the fit has them (:attr:`._batched.GroupedFit.sq`; the Φ = I form's ``S2_s``, else formed
    from the rows).
    """
    if vcov not in JOINT_VCOV_TYPES:
        raise ValueError(f"joint covariance must be one of {JOINT_VCOV_TYPES}; got {vcov!r}")
    if cr2 not in CR2_FORMS:
        raise ValueError(f"cr2 must be one of {CR2_FORMS}; got {cr2!r}")
    G = n_groups
    if phi_identity is None:
        phi_identity = uses_phi_identity(w, groups, G, vcov, cr2)
    n_cl = int(clusters.max()) + 1 if len(clusters) else 0  # codes as given (numbered once by the caller)
    if phi_identity:  # by blocks of whole groups (module docstring)
        phi, cell_group, cell_cluster, N, sums = _phi_identity_blocks(X, w, e, groups, G, Sinv, clusters, n_cl,
                                                                      target, units, squares)
    else:
        N = Sinv  # the working matrix of the Satterthwaite df: q_c'q_d = δ_cd s_c − z_c'N_s z_d
        cell, cell_key = pd.factorize(groups.astype(np.int64) * n_cl + clusters)
        n, p = X.shape
        n_cells = len(cell_key)
        cell_group = (cell_key // n_cl).astype(np.intp)
        cell_cluster = (cell_key % n_cl).astype(np.intp)
        rows = np.bincount(cell, minlength=n_cells)
        m = Sinv[:, :, target]  # M_s c, c = e_target
        U = np.stack([np.bincount(cell, weights=w * e * X[:, a], minlength=n_cells) for a in range(p)], axis=1)
    if vcov == "CR2" and not phi_identity:
        # single-row cells: A = (1 − h)^{−1/2}, h = w x'M x (leverage-one cells get 0)
        single = rows == 1
        first = np.full(n_cells, -1, dtype=np.intp)
        first[cell[::-1]] = np.arange(n)[::-1]
        i1 = first[single]
        g1 = cell_group[single]
        x1 = X[i1]
        h = w[i1] * _quad(x1, Sinv, g1)
        inv_root = np.where(h < 1 - 1e-10, 1.0 / np.sqrt(np.clip(1.0 - h, 1e-300, None)), 0.0)
        U[single] *= inv_root[:, None]
        a1 = m[g1] * inv_root[:, None]
        z = np.empty((n_cells, p))
        z[single] = (w[i1] * np.einsum("ia,ia->i", x1, a1))[:, None] * x1  # S_c a_c
        s = np.empty(n_cells)
        s[single] = np.einsum("ia,ia->i", a1, z[single])
        multi = np.flatnonzero(~single)
        if multi.size:  # multi-row cells: the general formula, by cell size and in blocks of cells
            _multi_row_cells(X, w, e, cell, multi, rows[multi], cell_group[multi], Sinv, m, U, z, s)
        sums = df_sums(z, s, _quad(z, Sinv, cell_group), cell_group, G)
    G_s = np.bincount(cell_group, minlength=G).astype(float)
    df = G_s - 1.0
    if vcov == "CR2":  # Satterthwaite df per group (robust.CR2Blocks.eta, batched over groups)
        s1, s2, ZZ, szMz = sums  # szMz: Σ_c s_c z_c'N_s z_c
        MZZ = N @ ZZ
        num = (s1 - np.einsum("gii->g", MZZ)) ** 2
        den = s2 - 2.0 * szMz + np.einsum("gij,gji->g", MZZ, MZZ)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = np.where(den > 0, num / den, np.nan)

    if not phi_identity:
        phi = np.einsum("ca,ca->c", Sinv[cell_group, target, :], U)
    if vcov == "CR1":
        with np.errstate(invalid="ignore", divide="ignore"):
            n_s = np.bincount(groups, weights=counts, minlength=G).astype(float)  # (CR1's factor alone counts rows)
            fac = G_s / (G_s - 1.0) * (n_s - 1.0) / (n_s - rank)
        phi = phi * np.sqrt(np.where(np.isfinite(fac) & (fac > 0), fac, np.nan))[cell_group]
    return JointCells(phi=phi, group=_narrow(cell_group, G), cluster=_narrow(cell_cluster, n_cl), df=df, n_clusters=G_s)


def _entry_variances(V: np.ndarray, S2: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(V, Var̂(V))``: each entry's estimated variance from :func:`_cross_products`' sums
    (module docstring; ``Σ_c (φ_sc φ_tc)²`` where one cluster is shared). The same operations as
    ``np.where(m > 1, (m·S2 − V²)/(m − 1), S2)``, in place on one k × k array (``m`` is spent)."""
    one = ~(m > 1)
    out = m * S2
    out -= V * V
    m -= 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= m
    np.copyto(out, S2, where=one)
    return V, out


def joint_from_cells(cells: JointCells | list[JointCells], n_groups: int, n_clusters: int, ok: np.ndarray,
                     parts: np.ndarray | None = None) -> JointCovariance:
    """The :class:`JointCovariance` of the cells of all groups (:func:`joint_cells`; clusters
    coded 0..n_clusters−1): one :class:`JointCells`, or a list of them for consecutive blocks of
    groups (their groups' ``df`` and ``n_clusters`` in turn; each block's cells are taken as
    they are, not concatenated into one array of all cells); ``ok``: the groups whose target is
    estimable. ``parts``: each group's part (codes 0..K−1, e.g. its subject), when only the
    covariances within a part are wanted (each part is pooled on its own): those between parts
    are then not formed and are NaN, and only one part's cells are gathered at a time (from each
    block, by a mask of the block's cells). ``V = ΦΦ'`` costs the square of the groups a
    cluster serves, so K parts of equal size cost 1/K of the whole matrix."""
    blocks = [cells] if isinstance(cells, JointCells) else list(cells)
    G = n_groups
    G_s = np.concatenate([c.n_clusters for c in blocks])
    df = np.concatenate([c.df for c in blocks])
    if parts is None:
        V, Vvar = _entry_variances(*_cross_products(*_gathered(blocks, None), G, n_clusters))
    else:  # each part's block formed alone: only V and Var̂(V) are G × G
        V, Vvar = np.full((G, G), np.nan), np.full((G, G), np.nan)
        local = np.empty(G, dtype=np.intp)
        for k in range(int(parts.max()) + 1 if G else 0):  # parts (by-groups: a handful), not schools
            idx = np.flatnonzero(parts == k)
            local[idx] = np.arange(idx.size)
            phi, group, cluster = _gathered(blocks, parts == k)
            block = np.ix_(idx, idx)
            V[block], Vvar[block] = _entry_variances(*_cross_products(phi, local[group], cluster, idx.size,
                                                                      n_clusters))
            del phi, group, cluster
    ok = ok & (G_s > 1)
    for M in (V, Vvar):
        M[~ok, :] = np.nan
        M[:, ~ok] = np.nan
    return JointCovariance(vcov=V, df=np.where(ok, df, np.nan), n_clusters=G_s, vcov_var=Vvar)


def _gathered(blocks: list[JointCells], in_part: np.ndarray | None):
    """``(phi, group, cluster)`` of the blocks' cells (those whose group is ``in_part``, a mask of
    the groups, when given), in the blocks' order."""
    if in_part is None:
        sel = [slice(None)] * len(blocks)
    else:
        sel = [in_part[c.group] for c in blocks]  # a block's mask at a time
    return tuple(np.concatenate([getattr(c, k)[m] for c, m in zip(blocks, sel)]) for k in ("phi", "group", "cluster"))


_BLOCK_ROWS = 1 << 18
"""Rows (of whole groups) per block of the Φ = I joint covariance: its row-length codes, sorts
and gathers are a block's, not the whole stacked sample's (1M-row file, 2.1M pairs: peak 1,947 MB with
blocks of 2^18 rows, 2,030 MB with 2^20)."""


def _phi_identity_blocks(X, w, e, groups, G, Sinv, ccodes, n_cl, target, units, squares=None):
    """The Φ = I cells (:mod:`._joint_phi`) by blocks of whole groups of about
    :data:`_BLOCK_ROWS` rows (a loop over blocks, not groups): a cell lies in one group, so each
    block's cells, their copies merged, their ``N_s`` and df sums are its own; only the cells'
    scores φ_c (with their group and cluster) are gathered for ``V``; ``squares``: the groups'
    ``S2_s`` when known (of the rows as given: formed again for a block whose copies merge).
    Returns ``(phi, cell_group, cell_cluster, N, sums)``."""
    p = X.shape[1]
    N = np.zeros((G, 2 * p, 2 * p))
    sums = (np.zeros(G), np.zeros(G), np.zeros((G, 2 * p, 2 * p)), np.zeros(G))
    phi, cell_group, cell_cluster = [], [], []
    for g0, g1, rows in group_blocks(groups, G, _BLOCK_ROWS):  # blocks of groups
        if not rows.size:  # groups without rows: no cells
            continue
        wb, gb = w[rows], groups[rows] - g0
        bound = (g1 - g0) * n_cl
        key = gb.astype(np.int32 if bound <= 2**31 else np.int64) * n_cl + ccodes[rows]  # (below bound: no overflow)
        cell, cell_key = _first_codes(key, bound)
        del key
        sq = None if squares is None else squares[g0:g1]
        if units is not None:
            merged = _merge_copies(cell, units[rows], X, e, rows)
            if merged is not None:  # the copies' cells are unchanged
                key, rep = merged
                rows, wb, cell, sq = rows[rep], np.bincount(key, weights=wb), cell[rep], None
        cg = (cell_key // n_cl).astype(np.intp)
        phi_b, N[g0:g1], sums_b = phi_identity_cells(X, wb, e, rows, cell, len(cell_key), cg, Sinv[g0:g1], target,
                                                     sq)
        del rows
        for total, part in zip(sums, sums_b):
            total[g0:g1] = part
        phi.append(phi_b)
        cell_group.append(_narrow(cg + g0, G))
        cell_cluster.append(_narrow(cell_key % n_cl, n_cl))
    return np.concatenate(phi), np.concatenate(cell_group), np.concatenate(cell_cluster), N, sums


def uses_phi_identity(w: np.ndarray, groups: np.ndarray, G: int, vcov: str, cr2: str) -> bool:
    """Whether the cells take the Φ = I form (:mod:`._joint_phi`): CR2 in clubSandwich's form
    with weights that vary within some group (the forms are equal otherwise)."""
    return vcov == "CR2" and cr2 == "clubsandwich" and _varies_within(w, groups, G)


def _varies_within(w: np.ndarray, groups: np.ndarray, G: int) -> bool:
    """Whether the weights differ between two rows of some group: among the first rows first
    (matching weights that vary show it there), then among all."""
    for rows in (slice(0, 1 << 12), slice(None)):
        g = groups[rows]
        first = np.zeros(G)
        first[g] = w[rows]  # one of each group's weights (whichever write lands): all equal iff each is it
        if np.any(w[rows] != first[g]):
            return True
    return False


def _merge_copies(cell, units, X, e, rows):
    """``(key, rep)``: each of ``rows``' merged row and each merged row's first row, where rows of
    one cell and unit that are equal in ``X`` and ``e`` (copies of one observation) merge; None
    when no two rows merge. ``cell``, ``units``: those of ``rows``."""
    key, uniq = pd.factorize(cell.astype(np.int64) * (int(units.max()) + 1) + units)
    if len(uniq) == len(key):
        return None
    first = np.full(len(uniq), -1, dtype=np.intp)
    first[key[::-1]] = np.arange(len(key))[::-1]
    f = first[key]
    same = np.ones(len(key), dtype=bool)
    dup = np.flatnonzero(f != np.arange(len(key)))  # rows after the first of their (cell, unit)
    a, b = rows[dup], rows[f[dup]]
    same[dup] = (e[a] == e[b]) & np.all(np.take(X, a, axis=0) == np.take(X, b, axis=0), axis=1)
    key, uniq = pd.factorize(np.where(same, key, len(uniq) + np.arange(len(key))))
    if len(uniq) == len(key):
        return None
    rep = np.full(len(uniq), -1, dtype=np.intp)
    rep[key[::-1]] = np.arange(len(key))[::-1]
    return key, rep


def regularize(V: np.ndarray, V_var: np.ndarray) -> tuple[np.ndarray, float]:
    """``(V*, λ)``: the off-diagonal of ``V`` shrunk toward 0 by
    ``λ = min(1, Σ_{s≠t} Var̂(V_st) / Σ_{s≠t} V_st²)`` (Schäfer & Strimmer 2005, target D; module
    docstring), the diagonal kept. λ = 0 when V is diagonal."""
    off = ~np.eye(V.shape[0], dtype=bool)
    ss = float(np.sum(V[off] ** 2))
    lam = min(1.0, float(np.sum(V_var[off])) / ss) if ss > 0 else 0.0
    # D + (1 − λ)(V − D) entry by entry: (1 − λ)V_st off the diagonal (+ 0.0: a −0 as the sum's
    # +0), V_ss on it — the same numbers without the k × k temporaries
    out = V * (1.0 - lam)
    out += 0.0
    np.fill_diagonal(out, np.diag(V))
    return out, lam
