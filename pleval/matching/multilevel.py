"""Propensity models for students in schools (``ps_model=``).

When PL is chosen school by school, selection happens on what schools are like, and a
student-level propensity model that sees only each student's own covariates misses it. Two
multilevel forms (Arpino & Mealli 2011; Li, Zaslavsky & Landrum 2013):

* ``"school_means"`` — the student-level logit on the covariates *and their school means*
  (Mundlak 1978: the means carry the between-school part of each covariate, the student
  values the within-school part). It is the form that works when PL is assigned to whole
  schools: the model then describes which schools take PL from their student make-up.
* ``"fixed"`` — school fixed effects (one indicator per school). They absorb everything
  school-level, so they need treatment to vary *within* schools (PL in some classrooms or
  grades of a school); with whole-school assignment every school predicts its students'
  treatment perfectly and the model does not exist, which raises
  :class:`~pleval.errors.DesignError` saying so. Schools that are all PL or all comparison
  carry no within-school contrast: their rows are left out (counted as exclusions).

Both reduce to ordinary covariates of :func:`pleval.matching.propensity.fit_propensity`
(school means are added as columns ``<covariate>__school_mean``, categorical covariates by
the school share of each non-reference level; a covariate constant within every school, such
as a school-level trait, is its own mean and gets none), so separation checks, the ridge option and
common support work as for the student-level model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, DesignError
from ._design import encode

PS_MODELS = ("student", "school_means", "fixed")


def no_contrast(data: pd.DataFrame, school: str, treatment: str) -> np.ndarray:
    """Rows of schools that are all PL or all comparison."""
    codes = pd.factorize(data[school])[0]
    share = np.bincount(codes, weights=data[treatment].to_numpy()) / np.bincount(codes)
    return ((share == 0) | (share == 1))[codes]


def multilevel_covariates(data: pd.DataFrame, covariates, school: str | None, treatment: str, ps_model: str,
                          categorical=()) -> tuple[pd.DataFrame, list[str], tuple[str, ...]]:
    """The data, covariates and categorical columns for ``ps_model`` (module docstring); for
    ``"fixed"``, ``data`` must already exclude the schools without a contrast."""
    if ps_model not in PS_MODELS:
        raise DataError(f"ps_model must be one of {PS_MODELS}; got {ps_model!r}")
    covariates = list(covariates)
    if ps_model == "student":
        return data, covariates, tuple(categorical)
    if not school:
        raise DataError(f"ps_model={ps_model!r} needs the school column (school=...)")
    codes = pd.factorize(data[school])[0]
    if ps_model == "fixed":
        if no_contrast(data, school, treatment).any():
            raise DesignError(
                "school fixed effects need PL to vary within schools, but some school is all PL or all "
                "comparison (PL assigned to whole schools), so it predicts treatment perfectly; "
                "use ps_model='school_means'"
            )
        return data, covariates + [school], tuple(categorical) + (school,)
    enc = encode(data, covariates, categorical)
    n = np.bincount(codes)
    means = np.column_stack([np.bincount(codes, weights=enc.X[:, j]) / n for j in range(enc.X.shape[1])])[codes]
    names = [f"{name}__school_mean" for name in enc.names]
    varies = (np.ptp(means, axis=0) > 0) & (means != enc.X).any(axis=0)  # between and within variation
    extra = pd.DataFrame(means[:, varies], columns=[n for n, v in zip(names, varies) if v], index=data.index)
    return pd.concat([data, extra], axis=1), covariates + list(extra.columns), tuple(categorical)


__all__ = ["multilevel_covariates", "no_contrast", "PS_MODELS"]
