"""Publish per-site class maps as a release laid out like the global mining LULC dataset.

Input: a folder of per-site class maps ``<site>.tif`` (uint8 MINING_LULC codes, nodata 0 outside the
site, on the site's UTM grid, GeoTIFF tags ``SITE_ID`` and ``YEAR``).

Output (``OUT/``)::

    README.md                     classes, fields, regions, files
    manifest.json                 features and area per class / year / region, SHA-256 of every file
    <name>_<region>.zip           one per region, holding <name>_<region>_<NNN>.gpkg shards

Features are ordered by region, site id, year, class code and then the raster-scan order of each
patch's first pixel, and
numbered ``index_n`` = 1, 2, ... in that order across the whole release, so publishing the same input
again gives the same numbers (and the same bytes). Shards hold at most ``max_features`` features
(default 5,000); ``fid`` is 1..n within each shard.

The release is built in a temporary folder beside ``OUT`` and moved into place at the end: an
interrupted publish leaves ``OUT`` as it was (a previous release, or nothing).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS

from minescape import __version__
from minescape.atomic import output_error, replace_dir, temp_path
from minescape.errors import ConfigError, InputError, MissingInputError
from minescape.geo.polygonize import polygonize, polygonize_ragged
from minescape.geo.raster import Raster, many_files, open_raster
from minescape.geo.tiff_layout import bytes_past_end
from minescape.legend import MINING_LULC, Legend
from minescape.path_identity import check_not_within
from minescape.progress import make_progress
from minescape.publish.geodesy import (
    as_crs,
    ellipsoidal_area,
    ellipsoidal_area_ragged,
    split_antimeridian,
    transform_geometries,
    transform_xy,
    transformer,
)
from minescape.publish.regions import WORLD9, make_region_resolver

MANIFEST = "manifest.json"
README = "README.md"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 1  # deflate level: half the time of level 6 for GPKG shards, < 1 % larger
EXTRA_COLUMNS = ("site_id", "region")


@dataclass(frozen=True)
class SiteMap:
    """One input class map: its file, site id, year, region and centre (lon, lat in degrees)."""

    path: Path
    site_id: str
    year: int
    region: str
    lon: float
    lat: float


@dataclass
class ReleaseSummary:
    """What :func:`publish` wrote."""

    out: Path
    features: int = 0
    files: list[str] = field(default_factory=list)
    zips: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def scan_site(path: Path, resolve_region) -> SiteMap:
    """Read the tags and extent of one class map (no pixels; a map cut short is named as such, not by the tags
    its missing end would have held)."""
    with open_raster(path) as src:  # a file that does not open is named by GDAL's reason first
        short = bytes_past_end(path)
        if short:
            raise InputError(f"truncated GeoTIFF: it needs {short} bytes past the end of the file "
                             "(an interrupted copy or download?); copy it again", path=path)
        tags = src.tags()
        if src.crs is None:
            raise InputError("class map has no CRS", path=path)
        if src.count != 1:
            raise InputError(f"class map must have 1 band, found {src.count}", path=path)
        site_id = tags.get("SITE_ID", "").strip()
        if not site_id:
            raise InputError("class map has no SITE_ID tag", path=path)
        try:
            year = int(tags.get("YEAR", ""))
        except ValueError:
            raise InputError(f"YEAR tag must be an integer year, got {tags.get('YEAR')!r}", path=path) from None
        left, bottom, right, top = src.bounds
        tf = transformer(as_crs(src.crs), as_crs("EPSG:4326"))
        lon, lat = tf.transform((left + right) / 2, (bottom + top) / 2)
    region = resolve_region(lon, lat, tags, str(path))
    return SiteMap(Path(path), site_id, year, region, float(lon), float(lat))


def read_class_map(site: SiteMap, legend: Legend) -> Raster:
    """The site's class map as a Raster, its codes checked against ``legend``."""
    with open_raster(site.path) as src:
        data = src.read(1)
        nodata = src.nodata if src.nodata is not None else legend.nodata
        raster = Raster(data, src.crs, src.transform, nodata)
    if not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"class map must be integer, found {data.dtype}", path=site.path)
    if data.dtype == np.uint8:
        counts = np.bincount(data.ravel(), minlength=256)
        allowed = np.zeros(256, dtype=bool)
        allowed[legend.codes] = True
        allowed[int(nodata)] = True
        if ((counts > 0) & ~allowed).any():
            raise legend.unknown_values(np.nonzero(counts)[0], allowed=[*legend.codes, int(nodata)], path=site.path)
    else:
        legend.check_codes(legend.with_legend_nodata(data, nodata), source=str(site.path))
    return raster


