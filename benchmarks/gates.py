"""Benchmark the head gates (DESIGN.md §2): training overhead (P1) and importance throughput (P2).

P1  a fine-tuning step (forward + backward + AdamW step) with the gates attached and open, against
    the same step on the same model without hooks.                          goal: ratio <= 1.05
P2  per-instance importance: batched ``gate_importance`` (one forward + one backward per batch)
    against a batch-size-1 loop of the original weight-gradient measure (``legacy_importance``)
    on the same model and data.                                              goal: speed-up >= 30x
P2' the importance pass at its floor: batched ``gate_importance`` with the parameters frozen
    (``importance.frozen_parameters``, as the probe's ``after`` pass runs it: the gates are the
    only leaves, no weight gradient) against one no-grad forward of the same batch.
                                                                             goal: ratio <= 2.1

A BERT of moderate size is built from a config (random weights; speed does not depend on them).
Timings are medians over repetitions after warm-up; the two sides of P1 are interleaved so that
load from other processes on the machine hits both alike.

    python benchmarks/gates.py                 # defaults: 4 layers, hidden 256, 8 heads, T=64, B=32
    python benchmarks/gates.py --reps 20 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from gradts_engine.heads import HeadGates, gate_importance, legacy_importance
from gradts_engine.importance import frozen_parameters


def ce(out, batch):
    return F.cross_entropy(out.logits, batch["labels"], reduction="none")


def make_batch(B: int, T: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(4, vocab, (B, T), generator=g),
        "attention_mask": torch.ones(B, T, dtype=torch.long),
        "labels": torch.randint(0, 2, (B,), generator=g),
    }


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def saved_bytes(model, fn) -> int:
    """Bytes of the non-parameter tensors autograd saves for the backward while ``fn`` runs."""
    params = {p.data_ptr() for p in model.parameters()}
    total = 0

    def pack(t):
        nonlocal total
        if t.data_ptr() not in params:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10, help="P1 repetitions (P2 uses a third)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = BertConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        vocab_size=1000,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).to(device)
    batch = {k: v.to(device) for k, v in make_batch(args.batch, args.seq_len, 1000).items()}
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    B = args.batch

    # ---- P1: fine-tuning step, gates open vs no hooks (interleaved) -------------------------
    model.train()

    def plain_step() -> None:
        loss = ce(model(**inputs), batch).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def gated_step(gates: HeadGates) -> None:
        xi = gates.open(B)  # (B, L, H); its .grad after backward is the `during` estimator
        loss = ce(model(**inputs), batch).mean()
        loss.backward()
        _ = xi.grad
        opt.step()
        opt.zero_grad(set_to_none=True)
        gates.close()

    plain, gated = [], []
    for i in range(args.warmup + args.reps):
        t_plain = timed(plain_step, device)  # no hooks on the model at all
        with HeadGates(model) as gates:  # attached outside the timed region
            t_gated = timed(lambda gates=gates: gated_step(gates), device)
        if i >= args.warmup:
            plain.append(t_plain)
            gated.append(t_gated)

    # ---- P2: per-instance importance throughput ---------------------------------------------
    model.eval()
    reps2 = max(3, args.reps // 3)
    batched, loop = [], []
    with HeadGates(model) as g:
        for i in range(1 + reps2):
            t = timed(lambda g=g: gate_importance(model, batch, ce, g), device)
            if i >= 1:
                batched.append(t)
    for i in range(1 + reps2):
        t = timed(lambda: legacy_importance(model, batch, ce), device)
        if i >= 1:
            loop.append(t)
    with HeadGates(model) as g:
        ones = [{k: v[b : b + 1] for k, v in batch.items()} for b in range(B)]
        gate_loop = [timed(lambda g=g: [gate_importance(model, o, ce, g) for o in ones], device)]
        gate_loop += [timed(lambda g=g: [gate_importance(model, o, ce, g) for o in ones], device)]
    # P2': frozen parameters (the probe's after pass) against a no-grad forward, interleaved
    # (with trainable parameters too, to show what freezing gains), interleaved, the order of
    # the three alternating between repetitions; twice P2's repetitions
    fwd, floor, trainable = [], [], []

    def one_forward() -> None:
        with torch.no_grad():
            model(**inputs)

    def frozen(g: HeadGates) -> None:
        with frozen_parameters(model):
            gate_importance(model, batch, ce, g)

    with HeadGates(model) as g:
        runs = [(one_forward, fwd), (lambda g=g: gate_importance(model, batch, ce, g), trainable),
                (lambda g=g: frozen(g), floor)]
        for i in range(1 + 2 * reps2):
            for fn, out in runs if i % 2 else runs[::-1]:
                t = timed(fn, device)
                if i >= 1:
                    out.append(t)
    p2_gate_loop, p2_fwd = gate_loop[-1], statistics.median(fwd)
    p2_floor, p2_trainable = statistics.median(floor), statistics.median(trainable)
    with HeadGates(model) as g:
        mem_full = saved_bytes(model, lambda: gate_importance(model, batch, ce, g))
        with frozen_parameters(model):
            mem_floor = saved_bytes(model, lambda: gate_importance(model, batch, ce, g))

    p1_plain, p1_gated = statistics.median(plain), statistics.median(gated)
    p2_gate, p2_legacy = statistics.median(batched), statistics.median(loop)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU threads={torch.get_num_threads()}"
    )
    print(
        f"BERT L={args.layers} hidden={args.hidden} H={args.heads} T={args.seq_len} B={B}, "
        f"{where}, torch {torch.__version__}; "
        f"medians of {args.reps} (P1) / {reps2} (P2) / {2 * reps2} (P2') reps after warm-up"
    )
    print()
    header = f"{'bench':<4} {'baseline':<34} {'s':>8} {'candidate':<34} {'s':>8} {'ratio':>8}  goal"
    print(header)
    print("-" * len(header))
    r1 = p1_gated / p1_plain
    print(
        f"{'P1':<4} {'train step, no hooks':<34} {p1_plain:>8.4f} "
        f"{'train step, gates open':<34} {p1_gated:>8.4f} {r1:>8.3f}  <= 1.05 "
        f"{'ok' if r1 <= 1.05 else 'MISSED'}"
    )
    r2 = p2_legacy / p2_gate
    print(
        f"{'P2':<4} {'legacy, batch-1 loop x' + str(B):<34} {p2_legacy:>8.4f} "
        f"{'gate_importance, batch ' + str(B):<34} {p2_gate:>8.4f} {r2:>7.1f}x  >= 30x "
        f"{'ok' if r2 >= 30 else 'MISSED'}"
    )
    r2f = p2_floor / p2_fwd
    P2F = "P2'"
    print(
        f"{P2F:<4} {'one forward, no grad, batch ' + str(B):<34} {p2_fwd:>8.4f} "
        f"{'gate_importance, frozen params':<34} {p2_floor:>8.4f} {r2f:>8.3f}  <= 2.1  "
        f"{'ok' if r2f <= 2.1 else 'MISSED'}"
    )
    print()
    print(
        f"P2 throughput: gate {B / p2_gate:.0f} examples/s (frozen parameters "
        f"{B / p2_floor:.0f}), legacy {B / p2_legacy:.1f} examples/s; in the P2' loop "
        f"gate_importance with trainable parameters took {p2_trainable / p2_fwd:.3f}x a no-grad "
        f"forward, with frozen ones {r2f:.3f}x"
    )
    print(
        f"P2' memory: activations saved for the backward {mem_floor / B / 2**20:.2f} MiB per "
        f"example with frozen parameters, {mem_full / B / 2**20:.2f} MiB with trainable ones"
    )
    lo_p, hi_p, lo_g, hi_g = min(plain), max(plain), min(gated), max(gated)
    print(f"P1 spread: plain {lo_p:.4f}-{hi_p:.4f} s, gated {lo_g:.4f}-{hi_g:.4f} s")
    print(
        f"P2 context: gate_importance in a batch-1 loop {p2_gate_loop:.4f} s "
        f"(batching gains {p2_gate_loop / p2_gate:.1f}x); one batched forward without grad "
        f"{p2_fwd:.4f} s, so no measure that runs a forward can beat the legacy loop by more "
        f"than {p2_legacy / p2_fwd:.1f}x here"
    )


if __name__ == "__main__":
    main()
