"""Rasters as map overlays: a small RGBA PNG warped to Web Mercator and the lon/lat bounds to place it on.

Leaflet stretches an image overlay linearly between two lon/lat corners in Web Mercator (EPSG:3857), so the
raster is warped onto an EPSG:3857 grid first: placed on those corners the pixels then land where they belong.
Large rasters are read decimated (GDAL picks overviews when present) so that the longer side of the PNG is at
most ``max_px`` pixels, and memory follows the PNG, not the raster.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from minescape.geo.raster_style import DISPLAY_PERCENTILE, DIVERGING_CMAP, SEQUENTIAL_CMAP
from minescape.legend import Legend

Style = Literal["classes", "change", "ramp", "diverging", "magnitude"]
STYLES: tuple[str, ...] = get_args(Style)

CHANGE_RGBA = (230, 20, 60, 230)  # the change class of a 0/1/255 mask; "no change" stays transparent
RAMP_LEVELS = 64  # colours of a continuous ramp


@dataclass(frozen=True)
class Overlay:
    """One raster rendered for the map.

    Attributes:
        name: layer name shown in the layer switcher.
        png: RGBA PNG bytes (EPSG:3857 grid, north up).
        bounds: ``(south, west, north, east)`` in degrees (EPSG:4326), the PNG's corners.
        style: how values became colours (``classes``, ``change``, ``ramp``, ``diverging``).
        legend: ``[(label, "#rrggbb"), ...]`` for the map legend.
        source: the raster file read.
    """

    name: str
    png: bytes
    bounds: tuple[float, float, float, float]
    style: str
    legend: tuple[tuple[str, str], ...]
    source: Path


def raster_legend(src) -> Legend | None:
    """The legend stored in a minescape GeoTIFF's ``LEGEND`` tag (None when absent or unreadable)."""
    text = src.tags().get("LEGEND")
    if not text:
        return None
    try:
        return Legend.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def _ramp(values: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    scaled = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return (colormaps[cmap](scaled) * 255).astype(np.uint8)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb[:3])


