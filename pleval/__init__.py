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

# Public API (one line per module; add yours below).
from .rct import RCTResult, analyze_rct, rct_by_subject  # noqa: E402
from .matching import MatchResult, match  # noqa: E402
from .simulate import Simulated, simulate_cluster_rct, simulate_matched, simulate_school_effects  # noqa: E402
from .heterogeneity import MetaAnalysis, SchoolEffects, meta_analysis, meta_regression, placebo_schools, school_effects  # noqa: E402,E501
from .estimate import Evaluation, estimate  # noqa: E402  (the function shadows the module name; import the module's other names as 'from pleval.estimate import ...')
