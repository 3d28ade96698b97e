"""``minescape change ...``: bi-temporal change detection (index methods, refinement, patches, metrics)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Bi-temporal change detection: detect, refine, patches, evaluate; deep models: "
                       "train, predict, export.", no_args_is_help=True)

# The deep-learning commands (train, predict, export) live in minescape.cli.change_deep.
try:
    from minescape.cli.change_deep import register as _register_deep
except ModuleNotFoundError as _exc:
    if _exc.name != "minescape.cli.change_deep":
        raise
else:
    _register_deep(app)
