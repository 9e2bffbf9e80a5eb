"""Immutable results objects shared by every estimator.

An :class:`Estimate` is one number with its uncertainty on one scale. An :class:`Effect`
is one treatment effect on the three scales pleval reports: raw outcome units, effect
size (raw / SD, with Hedges' ω where it applies) and percentile points. Results render as
text (``summary()``), as a tidy DataFrame (``to_frame()``) and as HTML in Jupyter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pandas as pd

from . import percentiles
from .errors import DataError

SCALES = ("raw", "effect size", "percentile points", "percentage points")
"""The scales of an :class:`Estimate`; "percentage points" is the difference in shares of a yes/no
outcome (:mod:`pleval.binary`), never to be confused with percentile points."""

_NO_DEFAULT = object()  # a Frame field without a default


class Frame:
    """A DataFrame of a frozen results object, read as a shallow copy: pandas' copy-on-write
    copies a column only when it is written, so a read copies no data and a write into what was
    read (``res.data["posttest"] = 0``, ``.loc[...] = ...``) never reaches the object, whose later
    answers (estimates, balance, summaries) stay those of the frame it holds. A dataclass field:
    ``data: pd.DataFrame = Frame()`` has no default; ``Frame(default=X)`` has ``None`` for its
    default (dataclasses refuse a frame or dict, unhashable, as one), which reads as ``X`` (a
    frame, a mapping of frames, or ``None``). Over a method (``@Frame``): a frame the method
    computes when first read and keeps (as ``functools.cached_property``). A mapping of frames
    (``vcov: Mapping[object, pd.DataFrame] = Frame(default={})``) reads as a :class:`FrameMap`,
    read-only, each frame read from it a shallow copy. ``None`` reads as ``None``."""

    def __init__(self, compute=None, *, default=_NO_DEFAULT):
        self.compute = compute
        self.default = default
        self.__doc__ = getattr(compute, "__doc__", None)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            if self.compute is not None:
                return self
            if self.default is _NO_DEFAULT:
                raise AttributeError(self.name)  # a field without a default
            return None  # the field's default, as dataclasses take it
        if self.name not in obj.__dict__ and self.compute is not None:
            obj.__dict__[self.name] = self.compute(obj)
        value = obj.__dict__[self.name]
        return _read(self.default if value is None and self.default is not _NO_DEFAULT else value)

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value.frames if isinstance(value, FrameMap) else value


class FrameMap(Mapping):
    """A read-only view of a mapping of DataFrames (a :class:`Frame` field such as
    :attr:`SchoolEffects.vcov <pleval.heterogeneity.SchoolEffects.vcov>`): each frame read from
    it is a shallow copy, so a write into it never reaches the results object."""

    def __init__(self, frames: Mapping):
        self.frames = frames

    def __getitem__(self, key):
        return _read(self.frames[key])

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"FrameMap({self.frames!r})"


def _read(value):
    """What a :class:`Frame` hands out for ``value``: a frame's shallow copy, a mapping's
    :class:`FrameMap`, anything else (``None``) as it is."""
    if isinstance(value, pd.DataFrame):
        return value.copy(deep=False)
    if isinstance(value, Mapping):
        return FrameMap(value)
    return value


class ResultMixin:
    """``__repr__`` and ``_repr_html_`` delegate to the class's ``summary()`` / ``to_frame()``."""

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        title = type(self).__name__
        table = self.to_frame().to_html(float_format=lambda v: f"{v:.4g}", na_rep="", border=0)
        return f'<div class="pleval-result"><strong>{title}</strong>{table}</div>'


