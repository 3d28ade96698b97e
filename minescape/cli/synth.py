"""``minescape synth``: write the built-in synthetic mining region."""

from __future__ import annotations

from pathlib import Path

import typer

from minescape.cli.common import handle_errors
from minescape.progress import err_console


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""

    @app.command("synth")
    @handle_errors
    def synth(
        out: Path = typer.Argument(..., help="Output folder."),
        seed: int = typer.Option(42, min=0, help="Random seed (same seed, same bytes)."),
        width: int = typer.Option(1000, help="Width in 10 m pixels."),
        height: int = typer.Option(800, help="Height in 10 m pixels."),
        sites: int = typer.Option(6, help="Number of mining sites."),
        clouds: bool = typer.Option(True, help="Add a cloudy scene and light clouds."),
    ) -> None:
        """Write the synthetic mining region (sites, scenes, DCM, truth) as GeoTIFF/GPKG files."""
        from minescape.synthetic import RegionConfig, generate

        with err_console.status("generating synthetic region"):
            files = generate(out, RegionConfig(seed=seed, width=width, height=height, n_sites=sites,
                                               clouds=clouds))
        typer.echo(f"wrote {files.root} (sites, {len(files.scenes) + 2} scenes, DCM, truth)")
