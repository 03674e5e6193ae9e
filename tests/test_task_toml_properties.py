"""Property tests: any task TOML, and any bytes in a local data file, either load or give one
of the documented errors (never another exception)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradts_engine.errors import ConfigError, DataError, TaskError  # noqa: E402
from gradts_engine.tasks.spec import LocalSource, TaskSpec  # noqa: E402
from gradts_engine.tasks.toml import TASK_KEYS, parse_task_table, parse_task_text  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.sampled_from(["", "x", "label", "0", "1", "tsv", "hub", "local",
                                     "classification", "regression", "accuracy", "f1"]),
                    st.text(max_size=5))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["type", "files", "path", "format", "header", "quoting", "config", "revision", "splits",
         "train", "dev", "x"]), inner, max_size=4)), max_leaves=8)
tables = st.dictionaries(st.sampled_from(sorted(TASK_KEYS | {"extra"})), values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(tables, values))
def test_any_task_table_parses_or_is_a_config_error(raw) -> None:
    try:
        spec = parse_task_table(raw, "t.toml (task 1)", Path("/tmp"), "t.toml")
    except ConfigError as e:
        assert e.message.startswith("t.toml (task 1): ") and "\n" not in e.message
        return
    assert isinstance(spec, TaskSpec)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    try:
        tomllib.loads(text)
        valid = True
    except tomllib.TOMLDecodeError:
        valid = False
    try:
        specs = parse_task_text(text, Path("/tmp/t.toml"))
    except ConfigError as e:
        assert valid or "is not valid TOML" in e.message
        return
    assert valid and specs and all(isinstance(s, TaskSpec) for s in specs)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | st.text(alphabet="ab\t,\"\n\r01 ", max_size=120)
       .map(str.encode), fmt=st.sampled_from(["tsv", "csv", "jsonl"]), header=st.booleans())
def test_any_file_loads_or_is_a_data_error(tmp_path_factory, body: bytes, fmt: str,
                                           header: bool) -> None:
    from gradts_engine.data import load_split

    f = tmp_path_factory.mktemp("f") / f"train.{fmt}"
    f.write_bytes(body)
    spec = TaskSpec("p", "classification", ("0" if not header else "a",),
                    "1" if not header else "b", LocalSource({"train": str(f)}, fmt, header),
                    labels=("0", "1"))
    try:
        split = load_split(spec, "train")
    except (DataError, TaskError, ConfigError):
        return
    assert len(split) >= 1 and set(split.labels.tolist()) <= {0, 1}
