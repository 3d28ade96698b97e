"""Binary change labels in any encoding -> the CHANGE legend (0 no change, 1 change, 255 nodata).

Datasets disagree on encodings: CHANGE-MINING2025 uses 0/1, OSCD's ``*-cm.tif`` uses 1/2 (although its
README says 0/1), its ``cm.png`` 0/255. :func:`decode_binary` converts a declared or detected encoding.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from minescape.errors import ConfigError, InputError
from minescape.legend import CHANGE

Encoding = Literal["auto", "0-1", "1-2", "0-255"]
ENCODINGS: dict[str, tuple[int, int]] = {"0-1": (0, 1), "1-2": (1, 2), "0-255": (0, 255)}


def detect_encoding(values: set[int], *, source: str = "mask") -> str:
    """Guess the encoding from the set of values present (nodata 255 allowed with 0-1 and 1-2)."""
    values = set(int(v) for v in values)
    if values <= {0, 1} or values <= {0, 1, CHANGE.nodata} and 1 in values or values == {0}:
        return "0-1"
    if values <= {1, 2} or values <= {1, 2, CHANGE.nodata}:
        return "1-2"
    if values <= {0, 255}:
        return "0-255"
    raise InputError(f"cannot tell the label encoding from values {sorted(values)[:10]}; "
                     f"declare one of {', '.join(ENCODINGS)}", path=source)


def decode_binary(array: np.ndarray, *, encoding: Encoding = "auto", nodata: int | None = None,
                  source: str = "mask") -> np.ndarray:
    """Return a uint8 mask in the CHANGE legend (0, 1, 255).

    Args:
        array: integer label array, any shape.
        encoding: ``auto`` (detect), ``0-1``, ``1-2`` or ``0-255`` (no-change value, change value).
        nodata: a value that marks missing labels (mapped to 255).
        source: file name for error messages.

    Raises:
        InputError: values that are neither no-change, change nor nodata.
    """
    arr = np.asarray(array)
    present = set(np.unique(arr).tolist())
    if nodata is not None:
        present.discard(nodata)
    if encoding == "auto":
        encoding = detect_encoding(present, source=source)
    if encoding not in ENCODINGS:
        raise ConfigError(f"invalid encoding {encoding!r}; choose one of: auto, {', '.join(ENCODINGS)}")
    no, yes = ENCODINGS[encoding]
    allowed = {no, yes} | ({CHANGE.nodata} if encoding != "0-255" else set())
    bad = sorted(present - allowed)
    if bad:
        raise InputError(f"unexpected label values {bad[:10]} for encoding {encoding} "
                         f"(expected {no} = no change, {yes} = change)", path=source)
    out = np.full(arr.shape, CHANGE.nodata, dtype=np.uint8)
    out[arr == no] = 0
    out[arr == yes] = 1
    if nodata is not None:
        out[arr == nodata] = CHANGE.nodata
    return out


def _mask_values(path) -> tuple[set[int], int | None]:
    """The values in a single-band integer mask file (read block by block; memory: one block) and its nodata
    value (None when the file declares none or a non-integer one). InputError naming the file if not integer."""
    from minescape.geo.raster import open_raster

    with open_raster(path) as src:
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise InputError(f"change mask must hold integers (0/1, 1/2 or 0/255), not {src.dtypes[0]}",
                             path=path)
        nodata = int(src.nodata) if src.nodata is not None and float(src.nodata).is_integer() else None
        values: set[int] = set()
        for _, win in src.block_windows(1):
            values |= set(np.unique(src.read(1, window=win)).tolist())
    return values, nodata


def scan_mask_file(path, *, encoding: Encoding = "auto") -> tuple[str, int]:
    """Check a change-mask file's values block by block (memory: one block) and resolve its encoding.

    Args:
        path: any single-band integer raster (0/1, 1/2 or 0/255 change masks; nodata from the file).
        encoding: declared encoding, or ``auto`` to detect it from the values present.

    Returns:
        ``(encoding, nodata)``: the resolved encoding, and the file's nodata value or, when it has none,
        an unused value that callers may use to mark pixels outside the file.

    Raises:
        InputError: non-integer data, or values that are not no-change/change/nodata (names the file).
    """
    values, nodata = _mask_values(path)
    present = values - ({nodata} if nodata is not None else set())
    if encoding == "auto":
        encoding = detect_encoding(present, source=str(path))
    decode_binary(np.array(sorted(values)), encoding=encoding, nodata=nodata, source=str(path))
    if nodata is None:
        nodata = next(v for v in (CHANGE.nodata, *range(254, -1, -1)) if v not in values)
    return encoding, nodata


def scan_mask_files(paths, *, source) -> str:
    """The one encoding of a set of mask files (a patch dataset's), from the values of all of them together.

    A single patch cannot tell its encoding: an all-no-change patch of a 1/2-coded dataset holds only 1 (read
    alone, "0-1": all change), an all-change patch of a 0/255 one only 255 (read alone, nodata). The values of
    every file (each file's own nodata left out) decide once, and every patch is then decoded with that.

    Args:
        paths: the mask files (single-band integer rasters).
        source: the dataset (its folder), named in the error.

    Raises:
        InputError: non-integer data (names the file), or values that fit no encoding (names ``source``).
    """
    present: set[int] = set()
    for path in paths:
        values, nodata = _mask_values(path)
        present |= values - ({nodata} if nodata is not None else set())
    return detect_encoding(present, source=str(source)) if present else "0-1"
