"""The monitoring of a multi-year file in one call (:func:`monitor`), and its outputs folder
(:func:`save_monitoring`).

``monitor`` runs, per subject: effects by period and by years of exposure with the trend test
and equity bands (:func:`pleval.monitor.effects_over_time`); school trajectories against the
pooled trend (:func:`pleval.monitor.school_trajectories`); and, when schools adopt in
different periods (a ``cohort`` column with a first program period and at least one
pre-program period in the data), the staggered-adoption group-time effects and event study
(:func:`pleval.monitor.group_time_effects`) on school × period means of the regression-adjusted
outcome (the residuals of the comparison-school model, so that changing grade mixes and
pretests do not masquerade as trends). Schools are the units there, so its inference is
clustered by school.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .._results import ResultMixin
from ..data import Columns, frame_sha256
from ..errors import DataError, DesignError
from .over_time import OverTime, effects_over_time
from .schools import SchoolTrajectories, school_trajectories
from .staggered import INFERENCE, group_time_effects, pretest_text


@dataclass(frozen=True, repr=False)
class Monitoring(ResultMixin):
    """Everything :func:`monitor` computed: ``over_time`` (:class:`OverTime`), ``schools``
    (subject → :class:`SchoolTrajectories`), ``staggered`` (subject → :class:`GroupTimeEffects`,
    empty without a cohort column or pre-program periods), ``notes`` and ``provenance``."""

    over_time: OverTime
    schools: dict
    staggered: dict
    notes: tuple[str, ...]
    provenance: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.over_time.by_year.copy()

    def summary(self) -> str:
        parts = [self.over_time.panel.summary(), self.over_time.summary()]
        for s, st in self.schools.items():
            parts.append(st.summary())
        for s, gt in self.staggered.items():
            es = gt.event_study()
            pre = gt.pretest
            lines = [f"[{s}] staggered adoption (Callaway & Sant'Anna, school × period means, "
                     f"{'not-yet' if gt.control == 'notyet' else 'never'}-adopting comparisons): overall "
                     + gt.aggregate("group").overall.summary()]
            if pre["df"]:
                lines.append(f"  pre-trend {pretest_text(pre)}")
            lines.append("  event study (periods since adoption): " + ", ".join(
                f"{int(r.event_time):+d}: {r.estimate:+.2f}" for r in es.table.itertuples(index=False)))
            parts.append("\n".join(lines))
        parts.extend(f"note: {n}" for n in self.notes if n not in self.over_time.notes)  # (those printed above)
        return "\n\n".join(parts)

    def plot_event_study(self, subject: str):
        return self.staggered[subject].plot_event_study(title=f"{subject}: event study (school means, points)")


def monitor(data: pd.DataFrame, columns: Columns, *, cohort: str | None = None, method: str = "weighting",
            control: str = "notyet", level: float = 0.95, alpha: float = 0.05, match_options: dict | None = None,
            staggered_inference: str = "welch", input_sha256: str | None = None, checked=None) -> Monitoring:
    """Monitor a multi-period file: see the module docstring. ``columns`` needs ``time``,
    ``student_id``, ``school``, ``outcome``, ``treatment`` and ``pretest``. ``staggered_inference``:
    the group-time effects' ``inference`` (:func:`pleval.monitor.group_time_effects`). Every row is
    checked first, as :func:`pleval.check` checks it (``checked``: its report of ``data``, whose
    warnings the caller has shown; else its warnings are issued as
    :class:`~pleval.errors.PlevalWarning`): an error stops the run
    (:func:`pleval.monitor.effects_over_time`)."""
    if staggered_inference not in INFERENCE:
        raise DesignError(f"staggered_inference must be one of {INFERENCE}; got {staggered_inference!r}")
    ot = effects_over_time(data, columns, method=method, cohort=cohort, level=level, match_options=match_options,
                           checked=checked)
    c = ot.columns
    notes = list(ot.notes)
    schools, staggered = {}, {}
    for s, ds in ot._frames.items():
        by = ot.by_year[ot.by_year["subject"] == s]
        program = list(by.loc[by["program"], "time"])
        tr = ot.trend[(ot.trend["subject"] == s) & ot.trend["per"].str.endswith("(program periods)")]
        if not len(tr):  # fewer than two program periods: no pooled trend, nor school slopes to compare with one
            notes.append(f"[{s}] no school trajectories: they need two program periods ({len(program)} here)")
            continue
        trend = float(tr["estimate"].iloc[0])
        sd = float(by.loc[by["program"], "sd"].mean()) if by["program"].any() else float(by["sd"].mean())
        covs = pd.DataFrame(index=ds.index)
        try:
            st = school_trajectories(ds, outcome=c.outcome, treatment=c.treatment, grade=c.grade, covariates=covs,
                                     pooled_trend=trend, program_periods=program, sd=sd, subject=s, alpha=alpha,
                                     per=c.time)
            schools[s] = st
        except DesignError as exc:
            notes.append(f"[{s}] no school trajectories: {exc}")
            continue
        if cohort is None:
            continue
        gt = _staggered(ds, st, cohort, c, control, level, staggered_inference)
        if isinstance(gt, str):
            notes.append(f"[{s}] no staggered-adoption event study: {gt}")
        else:
            staggered[s] = gt
    prov = {"input_sha256": input_sha256 or frame_sha256(data), "method": method, "cohort": cohort,
            "control": control, "staggered_inference": staggered_inference, "level": level, "alpha": alpha,
            "effects_inference": ot.inference, "columns": {k: list(v) for k, v in c.roles().items()}}
    try:
        from .. import __version__
        prov["pleval"] = __version__
    except Exception:  # pragma: no cover - metadata missing in a bare checkout
        prov["pleval"] = "unknown"
    return Monitoring(ot, schools, staggered, tuple(notes), prov)


def _staggered(ds, st: SchoolTrajectories, cohort: str, c: Columns, control: str, level: float, inference: str):
    """Group-time effects on school × period means of the adjusted outcome, or why not."""
    sy = st.school_years
    g = ds.groupby("_cluster")[cohort].first()
    times = sorted(sy["time"].unique())
    counts = sy.groupby("school")["time"].nunique()
    full = counts[counts == len(times)].index
    panel = sy[sy["school"].isin(full)].assign(cohort=lambda d: pd.to_numeric(d["school"].map(g), errors="coerce"))
    if not pd.api.types.is_numeric_dtype(sy["time"]):  # terms (text): numbered in their sorted order
        first = sy[sy["school"].isin(full)]["school"].map(g)
        at = np.searchsorted(np.asarray(times, dtype=object), first.fillna("").to_numpy(dtype=object))
        panel = panel.assign(time=np.searchsorted(np.asarray(times, dtype=object), panel["time"].to_numpy(dtype=object)),
                             cohort=np.where(first.notna(), at, np.nan))
        times = list(range(len(times)))
    cohorts = panel.loc[panel["cohort"].notna(), "cohort"].unique()
    if len(cohorts) == 0 or not (cohorts > min(times)).any():
        return "no PL school has a pre-program period in the data"
    try:
        gt = group_time_effects(panel, outcome="estimate", unit="school", time="time", cohort="cohort",
                                control=control, level=level, inference=inference)
    except (DataError, DesignError) as exc:
        return str(exc)
    dropped = len(counts) - len(full)
    if dropped:
        gt = replace(gt, notes=gt.notes + (f"{dropped} school(s) not observed in every period left out",))
    return gt


def save_monitoring(m: Monitoring, out, *, figures: bool = True, html=None) -> Path:
    """Write the outputs folder: CSV tables, PNG figures (:data:`pleval.outputs.PRINT_DPI`), ``summary.md`` and
    ``provenance.json``, atomically (:func:`pleval.outputs.atomic_folder`). ``html``, a function
    ``(m, images) -> str`` with ``images`` mapping figure names (file names without ``.png``) to
    PNG bytes, writes ``report.html``: :func:`pleval.report.save_monitoring` passes
    :func:`pleval.report.monitoring.monitoring_html` (this module does not import the report)."""
    from ..outputs import PRINT_DPI, atomic_folder
    from ..findings import slug
    from ..plots import to_png
    from .plots import effects_over_time_plot, trajectories_plot

    ot = m.over_time
    tables = {
        "panel_checks.csv": ot.panel.counts, "panel_periods.csv": ot.panel.periods,
        "effects_by_year.csv": ot.by_year, "effects_by_exposure.csv": ot.by_exposure, "trend.csv": ot.trend,
        "equity_over_time.csv": ot.equity,
    }
    if m.schools:
        tables["school_trajectories.csv"] = pd.concat([st.slopes.assign(subject=s) for s, st in m.schools.items()])
        tables["school_years.csv"] = pd.concat([st.school_years.assign(subject=s) for s, st in m.schools.items()])
    if m.staggered:
        tables["group_time_effects.csv"] = pd.concat([g.table.assign(subject=s) for s, g in m.staggered.items()])
        tables["event_study.csv"] = pd.concat([g.event_study().table.assign(subject=s) for s, g in m.staggered.items()])
    written = list(tables) + ["summary.md", "provenance.json", "figures", "report.html"]
    with atomic_folder(out, replaced=written) as tmp:
        for name, t in tables.items():
            t.to_csv(tmp / name, index=False)
        (tmp / "summary.md").write_text("# Monitoring over time\n\n```text\n" + m.summary() + "\n```\n")
        (tmp / "provenance.json").write_text(json.dumps(m.provenance, indent=2, default=str) + "\n")
        if figures:
            fig_dir = tmp / "figures"
            fig_dir.mkdir()
            figs = {"effects_by_year.png": ot.plot(by="year"), "effects_by_exposure.png": ot.plot(by="exposure")}
            for s, st in m.schools.items():
                figs[f"school_trajectories_{slug(s)}.png"] = trajectories_plot(st)
            for s in m.staggered:
                figs[f"event_study_{slug(s)}.png"] = m.plot_event_study(s)
            if len(ot.equity):
                for s in ot.subjects:
                    e = ot.equity[(ot.equity["subject"] == s) & ot.equity["band"].ne("gap (top − bottom)")]
                    figs[f"equity_over_time_{slug(s)}.png"] = effects_over_time_plot(
                        e.rename(columns={"subject": "_s", "band": "subject"}), key="time",
                        level=ot.level, xlabel=ot.columns.time, title=f"{s}: effects by baseline band over time")
            images = {name.removesuffix(".png"): to_png(fig, dpi=PRINT_DPI) for name, fig in figs.items()}
            for name, png in images.items():
                (fig_dir / f"{name}.png").write_bytes(png)
        else:
            images = {}
        if html is not None:
            (tmp / "report.html").write_text(html(m, images), encoding="utf-8")
    return Path(out)


__all__ = ["monitor", "Monitoring", "save_monitoring"]
