"""Randomization (permutation) inference that re-randomizes exactly as the design did.

Under the sharp null hypothesis of no effect for any unit, every outcome is fixed and only
the assignment is random, so the distribution of a test statistic over all assignments the
design could have produced is known exactly (Fisher 1935; Rosenbaum 2002, ch. 2; Imbens &
Rubin 2015, ch. 5). The re-randomization here reproduces the design: the *units of
assignment* are clusters (schools) when ``clusters`` is given, otherwise rows (students);
within each block the number of treated units is fixed at its observed value (complete
randomization within blocks).

Statistic
---------
The statistic is the **block-weighted difference in unit means** of ``u``::

    T(z) = Σ_b w_b [ (1/t_b) Σ_{i∈b} z_i u_i − (1/c_b) Σ_{i∈b} (1 − z_i) u_i ],   w_b = m_b / m

where m_b, t_b, c_b are the numbers of units, treated units and control units in block b.
The unit value u_i is the outcome for individual assignment and the **cluster mean** of the
outcome for cluster assignment (each school counts once: a cluster-level statistic). With
``covariates`` the outcome is first replaced by its residual from an OLS fit on an intercept
and the covariates *without* the treatment indicator; the residuals do not depend on the
assignment, so the test stays exact and T becomes a covariate-adjusted difference in means
(Rosenbaum 2002, "covariance adjustment"; Imbens & Rubin 2015, section 5.8).

Because T is linear in z, ``T(z) = z·a + k`` with ``a_i = w_b u_i (1/t_b + 1/c_b)`` and
``k = −Σ_i w_b u_i / c_b``, so a batch of P assignments costs one gather-and-sum.

Computation
-----------
* **Exact enumeration** when the number of possible assignments Π_b C(m_b, t_b) is at most
  ``max_exact`` (``exact="auto"``): each block's C(m_b, t_b) partial sums are enumerated and
  the blocks combined by outer sums. The p-value is the share of all assignments at least as
  extreme as the observed one (the observed assignment included).
* **Monte Carlo** otherwise: each draw sorts uniform keys within blocks (``argsort`` of
  block code + U(0,1) for a whole batch at once) and treats the first t_b units of every
  block. The p-value is ``(1 + #{extreme draws}) / (1 + P)`` (Phipson & Smyth 2010), which
  is a valid p-value; its Monte Carlo SE is reported. Draws come from
  ``numpy.random.default_rng(seed)`` in batch order, so the result does not depend on the
  batch size; they meet the blocks in the order of their content and the units in the order of
  their values (:mod:`.draw_order`), so it depends neither on the rows' order nor on the labels.

"Extreme" is ``|T| ≥ |T_obs|`` (two-sided; under the null E[T] = 0 for this statistic),
``T ≥ T_obs`` (greater) or ``T ≤ T_obs`` (less), with a relative tolerance of 1e−10 so
that ties are counted as extreme despite floating-point noise.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd

from .._results import ResultMixin
from .draw_order import group_codes, value_order
from ..errors import DataError, DesignError, PlevalWarning

Alternative = Literal["two-sided", "greater", "less"]
ProgressCallback = Callable[[int, int], None]
_TARGET_BATCH_ELEMENTS = 2_000_000
_HARD_EXACT_LIMIT = 5_000_000


@dataclass(frozen=True, repr=False)
class RandomizationResult(ResultMixin):
    """Result of :func:`randomization_test`.

    ``statistic`` is the observed block-weighted difference in (cluster) means of the
    (covariate-adjusted) outcome; ``null_distribution`` holds T over the enumerated or sampled
    assignments; ``n_assignments`` is the number of assignments the design allows.
    """

    statistic: float
    pvalue: float
    alternative: str
    exact: bool
    n_assignments: int
    n_draws: int
    n_units: int
    n_treated_units: int
    n_blocks: int
    unit: str
    covariate_adjusted: bool
    seed: object
    null_distribution: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def mc_se(self) -> float:
        """Monte Carlo SE of the p-value (0 for exact enumeration)."""
        if self.exact:
            return 0.0
        return math.sqrt(self.pvalue * (1.0 - self.pvalue) / self.n_draws)

    def as_dict(self) -> dict:
        return {
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "mc_se": self.mc_se,
            "alternative": self.alternative,
            "exact": self.exact,
            "n_assignments": self.n_assignments,
            "n_draws": self.n_draws,
            "n_units": self.n_units,
            "n_treated_units": self.n_treated_units,
            "n_blocks": self.n_blocks,
            "unit": self.unit,
            "covariate_adjusted": self.covariate_adjusted,
            "seed": self.seed,
        }

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.as_dict()])

    def summary(self) -> str:
        how = (
            f"exact, all {self.n_assignments:,} assignments"
            if self.exact
            else f"{self.n_draws:,} random re-randomizations of {self.n_assignments:.3g} possible "
            f"(MC SE of p {self.mc_se:.2g}; seed {self.seed})"
        )
        stat = "covariate-adjusted difference" if self.covariate_adjusted else "difference"
        p = f"p = {self.pvalue:.4g}" if self.exact else f"p = {self.pvalue:.4g} ± {self.mc_se:.2g} (Monte Carlo SE)"
        lines = [
            f"Randomization test ({self.alternative}): {stat} in {self.unit} means = {self.statistic:.4g}, {p}",
            f"  {self.n_units:,} {self.unit}s ({self.n_treated_units:,} treated) in {self.n_blocks:,} block(s); {how}",
        ]
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _codes(values, name: str) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(pd.Series(values).to_numpy(), sort=True)
    if np.any(codes < 0):
        raise DataError(f"{name}: {int((codes < 0).sum()):,} row(s) have a missing {name} id")
    return codes.astype(np.intp), len(uniques)


def _prepare(y, treatment, clusters, blocks, covariates):
    """Unit-level values u, assignment z, block codes; and design counts."""
    y = np.asarray(y, dtype=float).ravel()
    n = y.size
    z = np.asarray(treatment, dtype=float).ravel()
    if z.size != n:
        raise DataError(f"treatment has {z.size} rows and the outcome {n}")
    if not np.all(np.isfinite(y)):
        raise DataError(f"outcome: {int((~np.isfinite(y)).sum()):,} row(s) are missing or non-finite; drop them first")
    if not np.all(np.isin(z, (0.0, 1.0))):
        raise DataError("treatment must be coded 0/1 with no missing values")
    notes = []
    if covariates is not None:
        X = np.asarray(covariates, dtype=float)
        X = X[:, None] if X.ndim == 1 else X
        if X.shape[0] != n:
            raise DataError(f"covariates have {X.shape[0]} rows and the outcome {n}")
        if not np.all(np.isfinite(X)):
            raise DataError(f"covariates: {int((~np.isfinite(X).all(axis=1)).sum()):,} row(s) are missing; drop them first")
        X1 = np.column_stack([np.ones(n), X])
        beta, *_ = np.linalg.lstsq(X1, y, rcond=None)
        y = y - X1 @ beta

    if clusters is not None:
        ccodes, m = _codes(clusters, "cluster")
        if ccodes.size != n:
            raise DataError(f"clusters have {ccodes.size} rows and the outcome {n}")
        size = np.bincount(ccodes, minlength=m)
        zsum = np.bincount(ccodes, weights=z, minlength=m)
        mixed = (zsum > 0) & (zsum < size)
        if mixed.any():
            raise DesignError(
                f"treatment varies within {int(mixed.sum()):,} cluster(s); cluster randomization needs one "
                "assignment per cluster (or leave clusters out for individual randomization)"
            )
        u = np.bincount(ccodes, weights=y, minlength=m) / size
        zu = zsum / size
        unit = "cluster"
    else:
        ccodes, m = np.arange(n), n
        u, zu = y, z
        unit = "student"

    if blocks is not None:
        bcodes_row, _ = _codes(blocks, "block")
        if bcodes_row.size != n:
            raise DataError(f"blocks have {bcodes_row.size} rows and the outcome {n}")
        bu = np.full(m, -1)
        bu[ccodes] = bcodes_row
        if clusters is not None and np.any(bu[ccodes] != bcodes_row):
            raise DesignError("clusters must be nested in blocks: some cluster has rows in more than one block")
    else:
        bu = np.zeros(m, dtype=np.intp)

    nb = int(bu.max()) + 1
    mb = np.bincount(bu, minlength=nb)
    tb = np.bincount(bu, weights=zu, minlength=nb).astype(int)
    fixed = (tb == 0) | (tb == mb)
    if fixed.all():
        raise DesignError("no block has both treated and control units; nothing to re-randomize")
    if fixed.any():
        notes.append(
            f"{int(fixed.sum())} block(s) with only treated or only control {unit}s are left out of the statistic"
        )
        warnings.warn(f"randomization test: {notes[-1]}", PlevalWarning, stacklevel=3)
        keep = ~fixed[bu]
        u, zu, bu = u[keep], zu[keep], bu[keep]
        _, bu = np.unique(bu, return_inverse=True)
        mb, tb = mb[~fixed], tb[~fixed]
    new = group_codes(bu, u, zu)  # blocks in the order of their content, not of their labels
    inv = np.argsort(new)
    bu, mb, tb = new[bu], mb[inv], tb[inv]
    o = value_order(bu, u, zu)  # the draws meet the units in the order of their values, not of the rows
    return u[o], zu[o].astype(int), bu[o].astype(np.intp), mb, tb, unit, notes


def _linear_form(u, bu, mb, tb):
    """``a`` and ``k`` with ``T(z) = z·a + k``."""
    w = mb / mb.sum()
    cb = mb - tb
    a = u * (w / tb + w / cb)[bu]
    k = -float(np.sum(u * (w / cb)[bu]))
    return a, k


def _enumerate(a, bu, mb, tb) -> np.ndarray:
    """T − k over every assignment: per-block sums of ``a`` over all C(m_b, t_b) subsets, outer-summed."""
    total = np.zeros(1)
    for b in range(mb.size):  # loop over blocks (few); subsets are enumerated, not loops over units
        ab = a[bu == b]
        combos = np.array(list(itertools.combinations(range(mb[b]), int(tb[b]))), dtype=np.intp)
        total = np.add.outer(total, ab[combos].sum(axis=1)).ravel()
    return total


def randomization_test(
    y,
    treatment,
    *,
    clusters=None,
    blocks=None,
    covariates=None,
    n_permutations: int = 10_000,
    seed: int | None = 0,
    exact: bool | Literal["auto"] = "auto",
    max_exact: int = 100_000,
    alternative: Alternative = "two-sided",
    progress: ProgressCallback | None = None,
    batch_size: int | None = None,
) -> RandomizationResult:
    """Randomization test of the sharp null of no effect, re-randomizing as the design did.

    Parameters
    ----------
    y : outcome per row (no missing values).
    treatment : 0/1 assignment per row.
    clusters : cluster (school) id per row when clusters were assigned; the statistic then uses
        cluster means and the clusters are re-randomized.
    blocks : block id per row (clusters must be nested in blocks); the number treated in each
        block is held at its observed value.
    covariates : optional (n, p) baseline covariates; the outcome is residualized on them first.
    n_permutations : number of Monte Carlo re-randomizations when not enumerating.
    seed : seed of ``numpy.random.default_rng`` (results are reproducible for a given seed).
    exact : ``"auto"`` enumerates when there are at most ``max_exact`` assignments; ``True``
        forces enumeration; ``False`` forces Monte Carlo.
    alternative : ``"two-sided"`` (|T| ≥ |T_obs|), ``"greater"`` or ``"less"``.
    progress : called as ``progress(done, total)`` after each batch of draws (for a progress bar).
    batch_size : draws per batch (default: about 2 million unit-draws per batch).

    Returns
    -------
    RandomizationResult
        See the module docstring for the statistic and the p-value formulas.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise DataError(f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}")
    if exact not in (True, False, "auto"):
        raise DataError(f"exact must be True, False or 'auto'; got {exact!r}")
    u, z, bu, mb, tb, unit, notes = _prepare(y, treatment, clusters, blocks, covariates)
    a, k = _linear_form(u, bu, mb, tb)
    t_obs = float(z @ a + k)
    n_assign = math.prod(math.comb(int(m), int(t)) for m, t in zip(mb, tb))
    enumerate_all = exact is True or (exact == "auto" and n_assign <= max_exact)
    if enumerate_all and n_assign > _HARD_EXACT_LIMIT:
        raise DesignError(
            f"exact enumeration of {n_assign:.3g} assignments is too large; use exact=False (Monte Carlo)"
        )

    if enumerate_all:
        null = _enumerate(a, bu, mb, tb) + k
        if progress is not None:
            progress(null.size, null.size)
    else:
        n_permutations = int(n_permutations)
        if n_permutations < 1:
            raise DataError(f"n_permutations must be a positive integer; got {n_permutations}")
        m = u.size
        order_blocks = np.argsort(bu, kind="stable")
        sorted_b = bu[order_blocks]
        start = np.concatenate([[0], np.cumsum(mb)[:-1]])
        treated_slot = (np.arange(m) - start[sorted_b]) < tb[sorted_b]
        offset = bu.astype(float)
        rng = np.random.default_rng(seed)
        bs = int(batch_size) if batch_size else max(1, _TARGET_BATCH_ELEMENTS // m)
        null = np.empty(n_permutations)
        done = 0
        while done < n_permutations:
            size = min(bs, n_permutations - done)
            keys = rng.random((size, m)) + offset  # sorts by block, randomly within block
            perm = np.argsort(keys, axis=1)
            null[done : done + size] = a[perm[:, treated_slot]].sum(axis=1) + k
            done += size
            if progress is not None:
                progress(done, n_permutations)

    tol = 1e-10 * max(1.0, float(np.max(np.abs(null))), abs(t_obs))
    if alternative == "two-sided":
        extreme = np.abs(null) >= abs(t_obs) - tol
    elif alternative == "greater":
        extreme = null >= t_obs - tol
    else:
        extreme = null <= t_obs + tol
    count = int(extreme.sum())
    p = count / null.size if enumerate_all else (1 + count) / (1 + null.size)
    return RandomizationResult(
        statistic=t_obs,
        pvalue=float(p),
        alternative=alternative,
        exact=bool(enumerate_all),
        n_assignments=int(n_assign),
        n_draws=int(null.size),
        n_units=int(u.size),
        n_treated_units=int(z.sum()),
        n_blocks=int(mb.size),
        unit=unit,
        covariate_adjusted=covariates is not None,
        seed=None if enumerate_all else seed,
        null_distribution=null,
        notes=tuple(notes),
    )


__all__ = ["randomization_test", "RandomizationResult"]
