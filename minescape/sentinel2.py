"""Sentinel-2: band registry, file-name parsing, DN -> reflectance, band stacks on the 10 m grid.

Two layouts are read:

* a multi-band GeoTIFF/COG stack whose band descriptions name the bands (``B02`` ...), or whose
  band names are given explicitly;
* a folder with one file per band, named ``*_B01.tif`` ... ``*_B12.tif`` / ``*_B8A.tif`` (the OSCD
  and SAFE ``IMG_DATA`` layout), with bands at 10, 20 and 60 m; an L2A ``IMG_DATA`` (``R10m``, ``R20m``,
  ``R60m``: each band from its finest folder) or a one-granule ``.SAFE`` product folder.

Bands are resampled on the fly (GDAL warped VRT, window by window) onto a target grid: by default
the grid of a 10 m reference band. Memory is bounded by the window read, not the scene.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from minescape.errors import ConfigError, InputError, MissingInputError
from minescape.geo.grid import Grid, aligned_window, scaled_window
from minescape.geo.handles import borrow
from minescape.geo.raster import Raster, corrupt_reads_named


@dataclass(frozen=True)
class Band:
    """A Sentinel-2 MSI band: name, native resolution (m), central wavelength (nm, S2A)."""

    name: str
    resolution: int
    wavelength: float


# ESA Sentinel-2 User Handbook / MSI spectral response (S2A central wavelengths).
BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("B01", 60, 442.7),
        Band("B02", 10, 492.4),
        Band("B03", 10, 559.8),
        Band("B04", 10, 664.6),
        Band("B05", 20, 704.1),
        Band("B06", 20, 740.5),
        Band("B07", 20, 782.8),
        Band("B08", 10, 832.8),
        Band("B8A", 20, 864.7),
        Band("B09", 60, 945.1),
        Band("B10", 60, 1373.5),
        Band("B11", 20, 1613.7),
        Band("B12", 20, 2202.4),
    )
}
ALL_BANDS: tuple[str, ...] = tuple(BANDS)  # the 13 L1C bands in the conventional order
L2A_BANDS: tuple[str, ...] = tuple(b for b in ALL_BANDS if b != "B10")  # 12 bands (no cirrus)
TEN_M_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
TEN_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")

# A band file: anything ending in _B01.. _B12 or _B8A (optionally _10m/_20m/_60m as in L2A SAFE).
BAND_FILE = re.compile(r"_(?P<band>B(?:0[1-9]|1[0-2]|8A))(?:_(?:10|20|60)m)?\.(?:tif|tiff|jp2)$", re.IGNORECASE)

# Product names, e.g. S2B_MSIL2A_20190715T022549_N0400_R046_T50KQB_20190715T062017
PRODUCT_NAME = re.compile(
    r"(?P<mission>S2[ABCD])_MSI(?P<level>L1C|L2A)_(?P<datetime>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})"
)
# Old (pre-2017) tile-level names, e.g. S2A_OPER_MSI_L1C_TL_MTI__20160120T104345_A003020_T39QZG_B01. The date in
# them is the file's creation (ESA's "OPER" naming), not the sensing: OSCD's aguasclaras tile above was created
# 2016-12-27 from a scene sensed 2015-09-16. The sensing time follows from the absolute orbit (A003020).
OLD_TILE_NAME = re.compile(r"(?P<mission>S2[AB])_OPER_MSI_(?P<level>L1C|L2A)_TL_\w{4}_(?P<datetime>\d{8}T\d{6})"
                           r"_A(?P<abs_orbit>\d{6})_T(?P<tile>\d{2}[A-Z]{3})")
#: Launch (UTC) of each Sentinel-2 unit: its absolute orbit 1 starts there.
LAUNCH = {"S2A": dt.datetime(2015, 6, 23, 1, 51, 58), "S2B": dt.datetime(2017, 3, 7, 1, 49, 24)}
#: Sentinel-2's orbital period: 143 orbits in its 10-day repeat cycle.
ORBIT_DAYS = 10 / 143


def sensing_date_of_orbit(mission: str, abs_orbit: int) -> dt.date:
    """The UTC date of absolute orbit ``abs_orbit`` of ``mission`` (launch + (orbit - 1) periods): within a day of
    the sensing date whatever the orbit (checked against the five OSCD cities of old names, each to the day)."""
    return (LAUNCH[mission] + dt.timedelta(days=(abs_orbit - 1) * ORBIT_DAYS)).date()
# Granule band files, e.g. T40QBM_20180328T065919_B01
GRANULE_NAME = re.compile(r"T(?P<tile>\d{2}[A-Z]{3})_(?P<datetime>\d{8}T\d{6})_B")
DATE_ONLY = re.compile(r"(?<!\d)(?P<date>20\d{6})(?:T\d{6})?(?!\d)")

# Reflectance = (DN + offset) / quantification; since processing baseline 04.00 (25 Jan 2022) the
# L1C and L2A products carry RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000 (ESA S2 PB 04.00 note).
QUANTIFICATION = 10000.0
OFFSET_BASELINE = (4, 0)
OFFSET_SINCE = dt.date(2022, 1, 25)  # every product sensed from this day on has baseline >= 04.00 (the offset)
SAFE_DEPTH = 5  # folders above a band file searched for the SAFE product name (L2A: X.SAFE/GRANULE/*/IMG_DATA/R10m)
# Special_Values of L1C and L2A products (product metadata, S2 Products Specification Document): DN 0 is NO_DATA,
# DN 65535 is SATURATED. Neither is a measurement: both decode to NaN (:func:`invalid_dn`).
DN_NODATA = 0
DN_SATURATED = 65535


@dataclass(frozen=True)
class SceneInfo:
    """What a scene's name tells: acquisition date, processing level and baseline, MGRS tile; and the DN offset
    when a catalogue's metadata decided it (``offset``, else None: the baseline's)."""

    date: dt.date | None
    level: str | None = None
    baseline: str | None = None
    tile: str | None = None
    mission: str | None = None
    offset: float | None = None

    @property
    def radiometric_offset(self) -> float:
        """Additive offset (DN): ``offset`` when given, else the baseline's (-1000 from 04.00 on, else 0)."""
        return self.offset if self.offset is not None else baseline_offset(self.baseline)


