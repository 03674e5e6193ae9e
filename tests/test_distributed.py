"""Scale-out (DESIGN.md §5): assignment, shards, collectives, and probe under torchrun.

The pure functions are checked against independent references (brute force over every
assignment, ``torch.utils.data.DistributedSampler``). The process-level tests launch real
processes with ``python -m torch.distributed.run`` (gloo on the CPU, 2 ranks) in a subprocess
and compare the store they leave with a 1-process run of the same command.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradts_engine import distributed
from gradts_engine.errors import ConfigError

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "1", "--batch-size", "16", "--max-length", "64", "--max-train-examples",
        "24", "--device", "cpu"]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------
def test_world_from_the_torchrun_environment():
    assert distributed.from_env({}) == distributed.World(0, 1, 0)
    w = distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                              "MASTER_ADDR": "node0"})
    assert (w.rank, w.size, w.local_rank, w.is_main, w.distributed) == (3, 4, 1, False, True)
    with pytest.raises(ConfigError, match="RANK=4 and WORLD_SIZE=4"):
        distributed.from_env({"RANK": "4", "WORLD_SIZE": "4", "MASTER_ADDR": "x"})
    with pytest.raises(ConfigError, match="MASTER_ADDR is not set"):
        distributed.from_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="WORLD_SIZE='two' is not an integer"):
        distributed.from_env({"WORLD_SIZE": "two"})
    assert distributed.describe(w) == "rank 3 of 4"


def test_world_size_one_is_the_same_code_with_identity_collectives(tmp_path):
    w = distributed.init("cpu")
    assert not w.distributed and w.backend is None
    t = torch.ones(3)
    assert distributed.all_reduce_sum_(t, w) is t and t.tolist() == [1, 1, 1]
    assert distributed.broadcast_json(w, {"a": 1}) == {"a": 1}
    assert distributed.all_gather_json(w, [1, 2]) == [[1, 2]]
    distributed.check_same_store(w, tmp_path)  # nothing to check, nothing written
    assert list(tmp_path.iterdir()) == []


def _makespan(costs, plan):
    return max(sum(costs[i] for i in units) for units in plan)


def test_lpt_assignment_largest_first_and_within_four_thirds_of_the_optimum():
    costs = [5, 9, 2, 7, 7, 3]
    plan = distributed.assign_lpt(costs, 2)
    assert plan == ((1, 0, 5), (3, 4, 2))     # 9->r0, 7->r1, 7->r1, 5->r0, 3->r0, 2->r1
    assert sorted(itertools.chain(*plan)) == list(range(len(costs)))
    for units in plan:                         # each rank runs its units largest first
        assert [costs[i] for i in units] == sorted((costs[i] for i in units), reverse=True)
    assert distributed.assign_lpt([], 3) == ((), (), ())
    assert distributed.assign_lpt([1.0], 3) == ((0,), (), ())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=7), st.integers(1, 3))
def test_lpt_against_brute_force(costs, world):
    plan = distributed.assign_lpt(costs, world)
    assert sorted(itertools.chain(*plan)) == list(range(len(costs)))
    best = min(max(sum(c for c, r in zip(costs, ranks, strict=True) if r == k)
                   for k in range(world))
               for ranks in itertools.product(range(world), repeat=len(costs)))
    # Graham's bound for LPT: at most (4/3 - 1/(3W)) times the optimal makespan
    assert _makespan(costs, plan) <= (4 / 3 - 1 / (3 * world)) * best + 1e-9
    assert distributed.assign_lpt(costs, world) == plan   # every rank computes the same


@pytest.mark.parametrize("n, world", [(7, 2), (8, 2), (10, 3), (1, 4), (5, 8)])
def test_shards_follow_the_distributed_sampler(n, world):
    from torch.utils.data import DistributedSampler

    for rank in range(world):
        ref = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
        assert distributed.shard_indices(n, rank, world).tolist() == ref


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 40), st.integers(1, 5), st.integers(0, 1000))
def test_merge_by_index_keeps_every_index_once_in_order(n, world, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 2, 3)).astype(np.float32)           # (N, L, H)
    shards = []
    for r in range(world):
        idx = distributed.shard_indices(n, r, world)
        perm = rng.permutation(idx.size)                              # shards in any order
        shards.append((idx[perm], values[idx[perm]]))
    if n == 0:
        merged = distributed.merge_shards(0, shards)
        assert merged.shape[0] == 0
        return
    merged = distributed.merge_shards(n, shards[::-1])
    np.testing.assert_array_equal(merged, values)


def test_merge_reports_a_missing_or_foreign_index():
    v = np.zeros((3, 1))
    with pytest.raises(ValueError, match="1 of 4 indices are in no shard \\(first: 3\\)"):
        distributed.merge_shards(4, [(np.array([0, 1]), v[:2]), (np.array([2, 0]), v[:2])])
    with pytest.raises(ValueError, match="index 5, outside the dataset's 0..3"):
        distributed.merge_shards(4, [(np.array([0, 1, 5]), v)])


def test_batch_slices_cover_the_global_batch_in_order():
    idx = np.array([9, 4, 7, 1, 3])
    parts = [distributed.batch_slice(idx, r, 2) for r in range(2)]
    assert [p.tolist() for p in parts] == [[9, 4, 7], [1, 3]]
    assert [distributed.batch_slice(idx[:1], r, 2).tolist() for r in range(2)] == [[9], []]


# ---------------------------------------------------------------------------------------------
# Two processes under torchrun
# ---------------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def torchrun(*args: str | Path, nproc: int = 2, timeout: float = 240,
             **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           str(nproc), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=_env(**env))


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed launch printed: its start (each rank's own message comes before the
    launcher's traceback) and its end."""
    err = proc.stderr
    return err if len(err) <= 8000 else err[:5000] + "\n[...]\n" + err[-3000:]


