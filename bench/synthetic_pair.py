"""The benches' large synthetic Sentinel-2 pair, written strip by strip (memory: one strip, never the scene).

uint16 DN stacks in UTM 50S at 10 m: smooth vegetation fields (one value per 64 px, interpolated), date 2 with
cleared patches and a nodata triangle in its top-left corner (a swath edge). Deterministic: the same
arguments give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: reflectance = base + slope * (1 - vegetation) for visible bands, base + slope * vegetation for NIR
_RECIPES = {"B01": (0.09, 0.03, False), "B02": (0.05, 0.06, False), "B03": (0.07, 0.08, False),
            "B04": (0.08, 0.14, False), "B05": (0.11, 0.10, False), "B06": (0.16, 0.12, True),
            "B07": (0.18, 0.20, True), "B08": (0.20, 0.28, True), "B8A": (0.21, 0.28, True),
            "B09": (0.06, 0.05, True), "B10": (0.002, 0.002, False), "B11": (0.18, 0.10, False),
            "B12": (0.12, 0.12, False)}


def write_pair(folder: Path, size: int, *, rows: int | None = None, bands: Sequence[str] = ("B04", "B08"),
               strip: int = 512, stem: str | None = None) -> tuple[Path, Path]:
    """``(t1, t2)`` GeoTIFFs of ``rows`` x ``size`` px (default square) under ``folder``; reused if present.

    Bands are any of the 13 Sentinel-2 bands (names in the band descriptions; 13-band stacks hold every
    band at 10 m). ``strip`` rows are generated at a
    time; it also seeds each strip's noise, so keep it fixed to keep the bytes.
    """
    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window
    from scipy.ndimage import map_coordinates

    from minescape.geo.grid import Grid
    from minescape.geo.raster import open_writer

    rows = rows or size
    stem = stem or f"{rows}x{size}"
    t1, t2 = folder / f"t1_{stem}.tif", folder / f"t2_{stem}.tif"
    if t1.exists() and t2.exists():
        return t1, t2
    folder.mkdir(parents=True, exist_ok=True)
    bands = tuple(bands)
    grid = Grid(CRS.from_epsg(32750), Affine(10, 0, 600000, 0, -10, 7500000), size, rows)
    rng = np.random.default_rng(0)
    coarse = 64
    n = size // coarse + 3
    veg_field = rng.standard_normal((n, n)).astype(np.float32)
    clear_field = rng.standard_normal((n, n)).astype(np.float32)
    kw = dict(count=len(bands), dtype="uint16", nodata=0, band_names=bands, compress="none")
    with open_writer(t1, grid, **kw) as d1, open_writer(t2, grid, **kw) as d2:
        for r0 in range(0, rows, strip):
            h = min(strip, rows - r0)
            yy, xx = np.mgrid[r0:r0 + h, 0:size].astype(np.float32) / coarse
            veg = 1 / (1 + np.exp(-2 * map_coordinates(veg_field, [yy, xx], order=1)))
            cleared = map_coordinates(clear_field, [yy, xx], order=1) > 1.6
            del yy, xx
            srng = np.random.default_rng(1000 + r0)
            for k, (dst, v) in enumerate(((d1, veg), (d2, np.where(cleared, 0.02, veg)))):
                layers = []
                for b in bands:
                    base, slope, nir = _RECIPES[b]
                    layers.append(base + slope * (v if nir else 1 - v) + srng.normal(0, 0.01, v.shape))
                dn = np.clip(np.stack(layers) * 10000, 1, 65535).astype(np.uint16)
                if k == 1:  # swath edge: a nodata triangle in T2's top-left corner
                    rr = np.arange(r0, r0 + h)[:, None]
                    cc = np.arange(size)[None, :]
                    dn[:, (rr + cc) < size // 10] = 0
                dst.write(dn, window=Window(0, r0, size, h))
    return t1, t2
