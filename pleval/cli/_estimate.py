"""``pleval estimate``: the whole evaluation, from a student file to an outputs folder.

Option precedence: built-in defaults < ``--config run.toml`` < flags given on the command
line. Paths inside a config file are relative to the file's folder. The resolved
configuration is written back to ``OUT/run.toml``, so ``pleval estimate --config
OUT/run.toml`` repeats the run exactly.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import importlib
import importlib.util
import json
import math
import os
import sys
import threading
import time
import tomllib
import types
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from .._text import fmt_p, percent
from ..errors import DataError
from . import app
from ._common import (
    Block, Covariates, Debug, Force, Grade, OnlySubject, Outcome, Pretest, School, StudentId, Subject, Takeup,
    TreatedLabel, Treatment, Weight, console, echo, err_console, escape, handle_errors,
    parse_value, print_checks, read_students, reading_options, table, NONE_WORDS,
)

if TYPE_CHECKING:
    from rich.table import Table

# Column-role flags, named as the Columns fields they set.
_ROLES = ("outcome", "treatment", "treated_label", "pretest", "covariates", "school", "block", "student_id", "grade",
          "subject", "weight", "takeup")
_TOP_KEYS = ("file", "design", "method", "subject", "seed", "out", "columns", "options", "match", "pool", "svg",
             "read")
_READ_KEYS = ("sep", "decimal", "encoding", "sheet", "header_row", "na")
_POOL_KEYS = ("path", "table", "engine")


def _load_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        cfg = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = [k for k in cfg if k not in _TOP_KEYS]
    if unknown:
        raise DataError(f"--config {path}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(_TOP_KEYS)}")
    for sec in ("columns", "options", "match", "pool", "read"):
        if sec in cfg and not isinstance(cfg[sec], dict):
            raise DataError(f"--config {path}: [{sec}] must be a table")
    if not isinstance(cfg.get("svg", False), bool):
        raise DataError(f"--config {path}: svg must be true or false; got {cfg['svg']!r}")
    bad_roles = [k for k in cfg.get("columns", {}) if k not in _ROLES]
    if bad_roles:
        raise DataError(f"--config {path}: unknown column role(s) {', '.join(map(repr, bad_roles))} in [columns]")
    bad_read = [k for k in cfg.get("read", {}) if k not in _READ_KEYS]
    if bad_read:
        raise DataError(f"--config {path}: unknown reading option(s) {', '.join(map(repr, bad_read))} in [read]; "
                        f"known: {', '.join(_READ_KEYS)}")
    bad_pool = [k for k in cfg.get("pool", {}) if k not in _POOL_KEYS]
    if bad_pool or ("pool" in cfg and "path" not in cfg["pool"]):
        raise DataError(f"--config {path}: [pool] takes path (required), table and engine"
                        + (f"; unknown: {', '.join(map(repr, bad_pool))}" if bad_pool else ""))
    base = path.resolve().parent
    for key in ("file", "out"):
        if key in cfg:
            p = Path(str(cfg[key]))
            cfg[key] = p if p.is_absolute() else base / p
    if "pool" in cfg:  # a path relative to the config's folder, or a Spark table name (kept as it is)
        p = Path(str(cfg["pool"]["path"]))
        cfg["pool"]["path"] = str(p if p.is_absolute() or not (base / p).exists() else (base / p).resolve())
    return cfg


def _unknown_options(extra: list[str], ctx: typer.Context) -> None:
    if not extra:
        return
    known = [o for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--")]
    bad = extra[0]
    hint = difflib.get_close_matches(bad.split("=")[0], known, n=1)
    what = "unknown option" if bad.startswith("-") else "unexpected argument"
    raise DataError(f"{what} {bad!r}" + (f" (did you mean {hint[0]}?)" if hint else "") + "; see pleval estimate --help")


def _given(cfg_cols: dict, flags: dict) -> dict:
    """The roles given: the config's [columns], then the flags (the rest take default names)."""
    given = dict(cfg_cols)
    for role in _ROLES:
        v = flags.get(role)
        if v is not None:
            given[role] = parse_value(v) if role == "treated_label" else v
    return given


def _overall_table(ev) -> Table:
    lvl = f"{float(ev.options['level']):.0%}"
    alpha = float(ev.options["alpha"])
    t = table(f"Overall effect ({lvl} CI; * = primary estimate)",
              ("subject", "analysis", "points", "effect size", "percentile pts", "p", "MDES SD (pct)"),
              left=("subject", "analysis"))
    ov = ev.overall
    if "outcome" in ov.columns:  # further outcomes have their own table
        ov = ov[ov["outcome"] == ev.columns.outcome]
    for (subject, analysis), g in ov.groupby(["subject", "analysis"], sort=False):
        by = {r["scale"]: r for _, r in g.iterrows()}
        raw, es, pp = by["raw"], by["effect size"], by["percentile points"]
        no_se = not math.isfinite(float(raw["se"]))  # (a Neyman estimate without a design-based SE: see the notes)
        mdes = es.get("mdes", float("nan"))
        t.add_row(
            escape(str(subject)), escape(str(analysis)) + (" *" if raw["primary"] else ""), f"{raw['estimate']:+.2f}",
            f"{es['estimate']:+.3f}" + (" (no SE)" if no_se else f" ({es['ci_low']:+.3f}, {es['ci_high']:+.3f})"),
            f"{pp['estimate']:+.1f}" + (" (no SE)" if no_se else f" ({pp['ci_low']:+.1f}, {pp['ci_high']:+.1f})"),
            "—" if no_se else fmt_p(raw["pvalue"], alpha),
            "—" if mdes != mdes else f"{mdes:.3f} ({pp.get('mdes', float('nan')):+.1f})",
            style="bold" if raw["primary"] else "",
        )
    return t


