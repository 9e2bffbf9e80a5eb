"""Shared inference: robust least squares (CR0/CR1/CR2, HC), multiplicity, randomization."""

from .multiplicity import adjust_pvalues
from .randomization import RandomizationResult, randomization_test
from .robust import OLSFit, cluster_codes, grouped_cross_products, ols

__all__ = ["ols", "OLSFit", "cluster_codes", "grouped_cross_products", "adjust_pvalues", "randomization_test", "RandomizationResult"]
