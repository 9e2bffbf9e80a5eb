"""The Φ = I (clubSandwich) form of the joint covariance's CR2 (pleval.heterogeneity._joint_phi):
against the direct n×n computation on the stacked design, against ``ols(cr2="clubsandwich")``
for one school's set, its equality with the transformed form when weights are constant within
each set, and merging of copies."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from pleval.errors import DataError
from pleval.heterogeneity import school_effects
from pleval.inference import ols

from .test_heterogeneity_joint import _design, _pinv_sqrt, _small_schools, stacked, stacked_design

KW = dict(cluster="student_id", school="school_id", vcov="CR2", sd=1.0)


def direct_phi_identity(y, X, cl, w, cols):
    """The n×n clubSandwich CR2 of the stacked WLS fit: ``H = XMX'W``, ``B = (I − H)(I − H)'``,
    ``A_c = (B_cc⁺)^{1/2}`` per stacked cluster, ``V = M Σ_c X_c'W_cA_ce_ce_c'A_cW_cX_c M``, and
    the Satterthwaite df ``tr(Ω)²/‖Ω‖²_F``, ``Ω = QQ'``, ``q_c = (I − H)'p_c``,
    ``p_c = A_cW_cX_cM e_j`` (Pustejovsky & Tipton 2018, Φ = I)."""
    M = np.linalg.pinv((X * w[:, None]).T @ X)
    H = X @ M @ (X * w[:, None]).T
    e = y - H @ y
    IH = np.eye(len(y)) - H
    B = IH @ IH.T
    groups = [cl == g for g in pd.unique(cl)]
    A = [_pinv_sqrt(B[np.ix_(i, i)]) for i in groups]
    WX = X * w[:, None]
    U = np.array([WX[i].T @ a @ e[i] for i, a in zip(groups, A)])
    V = M @ (U.T @ U) @ M
    dfs = []
    for j in cols:
        Q = np.zeros((len(groups), len(y)))
        for r, (i, a) in enumerate(zip(groups, A)):
            p = np.zeros(len(y))
            p[i] = a @ WX[i] @ M[:, j]
            Q[r] = IH.T @ p
        Om = Q @ Q.T
        dfs.append(np.trace(Om) ** 2 / np.sum(Om**2))
    return V[np.ix_(cols, cols)], np.array(dfs)


@pytest.mark.parametrize("block_rows", [1, 40, 1 << 20])
def test_phi_identity_matches_the_direct_n_by_n_computation(monkeypatch, block_rows):
    """Also by blocks of whole groups of about 1 (one group each), 40 and all rows."""
    from pleval.heterogeneity import _joint

    monkeypatch.setattr(_joint, "_BLOCK_ROWS", block_rows)
    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=2)
    X, cl, k = stacked_design(d)
    res = school_effects(d, covariates=["pretest"], cr2="clubsandwich", **KW)
    V, dfs = direct_phi_identity(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-9)
    assert res.options["cr2"] == "clubsandwich"
    old = school_effects(d, covariates=["pretest"], cr2="transformed", **KW)  # weights vary: the forms differ
    assert np.abs(np.diag(old.vcov_raw["all"].to_numpy()) / np.diag(V) - 1).max() > 0.01


@pytest.mark.parametrize("chunk, tile", [(1, 32), (3, 2), (1 << 14, 1), (1 << 14, 2), (1 << 14, 32)])
def test_phi_identity_by_cell_size_and_in_blocks(monkeypatch, chunk, tile):
    """Cells of one row (closed form), of 2..2p−1 rows (their r × r B_c) and of 2p rows or
    more (the 2p-dimensional span of [X_c, W_cX_c]), in blocks of 1, 3 and all cells, with the
    rows' products with their set's matrices in tiles of 1, 2 and 32 rows (runs of a set's rows
    cut into several tiles, the last padded)."""
    from pleval.heterogeneity import _joint_phi

    covs = ["pretest"]  # p = 3: 2p = 6
    d = _small_schools()
    X, cl, k = _design(d, covs)
    sizes = pd.Series(cl).groupby([d["_pl_school"].to_numpy(), cl]).size()
    assert (sizes == 1).any() and ((sizes > 1) & (sizes < 6)).sum() >= 5 and (sizes >= 6).sum() >= 5
    monkeypatch.setattr(_joint_phi, "_CHUNK", chunk)
    monkeypatch.setattr(_joint_phi, "_TILE", tile)
    res = school_effects(d, covariates=covs, cr2="clubsandwich", **KW)
    V, dfs = direct_phi_identity(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-8)


def _spy_rho(monkeypatch):
    """The ‖D_c‖_F of every cell given to ``_joint_phi._root_times``, recorded as it runs (but the
    empty cells padding the tiles, whose D is 0)."""
    from pleval.heterogeneity import _joint_phi

    def rho(D):
        n = np.linalg.norm(D, axis=(1, 2))
        return n[D.any(axis=(1, 2))]

    seen, root_times = [], _joint_phi._root_times
    monkeypatch.setattr(_joint_phi, "_root_times", lambda D, v: seen.append(rho(D)) or root_times(D, v))
    return seen


@pytest.mark.parametrize("series", [0.0, 0.25, 0.999])
def test_phi_identity_by_series_and_by_eigen_decomposition(monkeypatch, series):
    """Cells of 2..2p−1 rows take ``(B_c⁺)^{1/2}`` from its binomial series where
    ``‖B_c − I‖_F ≤ _SERIES``, from an eigen-decomposition elsewhere: with no cell, some and all
    below the threshold, the direct n×n computation."""
    from pleval.heterogeneity import _joint_phi

    monkeypatch.setattr(_joint_phi, "_SERIES", series)
    seen = _spy_rho(monkeypatch)
    d = _small_schools()
    X, cl, k = _design(d, ["pretest"])
    res = school_effects(d, covariates=["pretest"], cr2="clubsandwich", **KW)
    rho = np.concatenate(seen)
    below = int((rho <= series).sum())
    assert {0.0: below == 0, 0.25: 0 < below < rho.size, 0.999: below == rho.size}[series]
    V, dfs = direct_phi_identity(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-9)


def test_phi_identity_in_larger_sets(monkeypatch):
    """Sets of about 250 rows: most cells of 2..2p−1 rows have ``‖B_c − I‖_F`` below the default
    threshold (binomial series), a few above; the direct n×n computation."""
    from pleval.heterogeneity import _joint_phi

    seen = _spy_rho(monkeypatch)
    d = stacked(n_pl=3, n_comp=60, per_set=40, seed=5)
    res = school_effects(d, covariates=["pretest"], cr2="clubsandwich", **KW)
    rho = np.concatenate(seen)
    assert (rho <= _joint_phi._SERIES).sum() >= 40 and (rho > _joint_phi._SERIES).any()
    X, cl, k = stacked_design(d)
    V, dfs = direct_phi_identity(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-9)


@pytest.mark.parametrize("r", [2, 3, 7])
def test_root_times_equals_the_pseudo_inverse_root(monkeypatch, r):
    """``(B⁺)^{1/2}v`` for ``B = I + D``: by the binomial series where ``‖D‖_F ≤ _SERIES`` (D = 0,
    small, just below the threshold), by an eigen-decomposition just above it, far above it and
    where B is singular (``D = −uu'``, leverage 1: the Moore–Penrose root) — each as that one
    matrix's own eigen-decomposition gives; only the cells above the threshold are decomposed."""
    from pleval.heterogeneity import _joint_phi

    rng = np.random.default_rng(r)
    Ds = []
    for rho in (0.0, 1e-3, 0.03, 0.0999, 0.1001, 0.6):
        D = rng.normal(size=(r, r))
        Ds.append((D + D.T) * (rho / np.linalg.norm(D + D.T)))
    u = rng.normal(size=r)
    Ds.append(-np.outer(u, u) / (u @ u))
    D, v = np.array(Ds), rng.normal(size=(len(Ds), r))
    decomposed, eigh = [], np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda B: decomposed.append(len(B)) or eigh(B))
    got = _joint_phi._root_times(D, v)
    monkeypatch.undo()
    assert decomposed == [3]
    want = np.array([_pinv_sqrt(np.eye(r) + Di) @ vi for Di, vi in zip(D, v)])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    assert np.abs(want[-1] @ u) < 1e-12  # the singular direction dropped


