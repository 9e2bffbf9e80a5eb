"""Power and minimum detectable effects for education designs (PowerUp! parameterisation).

Before a study: :class:`ClusterRCT` (and the other designs in :mod:`pleval.power.designs`)
give the MDES, the power for an effect and the sample size needed for a target MDES;
:func:`from_data` estimates the ICC and R² from a pilot file; :func:`simulate_power` checks a
formula by running pleval's own analysis on simulated data. After a study:
:func:`mdes_from_se` gives the MDES of the analysis actually run.
"""

from .designs import (
    DESIGNS,
    BlockedClusterRCT,
    BlockedRCT,
    ClusterRCT,
    Design,
    IndividualRCT,
    MatchedComparison,
    kish_deff,
)
from .plan import Plan
from .tdist import mdes_from_se, multiplier, power_from_ncp

__all__ = [
    "Design", "IndividualRCT", "BlockedRCT", "ClusterRCT", "BlockedClusterRCT", "MatchedComparison", "DESIGNS",
    "Plan", "kish_deff", "mdes_from_se", "multiplier", "power_from_ncp",
]
