"""gradts engine: the library behind the ``gradts`` command (DESIGN.md §3).

Engine functions return typed values, never print and never read argv. Heavy imports (torch,
transformers, datasets) happen inside the functions that need them.
"""

__version__ = "0.1.0"
