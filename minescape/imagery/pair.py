"""Change pairs from a catalogue: both annual composites of an area on one grid, written as scene stacks that
the change pipeline reads like any pair (:func:`minescape.change.difference.detect_files`).

The area is a WGS84 bbox (``west > east`` crosses the antimeridian, as STAC writes it); its grid is the WGS84 UTM
zone of the bbox centre at 10 m. The composites are built tile by tile (memory follows ``tile``, not the area),
each tile from every scene of the year, and written as uint16 DN stacks (reflectance x 10000, 0 = no clear
observation) with band descriptions, a ``DATE`` tag (``YEAR-07-01``) and the scenes used; beside each,
``clear_count_<YEAR>.tif``. Median and medoid are per pixel, so tiling does not change them; ``clearest`` ranks the
scenes per tile. What is decided per scene (the DN offset its pixels carry) is decided once over the whole area, so
tiling does not change it either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling

from minescape.errors import InputError
from minescape.geo.grid import Grid, bounds_in, iter_tiles, utm_crs
from minescape.geo.raster import open_writer
from minescape.geo.raster_style import write_true_colour_style
from minescape.imagery.composite import Method, observe_all, reduce_observations
from minescape.imagery.sources import ImagerySource
from minescape.sentinel2 import TEN_BANDS


@dataclass(frozen=True)
class PairComposites:
    """The two composite stacks written by :func:`composite_pair` and what went into them."""

    t1: Path
    t2: Path
    grid: Grid
    info: dict


def grid_for_bbox(bbox_lonlat: tuple[float, float, float, float], *, res: float = 10.0) -> Grid:
    """The ``res``-metre grid in the UTM zone of the bbox centre covering ``bbox_lonlat`` (west, south, east,
    north in degrees). InputError for an empty or out-of-range bbox.

    A bbox with ``west > east`` crosses the antimeridian (as STAC and RFC 7946 write it: 179.8,-17,-179.9,-16.8
    is 0.3° wide across 180°): its centre is taken on continuous longitudes and wrapped to [-180, 180), and the
    grid covers the whole box in that zone (``rasterio.warp.transform_bounds`` with densified edges reads a
    geographic ``west > east`` box the same way)."""
    w, s, e, n = bbox_lonlat
    width = e - w if w <= e else e + 360.0 - w  # degrees of longitude, across 180° when west > east
    if not (-180 <= w <= 180 and -180 <= e <= 180 and 0 < width and -90 <= s < n <= 90):
        raise InputError(f"invalid bbox {bbox_lonlat}; expected west,south,east,north in degrees with south < "
                         "north, longitudes in [-180, 180] and west != east (west > east crosses 180°)")
    crs = utm_crs(w + width / 2, (s + n) / 2)  # utm_crs wraps the longitude to [-180, 180)
    return Grid.from_bounds(bounds_in((w, s, e, n), CRS.from_epsg(4326), crs), res, crs)


def composite_year(source: ImagerySource, grid: Grid, year: int, path: Path, *, bands: Sequence[str],
                   method: Method, tile: int) -> dict:
    """Write the ``year`` composite of ``grid`` tile by tile to ``path`` and its clear count beside it."""
    scenes = source.scenes(grid, year)
    if not scenes:
        raise InputError(f"no scene of {year} found over the area ({source.describe()})")
    used: set[str] = set()
    notes: dict[str, None] = {}  # what the readers decided, each note once (every tile repeats a scene's note)
    clear_px = 0
    tiles = list(iter_tiles(grid.width, grid.height, size=tile, overlap=0))
    tags = {"DATE": f"{year}-07-01", "COMPOSITE": method, "YEAR": str(year)}
    count_path = path.with_name(f"clear_count_{year}.tif")
    with open_writer(path, grid, count=len(bands), dtype="uint16", nodata=0, band_names=bands, tags=tags,
                     overviews=Resampling.average) as dst, \
            open_writer(count_path, grid, count=1, dtype="uint16", nodata=None, band_names=["CLEAR_COUNT"],
                        tags={"YEAR": str(year), "UNITS": "clear observations per pixel"},
                        overviews=Resampling.nearest) as cdst:
        for t in tiles:
            tgrid = grid.window_grid(t.core)
            obs = observe_all(source, scenes, tgrid, bands, threads=source.scene_threads, area=grid)
            comp = reduce_observations(obs, tgrid, bands, method=method)
            refl = comp.raster.data
            dn = np.where(np.isfinite(refl), np.clip(np.round(refl * 10000.0), 1, 65535), 0).astype(np.uint16)
            dst.write(dn, window=t.core)
            cdst.write(comp.clear_count.data, window=t.core)
            used.update(comp.scenes)
            notes.update(dict.fromkeys(n for o in obs for n in o.notes))
            clear_px += int((comp.clear_count.data[0] > 0).sum())
        dst.update_tags(N_SCENES=str(len(used)), SCENES=",".join(sorted(used)))
    write_true_colour_style(path, bands)  # QGIS opens the composite in true colour (B04, B03, B02)
    return {"year": year, "path": str(path), "clear_count": str(count_path), "scenes": sorted(used),
            "clear_fraction": clear_px / (grid.width * grid.height), "notes": list(notes)}


def composite_pair(source: ImagerySource, bbox_lonlat: tuple[float, float, float, float], t1: int, t2: int,
                   out_dir: str | Path, *, method: Method = "median", bands: Sequence[str] = TEN_BANDS,
                   min_clear: float = 0.0, tile: int = 512, res: float = 10.0) -> PairComposites:
    """Both annual composites of ``bbox_lonlat`` on one grid under ``out_dir/composites``.

    Raises:
        InputError: no scene in a year, or a clear fraction below ``min_clear`` (naming the year).
    """
    grid = grid_for_bbox(bbox_lonlat, res=res)
    folder = Path(out_dir) / "composites"
    infos = []
    for name, year in (("T1", t1), ("T2", t2)):
        info = composite_year(source, grid, year, folder / f"{name}_{year}.tif", bands=bands, method=method,
                              tile=tile)
        if info["clear_fraction"] < min_clear:
            raise InputError(f"{year}: clear fraction {info['clear_fraction']:.2f} < {min_clear:.2f} over the area")
        infos.append(info)
    return PairComposites(Path(infos[0]["path"]), Path(infos[1]["path"]), grid,
                          {"t1": infos[0], "t2": infos[1], "crs": grid.crs.to_string(), "method": method,
                           "source": source.describe()})
