"""``gradts probe``: fine-tune on each task and measure its attention-head importance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from gradts_engine.signal import Estimator

from .. import output
from ..options import (
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    LogDirOpt,
    LogOpt,
    MaxLenOpt,
    MeasureOpt,
    ModelOpt,
    NprocOpt,
    PrecisionOpt,
    ProbeBatchOpt,
    ProbeEpochsOpt,
    ProbeLrOpt,
    RevisionOpt,
    SeedOpt,
    SuiteOpt,
    TaskOpt,
    TasksOpt,
    log_to,
    require_model,
    state,
    task_names,
    value,
)
from ..views import probe as views

if TYPE_CHECKING:
    from gradts_engine.probe import ProbeRun



def register(app: typer.Typer) -> None:
    app.command("probe", help=HELP,
                short_help="Fine-tune on each task and measure its head importance.")(probe)


HELP = """Probe tasks: fine-tune the model on each task, then measure how important every
attention head is for it (a layers x heads matrix per task, and one per training example).

Both estimators are stored: [bold]during[/bold] (gate gradients summed over fine-tuning; the
default for rankings) and [bold]after[/bold] (one pass after fine-tuning, as the original
GradTS). Results are cached: a task probed with the same model, data and settings is reused
at once (--force recomputes); an interrupted run resumes with the tasks not yet finished.

[dim]Examples:[/dim]

  gradts probe --model bert-base-cased --suite glue

  gradts probe --model bert-base-cased --task rte --task mrpc --epochs 1 --max-length 128

  gradts probe --model ./my-model --tasks cola,sst2 --max-train-examples 2000 --json

  gradts probe --model roberta-base --suite demo --measure qkv --device cuda --precision bf16

  gradts probe --model minilm --suite demo --log tensorboard --log-dir runs

  torchrun --nproc-per-node 8 -m gradts_cli probe --model bert-base-cased --suite glue
"""


def probe(
    ctx: typer.Context,
    model: ModelOpt = None,
    task: TaskOpt = None,
    tasks: TasksOpt = None,
    suite: SuiteOpt = None,
    measure: MeasureOpt = None,
    epochs: ProbeEpochsOpt = None,
    batch_size: ProbeBatchOpt = None,
    lr: ProbeLrOpt = None,
    max_length: MaxLenOpt = None,
    max_train_examples: Annotated[int | None, typer.Option(
        "--max-train-examples", min=1, help="Use only the first N training examples.",
        show_default=False)] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    revision: RevisionOpt = None,
    instances: Annotated[bool | None, typer.Option(
        "--instances/--no-instances", help="Store per-example matrices (needed by fg; default: "
        "yes).", show_default=False)] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Run the model repository's own code (only if you trust "
        "it).")] = False,
    estimator: Annotated[Estimator, typer.Option(
        "--estimator", case_sensitive=False,
        help="Which task matrix the heatmaps show (both are stored).")] = Estimator.DURING,
    force: ForceOpt = False,
    log: LogOpt = None,
    log_dir: LogDirOpt = None,
    json_: JsonOpt = False,
    nproc: NprocOpt = None,
) -> None:
    from gradts_engine.errors import UsageError

    from .. import launch

    launch.relaunch_if(nproc)
    st = state(ctx)
    cfg = st.config(
        run={"model": model, "revision": revision, "device": device,
             "precision": value(precision),
             "seed": seed, "trust_remote_code": True if trust_remote_code else None},
        probe={"measure": value(measure), "epochs": epochs, "batch_size": batch_size, "lr": lr,
               "max_length": max_length, "max_train_examples": max_train_examples,
               "instances": instances})
    registry = st.registry()
    names = task_names(task, tasks)
    if not names and not suite:
        if not output.is_interactive():
            raise UsageError("no tasks given",
                             hint="pass --task NAME (repeatable), --tasks a,b or --suite NAME; "
                                  "see `gradts data list`")
        names, suite = views.choose_tasks(registry.names(), dict(registry.suites))
    specs = registry.resolve(names, suite)
    model_id = require_model(cfg.run.model)

    from gradts_engine.probe import probe_tasks

    store = st.store()
    with log_to(log, log_dir), views.progress(len(specs)) as on_event:
        result = probe_tasks(model_id, specs, store=store, run=cfg.run, probe=cfg.probe,
                             force=force, progress=on_event)
    if not launch.is_main():
        return  # rank 0 renders the whole run
    if json_:
        output.print_json(as_data(result))
        return
    output.show(*views.renderables(result, estimator.value, {s.name: len(s.labels) for s in specs
                                                       if s.kind == "classification"}))


def as_data(result: ProbeRun) -> dict[str, Any]:
    """The run as JSON-ready data: every task with its settings, timings and matrices."""
    tasks = []
    for o in result.outcomes:
        r = o.result
        tasks.append({
            "task": o.task, "cached": o.cached, "seconds": round(o.seconds, 3),
            "path": str(r.entry.path), "num_instances": r.num_instances,
            "num_layers": r.num_layers, "num_heads": r.num_heads,
            "has_instances": r.has_instances, "settings": dict(r.settings),
            "info": dict(r.info), "created": r.entry.meta.get("created"),
            "matrices": {k: v.tolist() for k, v in r.matrices.items()},
        })
    return {"model": result.model, "model_cache_id": result.model_cache_id,
            "measure": result.measure, "tasks": tasks}
