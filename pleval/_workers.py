"""Work in a second process beside the main one: ``workers=`` of :func:`pleval.estimate` and
:func:`pleval.report.save` (docs/scale.md, *Two processes*).

A :class:`Forked` job runs a function in a child made with ``fork``: the child inherits the
parent's memory as it is (the data frame is neither copied nor pickled; its pages are shared
until one side writes them) and sends back one picklable result. Nothing in the job may depend
on which process runs it, so the results are those of a serial run, bit for bit:

* warnings raised in the child are recorded there and raised again in the parent, in their
  order, when it takes the result (where the serial run would have raised them);
* an exception in the child is raised in the parent when it takes the result, the same
  exception (type and message), with the child's traceback as a note;
* a child that dies without a result (killed, e.g. by the kernel for memory) is a
  ``MemoryError`` (SIGKILL) or ``RuntimeError`` in the parent, saying so;
* a parent that dies takes its child with it (Linux: the kernel ends the child), so no worker
  goes on computing for nobody.

Fork and threads: only the forking thread exists in the child. numpy's OpenBLAS stops its
threads before a fork and starts them again on the next call (``pthread_atfork``); Arrow's
thread pools are re-made in a forked child; the child never draws with matplotlib unless the
job does, and never writes to the terminal. ``fork`` is unavailable on Windows and not the
default on macOS (Objective-C frameworks are not fork-safe there): :func:`can_fork` is False
there and callers run the job in the main process instead (the same results).
"""

from __future__ import annotations

import gc
import mmap
import os
import signal
import sys
import threading
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_workers() -> int:
    """Processes used by default: 2, or fewer if fewer cores are available."""
    return max(1, min(2, available_cores()))


_limit: int | None = None
"""Processes the current run may use (:func:`limited`; None: no limit but the cores)."""

_running = 0
"""This process's :class:`Forked` children still running (each takes a core)."""

_in_child = False
"""True in a forked worker: its parent counts it, and it computes in one thread."""

_in_map = threading.local()
"""``_in_map.calls``: in a thread of :func:`thread_map`, that map's :class:`_Calls`."""


class _Calls:
    """One :func:`thread_map`'s calls over ``cores`` threads: ``left`` of them not ended yet
    (each running or waiting holds a core until the threads outnumber them); ``shown[i]``: the
    warnings call ``i`` raised (:class:`_HeldWarnings`)."""

    def __init__(self, fn: Callable, cores: int, calls: int):
        self.fn, self.cores, self.left, self.lock = fn, cores, calls, threading.Lock()
        self.shown: list[list] = [[] for _ in range(calls)]

    def __call__(self, ix):
        i, x = ix
        _in_map.calls = self
        try:
            with _HeldWarnings.holding(self.shown[i]):
                return self.fn(x)
        finally:
            with self.lock:
                self.left -= 1

    def free(self) -> int:
        """The cores a call may use: its own and those no other call holds."""
        return max(1, self.cores - min(self.cores, self.left) + 1)


class _HeldWarnings:
    """Warnings raised in :func:`thread_map`'s threads, held per call and shown after the map in
    the order of the calls: the order of a loop, whichever thread warns first.

    While a map runs, ``warnings._showwarnmsg`` (the step after the filters: the warning is to be
    shown) is wrapped; in a thread holding a list (:meth:`holding`) it appends the warning there
    instead, unless a ``catch_warnings(record=True)`` block has taken the warnings since the call
    began (a call recording its own warnings, as the propensity fits do to see non-convergence):
    those go to that block as before. ``catch_warnings`` itself never sets ``_showwarnmsg``, so
    blocks entered and left in other threads do not undo the wrapper. The held warnings were
    filtered in their thread; :meth:`show` passes them on to whatever shows or records warnings
    in the caller (the wrapper again in a nested map). Before Python 3.14 the filters and the
    recording blocks are global to the process, so a block in one thread can still record another
    thread's warnings: no two of pleval's threads record or filter warnings at once
    (tests/test_workers_warnings.py)."""

    _held = threading.local()
    _lock = threading.Lock()
    _maps = 0
    _shown_by: Callable | None = None

    @classmethod
    @contextmanager
    def wrapped(cls):
        """``warnings._showwarnmsg`` wrapped within the block (nested and concurrent maps share it)."""
        with cls._lock:
            if cls._maps == 0:
                cls._shown_by = warnings._showwarnmsg
                warnings._showwarnmsg = cls._hold
            cls._maps += 1
        try:
            yield
        finally:
            with cls._lock:
                cls._maps -= 1
                if cls._maps == 0 and warnings._showwarnmsg is cls._hold:
                    warnings._showwarnmsg = cls._shown_by

    @classmethod
    @contextmanager
    def holding(cls, into: list):
        """This thread's warnings appended to ``into`` within the block."""
        before = getattr(cls._held, "now", None)
        cls._held.now = (warnings._showwarnmsg_impl, warnings.showwarning, into)
        try:
            yield
        finally:
            cls._held.now = before

    @staticmethod
    def _hold(msg) -> None:
        now = getattr(_HeldWarnings._held, "now", None)
        if now is not None and warnings._showwarnmsg_impl is now[0] and warnings.showwarning is now[1]:
            now[2].append(msg)
        else:
            _HeldWarnings._shown_by(msg)

    @staticmethod
    def show(held: list[list]) -> None:
        """The held warnings, call by call, passed on as if raised now."""
        for msgs in held:
            for msg in msgs:
                warnings._showwarnmsg(msg)


