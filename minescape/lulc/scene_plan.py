"""What a classification run would read, before it runs: per site, its year and the scenes of that year.

``minescape lulc scenes`` answers "which sites have imagery of their year, and how much?" without reading a pixel
of Sentinel-2: per site, the year from the DCM (as :func:`minescape.lulc.pipeline.site_dcm_year` decides it for the
run) and the scenes the run would consider, chosen as the run chooses them: the items of a STAC search over the
site's grid under the cloud ceiling (``--stac``; each search is one request, 8 sites at a time), or the local
scenes of that year over the site (those whose footprint covers it for the default clearest-scene method, those
whose bounds meet it for ``--composite median|medoid``). A site whose year cannot be read, or that has no scene of
its year, gets its reason in ``problem``: on a catalogue of 80,000 sites the plan shows, before hours of reading,
how many sites would fail and why.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minescape.errors import InputError
from minescape.geo.vector import FeatureNote
from minescape.imagery.local_scenes import SceneRef
from minescape.imagery.settings import resolve_method
from minescape.imagery.sources import ImagerySource, LocalSource, StacSource
from minescape.imagery.stac_search import StacQuery
from minescape.sites import Site

COLUMNS = ("site_id", "year", "year_rule", "n_scenes", "first_date", "last_date", "min_cloud", "scenes", "problem")
SEARCH_THREADS = 8  # catalogue searches in flight at once (each waits on the network)


@dataclass(frozen=True)
class SitePlan:
    """One site's year and the scenes of that year a run would consider.

    Attributes:
        site_id: the site.
        year: the DCM's later-acquisition year (None when it could not be read).
        year_rule: ``centroid`` or ``nearest-valid`` (None with ``year``).
        scenes: scene ids (STAC item ids, or local scene file names), by date.
        dates: their acquisition dates (UTC).
        clouds: their ``eo:cloud_cover`` in percent (None where the scene does not say).
        problem: why the site would fail (no year, no scene of its year), else None.
    """

    site_id: str
    year: int | None
    year_rule: str | None
    scenes: tuple[str, ...] = ()
    dates: tuple[dt.date, ...] = ()
    clouds: tuple[float | None, ...] = ()
    problem: str | None = None

    def row(self) -> dict[str, object]:
        """The CSV row (:data:`COLUMNS`)."""
        known = [c for c in self.clouds if c is not None]
        return {"site_id": self.site_id, "year": self.year, "year_rule": self.year_rule,
                "n_scenes": len(self.scenes),
                "first_date": min(self.dates).isoformat() if self.dates else None,
                "last_date": max(self.dates).isoformat() if self.dates else None,
                "min_cloud": round(min(known), 2) if known else None, "scenes": " ".join(self.scenes),
                "problem": self.problem}


def plan_site(site: Site, *, refs: Sequence[SceneRef], source: ImagerySource | None, dcm_dh: str | Path | None,
              dcm_year: str | Path | None, config: dict) -> SitePlan:
    """The plan of one site (problems as values: a site without a year or a scene is a plan with ``problem``)."""
    from minescape.lulc.pipeline import site_dcm_year

    try:
        year, _ = site_dcm_year(site, dcm_dh, dcm_year, config=config)
    except InputError as exc:
        return SitePlan(site.id, None, None, problem=str(exc))
    try:
        found = _scenes_of_year(site, year.year, refs=refs, source=source, config=config)
    except InputError as exc:  # an unreachable catalogue, an unreadable scene
        return SitePlan(site.id, year.year, year.rule, problem=str(exc))
    found = sorted(found, key=lambda s: (s[1], s[0]))
    problem = None if found else f"site {site.id}: no scene of {year.year} over it"
    return SitePlan(site.id, year.year, year.rule, tuple(s[0] for s in found), tuple(s[1] for s in found),
                    tuple(s[2] for s in found), problem)


def _scenes_of_year(site: Site, year: int, *, refs: Sequence[SceneRef], source: ImagerySource | None,
                    config: dict) -> list[tuple[str, dt.date, float | None]]:
    """``(id, date, cloud)`` of the scenes the run would consider for ``site`` in ``year``."""
    if isinstance(source, StacSource):
        return [(s.id, s.date, s.cloud) for s in source.scenes(site.grid, year)]
    if resolve_method(config.get("composite", "auto"), from_catalogue=False) == "clearest":
        # the clearest-scene choice: scenes whose footprint covers the site
        from minescape.lulc.scene_index import covering

        return [(Path(r.source).name, r.date, r.cloud) for r, _ in covering(refs, site) if r.year == year]
    local = source if source is not None else LocalSource(refs)
    return [(Path(r.source).name, r.date, r.cloud) for r in local.scenes(site.grid, year)]


def plan_scenes(sites: Sequence[Site], *, refs: Sequence[SceneRef], source: ImagerySource | None,
                dcm_dh: str | Path | None, dcm_year: str | Path | None, config: dict) -> list[SitePlan]:
    """Every site's plan, in site order (a catalogue is searched by :data:`SEARCH_THREADS` threads)."""
    from minescape.progress import track

    def one(site: Site) -> SitePlan:
        return plan_site(site, refs=refs, source=source, dcm_dh=dcm_dh, dcm_year=dcm_year, config=config)

    if not isinstance(source, StacSource) or len(sites) < 2:
        return list(track((one(s) for s in sites), "plan sites", total=len(sites)))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=SEARCH_THREADS) as pool:  # map keeps the site order
        return list(track(pool.map(one, sites), "plan sites (catalogue searches)", total=len(sites)))


