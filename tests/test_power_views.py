"""Power results render in Jupyter; the planning plots draw what their tables hold."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from pleval import plots
from pleval.errors import DataError, DesignError
from pleval.power import BlockedRCT, ClusterRCT
from pleval.power.curves import mdes_table, power_table
from pleval.power.from_data import estimate_components
from pleval.power.simulation import simulate_power

D = ClusterRCT(schools=40, students=60, icc=0.2, r2_school=0.5, r2_student=0.4)


def test_results_render_in_jupyter():
    objects = [D.plan(effect=0.25, target_mdes=0.2), estimate_components("sample_data/pl_cluster_rct.csv"),
               simulate_power(ClusterRCT(schools=6, students=8, icc=0.1), reps=10, seed=1)]
    for obj in objects:
        assert isinstance(obj.summary(), str) and obj.summary()
        assert "<table" in obj._repr_html_(), type(obj).__name__


def test_power_and_mdes_tables_and_plots():
    t = power_table(D, 0.25, vary="icc", values=[0.1, 0.2])
    assert set(t["value"]) == {0.1, 0.2}
    row = t[(t["value"] == 0.1) & (t["size"] == t["size"].max())].iloc[0]
    assert row["power"] == pytest.approx(D.replace(icc=0.1, schools=int(row["size"])).power(0.25))
    assert (np.diff(t[t["value"] == 0.2]["power"].to_numpy()) > 0).all()  # power rises with schools
    fig = plots.power_curve(t, planned=40, unit="schools")
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) == 2 + 2  # two curves, target and planned lines
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["icc = 0.1", "icc = 0.2", "planned: 40 schools"]
    m = mdes_table(D, "students", sizes=[10, 20, 40])
    assert m["mdes"].iloc[1] == pytest.approx(D.replace(students=20).mdes())
    fig = plots.mdes_curve(m, target=0.3, planned=20, unit="students per school")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["target 0.300 SD", "planned: 20 students per school"]
    assert plots.mdes_curve(m).axes[0].get_legend() is None
    with pytest.raises(DataError, match="mdes_curve"):
        plots.mdes_curve(m.drop(columns="mdes"))
    with pytest.raises(DesignError, match="vary"):
        power_table(BlockedRCT(schools=10, students=20), 0.2, vary="r2_school")
