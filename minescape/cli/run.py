"""``minescape runs``: inspect run folders (``--run-dir`` of any per-site or per-tile command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minescape.cli.common import EXIT_PARTIAL, handle_errors

app = typer.Typer(help="Inspect run folders: unit states, failures, what a re-run would redo.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add the ``runs`` group to the root app."""
    root.add_typer(app, name="runs")


@app.command("status")
@handle_errors
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (the --run-dir of a run).")],
    all_units: Annotated[bool, typer.Option("--all", help="List every unit, not only failures.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 3 if units failed or are missing.")]
    = False,
) -> None:
    """Show a run's unit counts (done, failed, not finished) and the reason of every failure."""
    from rich.table import Table

    from minescape.runstate import summarize

    s = summarize(run_dir)
    info = s["info"]
    console = typer.echo
    console(f"run folder: {run_dir}")
    console(f"  job: {info.get('description', '?')} ({info.get('function', '?')}), mode {info.get('mode', '?')}"
            + (f", {info['workers']} workers" if info.get("mode") == "local" else "")
            + (f", scheduler {info['scheduler']}" if info.get("mode") == "scheduler" else ""))
    if s["running"]:
        state = "running now"
    elif info.get("finished"):
        state = "finished " + info["finished"]
    else:
        state = "interrupted (re-run the same command to resume)"
    console(f"  last started {info.get('started', '?')}, {state}")
    console(f"  units: {s['total']} total, {len(s['done'])} done, {len(s['failed'])} failed, "
            f"{len(s['missing'])} not finished; {s['unit_seconds']:.1f} s of unit time recorded")
    if s["failed"]:
        table = Table("unit", "reason", title="failed units", title_justify="left")
        for uid, reason in sorted(s["failed"].items()):
            table.add_row(uid, reason)
        typer.echo(_render(table))
    if all_units:
        states = s["states"]
        table = Table("unit", "status", "seconds", "attempts")
        for uid in info.get("unit_ids") or sorted(states):
            st = states.get(uid)
            table.add_row(uid, st.status if st else "not finished", f"{st.seconds:.2f}" if st else "",
                          str(st.attempts) if st else "")
        typer.echo(_render(table))
    if s["missing"] or s["failed"]:
        console("  re-run the same command to finish the failed and unfinished units.")
        if strict:
            raise typer.Exit(EXIT_PARTIAL)


def _render(table) -> str:
    """A Rich table as plain text (wide enough for one-line reasons)."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(width=200, file=buffer, color_system=None).print(table)
    return buffer.getvalue().rstrip()
