"""Mining sites: read and repair polygons, stable ids, a metric working grid per site, the site's year.

A :class:`Site` is one mining-area polygon with a stable ``id`` (an id field when the layer has one, else a
hash of the geometry's WKB), its geometry in WGS84 (EPSG:4326), its working CRS (the WGS84 UTM zone of its
centroid, UPS near the poles) and a 10 m :class:`~minescape.geo.grid.Grid` covering it in that CRS.

Sites crossing the antimeridian are handled by *unwrapping* longitudes (negative longitudes + 360) before the
centroid is computed, so a site spanning 179.9°E..179.9°W gets a centroid near ±180° (and its UTM zone 60 or 1)
instead of one near 0°. Such a site's ``geometry`` is stored split at 180° (a valid RFC 7946 MultiPolygon), however
the layer wrote it and whatever its CRS; its UTM geometry is projected from the continuous outline.

The site ``year`` is the DEM-change map's later-acquisition year at the site centroid pixel (rule
``"centroid"``); when the centroid falls outside the polygon or on nodata the nearest valid pixel inside the
polygon is used (rule ``"nearest-valid"``).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio.features
import shapely
from pyproj import CRS
from rasterio.windows import Window

from minescape.errors import ConfigError, InputError
from minescape.geo.crs import as_crs, transformer
from minescape.geo.grid import Grid, bounds_in, utm_crs
from minescape.geo.vector import FeatureNote, polygonal_parts, read_vector, repair_geometries, split_antimeridian

if TYPE_CHECKING:
    import geopandas as gpd

WGS84 = CRS.from_epsg(4326)
DEFAULT_RES = 10.0  # metres
# fields used as the site id when ``id_field`` is not given, first present wins: our own ``site_id``; ``id`` (the
# merged Maus + Tang layers); ``OBJECTID`` (Tang & Werner 2023 shapefile). Maus et al. 2022 v2 (ISO3_CODE,
# COUNTRY_NAME, AREA) has no id field, and the mine-segmentation layers' ``tile_id`` names a tile, not a site
# (it repeats): those get geometry hashes.
ID_FIELDS = ("site_id", "id", "OBJECTID")
NOTES_SHOWN = 5  # dropped or renamed features warned one by one; the others in one summary line
YEAR_RULES = ("centroid", "nearest-valid")


@dataclass(frozen=True)
class Site:
    """One mining site.

    Attributes:
        id: stable identifier (text).
        geometry: polygonal geometry in WGS84 longitude/latitude (EPSG:4326), always valid: as read, but for a
            site across the antimeridian, which is split at 180° into a MultiPolygon (RFC 7946; see
            :func:`site_lonlat`) whatever the layer's CRS and however its ring was written.
        crs: working CRS (UTM zone of the centroid or UPS), metres.
        geometry_utm: the polygon in ``crs`` (metres).
        grid: the site's 10 m grid in ``crs`` covering ``geometry_utm`` (snapped to multiples of the pixel size).
        centroid_lonlat: ``(lon, lat)`` of the centroid in degrees, longitude wrapped to [-180, 180).
        attrs: the layer's other attributes (JSON-friendly values).
    """

    id: str
    geometry: shapely.Geometry
    crs: CRS
    geometry_utm: shapely.Geometry
    grid: Grid
    centroid_lonlat: tuple[float, float]
    attrs: dict

    def mask(self, grid: Grid | None = None) -> np.ndarray:
        """``(rows, cols)`` bool: True for pixels whose centre lies inside the site (on ``grid``, default the
        site grid; ``grid`` must be in :attr:`crs`)."""
        # the site grid's mask is rasterised once per site (a copy each call)
        if grid is None or grid is self.grid or grid == self.grid:
            cached = self.__dict__.get("_mask")
            if cached is None:
                cached = rasterio.features.geometry_mask([self.geometry_utm], out_shape=self.grid.shape,
                                                         transform=self.grid.transform, invert=True)
                object.__setattr__(self, "_mask", cached)
            return cached.copy()
        return rasterio.features.geometry_mask([self.geometry_utm], out_shape=grid.shape,
                                               transform=grid.transform, invert=True)


def crosses_antimeridian(geom: shapely.Geometry) -> bool:
    """True for a WGS84 geometry whose longitudes span more than 180° (it wraps across ±180°)."""
    if geom is None or geom.is_empty:
        return False
    minx, _, maxx, _ = geom.bounds
    return maxx - minx > 180.0


def unwrap_longitudes(geom: shapely.Geometry) -> shapely.Geometry:
    """Shift negative longitudes by +360° for geometries crossing the antimeridian (else unchanged)."""
    if not crosses_antimeridian(geom):
        return geom
    return shapely.transform(geom, lambda xy: np.c_[np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]])


def site_centroid(geom_lonlat: shapely.Geometry) -> tuple[float, float]:
    """Centroid ``(lon, lat)`` in degrees of a WGS84 geometry, correct across the antimeridian.

    Computed on unwrapped longitudes, then wrapped back to [-180, 180). (A planar centroid in degrees; for
    the choice of a UTM zone its error is immaterial.)
    """
    c = unwrap_longitudes(geom_lonlat).centroid
    lon = ((c.x + 180.0) % 360.0) - 180.0
    return float(lon), float(c.y)


def site_id_from_geometry(geom: shapely.Geometry) -> str:
    """A deterministic id: ``"site-"`` + 12 hex digits of the SHA-1 of the normalised geometry's WKB."""
    wkb = shapely.to_wkb(shapely.normalize(geom), output_dimension=2, byte_order=1, include_srid=False)
    return "site-" + hashlib.sha1(wkb).hexdigest()[:12]


