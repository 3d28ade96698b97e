"""Where a TIFF's bytes lie, read from its directories: is the file whole?

A GeoTIFF cut short (a copy or download that stopped, a write that failed as GDAL closed it on a full disk) often
still opens: its first directory sits near the start. GDAL then reports what the missing end held only
indirectly: blocks fail to read later, and a tag whose value lay past the end is silently absent (a class map
"has no SITE_ID tag", a scene "has no CRS"). Neither GDAL nor rasterio says "this file is truncated", so this
module walks the TIFF directories itself (classic and BigTIFF, either byte order): every directory, every tag
value stored out of line, and every tile or strip, and reports how far the furthest of them reaches past the end
of the file. No pixel is read or decoded; the arrays of block offsets are read only when they lie inside the
file, so a hostile count cannot make it allocate more than the file holds.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# TIFF field types -> bytes per value (TIFF 6.0 and BigTIFF).
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8,
              18: 8}
_OFFSET_TYPES = {3: "u2", 4: "u4", 16: "u8"}
# Tags whose values are offsets / byte counts of image data: (offsets tag, byte counts tag).
_BLOCK_TAGS = ((324, 325), (273, 279))  # TileOffsets/TileByteCounts, StripOffsets/StripByteCounts
_MAX_DIRECTORIES = 100_000


def bytes_past_end(path: str | Path) -> int | None:
    """How many bytes the TIFF at ``path`` needs beyond its end: 0 for a whole file, more for one cut short
    (the furthest directory, tag value or image block that lies past the end, minus the file size). ``None``
    when ``path`` is not a TIFF (no ``II``/``MM`` header) or cannot be read."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            return max(0, _furthest_byte(f, size) - size)
    except (OSError, ValueError, struct.error):
        return None


def _furthest_byte(f, size: int) -> int:
    head = f.read(16)
    if head[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF")
    bo = "<" if head[:2] == b"II" else ">"
    version = struct.unpack(bo + "H", head[2:4])[0]
    if version == 42:
        big, first = False, struct.unpack(bo + "I", head[4:8])[0]
    elif version == 43:
        big, first = True, struct.unpack(bo + "Q", head[8:16])[0]
    else:
        raise ValueError("not a TIFF")
    count_fmt, entry_size, next_fmt, inline = ("Q", 20, "Q", 8) if big else ("H", 12, "I", 4)
    count_size = struct.calcsize(count_fmt)
    next_size = struct.calcsize(next_fmt)
    furthest = len(head) if size >= 16 else size
    seen: set[int] = set()
    ifd = first
    while ifd and ifd not in seen and len(seen) < _MAX_DIRECTORIES:
        seen.add(ifd)
        if ifd + count_size > size:
            return max(furthest, ifd + count_size)
        f.seek(ifd)
        n = struct.unpack(bo + count_fmt, f.read(count_size))[0]
        end_of_ifd = ifd + count_size + n * entry_size + next_size
        furthest = max(furthest, end_of_ifd)
        if end_of_ifd > size:
            return furthest
        raw = f.read(n * entry_size)
        entries: dict[int, tuple[int, int, int, bytes]] = {}
        for k in range(n):
            e = raw[k * entry_size:(k + 1) * entry_size]
            if big:
                tag, typ, cnt = struct.unpack(bo + "HHQ", e[:12])
                value = e[12:20]
            else:
                tag, typ, cnt = struct.unpack(bo + "HHI", e[:8])
                value = e[8:12]
            nbytes = _TYPE_SIZE.get(typ, 1) * cnt
            where = struct.unpack(bo + ("Q" if big else "I"), value)[0] if nbytes > inline else None
            if where is not None:
                furthest = max(furthest, where + nbytes)
            entries[tag] = (typ, cnt, where if where is not None else -1, value)
        furthest = max(furthest, _blocks_end(f, bo, entries, size, inline))
        f.seek(ifd + count_size + n * entry_size)
        ifd = struct.unpack(bo + next_fmt, f.read(next_size))[0]
    return furthest


def _blocks_end(f, bo: str, entries: dict, size: int, inline: int) -> int:
    """The furthest byte of one directory's tiles or strips (0 when its arrays lie past the end: the caller has
    already counted that)."""
    for offsets_tag, counts_tag in _BLOCK_TAGS:
        if offsets_tag in entries and counts_tag in entries:
            offsets = _array(f, bo, entries[offsets_tag], size, inline)
            counts = _array(f, bo, entries[counts_tag], size, inline)
            if offsets is None or counts is None or len(offsets) != len(counts) or not len(offsets):
                return 0
            present = counts > 0  # an empty (sparse) block has offset and count 0
            return int((offsets[present] + counts[present]).max()) if present.any() else 0
    return 0


def _array(f, bo: str, entry: tuple[int, int, int, bytes], size: int, inline: int) -> np.ndarray | None:
    typ, cnt, where, value = entry
    kind = _OFFSET_TYPES.get(typ)
    if kind is None:
        return None
    dtype = np.dtype(bo + kind)
    nbytes = dtype.itemsize * cnt
    if where < 0:
        return np.frombuffer(value[:nbytes], dtype=dtype).astype(np.uint64)
    if where + nbytes > size:
        return None
    f.seek(where)
    return np.frombuffer(f.read(nbytes), dtype=dtype).astype(np.uint64)
