"""School-level effect heterogeneity: per-school effects, random-effects meta-analysis,
empirical-Bayes shrinkage, leave-one-out and influence diagnostics, permutation tests, cluster-robust inference, multiplicity-aware counts, meta-regression, placebo schools and
table export. See ``docs/heterogeneity.md``."""

from .calibration import Calibration, calibrate
from .influence import Influence, leave_one_out
from .meta import MetaAnalysis, meta_analysis
from .metareg import MetaRegression, meta_regression
from .metareg_influence import MetaRegressionInfluence, leave_one_out_metareg
from .multiplicity import SignificanceCounts, significance_counts
from .permutation import ModeratorPermutationTest, PermutationTest, permutation_test, permutation_test_moderators
from .placebo import PlaceboResult, placebo_schools
from .robust import RobustMeta, cluster_robust
from .school_effects import SchoolEffects, school_effects, school_effects_from_estimates
from .school_inference import SchoolInference, pool_schools, school_inference
from .shrinkage import Shrinkage, empirical_bayes
from .export import export_table

__all__ = [
    "meta_analysis",
    "MetaAnalysis",
    "leave_one_out",
    "Influence",
    "leave_one_out_metareg",
    "MetaRegressionInfluence",
    "permutation_test",
    "PermutationTest",
    "permutation_test_moderators",
    "ModeratorPermutationTest",
    "cluster_robust",
    "RobustMeta",
    "empirical_bayes",
    "Shrinkage",
    "significance_counts",
    "SignificanceCounts",
    "meta_regression",
    "MetaRegression",
    "school_effects",
    "school_effects_from_estimates",
    "SchoolEffects",
    "school_inference",
    "pool_schools",
    "SchoolInference",
    "placebo_schools",
    "calibrate",
    "Calibration",
    "PlaceboResult",
    "export_table",
]