@dataclass(frozen=True, repr=False)
class Estimate(ResultMixin):
    """One estimate on one scale.

    ``df`` is the reference-distribution degrees of freedom (``inf`` for a normal
    reference). ``ci_low``/``ci_high`` are the two-sided interval at ``level``.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    df: float
    n_treated: int
    n_control: int
    n_clusters: int | None
    method: str
    scale: str = "raw"
    label: str = ""
    level: float = 0.95

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}; got {self.scale!r}")

    @classmethod
    def from_t(cls, estimate: float, se: float, df: float = math.inf, *, level: float = 0.95, **kw) -> "Estimate":
        """Build from an estimate, its SE and t (df finite) or z (df = inf) reference."""
        crit, p = t_interval(estimate, se, df, level)
        return cls(
            estimate=float(estimate),
            se=float(se),
            ci_low=float(estimate - crit * se),
            ci_high=float(estimate + crit * se),
            pvalue=float(p),
            df=float(df),
            level=level,
            **kw,
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.as_dict()])

    def summary(self) -> str:
        lo, hi = self.ci_low, self.ci_high
        df = "z" if not np.isfinite(self.df) else f"t({self.df:.1f})"
        return (
            f"{self.label or 'estimate'} [{self.scale}]: {self.estimate:.4g} "
            f"(SE {self.se:.4g}; {self.level:.0%} CI {lo:.4g} to {hi:.4g}; p = {self.pvalue:.3g}, {df}; "
            f"{self.method})"
        )


def t_interval(estimate, se, df, level: float = 0.95):
    """Critical value and two-sided p-value for ``estimate / se`` on t(df) (normal if df = inf).

    Vectorized over all arguments (``df`` may mix finite values and ``inf``).
    """
    from scipy import stats  # here, not at import: reading and checking a file need no scipy (0.5 s)

    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise DataError(f"level must lie strictly between 0 and 1 (0.95 for a 95% interval); got {level!r}")
    df = np.asarray(df, dtype=float)
    q = 0.5 + level / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(np.asarray(estimate, dtype=float) / np.asarray(se, dtype=float))
        finite = np.isfinite(df)
        dfx = np.where(finite, df, 1.0)
        crit = np.where(finite, stats.t.ppf(q, dfx), stats.norm.ppf(q))
        p = np.where(finite, 2.0 * stats.t.sf(z, dfx), 2.0 * stats.norm.sf(z))
    if crit.ndim == 0:
        crit = float(crit)
    if p.ndim == 0:
        p = float(p)
    return crit, p


@dataclass(frozen=True, repr=False)
class Effect(ResultMixin):
    """A treatment effect on three scales.

    ``effect_size = ω·raw/sd`` (SE and CI scaled the same way, the SD treated as known, as
    the WWC does); ``percentile_points`` maps the effect size and its CI endpoints through
    :func:`pleval.percentiles.to_percentile_points` from ``baseline_percentile``; its SE is
    the delta-method SE. All three share the raw p-value.
    ``note``: what a reader must know of whom it is about (a matched estimate without some PL
    rows: how many and why), "" if nothing.
    """

    raw: Estimate
    effect_size: Estimate
    percentile_points: Estimate
    sd: float
    sd_kind: str
    omega: float = 1.0
    baseline_percentile: float = 50.0
    note: str = ""

    @classmethod
    def from_raw(
        cls,
        raw: Estimate,
        sd: float,
        sd_kind: str,
        *,
        omega: float = 1.0,
        baseline_percentile: float = 50.0,
    ) -> "Effect":
        if not (np.isfinite(sd) and sd > 0):
            raise ValueError(f"the standardizing SD must be positive and finite; got {sd!r}")
        k = omega / sd
        es = replace(
            raw,
            estimate=raw.estimate * k,
            se=raw.se * k,
            ci_low=raw.ci_low * k,
            ci_high=raw.ci_high * k,
            scale="effect size",
        )
        # (an SE that could not be estimated leaves the interval undefined, not an error)
        lo, hi = (percentiles.percentile_interval(es.ci_low, es.ci_high, baseline_percentile)
                  if np.isfinite([es.ci_low, es.ci_high]).all() else (math.nan, math.nan))
        pp = replace(
            raw,
            estimate=percentiles.to_percentile_points(es.estimate, baseline_percentile),
            se=percentiles.percentile_points_se(es.estimate, es.se, baseline_percentile),
            ci_low=lo,
            ci_high=hi,
            scale="percentile points",
        )
        return cls(raw, es, pp, float(sd), sd_kind, float(omega), float(baseline_percentile))

    @property
    def estimates(self) -> tuple[Estimate, Estimate, Estimate]:
        return (self.raw, self.effect_size, self.percentile_points)

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame([e.as_dict() for e in self.estimates])
        df["sd"] = self.sd
        df["sd_kind"] = self.sd_kind
        df["baseline_percentile"] = self.baseline_percentile
        if self.note:
            df["note"] = self.note
        return df

    def summary(self) -> str:
        r = self.raw
        lines = [
            f"Effect{(' — ' + r.label) if r.label else ''}: {r.method}",
            f"  n treated = {r.n_treated:,}, n comparison = {r.n_control:,}"
            + (f", clusters = {r.n_clusters:,}" if r.n_clusters else ""),
            f"  {'scale':<18}{'estimate':>10}{'SE':>10}{'CI low':>10}{'CI high':>10}{'p':>9}",
        ]
        for e in self.estimates:
            lines.append(
                f"  {e.scale:<18}{e.estimate:>10.4f}{e.se:>10.4f}{e.ci_low:>10.4f}{e.ci_high:>10.4f}{e.pvalue:>9.3g}"
            )
        lines.append(f"  SD used: {self.sd:.4g} ({self.sd_kind}); ω = {self.omega:.4f}")
        lines.append("  " + percentiles.interpret(self.percentile_points.estimate, self.baseline_percentile))
        if self.note:
            lines.append("  " + self.note)
        return "\n".join(lines)


def estimate_fields() -> list[str]:
    """Column names of :meth:`Estimate.to_frame` (for tables built from many estimates)."""
    return [f.name for f in fields(Estimate)]


__all__ = ["Estimate", "Effect", "Frame", "FrameMap", "ResultMixin", "t_interval", "estimate_fields", "SCALES"]
