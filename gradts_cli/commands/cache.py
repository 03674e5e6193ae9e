"""``gradts cache``: list, verify and remove entries of the store (the store's own operations:
:meth:`~gradts_engine.store.Store.scan`, ``verify_all`` and ``remove`` under the key's lock)."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import output
from ..options import JsonOpt, complete_entry, state
from ..views import cache as views

cache_app = typer.Typer(help="Inspect the cache (the store): list, verify, remove entries.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache", short_help="Inspect the store: list, verify, rm.")


@cache_app.command("list", help="List cache entries.\n\n[dim]Example:[/dim] "
                   "gradts cache list --kind probe")
def list_(ctx: typer.Context,
          kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
          json_: JsonOpt = False) -> None:

    st = state(ctx).store()
    rows = [views.entry_row(e) for e in st.scan() if kind is None or e.kind == kind]
    if json_:
        output.print_json({"root": str(st.root), "entries": rows})
        return
    output.show(views.list_table(st.root, rows))


@cache_app.command("verify", help="Recompute every checksum; name the damaged entries and "
                   "anything in the store that is not an entry.\n\n[dim]Example:[/dim] "
                   "gradts cache verify")
def verify(ctx: typer.Context, json_: JsonOpt = False) -> None:
    from gradts_engine.errors import StoreError

    st = state(ctx).store()
    rep = st.verify_all()
    problems = [*rep.damaged, *rep.unrecognised]
    if json_:
        output.print_json({"checked": rep.checked,
                           "damaged": [{"entry": f.path, "problem": f.message, "fix": f.hint}
                                       for f in rep.damaged],
                           "unrecognised": [{"path": f.path, "what": f.what, "fix": f.hint}
                                            for f in rep.unrecognised],
                           "stray_temporaries": [f.path for f in rep.temporaries]})
    else:
        for f in problems:
            output.warn(f"{f.message} ({f.hint})")
        if rep.temporaries:
            output.info(f"{len(rep.temporaries)} stray temporaries from interrupted writes "
                        "(removed by the next write)")
        output.info(f"checked {rep.checked} entries, {len(rep.damaged)} damaged, "
                    f"{len(rep.unrecognised)} not recognised")
    if problems:
        first = problems[0]
        raise StoreError(f"{len(rep.damaged)} damaged cache entries, {len(rep.unrecognised)} "
                         f"unrecognised paths in {st.root}; first: {first.path}",
                         hint=first.hint)


@cache_app.command("rm", help="Remove cache entries (or a foreign file) by path, each under "
                   "its key's lock.\n\n[dim]Example:[/dim] "
                   "gradts cache rm probe/minilm/cola/0123abcd4567")
def rm(ctx: typer.Context,
       paths: Annotated[list[str], typer.Argument(
           help="Entry paths (as `gradts cache list` shows them), or a folder of entries.",
           autocompletion=complete_entry, metavar="ENTRY...")]) -> None:
    st = state(ctx).store()
    for p in paths:
        for removed in st.remove(p):
            output.success(f"removed {removed}")