def baseline_offset(baseline: str | None) -> float:
    """The DN offset for a processing baseline such as ``"04.00"`` or ``"0400"`` (None -> 0)."""
    if not baseline:
        return 0.0
    digits = baseline.replace(".", "")
    if not digits.isdigit() or len(digits) != 4:
        raise ConfigError(f"invalid processing baseline {baseline!r}; expected e.g. '04.00'")
    major, minor = int(digits[:2]), int(digits[2:])
    return -1000.0 if (major, minor) >= OFFSET_BASELINE else 0.0


def parse_scene_name(name: str) -> SceneInfo:
    """Parse a product, granule or band file name into a :class:`SceneInfo` (fields None if absent)."""
    name = Path(name).name
    for pattern in (PRODUCT_NAME, OLD_TILE_NAME, GRANULE_NAME):
        m = pattern.search(name)
        if m:
            g = m.groupdict()
            date = dt.datetime.strptime(g["datetime"], "%Y%m%dT%H%M%S").date()
            if g.get("abs_orbit"):  # an old name's date is its creation: the orbit tells the sensing
                date = sensing_date_of_orbit(g["mission"], int(g["abs_orbit"]))
            baseline = g.get("baseline")
            return SceneInfo(
                date=date,
                level=g.get("level"),
                baseline=f"{baseline[:2]}.{baseline[2:]}" if baseline else None,
                tile=g.get("tile"),
                mission=g.get("mission"),
            )
    m = DATE_ONLY.search(name)
    if m:
        try:
            return SceneInfo(date=dt.datetime.strptime(m.group("date"), "%Y%m%d").date())
        except ValueError:
            pass
    return SceneInfo(date=None)


