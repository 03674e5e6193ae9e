"""``gradts report``: one summary of what the store holds for a model (and a primary task)."""

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
    state,
    value,
)
from ..views import report as views


def register(app: typer.Typer) -> None:
    app.command("report", help=HELP,
                short_help="What was measured, chosen and gained, with the cost.")(report)


HELP = """Summarise what the store holds for a model: what was chosen and why.

Reads the cache (never trains): the tasks probed (examples, training loss, dev metric, time),
the Kendall tau matrix and the candidate rankings, GradTS-trial's candidate sets, baseline,
selected set and noise verdict, GradTS-fg's kept instances and scores, and the compute each
stage cost (seconds, device). Without --model, the only model in the store is used.

--svg FILE and --html FILE save the same view (for a report or a pull request); --json prints
it as data.

[dim]Examples:[/dim]

  gradts report

  gradts report --model bert-base-cased --primary rte

  gradts report --model bert-base-cased --primary rte --svg report.svg --html report.html

  gradts --home ~/.local/share/gradts/.demo report --primary match_person

  gradts report --model bert-base-cased --json > report.json
"""


def report(
    ctx: typer.Context,
    model: ModelOpt = None,
    primary: PrimaryOpt = None,
    measure: MeasureOpt = None,
    estimator: EstimatorOpt = None,
    method: MethodOpt = None,
    svg: Annotated[Path | None, typer.Option(
        "--svg", help="Also save the view as an SVG image to FILE.", metavar="FILE",
        show_default=False)] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also save the view as an HTML page to FILE.", metavar="FILE",
        show_default=False)] = None,
    no_matrix: Annotated[bool, typer.Option(
        "--no-matrix", help="Leave out the task x task matrix (shorter view).")] = False,
    json_: JsonOpt = False,
) -> None:
    st = state(ctx)
    cfg = st.config(run={"model": model}, probe={"measure": value(measure)},
                    corr={"method": value(method), "estimator": value(estimator)})

    from gradts_engine.errors import GradtsError
    from gradts_engine.report import build_report

    try:
        registry = st.registry()
    except GradtsError:  # a broken user task file must not stop a read-only summary
        registry = None
    store = st.store()
    if cfg.run.model:
        from gradts_engine.corr import probed_models

        check_model(cfg.run.model, probed_models(store))
    if primary:
        check_tasks([primary], registry.names() if registry is not None else [],
                    probed_task_names(store, None, cfg.probe.measure))
    rep = build_report(store, cfg.run.model, primary, measure=cfg.probe.measure,
                       estimator=cfg.corr.estimator, method=cfg.corr.method, registry=registry)
    classes = ({s.name: len(s.labels) for s in registry if s.kind == "classification"}
               if registry is not None else {})
    items = views.renderables(rep, matrix=not no_matrix, n_classes=classes)
    if json_:
        output.print_json(rep.to_dict())
    else:
        output.show(*items)
    if svg is not None or html is not None:
        for path in views.export(items, svg=svg, html=html,
                                 title=f"gradts report — {rep.model_name}"):
            output.success(f"wrote {path}")
