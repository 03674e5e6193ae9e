"""Probe throughput on real text against a plain Hugging Face fine-tuning loop (issue 16).

The real GLUE samples (``--glue DIR``, default ``/work/shared/data/glue-sample``): RTE (sentence
pairs, truncated to 128 tokens) and SST-2 (short single sentences), the first ``--examples``
training rows of each, with the bundled pretrained MiniLM (6 x 12 heads). Two sides, run in
turn (A B A B ... for ``--reps`` rounds, so that load from other processes hits both alike),
medians reported:

A. ``probe_tasks`` (gate measure, 1 epoch, batch 16, AdamW lr 5e-5, max length 128, no dev
   split): fine-tuning with the head gates open, which collects the ``during`` estimator, then
   the ``after`` pass (the per-example matrices R_i). Its own timings (``fine_tune_s``,
   ``importance_s``) are read from the stored entry.
B. The loop a user would otherwise write, here in full: ``AutoModelForSequenceClassification``
   of the same model directory, the same tokenizer and truncation, a ``DataLoader`` over the
   same rows with ``DataCollatorWithPadding``, AdamW (lr 5e-5, weight decay 0.01 except biases
   and LayerNorm), linear warm-up (10%) and decay, gradient clipping at 1.0, batch 16, 1 epoch.
   ``--group-by-length`` batches it by length as the probe does (the Trainer's
   ``group_by_length``: shuffled mega-batches of 50 batches, each sorted by length), which
   isolates the cost of the gates from the gain of length grouping.

Figures (examples/s = training examples x epochs / seconds):

    fine-tune ratio   A's fine-tuning (with the during estimator) / B       goal >= 0.9
    probe ratio       A's fine-tuning + after pass / B (the after pass is one more forward
                      and an activation-only backward per example, on top of the training)

    python benchmarks/throughput.py                       # RTE and SST-2, 256 rows, 2 rounds
    python benchmarks/throughput.py --examples 2000 --reps 3 --group-by-length
    python benchmarks/throughput.py --threads 1 --json

On a shared machine the absolute rates move with the load; the paired ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GLUE_DIR = "/work/shared/data/glue-sample"
TASKS = {  # name: (directory, text columns, labels)
    "rte": ("RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "sst2": ("SST-2", ("sentence",), ("negative", "positive")),
}
BATCH, LR, MAX_LENGTH, EPOCHS = 16, 5e-5, 128, 1


def task_spec(name: str, glue: Path, examples: int, tmp: Path) -> Any:
    """A local-TSV task of the first ``examples`` training rows (no dev split: no dev eval)."""
    from gradts_engine.tasks.spec import LocalSource, TaskSpec

    folder, text, labels = TASKS[name]
    lines = (glue / folder / "train.tsv").read_text(encoding="utf-8").splitlines()
    path = tmp / f"{name}-train.tsv"
    path.write_text("\n".join(lines[:examples + 1]) + "\n", encoding="utf-8")
    return TaskSpec(name=f"bench_{name}", kind="classification", text_fields=text,
                    label_field="label", labels=labels,
                    source=LocalSource(files={"train": str(path)}, format="tsv"))


def side_probe(model: str, spec: Any, home: Path) -> dict[str, float]:
    from gradts_engine.config import ProbeSettings, RunSettings
    from gradts_engine.probe import probe_tasks
    from gradts_engine.store import Store

    run = RunSettings(model=model, device="cpu", precision="fp32", seed=0)
    settings = ProbeSettings(measure="gate", epochs=EPOCHS, batch_size=BATCH, lr=LR,
                             max_length=MAX_LENGTH, instances=True)
    out = probe_tasks(model, [spec], store=Store(home), run=run, probe=settings, force=True)
    info = out.outcomes[0].result.info
    t = info["timings"]
    n = int(info["num_instances"]) * EPOCHS
    return {"n": n, "fine_tune_s": float(t["fine_tune_s"]), "after_s": float(t["importance_s"])}


def grouped_order(lengths: list[int], batch: int, seed: int) -> list[list[int]]:
    """The Trainer's ``group_by_length``: shuffled mega-batches of 50 batches sorted by length."""
    idx = list(range(len(lengths)))
    random.Random(seed).shuffle(idx)
    mega = batch * 50
    out = []
    for s in range(0, len(idx), mega):
        part = sorted(idx[s:s + mega], key=lambda i: -lengths[i])
        out.extend(part[k:k + batch] for k in range(0, len(part), batch))
    random.Random(seed + 1).shuffle(out)
    return out