def _verdict_table(ev) -> Table | None:
    from ..findings import verdict_rows

    rows = verdict_rows(ev)
    if not rows:
        return None
    cols = ("subject", "check", "value", "verdict")
    t = table("WWC verdicts", cols, left=cols)
    short = {"satisfied with statistical adjustment": "satisfied with adjustment"}
    for r in rows:
        check = r["check"].replace("baseline equivalence: ", "equivalence: ")
        value = r["value"].replace("differential", "diff.").replace(" points", " pts")
        verdict = short.get(r["verdict"], r["verdict"]).replace(" (cautious boundary), ", " cautious / ").replace(
            " (optimistic)", " optimistic")
        colour = "red" if "not" in verdict or "high" in verdict else ("yellow" if "adjust" in verdict else "green")
        t.add_row(escape(r["subject"]), escape(check), escape(value), f"[{colour}]{escape(verdict)}[/]")
    return t


def _rating_table(ev) -> Table | None:
    """The rating and tier per subject; the reasons as a caption (rating.csv has every step)."""
    if not ev.ratings:
        return None
    why = "\n".join(f"{s}: " + "; ".join(r.reasons) + f". ESSA: {r.essa_reason}." for s, r in ev.ratings.items())
    cols = ("subject", "WWC rating", "ESSA tier")
    t = table("WWC rating and ESSA tier (every step: rating.csv)", cols, left=cols, caption=escape(why),
              caption_justify="left")
    for s, r in ev.ratings.items():
        colour = "green" if "Without" in r.wwc_rating else "red" if "Not" in r.wwc_rating else "yellow"
        t.add_row(escape(s), f"[{colour}]{escape(r.wwc_rating.replace('WWC Standards ', ''))}[/]", escape(r.essa_tier))
    return t


def _subgroup_table(ev) -> Table | None:
    """Subgroup effect sizes with CIs and adjusted p; the equity summary as the caption."""
    sub = ev.subgroups()
    if not len(sub):
        return None
    alpha = float(ev.options["alpha"])
    eq = ev.equity
    cap = "\n".join(f"{r['subject']}: gap {r['gap']}: {r['change_es']:+.3f} SD ({r['es_ci_low']:+.3f}, "
                     f"{r['es_ci_high']:+.3f}): {r['verdict']}" for _, r in eq.iterrows())
    t = table("Subgroups (effect size, CI; p adjusted across rows; subgroups.csv, equity.csv)",
              ("subject", "subgroup", "level", "ES", "CI", "pct pts", "adj. p"), left=("subject", "subgroup", "level"),
              caption=escape(cap) or None, caption_justify="left")
    for _, r in sub.iterrows():
        t.add_row(escape(str(r["subject"])), escape(str(r["subgroup"])), escape(str(r["level"])),
                  f"{r['effect_size']:+.3f}", f"{r['es_ci_low']:+.3f}, {r['es_ci_high']:+.3f}",
                  f"{r['percentile_points']:+.1f}",
                  fmt_p(r["pvalue_adjusted"], alpha))
    return t


def _outcomes_table(ev) -> Table | None:
    """Every outcome × subject on its own scale, p adjusted within subject × domain, with its
    rating and tier; why yes/no outcomes have no percentile points as the caption."""
    o = ev.outcomes
    if not len(o):
        return None
    alpha = float(ev.options["alpha"])
    binary = o[o["kind"] == "binary"]
    cap = ("Yes/no outcomes: difference in percentage points (shares of students, not percentile points), Cox index "
           f"as the effect size, by {binary['estimation'].iloc[0]}; {binary['note'].iloc[0]}." if len(binary) else None)
    t = table("Outcomes (scores in their own units; p adjusted within subject × domain; outcomes.csv)",
              ("subject", "outcome", "domain", "difference (CI)", "effect size (CI)", "percentile pts", "p", "adj. p", "WWC",
               "ESSA"), left=("subject", "outcome", "domain", "difference (CI)", "WWC", "ESSA"),
              caption=escape(cap) if cap else None, caption_justify="left")
    for _, r in o.iterrows():
        unit = " %-points" if r["scale"] == "percentage points" else ""  # scores: in the outcome's own units
        es = "Cox" if r["es_measure"] == "Cox index" else "g"
        t.add_row(escape(str(r["subject"])), escape(str(r["outcome"])) + (" ↓" if r["favourable"] == "lower" else ""),
                  escape(str(r["domain"])), f"{r['estimate']:+.2f}{unit} ({r['ci_low']:+.2f}, {r['ci_high']:+.2f})",
                  f"{es} {r['effect_size']:+.3f} ({r['es_ci_low']:+.3f}, {r['es_ci_high']:+.3f})",
                  "—" if r["percentile_points"] != r["percentile_points"] else f"{r['percentile_points']:+.1f}",
                  fmt_p(r["pvalue"], alpha), fmt_p(r["pvalue_adjusted"], alpha),
                  escape(str(r["wwc_rating"]).replace("Meets WWC Standards ", "").replace("Does Not Meet WWC Standards",
                                                                                          "Does Not Meet")),
                  escape(str(r["essa_tier"])))
    return t


