"""Selectors for ``gradts compare``: each ranks the candidate tasks for a primary (§8).

``gradts`` (head-importance correlation), ``size``, ``random``, ``embed``, ``tag`` and
``grad-cos``; one module each (:mod:`.base` holds the interface and the registry). A new
selector is one module that calls :func:`base.register`.
"""

from . import embed, gradts, joint, static
from .base import SELECTORS, Ranking, SelectContext, Selector, get_selector, register

__all__ = ["SELECTORS", "Ranking", "SelectContext", "Selector", "embed", "get_selector",
           "gradts", "joint", "register", "static"]

DEFAULT = ("gradts", "size", "random", "embed", "tag", "grad-cos")
