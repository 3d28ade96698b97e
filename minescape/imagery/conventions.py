"""Sentinel-2 L2A STAC conventions: which asset holds which band, and how its DN become reflectance.

Two layouts are met in the wild and both are read into one :class:`StacScene`:

* **Earth Search** ``sentinel-2-l2a`` (v1): asset keys ``coastal, blue, green, red, rededge1..3, nir, nir08,
  nir09, swir16, swir22, scl``; ``raster:bands`` carries ``scale`` (1e-4) and ``offset`` (-0.1 from processing
  baseline 04.00); the item flag ``earthsearch:boa_offset_applied`` says whether the -1000 DN offset was already
  subtracted from the pixels. Earth Search v0 (``sentinel-s2-l2a-cogs``) uses keys ``B01`` ... ``SCL`` and gives
  the baseline only inside ``sentinel:product_id``.
* **Planetary Computer** ``sentinel-2-l2a``: keys ``B01`` ... ``B12``, ``B8A``, ``SCL``; pixels as ESA delivers
  them (no offset applied, no ``raster:bands`` scale); the baseline in ``s2:processing_baseline``.

Reflectance = (DN + offset_dn) x scale, with ``offset_dn`` decided per item by :func:`offset_dn` (the rule is
written out there, because Earth Search's metadata is wrong on some scenes: Element84/earth-search#66, #71,
cirrus-geo/cirrus-earth-search#33). The same scene read through either layout gives the same reflectance.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from minescape.errors import InputError
from minescape.sentinel2 import BANDS, QUANTIFICATION, baseline_offset

# Earth Search v1 asset key -> Sentinel-2 band (common names of the eo extension)
EARTH_SEARCH_KEYS: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir16": "B11", "swir22": "B12", "scl": "SCL",
}
SCL = "SCL"
DEFAULT_SCALE = 1.0 / QUANTIFICATION
_PRODUCT_BASELINE = re.compile(r"_N(\d{2})(\d{2})_")


@dataclass(frozen=True)
class BandAsset:
    """One band's file and its DN -> reflectance conversion.

    Attributes:
        band: ``B02`` ... or ``SCL``.
        href: URL or local path of the single-band COG.
        scale: reflectance per DN (1e-4 for Sentinel-2 L2A); 1 for SCL.
        offset_dn: DN added before scaling (-1000 for baseline >= 04.00 pixels that still carry the offset).
        nodata: DN marking missing pixels (0 for Sentinel-2).
    """

    band: str
    href: str
    scale: float = DEFAULT_SCALE
    offset_dn: float = 0.0
    nodata: float = 0.0


@dataclass(frozen=True)
class StacScene:
    """One Sentinel-2 L2A item as minescape reads it.

    Attributes:
        id: item id.
        date: acquisition date (UTC).
        cloud: ``eo:cloud_cover`` in percent, or None.
        epsg: the item's ``proj:epsg`` (UTM zone of the MGRS tile).
        baseline: processing baseline (``"05.10"``) or None.
        bbox: item bbox in WGS84 degrees ``(west, south, east, north)`` (heights of a 3D bbox dropped; west >
            east for an item crossing the antimeridian) or None.
        assets: band name -> :class:`BandAsset`.
        convention: ``"earth-search"``, ``"earth-search-v0"`` or ``"planetary-computer"``.
        notes: what the conventions decided (e.g. a flag contradicted by the baseline).
    """

    id: str
    date: dt.date
    cloud: float | None
    epsg: int
    baseline: str | None
    bbox: tuple[float, float, float, float] | None
    assets: dict[str, BandAsset]
    convention: str
    notes: tuple[str, ...] = field(default=())

    def require(self, bands: list[str] | tuple[str, ...]) -> None:
        """InputError naming the item and the missing bands if any of ``bands`` has no asset."""
        missing = [b for b in bands if b not in self.assets]
        if missing:
            raise InputError(f"STAC item {self.id}: missing bands {missing} (assets give {sorted(self.assets)})")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (unit arguments, run records)."""
        return {"id": self.id, "date": self.date.isoformat(), "cloud": self.cloud, "epsg": self.epsg,
                "baseline": self.baseline, "bbox": list(self.bbox) if self.bbox else None,
                "assets": {b: [a.href, a.scale, a.offset_dn, a.nodata] for b, a in sorted(self.assets.items())},
                "convention": self.convention, "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StacScene:
        """Inverse of :meth:`to_json`."""
        assets = {b: BandAsset(b, h, float(s), float(o), float(n)) for b, (h, s, o, n) in data["assets"].items()}
        return cls(data["id"], dt.date.fromisoformat(data["date"]), data["cloud"], int(data["epsg"]),
                   data["baseline"], tuple(data["bbox"]) if data["bbox"] else None, assets, data["convention"],
                   tuple(data.get("notes", ())))


def item_baseline(props: dict[str, Any]) -> str | None:
    """The processing baseline of an item: ``s2:processing_baseline``, ``sentinel:processing_baseline`` or the
    ``_Nxxyy_`` part of the product id (Earth Search v0); None when no field tells."""
    for key in ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version"):
        if props.get(key):
            return str(props[key])
    for key in ("s2:product_uri", "sentinel:product_id", "s2:product_id"):
        m = _PRODUCT_BASELINE.search(str(props.get(key) or ""))
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return None


def offset_dn(baseline: str | None, *, offset_applied: bool | None, raster_offset: float | None,
              scale: float) -> tuple[float, str | None]:
    """The DN offset to add before scaling, and a note when the metadata disagree.

    The rule (baseline first, because it is what the pixels were produced with):

    1. baseline < 04.00: 0 (no offset exists; a non-zero ``raster:bands`` offset or a True flag is noted and
       ignored);
    2. baseline >= 04.00: pixels carry +1000 unless the catalogue subtracted it. ``earthsearch:boa_offset_applied``
       True -> 0; False -> -1000; no flag -> the ``raster:bands`` offset when given (``offset / scale``), else
       -1000 (Planetary Computer, Earth Search v0);
    3. no baseline: the ``raster:bands`` offset when given, else 0.

    Catalogues known to mislabel scenes are also checked on the pixels by
    :func:`minescape.imagery.window_reader.pixels_carry_offset` (DN below 1000 cannot carry the offset).
    """
    if baseline is None:
        return (raster_offset / scale if raster_offset else 0.0), None
    expected = baseline_offset(baseline)  # -1000 or 0
    if expected == 0.0:
        if raster_offset or offset_applied:
            return 0.0, f"baseline {baseline} has no BOA offset; raster:bands offset/flag ignored"
        return 0.0, None
    if offset_applied is True:
        return 0.0, None
    if offset_applied is False:
        return expected, None
    if raster_offset is not None:
        return raster_offset / scale, None
    return expected, None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _epsg(item: dict[str, Any], props: dict[str, Any]) -> int:
    value = props.get("proj:epsg")
    if value is None and isinstance(props.get("proj:code"), str) and props["proj:code"].upper().startswith("EPSG:"):
        value = props["proj:code"].split(":", 1)[1]
    if value is None:  # some catalogues put it on the assets only
        assets = item.get("assets")
        for asset in assets.values() if isinstance(assets, dict) else ():
            if isinstance(asset, dict) and asset.get("proj:epsg") is not None:
                value = asset["proj:epsg"]
                break
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"STAC item {item.get('id')}: no proj:epsg (each item must give its projection; "
                         f"got {value!r})") from None


