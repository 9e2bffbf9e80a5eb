"""pleval: did personalized learning work, for whom, and how sure can we be?

Matched comparisons, randomized trials and school-by-school heterogeneity for education
evaluations, with every effect reported in raw units, effect size and percentile points.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pleval")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

from .errors import ConvergenceError, DataError, DesignError, PlevalError, PlevalWarning
from .percentiles import from_percentile_points, improvement_index, to_percentile_points
from .rct import RCTResult, analyze_rct, rct_by_subject
from .matching import MatchResult, match
from .simulate import Simulated, simulate_cluster_rct, simulate_matched, simulate_school_effects
from .heterogeneity import MetaAnalysis, SchoolEffects, meta_analysis, meta_regression, placebo_schools, school_effects

# The function shadows the module name: import the module's other names with `from pleval.estimate import ...`.
from .estimate import Evaluation, estimate
from .checks import CheckReport, check

__all__ = [
    "__version__",
    "estimate", "Evaluation",
    "check", "CheckReport",
    "match", "MatchResult",
    "analyze_rct", "rct_by_subject", "RCTResult",
    "school_effects", "SchoolEffects", "meta_analysis", "MetaAnalysis", "meta_regression", "placebo_schools",
    "to_percentile_points", "from_percentile_points", "improvement_index",
    "simulate_matched", "simulate_cluster_rct", "simulate_school_effects", "Simulated",
    "PlevalError", "DataError", "DesignError", "ConvergenceError", "PlevalWarning",
]
