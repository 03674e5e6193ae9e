"""Selectors that train nothing: ``size`` (training examples, largest first) and ``random``.

``size`` is the static baseline of the transferability literature (a larger auxiliary task is
ranked higher); ties are broken by name. ``random`` draws one order per seed and primary:
``default_rng(SeedSequence(seed, spawn_key=(crc32(primary),))).permutation`` of the candidate
names in sorted order (so two primaries do not get the same draw).
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from .base import Ranking, SelectContext, Selector, order_by, register


def rank_size(ctx: SelectContext) -> Ranking:
    from ...data import load_split

    t0 = time.perf_counter()
    sizes = {c.name: float(len(load_split(c, "train", store=ctx.store))) for c in ctx.candidates}
    return Ranking("size", (order_by(sizes, list(sizes)),), sizes, time.perf_counter() - t0,
                   0.0, "no training (counts the training examples)")


def random_order(names: list[str], seed: int, primary: str) -> tuple[str, ...]:
    """The seeded random order of ``names`` for ``primary``."""
    pool = sorted(names)
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(primary.encode()),))
    return tuple(pool[i] for i in np.random.default_rng(ss).permutation(len(pool)))


def rank_random(ctx: SelectContext) -> Ranking:
    names = [c.name for c in ctx.candidates]
    orders = tuple(random_order(names, s, ctx.primary.name) for s in ctx.seeds)
    scores = {t: float(len(names) - orders[0].index(t)) for t in names}
    return Ranking("random", orders, scores, 0.0, 0.0,
                   f"no training (one seeded draw per seed, {len(orders)})")


SIZE = register(Selector("size", "training examples, largest first", rank_size))
RANDOM = register(Selector("random", "a seeded random order (one draw per seed)", rank_random))