def make_site(site_id: str, geom_lonlat: shapely.Geometry, *, res: float = DEFAULT_RES,
              attrs: dict | None = None) -> Site:
    """Build a :class:`Site` from a WGS84 polygon: centroid, working CRS and grid at ``res`` metres.

    ``geom_lonlat`` may cross the antimeridian in any of the ways a layer writes it (a ring whose longitudes jump
    from 179.98 to -179.98, as a projected layer gives after its transform to lon/lat; longitudes past 180°; or a
    MultiPolygon already split at 180°): :attr:`Site.geometry` is then the polygon split at 180°
    (:func:`site_lonlat`), and the working geometry is its continuous outline. Building a site from its own
    ``geometry`` gives the same site."""
    geometry = site_lonlat(geom_lonlat)
    continuous = _continuous(geometry)
    c = continuous.centroid
    lon, lat = float(((c.x + 180.0) % 360.0) - 180.0), float(c.y)
    crs = utm_crs(lon, lat)
    to_utm = transformer(WGS84, crs)  # cached: building one costs ~0.5 ms per site
    geom_utm = shapely.transform(continuous, lambda xy: np.c_[to_utm.transform(xy[:, 0], xy[:, 1])])
    if not geom_utm.is_valid:
        geom_utm = shapely.make_valid(geom_utm)
    minx, miny, maxx, maxy = geom_utm.bounds
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise InputError(f"site {site_id}: geometry cannot be projected to {crs.to_string()}")
    grid = Grid.from_bounds((minx, miny, maxx, maxy), res, crs)
    return Site(site_id, geometry, crs, geom_utm, grid, (lon, lat), dict(attrs or {}))


def site_lonlat(geom_lonlat: shapely.Geometry) -> shapely.Geometry:
    """A WGS84 polygon as a valid RFC 7946 (Multi)Polygon: longitudes within [-180, 180], split at 180° where it
    crosses the antimeridian (:func:`~minescape.geo.vector.split_antimeridian` of its continuous outline).

    A polygon within ±180° that does not cross comes back as it is (nearly every site; :func:`read_sites` has
    repaired it), and so does a valid one already split at 180°. A ring that jumps across 180° (invalid, or valid
    but read as a band around the globe, 179.95 -> -179.95 taken as 359.9° wide) is unwrapped first, so it stays
    the small polygon it describes."""
    if geom_lonlat is None or geom_lonlat.is_empty:
        return geom_lonlat
    minx, _, maxx, _ = geom_lonlat.bounds
    if maxx - minx <= 180.0 and minx >= -180.0 and maxx <= 180.0:
        return geom_lonlat  # away from 180° (read_sites has repaired it)
    split = split_antimeridian(np.array([_continuous(geom_lonlat)], dtype=object))[0]
    if geom_lonlat.is_valid and maxx <= 180.0 and split.equals(geom_lonlat):
        return geom_lonlat  # already split at 180°
    return split


