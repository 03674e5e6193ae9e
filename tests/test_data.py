"""Tests of gradts_engine.data: loading (synthetic, local GLUE-like files, Hub offline),
labels, bad input, fingerprints, tokenisation cache, batching and collation. Offline and fast:
small files written in tmp dirs mimic the original GLUE TSV layouts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from gradts_engine import data
from gradts_engine.data import hub, splits, tokens
from gradts_engine.errors import (
    ConfigError,
    CorruptEntryError,
    DataError,
    OfflineError,
    TaskError,
)
from gradts_engine.store import Store
from gradts_engine.tasks.registry import build_registry, load_task_file
from gradts_engine.tasks.spec import HubSource, LocalSource, SyntheticSource, TaskSpec

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on",
         "mat", "not", "good", "bad", "movie", "is", "was", "he", "said", "\"", ".", ",", "##s"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("tok")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizerFast.from_pretrained(str(d))


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "home")


def write(path: Path, text: str, bom: bool = False) -> str:
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    return str(path)


def local_spec(name="t", files=None, *, text=("sentence",), label="label", labels=("0", "1"),
               kind="classification", fmt="tsv", header=True, quoting=False) -> TaskSpec:
    return TaskSpec(name=name, kind=kind, text_fields=tuple(text), label_field=label,
                    labels=tuple(labels) if kind == "classification" else (),
                    source=LocalSource(files or {}, fmt, header, quoting))


@pytest.fixture
def cola_like(tmp_path):
    """CoLA's layout: no header; source, label, original label (empty), sentence."""
    rows = ["gj04\t1\t\tDay by day the facts are getting murkier.",
            "gj04\t0\t*\tThe more books I ask to whom he will give, the more he reads.",
            'cj99\t1\t\tHe said " hi " to 0123 people.',
            "cj99\t1\t\tNA"]
    train = write(tmp_path / "train.tsv", "\n".join(rows) + "\n")
    dev = write(tmp_path / "dev.tsv", "\n".join(rows[:2]) + "\n")
    return local_spec("my_cola", {"train": train, "dev": dev}, text=("3",), label="1",
                      header=False)


@pytest.fixture
def mrpc_like(tmp_path):
    """MRPC's layout: a header with a UTF-8 BOM; quote characters are text."""
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    body = ('1\t702876\t702977\tAmrozi called him " the witness " .'
            '\tReferring to " the witness " .\n'
            "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought it in 1995 .\n"
            '1\t1330381\t1330521\t"Quoted at start\tand "unbalanced\n')
    train = write(tmp_path / "mrpc_train.tsv", header + body, bom=True)
    dev = write(tmp_path / "mrpc_dev.tsv", header + body.splitlines(keepends=True)[1], bom=True)
    return local_spec("my_mrpc", {"train": train, "dev": dev}, text=("#1 String", "#2 String"),
                      label="Quality")


# -- synthetic ---------------------------------------------------------------------------------
def test_synthetic_pair_task_loads_deterministically():
    spec = build_registry(include_user=False, demo_sizes={"train": 40, "dev": 20}).get(
        "match_person")
    a = data.load_task(spec)
    b = data.load_task(spec)
    assert len(a["train"]) == 40 and len(a["dev"]) == 20
    assert len(a["train"].texts) == 2 and all(isinstance(t, str) for t in a["train"].texts[1])
    assert a["train"].labels.dtype == np.int64 and set(a["train"].labels) <= {0, 1}
    assert a["train"].has_labels
    assert a["train"].fingerprint == b["train"].fingerprint != a["dev"].fingerprint
    head = data.load_split(spec, "train", max_examples=10)
    assert len(head) == 10 and head.texts[0] == a["train"].texts[0][:10]
    assert data.data_fingerprint(spec) == data.data_fingerprint(spec)


def test_synthetic_fingerprint_changes_with_seed():
    s0 = build_registry(include_user=False, demo_seed=0).get("neg_movie")
    s1 = build_registry(include_user=False, demo_seed=1).get("neg_movie")
    assert data.data_fingerprint(s0) != data.data_fingerprint(s1)


def test_unknown_split_is_a_data_error():
    spec = build_registry(include_user=False).get("neg_movie")
    with pytest.raises(DataError, match="has no 'valid' split"):
        data.load_split(spec, "valid")


