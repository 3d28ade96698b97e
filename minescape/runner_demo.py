"""Demo stage: the executor on per-tile work, resumed, with one deliberately bad unit.

Each unit reads one tile window of a synthetic Sentinel-2 scene, computes NDVI and writes it as a GeoTIFF
(:func:`ndvi_tile`). The run is made twice on the same run folder: the second run skips every finished
unit. One unit points at a corrupted GeoTIFF: it is reported with its reason and the others complete. Then
ten outputs are deleted and the same command runs on a 2-worker local Dask cluster: it redoes exactly those
ten (and retries the failed unit), with bytes identical to the in-process run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from minescape.geo.grid import iter_tiles
from minescape.geo.raster import write_raster
from minescape.indices import compute_index
from minescape.runner import Executor, Unit, fingerprint, run_units
from minescape.sentinel2 import open_scene, read_stack


def ndvi_tile(unit: Unit) -> dict[str, Any]:
    """Write NDVI (float32, NaN nodata, the scene's CRS) of one tile window of a scene.

    ``unit.args``: ``scene`` (path), ``window`` ``[col, row, width, height]`` in scene pixels, ``out`` (path).
    Returns the output path and the tile's mean NDVI.
    """
    args = unit.args
    scene = open_scene(args["scene"])
    col, row, width, height = args["window"]
    stack = read_stack(scene, bands=["B04", "B08"], window=Window(col, row, width, height))
    ndvi = compute_index(stack, "NDVI")
    out = write_raster(ndvi, args["out"])
    values = ndvi.data[np.isfinite(ndvi.data)]
    return {"outputs": [str(out)], "mean_ndvi": round(float(values.mean()), 6) if values.size else None}


def tile_units(scene_path: str | Path, out_dir: str | Path, *, size: int = 128) -> list[Unit]:
    """One :func:`ndvi_tile` unit per ``size`` x ``size`` pixel tile of a scene (fingerprint: scene + size)."""
    scene_path = Path(scene_path)
    grid = open_scene(scene_path).grid
    fp = fingerprint([scene_path], {"index": "NDVI", "size": size})
    units = []
    for tile in iter_tiles(grid.width, grid.height, size=size):
        w = tile.core
        uid = f"tile_{tile.index[0]:02d}_{tile.index[1]:02d}"
        units.append(Unit(uid, {"scene": str(scene_path), "window": [int(w.col_off), int(w.row_off), int(w.width),
                                int(w.height)], "out": str(Path(out_dir) / f"{uid}.tif")}, fp))
    return units


def run(ctx) -> list[str]:
    """Run the tile job twice (resume) with one corrupted input; returns what it shows."""
    out = ctx.stage_dir("runner")
    run_dir = out / "run"
    bad_scene = out / "corrupted_scene.tif"
    bad_scene.write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # a TIFF header followed by garbage
    units = tile_units(ctx.region.t1, out / "ndvi_tiles")
    units.append(Unit("tile_bad", {"scene": str(bad_scene), "window": [0, 0, 64, 64],
                                   "out": str(out / "ndvi_tiles" / "tile_bad.tif")}, ""))
    executor = Executor(run_dir=run_dir)
    first = run_units(units, ndvi_tile, description="NDVI tiles (first run)", executor=executor)
    second = run_units(units, ndvi_tile, description="NDVI tiles (same command again)", executor=executor)
    # lose ten outputs, then the same command on a 2-worker local Dask cluster redoes exactly those ten
    lost = [Path(u.args["out"]) for u in units[:-1][::5][:10]]
    before = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in lost}
    for p in lost:
        p.unlink()
    third = run_units(units, ndvi_tile, description="NDVI tiles (2 Dask workers)",
                      executor=Executor(mode="local", workers=2, run_dir=run_dir))
    after = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in lost}
    ctx.outputs["runner_run_dir"] = run_dir
    reason = first.failed.get("tile_bad", "")
    return [
        f"{out / 'ndvi_tiles'}: NDVI of {len(first.results)} tiles; first run {first.line('tiles')}",
        f"same command again: {len(second.skipped)} tiles skipped as already done, {second.ran} re-run "
        f"(only the failed one), {second.seconds:.2f} s vs {first.seconds:.2f} s",
        f"reported, not fatal: tile_bad: {reason}",
        f"{len(lost)} outputs deleted, same command with --workers 2 (local Dask cluster): {third.ran - 1} tiles "
        f"redone + the failed one, {len(third.skipped)} skipped, in {third.seconds:.1f} s; the redone files are "
        f"{'byte-identical' if after == before else 'DIFFERENT'} to the in-process ones",
        f"inspect with: minescape runs status {run_dir}",
    ]
