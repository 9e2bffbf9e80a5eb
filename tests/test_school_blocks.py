"""School effects by blocks of whole strata (``school_effects._fit_blocks``): the per-school
fits and the joint covariance's cells formed block by block give what one block of every
stratum gives — every school's estimate, SE, df, counts and robustness values, the raw and
regularized joint covariance and λ — for each vcov type and CR2 form, with copies merged,
categorical covariates and several subjects."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from pleval.heterogeneity import school_effects

from .test_heterogeneity_joint import stacked

COLUMNS = ["n_treated", "n_comparison", "estimate", "se", "ci_low", "ci_high", "df", "pvalue", "p_adjusted",
           "effect_size", "es_se", "shrunk_es", "shrunk_es_sd", "reliability"]


def _sample(seed: int) -> pd.DataFrame:
    """Two subjects of the stacked matched sample, a categorical covariate, and copies: some
    rows stand for two or three (weights and squared weights summed)."""
    rng = np.random.default_rng(seed)
    parts = []
    for subject in ("math", "reading"):  # two subjects
        d = stacked(n_pl=7, n_comp=9, per_set=4, seed=seed + len(subject)).assign(subject=subject)
        parts.append(d)
    d = pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)
    d["grade"] = rng.choice(["g3", "g4", "g5"], len(d))
    d["_copies"] = rng.integers(1, 4, len(d))
    d["_weight2"] = d["_weight"] ** 2 / d["_copies"]
    return d


def _fit(d, monkeypatch, block_rows, **kw):
    module = importlib.import_module("pleval.heterogeneity.school_effects")
    monkeypatch.setattr(module, "_BLOCK_ROWS", block_rows)
    return school_effects(d, covariates=["pretest", "grade"], by="subject", sd=1.0, **kw)


CASES = [
    dict(cluster="student_id", school="school_id", unit_id="student_id", vcov="CR2", cr2="clubsandwich",
         weight2="_weight2", copies="_copies", robustness_q=1.0),
    dict(cluster="student_id", school="school_id", vcov="CR2", cr2="transformed", weight2="_weight2", copies="_copies"),
    dict(cluster="student_id", school="school_id", vcov="CR1", weight2="_weight2", copies="_copies"),
    dict(cluster="student_id", vcov="CR0"),
    dict(vcov="HC2", robustness_q=0.5),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("block_rows", [1, 50])
def test_blocks_of_strata_give_the_all_at_once_results(monkeypatch, case, block_rows):
    """Blocks of one stratum each (1 row) and of a few strata (50 rows) against one block."""
    d = _sample(case)
    kw = CASES[case]
    one = _fit(d, monkeypatch, 1 << 40, **kw)
    blocks = _fit(d, monkeypatch, block_rows, **kw)
    pd.testing.assert_frame_equal(blocks.table[["subject", "school", "note"]], one.table[["subject", "school", "note"]])
    cols = COLUMNS + [c for c in ("partial_r2", "rv_q", "rv_qa") if c in one.table.columns]
    assert len(cols) > len(COLUMNS) or "robustness_q" not in kw
    a, b = blocks.table[cols].to_numpy(dtype=float), one.table[cols].to_numpy(dtype=float)
    assert np.isfinite(b[:, 2]).sum() >= 12  # most schools have an estimate
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    for key in one.vcov_raw:  # the two subjects
        for attr in ("vcov_raw", "vcov"):
            x, y = getattr(blocks, attr)[key], getattr(one, attr)[key]
            pd.testing.assert_index_equal(x.index, y.index)
            np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), rtol=1e-12, atol=1e-15 * np.abs(y.to_numpy()).max())
        assert blocks.vcov_shrinkage[key] == pytest.approx(one.vcov_shrinkage[key], rel=1e-12)
    if kw["vcov"] == "CR2":
        assert any(np.count_nonzero(v.to_numpy() - np.diag(np.diag(v.to_numpy()))) for v in one.vcov_raw.values())


def test_blocks_hold_whole_strata(monkeypatch):
    """Each block of :func:`_fit_blocks` holds whole strata: with blocks of one row, the
    grouped fit is called once per stratum, on that stratum's rows only."""
    module = importlib.import_module("pleval.heterogeneity.school_effects")
    seen = []
    real = module.grouped_wls

    def spy(y, X, groups, G, **kw):
        seen.append((len(y), G, np.bincount(groups, minlength=G)))
        return real(y, X, groups, G, **kw)

    monkeypatch.setattr(module, "grouped_wls", spy)
    d = _sample(7)
    _fit(d, monkeypatch, 1, **CASES[0])
    sizes = d.groupby(["subject", "_pl_school"], sort=False).size()
    assert len(seen) == len(sizes)
    assert all(G == 1 and rows.tolist() == [n] for n, G, rows in seen)
    assert sorted(n for n, _, _ in seen) == sorted(sizes.tolist())


