"""Two processes (``workers=``): the placebo rounds in a forked worker beside the main analysis
give the same files, warnings and errors as one process (pleval._workers, estimate._run_matched)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import pleval
import pleval.heterogeneity.placebo as plc
from pleval import _workers
from pleval.cli import app
from pleval.errors import DataError, DesignError, PlevalWarning

est_mod = importlib.import_module("pleval.estimate")  # the module (pleval.estimate is the function)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "pl_matched_students.csv"

fork_only = pytest.mark.skipif(not _workers.can_fork(), reason="fork is not available here")


def _run(tmp_path: Path, name: str, *extra: str) -> Path:
    from typer.testing import CliRunner

    out = tmp_path / name
    r = CliRunner().invoke(app, ["estimate", str(SAMPLE), "--out", str(out), "-q", *extra])
    assert r.exit_code == 0, r.output
    return out


@fork_only
def test_one_and_two_workers_write_the_same_files(tmp_path, monkeypatch):
    used = []
    real = est_mod._placebo_in_worker
    monkeypatch.setattr(est_mod, "_placebo_in_worker", lambda *a: used.append(real(*a)) or used[-1])
    one = _run(tmp_path, "one", "--workers", "1")
    two = _run(tmp_path, "two", "--workers", "2")
    assert used == [False, True]  # the second run did use a worker
    csvs = sorted(p.name for p in one.glob("*.csv"))
    assert {"placebo.csv", "school_effects.csv", "heterogeneity.csv", "overall.csv"} <= set(csvs)
    assert csvs == sorted(p.name for p in two.glob("*.csv"))
    for name in csvs:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    for png in sorted((one / "plots").glob("*.png")):
        assert png.read_bytes() == (two / "plots" / png.name).read_bytes(), png.name
    import json

    p1, p2 = (json.loads((d / "provenance.json").read_text()) for d in (one, two))
    assert p1["warnings"] == p2["warnings"] and p1["placebo"] == p2["placebo"]
    assert (p1["options"]["workers"], p2["options"]["workers"]) == (1, 2)
    assert "workers = 2" in (two / "run.toml").read_text()


def _evaluate(workers: int):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(str(SAMPLE), workers=workers)
    return ev, [str(w.message) for w in caught]


@fork_only
def test_the_workers_warnings_reach_the_evaluation_in_order(monkeypatch):
    real = plc.play_rounds

    def play(plan, sd=None):
        warnings.warn("a warning from the placebo rounds", RuntimeWarning)
        out = real(plan, sd)
        warnings.warn("a second one, after them", PlevalWarning)
        return out

    monkeypatch.setattr(plc, "play_rounds", play)
    monkeypatch.setattr(plc, "placebo_schools", _serial_with(play))
    (ev1, w1), (ev2, w2) = _evaluate(1), _evaluate(2)
    assert "a warning from the placebo rounds" in ev2.warnings and "a second one, after them" in ev2.warnings
    assert ev1.warnings == ev2.warnings and w1 == w2 and ev1.notes == ev2.notes
    assert ev1.placebo.equals(ev2.placebo) and ev1.schools.equals(ev2.schools)


def _serial_with(play):
    """placebo_schools with ``play`` as its rounds (what the serial path runs)."""
    def placebo_schools(data, columns, method="propensity", *, observed=None, **kw):
        plan = plc.plan_rounds(data, columns, method, observed_given=observed is not None, **kw)
        return play(plan).compare(observed)

    return placebo_schools


@fork_only
@pytest.mark.parametrize("error", [DesignError, DataError])
def test_a_design_error_in_the_worker_is_the_same_note(monkeypatch, error):
    def play(plan, sd=None):
        raise error("the rounds cannot run: no comparison school left")

    monkeypatch.setattr(plc, "play_rounds", play)
    monkeypatch.setattr(plc, "placebo_schools", _serial_with(play))
    (ev1, _), (ev2, _) = _evaluate(1), _evaluate(2)
    note = "no placebo schools: the rounds cannot run: no comparison school left"
    assert note in ev2.notes and ev1.notes == ev2.notes and not len(ev2.placebo)


@fork_only
def test_a_failing_worker_reaches_the_user(tmp_path, monkeypatch):
    def play(plan, sd=None):
        raise KeyError("round 1 lost its schools")

    monkeypatch.setattr(plc, "play_rounds", play)
    with pytest.raises(KeyError, match="round 1 lost its schools") as info:
        pleval.estimate(str(SAMPLE), workers=2)
    assert any("raised in a worker process" in n and "KeyError" in n for n in info.value.__notes__)
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["estimate", str(SAMPLE), "--out", str(tmp_path / "o"), "-q", "--workers", "2"])
    assert r.exit_code != 0 and "KeyError: 'round 1 lost its schools'" in r.output
    assert not (tmp_path / "o" / "overall.csv").exists()


def _kill_self(receive):
    os.kill(os.getpid(), signal.SIGKILL)


def _send_back(receive, x):
    warnings.warn("child warning", UserWarning)
    return x + receive()


@fork_only
def test_forked_jobs():
    job = _workers.Forked(_send_back, 40)
    job.send(2)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 42
    job.cancel()  # after the result: nothing left to stop
    with pytest.raises(MemoryError, match="killed"):
        _workers.Forked(_kill_self).result()
    waiting = _workers.Forked(_send_back, 1)  # blocked in receive(): stopped
    waiting.cancel()
    assert waiting.exitcode == -signal.SIGTERM


def _state(pid: int) -> str | None:
    """A process's state letter (Z: left, not reaped yet), None once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@fork_only
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_result_is_taken_without_waiting_for_the_child_to_leave(monkeypatch):
    """result() frees the job's core at once and does not wait for the child to leave (a
    placebo worker hands back its memory as it does: 0.05 s at 1M rows, while the main process
    goes on); cancel() then reaps it, without stopping it: its exit code is its own."""
    waits = []
    real = os.waitpid
    monkeypatch.setattr(os, "waitpid", lambda pid, flags: (waits.append(flags), real(pid, flags))[1])
    before = _workers.compute_threads()
    job = _workers.Forked(_send_back, 40)
    job.send(2)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 42
    assert _workers.compute_threads() == before and job.ready()  # its core is free at once
    assert 0 not in waits  # not waited for
    deadline = time.monotonic() + 30
    while _state(job._pid) != "Z" and time.monotonic() < deadline:  # it has left, and is not reaped yet
        time.sleep(0.01)
    assert _state(job._pid) == "Z" and job.exitcode is None
    job.cancel()
    assert job.exitcode == 0 and _state(job._pid) is None  # reaped, not stopped


