"""The ``gradts`` selector: candidates by the correlation of their head-importance matrices
with the primary's (GradTS §3.2; the probes chosen by :func:`results.choose_probes`)."""

from __future__ import annotations

import time

from .base import Ranking, SelectContext, Selector, register


def probe_seconds(entry_info: dict) -> float:
    t = entry_info.get("timings") or {}
    return float(sum(float(t.get(k) or 0.0) for k in ("fine_tune_s", "importance_s")))


def rank_gradts(ctx: SelectContext) -> Ranking:
    from ...results import check_comparable, choose_probes, read_result
    from ..trial import rank_by_signal

    t0 = time.perf_counter()
    names = [ctx.primary.name, *(c.name for c in ctx.candidates)]
    choice = choose_probes(ctx.store, ctx.model, names, str(ctx.signal.measure))
    results = [read_result(ctx.store, choice.entries[t]) for t in names]
    check_comparable(results)
    ranked = rank_by_signal(results, ctx.signal)
    reused = sum(probe_seconds(dict(e.info)) for e in choice.entries.values())
    ctx.shared["probes"] = choice.keys
    if choice.warning:
        ctx.shared.setdefault("notes", []).append(choice.warning)
    return Ranking("gradts", (tuple(r.task for r in ranked),), {r.task: r.stat for r in ranked},
                   time.perf_counter() - t0, reused,
                   f"reuses {len(names)} probes ({reused:.0f} s of probe training)")


GRADTS = register(Selector("gradts", "Kendall tau of head-importance matrices (the probes)",
                           rank_gradts))