def gradts(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gradts_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env())


COLLECTIVES = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from gradts_engine import distributed
    from gradts_engine.errors import StoreError

    w = distributed.init("cpu")
    out = {"rank": w.rank, "size": w.size, "backend": w.backend}
    out["nonce"] = distributed.broadcast_json(w, {"from": w.rank})
    rows = np.arange(3 * (w.rank + 1), dtype=np.float32).reshape(-1, 3) + 10 * w.rank
    out["gathered"] = [r.tolist() for r in distributed.all_gather_rows(w, rows)]
    n = 7
    idx = distributed.shard_indices(n, w.rank, w.size)
    shards = list(zip(distributed.all_gather_rows(w, idx),
                      distributed.all_gather_rows(w, idx * 1.5)))
    out["merged"] = distributed.merge_shards(n, shards).tolist()
    base = Path(sys.argv[1])
    distributed.check_same_store(w, base / "shared")
    try:
        distributed.check_same_store(w, base / f"own{w.rank}")
        out["split_store"] = None
    except StoreError as e:
        out["split_store"] = [e.message, e.details.get("all_ranks")]
    import time
    board = distributed.Board.open(w, base / "shared")   # rank 1's events reach rank 0 live
    got = []
    if w.rank == 1:
        board.post({"i": 4, "seconds": 1.5})
        time.sleep(0.5)
        board.post({"i": 2, "seconds": 0.25})
    board.wait(lambda: len(got) >= 2, got.extend, poll_s=0.05)
    out["board"] = got
    distributed.barrier(w)
    board.close()
    out["board_left"] = board.folder is not None and board.folder.exists()
    import torch.distributed as dist
    if w.rank == 1:
        time.sleep(1.0)   # rank 0 reaches finish() first: it must wait for rank 1
    out["t_before"] = time.time()
    distributed.finish(ok=True)
    out["t_after"], out["left"] = time.time(), not dist.is_initialized()
    (base / f"result-{w.rank}.json").write_text(json.dumps(out))