@fork_only
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_cancel_does_not_wait_for_a_child_leaving_after_its_result(monkeypatch):
    """Once its result is taken, cancel() does not wait for a child still leaving (handing back
    its memory): the next start() or cancel() reaps it once it has left."""
    real_child = _workers._child

    def slow_to_leave(conn, fn, args):
        real_child(conn, fn, args)
        time.sleep(3)

    monkeypatch.setattr(_workers, "_child", slow_to_leave)
    job = _workers.Forked(_send_back, 40)
    job.send(2)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 42
    began = time.monotonic()
    job.cancel()
    job.cancel()  # (once)
    assert time.monotonic() - began < 1 and _workers._leaving.count(job._pid) == 1 and job.exitcode is None
    deadline = time.monotonic() + 30
    while _state(job._pid) != "Z" and time.monotonic() < deadline:  # it has left, and is not reaped yet
        time.sleep(0.05)
    monkeypatch.setattr(_workers, "_child", real_child)
    other = _workers.start(_send_back, 1)
    assert job._pid not in _workers._leaving and _state(job._pid) is None  # reaped by the next start
    job.cancel()  # (reaped meanwhile: nothing to do, its pid no longer its own)
    other.send(1)
    with pytest.warns(UserWarning, match="child warning"):
        assert other.result() == 2
    other.cancel()


@fork_only
def test_a_process_behind_killed_while_it_waits_blocks_nothing():
    """The process behind waits on a flag shared without a lock: killed while it waits (e.g. by
    the kernel for memory), it leaves the flag free: letting it go and collecting it return at
    once, with nothing drawn (save draws the figures)."""
    from pleval.report.early import Behind

    behind = Behind.start({}, [], 100, False, wait=lambda: True)
    time.sleep(0.2)
    os.kill(behind.job._pid, signal.SIGKILL)
    began = time.monotonic()
    behind.go()
    assert behind.collect() == {} and time.monotonic() - began < 5
    flag = _workers.SharedFlag(True)
    child = _workers.start(lambda receive: (flag.clear(), flag.is_set())[1])
    assert child.result() is False and not flag.is_set()
    flag.set()
    assert flag.is_set()


@fork_only
def test_a_fork_shares_only_live_memory(monkeypatch):
    """Freed memory is handed back before the fork (else the child shares it and the parent's
    reuse copies it): release_free_memory runs once per fork, before it."""
    order = []
    real_fork = os.fork
    monkeypatch.setattr(_workers, "release_free_memory", lambda: order.append("release"))
    monkeypatch.setattr(os, "fork", lambda: order.append("fork") or real_fork())
    job = _workers.Forked(_send_back, 1)
    job.send(1)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 2
    assert order == ["release", "fork"]


def _freeze_count_here(receive):
    import gc

    return gc.get_freeze_count()


