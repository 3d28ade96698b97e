"""``minescape legend``: show or export a built-in legend."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from minescape.cli.common import handle_errors
from minescape.errors import check_choice


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""

    @app.command("legend")
    @handle_errors
    def legend(
        name: str = typer.Argument("mining_lulc", help="mining_lulc, sinolc1, change or worldcover."),
        format: str = typer.Option("table", "--format", "-f", help="table, json or clr (QGIS colour map file)."),
    ) -> None:
        """Show a legend (codes, names, colours, definitions) or export it for QGIS."""
        from minescape.legend import get_legend

        lg = get_legend(name)
        check_choice(format, ("table", "json", "clr"), what="format")
        if format == "json":
            typer.echo(json.dumps(lg.to_dict(), indent=2))
        elif format == "clr":
            typer.echo(lg.to_clr(), nl=False)
        else:
            table = Table(title=f"{lg.name} (nodata {lg.nodata})")
            for col in ("code", "colour", "name", "definition"):
                table.add_column(col, overflow="fold")
            for c in lg:
                table.add_row(str(c.code), f"[on {c.hex}]      [/] {c.hex}", c.name, c.definition)
            Console().print(table)
