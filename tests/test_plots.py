"""pleval.plots: every figure is a Figure, saves to a valid PNG, never touches pyplot, and is
readable (no overlapping school labels at 60 schools; the marks sit where the numbers say)."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats

from pleval import percentiles, plots
from pleval.errors import DataError, PlevalError


def _schools(k: int, seed: int = 1) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.04, 0.15, k)
    est = rng.normal(0.08, 0.1, k) + rng.normal(0, se)
    p = 2 * stats.norm.sf(np.abs(est / se))
    tau2, mu = 0.01, 0.08
    b = tau2 / (tau2 + se**2)
    sh = mu + b * (est - mu)
    sd = np.sqrt(b) * se
    names = [f"School {i:02d} — a long campus name" if i % 5 == 0 else f"S{i:02d}" for i in range(k)]
    df = pd.DataFrame(
        {"school": names, "estimate": est, "se": se, "shrunk": sh, "shrunk_ci_low": sh - 1.96 * sd,
         "shrunk_ci_high": sh + 1.96 * sd, "pvalue_adj": np.minimum(1, p * 3)}
    )
    pooled = {"estimate": mu, "ci_low": 0.05, "ci_high": 0.11, "pi_low": -0.12, "pi_high": 0.28, "method": "REML", "tau": 0.1}
    return df, pooled


def _png_ok(fig: Figure, min_bytes: int = 8_000) -> Image.Image:
    data = plots.to_png(fig, dpi=80)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes
    img = Image.open(io.BytesIO(data))
    img.verify()
    return Image.open(io.BytesIO(data))


def _row_labels(ax) -> list:
    """A forest plot's row labels: the right-aligned texts left of the plot (bottom row first)."""
    return [t for t in ax.texts if t.get_horizontalalignment() == "right"]


def _overlaps(labels) -> int:
    boxes = [lab.get_window_extent() for lab in labels if lab.get_text()]
    boxes.sort(key=lambda b: b.y0)
    return sum(1 for a, b in zip(boxes, boxes[1:]) if b.y0 < a.y1 - 0.5)


@pytest.fixture(autouse=True)
def _no_pyplot():
    """No plot function may register a pyplot figure (that is what leaks memory and shows twice)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


@pytest.mark.parametrize("k", [3, 60])
def test_forest_readable_and_sized_by_rows(k):
    df, pooled = _schools(k)
    placebo = np.random.default_rng(2).normal(0, 0.08, 100)
    fig = plots.forest(df, pooled=pooled, placebo=placebo, sd=15.0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = _row_labels(ax)
    assert len(labels) == k + 2  # schools, placebo row, pooled row
    assert _overlaps(labels) == 0
    assert fig.get_size_inches()[1] >= plots.ROW_INCH * k
    img = _png_ok(fig)
    assert img.size[1] > img.size[0] or k < 20  # tall for many schools


def test_forest_height_grows_with_rows():
    h = [plots.forest(_schools(k)[0]).get_size_inches()[1] for k in (10, 60)]
    assert h[1] - h[0] == pytest.approx(50 * plots.ROW_INCH)


def test_forest_significance_colours_follow_adjusted_p():
    df, pooled = _schools(40, seed=5)
    df.loc[:4, "pvalue_adj"] = 0.001  # force a few significant schools
    fig = plots.forest(df, pooled=pooled)
    segs = [c for c in fig.axes[0].collections if hasattr(c, "get_segments") and len(c.get_segments()) == len(df)]
    colours = segs[0].get_colors()
    expected_pos = ((df["pvalue_adj"] < 0.05) & (df["estimate"] > 0)).sum()
    expected_neg = ((df["pvalue_adj"] < 0.05) & (df["estimate"] < 0)).sum()
    from matplotlib.colors import to_rgba

    n_pos = sum(np.allclose(c, to_rgba(plots.POSITIVE)) for c in colours)
    n_neg = sum(np.allclose(c, to_rgba(plots.NEGATIVE)) for c in colours)
    assert (n_pos, n_neg) == (expected_pos, expected_neg)
    assert n_pos >= 1


def test_forest_ci_from_se_and_rows_sorted():
    df = pd.DataFrame({"school": ["a", "b", "c"], "estimate": [0.3, -0.1, 0.1], "se": [0.1, 0.1, 0.1]})
    fig = plots.forest(df)
    ax = fig.axes[0]
    texts = [t.get_text() for t in _row_labels(ax)]
    assert texts == ["b", "c", "a"]  # ascending from the bottom: largest on top
    segs = ax.collections[0].get_segments()
    lo = [s[0][0] for s in segs]
    assert lo == pytest.approx([-0.1 - 1.959964 * 0.1, 0.1 - 1.959964 * 0.1, 0.3 - 1.959964 * 0.1], abs=1e-5)


def test_percentile_axis_matches_conversion():
    g = np.linspace(-1.5, 1.5, 13)
    for p in (10.0, 50.0, 75.0):
        fwd, inv = plots._safe_pp(p)
        assert fwd(g) == pytest.approx(percentiles.to_percentile_points(g, p), abs=1e-10)
        assert inv(fwd(g)) == pytest.approx(g, abs=1e-9)
        assert inv(np.array([3.0])) == pytest.approx(percentiles.from_percentile_points(3.0, p), abs=1e-10)
    fwd, inv = plots._safe_pp(50.0)
    # Axis limits beyond the percentile range must not raise.
    assert np.isfinite(inv(np.array([-80.0, 80.0]))).all()


def test_love_plot_thresholds_and_order():
    bal = pd.DataFrame({"variable": ["a", "b", "c"], "smd_before": [0.4, -0.1, 0.02], "smd_after": [0.03, 0.02, 0.01]})
    fig = plots.love_plot(bal)
    ax = fig.axes[0]
    vlines = {round(float(l.get_xdata()[0]), 6) for l in ax.lines}
    assert {0.05, 0.25} <= vlines
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "b", "a"]  # worst on top
    assert "0 with |SMD| > 0.25 after matching" in ax.get_title(loc="left")
    _png_ok(fig, 5_000)
    # Before-only (an RCT's baseline table) works too.
    fig2 = plots.love_plot(bal.drop(columns="smd_after"))
    assert "1 with |SMD| > 0.25 at baseline" in fig2.axes[0].get_title(loc="left")


def test_propensity_overlap_panels_and_densities():
    rng = np.random.default_rng(0)
    ps = np.r_[rng.beta(3, 5, 200), rng.beta(2, 8, 2000)]
    t = np.r_[np.ones(200), np.zeros(2000)]
    w = np.r_[np.ones(200), rng.binomial(1, 0.1, 2000)]
    fig = plots.propensity_overlap(ps, t, weights=w)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    from matplotlib.patches import StepPatch

    steps = [p.get_data() for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == 2
    # Each group's histogram is a density: the positive (treated) and negative (comparison) areas are 1.
    areas = [(d.values * np.diff(d.edges)).sum() for d in steps]
    assert areas == [pytest.approx(1.0), pytest.approx(-1.0)]
    hist, _ = np.histogram(ps[t == 1], bins=steps[0].edges, density=True)
    assert steps[0].values == pytest.approx(hist)
    _png_ok(fig)
    assert len(plots.propensity_overlap(ps, t, logit=True).axes) == 1
    with pytest.raises(DataError, match="differ in length"):
        plots.propensity_overlap(ps, t[:-1])


def test_propensity_overlap_bins_as_the_edges_give_them():
    """The equal-width bins counted in one pass hold the scores the edges array puts in them
    (np.histogram with the edges, which sorts the scores), scores on the edges included, both
    panels and both groups; the subject's rows give the same figure whether together or mixed
    with another subject's."""
    from matplotlib.patches import StepPatch

    rng = np.random.default_rng(3)
    ps = np.round(np.r_[rng.beta(3, 5, 300), rng.beta(2, 8, 3000)], 2)  # many scores on the 40 bins' edges
    ps[[5, 400]] = np.nan
    t = np.r_[np.ones(300, dtype=int), np.zeros(3000, dtype=int)]
    w = np.r_[np.ones(300), rng.choice([0.0, 0.25, 0.5, 1.0, np.nan], 3000)]
    fig = plots.propensity_overlap(ps, t, weights=w)
    ok = np.isfinite(ps)
    edges = np.linspace(ps[ok].min(), ps[ok].max(), 41)
    ww = np.nan_to_num(w)
    for ax, weighted in zip(fig.axes, (False, True)):
        steps = [p.get_data() for p in ax.patches if isinstance(p, StepPatch)]
        for d, grp, sign in zip(steps, (t == 1, t == 0), (1, -1)):
            m = ok & grp & ((ww > 0) if weighted else True)
            want, _ = np.histogram(ps[m], bins=edges, weights=ww[m] if weighted else np.ones(m.sum()), density=True)
            np.testing.assert_allclose(sign * d.values, want, rtol=1e-13, atol=0)
            assert (d.values != 0).tolist() == (want != 0).tolist()  # the same bins hold scores
            np.testing.assert_array_equal(d.edges, edges)

    class Ev:  # an evaluation's propensity table: two subjects, together, then mixed
        propensity = pd.DataFrame({"subject": pd.array(["math"] * 3300 + ["reading"] * 3300, dtype="str"),
                                   "score": np.r_[ps, rng.beta(5, 5, 3300)], "treated": np.r_[t, t],
                                   "weight": np.r_[w, np.ones(3300)]})

    together = plots.to_png(plots.evaluation_overlap(Ev, "math"), dpi=60)
    Ev.propensity = Ev.propensity.iloc[np.argsort(np.r_[np.arange(3300) * 2, np.arange(3300) * 2 + 1], kind="stable")]
    assert (Ev.propensity["subject"].iloc[:2] != "math").any()
    assert plots.to_png(plots.evaluation_overlap(Ev, "math"), dpi=60) == together
    with pytest.raises(PlevalError, match="no propensity scores"):
        plots.evaluation_overlap(Ev, "science")


