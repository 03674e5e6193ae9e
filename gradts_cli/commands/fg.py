"""``gradts fg``: GradTS-fg, keep the auxiliary instances that look like the primary task."""

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
    MethodOpt,
    ModelOpt,
    NprocOpt,
    PrecisionOpt,
    PrimaryOpt,
    RevisionOpt,
    SeedOpt,
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
from ..views import fg as views


def register(app: typer.Typer) -> None:
    app.command("fg", help=HELP,
                short_help="GradTS-fg: keep only the auxiliary instances like the primary.")(fg)


HELP = (
    "GradTS-fg: from the auxiliary tasks chosen by `gradts trial` (or --aux), keep only the "
    "instances whose own head-importance matrix correlates with the primary's task matrix "
    "(Kendall tau ≥ --threshold, 0.62 as in the original; or each task's top --keep-fraction), "
    "then train the primary with all its data plus the kept instances (the same multi-task "
    "training and settings as `gradts trial`, so the numbers are comparable).\n\n"
    "Reports how many instances of each auxiliary task were kept and the primary's dev score "
    "against the primary alone and the trial's set. --sweep tries several thresholds and "
    "charts the score against the fraction of auxiliary data kept. A cut that keeps nothing "
    "trains the primary alone. Needs instance matrices: the auxiliary tasks must be probed "
    "without --no-instances. Selections (index lists) and finished runs are cached: run the "
    "same command again to resume; --force recomputes the selections and retrains.\n\n"
    "[dim]Examples:[/dim]\n\n"
    "  gradts fg --model bert-base-cased --primary rte\n\n"
    "  gradts fg --model bert-base-cased --primary rte --sweep 0.4,0.5,0.62,0.7 --seeds 3\n\n"
    "  gradts fg --model bert-base-cased --primary rte --aux mrpc,qnli --keep-fraction 0.25\n\n"
    "  gradts fg --model ./minilm --primary neg_movie --epochs 1 --lr 1e-4 --max-length 48 "
    "--estimator after --json\n\n"
    "  torchrun --nproc-per-node 8 -m gradts_cli fg --model bert-base-cased --primary rte"
    " --sweep 0.4,0.5,0.62,0.7 --seeds 2\n"
)


def _floats(value: str | None, flag: str) -> list[float] | None:
    from gradts_engine.errors import UsageError

    if value is None:
        return None
    items = split_list(value)
    try:
        vals = [float(v) for v in items]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, not {value!r}",
                         hint=f"e.g. {flag} 0.4,0.5,0.62") from None
    if not vals:
        raise UsageError(f"{flag} needs at least one number", hint=f"e.g. {flag} 0.4,0.5,0.62")
    return vals


def fg(
    ctx: typer.Context,
    model: ModelOpt = None,
    primary: PrimaryOpt = None,
    aux: Annotated[str | None, typer.Option(
        "--aux", "-a", help="Comma-separated auxiliary tasks (default: the set selected by "
        "`gradts trial` for the primary).", autocompletion=complete_task_list,
        show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Keep instances with tau ≥ this (default: \\[fg] threshold, 0.62).",
        show_default=False)] = None,
    keep_fraction: Annotated[str | None, typer.Option(
        "--keep-fraction", help="Keep each auxiliary task's top fraction of instances by tau "
        "instead (one or several, comma-separated: 0.25,0.5).", show_default=False)] = None,
    sweep: Annotated[str | None, typer.Option(
        "--sweep", help="Several thresholds in one command, e.g. 0.4,0.5,0.62,0.7.",
        show_default=False)] = None,
    estimator: EstimatorOpt = None,
    method: MethodOpt = None,
    measure: MeasureOpt = None,
    epochs: TrialEpochsOpt = None,
    batch_size: TrialBatchOpt = None,
    lr: TrialLrOpt = None,
    max_length: MaxLenOpt = None,
    seed: SeedOpt = None,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", min=1, help="Train every run with this many seeds (seed, seed+1, ...) and "
        "report means (default: \\[trial] seeds).", show_default=False)] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    revision: RevisionOpt = None,
    force: ForceOpt = False,
    figure: Annotated[Path | None, typer.Option(
        "--figure", help="Also draw the score per fraction kept to FILE (.png, .svg or .pdf), "
        "and the instance-tau histograms to FILE-taus.", metavar="FILE",
        show_default=False)] = None,
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Also write every cut's scores and kept counts as long-format CSV to "
        "FILE.", metavar="FILE", show_default=False)] = None,
    log: LogOpt = None,
    log_dir: LogDirOpt = None,
    json_: JsonOpt = False,
    nproc: NprocOpt = None,
) -> None:
    from gradts_engine.errors import UsageError

    from .. import launch

    launch.relaunch_if(nproc)

    given = [f for f, v in (("--threshold", threshold), ("--sweep", sweep),
                            ("--keep-fraction", keep_fraction)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be used together",
                         hint="give one threshold (--threshold), several (--sweep) or "
                              "--keep-fraction")
    thresholds = _floats(sweep, "--sweep") if sweep is not None else (
        [threshold] if threshold is not None else None)
    fractions = _floats(keep_fraction, "--keep-fraction")
    artefacts.check_figure(figure)
    st = state(ctx)
    cfg = st.config(
        run={"model": model, "revision": revision, "device": device,
             "precision": value(precision), "seed": seed},
        trial={"epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length,
               "seeds": seeds},
        corr={"estimator": value(estimator), "method": value(method)},
        probe={"measure": value(measure)})
    if not primary:
        raise UsageError("no primary task given", hint="pass --primary NAME; see `gradts data "
                         "list`")
    model_id = require_model(cfg.run.model)
    registry = st.registry()
    p = registry.get(primary)
    aux_specs = [registry.get(a) for a in split_list(aux)] if aux is not None else None
    if aux_specs is not None and not aux_specs:
        raise UsageError("--aux names no task", hint="e.g. --aux mrpc,qnli")

    from gradts_engine.selection.cuts import make_cuts
    from gradts_engine.selection.fg import run_fg
    from gradts_engine.signal import ImportanceSignal

    with log_to(log, log_dir), views.progress(p.name, p.main_metric) as on_event:
        result = run_fg(model_id, p, aux_specs, store=st.store(), run=cfg.run,
                        trial_settings=cfg.trial, cuts=make_cuts(thresholds, fractions, cfg.fg),
                        signal=ImportanceSignal.parse(cfg.probe.measure, cfg.corr.estimator,
                                                      cfg.corr.method), force=force,
                        progress=on_event, registry=registry)
    if not launch.is_main():
        return  # rank 0 renders and writes the files
    for path in artefacts.write_fg(st.store(), result, figure, csv):
        output.success(f"wrote {path}")
    if json_:
        output.print_json(result.to_json())
        return
    output.show(*views.renderables(result, n_classes=len(p.labels) or None))
    output.info(views.footer(result))
