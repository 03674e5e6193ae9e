"""``gradts corr``: correlate the stored head-importance matrices of tasks; rank candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import output
from ..checks import check_model, check_tasks, probed_task_names
from ..options import (
    EstimatorOpt,
    JsonOpt,
    MeasureOpt,
    MethodOpt,
    ModelOpt,
    PrimaryOpt,
    SeedOpt,
    SuiteOpt,
    TaskOpt,
    TasksOpt,
    state,
    task_names,
    value,
)
from ..views import corr as views
from ..views.progress import reporter


def register(app: typer.Typer) -> None:
    app.command("corr", help=HELP,
                short_help="Rank candidate auxiliary tasks by Kendall tau (reads the store).")(corr)


HELP = """Correlate tasks' head-importance matrices and rank candidate auxiliary tasks.

Reads the matrices that [bold]gradts probe[/bold] stored; never trains. Without --tasks or
--suite, every task probed with the model (and measure) is used. Prints the task x task
Kendall tau-b matrix and, for each primary (or just --primary), its candidates ranked by tau
with p-values.

--instances (with --primary): GradTS-fg's instance level, the primary's task matrix against
every training example's matrix of each candidate: mean, median, share above 0.5/0.62/0.7 and
a histogram.

--bootstrap N: resample each task's examples N times and rebuild its matrix, for a 90%
interval of every tau and how often each candidate keeps its rank. Only the [bold]after[/bold]
estimator is a mean over examples, so the intervals always describe it; with the default
[bold]during[/bold] estimator they are shown beside the after estimator's own tau and rank.

--csv FILE writes one row per (primary, candidate) pair: statistic, p-value, rank, interval.

[dim]Examples:[/dim]

  gradts corr --model bert-base-cased --suite glue --primary rte

  gradts corr --model bert-base-cased --tasks rte,mrpc,qnli,cola --pvalues --heatmap

  gradts corr --model bert-base-cased --primary rte --instances --bootstrap 200 --seed 1

  gradts corr --model bert-base-cased --estimator after --method spearman --csv corr.csv

  gradts corr --model bert-base-cased --suite glue --json > corr.json
"""


def corr(
    ctx: typer.Context,
    model: ModelOpt = None,
    task: TaskOpt = None,
    tasks: TasksOpt = None,
    suite: SuiteOpt = None,
    primary: PrimaryOpt = None,
    method: MethodOpt = None,
    measure: MeasureOpt = None,
    estimator: EstimatorOpt = None,
    instances: Annotated[bool, typer.Option(
        "--instances", help="Instance-level correlations with --primary (GradTS-fg).")] = False,
    bootstrap: Annotated[int | None, typer.Option(
        "--bootstrap", min=0, help="Bootstrap resamples of the examples (default: \\[corr] "
        "bootstrap, 0 = none).", show_default=False)] = None,
    seed: SeedOpt = None,
    pvalues: Annotated[bool, typer.Option(
        "--pvalues", help="Also print the matrix of p-values.")] = False,
    heatmap: Annotated[bool, typer.Option(
        "--heatmap", help="Print each task's head-importance heatmap.")] = False,
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Write every (primary, candidate) pair as CSV to FILE.", metavar="FILE",
        show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    from gradts_engine.errors import UsageError

    if instances and not primary:
        raise UsageError("--instances needs --primary",
                         hint="add --primary TASK (instance correlations are with its matrix)")
    st = state(ctx)
    cfg = st.config(run={"model": model, "seed": seed}, probe={"measure": value(measure)},
                    corr={"method": value(method), "estimator": value(estimator),
                          "bootstrap": bootstrap})
    if not cfg.run.model:
        from gradts_engine.corr import probed_models

        models = probed_models(st.store())
        raise UsageError("no model given",
                         hint="pass --model (the one the tasks were probed with)"
                              + (f"; probed in the store: {', '.join(models)}" if models else ""))
    names: list[str] | None = task_names(task, tasks)
    registry = st.registry()
    if suite:
        names = [s.name for s in registry.resolve([], suite)] + list(names or [])
    store = st.store()
    from gradts_engine.corr import probed_models

    check_model(cfg.run.model, probed_models(store))
    check_tasks([*(names or []), *([primary] if primary else [])], registry.names(),
                probed_task_names(store, cfg.run.model, cfg.probe.measure))
    if not names:
        names = None  # every task probed with the model

    from gradts_engine.corr import correlate_tasks

    with reporter() as report:
        res = correlate_tasks(
            store, cfg.run.model, names, primary=primary, method=cfg.corr.method,
            measure=cfg.probe.measure, estimator=cfg.corr.estimator, instances=instances,
            bootstrap=cfg.corr.bootstrap, seed=cfg.run.seed, progress=report)
    if csv is not None:
        from gradts_engine.store import atomic_write_text

        atomic_write_text(csv, res.to_csv(), what="--csv")
    if json_:
        output.print_json(res.to_dict())
    else:
        for w in res.warnings:
            output.warn(w)
        output.show(*views.renderables(res, pvalues=pvalues, heatmaps=heatmap))
        output.info(views.footer(res))
    if csv is not None:
        output.success(f"wrote {csv}")