def test_percentile_chart_marks_the_estimate():
    fig = plots.percentile_chart(0.08, (0.03, 0.13))
    ax = fig.axes[0]
    pts = [c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 1]
    assert pts and np.allclose(pts[-1][0], [0.08, percentiles.to_percentile_points(0.08)])
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "50th percentile" in texts and "53rd" in texts
    assert "95% confidence interval" in [t.get_text() for t in ax.get_legend().get_texts()]
    _png_ok(fig)
    legend = plots.percentile_chart(0.08, (0.04, 0.12), level=0.9).axes[0].get_legend()
    assert "90% confidence interval" in [t.get_text() for t in legend.get_texts()]  # (it said 95% at any level)


def test_effect_distribution_and_repr_png():
    df, pooled = _schools(30)
    fig = plots.effect_distribution(df["estimate"], shrunk=df["shrunk"], mu=0.08, tau=0.1, placebo=np.zeros(5) + 0.01)
    assert isinstance(fig, plots.PlevalFigure)
    png = fig._repr_png_()
    assert png[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="no finite"):
        plots.effect_distribution([np.nan])


def test_missing_column_is_named():
    with pytest.raises(DataError, match="'se'"):
        plots.forest(pd.DataFrame({"school": ["a"], "estimate": [0.1]}))
    with pytest.raises(DataError, match="'smd_before'"):
        plots.love_plot(pd.DataFrame({"variable": ["a"]}))


def test_forest_takes_a_meta_analysis_object_as_pooled():
    """``pooled`` is duck-typed: pleval.heterogeneity's MetaAnalysis works as it is."""
    import pleval

    df, _ = _schools(12, seed=4)
    m = pleval.meta_analysis(df["estimate"], df["se"], "REML")
    fig = plots.forest(df, pooled=m)
    ax = fig.axes[0]
    diamond = [p for p in ax.patches if p.__class__.__name__ == "Polygon"][0]
    xs = diamond.get_xy()[:, 0]
    assert xs.min() == pytest.approx(m.ci_low) and xs.max() == pytest.approx(m.ci_high)
    assert f"τ (SD of true school effects) = {m.tau:.3f}" in fig.get_suptitle()
    assert "pooled (REML)" in [t.get_text() for t in _row_labels(ax)]


def test_figures_display_inline_in_ipython():
    """IPython's display formatter (what Jupyter uses) renders a returned figure as one PNG."""
    from IPython.core.formatters import DisplayFormatter

    df, pooled = _schools(5)
    data, _ = DisplayFormatter().format(plots.forest(df, pooled=pooled))
    assert data["image/png"][:4] == b"\x89PNG"