def _moderator_table(ev) -> Table | None:
    """Meta-regression coefficients per subject; the QM test of each subject as the caption."""
    m = ev.moderators
    if not len(m):
        return None
    first = m.groupby("subject", sort=False).first()
    cap = "\n".join(f"{s}: moderators together {r['qm_test']} = {r['qm']:.3f}, p = {r['qm_pvalue']:.3g}; "
                     f"R² = {100 * r['r2']:.0f}% of the between-school variance" for s, r in first.iterrows())
    t = table("Context moderators of the school effects (meta-regression; moderators.csv)",
              ("subject", "term", "estimate", "CI", "p"), left=("subject", "term"), caption=escape(cap),
              caption_justify="left")
    for _, r in m.iterrows():
        t.add_row(escape(str(r["subject"])), escape(str(r["term"])), f"{r['estimate']:+.3f}",
                  f"{r['ci_low']:+.3f}, {r['ci_high']:+.3f}", f"{r['pvalue']:.3f}")
    return t


def _schools_table(ev) -> Table | None:
    import pandas as pd

    from .. import percentiles

    h = ev.heterogeneity
    if len(h):
        h = h[h["k"] > 1]  # a single PL school: _one_school_table
    if not len(h):
        return None
    cal = "calibrated_positive" in h.columns and h["calibrated_positive"].notna().any()
    title = ("Schools (effect sizes; pooled and τ use the joint covariance of schools sharing comparison schools). A "
             "school's estimate is the program plus its own circumstances; +/− count schools beyond the placebo spread "
             "(adjusted); PI and P(<0) allow for the placebo spread (the PL schools' when larger, else the two pooled by "
             "precision); MDES of one school, median, 80% power" if cal else
             "Schools (effect sizes; counts after multiplicity adjustment; MDES of one school, median, 80% power)")
    t = table(title, ("subject", "k", "pooled", "τ", "τ placebo", "τ program (CI)", "PI (pct pts)", "P(<0) new school",
                      "+", "−", "by chance", "1-school MDES"), left=("subject",))
    for _, r in h.iterrows():
        p0 = ev.effects[r["subject"]].baseline_percentile
        pi = (f"{percentiles.to_percentile_points(r['pi_low'], p0):+.1f} to "
              f"{percentiles.to_percentile_points(r['pi_high'], p0):+.1f}"
              if math.isfinite(r["pi_low"]) and math.isfinite(r["pi_high"]) else "—")  # none from 2 schools: t(k − 2)
        tp = r.get("placebo_tau")
        has_cal = cal and pd.notna(r.get("calibrated_positive"))
        prog = (f"{math.sqrt(r['tau2_program']):.3f} ({math.sqrt(r['tau2_program_ci_low']):.3f}–"
                f"{math.sqrt(r['tau2_program_ci_high']):.3f})") if has_cal else "—"
        pos = int(r["calibrated_positive"] if has_cal else r["count_positive_adjusted"])
        neg = int(r["calibrated_negative"] if has_cal else r["count_negative_adjusted"])
        alpha = float(r["count_alpha"])
        pn = r.get("prob_negative_new", math.nan)
        t.add_row(
            escape(str(r["subject"])), f"{int(r['k'])}", f"{r['estimate']:+.3f}", f"{r['tau']:.3f}",
            "—" if tp is None or tp != tp else f"{tp:.3f}", prog, pi,
            "—" if pn != pn else f"{pn:.2f}", f"{pos}", f"{neg}", f"{alpha * int(r['k']):.1f} raw; any ≤{percent(alpha)}",
            f"{r.get('school_mdes_median', float('nan')):.3f}",
        )
    notes = [f"{r['subject']}: {r['calibration_note']}" for _, r in h.iterrows()
             if isinstance(r.get("calibration_note"), str) and r["calibration_note"]]
    if notes:
        t.caption, t.caption_justify = escape("\n".join(notes)), "left"
    return t


def _one_school_table(ev) -> Table | None:
    """A subject with a single PL school: its estimate, and against the placebo spread the
    calibrated SE, interval, p and verdict (or why there are none); why nothing is pooled. None
    for a multi-site trial's one site (randomized within it: no placebo spread to compare with)."""
    import numpy as np
    import pandas as pd

    from ..findings import note_text, randomized_in_schools, run_alpha, subject_rows

    h = ev.heterogeneity
    if not len(h) or not (h["k"] == 1).any() or randomized_in_schools(ev):  # a trial's one site: no placebo spread
        return None
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    alpha = run_alpha(ev)
    t = table(f"One PL school: its effect against the spread of placebo schools (effect sizes; {lvl} CIs)",
              ("subject", "school", "effect size (CI)", "τ placebo (k)", "SE with placebo spread", "calibrated CI",
               "df", "p vs placebo", f"beyond placebo spread (α = {alpha:g})"), left=("subject", "school"))
    why = []
    for _, r in h[h["k"] == 1].iterrows():
        sch = subject_rows(ev.schools, r["subject"])
        x = sch[np.isfinite(sch["effect_size"].to_numpy(dtype=float))].iloc[0]
        has = pd.notna(x.get("p_calibrated", np.nan))
        verdict = "—" if not has else ("no" if x["p_calibrated_adjusted"] >= alpha else
                                       "yes, " + ("above" if x["effect_size"] > 0 else "below") + " zero")
        t.add_row(escape(str(r["subject"])), escape(str(x["school"])),
                  f"{x['effect_size']:+.3f} ({x['es_ci_low']:+.3f}, {x['es_ci_high']:+.3f})",
                  f"{r['tau_placebo']:.3f} ({int(r['placebo_k'])})" if has else "—",
                  f"{x['se_calibrated']:.3f}" if has else "—",
                  f"{x['ci_low_calibrated']:+.3f}, {x['ci_high_calibrated']:+.3f}" if has else "—",
                  f"{x['df_calibrated']:.1f}" if has else "—",
                  fmt_p(x["p_calibrated"], alpha) if has else "—", verdict)
        why += [f"{r['subject']}: {w}" for w in (note_text(r, "calibration_note"), note_text(r, "not_estimable")) if w]
    t.caption = escape("\n".join(["The school's estimate is the program's effect plus the school's own circumstances; "
                                   "the calibrated interval counts the spread of placebo schools (comparison schools "
                                   "analysed as if PL) as noise: SE = √(SE² + τ²_placebo), the uncertainty of τ²_placebo "
                                   "integrated out (df: those of the t that gives the interval with this SE).",
                                   *why]))
    t.caption_justify = "left"
    return t


