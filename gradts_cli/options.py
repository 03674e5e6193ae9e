"""Shared option declarations, declared once (DESIGN.md §3), and the per-run state.

Commands annotate parameters with these aliases (``model: ModelOpt = None``) so that names,
help texts and completion are the same everywhere. ``None`` means "not given": the value then
comes from the config files or the environment (see ``gradts config``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# cheap engine modules (no torch, no numpy): the closed sets of values and the defaults
from gradts_engine.config import CorrSettings, ProbeSettings, TrialSettings
from gradts_engine.errors import ConfigError
from gradts_engine.models import Precision, parse_device
from gradts_engine.signal import Estimator, Measure, Method

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


def complete_names(names: Sequence[str]) -> Callable[[str], list[str]]:
    """A completer of comma-separated ``names`` (``--selectors gradts,ra<TAB>``), each once."""

    def complete(incomplete: str) -> list[str]:
        head, _, last = incomplete.rpartition(",")
        given = set(head.split(",")) if head else set()
        prefix = head + "," if head else ""
        return [prefix + n for n in names if n.startswith(last) and n not in given]

    return complete


def complete_suite(incomplete: str) -> list[str]:
    reg = _registry_for_completion()
    return [n for n in reg.suites if n.startswith(incomplete)]


def complete_entry(ctx: typer.Context, incomplete: str) -> list[str]:
    """Entry paths of the store (``cache rm probe/neg<TAB>``), under ``--home`` when given."""
    from gradts_engine.errors import GradtsError
    from gradts_engine.store import Store, resolve_root
    from gradts_engine.store_ops import entry_dirs

    try:
        store = Store(resolve_root(ctx.find_root().params.get("home")))
        paths = [p.relative_to(store.root).as_posix() for p, _ in entry_dirs(store)]
    except (GradtsError, OSError):
        return []
    return [p for p in paths if p.startswith(incomplete)]


# -- closed sets of values --------------------------------------------------------------------
class TaskKind(str, Enum):
    """``data add --kind``."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class FileFormat(str, Enum):
    """``data add --format``."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"


class Tracker(str, Enum):
    """``--log``: the experiment trackers (``gradts_engine.training.TRACKERS``)."""

    TENSORBOARD = "tensorboard"
    WANDB = "wandb"


def value(choice: Any) -> Any:
    """A parsed choice as the plain string the config and the engine take (None stays None)."""
    return choice.value if isinstance(choice, Enum) else choice


def _device(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return parse_device(text)
    except ConfigError as e:
        raise typer.BadParameter(f"{e.message} — {e.hint}") from None


def complete_device(incomplete: str) -> list[str]:
    return [d for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:1") if d.startswith(incomplete)]


def _one_name_each(values: list[str] | None) -> list[str] | None:
    for v in values or ():
        if "," in v:
            raise typer.BadParameter(
                f"{v!r} is several names: repeat the option (--task a --task b) or use "
                "--tasks a,b")
    return values


# -- aliases ----------------------------------------------------------------------------------
_P, _T = ProbeSettings(), TrialSettings()

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", metavar="MODEL", help="Hugging Face model id or local directory; minilm = "
    "the bundled MiniLM (default: \\[run] model).", show_default=False)]
RevisionOpt = Annotated[str | None, typer.Option(
    "--revision", metavar="REV", help="Model revision (branch, tag or commit) on the Hub.",
    show_default=False)]
TaskOpt = Annotated[list[str] | None, typer.Option(
    "--task", "-t", metavar="TASK", help="Task name (repeatable).", autocompletion=complete_task,
    callback=_one_name_each, show_default=False)]
TasksOpt = Annotated[str | None, typer.Option(
    "--tasks", metavar="A,B,...", help="Comma-separated task names.",
    autocompletion=complete_task_list, show_default=False)]
SuiteOpt = Annotated[str | None, typer.Option(
    "--suite", "-s", metavar="SUITE", help="A task suite (e.g. demo, glue).",
    autocompletion=complete_suite, show_default=False)]
PrimaryOpt = Annotated[str | None, typer.Option(
    "--primary", "-p", metavar="TASK", help="The primary task.", autocompletion=complete_task,
    show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", metavar="auto|cpu|cuda|cuda:N", parser=_device, autocompletion=complete_device,
    help="Where to train (default: auto = CUDA when present).", show_default=False)]
PrecisionOpt = Annotated[Precision | None, typer.Option(
    "--precision", case_sensitive=False, help="Autocast precision (default: auto = bf16 on "
    "CUDA when supported, else fp32).", show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", metavar="N", help="Random seed (default: 2018).", show_default=False)]
MeasureOpt = Annotated[Measure | None, typer.Option(
    "--measure", case_sensitive=False, help="Importance measure (default: gate).",
    show_default=False)]
EstimatorOpt = Annotated[Estimator | None, typer.Option(
    "--estimator", case_sensitive=False, help="Which task matrix: summed during fine-tuning, "
    "or one pass after it (default: \\[corr] estimator, during).", show_default=False)]
MethodOpt = Annotated[Method | None, typer.Option(
    "--method", case_sensitive=False, help="Correlation (default: kendall tau-b).",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
LogOpt = Annotated[Tracker | None, typer.Option(
    "--log", case_sensitive=False, help="Log training curves (loss and lr per step, dev metrics "
    "per epoch) to TensorBoard or Weights & Biases, one run per training run (off by default; "
    "wandb honours WANDB_MODE=offline).", show_default=False)]
LogDirOpt = Annotated[Path | None, typer.Option(
    "--log-dir", metavar="DIR", help="Where --log writes (default: ./runs).",
    show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if cached.")]
NprocOpt = Annotated[int | None, typer.Option(
    "--nproc", min=1, help="Run in N processes on this machine (the same as torchrun "
    "--nproc-per-node N; see docs/SCALE.md).", show_default=False)]


def _int(flag: str, what: str, default: Any, section: str, low: int = 1) -> Any:
    return typer.Option(flag, min=low, metavar="N", show_default=False,
                        help=f"{what} (default: {default}; \\[{section}] "
                             f"{flag[2:].replace('-', '_')}).")


ProbeEpochsOpt = Annotated[int | None, _int("--epochs", "Fine-tuning epochs", _P.epochs, "probe")]
ProbeBatchOpt = Annotated[int | None, _int("--batch-size", "Batch size", _P.batch_size, "probe")]
ProbeLrOpt = Annotated[float | None, typer.Option(
    "--lr", min=0.0, metavar="LR", show_default=False,
    help=f"Peak learning rate, AdamW (default: {_P.lr:g}; \\[probe] lr).")]
TrialEpochsOpt = Annotated[int | None, _int("--epochs", "Epochs of each run", _T.epochs, "trial")]
TrialBatchOpt = Annotated[int | None, _int("--batch-size", "Batch size", _T.batch_size, "trial")]
TrialLrOpt = Annotated[float | None, typer.Option(
    "--lr", min=0.0, metavar="LR", show_default=False,
    help=f"Peak learning rate, AdamW (default: {_T.lr:g}; \\[trial] lr).")]
MaxLenOpt = Annotated[int | None, typer.Option(
    "--max-length", min=8, metavar="N", show_default=False,
    help="Maximum tokens per example (default: \\[run] max_length, else the model's own limit "
         "up to 512).")]

# kept for callers that check strings (the engine's own names)
ESTIMATORS = Estimator.names()
METHODS = Method.names()
assert CorrSettings().method in METHODS and CorrSettings().estimator in ESTIMATORS


def task_names(task: list[str] | None, tasks: str | None) -> list[str]:
    """``--task`` (repeatable) and ``--tasks a,b`` together, in order."""
    return [*(task or []), *split_list(tasks)]


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


def require_model(model: str | None) -> str:
    """The resolved ``[run] model``, or the engine's one "no model given" error."""
    if not model:
        from gradts_engine.models import no_model_error

        raise no_model_error()
    from .checks import check_model

    check_model(model)
    return model


def split_list(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty items dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def log_to(log: Tracker | None, log_dir: Path | None) -> Any:
    """The engine's tracking context for ``--log``/``--log-dir`` (a no-op without ``--log``);
    entering it checks that the tracker's package is installed, before any work."""
    from gradts_engine.errors import UsageError
    from gradts_engine.training import tracking

    if log is None and log_dir is not None:
        raise UsageError("--log-dir is given without --log",
                         hint="add --log tensorboard (or --log wandb)")
    return tracking(value(log), log_dir)