@fork_only
def test_the_collector_leaves_the_objects_alive_on_entry_alone_until_the_block_ends():
    """collector_frozen: the objects alive on entry are out of the collector's passes (frozen)
    until the block ends, then back in; a nested block (and a fork inside one) leaves the outer
    block's freeze in place; a fork outside any block leaves nothing frozen in the parent, and
    its child has the parent's objects frozen."""
    import gc

    def tracked(obj):  # in a generation the collector goes over (not frozen)
        return any(o is obj for o in gc.get_objects())

    assert gc.get_freeze_count() == 0
    kept = [object()]  # alive on entry
    # (the freeze count itself may fall in a block: a frozen object that dies leaves the count)
    with _workers.collector_frozen():
        made = [object()]  # made in the block: collected as ever
        assert gc.get_freeze_count() > 0 and not tracked(kept) and tracked(made)
        with _workers.collector_frozen():
            assert not tracked(kept)
        assert gc.get_freeze_count() > 0 and not tracked(kept)  # the inner block ended: the outer freeze holds
        job = _workers.Forked(_freeze_count_here)
        assert job.result() > 0 and not tracked(kept)  # the fork kept it too
    assert gc.get_freeze_count() == 0 and tracked(kept)
    job = _workers.Forked(_freeze_count_here)
    assert job.result() > 0 and gc.get_freeze_count() == 0


def test_the_frozen_objects_are_counted_on_entering_the_outermost_block_only(monkeypatch):
    """gc.get_freeze_count() walks every frozen object (17 ms per 436,000, a 1M-row run's): a
    collector_frozen block asks it only when no other such block is open (before, every block did:
    each fork of a worker and the command's second block walked the run's objects). Objects frozen
    before the outermost block by other means stay frozen after it, as before."""
    import gc

    calls, real = [], gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: calls.append(1) or real())
    with _workers.collector_frozen():
        with _workers.collector_frozen():
            with _workers.collector_frozen():
                pass
    assert len(calls) == 1 and real() == 0
    gc.freeze()  # the caller's own freeze
    try:
        with _workers.collector_frozen():
            pass
        assert real() > 0
    finally:
        gc.unfreeze()


def test_the_collector_pauses_and_freezes_what_the_block_made():
    """collector_paused: no collection in the block (even one asked for by allocations), what it
    made frozen at its end, and the collector as it was; an outer collector_frozen unfreezes."""
    import gc

    with _workers.collector_frozen():
        with _workers.collector_paused():
            assert not gc.isenabled()
            made = [object()]
        assert gc.isenabled() and not any(o is made for o in gc.get_objects())
    assert gc.get_freeze_count() == 0 and any(o is made for o in gc.get_objects())
    gc.disable()
    try:
        with _workers.collector_frozen(), _workers.collector_paused():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()


@fork_only
def test_save_writes_with_the_evaluation_frozen(tmp_path, sample_ev, monkeypatch):
    """save(): the collector's passes while the figures are drawn leave the evaluation (and
    everything else alive before the save) alone; afterwards nothing is left frozen."""
    import gc

    from pleval.report import outputs

    seen = []
    real = outputs._write_files
    monkeypatch.setattr(outputs, "_write_files", lambda *a, **k: seen.append(gc.get_freeze_count()) or real(*a, **k))
    outputs.save(sample_ev, tmp_path / "out", workers=1)
    assert seen and seen[0] > 0 and gc.get_freeze_count() == 0


def _threads_here(receive):
    return _workers.compute_threads()


def _niceness_here(receive):
    return os.nice(0), _workers.compute_threads(), receive()


@fork_only
def test_a_niced_job_runs_lower_and_holds_no_core(monkeypatch):
    """start(..., niceness=n): the child runs n lower (os.nice) and is not counted among the
    running workers: compute_threads() in the parent is the same while it runs."""
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    before, here = _workers.compute_threads(), os.nice(0)
    job = _workers.start(_niceness_here, niceness=3)
    assert _workers.compute_threads() == before == 2
    job.send("go")
    assert job.result() == (min(here + 3, 19), 1, "go")
    counted = _workers.start(_niceness_here)
    assert _workers.compute_threads() == 1
    counted.send("go")
    assert counted.result()[0] == here and _workers.compute_threads() == 2


@fork_only
def test_compute_threads_counts_cores_the_run_may_use_and_running_workers(monkeypatch):
    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    assert _workers.compute_threads() == 2
    with _workers.limited(1):
        assert _workers.compute_threads() == 1
        with _workers.limited(4):  # never more than the cores
            assert _workers.compute_threads() == 2
        assert _workers.compute_threads() == 1
    assert _workers.compute_threads() == 2
    waiting = _workers.Forked(_send_back, 1)  # a worker takes a core while it runs
    assert _workers.compute_threads() == 1
    waiting.cancel()
    assert _workers.compute_threads() == 2
    assert _workers.Forked(_threads_here).result() == 1  # a worker computes in one thread
    assert _workers.compute_threads() == 2


def test_thread_map_keeps_the_order_and_raises_the_first_error():
    import threading

    seen = set()

    def f(x):
        seen.add(threading.get_ident())
        time.sleep(0.01 * (x % 3))
        return x * x

    assert _workers.thread_map(f, range(12), threads=3) == [x * x for x in range(12)]
    assert len(seen) > 1  # spread over threads
    seen.clear()
    assert _workers.thread_map(f, range(5), threads=1) == [x * x for x in range(5)]
    assert seen == {threading.get_ident()}  # one thread: here

    def bad(x):
        if x == 3:
            raise ValueError("three")
        return x

    with pytest.raises(ValueError, match="three"):
        _workers.thread_map(bad, range(6), threads=2)


