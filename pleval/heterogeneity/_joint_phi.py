"""CR2 per (set, cluster) cell with working model Φ = I: the clubSandwich form of the joint covariance.

In each set s (one school's regression, WLS with weights W and bread ``M_s = (X_s'W_sX_s)⁻¹``)
the weighted hat matrix is ``H = X M_s X'W``; clubSandwich's CR2 for a weighted ``lm`` (its
default target, Φ = I: equal error variances of the rows; Bell & McCaffrey 2002, Pustejovsky &
Tipton 2018 eq. 5) adjusts cell c's residuals by

    A_c = (B_c⁺)^{1/2},   B_c = [(I − H)(I − H)']_cc = I − U_c N_s U_c',

    U_c = [X_c, W_cX_c],  N_s = [[−M_s S2_s M_s, M_s], [M_s, 0]],  S2_s = Σ_{i∈s} w_i² x_i x_i',

and its score is ``X_c'W_cA_ce_c`` on the raw residuals (:func:`pleval.inference.robust.ols`
with ``cr2="clubsandwich"`` is the same for one set). ``E[e_c e_c'] = σ²B_c`` when the rows'
errors are independent with equal variance, so each school's variance is unbiased under that
model whatever the weights; the √W-transformed form (``cr2="transformed"``) is unbiased when
``Var(e_i) ∝ 1/w_i`` instead, which matching weights (how often a comparison student was
matched) do not imply. With weights constant within each set, ``B_c = I − H_cc`` and the two
forms coincide.

A row is one observation: a comparison student whose copies in one school's sets are merged
into one row (weights summed; :meth:`pleval.matching.MatchResult.school_sample`) counts once,
as it should — its copies share one outcome and one error, so they are one draw of Φ = I, not
several independent ones. Unmerged copies are merged first when the caller names the unit
(:func:`._joint.joint_covariance`'s ``units``), so both inputs give the same covariance.

Computation, batched and without an n_c × n_c matrix: cells of one row in closed form
(``A = B^{−1/2}``, a scalar); cells of r < 2p rows by their r × r ``B_c = I + D_c``, formed from
the blocks of ``N_s`` as ``D_c = X_cC_c' + C_cX_c'`` with ``C_c = X_cK_s/2 − W_cX_cM_s``,
``K_s = M_sS2_sM_s`` (r × p products per cell; each row's ``[c_i', w_ix_i'm_s]`` as one product of
``[x_i; w_ix_i]`` by tiles of rows of one set, no matrix gathered per cell), ``A_c`` applied to one vector: by the binomial
series ``B_c^{−1/2} = Σ_k C(−1/2, k) D_c^k`` where ``‖D_c‖_F ≤`` :data:`_SERIES` (most cells: a
cell's leverage is small in a large set), else by a batched ``eigh`` (:func:`_root_times`);
larger cells on the 2p-dimensional span of ``U_c`` from ``T_c = U_c'U_c`` and ``N_s``
(:func:`pleval.inference.robust._inverse_root_factors`: ``A_c = I + U_cΓ_cU_c'``), in blocks of
cells. Each size class's rows are gathered when it comes, by set and cell. Each cell keeps only
its score of the target coefficient, ``φ_c = e_t'M_sX_c'W_cA_ce_c = p_c'e_c`` with
``p_c = A_cW_cX_cM_s e_t``. For the Satterthwaite df (working model Φ = I, as clubSandwich) ``z_c = U_c'p_c`` and ``s_c = p_c'p_c`` give
``q_c'q_d = δ_cd s_c − z_c'N_s z_d`` within a set; only their per-set sums enter the df
(:func:`df_sums`), formed once per call of :func:`phi_identity_cells` (a block of whole sets of about
:data:`._joint._BLOCK_ROWS` rows). The df's ``Σ_c s_c z_c'N_s z_c`` takes each cell's
``z_c'N_s z_c = p_c'U_cN_sU_c'p_c = −p_c'D_cp_c`` (``U_cN_sU_c' = I − B_c``) from the r × r ``D_c``
already formed, not from a 2p × 2p sum of ``s_c z_cz_c'`` per set.
"""