RISK_ROWS = 40
"""PL schools per subject the terminal's risk-of-harm table lists in full; a subject with more
lists its :data:`RISK_TOP` schools of highest risk (every school: school_effects.csv)."""

RISK_TOP = 20


def _risk_table(ev) -> Table | None:
    """Per school: shrunken effect, its interval (the posterior's equal-tailed quantiles) and the
    risk of harm (posterior P(effect < 0), from the same posterior; P(effect > 0) for an outcome
    better lower). A subject with more than
    :data:`RISK_ROWS` schools shows its :data:`RISK_TOP` of highest P(<0), highest first, and
    the caption says so (the terminal is a summary; the files hold every school)."""
    import numpy as np
    import pandas as pd

    from ..findings import lower_is_better

    s = ev.schools
    if not len(s) or "prob_negative" not in s.columns:
        return None
    lower = lower_is_better(ev)
    if lower:  # the risk of harm is the chance of an effect above zero
        s = s.assign(**{c: 1.0 - s[c] for c in ("prob_negative", "prob_negative_program") if c in s.columns})
    s = s[np.isfinite(s["shrunk_es"].to_numpy(dtype=float)) & np.isfinite(s["effect_size"].to_numpy(dtype=float))]
    if not len(s):  # (a single PL school is not shrunk)
        return None
    sizes = s.groupby("subject", sort=False)["school"].transform("size")
    big = sizes > RISK_ROWS
    schools_of = s[big].groupby("subject", sort=False).size().to_dict()  # the subjects cut short
    if schools_of:
        order = {k: i for i, k in enumerate(pd.unique(s["subject"]))}
        top = (s[big].sort_values("prob_negative", ascending=False, kind="stable")
               .groupby("subject", sort=False).head(RISK_TOP))
        s = pd.concat([s[~big], top]).sort_values("subject", key=lambda c: c.map(order), kind="stable")
    prog = "prob_negative_program" in s.columns and s["prob_negative_program"].notna().any()
    lvl = f"{float(ev.options.get('level', 0.95)):.0%}"
    sign = ">" if lower else "<"
    cols = (["subject", "school", "effect size", "shrunken", f"shrunken {lvl} interval", f"P({sign}0)"]
            + ([f"P(program {sign}0)", "p vs placebo (adj.)"] if prog else []))
    t = table(f"Risk of harm by school: posterior probability that the effect is {'above' if lower else 'below'} zero"
              + (f" ({escape(str(ev.columns.outcome))}: lower is better)" if lower else ""), cols,
              left=("subject", "school"))
    if schools_of:
        t.caption = (f"Where a subject has more than {RISK_ROWS} PL schools, its {RISK_TOP} with the highest P({sign}0) "
                     f"({', '.join(f'{escape(str(k))}: {RISK_TOP} of {v:,}' for k, v in schools_of.items())}); "
                     "every school is in school_effects.csv.")
        t.caption_justify = "left"
    for _, r in s.iterrows():
        row = [escape(str(r["subject"])), escape(str(r["school"])), f"{r['effect_size']:+.3f}", f"{r['shrunk_es']:+.3f}",
               f"{r['shrunk_es_ci_low']:+.3f} to {r['shrunk_es_ci_high']:+.3f}", f"{r['prob_negative']:.2f}"]
        if prog:
            row += [f"{r['prob_negative_program']:.2f}" if pd.notna(r["prob_negative_program"]) else "—",
                    f"{r['p_calibrated_adjusted']:.3f}" if pd.notna(r["p_calibrated_adjusted"]) else "—"]
        t.add_row(*row)
    return t


_ANALYSIS_MODULES = collections.defaultdict(
    lambda: ("scipy.stats",),
    {m: ("scipy.stats", "statsmodels.genmod.generalized_linear_model")  # the propensity score's model
     for m in ("propensity", "weighting", "subclass", "optimal", "full")},
)
"""The libraries the analysis of a design (``rct``) or matching method imports first, by
:func:`_import_beside` while the file is read and checked (which need none of them)."""


_FORMULA_ENGINES = ("formulaic",)
"""statsmodels' optional formula engine that its models' module imports if it can (formulaic and
narwhals: 64 of the 88 CPU-ms of statsmodels' GLM beside scipy.stats) while pleval fits no
formula: :func:`_import_beside` imports statsmodels as if it were not installed (its formulas
then take patsy, which statsmodels also imports, as where formulaic is not installed)."""