def test_a_call_of_thread_map_computes_in_one_thread_until_the_others_end(monkeypatch):
    """compute_threads() in a call of thread_map: 1 while the map's other calls hold its other
    threads (running or waiting), the cores they held once they have ended."""
    import threading

    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    barrier = threading.Barrier(2)

    def beside(x):  # both calls run at once: each has one core
        barrier.wait(5)
        n = _workers.compute_threads()
        barrier.wait(5)
        return n

    def last(x):  # call 0 ends at once; call 1, once it has, has both cores
        calls = getattr(_workers._in_map, "calls", None)
        deadline = time.time() + 5
        while x and calls is not None and calls.left > 1 and time.time() < deadline:
            time.sleep(0.001)
        return _workers.compute_threads()

    assert _workers.thread_map(beside, range(2)) == [1, 1]
    assert _workers.thread_map(last, range(2))[1] == 2
    assert _workers.thread_map(beside, range(4), threads=2) == [1] * 4  # (a call waiting for a thread holds it)
    with _workers.limited(1):  # one core: the calls run here, one after the other
        assert _workers.thread_map(last, range(2)) == [1, 1]
    assert _workers.compute_threads() == 2  # outside any map


@fork_only
@pytest.mark.parametrize("workers, placebo, threads", [(1, True, 1), (2, True, 1), (2, False, 2)])
def test_a_run_computes_in_the_threads_its_workers_leave(monkeypatch, workers, placebo, threads):
    import pandas as pd

    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    seen, parts = [], est_mod._matched_parts

    def recording(*a, **k):
        seen.append(_workers.compute_threads())  # with the placebo worker (if any) running
        return parts(*a, **k)

    monkeypatch.setattr(est_mod, "_matched_parts", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pleval.estimate(pd.read_csv(SAMPLE), workers=workers, placebo=placebo)
    assert seen == [threads]
    assert _workers.compute_threads() == 2  # the limit ends with the run


def test_workers_option():
    assert est_mod.resolve_options("matched", None, {})[1]["workers"] == _workers.default_workers()
    assert est_mod.resolve_options("rct", None, {"workers": 1})[1]["workers"] == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(DataError, match="option workers must be a whole number >= 1"):
            est_mod.resolve_options("matched", None, {"workers": bad})


def test_no_worker_when_memory_or_fork_is_short(monkeypatch):
    import pandas as pd

    df = pd.DataFrame({"x": range(1000)})
    opts = {"workers": 2, "placebo": True}
    monkeypatch.setattr(est_mod, "can_fork", lambda: True)
    monkeypatch.setattr(est_mod, "available_memory", lambda: 1e12)
    assert est_mod._placebo_in_worker(df, opts, None)
    assert not est_mod._placebo_in_worker(df, {**opts, "workers": 1}, None)
    assert not est_mod._placebo_in_worker(df, {**opts, "placebo": False}, None)
    assert not est_mod._placebo_in_worker(df, opts, object())  # a pool's rounds (an engine): here
    monkeypatch.setattr(est_mod, "available_memory", lambda: 2 * est_mod.PLACEBO_WORKER_BYTES_PER_ROW * 999)
    assert not est_mod._placebo_in_worker(df, opts, None)
    monkeypatch.setattr(est_mod, "available_memory", lambda: 1e12)
    monkeypatch.setattr(est_mod, "PLACEBO_WORKER_MAX_ROWS", 999)
    assert not est_mod._placebo_in_worker(df, opts, None)  # a large file: one process, one process's memory
    monkeypatch.setattr(est_mod, "PLACEBO_WORKER_MAX_ROWS", 1000)
    assert est_mod._placebo_in_worker(df, opts, None)
    monkeypatch.setattr(est_mod, "can_fork", lambda: False)
    assert not est_mod._placebo_in_worker(df, opts, None)


def _post_then_return(receive, x):
    _workers.post(x)
    warnings.warn("child warning", UserWarning)
    return x + receive()


def _raise_before_posting(receive):
    raise KeyError("nothing to post")


@fork_only
def test_a_job_posts_before_it_ends():
    job = _workers.Forked(_post_then_return, 40)
    assert job.posted() == 40  # while the job waits for the parent
    job.send(2)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 42
    job = _workers.Forked(_post_then_return, 1)
    job.send(1)
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 2  # a post not taken is passed over
    with pytest.raises(KeyError, match="nothing to post"):
        _workers.Forked(_raise_before_posting).posted()
    with pytest.raises(RuntimeError, match="without handing over"):
        _ended_without_posting()
    with pytest.raises(MemoryError, match="killed"):
        _workers.Forked(_kill_self).posted()
    with pytest.raises(RuntimeError, match="forked worker"):
        _workers.post(1)  # not in a job


@fork_only
def test_a_job_is_ready_once_it_has_handed_something_over():
    job = _workers.Forked(_send_back, 40)
    time.sleep(0.2)
    assert not job.ready()  # waiting for the parent
    job.send(2)
    deadline = time.monotonic() + 60
    while not job.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.ready()
    with pytest.warns(UserWarning, match="child warning"):
        assert job.result() == 42
    assert job.ready()  # ended


def _ended_without_posting():
    job = _workers.Forked(_return_at_once)
    return job.posted()


def _return_at_once(receive):
    return 1


def _take_all(receive, queue):
    taken = []
    while (k := queue.take()) is not None:
        taken.append(k)
    return taken


def test_figures_costliest_first():
    from pleval.report.outputs import _by_cost

    names = ["percentiles_math", "love_math", "forest_math", "distribution_math", "sensitivity_math",
             "percentiles_reading", "forest_reading", "distribution_reading", "overlap_math"]
    assert _by_cost(names) == ["forest_math", "forest_reading", "distribution_math", "distribution_reading",
                               "sensitivity_math", "overlap_math", "percentiles_math", "love_math",
                               "percentiles_reading"]
    assert _by_cost([]) == []


@fork_only
def test_the_figure_queue_gives_each_figure_once_to_either_process():
    from pleval.report.outputs import _Queue

    names = [f"f{i}" for i in range(2000)]
    queue = _Queue(names, shared=True)
    job = _workers.Forked(_take_all, queue)
    mine = _take_all(None, queue)
    theirs = job.result()
    assert sorted(mine + theirs) == sorted(names) and not set(mine) & set(theirs)
    assert mine == sorted(mine, key=names.index) and theirs == sorted(theirs, key=names.index)
    here = _Queue(["a", "b"], shared=False)
    assert [here.take(), here.take(), here.take()] == ["a", "b", None]


@pytest.fixture(scope="module")
def sample_ev():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        return pleval.estimate(str(SAMPLE), workers=1)


@fork_only
def test_save_draws_the_same_figures_in_two_processes(tmp_path, sample_ev):
    from pleval.report import save

    one = save(sample_ev, tmp_path / "one", workers=1)
    two = save(sample_ev, tmp_path / "two", workers=2, svg=True)
    pngs = sorted(p.name for p in (one / "plots").glob("*.png"))
    assert len(pngs) >= 8 and pngs == sorted(p.name for p in (two / "plots").glob("*.png"))
    assert len(list((two / "plots").glob("*.svg"))) == len(pngs)
    for name in pngs:
        assert (one / "plots" / name).read_bytes() == (two / "plots" / name).read_bytes(), name
    for name in ["summary.md", "report.html", "report.pdf", *(p.name for p in one.glob("*.csv"))]:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    import pandas as pd

    a, b = (pd.read_excel(d / "school_effects.xlsx", sheet_name=None, engine="openpyxl") for d in (one, two))
    assert a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


@fork_only
def test_a_figure_failing_in_the_worker_reaches_the_user(tmp_path, sample_ev, monkeypatch):
    from pleval import plots
    from pleval.report import save

    here = os.getpid()
    real = plots.evaluation_figure_makers

    def fails_in_the_worker(make):
        def build():
            if os.getpid() != here:
                return plots.forest(pd_frame_without_columns())
            return make()
        return build

    monkeypatch.setattr(plots, "evaluation_figure_makers", lambda ev: {k: fails_in_the_worker(m) for k, m in real(ev).items()})
    with pytest.raises(DataError) as info:
        save(sample_ev, tmp_path / "two", workers=2)
    with pytest.raises(DataError) as serial:
        plots.forest(pd_frame_without_columns())
    assert str(info.value) == str(serial.value)
    assert not (tmp_path / "two").exists()


@fork_only
def test_a_busy_process_leaves_the_figures_to_the_other(tmp_path, sample_ev, monkeypatch):
    """Each figure is drawn by whichever process is free: while this process is held up in its
    first figure, the worker draws all the others (with fixed shares it would draw its own only)."""
    from pleval import plots
    from pleval.report import save

    here, log = os.getpid(), tmp_path / "drawn"
    real = plots.evaluation_figure_makers
    n = len(real(sample_ev))

    def logged(name, make):
        def build():
            with open(log, "a") as f:
                f.write(f"{name} {os.getpid()}\n")
            if os.getpid() == here:  # held up until the worker has taken every other figure
                deadline = time.monotonic() + 60
                while len(log.read_text().splitlines()) < n and time.monotonic() < deadline:
                    time.sleep(0.02)
            return make()
        return build

    monkeypatch.setattr(plots, "evaluation_figure_makers", lambda ev: {k: logged(k, m) for k, m in real(ev).items()})
    out = save(sample_ev, tmp_path / "o", workers=2)
    pids = [line.split()[1] for line in log.read_text().splitlines()]
    assert len(pids) == n and pids.count(str(here)) <= 1
    assert len(list((out / "plots").glob("*.png"))) == n


@fork_only
def test_figures_drawn_while_the_placebo_worker_runs_are_written_as_they_are(tmp_path, monkeypatch):
    """estimate(while_waiting=...) hands a preview of the final tables to EarlyFigures while the
    placebo worker runs; where no process can be forked, EarlyFigures draws them here while
    pending(); save(early=...) writes those figures without drawing them again: the same files,
    byte for byte, as a save that draws everything."""
    from pleval import plots
    from pleval.report import EarlyFigures, save

    early, previews = EarlyFigures(), []
    job = est_mod._placebo_rounds_job

    def slow_job(*args):  # the rounds end after the main process's work: it waits for them
        time.sleep(2)
        return job(*args)

    monkeypatch.setattr(est_mod, "_placebo_rounds_job", slow_job)

    def waiting(preview, pending):
        assert pending() is True  # the worker runs, the school effects are still to come
        previews.append(preview)
        with monkeypatch.context() as no_fork:
            no_fork.setattr(_workers, "can_fork", lambda: False)
            early(preview, lambda: True)  # every figure of the preview, drawn here
        warnings.warn("a warning while waiting", UserWarning)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = pleval.estimate(str(SAMPLE), workers=2, while_waiting=waiting)
    assert len(previews) == 1
    assert "a warning while waiting" not in ev.warnings  # raised, not the evaluation's
    assert [w.category for w in caught if str(w.message) == "a warning while waiting"] == [UserWarning]
    preview = previews[0]
    for name in ("balance", "equivalence", "propensity", "sensitivity"):
        assert len(preview.table(name)) and preview.table(name).equals(ev.table(name)), name
    assert preview.subjects == ev.subjects and all(preview.effects[k] is ev.effects[k] for k in ev.subjects)
    assert not len(preview.schools) and not len(preview.placebo) and not len(preview.heterogeneity)
    assert early._behind is None
    drawn = early.figures(ev, 200, False)
    assert {k.split("_")[0] for k in drawn} == {"percentiles", "love", "overlap", "sensitivity"}
    assert len(drawn) == 4 * len(ev.subjects)
    assert early.figures(ev, 100, False) == {} and early.figures(ev, 200, True) == {}  # another format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        other = pleval.estimate(str(SAMPLE), workers=1, placebo=False)
    assert early.figures(other, 200, False) == {}  # another evaluation

    built = []
    real = plots.evaluation_figure_makers

    def counted(name, make):
        def build():
            built.append(name)
            return make()
        return build

    monkeypatch.setattr(plots, "evaluation_figure_makers", lambda e: {k: counted(k, m) for k, m in real(e).items()})
    plain = save(ev, tmp_path / "plain", workers=1)
    built.clear()
    save(ev, tmp_path / "ahead1", workers=1, early=early)
    assert sorted(built) == sorted(set(real(ev)) - set(drawn))  # the others were not drawn again
    files = sorted(str(p.relative_to(plain)) for p in plain.rglob("*") if p.is_file() and p.suffix != ".xlsx")
    assert len(files) > 20
    for ahead in (tmp_path / "ahead1", save(ev, tmp_path / "ahead2", workers=2, early=early)):
        assert files == sorted(str(p.relative_to(ahead)) for p in ahead.rglob("*") if p.is_file() and p.suffix != ".xlsx")
        for name in files:
            assert (plain / name).read_bytes() == (ahead / name).read_bytes(), name


@fork_only
@pytest.mark.parametrize("behind_fails", [False, True])
def test_figures_are_drawn_behind_once_pending_ends(tmp_path, monkeypatch, behind_fails):
    """EarlyFigures hands the preview's figures to a forked process, which draws none while
    pending() is True and begins when it turns False; save() shares their queue (its processes
    take the ones not begun) and takes what that process drew: each figure drawn once, the same
    files byte for byte as a save that draws everything. If that process fails, save() draws the
    figures it took."""
    from pleval import plots
    from pleval.report import EarlyFigures, save

    import pleval.report.early as early_mod

    here, log, free, behind = os.getpid(), tmp_path / "drawn", tmp_path / "free", []  # `behind`: True there only
    draw_behind = early_mod._draw_behind
    monkeypatch.setattr(early_mod, "_draw_behind", lambda *a: (behind.append(True), draw_behind(*a))[1])
    early = EarlyFigures()
    real = plots.evaluation_figure_makers

    def behind_pid():
        return early._behind.job._pid if early._behind is not None else None

    def logged(name, make):
        def build():
            with open(log, "a") as f:
                f.write(f"{name} {os.getpid()}\n")
            if behind_fails and behind:
                raise RuntimeError("a figure that fails in the process behind")
            if os.getpid() == here and behind_pid() is not None and early._behind._done.alive:  # it has begun one first
                deadline = time.monotonic() + 60
                while f" {behind_pid()}\n" not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.02)
            return make()
        return build

    monkeypatch.setattr(plots, "evaluation_figure_makers", lambda e: {k: logged(k, m) for k, m in real(e).items()})
    ev = pleval.estimate(str(SAMPLE), workers=2,
                         while_waiting=lambda preview, pending: early(preview, lambda: not free.exists()))
    assert early._behind is not None and early.figures(ev, 200, False) == {}
    preview_figures = [k for k in real(ev) if not k.startswith(("forest", "distribution"))]
    assert sorted(early._behind.names) == sorted(preview_figures) and len(preview_figures) == 4 * len(ev.subjects)
    time.sleep(0.5)
    assert not log.exists()  # none drawn while pending()
    free.touch()
    deadline = time.monotonic() + 60
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = str(behind_pid())
    assert log.read_text().split()[1] == pid  # begun behind once pending() is False
    out = save(ev, tmp_path / "ahead", workers=2, early=early)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sum(p == pid for _, p in lines) >= 1  # drawn behind
    kept = [name for name, p in lines if not (behind_fails and p == pid)]  # a failed process's are drawn again
    assert sorted(kept) == sorted(real(ev))  # each drawn once
    assert early._behind._done.alive is False  # collected and reaped
    log.unlink()
    plain = save(ev, tmp_path / "plain", workers=1)
    files = sorted(str(p.relative_to(plain)) for p in plain.rglob("*") if p.is_file() and p.suffix != ".xlsx")
    assert files == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix != ".xlsx")
    for name in files:
        assert (plain / name).read_bytes() == (out / name).read_bytes(), name