# -- local files -------------------------------------------------------------------------------
def test_cola_layout_no_header_columns_by_index(cola_like, store):
    sp = data.load_split(cola_like, "train", store=store)
    assert len(sp) == 4
    assert sp.texts[0][0] == "Day by day the facts are getting murkier."
    # values stay text: quotes, leading zeros and "NA" are not parsed
    assert sp.texts[0][2] == 'He said " hi " to 0123 people.'
    assert sp.texts[0][3] == "NA"
    assert sp.labels.tolist() == [1, 0, 1, 1]
    assert data.label_distribution(sp, cola_like) == {"0": 1, "1": 3}
    assert (store.root / ".datasets").is_dir()


def test_mrpc_layout_bom_header_and_quotes_as_text(mrpc_like, store):
    sp = data.load_split(mrpc_like, "train", store=store)
    assert len(sp) == 3
    assert sp.example(0) == ('Amrozi called him " the witness " .',
                             'Referring to " the witness " .')
    assert sp.example(2) == ('"Quoted at start', 'and "unbalanced')
    assert sp.labels.tolist() == [1, 0, 1]


def test_label_names_and_integer_ids(tmp_path):
    f = write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n"
              "0\ta\tb\tnot_entailment\n1\tc\td\tentailment\n2\te\tf\t1\n")
    spec = local_spec("rte_like", {"train": f}, text=("sentence1", "sentence2"),
                      labels=("entailment", "not_entailment"))
    assert data.load_split(spec, "train").labels.tolist() == [1, 0, 1]


def test_csv_with_quoting(tmp_path):
    f = write(tmp_path / "t.csv", 'text,label\n"hello, world",pos\n"say ""hi""",neg\n')
    spec = local_spec("q", {"train": f}, text=("text",), labels=("neg", "pos"), fmt="csv",
                      quoting=True)
    sp = data.load_split(spec, "train")
    assert sp.texts[0] == ("hello, world", 'say "hi"') and sp.labels.tolist() == [1, 0]


def test_jsonl_labels_by_name_and_int(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"a": "x y", "b": "z", "y": "pos"}, {"a": "0012", "b": "w", "y": 0}]) + "\n")
    spec = local_spec("j", {"train": str(f)}, text=("a", "b"), label="y",
                      labels=("neg", "pos"), fmt="jsonl")
    sp = data.load_split(spec, "train")
    assert sp.texts == (("x y", "0012"), ("z", "w")) and sp.labels.tolist() == [1, 0]


def test_regression_labels(tmp_path):
    f = write(tmp_path / "sts.tsv", "s1\ts2\tscore\na\tb\t3.8\nc\td\t0\n")
    spec = local_spec("sts", {"train": f}, text=("s1", "s2"), label="score", kind="regression")
    sp = data.load_split(spec, "train")
    assert sp.labels.dtype == np.float32 and sp.labels.tolist() == pytest.approx([3.8, 0.0])
    dist = data.label_distribution(sp, spec)
    assert dist["n"] == 2 and dist["max"] == pytest.approx(3.8)