def side_plain(model: str, spec: Any, group_by_length: bool) -> dict[str, float]:
    """The plain Hugging Face fine-tuning loop (module docstring, side B)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        get_linear_schedule_with_warmup,
    )
    from transformers.utils import logging as tlog

    from gradts_engine import data

    split = data.load_split(spec, "train")
    tok = AutoTokenizer.from_pretrained(model)
    a = list(split.texts[0])
    b = list(split.texts[1]) if len(split.texts) == 2 else None
    enc = tok(a, b, truncation=True, max_length=MAX_LENGTH)
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             **({"token_type_ids": enc["token_type_ids"][i]} if "token_type_ids" in enc else {}),
             "labels": int(split.labels[i])} for i in range(len(a))]
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    torch.manual_seed(0)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    collate = DataCollatorWithPadding(tok)
    if group_by_length:
        order = grouped_order([len(r["input_ids"]) for r in rows], BATCH, 0)
        loader: Any = [collate([rows[i] for i in idx]) for idx in order]
    else:
        g = torch.Generator().manual_seed(0)
        loader = torch.utils.data.DataLoader(rows, batch_size=BATCH, shuffle=True,
                                             collate_fn=collate, generator=g)
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in net.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": rest, "weight_decay": 0.0}], lr=LR)
    steps = EPOCHS * math.ceil(len(rows) / BATCH)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    net.train()
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        for batch in loader:
            loss = net(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    return {"n": len(rows) * EPOCHS, "fine_tune_s": time.perf_counter() - t0}


def measure(name: str, args: argparse.Namespace, model: str, tmp: Path) -> dict[str, Any]:
    spec = task_spec(name, Path(args.glue), args.examples, tmp)
    a_ft, a_all, b_ft, ratios_ft, ratios_all = [], [], [], [], []
    for r in range(args.reps):
        a = side_probe(model, spec, tmp / f"store-{name}-{r}")
        b = side_plain(model, spec, args.group_by_length)
        ra, rall, rb = (a["n"] / a["fine_tune_s"], a["n"] / (a["fine_tune_s"] + a["after_s"]),
                        b["n"] / b["fine_tune_s"])
        a_ft.append(ra)
        a_all.append(rall)
        b_ft.append(rb)
        ratios_ft.append(ra / rb)
        ratios_all.append(rall / rb)
    med = statistics.median
    return {"task": name, "examples": args.examples, "probe_fine_tune_ex_s": med(a_ft),
            "probe_with_after_ex_s": med(a_all), "plain_ex_s": med(b_ft),
            "fine_tune_ratio": med(ratios_ft), "probe_ratio": med(ratios_all),
            "fine_tune_ratios": ratios_ft, "probe_ratios": ratios_all}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue", default=GLUE_DIR, help="the GLUE TSV samples' directory")
    ap.add_argument("--task", action="append", choices=sorted(TASKS))
    ap.add_argument("--examples", type=int, default=256, help="training rows per task")
    ap.add_argument("--reps", type=int, default=2, help="rounds of A then B")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--group-by-length", action="store_true",
                    help="the plain loop batches by length too")
    ap.add_argument("--model", help="model directory (default: the bundled MiniLM)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from gradts_engine import models

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or str(models.demo_model_path())
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gradts-throughput-") as d:
        rows = [measure(t, args, model, Path(d)) for t in (args.task or ["rte", "sst2"])]
    head = {"cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "load_before": load0, "load_after": os.getloadavg()[0], "reps": args.reps,
            "group_by_length": args.group_by_length}
    if args.json:
        print(json.dumps({**head, "rows": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"probe vs a plain HF loop, MiniLM, max length {MAX_LENGTH}, batch {BATCH} "
              f"({head['cores']} cores, {head['torch_threads']} threads, load {load0:.1f} -> "
              f"{head['load_after']:.1f}; medians of {args.reps} paired rounds)",
              title_justify="left")
    for c in ("task", "rows", "plain loop ex/s", "probe fine-tune ex/s", "ratio (goal >= 0.9)",
              "probe incl. after pass ex/s", "ratio"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["task"], str(r["examples"]), f"{r['plain_ex_s']:.1f}",
                  f"{r['probe_fine_tune_ex_s']:.1f}", f"{r['fine_tune_ratio']:.2f}x",
                  f"{r['probe_with_after_ex_s']:.1f}", f"{r['probe_ratio']:.2f}x")
    Console().print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