def _continuous(geom_lonlat: shapely.Geometry) -> shapely.Geometry:
    """The WGS84 polygon with continuous longitudes (:func:`unwrap_longitudes`) and valid: the halves of a
    polygon split at 180° are joined again, a ring that jumps across 180° becomes the polygon it describes."""
    geom = unwrap_longitudes(geom_lonlat)
    if not geom.is_valid:
        geom = polygonal_parts(shapely.make_valid(geom))
        if geom.geom_type == "MultiPolygon":  # make_valid may keep parts that only touch
            geom = shapely.union_all(list(geom.geoms))
    return geom


def check_site_size(site: Site, *, bytes_per_px: float, limit: int | None = None) -> None:
    """Refuse a site whose grid the per-site chain could not hold in memory, before anything is allocated: its
    ``width x height`` pixels times ``bytes_per_px`` (the chain's arrays per pixel, bytes) above ``limit`` (default
    :data:`minescape.limits.MAX_ALLOC_BYTES`). Reading never refuses a site (its grid is only numbers); a
    MultiPolygon whose parts lie hundreds of km apart gets one grid spanning them all, which this catches.

    Raises:
        ResourceLimitError: ``site FAR: its 4,508 x 5,091 km extent is a 450,821 x 509,113 px grid (...) needs
            53,440.2 GiB of memory, above the limit of 11.8 GiB (...); split the site ...`` (one line).
    """
    from minescape.limits import check_alloc

    w, h = site.grid.width, site.grid.height
    xres, yres = site.grid.res
    what = (f"site {site.id}: its {w * xres / 1000:,.0f} x {h * yres / 1000:,.0f} km extent is a {w:,} x {h:,} px "
            f"grid ({w * h:,} px at {xres:g} m)")
    check_alloc(float(w) * float(h) * bytes_per_px, what, limit=limit,
                fix="split the site into features that each outline one mine (one feature per mine), or remove "
                    "the parts that lie far away")


