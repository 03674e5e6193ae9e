"""Checks of the names a user typed, done before the engine is called (issue 11).

An unknown name is a task or model error first (exit 3 or 6, with "did you mean"), never a
"missing result" telling the user to probe the misspelt name: a task is known when it is
registered or was probed with the model; a model is known when it exists on disk, is a Hub id,
or names results in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def check_tasks(names: Iterable[str], registered: Sequence[str], probed: Sequence[str]) -> None:
    """Raise :class:`UnknownTaskError` for the first name neither registered nor probed."""
    from gradts_engine.errors import UnknownTaskError, did_you_mean

    known = {*registered, *probed}
    for name in names:
        if name not in known:
            hint = did_you_mean(name, sorted(known))
            raise UnknownTaskError(f"unknown task '{name}'",
                                   hint=(hint + " " if hint else "") + "see `gradts data list`",
                                   name=name)


def looks_like_path(model: str) -> bool:
    """``./m``, ``/a/b``, ``~/m``, or a name whose first component is a local directory."""
    if model.startswith((".", "/", "~")):
        return True
    head = Path(model).parts[0] if Path(model).parts else ""
    return "/" in model and Path(head).expanduser().is_dir()


def check_model(model: str, probed_models: Sequence[str] = ()) -> None:
    """A model directory that does not exist, and that no stored result names, is a
    :class:`ModelError` (exit 6) with "did you mean" (``minilm`` names the bundled copy)."""
    from gradts_engine.model_files import check_model_dir

    if model in probed_models or not looks_like_path(model):
        return
    if not Path(model).expanduser().exists():
        check_model_dir(Path(model).expanduser())  # raises the one-line ModelError


def probed_task_names(store: Any, model: str | None, measure: str | None) -> list[str]:
    """Tasks probed with ``model`` (every model when None) with ``measure``."""
    from gradts_engine.corr import probed_tasks
    from gradts_engine.report import list_models

    if model is not None:
        return probed_tasks(store, model, measure or "gate")
    return sorted({t for m in list_models(store) for t in m.tasks})
