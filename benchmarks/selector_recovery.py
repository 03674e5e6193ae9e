"""The demo suite as a known-answer check for every selector of ``gradts compare`` (§7, §8).

For each of the 8 demo tasks as primary (the other 7 as candidates), each selector ranks the
candidates; a selector "recovers" a task when it ranks the planted sibling first. Printed per
selector and seed: the count out of 8, the seconds the rankings took per primary, and that
cost relative to one probe of a demo task (the mean wall time of that seed's 8 probe entries
in ``--home``, from their own timings). ``gradts`` only reads the probes (its cost is the 8
probes themselves, shared by every primary); ``embed`` is one forward pass per task; ``tag`` and
``grad-cos`` share one joint run per primary.

Needs the probes of the demo suite in ``--home`` for the ``gradts`` selector (made by
``gradts --home DIR demo --skip-trial``, seed 0 by default); other seeds of ``gradts`` need
probes with that ``--seed`` (``gradts --home DIR demo --seed N --skip-trial``); each seed's
``gradts`` ranking reads only that seed's probes (:class:`SeedStore`). ``size`` is at chance
by design (every demo task has the same size: ties are broken by name).

    python benchmarks/selector_recovery.py --home DIR [--seeds 0,1,2]
        [--selectors gradts,size,random,embed,tag,grad-cos] [--max-train-examples N]
"""

from __future__ import annotations

import argparse
import json
import time

from gradts_engine.config import RunSettings
from gradts_engine.demo import DemoSettings, demo_model
from gradts_engine.models import resolve_model
from gradts_engine.mtl import MTLSettings
from gradts_engine.selection.selectors import SelectContext, get_selector
from gradts_engine.signal import ImportanceSignal
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry
from gradts_engine.tasks.demo import SIBLINGS


class SeedStore(Store):
    """The store with only one seed's probe entries visible, so that ``gradts`` ranks from the
    probes of that seed (the engine's rule, :func:`results.choose_probes`, takes the newest
    settings group: the last seed probed)."""

    def __init__(self, root: str, seed: int) -> None:
        super().__init__(root)
        self.seed = seed

    def entries(self, kind: str | None = None) -> list:  # type: ignore[override]
        return [e for e in super().entries(kind)
                if e.kind != "probe" or e.spec.get("settings", {}).get("seed") == self.seed]


def mean_probe_seconds(store: Store, tasks: list[str], seed: int) -> float | None:
    """The mean wall time of the demo tasks' probe entries of ``seed`` (their own timings)."""
    times = [sum(float(v) for k, v in e.info.get("timings", {}).items() if k.endswith("_s"))
             for e in store.entries("probe")
             if e.spec.get("settings", {}).get("seed") == seed
             and (e.spec.get("task") or {}).get("name") in tasks]
    return sum(times) / len(times) if times else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--selectors", default="gradts,size,random,embed")
    ap.add_argument("--max-train-examples", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    s = DemoSettings()
    reg = build_registry(include_user=False, demo_sizes={"train": s.train_size,
                                                         "dev": s.dev_size,
                                                         "test": s.test_size or s.dev_size})
    model, _ = demo_model(None)
    ref = resolve_model(model)
    store = Store(a.home)
    tasks = list(SIBLINGS)
    settings = MTLSettings(epochs=1, batch_size=s.batch_size, lr=s.lr, max_length=s.max_length)
    out: dict[str, dict[str, dict[str, object]]] = {}
    names = a.selectors.split(",")
    for seed in [int(x) for x in a.seeds.split(",")]:
        run = RunSettings(device="cpu", seed=seed)
        rec = {n: {"recovered": 0, "of": len(tasks), "seconds": 0.0, "first": {}} for n in names}
        for p in tasks:
            cands = tuple(reg.get(t) for t in tasks if t != p)
            ctx = SelectContext(SeedStore(a.home, seed), model, ref, reg.get(p), cands, run,
                                settings,
                                ImportanceSignal(), (seed,), a.max_train_examples)
            for name in names:          # one ctx per primary: tag and grad-cos share a run
                t0 = time.perf_counter()
                r = get_selector(name).rank(ctx)
                rec[name]["seconds"] += time.perf_counter() - t0  # type: ignore[operator]
                rec[name]["first"][p] = r.order[0]  # type: ignore[index]
                rec[name]["recovered"] += int(r.order[0] == SIBLINGS[p])  # type: ignore[operator]
        probe_s = mean_probe_seconds(store, tasks, seed)
        for v in rec.values():
            v["per_primary_s"] = float(v["seconds"]) / len(tasks)  # type: ignore[arg-type]
            v["probe_s"] = probe_s
            v["per_primary_over_probe"] = v["per_primary_s"] / probe_s if probe_s else None
        out[str(seed)] = rec
        for name, v in rec.items():
            rel = v["per_primary_over_probe"]
            print(f"seed {seed}  {name:9s} {v['recovered']}/{v['of']} siblings first   "
                  f"{v['per_primary_s']:7.2f} s per primary"
                  + (f" = {rel:.3f} x one probe ({probe_s:.1f} s)" if rel is not None else "")
                  + f"   {v['first']}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
