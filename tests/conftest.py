"""Shared test fixtures.

``sim_scale`` shrinks simulation studies: 1.0 is full size (``PLEVAL_SIM_SCALE=1 pytest -m slow``);
``make test`` and CI run them at the reduced size set in the Makefile.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
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


def three_scale_coverage(effects, truth_raw, scale_sd: float) -> dict[str, float]:
    """Coverage of the 95% CIs of ``effects`` (:class:`pleval._results.Effect`, one a data set)
    on the raw, effect-size and percentile-point scales, each asserted within 0.95 ± 3 binomial
    SEs of the replications run. The raw truth is ``truth_raw`` (one a data set). An effect size
    divides by its sample's pooled SD, taken as known; the effect-size truth divides by that SD's
    population value σ̄, estimated by the reported SDs' Monte-Carlo mean (asserted within 5% of
    the simulator's ``scale_sd``, which it need not equal: a matched sample of selected schools
    varies less), so the check is of the CI against a fixed standardizer. The percentile-point
    truth is the effect-size truth mapped from each effect's baseline percentile."""
    from pleval.percentiles import to_percentile_points

    truth_raw = np.asarray(truth_raw, dtype=float)
    reps = len(effects)
    sd_bar = np.mean([e.sd for e in effects])
    assert abs(sd_bar / scale_sd - 1) < 0.05, f"mean SD {sd_bar:.3f} against the simulator's {scale_sd}"
    truth_es = truth_raw / sd_bar
    truth_pp = to_percentile_points(truth_es, np.array([e.baseline_percentile for e in effects]))
    cover = {}
    for scale, truth in (("raw", truth_raw), ("effect_size", truth_es), ("percentile_points", truth_pp)):
        ci = np.array([(getattr(e, scale).ci_low, getattr(e, scale).ci_high) for e in effects])
        cover[scale] = float(np.mean((ci[:, 0] <= truth) & (truth <= ci[:, 1])))
    mc_se = np.sqrt(0.95 * 0.05 / reps)
    for scale, c in cover.items():
        assert abs(c - 0.95) <= 3 * mc_se, f"{scale} coverage {c:.3f} over {reps} reps (MC SE {mc_se:.3f})"
    return cover


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
