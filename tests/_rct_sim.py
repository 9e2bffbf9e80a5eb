"""Synthetic cluster-randomized trials with a known effect, for the RCT tests.

One row per student (a single subject). Schools are randomized within blocks (half of each
block's schools treated); outcomes follow a two-level model with intraclass correlation
``icc`` (of the residual outcome variance given the pretest) and a constant effect ``effect``
(outcome units) for schools that take the program up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_cluster_rct(
    seed: int = 0,
    *,
    n_schools: int = 24,
    n_blocks: int = 4,
    size_range: tuple[int, int] = (15, 45),
    icc: float = 0.2,
    effect: float = 0.0,
    sd: float = 15.0,
    pretest_r: float = 0.6,
    attrition: tuple[float, float] = (0.0, 0.0),
    takeup: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """``attrition=(rate_treated, rate_control)`` removes outcomes at random (NaN);
    ``takeup=(p_treated, p_control)`` makes school take-up differ from assignment and the
    effect apply to taking-up schools only."""
    rng = np.random.default_rng(seed)
    block_of_school = np.arange(n_schools) % n_blocks
    z_school = np.zeros(n_schools, dtype=int)
    for b in range(n_blocks):  # a handful of blocks
        idx = np.flatnonzero(block_of_school == b)
        z_school[rng.choice(idx, idx.size // 2, replace=False)] = 1
    if takeup is None:
        d_school = z_school.copy()
    else:
        d_school = (rng.random(n_schools) < np.where(z_school == 1, takeup[0], takeup[1])).astype(int)
    sizes = rng.integers(size_range[0], size_range[1] + 1, n_schools)
    school = np.repeat(np.arange(n_schools), sizes)
    n = school.size
    u = rng.normal(0.0, np.sqrt(icc), n_schools)
    pre = 200.0 + sd * (0.5 * u[school] + rng.normal(size=n))
    frl = (rng.random(n) < 0.5).astype(int)
    ell = (rng.random(n) < 0.15).astype(int)
    noise = sd * np.sqrt(1 - pretest_r**2) * (u[school] + rng.normal(0.0, np.sqrt(1 - icc), n))
    post = 205.0 + pretest_r * (pre - 200.0) - 2.0 * frl + noise + effect * d_school[school]
    z = z_school[school]
    lost = rng.random(n) < np.where(z == 1, attrition[0], attrition[1])
    post[lost] = np.nan
    return pd.DataFrame(
        {
            "student_id": [f"st{i}" for i in range(n)],
            "school_id": [f"sch{s:03d}" for s in school],
            "block": [f"d{b}" for b in block_of_school[school]],
            "treatment": z,
            "takeup": d_school[school],
            "pretest": pre,
            "posttest": post,
            "frl": frl,
            "ell": ell,
        }
    )
