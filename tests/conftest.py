"""Shared test fixtures.

``sim_scale`` shrinks simulation studies: 1.0 is full size (``PLEVAL_SIM_SCALE=1 pytest -m slow``);
``make test`` and CI run them at the reduced size set in the Makefile.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REFERENCE = Path(__file__).parent / "reference"


def sim_scale() -> float:
    return float(os.environ.get("PLEVAL_SIM_SCALE", "0.25"))


def sim_reps(full: int, minimum: int = 40) -> int:
    """Number of simulation replications at the current scale."""
    return max(minimum, int(round(full * sim_scale())))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE
