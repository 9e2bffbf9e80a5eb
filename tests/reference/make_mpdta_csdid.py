"""Writes mpdta_csdid.csv: analytic (influence-function) results of the Python package csdid
0.4.3 (a port of the R package did) on mpdta, for tests/test_monitor_staggered.py.

Run once, outside the project environment (csdid is not a pleval dependency):
    python -m venv /tmp/csdid && /tmp/csdid/bin/pip install csdid==0.4.3
    /tmp/csdid/bin/python tests/reference/make_mpdta_csdid.py
"""

from pathlib import Path

import numpy as np
import pandas as pd
from csdid.att_gt import ATTgt

HERE = Path(__file__).parent
df = pd.read_csv(HERE / "mpdta.csv")
rows = []
for control in ("nevertreated", "notyettreated"):
    fit = ATTgt(yname="lemp", gname="first.treat", idname="countyreal", tname="year", xformla=None, data=df,
                control_group=control).fit(est_method="dr", bstrap=False)
    r = fit.results
    for g, t, att, se in zip(r["group"], r["year"], r["att"], r["se"]):
        rows.append((control, "attgt", g, t, att, se))
    for kind in ("simple", "dynamic", "group", "calendar"):
        a = fit.aggte(typec=kind, bstrap=False).atte
        rows.append((control, kind, np.nan, np.nan, a["overall_att"], a["overall_se"]))
        if kind != "simple":
            for key, att, se in zip(a["egt"], a["att_egt"], a["se_egt"]):
                rows.append((control, kind, key, np.nan, att, se))
out = pd.DataFrame(rows, columns=["control", "kind", "key", "time", "estimate", "se"])
out.to_csv(HERE / "mpdta_csdid.csv", index=False, float_format="%.12g")