def _left_out() -> tuple[str, ...]:
    """The :data:`_FORMULA_ENGINES` not yet imported, made unimportable (``None`` in
    ``sys.modules``) until the caller lets them go; none where statsmodels is told to use one
    (``SM_FORMULA_ENGINE``) or patsy, its other engine, is not installed."""
    if os.environ.get("SM_FORMULA_ENGINE") or importlib.util.find_spec("patsy") is None:
        return ()
    left = tuple(name for name in _FORMULA_ENGINES if name not in sys.modules)
    for name in left:
        sys.modules[name] = None
    return left


_NUMPY_LAZY = ("f2py", "testing")
"""numpy's submodules loaded when first read (numpy 2: ``__getattr__``) that scipy.stats' import
reads without using them: scipy's array-api-compat layer copies every name of numpy's namespace,
importing numpy.f2py (with charset_normalizer) and numpy.testing, 0.065 s of scipy.stats' 0.49
at 1M rows and 0 for pleval, which uses neither. :func:`_import_beside` gives numpy empty modules
of those names for the while (:func:`_stand_ins`)."""


def _stand_ins() -> dict:
    """Empty modules set on numpy as its :data:`_NUMPY_LAZY` submodules not yet loaded, for the
    caller to take off again (numpy then loads the real ones when they are read or imported; an
    import meanwhile replaces its stand-in)."""
    import numpy

    made = {name: types.ModuleType(f"numpy.{name}") for name in _NUMPY_LAZY
            if f"numpy.{name}" not in sys.modules and name not in vars(numpy)}
    for name, module in made.items():
        setattr(numpy, name, module)
    return made


def _import_beside(names: tuple[str, ...]) -> threading.Thread:
    """A thread importing the modules ``names`` while this one reads and checks the file: the
    reading (Arrow's decoding, the hashing of the file) and much of the checks (numpy) run without
    the interpreter's lock, the imports (scipy.stats ~0.5 s) mostly with it, so each proceeds
    while the other waits. Third-party libraries only, which import none of pleval's modules:
    no module is imported by both threads but pandas, which the first to reach it imports whole
    while the other waits. An import that fails is left to fail again where the analysis imports
    it. Joined before the analysis (before any worker is forked)."""
    def run():
        import numpy

        left_out, stand_ins = _left_out(), _stand_ins()
        try:
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:  # raised again where the analysis imports it
                    return
        finally:
            for name in left_out:  # (importable again)
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
            for name, module in stand_ins.items():  # (numpy's own again)
                if vars(numpy).get(name) is module:
                    delattr(numpy, name)

    thread = threading.Thread(target=run, name="pleval-imports")
    thread.start()
    return thread


class _Steps:
    """Progress display on stderr: a spinner with the current step and elapsed time, and a bar
    for steps that report counts (randomization tests)."""

    def __init__(self, enabled: bool):
        self.bar = self.task = self.message = None
        if not enabled:  # the step is only kept (for an out-of-memory message): rich.progress is not loaded
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console.get(), transient=True,
        )

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        self.message = None
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc) if self.bar is not None else None

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        if self.bar is None:
            self.message = message
            return
        if message != self.message:  # a new step: a fresh line (spinner, elapsed time from zero)
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(message, total=total)
            self.message = message
        if done is not None:
            self.bar.update(self.task, completed=done, total=total)