def test_root_times_with_long_series(monkeypatch):
    """With the threshold moved up to 0.999, cells of ρ up to 0.95 need hundreds of terms (more
    than 255): the cells are ordered by their number of terms all the same, each series is
    summed to its end, and the products equal each matrix's own eigen-decomposition."""
    from pleval.heterogeneity import _joint_phi

    monkeypatch.setattr(_joint_phi, "_SERIES", 0.999)
    rng = np.random.default_rng(11)
    rho = np.array([0.95, 0.2, 0.9, 0.5, 0.05, 0.0, 0.95])
    D = rng.normal(size=(len(rho), 4, 4))
    D = D + D.transpose(0, 2, 1)
    D *= (rho / np.linalg.norm(D, axis=(1, 2)))[:, None, None]
    v = rng.normal(size=(len(rho), 4))
    want = np.array([_pinv_sqrt(np.eye(4) + Di) @ vi for Di, vi in zip(D, v)])
    np.testing.assert_allclose(_joint_phi._root_times(D, v), want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("tile", [1, 3, 32])
@pytest.mark.parametrize("r", [1, 2, 3, 5, 8])
def test_tile_products_equal_a_product_per_row(monkeypatch, tile, r):
    """Cells of r rows whose sets come in runs (runs of 1 to 40 cells, the same set in several
    runs), laid out in tiles of whole cells of one set (each run padded with empty cells): every
    cell in its own place, in order, the tiles' rows a multiple of 4 and at least ``_TILE`` (or
    4/gcd(r, 4) cells), and each row's ``x_i'P_{g_i}`` by tiles equal to the product with its own
    matrix; the empty cells' rows give 0."""
    from pleval.heterogeneity import _joint_phi

    rng = np.random.default_rng(7 + r)
    g = np.repeat(rng.integers(0, 6, 30), rng.integers(1, 41, 30))  # each cell's set
    x, P = rng.normal(size=(len(g) * r, 4)), rng.normal(size=(6, 4, 9))
    monkeypatch.setattr(_joint_phi, "_TILE", tile)
    slot, tile_set, t = _joint_phi._tiles(g, r)
    assert (t * r) % 4 == 0 and (t * r >= tile or t == 4 // np.gcd(r, 4))
    assert np.all(np.diff(slot) > 0) and np.array_equal(tile_set[slot // t], g)  # in order, in a tile of its set
    xp = np.zeros((len(tile_set) * t * r, 4))
    xp.reshape(-1, r, 4)[slot] = x.reshape(-1, r, 4)
    got = _joint_phi._tile_products(xp, r, t, tile_set, P)
    assert got.shape == (len(tile_set) * t, r, 9)
    np.testing.assert_allclose(got[slot].reshape(-1, 9), np.einsum("ia,iab->ib", x, P[np.repeat(g, r)]), rtol=1e-13,
                               atol=1e-13)
    empty = np.ones(len(got), dtype=bool)
    empty[slot] = False
    assert (empty.any() or t == 1) and not got[empty].any()


@pytest.mark.parametrize("series", [None, 0.999])
def test_phi_identity_with_cells_of_leverage_one(monkeypatch, series):
    """A covariate that is 1 on exactly one comparison school's students in a set makes that
    school's cell degenerate (``(I − H)'W_c1_c = 0``, so ``B_cW_c1_c = 0``; its eigenvalue is 0 to
    rounding, of either sign): the Moore–Penrose root (eigenvalues ≤ ``_TOL`` taken as 0) drops
    that direction — for a cell of one row (``A = 0``), of 2..2p−1 rows and of more — as the
    direct n×n computation with a pseudo-inverse root does (inverting the rounding-level
    eigenvalue instead makes the covariance singular). Also with the binomial series allowed up to
    ‖B_c − I‖_F = 0.999 (a degenerate cell has ‖B_c − I‖ ≥ 1: eigen-decomposition still)."""
    from pleval.heterogeneity import _joint_phi

    if series is not None:
        monkeypatch.setattr(_joint_phi, "_SERIES", series)
    d = _small_schools()
    picked = ["C5", "C7", "C1"]  # in no set together
    d["only"] = d["school_id"].isin(picked).astype(float)
    X, cl, k = _design(d, ["only"])  # p = 3: 2p = 6
    sizes = pd.Series(cl).groupby([d["_pl_school"].to_numpy(), cl]).size()
    own = sizes[sizes.index.get_level_values(1).isin(picked)]
    assert set(own.groupby(level=0).size()) == {1} and {1, 4, 7} <= set(own)  # one such cell per set; each kind
    res = school_effects(d, covariates=["only"], cr2="clubsandwich", **KW)
    V, dfs = direct_phi_identity(d["posttest"].to_numpy(), X, cl, d["_weight"].to_numpy(), list(range(k, 2 * k)))
    np.testing.assert_allclose(res.vcov_raw["all"].to_numpy(), V, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.table["df"], dfs, rtol=1e-8)


def test_one_school_equals_ols_clubsandwich():
    """No comparison school shared: each school's SE and df are ``ols(..., cr2="clubsandwich")``
    on its own set with the same clusters (that fit's rows are distinct students)."""
    d = stacked(n_pl=4, n_comp=12, per_set=3, seed=3, share=False)
    res = school_effects(d, covariates=["pretest"], cr2="clubsandwich", **KW).table.set_index("school")
    for s, sub in d.groupby("_pl_school"):
        Xs = np.column_stack([np.ones(len(sub)), sub["treatment"], sub["pretest"] - d["pretest"].mean()])
        cls = np.where(sub["treatment"] == 1, "T" + sub["student_id"], sub["school_id"])
        f = ols(sub["posttest"], Xs, weights=sub["_weight"], clusters=cls, vcov="CR2", cr2="clubsandwich")
        assert res.loc[s, "se"] == pytest.approx(f.se[1], rel=1e-10)
        assert res.loc[s, "df"] == pytest.approx(f.coef_df(1), rel=1e-9)


def test_equals_the_transformed_form_when_weights_are_constant_within_sets(monkeypatch):
    """Weights constant within each set (1:1 matching without reuse inside a school; they differ
    between sets): B_c = I − H_cc and the two forms agree — also when the Φ = I code is forced."""
    from pleval.heterogeneity import _joint

    d = stacked(n_pl=5, n_comp=8, per_set=3, seed=6)
    d["_weight"] = d["_pl_school"].map({f"P{s}": 0.5 + s for s in range(5)})
    old = school_effects(d, covariates=["pretest"], cr2="transformed", **KW)
    monkeypatch.setattr(_joint, "_varies_within", lambda *a: True)
    new = school_effects(d, covariates=["pretest"], cr2="clubsandwich", **KW)
    np.testing.assert_allclose(new.vcov_raw["all"].to_numpy(), old.vcov_raw["all"].to_numpy(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(new.table["df"], old.table["df"], rtol=1e-9)


@pytest.mark.parametrize("block_rows", [1, 40, 1 << 20])
def test_copies_of_a_student_are_one_observation(monkeypatch, block_rows):
    """A comparison student split into copies within a set (weights summed back to the original)
    gives the merged sample's covariance: the rows of one student id (``unit_id``, else the
    ``cluster`` id) equal in covariates and outcome are merged first. Counted as separate rows
    (as ``ols`` on the copies would) they are not — Φ = I would then treat the copies, which
    share one outcome and one error, as independent draws."""
    from pleval.heterogeneity import _joint

    monkeypatch.setattr(_joint, "_BLOCK_ROWS", block_rows)  # copies merged within each block of groups
    d = stacked(n_pl=4, n_comp=6, per_set=3, seed=2)
    rng = np.random.default_rng(0)
    pick = (d["treatment"] == 0).to_numpy() & (rng.uniform(size=len(d)) < 0.4)
    frac = rng.uniform(0.2, 0.8, pick.sum())
    cp = d[pick].assign(_weight=d.loc[pick, "_weight"] * (1 - frac))
    d2 = d.copy()
    d2.loc[pick, "_weight"] *= frac
    d2 = pd.concat([d2, cp], ignore_index=True).sample(frac=1, random_state=1).reset_index(drop=True)
    merged = school_effects(d, covariates=["pretest"], **KW)
    V = merged.vcov_raw["all"].to_numpy()
    for unit in ("student_id", None):
        split = school_effects(d2, covariates=["pretest"], unit_id=unit, **KW)
        np.testing.assert_allclose(split.vcov_raw["all"].to_numpy(), V, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(split.table["df"], merged.table["df"], rtol=1e-9)
    module = sys.modules["pleval.heterogeneity.school_effects"]
    monkeypatch.setattr(module, "joint_cells", lambda *a, **k: _joint.joint_cells(*a, **{**k, "units": None}))
    rows = school_effects(d2, covariates=["pretest"], **KW)
    assert np.abs(rows.vcov_raw["all"].to_numpy() - V).max() > 1e-3 * np.abs(V).max()


def test_cr2_form_is_checked():
    d = stacked(seed=1)
    with pytest.raises(DataError, match="cr2"):
        school_effects(d, covariates=["pretest"], cr2="precision", **KW)


def test_the_fits_squared_weight_sums_serve_the_cells():
    """``grouped_wls(..., squares=True)`` also gives each set's ``S2_s = Σ w_i² x_i x_i'`` (against
    a loop over the sets), from the pass that forms ``S_s``, the fit as without it; given to
    ``phi_identity_cells`` (what ``school_effects`` does where no copies merge) it gives the cells
    the rows' own sum gives, to rounding (the two add the rows in other orders)."""
    from pleval.heterogeneity import _joint_phi
    from pleval.heterogeneity._batched import grouped_wls

    rng = np.random.default_rng(4)
    n, G = 400, 5
    g, cl = np.sort(rng.integers(0, G, n)), rng.integers(0, 40, n)
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])
    w = rng.uniform(0.2, 3.0, n)
    y = X @ np.array([1.0, 0.5, 0.3]) + rng.normal(size=n)
    plain = grouped_wls(y, X, g, G, weights=w, vcov="classical")
    f = grouped_wls(y, X, g, G, weights=w, vcov="classical", squares=True)
    want = np.array([(X[g == s] * (w[g == s] ** 2)[:, None]).T @ X[g == s] for s in range(G)])
    np.testing.assert_allclose(f.sq, want, rtol=1e-12)
    assert plain.sq is None
    np.testing.assert_allclose(f.params, plain.params, rtol=1e-13)
    cell, key = pd.factorize(g * 40 + cl)
    args = (X, w, f.resid, np.arange(n), cell, len(key), key // 40, f.bread, 1)
    own, given = _joint_phi.phi_identity_cells(*args), _joint_phi.phi_identity_cells(*args, squares=f.sq)
    for a, b in zip([own[0], own[1], *own[2]], [given[0], given[1], *given[2]]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13 * np.abs(a).max())
    assert not np.allclose(_joint_phi.phi_identity_cells(*args, squares=2 * f.sq)[0], own[0], rtol=1e-6)
