"""The ``minescape`` command: root options and command groups."""

from __future__ import annotations

import importlib

import typer

from minescape import __version__
from minescape.cli.common import state

app = typer.Typer(
    name="minescape",
    help="Land use/land cover, change maps and publishable datasets for mining areas from Sentinel-2.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"minescape {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """minescape: mining land use/land cover, change detection and large-area maps."""
    state.debug = debug


# Command groups live in their own modules; each exposes ``app`` (a Typer) or ``register(app)``.
_GROUPS = (
    ("minescape.cli.synth", None),
    ("minescape.cli.legend", None),
    ("minescape.cli.demo", None),
    ("minescape.cli.lulc", "lulc"),
    ("minescape.cli.publish", None),
    ("minescape.cli.change", "change"),
    ("minescape.cli.maps", "map"),
    ("minescape.cli.run", None),
    ("minescape.cli.report", None),
)

for _module, _name in _GROUPS:
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:  # a command group not written yet
        if _exc.name != _module:
            raise
        continue
    if hasattr(_mod, "register"):
        _mod.register(app)
    else:
        app.add_typer(_mod.app, name=_name)


def main() -> None:
    """Console-script entry point (a Ctrl-C while the process shuts down: :func:`minescape.cli.common.run_main`)."""
    from minescape.cli.common import run_main

    run_main(app)
