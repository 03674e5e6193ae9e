"""Exports (gradts_engine/export.py): matrices to .npy/.csv, fg's kept rows to TSV/JSONL.

Checked against independent references: the planted arrays written into the store, SciPy's
Kendall tau-b for the instance taus, and the task's own train split for the kept rows.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import figstore
import numpy as np
import pytest
import scipy.stats

from gradts_engine import export
from gradts_engine.data import load_split
from gradts_engine.errors import MissingResultError, UsageError
from gradts_engine.results import load_result
from gradts_engine.selection.fg import load_fg_result


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    return figstore.shared(tmp_path_factory)


def reference_taus(base: np.ndarray, R: np.ndarray) -> np.ndarray:
    """SciPy's tau-b of vec(I_P) (as stored: layer-L1, float32) against each layer-L1 R_i."""
    x = (base / base.sum(-1, keepdims=True)).astype(np.float32).astype(np.float64).ravel()
    out = []
    for Ri in R.astype(np.float32).astype(np.float64):
        out.append(scipy.stats.kendalltau(x, (Ri / Ri.sum(-1, keepdims=True)).ravel()).statistic)
    return np.array(out)


def test_task_matrices_npy_and_csv(setup, tmp_path: Path) -> None:
    store, model, planted = setup
    res = [load_result(store, model, t) for t in figstore.TASKS]
    got = export.export_task_matrices(res, tmp_path / "npy")
    assert len(got.files) == 4 * len(res) and got.counts == {t: 4 for t in figstore.TASKS}
    for r in res:
        a = np.load(tmp_path / "npy" / f"{r.task}.during.npy", allow_pickle=False)
        assert a.shape == (figstore.L, figstore.H) and a.dtype == np.float32
        assert np.array_equal(a, r.matrix("during"))
    got = export.export_task_matrices(res, tmp_path / "csv", fmt="csv")
    (path,) = got.files
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["task", "estimator", "layer", "head", "value"]
    assert len(rows) == len(res) * 4 * figstore.L * figstore.H
    for row in rows[:: 7]:
        r = next(x for x in res if x.task == row["task"])
        m = r.store.load_arrays(r.entry, "task")[row["estimator"]]
        assert float(row["value"]) == pytest.approx(float(m[int(row["layer"]),
                                                            int(row["head"])]), rel=1e-7)


