"""``gradts compare``: GradTS against the baselines (size, random, embed, tag, grad-cos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import artefacts, output
from ..options import (
    DeviceOpt,
    EstimatorOpt,
    ForceOpt,
    JsonOpt,
    LogDirOpt,
    LogOpt,
    MaxLenOpt,
    MeasureOpt,
    ModelOpt,
    NprocOpt,
    PrecisionOpt,
    RevisionOpt,
    SeedOpt,
    SuiteOpt,
    TrialBatchOpt,
    TrialEpochsOpt,
    TrialLrOpt,
    complete_names,
    complete_task_list,
    log_to,
    require_model,
    split_list,
    state,
    value,
)
from ..views import compare as views

SELECTORS = ("gradts", "size", "random", "embed", "tag", "grad-cos")


def register(app: typer.Typer) -> None:
    app.command("compare", help=HELP,
                short_help="GradTS against baseline selectors, with seeds and intervals.")(compare)


HELP = (
    "Compare auxiliary-task selectors on your tasks: gradts (head-importance correlation, "
    "from `gradts probe`), size (largest first), random (one seeded draw per seed), embed "
    "(cosine of mean-pooled pretrained embeddings), tag (lookahead affinity) and grad-cos "
    "(gradient cosine; tag and grad-cos share one short joint training). Every selector's "
    "top-k set, the primary alone and all candidates are trained with the same multi-task "
    "settings and seeds as `gradts trial` (a set chosen twice, or already trained by trial, "
    "is trained once) and scored on the labelled test split, else on a held-out part of dev "
    "that no best-epoch choice saw. Gains come with 90% paired bootstrap intervals over "
    "evaluation examples and seeds; a gain within the noise is never called a win. Every "
    "finished run is cached: rerun the same command to resume.\n\n"
    "[dim]Examples:[/dim]\n\n"
    "  gradts compare --model ./minilm --primary neg_movie --suite demo --k 1 --seeds 3 "
    "--epochs 1 --lr 1e-4 --max-length 48\n\n"
    "  gradts compare --model bert-base-cased --primary rte --candidates mrpc,qnli,sst2,cola "
    "--selectors gradts,size,random --max-train-examples 1000\n\n"
    "  gradts compare --model ./minilm --all --suite demo --selectors gradts,size,random "
    "--csv compare.csv --figure compare.pdf\n\n"
    "  torchrun --nproc-per-node 8 -m gradts_cli compare --model bert-base-cased --primary rte"
    " --suite glue --seeds 3\n"
)


def compare(
    ctx: typer.Context,
    model: ModelOpt = None,
    primary: Annotated[str | None, typer.Option(
        "--primary", "-p", help="The primary task, or several: a,b,c.",
        autocompletion=complete_task_list, show_default=False)] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="Every candidate in turn as the primary.")] = False,
    candidates: Annotated[str | None, typer.Option(
        "--candidates", "-c", help="Comma-separated candidate tasks (default: the suite's).",
        autocompletion=complete_task_list, show_default=False)] = None,
    suite: SuiteOpt = None,
    selectors: Annotated[str, typer.Option(
        "--selectors", help=f"Comma-separated, from {', '.join(SELECTORS)}.",
        autocompletion=complete_names(SELECTORS))] = ",".join(
            SELECTORS),
    k: Annotated[str, typer.Option("--k", help="Set sizes to compare, e.g. 1,2.")] = "1",
    seeds: Annotated[int | None, typer.Option(
        "--seeds", min=1, help="Seeds per set (default: \\[trial] seeds).",
        show_default=False)] = None,
    max_train_examples: Annotated[int | None, typer.Option(
        "--max-train-examples", min=1, help="Train every task on its first N examples.",
        show_default=False)] = None,
    holdout_fraction: Annotated[float | None, typer.Option(
        "--holdout-fraction", min=0.0, max=1.0, help="Without a labelled test split, score on "
        "this held-out fraction of dev (default 0.5).", show_default=False)] = None,
    epochs: TrialEpochsOpt = None,
    batch_size: TrialBatchOpt = None,
    lr: TrialLrOpt = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = None,
    estimator: EstimatorOpt = None,
    measure: MeasureOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    revision: RevisionOpt = None,
    force: ForceOpt = False,
    log: LogOpt = None,
    log_dir: LogDirOpt = None,
    json_: JsonOpt = False,
    figure: Annotated[Path | None, typer.Option(
        "--figure", help="Also draw each selector's gain over the primary alone, with its "
        "interval, to FILE (.png, .svg or .pdf).", metavar="FILE", show_default=False)] = None,
    csv_: Annotated[Path | None, typer.Option(
        "--csv", help="Also write every seed's score and gain, the intervals and the rankings "
        "as long-format CSV to FILE.", metavar="FILE", show_default=False)] = None,
    nproc: NprocOpt = None,
) -> None:
    from gradts_engine.errors import UsageError

    from .. import launch

    launch.relaunch_if(nproc)

    try:
        ks = [int(x) for x in split_list(k)]
    except ValueError:
        raise UsageError(f"--k takes whole numbers, not {k!r}", hint="e.g. --k 1,2") from None
    artefacts.check_figure(figure)
    st = state(ctx)
    cfg = st.config(
        run={"model": model, "revision": revision, "device": device, "precision": value(precision),
             "seed": seed},
        trial={"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length,
               "seeds": seeds}, corr={"estimator": value(estimator)},
        probe={"measure": value(measure)})
    registry = st.registry()
    prims = [registry.get(p) for p in split_list(primary)]
    if not prims and not all_:
        raise UsageError("no primary task given", hint="pass --primary NAME (or a,b,c, or --all)")
    names = split_list(candidates)
    suite = suite or (prims[0].suite if prims and not names else None)
    if not names and not suite:
        raise UsageError("no candidates given", hint="pass --candidates a,b,... or --suite NAME")
    cands = registry.resolve(names, suite)
    if all_:
        prims = list(cands)
    elif len(prims) == 1 and not names:   # the suite's tasks minus the primary
        cands = [c for c in cands if c.name != prims[0].name]
    model_id = require_model(cfg.run.model)

    from gradts_engine.selection.compare import run_compare
    from gradts_engine.signal import ImportanceSignal

    with log_to(log, log_dir), views.progress(",".join(p.name for p in prims)) as on_event:
        result = run_compare(model_id, prims, cands, store=st.store(), run=cfg.run,
                             trial=cfg.trial, signal=ImportanceSignal.parse(
                                 cfg.probe.measure, cfg.corr.estimator, cfg.corr.method),
                             selectors=split_list(selectors), ks=ks,
                             max_train_examples=max_train_examples,
                             holdout_fraction=holdout_fraction, force=force, progress=on_event)
    if not launch.is_main():
        return  # rank 0 renders and writes the files
    for path in artefacts.write_compare(result, figure, csv_):
        output.success(f"wrote {path}")
    if json_:
        output.print_json(result.to_json())
        return
    output.show(*views.renderables(result))
    output.info(views.footer(result))
