"""Benchmark a whole probe (P6) against the shape of the original GradTS pipeline.

P6  ``probe_tasks`` on one task: fine-tune once with the head gates open (the ``during``
    estimator comes free with the training steps), then one batched gate-importance pass over
    the train split, the result written to the store
    against the original pipeline's shape on the same model, data and settings: fine-tune,
    fine-tune again (the original trained twice: once for the MTL model, once more before
    measuring), then a batch-size-1 pass computing the legacy weight-gradient measure
    (``heads.legacy_importance``: dropout on, key/value weight gradients per example).
                                                                            goal: ratio <= 0.5

Both sides load the model the same way and use the same cached tokens; the dev evaluation of
the probe is switched off (the original had none). Sides alternate over ``--reps`` rounds so
that load from other processes hits both alike; the table shows medians.

    python benchmarks/probe.py                       # 4 layers x 8 heads, hidden 128, 256 examples
    python benchmarks/probe.py --examples 512 --layers 6 --hidden 256 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gradts_engine import data, models, probe
from gradts_engine.config import ProbeSettings, RunSettings
from gradts_engine.store import Store
from gradts_engine.tasks import build_registry, demo


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def new_probe(model: str, spec, root: Path, run: RunSettings, settings: ProbeSettings
              ) -> dict[str, float]:
    t0 = time.perf_counter()
    res = probe.probe_tasks(model, [spec], store=Store(root), run=run, probe=settings, force=True)
    total = time.perf_counter() - t0
    t = res.outcomes[0].result.info["timings"]
    return {"fine-tune 1": t["fine_tune_s"], "fine-tune 2": 0.0,
            "importance pass": t["importance_s"], "total": total}


def original_shape(model: str, spec, root: Path, run: RunSettings, settings: ProbeSettings
                   ) -> dict[str, float]:
    t0 = time.perf_counter()
    ctx = probe.context(model, run, dataclasses.replace(settings, measure="legacy"), Store(root))
    split = data.load_split(spec, "train", store=ctx.store,
                            max_examples=settings.max_train_examples)
    enc = data.encode_split(split, ctx.tokenizer, tokenizer_id=ctx.ref.cache_id,
                            max_length=settings.max_length, store=ctx.store)
    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        for name in ("fine-tune 1", "fine-tune 2"):
            net, layout = probe.build_probe_model(ctx, spec)
            sync(ctx.device)
            t = time.perf_counter()
            probe.fine_tune(ctx, spec, net, layout, enc, None, during=False)
            sync(ctx.device)
            out[name] = time.perf_counter() - t
        t = time.perf_counter()
        probe.after_pass(ctx, spec, net, layout, enc, None, None)
        sync(ctx.device)
        out["importance pass"] = time.perf_counter() - t
    out["total"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--task", default="neg_movie")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="a model directory instead of the tiny-ish random BERT")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    probe.DEV_EVAL_MAX = 0

    tmp = Path(tempfile.mkdtemp(prefix="gradts-bench-probe-"))
    model = args.model or str(models.make_tiny_model(
        tmp / "model", layers=args.layers, heads=args.heads, hidden=args.hidden,
        words=demo.vocabulary({"train": 200})))
    spec = build_registry(include_user=False).get(args.task)
    run = RunSettings(device=args.device, seed=2018)
    settings = ProbeSettings(epochs=args.epochs, batch_size=args.batch, lr=5e-5,
                             max_length=args.max_length, max_train_examples=args.examples)
    root = tmp / "store"
    new_probe(model, spec, root, run, dataclasses.replace(settings, max_train_examples=16))
    original_shape(model, spec, root, run, dataclasses.replace(settings, max_train_examples=16))
    new_runs, old_runs = [], []
    for _ in range(args.reps):
        new_runs.append(new_probe(model, spec, root, run, settings))
        old_runs.append(original_shape(model, spec, root, run, settings))

    def med(runs: list[dict[str, float]], k: str) -> float:
        return statistics.median(r[k] for r in runs)

    cfg = models.read_config(models.resolve_model(model))
    print(f"P6 whole probe: {args.task}, {args.examples} examples, {args.epochs} epoch(s), "
          f"batch {args.batch}, max length {args.max_length}; model {cfg.num_hidden_layers} "
          f"layers x {cfg.num_attention_heads} heads, hidden {cfg.hidden_size}; device "
          f"{args.device}, {torch.get_num_threads()} thread(s); medians of {args.reps}")
    print(f"{'phase':<18}{'gradts probe (s)':>18}{'original shape (s)':>20}")
    for k in ("fine-tune 1", "fine-tune 2", "importance pass", "total"):
        a, b = med(new_runs, k), med(old_runs, k)
        print(f"{k:<18}{a:>18.2f}{b:>20.2f}")
    ratio = med(new_runs, "total") / med(old_runs, "total")
    print(f"{'ratio (total)':<18}{ratio:>18.3f}{'goal <= 0.5':>20}   "
          f"{'PASS' if ratio <= 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
