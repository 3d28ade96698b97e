"""Change-pair composites from a catalogue (:func:`minescape.imagery.pair.composite_pair`): what is decided per
scene (the DN offset its pixels carry) is decided once over the whole area, so the tile size never changes the
composite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer

from minescape.imagery.pair import composite_pair
from minescape.imagery.sources import StacSource
from minescape.imagery.stac_search import StacQuery
from minescape.imagery.window_reader import ReadOptions

X0, Y0 = 500000.0, 5600000.0  # UTM 33N, ~50.5 N 15 E
W, H = 40, 30  # 10 m pixels; 20 m bands are half
KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge1", "B06": "rededge2",
        "B07": "rededge3", "B8A": "nir08", "B11": "swir16", "B12": "swir22", "SCL": "scl"}


def _write(path: Path, data: np.ndarray, res: float) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs="EPSG:32633", transform=Affine(res, 0, X0, 0, -res, Y0), nodata=0) as dst:
        dst.write(data, 1)
    return str(path)


def _already_offset_scene(folder: Path) -> Path:
    """One Earth Search item flagged ``boa_offset_applied: False`` whose DN were already offset-subtracted
    (DN = reflectance x 1e4): bright ground (1500) in the west half, vegetation (300) in the east half, all clear.
    Over the whole area half the blue DN are below 1000 (cannot carry the offset); a tile in the west sees only
    1500 and, deciding alone, would subtract 1000."""
    folder.mkdir()
    assets = {}
    for band, key in KEYS.items():
        res = 20 if band in ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL") else 10
        h, w = (H, W) if res == 10 else (H // 2, W // 2)
        if band == "SCL":
            data = np.full((h, w), 4, dtype=np.uint8)  # vegetation: clear
        else:
            data = np.full((h, w), 300, dtype=np.uint16)
            data[:, : w // 2] = 1500
        extra = {} if band == "SCL" else {"raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": -0.1}]}
        assets[key] = {"href": _write(folder / f"{band}.tif", data, res), "type": "image/tiff", **extra}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2A_33UWR_20230601_0_L2A",
            "properties": {"datetime": "2023-06-01T10:00:00Z", "proj:epsg": 32633, "eo:cloud_cover": 1.0,
                           "s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": False},
            "geometry": {"type": "Polygon", "coordinates": [[[14.9, 50.4], [15.1, 50.4], [15.1, 50.6],
                                                             [14.9, 50.6], [14.9, 50.4]]]},
            "bbox": [14.9, 50.4, 15.1, 50.6], "assets": assets, "links": []}
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def _bbox() -> tuple[float, float, float, float]:
    """An area inside the scene, in degrees (its UTM grid is about 32 x 22 pixels)."""
    t = Transformer.from_crs(32633, 4326, always_xy=True)
    (w, s), (e, n) = t.transform(X0 + 50, Y0 - 250), t.transform(X0 + 350, Y0 - 50)
    return w, s, e, n


def test_offset_decided_once_per_scene_whatever_the_tile(tmp_path):
    items = _already_offset_scene(tmp_path / "scene")
    source = StacSource(StacQuery(str(items)), read=ReadOptions(threads=1))
    blue, infos = {}, {}
    for tile in (512, 8):  # the whole area in one tile; tiles of 8 px, some all bright
        pc = composite_pair(source, _bbox(), 2023, 2023, tmp_path / f"out{tile}", tile=tile)
        with rasterio.open(pc.t1) as src:
            blue[tile] = src.read(1)
        infos[tile] = pc.info["t1"]
    row = blue[512][5]
    assert (row == 1500).sum() > 5 and (row == 300).sum() > 5  # both halves really in the area
    # the pixels decided, once for the scene over the area: read as already offset everywhere
    assert set(np.unique(blue[512])) == {300, 1500}
    np.testing.assert_array_equal(blue[8], blue[512])  # the tile size does not change the composite
    for info in infos.values():  # the decision is reported once, through the notes
        assert len(info["notes"]) == 1 and "cannot carry the baseline-04.00 offset" in info["notes"][0]


def test_change_detect_prints_the_decision(tmp_path, monkeypatch):
    """``change detect --stac`` says what reading decided for a date (the note of the composite's info)."""
    from typer.testing import CliRunner

    from minescape.cli.app import app

    monkeypatch.setenv("MINESCAPE_PROGRESS", "0")
    items = _already_offset_scene(tmp_path / "scene")
    res = CliRunner().invoke(app, ["change", "detect", str(tmp_path / "out"), "--stac", str(items), "--bbox",
                                   ",".join(f"{v:.7f}" for v in _bbox()), "--t1", "2023", "--t2", "2023"])
    notes = [line for line in res.output.splitlines() if line.strip().startswith("note:")]
    assert len(notes) == 2 and all("cannot carry the baseline-04.00 offset" in n for n in notes), res.output
