"""Figures for papers (gradts_cli/figures): files, sizes, content and the optional dependency.

The store comes from tests/figstore.py: probe entries with planted structure, and real
GradTS-trial and GradTS-fg results on top of them (scripted trainer). Each figure is checked
for what a reader relies on: the file opens as an image of the stated size and is not blank,
the SVG carries the task names as text, the correlation heatmap's order, blank diagonal and
significance marks, the shared colour scale, and the cuts drawn on the tau histograms.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import figstore  # noqa: E402

from gradts_cli import figures  # noqa: E402
from gradts_cli.figures import plots  # noqa: E402

NAMES = ["importance", "corr", f"candidates-{figstore.PRIMARY}", f"trial-{figstore.PRIMARY}",
         f"fg-{figstore.PRIMARY}", f"fg-taus-{figstore.PRIMARY}"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    store, model, planted = figstore.shared(tmp_path_factory)
    rep, taus = figstore.report_and_taus(store, model)
    return store, model, planted, rep, taus


@pytest.fixture(scope="module")
def written(setup, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    *_, rep, taus = setup
    out = tmp_path_factory.mktemp("figs")
    return out, figures.write_report_figures(rep, out, taus)


def test_report_figures_all_written_in_three_formats(written) -> None:
    out, files = written
    assert [f.name for f in files] == NAMES
    for f in files:
        assert [p.name for p in f.paths] == [f"{f.name}.png", f"{f.name}.svg", f"{f.name}.pdf"]
        assert all(p.stat().st_size > 1000 for p in f.paths)
        assert f.paths[2].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{x}" for n in NAMES for x in ("png", "svg", "pdf"))  # no temporary files left


def test_png_size_is_print_resolution_and_not_blank(written) -> None:
    from PIL import Image

    _, files = written
    for f in files:
        with Image.open(f.paths[0]) as im:
            w, h = im.size
            px = np.asarray(im.convert("L"), dtype=np.float64)
        want_w = plots.FULL_W if f.name == "importance" else plots.COLUMN_W
        assert w == round(want_w * figures.DPI), f.name  # 3.4 in or 7 in at 300 dpi
        assert 0.8 * figures.DPI < h < 8 * figures.DPI
        assert px.std() > 20, f"{f.name} looks blank"
        assert (px < 128).mean() > 0.01                 # some ink, not only a white page


def test_svg_keeps_task_names_as_text(written, setup) -> None:
    *_, rep, _ = setup
    _, files = written
    svg = {f.name: f.paths[1].read_text() for f in files}
    for task in rep.tasks:
        for name in ("importance", "corr"):
            assert f">{task}</text>" in svg[name] or f"{task}</text>" in svg[name], (name, task)
    assert "neg_product" in svg[f"trial-{figstore.PRIMARY}"]


def test_figures_are_deterministic(setup, tmp_path: Path) -> None:
    *_, rep, taus = setup
    a = figures.write_report_figures(rep, tmp_path / "a", taus, formats=("png", "svg"))
    b = figures.write_report_figures(rep, tmp_path / "b", taus, formats=("png", "svg"))
    for fa, fb in zip(a, b, strict=True):
        for pa, pb in zip(fa.paths, fb.paths, strict=True):
            assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_importance_grid_shares_one_colour_scale(setup) -> None:
    *_, rep, _ = setup
    corr = rep.corr
    fig = plots.importance_grid(corr.matrices, corr.estimator, corr.measure)
    ims = [im for ax in fig.axes for im in ax.images]
    assert len(ims) == len(corr.tasks)
    allv = np.concatenate([np.asarray(m).ravel() for m in corr.matrices.values()])
    for im in ims:
        assert im.get_clim() == pytest.approx((allv.min(), allv.max()))
        assert im.get_array().shape == (figstore.L, figstore.H)
    titles = {ax.get_title() for ax in fig.axes}
    assert set(corr.tasks) <= titles
    assert any(ax.get_ylabel() == "layer" for ax in fig.axes)
    assert any("importance (during)" in ax.get_ylabel() for ax in fig.axes)  # the colour bar
    assert "during estimator" in fig.get_suptitle()


def test_corr_heatmap_clustered_blank_diagonal_stars(setup) -> None:
    import scipy.stats

    *_, rep, _ = setup
    corr = rep.corr
    fig = plots.corr_heatmap(corr)
    ax = fig.axes[0]
    order = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(order) == sorted(corr.tasks)
    # the planted families are contiguous in the clustered order
    pos = {t: i for i, t in enumerate(order)}
    assert abs(pos["neg_movie"] - pos["neg_product"]) == 1
    assert abs(pos["match_person"] - pos["topic_news"]) == 1
    data = ax.images[0].get_array()
    assert np.ma.getmaskarray(data).diagonal().all() and not np.ma.getmaskarray(data)[0, 1]
    # every starred cell is a pair with p < 0.05, recomputed with SciPy from the matrices
    stars = 0
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            if i == j:
                continue
            ref = scipy.stats.kendalltau(np.asarray(corr.matrices[a], np.float64).ravel(),
                                         np.asarray(corr.matrices[b], np.float64).ravel())
            assert data[i, j] == pytest.approx(ref.statistic, abs=1e-6)
            stars += ref.pvalue < 0.05
    assert sum(t.get_text().endswith("*") for t in ax.texts) == stars > 0
    assert "Kendall" in ax.get_title()


def test_cluster_order_matches_a_brute_force_of_block_structure() -> None:
    S = np.array([[1, .9, .1, .0], [.9, 1, .0, .1], [.1, .0, 1, .8], [.0, .1, .8, 1]])
    perm = [2, 0, 3, 1]
    order = plots.cluster_order(S[np.ix_(perm, perm)])
    got = [perm[i] for i in order]
    assert {frozenset(got[:2]), frozenset(got[2:])} == {frozenset({0, 1}), frozenset({2, 3})}


def test_trial_figure_marks_selected_and_noise_interval(setup) -> None:
    *_, rep, _ = setup
    (t,) = rep.trials
    fig = plots.trial_scores(t)
    ax = fig.axes[0]
    ticks = sorted(zip(ax.get_yticks(), [x.get_text() for x in ax.get_yticklabels()],
                       strict=True))
    assert ticks[-1][1] == f"{t.primary} alone"      # the baseline first (at the top)
    (ci,) = [ln for ln in ax.get_lines() if "CI" in str(ln.get_label())]
    x = ci.get_xdata()
    base = t.baseline.mean
    assert x[0] == pytest.approx(base + t.verdict.ci_low)
    assert x[1] == pytest.approx(base + t.verdict.ci_high)
    from matplotlib.collections import PathCollection

    means = sorted(float(c.get_offsets()[0][0]) for c in ax.collections
                   if isinstance(c, PathCollection) and len(c.get_offsets()) == 1)
    assert means == pytest.approx(sorted(r.mean for r in t.trials))


def test_fg_figures_draw_the_sweep_and_the_cuts(setup) -> None:
    store, _, _, rep, taus = setup
    (f,) = rep.fg
    fig = plots.fg_sweep(f)
    ax = fig.axes[0]
    (bars,) = ax.containers                         # the errorbar of the sweep
    line = bars.lines[0]
    rows = sorted(f.rows, key=lambda r: r.fraction)
    assert list(line.get_xdata()) == pytest.approx([r.fraction for r in rows])
    assert list(line.get_ydata()) == pytest.approx([r.mean for r in rows])
    hlines = {round(float(ln.get_ydata()[0]), 6) for ln in ax.get_lines()
              if len(ln.get_ydata()) == 2 and ln.get_ydata()[0] == ln.get_ydata()[1]}
    assert round(f.baseline.mean, 6) in hlines and round(f.trial.mean, 6) in hlines
    from matplotlib.collections import PathCollection

    ends = {tuple(np.round(c.get_offsets()[0], 6)) for c in ax.collections
            if isinstance(c, PathCollection) and len(c.get_offsets()) == 1}
    assert (0.0, round(f.baseline.mean, 6)) in ends          # no instance kept: alone
    assert ((1.0, round(f.trial.mean, 6)) in ends) == (set(f.trial.aux) == set(f.aux))

    hist = plots.fg_tau_hist(f, taus[f.primary])
    assert len(hist.axes) == len(f.aux)
    for ax, task in zip(hist.axes, f.aux, strict=True):
        counts = sum(p.get_height() for p in ax.patches)
        assert counts == np.isfinite(taus[f.primary][task]).sum()
        cuts = sorted(float(ln.get_xdata()[0]) for ln in ax.get_lines())
        assert cuts == pytest.approx(sorted(figstore.THRESHOLDS))


def test_one_figure_to_a_file_by_suffix(setup, tmp_path: Path) -> None:
    *_, rep, _ = setup
    f = figures.write_one(lambda: plots.corr_heatmap(rep.corr), tmp_path / "c.svg", "corr",
                          "t")
    assert f.paths == (tmp_path / "c.svg",) and "<svg" in f.paths[0].read_text()[:400]
    from gradts_engine.errors import UsageError

    with pytest.raises(UsageError, match="png, .svg or .pdf"):
        figures.write_one(lambda: plots.corr_heatmap(rep.corr), tmp_path / "c.jpg", "c", "t")


def test_without_matplotlib_one_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(figures.PlotUnavailableError) as e:
        figures.require_matplotlib()
    assert e.value.hint == "pip install 'gradts[plot]'"


def test_importing_the_cli_never_imports_matplotlib() -> None:
    code = ("import sys, gradts_cli.app, gradts_cli.figures, gradts_cli.html; "
            "bad = [m for m in ('matplotlib', 'torch', 'transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# the command-line flags


def test_cli_figure_flags_on_corr_trial_fg(tmp_path: Path, tmp_path_factory, monkeypatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    base = ["--home", str(root)]
    p = figstore.PRIMARY
    assert main([*base, "corr", "--model", model, "--figure", str(tmp_path / "c.png")]) == 0
    assert main([*base, "trial", "--model", model, "--primary", p, "--candidates",
                 ",".join(figstore.TASKS[1:]), "--epochs", "1", "--seeds", "2", "--max-aux",
                 "2", "--patience", "2", "--device", "cpu",
                 "--figure", str(tmp_path / "t.svg")]) == 0
    assert main([*base, "fg", "--model", model, "--primary", p, "--sweep", "0,0.3,0.6",
                 "--epochs", "1", "--seeds", "2", "--device", "cpu",
                 "--figure", str(tmp_path / "f.pdf")]) == 0
    err = "".join(capsys.readouterr().err.split())  # messages may wrap
    for name in ("c.png", "t.svg", "f.pdf", "f-taus.pdf"):
        assert (tmp_path / name).stat().st_size > 1000 and f"wrote{tmp_path / name}" in err
    with Image.open(tmp_path / "c.png") as im:
        assert im.size[0] == round(plots.COLUMN_W * figures.DPI)
    assert "neg_product" in (tmp_path / "t.svg").read_text()


def test_cli_figure_errors_come_before_any_work(tmp_path: Path, tmp_path_factory, monkeypatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    assert main(["--home", str(root), "corr", "--model", model, "--figure",
                 str(tmp_path / "c.jpg")]) == 2
    assert "png, .svg or .pdf" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--home", str(root), "report", "--model", model, "--figures",
                 str(tmp_path / "figs")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'gradts[plot]'" in err and "Traceback" not in err
    assert not (tmp_path / "figs").exists()


def test_cli_report_figures_dir(tmp_path: Path, tmp_path_factory, monkeypatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    out = tmp_path / "figs"
    assert main(["--home", str(root), "report", "--model", model, "--primary",
                 figstore.PRIMARY, "--figures", str(out)]) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(NAMES)
    assert len(list(out.iterdir())) == 3 * len(NAMES)
