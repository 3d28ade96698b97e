"""Write a run's report: ``report.html`` and its ``report_files/`` folder (Leaflet, script, overlay PNGs).

The page opens offline from disk; quicklooks and figures are linked where the run wrote them (relative paths),
so keep the report inside its run folder (the default) or copy the run folder whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from minescape.webreport.contents import Missing, RunContents, Section

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
MAX_PAGE_FEATURES = 50_000  # class polygons of a release on one page; more: one page per region (docs/report.md)


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


def region_pages(contents: RunContents, *, max_features: int) -> list[tuple[str, str, RunContents]]:
    """Move the region layers of a release with more than ``max_features`` class polygons to pages of their own.

    Returns ``(label, file name, contents)`` per region page (each with the release's tables) and leaves the
    main page with the release's tables and a link list; a small release stays on the main page.
    """
    pages = []
    for i, sec in enumerate(contents.sections):
        classes = [layer for layer in sec.layers if layer.kind == "classes"]
        if sec.kind != "release" or sum(len(layer.features) for layer in classes) <= max_features:
            continue
        for layer in classes:
            region = layer.name.rsplit(": ", 1)[-1]
            name = f"report_{i:02d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', region)}.html"
            page_sec = Section(title=layer.name, kind=sec.kind, folder=sec.folder, facts=list(sec.facts),
                               tables=list(sec.tables), layers=[layer])
            pages.append((layer.name, name, replace(contents, title=f"{contents.title}: {region}",
                                                    sections=[page_sec], missing=[])))
        sec.layers = [layer for layer in sec.layers if layer.kind != "classes"]
        sec.facts.append(("class polygons", f"one page per region ({len(classes)} pages: over {max_features} "
                                            "polygons in all)"))
    return pages


def write_report(run_dir: str | Path, *, out_dir: str | Path | None = None,
                 max_page_features: int = MAX_PAGE_FEATURES,
                 max_region_features: int = MAX_PAGE_FEATURES) -> ReportResult:
    """Collect ``run_dir`` and write ``OUT/report.html`` + ``OUT/report_files/`` (OUT defaults to ``run_dir``);
    a release with more than ``max_page_features`` class polygons gets ``OUT/report_NN_<region>.html`` per region
    (a region with more than ``max_region_features`` is summarised in the tables, not drawn).

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
    contents = collect_run(run_dir, report_dir=out, max_release_features=max_region_features)
    pages = region_pages(contents, max_features=max_page_features)
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
        links = [(label, name) for label, name, _ in pages]
        page = render_page(contents, out, src, files_dir=FILES_DIR, links=links)
        extra = {name: render_page(c, out, src, files_dir=FILES_DIR, links=[("main report", REPORT_NAME)])
                 for _, name, c in pages}
        replace_dir(tmp, final_files)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    for old in out.glob("report_[0-9][0-9]_*.html"):  # region pages of an earlier report
        if old.name not in extra:
            old.unlink()
    for name, text in extra.items():
        atomic_write_text(out / name, text)
    path = atomic_write_text(out / REPORT_NAME, page)
    return ReportResult(path=path, sites=contents.n_site_features, missing=tuple(contents.all_missing))
