"""Write a run's report: ``report.html`` and its ``report_files/`` folder (Leaflet, script, overlay PNGs).

The page opens offline from disk; quicklooks and figures are linked where the run wrote them (relative paths),
so keep the report inside its run folder (the default) or copy the run folder whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from minescape.webreport.contents import FeatureLayer, Missing, RunContents, Section

REPORT_NAME = "report.html"
FILES_DIR = "report_files"
MAX_PAGE_FEATURES = 20_000  # map features of a part on one page; more: one page per region (docs/report.md)


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote: the page, the site polygons on the map(s), what is missing, and the
    region pages of a run too big for one page.
    """

    path: Path
    sites: int
    missing: tuple[Missing, ...]
    pages: tuple[Path, ...] = ()
    layers: int = 0  # map layers: raster overlays (class maps, change layers) and feature layers

    def describe(self) -> str:
        """What the page shows, for the line a command prints: ``3 map layers, 12 sites``."""
        parts = [f"{self.layers} map layer{'s' if self.layers != 1 else ''}"]
        if self.sites:
            parts.append(f"{self.sites} site{'s' if self.sites != 1 else ''}")
        if self.pages:
            parts.append(f"one page per region ({len(self.pages)} page{'s' if len(self.pages) != 1 else ''})")
        return ", ".join(parts)


