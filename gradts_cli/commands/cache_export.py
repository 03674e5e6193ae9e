"""``gradts cache export``: stored results as plain files for other tools (issue 15).

Matrices (:func:`gradts_engine.export.export_task_matrices` and
:func:`~gradts_engine.export.export_instance_matrices`) into a directory, or GradTS-fg's kept
instances (:func:`~gradts_engine.export.export_kept_instances`) as a TSV or JSONL subset of
the auxiliary tasks' original rows, to train with another trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import output
from ..options import MeasureOpt, ModelOpt, TaskOpt, require_model, state

HELP = """Export stored results as plain files: matrices (.npy or .csv) or fg's kept rows.

Without --kept: every task matrix of the model's probed tasks (both estimators and their raw
forms) into DIR, as <task>.<estimator>.npy (layers x heads) or one task_matrices.csv (long
format); with --instances also each task's per-instance matrices R_i with the index of each
instance in the task's train split (<task>.instances.npy + <task>.index.npy, or
<task>.instances.csv).

With --kept PRIMARY: the auxiliary rows that GradTS-fg kept for PRIMARY (its best cut, or
--cut LABEL), with the task, the row's index in the train split, its text fields, its label
and its tau, as TSV or JSONL (from the file name's suffix).

[dim]Examples:[/dim]

  gradts cache export exported/ --model bert-base-cased

  gradts cache export exported/ --model bert-base-cased --task rte --instances --format csv

  gradts cache export kept.jsonl --model bert-base-cased --kept rte

  gradts cache export kept.tsv --model bert-base-cased --kept rte --cut "top 25%"
"""


def register_export(cache_app: typer.Typer) -> None:
    cache_app.command("export", help=HELP)(export)


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="A directory (matrices) or a .tsv/.jsonl file "
                                        "(--kept).", metavar="OUT", show_default=False)],
    model: ModelOpt = None,
    task: TaskOpt = None,
    measure: MeasureOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Matrices as npy or csv.")] = "npy",
    instances: Annotated[bool, typer.Option(
        "--instances", help="Also the per-instance matrices, with their train-split index.")
        ] = False,
    kept: Annotated[str | None, typer.Option(
        "--kept", help="Export the rows GradTS-fg kept for this primary task instead.",
        metavar="PRIMARY", show_default=False)] = None,
    cut: Annotated[str | None, typer.Option(
        "--cut", help="With --kept: which cut (its label, e.g. 'top 25%' or 'tau ≥ 0.62'; "
        "default: the best).", show_default=False)] = None,
) -> None:
    from gradts_engine import export as ex
    from gradts_engine.errors import MissingResultError, UsageError

    st = state(ctx)
    cfg = st.config(run={"model": model}, probe={"measure": measure})
    model_id = require_model(cfg.run.model)
    store = st.store()
    if kept is not None:
        from gradts_engine.selection.fg import load_fg_result

        if task or instances:
            raise UsageError("--kept exports fg's kept rows; --task and --instances are for "
                             "matrices", hint="drop --task/--instances, or drop --kept")
        res = load_fg_result(store, model_id, kept)
        if res is None:
            raise MissingResultError(f"no GradTS-fg result for '{kept}' with model {model_id}",
                                     hint=f"run: gradts fg --model {model_id} --primary {kept}")
        registry = st.registry()
        got = ex.export_kept_instances(store, res, {t: registry.get(t) for t in res.aux
                                                    if t in registry}, out, cut=cut)
    else:
        if cut is not None:
            raise UsageError("--cut needs --kept PRIMARY", hint="add --kept TASK")
        from gradts_engine.corr import probed_tasks
        from gradts_engine.results import load_result

        names = list(task or []) or probed_tasks(store, model_id, cfg.probe.measure)
        if not names:
            raise MissingResultError(f"no task has been probed with model {model_id}",
                                     hint=f"run: gradts probe --model {model_id} --task TASK")
        results = [load_result(store, model_id, t, cfg.probe.measure) for t in names]
        got = ex.export_task_matrices(results, out, fmt)
        files = list(got.files)
        for r in results if instances else []:
            files += ex.export_instance_matrices(r, out, fmt).files
        got = ex.ExportResult(tuple(files), got.counts)
    for path in got.files:
        output.success(f"wrote {path}")
    output.info(", ".join(f"{t}: {n}" for t, n in got.counts.items()) or "nothing exported")
