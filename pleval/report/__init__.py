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
"""

from .monitoring import monitoring_html, save_monitoring
from .outputs import PROVENANCE_MARK, check_outputs, run_config, save
from .sections import SECTIONS, build, school_table
from .to_html import render_html
from .to_markdown import render_markdown
from .to_pdf import render_pdf

__all__ = ["save", "check_outputs", "run_config", "render_html", "render_pdf", "render_markdown", "build", "SECTIONS",
           "school_table", "save_monitoring", "monitoring_html",
           "PROVENANCE_MARK"]