@fork_only
def test_figures_behind_begin_when_save_needs_them(tmp_path):
    """A process behind whose pending() never turns False draws anyway once save() takes its
    queue: save never waits on it."""
    from pleval.report import EarlyFigures, save

    early = EarlyFigures()
    ev = pleval.estimate(str(SAMPLE), workers=2, while_waiting=lambda preview, pending: early(preview, lambda: True))
    assert early._behind is not None and early._behind._done.alive
    out = save(ev, tmp_path / "ahead", workers=2, early=early)
    assert early._behind._done.alive is False and len(list((out / "plots").glob("*.png"))) == 6 * len(ev.subjects)


@fork_only
def test_while_waiting_pending_follows_the_worker_and_the_school_effects(tmp_path, monkeypatch):
    """With a placebo worker, while_waiting is called before the PL schools' effects; its
    pending() — here and in a process forked from this one — is True while the worker runs and
    those effects are estimated, False once the worker has handed over its rounds, and False once
    the effects are estimated though the worker still runs."""
    release = tmp_path / "release"
    job = est_mod._placebo_rounds_job

    def held_job(*args):  # the rounds end when the test says
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return job(*args)

    monkeypatch.setattr(est_mod, "_placebo_rounds_job", held_job)
    seen, hooks = {}, []
    school_effects, matched_placebo = est_mod._school_effects, est_mod._matched_placebo

    def forked_sees(pending):
        child = _workers.start(lambda receive: pending())
        return child.result()

    def during_school_effects(*a, **k):
        pending = hooks[0]
        seen["school effects, worker running"] = (pending(), forked_sees(pending))
        return school_effects(*a, **k)

    def before_the_rounds(*a, **k):
        pending = hooks[0]
        seen["after the school effects, worker running"] = (pending(), forked_sees(pending))
        release.touch()
        deadline = time.monotonic() + 60
        while not hooks[1].ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        return matched_placebo(*a, **k)

    monkeypatch.setattr(est_mod, "_school_effects", during_school_effects)
    monkeypatch.setattr(est_mod, "_matched_placebo", before_the_rounds)
    start = _workers.start
    monkeypatch.setattr(est_mod, "start_worker", lambda *a, **k: (lambda w: (hooks.append(w), w)[1])(start(*a, **k)))

    def waiting(preview, pending):
        hooks.insert(0, pending)
        assert len(preview.propensity) and "school effects, worker running" not in seen
        seen["called"] = pending()

    pleval.estimate(str(SAMPLE), workers=2, while_waiting=waiting)
    assert seen == {"called": True, "school effects, worker running": (True, True),
                    "after the school effects, worker running": (False, False)}

    seen.clear(), hooks.clear()
    release.unlink()
    monkeypatch.setattr(est_mod, "_matched_placebo", matched_placebo)

    def ended_worker(*a, **k):
        release.touch()
        deadline = time.monotonic() + 60
        while hooks[0]() and time.monotonic() < deadline:  # the rounds handed over: the core is free
            time.sleep(0.01)
        seen["school effects, worker ended"] = (hooks[0](), forked_sees(hooks[0]))
        return school_effects(*a, **k)

    monkeypatch.setattr(est_mod, "_school_effects", ended_worker)
    pleval.estimate(str(SAMPLE), workers=2, while_waiting=waiting)
    assert seen == {"called": True, "school effects, worker ended": (False, False)}


