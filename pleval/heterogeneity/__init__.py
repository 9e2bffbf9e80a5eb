"""School-level effect heterogeneity: per-school effects, random-effects meta-analysis,
empirical-Bayes shrinkage, multiplicity-aware counts, meta-regression, placebo schools and
table export. See ``docs/heterogeneity.md``."""

from .meta import MetaAnalysis, meta_analysis
from .metareg import MetaRegression, meta_regression
from .multiplicity import SignificanceCounts, significance_counts
from .school_effects import SchoolEffects, school_effects, school_effects_from_estimates
from .shrinkage import Shrinkage, empirical_bayes

__all__ = [
    "meta_analysis",
    "MetaAnalysis",
    "empirical_bayes",
    "Shrinkage",
    "significance_counts",
    "SignificanceCounts",
    "meta_regression",
    "MetaRegression",
    "school_effects",
    "school_effects_from_estimates",
    "SchoolEffects",
]
