"""Task data: sources, splits, the token cache and batching (DESIGN.md §3, §4).

``from gradts_engine.data import X`` keeps working for every public name; the modules:

* :mod:`.sources` -- the synthetic demo generator and local CSV/TSV/JSONL files, read through
  ``datasets`` (every value a string, quotes as text unless asked, BOM stripped);
* :mod:`.hub` -- Hugging Face datasets, offline errors, the recorded revision (kind
  ``hub-revision``) that pins a task's data to one commit;
* :mod:`.columns`, :mod:`.splits` -- raw columns to a :class:`Split` (texts, label ids, content
  fingerprint); :func:`data_fingerprint` for cache keys;
* :mod:`.tokens` -- ragged tokenised splits (:class:`Encoded`), cached under kind ``tokens``;
* :mod:`.batching` -- length-grouped batches and dynamic padding;
* :mod:`.views` -- what ``gradts data list / show / get`` return;
* :mod:`.add`, :mod:`.checks` -- ``gradts data add`` (checking files and likely-broken
  declarations, writing the task's TOML) and ``gradts data rm``.

Heavy libraries (``datasets``, ``torch``) are imported inside functions only, so that the CLI
can import this package for completion without paying for them.
"""

from __future__ import annotations

from .add import AddedTask, RemovedTask, add_local_task, cached_entries, remove_local_task
from .batching import batches, collate
from .hub import OFFLINE_HINT, recorded_revision
from .splits import MISSING_LABEL, Split, data_fingerprint, load_split, load_task
from .tokens import TOKENS_FORMAT, Encoded, encode_split, tokenizer_fingerprint
from .views import (
    Fetched,
    SplitSummary,
    TaskRow,
    TaskSummary,
    availability,
    fetch_task,
    fetch_tasks,
    label_distribution,
    list_tasks,
    summarize_task,
)

__all__ = [
    "MISSING_LABEL",
    "OFFLINE_HINT",
    "TOKENS_FORMAT",
    "AddedTask",
    "RemovedTask",
    "Encoded",
    "Fetched",
    "Split",
    "SplitSummary",
    "TaskRow",
    "TaskSummary",
    "add_local_task",
    "availability",
    "cached_entries",
    "batches",
    "collate",
    "data_fingerprint",
    "encode_split",
    "fetch_task",
    "fetch_tasks",
    "label_distribution",
    "list_tasks",
    "load_split",
    "load_task",
    "recorded_revision",
    "remove_local_task",
    "summarize_task",
    "tokenizer_fingerprint",
]
