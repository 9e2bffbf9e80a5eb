"""Figures drawn while an evaluation is still being estimated: :class:`EarlyFigures`."""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

WRITERS = ("pleval.report.outputs", "pleval.report.to_html", "pleval.report.to_pdf", "xlsxwriter", "tabulate",
           "tomli_w")
"""What writing the outputs imports (matplotlib, reportlab and jinja2 with the report's modules,
about 0.4 s on an idle machine; the workbook's xlsxwriter, 0.04 s, and summary.md's tabulate,
through pandas, 0.10 s at load 6, imported when first used after the analysis), imported by
:class:`EarlyFigures` while the process would wait."""

PRINT_DPI = 200
"""Resolution of the PNG figures (and of the figures in the HTML and PDF reports)."""


class EarlyFigures:
    """The figures of an evaluation that need neither its school effects nor its placebo
    schools, drawn while its placebo rounds run in a worker process, for :func:`save` to take
    instead of drawing them again.

    Give it as ``while_waiting=`` to :func:`pleval.estimate`, then to :func:`save` as
    ``early=``::

        early = EarlyFigures(dpi=200)
        ev = pleval.estimate(df, while_waiting=early)
        pleval.report.save(ev, "results", early=early)

    Called with the estimate's preview (an :class:`~pleval.estimate.Evaluation` holding the
    effects, balance, propensity scores and sensitivity analysis, each final) and ``pending()``
    (True while the worker runs), it first imports what writing the outputs needs
    (:data:`WRITERS`), then draws the preview's figures (percentile
    charts, love plots, propensity overlap, sensitivity contours), cheapest first, as long as
    the worker runs: the main process would otherwise wait idle (and the figure being drawn
    when the worker ends delays it least). Each is drawn as
    :func:`save` draws it (PNG at ``dpi``, and SVG with ``svg``), from the very tables the
    finished evaluation holds, so the files are the same bytes. A figure whose drawing fails is
    left to :func:`save`, which raises the error where it would have raised it.
    """

    def __init__(self, dpi: int = PRINT_DPI, svg: bool = False):
        self.dpi, self.svg = dpi, svg
        self._drawn: dict[str, tuple[bytes, bytes | None]] = {}
        self._effects: dict = {}

    def __call__(self, preview: "Evaluation", pending: Callable[[], bool]) -> None:
        for name in WRITERS:
            with contextlib.suppress(ImportError):  # an optional one missing: save() says so
                importlib.import_module(name)
        from .. import plots
        from . import outputs

        self._effects, self._drawn = dict(preview.effects), {}  # this evaluation's only
        makers = plots.evaluation_figure_makers(preview)
        for name in reversed(outputs._by_cost(list(makers))):  # cheapest first: the last one may delay the process
            if not pending():
                break
            try:
                self._drawn.update(outputs._draw({name: makers[name]}, outputs._Queue([name], shared=False), self.dpi,
                                                 self.svg))
            except Exception:  # drawn again by save(), which raises it
                break

    def figures(self, ev: "Evaluation", dpi: int, svg: bool) -> dict[str, tuple[bytes, bytes | None]]:
        """The figures drawn for ``ev`` (the evaluation of the preview they were drawn from) at
        ``dpi`` and ``svg``: name -> (PNG, SVG or None); none for another evaluation or format."""
        same = self._effects.keys() == ev.effects.keys() and all(ev.effects[k] is e for k, e in self._effects.items())
        return dict(self._drawn) if same and (dpi, svg) == (self.dpi, self.svg) else {}
