"""Wald tests of q linear constraints ``Rβ = r`` on a robust least-squares fit.

``Q = (Rβ̂ − r)'(R V R')⁻¹(Rβ̂ − r)`` with V the fit's covariance, referred to:

* ``"HTZ"`` (default under CR2 and HC2): the approximate Hotelling's T² test of Pustejovsky & Tipton
  (2018, section 3.2; Tipton & Pustejovsky 2015 "AHZ"), clubSandwich's ``Wald_test(...,
  test = "HTZ")``. ``Q/q`` is approximated by Hotelling's T²(q, η), i.e.
  ``F = (η − q + 1)/(η q) · Q ~ F(q, η − q + 1)``, with η matching the total variance of
  ``R V R'`` under the CR2 working model (:meth:`pleval.inference.robust.CR2Blocks.eta`; under
  HC2 that of CR2 with each row its own cluster, :func:`pleval.inference.robust.hc2_eta`).
  For q = 1 it is the Satterthwaite (Bell & McCaffrey) t test.
* ``"F"``: ``Q/q ~ F(q, G − 1)`` with G clusters (``G − k − A`` for CR0/CR1 under
  ``cluster_df="G-p"``; ``n − k − A`` without clusters, A the absorbed group effects; the fit's
  residual df, :attr:`~pleval.inference.OLSFit.df_resid`; Cameron & Miller 2015, §VII) —
  clubSandwich's ``"Naive-F"``.
* ``"chi2"``: ``Q ~ χ²(q)`` (reported as ``F = Q/q`` on (q, ∞)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._results import ResultMixin
from ..errors import DataError

WALD_TESTS = ("HTZ", "F", "chi2")


@dataclass(frozen=True, repr=False)
class WaldTest(ResultMixin):
    """One multi-constraint test: ``F`` on ``(df1, df2)`` and its p-value (``Q`` the Wald statistic)."""

    test: str
    Q: float
    F: float
    df1: float
    df2: float
    pvalue: float
    eta: float = math.nan
    units: str = "clusters"  # what HTZ counts as clusters: "students" under HC2 (each its own)

    @property
    def label(self) -> str:
        name = {"HTZ": "HTZ", "F": "Wald F", "chi2": "Wald χ²"}[self.test]
        if self.test == "HTZ" and not self.df2 > 0:
            return (f"HTZ undefined: η = {self.eta:.2f} for {self.df1:.0f} constraints leaves no denominator df "
                    f"(too few {self.units} for this many constraints; the Wald F test is defined)")
        df2 = "∞" if not np.isfinite(self.df2) else f"{self.df2:.1f}"
        return f"{name} = {self.F:.3f} on ({self.df1:.0f}, {df2}) df"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"test": self.test, "Q": self.Q, "F": self.F, "df1": self.df1, "df2": self.df2,
                              "pvalue": self.pvalue}])

    def summary(self) -> str:
        return f"{self.label}, p = {self.pvalue:.4g}"


def wald_test(fit, R, value=None, test: str | None = None) -> WaldTest:
    """Test ``Rβ = value`` on an :class:`~pleval.inference.OLSFit` (module docstring).

    ``R`` is q×k (a 1-D array is one constraint); ``value`` defaults to 0. ``test`` defaults to
    ``"HTZ"`` for CR2 and HC2 fits (before 2026-12-05 HC2 fits took ``"F"``) and ``"F"``
    otherwise; HTZ needs a CR2 or HC2 fit.
    """
    R = np.atleast_2d(np.asarray(R, dtype=float))
    q, k = R.shape
    if k != fit.k:
        raise DataError(f"constraint matrix has {k} columns; the fit has {fit.k} coefficients")
    test = test or ("HTZ" if fit.htz_eta is not None else "F")
    if test not in WALD_TESTS:
        raise DataError(f"test must be one of {WALD_TESTS}; got {test!r}")
    if test == "HTZ" and fit.htz_eta is None:
        raise DataError(f"the HTZ test needs a CR2 or HC2 fit; this fit is {fit.vcov_type} (use test='F')")
    r = np.zeros(q) if value is None else np.broadcast_to(np.asarray(value, dtype=float), (q,))
    d = R @ fit.params - r
    try:
        Q = float(d @ np.linalg.solve(R @ fit.vcov @ R.T, d))
    except np.linalg.LinAlgError:
        raise DataError("the constraints are linearly dependent or not identified (R V R' is singular)") from None
    if test == "HTZ":
        eta = fit.htz_eta(R)
        df2 = eta - q + 1.0
        if not df2 > 0:  # η ≤ q − 1: the approximating Hotelling T² does not exist
            return WaldTest("HTZ", Q, math.nan, float(q), df2, math.nan, eta,
                            "clusters" if fit.n_clusters else "rows (students)")
        F = (eta - q + 1.0) / (eta * q) * Q
        return WaldTest("HTZ", Q, F, float(q), df2, float(stats.f.sf(F, q, df2)), eta)
    if test == "chi2":
        return WaldTest("chi2", Q, Q / q, float(q), math.inf, float(stats.chi2.sf(Q, q)))
    # the fit's own residual df: with its absorbed indicators (before 2026-12-05 n − k, as if none
    # were absorbed) and its cluster_df convention (before 2026-12-05 G − 1 under "G-p" too)
    df2 = fit.df_resid
    return WaldTest("F", Q, Q / q, float(q), df2, float(stats.f.sf(Q / q, q, df2)))


__all__ = ["wald_test", "WaldTest", "WALD_TESTS"]
