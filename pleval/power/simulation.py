"""Simulated power: pleval's own trial analysis on data of the planned design.

For a :class:`~pleval.power.ClusterRCT`, a :class:`~pleval.power.BlockedRCT` (one effect with
fixed blocks; with random blocks the schools' effects vary, ``omega``) or a
:class:`~pleval.power.BlockedClusterRCT` (the districts as blocks, each district's effect drawn
about the true one when ``omega`` > 0), without ``r2_effect``, :func:`simulate_power` draws
``reps`` data sets from :func:`pleval.simulate.simulate_planned` (the design's sizes, ICC and R²,
one pretest, true effect δ), analyses each with :func:`pleval.rct.analyze_rct` as ``pleval
estimate --design rct`` would (OLS ITT with the pretest; CR2 with Satterthwaite df for cluster
designs, block fixed effects and HC2 for blocked designs; with random blocks or districts
``method="random_blocks"``, the analysis of the formula's model: the blocks' effects averaged,
K − 1 df) and counts rejections at the design's α. The Monte Carlo standard error of the
simulated power p̂ is ``√(p̂(1 − p̂)/reps)``; a formula that is right for pleval's analysis lies
within about two such SEs of p̂. The pretest (used when an R² is positive) enters the analysis as
one covariate, so compare with a formula that counts it (``covariates=1``; with random blocks
the formula's covariates are block-level and the pretest is not one of them).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .._results import ResultMixin
from ..data import Columns
from ..errors import DesignError
from .designs import BlockedClusterRCT, BlockedRCT, ClusterRCT, Design


@dataclass(frozen=True, repr=False)
class SimulatedPower(ResultMixin):
    """Simulated and formula power for one design and effect."""

    design: str
    effect: float
    reps: int
    rejections: int
    simulated_power: float
    mc_se: float
    formula_power: float
    alpha: float
    analysis: str
    seed: int

    @property
    def z(self) -> float:
        """(simulated − formula) / Monte Carlo SE."""
        return (self.simulated_power - self.formula_power) / self.mc_se if self.mc_se > 0 else math.nan

    def to_frame(self) -> pd.DataFrame:
        names = ("design", "effect", "reps", "rejections", "simulated_power", "mc_se", "formula_power", "alpha",
                 "analysis", "seed")
        return pd.DataFrame({"quantity": [*names, "z"], "value": [getattr(self, n) for n in names] + [self.z]})

    def summary(self) -> str:
        diff = f"difference {self.z:+.1f} MC SE" if self.mc_se > 0 else "every or no data set rejected"
        return "\n".join([
            f"Simulated power: {self.design}, true effect {self.effect:.3f} SD, {self.reps:,} data sets (seed {self.seed})",
            f"  simulated {self.simulated_power:.3f} (Monte Carlo SE {self.mc_se:.3f}) vs formula {self.formula_power:.3f}"
            f" ({diff})",
            f"  analysis: {self.analysis}",
        ])


def simulate_power(design: Design, effect: float | None = None, reps: int = 500, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> SimulatedPower:
    """Power of pleval's analysis by simulation, beside the formula power (module docstring).

    ``effect`` defaults to the design's MDES at 80% power (so the formula says 0.80).
    Sizes are rounded to whole schools and students.
    """
    from ..rct import analyze_rct
    from ..simulate import simulate_planned

    extra, method = {}, "ols"
    if isinstance(design, ClusterRCT):
        kind, r2_school, treated = "cluster", design.r2_school, design.treated
    elif isinstance(design, BlockedRCT) and design.constant_effect and not design.r2_effect:
        kind, r2_school, treated = "blocked", 0.0, design.treated
        if design.blocks == "random":  # the schools' effects vary (omega): the analysis of that model
            extra, method = {"omega": design.omega}, "random_blocks"
    elif isinstance(design, BlockedClusterRCT):
        if design.r2_effect:
            raise DesignError("simulated power of a blocked cluster RCT needs r2_effect = 0: pleval's analysis has no "
                              "district-level moderator of the effect")
        arms = design._arms()
        if arms is None:
            raise DesignError(f"{design.schools:g} schools per district leave no school for an arm in one district")
        kind, r2_school, treated = "blocked_cluster", design.r2_school, arms[0] / sum(arms)  # J_T of J, as the note
        method = "random_blocks" if design.blocks == "random" else "ols"  # the analysis of the formula's model
        extra = dict(districts=int(design.districts), icc_district=design.icc_district, omega=design.omega)
    else:
        raise DesignError("simulated power is available for cluster RCTs, blocked RCTs with one effect (fixed blocks) "
                          "or an effect varying across schools without r2_effect (random blocks), and blocked cluster "
                          "RCTs")
    if not (isinstance(reps, (int, np.integer)) and reps >= 10):
        raise DesignError(f"reps must be a whole number >= 10; got {reps!r}")
    effect = design.plan(0.80).mdes if effect is None else float(effect)
    uses_pretest = r2_school > 0 or design.r2_student > 0  # R² = 0: the pretest is constant, left out
    cols = Columns(outcome="posttest", treatment="treatment", pretest=("pretest",) if uses_pretest else (),
                   school="school_id", block="block" if kind != "cluster" else None)
    J = math.floor(design.schools + 0.5) if kind == "blocked_cluster" else round(design.schools)  # (as its arms)
    seeds = np.random.SeedSequence(seed).generate_state(reps)
    reject = np.zeros(reps, dtype=bool)
    analysis = ""
    for i, s in enumerate(seeds):  # one analysis per simulated data set
        df = simulate_planned(kind, J, round(design.students), design.icc, r2_school,
                              design.r2_student, effect, treated, seed=int(s), **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = analyze_rct(df, cols, design="cluster" if kind == "blocked_cluster" else kind, method=method,
                              compliance=False).itt.raw
        analysis = est.method
        # one-sided: in the effect's direction (as the formula's |δ|); a negative effect tested "less"
        toward = est.estimate > 0 if effect >= 0 else est.estimate < 0
        p = est.pvalue if design.two_sided else (est.pvalue / 2 if toward else 1 - est.pvalue / 2)
        reject[i] = p < design.alpha
        if progress is not None:
            progress(i + 1, reps)
    p_hat = float(reject.mean())

    return SimulatedPower(
        design=design.name, effect=effect, reps=int(reps), rejections=int(reject.sum()), simulated_power=p_hat,
        mc_se=math.sqrt(p_hat * (1 - p_hat) / reps), formula_power=design.power(effect), alpha=design.alpha,
        analysis=analysis, seed=int(seed),
    )


__all__ = ["simulate_power", "SimulatedPower"]