def test_test_split_without_labels(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    test = write(tmp_path / "test.tsv", "index\tsentence\n0\tc\n1\td\n")
    spec = local_spec("tt", {"train": train, "test": test})
    sp = data.load_split(spec, "test")
    assert sp.labels.tolist() == [-1, -1] and not sp.has_labels
    assert data.label_distribution(sp, spec) == {"0": 0, "1": 0, "(none)": 2}
    # a regression test split whose labels are all -1 (GLUE's hidden labels) is unlabelled
    test2 = write(tmp_path / "test2.tsv", "sentence\tlabel\nc\t-1\nd\t-1\n")
    rspec = local_spec("tr", {"train": train, "test": test2}, kind="regression")
    rs = data.load_split(rspec, "test")
    assert np.isnan(rs.labels).all() and not rs.has_labels


# -- bad input: one-line messages naming the thing and the fix ----------------------------------
def test_missing_file(tmp_path):
    spec = local_spec("m", {"train": str(tmp_path / "nope.tsv")})
    with pytest.raises(DataError, match="train file of task 'm' does not exist") as e:
        data.load_split(spec, "train")
    assert e.value.hint and "\n" not in e.value.message


def test_empty_file_and_header_only(tmp_path):
    spec = local_spec("e", {"train": write(tmp_path / "e.tsv", "")})
    with pytest.raises(DataError, match="is empty"):
        data.load_split(spec, "train")
    spec = local_spec("h", {"train": write(tmp_path / "h.tsv", "sentence\tlabel\n")})
    with pytest.raises(DataError, match="has a header but no rows"):
        data.load_split(spec, "train")


def test_missing_column_lists_columns(tmp_path):
    f = write(tmp_path / "c.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    with pytest.raises(DataError, match=r"no text column 'sentance' \(columns: 'sentence', "
                                        r"'label'\)") as e:
        data.load_split(local_spec("c", {"train": f}, text=("sentance",)), "train")
    assert "did you mean 'sentence'" in e.value.hint
    with pytest.raises(DataError, match="no label column 'y'"):
        data.load_split(local_spec("c", {"train": f}, label="y"), "train")
    with pytest.raises(DataError, match="no text column '7'"):
        data.load_split(local_spec("c", {"train": f}, text=("7",)), "train")


def test_label_outside_declared_labels(tmp_path):
    f = write(tmp_path / "l.tsv", "sentence\tlabel\na\tpos\nb\tmaybe\n")
    spec = local_spec("l", {"train": f}, labels=("neg", "pos"))
    with pytest.raises(DataError) as e:
        data.load_split(spec, "train")
    msg = str(e.value.message)
    assert "l.tsv line 3" in msg and "'maybe'" in msg and "(neg, pos)" in msg
    g = write(tmp_path / "l2.tsv", "sentence\tlabel\na\t2\n")  # integer out of range
    with pytest.raises(DataError, match="label '2' is not one of"):
        data.load_split(local_spec("l", {"train": g}, labels=("neg", "pos")), "train")
    h = write(tmp_path / "l3.tsv", "sentence\tlabel\na\t\n")  # empty label outside test
    with pytest.raises(DataError, match="is empty"):
        data.load_split(local_spec("l", {"train": h}, labels=("neg", "pos")), "train")


def test_non_numeric_regression_label(tmp_path):
    f = write(tmp_path / "r.tsv", "s\tscore\na\t1.5\nb\thigh\n")
    spec = local_spec("r", {"train": f}, text=("s",), label="score", kind="regression")
    with pytest.raises(DataError, match=r"r.tsv line 3: label 'high' is not a number"):
        data.load_split(spec, "train")


def test_ragged_row_is_a_data_error(tmp_path):
    f = write(tmp_path / "bad.tsv", "sentence\tlabel\na\t0\nb\t1\textra\n")
    with pytest.raises(DataError, match="cannot be parsed"):
        data.load_split(local_spec("b", {"train": f}), "train")


def test_not_utf8(tmp_path):
    f = tmp_path / "latin.tsv"
    f.write_bytes("sentence\tlabel\ncaf\xe9\t0\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        data.load_split(local_spec("u", {"train": str(f)}), "train")


def test_local_fingerprint_follows_content(tmp_path):
    f = tmp_path / "f.tsv"
    write(f, "sentence\tlabel\na\t0\nb\t1\n")
    spec = local_spec("f", {"train": str(f)})
    fp1, s1 = data.data_fingerprint(spec), data.load_split(spec, "train")
    write(f, "sentence\tlabel\na\t0\nc\t1\n")
    fp2, s2 = data.data_fingerprint(spec), data.load_split(spec, "train")
    assert fp1 != fp2 and s1.fingerprint != s2.fingerprint and s2.texts[0][1] == "c"


# -- the Hub (never touched: offline) ----------------------------------------------------------
def test_hub_offline_is_fast_offline_error(monkeypatch, store):
    import datasets
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = TaskSpec(name="ghost", kind="classification", text_fields=("sentence",),
                    label_field="label", labels=("a", "b"),
                    source=HubSource("gradts-tests/no-such-dataset-xyz", "cola", None,
                                     {"train": "train", "dev": "validation"}))
    t0 = time.monotonic()
    with pytest.raises(OfflineError) as e:
        data.load_split(spec, "train", store=store)
    assert time.monotonic() - t0 < 20
    assert e.value.message == ("cannot download gradts-tests/no-such-dataset-xyz (cola): "
                               "the Hub is not reachable")
    assert "HF_HUB_OFFLINE" in e.value.hint and "gradts data add" in e.value.hint
    assert data.availability(spec, store) == "not downloaded"


def test_hub_revision_record_pins_fingerprint(store):
    spec = build_registry(include_user=False).get("cola")
    before = data.data_fingerprint(spec, store=store)
    assert data.recorded_revision(spec, store) is None
    hub.record_revision(store, spec.source, "a" * 40, {"train": 10})
    assert data.recorded_revision(spec, store) == "a" * 40
    after = data.data_fingerprint(spec, store=store)
    assert before != after == data.data_fingerprint(spec, store=store)
    assert data.availability(spec, store) == "cached @aaaaaaaaaa"


# -- tokenisation ------------------------------------------------------------------------------
def pair_split(n=30) -> data.Split:
    spec = TaskSpec(name="p", kind="classification", text_fields=("a", "b"), label_field="y",
                    labels=("x", "y"), source=SyntheticSource())
    rng = np.random.default_rng(0)
    words = VOCAB[5:22]
    a = tuple(" ".join(rng.choice(words, size=rng.integers(1, 15))) for _ in range(n))
    b = tuple(" ".join(rng.choice(words, size=rng.integers(1, 15))) for _ in range(n))
    labels = rng.integers(0, 2, size=n).astype(np.int64)
    fingerprint = splits.split_fingerprint(spec, "train", (a, b), labels)
    return data.Split("p", "train", (a, b), labels, fingerprint)


def test_encode_pairs_truncated_and_cached(tokenizer, store, monkeypatch):
    sp = pair_split()
    enc = data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=12, store=store)
    assert len(enc) == len(sp) and enc.offsets[0] == 0 and enc.offsets[-1] == enc.input_ids.size
    assert enc.lengths().max() <= 12 and enc.input_ids.dtype == np.int32
    assert enc.token_type_ids is not None and enc.token_type_ids.size == enc.input_ids.size
    direct = tokenizer(list(sp.texts[0][:1]), list(sp.texts[1][:1]), truncation="longest_first",
                       max_length=12)["input_ids"][0]
    assert enc.input_ids[enc.offsets[0]:enc.offsets[1]].tolist() == direct
    np.testing.assert_array_equal(enc.labels, sp.labels)
    assert len(store.entries("tokens")) == 1

    def boom(*a, **k):
        raise AssertionError("tokenizer called although cached")

    monkeypatch.setattr(tokens, "_encode", boom)
    again = data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=12, store=store)
    np.testing.assert_array_equal(again.input_ids, enc.input_ids)
    np.testing.assert_array_equal(again.token_type_ids, enc.token_type_ids)
    assert again.fingerprint == enc.fingerprint
    with pytest.raises(AssertionError):  # another max length is another key
        data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store)