@dataclass
class SiteFeatures:
    """Polygons of one site in the output CRS (little-endian WKB) with their attributes (publication order)."""

    geometries: np.ndarray
    codes: np.ndarray
    area_m2: np.ndarray
    site: SiteMap


def site_features(
    site: SiteMap, *, legend: Legend, crs: CRS, simplify: float = 0.0, connectivity: int = 4
) -> SiteFeatures:
    """Vectorise one site, compute ellipsoidal areas in its working CRS, transform to ``crs``.

    Exact 4-connected outlines in lon/lat that stay within ±180° (nearly every site) go from flat
    arrays straight to WKB; simplification, 8-connectivity, other CRSs and antimeridian sites take the
    shapely path.
    """
    raster = read_class_map(site, legend)
    work = as_crs(raster.crs)
    lonlat = as_crs("EPSG:4326")
    if simplify == 0 and connectivity == 4 and work.is_projected:
        polys = polygonize_ragged(raster, by_code=True)  # publication order: class code, then scan order
        area = ellipsoidal_area_ragged(polys, work)
        ll = polys.with_xy(transform_xy(polys.xy, work, lonlat))
        if crs.equals(lonlat) and (len(ll.xy) == 0 or ll.xy[:, 0].max() <= 180.0):
            if len(ll.xy) and _mirrors(work, lonlat, polys.xy[0]):
                ll = ll.reversed_rings()
            return SiteFeatures(ll.to_wkb(), polys.codes, area, site)
        return SiteFeatures(_to_output(ll.to_shapely(), lonlat, crs, path=site.path), polys.codes, area, site)
    polys = polygonize(raster, connectivity=connectivity, simplify=simplify)
    order = np.argsort(polys.codes, kind="stable")
    geoms, codes = polys.geometries[order], polys.codes[order]
    area = ellipsoidal_area(geoms, work)
    return SiteFeatures(_to_output(transform_geometries(geoms, work, lonlat), lonlat, crs, path=site.path), codes,
                        area, site)


#: degrees by which a projected output CRS's area of use is widened when deciding whether it covers the
#: antimeridian where a polygon crosses it (a UTM zone is 6° wide; zones are often used a little beyond it)
AREA_OF_USE_MARGIN_DEG = 10.0


def _to_output(lonlat_geoms: np.ndarray, lonlat: CRS, crs: CRS, *, path: Path) -> np.ndarray:
    """Lon/lat polygons (longitudes possibly beyond 180°) as WKB in ``crs``, transformed exactly, shells
    counter-clockwise and holes clockwise (pyproj.Geod, RFC 7946).

    Polygons are brought within ±180° and those across the antimeridian split at 180°
    (:func:`~minescape.geo.vector.split_antimeridian`), as RFC 7946 asks of lon/lat. In a projected CRS that
    covers the antimeridian there (:func:`_covers_antimeridian`: EPSG:32660, 3571, 3832, a LAEA centred on 180°)
    the two halves would share the cut edge, a self-intersection once projected (every such polygon was refused):
    there the continuous outline is projected whole (PROJ takes longitudes past 180°), unless it comes out
    invalid (a CRS that wraps longitudes at 180°, as EPSG:3857 does, keeps the halves). In a CRS that does not
    cover the site :func:`check_projected` refuses it."""
    source = np.asarray(lonlat_geoms, dtype=object)
    out = split_antimeridian(source)
    if not crs.equals(lonlat):  # other output CRSs: exact PROJ transform from lon/lat
        tf = transformer(lonlat, crs)

        def project(geoms: np.ndarray) -> np.ndarray:
            return shapely.transform(geoms, lambda c: np.column_stack(tf.transform(c[:, 0], c[:, 1])))

        split = out
        out = project(split)
        if not crs.is_geographic and len(source):
            b = shapely.bounds(source)
            across = np.flatnonzero((b[:, 0] < 180.0) & (b[:, 2] > 180.0))
            if len(across) and _covers_antimeridian(crs, float(b[across, 1].min()), float(b[across, 3].max())):
                whole = project(source[across])
                ok = shapely.is_valid(whole) & np.isfinite(shapely.bounds(whole)).all(axis=1)
                out[across[ok]] = whole[ok]
        check_projected(out, out_of=split, crs=crs, path=path)
    out = shapely.orient_polygons(out)
    return shapely.to_wkb(out, output_dimension=2, byte_order=1)