@fork_only
def test_while_waiting_without_a_placebo_worker(monkeypatch):
    """Without a worker, while_waiting is called once before the placebo rounds run here, with
    pending() False and no propensity scores yet (formed after the rounds); without placebo
    schools, not at all."""
    calls = []
    monkeypatch.setattr(est_mod, "_placebo_in_worker", lambda *a: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(str(SAMPLE), workers=2,
                             while_waiting=lambda preview, pending: calls.append((preview, pending())))
        assert len(calls) == 1 and calls[0][1] is False
        assert not len(calls[0][0].propensity) and len(ev.propensity) and len(calls[0][0].balance)
        pleval.estimate(str(SAMPLE), workers=2, placebo=False, while_waiting=lambda *a: calls.append(a))
    assert len(calls) == 1


def pd_frame_without_columns():
    import pandas as pd

    return pd.DataFrame({"x": [1.0]})


def test_without_a_process_everything_runs_here(tmp_path, sample_ev, monkeypatch):
    from pleval.report import save

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(_workers, "can_fork", lambda: True)
    monkeypatch.setattr(est_mod, "can_fork", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlevalWarning)
        ev = pleval.estimate(str(SAMPLE), workers=2)
    assert ev.placebo.equals(sample_ev.placebo) and ev.schools.equals(sample_ev.schools)
    out = save(ev, tmp_path / "o", workers=2)
    assert (out / "school_effects.xlsx").exists() and len(list((out / "plots").glob("*.png"))) >= 8


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_killed_parent_takes_its_worker_with_it(tmp_path):
    """A parent killed with SIGKILL mid-job (as by the out-of-memory killer) leaves no worker behind."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import sys, time\n"
        "from pleval import _workers\n"
        "job = _workers.Forked(lambda receive: time.sleep(120))\n"
        f"open({str(pid_file)!r}, 'w').write(str(job._pid))\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    survived = _alive(child)
    if survived:
        os.kill(child, signal.SIGKILL)  # not left behind by a failing run
    assert not survived


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not a zombie: an orphan is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_figure_makers_take_each_table_once(sample_ev, monkeypatch):
    """`plots.evaluation_figure_makers` (run before `report.save` forks) copies each of the
    evaluation's tables once, not once per subject (the propensity scores are a row per
    student), and finds the same figures as the tables' rows for each subject say."""
    from collections import Counter

    from pleval import findings, plots
    from pleval.estimate import Evaluation

    taken = Counter()
    table = Evaluation.table

    def counted(self, name):
        taken[name] += 1
        return table(self, name)

    monkeypatch.setattr(Evaluation, "table", counted)
    names = set(plots.evaluation_figure_makers(sample_ev))
    assert len(sample_ev.subjects) > 1 and taken and max(taken.values()) == 1, taken
    monkeypatch.undo()
    for s in sample_ev.subjects:
        for kind, frame in (("love", sample_ev.balance), ("overlap", sample_ev.propensity),
                            ("subgroups", sample_ev.subgroups())):
            assert (plots.figure_name(kind, s) in names) == bool(len(findings.subject_rows(frame, s))), (kind, s)
        assert plots.figure_name("forest", s) in names and plots.figure_name("percentiles", s) in names