def test_encode_cache_corruption_is_reported(tokenizer, store):
    sp = pair_split(10)
    data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store)
    (entry,) = store.entries("tokens")
    f = entry.path / "tokens.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CorruptEntryError):
        data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store)
    fixed = data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store,
                              force=True)
    assert len(fixed) == 10
    data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store)


def test_tokenizer_fingerprint_ignores_call_state(tokenizer):
    fp = data.tokenizer_fingerprint(tokenizer)
    tokens._TOKENIZER_FP.clear()
    tokenizer(["the cat"], truncation=True, max_length=3)
    assert data.tokenizer_fingerprint(tokenizer) == fp


def test_max_length_too_small(tokenizer):
    with pytest.raises(ConfigError, match="too small"):
        data.encode_split(pair_split(3), tokenizer, tokenizer_id="tiny", max_length=3)


# -- batching ----------------------------------------------------------------------------------
def ragged(lengths, regression=False) -> data.Encoded:
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.arange(1, offsets[-1] + 1, dtype=np.int32)
    labels = (np.linspace(0, 1, len(lengths)).astype(np.float32) if regression
              else (np.arange(len(lengths)) % 2).astype(np.int64))
    return data.Encoded(ids, np.ones_like(ids), offsets, labels)


def test_batches_cover_everything_once_and_are_deterministic():
    enc = ragged(np.random.default_rng(1).integers(1, 60, size=1037))
    for shuffle in (True, False):
        for group in (True, False):
            b = data.batches(enc, 16, shuffle=shuffle, seed=3, group_by_length=group)
            flat = np.concatenate(b)
            assert sorted(flat.tolist()) == list(range(1037))
            assert all(len(x) <= 16 for x in b)
            b2 = data.batches(enc, 16, shuffle=shuffle, seed=3, group_by_length=group)
            assert all(np.array_equal(x, y) for x, y in zip(b, b2, strict=True))
    s3 = np.concatenate(data.batches(enc, 16, shuffle=True, seed=3))
    s4 = np.concatenate(data.batches(enc, 16, shuffle=True, seed=4))
    assert not np.array_equal(s3, s4)
    plain = data.batches(enc, 4, shuffle=False, seed=0, group_by_length=False)
    assert plain[0].tolist() == [0, 1, 2, 3]