def _covers_antimeridian(crs: CRS, south: float, north: float) -> bool:
    """Whether ``crs``'s area of use, widened by :data:`AREA_OF_USE_MARGIN_DEG`, holds longitude 180° between
    latitudes ``south`` and ``north`` (a CRS with no recorded area of use, a custom one: True, its polygons are
    still checked by :func:`check_projected`)."""
    aou = _area_of_use(crs.to_wkt())
    if aou is None:
        return True
    west, aou_south, east, aou_north = aou
    m = AREA_OF_USE_MARGIN_DEG
    if north < aou_south - m or south > aou_north + m:
        return False
    if west > east:  # the area of use itself crosses the antimeridian (EPSG:3832)
        return True
    return east >= 180.0 - m or west <= -180.0 + m


@functools.lru_cache(maxsize=64)
def _area_of_use(wkt: str) -> tuple[float, float, float, float] | None:
    import pyproj

    aou = pyproj.CRS.from_user_input(wkt).area_of_use
    return None if aou is None else (aou.west, aou.south, aou.east, aou.north)


def check_projected(projected: np.ndarray, *, out_of: np.ndarray, crs: CRS, path: Path) -> None:
    """InputError unless every polygon transformed to ``crs`` is finite and valid: far outside a CRS's area of
    use (a site in Fiji published in a UTM zone of Europe) the transform folds outlines over themselves or
    gives infinities, and the release would hold invalid polygons (``inspect`` found 23 self-intersections).
    The message names the site's class map (``path``) and the CRS's area of use (lon/lat degrees) where it
    has one. ``out_of``: the lon/lat polygons they came from (only a polygon that was valid there counts)."""
    bad = ~shapely.is_valid(projected) | ~np.isfinite(shapely.bounds(projected)).all(axis=1)
    bad &= shapely.is_valid(out_of)
    if not bad.any():
        return
    import pyproj

    aou = pyproj.CRS.from_user_input(crs.to_wkt()).area_of_use
    where = (f"its area of use is {aou.west:g}..{aou.east:g}°E, {aou.south:g}..{aou.north:g}°N"
             if aou is not None else "it has no recorded area of use")
    lon, lat = shapely.get_coordinates(out_of[0])[0]
    raise InputError(f"{int(bad.sum())} of its {len(bad)} polygons (near lon {lon:.3f}, lat {lat:.3f}) become invalid "
                     f"in the output CRS {crs.to_string()} ({where}); publish with a CRS that covers every site, "
                     "e.g. EPSG:4326", path=path)


def _mirrors(src: CRS, dst: CRS, src_xy: np.ndarray) -> bool:
    """Whether the src -> dst transform reverses orientation near ``src_xy`` (sign of its Jacobian)."""
    tf = transformer(src, dst)
    x, y = src_xy
    h = 1.0
    xs, ys = tf.transform(np.array([x, x + h, x]), np.array([y, y, y + h]))
    det = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (xs[2] - xs[0]) * (ys[1] - ys[0])
    return bool(det < 0)


def _site_job(site: SiteMap, **options) -> SiteFeatures | str:
    """:func:`site_features`, or the one-line problem if the site cannot be published."""
    try:
        with many_files():  # class maps of a whole release share one folder
            return site_features(site, **options)
    except InputError as exc:
        return str(exc)


SITES_PER_WORKER = 200  # automatic workers: one per this many sites (a worker process costs ~1 s to start)