""")


def test_collectives_and_the_store_check_with_two_ranks(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    res = torchrun(script, tmp_path)
    assert res.returncode == 0, _why(res)
    got = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in range(2)]
    assert [g["rank"] for g in got] == [0, 1] and {g["backend"] for g in got} == {"gloo"}
    assert got[0]["board"] == [{"i": 4, "seconds": 1.5}, {"i": 2, "seconds": 0.25}]
    assert got[1]["board"] == [] and not got[0]["board_left"]   # read by rank 0 only; removed
    assert all(g["left"] for g in got)        # finish(): every rank left the group ...
    assert got[0]["t_after"] >= got[1]["t_before"]   # ... rank 0 only once rank 1 was there
    for g in got:
        assert g["nonce"] == {"from": 0}
        assert g["gathered"] == [[[0, 1, 2]], [[10, 11, 12], [13, 14, 15]]]
        assert g["merged"] == [i * 1.5 for i in range(7)]   # index 0 padded twice: kept once
        message, all_ranks = g["split_store"]
        assert "the ranks do not share one store" in message and "rank 1 (" in message
        assert all_ranks is True
    assert not (tmp_path / "shared" / ".dist").exists() or \
        list((tmp_path / "shared" / ".dist").iterdir()) == []


def _probe_matrices(home: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every probe entry's stored task and instance arrays, by task name."""
    from safetensors.numpy import load_file

    out = {}
    for meta in sorted(home.glob("probe/**/meta.json")):
        info = json.loads(meta.read_text())["info"]
        arrays = dict(load_file(str(meta.parent / "task.safetensors")))
        chunks = [load_file(str(meta.parent / c)) for c in info["chunks"]]
        arrays["index"] = np.concatenate([c["index"] for c in chunks])
        arrays["R"] = np.concatenate([c["R"] for c in chunks])
        out[info["task_name"]] = arrays
    return out


def _assert_same_store(a: Path, b: Path, rtol: float = 1e-6) -> None:
    ma, mb = _probe_matrices(a), _probe_matrices(b)
    assert sorted(ma) == sorted(mb) and ma
    keys_a = sorted(p.parent.relative_to(a) for p in a.glob("probe/**/meta.json"))
    keys_b = sorted(p.parent.relative_to(b) for p in b.glob("probe/**/meta.json"))
    assert keys_a == keys_b                       # the same keys: same settings, same data
    for task in ma:
        np.testing.assert_array_equal(ma[task]["index"], mb[task]["index"])
        for name in ("during", "after", "during_raw", "after_raw", "R"):
            np.testing.assert_allclose(ma[task][name], mb[task][name], rtol=rtol, atol=1e-9,
                                       err_msg=f"{task} {name}")


TASKS = ["--tasks", "neg_movie,match_city,topic_home"]


@pytest.mark.slow
def test_task_parallel_probe_equals_one_process(tiny, tmp_path):
    """3 tasks on 2 ranks: the same entries and matrices (1 thread per process: rtol 1e-6)."""
    one = gradts("--home", tmp_path / "one", "probe", "--model", tiny, *TASKS, *FAST, "--json")
    assert one.returncode == 0, _why(one)
    two = torchrun("-m", "gradts_cli", "--home", tmp_path / "two", "probe", "--model", tiny,
                   *TASKS, *FAST, "--json")
    assert two.returncode == 0, _why(two)
    _assert_same_store(tmp_path / "one", tmp_path / "two")
    doc = json.loads(two.stdout)                     # one JSON document: rank 0's
    assert [t["task"] for t in doc["tasks"]] == ["neg_movie", "match_city", "topic_home"]
    ranks = {t["task"]: t["info"]["distributed"]["rank"] for t in doc["tasks"]}
    assert sorted(set(ranks.values())) == [0, 1]     # both ranks probed tasks
    assert all(t["info"]["distributed"]["world_size"] == 2 for t in doc["tasks"])
    assert not any(t["cached"] for t in doc["tasks"])
    probed = [ln for ln in two.stderr.splitlines() if " probed in " in ln]   # rank 0's lines
    assert sorted(ln.split(": ", 1)[1].split()[0] for ln in probed) == sorted(
        ["neg_movie", "match_city", "topic_home"]), probed   # every task once, rank 1's too
    assert not list((tmp_path / "two" / ".dist").glob("board-*"))   # the board is removed


