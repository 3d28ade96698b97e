"""Change-detection datasets on disk: OSCD cities (and, added with the patch tools, CHANGE-MINING2025).

OSCD layout (Daudt et al. 2018)::

    images/<city>/imgs_1/*_B01.tif ... *_B8A.tif   date 1, 13 bands at 10/20/60 m (EPSG:4326)
    images/<city>/imgs_2/...                        date 2 (its grid may differ slightly in size)
    images/<city>/dates.txt
    train_labels/<city>/cm/<city>-cm.tif            change label, no CRS, on date 1's 10 m grid (1/2 coded)

Both dates are read onto the 10 m grid of date 1's B02 (the label's grid), bands resampled bilinearly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.change.labels import Encoding, decode_binary
from minescape.errors import InputError, MissingInputError
from minescape.geo.raster import Raster, read_raster
from minescape.legend import CHANGE
from minescape.sentinel2 import ALL_BANDS, open_scene, read_stack


@dataclass(frozen=True)
class ChangePair:
    """Two co-registered dates and (optionally) their change label, all on one grid.

    ``t1``/``t2`` are float32 reflectance rasters (NaN nodata); ``label`` is uint8 in the CHANGE
    legend (0, 1, 255) or None.
    """

    name: str
    t1: Raster
    t2: Raster
    label: Raster | None
    dates: tuple[dt.date | None, dt.date | None] = (None, None)


def oscd_cities(root: str | Path) -> list[str]:
    """City names under an OSCD root that have both image dates."""
    images = Path(root) / "images"
    if not images.is_dir():
        raise MissingInputError("not an OSCD root (no images/ folder)", path=root)
    return sorted(p.name for p in images.iterdir() if (p / "imgs_1").is_dir() and (p / "imgs_2").is_dir())


def _oscd_dates(city_dir: Path) -> tuple[dt.date | None, dt.date | None]:
    dates: list[dt.date | None] = [None, None]
    f = city_dir / "dates.txt"
    if f.exists():
        for line in f.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("date_1", "date_2") and value.strip():
                dates[int(key.strip()[-1]) - 1] = dt.datetime.strptime(value.strip(), "%Y%m%d").date()
    return dates[0], dates[1]


def read_oscd_city(
    root: str | Path,
    city: str,
    *,
    bands: Sequence[str] = ALL_BANDS,
    label_encoding: Encoding = "auto",
    reflectance: bool = True,
) -> ChangePair:
    """Load one OSCD city: both dates on date 1's 10 m grid, and its change label (if present).

    Raises InputError if the label's shape does not match date 1's 10 m grid.
    """
    root = Path(root)
    city_dir = root / "images" / city
    if not city_dir.is_dir():
        raise MissingInputError(f"no OSCD city {city!r}", path=root / "images")
    s1 = open_scene(city_dir / "imgs_1")
    s2 = open_scene(city_dir / "imgs_2")
    t1 = read_stack(s1, bands=bands, reflectance=reflectance)
    t2 = read_stack(s2, bands=bands, grid=s1.grid, reflectance=reflectance)
    label = None
    label_path = root / "train_labels" / city / "cm" / f"{city}-cm.tif"
    if label_path.exists():
        raw = read_raster(label_path)
        if raw.shape != t1.shape:
            raise InputError(f"label is {raw.shape} pixels but date 1 is {t1.shape}", path=label_path)
        codes = decode_binary(raw.data[0], encoding=label_encoding, source=str(label_path))
        label = Raster(codes, t1.crs, t1.transform, CHANGE.nodata)
    return ChangePair(city, t1, t2, label, _oscd_dates(city_dir))


def common_valid_mask(*rasters: Raster) -> np.ndarray:
    """Pixels valid in every raster (same grid)."""
    mask = np.ones(rasters[0].shape, dtype=bool)
    for r in rasters:
        mask &= r.valid_mask()
    return mask
