"""Analysis weights (``Columns.weight``) in a matched sample.

A matched design with analysis weights ``a`` estimates the effect on the PL students weighted
by ``a``:

    τ_a = Σ_i a_i (Y_i − Ŷ_i(0)) / Σ_i a_i,

where ``Ŷ_i(0)`` is PL student ``i``'s counterfactual from its comparison rows. The weights are
formed so that the effect regression (grade × subject indicators included) estimates ``τ_a``:

* **Matched sets** (propensity, Mahalanobis, VCG, optimal and full matching): the PL row keeps
  ``a_i``; its set's comparison rows share ``a_i`` in proportion to matching weight × their own
  analysis weight, ``w_ij a_j / Σ_j w_ij a_j`` (each comparison's own weight still counts, as
  MatchIt's product of matching and sampling weights lets it; the set as a whole counts as much
  as its PL student, the matching estimator's weighting of Abadie & Imbens 2006 with weights).
* **Weighting, entropy balancing, subclassification, CEM and exact matching**: the analysis
  weights enter before the weights are normalized, so within each exact-match cell (weighting,
  entropy balancing) or subclass the comparison weights sum to the PL rows' ``Σa`` (ATT;
  :func:`pleval.matching.weighting.within_cells`), and entropy balancing targets the
  ``a``-weighted PL means from base weights ``a`` (WeightIt's ``s.weights``).

MatchIt and WeightIt multiply the matching weights by the sampling weights after the fact. With
pleval's exact-match cells that lets a cell's comparison rows weigh ``n_PL · mean(a)`` rather
than the PL rows' ``Σa``, and the grade indicators then mix the cells' effects in proportions
other than the weighted PL students' (a sample whose grade-8 PL students weigh 3 and grade-3
comparison students 2, effects 2 and 6, gave 4.12 where ``τ_a`` is 5.0).

Rows of analysis weight 0 count for nothing: they are left out before matching (so they take
no comparison's place), counted in the exclusions as :data:`ZERO_WEIGHT`.
"""

from __future__ import annotations

import numpy as np

ZERO_WEIGHT = "analysis weight 0"
"""The exclusions' reason for rows of analysis weight 0."""


def set_analysis_weights(weight, sets, treated, analysis) -> np.ndarray:
    """Matching weights ``weight`` of the long-format rows (set ids ``sets``, ``treated`` flags,
    their ``analysis`` weights) with the analysis weights in them (module docstring): a PL row's
    weight becomes its ``a``; a set's comparison rows ``w a`` scaled to sum to the set's PL ``a``."""
    w = np.asarray(weight, float)
    a = np.asarray(analysis, float)
    t = np.asarray(treated, bool)
    s = np.asarray(sets, np.int64)
    n = int(s.max(initial=-1)) + 1
    wa = w * a
    pl_total = np.bincount(s[t], weights=wa[t], minlength=n)
    comp_total = np.bincount(s[~t], weights=wa[~t], minlength=n)
    scale = np.divide(pl_total, comp_total, out=np.zeros(n), where=comp_total > 0)
    return np.where(t, wa, wa * scale[s])


__all__ = ["ZERO_WEIGHT", "set_analysis_weights"]
