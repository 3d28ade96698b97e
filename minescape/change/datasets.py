"""Change-detection datasets on disk: OSCD cities (and, added with the patch tools, CHANGE-MINING2025).

OSCD layout (Daudt et al. 2018)::

    images/<city>/imgs_1/*_B01.tif ... *_B8A.tif   date 1, 13 bands at 10/20/60 m (EPSG:4326)
    images/<city>/imgs_2/...                        date 2 (its grid may differ slightly in size)
    images/<city>/dates.txt
    train_labels/<city>/cm/<city>-cm.tif            change label, no CRS, on date 1's 10 m grid (1/2 coded)

The labels of every city of the release are coded 1 = no change, 2 = change (its README says 0/1); the encoding is
the dataset's, declared, never guessed per city (a city without change would hold only 1, read as all change).

Both dates are read onto the 10 m grid of date 1's B02 (the label's grid), bands resampled bilinearly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minescape.change.labels import ENCODINGS, Encoding, decode_binary, scan_mask_files
from minescape.errors import ConfigError, InputError, MissingInputError
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
    label_encoding: Encoding = "1-2",
    reflectance: bool = True,
) -> ChangePair:
    """Load one OSCD city: both dates on date 1's 10 m grid, and its change label (if present).

    ``label_encoding`` is OSCD's (``1-2``: 1 no change, 2 change) for every city; ``auto`` guesses from this
    city's values alone, which reads a city without change (all 1) as all change.

    Raises InputError if the label's shape does not match date 1's 10 m grid, or it holds values other than
    the encoding's.
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


# --------------------------------------------------------------------------------------------------
# Patch datasets: minescape's own layout (written by minescape.change.patches) and CHANGE-MINING2025.
#
# Layout (both)::
#
#     <root>/T1/<name>.tif        date 1 patch, (bands, rows, cols)
#     <root>/T2/<name>.tif        date 2 patch, same grid and file name
#     <root>/Change/<name>.tif    change mask (CHANGE-MINING2025 as published calls it Mudança/)
#     <root>/split.csv            optional: name,split (train/val/test); minescape writes it
#     <root>/manifest.json        optional: minescape writes it (bands, size, stride, counts)
#
# CHANGE-MINING2025 may also come split into sub-folders ``<root>/{train,val,test}/{T1,T2,Mudança}``;
# the split is then taken from the folder name. Masks are decoded to the CHANGE legend (0/1/255)
# whatever their encoding (0/1, 1/2, 0/255): one encoding per dataset, resolved once by load_patch_dataset
# (minescape's manifest.json says CHANGE legend; else the values of all masks together decide).
# --------------------------------------------------------------------------------------------------

MASK_DIRS: tuple[str, ...] = ("Change", "Mudança", "change", "mudança", "mask", "label")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_PATCH_EXT = (".tif", ".tiff", ".png")


@dataclass(frozen=True)
class PatchRecord:
    """One patch of a patch dataset: its name, the three files and its split.

    Attributes:
        name: file stem shared by the three files (e.g. ``r000128_c000256``).
        t1: date 1 image file.
        t2: date 2 image file (same grid as ``t1``).
        mask: change mask file, or None when the dataset has no labels for this patch.
        split: ``train``, ``val``, ``test`` or None when unknown.
        mask_encoding: the dataset's mask encoding (``0-1``, ``1-2`` or ``0-255``), the same for every patch
            of a dataset: :func:`load_patch_dataset` resolves it once.
    """

    name: str
    t1: Path
    t2: Path
    mask: Path | None
    split: str | None
    mask_encoding: str


def _nfc(name: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFC", name)


def _find_subdir(folder: Path, names: Sequence[str]) -> Path | None:
    """The sub-folder of ``folder`` whose name (Unicode-normalised, case-insensitive) is in ``names``."""
    if not folder.is_dir():
        return None
    wanted = [_nfc(n).lower() for n in names]
    found = {_nfc(p.name).lower(): p for p in folder.iterdir() if p.is_dir()}
    for w in wanted:
        if w in found:
            return found[w]
    return None


def _patch_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in _PATCH_EXT and not p.name.startswith(".tmp-")}


def read_split_file(path: str | Path) -> dict[str, str]:
    """Read a ``name,split`` CSV (header ``name,split``) into ``{name: split}``; InputError on bad rows."""
    import csv

    path = Path(path)
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"name", "split"} <= set(reader.fieldnames):
            raise InputError("split file needs the columns name,split", path=path)
        for i, row in enumerate(reader, start=2):
            if row["split"] not in SPLITS:
                raise InputError(f"line {i}: split {row['split']!r} is not one of {', '.join(SPLITS)}", path=path)
            out[row["name"]] = row["split"]
    return out


def _records_in(folder: Path, split: str | None, splits: dict[str, str]) -> list[PatchRecord]:
    t1_dir = _find_subdir(folder, ("T1", "A", "im1", "time1"))
    t2_dir = _find_subdir(folder, ("T2", "B", "im2", "time2"))
    if t1_dir is None or t2_dir is None:
        return []
    mask_dir = _find_subdir(folder, MASK_DIRS)
    t1 = _patch_files(t1_dir)
    t2 = _patch_files(t2_dir)
    masks = _patch_files(mask_dir) if mask_dir is not None else {}
    only1 = sorted(set(t1) - set(t2))
    only2 = sorted(set(t2) - set(t1))
    if only1 or only2:
        example = (only1 or only2)[0]
        raise InputError(f"T1/ and T2/ hold different patches ({len(only1)} only in T1, {len(only2)} only in T2, "
                         f"e.g. {example!r})", path=folder)
    if mask_dir is not None:
        missing = sorted(set(t1) - set(masks))
        if missing:
            raise InputError(f"{len(missing)} patches have no mask in {mask_dir.name}/ (e.g. {missing[0]!r})",
                             path=folder)
    return [PatchRecord(name, t1[name], t2[name], masks.get(name), split or splits.get(name), "0-1")
            for name in sorted(t1)]