@contextlib.contextmanager
def _mapper(workers: int):
    """An order-preserving ``map(fn, items, chunk)``: the builtin, or :func:`minescape.parallel.ordered_map`
    over one pool of processes shared by every map of the run (scanning, then vectorising)."""
    if workers == 1:
        yield lambda fn, items, chunk=1: map(fn, items)
        return
    from minescape.parallel import ordered_map, process_pool

    # what a worker needs to vectorise (not pyogrio: shards are written by the parent; importing it with pandas
    # and geopandas doubled the fork server's start-up, 0.4 s, during which the workers cannot start)
    preload = ("numpy", "rasterio", "shapely", "pyproj", "minescape.publish.release")
    with process_pool(workers, preload=preload) as pool:
        yield lambda fn, items, chunk=4: ordered_map(fn, items, workers=workers, chunk=chunk, pool=pool)


@functools.lru_cache(maxsize=4)
def _resolver(regions: str | Path):
    """The region resolver of ``regions``, built once per process."""
    return make_region_resolver(regions)


def _scan_job(path: Path, regions: str | Path) -> SiteMap | str:
    """:func:`scan_site` with the run's regions (in a worker process); a problem as its one-line message."""
    try:
        with many_files():  # one folder of many class maps
            return scan_site(path, _resolver(regions))
    except InputError as exc:
        return str(exc)


class _ShardBuffer:
    """Collects features of one region and writes full shards as it goes."""

    def __init__(self, folder: Path, name: str, *, cap: int, crs: CRS, legend: Legend, extra: bool,
                 stats: _Stats, zips: _ZipWriter | None = None) -> None:
        self.folder, self.name, self.cap, self.crs = folder, name, cap, crs
        self.zips = zips
        self.legend, self.extra, self.stats = legend, extra, stats
        self.parts: list[SiteFeatures] = []
        self.count = 0
        self.region: str | None = None
        self.shard_no = 0
        self.next_index = 1
        self.sites = 0
        self.written: dict[str, list[dict]] = defaultdict(list)

    def add(self, feats: SiteFeatures) -> None:
        if self.region is not None and feats.site.region != self.region:
            self.flush(final=True)
        self.region = feats.site.region
        self.sites += 1
        self.parts.append(feats)
        self.count += len(feats.codes)
        while self.count >= self.cap:
            self.flush(final=False)

    def flush(self, *, final: bool) -> None:
        if self.count == 0:
            if final:
                self.region, self.shard_no = None, 0
            return
        n = min(self.cap, self.count)
        take = {"geometries": [], "codes": [], "area": [], "year": [], "site": [], "region": []}
        rest: list[SiteFeatures] = []
        need = n
        for part in self.parts:
            k = min(need, len(part.codes))
            if k:
                take["geometries"].append(part.geometries[:k])
                take["codes"].append(part.codes[:k])
                take["area"].append(part.area_m2[:k])
                take["year"].append(np.full(k, part.site.year, dtype=np.int32))
                take["site"].append(np.full(k, part.site.site_id, dtype=object))
                take["region"].append(np.full(k, part.site.region, dtype=object))
                need -= k
            if k < len(part.codes):
                rest.append(SiteFeatures(part.geometries[k:], part.codes[k:], part.area_m2[k:], part.site))
        self.parts, self.count = rest, self.count - n
        self.shard_no += 1
        fname = f"{self.name}_{self.region}_{self.shard_no:03d}.gpkg"
        codes = np.concatenate(take["codes"])
        names = np.array(self.legend.category_names(), dtype=object)[codes]
        area = np.concatenate(take["area"])
        year = np.concatenate(take["year"])
        index_n = np.arange(self.next_index, self.next_index + n, dtype=np.int64)
        extra = ({"site_id": np.concatenate(take["site"]), "region": np.concatenate(take["region"])}
                 if self.extra else None)
        path = self.folder / fname
        from minescape.publish.shards import write_shard  # here, not at the top: workers never write shards

        write_shard(path, np.concatenate(take["geometries"]), index_n=index_n, class_name=names,
                    area_m2=area, year=year, crs=self.crs, legend=self.legend, extra=extra)
        self.stats.add(self.region, names, year, area)
        self.written[self.region].append({
            "name": fname, "features": n, "index_n": [int(index_n[0]), int(index_n[-1])],
            "sha256": sha256_file(path),
        })
        if self.zips is not None:
            self.zips.add(self.region, path)
        self.next_index += n
        if final:
            self.flush(final=True)


