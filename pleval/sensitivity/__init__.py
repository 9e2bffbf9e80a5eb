"""Sensitivity to unobserved confounding: how strong would a hidden difference have to be?

One module per idea:

* :mod:`.ovb` — omitted-variable bounds, robustness values and benchmarks for a regression
  coefficient (Cinelli & Hazlett 2020), with the cluster-robust adaptation documented there;
* :mod:`.evalue` — E-values (VanderWeele & Ding 2017) for effect sizes via RR ≈ exp(0.91·d);
* :mod:`.rosenbaum` — Rosenbaum bounds for matched pairs (signed ranks) and matched sets
  (aligned ranks or Huber M-scores, separable approximation), Γ at α, Hodges–Lehmann range and interval;
* :mod:`.matched` — all of them for a matched comparison, per subject, plus a pre-period
  placebo outcome: :func:`sensitivity`.

See ``docs/sensitivity.md`` for the formulas and their sources.
"""

from .evalue import EValue, evalue_ci, evalue_rr, evalue_smd
from .matched import Sensitivity, SubjectSensitivity, sensitivity
from .ovb import OmittedVariableBounds, omitted_variable_bounds, ovb_from_design, robustness_value
from .rosenbaum import RosenbaumBounds, aligned_rank_pvalue, rosenbaum_bounds, signed_rank_gamma, signed_rank_pvalue

__all__ = [
    "sensitivity",
    "Sensitivity",
    "SubjectSensitivity",
    "omitted_variable_bounds",
    "ovb_from_design",
    "robustness_value",
    "OmittedVariableBounds",
    "evalue_rr",
    "evalue_ci",
    "evalue_smd",
    "EValue",
    "rosenbaum_bounds",
    "RosenbaumBounds",
    "signed_rank_pvalue",
    "signed_rank_gamma",
    "aligned_rank_pvalue",
]