def test_forest_numbers_column_and_pooled_line_in_legend():
    df, pooled = _schools(5)
    fig = plots.forest(df, pooled=pooled, placebo=np.linspace(-0.1, 0.1, 21))
    ax = fig.axes[0]
    fig.canvas.draw()
    left = [t.get_text() for t in _row_labels(ax)]
    column = [t for t in ax.texts if t.get_family() == ["DejaVu Sans Mono"]]
    nums = [t.get_text() for t in column]
    assert [t.get_position()[1] for t in column][:-1] == pytest.approx([t.get_position()[1] for t in _row_labels(ax)])
    assert nums[-1] == "effect size [95% CI]"
    top = df.sort_values("estimate").iloc[-1]
    z = stats.norm.ppf(0.975)
    lo, hi = top["estimate"] - z * top["se"], top["estimate"] + z * top["se"]
    assert nums[left.index(top["school"])] == f"{top['estimate']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert nums[len(df)].strip() == f"[{np.quantile(np.linspace(-0.1, 0.1, 21), 0.025):+.2f}, +0.10]"  # placebo
    assert nums[len(df) + 1] == "+0.08 [+0.05, +0.11]"  # pooled
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "pooled effect (dotted line)" in legend


def test_forest_numbers_are_the_pixels_of_a_twin_axis_tick_labels():
    """The forest plot's number column is texts placed as a right-hand twin y axis (no tick
    marks, pad 4 points) would place its tick labels, without the twin axes and its ticks:
    the PNG is byte for byte the one drawn with such a twin axis."""
    df, pooled = _schools(12)
    fig = plots.forest(df, pooled=pooled, placebo=np.linspace(-0.1, 0.1, 21))
    ax = fig.axes[0]
    assert len(fig.axes) == 1  # no twin axes (the percentile-point axis is a child of the plot's)
    column = [t for t in ax.texts if t.get_family() == ["DejaVu Sans Mono"]]
    png = plots.to_png(fig, dpi=120)
    ticks, labels = [t.get_position()[1] for t in column], [t.get_text() for t in column]
    bold = [t.get_fontweight() for t in column]
    for t in column:
        t.remove()
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(ticks, labels, fontsize=column[0].get_fontsize(), family="DejaVu Sans Mono")
    for lab, weight in zip(right.get_yticklabels(), bold):
        lab.set_fontweight(weight)
    plots._no_ylabel(right)
    right.tick_params(axis="y", length=0, pad=plots._NUMBER_PAD)
    for side in right.spines:
        right.spines[side].set_visible(False)
    assert bold[-1] == "bold" and plots.to_png(fig, dpi=120) == png


def test_forest_row_labels_are_the_pixels_of_y_tick_labels():
    """The forest plot's row labels and their tick marks are texts and one line of markers
    placed as matplotlib's y ticks would draw them: the PNG (its layout included) is byte for
    byte the one drawn with y ticks at the rows, with the same labels, bold and italic ones too."""
    df, pooled = _schools(70)
    for dpi in (100, 200):
        pngs = []
        for as_ticks in (False, True):
            fig = plots.forest(df, pooled=pooled, placebo=np.linspace(-0.1, 0.1, 21), max_rows=60, sd=15.0)
            ax = fig.axes[0]
            rows = _row_labels(ax)
            assert len(rows) == 60 + 3 and not ax.get_yticks().size  # the schools, summary, placebo, pooled rows
            if as_ticks:
                marks = [line for line in ax.lines if line.get_marker() == matplotlib.lines.TICKLEFT]
                assert len(marks) == 1 and len(marks[0].get_ydata()) == len(rows)
                marks[0].remove()
                for t in rows:
                    t.remove()
                ax.set_yticks([t.get_position()[1] for t in rows], [t.get_text() for t in rows], fontsize=rows[0].get_fontsize())
                for lab, t in zip(ax.get_yticklabels(), rows):
                    lab.set(fontweight=t.get_fontweight(), fontstyle=t.get_fontstyle())
            pngs.append(plots.to_png(fig, dpi=dpi))
        assert {t.get_fontweight() for t in rows[-2:]} == {"bold"} and rows[30].get_fontstyle() == "italic"
        assert pngs[0] == pngs[1]


def _spines_in_layout(monkeypatch, fig, dpi):
    """The PNG and axes positions of ``fig`` drawn with every spine in the layout (as before)."""
    with monkeypatch.context() as m:
        m.setattr(plots, "_spines_within_labels", lambda fig: [])
        png = plots.to_png(fig, dpi=dpi)
    return png, np.array([ax.get_position().extents for ax in fig.axes])


@pytest.mark.parametrize("make", [
    lambda: plots.forest(_schools(12)[0], pooled=_schools(12)[1], placebo=np.linspace(-0.1, 0.1, 21), sd=15.0),
    lambda: plots.effect_distribution(_schools(30)[0]["estimate"], shrunk=_schools(30)[0]["shrunk"], mu=0.08, tau=0.1),
    lambda: plots.percentile_chart(0.2, (0.05, 0.35)),
    lambda: plots.love_plot(pd.DataFrame({"variable": ["a", "b"], "smd_before": [0.3, -0.1], "smd_after": [0.02, 0.04]})),
    lambda: plots.propensity_overlap(np.r_[np.linspace(0.2, 0.8, 50), np.linspace(0.05, 0.6, 200)],
                                     np.r_[np.ones(50), np.zeros(200)], weights=np.r_[np.ones(50), np.ones(200) * 0.5]),
    lambda: plots.mdes_curve(pd.DataFrame({"size": [10, 20, 40], "mdes": [0.5, 0.35, 0.25], "power": 0.8}), target=0.3),
])
def test_spines_left_out_of_the_layout_change_nothing(monkeypatch, make):
    """to_png leaves out of the layout and the tight box the spines whose tick marks have their
    labels beyond them: the same axes positions and the same PNG as with every spine measured;
    every text drawn (tick labels, titles, legends, the forest plot's rows and numbers) lies
    inside the PNG's box, and the row labels do not overlap. A spine whose tick marks have no
    labels beside them stays in the layout, and so does one whose figure has it taken out by hand."""
    fig = make()
    png = plots.to_png(fig, dpi=120)
    assert all(s.get_in_layout() for ax in fig.axes for s in ax.spines.values())  # restored
    positions = np.array([ax.get_position().extents for ax in fig.axes])
    before, at = _spines_in_layout(monkeypatch, make(), 120)
    assert png == before and np.array_equal(positions, at)
    with plots._drawn(fig, 120) as (canvas, content, box):
        renderer = canvas.get_renderer()
        inside = box.transformed(fig.dpi_scale_trans)
        ticks = {id(t) for tick in fig.findobj(matplotlib.axis.Tick) for t in (tick.label1, tick.label2)}
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text() and id(t) not in ticks]
        axes = [a for ax in fig.axes for a in (ax, *ax.child_axes)]
        drawn = [t.get_window_extent(renderer) for t in texts] + [  # the tick labels drawn (those in view)
            axis.get_tightbbox(renderer) for a in axes for axis in (a.xaxis, a.yaxis) if axis.get_visible()]
        drawn = [b for b in drawn if b is not None and b.width > 0]
        assert drawn and all(inside.x0 - 0.5 <= b.x0 and b.x1 <= inside.x1 + 0.5 and inside.y0 - 0.5 <= b.y0
                             and b.y1 <= inside.y1 + 0.5 for b in drawn)
        if fig.axes[0].texts:
            assert _overlaps(_row_labels(fig.axes[0])) == 0
    ax = plots.percentile_chart(0.2).axes[0]
    ax.tick_params(labelleft=False)  # marks without labels: their extent counts
    assert ax.spines["left"] not in plots._spines_within_labels(ax.figure)
    assert ax.spines["bottom"] in plots._spines_within_labels(ax.figure)
    ax.spines["bottom"].set_in_layout(False)
    assert ax.spines["bottom"] not in plots._spines_within_labels(ax.figure)
    plots.to_png(ax.figure, dpi=50)
    assert not ax.spines["bottom"].get_in_layout()  # left as it was


