"""The outputs folder: :func:`save` writes every table, figure and report of an
:class:`~pleval.estimate.Evaluation` into one folder, with the configuration that repeats the
run (``run.toml``) and provenance (``provenance.json``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import outputs as atomic
from .. import plots
from ..outputs import PROVENANCE_MARK, check_outputs  # where the command line checks --out before importing this module
from .early import PRINT_DPI, EarlyFigures
from .sections import build
from .to_html import render_html
from .to_markdown import render_markdown
from .to_pdf import layout, render_pdf

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation


def run_config(ev: "Evaluation", *, file: str | None = None, out: str | None = None,
               folder: Path | None = None, svg: bool = False) -> dict[str, Any]:
    """The resolved configuration as a TOML-ready dict (no None values): what ``run.toml`` holds
    and ``pleval estimate --config`` reads back; a comparison pool's path is relative to
    ``folder`` (where run.toml is written) when given; ``svg = true`` when the figures were
    written as SVG too."""
    opts = dict(ev.options)
    cfg: dict[str, Any] = {}
    src = file or ev.provenance.get("input", {}).get("path")
    if src:
        cfg["file"] = str(src)
    for k in ("design", "method", "subject", "seed"):
        if opts.get(k) is not None:
            cfg[k] = opts.pop(k)
        else:
            opts.pop(k, None)
    if out:
        cfg["out"] = str(out)
    if svg:
        cfg["svg"] = True
    read = ev.provenance.get("input", {}).get("read_options")
    if read:  # how the file was read (--sheet, --sep, ...): the run is repeated on the same rows
        cfg["read"] = dict(read)
    cols = {}
    for role, cols_ in ev.columns.roles().items():
        cols[role] = list(cols_) if role in ("pretest", "covariates") else cols_[0]
    for role in ("pretest", "covariates"):
        cols.setdefault(role, [])
    if ev.columns.treated_label is not None:
        cols["treated_label"] = ev.columns.treated_label
    cfg["columns"] = cols
    pool = ev.provenance.get("pool")
    if pool and pool.get("path"):  # a comparison pool given apart (pleval.pool): where it is and the engine
        path = pool["path"]
        cfg["pool"] = {"path": _relative(path, folder) if folder is not None and Path(path).exists() else path,
                       "table": pool.get("table"), "engine": pool["engine"]}
    match = opts.pop("match", None)
    cfg["options"] = {k: v for k, v in opts.items() if v is not None}
    if match:
        cfg["match"] = {k: v for k, v in match.items() if v is not None}
    return _toml_safe(cfg)


def _toml_safe(v):
    if isinstance(v, dict):
        return {str(k): _toml_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_toml_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def save(ev: "Evaluation", out_dir, *, force: bool = False, command: str | None = None,
         input_path: str | None = None, dpi: int = PRINT_DPI, svg: bool = False, workers: int | None = None,
         early: EarlyFigures | None = None) -> Path:
    """Write the outputs folder for ``ev`` and return its path: summary.md, overall.csv,
    school_effects.csv and .xlsx, balance.csv, equivalence.csv, heterogeneity.csv,
    attrition.csv (trials), placebo.csv, sensitivity.csv (matched designs), run.toml, provenance.json, every figure as
    plots/<name>.png (``dpi``, print resolution by default) and, with ``svg``, as plots/<name>.svg
    too (drawn a second time: about a third of the figures' cost), report.html and report.pdf
    (the same sections, laid out for print).
    ``workers`` (default: the evaluation's ``workers`` option): with 2 and a system that can
    fork, a second process draws figures beside this one (each figure drawn by whichever
    process is free first) and then writes report.pdf while this one writes the workbook and
    report.html (:func:`_write_files`; the same bytes as with 1).
    ``early``: the :class:`~pleval.report.EarlyFigures` given to :func:`pleval.estimate` for
    ``ev``; the figures it drew are written as they are (the same bytes), those its forked
    process is drawing are shared with it (:class:`~pleval.report.early.Behind`: this save's
    processes draw the ones it has not begun once they have drawn the others), the rest are
    drawn here.
    ``command`` is recorded in provenance.json; ``input_path`` is the input file (default: the
    one the evaluation read), never overwritten.

    Refuses (``PlevalError``) what :func:`check_outputs` refuses. Everything is written into a
    temporary folder beside ``out_dir`` and swapped into place at the end
    (:func:`pleval.outputs.atomic_folder`): an interrupted run leaves the previous outputs
    whole. Files a previous pleval run wrote there are replaced; other files are kept.
    """
    out = Path(out_dir)
    src = input_path or ev.provenance.get("input", {}).get("path")
    previous = check_outputs(out, force=force, input_path=src)
    from .._workers import can_fork, collector_frozen, default_workers

    workers = workers or ev.options.get("workers") or default_workers()
    two = workers >= 2 and can_fork()
    makers = plots.evaluation_figure_makers(ev)
    drawn = {k: v for k, v in early.figures(ev, dpi, svg).items() if k in makers} if early is not None else {}
    behind = early.behind(ev, dpi, svg) if early is not None else None
    if behind is not None and not set(behind.names) <= set(makers) - set(drawn):  # not this save's figures
        behind.cancel()
        behind = None
    later = {k: makers[k] for k in behind.names} if behind is not None else {}
    figs = {k: make if two else make() for k, make in makers.items() if k not in drawn and k not in later}  # a process builds its own
    with atomic.atomic_folder(out, replaced=previous or []) as tmp, collector_frozen():  # collections over the figures' objects only
        _write_files(ev, tmp, list(makers), figs, drawn, src=src, out=out, command=command, dpi=dpi, svg=svg,
                     forked=two, behind=behind, later=later)
    return out


FIGURE_COST = {"forest": 4.0, "distribution": 2.0, "overlap": 1.7, "sensitivity": 1.7}
"""Cost of building and drawing a figure of each kind against a percentile chart's (others 1),
measured at 1M rows and 200 dpi (the percentile chart 0.10 CPU-s, the love plot 0.09, the
overlap and sensitivity plots 0.17, the distribution 0.16–0.25, the forest plot of 207
schools 0.40): the figures are drawn costliest first (:func:`_by_cost`)."""


def _by_cost(names: list[str]) -> list[str]:
    """``names`` costliest first by :data:`FIGURE_COST` (ties in their order): two processes
    taking them in turn (:class:`_Queue`) end with the cheapest, so they finish together."""
    return sorted(names, key=lambda k: -FIGURE_COST.get(k.split("_")[0], 1.0))


class _Queue:
    """The figures to draw, taken one at a time by whichever process is free: a counter in
    memory shared by a parent and its forked child (with its lock), or a plain one."""

    def __init__(self, names: list[str], shared: bool):
        self.names = names
        if shared:
            import multiprocessing

            self._next = multiprocessing.get_context("fork").Value("i", 0)
        else:
            self._next = None
            self._i = 0

    def take(self) -> str | None:
        """The next figure's name, or None when every figure is taken."""
        if self._next is None:
            i, self._i = self._i, self._i + 1
        else:
            with self._next.get_lock():
                i = self._next.value
                self._next.value = i + 1
        return self.names[i] if i < len(self.names) else None


def _draw(figs: dict, queue: _Queue, dpi: int, svg: bool) -> dict[str, tuple[bytes, bytes | None]]:
    """PNG (and SVG) bytes of the figures taken from ``queue`` until none is left; ``figs``
    holds figures or functions that build them. Each figure is let go once drawn (its pixels
    with it)."""
    out = {}
    while (k := queue.take()) is not None:
        fig = figs.pop(k)
        fig = fig if isinstance(fig, Figure) else fig()
        out[k] = plots.to_png_svg(fig, dpi=dpi) if svg else (plots.to_png(fig, dpi=dpi), None)
        del fig
    return out


def _worker_job(receive, ev: "Evaluation", sections: list, figs: dict, queue: _Queue, dpi: int, svg: bool,
                tmp: Path, later: dict | None = None, behind: _Queue | None = None) -> None:
    """The forked process's part: ``report.pdf`` laid out but for its figures (the tables, which
    need none: :func:`~pleval.report.to_pdf.layout`); figures from ``queue`` until none is left,
    then from ``behind`` (``later``'s, shared with :class:`~pleval.report.early.Behind`'s
    process), handed to the parent (:func:`pleval._workers.post`); then, given every figure by
    the parent, ``report.pdf`` in ``tmp``."""
    from .._workers import post

    story = layout(ev, sections)
    drawn = _draw(figs, queue, dpi, svg)
    post({**drawn, **_draw(later, behind, dpi, svg)} if behind is not None else drawn)
    images = receive()
    (tmp / "report.pdf").write_bytes(render_pdf(ev, images, dpi=dpi, story=story))


def _write_files(ev: "Evaluation", tmp: Path, names: list[str], figs: dict, early: dict, *, src, out: Path, command,
                 dpi: int, svg: bool, forked: bool = False, behind=None, later: dict | None = None) -> None:
    """Every output file of ``ev``, written into ``tmp`` (run.toml's paths are relative to ``out``).
    ``names``: the figures, in their order; ``figs``: those to draw, or functions building them;
    ``early``: figures drawn (name -> PNG and SVG bytes); ``behind``: the
    :class:`~pleval.report.early.Behind` drawing ``later``'s figures (functions building them),
    whose queue this save's processes share once their own is done; a figure it failed to hand
    over is drawn here (raising its error here). ``forked``: a forked process
    (:class:`pleval._workers.Forked`, where the system gives one) lays out ``report.pdf`` but
    for its figures, draws figures beside this one, then writes ``report.pdf`` while this one
    writes the workbook and ``report.html`` (the PDF is the costliest of the files that need
    every figure). The figures are drawn
    costliest first, each by whichever process takes it first (:class:`_Queue`); this process
    writes the CSVs and ``summary.md`` before taking any. The files are those of one process,
    byte for byte."""
    from .._workers import start

    (tmp / "plots").mkdir(exist_ok=True)
    written: list[str] = []

    def put(name: str, data: str | bytes) -> None:
        p = tmp / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
        written.append(name)

    queue = _Queue(_by_cost(list(figs)), shared=forked)
    shared = None if behind is None else behind.queue
    sections = build(ev, names)  # before the fork: the forked process lays out report.pdf's tables first
    job = start(_worker_job, ev, sections, figs, queue, dpi, svg, tmp, later, shared) \
        if forked and (figs or later) else None
    try:
        _write_tables(ev, put, sections, {k: f"plots/{k}.png" for k in names})
        drawn = {**early, **_draw(figs, queue, dpi, svg)}
        if shared is not None:
            drawn.update(_draw(dict(later), shared, dpi, svg))
        if job is not None:
            drawn.update(job.posted())
        if behind is not None:
            drawn.update(behind.collect())
            missing = [k for k in names if k not in drawn]  # its process failed: drawn here, raising its error here
            drawn.update(_draw({k: later[k] for k in missing}, _Queue(missing, shared=False), dpi, svg))
        images = {k: drawn[k][0] for k in names}
        if job is not None:
            job.send(images)
        _write_school_xlsx(ev, tmp / "school_effects.xlsx")
        written.append("school_effects.xlsx")
        for k in names:
            put(f"plots/{k}.png", images[k])
            if drawn[k][1] is not None:
                put(f"plots/{k}.svg", drawn[k][1])
        put("report.html", render_html(ev, images, sections=sections))
        if job is None:
            put("report.pdf", render_pdf(ev, images, dpi=dpi, sections=sections))
        else:
            job.result()
            written.append("report.pdf")
    finally:
        if job is not None:
            job.cancel()
        if behind is not None:  # (a no-op once collected)
            behind.cancel()
    _write_provenance(ev, tmp, put, written, src=src, out=out, command=command, svg=svg)


def _write_tables(ev: "Evaluation", put, sections: list, plot_files: dict) -> None:
    """The CSV tables and summary.md (from the report's ``sections``, built once for the three
    renderings)."""
    put("overall.csv", ev.overall.to_csv(index=False))
    put("school_effects.csv", ev.schools.to_csv(index=False))
    put("balance.csv", ev.balance.to_csv(index=False))
    put("equivalence.csv", ev.equivalence.to_csv(index=False))
    put("rating.csv", ev.rating.to_csv(index=False))
    if len(ev.moderators):
        put("moderators.csv", ev.moderators.to_csv(index=False))
    if len(ev.outcomes):
        put("outcomes.csv", ev.outcomes.to_csv(index=False))
    if len(ev.subgroups()):
        put("subgroups.csv", ev.subgroups().to_csv(index=False))
        put("subgroup_tests.csv", ev.subgroup_tests.to_csv(index=False))
        put("equity.csv", ev.equity.to_csv(index=False))
    put("heterogeneity.csv", ev.heterogeneity.to_csv(index=False))
    if len(ev.attrition):
        put("attrition.csv", ev.attrition.to_csv(index=False))
    if len(ev.placebo):
        put("placebo.csv", ev.placebo.to_csv(index=False))
    if len(ev.sensitivity):
        put("sensitivity.csv", ev.sensitivity.to_csv(index=False))
    if len(ev.randomization):
        put("randomization.csv", ev.randomization.to_csv(index=False))
    if len(ev.bootstrap):
        put("bootstrap.csv", ev.bootstrap.to_csv(index=False))
    put("summary.md", render_markdown(ev, plot_files, sections=sections))


def _write_provenance(ev: "Evaluation", tmp: Path, put, written: list, *, src, out: Path, command, svg: bool) -> None:
    """run.toml and provenance.json (which lists every file written)."""
    import tomli_w

    put("run.toml", "# pleval estimate: the resolved configuration of this run.\n"
                    "# Repeat it exactly with: pleval estimate --config run.toml\n"
                    + tomli_w.dumps(run_config(ev, file=_relative(src, out) if src else None, out=".", folder=out,
                                               svg=svg)))
    prov = {
        "kind": PROVENANCE_MARK,
        **json.loads(json.dumps(dict(ev.provenance), default=str)),
        "command": command,
        "design": ev.design,
        "method": ev.method,
        "options": json.loads(json.dumps(dict(ev.options), default=str)),
        "warnings": list(ev.warnings),
        # the data checks' findings (warnings and notes) beside the run's warnings (before 2026-12-04 only the report had them)
        "data_checks": [] if ev.checks is None else [{"level": p.level, "message": p.line} for p in ev.checks.problems],
        "outputs": sorted(written + ["provenance.json"]),
    }
    (tmp / "provenance.json").write_text(json.dumps(prov, indent=2), encoding="utf-8")


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` (how ``run.toml`` stores it: paths in a config file are
    read relative to the file's folder), or absolute where no relative path exists."""
    import os

    try:
        return os.path.relpath(Path(path).resolve(), folder.resolve())
    except ValueError:  # pragma: no cover - different drives on Windows
        return str(Path(path).resolve())


def _write_school_xlsx(ev: "Evaluation", path: Path) -> None:
    """The school table as Excel: :meth:`pleval.heterogeneity.SchoolEffects.export` (one formatted
    sheet per subject, a summary sheet, footnotes); a one-sheet note when there are none."""
    se = ev.school_effects
    if se is not None:
        het = ev.heterogeneity
        if het is not None and len(het) and "pi_low_pl_only" in het.columns and list(se.by) == ["subject"]:
            # the same prediction interval as heterogeneity.csv, the report and the terminal: the PL schools'
            # spread when at least the placebo schools', else the two pooled by precision (findings._spread_words)
            pred = {r.subject: (r.pi_low, r.pi_high, r.prob_negative_new,
                                "(at least the placebo spread)" if not r.tau2 < r.tau2_placebo
                                else "(PL and placebo spreads pooled by precision)")
                    for r in het.itertuples() if np.isfinite(r.pi_low_pl_only)}
            se = dataclasses.replace(se, options={**se.options, "prediction_interval": pred})
        se.export(path, title="Effect of personalized learning by school")
        return
    pd.DataFrame({"note": ["no school-by-school effects for this design"]}).to_excel(path, sheet_name="schools",
                                                                                        index=False)


__all__ = ["save", "check_outputs", "run_config", "PROVENANCE_MARK"]