#: ``format`` of the manifest.json that :mod:`minescape.change.patches` writes (masks in the CHANGE legend).
PATCHES_FORMAT_PREFIX = "minescape-change-patches/"


def _written_by_minescape(root: Path) -> bool:
    """Whether ``root/manifest.json`` says minescape wrote the dataset (its masks are in the CHANGE legend:
    0/1, nodata 255). A missing or unreadable manifest says nothing (the masks are scanned instead)."""
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    return isinstance(fmt, str) and fmt.startswith(PATCHES_FORMAT_PREFIX)


def dataset_mask_encoding(root: Path, records: Sequence[PatchRecord]) -> str:
    """The one mask encoding of a patch dataset: ``0-1`` (CHANGE legend) when minescape wrote it (its
    ``manifest.json``), else from the values of all its masks together (each read once, block by block)."""
    masks = [r.mask for r in records if r.mask is not None]
    if not masks or _written_by_minescape(root):
        return "0-1"
    return scan_mask_files(masks, source=root)


def load_patch_dataset(root: str | Path, *, mask_encoding: Encoding = "auto") -> list[PatchRecord]:
    """List the patches of a patch dataset (minescape's layout or CHANGE-MINING2025 as published).

    Args:
        root: folder holding ``T1/``, ``T2/`` and ``Change/`` (or ``Mudança/``), or holding
            ``train/``, ``val/``, ``test/`` sub-folders with that layout.
        mask_encoding: the masks' encoding, or ``auto``: ``0-1`` when minescape wrote the dataset (its
            ``manifest.json``), else detected once from the values of all masks together (never per patch).

    Returns:
        Records sorted by split folder then name, each carrying the dataset's mask encoding; ``split`` comes
        from ``split.csv`` when present, else from the sub-folder, else None.

    Raises:
        MissingInputError: ``root`` does not exist.
        InputError: no patches, T1/T2/mask file names that do not match, or masks whose values fit no
            encoding.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError("patch dataset folder not found", path=root)
    split_path = root / "split.csv"
    splits = read_split_file(split_path) if split_path.exists() else {}
    records = _records_in(root, None, splits)
    if not records:
        for split in SPLITS:
            sub = _find_subdir(root, (split, {"val": "validation"}.get(split, split)))
            if sub is not None:
                records.extend(_records_in(sub, split, splits))
    if not records:
        raise InputError("no patches found: expected T1/, T2/ and Change/ (or Mudança/) folders, "
                         "optionally under train/ val/ test/", path=root)
    if mask_encoding == "auto":
        mask_encoding = dataset_mask_encoding(root, records)
    elif mask_encoding not in ENCODINGS:
        raise ConfigError(f"invalid mask encoding {mask_encoding!r}; choose one of: auto, {', '.join(ENCODINGS)}")
    return [dataclasses.replace(r, mask_encoding=mask_encoding) for r in records]


def read_patch(record: PatchRecord) -> tuple[Raster, Raster, Raster | None]:
    """Read one patch: T1 and T2 as float32 rasters, the mask in the CHANGE legend (uint8 0/1/255), decoded with
    the dataset's encoding (``record.mask_encoding``, resolved once by :func:`load_patch_dataset`).

    Integer images are taken as Sentinel-2 DN and divided by 10000 (no baseline offset: patches written by
    minescape are float32 reflectance already; apply offsets yourself for post-2022 DN patches). Image
    nodata becomes NaN. Pixels where either date is NaN are set to 255 in the mask.
    """
    images = []
    for path in (record.t1, record.t2):
        r = read_raster(path)
        data = r.data.astype(np.float32)
        if r.nodata is not None and not (isinstance(r.nodata, float) and np.isnan(r.nodata)):
            data[r.data == r.nodata] = np.nan
        if np.issubdtype(r.data.dtype, np.integer):
            data /= np.float32(10000.0)
        images.append(Raster(data, r.crs, r.transform, np.nan, r.band_names))
    t1, t2 = images
    if t1.shape != t2.shape:
        raise InputError(f"T2 patch is {t2.shape} pixels but T1 is {t1.shape}", path=record.t2)
    mask = None
    if record.mask is not None:
        m = read_raster(record.mask)
        if m.shape != t1.shape:
            raise InputError(f"mask is {m.shape} pixels but T1 is {t1.shape}", path=record.mask)
        nodata = int(m.nodata) if m.nodata is not None and float(m.nodata).is_integer() else None
        codes = decode_binary(m.data[0], encoding=record.mask_encoding, nodata=nodata, source=str(record.mask))
        codes[~(np.isfinite(t1.data).all(axis=0) & np.isfinite(t2.data).all(axis=0))] = CHANGE.nodata
        mask = Raster(codes, t1.crs, t1.transform, CHANGE.nodata)
    return t1, t2, mask
