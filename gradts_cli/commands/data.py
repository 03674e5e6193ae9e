"""``gradts data``: list, show, add and download tasks (engine: :mod:`gradts_engine.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import output
from ..options import (
    FileFormat,
    JsonOpt,
    SuiteOpt,
    TaskKind,
    complete_task,
    split_list,
    state,
    value,
)
from ..views import data as views
from ..views.progress import reporter

data_app = typer.Typer(
    help="Tasks and their data: list, show, add local files, download from the Hub.\n\n"
         "[dim]Example:[/dim] gradts data list",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data", short_help="Tasks and their data: list, show, add, get.")


# -- list -------------------------------------------------------------------------------------
LIST_HELP = """List every task: built-in GLUE and demo tasks and your own (`gradts data add`).

[dim]Examples:[/dim]

  gradts data list

  gradts data list --suite glue --json
"""


@data_app.command("list", help=LIST_HELP)
def list_(ctx: typer.Context, suite: SuiteOpt = None, json_: JsonOpt = False) -> None:
    from gradts_engine.data import list_tasks

    st = state(ctx)
    reg = st.registry()
    rows = list_tasks(reg, st.store())
    if suite is not None:
        keep = {t.name for t in reg.suite(suite)}
        rows = [r for r in rows if r.name in keep]
    if json_:
        output.print_json({"tasks": rows})
        return
    output.show(views.list_table(rows))


# -- show -------------------------------------------------------------------------------------
SHOW_HELP = """Show a task: its declaration, split sizes, label distribution and a few examples.

Loads the data (a Hub task is downloaded on first use).

[dim]Examples:[/dim]

  gradts data show neg_movie

  gradts data show my_cola --examples 5 --json
"""


@data_app.command("show", help=SHOW_HELP)
def show(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name.", autocompletion=complete_task,
                                        show_default=False)],
    examples: Annotated[int, typer.Option("--examples", "-n", min=0,
                                          help="Examples shown per split.")] = 3,
    json_: JsonOpt = False,
) -> None:
    from gradts_engine.data import summarize_task

    st = state(ctx)
    spec = st.registry().get(task)
    summary = summarize_task(spec, store=st.store(), n_examples=examples)
    if json_:
        output.print_json({
            "task": spec.name, "spec": spec, "data_fingerprint": summary.data_fingerprint,
            "revision": summary.revision,
            "splits": [{"split": s.split, "size": s.size, "has_labels": s.has_labels,
                        "distribution": s.distribution, "fingerprint": s.fingerprint,
                        "examples": [{"text": dict(zip(spec.text_fields, texts, strict=True)),
                                      "label": label} for texts, label in s.examples]}
                       for s in summary.splits]})
        return
    output.show(*views.show_tables(spec, summary, examples))


# -- add --------------------------------------------------------------------------------------
ADD_HELP = """Declare a task from local CSV, TSV or JSON Lines files.

Reads every file to check it (columns, labels), infers the label names from the data unless
--labels is given (sorted distinct values), then writes <user config dir>/tasks/NAME.toml.
Columns are named by header or by index (0, 1, ...; with --no-header the only way). Quote
characters are text unless --quoting is given (as the original GLUE TSV files need).

[dim]Examples:[/dim]

  gradts data add my_cola --train CoLA/train.tsv --no-header --text 3 --label 1

  gradts data add my_mrpc --train MRPC/train.tsv --text "#1 String,#2 String" --label Quality

  gradts data add my_sts --train sts.jsonl --text a,b --label score --kind regression
