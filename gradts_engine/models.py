"""Loading encoders and task heads; devices and precision; tiny models for tests (DESIGN.md §3).

A :class:`TaskModel` is one pretrained encoder (``AutoModel``) shared by one or more task
heads, MT-DNN style: the probe uses it with one head, multi-task training with several. The
pooled representation is the first token's final hidden state for encoders (BERT family) and
the last non-padding token's for decoder-only models (GPT-2, Llama, Qwen2, Mistral). Each head
is ``dropout -> dense -> tanh -> dropout -> linear`` and is initialised from the run's seed
alone, so every task in a comparison starts from the same weights (DESIGN.md §2).

Models come from a local directory or the Hugging Face Hub (downloaded into Hugging Face's own
cache, with its progress bars); ``trust_remote_code`` is used only when the user asks for it.
Weights are read from safetensors files only: a directory with only pickled weights
(``pytorch_model.bin``) is refused before anything is loaded, since unpickling can run code.
The bundled MiniLM (the ``demo`` extra) answers to ``minilm`` and to its Hub id
(:func:`resolve_model_name`); :attr:`ModelRef.short_name` is the name shown to users.

Also here: the closed sets of device and precision names (:class:`Precision`,
:func:`parse_device`) that the config merge validates, and the one max-length rule
(:func:`resolve_max_length`): the model's own limit, capped at ``MAX_LENGTH_CAP``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DeviceError, ModelError, OfflineError, did_you_mean
from .model_files import (  # noqa: F401  (re-exported: models.demo_model_path etc.)
    DEMO_MODEL_ALIASES,
    DEMO_MODEL_HUB_ID,
    DEMO_MODEL_PACKAGE,
    DEMO_MODEL_SHORT_NAME,
    check_model_dir,
    check_tokenizer_files,
    check_weights,
    demo_model_path,
    resolve_model_name,
    short_model_name,
    similar_model_dir,
)

if TYPE_CHECKING:
    import torch

DECODER_TYPES = ("gpt2", "llama", "qwen2", "mistral")
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.py"]
MAX_LENGTH_CAP = 512        # the default max length when the model accepts more
MIN_MAX_LENGTH = 8


class Precision(str, Enum):
    """Autocast precision names (``auto`` = bf16 on CUDA when supported, else fp32)."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    def __str__(self) -> str:
        return self.value


PRECISIONS = tuple(p.value for p in Precision)
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def parse_precision(value: str, where: str | None = "--precision") -> str:
    """The canonical precision name, or a :class:`ConfigError` naming ``where`` and the choices."""
    v = str(value).strip().lower()
    if v in PRECISIONS:
        return v
    raise ConfigError(f"unknown precision {value!r}" + (f" ({where})" if where else ""),
                      hint=_choices_hint(v, PRECISIONS, PRECISIONS))


def parse_device(value: str, where: str | None = "--device") -> str:
    """The canonical device name (auto, cpu, cuda, cuda:N), or a :class:`ConfigError`."""
    v = str(value).strip().lower()
    if _DEVICE_RE.match(v):
        return v
    raise ConfigError(f"unknown device {value!r}" + (f" ({where})" if where else ""),
                      hint=_choices_hint(v, DEVICES[:3], DEVICES))


def _choices_hint(value: str, close_to: tuple[str, ...], choices: tuple[str, ...]) -> str:
    close = did_you_mean(value, close_to)
    return (close + " " if close else "") + f"choose from {', '.join(choices)}"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user named, where its files are, and which commit."""

    name: str               # as given (hub id, path, or a short name such as "minilm")
    path: str               # local directory with config.json
    revision: str | None    # as requested
    commit: str | None      # the Hub commit hash when known
    trust_remote_code: bool = False

    @property
    def cache_id(self) -> str:
        """The identity used in cache keys: hub id@commit, or the resolved local path."""
        if self.commit:
            return f"{self.name}@{self.commit}"
        return str(Path(self.path).resolve())

    @property
    def short_name(self) -> str:
        """The name shown to users: ``minilm`` for the bundled MiniLM, the Hub id, or the
        directory's name (see :func:`short_model_name`)."""
        return short_model_name(self.name if self.commit else self.path)

    @property
    def store_name(self) -> str:
        """The model's folder name in store paths (not part of any key's hash): the Hub id,
        or the directory's last part (``parent/model`` for a folder called ``model``), as the
        probe has always named it, so existing entries keep their paths."""
        alias = self.name.strip().lower() in DEMO_MODEL_ALIASES
        if self.commit or not (alias or Path(self.name).expanduser().exists()):
            return self.name
        parts = Path(self.path).resolve().parts
        return "/".join(parts[-2:]) if parts[-1] in ("model", "models") else parts[-1]


