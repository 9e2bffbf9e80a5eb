"""Benchmark: propensity-score + 1:1 caliper matching, and VCG-style matching.

    python benchmarks/bench_matching.py            # 10k / 100k / 1M
    python benchmarks/bench_matching.py --quick    # 10k / 100k only

Every measurement runs in a fresh process: the process builds its data (synthetic students in
schools, 10% of schools PL, selected on poverty and achievement), resets its peak-RSS counter,
runs one task and reports wall time and peak resident memory (the data included; ``extra`` is
peak minus the RSS just before the task). Rows:

* PS + 1:1 NN: bare floor (statsmodels Logit + scipy cKDTree, caliper 0.2 SD of the logit PS,
  with replacement); ``pleval.match(method="propensity")`` on a pre-validated frame (the
  matching itself) and on the raw frame (including ``pleval.data.validate``); DoWhy,
  causalinference and psmpy when installed, at the sizes each can finish.
* VCG ±1 point, up to 51: ``pleval.match(method="vcg")`` (pre-validated), the keyed core
  ``pleval.matching.exact.match_vcg`` alone, and a naive pandas merge-then-filter at the
  sizes it can finish. Sizes are PL rows vs pool rows (100k PL vs a 1M pool at full size).

Timings on a shared machine vary; the script prints the load average beside the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

COVARIATES = ("female", "frl", "ell", "sped", "race")


def make_data(n: int, seed: int = 1, pl_share: float = 0.10) -> pd.DataFrame:
    """``n`` student×subject rows in schools of ~500 rows; ~``pl_share`` of rows in PL schools."""
    rng = np.random.default_rng(seed)
    n_sch = max(20, n // 500)
    pov = rng.beta(2, 2, n_sch)
    ach = rng.normal(0, 1, n_sch) - 1.0 * (pov - 0.5)
    score = 1.0 * (pov - 0.5) / 0.22 - ach + rng.gumbel(size=n_sch)
    pl = np.zeros(n_sch, int)
    pl[np.argsort(-score)[: max(2, int(round(pl_share * n_sch)))]] = 1
    s = rng.integers(0, n_sch, n)
    p = pov[s]
    grade = rng.integers(3, 9, n)
    race = np.array(["white", "black", "hispanic", "asian", "other"])[
        np.minimum((rng.random(n) * (1 + p) * 2.6).astype(int), 4)]
    frl = (rng.random(n) < 0.2 + 0.6 * p).astype(int)
    pre = np.round(200 + 6 * (grade - 3) + 8 * ach[s] - 6 * frl + rng.normal(0, 12, n))
    post = np.round(5 + 0.8 * pre + 2.0 * pl[s] + 3 * ach[s] + rng.normal(0, 8, n), 1)
    return pd.DataFrame({
        "student_id": np.arange(n).astype(str), "school_id": np.char.add("S", s.astype(str)),
        "treatment": pl[s], "grade": grade, "subject": np.where(rng.random(n) < 0.5, "math", "reading"),
        "pretest": pre, "posttest": post, "female": (rng.random(n) < 0.5).astype(int), "frl": frl,
        "ell": (rng.random(n) < 0.1 + 0.1 * p).astype(int), "sped": (rng.random(n) < 0.12).astype(int),
        "race": race,
    })


def make_vcg_data(n_pl: int, n_pool: int, seed: int = 2) -> pd.DataFrame:
    """About ``n_pl`` PL rows and ``n_pool`` comparison rows."""
    df = make_data(n_pl + n_pool, seed=seed, pl_share=n_pl / (n_pl + n_pool))
    return df


def _columns():
    from pleval.data import Columns

    return Columns(outcome="posttest", treatment="treatment", pretest=("pretest",), covariates=COVARIATES,
                   school="school_id", student_id="student_id", grade="grade", subject="subject")


# --- tasks: each takes the frame and returns a short note -------------------------------------

def floor_logit_kdtree(df):
    import statsmodels.api as sm
    from scipy.spatial import cKDTree

    X = pd.get_dummies(df[["pretest", *COVARIATES]], columns=["race"], drop_first=True, dtype=float)
    X.insert(0, "const", 1.0)
    t = df["treatment"].to_numpy()
    res = sm.Logit(t, X.to_numpy()).fit(disp=0)
    lp = X.to_numpy() @ res.params
    cal = 0.2 * np.sqrt((lp[t == 1].var(ddof=1) + lp[t == 0].var(ddof=1)) / 2)
    tree = cKDTree(lp[t == 0, None])
    d, i = tree.query(lp[t == 1, None], k=1, distance_upper_bound=cal)
    return f"{int(np.isfinite(d).sum()):,} matched"


def validated(df):
    from pleval.data import validate

    return validate(df, _columns())


def pleval_ps_validated(v):
    from pleval.matching import match

    r = match(v, _columns(), method="propensity", exact=())
    return f"{r.n_treated_matched:,} matched"


def pleval_ps_raw(df):
    from pleval.matching import match

    r = match(df, _columns(), method="propensity", exact=())
    return f"{r.n_treated_matched:,} matched (incl. validation)"


def pleval_ps_exact(v):
    from pleval.matching import match

    r = match(v, _columns(), method="propensity")
    return f"{r.n_treated_matched:,} matched within grade×subject"


def dowhy_psm(df):
    from dowhy import CausalModel

    d = pd.get_dummies(df[["treatment", "posttest", "pretest", *COVARIATES]], columns=["race"], drop_first=True,
                       dtype=float)
    d["treatment"] = d["treatment"].astype(bool)
    common = [c for c in d.columns if c not in ("treatment", "posttest")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = CausalModel(data=d, treatment="treatment", outcome="posttest", common_causes=common)
        est = m.estimate_effect(m.identify_effect(), method_name="backdoor.propensity_score_matching",
                                target_units="att")
    return f"ATT {est.value:.3f} (no caliper)"


def causalinference_match(df):
    from causalinference import CausalModel

    X = pd.get_dummies(df[["pretest", *COVARIATES]], columns=["race"], drop_first=True, dtype=float).to_numpy()
    cm = CausalModel(df["posttest"].to_numpy(float), df["treatment"].to_numpy(int), X)
    cm.est_propensity()
    cm.est_via_matching()
    return f"ATT {cm.estimates['matching']['att']:.3f} (covariate matching, no caliper)"


def psmpy_match(df):
    import io
    import contextlib

    from psmpy import PsmPy

    d = pd.get_dummies(df[["student_id", "treatment", "pretest", *COVARIATES]], columns=["race"], drop_first=True,
                       dtype=float)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psm = PsmPy(d, treatment="treatment", indx="student_id", exclude=[])
        psm.logistic_ps(balance=False)
        psm.kdtree_matched(matcher="propensity_logit", replacement=True, caliper=None)
    return "matched"


def pleval_vcg(v):
    from pleval.matching import match

    r = match(v, _columns(), method="vcg", band=1.0, k=51)
    return f"{r.n_treated_matched:,} PL matched, {len(r.rows):,} rows"


def vcg_core(df):
    from pleval.matching._design import combine_codes
    from pleval.matching.exact import match_vcg

    keys = ["grade", "subject", *COVARIATES]
    t = df["treatment"].to_numpy() == 1
    x = df["pretest"].to_numpy()
    cells = combine_codes(df, keys)
    m = match_vcg(cells[t], x[t], cells[~t], x[~t], band=1.0, k=51)
    return f"{int((m.n_matched > 0).sum()):,} PL matched, {len(m.c_row):,} pairs (keys + closest k)"


def naive_merge(df):
    keys = ["grade", "subject", *COVARIATES]
    t = df[df.treatment == 1].reset_index()[["index", *keys, "pretest"]]
    c = df[df.treatment == 0].reset_index()[["index", *keys, "pretest"]]
    pairs = t.merge(c, on=keys, suffixes=("_t", "_c"))
    pairs = pairs[(pairs.pretest_t - pairs.pretest_c).abs() <= 1.0]
    pairs = pairs.sample(frac=1.0, random_state=0).groupby("index_t").head(51)
    return f"{pairs['index_t'].nunique():,} PL matched, {len(pairs):,} pairs"


TASKS = {  # name: (task, data kind, preparation done before the clock and the memory counter start)
    "PS+NN floor: statsmodels Logit + cKDTree": (floor_logit_kdtree, "ps", None),
    "PS+NN pleval.match (pre-validated)": (pleval_ps_validated, "ps", validated),
    "PS+NN pleval.match (raw frame, incl. validate)": (pleval_ps_raw, "ps", None),
    "PS+NN pleval.match, exact grade×subject (pre-validated)": (pleval_ps_exact, "ps", validated),
    "PS+NN DoWhy propensity_score_matching": (dowhy_psm, "ps", None),
    "PS+NN causalinference est_via_matching": (causalinference_match, "ps", None),
    "PS+NN psmpy kdtree_matched": (psmpy_match, "ps", None),
    "VCG pleval.match(method='vcg') (pre-validated)": (pleval_vcg, "vcg", validated),
    "VCG core: keys + match_vcg": (vcg_core, "vcg", None),
    "VCG naive pandas merge-then-filter": (naive_merge, "vcg", None),
}
PEER_LIMIT = {  # the largest size each peer finishes on this kind of machine (peer-timings.md)
    "PS+NN DoWhy propensity_score_matching": 1_000_000,
    "PS+NN causalinference est_via_matching": 10_000,
    "PS+NN psmpy kdtree_matched": 10_000,
    "VCG naive pandas merge-then-filter": 100_000,
}
NEEDS = {"PS+NN DoWhy propensity_score_matching": "dowhy", "PS+NN causalinference est_via_matching": "causalinference",
         "PS+NN psmpy kdtree_matched": "psmpy"}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _child(name, size, q):
    try:
        fn, kind, prep = TASKS[name]
        df = make_data(size) if kind == "ps" else make_vcg_data(size // 10, size)
        frame_mb = df.memory_usage(deep=True).sum() / 1e6
        arg = prep(df) if prep else df
        if prep:
            del df
        # imports outside the timing: `import pleval` alone loads nothing (its names load on first use),
        # so the modules the tasks call are imported here (statsmodels, which only the propensity fit
        # and the peers load, stays inside, as for them)
        import pleval.checks  # noqa: F401
        import pleval.data  # noqa: F401
        import pleval.matching  # noqa: F401

        if name in NEEDS:
            __import__(NEEDS[name])
        try:
            with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter
                fh.write("5")
        except OSError:
            pass
        before = _rss_kb("VmRSS:")
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(arg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _rss_kb("VmHWM:")
        q.put({"task": name, "size": size, "seconds": wall, "cpu": cpu, "peak_mb": peak / 1024,
               "extra_mb": (peak - before) / 1024, "frame_mb": frame_mb, "note": out})
    except Exception as exc:  # report, do not crash the table
        q.put({"task": name, "size": size, "error": f"{type(exc).__name__}: {exc}"[:160]})


def run(name, size, timeout):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, size, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        return {"task": name, "size": size, "error": f"timed out after {timeout} s"}
    try:
        return q.get(timeout=5)
    except Exception:
        return {"task": name, "size": size, "error": f"exited with code {p.exitcode} (out of memory?)"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k and 100k only")
    ap.add_argument("--sizes", type=str, default=None, help="comma-separated sizes (rows)")
    ap.add_argument("--tasks", type=str, default=None, help="substring filter on task names")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (the median is shown)")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([10_000, 100_000] if a.quick else [10_000, 100_000, 1_000_000])
    rows = []
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    for name in TASKS:
        if a.tasks and a.tasks not in name:
            continue
        if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
            print(f"skip {name}: {NEEDS[name]} not installed (pip install -e '.[bench]')", flush=True)
            continue
        for size in sizes:
            if size > PEER_LIMIT.get(name, size):
                continue
            runs = [run(name, size, a.timeout) for _ in range(a.repeat)]
            ok = [r for r in runs if "error" not in r]
            r = sorted(ok, key=lambda r: r["seconds"])[len(ok) // 2] if ok else runs[0]
            rows.append(r)
            if "error" in r:
                print(f"{name:58s} {size:>9,}  ERROR {r['error']}", flush=True)
            else:
                print(f"{name:58s} {size:>9,}  {r['seconds']:8.3f} s  peak {r['peak_mb']:7.0f} MB "
                      f"(+{r['extra_mb']:.0f} MB over a {r['frame_mb']:.0f} MB frame)  {r['note']}", flush=True)
    res = pd.DataFrame(rows)
    ok = res[res["error"].isna()] if "error" in res else res
    if len(ok):
        print("\nratios to the bare floor (time) at each size:")
        floor = ok[ok.task.str.startswith("PS+NN floor")].set_index("size")["seconds"]
        for r in ok[ok.task.str.startswith("PS+NN")].itertuples():
            if r.size in floor.index and not r.task.startswith("PS+NN floor"):
                print(f"  {r.task:58s} {r.size:>9,}  {r.seconds / floor[r.size]:6.2f}x")
        naive = ok[ok.task.str.startswith("VCG naive")].set_index("size")["seconds"]
        for r in ok[ok.task.str.startswith("VCG pleval")].itertuples():
            if r.size in naive.index:
                print(f"  {r.task:58s} {r.size:>9,}  {r.seconds / naive[r.size]:6.3f}x of naive merge")
    print(f"load average after: {os.getloadavg()}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
    res.to_csv(os.path.join(os.path.dirname(__file__), "out", "bench_matching.csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
