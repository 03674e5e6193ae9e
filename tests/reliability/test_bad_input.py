"""Bad input corpus (issue 12): every case through the real CLI's ``main()`` must end with the
documented exit code (``gradts_cli.app.EXIT_CODES``: 2 usage/config, 3 task, 4 data, 6 model,
7 device, 10 cache), an error naming the problem, no traceback, and the store unchanged:
every file that was there has the same checksum afterwards, and anything added is a complete
entry that verifies (a tokens cache of valid data written before a later check failed).

Each case is ``(id, code, needle, build)``: ``build(w)`` prepares files in the world ``w`` and
returns the arguments; ``needle`` must appear in the error (case-insensitive).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import FAST, in_process, tree_digest, world

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytestmark = pytest.mark.slow


@dataclass
class W:
    """The world a case runs in: the store, a scratch folder, the model, the task file."""

    home: Path
    dir: Path
    model: Path
    tasks: Path
    env: dict[str, str]


def _task_toml(w: W, files: dict[str, str], *, fmt: str | None = None, name: str = "t",
               labels: str = '["neg", "pos"]', extra: str = "") -> Path:
    src = ", ".join(f'{k} = "{v}"' for k, v in files.items())
    fmt_s = f', format = "{fmt}"' if fmt else ""
    p = w.dir / "bad.toml"
    p.write_text(f"""[task]
