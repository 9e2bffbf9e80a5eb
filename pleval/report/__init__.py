"""Reporting an :class:`~pleval.estimate.Evaluation`: a self-contained HTML report, the same
report as a PDF for print, a Markdown summary and the outputs folder.

``pleval.report.save(evaluation, "results")`` writes the outputs folder (what ``pleval
estimate`` writes). The report is a list of sections (:data:`pleval.report.sections.SECTIONS`),
each built from the Evaluation as format-independent blocks (:mod:`pleval.report.blocks`) and
rendered to HTML (:mod:`~pleval.report.to_html`, template ``templates/report.html.j2``), to a
print-ready PDF (:mod:`~pleval.report.to_pdf`) and to Markdown
(:mod:`~pleval.report.to_markdown`). Figures come from :mod:`pleval.plots`. Data
flow one way: this package reads an Evaluation; :mod:`pleval.estimate` never imports it.

``pleval.report.save_monitoring(m, "results_monitor")`` writes the outputs folder of ``pleval
monitor`` with its ``report.html`` (:mod:`pleval.report.monitoring`), from a
:class:`~pleval.monitor.Monitoring`.

The names below are imported on first use (PEP 562 module ``__getattr__``): ``from
pleval.report import EarlyFigures`` (or ``check_outputs``, :func:`pleval.outputs.check_outputs`)
loads neither matplotlib nor reportlab nor jinja2, so ``pleval estimate`` loads them only when it
has outputs to write (while it waits for its placebo worker, :class:`EarlyFigures`).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:  # the same names, imported eagerly, for type checkers and the API docs
    from ..outputs import PROVENANCE_MARK, check_outputs
    from .early import EarlyFigures
    from .monitoring import monitoring_html, save_monitoring
    from .outputs import run_config, save
    from .sections import SECTIONS, build, school_table
    from .to_html import render_html
    from .to_markdown import render_markdown
    from .to_pdf import render_pdf

# Public name -> the module that defines it (in this package; "..": pleval's).
_LAZY = {
    "save": "outputs", "run_config": "outputs", "check_outputs": ".outputs", "PROVENANCE_MARK": ".outputs",
    "EarlyFigures": "early", "render_html": "to_html", "render_pdf": "to_pdf", "render_markdown": "to_markdown",
    "build": "sections", "SECTIONS": "sections", "school_table": "sections", "save_monitoring": "monitoring",
    "monitoring_html": "monitoring",
}

__all__ = ["save", "check_outputs", "run_config", "render_html", "render_pdf", "render_markdown", "build", "SECTIONS",
           "school_table", "save_monitoring", "monitoring_html", "EarlyFigures",
           "PROVENANCE_MARK"]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
