"""``minescape publish`` and ``minescape inspect``: release the mining LULC dataset and validate it."""

from __future__ import annotations

from pathlib import Path

import typer

from minescape.cli.common import handle_errors, print_failures
from minescape.errors import UnitFailed


def register(app: typer.Typer) -> None:
    """Add the top-level ``publish`` and ``inspect`` commands to ``app``."""
    app.command("publish")(publish_cmd)
    app.command("inspect")(inspect_cmd)


@handle_errors
def publish_cmd(
    maps_dir: Path = typer.Argument(..., help="Folder of per-site class maps <site>.tif (SITE_ID, YEAR tags)."),
    out: Path = typer.Argument(..., help="Release folder (replaced atomically if it holds a release)."),
    max_features: int = typer.Option(5000, "--max-features", help="Features per GeoPackage at most."),
    crs: str = typer.Option("EPSG:4326", "--crs", help="Output CRS of the GeoPackages."),
    regions: str = typer.Option("world9", "--regions",
                                help="world9 (nine world regions), tag (REGION tag) or a regions layer path."),
    simplify: float = typer.Option(0.0, "--simplify", help="Simplification tolerance in metres (0: none)."),
    connectivity: int = typer.Option(4, "--connectivity", help="Pixel connectivity of patches: 4 or 8."),
    extra_columns: bool = typer.Option(False, "--extra-columns", help="Also write site_id and region."),
    name: str = typer.Option("mining_lulc", "--name", help="Dataset name (prefix of every file)."),
    workers: int = typer.Option(None, "--workers", help="Processes vectorising sites in parallel (default: one per "
                                "200 sites, up to every core this process may use); the release is the same bytes "
                                "for any number."),
) -> None:
    """Publish per-site class maps as regional ZIPs of GeoPackage shards with a manifest and README."""
    from minescape.publish.release import publish
    from minescape.threads import resolve_threads

    if workers is not None:
        workers = resolve_threads(workers, what="--workers")

    summary = publish(maps_dir, out, max_features=max_features, crs=crs, regions=regions, simplify=simplify,
                      connectivity=connectivity, extra_columns=extra_columns, name=name, workers=workers)
    typer.echo(f"{out}: {summary.features:,} features from {summary.manifest['sites']} sites in "
               f"{len(summary.files)} GeoPackages, {len(summary.zips)} regional ZIPs, manifest, README")
    if summary.skipped:
        print_failures(summary.skipped, word="skipped", record=out / "manifest.json")
        raise UnitFailed(f"{len(summary.skipped)} class map(s) could not be published (listed above and in "
                         f"{out / 'manifest.json'})")


@handle_errors
def inspect_cmd(
    release: list[Path] = typer.Argument(..., help="Release folder, or ZIP / GPKG files."),
    max_features: int = typer.Option(None, "--max-features", help="Cap per file (default: manifest or 5000)."),
    area_rtol: float = typer.Option(1e-4, "--area-rtol", help="Allowed relative area_m2 error."),
    allow_extra_columns: bool = typer.Option(False, "--allow-extra-columns", help="Accept extra columns."),
) -> None:
    """Check a release (schema, cap, fid and index_n uniqueness, geometry, area, classes, years).

    Prints a summary table; exits 1 listing every violation as ``file: fid N: problem``.
    """
    from rich.console import Console

    from minescape.publish.inspect import inspect_release, summary_table

    report = inspect_release(list(release), max_features=max_features, area_rtol=area_rtol,
                             allow_extra_columns=allow_extra_columns)
    console = Console()
    console.print(summary_table(report, title=", ".join(p.name for p in release)))
    if report.violations:
        for v in report.violations:
            typer.echo(str(v))
        typer.echo(f"{len(report.violations)} violation(s)")
        raise typer.Exit(1)
    typer.echo("ok: no violations")
