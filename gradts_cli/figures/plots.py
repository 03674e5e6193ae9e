"""The figure builders: one function per figure, each returning a matplotlib ``Figure``.

What each draws (issue 15; DESIGN.md §1-2 for the quantities):

- :func:`importance_grid`: the task matrices ``I_T`` (L, H), one heatmap per task, on one
  shared colour scale with one colour bar; the estimator and measure named.
- :func:`corr_heatmap`: the task x task correlation matrix, rows and columns ordered by
  average-linkage hierarchical clustering on ``1 - stat`` (scipy), the diagonal blank, cells
  with ``p < 0.05`` (uncorrected) marked with a star, the method named.
- :func:`candidates`: each candidate's statistic against one primary, in rank order, with the
  bootstrap interval where ``gradts corr --bootstrap`` computed one.
- :func:`trial_scores`: the primary's dev score per trial set (baseline first), the seeds as
  dots, +-1 sample s.d. error bars (more than one seed), the selected set marked and the paired
  bootstrap interval of (selected - baseline) drawn around the baseline.
- :func:`fg_sweep`: score against the fraction of auxiliary instances kept, with the baseline
  and the trial's set as reference lines.
- :func:`fg_tau_hist`: the distribution of instance taus per auxiliary task with each cut drawn.
- :func:`compare_gains`: per primary of ``gradts compare``, each selector's gain over the
  primary alone with its paired bootstrap interval, best first, the seeds' own gains as dots,
  the zero line; filled markers are gains whose interval excludes 0; k in the title; one
  colour-blind-safe (Okabe-Ito) colour per selector.

matplotlib is imported inside each function (this module is imported only when a figure is
requested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradts_engine.corr import CorrResult
    from gradts_engine.selection.records import FgResult, TrialSummary

COLUMN_W = 3.4     # inches: one column of a two-column paper
FULL_W = 7.0       # inches: the full text width
BASE_PT = 7.5
STYLE: Any = {"font.size": BASE_PT, "axes.titlesize": BASE_PT + 0.5, "axes.labelsize": BASE_PT,
         "xtick.labelsize": BASE_PT - 1, "ytick.labelsize": BASE_PT - 1,
         "legend.fontsize": BASE_PT - 1, "figure.titlesize": BASE_PT + 1,
         "font.family": "DejaVu Sans", "axes.spines.top": False, "axes.spines.right": False,
         "axes.linewidth": 0.6, "lines.linewidth": 1.0, "savefig.bbox": None}
BLUE, ORANGE, GREY, GREEN = "#1f5fa8", "#d95f02", "#7f7f7f", "#1b9e77"


def _figure(w: float, h: float) -> Any:
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(w, h), dpi=100)
        fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.02, wspace=0.04, hspace=0.04)
    return fig


def _styled(fn: Any) -> Any:
    """Run a builder under :data:`STYLE` (fonts sized for a paper column)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib.pyplot as plt

        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _wrap(text: str, width: int = 52) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


# ---------------------------------------------------------------------------------------------
# head importance


@_styled
def importance_grid(matrices: Mapping[str, Any], estimator: str, measure: str = "gate",
                    model_name: str = "", ncols: int | None = None) -> Any:
    """One (L, H) heatmap per task on a shared colour scale (layer 1 at the top)."""
    names = list(matrices)
    mats = [np.asarray(matrices[t], dtype=np.float64) for t in names]  # each (L, H)
    n = len(names)
    ncols = ncols or min(4, n)
    nrows = math.ceil(n / ncols)
    L, H = mats[0].shape
    width = FULL_W if ncols > 2 else COLUMN_W
    cell_w = (width - 0.9) / ncols
    cell_h = cell_w * L / H + 0.45
    fig = _figure(width, nrows * cell_h + 0.35)
    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in mats]) if mats else np.zeros(1)
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for k, (name, m) in enumerate(zip(names, mats, strict=True)):
        ax = axes[k // ncols, k % ncols]
        im = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto",
                       interpolation="nearest")
        ax.set_title(name, pad=2)
        ax.set_xticks(_ticks(H))
        ax.set_xticklabels([str(i + 1) for i in _ticks(H)])
        ax.set_yticks(range(L))
        ax.set_yticklabels([str(i + 1) for i in range(L)])
        if k % ncols == 0:
            ax.set_ylabel("layer")
        if k // ncols == nrows - 1 or k + ncols >= n:
            ax.set_xlabel("head")
        for s in ax.spines.values():
            s.set_visible(False)
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, aspect=25, pad=0.02)
        cb.set_label(f"importance ({estimator})")
        cb.outline.set_linewidth(0.4)
    model = f" — {_short(model_name)}" if model_name else ""
    fig.suptitle(f"Head importance, {estimator} estimator, {measure} measure{model}")
    return fig


