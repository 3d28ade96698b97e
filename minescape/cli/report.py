"""``minescape report RUN_DIR``: an offline HTML report of a run folder (map, summaries, accuracy)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from minescape.cli.common import error_line, handle_errors

NoReportOpt = typer.Option(
    True,
    "--report/--no-report",
    help="Write OUT/report.html (an offline map and summary of the run's outputs).",
)


def write_run_report(run_dir: Path, *, report: bool = True) -> None:
    """Write ``run_dir/report.html`` after a run command and say where; a report that cannot be written is a
    warning, never the run's failure. ``report`` False (``--no-report``): remove an earlier run's report
    instead (the run owns its folder: a report of other outputs must not stay beside the new ones).
    """
    from minescape.errors import MinescapeError
    from minescape.progress import err_console
    from minescape.webreport.write import remove_report, write_report

    if not report:
        if remove_report(run_dir):
            typer.echo(f"removed the earlier report in {run_dir} (--no-report)")
        return
    try:
        res = write_report(run_dir)
    except KeyboardInterrupt:  # the run is complete: say so, and leave no report of earlier outputs beside it
        with contextlib.suppress(OSError):
            remove_report(run_dir)
        raise KeyboardInterrupt(f"after the run completed, while writing its report: the outputs in {run_dir} "
                                f"are complete; no report written ('minescape report {run_dir}' writes it)") from None
    except (MinescapeError, OSError) as exc:
        err_console.print(f"warning: no report written: {error_line(exc)}", markup=False, highlight=False)
        return
    typer.echo(
        f"report: {res.path} ({res.describe()}"
        + (f"; {len(res.missing)} missing item(s) listed)" if res.missing else ")")
    )


@handle_errors
def report_cmd(
    run_dir: Path = typer.Argument(
        ...,
        help="A run's output folder (lulc classify, change detect/predict, "
        "publish, map validate, or a folder holding several, like the "
        "demo's).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for report.html and report_files/ (default RUN_DIR)."
    ),
) -> None:
    """Write RUN_DIR/report.html: an interactive map of the run's outputs (site polygons, class maps, change
    layers), area and year summaries, failures and accuracy tables. Opens offline in any browser.

    A folder without outputs, or a failed run, still gets a report that says what is missing.
    """
    from minescape.webreport.write import write_report

    res = write_report(run_dir, out_dir=out)
    typer.echo(f"wrote {res.path}: {res.describe()}")
    for m in res.missing:
        typer.echo(f"  missing: {m.what}: {m.why}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the root app."""
    app.command("report")(report_cmd)