def invalid_dn(dn: np.ndarray, nodata: float | None) -> np.ndarray:
    """Where ``dn`` holds no measurement: ``== nodata`` (None: no nodata value) and, for integer DN, Sentinel-2's
    SATURATED value (:data:`DN_SATURATED`). Floating-point arrays are reflectance, not DN: only ``nodata`` counts.

    The one test of Sentinel-2's special values: every reader that decodes DN (local scenes, SAFE folders, STAC
    assets) masks with it, on the DN before any offset or scale.

    >>> invalid_dn(np.array([0, 1200, 65535], dtype=np.uint16), 0).tolist()
    [True, False, True]
    """
    dn = np.asarray(dn)
    bad = dn == nodata if nodata is not None else np.zeros(dn.shape, dtype=bool)
    return bad | (dn == DN_SATURATED) if dn.dtype.kind in "ui" else bad


def dn_to_reflectance(
    dn: np.ndarray, *, baseline: str | None = None, offset: float | None = None, nodata: float | None = DN_NODATA,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Convert L1C (TOA) or L2A (BOA) digital numbers to reflectance (unitless, float32).

    ``reflectance = (DN + offset) / 10000`` with ``offset = -1000`` for processing baseline >= 04.00
    (or as given). Pixels equal to ``nodata`` (0 in Sentinel-2 products) or SATURATED (65535) become NaN
    (:func:`invalid_dn`). ``out``: a float32 array of ``dn``'s shape to write into.
    """
    off = baseline_offset(baseline) if offset is None else float(offset)
    dn = np.asarray(dn)
    bad = invalid_dn(dn, nodata)  # on the DN, before the offset and the scale
    refl = np.add(dn, np.float32(off), dtype=np.float32, out=out)
    np.divide(refl, np.float32(QUANTIFICATION), out=refl)
    np.copyto(refl, np.float32(np.nan), where=bad)
    return refl


def decode_dn(dn: np.ndarray, *, reflectance: bool, offset: float, nodata: float | None,
              out: np.ndarray | None = None) -> np.ndarray:
    """One band of DN as float32: reflectance (see :func:`dn_to_reflectance`) or DN, NaN where ``nodata`` or, for
    integer DN, SATURATED (:func:`invalid_dn`); written into ``out`` when given.

    A floating-point band holds reflectance already (a stack a user computed, a composite minescape wrote): it is
    taken as stored, never scaled, so every reader (``change detect``, ``change predict``, ``lulc``) sees the
    same values whatever the file's type."""
    if reflectance and np.asarray(dn).dtype.kind != "f":
        return dn_to_reflectance(dn, offset=offset, nodata=nodata, out=out)
    bad = invalid_dn(dn, nodata)
    res = np.empty(np.shape(dn), np.float32) if out is None else out
    np.copyto(res, dn, casting="unsafe")
    np.copyto(res, np.float32(np.nan), where=bad)
    return res


def read_window_filled(src: rasterio.io.DatasetReader, indexes: list[int], window: Window, *,
                       fill: float) -> np.ndarray:
    """Read ``indexes`` over an integer pixel ``window`` that may reach past the file; pixels outside are
    ``fill``. Only the part inside the file is read (GDAL's boundless reads are much slower)."""
    h, w = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    rr0, rr1 = max(r0, 0), min(r0 + h, src.height)
    cc0, cc1 = max(c0, 0), min(c0 + w, src.width)
    if (rr0, rr1, cc0, cc1) == (r0, r0 + h, c0, c0 + w):
        return src.read(indexes, window=window)
    dn = np.full((len(indexes), h, w), fill, dtype=src.dtypes[indexes[0] - 1])
    if rr1 > rr0 and cc1 > cc0:
        dn[:, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = src.read(indexes, window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
    return dn


RESOLUTION_FOLDERS: tuple[str, ...] = ("R10m", "R20m", "R60m")  # an L2A granule's IMG_DATA, finest first


def band_file_folders(folder: str | Path) -> list[Path]:
    """The folders holding a scene's band files, finest first.

    ``folder`` itself (OSCD, an L1C granule's ``IMG_DATA``); an L2A ``IMG_DATA`` with ``R10m``/``R20m``/``R60m``
    subfolders; or a ``.SAFE`` product or granule folder above them (the product must hold one granule).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError("folder not found", path=folder)
    if (folder / "GRANULE").is_dir():
        granules = sorted(p for p in (folder / "GRANULE").iterdir() if p.is_dir())
        if len(granules) != 1:
            raise InputError(f"a SAFE product with {len(granules)} granules; give one granule's folder",
                             path=folder)
        folder = granules[0]
    if (folder / "IMG_DATA").is_dir():
        folder = folder / "IMG_DATA"
    return [folder / r for r in RESOLUTION_FOLDERS if (folder / r).is_dir()] or [folder]


def find_band_files(folder: str | Path) -> dict[str, Path]:
    """Map band name -> file for a one-file-per-band folder, an L2A ``IMG_DATA`` or a SAFE product
    (:func:`band_file_folders`; each band from the finest resolution folder that has it). InputError if none,
    or two files for a band in one folder."""
    found: dict[str, Path] = {}
    for sub in band_file_folders(folder):
        here: dict[str, Path] = {}
        for path in sorted(sub.iterdir()):
            m = BAND_FILE.search(path.name)
            if m:
                band = m.group("band").upper()
                if band in here:
                    raise InputError(f"two files for band {band}: {here[band].name}, {path.name}", path=sub)
                here[band] = path
        found.update({b: p for b, p in here.items() if b not in found})
    if not found:
        raise InputError("no Sentinel-2 band files (*_B02.tif ...) in folder", path=folder)
    return found


def _stack_band_names(src: rasterio.io.DatasetReader, path: Path, band_names: Sequence[str] | None) -> list[str]:
    if band_names is not None:
        if len(band_names) != src.count:
            raise InputError(f"{len(band_names)} band names given for {src.count} bands", path=path)
        return [b.upper() for b in band_names]
    desc = [d.upper() if d else None for d in src.descriptions]
    if all(desc) and all(d in BANDS for d in desc):
        return desc  # type: ignore[return-value]
    defaults = {13: ALL_BANDS, 12: L2A_BANDS, 10: TEN_BANDS, 4: TEN_M_BANDS}
    if src.count in defaults:
        return list(defaults[src.count])
    raise InputError(
        f"cannot tell which Sentinel-2 bands the {src.count} bands are; set band descriptions or pass band names",
        path=path,
    )


@dataclass(frozen=True)
class Scene:
    """An opened description of a Sentinel-2 scene on disk (no pixels held).

    Attributes:
        path: multi-band file or band folder.
        band_files: band name -> (file, 1-based band index).
        info: date, level, baseline parsed from names (or given).
        grid: the native grid of the reference (10 m) band.
        nodata: DN nodata (0 for Sentinel-2).
        notes: what was decided on opening it that a run should report (a catalogue offset contradicted by the
            pixels); empty for most scenes.
    """

    path: Path
    band_files: dict[str, tuple[Path, int]]
    info: SceneInfo
    grid: Grid
    nodata: float | None
    notes: tuple[str, ...] = ()

    @property
    def bands(self) -> list[str]:
        """Available band names in conventional order."""
        return [b for b in ALL_BANDS if b in self.band_files]


def open_scene(
    path: str | Path,
    *,
    band_names: Sequence[str] | None = None,
    reference_band: str = "B02",
    baseline: str | None = None,
    date: dt.date | None = None,
) -> Scene:
    """Describe a scene: a multi-band stack file or a one-file-per-band folder.

    ``baseline`` and ``date`` override what the file name says (a scene's STAC metadata may provide them).
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError("scene not found", path=path)
    band_files: dict[str, tuple[Path, int]] = {}
    if path.is_dir():
        files = find_band_files(path)
        band_files = {b: (p, 1) for b, p in files.items()}
        name_source = next(iter(files.values())).name
        nodata = DN_NODATA
    else:
        with borrow(path) as src:
            names = _stack_band_names(src, path, band_names)
            band_files = {b: (path, i + 1) for i, b in enumerate(names)}
            nodata = src.nodata if src.nodata is not None else DN_NODATA
            tags = src.tags()
        name_source = path.name
        if baseline is None and "PROCESSING_BASELINE" in tags:
            baseline = tags["PROCESSING_BASELINE"]
        if date is None and "DATE" in tags:
            date = dt.date.fromisoformat(tags["DATE"])
    info = parse_scene_name(name_source)
    if baseline is not None or date is not None:
        info = SceneInfo(date or info.date, info.level, baseline or info.baseline, info.tile, info.mission)
    if info.baseline is None and path.is_dir():
        info = baseline_from_context(path, info)
    ref = reference_band if reference_band in band_files else _finest_band(band_files)
    ref_path, ref_idx = band_files[ref]
    with borrow(ref_path) as src:
        if src.crs is None:
            raise InputError("scene has no CRS", path=ref_path)
        grid = Grid(src.crs, src.transform, src.width, src.height)
    return Scene(path=path, band_files=band_files, info=info, grid=grid, nodata=nodata)


def baseline_from_context(path: Path, info: SceneInfo) -> SceneInfo:
    """``info`` with the processing baseline a band file's own name leaves out (a SAFE granule's
    ``T31UDQ_20240315T105031_B02.jp2``), which decides the -1000 DN offset:

    * from the product name of a ``.SAFE`` folder at most :data:`SAFE_DEPTH` levels above ``path``
      (``S2B_MSIL2A_..._N0500_...``): ESA's reprocessed archive (collection 1, baseline 05.00) carries the
      offset for acquisitions of any year, so only the product name tells a reprocessed 2017 scene from the
      original;
    * else ``04.00`` (the least baseline with the offset) for ESA-named band files (the name gives the tile)
      sensed on or after 25 January 2022, when every product has it;
    * else unknown (no offset), as before: an older scene outside its SAFE folder is taken as first processed,
      and files named otherwise (stacks, exports) say their scale by their own tags.

    ``path`` is a band folder (stacks carry ``PROCESSING_BASELINE`` in their tags instead).
    """
    for folder in [path, *list(path.parents)[:SAFE_DEPTH]]:
        product = parse_scene_name(folder.name)
        if product.baseline is not None:  # only a product name carries one
            return SceneInfo(info.date or product.date, info.level or product.level, product.baseline,
                             info.tile or product.tile, info.mission or product.mission)
    if info.tile is not None and info.date is not None and info.date >= OFFSET_SINCE:
        return SceneInfo(info.date, info.level, "04.00", info.tile, info.mission)
    return info


def _finest_band(band_files: dict[str, tuple[Path, int]]) -> str:
    return min(band_files, key=lambda b: BANDS[b].resolution)


def read_stack(
    scene: Scene | str | Path,
    *,
    bands: Sequence[str] | None = None,
    grid: Grid | None = None,
    window: Window | None = None,
    reflectance: bool = True,
    resampling: str = "bilinear",
) -> Raster:
    """Read bands of a scene onto ``grid`` (default: the scene's 10 m reference grid).

    Args:
        scene: a :class:`Scene` or a path for :func:`open_scene`.
        bands: band names (default all available, conventional order).
        grid: target grid; other CRSs and resolutions are warped onto it (a pair's second date onto
            the first date's grid, a scene onto a site's UTM grid).
        window: pixel window of ``grid`` to read; memory scales with the window only.
        reflectance: convert DN to float32 reflectance (NaN = nodata); else float32 DN with NaN nodata.
        resampling: for bands coarser than the grid (``bilinear``, ``nearest``, ``cubic``...).

    Returns:
        A float32 :class:`Raster` ``(len(bands), rows, cols)`` named by band, nodata NaN.
    """
    if not isinstance(scene, Scene):
        scene = open_scene(scene)
    bands = [b.upper() for b in (bands or scene.bands)]
    missing = [b for b in bands if b not in scene.band_files]
    if missing:
        raise InputError(f"missing bands {missing}; scene has {scene.bands}", path=scene.path)
    target = grid or scene.grid
    if window is not None:
        target = target.window_grid(window)
    try:
        method = Resampling[resampling]
    except KeyError:
        raise ConfigError(f"invalid resampling {resampling!r}") from None
    out = np.empty((len(bands), target.height, target.width), dtype=np.float32)
    offset = scene.info.radiometric_offset
    # group bands by file: a multi-band stack is opened once and, when aligned, read in one call
    # (one decompression of pixel-interleaved blocks instead of one per band)
    by_file: dict[Path, list[int]] = {}
    for i, band in enumerate(bands):
        by_file.setdefault(scene.band_files[band][0], []).append(i)
    for path, positions in by_file.items():
        indexes = [scene.band_files[bands[i]][1] for i in positions]
        with borrow(path) as src:  # one open per file and process (handle pool)
            if src.crs is None:
                raise InputError("band file has no CRS", path=path)
            src_nodata = src.nodata if src.nodata is not None else scene.nodata
            win = _aligned_window(src, target)
            with corrupt_reads_named(path, "band " + ",".join(bands[i] for i in positions)):
                if win is not None:
                    dn = read_window_filled(src, indexes, win, fill=src_nodata if src_nodata is not None else 0)
                else:
                    dn = _upsampled_read(src, indexes, target, method, src_nodata)
                if dn is None:
                    with WarpedVRT(src, crs=target.crs, transform=target.transform, width=target.width,
                                   height=target.height, resampling=method, src_nodata=src_nodata,
                                   nodata=src_nodata) as vrt:
                        dn = vrt.read(indexes)
        for k, i in enumerate(positions):
            decode_dn(dn[k], reflectance=reflectance, offset=offset, nodata=src_nodata, out=out[i])
    return Raster(out, target.crs, target.transform, np.nan, tuple(bands))


def _upsampled_read(src: rasterio.io.DatasetReader, indexes: list[int], target: Grid, method: Resampling,
                    nodata: float | None) -> np.ndarray | None:
    """``indexes`` of ``src`` resampled onto a finer ``target`` by a floating-window read (GDAL RasterIO), or
    None where only a warp will do.

    A coarser band on the same CRS and extent (the 20 m and 60 m bands of a scene or an OSCD band folder,
    read onto the 10 m grid) needs only a scale and a shift: GDAL's resampled RasterIO gives the warper's
    values (within 1 DN after rounding, edges included) 4-20x faster. It is used only when the target is
    no coarser than the band (no averaging kernel to match) and the band's pixels around the window hold no
    nodata (the warper leaves nodata out of its bilinear weights; a plain resampled read would blend it in).
    """
    st, tt = src.transform, target.transform
    if tt.a > st.a * (1 + 1e-9) or -tt.e > -st.e * (1 + 1e-9):
        return None
    fw = scaled_window(src.crs, st, (src.height, src.width), target)
    if fw is None:
        return None
    if nodata is not None:
        # the source pixels the kernel may touch: the window's pixels and one more on each side
        c0, r0 = max(int(np.floor(fw.col_off)) - 1, 0), max(int(np.floor(fw.row_off)) - 1, 0)
        c1 = min(int(np.ceil(fw.col_off + fw.width)) + 1, src.width)
        r1 = min(int(np.ceil(fw.row_off + fw.height)) + 1, src.height)
        native = src.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0))
        if (np.isnan(native) if np.isnan(nodata) else native == nodata).any():
            return None
    return src.read(indexes, window=fw, out_shape=(len(indexes), target.height, target.width), resampling=method)


def _aligned_window(src: rasterio.io.DatasetReader, target: Grid) -> Window | None:
    """The window of ``src`` matching ``target`` pixel for pixel, or None if a warp is needed."""
    return aligned_window(src.crs, src.transform, target)