def _short(name: str, n: int = 40) -> str:
    """A model id or path short enough for a title (the tail of a long path)."""
    if len(name) <= n:
        return name
    parts = name.rstrip("/").split("/")
    tail = "/".join(parts[-2:])
    return "…/" + tail if len(tail) < n else "…" + name[-(n - 1):]


def _ticks(n: int) -> list[int]:
    step = 1 if n <= 8 else 2 if n <= 16 else 4
    return list(range(0, n, step))


# ---------------------------------------------------------------------------------------------
# task correlation


def cluster_order(stats: Any) -> list[int]:
    """Leaf order of average-linkage clustering on the distance ``1 - stat`` (NaN as 1)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    S = np.asarray(stats, dtype=np.float64)  # (T, T)
    T = S.shape[0]
    if T < 3:
        return list(range(T))
    D = 1.0 - np.where(np.isfinite(S), S, 0.0)
    D = (D + D.T) / 2.0
    np.fill_diagonal(D, 0.0)
    D = np.clip(D, 0.0, None)
    Z = linkage(squareform(D, checks=False), method="average", optimal_ordering=True)
    return [int(i) for i in leaves_list(Z)]


@_styled
def corr_heatmap(corr: CorrResult, alpha: float = 0.05) -> Any:
    """The (T, T) statistic matrix, clustered, diagonal blank, ``p < alpha`` starred."""
    import matplotlib.colors as mcolors

    tasks = list(corr.tasks)
    T = len(tasks)
    order = cluster_order(corr.stats)
    S = np.asarray(corr.stats, dtype=np.float64)[np.ix_(order, order)]   # (T, T)
    P = np.asarray(corr.pvalues, dtype=np.float64)[np.ix_(order, order)]  # (T, T)
    names = [tasks[i] for i in order]
    shown = S.copy()
    np.fill_diagonal(shown, np.nan)
    side = min(FULL_W, max(COLUMN_W, 0.38 * T + 1.4))
    fig = _figure(side, side * 0.9)
    ax = fig.add_subplot()
    lim = max(0.05, float(np.nanmax(np.abs(shown)))) if np.isfinite(shown).any() else 1.0
    cmap = _cmap_with_blank("RdBu_r")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap,
                   norm=mcolors.TwoSlopeNorm(0.0, -lim, lim), interpolation="nearest")
    ax.set_xticks(range(T))
    ax.set_xticklabels(names, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(T))
    ax.set_yticklabels(names)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0)
    small = T <= 10
    for i in range(T):
        for j in range(T):
            if i == j or not math.isfinite(S[i, j]):
                continue
            star = "*" if math.isfinite(P[i, j]) and P[i, j] < alpha else ""
            text = f"{S[i, j]:+.2f}".replace("+", "") + star if small else star
            if text:
                dark = abs(S[i, j]) > 0.6 * lim
                ax.text(j, i, text, ha="center", va="center", fontsize=BASE_PT - 2.5,
                        color="white" if dark else "black")
    cb = fig.colorbar(im, ax=ax, shrink=0.8, aspect=25, pad=0.02)
    cb.set_label(f"{_method_name(corr.method)}, {corr.estimator} matrices")
    cb.outline.set_linewidth(0.4)
    ax.set_title(f"Task correlation of head importance ({_method_name(corr.method)})\n"
                 f"* p < {alpha:g} (uncorrected); clustered order", pad=4)
    return fig


def _cmap_with_blank(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="white")


def _method_name(method: str) -> str:
    return {"kendall": "Kendall τ-b", "spearman": "Spearman ρ",
            "pearson": "Pearson r"}.get(method, method)


@_styled
def candidates(corr: CorrResult, primary: str) -> Any:
    """The candidates of ``primary`` in rank order with bootstrap intervals where computed."""
    from gradts_engine.errors import MissingResultError

    if primary not in corr.rankings:
        raise MissingResultError(f"no ranking for '{primary}' in this correlation",
                                 hint=f"probe it: gradts probe --task {primary}")
    rows = list(corr.rankings[primary])
    boot = {}
    if corr.bootstrap is not None:
        boot = {r.task: r for r in corr.bootstrap.rows.get(primary, ())}
    n = len(rows)
    fig = _figure(COLUMN_W, 0.9 + 0.2 * n)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    stats = np.array([r.stat for r in rows], dtype=np.float64)
    ax.barh(y, np.nan_to_num(stats), color=BLUE, height=0.6, label=corr.estimator)
    have_ci = False
    for yi, r in zip(y, rows, strict=True):
        b = boot.get(r.task)
        lo, hi = (b.ci_low, b.ci_high) if b is not None else (r.ci_low, r.ci_high)
        if lo is not None and hi is not None and _finite(lo) and _finite(hi):
            mid = float(b.stat if b is not None else r.stat)
            ax.errorbar([mid], [yi], xerr=[[mid - float(lo)], [float(hi) - mid]], fmt="o",
                        color=ORANGE, ms=2.5, capsize=2, lw=0.8,
                        label=None if have_ci else _ci_label(corr))
            have_ci = True
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.rank}. {r.task}" for r in rows])
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel(f"{_method_name(corr.method)} with {primary}")
    ax.set_title(_wrap(f"Candidate auxiliary tasks for {primary}"), pad=3)
    if have_ci:
        ax.legend(loc="lower right", frameon=False)
    return fig


def _ci_label(corr: CorrResult) -> str:
    b = corr.bootstrap
    if b is None:
        return "bootstrap interval"
    return f"{round(100 * b.level)}% bootstrap interval ({b.estimator} matrices)"


# ---------------------------------------------------------------------------------------------
# GradTS-trial


def _set_label(primary: str, aux: Sequence[str], role: str) -> str:
    if not aux:
        return f"{primary} alone"
    label = "+ " + " + ".join(aux)
    label = f"{label} ({role})" if role in ("random", "all") else label
    return _wrap(label, 22)


@_styled
def trial_scores(t: TrialSummary) -> Any:
    """The primary's score per trial set, baseline first, selected set marked."""
    recs = [*t.trials, *t.comparisons]
    n = len(recs)
    fig = _figure(COLUMN_W, 1.35 + 0.24 * n)
    ax = fig.add_subplot()
    y = np.arange(n)[::-1].astype(float)
    for yi, r in zip(y, recs, strict=True):
        sel = tuple(r.aux) == tuple(t.selected) and r.role != "random"
        colour = ORANGE if sel else (GREY if r.role in ("random", "all") else BLUE)
        scores = [s for s in r.scores if _finite(s)]
        if len(scores) > 1 and _finite(r.std):
            ax.errorbar([r.mean], [yi], xerr=[[r.std], [r.std]], fmt="none", ecolor=colour,
                        capsize=2, lw=0.8)
        ax.scatter(scores, [yi] * len(scores), s=6, color=colour, alpha=0.5, lw=0)
        ax.scatter([r.mean], [yi], s=22, color=colour, marker="D" if sel else "o", zorder=3)
    v = t.verdict
    base = t.baseline.mean
    ax.axvline(base, color=GREY, lw=0.6, ls="--", zorder=0)
    sel_y = next((yi for yi, r in zip(y, recs, strict=True)
                  if tuple(r.aux) == tuple(t.selected) and r.role != "random"), None)
    if v.ci_low is not None and v.ci_high is not None and sel_y is not None and t.selected:
        ax.plot([base + v.ci_low, base + v.ci_high], [sel_y - 0.32] * 2, color=ORANGE, lw=2.2,
                alpha=0.45, solid_capstyle="butt",
                label=f"baseline + {int(round(100 * v.level))}% CI of (selected − baseline)")
        fig.legend(loc="outside lower center", frameon=False)
    ax.set_yticks(y)
    ax.set_yticklabels([_set_label(t.primary, r.aux, r.role) for r in recs])
    ax.set_ylim(-0.65, n - 0.5)            # room for the interval bar below the last set
    seeds = len(t.seeds)
    ax.set_xlabel(f"{t.primary} dev {t.main_metric}\n(best epoch; "
                  f"{seeds} seed{'s' if seeds != 1 else ''}"
                  + (", mean ± 1 s.d." if seeds > 1 else "") + ")")
    verdict = "within noise" if v.within_noise else "beyond noise"
    fig.suptitle(_wrap(f"GradTS-trial for {t.primary}: selected "
                       f"{' + '.join(t.selected) or 'none'} ({verdict})", 48))
    return fig


