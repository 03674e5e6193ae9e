"""``gradts cache``: list, verify and remove entries of the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import output
from ..options import JsonOpt, state
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
    entries = st.entries(kind)
    if json_:
        output.print_json({"root": str(st.root), "entries": [views.entry_row(e) for e in entries]})
        return
    output.show(views.list_table(st.root, entries))


@cache_app.command("verify", help="Recompute every checksum; name the damaged entries.\n\n"
                   "[dim]Example:[/dim] gradts cache verify")
def verify(ctx: typer.Context, json_: JsonOpt = False) -> None:
    from gradts_engine.errors import CorruptEntryError, StoreError

    st = state(ctx).store()
    bad = []
    n = 0
    for meta_path in sorted(st.root.rglob("meta.json")) if st.root.is_dir() else []:
        if ".tmp" in meta_path.parts:
            continue
        n += 1
        try:
            st.verify_path(meta_path.parent)
        except CorruptEntryError as e:
            bad.append({"entry": str(meta_path.parent), "problem": e.message})
    if json_:
        output.print_json({"checked": n, "damaged": bad})
    else:
        for b in bad:
            output.warn(b["problem"])
        output.info(f"checked {n} entries, {len(bad)} damaged")
    if bad:
        raise StoreError(f"{len(bad)} damaged cache entries",
                         hint="remove them with `gradts cache rm PATH` and recompute")


@cache_app.command("rm", help="Remove cache entries by path.\n\n[dim]Example:[/dim] "
                   "gradts cache rm probe/minilm/cola/0123abcd4567")
def rm(ctx: typer.Context,
       paths: Annotated[list[str], typer.Argument(help="Entry paths.")]) -> None:
    import shutil

    from gradts_engine.errors import StoreError

    st = state(ctx).store()
    root = st.root.resolve()
    for p in paths:
        path = Path(p)
        path = (path if path.is_absolute() else root / path).resolve()
        if root not in path.parents:
            raise StoreError(f"{p} is not inside the store {root}", hint="give a path from "
                             "`gradts cache list`")
        if not path.exists():
            raise StoreError(f"no cache entry at {path}", hint="see `gradts cache list`")
        shutil.rmtree(path)
        output.success(f"removed {path}")