@pytest.fixture(scope="module")
def tiny_nodrop(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model without dropout: a training step is a function of the batch alone."""
    from gradts_engine import models
    from gradts_engine.tasks import demo

    path = models.make_tiny_model(tmp_path_factory.mktemp("tiny0"),
                                  words=demo.vocabulary({"train": 40}))
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.slow
def test_data_parallel_probe_of_one_task_equals_one_process(tiny_nodrop, tmp_path):
    """One task, 2 ranks: DDP fine-tuning (global batch 16 cut 8+8, the last 7 cut 4+3) and
    the sharded after pass. 23 examples (odd): the sampler pads one duplicate, dropped.

    Tolerance: rtol 1e-4 / atol 1e-6 (float32 reductions over other batch compositions;
    measured differences about 1e-7). lr 1e-3 for 2 epochs (4 steps) so that the weights move:
    a wrong gradient average would change the later steps' gate gradients and the after pass.
    """
    args = ["probe", "--model", tiny_nodrop, "--task", "match_city", "--epochs", "2",
            "--batch-size", "16", "--max-length", "64", "--max-train-examples", "23",
            "--lr", "1e-3", "--device", "cpu", "--json"]
    one = gradts("--home", tmp_path / "one", *args)
    assert one.returncode == 0, _why(one)
    two = torchrun("-m", "gradts_cli", "--home", tmp_path / "two", *args)
    assert two.returncode == 0, _why(two)
    a, b = _probe_matrices(tmp_path / "one"), _probe_matrices(tmp_path / "two")
    assert b["match_city"]["index"].tolist() == list(range(23))   # each index once, in order
    assert b["match_city"]["R"].shape == (23, 2, 4)
    for name in ("during", "after", "during_raw", "after_raw", "R"):
        np.testing.assert_allclose(b["match_city"][name], a["match_city"][name], rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    info1 = json.loads(one.stdout)["tasks"][0]["info"]
    info2 = json.loads(two.stdout)["tasks"][0]["info"]
    assert info2["distributed"] == {"rank": 0, "world_size": 2, "backend": "gloo",
                                    "parallel": "data"}
    assert info2["train"]["steps"] == info1["train"]["steps"] == 4   # the same schedule
    assert info2["train"]["final_loss"] == pytest.approx(info1["train"]["final_loss"],
                                                         rel=1e-5)


MTL = textwrap.dedent("""
    import json, sys
    import torch
    from gradts_engine import distributed
    from gradts_engine.config import RunSettings
    from gradts_engine.mtl import MTLSettings, train_mtl
    from gradts_engine.store import Store
    from gradts_engine.tasks import build_registry

    torch.set_num_threads(1)
    model, home, out = sys.argv[1:4]
    reg = build_registry(include_user=False, demo_sizes={"train": 23, "dev": 16})
    w = distributed.init("cpu")
    r = train_mtl(model, reg.get("neg_movie"), [reg.get("match_city")], store=Store(home),
                  run=RunSettings(device="cpu", seed=3),
                  settings=MTLSettings(epochs=2, batch_size=8, lr=1e-3, max_length=48),
                  data_parallel=True)
    doc = {"world": w.size, "train_loss": [dict(e.train_loss) for e in r.epochs],
           "examples": [dict(e.examples) for e in r.epochs],
           "dev": [dict(e.dev_metrics) for e in r.epochs], "best": r.best_epoch,
           "pred": r.dev_predictions.tolist()}
    open(f"{out}-{w.rank}.json", "w").write(json.dumps(doc))
""")


@pytest.mark.slow
def test_ddp_multi_task_training_equals_one_process(tiny_nodrop, tmp_path):
    """Primary + 1 auxiliary, 23 training examples each (odd), batch 8: DDP on 2 ranks gives
    the one process's epoch losses (rtol 1e-4: float32 sums over other batch splits),
    examples seen, dev metrics and predictions."""
    script = tmp_path / "mtl.py"
    script.write_text(MTL)
    one = subprocess.run([sys.executable, str(script), tiny_nodrop, str(tmp_path / "h1"),
                          str(tmp_path / "one")], capture_output=True, text=True, timeout=240,
                         cwd=ROOT, env=_env())
    assert one.returncode == 0, _why(one)
    two = torchrun(script, tiny_nodrop, tmp_path / "h2", tmp_path / "two")
    assert two.returncode == 0, _why(two)
    a = json.loads((tmp_path / "one-0.json").read_text())
    b0, b1 = (json.loads((tmp_path / f"two-{r}.json").read_text()) for r in range(2))
    assert (a["world"], b0["world"]) == (1, 2)
    assert b0 == b1                                          # the ranks agree on everything
    assert b0["examples"] == a["examples"] and b0["best"] == a["best"]
    assert b0["pred"] == a["pred"]
    for ea, eb in zip(a["train_loss"], b0["train_loss"], strict=True):
        assert eb == pytest.approx(ea, rel=1e-4)
    assert a["train_loss"][0] != a["train_loss"][1]          # the weights moved
    for ea, eb in zip(a["dev"], b0["dev"], strict=True):
        assert eb == pytest.approx(ea, rel=1e-6)


def _diverging_task(tmp_path: Path, scale: float) -> Path:
    """A regression task whose labels (+-scale) make the squared error overflow at 1e30."""
    train = tmp_path / "huge.tsv"
    rows = [f"the film was good {i}\t{scale if i % 2 else -scale}" for i in range(24)]
    train.write_text("sentence\tscore\n" + "\n".join(rows) + "\n")
    toml = tmp_path / "tasks.toml"
    toml.write_text(textwrap.dedent(f"""
        [[task]]
        name = "huge"
        kind = "regression"
        text = ["sentence"]
        label = "score"
        [task.source]
        type = "local"
        format = "tsv"
        files = {{ train = "{train}" }}
    """))
    return toml


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_with_its_error_and_the_rerun_completes(tiny, tmp_path):
    home = tmp_path / "h"
    tasks_file = _diverging_task(tmp_path, 1e30)
    args = ["--home", home, "--tasks-file", tasks_file, "probe", "--model", tiny,
            "--tasks", "neg_movie,huge,topic_home", *FAST, "--nproc", "2"]
    res = gradts(*args)
    assert res.returncode == 8, _why(res)              # TrainingError's exit code
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank ") and " of 2: task 'huge': the training loss " \
        "became inf" in last, _why(res)
    assert "Traceback" not in res.stderr and res.stdout == ""
    stored = {json.loads(m.read_text())["info"]["task_name"]
              for m in home.glob("probe/**/meta.json")}
    assert "huge" not in stored                                  # no partial entry
    assert list(home.glob(".tmp/*")) == []                       # nothing left half-written

    _diverging_task(tmp_path, 1.5)                               # the data fixed
    res = gradts(*args[:-2], "--json", "--nproc", "2")
    assert res.returncode == 0, _why(res)
    doc = {t["task"]: t for t in json.loads(res.stdout)["tasks"]}
    assert sorted(doc) == ["huge", "neg_movie", "topic_home"]
    assert {t for t, d in doc.items() if d["cached"]} == stored  # finished units reused
    assert doc["huge"]["cached"] is False


@pytest.mark.slow
def test_nproc_gives_the_same_store_as_torchrun(tiny, tmp_path):
    args = ["probe", "--model", tiny, *TASKS, *FAST, "--json"]
    via_torchrun = torchrun("-m", "gradts_cli", "--home", tmp_path / "a", *args)
    assert via_torchrun.returncode == 0, _why(via_torchrun)
    via_nproc = gradts("--home", tmp_path / "b", *args, "--nproc", "2")
    assert via_nproc.returncode == 0, _why(via_nproc)
    _assert_same_store(tmp_path / "a", tmp_path / "b", rtol=0)
    assert json.loads(via_nproc.stdout)["tasks"][0]["info"]["distributed"]["world_size"] == 2


# ---------------------------------------------------------------------------------------------
# trial, compare under torchrun: the ledger's runs spread over the ranks
# ---------------------------------------------------------------------------------------------
SEL_TASKS = "neg_movie,match_city,topic_home"
SEL_FAST = ["--batch-size", "8", "--lr", "1e-3", "--max-length", "48", "--max-train-examples",
            "24", "--device", "cpu"]


@pytest.fixture(scope="module")
def probed(tiny_nodrop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the 3 tasks probed (1 process) by the no-dropout tiny model."""
    home = tmp_path_factory.mktemp("probed") / "home"
    res = gradts("--home", home, "probe", "--model", tiny_nodrop, "--tasks", SEL_TASKS, *FAST)
    assert res.returncode == 0, res.stderr[-2000:]
    return home


def _homes(probed: Path, tmp_path: Path, *names: str) -> list[Path]:
    import shutil

    out = []
    for n in names:
        shutil.copytree(probed, tmp_path / n)
        out.append(tmp_path / n)
    return out


def _runs(home: Path) -> dict[str, tuple[dict, dict, dict]]:
    """Every stored ledger run: key path -> (result record, info, dev arrays)."""
    from safetensors.numpy import load_file

    out = {}
    for meta in sorted(home.glob("trial-run/**/meta.json")):
        d = meta.parent
        out[str(d.relative_to(home))] = (json.loads((d / "result.json").read_text()),
                                         json.loads(meta.read_text())["info"],
                                         dict(load_file(str(d / "dev.safetensors"))))
    return out


def _assert_same_runs(a: Path, b: Path, rtol: float) -> dict[str, tuple[dict, dict, dict]]:
    """The same run keys, epochs, best epochs, predictions; losses within ``rtol``."""
    ra, rb = _runs(a), _runs(b)
    assert sorted(ra) == sorted(rb) and ra                  # same keys: same runs, settings
    for k in ra:
        (x, _, xa), (y, _, ya) = ra[k], rb[k]
        assert x["best_epoch"] == y["best_epoch"], k
        assert x["examples_seen"] == y["examples_seen"], k
        np.testing.assert_array_equal(xa["predictions"], ya["predictions"], err_msg=k)
        for ex, ey in zip(x["epochs"], y["epochs"], strict=True):
            assert ey["train_loss"] == pytest.approx(ex["train_loss"], rel=rtol), k
            assert ey["dev_metrics"] == pytest.approx(ex["dev_metrics"], rel=1e-9), k
    return rb


TRIAL = ["trial", "--primary", "neg_movie", "--candidates", "match_city,topic_home",
         "--epochs", "2", *SEL_FAST, "--json"]


@pytest.mark.slow
def test_data_parallel_trial_equals_one_process(tiny_nodrop, probed, tmp_path):
    """One seed: every set is one run, fewer than the ranks, so both ranks train each run
    together (DDP). Tolerance: rtol 1e-4 on the epoch losses (float32 sums over other batch
    splits; measured about 1e-7); best epochs, predictions and the selected set equal."""
    one, two = _homes(probed, tmp_path, "one", "two")
    r1 = gradts("--home", one, *TRIAL[:1], "--model", tiny_nodrop, *TRIAL[1:])
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = torchrun("-m", "gradts_cli", "--home", two, *TRIAL[:1], "--model", tiny_nodrop,
                  *TRIAL[1:])
    assert r2.returncode == 0, r2.stderr[-2000:]
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)       # one document: rank 0's
    assert b["selected"] == a["selected"] and b["trained"] == a["trained"] >= 2
    assert [t["aux"] for t in b["trials"]] == [t["aux"] for t in a["trials"]]
    for ta, tb in zip(a["trials"], b["trials"], strict=True):
        assert tb["scores"] == pytest.approx(ta["scores"], rel=1e-9)
        assert tb["cached"] == ta["cached"] == [False]
    runs = _assert_same_runs(one, two, rtol=1e-4)
    for _, info, _ in runs.values():                          # rank 0 wrote, both trained
        d = info["distributed"]
        assert (d["parallel"], d["rank"], d["world_size"]) == ("data", 0, 2)
        assert [r["rank"] for r in d["ranks"]] == [0, 1]
        assert all(r["examples_per_s"] > 0 for r in d["ranks"])
    assert b["distributed"]["world_size"] == 2 and a["distributed"] == {}
    assert len(list(two.glob("trial/**/meta.json"))) == 1     # one summary (rank 0's)

    from gradts_engine.report import build_report
    from gradts_engine.store import Store

    # the cost ledger: device-seconds summed over both ranks of each DDP run, and wall time
    ranks = [r for run in b["distributed"]["runs"].values() for r in run["ranks"]]
    own = sum(t["seconds"] for t in b["trials"])              # each run's time on rank 0
    row_b = next(c for c in build_report(Store(two), tiny_nodrop, "neg_movie").costs
                 if c.stage == "trial neg_movie")
    assert row_b.seconds == pytest.approx(own + sum(r["seconds"] for r in ranks
                                                    if r["rank"] == 1))
    assert row_b.wall_s == pytest.approx(b["seconds"]) and "2 processes" in row_b.detail
    row_a = next(c for c in build_report(Store(one), tiny_nodrop, "neg_movie").costs
                 if c.stage == "trial neg_movie")
    assert row_a.seconds == pytest.approx(sum(t["seconds"] for t in a["trials"]))