"""


@data_app.command("add", help=ADD_HELP)
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="New task name (\\[a-z]\\[a-z0-9_]*).",
                                        show_default=False)],
    train: Annotated[Path, typer.Option("--train", help="Training file.", show_default=False)],
    text: Annotated[str, typer.Option("--text", help="Text column(s): one, or two "
                                      "comma-separated for a sentence-pair task.",
                                      show_default=False)],
    label: Annotated[str, typer.Option("--label", help="Label column.", show_default=False)],
    dev: Annotated[Path | None, typer.Option("--dev", help="Development file.",
                                             show_default=False)] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Test file (labels optional).",
                                              show_default=False)] = None,
    kind: Annotated[TaskKind, typer.Option("--kind", case_sensitive=False,
                                           help="What the label is.")] = TaskKind.CLASSIFICATION,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Label names in id order, comma-separated (default: from the data).",
        show_default=False)] = None,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", help="Metrics, the first is the main one (accuracy, f1, matthews; "
        "pearson, spearman).", show_default=False)] = None,
    header: Annotated[bool, typer.Option("--header/--no-header",
                                         help="Whether the first line names the columns.")]
    = True,
    quoting: Annotated[bool, typer.Option("--quoting/--no-quoting",
                                          help="Honour CSV quoting (default: quotes are text).")]
    = False,
    fmt: Annotated[FileFormat | None, typer.Option(
        "--format", case_sensitive=False, help="File format (default: from the file extension).",
        show_default=False)] = None,
    description: Annotated[str, typer.Option("--description", help="One line about the task.")]
    = "",
    force: Annotated[bool, typer.Option("--force", help="Replace a task of that name added "
                                        "before.")] = False,
    json_: JsonOpt = False,
) -> None:
    from gradts_engine.data import add_local_task
    from gradts_engine.errors import UsageError

    columns = split_list(text)
    if not 1 <= len(columns) <= 2:
        raise UsageError(f"--text takes one or two columns, not {len(columns)}",
                         hint='e.g. --text sentence or --text "sentence1,sentence2"')
    if kind not in ("classification", "regression"):
        raise UsageError(f"--kind must be classification or regression, not {kind!r}")
    if fmt is not None and fmt not in ("csv", "tsv", "jsonl"):
        raise UsageError(f"--format must be csv, tsv or jsonl, not {fmt!r}")
    files = {"train": train, **({"dev": dev} if dev else {}), **({"test": test} if test else {})}
    st = state(ctx)
    added = add_local_task(name, files, text=columns, label=label, kind=value(kind),
                           labels=split_list(labels) or None, header=header, format=value(fmt),
                           quoting=quoting, metrics=split_list(metrics) or None,
                           description=description, force=force, store=st.store())
    if json_:
        output.print_json({"task": added.spec.name, "file": added.path, "sizes": added.sizes,
                           "labels": added.spec.labels, "replaced": added.replaced})
        return
    sizes = ", ".join(f"{s} {n}" for s, n in added.sizes.items())
    labels_txt = (f"labels {', '.join(added.spec.labels)}" if added.spec.labels
                  else "regression")
    output.success(f"{'replaced' if added.replaced else 'added'} task '{added.spec.name}' "
                   f"({sizes}; {labels_txt})")
    output.info(f"declared in {added.path}; see it with: gradts data show {added.spec.name}")


# -- rm ---------------------------------------------------------------------------------------
RM_HELP = """Remove a task declared with `gradts data add` (its TOML file; the data files stay).

Cached results computed for the task stay in the store; the command names them and the
`gradts cache rm` command that removes them.

[dim]Example:[/dim]

  gradts data rm my_cola
"""


@data_app.command("rm", help=RM_HELP)
def rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Task name.", autocompletion=complete_task,
                                        show_default=False)],
    json_: JsonOpt = False,
) -> None:
    from gradts_engine.data import remove_local_task

    st = state(ctx)
    removed = remove_local_task(name, store=st.store(), task_files=st.tasks_files)
    if json_:
        output.print_json({"task": removed.name, "file": removed.path,
                           "cached": list(removed.cached)})
        return
    output.success(f"removed task '{removed.name}' ({removed.path})")
    if removed.cached:
        n = len(removed.cached)
        what, it = ("entry remains", "it") if n == 1 else ("entries remain", "them")
        output.info(f"{n} cached {what} for '{removed.name}'; remove {it} with: "
                    f"gradts cache rm {' '.join(removed.cached)}")


# -- get --------------------------------------------------------------------------------------
GET_HELP = """Download and prepare tasks' data (Hub datasets are cached and their commit recorded).

Local and demo tasks are read and checked. Offline (HF_HUB_OFFLINE=1) only what is cached is used.

[dim]Examples:[/dim]

  gradts data get cola rte

  gradts data get --suite glue
"""


@data_app.command("get", help=GET_HELP)
def get(
    ctx: typer.Context,
    tasks: Annotated[list[str] | None, typer.Argument(help="Task names.",
                                                      autocompletion=complete_task,
                                                      show_default=False)] = None,
    suite: SuiteOpt = None,
    json_: JsonOpt = False,
) -> None:
    from gradts_engine.data import fetch_tasks
    from gradts_engine.errors import UsageError

    if not tasks and not suite:
        raise UsageError("name at least one task or a --suite", hint="e.g. gradts data get cola")
    st = state(ctx)
    specs = st.registry().resolve(tasks or (), suite)
    with reporter() as progress:
        fetched = fetch_tasks(specs, store=st.store(), progress=progress)
    if json_:
        output.print_json({"tasks": fetched})
        return
    output.show(views.fetched_table(fetched))
