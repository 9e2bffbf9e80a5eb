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
    schools, drawn while its school effects and placebo rounds are estimated, for :func:`save`
    to take instead of drawing them again.

    Give it as ``while_waiting=`` to :func:`pleval.estimate`, then to :func:`save` as
    ``early=``::

        early = EarlyFigures(dpi=200)
        ev = pleval.estimate(df, while_waiting=early)
        pleval.report.save(ev, "results", early=early)

    (or ``early.close()`` for an evaluation not saved).

    Called with the estimate's preview (an :class:`~pleval.estimate.Evaluation` holding the
    effects, balance, propensity scores and sensitivity analysis, each final) and ``pending()``
    (True while the placebo worker runs and this process still estimates the PL schools'
    effects: both cores are taken), it first imports what writing the outputs needs
    (:data:`WRITERS`), then hands the preview's figures (percentile charts, love plots,
    propensity overlap, sensitivity contours) to a forked process (:func:`pleval._workers.start`,
    with the preview's ``workers`` ≥ 2; :class:`Behind`), which waits while ``pending()`` and
    then draws them, costliest first: it takes the core the worker leaves when its rounds end
    first, or this process's when it waits for them, not a core another process is using. Its
    figures' names are a queue it shares with :func:`save`'s processes, which take the ones it
    has not begun once they have drawn their own (from then on it draws whatever ``pending()``
    says), so each is drawn once and none waited for longer than one figure. Where no process
    can be forked, the figures are drawn here while ``pending()``, cheapest first. Each is drawn as :func:`save`
    draws it (PNG at ``dpi``, and SVG with ``svg``), from the very tables the finished
    evaluation holds, so the files are the same bytes. A figure whose drawing fails is left to
    :func:`save`, which raises the error where it would have raised it.
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
        if makers and (preview.options.get("workers") or 1) >= 2 and can_fork():
            self._behind = Behind.start(makers, outputs._by_cost(list(makers)), self.dpi, self.svg, wait=pending)
        if self._behind is not None:
            return
        left = list(reversed(outputs._by_cost(list(makers))))  # cheapest first: the last one may delay the process
        while left and pending():
            try:
                self._drawn.update(outputs._draw({left[0]: makers[left[0]]}, outputs._Queue(left[:1], shared=False),
                                                 self.dpi, self.svg))
            except Exception:  # drawn again by save(), which raises it
                return
            del left[0]

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
        share (that process draws from now on, whatever ``pending()`` says); None if there are
        none (or they are another evaluation's or format's: that process is then stopped)."""
        if not self._same(ev, dpi, svg):
            self.close()
        if self._behind is not None:
            self._behind.go()
        return self._behind


BEHIND_NICENESS = 5
"""How much lower the figures' process behind runs (``os.nice``): it takes the cores' idle time
first (the calibration's threads keep both cores) without being starved by a loaded machine
(at 5 it gets about a third of a normal process's share)."""


class Behind:
    """Figures drawn by a forked process (:func:`_draw_behind`) from a queue of names shared
    with :func:`save`'s processes (:class:`~pleval.report.outputs._Queue` in shared memory):
    they draw the ones it has not begun (:attr:`queue`, :attr:`names`) and :meth:`collect`
    takes what it drew. The process begins once ``wait()`` is False or :meth:`go` is called."""

    def __init__(self, job, queue, now):
        self.job, self.queue, self._now = job, queue, now
        self._done = weakref.finalize(self, job.cancel)  # stopped (and reaped) if never collected

    @property
    def names(self) -> list[str]:
        return list(self.queue.names)

    @classmethod
    def start(cls, makers: dict, names: list[str], dpi: int, svg: bool,
              wait: Callable[[], bool] | None = None) -> "Behind | None":
        from .._workers import SharedFlag, start
        from .outputs import _Queue

        queue, now = _Queue(names, shared=True), SharedFlag(False)
        job = start(_draw_behind, makers, queue, dpi, svg, wait, now, niceness=BEHIND_NICENESS)
        return None if job is None else cls(job, queue, now)

    def go(self) -> None:
        """Let the process draw now, whatever its ``wait()`` says."""
        self._now.set()

    def cancel(self) -> None:
        """Stop the process (its figures are not needed)."""
        self._done()

    def collect(self) -> dict[str, tuple[bytes, bytes | None]]:
        """The figures the process drew (waiting for the one it is drawing), name -> (PNG, SVG or
        None); none if it failed: the figures it took are then missing, for ``save`` to draw
        (and raise the error where it would). Once: the process is reaped."""
        if not self._done.alive:
            return {}
        self.go()
        self._done.detach()
        try:
            return self.job.result()
        except Exception:  # noqa: BLE001 - drawn again by save(), which raises it
            return {}
        finally:
            self.job.cancel()


WAIT_POLL = 0.01
"""Seconds between a waiting :class:`Behind` process's looks at its ``wait()``."""


def _draw_behind(receive, makers: dict, queue, dpi: int, svg: bool, wait, now) -> dict:
    """The forked process's part of :class:`Behind`: once ``wait()`` is False or ``now`` is set,
    the figures taken from ``queue`` until none is left."""
    import time

    from .outputs import _draw

    while wait is not None and not now.is_set() and wait():
        time.sleep(WAIT_POLL)
    return _draw(makers, queue, dpi, svg)