@app.command(
    "estimate",
    short_help="The whole evaluation: effects, schools, plots and a report.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@handle_errors
@reading_options
def estimate(
    ctx: typer.Context,
    file: Optional[Path] = typer.Argument(None, help="Student file (CSV, TSV, Excel, Parquet, Stata or SPSS), one row per student × subject. May come from --config."),
    design: Optional[str] = typer.Option(None, "--design", help="matched (default) or rct."),
    method: Optional[str] = typer.Option(None, "--method", help="matched: propensity (default), mahalanobis, vcg, weighting, optimal, full, subclass, cem, exact, ebal; rct: ols (default), cluster_means, mixedlm, random_blocks."),
    only_subject: OnlySubject = None,
    pool: Optional[str] = typer.Option(None, "--pool", help="Comparison pool given apart from FILE, which then holds PL students only: a folder of Parquet files, a .parquet file or a DuckDB database file (or, with --engine spark, a Spark table or path). Matched out of core (docs/scale.md)."),
    pool_table: Optional[str] = typer.Option(None, "--pool-table", help="The table of a DuckDB --pool file (default: its only table)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="With --pool: duckdb (default: out of core), spark (the active Spark session, e.g. under spark-submit) or memory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Outputs folder (default: results)."),
    force: Force = False,
    svg: Optional[bool] = typer.Option(None, "--svg/--no-svg", help="Write every figure as SVG too, beside its PNG (drawn a second time) (default: PNG only)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of options (e.g. a previous run.toml); flags override it."),
    fmt: str = typer.Option("text", "--format", help="Terminal output: text (rich tables) or json."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random step (default: 0)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only where the outputs are (or the JSON)."),
    debug: Debug = False,
    outcome: Outcome = None,
    treatment: Treatment = None,
    treated_label: TreatedLabel = None,
    pretest: Pretest = None,
    covariates: Covariates = None,
    school: School = None,
    block: Block = None,
    student_id: StudentId = None,
    grade: Grade = None,
    subject: Subject = None,
    weight: Weight = None,
    takeup: Takeup = None,
    sd: Optional[str] = typer.Option(None, "--sd", help="Effect-size SD: pooled (default), comparison, or a norm SD (number).", rich_help_panel="Options"),
    level: Optional[float] = typer.Option(None, "--level", help="Confidence level (default: 0.95).", rich_help_panel="Options"),
    baseline_percentile: Optional[float] = typer.Option(None, "--baseline-percentile", help="Baseline percentile of percentile points (default: 50).", rich_help_panel="Options"),
    meta_method: Optional[str] = typer.Option(None, "--meta-method", help="tau² estimator of the school meta-analysis: REML (default), ML, DL, PM, EB, HE, SJ, FE (metafor's names).", rich_help_panel="Options"),
    hartung_knapp: Optional[bool] = typer.Option(None, "--hartung-knapp/--no-hartung-knapp", help="Hartung-Knapp SE and t(k-1) reference for the pooled school effect (default: on).", rich_help_panel="Options"),
    adjust: Optional[str] = typer.Option(None, "--adjust", help="Multiplicity adjustment of school p-values: bh (default), holm, bonferroni.", rich_help_panel="Options"),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Significance level of the school counts (default: 0.05).", rich_help_panel="Options"),
    placebo: Optional[bool] = typer.Option(None, "--placebo/--no-placebo", help="Estimate placebo schools (default: on).", rich_help_panel="Options"),
    placebo_outcome: Optional[str] = typer.Option(None, "--placebo-outcome", help="Matched: a pre-program score (e.g. the year before the pretest) analysed as a placebo outcome whose effect should be zero.", rich_help_panel="Options"),
    rosenbaum_direction: Optional[str] = typer.Option(None, "--rosenbaum-direction", help="Matched: the direction of the Rosenbaum test fixed in advance, one-sided at --alpha: greater or less, the sign of the effect on the outcome's scale (less = a fall, even for a --lower-is-better outcome) (default: the estimate's sign, tested two-sided).", rich_help_panel="Options"),
    n_placebo: Optional[int] = typer.Option(None, "--n-placebo", help="Number of placebo schools (0 = every comparison school, up to --placebo-cap) (default: 0).", rich_help_panel="Options"),
    placebo_cap: Optional[int] = typer.Option(None, "--placebo-cap", help="Matched: at most this many placebo schools by default, the first of the round order (0 = every comparison school) (default: 300).", rich_help_panel="Options"),
    rct_design: Optional[str] = typer.Option(None, "--rct-design", help="rct: cluster (default), blocked or individual.", rich_help_panel="Options"),
    vcov: Optional[str] = typer.Option(None, "--vcov", help="Covariance of the overall effect: CR2 (default by school), CR1, CR0, HC2 (individual trials' default), HC1, HC0, classical.", rich_help_panel="Options"),
    cluster_df: Optional[str] = typer.Option(None, "--cluster-df", help="CR1/CR0 convention: G-1 (Stata; default) or G-p (metafor's robust(): factor G/(G-p), G-p df).", rich_help_panel="Options"),
    cr2: Optional[str] = typer.Option(None, "--cr2", help="Weighted CR2 form of the overall matched effect (its weights vary within school): transformed (default) or clubsandwich.", rich_help_panel="Options"),
    school_cr2: Optional[str] = typer.Option(None, "--school-cr2", help="Weighted CR2 form of the school effects and placebo schools: clubsandwich (default; equal error variances of the distinct students) or transformed.", rich_help_panel="Options"),
    permutations: Optional[int] = typer.Option(None, "--permutations", help="rct: randomization-test draws (0 = none) (default: 0).", rich_help_panel="Options"),
    compliance: Optional[bool] = typer.Option(None, "--compliance/--no-compliance", help="rct: estimate the CACE when a take-up column exists (default: on).", rich_help_panel="Options"),
    subgroups: Optional[str] = typer.Option(None, "--subgroups", help="Effects for each level of these columns, comma-separated; pretest_band = baseline achievement bands (e.g. pretest_band,frl,ell,sped) (default: none).", rich_help_panel="Options"),
    moderators: Optional[str] = typer.Option(None, "--moderators", help="School-level columns to explain differences between school effects (meta-regression, Knapp-Hartung; categorical ones dummy-coded), comma-separated (default: none).", rich_help_panel="Options"),
    outcomes: Optional[str] = typer.Option(None, "--outcomes", help="Further outcomes beside --outcome, comma-separated, each on its own scale: scores in points, SD and percentile points; yes/no outcomes (0/1, yes/no) in percentage points with the Cox index (e.g. posttest,proficient,days_absent) (default: none).", rich_help_panel="Options"),
    domains: Optional[str] = typer.Option(None, "--domains", help="Outcome domains for the within-domain multiplicity correction, OUTCOME=DOMAIN pairs, e.g. days_absent=attendance (default: every outcome in achievement).", rich_help_panel="Options"),
    binary_method: Optional[str] = typer.Option(None, "--binary-method", help="Yes/no outcomes: logit (default) or lpm (linear-probability model).", rich_help_panel="Options"),
    lower_is_better: Optional[str] = typer.Option(None, "--lower-is-better", help="Outcomes whose favourable direction is down, e.g. days_absent (default: none).", rich_help_panel="Options"),
    bands: Optional[str] = typer.Option(None, "--bands", help="Pretest bands: cut points in percent of the pretest's rank within grade × subject, e.g. 25,50,75 (default: thirds).", rich_help_panel="Options"),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes: 2 runs the placebo rounds beside the main analysis and draws the figures in two (the same results); 1 = one process (default: 2, or 1 with one core).", rich_help_panel="Options"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Any other option as KEY=VALUE (repeatable), e.g. matching's caliper=0.1, k=3, replace=false.", rich_help_panel="Options"),
    *,
    reading: dict,
) -> None:
    """Evaluate a PL program: design diagnostics, overall effect by subject, school effects, plots and a self-contained HTML report, written to an outputs folder.

    Column options default to the names in sample_data/ (roles absent from the file are left out). Every option can also come from --config FILE.toml; flags given here override it, and OUT/run.toml records the resolved configuration so the run can be repeated exactly (docs/estimate.md).
    """
    _unknown_options(list(ctx.args), ctx)
    if fmt not in ("text", "json"):
        raise DataError(f"--format must be text or json; got {fmt!r}")
    cfg = _load_config(config) if config else {}
    reading = {**cfg.get("read", {}), **{k: v for k, v in reading.items() if v is not None}}  # flags over the config's
    src = file if file is not None else cfg.get("file")
    if src is None:
        raise DataError("give the student FILE (or a --config with file = ...)")
    design_ = design or cfg.get("design") or "matched"
    if design_ not in ("matched", "rct"):
        raise DataError(f"--design must be matched or rct; got {design_!r}")
    method_ = method or cfg.get("method")
    from .. import percentiles
    from .._workers import collector_frozen, collector_paused, limited
    from ..checks import check, columns_needed
    from ..errors import PlevalWarning
    from ..outputs import check_outputs
    from ..readers import check_path
    from ..report import EarlyFigures  # light: the writers are loaded when needed

    subject_ = only_subject if only_subject is not None else cfg.get("subject")
    if subject_ is not None and subject is not None and subject.strip().lower() in NONE_WORDS:
        raise DataError(f"--only-subject {subject_} needs the subject column; --subject {subject} says there is none")
    seed_ = seed if seed is not None else cfg.get("seed", 0)
    out_ = out if out is not None else Path(cfg.get("out", "results"))

    options: dict[str, Any] = {**cfg.get("options", {}), **cfg.get("match", {})}
    flag_opts = dict(
        sd=sd, level=level, baseline_percentile=baseline_percentile, meta_method=meta_method,
        hartung_knapp=hartung_knapp, adjust=adjust, alpha=alpha, placebo=placebo, n_placebo=n_placebo,
        placebo_cap=placebo_cap,
        placebo_outcome=placebo_outcome, rosenbaum_direction=rosenbaum_direction,
        rct_design=rct_design, vcov=vcov, cluster_df=cluster_df, cr2=cr2, school_cr2=school_cr2, permutations=permutations, compliance=compliance,
        subgroups=subgroups, bands=bands, moderators=moderators, outcomes=outcomes, domains=domains,
        binary_method=binary_method, lower_is_better=lower_is_better, workers=workers,
    )
    if sd is not None:
        flag_opts["sd"] = sd if sd in ("pooled", "comparison") else parse_value(sd)
    options.update({k: v for k, v in flag_opts.items() if v is not None})
    for item in set_ or []:
        if "=" not in item:
            raise DataError(f"--set expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        v = v.strip()  # True/FALSE as true/false (TOML reads only the lower case; "False" was text, and truthy)
        options[k.strip()] = v.lower() == "true" if v.lower() in ("true", "false") else parse_value(v)
    if design is not None and cfg.get("design") not in (None, design_):
        # A config from the other design: leave out its design-specific options (say so).
        from ..estimate import MATCHED_DEFAULTS, RCT_DEFAULTS

        other = RCT_DEFAULTS if design_ == "matched" else {**MATCHED_DEFAULTS, **cfg.get("match", {})}
        dropped = [k for k in other if k in options and flag_opts.get(k) is None]
        for k in dropped:
            options.pop(k)
        if dropped:
            err_console.print(f"[yellow]note:[/] --design {design_}: ignoring the config's {', '.join(dropped)}",
                              highlight=False)
    t0 = time.perf_counter()
    flags = dict(outcome=outcome, treatment=treatment, treated_label=treated_label, pretest=pretest,
                 covariates=covariates, school=school, block=block, student_id=student_id, grade=grade,
                 subject=subject, weight=weight, takeup=takeup)
    check_outputs(out_, force=force, input_path=str(src))  # before any computation
    cfg_pool = cfg.get("pool", {})
    if pool is None and cfg_pool:
        pool, pool_table, engine = cfg_pool["path"], pool_table or cfg_pool.get("table"), engine or cfg_pool.get("engine")
    if (pool_table or engine) and pool is None:
        raise DataError("--pool-table and --engine go with --pool (a comparison pool given apart)")
    if pool is not None and design_ != "matched":
        raise DataError("--pool gives the comparison students of a matched design; it does not go with --design rct")
    svg_ = svg if svg is not None else bool(cfg.get("svg", False))
    early = EarlyFigures(svg=svg_, artist_docs=False)  # drawn while the placebo worker runs (estimate's while_waiting)
    df = report = None
    # The garbage collector's passes leave alone the objects the run keeps to its end: the modules imported so far,
    # then the analysis' libraries, the data and its checks, which are made with the collector paused (no garbage
    # in cycles to find among them), then the evaluation (pleval._workers.collector_frozen, collector_paused).
    with _Steps(enabled=not quiet and fmt == "text" and err_console.is_terminal) as steps, \
            _out_of_memory(steps, lambda: (df, report)), collector_frozen():
        steps("reading and checking the data")
        given = _given(cfg.get("columns", {}), flags)
        # the columns of a role or named by an option (Parquet), the others never read: docs/scale.md
        needed = None if pool is not None else partial(columns_needed, given=given, design=design_, options=options)
        with collector_paused() if pool is None else contextlib.nullcontext():  # a pool's estimate collects
            # from the read on, not before: both threads' imports hold the interpreter's lock, so a thread started
            # earlier slows the command's own (the read began 0.25 s later), while Arrow's reading runs without it
            check_path(src)  # a wrong path fails at once, not after the thread's imports (0.7 s)
            loading = _import_beside(_ANALYSIS_MODULES["rct" if design_ == "rct" else method_ or "propensity"])
            df = read_students(src, reading, given, design=design_, columns=needed)
            if pool is not None:
                from ..pool import estimate_pool

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", PlevalWarning)
                    ev = estimate_pool(df, pool, given, method_, engine=engine or "duckdb",
                                       table=pool_table, subject=subject_, seed=seed_, progress=steps, **options)
                if fmt == "text" and not quiet and not debug:
                    print_checks(ev.checks)
            # the checks' threads: at most --workers (one with --workers 1), as the analysis'
            with limited(options["workers"]) if options.get("workers") else contextlib.nullcontext():
                # the estimate validates once; its propensity match's student ids coded from the validation on
                # (0.08 CPU-s at 1M rows without the interpreter's lock; the placebo worker is forked once they are)
                ahead = design_ == "matched" and method_ in (None, "propensity") and options.get("workers") != 1
                report = None if pool is not None else check(df, given=given, design=design_, keep_validated=True,
                                                              _ids_ahead=ahead)
            if report is not None and fmt == "text" and not quiet and not debug:
                print_checks(report)  # errors: every line, exit 2; warnings: at the top
            elif report is not None:
                report.raise_errors()
            loading.join()
        from ..estimate import estimate as run_estimate, to_json_dict

        with collector_frozen():  # (a pool's data; save() freezes the evaluation)
            if report is not None:
                # The outputs' modules (matplotlib, reportlab: 0.4 s) are imported after the placebo worker is forked
                # (it needs none of them): by `early` while this process waits for the worker, or by save_report.
                with warnings.catch_warnings():  # warnings: shown above (or in the JSON)
                    warnings.simplefilter("ignore", PlevalWarning)
                    try:
                        ev = run_estimate(df, report.columns, design=design_, method=method_, subject=subject_,
                                          seed=seed_, progress=steps, checked=report, while_waiting=early, **options)
                    except BaseException:
                        early.close()  # its figures' process, if any
                        raise
            steps("writing plots, tables and the report")
            from ..report import save as save_report

            folder = save_report(ev, out_, force=force, command=_command(ctx), input_path=str(src), svg=svg_,
                                 early=early)
    elapsed = time.perf_counter() - t0
    report = folder / "report.html"
    if fmt == "json":
        payload = to_json_dict(ev)
        payload["outputs"] = {"folder": str(folder), "report": str(report), "seconds": round(elapsed, 2)}
        echo(json.dumps(payload, indent=2))
        return
    if quiet:
        echo(str(report))
        return
    console.print(_overall_table(ev))
    for s_ in ev.subjects:
        console.print(escape(ev.sentence(s_)), highlight=False)
    for table in (_verdict_table(ev), _rating_table(ev), _outcomes_table(ev), _subgroup_table(ev), _schools_table(ev), _one_school_table(ev), _moderator_table(ev), _risk_table(ev)):
        if table is not None:
            console.print(table)
    for n in ev.notes:
        console.print(f"[dim]note:[/] {escape(n)}", highlight=False)
    for w in ev.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    console.print(escape(percentiles.NOTE), highlight=False)
    console.print(f"Outputs in {escape(str(folder))}/ ({elapsed:.1f} s). Report: [bold]{escape(str(report))}[/]",
                  highlight=False)


@contextlib.contextmanager
def _out_of_memory(steps: "_Steps", state: Callable):
    """A ``MemoryError`` as one plain error (exit code 2): the step it happened in, the rows and
    schools of the file, and the options that need less memory (docs/scale.md)."""
    try:
        yield
    except MemoryError as exc:
        df, report = state()
        size = ""
        if df is not None:
            school = report.columns.school if report is not None else None
            size = f"{len(df):,} rows"
            try:  # the frames of the failed step are freed by now
                size += f", {df[school].nunique():,} schools" if school in df.columns else ""
            except MemoryError:
                pass
            size = f" ({size})"
        step = steps.message or "starting"
        pool = "the comparison students as a pool matched out of core (--pool, DuckDB engine; docs/scale.md)"
        less = (f"fewer placebo schools (--placebo-cap N, e.g. --placebo-cap 100, or --no-placebo), {pool}"
                if step == "placebo schools" else
                f"a smaller matched sample (nearest-neighbour matching: --set tie_cap=10 keeps at most 10 comparisons "
                f"per PL student, --set ties=false exactly k), {pool}, fewer placebo schools for the later steps "
                "(--placebo-cap N)")
        raise MemoryError(f"out of memory in the step '{step}'{size}. Ask for less: {less}, or a machine with more "
                          "memory") from exc


def _command(ctx: typer.Context) -> str:
    import shlex

    if sys.argv and Path(sys.argv[0]).name in ("pleval", "cli.py"):
        return " ".join(["pleval", *map(shlex.quote, sys.argv[1:])])
    return f"{ctx.command_path} (arguments not recorded: not run from the command line)"