class _Stats:
    """Feature counts and areas per class, year, region and class x year (deterministic order)."""

    def __init__(self) -> None:
        self.by: dict[str, dict[str, list]] = {k: defaultdict(lambda: [0, 0.0]) for k in
                                                ("class", "year", "region", "class_year")}

    def add(self, region: str, names: np.ndarray, years: np.ndarray, area: np.ndarray) -> None:
        for name in sorted(set(names.tolist())):
            is_name = names == name
            self._add("class", name, is_name, area)
            for y in np.unique(years[is_name]).tolist():
                self._add("class_year", f"{name}|{y}", is_name & (years == y), area)
        for y in np.unique(years).tolist():
            self._add("year", str(y), years == y, area)
        self.by["region"][region][0] += len(names)
        self.by["region"][region][1] += float(area.sum())

    def _add(self, key: str, value: str, sel: np.ndarray, area: np.ndarray) -> None:
        self.by[key][value][0] += int(sel.sum())
        self.by[key][value][1] += float(area[sel].sum())

    def as_dict(self) -> dict:
        out = {}
        for key, table in self.by.items():
            out[key] = {k: {"features": v[0], "area_m2": round(v[1], 3)} for k, v in sorted(table.items())}
        return out


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _add_member(zf: zipfile.ZipFile, f: Path) -> None:
    """Add file ``f`` under its name, with a fixed timestamp and permissions, deflated at ``ZIP_LEVEL``
    (``writestr`` is the call that honours a level for a ``ZipInfo``; a shard of 5,000 features is a few MB,
    read whole)."""
    info = zipfile.ZipInfo(f.name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    zf.writestr(info, f.read_bytes(), compresslevel=ZIP_LEVEL)


class _ZipWriter:
    """Each region's ZIP, written while the release is being made: a finished shard is appended to its region's
    ZIP in a background thread (zlib releases the GIL, so compressing overlaps vectorising). Members are in shard
    order, which is their name order below 1,000 shards per region (``..._001.gpkg``, ``..._002.gpkg``); fixed
    timestamps, so the same shards give the same bytes."""

    def __init__(self, folder: Path, name: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.folder, self.name = folder, name
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._pending: list = []

    def add(self, region: str, shard: Path) -> None:
        """Queue ``shard`` for ``region``'s ZIP; an error of an earlier append is raised here."""
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._append, region, shard))

    def _append(self, region: str, shard: Path) -> None:
        zf = self._zips.get(region)
        if zf is None:
            zf = self._zips[region] = zipfile.ZipFile(self.folder / f"{self.name}_{region}.zip", "w",
                                                      compression=zipfile.ZIP_DEFLATED)
        _add_member(zf, shard)

    def close(self) -> None:
        """Wait for every append and close the ZIPs (errors raised here)."""
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pool.shutdown(wait=True)
            for zf in self._zips.values():
                zf.close()


