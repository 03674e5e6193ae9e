"""``gradts trial``: GradTS-trial, choose a primary task's auxiliary tasks by trial."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .. import artefacts, output
from ..checks import probed_task_names
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
    PrimaryOpt,
    RevisionOpt,
    SeedOpt,
    SuiteOpt,
    TrialBatchOpt,
    TrialEpochsOpt,
    TrialLrOpt,
    complete_task_list,
    log_to,
    require_model,
    split_list,
    state,
    value,
)
from ..views import trial as views

COMPARE = ("random", "all")


def register(app: typer.Typer) -> None:
    app.command("trial", help=HELP,
                short_help="GradTS-trial: choose auxiliary tasks by multi-task trials.")(trial)


HELP = (
    "GradTS-trial: rank the candidate auxiliary tasks by how well their head-importance "
    "matrices agree with the primary's (Kendall tau, from `gradts probe`), then train the "
    "primary alone (the baseline), with the top-1, the top-2, ... candidates (MT-DNN-style "
    "multi-task training) and keep the best set. Trials stop after --patience trials without a "
    "better dev score (best epoch against best epoch); the best set may be empty.\n\n"
    "With --seeds N every trial is trained N times and compared by its mean; the result says "
    "plainly when the chosen set's gain over the baseline is within the noise (spread across "
    "seeds, 90% bootstrap interval over dev examples). Without a labelled test split, "
    "--holdout-fraction keeps part of dev out of selection for an unbiased score. Every "
    "finished trial is cached: run the same command again to resume an interrupted run; "
    "--force retrains.\n\n"
    "[dim]Examples:[/dim]\n\n"
    "  gradts trial --model bert-base-cased --primary rte --suite glue\n\n"
    "  gradts trial --model bert-base-cased --primary rte --candidates mrpc,qnli,sst2 "
    "--seeds 3\n\n"
    "  gradts trial --model ./minilm --primary neg_movie --suite demo --epochs 1 --lr 1e-4 "
    "--max-length 48\n\n"
    "  gradts trial --model bert-base-cased --primary cola --suite glue --holdout-fraction 0.5 "
    "--compare random,all --json\n\n"
    "  torchrun --nproc-per-node 8 -m gradts_cli trial --model bert-base-cased --primary rte"
    " --suite glue --seeds 4\n"
)


def _ask_primary(store: Any, model: str | None, measure: str) -> str:
    """On a terminal, offer the tasks probed with the model; otherwise a usage error."""
    from gradts_engine.errors import UsageError

    probed = probed_task_names(store, model, measure) if model else []
    if not output.is_interactive() or not probed:
        raise UsageError("no primary task given", hint="pass --primary NAME"
                         + (f" (probed: {', '.join(probed)})" if probed else
                            "; see `gradts data list`"))
    return views.choose_primary(probed)


def trial(
    ctx: typer.Context,
    model: ModelOpt = None,
    primary: PrimaryOpt = None,
    candidates: Annotated[str | None, typer.Option(
        "--candidates", "-c", help="Comma-separated candidate auxiliary tasks (default: the "
        "suite's tasks minus the primary).", autocompletion=complete_task_list,
        show_default=False)] = None,
    suite: SuiteOpt = None,
    epochs: TrialEpochsOpt = None,
    patience: Annotated[int | None, typer.Option(
        "--patience", min=1, help="Stop after this many trials without improvement "
        "(default: 1).", show_default=False)] = None,
    max_aux: Annotated[int | None, typer.Option(
        "--max-aux", min=0, help="At most this many auxiliary tasks.", show_default=False)] = None,
    batch_size: TrialBatchOpt = None,
    lr: TrialLrOpt = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = None,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", min=1, help="Train every trial with this many seeds (seed, seed+1, ...) and "
        "compare means (default: 1).", show_default=False)] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    revision: RevisionOpt = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", help="Also train a random set of the selected size and/or all candidates "
        "together: random, all or random,all.", show_default=False)] = None,
    max_train_examples: Annotated[int | None, typer.Option(
        "--max-train-examples", min=1, help="Train every task on its first N examples (fits "
        "real data on a CPU).", show_default=False)] = None,
    holdout_fraction: Annotated[float | None, typer.Option(
        "--holdout-fraction", min=0.0, max=1.0, help="Keep this fraction of the primary's dev "
        "split (seeded) out of selection, to report an unbiased score.",
        show_default=False)] = None,
    estimator: EstimatorOpt = None,
    measure: MeasureOpt = None,
    force: ForceOpt = False,
    figure: Annotated[Path | None, typer.Option(
        "--figure", help="Also draw the score of every trial set to FILE (.png, .svg or "
        ".pdf).", metavar="FILE", show_default=False)] = None,
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Also write every seed's score as long-format CSV to FILE.",
        metavar="FILE", show_default=False)] = None,
    log: LogOpt = None,
    log_dir: LogDirOpt = None,
    json_: JsonOpt = False,
    nproc: NprocOpt = None,
) -> None:
    from gradts_engine.errors import UsageError

    from .. import launch

    launch.relaunch_if(nproc)

    comp = split_list(compare)
    for c in comp:
        if c not in COMPARE:
            raise UsageError(f"unknown --compare choice {c!r}",
                             hint=f"choose from {', '.join(COMPARE)} (comma-separated)")
    artefacts.check_figure(figure)
    st = state(ctx)
    cfg = st.config(
        run={"model": model, "revision": revision, "device": device,
             "precision": value(precision), "seed": seed},
        trial={"epochs": epochs, "patience": patience, "max_aux": max_aux,
               "batch_size": batch_size, "lr": lr, "max_length": max_length, "seeds": seeds},
        corr={"estimator": value(estimator)}, probe={"measure": value(measure)})
    registry = st.registry()
    if not primary:
        primary = _ask_primary(st.store(), cfg.run.model, cfg.probe.measure)
    p = registry.get(primary)
    names = split_list(candidates)
    if not names and not suite:
        if not p.suite:
            raise UsageError(f"no candidates for '{primary}'",
                             hint="pass --candidates a,b,... or --suite NAME")
        suite = p.suite
    cands = [s for s in registry.resolve(names, suite) if s.name != p.name]
    model_id = require_model(cfg.run.model)

    from gradts_engine.selection.trial import run_trial
    from gradts_engine.signal import ImportanceSignal

    store = st.store()
    with log_to(log, log_dir), views.progress(p.name, p.main_metric) as on_event:
        result = run_trial(model_id, p, cands, store=store, run=cfg.run, trial=cfg.trial,
                           signal=ImportanceSignal.parse(cfg.probe.measure, cfg.corr.estimator,
                                                         cfg.corr.method), compare=tuple(comp),
                           holdout_fraction=holdout_fraction,
                           max_train_examples=max_train_examples, force=force,
                           progress=on_event)
    if not launch.is_main():
        return  # rank 0 renders and writes the files
    for path in artefacts.write_trial(result, figure, csv):
        output.success(f"wrote {path}")
    if json_:
        output.print_json(result.to_json())
        return
    output.show(*views.renderables(result, n_classes=len(p.labels) or None))
    output.info(views.footer(result))
