"""Scenes on disk: find them (files, folders, local STAC, downloaded catalogue items) and describe them.

Scenes may be given as multi-band GeoTIFF stacks, one-file-per-band folders, folders holding either, a local
STAC Catalog / Collection / ItemCollection / Item JSON file (assets of multi-band stacks or one asset per band,
read by the catalogue conventions of :mod:`minescape.imagery.conventions`, as ``--stac`` reads them), or a
downloaded item's folder (its JSON beside ``B02.tif`` ...). A scene's date comes from its metadata (STAC
``datetime``, GeoTIFF tag ``DATE``) or its standard Sentinel-2 file name; its cloud cover from STAC
``eo:cloud_cover`` or the GeoTIFF tag ``CLOUDY_PIXEL_PERCENTAGE``.

:func:`discover_scenes` serves site classification (``--scenes``); :func:`open_one_scene` serves commands that take
one scene per date (change detection).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minescape.errors import InputError, MissingInputError
from minescape.geo.grid import Grid
from minescape.geo.raster import open_raster
from minescape.jsonfile import read_json
from minescape.path_identity import PathSet
from minescape.sentinel2 import BAND_FILE, BANDS, Scene, SceneInfo, open_scene, parse_scene_name

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


@dataclass(frozen=True)
class SceneRef:
    """A scene found on disk: where it is and what the metadata says (no pixels).

    Attributes:
        source: stack file or band folder (or the STAC item's JSON for STAC scenes).
        date: acquisition date.
        cloud: scene cloud cover in percent, or None if unknown.
        band_files: for STAC scenes, band name -> (file, 1-based index) of the band assets that are files on disk;
            None for files/folders.
        baseline: processing baseline when the metadata gives it.
        offset_dn: for STAC scenes, the DN offset the catalogue conventions decided (-1000 or 0; it overrides
            the baseline's, e.g. for Earth Search items whose pixels already had it subtracted); else None.
        scl: for STAC scenes with an SCL asset on disk, its file (clear pixels then come from it, as with
            ``--stac``); else None.
    """

    source: Path
    date: dt.date
    cloud: float | None = None
    band_files: tuple[tuple[str, str, int], ...] | None = None
    baseline: str | None = None
    offset_dn: float | None = None
    scl: str | None = None

    @property
    def year(self) -> int:
        """Acquisition year."""
        return self.date.year

    def open(self) -> Scene:
        """The :class:`~minescape.sentinel2.Scene` (reads headers only)."""
        if self.band_files is None:
            return open_scene(self.source, date=self.date, baseline=self.baseline)
        files = {b: (Path(p), i) for b, p, i in self.band_files}
        ref = "B02" if "B02" in files else min(files, key=lambda b: BANDS[b].resolution)
        with open_raster(files[ref][0]) as src:
            if src.crs is None:
                raise InputError("scene has no CRS", path=files[ref][0])
            grid = Grid(src.crs, src.transform, src.width, src.height)
            nodata = src.nodata if src.nodata is not None else 0
        name = parse_scene_name(self.source.name)
        info = SceneInfo(self.date, name.level, self.baseline or name.baseline, name.tile, name.mission,
                         offset=self.offset_dn)
        return Scene(self.source, files, info, grid, nodata)

    def to_json(self) -> dict:
        """JSON-ready description (picklable, for unit arguments; ``offset_dn`` and ``scl`` only when set, so
        the records of other scenes are unchanged)."""
        out = {"source": str(self.source), "date": self.date.isoformat(), "cloud": self.cloud,
               "band_files": [list(b) for b in self.band_files] if self.band_files else None,
               "baseline": self.baseline}
        if self.offset_dn is not None:
            out["offset_dn"] = self.offset_dn
        if self.scl is not None:
            out["scl"] = self.scl
        return out

    @classmethod
    def from_json(cls, data: dict) -> SceneRef:
        """Inverse of :meth:`to_json`."""
        bf = data.get("band_files")
        off = data.get("offset_dn")
        return cls(Path(data["source"]), dt.date.fromisoformat(data["date"]), data.get("cloud"),
                   tuple((b, p, int(i)) for b, p, i in bf) if bf else None, data.get("baseline"),
                   None if off is None else float(off), data.get("scl"))


def _scene_from_file(path: Path) -> SceneRef:
    with open_raster(path) as src:
        tags = src.tags()
    date = None
    if "DATE" in tags:
        try:
            date = dt.date.fromisoformat(tags["DATE"][:10])
        except ValueError:
            date = None
    date = date or parse_scene_name(path.name).date
    if date is None:
        raise InputError("cannot tell the scene date: no DATE tag and no date in the file name "
                         "(expected e.g. S2A_MSIL2A_20190715T022549_...)", path=path)
    cloud = _float(tags.get("CLOUDY_PIXEL_PERCENTAGE") or tags.get("CLOUD_COVERAGE_ASSESSMENT"))
    return SceneRef(path, date, cloud, None, tags.get("PROCESSING_BASELINE"))


def _scene_from_band_folder(folder: Path) -> SceneRef:
    name = parse_scene_name(folder.name)
    if name.date is None:
        first = next(p for p in sorted(folder.iterdir()) if BAND_FILE.search(p.name))
        name = parse_scene_name(first.name)
    if name.date is None:
        raise InputError("cannot tell the scene date from the folder or band file names", path=folder)
    return SceneRef(folder, name.date, None, None, name.baseline)


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _is_band_folder(folder: Path) -> bool:
    return any(BAND_FILE.search(p.name) for p in folder.iterdir() if p.is_file())


#: STAC document types that hold items themselves (an item's own JSON, a saved search).
ITEM_TYPES = ("Feature", "FeatureCollection")


def _stac_scenes(path: Path, data: dict | None = None) -> list[SceneRef]:
    """The scenes of a STAC JSON file (``data``: its content when the caller has already read it).

    Raises:
        InputError: naming ``path`` for a document that is not STAC or is malformed (a missing field, a wrong
            type, an invalid datetime: whatever pystac or the reading of its objects raises becomes one line).
    """
    import pystac

    data = read_json(path, "STAC file") if data is None else data
    try:
        return _stac_file_scenes(path, data)
    except InputError:
        raise
    except (pystac.STACError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"invalid STAC ({_stac_problem(exc)})", path=path) from None


def _stac_problem(exc: BaseException) -> str:
    """One line saying what pystac (or the reading of its objects) found wrong in a STAC document."""
    import pystac

    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "a missing field"
    text = " ".join(str(exc).split())[:160]
    return text if isinstance(exc, pystac.STACError) else f"{type(exc).__name__}: {text}"


def _stac_file_scenes(path: Path, data: dict) -> list[SceneRef]:
    """The scenes of the STAC JSON ``data`` read from ``path``; errors of malformed documents pass through
    (:func:`_stac_scenes` names the file)."""
    import pystac

    kind = data.get("type")
    if kind == "FeatureCollection":
        items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
        for item in items:  # resolve relative hrefs against the collection file
            for asset in item.assets.values():
                if not Path(asset.href).is_absolute() and "://" not in asset.href:
                    asset.href = str((path.parent / asset.href).resolve())
    elif kind == "Feature":
        items = [pystac.Item.from_dict(data, href=str(path), preserve_dict=False)]
    elif kind in ("Catalog", "Collection"):
        items = _catalog_items(path, data)
    else:
        raise InputError(f"JSON is not a STAC Catalog, Collection, ItemCollection or Item (type {kind!r})",
                         path=path)
    for item in items:  # an item's own folder: the file it was read from (never a self link the JSON states)
        _use_local_copies(item, path.parent if kind == "FeatureCollection" else Path(item.get_self_href()).parent)
    return [_scene_from_item(item, path) for item in items]


def _use_local_copies(item, folder: Path) -> None:
    """Point an item's remote asset hrefs at the files of the same name in ``folder`` when they are there: an
    item JSON kept beside its downloaded assets (Earth Search's bucket keeps ``<id>.json`` with ``B02.tif`` ...;
    ``aws s3 sync`` of that folder) is read from disk, with no network. Only the URL's last path segment is
    looked up, inside ``folder``; a file there that links out of it is an InputError."""
    from urllib.parse import urlparse

    root = folder.resolve()
    for asset in item.assets.values():
        if "://" not in asset.href:
            continue
        name = Path(urlparse(asset.href).path).name
        if not name or name in (".", "..") or not (folder / name).is_file():
            continue
        local = (folder / name).resolve()
        if not local.is_relative_to(root):  # a link out of the folder: not this item's download
            raise InputError(f"STAC item {item.id}: {name} beside it links out of its folder ({local})", path=folder)
        asset.href = str(local)


#: Most STAC documents (catalogues, collections, items) one catalogue walk reads.
MAX_STAC_DOCUMENTS = 100_000


def _catalog_items(path: Path, data: dict) -> list:
    """The items of a local STAC Catalog/Collection, following ``child`` and ``item`` links breadth first.

    Each document is read once (a catalogue listing itself, or a cycle of children, is read once, not
    forever); links must be local files inside the catalogue's folder (no network, no escape through ``..``
    or absolute paths), and a walk stops with an error past :data:`MAX_STAC_DOCUMENTS` documents.
    """
    import pystac

    root = path.parent.resolve()
    seen = {path.resolve()}
    queue = [(path, data)]
    items = []
    while queue:
        doc_path, doc = queue.pop(0)
        for link in doc.get("links") or []:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = str(link.get("href", ""))
            if "://" in href:
                raise InputError(f"STAC link {href!r} is not a local file (catalogues are read from disk only)",
                                 path=doc_path)
            target = (doc_path.parent / href).resolve()
            if not target.is_relative_to(root):
                raise InputError(f"STAC link {href!r} leaves the catalogue's folder {root}", path=doc_path)
            if target in seen:
                continue  # a catalogue listing itself or an ancestor: read once
            seen.add(target)
            if len(seen) > MAX_STAC_DOCUMENTS:
                raise InputError(f"STAC catalogue links more than {MAX_STAC_DOCUMENTS:,} documents", path=path)
            child = read_json(target, "STAC file")
            if child.get("type") == "Feature":
                try:
                    item = pystac.Item.from_dict(child, href=str(target), preserve_dict=False)
                except (pystac.STACError, KeyError, TypeError, AttributeError, ValueError) as exc:
                    raise InputError(f"invalid STAC item ({_stac_problem(exc)})", path=target) from None
                items.append(item)
            elif child.get("type") in ("Catalog", "Collection"):
                queue.append((target, child))
            else:
                raise InputError(f"linked document is not a STAC Catalog, Collection or Item (type "
                                 f"{child.get('type')!r})", path=target)
    return items


def _scene_from_item(item, source: Path) -> SceneRef:
    """A local STAC item as a scene: its band assets read by the catalogue conventions
    (:func:`minescape.imagery.conventions.item_band_assets`, the same reading as ``--stac``: asset keys ``B02`` or
    Earth Search's ``blue``, the DN offset from the baseline and ``earthsearch:boa_offset_applied``), else one
    multi-band stack asset (``eo:bands`` of several bands, or the ``data`` role).

    Only assets that are files are kept (a partly downloaded item lacks the bands left as URLs); an item whose
    bands are all URLs is an InputError pointing at ``--stac``, which reads catalogues over the network."""
    from minescape.imagery.conventions import (
        DEFAULT_SCALE,
        band_of,
        check_href,
        item_band_assets,
        item_baseline,
        utc_date,
    )

    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise InputError(f"STAC item {item.id} has no datetime", path=source)
    day = utc_date(when)
    cloud = _float(item.properties.get("eo:cloud_cover"))
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    for key, asset in (data.get("assets") or {}).items():
        asset["href"] = item.assets[key].get_absolute_href() or asset["href"]
    try:
        assets, _ = item_band_assets(data)
    except InputError as exc:
        raise InputError(str(exc), path=source) from None
    bands = {b: a for b, a in assets.items() if b in BANDS}
    spectral = {b: a for b, a in bands.items() if "://" not in a.href}  # files on disk; URLs are --stac's
    if bands and not spectral:
        example = next(iter(bands.values())).href
        raise InputError(f"STAC item {item.id}: its band assets are URLs (e.g. {example[:100]}); items read over the "
                         f"network are given with --stac {source.name} (scenes are files on disk)", path=source)
    baseline = item_baseline(item.properties)
    if spectral:
        offsets = {a.offset_dn for a in spectral.values()}
        scales = {a.scale for a in spectral.values()}
        if len(offsets) > 1 or any(abs(sc / DEFAULT_SCALE - 1) > 1e-6 for sc in scales):
            raise InputError(f"STAC item {item.id}: bands with different DN offsets {sorted(offsets)} or a scale "
                             f"other than 1e-4 ({sorted(scales)}) cannot be read as one scene; give the items "
                             "with --stac", path=source)
        scl = assets.get("SCL") if "SCL" in assets and "://" not in assets["SCL"].href else None
        return SceneRef(Path(source.parent / f"{item.id}"), day, cloud,
                        tuple(sorted((b, a.href, 1) for b, a in spectral.items())), baseline, offsets.pop(),
                        scl.href if scl is not None else None)
    for key, asset in data.get("assets", {}).items():
        href = str(asset.get("href", ""))
        if band_of(key, asset) is not None or not href.lower().endswith(RASTER_SUFFIXES):
            continue
        if len(asset.get("eo:bands") or asset.get("bands") or []) > 1 or "data" in (asset.get("roles") or []):
            try:
                check_href(href, item.id)
            except InputError as exc:
                raise InputError(str(exc), path=source) from None
            ref = _scene_from_file(Path(href))
            return SceneRef(ref.source, day, cloud if cloud is not None else ref.cloud, None,
                            baseline or ref.baseline)
    raise InputError(f"STAC item {item.id} has no raster band assets", path=source)


#: Asset file names of a downloaded catalogue item (Earth Search's ``B02.tif`` ... ``SCL.tif``): the name gives
#: neither the date nor the DN offset, so such files are read only through the item JSON beside them.
BARE_ASSET_FILE = re.compile(r"^(?:B0[1-9]|B1[0-2]|B8A|SCL|AOT|WVP|TCI)\.(?:tif|tiff|jp2)$", re.IGNORECASE)


def _downloaded_items(folder: Path) -> list[SceneRef]:
    """The scenes of the STAC item / ItemCollection JSON files in a band folder whose bands are files of that
    folder (a Planetary Computer item saved beside ``T06VVN_..._B02_10m.tif`` ...); other JSON is ignored."""
    refs = []
    for child in sorted(folder.glob("*.json")):
        data = read_json(child, "STAC file") if child.is_file() else {}
        if data.get("type") in ITEM_TYPES:
            refs += [r for r in _stac_scenes(child, data)
                     if any("://" not in h and Path(h).parent == folder.resolve() for _, h, _ in r.band_files or ())]
    return refs


def _folder_scenes(folder: Path, skip: PathSet, *, nested: bool) -> list[SceneRef]:
    """The scenes of a folder: itself when it is a band folder; else its raster files, STAC JSON files, band
    sub-folders and downloaded items' sub-folders (holding ``B02.tif`` ...; ``nested``: such a sub-folder, of
    which only the STAC item / ItemCollection JSON files are read).

    Files that a STAC JSON of the folder points at (a downloaded item, :func:`_use_local_copies`) are read through
    that item, not again as scenes of their own. Bare asset files (``B02.tif``) that no item claims are an error
    naming the folder: their date and DN offset cannot be told."""
    if _is_band_folder(folder):  # through the item JSON beside the files when there is one (its offset, its SCL)
        return _downloaded_items(folder) or [_scene_from_band_folder(folder)]
    children = [c for c in sorted(folder.iterdir()) if not c.name.startswith(".") and skip.match(c) is None]
    refs: list[SceneRef] = []
    claimed: set[Path] = set()
    download = nested or any(c.is_file() and BARE_ASSET_FILE.match(c.name) for c in children)
    for child in children:
        if child.is_file() and child.suffix.lower() == ".json":
            data = read_json(child, "STAC file")
            if download and data.get("type") not in ITEM_TYPES:
                continue  # a downloaded item's other metadata (tileInfo.json ...)
            found = _stac_scenes(child, data)
            refs.extend(found)
            claimed |= {Path(h).resolve() for r in found for _, h, _ in (r.band_files or ()) if "://" not in h}
    bare = [c.name for c in children if c.is_file() and BARE_ASSET_FILE.match(c.name) and c.resolve() not in claimed]
    if bare and not refs:
        raise InputError(f"asset files named {', '.join(bare[:3])}{' ...' if len(bare) > 3 else ''} without their "
                         "STAC item: the names give neither the date nor the DN offset; keep the item JSON "
                         "(<id>.json, as the catalogue serves it) in this folder, or give the item with --stac",
                         path=folder)
    if nested:
        return refs
    for child in children:
        if child.is_file() and child.suffix.lower() in RASTER_SUFFIXES and child.resolve() not in claimed \
                and not BARE_ASSET_FILE.match(child.name):
            refs.append(_scene_from_file(child))
        elif child.is_dir() and (_is_band_folder(child)  # a band folder, or a downloaded item's folder
                                 or any(g.is_file() and BARE_ASSET_FILE.match(g.name) for g in child.iterdir())):
            refs.extend(_folder_scenes(child, skip, nested=True))
    return refs


def discover_scenes(sources: Sequence[str | Path], *, exclude: Sequence[str | Path] = ()) -> list[SceneRef]:
    """Find scenes in files, folders and STAC JSON files; sorted by (date, path), duplicates removed.

    A folder is a scene when it holds band files (``*_B02.tif`` ...); otherwise its raster files, band
    sub-folders and ``*.json`` STAC files are scenes (one level deep), and so are downloaded catalogue items: a
    folder (or sub-folder) holding an item's JSON beside its ``B02.tif`` ... reads those files through the item
    (:func:`_folder_scenes`). Entries of a folder that are in
    ``exclude`` (a run's own outputs, when its output folder is also a scene folder), however either is spelled (an
    output folder that is a symlink to the scene folder: :class:`~minescape.path_identity.PathSet`), are never read as
    scenes.
    """
    skip = PathSet(exclude)
    found: dict[str, SceneRef] = {}
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise MissingInputError("scene source not found", path=path)
        refs: list[SceneRef] = []
        if path.is_dir():
            refs = _folder_scenes(path, skip, nested=False)
        elif path.suffix.lower() == ".json":
            refs.extend(_stac_scenes(path))
        else:
            refs.append(_scene_from_file(path))
        for ref in refs:
            found.setdefault(str(ref.source), ref)
    if not found:
        raise InputError(f"no Sentinel-2 scenes found in {', '.join(map(str, sources))}")
    return sorted(found.values(), key=lambda r: (r.date, str(r.source)))


def open_one_scene(path: str | Path) -> Scene:
    """One scene from a path as a command taking one scene per date gets it: a STAC item JSON, or a folder read
    through an item JSON (a downloaded item), by :func:`discover_scenes`; anything else (a stack file, a band
    folder, a SAFE product) by :func:`minescape.sentinel2.open_scene`, which needs no date.

    Raises:
        InputError: the path holds no scene or several (naming it and the count).
    """
    path = Path(path)
    if path.suffix.lower() == ".json" or (path.is_dir() and any(BARE_ASSET_FILE.match(p.name) for p in path.iterdir())):
        refs = discover_scenes([path])
    elif path.is_dir() and _is_band_folder(path):
        refs = _downloaded_items(path)  # an item JSON beside the band files; else the band folder as named
        if not refs:
            return open_scene(path)
    else:
        return open_scene(path)
    if len(refs) != 1:
        raise InputError(f"holds {len(refs)} scenes ({', '.join(str(r.date) for r in refs[:4])}"
                         f"{' ...' if len(refs) > 4 else ''}); give one scene per date", path=path)
    return checked_offset(refs[0].open())


def checked_offset(scene: Scene) -> Scene:
    """``scene`` with its catalogue-decided -1000 DN offset checked once on its pixels: where the blue band's DN
    cannot carry it (:func:`minescape.imagery.window_reader.pixels_carry_offset` on B02 read decimated to at most
    :data:`~minescape.imagery.window_reader.OFFSET_PROBE_PX` px a side, nearest; an Earth Search item whose
    ``boa_offset_applied`` flag is wrong), the scene is read with offset 0 and says so in its ``notes``. A change
    pair is read window by window, so the decision is made once per scene here, not per window (site
    classification checks each site's window)."""
    import dataclasses

    from minescape.geo.handles import borrow
    from minescape.imagery.window_reader import OFFSET_PROBE_PX, pixels_carry_offset, uncarried_offset_note

    if not scene.info.offset or "B02" not in scene.band_files:
        return scene
    path, index = scene.band_files["B02"]
    with borrow(path) as src:
        scale = max(src.width, src.height) / OFFSET_PROBE_PX
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        dn = src.read(index, out_shape=shape)
        nodata = src.nodata if src.nodata is not None else scene.nodata or 0
    if pixels_carry_offset(dn, nodata=nodata):
        return scene
    note = uncarried_offset_note(scene.path.name)
    return dataclasses.replace(scene, info=dataclasses.replace(scene.info, offset=0.0), notes=(*scene.notes, note))