def render_overlay(path: str | Path, *, name: str, style: Style, max_px: int = 1024) -> Overlay:
    """Read ``path`` decimated, warp it to EPSG:3857 and colour it.

    Args:
        path: a single-band GeoTIFF with a CRS.
        name: layer name.
        style: ``classes`` (the raster's ``LEGEND`` tag colours, nodata transparent), ``change`` (a 0/1/255
            mask: 1 in red, the rest transparent), ``ramp`` (a probability in [0, 1], viridis) or
            ``diverging`` (a difference, symmetric around 0 at its 98th percentile of absolute values,
            RdBu) or ``magnitude`` (a value >= 0 such as the CVA magnitude, 0 to its 98th percentile, viridis):
            the colours and percentile of the QGIS styles written beside the rasters
            (:mod:`minescape.geo.raster_style`).
        max_px: the PNG's longer side at most (pixels).

    Raises:
        InputError: unreadable raster, no CRS, or a ``classes`` raster without a legend.
    """
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject, transform_bounds

    from minescape.errors import InputError
    from minescape.geo.raster import open_raster

    if style not in STYLES:
        raise InputError(f"unknown overlay style {style!r}; valid: {', '.join(STYLES)}")
    path = Path(path)
    categorical = style in ("classes", "change")
    with open_raster(path) as src:
        if src.crs is None:
            raise InputError("raster has no CRS; cannot place it on the map", path=path)
        legend = raster_legend(src) if style == "classes" else None
        if style == "classes" and legend is None:
            raise InputError("class raster has no LEGEND tag; cannot colour it", path=path)
        scale = max(1.0, max(src.width, src.height) / max_px)
        h, w = max(1, round(src.height / scale)), max(1, round(src.width / scale))
        data = src.read(
            1,
            out_shape=(h, w),
            resampling=Resampling.nearest if categorical else Resampling.average,
            masked=True,
        )
        transform = src.transform @ src.transform.scale(src.width / w, src.height / h)
        crs, nodata = src.crs, src.nodata
    dst_crs = rasterio.crs.CRS.from_epsg(3857)
    left, bottom, right, top = rasterio.transform.array_bounds(h, w, transform)
    dst_t, dw, dh = calculate_default_transform(crs, dst_crs, w, h, left, bottom, right, top)
    k = max(1.0, max(dw, dh) / max_px)
    dw, dh = max(1, round(dw / k)), max(1, round(dh / k))
    dst_t = dst_t @ dst_t.scale(k, k)
    # Every style becomes palette indexes (0 = transparent): a paletted PNG stays small even for a ramp.
    def warp(src_arr: np.ndarray, fill: float, resampling: Resampling) -> np.ndarray:
        """``src_arr`` (nodata ``fill``) onto the overlay grid, ``fill`` where nothing lands."""
        out = np.full((dh, dw), fill, src_arr.dtype)
        reproject(src_arr, out, src_transform=transform, src_crs=crs, dst_transform=dst_t, dst_crs=dst_crs,
                  src_nodata=fill, dst_nodata=fill, resampling=resampling)
        return out

    palette: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]
    if categorical:
        fill = 255 if nodata is None else int(nodata)
        src_arr = np.where(np.ma.getmaskarray(data), fill, data.filled(fill)).astype(np.int32)
        out = warp(src_arr, fill, Resampling.nearest)
        index = np.zeros((dh, dw), np.uint8)
        if style == "change":
            index[out == 1] = 1
            palette.append(CHANGE_RGBA)
            keys = (("change", _hex(CHANGE_RGBA)),)
        else:
            assert legend is not None
            present = set(np.unique(out).tolist())
            keys = tuple((c.name, _hex(c.color)) for c in legend if c.code in present)
            for c in legend:
                if c.code in present:
                    palette.append((*c.color, 235))
                    index[out == c.code] = len(palette) - 1
    else:
        src_arr = data.astype(np.float32).filled(np.nan)
        out = warp(src_arr, np.nan, Resampling.bilinear)
        valid = np.isfinite(out)
        if style == "ramp":
            lo, hi, cmap = 0.0, 1.0, SEQUENTIAL_CMAP
        elif style == "magnitude":
            m = float(np.nanpercentile(out[valid], DISPLAY_PERCENTILE)) if valid.any() else 1.0
            lo, hi, cmap = 0.0, (m or 1.0), SEQUENTIAL_CMAP
        else:
            m = float(np.nanpercentile(np.abs(out[valid]), DISPLAY_PERCENTILE)) if valid.any() else 1.0
            lo, hi, cmap = -(m or 1.0), (m or 1.0), DIVERGING_CMAP
        levels = np.linspace(lo, hi, RAMP_LEVELS)
        palette += [(*rgb[:3], 200) for rgb in _ramp(levels, lo, hi, cmap)]
        bins = np.clip(
            np.round((np.nan_to_num(out) - lo) / (hi - lo) * (RAMP_LEVELS - 1)), 0, RAMP_LEVELS - 1
        )
        index = np.where(valid, bins.astype(np.uint8) + 1, 0).astype(np.uint8)
        fmt = {"ramp": "{:.1f}", "magnitude": "{:.2f}"}.get(style, "{:+.2f}")
        keys = tuple(
            (fmt.format(v), _hex(_ramp(np.array([v]), lo, hi, cmap)[0])) for v in (lo, (lo + hi) / 2, hi)
        )
    img = Image.fromarray(index, "P")
    img.putpalette([v for rgba in palette for v in rgba[:3]])
    l3, b3, r3, t3 = rasterio.transform.array_bounds(dh, dw, dst_t)
    west, south, east, north = transform_bounds(dst_crs, "EPSG:4326", l3, b3, r3, t3)
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=bytes(rgba[3] for rgba in palette))
    return Overlay(
        name=name,
        png=buf.getvalue(),
        bounds=(south, west, north, east),
        style=style,
        legend=keys,
        source=path,
    )