def test_distribution_legend_is_outside_the_plot():
    df, _ = _schools(30)
    fig = plots.effect_distribution(df["estimate"], shrunk=df["shrunk"], mu=0.08, tau=0.1)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1
    assert not fig.legends[0].get_window_extent().overlaps(ax.get_window_extent())
    assert "pooled mean μ" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_overlap_panels_share_a_scale_and_explain_the_band():
    rng = np.random.default_rng(1)
    ps = np.r_[rng.beta(3, 5, 200), rng.beta(2, 8, 2000)]
    t = np.r_[np.ones(200), np.zeros(2000)]
    fig = plots.propensity_overlap(ps, t, weights=np.r_[np.ones(200), rng.binomial(1, 0.1, 2000)])
    a, b = fig.axes[:2]
    assert a.get_ylim() == b.get_ylim()
    for ax in (a, b):
        assert any("shaded" in t.get_text() for t in ax.get_legend().get_texts())


def test_love_plot_draws_the_0_1_rule_of_thumb():
    bal = pd.DataFrame({"variable": ["a", "b"], "smd_before": [0.4, -0.1], "smd_after": [0.03, 0.02]})
    ax = plots.love_plot(bal).axes[0]
    assert 0.1 in {round(float(l.get_xdata()[0]), 6) for l in ax.lines}
    assert 0.1 not in {round(float(l.get_xdata()[0]), 6) for l in plots.love_plot(bal, reference=None).axes[0].lines}


def _svg_texts(svg: bytes) -> list[str]:
    """The text comments matplotlib writes before each text's glyphs (the strings drawn)."""
    import re

    return re.findall(r"<!-- (.*?) -->", svg.decode())


@pytest.mark.parametrize("make", [
    lambda: plots.forest(_schools(70)[0], pooled=_schools(70)[1], max_rows=plots.FOREST_MAX_ROWS,
                         placebo=np.linspace(-0.2, 0.2, 40)),
    lambda: plots.love_plot(pd.DataFrame({"variable": ["a", "b"], "smd_before": [0.3, -0.1], "smd_after": [0.02, 0.04]})),
    lambda: plots.percentile_chart(0.2, (0.05, 0.35)),
])
@pytest.mark.parametrize("res", [120, 200])
def test_png_and_svg_from_one_layout_equal_the_separate_saves(make, res):
    """to_png_svg draws the figure once: its PNG is matplotlib's own drawing of the figure
    (savefig without a box, as laid out; text unhinted at print resolution) cut to the tight
    box padded by 0.1 inch, pixel for pixel, white in the padding beyond the figure's edge, and
    as large as savefig's tight PNG to a pixel; its SVG draws the same strings as to_svg with
    the same page size to a pixel; to_png gives the same PNG; and the figure is left as it was
    (layout engine, dpi, canvas)."""
    fig = make()
    engine, dpi, canvas = type(fig.get_layout_engine()), fig.dpi, fig.canvas
    png, svg = plots.to_png_svg(fig, dpi=res)
    assert (type(fig.get_layout_engine()), fig.dpi, fig.canvas) == (engine, dpi, canvas)
    ref_svg = plots.to_svg(make())
    rc = {"text.hinting": "no_hinting"} if res >= plots.UNHINTED_DPI else {}
    tight = io.BytesIO()
    with matplotlib.rc_context(rc):
        make().savefig(tight, format="png", dpi=res, bbox_inches="tight", facecolor="white")
    im = Image.open(io.BytesIO(png))
    assert im.mode == "RGB" and im.info["dpi"] == pytest.approx((res, res), abs=0.5)
    a = np.asarray(im)
    assert a.shape[0] - Image.open(tight).size[1] in (0, 1, 2) and a.shape[1] - Image.open(tight).size[0] in (0, 1, 2)

    whole = make()  # the same figure drawn whole by savefig, at the same dpi
    whole.set_dpi(res)
    buf = io.BytesIO()
    with matplotlib.rc_context(rc):
        whole.draw_without_rendering()
        box = whole.get_tightbbox().padded(0.1)
        whole.savefig(buf, format="png", dpi=res, facecolor="white")
    full = np.asarray(Image.open(buf).convert("RGB"))
    x0, top = int(np.floor(box.x0 * res)), full.shape[0] - int(np.ceil(box.y1 * res))
    canvas_ = np.full((a.shape[0] + 2 * a.shape[0], a.shape[1] + 2 * a.shape[1], 3), 255, np.uint8)
    canvas_[a.shape[0] - top : a.shape[0] - top + full.shape[0], a.shape[1] - x0 : a.shape[1] - x0 + full.shape[1]] = full
    expected = canvas_[a.shape[0] : 2 * a.shape[0], a.shape[1] : 2 * a.shape[1]]
    assert (a == expected).all()
    assert svg.lstrip().startswith(b"<?xml") and _svg_texts(svg) == _svg_texts(ref_svg) and len(_svg_texts(svg)) > 5

    def size(s: bytes) -> tuple[float, float]:
        import re

        w, h = re.search(rb'width="([\d.]+)pt" height="([\d.]+)pt"', s).groups()
        return float(w), float(h)

    assert size(svg) == pytest.approx(size(ref_svg), abs=1.0)
    assert plots.to_png(fig, dpi=res) == png  # the figure saves as before afterwards


