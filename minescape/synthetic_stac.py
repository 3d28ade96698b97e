"""The synthetic region in the layout of a STAC catalogue: per-band COGs plus SCL, several scenes per year with
planted clouds and cloud shadows, and the same scenes described twice, Earth Search-style and Planetary
Computer-style.

Layout under ``root``::

    assets/<scene>/B02.tif ... B12.tif, SCL.tif    uint16 DN COGs (10 m: B02 B03 B04 B08; 20 m: the others),
                                                   SCL uint8 at 20 m (4 vegetation, 5 bare, 6 water,
                                                   3 shadow, 8/9 cloud medium/high probability)
    assets/<scene>-harmonized/...                  Earth Search's harmonized copy of a baseline >= 04.00 scene
                                                   (offset already subtracted, ``boa_offset_applied`` True)
    earth-search/items.json                        ItemCollection, keys blue ... scl, raster:bands scale/offset
    planetary-computer/items.json                  ItemCollection, keys B02 ... SCL, no offset applied
    stac.json                                      what was written (scenes, clouds, years)

Hrefs are relative to each items.json, so the folder works offline as a saved ItemCollection, and
:func:`minescape.imagery.loopback.serve_catalogue` serves it over HTTP. Everything is seeded.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from minescape.atomic import atomic_path, atomic_write_text
from minescape.sentinel2 import TEN_BANDS
from minescape.synthetic import CLOUD, TILE, VEG, WATER, Region, _baseline_for, _render, reflectance_to_dn

COLLECTION = "sentinel-2-l2a"
TWENTY_M = ("B05", "B06", "B07", "B8A", "B11", "B12")
ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
           "B08": "nir", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl"}
CLOUD_FRACTIONS = (0.12, 0.06, 0.16, 0.09, 0.14, 0.04, 0.18, 0.1, 0.08, 0.13)  # cycled over a year's scenes
CLOUDY_FRACTION = 0.6  # one scene per year above any sensible --max-cloud
SHADOW_SHIFT = (9, 12)  # rows, cols from cloud to its shadow (sun from the north-west)


@dataclass(frozen=True)
class StacRegion:
    """Paths written by :func:`write_stac_region`."""

    root: Path
    assets: Path
    earth_search: Path
    planetary_computer: Path
    manifest: Path


def _plant_clouds(rng: np.random.Generator, refl: np.ndarray, truth: np.ndarray, fraction: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Clouds (blended towards the cloud spectrum) and their shadows (darkened), and the 10 m SCL."""
    from minescape.synthetic import _smooth_noise

    shape = truth.shape
    scl = np.where(truth == VEG, 4, np.where(truth == WATER, 6, 5)).astype(np.uint8)
    if fraction <= 0:
        return refl, scl
    field_ = _smooth_noise(rng, shape, 10.0)
    thr = np.quantile(field_, 1 - fraction)
    alpha = np.clip((field_ - thr) / 0.4, 0, 1).astype(np.float32)
    cloud = alpha > 0.05
    shadow = np.roll(cloud, SHADOW_SHIFT, axis=(0, 1)) & ~cloud
    refl = refl.copy()
    refl[:, shadow] *= 0.4
    refl = (1 - alpha) * refl + alpha * np.asarray(CLOUD, dtype=np.float32)[:, None, None]
    scl[shadow] = 3
    scl[cloud] = 8
    scl[alpha > 0.5] = 9
    return np.clip(refl, 0.0001, 1.0).astype(np.float32), scl


def _scl_20m(scl: np.ndarray) -> np.ndarray:
    """SCL at 20 m: a 2 x 2 block holding cloud or shadow takes the highest such class; others the top-left."""
    h, w = scl.shape[0] // 2 * 2, scl.shape[1] // 2 * 2
    blocks = scl[:h, :w].reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    flagged = np.where(np.isin(blocks, (3, 8, 9)), blocks, 0).max(axis=2)
    return np.where(flagged > 0, flagged, blocks[..., 0]).astype(np.uint8)


