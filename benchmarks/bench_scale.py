"""Benchmark: the in-memory speed targets of the scale issue, as ratios to floors measured in the same run.

    python benchmarks/bench_scale.py            # 1M rows (targets 1, 2, 3 at 1M, 6)
    python benchmarks/bench_scale.py --big      # also `pleval estimate` on 10M rows (target 3)
    python benchmarks/bench_scale.py --size 100000   # a quick run at another size

Every measurement runs in a fresh process (``bench_matching``'s harness: data built before
the clock and the peak-RSS counter start) and reports wall and CPU seconds (user + system of
the process): on a loaded machine wall time grows with the load, CPU time much less, so both
are printed with the load average. Targets:

1. propensity 1:1 matching at 1M rows ≤ 1.3× the statsmodels Logit + cKDTree floor and ≥ 4×
   faster than DoWhy (when installed: ``pip install -e '.[bench]'``); the whole
   ``match → balance → estimate`` ≤ 1.5× its floor (Logit + cKDTree + SMDs + a lean CR1
   regression). pleval keeps every tie by default (Abadie–Imbens); on data with tied scores the
   matched sample then holds many more rows than the floor's 1:1 pairs, so the comparisons
   with the floor use ``ties=False`` (1:1, ties broken by student id) and the default is shown
   beside them.
2. VCG 100k PL vs a 1M pool, ``match → balance → estimate`` ≤ 1.5 s and ≤ 1 GB; from the raw
   frame (validation included) ≤ 2× the pre-validated time. Shown beside it, a floor: the keyed
   match, weighted SMDs and a WLS with CR1 SEs by school on the distinct matched rows (pleval
   does more: CR2 with Satterthwaite df, balance per subject with eCDFs, the pooled SD).
3. ``pleval estimate`` on 1M rows (a Parquet file) ≤ 6 s with all outputs; 10M ≤ 60 s, ≤ 6 GB.
   Besides the command's own time and peak memory, its steps are timed through the API in
   another fresh process: reading and checking, the analysis, writing the outputs, and the
   parts of the writing (figures, PDF, HTML, workbook).
6. a forest plot of 3,000 schools (an evaluation's: the highest and lowest 30, the rest
   summarized) drawn and written as PNG and SVG ≤ 2 s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_matching as bm  # noqa: E402  (the data generators and floors)


def _floor_full(df):
    """Logit + cKDTree 1:1 match, SMDs of the covariates after matching, lean clustered OLS (CR1)."""
    import statsmodels.api as sm
    from scipy.spatial import cKDTree

    X = pd.get_dummies(df[["pretest", *bm.COVARIATES]], columns=["race"], drop_first=True, dtype=float)
    X.insert(0, "const", 1.0)
    Xn = X.to_numpy()
    t = df["treatment"].to_numpy()
    lp = Xn @ sm.Logit(t, Xn).fit(disp=0).params
    cal = 0.2 * np.sqrt((lp[t == 1].var(ddof=1) + lp[t == 0].var(ddof=1)) / 2)
    tpos, cpos = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    d, i = cKDTree(lp[cpos, None]).query(lp[tpos, None], k=1, distance_upper_bound=cal)
    ok = np.isfinite(d)
    rows = np.concatenate([tpos[ok], cpos[i[ok]]])
    Z = Xn[rows, 1:]
    tt = t[rows] == 1
    smd = (Z[tt].mean(0) - Z[~tt].mean(0)) / np.sqrt((Z[tt].var(0, ddof=1) + Z[~tt].var(0, ddof=1)) / 2)
    A = np.column_stack([Xn[rows], t[rows]])
    y = df["posttest"].to_numpy()[rows]
    g = pd.factorize(df["school_id"].to_numpy()[rows])[0]
    M = np.linalg.inv(A.T @ A)
    b = M @ (A.T @ y)
    u = np.zeros((g.max() + 1, A.shape[1]))
    np.add.at(u, g, A * (y - A @ b)[:, None])
    se = np.sqrt((M @ (u.T @ u) @ M)[-1, -1])
    return f"{ok.sum():,} pairs, max |SMD| {np.abs(smd).max():.3f}, effect {b[-1]:.3f} (SE {se:.3f})"


def _vcg_floor_full(df):
    """The VCG path done leanly: the keyed match (``match_vcg`` on the combined keys; the
    simulated PL schools have no comparison rows to exclude), the distinct matched rows with
    their summed weights, weighted SMDs of the covariates, and a WLS with CR1 SEs by school."""
    from pleval.matching._design import combine_codes
    from pleval.matching.exact import match_vcg

    t = df["treatment"].to_numpy() == 1
    x = df["pretest"].to_numpy(dtype=float)
    cells = combine_codes(df, ["subject", "grade", *bm.COVARIATES])
    tpos, cpos = np.flatnonzero(t), np.flatnonzero(~t)
    m = match_vcg(cells[tpos], x[tpos], cells[cpos], x[cpos], band=1.0, k=51)
    hit = m.n_matched > 0
    rows = np.concatenate([tpos[hit], cpos[m.c_row]])
    wsum = np.bincount(rows, np.concatenate([np.ones(int(hit.sum())), m.weight]), len(df))
    used = np.flatnonzero(wsum)
    w = wsum[used]
    X = pd.get_dummies(df[["pretest", *bm.COVARIATES, "grade", "subject"]].iloc[used],
                       columns=["race", "grade", "subject"], drop_first=True, dtype=float)
    X.insert(0, "treatment", t[used].astype(float))
    X.insert(0, "const", 1.0)
    A = X.to_numpy()
    tt = t[used]
    Z = A[:, 2:]
    smd = ((w[tt] @ Z[tt]) / w[tt].sum() - (w[~tt] @ Z[~tt]) / w[~tt].sum()) / np.sqrt(
        (Z[tt].var(0, ddof=1) + Z[~tt].var(0, ddof=1)) / 2)
    y = df["posttest"].to_numpy()[used]
    Aw = A * w[:, None]
    M = np.linalg.inv(Aw.T @ A)
    b = M @ (Aw.T @ y)
    g = pd.factorize(df["school_id"].to_numpy()[used])[0]
    o = np.argsort(g, kind="stable")
    starts = np.flatnonzero(np.r_[True, g[o][1:] != g[o][:-1]])
    u = np.add.reduceat(Aw[o] * (y - A @ b)[o, None], starts, axis=0)
    G, n, k = len(starts), len(used), A.shape[1]
    se = np.sqrt((M @ (u.T @ u) @ M)[1, 1] * G / (G - 1) * (n - 1) / (n - k))
    return f"{len(rows):,} matched rows ({n:,} distinct), max |SMD| {np.nanmax(np.abs(smd)):.3f}, effect {b[1]:.3f} (SE {se:.3f})"


def _pleval_full(v, **kw):
    from pleval.matching import match

    r = match(v, bm._columns(), **kw)
    r.balance()
    e = r.estimate()
    rows, _, _, copies = r._distinct  # (the long format itself is not formed for VCG)
    return f"{int(copies.sum()):,} matched rows ({rows.size:,} distinct), effect {e.raw.estimate:.3f} (SE {e.raw.se:.3f})"


def ps_match_1to1(v):
    from pleval.matching import match

    r = match(v, bm._columns(), method="propensity", exact=(), ties=False)
    return f"{r.n_treated_matched:,} matched, {len(r.rows):,} rows"


def ps_match_ties(v):
    from pleval.matching import match

    r = match(v, bm._columns(), method="propensity", exact=())
    return f"{r.n_treated_matched:,} matched, {len(r.rows):,} rows (every tie kept)"


def ps_full_1to1(v):
    return _pleval_full(v, method="propensity", exact=(), ties=False)


def ps_full_ties(v):
    return _pleval_full(v, method="propensity", exact=())


def vcg_full(v):
    return _pleval_full(v, method="vcg", band=1.0, k=51)


TASKS = {  # name: (task, data kind, preparation before the clock)
    "PS floor: Logit + cKDTree": (bm.floor_logit_kdtree, "ps", None),
    "PS pleval.match ties=False": (ps_match_1to1, "ps", bm.validated),
    "PS pleval.match (every tie kept)": (ps_match_ties, "ps", bm.validated),
    "PS DoWhy propensity_score_matching": (bm.dowhy_psm, "ps", None),
    "PS full floor: match + SMDs + CR1": (_floor_full, "ps", None),
    "PS full pleval ties=False": (ps_full_1to1, "ps", bm.validated),
    "PS full pleval (every tie kept)": (ps_full_ties, "ps", bm.validated),
    "VCG full floor: keyed match + SMDs + CR1": (_vcg_floor_full, "vcg", None),
    "VCG full pleval (pre-validated)": (vcg_full, "vcg", bm.validated),
    "VCG full pleval (raw frame)": (vcg_full, "vcg", None),
}
bm.TASKS.update(TASKS)
bm.NEEDS["PS DoWhy propensity_score_matching"] = "dowhy"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _forest_child(k, q):
    from pleval import plots

    rng = np.random.default_rng(1)
    est = rng.normal(0, 0.1, k)
    se = rng.uniform(0.03, 0.1, k)
    df = pd.DataFrame({"school": [f"SCH{i:05d}" for i in range(k)], "estimate": est, "se": se, "shrunk": 0.6 * est,
                       "shrunk_ci_low": 0.6 * est - 0.05, "shrunk_ci_high": 0.6 * est + 0.05,
                       "pvalue_adj": rng.uniform(0, 1, k) ** 3})
    pooled = {"estimate": 0.01, "ci_low": -0.01, "ci_high": 0.03, "pi_low": -0.2, "pi_high": 0.2, "tau": 0.1}
    placebo = rng.normal(0, 0.08, k)
    plots.to_png_svg(plots.forest(df.iloc[:5]))  # fonts and caches warm, as in a report's later figures

    def one_layout():  # as report.save writes it
        plots.to_png_svg(plots.forest(df, pooled=pooled, placebo=placebo, max_rows=plots.FOREST_MAX_ROWS), dpi=200)

    def separate():  # each format saved on its own (a layout and a measuring draw each)
        fig = plots.forest(df, pooled=pooled, placebo=placebo, max_rows=plots.FOREST_MAX_ROWS)
        plots.to_png(fig, dpi=200)
        plots.to_svg(fig)

    out = {}
    for name, fn in (("new", one_layout), ("separate", separate), ("new2", one_layout), ("separate2", separate)):
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        out[name] = (time.perf_counter() - t0, _cpu() - c0)
    q.put({"seconds": out["new"][0], "cpu": out["new"][1],
           "ratio_cpu": (out["new"][1] + out["new2"][1]) / (out["separate"][1] + out["separate2"][1])})


def forest_time(k: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_forest_child, args=(k, q))
    p.start()
    p.join(600)
    return q.get(timeout=5)


def _steps_child(path: str, out: str, q):
    """The steps of ``pleval estimate`` through the API, each timed (CPU and wall): reading and
    checking, the analysis, and writing the outputs (``report.save``), then the parts of the
    writing redone one by one (figures drawn and rendered as PNG, and as PNG and SVG as with
    ``--svg``, the PDF, the HTML, the workbook)."""
    import warnings

    t = {}

    def step(name, fn):
        c0, w0 = _cpu(), time.perf_counter()
        res = fn()
        t[name] = (_cpu() - c0, time.perf_counter() - w0)
        return res

    warnings.simplefilter("ignore")
    step("import", lambda: __import__("pleval.report"))
    from pleval import plots, report
    from pleval.checks import check
    from pleval.data import read_table
    from pleval.estimate import estimate
    from pleval.report import outputs, to_html, to_pdf

    df = step("read", lambda: read_table(path))
    chk = step("check", lambda: check(df, design="matched", keep_validated=True))  # as the CLI
    ev = step("analysis", lambda: estimate(df, chk.columns, design="matched", seed=0, checked=chk))
    step("outputs (report.save)", lambda: report.save(ev, out, force=True))
    figs = step("  figures: drawn", lambda: plots.evaluation_figures(ev))
    images = step("  figures: PNG", lambda: {k: plots.to_png(f, dpi=outputs.PRINT_DPI) for k, f in figs.items()})
    figs = plots.evaluation_figures(ev)
    step("  figures: PNG + SVG (--svg)", lambda: [plots.to_png_svg(f, dpi=outputs.PRINT_DPI) for f in figs.values()])
    step("  report.pdf", lambda: to_pdf.render_pdf(ev, images, dpi=outputs.PRINT_DPI))
    step("  report.html", lambda: to_html.render_html(ev, images))
    step("  school_effects.xlsx", lambda: outputs._write_school_xlsx(ev, Path(out) / "bench.xlsx"))
    q.put({"rows": len(df), "figures": len(figs), "steps": t})


def estimate_steps(path: Path, out: Path) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_steps_child, args=(str(path), str(out), q))
    p.start()
    p.join(3600)
    return q.get(timeout=5)


def bench_file(n_schools: int, folder: Path) -> Path:
    """Simulated students (~480 rows per school) as Parquet, made once per folder."""
    from pleval.simulate import simulate_matched

    path = folder / f"students_{n_schools}.parquet"
    if not path.exists():
        simulate_matched(n_schools=n_schools, n_pl_schools=n_schools // 10, students_per_grade=40,
                         seed=1).data.to_parquet(path, index=False)
    return path


def _descendants(root: int) -> list[int]:
    """``root``'s descendant processes (Linux /proc)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return sorted(tree - {root})


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith(key))
    except (OSError, StopIteration):
        return 0