# ---------------------------------------------------------------------------------------------
# GradTS-fg


@_styled
def fg_sweep(f: FgResult) -> Any:
    """Score against the fraction of auxiliary instances kept, with reference lines."""
    rows = sorted(f.rows, key=lambda r: r.fraction)
    fig = _figure(COLUMN_W, 2.9)
    ax = fig.add_subplot()
    x = np.array([r.fraction for r in rows], dtype=np.float64)
    m = np.array([r.mean for r in rows], dtype=np.float64)
    s = np.array([r.std if len(r.seeds) > 1 else 0.0 for r in rows], dtype=np.float64)
    ax.errorbar(x, m, yerr=np.nan_to_num(s), fmt="-o", color=BLUE, ms=3.5, capsize=2,
                label="GradTS-fg" + (" (±1 s.d.)" if len(f.seeds) > 1 else ""))
    for xi, mi, r in zip(x, m, rows, strict=True):
        ax.annotate(r.cut.label, (xi, mi), textcoords="offset points", xytext=(4, 4),
                    ha="left", va="bottom", fontsize=BASE_PT - 2)
    ax.axhline(f.baseline.mean, color=GREY, ls="--", lw=0.8, label=f"{f.primary} alone")
    # the sweep's two ends: no auxiliary instance (the primary alone) and all of them (the
    # trial's set, when it is fg's auxiliary set)
    ax.scatter([0.0], [f.baseline.mean], s=14, color=GREY, zorder=3)
    if f.trial is not None and _finite(f.trial.mean):
        ax.axhline(f.trial.mean, color=ORANGE, ls=":", lw=1.0,
                   label="trial set: " + (" + ".join(f.trial.aux) or "none"))
        if set(f.trial.aux) == set(f.aux):
            ax.scatter([1.0], [f.trial.mean], s=14, color=ORANGE, zorder=3)
    ax.margins(y=0.15)
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel(_wrap("fraction of auxiliary instances kept (" + ", ".join(f.aux) + ")"))
    ax.set_ylabel(f"dev {f.main_metric}")
    ax.set_title(_wrap(f"GradTS-fg for {f.primary} ({_method_name(f.method)} against the "
                       f"{f.estimator} matrix)"), pad=3)
    fig.legend(loc="outside lower center", frameon=False, ncols=2)
    return fig