def publish(
    maps_dir: str | Path,
    out: str | Path,
    *,
    max_features: int = 5000,
    crs: str | int = "EPSG:4326",
    regions: str | Path = "world9",
    simplify: float = 0.0,
    connectivity: int = 4,
    extra_columns: bool = False,
    name: str = "mining_lulc",
    legend: Legend = MINING_LULC,
    progress: bool = True,
    workers: int | None = 1,
) -> ReleaseSummary:
    """Publish the class maps ``maps_dir/*.tif`` as a release in ``out`` (replaced atomically).

    Args:
        maps_dir: folder of per-site class maps (``SITE_ID`` and ``YEAR`` tags, see module docstring).
        out: release folder; an existing release there (a folder with ``manifest.json``) is replaced.
        max_features: cap of features per GPKG shard.
        crs: output CRS of the shards (EPSG:4326 by default).
        regions: ``"world9"``, ``"tag"`` or a regions layer path (see :mod:`minescape.publish.regions`).
        simplify: polygon simplification tolerance in metres (0 = exact pixel outlines).
        connectivity: 4 (default) or 8, see :mod:`minescape.geo.polygonize`.
        extra_columns: also write ``site_id`` and ``region`` columns.
        name: dataset name, the prefix of every file.
        legend: class legend (names in ``class_name``, colours of the QGIS style).
        progress: show a progress bar.
        workers: processes vectorising sites in parallel (the output is the same for any number); None: one
            per 200 sites, up to every core this process may use (:func:`minescape.parallel.workers_for`).

    Returns:
        A :class:`ReleaseSummary`; sites that could not be published are listed in ``skipped``
        (one line each, file and problem) and in the manifest, the others are published.

    Raises:
        InputError: among others, ``out`` is or holds ``maps_dir`` or the regions layer (it is replaced whole).
    """
    maps_dir, out = Path(maps_dir), Path(out)
    if max_features < 1:
        raise ConfigError(f"max_features must be >= 1 (got {max_features})")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1 (got {workers})")
    if not all(c.isalnum() or c in "_-" for c in name) or not name:
        raise ConfigError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    out_crs = check_output_crs(crs)
    if not maps_dir.is_dir():
        raise MissingInputError("class map folder not found", path=maps_dir)
    paths = sorted(p for p in maps_dir.glob("*.tif") if not p.name.startswith("."))
    if not paths:
        raise InputError("no class maps (*.tif) in the folder", path=maps_dir)
    check_run_listing(maps_dir, paths)
    # OUT is replaced whole: the class maps (or a regions layer) inside it would be deleted
    check_not_within(out, {"the input MAPS_DIR": maps_dir,
                           "the --regions layer": Path(regions) if str(regions) not in ("world9", "tag") else None},
                     what="OUT")
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).exists() or not any(out.iterdir()))):
        raise InputError("exists and is not a minescape release (no manifest.json); choose another folder",
                         path=out)
    _resolver(regions)  # a bad regions layer: one line before any work
    if workers is None:
        from minescape.parallel import workers_for

        workers = workers_for(len(paths), per_worker=SITES_PER_WORKER)
    with _mapper(min(workers, len(paths))) as mapper:
        return _publish_sites(paths, maps_dir, out, mapper, max_features=max_features, out_crs=out_crs,
                              regions=regions, simplify=simplify, connectivity=connectivity,
                              extra_columns=extra_columns, name=name, legend=legend, progress=progress)