def _write_cog(path: Path, data: np.ndarray, crs, transform, *, nodata: int = 0) -> Path:
    profile = {"driver": "COG", "dtype": data.dtype.name, "count": 1, "width": data.shape[1],
               "height": data.shape[0], "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "DEFLATE", "blocksize": 128, "overviews": "NONE"}
    with atomic_path(path) as tmp, rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data, 1)
    return path


def _write_assets(folder: Path, refl: np.ndarray, scl: np.ndarray, baseline: str, grid, *,
                  harmonized: bool = False) -> dict[str, str]:
    """Per-band COGs of one scene; returns band -> file name."""
    from affine import Affine

    t = grid.transform
    t20 = Affine(t.a * 2, 0, t.c, 0, t.e * 2, t.f)
    out = {}
    for i, band in enumerate(TEN_BANDS):
        data = refl[i]
        transform = t
        if band in TWENTY_M:
            h, w = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
            data = data[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            transform = t20
        dn = reflectance_to_dn(data, baseline)
        if harmonized:  # what Earth Search did to some scenes: the -1000 offset subtracted from the DN
            dn = np.where(dn > 0, dn.astype(np.int32) - 1000, 0).clip(0, None).astype(np.uint16)
        _write_cog(folder / f"{band}.tif", dn, grid.crs, transform)
        out[band] = f"{band}.tif"
    _write_cog(folder / "SCL.tif", _scl_20m(scl), grid.crs, t20)
    out["SCL"] = "SCL.tif"
    return out


def _item(iid: str, date: dt.date, cloud: float, baseline: str, bbox, files: dict[str, str], rel: str, *,
          style: str, harmonized: bool = False) -> dict:
    west, south, east, north = bbox
    props = {"datetime": f"{date.isoformat()}T02:25:51Z", "platform": "sentinel-2a", "constellation": "sentinel-2",
             "eo:cloud_cover": round(cloud, 2), "proj:epsg": 32750, "s2:processing_baseline": baseline,
             "s2:mgrs_tile": TILE}
    offset = -0.1 if baseline >= "04.00" else 0.0
    assets = {}
    for band, name in files.items():
        key = ES_KEYS[band] if style == "earth-search" else band
        asset = {"href": f"{rel}/{name}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                 "roles": ["data"]}
        if style == "earth-search":
            rb = {"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16"}
            if band != "SCL":
                rb.update(scale=0.0001, offset=offset)
            asset["raster:bands"] = [rb]
        else:
            asset["eo:bands"] = [{"name": band}] if band != "SCL" else []
        assets[key] = asset
    if style == "earth-search":
        props["earthsearch:boa_offset_applied"] = bool(harmonized)
    return {"type": "Feature", "stac_version": "1.0.0", "id": iid, "collection": COLLECTION,
            "bbox": [west, south, east, north],
            "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                             [west, north], [west, south]]]},
            "properties": props, "links": [], "assets": assets,
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]}


def write_stac_region(region: Region, out_dir: str | Path, *, scenes_per_year: int = 4,
                      years: tuple[int, ...] | None = None, seed: int | None = None) -> StacRegion:
    """Write ``region`` as a STAC layout (see the module docstring) under ``out_dir``.

    Args:
        region: from :func:`minescape.synthetic.make_region` (its truth, vegetation density, grid).
        scenes_per_year: scenes per year; the last one of each year is 60 % cloudy (removed by ``--max-cloud``),
            the others 4-18 % cloudy with shadows.
        years: years to render (default the DCM years and the pair years; the pair's second year shows
            ``truth_t2``).
        seed: default the region's seed.
    """
    root = Path(out_dir)
    cfg = region.config
    grid = region.grid
    years = tuple(years) if years is not None else tuple(sorted({*cfg.dcm_years, *cfg.pair_years}))
    seed = cfg.seed if seed is None else seed
    if region.veg_density is None:
        raise ValueError("region lacks veg_density; make it with minescape.synthetic.make_region")
    bbox = transform_bounds(grid.crs, CRS.from_epsg(4326), *grid.bounds, densify_pts=21)
    es, pc, scenes = [], [], []
    for year in years:
        truth = region.truth_t2 if year == cfg.pair_years[1] else region.truth
        baseline = _baseline_for(year)
        harmonized_done = False
        for k in range(scenes_per_year):
            rng = np.random.default_rng([seed, year, k])
            date = dt.date(year, 3, 1) + dt.timedelta(days=int(k * 200 / max(1, scenes_per_year - 1)))
            frac = CLOUDY_FRACTION if k == scenes_per_year - 1 and scenes_per_year > 1 \
                else CLOUD_FRACTIONS[k % len(CLOUD_FRACTIONS)]
            clear_refl, _ = _render(rng, truth, region.veg_density, gain=1 + 0.01 * ((k % 3) - 1), noise=cfg.noise,
                                    cloud_fraction=0.0)
            refl, scl = _plant_clouds(rng, clear_refl, truth, frac)
            cloud = float(np.isin(scl, (8, 9)).mean() * 100)
            es_id = f"S2A_{TILE}_{date:%Y%m%d}_0_L2A"
            pc_id = f"S2A_MSIL2A_{date:%Y%m%d}T022551_R046_T{TILE}_{date:%Y%m%d}T061234"
            files = _write_assets(root / "assets" / pc_id, refl, scl, baseline, grid)
            pc.append(_item(pc_id, date, cloud, baseline, bbox, files, f"../assets/{pc_id}", style="pc"))
            harmonize = baseline >= "04.00" and not harmonized_done
            if harmonize:  # Earth Search serves this scene with the offset already subtracted
                hfiles = _write_assets(root / "assets" / f"{pc_id}-harmonized", refl, scl, baseline, grid,
                                       harmonized=True)
                es.append(_item(es_id, date, cloud, baseline, bbox, hfiles, f"../assets/{pc_id}-harmonized",
                                style="earth-search", harmonized=True))
                harmonized_done = True
            else:
                es.append(_item(es_id, date, cloud, baseline, bbox, files, f"../assets/{pc_id}",
                                style="earth-search"))
            scenes.append({"year": year, "date": date.isoformat(), "earth_search_id": es_id,
                           "planetary_computer_id": pc_id, "cloud_cover": round(cloud, 2), "baseline": baseline,
                           "harmonized_on_earth_search": harmonize})
    es_path = atomic_write_text(root / "earth-search" / "items.json",
                                json.dumps({"type": "FeatureCollection", "features": es}, indent=1))
    pc_path = atomic_write_text(root / "planetary-computer" / "items.json",
                                json.dumps({"type": "FeatureCollection", "features": pc}, indent=1))
    manifest = atomic_write_text(root / "stac.json", json.dumps(
        {"collection": COLLECTION, "years": list(years), "scenes_per_year": scenes_per_year, "scenes": scenes,
         "shadow_shift_px": list(SHADOW_SHIFT)}, indent=1))
    return StacRegion(root, root / "assets", es_path, pc_path, manifest)


def scene_truth(region: Region, year: int, k: int, *, scenes_per_year: int = 4, seed: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scene ``k`` of ``year`` as :func:`write_stac_region` drew it: ``(clear reflectance, planted reflectance,
    10 m SCL)`` (tests compare composites against the clear one)."""
    cfg = region.config
    truth = region.truth_t2 if year == cfg.pair_years[1] else region.truth
    rng = np.random.default_rng([cfg.seed if seed is None else seed, year, k])
    clear_refl, _ = _render(rng, truth, region.veg_density, gain=1 + 0.01 * ((k % 3) - 1), noise=cfg.noise,
                            cloud_fraction=0.0)
    frac = CLOUDY_FRACTION if k == scenes_per_year - 1 and scenes_per_year > 1 \
        else CLOUD_FRACTIONS[k % len(CLOUD_FRACTIONS)]
    refl, scl = _plant_clouds(rng, clear_refl, truth, frac)
    return clear_refl, refl, scl
