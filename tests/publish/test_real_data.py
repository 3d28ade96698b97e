"""A release on real mine outlines (multipolygons, holes, a site at 179.96° E) passes inspect."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from pyproj import Geod

from minescape.publish.inspect import inspect_release
from minescape.publish.release import publish
from minescape.publish.sample_maps import make_site_maps
from tests.conftest import shared_path


def _holes(g) -> int:
    parts = getattr(g, "geoms", [g])
    return sum(len(p.interiors) for p in parts)


def _area_km2(gdf):
    return gdf.to_crs(6933).area / 1e6


@pytest.fixture(scope="module")
def real_sites() -> gpd.GeoDataFrame:
    """A small but tricky subset of the real polygons (kept to a few square km for speed)."""
    folder = shared_path("mining-polygons")
    ann = gpd.read_file(folder / "mining_tiles_test_annotations.gpkg", layer="polygons_annotated")
    maus = gpd.read_file(folder / "mining_tiles_with_masks.gpkg", layer="maus_polygons")
    demo = gpd.read_file(folder / "mining_polygons_combined_demo.gpkg")
    picks = []
    # multipolygons with holes (smallest first)
    holed = ann[ann.geometry.apply(_holes) > 0]
    holed = holed.assign(km2=_area_km2(holed)).sort_values("km2")
    picks.append(holed.head(2).assign(site=lambda d: "ann_" + d["tile_id"].astype(str)))
    # a layer with null geometries (skipped) and multipart outlines
    maus = maus[maus.geometry.notna() & (maus.geom_type == "MultiPolygon")]
    maus = maus.assign(km2=_area_km2(maus)).sort_values("km2")
    picks.append(maus.head(1).assign(site=lambda d: "maus_" + d["tile_id"].astype(str)))
    # the site nearest the antimeridian (Fiji, 179.96 E) and two small tropical mines
    demo = demo.assign(km2=_area_km2(demo))
    east = demo.loc[[demo.geometry.bounds["maxx"].idxmax()]]
    small = demo.sort_values("km2").iloc[40:42]
    picks.append(pd.concat([east, small]).assign(site=lambda d: "demo_" + d["id"].astype(str)))
    sites = pd.concat([p[["site", "geometry"]] for p in picks], ignore_index=True)
    return gpd.GeoDataFrame(sites, geometry="geometry", crs=4326)


def test_real_polygons_release_passes_inspect(real_sites, tmp_path):
    assert (real_sites.geom_type == "MultiPolygon").any()
    assert real_sites.geometry.apply(_holes).sum() > 0
    assert real_sites.total_bounds[2] > 179.9
    maps = make_site_maps(real_sites, tmp_path / "maps", seed=3, year=2022, id_column="site")
    assert len(maps) == len(real_sites)
    out = tmp_path / "release"
    summary = publish(tmp_path / "maps", out, max_features=300, progress=False)
    assert not summary.skipped
    assert summary.features > 100 and len(summary.zips) >= 3
    report = inspect_release(out)
    assert report.ok, [str(v) for v in report.violations[:10]]
    # published area of each site = the area of its outline rasterised at 10 m (within a few %)
    geod = Geod(ellps="WGS84")
    outline = sum(abs(geod.geometry_area_perimeter(g)[0]) for g in real_sites.geometry)
    published = summary.manifest["summary"]["year"]["2022"]["area_m2"]
    assert published == pytest.approx(outline, rel=0.05)
    # holes of the outlines stay holes: no published polygon covers a point inside a hole
    holed = real_sites[real_sites.geometry.apply(_holes) > 0].geometry.iloc[0]
    part = next(p for p in getattr(holed, "geoms", [holed]) if p.interiors)
    hole = shapely.Polygon(part.interiors[0]).buffer(-1e-4)
    if not hole.is_empty:
        import zipfile

        for z in sorted(out.glob("*.zip")):
            with zipfile.ZipFile(z) as zf:
                for name in zf.namelist():
                    zf.extract(name, tmp_path / "x")
                    df = pyogrio.read_dataframe(tmp_path / "x" / name, layer=name[:-5])
                    assert not np.any(shapely.contains(df.geometry.values, hole.representative_point()))