@pytest.mark.slow
def test_nproc_trial_gives_the_same_store_as_torchrun(tiny_nodrop, probed, tmp_path):
    """Two seeds: each set's 2 runs go one to each rank (task parallelism, no DDP), so the
    store equals torchrun's exactly."""
    a, b = _homes(probed, tmp_path, "a", "b")
    args = [*TRIAL[:1], "--model", tiny_nodrop, *TRIAL[1:], "--seeds", "2", "--max-aux", "1"]
    via_torchrun = torchrun("-m", "gradts_cli", "--home", a, *args)
    assert via_torchrun.returncode == 0, via_torchrun.stderr[-2000:]
    via_nproc = gradts("--home", b, *args, "--nproc", "2")
    assert via_nproc.returncode == 0, via_nproc.stderr[-2000:]
    runs = _assert_same_runs(a, b, rtol=0)
    assert {info["distributed"]["rank"] for _, info, _ in runs.values()} == {0, 1}
    assert {info["distributed"]["parallel"] for _, info, _ in runs.values()} == {"task"}
    doc = json.loads(via_nproc.stdout)
    assert doc["selected"] == json.loads(via_torchrun.stdout)["selected"]


@pytest.mark.slow
def test_task_parallel_compare_equals_one_process(tiny_nodrop, probed, tmp_path):
    """gradts compare with 2 seeds and 2 selectors: 7 distinct runs known up front, one batch
    spread over 2 ranks (LPT: 4 and 3); every stored run equals the 1-process one (1 thread
    per process: rtol 1e-6, measured equal)."""
    one, two = _homes(probed, tmp_path, "one", "two")
    args = ["compare", "--model", tiny_nodrop, "--primary", "neg_movie", "--candidates",
            "match_city,topic_home", "--k", "1", "--seeds", "2", "--selectors", "gradts,random",
            "--epochs", "1", *SEL_FAST, "--json"]
    r1 = gradts("--home", one, *args)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = torchrun("-m", "gradts_cli", "--home", two, *args)
    assert r2.returncode == 0, r2.stderr[-2000:]
    runs = _assert_same_runs(one, two, rtol=1e-6)
    per_rank = [sum(info["distributed"]["rank"] == r for _, info, _ in runs.values())
                for r in range(2)]
    assert min(per_rank) >= 2 and sum(per_rank) == len(runs) == 7
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert b["trained"] == a["trained"] == 7
    rows = [(r["selector"], r["k"], r["scores"], r["cached"]) for r in a["primaries"][0]["rows"]]
    assert [(r["selector"], r["k"], r["scores"], r["cached"])
            for r in b["primaries"][0]["rows"]] == rows


