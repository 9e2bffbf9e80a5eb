"""Figures drawn while an evaluation is still being estimated: :class:`EarlyFigures`."""

from __future__ import annotations

import contextlib
import importlib
import weakref
from typing import TYPE_CHECKING, Callable

from ..outputs import PRINT_DPI  # (the figures of the HTML and PDF reports too)

if TYPE_CHECKING:  # pragma: no cover
    from ..estimate import Evaluation

WRITERS = ("pleval.report.outputs", "pleval.report.to_html", "pleval.report.to_pdf", "xlsxwriter", "tabulate",
           "tomli_w")
"""What writing the outputs imports (matplotlib, reportlab and jinja2 with the report's modules,
about 0.4 s on an idle machine; the workbook's xlsxwriter, 0.04 s, and summary.md's tabulate,
through pandas, 0.10 s at load 6, imported when first used after the analysis), imported by
:class:`EarlyFigures` while the process would wait."""


class EarlyFigures:
    """The figures of an evaluation that need neither its school effects nor its placebo
    schools, drawn while its placebo rounds run in a worker process, for :func:`save` to take
    instead of drawing them again.

    Give it as ``while_waiting=`` to :func:`pleval.estimate`, then to :func:`save` as
    ``early=``::

        early = EarlyFigures(dpi=200)
        ev = pleval.estimate(df, while_waiting=early)
        pleval.report.save(ev, "results", early=early)

    (or ``early.close()`` for an evaluation not saved).

    Called with the estimate's preview (an :class:`~pleval.estimate.Evaluation` holding the
    effects, balance, propensity scores and sensitivity analysis, each final) and ``pending()``
    (True while the worker runs), it first imports what writing the outputs needs
    (:data:`WRITERS`), then draws the preview's figures (percentile
    charts, love plots, propensity overlap, sensitivity contours), cheapest first, as long as
    the worker runs: the main process would otherwise wait idle (and the figure being drawn
    when the worker ends delays it least). The figures left when the worker ends are drawn by
    a forked process (:func:`pleval._workers.start`, with the preview's ``workers`` ≥ 2) while
    this one takes the rounds, calibrates and assembles the evaluation (a core that would
    otherwise be idle or shared by two threads); their names are a queue it shares with
    :func:`save`'s processes, which take the ones it has not begun once they have drawn their
    own (:class:`Behind`), so each is drawn once and none waited for longer than one figure.
    Each is drawn as :func:`save` draws it (PNG at ``dpi``, and SVG with ``svg``), from the very
    tables the finished evaluation holds, so the files are the same bytes. A figure whose
    drawing fails is left to :func:`save`, which raises the error where it would have raised it.
    """

    def __init__(self, dpi: int = PRINT_DPI, svg: bool = False):
        self.dpi, self.svg = dpi, svg
        self._drawn: dict[str, tuple[bytes, bytes | None]] = {}
        self._effects: dict = {}
        self._behind: Behind | None = None

    def __call__(self, preview: "Evaluation", pending: Callable[[], bool]) -> None:
        for name in WRITERS:
            with contextlib.suppress(ImportError):  # an optional one missing: save() says so
                importlib.import_module(name)
        from .. import plots
        from .._workers import can_fork
        from . import outputs

        self.close()  # a previous evaluation's
        self._effects, self._drawn = dict(preview.effects), {}  # this evaluation's only
        makers = plots.evaluation_figure_makers(preview)
        left = list(reversed(outputs._by_cost(list(makers))))  # cheapest first: the last one may delay the process
        while left and pending():
            try:
                self._drawn.update(outputs._draw({left[0]: makers[left[0]]}, outputs._Queue(left[:1], shared=False),
                                                 self.dpi, self.svg))
            except Exception:  # drawn again by save(), which raises it
                return
            del left[0]
        if left and (preview.options.get("workers") or 1) >= 2 and can_fork():
            self._behind = Behind.start({k: makers[k] for k in left}, outputs._by_cost(left), self.dpi, self.svg)

    def close(self) -> None:
        """Stop the process drawing figures behind, if any (:func:`save` takes what it drew; an
        evaluation not saved, e.g. one whose estimate raised, should close it)."""
        if self._behind is not None:
            self._behind.cancel()
            self._behind = None

    def _same(self, ev: "Evaluation", dpi: int, svg: bool) -> bool:
        return (self._effects.keys() == ev.effects.keys() and all(ev.effects[k] is e for k, e in self._effects.items())
                and (dpi, svg) == (self.dpi, self.svg))

    def figures(self, ev: "Evaluation", dpi: int, svg: bool) -> dict[str, tuple[bytes, bytes | None]]:
        """The figures drawn in this process for ``ev`` (the evaluation of the preview they were
        drawn from) at ``dpi`` and ``svg``: name -> (PNG, SVG or None); none for another
        evaluation or format."""
        return dict(self._drawn) if self._same(ev, dpi, svg) else {}

    def behind(self, ev: "Evaluation", dpi: int, svg: bool) -> "Behind | None":
        """The figures of ``ev`` a forked process is drawing (:class:`Behind`), for ``save`` to
        share; None if there are none (or they are another evaluation's or format's: that
        process is then stopped)."""
        if not self._same(ev, dpi, svg):
            self.close()
        return self._behind


BEHIND_NICENESS = 5
"""How much lower the figures' process behind runs (``os.nice``): it takes the cores' idle time
first (the calibration's threads keep both cores) without being starved by a loaded machine
(at 5 it gets about a third of a normal process's share)."""


class Behind:
    """Figures drawn by a forked process (:func:`_draw_behind`) from a queue of names shared
    with :func:`save`'s processes (:class:`~pleval.report.outputs._Queue` in shared memory):
    they draw the ones it has not begun (:attr:`queue`, :attr:`names`) and :meth:`collect`
    takes what it drew."""

    def __init__(self, job, queue):
        self.job, self.queue = job, queue
        self._done = weakref.finalize(self, job.cancel)  # stopped (and reaped) if never collected

    @property
    def names(self) -> list[str]:
        return list(self.queue.names)

    @classmethod
    def start(cls, makers: dict, names: list[str], dpi: int, svg: bool) -> "Behind | None":
        from .._workers import start
        from .outputs import _Queue

        queue = _Queue(names, shared=True)
        job = start(_draw_behind, makers, queue, dpi, svg, niceness=BEHIND_NICENESS)
        return None if job is None else cls(job, queue)

    def cancel(self) -> None:
        """Stop the process (its figures are not needed)."""
        self._done()

    def collect(self) -> dict[str, tuple[bytes, bytes | None]]:
        """The figures the process drew (waiting for the one it is drawing), name -> (PNG, SVG or
        None); none if it failed: the figures it took are then missing, for ``save`` to draw
        (and raise the error where it would). Once: the process is reaped."""
        if not self._done.alive:
            return {}
        self._done.detach()
        try:
            return self.job.result()
        except Exception:  # noqa: BLE001 - drawn again by save(), which raises it
            return {}
        finally:
            self.job.cancel()


def _draw_behind(receive, makers: dict, queue, dpi: int, svg: bool) -> dict:
    """The forked process's part of :class:`Behind`: the figures taken from ``queue`` until none is left."""
    from .outputs import _draw

    return _draw(makers, queue, dpi, svg)