from __future__ import annotations

import numpy as np

from ..inference.robust import _inverse_root_factors, cluster_order, grouped_cross_products

_CHUNK = 1 << 14
"""Cells per block of the batched 2p × 2p algebra (bounded memory)."""

_TOL = 1e-10
"""Eigenvalues of ``B_c`` at or below this are taken as 0 (Moore–Penrose root, as clubSandwich)."""

_SERIES = 0.1
"""Cells of 2..2p−1 rows with ``‖B_c − I‖_F`` at most this take ``B_c^{−1/2}`` from its binomial series
(:func:`_root_times`; at most 16 matrix-vector products), the others an eigen-decomposition (1M-row
file: 99.7% of those cells below 0.1, median 0.015). At most 0.999 (fewer than 2^16 terms)."""


def _inv_root(lam: np.ndarray) -> np.ndarray:
    return np.where(lam > _TOL, np.clip(lam, _TOL, None) ** -0.5, 0.0)


def working_matrices(S2: np.ndarray, Sinv: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """``N_s`` (G × 2p × 2p) and ``b_s = [0; M_s e_target]`` (G × 2p) of every set from its
    ``S2_s = Σ_{i∈s} w_i² x_i x_i'`` and bread ``M_s``."""
    G, p = Sinv.shape[:2]
    N = np.zeros((G, 2 * p, 2 * p))
    N[:, :p, :p] = -(Sinv @ S2 @ Sinv)
    N[:, :p, p:] = Sinv
    N[:, p:, :p] = Sinv
    b = np.zeros((G, 2 * p))
    b[:, p:] = Sinv[:, :, target]
    return N, b


def phi_identity_cells(X: np.ndarray, w: np.ndarray, e: np.ndarray, rows: np.ndarray, cell: np.ndarray,
                       n_cells: int, cell_group: np.ndarray, Sinv: np.ndarray, target: int,
                       squares: np.ndarray | None = None):
    """``(phi, N, sums)``: each cell's adjusted score of the target coefficient
    ``φ_c = m_s'X_c'W_cA_ce_c = p_c'e_c`` (``A_c`` symmetric), each set's ``N_s``
    (:func:`working_matrices`) and, per set, the Satterthwaite df's sums
    ``(Σ s_c, Σ s_c², Σ z_cz_c', Σ s_c z_c'N_sz_c)`` over its cells (module docstring;
    :func:`df_sums`) from the cells' ``z_c``, ``s_c`` and ``z_c'N_sz_c``. The rows are ``X[rows]``, ``e[rows]``
    with weights ``w`` (one per row of ``rows``); ``cell``: each row's cell 0..n_cells−1;
    ``cell_group``: each cell's set; ``Sinv``: the sets' breads; ``squares``: the sets'
    ``S2_s = Σ w_i² x_i x_i'`` when known (the fit's, :attr:`._batched.GroupedFit.sq`, from the
    pass that forms ``S_s``), else summed over these rows.

    The rows are ordered by size class, set and cell (one radix sort), each class's rows gathered
    as it comes, straight into tiles of whole cells of one set (:func:`_tiles`), as
    ``u_i = [x_i; w_ix_i]``: each row's ``u_i'P_s = [c_i', w_ix_i'm_s]`` (``P_s`` of
    :func:`_row_matrices`) is then one product per tile (:func:`_tile_products`), not one per cell
    with a gathered matrix, and the class's cells are taken from the tiles as they lie."""
    p = X.shape[1]
    q = 2 * p
    G = len(Sinv)
    phi = np.empty(n_cells)
    size = np.bincount(cell, minlength=n_cells)
    cls = np.minimum(size, q)  # cells of fewer rows than 2p by their size, the others together
    by_set = np.argsort(cell_group, kind="stable")  # cells by set
    cells_all = by_set[np.argsort(cls[by_set].astype(np.uint16), kind="stable")]  # by class, then set
    if squares is None:  # these rows' S2_s (their copies merged here, or no fit's sums given)
        squares = grouped_cross_products(np.take(X, rows, axis=0), cell_group[cell], G, w=w * w)[0]
    N, b = working_matrices(squares, Sinv, target)
    P = _row_matrices(N, b)
    rank = np.empty(n_cells, dtype=np.intp)
    rank[cells_all] = np.arange(n_cells)
    order = cluster_order(rank[cell], n_cells)[0]  # rows by class, set and cell, as the cells (radix sorts)
    del rank
    src = rows if order is None else rows[order]  # X's rows in that order
    w, e = (w, e[src]) if order is None else (w[order], e[src])
    del order
    z, s, zNz = np.empty((n_cells, q)), np.empty(n_cells), np.empty(n_cells)  # in the order of ``cells_all``
    row0 = cell0 = 0
    n_of, rows_of = np.bincount(cls, minlength=q + 1), np.bincount(cls, weights=size, minlength=q + 1)  # cells, rows
    for r in np.flatnonzero(n_of):  # at most 2p sizes, not cells
        k = int(n_of[r])
        cells = cells_all[cell0 : cell0 + k]
        span = slice(row0, row0 + int(rows_of[r]))  # the class's rows
        at = slice(cell0, cell0 + k)
        row0, cell0 = span.stop, at.stop
        g = cell_group[cells]
        if r < q:  # the class's rows gathered into tiles of whole cells of one set (:func:`_tiles`)
            slot, tile_set, t = _tiles(g, r)
            n_pad = len(tile_set) * t  # cells, with the empty ones
            pos = (slot[:, None] * r + np.arange(r)).ravel()  # each row's place among the padded rows
            idx = np.zeros(n_pad * r, dtype=np.intp)
            idx[pos] = src[span]
            Xk = np.empty((n_pad * r, q))  # the rows' u_i = [x_i, w_ix_i]
            Xk[:, :p] = np.take(X, idx, axis=0)  # gathered contiguous, then copied: 2x faster than take(out=) into the strided half
            empty = np.ones(n_pad * r, dtype=bool)
            empty[pos] = False
            Xk[empty, :p] = 0.0
            wk, ek = np.zeros(n_pad * r), np.zeros(n_pad * r)
            wk[pos], ek[pos] = w[span], e[span]
            np.einsum("ij,i->ij", Xk[:, :p], wk, out=Xk[:, p:])  # the same products: 1.7x faster than np.multiply into the strided half
            phi_k, z_k, s_k, zNz_k = np.empty(n_pad), np.empty((n_pad, q)), np.empty(n_pad), np.empty(n_pad)
            (_single if r == 1 else _small)(Xk, wk, ek, r, t, tile_set, P, phi_k, z_k, s_k, zNz_k)
            phi[cells] = phi_k[slot]
            for out, part in ((z, z_k), (s, s_k), (zNz, zNz_k)):  # the class's cells, straight into place
                np.take(part, slot, axis=0, out=out[at], mode="clip")  # (valid slots; "raise" would buffer out)
        else:
            Xk = np.take(X, src[span], axis=0)
            local = np.repeat(np.arange(k), size[cells])
            _large(Xk, w[span], e[span], local, cells, g, N, b, phi, z[at], s[at], zNz[at])
        del Xk
    return phi, N, df_sums(z, s, zNz, cell_group[cells_all], G)


def df_sums(z: np.ndarray, s: np.ndarray, zNz: np.ndarray, cell_group: np.ndarray, G: int):
    """Per set, ``(Σ_c s_c, Σ_c s_c², Σ_c z_cz_c', Σ_c s_c z_c'N_sz_c)`` over its cells from each
    cell's ``z_c``, ``s_c`` and ``z_c'N_sz_c`` (``zNz``): all the Satterthwaite df needs of the cells
    (:func:`._joint.joint_covariance`: ``Σ_c s_c z_c'N_sz_c = tr(N_s Σ_c s_cz_cz_c')``). The matrix
    sum by :func:`pleval.inference.robust.grouped_cross_products` (a product of ``Z'Z`` per tile),
    the others by ``np.bincount``."""
    zz = grouped_cross_products(z, cell_group, G)[0]
    s1, s2 = np.bincount(cell_group, weights=s, minlength=G), np.bincount(cell_group, weights=s * s, minlength=G)
    return s1, s2, zz, np.bincount(cell_group, weights=s * zNz, minlength=G)


def _row_matrices(N: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``P_s = [[K_s/2, 0], [−M_s, m_s]]`` (G × 2p × (p + 1)) with ``K_s = M_sS2_sM_s`` and
    ``m_s = M_se_t`` (the blocks of ``N_s`` and ``b_s``): a row's ``u_i'P_s = [c_i', w_ix_i'm_s]``
    with ``u_i = [x_i; w_ix_i]`` and ``c_i = K_sx_i/2 − w_iM_sx_i``; ``U_cN_sU_c' = −X_cKX_c' +
    X_cMX_c'W_c + W_cX_cMX_c'`` is ``−(X_cC_c' + C_cX_c')``, so ``B_c = I + X_cC_c' + C_cX_c'``
    (r × p products, not r × 2p × 2p), and ``U_c b_s = W_cX_cm_s``."""
    p = N.shape[1] // 2
    P = np.zeros((len(N), 2 * p, p + 1))
    P[:, :p, :p] = -0.5 * N[:, :p, :p]
    P[:, p:, :p] = -N[:, :p, p:]
    P[:, p:, p] = b[:, p:]
    return P


_TILE = 32
"""Rows per tile of the rows' products with their set's matrices (:func:`_tiles`; 2M rows, one
thread: 0.14 s with tiles of 32, 0.23 s with 16, 1.8 s with 8)."""


def _tiles(g: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(slot, tile_set, t)``: a layout of cells of r rows whose sets ``g`` are in runs, in tiles
    of t whole cells of one set (each run padded with empty cells to a multiple of t): each cell's
    place among the padded cells, each tile's set. A tile's rows are then one product with its
    set's matrix, a cell's rows are consecutive, and the cells' algebra runs on the padded cells
    as they are (an empty cell, of rows 0 and weights 0, gives 0): no per-row gather of the
    matrices, and no gather of the products. t is the least multiple of ``4/gcd(r, 4)`` with
    ``t·r ≥`` :data:`_TILE`: tiles of a multiple of 4 rows, each row's product the same, bit for
    bit, as in tiles of 32 (OpenBLAS's ``dgemm`` takes rows by 4; a remainder row goes through
    another kernel, whose sums round otherwise)."""
    unit = 4 // np.gcd(r, 4)
    t = unit * -(-_TILE // (unit * r))
    k = len(g)
    starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    counts = np.diff(np.append(starts, k))
    tiles = -(-counts // t)
    slot = np.repeat((np.cumsum(tiles) - tiles) * t - starts, counts) + np.arange(k)
    return slot, np.repeat(g[starts], tiles), t


def _tile_products(X: np.ndarray, r: int, t: int, tile_set: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Each row's product with its set's matrix, ``x_i'P_s``, for the rows ``X`` of whole tiles of
    :func:`_tiles` (sets ``tile_set``): one batched ``matmul`` of the tiles with their set's ``P``,
    as (cells × r × columns)."""
    n_tiles = len(tile_set)
    out = np.matmul(X.reshape(n_tiles, t * r, -1), np.take(P, tile_set, axis=0))
    return out.reshape(n_tiles * t, r, -1)


def _chunks(n_cells: int, t: int):
    """Blocks of about :data:`_CHUNK` cells, whole tiles of t cells each: ``(cells, tiles)`` slices."""
    step = t * max(1, _CHUNK // t)
    for lo in range(0, n_cells, step):
        hi = min(lo + step, n_cells)
        yield slice(lo, hi), slice(lo // t, hi // t)


def _single(X, w, e, r, t, tile_set, P, phi, z, s, zNz) -> None:
    """One-row cells in the padded layout of :func:`_tiles` (rows ``X``, ``w``, ``e``; ``phi``,
    ``z``, ``s``, ``zNz`` the padded cells' to fill): ``u = [x; wx]``, ``B = 1 − u'N_s u = 1 + 2x'c``
    (:func:`_row_matrices`), ``A = B^{−1/2}`` (0 where B = 0), ``p = Awx'm``, ``z = [xp; wxp]``,
    ``s = p²``, ``φ = pe``, ``z'N_sz = p²u'N_su = −2x'c p²``; a block of cells at a time."""
    p = X.shape[1] // 2
    for sl, ts in _chunks(len(X), t):  # blocks of cells
        us = X[sl]
        Y = _tile_products(us, 1, t, tile_set[ts], P)[:, 0]
        xc = np.einsum("ca,ca->c", us[:, :p], Y[:, :p])
        pc = _inv_root(1.0 + 2.0 * xc) * Y[:, p]
        phi[sl] = pc * e[sl]
        np.multiply(us, pc[:, None], out=z[sl])
        s[sl] = pc * pc
        zNz[sl] = -2.0 * xc * s[sl]


def _small(X, w, e, r, t, tile_set, P, phi, z, s, zNz) -> None:
    """Cells of r rows, 1 < r < 2p, in the padded layout of :func:`_tiles` (rows ``X``, ``w``,
    ``e`` cell by cell; ``phi``, ``z``, ``s``, ``zNz`` the padded cells' to fill): ``B_c = I + D_c``,
    ``D_c = X_cC_c' + C_cX_c'`` (:func:`_row_matrices`) is r × r; ``p_c = A_cW_cX_cm_s`` with
    ``A_c = (B_c⁺)^{1/2}`` applied by :func:`_root_times`, ``z_c = [X_c'p_c; X_c'W_cp_c]``,
    ``s_c = p_c'p_c``, ``φ_c = p_c'e_c``, ``z_c'N_sz_c = −p_c'D_cp_c``; a block of cells at a time."""
    p = X.shape[1] // 2
    for sl, ts in _chunks(len(X) // r, t):  # blocks of cells
        rows = slice(sl.start * r, sl.stop * r)
        Uc, ec = X[rows].reshape(-1, r, 2 * p), e[rows].reshape(-1, r)
        Y = _tile_products(X[rows], r, t, tile_set[ts], P)
        D = Y[:, :, :p] @ Uc[:, :, :p].transpose(0, 2, 1)
        D = D + D.transpose(0, 2, 1)
        pc = _root_times(D, Y[:, :, p])
        np.einsum("cr,cr->c", pc, ec, out=phi[sl])
        np.matmul(pc[:, None, :], Uc, out=z[sl, None, :])  # [X_c'p_c; X_c'W_cp_c] = U_c'p_c
        np.einsum("cr,cr->c", pc, pc, out=s[sl])
        np.negative(np.einsum("cr,cr->c", pc, np.einsum("cij,cj->ci", D, pc)), out=zNz[sl])


def _root_times(D: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(B⁺)^{1/2}v`` for a stack of ``B = I + D`` (D symmetric, cells × r × r) and vectors v.

    Where ``ρ = ‖D‖_F ≤`` :data:`_SERIES`, B's eigenvalues lie in [1 − ρ, 1 + ρ] (so ``B⁺ = B⁻¹``)
    and ``B^{−1/2} = Σ_k a_kD^k``, the binomial series, ``a_k = C(−1/2, k) = (−1)^k C(2k, k)/4^k``
    (``|a_k| ≤ 1``; Higham 2008, *Functions of Matrices*, §6.8.1): each term one matrix-vector
    product, a cell's series cut after the first K terms with ``ρ^{K+1}/(1 − ρ) ≤ 2⁻⁵³`` (what is
    left, relative to ‖v‖, is below rounding). Elsewhere (a cell whose leverage reaches 1 among
    them) ``B = QΛQ'`` and ``QΛ^{+1/2}Q'v``, eigenvalues ≤ :data:`_TOL` taken as 0.

    The series runs with the cells last (``D`` as r × r × cells, ``v`` as r × cells): each term's
    products are then ``r²`` passes along the cells (``einsum("ijc,jc->ic")``, the sum over j in
    order), 4–7 times faster for r ≤ 8 than one small product per cell."""
    rho = np.sqrt(np.einsum("cij,cij->c", D, D))
    series = rho <= _SERIES
    rs = np.where(series, rho, 0.5)  # the others: any ρ in (0, 1), their count is not used
    with np.errstate(divide="ignore"):  # ρ = 0: log ρ = −∞, no term after the first
        k = np.ceil(np.log(2.0**-53 * (1.0 - rs)) / np.log(rs)) - 1.0
    terms = np.where(series, np.maximum(k, 0.0), -1.0).astype(np.intp)
    order = np.argsort((terms.max(initial=0) - terms).astype(np.uint16), kind="stable")  # series cells first, more terms before
    ns = int(np.count_nonzero(series))
    top = int(terms[order[0]]) if ns else 0
    m_of = np.searchsorted(-terms[order[:ns]], -np.arange(top + 1), side="right")  # cells with at least k terms: a prefix
    y = np.take(v, order, axis=0)
    Dt = np.take(D.transpose(1, 2, 0), order[:ns], axis=2)  # the series cells, last
    yt = np.ascontiguousarray(y[:ns].T)
    t = yt
    a = 1.0
    for k in range(1, top + 1):  # terms of the series, not cells
        m = int(m_of[k])
        a *= -(2.0 * k - 1.0) / (2.0 * k)
        t = np.einsum("ijc,jc->ic", Dt[:, :, :m], t[:, :m])
        yt[:, :m] += a * t
    y[:ns] = yt.T
    if ns < len(D):
        B = np.take(D, order[ns:], axis=0)
        r = B.shape[1]
        B[:, np.arange(r), np.arange(r)] += 1.0
        lam, Q = np.linalg.eigh(B)
        y[ns:] = np.einsum("cij,cj->ci", Q, _inv_root(lam) * np.einsum("cji,cj->ci", Q, y[ns:]))
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return np.take(y, back, axis=0)  # the cells in their order again (a gather of rows: faster than a scatter)


def _large(X, w, e, local, cells, g, N, b, phi, z, s, zNz) -> None:
    """Cells of 2p rows or more (rows ``X``, ``w``, ``e`` sorted by cell, ``local`` their cell
    0..len−1; ``z``, ``s``, ``zNz`` the cells' to fill): ``T_c = U_c'U_c``, ``R_c = U_c'e_c`` by
    batched products, ``A_c = I + U_cΓ_cU_c'``; the score is the W X half of ``R_c + T_cΓ_cR_c``, so
    with ``h_c = b_s + Γ_cT_cb_s``, ``φ_c = h_c'R_c``; ``z_c = T_ch_c``, ``s_c = h_c'z_c``, and
    ``z_c'N_sz_c`` as it is."""
    bounds = np.searchsorted(local, np.arange(0, len(cells) + _CHUNK, _CHUNK))
    for blk in range(-(-len(cells) // _CHUNK)):  # blocks of cells
        lo, hi = blk * _CHUNK, min((blk + 1) * _CHUNK, len(cells))
        rows = slice(bounds[blk], bounds[blk + 1])
        Ua = np.hstack([X[rows], X[rows] * w[rows, None]])
        T, R = grouped_cross_products(Ua, local[rows] - lo, hi - lo, e[rows])
        gs = g[lo:hi]
        Gam = _inverse_root_factors(T, N[gs])
        h = b[gs] + np.einsum("cij,cjk,ck->ci", Gam, T, b[gs], optimize=True)
        phi[cells[lo:hi]] = np.einsum("ci,ci->c", h, R)
        z[lo:hi] = np.einsum("cij,cj->ci", T, h)
        s[lo:hi] = np.einsum("ci,ci->c", h, z[lo:hi])
        zNz[lo:hi] = np.einsum("ci,cij,cj->c", z[lo:hi], N[gs], z[lo:hi], optimize=True)
