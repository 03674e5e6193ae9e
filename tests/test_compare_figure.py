"""The ``gradts compare`` figure and long CSV, checked against the comparison's own records
(a real comparison from the fake trainer of tests/test_compare.py: no training)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from test_compare import CANDS, PRIMARY, SIZES, FakeTrainer, go, probe_all

from gradts_engine.longcsv import LONG_COLUMNS, compare_csv
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cmp-store")
    model = tmp_path_factory.mktemp("cmp-model")
    (model / "config.json").write_text("{}")
    store = Store(root)
    probe_all(store, str(model))
    reg = build_registry(include_user=False, demo_sizes=SIZES)
    # gradts' top-1 is separably better; size's top-1 (by name) is at chance
    fake = FakeTrainer({frozenset([CANDS[0]]): 0.95, frozenset(CANDS[:2]): 0.8})
    return go(reg, store, str(model), fake, ks=(1, 2), seeds=3)


def _rows(text: str) -> list[dict[str, str]]:
    r = csv.DictReader(io.StringIO(text))
    assert tuple(r.fieldnames or ()) == LONG_COLUMNS
    return list(r)


def test_csv_has_one_row_per_selector_and_seed_and_the_intervals(result) -> None:
    (c,) = result.primaries
    rows = _rows(compare_csv(result))
    assert {r["stage"] for r in rows} == {"compare"} and {r["primary"] for r in rows} == {PRIMARY}
    base = dict(zip(c.baseline.seeds, c.baseline.scores, strict=True))
    per_seed = [r for r in rows if r["quantity"] == c.main_metric]
    assert len(per_seed) == sum(len(x.seeds) for x in (c.baseline, c.all_candidates, *c.rows))
    for x in c.rows:
        mine = [r for r in rows if r["role"] == x.selector and r["seed"]
                and len(r["set"].split("+")) == x.k]
        got = {(int(r["seed"]), r["set"]): float(r["value"]) for r in mine
               if r["quantity"] == c.main_metric}
        want = {(s, "+".join(a)): sc for s, a, sc in zip(x.seeds, x.sets, x.scores, strict=True)}
        assert got == pytest.approx(want)
        gains = {int(r["seed"]): float(r["value"]) for r in mine if r["quantity"] == "gain"}
        assert gains == pytest.approx({s: sc - base[s] for s, sc in zip(x.seeds, x.scores,
                                                                       strict=True)})
        label = "+".join(x.sets[0]) if len(set(x.sets)) == 1 else f"top-{x.k}"
        agg = {r["quantity"]: r["value"] for r in rows if r["role"] == x.selector
               and not r["seed"] and not r["task"] and r["set"] == label}
        assert int(agg["k"]) == x.k
        assert float(agg["gain"]) == pytest.approx(x.gain.diff)
        assert float(agg["gain_low"]) == pytest.approx(x.gain.low)
        assert float(agg["gain_high"]) == pytest.approx(x.gain.high)
        assert agg["gain_separable"] == str(int(x.gain.separable))
    assert {r["role"] for r in rows} == {"baseline", "all", "gradts", "size", "random"}
    gradts_ranks = [r["task"] for r in rows if r["role"] == "gradts" and r["quantity"] == "rank"]
    assert gradts_ranks == CANDS                         # the planted order


def test_summary_rows_over_several_primaries(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    probe_all(store, str(model))
    reg = build_registry(include_user=False, demo_sizes=SIZES)
    res = go(reg, store, str(model), FakeTrainer(), selectors=("size", "random"), ks=(1,),
             seeds=1, primaries=(PRIMARY, CANDS[0]), cands=[PRIMARY, *CANDS])
    rows = [r for r in _rows(compare_csv(res)) if r["primary"] == ""]
    for s in res.summary:
        mine = {r["quantity"]: r["value"] for r in rows if r["role"] == s.selector}
        assert float(mine["mean_gain"]) == pytest.approx(s.mean_gain)
        assert int(mine["n_primaries"]) == 2 and int(mine["k"]) == 1
        assert {q for q in mine if q.startswith("beats_")} == {f"beats_{o}" for o in s.beats}


def test_figure_draws_each_gain_with_its_interval_sorted(result) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.collections import PathCollection

    from gradts_cli.figures import plots

    (c,) = result.primaries
    fig = plots.compare_gains(result)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = list(ax.get_yticks())
    want = plots.compare_rows(c)
    assert len(want) == len(c.rows) + 1                  # every selector x k, and all candidates
    diffs = [r.gain.diff for r in want]
    assert diffs == sorted(diffs, reverse=True)
    by_y = dict(zip(ticks, labels, strict=True))
    # the big markers: x = mean gain at the row's tick, in the sorted order, top first
    marks = [c_ for c_ in ax.collections if isinstance(c_, PathCollection)
             and len(c_.get_offsets()) == 1 and c_.get_sizes()[0] > 10]
    pts = sorted(((float(m.get_offsets()[0][1]), float(m.get_offsets()[0][0])) for m in marks),
                 reverse=True)
    assert [x for _, x in pts] == pytest.approx(diffs)
    assert [by_y[y].split("\n")[0].split(" (k=")[0] for y, _ in pts] == [
        r.selector for r in want]
    # each interval is a line from low to high at the marker's height
    spans = {round(float(ln.get_ydata()[0]), 6): tuple(ln.get_xdata()) for ln in ax.get_lines()
             if len(ln.get_xdata()) == 2 and ln.get_ydata()[0] == ln.get_ydata()[1]}
    for (y, _), r in zip(pts, want, strict=True):
        assert spans[round(y, 6)] == pytest.approx((r.gain.low, r.gain.high))
    # filled = separable, hollow = within the noise
    for (y, _), r in zip(pts, want, strict=True):
        m = next(m for m in marks if float(m.get_offsets()[0][1]) == y)
        face = m.get_facecolors()[0]
        assert (tuple(face[:3]) != (1.0, 1.0, 1.0)) == r.gain.separable
    assert any(r.gain.separable for r in want) and not all(r.gain.separable for r in want)
    # the zero line, k and the seeds in the title
    assert any(ln.get_xdata()[0] == 0 == ln.get_xdata()[1] for ln in ax.get_lines()
               if len(ln.get_xdata()) == 2)
    title = " ".join(fig.get_suptitle().split())
    assert "k = 1, 2" in title and "3 seeds" in title
    assert PRIMARY in ax.get_title(loc="right")


def test_selector_colours_are_the_colour_blind_safe_palette() -> None:
    pytest.importorskip("matplotlib")
    from gradts_cli.figures import plots

    cols = [plots.selector_colour(s) for s in ("gradts", "size", "random", "embed", "tag",
                                                "grad-cos")]
    assert len(set(cols)) == 6 and set(cols) <= set(plots.OKABE_ITO.values())


def test_figure_files_by_suffix_are_deterministic(result, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from gradts_cli import artefacts, figures
    from gradts_cli.figures import plots

    for suffix in ("png", "svg", "pdf"):
        a = artefacts.write_compare(result, tmp_path / f"a.{suffix}", None)
        b = artefacts.write_compare(result, tmp_path / f"b.{suffix}", None)
        assert a[0].read_bytes() == b[0].read_bytes()
    assert (tmp_path / "a.pdf").read_bytes()[:5] == b"%PDF-"
    assert "gradts (k=1)" in (tmp_path / "a.svg").read_text()
    with Image.open(tmp_path / "a.png") as im:
        assert im.size[0] == round(plots.COLUMN_W * figures.DPI)
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.std() > 20 and math.isfinite(px.mean())
