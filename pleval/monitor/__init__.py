"""Monitoring over time: staggered school adoption (group-time effects, event study,
aggregation). See ``docs/monitor.md``."""

from .staggered import Aggregation, GroupTimeEffects, group_time_effects

__all__ = ["group_time_effects", "GroupTimeEffects", "Aggregation"]
