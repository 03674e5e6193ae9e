"""Tokenised splits and their cache in the store (DESIGN.md §4).

Tokenised splits (:class:`Encoded`) are ragged: every example's token ids concatenated, with
offsets, no padding. They are cached in the store under kind ``tokens``, keyed by the split's
fingerprint and the tokenizer (id, class, a hash of its vocabulary and pipeline) and the
maximum length. Pairs are truncated ``longest_first``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..store import Store, canonical_json, safe_component
from .splits import Split

TOKENS_FORMAT = 1           # bump when the layout of cached token arrays changes


@dataclass(frozen=True, eq=False)
class Encoded:
    """A tokenised split, ragged: example i's ids are ``input_ids[offsets[i]:offsets[i+1]]``."""

    input_ids: np.ndarray               # (total_tokens,) int32
    token_type_ids: np.ndarray | None   # (total_tokens,) int32, or None
    offsets: np.ndarray                 # (N+1,) int64
    labels: np.ndarray                  # (N,) int64 or float32
    task: str = ""
    split: str = ""
    fingerprint: str = ""               # the tokens cache key's digest

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)     # (N,)


_TOKENIZER_FP: dict[int, tuple[Any, str]] = {}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's output: class, vocabulary and pipeline (16 hex).

    Fast tokenizers hash their ``tokenizer.json`` (normaliser, pre-tokeniser, model, post-
    processor, added tokens) without the call-time truncation and padding state; others hash
    their vocabulary and special tokens.
    """
    cached = _TOKENIZER_FP.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        doc = json.loads(backend.to_str())
        doc.pop("truncation", None)
        doc.pop("padding", None)
        h.update(canonical_json(doc).encode())
    else:
        h.update(canonical_json(sorted(tokenizer.get_vocab().items())).encode())
        h.update(canonical_json(getattr(tokenizer, "special_tokens_map", {})).encode())
    h.update(canonical_json(list(getattr(tokenizer, "model_input_names", []))).encode())
    fp = h.hexdigest()[:16]
    _TOKENIZER_FP[id(tokenizer)] = (tokenizer, fp)
    return fp


def _tokens_key(store: Store, split: Split, tokenizer: Any, tokenizer_id: str,
                max_length: int) -> Any:
    return store.key("tokens", [split.task, split.split, safe_component(tokenizer_id),
                                f"len{max_length}"],
                     {"split": split.fingerprint, "tokenizer": tokenizer_id,
                      "tokenizer_class": type(tokenizer).__name__,
                      "tokenizer_hash": tokenizer_fingerprint(tokenizer),
                      "max_length": max_length, "format": TOKENS_FORMAT})


def encode_split(split: Split, tokenizer: Any, *, tokenizer_id: str, max_length: int,
                 store: Store | None = None, force: bool = False,
                 chunk_size: int = 4096) -> Encoded:
    """Tokenise a split (pairs truncated ``longest_first``), cached in the store (kind ``tokens``).

    ``force`` recomputes and replaces a cached entry (e.g. one reported as corrupted).
    """
    n_special = tokenizer.num_special_tokens_to_add(pair=len(split.texts) == 2)
    if max_length < n_special + len(split.texts):
        raise ConfigError(f"max length {max_length} is too small: the tokenizer adds {n_special} "
                          "special tokens", hint="use --max-length 32 or more")
    if store is None:
        return _encode(split, tokenizer, max_length, chunk_size, "")
    key = _tokens_key(store, split, tokenizer, tokenizer_id, max_length)
    with store.lock(key, timeout=600):
        if store.exists(key) and not force:
            entry = store.entry(key)  # verifies checksums: a damaged entry is reported
            arrays = store.load_arrays(entry, "tokens")
            return Encoded(arrays["input_ids"], arrays.get("token_type_ids"), arrays["offsets"],
                           arrays["labels"], split.task, split.split, key.digest)
        enc = _encode(split, tokenizer, max_length, chunk_size, key.digest)
        arrays = {"input_ids": enc.input_ids, "offsets": enc.offsets, "labels": enc.labels}
        if enc.token_type_ids is not None:
            arrays["token_type_ids"] = enc.token_type_ids
        info = {"task": split.task, "split": split.split, "examples": len(enc),
                "tokens": int(enc.input_ids.size),
                "truncated_max": int(enc.lengths().max()) if len(enc) else 0}
        with store.writer(key, info=info) as w:
            w.save_arrays("tokens", arrays)
        return enc


def _encode(split: Split, tokenizer: Any, max_length: int, chunk_size: int,
            fingerprint: str) -> Encoded:
    use_tt = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    pair = len(split.texts) == 2
    ids_parts: list[np.ndarray] = []
    tt_parts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    n = len(split)
    for start in range(0, n, chunk_size):
        a = list(split.texts[0][start:start + chunk_size])
        b = list(split.texts[1][start:start + chunk_size]) if pair else None
        out = tokenizer(a, b, truncation="longest_first" if pair else True,
                        max_length=max_length, padding=False, return_attention_mask=False,
                        return_token_type_ids=use_tt)
        ids = out["input_ids"]
        lengths.append(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)))
        ids_parts.append(np.fromiter((t for x in ids for t in x), dtype=np.int32))
        if use_tt:
            tt_parts.append(np.fromiter((t for x in out["token_type_ids"] for t in x),
                                        dtype=np.int32))
    lens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    input_ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
    token_type_ids = (np.concatenate(tt_parts) if tt_parts else np.zeros(0, np.int32)) \
        if use_tt else None
    return Encoded(input_ids, token_type_ids, offsets, split.labels.copy(), split.task,
                   split.split, fingerprint)

