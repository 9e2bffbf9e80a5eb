"""pleval.heterogeneity.school_inference: the meta layer from stored school estimates, checked
against closed forms (GLS pooled mean, Benjamini–Hochberg from scipy) and against calibrate."""

from __future__ import annotations

import numpy as np
from scipy import stats

from pleval.heterogeneity import calibrate, school_inference


def _study(seed=0, k=12, m=40):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(k, k)) * 0.01
    V = np.diag(rng.uniform(0.004, 0.01, k)) + A @ A.T
    y = 0.05 + rng.normal(0, 0.1, k) + np.linalg.cholesky(V) @ rng.standard_normal(k)
    df = np.full(k, 60.0)
    p = 2 * stats.t.sf(np.abs(y / np.sqrt(np.diag(V))), df)
    Vp = np.diag(rng.uniform(0.004, 0.01, m))
    yp = rng.normal(0, 0.1, m) + np.sqrt(np.diag(Vp)) * rng.standard_normal(m)
    return [f"S{i}" for i in range(k)], y, V, df, p, yp, Vp


def test_school_inference_pools_by_gls_and_counts_by_bh():
    labels, y, V, df, p, yp, Vp = _study()
    si = school_inference(labels, y, V, df, p, yp, Vp)
    W = np.linalg.inv(V + si.meta.tau2 * np.eye(len(y)))
    assert np.isclose(si.meta.estimate, W.sum(0) @ y / W.sum(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(si.counts.p_adjusted, stats.false_discovery_control(p, method="bh"), atol=1e-12)
    c = calibrate(labels, y, V, df, yp, Vp)
    np.testing.assert_allclose(si.calibration.schools["p_calibrated_adjusted"], c.schools["p_calibrated_adjusted"])
    assert si.calibration.tau2_program_ci == c.tau2_program_ci
    assert "Placebo-calibrated" in si.summary() and len(si.to_frame()) == len(y)


def test_school_inference_without_placebo_schools():
    labels, y, V, df, p, _, _ = _study(1)
    si = school_inference(labels, y, V, df, p)
    assert si.calibration is None and len(si.to_frame()) == len(y)
    assert np.all(np.isfinite(si.shrinkage.shrunk)) and si.meta.k == len(y)
