"""Shared test fixtures.

``sim_scale`` shrinks simulation studies: 1.0 is full size (``PLEVAL_SIM_SCALE=1 pytest -m slow``);
``make test`` and CI run them at the reduced size set in the Makefile.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")

# Property tests draw the same examples on every run (``derandomize``), so a fresh clone's
# ``make test`` passes or fails the same way each time; ``pytest --hypothesis-profile=explore``
# draws new random examples (more of them) to look for failures, and a failure it finds is
# pinned with ``@example`` before it is fixed.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REFERENCE = Path(__file__).parent / "reference"


def sim_scale() -> float:
    return float(os.environ.get("PLEVAL_SIM_SCALE", "0.25"))


def sim_reps(full: int, minimum: int = 40) -> int:
    """Number of simulation replications at the current scale."""
    return max(minimum, int(round(full * sim_scale())))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE


def _pin_test_worker() -> None:
    """One core per pytest-xdist worker (``gw0`` the first, ``gw1`` the second, …): ``make test``'s
    two workers already fill the two cores, so an evaluation's own second process (the placebo
    worker, the figures' process) or threads would only add forks and copied pages. Pinned, an
    evaluation's default is one process (``pleval._workers.default_workers`` counts the cores it
    may run on); tests of the worker processes ask for two explicitly and still get them. Six
    evaluation-heavy test files took 117–121 s pinned against 137–148 s unpinned (alternating
    runs on the reference machine, 2026-12-03); the whole suite 8:46."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


_pin_test_worker()
