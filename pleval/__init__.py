"""pleval: did personalized learning work, for whom, and how sure can we be?

Matched comparisons, randomized trials and school-by-school heterogeneity for education
evaluations, with every effect reported in raw units, effect size and percentile points.

The public names below are imported on first use (PEP 562 module ``__getattr__``), so
``import pleval`` and the ``pleval`` command start without loading pandas, scipy.stats,
statsmodels or matplotlib; ``pleval.estimate(...)``, ``from pleval import match`` and
``pleval.heterogeneity`` work as if everything were imported up front.
"""

import sys
import types
from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from .errors import ConvergenceError, DataError, DesignError, PlevalError, PlevalWarning

if TYPE_CHECKING:  # the same names, imported eagerly, for type checkers and the API docs (mkdocstrings)
    from .checks import CheckReport, check
    from .estimate import Evaluation, estimate
    from .heterogeneity import (
        MetaAnalysis, SchoolEffects, meta_analysis, meta_regression, placebo_schools, school_effects,
    )
    from .matching import MatchResult, match
    from .percentiles import from_percentile_points, improvement_index, to_percentile_points
    from .rct import RCTResult, analyze_rct, rct_by_subject
    from .simulate import (
        Simulated, simulate_cluster_rct, simulate_matched, simulate_multisite_rct, simulate_school_effects,
    )

# Public name -> the module that defines it.
_LAZY = {
    "estimate": "estimate", "Evaluation": "estimate",
    "check": "checks", "CheckReport": "checks",
    "match": "matching", "MatchResult": "matching",
    "analyze_rct": "rct", "rct_by_subject": "rct", "RCTResult": "rct",
    "school_effects": "heterogeneity", "SchoolEffects": "heterogeneity", "meta_analysis": "heterogeneity",
    "MetaAnalysis": "heterogeneity", "meta_regression": "heterogeneity", "placebo_schools": "heterogeneity",
    "to_percentile_points": "percentiles", "from_percentile_points": "percentiles", "improvement_index": "percentiles",
    "simulate_matched": "simulate", "simulate_cluster_rct": "simulate", "simulate_school_effects": "simulate",
    "simulate_multisite_rct": "simulate", "Simulated": "simulate",
}

__all__ = [
    "__version__",
    "estimate", "Evaluation",
    "check", "CheckReport",
    "match", "MatchResult",
    "analyze_rct", "rct_by_subject", "RCTResult",
    "school_effects", "SchoolEffects", "meta_analysis", "MetaAnalysis", "meta_regression", "placebo_schools",
    "to_percentile_points", "from_percentile_points", "improvement_index",
    "simulate_matched", "simulate_cluster_rct", "simulate_multisite_rct", "simulate_school_effects", "Simulated",
    "PlevalError", "DataError", "DesignError", "ConvergenceError", "PlevalWarning",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pleval")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0+unknown"


__getattr__ = lazy_getattr(__name__, _LAZY, {"__version__": _version})


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


class _Package(types.ModuleType):
    """Importing the submodule ``pleval.estimate`` binds it as an attribute of the package;
    the function of that name (``pleval.estimate(...)``) stays bound instead. The module's other
    names: ``from pleval.estimate import Evaluation``."""

    def __setattr__(self, name, value):
        if name == "estimate" and isinstance(value, types.ModuleType):
            value = value.estimate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