name = "{name}"
text = "text"
label = "label"
labels = {labels}
{extra}
source = {{ type = "local", files = {{ {src} }}{fmt_s} }}
""")
    return p


def _data(w: W, content: bytes | str, suffix: str = ".csv", fmt: str | None = None,
          **kw) -> list[str]:
    f = w.dir / f"train{suffix}"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    toml = _task_toml(w, {"train": f.name}, fmt=fmt, **kw)
    return ["--tasks-file", str(toml), "data", "show", "t"]


def _toml(w: W, text: str | bytes) -> list[str]:
    p = w.dir / "bad.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["--tasks-file", str(p), "data", "list"]


GOOD_ROWS = "text,label\n" + "".join(f"word {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8))
TASK_HEAD = '[task]\nname = "t"\ntext = "text"\nlabel = "label"\nlabels = ["neg", "pos"]\n'
LOCAL_SRC = 'source = { type = "local", files = { train = "x.csv" } }\n'


def _probe(w: W, *extra: str, task: str = "prim", model: str | None = None) -> list[str]:
    return ["--tasks-file", str(w.tasks), "probe", "--model", model or str(w.model),
            "--task", task, *FAST, *extra]


def _cfg(w: W, content: bytes | str) -> list[str]:
    p = w.dir / "cfg.toml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return ["--config", str(p), "--tasks-file", str(w.tasks), "config"]


def _model_dir(w: W, what: str) -> str:
    import shutil

    d = w.dir / f"model-{what}"
    shutil.copytree(w.model, d)
    weights = d / "model.safetensors"
    if what == "corrupt-config":
        (d / "config.json").write_text("{not json")
    elif what == "config-not-object":
        (d / "config.json").write_text("[1, 2]")
    elif what == "tokenizer-only":
        (d / "config.json").unlink()
        weights.unlink()
    elif what == "weights-missing":
        weights.unlink()
    elif what == "weights-truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif what == "pickle-only":
        weights.unlink()
        (d / "pytorch_model.bin").write_bytes(pickle.dumps({"x": 1}))
    elif what == "empty":
        shutil.rmtree(d)
        d.mkdir()
    elif what == "unknown-type":
        cfg = json.loads((d / "config.json").read_text())
        cfg["model_type"] = "no_such_arch"
        (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _env(w: W, **env: str) -> W:
    w.env.update(env)
    return w


def _file_home(w: W) -> list[str]:
    f = w.dir / "a-file"
    f.write_text("x")
    return ["--home", str(f), "cache", "verify"]


Case = tuple[str, int, str, Callable[[W], list[str]]]
CASES: list[Case] = [
    # -- files ------------------------------------------------------------------------------
    ("file-missing", 4, "train", lambda w: ["--tasks-file", str(_task_toml(
        w, {"train": "nope.csv"})), "data", "show", "t"]),
    ("file-is-a-directory", 4, "train", lambda w: (w.dir.joinpath("d.csv").mkdir(),
        ["--tasks-file", str(_task_toml(w, {"train": "d.csv"})), "data", "show", "t"])[1]),
    ("file-empty", 4, "train", lambda w: _data(w, b"")),
    ("file-binary", 4, "train", lambda w: _data(w, bytes(range(256)) * 40)),
    ("file-not-utf8", 4, "utf", lambda w: _data(w, "text,label\ncaf\xe9,pos\n".encode("latin-1"))),
    ("file-wrong-delimiter", 4, "text", lambda w: _data(w, GOOD_ROWS.replace(",", "\t"))),
    ("file-ragged-rows", 4, "train", lambda w: _data(w, "text,label\na,pos\nb,neg,extra,x\n")),
    ("file-10mb-line", 4, "train", lambda w: _data(w, "text,label\n" + "x" * 10_000_000 + "\n")),
    ("file-header-only", 4, "train", lambda w: _data(w, "text,label\n")),
    ("jsonl-broken-line", 4, "train", lambda w: _data(
        w, '{"text": "a", "label": "pos"}\n{"text": \n', suffix=".jsonl")),
    ("jsonl-not-objects", 4, "train", lambda w: _data(w, "[1, 2]\n[3, 4]\n", suffix=".jsonl")),
    ("jsonl-null-line", 4, "not an object", lambda w: _data(w, "null\n", suffix=".jsonl")),
    ("jsonl-number-lines", 4, "not an object", lambda w: _data(w, "1\n2\n", suffix=".jsonl")),
    ("tsv-declared-csv-given", 4, "text", lambda w: _data(w, GOOD_ROWS, suffix=".tsv")),
    # -- columns and labels -----------------------------------------------------------------
    ("column-text-missing", 4, "text", lambda w: _data(w, GOOD_ROWS.replace("text,", "words,"))),
    ("column-label-missing", 4, "label", lambda w: _data(w, GOOD_ROWS.replace(",label", ",y"))),
    ("label-outside-set", 4, "maybe", lambda w: _data(w, GOOD_ROWS + "odd,maybe\n")),
    ("label-empty", 4, "label", lambda w: _data(w, GOOD_ROWS + "odd,\n")),
    ("regression-nan", 4, "nan", lambda w: _data(w, "text,label\na,0.5\nb,nan\n",
                                                 labels="[]")),
    ("regression-inf", 4, "inf", lambda w: _data(w, "text,label\na,0.5\nb,inf\n", labels="[]")),
    ("regression-not-number", 4, "abc", lambda w: _data(w, "text,label\na,0.5\nb,abc\n",
                                                        labels="[]")),
    ("one-class-only", 4, "class", lambda w: ["--tasks-file", str(_task_toml(
        w, {"train": _write(w, "one.csv", "text,label\n" + "a,pos\n" * 20)})), "probe",
        "--model", str(w.model), "--task", "t", *FAST]),
    # -- task TOML --------------------------------------------------------------------------
    ("toml-syntax", 2, "toml", lambda w: _toml(w, "[task\nname = 1")),
    ("toml-unknown-key", 2, "colour", lambda w: _toml(w, TASK_HEAD + 'colour = "red"\n'
                                                      + LOCAL_SRC)),
    ("toml-version-wrong-type", 2, "version", lambda w: _toml(w, TASK_HEAD + 'version = "abc"\n'
                                                              + LOCAL_SRC)),
    ("toml-task-not-a-table", 2, "task", lambda w: _toml(w, "task = 3\n")),
    ("toml-not-utf8", 2, "utf", lambda w: _toml(w, (TASK_HEAD + LOCAL_SRC).encode() + b"#\xff\n")),
    ("toml-hub-splits-wrong-type", 2, "splits", lambda w: _toml(
        w, TASK_HEAD + 'source = { type = "hub", path = "a/b", splits = 3 }\n')),
    ("toml-missing-label", 2, "label", lambda w: _toml(
        w, '[task]\nname = "t"\ntext = "text"\n' + LOCAL_SRC)),
    ("toml-labels-not-list", 2, "labels", lambda w: _toml(
        w, TASK_HEAD.replace('["neg", "pos"]', '"neg"') + LOCAL_SRC)),
    ("toml-source-type", 2, "source", lambda w: _toml(
        w, TASK_HEAD + 'source = { type = "ftp", path = "x" }\n')),
    ("toml-duplicate-task", 3, "prim", lambda w: ["--tasks-file", str(w.tasks), *_toml(
        w, TASK_HEAD.replace('"t"', '"prim"') + LOCAL_SRC)]),
    ("toml-empty", 2, "task", lambda w: _toml(w, "")),
    ("toml-1000-tasks", 0, "", lambda w: _toml(w, "".join(
        f'[[task]]\nname = "t{i}"\ntext = "text"\nlabel = "label"\nlabels = ["a", "b"]\n'
        + LOCAL_SRC for i in range(1000)))),
    ("toml-file-missing", 2, "does not exist", lambda w: ["--tasks-file",
                                                          str(w.dir / "no.toml"), "data", "list"]),
    # -- names ------------------------------------------------------------------------------
    ("name-dotdot", 2, "invalid task name", lambda w: _toml(
        w, TASK_HEAD.replace('"t"', '"../x"') + LOCAL_SRC)),
    ("name-absolute", 2, "invalid task name", lambda w: _toml(
        w, TASK_HEAD.replace('"t"', '"/abs"') + LOCAL_SRC)),
    ("name-slash", 2, "invalid task name", lambda w: _toml(
        w, TASK_HEAD.replace('"t"', '"a/b"') + LOCAL_SRC)),
    ("name-reserved-device", 2, "invalid task name", lambda w: _toml(
        w, TASK_HEAD.replace('"t"', '"CON"') + LOCAL_SRC)),
    ("name-very-long", 2, "invalid task name", lambda w: _toml(
        w, TASK_HEAD.replace('"t"', '"' + "a" * 300 + '"') + LOCAL_SRC)),
    ("task-unknown", 3, "nope", lambda w: _probe(w, task="nope")),
    ("task-misspelt", 3, "did you mean 'prim'", lambda w: _probe(w, task="prin")),
    ("task-path-like", 3, "../x", lambda w: _probe(w, task="../x")),
    ("task-absolute", 3, "/etc/passwd", lambda w: _probe(w, task="/etc/passwd")),
    ("task-slash", 3, "a/b", lambda w: _probe(w, task="a/b")),
    ("corr-primary-unknown", 3, "nope", lambda w: ["--tasks-file", str(w.tasks), "corr",
                                                   "--model", str(w.model), "--primary", "nope"]),
    ("suite-unknown", 3, "nope", lambda w: ["--tasks-file", str(w.tasks), "probe", "--model",
                                            str(w.model), "--suite", "nope", *FAST]),
    # -- flags ------------------------------------------------------------------------------
    ("epochs-zero", 2, "epochs", lambda w: _probe(w, "--epochs", "0")),
    ("epochs-negative", 2, "epochs", lambda w: _probe(w, "--epochs", "-1")),
    ("batch-zero", 2, "batch", lambda w: _probe(w, "--batch-size", "0")),
    ("lr-negative", 2, "lr", lambda w: _probe(w, "--lr", "-1")),
    ("lr-nan", 2, "lr", lambda w: _probe(w, "--lr", "nan")),
    ("lr-inf", 2, "lr", lambda w: _probe(w, "--lr", "inf")),
    ("max-length-huge", 2, "max-length", lambda w: _probe(w, "--max-length", "100000000")),
    ("max-train-zero", 2, "max-train", lambda w: _probe(w, "--max-train-examples", "0")),
    ("seed-negative", 2, "seed", lambda w: _probe(w, "--seed", "-1")),
    ("seed-huge", 2, "seed", lambda w: _probe(w, "--seed", str(2 ** 70))),
    ("device-unknown", 2, "tpu", lambda w: _probe(w, "--device", "tpu")),
    ("device-cuda-absent", 7, "cuda", lambda w: _probe(w, "--device", "cuda:7")),
    ("precision-unknown", 2, "junk", lambda w: _probe(w, "--precision", "junk")),
    ("estimator-unknown", 2, "junk", lambda w: _probe(w, "--estimator", "junk")),
    ("measure-unknown", 2, "junk", lambda w: _probe(w, "--measure", "junk")),
    ("corr-method-unknown", 2, "junk", lambda w: ["--tasks-file", str(w.tasks), "corr",
                                                  "--model", str(w.model), "--method", "junk"]),
    ("fg-threshold-nan", 2, "threshold", lambda w: ["--tasks-file", str(w.tasks), "fg",
                                                    "--model", str(w.model), "--primary", "prim",
                                                    "--threshold", "nan", *FAST]),
    ("corr-csv-under-a-file", 2, "csv", lambda w: (_write(w, "f", "x"), [
        "--tasks-file", str(w.tasks), "corr", "--model", str(w.model), "--csv",
        str(w.dir / "f" / "out.csv")])[1]),
    ("corr-csv-onto-directory", 2, "csv", lambda w: ["--tasks-file", str(w.tasks), "corr",
                                                     "--model", str(w.model), "--csv",
                                                     str(w.dir)]),
    ("report-html-onto-directory", 2, "html", lambda w: [
        "--tasks-file", str(w.tasks), "report", "--model", str(w.model), "--primary", "prim",
        "--html", str(w.dir)]),
    ("report-csv-onto-directory", 2, "csv", lambda w: [
        "--tasks-file", str(w.tasks), "report", "--model", str(w.model), "--primary", "prim",
        "--csv", str(w.dir)]),
    # -- config and environment -------------------------------------------------------------
    ("config-not-utf8", 2, "utf", lambda w: _cfg(w, b"[probe]\nepochs = 2 # \xff\n")),
    ("config-syntax", 2, "toml", lambda w: _cfg(w, "[probe\n")),
    ("config-unknown-key", 2, "colour", lambda w: _cfg(w, "[probe]\ncolour = 1\n")),
    ("config-unknown-section", 2, "nosuch", lambda w: _cfg(w, "[nosuch]\nx = 1\n")),
    ("config-wrong-type", 2, "epochs", lambda w: _cfg(w, '[probe]\nepochs = "many"\n')),
    ("env-epochs-junk", 2, "GRADTS_PROBE_EPOCHS", lambda w: (
        _env(w, GRADTS_PROBE_EPOCHS="abc"), _probe(w))[1]),
    ("env-precision-fp8", 2, "fp8", lambda w: (_env(w, GRADTS_RUN_PRECISION="fp8"), _probe(w))[1]),
    ("env-device-junk", 2, "quantum", lambda w: (_env(w, GRADTS_RUN_DEVICE="quantum"),
                                                 _probe(w))[1]),
    ("env-unknown-key", 2, "GRADTS_PROBE_COLOUR", lambda w: (
        _env(w, GRADTS_PROBE_COLOUR="1"), _probe(w))[1]),
    ("home-is-a-file", 10, "not a directory", _file_home),
    ("env-home-is-a-file", 10, "not a directory", lambda w: (
        _write(w, "hf", "x"), _env(w, GRADTS_HOME=str(w.dir / "hf")),
        ["cache", "verify"])[2]),
    ("home-under-a-file", 10, "not a directory", lambda w: (
        _write(w, "hf2", "x"), ["--home", str(w.dir / "hf2" / "sub"), "cache", "list"])[1]),
    ("cache-rm-outside", 10, "not inside the store", lambda w: ["cache", "rm", str(w.dir)]),
    ("cache-rm-dotdot", 10, "not inside the store", lambda w: ["cache", "rm", "../../etc"]),
    ("cache-rm-missing", 10, "no cache entry", lambda w: ["cache", "rm", "probe/nope"]),
    # -- models -----------------------------------------------------------------------------
    ("model-dir-missing", 6, "nope", lambda w: _probe(w, model=str(w.dir / "nope"))),
    ("model-config-corrupt", 6, "config.json", lambda w: _probe(
        w, model=_model_dir(w, "corrupt-config"))),
    ("model-config-not-object", 6, "config.json", lambda w: _probe(
        w, model=_model_dir(w, "config-not-object"))),
    ("model-tokenizer-only", 6, "config.json", lambda w: _probe(
        w, model=_model_dir(w, "tokenizer-only"))),
    ("model-weights-missing", 6, "weights", lambda w: _probe(
        w, model=_model_dir(w, "weights-missing"))),
    ("model-weights-truncated", 6, "model.safetensors", lambda w: _probe(
        w, model=_model_dir(w, "weights-truncated"))),
    ("model-pickle-only", 6, "safetensors", lambda w: _probe(
        w, model=_model_dir(w, "pickle-only"))),
    ("model-empty-dir", 6, "config.json", lambda w: _probe(w, model=_model_dir(w, "empty"))),
    ("model-unknown-architecture", 6, "no_such_arch", lambda w: _probe(
        w, model=_model_dir(w, "unknown-type"))),
]


def _write(w: W, name: str, text: str) -> str:
    (w.dir / name).write_text(text)
    return name


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture
def bad_world(pipeline, tmp_path, monkeypatch) -> W:
    ref, snaps, _ = pipeline
    c = world(tmp_path / "w", ref.model, ref.tasks, start=snaps["probe"])
    monkeypatch.chdir(c.cwd)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return W(c.home, scratch, c.model, c.tasks, {})


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case: Case, bad_world: W, capsys, monkeypatch) -> None:
    _id, want, needle, build = case
    w = bad_world
    argv = build(w)
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    if "GRADTS_HOME" not in w.env:
        monkeypatch.setenv("GRADTS_HOME", str(w.home))
    before = tree_digest(w.home)
    code, _out, err = in_process(capsys, argv)
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == want, f"exit {code}, expected {want}: {err[-1500:]}"
    if want:
        assert lines, "no error message"
        text = err if code == 2 and not lines[-1].startswith("error:") else lines[-1]
        assert needle.lower() in text.lower(), f"error does not name {needle!r}: {err[-1500:]}"
        assert "weights_only=False" not in err
    after = tree_digest(w.home)
    changed = {k for k in before if before[k] != after.get(k) and not k.startswith(".datasets/")}
    assert not changed, f"the store changed: {sorted(changed)[:5]}"
    if after.keys() - before.keys():  # only complete, valid entries may have been added
        from gradts_engine.store import Store  # (a tokens cache of valid data, say)

        rep = Store(w.home).verify_all()
        assert rep.clean and not rep.temporaries, rep