@pytest.mark.slow
def test_fg_under_torchrun_equals_one_process(tiny_nodrop, probed, tmp_path):
    """GradTS-fg with 3 cuts: the baseline (1 run: DDP on both ranks) then the cuts' runs as
    one batch (2 distinct: one per rank; a cut keeping what another kept is reused)."""
    one, two = _homes(probed, tmp_path, "one", "two")
    args = ["fg", "--model", tiny_nodrop, "--primary", "neg_movie", "--aux",
            "match_city,topic_home", "--sweep", "0.0,0.2,0.4", "--epochs", "1", "--batch-size",
            "8", "--lr", "1e-3", "--max-length", "48", "--device", "cpu", "--json"]
    r1 = gradts("--home", one, *args)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = torchrun("-m", "gradts_cli", "--home", two, *args)
    assert r2.returncode == 0, r2.stderr[-2000:]
    runs = _assert_same_runs(one, two, rtol=1e-4)
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert b["trained"] == a["trained"] == len(runs)
    assert [(r["scores"], r["cached"]) for r in b["rows"]] == \
        [(r["scores"], r["cached"]) for r in a["rows"]]
    who = {k.split("/")[3]: info["distributed"] for k, (_, info, _) in runs.items()}
    assert who.pop("alone")["parallel"] == "data"
    assert {d["parallel"] for d in who.values()} == {"task"}
    assert sorted(d["rank"] for d in who.values()) == [0, 1]
    # --force: rank 0 recomputes each selection, the other rank reads it; the same kept sets
    r3 = torchrun("-m", "gradts_cli", "--home", two, *args, "--force")
    assert r3.returncode == 0, _why(r3)
    from gradts_engine.selection.cuts import SELECTION_KIND, load_selection
    from gradts_engine.store import Store

    def kept(home: Path) -> dict[str, dict[str, list[int]]]:
        store = Store(home)
        return {e.key_path.split("/")[-2]: {t: v.tolist() for t, v in
                                            load_selection(store, e).items()}
                for e in store.entries(SELECTION_KIND)}

    assert kept(two) == kept(one) and len(kept(one)) == 3
    c = json.loads(r3.stdout)
    assert [r["scores"] for r in c["rows"]] == [r["scores"] for r in b["rows"]]