@pytest.mark.parametrize("size", [1, 7, 50, 10_000])
def test_group_blocks_cover_every_row_once_in_whole_groups(size):
    """``robust.group_blocks``: the blocks' rows are every row once, in group order (stable),
    each block whole groups g0..g1−1, a block ending at the group holding its size-th row."""
    from pleval.inference.robust import group_blocks

    rng = np.random.default_rng(size)
    G = 30
    codes = rng.integers(0, G, 400)
    codes[codes == 5] = 6  # a group without rows
    blocks = list(group_blocks(codes, G, size))
    assert [b[0] for b in blocks] == [0] + [b[1] for b in blocks[:-1]] and blocks[-1][1] == G
    rows = np.concatenate([b[2] for b in blocks])
    np.testing.assert_array_equal(rows, np.argsort(codes, kind="stable"))
    for g0, g1, idx in blocks:
        assert set(np.unique(codes[idx])) <= set(range(g0, g1))
        assert np.isin(np.flatnonzero((codes >= g0) & (codes < g1)), idx).all()
    sorted_codes = np.sort(codes)  # a block ends with the group of each size-th row, the last with group G − 1
    np.testing.assert_array_equal([g1 - 1 for _, g1, _ in blocks], np.union1d(sorted_codes[size - 1 : -1 : size], [G - 1]))


@pytest.mark.parametrize("copies", [False, True])
def test_whole_number_covariates_are_centred_to_the_last_bit(copies):
    """A whole-number covariate's centre from Σ copies·value summed in 64-bit integers is the
    floating-point mean the design had (``cnt @ col / n``, ``col.mean()``) bit for bit — booleans,
    small and wide unsigned values; negative and huge values take the floating-point route —
    and each column keeps the narrowest integer type that holds it; a constant one is refused."""
    from pleval.errors import DataError

    se = importlib.import_module("pleval.heterogeneity.school_effects")
    rng = np.random.default_rng(11)
    n = 100_003
    df = pd.DataFrame({"b": rng.random(n) < 0.3, "small": rng.integers(0, 6, n), "wide": rng.integers(0, 60_000, n),
                       "neg": rng.integers(-3, 4, n), "huge": rng.integers(0, 2**40, n), "x": rng.normal(size=n)})
    cnt = rng.integers(1, 5, n).astype(np.int32) if copies else None
    total = n if cnt is None else int(cnt.sum())
    cols, left_out = se._design_columns(df, list(df.columns), cnt, total)
    assert left_out == []
    for c, (values, centre, numeric) in zip(df.columns, cols):
        f = df[c].to_numpy(dtype=float)
        assert numeric and centre.tolist() == [f.mean() if cnt is None else cnt @ f / total], c
        if c != "x":
            v = df[c].to_numpy()
            assert values.dtype == np.result_type(np.min_scalar_type(v.min()), np.min_scalar_type(v.max())), c
            np.testing.assert_array_equal(values, v)
    with pytest.raises(DataError, match="no variation"):
        se._design_columns(df.assign(small=3), ["small"], cnt, total)


def test_pairs_outcome_and_weights_are_freed_before_the_cross_products(monkeypatch):
    """The standardizing SD is formed right after the fits, so that the outcome and weights of
    every (PL school, row) pair are no longer held while the joint covariance's cross-products
    run (its largest step at state scale)."""
    import sys

    module = importlib.import_module("pleval.heterogeneity.school_effects")
    held = []
    inner = module.joint_from_cells

    def spy(*a, **k):
        held.append(set(sys._getframe(1).f_locals))
        return inner(*a, **k)

    monkeypatch.setattr(module, "joint_from_cells", spy)
    d = _sample(4)
    res = school_effects(d, covariates=["pretest"], by="subject", **CASES[0])
    assert held and not held[0] & {"y", "w", "w2", "by_codes"}
    assert len(res.sd) == 2 and all(np.isfinite(v[0]) and v[0] > 0 for v in res.sd.values())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_blocks_in_threads_give_the_one_thread_results_bit_for_bit(monkeypatch, case):
    """The blocks of strata spread over three threads (``_workers.thread_map``) give every number of
    one thread exactly — the table, the raw and regularized joint covariance, λ — and the blocks
    did run in more than one thread (each block's fit held a moment, so that all threads take some)."""
    import threading
    import time

    from pleval import _workers

    module = importlib.import_module("pleval.heterogeneity.school_effects")
    real, seen = module.grouped_wls, set()

    def held(*a, **k):
        seen.add(threading.get_ident())
        time.sleep(0.005)
        return real(*a, **k)

    monkeypatch.setattr(module, "grouped_wls", held)
    d = _sample(case + 20)
    kw = CASES[case]
    monkeypatch.setattr(_workers, "compute_threads", lambda: 1)
    one = _fit(d, monkeypatch, 40, **kw)
    assert len(seen) == 1
    monkeypatch.setattr(_workers, "compute_threads", lambda: 3)
    seen.clear()
    threaded = _fit(d, monkeypatch, 40, **kw)
    assert len(seen) > 1
    pd.testing.assert_frame_equal(threaded.table, one.table, check_exact=True)
    for attr in ("vcov_raw", "vcov"):
        for key, v in getattr(one, attr).items():
            pd.testing.assert_frame_equal(getattr(threaded, attr)[key], v, check_exact=True)
    assert threaded.vcov_shrinkage == one.vcov_shrinkage