@contextmanager
def limited(workers: int):
    """Within the block, :func:`compute_threads` counts at most ``workers`` cores (a run's
    ``workers=`` option: ``workers=1`` keeps every computation in one thread)."""
    global _limit
    before, _limit = _limit, int(workers)
    try:
        yield
    finally:
        _limit = before


def compute_threads() -> int:
    """Threads a computation in this process may use now: the cores available to it, at most the
    run's ``workers`` (:func:`limited`), less one per :class:`Forked` worker still running; at
    least 1, and 1 in a worker. In a call of :func:`thread_map`: 1 while the map's other calls
    hold its other threads, more once they have ended (a computation nested in the last call
    left uses the cores the others held). A stage that splits its work over these threads (numpy
    releases the GIL inside its loops and BLAS calls) uses the second core when no worker holds
    it, as in a 10M-row run, which has no placebo worker (docs/scale.md, *Threads*)."""
    if _in_child:
        return 1
    calls = getattr(_in_map, "calls", None)
    if calls is not None:
        return calls.free()
    cores = available_cores() if _limit is None else min(_limit, available_cores())
    return max(1, cores - _running)


def thread_map(fn: Callable, items, threads: int | None = None) -> list:
    """``[fn(x) for x in items]``, the calls spread over ``threads`` threads (default
    :func:`compute_threads`) when more than one: the results in the order of ``items``, the
    first exception raised. Only for work whose result does not depend on which thread runs it
    (each call writes nothing shared), so the results are those of the loop, bit for bit; the
    warnings the calls raise are shown after the map, in the order of ``items``
    (:class:`_HeldWarnings`), as the loop would show them."""
    items = list(items)
    n = min(compute_threads() if threads is None else threads, len(items))
    if n <= 1:
        return [fn(x) for x in items]
    calls = _Calls(fn, n, len(items))
    try:
        with _HeldWarnings.wrapped(), ThreadPoolExecutor(n) as pool:
            return list(pool.map(calls, enumerate(items)))
    finally:
        _HeldWarnings.show(calls.shown)


def side_by_side(*calls: Callable[[], Any]) -> list:
    """``[f() for f in calls]`` by :func:`thread_map`: independent pieces of work run at once
    where a core is free, their values in the order given."""
    return thread_map(_call, calls)


def _call(f: Callable[[], Any]) -> Any:
    return f()