def band_of(key: str, asset: dict[str, Any]) -> str | None:
    """The Sentinel-2 band (``B02`` ... or ``SCL``) an asset holds: from its key (``B02``, Earth Search's
    ``blue``), else from a single ``eo:bands`` (STAC 1.1 ``bands``) entry named after a band; None otherwise
    (a multi-band or non-band asset)."""
    up = key.upper()
    if up in BANDS or up == SCL:
        return up
    if key in EARTH_SEARCH_KEYS:
        return EARTH_SEARCH_KEYS[key]
    entries = asset.get("eo:bands") or asset.get("bands") or []
    if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict):
        name = str(entries[0].get("name", "")).upper()
        if name in BANDS or name == SCL:
            return name
    return None


def scene_from_item(item: dict[str, Any], *, base: str | None = None) -> StacScene:
    """Read one STAC item (a dict as the API or ItemCollection gives it) into a :class:`StacScene`.

    Args:
        item: GeoJSON Feature of a Sentinel-2 L2A item.
        base: folder or URL that relative asset hrefs are resolved against (an ItemCollection file's folder).

    Raises:
        InputError: naming the item when it has no id, datetime or ``proj:epsg``, or malformed properties,
            assets or ``raster:bands``.
    """
    if not isinstance(item, dict) or item.get("type") != "Feature" or not item.get("id"):
        raise InputError(f"not a STAC item (a GeoJSON Feature with an id): {str(item)[:80]}")
    iid = str(item["id"])
    props = _properties(item)
    when = props.get("datetime") or props.get("start_datetime")
    try:
        date = utc_date(dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")))
    except ValueError:
        raise InputError(f"STAC item {iid}: no valid datetime ({when!r})") from None
    epsg = _epsg(item, props)
    baseline = item_baseline(props)
    assets, notes = item_band_assets(item, base=base)  # first: checks that the assets are an object
    keys = set(item.get("assets") or {})
    convention = ("earth-search" if "red" in keys or "scl" in keys else
                  "planetary-computer" if "s2:processing_baseline" in props else "earth-search-v0")
    return StacScene(iid, date, _float(props.get("eo:cloud_cover")), epsg, baseline, bbox_2d(item.get("bbox")),
                     assets, convention, notes)


def utc_date(when: dt.datetime) -> dt.date:
    """The UTC calendar date of ``when`` (a datetime with a UTC offset is converted first:
    ``2019-12-31T23:30-02:00`` is 2020-01-01); a naive datetime is taken as UTC, as STAC requires."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date()


def bbox_2d(bbox: Any) -> tuple[float, float, float, float] | None:
    """A STAC / GeoJSON bbox as ``(west, south, east, north)`` degrees: a 2D ``[w, s, e, n]`` as is, a 3D
    ``[w, s, zmin, e, n, zmax]`` without its heights; None for anything else (no bbox, wrong length, not numbers).
    ``west > east`` (a bbox crossing the antimeridian, as the STAC spec writes it) is kept as given."""
    if not isinstance(bbox, list | tuple) or len(bbox) not in (4, 6):
        return None
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return None
    w, s, e, n = values if len(values) == 4 else (values[0], values[1], values[3], values[4])
    return w, s, e, n


def _properties(item: dict[str, Any]) -> dict[str, Any]:
    """An item's ``properties`` object ({} when absent); InputError naming the item when it is not an object."""
    props = item.get("properties")
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise InputError(f"STAC item {item.get('id')}: properties is a {type(props).__name__}, not an object")
    return props


def _raster_band(item_id: str, key: str, asset: dict[str, Any]) -> dict[str, Any]:
    """The first ``raster:bands`` entry of an asset ({} when the asset has none).

    Raises:
        InputError: naming the item and the asset when ``raster:bands`` is not a list of objects.
    """
    bands = asset.get("raster:bands")
    if bands is None or bands == []:
        return {}
    if not isinstance(bands, list) or not all(isinstance(b, dict) for b in bands):
        shown = " ".join(str(bands).split())[:60]
        raise InputError(f"STAC item {item_id}: asset {key!r} has a malformed raster:bands ({shown}); expected a "
                         "list of objects such as [{\"scale\": 0.0001, \"offset\": -0.1, \"nodata\": 0}]")
    return bands[0]


def item_band_assets(item: dict[str, Any], *, base: str | None = None) -> tuple[dict[str, BandAsset], tuple[str, ...]]:
    """An item's band assets (band name -> :class:`BandAsset`, SCL included) with each one's DN -> reflectance
    conversion (:func:`offset_dn`), and the notes of what the conventions decided.

    The one reading of an item's bands: :func:`scene_from_item` (STAC API searches and ``--stac`` ItemCollections)
    and scenes given as local STAC files (:func:`minescape.imagery.local_scenes.discover_scenes`) both use it. Hrefs are
    resolved against ``base`` and checked (:func:`check_href`).
    """
    iid = str(item.get("id"))
    props = _properties(item)
    baseline = item_baseline(props)
    flag = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
    flag = bool(flag) if flag is not None else None
    assets: dict[str, BandAsset] = {}
    notes: list[str] = []
    raw_assets = item.get("assets") or {}
    if not isinstance(raw_assets, dict):
        raise InputError(f"STAC item {iid}: assets is a {type(raw_assets).__name__}, not an object of assets")
    for key, asset in sorted(raw_assets.items()):
        band = band_of(key, asset) if isinstance(asset, dict) else None
        if band is None or band in assets or not asset.get("href"):
            continue
        href = resolve_href(str(asset["href"]), base)
        check_href(href, iid)
        rb = _raster_band(iid, key, asset)
        nodata = _float(rb.get("nodata"))
        if band == SCL:
            assets[band] = BandAsset(band, href, 1.0, 0.0, 0.0 if nodata is None else nodata)
            continue
        scale = _float(rb.get("scale")) or DEFAULT_SCALE
        off, note = offset_dn(baseline, offset_applied=flag, raster_offset=_float(rb.get("offset")), scale=scale)
        if note and note not in notes:
            notes.append(note)
        assets[band] = BandAsset(band, href, scale, off, 0.0 if nodata is None else nodata)
    return assets, tuple(notes)


ALLOWED_SCHEMES = ("http", "https", "s3", "gs", "az")


def check_href(href: str, item_id: str) -> None:
    """InputError naming the item for an href GDAL should not be handed from an untrusted catalogue: a GDAL
    virtual path (``/vsi...``), a VRT or an unknown URL scheme (only http(s), s3, gs, az and local files)."""
    low = href.lower()
    scheme = low.split("://", 1)[0] if "://" in low else None
    if low.startswith("/vsi") or "/vsi" in low.split("?")[0] or low.split("?")[0].endswith(".vrt") or (
            scheme is not None and scheme not in ALLOWED_SCHEMES):
        raise InputError(f"STAC item {item_id}: asset href {href[:120]!r} is not allowed (use http(s), s3, gs, az "
                         "URLs or local GeoTIFF files)")


def resolve_href(href: str, base: str | None) -> str:
    """``href`` made absolute against ``base`` (a folder path or a URL); absolute hrefs are returned as is."""
    if base is None or "://" in href or href.startswith("/"):
        return href
    if "://" in base:
        return base.rstrip("/") + "/" + href.lstrip("./")
    from pathlib import Path

    return str((Path(base) / href).resolve())
