"""Shared option declarations, declared once (DESIGN.md §3), and the per-run state.

Commands annotate parameters with these aliases (``model: ModelOpt = None``) so that names,
help texts and completion are the same everywhere. ``None`` means "not given": the value then
comes from the config files or the environment (see ``gradts config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gradts_engine.config import Config
    from gradts_engine.store import Store
    from gradts_engine.tasks import Registry


# -- completion (never imports torch) ---------------------------------------------------------
def _registry_for_completion() -> Any:
    from gradts_engine.tasks import build_registry

    try:
        return build_registry()
    except Exception:  # a broken user task file must not break completion
        from gradts_engine.tasks import build_registry as b

        return b(include_user=False)


def complete_task(incomplete: str) -> list[str]:
    reg = _registry_for_completion()
    return [n for n in reg.names() if n.startswith(incomplete)]


def complete_task_list(incomplete: str) -> list[str]:
    """Complete the last name of a comma-separated list (``--tasks cola,ss<TAB>``)."""
    head, _, last = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    return [prefix + n for n in complete_task(last)]


def complete_suite(incomplete: str) -> list[str]:
    reg = _registry_for_completion()
    return [n for n in reg.suites if n.startswith(incomplete)]


# -- aliases ----------------------------------------------------------------------------------
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Hugging Face model id or local directory (default: \\[run] model).",
    show_default=False)]
RevisionOpt = Annotated[str | None, typer.Option(
    "--revision", help="Model revision (branch, tag or commit) on the Hub.", show_default=False)]
TaskOpt = Annotated[list[str] | None, typer.Option(
    "--task", "-t", help="Task name (repeatable).", autocompletion=complete_task,
    show_default=False)]
TasksOpt = Annotated[str | None, typer.Option(
    "--tasks", help="Comma-separated task names.", autocompletion=complete_task_list,
    show_default=False)]
SuiteOpt = Annotated[str | None, typer.Option(
    "--suite", "-s", help="A task suite (e.g. demo, glue).", autocompletion=complete_suite,
    show_default=False)]
PrimaryOpt = Annotated[str | None, typer.Option(
    "--primary", "-p", help="The primary task.", autocompletion=complete_task,
    show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N (default: auto).", show_default=False)]
PrecisionOpt = Annotated[str | None, typer.Option(
    "--precision", help="auto, fp32, bf16 or fp16 (default: auto = bf16 on CUDA, else fp32).",
    show_default=False)]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (default: 2018).",
                                             show_default=False)]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", min=1, help="Training epochs.",
                                               show_default=False)]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Batch size.",
                                              show_default=False)]
LrOpt = Annotated[float | None, typer.Option("--lr", min=0.0, help="Peak learning rate (AdamW).",
                                             show_default=False)]
MaxLenOpt = Annotated[int | None, typer.Option("--max-length", min=8,
                                               help="Maximum tokens per example.",
                                               show_default=False)]
MeasureOpt = Annotated[str | None, typer.Option(
    "--measure", help="Importance measure: gate (default), qkv or legacy.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if cached.")]


# -- per-run state ----------------------------------------------------------------------------
@dataclass
class State:
    """Global options of one invocation (set by the app callback, read by commands)."""

    home: Path | None = None
    config_file: Path | None = None
    tasks_files: list[Path] = field(default_factory=list)
    quiet: bool = False

    def store(self) -> Store:
        from gradts_engine.store import Store, resolve_root

        return Store(resolve_root(self.home))

    def registry(self) -> Registry:
        from gradts_engine.tasks import build_registry

        return build_registry(self.tasks_files)

    def config(self, **sections: dict[str, Any]) -> Config:
        from gradts_engine.config import resolve

        return resolve(sections, str(self.config_file) if self.config_file else None)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


# The engine's choices (gradts_engine.results.ESTIMATORS, gradts_engine.correlate.METHODS),
# repeated here so that parsing flags imports neither numpy nor the engine; a test keeps them equal.
ESTIMATORS = ("during", "after")
METHODS = ("kendall", "spearman", "pearson")


def check_choice(value: str | None, choices: tuple[str, ...], what: str, flag: str) -> None:
    """A usage error for a value (when given) that is not one of ``choices``."""
    if value is not None and value not in choices:
        from gradts_engine.errors import UsageError

        raise UsageError(f"unknown {what} {value!r}",
                         hint=f"choose {flag} from {', '.join(choices)}")


def require_model(model: str | None) -> str:
    """The resolved ``[run] model``, or the engine's one "no model given" error."""
    if not model:
        from gradts_engine.models import no_model_error

        raise no_model_error()
    return model


def split_list(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty items dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]