def _private_kb(pid: int) -> int:
    """The pages ``pid`` holds alone (``Private_Clean + Private_Dirty`` of /proc/PID/smaps_rollup;
    its RSS where that cannot be read)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(ln.split()[1]) for ln in f if ln.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return _status_kb(pid, "VmRSS")


def _tree_mb(root: int, private: dict | None, fresh: bool) -> tuple[float, float]:
    """``(memory, summed RSS)`` of ``root`` and its descendants, MB: the memory the tree holds at
    once, ``root``'s RSS plus each descendant's private pages (a forked worker shares the pages it
    has not written with ``root``: counted once, in ``root``'s RSS), and the sum of their RSS,
    which counts those shared pages once per process (an upper bound). The private pages are
    read from the descendants' own page tables (smaps_rollup, not ``root``'s) when ``fresh`` or
    first seen, else taken as last read (``private``: pid → kB; None: not read, the summed RSS
    both times; a worker's RSS in its place counted the pages it shares twice, 10M rows: 6.3 GB):
    a walk of a worker's page tables takes a few milliseconds of a core the run itself uses (read
    every 50 ms, the 1M run took 6.3–6.4 s instead of 5.6–5.8 s; every 0.25 s, 5.9 s)."""
    kids = _descendants(root)
    if private is None:
        summed = (_status_kb(root, "VmRSS") + sum(_status_kb(p, "VmRSS") for p in kids)) / 1024
        return summed, summed
    if fresh:
        private.clear()
    private.update({p: _private_kb(p) for p in kids if p not in private})  # (a worker just forked: read now)
    rss = _status_kb(root, "VmRSS")
    return (rss + sum(private[p] for p in kids)) / 1024, (rss + sum(_status_kb(p, "VmRSS") for p in kids)) / 1024


def cli_estimate(n_schools: int, folder: Path, private: bool = False) -> dict:
    """``pleval estimate FILE --out DIR`` on simulated students (~480 rows per school), in a
    fresh process: wall, CPU (user + system, of the process and its worker processes) and peak
    memory. The peak is the larger of the biggest single process's peak RSS (``ru_maxrss``,
    exact) and the peak of the process tree's memory sampled every 50 ms (:func:`_tree_mb`: with
    worker processes, the memory the machine needs at once; with ``private``, the workers' private
    pages read every 0.25 s, else their RSS); the peak of the tree's summed RSS, which counts the
    pages a forked worker shares with the main process twice, is shown beside."""
    path = bench_file(n_schools, folder)
    rows = pd.read_parquet(path, columns=["grade"]).shape[0]
    exe = Path(sys.executable).with_name("pleval")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "estimate", str(path), "--out", str(folder / f"out_{n_schools}"), "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    tree_mb = summed_mb = 0.0
    private, tick = ({} if private else None), 0
    while True:  # reaped by wait4: the usage of this process and its workers alone (RUSAGE_CHILDREN's peak
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # would be the largest of every process run so far)
        if pid:
            break
        if os.path.isdir("/proc"):
            held, summed = _tree_mb(proc.pid, private, fresh=tick % 5 == 0)
            tree_mb, summed_mb, tick = max(tree_mb, held), max(summed_mb, summed), tick + 1
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read()
    proc.stderr.close()
    wall = time.perf_counter() - t0
    out = {"rows": rows, "seconds": wall, "cpu": usage.ru_utime + usage.ru_stime,
           "peak_mb": max(usage.ru_maxrss / 1024, tree_mb), "largest_process_mb": usage.ru_maxrss / 1024,
           "summed_rss_mb": summed_mb}
    if proc.returncode:
        out["error"] = stderr.strip().splitlines()[-1][:200] if stderr.strip() else f"exit {proc.returncode}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="rows for targets 1-3 (default 1M)")
    ap.add_argument("--big", action="store_true", help="also `pleval estimate` on 10M rows")
    ap.add_argument("--skip", default="", help="comma-separated: ps, vcg, cli, steps, forest")
    a = ap.parse_args(argv)
    skip = set(a.skip.split(",")) - {""}
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    res = {}
    for name, (_, kind, _) in TASKS.items():
        if kind in skip or (name in bm.NEEDS and __import__("importlib").util.find_spec(bm.NEEDS[name]) is None):
            continue
        r = bm.run(name, a.size, timeout=1800)
        res[name] = r
        msg = f"ERROR {r['error']}" if "error" in r else (
            f"{r['seconds']:8.2f} s ({r['cpu']:.2f} s CPU)  peak {r['peak_mb']:7.0f} MB  {r['note']}")
        print(f"{name:44s} {a.size:>10,}  {msg}", flush=True)

    def ratio(a_, b_):
        return res[a_]["seconds"] / res[b_]["seconds"] if "seconds" in res.get(a_, {}) and "seconds" in res.get(b_, {}) else np.nan

    lines = []
    if "ps" not in skip:
        r1 = ratio("PS pleval.match ties=False", "PS floor: Logit + cKDTree")
        lines.append(f"1. PS 1:1 match / floor: {r1:.2f}x (target <= 1.3)  {'MET' if r1 <= 1.3 else 'NOT MET'}")
        rd = ratio("PS DoWhy propensity_score_matching", "PS pleval.match ties=False")
        if np.isfinite(rd):
            lines.append(f"1. DoWhy / pleval PS match: {rd:.2f}x faster (target >= 4)  {'MET' if rd >= 4 else 'NOT MET'}")
        rf = ratio("PS full pleval ties=False", "PS full floor: match + SMDs + CR1")
        lines.append(f"1. PS full match->balance->estimate / floor: {rf:.2f}x (target <= 1.5)  {'MET' if rf <= 1.5 else 'NOT MET'}")
        rt = ratio("PS full pleval (every tie kept)", "PS full floor: match + SMDs + CR1")
        lines.append(f"   (every tie kept: {rt:.2f}x the floor)")
    if "vcg" not in skip and "seconds" in res.get("VCG full pleval (pre-validated)", {}):
        v = res["VCG full pleval (pre-validated)"]
        rr = ratio("VCG full pleval (raw frame)", "VCG full pleval (pre-validated)")
        ok = v["seconds"] <= 1.5 and v["peak_mb"] <= 1024
        lines.append(f"2. VCG {a.size // 10:,} PL vs {a.size:,} pool full path: {v['seconds']:.2f} s wall, {v['cpu']:.2f} s CPU, "
                     f"peak {v['peak_mb']:.0f} MB = {v['seconds'] / 1.5:.2f}x wall, {v['cpu'] / 1.5:.2f}x CPU, "
                     f"{v['peak_mb'] / 1024:.2f}x memory of the target (<= 1.5 s, <= 1 GB)  "
                     f"wall {'MET' if ok else 'NOT MET'}, CPU {'MET' if v['cpu'] <= 1.5 and v['peak_mb'] <= 1024 else 'NOT MET'}")
        fl = ratio("VCG full pleval (pre-validated)", "VCG full floor: keyed match + SMDs + CR1")
        if np.isfinite(fl):
            f = res["VCG full floor: keyed match + SMDs + CR1"]
            lines.append(f"   its floor (keyed match, SMDs, CR1): {f['seconds']:.2f} s wall, {f['cpu']:.2f} s CPU, peak "
                         f"{f['peak_mb']:.0f} MB; pleval / floor {fl:.2f}x wall, {v['cpu'] / f['cpu']:.2f}x CPU")
        raw = res.get("VCG full pleval (raw frame)", {})
        rc = raw["cpu"] / v["cpu"] if "cpu" in raw else np.nan
        lines.append(f"2. VCG from the raw frame / pre-validated: {rr:.2f}x wall, {rc:.2f}x CPU (target <= 2)  "
                     f"{'MET' if rr <= 2 else 'NOT MET'}")
    if "cli" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            sizes = [(max(40, round(a.size / 481)), 6, None)] + ([(round(10_000_000 / 481), 60, 6144)] if a.big else [])
            for n_schools, limit_s, limit_mb in sizes:  # ~481 rows per simulated school
                c = cli_estimate(n_schools, Path(tmp), private=limit_mb is not None)  # (a memory target: the tree's)
                if "error" in c:
                    lines.append(f"3. pleval estimate {c['rows']:,} rows: ERROR {c['error']}")
                    continue
                ok = c["seconds"] <= limit_s and (limit_mb is None or c["peak_mb"] <= limit_mb)
                lines.append(f"3. pleval estimate {c['rows']:,} rows with all outputs: {c['seconds']:.1f} s wall, "
                             f"{c['cpu']:.1f} s CPU, peak {c['peak_mb']:.0f} MB (largest process "
                             f"{c['largest_process_mb']:.0f} MB; summed RSS {c['summed_rss_mb']:.0f} MB) = "
                             f"{c['seconds'] / limit_s:.2f}x wall, "
                             f"{c['cpu'] / limit_s:.2f}x CPU" + (f", {c['peak_mb'] / limit_mb:.2f}x memory" if limit_mb else "")
                             + f" of the target (<= {limit_s} s{f', <= {limit_mb} MB' if limit_mb else ''})  "
                             f"{'MET' if ok else 'NOT MET'}")
                if "steps" in skip or limit_mb is not None:
                    continue
                st = estimate_steps(bench_file(n_schools, Path(tmp)), Path(tmp) / "steps_out")
                lines.append(f"   its steps through the API ({st['rows']:,} rows, {st['figures']} figures; CPU / wall s):")
                total = sum(v[0] for k, v in st["steps"].items() if not k.startswith(" "))
                for k, (cpu, wall) in st["steps"].items():
                    share = "" if k.startswith(" ") else f"  {cpu / total:5.1%} of the CPU"
                    lines.append(f"     {k:28s} {cpu:7.2f} / {wall:7.2f}{share}")
    if "forest" not in skip:
        f = forest_time(3000)
        lines.append(f"6. forest plot, 3,000 schools, PNG (200 dpi) + SVG: {f['seconds']:.2f} s wall, {f['cpu']:.2f} s CPU "
                     f"= {f['seconds'] / 2:.2f}x wall, {f['cpu'] / 2:.2f}x CPU of the target (<= 2 s)  "
                     f"wall {'MET' if f['seconds'] <= 2 else 'NOT MET'}, CPU {'MET' if f['cpu'] <= 2 else 'NOT MET'}")
        lines.append(f"   one layout for both formats / each format saved on its own, same process: "
                     f"{f['ratio_cpu']:.2f}x CPU")
    print("\n" + "\n".join(lines))
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