@_styled
def fg_tau_hist(f: FgResult, taus: Mapping[str, Any], bins: int = 30) -> Any:
    """Per auxiliary task, the histogram of instance taus with each cut drawn."""
    names = [a for a in f.aux if a in taus] or list(taus)
    n = len(names)
    fig = _figure(COLUMN_W, 0.5 + 1.1 * n)
    axes = fig.subplots(n, 1, squeeze=False, sharex=True)[:, 0]
    finite_all = [np.asarray(taus[a], dtype=np.float64) for a in names]
    finite_all = [t[np.isfinite(t)] for t in finite_all]
    lo = min([float(t.min()) for t in finite_all if t.size] + [-0.1])
    hi = max([float(t.max()) for t in finite_all if t.size] + [0.7])
    edges = np.linspace(lo, hi, bins + 1)
    styles = ["-", "--", ":", "-."]
    for k, (name, t) in enumerate(zip(names, finite_all, strict=True)):
        ax = axes[k]
        ax.hist(t, bins=edges, color=BLUE, alpha=0.8)
        for c_i, row in enumerate(f.rows):
            kept = next((kk for kk in row.kept if kk.task == name), None)
            x = row.cut.value if row.cut.kind == "threshold" else (
                kept.min_tau if kept is not None and _finite(kept.min_tau) else None)
            if x is None:
                continue
            frac = f" ({kept.kept}/{kept.total})" if kept is not None else ""
            ax.axvline(x, color=ORANGE, ls=styles[c_i % len(styles)], lw=1.0,
                       label=f"{row.cut.label}{frac}")
        ax.set_xlim(lo, hi)
        ax.set_ylabel("instances")
        ax.set_title(f"{name}: {t.size} instances", pad=2, loc="left")
        ax.margins(y=0.25)                  # room for the legend above the bars
        ax.legend(loc="upper left", frameon=False, borderaxespad=0.2)
        if k == n - 1:
            ax.set_xlabel(f"{_method_name(f.method)} between vec(R_i) and vec(I_{f.primary})")
    fig.suptitle(f"Instance taus against {f.primary}")
    return fig


# ---------------------------------------------------------------------------------------------
# gradts compare

# Okabe & Ito's colour-blind-safe palette, one colour per selector (fixed, so a selector keeps
# its colour across figures); "all candidates" is grey.
OKABE_ITO = {"gradts": "#D55E00", "size": "#0072B2", "random": "#999999", "embed": "#009E73",
             "tag": "#CC79A7", "grad-cos": "#E69F00", "all candidates": "#000000"}
_MORE = ("#56B4E9", "#F0E442")


def selector_colour(name: str) -> str:
    """The selector's colour (Okabe-Ito); unknown selectors get the palette's spare colours."""
    return OKABE_ITO.get(name, _MORE[sum(map(ord, name)) % len(_MORE)])


