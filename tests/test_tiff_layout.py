"""bytes_past_end: how far a TIFF's directories, tag values and blocks reach past its end, on real files."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from minescape.geo.tiff_layout import bytes_past_end

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

LAYOUTS = {
    "strips": dict(tiled=False),
    "tiles_deflate": dict(tiled=True, compress="deflate"),
    "pixel_interleaved_with_overviews": dict(tiled=True, interleave="pixel", compress="deflate"),
    "bigtiff": dict(tiled=True, BIGTIFF="YES"),
    "bigtiff_big_endian": dict(tiled=True, BIGTIFF="YES", ENDIANNESS="BIG"),
    "cog": dict(driver="COG", compress="deflate"),
}


def _write(path: Path, layout: str) -> Path:
    data = np.random.default_rng(0).integers(0, 5000, (3, 300, 400)).astype("uint16")
    profile = dict(driver="GTiff", width=400, height=300, count=3, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(500000, 4000000, 10, 10)) | LAYOUTS[layout]
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(SITE_ID="S1")
        if layout == "pixel_interleaved_with_overviews":
            dst.build_overviews([2, 4])
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_whole_files_need_nothing_more_and_cut_ones_say_how_much(tmp_path, layout):
    path = _write(tmp_path / "a.tif", layout)
    whole = path.read_bytes()
    assert bytes_past_end(path) == 0
    for cut in (len(whole) // 2, 200):
        short = tmp_path / f"cut{cut}.tif"
        short.write_bytes(whole[:cut])
        missing = bytes_past_end(short)
        assert missing is not None and missing > 0, (layout, cut)
        assert missing <= len(whole) - cut + 8  # never more than was cut (plus a directory read past the end)


def test_not_a_tiff_is_none(tmp_path):
    (tmp_path / "x.tif").write_bytes(b"<VRTDataset></VRTDataset>")
    assert bytes_past_end(tmp_path / "x.tif") is None
    assert bytes_past_end(tmp_path / "missing.tif") is None


def test_a_directory_loop_or_huge_count_ends(tmp_path):
    """A hostile file: the first directory points to itself, and a tile-offset count of 2**32 - 1."""
    import struct

    ifd = 8
    entries = [(256, 4, 1, 10), (257, 4, 1, 10), (324, 4, 0xFFFFFFFF, 1000), (325, 4, 0xFFFFFFFF, 2000)]
    raw = b"II" + struct.pack("<HI", 42, ifd) + struct.pack("<H", len(entries))
    raw += b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", ifd)
    (tmp_path / "h.tif").write_bytes(raw)
    assert bytes_past_end(tmp_path / "h.tif") > 2**32  # the arrays are past the end: counted, never read


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_every_shared_geotiff_is_whole_and_reaches_gdals_last_block(tmp_path):
    """Against GDAL's own view of the blocks (BLOCK_OFFSET/BLOCK_SIZE items) on the real files."""
    files = [p for p in glob.glob(str(SHARED / "**" / "*.tif"), recursive=True) if os.path.getsize(p) < 50e6]
    assert len(files) > 20
    for p in files[:60]:
        assert bytes_past_end(p) == 0, p
        with rasterio.open(p) as src:
            last = max(int(src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1) or 0)
                       + int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0)
                       for x in range(min(3, -(-src.width // src.block_shapes[0][1])))
                       for y in range(min(3, -(-src.height // src.block_shapes[0][0]))))
        size = os.path.getsize(p)
        cut = Path(p).read_bytes()[:last - 1]
        tmp = tmp_path / "cut.tif"
        tmp.write_bytes(cut)
        assert bytes_past_end(tmp) >= 1, p
        assert size >= last
