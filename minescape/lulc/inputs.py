"""Inputs per site: scene discovery (files, folders, local STAC), the clearest scene of a year, and the
Sentinel-2 stack plus DEM change clipped to a site on its 10 m UTM grid.

Scenes may be given as multi-band GeoTIFF stacks, one-file-per-band folders, folders holding either, a local
STAC Catalog / Collection / ItemCollection / Item JSON file (assets of multi-band stacks or one asset per band,
read by the catalogue conventions of :mod:`minescape.imagery.conventions`, as ``--stac`` reads them), or a
downloaded item's folder (its JSON beside ``B02.tif`` ...). A scene's date comes from its metadata (STAC
``datetime``, GeoTIFF tag ``DATE``) or its standard Sentinel-2 file name; its cloud cover from STAC
``eo:cloud_cover`` or the GeoTIFF tag ``CLOUDY_PIXEL_PERCENTAGE``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS

from minescape.errors import InputError, MissingInputError, NoOverlapError
from minescape.geo.grid import Grid, bounds_in, reproject_to_grid
from minescape.geo.raster import Raster, open_raster, read_window
from minescape.jsonfile import read_json
from minescape.sentinel2 import BAND_FILE, BANDS, Scene, SceneInfo, open_scene, parse_scene_name, read_stack
from minescape.sites import Site, site_bounds_in

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


@dataclass(frozen=True)
class SceneRef:
    """A scene found on disk: where it is and what the metadata says (no pixels).

    Attributes:
        source: stack file or band folder (or the STAC item's JSON for STAC scenes).
        date: acquisition date.
        cloud: scene cloud cover in percent, or None if unknown.
        band_files: for STAC scenes, band name -> (file, 1-based index); None for files/folders.
        baseline: processing baseline when the metadata gives it.
        offset_dn: for STAC scenes, the DN offset the catalogue conventions decided (-1000 or 0; it overrides
            the baseline's, e.g. for Earth Search items whose pixels already had it subtracted); else None.
        scl: for STAC scenes with an SCL asset, its file or URL (clear pixels then come from it, as with
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
        """JSON-ready description (picklable, for unit arguments; ``offset_dn`` only when set)."""
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


def _stac_scenes(path: Path) -> list[SceneRef]:
    import pystac

    data = read_json(path, "STAC file")
    kind = data.get("type")
    try:
        if kind == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
            for item in items:  # resolve relative hrefs against the collection file
                for asset in item.assets.values():
                    if not Path(asset.href).is_absolute() and "://" not in asset.href:
                        asset.href = str((path.parent / asset.href).resolve())
        elif kind == "Feature":
            items = [pystac.Item.from_file(str(path))]
        elif kind in ("Catalog", "Collection"):
            items = _catalog_items(path, data)
        else:
            raise InputError(f"JSON is not a STAC Catalog, Collection, ItemCollection or Item (type {kind!r})",
                             path=path)
    except pystac.STACError as exc:
        raise InputError(f"invalid STAC ({exc})", path=path) from None
    for item in items:  # an item's own folder: the file it was read from (never a self link the JSON states)
        _use_local_copies(item, path.parent if kind == "FeatureCollection" else Path(item.get_self_href()).parent)
    return [_scene_from_item(item, path) for item in items]


def _use_local_copies(item, folder: Path) -> None:
    """Point an item's remote asset hrefs at the files of the same name in ``folder`` when they are there: an
    item JSON kept beside its downloaded assets (Earth Search's bucket keeps ``<id>.json`` with ``B02.tif`` ...;
    ``aws s3 sync`` of that folder) is read from disk, with no network. Only the URL's last path segment is
    looked up, inside ``folder``."""
    from urllib.parse import urlparse

    for asset in item.assets.values():
        if "://" not in asset.href:
            continue
        name = Path(urlparse(asset.href).path).name
        if name and name not in (".", "..") and (folder / name).is_file():
            asset.href = str((folder / name).resolve())


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
                item = pystac.Item.from_dict(child, href=str(target), preserve_dict=False)
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
    multi-band stack asset (``eo:bands`` of several bands, or the ``data`` role)."""
    from minescape.imagery.conventions import DEFAULT_SCALE, band_of, check_href, item_band_assets, item_baseline

    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise InputError(f"STAC item {item.id} has no datetime", path=source)
    cloud = _float(item.properties.get("eo:cloud_cover"))
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    for key, asset in (data.get("assets") or {}).items():
        asset["href"] = item.assets[key].get_absolute_href() or asset["href"]
    try:
        assets, _ = item_band_assets(data)
    except InputError as exc:
        raise InputError(str(exc), path=source) from None
    spectral = {b: a for b, a in assets.items() if b in BANDS}
    baseline = item_baseline(item.properties)
    if spectral:
        offsets = {a.offset_dn for a in spectral.values()}
        scales = {a.scale for a in spectral.values()}
        if len(offsets) > 1 or any(abs(sc / DEFAULT_SCALE - 1) > 1e-6 for sc in scales):
            raise InputError(f"STAC item {item.id}: bands with different DN offsets {sorted(offsets)} or a scale "
                             f"other than 1e-4 ({sorted(scales)}) cannot be read as one scene; give the items "
                             "with --stac", path=source)
        scl = assets.get("SCL")
        return SceneRef(Path(source.parent / f"{item.id}"), when.date(), cloud,
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
            return SceneRef(ref.source, when.date(), cloud if cloud is not None else ref.cloud, None,
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
        if child.is_file() and read_json(child, "STAC file").get("type") in ("Feature", "FeatureCollection"):
            refs += [r for r in _stac_scenes(child)
                     if any("://" not in h and Path(h).parent == folder.resolve() for _, h, _ in r.band_files or ())]
    return refs


def _folder_scenes(folder: Path, skip: set[Path], *, nested: bool) -> list[SceneRef]:
    """The scenes of a folder: itself when it is a band folder; else its raster files, STAC JSON files, band
    sub-folders and downloaded items' sub-folders (holding ``B02.tif`` ...; ``nested``: such a sub-folder, of
    which only the STAC item / ItemCollection JSON files are read).

    Files that a STAC JSON of the folder points at (a downloaded item, :func:`_use_local_copies`) are read through
    that item, not again as scenes of their own. Bare asset files (``B02.tif``) that no item claims are an error
    naming the folder: their date and DN offset cannot be told."""
    if _is_band_folder(folder):  # through the item JSON beside the files when there is one (its offset, its SCL)
        return _downloaded_items(folder) or [_scene_from_band_folder(folder)]
    children = [c for c in sorted(folder.iterdir()) if not c.name.startswith(".") and c.absolute() not in skip]
    refs: list[SceneRef] = []
    claimed: set[Path] = set()
    download = nested or any(c.is_file() and BARE_ASSET_FILE.match(c.name) for c in children)
    for child in children:
        if child.is_file() and child.suffix.lower() == ".json":
            if download and read_json(child, "STAC file").get("type") not in ("Feature", "FeatureCollection"):
                continue  # a downloaded item's other metadata (tileInfo.json ...)
            found = _stac_scenes(child)
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
        elif child.is_dir():
            if _is_band_folder(child):
                refs.extend(_folder_scenes(child, skip, nested=True))
            elif any(g.is_file() and BARE_ASSET_FILE.match(g.name) for g in child.iterdir()):
                refs.extend(_folder_scenes(child, skip, nested=True))  # a downloaded item's folder
    return refs


def discover_scenes(sources: Sequence[str | Path], *, exclude: Sequence[str | Path] = ()) -> list[SceneRef]:
    """Find scenes in files, folders and STAC JSON files; sorted by (date, path), duplicates removed.

    A folder is a scene when it holds band files (``*_B02.tif`` ...); otherwise its raster files, band
    sub-folders and ``*.json`` STAC files are scenes (one level deep), and so are downloaded catalogue items: a
    folder (or sub-folder) holding an item's JSON beside its ``B02.tif`` ... reads those files through the item
    (:func:`_folder_scenes`). Entries of a folder that are in
    ``exclude`` (a run's own outputs, when its output folder is also a scene folder) are never read as scenes.
    """
    skip = {Path(p).absolute() for p in exclude}
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


# ------------------------------------------------------------------------------------------ per site


def scene_covers(scene: Scene, site: Site) -> bool:
    """True when the scene's footprint (its grid bounds) intersects the site's grid."""
    sb = site_bounds_in(site, scene.grid.crs)
    b = scene.grid.bounds
    return not (sb[2] <= b[0] or sb[0] >= b[2] or sb[3] <= b[1] or sb[1] >= b[3])


def estimate_cloud(stack: Raster, mask: np.ndarray, *, blue_min: float = 0.3, swir_max_ratio: float = 1.0) -> float:
    """Share of ``mask`` pixels that are cloud or nodata (0..1).

    Cloud: bright in the blue (B02 > ``blue_min``) and not brighter in SWIR1 than in blue
    (B11 / B02 < ``swir_max_ratio``), which keeps bright soils and roofs out.
    """
    from minescape.imagery.cloud_mask import spectral_clear  # the one spectral cloud test

    if not mask.any():
        return 1.0
    clear = spectral_clear(stack.band("B02"), stack.band("B11"), blue_min=blue_min, swir_max_ratio=swir_max_ratio)
    return float((~clear)[mask].mean())


def clearest_scene(refs: Sequence[SceneRef], site: Site, year: int, *,
                   scl_classes: Sequence[int] | None = None) -> tuple[SceneRef, float, list[str]]:
    """The clearest scene of ``year`` covering ``site``.

    Candidates are ranked by the cloud-or-nodata share over the site (from the scene's SCL where it has one,
    ``scl_classes`` masked, default :data:`~minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`; else estimated from
    B02/B11 read on the site's grid), then by the metadata cloud cover, then by date. Raises InputError when no
    scene of that year covers the site (the message names the years that do).

    Returns:
        ``(scene, site_cloud_share, notes)``.
    """
    from minescape.lulc.scene_index import covering as covering_scenes

    covering: list[tuple[SceneRef, Scene]] = covering_scenes(refs, site)  # footprint index, then exact test
    if not covering:
        raise NoOverlapError(f"site {site.id} is outside all {len(refs)} scenes")
    of_year = [(r, s) for r, s in covering if r.year == year]
    if not of_year:
        years = sorted({r.year for r, _ in covering})
        raise InputError(f"site {site.id}: no scene of year {year} covers it (scenes of {years} do)")
    mask = site.mask()
    ranked, probes = [], {}
    for ref, scene in of_year:
        if len(of_year) == 1:
            share = float("nan")
        elif ref.scl is not None:
            share = scl_cloud_share(ref.scl, site.grid, mask, scl_classes)
        else:
            probes[ref] = probe = read_stack_on(scene, site.grid, bands=["B02", "B11"])
            share = estimate_cloud(probe, mask)
        ranked.append((0.0 if np.isnan(share) else share, ref.cloud if ref.cloud is not None else 100.0,
                       ref.date, str(ref.source), ref, share))
    ranked.sort(key=lambda t: t[:4])
    best = ranked[0]
    if best[4] in probes:  # load_stack reuses these bands instead of reading them again
        from minescape.lulc.scene_index import remember_probe

        remember_probe(best[4], site.grid, probes[best[4]])
    notes = [f"{len(of_year)} scene(s) of {year}; chose {best[4].source.name}"]
    return best[4], best[5], notes


def scl_cloud_share(href: str, grid: Grid, mask: np.ndarray, classes: Sequence[int] | None = None) -> float:
    """Share of ``mask`` pixels whose SCL class (the file or URL ``href``, nearest onto ``grid``) is masked
    (``classes``, default :data:`~minescape.imagery.cloud_mask.DEFAULT_SCL_MASK`: no data, defective, shadow,
    clouds, cirrus); 1 for an empty mask."""
    from minescape.imagery.cloud_mask import DEFAULT_SCL_MASK, check_scl_classes, scl_clear
    from minescape.imagery.conventions import SCL, BandAsset
    from minescape.imagery.window_reader import read_window

    if not mask.any():
        return 1.0
    scl = read_window(BandAsset(SCL, href, 1.0, 0.0, 0.0), grid, resampling="nearest")
    masked = check_scl_classes(DEFAULT_SCL_MASK if classes is None else classes)
    return float((~scl_clear(scl, masked=masked))[mask].mean())


def read_stack_on(scene: Scene, grid: Grid, *, bands: Sequence[str]) -> Raster:
    """Reflectance of ``bands`` on ``grid`` (scenes in other CRSs are warped); see
    :func:`minescape.sentinel2.read_stack`, which reads an aligned multi-band stack in one call."""
    return read_stack(scene, bands=[b.upper() for b in bands], grid=grid)


def load_stack(ref: SceneRef, site: Site, *, bands: Sequence[str]) -> Raster:
    """Reflectance of ``bands`` on the site grid (scenes in other CRSs are warped), NaN outside the site."""
    from minescape.lulc.scene_index import describe, recall_probe

    wanted = [b.upper() for b in bands]
    known = recall_probe(ref, site.grid)  # bands the clearest-scene choice already read
    if known is None or not set(known.band_names) & set(wanted):
        stack = read_stack_on(describe(ref), site.grid, bands=wanted)
    else:
        rest = [b for b in wanted if b not in known.band_names]
        part = read_stack_on(describe(ref), site.grid, bands=rest) if rest else None
        merged = np.empty((len(wanted), *known.shape), dtype=np.float32)
        for i, b in enumerate(wanted):
            merged[i] = known.band(b) if b in known.band_names else part.band(b)
        stack = Raster(merged, known.crs, known.transform, np.nan, tuple(wanted))
    undo_uncarried_offset(ref, stack)
    data = stack.data
    data[:, ~site.mask()] = np.nan
    return stack


def undo_uncarried_offset(ref: SceneRef, stack: Raster) -> str | None:
    """For a scene read with a catalogue item's -1000 DN offset (``ref.offset_dn``) whose blue DN cannot carry it
    (:func:`minescape.imagery.window_reader.pixels_carry_offset`: Earth Search items whose
    ``boa_offset_applied`` flag is wrong), add the offset back to every band of ``stack`` in place (the
    reflectance as if read with offset 0) and return a note; else None. ``stack`` must hold ``B02`` to be checked."""
    from minescape.imagery.window_reader import pixels_carry_offset
    from minescape.sentinel2 import QUANTIFICATION

    offset = ref.offset_dn or 0.0
    if offset == 0.0 or "B02" not in stack.band_names:
        return None
    blue = stack.band("B02")
    dn = np.where(np.isfinite(blue), blue * QUANTIFICATION - offset, 0.0)
    if pixels_carry_offset(dn, nodata=0.0):
        return None
    np.subtract(stack.data, np.float32(offset / QUANTIFICATION), out=stack.data)
    return (f"{ref.source.name}: DN below 1000 cannot carry the baseline-04.00 offset; read as already offset "
            "(the item's metadata is wrong for it)")


def dh_on_grid(dcm_dh: str | Path, grid: Grid, *, resampling: str = "bilinear", what: str = "the area") -> Raster:
    """Elevation change (m, float32) on ``grid``; NaN for voids and outside the DCM.

    Only the window of the DCM covering ``grid`` (plus a 2-pixel margin) is read, so memory follows the grid.
    Raises NoOverlapError when the DCM does not reach ``grid`` at all.
    """
    from rasterio.windows import Window

    from minescape.geo.handles import borrow

    with borrow(dcm_dh) as src:  # one open per process (handle pool), not one per site
        if src.crs is None:
            raise InputError("DEM-change raster has no CRS", path=dcm_dh)
        dgrid = Grid(src.crs, src.transform, src.width, src.height)
        nodata = src.nodata
        b = bounds_in(grid.bounds, grid.crs, CRS.from_user_input(dgrid.crs)) if dgrid.crs != grid.crs \
            else grid.bounds
        try:
            win = dgrid.window_of_bounds(b)
        except NoOverlapError:
            raise NoOverlapError(f"{what} lies outside the DEM-change map", path=dcm_dh) from None
        c0, r0 = max(0, int(win.col_off) - 2), max(0, int(win.row_off) - 2)
        c1 = min(dgrid.width, int(win.col_off + win.width) + 2)
        r1 = min(dgrid.height, int(win.row_off + win.height) + 2)
        part = read_window(src, bands=[1], window=Window(c0, r0, c1 - c0, r1 - r0), path=dcm_dh)
    data = part.data.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data[part.data == nodata] = np.nan
    src_r = Raster(data, part.crs, part.transform, np.nan, ("DH",))
    return reproject_to_grid(src_r, grid, resampling=resampling, dst_nodata=np.nan)


def load_dh(dcm_dh: str | Path, site: Site, *, resampling: str = "bilinear") -> Raster:
    """Elevation change (m) on the site grid, NaN for voids, outside the DCM and outside the site."""
    dh = dh_on_grid(dcm_dh, site.grid, resampling=resampling, what=f"site {site.id}")
    dh.data[:, ~site.mask()] = np.nan
    return dh