@fork_only
def test_the_worker_is_forked_once_the_analysis_match_has_coded_the_ids(monkeypatch):
    """With a placebo worker the analysis's match codes the student ids beside the propensity fit
    (in a second thread: the core the worker will hold is still free), and the worker is forked
    then, handed that coding (its rounds take it for their rows, as the match itself does) with the
    fit's covariate patterns, the cells and the columns' codes (its first round's), before
    the match's nearest-neighbour search, which the rounds do not need: the search runs beside the
    worker. Before, the worker was forked after the whole match (1M rows: 0.4 s later)."""
    import threading

    import pandas as pd

    import pleval.matching as pm

    monkeypatch.setattr(_workers, "available_cores", lambda: 2)
    events, real_ids, real_search, real_start = [], pm._student_ids, pm.match_nearest, est_mod.start_worker

    def ids(*a):
        out = real_ids(*a)
        events.append(("ids", threading.current_thread() is threading.main_thread(), out))
        return out

    def search(*a, **k):
        events.append(("search",))
        return real_search(*a, **k)

    def start(fn, *args):
        events.append(("worker", args[-1]))
        return real_start(fn, *args)

    monkeypatch.setattr(pm, "_student_ids", ids)
    monkeypatch.setattr(pm, "match_nearest", search)
    monkeypatch.setattr(est_mod, "start_worker", start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = pleval.estimate(pd.read_csv(SAMPLE), workers=2)
    (what, in_main, coded), (then, handed), (last,) = events
    assert (what, in_main, then, last) == ("ids", False, "worker", "search")
    index, value = handed[("ids", "student_id")]
    assert value is coded
    assert {k[0] for k in handed} == {"ids", "patterns", "cells", "codes"}  # (and what the match formed beside its fit)
    m = ev.details[ev.subjects[0]]["design"]
    assert m.data.index.isin(index).all() and m.factorized["student_id"] is coded[0]
