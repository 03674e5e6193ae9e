"""``gradts config``: the resolved settings and where each value came from."""

from __future__ import annotations

import typer

from .. import output
from ..options import JsonOpt, state
from ..views import config as views


def register(app: typer.Typer) -> None:
    app.command("config", help=HELP,
                short_help="Show the resolved settings and where each came from.")(config)


HELP = """Show the resolved settings and where each value came from.

Precedence: defaults < user config.toml < project gradts.toml (or --config) < GRADTS_* env <
flags.

[dim]Examples:[/dim]

  gradts config

  GRADTS_PROBE_EPOCHS=1 gradts config --json
"""


def config(ctx: typer.Context, json_: JsonOpt = False) -> None:
    from gradts_engine.config import explain, user_config_file

    cfg = state(ctx).config()
    rows = explain(cfg)
    if json_:
        output.print_json({"files": list(cfg.files), "user_file": str(user_config_file()),
                           "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows]})
        return
    output.show(views.settings_table(rows, user_config_file()))
