"""Task specs and the task registry (DESIGN.md §3, §6). Importing this never imports torch."""

from .registry import Registry, build_registry, load_task_file, user_config_dir, user_tasks_dir
from .spec import HubSource, LocalSource, SyntheticSource, TaskSpec, check_name

__all__ = [
    "HubSource",
    "LocalSource",
    "Registry",
    "SyntheticSource",
    "TaskSpec",
    "build_registry",
    "check_name",
    "load_task_file",
    "user_config_dir",
    "user_tasks_dir",
]