def test_text_is_unhinted_at_print_resolution_only():
    """From UNHINTED_DPI up, to_png draws text without hinting whatever the session's
    ``text.hinting`` (the same bytes under two settings), and leaves the setting as it was;
    below it, the session's setting is kept (the two settings give other pixels)."""
    def png(hinting, dpi):
        with matplotlib.rc_context({"text.hinting": hinting}):
            out = plots.to_png(plots.percentile_chart(0.2, (0.05, 0.35)), dpi=dpi)
            assert matplotlib.rcParams["text.hinting"] == hinting
        return out

    assert png("force_autohint", 200) == png("no_hinting", 200) == png("default", 200)
    assert png("force_autohint", 100) != png("no_hinting", 100)


def test_png_of_a_figure_drawing_past_its_edge_keeps_what_is_outside():
    """Text placed outside the figure is clipped in a plain drawing; the tight PNG still
    shows it (drawn again within the box), as savefig's tight PNG does."""
    fig = plots.percentile_chart(0.2)
    fig.text(1.05, 0.5, "outside the figure", fontsize=20)
    png = plots.to_png(fig, dpi=60)
    tight = io.BytesIO()
    fig.savefig(tight, format="png", dpi=60, bbox_inches="tight", facecolor="white")
    a, b = (np.asarray(Image.open(x).convert("RGB")) for x in (io.BytesIO(png), tight))
    assert a.shape[1] > 7.5 * 60 + 100 and abs(a.shape[1] - b.shape[1]) <= 2
    right = a[:, int(7.6 * 60):]  # beyond the figure's own width
    assert (right < 128).any()  # the text's ink


@pytest.mark.parametrize("channels", [3, 4])
def test_encode_png_is_a_valid_png_of_the_pixels(channels):
    """encode_png writes a PNG that decodes (Pillow) to exactly the pixels, with its dpi."""
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (37, 53, channels), dtype=np.uint8)
    px[5:20] = 255  # flat areas, as in figures
    data = plots.encode_png(px, dpi=200)
    im = Image.open(io.BytesIO(data))
    im.verify()
    im = Image.open(io.BytesIO(data))
    assert im.mode == ("RGB" if channels == 3 else "RGBA") and im.info["dpi"] == pytest.approx((200, 200), abs=0.01)
    assert (np.asarray(im) == px).all()


def test_drawing_is_released_with_the_figure_kept():
    """After to_png the figure keeps no reference to the renderer it was drawn with (its texts
    cache the last one): the drawing's pixels go at once, not when the figure is collected."""
    import gc
    import weakref

    fig = plots.love_plot(pd.DataFrame({"variable": ["a", "b"], "smd_before": [0.3, -0.1], "smd_after": [0.02, 0.04]}))
    gc.disable()
    try:
        with plots._drawn(fig, 50) as drawn:
            renderer = weakref.ref(drawn[0].get_renderer())
        del drawn
        assert renderer() is None
    finally:
        gc.enable()
    assert plots.to_png(fig, dpi=50)[:8] == b"\x89PNG\r\n\x1a\n"  # and it draws again


@pytest.mark.parametrize("make", [
    lambda: plots.love_plot(pd.DataFrame({"variable": ["a", "b"], "smd_before": [0.3, -0.1], "smd_after": [0.02, 0.04]})),
    lambda: plots.percentile_chart(0.2, (0.05, 0.35)),
    lambda: plots.propensity_overlap(np.r_[np.linspace(0.2, 0.8, 50), np.linspace(0.1, 0.7, 200)],
                                     np.r_[np.ones(50), np.zeros(200)], weights=np.ones(250)),
])
def test_titles_on_top_are_where_matplotlib_places_them(make):
    """Axes titles with nothing above them are put on the top edge (not placed by measuring the
    tick labels at each draw): the same PNG as with matplotlib's automatic placement."""
    fig, auto = make(), make()
    for ax in auto.axes:
        title = ax.title if ax.get_title() else ax._left_title
        ax.set_title(title.get_text(), loc="center" if title is ax.title else "left", fontsize=title.get_fontsize(), y=None)
    assert plots.to_png(fig, dpi=60) == plots.to_png(auto, dpi=60)


def test_svg_bytes_are_the_same_for_the_same_figure():
    """No date in the SVG's metadata and ids from a fixed salt: the same figure built twice gives
    the same SVG bytes, by to_svg and by to_png_svg (a random salt or a date would differ)."""
    def make():
        return plots.forest(_schools(12)[0], pooled=_schools(12)[1])

    a, b = plots.to_svg(make()), plots.to_svg(make())
    assert a == b and b"<dc:date>" not in a and b"clip-path" in a
    assert plots.to_png_svg(make(), dpi=80)[1] == plots.to_png_svg(make(), dpi=80)[1]


def test_figure_names_of_subjects_that_differ_only_in_replaced_characters_differ():
    """findings.slug keeps letters, digits, - and _; when it replaces a character it appends the
    text's SHA-1 (6 hex digits), so 'ELA*Reading' and 'ELA?Reading' (and 'ELA_Reading' itself)
    keep figures of their own instead of overwriting one file."""
    import hashlib

    from pleval import findings, plots

    names = [plots.figure_name("forest", s) for s in ("ELA*Reading", "ELA?Reading", "ELA_Reading", "math")]
    assert len(set(names)) == 4 and names[2:] == ["forest_ELA_Reading", "forest_math"]
    assert names[0] == "forest_ELA_Reading-" + hashlib.sha1(b"ELA*Reading").hexdigest()[:6]
    assert findings.slug("../../x") == "x-" + hashlib.sha1(b"../../x").hexdigest()[:6]
    assert plots.figure_name("forest", "all") == "forest"