def compare_rows(c: Any) -> list[Any]:
    """The rows of one primary's comparison that have a gain over the primary alone, best
    gain first (ties by selector name, then k): the order :func:`compare_gains` draws."""
    rows = [r for r in (*([c.all_candidates] if c.all_candidates else []), *c.rows)
            if r.gain is not None and _finite(r.gain.diff)]
    return sorted(rows, key=lambda r: (-float(r.gain.diff), r.selector, r.k))


def seed_gains(row: Any, baseline: Any) -> list[float]:
    """Per seed, the row's score minus the primary alone's score with the same seed."""
    base = dict(zip(baseline.seeds, baseline.scores, strict=False))
    return [float(s) - float(base[seed]) for seed, s in zip(row.seeds, row.scores, strict=False)
            if seed in base and _finite(s) and _finite(base[seed])]


def _compare_label(r: Any, several_k: bool) -> str:
    """``selector (k=..)`` on the first line, the set (wrapped) below it."""
    if r.selector == "all candidates":
        return f"all candidates\n({len(r.sets[0]) if r.sets else 0} tasks)"
    name = f"{r.selector} (k={r.k})" if several_k else r.selector
    sets = list(dict.fromkeys(" + ".join(s) for s in r.sets))
    what = sets[0] if len(sets) == 1 else f"{len(sets)} seeded draws"
    return f"{name}\n{_wrap(what, 26)}"


@_styled
def compare_gains(res: Any) -> Any:
    """Per primary, each selector's gain over the primary alone (mean over seeds) with its
    paired bootstrap interval, best first; the seeds' own gains as dots; the zero line. A
    filled marker is a gain whose interval excludes 0, a hollow one is within the noise."""
    comps = list(res.primaries)
    ks = sorted(set(res.ks))
    several_k = len(ks) > 1
    per = [compare_rows(c) for c in comps]
    labels = [[_compare_label(r, several_k) for r in rows] for rows in per]
    # each row as tall as its label (lines), so two-line labels never touch
    steps = [[0.45 * max(2, lab.count("\n") + 1) for lab in labs] for labs in labels]
    heights = [0.75 + 0.155 * sum(st) / 0.45 for st in steps]
    fig = _figure(COLUMN_W, 0.8 + sum(heights))
    axes = fig.subplots(len(comps), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    level = int(round(100 * res.level))
    for ax, c, rows, labs, st in zip(axes, comps, per, labels, steps, strict=True):
        edges = np.concatenate([[0.0], np.cumsum(st)])
        y = (edges.max() - (edges[:-1] + edges[1:]) / 2.0)   # top row first
        for yi, r in zip(y, rows, strict=True):
            g, colour = r.gain, selector_colour(r.selector)
            if g.low is not None and g.high is not None:
                ax.plot([g.low, g.high], [yi, yi], color=colour, lw=1.6,
                        solid_capstyle="butt", zorder=2)
            dots = seed_gains(r, c.baseline)
            ax.scatter(dots, [yi + 0.2] * len(dots), s=5, color=colour, alpha=0.6, lw=0,
                       zorder=2)
            ax.scatter([g.diff], [yi], s=24, marker="o", zorder=3, linewidths=1.0,
                       facecolors=colour if g.separable else "white", edgecolors=colour)
        ax.axvline(0.0, color="black", lw=0.6, zorder=1)
        ax.set_yticks(y)
        ax.set_yticklabels(labs)
        ax.set_ylim(0.0, float(edges.max()))
        ax.tick_params(axis="y", length=0)
        base = c.baseline
        ax.set_title(_wrap(f"{c.primary} alone: {base.mean:.3f} {c.main_metric} on "
                           f"{c.scored_on_text}", 44), pad=3, loc="right")
        ax.set_xlabel(_wrap(f"gain in {c.main_metric} over {c.primary} alone", 44), loc="right")
    seeds = len(res.seeds)
    fig.suptitle(_wrap(f"Top-k sets of each selector, k = {', '.join(map(str, ks))}; "
                       f"{seeds} seed{'s' if seeds != 1 else ''}", 52))
    from matplotlib.lines import Line2D

    ink = "#555555"
    handles = [Line2D([], [], color=ink, marker="o", ls="-", lw=1.6, ms=4.5,
                      label=f"mean gain over seeds, {level}% paired bootstrap interval"),
               Line2D([], [], color=ink, marker="o", ls="none", ms=4.5, mfc="white",
                      label="within the noise (the interval includes 0)"),
               Line2D([], [], color=ink, marker="o", ls="none", ms=2.5, alpha=0.6,
                      label="one seed's gain (same seed alone)")]
    fig.legend(handles=handles, loc="outside lower center", frameon=False, ncols=1)
    return fig