def _publish_sites(paths: list[Path], maps_dir: Path, out: Path, mapper, *, max_features: int, out_crs: CRS,
                   regions: str | Path, simplify: float, connectivity: int, extra_columns: bool, name: str,
                   legend: Legend, progress: bool) -> ReleaseSummary:
    """:func:`publish` once its arguments are checked: scan, vectorise and write with ``mapper``."""
    skipped: list[str] = []
    sites: list[SiteMap] = []
    seen: dict[tuple[str, int], Path] = {}
    region_names: dict[str, str] = {}  # lower case -> the first spelling: one ZIP name on every file system
    for p, s in zip(paths, mapper(functools.partial(_scan_job, regions=regions), paths, chunk=32), strict=True):
        if isinstance(s, str):
            skipped.append(s)
            continue
        if (s.site_id, s.year) in seen:
            skipped.append(f"{p}: site {s.site_id} year {s.year} already published from "
                           f"{seen[s.site_id, s.year]}")
            continue
        first = region_names.setdefault(s.region.lower(), s.region)
        if first != s.region:
            skipped.append(f"{p}: region {s.region!r} differs from region {first!r} only in case; their ZIPs would "
                           "be one file on Windows and macOS: use one spelling")
            continue
        seen[s.site_id, s.year] = p
        sites.append(s)
    if not sites:
        raise InputError(f"none of the {len(paths)} class maps can be published; first problem: {skipped[0]}",
                         path=maps_dir)
    sites.sort(key=lambda s: (s.region, s.site_id, s.year, s.path.name))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    shard_dir = tmp / ".shards"
    shard_dir.mkdir(parents=True)
    try:
        stats = _Stats()
        zips = _ZipWriter(tmp, name)
        buf = _ShardBuffer(shard_dir, name, cap=max_features, crs=out_crs, legend=legend,
                           extra=extra_columns, stats=stats, zips=zips)
        job = functools.partial(_site_job, legend=legend, crs=out_crs, simplify=simplify,
                                connectivity=connectivity)
        with make_progress(enabled=progress) as bar:
            task = bar.add_task("publishing sites", total=len(sites), extra="")
            for feats in mapper(job, sites):  # in input order whatever the number of workers
                if isinstance(feats, str):
                    skipped.append(feats)
                else:
                    buf.add(feats)
                bar.advance(task)
        try:
            buf.flush(final=True)
        finally:
            zips.close()
        if buf.sites == 0:
            raise InputError(f"none of the {len(paths)} class maps can be published; first problem: "
                             f"{skipped[0]}", path=maps_dir)
        summary = _finish(tmp, shard_dir, buf, stats, name=name, legend=legend, out_crs=out_crs,
                          max_features=max_features, regions=regions, simplify=simplify,
                          connectivity=connectivity, extra_columns=extra_columns, skipped=skipped,
                          n_sites=len(sites))
        replace_dir(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        err = output_error(exc, out)  # a full or read-only disk under GDAL/SQLite: name the release folder
        if err is not None and err is not exc:
            raise err from exc
        raise
    summary.out = out
    return summary


def check_output_crs(crs: str) -> CRS:
    """The release CRS for ``crs`` (any pyproj input); ConfigError unless it is a 2D geographic or projected
    CRS, the kinds GeoPackage polygons with ellipsoidal areas can carry (a geocentric, 3D, compound, vertical
    or engineering CRS is refused with the valid choices)."""
    import pyproj

    try:
        p = pyproj.CRS.from_user_input(crs)
    except Exception:
        raise ConfigError(f"invalid output CRS {crs!r}; give a 2D geographic or projected CRS, e.g. EPSG:4326 "
                          "or a UTM zone such as EPSG:32650") from None
    axes = len(p.axis_info)
    if not (p.is_geographic or p.is_projected) or p.is_compound or p.is_geocentric or axes != 2:
        kind = ("geocentric" if p.is_geocentric else "compound" if p.is_compound else "vertical" if p.is_vertical
                else f"{axes}D" if axes != 2 else p.type_name)
        raise ConfigError(f"output CRS {crs!r} is {kind} ({p.name}); choose one of: a 2D geographic CRS "
                          "(e.g. EPSG:4326) or a 2D projected CRS (e.g. EPSG:3857, EPSG:32650)")
    return CRS.from_user_input(crs)


def check_run_listing(maps_dir: Path, paths: list[Path]) -> None:
    """When ``maps_dir`` is the ``maps/`` folder of a ``lulc classify`` run (a ``sites.json`` beside it), the
    class maps in it must be exactly those ``sites.json`` lists as ``ok``: a map left by an earlier run, or a
    listed map that is missing, refuses the release in one line (nothing is published that the run did not
    produce). A folder of maps without ``sites.json`` is published as it is."""
    from minescape.jsonfile import read_json
    from minescape.unfinished import check_finished

    check_finished(maps_dir)
    if maps_dir.name == "maps":
        check_finished(maps_dir.parent)  # a lulc classify run that did not finish: maps of two runs, or too few
    listing = maps_dir.parent / "sites.json"
    if maps_dir.name != "maps" or not listing.is_file():
        return
    try:
        rows = json.loads(listing.read_text(encoding="utf-8")) if listing.stat().st_size < 64 << 20 else None
    except (ValueError, UnicodeDecodeError):
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        read_json(listing, "sites.json")  # raises the one-line reason for a non-list file
        raise InputError("sites.json is not a list of sites (as written by 'minescape lulc classify')",
                         path=listing)
    listed = {(maps_dir.parent / r["map"]).absolute() for r in rows if r.get("status") == "ok" and r.get("map")}
    present = {p.absolute() for p in paths}
    extra, missing = sorted(present - listed), sorted(listed - present)
    if extra:
        raise InputError(f"{len(extra)} class map(s) in the folder are not listed in {listing} (left by an earlier "
                         f"run?), e.g. {extra[0].name}; re-run 'minescape lulc classify' into this folder or remove "
                         "them", path=maps_dir)
    if missing:
        raise InputError(f"{len(missing)} class map(s) listed in {listing} are missing, e.g. {missing[0].name}; "
                         "re-run 'minescape lulc classify' into this folder", path=maps_dir)


def _finish(tmp: Path, shard_dir: Path, buf: _ShardBuffer, stats: _Stats, *, name, legend, out_crs,
            max_features, regions, simplify, connectivity, extra_columns, skipped, n_sites) -> ReleaseSummary:
    from minescape.publish.shards import FIELDS

    summary = ReleaseSummary(out=tmp, skipped=list(skipped))
    files: dict[str, str] = {}
    region_info = {}
    for region in sorted(buf.written):
        shards = buf.written[region]
        zname = f"{name}_{region}.zip"  # written shard by shard (_ZipWriter)
        files[zname] = sha256_file(tmp / zname)
        for s in shards:
            files[f"{zname}/{s['name']}"] = s["sha256"]
        region_info[region] = {"zip": zname, "features": sum(s["features"] for s in shards), "files": shards}
        summary.zips.append(zname)
        summary.files.extend(s["name"] for s in shards)
    shutil.rmtree(shard_dir)
    summary.features = buf.next_index - 1
    manifest = {
        "dataset": name,
        "producer": f"minescape {__version__}",
        "crs": out_crs.to_string(),
        "max_features_per_file": max_features,
        "fields": list(FIELDS) + (list(EXTRA_COLUMNS) if extra_columns else []),
        "extra_columns": list(EXTRA_COLUMNS) if extra_columns else [],
        "legend": legend.to_dict(),
        "regions_mode": str(regions) if str(regions) in ("world9", "tag") else f"layer:{Path(regions).name}",
        "polygonize": {"connectivity": connectivity, "simplify_m": simplify},
        "sites": buf.sites,
        "features": summary.features,
        "summary": stats.as_dict(),
        "regions": region_info,
        "skipped": list(skipped),
    }
    readme = render_readme(manifest, legend)
    (tmp / README).write_text(readme, encoding="utf-8")
    files[README] = sha256_file(tmp / README)
    manifest["sha256"] = dict(sorted(files.items()))
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    summary.manifest = manifest
    return summary


def render_readme(manifest: dict, legend: Legend) -> str:
    """The release README: content, fields, class definitions, regions and files."""
    lines = [
        f"# {manifest['dataset']}: mining land use / land cover polygons",
        "",
        f"{manifest['features']:,} polygons from {manifest['sites']} site class maps, in "
        f"{len(manifest['regions'])} regional ZIP files of GeoPackage shards "
        f"(at most {manifest['max_features_per_file']:,} features per file). CRS: {manifest['crs']}.",
        "Each GeoPackage carries a default QGIS style (table `layer_styles`) colouring features by `class_name`.",
        "",
        "## Fields",
        "",
        "| field | type | description |",
        "|---|---|---|",
        "| fid | integer | GeoPackage feature id, unique within a file (1..n in index_n order) |",
        "| index_n | integer | feature number, unique across every file of the release and stable when the same "
        "input is published again (order: region, site id, year, class, raster scan position) |",
        "| class_name | text | land use/land cover class (see below) |",
        "| area_m2 | real | polygon area in m² on the WGS84 ellipsoid (holes subtracted) |",
        "| year | integer | year of the site's class map |",
    ]
    if manifest["extra_columns"]:
        lines += ["| site_id | text | id of the mining site |", "| region | text | region of the site (ZIP file) |"]
    lines += ["", "## Classes", "", "| code | class_name | colour | definition |", "|---|---|---|---|"]
    lines += [f"| {c.code} | {c.name} | {c.hex} | {c.definition} |" for c in legend.classes]
    lines += ["", "## Regions", ""]
    if manifest["regions_mode"] == "world9":
        lines += ["Sites are grouped into nine world regions by the centre of their class map "
                  f"({', '.join(WORLD9)}); the rules are in `minescape.publish.regions`.", ""]
    else:
        lines += [f"Regions from: {manifest['regions_mode']}.", ""]
    lines += ["| region | ZIP | files | features |", "|---|---|---|---|"]
    for region, info in manifest["regions"].items():
        lines.append(f"| {region} | {info['zip']} | {len(info['files'])} | {info['features']:,} |")
    lines += ["", "## Method", "",
              f"One polygon per {manifest['polygonize']['connectivity']}-connected patch of one class "
              "(the polygons of GDAL polygonize); "
              + (f"simplified with a {manifest['polygonize']['simplify_m']} m tolerance (coverage-preserving)."
                 if manifest["polygonize"]["simplify_m"] else "exact pixel outlines."),
              "Areas are computed in each site's UTM zone with the exact areal scale of the projection and "
              "agree with pyproj.Geod to 1e-4 relative on every feature.",
              "`manifest.json` lists features and area per class, year and region, and the SHA-256 of every file.",
              "Check a copy with `minescape inspect <folder or zip>`.", ""]
    return "\n".join(lines)