def test_forest_colours_by_the_placebo_calibrated_verdicts_when_given():
    """With placebo schools the summary counts schools beyond the placebo spread (the sample's
    math: 1 positive, 0 negative), but the forest plot coloured by the student-level adjusted p
    (5 blue, 3 red) under a legend that did not say which. The calibrated p now colours it and
    the legend names it."""
    df, pooled = _schools(6)
    df["pvalue_adj"] = [0.001, 0.001, 0.001, 0.5, 0.5, 0.5]
    df["pvalue_calibrated_adj"] = [0.001, 0.3, 0.3, 0.5, 0.5, 0.5]
    fig = plots.forest(df, pooled=pooled)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "significantly positive (placebo-calibrated adjusted p < 0.05)" in legend or \
           "significantly negative (placebo-calibrated adjusted p < 0.05)" in legend
    plain = plots.forest(df.drop(columns="pvalue_calibrated_adj"), pooled=pooled)
    assert "(adjusted p < 0.05)" in " ".join(t.get_text() for t in plain.legends[0].get_texts())


def test_a_capped_benchmark_bound_has_no_t_label():
    """Twice the pretest implies R²_{Y~Z|D,X} > 1 here (no such confounder): the table leaves its t
    empty and the contour's t panel labelled it "(inf)" before 2026-12-04; it now says "no such
    confounder", while the estimate panel keeps the extreme estimate, recomputed here."""
    from pleval.sensitivity.ovb import omitted_variable_bounds

    est, se_c, dof, r2d, r2y = 0.9844, 0.1719, 13660, 0.00083, 0.47
    k = 2.0
    r2dz = k * r2d / (1 - r2d)
    eta = k * r2d**2 / ((1 - k * r2d) * (1 - r2d))
    assert ((np.sqrt(k) + np.sqrt(eta)) / np.sqrt(1 - eta)) ** 2 * r2y / (1 - r2y) > 1
    extreme = est - se_c * np.sqrt(dof) * np.sqrt(r2dz / (1 - r2dz))  # at R²_Y = 1
    o = omitted_variable_bounds(est, se_c, dof, se=0.5592, df=30, benchmarks={"pretest": (r2d, r2y)}, kd=(1, 2))
    fig = plots.ovb_contour(o)
    labels = {ax.get_title(loc="left").split()[1]: [t.get_text() for t in ax.texts] for ax in fig.axes}
    assert "2x pretest (no such confounder)" in labels["t"]
    assert f"2x pretest ({extreme:.3g})" in labels["estimate"]
    assert not any("inf" in t for t in labels["t"])


def _contour_near_the_origin():
    """A contour plot whose 1x female bound sits at the origin with the unadjusted estimate, the
    pretest's bounds at the top."""
    from pleval.sensitivity.ovb import omitted_variable_bounds

    o = omitted_variable_bounds(0.9844, 0.1719, 13660, se=0.5592, df=30, kd=(1, 2),
                                benchmarks={"pretest": (0.00083, 0.47), "female": (5.5e-5, 2e-5)})
    return plots.ovb_contour(o)


def _near_origin_contour():
    """:func:`_contour_near_the_origin` drawn (layout included) at 100 dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _contour_near_the_origin()
    FigureCanvasAgg(fig).draw()
    return fig


def test_contour_labels_inside_the_axes_clear_of_ticks_and_of_each_other():
    """Before 2026-12-05 a bound's label hung below-right of its point: at the origin it lay over
    the x tick labels 0.00/0.02, and over the unadjusted estimate's label."""
    from matplotlib.text import Annotation

    fig = _near_origin_contour()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() + ax.get_yticklabels()
                 if t.get_visible() and t.get_text()]
        notes = [t for t in ax.texts if isinstance(t, Annotation)]
        boxes = [t.get_window_extent(renderer) for t in notes]
        contour_labels = [t.get_window_extent(renderer) for t in ax.texts if not isinstance(t, Annotation)]
        assert {"unadjusted", "1x", "2x"} <= {t.get_text().split()[0] for t in notes}
        for i, (note, box) in enumerate(zip(notes, boxes)):
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                note.get_text()
            assert not any(box.overlaps(t) for t in ticks), note.get_text()
            assert not any(box.overlaps(other) for other in boxes[i + 1:] + contour_labels), note.get_text()


def test_contour_markers_at_the_origin_both_show():
    """The 1x female diamond and the unadjusted triangle share the origin: the triangle is drawn
    over the diamond and smaller, so both keep much of their pixels (before 2026-12-05 the
    diamond, as large as the triangle, covered it, and both hung over the tick labels)."""
    fig = _near_origin_contour()
    ax = fig.axes[0]
    triangle = next(m for m in ax.lines if m.get_marker() == "^")
    diamond = next(m for m in ax.lines if m.get_marker() == "D" and m.get_xdata()[0] < 1e-3
                   and m.get_ydata()[0] < 1e-3)
    assert triangle.get_zorder() > diamond.get_zorder() and triangle.get_markersize() <= diamond.get_markersize()
    x, y = ax.transData.transform((0, 0))
    h = fig.canvas.get_renderer().height
    r = int(np.ceil(diamond.get_markersize() * fig.dpi / 72))

    def pixels():
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(int)
        win = rgb[int(h - y) - r:int(h - y) + r + 1, int(x) - r:int(x) + r + 1]
        black = (win.max(axis=2) < 60).sum()
        red = ((win[:, :, 0] > 150) & (win[:, :, 1] < 90) & (win[:, :, 2] < 60)).sum()
        return black, red

    black, red = pixels()
    diamond.set_visible(False)
    black_alone = pixels()[0]
    diamond.set_visible(True)
    triangle.set_visible(False)
    red_alone = pixels()[1]
    assert black >= 0.6 * black_alone and red >= 0.3 * red_alone, (black, black_alone, red, red_alone)
    assert ax.get_xlim()[0] < 0 and ax.get_ylim()[0] < 0  # the origin's markers inside the axes


def _long_named_schools(k: int) -> tuple[pd.DataFrame, dict]:
    df, pooled = _schools(k)
    df["school"] = [f"{n} — Thurgood Marshall Academy for Mathematics, Science and Technology"
                    if i % 7 == 0 else n for i, n in enumerate(df["school"])]
    return df, pooled


