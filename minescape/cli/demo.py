"""``minescape demo``: every pipeline stage on the built-in synthetic region."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from minescape.atomic import atomic_write_text
from minescape.cli.common import handle_errors


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""

    @app.command("demo")
    @handle_errors
    def demo(
        out: Path = typer.Option(Path("demo-output"), help="Folder for every output."),
        seed: int = typer.Option(42, min=0, help="Random seed."),
        stac: bool = typer.Option(False, "--stac", help="Only the loopback STAC stage: the region as a catalogue, "
                                                        "served on 127.0.0.1, classified from composites."),
    ) -> None:
        """Run every stage on the synthetic mining region and say where the outputs are."""
        from minescape.demo import run_demo

        console = Console(soft_wrap=True)
        t0 = time.perf_counter()
        stages = (("mining LULC from a STAC catalogue (loopback)", "minescape.imagery.demo"),) if stac else None
        report = run_demo(out, seed=seed, console=console, stages=stages)
        total = time.perf_counter() - t0
        atomic_write_text(out / "demo-report.json", json.dumps(report, indent=2, default=str))
        console.print(f"[bold green]done[/] in {total:.0f} s; outputs under {out.resolve()} "
                      f"(summary: {out / 'demo-report.json'})")
