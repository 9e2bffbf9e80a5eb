"""Monitoring over time: the time role and panel checks, effects by year and by years of
exposure in matched designs with a trend test and equity bands, school trajectories, staggered
school adoption (group-time effects, event study, aggregation), a panel simulator and the
monitoring report. See ``docs/monitor.md``."""

from .over_time import OverTime, effects_over_time
from .panel import PanelCheck, check_panel
from .run import Monitoring, monitor, save_monitoring
from .schools import SchoolTrajectories, school_trajectories
from .simulate import PanelSimulated, PanelTruth, simulate_panel
from .staggered import Aggregation, GroupTimeEffects, group_time_effects

__all__ = [
    "monitor", "Monitoring", "save_monitoring",
    "effects_over_time", "OverTime",
    "check_panel", "PanelCheck",
    "school_trajectories", "SchoolTrajectories",
    "group_time_effects", "GroupTimeEffects", "Aggregation",
    "simulate_panel", "PanelSimulated", "PanelTruth",
]
