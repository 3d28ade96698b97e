"""Write a run's report: ``report.html`` and its ``report_files/`` folder (Leaflet, script, overlay PNGs).

The page opens offline from disk; quicklooks and figures are linked where the run wrote them (relative paths),
so keep the report inside its run folder (the default) or copy the run folder whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minescape.webreport.contents import Missing

REPORT_NAME = "report.html"
FILES_DIR = "report_files"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote: the page, the site polygons on its map and what is missing."""

    path: Path
    sites: int
    missing: tuple[Missing, ...]


def _put(path: Path, data: bytes) -> None:
    """Write inside the fresh temporary folder (made atomic as a whole by ``replace_dir``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_report(run_dir: str | Path, *, out_dir: str | Path | None = None) -> ReportResult:
    """Collect ``run_dir`` and write ``OUT/report.html`` + ``OUT/report_files/`` (OUT defaults to ``run_dir``).

    A re-run replaces both atomically. A folder without outputs, or a failed run, still gets a page that
    lists what is missing.

    Raises:
        MissingInputError: ``run_dir`` does not exist. InputError: it is a file.
    """
    from minescape.atomic import atomic_write_text, replace_dir, temp_path
    from minescape.webreport.assets import copy_assets
    from minescape.webreport.collect import collect_run
    from minescape.webreport.render import render_page

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    contents = collect_run(run_dir, report_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    final_files = out / FILES_DIR
    tmp = temp_path(final_files)
    tmp.mkdir()
    try:
        copy_assets(tmp)
        src: dict[int, str] = {}
        for i, sec in enumerate(contents.sections):
            for k, ov in enumerate(sec.overlays):
                rel = f"overlays/{i:02d}_{k:02d}.png"
                _put(tmp / rel, ov.png)
                src[id(ov)] = f"{FILES_DIR}/{rel}"
            for j, layer in enumerate(sec.layers):
                for n, ov in enumerate(layer.site_overlays.values()):
                    rel = f"sites/{i:02d}_{j:02d}/{n:06d}.png"
                    _put(tmp / rel, ov.png)
                    src[id(ov)] = f"{FILES_DIR}/{rel}"
        page = render_page(contents, out, src, files_dir=FILES_DIR)
        replace_dir(tmp, final_files)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    path = atomic_write_text(out / REPORT_NAME, page)
    return ReportResult(path=path, sites=contents.n_site_features, missing=tuple(contents.all_missing))