def plan_run(sites_path: str | Path, scenes: Sequence[str | Path], dcm_dh: str | Path | None,
             dcm_year: str | Path | None, *, config: dict | None = None, layer: str | None = None,
             id_field: str | None = None, site_ids: Sequence[str] | None = None, stac: StacQuery | None = None,
             point_buffer_m: float | None = None) -> tuple[list[SitePlan], list[FeatureNote]]:
    """The plan of a ``classify_sites`` run with the same inputs (same config, same site reading), and the notes
    of features changed or dropped while reading the sites."""
    from minescape.lulc.pipeline import check_dcm, make_config, sites_and_imagery, with_stac_defaults

    cfg = with_stac_defaults(make_config(config), stac, None)  # an unreachable catalogue: InputError here
    check_dcm(dcm_dh, dcm_year)
    sites, notes, refs, source = sites_and_imagery(sites_path, scenes, stac, cfg, layer=layer, id_field=id_field,
                                                   site_ids=site_ids, point_buffer_m=point_buffer_m)
    return plan_scenes(sites, refs=refs, source=source, dcm_dh=dcm_dh, dcm_year=dcm_year, config=cfg), notes


def plan_csv(plans: Sequence[SitePlan]) -> str:
    """The plans as CSV text (:data:`COLUMNS`; empty cells for None)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for p in plans:
        writer.writerow({k: ("" if v is None else v) for k, v in p.row().items()})
    return buf.getvalue()


def summary_line(plans: Sequence[SitePlan]) -> str:
    """``12 sites: 10 with scenes of their year (scenes per site: median 7, 2-14), 2 without (1 no year, 1 no
    scene)``."""
    import statistics

    ok = [p for p in plans if p.problem is None]
    no_year = sum(p.year is None for p in plans)
    no_scene = len(plans) - len(ok) - no_year
    counts = sorted(len(p.scenes) for p in ok)
    spread = (f" (scenes per site: median {statistics.median(counts):g}, {counts[0]}-{counts[-1]})" if counts else "")
    line = f"{len(plans)} sites: {len(ok)} with scenes of their year{spread}"
    if len(ok) < len(plans):
        line += f", {len(plans) - len(ok)} without ({no_year} no year, {no_scene} no scene)"
    return line