def point_disc(geom_lonlat: shapely.Geometry, radius_m: float, *, segments: int = 64) -> shapely.Geometry:
    """The geodesic circle of ``radius_m`` metres on the WGS84 ellipsoid around a Point (a union of circles for a
    MultiPoint), as a WGS84 polygon of ``segments`` vertices (each exactly ``radius_m`` from the point, computed
    by pyproj's ``Geod.fwd``; the polygon's area is 0.16 % below the circle's for 64). Longitudes are continuous
    around the point's, so a disc across the antimeridian reaches past 180° (a valid polygon in degrees, which the
    repair of :func:`read_sites` keeps whole; the site's ``geometry`` is then split at 180°, see
    :func:`site_lonlat`)."""
    from pyproj import Geod

    if geom_lonlat.geom_type == "MultiPoint":
        return shapely.union_all([point_disc(p, radius_m, segments=segments) for p in geom_lonlat.geoms])
    azimuths = np.linspace(0.0, 360.0, segments, endpoint=False)
    n = azimuths.size
    x, y = geom_lonlat.x, geom_lonlat.y
    lon, lat, _ = Geod(ellps="WGS84").fwd(np.full(n, x), np.full(n, y), azimuths, np.full(n, float(radius_m)))
    lon = x + (np.asarray(lon) - x + 180.0) % 360.0 - 180.0
    return shapely.Polygon(np.c_[lon, lat][::-1])  # azimuths run clockwise; exterior rings counter-clockwise


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _id_text(value) -> str | None:
    value = _json_value(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def read_sites(
    path: str | Path,
    *,
    layer: str | None = None,
    id_field: str | None = None,
    res: float = DEFAULT_RES,
    point_buffer_m: float | None = None,
) -> tuple[list[Site], list[str]]:
    """Read mining-area polygons (GPKG, GeoJSON, Shapefile) as :class:`Site` s.

    Mine locations kept as points (hand-labelled mines, SNL-style registers) become sites with ``point_buffer_m``:
    the disc of that many metres around each point (:func:`point_disc`); without it they are dropped with a line
    that says so.

    Invalid geometries are repaired (``make_valid``, polygonal parts kept); empty, missing or non-polygonal
    ones are dropped with a warning line. Ids come from ``id_field`` (default: ``site_id`` or ``id`` when the
    layer has such a field) else from :func:`site_id_from_geometry`; features without an id value get the
    geometry id, and duplicate ids get ``-2``, ``-3``... suffixes in file order (with a warning).

    Args:
        path: vector file.
        layer: layer name (GPKG with several layers, e.g. ``maus_polygons``); default the first.
        id_field: attribute holding the site id.
        res: working-grid pixel size in metres.
        point_buffer_m: radius in metres of the site drawn around each Point / MultiPoint feature (> 0).

    Returns:
        ``(sites, notes)``: the sites in file order and a :class:`~minescape.geo.vector.FeatureNote` per dropped
        or renamed feature (``str()`` of each is its warning line).
    """
    gdf = read_vector(path, layer=layer)
    if not len(gdf):
        raise InputError(f"layer {layer!r} has no features" if layer else "the layer has no features (no "
                         "mining-area polygons to read)", path=path)
    if id_field is not None and id_field not in gdf.columns:
        raise InputError(f"no id field {id_field!r}; fields are {[c for c in gdf.columns if c != 'geometry']}",
                         path=path)
    if id_field is None:
        id_field = next((f for f in ID_FIELDS if f in gdf.columns), None)
    source = Path(path).name + (f":{layer}" if layer else "")
    gdf = gdf.set_axis(_feature_names(gdf, id_field), axis=0)  # every note names the feature by its index
    notes: list[FeatureNote] = []
    gdf = _possible_latitudes(gdf, source, notes)  # before anything computes with a latitude of 148°
    if point_buffer_m is not None:
        gdf = _points_as_discs(gdf, point_buffer_m)
    gdf = _collections_as_polygons(gdf, source, notes)
    geoms = gdf.geometry
    nonpoly = np.array([g is not None and not g.is_empty and g.geom_type not in ("Polygon", "MultiPolygon")
                        for g in geoms.values], dtype=bool)
    for pos in np.flatnonzero(nonpoly):
        kind = geoms.values[pos].geom_type
        hint = " (--point-buffer METRES makes a site of the disc around each point)" if "Point" in kind else ""
        what = "is a GeometryCollection holding no polygon" if kind == "GeometryCollection" else \
            f"is a {kind}, not a polygon{hint}"
        notes.append(FeatureNote(source, str(gdf.index[pos]), what))
    gdf = gdf[~nonpoly]
    gdf = _unwrapped_in_degrees(gdf)
    gdf, dropped = repair_geometries(gdf, source=source)
    notes.extend(dropped)
    if len(gdf) and gdf.crs is not None and not CRS.from_user_input(gdf.crs).equals(WGS84):
        gdf = gdf.to_crs(WGS84)
    sites: list[Site] = []
    attr_cols = [c for c in gdf.columns if c != gdf.geometry.name]
    geoms = gdf.geometry.values
    records = [{c: _json_value(gdf[c].iloc[pos]) for c in attr_cols} for pos in range(len(gdf))]
    given = [_id_text(rec.get(id_field)) if id_field else None for rec in records]
    taken = {sid for sid in given if sid is not None}  # a renamed repeat must not take an id the layer has
    seen: set[str] = set()
    next_n: dict[str, int] = {}
    for pos, idx in enumerate(gdf.index):
        geom, rec, sid = geoms[pos], records[pos], given[pos]
        if sid is None:
            sid = site_id_from_geometry(geom)
            if id_field:
                notes.append(FeatureNote(source, str(idx), f"has no {id_field}; using {sid}", dropped=False))
        if sid in seen:
            n = next_n.get(sid, 2)
            while f"{sid}-{n}" in taken:
                n += 1
            new = f"{sid}-{n}"
            next_n[sid] = n + 1
            notes.append(FeatureNote(source, str(idx), f"repeats site id {sid!r}; renamed {new!r}", dropped=False))
            sid = new
        seen.add(sid)
        taken.add(sid)
        try:
            sites.append(make_site(sid, geom, res=res, attrs=rec))
        except InputError as exc:
            notes.append(FeatureNote(source, str(idx), f"cannot be a site ({exc})"))
    for note in notes[:NOTES_SHOWN]:
        warnings.warn(str(note), stacklevel=2)
    if len(notes) > NOTES_SHOWN:  # a real layer can drop hundreds of empty features: one line for the rest
        warnings.warn(f"{source}: {len(notes) - NOTES_SHOWN} more dropped or renamed features (all of them are "
                      "in the returned notes and the run's report)", stacklevel=2)
    return sites, notes


def _feature_names(gdf: gpd.GeoDataFrame, id_field: str | None) -> list[str]:
    """How a user finds each feature: the number QGIS shows (:func:`~minescape.geo.vector.read_vector`'s index:
    a GeoPackage's fid, else the position from 1), and its id value when the layer has an id field
    (``3 (site_id 'GC')``)."""
    values = gdf[id_field].tolist() if id_field else [None] * len(gdf)
    names = []
    for idx, value in zip(gdf.index, values, strict=True):
        text = _id_text(value)
        names.append(f"{idx}" + (f" ({id_field} {text!r})" if text is not None else ""))
    return names


def _collections_as_polygons(gdf: gpd.GeoDataFrame, source: str, notes: list[FeatureNote]) -> gpd.GeoDataFrame:
    """``gdf`` with each GeometryCollection holding polygons replaced by its polygonal parts
    (:func:`~minescape.geo.vector.polygonal_parts`, as the repair keeps of make_valid's collections), with a
    note in ``notes`` for each; collections holding none are left for the caller to drop."""
    geoms = gdf.geometry.values
    parts = {pos: polygonal_parts(g) for pos, g in enumerate(geoms)
             if g is not None and g.geom_type == "GeometryCollection" and not g.is_empty}
    parts = {pos: p for pos, p in parts.items() if not p.is_empty}
    if not parts:
        return gdf
    out = gdf.copy()
    column = out.columns.get_loc(out.geometry.name)
    for pos, poly in parts.items():
        out.iat[pos, column] = poly
        notes.append(FeatureNote(source, str(gdf.index[pos]), "is a GeometryCollection; its polygonal parts are "
                                 "the site", dropped=False))
    return out


def _possible_latitudes(gdf: gpd.GeoDataFrame, source: str, notes: list[FeatureNote]) -> gpd.GeoDataFrame:
    """``gdf`` without the features of a layer that declares a geographic CRS (EPSG:4326) whose latitudes (y)
    leave [-90, 90], with a note for each: one that asks whether longitude and latitude are swapped when swapping
    them gives possible coordinates (|x| <= 90, |y| <= 180: a layer written as lat, lon), else one that says the
    coordinates are not degrees. A layer without a CRS (taken as WGS84, but maybe metres without a .prj) and a
    projected one are left alone: there a large y is no certain sign of anything."""
    if not len(gdf) or gdf.crs is None or not CRS.from_user_input(gdf.crs).is_geographic:
        return gdf
    b = np.array([g.bounds if g is not None and not g.is_empty else (0.0, 0.0, 0.0, 0.0)
                  for g in gdf.geometry.values], dtype=float).reshape(-1, 4)
    ymax = np.maximum(np.abs(b[:, 1]), np.abs(b[:, 3]))
    xmax = np.maximum(np.abs(b[:, 0]), np.abs(b[:, 2]))
    bad = ~(ymax <= 90.0)  # NaN too
    if not bad.any():
        return gdf
    crs = CRS.from_user_input(gdf.crs).to_string()
    for pos in np.flatnonzero(bad):
        y = b[pos, 3] if abs(b[pos, 3]) >= abs(b[pos, 1]) else b[pos, 1]
        why = "are longitude and latitude swapped?" if xmax[pos] <= 90.0 and ymax[pos] <= 180.0 else \
            "the coordinates are not degrees (is the layer's CRS wrong?)"
        notes.append(FeatureNote(source, str(gdf.index[pos]), f"has latitude out of range; {why} (y reaches "
                                 f"{y:g}, outside [-90, 90] in {crs})"))
    return gdf[~bad]


def _unwrapped_in_degrees(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """``gdf`` with the longitudes made continuous (:func:`unwrap_longitudes`) in each invalid geometry that
    crosses the antimeridian, for a layer in degrees (a geographic CRS, or none: taken as WGS84).

    A ring written with wrapped longitudes (179.99 next to -179.99) is invalid in the plane of degrees, and the
    repair that follows would cut it into pieces spanning the globe and keep the wrong ones (a 300 m disc lost
    0.6 % of its area that way). Unwrapped first, it is the valid polygon it describes. Valid geometries (a
    polygon split at 180°, as RFC 7946 asks) stay as read, and so do their geometry ids; layers in metres have no
    antimeridian to cross."""
    if not len(gdf) or (gdf.crs is not None and not CRS.from_user_input(gdf.crs).is_geographic):
        return gdf
    geoms = gdf.geometry.values
    across = np.array([g is not None and crosses_antimeridian(g) and not g.is_valid for g in geoms], dtype=bool)
    if not across.any():
        return gdf
    out = gdf.copy()
    out.loc[across, out.geometry.name] = [unwrap_longitudes(g) for g in geoms[across]]
    return out


def _points_as_discs(gdf: gpd.GeoDataFrame, radius_m: float) -> gpd.GeoDataFrame:
    """``gdf`` with its Point and MultiPoint geometries replaced by their discs of ``radius_m`` metres (in the
    layer's CRS; a layer without one is taken as WGS84, as :func:`read_sites` does)."""
    import geopandas as gpd

    if not (isinstance(radius_m, (int, float)) and math.isfinite(radius_m) and radius_m > 0):
        raise ConfigError(f"--point-buffer must be a distance > 0 in metres (got {radius_m})")
    kinds = gdf.geometry.geom_type
    points = (kinds == "Point") | (kinds == "MultiPoint")
    if not points.any():
        return gdf
    crs = gdf.crs if gdf.crs is not None else WGS84
    lonlat = gpd.GeoSeries(gdf.geometry[points].values, crs=crs).to_crs(WGS84)
    discs = gpd.GeoSeries([point_disc(g, float(radius_m)) for g in lonlat.values], crs=WGS84).to_crs(crs)
    out = gdf.copy()
    out.loc[points, out.geometry.name] = discs.values
    return out


# ---------------------------------------------------------------------------------------------- year


@dataclass(frozen=True)
class SiteYear:
    """The year assigned to a site and how: ``rule`` is ``"centroid"`` or ``"nearest-valid"``."""

    year: int
    rule: str
    row: int
    col: int


def site_year(site: Site, dcm_year: str | Path) -> SiteYear:
    """The DCM later-acquisition year for ``site`` (see module docstring for the rules).

    Reads only the window of the year raster that covers the site. Raises InputError when the raster does
    not cover the site or holds no valid year inside it.

    Args:
        site: the site.
        dcm_year: integer raster of years (nodata = its nodata value, and 0), any CRS.
    """
    from minescape.geo.handles import borrow

    with borrow(dcm_year) as src:  # one open per process (handle pool)
        if src.crs is None:
            raise InputError("year raster has no CRS", path=dcm_year)
        rgrid = Grid(src.crs, src.transform, src.width, src.height)
        geom, centroid = _site_in(site, rgrid)
        try:
            window = rgrid.window_of_bounds(geom.bounds)
        except InputError:
            raise InputError(f"site {site.id} lies outside the DCM year raster", path=dcm_year) from None
        window = _grow(window, rgrid, 1)
        data = src.read(1, window=window)
        nodata = src.nodata
        wgrid = rgrid.window_grid(window)
    valid = data != 0
    if nodata is not None:
        valid &= data != nodata
    inside = rasterio.features.geometry_mask([geom], out_shape=wgrid.shape, transform=wgrid.transform,
                                             invert=True, all_touched=False)
    if not inside.any():  # tiny site: fall back to touched pixels
        inside = rasterio.features.geometry_mask([geom], out_shape=wgrid.shape, transform=wgrid.transform,
                                                 invert=True, all_touched=True)
    candidates = valid & inside
    r, c = wgrid.rowcol(centroid.x, centroid.y)
    r, c = int(r), int(c)
    if 0 <= r < wgrid.height and 0 <= c < wgrid.width and candidates[r, c] and geom.contains(centroid):
        return SiteYear(int(data[r, c]), "centroid", r + int(window.row_off), c + int(window.col_off))
    if not candidates.any():
        raise InputError(f"site {site.id}: no valid DCM year pixel inside the site", path=dcm_year)
    rows, cols = np.nonzero(candidates)
    xs, ys = wgrid.xy(rows, cols)
    k = int(np.argmin((xs - centroid.x) ** 2 + (ys - centroid.y) ** 2))
    return SiteYear(int(data[rows[k], cols[k]]), "nearest-valid", int(rows[k] + window.row_off),
                    int(cols[k] + window.col_off))


def site_year_from_grid(site: Site, years: np.ndarray) -> SiteYear:
    """The site year from a year array on the site's own grid (0 = no year), by the same rules as
    :func:`site_year`: the centroid pixel when it is inside the polygon and valid, else the nearest valid
    pixel inside. ``row``/``col`` index the site grid. InputError when no pixel inside has a year."""
    if years.shape != site.grid.shape:
        raise InputError(f"site {site.id}: year array {years.shape} is not on the site grid {site.grid.shape}")
    inside = site.mask()
    if not inside.any():
        inside = rasterio.features.geometry_mask([site.geometry_utm], out_shape=site.grid.shape,
                                                 transform=site.grid.transform, invert=True, all_touched=True)
    candidates = (years > 0) & inside
    centroid = _centroid_in(site, site.crs)
    r, c = (int(v) for v in site.grid.rowcol(centroid.x, centroid.y))
    if 0 <= r < site.grid.height and 0 <= c < site.grid.width and candidates[r, c] \
            and site.geometry_utm.contains(centroid):
        return SiteYear(int(years[r, c]), "centroid", r, c)
    if not candidates.any():
        raise InputError(f"site {site.id}: no valid DCM year pixel inside the site")
    rows, cols = np.nonzero(candidates)
    xs, ys = site.grid.xy(rows, cols)
    k = int(np.argmin((xs - centroid.x) ** 2 + (ys - centroid.y) ** 2))
    return SiteYear(int(years[rows[k], cols[k]]), "nearest-valid", int(rows[k]), int(cols[k]))


def _grow(window: Window, grid: Grid, n: int) -> Window:
    c0 = max(0, int(window.col_off) - n)
    r0 = max(0, int(window.row_off) - n)
    c1 = min(grid.width, int(window.col_off + window.width) + n)
    r1 = min(grid.height, int(window.row_off + window.height) + n)
    return Window(c0, r0, c1 - c0, r1 - r0)


def _site_in(site: Site, grid: Grid) -> tuple[shapely.Geometry, shapely.Point]:
    """The site polygon and its centroid in ``grid``'s CRS: the UTM geometry reprojected, or in WGS84 the
    continuous outline (:func:`_continuous`) shifted by the multiple of 360° that brings the centroid nearest the
    grid's centre.

    A raster in degrees across 180° runs past it (179.95..180.05, as a mosaic across 180° is written), and the
    halves of a site split at 180° lie 360° apart: taken as they are, the part and the centroid east of 180°
    (-179.99) fall outside such a raster, and the centroid of a site across 180° is not a pixel of it."""
    crs = as_crs(grid.crs)
    if crs.equals(site.crs):
        return site.geometry_utm, _centroid_in(site, crs)
    if not crs.equals(WGS84):
        tr = transformer(site.crs, crs)
        geom = shapely.transform(site.geometry_utm, lambda xy: np.c_[tr.transform(xy[:, 0], xy[:, 1])])
        return geom, _centroid_in(site, crs)
    geom = _continuous(site.geometry)
    minx, _, maxx, _ = geom.bounds
    lon, lat = site.centroid_lonlat
    lon += 360.0 * round(((minx + maxx) / 2 - lon) / 360.0)  # the centroid among the continuous longitudes
    left, _, right, _ = grid.bounds
    shift = 360.0 * round(((left + right) / 2 - lon) / 360.0)
    if shift:
        geom = shapely.transform(geom, lambda xy: xy + [shift, 0.0])
    return geom, shapely.Point(lon + shift, lat)


def _centroid_in(site: Site, crs) -> shapely.Point:
    tr = transformer(WGS84, as_crs(crs))
    x, y = tr.transform(*site.centroid_lonlat)
    return shapely.Point(x, y)


def site_bounds_in(site: Site, crs) -> tuple[float, float, float, float]:
    """The site grid's bounds transformed to ``crs`` (densified edges)."""
    return bounds_in(site.grid.bounds, site.crs, CRS.from_user_input(crs))


def sites_frame(sites: list[Site]) -> gpd.GeoDataFrame:
    """The sites as a WGS84 GeoDataFrame (``site_id`` plus attributes)."""
    import geopandas as gpd

    return gpd.GeoDataFrame({"site_id": [s.id for s in sites]}, geometry=[s.geometry for s in sites], crs=WGS84)
