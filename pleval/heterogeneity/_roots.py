"""Vectorized bisection for the quantiles of the meta layer's confidence distributions.

Each element of an array has its own root of a monotone condition; ``left(s)`` is True for
the elements whose root lies above ``s``. One call evaluates the condition for all elements
at once, so every quantile of a distribution is found in the same ``iters`` passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Condition = Callable[[np.ndarray], np.ndarray]


def bracket_above(left: Condition, hi: np.ndarray, skip: np.ndarray, grow: float) -> np.ndarray:
    """Multiply ``hi`` by ``grow`` where the root still lies above it (elements in ``skip`` aside)."""
    for _ in range(200):
        low = left(hi)
        if not np.any(low & ~skip):
            break
        hi = np.where(low, grow * hi, hi)
    return hi


def bisect(left: Condition, lo: np.ndarray, hi: np.ndarray, iters: int) -> np.ndarray:
    """Midpoints of the brackets ``[lo, hi]`` after ``iters`` halvings (bracket width / 2^iters)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        move_up = left(mid)
        lo = np.where(move_up, mid, lo)
        hi = np.where(move_up, hi, mid)
    return 0.5 * (lo + hi)
