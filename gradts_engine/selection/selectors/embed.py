"""The ``embed`` selector: text-embedding similarity, no training (after Vu et al. 2020).

Each task's centroid ``c_T = mean_i e_i`` over (at most :data:`SAMPLE`) of its training
inputs, where ``e_i = sum_t m_it h_it / sum_t m_it`` is the mean-pooled last hidden state
``h`` (T, D) of the pretrained encoder under the attention mask ``m``; candidates are ranked
by the cosine of their centroid with the primary's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import Ranking, SelectContext, Selector, order_by, register

SAMPLE = 256          # training inputs per task (the first rows of the train split)
BATCH = 32


def centroid(encoder: Any, encoded: Any, pad_id: int, device: Any,
             batch_size: int = BATCH) -> np.ndarray:
    """The mean of the mean-pooled last hidden states of ``encoded``'s examples, (D,)."""
    import torch

    from ...data import batches, collate

    total, n = None, 0
    encoder.eval()
    with torch.no_grad():
        for idx in batches(encoded, batch_size, shuffle=False, seed=0):
            b = collate(encoded, idx, pad_id)
            mask = b["attention_mask"].to(device)                               # (B, T)
            kw = {"input_ids": b["input_ids"].to(device), "attention_mask": mask}
            if "token_type_ids" in b and getattr(encoder.config, "type_vocab_size", 0) > 1:
                kw["token_type_ids"] = b["token_type_ids"].to(device)
            h = encoder(**kw).last_hidden_state.float()                          # (B, T, D)
            m = mask.unsqueeze(-1).float()                                       # (B, T, 1)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)                         # (B, D)
            s = e.sum(0).double().cpu().numpy()
            total = s if total is None else total + s
            n += e.shape[0]
    if total is None:
        raise ValueError("no examples to embed")
    return np.asarray(total / n)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else float("nan")


def rank_embed(ctx: SelectContext) -> Ranking:
    from ...data import encode_split, load_split
    from ...models import build_task_model, load_tokenizer, resolve_device
    from ...mtl import effective_max_length

    t0 = time.perf_counter()
    device = resolve_device(ctx.run.device)
    tok = load_tokenizer(ctx.ref)
    encoder = build_task_model(ctx.ref, {}, seed=ctx.run.seed).encoder.to(device)
    max_len = effective_max_length(ctx.ref, tok, ctx.settings.max_length)
    cents = {}
    for spec in [ctx.primary, *ctx.candidates]:
        split = load_split(spec, "train", store=ctx.store, max_examples=SAMPLE)
        enc = encode_split(split, tok, tokenizer_id=ctx.ref.cache_id, max_length=max_len,
                           store=ctx.store)
        cents[spec.name] = centroid(encoder, enc, int(tok.pad_token_id), device)
    scores = {c.name: cosine(cents[ctx.primary.name], cents[c.name]) for c in ctx.candidates}
    dt = time.perf_counter() - t0
    return Ranking("embed", (order_by(scores, list(scores)),), scores, dt, dt,
                   f"one forward pass over at most {SAMPLE} training inputs per task")


EMBED = register(Selector("embed", "cosine of mean-pooled pretrained embedding centroids",
                          rank_embed))