def no_model_error() -> ModelError:
    """The one error for a command that needs a model and got none."""
    return ModelError("no model given", hint="pass --model (a Hub id such as bert-base-cased, "
                      "or a local directory), or set [run] model in gradts.toml")


def resolve_model(name: str | None, revision: str | None = None, *,
                  trust_remote_code: bool = False, local_only: bool = False) -> ModelRef:
    """A local directory, or a Hub id downloaded (or found in the HF cache) at ``revision``.

    ``minilm`` and the bundled MiniLM's Hub id resolve to the bundled copy when installed."""
    if not name:
        raise no_model_error()
    path_name = resolve_model_name(name, revision)
    p = Path(path_name).expanduser()
    if p.exists() or path_name.startswith((".", "/", "~")):
        check_model_dir(p)
        return ModelRef(name, str(p.resolve()), revision, None, trust_remote_code)
    if name.count("/") > 1:
        raise ModelError(f"model {name!r} is neither a local directory nor a Hub id",
                         hint="check the path")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(name, revision=revision, allow_patterns=_WEIGHT_PATTERNS,
                                 local_files_only=local_only)
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        close = similar_model_dir(name)
        raise ModelError(f"model {name!r}{'@' + revision if revision else ''} was not found on "
                         "the Hub", hint=(close + " " if close else "") + "check the id and "
                         "--revision, or give a local directory") from e
    except LocalEntryNotFoundError as e:
        close = similar_model_dir(name)
        if close:  # a misspelt local directory or short name, not a Hub id
            raise ModelError(f"model {name!r} is not a local directory, and not in the Hugging "
                             "Face cache", hint=close) from e
        raise OfflineError(
            f"cannot download model {name!r}: the Hub is not reachable and it is not cached",
            hint="connect once to download it, or pass a local directory with --model "
                 "(HF_HUB_OFFLINE=1 uses only the local Hugging Face cache)") from e
    except (HfHubHTTPError, OSError) as e:
        raise OfflineError(f"cannot download model {name!r}: {e.__class__.__name__}: {e}",
                           hint="check the network, or pass a local directory") from e
    check_model_dir(Path(path))
    commit = Path(path).name if Path(path).parent.name == "snapshots" else None
    return ModelRef(name, str(path), revision, commit, trust_remote_code)


def read_config(ref: ModelRef) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.path, trust_remote_code=ref.trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"model {ref.name}: its config cannot be read ({e})".splitlines()[0],
                         hint="pass --trust-remote-code only if you trust its code"
                         if "trust_remote_code" in str(e) else
                         "re-save the model with save_pretrained, or download it again") from e


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    check_tokenizer_files(ref)
    try:
        tok = AutoTokenizer.from_pretrained(ref.path, trust_remote_code=ref.trust_remote_code)
    except Exception as e:  # transformers and the tokenizers library raise many types
        raise ModelError(f"model {ref.name}: its tokenizer cannot be loaded ({e})".splitlines()[0],
                         hint="the directory needs tokenizer files (save_pretrained the "
                         "tokenizer too)") from e
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"model {ref.name}: the tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def model_max_length(config: Any, tokenizer: Any = None) -> int:
    """The longest input the model accepts (position embeddings, minus RoBERTa's offset)."""
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if n is None:
        return 10**6
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        n -= 2
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < n:
        n = tok_max
    return int(n)


def resolve_max_length(requested: int | None, config: Any, tokenizer: Any = None, *,
                       model: str = "the model", cap: int = MAX_LENGTH_CAP) -> int:
    """The one max-length rule of every command: ``requested`` when given (an error if the
    model accepts less), else the model's own limit (:func:`model_max_length`) capped at
    ``cap``."""
    limit = model_max_length(config, tokenizer)
    if requested is None:
        return min(limit, cap)
    if requested < MIN_MAX_LENGTH:
        raise ConfigError(f"--max-length must be at least {MIN_MAX_LENGTH}, not {requested}")
    if requested > limit:
        raise ConfigError(f"--max-length {requested} is longer than model {model} accepts "
                          f"({limit} tokens)", hint=f"use --max-length {limit} or less, or leave "
                          f"it out (default: the model's limit, at most {cap})")
    return int(requested)


def resolve_device(device: str | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA request without a GPU is an error."""
    import torch

    device = parse_device(device or "auto")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: no CUDA GPU is available",
                              hint="use --device cpu (or auto)")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} GPU(s)",
                              hint="use cuda:0")
        return dev
    return torch.device("cpu")


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``None`` means full fp32. ``auto`` = bf16 on CUDA when supported."""
    import torch

    precision = parse_precision(precision or "auto")
    if precision == "fp32":
        return None
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise DeviceError(f"--precision {precision} needs a CUDA device",
                              hint="use --precision fp32 (or auto) on the CPU")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if precision == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise DeviceError("this GPU does not support bf16", hint="use --precision fp16")
        return torch.bfloat16
    return torch.float16  # fp16


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Load weights without transformers' progress bars and load reports (the engine never
    prints; failures still raise)."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def _make_head(hidden: int, n_out: int, dropout: float, seed: int) -> Any:
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.Tanh(),
                             nn.Dropout(dropout), nn.Linear(hidden, n_out))


