"""The result of a power calculation: :class:`Plan` (MDES, power, required sample size)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import pandas as pd

from .._results import ResultMixin
from .._text import percent
from ..percentiles import NOTE, _ordinal


@dataclass(frozen=True, repr=False)
class Plan(ResultMixin):
    """MDES, power and required size of one design (:meth:`pleval.power.Design.plan`).

    ``mdes`` is in SD units of the outcome (total SD), ``mdes_pp`` the same effect in
    percentile points from ``baseline_percentile``; ``power`` is the power for ``effect``;
    ``required`` the smallest ``solve_for`` size whose MDES is at most ``target_mdes``, or
    None with ``unreachable`` saying why when no size of it reaches the target.
    """

    design: str
    parameters: Mapping[str, Any]
    alpha: float
    two_sided: bool
    method: str
    baseline_percentile: float
    df: float
    sse: float
    target_power: float
    multiplier: float
    mdes: float
    mdes_pp: float
    effect: float | None = None
    effect_pp: float | None = None
    power: float | None = None
    target_mdes: float | None = None
    target_pp: float | None = None
    solve_for: str | None = None
    required: int | None = None
    solve_unit: str | None = None
    unreachable: str | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["parameters"] = dict(self.parameters)
        return d

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent, default=float)

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity (quantity, value)."""
        d = self.as_dict()
        params = d.pop("parameters")
        notes = d.pop("notes")
        rows = [(k, v) for k, v in params.items()] + [(k, v) for k, v in d.items() if v is not None]
        rows += [("note", x) for x in notes]
        return pd.DataFrame(rows, columns=["quantity", "value"])

    def summary(self) -> str:
        sided = "two-sided" if self.two_sided else "one-sided (in the effect's direction)"
        params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k} = {v}"
                           for k, v in self.parameters.items() if v is not None)
        p0 = _ordinal(self.baseline_percentile, exact=True)
        how = "exact non-central t" if self.method == "exact" else "PowerUp! multiplier t(1-a/2) + t(1-b)"
        df = f"{self.df:g}" if self.df == round(self.df) else f"{self.df:.1f}"  # a Welch df is fractional
        lines = [
            f"Power analysis: {self.design}",
            f"  {params}",
            f"  test: alpha = {self.alpha:g} {sided}, df = {df}, standardized SE = {self.sse:.4f}",
            f"  MDES at {percent(self.target_power)} power: {self.mdes:.3f} SD = {self.mdes_pp:+.2f} percentile points "
            f"from the {p0} percentile (multiplier {self.multiplier:.3f}, {how})",
        ]
        if self.power is not None:
            lines.append(f"  power for an effect of {self.effect:.3f} SD ({self.effect_pp:+.2f} percentile points): "
                         f"{self.power:.3f}")
        if self.required is not None:
            lines.append(f"  {self.solve_unit} needed for an MDES of {self.target_mdes:.3f} SD "
                         f"({self.target_pp:+.2f} percentile points) at {percent(self.target_power)} power: {self.required:,}")
        elif self.unreachable is not None:
            lines.append(f"  {self.unreachable}")
        lines += [f"  note: {x}" for x in self.notes]
        lines.append(f"  {NOTE}")
        return "\n".join(lines)


__all__ = ["Plan"]