_EVERY_FIGURE = {
    "forest": lambda: plots.forest(_long_named_schools(70)[0], pooled=_long_named_schools(70)[1],
                                   max_rows=plots.FOREST_MAX_ROWS, placebo=np.linspace(-0.2, 0.2, 40), sd=15.0),
    "distribution": lambda: plots.effect_distribution(_schools(30)[0]["estimate"], shrunk=_schools(30)[0]["shrunk"],
                                                      mu=0.08, tau=0.1),
    "percentiles": lambda: plots.percentile_chart(0.2, (0.05, 0.35)),
    "love": lambda: plots.love_plot(pd.DataFrame({"variable": ["a", "prior-year mathematics scale score", "c"],
                                                  "smd_before": [0.3, -0.1, 0.2], "smd_after": [0.02, 0.04, -0.01]})),
    "overlap": lambda: plots.propensity_overlap(
        np.r_[np.linspace(0.2, 0.8, 50), np.linspace(0.05, 0.6, 200)], np.r_[np.ones(50), np.zeros(200)],
        weights=np.r_[np.ones(50), np.ones(200) * 0.5]),
    "sensitivity": _contour_near_the_origin,
    "mdes": lambda: plots.mdes_curve(pd.DataFrame({"size": [10, 20, 40], "mdes": [0.5, 0.35, 0.25], "power": 0.8}),
                                     target=0.3),
    "power": lambda: plots.power_curve(pd.DataFrame({"size": [10, 20, 40] * 2, "power": [0.3, 0.6, 0.9, 0.2, 0.5, 0.8],
                                                     "vary": "icc", "value": [0.1] * 3 + [0.2] * 3, "effect": 0.2}),
                                       planned=20, unit="schools"),
}


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
@pytest.mark.parametrize("name", list(_EVERY_FIGURE))
def test_layout_in_one_pass_places_the_axes_as_the_constrained_layout(name):
    """_lay_out_once lays out every kind of figure pleval draws (and the forest plot of long
    school names) in one measuring pass: the axes where matplotlib's constrained layout, with
    its two passes, puts them, to a pixel; the suptitle where it puts it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    ours, theirs = _EVERY_FIGURE[name](), _EVERY_FIGURE[name]()
    for fig in (ours, theirs):
        fig.set_dpi(120)
    assert plots._lay_out_once(ours, FigureCanvasAgg(ours).get_renderer())
    FigureCanvasAgg(theirs).draw()
    scale = np.tile([ours.bbox.width, ours.bbox.height], 2)
    for a, b in zip(ours.axes, theirs.axes):
        assert np.abs(np.array(a.get_position().extents) - b.get_position().extents).max() * scale.max() <= 1.0
    if theirs._suptitle is not None:
        assert ours._suptitle.get_position() == pytest.approx(theirs._suptitle.get_position())


@pytest.mark.parametrize("name", list(_EVERY_FIGURE))
@pytest.mark.parametrize("dpi", [80, 200])
@pytest.mark.parametrize("once", [True, False])
def test_drawn_figures_keep_every_text_inside_and_apart(name, dpi, once, monkeypatch):
    """Laid out in one pass and drawn (or, with another matplotlib than the pinned series, by
    matplotlib's own constrained layout), every figure keeps each text it draws (tick labels,
    labels, titles, legends, the forest plot's long school names and numbers) inside the figure
    and clear of every other text; the figure's layout engine is constrained again afterwards."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if once and not plots.MEASURE_ONCE:
        pytest.skip("the one-pass layout runs on matplotlib 3.10 only")
    monkeypatch.setattr(plots, "MEASURE_ONCE", once)
    fig = _EVERY_FIGURE[name]()
    with plots._drawn(fig, dpi) as (canvas, content, box):
        assert (fig.get_layout_engine() is None) is once  # laid out by _lay_out_once, not again in the draw
        renderer = canvas.get_renderer()
        every_tick_label = {id(t) for tick in fig.findobj(matplotlib.axis.Tick) for t in (tick.label1, tick.label2)}
        drawn_ticks = [t for a in fig.axes for ax in (a, *a.child_axes) for axis in (ax.xaxis, ax.yaxis)
                       if axis.get_visible() for tick in axis._update_ticks() for t in (tick.label1, tick.label2)]
        others = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in every_tick_label]
        texts = [t for t in drawn_ticks + others if t.get_visible() and t.get_text().strip()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        edge = fig.bbox
        for text, b in boxes:
            assert edge.x0 <= b.x0 and b.x1 <= edge.x1 and edge.y0 <= b.y0 and b.y1 <= edge.y1, text
        for i, (text, b) in enumerate(boxes):
            for other, c in boxes[i + 1:]:
                overlap = min(b.x1, c.x1) - max(b.x0, c.x0), min(b.y1, c.y1) - max(b.y0, c.y0)
                assert min(overlap) <= 0.5, (text, other)
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
def test_ticks_are_updated_once_per_place_and_view(monkeypatch):
    """While to_png lays a figure out, draws and measures it, each axis updates its ticks (and
    measures their labels) once at its first place and once where the layout puts it, not at
    every measure of the axis, its label, its spines and the titles above (matplotlib's way:
    four or more times for each of the layout's two passes, the draw and the tight box); the
    PNG is the same bytes as without that, and every setting is restored afterwards."""
    calls = []
    update = matplotlib.axis.Axis._update_ticks

    def counted(self):
        calls.append(self)
        return update(self)

    make = _EVERY_FIGURE["distribution"]
    fig = make()
    axes = [axis for a in fig.axes for ax in (a, *a.child_axes) for axis in (ax.xaxis, ax.yaxis)]
    auto = [ax._autotitlepos for a in fig.axes for ax in (a, *a.child_axes)]
    with monkeypatch.context() as m:
        m.setattr(matplotlib.axis.Axis, "_update_ticks", counted)
        png = plots.to_png(fig, dpi=120)
    assert 0 < len(calls) <= 2 * len(axes)
    assert not any({"_update_ticks", "_get_ticklabel_bboxes"} & set(vars(axis)) for axis in axes)
    assert all(axis.remove_overlapping_locs for axis in axes)
    assert [ax._autotitlepos for a in fig.axes for ax in (a, *a.child_axes)] == auto
    assert not any("_get_layout" in vars(t) for t in fig.findobj(matplotlib.text.Text))
    with monkeypatch.context() as m:
        m.setattr(plots, "_once_per_view", lambda axis, method: method)
        m.setattr(plots, "_laid_out_once", lambda text, layout: layout)
        assert plots.to_png(make(), dpi=120) == png
    assert plots.to_png(fig, dpi=120) == png  # and drawn again the same


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
def test_a_text_is_laid_out_again_when_what_its_layout_depends_on_changes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure()
    text = fig.text(0.5, 0.5, "School 01")
    renderer = FigureCanvasAgg(fig).get_renderer()
    layout = plots._laid_out_once(text, text._get_layout)
    first = layout(renderer)
    text.set_position((0.1, 0.2))  # its place is not part of its layout
    assert layout(renderer) is first
    for change in (lambda: text.set_text("School 02"), lambda: text.set_fontsize(14), lambda: text.set_rotation(90),
                   lambda: text.set_horizontalalignment("right"), lambda: text.set_verticalalignment("top"),
                   lambda: text.set_linespacing(2.0), lambda: fig.set_dpi(200)):
        before = layout(renderer)
        change()
        after = layout(renderer)
        assert after is not before
        bbox, lines, descent = after
        ref_bbox, ref_lines, ref_descent = text._get_layout(renderer)
        assert np.allclose(bbox.bounds, ref_bbox.bounds) and lines == ref_lines and descent == ref_descent


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
def test_a_text_is_shaped_once_for_its_measure_its_draw_and_later_figures(monkeypatch):
    """While to_png draws a figure, each plain text is shaped by FreeType once for its measure and
    its draw, and a string an earlier figure drew (same font, size and resolution) is not shaped
    again (matplotlib's Agg shapes a text to measure it, again to draw it, and again for each new
    figure); the PNGs are the same bytes as matplotlib's own drawing, and the renderer keeps the
    class's methods afterwards."""
    import contextlib

    from matplotlib.backends.backend_agg import RendererAgg

    shaped = []
    prepare = RendererAgg._prepare_font

    def counted(self, prop):
        shaped.append(prop)
        return prepare(self, prop)

    make = _EVERY_FIGURE["love"]
    with monkeypatch.context() as m:
        m.setattr(plots, "_shaped_once", lambda renderer: contextlib.nullcontext())
        ours = plots.to_png(make(), dpi=120)
    plots._SHAPED.clear()
    plots._shaped_bytes[0] = 0
    monkeypatch.setattr(RendererAgg, "_prepare_font", counted)
    fig = make()
    with plots._drawn(fig, 120) as (canvas, content, box):
        png = plots._png_of(canvas, content, box, 120)
        renderer = canvas.get_renderer()
    assert png == ours
    assert not {"draw_text", "get_text_width_height_descent"} & set(vars(renderer))
    assert 0 < len(shaped) == len(plots._SHAPED)  # once per string and font
    assert plots.to_png(make(), dpi=120) == png and len(shaped) == len(plots._SHAPED)  # none again
    biggest = max(hit[3].nbytes for hit in plots._SHAPED.values())
    monkeypatch.setattr(plots, "_SHAPED_BYTES", 2 * biggest)
    plots._SHAPED.clear()
    plots._shaped_bytes[0] = 0
    assert plots.to_png(make(), dpi=120) == png  # the oldest let go
    held = sum(hit[3].nbytes for hit in plots._SHAPED.values())
    assert 0 < len(plots._SHAPED) < len(shaped) and held == plots._shaped_bytes[0] <= 2 * biggest


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
def test_a_drawn_text_is_not_set_to_its_own_string(monkeypatch):
    """matplotlib's Text.draw sets a text's string to the string it has while drawing it, and back
    (``Artist.set``: its properties looked up, change callbacks, marked stale); to_png spares that
    for texts that do not wrap (the same PNG) and leaves them as they were."""
    from matplotlib.artist import Artist
    from matplotlib.text import Text

    calls = []
    cm_set = Artist._cm_set

    def counted(self, **kwargs):
        calls.append((self, kwargs))
        return cm_set(self, **kwargs)

    make = _EVERY_FIGURE["distribution"]
    ours = plots.to_png(make(), dpi=120)
    monkeypatch.setattr(Artist, "_cm_set", counted)
    fig = make()
    with monkeypatch.context() as m:
        m.setattr(plots, "_set_unless_same", lambda text, cm: cm)
        assert plots.to_png(fig, dpi=120) == ours
    assert [kw for t, kw in calls if isinstance(t, Text) and kw.keys() == {"text"}]  # matplotlib's way
    calls.clear()
    assert plots.to_png(fig, dpi=120) == ours
    assert not [kw for t, kw in calls if isinstance(t, Text) and kw.keys() == {"text"}]
    assert not any("_cm_set" in vars(t) for t in fig.findobj(Text))


def test_contour_labels_are_measured_with_one_renderer(monkeypatch):
    """clabel measures each contour label with the figure's renderer; for a figure whose canvas has
    none (pleval's, built without pyplot) matplotlib made one per label, by a print of the figure
    stopped before its draw. ovb_contour gives the figure an Agg canvas while it places the labels
    (the same labels, the same PNG) and its own canvas back."""
    import matplotlib.figure
    from matplotlib.backend_bases import FigureCanvasBase

    made = []
    get = matplotlib.figure._get_renderer
    monkeypatch.setattr(matplotlib.figure, "_get_renderer", lambda *a, **k: made.append(1) or get(*a, **k))
    fig = _contour_near_the_origin()
    assert not made and type(fig.canvas) is FigureCanvasBase
    assert all(ax.texts for ax in fig.axes)  # the contours' labels


@pytest.mark.skipif(not plots.MEASURE_ONCE, reason="the one-pass layout and measuring memos run on matplotlib 3.10 only")
def test_figures_the_one_pass_layout_does_not_cover_keep_their_layout():
    """A colorbar, axes spanning cells or another layout engine: _lay_out_once leaves the figure
    to its own layout (the PNG is that of savefig's tight box, to a pixel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def colorbar():
        fig = Figure(figsize=(4, 3), layout="constrained")
        ax = fig.add_subplot()
        fig.colorbar(ax.imshow(np.arange(12.0).reshape(3, 4)), ax=ax)
        return fig

    def spanning():
        fig = Figure(figsize=(4, 3), layout="constrained")
        gs = fig.add_gridspec(2, 2)
        fig.add_subplot(gs[0, :]).set_title("top")
        fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])
        return fig

    def tight():
        fig = Figure(figsize=(4, 3), layout="tight")
        fig.add_subplot().set_xlabel("x")
        return fig

    for make in (colorbar, spanning, tight):
        fig = make()
        positions = np.array([ax.get_position().extents for ax in fig.axes])
        assert not plots._lay_out_once(fig, FigureCanvasAgg(fig).get_renderer())
        assert np.array_equal([ax.get_position().extents for ax in fig.axes], positions)
        png = Image.open(io.BytesIO(plots.to_png(fig, dpi=80)))
        ref = io.BytesIO()
        make().savefig(ref, format="png", dpi=80, bbox_inches="tight")
        assert abs(png.size[0] - Image.open(ref).size[0]) <= 2 and abs(png.size[1] - Image.open(ref).size[1]) <= 2