def test_instance_matrices_npy_and_csv_carry_the_index(setup, tmp_path: Path) -> None:
    store, model, planted = setup
    r = load_result(store, model, "neg_product")
    export.export_instance_matrices(r, tmp_path)
    idx = np.load(tmp_path / "neg_product.index.npy", allow_pickle=False)
    R = np.load(tmp_path / "neg_product.instances.npy", allow_pickle=False)
    assert idx.dtype == np.int64 and R.shape == (len(idx), figstore.L, figstore.H)
    assert np.allclose(R[np.argsort(idx)], planted["neg_product"].astype(np.float32))
    got = export.export_instance_matrices(r, tmp_path, fmt="csv")
    assert got.counts == {"neg_product": figstore.SIZES["train"]}
    with open(got.files[0], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["index", "l0h0", "l0h1"] and len(rows[0]) == 1 + figstore.L * figstore.H
    for row in rows[1:]:
        i = int(row[0])
        assert np.allclose(np.array(row[1:], float).reshape(figstore.L, figstore.H),
                           planted["neg_product"][i].astype(np.float32))


def test_unknown_format_is_a_usage_error(setup, tmp_path: Path) -> None:
    store, model, _ = setup
    with pytest.raises(UsageError, match="unknown matrix format 'parquet'"):
        export.export_task_matrices([load_result(store, model, "neg_movie")], tmp_path,
                                    fmt="parquet")


def test_fg_instance_taus_match_scipy(setup) -> None:
    store, model, planted = setup
    fg = load_fg_result(store, model, figstore.PRIMARY)
    taus = export.fg_instance_taus(store, fg)
    assert list(taus) == list(fg.aux)
    for task, (idx, tau) in taus.items():
        ref = reference_taus(planted["base"], planted[task])
        assert np.allclose(tau[np.argsort(idx)], ref, atol=1e-6)


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_kept_instances_are_the_original_rows(setup, tmp_path: Path, fmt: str) -> None:
    store, model, planted = setup
    reg = figstore.registry()
    fg = load_fg_result(store, model, figstore.PRIMARY)
    out = tmp_path / f"kept.{fmt}"
    got = export.export_kept_instances(store, fg, {t: reg.get(t) for t in fg.aux}, out,
                                       cut="tau ≥ 0.3")
    if fmt == "jsonl":
        recs = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        with open(out, newline="") as f:
            recs = list(csv.DictReader(f, delimiter="\t"))
        assert recs and {"task", "index", "label", "tau"} <= set(recs[0])
    for task in fg.aux:
        ref = reference_taus(planted["base"], planted[task])
        want = np.flatnonzero(ref >= 0.3)
        mine = [r for r in recs if r["task"] == task]
        assert sorted(int(r["index"]) for r in mine) == want.tolist()
        assert got.counts[task] == want.size
        spec = reg.get(task)
        split = load_split(spec, "train", store=store)
        for r in mine:
            i = int(r["index"])
            assert tuple(r[f] for f in spec.text_fields) == split.example(i)
            assert r["label"] == spec.labels[int(split.labels[i])]
            assert float(r["tau"]) == pytest.approx(ref[i], abs=1e-6)


def test_kept_instances_unknown_cut_names_the_choices(setup, tmp_path: Path) -> None:
    store, model, _ = setup
    reg = figstore.registry()
    fg = load_fg_result(store, model, figstore.PRIMARY)
    with pytest.raises(UsageError) as e:
        export.export_kept_instances(store, fg, {t: reg.get(t) for t in fg.aux},
                                     tmp_path / "k.jsonl", cut="tau ≥ 0.9")
    assert "no cut 'tau ≥ 0.9'" in e.value.message and "'tau ≥ 0.3'" in e.value.hint
    with pytest.raises(MissingResultError, match="not declared"):
        export.export_kept_instances(store, fg, {}, tmp_path / "k.jsonl")


def test_provenance_names_model_data_and_versions(setup) -> None:
    store, model, _ = setup
    r = load_result(store, model, "neg_movie")
    (p,) = export.provenance(store, [r.entry.key_path, "probe/gone/000000000000"])
    assert p.task == "neg_movie" and p.kind == "probe" and p.data == r.entry.spec["data"]
    assert p.model == r.model and p.versions["gradts"] and p.settings["epochs"] == 1


# ---------------------------------------------------------------------------------------------
# long-format CSV and the command line


def _long(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    from gradts_engine.longcsv import LONG_COLUMNS

    assert rows and list(rows[0]) == list(LONG_COLUMNS)
    return rows


def test_cli_csv_on_trial_fg_report(tmp_path: Path, tmp_path_factory, monkeypatch) -> None:
    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    base = ["--home", str(root)]
    p = figstore.PRIMARY
    assert main([*base, "trial", "--model", model, "--primary", p, "--candidates",
                 ",".join(figstore.TASKS[1:]), "--epochs", "1", "--seeds", "2", "--max-aux",
                 "2", "--patience", "2", "--device", "cpu", "--csv", str(tmp_path / "t.csv"),
                 "--json"]) == 0
    assert main([*base, "fg", "--model", model, "--primary", p, "--sweep", "0,0.3,0.6",
                 "--epochs", "1", "--seeds", "2", "--device", "cpu",
                 "--csv", str(tmp_path / "f.csv"), "--json"]) == 0
    assert main([*base, "report", "--model", model, "--primary", p, "--json",
                 "--csv", str(tmp_path / "r.csv")]) == 0
    from gradts_engine.selection.trial import load_trial_summary
    from gradts_engine.store import Store

    t = load_trial_summary(Store(root), model, p)
    rows = _long(tmp_path / "t.csv")
    for r in (*t.trials, *t.comparisons):
        got = [float(x["value"]) for x in rows if x["set"] == "+".join(r.aux)
               and x["quantity"] == t.main_metric]
        assert got == pytest.approx(list(r.scores))
    sel = [x for x in rows if x["quantity"] == "selected" and x["value"] == "1"]
    assert [x["set"] for x in sel] == ["+".join(t.selected)]
    fg = load_fg_result(Store(root), model, p)
    rows = _long(tmp_path / "f.csv")
    for r in fg.rows:
        kept = {x["task"]: int(x["value"]) for x in rows
                if x["set"] == r.cut.label and x["quantity"] == "kept"}
        assert kept == {k.task: k.kept for k in r.kept}
    stages = {x["stage"] for x in _long(tmp_path / "r.csv")}
    assert stages == {"probe", "corr", "trial", "fg", "cost"}


def test_cli_cache_export(tmp_path: Path, tmp_path_factory, monkeypatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from gradts_cli.app import main

    root, model = figstore.cli_store(tmp_path, tmp_path_factory, monkeypatch)
    base = ["--home", str(root), "cache", "export"]
    out = tmp_path / "exp"
    assert main([*base, str(out), "--model", model, "--task", "neg_product",
                 "--instances"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "neg_product.after.npy", "neg_product.after_raw.npy", "neg_product.during.npy",
        "neg_product.during_raw.npy", "neg_product.index.npy", "neg_product.instances.npy"]
    kept = tmp_path / "kept.jsonl"
    assert main([*base, str(kept), "--model", model, "--kept", figstore.PRIMARY,
                 "--cut", "tau ≥ 0.6"]) == 0
    recs = [json.loads(line) for line in kept.read_text().splitlines()]
    from gradts_engine.store import Store

    fg = load_fg_result(Store(root), model, figstore.PRIMARY)
    row = next(r for r in fg.rows if r.cut.label == "tau ≥ 0.6")
    assert len(recs) == row.kept_total and all(r["tau"] >= 0.6 for r in recs)
    capsys.readouterr()
    assert main([*base, str(kept), "--model", model, "--kept", figstore.PRIMARY,
                 "--instances"]) == 2
    assert "--kept exports fg's kept rows" in capsys.readouterr().err
    assert main([*base, str(kept), "--model", model, "--kept", "topic_news"]) == 9
    assert "gradts fg --model" in capsys.readouterr().err
