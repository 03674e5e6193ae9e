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
    (base / f"result-{w.rank}.json").write_text(json.dumps(out))
""")


def test_collectives_and_the_store_check_with_two_ranks(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    res = torchrun(script, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    got = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in range(2)]
    assert [g["rank"] for g in got] == [0, 1] and {g["backend"] for g in got} == {"gloo"}
    for g in got:
        assert g["nonce"] == {"from": 0}
        assert g["gathered"] == [[[0, 1, 2]], [[10, 11, 12], [13, 14, 15]]]
        assert g["merged"] == [i * 1.5 for i in range(7)]   # index 0 padded twice: kept once
        message, all_ranks = g["split_store"]
        assert "the ranks do not share one store" in message and "rank 1 (" in message
        assert all_ranks is True
    assert not (tmp_path / "shared" / ".dist").exists() or \
        list((tmp_path / "shared" / ".dist").iterdir()) == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    from gradts_engine import models
    from gradts_engine.tasks import demo

    return str(models.make_tiny_model(tmp_path_factory.mktemp("tiny"),
                                      words=demo.vocabulary({"train": 40})))


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
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun("-m", "gradts_cli", "--home", tmp_path / "two", "probe", "--model", tiny,
                   *TASKS, *FAST, "--json")
    assert two.returncode == 0, two.stderr[-2000:]
    _assert_same_store(tmp_path / "one", tmp_path / "two")
    doc = json.loads(two.stdout)                     # one JSON document: rank 0's
    assert [t["task"] for t in doc["tasks"]] == ["neg_movie", "match_city", "topic_home"]
    ranks = {t["task"]: t["info"]["distributed"]["rank"] for t in doc["tasks"]}
    assert sorted(set(ranks.values())) == [0, 1]     # both ranks probed tasks
    assert all(t["info"]["distributed"]["world_size"] == 2 for t in doc["tasks"])
    assert not any(t["cached"] for t in doc["tasks"])


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
    assert res.returncode == 8, res.stderr[-2000:]              # TrainingError's exit code
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank ") and " of 2: task 'huge': the training loss " \
        "became inf" in last, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and res.stdout == ""
    stored = {json.loads(m.read_text())["info"]["task_name"]
              for m in home.glob("probe/**/meta.json")}
    assert "huge" not in stored                                  # no partial entry
    assert list(home.glob(".tmp/*")) == []                       # nothing left half-written

    _diverging_task(tmp_path, 1.5)                               # the data fixed
    res = gradts(*args[:-2], "--json", "--nproc", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    doc = {t["task"]: t for t in json.loads(res.stdout)["tasks"]}
    assert sorted(doc) == ["huge", "neg_movie", "topic_home"]
    assert {t for t, d in doc.items() if d["cached"]} == stored  # finished units reused
    assert doc["huge"]["cached"] is False


@pytest.mark.slow
def test_nproc_gives_the_same_store_as_torchrun(tiny, tmp_path):
    args = ["probe", "--model", tiny, *TASKS, *FAST, "--json"]
    via_torchrun = torchrun("-m", "gradts_cli", "--home", tmp_path / "a", *args)
    assert via_torchrun.returncode == 0, via_torchrun.stderr[-2000:]
    via_nproc = gradts("--home", tmp_path / "b", *args, "--nproc", "2")
    assert via_nproc.returncode == 0, via_nproc.stderr[-2000:]
    _assert_same_store(tmp_path / "a", tmp_path / "b", rtol=0)
    assert json.loads(via_nproc.stdout)["tasks"][0]["info"]["distributed"]["world_size"] == 2