def available_memory() -> float:
    """Bytes of memory the system can give now without swapping (Linux ``MemAvailable``; else
    the physical memory; infinity where neither is known)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - Windows
        return float("inf")


def release_free_memory() -> None:
    """Hand the memory freed so far back to the system: glibc's ``malloc_trim(0)`` and the Arrow
    pool's ``release_unused`` (where there are). The allocators otherwise keep freed memory mapped
    (the ``pleval`` command keeps up to 256 MB at the heap's top and every freed chunk inside it
    for reuse, ``pleval.cli.keep_freed_memory``). Done before a placebo round's large arrays
    (10M rows: 1.1 GB, docs/scale.md) and before a fork (:class:`Forked`): a freed page still
    mapped at the fork is shared with the child, and the parent reusing it while the child runs
    copies it, memory counted twice for nothing (10M rows, the figures' process: docs/scale.md,
    sixteenth round). Nothing is computed differently; pages handed back fault in again when reused."""
    import ctypes

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
    try:
        import pyarrow
    except ImportError:
        return
    pyarrow.default_memory_pool().release_unused()


@contextmanager
def collector_frozen():
    """The objects alive on entry left out of the cyclic garbage collector's passes until the
    block ends (:func:`gc.freeze`, then :func:`gc.unfreeze`; inside an outer such block they stay
    frozen until the outer one ends). A full collection (generation 2), which Python starts
    whenever the objects that survived younger collections reach a quarter of the older ones,
    then goes over the objects made in the block only, not over every module, function and table
    of the run (about 200,000 objects when a 1M-row `pleval estimate` writes its outputs; each
    full collection over them 0.2–1.3 s of the main process at load 10–15; docs/scale.md,
    seventeenth round). Nothing is freed later than it would be otherwise but objects that were
    already garbage, in reference cycles, on entry, collected after the block. A forked child
    inherits the freeze: its collections leave the parent's objects, and so their shared pages,
    alone. Objects frozen before the outermost block by other means (:func:`collector_paused`, the
    caller's own :func:`gc.freeze`) stay frozen after it."""
    global _frozen_blocks
    with _frozen_lock:
        # gc.get_freeze_count() walks every frozen object (17 ms per 436,000): asked at the outermost block only
        outer = _frozen_blocks > 0 or gc.get_freeze_count() > 0
        _frozen_blocks += 1
        gc.freeze()
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_blocks -= 1
            if not outer:
                gc.unfreeze()


_frozen_blocks = 0
""":func:`collector_frozen` blocks open in this process."""

_frozen_lock = threading.Lock()


@contextmanager
def collector_paused():
    """No pass of the cyclic garbage collector while the block runs (:func:`gc.disable`), and
    what it made frozen at its end (:func:`gc.freeze`) before the collector runs again: for work
    that makes objects a run keeps, not garbage in cycles (the analysis' libraries imported
    beside the reading and checking of the file: 12 unreachable objects at 1M rows). Inside a
    :func:`collector_frozen` block, which unfreezes them when it ends. Without it the imports
    started two full collections while a 1M-row file was read and checked, each over every
    object made so far (0.43–0.84 s of the main process in all at load 12; docs/scale.md,
    seventeenth round)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def can_fork() -> bool:
    """Whether jobs may run in a forked process: Linux and other POSIX systems but macOS."""
    import multiprocessing

    return sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()


class SharedFlag:
    """A flag that the processes forked after it is made read as this one sets or clears it, and
    the reverse: one byte of memory they share (``mmap``), read and written without a lock, so a
    process killed while it reads or waits leaves nothing held (a :mod:`multiprocessing` event
    would then block the next ``set``)."""

    def __init__(self, value: bool):
        self._byte = mmap.mmap(-1, 1)  # anonymous and shared with forked children
        self._byte[0] = int(value)

    def is_set(self) -> bool:
        return self._byte[0] == 1

    def set(self) -> None:
        self._byte[0] = 1

    def clear(self) -> None:
        self._byte[0] = 0


class Forked:
    """``fn(receive, *args)`` running in a forked child process; ``receive()`` in the child
    returns the next object the parent passes to :meth:`send`. :meth:`result` waits for the
    value (see the module docstring for warnings and errors); :meth:`cancel` stops the child.
    A job may also hand the parent values before it ends (:func:`post` in the child,
    :meth:`posted` in the parent), e.g. one part of its work that the parent needs first.

    The child is a bare ``os.fork``: it runs the job and leaves with ``os._exit``, never touching
    the standard streams (another thread of the parent, e.g. a progress display, may have held
    their locks at the fork) nor running the parent's exit handlers. With ``niceness`` > 0 the
    child lowers its scheduling priority by that much (``os.nice``) and is not counted among
    the running workers (:func:`compute_threads`): a job for the cores' idle time, which holds
    none."""

    def __init__(self, fn: Callable, *args: Any, niceness: int = 0):
        from multiprocessing import Pipe

        global _running
        self._conn, child = Pipe()
        parent = os.getpid()
        release_free_memory()  # only live memory is shared with the child
        with collector_frozen():  # the child's collections leave the inherited objects (and their pages) alone
            with warnings.catch_warnings():  # Python 3.12+ warns about forking a threaded process
                warnings.simplefilter("ignore", DeprecationWarning)
                self._pid = os.fork()
            if self._pid == 0:  # pragma: no cover - the child (its coverage is not collected)
                try:
                    _end_with(parent)
                    if niceness > 0:
                        os.nice(niceness)
                    self._conn.close()
                    _child(child, fn, args)
                finally:
                    os._exit(0)
        child.close()
        self._counted = int(niceness <= 0)
        _running += self._counted
        self._taken = self._left = False
        self.exitcode: int | None = None
        self._final: tuple | None = None  # the end message, when posted() met it

    def send(self, obj: Any) -> None:
        """Pass ``obj`` to the child's ``receive()`` (nothing if the child has ended, e.g. on an error)."""
        try:
            self._conn.send(obj)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def posted(self) -> Any:
        """The next value the job handed over with :func:`post`. If the job ended first: its
        exception (or what :meth:`result` raises for a child that died), else a RuntimeError."""
        message = self._receive()
        if message[0] == "post":
            return message[1]
        self._final = message
        self.result()
        raise RuntimeError("a worker process ended without handing over what it was to post")

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._wait()
            if self.exitcode == -signal.SIGKILL:
                raise MemoryError("a worker process was killed (SIGKILL), most likely for lack of memory; "
                                  "run with one process (workers=1, --workers 1)") from None
            raise RuntimeError(f"a worker process ended without a result (exit code {self.exitcode})") from None

    def ready(self) -> bool:
        """Whether the job has handed something over (a posted value, its result or error) or
        ended: :meth:`posted` or :meth:`result` would not wait."""
        return self._final is not None or self.exitcode is not None or self._taken or self._conn.poll()

    def result(self) -> Any:
        """The child's value, after raising its warnings here; its exception, if it raised one.
        Values the job posted and :meth:`posted` did not take are passed over."""
        message, self._final = self._final, None
        while message is None or message[0] == "post":
            message = self._receive()
        kind, value, tb, caught = message
        self._over()
        for message, category, filename, lineno in caught:
            warnings.warn_explicit(message, category, filename, lineno)
        if kind == "error":
            value.add_note(f"(raised in a worker process)\n{tb}")
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child if it is still running (its result is not needed) and wait for it to
        end; once its result is taken, the child leaves by itself, handing its memory back to the
        system as it does: it is reaped if it has left, else by a later :func:`start` or
        :meth:`cancel` (:func:`_reap_leaving`), not waited for (the end of a 1M-row run waited
        0.02-0.05 s for each)."""
        _reap_leaving()
        if self.exitcode is not None or self._left:
            return
        if self._taken:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
            else:
                _leaving.append(self._pid)
                self._left = True  # (its pid is the system's again once reaped: not waited for here)
            return
        try:
            os.kill(self._pid, signal.SIGTERM)
        except ProcessLookupError:  # pragma: no cover - already gone
            pass
        self._wait()

    def _over(self) -> None:
        """The job is over (its result taken, or the child waited for): its core is free again.
        A child whose result was taken leaves by itself, handing its memory back to the system as
        it does (0.05 s for a placebo worker at 1M rows): reaped now if it has left, else by
        :meth:`cancel`, not waited for here."""
        global _running
        self._conn.close()
        _running -= self._counted
        self._counted, self._taken = 0, True
        if self.exitcode is None:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)

    def _wait(self) -> None:
        if self.exitcode is None:
            self.exitcode = os.waitstatus_to_exitcode(os.waitpid(self._pid, 0)[1])
        if not self._taken:
            self._over()


_leaving: list[int] = []
"""Children whose result was taken and that had not yet left when cancelled (:meth:`Forked.cancel`)."""


def _reap_leaving() -> None:
    """Reap the :data:`_leaving` children that have left, without waiting for the others."""
    for pid in list(_leaving):
        try:
            left = os.waitpid(pid, os.WNOHANG)[0]
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            left = pid
        if left:
            _leaving.remove(pid)


def start(fn: Callable, *args: Any, niceness: int = 0) -> Forked | None:
    """A :class:`Forked` job (``niceness``: see there), or None where the system gives no
    process (``fork`` failing for lack of memory or a process limit): the caller then does the
    work itself."""
    _reap_leaving()
    try:
        return Forked(fn, *args, niceness=niceness)
    except OSError:
        return None


def _end_with(parent: int) -> None:  # pragma: no cover - runs in the child
    """Have the kernel end this child when the process that forked it ends (Linux
    ``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so a parent killed mid-job (``kill -9``, the
    out-of-memory killer) leaves no worker computing for nobody; and end now if it has already
    ended. Elsewhere the child ends when its result cannot be sent."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


_posting: Callable | None = None
"""In a forked child: its connection's ``send`` (:func:`post`)."""


def post(value: Any) -> None:
    """In a :class:`Forked` job: hand ``value`` to the parent now (:meth:`Forked.posted`); the
    job goes on. Warnings go with the job's end, as without it."""
    if _posting is None:
        raise RuntimeError("post() is for a job running in a forked worker process")
    _posting(("post", value, "", []))


def _child(conn, fn: Callable, args: tuple) -> None:  # pragma: no cover - runs in the child
    """The child's side: run the job with warnings recorded, send (kind, value, traceback, warnings)."""
    global _posting, _in_child
    _posting, _in_child = conn.send, True
    with warnings.catch_warnings(record=True) as caught:  # the inherited filters, recorded instead of shown
        try:
            out = ("ok", fn(conn.recv, *args), "")
        except BaseException as exc:  # noqa: BLE001 - any failure goes back to the parent
            out = ("error", exc, traceback.format_exc())
    msgs = [(str(w.message), w.category, w.filename, w.lineno) for w in caught]
    try:
        conn.send((*out, msgs))
    except Exception as exc:  # noqa: BLE001 - e.g. an exception that does not pickle
        conn.send(("error", RuntimeError(f"a worker process could not send its result back: {exc!r}"), out[2], msgs))