def _task_model_class() -> type:
    import torch
    from torch import nn

    class TaskModel(nn.Module):
        """One shared encoder, one head per task (see module docstring)."""

        def __init__(self, encoder: nn.Module, heads: Mapping[str, int], seed: int,
                     dropout: float) -> None:
            super().__init__()
            self.encoder = encoder
            self.config = encoder.config
            self.model_type = getattr(encoder.config, "model_type", "")
            self.hidden = int(getattr(encoder.config, "hidden_size", None)
                              or getattr(encoder.config, "n_embd", None) or encoder.config.dim)
            self.head_dropout = dropout
            self.seed = seed
            self.heads = nn.ModuleDict({t: _make_head(self.hidden, n, dropout, seed)
                                        for t, n in heads.items()})

        def add_head(self, task: str, n_out: int) -> None:
            p = next(self.encoder.parameters())
            head = _make_head(self.hidden, n_out, self.head_dropout, self.seed)
            self.heads[task] = head.to(p.device)

        def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if self.model_type in DECODER_TYPES:  # last non-padding token (right padding)
                last = attention_mask.long().sum(1).clamp(min=1) - 1          # (B,)
                return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
            return hidden[:, 0]                                                 # (B, D)

        def forward(self, task: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
            kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0) > 1:
                kwargs["token_type_ids"] = token_type_ids
            out = self.encoder(**kwargs)
            hidden = out.last_hidden_state                                       # (B, T, D)
            return self.heads[task](self.pool(hidden, attention_mask))           # (B, n_out)

    return TaskModel


def build_task_model(ref: ModelRef, heads: Mapping[str, int], *, seed: int,
                     dropout: float | None = None) -> Any:
    """The pretrained encoder of ``ref`` with freshly initialised heads (seeded)."""
    from transformers import AutoModel

    config = read_config(ref)
    from .heads import SUPPORTED_MODEL_TYPES

    if config.model_type not in SUPPORTED_MODEL_TYPES:
        from .errors import UnsupportedArchitectureError

        raise UnsupportedArchitectureError(
            f"model {ref.name} is a {config.model_type!r} model, which gradts cannot gate",
            hint=f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    extra = {"add_pooling_layer": False} if config.model_type in (
        "bert", "roberta", "xlm-roberta") else {}
    check_weights(ref)  # safetensors only, complete: never a pickle, never a half file
    try:
        with quiet_transformers():
            encoder = AutoModel.from_pretrained(
                ref.path, trust_remote_code=ref.trust_remote_code, use_safetensors=True, **extra)
    except Exception as e:  # transformers and safetensors raise many types
        raise ModelError(f"model {ref.name} cannot be loaded: {e}".splitlines()[0],
                         hint="download or save the model again") from e
    if dropout is None:
        given = [getattr(config, a, None) for a in ("hidden_dropout_prob", "dropout")]
        dropout = float(next((v for v in given if v is not None), 0.1))  # 0.0 is a value
    if getattr(encoder.config, "pad_token_id", None) is None:
        encoder.config.pad_token_id = getattr(encoder.config, "eos_token_id", 0)
    return _task_model_class()(encoder, heads, seed, dropout)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Cross-entropy (classification) or squared error (regression) per example, (B,)."""
    import torch.nn.functional as F

    if kind == "regression":
        return (logits.squeeze(-1).float() - labels.float()) ** 2
    return F.cross_entropy(logits.float(), labels.long(), reduction="none")


def make_tiny_model(path: str | os.PathLike[str], *, model_type: str = "bert", layers: int = 2,
                    heads: int = 4, hidden: int = 32, words: list[str] | None = None,
                    seed: int = 0) -> Path:
    """Save a tiny randomly initialised model and a WordPiece tokenizer (tests, benchmarks).

    The vocabulary is the special tokens plus ``words`` (lowercased) plus letters, so every
    text tokenises. Only for mechanics: a tiny random model cannot show the method (§7).
    """
    import torch
    from transformers import AutoModel, BertConfig, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = set("abcdefghijklmnopqrstuvwxyz0123456789.,'!?-")
    extra = sorted({w.lower() for w in (words or [])} | chars)
    vocab += [w for w in extra if w not in vocab]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(path))
    if model_type != "bert":
        raise ModelError(f"make_tiny_model builds BERT models only, not {model_type!r}")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=hidden * 2,
                     max_position_embeddings=128, type_vocab_size=2)
    torch.manual_seed(seed)
    AutoModel.from_config(cfg).save_pretrained(str(path))
    return path