def _put(path: Path, data: bytes) -> None:
    """Write inside the fresh temporary folder (made atomic as a whole by ``replace_dir``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _page_name(i: int, region: str) -> str:
    return f"report_{i:02d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', region)}.html"


def region_pages(contents: RunContents, *, max_features: int) -> list[tuple[str, str, RunContents]]:
    """Move the map features of a part with more than ``max_features`` of them to one page per region.

    Sites (an LULC run) are grouped by the world region of a point on their polygon (``world9``, as releases
    are), with their class maps; a release's class polygons by its regions. Each page gets the part's tables;
    the main page keeps the tables and links to the pages. A part that fits stays on the main page.

    Returns:
        ``(label, file name, contents)`` per region page.
    """
    pages = []
    for i, sec in enumerate(contents.sections):
        if sum(len(layer.features) for layer in sec.layers) <= max_features:
            continue
        by_region: dict[str, list[FeatureLayer]] = {}
        for layer in sec.layers:
            if layer.kind == "classes":  # a release: one layer per region already
                by_region.setdefault(layer.name.rsplit(": ", 1)[-1], []).append(layer)
                continue
            groups: dict[str, list[dict]] = {}
            for f in layer.features:
                groups.setdefault(str(f["properties"].get("region", "all")), []).append(f)
            for region, feats in sorted(groups.items()):
                ids = {f["properties"]["id"] for f in feats}
                by_region.setdefault(region, []).append(
                    replace(
                        layer,
                        name=f"{layer.name}: {region}",
                        features=feats,
                        site_overlays={k: v for k, v in layer.site_overlays.items() if k in ids},
                    )
                )
        for region, layers in sorted(by_region.items()):
            label = f"{sec.title}: {region} ({sum(len(layer.features) for layer in layers)} features)"
            page_sec = Section(
                title=f"{sec.title}: {region}",
                kind=sec.kind,
                folder=sec.folder,
                facts=list(sec.facts),
                tables=list(sec.tables),
                layers=layers,
            )
            pages.append(
                (
                    label,
                    _page_name(i, region),
                    replace(contents, title=f"{contents.title}: {region}", sections=[page_sec], missing=[]),
                )
            )
        sec.layers = []
        sec.facts.append(
            ("map", f"one page per region ({len(by_region)} pages): more than {max_features} features in all")
        )
    return pages


def remove_report(out_dir: str | Path) -> bool:
    """Remove the report :func:`write_report` writes in ``out_dir`` (``report.html``, its region pages and
    ``report_files/``), so a run asked for no report leaves none of an earlier run. True when one was there."""
    import shutil

    out = Path(out_dir)
    found = False
    for page in [out / REPORT_NAME, *out.glob("report_[0-9][0-9]_*.html")]:
        if page.is_file():
            page.unlink()
            found = True
    if (out / FILES_DIR).is_dir():
        shutil.rmtree(out / FILES_DIR)
        found = True
    return found


def check_report_folder(run_dir: str | Path, out_dir: str | Path) -> None:
    """Refuse a report folder ``out_dir`` (``report --out``) that would replace or delete what a run wrote or read.

    The report goes in the run folder itself (the default: ``report.html`` and ``report_files/`` are the run's
    own report, which every run command writes there too) or in a folder outside it. A folder inside the run
    would put the report among the run's outputs (a sub-run's own report replaced by this one, a file of the
    run's given as the folder); ``OUT/report_files`` (replaced whole) may not be or hold the run folder; and
    neither ``OUT``, ``OUT/report.html`` nor ``OUT/report_files`` may be or hold an input the run recorded
    (:func:`minescape.webreport.collect.run_inputs`). The same checks as every command's
    (:mod:`minescape.path_identity`), before anything is written.

    Raises:
        InputError: naming ``out_dir`` (or the file in it) and what it would clobber.
    """
    from minescape.errors import InputError
    from minescape.path_identity import check_not_input, check_not_within, is_within, same_path
    from minescape.webreport.collect import run_inputs

    run_dir, out = Path(run_dir), Path(out_dir)
    if same_path(out, run_dir):
        return  # the default: the run's own report
    if is_within(out, run_dir):
        raise InputError(f"--out lies inside RUN_DIR ({run_dir}), among the run's outputs; leave --out out to "
                         "write the report in RUN_DIR, or give a folder outside it", path=out)
    inputs = {"RUN_DIR": run_dir, **(run_inputs(run_dir) if run_dir.is_dir() else {})}
    check_not_within(out / FILES_DIR, inputs, what=f"--out/{FILES_DIR}")
    check_not_input(out / REPORT_NAME, inputs, what=f"--out/{REPORT_NAME}")
    check_not_input(out, inputs, what="--out")


def write_report(
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    max_page_features: int = MAX_PAGE_FEATURES,
    max_region_features: int = MAX_PAGE_FEATURES,
) -> ReportResult:
    """Collect ``run_dir``; write ``OUT/report.html`` and ``OUT/report_files/`` (OUT defaults to ``run_dir``);
    a part with more than ``max_page_features`` map features (sites, or a release's class polygons) gets
    ``OUT/report_NN_<region>.html`` per region (a release region with more than ``max_region_features`` class
    polygons is summarised in the tables, not drawn).

    A re-run replaces both atomically. A folder without outputs, or a failed run, still gets a page that
    lists what is missing.

    Raises:
        MissingInputError: ``run_dir`` does not exist. InputError: it is a file, or ``out_dir`` would replace or
        delete what the run wrote or read (:func:`check_report_folder`).
    """
    from minescape.atomic import atomic_write_text, output_cause, replace_dir, temp_path
    from minescape.errors import OutputError
    from minescape.webreport.assets import copy_assets
    from minescape.webreport.collect import collect_run
    from minescape.webreport.render import render_page

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    check_report_folder(run_dir, out)
    contents = collect_run(run_dir, report_dir=out, max_release_features=max_region_features)
    out.mkdir(parents=True, exist_ok=True)
    final_files = out / FILES_DIR
    tmp = temp_path(final_files)
    try:
        tmp.mkdir()
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
        n_sites = contents.n_site_features
        n_layers = sum(len(sec.overlays) + len(sec.layers) for sec in contents.sections)
        pages = region_pages(contents, max_features=max_page_features)  # after every PNG is written
        links = [(label, name) for label, name, _ in pages]
        page = render_page(contents, out, src, files_dir=FILES_DIR, links=links)
        extra = {
            name: render_page(c, out, src, files_dir=FILES_DIR, links=[("main report", REPORT_NAME)])
            for _, name, c in pages
        }
        replace_dir(tmp, final_files)
    except OSError as exc:  # a full disk names report_files/, not the vendored file being copied or a temp name
        cause = None if isinstance(exc, OutputError) else output_cause(out)
        if cause is None:
            raise
        raise OutputError(f"cannot write ({cause[1]})", path=final_files, errno=cause[0]) from exc
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
    return ReportResult(
        path=path,
        sites=n_sites,
        missing=tuple(contents.all_missing),
        pages=tuple(out / name for name in extra),
        layers=n_layers,
    )
