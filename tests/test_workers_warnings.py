"""Warnings raised in :func:`pleval._workers.thread_map`'s threads: shown after the map in the
order of the calls (as a loop shows them, whichever thread warns first), filtered as before, and
left to a call's own ``catch_warnings(record=True)`` block; and a run's threads never hold
``catch_warnings`` blocks at once (before Python 3.14 the blocks are global to the process, so two
threads' blocks could undo each other's)."""

import collections
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pleval
from pleval import _workers

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"


def _warn_after(delays: dict):
    """A call that waits ``delays[x]`` s, then warns ``"call x"``, then returns x."""
    def f(x):
        time.sleep(delays.get(x, 0.0))
        warnings.warn(f"call {x}", UserWarning)
        return x
    return f


@pytest.mark.parametrize("delays", [{0: 0.2}, {1: 0.2}, {0: 0.15, 2: 0.05}])
def test_warnings_of_the_threads_come_in_the_order_of_the_calls(delays):
    shown_by = warnings._showwarnmsg
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        assert _workers.thread_map(_warn_after(delays), range(3), threads=3) == [0, 1, 2]
    assert [str(w.message) for w in got] == ["call 0", "call 1", "call 2"]  # not the order they were raised in
    assert all(w.filename == __file__ for w in got)  # where they were raised
    assert warnings._showwarnmsg is shown_by  # the wrapper is gone


def test_a_nested_map_keeps_the_order_and_the_filters_still_apply():
    def outer(x):
        time.sleep(0.1 if x == 0 else 0.0)
        return _workers.thread_map(_warn_after({0: 0.1}), [10 * x, 10 * x + 1], threads=2)

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="call 11")
        assert _workers.thread_map(outer, range(2), threads=2) == [[0, 1], [10, 11]]
    assert [str(w.message) for w in got] == ["call 0", "call 1", "call 10"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="call 0"):  # the first call's, as in a loop
            _workers.thread_map(_warn_after({}), range(2), threads=2)


def test_a_call_recording_its_own_warnings_still_gets_them():
    """As the propensity fits record their own (to see non-convergence): the call's block gets its
    warnings, the caller none of them; the other call's warning reaches the caller."""
    def f(x):
        if x == 0:
            with warnings.catch_warnings(record=True) as mine:
                warnings.simplefilter("always")
                warnings.warn("inside", UserWarning)
            return [str(w.message) for w in mine]
        time.sleep(0.1)
        warnings.warn("outside", UserWarning)
        return []

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        assert _workers.thread_map(f, range(2), threads=2) == [["inside"], []]
    assert [str(w.message) for w in got] == ["outside"]


def test_warnings_of_the_calls_before_an_error_are_shown():
    def f(x):
        warnings.warn(f"call {x}", UserWarning)
        if x == 1:
            raise ValueError("one")
        return x

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="one"):
            _workers.thread_map(f, range(2), threads=2)
    assert [str(w.message) for w in got] == ["call 0", "call 1"]


class _Blocks:
    """Every ``catch_warnings`` block entered in a run, by thread: whether one thread entered a
    block while another thread's was open, but for the blocks of the threads that started it (or
    started one of its starters) entered before they did (a thread waiting for the threads it
    started: its block encloses theirs), and whether any was left out of order."""

    def __init__(self, monkeypatch):
        self.lock, self.open, self.clashes, self.out_of_order = threading.Lock(), [], [], 0
        self.started: dict = {}
        self.threads = collections.Counter()
        self.tick = 0
        enter, leave, start = warnings.catch_warnings.__enter__, warnings.catch_warnings.__exit__, threading.Thread.start
        blocks = self

        def entered(cw):
            me = threading.current_thread()
            with blocks.lock:
                blocks.tick += 1
                blocks.clashes += [(me.name, t.name) for t, at, _ in blocks.open if t is not me and not blocks.encloses(t, at, me)]
                blocks.open.append((me, blocks.tick, id(cw)))
                blocks.threads[me.name.split("_")[0]] += 1
            return enter(cw)

        def left(cw, *exc):
            with blocks.lock:
                blocks.out_of_order += blocks.open[-1][2] != id(cw)
                blocks.open = [b for b in blocks.open if b[2] != id(cw)]
            return leave(cw, *exc)

        def started(thread):
            with blocks.lock:
                blocks.tick += 1
                blocks.started[thread] = (blocks.tick, threading.current_thread())
            return start(thread)

        monkeypatch.setattr(warnings.catch_warnings, "__enter__", entered)
        monkeypatch.setattr(warnings.catch_warnings, "__exit__", left)
        monkeypatch.setattr(threading.Thread, "start", started)

    def encloses(self, t, at: int, me) -> bool:
        """Whether thread ``t``'s block entered at ``at`` encloses thread ``me``: ``t`` started ``me``
        (or one of its starters) after entering it."""
        while me in self.started:
            born, parent = self.started[me]
            if parent is t:
                return at < born
            me = parent
        return False


@pytest.mark.parametrize("placebo", [True, False])
def test_a_run_never_holds_warning_blocks_in_two_threads_at_once(monkeypatch, placebo):
    """The sample data's matched run with two cores (threads in the checks, the propensity fit,
    the sensitivity analysis and the school effects; with no placebo worker, every map has both):
    no thread enters a ``catch_warnings`` block while another thread's is open."""
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    df = pd.read_csv(SAMPLE)
    maps = []
    real = _workers.ThreadPoolExecutor
    monkeypatch.setattr(_workers, "ThreadPoolExecutor", lambda n: maps.append(n) or real(n))
    blocks = _Blocks(monkeypatch)
    ev = pleval.estimate(df, placebo=placebo, workers=2)
    assert np.isfinite(ev.effect().effect_size.estimate)  # a finished run
    assert max(maps) == 2 and sum(n for k, n in blocks.threads.items() if k.startswith("ThreadPoolExecutor")) > 0  # threads ran blocks
    assert blocks.clashes == []
    assert blocks.out_of_order == 0


def test_the_block_detector_sees_blocks_of_two_threads_at_once(monkeypatch):
    """The check above can fail: two calls each holding a block while the other's is open (and
    the first to enter leaving first, out of order) are seen."""
    blocks = _Blocks(monkeypatch)
    barrier = threading.Barrier(2)

    def hold(x):
        with warnings.catch_warnings():
            barrier.wait(5)  # both blocks open
            time.sleep(0.05 * x)
        return x

    with warnings.catch_warnings():  # the caller's block encloses theirs: no clash
        assert _workers.thread_map(hold, range(2), threads=2) == [0, 1]
    assert len(blocks.clashes) == 1 and blocks.out_of_order == 1