def test_group_by_length_reduces_padding():
    enc = ragged(np.random.default_rng(2).integers(1, 100, size=2000))
    lengths = enc.lengths()

    def padded(bs):
        return sum(int(lengths[b].max()) * len(b) for b in bs)

    grouped = padded(data.batches(enc, 16, shuffle=True, seed=0))
    random_ = padded(data.batches(enc, 16, shuffle=True, seed=0, group_by_length=False))
    assert grouped < 0.7 * random_
    sorted_eval = data.batches(enc, 16, shuffle=False, seed=0)
    assert lengths[sorted_eval[0]].min() >= lengths[sorted_eval[-1]].max()
    with pytest.raises(ConfigError):
        data.batches(enc, 0, shuffle=False, seed=0)


def test_collate_pads_to_batch_max():
    import torch

    enc = ragged([3, 1, 5])
    out = data.collate(enc, np.array([1, 0]), pad_id=0)
    assert out["input_ids"].tolist() == [[4, 0, 0], [1, 2, 3]]
    assert out["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert out["token_type_ids"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert out["labels"].dtype == torch.long and out["labels"].tolist() == [1, 0]
    assert out["input_ids"].dtype == torch.long
    reg = data.collate(ragged([2, 2], regression=True), np.array([0, 1]), pad_id=7)
    assert reg["labels"].dtype == torch.float32 and "token_type_ids" in reg


def test_end_to_end_demo_to_batch(tokenizer, store):
    spec = build_registry(include_user=False, demo_sizes={"train": 24}).get("neg_movie")
    sp = data.load_split(spec, "train", store=store)
    enc = data.encode_split(sp, tokenizer, tokenizer_id="tiny", max_length=16, store=store)
    (first, *_) = data.batches(enc, 8, shuffle=True, seed=0)
    batch = data.collate(enc, first, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 16


# -- adding a local task -----------------------------------------------------------------------
def test_add_local_task_writes_loadable_toml(tmp_path, cola_like, monkeypatch):
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(tmp_path / "cfg"))
    files = dict(cola_like.source.files)
    added = data.add_local_task("my_cola", files, text=["3"], label="1", header=False,
                                format="tsv")
    assert added.path == tmp_path / "cfg" / "tasks" / "my_cola.toml" and not added.replaced
    assert added.spec.labels == ("0", "1") and added.sizes == {"train": 4, "dev": 2}
    (spec,) = load_task_file(added.path)
    assert spec.fingerprint() == added.spec.fingerprint()
    reg = build_registry()
    assert "my_cola" in reg and len(data.load_split(reg.get("my_cola"), "train")) == 4
    with pytest.raises(TaskError, match="already exists"):
        data.add_local_task("my_cola", files, text=["3"], label="1", header=False)
    again = data.add_local_task("my_cola", files, text=["3"], label="1", header=False,
                                labels=["bad", "good"], force=True)
    assert again.replaced and load_task_file(again.path)[0].labels == ("bad", "good")
    # a name declared in another user file is never overwritten, even with force
    other = tmp_path / "cfg" / "tasks" / "more.toml"
    other.write_text(again.path.read_text().replace('"my_cola"', '"other_cola"'))
    with pytest.raises(TaskError, match="already declared in .*more.toml"):
        data.add_local_task("other_cola", files, text=["3"], label="1", header=False,
                            force=True)


def test_add_local_task_rejects_bad_names_and_data(tmp_path, mrpc_like, monkeypatch):
    monkeypatch.setenv("GRADTS_CONFIG_DIR", str(tmp_path / "cfg"))
    files = dict(mrpc_like.source.files)
    kw = dict(text=["#1 String", "#2 String"], label="Quality")
    for bad in ("../evil", "Evil", "a/b", ""):
        with pytest.raises(TaskError, match="invalid task name"):
            data.add_local_task(bad, files, **kw)
    with pytest.raises(TaskError, match="built-in task"):
        data.add_local_task("mrpc", files, **kw)
    with pytest.raises(DataError, match="no label column 'Qualiti'"):
        data.add_local_task("x", files, text=kw["text"], label="Qualiti")
    with pytest.raises(DataError, match="does not exist"):
        data.add_local_task("x", {"train": str(tmp_path / "nope.tsv")}, **kw)
    bad_dev = write(tmp_path / "bad_dev.tsv", "Quality\t#1 String\t#2 String\n2\ta\tb\n")
    with pytest.raises(DataError, match="bad_dev.tsv line 2: label '2' is not one of the "
                                        "declared labels"):
        data.add_local_task("x", {**files, "dev": bad_dev}, labels=["no", "yes"], **kw)
    assert not (tmp_path / "cfg" / "tasks").exists() or not any(
        (tmp_path / "cfg" / "tasks").iterdir())
    ok = data.add_local_task("x", files, **kw)
    assert ok.spec.labels == ("0", "1") and ok.spec.text_fields == ("#1 String", "#2 String")


def test_summarize_task(mrpc_like, store):
    s = data.summarize_task(mrpc_like, store=store, n_examples=2)
    assert [x.split for x in s.splits] == ["train", "dev"]
    tr = s.splits[0]
    assert tr.size == 3 and tr.distribution == {"0": 1, "1": 2} and len(tr.examples) == 2
    assert tr.examples[0][1] == "1" and s.revision is None and len(s.data_fingerprint) == 16


# -- likely-broken declarations ----------------------------------------------------------------
def test_numeric_label_check_boundaries():
    from gradts_engine.data.checks import MAX_NUMERIC_CLASSES, check_numeric_labels

    check_numeric_labels("t", "y", {"0", "1"})
    check_numeric_labels("t", "y", {str(i) for i in range(50)})          # many integer ids
    check_numeric_labels("t", "y", {"pos", "neg", "1.5"})                # not all numbers
    check_numeric_labels("t", "y", {f"{i}.5" for i in range(MAX_NUMERIC_CLASSES)})
    with pytest.raises(DataError, match=r"not 11 classes \(11 distinct numbers"):
        check_numeric_labels("t", "y", {f"{i}.5" for i in range(MAX_NUMERIC_CLASSES + 1)})
    with pytest.raises(DataError, match=r"'0' and '0.00' are one number written twice") as e:
        check_numeric_labels("t", "y", {"0", "0.00", "1"})
    assert "--kind regression" in e.value.hint


def test_header_checks_unit():
    from gradts_engine.data.checks import check_first_row, check_header_cell

    check_header_cell("f", "label", "classification", ("0", "1"), {"0", "1"})
    check_header_cell("f", "score", "regression", (), set())
    for cell, kind, labels in (("1", "classification", ("0", "1")),
                               ("pos", "classification", ("neg", "pos")),
                               ("1", "classification", ("bad", "good")),   # an id
                               ("3.8", "regression", ())):
        with pytest.raises(DataError, match="looks like data"):
            check_header_cell("f", cell, kind, labels, set())
    check_first_row("f", "1", ["0", "1", "0"], "classification", ())
    check_first_row("f", "spam", ["ham", "spam", "ham"], "classification", ())
    check_first_row("f", "rare", ["a", "b"] * 5, "classification", ())     # too few rows to tell
    for first, rest, kind, labels in (("Quality", ["0", "1"], "classification", ()),
                                      ("score", ["0.5", "3"], "regression", ()),
                                      ("label", ["a", "b"] * 10, "classification", ()),
                                      ("y", ["neg", "pos"], "classification", ("neg", "pos"))):
        with pytest.raises(DataError, match="looks like a header"):
            check_first_row("f", first, rest, kind, labels)


def test_a_field_longer_than_the_csv_module_default_is_data(tmp_path):
    long_text = "word " * 60_000  # 300 kB, over the csv module's default 128 kB field limit
    f = write(tmp_path / "long.tsv", f"sentence\tlabel\n{long_text}\t1\nshort\t0\n")
    sp = data.load_split(local_spec(files={"train": f}), "train")
    assert len(sp) == 2 and sp.texts[0][0] == long_text and sp.labels.tolist() == [1, 0]