FLAKY = textwrap.dedent("""
    # gradts with a training failure injected on one rank (FAIL_RANK) for runs whose label
    # contains FAIL_ON: what a rank that raises (a diverging run, a GPU fault) looks like
    import os, sys
    from gradts_engine import mtl
    from gradts_engine.errors import TrainingError

    real = mtl.train_mtl

    def flaky(*args, label=None, **kwargs):
        if os.environ.get("RANK") == os.environ.get("FAIL_RANK") and \\
                os.environ.get("FAIL_ON", "\\0") in (label or ""):
            raise TrainingError(f"multi-task run {label}: injected failure",
                                hint="fix the injected fault")
        return real(*args, label=label, **kwargs)

    mtl.train_mtl = flaky
    from gradts_cli.app import run
    sys.argv = ["gradts", *sys.argv[1:]]
    run()
""")


@pytest.mark.slow
def test_a_failing_rank_ends_the_trial_with_its_error_and_the_rerun_completes(
        tiny_nodrop, probed, tmp_path):
    (home,) = _homes(probed, tmp_path, "h")
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    errors = tmp_path / "errors"
    errors.mkdir()
    args = [script, "--home", home, *TRIAL[:1], "--model", tiny_nodrop, *TRIAL[1:],
            "--seeds", "2", "--max-aux", "1"]
    res = torchrun(*args, FAIL_RANK="1", FAIL_ON=" + ", GRADTS_DIST_ERRORS=str(errors))
    assert res.returncode != 0 and res.stdout == ""
    record = json.loads((errors / "rank-1.json").read_text())
    assert record["code"] == 8                                   # TrainingError's exit code
    assert record["message"].startswith("rank 1 of 2: multi-task run neg_movie + ") and \
        record["message"].endswith(": injected failure"), record
    assert not (errors / "rank-0.json").exists()                 # rank 0 did not fail
    stored = {k: info for k, (_, info, _) in _runs(home).items()}
    assert sum("/alone/" in k for k in stored) == 2              # the baseline's 2 seeds
    assert all("/alone/" in k or info["distributed"]["rank"] == 0
               for k, info in stored.items())                    # nothing of rank 1's failure
    assert list(home.glob(".tmp/*")) == [] and list(home.glob("trial/**/meta.json")) == []

    res = torchrun(*args)                                        # the fault gone: rerun
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["baseline"]["cached"] == [True, True]             # finished units reused
    assert doc["trials"][1]["cached"] != [True, True]
    assert doc["trained"] == 4 - len(stored)
    assert len(_runs(home)) == 4
