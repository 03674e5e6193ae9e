"""Property tests (issue 12): any CSV/TSV/JSONL file and any task TOML either loads to a valid
task or gives one of the documented errors (exit 2 config, 3 task, 4 data), never a
traceback. Through the real ``main()`` (``gradts data show`` reads every split)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import in_process

DOCUMENTED = {0, 2, 3, 4}
PROPS = settings(max_examples=20, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])

cell = st.one_of(st.text(max_size=12), st.sampled_from(["pos", "neg", "", "nan", "inf", "1.5",
                                                        '"', '""', "a,b", "x\ny", "\t"]))
rows = st.lists(st.lists(cell, min_size=0, max_size=4), min_size=0, max_size=8)
labels = st.sampled_from(['["neg", "pos"]', "[]"])


def _toml_for(path: Path, fmt: str, labels_decl: str, header: bool) -> Path:
    toml = path.parent / "t.toml"
    src = (f'{{ type = "local", files = {{ train = "{path.name}" }}, format = "{fmt}", '
           f"header = {str(header).lower()} }}")
    toml.write_text(f"""[task]
name = "t"
text = "text"
label = "label"
labels = {labels_decl}
source = {src}
""")
    return toml


def _show(capsys, home: Path, toml: Path) -> None:
    code, out, err = in_process(capsys, ["--home", str(home), "--tasks-file", str(toml), "data",
                                         "show", "t", "--json"])
    assert "Traceback" not in err, err
    assert code in DOCUMENTED, f"exit {code}: {err[-800:]}"
    if code == 0:
        doc = json.loads(out)
        [train] = [s for s in doc["splits"] if s["split"] == "train"]
        assert train["size"] >= 1
        for ex in (e for s in doc["splits"] for e in s["examples"]):
            if isinstance(ex["label"], float):
                assert math.isfinite(ex["label"])
    else:
        assert err.strip().splitlines()[-1].startswith("error:"), err


@pytest.fixture
def where(tmp_path_factory):
    d = tmp_path_factory.mktemp("prop")
    (d / "home").mkdir()
    return d


@PROPS
@given(table=rows, sep=st.sampled_from([",", "\t", ";"]), lab=labels,
       fmt=st.sampled_from(["csv", "tsv"]), header=st.booleans(),
       with_names=st.booleans())
def test_any_delimited_file_loads_or_is_a_documented_error(where, capsys, table, sep, lab, fmt,
                                                           header, with_names):
    lines = (["text" + sep + "label"] if with_names else []) + [sep.join(r) for r in table]
    f = where / f"train.{fmt}"
    f.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    _show(capsys, where / "home", _toml_for(f, fmt, lab, header))


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                    st.text(max_size=8)),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                          max_leaves=6)
record = st.one_of(st.fixed_dictionaries({"text": json_value, "label": json_value}),
                   json_value)


@PROPS
@given(recs=st.lists(record, max_size=8), junk=st.one_of(st.none(), st.binary(max_size=20)),
       lab=labels)
def test_any_jsonl_file_loads_or_is_a_documented_error(where, capsys, recs, junk, lab):
    data = "".join(json.dumps(r) + "\n" for r in recs).encode()
    if junk is not None:
        data += junk
    f = where / "train.jsonl"
    f.write_bytes(data)
    _show(capsys, where / "home", _toml_for(f, "jsonl", lab, True))


@PROPS
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_a_csv_file(where, capsys, raw):
    f = where / "train.csv"
    f.write_bytes(raw)
    _show(capsys, where / "home", _toml_for(f, "csv", '["neg", "pos"]', True))


# -- task TOML --------------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


scalar = st.one_of(st.booleans(), st.integers(-5, 2 ** 70), st.floats(allow_nan=False),
                   st.text(max_size=10), st.sampled_from(["t", "x.csv", "local", "hub",
                                                          "classification", "regression"]))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["type", "files", "train", "dev", "path",
                                                        "format", "splits", "x"]), inner,
                                       max_size=3), max_leaves=5)
KEYS = ["name", "text", "label", "labels", "source", "kind", "metrics", "main_metric",
        "version", "description", "bogus"]


@PROPS
@given(table=st.dictionaries(st.sampled_from(KEYS), value, max_size=8),
       base=st.booleans())
def test_any_task_toml_loads_or_is_a_documented_error(where, capsys, table, base):
    if base:  # start from a valid task, then let hypothesis overwrite some keys
        (where / "x.csv").write_text("text,label\na,pos\nb,neg\n")
        table = {"name": "t", "text": "text", "label": "label", "labels": ["neg", "pos"],
                 "source": {"type": "local", "files": {"train": "x.csv"}}, **table}
    body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
    toml = where / "t.toml"
    toml.write_text("[task]\n" + body, encoding="utf-8")
    code, _out, err = in_process(capsys, ["--home", str(where / "home"), "--tasks-file",
                                          str(toml), "data", "list", "--json"])
    assert "Traceback" not in err, err
    assert code in DOCUMENTED, f"exit {code}: {err[-800:]}\n{body}"
